//! The node's side of the log link: a bounded on-disk spool fed by the log engine's tap, and a
//! client that ships it to the monitor.
//!
//! It lives in this crate, beside the server, so both ends of the protocol are built and
//! tested together without the broker; the node (which also runs `fubar monitor`, and so
//! depends on this crate anyway) only wires it to its settings and its `--master`.

mod client;
mod spool;
mod spool_file;

use parking_lot::{Mutex, MutexGuard};
use std::sync::Arc;

use fubar_logproto::Event;
use fubar_logs::Tap;
use tokio::sync::Notify;

use crate::MonitorError;

pub use client::{Shipper, ShipperConfig, ShipperStats};
pub use spool::{Loss, Spool, SpoolConfig, SpoolStats, MAX_SPOOL_ENTRY};

/// A spool shared by the log writer (through [`SharedSpool::tap`]) and the shipper; cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct SharedSpool {
    inner: Arc<SpoolInner>,
}

#[derive(Debug)]
struct SpoolInner {
    spool: Mutex<Spool>,
    /// Signalled after every append, so the shipper sends without polling.
    ready: Notify,
}

impl SharedSpool {
    /// Shares an opened spool.
    pub fn new(spool: Spool) -> Self {
        Self {
            inner: Arc::new(SpoolInner {
                spool: Mutex::new(spool),
                ready: Notify::new(),
            }),
        }
    }

    /// Opens the spool in `config.dir` and shares it.
    pub fn open(config: &SpoolConfig) -> Result<Self, MonitorError> {
        Ok(Self::new(Spool::open(config)?))
    }

    /// The tap to give the log engine (`LogHandle::set_tap`): shipped events go to the spool.
    pub fn tap(&self) -> Box<dyn Tap> {
        Box::new(SpoolTap {
            spool: self.clone(),
            last_error: None,
        })
    }

    /// Appends one event; a loss it causes (overflow) is logged as a `warning` event.
    pub fn append(&self, event: &Event) -> Result<(), MonitorError> {
        let losses = self.lock().append(event)?;
        self.inner.ready.notify_one();
        for loss in losses {
            // After the lock is released: this event comes back through the tap.
            tracing::warn!(
                target: "warning",
                epoch = loss.epoch,
                first_seq = loss.first,
                last_seq = loss.last,
                lost = loss.events,
                "log spool full or event too large: unshipped events dropped"
            );
        }
        Ok(())
    }

    /// The spool's counters.
    pub fn stats(&self) -> SpoolStats {
        self.lock().stats()
    }

    /// Writes buffered entries to the spool file.
    pub fn flush(&self) -> Result<(), MonitorError> {
        self.lock().flush()
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Spool> {
        self.inner.spool.lock()
    }

    /// Waits for an append (or returns at once if one happened since the last wait).
    pub(crate) async fn ready(&self) {
        self.inner.ready.notified().await;
    }

    /// Runs `f` on the spool on a blocking thread (it reads and deletes files).
    pub(crate) async fn with<R, F>(&self, f: F) -> Result<R, MonitorError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Spool) -> Result<R, MonitorError> + Send + 'static,
    {
        let spool = self.clone();
        tokio::task::spawn_blocking(move || f(&mut spool.lock()))
            .await
            .map_err(|e| MonitorError::Stream(format!("spool task: {e}")))?
    }
}

/// The log engine's tap into the spool.
struct SpoolTap {
    spool: SharedSpool,
    /// The last error printed, so a failing disk does not flood stderr (logging it would
    /// come back here).
    last_error: Option<String>,
}

impl Tap for SpoolTap {
    fn event(&mut self, event: &Event) {
        let result = self.spool.append(event);
        self.report(result);
    }

    fn flush(&mut self) {
        let result = self.spool.flush();
        self.report(result);
    }
}

impl SpoolTap {
    fn report(&mut self, result: Result<(), MonitorError>) {
        if let Err(e) = result {
            let msg = e.to_string();
            if self.last_error.as_deref() != Some(msg.as_str()) {
                eprintln!("fubar log spool: {msg}");
                self.last_error = Some(msg);
            }
        }
    }
}
