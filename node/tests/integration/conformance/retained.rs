//! Retained messages.

use rumqttc::QoS;

use super::support::{summary, text, Mqtt};
use crate::common::Broker;

#[test]
fn retained_message_is_delivered_to_a_later_subscriber_with_retain_set() {
    let broker = Broker::start();
    let mut publisher = Mqtt::connect(&broker, "pub");
    publisher.publish_acked("r/1", QoS::AtLeastOnce, true, b"kept");
    let mut sub = Mqtt::connect(&broker, "sub");
    sub.subscribe("r/+", QoS::AtLeastOnce);
    let got = sub.next_publish();
    assert_eq!((got.topic.as_str(), text(&got)), ("r/1", "kept"));
    assert!(
        got.retain,
        "a retained message sent on subscribe has RETAIN set"
    );
    assert_eq!(got.qos, QoS::AtLeastOnce);
}

#[test]
fn newer_retained_message_replaces_the_older() {
    let broker = Broker::start();
    let mut publisher = Mqtt::connect(&broker, "pub");
    publisher.publish_acked("r/2", QoS::AtLeastOnce, true, b"old");
    publisher.publish_acked("r/2", QoS::AtLeastOnce, true, b"new");
    let mut sub = Mqtt::connect(&broker, "sub");
    sub.subscribe("r/2", QoS::AtLeastOnce);
    publisher.publish_acked("r/2", QoS::AtLeastOnce, false, b"marker");
    let got = sub.publishes(2);
    assert_eq!(
        summary(&got),
        [
            ("r/2".into(), "new".into()),
            ("r/2".into(), "marker".into())
        ]
    );
    assert!(got[0].retain && !got[1].retain);
}

#[test]
fn empty_retained_payload_deletes_the_retained_message() {
    let broker = Broker::start();
    let mut publisher = Mqtt::connect(&broker, "pub");
    publisher.publish_acked("r/del", QoS::AtLeastOnce, true, b"doomed");
    publisher.publish_acked("r/del", QoS::AtLeastOnce, true, b"");
    let mut sub = Mqtt::connect(&broker, "sub");
    sub.subscribe("r/del", QoS::AtLeastOnce);
    publisher.publish_acked("r/del", QoS::AtLeastOnce, false, b"marker");
    let got = sub.next_publish();
    assert_eq!(
        text(&got),
        "marker",
        "nothing retained is sent after deletion"
    );
    assert!(!got.retain);
}

#[test]
fn retained_publish_reaches_existing_subscribers_without_retain() {
    let broker = Broker::start();
    let mut sub = Mqtt::connect(&broker, "sub");
    sub.subscribe("r/live", QoS::AtLeastOnce);
    let mut publisher = Mqtt::connect(&broker, "pub");
    publisher.publish_acked("r/live", QoS::AtLeastOnce, true, b"now");
    let got = sub.next_publish();
    assert_eq!(text(&got), "now");
    assert!(
        !got.retain,
        "RETAIN is cleared when forwarding to an existing subscription"
    );
}
