//! Decoder tests: one hand-written byte array per malformed case, split points and the size
//! limit.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::*;
use crate::encode::{encode, encoded_len};
use crate::properties::MAX_VARIABLE_BYTE_INTEGER;

const MAX: usize = 1 << 20;

/// Decodes `bytes` as one whole packet, checking that nothing is left over.
fn dec(bytes: &[u8]) -> Result<Option<Packet>, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    let result = decode(&mut buf, MAX, ProtocolVersion::V311);
    if let Ok(Some(_)) = result {
        assert!(buf.is_empty(), "bytes left after a whole packet");
    }
    result
}

fn err(bytes: &[u8]) -> DecodeError {
    match dec(bytes) {
        Err(e) => e,
        other => panic!("expected an error for {bytes:02x?}, got {other:?}"),
    }
}

fn ok(bytes: &[u8]) -> Packet {
    match dec(bytes) {
        Ok(Some(p)) => p,
        other => panic!("expected a packet for {bytes:02x?}, got {other:?}"),
    }
}

fn enc(packet: &Packet) -> BytesMut {
    let mut out = BytesMut::new();
    encode(packet, ProtocolVersion::V311, &mut out);
    out
}

/// A CONNECT with the given protocol name, level and flags, and body `rest` after keep-alive.
fn connect(name: &[u8], level: u8, flags: u8, rest: &[u8]) -> Vec<u8> {
    let mut body = vec![0, u8::try_from(name.len()).unwrap()];
    body.extend_from_slice(name);
    body.extend_from_slice(&[level, flags, 0, 60]);
    body.extend_from_slice(rest);
    let mut out = vec![0x10, u8::try_from(body.len()).unwrap()];
    out.extend(body);
    out
}

// ---- valid packets ----------------------------------------------------------------------

#[test]
fn connect_311_with_everything() {
    // client id "c", will topic "w" payload [9], user "u", password [0xFF, 0].
    let rest = [0, 1, b'c', 0, 1, b'w', 0, 1, 9, 0, 1, b'u', 0, 2, 0xFF, 0];
    // user, password, will retain, will qos 1, will, clean
    let p = ok(&connect(b"MQTT", 4, 0b1110_1110, &rest));
    let expected = Packet::Connect(Box::new(Connect {
        protocol: ProtocolVersion::V311,
        clean_session: true,
        keep_alive: 60,
        client_id: "c".into(),
        will: Some(LastWill {
            topic: Arc::from("w"),
            payload: Bytes::from_static(&[9]),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Default::default(),
        }),
        username: Some("u".into()),
        password: Some(Bytes::from_static(&[0xFF, 0])),
        properties: Default::default(),
    }));
    assert_eq!(p, expected);
}

#[test]
fn connect_31_with_empty_client_id() {
    let Packet::Connect(c) = ok(&connect(b"MQIsdp", 3, 0, &[0, 0])) else {
        panic!("not a CONNECT")
    };
    assert_eq!(c.protocol, ProtocolVersion::V31);
    assert_eq!(c.client_id, "");
    assert!(!c.clean_session && c.will.is_none() && c.username.is_none());
}

#[test]
fn publish_payload_is_a_slice_of_the_frame() {
    let mut buf = BytesMut::from(&[0x33, 8, 0, 1, b't', 0, 5, b'x', b'y', b'z'][..]);
    let frame_start = buf.as_ptr() as usize;
    let Some(Packet::Publish(p)) = decode(&mut buf, MAX, ProtocolVersion::V311).unwrap() else {
        panic!("not a PUBLISH")
    };
    assert_eq!((p.qos, p.retain, p.dup), (QoS::AtLeastOnce, true, false));
    assert_eq!((&*p.topic, p.packet_id), ("t", 5));
    assert_eq!(&p.payload[..], b"xyz");
    assert_eq!(
        p.payload.as_ptr() as usize,
        frame_start + 7,
        "payload was copied"
    );
}

#[test]
fn publish_with_empty_payload_and_suback_failure_code() {
    let Packet::Publish(p) = ok(&[0x30, 3, 0, 1, b't']) else {
        panic!("not a PUBLISH")
    };
    assert!(p.payload.is_empty() && p.packet_id == 0);
    assert_eq!(
        ok(&[0x90, 4, 0, 1, 0x80, 2]),
        Packet::SubAck(SubAck {
            packet_id: 1,
            codes: vec![SubAckCode::Failure, SubAckCode::Granted(QoS::ExactlyOnce)],
            properties: Default::default(),
        })
    );
}

#[test]
fn subscribe_filters_pass_through_unvalidated() {
    let p = ok(&[0x82, 10, 0, 1, 0, 2, b'a', b'+', 1, 0, 0, 0]);
    assert_eq!(
        p,
        Packet::Subscribe(Subscribe {
            packet_id: 1,
            filters: vec![
                ("a+".into(), QoS::AtLeastOnce.into()),
                (String::new(), QoS::AtMostOnce.into())
            ],
            properties: Default::default(),
        })
    );
}

#[test]
fn non_minimal_remaining_length_is_accepted() {
    assert_eq!(ok(&[0xC0, 0x80, 0x00]), Packet::PingReq);
    assert_eq!(
        ok(&[0x40, 0x82, 0x80, 0x80, 0x00, 0, 9]),
        Packet::PubAck(Ack::new(9))
    );
}

#[test]
fn two_packets_in_one_buffer_decode_one_at_a_time() {
    let mut buf = BytesMut::from(&[0xC0, 0, 0x40, 2, 0, 1, 0x30][..]);
    assert_eq!(
        decode(&mut buf, MAX, ProtocolVersion::V311),
        Ok(Some(Packet::PingReq))
    );
    assert_eq!(
        decode(&mut buf, MAX, ProtocolVersion::V311),
        Ok(Some(Packet::PubAck(Ack::new(1))))
    );
    assert_eq!(decode(&mut buf, MAX, ProtocolVersion::V311), Ok(None));
    assert_eq!(&buf[..], [0x30]);
}

// ---- fixed header -----------------------------------------------------------------------

