//! This node as a cluster member: its Raft instance over the store, the peer links, the
//! changes it proposes, the messages it forwards, and what it tells `fubar ctl cluster`.
//!
//! The broker reports through [`ClusterHooks`]; those calls never wait on the network:
//! route and client changes join the pending list the proposer turns into Raft entries (one
//! entry per batch, so a burst of connections costs a few entries), and messages go to the
//! bounded forward link of each member concerned.

mod lease;
mod liveness;
mod membership;
pub(crate) mod proposer;
pub use membership::MembershipError;
pub use proposer::ProposeError;
mod status;

use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use fubar_monitor::server::MonitorServer;
use fubar_store::records::RestoredSession;
use fubar_store::replicated::{node_id, Change, NodeInfo, NodeRole, Raft};
use fubar_store::Store;
use openraft::Config;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::forward::{forwarded, Delivered, ForwardLink};
use super::peer_wire::{PeerRequest, PeerResponse};
use super::peers::Peers;
use super::raft_network::RaftNetworkOverPeers;
use super::view::ReplicatedView;
use super::{endpoint, NodeName};
use crate::broker::client_owner::{self, Claim, NotOwner};
use crate::broker::cluster_hooks::ClusterHooks;
use crate::broker::persist::{self, stored_message};
use crate::broker::session_end::SessionEnd;
use crate::broker::Broker;
use crate::mqtt::message::Message;
use crate::settings::Settings;
use proposer::Pending;

/// Admitted peer links waiting to be served.
const PEER_LINK_QUEUE: usize = 64;
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
    pub(crate) peers: Arc<Peers>,
    pub(crate) view: Arc<ReplicatedView>,
    pub(crate) pending: Arc<Pending>,
    links: RwLock<HashMap<u64, Arc<ForwardLink>, BuildNodeIdHasher>>,
    delivered: Arc<Delivered>,
    /// When each member last answered a ping.
    seen: Arc<Mutex<HashMap<u64, Instant>>>,
    /// Members this node (as leader) has dropped the routes of, until they answer again.
    dropped: Mutex<BTreeSet<u64>>,
    /// Whether this node may serve its replicated sessions (`cluster.session_lease_ms`).
    lease: lease::Lease,
    pub(crate) epoch: u64,
    config: MemberConfig,
    pub(crate) stop: CancellationToken,
    /// The broker this member drives, set once by `attach` (Raft starts, and may apply
    /// entries, before the broker exists). Weak: the broker holds this member as its hooks,
    /// and a strong pointer back would keep both alive for ever.
    broker: OnceLock<Weak<Broker>>,
    /// Per share group, whose turn it is (round robin over the nodes with members).
    share_turns: Mutex<HashMap<Arc<str>, usize>>,
    /// Persistent sessions' copies on other members (`session.replicas`).
    pub(crate) replicas: super::replica::Replicator,
}

impl std::fmt::Debug for ClusterMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterMember")
            .field("id", &self.id)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// What a forward decided for a topic, kept per thread for the next message.
struct Lookup {
    /// The member it was made for (tests run several in one process).
    member: usize,
    /// The view's version it was made at.
    version: u64,
    topic: Arc<str>,
    links: Vec<Arc<ForwardLink>>,
    shares: Vec<(Arc<str>, Vec<u64>)>,
}

thread_local! {
    static LAST_LOOKUP: std::cell::RefCell<Option<Lookup>> = const { std::cell::RefCell::new(None) };
}

/// Node ids are hashes of node names already: a map keyed by them needs no hashing.
#[derive(Debug, Clone, Copy, Default)]
struct BuildNodeIdHasher;

/// See [`BuildNodeIdHasher`].
#[derive(Debug, Default)]
struct NodeIdHasher(u64);

impl std::hash::BuildHasher for BuildNodeIdHasher {
    type Hasher = NodeIdHasher;
    fn build_hasher(&self) -> NodeIdHasher {
        NodeIdHasher(0)
    }
}

