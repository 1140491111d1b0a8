//! Failover and fencing.
//!
//! A member dropped by the cluster (silent for `cluster.node_down_ms`): the acknowledgements
//! waiting on copies it was to confirm are refused (their publishers send again), sessions it
//! was a backup of are sent whole to a new backup, and each session it was the primary of is
//! taken over by its first live backup: installed from the copy (subscriptions and routes,
//! queued and in-flight messages, QoS 2 ids), registered, and placed here at a new epoch. Its
//! client, reconnecting to any member, finds it here (or has it moved to where it connects).
//!
//! Fencing: a session this node serves that the cluster placed elsewhere at a newer epoch
//! (this node was cut off or dead meanwhile) is dropped here without being delivered.

use std::sync::Arc;

use super::link::gate_link;
use crate::broker::cluster_hooks::ClusterHooks as _;
use crate::broker::persist;
use crate::broker::session_end::SessionEnd;
use crate::broker::Broker;
use crate::cluster::member::ClusterMember;

impl ClusterMember {
    /// Member `node` was dropped: see the module's doc.
    pub(super) fn member_dropped(&self, node: u64) {
        let name = self
            .peer_info(node)
            .map_or_else(|| node.to_string(), |i| i.name);
        let gate = &self.replicas.gate;
        let refused = gate.fail_link(node) + gate.fail_link(gate_link(node));
        if refused > 0 {
            tracing::warn!(target: "warning", node = %name, refused,
                "acknowledgements waiting on a dropped member are refused");
        }
        let Some(broker) = self.broker() else { return };
        self.rebackup(&broker, node);
        self.adopt_from(&broker, node, &name);
    }

    /// Sends whole, to new backups, the sessions `node` was a backup of.
    fn rebackup(&self, broker: &Broker, node: u64) {
        let affected: Vec<String> = {
            let mut sessions = self.replicas.sessions.lock();
            sessions
                .iter_mut()
                .filter(|(_, e)| e.backups.contains(&node))
                .map(|(c, e)| {
                    e.synced = false;
                    c.clone()
                })
                .collect()
        };
        for client in affected {
            if let Some(handle) = broker.registry.get(&client) {
                let slot = handle.lock();
                let session = &slot.session;
                self.replicate_session(&client, Vec::new(), &|| {
                    persist::exported(&client, session)
                });
            }
        }
    }

    /// Takes over the sessions `node` was the primary of and this node is the first live
    /// backup of.
    fn adopt_from(&self, broker: &Arc<Broker>, node: u64, name: &str) {
        let Some(store) = broker.store.clone() else {
            return;
        };
        let copies = match store.replica_ids() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(target: "error", error = %e, "cannot read the session copies");
                return;
            }
        };
        let live = self.live_brokers();
        for (client, epoch) in copies {
            let Some(placement) = self.view.placement(&client) else {
                continue;
            };
            if placement.primary != node || placement.epoch > epoch {
                continue;
            }
            let first_live = placement
                .backups
                .iter()
                .find(|b| **b == self.id || live.contains(b));
            if first_live != Some(&self.id) || broker.registry.get(&client).is_some() {
                continue;
            }
            let session = match store.replica(&client) {
                Ok(Some((session, _))) => session,
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!(target: "error", client, error = %e,
                        "cannot read a session copy");
                    continue;
                }
            };
            let owner = session.record.owner.clone();
            let queued = session.queued.len();
            persist::install_moved(broker, session);
            self.client_attached(&client, owner.as_deref());
            if let Err(e) = store.delete_replica(&client) {
                tracing::error!(target: "error", client, error = %e,
                    "cannot delete a session copy taken over");
            }
            tracing::warn!(target: "warning", client, node = %name, epoch, queued,
                "session failed over: served here from its copy");
        }
    }

    /// A session placed at `epoch` on another node (`why`): if this node serves an older
    /// one, it is dropped here, undelivered.
    pub(super) fn fence(&self, client: &str, epoch: u64, why: &str) {
        let ours = self.replicas.sessions.lock().get(client).map(|e| e.epoch);
        if ours.is_some_and(|e| e >= epoch) {
            return;
        }
        let Some(broker) = self.broker() else { return };
        let Some(handle) = broker.registry.get(client) else {
            self.replicas.forget(client);
            return;
        };
        if !handle.lock().session.is_persistent() {
            return;
        }
        self.replicas.forget(client);
        if let Some(handle) = broker.registry.release(client) {
            broker.end_session(&handle, SessionEnd::MovedAway { moved: false });
            tracing::warn!(target: "warning", client, epoch, held = ?ours, reason = why,
                "session fenced: a newer epoch serves it elsewhere; the copy here is dropped");
        }
    }

    /// Fences every session served here that the placements put elsewhere (after the
    /// replicated state was replaced whole by a snapshot).
    pub(super) fn fence_stale(&self) {
        let Some(broker) = self.broker() else { return };
        for client in broker.registry.client_ids() {
            if let Some(p) = self.view.placement(&client) {
                if p.primary != self.id {
                    self.fence(&client, p.epoch, "the cluster placed it on another node");
                }
            }
        }
    }
}
