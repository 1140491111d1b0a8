//! The wire vocabulary shared by every fubar node and the monitor.
//!
//! This crate will own the log `Class` and `Event` types, event batches and their acks, the
//! admin and search requests and responses, the ALPN names, and the length-prefixed postcard
//! framing used on the QUIC links. It depends on no other fubar crate.
//!
//! Step 1 of the roadmap (the single-node broker) does not fill it yet.