impl std::hash::Hasher for NodeIdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// The cluster settings a member works with.
#[derive(Debug, Clone)]
struct MemberConfig {
    forward_queue: usize,
    max_voters: usize,
    node_down: Duration,
    ping_every: Duration,
    /// `cluster.session_lease_ms`.
    session_lease: Duration,
    /// How long a join may take before the node says on stderr that it is alone.
    join_warning: Duration,
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
        let pending = view.pending.clone();
        let (log_store, state_machine) = store
            .replication(Some(view.clone()))
            .context("cannot open the replicated state")?;
        let timeout = Duration::from_millis(c.request_timeout_ms);
        let seen: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
        let peers = Arc::new(Peers::new(
            server.clone(),
            endpoint::peer_client_tls(settings)?,
            timeout,
            Duration::from_millis(c.link_idle_ms),
            seen.clone(),
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
        let restart = raft.is_initialized().await?;
        let member = Arc::new(Self {
            id,
            info,
            raft,
            peers,
            view,
            pending,
            links: RwLock::default(),
            delivered: Arc::default(),
            seen,
            dropped: Mutex::default(),
            lease: lease::Lease::new(restart),
            epoch,
            config: MemberConfig {
                forward_queue: c.forward_queue,
                max_voters: c.max_voters,
                node_down: Duration::from_millis(c.node_down_ms),
                ping_every: Duration::from_millis(c.heartbeat_ms.max(100) * 2),
                session_lease: Duration::from_millis(c.session_lease_ms),
                join_warning: Duration::from_millis(c.join_warning_ms),
            },
            stop: CancellationToken::new(),
            broker: OnceLock::new(),
            share_turns: Mutex::default(),
            replicas: super::replica::Replicator::new(super::replica::ReplicaConfig {
                replicas: settings.session.replicas,
                ack_timeout: Duration::from_millis(c.replica_ack_timeout_ms),
                queue: c.replica_queue,
            }),
        });
        let (links, rx) = mpsc::channel(PEER_LINK_QUEUE);
        server.set_peers(links);
        tokio::spawn(super::peer_server::serve(member.clone(), rx));
        tokio::spawn(member.clone().propose_loop());
        tokio::spawn(member.clone().watch_members());
        tokio::spawn(member.clone().keep_session_lease());
        tokio::spawn(member.clone().announce_again_when_dropped());
        tokio::spawn(member.clone().tell_endpoint_the_members(server.clone()));
        if restart {
            // A restart: the others know this node, and Raft catches it up; if its address
            // changed, it tells them the new one. Replication is on or off from the recorded
            // membership before any client connects, so that a replicated session is refused
            // until this node has caught up (`lease`): Raft publishes the membership it
            // loaded a moment after it starts (waited for at most `cluster.node_down_ms`).
            let loaded = member
                .raft
                .wait(Some(member.config.node_down))
                .metrics(
                    |m| m.membership_config.membership().nodes().next().is_some(),
                    "the recorded membership",
                )
                .await;
            if let Err(e) = loaded {
                tracing::warn!(target: "warning", error = %e,
                    "the recorded membership was not loaded in time; replication is switched \
                     on at the first ping round");
            }
            member.update_replication();
            // The new address first: the leader reaches this node there to catch it up.
            let recorded = {
                let m = member.raft.metrics().borrow().membership_config.clone();
                m.membership().get_node(&id).cloned()
            };
            if recorded.as_ref().is_some_and(|r| *r != member.info) {
                tokio::spawn(member.clone().announce_address());
            }
            // What the table says of this node is read when the broker attaches (its stale
            // routes and clients are withdrawn then): the entries of its last moments may reach
            // it only now, from the leader. So it catches up first, for at most
            // `cluster.node_down_ms` (a member alone, the others down, starts after that).
            let until = tokio::time::Instant::now() + member.config.node_down;
            while !member.caught_up().await && tokio::time::Instant::now() < until {
                tokio::time::sleep(member.config.ping_every).await;
            }
        } else if c.master.is_empty() {
            member.found().await?;
        } else {
            let master: NodeName = c.master.parse()?;
            // Names compare as identities (`NAME@HOST`): naming itself as master, with or
            // without its port, founds the cluster.
            if master.id() == super::identity(&settings.node.name) {
                member.found().await?;
            } else {
                // In the background: the node serves its own clients while it waits for
                // the master to answer.
                tokio::spawn(member.clone().join_through(master));
            }
        }
        Ok(member)
    }

    /// Keeps the endpoint's list of members (for whom a node certificate may stand) in step
    /// with the replicated membership.
    async fn tell_endpoint_the_members(self: Arc<Self>, server: MonitorServer) {
        let mut metrics = self.raft.metrics();
        loop {
            let names: Vec<String> = {
                let m = metrics.borrow_and_update().membership_config.clone();
                m.membership()
                    .nodes()
                    .map(|(_, n)| n.name.clone())
                    .collect()
            };
            server.set_members(names);
            tokio::select! {
                changed = metrics.changed() => if changed.is_err() { return },
                () = self.stop.cancelled() => return,
            }
        }
    }

    /// Connects the member to the broker built with it as its hooks: the view updates the
    /// broker's copies, and what the table says of this node is brought up to date. A
    /// member serves one broker: a second call is refused.
    pub fn attach(self: &Arc<Self>, broker: &Arc<Broker>) -> Result<(), AlreadyAttached> {
        self.broker
            .set(Arc::downgrade(broker))
            .map_err(|_| AlreadyAttached)?;
        self.view.attach(broker)?;
        self.start_replica_task();
        // Sessions restored from the store are held here.
        let held = broker.registry.client_ids_and_owners();
        let ids: Vec<String> = held.iter().map(|(id, _)| id.clone()).collect();
        self.register_held(held);
        let held = ids;
        // What the table still says of this node from its last run but is gone (the
        // subscriptions and sessions of clean-session clients) is removed.
        let (filters, clients) = self.view.own_entries();
        let local = broker.router.local_filters();
        for filter in filters.into_iter().filter(|f| !local.contains(f)) {
            self.route_removed(&filter);
        }
        for client in clients.into_iter().filter(|c| !held.contains(c)) {
            self.client_ended(&client);
        }
        Ok(())
    }

    /// Gives each share group matching the message one copy: to a node with members, in
    /// turn (this one included), whose member whose turn it is gets it.
    fn forward_shared(
        &self,
        message: &Arc<Message>,
        publisher: &str,
        shares: Vec<(Arc<str>, Vec<u64>)>,
    ) {
        for (share, nodes) in shares {
            let node = self.share_turn(&share, &nodes);
            if node == self.id {
                if let Some(broker) = self.broker() {
                    let shed = broker.memory.is_on();
                    let routed = broker.router.deliver_shared(&share, message.clone(), shed);
                    // Not yet carried back to the publisher's acknowledgement: reported.
                    crate::broker::router::report_unstored(
                        routed.store_error.as_ref(),
                        publisher,
                        &message.topic,
                        "shared message",
                    );
                }
            } else if let Some(link) = self.link(node) {
                let mut out = forwarded(message, publisher);
                out.share = Some(share.to_string());
                link.send(Arc::new(out), 0);
            }
        }
    }

    /// The next node, in turn, among `nodes` with members of `share`.
    fn share_turn(&self, share: &Arc<str>, nodes: &[u64]) -> u64 {
        let mut turns = self.share_turns.lock();
        let turn = turns.entry(share.clone()).or_insert(0);
        let node = nodes[*turn % nodes.len()];
        *turn = turn.wrapping_add(1);
        node
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

    /// Another node takes client `client_id` over for a connection of verified user `user`:
    /// closes its connection here and returns its session if it moves (`keep`, and persistent
    /// here). A will the session was delaying goes out now if the session ends (the client
    /// started clean), and is dropped if the session moves (its client is back). This node
    /// holds the session, so it decides ownership: a session of another user is not touched
    /// (`NotOwner`), and an ownerless one claimed by a user ends here rather than moving.
    pub fn give_up(
        &self,
        client_id: &str,
        user: Option<&str>,
        keep: bool,
    ) -> Result<Option<RestoredSession>, NotOwner> {
        let Some(broker) = self.broker() else {
            return Ok(None);
        };
        let released =
            broker
                .registry
                .release_to(client_id, user, |session, persistent, will, claim| {
                    let moves = keep && persistent && claim == Claim::Allowed;
                    (moves.then(|| persist::exported(client_id, session)), will)
                });
        let (handle, (session, will)) = match released {
            Ok(Some(released)) => {
                self.pending.retract_registrations(client_id);
                released
            }
            Ok(None) => return Ok(None),
            Err(refused) => {
                tracing::info!(target: "access", client = client_id, user = user.unwrap_or(""),
                    owner = %refused.owner,
                    "takeover from another node refused: the session belongs to another user");
                return Err(refused);
            }
        };
        broker.end_session(
            &handle,
            SessionEnd::MovedAway {
                moved: session.is_some(),
            },
        );
        if let (None, Some(will)) = (&session, will) {
            broker.publish_will(&handle.client_id, &will, "session ended");
        }
        Ok(session)
    }

    /// The leader's id, as this node sees it.
    pub fn leader(&self) -> Option<u64> {
        self.raft.metrics().borrow().current_leader
    }

    /// The forward link to member `id`, started on first use.
    /// Where member `id` is: known to the peer table, or else read from the membership the
    /// Raft log has applied (which the peer table learns from a little later: a node that has
    /// just joined may apply a client's registration by `id` before it).
    pub(crate) fn peer_info(&self, id: u64) -> Option<NodeInfo> {
        self.peers.info(id).or_else(|| {
            let m = self.raft.metrics().borrow().membership_config.clone();
            let info = m.membership().get_node(&id).cloned();
            if let Some(i) = &info {
                self.peers.learn(id, i.clone());
            }
            info
        })
    }

    fn link(&self, id: u64) -> Option<Arc<ForwardLink>> {
        if let Some(l) = self.links.read().get(&id) {
            return Some(l.clone());
        }
        let info = self.peer_info(id)?;
        let mut links = self.links.write();
        let link = links.entry(id).or_insert_with(|| {
            Arc::new(ForwardLink::start(
                self.peers.clone(),
                id,
                info.name,
                self.epoch,
                self.config.forward_queue,
                self.replicas.gate.clone(),
                self.stop.clone(),
            ))
        });
        Some(link.clone())
    }

    /// Stops the member's tasks and Raft.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        let _ = self.raft.shutdown().await;
    }
}

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

