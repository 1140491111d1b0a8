//! Every setting of a node, with its default, in one place.
//!
//! Settings come from the embedded defaults below, then an optional TOML file (`--config`),
//! then command-line flags. Every bounded queue and every timeout of the broker is named here.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::mqtt::session::SessionLimits;

mod cluster;
mod example;
pub mod node_name;
mod observe;
mod retained;

pub use cluster::{ClusterSettings, MonitorSettings};
pub use example::example;
pub use observe::{ConsoleSettings, HttpSettings, SysSettings};
pub use retained::RetainedSettings;

/// All settings of a node.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Node identity and where its state lives.
    pub node: NodeSettings,
    /// The MQTT listener and protocol limits.
    pub mqtt: MqttSettings,
    /// Per-session bounds and lifetimes.
    pub session: SessionSettings,
    /// The MQTT over TLS listener.
    pub mqtts: MqttsSettings,
    /// The MQTT over WebSocket listener (plain), and the rules of both WebSocket listeners.
    pub ws: WsSettings,
    /// The MQTT over secure WebSocket listener (TLS as `mqtts`).
    pub wss: WssSettings,
    /// Certificates and client verification for TLS.
    pub ssl: SslSettings,
    /// The memory alarm.
    pub memory: MemorySettings,
    /// Client authentication.
    pub auth: AuthSettings,
    /// Topic rules (`fubar ctl acl topic`).
    pub acl: AclSettings,
    /// The preserved state.
    pub store: StoreSettings,
    /// Bounds of the retained store.
    pub retained: RetainedSettings,
    /// The log engine.
    pub log: LogSettings,
    /// The cluster port, membership proof and log shipping.
    pub cluster: ClusterSettings,
    /// The monitor role: what it collects and how it indexes it.
    pub monitor: MonitorSettings,
    /// The HTTP endpoint: Prometheus metrics and health probes.
    pub http: HttpSettings,
    /// The monitor's web console.
    pub console: ConsoleSettings,
    /// The `$SYS` topics.
    pub sys: SysSettings,
}

/// The MQTT over TLS listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttsSettings {
    /// Address of the TLS listener [default: `mqtt.bind`].
    pub bind: Option<IpAddr>,
    /// TLS port (8883 by convention); no TLS listener when absent. 0 picks a free port.
    pub port: Option<u16>,
    /// Seconds a TLS client has to finish its handshake.
    pub handshake_timeout_secs: u64,
}

/// The MQTT over WebSocket listener, and the upgrade rules of both WebSocket listeners.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WsSettings {
    /// Address of the WebSocket listeners [default: `mqtt.bind`].
    pub bind: Option<IpAddr>,
    /// WebSocket port (8080 by convention); no WebSocket listener when absent. 0 picks a free
    /// port.
    pub port: Option<u16>,
    /// The HTTP path a WebSocket client upgrades on (ws and wss).
    pub path: String,
    /// `Origin` values a browser may connect from (exact, e.g. `https://app.example.com`);
    /// empty allows any. A request without `Origin` (not a browser) is not checked.
    pub allowed_origins: Vec<String>,
}

impl Default for WsSettings {
    fn default() -> Self {
        Self {
            bind: None,
            port: None,
            path: "/mqtt".to_owned(),
            allowed_origins: Vec::new(),
        }
    }
}

/// The MQTT over secure WebSocket listener: the certificates, client verification and
/// `ctl ssl reload` of `mqtts`, the path and origins of `ws`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WssSettings {
    /// Address of the secure WebSocket listener [default: `mqtt.bind`].
    pub bind: Option<IpAddr>,
    /// Secure WebSocket port (8443 by convention); none when absent. 0 picks a free port.
    pub port: Option<u16>,
}

/// Certificates and client verification for TLS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SslSettings {
    /// The server's certificate chain (PEM).
    pub certfile: PathBuf,
    /// The server's private key (PEM).
    pub keyfile: PathBuf,
    /// The CA that client certificates must chain to (PEM), when they are verified.
    pub cafile: PathBuf,
    /// Client certificates: `none` (not asked), `optional` (verified if sent), `required`.
    pub verify: fubar_ssl::ClientVerify,
    /// Take the MQTT user name from the client certificate's CN (the certificate then
    /// stands for the password).
    pub username_from_cn: bool,
}

impl Default for MqttsSettings {
    fn default() -> Self {
        Self {
            bind: None,
            port: None,
            handshake_timeout_secs: 10,
        }
    }
}

impl Default for SslSettings {
    fn default() -> Self {
        Self {
            certfile: PathBuf::from("data/ssl/cert.pem"),
            keyfile: PathBuf::from("data/ssl/key.pem"),
            cafile: PathBuf::from("data/ssl/cacert.pem"),
            verify: fubar_ssl::ClientVerify::None,
            username_from_cn: false,
        }
    }
}

