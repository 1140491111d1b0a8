//! Copies of other nodes' persistent sessions, kept by this node as their backup.
//!
//! The primary streams each session's journal ([`ReplicaOp`]s) with the session's epoch; the
//! copies live in their own keyspaces (same key layout as the node's own sessions) with the
//! epoch each was last written at, so a write from an older epoch (a primary that was
//! replaced while it was cut off) is refused rather than mixed into a newer copy.

use fjall::Keyspace;

use crate::records::{QueuedRecord, ReplicaOp, RestoredSession};
use crate::{qos2_key, queued_key, session_prefix, SessionKeyspaces, Store, StoreError};

/// The keyspaces of the copies.
pub(crate) struct ReplicaKeyspaces {
    pub(crate) sessions: Keyspace,
    pub(crate) queued: Keyspace,
    pub(crate) qos2: Keyspace,
    /// `client id` → the expiry deadline of the session while its client is away.
    pub(crate) offline: Keyspace,
    /// `client id` → the epoch of the copy (u64 BE).
    pub(crate) epochs: Keyspace,
}

/// A replication write refused: the copy here is newer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleEpoch {
    /// The epoch of the copy here.
    pub held: u64,
}

impl ReplicaKeyspaces {
    fn view(&self) -> SessionKeyspaces<'_> {
        SessionKeyspaces {
            queued: &self.queued,
            qos2: &self.qos2,
            offline: &self.offline,
        }
    }
}

impl Store {
    /// The epoch of this node's copy of `client_id`'s session, if it holds one.
    pub fn replica_epoch(&self, client_id: &str) -> Result<Option<u64>, StoreError> {
        Ok(self
            .replicas
            .epochs
            .get(client_id)?
            .and_then(|v| crate::suffix_u64(&v)))
    }

    /// Applies writes of `client_id`'s journal from its primary at `epoch`, all or none;
    /// returns the durability ticket, or `Ok(Err(StaleEpoch))` (nothing written) when the
    /// copy here has a newer epoch.
    pub fn apply_replica(
        &self,
        client_id: &str,
        epoch: u64,
        ops: &[ReplicaOp],
    ) -> Result<Result<u64, StaleEpoch>, StoreError> {
        self.injected()?;
        if let Some(held) = self.replica_epoch(client_id)? {
            if held > epoch {
                return Ok(Err(StaleEpoch { held }));
            }
        }
        let r = &self.replicas;
        let mut batch = self.db.batch();
        let mut bytes = client_id.len() + 8;
        batch.insert(&r.epochs, client_id, epoch.to_be_bytes());
        for op in ops {
            match op {
                ReplicaOp::Full(session) => {
                    self.remove_replica_into(&mut batch, client_id)?;
                    let record = postcard::to_allocvec(&session.record)?;
                    bytes += record.len();
                    batch.insert(&r.sessions, client_id, record);
                    for (seq, q) in &session.queued {
                        bytes += put_queued(&mut batch, &r.queued, client_id, *seq, q)?;
                    }
                    for id in &session.qos2_received {
                        batch.insert(&r.qos2, qos2_key(client_id, *id), []);
                    }
                    if let Some(at) = session.expires_at_ms {
                        batch.insert(&r.offline, client_id, at.to_be_bytes());
                    }
                }
                ReplicaOp::PutSession(record) => {
                    let value = postcard::to_allocvec(record)?;
                    bytes += value.len();
                    batch.insert(&r.sessions, client_id, value);
                }
                ReplicaOp::PutQueued { seq, record } => {
                    bytes += put_queued(&mut batch, &r.queued, client_id, *seq, record)?;
                }
                ReplicaOp::RemoveQueued { seq } => {
                    batch.remove(&r.queued, queued_key(client_id, *seq));
                }
                ReplicaOp::PutQos2(id) => batch.insert(&r.qos2, qos2_key(client_id, *id), []),
                ReplicaOp::DeleteQos2(id) => batch.remove(&r.qos2, qos2_key(client_id, *id)),
                ReplicaOp::Deadline(Some(at)) => {
                    batch.insert(&r.offline, client_id, at.to_be_bytes());
                }
                ReplicaOp::Deadline(None) => batch.remove(&r.offline, client_id),
                ReplicaOp::Delete => {
                    self.remove_replica_into(&mut batch, client_id)?;
                    batch.remove(&r.epochs, client_id);
                }
            }
        }
        batch.commit()?;
        Ok(Ok(self.durability.note_write(bytes)))
    }

    /// Adds the deletion of the copy of `client_id` (record, queue, QoS 2 ids) to `batch`.
    fn remove_replica_into(
        &self,
        batch: &mut fjall::OwnedWriteBatch,
        client_id: &str,
    ) -> Result<(), StoreError> {
        let r = &self.replicas;
        let prefix = session_prefix(client_id);
        batch.remove(&r.sessions, client_id);
        batch.remove(&r.offline, client_id);
        for g in r.queued.prefix(&prefix) {
            batch.remove(&r.queued, g.key()?);
        }
        for g in r.qos2.prefix(&prefix) {
            batch.remove(&r.qos2, g.key()?);
        }
        Ok(())
    }

    /// Deletes this node's copy of `client_id`'s session (it moved here, or was fenced).
    pub fn delete_replica(&self, client_id: &str) -> Result<(), StoreError> {
        let mut batch = self.db.batch();
        self.remove_replica_into(&mut batch, client_id)?;
        batch.remove(&self.replicas.epochs, client_id);
        batch.commit()?;
        self.durability.note_write(client_id.len());
        Ok(())
    }