#[test]
fn too_large_is_rejected_with_only_the_header() {
    // PUBLISH announcing 2 MiB; only the 5 header bytes have arrived.
    let mut buf = BytesMut::from(&[0x30, 0x80, 0x80, 0x80, 0x01][..]);
    assert_eq!(
        decode(&mut buf, MAX, ProtocolVersion::V311),
        Err(DecodeError::PacketTooLarge {
            size: (2 << 20) + 5,
            max: MAX
        })
    );
    assert_eq!(
        peek_packet_size(&buf, ProtocolVersion::V311),
        Ok(Some((2 << 20) + 5))
    );
}

#[test]
fn size_limit_counts_the_fixed_header() {
    let bytes = [0x40, 2, 0, 1];
    assert_eq!(
        decode(&mut BytesMut::from(&bytes[..]), 4, ProtocolVersion::V311),
        Ok(Some(Packet::PubAck(Ack::new(1))))
    );
    assert_eq!(
        decode(&mut BytesMut::from(&bytes[..2]), 3, ProtocolVersion::V311),
        Err(DecodeError::PacketTooLarge { size: 4, max: 3 })
    );
}

#[test]
fn incomplete_header_is_not_an_error() {
    assert_eq!(dec(&[]), Ok(None));
    assert_eq!(dec(&[0x30]), Ok(None));
    assert_eq!(dec(&[0x30, 0x80, 0x80, 0x80]), Ok(None));
    assert_eq!(
        peek_packet_size(&[0x30, 0xFF], ProtocolVersion::V311),
        Ok(None)
    );
}

#[test]
fn whole_publish_is_recognised_before_decoding() {
    let publish = [0x30, 6, 0, 3, b'a', b'/', b'b', 0xAB];
    assert!(starts_with_whole_publish(&publish));
    assert!(starts_with_whole_publish(
        &[&publish[..], &[0xC0, 0]].concat()
    ));
    for cut in 0..publish.len() {
        assert!(!starts_with_whole_publish(&publish[..cut]), "{cut} bytes");
    }
    assert!(!starts_with_whole_publish(&[0xC0, 0]), "PINGREQ");
    assert!(!starts_with_whole_publish(&[0x40, 2, 0, 1]), "PUBACK");
    assert!(!starts_with_whole_publish(&[0x39, 0]), "invalid flags");
}

#[test]
fn malformed_remaining_length() {
    assert_eq!(
        err(&[0x30, 0x80, 0x80, 0x80, 0x80, 0x01]),
        DecodeError::MalformedRemainingLength
    );
    assert_eq!(
        err(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF]),
        DecodeError::MalformedRemainingLength
    );
}

#[test]
fn unknown_packet_types() {
    assert_eq!(err(&[0x00, 0]), DecodeError::UnknownPacketType(0));
    assert_eq!(err(&[0xF0, 0]), DecodeError::UnknownPacketType(15));
    // Rejected from the first byte alone.
    assert_eq!(err(&[0xF0]), DecodeError::UnknownPacketType(15));
}

#[test]
fn invalid_fixed_header_flags() {
    let flags = |kind, flags| DecodeError::InvalidFixedHeaderFlags { kind, flags };
    assert_eq!(err(&[0x60, 2, 0, 1]), flags("PUBREL", 0));
    assert_eq!(err(&[0x80, 6, 0, 1, 0, 1, b'a', 0]), flags("SUBSCRIBE", 0));
    assert_eq!(err(&[0xA3, 5, 0, 1, 0, 1, b'a']), flags("UNSUBSCRIBE", 3));
    assert_eq!(err(&[0x42, 2, 0, 1]), flags("PUBACK", 2));
    assert_eq!(err(&[0x11]), flags("CONNECT", 1));
    assert_eq!(err(&[0xC8, 0]), flags("PINGREQ", 8));
    assert_eq!(err(&[0xE1, 0]), flags("DISCONNECT", 1));
}

// ---- PUBLISH ----------------------------------------------------------------------------

#[test]
fn publish_qos3() {
    assert_eq!(err(&[0x36, 5, 0, 1, b't', 0, 1]), DecodeError::InvalidQoS);
}

#[test]
fn publish_dup_with_qos0() {
    assert_eq!(err(&[0x38, 3, 0, 1, b't']), DecodeError::DupWithQoS0);
}

#[test]
fn publish_topic_names() {
    assert_eq!(err(&[0x30, 2, 0, 0]), DecodeError::InvalidTopicName);
    assert_eq!(
        err(&[0x30, 4, 0, 2, b'a', b'+']),
        DecodeError::InvalidTopicName
    );
    assert_eq!(
        err(&[0x30, 4, 0, 2, b'#', b'a']),
        DecodeError::InvalidTopicName
    );
    assert_eq!(err(&[0x30, 4, 0, 2, b'a', 0]), DecodeError::NullCharacter);
    assert_eq!(err(&[0x30, 4, 0, 2, 0xC3, 0x28]), DecodeError::InvalidUtf8);
    // A UTF-16 surrogate (U+D800) encoded as UTF-8 is not valid UTF-8.
    assert_eq!(
        err(&[0x30, 5, 0, 3, 0xED, 0xA0, 0x80]),
        DecodeError::InvalidUtf8
    );
}

#[test]
fn publish_zero_packet_id() {
    assert_eq!(err(&[0x32, 5, 0, 1, b't', 0, 0]), DecodeError::ZeroPacketId);
    assert_eq!(err(&[0x34, 5, 0, 1, b't', 0, 0]), DecodeError::ZeroPacketId);
}

#[test]
fn publish_truncated() {
    assert_eq!(err(&[0x30, 3, 0, 5, b't']), DecodeError::Truncated);
    assert_eq!(err(&[0x32, 4, 0, 1, b't', 0]), DecodeError::Truncated);
    assert_eq!(err(&[0x30, 1, 0]), DecodeError::Truncated);
}

// ---- CONNECT ----------------------------------------------------------------------------

#[test]
fn connect_invalid_protocol_name() {
    assert_eq!(
        err(&connect(b"MQTX", 4, 0, &[0, 0])),
        DecodeError::InvalidProtocolName("MQTX".into())
    );
    assert_eq!(
        err(&connect(b"\xFFQ", 4, 0, &[0, 0])),
        DecodeError::InvalidProtocolName("\u{FFFD}Q".into())
    );
}

