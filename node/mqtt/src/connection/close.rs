//! How a connection ends: the client's DISCONNECT (and the session expiry it may change), what
//! a packet that cannot be decoded closes it with, and the DISCONNECT that tells an MQTT 5.0
//! client why the server ends it.

use std::collections::VecDeque;

use super::{CloseReason, Connection};
use crate::decode::DecodeError;
use crate::packet::{ConnAck, ConnectReturnCode, Disconnect, Packet, Properties, ProtocolVersion};
use crate::reason::ReasonCode;

/// What a client's DISCONNECT says (`Connection::on_disconnect`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientDisconnect {
    /// How the connection ends: with or without the will (MQTT 5.0 reason 0x04).
    pub reason: CloseReason,
    /// The session expiry interval the DISCONNECT sets (MQTT 5.0), if it sets one.
    pub session_expiry: Option<u32>,
}

impl Connection {
    /// The client sent DISCONNECT. A session expiry interval may be changed there, except
    /// from 0 in CONNECT to more: a protocol error (MQTT-3.14.2-2), returned as the reason to
    /// close with, the expiry left as it was.
    pub fn on_disconnect(&self, d: &Disconnect) -> Result<ClientDisconnect, CloseReason> {
        let expiry = d.properties.session_expiry_interval;
        if expiry.is_some_and(|secs| secs > 0) && self.session_expiry == Some(0) {
            return Err(CloseReason::ProtocolError(
                "session expiry interval set on DISCONNECT after 0 in CONNECT".into(),
            ));
        }
        Ok(ClientDisconnect {
            reason: if d.reason == ReasonCode::DisconnectWithWillMessage {
                CloseReason::ClientDisconnectWithWill
            } else {
                CloseReason::ClientDisconnect
            },
            session_expiry: expiry,
        })
    }

    /// A packet could not be decoded: why the connection closes. Before CONNECT, a protocol
    /// level the server does not speak is answered first (CONNACK 1, `poll_transmit`).
    #[must_use]
    pub fn on_decode_error(&mut self, error: DecodeError) -> CloseReason {
        match error {
            DecodeError::PacketTooLarge { size, max } => CloseReason::PacketTooLarge { size, max },
            // A topic alias of 0: DISCONNECT 0x94 (MQTT-3.3.2-8, 5.0 section 3.3.2.3.4).
            e if e.reason_code() == ReasonCode::TopicAliasInvalid => {
                CloseReason::TopicAliasInvalid(e.to_string())
            }
            DecodeError::UnsupportedProtocolLevel(_) if !self.is_connected() => {
                self.transmit.push_back(Packet::ConnAck(ConnAck::new(
                    false,
                    ConnectReturnCode::UnacceptableProtocolVersion,
                )));
                CloseReason::Refused("unacceptable protocol level")
            }
            other => CloseReason::BadPacket {
                code: other.reason_code(),
                why: other.to_string(),
            },
        }
    }

    /// The server ends the connection for `reason`: an MQTT 5.0 client it accepted is told
    /// why (`poll_transmit`), with a reason string that says what the server's log says
    /// (MQTT-3.1.2-29 allows it on DISCONNECT whatever the client asked). Nothing is sent when
    /// the client ended it, or before CONNACK.
    pub fn close(&mut self, reason: &CloseReason) {
        if self.protocol != ProtocolVersion::V5 || !self.is_connected() {
            return;
        }
        if let Some(code) = reason.disconnect_reason() {
            let properties = Properties {
                reason_string: Some(reason.to_string().into()),
                ..Default::default()
            };
            self.transmit.push_back(Packet::Disconnect(Disconnect {
                reason: code,
                properties,
            }));
        }
    }

    /// The next packet the connection itself sends (a PINGRESP, a refusing CONNACK, the
    /// closing DISCONNECT), in order; the driver encodes and writes it.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Packet> {
        let packet = self.transmit.pop_front();
        if self.transmit.is_empty() && self.transmit.capacity() > 0 && self.input.is_empty() {
            // Nothing more is buffered: an idle connection keeps no room for packets (a
            // CONNACK or SUBACK once sent would otherwise hold ~1.3 KB for its whole life).
            self.transmit = VecDeque::new();
        }
        packet
    }
}
