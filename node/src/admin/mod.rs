//! The admin endpoint: a Unix socket in the node's directory through which `fubar ctl` runs
//! commands on a running node.
//!
//! Only the node's owner can reach it: the node directory is mode 0700 and the socket 0600.
//! Each connection carries one request and one reply, as `fubar-logproto` frames.

mod client;
mod commands;
mod endpoint;
mod log_commands;
mod monitor_commands;

pub use client::request;
pub use endpoint::Endpoint;

use std::path::{Path, PathBuf};

/// The admin socket of the node whose directory is `node_dir`.
pub fn socket_path(node_dir: &Path) -> PathBuf {
    node_dir.join("admin.sock")
}
