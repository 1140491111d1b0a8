//! Encoding MQTT 3.1 / 3.1.1 / 5.0 packets into a byte buffer.
//!
//! [`encode`] appends the wire form of a packet to a `BytesMut`: it reserves the exact size
//! once and writes the packet in one pass, copying a PUBLISH payload exactly once (into the
//! output). The remaining length is always minimally encoded.
//!
//! It takes the connection's protocol version (a CONNECT is written in the version it names).
//! For 3.1/3.1.1 the MQTT 5.0 fields are left out: properties are dropped, a CONNACK reason
//! code is sent as its 3.1.1 return code and a SUBACK refusal as 0x80. For 5.0 the
//! acknowledgements, DISCONNECT and AUTH use their short forms when the reason is success
//! and there are no properties.

use bytes::{BufMut, BytesMut};

use super::decode::MAX_REMAINING_LENGTH;
use super::packet::{Ack, Connect, Packet, ProtocolVersion, QoS, SubAckCode};
use super::properties::{Properties, PropertyContext};
use super::reason::{self, ReasonCode};

/// Why a packet cannot be put on the wire.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum EncodeError {
    /// A string or binary field is longer than its 2-byte length prefix can say.
    #[error("{field} is {len} bytes, more than the 65535 an MQTT field can hold")]
    FieldTooLong {
        /// Which field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// The remaining length exceeds what the 4-byte varint can express.
    #[error("remaining length {0} exceeds the MQTT maximum of 268435455")]
    PacketTooLarge(usize),
    /// A property this packet may not carry (MQTT 5.0 table 2-4).
    #[error("{property} is not allowed in {packet} (MQTT 5.0 2.2.2.2, table 2-4)")]
    PropertyNotAllowed {
        /// The property's name.
        property: &'static str,
        /// The packet.
        packet: &'static str,
    },
    /// A property value the spec forbids (0 where it must not be, say).
    #[error("invalid value for {property}")]
    InvalidPropertyValue {
        /// The property's name.
        property: &'static str,
    },
    /// A reason code this packet may not carry (MQTT 5.0 2.4).
    #[error("reason code {code} is not allowed in {packet}")]
    InvalidReasonCode {
        /// The packet.
        packet: &'static str,
        /// The code.
        code: ReasonCode,
    },
    /// A packet type the connection's version does not have (AUTH before 5.0).
    #[error("{kind} does not exist in MQTT {version}")]
    NotInVersion {
        /// The packet type.
        kind: &'static str,
        /// The connection's version.
        version: ProtocolVersion,
    },
}

/// The number of bytes [`encode`] appends for `packet` (fixed header included).
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> usize {
    let body = body_len(packet, wire_version(packet, version).is_v5());
    1 + varint_len(body) + body
}

/// [`try_encode`] for tests, whose packets are known to fit: panics if one does not. Only
/// tests have it, so no broker or tool path can panic on a packet it was given.
#[cfg(test)]
pub(crate) fn encode(packet: &Packet, version: ProtocolVersion, out: &mut BytesMut) {
    if let Err(e) = try_encode(packet, version, out) {
        panic!("cannot encode {}: {e}", packet.kind());
    }
}

/// Appends the wire form of `packet`, for a connection of `version`, to `out`.
///
/// The DUP flag of a QoS 0 PUBLISH is written as 0 (MQTT-3.3.1-2) and its packet id is
/// omitted. Other fields are written as given, even where the peer will reject them (e.g. a
/// zero packet id). Packets produced by [`decode`](super::decode::decode) for the same
/// version always encode. Returns an error, writing nothing, if a string or binary field is
/// longer than 65535 bytes, the remaining length exceeds 268435455, or (MQTT 5.0) a property
/// or reason code does not belong in the packet; or the packet is AUTH and `version` is not
/// 5.0.
pub fn try_encode(
    packet: &Packet,
    version: ProtocolVersion,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let version = wire_version(packet, version);
    let v5 = version.is_v5();
    if matches!(packet, Packet::Auth(_)) && !v5 {
        return Err(EncodeError::NotInVersion {
            kind: packet.kind(),
            version,
        });
    }
    check_fields(packet)?;
    if v5 {
        check_v5(packet)?;
    }
    let body = body_len(packet, v5);
    if body > MAX_REMAINING_LENGTH {
        return Err(EncodeError::PacketTooLarge(body));
    }
    out.reserve(1 + varint_len(body) + body);
    out.put_u8(first_byte(packet));
    put_varint(out, body);
    write_body(packet, v5, out);
    Ok(())
}

