//! A node's log engine: classed `tracing` events recorded in rolling binary segments.
//!
//! What it is: the [`EventLayer`] turns `tracing` events whose target is a log class
//! (`access`, `packet`, `protocol`, `resource`, `debug`, `info`, `warning`, `error`, `trace`)
//! into [`Event`]s and hands them, without ever blocking, through a bounded channel to a writer
//! thread. The writer appends each open class's events to rolling segment files under
//! `<dir>/<class>/` (size-capped, at most N files, torn-tail safe) and copies them to the
//! class's [`Redirect`]: nowhere, stdout, or daily text files `<dir>/<prefix>_YYYY-MM-DD.log.N`
//! named by the UTC date of each event's own timestamp. The [`LogHandle`] opens, closes and
//! redirects classes at run time, lists them and dumps them to text; [`dump_dir`] reads the
//! segments directly, node running or not.
//!
//! Every event gets the next number of one per-node counter when the writer records it, so
//! numbers follow the order of the segments and of the tap; an event dropped because the
//! channel was full is counted and reported by a `warning` event once the channel drains. Closed classes are disabled for
//! the whole `tracing` subscriber, so other layers (a `fmt` layer, say) do not see them either.
//!
//! For shipping, the classes chosen with [`LogHandle::ship`] are taken by the layer even when
//! they are closed here, and the writer hands each of their events, numbered, to a [`Tap`]
//! (the node's shipper spools them). On the monitor, [`LogHandle::write_events`] writes other
//! nodes' events as they are, through the same segments and redirects.
//!
//! What it is not: it does not talk to the monitor, index or search them, parse
//! settings or commands, or print non-class `tracing` events (other layers do that).

mod daily;
mod dump;
mod engine;
mod error;
mod layer;
mod packet;
mod private;
mod redirect;
mod segment;
mod shared;
mod text;
mod writer;

#[cfg(test)]
mod segment_tests;
#[cfg(test)]
mod test_util;
#[cfg(test)]
mod tests;

use parking_lot::Mutex;
use std::fs;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub use fubar_logproto::{Class, Event};

pub use daily::daily_path;
pub use dump::{class_dir, dump_dir, dump_file_name, high_water_marks, DumpReport};
pub use engine::{ClassStatus, Tap};
pub use error::LogError;
pub use layer::{class_of_target, EventLayer};
pub use packet::{PacketBody, PacketRecord, PacketSink};
pub use private::{create_private_dir, open_private_append, private_file};
pub use redirect::{Redirect, MAX_PREFIX_LEN};
pub use segment::{decode_records, encode_record, record_body, MAX_RECORD_LEN, RECORD_HEADER};
pub use text::format_line;

use dump::{dump_files, has_segments};
use engine::Engine;
use shared::Shared;
use writer::{lock, Msg};

/// How the log engine starts.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// The node's name, `name@host`.
    pub node: String,
    /// The node's boot epoch (µs since the Unix epoch at start).
    pub epoch: u64,
    /// The log dir: segments under `<dir>/<class>/`, daily files in `<dir>`.
    pub dir: PathBuf,
    /// Largest segment file (and daily file before `.N` moves on), in bytes.
    pub max_bytes: u64,
    /// Segment files kept per class.
    pub max_files: usize,
    /// Classes open at start, with their redirects.
    pub classes: Vec<(Class, Redirect)>,
    /// Capacity of the bounded channel between `tracing` and the writer thread.
    pub channel_capacity: usize,
    /// How often the writer flushes buffered writes.
    pub flush_interval: Duration,
    /// Events the writer writes per second at most (0: no limit). Above it, events are
    /// dropped and counted rather than taking more of the machine from the broker.
    pub max_events_per_sec: u64,
}

impl LogConfig {
    fn check(&self) -> Result<(), LogError> {
        let bad = if self.max_bytes == 0 {
            "max_bytes must be at least 1"
        } else if self.max_files == 0 {
            "max_files must be at least 1"
        } else if self.channel_capacity == 0 {
            "channel_capacity must be at least 1"
        } else if self.flush_interval.is_zero() {
            "flush_interval must be more than zero"
        } else {
            return Ok(());
        };
        Err(LogError::BadConfig(bad.to_owned()))
    }
}

/// Opens (and repairs) the configured classes' segments and spawns the writer thread.
pub fn start(config: LogConfig) -> Result<(LogHandle, EventLayer), LogError> {
    let stdout: Box<dyn io::Write + Send> = Box::new(BufWriter::new(io::stdout()));
    start_with_stdout(config, stdout)
}

