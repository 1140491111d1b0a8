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

use fubar_store::records::{QueuedState, RestoredSession};

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
                self.replicate_session(&client, Vec::new(), &|| slot.exported());
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
            let mut session = match store.replica(&client) {
                Ok(Some((session, _))) => session,
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!(target: "error", client, error = %e,
                        "cannot read a session copy");
                    continue;
                }
            };
            possibly_sent(&mut session, broker.settings().session.inflight_window);
            let owner = session.record.owner.clone();
            let queued = session.queued.len();
            persist::install_failed_over(broker, session);
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
    pub(crate) fn fence(&self, client: &str, epoch: u64, why: &str) {
        let ours = self.replicas.sessions.lock().get(client).map(|e| e.epoch);
        if ours.is_some_and(|e| e >= epoch) {
            return;
        }
        let Some(broker) = self.broker() else { return };
        let Some(handle) = broker.registry.get(client) else {
            self.replicas.forget(client);
            return;
        };
        let online = {
            let slot = handle.lock();
            if !slot.session.is_persistent() {
                return;
            }
            slot.is_online()
        };
        // Served here now and registered here since (or on its way): this node took the
        // session over after that placement was made, by a takeover the placement's node
        // answered; the placement is older than the session here, which places it anew.
        let ours = self.view.holder(client) == Some(self.id) || self.pending.registers(client);
        if online && ours {
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

/// The copy of a session lags its primary by the writes in flight to the backup: messages it
/// holds as queued may have been sent already. The first of them, as many as the in-flight
/// window could have let out, are taken as sent (in flight, with packet ids): they go again
/// with DUP, as a message sent before a connection dropped does.
fn possibly_sent(session: &mut RestoredSession, window: usize) {
    let mut used: std::collections::BTreeSet<u16> = session
        .queued
        .iter()
        .filter_map(|(_, q)| packet_id(q.state))
        .collect();
    let mut room = window.saturating_sub(used.len());
    let mut next = used.last().copied().unwrap_or(0);
    session.queued.sort_by_key(|(seq, _)| *seq);
    for (_, q) in &mut session.queued {
        if room == 0 {
            break;
        }
        if q.state != QueuedState::Queued || q.qos == 0 {
            continue;
        }
        loop {
            next = next.checked_add(1).unwrap_or(1);
            if used.insert(next) {
                break;
            }
        }
        q.state = if q.qos == 1 {
            QueuedState::WaitPubAck(next)
        } else {
            QueuedState::WaitPubRec(next)
        };
        room -= 1;
    }
}

fn packet_id(state: QueuedState) -> Option<u16> {
    match state {
        QueuedState::Queued => None,
        QueuedState::WaitPubAck(id)
        | QueuedState::WaitPubRec(id)
        | QueuedState::WaitPubComp(id) => Some(id),
    }
}

#[cfg(test)]
mod tests {
    use fubar_store::records::{QueuedRecord, SessionRecord, StoredMessage};

    use super::*;

    fn q(qos: u8, state: QueuedState) -> QueuedRecord {
        QueuedRecord {
            message: StoredMessage {
                topic: "t".into(),
                payload: vec![],
                qos,
                retain: false,
                properties: Default::default(),
                expires_at_ms: None,
            },
            qos,
            retain: false,
            state,
            subscription_ids: vec![],
        }
    }

    #[test]
    fn queued_messages_of_a_copy_are_taken_as_sent_up_to_the_window() {
        let mut s = RestoredSession {
            client_id: "c".into(),
            record: SessionRecord::default(),
            queued: vec![
                (1, q(1, QueuedState::WaitPubAck(7))),
                (2, q(2, QueuedState::Queued)),
                (3, q(1, QueuedState::Queued)),
                (4, q(1, QueuedState::Queued)),
            ],
            qos2_received: vec![],
            expires_at_ms: None,
        };
        possibly_sent(&mut s, 3);
        let states: Vec<QueuedState> = s.queued.iter().map(|(_, q)| q.state).collect();
        assert_eq!(
            states,
            vec![
                QueuedState::WaitPubAck(7),
                QueuedState::WaitPubRec(8),
                QueuedState::WaitPubAck(9),
                QueuedState::Queued,
            ]
        );
    }
}