/// A 3.1/3.1.1 PUBLISH (no properties) to append, in parts: what a message on its way to a
/// subscriber already holds, so that no [`Publish`](crate::packet::Publish) is built for it.
#[derive(Debug, Clone, Copy)]
pub struct PlainPublish<'a> {
    /// Topic name.
    pub topic: &'a str,
    /// Payload.
    pub payload: &'a [u8],
    /// QoS.
    pub qos: QoS,
    /// RETAIN flag.
    pub retain: bool,
    /// DUP flag (written as 0 at QoS 0, MQTT-3.3.1-2).
    pub dup: bool,
    /// Packet id (left out at QoS 0).
    pub packet_id: u16,
}

/// Appends a 3.1/3.1.1 PUBLISH: the same bytes [`try_encode`] writes for the same PUBLISH
/// without properties, and the same errors, writing nothing.
pub fn try_encode_plain_publish(
    p: &PlainPublish<'_>,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    if p.topic.len() > usize::from(u16::MAX) {
        return Err(EncodeError::FieldTooLong {
            field: "topic",
            len: p.topic.len(),
        });
    }
    let id = if p.qos == QoS::AtMostOnce { 0 } else { 2 };
    let body = field(p.topic.len()) + id + p.payload.len();
    if body > MAX_REMAINING_LENGTH {
        return Err(EncodeError::PacketTooLarge(body));
    }
    let dup = p.dup && p.qos != QoS::AtMostOnce;
    out.reserve(1 + varint_len(body) + body);
    out.put_u8(0x30 | (u8::from(dup) << 3) | ((p.qos as u8) << 1) | u8::from(p.retain));
    put_varint(out, body);
    put_field(out, p.topic.as_bytes());
    if id > 0 {
        out.put_u16(p.packet_id);
    }
    out.put_slice(p.payload);
    Ok(())
}

/// The version a packet is written in: CONNECT's own, the connection's for the others.
fn wire_version(packet: &Packet, version: ProtocolVersion) -> ProtocolVersion {
    match packet {
        Packet::Connect(c) => c.protocol,
        _ => version,
    }
}

/// Bytes of a 2-byte length prefix plus the field.
fn field(len: usize) -> usize {
    2 + len
}

/// Bytes of a property block in MQTT 5.0, nothing before.
fn props_len(p: &Properties, v5: bool) -> usize {
    if v5 {
        p.block_len()
    } else {
        0
    }
}

/// Bytes of the optional reason code and properties that end an acknowledgement, DISCONNECT
/// or AUTH in MQTT 5.0: nothing for success without properties, the code alone without
/// properties.
fn tail_len(reason: ReasonCode, p: &Properties, v5: bool) -> usize {
    if !v5 || (reason == ReasonCode::Success && p.is_empty()) {
        0
    } else if p.is_empty() {
        1
    } else {
        1 + p.block_len()
    }
}

/// The remaining length of `packet`.
fn body_len(packet: &Packet, v5: bool) -> usize {
    match packet {
        Packet::Connect(c) => connect_len(c, v5),
        Packet::ConnAck(a) => 2 + props_len(&a.properties, v5),
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            2 + tail_len(a.reason, &a.properties, v5)
        }
        Packet::UnsubAck(u) => {
            if v5 {
                2 + u.properties.block_len() + u.reasons.len()
            } else {
                2
            }
        }
        Packet::Publish(p) => {
            let id = if p.qos == QoS::AtMostOnce { 0 } else { 2 };
            field(p.topic.len()) + id + props_len(&p.properties, v5) + p.payload.len()
        }
        Packet::Subscribe(s) => {
            2 + props_len(&s.properties, v5)
                + s.filters
                    .iter()
                    .map(|(f, _)| field(f.len()) + 1)
                    .sum::<usize>()
        }
        Packet::SubAck(s) => 2 + props_len(&s.properties, v5) + s.codes.len(),
        Packet::Unsubscribe(u) => {
            2 + props_len(&u.properties, v5)
                + u.filters.iter().map(|f| field(f.len())).sum::<usize>()
        }
        Packet::PingReq | Packet::PingResp => 0,
        Packet::Disconnect(d) => tail_len(d.reason, &d.properties, v5),
        Packet::Auth(a) => tail_len(a.reason, &a.properties, v5),
    }
}

