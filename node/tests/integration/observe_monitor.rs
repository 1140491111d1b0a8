//! Watching the monitor (issue 18): a real Prometheus scrapes a monitor and a node that ships
//! its events to it, and sees the events arrive per node, the search index catch up, and the
//! node's log link up; and every metric the Grafana dashboard queries exists on a cluster with
//! a monitor.

use std::process::Command;
use std::time::Duration;

use crate::cluster::Cluster;
use crate::common::wait_metrics;
use crate::common::{fubar, http_get, metric, Broker, DataDir, Proc};
use crate::observe::{mosquitto_sub, publish, Prometheus};

const WAIT: Duration = Duration::from_secs(60);
const MONITOR: &str = "monitor@localhost";

/// The monitor of `cluster`, without MQTT, with its HTTP endpoint; returns it with its
/// cluster port.
fn monitor(cluster: &Cluster) -> (Broker, u16) {
    let mut cmd = fubar();
    cmd.args(["monitor", "--no-mqtt", "--name", MONITOR, "--data-dir"])
        .arg(cluster.path())
        .arg("--config")
        .arg(cluster.path().join("cluster.toml"))
        .args([
            "--bind",
            "127.0.0.1",
            "--cluster-port",
            "0",
            "--http-port",
            "0",
        ])
        .args(["--log-stdout", "warning,info"]);
    let m = Broker::spawn(
        cmd,
        DataDir::Shared(cluster.path().to_owned()),
        "ready (no MQTT",
    );
    let port = m.collecting_port();
    (m, port)
}

#[test]
fn a_real_prometheus_sees_the_monitor_take_in_a_nodes_events() {
    let cluster = Cluster::new();
    let (monitor, port) = monitor(&cluster);
    let node = cluster.start(
        "shipper",
        &format!("{MONITOR}:{port}"),
        &["--http-port", "0"],
    );
    node.broker
        .wait_for_log("shipping logs to the monitor", WAIT)
        .expect("the node ships to the monitor");
    let Some(prometheus) = Prometheus::start(&[monitor.http(), node.broker.http()]) else {
        return;
    };
    prometheus.wait_for("sum(up{job=\"fubar\"})", 2.0);
    // A client's visit makes `access` events on the node, shipped to the monitor.
    let out = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &node.broker.port().to_string()])
        .args(["-i", "visitor", "-t", "t", "-m", "x"])
        .output()
        .expect("mosquitto_pub");
    assert!(out.status.success(), "{out:?}");
    let ingested = "fubar_monitor_ingested_events_total{node=\"shipper@localhost\"}";
    prometheus.wait_above(ingested, 0.0);
    prometheus.wait_for("fubar_log_ship_connected", 1.0);
    prometheus.wait_above("fubar_log_ship_batches_total", 0.0);
    prometheus.wait_for(
        "fubar_monitor_link_connected{node=\"shipper@localhost\"}",
        1.0,
    );
    prometheus.wait_above("fubar_monitor_index_documents", 0.0);
    prometheus.wait_above("fubar_monitor_index_bytes", 0.0);
    prometheus.wait_above("fubar_monitor_index_lag_seconds_count", 0.0);
    prometheus.wait_for(
        "fubar_monitor_duplicate_events_total{node=\"shipper@localhost\"}",
        0.0,
    );
    prometheus.wait_for(
        "fubar_monitor_lost_events_total{node=\"shipper@localhost\"}",
        0.0,
    );
    // Once the monitor has acknowledged everything, nothing is left to ship.
    prometheus.wait_for("fubar_log_ship_backlog_bytes", 0.0);
}

#[test]
fn every_metric_the_grafana_dashboard_queries_exists() {
    let dashboard: serde_json::Value = serde_json::from_str(include_str!(
        "../../../contrib/grafana/fubar-dashboard.json"
    ))
    .expect("the dashboard is JSON");
    // A monitor and two nodes, one forwarding a message to the other: every family shows.
    let cluster = Cluster::new();
    let (monitor, port) = monitor(&cluster);
    let master = format!("{MONITOR}:{port}");
    let d1 = cluster.start("d1", &master, &["--http-port", "0"]);
    let d2 = cluster.start("d2", &master, &["--http-port", "0"]);
    for d in [&d1, &d2] {
        d.broker
            .wait_for_log("joined the cluster", WAIT)
            .expect("joined");
    }
    let sub = Proc::spawn(&mut mosquitto_sub(&d2.broker, "dash/#", 1));
    cluster.wait_routes("d1@localhost", 1);
    publish(&d1.broker, "dash/x", 1);
    assert_eq!(String::from_utf8_lossy(&sub.output().stdout), "dash/x m0\n");
    wait_metrics(d1.broker.http(), "a link with a round-trip time", |t| {
        metric(
            t,
            "fubar_cluster_link_forwarded_messages_total{member=\"d2@localhost\"}",
        ) == Some(1.0)
            && t.contains("fubar_cluster_link_rtt_seconds{")
    });
    wait_metrics(monitor.http(), "events in the index", |t| {
        metric(t, "fubar_monitor_index_lag_seconds_count").is_some_and(|n| n > 0.0)
    });
    let texts: Vec<String> = [monitor.http(), d1.broker.http(), d2.broker.http()]
        .into_iter()
        .map(|addr| http_get(addr, "/metrics").1)
        .collect();
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for name in expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("fubar_"))
            {
                let exists = texts.iter().flat_map(|t| t.lines()).any(|l| {
                    l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{"))
                });
                assert!(
                    exists,
                    "the dashboard queries {name}, which no node's /metrics has"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 40, "{checked}");
}
