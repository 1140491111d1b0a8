//! The records kept in the store, postcard-encoded. Field order is the on-disk format: add
//! fields only at the end, and bump `FORMAT_VERSION` when a record changes shape.

use serde::{Deserialize, Serialize};

/// Version of the on-disk format; a store written by another version is refused at open.
pub const FORMAT_VERSION: u32 = 4;

/// An account: the user name is the key, this is the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRecord {
    /// The password's salted slow hash in PHC string form (`$argon2id$...`).
    pub password_hash: String,
}

/// MQTT 5 message properties, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredProperties {
    /// Payload format indicator (UTF-8 text).
    pub payload_is_utf8: bool,
    /// Message expiry interval, seconds.
    pub message_expiry_secs: Option<u32>,
    /// Content type.
    pub content_type: Option<String>,
    /// Response topic.
    pub response_topic: Option<String>,
    /// Correlation data.
    pub correlation_data: Option<Vec<u8>>,
    /// User properties.
    pub user_properties: Vec<(String, String)>,
}

/// An application message, as stored (retained, or in a session queue).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    /// Topic name.
    pub topic: String,
    /// Payload.
    pub payload: Vec<u8>,
    /// QoS as published (0, 1, 2).
    pub qos: u8,
    /// Retain flag as published.
    pub retain: bool,
    /// MQTT 5 properties.
    pub properties: StoredProperties,
    /// When its message expiry interval ends, in milliseconds since the Unix epoch: a
    /// deadline that holds across restarts (and nodes); `None` for a message that never
    /// expires.
    pub expires_at_ms: Option<u64>,
}

/// One subscription of a persistent session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSubscription {
    /// Topic filter.
    pub filter: String,
    /// Granted maximum QoS.
    pub qos: u8,
    /// MQTT 5 no local.
    pub no_local: bool,
    /// MQTT 5 retain as published.
    pub retain_as_published: bool,
    /// MQTT 5 retain handling (0, 1, 2).
    pub retain_handling: u8,
    /// MQTT 5 subscription identifier.
    pub subscription_id: Option<u32>,
}

/// A persistent session: the client id is the key, this is the value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Its subscriptions.
    pub subscriptions: Vec<StoredSubscription>,
    /// MQTT 5.0 session expiry interval in seconds, when the client gave one.
    pub expiry_secs: Option<u32>,
    /// The verified user name of the connection that created the session: under `--auth` only
    /// that user may resume or take it over. `None`: created anonymously (or read from a
    /// format 3 store, which did not record it). Added in format 4.
    pub owner: Option<String>,
}

/// A session record as format 3 stored it (before `owner`): read once, when a format 3
/// store is opened and brought to format 4.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SessionRecordV3 {
    pub(crate) subscriptions: Vec<StoredSubscription>,
    pub(crate) expiry_secs: Option<u32>,
}

/// Where a queued message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueuedState {
    /// Waiting in the queue, not sent yet.
    Queued,
    /// Sent at QoS 1 with this packet id, waiting for PUBACK.
    WaitPubAck(u16),
    /// Sent at QoS 2 with this packet id, waiting for PUBREC.
    WaitPubRec(u16),
    /// PUBREL sent for this packet id, waiting for PUBCOMP.
    WaitPubComp(u16),
}

/// A QoS 1/2 message in a persistent session's queue; the key is (client id, sequence).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedRecord {
    /// The message (its payload is dropped once PUBREC has been received).
    pub message: StoredMessage,
    /// QoS for this subscriber.
    pub qos: u8,
    /// Retain flag on the wire.
    pub retain: bool,
    /// Its place in the acknowledgement flow.
    pub state: QueuedState,
    /// MQTT 5 subscription identifiers of the subscriptions it matched.
    pub subscription_ids: Vec<u32>,
}

/// A persistent session as read back at start, or as it moves from one node to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoredSession {
    /// Client id.
    pub client_id: String,
    /// The session record.
    pub record: SessionRecord,
    /// Queued and in-flight messages, by sequence number, oldest first.
    pub queued: Vec<(u64, QueuedRecord)>,
    /// Packet ids of QoS 2 messages received and not yet released.
    pub qos2_received: Vec<u16>,
    /// While its client is away: when the session expires, wall-clock milliseconds since the
    /// Unix epoch (kept apart from the record, in the `offline` keyspaces, so stores of
    /// earlier versions read as they are: their sessions have none and start their expiry
    /// at the restart).
    pub expires_at_ms: Option<u64>,
}

/// Where a persistent session lives in a cluster: its primary (the node serving it), the
/// nodes holding copies of it, and its epoch, raised by every move (the key is the client
/// id). Replicated through Raft; a copy with an older epoch is stale and never served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// The node serving the session.
    pub primary: u64,
    /// The nodes holding a copy of its journal (`session.replicas` of them).
    pub backups: Vec<u64>,
    /// Raised each time the session moves to another primary.
    pub epoch: u64,
}

/// One write of a persistent session's journal as it is streamed to a backup: the same
/// records the primary writes to its own store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicaOp {
    /// The whole session (a new backup, or a session that moved): replaces any copy.
    Full(RestoredSession),
    /// The session record (subscriptions, expiry, owner).
    PutSession(SessionRecord),
    /// A queued message, stored or rewritten (its state changed).
    PutQueued {
        /// Its sequence number in the session.
        seq: u64,
        /// The record.
        record: QueuedRecord,
    },
    /// A queued message is gone (acknowledged, expired, dropped).
    RemoveQueued {
        /// Its sequence number.
        seq: u64,
    },
    /// A QoS 2 packet id was received.
    PutQos2(u16),
    /// A QoS 2 packet id was released.
    DeleteQos2(u16),
    /// The session ended: the copy is deleted.
    Delete,
    /// Its client left (the session's expiry deadline, wall-clock ms) or came back (`None`).
    /// Appended: older nodes do not know it.
    Deadline(Option<u64>),
}
