//! `fubar bench` as a user runs it: small runs against a real broker, checked by their counts,
//! exit codes and JSON shape (never by their timings).

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::{eventually, Broker};

fn bench(broker: &Broker, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fubar"))
        .arg("bench")
        .args(args)
        .args(["-p", &broker.port().to_string(), "--json"])
        .args(["--broker-pid", &broker.pid().to_string()])
        .output()
        .expect("run fubar bench")
}

/// The one JSON object a `--json` run prints.
fn report(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON line: {stdout}");
    serde_json::from_str(lines[0]).expect("valid JSON")
}

fn uint(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} in {v}"))
}

fn broker_usage_is_reported(v: &Value) {
    assert!(v["broker"]["cpu_seconds"].as_f64().is_some(), "{v}");
    assert!(uint(&v["broker"], "rss_after") > 0, "{v}");
}

#[test]
fn fanin_and_fanout_count_every_message_at_every_qos() {
    let broker = Broker::start();
    for qos in ["0", "1", "2"] {
        let v = report(&bench(
            &broker,
            &["fanin", "-q", qos, "--publishers", "3", "--messages", "100"],
        ));
        assert_eq!(v["bench"], "fanin");
        assert_eq!(
            (
                uint(&v, "published"),
                uint(&v, "delivered"),
                uint(&v, "lost")
            ),
            (300, 300, 0),
            "{v}"
        );
        assert!(v["publish_rate"].as_f64().unwrap() > 0.0);
        broker_usage_is_reported(&v);
        let v = report(&bench(
            &broker,
            &[
                "fanout",
                "-q",
                qos,
                "--subscribers",
                "5",
                "--messages",
                "100",
            ],
        ));
        assert_eq!(v["bench"], "fanout");
        assert_eq!(
            (
                uint(&v, "published"),
                uint(&v, "expected"),
                uint(&v, "delivered")
            ),
            (100, 500, 500),
            "{v}"
        );
    }
    broker.stop();
}

#[test]
fn conns_probe_latency_and_handshakes_report_their_figures() {
    let broker = Broker::start();
    let v = report(&bench(
        &broker,
        &["conns", "--clients", "50", "--id-prefix", "c"],
    ));
    assert_eq!(
        (
            v["bench"].as_str(),
            uint(&v, "connected"),
            uint(&v, "failed")
        ),
        (Some("conns"), 50, 0)
    );
    assert!(v["rss_per_connection"].as_f64().is_some());
    broker_usage_is_reported(&v);

    let v = report(&bench(
        &broker,
        &[
            "probe",
            "--clients",
            "20",
            "--interval",
            "5",
            "--duration",
            "0.5",
            "-q",
            "1",
        ],
    ));
    assert_eq!(
        (v["bench"].as_str(), v["mode"].as_str()),
        (Some("probe"), Some("direct"))
    );
    assert_eq!(uint(&v, "connected"), 20);
    assert!(uint(&v, "sent") > 0);
    assert_eq!(uint(&v, "received"), uint(&v, "sent"), "{v}");
    assert!(uint(&v, "p99_us") >= uint(&v, "p50_us"));

    let v = report(&bench(
        &broker,
        &[
            "probe",
            "--clients",
            "10",
            "--interval",
            "5",
            "--duration",
            "0.3",
            "-t",
            "all/of/us",
        ],
    ));
    assert_eq!(v["mode"], "topic");
    assert_eq!(uint(&v, "received"), uint(&v, "sent") * 10, "{v}");

    let v = report(&bench(
        &broker,
        &["latency", "--messages", "100", "--rate", "1000", "-q", "2"],
    ));
    assert_eq!((uint(&v, "sent"), uint(&v, "received")), (100, 100));
    assert!(uint(&v, "max_us") >= uint(&v, "p99_us") && uint(&v, "p99_us") > 0);

    let v = report(&bench(&broker, &["handshakes", "--count", "30"]));
    assert_eq!((uint(&v, "connected"), uint(&v, "failed")), (30, 0));
    assert_eq!(v["transport"], "tcp");
    broker.stop();
}

