//! This node's in-memory view of the replicated state, kept current by the state machine:
//! which nodes have routes for which filters, which node holds which client id; and the
//! broker's own copies of the replicated accounts, settings and retained messages.

use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, Weak};

use fubar_store::records::Placement;
use fubar_store::replicated::{ApplyListener, Change, Outcome};
use fubar_store::Store;

use crate::broker::persist::message_of;
use crate::broker::session_end::SessionEnd;
use crate::broker::Broker;
use crate::mqtt::topic;
use crate::mqtt::trie::SubscriptionTrie;

/// The routes and client registry of the whole cluster, and the way to the broker.
pub struct ReplicatedView {
    /// This node's id: its own routes and clients are in the tables too.
    me: u64,
    store: Arc<Store>,
    routes: RwLock<SubscriptionTrie<u64, ()>>,
    /// Shared subscriptions: the nodes with members of each `$share/GROUP/FILTER`.
    shares: RwLock<ShareRoutes>,
    clients: RwLock<HashMap<String, u64>>,
    /// The user each owned client id belongs to (`client_owner`), whether or not a node
    /// holds it now.
    owners: RwLock<HashMap<String, String>>,
    /// The broker the applied changes reach, set once by `attach` (weak, as the member's).
    broker: OnceLock<Weak<Broker>>,
    /// This node's changes not committed yet (the member proposes them): a registration of
    /// this node's still on its way outranks another node's being applied now.
    pub(crate) pending: Arc<crate::cluster::member::proposer::Pending>,
    /// Woken when the cluster dropped this node's routes and clients (it was thought dead):
    /// the member announces them again.
    pub dropped_me: tokio::sync::Notify,
    /// Bumped by every applied change: what was looked up before it may be stale.
    version: std::sync::atomic::AtomicU64,
    /// Where each replicated persistent session lives, and its epoch.
    placements: RwLock<HashMap<String, Placement>>,
    /// What the member's replica task must act on (members dropped, sessions placed
    /// elsewhere), and the wake-up for it.
    pub(super) replica_work: parking_lot::Mutex<ReplicaWork>,
    /// Woken when `replica_work` has something.
    pub replica_wake: tokio::sync::Notify,
}

/// Applied changes the replica task acts on, in order of arrival.
#[derive(Debug, Default)]
pub struct ReplicaWork {
    /// Members dropped (dead or cut off): their sessions fail over to their backups.
    pub dropped: Vec<u64>,
    /// Sessions placed on another node at an epoch: a copy served here is stale.
    pub placed_elsewhere: Vec<(String, u64)>,
    /// The state was replaced whole (a snapshot): every session served here is checked.
    pub recheck: bool,
}

impl std::fmt::Debug for ReplicatedView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicatedView")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

impl ReplicatedView {
    /// A view for node `me`, loaded from what `store` holds now.
    pub fn new(me: u64, store: Arc<Store>) -> Self {
        let view = Self {
            me,
            store,
            routes: RwLock::default(),
            shares: RwLock::default(),
            clients: RwLock::default(),
            owners: RwLock::default(),
            broker: OnceLock::new(),
            pending: Arc::default(),
            dropped_me: tokio::sync::Notify::new(),
            version: std::sync::atomic::AtomicU64::new(0),
            placements: RwLock::default(),
            replica_work: parking_lot::Mutex::default(),
            replica_wake: tokio::sync::Notify::new(),
        };
        view.reload_tables();
        view
    }

    /// Connects the view to the broker (after which applied changes reach it too) and
    /// brings the broker's copies up to date.
    pub fn attach(&self, broker: &Arc<Broker>) -> Result<(), super::member::AlreadyAttached> {
        self.broker
            .set(Arc::downgrade(broker))
            .map_err(|_| super::member::AlreadyAttached)?;
        self.reload_broker();
        Ok(())
    }

