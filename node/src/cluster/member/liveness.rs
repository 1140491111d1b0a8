//! Liveness: every member pings the others; the leader drops the routes and clients of a
//! member silent for `node_down` (its clients reconnect elsewhere), and a member whose routes
//! were dropped while it lived announces them again.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use fubar_store::replicated::{Change, NodeInfo};

use super::ClusterMember;
use crate::broker::cluster_hooks::ClusterHooks as _;
use crate::cluster::peer_wire::{PeerRequest, PeerResponse};

impl ClusterMember {
    /// After the cluster dropped this node's routes and clients (it was silent too long, or
    /// cut off), announces them again: they are still here.
    pub(super) async fn announce_again_when_dropped(self: Arc<Self>) {
        loop {
            tokio::select! {
                () = self.view.dropped_me.notified() => {}
                () = self.stop.cancelled() => return,
            }
            let Some(broker) = self.broker() else {
                continue;
            };
            let filters = broker.router.local_filters();
            let clients = broker.registry.client_ids_and_owners();
            tracing::warn!(target: "warning", routes = filters.len(), clients = clients.len(),
                "the cluster dropped this node's routes and clients; announcing them again");
            for filter in filters {
                self.route_added(&filter);
            }
            self.register_held(clients);
        }
    }

    /// Whether member `id` has not answered a ping for `node_down`.
    pub(crate) fn silent(&self, id: u64) -> bool {
        let seen = self.seen.lock();
        seen.get(&id)
            .is_some_and(|t| t.elapsed() >= self.config.node_down)
    }

    pub(super) fn dropped_lock(&self) -> parking_lot::MutexGuard<'_, BTreeSet<u64>> {
        self.dropped.lock()
    }

    /// Pings every member; the leader drops the routes and clients of a member silent for
    /// `node_down` (its clients reconnect elsewhere), and the member adds them back itself
    /// when it returns.
    pub(super) async fn watch_members(self: Arc<Self>) {
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
                let mut seen = self.seen.lock();
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
                        me.seen.lock().insert(id, Instant::now());
                    }
                });
            }
            self.update_replication();
            if self.leader() == Some(self.id) {
                self.drop_silent_members(&members).await;
            }
        }
    }

    pub(super) async fn drop_silent_members(&self, members: &[(u64, NodeInfo)]) {
        let now = Instant::now();
        let silent: Vec<(u64, String)> = {
            let seen = self.seen.lock();
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
        let seen = self.seen.lock();
        self.dropped_lock().retain(|id| {
            seen.get(id)
                .is_none_or(|t| now.duration_since(*t) >= self.config.node_down)
        });
    }
}
