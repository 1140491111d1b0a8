//! The writer's state: per-class segment logs and redirects, and the "write one event" step.
//!
//! Single-owner and synchronous: the writer thread drives it, the handle locks it briefly for
//! control commands, and tests call it directly with constructed events.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fubar_logproto::{Class, Event};

use crate::daily::DailyWriter;
use crate::dump::class_dir;
use crate::packet::PacketRecord;
use crate::segment::{list_segments, Recovery, SegmentLog};
use crate::shared::Shared;
use crate::text::{format_line, push_line, Written};
use crate::{LogError, Redirect};

/// One class as `list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassStatus {
    /// The class.
    pub class: Class,
    /// Whether its events are being recorded.
    pub open: bool,
    /// Where its events go besides the segments.
    pub redirect: Redirect,
    /// Segment files on disk.
    pub files: usize,
    /// Bytes in them.
    pub bytes: u64,
    /// Events written since start.
    pub events: u64,
    /// Events deleted with old segment files since start.
    pub overwritten: u64,
    /// Events dropped because the channel was full, since start.
    pub dropped: u64,
}

/// Per-class state.
#[derive(Debug, Default)]
struct ClassState {
    open: bool,
    redirect: Redirect,
    log: Option<SegmentLog>,
    events: u64,
}

/// The log engine proper (no thread, no channel).
pub(crate) struct Engine {
    shared: Arc<Shared>,
    dir: PathBuf,
    max_bytes: u64,
    max_files: usize,
    classes: [ClassState; Class::ALL.len()],
    dailies: BTreeMap<String, DailyWriter>,
    stdout: Box<dyn Write + Send>,
    /// Warnings made by the engine itself, written at the next chance.
    pending: Vec<Event>,
    /// The last I/O error printed to stderr, so a failing disk does not flood it.
    last_error: Option<String>,
    /// The sequence number of this node's next event.
    next_seq: u64,
    /// Where the events of shipped classes go, besides the segments.
    tap: Option<Box<dyn Tap>>,
    /// Reused for the formatted values of packet records.
    values: String,
}

/// Receives this node's events of the shipped classes, in sequence order, on the log writer
/// thread (so it must not block for long: the writer's channel fills and the layer drops).
pub trait Tap: Send {
    /// One event of a shipped class, with its sequence number.
    fn event(&mut self, event: &Event);

    /// The writer flushed its own files: the tap may flush its buffers too.
    fn flush(&mut self) {}
}

impl Engine {
    /// An engine with every class closed; `stdout` receives the `Stdout` redirects' lines.
    pub(crate) fn new(
        shared: Arc<Shared>,
        dir: &Path,
        max_bytes: u64,
        max_files: usize,
        stdout: Box<dyn Write + Send>,
    ) -> Self {
        Self {
            shared,
            dir: dir.to_path_buf(),
            max_bytes,
            max_files,
            classes: Default::default(),
            dailies: BTreeMap::new(),
            stdout,
            pending: Vec::new(),
            last_error: None,
            next_seq: 1,
            tap: None,
            values: String::with_capacity(128),
        }
    }

    /// Sets (or removes) the tap; returns the previous one.
    pub(crate) fn set_tap(&mut self, tap: Option<Box<dyn Tap>>) -> Option<Box<dyn Tap>> {
        std::mem::replace(&mut self.tap, tap)
    }

    /// Records one of this node's own events: gives it the next sequence number, writes it if
    /// its class is open and hands it to the tap if the class is shipped. An event of a class
    /// that is neither (closed since the layer took it) is dropped without using a number.
    pub(crate) fn record(&mut self, mut event: Event) {
        let shipped = self.shared.is_shipped(event.class);
        if !self.state(event.class).open && !shipped {
            return;
        }
        event.seq = self.next_seq;
        self.next_seq += 1;
        self.write_event(&event);
        if shipped {
            if let Some(tap) = &mut self.tap {
                tap.event(&event);
            }
        }
    }

