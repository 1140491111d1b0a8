//! SUBSCRIBE / SUBACK, UNSUBSCRIBE, overlapping subscriptions and wildcard matching.

use fubar::mqtt::packet::{Packet, QoS as RawQoS, SubAckCode};
use rumqttc::{QoS, SubscribeReasonCode};

use super::support::{raw_connect, raw_subscribe, read, summary, text, Mqtt};
use crate::common::Broker;

#[test]
fn suback_grants_the_requested_qos() {
    let broker = Broker::start();
    let mut sub = Mqtt::connect(&broker, "sub");
    let codes = sub.subscribe_many(&[
        ("s/0", QoS::AtMostOnce),
        ("s/1", QoS::AtLeastOnce),
        ("s/2", QoS::ExactlyOnce),
    ]);
    assert_eq!(
        codes,
        [
            SubscribeReasonCode::Success(QoS::AtMostOnce),
            SubscribeReasonCode::Success(QoS::AtLeastOnce),
            SubscribeReasonCode::Success(QoS::ExactlyOnce),
        ]
    );
}

#[test]
fn qos2_publish_to_a_qos1_subscription_is_delivered_at_qos1() {
    let broker = Broker::start();
    let mut sub = Mqtt::connect(&broker, "sub");
    sub.subscribe("d", QoS::AtLeastOnce);
    let mut publisher = Mqtt::connect(&broker, "pub");
    publisher.publish_acked("d", QoS::ExactlyOnce, false, b"x");
    let got = sub.next_publish();
    assert_eq!(text(&got), "x");
    assert_eq!(
        got.qos,
        QoS::AtLeastOnce,
        "downgraded to the subscription's QoS"
    );
}

