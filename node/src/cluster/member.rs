//! This node as a cluster member: its Raft instance over the store, the peer links, the
//! changes it proposes, the messages it forwards, and what it tells `fubar ctl cluster`.
//!
//! The broker reports through [`ClusterHooks`]; those calls never wait on the network:
//! route and client changes join the pending list the proposer turns into Raft entries (one
//! entry per batch, so a burst of connections costs a few entries), and messages go to the
//! bounded forward link of each member concerned.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use std::future::Future;
use std::pin::Pin;

use anyhow::Context as _;
use fubar_logproto::admin::{ClusterStatus, MemberStatus};
use fubar_monitor::server::MonitorServer;
use fubar_store::records::RestoredSession;
use fubar_store::replicated::{
    node_id, Change, ChangeBatch, ChangeBatchOutcome, NodeInfo, NodeRole, Raft,
};
use fubar_store::Store;
use openraft::{ChangeMembers, Config, ServerState};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use super::forward::{forwarded, Delivered, ForwardLink};
use super::peer_wire::{PeerRequest, PeerResponse};
use super::peers::Peers;
use super::raft_network::RaftNetworkOverPeers;
use super::view::ReplicatedView;
use super::{endpoint, NodeName};
use crate::broker::cluster_hooks::ClusterHooks;
use crate::broker::persist::{self, stored_message};
use crate::broker::Broker;
use crate::mqtt::message::Message;
use crate::settings::Settings;

/// Admitted peer links waiting to be served.
const PEER_LINK_QUEUE: usize = 64;
/// How long the proposer gathers changes before it proposes them.
const PROPOSE_GATHER: Duration = Duration::from_millis(2);
/// First and longest wait before a failed proposal or join is tried again.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// The cluster layer of a node.
pub struct ClusterMember {
    /// This node's Raft id.
    pub id: u64,
    /// This node as the membership records it.
    pub info: NodeInfo,
    /// The Raft instance.
    pub raft: Raft,
    peers: Arc<Peers>,
    view: Arc<ReplicatedView>,
    pending: Pending,
    links: RwLock<HashMap<u64, Arc<ForwardLink>>>,
    delivered: Arc<Delivered>,
    /// When each member last answered a ping.
    seen: Mutex<HashMap<u64, Instant>>,
    /// Members this node (as leader) has dropped the routes of, until they answer again.
    dropped: Mutex<BTreeSet<u64>>,
    epoch: u64,
    config: MemberConfig,
    stop: CancellationToken,
    broker: OnceLock<Weak<Broker>>,
}

impl std::fmt::Debug for ClusterMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterMember")
            .field("id", &self.id)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// The cluster settings a member works with.
#[derive(Debug, Clone)]
struct MemberConfig {
    forward_queue: usize,
    max_voters: usize,
    node_down: Duration,
    ping_every: Duration,
}

/// Changes waiting for the proposer, in order.
#[derive(Debug, Default)]
struct Pending {
    changes: Mutex<Vec<Change>>,
    wake: Notify,
}

impl Pending {
    fn push(&self, change: Change) {
        self.changes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(change);
        self.wake.notify_one();
    }

    fn take(&self, max: usize) -> Vec<Change> {
        let mut changes = self.changes.lock().unwrap_or_else(PoisonError::into_inner);
        let n = changes.len().min(max);
        changes.drain(..n).collect()
    }

    /// Puts back changes that could not be committed, ahead of newer ones.
    fn put_back(&self, mut batch: Vec<Change>) {
        let mut changes = self.changes.lock().unwrap_or_else(PoisonError::into_inner);
        batch.append(&mut changes);
        *changes = batch;
    }

