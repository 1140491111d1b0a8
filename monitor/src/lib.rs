//! The monitor: the cluster's central log collector, and the node's side of its link.
//!
//! - [`server`]: the QUIC endpoint that accepts event batches from nodes (ALPN
//!   `fubar-log/1`), checks membership (a node certificate of the cluster CA, or the cluster
//!   [`cookie`] proven over a fresh nonce), drops resent events ([`dedup`]), writes the new
//!   ones through a [`sink::EventSink`] (the log engine's segments and redirects), acknowledges
//!   what is durable, and keeps per-node [`stats`].
//! - [`shipper`]: what a node runs: a bounded on-disk spool fed by the log engine's tap, and
//!   a client that ships it, resending what was not acknowledged after a reconnection.
//! - [`index`], [`indexer`], [`search`]: the tantivy index of every collected event, fed by
//!   tailing the segments (its source of truth, so it can be rebuilt from them), searched
//!   newest first with tantivy's query syntax; `search::TailFilter` matches live events.
//!
//! Every limit and default is in [`config`] (the index's are next to it, in [`index`] and
//! [`indexer`], until the CLI wires them).
//! - [`admin`]: remote admin on the same endpoint (ALPN `fubar-admin/1`), after the same
//!   membership proof: requests go to a handler the owner installs, replies stream back.

#![warn(missing_docs)]

pub mod admin;
pub mod config;
pub mod cookie;
pub mod dedup;
mod error;
pub mod index;
pub mod index_lag;
pub mod indexer;
mod membership;
pub mod search;
pub mod server;
pub mod shipper;
pub mod sink;
pub mod stats;
mod thread_priority;
pub mod wire;

pub use error::MonitorError;
