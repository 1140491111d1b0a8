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

#[test]
fn the_alarm_ends_below_the_low_watermark_and_connections_come_back() {
    let broker = Broker::start_with(
        &[],
        "[memory]\nhigh_watermark = 0.000001\nlow_watermark = 0.0000005\ncheck_ms = 20\n",
    );
    broker.wait_for_log("memory alarm on", WAIT).expect("alarm on");
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
    let broker = Broker::start_with(&[], "[memory]\ncheck_ms = 20\n");
    let total = fubar::process_memory::total_bytes();
    let pid = broker.pid();
    // A watermark 32 MiB above what the node holds now; 12,000 connections need more.
    let limit = rss_of(pid) + (32 << 20);
    let high = limit as f64 / total as f64;
    for (name, value) in [
        ("memory.low_watermark", high * 0.9),
        ("memory.high_watermark", high),
    ] {
        let out = broker.ctl(&["settings", name, &format!("{value:.9}")]);
        assert!(out.status.success(), "{out:?}");
    }
    // Let a check measure the headroom under the new watermark.
    std::thread::sleep(Duration::from_millis(200));
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let storm_over = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, storm_over) = (peak.clone(), storm_over.clone());
        std::thread::spawn(move || {
            while !storm_over.load(std::sync::atomic::Ordering::Relaxed) {
                peak.fetch_max(rss_of(pid), std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fubar"))
        .args(["bench", "conns", "--clients", "12000", "--concurrency", "2000"])
        .args(["--json", "-p", &broker.port().to_string()])
        .output()
        .expect("run fubar bench conns");
    storm_over.store(true, std::sync::atomic::Ordering::Relaxed);
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
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        peak <= limit + (16 << 20),
        "peak {peak} B against a watermark at {limit} B"
    );
    broker
        .wait_for_log("new connections would pass the high watermark", WAIT)
        .expect("an access event says why");
    let status = broker.ctl(&["status"]);
    assert!(status.status.success(), "the node is still up: {status:?}");
}
