//! Group commit: one fsync covers every write made while the previous one ran or within a
//! short window before it.
//!
//! Writers bump `written` after each write that must become durable. A syncer thread waits
//! until `written` passes `durable`, waits the group window so that more writes can join, reads
//! `written`, syncs the journal once, and publishes that number as durable. A writer that needs
//! its data durable waits until the published number reaches the value it read after writing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use fjall::{Database, PersistMode};
use tokio::sync::watch;

/// How writes become durable (`store.sync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// Group commit: acknowledgements wait for the fsync that covers them.
    Group,
    /// No fsync on the write path: the OS writes data back when it likes; a power loss or a
    /// kernel crash may lose the last acknowledged messages (a `kill -9` does not).
    None,
}

#[derive(Debug)]
struct Shared {
    written: AtomicU64,
    /// How long each group commit's fsync took.
    fsync: crate::timing::DurationHistogram,
    stop: AtomicBool,
    wake: (Mutex<()>, Condvar),
}

/// The group-commit syncer of one database.
pub(crate) struct Durability {
    mode: SyncMode,
    shared: Arc<Shared>,
    durable: watch::Receiver<u64>,
    thread: Option<JoinHandle<()>>,
}

impl Durability {
    /// Starts the syncer thread (group mode) for `db`.
    pub(crate) fn start(db: Database, mode: SyncMode, window: Duration) -> Self {
        let shared = Arc::new(Shared {
            written: AtomicU64::new(0),
            fsync: crate::timing::DurationHistogram::default(),
            stop: AtomicBool::new(false),
            wake: (Mutex::new(()), Condvar::new()),
        });
        let (tx, durable) = watch::channel(0);
        let thread = (mode == SyncMode::Group).then(|| {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("fubar-store-sync".into())
                .spawn(move || run_syncer(&db, &shared, &tx, window))
                .expect("spawn the store's sync thread")
        });
        Self {
            mode,
            shared,
            durable,
            thread,
        }
    }

    /// Notes a write that must become durable; returns the ticket that covers it (0 when
    /// nothing needs waiting for).
    pub(crate) fn note_write(&self) -> u64 {
        if self.mode == SyncMode::None {
            return 0;
        }
        let ticket = self.shared.written.fetch_add(1, Ordering::SeqCst) + 1;
        let (lock, cv) = &self.shared.wake;
        let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
        cv.notify_one();
        ticket
    }

    /// A ticket covering every write noted so far.
    pub(crate) fn current_ticket(&self) -> u64 {
        match self.mode {
            SyncMode::None => 0,
            SyncMode::Group => self.shared.written.load(Ordering::SeqCst),
        }
    }

    /// How long the group commit's fsyncs took (none in `SyncMode::None`).
    pub(crate) fn fsync_times(&self) -> crate::timing::HistogramSnapshot {
        self.shared.fsync.snapshot()
    }

    /// A receiver of the highest durable ticket.
    pub(crate) fn watch(&self) -> watch::Receiver<u64> {
        self.durable.clone()
    }
}

impl std::fmt::Debug for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durability")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Drop for Durability {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        {
            let (lock, cv) = &self.shared.wake;
            let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
            cv.notify_one();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run_syncer(db: &Database, shared: &Shared, durable: &watch::Sender<u64>, window: Duration) {
    let (lock, cv) = &shared.wake;
    loop {
        {
            let mut guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
            while shared.written.load(Ordering::SeqCst) <= *durable.borrow()
                && !shared.stop.load(Ordering::SeqCst)
            {
                guard = cv.wait(guard).unwrap_or_else(PoisonError::into_inner);
            }
        }
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        if !window.is_zero() {
            std::thread::sleep(window);
        }
        let target = shared.written.load(Ordering::SeqCst);
        let started = std::time::Instant::now();
        match db.persist(PersistMode::SyncData) {
            Ok(()) => {
                shared.fsync.record(started.elapsed());
                durable.send_replace(target);
            }
            Err(e) => {
                // Acknowledgements keep waiting: better a stalled publisher than a lie.
                tracing::error!(target: "error", error = %e, "state fsync failed");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}
