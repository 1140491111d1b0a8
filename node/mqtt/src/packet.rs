//! MQTT control packets as plain values (MQTT 3.1, 3.1.1 and 5.0).
//!
//! These types carry no IO and no protocol state. `decode` turns bytes into them, `encode`
//! turns them back into bytes. Payloads and topics are reference-counted (`Bytes`, `Arc<str>`)
//! so that a message fanned out to many subscribers is never copied.
//!
//! One set of types serves every version. The MQTT 5.0 fields (`properties`, reason codes,
//! subscription options) have defaults that mean "what 3.1.1 says": empty properties, reason
//! code 0x00, plain QoS subscriptions. Encoding for 3.1/3.1.1 leaves them out, so building a
//! packet with `..Default::default()`-style defaults gives the same bytes as before version 5.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

pub use super::properties::Properties;
pub use super::reason::ReasonCode;

/// The protocol level a client asked for in CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtocolVersion {
    /// MQTT 3.1, protocol name `MQIsdp`, level 3.
    V31,
    /// MQTT 3.1.1, protocol name `MQTT`, level 4.
    V311,
    /// MQTT 5.0, protocol name `MQTT`, level 5.
    V5,
}

impl ProtocolVersion {
    /// The protocol level byte of CONNECT.
    pub fn level(self) -> u8 {
        match self {
            Self::V31 => 3,
            Self::V311 => 4,
            Self::V5 => 5,
        }
    }

    /// The protocol name string of CONNECT.
    pub fn name(self) -> &'static str {
        match self {
            Self::V31 => "MQIsdp",
            Self::V311 | Self::V5 => "MQTT",
        }
    }

    /// Whether this is MQTT 5.0 (properties and reason codes on the wire).
    pub fn is_v5(self) -> bool {
        self == Self::V5
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V31 => f.write_str("3.1"),
            Self::V311 => f.write_str("3.1.1"),
            Self::V5 => f.write_str("5.0"),
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
    /// Will properties (MQTT 5.0; empty otherwise).
    pub properties: Properties,
}

/// CONNECT: the first packet of every connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// Protocol version asked for.
    pub protocol: ProtocolVersion,
    /// Clean session flag (clean start in MQTT 5.0).
    pub clean_session: bool,
    /// Keep-alive in seconds, 0 for none.
    pub keep_alive: u16,
    /// Client identifier, possibly empty.
    pub client_id: String,
    /// The will, if any.
    pub will: Option<LastWill>,
    /// User name, if present.
    pub username: Option<String>,
    /// Password, if present (binary in 3.1.1; MQTT 5.0 allows it without a user name).
    pub password: Option<Bytes>,
    /// CONNECT properties (MQTT 5.0; empty otherwise).
    pub properties: Properties,
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    /// Whether the server had a session for this client (always false in 3.1).
    pub session_present: bool,
    /// The outcome, one of [`reason::CONNACK`](super::reason::CONNACK). For 3.1/3.1.1 it is
    /// sent as [`ReasonCode::connect_return_code`], and it compares equal to a
    /// [`ConnectReturnCode`]; build one from a 3.1.1 code with `.into()`.
    pub code: ReasonCode,
    /// CONNACK properties (MQTT 5.0; empty otherwise).
    pub properties: Properties,
}

impl ConnAck {
    /// A CONNACK without properties.
    pub fn new(session_present: bool, code: impl Into<ReasonCode>) -> Self {
        Self {
            session_present,
            code: code.into(),
            properties: Properties::default(),
        }
    }
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
    /// Topic name (never contains wildcards). Empty only in MQTT 5.0 with a topic alias.
    pub topic: Arc<str>,
    /// Packet identifier; 0 for QoS 0 (absent on the wire).
    pub packet_id: u16,
    /// Application payload.
    pub payload: Bytes,
    /// PUBLISH properties (MQTT 5.0; empty otherwise).
    pub properties: Properties,
}

/// What retain handling in MQTT 5.0 subscription options asks for (3.1.1 is always
/// `OnSubscribe`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetainHandling {
    /// 0: send retained messages at every subscribe.
    #[default]
    OnSubscribe = 0,
    /// 1: send retained messages only if the subscription is new.
    OnNewSubscription = 1,
    /// 2: never send retained messages for this subscription.
    Never = 2,
}

/// The options byte after each topic filter of SUBSCRIBE: the requested QoS, and in MQTT 5.0
/// no local, retain as published and retain handling (section 3.8.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FilterOptions {
    /// Maximum QoS requested.
    pub qos: QoS,
    /// MQTT 5.0 no local: do not send the subscriber its own messages.
    pub no_local: bool,
    /// MQTT 5.0 retain as published: keep the retain flag when forwarding.
    pub retain_as_published: bool,
    /// MQTT 5.0 retain handling.
    pub retain_handling: RetainHandling,
}

impl From<QoS> for FilterOptions {
    fn from(qos: QoS) -> Self {
        Self {
            qos,
            ..Self::default()
        }
    }
}

/// SUBSCRIBE: a packet id and (filter, options) pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Packet identifier (non-zero).
    pub packet_id: u16,
    /// Topic filters with their options (for 3.1/3.1.1 only the QoS). Filters are *not*
    /// validated by the decoder beyond UTF-8: an invalid filter is answered with 0x80 in
    /// SUBACK.
    pub filters: Vec<(String, FilterOptions)>,
    /// SUBSCRIBE properties (MQTT 5.0: a subscription identifier, user properties).
    pub properties: Properties,
}

