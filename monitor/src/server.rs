//! A node's QUIC endpoint on the cluster port: accepts links, checks membership, and serves
//! each by its ALPN. Log links (a monitor's job): batches through the duplicate filter into
//! the sink, acknowledgements of what is durable, per-node statistics. Remote admin: requests
//! to the handler the node installed. Cluster peers: handed to the node's cluster layer, which
//! also dials other members from this endpoint (`connect_peer`).

mod connection;

use parking_lot::{Mutex, MutexGuard, RwLock};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use fubar_logproto::Class;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Connection, Endpoint, IdleTimeout, TransportConfig, VarInt};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;

use crate::admin::AdminCall;
use crate::config::{
    LinkLimits, DEFAULT_COLLECT, DEFAULT_MAX_PEER_STREAMS, MAX_KNOWN_ADDRESSES,
    MAX_REFUSAL_ADDRESSES,
};
use crate::cookie::Cookie;
use crate::dedup::NodeDedup;
use crate::shipper::MAX_SPOOL_ENTRY;
use crate::sink::EventSink;
use crate::stats::{NodeLive, NodeStats};
use crate::MonitorError;

/// The smallest frame limit accepted: the largest shipped event must fit in one batch.
pub const MIN_MAX_FRAME: usize = MAX_SPOOL_ENTRY + (128 << 10);

/// How the monitor's endpoint starts.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to bind (port 0 picks one).
    pub bind: SocketAddr,
    /// Limits per link.
    pub limits: LinkLimits,
    /// Classes the nodes ship at start.
    pub collect: Vec<Class>,
    /// Highest sequence numbers already in the segments per (node, epoch)
    /// (`fubar_logs::high_water_marks`), so resends after a monitor restart are recognised.
    pub high_water: BTreeMap<(String, u64), u64>,
    /// This node's name and boot epoch, for the membership proof when it dials a peer.
    pub node: String,
    /// See `node`.
    pub epoch: u64,
    /// Whether the TLS configuration checks peer certificates against the cluster's own CA,
    /// so that a node certificate naming a known member stands for it without the cookie.
    /// False when certificates are taken unchecked (the cookie mode): only the cookie counts.
    pub certs_vouch: bool,
}

/// An admitted cluster peer link (ALPN `fubar-cluster/1`): the handshake stream is done;
/// the peer opens a stream per request from here on.
#[derive(Debug)]
pub struct PeerLink {
    /// The member's name, as proven.
    pub node: String,
    /// The connection.
    pub conn: Connection,
}

impl ServerConfig {
    /// The defaults, on `bind`.
    pub fn new(bind: SocketAddr) -> Self {
        Self {
            bind,
            limits: LinkLimits::default(),
            collect: DEFAULT_COLLECT.to_vec(),
            high_water: BTreeMap::new(),
            node: String::new(),
            epoch: 0,
            certs_vouch: false,
        }
    }
}

/// The running endpoint; cheap to clone.
#[derive(Clone, Debug)]
pub struct MonitorServer {
    inner: Arc<Inner>,
}

/// One node the monitor knows.
struct NodeEntry {
    /// Held across plan, write and commit, so one node's batches are written one at a time
    /// even if an old link of it is still draining.
    dedup: Arc<tokio::sync::Mutex<NodeDedup>>,
    live: NodeLive,
    /// The link in use: its `stable_id` and handle.
    conn: Option<(usize, Connection)>,
}

pub(crate) struct Inner {
    endpoint: Endpoint,
    limits: LinkLimits,
    cookie: Option<Cookie>,
    sink: Arc<dyn EventSink>,
    nodes: Mutex<HashMap<String, NodeEntry>>,
    /// Per class (by `Class::index`), whether nodes ship it.
    collect: watch::Sender<[bool; Class::ALL.len()]>,
    refused: AtomicU64,
    connections: Arc<Semaphore>,
    accept: Mutex<Option<JoinHandle<()>>>,
    /// Where admitted remote admin requests go (`set_admin`); refused with an error reply
    /// until one is installed.
    admin: OnceLock<mpsc::Sender<AdminCall>>,
    /// Where admitted cluster peer links go (`set_peers`); refused until one is installed.
    pub(crate) peers: OnceLock<mpsc::Sender<PeerLink>>,
    node: String,
    epoch: u64,
    pub(crate) certs_vouch: bool,
    /// The cluster's members by name (`set_members`): a node certificate stands only for one.
    members: RwLock<HashSet<String>>,
    /// Connections not proven yet: per address, and those of strangers all together.
    unproven: Mutex<UnprovenTable>,
    /// Addresses (grouped, see `address_group`) from which a peer proved membership (or an
    /// operator its certificate), and when last: their unproven connections may use the
    /// slots strangers cannot.
    known: Mutex<HashMap<IpAddr, Instant>>,
    /// When each address was last warned about, and its refusals since.
    pub(crate) refusal_log: Arc<RefusalLog>,
}