    fn forward(&self, message: &Arc<Message>, replicate_retained: bool) -> bool {
        if message.retain && replicate_retained {
            let change = if message.payload.is_empty() {
                Change::DeleteRetained {
                    topic: message.topic.to_string(),
                }
            } else {
                Change::PutRetained(stored_message(message))
            };
            self.pending.push(change);
        }
        let publisher = message.publisher.as_deref().unwrap_or("");
        let version = self.view.version();
        let me = self as *const Self as usize;
        // A publisher mostly repeats its topic: the last lookup of this thread is reused
        // while the tables have not changed (no lock, hash or trie walk per message).
        let send = |links: &[Arc<ForwardLink>]| {
            if !links.is_empty() {
                let out = Arc::new(forwarded(message, publisher));
                let ticket = self.forward_ticket(message, links);
                for link in links {
                    link.send(out.clone(), ticket);
                }
            }
        };
        // Whether another node has a route for the topic (or holds the client it names).
        let elsewhere;
        let hit = LAST_LOOKUP.with_borrow(|last| {
            let fresh = last
                .as_ref()
                .filter(|l| l.member == me && l.version == version && *l.topic == *message.topic)?;
            send(&fresh.links);
            Some((fresh.shares.clone(), !fresh.links.is_empty()))
        });
        let shares = match hit {
            Some((shares, linked)) => {
                elsewhere = linked;
                shares
            }
            None => {
                let ids = self.view.targets(&message.topic);
                let links: Vec<Arc<ForwardLink>> =
                    ids.iter().filter_map(|id| self.link(*id)).collect();
                let shares = self.view.share_targets(&message.topic);
                elsewhere = !ids.is_empty();
                send(&links);
                if links.len() == ids.len() {
                    LAST_LOOKUP.with_borrow_mut(|last| {
                        *last = Some(Lookup {
                            member: me,
                            version,
                            topic: message.topic.clone(),
                            links,
                            shares: shares.clone(),
                        });
                    });
                }
                shares
            }
        };
        let shared = !shares.is_empty();
        if shared {
            self.forward_shared(message, publisher, shares);
        }
        elsewhere || shared
    }

