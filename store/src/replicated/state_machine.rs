//! The replicated state machine: applies committed changes into the node's database.
//!
//! Applied state is not fsynced on every apply: the Raft log is durable, the journal keeps
//! writes in order, and the log store syncs the database before it purges entries. After a
//! crash the state may stand a few entries back, with `last_applied` standing back with it
//! (they are written in one batch), and openraft applies those entries again.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fjall::{Database, Keyspace, Readable};
use openraft::storage::RaftStateMachine;
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, Snapshot, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};

use super::apply::Pending;
use super::change::{Change, ChangeBatchOutcome, Outcome};
use super::keyspaces::{DataKeyspaces, KeyValues, Ks};
use super::snapshot::{decode_body, SnapshotBuilder, SnapshotStore};
use super::types::{NodeInfo, TypeConfig};
use crate::StoreError;

const LAST_APPLIED: &str = "last_applied";
const MEMBERSHIP: &str = "membership";

/// Told about every change applied to this node's copy of the state, e.g. to update the
/// in-memory router. Called synchronously on openraft's apply task, after the write: keep it
/// short and never block on Raft from it.
pub trait ApplyListener: Send + Sync {
    /// One change of a committed entry was applied, with its outcome (calls come in log order).
    fn applied(&self, change: &Change, outcome: &Outcome);
    /// The whole state was replaced by a snapshot from the leader: reload everything.
    fn reset(&self);
}

/// The last applied log id and membership, as the state machine records them.
pub(crate) struct AppliedState {
    pub(crate) last_applied: Option<LogId<u64>>,
    pub(crate) membership: StoredMembership<u64, NodeInfo>,
}

/// Reads the applied state through `view` (the live database or a fjall snapshot).
pub(crate) fn read_applied(
    view: &impl Readable,
    sm_meta: &Keyspace,
    path: &Path,
) -> Result<AppliedState, StoreError> {
    let corrupt = |what: String| StoreError::Corrupt {
        path: path.to_owned(),
        what,
    };
    let last_applied = view
        .get(sm_meta, LAST_APPLIED)?
        .map(|v| postcard::from_bytes(&v).map_err(|e| corrupt(format!("last applied: {e}"))))
        .transpose()?;
    let membership = view
        .get(sm_meta, MEMBERSHIP)?
        .map(|v| postcard::from_bytes(&v).map_err(|e| corrupt(format!("membership: {e}"))))
        .transpose()?
        .unwrap_or_default();
    Ok(AppliedState {
        last_applied,
        membership,
    })
}

/// The replicated state machine of one node, for `openraft::Raft::new`. It writes into the
/// same database as the node's `Store`, so the store's reads see the replicated state.
pub struct StateMachine {
    path: PathBuf,
    db: Database,
    data: DataKeyspaces,
    sm_meta: Keyspace,
    snapshots: SnapshotStore,
    listener: Option<Arc<dyn ApplyListener>>,
}

impl Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

type StorageResult<T> = Result<T, StorageError<u64>>;

/// The responses of applied entries, and the changes with their outcomes for the listener.
type Applied = (Vec<ChangeBatchOutcome>, Vec<(Change, Outcome)>);

impl StateMachine {
    pub(crate) fn new(
        path: PathBuf,
        db: Database,
        data: DataKeyspaces,
        sm_meta: Keyspace,
        snapshots: SnapshotStore,
        listener: Option<Arc<dyn ApplyListener>>,
    ) -> Self {
        Self {
            path,
            db,
            data,
            sm_meta,
            snapshots,
            listener,
        }
    }

    fn applied(&self) -> Result<AppliedState, StoreError> {
        read_applied(&self.db.snapshot(), &self.sm_meta, &self.path)
    }

