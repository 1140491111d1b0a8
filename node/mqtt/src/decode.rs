//! Decoding MQTT 3.1 / 3.1.1 / 5.0 packets from a byte buffer.
//!
//! [`decode`] is sans-IO: the caller appends whatever the socket produced to a `BytesMut` and
//! calls it until it returns `Ok(None)` (more bytes needed). It takes the connection's protocol
//! version, which CONNECT sets: a CONNECT is decoded by the version it names whatever the
//! argument says, and every later packet by the version the caller passes. A complete frame is split off the
//! buffer and frozen, so PUBLISH and will payloads are `Bytes` slices of the frame, not copies.
//! The packet size limit is enforced as soon as the fixed header is complete, before the body
//! is buffered. Every malformed input is an error value; no input makes the decoder panic.

use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};

use super::packet::{
    Ack, Auth, ConnAck, Connect, ConnectReturnCode, Disconnect, FilterOptions, LastWill, Packet,
    ProtocolVersion, Publish, QoS, RetainHandling, SubAck, SubAckCode, Subscribe, UnsubAck,
    Unsubscribe,
};
use super::properties::{Properties, PropertyContext};
use super::reason::{self, ReasonCode};

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

/// Why a byte sequence is not a valid MQTT packet of the connection's version.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The fixed header announces a packet larger than the configured maximum.
    #[error("packet of {size} bytes exceeds the maximum packet size of {max} bytes")]
    PacketTooLarge {
        /// Whole packet size announced (fixed header + remaining length).
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The remaining-length varint is longer than 4 bytes.
    #[error("malformed remaining length: more than 4 bytes")]
    MalformedRemainingLength,
    /// Packet type 0, or 15 before MQTT 5.0 (MQTT-2.2.1: reserved).
    #[error("unknown or reserved packet type {0}")]
    UnknownPacketType(u8),
    /// The low 4 bits of the first byte are wrong for this packet type.
    #[error("invalid fixed header flags {flags:#06b} for {kind}")]
    InvalidFixedHeaderFlags {
        /// The packet type's name.
        kind: &'static str,
        /// The flags found.
        flags: u8,
    },
    /// QoS 3 in a PUBLISH, a will or a subscription.
    #[error("invalid QoS 3")]
    InvalidQoS,
    /// PUBLISH with QoS 0 and the DUP flag set (MQTT-3.3.1-2).
    #[error("PUBLISH with QoS 0 has the DUP flag set")]
    DupWithQoS0,
    /// CONNECT protocol name is neither `MQTT` nor `MQIsdp`.
    #[error("invalid protocol name {0:?}")]
    InvalidProtocolName(String),
    /// Known protocol name with a level this broker does not speak (answer: CONNACK code 1).
    #[error("unsupported protocol level {0}")]
    UnsupportedProtocolLevel(u8),
    /// CONNECT flags bit 0 (reserved) is set.
    #[error("reserved CONNECT flag is set")]
    ReservedConnectFlag,
    /// Will QoS or will retain set without the will flag.
    #[error("will QoS or will retain set without the will flag")]
    InvalidWillFlags,
    /// CONNECT password flag set without the user name flag.
    #[error("password flag set without user name flag")]
    PasswordWithoutUsername,
    /// A string field is not valid UTF-8.
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    /// A string field contains U+0000.
    #[error("string contains U+0000")]
    NullCharacter,
    /// PUBLISH or will topic is empty or contains a wildcard.
    #[error("invalid topic name: empty or containing '+' or '#'")]
    InvalidTopicName,
    /// Packet identifier 0 where a non-zero one is required.
    #[error("packet identifier 0 is not allowed")]
    ZeroPacketId,
    /// SUBSCRIBE without any topic filter.
    #[error("SUBSCRIBE without topic filters")]
    EmptySubscribe,
    /// UNSUBSCRIBE without any topic filter.
    #[error("UNSUBSCRIBE without topic filters")]
    EmptyUnsubscribe,
    /// SUBACK without any return code.
    #[error("SUBACK without return codes")]
    EmptySubAck,
    /// Requested-QoS byte of SUBSCRIBE has its upper 6 (reserved) bits set.
    #[error("reserved bits set in requested QoS byte {0:#04x}")]
    SubscribeReservedBits(u8),
    /// SUBACK return code other than 0, 1, 2 or 0x80.
    #[error("invalid SUBACK return code {0:#04x}")]
    InvalidSubAckCode(u8),
    /// CONNACK acknowledge flags with reserved bits set.
    #[error("reserved CONNACK flags set: {0:#04x}")]
    InvalidConnAckFlags(u8),
    /// CONNACK return code above 5.
    #[error("invalid CONNACK return code {0}")]
    InvalidConnAckCode(u8),
    /// The body ends in the middle of a field.
    #[error("packet body ends before its fields do")]
    Truncated,
    /// The body is longer than its fields.
    #[error("packet body has trailing bytes after its fields")]
    TrailingBytes,
    /// A variable byte integer inside the body is longer than 4 bytes.
    #[error("malformed variable byte integer: more than 4 bytes (MQTT 5.0 1.5.5)")]
    MalformedVariableByteInteger,
    /// A property block's length runs past the end of the packet.
    #[error(
        "property length {len} exceeds the {available} bytes left in the packet (MQTT 5.0 2.2.2.1)"
    )]
    PropertyLengthExceedsPacket {
        /// The property length announced.
        len: usize,
        /// Bytes left in the packet after it.
        available: usize,
    },
    /// A property identifier the spec does not define.
    #[error("unknown property identifier {0:#04x} (MQTT 5.0 2.2.2.2)")]
    UnknownProperty(u8),
    /// A property on a packet that may not carry it.
    #[error("{property} is not allowed in {packet} (MQTT 5.0 2.2.2.2, table 2-4)")]
    PropertyNotAllowed {
        /// The property's name.
        property: &'static str,
        /// Where it was found.
        packet: &'static str,
    },
    /// A second copy of a property that may appear only once.
    #[error("{0} included more than once, a protocol error (MQTT 5.0 2.2.2.2: only User Property, and Subscription Identifier on PUBLISH, may repeat)")]
    DuplicateProperty(&'static str),
    /// A property value the spec forbids.
    #[error("{property} of {value} is invalid: {rule}")]
    InvalidPropertyValue {
        /// The property's name.
        property: &'static str,
        /// The value found.
        value: u32,
        /// The rule broken.
        rule: &'static str,
    },
    /// A response topic that is not a topic name.
    #[error("Response Topic must be a topic name without wildcards (MQTT-3.3.2-14)")]
    InvalidResponseTopic,
    /// A reason code not defined for this packet type.
    #[error("reason code {code:#04x} is not allowed in {packet} (MQTT 5.0 2.4)")]
    InvalidReasonCode {
        /// The packet's name.
        packet: &'static str,
        /// The code found.
        code: u8,
    },
    /// MQTT 5.0 PUBLISH with an empty topic name and no topic alias.
    #[error("PUBLISH with an empty topic name and no Topic Alias (MQTT 5.0 3.3.2.1)")]
    EmptyTopicWithoutAlias,
    /// MQTT 5.0 subscription options with reserved bits 6-7 set.
    #[error("reserved bits set in subscription options {0:#04x} (MQTT-3.8.3-5)")]
    SubscriptionOptionsReservedBits(u8),
    /// MQTT 5.0 subscription options with retain handling 3.
    #[error("retain handling 3 in subscription options (MQTT 5.0 3.8.3.1: a protocol error)")]
    InvalidRetainHandling,
    /// MQTT 5.0 UNSUBACK without any reason code.
    #[error("UNSUBACK without reason codes (MQTT 5.0 3.11.3)")]
    EmptyUnsubAck,
}