    /// This node's copy of `client_id`'s session with its epoch, if it holds one.
    pub fn replica(&self, client_id: &str) -> Result<Option<(RestoredSession, u64)>, StoreError> {
        let Some(epoch) = self.replica_epoch(client_id)? else {
            return Ok(None);
        };
        let Some(v) = self.replicas.sessions.get(client_id)? else {
            return Ok(None);
        };
        let session = self.read_session(&self.replicas.view(), client_id.as_bytes(), &v)?;
        Ok(Some((session, epoch)))
    }

    /// The client ids of every copy held here, with their epochs.
    pub fn replica_ids(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.replicas
            .epochs
            .iter()
            .map(|g| {
                let (k, v) = g.into_inner()?;
                let epoch = crate::suffix_u64(&v)
                    .ok_or_else(|| self.corrupt("a replica epoch is not a u64".into()))?;
                Ok((String::from_utf8_lossy(&k).into_owned(), epoch))
            })
            .collect()
    }
}

fn put_queued(
    batch: &mut fjall::OwnedWriteBatch,
    ks: &Keyspace,
    client_id: &str,
    seq: u64,
    record: &QueuedRecord,
) -> Result<usize, StoreError> {
    let key = queued_key(client_id, seq);
    let value = postcard::to_allocvec(record)?;
    let bytes = key.len() + value.len();
    batch.insert(ks, key, value);
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::records::{QueuedState, SessionRecord, StoredMessage};
    use crate::SyncMode;

    fn queued(n: u8) -> QueuedRecord {
        QueuedRecord {
            message: StoredMessage {
                topic: "t".into(),
                payload: vec![n],
                qos: 1,
                retain: false,
                properties: Default::default(),
                expires_at_ms: None,
            },
            qos: 1,
            retain: false,
            state: QueuedState::Queued,
            subscription_ids: vec![],
        }
    }

    #[test]
    fn a_copy_follows_the_journal_and_refuses_an_older_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), SyncMode::None, Duration::ZERO).unwrap();
        let ops = [
            ReplicaOp::PutSession(SessionRecord::default()),
            ReplicaOp::PutQueued {
                seq: 1,
                record: queued(1),
            },
            ReplicaOp::PutQueued {
                seq: 2,
                record: queued(2),
            },
            ReplicaOp::PutQos2(7),
        ];
        assert!(store.apply_replica("c", 3, &ops).unwrap().is_ok());
        store
            .apply_replica("c", 3, &[ReplicaOp::RemoveQueued { seq: 1 }])
            .unwrap()
            .unwrap();
        let (copy, epoch) = store.replica("c").unwrap().unwrap();
        assert_eq!(epoch, 3);
        assert_eq!(copy.queued.len(), 1);
        assert_eq!(copy.queued[0].0, 2);
        assert_eq!(copy.qos2_received, vec![7]);
        // A write from a replaced primary is refused, and changes nothing.
        let stale = store.apply_replica("c", 2, &[ReplicaOp::Delete]).unwrap();
        assert_eq!(stale, Err(StaleEpoch { held: 3 }));
        assert!(store.replica("c").unwrap().is_some());
        // The node's own sessions do not see the copies.
        assert!(store.sessions().unwrap().is_empty());
        // A full copy replaces everything; a delete removes it.
        let full = RestoredSession {
            client_id: "c".into(),
            record: SessionRecord::default(),
            queued: vec![(9, queued(9))],
            qos2_received: vec![],
            expires_at_ms: Some(1_000),
        };
        store
            .apply_replica("c", 4, &[ReplicaOp::Full(full.clone())])
            .unwrap()
            .unwrap();
        assert_eq!(store.replica("c").unwrap().unwrap(), (full.clone(), 4));
        // The deadline follows its client leaving and coming back.
        for at in [Some(2_000), None, Some(3_000)] {
            store
                .apply_replica("c", 4, &[ReplicaOp::Deadline(at)])
                .unwrap()
                .unwrap();
            assert_eq!(store.replica("c").unwrap().unwrap().0.expires_at_ms, at);
        }
        assert_eq!(store.replica_ids().unwrap(), vec![("c".to_owned(), 4)]);
        store
            .apply_replica("c", 4, &[ReplicaOp::Delete])
            .unwrap()
            .unwrap();
        assert!(store.replica("c").unwrap().is_none());
        assert!(store.replica_ids().unwrap().is_empty());
        // A new copy of the same client starts without the old deadline.
        let again = RestoredSession {
            expires_at_ms: None,
            ..full
        };
        store
            .apply_replica("c", 5, &[ReplicaOp::Full(again.clone())])
            .unwrap()
            .unwrap();
        assert_eq!(store.replica("c").unwrap().unwrap(), (again, 5));
    }

    #[test]
    fn a_sessions_deadline_is_kept_until_its_client_is_back_or_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), SyncMode::None, Duration::ZERO).unwrap();
        store.put_session("c", &SessionRecord::default()).unwrap();
        store.put_deadline("c", Some(5_000)).unwrap();
        assert_eq!(store.sessions().unwrap()[0].expires_at_ms, Some(5_000));
        store.put_deadline("c", None).unwrap();
        assert_eq!(store.sessions().unwrap()[0].expires_at_ms, None);
        store.put_deadline("c", Some(6_000)).unwrap();
        store.delete_session("c").unwrap();
        store.put_session("c", &SessionRecord::default()).unwrap();
        assert_eq!(store.sessions().unwrap()[0].expires_at_ms, None);
    }
}