/// Unproven connections, counted per address group and for strangers together.
#[derive(Debug, Default)]
struct UnprovenTable {
    per_address: HashMap<IpAddr, usize>,
    /// Those from addresses not known to have proven membership.
    strangers: usize,
}

/// The address a limit or a warning counts `ip` under: an IPv4 address (an IPv4-mapped IPv6
/// one included) is itself; an IPv6 address counts as its /64 network, which one host
/// usually holds whole, so it cannot spread over 2^64 addresses.
pub(crate) fn address_group(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
    }
}

/// A connection's place among the unproven ones of its address (and of strangers); given
/// back when dropped.
pub(crate) struct Unproven {
    inner: Arc<Inner>,
    group: IpAddr,
    stranger: bool,
}

impl Drop for Unproven {
    fn drop(&mut self) {
        let mut unproven = lock(&self.inner.unproven);
        if let Some(n) = unproven.per_address.get_mut(&self.group) {
            *n -= 1;
            if *n == 0 {
                unproven.per_address.remove(&self.group);
            }
        }
        if self.stranger {
            unproven.strangers -= 1;
        }
    }
}

/// Refusal warnings, rate-limited twice: one per address (IPv6: per /64) per interval,
/// counting the refusals between them, and at most `budget` per interval over all addresses;
/// beyond the budget refusals are only counted, and one summary warning says how many.
#[derive(Debug)]
pub(crate) struct RefusalLog {
    interval: Duration,
    budget: usize,
    table: Mutex<RefusalTable>,
}

#[derive(Debug)]
struct RefusalTable {
    /// Per address group: when it was last warned about, and refusals since (that one
    /// included).
    seen: HashMap<IpAddr, (Instant, u64)>,
    /// Start of the current interval of the global budget.
    window_at: Instant,
    /// Warnings given in it.
    warned: usize,
    /// Refusals not warned about in it because the budget was spent, and their addresses.
    suppressed: u64,
    suppressed_addresses: u64,
}

/// What to log for one refusal.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct RefusalVerdict {
    /// A warning about this address, standing for this many refusals.
    pub(crate) warn: Option<u64>,
    /// A summary of the previous interval: refusals and addresses not warned about.
    pub(crate) summary: Option<(u64, u64)>,
    /// The budget of this interval was just spent: a summary is due at `summary_at`.
    pub(crate) budget_spent: bool,
}

impl RefusalLog {
    pub(crate) fn new(interval: Duration, budget: usize, now: Instant) -> Self {
        Self {
            interval,
            budget,
            table: Mutex::new(RefusalTable {
                seen: HashMap::new(),
                window_at: now,
                warned: 0,
                suppressed: 0,
                suppressed_addresses: 0,
            }),
        }
    }

    /// Counts a refusal of `ip` at `now` and says what to log.
    pub(crate) fn due(&self, ip: IpAddr, now: Instant) -> RefusalVerdict {
        let ip = address_group(ip);
        let mut t = lock(&self.table);
        let mut verdict = RefusalVerdict {
            summary: t.roll(now, self.interval),
            ..RefusalVerdict::default()
        };
        if t.seen.len() >= MAX_REFUSAL_ADDRESSES && !t.seen.contains_key(&ip) {
            let interval = self.interval;
            t.seen
                .retain(|_, (at, _)| now.duration_since(*at) < interval);
            if t.seen.len() >= MAX_REFUSAL_ADDRESSES {
                t.seen.clear();
            }
        }
        let refusals = match t.seen.get_mut(&ip) {
            Some((at, count)) if now.duration_since(*at) < self.interval => {
                *count += 1;
                return verdict;
            }
            Some((at, count)) => {
                let refusals = *count + 1;
                *at = now;
                *count = 0;
                refusals
            }
            None => {
                t.seen.insert(ip, (now, 0));
                1
            }
        };
        if t.warned < self.budget {
            t.warned += 1;
            verdict.warn = Some(refusals);
        } else {
            verdict.budget_spent = t.suppressed == 0;
            t.suppressed += refusals;
            t.suppressed_addresses += 1;
        }
        verdict
    }