#[test]
fn every_mode_speaks_mqtt_5_with_dash_v_5() {
    let broker = Broker::start();
    let v = report(&bench(
        &broker,
        &[
            "fanin",
            "-V",
            "5",
            "-q",
            "1",
            "--publishers",
            "2",
            "--messages",
            "50",
        ],
    ));
    assert_eq!((uint(&v, "published"), uint(&v, "delivered")), (100, 100));
    let v = report(&bench(
        &broker,
        &[
            "fanout",
            "-V",
            "mqttv5",
            "-q",
            "2",
            "--subscribers",
            "2",
            "--messages",
            "50",
        ],
    ));
    assert_eq!((uint(&v, "expected"), uint(&v, "delivered")), (100, 100));
    let v = report(&bench(
        &broker,
        &["conns", "-V", "5", "--clients", "5", "--id-prefix", "v5c"],
    ));
    assert_eq!((uint(&v, "connected"), uint(&v, "failed")), (5, 0), "{v}");
    let v = report(&bench(
        &broker,
        &[
            "probe",
            "-V",
            "5",
            "--clients",
            "5",
            "--id-prefix",
            "v5p",
            "--interval",
            "5",
            "--duration",
            "0.3",
            "-q",
            "1",
        ],
    ));
    assert_eq!(uint(&v, "connected"), 5);
    assert_eq!(uint(&v, "received"), uint(&v, "sent"), "{v}");
    let v = report(&bench(
        &broker,
        &["latency", "-V", "5", "--messages", "50", "--rate", "1000"],
    ));
    assert_eq!((uint(&v, "sent"), uint(&v, "received")), (50, 50));
    let v = report(&bench(&broker, &["handshakes", "-V", "5", "--count", "5"]));
    assert_eq!((uint(&v, "connected"), uint(&v, "failed")), (5, 0));

    // The broker's access log says which protocol each connection spoke. Every client of
    // every mode: fan-in 2 publishers, a subscriber and the readiness probe, fan-out 1, 2 and
    // the probe; 5 conns clients; 5 probe clients and the probe; 2 for latency; 5 handshakes.
    for (prefix, n) in [
        ("flow-", 8),
        ("v5c", 5),
        ("v5p", 6),
        ("lat-", 2),
        ("hs-", 5),
    ] {
        let needle = format!(" connected client={prefix}");
        assert!(
            broker
                .wait_for_log_count(&needle, n, Duration::from_secs(10))
                .is_some(),
            "{n} connections of {prefix}"
        );
    }
    let connected: Vec<String> = broker
        .log_lines()
        .into_iter()
        .filter(|l| l.starts_with("access") && l.contains(" connected client="))
        .collect();
    assert_eq!(connected.len(), 26, "{connected:#?}");
    for line in &connected {
        assert!(line.contains(" protocol=5.0 "), "{line}");
    }
    broker.stop();
}

#[test]
fn the_table_is_for_people() {
    let broker = Broker::start();
    let out = Command::new(env!("CARGO_BIN_EXE_fubar"))
        .args([
            "bench",
            "fanin",
            "--messages",
            "50",
            "-p",
            &broker.port().to_string(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for label in [
        "fanin",
        "published",
        "delivered",
        "published/s",
        "delivered/s",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(label)),
            "{label} in\n{text}"
        );
    }
    assert!(text.contains("200"), "{text}");
    broker.stop();
}

#[test]
fn bad_flags_and_an_absent_broker_exit_1_with_the_reason() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_fubar"))
            .arg("bench")
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["fanin", "-q", "3"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("-q"));
    // A port nothing listens on (bound, then closed).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = run(&["fanout", "-p", &port.to_string(), "--subscribers", "2"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("failed") && err.contains("refused"), "{err}");
    // conns reports refused connections by reason rather than failing.
    let out = run(&["conns", "-p", &port.to_string(), "--clients", "3", "--json"]);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(uint(&v, "failed"), 3);
    assert_eq!(uint(&v["failures"], "connection refused (ECONNREFUSED)"), 3);
}

#[test]
fn ctrl_c_stops_a_run_and_reports_what_was_measured() {
    let broker = Broker::start();
    let child = Command::new(env!("CARGO_BIN_EXE_fubar"))
        .args(["bench", "fanout", "--subscribers", "2", "--rate", "200"])
        .args([
            "--messages",
            "1000000",
            "--json",
            "-p",
            &broker.port().to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once the subscribers are in and publishing has begun.
    broker
        .wait_for_log_count("subscription added", 2, Duration::from_secs(20))
        .expect("two subscribers");
    eventually(
        "the bench's first messages",
        Duration::from_secs(20),
        || {
            let status = String::from_utf8_lossy(&broker.ctl(&["status"]).stdout).into_owned();
            let received = status
                .lines()
                .find_map(|l| l.strip_prefix("messages")?.trim().strip_prefix("received "))
                .and_then(|rest| rest.split(',').next()?.parse::<u64>().ok());
            // More than the readiness probes (one every 5 ms until both subscribers have one,
            // counted by the broker too): at 200 msg/s, a quarter second of the bench's own.
            if received.is_some_and(|n| n > 50) {
                Ok(())
            } else {
                Err(status)
            }
        },
    );
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let v = report(&out);
    assert_eq!(v["interrupted"], true, "{v}");
    let published = uint(&v, "published");
    assert!(published > 0 && published < 1_000_000, "{v}");
    broker.stop();
}