#[test]
fn connect_unsupported_protocol_level() {
    // Level 5 is MQTT 5.0 now (see the v5 tests); 6 is the next unknown one.
    assert_eq!(
        err(&connect(b"MQTT", 6, 0, &[])),
        DecodeError::UnsupportedProtocolLevel(6)
    );
    assert_eq!(
        err(&connect(b"MQTT", 3, 0, &[0, 0])),
        DecodeError::UnsupportedProtocolLevel(3)
    );
    assert_eq!(
        err(&connect(b"MQIsdp", 4, 0, &[0, 0])),
        DecodeError::UnsupportedProtocolLevel(4)
    );
}

#[test]
fn connect_reserved_flag() {
    assert_eq!(
        err(&connect(b"MQTT", 4, 0b0000_0011, &[0, 0])),
        DecodeError::ReservedConnectFlag
    );
}

#[test]
fn connect_will_flags_without_will() {
    assert_eq!(
        err(&connect(b"MQTT", 4, 0b0000_1000, &[0, 0])),
        DecodeError::InvalidWillFlags
    );
    assert_eq!(
        err(&connect(b"MQTT", 4, 0b0010_0000, &[0, 0])),
        DecodeError::InvalidWillFlags
    );
}

#[test]
fn connect_will_qos3() {
    let rest = [0, 0, 0, 1, b'w', 0, 0];
    assert_eq!(
        err(&connect(b"MQTT", 4, 0b0001_1100, &rest)),
        DecodeError::InvalidQoS
    );
}

#[test]
fn connect_will_topic_with_wildcard() {
    let rest = [0, 0, 0, 1, b'#', 0, 0];
    assert_eq!(
        err(&connect(b"MQTT", 4, 0b0000_0100, &rest)),
        DecodeError::InvalidTopicName
    );
}

#[test]
fn connect_password_without_username() {
    let rest = [0, 0, 0, 1, b'p'];
    assert_eq!(
        err(&connect(b"MQTT", 4, 0b0100_0000, &rest)),
        DecodeError::PasswordWithoutUsername
    );
}

#[test]
fn connect_client_id_with_nul_or_bad_utf8() {
    assert_eq!(
        err(&connect(b"MQTT", 4, 0, &[0, 1, 0])),
        DecodeError::NullCharacter
    );
    assert_eq!(
        err(&connect(b"MQTT", 4, 0, &[0, 1, 0x80])),
        DecodeError::InvalidUtf8
    );
    let user = [0, 0, 0, 2, b'u', 0];
    assert_eq!(
        err(&connect(b"MQTT", 4, 0b1000_0000, &user)),
        DecodeError::NullCharacter
    );
}

#[test]
fn connect_truncated_and_trailing() {
    assert_eq!(err(&connect(b"MQTT", 4, 0, &[0])), DecodeError::Truncated);
    assert_eq!(
        err(&connect(b"MQTT", 4, 0b1000_0000, &[0, 0])),
        DecodeError::Truncated
    );
    assert_eq!(err(&[0x10, 3, 0, 4, b'M']), DecodeError::Truncated);
    assert_eq!(
        err(&connect(b"MQTT", 4, 0, &[0, 0, 7])),
        DecodeError::TrailingBytes
    );
}

// ---- CONNACK, acks, SUBSCRIBE, SUBACK, UNSUBSCRIBE ----------------------------------------

#[test]
fn connack_session_present() {
    assert_eq!(
        ok(&[0x20, 2, 1, 0]),
        Packet::ConnAck(ConnAck {
            session_present: true,
            code: ConnectReturnCode::Accepted.into(),
            properties: Default::default(),
        })
    );
}

#[test]
fn connack_reserved_flags() {
    assert_eq!(err(&[0x20, 2, 2, 0]), DecodeError::InvalidConnAckFlags(2));
    assert_eq!(
        err(&[0x20, 2, 0x81, 0]),
        DecodeError::InvalidConnAckFlags(0x81)
    );
}

#[test]
fn connack_invalid_code() {
    assert_eq!(err(&[0x20, 2, 0, 6]), DecodeError::InvalidConnAckCode(6));
}

#[test]
fn connack_wrong_lengths() {
    assert_eq!(err(&[0x20, 1, 0]), DecodeError::Truncated);
    assert_eq!(err(&[0x20, 3, 0, 0, 0]), DecodeError::TrailingBytes);
}

#[test]
fn acks_too_long() {
    assert_eq!(err(&[0x40, 3, 0, 1, 0]), DecodeError::TrailingBytes);
    assert_eq!(err(&[0xB0, 4, 0, 1, 0, 1]), DecodeError::TrailingBytes);
    assert_eq!(err(&[0xC0, 1, 0]), DecodeError::TrailingBytes);
    assert_eq!(err(&[0xD0, 1, 0]), DecodeError::TrailingBytes);
    assert_eq!(err(&[0xE0, 2, 0, 0]), DecodeError::TrailingBytes);
}

#[test]
fn acks_too_short() {
    assert_eq!(err(&[0x50, 1, 0]), DecodeError::Truncated);
    assert_eq!(err(&[0x70, 0]), DecodeError::Truncated);
}

#[test]
fn subscribe_zero_packet_id() {
    assert_eq!(
        err(&[0x82, 6, 0, 0, 0, 1, b'a', 0]),
        DecodeError::ZeroPacketId
    );
}

#[test]
fn subscribe_without_filters() {
    assert_eq!(err(&[0x82, 2, 0, 1]), DecodeError::EmptySubscribe);
}

#[test]
fn subscribe_qos3() {
    assert_eq!(
        err(&[0x82, 6, 0, 1, 0, 1, b'a', 3]),
        DecodeError::InvalidQoS
    );
}

#[test]
fn subscribe_reserved_bits() {
    assert_eq!(
        err(&[0x82, 6, 0, 1, 0, 1, b'a', 0x41]),
        DecodeError::SubscribeReservedBits(0x41)
    );
    assert_eq!(
        err(&[0x82, 6, 0, 1, 0, 1, b'a', 0x04]),
        DecodeError::SubscribeReservedBits(0x04)
    );
}

#[test]
fn subscribe_filter_without_qos_byte() {
    assert_eq!(err(&[0x82, 5, 0, 1, 0, 1, b'a']), DecodeError::Truncated);
}

#[test]
fn subscribe_filter_with_nul() {
    assert_eq!(
        err(&[0x82, 6, 0, 1, 0, 1, 0, 0]),
        DecodeError::NullCharacter
    );
}

