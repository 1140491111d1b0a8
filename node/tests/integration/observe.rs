//! Watching a node (issue 18): `/metrics` read by a real Prometheus, `/healthz`, `/readyz`,
//! and the `$SYS` topics through mosquitto_sub (the monitor and the Grafana dashboard's
//! queries: `observe_monitor`).

use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::cluster::Cluster;
use crate::common::{eventually, http_get, metric, wait_metrics, Broker, Proc};

const WAIT: Duration = Duration::from_secs(60);

/// `mosquitto_sub` on `broker`, printing topic and payload (`-v`), until `count` messages.
pub(crate) fn mosquitto_sub(broker: &Broker, filter: &str, count: usize) -> Command {
    let mut cmd = Command::new("mosquitto_sub");
    cmd.args(["-h", "127.0.0.1", "-p", &broker.port().to_string()])
        .args(["-t", filter, "-v", "-C", &count.to_string(), "-W", "60"]);
    cmd
}

/// Publishes `n` QoS 1 messages to `topic` with mosquitto_pub (one connection each).
pub(crate) fn publish(broker: &Broker, topic: &str, n: usize) {
    for i in 0..n {
        let out = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &broker.port().to_string()])
            .args(["-t", topic, "-m", &format!("m{i}"), "-q", "1"])
            .output()
            .expect("mosquitto_pub");
        assert!(out.status.success(), "{out:?}");
    }
}

#[test]
fn metrics_count_connections_and_publishes_and_probes_answer() {
    let broker = Broker::start_with(&["--http-port", "0"], "");
    let http = broker.http();
    assert_eq!(http.ip().to_string(), "127.0.0.1", "loopback by default");
    assert_eq!(http_get(http, "/healthz"), (200, "ok\n".into()));
    assert_eq!(http_get(http, "/readyz"), (200, "ready\n".into()));
    assert_eq!(http_get(http, "/nothing").0, 404);
    let sub = Proc::spawn(&mut mosquitto_sub(&broker, "obs/#", 3));
    wait_metrics(http, "1 subscription", |t| {
        metric(t, "fubar_subscriptions") == Some(1.0)
            && metric(t, "fubar_connections{listener=\"mqtt\"}") == Some(1.0)
            && metric(
                t,
                "fubar_clients_connected{listener=\"mqtt\",protocol=\"3.1.1\"}",
            ) == Some(1.0)
    });
    publish(&broker, "obs/a", 3);
    let out = sub.output();
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);
    let text = wait_metrics(http, "3 received and 3 sent", |t| {
        metric(t, "fubar_publish_received_total{qos=\"1\"}") == Some(3.0)
            // mosquitto_sub subscribes at QoS 0: the copies go out at QoS 0.
            && metric(t, "fubar_publish_sent_total{qos=\"0\"}") == Some(3.0)
            && metric(t, "fubar_connections{listener=\"mqtt\"}") == Some(0.0)
    });
    assert_eq!(metric(&text, "fubar_connections_accepted_total"), Some(4.0));
    assert!(metric(&text, "fubar_received_bytes_total").unwrap() > 0.0);
    assert!(metric(&text, "fubar_sent_bytes_total").unwrap() > 0.0);
    assert!(metric(&text, "fubar_log_events_total{class=\"access\"}").unwrap() > 0.0);
    // mosquitto_pub and mosquitto_sub speak 3.1.1 unless told otherwise.
    assert_eq!(
        metric(&text, "fubar_connects_accepted_total{protocol=\"3.1.1\"}"),
        Some(4.0)
    );
    assert_eq!(
        metric(&text, "fubar_connect_duration_seconds_count"),
        Some(4.0)
    );
    assert_eq!(
        metric(&text, "fubar_connect_duration_seconds_bucket{le=\"+Inf\"}"),
        Some(4.0)
    );
    assert!(metric(&text, "fubar_store_fsync_duration_seconds_count").is_some());
    // Each mosquitto_pub's one PUBLISH is the first of its connection: every one is sampled.
    assert_eq!(
        metric(&text, "fubar_delivery_latency_seconds_count"),
        Some(3.0)
    );
    assert_eq!(
        metric(
            &text,
            "fubar_clients_connected{listener=\"mqtt\",protocol=\"3.1.1\"}"
        ),
        Some(0.0)
    );
    // A message nobody subscribed to is dropped, and counted so.
    publish(&broker, "nobody/listens", 1);
    wait_metrics(http, "a drop for no subscriber", |t| {
        metric(t, "fubar_messages_dropped_total{reason=\"no_subscriber\"}") == Some(1.0)
    });
}

#[test]
fn refused_connects_are_counted_by_reason() {
    let broker = Broker::start_with(&["--http-port", "0", "--auth"], "");
    let out = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &broker.port().to_string()])
        .args(["-u", "nobody", "-P", "wrong", "-t", "t", "-m", "x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = wait_metrics(broker.http(), "a refused CONNECT", |t| {
        t.lines()
            .any(|l| l.starts_with("fubar_connects_refused_total{reason="))
    });
    let line = text
        .lines()
        .find(|l| l.starts_with("fubar_connects_refused_total{reason="))
        .unwrap();
    assert!(line.ends_with(" 1"), "{line}");
}

