//! Retained messages: the last retained message of every topic.
//!
//! A retained message with an MQTT 5.0 message expiry interval is forgotten once it has
//! passed: it is never sent to a new subscriber, and the lookup that finds it expired deletes
//! it (in memory and in the store).
//!
//! The store is bounded by `retained.*` (count, bytes, payload size) and by the disk guard:
//! [`RetainedStore::set`] refuses a message that would pass a bound, while deleting a topic's
//! message, or replacing it by one no larger, always works. Messages that come from the store
//! at start, or from the cluster's replicated state, are loaded whatever the bounds (every
//! member must hold the same set; the bound was checked where the message was published), and
//! counted, so the bounds hold across a restart.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use fubar_store::Store;

use super::disk_guard::{DiskGuard, DiskLow};
use super::persist::stored_message;
use crate::mqtt::message::Message;
use crate::mqtt::topic;
use crate::settings::RetainedSettings;

/// What storing a retained message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetainChange {
    /// A message is now retained for the topic (new or replacing another).
    Set,
    /// The topic's retained message was deleted by an empty payload.
    Cleared,
    /// An empty payload for a topic that had nothing retained.
    Unchanged,
    /// The message would pass a bound of the retained store: not retained.
    Refused(RetainRefusal),
}

impl RetainChange {
    /// Whether the retained store changed (and so was written).
    pub fn wrote(self) -> bool {
        matches!(self, Self::Set | Self::Cleared)
    }
}