#[test]
fn suback_without_codes() {
    assert_eq!(err(&[0x90, 2, 0, 1]), DecodeError::EmptySubAck);
}

#[test]
fn suback_invalid_codes() {
    assert_eq!(err(&[0x90, 3, 0, 1, 3]), DecodeError::InvalidSubAckCode(3));
    assert_eq!(
        err(&[0x90, 3, 0, 1, 0x81]),
        DecodeError::InvalidSubAckCode(0x81)
    );
}

#[test]
fn suback_truncated() {
    assert_eq!(err(&[0x90, 1, 0]), DecodeError::Truncated);
}

#[test]
fn unsubscribe_zero_packet_id() {
    assert_eq!(err(&[0xA2, 5, 0, 0, 0, 1, b'a']), DecodeError::ZeroPacketId);
}

#[test]
fn unsubscribe_without_filters() {
    assert_eq!(err(&[0xA2, 2, 0, 1]), DecodeError::EmptyUnsubscribe);
}

#[test]
fn unsubscribe_truncated_filter() {
    assert_eq!(err(&[0xA2, 4, 0, 1, 0, 1]), DecodeError::Truncated);
}

#[test]
fn unsubscribe_filter_invalid_utf8() {
    assert_eq!(err(&[0xA2, 5, 0, 1, 0, 1, 0xFE]), DecodeError::InvalidUtf8);
}

// ---- split points -----------------------------------------------------------------------

/// One valid packet of every type.
fn samples() -> Vec<Packet> {
    let bytes: [&[u8]; 14] = [
        &connect(
            b"MQTT",
            4,
            0b1110_1110,
            &[0, 1, b'c', 0, 1, b'w', 0, 1, 9, 0, 1, b'u', 0, 1, 7],
        ),
        &[0x20, 2, 0, 5],
        &[0x3B, 7, 0, 1, b't', 0, 5, b'x', b'y'],
        &[0x40, 2, 0, 1],
        &[0x50, 2, 0, 2],
        &[0x62, 2, 0, 3],
        &[0x70, 2, 0, 4],
        &[0x82, 6, 0, 1, 0, 1, b'#', 2],
        &[0x90, 3, 0, 1, 0x80],
        &[0xA2, 5, 0, 1, 0, 1, b'a'],
        &[0xB0, 2, 0, 6],
        &[0xC0, 0],
        &[0xD0, 0],
        &[0xE0, 0],
    ];
    bytes.iter().map(|b| ok(b)).collect()
}

#[test]
fn every_split_point_of_every_type_needs_more_bytes() {
    for packet in samples() {
        let wire = enc(&packet);
        for cut in 0..wire.len() {
            let mut buf = BytesMut::from(&wire[..cut]);
            assert_eq!(
                decode(&mut buf, MAX, ProtocolVersion::V311),
                Ok(None),
                "{} cut at {cut}",
                packet.kind()
            );
            assert_eq!(&buf[..], &wire[..cut], "buffer touched");
        }
        let mut buf = wire.clone();
        assert_eq!(
            decode(&mut buf, MAX, ProtocolVersion::V311),
            Ok(Some(packet))
        );
        assert!(buf.is_empty());
    }
}

// ---- MQTT 5.0 ---------------------------------------------------------------------------

const V5: ProtocolVersion = ProtocolVersion::V5;

fn dec5(bytes: &[u8]) -> Result<Option<Packet>, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    let result = decode(&mut buf, MAX, V5);
    if let Ok(Some(_)) = result {
        assert!(buf.is_empty(), "bytes left after a whole packet");
    }
    result
}

fn err5(bytes: &[u8]) -> DecodeError {
    match dec5(bytes) {
        Err(e) => e,
        other => panic!("expected an error for {bytes:02x?}, got {other:?}"),
    }
}

fn ok5(bytes: &[u8]) -> Packet {
    match dec5(bytes) {
        Ok(Some(p)) => p,
        other => panic!("expected a packet for {bytes:02x?}, got {other:?}"),
    }
}

fn enc5(packet: &Packet) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(packet, V5, &mut out);
    assert_eq!(out.len(), encoded_len(packet, V5), "encoded_len disagrees");
    out.to_vec()
}

/// Encodes for 5.0 and decodes back: the same packet.
fn round_trip5(packet: Packet) {
    let bytes = enc5(&packet);
    assert_eq!(ok5(&bytes), packet, "bytes {bytes:02x?}");
}

/// A whole packet from its first byte and body.
fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first, u8::try_from(body.len()).unwrap()];
    out.extend_from_slice(body);
    out
}

fn s(text: &str) -> Arc<str> {
    Arc::from(text)
}

fn reason_only(reason_string: &str) -> Properties {
    Properties {
        reason_string: Some(s(reason_string)),
        user_properties: vec![(s("k"), s("v")), (s("k"), s("v2"))],
        ..Properties::default()
    }
}

#[test]
fn v5_connect_from_spec_bytes() {
    // Properties: session expiry 10, receive maximum 20. Will properties: will delay 5.
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 5, 0b1100_0110, 0, 60];
    body.extend_from_slice(&[8, 0x11, 0, 0, 0, 10, 0x21, 0, 20]);
    body.extend_from_slice(&[0, 1, b'c']);
    body.extend_from_slice(&[5, 0x18, 0, 0, 0, 5, 0, 1, b'w', 0, 1, 9]);
    body.extend_from_slice(&[0, 1, b'u', 0, 1, b'p']);
    let p = ok5(&frame(0x10, &body));
    let Packet::Connect(c) = &p else {
        panic!("{p:?}")
    };
    assert_eq!(c.protocol, V5);
    assert_eq!(c.properties.session_expiry_interval, Some(10));
    assert_eq!(c.properties.receive_maximum, Some(20));
    let will = c.will.as_ref().unwrap();
    assert_eq!(will.properties.will_delay_interval, Some(5));
    assert_eq!(&*will.topic, "w");
    assert_eq!(c.username.as_deref(), Some("u"));
    assert_eq!(enc5(&p), frame(0x10, &body));
    // A CONNECT is decoded by the version it names, whatever the connection's.
    assert_eq!(
        decode(
            &mut BytesMut::from(&frame(0x10, &body)[..]),
            MAX,
            ProtocolVersion::V311
        ),
        Ok(Some(p))
    );
}

