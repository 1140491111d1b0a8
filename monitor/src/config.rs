//! Every limit and default of the log link, in one place (the settings file will map onto
//! these structs).

use std::time::Duration;

use fubar_logproto::Class;

/// Largest frame body the monitor reads by default, bytes (a batch is one frame).
pub const DEFAULT_MAX_FRAME: usize = 4 << 20;
/// Most events the monitor takes in one batch by default.
pub const DEFAULT_MAX_BATCH_EVENTS: usize = 10_000;
/// Most `lost` ranges one batch may carry.
pub const MAX_LOST_RANGES: usize = 64;
/// Connections the cluster port serves at once by default, proven or not (setting
/// `cluster.max_connections`); more are refused at accept.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Connections not proven yet from addresses that have not proven membership recently
/// (strangers), all together, by default (setting `cluster.max_unproven_connections`): the
/// rest of `max_connections` stays for members, operators and the addresses they came from,
/// so unproven connections from many addresses cannot fill the port.
pub const DEFAULT_MAX_UNPROVEN: usize = 256;
/// Addresses (IPv6: /64 networks) remembered as having proven membership, whose unproven
/// connections may use the share of the slots strangers cannot; beyond, the one that proved
/// longest ago is forgotten.
pub const MAX_KNOWN_ADDRESSES: usize = 4096;
/// Time a node's shipper gives a connection and the membership proof, by default.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a peer has on the server for TLS, `Hello` and its proof, by default (setting
/// `cluster.proof_timeout_ms`): short, since a slot held by a non-member is a slot lost.
pub const DEFAULT_PROOF_TIMEOUT: Duration = Duration::from_secs(3);
/// Connections one address may have that have not proven membership yet, by default
/// (setting `cluster.max_unproven_per_address`); more are refused before any handshake.
pub const DEFAULT_MAX_UNPROVEN_PER_ADDRESS: usize = 16;
/// Interval of the refusal warnings of one address, by default (setting
/// `cluster.refusal_warning_ms`): one warning per address and interval, with the count of the
/// refusals it stands for.
pub const DEFAULT_REFUSAL_WARNING_INTERVAL: Duration = Duration::from_secs(10);
/// Addresses whose refusals are counted for the rate-limited warnings; beyond, the oldest
/// entries are forgotten (their next refusal is warned about at once, within the budget of
/// `DEFAULT_MAX_REFUSAL_WARNINGS`).
pub const MAX_REFUSAL_ADDRESSES: usize = 4096;
/// Refusal warnings per interval over all addresses, by default (setting
/// `cluster.max_refusal_warnings`): beyond, refusals are only counted, and one summary
/// warning with their count follows at the end of the interval.
pub const DEFAULT_MAX_REFUSAL_WARNINGS: usize = 32;
/// A link with no traffic at all for this long is dead (QUIC idle timeout); nodes send
/// keep-alives at a third of it.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Nodes whose statistics and duplicate filters the monitor keeps; the longest-silent
/// disconnected node is forgotten beyond it.
pub const DEFAULT_MAX_NODES: usize = 4096;
/// Streams a cluster peer may have open at once on one link (requests in flight).
pub const DEFAULT_MAX_PEER_STREAMS: u32 = 64;
/// Admitted cluster peer links waiting for the node to take them.
pub const PEER_QUEUE: usize = 64;
/// Boot epochs per node whose duplicate filters are kept (a node's spool may still hold
/// events of its previous boots).
pub const MAX_EPOCHS_PER_NODE: usize = 8;
/// Classes shipped by every node unless the monitor is told otherwise (`log collect`): the
/// ones an operator searches; packet, protocol and debug are heavy and stay local.
pub const DEFAULT_COLLECT: [Class; 6] = [
    Class::Access,
    Class::Resource,
    Class::Info,
    Class::Warning,
    Class::Error,
    Class::Trace,
];

/// The default bound of a node's on-disk spool, bytes.
pub const DEFAULT_SPOOL_BYTES: u64 = 256 << 20;
/// Spool files per spool by default (the spool drops a whole file, the oldest, on overflow).
pub const DEFAULT_SPOOL_FILES: u64 = 16;
/// Events per batch a node sends by default.
pub const DEFAULT_BATCH_EVENTS: usize = 2_000;
/// Bytes of events per batch a node sends by default.
pub const DEFAULT_BATCH_BYTES: usize = 1 << 20;
/// Batches a node sends ahead of their acknowledgements by default.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4;
/// First wait before reconnecting to the monitor.
pub const DEFAULT_BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Time a node waits for an acknowledgement before it gives the link up and resends.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(3);

