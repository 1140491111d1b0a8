//! MQTT 5.0 properties (section 2.2.2): one typed struct for every property identifier, and
//! their wire form.
//!
//! A property block is a variable byte integer length followed by `(identifier, value)`
//! pairs. Which identifiers a block may hold depends on where it sits (table 2-4): the
//! decoder refuses one that does not belong there, a second copy of one that may appear only
//! once, and a value the spec forbids (a receive maximum of 0, say), each with an error that
//! names the rule. Strings are `Arc<str>` and binary values `Bytes` slices of the frame, so a
//! message's properties travel to its subscribers without copies.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use super::decode::{DecodeError, Reader};
use super::encode::{put_varint, varint_len, EncodeError};
use super::packet::QoS;

/// Every MQTT 5.0 property; `None` / empty means absent. Fields only some packets may carry
/// are listed with them (table 2-4); [`PropertyContext`] says which belong where.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties {
    /// 0x01 payload format indicator: `Some(true)` for UTF-8 text (PUBLISH, will).
    pub payload_format_utf8: Option<bool>,
    /// 0x02 message expiry interval in seconds (PUBLISH, will).
    pub message_expiry_interval: Option<u32>,
    /// 0x03 content type (PUBLISH, will).
    pub content_type: Option<Arc<str>>,
    /// 0x08 response topic, a topic name (PUBLISH, will).
    pub response_topic: Option<Arc<str>>,
    /// 0x09 correlation data (PUBLISH, will).
    pub correlation_data: Option<Bytes>,
    /// 0x0B subscription identifiers, 1 to 268,435,455: at most one on SUBSCRIBE, one per
    /// matching subscription on a PUBLISH to a client.
    pub subscription_identifiers: Vec<u32>,
    /// 0x11 session expiry interval in seconds (CONNECT, CONNACK, DISCONNECT).
    pub session_expiry_interval: Option<u32>,
    /// 0x12 assigned client identifier (CONNACK).
    pub assigned_client_identifier: Option<Arc<str>>,
    /// 0x13 server keep alive in seconds (CONNACK).
    pub server_keep_alive: Option<u16>,
    /// 0x15 authentication method (CONNECT, CONNACK, AUTH).
    pub authentication_method: Option<Arc<str>>,
    /// 0x16 authentication data (CONNECT, CONNACK, AUTH).
    pub authentication_data: Option<Bytes>,
    /// 0x17 request problem information (CONNECT).
    pub request_problem_information: Option<bool>,
    /// 0x18 will delay interval in seconds (will).
    pub will_delay_interval: Option<u32>,
    /// 0x19 request response information (CONNECT).
    pub request_response_information: Option<bool>,
    /// 0x1A response information (CONNACK).
    pub response_information: Option<Arc<str>>,
    /// 0x1C server reference (CONNACK, DISCONNECT).
    pub server_reference: Option<Arc<str>>,
    /// 0x1F reason string (CONNACK, the acknowledgements, DISCONNECT, AUTH).
    pub reason_string: Option<Arc<str>>,
    /// 0x21 receive maximum, never 0 (CONNECT, CONNACK).
    pub receive_maximum: Option<u16>,
    /// 0x22 topic alias maximum (CONNECT, CONNACK).
    pub topic_alias_maximum: Option<u16>,
    /// 0x23 topic alias, never 0 (PUBLISH).
    pub topic_alias: Option<u16>,
    /// 0x24 maximum QoS, 0 or 1 (CONNACK).
    pub maximum_qos: Option<QoS>,
    /// 0x25 retain available (CONNACK).
    pub retain_available: Option<bool>,
    /// 0x26 user properties, in order, repeats allowed (every packet that has properties).
    pub user_properties: Vec<(Arc<str>, Arc<str>)>,
    /// 0x27 maximum packet size, never 0 (CONNECT, CONNACK).
    pub maximum_packet_size: Option<u32>,
    /// 0x28 wildcard subscription available (CONNACK).
    pub wildcard_subscription_available: Option<bool>,
    /// 0x29 subscription identifiers available (CONNACK).
    pub subscription_identifier_available: Option<bool>,
    /// 0x2A shared subscription available (CONNACK).
    pub shared_subscription_available: Option<bool>,
}

