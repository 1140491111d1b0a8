//! The session lease (`cluster.session_lease_ms`): a node that has not heard from a majority
//! of the voters (itself included) for that long closes the connections of its replicated
//! persistent sessions and refuses to resume them until it hears from a majority again. The
//! lease is shorter than `cluster.node_down_ms`, after which the majority drops the node and
//! its sessions fail over to their backups: so the two sides of a partition never deliver one
//! session at the same time. "Heard from" is what liveness records already (`seen`: a ping
//! answered, or any request of the member's own). Only while replication is on
//! (`session.replicas` > 0 and 3 or more brokers): without copies nobody else can serve the
//! sessions, and a node keeps serving them as before.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::ClusterMember;

/// Whether this node holds the lease on its replicated sessions now.
#[derive(Debug)]
pub(super) struct Lease {
    /// No majority heard for `session_lease_ms`: replicated sessions are not served.
    lapsed: AtomicBool,
    /// When the lease task started: a member not heard from yet counts as heard then.
    started: Instant,
}

impl Default for Lease {
    fn default() -> Self {
        Self {
            lapsed: AtomicBool::new(false),
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

    /// Whether a connection for `client_id` must be refused now: the lease lapsed and the
    /// session is replicated, so the majority may be serving it (see
    /// `ClusterHooks::refuses_session`).
    pub(super) fn lease_refuses(&self, client_id: &str) -> bool {
        if !self.lease.lapsed.load(Ordering::Relaxed) || !self.leased(client_id) {
            return false;
        }
        tracing::warn!(target: "warning", client = client_id, node = %self.info.name,
            "session refused: no majority of the cluster heard within cluster.session_lease_ms; \
             the other members may serve it");
        true
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
                    self.lease_held();
                    wait = wait.min(lapses - now);
                }
            } else {
                self.lease_held();
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.stop.cancelled() => return,
            }
        }
    }

    fn lease_held(&self) {
        if self.lease.lapsed.swap(false, Ordering::Relaxed) {
            tracing::warn!(target: "warning", node = %self.info.name,
                "session lease regained: a majority of the cluster heard again; replicated \
                 persistent sessions are served here again");
        }
    }

    /// No majority heard for the lease: every replicated session's connection here closes
    /// (the session stays, offline; the cluster may move it).
    fn lease_lapsed(&self, now: Instant) {
        if !self.lease.lapsed.swap(true, Ordering::Relaxed) {
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
