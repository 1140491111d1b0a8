//! Snapshots of the replicated state, and where the current one is kept.
//!
//! A snapshot is a postcard dump of the data keyspaces (raw keys and values, so a copy reads
//! exactly like the original) with the last applied log id and membership. The current snapshot
//! lives in the `raft_snapshot` keyspace, cut into chunks so that no single value gets large,
//! so `get_current_snapshot` still has it after a restart.

use parking_lot::Mutex;
use std::fmt::Debug;
use std::io::Cursor;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use fjall::{Database, Keyspace, OwnedWriteBatch as WriteBatch, PersistMode, Readable};
use openraft::{
    LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};
use serde::{Deserialize, Serialize};

use super::keyspaces::{DataKeyspaces, KeyValues, Ks};
use super::state_machine::{read_applied, AppliedState};
use super::types::{NodeInfo, TypeConfig};
use crate::StoreError;

/// Version of the snapshot body; a node refuses a snapshot of another version.
pub(crate) const SNAPSHOT_FORMAT: u32 = 1;

/// Chunk size of the stored snapshot.
const CHUNK: usize = 1 << 20;
const META_KEY: &[u8] = b"m";
const CHUNK_PREFIX: u8 = b'c';

/// What a snapshot carries. Field order is the format.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SnapshotBody {
    pub(crate) format: u32,
    pub(crate) last_applied: Option<LogId<u64>>,
    pub(crate) membership: StoredMembership<u64, NodeInfo>,
    /// Keyspace name → every key and value, in key order.
    pub(crate) keyspaces: Vec<(String, KeyValues)>,
}

fn chunk_key(i: u32) -> [u8; 5] {
    let b = i.to_be_bytes();
    [CHUNK_PREFIX, b[0], b[1], b[2], b[3]]
}

/// The stored current snapshot.
#[derive(Clone)]
pub(crate) struct SnapshotStore {
    path: PathBuf,
    db: Database,
    keyspace: Keyspace,
    /// Held while the stored snapshot is read-compared-replaced: a snapshot built in the
    /// background must not overwrite a newer one installed meanwhile.
    lock: Arc<Mutex<()>>,
}

impl SnapshotStore {
    pub(crate) fn new(path: PathBuf, db: Database, keyspace: Keyspace) -> Self {
        Self {
            path,
            db,
            keyspace,
            lock: Arc::new(Mutex::new(())),
        }
    }