/// Where a property block sits, which decides the identifiers it may hold (table 2-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropertyContext {
    /// CONNECT's own properties.
    Connect,
    /// The will properties in CONNECT's payload.
    Will,
    /// CONNACK.
    ConnAck,
    /// PUBLISH.
    Publish,
    /// PUBACK.
    PubAck,
    /// PUBREC.
    PubRec,
    /// PUBREL.
    PubRel,
    /// PUBCOMP.
    PubComp,
    /// SUBSCRIBE.
    Subscribe,
    /// SUBACK.
    SubAck,
    /// UNSUBSCRIBE.
    Unsubscribe,
    /// UNSUBACK.
    UnsubAck,
    /// DISCONNECT.
    Disconnect,
    /// AUTH.
    Auth,
}

impl PropertyContext {
    /// The packet's name, as errors show it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Connect => "CONNECT",
            Self::Will => "CONNECT will properties",
            Self::ConnAck => "CONNACK",
            Self::Publish => "PUBLISH",
            Self::PubAck => "PUBACK",
            Self::PubRec => "PUBREC",
            Self::PubRel => "PUBREL",
            Self::PubComp => "PUBCOMP",
            Self::Subscribe => "SUBSCRIBE",
            Self::SubAck => "SUBACK",
            Self::Unsubscribe => "UNSUBSCRIBE",
            Self::UnsubAck => "UNSUBACK",
            Self::Disconnect => "DISCONNECT",
            Self::Auth => "AUTH",
        }
    }

    /// Whether property `id` may appear here (table 2-4).
    pub fn allows(self, id: u8) -> bool {
        use PropertyContext::*;
        match id {
            PAYLOAD_FORMAT_INDICATOR
            | MESSAGE_EXPIRY_INTERVAL
            | CONTENT_TYPE
            | RESPONSE_TOPIC
            | CORRELATION_DATA => matches!(self, Publish | Will),
            SUBSCRIPTION_IDENTIFIER => matches!(self, Publish | Subscribe),
            SESSION_EXPIRY_INTERVAL => matches!(self, Connect | ConnAck | Disconnect),
            ASSIGNED_CLIENT_IDENTIFIER
            | SERVER_KEEP_ALIVE
            | RESPONSE_INFORMATION
            | MAXIMUM_QOS
            | RETAIN_AVAILABLE
            | WILDCARD_SUBSCRIPTION_AVAILABLE
            | SUBSCRIPTION_IDENTIFIER_AVAILABLE
            | SHARED_SUBSCRIPTION_AVAILABLE => self == ConnAck,
            AUTHENTICATION_METHOD | AUTHENTICATION_DATA => matches!(self, Connect | ConnAck | Auth),
            REQUEST_PROBLEM_INFORMATION | REQUEST_RESPONSE_INFORMATION => self == Connect,
            WILL_DELAY_INTERVAL => self == Will,
            SERVER_REFERENCE => matches!(self, ConnAck | Disconnect),
            REASON_STRING => !matches!(self, Connect | Will | Publish | Subscribe | Unsubscribe),
            RECEIVE_MAXIMUM | TOPIC_ALIAS_MAXIMUM | MAXIMUM_PACKET_SIZE => {
                matches!(self, Connect | ConnAck)
            }
            TOPIC_ALIAS => self == Publish,
            USER_PROPERTY => true,
            _ => false,
        }
    }
}

/// 0x01.
pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
/// 0x02.
pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
/// 0x03.
pub const CONTENT_TYPE: u8 = 0x03;
/// 0x08.
pub const RESPONSE_TOPIC: u8 = 0x08;
/// 0x09.
pub const CORRELATION_DATA: u8 = 0x09;
/// 0x0B.
pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
/// 0x11.
pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
/// 0x12.
pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
/// 0x13.
pub const SERVER_KEEP_ALIVE: u8 = 0x13;
/// 0x15.
pub const AUTHENTICATION_METHOD: u8 = 0x15;
/// 0x16.
pub const AUTHENTICATION_DATA: u8 = 0x16;
/// 0x17.
pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
/// 0x18.
pub const WILL_DELAY_INTERVAL: u8 = 0x18;
/// 0x19.
pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
/// 0x1A.
pub const RESPONSE_INFORMATION: u8 = 0x1A;
/// 0x1C.
pub const SERVER_REFERENCE: u8 = 0x1C;
/// 0x1F.
pub const REASON_STRING: u8 = 0x1F;
/// 0x21.
pub const RECEIVE_MAXIMUM: u8 = 0x21;
/// 0x22.
pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
/// 0x23.
pub const TOPIC_ALIAS: u8 = 0x23;
/// 0x24.
pub const MAXIMUM_QOS: u8 = 0x24;
/// 0x25.
pub const RETAIN_AVAILABLE: u8 = 0x25;
/// 0x26.
pub const USER_PROPERTY: u8 = 0x26;
/// 0x27.
pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
/// 0x28.
pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
/// 0x29.
pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
/// 0x2A.
pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;

