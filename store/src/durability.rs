//! Group commit: one fsync covers every write made while the previous one ran or within a
//! short window before it.
//!
//! Writers bump `written` after each write that must become durable. A syncer thread waits
//! until `written` passes `durable`, waits the group window so that more writes can join, reads
//! `written`, syncs the journal once, and publishes that number as durable. A writer that needs
//! its data durable waits until the published number reaches the value it read after writing.
//!
//! A failed fsync is published too (`Durable::failed`): every ticket it would have covered
//! failed, and an acknowledgement waiting for one of them must be refused, never released.

use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
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

/// What became of the writes of the message path: the highest ticket made durable, and the
/// highest ticket covered by an fsync that failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Durable {
    /// Every ticket up to this one is on disk (unless `failed` covers it too).
    pub synced: u64,
    /// Every ticket up to this one may have been lost: an fsync covering it failed. The
    /// tickets of one failed group are not told apart from older ones, so a ticket made
    /// durable just before a failure may be reported failed as well: a publisher then sends
    /// again (a duplicate, which QoS 1 allows), but is never told a lost message is safe.
    pub failed: u64,
}

impl Durable {
    /// What became of `ticket`: `None` while its fsync is to come, `Some(Ok)` once it is
    /// durable, `Some(Err)` when the fsync covering it failed.
    pub fn outcome(&self, ticket: u64) -> Option<Result<(), DurabilityFailed>> {
        if ticket == 0 {
            Some(Ok(()))
        } else if ticket <= self.failed {
            Some(Err(DurabilityFailed))
        } else if ticket <= self.synced {
            Some(Ok(()))
        } else {
            None
        }
    }
}

/// The fsync that was to make a write durable failed: the write may be lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the state fsync covering this write failed")]
pub struct DurabilityFailed;

#[derive(Debug)]
struct Shared {
    written: AtomicU64,
    /// Writes of the message path noted since open (in every mode; `written` counts only
    /// those that need an fsync).
    writes: AtomicU64,
    /// Key and value bytes of those writes.
    written_bytes: AtomicU64,
    /// How long each group commit's fsync took.
    fsync: crate::timing::DurationHistogram,
    /// Group commit fsyncs that failed.
    fsync_failures: AtomicU64,
    stop: AtomicBool,
    wake: (Mutex<()>, Condvar),
    /// Tests make fsyncs fail with this (`Store::inject_failures`).
    #[cfg(any(test, feature = "fault-injection"))]
    fail_sync: AtomicBool,
}

/// The group-commit syncer of one database.
pub(crate) struct Durability {
    mode: SyncMode,
    shared: Arc<Shared>,
    durable: watch::Receiver<Durable>,
    thread: Option<JoinHandle<()>>,
}

impl Durability {
    /// Starts the syncer thread (group mode) for `db`.
    pub(crate) fn start(db: Database, mode: SyncMode, window: Duration) -> Self {
        let shared = Arc::new(Shared {
            written: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            written_bytes: AtomicU64::new(0),
            fsync: crate::timing::DurationHistogram::default(),
            fsync_failures: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            wake: (Mutex::new(()), Condvar::new()),
            #[cfg(any(test, feature = "fault-injection"))]
            fail_sync: AtomicBool::new(false),
        });
        let (tx, durable) = watch::channel(Durable::default());
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

    /// Notes a write of `bytes` (keys and values) that must become durable; returns the
    /// ticket that covers it (0 when nothing needs waiting for).
    pub(crate) fn note_write(&self, bytes: usize) -> u64 {
        self.shared.writes.fetch_add(1, Ordering::Relaxed);
        self.shared
            .written_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
        if self.mode == SyncMode::None {
            return 0;
        }
        let ticket = self.shared.written.fetch_add(1, Ordering::SeqCst) + 1;
        let (lock, cv) = &self.shared.wake;
        let _guard = lock.lock();
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

    /// Writes of the message path since open, their bytes, and group commit fsyncs that
    /// failed.
    pub(crate) fn counts(&self) -> (u64, u64, u64) {
        (
            self.shared.writes.load(Ordering::Relaxed),
            self.shared.written_bytes.load(Ordering::Relaxed),
            self.shared.fsync_failures.load(Ordering::Relaxed),
        )
    }

    /// A receiver of what became of the tickets.
    pub(crate) fn watch(&self) -> watch::Receiver<Durable> {
        self.durable.clone()
    }

    /// Makes the fsyncs from now on fail (`on`), or succeed again.
    #[cfg(any(test, feature = "fault-injection"))]
    pub(crate) fn fail_syncs(&self, on: bool) {
        self.shared.fail_sync.store(on, Ordering::SeqCst);
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
            let _guard = lock.lock();
            cv.notify_one();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The group commit: fsyncs start at most once per `window`, so that writes made within it of
/// each other share one. A write that finds the last fsync started more than `window` ago (an
/// idle store) is synced at once: waiting would add `window` to its acknowledgement and group
/// nothing, as nothing else was being written.
fn run_syncer(db: &Database, shared: &Shared, durable: &watch::Sender<Durable>, window: Duration) {
    let (lock, cv) = &shared.wake;
    let mut last_start: Option<std::time::Instant> = None;
    loop {
        {
            let mut guard = lock.lock();
            while shared.written.load(Ordering::SeqCst) <= resolved(&durable.borrow())
                && !shared.stop.load(Ordering::SeqCst)
            {
                cv.wait(&mut guard);
            }
        }
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        if let Some(last) = last_start {
            let due = last + window;
            let now = std::time::Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let target = shared.written.load(Ordering::SeqCst);
        let started = std::time::Instant::now();
        last_start = Some(started);
        match sync(db, shared) {
            Ok(()) => {
                shared.fsync.record(started.elapsed());
                durable.send_modify(|d| d.synced = d.synced.max(target));
            }
            Err(e) => {
                shared.fsync_failures.fetch_add(1, Ordering::Relaxed);
                // Every write this fsync was to cover may be lost: their acknowledgements are
                // refused, never released (better a publisher that sends again than a lie).
                tracing::error!(target: "error", error = %e, through_ticket = target,
                    "state fsync failed: the writes it covered are not acknowledged");
                durable.send_modify(|d| d.failed = d.failed.max(target));
            }
        }
    }
}

/// The highest ticket whose fate is known (durable or failed).
fn resolved(d: &Durable) -> u64 {
    d.synced.max(d.failed)
}

fn sync(db: &Database, shared: &Shared) -> Result<(), fjall::Error> {
    #[cfg(any(test, feature = "fault-injection"))]
    if shared.fail_sync.load(Ordering::SeqCst) {
        return Err(fjall::Error::Io(std::io::Error::other(
            "injected fsync failure",
        )));
    }
    let _ = shared;
    db.persist(PersistMode::SyncData)
}
