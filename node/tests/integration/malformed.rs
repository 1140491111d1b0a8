//! Malformed and refused input, as raw bytes: the broker closes the connection (after the
//! CONNACK the spec asks for, if any), logs why, and keeps serving other clients.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use fubar::mqtt::packet::{Ack, ConnAck, ConnectReturnCode, Packet, QoS, SubAck, SubAckCode};

use crate::common::{connect_v311, frame, log_of, string, Broker, RawClient};

/// Upper bound for anything the broker should do promptly (never an assertion on timing).
const T: Duration = Duration::from_secs(10);

/// CONNECT with any protocol name, level, flags and client id; keep-alive 60.
fn connect(name: &[u8], level: u8, flags: u8, client_id: &[u8]) -> Vec<u8> {
    let mut body = string(name);
    body.extend_from_slice(&[level, flags, 0, 60]);
    body.extend_from_slice(&string(client_id));
    frame(0x10, &body)
}

/// CONNECT for MQTT 3.1 (`MQIsdp`, level 3), clean session.
fn connect_v31(client_id: &str) -> Vec<u8> {
    connect(b"MQIsdp", 3, 0b10, client_id.as_bytes())
}

/// PUBLISH with a raw first byte, raw topic bytes, an optional packet id and a payload.
fn publish(first: u8, topic: &[u8], packet_id: Option<u16>, payload: &[u8]) -> Vec<u8> {
    let mut body = string(topic);
    if let Some(id) = packet_id {
        body.extend_from_slice(&id.to_be_bytes());
    }
    body.extend_from_slice(payload);
    frame(first, &body)
}

/// SUBSCRIBE (first byte 0x82) with a packet id and (filter, QoS) pairs.
fn subscribe(packet_id: u16, filters: &[(&str, u8)]) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    for (filter, qos) in filters {
        body.extend_from_slice(&string(filter.as_bytes()));
        body.push(*qos);
    }
    frame(0x82, &body)
}

/// Asserts a stdout line containing `needle` shows up.
fn assert_log(broker: &Broker, needle: &str) -> String {
    match broker.wait_for_log(needle, T) {
        Some(line) => line,
        None => panic!(
            "no log line containing {needle:?}; log:\n{}",
            log_of(broker)
        ),
    }
}

/// Reads the next packet, failing the test if there is none.
fn expect_packet(broker: &Broker, c: &mut RawClient, what: &str) -> Packet {
    match c.read_packet(T) {
        Some(p) => p,
        None => panic!(
            "expected {what}, the connection closed or stayed silent; log:\n{}",
            log_of(broker)
        ),
    }
}

