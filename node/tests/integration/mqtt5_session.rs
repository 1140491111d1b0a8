//! MQTT 5.0 sessions with an independent client (paho-mqtt, MQTTv5): each session's own
//! expiry interval, changed or ended by the client's DISCONNECT; the will delay interval
//! (cancelled by a timely return, cut short by the session's end); DISCONNECT with reason
//! 0x04 publishing the will; a shared-subscription member that leaves handing its
//! unacknowledged messages to another member.

use crate::common::{run_paho, Broker};

/// The paho script: runs one scenario, prints one line per check.
const SCRIPT: &str = include_str!("mqtt5_session.py");

fn run(scenario: &str) -> Vec<String> {
    let broker = Broker::start();
    run_paho(&broker, "session5.py", SCRIPT, &[scenario])
}

#[test]
fn a_will_waits_for_its_delay_and_is_dropped_if_the_client_returns() {
    assert_eq!(
        run("will-delay"),
        [
            "back in time, session present True",
            "delayed will arrives True",
            "after the delay True will/b gone:wd-b",
            "will at session end True will/c",
            "wills seen ['will/b', 'will/c']",
        ]
    );
}

#[test]
fn disconnect_with_reason_4_publishes_the_will_and_a_plain_one_does_not() {
    assert_eq!(
        run("disconnect-with-will"),
        [
            "0x04 publishes the will True",
            "wills seen ['will/a', 'will/c']",
        ]
    );
}

#[test]
fn each_session_lives_for_its_own_expiry_interval() {
    assert_eq!(
        run("session-expiry"),
        [
            "kept True",
            "ended by DISCONNECT True",
            "expired True",
            "resumed then ended True True",
        ]
    );
}

#[test]
fn a_session_expiry_set_on_disconnect_after_zero_is_a_protocol_error() {
    assert_eq!(
        run("expiry-after-zero"),
        ["protocol error publishes the will True"]
    );
}

#[test]
fn a_share_member_that_leaves_hands_its_unacknowledged_messages_to_another() {
    assert_eq!(
        run("share-leave"),
        [
            "lazy member had 5",
            "worker before all True",
            "worker gets every job True True",
        ]
    );
}