impl DecodeError {
    /// The MQTT 5.0 reason code to close a connection with for this error: 0x95 for a packet
    /// too large, 0x84 for an unsupported protocol level (in CONNACK), 0x90 for a bad topic
    /// name, 0x94 for a topic alias of 0 (MQTT 5.0 3.3.2.3.4), 0x82 for a broken protocol
    /// rule, 0x81 for bytes that are not a well-formed packet (section 4.13).
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            Self::PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            Self::InvalidPropertyValue { property, .. }
                if super::properties::property_name(super::properties::TOPIC_ALIAS)
                    == Some(*property) =>
            {
                ReasonCode::TopicAliasInvalid
            }
            Self::UnsupportedProtocolLevel(_) => ReasonCode::UnsupportedProtocolVersion,
            Self::DuplicateProperty(_)
            | Self::InvalidPropertyValue { .. }
            | Self::EmptyTopicWithoutAlias
            | Self::InvalidRetainHandling
            | Self::ZeroPacketId
            | Self::EmptySubscribe
            | Self::EmptyUnsubscribe
            | Self::DupWithQoS0 => ReasonCode::ProtocolError,
            Self::InvalidTopicName | Self::InvalidResponseTopic => ReasonCode::TopicNameInvalid,
            _ => ReasonCode::MalformedPacket,
        }
    }
}