    /// The other nodes that should get a message on `topic`: those with a matching route,
    /// and the one holding the client id `topic` (direct messaging).
    pub fn targets(&self, topic: &str) -> Vec<u64> {
        let mut nodes = Vec::new();
        {
            let routes = self.routes.read();
            routes.for_each_match(topic, |node, ()| {
                if *node != self.me && !nodes.contains(node) {
                    nodes.push(*node);
                }
            });
        }
        if let Some(node) = self.holder(topic) {
            if node != self.me && !nodes.contains(&node) {
                nodes.push(node);
            }
        }
        nodes
    }

    /// The share groups matching `topic`, each with the nodes that have members of it (this
    /// one included), in a stable order.
    pub fn share_targets(&self, topic: &str) -> Vec<(Arc<str>, Vec<u64>)> {
        let shares = self.shares.read();
        let mut found: Vec<(Arc<str>, Vec<u64>)> = Vec::new();
        if shares.trie.is_empty() {
            return found;
        }
        shares.trie.for_each_match(topic, |_, (share, node)| {
            match found.iter_mut().find(|(s, _)| s == share) {
                Some((_, nodes)) => nodes.push(*node),
                None => found.push((share.clone(), vec![*node])),
            }
        });
        for (_, nodes) in &mut found {
            nodes.sort_unstable();
            nodes.dedup();
        }
        found
    }

    /// The node holding `client_id`, if any.
    pub fn holder(&self, client_id: &str) -> Option<u64> {
        self.clients.read().get(client_id).copied()
    }

    /// The user `client_id` belongs to, if it has an owner.
    pub fn owner(&self, client_id: &str) -> Option<String> {
        self.owners.read().get(client_id).cloned()
    }

    /// The filters this node has routes for and the client ids it holds, as the replicated
    /// state says.
    pub fn own_entries(&self) -> (Vec<String>, Vec<String>) {
        let filters = self.store.routes().map_or_else(
            |_| Vec::new(),
            |all| {
                all.into_iter()
                    .filter(|(_, n)| *n == self.me)
                    .map(|(f, _)| f)
                    .collect()
            },
        );
        let clients = self.store.clients().map_or_else(
            |_| Vec::new(),
            |all| {
                all.into_iter()
                    .filter(|(_, n)| *n == self.me)
                    .map(|(c, _)| c)
                    .collect()
            },
        );
        (filters, clients)
    }