/// One return code in SUBACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubAckCode {
    /// Subscription accepted at this maximum QoS (0x00, 0x01, 0x02).
    Granted(QoS),
    /// 0x80: subscription refused (MQTT 5.0 "Unspecified error").
    Failure,
    /// MQTT 5.0: refused for this reason, one of [`reason::SUBACK`](super::reason::SUBACK)
    /// at or above 0x83 (sent as 0x80 to a 3.1/3.1.1 client).
    Refused(ReasonCode),
}

/// SUBACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    /// Packet identifier of the SUBSCRIBE answered.
    pub packet_id: u16,
    /// One code per filter, in order.
    pub codes: Vec<SubAckCode>,
    /// SUBACK properties (MQTT 5.0; empty otherwise).
    pub properties: Properties,
}

/// UNSUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Packet identifier (non-zero).
    pub packet_id: u16,
    /// Topic filters to remove.
    pub filters: Vec<String>,
    /// UNSUBSCRIBE properties (MQTT 5.0; empty otherwise).
    pub properties: Properties,
}

/// UNSUBACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    /// Packet identifier of the UNSUBSCRIBE answered.
    pub packet_id: u16,
    /// MQTT 5.0: one of [`reason::UNSUBACK`](super::reason::UNSUBACK) per filter, in order;
    /// empty for 3.1/3.1.1, which has none on the wire.
    pub reasons: Vec<ReasonCode>,
    /// UNSUBACK properties (MQTT 5.0; empty otherwise).
    pub properties: Properties,
}

impl UnsubAck {
    /// A 3.1/3.1.1 UNSUBACK: the packet id only.
    pub fn new(packet_id: u16) -> Self {
        Self {
            packet_id,
            reasons: Vec::new(),
            properties: Properties::default(),
        }
    }
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP: the four acknowledgements of PUBLISH share one shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// Packet identifier of the PUBLISH (or PUBREC/PUBREL) answered.
    pub packet_id: u16,
    /// MQTT 5.0 reason code, one of [`reason::PUBACK`](super::reason::PUBACK) (PUBACK,
    /// PUBREC) or [`reason::PUBREL`](super::reason::PUBREL) (PUBREL, PUBCOMP); `Success` for
    /// 3.1/3.1.1, which has none on the wire.
    pub reason: ReasonCode,
    /// MQTT 5.0 properties (reason string, user properties).
    pub properties: Properties,
}

impl Ack {
    /// A successful acknowledgement of `packet_id`, without properties: the only form
    /// 3.1/3.1.1 has, and the short (2-byte) form of MQTT 5.0.
    pub fn new(packet_id: u16) -> Self {
        Self {
            packet_id,
            reason: ReasonCode::Success,
            properties: Properties::default(),
        }
    }
}

/// DISCONNECT. 3.1/3.1.1 has no fields; MQTT 5.0 sends it both ways with a reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Disconnect {
    /// One of [`reason::DISCONNECT`](super::reason::DISCONNECT); `Success` is "Normal
    /// disconnection".
    pub reason: ReasonCode,
    /// MQTT 5.0 properties (session expiry interval, reason string, server reference, user
    /// properties).
    pub properties: Properties,
}

/// AUTH (MQTT 5.0 only): a step of enhanced authentication.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Auth {
    /// One of [`reason::AUTH`](super::reason::AUTH).
    pub reason: ReasonCode,
    /// Authentication method and data, reason string, user properties.
    pub properties: Properties,
}

/// An MQTT control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// CONNECT (1), boxed: with its two property sets it would double the size of every
    /// packet, and a PUBLISH is moved several times on its way out (measured: a tenth of the
    /// fan-out's CPU was copying 704-byte packets).
    Connect(Box<Connect>),
    /// CONNACK (2).
    ConnAck(ConnAck),
    /// PUBLISH (3).
    Publish(Publish),
    /// PUBACK (4).
    PubAck(Ack),
    /// PUBREC (5).
    PubRec(Ack),
    /// PUBREL (6).
    PubRel(Ack),
    /// PUBCOMP (7).
    PubComp(Ack),
    /// SUBSCRIBE (8).
    Subscribe(Subscribe),
    /// SUBACK (9).
    SubAck(SubAck),
    /// UNSUBSCRIBE (10).
    Unsubscribe(Unsubscribe),
    /// UNSUBACK (11).
    UnsubAck(UnsubAck),
    /// PINGREQ (12).
    PingReq,
    /// PINGRESP (13).
    PingResp,
    /// DISCONNECT (14).
    Disconnect(Disconnect),
    /// AUTH (15, MQTT 5.0 only).
    Auth(Auth),
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
            Self::Disconnect(_) => "DISCONNECT",
            Self::Auth(_) => "AUTH",
        }
    }

    /// The packet identifier, for the packet types that carry one (0 for QoS 0 PUBLISH).
    pub fn packet_id(&self) -> Option<u16> {
        match self {
            Self::Publish(p) => Some(p.packet_id),
            Self::PubAck(a) | Self::PubRec(a) | Self::PubRel(a) | Self::PubComp(a) => {
                Some(a.packet_id)
            }
            Self::UnsubAck(u) => Some(u.packet_id),
            Self::Subscribe(s) => Some(s.packet_id),
            Self::SubAck(s) => Some(s.packet_id),
            Self::Unsubscribe(u) => Some(u.packet_id),
            _ => None,
        }
    }
}
