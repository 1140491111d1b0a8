//! The cluster: node names and, in later steps, membership, peer links (QUIC) and forwarding.

pub mod name;

pub use name::{NodeName, DEFAULT_CLUSTER_PORT};