/// The largest remaining length the 4-byte varint can express.
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// Decodes one packet from the front of `buf`, splitting its bytes off.
///
/// Returns `Ok(None)`, leaving `buf` untouched, when `buf` does not hold a whole packet yet.
/// `max_packet_size` bounds the whole packet (fixed header + remaining length) and is checked
/// as soon as the fixed header is complete. `version` is the connection's protocol version
/// (any value before CONNECT: a CONNECT is decoded by the version it names).
pub fn decode(
    buf: &mut BytesMut,
    max_packet_size: usize,
    version: ProtocolVersion,
) -> Result<Option<Packet>, DecodeError> {
    let Some((header_len, remaining)) = fixed_header(buf, version)? else {
        return Ok(None);
    };
    let size = header_len + remaining;
    if size > max_packet_size {
        return Err(DecodeError::PacketTooLarge {
            size,
            max: max_packet_size,
        });
    }
    if buf.len() < size {
        return Ok(None);
    }
    let mut frame = buf.split_to(size).freeze();
    let first = frame.get_u8();
    frame.advance(header_len - 1);
    parse(first, frame, version).map(Some)
}

/// The whole size of the packet at the front of `buf`, once its fixed header is complete.
///
/// Also validates the first byte (packet type and flags) as soon as it is present.
pub fn peek_packet_size(
    buf: &[u8],
    version: ProtocolVersion,
) -> Result<Option<usize>, DecodeError> {
    Ok(fixed_header(buf, version)?.map(|(header_len, remaining)| header_len + remaining))
}

/// Whether `buf` starts with a whole PUBLISH, before it is decoded: a rate limit on PUBLISH
/// packets decides with it whether to handle the next packet now or to wait.
pub fn starts_with_whole_publish(buf: &[u8]) -> bool {
    buf.first().is_some_and(|&first| first >> 4 == 3)
        // The version changes nothing in PUBLISH's fixed header.
        && matches!(peek_packet_size(buf, ProtocolVersion::V311), Ok(Some(size)) if size <= buf.len())
}

/// Parses the fixed header: `(header length, remaining length)`, or `None` if incomplete.
fn fixed_header(
    buf: &[u8],
    version: ProtocolVersion,
) -> Result<Option<(usize, usize)>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    check_first_byte(first, version)?;
    let mut remaining = 0usize;
    for (i, &byte) in buf.iter().skip(1).take(4).enumerate() {
        remaining |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((i + 2, remaining)));
        }
        if i == 3 {
            return Err(DecodeError::MalformedRemainingLength);
        }
    }
    Ok(None)
}

/// The name of a packet type, as in [`Packet::kind`].
fn kind_name(packet_type: u8) -> &'static str {
    match packet_type {
        1 => "CONNECT",
        2 => "CONNACK",
        3 => "PUBLISH",
        4 => "PUBACK",
        5 => "PUBREC",
        6 => "PUBREL",
        7 => "PUBCOMP",
        8 => "SUBSCRIBE",
        9 => "SUBACK",
        10 => "UNSUBSCRIBE",
        11 => "UNSUBACK",
        12 => "PINGREQ",
        13 => "PINGRESP",
        14 => "DISCONNECT",
        15 => "AUTH",
        _ => "reserved",
    }
}

