//! Will messages and PINGREQ. The keep-alive and CONNECT timeout rules are unit-tested in
//! `fubar-mqtt` (`connection::tests`) against a fake clock; a keep-alive expiry is seen end to
//! end here (with its will), a CONNECT timeout in `malformed`.

use fubar::mqtt::packet::{Packet, QoS as RawQoS};
use rumqttc::{LastWill, QoS};

use super::support::{
    options, raw_connect, raw_will, read, send_packet, text, wait_disconnected, Mqtt, WAIT,
};
use crate::common::Broker;

/// A client subscribed to every will topic of these tests.
fn watcher(broker: &Broker) -> Mqtt {
    let mut w = Mqtt::connect(broker, "watcher");
    w.subscribe("will/#", QoS::ExactlyOnce);
    w
}

/// Waits for the will on `topic` with `payload` at `qos` at the watcher.
fn expect_will(w: &mut Mqtt, topic: &str, payload: &str, qos: QoS) {
    let got = w.next_publish();
    assert_eq!((got.topic.as_str(), text(&got)), (topic, payload));
    assert_eq!(got.qos, qos, "the will is published at its QoS");
}

#[test]
fn will_is_published_when_the_socket_drops_without_disconnect() {
    let broker = Broker::start();
    let mut w = watcher(&broker);
    let mut o = options(&broker, "dying");
    o.set_last_will(LastWill::new("will/drop", "gone", QoS::AtLeastOnce, true));
    Mqtt::connect_with(o).kill();
    expect_will(&mut w, "will/drop", "gone", QoS::AtLeastOnce);
    // A retained will is stored: a later subscriber sees it with RETAIN set.
    let mut later = Mqtt::connect(&broker, "later");
    later.subscribe("will/drop", QoS::ExactlyOnce);
    let got = later.next_publish();
    assert_eq!(text(&got), "gone");
    assert!(got.retain);
    assert_eq!(got.qos, QoS::AtLeastOnce);
}

#[test]
fn will_is_published_on_keep_alive_timeout() {
    let broker = Broker::start();
    let mut w = watcher(&broker);
    let will = raw_will("will/ka", "timeout", RawQoS::ExactlyOnce, false);
    let mut silent = raw_connect(&broker, "silent", 1, Some(will));
    assert!(
        silent.closed_within(WAIT),
        "the broker closes the silent connection"
    );
    expect_will(&mut w, "will/ka", "timeout", QoS::ExactlyOnce);
    let line = wait_disconnected(&broker, "silent", 1);
    assert!(line.contains("reason=keep-alive timeout"), "{line}");
}

#[test]
fn will_is_published_on_protocol_error() {
    let broker = Broker::start();
    let mut w = watcher(&broker);
    let will = raw_will("will/err", "broken", RawQoS::AtMostOnce, false);
    let mut bad = raw_connect(&broker, "bad", 60, Some(will));
    bad.send(&[0x00, 0x00, 0xff, 0xff]); // packet type 0 is reserved
    assert!(
        bad.closed_within(WAIT),
        "the broker closes a connection that breaks the protocol"
    );
    expect_will(&mut w, "will/err", "broken", QoS::AtMostOnce);
    let line = wait_disconnected(&broker, "bad", 1);
    assert!(line.contains("reason=protocol error"), "{line}");
}

#[test]
fn will_is_published_when_the_session_is_taken_over() {
    let broker = Broker::start();
    let mut w = watcher(&broker);
    let mut o = options(&broker, "twin");
    o.set_last_will(LastWill::new(
        "will/takeover",
        "replaced",
        QoS::AtLeastOnce,
        false,
    ));
    let mut first = Mqtt::connect_with(o);
    let _second = Mqtt::connect(&broker, "twin");
    assert!(
        first.wait_error(WAIT).is_some(),
        "the first connection is closed"
    );
    expect_will(&mut w, "will/takeover", "replaced", QoS::AtLeastOnce);
}

#[test]
fn will_is_not_published_after_disconnect() {
    let broker = Broker::start();
    let mut w = watcher(&broker);
    let mut o = options(&broker, "polite");
    o.set_last_will(LastWill::new(
        "will/polite",
        "should not",
        QoS::AtLeastOnce,
        false,
    ));
    Mqtt::connect_with(o).disconnect();
    let line = wait_disconnected(&broker, "polite", 1);
    assert!(line.contains("reason=disconnect"), "{line}");
    let mut publisher = Mqtt::connect(&broker, "pub");
    publisher.publish_acked("will/marker", QoS::AtLeastOnce, false, b"marker");
    assert_eq!(
        w.next_publish().topic,
        "will/marker",
        "no will after DISCONNECT"
    );
}

#[test]
fn pingreq_is_answered_with_pingresp() {
    let broker = Broker::start();
    let mut c = raw_connect(&broker, "pinger", 60, None);
    for _ in 0..3 {
        send_packet(&mut c, &Packet::PingReq);
        assert_eq!(read(&mut c), Packet::PingResp);
    }
}
