//! Replicated persistent sessions (issue 23): the primary streams each persistent session's
//! journal to `session.replicas` backups over the peer links, the publisher's acknowledgement
//! waits for them (`AckGate`), and where each session lives, with its epoch, is in Raft
//! (`Change::PlaceSession`). When a member is dropped, the first live backup of each of its
//! sessions takes it over from its copy (`failover`); a copy from an older epoch is never
//! served (fencing). See `docs/replicated-sessions.md`.

mod failover;
pub mod link;
pub mod serve;

use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fubar_store::records::{Placement, ReplicaOp, RestoredSession};
use fubar_store::replicated::{Change, NodeRole};
use tokio::sync::mpsc;

use super::member::ClusterMember;
use super::peer_wire::ReplicaEntry;
use crate::broker::ack_gate::AckGate;
use link::{LinkConfig, ReplicaLink};

/// Fenced sessions reported by backups and waiting for the replica task.
const FENCED_QUEUE: usize = 4096;

/// The replication settings a member works with.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// `session.replicas`.
    pub replicas: usize,
    /// `cluster.replica_ack_timeout_ms`.
    pub ack_timeout: Duration,
    /// `cluster.replica_queue`.
    pub queue: usize,
}

/// One session this node is the primary of, as replicated.
#[derive(Debug, Clone)]
struct Entry {
    epoch: u64,
    backups: Vec<u64>,
    /// The backups have the whole session (else the next write sends it whole).
    synced: bool,
}

/// The primary's side of replication: its sessions' placements and the links to backups.
pub struct Replicator {
    /// Acknowledgements waiting for copies on other members.
    pub gate: Arc<AckGate>,
    config: ReplicaConfig,
    links: RwLock<HashMap<u64, Arc<ReplicaLink>>>,
    sessions: Mutex<HashMap<String, Entry>>,
    /// Replication is on: `session.replicas` > 0 and 3 or more brokers in the membership.
    active: AtomicBool,
    fenced_tx: link::Fenced,
    fenced_rx: Mutex<Option<mpsc::Receiver<(String, u64)>>>,
}

impl std::fmt::Debug for Replicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replicator")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Replicator {
    /// A replicator with no session yet.
    pub fn new(config: ReplicaConfig) -> Self {
        let (fenced_tx, fenced_rx) = mpsc::channel(FENCED_QUEUE);
        Self {
            gate: Arc::default(),
            config,
            links: RwLock::default(),
            sessions: Mutex::default(),
            active: AtomicBool::new(false),
            fenced_tx,
            fenced_rx: Mutex::new(Some(fenced_rx)),
        }
    }

    /// Whether persistent sessions are replicated now.
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// Whether this node is the primary of `client_id`'s replicated session.
    pub(crate) fn holds(&self, client_id: &str) -> bool {
        self.sessions.lock().contains_key(client_id)
    }

    /// Forgets this node's entry for `client_id` (it is no longer its primary).
    fn forget(&self, client_id: &str) -> Option<(u64, Vec<u64>)> {
        self.sessions
            .lock()
            .remove(client_id)
            .map(|e| (e.epoch, e.backups))
    }
}

/// A new epoch for a session: above the one recorded, and at least the wall clock in
/// milliseconds, so a session placed anew after its placement was forgotten (it moved, and
/// the old primary's forget came first) still outranks every older copy.
fn next_epoch(recorded: Option<u64>) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    recorded.map_or(1, |e| e + 1).max(now)
}

/// The `n` members among `candidates` ranked highest for `client_id` (rendezvous hashing:
/// stable as members come and go, and spread evenly).
pub fn rendezvous(client_id: &str, candidates: &[u64], n: usize) -> Vec<u64> {
    let mut ranked: Vec<(u64, u64)> = candidates
        .iter()
        .map(|id| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            client_id.hash(&mut h);
            id.hash(&mut h);
            (h.finish(), *id)
        })
        .collect();
    ranked.sort_unstable_by(|a, b| b.cmp(a));
    ranked.into_iter().take(n).map(|(_, id)| id).collect()
}

