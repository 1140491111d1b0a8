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
    /// One PUBLISH in this many (per connection, its first included) has its time from
    /// routing to the subscriber's socket measured for `fubar_delivery_latency_seconds`; 0
    /// measures none. Sampled so the message path reads the clock for few messages.
    pub latency_sample_every: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: None,
            latency_sample_every: 64,
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
