//! The changes that go through Raft, and what applying each one did.
//!
//! Changes are postcard-encoded in the Raft log and in messages between nodes: the order of the
//! variants and of their fields is the format. Add variants and fields only at the end.

use serde::{Deserialize, Serialize};

use crate::records::{AccountRecord, Placement, StoredMessage};

/// One change to the replicated cluster state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// Creates or replaces an account. Outcome: `Done`.
    PutAccount {
        /// User name.
        name: String,
        /// The account.
        record: AccountRecord,
    },
    /// Deletes an account. Outcome: `Removed(existed)`.
    DeleteAccount {
        /// User name.
        name: String,
    },
    /// Adds or replaces an address rule. Outcome: `Done`.
    PutAcl {
        /// The address range, `10.0.0.0/8`.
        cidr: String,
        /// Whether the range is allowed (else denied).
        allow: bool,
    },
    /// Deletes an address rule. Outcome: `Removed(existed)`.
    DeleteAcl {
        /// The address range.
        cidr: String,
    },
    /// Records a setting changed at run time (dotted name → TOML value). Outcome: `Done`.
    PutSetting {
        /// Dotted name.
        name: String,
        /// TOML value.
        value: String,
    },
    /// Stores the retained message of its topic. Outcome: `Done`.
    PutRetained(StoredMessage),
    /// Deletes the retained message of a topic. Outcome: `Removed(existed)`.
    DeleteRetained {
        /// Topic name.
        topic: String,
    },
    /// Records that `node` has subscribers for `filter`. Outcome: `Added(was new)`.
    AddRoute {
        /// Topic filter.
        filter: String,
        /// The node with subscribers.
        node: u64,
    },
    /// Records that `node` no longer has subscribers for `filter`. Outcome: `Removed(existed)`.
    RemoveRoute {
        /// Topic filter.
        filter: String,
        /// The node.
        node: u64,
    },
    /// Records that `node` now holds the session of `client_id`.
    /// Outcome: `PreviousHolder(the node that held it before, if another one)`.
    RegisterClient {
        /// Client id.
        client_id: String,
        /// The node that holds it now.
        node: u64,
    },
    /// Forgets that `node` holds `client_id`, only if it still does (a later registration by
    /// another node wins). Outcome: `Removed(whether it was removed)`.
    UnregisterClient {
        /// Client id.
        client_id: String,
        /// The node that let it go.
        node: u64,
    },
    /// Removes every route and client registration of `node` (it died or left); the owners
    /// of its client ids stay (another user still may not take them).
    /// Outcome: `Dropped { filters, clients }`.
    DropNode {
        /// The node.
        node: u64,
    },
    /// Adds topic rules (text form), all in one entry. Outcome: `Done`.
    PutTopicRules {
        /// The rules.
        rules: Vec<String>,
    },
    /// Deletes topic rules. Outcome: `Removed(whether any existed)`.
    DeleteTopicRules {
        /// The rules.
        rules: Vec<String>,
    },
    /// `RegisterClient` for a session created or resumed by a connection of verified user
    /// `owner`, who owns the client id from then on (until its session ends). Outcome:
    /// `PreviousHolder`, or `NotOwner` (nothing written) when the id belongs to another user.
    /// A plain `RegisterClient` of an owned id is refused the same way: of two connections of
    /// different users claiming one id at once on two nodes, the one Raft orders first wins.
    RegisterOwnedClient {
        /// Client id.
        client_id: String,
        /// The node that holds it now.
        node: u64,
        /// The verified user.
        owner: String,
    },
    /// Records where a persistent session lives and its epoch, if `placement.epoch` is not
    /// older than the one recorded (a move raises it; a new backup keeps it). Outcome: `Done`,
    /// or `Stale` (nothing written) when a newer epoch is recorded.
    PlaceSession {
        /// Client id.
        client_id: String,
        /// Primary, backups, epoch.
        placement: Placement,
    },
    /// Forgets a session's placement (it ended), only if its epoch is still `epoch`.
    /// Outcome: `Removed(whether it was removed)`.
    ForgetPlacement {
        /// Client id.
        client_id: String,
        /// The epoch of the session that ended.
        epoch: u64,
    },
}

/// What applying one [`Change`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Written (the puts).
    Done,
    /// `AddRoute`: whether the route is new (false: it was there already).
    Added(bool),
    /// The deletes, `RemoveRoute`, `UnregisterClient`: whether something was removed.
    Removed(bool),
    /// `RegisterClient`: the node that held the client id before, if another one (it must
    /// close its connection: a takeover).
    PreviousHolder(Option<u64>),
    /// `DropNode`: the filters of its routes and the client ids it held, now removed.
    Dropped {
        /// Filters whose route to the node was removed.
        filters: Vec<String>,
        /// Client ids the node held.
        clients: Vec<String>,
    },
    /// `RegisterClient`, `RegisterOwnedClient`: refused, the client id belongs to `owner`.
    NotOwner {
        /// The user the client id belongs to.
        owner: String,
    },
    /// `PlaceSession`: refused, the session's recorded epoch is newer.
    Stale {
        /// The recorded epoch.
        epoch: u64,
    },
}

/// The payload of one Raft log entry: changes applied together, in order, atomically.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeBatch(pub Vec<Change>);

/// The response to one [`ChangeBatch`]: one outcome per change, in order (empty for Raft's own
/// entries: blank and membership).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeBatchOutcome(pub Vec<Outcome>);
