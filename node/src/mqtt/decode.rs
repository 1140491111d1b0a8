//! Decoding MQTT 3.1 / 3.1.1 packets from a byte buffer.
//!
//! [`decode`] is sans-IO: the caller appends whatever the socket produced to a `BytesMut` and
//! calls it until it returns `Ok(None)` (more bytes needed). A complete frame is split off the
//! buffer and frozen, so PUBLISH and will payloads are `Bytes` slices of the frame, not copies.
//! The packet size limit is enforced as soon as the fixed header is complete, before the body
//! is buffered. Every malformed input is an error value; no input makes the decoder panic.

use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};

use super::packet::{
    ConnAck, Connect, ConnectReturnCode, LastWill, Packet, ProtocolVersion, Publish, QoS, SubAck,
    SubAckCode, Subscribe, Unsubscribe,
};

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

/// Why a byte sequence is not a valid MQTT 3.1 / 3.1.1 packet.
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
    /// Packet type 0 or 15, reserved in MQTT 3.1.1.
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
}

/// The largest remaining length the 4-byte varint can express.
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// Decodes one packet from the front of `buf`, splitting its bytes off.
///
/// Returns `Ok(None)`, leaving `buf` untouched, when `buf` does not hold a whole packet yet.
/// `max_packet_size` bounds the whole packet (fixed header + remaining length) and is checked
/// as soon as the fixed header is complete.
pub fn decode(buf: &mut BytesMut, max_packet_size: usize) -> Result<Option<Packet>, DecodeError> {
    let Some((header_len, remaining)) = fixed_header(buf)? else {
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
    parse(first, frame).map(Some)
}

/// The whole size of the packet at the front of `buf`, once its fixed header is complete.
///
/// Also validates the first byte (packet type and flags) as soon as it is present.
pub fn peek_packet_size(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
    Ok(fixed_header(buf)?.map(|(header_len, remaining)| header_len + remaining))
}

/// Whether `buf` starts with a whole PUBLISH, before it is decoded: a rate limit on PUBLISH
/// packets decides with it whether to handle the next packet now or to wait.
pub fn starts_with_whole_publish(buf: &[u8]) -> bool {
    buf.first().is_some_and(|&first| first >> 4 == 3)
        && matches!(peek_packet_size(buf), Ok(Some(size)) if size <= buf.len())
}

/// Parses the fixed header: `(header length, remaining length)`, or `None` if incomplete.
fn fixed_header(buf: &[u8]) -> Result<Option<(usize, usize)>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    check_first_byte(first)?;
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
        _ => "reserved",
    }
}

