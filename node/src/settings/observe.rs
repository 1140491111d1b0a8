//! Settings of what lets a node be watched: the HTTP endpoint (`/metrics`, `/healthz`,
//! `/readyz`) and the `$SYS` topics.

use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

/// The HTTP endpoint for Prometheus and health probes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Address of the HTTP endpoint; loopback by default, since `/metrics` tells anyone who
    /// can read it how busy the node is.
    pub bind: IpAddr,
    /// TCP port of the HTTP endpoint (`/metrics`, `/healthz`, `/readyz`); no endpoint when
    /// absent. 0 picks a free port, printed at start.
    pub port: Option<u16>,
    /// Most HTTP connections open at once; one more is closed at accept (a `warning` event),
    /// so a client holding sockets open cannot take the node's file descriptors.
    pub max_connections: usize,
    /// Seconds an HTTP connection may go without a response written (a request never
    /// finished, or an idle keep-alive) before it is closed.
    pub idle_timeout_secs: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: None,
            max_connections: 64,
            idle_timeout_secs: 30,
        }
    }
}

/// The `$SYS/broker/...` topics (mosquitto's names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SysSettings {
    /// Seconds between two publications of the `$SYS` topics, retained (0: none).
    pub interval_secs: u64,
}

impl Default for SysSettings {
    fn default() -> Self {
        Self { interval_secs: 10 }
    }
}
