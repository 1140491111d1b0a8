//! Requests to a node's admin endpoint (`fubar ctl`) and its replies.

use serde::{Deserialize, Serialize};

use crate::Event;

/// A command for a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminRequest {
    /// Node name, version, uptime, listeners, counts, memory, cluster role.
    Status,
    /// Stop the node gracefully, as SIGTERM does.
    Stop,
    /// Create an account or change its password.
    AccountUpdate {
        /// User name.
        name: String,
        /// New password (over the owner-only local socket or the cluster port's TLS; never
        /// logged: the `access` event shows `***`).
        password: String,
    },
    /// Delete an account.
    AccountDelete {
        /// User name.
        name: String,
    },
    /// List account names.
    AccountList,
    /// Allow connections from an address block.
    AclAllow {
        /// `ADDR/PREFIX` or a single address.
        cidr: String,
    },
    /// Deny connections from an address block.
    AclDeny {
        /// `ADDR/PREFIX` or a single address.
        cidr: String,
    },
    /// Remove an address rule.
    AclDelete {
        /// `ADDR/PREFIX` or a single address, as it was added.
        cidr: String,
    },
    /// List address rules.
    AclList,
    /// List the effective settings.
    SettingsList,
    /// Change one setting at run time (and keep the change across restarts).
    SettingsSet {
        /// Dotted name, e.g. `mqtt.max_packet_size`.
        name: String,
        /// The new value, as it would be written in the TOML file.
        value: String,
    },
    /// Start recording a log class.
    LogOpen {
        /// Class name.
        class: String,
    },
    /// Stop recording a log class (its files stay).
    LogClose {
        /// Class name.
        class: String,
    },
    /// Redirect a log class: `none`, `stdout`, or a daily-file prefix.
    LogOut {
        /// Class name.
        class: String,
        /// `none`, `stdout` or PREFIX.
        redirect: String,
    },
    /// Classes with their redirects, sizes, event counts and drops.
    LogList,
    /// One class's events as text (or, without one, every class's), sent back as a stream of
    /// `DumpStart`, `DumpText`, `DumpEnd` for the caller to write: the node writes no file.
    LogDump {
        /// Class name; `None` dumps every class.
        class: Option<String>,
    },
    /// Follow a client id in the `trace` class.
    TraceClient {
        /// Client id.
        client_id: String,
    },
    /// Follow messages whose topic matches a filter in the `trace` class.
    TraceTopic {
        /// Topic filter.
        filter: String,
    },
    /// Stop following a client id.
    UntraceClient {
        /// Client id.
        client_id: String,
    },
    /// Stop following a topic filter.
    UntraceTopic {
        /// Topic filter.
        filter: String,
    },
    /// What is followed.
    TraceList,
    /// Load the TLS certificate, key and CA files again for new connections.
    SslReload,
    /// On the monitor: the collected events matching a query, newest first.
    Search(SearchQuery),
    /// On the monitor: follow the events matching a query as they arrive (replies are a
    /// stream of `Event`, `Missed` and `Error` until the client goes away).
    LogTail {
        /// Query, as `Search` takes it.
        query: String,
        /// Only this class.
        class: Option<String>,
    },
    /// On the monitor: ship a class from every node, or stop shipping it.
    LogCollect {
        /// Class name.
        class: String,
        /// Ship it (true) or not.
        on: bool,
    },
    /// On the monitor: every node's log link.
    LogLinks,
    /// The cluster as this node sees it: members, leader, lag, links.
    ClusterStatus,
    /// Takes a member out of the cluster for good (this node if `node` is `None`).
    ClusterLeave {
        /// The member's name, `NAME@HOST`.
        node: Option<String>,
    },
    /// Adds a topic rule (`allow|deny publish|subscribe|both [user NAME|client ID] FILTER`).
    TopicAclAdd {
        /// The rule's text.
        rule: String,
    },
    /// Deletes a topic rule.
    TopicAclDelete {
        /// The rule's text, as added.
        rule: String,
    },
    /// Lists the topic rules.
    TopicAclList,
    /// Adds the rules of a mosquitto acl_file, all or none.
    TopicAclImport {
        /// The file's text (read by the caller: the node may be remote).
        text: String,
    },
    /// On the monitor: a one-time sign-in URL for its web console (`fubar console url`).
    /// (Last: variants are numbered on the wire.)
    ConsoleSignIn,
}

/// A search of the monitor's index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchQuery {
    /// Tantivy query syntax; empty matches every event.
    pub query: String,
    /// Only this class.
    pub class: Option<String>,
    /// Only events at or after this time (µs since the Unix epoch).
    pub from_us: Option<i64>,
    /// Only events before this time (µs since the Unix epoch).
    pub until_us: Option<i64>,
    /// The most events returned.
    pub limit: u32,
}