/// The memory alarm (Erlang fubar's `vm_memory_monitor`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemorySettings {
    /// Share of the machine's memory above which new connections are refused (CONNACK 3)
    /// and QoS 0 backlog is dropped.
    pub high_watermark: f64,
    /// Share below which the alarm ends.
    pub low_watermark: f64,
    /// Milliseconds between memory checks.
    pub check_ms: u64,
}

impl Default for MemorySettings {
    fn default() -> Self {
        Self {
            high_watermark: 0.40,
            low_watermark: 0.38,
            check_ms: 1000,
        }
    }
}

/// Client authentication.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Require a user name and password of an account (`fubar ctl account update`).
    pub enabled: bool,
    /// Milliseconds a user name is refused from an address after a failed login there,
    /// doubling with each further failure (other users behind that address are not held).
    pub failure_delay_ms: u64,
    /// Cap of that penalty.
    pub max_failure_delay_ms: u64,
    /// Failed logins a minute from one address (an IPv6 address counts as its /64), whatever
    /// the user names; beyond it every login from the address is refused at once (stops a
    /// password spray).
    pub max_address_failures_per_min: u32,
    /// Entries (address and user name, address) the throttle remembers (bounded memory
    /// under a scan).
    pub max_tracked_addresses: usize,
    /// Password checks (deliberately slow) running at once, shared fairly between addresses.
    pub max_concurrent_checks: usize,
    /// Use the user name as the client id (mosquitto's `use_username_as_clientid`): a client
    /// id in CONNECT is replaced, and a CONNECT without a user name is refused.
    pub client_id_from_username: bool,
}

/// Topic rules (`fubar ctl acl topic`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AclSettings {
    /// What a PUBLISH, SUBSCRIBE or delivery no topic rule matches gets: `allow` (as without
    /// rules) or `deny` (only what a rule allows, as mosquitto with an acl_file).
    pub default: AclDefault,
}

/// The values of `acl.default`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AclDefault {
    /// Allowed.
    #[default]
    Allow,
    /// Denied.
    Deny,
}

/// How the preserved state is written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    /// `group`: a QoS 1/2 PUBLISH is acknowledged once the copies it left in offline queues and
    /// the retained store are fsynced (one fsync per group of writes). `none`: no fsync on the
    /// message path (a process crash loses nothing; a power loss may lose the last seconds).
    pub sync: SyncSetting,
    /// Milliseconds between the starts of two fsyncs of the group commit: writes made within
    /// it of each other share one fsync; a write to an idle store (the last fsync started
    /// longer ago) is synced at once.
    pub group_commit_ms: u64,
    /// Free bytes the data folder's disk must keep: below it, new persistent data (retained
    /// messages, persistent sessions) is refused; deletions still work.
    pub min_free_disk_bytes: u64,
    /// Milliseconds between two looks at the disk's free space.
    pub disk_check_ms: u64,
}

/// The values of `store.sync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncSetting {
    /// Group commit.
    Group,
    /// No fsync on the message path.
    None,
}

/// Node identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeSettings {
    /// Node name, `name@host`.
    pub name: String,
    /// Data directory; the node keeps its state under `<data_dir>/<name>/`.
    pub data_dir: PathBuf,
}

