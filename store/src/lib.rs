//! Durable broker state in fjall.
//!
//! One fjall database per node, under `<data-dir>/<node>/state`, with one keyspace per kind of
//! state: accounts, address rules, topic rules, changed settings, retained messages, persistent sessions,
//! their queued and in-flight messages, and the QoS 2 packet ids they have received; in a
//! cluster also the routes, the client registry and the Raft log (`replicated`). Records
//! are postcard-encoded (`records`). Writes go to fjall's journal at once; `durability` decides
//! when they are fsynced (group commit, or never on the write path).
//!
//! This crate knows nothing of MQTT beyond the shapes of the records: the broker converts.
//! `replicated` holds the cluster's Raft storage over the same database.

mod durability;
pub mod records;
mod replica;
pub mod replicated;
pub mod timing;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use durability::Durability;
pub use durability::{DurabilityFailed, Durable, SyncMode};
use records::{
    AccountRecord, QueuedRecord, RestoredSession, SessionRecord, StoredMessage, FORMAT_VERSION,
};

/// What went wrong with the state.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The state could not be opened (unreadable, corrupt, or in use by another process).
    #[error("cannot open the state at {path}: {source}; if it is damaged, `fubar reset` clears it (everything stored is lost)")]
    Open {
        /// The state directory.
        path: PathBuf,
        /// Why.
        source: fjall::Error,
    },
    /// A record could not be decoded.
    #[error(
        "corrupt state at {path}: {what}; `fubar reset` clears it (everything stored is lost)"
    )]
    Corrupt {
        /// The state directory.
        path: PathBuf,
        /// Which record, and why.
        what: String,
    },
    /// A read or write failed.
    #[error("state I/O failed: {0}")]
    Io(#[from] fjall::Error),
    /// A record could not be encoded.
    #[error("cannot encode a state record: {0}")]
    Encode(#[from] postcard::Error),
    /// A Raft snapshot received from another node could not be read.
    #[error("unreadable cluster state snapshot: {0}")]
    BadSnapshot(String),
    /// `Store::replication` was called a second time on one store.
    #[error("the replicated state of this store is already in use")]
    ReplicationTaken,
}

/// The store's figures for `/metrics` (see [`Store::figures`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreFigures {
    /// Writes of the message path (a session, a queued message, a retained message, QoS 2
    /// state) since open.
    pub writes: u64,
    /// Key and value bytes of those writes (what they put in the journal, before its framing).
    pub written_bytes: u64,
    /// Group commit fsyncs that failed since open (their successes are the fsync
    /// histogram's count).
    pub fsync_failures: u64,
    /// Bytes of fjall's journal files on disk (a journal file is preallocated whole).
    pub journal_bytes: u64,
    /// Journal files (the active one and sealed ones not yet flushed to tables).
    pub journals: u64,
    /// Bytes of the whole store on disk (journal and tables).
    pub disk_bytes: u64,
}

/// The durable state of one node.
pub struct Store {
    path: PathBuf,
    db: Database,
    accounts: Keyspace,
    acl: Keyspace,
    topic_acl: Keyspace,
    settings: Keyspace,
    retained: Keyspace,
    sessions: Keyspace,
    queued: Keyspace,
    qos2: Keyspace,
    /// `client id` → the expiry deadline of an offline session (wall-clock ms, u64 BE).
    offline: Keyspace,
    routes: Keyspace,
    clients: Keyspace,
    client_owners: Keyspace,
    placements: Keyspace,
    /// Copies of other nodes' persistent sessions (this node is their backup).
    replicas: replica::ReplicaKeyspaces,
    durability: Durability,
    replication_taken: AtomicBool,
    /// Tests make the message path's writes fail with this (`inject_failures`).
    #[cfg(any(test, feature = "fault-injection"))]
    fail_writes: AtomicBool,
}

