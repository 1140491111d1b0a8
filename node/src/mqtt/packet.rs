//! MQTT control packets as plain values (MQTT 3.1 and 3.1.1).
//!
//! These types carry no IO and no protocol state. `decode` turns bytes into them, `encode`
//! turns them back into bytes. Payloads and topics are reference-counted (`Bytes`, `Arc<str>`)
//! so that a message fanned out to many subscribers is never copied.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

/// The protocol level a client asked for in CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtocolVersion {
    /// MQTT 3.1, protocol name `MQIsdp`, level 3.
    V31,
    /// MQTT 3.1.1, protocol name `MQTT`, level 4.
    V311,
}

impl ProtocolVersion {
    /// The protocol level byte of CONNECT.
    pub fn level(self) -> u8 {
        match self {
            Self::V31 => 3,
            Self::V311 => 4,
        }
    }

    /// The protocol name string of CONNECT.
    pub fn name(self) -> &'static str {
        match self {
            Self::V31 => "MQIsdp",
            Self::V311 => "MQTT",
        }
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V31 => f.write_str("3.1"),
            Self::V311 => f.write_str("3.1.1"),
        }
    }
}

/// Quality of service of a message or a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum QoS {
    /// At most once.
    #[default]
    AtMostOnce = 0,
    /// At least once.
    AtLeastOnce = 1,
    /// Exactly once.
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS for a 2-bit wire value, `None` for the reserved value 3.
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::AtMostOnce),
            1 => Some(Self::AtLeastOnce),
            2 => Some(Self::ExactlyOnce),
            _ => None,
        }
    }
}

/// A will message carried by CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastWill {
    /// Topic the will is published to.
    pub topic: Arc<str>,
    /// Will payload.
    pub payload: Bytes,
    /// QoS the will is published with.
    pub qos: QoS,
    /// Whether the will is retained.
    pub retain: bool,
}

/// CONNECT: the first packet of every connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// Protocol version asked for.
    pub protocol: ProtocolVersion,
    /// Clean session flag.
    pub clean_session: bool,
    /// Keep-alive in seconds, 0 for none.
    pub keep_alive: u16,
    /// Client identifier, possibly empty.
    pub client_id: String,
    /// The will, if any.
    pub will: Option<LastWill>,
    /// User name, if present.
    pub username: Option<String>,
    /// Password, if present (binary in 3.1.1).
    pub password: Option<Bytes>,
}

/// CONNACK return codes (MQTT 3.1.1 table 3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectReturnCode {
    /// 0: connection accepted.
    Accepted = 0,
    /// 1: the server does not support the protocol level.
    UnacceptableProtocolVersion = 1,
    /// 2: the client identifier is not allowed.
    IdentifierRejected = 2,
    /// 3: the MQTT service is unavailable.
    ServerUnavailable = 3,
    /// 4: malformed user name or password.
    BadUserNameOrPassword = 4,
    /// 5: the client is not authorized to connect.
    NotAuthorized = 5,
}

impl ConnectReturnCode {
    /// The code for a wire value.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::Accepted,
            1 => Self::UnacceptableProtocolVersion,
            2 => Self::IdentifierRejected,
            3 => Self::ServerUnavailable,
            4 => Self::BadUserNameOrPassword,
            5 => Self::NotAuthorized,
            _ => return None,
        })
    }
}

/// CONNACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnAck {
    /// Whether the server had a session for this client (always false in 3.1).
    pub session_present: bool,
    /// Return code.
    pub code: ConnectReturnCode,
}

/// PUBLISH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// DUP flag: this is a redelivery.
    pub dup: bool,
    /// QoS of this transmission.
    pub qos: QoS,
    /// RETAIN flag.
    pub retain: bool,
    /// Topic name (never contains wildcards).
    pub topic: Arc<str>,
    /// Packet identifier; 0 for QoS 0 (absent on the wire).
    pub packet_id: u16,
    /// Application payload.
    pub payload: Bytes,
}

/// SUBSCRIBE: a packet id and (filter, requested QoS) pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Packet identifier (non-zero).
    pub packet_id: u16,
    /// Topic filters with their requested maximum QoS. Filters are *not* validated by the
    /// decoder beyond UTF-8: an invalid filter is answered with 0x80 in SUBACK.
    pub filters: Vec<(String, QoS)>,
}

/// One return code in SUBACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubAckCode {
    /// Subscription accepted at this maximum QoS.
    Granted(QoS),
    /// 0x80: subscription refused.
    Failure,
}

/// SUBACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    /// Packet identifier of the SUBSCRIBE answered.
    pub packet_id: u16,
    /// One code per filter, in order.
    pub codes: Vec<SubAckCode>,
}

/// UNSUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Packet identifier (non-zero).
    pub packet_id: u16,
    /// Topic filters to remove.
    pub filters: Vec<String>,
}

/// An MQTT control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// CONNECT (1).
    Connect(Connect),
    /// CONNACK (2).
    ConnAck(ConnAck),
    /// PUBLISH (3).
    Publish(Publish),
    /// PUBACK (4) with its packet id.
    PubAck(u16),
    /// PUBREC (5) with its packet id.
    PubRec(u16),
    /// PUBREL (6) with its packet id.
    PubRel(u16),
    /// PUBCOMP (7) with its packet id.
    PubComp(u16),
    /// SUBSCRIBE (8).
    Subscribe(Subscribe),
    /// SUBACK (9).
    SubAck(SubAck),
    /// UNSUBSCRIBE (10).
    Unsubscribe(Unsubscribe),
    /// UNSUBACK (11) with its packet id.
    UnsubAck(u16),
    /// PINGREQ (12).
    PingReq,
    /// PINGRESP (13).
    PingResp,
    /// DISCONNECT (14).
    Disconnect,
}

impl Packet {
    /// The packet type's name, as logs show it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Connect(_) => "CONNECT",
            Self::ConnAck(_) => "CONNACK",
            Self::Publish(_) => "PUBLISH",
            Self::PubAck(_) => "PUBACK",
            Self::PubRec(_) => "PUBREC",
            Self::PubRel(_) => "PUBREL",
            Self::PubComp(_) => "PUBCOMP",
            Self::Subscribe(_) => "SUBSCRIBE",
            Self::SubAck(_) => "SUBACK",
            Self::Unsubscribe(_) => "UNSUBSCRIBE",
            Self::UnsubAck(_) => "UNSUBACK",
            Self::PingReq => "PINGREQ",
            Self::PingResp => "PINGRESP",
            Self::Disconnect => "DISCONNECT",
        }
    }

    /// The packet identifier, for the packet types that carry one (0 for QoS 0 PUBLISH).
    pub fn packet_id(&self) -> Option<u16> {
        match self {
            Self::Publish(p) => Some(p.packet_id),
            Self::PubAck(id)
            | Self::PubRec(id)
            | Self::PubRel(id)
            | Self::PubComp(id)
            | Self::UnsubAck(id) => Some(*id),
            Self::Subscribe(s) => Some(s.packet_id),
            Self::SubAck(s) => Some(s.packet_id),
            Self::Unsubscribe(u) => Some(u.packet_id),
            _ => None,
        }
    }
}