/// The MQTT listener and protocol limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttSettings {
    /// Address the MQTT listener binds.
    pub bind: IpAddr,
    /// MQTT TCP port (0 picks a free port, printed at start).
    pub port: u16,
    /// Largest packet accepted, in bytes (fixed header included).
    pub max_packet_size: usize,
    /// Seconds a new connection has to send CONNECT.
    pub connect_timeout_secs: u64,
    /// Most connections served at once; more are closed at accept.
    pub max_connections: usize,
    /// Connections accepted per second at most, node-wide, with a burst of one second's worth
    /// (0: no limit). Beyond it the listener stops accepting for a while: the kernel's backlog
    /// holds the new connections; none is closed.
    pub max_connections_per_sec: u64,
    /// PUBLISH packets read per second at most from one connection, with a burst of one
    /// second's worth (0: no limit). Beyond it the broker stops reading that socket for a while,
    /// so TCP flow control slows the client down; nothing is dropped and the connection stays.
    pub max_messages_per_sec: u64,
    /// Longest client id accepted from a 3.1.1 client (3.1 allows 23 characters).
    pub max_client_id_len: usize,
    /// Bytes of encoded packets buffered for a socket before the session queue holds the rest.
    pub write_buffer_bytes: usize,
    /// Seconds a client may leave written data unread before it is disconnected.
    pub stalled_reader_timeout_secs: u64,
    /// Seconds the broker waits for connections to finish at shutdown.
    pub shutdown_grace_secs: u64,
    /// Milliseconds spent flushing the last packets (a refusing CONNACK, say) to a closing
    /// connection.
    pub close_flush_ms: u64,
    /// Bytes a connection the server closes may still send (read and discarded, within
    /// `close_flush_ms`) so that it can read why it was closed instead of getting a reset.
    pub close_drain_bytes: usize,
    /// Microseconds a PUBLISH waits at most, before it is routed, for input that reached
    /// other connections before it to be read and handled (a SUBSCRIBE sent just before it
    /// on another connection then receives it); 0 routes at once.
    pub publish_order_wait_us: u64,
    /// QoS 1/2 PUBLISH packets a client may have unacknowledged at once (sent to MQTT 5.0
    /// clients as the server's Receive Maximum; one that sends more is disconnected with
    /// 0x93). It also bounds the acknowledgements a connection holds while they wait for the
    /// store's durability: a 3.1.1 client is not read from while that many wait.
    pub receive_maximum: u16,
    /// Topic aliases an MQTT 5.0 client may set on a connection (its Topic Alias Maximum in
    /// CONNACK; 0: none), and the most the server gives to the topics it sends a client that
    /// allows them.
    pub topic_alias_maximum: u16,
    /// Longest keep-alive, in seconds: an MQTT 5.0 client asking for none (0) or for more is
    /// told this one in CONNACK (Server Keep Alive) and held to it. 3.1/3.1.1 clients cannot be
    /// told, and keep their own.
    pub max_keep_alive_secs: u16,
    /// Most levels in a topic name or filter (PUBLISH, will, SUBSCRIBE, UNSUBSCRIBE): each
    /// level of a filter is a node of the subscription trie.
    pub max_topic_levels: usize,
    /// Longest topic name or filter, in bytes.
    pub max_topic_len: usize,
}

/// Per-session bounds and lifetimes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionSettings {
    /// Most messages queued per session (offline queue and backlog).
    pub max_queued_messages: usize,
    /// Most bytes (topic + payload) queued per session.
    pub max_queued_bytes: usize,
    /// Most QoS 1/2 messages in flight (sent, not acknowledged) per session.
    pub inflight_window: usize,
    /// Most subscriptions per session; a SUBSCRIBE beyond it is refused for the filters that
    /// would be new (SUBACK 0x97 Quota exceeded to MQTT 5.0 clients, 0x80 to 3.1.1).
    pub max_subscriptions: usize,
    /// Seconds a persistent session is kept while its client is away (an MQTT 5.0 client's
    /// session expiry interval, if shorter, ends it sooner).
    pub max_age_secs: u64,
    /// Most persistent sessions (clean session 0, or a session expiry interval) on the node;
    /// a CONNECT that would create one more is refused (MQTT 5.0 CONNACK 0x97, 3.1.1
    /// CONNACK 3 server unavailable). Resuming an existing session always works.
    pub max_persistent: usize,
    /// Most bytes (topic + payload) queued on the node for all persistent sessions whose client
    /// is away; beyond it a QoS 1/2 message for such a session is not queued (a `warning`
    /// once a second with the count). Sessions that are served are not counted.
    pub max_offline_queued_bytes: usize,
    /// Other members holding a copy of each persistent session (its backups), in a cluster
    /// of 3 or more brokers; a publisher's PUBACK/PUBREC waits until they have it. 0: a
    /// session lives on its node only.
    pub replicas: usize,
}

/// The node's log engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// Log directory; empty means `<data_dir>/<name>/log`.
    pub dir: PathBuf,
    /// Largest segment file of a class, bytes.
    pub max_bytes: u64,
    /// Segment files kept per class.
    pub max_files: usize,
    /// Classes open at start, with their redirect: `"none"`, `"stdout"` or a daily-file prefix.
    pub classes: BTreeMap<String, String>,
    /// Events buffered between the broker and the log writer; beyond it events are dropped
    /// and counted (the broker never waits on the log).
    pub channel_capacity: usize,
    /// Milliseconds between flushes of buffered log writes.
    pub flush_ms: u64,
    /// Events the log writer writes per second at most (0: no limit). Beyond it events are
    /// dropped and counted, so that logging never takes more than its share of the machine
    /// from the broker. The default holds every `protocol` event of 200,000 messages/s
    /// (one PUBLISH in and one out each) with room to spare.
    pub max_events_per_sec: u64,
    /// Bytes of text one `fubar ctl log dump` sends back at most (every class together);
    /// beyond it the dump is cut short and says so.
    pub max_dump_bytes: u64,
}

impl Default for NodeSettings {
    fn default() -> Self {
        Self {
            name: default_node_name(),
            data_dir: PathBuf::from("data"),
        }
    }
}

