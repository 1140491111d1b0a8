//! The cluster: node names, the monitor role (collecting every node's logs) and a node's
//! side of the log link; in later steps membership, peer links and forwarding.

pub mod monitor;
pub mod name;
pub mod shipping;

pub use name::{NodeName, DEFAULT_CLUSTER_PORT};