    /// The interval of the warnings.
    pub(crate) fn interval(&self) -> Duration {
        self.interval
    }

    /// When the summary of the current interval is due.
    pub(crate) fn summary_at(&self) -> Instant {
        lock(&self.table).window_at + self.interval
    }

    /// The summary of an interval over by `now` (refusals and addresses not warned about),
    /// if it has one not given yet.
    pub(crate) fn summary(&self, now: Instant) -> Option<(u64, u64)> {
        lock(&self.table).roll(now, self.interval)
    }
}

impl RefusalTable {
    /// Starts a new budget interval if the current one is over; returns its summary if
    /// refusals went unwarned in it.
    fn roll(&mut self, now: Instant, interval: Duration) -> Option<(u64, u64)> {
        if now.duration_since(self.window_at) < interval {
            return None;
        }
        self.window_at = now;
        self.warned = 0;
        let summary = (self.suppressed > 0).then_some((self.suppressed, self.suppressed_addresses));
        self.suppressed = 0;
        self.suppressed_addresses = 0;
        summary
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MonitorServer")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl MonitorServer {
    /// Binds the endpoint and starts accepting (needs a tokio runtime).
    ///
    /// `tls` is a TLS 1.3 server configuration offering `LOG_ALPN`, and `ADMIN_ALPN` if
    /// remote admin is served (`fubar_ssl::cluster_server_config`). A peer is a member if it
    /// proves `cookie` (after this side has proven it), or, when `config.certs_vouch` (the
    /// configuration checks client certificates against the cluster's own CA), presents a
    /// node certificate whose CN is its name and a member of `set_members`. A certificate
    /// that is not a node certificate is refused whatever else comes with it. Before the
    /// proof a peer's frames are at most `MAX_HELLO_FRAME` bytes, its address holds at most
    /// `limits.max_unproven_per_address` connections, and it has `limits.handshake_timeout`;
    /// strangers (addresses no member or operator proved itself from lately) hold at most
    /// `limits.max_unproven` connections together, so the rest of `limits.max_connections`
    /// stays for members.
    /// `sink` writes the events (the log engine).
    pub fn start(
        config: ServerConfig,
        tls: Arc<rustls::ServerConfig>,
        cookie: Option<Cookie>,
        sink: Arc<dyn EventSink>,
    ) -> Result<Self, MonitorError> {
        let limits = config.limits.clone();
        check_limits(&limits)?;
        let crypto =
            QuicServerConfig::try_from(tls).map_err(|e| MonitorError::Tls(e.to_string()))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        server.transport_config(Arc::new(transport(&limits)?));
        let endpoint =
            Endpoint::server(server, config.bind).map_err(|source| MonitorError::Net {
                op: "bind the monitor's UDP socket",
                source,
            })?;
        let mut collect = [false; Class::ALL.len()];
        for class in &config.collect {
            collect[class.index()] = true;
        }
        let now = Instant::now();
        let mut nodes: HashMap<String, NodeEntry> = HashMap::new();
        for ((node, epoch), upto) in &config.high_water {
            let entry = nodes
                .entry(node.clone())
                .or_insert_with(|| NodeEntry::new(now));
            if let Ok(mut dedup) = entry.dedup.try_lock() {
                dedup.seed(*epoch, *upto);
            }
        }
        let inner = Arc::new(Inner {
            endpoint: endpoint.clone(),
            connections: Arc::new(Semaphore::new(limits.max_connections)),
            limits,
            cookie,
            sink,
            nodes: Mutex::new(nodes),
            collect: watch::channel(collect).0,
            refused: AtomicU64::new(0),
            accept: Mutex::new(None),
            admin: OnceLock::new(),
            peers: OnceLock::new(),
            node: config.node.clone(),
            epoch: config.epoch,
            certs_vouch: config.certs_vouch,
            members: RwLock::default(),
            unproven: Mutex::default(),
            known: Mutex::default(),
            refusal_log: Arc::new(RefusalLog::new(
                config.limits.refusal_warning_interval,
                config.limits.max_refusal_warnings,
                now,
            )),
        });
        let task = tokio::spawn(accept_loop(Arc::clone(&inner)));
        *lock(&inner.accept) = Some(task);
        Ok(Self { inner })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr, MonitorError> {
        self.inner
            .endpoint
            .local_addr()
            .map_err(|source| MonitorError::Net {
                op: "read the monitor's address",
                source,
            })
    }

    /// Every known node's statistics, by name.
    pub fn stats(&self) -> Vec<NodeStats> {
        let now = Instant::now();
        let mut nodes = lock(&self.inner.nodes);
        let mut all: Vec<NodeStats> = nodes
            .iter_mut()
            .map(|(name, e)| e.live.snapshot(name, now))
            .collect();
        all.sort_by(|a, b| a.node.cmp(&b.node));
        all
    }

    /// Installs the handler of remote admin requests (ALPN `fubar-admin/1`): each admitted
    /// request arrives on `calls` with the sender of its replies. Only the first call counts.
    pub fn set_admin(&self, calls: mpsc::Sender<AdminCall>) {
        let _ = self.inner.admin.set(calls);
    }

    /// The cluster's members, by name, as the node's replicated membership says: a node
    /// certificate of the cluster CA stands only for one of them.
    pub fn set_members(&self, names: impl IntoIterator<Item = String>) {
        *self.inner.members.write() = names.into_iter().collect();
    }

    /// Installs the taker of cluster peer links (ALPN `fubar-cluster/1`). Only the first call
    /// counts.
    pub fn set_peers(&self, links: mpsc::Sender<PeerLink>) {
        let _ = self.inner.peers.set(links);
    }

    /// Dials the member at `addr` (whose certificate must name `server_name`) from this
    /// endpoint and proves membership as this node; `tls` offers `PEER_ALPN`. The returned
    /// connection is ready for request streams.
    ///
    /// `idle` is the link's idle timeout (keep-alives go every third of it): a member that
    /// died is noticed within it, and the next request dials again.
    pub async fn connect_peer(
        &self,
        tls: Arc<rustls::ClientConfig>,
        addr: SocketAddr,
        server_name: &str,
        idle: Duration,
    ) -> Result<Connection, MonitorError> {
        let crypto =
            QuicClientConfig::try_from(tls).map_err(|e| MonitorError::Tls(e.to_string()))?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        let mut transport = transport(&self.inner.limits)?;
        let idle_timeout = IdleTimeout::try_from(idle)
            .map_err(|e| MonitorError::BadConfig(format!("idle timeout: {e}")))?;
        transport
            .max_idle_timeout(Some(idle_timeout))
            .keep_alive_interval(Some(idle / 3));
        config.transport_config(Arc::new(transport));
        let conn = self
            .inner
            .endpoint
            .connect_with(config, addr, server_name)?
            .await?;
        let mut joined = crate::membership::join(
            &conn,
            &self.inner.node,
            self.inner.epoch,
            self.inner.cookie.as_ref(),
        )
        .await?;
        joined
            .send
            .finish()
            .map_err(|e| MonitorError::Stream(e.to_string()))?;
        Ok(conn)
    }

    /// Peers refused (not members, too many connections) since start.
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }

    /// Turns shipping of `class` on or off on every node, connected now or later.
    pub fn set_collect(&self, class: Class, on: bool) {
        self.inner.collect.send_modify(|c| c[class.index()] = on);
    }

    /// The classes the nodes ship.
    pub fn collected(&self) -> Vec<Class> {
        let c = *self.inner.collect.borrow();
        Class::ALL.into_iter().filter(|k| c[k.index()]).collect()
    }

    /// Closes a node's link, if it has one (it reconnects and resends what was not acked).
    pub fn disconnect(&self, node: &str) -> bool {
        let conn = lock(&self.inner.nodes)
            .get(node)
            .and_then(|e| e.conn.as_ref().map(|(_, c)| c.clone()));
        conn.map(|c| c.close(VarInt::from_u32(3), b"disconnected"))
            .is_some()
    }

    /// Stops accepting, closes every link and waits (a little) for them to go.
    pub async fn shutdown(&self) {
        if let Some(task) = lock(&self.inner.accept).take() {
            task.abort();
        }
        self.inner.endpoint.close(VarInt::from_u32(0), b"shutdown");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.inner.endpoint.wait_idle()).await;
    }
}