impl Default for MqttSettings {
    fn default() -> Self {
        Self {
            bind: IpAddr::from([0, 0, 0, 0]),
            port: 1883,
            max_packet_size: 1 << 20,
            connect_timeout_secs: 10,
            max_connections: 1_000_000,
            max_connections_per_sec: 0,
            max_messages_per_sec: 0,
            max_client_id_len: 65_535,
            write_buffer_bytes: 64 << 10,
            stalled_reader_timeout_secs: 60,
            shutdown_grace_secs: 5,
            close_flush_ms: 1000,
            close_drain_bytes: 1 << 20,
            // Reached only while a connection stamped earlier stays unhandled that long (an
            // overloaded machine: a runnable task can wait milliseconds for a core).
            publish_order_wait_us: 10_000,
            // The same as `session.inflight_window`: what the broker asks of a client is what it
            // allows itself toward one. EMQX uses its max_inflight (32) both ways; mosquitto
            // announces its max_inflight_messages (20), HiveMQ 10. The MQTT 5.0 default
            // (65,535) would let one client hold that many acknowledgements per connection.
            receive_maximum: 32,
            // Mosquitto's default max_topic_alias; each alias holds one topic per connection.
            topic_alias_maximum: 10,
            // Erlang fubar's valid_keep_alive range ended at 3600 s (mqtt_server.erl).
            max_keep_alive_secs: 3600,
            // EMQX's default; mosquitto stops at 200 levels. Real topics have under ten.
            max_topic_levels: 128,
            // The protocol allows 65535. AWS IoT allows 256 bytes; 4 KiB is far above any
            // device's topic and keeps one filter's trie path and session copy small.
            max_topic_len: 4096,
        }
    }
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            max_queued_messages: 10_000,
            max_queued_bytes: 64 << 20,
            inflight_window: 32,
            // Far more than a device subscribes to (tens), enough for a bridge or a dashboard
            // that subscribes to many topics one by one, while one client cannot grow the
            // subscription trie without bound (each subscription is also replicated across the
            // cluster as a route).
            max_subscriptions: 10_000,
            max_age_secs: 2 * 24 * 3600,
            // The same as `mqtt.max_connections`: every client may keep a session, but a
            // client-id generator cannot make more (each costs memory and disk while away).
            max_persistent: 1_000_000,
            // 2 GiB: a tenth of this machine class's memory; the memory alarm (40%) sheds
            // only QoS 0, so offline queues need a bound of their own.
            max_offline_queued_bytes: 2 << 30,
            // One copy survives the loss of any one node; it only takes effect in a cluster
            // of 3 or more brokers (of two, neither can tell a dead peer from a partition).
            replicas: 1,
        }
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            failure_delay_ms: 1000,
            max_failure_delay_ms: 30_000,
            // Far above what a NAT'd fleet with a few misconfigured devices makes, far below
            // what a spray needs (mosquitto has no bound; fail2ban's default is 5 in 10 min).
            max_address_failures_per_min: 100,
            max_tracked_addresses: 100_000,
            max_concurrent_checks: 2,
            client_id_from_username: false,
        }
    }
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            sync: SyncSetting::Group,
            group_commit_ms: 2,
            // Room for fjall's compactions and the logs to finish what they started.
            min_free_disk_bytes: 100 << 20,
            disk_check_ms: 1000,
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            dir: PathBuf::new(),
            max_bytes: 10 << 20,
            max_files: 10,
            classes: [("trace", "stdout"), ("warning", "fubar")]
                .into_iter()
                .map(|(c, r)| (c.to_owned(), r.to_owned()))
                .collect(),
            channel_capacity: 65_536,
            flush_ms: 100,
            max_events_per_sec: 450_000,
            max_dump_bytes: 1 << 30,
        }
    }
}

