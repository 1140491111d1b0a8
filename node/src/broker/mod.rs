//! The broker: listeners, connection drivers, the router, retained messages and the registry
//! of client ids.
//!
//! `Broker` is the state every connection shares. `Server` owns a bound listener and runs the
//! accept loop until its shutdown token is cancelled.

pub mod ack_gate;
pub mod acl;
pub mod auth;
pub mod client_owner;
pub mod cluster_hooks;
mod connection;
pub mod disk_guard;
pub mod fair_checks;
pub(crate) mod limits;
mod listener;
pub mod login_throttle;
pub mod memory;
pub mod offline_budget;
pub mod online;
mod packet_log;
pub(crate) mod persist;
pub mod publish;
/// The token bucket lives in the protocol core (`fubar-mqtt`), which paces PUBLISH with it.
pub use crate::mqtt::token_bucket as rate_limit;
pub mod registry;
pub mod retained;
pub mod router;
pub mod session_end;
pub mod shared;
#[cfg(test)]
mod store_failure_tests;
pub mod sys_topics;
pub mod topic_acl;
pub mod tracer;
mod transport;
mod ws;

use parking_lot::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use fubar_store::{Store, StoreError};
use tokio_util::sync::CancellationToken;

pub use listener::Server;

use crate::mqtt::connection::Limits;
use crate::mqtt::message::Message;
use crate::mqtt::packet::{LastWill, ProtocolVersion, QoS};
use crate::settings::{self, Settings};
use acl::Acl;
use auth::Accounts;
use cluster_hooks::{ClusterHooks, LocalOnly};
use registry::Registry;
use retained::RetainedStore;
use router::{Routed, Router};

/// The settings in force, and the connection limits made from them.
#[derive(Debug)]
struct InForce {
    settings: Arc<Settings>,
    limits: Arc<Limits>,
}

impl InForce {
    fn new(settings: Settings) -> Self {
        Self {
            limits: Arc::new(settings.connection_limits()),
            settings: Arc::new(settings),
        }
    }
}

/// The state shared by every connection of a node.
#[derive(Debug)]
pub struct Broker {
    /// The node's settings and the connection limits made from them; replaced whole by a
    /// run-time change, read once per connection.
    settings: RwLock<InForce>,
    /// The preserved state (absent in unit tests).
    pub store: Option<Arc<Store>>,
    /// Accounts, for CONNECT credentials.
    pub accounts: Accounts,
    /// Address rules, checked at accept.
    pub acl: Acl,
    /// Topic rules, checked at PUBLISH, SUBSCRIBE and delivery.
    pub topic_acl: Arc<topic_acl::TopicAcl>,
    /// Client ids and topic filters followed in the `trace` class.
    pub tracer: tracer::Tracer,
    /// Above the memory high watermark.
    pub memory: memory::MemoryAlarm,
    /// The TLS listener's configuration, swapped whole by `fubar ctl ssl reload`.
    tls: RwLock<Option<Arc<rustls::ServerConfig>>>,
    /// The cluster layer as the broker sees it: `LocalOnly` on a standalone node.
    pub cluster: Arc<dyn ClusterHooks>,
    /// Copies of messages on other members that acknowledgements wait for (none on a
    /// standalone node, or without `session.replicas`).
    pub gate: Option<Arc<ack_gate::AckGate>>,
    /// The log writer's fast path for packet events (absent without a log engine: unit
    /// tests, the in-process benchmark; `tracing` then carries them).
    packet_sink: Option<fubar_logs::PacketSink>,
    /// Cancelled to stop the node (SIGTERM, `fubar ctl stop`).
    pub shutdown: CancellationToken,
    /// When the node started.
    pub started: Instant,
    /// The listeners' URLs, for status.
    listeners: RwLock<Vec<String>>,
    /// Sessions by client id.
    pub registry: Registry,
    /// Subscriptions and fan-out.
    pub router: Router,
    /// Retained messages.
    pub retained: RetainedStore,
    /// Refuses new persistent data while the data folder's disk is nearly full.
    pub disk: Arc<disk_guard::DiskGuard>,
    /// Counters.
    pub stats: Stats,
    next_conn_id: AtomicU64,
    boot_id: u64,
}