    fn corrupt(&self, what: String) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            what,
        }
    }

    fn load_meta(&self) -> Result<Option<SnapshotMeta<u64, NodeInfo>>, StoreError> {
        self.keyspace
            .get(META_KEY)?
            .map(|v| {
                postcard::from_bytes(&v).map_err(|e| self.corrupt(format!("snapshot meta: {e}")))
            })
            .transpose()
    }

    /// The current snapshot, if one was built or installed.
    pub(crate) fn load(&self) -> Result<Option<Snapshot<TypeConfig>>, StoreError> {
        let _guard = self.lock.lock();
        let Some(meta) = self.load_meta()? else {
            return Ok(None);
        };
        let mut data = Vec::new();
        for g in self.keyspace.prefix([CHUNK_PREFIX]) {
            data.extend_from_slice(&g.value()?);
        }
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }

    /// Adds to `batch` the writes that make (`meta`, `data`) the current snapshot. The caller
    /// holds the lock until the batch is committed.
    fn write_into(
        &self,
        batch: &mut WriteBatch,
        meta: &SnapshotMeta<u64, NodeInfo>,
        data: &[u8],
    ) -> Result<(), StoreError> {
        let mut count = 0u32;
        for (i, chunk) in data.chunks(CHUNK).enumerate() {
            let i = u32::try_from(i).map_err(|_| self.corrupt("snapshot too large".into()))?;
            batch.insert(&self.keyspace, chunk_key(i), chunk);
            count = i + 1;
        }
        // Only the chunks past the new end are removed: a key written twice in one batch
        // would be ambiguous (one sequence number per batch).
        for g in self.keyspace.prefix([CHUNK_PREFIX]) {
            let k = g.key()?;
            let i = k
                .get(1..)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_be_bytes)
                .ok_or_else(|| self.corrupt(format!("snapshot chunk key {:?}", &k[..])))?;
            if i >= count {
                batch.remove(&self.keyspace, k);
            }
        }
        batch.insert(&self.keyspace, META_KEY, postcard::to_allocvec(meta)?);
        Ok(())
    }

    /// Makes a snapshot built here the current one, unless a newer one is stored already.
    fn save_built(
        &self,
        meta: &SnapshotMeta<u64, NodeInfo>,
        data: &[u8],
    ) -> Result<(), StoreError> {
        let _guard = self.lock.lock();
        if let Some(current) = self.load_meta()? {
            if current.last_log_id > meta.last_log_id {
                return Ok(());
            }
        }
        let mut batch = self.db.batch();
        self.write_into(&mut batch, meta, data)?;
        batch.commit()?;
        Ok(self.db.persist(PersistMode::SyncAll)?)
    }

    /// Commits `batch` together with the writes that make (`meta`, `data`) the current snapshot.
    pub(crate) fn commit_with(
        &self,
        mut batch: WriteBatch,
        meta: &SnapshotMeta<u64, NodeInfo>,
        data: &[u8],
    ) -> Result<(), StoreError> {
        let _guard = self.lock.lock();
        self.write_into(&mut batch, meta, data)?;
        batch.commit()?;
        Ok(self.db.persist(PersistMode::SyncAll)?)
    }
}

/// Builds a snapshot of the state as it was when the builder was made (a fjall snapshot), so
/// entries applied meanwhile do not leak into it.
pub struct SnapshotBuilder {
    view: fjall::Snapshot,
    data: DataKeyspaces,
    sm_meta: Keyspace,
    store: SnapshotStore,
}

impl Debug for SnapshotBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotBuilder").finish_non_exhaustive()
    }
}

impl SnapshotBuilder {
    pub(crate) fn new(
        view: fjall::Snapshot,
        data: DataKeyspaces,
        sm_meta: Keyspace,
        store: SnapshotStore,
    ) -> Self {
        Self {
            view,
            data,
            sm_meta,
            store,
        }
    }

    fn build(&self) -> Result<Snapshot<TypeConfig>, StoreError> {
        let AppliedState {
            last_applied,
            membership,
        } = read_applied(&self.view, &self.sm_meta, &self.store.path)?;
        let mut keyspaces = Vec::with_capacity(Ks::ALL.len());
        for ks in Ks::ALL {
            let mut entries = Vec::new();
            for g in self.view.iter(self.data.get(ks)) {
                let (k, v) = g.into_inner()?;
                entries.push((k.to_vec(), v.to_vec()));
            }
            keyspaces.push((ks.name().to_owned(), entries));
        }
        let body = SnapshotBody {
            format: SNAPSHOT_FORMAT,
            last_applied,
            membership: membership.clone(),
            keyspaces,
        };
        let data = postcard::to_allocvec(&body)?;
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let snapshot_id = match last_applied {
            Some(l) => format!("{}-{}-{millis}", l.leader_id, l.index),
            None => format!("none-{millis}"),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id,
        };
        self.store.save_built(&meta, &data)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        self.build()
            .map_err(|e| StorageIOError::write_snapshot(None, &e).into())
    }
}

/// Decodes a received snapshot body, refusing another format.
pub(crate) fn decode_body(data: &[u8]) -> Result<SnapshotBody, StoreError> {
    let body: SnapshotBody =
        postcard::from_bytes(data).map_err(|e| StoreError::BadSnapshot(e.to_string()))?;
    if body.format != SNAPSHOT_FORMAT {
        return Err(StoreError::BadSnapshot(format!(
            "format {} is not this version's {SNAPSHOT_FORMAT}",
            body.format
        )));
    }
    Ok(body)
}
