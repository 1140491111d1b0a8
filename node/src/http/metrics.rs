//! `GET /metrics`: every figure of the node in Prometheus text, read live at each scrape.
//!
//! One `Collector` reads the broker's counters and snapshots when Prometheus asks: nothing is
//! copied between scrapes, so a gauge is always the live value and a counter is the broker's
//! own (never reset within a run). Names start with `fubar_` and carry their unit.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::broker::Broker;

/// The registry `/metrics` encodes: the node's collector under the `fubar_` prefix.
pub(super) fn registry(broker: Arc<Broker>) -> Registry {
    let mut registry = Registry::with_prefix("fubar");
    registry.register_collector(Box::new(NodeCollector { broker }));
    registry
}

/// The registry in Prometheus text format (version 0.0.4).
pub fn render(registry: &Registry) -> Result<String, fmt::Error> {
    let mut text = String::with_capacity(16 * 1024);
    prometheus_client::encoding::prometheus_text::encode(&mut text, registry)?;
    Ok(text)
}

/// Reads the broker at each scrape.
#[derive(Debug)]
struct NodeCollector {
    broker: Arc<Broker>,
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

fn gauge(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    v: impl EncodeGaugeValue,
) -> fmt::Result {
    enc.encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&v)
}

/// A counter; the encoder adds `_total` to its name.
fn counter(enc: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: u64) -> fmt::Result {
    enc.encode_descriptor(name, help, None, MetricType::Counter)?
        .encode_counter::<NoLabelSet, _, u64>(&v, None)
}

/// A counter with one label, one series per `(label value, count)`.
fn counters(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    label: &str,
    series: &[(&str, u64)],
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, n) in series {
        m.encode_family(&[(label, *value)])?
            .encode_counter::<NoLabelSet, _, u64>(n, None)?;
    }
    Ok(())
}

/// A gauge with one label.
fn gauges(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    label: &str,
    series: &[(&str, u64)],
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (value, n) in series {
        m.encode_family(&[(label, *value)])?.encode_gauge(n)?;
    }
    Ok(())
}

const QOS: [&str; 3] = ["0", "1", "2"];

/// A histogram of durations, in seconds.
fn histogram(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    h: &fubar_store::timing::HistogramSnapshot,
) -> fmt::Result {
    enc.encode_descriptor(name, help, None, MetricType::Histogram)?
        .encode_histogram::<NoLabelSet>(h.sum_seconds, h.count, &h.buckets, None)
}

impl Collector for NodeCollector {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> fmt::Result {
        let b = &self.broker;
        let settings = b.settings();
        let node = settings.node.name.as_str();
        let version = env!("CARGO_PKG_VERSION");
        enc.encode_descriptor(
            "build",
            "The node's name and fubar version (always 1).",
            None,
            MetricType::Info,
        )?
        .encode_info(&[("node", node), ("version", version)])?;
        gauge(
            &mut enc,
            "uptime_seconds",
            "Seconds since the node started.",
            b.started.elapsed().as_secs_f64(),
        )?;
        self.encode_mqtt(&mut enc)?;
        self.encode_process(&mut enc)?;
        self.encode_cluster(&mut enc)?;
        self.encode_logs(&mut enc)?;
        self.encode_monitor(&mut enc)
    }
}