/// Why a setting was not changed.
#[derive(Debug, thiserror::Error)]
pub enum SettingError {
    /// Not a setting, fixed at start, or a value it cannot take.
    #[error(transparent)]
    Invalid(#[from] settings::SettingsError),
    /// The store refused to keep the change.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Broker-wide counters.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections open now.
    pub connections: AtomicU64,
    /// Connections accepted since start.
    pub connections_total: AtomicU64,
    /// Connections refused at accept because `mqtt.max_connections` was reached.
    pub connections_refused: AtomicU64,
    /// PUBLISH packets routed (from clients and wills).
    pub messages_in: AtomicU64,
    /// PUBLISH packets written to subscribers.
    pub messages_out: AtomicU64,
    /// Messages dropped from full session queues.
    pub messages_dropped: AtomicU64,
    /// Messages dropped from session queues because their MQTT 5.0 expiry interval passed.
    pub messages_expired: AtomicU64,
    /// Accepted connections held back because `mqtt.max_connections_per_sec` was reached.
    pub accepts_delayed: AtomicU64,
    /// Connections whose reading was paused at least once by `mqtt.max_messages_per_sec`.
    pub clients_throttled: AtomicU64,
    /// TLS handshakes that failed (not TLS, bad certificate, closed midway).
    pub tls_handshakes_failed: AtomicU64,
    /// TLS handshakes that took longer than `mqtts.handshake_timeout_secs`.
    pub tls_handshakes_timed_out: AtomicU64,
    /// Connections open now on the TLS listener (also counted in `connections`).
    pub connections_tls: AtomicU64,
    /// PUBLISH packets routed, by QoS (0, 1, 2).
    pub messages_in_by_qos: [AtomicU64; 3],
    /// PUBLISH packets written to subscribers, by QoS (0, 1, 2).
    pub messages_out_by_qos: [AtomicU64; 3],
    /// Bytes read from MQTT connections.
    pub bytes_in: AtomicU64,
    /// Bytes written to MQTT connections.
    pub bytes_out: AtomicU64,
    /// CONNECTs accepted, by protocol (3.1, 3.1.1, 5.0).
    pub connects_by_protocol: [AtomicU64; 3],
    /// CONNECTs refused, by the reason the `access` event gives (a few fixed texts; a
    /// refusal is rare, so a short lock is no cost).
    pub connects_refused: parking_lot::Mutex<std::collections::BTreeMap<&'static str, u64>>,
    /// How long accepted CONNECTs took, from the CONNECT read to the CONNACK queued (the
    /// password check included).
    pub connect_times: fubar_store::timing::DurationHistogram,
    /// PUBLISH packets routed that no session here and no other node subscribed to.
    pub messages_no_subscriber: AtomicU64,
    /// QoS 0 copies not queued under the memory alarm (their client had a backlog), and
    /// QoS 0 backlog dropped when the alarm went on.
    pub messages_shed: AtomicU64,
    /// Messages not sent because they were larger than the client's maximum packet size.
    pub messages_too_large: AtomicU64,
    /// Time from routing to the write to the subscriber's socket buffer, of the sampled
    /// messages (`http.latency_sample_every`).
    pub delivery_latency: fubar_store::timing::DurationHistogram,
    /// Clients connected now, by listener and protocol level.
    pub online: Arc<online::OnlineClients>,
}

impl Stats {
    fn record_routed(&self, routed: &Routed, qos: QoS) {
        self.messages_in.fetch_add(1, Ordering::Relaxed);
        self.messages_in_by_qos[qos as usize].fetch_add(1, Ordering::Relaxed);
        if routed.dropped > 0 {
            self.messages_dropped
                .fetch_add(routed.dropped as u64, Ordering::Relaxed);
        }
        if routed.shed > 0 {
            self.messages_shed
                .fetch_add(routed.shed as u64, Ordering::Relaxed);
        }
    }