/// `start`, with the `Stdout` redirect's lines going to `stdout` (tests capture them).
fn start_with_stdout(
    config: LogConfig,
    stdout: Box<dyn io::Write + Send>,
) -> Result<(LogHandle, EventLayer), LogError> {
    config.check()?;
    create_private_dir(&config.dir)
        .map_err(|e| LogError::io("create directory", &config.dir, e))?;
    let shared = Arc::new(Shared::new(
        config.node.clone(),
        config.epoch,
        config.channel_capacity,
    ));
    let mut engine = Engine::new(
        Arc::clone(&shared),
        &config.dir,
        config.max_bytes,
        config.max_files,
        stdout,
    );
    for (class, redirect) in &config.classes {
        engine.set_redirect(*class, redirect.clone())?;
    }
    let engine = Arc::new(Mutex::new(engine));
    let (tx, rx) = sync_channel(config.channel_capacity);
    let thread_engine = Arc::clone(&engine);
    let thread_shared = Arc::clone(&shared);
    let interval = config.flush_interval;
    let budget = config.max_events_per_sec;
    let thread = std::thread::Builder::new()
        .name("fubar-log-writer".into())
        .spawn(move || writer::run(&thread_engine, &thread_shared, &rx, interval, budget))
        .map_err(|e| LogError::io("spawn the writer thread for", &config.dir, e))?;
    let handle = LogHandle {
        inner: Arc::new(Inner {
            shared: Arc::clone(&shared),
            engine,
            tx: tx.clone(),
            thread: Mutex::new(Some(thread)),
            stopped: AtomicBool::new(false),
            node: config.node,
        }),
    };
    Ok((handle, EventLayer { shared, tx }))
}

/// Runtime control of the log engine; cheap to clone.
#[derive(Clone)]
pub struct LogHandle {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    engine: Arc<Mutex<Engine>>,
    tx: SyncSender<Msg>,
    thread: Mutex<Option<JoinHandle<()>>>,
    stopped: AtomicBool,
    node: String,
}

impl std::fmt::Debug for LogHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogHandle")
            .field("node", &self.inner.node)
            .finish_non_exhaustive()
    }
}

impl LogHandle {
    fn check_running(&self) -> Result<(), LogError> {
        if self.inner.stopped.load(Ordering::Relaxed) {
            Err(LogError::Stopped)
        } else {
            Ok(())
        }
    }

    /// Where connections send their packet records (the fast path of the `protocol` and
    /// `trace` classes).
    pub fn packet_sink(&self) -> PacketSink {
        PacketSink {
            shared: Arc::clone(&self.inner.shared),
            tx: self.inner.tx.clone(),
        }
    }

    /// Starts recording a class (opening and repairing its segments if needed).
    pub fn open(&self, class: Class) -> Result<(), LogError> {
        self.check_running()?;
        let mut eng = lock(&self.inner.engine);
        let result = eng.open(class);
        eng.write_pending();
        result
    }

    /// Stops recording a class; its files stay. Events accepted before are still written.
    pub fn close(&self, class: Class) -> Result<(), LogError> {
        self.check_running()?;
        self.inner.shared.set_open(class, false);
        self.flush();
        lock(&self.inner.engine).close(class)
    }

    /// Sets a class's redirect (opening it), effective for the next event.
    pub fn out(&self, class: Class, redirect: Redirect) -> Result<(), LogError> {
        self.check_running()?;
        // Events accepted before this call go where the old redirect said.
        self.flush();
        let mut eng = lock(&self.inner.engine);
        let result = eng.set_redirect(class, redirect);
        eng.write_pending();
        result
    }

    /// Every class: open or not, redirect, files, bytes and counters.
    /// Every event taken before the call is counted first (written or dropped): the writer
    /// catches up, so the counts add up to the events the node produced.
    pub fn list(&self) -> Vec<ClassStatus> {
        self.flush();
        lock(&self.inner.engine).status()
    }