    /// Records a packet record's event (as `record` does an event) without building it: its
    /// values are formatted into a reused buffer and the segment and text are written from a
    /// borrowed view. A shipped class takes the owned event the tap needs.
    pub(crate) fn record_packet(&mut self, record: PacketRecord) {
        let shared = Arc::clone(&self.shared);
        if shared.is_shipped(record.class) {
            self.record(record.into_event(&shared.node, shared.epoch));
            return;
        }
        if !self.state(record.class).open {
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut values = std::mem::take(&mut self.values);
        self.write_event(&record.view(&shared.node, shared.epoch, seq, &mut values));
        self.values = values;
    }

    /// Writes another node's event as it is (its node, epoch, sequence and time kept), whether
    /// or not its class is open here; returns the segment append's error, so that a caller
    /// acknowledging the event knows it is not written. Redirect errors are only reported.
    pub(crate) fn write_foreign(&mut self, event: &Event) -> Result<(), LogError> {
        let (dir, max_bytes, max_files) = (
            class_dir(&self.dir, event.class),
            self.max_bytes,
            self.max_files,
        );
        let st = self.state(event.class);
        if st.log.is_none() {
            let (log, recovery) = SegmentLog::open(&dir, max_bytes, max_files)?;
            st.log = Some(log);
            if let Some(rec) = recovery {
                self.recovered(event.class, &rec);
            }
        }
        let st = self.state(event.class);
        let appended = match &mut st.log {
            Some(log) => log.append(event),
            None => Ok(()),
        };
        match appended {
            Ok(()) => st.events += 1,
            // Too large or not encodable: it can never be written, so refusing it would make
            // the sender resend it forever; it is reported and skipped instead.
            Err(e @ LogError::Event(_)) => {
                self.report(Err(e));
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        let redirected = self.redirect(event);
        self.report(redirected);
        Ok(())
    }

    /// Flushes the segments of `classes` to the OS, returning the first error.
    pub(crate) fn flush_classes(&mut self, classes: &[Class]) -> Result<(), LogError> {
        let mut first = Ok(());
        for class in classes {
            if let Some(log) = &mut self.state(*class).log {
                let r = log.flush();
                if first.is_ok() {
                    first = r;
                }
            }
        }
        first
    }

    fn state(&mut self, class: Class) -> &mut ClassState {
        // Class::index() is always below Class::ALL.len().
        let i = class.index().min(Class::ALL.len() - 1);
        &mut self.classes[i]
    }

    /// Opens a class: its segment log is opened (and repaired) if it was not yet.
    pub(crate) fn open(&mut self, class: Class) -> Result<(), LogError> {
        let (dir, max_bytes, max_files) =
            (class_dir(&self.dir, class), self.max_bytes, self.max_files);
        let st = self.state(class);
        let mut recovery = None;
        if st.log.is_none() {
            let (log, rec) = SegmentLog::open(&dir, max_bytes, max_files)?;
            st.log = Some(log);
            recovery = rec;
        }
        st.open = true;
        self.shared.set_open(class, true);
        if let Some(rec) = recovery {
            self.recovered(class, &rec);
        }
        Ok(())
    }

    /// Closes a class: its events are no longer recorded; its files stay.
    pub(crate) fn close(&mut self, class: Class) -> Result<(), LogError> {
        self.shared.set_open(class, false);
        let st = self.state(class);
        st.open = false;
        match &mut st.log {
            Some(log) => log.close_file(),
            None => Ok(()),
        }
    }

    /// Sets a class's redirect, opening the class.
    pub(crate) fn set_redirect(
        &mut self,
        class: Class,
        redirect: Redirect,
    ) -> Result<(), LogError> {
        if let Redirect::Prefix(p) = &redirect {
            // Re-check: a Redirect can be built without parsing.
            Redirect::prefix(p)?;
        }
        self.open(class)?;
        let (dir, max_bytes) = (self.dir.clone(), self.max_bytes);
        if let Redirect::Prefix(p) = &redirect {
            self.dailies
                .entry(p.clone())
                .or_insert_with(|| DailyWriter::new(&dir, p, max_bytes));
        }
        self.state(class).redirect = redirect;
        self.drop_unused_dailies();
        Ok(())
    }

    /// Flushes and forgets daily writers no class points at any more.
    fn drop_unused_dailies(&mut self) {
        let used: Vec<String> = self
            .classes
            .iter()
            .filter_map(|c| match &c.redirect {
                Redirect::Prefix(p) => Some(p.clone()),
                _ => None,
            })
            .collect();
        let unused: Vec<String> = self
            .dailies
            .keys()
            .filter(|p| !used.contains(p))
            .cloned()
            .collect();
        for p in unused {
            if let Some(mut w) = self.dailies.remove(&p) {
                let r = w.flush();
                self.report(r);
            }
        }
    }

    /// Writes one event as it is to its class's segments and redirect; closed classes ignore
    /// it.
    pub(crate) fn write_event(&mut self, event: &impl Written) {
        let st = self.state(event.class());
        if !st.open {
            return;
        }
        let appended = match &mut st.log {
            Some(log) => log.append(event),
            None => Ok(()),
        };
        if appended.is_ok() {
            st.events += 1;
        }
        self.report(appended);
        let redirected = self.redirect(event);
        self.report(redirected);
    }

    /// Copies an event to its class's redirect.
    fn redirect(&mut self, event: &impl Written) -> Result<(), LogError> {
        // Taken for the write and put back: no copy of a prefix per event.
        let redirect = std::mem::take(&mut self.state(event.class()).redirect);
        let redirected = match &redirect {
            Redirect::None => Ok(()),
            Redirect::Stdout => {
                let mut line = String::with_capacity(160);
                push_line(&mut line, event);
                line.push('\n');
                self.stdout
                    .write_all(line.as_bytes())
                    .map_err(|e| LogError::io("write", Path::new("stdout"), e))
            }
            Redirect::Prefix(p) => match self.dailies.get_mut(p) {
                Some(w) => w.write(event),
                None => Ok(()),
            },
        };
        self.state(event.class()).redirect = redirect;
        redirected
    }

    /// Writes the engine's own pending warnings (recoveries, drop reports).
    pub(crate) fn write_pending(&mut self) {
        for event in std::mem::take(&mut self.pending) {
            if self.state(Class::Warning).open || self.shared.is_shipped(Class::Warning) {
                self.record(event);
            } else {
                // Never lost silently: the warning class is closed, so say it on stderr.
                eprintln!("{}", format_line(&event));
            }
        }
    }

    /// Queues a warning event of the engine's own.
    fn warn(&mut self, message: &str, fields: Vec<(String, String)>) {
        let fields = fields.into_iter().map(|(k, v)| (k.into(), v)).collect();
        let event = self
            .shared
            .event(Class::Warning, message.to_owned(), fields);
        self.pending.push(event);
    }

    fn recovered(&mut self, class: Class, rec: &Recovery) {
        self.warn(
            "log segment tail was torn or corrupt and was truncated",
            vec![
                ("class".into(), class.name().into()),
                ("path".into(), rec.path.display().to_string()),
                ("skipped_bytes".into(), rec.skipped.to_string()),
                ("kept_bytes".into(), rec.kept.to_string()),
            ],
        );
    }

    /// Writes a warning with the drops not yet reported, if any (the channel has drained).
    pub(crate) fn report_drops(&mut self) {
        let drops = self.shared.take_unreported();
        if drops.is_empty() {
            return;
        }
        let total: u64 = drops.iter().map(|(_, n)| n).sum();
        let mut fields: Vec<(String, String)> = drops
            .into_iter()
            .map(|(c, n)| (c.name().to_owned(), n.to_string()))
            .collect();
        fields.push(("total".into(), total.to_string()));
        self.warn("log events dropped: the log channel was full", fields);
        self.write_pending();
    }

    /// Writes every buffer out: segments, daily files and stdout.
    pub(crate) fn flush_all(&mut self) {
        self.write_pending();
        let mut results = Vec::new();
        for st in &mut self.classes {
            if let Some(log) = &mut st.log {
                results.push(log.flush());
            }
        }
        for w in self.dailies.values_mut() {
            results.push(w.flush());
        }
        results.push(self.flush_stdout_inner());
        if let Some(tap) = &mut self.tap {
            tap.flush();
        }
        for r in results {
            self.report(r);
        }
    }

    /// Flushes stdout only (after each drained batch, so a terminal follows closely).
    pub(crate) fn flush_stdout(&mut self) {
        let r = self.flush_stdout_inner();
        self.report(r);
    }

    fn flush_stdout_inner(&mut self) -> Result<(), LogError> {
        self.stdout
            .flush()
            .map_err(|e| LogError::io("write", Path::new("stdout"), e))
    }

    /// Prints a write error to stderr, once per distinct message (logging it could loop).
    fn report(&mut self, result: Result<(), LogError>) {
        if let Err(e) = result {
            let msg = e.to_string();
            if self.last_error.as_deref() != Some(msg.as_str()) {
                eprintln!("fubar-logs: {msg}");
                self.last_error = Some(msg);
            }
        }
    }

    /// The files a reader of `class` should read, each up to its flushed size.
    pub(crate) fn dump_sources(
        &mut self,
        class: Class,
    ) -> Result<Vec<(PathBuf, Option<u64>)>, LogError> {
        let dir = class_dir(&self.dir, class);
        match &mut self.state(class).log {
            Some(log) => {
                log.flush()?;
                Ok(log
                    .snapshot()
                    .into_iter()
                    .map(|(p, n)| (p, Some(n)))
                    .collect())
            }
            None => Ok(list_segments(&dir)?
                .into_iter()
                .map(|(_, p)| (p, None))
                .collect()),
        }
    }

    /// Every class's status.
    pub(crate) fn status(&self) -> Vec<ClassStatus> {
        Class::ALL
            .into_iter()
            .zip(&self.classes)
            .map(|(class, st)| {
                let (files, bytes, overwritten) = match &st.log {
                    Some(log) => (log.file_count(), log.bytes(), log.overwritten()),
                    None => disk_usage(&class_dir(&self.dir, class)),
                };
                ClassStatus {
                    class,
                    open: st.open,
                    redirect: st.redirect.clone(),
                    files,
                    bytes,
                    events: st.events,
                    overwritten,
                    dropped: self.shared.dropped(class),
                }
            })
            .collect()
    }
}

/// Files and bytes of a class never opened in this run (read from the directory).
fn disk_usage(dir: &Path) -> (usize, u64, u64) {
    let files = list_segments(dir).unwrap_or_default();
    let bytes = files
        .iter()
        .filter_map(|(_, p)| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    (files.len(), bytes, 0)
}
