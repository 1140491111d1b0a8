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
            max_connections: 64,
            idle_timeout_secs: 30,
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

/// The monitor's web console (search, device timeline, live tail, cluster): served only by a
/// monitor, only to a browser signed in with a URL from `fubar console url`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleSettings {
    /// Address of the console; loopback by default, since the console shows every event of
    /// the cluster to whoever signs in.
    pub bind: IpAddr,
    /// TCP port of the console; no console when absent. 0 picks a free port, printed at start.
    pub port: Option<u16>,
    /// Seconds a sign-in URL printed by `fubar console url` stays valid (it works once).
    pub sign_in_ttl_secs: u64,
    /// Sign-in URLs handed out and not yet used; the oldest is dropped beyond it.
    pub max_pending_sign_ins: usize,
    /// Seconds a signed-in browser's session lasts.
    pub session_ttl_secs: u64,
    /// Sessions kept at once; the oldest is signed out beyond it.
    pub max_sessions: usize,
    /// Events per page of the search page.
    pub page_size: usize,
    /// Bars of the search page's histogram.
    pub histogram_bars: usize,
    /// Most events a device timeline shows (the newest ones).
    pub timeline_limit: usize,
    /// Events queued for one live tail's browser; beyond it events are skipped and counted.
    pub tail_queue: usize,
    /// Live tails open at once.
    pub max_tails: usize,
    /// Serve the console over HTTPS with this node's cluster certificate (the session cookie
    /// is then `Secure`).
    pub tls: bool,
    /// Seconds a browser has to finish its TLS handshake with the console.
    pub handshake_timeout_secs: u64,
    /// TLS handshakes with the console running at once; more connections wait.
    pub max_handshakes: usize,
    /// Most console connections open at once (live tails included); one more is closed at
    /// accept with a `warning`, so held-open sockets cannot take the node's descriptors.
    pub max_connections: usize,
    /// Seconds a console connection may go without writing (an unfinished request, an idle
    /// keep-alive) before it is closed; a live tail writes a keep-alive every 15 s.
    pub idle_timeout_secs: u64,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: None,
            sign_in_ttl_secs: 120,
            max_pending_sign_ins: 100,
            session_ttl_secs: 8 * 3600,
            max_sessions: 100,
            page_size: 50,
            histogram_bars: 60,
            timeline_limit: 10_000,
            tail_queue: 1000,
            max_tails: 16,
            tls: false,
            handshake_timeout_secs: 10,
            max_handshakes: 64,
            max_connections: 128,
            idle_timeout_secs: 60,
        }
    }
}