impl NodeCollector {
    fn encode_mqtt(&self, enc: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let b = &self.broker;
        let s = &b.stats;
        let open = load(&s.connections);
        let tls = load(&s.connections_tls);
        gauges(
            enc,
            "connections",
            "MQTT connections open now, by listener.",
            "listener",
            &[("mqtt", open.saturating_sub(tls)), ("mqtts", tls)],
        )?;
        counter(
            enc,
            "connections_accepted",
            "MQTT connections accepted since start.",
            load(&s.connections_total),
        )?;
        counters(
            enc,
            "connections_refused",
            "MQTT connections closed at accept, by reason.",
            "reason",
            &[("max_connections", load(&s.connections_refused))],
        )?;
        counters(
            enc,
            "tls_handshake_failures",
            "TLS handshakes on the MQTT over TLS listener that did not complete, by reason.",
            "reason",
            &[
                ("failed", load(&s.tls_handshakes_failed)),
                ("timeout", load(&s.tls_handshakes_timed_out)),
            ],
        )?;
        let by_protocol = &s.connects_by_protocol;
        counters(
            enc,
            "connects_accepted",
            "CONNECTs accepted, by MQTT protocol version.",
            "protocol",
            &[
                ("3.1", load(&by_protocol[0])),
                ("3.1.1", load(&by_protocol[1])),
                ("5.0", load(&by_protocol[2])),
            ],
        )?;
        counters(
            enc,
            "connects_refused",
            "CONNECTs refused (CONNACK with an error), by reason; bad credentials are auth failures.",
            "reason",
            &s.connects_refused(),
        )?;
        counter(
            enc,
            "accepts_delayed",
            "Accepted connections held back by mqtt.max_connections_per_sec.",
            load(&s.accepts_delayed),
        )?;
        counter(
            enc,
            "clients_throttled",
            "Connections whose reading was paused at least once by mqtt.max_messages_per_sec.",
            load(&s.clients_throttled),
        )?;
        histogram(
            enc,
            "connect_duration_seconds",
            "Time from a CONNECT read to its CONNACK queued, password check included (accepted ones).",
            &s.connect_times.snapshot(),
        )?;
        if let Some(store) = &b.store {
            histogram(
                enc,
                "store_fsync_duration_seconds",
                "Time each group commit's fsync of the store's journal took.",
                &store.fsync_times(),
            )?;
        }
        gauge(
            enc,
            "sessions",
            "Sessions on this node, online and offline persistent ones.",
            b.registry.len() as u64,
        )?;
        gauge(
            enc,
            "subscriptions",
            "Subscriptions (filter, session) on this node.",
            b.router.subscription_count() as u64,
        )?;
        gauge(
            enc,
            "retained_messages",
            "Topics with a retained message.",
            b.retained.len() as u64,
        )?;
        gauge(
            enc,
            "offline_queued_bytes",
            "Bytes queued for persistent sessions whose client is away.",
            b.registry.offline_budget().used() as u64,
        )?;
        counter(
            enc,
            "offline_queue_refused",
            "Messages not queued for an away client because session.max_offline_queued_bytes was reached.",
            b.registry.offline_budget().refused_total(),
        )?;
        let by_qos = |a: &[AtomicU64; 3]| -> [(&str, u64); 3] {
            [
                (QOS[0], load(&a[0])),
                (QOS[1], load(&a[1])),
                (QOS[2], load(&a[2])),
            ]
        };
        counters(
            enc,
            "publish_received",
            "PUBLISH packets routed (from clients and wills), by QoS.",
            "qos",
            &by_qos(&s.messages_in_by_qos),
        )?;
        counters(
            enc,
            "publish_sent",
            "PUBLISH packets written to subscribers, by QoS.",
            "qos",
            &by_qos(&s.messages_out_by_qos),
        )?;
        counter(
            enc,
            "received_bytes",
            "Bytes read from MQTT connections.",
            load(&s.bytes_in),
        )?;
        counter(
            enc,
            "sent_bytes",
            "Bytes written to MQTT connections.",
            load(&s.bytes_out),
        )?;
        counters(
            enc,
            "messages_dropped",
            "Messages dropped before delivery, by reason.",
            "reason",
            &[
                ("queue_full", load(&s.messages_dropped)),
                ("expired", load(&s.messages_expired)),
            ],
        )?;
        gauge(
            enc,
            "memory_alarm",
            "1 while the memory alarm is on (memory.high_watermark passed), else 0.",
            u64::from(b.memory.is_on()),
        )
    }

