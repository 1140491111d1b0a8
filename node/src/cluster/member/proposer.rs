//! The proposer: route and client changes the broker reports wait in order in `Pending`,
//! and are committed as one Raft entry per batch, on the leader or through it; while there is
//! no leader they wait (a minority side keeps them until it heals).

use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;

use fubar_store::replicated::{Change, ChangeBatch, ChangeBatchOutcome};
use tokio::sync::Notify;

use super::{ClusterMember, RETRY_MIN};

/// Longest wait before a failed proposal is tried again.
const PROPOSE_RETRY_MAX: Duration = Duration::from_millis(300);
use crate::cluster::peer_wire::{PeerRequest, PeerResponse};

/// How long the proposer gathers changes before it proposes them.
const PROPOSE_GATHER: Duration = Duration::from_millis(2);
/// Changes per Raft entry, at most.
const MAX_BATCH_CHANGES: usize = 5_000;

/// Changes waiting for the proposer, in order.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    changes: Mutex<Vec<Change>>,
    /// While a batch is out being proposed: the clients whose registrations were taken back
    /// meanwhile; if that batch comes back (not committed), their registrations in it are
    /// dropped too.
    retracted: Mutex<Option<std::collections::HashSet<String>>>,
    /// This node's registrations (`true`) and unregistrations (`false`) of each client
    /// pushed and not yet applied here (nor taken back): a registration of this node's on
    /// its way outranks another node's applied meanwhile, and an unregistration on its way
    /// means the client is not held here for long.
    unapplied: Mutex<std::collections::HashMap<(String, bool), usize>>,
    wake: Notify,
}

impl Pending {
    pub(crate) fn push(&self, change: Change) {
        if let Some(key) = registry_change(&change) {
            *self.unapplied.lock().entry(key).or_default() += 1;
        }
        self.changes.lock().push(change);
        self.wake.notify_one();
    }

    pub(super) fn take(&self, max: usize) -> Vec<Change> {
        let mut changes = self.changes.lock();
        let n = changes.len().min(max);
        if n > 0 {
            *self.retracted.lock() = Some(Default::default());
        }
        changes.drain(..n).collect()
    }

    /// Whether a registration of `client_id` by this node is on its way (pushed, not applied
    /// here yet).
    pub(crate) fn registers(&self, client_id: &str) -> bool {
        self.unapplied
            .lock()
            .contains_key(&(client_id.to_owned(), true))
    }

    /// Whether an unregistration of `client_id` by this node is on its way.
    pub(super) fn unregisters(&self, client_id: &str) -> bool {
        self.unapplied
            .lock()
            .contains_key(&(client_id.to_owned(), false))
    }

    /// One of this node's registrations (`true`) or unregistrations of `client_id` was
    /// applied here, or dropped.
    pub(crate) fn done(&self, client_id: &str, registration: bool) {
        let mut unapplied = self.unapplied.lock();
        let key = (client_id.to_owned(), registration);
        if let Some(n) = unapplied.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                unapplied.remove(&key);
            }
        }
    }

    /// Puts back changes that could not be committed, ahead of newer ones; registrations
    /// retracted while they were out are dropped.
    pub(super) fn put_back(&self, mut batch: Vec<Change>) {
        let mut changes = self.changes.lock();
        if let Some(retracted) = self.retracted.lock().take() {
            batch.retain(|c| {
                let dropped = is_registration_of_any(c, &retracted);
                if let (true, Some(client)) = (dropped, registration_of(c)) {
                    self.done(client, true);
                }
                !dropped
            });
        }
        batch.append(&mut changes);
        *changes = batch;
    }

    /// A batch was committed: nothing of it can come back.
    pub(super) fn committed(&self) {
        *self.retracted.lock() = None;
    }

    /// Takes back this node's registrations of `client_id` not proposed yet: it handed the
    /// client to another node, whose registration must not be overtaken by a stale one of
    /// this node (the last registration applied holds the client).
    pub(super) fn retract_registrations(&self, client_id: &str) {
        let mut changes = self.changes.lock();
        if let Some(out) = self.retracted.lock().as_mut() {
            out.insert(client_id.to_owned());
        }
        changes.retain(|c| {
            let mine = registration_of(c) == Some(client_id);
            if mine {
                self.done(client_id, true);
            }
            !mine
        });
    }

    pub(super) fn len(&self) -> usize {
        self.changes.lock().len()
    }
}

/// The client a change registers on a node, if it is a registration.
fn registration_of(change: &Change) -> Option<&str> {
    match change {
        Change::RegisterClient { client_id, .. }
        | Change::RegisterOwnedClient { client_id, .. } => Some(client_id),
        _ => None,
    }
}

/// The (client, whether a registration) a registry change of this node's is about.
fn registry_change(change: &Change) -> Option<(String, bool)> {
    match change {
        Change::UnregisterClient { client_id, .. } => Some((client_id.clone(), false)),
        other => registration_of(other).map(|c| (c.to_owned(), true)),
    }
}

fn is_registration_of_any(change: &Change, clients: &std::collections::HashSet<String>) -> bool {
    registration_of(change).is_some_and(|c| clients.contains(c))
}

impl ClusterMember {
    /// Commits `changes` now (on the leader, or through it) and returns their outcomes.
    pub async fn propose_now(
        &self,
        changes: Vec<Change>,
    ) -> Result<ChangeBatchOutcome, ProposeError> {
        let leader = self.leader().ok_or(ProposeError::NoLeader)?;
        if leader != self.id && self.silent(leader) {
            return Err(ProposeError::CutOff {
                silent_ms: self.config.node_down.as_millis(),
            });
        }
        let batch = ChangeBatch(changes);
        if leader == self.id {
            return self
                .raft
                .client_write(batch)
                .await
                .map(|r| r.data)
                .map_err(|e| ProposeError::NotCommitted(e.to_string()));
        }
        match self.peers.call(leader, &PeerRequest::Propose(batch)).await {
            Ok(PeerResponse::Proposed(r)) => r.map_err(ProposeError::NotCommitted),
            Ok(other) => Err(ProposeError::Leader(format!("unexpected answer {other:?}"))),
            Err(e) => Err(ProposeError::Leader(e.to_string())),
        }
    }

    /// Turns pending changes into Raft entries, one batch at a time, retrying while there is
    /// no leader (a minority side keeps them until it heals).
    pub(super) async fn propose_loop(self: Arc<Self>) {
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
                    // Short: a new leader is usually there within an election timeout.
                    wait = (wait * 2).min(PROPOSE_RETRY_MAX);
                    continue;
                }
                self.pending.committed();
                wait = RETRY_MIN;
            }
        }
    }
}

/// Why a change to the replicated state was not committed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// No leader is known: this node is cut off from the majority.
    #[error("no leader: this node is cut off from the majority")]
    NoLeader,
    /// The leader has not answered for `silent_ms`.
    #[error(
        "cut off from the leader (no answer for {silent_ms} ms): this node takes no \
         cluster-state writes until it reaches a majority again"
    )]
    CutOff {
        /// `cluster.node_down_ms`.
        silent_ms: u128,
    },
    /// The leader could not be asked, or answered out of turn.
    #[error("{0}")]
    Leader(String),
    /// Raft did not commit it (the leader's reason).
    #[error("{0}")]
    NotCommitted(String),
}