impl Inner {
    /// Remembers that a peer proved itself from `ip`: its address's unproven connections
    /// may use the slots strangers cannot.
    pub(crate) fn remember(&self, ip: IpAddr, now: Instant) {
        let group = address_group(ip);
        let mut known = lock(&self.known);
        if known.len() >= MAX_KNOWN_ADDRESSES && !known.contains_key(&group) {
            if let Some(oldest) = known.iter().min_by_key(|(_, at)| **at).map(|(ip, _)| *ip) {
                known.remove(&oldest);
            }
        }
        known.insert(group, now);
    }

    /// Whether a peer proved itself from `group` (an `address_group`).
    fn is_known(&self, group: IpAddr) -> bool {
        lock(&self.known).contains_key(&group)
    }

    /// Whether `name` is a member the cluster knows.
    pub(crate) fn is_member(&self, name: &str) -> bool {
        self.members.read().contains(name)
    }
}

impl NodeEntry {
    fn new(now: Instant) -> Self {
        Self {
            dedup: Arc::new(tokio::sync::Mutex::new(NodeDedup::default())),
            live: NodeLive::new(now),
            conn: None,
        }
    }
}

impl Inner {
    /// Makes `conn` the link of `node` (closing an older one); `None` if the node table is
    /// full of connected nodes.
    fn register(
        &self,
        node: &str,
        conn: &Connection,
    ) -> Option<Arc<tokio::sync::Mutex<NodeDedup>>> {
        let now = Instant::now();
        let mut nodes = lock(&self.nodes);
        if !nodes.contains_key(node) && nodes.len() >= self.limits.max_nodes {
            // Forget the longest-silent node that is not connected.
            let oldest = nodes
                .iter()
                .filter(|(_, e)| e.conn.is_none())
                .min_by_key(|(_, e)| e.live.last_seen)
                .map(|(n, _)| n.clone())?;
            nodes.remove(&oldest);
        }
        let entry = nodes
            .entry(node.to_owned())
            .or_insert_with(|| NodeEntry::new(now));
        if let Some((_, old)) = entry.conn.replace((conn.stable_id(), conn.clone())) {
            old.close(VarInt::from_u32(2), b"superseded");
        }
        entry.live.connected = true;
        entry.live.peer = Some(conn.remote_address());
        entry.live.last_seen = now;
        Some(Arc::clone(&entry.dedup))
    }