    fn encode_process(&self, enc: &mut DescriptorEncoder<'_>) -> fmt::Result {
        gauge(
            enc,
            "process_resident_memory_bytes",
            "Resident memory of the node's process.",
            crate::process_memory::resident_bytes(),
        )?;
        if let Some(cpu) = super::process::cpu_seconds() {
            enc.encode_descriptor(
                "process_cpu_seconds",
                "CPU time (user and system) the node's process has used.",
                None,
                MetricType::Counter,
            )?
            .encode_counter::<NoLabelSet, _, f64>(&cpu, None)?;
        }
        if let Some(n) = super::process::open_files() {
            gauge(
                enc,
                "process_open_fds",
                "File descriptors the node's process has open.",
                n,
            )?;
        }
        if let Some(n) = super::process::max_files() {
            gauge(
                enc,
                "process_max_fds",
                "The most file descriptors the node's process may open.",
                n,
            )?;
        }
        Ok(())
    }

    fn encode_cluster(&self, enc: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let Some(member) = self.broker.member.get() else {
            return Ok(());
        };
        let status = member.status();
        let up = status
            .members
            .iter()
            .filter(|m| m.link == "up" || m.link == "self")
            .count() as u64;
        let total = status.members.len() as u64;
        gauges(
            enc,
            "cluster_members",
            "Members of the cluster as this node sees them, by link state.",
            "state",
            &[("up", up), ("down", total - up)],
        )?;
        gauge(
            enc,
            "cluster_term",
            "The Raft term this node knows.",
            status.term,
        )?;
        gauge(
            enc,
            "cluster_applied_index",
            "The last Raft log index applied on this node.",
            status.applied,
        )?;
        gauge(
            enc,
            "cluster_leader_known",
            "1 when this node knows a cluster leader, else 0.",
            u64::from(status.leader.is_some()),
        )?;
        gauge(
            enc,
            "cluster_is_leader",
            "1 when this node is the cluster leader, else 0.",
            u64::from(member.is_leader()),
        )?;
        gauge(
            enc,
            "cluster_routes",
            "Routes (filter, node) in this node's copy of the cluster state.",
            status.routes,
        )?;
        gauge(
            enc,
            "cluster_clients",
            "Client ids in this node's copy of the cluster registry.",
            status.clients,
        )?;
        gauge(
            enc,
            "cluster_pending_proposals",
            "Changes proposed to the replicated state and not applied yet.",
            status.pending,
        )?;
        let lags: Vec<(String, u64)> = status
            .members
            .iter()
            .filter_map(|m| Some((m.name.clone(), m.lag?)))
            .collect();
        if !lags.is_empty() {
            let mut m = enc.encode_descriptor(
                "cluster_replication_lag_entries",
                "Raft log entries a member is behind the leader (on the leader only).",
                None,
                MetricType::Gauge,
            )?;
            for (name, lag) in &lags {
                m.encode_family(&[("member", name.as_str())])?
                    .encode_gauge(lag)?;
            }
        }
        Ok(())
    }

    fn encode_logs(&self, enc: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let Some(logs) = self.broker.logs.get() else {
            return Ok(());
        };
        let classes = logs.list();
        let names: Vec<String> = classes.iter().map(|c| c.class.to_string()).collect();
        let series = |f: &dyn Fn(&fubar_logs::ClassStatus) -> u64| -> Vec<(&str, u64)> {
            names
                .iter()
                .zip(&classes)
                .map(|(n, c)| (n.as_str(), f(c)))
                .collect()
        };
        counters(
            enc,
            "log_events",
            "Log events written, by class.",
            "class",
            &series(&|c| c.events),
        )?;
        counters(
            enc,
            "log_events_dropped",
            "Log events dropped because the log channel was full, by class.",
            "class",
            &series(&|c| c.dropped),
        )?;
        gauges(
            enc,
            "log_segment_bytes",
            "Bytes in the log segment files on disk, by class.",
            "class",
            &series(&|c| c.bytes),
        )
    }

