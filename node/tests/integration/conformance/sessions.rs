//! Clean and persistent sessions, the offline queue bound, takeover and client ids.

use fubar::mqtt::packet::{ConnAck, ConnectReturnCode, Packet};
use rumqttc::QoS;

use super::support::{options, summary, wait_disconnected, wait_log, Mqtt, WAIT};
use crate::common::{connect_v311, Broker, RawClient};

/// Options for a persistent session (clean session 0).
fn persistent(broker: &Broker, id: &str) -> rumqttc::MqttOptions {
    let mut o = options(broker, id);
    o.set_clean_session(false);
    o
}

#[test]
fn persistent_session_keeps_subscriptions_and_qos1_qos2_messages_but_not_qos0() {
    let broker = Broker::start();
    let mut sub = Mqtt::connect_with(persistent(&broker, "keeper"));
    sub.subscribe("cs/t", QoS::ExactlyOnce);
    sub.disconnect();
    wait_disconnected(&broker, "keeper", 1);
    let mut publisher = Mqtt::connect(&broker, "pub");
    publisher.publish("cs/t", QoS::AtMostOnce, false, b"zero");
    publisher.publish_acked("cs/t", QoS::AtLeastOnce, false, b"one");
    publisher.publish_acked("cs/t", QoS::ExactlyOnce, false, b"two");
    let mut sub = Mqtt::connect_with(persistent(&broker, "keeper"));
    assert!(sub.connack.session_present);
    // No new SUBSCRIBE: the marker arrives through the kept subscription.
    publisher.publish_acked("cs/t", QoS::AtLeastOnce, false, b"marker");
    let got = sub.publishes(3);
    assert_eq!(
        summary(&got),
        [
            ("cs/t".into(), "one".into()),
            ("cs/t".into(), "two".into()),
            ("cs/t".into(), "marker".into())
        ],
        "QoS 1 and 2 kept, QoS 0 not"
    );
    assert_eq!(got[0].qos, QoS::AtLeastOnce);
    assert_eq!(got[1].qos, QoS::ExactlyOnce);
}

#[test]
fn session_present_is_set_only_when_a_stored_session_is_resumed() {
    let broker = Broker::start();
    let clean = Mqtt::connect(&broker, "clean");
    assert!(!clean.connack.session_present, "clean session 1");
    let fresh = Mqtt::connect_with(persistent(&broker, "fresh"));
    assert!(!fresh.connack.session_present, "never-seen client id");
    fresh.disconnect();
    wait_disconnected(&broker, "fresh", 1);
    let resumed = Mqtt::connect_with(persistent(&broker, "fresh"));
    assert!(
        resumed.connack.session_present,
        "resumed persistent session"
    );
}

#[test]
fn clean_session_discards_a_stored_persistent_session() {
    let broker = Broker::start();
    let mut old = Mqtt::connect_with(persistent(&broker, "cd"));
    old.subscribe("cd/t", QoS::AtLeastOnce);
    old.disconnect();
    wait_disconnected(&broker, "cd", 1);
    let mut publisher = Mqtt::connect(&broker, "pub");
    publisher.publish_acked("cd/t", QoS::AtLeastOnce, false, b"queued while away");
    let mut clean = Mqtt::connect(&broker, "cd");
    assert!(!clean.connack.session_present);
    publisher.publish_acked("cd/t", QoS::AtLeastOnce, false, b"after");
    // A message to the client id itself is the marker (direct messaging needs no subscription).
    publisher.publish_acked("cd", QoS::AtLeastOnce, false, b"marker");
    let got = clean.next_publish();
    assert_eq!(
        summary(&[got]),
        [("cd".into(), "marker".into())],
        "neither the queue nor the subscription of the old session survives"
    );
    clean.disconnect();
    wait_disconnected(&broker, "cd", 2);
    let again = Mqtt::connect_with(persistent(&broker, "cd"));
    assert!(
        !again.connack.session_present,
        "the clean session ended with its connection"
    );
}

#[test]
fn offline_queue_keeps_the_newest_messages_up_to_its_bound() {
    let broker = Broker::start_with(&[], "[session]\nmax_queued_messages = 5\n");
    let mut sub = Mqtt::connect_with(persistent(&broker, "slow"));
    sub.subscribe("qb/t", QoS::AtLeastOnce);
    sub.disconnect();
    wait_disconnected(&broker, "slow", 1);
    let mut publisher = Mqtt::connect(&broker, "pub");
    for i in 0..20 {
        publisher.publish_acked("qb/t", QoS::AtLeastOnce, false, format!("{i}").as_bytes());
    }
    let line = wait_log(&broker, "session queue full");
    assert!(
        line.contains("warning") && line.contains("client=slow") && line.contains("dropped="),
        "{line}"
    );
    let mut sub = Mqtt::connect_with(persistent(&broker, "slow"));
    assert!(sub.connack.session_present);
    publisher.publish_acked("qb/t", QoS::AtLeastOnce, false, b"marker");
    let got: Vec<String> = summary(&sub.publishes(6))
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    assert_eq!(
        got,
        ["15", "16", "17", "18", "19", "marker"],
        "exactly the newest 5"
    );
}

#[test]
fn second_connection_with_the_same_id_takes_the_session_over() {
    let broker = Broker::start();
    let mut first = Mqtt::connect(&broker, "dup");
    let mut second = Mqtt::connect(&broker, "dup");
    assert!(
        first.wait_error(WAIT).is_some(),
        "the first connection is closed"
    );
    let line = wait_disconnected(&broker, "dup", 1);
    assert!(line.contains("reason=taken over"), "{line}");
    second.subscribe("to/t", QoS::AtLeastOnce);
    let mut publisher = Mqtt::connect(&broker, "pub");
    publisher.publish_acked("to/t", QoS::AtLeastOnce, false, b"for the second");
    assert_eq!(
        summary(&[second.next_publish()]),
        [("to/t".into(), "for the second".into())]
    );
}

#[test]
fn empty_client_id_with_clean_session_gets_an_assigned_id() {
    let broker = Broker::start();
    let mut c = RawClient::connect(broker.addr);
    c.send(&connect_v311(""));
    assert_eq!(
        c.read_packet(WAIT),
        Some(Packet::ConnAck(ConnAck {
            session_present: false,
            code: ConnectReturnCode::Accepted.into(),
            properties: Default::default(),
        }))
    );
    wait_log(&broker, "connected client=fubar-");
}

#[test]
fn empty_client_id_without_clean_session_is_rejected_with_code_2() {
    let broker = Broker::start();
    let mut c = RawClient::connect(broker.addr);
    // CONNECT, MQTT 3.1.1, flags 0 (clean session 0), keep-alive 60, client id "".
    c.send(&[0x10, 12, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x00, 0, 60, 0, 0]);
    assert_eq!(
        c.read_packet(WAIT),
        Some(Packet::ConnAck(ConnAck {
            session_present: false,
            code: ConnectReturnCode::IdentifierRejected.into(),
            properties: Default::default(),
        }))
    );
    assert!(
        c.closed_within(WAIT),
        "the connection is closed after the refusal"
    );
}