fn connect_len(c: &Connect, v5: bool) -> usize {
    let will = c.will.as_ref().map_or(0, |w| {
        props_len(&w.properties, v5) + field(w.topic.len()) + field(w.payload.len())
    });
    field(c.protocol.name().len())
        + 1 // level
        + 1 // flags
        + 2 // keep alive
        + props_len(&c.properties, v5)
        + field(c.client_id.len())
        + will
        + c.username.as_ref().map_or(0, |u| field(u.len()))
        + c.password.as_ref().map_or(0, |p| field(p.len()))
}

/// Checks that every length-prefixed field fits its 2-byte prefix.
fn check_fields(packet: &Packet) -> Result<(), EncodeError> {
    let check = |field: &'static str, len: usize| {
        if len > usize::from(u16::MAX) {
            Err(EncodeError::FieldTooLong { field, len })
        } else {
            Ok(())
        }
    };
    match packet {
        Packet::Connect(c) => {
            check("client id", c.client_id.len())?;
            if let Some(w) = &c.will {
                check("will topic", w.topic.len())?;
                check("will payload", w.payload.len())?;
            }
            if let Some(u) = &c.username {
                check("user name", u.len())?;
            }
            if let Some(p) = &c.password {
                check("password", p.len())?;
            }
        }
        Packet::Publish(p) => check("topic", p.topic.len())?,
        Packet::Subscribe(s) => {
            for (f, _) in &s.filters {
                check("topic filter", f.len())?;
            }
        }
        Packet::Unsubscribe(u) => {
            for f in &u.filters {
                check("topic filter", f.len())?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Checks the MQTT 5.0 fields: properties where they belong and within their limits, reason
/// codes from the packet's list.
fn check_v5(packet: &Packet) -> Result<(), EncodeError> {
    use PropertyContext as Ctx;
    let code = |ctx: Ctx, code: ReasonCode, allowed: &[ReasonCode]| {
        if allowed.contains(&code) {
            Ok(())
        } else {
            Err(EncodeError::InvalidReasonCode {
                packet: ctx.name(),
                code,
            })
        }
    };
    let ack = |ctx: Ctx, a: &Ack, allowed: &[ReasonCode]| {
        code(ctx, a.reason, allowed)?;
        a.properties.check(ctx)
    };
    match packet {
        Packet::Connect(c) => {
            c.properties.check(Ctx::Connect)?;
            if let Some(w) = &c.will {
                w.properties.check(Ctx::Will)?;
            }
        }
        Packet::ConnAck(a) => {
            code(Ctx::ConnAck, a.code, reason::CONNACK)?;
            a.properties.check(Ctx::ConnAck)?;
        }
        Packet::Publish(p) => p.properties.check(Ctx::Publish)?,
        Packet::PubAck(a) => ack(Ctx::PubAck, a, reason::PUBACK)?,
        Packet::PubRec(a) => ack(Ctx::PubRec, a, reason::PUBACK)?,
        Packet::PubRel(a) => ack(Ctx::PubRel, a, reason::PUBREL)?,
        Packet::PubComp(a) => ack(Ctx::PubComp, a, reason::PUBREL)?,
        Packet::Subscribe(s) => s.properties.check(Ctx::Subscribe)?,
        Packet::SubAck(s) => {
            for c in &s.codes {
                if let SubAckCode::Refused(c) = c {
                    code(Ctx::SubAck, *c, reason::SUBACK)?;
                    if !c.is_error() {
                        return Err(EncodeError::InvalidReasonCode {
                            packet: "SUBACK",
                            code: *c,
                        });
                    }
                }
            }
            s.properties.check(Ctx::SubAck)?;
        }
        Packet::Unsubscribe(u) => u.properties.check(Ctx::Unsubscribe)?,
        Packet::UnsubAck(u) => {
            for c in &u.reasons {
                code(Ctx::UnsubAck, *c, reason::UNSUBACK)?;
            }
            u.properties.check(Ctx::UnsubAck)?;
        }
        Packet::Disconnect(d) => {
            code(Ctx::Disconnect, d.reason, reason::DISCONNECT)?;
            d.properties.check(Ctx::Disconnect)?;
        }
        Packet::Auth(a) => {
            code(Ctx::Auth, a.reason, reason::AUTH)?;
            a.properties.check(Ctx::Auth)?;
        }
        Packet::PingReq | Packet::PingResp => {}
    }
    Ok(())
}

fn first_byte(packet: &Packet) -> u8 {
    match packet {
        Packet::Connect(_) => 0x10,
        Packet::ConnAck(_) => 0x20,
        Packet::Publish(p) => {
            let dup = p.dup && p.qos != QoS::AtMostOnce;
            0x30 | (u8::from(dup) << 3) | ((p.qos as u8) << 1) | u8::from(p.retain)
        }
        Packet::PubAck(_) => 0x40,
        Packet::PubRec(_) => 0x50,
        Packet::PubRel(_) => 0x62,
        Packet::PubComp(_) => 0x70,
        Packet::Subscribe(_) => 0x82,
        Packet::SubAck(_) => 0x90,
        Packet::Unsubscribe(_) => 0xA2,
        Packet::UnsubAck(_) => 0xB0,
        Packet::PingReq => 0xC0,
        Packet::PingResp => 0xD0,
        Packet::Disconnect(_) => 0xE0,
        Packet::Auth(_) => 0xF0,
    }
}

/// Bytes of the minimal variable byte integer for `len`.
pub(super) fn varint_len(len: usize) -> usize {
    match len {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Writes `len` as a minimal variable byte integer.
pub(super) fn put_varint(out: &mut BytesMut, mut len: usize) {
    loop {
        // Truncation intended: the low 7 bits.
        let mut byte = (len & 0x7F) as u8;
        len >>= 7;
        if len > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if len == 0 {
            break;
        }
    }
}

/// Writes a length-prefixed field; its length was checked by [`check_fields`].
fn put_field(out: &mut BytesMut, bytes: &[u8]) {
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    out.put_u16(len);
    out.put_slice(bytes);
}

/// Writes a property block in MQTT 5.0, nothing before.
fn put_props(out: &mut BytesMut, p: &Properties, v5: bool) {
    if v5 {
        p.write(out);
    }
}

/// Writes what [`tail_len`] counts.
fn put_tail(out: &mut BytesMut, reason: ReasonCode, p: &Properties, v5: bool) {
    if !v5 || (reason == ReasonCode::Success && p.is_empty()) {
        return;
    }
    out.put_u8(reason as u8);
    if !p.is_empty() {
        p.write(out);
    }
}

fn write_body(packet: &Packet, v5: bool, out: &mut BytesMut) {
    match packet {
        Packet::Connect(c) => write_connect(c, v5, out),
        Packet::ConnAck(a) => {
            out.put_u8(u8::from(a.session_present));
            if v5 {
                out.put_u8(a.code as u8);
            } else {
                out.put_u8(a.code.connect_return_code() as u8);
            }
            put_props(out, &a.properties, v5);
        }
        Packet::Publish(p) => {
            put_field(out, p.topic.as_bytes());
            if p.qos != QoS::AtMostOnce {
                out.put_u16(p.packet_id);
            }
            put_props(out, &p.properties, v5);
            out.put_slice(&p.payload);
        }
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            out.put_u16(a.packet_id);
            put_tail(out, a.reason, &a.properties, v5);
        }
        Packet::UnsubAck(u) => {
            out.put_u16(u.packet_id);
            if v5 {
                u.properties.write(out);
                for r in &u.reasons {
                    out.put_u8(*r as u8);
                }
            }
        }
        Packet::Subscribe(s) => {
            out.put_u16(s.packet_id);
            put_props(out, &s.properties, v5);
            for (filter, o) in &s.filters {
                put_field(out, filter.as_bytes());
                let mut byte = o.qos as u8;
                if v5 {
                    byte |= u8::from(o.no_local) << 2
                        | u8::from(o.retain_as_published) << 3
                        | (o.retain_handling as u8) << 4;
                }
                out.put_u8(byte);
            }
        }
        Packet::SubAck(s) => {
            out.put_u16(s.packet_id);
            put_props(out, &s.properties, v5);
            for code in &s.codes {
                out.put_u8(match code {
                    SubAckCode::Granted(qos) => *qos as u8,
                    SubAckCode::Failure => 0x80,
                    SubAckCode::Refused(c) if v5 => *c as u8,
                    SubAckCode::Refused(_) => 0x80,
                });
            }
        }
        Packet::Unsubscribe(u) => {
            out.put_u16(u.packet_id);
            put_props(out, &u.properties, v5);
            for filter in &u.filters {
                put_field(out, filter.as_bytes());
            }
        }
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(d) => put_tail(out, d.reason, &d.properties, v5),
        Packet::Auth(a) => put_tail(out, a.reason, &a.properties, v5),
    }
}

fn write_connect(c: &Connect, v5: bool, out: &mut BytesMut) {
    put_field(out, c.protocol.name().as_bytes());
    out.put_u8(c.protocol.level());
    let mut flags = u8::from(c.clean_session) << 1;
    if let Some(w) = &c.will {
        flags |= 0b100 | ((w.qos as u8) << 3) | (u8::from(w.retain) << 5);
    }
    flags |= u8::from(c.password.is_some()) << 6;
    flags |= u8::from(c.username.is_some()) << 7;
    out.put_u8(flags);
    out.put_u16(c.keep_alive);
    put_props(out, &c.properties, v5);
    put_field(out, c.client_id.as_bytes());
    if let Some(w) = &c.will {
        put_props(out, &w.properties, v5);
        put_field(out, w.topic.as_bytes());
        put_field(out, &w.payload);
    }
    if let Some(u) = &c.username {
        put_field(out, u.as_bytes());
    }
    if let Some(p) = &c.password {
        put_field(out, p);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::packet::{Ack, Disconnect, Publish, SubAck, Subscribe, UnsubAck};

    fn bytes_of(packet: &Packet) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode(packet, ProtocolVersion::V311, &mut out);
        assert_eq!(
            out.len(),
            encoded_len(packet, ProtocolVersion::V311),
            "encoded_len disagrees"
        );
        out.to_vec()
    }

    fn publish(qos: QoS, dup: bool, payload_len: usize) -> Packet {
        Packet::Publish(Publish {
            dup,
            qos,
            retain: false,
            topic: Arc::from("a/b"),
            packet_id: 7,
            payload: Bytes::from(vec![0xAB; payload_len]),
            properties: Default::default(),
        })
    }

    #[test]
    fn fixed_packets_match_the_spec_bytes() {
        assert_eq!(bytes_of(&Packet::PingReq), [0xC0, 0]);
        assert_eq!(bytes_of(&Packet::PingResp), [0xD0, 0]);
        assert_eq!(
            bytes_of(&Packet::Disconnect(Disconnect::default())),
            [0xE0, 0]
        );
        assert_eq!(
            bytes_of(&Packet::PubAck(Ack::new(0x1234))),
            [0x40, 2, 0x12, 0x34]
        );
        assert_eq!(bytes_of(&Packet::PubRel(Ack::new(1))), [0x62, 2, 0, 1]);
        assert_eq!(
            bytes_of(&Packet::UnsubAck(UnsubAck::new(2))),
            [0xB0, 2, 0, 2]
        );
    }

    #[test]
    fn publish_qos0_has_no_packet_id_and_no_dup() {
        assert_eq!(
            bytes_of(&publish(QoS::AtMostOnce, true, 1)),
            [0x30, 6, 0, 3, b'a', b'/', b'b', 0xAB]
        );
        assert_eq!(
            bytes_of(&publish(QoS::AtLeastOnce, true, 0)),
            [0x3A, 7, 0, 3, b'a', b'/', b'b', 0, 7]
        );
    }

    #[test]
    fn suback_and_subscribe_bytes() {
        let suback = Packet::SubAck(SubAck {
            packet_id: 10,
            codes: vec![SubAckCode::Granted(QoS::ExactlyOnce), SubAckCode::Failure],
            properties: Default::default(),
        });
        assert_eq!(bytes_of(&suback), [0x90, 4, 0, 10, 2, 0x80]);
        let subscribe = Packet::Subscribe(Subscribe {
            packet_id: 1,
            filters: vec![("a/#".into(), QoS::AtLeastOnce.into())],
            properties: Default::default(),
        });
        assert_eq!(
            bytes_of(&subscribe),
            [0x82, 8, 0, 1, 0, 3, b'a', b'/', b'#', 1]
        );
    }

    #[test]
    fn remaining_length_is_minimal_at_every_boundary() {
        // Topic "a/b" (5 bytes) + packet id (2) = 7 bytes before the payload.
        for (body, varint) in [
            (127, vec![0x7F]),
            (128, vec![0x80, 0x01]),
            (16_383, vec![0xFF, 0x7F]),
            (16_384, vec![0x80, 0x80, 0x01]),
            (2_097_151, vec![0xFF, 0xFF, 0x7F]),
            (2_097_152, vec![0x80, 0x80, 0x80, 0x01]),
        ] {
            let bytes = bytes_of(&publish(QoS::AtLeastOnce, false, body - 7));
            assert_eq!(&bytes[1..1 + varint.len()], &varint[..], "body {body}");
            assert_eq!(bytes.len(), 1 + varint.len() + body);
        }
    }

    #[test]
    fn oversized_field_is_an_error_and_writes_nothing() {
        let packet = Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: Arc::from("t".repeat(65_536)),
            packet_id: 0,
            payload: Bytes::new(),
            properties: Default::default(),
        });
        let mut out = BytesMut::from(&b"x"[..]);
        assert_eq!(
            try_encode(&packet, ProtocolVersion::V311, &mut out),
            Err(EncodeError::FieldTooLong {
                field: "topic",
                len: 65_536
            })
        );
        assert_eq!(&out[..], b"x");
    }

    #[test]
    fn oversized_packet_is_an_error() {
        // A zeroed allocation is lazily mapped; the payload is never touched.
        let packet = publish(QoS::AtMostOnce, false, 0);
        let Packet::Publish(mut p) = packet else {
            unreachable!()
        };
        p.payload = Bytes::from(vec![0u8; MAX_REMAINING_LENGTH - 4]);
        let mut out = BytesMut::new();
        assert_eq!(
            try_encode(&Packet::Publish(p), ProtocolVersion::V311, &mut out),
            Err(EncodeError::PacketTooLarge(MAX_REMAINING_LENGTH + 1))
        );
        assert!(out.is_empty());
    }

    #[test]
    fn a_plain_publish_is_the_same_bytes_as_the_packet() {
        for (qos, dup, retain, len) in [
            (QoS::AtMostOnce, true, false, 0),
            (QoS::AtLeastOnce, true, true, 64),
            (QoS::ExactlyOnce, false, false, 200),
            (QoS::AtLeastOnce, false, true, 20_000),
        ] {
            let packet = Publish {
                dup,
                qos,
                retain,
                topic: "a/b".into(),
                packet_id: 77,
                payload: vec![7u8; len].into(),
                properties: Properties::default(),
            };
            let plain = PlainPublish {
                topic: &packet.topic,
                payload: &packet.payload,
                qos,
                retain,
                dup,
                packet_id: 77,
            };
            let mut out = BytesMut::from(&b"before"[..]);
            try_encode_plain_publish(&plain, &mut out).unwrap();
            let mut expected = BytesMut::from(&b"before"[..]);
            for version in [ProtocolVersion::V31, ProtocolVersion::V311] {
                expected.truncate(6);
                try_encode(&Packet::Publish(packet.clone()), version, &mut expected).unwrap();
                assert_eq!(out, expected, "{qos:?} {len} bytes");
            }
        }
        let long = "t".repeat(70_000);
        let mut out = BytesMut::new();
        let plain = PlainPublish {
            topic: &long,
            payload: b"",
            qos: QoS::AtMostOnce,
            retain: false,
            dup: false,
            packet_id: 0,
        };
        assert!(try_encode_plain_publish(&plain, &mut out).is_err());
        assert!(out.is_empty(), "nothing written");
    }

    #[test]
    fn encode_appends_after_existing_bytes() {
        let mut out = BytesMut::from(&b"zz"[..]);
        encode(&Packet::PingReq, ProtocolVersion::V311, &mut out);
        encode(
            &Packet::PubComp(Ack::new(3)),
            ProtocolVersion::V311,
            &mut out,
        );
        assert_eq!(&out[..], [b'z', b'z', 0xC0, 0, 0x70, 2, 0, 3]);
    }
}