/// Validates packet type and fixed header flags of the first byte.
fn check_first_byte(first: u8, version: ProtocolVersion) -> Result<(), DecodeError> {
    let packet_type = first >> 4;
    let flags = first & 0x0F;
    let expected = match packet_type {
        0 => return Err(DecodeError::UnknownPacketType(packet_type)),
        15 if !version.is_v5() => return Err(DecodeError::UnknownPacketType(packet_type)),
        3 => {
            let qos = QoS::from_u8((flags >> 1) & 0b11).ok_or(DecodeError::InvalidQoS)?;
            if qos == QoS::AtMostOnce && flags & 0b1000 != 0 {
                return Err(DecodeError::DupWithQoS0);
            }
            return Ok(());
        }
        6 | 8 | 10 => 0b0010,
        _ => 0b0000,
    };
    if flags == expected {
        Ok(())
    } else {
        Err(DecodeError::InvalidFixedHeaderFlags {
            kind: kind_name(packet_type),
            flags,
        })
    }
}

/// Parses a packet body; the first byte has already been checked.
fn parse(first: u8, body: Bytes, version: ProtocolVersion) -> Result<Packet, DecodeError> {
    let mut r = Reader(body);
    let v5 = version.is_v5();
    let packet = match first >> 4 {
        1 => Packet::Connect(Box::new(parse_connect(&mut r)?)),
        2 => Packet::ConnAck(parse_connack(&mut r, v5)?),
        3 => Packet::Publish(parse_publish(first, &mut r, v5)?),
        4 => Packet::PubAck(parse_ack(
            &mut r,
            v5,
            PropertyContext::PubAck,
            reason::PUBACK,
        )?),
        5 => Packet::PubRec(parse_ack(
            &mut r,
            v5,
            PropertyContext::PubRec,
            reason::PUBACK,
        )?),
        6 => Packet::PubRel(parse_ack(
            &mut r,
            v5,
            PropertyContext::PubRel,
            reason::PUBREL,
        )?),
        7 => Packet::PubComp(parse_ack(
            &mut r,
            v5,
            PropertyContext::PubComp,
            reason::PUBREL,
        )?),
        8 => Packet::Subscribe(parse_subscribe(&mut r, v5)?),
        9 => Packet::SubAck(parse_suback(&mut r, v5)?),
        10 => Packet::Unsubscribe(parse_unsubscribe(&mut r, v5)?),
        11 => Packet::UnsubAck(parse_unsuback(&mut r, v5)?),
        12 => Packet::PingReq,
        13 => Packet::PingResp,
        14 => {
            let (reason, properties) =
                parse_reason_tail(&mut r, v5, PropertyContext::Disconnect, reason::DISCONNECT)?;
            Packet::Disconnect(Disconnect { reason, properties })
        }
        // The fixed header check lets AUTH through for MQTT 5.0 only.
        15 => {
            let (reason, properties) =
                parse_reason_tail(&mut r, v5, PropertyContext::Auth, reason::AUTH)?;
            Packet::Auth(Auth { reason, properties })
        }
        other => return Err(DecodeError::UnknownPacketType(other)),
    };
    r.finish()?;
    Ok(packet)
}

/// A reason code of `ctx`'s packet, checked against the packet's list.
fn reason_code(
    code: u8,
    ctx: PropertyContext,
    allowed: &[ReasonCode],
) -> Result<ReasonCode, DecodeError> {
    ReasonCode::from_u8(code)
        .filter(|c| allowed.contains(c))
        .ok_or_else(|| DecodeError::InvalidReasonCode {
            packet: ctx.name(),
            code,
        })
}