/// Settings read only at start; `fubar ctl settings` refuses to change them at run time.
pub const FIXED_AT_START: [&str; 66] = [
    "node.name",
    "mqtts.bind",
    "mqtts.port",
    "ws.bind",
    "ws.port",
    "ws.path",
    "ws.allowed_origins",
    "wss.bind",
    "wss.port",
    "node.data_dir",
    "mqtt.bind",
    "mqtt.port",
    "mqtt.max_connections",
    "auth.failure_delay_ms",
    "auth.max_failure_delay_ms",
    "auth.max_address_failures_per_min",
    "auth.max_tracked_addresses",
    "auth.max_concurrent_checks",
    "store.sync",
    "store.group_commit_ms",
    "log.dir",
    "log.max_bytes",
    "log.max_files",
    "log.classes",
    "log.channel_capacity",
    "log.flush_ms",
    "log.max_events_per_sec",
    "cluster.bind",
    "cluster.port",
    "cluster.master",
    "cluster.cookie_file",
    "cluster.node_certfile",
    "cluster.node_keyfile",
    "cluster.cafile",
    "cluster.proof_timeout_ms",
    "cluster.max_connections",
    "cluster.max_unproven_connections",
    "cluster.max_unproven_per_address",
    "cluster.refusal_warning_ms",
    "cluster.max_refusal_warnings",
    "cluster.join_warning_ms",
    "cluster.spool_bytes",
    "monitor.index_heap_bytes",
    "monitor.index_commit_ms",
    "monitor.index_retention_secs",
    "http.bind",
    "http.port",
    "http.max_connections",
    "http.idle_timeout_secs",
    "console.bind",
    "console.port",
    "console.sign_in_ttl_secs",
    "console.max_pending_sign_ins",
    "console.session_ttl_secs",
    "console.max_sessions",
    "console.page_size",
    "console.histogram_bars",
    "console.timeline_limit",
    "console.tail_queue",
    "console.max_tails",
    "console.tls",
    "console.handshake_timeout_secs",
    "console.max_handshakes",
    "console.max_connections",
    "console.idle_timeout_secs",
    "sys.interval_secs",
];

/// The highest per-second limit accepted (`mqtt.max_*_per_sec`): a limit of a million a second
/// limits nothing a node can serve, so a larger one is more likely a typo.
const MAX_RATE: u64 = 1_000_000;

/// `fubar@<hostname>`, the default node name.
pub fn default_node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("fubar@{host}")
}

/// A settings file or value that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file could not be read.
    #[error("cannot read settings file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for these settings.
    #[error("invalid settings file {path}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: toml::de::Error,
    },
    /// A run-time change that cannot be made.
    #[error("{0}")]
    Change(String),
    /// A value is out of range.
    #[error("invalid setting {name}: {why}")]
    Invalid {
        /// The setting's name.
        name: &'static str,
        /// Why.
        why: String,
    },
}