#[test]
fn v5_connect_allows_a_password_without_user_name() {
    let body = [
        0,
        4,
        b'M',
        b'Q',
        b'T',
        b'T',
        5,
        0b0100_0010,
        0,
        60,
        0,
        0,
        1,
        b'c',
        0,
        1,
        b'p',
    ];
    let Packet::Connect(c) = ok5(&frame(0x10, &body)) else {
        panic!()
    };
    assert_eq!(c.username, None);
    assert_eq!(c.password.as_deref(), Some(&b"p"[..]));
}

#[test]
fn v5_connect_round_trip_with_every_connect_property() {
    round_trip5(Packet::Connect(Box::new(Connect {
        protocol: V5,
        clean_session: false,
        keep_alive: 30,
        client_id: "c1".into(),
        will: Some(LastWill {
            topic: s("will/t"),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: Properties {
                payload_format_utf8: Some(true),
                message_expiry_interval: Some(60),
                content_type: Some(s("text/plain")),
                response_topic: Some(s("resp")),
                correlation_data: Some(Bytes::from_static(&[1, 2])),
                will_delay_interval: Some(9),
                user_properties: vec![(s("a"), s("b"))],
                ..Properties::default()
            },
        }),
        username: Some("u".into()),
        password: Some(Bytes::from_static(b"pw")),
        properties: Properties {
            session_expiry_interval: Some(u32::MAX),
            authentication_method: Some(s("SCRAM-SHA-1")),
            authentication_data: Some(Bytes::from_static(b"data")),
            request_problem_information: Some(false),
            request_response_information: Some(true),
            receive_maximum: Some(100),
            topic_alias_maximum: Some(10),
            maximum_packet_size: Some(1 << 20),
            user_properties: vec![(s("x"), s("1")), (s("x"), s("2"))],
            ..Properties::default()
        },
    })));
}

#[test]
fn v5_connack_from_spec_bytes_and_round_trip() {
    assert_eq!(
        ok5(&[0x20, 3, 1, 0, 0]),
        Packet::ConnAck(ConnAck::new(true, ReasonCode::Success))
    );
    let refused = Packet::ConnAck(ConnAck {
        session_present: false,
        code: ReasonCode::Banned,
        properties: reason_only("go away"),
    });
    round_trip5(refused.clone());
    // A 3.1.1 client gets the 3.1.1 code and no properties.
    let mut v3 = BytesMut::new();
    encode(&refused, ProtocolVersion::V311, &mut v3);
    assert_eq!(&v3[..], [0x20, 2, 0, 5]);
    round_trip5(Packet::ConnAck(ConnAck {
        session_present: true,
        code: ReasonCode::Success,
        properties: Properties {
            session_expiry_interval: Some(0),
            assigned_client_identifier: Some(s("auto-1")),
            server_keep_alive: Some(120),
            authentication_method: Some(s("m")),
            authentication_data: Some(Bytes::from_static(b"d")),
            response_information: Some(s("resp/")),
            server_reference: Some(s("other:1883")),
            reason_string: Some(s("ok")),
            receive_maximum: Some(32),
            topic_alias_maximum: Some(0),
            maximum_qos: Some(QoS::AtLeastOnce),
            retain_available: Some(true),
            maximum_packet_size: Some(1 << 20),
            wildcard_subscription_available: Some(true),
            subscription_identifier_available: Some(false),
            shared_subscription_available: Some(true),
            user_properties: vec![(s("k"), s("v"))],
            ..Properties::default()
        },
    }));
}

#[test]
fn v5_connack_code_must_be_a_connack_code() {
    assert_eq!(
        err5(&[0x20, 3, 0, 0x8E, 0]),
        DecodeError::InvalidReasonCode {
            packet: "CONNACK",
            code: 0x8E
        }
    );
    assert_eq!(
        err5(&[0x20, 3, 0, 0x07, 0]),
        DecodeError::InvalidReasonCode {
            packet: "CONNACK",
            code: 0x07
        }
    );
}

#[test]
fn v5_publish_with_properties_and_topic_alias() {
    // Topic "t", QoS 1, id 5, properties: topic alias 3, two subscription ids, payload "x".
    let body = [
        0, 1, b't', 0, 5, 8, 0x23, 0, 3, 0x0B, 1, 0x0B, 0x80, 0x01, b'x',
    ];
    let Packet::Publish(p) = ok5(&frame(0x32, &body)) else {
        panic!()
    };
    assert_eq!(p.properties.topic_alias, Some(3));
    assert_eq!(p.properties.subscription_identifiers, vec![1, 128]);
    assert_eq!(&p.payload[..], b"x");
    // An empty topic with a topic alias.
    let Packet::Publish(p) = ok5(&frame(0x30, &[0, 0, 3, 0x23, 0, 3, b'x'])) else {
        panic!()
    };
    assert_eq!(&*p.topic, "");
    assert_eq!(
        err5(&frame(0x30, &[0, 0, 0, b'x'])),
        DecodeError::EmptyTopicWithoutAlias
    );
    // 3.1.1 still refuses an empty topic.
    assert_eq!(
        err(&frame(0x30, &[0, 0, b'x'])),
        DecodeError::InvalidTopicName
    );
    round_trip5(Packet::Publish(Publish {
        dup: true,
        qos: QoS::ExactlyOnce,
        retain: true,
        topic: s("a/b"),
        packet_id: 9,
        payload: Bytes::from_static(b"hello"),
        properties: Properties {
            payload_format_utf8: Some(true),
            message_expiry_interval: Some(3600),
            content_type: Some(s("application/json")),
            response_topic: Some(s("reply/to")),
            correlation_data: Some(Bytes::from_static(b"corr")),
            subscription_identifiers: vec![1, MAX_VARIABLE_BYTE_INTEGER],
            topic_alias: Some(1),
            user_properties: vec![(s("b"), s("2")), (s("a"), s("1")), (s("b"), s("3"))],
            ..Properties::default()
        },
    }));
}

