//! Log classes and events: what every node emits and the monitor collects.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A log class (Erlang fubar's `fubar_log` classes). Each is a `tracing` target of the same
/// name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Class {
    /// Client network addresses, connects and disconnects with their reasons.
    Access,
    /// Bytes sent and received.
    Packet,
    /// Every MQTT packet sent and received, decoded.
    Protocol,
    /// Long-lasting resources: sessions, subscriptions, retained messages, accounts.
    Resource,
    /// Messages for debugging.
    Debug,
    /// Events taken but of no consequence.
    Info,
    /// Abnormal conditions that are not critical.
    Warning,
    /// Irrecoverable failures.
    Error,
    /// Everything about traced clients and topics.
    Trace,
}

impl Class {
    /// Every class, in a fixed order.
    pub const ALL: [Self; 9] = [
        Self::Access,
        Self::Packet,
        Self::Protocol,
        Self::Resource,
        Self::Debug,
        Self::Info,
        Self::Warning,
        Self::Error,
        Self::Trace,
    ];

    /// The class's name (and `tracing` target).
    pub fn name(self) -> &'static str {
        match self {
            Self::Access => "access",
            Self::Packet => "packet",
            Self::Protocol => "protocol",
            Self::Resource => "resource",
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Error => "error",
            Self::Trace => "trace",
        }
    }

    /// A small index, for bit sets.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a log class.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown log class {0:?} (classes: access, packet, protocol, resource, debug, info, warning, error, trace)")]
pub struct UnknownClass(pub String);

impl FromStr for Class {
    type Err = UnknownClass;

    fn from_str(s: &str) -> Result<Self, UnknownClass> {
        Self::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| UnknownClass(s.to_owned()))
    }
}

/// One log event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The node that emitted it, `name@host`.
    pub node: String,
    /// The node's boot epoch (its start time in microseconds): with `seq`, identifies the event
    /// uniquely and makes re-sends idempotent.
    pub epoch: u64,
    /// Per-node, per-boot sequence number, increasing by one per event.
    pub seq: u64,
    /// When it happened, microseconds since the Unix epoch, UTC.
    pub time_us: i64,
    /// Its class.
    pub class: Class,
    /// The message.
    pub message: String,
    /// Key-value fields (client, peer, topic, packet type, sizes ...), in emission order. Keys
    /// are the static field names of the code that emitted the event, so building an event
    /// does not allocate them.
    pub fields: Vec<(Cow<'static, str>, String)>,
}

/// An event read in place from its postcard encoding (the same bytes as [`Event`]'s): its
/// strings borrow from the buffer, so reading one allocates only the list of fields. The
/// monitor's indexer reads every collected event this way. It also encodes to those bytes:
/// the log writer writes a packet record's event through one, without owning its strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRef<'a> {
    /// The node that emitted it.
    pub node: &'a str,
    /// The node's boot epoch.
    pub epoch: u64,
    /// Per-node, per-boot sequence number.
    pub seq: u64,
    /// When it happened, microseconds since the Unix epoch, UTC.
    pub time_us: i64,
    /// Its class.
    pub class: Class,
    /// The message.
    pub message: &'a str,
    /// Key-value fields, in emission order.
    #[serde(borrow)]
    pub fields: Vec<(&'a str, &'a str)>,
}

impl<'a> EventRef<'a> {
    /// A view of an owned event.
    pub fn of(event: &'a Event) -> Self {
        Self {
            node: &event.node,
            epoch: event.epoch,
            seq: event.seq,
            time_us: event.time_us,
            class: event.class,
            message: &event.message,
            fields: event
                .fields
                .iter()
                .map(|(k, v)| (&**k, v.as_str()))
                .collect(),
        }
    }
}

impl Event {
    /// Its fields as pairs of strings.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> + Clone {
        self.fields.iter().map(|(k, v)| (&**k, v.as_str()))
    }

    /// The value of a field, if present.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_borrowed_event_encodes_to_the_owned_events_bytes() {
        let event = Event {
            node: "n@h".into(),
            epoch: 7,
            seq: 300,
            time_us: -5,
            class: Class::Protocol,
            message: "packet".into(),
            fields: vec![("dir".into(), "in".into()), ("topic".into(), "a b".into())],
        };
        let owned = postcard::to_allocvec(&event).unwrap();
        let borrowed = postcard::to_allocvec(&EventRef::of(&event)).unwrap();
        assert_eq!(owned, borrowed);
    }

    #[test]
    fn an_event_reads_in_place_as_it_was_written() {
        let event = Event {
            node: "n1@host".into(),
            epoch: 7,
            seq: 42,
            time_us: 1_700_000_000_000_000,
            class: Class::Access,
            message: "connected".into(),
            fields: vec![
                ("client".into(), "c1".into()),
                ("peer".into(), "10.0.0.1:5000".into()),
            ],
        };
        let bytes = postcard::to_allocvec(&event).unwrap();
        let (read, rest) = postcard::take_from_bytes::<EventRef<'_>>(&bytes).unwrap();
        assert!(rest.is_empty());
        assert_eq!(read, EventRef::of(&event));
        assert!(postcard::from_bytes::<EventRef<'_>>(&bytes[..bytes.len() - 1]).is_err());
    }
}