    fn client_attached(&self, client_id: &str, owner: Option<&str>) {
        // Already registered here, as this owner's, with no unregistration on its way: a
        // registration proposed again would change nothing if committed in order, but one
        // still in flight when the session moves on to another node (a takeover) could be
        // committed after that node's and take the client back from it.
        let registered = self.view.holder(client_id) == Some(self.id)
            && self.view.owner(client_id).as_deref() == owner
            && !self.pending.unregisters(client_id);
        if registered {
            return;
        }
        let client_id = client_id.to_owned();
        self.pending.push(match owner {
            Some(owner) => Change::RegisterOwnedClient {
                client_id,
                node: self.id,
                owner: owner.to_owned(),
            },
            None => Change::RegisterClient {
                client_id,
                node: self.id,
            },
        });
    }

    fn client_ended(&self, client_id: &str) {
        self.pending.push(Change::UnregisterClient {
            client_id: client_id.to_owned(),
            node: self.id,
        });
    }

    fn forward_share(&self, share: &Arc<str>, message: &Arc<Message>) -> bool {
        let others: Vec<u64> = self
            .view
            .share_targets(&message.topic)
            .into_iter()
            .find(|(s, _)| s == share)
            .map(|(_, nodes)| nodes.into_iter().filter(|n| *n != self.id).collect())
            .unwrap_or_default();
        if others.is_empty() {
            return false;
        }
        let node = self.share_turn(share, &others);
        let Some(link) = self.link(node) else {
            return false;
        };
        let publisher = message.publisher.as_deref().unwrap_or("");
        let mut out = forwarded(message, publisher);
        out.share = Some(share.to_string());
        link.send(Arc::new(out), 0);
        true
    }

