//! The session lease (`cluster.session_lease_ms`): a node that has not heard from a majority
//! of the voters (itself included) for that long closes the connections of its replicated
//! persistent sessions and refuses to resume them until it hears from a majority again. The
//! lease is shorter than `cluster.node_down_ms`, after which the majority drops the node and
//! its sessions fail over to their backups: so the two sides of a partition never deliver one
//! session at the same time. "Heard from" is what liveness records already (`seen`: a ping
//! answered, or any request of the member's own). Only while replication is on
//! (`session.replicas` > 0 and 3 or more brokers): without copies nobody else can serve the
//! sessions, and a node keeps serving them as before.
//!
//! Hearing a majority again is not enough to serve them again: meanwhile the majority may have
//! failed a session over and this node's log may not show it yet. So the lease is regained
//! only once this node has applied everything the cluster had committed when it asked (the
//! leader's read index, `PeerRequest::ReadIndex`). A restarted node starts without the lease
//! for the same reason: its sessions may have failed over while it was down, and it must not
//! serve their stale copies before its log tells it where they went.

use std::collections::BTreeSet;

use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::ClusterMember;
use crate::broker::cluster_hooks::ClusterHooks as _;
use crate::cluster::peer_wire::{PeerRequest, PeerResponse};

/// Whether this node holds the lease on its replicated sessions now.
#[derive(Debug)]
pub(super) struct Lease {
    /// Replicated sessions are not served here: since start, or since no majority was heard
    /// for `session_lease_ms`, this node has not caught up with the cluster's log. Changed
    /// only with `deferred` locked.
    lapsed: AtomicBool,
    /// Replicated sessions held here (restored at start, or announced again after the cluster
    /// dropped them) whose registration waits for the lease, with their owners.
    deferred: Mutex<Vec<(String, Option<String>)>>,
    /// A lapse was announced (a `warning`): regaining the lease is announced as one too.
    announced: AtomicBool,
    /// When the lease task started: a member not heard from yet counts as heard then.
    started: Instant,
}

impl Lease {
    /// The lease of a node that starts: a restarted one (`restart`) holds it only once caught
    /// up with the cluster's log, since its sessions may have failed over while it was down;
    /// a new one has no sessions that could have.
    pub(super) fn new(restart: bool) -> Self {
        Self {
            lapsed: AtomicBool::new(restart),
            deferred: Mutex::default(),
            announced: AtomicBool::new(false),
            started: Instant::now(),
        }
    }
}

/// When this node last had a majority of the voters heard (itself included, always), from
/// when each other voter was last heard: the oldest of the most recent answers a majority
/// needs.
fn majority_heard_at(mut others: Vec<Instant>, now: Instant) -> Instant {
    let voters = others.len() + 1;
    let others_needed = voters / 2; // a majority (voters / 2 + 1), less this node
    if others_needed == 0 {
        return now;
    }
    others.sort_unstable_by(|a, b| b.cmp(a)); // most recent first
    others[others_needed - 1]
}

impl ClusterMember {
    /// The last moment at which this node had heard from a majority of the voters (itself
    /// included): the oldest of the most recent answers a majority needs.
    fn majority_heard_at(&self, now: Instant) -> Instant {
        let mut voters: BTreeSet<u64> = {
            let m = self.raft.metrics().borrow().membership_config.clone();
            m.membership().voter_ids().collect()
        };
        voters.insert(self.id);
        let heard: Vec<Instant> = {
            let seen = self.seen.lock();
            voters
                .iter()
                .filter(|id| **id != self.id)
                .map(|id| seen.get(id).copied().unwrap_or(self.lease.started))
                .collect()
        };
        majority_heard_at(heard, now)
    }

    /// Whether `client_id`'s session is replicated (placed, with backups): the lease covers
    /// it.
    fn leased(&self, client_id: &str) -> bool {
        self.replicas.holds(client_id) || self.view.placement(client_id).is_some()
    }