#[test]
fn sys_topics_reach_mosquitto_sub_and_clients_cannot_publish_there() {
    let broker = Broker::start_with(&[], "[sys]\ninterval_secs = 1\n");
    let out = Proc::spawn(&mut mosquitto_sub(&broker, "$SYS/broker/#", 40)).output();
    let text = String::from_utf8_lossy(&out.stdout);
    for topic in [
        "$SYS/broker/version fubar version ",
        "$SYS/broker/uptime ",
        "$SYS/broker/clients/connected ",
        "$SYS/broker/clients/total ",
        "$SYS/broker/messages/received ",
        "$SYS/broker/messages/sent ",
        "$SYS/broker/bytes/received ",
        "$SYS/broker/bytes/sent ",
        "$SYS/broker/subscriptions/count ",
        "$SYS/broker/retained messages/count ",
        "$SYS/broker/load/messages/received/1min ",
        "$SYS/broker/load/messages/received/5min ",
        "$SYS/broker/load/messages/received/15min ",
    ] {
        assert!(text.contains(topic), "no {topic:?} in\n{text}");
    }
    // `#` does not match $SYS: a retained $SYS message would come at once, the one normal
    // retained message does.
    let plain = Command::new("mosquitto_pub")
        .args([
            "-p",
            &broker.port().to_string(),
            "-t",
            "plain",
            "-m",
            "x",
            "-r",
        ])
        .output()
        .unwrap();
    assert!(plain.status.success());
    let out = Proc::spawn(&mut mosquitto_sub(&broker, "#", 1)).output();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "plain x\n");
    // A client's PUBLISH under $SYS/ is refused like a bad topic, with a warning event.
    let _ = Command::new("mosquitto_pub")
        .args(["-p", &broker.port().to_string(), "-t", "$SYS/broker/uptime"])
        .args(["-m", "forged", "-q", "1"])
        .output()
        .unwrap();
    broker
        .wait_for_log("the $SYS/ topics are the broker's own", WAIT)
        .expect("a warning names the refusal");
}

#[test]
fn readyz_is_503_until_a_cluster_node_has_joined() {
    let cluster = Cluster::new();
    // Nothing listens at the master's port: this node never joins.
    let free = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("nobody@localhost:{}", free.local_addr().unwrap().port());
    let lonely = cluster.start("lonely", &nowhere, &["--http-port", "0"]);
    let (status, body) = http_get(lonely.broker.http(), "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(
        body == "not joined to the cluster yet\n" || body == "no cluster leader known\n",
        "{body:?}"
    );
    assert_eq!(http_get(lonely.broker.http(), "/healthz").0, 200);
    // A founder is ready once it leads its cluster.
    let founder = cluster.start("founder", "founder@localhost", &["--http-port", "0"]);
    let http = founder.broker.http();
    eventually("the founder to be ready", WAIT, || {
        let (status, body) = http_get(http, "/readyz");
        if status == 200 {
            Ok(())
        } else {
            Err(format!("{status} {body}"))
        }
    });
    let text = wait_metrics(http, "a leader", |t| {
        metric(t, "fubar_cluster_is_leader") == Some(1.0)
    });
    assert_eq!(metric(&text, "fubar_cluster_leader_known"), Some(1.0));
    assert!(metric(&text, "fubar_cluster_term").unwrap() >= 1.0);
}