#[test]
fn v5_acknowledgements_short_and_long_forms() {
    let ack = |id, reason, properties| Ack {
        packet_id: id,
        reason,
        properties,
    };
    // Remaining length 2: success.
    assert_eq!(ok5(&[0x40, 2, 0, 1]), Packet::PubAck(Ack::new(1)));
    assert_eq!(enc5(&Packet::PubAck(Ack::new(1))), [0x40, 2, 0, 1]);
    // Remaining length 3: a reason code, no properties.
    let no_match = ack(1, ReasonCode::NoMatchingSubscribers, Properties::default());
    assert_eq!(
        ok5(&[0x40, 3, 0, 1, 0x10]),
        Packet::PubAck(no_match.clone())
    );
    assert_eq!(
        enc5(&Packet::PubAck(no_match.clone())),
        [0x40, 3, 0, 1, 0x10]
    );
    // Remaining length 4: an empty property block.
    assert_eq!(ok5(&[0x40, 4, 0, 1, 0x10, 0]), Packet::PubAck(no_match));
    assert_eq!(
        ok5(&[0x50, 3, 0, 2, 0x97]),
        Packet::PubRec(ack(2, ReasonCode::QuotaExceeded, Properties::default()))
    );
    assert_eq!(
        ok5(&[0x62, 3, 0, 3, 0x92]),
        Packet::PubRel(ack(
            3,
            ReasonCode::PacketIdentifierNotFound,
            Properties::default()
        ))
    );
    assert_eq!(ok5(&[0x70, 2, 0, 4]), Packet::PubComp(Ack::new(4)));
    for p in [
        Packet::PubAck(ack(1, ReasonCode::NotAuthorized, reason_only("no"))),
        Packet::PubRec(ack(2, ReasonCode::Success, reason_only("fine"))),
        Packet::PubRel(ack(3, ReasonCode::Success, reason_only("r"))),
        Packet::PubComp(ack(
            4,
            ReasonCode::PacketIdentifierNotFound,
            reason_only("c"),
        )),
    ] {
        round_trip5(p);
    }
    // PUBREL and PUBCOMP know only 0x00 and 0x92.
    assert_eq!(
        err5(&[0x62, 3, 0, 3, 0x10]),
        DecodeError::InvalidReasonCode {
            packet: "PUBREL",
            code: 0x10
        }
    );
    assert_eq!(
        err5(&[0x40, 3, 0, 1, 0x92]),
        DecodeError::InvalidReasonCode {
            packet: "PUBACK",
            code: 0x92
        }
    );
    // 3.1.1 has no reason code: a third byte is trailing.
    assert_eq!(err(&[0x40, 3, 0, 1, 0x10]), DecodeError::TrailingBytes);
}

#[test]
fn v5_subscribe_options() {
    // Filter "a", options: retain handling 2, RAP, no local, QoS 2.
    let body = [0, 1, 0, 0, 1, b'a', 0b0010_1110];
    let Packet::Subscribe(sub) = ok5(&frame(0x82, &body)) else {
        panic!()
    };
    assert_eq!(
        sub.filters[0].1,
        FilterOptions {
            qos: QoS::ExactlyOnce,
            no_local: true,
            retain_as_published: true,
            retain_handling: RetainHandling::Never,
        }
    );
    assert_eq!(enc5(&Packet::Subscribe(sub)), frame(0x82, &body));
    assert_eq!(
        err5(&frame(0x82, &[0, 1, 0, 0, 1, b'a', 0b0100_0000])),
        DecodeError::SubscriptionOptionsReservedBits(0b0100_0000)
    );
    assert_eq!(
        err5(&frame(0x82, &[0, 1, 0, 0, 1, b'a', 0b0011_0000])),
        DecodeError::InvalidRetainHandling
    );
    assert_eq!(
        err5(&frame(0x82, &[0, 1, 0, 0, 1, b'a', 3])),
        DecodeError::InvalidQoS
    );
    // 3.1.1 still refuses any bit above the QoS.
    assert_eq!(
        err(&frame(0x82, &[0, 1, 0, 1, b'a', 0b0000_0100])),
        DecodeError::SubscribeReservedBits(4)
    );
    round_trip5(Packet::Subscribe(Subscribe {
        packet_id: 7,
        filters: vec![
            ("a/+".into(), QoS::AtLeastOnce.into()),
            (
                "$share/g/b/#".into(),
                FilterOptions {
                    qos: QoS::AtMostOnce,
                    no_local: false,
                    retain_as_published: true,
                    retain_handling: RetainHandling::OnNewSubscription,
                },
            ),
        ],
        properties: Properties {
            subscription_identifiers: vec![42],
            user_properties: vec![(s("k"), s("v"))],
            ..Properties::default()
        },
    }));
}

#[test]
fn v5_suback_unsubscribe_unsuback() {
    let suback = Packet::SubAck(SubAck {
        packet_id: 7,
        codes: vec![
            SubAckCode::Granted(QoS::AtLeastOnce),
            SubAckCode::Failure,
            SubAckCode::Refused(ReasonCode::SharedSubscriptionsNotSupported),
        ],
        properties: reason_only("partly"),
    });
    round_trip5(suback);
    assert_eq!(
        ok5(&[0x90, 5, 0, 7, 0, 0x02, 0xA2]),
        Packet::SubAck(SubAck {
            packet_id: 7,
            codes: vec![
                SubAckCode::Granted(QoS::ExactlyOnce),
                SubAckCode::Refused(ReasonCode::WildcardSubscriptionsNotSupported),
            ],
            properties: Properties::default(),
        })
    );
    assert_eq!(
        err5(&[0x90, 4, 0, 7, 0, 0x8E]),
        DecodeError::InvalidReasonCode {
            packet: "SUBACK",
            code: 0x8E
        }
    );
    // A refusal a 3.1.1 client cannot be told is 0x80.
    let mut v3 = BytesMut::new();
    encode(
        &Packet::SubAck(SubAck {
            packet_id: 1,
            codes: vec![SubAckCode::Refused(ReasonCode::QuotaExceeded)],
            properties: Properties::default(),
        }),
        ProtocolVersion::V311,
        &mut v3,
    );
    assert_eq!(&v3[..], [0x90, 3, 0, 1, 0x80]);
    round_trip5(Packet::Unsubscribe(Unsubscribe {
        packet_id: 3,
        filters: vec!["a".into(), "b/#".into()],
        properties: Properties {
            user_properties: vec![(s("k"), s("v"))],
            ..Properties::default()
        },
    }));
    let unsuback = UnsubAck {
        packet_id: 3,
        reasons: vec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted],
        properties: reason_only("done"),
    };
    round_trip5(Packet::UnsubAck(unsuback));
    assert_eq!(
        ok5(&[0xB0, 4, 0, 3, 0, 0x11]),
        Packet::UnsubAck(UnsubAck {
            packet_id: 3,
            reasons: vec![ReasonCode::NoSubscriptionExisted],
            properties: Properties::default(),
        })
    );
    assert_eq!(err5(&[0xB0, 3, 0, 3, 0]), DecodeError::EmptyUnsubAck);
    assert_eq!(
        err5(&[0xB0, 4, 0, 3, 0, 0x10]),
        DecodeError::InvalidReasonCode {
            packet: "UNSUBACK",
            code: 0x10
        }
    );
    // 3.1.1 UNSUBACK: the packet id only, reasons are not sent.
    assert_eq!(ok(&[0xB0, 2, 0, 3]), Packet::UnsubAck(UnsubAck::new(3)));
}