    /// Whether a connection for `client_id` must be refused now: replication is on, the
    /// lease is not held and the session is replicated, so another member may be serving it
    /// (see `ClusterHooks::refuses_session`).
    pub(super) fn lease_refuses(&self, client_id: &str) -> bool {
        if !self.replicas.is_active()
            || !self.lease.lapsed.load(Ordering::Relaxed)
            || !self.leased(client_id)
        {
            return false;
        }
        tracing::warn!(target: "warning", client = client_id, node = %self.info.name,
            "session refused: this node has not heard a majority of the cluster within \
             cluster.session_lease_ms, or has not caught up with the cluster's log since it \
             started or heard one again; another member may serve it");
        true
    }

    /// Whether this node has applied everything the cluster committed before now: the leader
    /// confirms its leadership with a majority and names its read index, and this node waits
    /// (at most `session_lease_ms`) until it has applied that far.
    pub(super) async fn caught_up(&self) -> bool {
        let Some(leader) = self.leader() else {
            return false;
        };
        let within = self.config.session_lease;
        let index = if leader == self.id {
            self.read_index()
        } else {
            match self
                .peers
                .call_within(leader, &PeerRequest::ReadIndex, within)
                .await
            {
                Ok(PeerResponse::ReadIndex(index)) => index,
                Ok(other) => Err(format!("unexpected answer {other:?}")),
                Err(e) => Err(e.to_string()),
            }
        };
        let index = match index {
            Ok(index) => index,
            Err(e) => {
                tracing::debug!(target: "debug", leader, error = %e,
                    "cannot learn the cluster's read index yet; replicated sessions wait");
                return false;
            }
        };
        self.raft
            .wait(Some(within))
            .applied_index_at_least(index, "caught up with the cluster's log")
            .await
            .is_ok()
    }

    /// On the leader: the log index a member must have applied to know everything committed
    /// before now (`PeerRequest::ReadIndex`): the leader's last log index, which includes
    /// every committed entry (and perhaps a few not committed yet, which the asking member
    /// then waits for). Only from a leader a majority acknowledged within `session_lease_ms`:
    /// a node restarted from a vote for itself, or a leader cut off from the others, still
    /// calls itself the leader for a while, and its index may be stale.
    pub(crate) fn read_index(&self) -> Result<Option<u64>, String> {
        let m = self.raft.metrics().borrow().clone();
        let lease_ms = u64::try_from(self.config.session_lease.as_millis()).unwrap_or(u64::MAX);
        let acknowledged = m.state == openraft::ServerState::Leader
            && m.current_leader == Some(self.id)
            && m.millis_since_quorum_ack.is_some_and(|ms| ms < lease_ms);
        if !acknowledged {
            return Err(format!(
                "not a leader a majority acknowledged within the lease (state {:?}, leader {:?})",
                m.state, m.current_leader
            ));
        }
        Ok(m.last_log_index)
    }

    /// Watches the lease: wakes when it would lapse (or every ping round while it has), and
    /// closes the replicated sessions' connections while it has lapsed.
    pub(super) async fn keep_session_lease(self: Arc<Self>) {
        loop {
            let now = Instant::now();
            let mut wait = self.config.ping_every;
            if self.replicas.is_active() {
                let lapses = self.majority_heard_at(now) + self.config.session_lease;
                if now >= lapses {
                    self.lease_lapsed(now);
                } else {
                    if self.lease.lapsed.load(Ordering::Relaxed) && self.caught_up().await {
                        self.lease_held();
                    }
                    wait = wait.min(lapses.saturating_duration_since(Instant::now()));
                }
            } else {
                // Replication off: nobody else serves them, registrations wait for nothing.
                let deferred = std::mem::take(&mut *self.lease.deferred.lock());
                self.register_deferred(deferred);
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.stop.cancelled() => return,
            }
        }
    }