/// Longest wait between reconnection attempts.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(10);

/// The monitor's limits on each link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkLimits {
    /// Largest frame body read, bytes; a longer one closes that connection.
    pub max_frame: usize,
    /// Most events in one batch; more closes that connection.
    pub max_batch_events: usize,
    /// Connections served at once, proven or not.
    pub max_connections: usize,
    /// Unproven connections from strangers (addresses not known to have proven membership),
    /// all together; less than `max_connections`.
    pub max_unproven: usize,
    /// Time for TLS, `Hello` and the proof.
    pub handshake_timeout: Duration,
    /// Connections not yet proven from one address.
    pub max_unproven_per_address: usize,
    /// One refusal warning per address per this interval.
    pub refusal_warning_interval: Duration,
    /// Refusal warnings per interval over all addresses; beyond, one summary.
    pub max_refusal_warnings: usize,
    /// QUIC idle timeout.
    pub idle_timeout: Duration,
    /// Nodes remembered (statistics, duplicate filters).
    pub max_nodes: usize,
}

impl Default for LinkLimits {
    fn default() -> Self {
        Self {
            max_frame: DEFAULT_MAX_FRAME,
            max_batch_events: DEFAULT_MAX_BATCH_EVENTS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_unproven: DEFAULT_MAX_UNPROVEN,
            handshake_timeout: DEFAULT_PROOF_TIMEOUT,
            max_unproven_per_address: DEFAULT_MAX_UNPROVEN_PER_ADDRESS,
            refusal_warning_interval: DEFAULT_REFUSAL_WARNING_INTERVAL,
            max_refusal_warnings: DEFAULT_MAX_REFUSAL_WARNINGS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_nodes: DEFAULT_MAX_NODES,
        }
    }
}

/// The largest UDP payload QUIC's path MTU discovery tries (quinn's default stops at 1452,
/// Ethernet's). Links inside a data centre often carry jumbo frames, and loopback 64 KiB: every
/// packet costs its encryption, header protection and acknowledgement whatever its size, so
/// bigger packets are less CPU per message. Discovery only keeps sizes the path delivers
/// (QUIC never lets IP fragment them), so a path with a smaller MTU costs a few lost probes.
pub const MAX_UDP_PAYLOAD: u16 = 65_527;

/// Path MTU discovery up to [`MAX_UDP_PAYLOAD`], for every QUIC link.
pub fn mtu_discovery() -> quinn::MtuDiscoveryConfig {
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(MAX_UDP_PAYLOAD);
    mtu
}

impl LinkLimits {
    /// Bytes QUIC may buffer per stream and per connection before the peer must wait: one
    /// full frame and its header, plus one more, so a pipelining node is not stalled while
    /// the monitor writes the previous batch.
    pub fn receive_window(&self) -> u64 {
        2 * (self.max_frame as u64 + 4)
    }
}

/// How a node ships its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShipperLimits {
    /// Most events per batch (the monitor's `Welcome` may lower it).
    pub batch_events: usize,
    /// Most event bytes per batch (kept under the monitor's frame limit).
    pub batch_bytes: usize,
    /// Batches sent ahead of their acknowledgements.
    pub max_in_flight: usize,
    /// First wait before reconnecting; doubles up to `backoff_max`.
    pub backoff_min: Duration,
    /// Longest wait between attempts.
    pub backoff_max: Duration,
    /// Time for the connection and the membership proof.
    pub connect_timeout: Duration,
    /// QUIC idle timeout (keep-alives at a third of it).
    pub idle_timeout: Duration,
    /// Time the oldest unacknowledged batch may wait before the link is given up and
    /// everything unacknowledged is resent on a new one.
    pub ack_timeout: Duration,
}

impl Default for ShipperLimits {
    fn default() -> Self {
        Self {
            batch_events: DEFAULT_BATCH_EVENTS,
            batch_bytes: DEFAULT_BATCH_BYTES,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            backoff_min: DEFAULT_BACKOFF_MIN,
            backoff_max: DEFAULT_BACKOFF_MAX,
            connect_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            ack_timeout: DEFAULT_ACK_TIMEOUT,
        }
    }
}