    /// Writes a class's events as text lines to `path`, oldest first (flushing first).
    pub fn dump(&self, class: Class, path: &Path) -> Result<DumpReport, LogError> {
        self.flush();
        let sources = lock(&self.inner.engine).dump_sources(class)?;
        let file = private_file()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| LogError::io("create", path, e))?;
        dump_files(&sources, &mut BufWriter::new(file), path)
    }

    /// Writes a class's events as text lines to `out`, oldest first (flushing first); `None`
    /// when the class has no segment files. `out` names the destination in errors.
    pub fn dump_to(
        &self,
        class: Class,
        out: &mut dyn io::Write,
        out_name: &Path,
    ) -> Result<Option<DumpReport>, LogError> {
        self.flush();
        let sources = lock(&self.inner.engine).dump_sources(class)?;
        if sources.is_empty() {
            return Ok(None);
        }
        dump_files(&sources, out, out_name).map(Some)
    }

    /// Dumps every class that has segments to `<dir>/<node>-YYYYMMDDTHHMMSS-<class>.log`.
    pub fn dump_all(&self, dir: &Path) -> Result<Vec<(Class, PathBuf, DumpReport)>, LogError> {
        self.flush();
        fs::create_dir_all(dir).map_err(|e| LogError::io("create directory", dir, e))?;
        let at = chrono::Utc::now();
        let mut done = Vec::new();
        for class in Class::ALL {
            let sources = lock(&self.inner.engine).dump_sources(class)?;
            if sources.is_empty() {
                continue;
            }
            let path = dir.join(dump_file_name(&self.inner.node, at, class));
            let file = private_file()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .map_err(|e| LogError::io("create", &path, e))?;
            let report = dump_files(&sources, &mut BufWriter::new(file), &path)?;
            done.push((class, path, report));
        }
        Ok(done)
    }

    /// Returns once everything accepted so far is written (segments and redirects).
    pub fn flush(&self) {
        let (reply, done) = sync_channel(1);
        if self.inner.tx.send(Msg::Flush(reply)).is_ok() {
            // An error means the writer is gone: nothing more will be written anyway.
            let _ = done.recv();
        }
    }

    /// Drains the channel, flushes, and stops the writer thread; idempotent.
    pub fn shutdown(&self) {
        let thread = self.inner.thread.lock().take();
        let Some(thread) = thread else {
            return;
        };
        self.inner.stopped.store(true, Ordering::Relaxed);
        self.inner.shared.close_all();
        let _ = self.inner.tx.send(Msg::Shutdown);
        let _ = thread.join();
    }

    /// Writes other nodes' events as they are (node, epoch, sequence and time kept) to their
    /// classes' segments (open here or not) and redirects, and flushes the segments to the OS
    /// before returning: on `Ok`, every event is in a segment. On `Err`, some may be.
    ///
    /// For the monitor, which acknowledges a batch once this returns. An event too large for
    /// a segment record is reported on stderr and skipped, not refused.
    pub fn write_events(&self, events: &[Event]) -> Result<(), LogError> {
        self.check_running()?;
        let mut eng = lock(&self.inner.engine);
        let mut classes: Vec<Class> = Vec::new();
        let mut result = Ok(());
        for event in events {
            if !classes.contains(&event.class) {
                classes.push(event.class);
            }
            result = eng.write_foreign(event);
            if result.is_err() {
                break;
            }
        }
        let flushed = eng.flush_classes(&classes);
        eng.write_pending();
        result.and(flushed)
    }

    /// Ships a class or stops shipping it: its events go to the tap (numbered like the
    /// others), whether or not the class is open here. Decided when the writer records an
    /// event: events already in the channel follow the new choice.
    pub fn ship(&self, class: Class, on: bool) {
        self.inner.shared.set_shipped(class, on);
    }

    /// The classes shipped now.
    pub fn shipped(&self) -> Vec<Class> {
        Class::ALL
            .into_iter()
            .filter(|c| self.inner.shared.is_shipped(*c))
            .collect()
    }

    /// Sets the tap that receives the shipped classes' events (`None` removes it; events of
    /// shipped classes are then passed over). Returns the previous tap.
    pub fn set_tap(&self, tap: Option<Box<dyn Tap>>) -> Option<Box<dyn Tap>> {
        lock(&self.inner.engine).set_tap(tap)
    }

    /// Events dropped because the channel was full, since start.
    pub fn dropped(&self) -> u64 {
        self.inner.shared.dropped_total()
    }
}

/// Whether a class has segment files under a log dir (what `dump_all` would dump).
pub fn has_class_segments(log_dir: &Path, class: Class) -> Result<bool, LogError> {
    has_segments(log_dir, class)
}

#[cfg(test)]
mod ship_tests;