    /// The link `conn` of `node` has ended.
    fn unregister(&self, node: &str, conn: &Connection) {
        let mut nodes = lock(&self.nodes);
        if let Some(entry) = nodes.get_mut(node) {
            if entry
                .conn
                .as_ref()
                .is_some_and(|(id, _)| *id == conn.stable_id())
            {
                entry.conn = None;
                entry.live.connected = false;
                entry.live.last_seen = Instant::now();
            }
        }
    }

    /// Runs `f` on a node's live statistics.
    fn with_live(&self, node: &str, f: impl FnOnce(&mut NodeLive)) {
        if let Some(entry) = lock(&self.nodes).get_mut(node) {
            f(&mut entry.live);
        }
    }
}

fn check_limits(limits: &LinkLimits) -> Result<(), MonitorError> {
    let bad = if limits.max_frame < MIN_MAX_FRAME {
        format!("max_frame must be at least {MIN_MAX_FRAME} bytes")
    } else if limits.max_frame > u32::MAX as usize {
        "max_frame must fit in 32 bits".to_owned()
    } else if limits.max_batch_events == 0
        || limits.max_connections == 0
        || limits.max_unproven == 0
        || limits.max_unproven_per_address == 0
        || limits.max_refusal_warnings == 0
    {
        "max_batch_events, max_connections, max_unproven, max_unproven_per_address and \
         max_refusal_warnings must be at least 1"
            .to_owned()
    } else if limits.max_unproven >= limits.max_connections {
        "max_unproven must be less than max_connections (the rest is kept for members)".to_owned()
    } else if limits.max_nodes < limits.max_connections {
        "max_nodes must be at least max_connections".to_owned()
    } else {
        return Ok(());
    };
    Err(MonitorError::BadConfig(bad))
}