    /// Changes whenever the tables may have changed (lookups made at one version hold as
    /// long as it is unchanged).
    pub fn version(&self) -> u64 {
        self.version.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Number of (filter, node) routes and of registered client ids, for status.
    pub fn sizes(&self) -> (usize, usize) {
        let routes = self.routes.read().len() + self.shares.read().trie.len();
        let clients = self.clients.read().len();
        (routes, clients)
    }

    fn broker(&self) -> Option<Arc<Broker>> {
        self.broker.get().and_then(Weak::upgrade)
    }

    fn reload_tables(&self) {
        let mut routes = SubscriptionTrie::new();
        let mut shares = ShareRoutes::default();
        match self.store.routes() {
            Ok(all) => {
                for (filter, node) in all {
                    if !shares.add(&filter, node) {
                        routes.insert(&filter, node, ());
                    }
                }
            }
            Err(e) => tracing::error!(target: "error", error = %e, "cannot read the routes"),
        }
        let clients = match self.store.clients() {
            Ok(all) => all.into_iter().collect(),
            Err(e) => {
                tracing::error!(target: "error", error = %e, "cannot read the client registry");
                HashMap::new()
            }
        };
        *self.routes.write() = routes;
        *self.shares.write() = shares;
        let owners = match self.store.client_owners() {
            Ok(all) => all.into_iter().collect(),
            Err(e) => {
                tracing::error!(target: "error", error = %e, "cannot read the client id owners");
                HashMap::new()
            }
        };
        *self.clients.write() = clients;
        *self.owners.write() = owners;
        let placements = match self.store.placements() {
            Ok(all) => all.into_iter().collect(),
            Err(e) => {
                tracing::error!(target: "error", error = %e, "cannot read the session placements");
                HashMap::new()
            }
        };
        *self.placements.write() = placements;
    }

    /// Where `client_id`'s session lives and its epoch, if it is replicated.
    pub fn placement(&self, client_id: &str) -> Option<Placement> {
        self.placements.read().get(client_id).cloned()
    }

    /// A change the replica task acts on.
    fn replica_work(&self, f: impl FnOnce(&mut ReplicaWork)) {
        f(&mut self.replica_work.lock());
        self.replica_wake.notify_one();
    }

    /// Makes the broker's copies of accounts, settings and retained messages match the store.
    fn reload_broker(&self) {
        let Some(broker) = self.broker() else { return };
        if let Ok(accounts) = self.store.accounts() {
            let mut stale: Vec<String> = broker.accounts.names();
            for (name, record) in accounts {
                stale.retain(|n| *n != name);
                broker.accounts.set_hash(&name, &record.password_hash);
            }
            for name in stale {
                broker.accounts.forget(&name);
            }
        }
        if let Ok(settings) = self.store.settings() {
            for (name, value) in settings {
                if let Err(e) = broker.apply_setting(&name, &value) {
                    tracing::warn!(target: "warning", setting = %name, error = %e,
                        "ignoring a replicated setting");
                }
            }
        }
        if let Err(e) = broker.topic_acl.reload(&self.store) {
            tracing::error!(target: "error", error = %e, "cannot read the topic rules");
        }
        if let Ok(retained) = self.store.retained() {
            broker.retained.clear();
            broker
                .retained
                .restore(retained.into_iter().map(|m| Arc::new(message_of(m))));
        }
    }

    fn apply_to_broker(&self, broker: &Broker, change: &Change, outcome: &Outcome) {
        match change {
            Change::PutAccount { name, record } => {
                broker.accounts.set_hash(name, &record.password_hash);
            }
            Change::DeleteAccount { name } => broker.accounts.forget(name),
            Change::PutSetting { name, value } => {
                if let Err(e) = broker.apply_setting(name, value) {
                    tracing::warn!(target: "warning", setting = %name, error = %e,
                        "ignoring a replicated setting");
                }
            }
            Change::PutRetained(m) => {
                broker.retained.restore([Arc::new(message_of(m.clone()))]);
            }
            Change::DeleteRetained { topic } => broker.retained.forget(topic),
            Change::PutTopicRules { .. } | Change::DeleteTopicRules { .. } => {
                // The store holds the rules as applied: every node swaps in the same set.
                if let Err(e) = broker.topic_acl.reload(&self.store) {
                    tracing::error!(target: "error", error = %e, "cannot read the topic rules");
                }
            }
            Change::RegisterClient { client_id, node }
            | Change::RegisterOwnedClient {
                client_id, node, ..
            } => self.registered(broker, client_id, *node, registrant(change), outcome),
            _ => {}
        }
    }
}

impl ReplicatedView {
    /// A registration of `client_id` by `node` for verified user `user` was applied.
    fn registered(
        &self,
        broker: &Broker,
        client_id: &str,
        node: u64,
        user: Option<&str>,
        outcome: &Outcome,
    ) {
        if node == self.me {
            self.pending.done(client_id, true);
        }
        match outcome {
            // Another node has the client now: close it here. Unless this node registered
            // it again since (a takeover from that node): that registration comes later in
            // the log and holds the client then.
            Outcome::PreviousHolder(_) if node != self.me && !self.pending.registers(client_id) => {
                if let Some(handle) = broker.registry.release(client_id) {
                    broker.end_session(&handle, SessionEnd::MovedAway { moved: false });
                }
            }
            // This node attached a session the id's owner never allowed (another user
            // claimed the id first, on another node, at the same moment): it ends here.
            Outcome::NotOwner { owner } if node == self.me => {
                if let Some(handle) = broker.registry.release_of(client_id, user) {
                    broker.end_session(&handle, SessionEnd::NotOwner { user, owner });
                }
            }
            _ => {}
        }
    }
}

/// The verified user a registration was made for.
fn registrant(change: &Change) -> Option<&str> {
    match change {
        Change::RegisterOwnedClient { owner, .. } => Some(owner),
        _ => None,
    }
}

/// Shared-subscription routes: `(share, node)` entries by the filter inside the share.
#[derive(Debug, Default)]
struct ShareRoutes {
    trie: SubscriptionTrie<Arc<str>, (Arc<str>, u64)>,
}

impl ShareRoutes {
    /// Records `node` for `filter` if it is a shared subscription; false if it is not one.
    fn add(&mut self, filter: &str, node: u64) -> bool {
        let Some((_, inner)) = topic::shared(filter) else {
            return false;
        };
        // One trie entry per (share, node): the key carries both.
        self.trie
            .insert(inner, share_key(filter, node), (filter.into(), node));
        true
    }

