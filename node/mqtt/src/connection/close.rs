//! How a connection ends on the server's side: what a packet that cannot be decoded closes it
//! with, and the DISCONNECT that tells an MQTT 5.0 client why.

use super::{CloseReason, Connection};
use crate::decode::DecodeError;
use crate::packet::{ConnAck, ConnectReturnCode, Disconnect, Packet, Properties, ProtocolVersion};
use crate::reason::ReasonCode;

impl Connection {
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
        self.transmit.pop_front()
    }
}