impl ClusterMember {
    /// The broker members other than this one that answer pings now.
    pub(crate) fn live_brokers(&self) -> Vec<u64> {
        let m = self.raft.metrics().borrow().membership_config.clone();
        m.membership()
            .nodes()
            .filter(|(id, n)| **id != self.id && n.role == NodeRole::Broker)
            .map(|(id, _)| *id)
            .filter(|id| !self.silent(*id))
            .collect()
    }

    /// The other node that holds `client_id`'s session (a takeover asks it). A registered
    /// holder that is silent may have been dropped and the session failed over before this
    /// node applied the new registration: then it is where its placement's first live copy
    /// is (the primary, or the backup that fails it over).
    pub(crate) fn session_holder(&self, client_id: &str) -> Option<u64> {
        let registered = self
            .view
            .holder(client_id)
            .filter(|h| *h != self.id && !self.silent(*h));
        registered.or_else(|| self.copy_holder(client_id))
    }

    fn copy_holder(&self, client_id: &str) -> Option<u64> {
        let p = self.view.placement(client_id)?;
        std::iter::once(p.primary)
            .chain(p.backups)
            .find(|id| !self.silent(*id))
            .filter(|id| *id != self.id)
    }

    /// Turns replication on or off from the membership (called on every ping round).
    pub(crate) fn update_replication(&self) {
        let brokers = {
            let m = self.raft.metrics().borrow().membership_config.clone();
            m.membership()
                .nodes()
                .filter(|(_, n)| n.role == NodeRole::Broker)
                .count()
        };
        let r = &self.replicas;
        let on = r.config.replicas > 0 && brokers >= 3;
        if r.active.swap(on, Ordering::Relaxed) != on {
            tracing::info!(target: "info", replicas = r.config.replicas, brokers,
                on, "persistent session replication switched");
        }
    }

    fn replica_link(&self, id: u64) -> Option<Arc<ReplicaLink>> {
        if let Some(l) = self.replicas.links.read().get(&id) {
            return Some(l.clone());
        }
        let info = self.peer_info(id)?;
        let r = &self.replicas;
        let mut links = r.links.write();
        let link = links.entry(id).or_insert_with(|| {
            let config = LinkConfig {
                id,
                name: info.name,
                boot: self.epoch,
                capacity: r.config.queue,
                ack_timeout: r.config.ack_timeout,
            };
            Arc::new(ReplicaLink::start(
                self.peers.clone(),
                r.gate.clone(),
                config,
                r.fenced_tx.clone(),
                self.stop.clone(),
            ))
        });
        Some(link.clone())
    }

    /// Copies a persistent session's writes to its backups (see `ClusterHooks::replicate`).
    pub(crate) fn replicate_session(
        &self,
        client_id: &str,
        ops: Vec<ReplicaOp>,
        full: &dyn Fn() -> RestoredSession,
    ) {
        let mut sessions = self.replicas.sessions.lock();
        let (entry, ops) = match sessions.get_mut(client_id) {
            Some(e) if e.synced => (e.clone(), ops),
            existing => {
                let epoch = match existing {
                    Some(e) => e.epoch,
                    None => next_epoch(self.view.placement(client_id).map(|p| p.epoch)),
                };
                let backups = rendezvous(
                    client_id,
                    &self.live_brokers(),
                    self.replicas.config.replicas,
                );
                let entry = Entry {
                    epoch,
                    backups: backups.clone(),
                    synced: true,
                };
                sessions.insert(client_id.to_owned(), entry.clone());
                self.pending.push(Change::PlaceSession {
                    client_id: client_id.to_owned(),
                    placement: Placement {
                        primary: self.id,
                        backups,
                        epoch,
                    },
                });
                tracing::info!(target: "info", client = client_id, epoch,
                    backups = ?entry.backups, "persistent session placed");
                (entry, vec![ReplicaOp::Full(full())])
            }
        };
        if !self.send_to_backups(client_id, &entry, ops) {
            if let Some(e) = sessions.get_mut(client_id) {
                e.synced = false;
            }
        }
    }