    fn remove(&mut self, filter: &str, node: u64) -> bool {
        let Some((_, inner)) = topic::shared(filter) else {
            return false;
        };
        self.trie.remove(inner, &share_key(filter, node));
        true
    }
}

/// The trie key of a share route: the share and the node, so that each node is an entry.
fn share_key(share: &str, node: u64) -> Arc<str> {
    format!("{share}\u{0}{node}").into()
}

impl ApplyListener for ReplicatedView {
    fn applied(&self, change: &Change, outcome: &Outcome) {
        self.version
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        match change {
            Change::AddRoute { filter, node } => {
                let mut shares = self.shares.write();
                if !shares.add(filter, *node) {
                    let mut routes = self.routes.write();
                    routes.insert(filter, *node, ());
                }
            }
            Change::RemoveRoute { filter, node } => {
                let mut shares = self.shares.write();
                if !shares.remove(filter, *node) {
                    let mut routes = self.routes.write();
                    routes.remove(filter, node);
                }
            }
            Change::RegisterClient { client_id, node }
            | Change::RegisterOwnedClient {
                client_id, node, ..
            } => {
                if let Outcome::PreviousHolder(_) = outcome {
                    let mut clients = self.clients.write();
                    clients.insert(client_id.clone(), *node);
                    if let Some(owner) = registrant(change) {
                        let mut owners = self.owners.write();
                        owners.insert(client_id.clone(), owner.to_owned());
                    }
                }
            }
            Change::UnregisterClient { client_id, node } => {
                if *node == self.me {
                    self.pending.done(client_id, false);
                }
                let mut clients = self.clients.write();
                if clients.get(client_id) == Some(node) {
                    clients.remove(client_id);
                    // The session ended on its holder: the id is anyone's again.
                    let mut owners = self.owners.write();
                    owners.remove(client_id);
                }
            }
            Change::DropNode { node } => {
                self.reload_tables();
                if *node == self.me {
                    self.dropped_me.notify_one();
                } else {
                    self.replica_work(|w| w.dropped.push(*node));
                }
            }
            Change::PlaceSession {
                client_id,
                placement,
            } if *outcome == Outcome::Done => {
                let mut placements = self.placements.write();
                placements.insert(client_id.clone(), placement.clone());
                drop(placements);
                if placement.primary != self.me {
                    self.replica_work(|w| {
                        w.placed_elsewhere
                            .push((client_id.clone(), placement.epoch));
                    });
                }
            }
            Change::ForgetPlacement { client_id, epoch } => {
                let mut placements = self.placements.write();
                if placements.get(client_id).is_some_and(|p| p.epoch == *epoch) {
                    placements.remove(client_id);
                }
            }
            _ => {}
        }
        if let Some(broker) = self.broker() {
            self.apply_to_broker(&broker, change, outcome);
        }
    }