#[test]
fn v5_disconnect_both_directions() {
    assert_eq!(ok5(&[0xE0, 0]), Packet::Disconnect(Disconnect::default()));
    assert_eq!(enc5(&Packet::Disconnect(Disconnect::default())), [0xE0, 0]);
    let taken_over = Disconnect {
        reason: ReasonCode::SessionTakenOver,
        properties: Properties::default(),
    };
    assert_eq!(
        ok5(&[0xE0, 1, 0x8E]),
        Packet::Disconnect(taken_over.clone())
    );
    assert_eq!(enc5(&Packet::Disconnect(taken_over)), [0xE0, 1, 0x8E]);
    for reason in [
        ReasonCode::KeepAliveTimeout,
        ReasonCode::PacketTooLarge,
        ReasonCode::QuotaExceeded,
        ReasonCode::UseAnotherServer,
        ReasonCode::DisconnectWithWillMessage,
    ] {
        round_trip5(Packet::Disconnect(Disconnect {
            reason,
            properties: Properties {
                session_expiry_interval: Some(0),
                reason_string: Some(s("bye")),
                server_reference: Some(s("other")),
                user_properties: vec![(s("k"), s("v"))],
                ..Properties::default()
            },
        }));
    }
    assert_eq!(
        err5(&[0xE0, 1, 0x18]),
        DecodeError::InvalidReasonCode {
            packet: "DISCONNECT",
            code: 0x18
        }
    );
    // 3.1.1 DISCONNECT has no body, and leaves a 5.0 reason out.
    assert_eq!(err(&[0xE0, 1, 0x8E]), DecodeError::TrailingBytes);
    let mut v3 = BytesMut::new();
    encode(
        &Packet::Disconnect(Disconnect {
            reason: ReasonCode::ServerShuttingDown,
            properties: Properties::default(),
        }),
        ProtocolVersion::V311,
        &mut v3,
    );
    assert_eq!(&v3[..], [0xE0, 0]);
}

#[test]
fn v5_auth() {
    assert_eq!(ok5(&[0xF0, 0]), Packet::Auth(Auth::default()));
    round_trip5(Packet::Auth(Auth {
        reason: ReasonCode::ContinueAuthentication,
        properties: Properties {
            authentication_method: Some(s("SCRAM-SHA-256")),
            authentication_data: Some(Bytes::from_static(b"nonce")),
            reason_string: Some(s("step 2")),
            ..Properties::default()
        },
    }));
    assert_eq!(
        err5(&[0xF0, 1, 0x87]),
        DecodeError::InvalidReasonCode {
            packet: "AUTH",
            code: 0x87
        }
    );
    assert_eq!(
        err5(&[0xF1, 0]),
        DecodeError::InvalidFixedHeaderFlags {
            kind: "AUTH",
            flags: 1
        }
    );
    // Before 5.0, type 15 is reserved, and AUTH cannot be written.
    assert_eq!(err(&[0xF0, 0]), DecodeError::UnknownPacketType(15));
    assert_eq!(
        try_encode_v3(&Packet::Auth(Auth::default())),
        Err(crate::encode::EncodeError::NotInVersion {
            kind: "AUTH",
            version: ProtocolVersion::V311
        })
    );
}

fn try_encode_v3(packet: &Packet) -> Result<(), crate::encode::EncodeError> {
    crate::encode::try_encode(packet, ProtocolVersion::V311, &mut BytesMut::new())
}

// ---- MQTT 5.0 property rejections ---------------------------------------------------------

/// A v5 PUBACK (id 1, success) carrying the property block `props` (length added).
fn puback_with(props: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 1, 0, u8::try_from(props.len()).unwrap()];
    body.extend_from_slice(props);
    frame(0x40, &body)
}

/// A v5 CONNECT (client id "c") carrying the property block `props` (length added).
fn connect_with(props: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 5, 0b10, 0, 60];
    body.push(u8::try_from(props.len()).unwrap());
    body.extend_from_slice(props);
    body.extend_from_slice(&[0, 1, b'c']);
    frame(0x10, &body)
}

#[test]
fn v5_property_not_allowed_on_the_packet() {
    assert_eq!(
        err5(&connect_with(&[0x23, 0, 1])),
        DecodeError::PropertyNotAllowed {
            property: "Topic Alias",
            packet: "CONNECT"
        }
    );
    assert_eq!(
        err5(&puback_with(&[0x11, 0, 0, 0, 1])),
        DecodeError::PropertyNotAllowed {
            property: "Session Expiry Interval",
            packet: "PUBACK"
        }
    );
    // Will delay belongs to the will, not to CONNECT itself.
    assert_eq!(
        err5(&connect_with(&[0x18, 0, 0, 0, 1])),
        DecodeError::PropertyNotAllowed {
            property: "Will Delay Interval",
            packet: "CONNECT"
        }
    );
    assert_eq!(
        err5(&frame(0x30, &[0, 1, b't', 3, 0x1F, 0, 0])),
        DecodeError::PropertyNotAllowed {
            property: "Reason String",
            packet: "PUBLISH"
        }
    );
    assert_eq!(
        err5(&puback_with(&[0x05, 0])),
        DecodeError::UnknownProperty(0x05)
    );
    assert_eq!(
        err5(&puback_with(&[0x9F, 0])),
        DecodeError::UnknownProperty(0x9F)
    );
}

