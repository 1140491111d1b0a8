//! Settings of the cluster links and of the monitor role: where the QUIC port is, how a node
//! proves it belongs, where its events are shipped, and how the monitor indexes them.

use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The cluster port, membership proof and log shipping of a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSettings {
    /// Address of the cluster (QUIC) listener of a monitor [default: `mqtt.bind`].
    pub bind: Option<IpAddr>,
    /// UDP port of the cluster (QUIC) listener; 0 picks a free one.
    pub port: u16,
    /// The monitor this node ships its events to, `NAME@HOST[:PORT]` (empty: none).
    pub master: String,
    /// The cluster cookie, a secret shared by every member (0600) [default:
    /// `<data_dir>/cookie`, created on first use].
    pub cookie_file: PathBuf,
    /// The cluster's own CA (PEM), for operators who bring one: members' node certificates
    /// (`fubar ssl new-certs --node NAME`) are checked against it, and one naming a known
    /// member stands for it. Never the MQTT client CA. Empty: the cookie alone decides, and
    /// each node uses the identity it made itself under `<data_dir>/<name>/cluster-tls/`.
    pub cafile: PathBuf,
    /// This node's certificate of `cluster.cafile` (PEM, from `fubar ssl new-certs --node
    /// NAME`), presented on the cluster port and to other members (empty: the self-made one).
    pub node_certfile: PathBuf,
    /// Its private key (PEM).
    pub node_keyfile: PathBuf,
    /// Milliseconds a connection to the cluster port has for its TLS handshake and its
    /// membership proof; then it is closed.
    pub proof_timeout_ms: u64,
    /// Connections the cluster port serves at once, proven or not; more are refused before
    /// any handshake.
    pub max_connections: usize,
    /// Connections not proven yet from addresses no member or operator has proven itself
    /// from (strangers), all together; less than `cluster.max_connections`, whose rest stays
    /// for members.
    pub max_unproven_connections: usize,
    /// Connections from one address (IPv6: one /64) that have not proven membership yet;
    /// more are refused before any handshake.
    pub max_unproven_per_address: usize,
    /// Milliseconds between two warnings about refused connections from one address (the
    /// warning counts the refusals in between).
    pub refusal_warning_ms: u64,
    /// Refusal warnings per `cluster.refusal_warning_ms` over all addresses; beyond, one
    /// summary warning with the count of the others.
    pub max_refusal_warnings: usize,
    /// Milliseconds a node waits to join its cluster before it says on stderr that it is
    /// alone; it says it again at twice the wait each time.
    pub join_warning_ms: u64,
    /// Bytes of events kept on disk for the monitor while it is away or behind; beyond them
    /// the oldest are dropped and the loss is logged.
    pub spool_bytes: u64,
    /// Most voting members of the replicated state (odd; further members follow as learners).
    pub max_voters: usize,
    /// Messages waiting for each other member, and as many sent but not acknowledged; beyond
    /// them messages for that member are dropped and counted.
    pub forward_queue: usize,
    /// Milliseconds a request to another member (or a dial) may take.
    pub request_timeout_ms: u64,
    /// Milliseconds of silence after which the leader drops a member's routes and clients.
    pub node_down_ms: u64,
    /// Milliseconds of silence after which a link to another member is closed (and dialed
    /// again when next needed); keep-alives go every third of it.
    pub link_idle_ms: u64,
    /// Milliseconds between the leader's Raft heartbeats.
    pub heartbeat_ms: u64,
    /// Milliseconds without a leader before a member calls an election (at random up to
    /// twice this).
    pub election_timeout_ms: u64,
    /// Milliseconds a backup has to acknowledge a persistent session's writes; past it a
    /// `warning`, and the PUBACK/PUBREC waiting on them is refused (the publisher sends again).
    pub replica_ack_timeout_ms: u64,
    /// Session journal writes waiting for each backup, and as many unacknowledged; beyond
    /// them a write is not replicated and the acknowledgement waiting on it is refused.
    pub replica_queue: usize,
    /// Batches a node takes from another member's stream of forwarded messages or session
    /// copies while earlier ones wait for their fsync and backups; beyond them it reads no
    /// more from that stream until the oldest is acknowledged (read as a stream opens).
    pub receive_window: usize,
    /// Milliseconds a node keeps serving its persistent sessions without hearing from a
    /// majority of the members; then it closes their connections (less than
    /// `cluster.node_down_ms`, after which the others may move them).
    pub session_lease_ms: u64,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            bind: None,
            port: super::node_name::DEFAULT_CLUSTER_PORT,
            master: String::new(),
            cookie_file: PathBuf::new(),
            cafile: PathBuf::new(),
            node_certfile: PathBuf::new(),
            node_keyfile: PathBuf::new(),
            proof_timeout_ms: fubar_monitor::config::DEFAULT_PROOF_TIMEOUT.as_millis() as u64,
            max_connections: fubar_monitor::config::DEFAULT_MAX_CONNECTIONS,
            max_unproven_connections: fubar_monitor::config::DEFAULT_MAX_UNPROVEN,
            max_unproven_per_address: fubar_monitor::config::DEFAULT_MAX_UNPROVEN_PER_ADDRESS,
            refusal_warning_ms: fubar_monitor::config::DEFAULT_REFUSAL_WARNING_INTERVAL.as_millis()
                as u64,
            max_refusal_warnings: fubar_monitor::config::DEFAULT_MAX_REFUSAL_WARNINGS,
            join_warning_ms: 5_000,
            spool_bytes: fubar_monitor::config::DEFAULT_SPOOL_BYTES,
            max_voters: 3,
            forward_queue: 1_000_000,
            request_timeout_ms: 5_000,
            node_down_ms: 2_000,
            link_idle_ms: 3_000,
            heartbeat_ms: 250,
            election_timeout_ms: 1_000,
            replica_ack_timeout_ms: 3_000,
            replica_queue: 1_000_000,
            receive_window: 1024,
            session_lease_ms: 1_500,
        }
    }
}