/// QUIC transport limits: flow-control windows sized to the frame limit; a log or admin link
/// uses one stream, a cluster peer link one per request in flight.
/// Bytes an unproven connection may have buffered at the server (a hello and a proof need
/// a few hundred).
pub(crate) const PRE_PROOF_WINDOW: u32 = 16 * 1024;

fn transport(limits: &LinkLimits) -> Result<TransportConfig, MonitorError> {
    let window = VarInt::from_u64(limits.receive_window())
        .map_err(|_| MonitorError::BadConfig("max_frame too large".into()))?;
    let idle = IdleTimeout::try_from(limits.idle_timeout)
        .map_err(|e| MonitorError::BadConfig(format!("idle timeout: {e}")))?;
    // Until a peer has proven membership it may open one stream and have at most
    // `PRE_PROOF_WINDOW` bytes buffered here (quinn buffers what a peer sends up to its
    // windows, read or not: 8 MiB each would let unproven connections hold gigabytes);
    // `admit` raises both once the proof holds.
    let mut t = TransportConfig::default();
    t.max_concurrent_bidi_streams(VarInt::from_u32(1))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .stream_receive_window(window)
        .receive_window(VarInt::from_u32(PRE_PROOF_WINDOW))
        .max_idle_timeout(Some(idle))
        .mtu_discovery_config(Some(crate::config::mtu_discovery()));
    Ok(t)
}