#[test]
fn v5_duplicate_properties() {
    assert_eq!(
        err5(&connect_with(&[0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2])),
        DecodeError::DuplicateProperty("Session Expiry Interval")
    );
    assert_eq!(
        err5(&puback_with(&[0x1F, 0, 1, b'a', 0x1F, 0, 1, b'b'])),
        DecodeError::DuplicateProperty("Reason String")
    );
    // One subscription identifier on SUBSCRIBE, several on PUBLISH.
    assert_eq!(
        err5(&frame(0x82, &[0, 1, 4, 0x0B, 1, 0x0B, 2, 0, 1, b'a', 0])),
        DecodeError::DuplicateProperty("Subscription Identifier")
    );
    let Packet::Publish(p) = ok5(&frame(0x30, &[0, 1, b't', 4, 0x0B, 1, 0x0B, 2])) else {
        panic!()
    };
    assert_eq!(p.properties.subscription_identifiers, vec![1, 2]);
    // User properties repeat, in order.
    let Packet::PubAck(a) = ok5(&puback_with(&[
        0x26, 0, 1, b'k', 0, 1, b'2', 0x26, 0, 1, b'k', 0, 1, b'1',
    ])) else {
        panic!()
    };
    assert_eq!(
        a.properties.user_properties,
        vec![(s("k"), s("2")), (s("k"), s("1"))]
    );
}

#[test]
fn v5_invalid_property_values() {
    let invalid = |e: DecodeError| match e {
        DecodeError::InvalidPropertyValue {
            property, value, ..
        } => (property, value),
        other => panic!("expected an invalid value, got {other:?}"),
    };
    assert_eq!(
        invalid(err5(&connect_with(&[0x21, 0, 0]))),
        ("Receive Maximum", 0)
    );
    assert_eq!(
        invalid(err5(&connect_with(&[0x27, 0, 0, 0, 0]))),
        ("Maximum Packet Size", 0)
    );
    assert_eq!(
        invalid(err5(&frame(0x82, &[0, 1, 2, 0x0B, 0, 0, 1, b'a', 0]))),
        ("Subscription Identifier", 0)
    );
    assert_eq!(
        invalid(err5(&frame(0x30, &[0, 1, b't', 2, 0x01, 2]))),
        ("Payload Format Indicator", 2)
    );
    assert_eq!(
        invalid(err5(&frame(0x30, &[0, 1, b't', 3, 0x23, 0, 0]))),
        ("Topic Alias", 0)
    );
    assert_eq!(
        invalid(err5(&connect_with(&[0x17, 2]))),
        ("Request Problem Information", 2)
    );
    assert_eq!(
        invalid(err5(&frame(0x20, &[0, 0, 2, 0x24, 2]))),
        ("Maximum QoS", 2)
    );
    assert_eq!(
        err5(&frame(0x30, &[0, 1, b't', 4, 0x08, 0, 1, b'#'])),
        DecodeError::InvalidResponseTopic
    );
    // A subscription identifier whose variable byte integer runs to a fifth byte.
    assert_eq!(
        err5(&frame(
            0x30,
            &[0, 1, b't', 6, 0x0B, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]
        )),
        DecodeError::MalformedVariableByteInteger
    );
    // Strings in properties are MQTT strings.
    assert_eq!(
        err5(&puback_with(&[0x1F, 0, 1, 0])),
        DecodeError::NullCharacter
    );
}

#[test]
fn v5_property_length_beyond_the_packet() {
    assert_eq!(
        err5(&[0x40, 4, 0, 1, 0, 5]),
        DecodeError::PropertyLengthExceedsPacket {
            len: 5,
            available: 0
        }
    );
    assert_eq!(
        err5(&frame(0x30, &[0, 1, b't', 0x80, 0x01, b'x'])),
        DecodeError::PropertyLengthExceedsPacket {
            len: 128,
            available: 1
        }
    );
    // A property whose value runs past the end of its block.
    assert_eq!(
        err5(&puback_with(&[0x11, 0, 0])),
        DecodeError::PropertyNotAllowed {
            property: "Session Expiry Interval",
            packet: "PUBACK"
        }
    );
    assert_eq!(
        err5(&puback_with(&[0x1F, 0, 5, b'a'])),
        DecodeError::Truncated
    );
}

#[test]
fn v5_errors_map_to_reason_codes() {
    assert_eq!(
        err5(&connect_with(&[0x21, 0, 0])).reason_code(),
        ReasonCode::ProtocolError
    );
    assert_eq!(
        err5(&[0x40, 4, 0, 1, 0, 5]).reason_code(),
        ReasonCode::MalformedPacket
    );
    assert_eq!(
        DecodeError::PacketTooLarge { size: 2, max: 1 }.reason_code(),
        ReasonCode::PacketTooLarge
    );
    // A topic alias of 0: 0x94, not a plain protocol error (MQTT 5.0 3.3.2.3.4).
    assert_eq!(
        err5(&frame(0x30, &[0, 1, b't', 3, 0x23, 0, 0])).reason_code(),
        ReasonCode::TopicAliasInvalid
    );
}

#[test]
fn v5_encode_refuses_what_the_peer_would_refuse() {
    use crate::encode::{try_encode, EncodeError};
    let mut out = BytesMut::new();
    let publish = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: s("t"),
        packet_id: 0,
        payload: Bytes::new(),
        properties: Properties {
            session_expiry_interval: Some(1),
            ..Properties::default()
        },
    });
    assert_eq!(
        try_encode(&publish, V5, &mut out),
        Err(EncodeError::PropertyNotAllowed {
            property: "Session Expiry Interval",
            packet: "PUBLISH"
        })
    );
    let ack = Packet::PubRel(Ack {
        packet_id: 1,
        reason: ReasonCode::QuotaExceeded,
        properties: Properties::default(),
    });
    assert_eq!(
        try_encode(&ack, V5, &mut out),
        Err(EncodeError::InvalidReasonCode {
            packet: "PUBREL",
            code: ReasonCode::QuotaExceeded
        })
    );
    assert!(out.is_empty());
    // For 3.1.1 the properties are simply left out.
    try_encode(&publish, ProtocolVersion::V311, &mut out).unwrap();
    assert_eq!(&out[..], [0x30, 3, 0, 1, b't']);
}
