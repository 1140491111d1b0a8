//! The memory alarm: above the high watermark new connections get CONNACK 3.

use std::time::Duration;

use fubar::mqtt::packet::{ConnectReturnCode, Packet};

use crate::common::{connect_v311, Broker, RawClient};

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn above_the_high_watermark_new_connections_get_connack_3() {
    // A watermark below any real process's memory: the alarm goes on at the first check.
    let broker = Broker::start_with(
        &[],
        "[memory]\nhigh_watermark = 0.000001\nlow_watermark = 0.0000005\ncheck_ms = 20\n",
    );
    broker
        .wait_for_log("memory alarm on", WAIT)
        .expect("the alarm is reported as a warning");
    let mut c = RawClient::connect(broker.addr);
    c.send(&connect_v311("refused-by-alarm"));
    match c.read_packet(WAIT) {
        Some(Packet::ConnAck(a)) => assert_eq!(a.code, ConnectReturnCode::ServerUnavailable),
        other => panic!("expected CONNACK 3, got {other:?}"),
    }
    assert!(c.closed_within(WAIT));
    let line = broker
        .wait_for_log("connect refused: memory alarm", WAIT)
        .expect("an access event says why");
    assert!(line.contains("code=3"), "{line}");
}

#[test]
fn below_the_watermark_connections_are_accepted() {
    let broker = Broker::start_with(&[], "[memory]\ncheck_ms = 20\n");
    let mut c = RawClient::connect(broker.addr);
    c.send(&connect_v311("welcome"));
    match c.read_packet(WAIT) {
        Some(Packet::ConnAck(a)) => assert_eq!(a.code, ConnectReturnCode::Accepted),
        other => panic!("expected CONNACK 0, got {other:?}"),
    }
    assert!(broker
        .log_lines()
        .iter()
        .all(|l| !l.contains("memory alarm on")));
}
