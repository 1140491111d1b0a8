//! Why a connection ended: what the `access` log reports, what an MQTT 5.0 client is told in
//! the server's DISCONNECT, and whether the will is published.

use std::fmt;

/// Why a connection ended, as the `access` log reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent DISCONNECT.
    ClientDisconnect,
    /// The client sent DISCONNECT asking for its will to be published (MQTT 5.0, 0x04).
    ClientDisconnectWithWill,
    /// The client sent nothing within 1.5 × its keep-alive.
    KeepAliveTimeout,
    /// The client did not send CONNECT within the connect timeout.
    ConnectTimeout,
    /// The client closed the socket without DISCONNECT.
    SocketClosed,
    /// Reading or writing the socket failed.
    SocketError(String),
    /// The client broke a protocol rule; the text says which.
    ProtocolError(String),
    /// A packet could not be decoded: the MQTT 5.0 reason the decoder gives (0x81 malformed
    /// packet, 0x82 protocol error, 0x90 topic name invalid, ...) and what was wrong.
    BadPacket {
        /// The reason code for the server's DISCONNECT.
        code: super::reason::ReasonCode,
        /// What was wrong, as the decoder says it.
        why: String,
    },
    /// The client sent a packet larger than the maximum packet size.
    PacketTooLarge {
        /// Size the packet announced.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// An MQTT 5.0 client sent more unacknowledged QoS 1/2 PUBLISH packets than the
    /// server's Receive Maximum (MQTT-3.3.4-7).
    ReceiveMaximumExceeded {
        /// The Receive Maximum announced in CONNACK.
        max: u16,
    },
    /// An MQTT 5.0 client sent a topic alias of 0 or above the maximum announced in CONNACK;
    /// the text says which.
    TopicAliasInvalid(String),
    /// Another connection took over this client id.
    TakenOver,
    /// CONNECT was refused (the return code says why).
    Refused(&'static str),
    /// The client did not read what was sent to it for too long.
    StalledReader,
    /// The broker is shutting down.
    ServerShutdown,
    /// A message of a 3.1/3.1.1 client could not be stored: that protocol has no way to
    /// refuse a PUBLISH, and acknowledging it would be a lie (the text says why).
    NotStored(String),
}

impl CloseReason {
    /// The reason an MQTT 5.0 client is told in the server's DISCONNECT, for the ways the
    /// server ends a connection (none when the client ended it, or before CONNACK).
    pub fn disconnect_reason(&self) -> Option<super::reason::ReasonCode> {
        use super::reason::ReasonCode;
        Some(match self {
            Self::KeepAliveTimeout => ReasonCode::KeepAliveTimeout,
            Self::ProtocolError(_) => ReasonCode::ProtocolError,
            Self::BadPacket { code, .. } => *code,
            // The client does not read: the limit on what it leaves unread is exceeded (sent
            // if its socket still takes it).
            Self::StalledReader => ReasonCode::QuotaExceeded,
            Self::PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            Self::ReceiveMaximumExceeded { .. } => ReasonCode::ReceiveMaximumExceeded,
            Self::TopicAliasInvalid(_) => ReasonCode::TopicAliasInvalid,
            Self::TakenOver => ReasonCode::SessionTakenOver,
            Self::ServerShutdown => ReasonCode::ServerShuttingDown,
            Self::NotStored(_) => ReasonCode::UnspecifiedError,
            _ => return None,
        })
    }

    /// Whether the will message is published for a connection that ended this way.
    pub fn publishes_will(&self) -> bool {
        !matches!(
            self,
            Self::ClientDisconnect | Self::Refused(_) | Self::ServerShutdown
        )
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ClientDisconnect => f.write_str("disconnect"),
            Self::ClientDisconnectWithWill => f.write_str("disconnect with will"),
            Self::KeepAliveTimeout => f.write_str("keep-alive timeout"),
            Self::ConnectTimeout => f.write_str("connect timeout"),
            Self::SocketClosed => f.write_str("socket closed"),
            Self::SocketError(e) => write!(f, "socket error: {e}"),
            Self::ProtocolError(e) | Self::BadPacket { why: e, .. } => {
                write!(f, "protocol error: {e}")
            }
            Self::PacketTooLarge { size, max } => {
                write!(f, "packet too large: {size} bytes, maximum {max}")
            }
            Self::ReceiveMaximumExceeded { max } => {
                write!(
                    f,
                    "receive maximum exceeded: more than {max} QoS 1/2 publishes unacknowledged"
                )
            }
            Self::TopicAliasInvalid(e) => write!(f, "topic alias invalid: {e}"),
            Self::TakenOver => f.write_str("taken over"),
            Self::Refused(why) => write!(f, "refused: {why}"),
            Self::StalledReader => f.write_str("stalled reader"),
            Self::ServerShutdown => f.write_str("server shutdown"),
            Self::NotStored(e) => write!(f, "message not stored: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_disconnect_reasons() {
        use crate::reason::ReasonCode;
        let cases = [
            (
                CloseReason::ReceiveMaximumExceeded { max: 3 },
                Some(ReasonCode::ReceiveMaximumExceeded),
            ),
            (
                CloseReason::TopicAliasInvalid("0".into()),
                Some(ReasonCode::TopicAliasInvalid),
            ),
            (
                CloseReason::ProtocolError("x".into()),
                Some(ReasonCode::ProtocolError),
            ),
            (
                CloseReason::BadPacket {
                    code: ReasonCode::MalformedPacket,
                    why: "x".into(),
                },
                Some(ReasonCode::MalformedPacket),
            ),
            (CloseReason::StalledReader, Some(ReasonCode::QuotaExceeded)),
            (CloseReason::ClientDisconnect, None),
        ];
        for (reason, code) in cases {
            assert_eq!(reason.disconnect_reason(), code, "{reason}");
        }
        assert!(CloseReason::ReceiveMaximumExceeded { max: 3 }.publishes_will());
    }

    #[test]
    fn will_is_published_unless_disconnect_or_refusal() {
        assert!(!CloseReason::ClientDisconnect.publishes_will());
        assert!(CloseReason::ClientDisconnectWithWill.publishes_will());
        assert!(CloseReason::KeepAliveTimeout.publishes_will());
        assert!(CloseReason::TakenOver.publishes_will());
        assert!(CloseReason::ProtocolError("x".into()).publishes_will());
        assert!(CloseReason::SocketClosed.publishes_will());
    }
}
