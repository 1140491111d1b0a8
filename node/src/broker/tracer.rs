//! What is followed in the `trace` class: client ids and topic filters, marked with
//! `fubar ctl trace client ID` / `fubar ctl trace topic FILTER`.
//!
//! Everything a traced client does (its connection, every packet in and out) and every hop of
//! a message on a traced topic or from a traced client is emitted in `trace` as well as in its
//! own class, so one device can be followed without opening `protocol` for everyone.

use parking_lot::RwLock;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::mqtt::topic;

/// The traced client ids and topic filters of a node.
#[derive(Debug, Default)]
pub struct Tracer {
    clients: RwLock<BTreeSet<String>>,
    topics: RwLock<BTreeSet<String>>,
    /// Whether anything is traced: the common case (nothing) costs one atomic load.
    any: AtomicBool,
}

impl Tracer {
    fn refresh(&self) {
        let any = !self.clients.read().is_empty() || !self.topics.read().is_empty();
        self.any.store(any, Ordering::Relaxed);
    }

    /// Starts following a client id; returns false if it already was.
    pub fn trace_client(&self, client_id: &str) -> bool {
        let new = self.clients.write().insert(client_id.to_owned());
        self.refresh();
        new
    }

    /// Stops following a client id; returns whether it was.
    pub fn untrace_client(&self, client_id: &str) -> bool {
        let was = self.clients.write().remove(client_id);
        self.refresh();
        was
    }

    /// Starts following a topic filter; refuses an invalid one.
    pub fn trace_topic(&self, filter: &str) -> Result<bool, NotAFilter> {
        if !topic::is_valid_topic_filter(filter) {
            return Err(NotAFilter(filter.to_owned()));
        }
        let new = self.topics.write().insert(filter.to_owned());
        self.refresh();
        Ok(new)
    }

    /// Stops following a topic filter; returns whether it was.
    pub fn untrace_topic(&self, filter: &str) -> bool {
        let was = self.topics.write().remove(filter);
        self.refresh();
        was
    }

    /// Traced client ids and topic filters, sorted.
    pub fn list(&self) -> (Vec<String>, Vec<String>) {
        let c = self.clients.read();
        let t = self.topics.read();
        (c.iter().cloned().collect(), t.iter().cloned().collect())
    }

    /// Whether `client_id` is followed.
    pub fn client_traced(&self, client_id: &str) -> bool {
        self.any.load(Ordering::Relaxed) && self.clients.read().contains(client_id)
    }

    /// Whether a message on `topic` is followed.
    pub fn topic_traced(&self, topic_name: &str) -> bool {
        self.any.load(Ordering::Relaxed)
            && self
                .topics
                .read()
                .iter()
                .any(|f| topic::matches(f, topic_name))
    }
}

/// Microseconds since the Unix epoch now (trace marks and latencies are wall-clock based, so
/// they stay meaningful across nodes).
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_and_topics() {
        let t = Tracer::default();
        assert!(!t.client_traced("c1") && !t.topic_traced("a/b"));
        assert!(t.trace_client("c1"));
        assert!(!t.trace_client("c1"));
        assert!(t.client_traced("c1") && !t.client_traced("c2"));
        assert!(t.trace_topic("a/+").unwrap());
        assert!(t.trace_topic("a/#/b").is_err());
        assert!(t.topic_traced("a/b") && !t.topic_traced("b/a"));
        assert_eq!(t.list(), (vec!["c1".to_owned()], vec!["a/+".to_owned()]));
        assert!(t.untrace_client("c1") && t.untrace_topic("a/+"));
        assert!(!t.any.load(Ordering::Relaxed));
    }
}

/// A topic filter to trace that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a valid topic filter")]
pub struct NotAFilter(pub String);
