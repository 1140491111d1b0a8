//! The monitor role of a node (`fubar monitor`): the log link's QUIC server writes every
//! node's events into this node's segments, an indexer thread makes them searchable, and live
//! tails follow them as they arrive.

use parking_lot::Mutex;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use fubar_logproto::link::{ADMIN_ALPN, LOG_ALPN, PEER_ALPN};
use fubar_logproto::{Class, Event};
use fubar_logs::LogHandle;
use fubar_monitor::index::EventIndex;
use fubar_monitor::index_lag::IndexLag;
use fubar_monitor::indexer::{Indexer, IndexerConfig};
use fubar_monitor::server::MonitorServer;
use fubar_monitor::sink::EventSink;
use fubar_monitor::MonitorError;
use tokio::sync::broadcast;

use super::endpoint;
use crate::settings::Settings;

/// Events buffered for each live tail; a tail further behind is told how many it missed.
pub const TAIL_CAPACITY: usize = 16_384;

/// The running monitor role.
#[derive(Debug)]
pub struct MonitorRole {
    /// The log link's server.
    pub server: MonitorServer,
    /// Where the collected events are indexed.
    pub index: Arc<EventIndex>,
    /// How far behind the events the index's commits are.
    pub index_lag: Arc<IndexLag>,
    /// Every event written to the segments, for live tails.
    pub tail: broadcast::Sender<Arc<Event>>,
    /// The cluster (QUIC) address the server listens on.
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    indexer: Mutex<Option<JoinHandle<()>>>,
}

/// The sink of the link's server: the log engine's segments and redirects, then the tails.
struct TailingSink {
    logs: LogHandle,
    tail: broadcast::Sender<Arc<Event>>,
}

impl EventSink for TailingSink {
    fn write(&self, events: &[Event]) -> Result<(), MonitorError> {
        self.logs.write_events(events)?;
        if self.tail.receiver_count() > 0 {
            for e in events {
                let _ = self.tail.send(Arc::new(e.clone()));
            }
        }
        Ok(())
    }
}

impl MonitorRole {
    /// Starts the endpoint on the cluster port (log links, remote admin, cluster peers), and
    /// the indexer over this node's log dir.
    pub fn start(settings: &Settings, logs: &LogHandle, epoch: u64) -> anyhow::Result<Self> {
        let tls = endpoint::server_tls(settings, &[LOG_ALPN, ADMIN_ALPN, PEER_ALPN])?;
        let cookie = endpoint::cookie(settings)?;
        let log_dir = settings.log_dir();
        let mut config = endpoint::server_config(settings, epoch);
        config.collect = collected_classes(settings)?;
        // What is in the segments already: resends after a restart are recognised as such.
        config.high_water = fubar_logs::high_water_marks(&log_dir)?;
        // The monitor's own events are in the same segments; it is not a node it hears from.
        config
            .high_water
            .retain(|(node, _), _| *node != settings.node.name);
        let (tail, _) = broadcast::channel(TAIL_CAPACITY);
        let sink = Arc::new(TailingSink {
            logs: logs.clone(),
            tail: tail.clone(),
        });
        let server = MonitorServer::start(config, tls, Some(cookie), sink)
            .context("cannot start the monitor's cluster port")?;
        let addr = server.local_addr()?;
        let index_dir = settings.node_dir().join("index");
        let index = Arc::new(
            EventIndex::open_or_create(&index_dir, settings.monitor.index_heap_bytes)
                .with_context(|| format!("cannot open the index in {}", index_dir.display()))?,
        );
        let mut indexer_config = IndexerConfig::new(&log_dir);
        indexer_config.commit_interval = Duration::from_millis(settings.monitor.index_commit_ms);
        indexer_config.retention = match settings.monitor.index_retention_secs {
            0 => None,
            secs => Some(Duration::from_secs(secs)),
        };
        let mut indexer = Indexer::new(index.clone(), indexer_config)?;
        let index_lag = indexer.lag();
        let stop = Arc::new(AtomicBool::new(false));
        let stop_indexer = stop.clone();
        let thread = std::thread::Builder::new()
            .name("fubar-indexer".into())
            .spawn(move || {
                if let Err(e) = indexer.run(&stop_indexer) {
                    tracing::error!(target: "error", error = %e, "the indexer stopped");
                }
            })
            .context("cannot start the indexer thread")?;
        Ok(Self {
            server,
            index,
            index_lag,
            tail,
            addr,
            stop,
            indexer: Mutex::new(Some(thread)),
        })
    }

    /// Stops the link server and the indexer (after its last commit).
    pub async fn shutdown(&self) {
        self.server.shutdown().await;
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.indexer.lock().take();
        if let Some(t) = thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

fn collected_classes(settings: &Settings) -> anyhow::Result<Vec<Class>> {
    settings
        .monitor
        .collect
        .iter()
        .map(|c| c.parse::<Class>().map_err(anyhow::Error::from))
        .collect()
}
