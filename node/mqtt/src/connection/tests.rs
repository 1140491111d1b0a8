//! The connection's rules against a fake clock: `t(secs)` is a point in time the test moves
//! to, and nothing waits.

use std::sync::OnceLock;

use bytes::{Bytes, BytesMut};

use super::*;
use crate::encode::encode;
use crate::packet::{ConnAck, Connect, Properties, ProtocolVersion, QoS};
use crate::reason::ReasonCode;

/// A fixed start, so that `t(secs)` values compare across calls.
pub(super) fn t(secs: f64) -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now) + Duration::from_secs_f64(secs)
}

pub(super) fn limits() -> Limits {
    Limits {
        max_packet_size: 1 << 20,
        connect_timeout: Duration::from_secs(10),
        max_client_id_len: 64,
        stalled_reader_timeout: Duration::from_secs(60),
        max_messages_per_sec: 0,
        receive_maximum: 2,
        topic_alias_maximum: 3,
        max_keep_alive_secs: 600,
        topic_limits: TopicLimits {
            max_levels: 8,
            max_len: 64,
        },
        client_id_from_username: false,
    }
}

/// Accepts `packet` at `now` for the client `id` and takes the CONNACK it sends.
pub(super) fn accept(
    c: &mut Connection,
    now: Instant,
    packet: &Connect,
    present: bool,
    id: &str,
) -> ConnAck {
    let told = c.accept_connect(now, packet, present, &id.into());
    let Some(Packet::ConnAck(ack)) = c.poll_transmit() else {
        panic!("a CONNACK");
    };
    assert_eq!(ack.session_present, told);
    ack
}

pub(super) fn connect(protocol: ProtocolVersion, keep_alive: u16, id: &str) -> Connect {
    Connect {
        protocol,
        clean_session: true,
        keep_alive,
        client_id: id.into(),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    }
}

/// A connection that read a CONNECT's bytes and accepted it at `t(0)`.
pub(super) fn connected(protocol: ProtocolVersion, keep_alive: u16, limits: Limits) -> Connection {
    let mut c = Connection::new(t(0.0), limits);
    let mut input = BytesMut::new();
    encode(
        &Packet::Connect(Box::new(connect(protocol, keep_alive, "c"))),
        protocol,
        &mut input,
    );
    c.handle_bytes(&input);
    let Some(Packet::Connect(packet)) = c.decode_next().unwrap() else {
        panic!("a CONNECT");
    };
    assert_eq!(c.protocol(), protocol, "the CONNECT sets the version");
    c.handle_packet(t(0.0), Packet::Connect(packet.clone()));
    let Some(Event::Connect(request)) = c.poll_event() else {
        panic!("a CONNECT event");
    };
    let _ = accept(&mut c, t(0.0), &request.connect, false, "c");
    c
}

pub(super) fn publish(topic: &str, qos: QoS, packet_id: u16) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.into(),
        packet_id,
        payload: Bytes::from_static(b"x"),
        properties: Properties::default(),
    }
}

#[test]
fn connect_timeout_fires_only_at_its_deadline() {
    let mut c = Connection::new(t(0.0), limits());
    assert_eq!(c.poll_timeout(), Some(t(10.0)));
    assert_eq!(c.handle_timeout(t(9.9)), None);
    assert_eq!(c.handle_timeout(t(10.0)), Some(CloseReason::ConnectTimeout));
}

#[test]
fn keep_alive_is_one_and_a_half_intervals_from_the_last_packet() {
    let mut c = connected(ProtocolVersion::V311, 10, limits());
    assert_eq!(c.poll_timeout(), Some(t(15.0)));
    assert_eq!(c.handle_timeout(t(14.0)), None);
    c.on_packet(t(14.0), &Packet::PingReq).unwrap();
    assert_eq!(c.handle_timeout(t(28.0)), None);
    assert_eq!(
        c.handle_timeout(t(29.0)),
        Some(CloseReason::KeepAliveTimeout)
    );
}