    /// Counts a routed message that no subscriber, here or on another node, matched.
    fn record_matched(&self, matched: bool) {
        if !matched {
            self.messages_no_subscriber.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a CONNECT by its outcome: accepted (by protocol) or refused (by reason).
    fn note_connect(
        &self,
        protocol: ProtocolVersion,
        outcome: &Result<(), crate::mqtt::connection::CloseReason>,
        took: std::time::Duration,
    ) {
        match outcome {
            Ok(()) => {
                self.connect_times.record(took);
                let i = match protocol {
                    ProtocolVersion::V31 => 0,
                    ProtocolVersion::V311 => 1,
                    ProtocolVersion::V5 => 2,
                };
                self.connects_by_protocol[i].fetch_add(1, Ordering::Relaxed);
            }
            Err(crate::mqtt::connection::CloseReason::Refused(why)) => {
                *self.connects_refused.lock().entry(why).or_default() += 1;
            }
            Err(_) => {}
        }
    }

    /// The refused CONNECTs so far, by reason.
    pub fn connects_refused(&self) -> Vec<(&'static str, u64)> {
        self.connects_refused
            .lock()
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect()
    }

    /// Counts a batch of PUBLISH packets sent, per QoS.
    fn record_sent_batch(&self, by_qos: [u64; 3]) {
        let total: u64 = by_qos.iter().sum();
        if total == 0 {
            return;
        }
        self.messages_out.fetch_add(total, Ordering::Relaxed);
        for (counter, n) in self.messages_out_by_qos.iter().zip(by_qos) {
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }
    }
}

impl Broker {
    /// A standalone node's broker (no cluster), its state in `store` or only in memory.
    pub fn standalone(settings: Settings, store: Option<Arc<Store>>) -> Result<Self, StoreError> {
        Self::new(settings, store, Arc::new(LocalOnly))
    }

    /// A broker whose state lives in `store` (restored from it now), or only in memory, and
    /// that tells `cluster` what other nodes must know.
    pub fn new(
        settings: Settings,
        store: Option<Arc<Store>>,
        cluster: Arc<dyn ClusterHooks>,
    ) -> Result<Self, StoreError> {
        let boot_id = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let disk = Arc::new(disk_guard::DiskGuard::new(
            settings.node_dir(),
            settings.store.min_free_disk_bytes,
            std::time::Duration::from_millis(settings.store.disk_check_ms),
        ));
        let retained = RetainedStore::with_store(
            store.clone(),
            settings.retained.clone(),
            store.as_ref().map(|_| disk.clone()),
        );
        let topic_acl = Arc::new(topic_acl::TopicAcl::load(store.as_ref())?);
        let broker = Self {
            router: Router::new(topic_acl.clone(), cluster.clone()),
            accounts: Accounts::load(store.clone(), &settings.auth)?,
            acl: Acl::load(store.clone())?,
            topic_acl: topic_acl.clone(),
            tracer: tracer::Tracer::default(),
            memory: memory::MemoryAlarm::default(),
            gate: cluster.ack_gate(),
            registry: Registry::with_store(store.clone(), store.as_ref().map(|_| disk.clone()))
                .with_hooks(cluster.clone()),
            cluster,
            packet_sink: None,
            tls: RwLock::new(None),
            settings: RwLock::new(InForce::new(settings)),
            retained,
            disk,
            stats: Stats::default(),
            shutdown: CancellationToken::new(),
            started: Instant::now(),
            listeners: RwLock::default(),
            next_conn_id: AtomicU64::new(1),
            boot_id,
            store,
        };
        broker.apply_session_max_age();
        if let Some(store) = &broker.store {
            persist::restore(&broker, store)?;
        }
        Ok(broker)
    }

    /// The same broker, its connections' packet events going to `sink` (the log engine's
    /// fast path for the `protocol` and `trace` classes).
    pub fn with_packet_log(mut self, sink: fubar_logs::PacketSink) -> Self {
        self.packet_sink = Some(sink);
        self
    }

    /// Where the connections send their packet records, if anywhere.
    pub(crate) fn packet_sink(&self) -> Option<&fubar_logs::PacketSink> {
        self.packet_sink.as_ref()
    }

    /// The TLS configuration new TLS connections use, if TLS is on.
    pub fn tls_config(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.tls.read().clone()
    }

    /// Loads the certificate, key and CA files of the settings (at start, and for
    /// `fubar ctl ssl reload`): new connections use them, existing ones keep theirs. On an
    /// error nothing changes.
    pub fn load_tls(&self) -> Result<(), fubar_ssl::SslError> {
        let settings = self.settings();
        let ssl = &settings.ssl;
        let files = fubar_ssl::ServerTlsFiles {
            certfile: ssl.certfile.clone(),
            keyfile: ssl.keyfile.clone(),
            cafile: (ssl.verify != fubar_ssl::ClientVerify::None).then(|| ssl.cafile.clone()),
            verify: ssl.verify,
        };
        let config = fubar_ssl::server_config(&files, &[])?;
        *self.tls.write() = Some(config);
        Ok(())
    }

    /// Records a listener for status.
    pub fn add_listener(&self, url: String) {
        self.listeners.write().push(url);
    }

    /// The listeners' URLs.
    pub fn listeners(&self) -> Vec<String> {
        self.listeners.read().clone()
    }

    /// The current settings.
    pub fn settings(&self) -> Arc<Settings> {
        self.settings.read().settings.clone()
    }

    /// The limits a connection accepted now is held to: one copy shared by every connection
    /// accepted under the same settings (a copy each took 80 bytes of every connection).
    pub fn connection_limits(&self) -> Arc<Limits> {
        self.settings.read().limits.clone()
    }

    /// Changes one setting at run time (for connections from now on) and keeps the change in
    /// the store, so that it survives a restart.
    pub fn change_setting(&self, name: &str, value: &str) -> Result<String, SettingError> {
        let changed = self.settings().with_change(name, value)?;
        let shown = changed
            .flatten()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .unwrap_or_default();
        if let Some(store) = &self.store {
            store.put_setting(name, &shown)?;
        }
        *self.settings.write() = InForce::new(changed);
        self.apply_session_max_age();
        tracing::info!(target: "info", setting = name, value = %shown, "setting changed");
        Ok(shown)
    }

    /// Applies a setting changed on another node of the cluster (the replicated state has
    /// stored it): in memory only.
    pub fn apply_setting(&self, name: &str, value: &str) -> Result<(), SettingError> {
        let changed = self.settings().with_change(name, value)?;
        *self.settings.write() = InForce::new(changed);
        self.apply_session_max_age();
        tracing::info!(target: "info", setting = name, value, "setting changed by the cluster");
        Ok(())
    }

    /// Hands `session.max_age_secs` to the registry (for sessions going offline from now on).
    fn apply_session_max_age(&self) {
        let settings = self.settings();
        let secs = settings.session.max_age_secs;
        self.registry
            .set_max_age(std::time::Duration::from_secs(secs));
        limits::apply(self, &settings);
        self.topic_acl
            .set_default(settings.acl.default == settings::AclDefault::Allow);
    }

    /// Publishes the will of `client_id` (`why` says when: "delayed" or "session ended") as
    /// any message: routed here, forwarded to the cluster, retained if it asks to be.
    pub(crate) fn publish_will(&self, client_id: &Arc<str>, will: &LastWill, why: &str) {
        tracing::info!(target: "access", client = %client_id, topic = %will.topic, why, "publishing will");
        // Its message expiry interval counts from its publication (MQTT 5.0 3.1.3.2.4).
        let mut message = Message::from_will(will).expiring_from(Instant::now());
        message.publisher = Some(client_id.clone());
        let published = self.publish(Arc::new(message), publish::Origin::Will(client_id));
        router::report_unstored(
            published.routed.store_error.as_ref(),
            client_id,
            &will.topic,
            "will",
        );
    }

    fn next_conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A client id for a client that connected with an empty one (clean session only).
    fn assign_client_id(&self, conn_id: u64) -> String {
        format!("fubar-{:x}-{conn_id}", self.boot_id)
    }
}