    /// Registers the sessions this node holds (restored at start, or announced again after
    /// the cluster dropped them). A replicated one waits while the lease is not held; once
    /// this node has caught up, one the cluster placed on another member meanwhile is fenced
    /// (dropped here, undelivered) instead, so that its stale copy never takes the client id
    /// from the member serving the session.
    pub(super) fn register_held(&self, clients: Vec<(String, Option<String>)>) {
        let mut deferred = self.lease.deferred.lock();
        for (id, owner) in clients {
            if self.replicas.is_active()
                && self.lease.lapsed.load(Ordering::Relaxed)
                && self.leased(&id)
            {
                deferred.push((id, owner));
            } else {
                self.client_attached(&id, owner.as_deref());
            }
        }
    }

    /// The deferred registrations, once the lease is held (or replication is off).
    fn register_deferred(&self, deferred: Vec<(String, Option<String>)>) {
        for (id, owner) in deferred {
            match self.view.placement(&id) {
                Some(p) if p.primary != self.id => self.fence(
                    &id,
                    p.epoch,
                    "the cluster placed it on another node while this one was away",
                ),
                _ => self.client_attached(&id, owner.as_deref()),
            }
        }
    }

    fn lease_held(&self) {
        let deferred = {
            let mut deferred = self.lease.deferred.lock();
            self.lease.lapsed.store(false, Ordering::Relaxed);
            std::mem::take(&mut *deferred)
        };
        self.register_deferred(deferred);
        if self.lease.announced.swap(false, Ordering::Relaxed) {
            tracing::warn!(target: "warning", node = %self.info.name,
                "session lease regained: a majority of the cluster heard again and its log \
                 caught up with; replicated persistent sessions are served here again");
        } else {
            tracing::info!(target: "info", node = %self.info.name,
                "caught up with the cluster's log: replicated persistent sessions are served here");
        }
    }

    /// No majority heard for the lease: every replicated session's connection here closes
    /// (the session stays, offline; the cluster may move it).
    fn lease_lapsed(&self, now: Instant) {
        {
            let _deferred = self.lease.deferred.lock();
            self.lease.lapsed.store(true, Ordering::Relaxed);
        }
        if !self.lease.announced.swap(true, Ordering::Relaxed) {
            tracing::warn!(target: "warning", node = %self.info.name,
                lease_ms = self.config.session_lease.as_millis() as u64,
                "session lease lapsed: no majority of the cluster heard; replicated persistent \
                 sessions are no longer served here");
        }
        let Some(broker) = self.broker() else { return };
        for client in broker.registry.client_ids() {
            if self.leased(&client) && broker.registry.disconnect(&client, now) {
                tracing::warn!(target: "warning", client, node = %self.info.name,
                    "session connection closed: no majority of the cluster heard within \
                     cluster.session_lease_ms; the other members may take the session over");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_majority_is_heard_as_long_as_enough_of_the_others_answered() {
        let now = Instant::now();
        let ago = |ms| now.checked_sub(Duration::from_millis(ms)).unwrap_or(now);
        // Alone: always a majority of one.
        assert_eq!(majority_heard_at(vec![], now), now);
        // Three voters: one other is enough; the fresher one counts.
        assert_eq!(majority_heard_at(vec![ago(5_000), ago(100)], now), ago(100));
        // Both others silent: heard when the fresher of them last answered.
        assert_eq!(
            majority_heard_at(vec![ago(5_000), ago(3_000)], now),
            ago(3_000)
        );
        // Five voters: two others are needed; the second freshest counts.
        let five = vec![ago(10), ago(4_000), ago(20), ago(9_000)];
        assert_eq!(majority_heard_at(five, now), ago(20));
        // Four voters (this node and three): a majority is three, so two others.
        assert_eq!(
            majority_heard_at(vec![ago(10), ago(4_000), ago(6_000)], now),
            ago(4_000)
        );
    }
}