/// One node's log link as the monitor sees it (`fubar ctl log list` on the monitor).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkStatus {
    /// The node.
    pub node: String,
    /// Whether its link is up.
    pub connected: bool,
    /// Its address on the current or last link.
    pub peer: String,
    /// Its boot epoch.
    pub epoch: u64,
    /// The last sequence number acknowledged.
    pub upto_seq: u64,
    /// Events written per second, lately.
    pub events_per_sec: f64,
    /// How far behind its newest event was when written, milliseconds.
    pub lag_ms: Option<i64>,
    /// Events written since start.
    pub events: u64,
    /// Resent events dropped as duplicates.
    pub duplicates: u64,
    /// Events the node reported lost (its spool overflowed).
    pub lost: u64,
}

/// One log class as `fubar ctl log list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogClassStatus {
    /// Class name.
    pub class: String,
    /// Whether it is recorded.
    pub open: bool,
    /// `none`, `stdout` or the daily-file prefix.
    pub redirect: String,
    /// Segment files.
    pub files: u64,
    /// Bytes in segment files.
    pub bytes: u64,
    /// Events written since start.
    pub events: u64,
    /// Events lost to wrap-around since start.
    pub overwritten: u64,
    /// Events dropped because the writer was behind, since start.
    pub dropped: u64,
}

/// A node's state as `fubar ctl status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Node name, `name@host`.
    pub name: String,
    /// fubar version.
    pub version: String,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// Listeners, e.g. `mqtt://0.0.0.0:1883`.
    pub listeners: Vec<String>,
    /// Open MQTT connections.
    pub connections: u64,
    /// Sessions, online and offline.
    pub sessions: u64,
    /// Subscriptions (filter, session) in the router.
    pub subscriptions: u64,
    /// Retained messages.
    pub retained: u64,
    /// Resident memory of the node process, bytes.
    pub memory_bytes: u64,
    /// Cluster role (`standalone` until clustering).
    pub cluster_role: String,
    /// Whether clients must authenticate.
    pub auth: bool,
    /// Connections held back at accept by the node's accept rate limit, since start.
    pub delayed_accepts: u64,
    /// Connections slowed down by the per-client message rate limit, since start.
    pub throttled_clients: u64,
    /// PUBLISH packets received from clients, since start.
    pub messages_received: u64,
    /// PUBLISH packets sent to clients, since start.
    pub messages_sent: u64,
}

/// One address rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclRule {
    /// `ADDR/PREFIX`.
    pub cidr: String,
    /// Allow (true) or deny (false).
    pub allow: bool,
}

/// A node's answer to one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AdminResponse {
    /// The command was carried out; the text says what happened.
    Done(String),
    /// The command was refused or failed; the text says why and what is allowed.
    Error(String),
    /// The node's status.
    Status(NodeStatus),
    /// Account names.
    Accounts(Vec<String>),
    /// Address rules.
    Acl(Vec<AclRule>),
    /// Effective settings as (dotted name, TOML value) pairs.
    Settings(Vec<(String, String)>),
    /// Log classes.
    LogClasses(Vec<LogClassStatus>),
    /// Traced client ids and topic filters.
    Traces {
        /// Client ids.
        clients: Vec<String>,
        /// Topic filters.
        topics: Vec<String>,
    },
    /// Events, newest first (a search).
    Events(Vec<Event>),
    /// One event of a live tail.
    Event(Event),
    /// A live tail fell behind and missed this many events.
    Missed(u64),
    /// Every node's log link (on the monitor).
    LogLinks(Vec<LinkStatus>),
    /// The cluster as the node sees it.
    Cluster(ClusterStatus),
    /// A class's dump begins (`LogDump`); its text follows.
    DumpStart {
        /// The node dumping.
        node: String,
        /// The class.
        class: String,
    },
    /// The next piece of the class's text lines (a piece may end mid-line).
    DumpText(Vec<u8>),
    /// A class's dump is complete, or was cut short.
    DumpEnd {
        /// The class.
        class: String,
        /// Events sent as lines.
        events: u64,
        /// Corrupt bytes skipped.
        skipped_bytes: u64,
        /// Why the dump stopped before its end (the size bound), if it did.
        cut: Option<String>,
    },
    /// Topic rules, as text, with `acl.default`.
    TopicRules {
        /// The rules.
        rules: Vec<String>,
        /// `allow` or `deny`.
        default: String,
    },
}

/// One cluster member as `fubar ctl cluster status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    /// `NAME@HOST`.
    pub name: String,
    /// Cluster address.
    pub addr: String,
    /// `broker` or `monitor`.
    pub role: String,
    /// `voter` or `learner`.
    pub kind: String,
    /// `self`, `up`, or `down` (with how long it has been silent).
    pub link: String,
    /// Log entries it is behind the leader (known on the leader only).
    pub lag: Option<u64>,
}

/// The cluster as one node sees it (`fubar ctl cluster status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The node answering.
    pub node: String,
    /// The leader's name, if there is one.
    pub leader: Option<String>,
    /// Raft term.
    pub term: u64,
    /// Index of the last applied entry.
    pub applied: u64,
    /// Every member.
    pub members: Vec<MemberStatus>,
    /// Routes (filter, node) in the table.
    pub routes: u64,
    /// Registered client ids.
    pub clients: u64,
    /// Changes waiting to be committed (a minority side keeps them until it heals).
    pub pending: u64,
}