    fn encode_monitor(&self, enc: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let Some(monitor) = self.broker.monitor.get() else {
            return Ok(());
        };
        let links = monitor.server.stats();
        let names: Vec<&str> = links.iter().map(|l| l.node.as_str()).collect();
        let per_node = |f: &dyn Fn(usize) -> u64| -> Vec<(&str, u64)> {
            names.iter().enumerate().map(|(i, n)| (*n, f(i))).collect()
        };
        counters(
            enc,
            "monitor_ingested_events",
            "Events the monitor has received from each node.",
            "node",
            &per_node(&|i| links[i].counts.events),
        )?;
        counters(
            enc,
            "monitor_duplicate_events",
            "Events received again (resends) from each node, written once.",
            "node",
            &per_node(&|i| links[i].counts.duplicates),
        )?;
        counters(
            enc,
            "monitor_lost_events",
            "Events a node's sequence numbers say were lost before they reached the monitor.",
            "node",
            &per_node(&|i| links[i].counts.lost),
        )?;
        gauge(
            enc,
            "monitor_index_documents",
            "Events in the monitor's search index.",
            monitor.index.num_docs(),
        )?;
        // Last: a node that has shipped nothing yet has no lag to show.
        let mut m = enc.encode_descriptor(
            "monitor_link_lag_milliseconds",
            "How far behind a node's last shipped batch is (its wall clock to the monitor's), by node.",
            None,
            MetricType::Gauge,
        )?;
        for link in &links {
            if let Some(lag) = link.lag_ms {
                m.encode_family(&[("node", link.node.as_str())])?
                    .encode_gauge(&lag)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;

    fn scrape(broker: &Arc<Broker>) -> String {
        render(&registry(broker.clone())).unwrap()
    }

    fn value(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .parse()
            .unwrap()
    }

    #[test]
    fn mqtt_families_read_the_live_counters() {
        let broker = Arc::new(Broker::new(Settings::default(), None).unwrap());
        let s = &broker.stats;
        s.connections.store(3, Ordering::Relaxed);
        s.connections_tls.store(1, Ordering::Relaxed);
        s.messages_in_by_qos[1].store(5, Ordering::Relaxed);
        s.messages_out_by_qos[0].store(8, Ordering::Relaxed);
        s.bytes_in.store(1000, Ordering::Relaxed);
        s.messages_dropped.store(2, Ordering::Relaxed);
        s.tls_handshakes_timed_out.store(6, Ordering::Relaxed);
        let text = scrape(&broker);
        assert_eq!(value(&text, "fubar_connections{listener=\"mqtt\"}"), 2.0);
        assert_eq!(value(&text, "fubar_connections{listener=\"mqtts\"}"), 1.0);
        assert_eq!(value(&text, "fubar_publish_received_total{qos=\"1\"}"), 5.0);
        assert_eq!(value(&text, "fubar_publish_sent_total{qos=\"0\"}"), 8.0);
        assert_eq!(value(&text, "fubar_received_bytes_total"), 1000.0);
        assert_eq!(
            value(&text, "fubar_messages_dropped_total{reason=\"queue_full\"}"),
            2.0
        );
        assert_eq!(value(&text, "fubar_memory_alarm"), 0.0);
        assert_eq!(
            value(
                &text,
                "fubar_tls_handshake_failures_total{reason=\"timeout\"}"
            ),
            6.0
        );
        // A gauge is the live value, not a copy taken at the first scrape.
        s.connections.store(0, Ordering::Relaxed);
        s.connections_tls.store(0, Ordering::Relaxed);
        let text = scrape(&broker);
        assert_eq!(value(&text, "fubar_connections{listener=\"mqtt\"}"), 0.0);
    }

    #[test]
    fn every_family_has_help_and_the_prefix() {
        let broker = Arc::new(Broker::new(Settings::default(), None).unwrap());
        let text = scrape(&broker);
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("fubar_"), "{line}");
            let name = line.split(['{', ' ']).next().unwrap();
            let family = ["_total", "_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(name);
            assert!(
                text.contains(&format!("# HELP {name} "))
                    || text.contains(&format!("# HELP {family} ")),
                "{name} has no HELP"
            );
        }
    }

    #[test]
    fn process_families_are_there() {
        let broker = Arc::new(Broker::new(Settings::default(), None).unwrap());
        let text = scrape(&broker);
        assert!(value(&text, "fubar_process_resident_memory_bytes") > 0.0);
        assert!(value(&text, "fubar_process_open_fds") > 0.0);
        assert!(value(&text, "fubar_uptime_seconds") >= 0.0);
    }
}
