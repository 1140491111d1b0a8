//! Retained messages: the last retained message of every topic.
//!
//! A retained message with an MQTT 5.0 message expiry interval is forgotten once it has
//! passed: it is never sent to a new subscriber, and the lookup that finds it expired deletes
//! it (in memory and in the store).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use fubar_store::Store;

use super::persist::stored_message;
use crate::mqtt::message::Message;
use crate::mqtt::topic;

/// What storing a retained message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetainChange {
    /// A message is now retained for the topic (new or replacing another).
    Set,
    /// The topic's retained message was deleted by an empty payload.
    Cleared,
    /// An empty payload for a topic that had nothing retained.
    Unchanged,
}

/// The retained messages of a node, in memory and (when it has one) in the store.
#[derive(Debug, Default)]
pub struct RetainedStore {
    messages: Mutex<HashMap<Arc<str>, Arc<Message>>>,
    store: Option<Arc<Store>>,
}

impl RetainedStore {
    /// Retained messages kept durably in `store`.
    pub fn with_store(store: Option<Arc<Store>>) -> Self {
        Self {
            messages: Mutex::default(),
            store,
        }
    }

    /// Loads messages read back from the store (those expired already are left out).
    pub fn restore(&self, messages: impl IntoIterator<Item = Arc<Message>>) {
        let now = Instant::now();
        let mut map = self.messages.lock().unwrap_or_else(PoisonError::into_inner);
        for m in messages.into_iter().filter(|m| !m.is_expired(now)) {
            map.insert(m.topic.clone(), m);
        }
    }

    /// Forgets every retained message in memory only (before reloading the replicated ones).
    pub fn clear(&self) {
        self.messages
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Forgets the retained message of `topic` in memory only (the replicated state has
    /// deleted it).
    pub fn forget(&self, topic: &str) {
        let mut messages = self.messages.lock().unwrap_or_else(PoisonError::into_inner);
        messages.remove(topic);
    }

    /// Stores (or, for an empty payload, deletes) the retained message of its topic.
    ///
    /// The store is written under the lock, so it sees changes of a topic in their order.
    pub fn set(&self, message: &Arc<Message>) -> RetainChange {
        let mut messages = self.messages.lock().unwrap_or_else(PoisonError::into_inner);
        let change = if message.payload.is_empty() {
            match messages.remove(&message.topic) {
                Some(_) => RetainChange::Cleared,
                None => RetainChange::Unchanged,
            }
        } else {
            messages.insert(message.topic.clone(), message.clone());
            RetainChange::Set
        };
        if let Some(store) = &self.store {
            let written = match change {
                RetainChange::Set => store.put_retained(&stored_message(message)).map(drop),
                RetainChange::Cleared => store.delete_retained(&message.topic).map(drop),
                RetainChange::Unchanged => Ok(()),
            };
            if let Err(e) = written {
                tracing::error!(target: "error", topic = %message.topic, error = %e, "cannot store retained message");
            }
        }
        change
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
        let mut messages = self.messages.lock().unwrap_or_else(PoisonError::into_inner);
        let mut found: Vec<Arc<Message>> = if filter.contains(['+', '#']) {
            messages
                .iter()
                .filter(|(t, _)| topic::matches(filter, t))
                .map(|(_, m)| m.clone())
                .collect()
        } else {
            messages.get(filter).cloned().into_iter().collect()
        };
        if found.iter().any(|m| m.is_expired(now)) {
            found.retain(|m| {
                if !m.is_expired(now) {
                    return true;
                }
                messages.remove(&m.topic);
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

    /// Number of retained messages.
    pub fn len(&self) -> usize {
        self.messages
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
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