/// The spec's name of property `id`, `None` if the spec defines no such property.
pub fn property_name(id: u8) -> Option<&'static str> {
    Some(match id {
        PAYLOAD_FORMAT_INDICATOR => "Payload Format Indicator",
        MESSAGE_EXPIRY_INTERVAL => "Message Expiry Interval",
        CONTENT_TYPE => "Content Type",
        RESPONSE_TOPIC => "Response Topic",
        CORRELATION_DATA => "Correlation Data",
        SUBSCRIPTION_IDENTIFIER => "Subscription Identifier",
        SESSION_EXPIRY_INTERVAL => "Session Expiry Interval",
        ASSIGNED_CLIENT_IDENTIFIER => "Assigned Client Identifier",
        SERVER_KEEP_ALIVE => "Server Keep Alive",
        AUTHENTICATION_METHOD => "Authentication Method",
        AUTHENTICATION_DATA => "Authentication Data",
        REQUEST_PROBLEM_INFORMATION => "Request Problem Information",
        WILL_DELAY_INTERVAL => "Will Delay Interval",
        REQUEST_RESPONSE_INFORMATION => "Request Response Information",
        RESPONSE_INFORMATION => "Response Information",
        SERVER_REFERENCE => "Server Reference",
        REASON_STRING => "Reason String",
        RECEIVE_MAXIMUM => "Receive Maximum",
        TOPIC_ALIAS_MAXIMUM => "Topic Alias Maximum",
        TOPIC_ALIAS => "Topic Alias",
        MAXIMUM_QOS => "Maximum QoS",
        RETAIN_AVAILABLE => "Retain Available",
        USER_PROPERTY => "User Property",
        MAXIMUM_PACKET_SIZE => "Maximum Packet Size",
        WILDCARD_SUBSCRIPTION_AVAILABLE => "Wildcard Subscription Available",
        SUBSCRIPTION_IDENTIFIER_AVAILABLE => "Subscription Identifier Available",
        SHARED_SUBSCRIPTION_AVAILABLE => "Shared Subscription Available",
        _ => return None,
    })
}

/// The largest value of a variable byte integer (a subscription identifier, say).
pub const MAX_VARIABLE_BYTE_INTEGER: u32 = 268_435_455;

impl Properties {
    /// Whether no property is set (the block is then one zero byte on the wire).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Reads a property block (length and properties) at the front of `r`, for `ctx`.
    pub(super) fn read(r: &mut Reader, ctx: PropertyContext) -> Result<Self, DecodeError> {
        let len = r.varint()?;
        let available = r.len();
        if len > available {
            return Err(DecodeError::PropertyLengthExceedsPacket { len, available });
        }
        let mut block = r.sub(len);
        let mut p = Self::default();
        while !block.is_empty() {
            // The identifier is a variable byte integer, but every defined one is below 0x80:
            // a byte with its high bit set is an unknown identifier either way.
            let id = block.u8()?;
            let Some(name) = property_name(id) else {
                return Err(DecodeError::UnknownProperty(id));
            };
            if !ctx.allows(id) {
                return Err(DecodeError::PropertyNotAllowed {
                    property: name,
                    packet: ctx.name(),
                });
            }
            p.read_one(id, name, ctx, &mut block)?;
        }
        Ok(p)
    }

