//! Overload protection. The memory alarm: above the high watermark new connections get
//! CONNACK 3. The rate limits (`mqtt.max_messages_per_sec`, `mqtt.max_connections_per_sec`):
//! beyond them the broker reads and accepts more slowly, and drops nothing.
//!
//! The rate limit tests assert what throttling must leave intact (every message, in order;
//! every connection accepted; the publisher still connected) and the evidence that it happened
//! (the `warning` event, `fubar ctl status`), never how long it took.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fubar::mqtt::packet::{ConnectReturnCode, Packet, QoS};

use crate::common::{connect_v311, qos0_burst, Broker, RawClient};
use crate::conformance::support::{raw_connect, raw_subscribe, read, send_packet, wait_log};

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

#[test]
fn the_alarm_ends_below_the_low_watermark_and_connections_come_back() {
    let broker = Broker::start_with(
        &[],
        "[memory]\nhigh_watermark = 0.000001\nlow_watermark = 0.0000005\ncheck_ms = 20\n",
    );
    broker
        .wait_for_log("memory alarm on", WAIT)
        .expect("alarm on");
    for (name, value) in [
        ("memory.high_watermark", "0.95"),
        ("memory.low_watermark", "0.9"),
    ] {
        let out = broker.ctl(&["settings", name, value]);
        assert!(out.status.success(), "{out:?}");
    }
    broker
        .wait_for_log("memory alarm off", WAIT)
        .expect("leaving the alarm is a warning too");
    let mut c = RawClient::connect(broker.addr);
    c.send(&connect_v311("back-again"));
    match c.read_packet(WAIT) {
        Some(Packet::ConnAck(a)) => assert_eq!(a.code, ConnectReturnCode::Accepted),
        other => panic!("expected CONNACK 0, got {other:?}"),
    }
}

/// Resident memory of a process, bytes.
fn rss_of(pid: u32) -> u64 {
    fubar::process_memory::resident_bytes_of(pid)
}