async fn accept_loop(inner: Arc<Inner>) {
    while let Some(incoming) = inner.endpoint.accept().await {
        // QUIC address validation first (a Retry: one round trip), so that the limits below
        // count addresses that are really there, not spoofed ones.
        if !incoming.remote_address_validated() {
            if incoming.may_retry() {
                let _ = incoming.retry();
            } else {
                incoming.ignore();
            }
            continue;
        }
        let peer = incoming.remote_address();
        let unproven = match take_unproven(&inner, peer.ip()) {
            Ok(unproven) => unproven,
            Err(why) => {
                connection::refusal(&inner, peer, None, why);
                incoming.refuse();
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&inner.connections).try_acquire_owned() else {
            connection::refusal(&inner, peer, None, "too many connections");
            incoming.refuse();
            continue;
        };
        tokio::spawn(connection::run(
            Arc::clone(&inner),
            incoming,
            permit,
            unproven,
        ));
    }
}

/// A pre-proof slot for a connection from `ip`, unless its address has all of its share
/// already, or it is a stranger's and the strangers' share is taken.
fn take_unproven(inner: &Arc<Inner>, ip: IpAddr) -> Result<Unproven, &'static str> {
    let group = address_group(ip);
    let stranger = !inner.is_known(group);
    let mut unproven = lock(&inner.unproven);
    if unproven.per_address.get(&group).copied().unwrap_or(0)
        >= inner.limits.max_unproven_per_address
    {
        return Err("too many connections not proven yet from this address");
    }
    if stranger && unproven.strangers >= inner.limits.max_unproven {
        return Err("too many connections not proven yet from addresses not known as members'");
    }
    *unproven.per_address.entry(group).or_insert(0) += 1;
    if stranger {
        unproven.strangers += 1;
    }
    Ok(Unproven {
        inner: Arc::clone(inner),
        group,
        stranger,
    })
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_warned_about_once_per_address_and_interval_with_their_count() {
        let t0 = Instant::now();
        let log = RefusalLog::new(Duration::from_secs(10), 32, t0);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert_eq!(log.due(a, t0).warn, Some(1), "the first one at once");
        for i in 1..=500 {
            assert_eq!(log.due(a, t0 + Duration::from_millis(i)).warn, None);
        }
        assert_eq!(log.due(b, t0).warn, Some(1), "another address is its own");
        // The next interval's first refusal stands for the 500 silenced and itself.
        assert_eq!(log.due(a, t0 + Duration::from_secs(10)).warn, Some(501));
        assert_eq!(log.due(a, t0 + Duration::from_secs(11)).warn, None);
    }

    #[test]
    fn the_refusal_log_holds_a_bounded_number_of_addresses() {
        let t0 = Instant::now();
        let log = RefusalLog::new(Duration::from_secs(10), usize::MAX, t0);
        for i in 0..(MAX_REFUSAL_ADDRESSES as u32 * 3) {
            let ip = IpAddr::from(i.to_be_bytes());
            assert_eq!(log.due(ip, t0).warn, Some(1));
            assert!(lock(&log.table).seen.len() <= MAX_REFUSAL_ADDRESSES);
        }
    }

    #[test]
    fn refusals_from_many_addresses_get_a_budget_of_warnings_then_one_summary() {
        let t0 = Instant::now();
        let interval = Duration::from_secs(10);
        let log = RefusalLog::new(interval, 32, t0);
        let mut warned = 0;
        let mut budget_spent = 0;
        // 10,000 addresses, each refused once in one interval (the per-address limit alone
        // let each of them have its warning, and the table's clearing let them all again).
        for i in 0..10_000u32 {
            let ip = IpAddr::from((0x0a00_0000 + i).to_be_bytes());
            let v = log.due(ip, t0 + Duration::from_micros(u64::from(i)));
            warned += u32::from(v.warn.is_some());
            budget_spent += u32::from(v.budget_spent);
            assert_eq!(v.summary, None);
        }
        assert_eq!(warned, 32, "the budget of the interval");
        assert_eq!(budget_spent, 1, "one summary is scheduled");
        assert_eq!(log.summary_at(), t0 + interval);
        assert_eq!(
            log.summary(t0 + interval / 2),
            None,
            "not before the interval ends"
        );
        assert_eq!(log.summary(t0 + interval), Some((10_000 - 32, 10_000 - 32)));
        assert_eq!(log.summary(t0 + interval * 3), None, "given once");
        // A new interval has a new budget.
        let v = log.due("10.1.0.1".parse().unwrap(), t0 + interval * 3);
        assert_eq!(v.warn, Some(1));
    }

    #[test]
    fn a_refusal_after_the_interval_carries_the_summary_if_the_timer_did_not() {
        let t0 = Instant::now();
        let interval = Duration::from_secs(10);
        let log = RefusalLog::new(interval, 1, t0);
        assert_eq!(log.due("10.0.0.1".parse().unwrap(), t0).warn, Some(1));
        assert!(log.due("10.0.0.2".parse().unwrap(), t0).budget_spent);
        let v = log.due("10.0.0.3".parse().unwrap(), t0 + interval);
        assert_eq!(v.summary, Some((1, 1)));
        assert_eq!(v.warn, Some(1));
        assert_eq!(log.summary(t0 + interval * 2), None);
    }

    #[test]
    fn ipv6_addresses_count_per_64_network() {
        let t0 = Instant::now();
        let log = RefusalLog::new(Duration::from_secs(10), 32, t0);
        let mut warned = 0;
        for i in 0..1000u128 {
            let ip = IpAddr::V6(Ipv6Addr::from(
                0x2001_0db8_0000_0001_0000_0000_0000_0000 + i * 7919,
            ));
            warned += u32::from(log.due(ip, t0).warn.is_some());
        }
        assert_eq!(warned, 1, "one /64 is one address");
        let other: IpAddr = "2001:db8:0:2::1".parse().unwrap();
        assert_eq!(log.due(other, t0).warn, Some(1), "another /64 is another");
        assert_eq!(
            address_group("::ffff:10.0.0.1".parse().unwrap()),
            "10.0.0.1".parse::<IpAddr>().unwrap(),
            "an IPv4-mapped address is the IPv4 one"
        );
        assert_eq!(
            address_group("2001:db8::1:2:3:4".parse().unwrap()),
            "2001:db8::".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn peer_text_in_a_warning_is_cut_short_and_cleaned() {
        let long = "n".repeat(10_000);
        let cut = connection::bounded_text(&long, 64);
        assert_eq!(cut.chars().count(), 65, "64 and an ellipsis");
        assert_eq!(connection::bounded_text("a\nb\u{1b}[31m", 64), "a?b?[31m");
        assert_eq!(connection::bounded_text("short", 64), "short");
    }
}
