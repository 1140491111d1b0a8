//! PUBLISH flows at each QoS, redelivery, the in-flight window, ordering and direct messages.

use fubar::mqtt::packet::{Ack, Packet, QoS as RawQoS};
use rumqttc::{Incoming, QoS};

use super::support::{
    options, raw_connect, raw_subscribe, read, send_packet, text, wait_disconnected, Mqtt,
};
use crate::common::Broker;

/// Subscribes `sub` to `t` at QoS 2, publishes one message at `qos` and checks what the
/// subscriber gets; returns both clients for flow-specific checks.
fn end_to_end(qos: QoS) -> (Broker, Mqtt, Mqtt, rumqttc::Publish) {
    let broker = Broker::start();
    let mut sub = Mqtt::connect(&broker, "sub");
    sub.subscribe("t", QoS::ExactlyOnce);
    let mut publisher = Mqtt::connect(&broker, "pub");
    let pkid = publisher.publish("t", qos, false, b"hello");
    let got = sub.next_publish();
    assert_eq!((got.topic.as_str(), text(&got)), ("t", "hello"));
    assert_eq!(got.qos, qos, "delivered at the publish QoS");
    assert!(!got.retain && !got.dup);
    match qos {
        QoS::AtMostOnce => assert_eq!(got.pkid, 0),
        _ => assert_ne!(got.pkid, 0, "QoS > 0 PUBLISH carries a packet id"),
    }
    match qos {
        QoS::AtMostOnce => {}
        QoS::AtLeastOnce => {
            publisher.expect_incoming(|p| matches!(p, Incoming::PubAck(a) if a.pkid == pkid));
        }
        QoS::ExactlyOnce => {
            publisher.expect_incoming(|p| matches!(p, Incoming::PubRec(a) if a.pkid == pkid));
            publisher.expect_incoming(|p| matches!(p, Incoming::PubComp(a) if a.pkid == pkid));
        }
    }
    (broker, sub, publisher, got)
}

#[test]
fn publish_qos0_is_delivered_at_qos0_without_packet_id() {
    end_to_end(QoS::AtMostOnce);
}

#[test]
fn publish_qos1_is_acknowledged_with_puback_and_delivered_at_qos1() {
    end_to_end(QoS::AtLeastOnce);
}

#[test]
fn publish_qos2_is_acknowledged_with_pubrec_pubcomp_and_delivered_at_qos2() {
    let (_broker, mut sub, _publisher, got) = end_to_end(QoS::ExactlyOnce);
    // The subscriber's side of the QoS 2 flow: rumqttc answered PUBREC, the broker PUBREL.
    sub.expect_incoming(|p| matches!(p, Incoming::PubRel(r) if r.pkid == got.pkid));
}

#[test]
fn unacknowledged_qos1_is_redelivered_with_dup_to_resumed_session() {
    let broker = Broker::start();
    let mut o = options(&broker, "dup-sub");
    o.set_clean_session(false).set_manual_acks(true);
    let mut sub = Mqtt::connect_with(o.clone());
    assert!(!sub.connack.session_present);
    sub.subscribe("t", QoS::AtLeastOnce);
    let mut publisher = Mqtt::connect(&broker, "pub");
    publisher.publish_acked("t", QoS::AtLeastOnce, false, b"m1");
    let first = sub.next_publish();
    assert_eq!(text(&first), "m1");
    assert!(!first.dup, "first delivery is not a duplicate");
    // No PUBACK: drop the connection and resume the session.
    sub.kill();
    wait_disconnected(&broker, "dup-sub", 1);
    let mut sub = Mqtt::connect_with(o);
    assert!(sub.connack.session_present, "session_present on resume");
    let again = sub.next_publish();
    assert_eq!(text(&again), "m1");
    assert!(again.dup, "redelivery carries DUP");
    assert_eq!(again.qos, QoS::AtLeastOnce);
    assert_eq!(again.pkid, first.pkid, "redelivery keeps the packet id");
    sub.ack(&again);
}

#[test]
fn inflight_window_holds_back_qos1_until_acknowledged() {
    let broker = Broker::start_with(&[], "[session]\ninflight_window = 2\n");
    // A raw subscriber acknowledges only when told to.
    let mut sub = raw_connect(&broker, "win", 60, None);
    raw_subscribe(&mut sub, 1, &[("w", RawQoS::AtLeastOnce)]);
    let mut publisher = Mqtt::connect(&broker, "pub");
    for i in 0..5 {
        publisher.publish_acked("w", QoS::AtLeastOnce, false, format!("{i}").as_bytes());
    }
    let publish = |p: Packet| match p {
        Packet::Publish(p) => p,
        other => panic!("expected PUBLISH, got {other:?}"),
    };
    let a = publish(read(&mut sub));
    let b = publish(read(&mut sub));
    // Barrier: all 5 were queued before this PINGREQ was sent, so a broker that ignored the
    // window would have written a third PUBLISH before the second PINGRESP.
    send_packet(&mut sub, &Packet::PingReq);
    send_packet(&mut sub, &Packet::PingReq);
    for _ in 0..2 {
        assert_eq!(
            read(&mut sub),
            Packet::PingResp,
            "only 2 PUBLISH while the window is full"
        );
    }
    let mut got = vec![a, b];
    let mut acked = 0;
    while got.len() < 5 {
        send_packet(&mut sub, &Packet::PubAck(Ack::new(got[acked].packet_id)));
        acked += 1;
        got.push(publish(read(&mut sub)));
    }
    let payloads: Vec<&[u8]> = got.iter().map(|p| &p.payload[..]).collect();
    assert_eq!(
        payloads,
        [b"0", b"1", b"2", b"3", b"4"],
        "the rest, in order"
    );
    assert!(got
        .iter()
        .all(|p| p.qos == RawQoS::AtLeastOnce && p.packet_id != 0));
}

#[test]
fn qos1_messages_on_a_topic_arrive_in_publish_order() {
    const N: usize = 300;
    let broker = Broker::start();
    let mut sub = Mqtt::connect(&broker, "sub");
    sub.subscribe("order", QoS::AtLeastOnce);
    let publisher = Mqtt::connect(&broker, "pub");
    for i in 0..N {
        publisher.send_publish("order", QoS::AtLeastOnce, false, i.to_string().as_bytes());
    }
    let got: Vec<usize> = sub
        .publishes(N)
        .iter()
        .map(|p| text(p).parse().expect("number"))
        .collect();
    assert_eq!(got, (0..N).collect::<Vec<_>>());
}

#[test]
fn publish_to_a_client_id_reaches_that_client_without_subscription() {
    let broker = Broker::start();
    let mut c1 = Mqtt::connect(&broker, "c1");
    let mut other = Mqtt::connect(&broker, "other");
    other.publish_acked("c1", QoS::AtLeastOnce, false, b"direct");
    let got = c1.next_publish();
    assert_eq!((got.topic.as_str(), text(&got)), ("c1", "direct"));
    assert_eq!(got.qos, QoS::AtLeastOnce);
}