/// The optional reason code and properties that end PUBACK…PUBCOMP, DISCONNECT and AUTH in
/// MQTT 5.0: absent means success, and properties may be left out after the code.
fn parse_reason_tail(
    r: &mut Reader,
    v5: bool,
    ctx: PropertyContext,
    allowed: &[ReasonCode],
) -> Result<(ReasonCode, Properties), DecodeError> {
    if !v5 || r.is_empty() {
        return Ok((ReasonCode::Success, Properties::default()));
    }
    let code = reason_code(r.u8()?, ctx, allowed)?;
    let properties = if r.is_empty() {
        Properties::default()
    } else {
        Properties::read(r, ctx)?
    };
    Ok((code, properties))
}

fn parse_ack(
    r: &mut Reader,
    v5: bool,
    ctx: PropertyContext,
    allowed: &[ReasonCode],
) -> Result<Ack, DecodeError> {
    let packet_id = r.u16()?;
    let (reason, properties) = parse_reason_tail(r, v5, ctx, allowed)?;
    Ok(Ack {
        packet_id,
        reason,
        properties,
    })
}

fn parse_connect(r: &mut Reader) -> Result<Connect, DecodeError> {
    let name = r.binary()?;
    let level = r.u8()?;
    let protocol = match &name[..] {
        b"MQTT" if level == 4 => ProtocolVersion::V311,
        b"MQTT" if level == 5 => ProtocolVersion::V5,
        b"MQIsdp" if level == 3 => ProtocolVersion::V31,
        b"MQTT" | b"MQIsdp" => return Err(DecodeError::UnsupportedProtocolLevel(level)),
        _ => {
            return Err(DecodeError::InvalidProtocolName(
                String::from_utf8_lossy(&name).into_owned(),
            ))
        }
    };
    let v5 = protocol.is_v5();
    let flags = r.u8()?;
    if flags & 0b0000_0001 != 0 {
        return Err(DecodeError::ReservedConnectFlag);
    }
    let clean_session = flags & 0b0000_0010 != 0;
    let will_flag = flags & 0b0000_0100 != 0;
    let will_qos = QoS::from_u8((flags >> 3) & 0b11).ok_or(DecodeError::InvalidQoS)?;
    let will_retain = flags & 0b0010_0000 != 0;
    let has_password = flags & 0b0100_0000 != 0;
    let has_username = flags & 0b1000_0000 != 0;
    if !will_flag && (will_qos != QoS::AtMostOnce || will_retain) {
        return Err(DecodeError::InvalidWillFlags);
    }
    // MQTT 5.0 allows a password without a user name (3.1.2.9).
    if has_password && !has_username && !v5 {
        return Err(DecodeError::PasswordWithoutUsername);
    }
    let keep_alive = r.u16()?;
    let properties = if v5 {
        Properties::read(r, PropertyContext::Connect)?
    } else {
        Properties::default()
    };
    let client_id = r.string()?;
    let will = if will_flag {
        let properties = if v5 {
            Properties::read(r, PropertyContext::Will)?
        } else {
            Properties::default()
        };
        let topic = r.topic_name()?;
        let payload = r.binary()?;
        Some(LastWill {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
            properties,
        })
    } else {
        None
    };
    let username = if has_username {
        Some(r.string()?)
    } else {
        None
    };
    let password = if has_password {
        Some(r.binary()?)
    } else {
        None
    };
    Ok(Connect {
        protocol,
        clean_session,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    })
}

fn parse_connack(r: &mut Reader, v5: bool) -> Result<ConnAck, DecodeError> {
    let flags = r.u8()?;
    if flags & !1 != 0 {
        return Err(DecodeError::InvalidConnAckFlags(flags));
    }
    let code = r.u8()?;
    let (code, properties) = if v5 {
        let code = reason_code(code, PropertyContext::ConnAck, reason::CONNACK)?;
        (code, Properties::read(r, PropertyContext::ConnAck)?)
    } else {
        let code = ConnectReturnCode::from_u8(code).ok_or(DecodeError::InvalidConnAckCode(code))?;
        (code.into(), Properties::default())
    };
    Ok(ConnAck {
        session_present: flags & 1 != 0,
        code,
        properties,
    })
}