    fn ack_gate(&self) -> Option<Arc<crate::broker::ack_gate::AckGate>> {
        Some(self.replicas.gate.clone())
    }

    fn replicating(&self) -> bool {
        self.replicas.is_active()
    }

    fn replicate(
        &self,
        client_id: &str,
        ops: Vec<fubar_store::records::ReplicaOp>,
        full: &dyn Fn() -> RestoredSession,
    ) {
        self.replicate_session(client_id, ops, full);
    }

    fn session_forgotten(&self, client_id: &str) {
        self.forget_session(client_id);
    }

    fn refuses_session(&self, client_id: &str) -> bool {
        self.lease_refuses(client_id)
    }

    fn take_over<'a>(
        &'a self,
        client_id: &'a str,
        user: Option<&'a str>,
        keep: bool,
    ) -> Pin<Box<dyn Future<Output = Result<Option<RestoredSession>, NotOwner>> + Send + 'a>> {
        Box::pin(async move {
            // The id's owner is replicated: another user is refused here even while the
            // node holding the session is away.
            if let Some(owner) = self.view.owner(client_id) {
                client_owner::check(Some(&owner), user)?;
            }
            let Some(holder) = self.session_holder(client_id) else {
                return Ok(None);
            };
            // Known by the peer table before the call, even on a node that joined just now.
            let _ = self.peer_info(holder);
            let request = PeerRequest::TakeOver {
                client_id: client_id.to_owned(),
                keep,
                user: user.map(str::to_owned),
            };
            match self.peers.call(holder, &request).await {
                Ok(PeerResponse::Session(session)) => Ok(session),
                Ok(PeerResponse::NotOwner { owner }) => Err(NotOwner { owner }),
                Ok(other) => {
                    tracing::warn!(target: "warning", client = client_id, answer = ?other,
                        "unexpected answer to a session takeover");
                    Ok(None)
                }
                Err(e) => {
                    // The holder is away: the client starts here without its old session
                    // (the registration moves it anyway); its owner was checked above.
                    tracing::warn!(target: "warning", client = client_id, error = %e,
                        "cannot take the session over from its node");
                    Ok(None)
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

    fn register(client: &str) -> Change {
        Change::RegisterClient {
            client_id: client.into(),
            node: 1,
        }
    }

    #[test]
    fn a_registration_retracted_while_its_batch_was_out_is_not_put_back() {
        let p = Pending::default();
        p.push(register("c"));
        p.push(register("d"));
        assert!(p.registers("c") && p.registers("d"));
        let out = p.take(10);
        // The client moved to another node while the batch was being proposed.
        p.retract_registrations("c");
        p.put_back(out);
        assert_eq!(p.take(10), vec![register("d")]);
        assert!(
            !p.registers("c"),
            "c's registration is no longer on its way"
        );
        assert!(p.registers("d"), "d's is, until it is applied");
        p.done("d", true);
        assert!(!p.registers("d"));
        p.committed();
        // A retraction with no batch out leaves later registrations of the client alone.
        p.retract_registrations("d");
        p.push(register("d"));
        let out = p.take(10);
        p.put_back(out);
        assert_eq!(p.take(10), vec![register("d")]);
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

/// A cluster member or view connected to a second broker: each serves the one it was built
/// with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the cluster member is already attached to a broker")]
pub struct AlreadyAttached;
