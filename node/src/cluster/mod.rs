//! The cluster: node names, the node's QUIC endpoint, the monitor role (collecting every
//! node's logs) and a node's side of the log link; membership and the replicated state
//! (Raft over `store/`), peer links and the forwarding of messages between nodes.

pub mod endpoint;
pub mod forward;
pub mod member;
pub mod monitor;

pub mod peer_server;
pub mod peer_wire;
pub mod peers;
pub mod raft_network;
pub mod replica;
pub mod settling;
pub mod shipping;
pub mod state_log;
pub mod view;

/// Node names live with the settings that hold them (`node.name`, `cluster.master`).
pub use crate::settings::node_name::{
    self as name, identity, settle, NodeName, DEFAULT_CLUSTER_PORT,
};
