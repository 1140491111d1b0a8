//! Retained messages: the last retained message of every topic.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

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

/// The retained messages of a node.
#[derive(Debug, Default)]
pub struct RetainedStore {
    messages: Mutex<HashMap<Arc<str>, Arc<Message>>>,
}

impl RetainedStore {
    /// Stores (or, for an empty payload, deletes) the retained message of its topic.
    pub fn set(&self, message: &Arc<Message>) -> RetainChange {
        let mut messages = self.messages.lock().unwrap_or_else(PoisonError::into_inner);
        if message.payload.is_empty() {
            match messages.remove(&message.topic) {
                Some(_) => RetainChange::Cleared,
                None => RetainChange::Unchanged,
            }
        } else {
            messages.insert(message.topic.clone(), message.clone());
            RetainChange::Set
        }
    }

    /// The retained messages whose topics match `filter`.
    ///
    /// A filter without wildcards is one lookup; a wildcard filter scans the retained set.
    pub fn matching(&self, filter: &str) -> Vec<Arc<Message>> {
        let messages = self.messages.lock().unwrap_or_else(PoisonError::into_inner);
        if !filter.contains(['+', '#']) {
            return messages.get(filter).cloned().into_iter().collect();
        }
        messages
            .iter()
            .filter(|(t, _)| topic::matches(filter, t))
            .map(|(_, m)| m.clone())
            .collect()
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
        })
    }

    #[test]
    fn set_replace_clear() {
        let r = RetainedStore::default();
        assert_eq!(r.set(&msg("a/b", "1")), RetainChange::Set);
        assert_eq!(r.set(&msg("a/b", "2")), RetainChange::Set);
        assert_eq!(r.len(), 1);
        assert_eq!(&r.matching("a/b")[0].payload[..], b"2");
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
        assert_eq!(r.matching("a/+").len(), 2);
        assert_eq!(r.matching("#").len(), 2);
        assert_eq!(r.matching("$SYS/#").len(), 1);
        assert_eq!(r.matching("a/d").len(), 0);
    }
}
