//! `GET /metrics`: every figure of the node in Prometheus text, read live at each scrape.
//!
//! One `Collector` reads the broker's counters and snapshots when Prometheus asks: nothing is
//! copied between scrapes, so a gauge is always the live value and a counter is the broker's
//! own (never reset within a run). Names start with `fubar_` and carry their unit.

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::cluster_metrics::encode_cluster;
use super::encode::{counter, counters, durations, gauge, gauges, load};
use super::log_metrics::{encode_logs, encode_monitor, encode_shipping};
use crate::admin::NodeContext;
use crate::broker::online::PROTOCOLS;
#[cfg(test)]
use crate::broker::Broker;

/// The registry `/metrics` encodes: the node's collector under the `fubar_` prefix.
pub(super) fn registry(node: Arc<NodeContext>) -> Registry {
    let mut registry = Registry::with_prefix("fubar");
    registry.register_collector(Box::new(NodeCollector { node }));
    registry
}

/// The registry in Prometheus text format (version 0.0.4).
pub fn render(registry: &Registry) -> Result<String, fmt::Error> {
    let mut text = String::with_capacity(16 * 1024);
    prometheus_client::encoding::prometheus_text::encode(&mut text, registry)?;
    Ok(text)
}

/// Reads the broker and the node's other parts at each scrape.
#[derive(Debug)]
struct NodeCollector {
    node: Arc<NodeContext>,
}

const QOS: [&str; 3] = ["0", "1", "2"];

impl Collector for NodeCollector {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> fmt::Result {
        let b = &self.node.broker;
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
        self.encode_messages(&mut enc)?;
        self.encode_store(&mut enc)?;
        self.encode_process(&mut enc)?;
        if let Some(member) = self.node.member.as_ref() {
            encode_cluster(&mut enc, member)?;
        }
        if let Some(logs) = self.node.logs.as_ref() {
            encode_logs(&mut enc, logs)?;
        }
        if let Some(shipping) = self.node.shipping.as_ref() {
            encode_shipping(&mut enc, &shipping.figures())?;
        }
        if let Some(monitor) = self.node.monitor.as_ref() {
            encode_monitor(&mut enc, monitor)?;
        }
        Ok(())
    }
}