impl StoreError {
    /// Whether the state could not be opened because another process holds it.
    pub fn is_in_use(&self) -> bool {
        matches!(
            self,
            Self::Open {
                source: fjall::Error::Locked,
                ..
            }
        )
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

const META_FORMAT: &str = "format";

impl Store {
    /// Opens (or creates) the state in `path`.
    pub fn open(path: &Path, mode: SyncMode, group_window: Duration) -> Result<Self, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let db = Database::builder(path).open().map_err(open_err)?;
        // fjall takes an undecodable journal entry for a torn tail and drops it with everything
        // after it, so damage at the start of the journal opens as an empty database. Keyspaces
        // are recorded apart from the journal: if ours exist, the format record written with
        // them must be there too.
        let existed = db.keyspace_exists("meta");
        let ks = |name: &str| {
            db.keyspace(name, KeyspaceCreateOptions::default)
                .map_err(open_err)
        };
        let meta = ks("meta")?;
        let store = Self {
            path: path.to_owned(),
            accounts: ks("accounts")?,
            acl: ks("acl")?,
            topic_acl: ks(replicated::TOPIC_ACL)?,
            settings: ks("settings")?,
            retained: ks("retained")?,
            sessions: ks("sessions")?,
            queued: ks("queued")?,
            qos2: ks("qos2")?,
            offline: ks("offline")?,
            routes: ks(replicated::ROUTES)?,
            clients: ks(replicated::CLIENTS)?,
            client_owners: ks(replicated::CLIENT_OWNERS)?,
            placements: ks(replicated::PLACEMENTS)?,
            replicas: replica::ReplicaKeyspaces {
                sessions: ks("replica_sessions")?,
                queued: ks("replica_queued")?,
                qos2: ks("replica_qos2")?,
                offline: ks("replica_offline")?,
                epochs: ks("replica_epochs")?,
            },
            replication_taken: AtomicBool::new(false),
            #[cfg(any(test, feature = "fault-injection"))]
            fail_writes: AtomicBool::new(false),
            durability: Durability::start(db.clone(), mode, group_window),
            db,
        };
        match meta.get(META_FORMAT)? {
            None if existed => {
                return Err(store.corrupt(
                    "the format record is missing (the journal was lost or damaged)".into(),
                ))
            }
            None => {
                meta.insert(META_FORMAT, FORMAT_VERSION.to_be_bytes())?;
                store.db.persist(PersistMode::SyncAll)?;
            }
            Some(v) if v[..] == FORMAT_VERSION.to_be_bytes() => {}
            Some(v) if v[..] == 3u32.to_be_bytes() => store.upgrade_from_3(&meta)?,
            Some(v) => {
                return Err(store.corrupt(format!(
                    "state format {:?} is not this version's {FORMAT_VERSION}",
                    &v[..]
                )))
            }
        }
        Ok(store)
    }

    /// Brings a format 3 store to format 4: session records gain their owner (none: format 3
    /// did not record who created a session). Everything else kept its shape, so a node
    /// upgraded in place keeps its accounts, retained messages and sessions.
    fn upgrade_from_3(&self, meta: &Keyspace) -> Result<(), StoreError> {
        let mut batch = self.db.batch();
        for g in self.sessions.iter() {
            let (k, v) = g.into_inner()?;
            let old: records::SessionRecordV3 = self.decode("session", &k, &v)?;
            let record = SessionRecord {
                subscriptions: old.subscriptions,
                expiry_secs: old.expiry_secs,
                owner: None,
            };
            batch.insert(&self.sessions, k, postcard::to_allocvec(&record)?);
        }
        batch.insert(meta, META_FORMAT, FORMAT_VERSION.to_be_bytes());
        batch.commit()?;
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }

    /// The state directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn corrupt(&self, what: String) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            what,
        }
    }

    fn decode<T: DeserializeOwned>(
        &self,
        kind: &str,
        key: &[u8],
        v: &[u8],
    ) -> Result<T, StoreError> {
        postcard::from_bytes(v).map_err(|e| {
            self.corrupt(format!(
                "{kind} record {:?}: {e}",
                String::from_utf8_lossy(key)
            ))
        })
    }

    /// Makes every write so far durable (admin changes, shutdown).
    pub fn flush(&self) -> Result<(), StoreError> {
        Ok(self.db.persist(PersistMode::SyncAll)?)
    }

    // ---- durability of the message path ----

    /// A ticket covering every write made so far; wait for it with `durable_watch`.
    pub fn ticket(&self) -> u64 {
        self.durability.current_ticket()
    }

    /// How long the group commit's fsyncs took, for `/metrics` (empty with `SyncMode::None`).
    pub fn fsync_times(&self) -> timing::HistogramSnapshot {
        self.durability.fsync_times()
    }

    /// What `/metrics` shows of the store, read now.
    pub fn figures(&self) -> StoreFigures {
        let (writes, written_bytes, fsync_failures) = self.durability.counts();
        StoreFigures {
            writes,
            written_bytes,
            fsync_failures,
            // Read from fjall's own bookkeeping (no directory walk); an error reads as 0.
            journal_bytes: self.db.journal_disk_space().unwrap_or(0),
            journals: self.db.journal_count() as u64,
            disk_bytes: self.db.disk_space().unwrap_or(0),
        }
    }

    /// A receiver of what became of the tickets (group commit); with `SyncMode::None` every
    /// ticket is 0, which needs no waiting.
    pub fn durable_watch(&self) -> watch::Receiver<Durable> {
        self.durability.watch()
    }

    /// Makes the message path's writes (retained messages, sessions, their queues and QoS 2
    /// state) fail from now on, or their fsyncs, as a full or broken disk would; `false`
    /// heals both. Only in tests: nothing in the broker's settings reaches it.
    #[cfg(any(test, feature = "fault-injection"))]
    pub fn inject_failures(&self, writes: bool, syncs: bool) {
        self.fail_writes
            .store(writes, std::sync::atomic::Ordering::SeqCst);
        self.durability.fail_syncs(syncs);
    }

    /// Fails a write of the message path when a test asked for it (`inject_failures`).
    fn injected(&self) -> Result<(), StoreError> {
        #[cfg(any(test, feature = "fault-injection"))]
        if self.fail_writes.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Io(fjall::Error::Io(std::io::Error::other(
                "injected write failure",
            ))));
        }
        Ok(())
    }

    // ---- accounts ----

    /// Creates or replaces an account.
    pub fn put_account(&self, name: &str, record: &AccountRecord) -> Result<(), StoreError> {
        self.accounts.insert(name, postcard::to_allocvec(record)?)?;
        self.flush()
    }

    /// Deletes an account; returns whether it existed.
    pub fn delete_account(&self, name: &str) -> Result<bool, StoreError> {
        let existed = self.accounts.contains_key(name)?;
        if existed {
            self.accounts.remove(name)?;
            self.flush()?;
        }
        Ok(existed)
    }

    /// Every account, by name.
    pub fn accounts(&self) -> Result<Vec<(String, AccountRecord)>, StoreError> {
        self.accounts
            .iter()
            .map(|g| {
                let (k, v) = g.into_inner()?;
                let name = String::from_utf8_lossy(&k).into_owned();
                Ok((name, self.decode("account", &k, &v)?))
            })
            .collect()
    }

    // ---- topic rules ----

    /// Adds topic rules (their text form is the key), all or none.
    pub fn put_topic_rules(&self, rules: &[String]) -> Result<(), StoreError> {
        let mut batch = self.db.batch();
        for rule in rules {
            batch.insert(&self.topic_acl, rule.as_str(), []);
        }
        batch.commit()?;
        self.flush()
    }

    /// Deletes topic rules, all or none; returns how many existed.
    pub fn delete_topic_rules(&self, rules: &[String]) -> Result<usize, StoreError> {
        let mut batch = self.db.batch();
        let mut existed = 0;
        for rule in rules {
            if self.topic_acl.contains_key(rule)? {
                existed += 1;
                batch.remove(&self.topic_acl, rule.as_str());
            }
        }
        batch.commit()?;
        self.flush()?;
        Ok(existed)
    }

    /// Every topic rule, as text.
    pub fn topic_rules(&self) -> Result<Vec<String>, StoreError> {
        self.topic_acl
            .iter()
            .map(|g| Ok(String::from_utf8_lossy(&g.key()?).into_owned()))
            .collect()
    }

    // ---- address rules ----

    /// Adds or replaces an address rule (`cidr` → allow).
    pub fn put_acl(&self, cidr: &str, allow: bool) -> Result<(), StoreError> {
        self.acl.insert(cidr, [u8::from(allow)])?;
        self.flush()
    }

    /// Deletes an address rule; returns whether it existed.
    pub fn delete_acl(&self, cidr: &str) -> Result<bool, StoreError> {
        let existed = self.acl.contains_key(cidr)?;
        if existed {
            self.acl.remove(cidr)?;
            self.flush()?;
        }
        Ok(existed)
    }

    /// Every address rule.
    pub fn acl(&self) -> Result<Vec<(String, bool)>, StoreError> {
        self.acl
            .iter()
            .map(|g| {
                let (k, v) = g.into_inner()?;
                Ok((
                    String::from_utf8_lossy(&k).into_owned(),
                    v.first() == Some(&1),
                ))
            })
            .collect()
    }

    // ---- settings changed at run time ----

    /// Records a setting changed at run time (dotted name → TOML value).
    pub fn put_setting(&self, name: &str, value: &str) -> Result<(), StoreError> {
        self.settings.insert(name, value)?;
        self.flush()
    }

    /// Every setting changed at run time.
    pub fn settings(&self) -> Result<Vec<(String, String)>, StoreError> {
        text_pairs(&self.settings)
    }

    // ---- retained messages ----

    /// Stores the retained message of its topic; returns the durability ticket.
    pub fn put_retained(&self, message: &StoredMessage) -> Result<u64, StoreError> {
        self.injected()?;
        let value = postcard::to_allocvec(message)?;
        let bytes = message.topic.len() + value.len();
        self.retained.insert(message.topic.as_str(), value)?;
        Ok(self.durability.note_write(bytes))
    }

    /// Deletes the retained message of `topic`; returns the durability ticket.
    pub fn delete_retained(&self, topic: &str) -> Result<u64, StoreError> {
        self.injected()?;
        self.retained.remove(topic)?;
        Ok(self.durability.note_write(topic.len()))
    }

    /// Every retained message.
    pub fn retained(&self) -> Result<Vec<StoredMessage>, StoreError> {
        self.retained
            .iter()
            .map(|g| {
                let (k, v) = g.into_inner()?;
                self.decode("retained", &k, &v)
            })
            .collect()
    }

    // ---- persistent sessions ----

    /// Creates or replaces a persistent session's record (its subscriptions).
    pub fn put_session(&self, client_id: &str, record: &SessionRecord) -> Result<u64, StoreError> {
        self.injected()?;
        let value = postcard::to_allocvec(record)?;
        let bytes = client_id.len() + value.len();
        self.sessions.insert(client_id, value)?;
        Ok(self.durability.note_write(bytes))
    }

    /// Records when an offline session expires (wall-clock ms), or that its client is back
    /// (`None`).
    pub fn put_deadline(&self, client_id: &str, at_ms: Option<u64>) -> Result<u64, StoreError> {
        self.injected()?;
        match at_ms {
            Some(at) => self.offline.insert(client_id, at.to_be_bytes())?,
            None => self.offline.remove(client_id)?,
        }
        Ok(self.durability.note_write(client_id.len() + 8))
    }

    /// Deletes a session with its queue and QoS 2 state.
    pub fn delete_session(&self, client_id: &str) -> Result<(), StoreError> {
        self.injected()?;
        let prefix = session_prefix(client_id);
        let mut batch = self.db.batch();
        batch.remove(&self.sessions, client_id);
        batch.remove(&self.offline, client_id);
        let mut bytes = client_id.len();
        for g in self.queued.prefix(&prefix) {
            let key = g.key()?;
            bytes += key.len();
            batch.remove(&self.queued, key);
        }
        for g in self.qos2.prefix(&prefix) {
            let key = g.key()?;
            bytes += key.len();
            batch.remove(&self.qos2, key);
        }
        batch.commit()?;
        self.durability.note_write(bytes);
        Ok(())
    }

    /// Stores (or rewrites) one queued message of a session.
    pub fn put_queued(
        &self,
        client_id: &str,
        seq: u64,
        record: &QueuedRecord,
    ) -> Result<u64, StoreError> {
        self.injected()?;
        let key = queued_key(client_id, seq);
        let value = postcard::to_allocvec(record)?;
        let bytes = key.len() + value.len();
        self.queued.insert(key, value)?;
        Ok(self.durability.note_write(bytes))
    }

    /// Deletes one queued message of a session.
    pub fn delete_queued(&self, client_id: &str, seq: u64) -> Result<(), StoreError> {
        self.injected()?;
        let key = queued_key(client_id, seq);
        let bytes = key.len();
        self.queued.remove(key)?;
        self.durability.note_write(bytes);
        Ok(())
    }

    /// Records that a QoS 2 message with `packet_id` was received and not yet released.
    pub fn put_qos2(&self, client_id: &str, packet_id: u16) -> Result<(), StoreError> {
        self.injected()?;
        let key = qos2_key(client_id, packet_id);
        let bytes = key.len();
        self.qos2.insert(key, [])?;
        self.durability.note_write(bytes);
        Ok(())
    }

    /// Forgets a released QoS 2 packet id.
    pub fn delete_qos2(&self, client_id: &str, packet_id: u16) -> Result<(), StoreError> {
        self.injected()?;
        let key = qos2_key(client_id, packet_id);
        let bytes = key.len();
        self.qos2.remove(key)?;
        self.durability.note_write(bytes);
        Ok(())
    }

    /// Every persistent session with its queue and QoS 2 state.
    pub fn sessions(&self) -> Result<Vec<RestoredSession>, StoreError> {
        let mut out = Vec::new();
        for g in self.sessions.iter() {
            let (k, v) = g.into_inner()?;
            out.push(self.read_session(&self.sessions_in(), &k, &v)?);
        }
        Ok(out)
    }

    /// The keyspaces of this node's own sessions.
    fn sessions_in(&self) -> SessionKeyspaces<'_> {
        SessionKeyspaces {
            queued: &self.queued,
            qos2: &self.qos2,
            offline: &self.offline,
        }
    }

    /// One session (key `k`, record `v` of `ks.sessions`) with its queue and QoS 2 state.
    fn read_session(
        &self,
        ks: &SessionKeyspaces<'_>,
        k: &[u8],
        v: &[u8],
    ) -> Result<RestoredSession, StoreError> {
        let client_id = std::str::from_utf8(k)
            .map_err(|_| self.corrupt("a session key is not UTF-8".into()))?
            .to_owned();
        let record: SessionRecord = self.decode("session", k, v)?;
        let prefix = session_prefix(&client_id);
        let mut queued = Vec::new();
        for g in ks.queued.prefix(&prefix) {
            let (k, v) = g.into_inner()?;
            let seq = suffix_u64(&k[prefix.len()..])
                .ok_or_else(|| self.corrupt(format!("queued key of {client_id:?}")))?;
            queued.push((seq, self.decode("queued", &k, &v)?));
        }
        let mut qos2_received = Vec::new();
        for g in ks.qos2.prefix(&prefix) {
            let k = g.key()?;
            let id = k[prefix.len()..]
                .try_into()
                .map(u16::from_be_bytes)
                .map_err(|_| self.corrupt(format!("qos2 key of {client_id:?}")))?;
            qos2_received.push(id);
        }
        let expires_at_ms = ks.offline.get(&client_id)?.and_then(|v| suffix_u64(&v));
        Ok(RestoredSession {
            client_id,
            record,
            queued,
            qos2_received,
            expires_at_ms,
        })
    }
}