fn parse_publish(first: u8, r: &mut Reader, v5: bool) -> Result<Publish, DecodeError> {
    let qos = QoS::from_u8((first >> 1) & 0b11).ok_or(DecodeError::InvalidQoS)?;
    let topic = if v5 {
        r.topic_name_or_empty()?
    } else {
        r.topic_name()?
    };
    let packet_id = if qos == QoS::AtMostOnce {
        0
    } else {
        r.packet_id()?
    };
    let properties = if v5 {
        Properties::read(r, PropertyContext::Publish)?
    } else {
        Properties::default()
    };
    if topic.is_empty() && properties.topic_alias.is_none() {
        return Err(DecodeError::EmptyTopicWithoutAlias);
    }
    Ok(Publish {
        dup: first & 0b1000 != 0,
        qos,
        retain: first & 0b0001 != 0,
        topic,
        packet_id,
        payload: r.rest(),
        properties,
    })
}

/// The options byte of a SUBSCRIBE filter: the requested QoS alone before MQTT 5.0.
fn filter_options(byte: u8, v5: bool) -> Result<FilterOptions, DecodeError> {
    if !v5 {
        if byte & 0b1111_1100 != 0 {
            return Err(DecodeError::SubscribeReservedBits(byte));
        }
        return QoS::from_u8(byte)
            .map(FilterOptions::from)
            .ok_or(DecodeError::InvalidQoS);
    }
    if byte & 0b1100_0000 != 0 {
        return Err(DecodeError::SubscriptionOptionsReservedBits(byte));
    }
    let retain_handling = match (byte >> 4) & 0b11 {
        0 => RetainHandling::OnSubscribe,
        1 => RetainHandling::OnNewSubscription,
        2 => RetainHandling::Never,
        _ => return Err(DecodeError::InvalidRetainHandling),
    };
    Ok(FilterOptions {
        qos: QoS::from_u8(byte & 0b11).ok_or(DecodeError::InvalidQoS)?,
        no_local: byte & 0b0100 != 0,
        retain_as_published: byte & 0b1000 != 0,
        retain_handling,
    })
}

fn parse_subscribe(r: &mut Reader, v5: bool) -> Result<Subscribe, DecodeError> {
    let packet_id = r.packet_id()?;
    let properties = if v5 {
        Properties::read(r, PropertyContext::Subscribe)?
    } else {
        Properties::default()
    };
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = r.string()?;
        filters.push((filter, filter_options(r.u8()?, v5)?));
    }
    if filters.is_empty() {
        return Err(DecodeError::EmptySubscribe);
    }
    Ok(Subscribe {
        packet_id,
        filters,
        properties,
    })
}

