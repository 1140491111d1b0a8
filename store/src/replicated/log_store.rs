//! The Raft log and vote in fjall.
//!
//! Entries live in the `raft_log` keyspace under their index (u64 big-endian, so key order is
//! log order), postcard-encoded; the vote, the committed log id and the last purged log id live
//! in `raft_meta`. The log shares the node's database (and its journal) with the state machine.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::PathBuf;

use fjall::{Database, Keyspace, PersistMode};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    Entry, LogId, OptionalSend, RaftLogId, RaftLogReader, StorageError, StorageIOError, Vote,
};
use serde::de::DeserializeOwned;

use super::types::TypeConfig;
use crate::StoreError;

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";

/// The Raft log storage (and log reader) of one node, for `openraft::Raft::new`.
///
/// Cheap to clone: clones share the keyspaces. openraft serializes the writes.
#[derive(Clone)]
pub struct LogStore {
    path: PathBuf,
    db: Database,
    log: Keyspace,
    meta: Keyspace,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

type StorageResult<T> = Result<T, StorageError<u64>>;

impl LogStore {
    pub(crate) fn new(path: PathBuf, db: Database, log: Keyspace, meta: Keyspace) -> Self {
        Self {
            path,
            db,
            log,
            meta,
        }
    }

    fn corrupt(&self, what: String) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            what,
        }
    }

    fn read_meta<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        self.meta
            .get(key)?
            .map(|v| {
                postcard::from_bytes(&v).map_err(|e| self.corrupt(format!("raft meta {key}: {e}")))
            })
            .transpose()
    }

    fn decode_entry(&self, key: &[u8], v: &[u8]) -> Result<Entry<TypeConfig>, StoreError> {
        postcard::from_bytes(v).map_err(|e| self.corrupt(format!("raft log entry {key:?}: {e}")))
    }

    fn entries(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<Vec<Entry<TypeConfig>>, StoreError> {
        let be = |b: Bound<u64>| b.map(u64::to_be_bytes);
        self.log
            .range::<[u8; 8], _>((be(start), be(end)))
            .map(|g| {
                let (k, v) = g.into_inner()?;
                self.decode_entry(&k, &v)
            })
            .collect()
    }

    fn log_state(&self) -> Result<LogState<TypeConfig>, StoreError> {
        let last_purged_log_id: Option<LogId<u64>> = self.read_meta(LAST_PURGED)?;
        let last = match self.log.last_key_value() {
            Some(g) => {
                let (k, v) = g.into_inner()?;
                Some(*self.decode_entry(&k, &v)?.get_log_id())
            }
            None => None,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last.or(last_purged_log_id),
        })
    }

    fn append_sync(
        &self,
        entries: impl IntoIterator<Item = Entry<TypeConfig>>,
    ) -> Result<(), StoreError> {
        let mut batch = self.db.batch();
        for entry in entries {
            batch.insert(
                &self.log,
                entry.log_id.index.to_be_bytes(),
                postcard::to_allocvec(&entry)?,
            );
        }
        batch.commit()?;
        Ok(self.db.persist(PersistMode::SyncAll)?)
    }

    /// Removes entries with index in `range`; `extra` writes join the same batch.
    fn remove_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
        extra: Option<(&str, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        let be = |b: Bound<u64>| b.map(u64::to_be_bytes);
        let mut batch = self.db.batch();
        for g in self.log.range::<[u8; 8], _>((be(start), be(end))) {
            batch.remove(&self.log, g.key()?);
        }
        if let Some((key, value)) = extra {
            batch.insert(&self.meta, key, value);
        }
        Ok(batch.commit()?)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        self.entries(range.start_bound().cloned(), range.end_bound().cloned())
            .map_err(|e| StorageIOError::read_logs(&e).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        self.log_state()
            .map_err(|e| StorageIOError::read_logs(&e).into())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> StorageResult<()> {
        // A vote must be durable before it is answered: a node that forgets its vote may vote
        // twice in one term.
        let write = || -> Result<(), StoreError> {
            self.meta.insert(VOTE, postcard::to_allocvec(vote)?)?;
            Ok(self.db.persist(PersistMode::SyncAll)?)
        };
        write().map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<u64>>> {
        self.read_meta(VOTE)
            .map_err(|e| StorageIOError::read_vote(&e).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> StorageResult<()> {
        // Not synced: it only lets a restarted node re-apply sooner; losing it is harmless.
        let write = || -> Result<(), StoreError> {
            Ok(self
                .meta
                .insert(COMMITTED, postcard::to_allocvec(&committed)?)?)
        };
        write().map_err(|e| StorageIOError::write(&e).into())
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<u64>>> {
        self.read_meta::<Option<LogId<u64>>>(COMMITTED)
            .map(Option::flatten)
            .map_err(|e| StorageIOError::read(&e).into())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // The callback tells openraft the entries are durable (a follower then acknowledges
        // them to the leader), so it comes only after the fsync.
        match self.append_sync(entries) {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(StorageIOError::write_logs(&e).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> StorageResult<()> {
        // Not synced: the next append syncs the journal, removals included; truncated entries
        // that come back after a crash were never committed, and are truncated again.
        self.remove_range(Bound::Included(log_id.index), Bound::Unbounded, None)
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> StorageResult<()> {
        let purge = || -> Result<(), StoreError> {
            // The state machine shares this database: syncing it first makes the state applied
            // up to the purge point durable before the entries that produced it go.
            self.db.persist(PersistMode::SyncAll)?;
            let last_purged = postcard::to_allocvec(&log_id)?;
            self.remove_range(
                Bound::Unbounded,
                Bound::Included(log_id.index),
                Some((LAST_PURGED, last_purged)),
            )
        };
        purge().map_err(|e| StorageIOError::write_logs(&e).into())
    }
}