impl NodeCollector {
    fn encode_mqtt(&self, enc: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let b = &self.node.broker;
        let s = &b.stats;
        let open = load(&s.connections);
        let tls = load(&s.connections_tls);
        gauges(
            enc,
            "connections",
            "MQTT connections open now (CONNECT sent or not), by listener (ws and wss count as mqtt).",
            "listener",
            &[("mqtt", open.saturating_sub(tls)), ("mqtts", tls)],
        )?;
        let mut m = enc.encode_descriptor(
            "clients_connected",
            "Clients connected now (CONNECT accepted), by listener and MQTT protocol version.",
            None,
            MetricType::Gauge,
        )?;
        for (listener, protocol, n) in s.online.counts() {
            m.encode_family(&[("listener", listener), ("protocol", protocol)])?
                .encode_gauge(&n)?;
        }
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
        let by_protocol: Vec<(&str, u64)> = PROTOCOLS
            .iter()
            .zip(&s.connects_by_protocol)
            .map(|(p, n)| (*p, load(n)))
            .collect();
        counters(
            enc,
            "connects_accepted",
            "CONNECTs accepted, by MQTT protocol version.",
            "protocol",
            &by_protocol,
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
        durations(
            enc,
            "connect_duration_seconds",
            "Time from a CONNECT read to its CONNACK queued, password check included (accepted ones).",
            &s.connect_times.snapshot(),
        )?;
        let sessions = b.registry.len() as u64;
        gauge(
            enc,
            "sessions",
            "Sessions on this node, online and offline persistent ones.",
            sessions,
        )?;
        gauge(
            enc,
            "sessions_offline",
            "Persistent sessions on this node whose client is away.",
            sessions.saturating_sub(s.online.total()),
        )?;
        gauge(
            enc,
            "subscriptions",
            "Subscriptions (filter, session) on this node.",
            b.router.subscription_count() as u64,
        )?;
        gauge(
            enc,
            "shared_groups",
            "Share groups ($share/GROUP/FILTER) with a member on this node.",
            b.router.shared_group_count() as u64,
        )?;
        gauge(
            enc,
            "retained_messages",
            "Topics with a retained message.",
            b.retained.len() as u64,
        )?;
        gauge(
            enc,
            "memory_alarm",
            "1 while the memory alarm is on (memory.high_watermark passed), else 0.",
            u64::from(b.memory.is_on()),
        )
    }

    /// What became of the messages: in, out, dropped, waiting.
    fn encode_messages(&self, enc: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let b = &self.node.broker;
        let s = &b.stats;
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
        let forward_full: u64 = self
            .node
            .member
            .as_ref()
            .map_or(0, |m| m.link_figures().iter().map(|(l, _)| l.dropped).sum());
        counters(
            enc,
            "messages_dropped",
            "Messages (or copies for one subscriber) dropped before delivery, by reason.",
            "reason",
            &[
                ("queue_full", load(&s.messages_dropped)),
                ("expired", load(&s.messages_expired)),
                ("no_subscriber", load(&s.messages_no_subscriber)),
                ("memory_alarm", load(&s.messages_shed)),
                ("client_max_packet_size", load(&s.messages_too_large)),
                (
                    "offline_budget",
                    b.registry.offline_budget().refused_total(),
                ),
                ("forward_queue_full", forward_full),
            ],
        )?;
        let (queued, inflight) = b.registry.queue_totals();
        gauge(
            enc,
            "queued_messages",
            "Messages waiting in the sessions of this node to be sent.",
            queued,
        )?;
        gauge(
            enc,
            "inflight_messages",
            "QoS 1/2 messages sent to clients and not acknowledged yet.",
            inflight,
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
        durations(
            enc,
            "delivery_latency_seconds",
            "Time from routing a PUBLISH to writing it for a subscriber on this node (one in http.latency_sample_every).",
            &s.delivery_latency.snapshot(),
        )
    }

    /// The store's journal: writes, fsyncs, bytes.
    fn encode_store(&self, enc: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let Some(store) = &self.node.broker.store else {
            return Ok(());
        };
        let fsyncs = store.fsync_times();
        let f = store.figures();
        durations(
            enc,
            "store_fsync_duration_seconds",
            "Time each group commit's fsync of the store's journal took.",
            &fsyncs,
        )?;
        counter(
            enc,
            "store_fsyncs",
            "Group commit fsyncs of the store's journal that succeeded.",
            fsyncs.count,
        )?;
        counter(
            enc,
            "store_fsync_failures",
            "Group commit fsyncs that failed (the writes they covered were not acknowledged).",
            f.fsync_failures,
        )?;
        counter(
            enc,
            "store_writes",
            "Writes of the message path to the store (sessions, queued messages, retained, QoS 2 state).",
            f.writes,
        )?;
        counter(
            enc,
            "store_written_bytes",
            "Key and value bytes of those writes, as they go into the journal.",
            f.written_bytes,
        )?;
        gauge(
            enc,
            "store_journal_bytes",
            "Bytes of the store's journal files on disk (each is preallocated whole).",
            f.journal_bytes,
        )?;
        gauge(
            enc,
            "store_journals",
            "Journal files of the store (the active one and those not yet flushed to tables).",
            f.journals,
        )?;
        gauge(
            enc,
            "store_disk_bytes",
            "Bytes of the whole store on disk (journal and tables).",
            f.disk_bytes,
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
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use super::*;
    use crate::broker::online::Online;
    use crate::mqtt::packet::ProtocolVersion;
    use crate::settings::Settings;

    fn scrape(broker: &Arc<Broker>) -> String {
        render(&registry(Arc::new(NodeContext::broker_only(
            broker.clone(),
        ))))
        .unwrap()
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
        let broker = Arc::new(Broker::standalone(Settings::default(), None).unwrap());
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
    fn drops_clients_and_latency_read_the_live_counters() {
        let broker = Arc::new(Broker::standalone(Settings::default(), None).unwrap());
        let s = &broker.stats;
        s.messages_no_subscriber.store(4, Ordering::Relaxed);
        s.messages_shed.store(5, Ordering::Relaxed);
        s.messages_too_large.store(6, Ordering::Relaxed);
        s.delivery_latency.record(Duration::from_millis(3));
        let ws5 = Online::count(&s.online, "ws", ProtocolVersion::V5);
        let tcp = Online::count(&s.online, "tcp", ProtocolVersion::V311);
        let text = scrape(&broker);
        for (reason, n) in [("no_subscriber", 4.0), ("memory_alarm", 5.0)] {
            let series = format!("fubar_messages_dropped_total{{reason=\"{reason}\"}}");
            assert_eq!(value(&text, &series), n);
        }
        assert_eq!(
            value(
                &text,
                "fubar_messages_dropped_total{reason=\"client_max_packet_size\"}"
            ),
            6.0
        );
        assert_eq!(
            value(
                &text,
                "fubar_clients_connected{listener=\"ws\",protocol=\"5.0\"}"
            ),
            1.0
        );
        assert_eq!(
            value(
                &text,
                "fubar_clients_connected{listener=\"mqtt\",protocol=\"3.1.1\"}"
            ),
            1.0
        );
        assert_eq!(value(&text, "fubar_delivery_latency_seconds_count"), 1.0);
        assert_eq!(
            value(&text, "fubar_delivery_latency_seconds_bucket{le=\"0.005\"}"),
            1.0
        );
        assert_eq!(value(&text, "fubar_queued_messages"), 0.0);
        drop((ws5, tcp));
        let text = scrape(&broker);
        assert_eq!(
            value(
                &text,
                "fubar_clients_connected{listener=\"ws\",protocol=\"5.0\"}"
            ),
            0.0
        );
    }

    #[test]
    fn store_families_read_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = fubar_store::Store::open(
            dir.path(),
            fubar_store::SyncMode::None,
            Duration::from_millis(1),
        )
        .unwrap();
        let broker =
            Arc::new(Broker::standalone(Settings::default(), Some(Arc::new(store))).unwrap());
        let before = value(&scrape(&broker), "fubar_store_writes_total");
        let record = fubar_store::records::StoredMessage {
            topic: "t".into(),
            payload: vec![1; 100],
            qos: 1,
            retain: true,
            properties: Default::default(),
            expires_at_ms: None,
        };
        broker
            .store
            .as_ref()
            .unwrap()
            .put_retained(&record)
            .unwrap();
        let text = scrape(&broker);
        assert_eq!(value(&text, "fubar_store_writes_total"), before + 1.0);
        assert!(value(&text, "fubar_store_written_bytes_total") >= 101.0);
        assert!(value(&text, "fubar_store_journal_bytes") > 0.0);
        assert_eq!(value(&text, "fubar_store_fsync_failures_total"), 0.0);
    }

    #[test]
    fn every_family_has_help_and_the_prefix() {
        let broker = Arc::new(Broker::standalone(Settings::default(), None).unwrap());
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
        let broker = Arc::new(Broker::standalone(Settings::default(), None).unwrap());
        let text = scrape(&broker);
        assert!(value(&text, "fubar_process_resident_memory_bytes") > 0.0);
        assert!(value(&text, "fubar_process_open_fds") > 0.0);
        assert!(value(&text, "fubar_uptime_seconds") >= 0.0);
    }
}