#[test]
fn keep_alive_is_not_held_against_a_client_the_server_does_not_read() {
    let mut c = connected(ProtocolVersion::V311, 10, limits());
    c.set_reading(false);
    assert_eq!(c.poll_timeout(), None);
    assert_eq!(c.handle_timeout(t(100.0)), None);
    // Reading again, the time already passed counts.
    c.set_reading(true);
    assert_eq!(
        c.handle_timeout(t(100.0)),
        Some(CloseReason::KeepAliveTimeout)
    );
}

#[test]
fn a_311_client_keeps_its_keep_alive_even_none() {
    let mut c = connected(ProtocolVersion::V311, 0, limits());
    assert_eq!(c.keep_alive_secs(), 0);
    assert_eq!(c.poll_timeout(), None);
    assert_eq!(c.handle_timeout(t(1_000_000.0)), None);
    let c = connected(ProtocolVersion::V311, 5000, limits());
    assert_eq!(c.keep_alive_secs(), 5000);
}

#[test]
fn a_v5_client_is_held_to_the_servers_keep_alive_maximum_and_told_so() {
    for (asked, held, told) in [(0, 600, Some(600)), (601, 600, Some(600)), (30, 30, None)] {
        let mut c = Connection::new(t(0.0), limits());
        let packet = connect(ProtocolVersion::V5, asked, "c");
        let ack = accept(&mut c, t(0.0), &packet, false, "c");
        assert_eq!(ack.properties.server_keep_alive, told, "asked {asked}");
        assert_eq!(c.keep_alive_secs(), held);
        assert_eq!(c.poll_timeout(), Some(t(f64::from(held) * 1.5)));
    }
}

#[test]
fn connack_announces_the_servers_terms_to_v5_clients_only() {
    let mut c = Connection::new(t(0.0), limits());
    // A client that sends no client id is told the one it got.
    c.handle_packet(
        t(0.0),
        Packet::Connect(Box::new(connect(ProtocolVersion::V5, 30, ""))),
    );
    let Some(Event::Connect(request)) = c.poll_event() else {
        panic!("a CONNECT event");
    };
    assert!(request.assign_client_id);
    let ack = accept(&mut c, t(0.0), &request.connect, true, "auto-1");
    let p = &ack.properties;
    assert!(ack.session_present);
    assert_eq!(p.receive_maximum, Some(2));
    assert_eq!(p.topic_alias_maximum, Some(3));
    assert_eq!(p.maximum_packet_size, Some(1 << 20));
    assert_eq!(p.assigned_client_identifier.as_deref(), Some("auto-1"));
    assert_eq!(p.subscription_identifier_available, Some(true));
    let mut c = Connection::new(t(0.0), limits());
    let ack = accept(
        &mut c,
        t(0.0),
        &connect(ProtocolVersion::V31, 30, "c"),
        true,
        "c",
    );
    assert!(!ack.session_present, "3.1 has no session present flag");
    assert_eq!(ack.properties, Properties::default());
}

#[test]
fn client_id_rules_per_protocol_version() {
    let c = Connection::new(t(0.0), limits());
    let long = "x".repeat(65);
    let mut unclean = connect(ProtocolVersion::V311, 0, "");
    unclean.clean_session = false;
    let cases = [
        (connect(ProtocolVersion::V31, 0, ""), false),
        (connect(ProtocolVersion::V31, 0, &"x".repeat(23)), true),
        (connect(ProtocolVersion::V31, 0, &"x".repeat(24)), false),
        (connect(ProtocolVersion::V311, 0, ""), true),
        (unclean, false),
        (connect(ProtocolVersion::V311, 0, &long), false),
        (connect(ProtocolVersion::V5, 0, ""), true),
        (connect(ProtocolVersion::V5, 0, &long), false),
    ];
    for (packet, allowed) in cases {
        assert_eq!(c.client_id_allowed(&packet), allowed, "{packet:?}");
    }
}