/// A free TCP port on loopback (closed again, for a process that binds it itself).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real Prometheus server scraping `targets` every second, on a free loopback port.
pub(crate) struct Prometheus {
    _proc: Proc,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// `None` (and the reason on stderr) when Debian's `prometheus` is not installed.
    pub(crate) fn start(targets: &[SocketAddr]) -> Option<Self> {
        if Command::new("prometheus")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!(
                "skipped: no `prometheus` binary (Debian's prometheus package; scripts/test.sh installs it)"
            );
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: fubar\n    static_configs:\n      - targets: [{}]\n",
            list.join(", ")
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let proc = Proc::spawn(
            Command::new("prometheus")
                .arg(format!("--config.file={}", config_path.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        Some(Self {
            _proc: proc,
            addr,
            _dir: dir,
        })
    }

    /// The single value of an instant `query`, once Prometheus answers with one.
    fn value(&self, query: &str) -> Option<f64> {
        let encoded: String = query
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        std::net::TcpStream::connect(self.addr).ok()?;
        let (status, body) = http_get(self.addr, &format!("/api/v1/query?query={encoded}"));
        if status != 200 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }

    /// Waits until `query` equals `want`.
    pub(crate) fn wait_for(&self, query: &str, want: f64) {
        self.wait_until(query, &format!("{want}"), |v| v == want);
    }

    /// Waits until `query` is above `floor`.
    pub(crate) fn wait_above(&self, query: &str, floor: f64) {
        self.wait_until(query, &format!("above {floor}"), |v| v > floor);
    }

    fn wait_until(&self, query: &str, what: &str, pred: impl Fn(f64) -> bool) {
        eventually(&format!("{query} {what}"), Duration::from_secs(120), || {
            let got = self.value(query);
            if got.is_some_and(&pred) {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        });
    }
}

#[test]
fn a_real_prometheus_scrapes_a_node() {
    let broker = Broker::start_with(&["--http-port", "0"], "");
    let Some(prometheus) = Prometheus::start(&[broker.http()]) else {
        return;
    };
    prometheus.wait_for("up{job=\"fubar\"}", 1.0);
    let sub1 = Proc::spawn(&mut mosquitto_sub(&broker, "prom/#", 4));
    let sub2 = Proc::spawn(&mut mosquitto_sub(&broker, "prom/#", 4));
    prometheus.wait_for("sum(fubar_connections)", 2.0);
    prometheus.wait_for("fubar_subscriptions", 2.0);
    publish(&broker, "prom/t", 4);
    assert_eq!(
        String::from_utf8_lossy(&sub1.output().stdout)
            .lines()
            .count(),
        4
    );
    assert_eq!(
        String::from_utf8_lossy(&sub2.output().stdout)
            .lines()
            .count(),
        4
    );
    prometheus.wait_for("sum(fubar_publish_received_total)", 4.0);
    // Published at QoS 1 to subscriptions at QoS 0 (mosquitto_sub's default).
    prometheus.wait_for("fubar_publish_received_total{qos=\"1\"}", 4.0);
    prometheus.wait_for("fubar_publish_sent_total{qos=\"0\"}", 8.0);
    prometheus.wait_for("sum(fubar_connections)", 0.0);
}

#[test]
fn a_real_prometheus_scrapes_every_node_of_a_cluster() {
    let cluster = Cluster::new();
    let a = cluster.start("pa", "pa@localhost", &["--http-port", "0"]);
    a.broker
        .wait_for_log("cluster founded", WAIT)
        .expect("founded");
    let b = cluster.start("pb", &a.address(), &["--http-port", "0"]);
    let c = cluster.start("pc", &a.address(), &["--http-port", "0"]);
    for m in [&b, &c] {
        m.broker
            .wait_for_log("joined the cluster", WAIT)
            .expect("joined");
    }
    let targets = [a.broker.http(), b.broker.http(), c.broker.http()];
    let Some(prometheus) = Prometheus::start(&targets) else {
        return;
    };
    prometheus.wait_for("sum(up{job=\"fubar\"})", 3.0);
    prometheus.wait_for("sum(fubar_cluster_is_leader)", 1.0);
    prometheus.wait_for("sum(fubar_cluster_leader_known)", 3.0);
    prometheus.wait_for("min(fubar_cluster_members{state=\"up\"})", 3.0);
    // A subscriber on pb, a publisher on pc: counted on each side.
    let sub = Proc::spawn(&mut mosquitto_sub(&b.broker, "across/#", 2));
    prometheus.wait_for("sum(fubar_subscriptions)", 1.0);
    cluster.wait_routes("pc@localhost", 1);
    publish(&c.broker, "across/x", 2);
    assert_eq!(
        String::from_utf8_lossy(&sub.output().stdout)
            .lines()
            .count(),
        2
    );
    prometheus.wait_for("sum(fubar_publish_received_total)", 2.0);
    prometheus.wait_for("sum(fubar_publish_sent_total)", 2.0);
    // Every node is scraped, and pc's link to pb shows what it carried.
    prometheus.wait_for("count(fubar_build_info)", 3.0);
    prometheus.wait_for(
        "sum(fubar_cluster_link_forwarded_messages_total{member=\"pb@localhost\"})",
        2.0,
    );
    prometheus.wait_above(
        "sum(fubar_cluster_link_forwarded_bytes_total{member=\"pb@localhost\"})",
        2.0 * "across/x".len() as f64,
    );
    prometheus.wait_for(
        "count(fubar_cluster_link_rtt_seconds{member=\"pb@localhost\"} > 0)",
        1.0,
    );
    prometheus.wait_for("sum(fubar_cluster_link_queued_messages)", 0.0);
    prometheus.wait_for("sum(fubar_cluster_link_unacked_messages)", 0.0);
    prometheus.wait_for("sum(fubar_cluster_link_dropped_messages_total)", 0.0);
    prometheus.wait_for("count(fubar_cluster_leader)", 3.0);
    prometheus.wait_for("sum(fubar_cluster_member_up)", 9.0);
    prometheus.wait_above("min(fubar_cluster_last_log_index)", 0.0);
    // Each member spools its events for a monitor (none here): the spool is there.
    prometheus.wait_for("count(fubar_log_spool_bytes)", 3.0);
}
