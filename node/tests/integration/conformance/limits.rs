//! Resource limits: the maximum packet size and a subscriber that never reads.

use fubar::mqtt::packet::QoS as RawQoS;
use rumqttc::QoS;

use super::support::{raw_connect, raw_subscribe, text, wait_disconnected, wait_log, Mqtt, WAIT};
use crate::common::Broker;

#[test]
fn packet_over_the_maximum_size_closes_only_its_connection() {
    let broker = Broker::start_with(&["--max-packet-size", "1024"], "");
    let mut sub = Mqtt::connect(&broker, "sub");
    sub.subscribe("ok", QoS::AtLeastOnce);
    let mut publisher = Mqtt::connect(&broker, "pub");
    let mut big = raw_connect(&broker, "big", 60, None);
    // PUBLISH QoS 0 to "t": 2000 bytes in all (3-byte fixed header, 3-byte topic).
    let mut packet = vec![0x30, 0xcd, 0x0f, 0x00, 0x01, b't'];
    packet.resize(2000, b'x');
    assert_eq!(
        packet[1] as usize & 0x7f | (packet[2] as usize) << 7,
        2000 - 3
    );
    big.send(&packet);
    assert!(
        big.closed_within(WAIT),
        "the oversized PUBLISH closes the connection"
    );
    let line = wait_disconnected(&broker, "big", 1);
    assert!(line.contains("reason=packet too large"), "{line}");
    let warning = wait_log(&broker, " bad packet client=big ");
    assert!(
        warning.contains("exceeds the maximum packet size of 1024"),
        "{warning}"
    );
    // Everyone else carries on.
    publisher.publish_acked("ok", QoS::AtLeastOnce, false, b"still fine");
    assert_eq!(text(&sub.next_publish()), "still fine");
}

#[test]
fn subscriber_that_never_reads_is_disconnected_without_blocking_the_publisher() {
    // The flood goes on until the stalled subscriber is dropped: how much it takes depends on
    // the kernel's socket buffers, which the broker's writes must fill first.
    const FLOOD: usize = 400_000;
    const CHECK_EVERY: usize = 2_000;
    let broker = Broker::start_with(
        &[],
        "[mqtt]\nstalled_reader_timeout_secs = 2\n[session]\nmax_queued_messages = 100\n",
    );
    // Subscribes, then never reads its socket again.
    let mut stalled = raw_connect(&broker, "stalled", 0, None);
    raw_subscribe(&mut stalled, 1, &[("flood", RawQoS::AtMostOnce)]);
    let mut healthy = Mqtt::connect(&broker, "healthy");
    healthy.subscribe("ctl", QoS::AtLeastOnce);
    let mut publisher = Mqtt::connect(&broker, "pub");
    let payload = vec![b'f'; 1024];
    for i in 0..FLOOD {
        publisher.send_publish("flood", QoS::AtMostOnce, false, &payload);
        if (i + 1) % CHECK_EVERY == 0 {
            // Never blocked: a QoS 1 publish in the middle of the flood is acknowledged and
            // delivered to a subscriber that reads.
            let n = (i + 1) / CHECK_EVERY;
            publisher.publish_acked("ctl", QoS::AtLeastOnce, false, n.to_string().as_bytes());
            assert_eq!(text(&healthy.next_publish()), n.to_string());
            let gone = broker
                .log_lines()
                .iter()
                .any(|l| l.contains("disconnected client=stalled "));
            if gone {
                break;
            }
        }
    }
    let line = wait_disconnected(&broker, "stalled", 1);
    assert!(line.contains("reason=stalled reader"), "{line}");
    let drops = wait_log(
        &broker,
        "session queue full: dropped oldest messages client=stalled",
    );
    assert!(drops.contains("dropped="), "{drops}");
    drop(stalled);
}
