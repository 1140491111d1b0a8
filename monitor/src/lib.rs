//! The monitor: the cluster's central log collector.
//!
//! This crate will own the QUIC endpoint that accepts event batches from nodes, deduplicates
//! them, writes them through `fubar-logs`, feeds the tantivy index, and answers search and tail
//! requests.
