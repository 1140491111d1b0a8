//! Links to the other members: one QUIC connection per member, dialed from the node's own
//! endpoint when first needed and again after it drops, and one stream per request on it.

use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fubar_monitor::server::MonitorServer;
use fubar_monitor::wire::{write_frame, FrameReader};
use fubar_monitor::MonitorError;
use fubar_store::replicated::NodeInfo;
use quinn::Connection;
use tokio::sync::Mutex as AsyncMutex;

use super::endpoint::PeerTls;
use super::peer_wire::{PeerRequest, PeerResponse, MAX_PEER_FRAME};
use super::NodeName;

/// Why a request to a member failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The member is not known (not in the membership this node has seen).
    #[error("unknown member {0}")]
    Unknown(u64),
    /// Its name or address cannot be used.
    #[error("member {name}: {reason}")]
    Address {
        /// The member's name.
        name: String,
        /// Why.
        reason: String,
    },
    /// The link or the stream failed.
    #[error("link to {name}: {source}")]
    Link {
        /// The member's name.
        name: String,
        /// Why.
        source: MonitorError,
    },
    /// No answer in time.
    #[error("{name} did not answer within {timeout:?}")]
    Timeout {
        /// The member's name.
        name: String,
        /// How long we waited.
        timeout: Duration,
    },
}

/// The members this node can reach, and its connections to them.
#[derive(Debug)]
pub struct Peers {
    server: MonitorServer,
    tls: PeerTls,
    /// Who is where (from the replicated membership, or from `--master`).
    known: RwLock<HashMap<u64, NodeInfo>>,
    /// Open connections; one dial at a time per member.
    conns: RwLock<HashMap<u64, Arc<AsyncMutex<Option<Connection>>>>>,
    /// How long a dial or a request may take.
    timeout: Duration,
    /// Idle timeout of a link.
    idle: Duration,
    /// When each member was last heard from (an answer, or a request of its own).
    heard: Arc<Mutex<HashMap<u64, Instant>>>,
}

impl Peers {
    /// Links from `server`'s endpoint, with `tls` offering `PEER_ALPN`.
    /// `heard` is shared with the member's liveness check.
    pub fn new(
        server: MonitorServer,
        tls: PeerTls,
        timeout: Duration,
        idle: Duration,
        heard: Arc<Mutex<HashMap<u64, Instant>>>,
    ) -> Self {
        Self {
            server,
            tls,
            known: RwLock::default(),
            conns: RwLock::default(),
            timeout,
            idle,
            heard,
        }
    }

    /// Records where member `id` is. A member that moved is dialed again at its new address.
    pub fn learn(&self, id: u64, info: NodeInfo) {
        let mut known = self.known.write();
        let moved = known.get(&id).is_some_and(|old| old.addr != info.addr);
        if known.get(&id) != Some(&info) {
            known.insert(id, info);
        }
        drop(known);
        if moved {
            self.conns.write().remove(&id);
        }
    }

    /// Member `id` was heard from just now.
    pub fn heard_from(&self, id: u64) {
        self.heard.lock().insert(id, Instant::now());
    }

    /// Where member `id` is, if known.
    pub fn info(&self, id: u64) -> Option<NodeInfo> {
        self.known.read().get(&id).cloned()
    }

    /// A live connection to member `id`, dialed if there is none.
    pub async fn connection(&self, id: u64) -> Result<Connection, PeerError> {
        let info = self.info(id).ok_or(PeerError::Unknown(id))?;
        let slot = {
            let mut conns = self.conns.write();
            conns.entry(id).or_default().clone()
        };
        let mut slot = slot.lock().await;
        if let Some(conn) = slot.as_ref() {
            if conn.close_reason().is_none() {
                return Ok(conn.clone());
            }
        }
        let conn = tokio::time::timeout(self.timeout, self.dial(&info))
            .await
            .map_err(|_| PeerError::Timeout {
                name: info.name.clone(),
                timeout: self.timeout,
            })??;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    async fn dial(&self, info: &NodeInfo) -> Result<Connection, PeerError> {
        let bad = |reason: String| PeerError::Address {
            name: info.name.clone(),
            reason,
        };
        let name: NodeName = info.name.parse().map_err(|e| bad(format!("{e}")))?;
        // An address of the endpoint's own family: a socket bound to IPv4 cannot reach ::1.
        let v4 = self.server.local_addr().map_or(true, |a| a.is_ipv4());
        let addr = tokio::net::lookup_host(&info.addr)
            .await
            .map_err(|e| bad(format!("cannot resolve {}: {e}", info.addr)))?
            .find(|a| a.is_ipv4() == v4)
            .ok_or_else(|| bad(format!("{} has no address to reach from here", info.addr)))?;
        let tls = self
            .tls
            .for_member(&name)
            .map_err(|e| bad(format!("the cluster's TLS: {e}")))?;
        self.server
            .connect_peer(tls, addr, &name.host, self.idle)
            .await
            .map_err(|source| PeerError::Link {
                name: info.name.clone(),
                source,
            })
    }

    /// Sends one request to member `id` and waits for its answer (within the link timeout).
    pub async fn call(&self, id: u64, request: &PeerRequest) -> Result<PeerResponse, PeerError> {
        self.call_within(id, request, self.timeout).await
    }

    /// Sends one request to member `id` and waits up to `timeout` for its answer.
    pub async fn call_within(
        &self,
        id: u64,
        request: &PeerRequest,
        timeout: Duration,
    ) -> Result<PeerResponse, PeerError> {
        let name = self.info(id).map_or_else(|| id.to_string(), |i| i.name);
        let conn = self.connection(id).await?;
        let link = |source| PeerError::Link {
            name: name.clone(),
            source,
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let timed_out = || PeerError::Timeout {
            name: name.clone(),
            timeout,
        };
        let (mut send, mut recv) = tokio::time::timeout_at(deadline, conn.open_bi())
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| link(MonitorError::from(e)))?;
        let exchange = async {
            write_frame(&mut send, request).await?;
            send.finish()
                .map_err(|e| MonitorError::Stream(e.to_string()))?;
            FrameReader::new(MAX_PEER_FRAME)
                .next::<PeerResponse>(&mut recv)
                .await?
                .ok_or_else(|| MonitorError::Stream("no answer".into()))
        };
        let answer = tokio::time::timeout_at(deadline, exchange).await;
        match answer {
            Ok(Ok(r)) => {
                self.heard_from(id);
                Ok(r)
            }
            Ok(Err(e)) => Err(link(e)),
            Err(_) => {
                // Abandon the request: QUIC must not deliver it later, when the caller has
                // been told it failed.
                let _ = send.reset(0u32.into());
                Err(timed_out())
            }
        }
    }

    /// The round-trip time QUIC estimates on the connection to member `id`, when one is open
    /// (and not being dialed just now).
    pub fn rtt(&self, id: u64) -> Option<Duration> {
        let slot = self.conns.read().get(&id)?.clone();
        let conn = slot.try_lock().ok()?;
        conn.as_ref()
            .filter(|c| c.close_reason().is_none())
            .map(Connection::rtt)
    }

    /// Closes the connection to member `id`, if any (it is dialed again when needed).
    pub fn forget(&self, id: u64) {
        self.known.write().remove(&id);
        self.conns.write().remove(&id);
    }
}
