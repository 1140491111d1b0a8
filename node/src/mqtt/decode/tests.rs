//! Decoder tests: one hand-written byte array per malformed case, split points and the size
//! limit.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::*;
use crate::mqtt::encode::encode;

const MAX: usize = 1 << 20;

/// Decodes `bytes` as one whole packet, checking that nothing is left over.
fn dec(bytes: &[u8]) -> Result<Option<Packet>, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    let result = decode(&mut buf, MAX);
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
    encode(packet, &mut out);
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
    let expected = Packet::Connect(Connect {
        protocol: ProtocolVersion::V311,
        clean_session: true,
        keep_alive: 60,
        client_id: "c".into(),
        will: Some(LastWill {
            topic: Arc::from("w"),
            payload: Bytes::from_static(&[9]),
            qos: QoS::AtLeastOnce,
            retain: true,
        }),
        username: Some("u".into()),
        password: Some(Bytes::from_static(&[0xFF, 0])),
    });
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
    let Some(Packet::Publish(p)) = decode(&mut buf, MAX).unwrap() else {
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
                ("a+".into(), QoS::AtLeastOnce),
                (String::new(), QoS::AtMostOnce)
            ],
        })
    );
}

#[test]
fn non_minimal_remaining_length_is_accepted() {
    assert_eq!(ok(&[0xC0, 0x80, 0x00]), Packet::PingReq);
    assert_eq!(ok(&[0x40, 0x82, 0x80, 0x80, 0x00, 0, 9]), Packet::PubAck(9));
}

#[test]
fn two_packets_in_one_buffer_decode_one_at_a_time() {
    let mut buf = BytesMut::from(&[0xC0, 0, 0x40, 2, 0, 1, 0x30][..]);
    assert_eq!(decode(&mut buf, MAX), Ok(Some(Packet::PingReq)));
    assert_eq!(decode(&mut buf, MAX), Ok(Some(Packet::PubAck(1))));
    assert_eq!(decode(&mut buf, MAX), Ok(None));
    assert_eq!(&buf[..], [0x30]);
}

// ---- fixed header -----------------------------------------------------------------------

#[test]
fn too_large_is_rejected_with_only_the_header() {
    // PUBLISH announcing 2 MiB; only the 5 header bytes have arrived.
    let mut buf = BytesMut::from(&[0x30, 0x80, 0x80, 0x80, 0x01][..]);
    assert_eq!(
        decode(&mut buf, MAX),
        Err(DecodeError::PacketTooLarge {
            size: (2 << 20) + 5,
            max: MAX
        })
    );
    assert_eq!(peek_packet_size(&buf), Ok(Some((2 << 20) + 5)));
}

#[test]
fn size_limit_counts_the_fixed_header() {
    let bytes = [0x40, 2, 0, 1];
    assert_eq!(
        decode(&mut BytesMut::from(&bytes[..]), 4),
        Ok(Some(Packet::PubAck(1)))
    );
    assert_eq!(
        decode(&mut BytesMut::from(&bytes[..2]), 3),
        Err(DecodeError::PacketTooLarge { size: 4, max: 3 })
    );
}

#[test]
fn incomplete_header_is_not_an_error() {
    assert_eq!(dec(&[]), Ok(None));
    assert_eq!(dec(&[0x30]), Ok(None));
    assert_eq!(dec(&[0x30, 0x80, 0x80, 0x80]), Ok(None));
    assert_eq!(peek_packet_size(&[0x30, 0xFF]), Ok(None));
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
    assert_eq!(
        err(&connect(b"MQTT", 5, 0, &[])),
        DecodeError::UnsupportedProtocolLevel(5)
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
            code: ConnectReturnCode::Accepted
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
                decode(&mut buf, MAX),
                Ok(None),
                "{} cut at {cut}",
                packet.kind()
            );
            assert_eq!(&buf[..], &wire[..cut], "buffer touched");
        }
        let mut buf = wire.clone();
        assert_eq!(decode(&mut buf, MAX), Ok(Some(packet)));
        assert!(buf.is_empty());
    }
}