impl Settings {
    /// Defaults overlaid with a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| SettingsError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Checks values that would make the broker misbehave.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |name, why: &str| {
            Err(SettingsError::Invalid {
                name,
                why: why.to_owned(),
            })
        };
        if !self.node.name.contains('@') || self.node.name.contains(['/', '\\']) {
            return invalid("node.name", "must be NAME@HOST without path separators");
        }
        if !self.ws.path.starts_with('/') || self.ws.path.contains(['?', '#', ' ']) {
            return invalid("ws.path", "must be an HTTP path: /, no query, no spaces");
        }
        let c = &self.console;
        if c.page_size == 0 || c.page_size > fubar_monitor::search::MAX_LIMIT {
            return invalid("console.page_size", "must be 1 ..= 10000");
        }
        if c.timeline_limit == 0 || c.timeline_limit > fubar_monitor::search::MAX_LIMIT {
            return invalid("console.timeline_limit", "must be 1 ..= 10000");
        }
        if c.histogram_bars == 0 || c.histogram_bars > 1000 {
            return invalid("console.histogram_bars", "must be 1 ..= 1000");
        }
        for (name, value) in [
            ("console.max_pending_sign_ins", c.max_pending_sign_ins),
            ("console.max_sessions", c.max_sessions),
            ("console.tail_queue", c.tail_queue),
            ("console.max_tails", c.max_tails),
            ("console.max_handshakes", c.max_handshakes),
            ("console.max_connections", c.max_connections),
        ] {
            if value == 0 {
                return invalid(name, "must be at least 1");
            }
        }
        if self.mqtt.max_packet_size < 64 || self.mqtt.max_packet_size > 268_435_460 {
            return invalid("mqtt.max_packet_size", "must be 64 ..= 268435460 bytes");
        }
        if self.session.inflight_window == 0 || self.session.inflight_window > 65_535 {
            return invalid("session.inflight_window", "must be 1 ..= 65535");
        }
        if self.session.max_subscriptions == 0 {
            return invalid("session.max_subscriptions", "must be at least 1");
        }
        if self.mqtt.receive_maximum == 0 {
            return invalid("mqtt.receive_maximum", "must be 1 ..= 65535");
        }
        if self.mqtt.max_keep_alive_secs == 0 {
            return invalid("mqtt.max_keep_alive_secs", "must be 1 ..= 65535");
        }
        if self.session.max_queued_messages == 0 || self.session.max_queued_bytes == 0 {
            return invalid("session.max_queued_*", "must be at least 1");
        }
        let m = &self.memory;
        if !(m.low_watermark > 0.0
            && m.low_watermark <= m.high_watermark
            && m.high_watermark <= 1.0)
        {
            return invalid(
                "memory.*_watermark",
                "need 0 < low_watermark <= high_watermark <= 1",
            );
        }
        if self.mqtt.max_topic_levels == 0 || self.mqtt.max_topic_len == 0 {
            return invalid(
                "mqtt.max_topic_levels / mqtt.max_topic_len",
                "must be at least 1",
            );
        }
        if self.mqtt.max_topic_len > crate::mqtt::topic::MAX_TOPIC_LEN {
            return invalid("mqtt.max_topic_len", "must be 1 ..= 65535");
        }
        self.retained.validate()?;
        self.cluster.validate()?;
        if self.mqtt.max_connections == 0 {
            return invalid("mqtt.max_connections", "must be at least 1");
        }
        if self.mqtt.max_connections_per_sec > MAX_RATE {
            return invalid(
                "mqtt.max_connections_per_sec",
                "must be 0 (no limit) ..= 1000000",
            );
        }
        if self.mqtt.max_messages_per_sec > MAX_RATE {
            return invalid(
                "mqtt.max_messages_per_sec",
                "must be 0 (no limit) ..= 1000000",
            );
        }
        for (class, redirect) in &self.log.classes {
            if let Err(e) = class.parse::<fubar_logproto::Class>() {
                return invalid("log.classes", &e.to_string());
            }
            if let Err(e) = redirect.parse::<fubar_logs::Redirect>() {
                return invalid("log.classes", &format!("{class}: {e}"));
            }
        }
        if self.log.max_files == 0 || self.log.max_bytes < 4096 {
            return invalid(
                "log.max_files / log.max_bytes",
                "at least 1 file of 4096 bytes",
            );
        }
        if self.log.channel_capacity == 0 {
            return invalid("log.channel_capacity", "must be at least 1");
        }
        if !self.cluster.master.is_empty() {
            if let Err(e) = self.cluster.master.parse::<node_name::NodeName>() {
                return invalid("cluster.master", &e.to_string());
            }
        }
        if self.cluster.node_certfile.as_os_str().is_empty()
            != self.cluster.node_keyfile.as_os_str().is_empty()
        {
            return invalid(
                "cluster.node_certfile / cluster.node_keyfile",
                "give both or neither",
            );
        }
        if !self.cluster.node_certfile.as_os_str().is_empty()
            && self.cluster.cafile.as_os_str().is_empty()
        {
            return invalid(
                "cluster.node_certfile",
                "a node certificate needs its CA in cluster.cafile",
            );
        }
        if !self.cluster.cafile.as_os_str().is_empty()
            && self.cluster.node_certfile.as_os_str().is_empty()
        {
            // The self-made identity is no certificate of that CA: every other member would
            // refuse this node's certificate, and it theirs only by the cookie.
            return invalid(
                "cluster.cafile",
                "a cluster CA needs this node's certificate of it in cluster.node_certfile \
                 and cluster.node_keyfile (fubar ssl new-certs --node NAME)",
            );
        }
        if self.cluster.proof_timeout_ms == 0
            || self.cluster.max_unproven_per_address == 0
            || self.cluster.max_unproven_connections == 0
            || self.cluster.refusal_warning_ms == 0
            || self.cluster.max_refusal_warnings == 0
            || self.cluster.join_warning_ms == 0
        {
            return invalid(
                "cluster.proof_timeout_ms / max_unproven_connections / max_unproven_per_address / refusal_warning_ms / max_refusal_warnings / join_warning_ms",
                "must be at least 1",
            );
        }
        if self.cluster.max_unproven_connections >= self.cluster.max_connections {
            return invalid(
                "cluster.max_unproven_connections",
                "must be less than cluster.max_connections (the rest is kept for members)",
            );
        }
        if self.cluster.spool_bytes < 1 << 20 {
            return invalid("cluster.spool_bytes", "at least 1048576 bytes");
        }
        for class in &self.monitor.collect {
            if let Err(e) = class.parse::<fubar_logproto::Class>() {
                return invalid("monitor.collect", &e.to_string());
            }
        }
        if self.monitor.index_heap_bytes < fubar_monitor::index::MIN_INDEX_HEAP_BYTES {
            return invalid("monitor.index_heap_bytes", "at least 15000000 bytes");
        }
        if self.monitor.index_commit_ms == 0 {
            return invalid("monitor.index_commit_ms", "must be at least 1");
        }
        Ok(())
    }

    /// These settings with `name` (dotted, e.g. `mqtt.max_packet_size`) set to `value` (a TOML
    /// value; a bare word is taken as a string). Refuses unknown names, wrong types, values
    /// out of range, and settings that only take effect at start.
    pub fn with_change(&self, name: &str, value: &str) -> Result<Self, SettingsError> {
        let invalid = SettingsError::Change;
        let (section, key) = name
            .split_once('.')
            .ok_or_else(|| invalid(format!("{name:?} is not SECTION.KEY")))?;
        // Before the name check: a setting empty by default (`mqtts.port`, say) is not in
        // `flatten()`, and would be called unknown.
        if FIXED_AT_START.contains(&name) {
            return Err(invalid(format!(
                "{name} takes effect only at start: set it in the settings file or with a flag"
            )));
        }
        let current = self.flatten();
        if !current.iter().any(|(n, _)| n == name) {
            let names: Vec<&str> = current.iter().map(|(n, _)| n.as_str()).collect();
            return Err(invalid(format!(
                "unknown setting {name:?}; known: {}",
                names.join(", ")
            )));
        }
        let parsed: toml::Value = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.to_owned()));
        let mut tree = toml::Table::try_from(self).map_err(|e| invalid(e.to_string()))?;
        if let Some(toml::Value::Table(sec)) = tree.get_mut(section) {
            sec.insert(key.to_owned(), parsed);
        }
        let changed: Self = toml::Value::Table(tree)
            .try_into()
            .map_err(|e: toml::de::Error| invalid(format!("{name}: {}", e.message())))?;
        changed.validate()?;
        Ok(changed)
    }

    /// Every setting as (dotted name, TOML value), sorted by name.
    pub fn flatten(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Ok(tree) = toml::Table::try_from(self) {
            for (section, v) in tree {
                if let toml::Value::Table(t) = v {
                    for (k, v) in t {
                        out.push((format!("{section}.{k}"), v.to_string()));
                    }
                }
            }
        }
        out.sort();
        out
    }

    /// The node's own directory, `<data_dir>/<name>`.
    pub fn node_dir(&self) -> PathBuf {
        self.node.data_dir.join(&self.node.name)
    }

    /// The cluster cookie file: `cluster.cookie_file`, or `<data_dir>/cookie`.
    pub fn cookie_file(&self) -> PathBuf {
        if self.cluster.cookie_file.as_os_str().is_empty() {
            self.node.data_dir.join("cookie")
        } else {
            self.cluster.cookie_file.clone()
        }
    }

    /// The log directory: `log.dir`, or `<data_dir>/<name>/log`.
    pub fn log_dir(&self) -> PathBuf {
        if self.log.dir.as_os_str().is_empty() {
            self.node_dir().join("log")
        } else {
            self.log.dir.clone()
        }
    }

    /// The directory of the node's preserved state, `<data_dir>/<name>/state`.
    pub fn state_dir(&self) -> PathBuf {
        self.node_dir().join("state")
    }

    /// Session bounds for the sans-IO session.
    pub fn session_limits(&self) -> SessionLimits {
        SessionLimits {
            max_queued_messages: self.session.max_queued_messages,
            max_queued_bytes: self.session.max_queued_bytes,
            inflight_window: self.session.inflight_window,
        }
    }

    /// The bounds on topic names and filters.
    pub fn topic_limits(&self) -> crate::mqtt::topic::TopicLimits {
        crate::mqtt::topic::TopicLimits {
            max_levels: self.mqtt.max_topic_levels,
            max_len: self.mqtt.max_topic_len,
        }
    }

    /// The CONNECT timeout.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.mqtt.connect_timeout_secs)
    }

    /// The limits a connection accepted under these settings is held to.
    pub fn connection_limits(&self) -> crate::mqtt::connection::Limits {
        let mqtt = &self.mqtt;
        crate::mqtt::connection::Limits {
            max_packet_size: mqtt.max_packet_size,
            connect_timeout: self.connect_timeout(),
            max_client_id_len: mqtt.max_client_id_len,
            stalled_reader_timeout: Duration::from_secs(mqtt.stalled_reader_timeout_secs),
            max_messages_per_sec: mqtt.max_messages_per_sec,
            receive_maximum: mqtt.receive_maximum,
            topic_alias_maximum: mqtt.topic_alias_maximum,
            max_keep_alive_secs: mqtt.max_keep_alive_secs,
            topic_limits: self.topic_limits(),
            client_id_from_username: self.auth.client_id_from_username,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_design_table() {
        let s = Settings::default();
        assert_eq!(s.mqtt.max_packet_size, 1_048_576);
        assert_eq!(s.session.max_queued_messages, 10_000);
        assert_eq!(s.session.max_queued_bytes, 64 * 1024 * 1024);
        assert_eq!(s.session.inflight_window, 32);
        assert_eq!(s.mqtt.connect_timeout_secs, 10);
        assert_eq!(s.session.max_age_secs, 172_800);
        assert_eq!(s.mqtt.port, 1883);
        assert_eq!(s.mqtt.receive_maximum, 32);
        assert_eq!(s.mqtt.topic_alias_maximum, 10);
        assert_eq!(s.mqtt.max_keep_alive_secs, 3600);
        assert_eq!(s.session.max_subscriptions, 10_000);
        assert!(s.node.name.starts_with("fubar@"));
        s.validate().unwrap();
    }

    #[test]
    fn file_overrides_only_what_it_names() {
        let s: Settings = toml::from_str("[mqtt]\nmax_packet_size = 4096\n").unwrap();
        assert_eq!(s.mqtt.max_packet_size, 4096);
        assert_eq!(s.session.inflight_window, 32);
    }

    #[test]
    fn run_time_changes_are_checked() {
        let s = Settings::default();
        let c = s.with_change("mqtt.max_packet_size", "8192").unwrap();
        assert_eq!(c.mqtt.max_packet_size, 8192);
        assert!(
            s.with_change("mqtt.max_packet_size", "\"big\"").is_err(),
            "wrong type"
        );
        assert!(
            s.with_change("mqtt.max_packet_size", "1").is_err(),
            "out of range"
        );
        assert!(s.with_change("mqtt.nonsense", "1").is_err(), "unknown");
        assert!(
            s.with_change("mqtt.port", "1884").is_err(),
            "fixed at start"
        );
        assert!(s.with_change("auth.enabled", "true").unwrap().auth.enabled);
        let flat = s.flatten();
        assert!(flat.contains(&("store.sync".to_owned(), "\"group\"".to_owned())));
        assert!(flat.contains(&("session.inflight_window".to_owned(), "32".to_owned())));
    }

    #[test]
    fn every_setting_fixed_at_start_is_a_setting() {
        let keys = example::all_keys();
        let unknown: Vec<&str> = FIXED_AT_START
            .iter()
            .copied()
            .filter(|name| !keys.iter().any(|k| k == name))
            .collect();
        assert!(
            unknown.is_empty(),
            "FIXED_AT_START names no setting: {unknown:?}"
        );
    }

    #[test]
    fn every_setting_fixed_at_start_is_refused_as_such_at_run_time() {
        // Including those empty by default (`mqtts.port`, `http.port`, ...), which
        // `flatten()` leaves out: they were once called unknown.
        let s = Settings::default();
        for name in FIXED_AT_START {
            let error = s.with_change(name, "1").unwrap_err().to_string();
            assert!(
                error.contains("takes effect only at start"),
                "{name}: {error}"
            );
        }
    }

    #[test]
    fn overload_limits_are_off_by_default_and_changeable_at_run_time() {
        let s = Settings::default();
        assert_eq!(s.mqtt.max_connections_per_sec, 0);
        assert_eq!(s.mqtt.max_messages_per_sec, 0);
        let c = s.with_change("mqtt.max_messages_per_sec", "50").unwrap();
        assert_eq!(c.mqtt.max_messages_per_sec, 50);
        let c = s.with_change("mqtt.max_connections_per_sec", "20").unwrap();
        assert_eq!(c.mqtt.max_connections_per_sec, 20);
        for name in ["mqtt.max_messages_per_sec", "mqtt.max_connections_per_sec"] {
            assert!(
                s.with_change(name, "1000001").is_err(),
                "{name} out of range"
            );
            assert!(s.with_change(name, "-1").is_err(), "{name} negative");
            assert!(s.with_change(name, "0").is_ok(), "{name} back to no limit");
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(toml::from_str::<Settings>("[mqtt]\nmax_pakcet_size = 1\n").is_err());
        let mut s = Settings::default();
        s.session.inflight_window = 0;
        assert!(s.validate().is_err());
        let mut s = Settings::default();
        s.log.classes.insert("nonsense".into(), "stdout".into());
        assert!(s.validate().is_err());
        let s = Settings::default();
        for name in [
            "mqtt.receive_maximum",
            "mqtt.max_keep_alive_secs",
            "session.max_subscriptions",
        ] {
            assert!(s.with_change(name, "0").is_err(), "{name} 0");
        }
        assert!(s.with_change("mqtt.receive_maximum", "65536").is_err());
        assert!(s.with_change("mqtt.topic_alias_maximum", "0").is_ok());
    }

    #[test]
    fn the_cluster_ports_shares_and_its_ca_are_checked() {
        let mut s = Settings::default();
        // The strangers' share must leave the members some of the port.
        s.cluster.max_unproven_connections = s.cluster.max_connections;
        assert!(s.validate().is_err());
        s.cluster.max_unproven_connections = s.cluster.max_connections - 1;
        s.validate().unwrap();
        s.cluster.max_refusal_warnings = 0;
        assert!(s.validate().is_err());
        // A cluster CA without this node's certificate of it.
        let mut s = Settings::default();
        s.cluster.cafile = "ca.pem".into();
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("cluster.node_certfile"), "{err}");
        s.cluster.node_certfile = "node.pem".into();
        s.cluster.node_keyfile = "node.key.pem".into();
        s.validate().unwrap();
    }
}