#[test]
fn invalid_filters_get_failure_while_valid_ones_in_the_same_subscribe_succeed() {
    // rumqttc refuses to send invalid filters, so this client speaks raw bytes.
    let broker = Broker::start();
    let mut sub = raw_connect(&broker, "sub", 60, None);
    let suback = raw_subscribe(
        &mut sub,
        7,
        &[
            ("ok/1", RawQoS::AtLeastOnce),
            ("a/#/b", RawQoS::AtMostOnce),
            ("a+", RawQoS::AtLeastOnce),
            ("#/x", RawQoS::ExactlyOnce),
            ("ok/2", RawQoS::ExactlyOnce),
        ],
    );
    assert_eq!(suback.packet_id, 7);
    assert_eq!(
        suback.codes,
        [
            SubAckCode::Granted(RawQoS::AtLeastOnce),
            SubAckCode::Failure,
            SubAckCode::Failure,
            SubAckCode::Failure,
            SubAckCode::Granted(RawQoS::ExactlyOnce),
        ]
    );
    // The valid subscriptions work.
    let mut publisher = Mqtt::connect(&broker, "pub");
    publisher.publish_acked("ok/2", QoS::AtLeastOnce, false, b"y");
    match read(&mut sub) {
        Packet::Publish(p) => assert_eq!((&*p.topic, &p.payload[..]), ("ok/2", &b"y"[..])),
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

#[test]
fn unsubscribe_is_acknowledged_and_stops_delivery() {
    let broker = Broker::start();
    let mut sub = Mqtt::connect(&broker, "sub");
    sub.subscribe_many(&[("u/gone", QoS::AtLeastOnce), ("u/kept", QoS::AtLeastOnce)]);
    let mut publisher = Mqtt::connect(&broker, "pub");
    publisher.publish_acked("u/gone", QoS::AtLeastOnce, false, b"before");
    assert_eq!(text(&sub.next_publish()), "before");
    sub.unsubscribe("u/gone");
    publisher.publish_acked("u/gone", QoS::AtLeastOnce, false, b"after");
    publisher.publish_acked("u/kept", QoS::AtLeastOnce, false, b"marker");
    let got = sub.next_publish();
    assert_eq!(
        summary(&[got]),
        [("u/kept".into(), "marker".into())],
        "only the marker arrives after UNSUBSCRIBE"
    );
}

#[test]
fn overlapping_subscriptions_deliver_once_at_the_highest_qos() {
    let broker = Broker::start();
    let mut sub = Mqtt::connect(&broker, "sub");
    sub.subscribe_many(&[
        ("a/+", QoS::AtMostOnce),
        ("a/#", QoS::ExactlyOnce),
        ("a/b", QoS::AtLeastOnce),
    ]);
    let mut publisher = Mqtt::connect(&broker, "pub");
    publisher.publish_acked("a/b", QoS::ExactlyOnce, false, b"once");
    publisher.publish_acked("a/marker", QoS::AtLeastOnce, false, b"marker");
    let got = sub.publishes(2);
    assert_eq!(
        summary(&got),
        [
            ("a/b".into(), "once".into()),
            ("a/marker".into(), "marker".into())
        ],
        "the overlapped message arrives once"
    );
    assert_eq!(got[0].qos, QoS::ExactlyOnce);
}

#[test]
fn plus_wildcard_matches_exactly_one_level() {
    let broker = Broker::start();
    let mut sub = Mqtt::connect(&broker, "sub");
    sub.subscribe("p/+/x", QoS::AtLeastOnce);
    let mut publisher = Mqtt::connect(&broker, "pub");
    for topic in ["p/a/b/x", "p/x", "q/a/x", "p/a/x", "p//x"] {
        publisher.publish_acked(topic, QoS::AtLeastOnce, false, topic.as_bytes());
    }
    let got: Vec<String> = sub.publishes(2).into_iter().map(|p| p.topic).collect();
    assert_eq!(got, ["p/a/x", "p//x"]);
}

#[test]
fn hash_wildcard_matches_the_parent_and_every_level_below() {
    let broker = Broker::start();
    let mut sport = Mqtt::connect(&broker, "sub-sport");
    sport.subscribe("sport/#", QoS::AtLeastOnce);
    let mut all = Mqtt::connect(&broker, "sub-all");
    all.subscribe("#", QoS::AtLeastOnce);
    let mut publisher = Mqtt::connect(&broker, "pub");
    let topics = [
        "sportx",
        "sport",
        "sport/tennis",
        "sport/tennis/player1",
        "sport/",
    ];
    for topic in topics {
        publisher.publish_acked(topic, QoS::AtLeastOnce, false, topic.as_bytes());
    }
    let got: Vec<String> = sport.publishes(4).into_iter().map(|p| p.topic).collect();
    assert_eq!(
        got,
        ["sport", "sport/tennis", "sport/tennis/player1", "sport/"]
    );
    let got: Vec<String> = all.publishes(5).into_iter().map(|p| p.topic).collect();
    assert_eq!(got, topics);
}

#[test]
fn leading_wildcards_do_not_match_dollar_topics_but_dollar_filters_do() {
    let broker = Broker::start();
    let mut hash = Mqtt::connect(&broker, "hash");
    hash.subscribe("#", QoS::AtLeastOnce);
    let mut plus = Mqtt::connect(&broker, "plus");
    plus.subscribe("+/x", QoS::AtLeastOnce);
    // Any topic starting with `$` (MQTT-4.7.2-1); not `$SYS/`, where clients cannot publish
    // (observe.rs checks `$SYS` itself with the broker's own figures).
    let mut sys = Mqtt::connect(&broker, "sys");
    sys.subscribe("$app/#", QoS::AtLeastOnce);
    let mut publisher = Mqtt::connect(&broker, "pub");
    publisher.publish_acked("$app/x", QoS::AtLeastOnce, false, b"sys");
    publisher.publish_acked("m/x", QoS::AtLeastOnce, false, b"marker");
    assert_eq!(hash.next_publish().topic, "m/x", "# does not match $app/x");
    assert_eq!(
        plus.next_publish().topic,
        "m/x",
        "+/x does not match $app/x"
    );
    assert_eq!(sys.next_publish().topic, "$app/x", "$app/# matches $app/x");
}