/// Reads a CONNACK and checks its return code.
fn expect_connack(broker: &Broker, c: &mut RawClient, code: ConnectReturnCode) {
    match expect_packet(broker, c, "CONNACK") {
        Packet::ConnAck(ConnAck { code: got, .. }) => {
            assert_eq!(got, code, "CONNACK return code; log:\n{}", log_of(broker))
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// Asserts the broker closes the connection, skipping any packets before the close.
fn assert_closed(broker: &Broker, c: &mut RawClient) {
    assert!(
        c.closed_within(T),
        "the broker kept the connection open; log:\n{}",
        log_of(broker)
    );
}

/// Asserts the broker closes the connection without sending anything first.
fn assert_closed_silently(broker: &Broker, c: &mut RawClient) {
    if let Some(p) = c.read_packet(T) {
        panic!("expected the connection closed without a reply, got {p:?}");
    }
    assert_closed(broker, c);
}

/// A raw client whose CONNECT (3.1.1) was accepted; waits until the broker logged it.
fn connected(broker: &Broker, client_id: &str) -> RawClient {
    let mut c = RawClient::connect(broker.addr);
    c.send(&connect_v311(client_id));
    expect_connack(broker, &mut c, ConnectReturnCode::Accepted);
    assert_log(broker, &format!(" connected client={client_id} "));
    c
}

/// The broker still accepts a new client and answers its PINGREQ.
fn assert_serves_fresh_client(broker: &Broker) {
    let mut c = connected(broker, "fresh");
    c.send(&[0xC0, 0x00]);
    match expect_packet(broker, &mut c, "PINGRESP") {
        Packet::PingResp => {}
        other => panic!("expected PINGRESP, got {other:?}"),
    }
}

/// A connected client sends `bytes`: the broker logs the decode error `error`, closes the
/// connection with `reason=protocol error: <error>` and still serves others.
fn refused_after_connect(bytes: &[u8], error: &str) {
    let broker = Broker::start();
    let mut c = connected(&broker, "c1");
    c.send(bytes);
    assert_closed_silently(&broker, &mut c);
    assert_log(&broker, &format!("error={error}"));
    let line = assert_log(&broker, &format!("reason=protocol error: {error}"));
    assert!(line.contains(" disconnected client=c1 "), "{line}");
    assert_serves_fresh_client(&broker);
}

/// A new connection sends `bytes` first: closed without CONNACK, `reason` logged.
fn refused_before_connect(bytes: &[u8], reason: &str) {
    let broker = Broker::start();
    let mut c = RawClient::connect(broker.addr);
    c.send(bytes);
    assert_closed_silently(&broker, &mut c);
    let line = assert_log(&broker, &format!("reason={reason}"));
    assert!(line.contains(" disconnected before CONNECT"), "{line}");
    assert_serves_fresh_client(&broker);
}

/// A CONNECT refused with a CONNACK carrying `code`, then closed; `why` logged.
fn refused_with_connack(bytes: &[u8], code: ConnectReturnCode, why: &str) {
    let broker = Broker::start();
    let mut c = RawClient::connect(broker.addr);
    c.send(bytes);
    expect_connack(&broker, &mut c, code);
    assert_closed_silently(&broker, &mut c);
    assert_log(&broker, why);
    let line = assert_log(&broker, "reason=refused: ");
    assert!(line.contains(" disconnected before CONNECT"), "{line}");
    assert_serves_fresh_client(&broker);
}

// --- packet order -------------------------------------------------------------------------

#[test]
fn first_packet_pingreq_is_closed() {
    refused_before_connect(&[0xC0, 0x00], "protocol error: first packet is not CONNECT");
}

#[test]
fn first_packet_publish_is_closed() {
    refused_before_connect(
        &publish(0x30, b"a/b", None, b"early"),
        "protocol error: first packet is not CONNECT",
    );
}

#[test]
fn second_connect_is_closed() {
    let broker = Broker::start();
    let mut c = connected(&broker, "c1");
    c.send(&connect_v311("c1"));
    assert_closed_silently(&broker, &mut c);
    let line = assert_log(&broker, "reason=protocol error: second CONNECT");
    assert!(line.contains(" disconnected client=c1 "), "{line}");
    assert_serves_fresh_client(&broker);
}

// --- fixed header -------------------------------------------------------------------------

#[test]
fn subscribe_with_flags_0_is_closed() {
    let mut bytes = subscribe(1, &[("a/b", 0)]);
    bytes[0] = 0x80;
    refused_after_connect(&bytes, "invalid fixed header flags 0b0000 for SUBSCRIBE");
}

#[test]
fn puback_with_flags_set_is_closed() {
    refused_after_connect(
        &[0x42, 0x02, 0x00, 0x01],
        "invalid fixed header flags 0b0010 for PUBACK",
    );
}

#[test]
fn publish_qos_3_is_closed() {
    refused_after_connect(&publish(0x36, b"a/b", Some(1), b"x"), "invalid QoS 3");
}

#[test]
fn publish_qos_0_with_dup_is_closed() {
    refused_after_connect(
        &publish(0x38, b"a/b", None, b"x"),
        "PUBLISH with QoS 0 has the DUP flag set",
    );
}

#[test]
fn remaining_length_of_5_bytes_is_closed() {
    refused_after_connect(
        &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F],
        "malformed remaining length: more than 4 bytes",
    );
}

#[test]
fn packet_announcing_10_mib_is_closed_without_waiting_for_the_body() {
    let broker = Broker::start();
    let mut c = connected(&broker, "c1");
    // 0x80 0x80 0x80 0x05 = 5 * 128^3 = 10 MiB; only the fixed header is ever sent.
    c.send(&[0x30, 0x80, 0x80, 0x80, 0x05]);
    assert_closed_silently(&broker, &mut c);
    assert_log(
        &broker,
        "error=packet of 10485765 bytes exceeds the maximum packet size",
    );
    let line = assert_log(&broker, "reason=packet too large: 10485765 bytes");
    assert!(line.contains(" disconnected client=c1 "), "{line}");
    assert_serves_fresh_client(&broker);
}

// --- CONNECT ------------------------------------------------------------------------------

#[test]
fn connect_reserved_flag_is_closed() {
    refused_before_connect(
        &connect(b"MQTT", 4, 0b11, b"c1"),
        "protocol error: reserved CONNECT flag is set",
    );
}

#[test]
fn connect_client_id_invalid_utf8_is_closed() {
    refused_before_connect(
        &connect(b"MQTT", 4, 0b10, &[b'c', 0xC3, 0x28]),
        "protocol error: string is not valid UTF-8",
    );
}

#[test]
fn connect_invalid_protocol_name_is_closed_without_connack() {
    refused_before_connect(
        &connect(b"MQTX", 4, 0b10, b"c1"),
        "protocol error: invalid protocol name",
    );
}

#[test]
fn connack_1_for_an_unknown_mqtt_level() {
    refused_with_connack(
        &connect(b"MQTT", 6, 0b10, b"c1"),
        ConnectReturnCode::UnacceptableProtocolVersion,
        "error=unsupported protocol level 6",
    );
}

#[test]
fn connack_1_for_mqtt_level_3() {
    refused_with_connack(
        &connect(b"MQTT", 3, 0b10, b"c1"),
        ConnectReturnCode::UnacceptableProtocolVersion,
        "error=unsupported protocol level 3",
    );
}

#[test]
fn connack_1_for_mqisdp_level_4() {
    refused_with_connack(
        &connect(b"MQIsdp", 4, 0b10, b"c1"),
        ConnectReturnCode::UnacceptableProtocolVersion,
        "error=unsupported protocol level 4",
    );
}

#[test]
fn connack_2_for_mqtt_31_client_id_of_24_characters() {
    let id = "abcdefghijklmnopqrstuvwx";
    assert_eq!(id.len(), 24);
    refused_with_connack(
        &connect_v31(id),
        ConnectReturnCode::IdentifierRejected,
        &format!("client={id} user="),
    );
}

#[test]
fn connack_2_for_empty_client_id_without_clean_session() {
    refused_with_connack(
        &connect(b"MQTT", 4, 0b00, b""),
        ConnectReturnCode::IdentifierRejected,
        "connect refused: identifier rejected",
    );
}

// --- strings and topics -------------------------------------------------------------------

#[test]
fn publish_topic_invalid_utf8_is_closed() {
    refused_after_connect(
        &publish(0x30, &[b'a', b'/', 0xFF], None, b"x"),
        "string is not valid UTF-8",
    );
}

#[test]
fn publish_topic_with_null_character_is_closed() {
    refused_after_connect(
        &publish(0x30, b"a/\0/b", None, b"x"),
        "string contains U+0000",
    );
}

#[test]
fn publish_topic_with_plus_is_closed() {
    refused_after_connect(&publish(0x30, b"a/+/b", None, b"x"), "invalid topic name");
}

#[test]
fn publish_topic_with_hash_is_closed() {
    refused_after_connect(&publish(0x30, b"a/#", None, b"x"), "invalid topic name");
}

// --- packet identifiers and SUBSCRIBE -----------------------------------------------------

#[test]
fn publish_qos_1_with_packet_id_0_is_closed() {
    refused_after_connect(
        &publish(0x32, b"a/b", Some(0), b"x"),
        "packet identifier 0 is not allowed",
    );
}

#[test]
fn subscribe_with_packet_id_0_is_closed() {
    refused_after_connect(
        &subscribe(0, &[("a/b", 1)]),
        "packet identifier 0 is not allowed",
    );
}

#[test]
fn empty_subscribe_is_closed() {
    refused_after_connect(&subscribe(1, &[]), "SUBSCRIBE without topic filters");
}

// --- truncation ---------------------------------------------------------------------------

#[test]
fn body_shorter_than_its_fields_is_closed() {
    // Remaining length 4 holds a topic length of 10 and two of its bytes.
    refused_after_connect(
        &[0x30, 0x04, 0x00, 0x0A, b'a', b'b'],
        "packet body ends before its fields do",
    );
}

#[test]
fn truncated_body_then_close_is_cleaned_up() {
    let broker = Broker::start();
    // A plain socket, so the test can half-close it after the partial packet.
    let mut s = TcpStream::connect(broker.addr).expect("tcp connect");
    s.write_all(&connect_v311("c1")).unwrap();
    let mut connack = [0u8; 4];
    s.set_read_timeout(Some(T)).unwrap();
    s.read_exact(&mut connack).expect("CONNACK");
    assert_eq!(connack, [0x20, 0x02, 0x00, 0x00]);
    // PUBLISH announcing 10 body bytes; 3 are sent, then the write side is closed.
    s.write_all(&[0x30, 0x0A, 0x00, 0x03, b'a']).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest)
        .expect("the broker closes its side too");
    assert!(
        rest.is_empty(),
        "unexpected bytes after a partial packet: {rest:?}"
    );
    let line = assert_log(&broker, "reason=socket closed");
    assert!(line.contains(" disconnected client=c1 "), "{line}");
    assert_serves_fresh_client(&broker);
}

// --- MQTT 3.1 -----------------------------------------------------------------------------

#[test]
fn mqtt_31_works_end_to_end() {
    let broker = Broker::start();
    let mut sub = RawClient::connect(broker.addr);
    sub.send(&connect_v31("sub31"));
    match expect_packet(&broker, &mut sub, "CONNACK") {
        Packet::ConnAck(ack) => assert_eq!(
            ack,
            ConnAck {
                session_present: false,
                code: ConnectReturnCode::Accepted.into(),
                properties: Default::default(),
            }
        ),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    let line = assert_log(&broker, " connected client=sub31 ");
    assert!(line.contains("protocol=3.1 "), "{line}");

    sub.send(&subscribe(3, &[("t/31", 1)]));
    match expect_packet(&broker, &mut sub, "SUBACK") {
        Packet::SubAck(ack) => assert_eq!(
            ack,
            SubAck {
                packet_id: 3,
                codes: vec![SubAckCode::Granted(QoS::AtLeastOnce)],
                properties: Default::default(),
            }
        ),
        other => panic!("expected SUBACK, got {other:?}"),
    }

    let mut publisher = RawClient::connect(broker.addr);
    publisher.send(&connect_v31("pub31"));
    expect_connack(&broker, &mut publisher, ConnectReturnCode::Accepted);
    publisher.send(&publish(0x32, b"t/31", Some(7), b"hello 3.1"));
    match expect_packet(&broker, &mut publisher, "PUBACK") {
        Packet::PubAck(Ack { packet_id: 7, .. }) => {}
        other => panic!("expected PUBACK 7, got {other:?}"),
    }

    match expect_packet(&broker, &mut sub, "PUBLISH") {
        Packet::Publish(p) => {
            assert_eq!(&*p.topic, "t/31");
            assert_eq!(p.qos, QoS::AtLeastOnce);
            assert_eq!(&p.payload[..], b"hello 3.1");
            assert!(!p.retain);
            assert_ne!(p.packet_id, 0);
            sub.send(&frame(0x40, &p.packet_id.to_be_bytes()));
        }
        other => panic!("expected PUBLISH, got {other:?}"),
    }
    // The broker is still in step with the subscriber after its PUBACK.
    sub.send(&[0xC0, 0x00]);
    match expect_packet(&broker, &mut sub, "PINGRESP") {
        Packet::PingResp => {}
        other => panic!("expected PINGRESP, got {other:?}"),
    }
}

// --- CONNECT timeout ----------------------------------------------------------------------

#[test]
fn silent_connection_is_closed_after_connect_timeout_without_affecting_others() {
    let broker = Broker::start_with(&[], "[mqtt]\nconnect_timeout_secs = 1\n");
    let mut idle = RawClient::connect(broker.addr);

    // Meanwhile another client connects and gets its own message back.
    let mut busy = connected(&broker, "busy");
    busy.send(&subscribe(1, &[("busy/t", 0)]));
    match expect_packet(&broker, &mut busy, "SUBACK") {
        Packet::SubAck(ack) => assert_eq!(ack.codes, vec![SubAckCode::Granted(QoS::AtMostOnce)]),
        other => panic!("expected SUBACK, got {other:?}"),
    }
    busy.send(&publish(0x30, b"busy/t", None, b"ping"));
    match expect_packet(&broker, &mut busy, "PUBLISH") {
        Packet::Publish(p) => assert_eq!(&p.payload[..], b"ping"),
        other => panic!("expected PUBLISH, got {other:?}"),
    }

    assert_closed_silently(&broker, &mut idle);
    let line = assert_log(&broker, "reason=connect timeout");
    assert!(line.contains(" disconnected before CONNECT"), "{line}");

    // The connected client outlived the idle one's timeout and is still served.
    busy.send(&[0xC0, 0x00]);
    match expect_packet(&broker, &mut busy, "PINGRESP") {
        Packet::PingResp => {}
        other => panic!("expected PINGRESP, got {other:?}"),
    }
    assert!(
        !broker
            .log_lines()
            .iter()
            .any(|l| l.contains("disconnected client=busy ")),
        "the busy client was disconnected; log:\n{}",
        log_of(&broker)
    );
    assert_serves_fresh_client(&broker);
}