    fn reset(&self) {
        self.version
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.reload_tables();
        self.reload_broker();
        self.replica_work(|w| w.recheck = true);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use fubar_store::SyncMode;

    use super::*;

    fn view(me: u64) -> (tempfile::TempDir, ReplicatedView) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), SyncMode::None, Duration::from_millis(1)).unwrap();
        (dir, ReplicatedView::new(me, Arc::new(store)))
    }

    fn route(view: &ReplicatedView, filter: &str, node: u64) {
        let change = Change::AddRoute {
            filter: filter.into(),
            node,
        };
        view.applied(&change, &Outcome::Added(true));
    }

    #[test]
    fn targets_are_other_nodes_with_a_matching_route_once_each() {
        let (_dir, v) = view(1);
        route(&v, "a/#", 1);
        route(&v, "a/b", 2);
        route(&v, "a/+", 2);
        route(&v, "x", 3);
        assert_eq!(v.targets("a/b"), vec![2], "not itself, and node 2 once");
        assert!(v.targets("nothing").is_empty());
        v.applied(
            &Change::RemoveRoute {
                filter: "a/b".into(),
                node: 2,
            },
            &Outcome::Removed(true),
        );
        assert_eq!(v.targets("a/b"), vec![2], "still through a/+");
    }

    #[test]
    fn a_direct_message_goes_to_the_node_holding_the_client() {
        let (_dir, v) = view(1);
        let register = |node| Change::RegisterClient {
            client_id: "c1".into(),
            node,
        };
        v.applied(&register(2), &Outcome::PreviousHolder(None));
        assert_eq!(v.targets("c1"), vec![2]);
        v.applied(&register(3), &Outcome::PreviousHolder(Some(2)));
        assert_eq!(v.targets("c1"), vec![3], "the latest registration wins");
        // An old holder letting go does not remove the new one.
        let unregister = Change::UnregisterClient {
            client_id: "c1".into(),
            node: 2,
        };
        v.applied(&unregister, &Outcome::Removed(false));
        assert_eq!(v.holder("c1"), Some(3));
        v.applied(&register(1), &Outcome::PreviousHolder(Some(3)));
        assert!(v.targets("c1").is_empty(), "held here: nothing to forward");
    }

    #[test]
    fn a_refused_registration_of_this_node_ends_only_the_session_that_made_it() {
        use crate::settings::Settings;
        let (_dir, v) = view(1);
        let broker = Arc::new(Broker::standalone(Settings::default(), None).unwrap());
        v.attach(&broker).unwrap();
        assert!(v.attach(&broker).is_err(), "a view serves one broker");
        let limits = Settings::default().session_limits();
        let mut bob = broker
            .registry
            .attach_with("dev", Some("bob"), false, true, 1, limits)
            .unwrap();
        let owned = |owner: &str| Change::RegisterOwnedClient {
            client_id: "dev".into(),
            node: 1,
            owner: owner.into(),
        };
        let not_alice = Outcome::NotOwner {
            owner: "alice".into(),
        };
        // A refusal of someone else's registration here leaves bob's session alone ...
        v.applied(&owned("carol"), &not_alice);
        assert!(broker.registry.get("dev").is_some());
        // ... bob's own ends it (alice claimed the id first on another node) and kicks him.
        v.applied(&owned("bob"), &not_alice);
        assert!(broker.registry.get("dev").is_none());
        assert!(bob.kicked.try_recv().is_ok(), "bob's connection is closed");
        assert_eq!(v.holder("dev"), None, "a refusal registers nothing");
        assert_eq!(v.owner("dev"), None);
        // alice's registration on node 2 is applied: the id is hers everywhere.
        let alice = Change::RegisterOwnedClient {
            client_id: "dev".into(),
            node: 2,
            owner: "alice".into(),
        };
        v.applied(&alice, &Outcome::PreviousHolder(None));
        assert_eq!(
            (v.holder("dev"), v.owner("dev").as_deref()),
            (Some(2), Some("alice"))
        );
    }

    #[test]
    fn dropping_this_node_wakes_the_announcer() {
        let (_dir, v) = view(7);
        v.applied(&Change::DropNode { node: 7 }, &Outcome::Done);
        // The permit is stored: a later wait returns at once.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(1), v.dropped_me.notified())
                .await
                .expect("notified");
        });
    }
}
