//! The frames of a cluster peer link (ALPN `fubar-cluster/4`), postcard-encoded and
//! length-prefixed like every other link of the endpoint.
//!
//! After the membership handshake the dialer opens one bidirectional stream per request: it
//! writes one [`PeerRequest`] and finishes; the other side answers with one [`PeerResponse`].
//! [`PeerRequest::Forward`] is the exception: it opens a message stream that lives as long as
//! the link, on which [`ForwardBatch`] frames go one way and [`ForwardAck`] frames come back.
//!
//! Field order is the wire format: change it only with a new ALPN.

use std::sync::Arc;

use bytes::Bytes;
use fubar_store::records::{ReplicaOp, RestoredSession, StoredProperties};
use fubar_store::replicated::{ChangeBatch, ChangeBatchOutcome, NodeInfo, TypeConfig};
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

/// Largest request or response frame body on a peer link (a snapshot chunk, a batch of log
/// entries, a batch of forwarded messages).
pub const MAX_PEER_FRAME: usize = 8 << 20;

/// A request from one member to another.
#[derive(Debug, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant, reason = "one per stream, never stored")]
pub enum PeerRequest {
    /// Raft: a vote request.
    Vote(VoteRequest<u64>),
    /// Raft: log entries (or a heartbeat).
    Append(AppendEntriesRequest<TypeConfig>),
    /// Raft: a chunk of a snapshot.
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    /// A node asks to join the cluster; the receiver passes it on to the leader.
    Join(NodeInfo),
    /// Changes of the replicated state for the leader to commit.
    Propose(ChangeBatch),
    /// A node leaves the cluster for good; the receiver passes it on to the leader.
    Leave(u64),
    /// Opens a stream of forwarded messages from the sender's boot `epoch`.
    Forward {
        /// The sender's boot epoch: sequence numbers start again with a new one.
        epoch: u64,
    },
    /// Is the node alive (and who leads, as it sees it)?
    Ping,
    /// The client is connecting to the sender: close its connection here and, if `keep`,
    /// hand its persistent session over.
    TakeOver {
        /// The client id.
        client_id: String,
        /// Clean session 0: the session moves.
        keep: bool,
        /// The connecting client's verified user: the holder refuses it a session of
        /// another user (`broker::client_owner`).
        user: Option<String>,
    },
    /// Opens a stream of persistent sessions' journal writes for which the receiver is a
    /// backup (appended: older nodes never receive it, as they are never chosen as backups
    /// while `session.replicas` is 0). [`ReplicaBatch`] frames go one way, [`ReplicaAck`]
    /// frames come back.
    Replicate {
        /// The sender's boot epoch.
        epoch: u64,
    },
    /// To the leader: confirm the leadership with a majority and answer the log index a
    /// member must have applied to know everything committed before this request (Raft's
    /// read index). A member whose session lease lapsed, or that just started, asks it before
    /// it serves replicated sessions again (`member::lease`). Appended: an older leader does
    /// not know it, and the asking member keeps refusing those sessions until it can ask one
    /// that does.
    ReadIndex,
}

/// The answer to a [`PeerRequest`].
#[derive(Debug, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant, reason = "one per request, never stored")]
pub enum PeerResponse {
    /// To `Vote`.
    Vote(Result<VoteResponse<u64>, RaftError<u64>>),
    /// To `Append`.
    Append(Result<AppendEntriesResponse<u64>, RaftError<u64>>),
    /// To `Snapshot`.
    Snapshot(Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>),
    /// To `Join`, `Leave`: done, or why not.
    Done(Result<(), String>),
    /// To `Propose`.
    Proposed(Result<ChangeBatchOutcome, String>),
    /// To `Ping`: the leader as the node sees it.
    Pong {
        /// The leader's id, if known.
        leader: Option<u64>,
    },
    /// To `TakeOver`: the session, if it moves.
    Session(Option<RestoredSession>),
    /// To `TakeOver`: refused, the session belongs to this user; it and its connection stay.
    NotOwner {
        /// The user the session belongs to.
        owner: String,
    },
    /// To `ReadIndex`: the index to have applied, or why the leadership was not confirmed.
    ReadIndex(Result<Option<u64>, String>),
}

/// A message forwarded to a node with matching routes (or holding the client id it is
/// addressed to). The receiver routes it to its local sessions only.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForwardedMessage {
    /// Topic name (shared with the message it was made from).
    pub topic: Arc<str>,
    /// Payload.
    pub payload: Bytes,
    /// QoS as published.
    pub qos: u8,
    /// Retain flag as published.
    pub retain: bool,
    /// MQTT 5 properties.
    pub properties: StoredProperties,
    /// The publisher's client id (for the `trace` class and MQTT 5 no local).
    pub publisher: String,
    /// For a shared subscription's copy: the `$share/GROUP/FILTER` whose member on the
    /// receiving node gets it (and no one else there).
    pub share: Option<String>,
    /// When its message expiry interval ends, on the sending node only (not on the wire:
    /// `properties` carries what remains of the interval when it is sent).
    #[serde(skip)]
    pub expires_at: Option<std::time::Instant>,
}

/// Consecutive messages on a forward stream: the first has sequence number `first_seq`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForwardBatch {
    /// Sequence number of the first message (per stream epoch, from 1).
    pub first_seq: u64,
    /// The messages.
    pub messages: Vec<ForwardedMessage>,
}

/// Every message up to `upto_seq` has been delivered to the receiver's sessions (and stored,
/// for persistent ones): the sender forgets them.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ForwardAck {
    /// The highest sequence number delivered, with every one before it.
    pub upto_seq: u64,
}

/// Journal writes of one persistent session, made by its primary at the session's `epoch`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicaEntry {
    /// The client id.
    pub client_id: String,
    /// The session's epoch (placement): a backup holding a newer one refuses the writes.
    pub epoch: u64,
    /// The writes, in order.
    pub ops: Vec<ReplicaOp>,
}

/// Consecutive entries on a replication stream: the first has sequence number `first_seq`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicaBatch {
    /// Sequence number of the first entry (per stream, from 1).
    pub first_seq: u64,
    /// The entries.
    pub entries: Vec<ReplicaEntry>,
}

/// Every entry up to `upto_seq` is durable on the backup (or refused, in `fenced`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicaAck {
    /// The highest sequence number settled, with every one before it.
    pub upto_seq: u64,
    /// Sessions whose writes were refused: the backup holds (or the cluster placed) them
    /// at this newer epoch, so the sender no longer serves them.
    pub fenced: Vec<(String, u64)>,
}