/// The three keyspaces a set of sessions lives in (this node's own, or its copies of other
/// nodes' sessions).
struct SessionKeyspaces<'a> {
    queued: &'a Keyspace,
    qos2: &'a Keyspace,
    offline: &'a Keyspace,
}

/// Client ids never contain U+0000 (MQTT forbids it), so a 0 byte ends the id in keys.
pub(crate) fn session_prefix(client_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(client_id.len() + 1);
    k.extend_from_slice(client_id.as_bytes());
    k.push(0);
    k
}

pub(crate) fn queued_key(client_id: &str, seq: u64) -> Vec<u8> {
    let mut k = session_prefix(client_id);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub(crate) fn qos2_key(client_id: &str, packet_id: u16) -> Vec<u8> {
    let mut k = session_prefix(client_id);
    k.extend_from_slice(&packet_id.to_be_bytes());
    k
}

pub(crate) fn suffix_u64(b: &[u8]) -> Option<u64> {
    b.try_into().ok().map(u64::from_be_bytes)
}

#[cfg(test)]
mod tests;

/// Every key and value of a keyspace holding text, in key order.
pub(crate) fn text_pairs(keyspace: &Keyspace) -> Result<Vec<(String, String)>, StoreError> {
    keyspace
        .iter()
        .map(|g| {
            let (k, v) = g.into_inner()?;
            Ok((
                String::from_utf8_lossy(&k).into_owned(),
                String::from_utf8_lossy(&v).into_owned(),
            ))
        })
        .collect()
}
