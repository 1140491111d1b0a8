//! The broker: listeners, connection drivers, the router, retained messages and the registry
//! of client ids.
//!
//! `Broker` is the state every connection shares. `Server` owns a bound listener and runs the
//! accept loop until its shutdown token is cancelled.

mod connection;
mod listener;
mod packet_log;
pub mod registry;
pub mod retained;
pub mod router;
pub mod trie;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub use listener::Server;

use crate::mqtt::packet::{Connect, ConnectReturnCode};
use crate::settings::Settings;
use registry::Registry;
use retained::RetainedStore;
use router::{Routed, Router};

/// The state shared by every connection of a node.
#[derive(Debug)]
pub struct Broker {
    /// The node's settings.
    pub settings: Arc<Settings>,
    /// Sessions by client id.
    pub registry: Registry,
    /// Subscriptions and fan-out.
    pub router: Router,
    /// Retained messages.
    pub retained: RetainedStore,
    /// Counters.
    pub stats: Stats,
    next_conn_id: AtomicU64,
    boot_id: u64,
}

/// Broker-wide counters.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections open now.
    pub connections: AtomicU64,
    /// Connections accepted since start.
    pub connections_total: AtomicU64,
    /// Connections refused at accept because `mqtt.max_connections` was reached.
    pub connections_refused: AtomicU64,
    /// PUBLISH packets routed (from clients and wills).
    pub messages_in: AtomicU64,
    /// PUBLISH packets written to subscribers.
    pub messages_out: AtomicU64,
    /// Messages dropped from full session queues.
    pub messages_dropped: AtomicU64,
}

impl Stats {
    fn record_routed(&self, routed: &Routed) {
        self.messages_in.fetch_add(1, Ordering::Relaxed);
        if routed.dropped > 0 {
            self.messages_dropped
                .fetch_add(routed.dropped as u64, Ordering::Relaxed);
        }
    }

    fn record_sent(&self, n: usize) {
        if n > 0 {
            self.messages_out.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}

impl Broker {
    /// A broker with empty state.
    pub fn new(settings: Settings) -> Self {
        let boot_id = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Self {
            settings: Arc::new(settings),
            registry: Registry::default(),
            router: Router::default(),
            retained: RetainedStore::default(),
            stats: Stats::default(),
            next_conn_id: AtomicU64::new(1),
            boot_id,
        }
    }

    fn next_conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A client id for a client that connected with an empty one (clean session only).
    fn assign_client_id(&self, conn_id: u64) -> String {
        format!("fubar-{:x}-{conn_id}", self.boot_id)
    }

    /// Checks the credentials of a CONNECT.
    ///
    /// Accounts arrive with the preserved state (step 2); until then every client may connect.
    fn authenticate(&self, _connect: &Connect) -> Result<(), ConnectReturnCode> {
        Ok(())
    }
}