    /// Reads the value of property `id` into its field.
    fn read_one(
        &mut self,
        id: u8,
        name: &'static str,
        ctx: PropertyContext,
        r: &mut Reader,
    ) -> Result<(), DecodeError> {
        fn once<T>(slot: &mut Option<T>, value: T, name: &'static str) -> Result<(), DecodeError> {
            if slot.is_some() {
                return Err(DecodeError::DuplicateProperty(name));
            }
            *slot = Some(value);
            Ok(())
        }
        let invalid = |value: u32, rule: &'static str| DecodeError::InvalidPropertyValue {
            property: name,
            value,
            rule,
        };
        let flag = |r: &mut Reader| -> Result<bool, DecodeError> {
            match r.u8()? {
                0 => Ok(false),
                1 => Ok(true),
                v => Err(invalid(
                    u32::from(v),
                    "a boolean property is 0 or 1 (MQTT 5.0 2.2.2.2)",
                )),
            }
        };
        match id {
            PAYLOAD_FORMAT_INDICATOR => {
                let v = r.u8()?;
                if v > 1 {
                    return Err(invalid(
                        u32::from(v),
                        "payload format indicator is 0 or 1 (MQTT 5.0 3.3.2.3.2)",
                    ));
                }
                once(&mut self.payload_format_utf8, v == 1, name)
            }
            MESSAGE_EXPIRY_INTERVAL => once(&mut self.message_expiry_interval, r.u32()?, name),
            CONTENT_TYPE => once(&mut self.content_type, r.arc_str()?, name),
            RESPONSE_TOPIC => {
                let topic = r.arc_str()?;
                if topic.is_empty() || topic.contains(['+', '#']) {
                    return Err(DecodeError::InvalidResponseTopic);
                }
                once(&mut self.response_topic, topic, name)
            }
            CORRELATION_DATA => once(&mut self.correlation_data, r.binary()?, name),
            SUBSCRIPTION_IDENTIFIER => {
                let v = r.varint()?;
                if v == 0 {
                    return Err(invalid(
                        0,
                        "a subscription identifier of 0 is a protocol error (MQTT 5.0 3.8.2.1.2)",
                    ));
                }
                if ctx == PropertyContext::Subscribe && !self.subscription_identifiers.is_empty() {
                    return Err(DecodeError::DuplicateProperty(name));
                }
                // Lossless: a variable byte integer is at most 268,435,455.
                self.subscription_identifiers
                    .push(u32::try_from(v).unwrap_or(MAX_VARIABLE_BYTE_INTEGER));
                Ok(())
            }
            SESSION_EXPIRY_INTERVAL => once(&mut self.session_expiry_interval, r.u32()?, name),
            ASSIGNED_CLIENT_IDENTIFIER => {
                once(&mut self.assigned_client_identifier, r.arc_str()?, name)
            }
            SERVER_KEEP_ALIVE => once(&mut self.server_keep_alive, r.u16()?, name),
            AUTHENTICATION_METHOD => once(&mut self.authentication_method, r.arc_str()?, name),
            AUTHENTICATION_DATA => once(&mut self.authentication_data, r.binary()?, name),
            REQUEST_PROBLEM_INFORMATION => {
                once(&mut self.request_problem_information, flag(r)?, name)
            }
            WILL_DELAY_INTERVAL => once(&mut self.will_delay_interval, r.u32()?, name),
            REQUEST_RESPONSE_INFORMATION => {
                once(&mut self.request_response_information, flag(r)?, name)
            }
            RESPONSE_INFORMATION => once(&mut self.response_information, r.arc_str()?, name),
            SERVER_REFERENCE => once(&mut self.server_reference, r.arc_str()?, name),
            REASON_STRING => once(&mut self.reason_string, r.arc_str()?, name),
            RECEIVE_MAXIMUM => {
                let v = r.u16()?;
                if v == 0 {
                    return Err(invalid(
                        0,
                        "a receive maximum of 0 is a protocol error (MQTT 5.0 3.1.2.11.3, 3.2.2.3.3)",
                    ));
                }
                once(&mut self.receive_maximum, v, name)
            }
            TOPIC_ALIAS_MAXIMUM => once(&mut self.topic_alias_maximum, r.u16()?, name),
            TOPIC_ALIAS => {
                let v = r.u16()?;
                if v == 0 {
                    return Err(invalid(
                        0,
                        "a topic alias of 0 is not permitted (MQTT-3.3.2-8)",
                    ));
                }
                once(&mut self.topic_alias, v, name)
            }
            MAXIMUM_QOS => {
                let v = r.u8()?;
                let qos = match v {
                    0 => QoS::AtMostOnce,
                    1 => QoS::AtLeastOnce,
                    _ => {
                        return Err(invalid(
                            u32::from(v),
                            "maximum QoS is 0 or 1 (MQTT 5.0 3.2.2.3.4)",
                        ))
                    }
                };
                once(&mut self.maximum_qos, qos, name)
            }
            RETAIN_AVAILABLE => once(&mut self.retain_available, flag(r)?, name),
            USER_PROPERTY => {
                let key = r.arc_str()?;
                let value = r.arc_str()?;
                self.user_properties.push((key, value));
                Ok(())
            }
            MAXIMUM_PACKET_SIZE => {
                let v = r.u32()?;
                if v == 0 {
                    return Err(invalid(
                        0,
                        "a maximum packet size of 0 is a protocol error (MQTT 5.0 3.1.2.11.4, 3.2.2.3.6)",
                    ));
                }
                once(&mut self.maximum_packet_size, v, name)
            }
            WILDCARD_SUBSCRIPTION_AVAILABLE => {
                once(&mut self.wildcard_subscription_available, flag(r)?, name)
            }
            SUBSCRIPTION_IDENTIFIER_AVAILABLE => {
                once(&mut self.subscription_identifier_available, flag(r)?, name)
            }
            SHARED_SUBSCRIPTION_AVAILABLE => {
                once(&mut self.shared_subscription_available, flag(r)?, name)
            }
            _ => Err(DecodeError::UnknownProperty(id)),
        }
    }

    /// Bytes of the properties themselves, without the length in front.
    pub(super) fn body_len(&self) -> usize {
        let byte = |o: Option<bool>| o.map_or(0, |_| 2);
        let u16_ = |o: Option<u16>| o.map_or(0, |_| 3);
        let u32_ = |o: Option<u32>| o.map_or(0, |_| 5);
        let text = |o: &Option<Arc<str>>| o.as_ref().map_or(0, |s| 3 + s.len());
        let bin = |o: &Option<Bytes>| o.as_ref().map_or(0, |b| 3 + b.len());
        byte(self.payload_format_utf8)
            + u32_(self.message_expiry_interval)
            + text(&self.content_type)
            + text(&self.response_topic)
            + bin(&self.correlation_data)
            + self
                .subscription_identifiers
                .iter()
                .map(|&id| 1 + varint_len(id as usize))
                .sum::<usize>()
            + u32_(self.session_expiry_interval)
            + text(&self.assigned_client_identifier)
            + u16_(self.server_keep_alive)
            + text(&self.authentication_method)
            + bin(&self.authentication_data)
            + byte(self.request_problem_information)
            + u32_(self.will_delay_interval)
            + byte(self.request_response_information)
            + text(&self.response_information)
            + text(&self.server_reference)
            + text(&self.reason_string)
            + u16_(self.receive_maximum)
            + u16_(self.topic_alias_maximum)
            + u16_(self.topic_alias)
            + self.maximum_qos.map_or(0, |_| 2)
            + byte(self.retain_available)
            + self
                .user_properties
                .iter()
                .map(|(k, v)| 5 + k.len() + v.len())
                .sum::<usize>()
            + u32_(self.maximum_packet_size)
            + byte(self.wildcard_subscription_available)
            + byte(self.subscription_identifier_available)
            + byte(self.shared_subscription_available)
    }

    /// Bytes of the whole block: the length and the properties.
    pub(super) fn block_len(&self) -> usize {
        let body = self.body_len();
        varint_len(body) + body
    }

    /// Checks that the properties may be written in `ctx`: each allowed there (table 2-4),
    /// each string and binary value within 65,535 bytes, each subscription identifier within
    /// 1 to 268,435,455.
    pub(super) fn check(&self, ctx: PropertyContext) -> Result<(), EncodeError> {
        let mut present: Vec<(u8, usize)> = Vec::new();
        let mut note = |id: u8, is_set: bool, len: usize| {
            if is_set {
                present.push((id, len));
            }
        };
        let text = |o: &Option<Arc<str>>| o.as_ref().map_or(0, |s| s.len());
        let bin = |o: &Option<Bytes>| o.as_ref().map_or(0, Bytes::len);
        note(
            PAYLOAD_FORMAT_INDICATOR,
            self.payload_format_utf8.is_some(),
            0,
        );
        note(
            MESSAGE_EXPIRY_INTERVAL,
            self.message_expiry_interval.is_some(),
            0,
        );
        note(
            CONTENT_TYPE,
            self.content_type.is_some(),
            text(&self.content_type),
        );
        note(
            RESPONSE_TOPIC,
            self.response_topic.is_some(),
            text(&self.response_topic),
        );
        note(
            CORRELATION_DATA,
            self.correlation_data.is_some(),
            bin(&self.correlation_data),
        );
        note(
            SUBSCRIPTION_IDENTIFIER,
            !self.subscription_identifiers.is_empty(),
            0,
        );
        note(
            SESSION_EXPIRY_INTERVAL,
            self.session_expiry_interval.is_some(),
            0,
        );
        note(
            ASSIGNED_CLIENT_IDENTIFIER,
            self.assigned_client_identifier.is_some(),
            text(&self.assigned_client_identifier),
        );
        note(SERVER_KEEP_ALIVE, self.server_keep_alive.is_some(), 0);
        note(
            AUTHENTICATION_METHOD,
            self.authentication_method.is_some(),
            text(&self.authentication_method),
        );
        note(
            AUTHENTICATION_DATA,
            self.authentication_data.is_some(),
            bin(&self.authentication_data),
        );
        note(
            REQUEST_PROBLEM_INFORMATION,
            self.request_problem_information.is_some(),
            0,
        );
        note(WILL_DELAY_INTERVAL, self.will_delay_interval.is_some(), 0);
        note(
            REQUEST_RESPONSE_INFORMATION,
            self.request_response_information.is_some(),
            0,
        );
        note(
            RESPONSE_INFORMATION,
            self.response_information.is_some(),
            text(&self.response_information),
        );
        note(
            SERVER_REFERENCE,
            self.server_reference.is_some(),
            text(&self.server_reference),
        );
        note(
            REASON_STRING,
            self.reason_string.is_some(),
            text(&self.reason_string),
        );
        note(RECEIVE_MAXIMUM, self.receive_maximum.is_some(), 0);
        note(TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum.is_some(), 0);
        note(TOPIC_ALIAS, self.topic_alias.is_some(), 0);
        note(MAXIMUM_QOS, self.maximum_qos.is_some(), 0);
        note(RETAIN_AVAILABLE, self.retain_available.is_some(), 0);
        for (k, v) in &self.user_properties {
            note(USER_PROPERTY, true, k.len().max(v.len()));
        }
        note(MAXIMUM_PACKET_SIZE, self.maximum_packet_size.is_some(), 0);
        note(
            WILDCARD_SUBSCRIPTION_AVAILABLE,
            self.wildcard_subscription_available.is_some(),
            0,
        );
        note(
            SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            self.subscription_identifier_available.is_some(),
            0,
        );
        note(
            SHARED_SUBSCRIPTION_AVAILABLE,
            self.shared_subscription_available.is_some(),
            0,
        );
        for (id, len) in present {
            let property = property_name(id).unwrap_or("?");
            if !ctx.allows(id) {
                return Err(EncodeError::PropertyNotAllowed {
                    property,
                    packet: ctx.name(),
                });
            }
            if len > usize::from(u16::MAX) {
                return Err(EncodeError::FieldTooLong {
                    field: property,
                    len,
                });
            }
        }
        let invalid = |id: u8| EncodeError::InvalidPropertyValue {
            property: property_name(id).unwrap_or("?"),
        };
        if self
            .subscription_identifiers
            .iter()
            .any(|&id| id == 0 || id > MAX_VARIABLE_BYTE_INTEGER)
            || (ctx == PropertyContext::Subscribe && self.subscription_identifiers.len() > 1)
        {
            return Err(invalid(SUBSCRIPTION_IDENTIFIER));
        }
        if self.receive_maximum == Some(0) {
            return Err(invalid(RECEIVE_MAXIMUM));
        }
        if self.topic_alias == Some(0) {
            return Err(invalid(TOPIC_ALIAS));
        }
        if self.maximum_packet_size == Some(0) {
            return Err(invalid(MAXIMUM_PACKET_SIZE));
        }
        if self.maximum_qos == Some(QoS::ExactlyOnce) {
            return Err(invalid(MAXIMUM_QOS));
        }
        if self
            .response_topic
            .as_deref()
            .is_some_and(|t| t.is_empty() || t.contains(['+', '#']))
        {
            return Err(invalid(RESPONSE_TOPIC));
        }
        Ok(())
    }

    /// Writes the block: the length, then every property set, in identifier order (user
    /// properties and subscription identifiers in their own order).
    pub(super) fn write(&self, out: &mut BytesMut) {
        put_varint(out, self.body_len());
        let put_text = |out: &mut BytesMut, id: u8, s: &Option<Arc<str>>| {
            if let Some(s) = s {
                out.put_u8(id);
                put_str(out, s.as_bytes());
            }
        };
        let put_bin = |out: &mut BytesMut, id: u8, b: &Option<Bytes>| {
            if let Some(b) = b {
                out.put_u8(id);
                put_str(out, b);
            }
        };
        let put_flag = |out: &mut BytesMut, id: u8, v: Option<bool>| {
            if let Some(v) = v {
                out.put_u8(id);
                out.put_u8(u8::from(v));
            }
        };
        let put_u16 = |out: &mut BytesMut, id: u8, v: Option<u16>| {
            if let Some(v) = v {
                out.put_u8(id);
                out.put_u16(v);
            }
        };
        let put_u32 = |out: &mut BytesMut, id: u8, v: Option<u32>| {
            if let Some(v) = v {
                out.put_u8(id);
                out.put_u32(v);
            }
        };
        put_flag(out, PAYLOAD_FORMAT_INDICATOR, self.payload_format_utf8);
        put_u32(out, MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
        put_text(out, CONTENT_TYPE, &self.content_type);
        put_text(out, RESPONSE_TOPIC, &self.response_topic);
        put_bin(out, CORRELATION_DATA, &self.correlation_data);
        for &id in &self.subscription_identifiers {
            out.put_u8(SUBSCRIPTION_IDENTIFIER);
            put_varint(out, id as usize);
        }
        put_u32(out, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        put_text(
            out,
            ASSIGNED_CLIENT_IDENTIFIER,
            &self.assigned_client_identifier,
        );
        put_u16(out, SERVER_KEEP_ALIVE, self.server_keep_alive);
        put_text(out, AUTHENTICATION_METHOD, &self.authentication_method);
        put_bin(out, AUTHENTICATION_DATA, &self.authentication_data);
        put_flag(
            out,
            REQUEST_PROBLEM_INFORMATION,
            self.request_problem_information,
        );
        put_u32(out, WILL_DELAY_INTERVAL, self.will_delay_interval);
        put_flag(
            out,
            REQUEST_RESPONSE_INFORMATION,
            self.request_response_information,
        );
        put_text(out, RESPONSE_INFORMATION, &self.response_information);
        put_text(out, SERVER_REFERENCE, &self.server_reference);
        put_text(out, REASON_STRING, &self.reason_string);
        put_u16(out, RECEIVE_MAXIMUM, self.receive_maximum);
        put_u16(out, TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        put_u16(out, TOPIC_ALIAS, self.topic_alias);
        if let Some(qos) = self.maximum_qos {
            out.put_u8(MAXIMUM_QOS);
            out.put_u8(qos as u8);
        }
        put_flag(out, RETAIN_AVAILABLE, self.retain_available);
        for (k, v) in &self.user_properties {
            out.put_u8(USER_PROPERTY);
            put_str(out, k.as_bytes());
            put_str(out, v.as_bytes());
        }
        put_u32(out, MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        put_flag(
            out,
            WILDCARD_SUBSCRIPTION_AVAILABLE,
            self.wildcard_subscription_available,
        );
        put_flag(
            out,
            SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            self.subscription_identifier_available,
        );
        put_flag(
            out,
            SHARED_SUBSCRIPTION_AVAILABLE,
            self.shared_subscription_available,
        );
    }
}

/// Writes a 2-byte length and the bytes; the length was checked by [`Properties::check`].
fn put_str(out: &mut BytesMut, bytes: &[u8]) {
    out.put_u16(u16::try_from(bytes.len()).unwrap_or(u16::MAX));
    out.put_slice(bytes);
}