#[test]
fn a_connection_storm_is_refused_before_it_passes_the_watermark() {
    // The alarm starts on (a watermark below any process): the check that turns it off
    // below is then an event, and that check measures the headroom under the new watermark.
    let broker = Broker::start_with(
        &[],
        "[memory]\nhigh_watermark = 0.000001\nlow_watermark = 0.0000005\ncheck_ms = 20\n",
    );
    broker
        .wait_for_log("memory alarm on", WAIT)
        .expect("the alarm is on");
    let total = fubar::process_memory::total_bytes();
    let pid = broker.pid();
    // A watermark 12 MiB above what the node holds now; 12,000 connections (about 2.5 KiB
    // each once idle, more while connecting) need more.
    let limit = rss_of(pid) + (12 << 20);
    let high = limit as f64 / total as f64;
    for (name, value) in [
        ("memory.high_watermark", high),
        ("memory.low_watermark", high * 0.9),
    ] {
        let out = broker.ctl(&["settings", name, &format!("{value:.9}")]);
        assert!(out.status.success(), "{out:?}");
    }
    broker
        .wait_for_log("memory alarm off", WAIT)
        .expect("a check under the new watermark");
    let peak = Arc::new(AtomicU64::new(0));
    let storm_over = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, storm_over) = (peak.clone(), storm_over.clone());
        std::thread::spawn(move || {
            while !storm_over.load(Ordering::Relaxed) {
                peak.fetch_max(rss_of(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fubar"))
        .args([
            "bench",
            "conns",
            "--clients",
            "12000",
            "--concurrency",
            "2000",
        ])
        .args(["--json", "-p", &broker.port().to_string()])
        .output()
        .expect("run fubar bench conns");
    storm_over.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let connected = v["connected"].as_u64().unwrap();
    let failures = v["failures"].as_object().unwrap();
    assert!(connected > 0, "{v}");
    assert_eq!(
        failures.keys().collect::<Vec<_>>(),
        ["connection refused: ServerUnavailable"],
        "refused with CONNACK 3 and nothing else: {v}"
    );
    let peak = peak.load(Ordering::Relaxed);
    assert!(
        peak <= limit + (16 << 20),
        "peak {peak} B against a watermark at {limit} B"
    );
    // Refused by the admission estimate ("new connections would pass the high watermark")
    // or, when a check saw the node at the watermark first, by the alarm itself: either way
    // an access event says why.
    broker
        .wait_for_log("connect refused: memory", WAIT)
        .expect("an access event says why");
    let status = broker.ctl(&["status"]);
    assert!(status.status.success(), "the node is still up: {status:?}");
}

/// The value of a `fubar ctl status` line.
fn status_field(broker: &Broker, name: &str) -> String {
    let out = broker.ctl(&["status"]);
    assert!(out.status.success(), "ctl status failed: {out:?}");
    let status = String::from_utf8(out.stdout).expect("UTF-8 status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(name).filter(|v| v.starts_with(' ')))
        .unwrap_or_else(|| panic!("no {name} in status:\n{status}"))
        .trim()
        .to_owned()
}

/// How many log lines so far contain `needle`.
fn log_count(broker: &Broker, needle: &str) -> usize {
    broker
        .log_lines()
        .iter()
        .filter(|l| l.contains(needle))
        .count()
}

#[test]
fn a_client_over_max_messages_per_sec_is_slowed_down_and_loses_nothing() {
    const LIMIT: usize = 50;
    const SENT: usize = 5 * LIMIT;
    let broker = Broker::start_with(&[], &format!("[mqtt]\nmax_messages_per_sec = {LIMIT}\n"));
    let mut sub = raw_connect(&broker, "flood-reader", 60, None);
    raw_subscribe(&mut sub, 1, &[("flood/t", QoS::AtMostOnce)]);
    // Keep-alive 2 s (3 s of grace): reading the burst at the limit takes the broker longer
    // than that (one second's burst, then four seconds' worth), and the publisher sends
    // nothing meanwhile. It is the broker that is not reading, so that must not count against
    // the client.
    let mut publisher = raw_connect(&broker, "flooder", 2, None);
    let burst = qos0_burst("flood/t", SENT);
    publisher.send(&burst);

    for i in 0..SENT {
        match read(&mut sub) {
            Packet::Publish(p) => assert_eq!(p.payload, i.to_string().as_bytes(), "in order"),
            other => panic!("expected PUBLISH #{i}, got {other:?}"),
        }
    }
    send_packet(&mut publisher, &Packet::PingReq);
    assert_eq!(
        read(&mut publisher),
        Packet::PingResp,
        "the publisher is still connected"
    );

    let line = wait_log(&broker, "client throttled");
    assert!(line.contains("client=flooder"), "{line}");
    assert!(line.contains("peer=127.0.0.1:"), "{line}");
    assert!(line.contains(&format!("limit={LIMIT}")), "{line}");
    assert_eq!(log_count(&broker, "client throttled"), 1, "reported once");
    assert_eq!(log_count(&broker, "disconnected client=flooder"), 0);
    assert_eq!(status_field(&broker, "throttled"), "clients 1, accepts 0");
}

#[test]
fn connections_over_max_connections_per_sec_wait_and_are_all_accepted() {
    const LIMIT: usize = 20;
    const OPENED: usize = 3 * LIMIT;
    let broker = Broker::start();
    // Changed at run time: the listener applies it from the next accept on.
    let out = broker.ctl(&[
        "settings",
        "mqtt.max_connections_per_sec",
        &LIMIT.to_string(),
    ]);
    assert!(out.status.success(), "{out:?}");

    let mut clients: Vec<RawClient> = (0..OPENED)
        .map(|_| RawClient::connect(broker.addr))
        .collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(&connect_v311(&format!("crowd-{i}")));
    }
    for (i, c) in clients.iter_mut().enumerate() {
        match c.read_packet(WAIT) {
            Some(Packet::ConnAck(a)) => assert_eq!(a.code, ConnectReturnCode::Accepted, "#{i}"),
            other => panic!("client #{i}: expected CONNACK 0, got {other:?}"),
        }
    }

    let line = wait_log(&broker, "accepting slowly");
    assert!(line.contains(&format!("limit={LIMIT}")), "{line}");
    assert_eq!(log_count(&broker, "connection refused"), 0);
    assert_eq!(status_field(&broker, "connections"), OPENED.to_string());
    let throttled = status_field(&broker, "throttled");
    let delayed: usize = throttled
        .strip_prefix("clients 0, accepts ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("throttled {throttled:?}"));
    assert!(
        (1..OPENED).contains(&delayed),
        "some accepts were held back, not all: {delayed}"
    );
}