    fn len(&self) -> usize {
        self.changes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl ClusterMember {
    /// Starts Raft over `store` with the peer links of `server`; joins through
    /// `settings.cluster.master` if this node is not a member yet, or founds a cluster of
    /// its own if it has no master.
    pub async fn start(
        settings: &Settings,
        store: Arc<Store>,
        server: &MonitorServer,
        role: NodeRole,
        epoch: u64,
    ) -> anyhow::Result<Arc<Self>> {
        let c = &settings.cluster;
        let addr = server.local_addr()?;
        let me: NodeName = settings.node.name.parse()?;
        let info = NodeInfo {
            name: settings.node.name.clone(),
            addr: format!("{}:{}", me.host, addr.port()),
            role,
        };
        let id = node_id(&info.name);
        let view = Arc::new(ReplicatedView::new(id, store.clone()));
        let (log_store, state_machine) = store
            .replication(Some(view.clone()))
            .context("cannot open the replicated state")?;
        let timeout = Duration::from_millis(c.request_timeout_ms);
        let peers = Arc::new(Peers::new(
            server.clone(),
            endpoint::peer_client_tls(settings)?,
            timeout,
        ));
        peers.learn(id, info.clone());
        let raft_config = Config {
            cluster_name: "fubar".into(),
            heartbeat_interval: c.heartbeat_ms,
            election_timeout_min: c.election_timeout_ms,
            election_timeout_max: c.election_timeout_ms * 2,
            install_snapshot_timeout: c.request_timeout_ms,
            snapshot_max_chunk_size: 1 << 20,
            max_payload_entries: 256,
            ..Default::default()
        }
        .validate()
        .context("bad Raft timing settings")?;
        let raft = Raft::new(
            id,
            Arc::new(raft_config),
            RaftNetworkOverPeers::new(peers.clone()),
            log_store,
            state_machine,
        )
        .await
        .context("cannot start Raft")?;
        let member = Arc::new(Self {
            id,
            info,
            raft,
            peers,
            view,
            pending: Pending::default(),
            links: RwLock::default(),
            delivered: Arc::default(),
            seen: Mutex::default(),
            dropped: Mutex::default(),
            epoch,
            config: MemberConfig {
                forward_queue: c.forward_queue,
                max_voters: c.max_voters,
                node_down: Duration::from_millis(c.node_down_ms),
                ping_every: Duration::from_millis(c.heartbeat_ms.max(100) * 2),
            },
            stop: CancellationToken::new(),
            broker: OnceLock::new(),
        });
        let (links, rx) = mpsc::channel(PEER_LINK_QUEUE);
        server.set_peers(links);
        tokio::spawn(super::peer_server::serve(member.clone(), rx));
        tokio::spawn(member.clone().propose_loop());
        tokio::spawn(member.clone().watch_members());
        tokio::spawn(member.clone().announce_again_when_dropped());
        if member.raft.is_initialized().await? {
            // A restart: the others know this node, and Raft catches it up; if its address
            // changed, it tells them the new one.
            let recorded = {
                let m = member.raft.metrics().borrow().membership_config.clone();
                m.membership().get_node(&id).cloned()
            };
            if recorded.as_ref().is_some_and(|r| *r != member.info) {
                tokio::spawn(member.clone().announce_address());
            }
        } else if c.master.is_empty() {
            member.found().await?;
        } else {
            let master: NodeName = c.master.parse()?;
            if master.id() == settings.node.name {
                member.found().await?;
            } else {
                // In the background: the node serves its own clients while it waits for
                // the master to answer.
                tokio::spawn(member.clone().join_through(master));
            }
        }
        Ok(member)
    }

    /// Connects the member to the broker: the view updates the broker's copies, routes
    /// and clients are reported from now on.
    pub fn attach(self: &Arc<Self>, broker: &Arc<Broker>) {
        let _ = self.broker.set(Arc::downgrade(broker));
        self.view.attach(broker);
        let hooks: Arc<dyn ClusterHooks> = self.clone();
        let _ = broker.cluster.set(hooks.clone());
        broker.router.set_hooks(hooks);
        // Sessions restored from the store are held here.
        for id in broker.registry.client_ids() {
            self.client_attached(&id);
        }
    }

    /// The broker, once attached and while it lives.
    pub fn broker(&self) -> Option<Arc<Broker>> {
        self.broker.get().and_then(Weak::upgrade)
    }

    /// The view of the replicated state.
    pub fn view(&self) -> &ReplicatedView {
        &self.view
    }

    /// What forwarded messages this node has delivered, per sender.
    pub fn delivered(&self) -> Arc<Delivered> {
        self.delivered.clone()
    }

    /// The peer links.
    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    /// Makes this node the first member of a new cluster.
    async fn found(&self) -> anyhow::Result<()> {
        let mut nodes = BTreeMap::new();
        nodes.insert(self.id, self.info.clone());
        self.raft
            .initialize(nodes)
            .await
            .context("cannot found the cluster")?;
        tracing::info!(target: "info", node = %self.info.name, "cluster founded");
        Ok(())
    }

    /// Asks `master_name` to add this node, until it does.
    async fn join_through(self: Arc<Self>, master_name: NodeName) {
        let master = master_name.id();
        let master_info = NodeInfo {
            name: master_name.id(),
            addr: format!("{}:{}", master_name.host, master_name.port),
            role: NodeRole::Broker,
        };
        let master_id = node_id(&master_info.name);
        self.peers.learn(master_id, master_info);
        let mut wait = RETRY_MIN;
        loop {
            match self
                .peers
                .call(master_id, &PeerRequest::Join(self.info.clone()))
                .await
            {
                Ok(PeerResponse::Done(Ok(()))) => {
                    tracing::info!(target: "info", node = %self.info.name, master = %master,
                        "joined the cluster");
                    return;
                }
                Ok(PeerResponse::Done(Err(e))) => {
                    tracing::warn!(target: "warning", master = %master, reason = %e,
                        "join refused; retrying");
                }
                Ok(other) => {
                    tracing::error!(target: "error", master = %master, answer = ?other,
                        "unexpected answer to a join; retrying");
                }
                Err(e) => {
                    tracing::warn!(target: "warning", master = %master, error = %e,
                        "cannot reach the master to join; retrying");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.stop.cancelled() => return,
            }
            wait = (wait * 2).min(RETRY_MAX);
        }
    }

    /// Another node takes client `client_id` over: closes its connection here and returns
    /// its session if it moves (`keep`, and persistent here).
    pub fn give_up(&self, client_id: &str, keep: bool) -> Option<RestoredSession> {
        let broker = self.broker()?;
        let (handle, session) =
            broker
                .registry
                .release_with(client_id, |session, persistent| {
                    (keep && persistent).then(|| persist::exported(client_id, session))
                })?;
        broker.router.remove_session(&handle);
        tracing::info!(target: "resource", client = client_id, moved = session.is_some(),
            "session taken over by another node");
        session
    }

    /// Tells the cluster this node's new address (it restarted on another port or host):
    /// asks each other member in turn to pass it to the leader, until one does.
    async fn announce_address(self: Arc<Self>) {
        let mut wait = RETRY_MIN;
        loop {
            let others: Vec<(u64, NodeInfo)> = {
                let m = self.raft.metrics().borrow().membership_config.clone();
                m.membership()
                    .nodes()
                    .filter(|(id, _)| **id != self.id)
                    .map(|(id, n)| (*id, n.clone()))
                    .collect()
            };
            for (id, info) in others {
                self.peers.learn(id, info);
                let request = PeerRequest::Join(self.info.clone());
                if let Ok(PeerResponse::Done(Ok(()))) = self.peers.call(id, &request).await {
                    tracing::info!(target: "info", node = %self.info.name, addr = %self.info.addr,
                        "new cluster address announced");
                    return;
                }
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.stop.cancelled() => return,
            }
            wait = (wait * 2).min(RETRY_MAX);
        }
    }

    /// The leader's id, as this node sees it.
    pub fn leader(&self) -> Option<u64> {
        self.raft.metrics().borrow().current_leader
    }

    /// Adds `info` to the cluster (on the leader; passed on to it from another member).
    pub async fn join(&self, info: NodeInfo) -> Result<(), String> {
        let leader = self.leader().ok_or("no leader at the moment")?;
        if leader != self.id {
            return match self.peers.call(leader, &PeerRequest::Join(info)).await {
                Ok(PeerResponse::Done(r)) => r,
                Ok(other) => Err(format!("unexpected answer {other:?}")),
                Err(e) => Err(e.to_string()),
            };
        }
        let id = node_id(&info.name);
        let name = info.name.clone();
        self.peers.learn(id, info.clone());
        let recorded = {
            let m = self.raft.metrics().borrow().membership_config.clone();
            m.membership().get_node(&id).cloned()
        };
        match recorded {
            Some(r) if r == info => {} // joined already (a retry)
            Some(_) => {
                // A member restarted at a new address: same node, same log, new place.
                self.raft
                    .change_membership(ChangeMembers::SetNodes([(id, info)].into()), true)
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::info!(target: "info", node = %name, "member moved to a new address");
            }
            None => {
                self.raft
                    .add_learner(id, info, true)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        self.balance_voters().await?;
        self.dropped_lock().remove(&id);
        tracing::info!(target: "info", node = %name, "member joined");
        Ok(())
    }

    /// Removes member `id` for good (on the leader; passed on to it from another member).
    pub async fn leave(&self, id: u64) -> Result<(), String> {
        let leader = self.leader().ok_or("no leader at the moment")?;
        if leader != self.id {
            return match self.peers.call(leader, &PeerRequest::Leave(id)).await {
                Ok(PeerResponse::Done(r)) => r,
                Ok(other) => Err(format!("unexpected answer {other:?}")),
                Err(e) => Err(e.to_string()),
            };
        }
        let membership = self.raft.metrics().borrow().membership_config.clone();
        let voters: BTreeSet<u64> = membership.membership().voter_ids().collect();
        if voters.contains(&id) {
            let mut rest = voters.clone();
            rest.remove(&id);
            if rest.is_empty() {
                return Err("the last voter cannot leave".into());
            }
            self.raft
                .change_membership(ChangeMembers::RemoveVoters([id].into()), false)
                .await
                .map_err(|e| e.to_string())?;
        } else {
            self.raft
                .change_membership(ChangeMembers::RemoveNodes([id].into()), false)
                .await
                .map_err(|e| e.to_string())?;
        }
        self.propose_now(vec![Change::DropNode { node: id }])
            .await?;
        self.balance_voters().await?;
        Ok(())
    }

    /// Promotes learners until the voters are as many as allowed, and odd.
    async fn balance_voters(&self) -> Result<(), String> {
        let membership = self.raft.metrics().borrow().membership_config.clone();
        let voters: BTreeSet<u64> = membership.membership().voter_ids().collect();
        let learners: Vec<u64> = membership.membership().learner_ids().collect();
        let total = voters.len() + learners.len();
        let mut want = total.min(self.config.max_voters.max(1));
        if want.is_multiple_of(2) {
            want -= 1;
        }
        if voters.len() >= want {
            return Ok(());
        }
        let add: BTreeSet<u64> = learners.into_iter().take(want - voters.len()).collect();
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(add), false)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Commits `changes` now (on the leader, or through it) and returns their outcomes.
    pub async fn propose_now(&self, changes: Vec<Change>) -> Result<ChangeBatchOutcome, String> {
        let leader = self
            .leader()
            .ok_or("no leader: this node is cut off from the majority")?;
        if leader != self.id && self.silent(leader) {
            return Err(format!(
                "cut off from the leader (no answer for {} ms): this node takes no \
                 cluster-state writes until it reaches a majority again",
                self.config.node_down.as_millis()
            ));
        }
        let batch = ChangeBatch(changes);
        if leader == self.id {
            return self
                .raft
                .client_write(batch)
                .await
                .map(|r| r.data)
                .map_err(|e| e.to_string());
        }
        match self.peers.call(leader, &PeerRequest::Propose(batch)).await {
            Ok(PeerResponse::Proposed(r)) => r,
            Ok(other) => Err(format!("unexpected answer {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Turns pending changes into Raft entries, one batch at a time, retrying while there is
    /// no leader (a minority side keeps them until it heals).
    async fn propose_loop(self: Arc<Self>) {
        let mut wait = RETRY_MIN;
        loop {
            tokio::select! {
                () = self.pending.wake.notified() => {}
                () = self.stop.cancelled() => return,
            }
            tokio::time::sleep(PROPOSE_GATHER).await;
            loop {
                let batch = self.pending.take(MAX_BATCH_CHANGES);
                if batch.is_empty() {
                    break;
                }
                if let Err(e) = self.propose_now(batch.clone()).await {
                    tracing::debug!(target: "debug", error = %e, changes = batch.len(),
                        "cannot commit cluster changes yet; retrying");
                    self.pending.put_back(batch);
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = self.stop.cancelled() => return,
                    }
                    wait = (wait * 2).min(RETRY_MAX);
                    continue;
                }
                wait = RETRY_MIN;
            }
        }
    }

    /// After the cluster dropped this node's routes and clients (it was silent too long, or
    /// cut off), announces them again: they are still here.
    async fn announce_again_when_dropped(self: Arc<Self>) {
        loop {
            tokio::select! {
                () = self.view.dropped_me.notified() => {}
                () = self.stop.cancelled() => return,
            }
            let Some(broker) = self.broker() else {
                continue;
            };
            let filters = broker.router.local_filters();
            let clients = broker.registry.client_ids();
            tracing::warn!(target: "warning", routes = filters.len(), clients = clients.len(),
                "the cluster dropped this node's routes and clients; announcing them again");
            for filter in filters {
                self.route_added(&filter);
            }
            for client in clients {
                self.client_attached(&client);
            }
        }
    }

    /// Whether member `id` has not answered a ping for `node_down`.
    fn silent(&self, id: u64) -> bool {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.get(&id)
            .is_some_and(|t| t.elapsed() >= self.config.node_down)
    }

    fn dropped_lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<u64>> {
        self.dropped.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Pings every member; the leader drops the routes and clients of a member silent for
    /// `node_down` (its clients reconnect elsewhere), and the member adds them back itself
    /// when it returns.
    async fn watch_members(self: Arc<Self>) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.config.ping_every) => {}
                () = self.stop.cancelled() => return,
            }
            let members: Vec<(u64, NodeInfo)> = {
                let m = self.raft.metrics().borrow().membership_config.clone();
                m.membership()
                    .nodes()
                    .map(|(id, n)| (*id, n.clone()))
                    .collect()
            };
            {
                // A member's silence is counted from when this node first saw it.
                let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
                let now = Instant::now();
                for (id, _) in &members {
                    seen.entry(*id).or_insert(now);
                }
            }
            for (id, info) in &members {
                if *id == self.id {
                    continue;
                }
                self.peers.learn(*id, info.clone());
                let me = self.clone();
                let id = *id;
                tokio::spawn(async move {
                    let answered = matches!(
                        me.peers
                            .call_within(id, &PeerRequest::Ping, me.config.ping_every)
                            .await,
                        Ok(PeerResponse::Pong { .. })
                    );
                    if answered {
                        me.seen
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert(id, Instant::now());
                    }
                });
            }
            if self.leader() == Some(self.id) {
                self.drop_silent_members(&members).await;
            }
        }
    }

    async fn drop_silent_members(&self, members: &[(u64, NodeInfo)]) {
        let now = Instant::now();
        let silent: Vec<(u64, String)> = {
            let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            members
                .iter()
                .filter(|(id, _)| *id != self.id)
                .filter(|(id, _)| {
                    seen.get(id)
                        .is_some_and(|last| now.duration_since(*last) >= self.config.node_down)
                })
                .map(|(id, i)| (*id, i.name.clone()))
                .collect()
        };
        for (id, name) in silent {
            if !self.dropped_lock().insert(id) {
                continue;
            }
            match self.propose_now(vec![Change::DropNode { node: id }]).await {
                Ok(_) => tracing::warn!(target: "warning", node = %name,
                    "member unreachable: its routes and clients are dropped"),
                Err(e) => {
                    self.dropped_lock().remove(&id);
                    tracing::debug!(target: "debug", node = %name, error = %e,
                        "cannot drop an unreachable member's routes yet");
                }
            }
        }
        // A member that answers again takes its routes back itself (see `rejoined`).
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        self.dropped_lock().retain(|id| {
            seen.get(id)
                .is_none_or(|t| now.duration_since(*t) >= self.config.node_down)
        });
    }

    /// The forward link to member `id`, started on first use.
    fn link(&self, id: u64) -> Option<Arc<ForwardLink>> {
        if let Some(l) = self
            .links
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
        {
            return Some(l.clone());
        }
        let info = self.peers.info(id).or_else(|| {
            let m = self.raft.metrics().borrow().membership_config.clone();
            let info = m.membership().get_node(&id).cloned();
            if let Some(i) = &info {
                self.peers.learn(id, i.clone());
            }
            info
        })?;
        let mut links = self.links.write().unwrap_or_else(PoisonError::into_inner);
        let link = links.entry(id).or_insert_with(|| {
            Arc::new(ForwardLink::start(
                self.peers.clone(),
                id,
                info.name,
                self.epoch,
                self.config.forward_queue,
                self.stop.clone(),
            ))
        });
        Some(link.clone())
    }

    /// The cluster as this node sees it.
    pub fn status(&self) -> ClusterStatus {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let now = Instant::now();
        let seen = self
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let last_log = metrics.last_log_index.unwrap_or(0);
        let name_of = |id: u64| {
            membership
                .get_node(&id)
                .map_or_else(|| id.to_string(), |n| n.name.clone())
        };
        let members = membership
            .nodes()
            .map(|(id, n)| {
                let link = if *id == self.id {
                    "self".to_owned()
                } else {
                    match seen.get(id) {
                        Some(t) if now.duration_since(*t) < self.config.node_down => "up".into(),
                        Some(t) => format!("down {}s", now.duration_since(*t).as_secs()),
                        None => "down".into(),
                    }
                };
                let lag = metrics.replication.as_ref().map(|r| {
                    let matched = r.get(id).cloned().flatten().map_or(0, |l| l.index);
                    last_log.saturating_sub(matched)
                });
                MemberStatus {
                    name: n.name.clone(),
                    addr: n.addr.clone(),
                    role: n.role.to_string(),
                    kind: if voters.contains(id) {
                        "voter"
                    } else {
                        "learner"
                    }
                    .into(),
                    link,
                    lag,
                }
            })
            .collect();
        let (routes, clients) = self.view.sizes();
        ClusterStatus {
            node: self.info.name.clone(),
            leader: metrics.current_leader.map(name_of),
            term: metrics.current_term,
            applied: metrics.last_applied.map_or(0, |l| l.index),
            members,
            routes: routes as u64,
            clients: clients as u64,
            pending: self.pending.len() as u64,
        }
    }

    /// Whether this node is the leader.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// Stops the member's tasks and Raft.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        let _ = self.raft.shutdown().await;
    }
}

/// Changes per Raft entry, at most.
const MAX_BATCH_CHANGES: usize = 5_000;

impl ClusterHooks for ClusterMember {
    fn route_added(&self, filter: &str) {
        self.pending.push(Change::AddRoute {
            filter: filter.to_owned(),
            node: self.id,
        });
    }

    fn route_removed(&self, filter: &str) {
        self.pending.push(Change::RemoveRoute {
            filter: filter.to_owned(),
            node: self.id,
        });
    }

    fn forward(&self, message: &Arc<Message>) {
        if message.retain {
            let change = if message.payload.is_empty() {
                Change::DeleteRetained {
                    topic: message.topic.to_string(),
                }
            } else {
                Change::PutRetained(stored_message(message))
            };
            self.pending.push(change);
        }
        let targets = self.view.targets(&message.topic);
        if targets.is_empty() {
            return;
        }
        let publisher = message.trace.as_ref().map_or("", |t| &*t.origin_client);
        let out = Arc::new(forwarded(message, publisher));
        for id in targets {
            if let Some(link) = self.link(id) {
                link.send(out.clone());
            }
        }
    }

    fn client_attached(&self, client_id: &str) {
        self.pending.push(Change::RegisterClient {
            client_id: client_id.to_owned(),
            node: self.id,
        });
    }

    fn client_ended(&self, client_id: &str) {
        self.pending.push(Change::UnregisterClient {
            client_id: client_id.to_owned(),
            node: self.id,
        });
    }

    fn take_over<'a>(
        &'a self,
        client_id: &'a str,
        keep: bool,
    ) -> Pin<Box<dyn Future<Output = Option<RestoredSession>> + Send + 'a>> {
        Box::pin(async move {
            let holder = self.view.holder(client_id).filter(|h| *h != self.id)?;
            let request = PeerRequest::TakeOver {
                client_id: client_id.to_owned(),
                keep,
            };
            match self.peers.call(holder, &request).await {
                Ok(PeerResponse::Session(session)) => session,
                Ok(other) => {
                    tracing::warn!(target: "warning", client = client_id, answer = ?other,
                        "unexpected answer to a session takeover");
                    None
                }
                Err(e) => {
                    // The holder is away: the client starts here without its old session
                    // (the registration moves it anyway).
                    tracing::warn!(target: "warning", client = client_id, error = %e,
                        "cannot take the session over from its node");
                    None
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(filter: &str) -> Change {
        Change::AddRoute {
            filter: filter.into(),
            node: 1,
        }
    }

    #[test]
    fn pending_changes_keep_their_order_when_put_back() {
        let p = Pending::default();
        for f in ["a", "b", "c"] {
            p.push(route(f));
        }
        let first = p.take(2);
        assert_eq!(first, vec![route("a"), route("b")]);
        p.push(route("d"));
        p.put_back(first);
        assert_eq!(p.len(), 4);
        assert_eq!(
            p.take(10),
            vec![route("a"), route("b"), route("c"), route("d")]
        );
        assert!(p.take(10).is_empty());
    }
}