    /// Applies entries in one write batch; returns the responses and what to tell the listener.
    fn apply_entries(
        &self,
        entries: impl IntoIterator<Item = Entry<TypeConfig>>,
    ) -> Result<Applied, StoreError> {
        let mut pending = Pending::new(&self.data, &self.path);
        let mut responses = Vec::new();
        let mut events = Vec::new();
        let mut last_applied = None;
        let mut membership = None;
        for entry in entries {
            last_applied = Some(entry.log_id);
            let outcomes = match entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(entry.log_id), m));
                    Vec::new()
                }
                EntryPayload::Normal(batch) => {
                    let mut outcomes = Vec::with_capacity(batch.0.len());
                    for change in batch.0 {
                        let outcome = pending.apply(&change)?;
                        outcomes.push(outcome.clone());
                        if self.listener.is_some() {
                            events.push((change, outcome));
                        }
                    }
                    outcomes
                }
            };
            responses.push(ChangeBatchOutcome(outcomes));
        }
        let Some(last_applied) = last_applied else {
            return Ok((responses, events));
        };
        let mut batch = self.db.batch();
        pending.write_into(&mut batch);
        batch.insert(
            &self.sm_meta,
            LAST_APPLIED,
            postcard::to_allocvec(&last_applied)?,
        );
        if let Some(m) = membership {
            batch.insert(&self.sm_meta, MEMBERSHIP, postcard::to_allocvec(&m)?);
        }
        batch.commit()?;
        Ok((responses, events))
    }

    fn install(&self, meta: &SnapshotMeta<u64, NodeInfo>, data: &[u8]) -> Result<(), StoreError> {
        let body = decode_body(data)?;
        let mut incoming: BTreeMap<String, KeyValues> = body.keyspaces.into_iter().collect();
        let mut batch = self.db.batch();
        for ks in Ks::ALL {
            let entries = incoming.remove(ks.name()).unwrap_or_default();
            let keyspace = self.data.get(ks);
            let keep: BTreeSet<&[u8]> = entries.iter().map(|(k, _)| k.as_slice()).collect();
            // Keys the snapshot also has are overwritten, not removed first: two writes to one
            // key in a batch would be ambiguous (one sequence number per batch).
            for g in keyspace.iter() {
                let k = g.key()?;
                if !keep.contains(&k[..]) {
                    batch.remove(keyspace, k);
                }
            }
            for (k, v) in entries {
                batch.insert(keyspace, k, v);
            }
        }
        if let Some(name) = incoming.keys().next() {
            return Err(StoreError::BadSnapshot(format!(
                "unknown keyspace {name:?}"
            )));
        }
        match meta.last_log_id {
            Some(l) => batch.insert(&self.sm_meta, LAST_APPLIED, postcard::to_allocvec(&l)?),
            None => batch.remove(&self.sm_meta, LAST_APPLIED),
        }
        batch.insert(
            &self.sm_meta,
            MEMBERSHIP,
            postcard::to_allocvec(&meta.last_membership)?,
        );
        // The state and the snapshot it came from are replaced together, and synced: openraft
        // purges the log up to the snapshot next.
        self.snapshots.commit_with(batch, meta, data)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(Option<LogId<u64>>, StoredMembership<u64, NodeInfo>)> {
        let s = self
            .applied()
            .map_err(|e| StorageIOError::read_state_machine(&e))?;
        Ok((s.last_applied, s.membership))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<ChangeBatchOutcome>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let (responses, events) = self
            .apply_entries(entries)
            .map_err(|e| StorageIOError::write_state_machine(&e))?;
        if let Some(listener) = &self.listener {
            for (change, outcome) in &events {
                listener.applied(change, outcome);
            }
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder::new(
            self.db.snapshot(),
            self.data.clone(),
            self.sm_meta.clone(),
            self.snapshots.clone(),
        )
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, NodeInfo>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        self.install(meta, snapshot.get_ref())
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        if let Some(listener) = &self.listener {
            listener.reset();
        }
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        self.snapshots
            .load()
            .map_err(|e| StorageIOError::read_snapshot(None, &e).into())
    }
}
