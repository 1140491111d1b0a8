//! TLS configuration for fubar.
//!
//! This crate will own the rustls configurations of the MQTT TLS listener and of the cluster
//! and monitor QUIC links, and the generation of certificates (CA, server, node, client).