/// Validates packet type and fixed header flags of the first byte.
fn check_first_byte(first: u8) -> Result<(), DecodeError> {
    let packet_type = first >> 4;
    let flags = first & 0x0F;
    let expected = match packet_type {
        0 | 15 => return Err(DecodeError::UnknownPacketType(packet_type)),
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
fn parse(first: u8, body: Bytes) -> Result<Packet, DecodeError> {
    let mut r = Reader(body);
    let packet = match first >> 4 {
        1 => Packet::Connect(parse_connect(&mut r)?),
        2 => Packet::ConnAck(parse_connack(&mut r)?),
        3 => Packet::Publish(parse_publish(first, &mut r)?),
        4 => Packet::PubAck(r.u16()?),
        5 => Packet::PubRec(r.u16()?),
        6 => Packet::PubRel(r.u16()?),
        7 => Packet::PubComp(r.u16()?),
        8 => Packet::Subscribe(parse_subscribe(&mut r)?),
        9 => Packet::SubAck(parse_suback(&mut r)?),
        10 => Packet::Unsubscribe(parse_unsubscribe(&mut r)?),
        11 => Packet::UnsubAck(r.u16()?),
        12 => Packet::PingReq,
        13 => Packet::PingResp,
        14 => Packet::Disconnect,
        other => return Err(DecodeError::UnknownPacketType(other)),
    };
    r.finish()?;
    Ok(packet)
}

fn parse_connect(r: &mut Reader) -> Result<Connect, DecodeError> {
    let name = r.binary()?;
    let level = r.u8()?;
    let protocol = match &name[..] {
        b"MQTT" if level == 4 => ProtocolVersion::V311,
        b"MQIsdp" if level == 3 => ProtocolVersion::V31,
        b"MQTT" | b"MQIsdp" => return Err(DecodeError::UnsupportedProtocolLevel(level)),
        _ => {
            return Err(DecodeError::InvalidProtocolName(
                String::from_utf8_lossy(&name).into_owned(),
            ))
        }
    };
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
    if has_password && !has_username {
        return Err(DecodeError::PasswordWithoutUsername);
    }
    let keep_alive = r.u16()?;
    let client_id = r.string()?;
    let will = if will_flag {
        let topic = r.topic_name()?;
        let payload = r.binary()?;
        Some(LastWill {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
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
    })
}

fn parse_connack(r: &mut Reader) -> Result<ConnAck, DecodeError> {
    let flags = r.u8()?;
    if flags & !1 != 0 {
        return Err(DecodeError::InvalidConnAckFlags(flags));
    }
    let code = r.u8()?;
    let code = ConnectReturnCode::from_u8(code).ok_or(DecodeError::InvalidConnAckCode(code))?;
    Ok(ConnAck {
        session_present: flags & 1 != 0,
        code,
    })
}

fn parse_publish(first: u8, r: &mut Reader) -> Result<Publish, DecodeError> {
    let qos = QoS::from_u8((first >> 1) & 0b11).ok_or(DecodeError::InvalidQoS)?;
    let topic = r.topic_name()?;
    let packet_id = if qos == QoS::AtMostOnce {
        0
    } else {
        r.packet_id()?
    };
    Ok(Publish {
        dup: first & 0b1000 != 0,
        qos,
        retain: first & 0b0001 != 0,
        topic,
        packet_id,
        payload: r.rest(),
    })
}

fn parse_subscribe(r: &mut Reader) -> Result<Subscribe, DecodeError> {
    let packet_id = r.packet_id()?;
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = r.string()?;
        let requested = r.u8()?;
        if requested & 0b1111_1100 != 0 {
            return Err(DecodeError::SubscribeReservedBits(requested));
        }
        let qos = QoS::from_u8(requested).ok_or(DecodeError::InvalidQoS)?;
        filters.push((filter, qos));
    }
    if filters.is_empty() {
        return Err(DecodeError::EmptySubscribe);
    }
    Ok(Subscribe { packet_id, filters })
}

fn parse_suback(r: &mut Reader) -> Result<SubAck, DecodeError> {
    let packet_id = r.u16()?;
    let codes = r
        .rest()
        .iter()
        .map(|&code| match code {
            0x80 => Ok(SubAckCode::Failure),
            _ => QoS::from_u8(code)
                .map(SubAckCode::Granted)
                .ok_or(DecodeError::InvalidSubAckCode(code)),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if codes.is_empty() {
        return Err(DecodeError::EmptySubAck);
    }
    Ok(SubAck { packet_id, codes })
}

fn parse_unsubscribe(r: &mut Reader) -> Result<Unsubscribe, DecodeError> {
    let packet_id = r.packet_id()?;
    let mut filters = Vec::new();
    while !r.is_empty() {
        filters.push(r.string()?);
    }
    if filters.is_empty() {
        return Err(DecodeError::EmptyUnsubscribe);
    }
    Ok(Unsubscribe { packet_id, filters })
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
struct Reader(Bytes);

impl Reader {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        if self.0.is_empty() {
            return Err(DecodeError::Truncated);
        }
        Ok(self.0.get_u8())
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        if self.0.len() < 2 {
            return Err(DecodeError::Truncated);
        }
        Ok(self.0.get_u16())
    }

    fn packet_id(&mut self) -> Result<u16, DecodeError> {
        match self.u16()? {
            0 => Err(DecodeError::ZeroPacketId),
            id => Ok(id),
        }
    }

    /// A 2-byte length followed by that many bytes, as a slice of the frame.
    fn binary(&mut self) -> Result<Bytes, DecodeError> {
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

    /// A topic name: non-empty, no wildcards.
    fn topic_name(&mut self) -> Result<Arc<str>, DecodeError> {
        let bytes = self.binary()?;
        let topic = check_str(&bytes)?;
        if topic.is_empty() || topic.contains(['+', '#']) {
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
