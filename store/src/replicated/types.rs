//! The openraft type configuration, the node record kept in the membership, and node ids.

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

use super::change::{ChangeBatch, ChangeBatchOutcome};

openraft::declare_raft_types!(
    /// The openraft type configuration of the replicated cluster state.
    pub TypeConfig:
        D = ChangeBatch,
        R = ChangeBatchOutcome,
        NodeId = u64,
        Node = NodeInfo,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A Raft instance over the replicated cluster state.
pub type Raft = openraft::Raft<TypeConfig>;

/// What a cluster member does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NodeRole {
    /// A broker: serves MQTT clients and holds routes and client ids.
    #[default]
    Broker,
    /// A monitor: collects the cluster's logs and serves no MQTT clients.
    Monitor,
}

/// A cluster member as the Raft membership records it. Field order is the on-disk and wire
/// format: add fields only at the end.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's name, `name@host` (`n1@host1`).
    pub name: String,
    /// Its cluster QUIC address, `host:port`.
    pub addr: String,
    /// What it does.
    pub role: NodeRole,
}

impl fmt::Display for NodeRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Broker => "broker",
            Self::Monitor => "monitor",
        })
    }
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}) at {}", self.name, self.role, self.addr)
    }
}

/// The Raft node id of the node called `name`: a stable 64-bit FNV-1a hash of the name, never 0.
///
/// Every member derives the same id from the same name, so an id needs no allocation round and
/// a restarted node keeps its id. Two names of one cluster colliding is a 2^-64 chance per pair.
pub fn node_id(name: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = name
        .bytes()
        .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    // 0 reads as "no node" in places (openraft's defaults), so it is never handed out.
    hash.max(1)
}