/// Why a retained message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RetainRefusal {
    /// Its payload is larger than `retained.max_payload_bytes`.
    #[error("payload of {size} bytes, more than retained.max_payload_bytes ({max})")]
    PayloadTooLarge {
        /// The payload's size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// `retained.max_messages` topics have a retained message already.
    #[error("retained.max_messages ({max}) reached")]
    TooManyMessages {
        /// The limit.
        max: usize,
    },
    /// It would take the retained bytes past `retained.max_bytes`.
    #[error("retained.max_bytes ({max}) reached")]
    TooManyBytes {
        /// The limit.
        max: u64,
    },
    /// The disk is nearly full.
    #[error(transparent)]
    DiskLow(#[from] DiskLow),
}

/// The bytes a retained message counts for against `retained.max_bytes`.
fn cost(topic: &str, payload_len: usize) -> u64 {
    (topic.len() + payload_len) as u64
}

/// The retained messages and their total cost, under one lock.
#[derive(Debug, Default)]
struct Held {
    messages: HashMap<Arc<str>, Arc<Message>>,
    /// Sum of [`cost`] over `messages`.
    bytes: u64,
}

impl Held {
    fn insert(&mut self, message: Arc<Message>) -> Option<Arc<Message>> {
        self.bytes += cost(&message.topic, message.payload.len());
        let old = self.messages.insert(message.topic.clone(), message);
        if let Some(old) = &old {
            self.bytes -= cost(&old.topic, old.payload.len());
        }
        old
    }

    fn remove(&mut self, topic: &str) -> Option<Arc<Message>> {
        let old = self.messages.remove(topic)?;
        self.bytes -= cost(&old.topic, old.payload.len());
        Some(old)
    }

    /// Whether a message of `payload_len` bytes may be retained for `topic` under `limits`.
    fn admits(
        &self,
        topic: &str,
        payload_len: usize,
        limits: &RetainedSettings,
    ) -> Result<(), RetainRefusal> {
        if payload_len > limits.max_payload_bytes {
            return Err(RetainRefusal::PayloadTooLarge {
                size: payload_len,
                max: limits.max_payload_bytes,
            });
        }
        let old = self
            .messages
            .get(topic)
            .map_or(0, |m| cost(&m.topic, m.payload.len()));
        if old == 0 && self.messages.len() >= limits.max_messages {
            return Err(RetainRefusal::TooManyMessages {
                max: limits.max_messages,
            });
        }
        let new = cost(topic, payload_len);
        // A replacement no larger than what it replaces is always admitted (it frees nothing,
        // but it takes nothing either), even when another bound was lowered below the usage.
        if new > old && self.bytes - old + new > limits.max_bytes {
            return Err(RetainRefusal::TooManyBytes {
                max: limits.max_bytes,
            });
        }
        Ok(())
    }
}

/// The retained messages of a node, in memory and (when it has one) in the store.
#[derive(Debug, Default)]
pub struct RetainedStore {
    held: Mutex<Held>,
    store: Option<Arc<Store>>,
    limits: Mutex<RetainedSettings>,
    /// Refuses new retained messages while the disk is nearly full (a node with a store).
    disk: Option<Arc<DiskGuard>>,
    /// The broker's own `$SYS` figures (`sys_topics`), by topic: held apart, in memory only,
    /// so that they count against no bound and in no figure of the clients' retained set.
    sys: Mutex<HashMap<Arc<str>, Arc<Message>>>,
}

impl RetainedStore {
    /// Retained messages kept durably in `store`, within `limits`, refused while `disk` is
    /// nearly full.
    pub fn with_store(
        store: Option<Arc<Store>>,
        limits: RetainedSettings,
        disk: Option<Arc<DiskGuard>>,
    ) -> Self {
        Self {
            held: Mutex::default(),
            store,
            limits: Mutex::new(limits),
            disk,
            sys: Mutex::default(),
        }
    }

    /// Changes the bounds (a run-time settings change). Messages already retained stay.
    pub fn set_limits(&self, limits: RetainedSettings) {
        *self.limits.lock() = limits;
    }

    /// Whether a retained message of `payload_len` bytes for `topic` would be stored now (an
    /// empty payload, a deletion, always is). [`set`](Self::set) checks again: this answer
    /// is for refusing a publish before it is routed.
    pub fn admits(
        &self,
        topic: &str,
        payload_len: usize,
        now: Instant,
    ) -> Result<(), RetainRefusal> {
        if payload_len == 0 {
            return Ok(());
        }
        let limits = self.limits();
        let held = self.held.lock();
        self.admits_locked(&held, topic, payload_len, &limits, now)
    }

    fn admits_locked(
        &self,
        held: &Held,
        topic: &str,
        payload_len: usize,
        limits: &RetainedSettings,
        now: Instant,
    ) -> Result<(), RetainRefusal> {
        held.admits(topic, payload_len, limits)?;
        if let Some(disk) = &self.disk {
            disk.check(now)?;
        }
        Ok(())
    }

    fn limits(&self) -> RetainedSettings {
        self.limits.lock().clone()
    }

    /// Loads messages read back from the store or replicated by the cluster (those expired
    /// already are left out), whatever the bounds: they were checked where the messages were
    /// published, and every member must hold the same ones.
    pub fn restore(&self, messages: impl IntoIterator<Item = Arc<Message>>) {
        let now = Instant::now();
        let mut held = self.held.lock();
        for m in messages.into_iter().filter(|m| !m.is_expired(now)) {
            held.insert(m);
        }
    }

    /// Forgets every retained message in memory only (before reloading the replicated ones).
    pub fn clear(&self) {
        *self.held.lock() = Held::default();
    }

    /// Forgets the retained message of `topic` in memory only (the replicated state has
    /// deleted it).
    pub fn forget(&self, topic: &str) {
        let mut held = self.held.lock();
        held.remove(topic);
    }

    /// Stores (or, for an empty payload, deletes) the retained message of its topic, unless
    /// it would pass a bound ([`RetainChange::Refused`]).
    ///
    /// The store is written under the lock, so it sees changes of a topic in their order.
    /// A failed store write is returned beside the change (which memory has made): the
    /// publisher must then not be told its message is safe.
    pub fn set_written(&self, message: &Arc<Message>) -> (RetainChange, Result<(), Arc<str>>) {
        let limits = self.limits();
        let mut held = self.held.lock();
        let change = if message.payload.is_empty() {
            match held.remove(&message.topic) {
                Some(_) => RetainChange::Cleared,
                None => RetainChange::Unchanged,
            }
        } else if let Err(why) = self.admits_locked(
            &held,
            &message.topic,
            message.payload.len(),
            &limits,
            Instant::now(),
        ) {
            RetainChange::Refused(why)
        } else {
            held.insert(message.clone());
            RetainChange::Set
        };
        if let Some(store) = &self.store {
            let written = match change {
                RetainChange::Set => store.put_retained(&stored_message(message)).map(drop),
                RetainChange::Cleared => store.delete_retained(&message.topic).map(drop),
                RetainChange::Unchanged | RetainChange::Refused(_) => Ok(()),
            };
            if let Err(e) = written {
                return (change, Err(e.to_string().into()));
            }
        }
        (change, Ok(()))
    }

    /// `set_written` without the store's answer (tests of the bounds).
    #[cfg(test)]
    pub fn set(&self, message: &Arc<Message>) -> RetainChange {
        self.set_written(message).0
    }

    /// Whether changes are kept in a store (and so may need an fsync before an ack).
    pub fn is_durable(&self) -> bool {
        self.store.is_some()
    }

    /// The retained messages whose topics match `filter` and that have not expired at `now`;
    /// the expired ones found are deleted.
    ///
    /// A filter without wildcards is one lookup; a wildcard filter scans the retained set.
    pub fn matching(&self, filter: &str, now: Instant) -> Vec<Arc<Message>> {
        let mut found = self.matching_held(filter, now);
        // Only a filter starting with `$SYS` matches the broker's figures (MQTT-4.7.2-1).
        if filter.starts_with("$SYS") {
            let sys = self.sys.lock();
            found.extend(
                sys.iter()
                    .filter(|(t, _)| topic::matches(filter, t))
                    .map(|(_, m)| m.clone()),
            );
        }
        found
    }

    /// `matching` among the clients' retained messages.
    fn matching_held(&self, filter: &str, now: Instant) -> Vec<Arc<Message>> {
        let mut held = self.held.lock();
        let mut found: Vec<Arc<Message>> = if filter.contains(['+', '#']) {
            held.messages
                .iter()
                .filter(|(t, _)| topic::matches(filter, t))
                .map(|(_, m)| m.clone())
                .collect()
        } else {
            held.messages.get(filter).cloned().into_iter().collect()
        };
        if found.iter().any(|m| m.is_expired(now)) {
            found.retain(|m| {
                if !m.is_expired(now) {
                    return true;
                }
                held.remove(&m.topic);
                if let Some(store) = &self.store {
                    if let Err(e) = store.delete_retained(&m.topic) {
                        tracing::error!(target: "error", topic = %m.topic, error = %e, "cannot delete retained message");
                    }
                }
                tracing::debug!(target: "resource", topic = %m.topic, "retained message expired: deleted");
                false
            });
        }
        found
    }

    /// Holds one of the broker's own `$SYS` figures as the retained message of its topic
    /// (replacing the previous one): apart from the clients' retained messages, in memory
    /// only, whatever the bounds.
    pub fn hold_sys(&self, message: Arc<Message>) {
        debug_assert!(topic::is_sys(&message.topic));
        self.sys.lock().insert(message.topic.clone(), message);
    }

    /// Number of retained messages (the clients'; not the broker's `$SYS` figures).
    pub fn len(&self) -> usize {
        self.held.lock().messages.len()
    }

    /// Bytes (topic + payload) of all retained messages.
    pub fn bytes(&self) -> u64 {
        self.held.lock().bytes
    }

    /// Whether nothing is retained.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::mqtt::message::MessageProperties;
    use crate::mqtt::packet::QoS;

    fn msg(topic: &str, payload: &str) -> Arc<Message> {
        Arc::new(Message {
            topic: topic.into(),
            payload: Bytes::copy_from_slice(payload.as_bytes()),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: MessageProperties::default(),
            trace: None,
            publisher: None,
            expires_at: None,
            sampled_at: None,
        })
    }

    #[test]
    fn set_replace_clear() {
        let r = RetainedStore::default();
        assert_eq!(r.set(&msg("a/b", "1")), RetainChange::Set);
        assert_eq!(r.set(&msg("a/b", "2")), RetainChange::Set);
        assert_eq!(r.len(), 1);
        assert_eq!(&r.matching("a/b", Instant::now())[0].payload[..], b"2");
        assert_eq!(r.set(&msg("a/b", "")), RetainChange::Cleared);
        assert_eq!(r.set(&msg("a/b", "")), RetainChange::Unchanged);
        assert!(r.is_empty());
    }

    fn bounded(max_messages: usize, max_bytes: u64, max_payload_bytes: usize) -> RetainedStore {
        RetainedStore::with_store(
            None,
            RetainedSettings {
                max_messages,
                max_bytes,
                max_payload_bytes,
            },
            None,
        )
    }

    #[test]
    fn the_count_bound_refuses_new_topics_but_replacing_and_deleting_work() {
        let r = bounded(2, 1 << 20, 1024);
        assert_eq!(r.set(&msg("a", "1")), RetainChange::Set);
        assert_eq!(r.set(&msg("b", "1")), RetainChange::Set);
        assert_eq!(
            r.set(&msg("c", "1")),
            RetainChange::Refused(RetainRefusal::TooManyMessages { max: 2 })
        );
        assert!(r.admits("c", 1, Instant::now()).is_err());
        assert_eq!(
            r.set(&msg("a", "2")),
            RetainChange::Set,
            "replacing at the cap"
        );
        assert_eq!(
            r.set(&msg("b", "")),
            RetainChange::Cleared,
            "deleting at the cap"
        );
        assert_eq!(r.set(&msg("c", "1")), RetainChange::Set, "room again");
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn the_byte_bounds_count_topic_and_payload() {
        // "t1" + 8 bytes = 10 bytes each.
        let r = bounded(100, 20, 8);
        assert_eq!(
            r.set(&msg("t0", "123456789")),
            RetainChange::Refused(RetainRefusal::PayloadTooLarge { size: 9, max: 8 })
        );
        assert_eq!(r.set(&msg("t1", "12345678")), RetainChange::Set);
        assert_eq!(r.set(&msg("t2", "12345678")), RetainChange::Set);
        assert_eq!(r.bytes(), 20);
        assert_eq!(
            r.set(&msg("t3", "1")),
            RetainChange::Refused(RetainRefusal::TooManyBytes { max: 20 })
        );
        assert_eq!(
            r.set(&msg("t1", "abcdefgh")),
            RetainChange::Set,
            "same size"
        );
        assert_eq!(r.set(&msg("t1", "abc")), RetainChange::Set, "smaller");
        assert_eq!(r.bytes(), 15);
        assert_eq!(r.set(&msg("t3", "1")), RetainChange::Set);
        assert_eq!(r.bytes(), 18);
        r.forget("t2");
        assert_eq!(r.bytes(), 8);
        r.clear();
        assert_eq!(r.bytes(), 0);
    }

    #[test]
    fn restored_messages_are_counted_whatever_the_bounds() {
        // From the store or the cluster: loaded (every member holds the same), and counted.
        let r = bounded(1, 1 << 20, 1024);
        r.restore([msg("a", "1"), msg("b", "22"), msg("a", "333")]);
        assert_eq!(r.len(), 2);
        assert_eq!(r.bytes(), 1 + 3 + 1 + 2);
        assert!(matches!(
            r.set(&msg("c", "1")),
            RetainChange::Refused(RetainRefusal::TooManyMessages { .. })
        ));
    }

    #[test]
    fn a_nearly_full_disk_refuses_new_retained_messages_but_not_deletions() {
        let dir = tempfile::tempdir().unwrap();
        let guard = Arc::new(DiskGuard::new(
            dir.path().to_owned(),
            u64::MAX,
            std::time::Duration::from_secs(60),
        ));
        let r = RetainedStore::with_store(None, RetainedSettings::default(), Some(guard.clone()));
        r.restore([msg("old", "1")]);
        assert!(matches!(
            r.set(&msg("new", "1")),
            RetainChange::Refused(RetainRefusal::DiskLow(_))
        ));
        assert_eq!(r.set(&msg("old", "")), RetainChange::Cleared);
        guard.set_limits(1, std::time::Duration::from_secs(60));
        assert_eq!(r.set(&msg("new", "1")), RetainChange::Set);
    }

    #[test]
    fn wildcard_matching_honours_dollar_topics() {
        let r = RetainedStore::default();
        let _ = r.set(&msg("a/b", "1"));
        let _ = r.set(&msg("a/c", "2"));
        let _ = r.set(&msg("$SYS/x", "3"));
        let now = Instant::now();
        assert_eq!(r.matching("a/+", now).len(), 2);
        assert_eq!(r.matching("#", now).len(), 2);
        assert_eq!(r.matching("$SYS/#", now).len(), 1);
        assert_eq!(r.matching("a/d", now).len(), 0);
    }

    #[test]
    fn an_expired_retained_message_is_never_found_and_is_forgotten() {
        use std::time::Duration;
        let r = RetainedStore::default();
        let t0 = Instant::now();
        let expiring = |topic: &str, secs: u32| {
            let mut m = (*msg(topic, "x")).clone();
            m.properties.message_expiry_secs = Some(secs);
            Arc::new(m.expiring_from(t0))
        };
        let _ = r.set(&expiring("e/short", 5));
        let _ = r.set(&expiring("e/long", 50));
        let _ = r.set(&msg("e/forever", "x"));
        assert_eq!(r.matching("e/#", t0 + Duration::from_secs(4)).len(), 3);
        let later = t0 + Duration::from_secs(5);
        assert!(r.matching("e/short", later).is_empty());
        assert_eq!(r.len(), 2, "forgotten");
        let much_later = t0 + Duration::from_secs(60);
        let left: Vec<_> = r.matching("e/+", much_later);
        assert_eq!(left.len(), 1);
        assert_eq!(&*left[0].topic, "e/forever");
        assert_eq!(r.len(), 1);
        // Read back from the store after its time: not loaded.
        r.restore([expiring("e/old", 0)]);
        assert_eq!(r.len(), 1);
    }
}
