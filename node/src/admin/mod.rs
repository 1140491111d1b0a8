//! The admin endpoint: a Unix socket in the node's directory through which `fubar ctl` runs
//! commands on a running node, and, on a monitor, the same commands over its QUIC cluster
//! port for members of the cluster (`fubar_monitor::admin`).
//!
//! Only the node's owner can reach the socket: the node directory is mode 0700 and the socket
//! 0600. Each connection carries one request and one reply (a stream of them for `log tail`),
//! as `fubar-logproto` frames. Both transports run requests through [`dispatch`].

pub mod authz;
mod client;
mod cluster_commands;
mod commands;
mod context;
mod dispatch;
mod endpoint;
mod log_commands;
mod monitor_commands;
mod topic_acl_commands;

pub use authz::Requester;
pub use client::{request, stream, Remote, Target};
pub use context::NodeContext;
pub use dispatch::dispatch;
pub use endpoint::{serve_remote, Endpoint};

use std::path::{Path, PathBuf};

/// The admin socket of the node whose directory is `node_dir`.
pub fn socket_path(node_dir: &Path) -> PathBuf {
    node_dir.join("admin.sock")
}