impl ClusterSettings {
    /// A node must stop serving its persistent sessions (`session_lease_ms`) before the
    /// others may drop it and move them (`node_down_ms`): else both sides of a partition
    /// could deliver one session at once.
    pub(super) fn validate(&self) -> Result<(), super::SettingsError> {
        if self.session_lease_ms == 0 || self.session_lease_ms >= self.node_down_ms {
            return Err(super::SettingsError::Invalid {
                name: "cluster.session_lease_ms",
                why: format!(
                    "must be 1 ..= cluster.node_down_ms - 1 (is {}, cluster.node_down_ms is {}): \
                     a node cut off from the majority must close its persistent sessions \
                     before the others may move them",
                    self.session_lease_ms, self.node_down_ms
                ),
            });
        }
        Ok(())
    }
}

/// The monitor role (`fubar monitor`): what it collects and how it indexes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitorSettings {
    /// Classes every node ships to the monitor (`fubar ctl log collect CLASS on|off` changes
    /// them at run time).
    pub collect: Vec<String>,
    /// Memory of the index writer, bytes (at least 15,000,000).
    pub index_heap_bytes: usize,
    /// Milliseconds between index commits: how soon an event is searchable.
    pub index_commit_ms: u64,
    /// Seconds of events kept in the index (0: as long as they are in the segments).
    pub index_retention_secs: u64,
}

impl Default for MonitorSettings {
    fn default() -> Self {
        Self {
            collect: fubar_monitor::config::DEFAULT_COLLECT
                .iter()
                .map(|c| c.name().to_owned())
                .collect(),
            index_heap_bytes: fubar_monitor::index::DEFAULT_INDEX_HEAP_BYTES,
            index_commit_ms: fubar_monitor::indexer::DEFAULT_COMMIT_INTERVAL.as_millis() as u64,
            index_retention_secs: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_lease_must_end_before_a_silent_node_is_dropped() {
        ClusterSettings::default().validate().unwrap();
        let mut c = ClusterSettings {
            session_lease_ms: 2_000,
            node_down_ms: 2_000,
            ..Default::default()
        };
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("cluster.session_lease_ms") && err.contains("cluster.node_down_ms"),
            "{err}"
        );
        c.node_down_ms = 2_001;
        c.validate().unwrap();
        c.session_lease_ms = 0;
        assert!(c.validate().is_err());
    }
}