fn parse_suback(r: &mut Reader, v5: bool) -> Result<SubAck, DecodeError> {
    let packet_id = r.u16()?;
    let properties = if v5 {
        Properties::read(r, PropertyContext::SubAck)?
    } else {
        Properties::default()
    };
    let codes = r
        .rest()
        .iter()
        .map(|&code| match code {
            0x80 => Ok(SubAckCode::Failure),
            _ if v5 => reason_code(code, PropertyContext::SubAck, reason::SUBACK)
                .map(|c| QoS::from_u8(code).map_or(SubAckCode::Refused(c), SubAckCode::Granted)),
            _ => QoS::from_u8(code)
                .map(SubAckCode::Granted)
                .ok_or(DecodeError::InvalidSubAckCode(code)),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if codes.is_empty() {
        return Err(DecodeError::EmptySubAck);
    }
    Ok(SubAck {
        packet_id,
        codes,
        properties,
    })
}

fn parse_unsubscribe(r: &mut Reader, v5: bool) -> Result<Unsubscribe, DecodeError> {
    let packet_id = r.packet_id()?;
    let properties = if v5 {
        Properties::read(r, PropertyContext::Unsubscribe)?
    } else {
        Properties::default()
    };
    let mut filters = Vec::new();
    while !r.is_empty() {
        filters.push(r.string()?);
    }
    if filters.is_empty() {
        return Err(DecodeError::EmptyUnsubscribe);
    }
    Ok(Unsubscribe {
        packet_id,
        filters,
        properties,
    })
}

fn parse_unsuback(r: &mut Reader, v5: bool) -> Result<UnsubAck, DecodeError> {
    let packet_id = r.u16()?;
    if !v5 {
        return Ok(UnsubAck::new(packet_id));
    }
    let properties = Properties::read(r, PropertyContext::UnsubAck)?;
    let reasons = r
        .rest()
        .iter()
        .map(|&code| reason_code(code, PropertyContext::UnsubAck, reason::UNSUBACK))
        .collect::<Result<Vec<_>, _>>()?;
    if reasons.is_empty() {
        return Err(DecodeError::EmptyUnsubAck);
    }
    Ok(UnsubAck {
        packet_id,
        reasons,
        properties,
    })
}

/// Checks an MQTT string: valid UTF-8 without U+0000.
fn check_str(bytes: &[u8]) -> Result<&str, DecodeError> {
    let s = std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8)?;
    if bytes.contains(&0) {
        return Err(DecodeError::NullCharacter);
    }
    Ok(s)
}

/// A cursor over a packet body; every read checks the length first.
pub(super) struct Reader(Bytes);

impl Reader {
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Bytes left.
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    /// Splits the next `len` bytes off into their own reader; `len` is at most [`Self::len`].
    pub(super) fn sub(&mut self, len: usize) -> Self {
        Self(self.0.split_to(len.min(self.0.len())))
    }

    pub(super) fn u8(&mut self) -> Result<u8, DecodeError> {
        if self.0.is_empty() {
            return Err(DecodeError::Truncated);
        }
        Ok(self.0.get_u8())
    }

    pub(super) fn u16(&mut self) -> Result<u16, DecodeError> {
        if self.0.len() < 2 {
            return Err(DecodeError::Truncated);
        }
        Ok(self.0.get_u16())
    }

    pub(super) fn u32(&mut self) -> Result<u32, DecodeError> {
        if self.0.len() < 4 {
            return Err(DecodeError::Truncated);
        }
        Ok(self.0.get_u32())
    }

    /// A variable byte integer (MQTT 5.0 1.5.5): at most 4 bytes, at most 268,435,455.
    pub(super) fn varint(&mut self) -> Result<usize, DecodeError> {
        let mut value = 0usize;
        for i in 0..4 {
            let byte = self.u8()?;
            value |= usize::from(byte & 0x7F) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::MalformedVariableByteInteger)
    }

    fn packet_id(&mut self) -> Result<u16, DecodeError> {
        match self.u16()? {
            0 => Err(DecodeError::ZeroPacketId),
            id => Ok(id),
        }
    }

    /// A 2-byte length followed by that many bytes, as a slice of the frame.
    pub(super) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = usize::from(self.u16()?);
        if self.0.len() < len {
            return Err(DecodeError::Truncated);
        }
        Ok(self.0.split_to(len))
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let bytes = self.binary()?;
        check_str(&bytes).map(str::to_owned)
    }

    /// A string shared as `Arc<str>` (a property value).
    pub(super) fn arc_str(&mut self) -> Result<Arc<str>, DecodeError> {
        let bytes = self.binary()?;
        check_str(&bytes).map(Arc::from)
    }

    /// A topic name: non-empty, no wildcards.
    fn topic_name(&mut self) -> Result<Arc<str>, DecodeError> {
        let topic = self.topic_name_or_empty()?;
        if topic.is_empty() {
            return Err(DecodeError::InvalidTopicName);
        }
        Ok(topic)
    }

    /// A topic name or nothing (MQTT 5.0 PUBLISH with a topic alias): no wildcards.
    fn topic_name_or_empty(&mut self) -> Result<Arc<str>, DecodeError> {
        let bytes = self.binary()?;
        let topic = check_str(&bytes)?;
        if topic.contains(['+', '#']) {
            return Err(DecodeError::InvalidTopicName);
        }
        Ok(Arc::from(topic))
    }

    fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.0)
    }

    fn finish(self) -> Result<(), DecodeError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes)
        }
    }
}
