//! A node's QUIC endpoint on the cluster port: accepts links, checks membership, and serves
//! each by its ALPN. Log links (a monitor's job): batches through the duplicate filter into
//! the sink, acknowledgements of what is durable, per-node statistics. Remote admin: requests
//! to the handler the node installed. Cluster peers: handed to the node's cluster layer, which
//! also dials other members from this endpoint (`connect_peer`).

mod connection;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use fubar_logproto::Class;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Connection, Endpoint, IdleTimeout, TransportConfig, VarInt};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;

use crate::admin::AdminCall;
use crate::config::{LinkLimits, DEFAULT_COLLECT, DEFAULT_MAX_PEER_STREAMS, MAX_REFUSAL_ADDRESSES};
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
    /// Connections not proven yet, per address.
    unproven: Mutex<HashMap<IpAddr, usize>>,
    /// When each address was last warned about, and its refusals since.
    pub(crate) refusal_log: RefusalLog,
}

/// A connection's place among its address's unproven ones; given back when dropped.
pub(crate) struct Unproven {
    inner: Arc<Inner>,
    ip: IpAddr,
}

impl Drop for Unproven {
    fn drop(&mut self) {
        let mut unproven = lock(&self.inner.unproven);
        if let Some(n) = unproven.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                unproven.remove(&self.ip);
            }
        }
    }
}

/// One refusal warning per address per interval, counting the refusals between them.
#[derive(Debug)]
pub(crate) struct RefusalLog {
    interval: Duration,
    /// Per address: when it was last warned about, and refusals since (that one included).
    seen: Mutex<HashMap<IpAddr, (Instant, u64)>>,
}

impl RefusalLog {
    fn new(interval: Duration) -> Self {
        Self {
            interval,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a refusal of `ip`; `Some(refusals)` when a warning is due, with the refusals it
    /// stands for (this one and those not warned about since the last warning).
    pub(crate) fn due(&self, ip: IpAddr, now: Instant) -> Option<u64> {
        let mut seen = lock(&self.seen);
        if seen.len() >= MAX_REFUSAL_ADDRESSES && !seen.contains_key(&ip) {
            let interval = self.interval;
            seen.retain(|_, (at, _)| now.duration_since(*at) < interval);
            if seen.len() >= MAX_REFUSAL_ADDRESSES {
                seen.clear();
            }
        }
        match seen.get_mut(&ip) {
            Some((at, count)) if now.duration_since(*at) < self.interval => {
                *count += 1;
                None
            }
            Some((at, count)) => {
                let refusals = *count + 1;
                *at = now;
                *count = 0;
                Some(refusals)
            }
            None => {
                seen.insert(ip, (now, 0));
                Some(1)
            }
        }
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
    /// `limits.max_unproven_per_address` connections, and it has `limits.handshake_timeout`.
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
            refusal_log: RefusalLog::new(config.limits.refusal_warning_interval),
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
        *self
            .inner
            .members
            .write()
            .unwrap_or_else(PoisonError::into_inner) = names.into_iter().collect();
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
    /// Whether `name` is a member the cluster knows.
    pub(crate) fn is_member(&self, name: &str) -> bool {
        self.members
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(name)
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
        || limits.max_unproven_per_address == 0
    {
        "max_batch_events, max_connections and max_unproven_per_address must be at least 1"
            .to_owned()
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
        let Some(unproven) = take_unproven(&inner, peer.ip()) else {
            connection::refusal(
                &inner,
                peer,
                None,
                "too many connections not proven yet from this address",
            );
            incoming.refuse();
            continue;
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

/// A pre-proof slot of `ip`, unless it has all of its share already.
fn take_unproven(inner: &Arc<Inner>, ip: IpAddr) -> Option<Unproven> {
    let mut unproven = lock(&inner.unproven);
    let n = unproven.entry(ip).or_insert(0);
    if *n >= inner.limits.max_unproven_per_address {
        return None;
    }
    *n += 1;
    Some(Unproven {
        inner: Arc::clone(inner),
        ip,
    })
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_warned_about_once_per_address_and_interval_with_their_count() {
        let log = RefusalLog::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert_eq!(log.due(a, t0), Some(1), "the first one at once");
        for i in 1..=500 {
            assert_eq!(log.due(a, t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(log.due(b, t0), Some(1), "another address is its own");
        // The next interval's first refusal stands for the 500 silenced and itself.
        assert_eq!(log.due(a, t0 + Duration::from_secs(10)), Some(501));
        assert_eq!(log.due(a, t0 + Duration::from_secs(11)), None);
    }

    #[test]
    fn the_refusal_log_holds_a_bounded_number_of_addresses() {
        let log = RefusalLog::new(Duration::from_secs(10));
        let t0 = Instant::now();
        for i in 0..(MAX_REFUSAL_ADDRESSES as u32 * 3) {
            let ip = IpAddr::from(i.to_be_bytes());
            assert_eq!(log.due(ip, t0), Some(1));
            assert!(lock(&log.seen).len() <= MAX_REFUSAL_ADDRESSES);
        }
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
