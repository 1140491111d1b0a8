//! The rules of one network connection, sans-IO: which packet may come when, and its timers.
//!
//! `ConnectionState` knows nothing of sessions or routing. It checks the order of packets
//! (CONNECT first and only once, no server-to-client packet types from a client), tracks the
//! CONNECT timeout and the keep-alive (1.5 times the client's interval, MQTT-3.1.2-24), and
//! tells its driver when to wake up. Time is passed in; nothing here reads a clock.

use std::fmt;
use std::time::{Duration, Instant};

use super::packet::Packet;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitingConnect { deadline: Instant },
    Connected,
}

/// The phase and timers of one connection.
#[derive(Debug)]
pub struct ConnectionState {
    phase: Phase,
    /// Keep-alive grace: 1.5 × the client's keep-alive, `None` when it asked for none.
    keep_alive: Option<Duration>,
    last_received: Instant,
}

impl ConnectionState {
    /// A connection just accepted at `now`, which must send CONNECT within `connect_timeout`.
    pub fn new(now: Instant, connect_timeout: Duration) -> Self {
        Self {
            phase: Phase::AwaitingConnect {
                deadline: now + connect_timeout,
            },
            keep_alive: None,
            last_received: now,
        }
    }

    /// A packet arrived at `now`: checks it is allowed at this point of the connection.
    pub fn on_packet(&mut self, now: Instant, packet: &Packet) -> Result<(), CloseReason> {
        self.last_received = now;
        let violation = |why: &str| Err(CloseReason::ProtocolError(why.to_owned()));
        match (self.phase, packet) {
            (Phase::AwaitingConnect { .. }, Packet::Connect(_)) => Ok(()),
            (Phase::AwaitingConnect { .. }, _) => violation("first packet is not CONNECT"),
            (Phase::Connected, Packet::Connect(_)) => violation("second CONNECT"),
            (
                Phase::Connected,
                Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp,
            ) => Err(CloseReason::ProtocolError(format!(
                "{} is a server-to-client packet",
                packet.kind()
            ))),
            (Phase::Connected, _) => Ok(()),
        }
    }

    /// CONNECT was accepted at `now` with this keep-alive (seconds, 0 for none).
    pub fn on_connected(&mut self, now: Instant, keep_alive_secs: u16) {
        self.phase = Phase::Connected;
        self.last_received = now;
        self.keep_alive =
            (keep_alive_secs > 0).then(|| Duration::from_millis(u64::from(keep_alive_secs) * 1500));
    }

    /// Whether CONNECT has been accepted.
    pub fn is_connected(&self) -> bool {
        self.phase == Phase::Connected
    }

    /// When the driver must call `handle_timeout` next, if ever.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::AwaitingConnect { deadline } => Some(deadline),
            Phase::Connected => self.keep_alive.map(|k| self.last_received + k),
        }
    }

    /// Time has reached `now`: returns why the connection must close, if it must.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<CloseReason> {
        let deadline = self.poll_timeout()?;
        if now < deadline {
            return None;
        }
        Some(match self.phase {
            Phase::AwaitingConnect { .. } => CloseReason::ConnectTimeout,
            Phase::Connected => CloseReason::KeepAliveTimeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{Connect, ProtocolVersion};

    fn connect() -> Packet {
        Packet::Connect(Connect {
            protocol: ProtocolVersion::V311,
            clean_session: true,
            keep_alive: 10,
            client_id: "c".into(),
            will: None,
            username: None,
            password: None,
            properties: Default::default(),
        })
    }

    #[test]
    fn connect_timeout_fires_only_at_deadline() {
        let t0 = Instant::now();
        let mut c = ConnectionState::new(t0, Duration::from_secs(10));
        assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(10)));
        assert_eq!(c.handle_timeout(t0 + Duration::from_secs(9)), None);
        assert_eq!(
            c.handle_timeout(t0 + Duration::from_secs(10)),
            Some(CloseReason::ConnectTimeout)
        );
    }

    #[test]
    fn keep_alive_is_one_and_a_half_intervals_from_last_packet() {
        let t0 = Instant::now();
        let mut c = ConnectionState::new(t0, Duration::from_secs(10));
        c.on_packet(t0, &connect()).unwrap();
        c.on_connected(t0, 10);
        assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(15)));
        let t1 = t0 + Duration::from_secs(14);
        assert_eq!(c.handle_timeout(t1), None);
        c.on_packet(t1, &Packet::PingReq).unwrap();
        assert_eq!(c.handle_timeout(t0 + Duration::from_secs(28)), None);
        assert_eq!(
            c.handle_timeout(t1 + Duration::from_secs(15)),
            Some(CloseReason::KeepAliveTimeout)
        );
    }

    #[test]
    fn keep_alive_zero_never_times_out() {
        let t0 = Instant::now();
        let mut c = ConnectionState::new(t0, Duration::from_secs(10));
        c.on_packet(t0, &connect()).unwrap();
        c.on_connected(t0, 0);
        assert_eq!(c.poll_timeout(), None);
        assert_eq!(c.handle_timeout(t0 + Duration::from_secs(1_000_000)), None);
    }

    #[test]
    fn packet_order_rules() {
        let t0 = Instant::now();
        let mut c = ConnectionState::new(t0, Duration::from_secs(10));
        assert!(matches!(
            c.on_packet(t0, &Packet::PingReq),
            Err(CloseReason::ProtocolError(_))
        ));
        let mut c = ConnectionState::new(t0, Duration::from_secs(10));
        c.on_packet(t0, &connect()).unwrap();
        c.on_connected(t0, 0);
        assert!(c.on_packet(t0, &Packet::PingReq).is_ok());
        assert!(matches!(
            c.on_packet(t0, &connect()),
            Err(CloseReason::ProtocolError(_))
        ));
        assert!(matches!(
            c.on_packet(t0, &Packet::PingResp),
            Err(CloseReason::ProtocolError(_))
        ));
    }

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