#[test]
fn session_expiry_terms() {
    let mut v5 = connect(ProtocolVersion::V5, 0, "c");
    assert_eq!(
        session_terms(&v5),
        SessionTerms {
            expiry_secs: Some(0),
            persistent: false
        }
    );
    v5.properties.session_expiry_interval = Some(30);
    v5.clean_session = true;
    assert_eq!(
        session_terms(&v5),
        SessionTerms {
            expiry_secs: Some(30),
            persistent: true
        }
    );
    let mut v311 = connect(ProtocolVersion::V311, 0, "c");
    v311.clean_session = false;
    assert_eq!(
        session_terms(&v311),
        SessionTerms {
            expiry_secs: None,
            persistent: true
        }
    );
    v5.properties.receive_maximum = Some(5);
    assert_eq!(inflight_window(&v5, 32), 5);
    assert_eq!(inflight_window(&v311, 32), 32);
}

#[test]
fn stalled_reader_is_cut_off_after_the_timeout_without_progress() {
    let mut c = connected(ProtocolVersion::V311, 0, limits());
    c.on_output(t(1.0), true, false);
    assert_eq!(c.poll_timeout(), Some(t(61.0)));
    // Still unread, no progress: the timer keeps its start.
    c.on_output(t(30.0), true, false);
    assert_eq!(c.handle_timeout(t(60.9)), None);
    // Some was written: it starts again.
    c.on_output(t(40.0), true, true);
    assert_eq!(c.handle_timeout(t(61.0)), None);
    assert_eq!(c.handle_timeout(t(100.0)), Some(CloseReason::StalledReader));
    // All written: no timer.
    c.on_output(t(100.0), false, true);
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn a_client_publishing_over_its_rate_is_throttled_and_reported_once() {
    let mut c = connected(
        ProtocolVersion::V311,
        0,
        Limits {
            max_messages_per_sec: 2,
            ..limits()
        },
    );
    let mut input = BytesMut::new();
    encode(
        &Packet::Publish(publish("a", QoS::AtMostOnce, 0)),
        ProtocolVersion::V311,
        &mut input,
    );
    // `admit` only looks at the input: the same PUBLISH is asked about again and again.
    c.handle_bytes(&input);
    assert_eq!(c.admit(t(0.0)), Admission::Now);
    assert_eq!(c.admit(t(0.0)), Admission::Now);
    assert_eq!(c.admit(t(0.0)), Admission::FirstThrottled { limit: 2 });
    assert!(c.is_throttled());
    let until = c.poll_timeout().unwrap();
    assert_eq!(until, t(0.5));
    assert_eq!(c.admit(t(0.4)), Admission::Later);
    // Other packets wait behind it; a partial PUBLISH takes no token.
    c.input_mut().truncate(2);
    assert_eq!(c.admit(until), Admission::Now);
    c.input_mut().clear();
    c.handle_bytes(&input);
    assert_eq!(c.admit(until), Admission::Now);
    assert_eq!(c.admit(until), Admission::Later, "reported once");
}

#[test]
fn receive_maximum_counts_unacknowledged_qos_1_and_2_publishes() {
    let mut c = connected(ProtocolVersion::V5, 30, limits());
    let mut check = |p: &mut Publish| c.check_publish(p, true);
    assert_eq!(check(&mut publish("a", QoS::AtMostOnce, 0)), Ok(()));
    assert_eq!(check(&mut publish("a", QoS::AtLeastOnce, 1)), Ok(()));
    assert_eq!(check(&mut publish("a", QoS::ExactlyOnce, 2)), Ok(()));
    let refused = check(&mut publish("a", QoS::AtLeastOnce, 3)).unwrap_err();
    assert_eq!(refused, PublishRefusal::ReceiveMaximum { max: 2 });
    assert_eq!(
        refused.close_reason().disconnect_reason(),
        Some(ReasonCode::ReceiveMaximumExceeded)
    );
    // A PUBACK sent frees one.
    c.flow.quota.puback_sent();
    assert_eq!(
        c.check_publish(&mut publish("a", QoS::AtLeastOnce, 3), true),
        Ok(())
    );
}

#[test]
fn topic_aliases_are_set_resolved_and_refused_out_of_range() {
    let mut c = connected(ProtocolVersion::V5, 30, limits());
    let mut first = publish("room/1", QoS::AtMostOnce, 0);
    first.properties.topic_alias = Some(3);
    c.check_publish(&mut first, true).unwrap();
    assert_eq!(first.properties.topic_alias, None, "taken off");
    let mut again = publish("", QoS::AtMostOnce, 0);
    again.properties.topic_alias = Some(3);
    c.check_publish(&mut again, true).unwrap();
    assert_eq!(&*again.topic, "room/1");
    for (alias, code) in [
        (4, ReasonCode::TopicAliasInvalid),
        (0, ReasonCode::TopicAliasInvalid),
    ] {
        let mut p = publish("x", QoS::AtMostOnce, 0);
        p.properties.topic_alias = Some(alias);
        let refused = c.check_publish(&mut p, true).unwrap_err();
        assert!(matches!(refused, PublishRefusal::TopicAlias { max: 3, .. }));
        assert_eq!(refused.close_reason().disconnect_reason(), Some(code));
    }
    let mut unknown = publish("", QoS::AtMostOnce, 0);
    unknown.properties.topic_alias = Some(2);
    let refused = c.check_publish(&mut unknown, true).unwrap_err();
    assert_eq!(
        refused.close_reason().disconnect_reason(),
        Some(ReasonCode::ProtocolError)
    );
}

#[test]
fn a_client_publish_with_a_subscription_identifier_is_a_protocol_error() {
    let mut c = connected(ProtocolVersion::V5, 30, limits());
    let mut p = publish("a", QoS::AtMostOnce, 0);
    p.properties.subscription_identifiers = vec![7];
    let refused = c.check_publish(&mut p, true).unwrap_err();
    assert_eq!(refused, PublishRefusal::SubscriptionIdentifier);
    assert!(matches!(
        refused.close_reason(),
        CloseReason::ProtocolError(_)
    ));
}

#[test]
fn packet_order_rules() {
    let mut c = Connection::new(t(0.0), limits());
    assert!(matches!(
        c.on_packet(t(0.0), &Packet::PingReq),
        Err(CloseReason::ProtocolError(_))
    ));
    let mut c = connected(ProtocolVersion::V311, 0, limits());
    assert!(c.is_connected());
    assert!(c.on_packet(t(1.0), &Packet::PingReq).is_ok());
    let again = Packet::Connect(Box::new(connect(ProtocolVersion::V311, 0, "c")));
    assert!(matches!(
        c.on_packet(t(1.0), &again),
        Err(CloseReason::ProtocolError(_))
    ));
    assert!(matches!(
        c.on_packet(t(1.0), &Packet::PingResp),
        Err(CloseReason::ProtocolError(_))
    ));
}

#[test]
fn pingreq_is_answered_by_the_connection_itself() {
    let mut c = connected(ProtocolVersion::V311, 10, limits());
    assert_eq!(c.poll_transmit(), None);
    c.on_packet(t(1.0), &Packet::PingReq).unwrap();
    assert_eq!(c.poll_transmit(), Some(Packet::PingResp));
    assert_eq!(c.poll_transmit(), None);
}

#[test]
fn an_unsupported_protocol_level_is_answered_before_connect_only() {
    let mut c = Connection::new(t(0.0), limits());
    let reason = c.on_decode_error(DecodeError::UnsupportedProtocolLevel(9));
    assert_eq!(reason, CloseReason::Refused("unacceptable protocol level"));
    assert!(matches!(c.poll_transmit(), Some(Packet::ConnAck(a))
        if a.code == crate::packet::ConnectReturnCode::UnacceptableProtocolVersion));
    let too_large = c.on_decode_error(DecodeError::PacketTooLarge { size: 10, max: 5 });
    assert_eq!(too_large, CloseReason::PacketTooLarge { size: 10, max: 5 });
    assert_eq!(c.poll_transmit(), None);
}

#[test]
fn only_an_accepted_v5_client_is_told_why_the_server_closes() {
    let mut before = Connection::new(t(0.0), limits());
    before.close(&CloseReason::ServerShutdown);
    assert_eq!(before.poll_transmit(), None, "before CONNACK");
    let mut old = connected(ProtocolVersion::V311, 10, limits());
    old.close(&CloseReason::KeepAliveTimeout);
    assert_eq!(
        old.poll_transmit(),
        None,
        "3.1.1 has no DISCONNECT from the server"
    );
    let mut v5 = connected(ProtocolVersion::V5, 10, limits());
    v5.close(&CloseReason::ClientDisconnect);
    assert_eq!(v5.poll_transmit(), None, "the client ended it");
    v5.close(&CloseReason::KeepAliveTimeout);
    match v5.poll_transmit() {
        Some(Packet::Disconnect(d)) => {
            assert_eq!(d.reason, ReasonCode::KeepAliveTimeout);
            assert_eq!(
                d.properties.reason_string.as_deref(),
                Some("keep-alive timeout")
            );
        }
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
}

#[test]
fn packets_are_decoded_whole_in_the_connects_version_within_the_limit() {
    let mut c = connected(
        ProtocolVersion::V5,
        30,
        Limits {
            max_packet_size: 64,
            ..limits()
        },
    );
    let mut input = BytesMut::new();
    let mut p = publish("a/b", QoS::AtMostOnce, 0);
    p.properties.topic_alias = Some(1);
    encode(&Packet::Publish(p), ProtocolVersion::V5, &mut input);
    let (part, last) = input.split_at(input.len() - 1);
    c.handle_bytes(part);
    assert_eq!(c.decode_next().unwrap(), None, "not whole yet");
    c.handle_bytes(last);
    let Some(Packet::Publish(p)) = c.decode_next().unwrap() else {
        panic!("a PUBLISH");
    };
    assert_eq!(p.properties.topic_alias, Some(1), "a 5.0 property");
    assert!(c.input().is_empty());
    let mut big = BytesMut::new();
    encode(
        &Packet::Publish(Publish {
            payload: Bytes::from(vec![0; 100]),
            ..publish("a", QoS::AtMostOnce, 0)
        }),
        ProtocolVersion::V5,
        &mut big,
    );
    c.handle_bytes(&big);
    assert!(matches!(
        c.decode_next(),
        Err(DecodeError::PacketTooLarge { max: 64, .. })
    ));
}

#[test]
fn a_disconnect_may_change_the_session_expiry_but_not_from_zero() {
    use crate::packet::Disconnect;
    let disconnect = |reason, expiry| Disconnect {
        reason,
        properties: Properties {
            session_expiry_interval: expiry,
            ..Properties::default()
        },
    };
    // CONNECT said 0 (no expiry property on a 5.0 CONNECT).
    let c = connected(ProtocolVersion::V5, 30, limits());
    assert!(matches!(
        c.on_disconnect(&disconnect(ReasonCode::Success, Some(10))),
        Err(CloseReason::ProtocolError(_))
    ));
    let said = c
        .on_disconnect(&disconnect(ReasonCode::DisconnectWithWillMessage, Some(0)))
        .unwrap();
    assert_eq!(said.reason, CloseReason::ClientDisconnectWithWill);
    assert_eq!(said.session_expiry, Some(0));
    // CONNECT said 60: any change is allowed.
    let mut c = Connection::new(t(0.0), limits());
    let mut packet = connect(ProtocolVersion::V5, 30, "c");
    packet.properties.session_expiry_interval = Some(60);
    let _ = accept(&mut c, t(0.0), &packet, false, "c");
    let said = c
        .on_disconnect(&disconnect(ReasonCode::Success, Some(600)))
        .unwrap();
    assert_eq!(said.reason, CloseReason::ClientDisconnect);
    assert_eq!(said.session_expiry, Some(600));
}

#[test]
fn an_unknown_packet_id_is_released_with_0x92_in_v5_only() {
    let v5 = connected(ProtocolVersion::V5, 30, limits());
    assert_eq!(v5.release_ack(7, true), crate::packet::Ack::new(7));
    let unknown = v5.release_ack(7, false);
    assert_eq!(unknown.reason, ReasonCode::PacketIdentifierNotFound);
    assert!(unknown.properties.reason_string.is_some());
    let old = connected(ProtocolVersion::V311, 30, limits());
    assert_eq!(old.release_ack(7, false), crate::packet::Ack::new(7));
}