    /// Sends one entry to each backup; false if one could not take it (its copy is then
    /// incomplete: the next write sends the whole session).
    fn send_to_backups(&self, client_id: &str, entry: &Entry, ops: Vec<ReplicaOp>) -> bool {
        let links: Vec<(u64, Arc<ReplicaLink>)> = entry
            .backups
            .iter()
            .filter_map(|b| self.replica_link(*b).map(|l| (*b, l)))
            .collect();
        if links.is_empty() {
            return true;
        }
        let ids: Vec<u64> = links.iter().map(|(b, _)| link::gate_link(*b)).collect();
        let ticket = self.replicas.gate.issue(&ids);
        let out = Arc::new(ReplicaEntry {
            client_id: client_id.to_owned(),
            epoch: entry.epoch,
            ops,
        });
        let mut all = true;
        for (backup, link) in links {
            if !link.send(out.clone(), ticket) {
                all = false;
                tracing::warn!(target: "warning", client = client_id, node = backup,
                    epoch = entry.epoch, "replication queue full: the session is sent whole next");
            }
        }
        all
    }

    /// The ticket a forwarded QoS 1/2 message's acknowledgement waits for (0: none): while
    /// replication is on, a publisher's PUBACK waits for the nodes it was forwarded to to
    /// have it in their sessions (and their backups).
    pub(crate) fn forward_ticket(
        &self,
        message: &crate::mqtt::message::Message,
        links: &[Arc<super::forward::ForwardLink>],
    ) -> u64 {
        if message.qos == crate::mqtt::packet::QoS::AtMostOnce || !self.replicas.is_active() {
            return 0;
        }
        let ids: Vec<u64> = links.iter().map(|l| l.id).collect();
        self.replicas.gate.issue(&ids)
    }

    /// A session this node was the primary of ended or moved: its copies and placement go.
    pub(crate) fn forget_session(&self, client_id: &str) {
        let Some((epoch, backups)) = self.replicas.forget(client_id) else {
            return;
        };
        let entry = Entry {
            epoch,
            backups,
            synced: true,
        };
        self.send_to_backups(client_id, &entry, vec![ReplicaOp::Delete]);
        self.pending.push(Change::ForgetPlacement {
            client_id: client_id.to_owned(),
            epoch,
        });
    }

    /// Starts the task that acts on dropped members, sessions placed elsewhere and fenced
    /// sessions.
    pub(crate) fn start_replica_task(self: &Arc<Self>) {
        if let Some(rx) = self.replicas.fenced_rx.lock().take() {
            tokio::spawn(self.clone().replica_task(rx));
        }
    }

    async fn replica_task(self: Arc<Self>, mut fenced: mpsc::Receiver<(String, u64)>) {
        loop {
            tokio::select! {
                () = self.view.replica_wake.notified() => {}
                f = fenced.recv() => match f {
                    Some((client, epoch)) => self.fence(&client, epoch, "a backup holds a newer epoch"),
                    None => return,
                },
                () = self.stop.cancelled() => return,
            }
            let work = std::mem::take(&mut *self.view.replica_work.lock());
            for node in work.dropped {
                self.member_dropped(node);
            }
            for (client, epoch) in work.placed_elsewhere {
                self.fence(&client, epoch, "the cluster placed it on another node");
            }
            if work.recheck {
                self.fence_stale();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendezvous_is_stable_and_moves_only_what_a_lost_member_held() {
        let members = [11, 22, 33, 44];
        let before: Vec<Vec<u64>> = (0..200)
            .map(|i| rendezvous(&format!("c{i}"), &members, 1))
            .collect();
        let again: Vec<Vec<u64>> = (0..200)
            .map(|i| rendezvous(&format!("c{i}"), &members, 1))
            .collect();
        assert_eq!(before, again);
        // Every member gets some.
        for m in members {
            assert!(before.iter().any(|b| b == &vec![m]), "{m} backs nothing up");
        }
        // Losing 22 moves only the sessions 22 backed up.
        let after: Vec<Vec<u64>> = (0..200)
            .map(|i| rendezvous(&format!("c{i}"), &[11, 33, 44], 1))
            .collect();
        for (b, a) in before.iter().zip(&after) {
            if b != &vec![22] {
                assert_eq!(b, a);
            }
        }
        assert_eq!(rendezvous("c", &members, 2).len(), 2);
        assert!(rendezvous("c", &[], 1).is_empty());
    }

    #[test]
    fn a_new_epoch_is_above_the_recorded_one_and_the_clock() {
        assert!(next_epoch(None) > 1_000_000_000_000);
        assert_eq!(next_epoch(Some(u64::MAX - 1)), u64::MAX);
    }
}
