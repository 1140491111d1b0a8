//! The node's bounded on-disk spool: shipped events wait here until the monitor acknowledges
//! them, across reconnections and restarts.
//!
//! Files `<dir>/<NNNNNNNNNNNN>.spool` hold records `u32 length, u32 crc32, postcard (from_seq,
//! Event)` where `from_seq..=event.seq` is the range the entry accounts for (the numbers
//! before it were not shipped). A small `state` file keeps the acknowledged position and the
//! losses not yet reported to the monitor. Past `max_bytes` the oldest file is deleted; its
//! unacknowledged entries become a [`Loss`] (count and range) that is returned to the caller
//! (to log a `warning`) and sent to the monitor in the next batch of that epoch.
//!
//! Sans-IO apart from its files: no clock, no socket. The shipper shares it behind a mutex.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write as _};
use std::path::PathBuf;

use fubar_logproto::link::{Batch, Lost};
use fubar_logproto::Event;
use serde::{Deserialize, Serialize};

use super::spool_file::{encode, file_path, list, parse, read_from, Entry, HEADER};
use crate::config::{DEFAULT_SPOOL_BYTES, DEFAULT_SPOOL_FILES, MAX_LOST_RANGES};
use crate::MonitorError;

pub use super::spool_file::MAX_SPOOL_ENTRY;

const STATE: &str = "state";
/// Losses kept for reporting; beyond it the oldest report is forgotten (still counted).
const MAX_LOSSES: usize = MAX_LOST_RANGES;

/// Where the spool lives and how big it may grow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolConfig {
    /// Its directory (created if missing).
    pub dir: PathBuf,
    /// Bytes on disk at most (setting, default 256 MiB).
    pub max_bytes: u64,
    /// Files it is cut into: overflow drops one file, the oldest.
    pub files: u64,
}

impl SpoolConfig {
    /// The defaults, in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            max_bytes: DEFAULT_SPOOL_BYTES,
            files: DEFAULT_SPOOL_FILES,
        }
    }
}

/// Events dropped from the spool before the monitor had them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Loss {
    /// Their boot epoch.
    pub epoch: u64,
    /// First number of the range they accounted for.
    pub first: u64,
    /// Last number (inclusive).
    pub last: u64,
    /// Events dropped in it.
    pub events: u64,
}

/// A position in the spool: file number and byte offset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Pos {
    file: u64,
    offset: u64,
}

/// What survives a restart besides the files.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    acked: Pos,
    losses: Vec<Loss>,
    last: Option<(u64, u64)>,
}

#[derive(Debug)]
struct SpoolFile {
    number: u64,
    bytes: u64,
}

/// A batch sent and not yet acknowledged.
#[derive(Debug)]
struct Sent {
    epoch: u64,
    to_seq: u64,
    end: Pos,
}

/// Counters of a spool since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Events appended.
    pub appended: u64,
    /// Events dropped (overflow, or too large to ship).
    pub lost: u64,
    /// Loss reports forgotten because too many were pending.
    pub forgotten_losses: u64,
    /// Bytes on disk now.
    pub bytes: u64,
    /// Batches sent and not acknowledged now.
    pub in_flight: usize,
    /// Bytes on disk the monitor has not acknowledged yet: what shipping is behind by.
    pub unacked_bytes: u64,
    /// The highest sequence number the monitor acknowledged (of any epoch).
    pub acked_upto: u64,
}

/// The spool. See the module docs.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    file_bytes: u64,
    files: VecDeque<SpoolFile>,
    out: Option<BufWriter<File>>,
    /// Epoch and number of the last entry appended (or dropped as too large).
    last: Option<(u64, u64)>,
    acked: Pos,
    cursor: Pos,
    sent: VecDeque<Sent>,
    /// Losses to report, and whether the current link has been told.
    losses: Vec<(Loss, bool)>,
    stats: SpoolStats,
    scratch: Vec<u8>,
}

impl Spool {
    /// Opens (creating) the spool: its newest file's torn tail is cut, the state read back.
    pub fn open(config: &SpoolConfig) -> Result<Self, MonitorError> {
        let dir = &config.dir;
        fubar_logs::create_private_dir(dir)
            .map_err(|e| MonitorError::io("create directory", dir, e))?;
        let mut files = VecDeque::new();
        for (number, path) in list(dir)? {
            let bytes = fs::metadata(&path)
                .map_err(|e| MonitorError::io("read", &path, e))?
                .len();
            files.push_back(SpoolFile { number, bytes });
        }
        let state: State = fs::read(dir.join(STATE))
            .ok()
            .and_then(|b| postcard::from_bytes(&b).ok())
            .unwrap_or_default();
        let mut spool = Self {
            dir: dir.clone(),
            max_bytes: config.max_bytes.max(1),
            file_bytes: (config.max_bytes / config.files.max(1)).max(1),
            files,
            out: None,
            last: state.last,
            acked: state.acked,
            cursor: Pos::default(),
            sent: VecDeque::new(),
            losses: state.losses.into_iter().map(|l| (l, false)).collect(),
            stats: SpoolStats::default(),
            scratch: Vec::new(),
        };
        spool.repair_tail()?;
        spool.clamp_positions();
        spool.cursor = spool.acked;
        Ok(spool)
    }

    /// Cuts a torn tail off the newest file and learns the last entry from it.
    fn repair_tail(&mut self) -> Result<(), MonitorError> {
        let Some(f) = self.files.back_mut() else {
            return Ok(());
        };
        let path = file_path(&self.dir, f.number);
        let bytes = fs::read(&path).map_err(|e| MonitorError::io("read", &path, e))?;
        let mut pos = 0;
        let mut last = None;
        while let Some((entry, next)) = parse(&bytes, pos) {
            last = Some((entry.event.epoch, entry.event.seq));
            pos = next;
        }
        if pos < bytes.len() {
            let file = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| MonitorError::io("open", &path, e))?;
            file.set_len(pos as u64)
                .map_err(|e| MonitorError::io("truncate", &path, e))?;
            f.bytes = pos as u64;
        }
        if last.is_some() {
            self.last = last;
        }
        Ok(())
    }

    /// Keeps the acknowledged position inside the files that exist.
    fn clamp_positions(&mut self) {
        let Some(head) = self.files.front() else {
            self.acked = Pos::default();
            return;
        };
        if self.acked.file < head.number {
            self.acked = Pos {
                file: head.number,
                offset: 0,
            };
        }
        if self.cursor < self.acked {
            self.cursor = self.acked;
        }
    }

    /// Appends one event; returns the losses this caused (to be logged as warnings).
    pub fn append(&mut self, event: &Event) -> Result<Vec<Loss>, MonitorError> {
        let from_seq = match self.last {
            Some((epoch, seq)) if epoch == event.epoch && event.seq > seq => seq + 1,
            // A number already spooled: it cannot be shipped in order (the writer numbers
            // events in order, so this is a repeat); passed over.
            Some((epoch, _)) if epoch == event.epoch => return Ok(Vec::new()),
            _ => 1,
        };
        self.last = Some((event.epoch, event.seq));
        let mut rec = std::mem::take(&mut self.scratch);
        let encoded = encode(&mut rec, from_seq, event);
        let result = match encoded {
            Some(()) => self.append_record(&rec),
            None => {
                let loss = Loss {
                    epoch: event.epoch,
                    first: from_seq,
                    last: event.seq,
                    events: 1,
                };
                self.add_losses(&[loss])?;
                Ok(vec![loss])
            }
        };
        self.scratch = rec;
        result
    }

    fn append_record(&mut self, rec: &[u8]) -> Result<Vec<Loss>, MonitorError> {
        let need = rec.len() as u64;
        let roll = self
            .files
            .back()
            .is_none_or(|f| f.bytes > 0 && f.bytes + need > self.file_bytes);
        if roll {
            self.roll()?;
        }
        let mut losses = Vec::new();
        while self.bytes() + need > self.max_bytes && self.files.len() > 1 {
            losses.extend(self.drop_oldest()?);
        }
        if !losses.is_empty() {
            self.add_losses(&losses)?;
        }
        let number = self.files.back().map_or(0, |f| f.number);
        let path = file_path(&self.dir, number);
        let out = match &mut self.out {
            Some(out) => out,
            None => {
                let file = fubar_logs::open_private_append(&path)
                    .map_err(|e| MonitorError::io("open", &path, e))?;
                self.out.insert(BufWriter::with_capacity(64 << 10, file))
            }
        };
        if let Err(e) = out.write_all(rec) {
            // Never append after a partial record: the next append starts a new file.
            self.out = None;
            if let Some(f) = self.files.back_mut() {
                f.bytes = self.file_bytes;
            }
            return Err(MonitorError::io("write", &path, e));
        }
        if let Some(f) = self.files.back_mut() {
            f.bytes += need;
        }
        self.stats.appended += 1;
        Ok(losses)
    }

    fn roll(&mut self) -> Result<(), MonitorError> {
        self.flush()?;
        self.out = None;
        let number = self.files.back().map_or(1, |f| f.number + 1);
        self.files.push_back(SpoolFile { number, bytes: 0 });
        Ok(())
    }

    /// Deletes the oldest file; returns what of it was not acknowledged, per epoch.
    fn drop_oldest(&mut self) -> Result<Vec<Loss>, MonitorError> {
        let Some(old) = self.files.pop_front() else {
            return Ok(Vec::new());
        };
        let path = file_path(&self.dir, old.number);
        let start = match self.acked.file.cmp(&old.number) {
            std::cmp::Ordering::Less => Some(0),
            std::cmp::Ordering::Equal => Some(self.acked.offset),
            std::cmp::Ordering::Greater => None,
        };
        let mut losses: Vec<Loss> = Vec::new();
        if let Some(start) = start {
            let bytes = read_from(&path, start, u64::MAX)?;
            let mut pos = 0;
            while let Some((entry, next)) = parse(&bytes, pos) {
                pos = next;
                let (epoch, seq) = (entry.event.epoch, entry.event.seq);
                match losses.last_mut() {
                    Some(l) if l.epoch == epoch => {
                        l.last = seq;
                        l.events += 1;
                    }
                    _ => losses.push(Loss {
                        epoch,
                        first: entry.from_seq,
                        last: seq,
                        events: 1,
                    }),
                }
            }
        }
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(MonitorError::io("delete", &path, e));
            }
            _ => {}
        }
        self.clamp_positions();
        Ok(losses)
    }

    /// Records losses (merging a range that continues the previous one) and saves the state.
    fn add_losses(&mut self, new: &[Loss]) -> Result<(), MonitorError> {
        for loss in new {
            self.stats.lost += loss.events;
            let merged = self
                .losses
                .iter_mut()
                .rev()
                .find(|(l, _)| l.epoch == loss.epoch);
            match merged {
                Some((l, sent)) if l.last + 1 >= loss.first && l.first <= loss.first => {
                    l.last = l.last.max(loss.last);
                    l.events += loss.events;
                    *sent = false;
                }
                _ => self.losses.push((*loss, false)),
            }
        }
        while self.losses.len() > MAX_LOSSES {
            self.losses.remove(0);
            self.stats.forgotten_losses += 1;
        }
        self.save_state()
    }

    /// The next batch to send, from the cursor on: at most `max_events` events and about
    /// `max_bytes` bytes of entries, all of one epoch; `None` if everything is sent.
    pub fn next_batch(
        &mut self,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Option<Batch>, MonitorError> {
        self.flush()?;
        let entries = self.read_entries(max_events.max(1), max_bytes)?;
        let head_epoch = entries.first().map(|(e, _)| e.event.epoch);
        // Losses of an epoch with no entry at the head go alone, first.
        let lone = self
            .losses
            .iter()
            .find(|(l, sent)| !sent && Some(l.epoch) != head_epoch)
            .map(|(l, _)| l.epoch);
        if let Some(epoch) = lone {
            let lost = self.take_losses(epoch, u64::MAX);
            let from_seq = lost.iter().map(|l| l.first).min().unwrap_or(1);
            let to_seq = lost.iter().map(|l| l.last).max().unwrap_or(from_seq);
            self.sent.push_back(Sent {
                epoch,
                to_seq,
                end: self.cursor,
            });
            return Ok(Some(Batch {
                epoch,
                from_seq,
                to_seq,
                events: Vec::new(),
                lost,
            }));
        }
        let (Some(epoch), Some((_, end))) = (head_epoch, entries.last()) else {
            return Ok(None);
        };
        let end = *end;
        let to_seq = entries.last().map_or(1, |(e, _)| e.event.seq);
        // Losses after this batch's last event (a too-large event) wait for a later batch.
        let lost = self.take_losses(epoch, to_seq);
        let first_from = entries.first().map_or(1, |(e, _)| e.from_seq);
        let from_seq = lost.iter().map(|l| l.first).fold(first_from, u64::min);
        let events: Vec<Event> = entries.into_iter().map(|(e, _)| e.event).collect();
        self.cursor = end;
        self.sent.push_back(Sent { epoch, to_seq, end });
        Ok(Some(Batch {
            epoch,
            from_seq,
            to_seq,
            events,
            lost,
        }))
    }

    /// The unsent losses of `epoch` up to `upto`, marked sent, as wire ranges in order.
    fn take_losses(&mut self, epoch: u64, upto: u64) -> Vec<Lost> {
        self.losses
            .iter_mut()
            .filter(|(l, sent)| l.epoch == epoch && !*sent && l.last <= upto)
            .map(|(l, sent)| {
                *sent = true;
                Lost {
                    first: l.first,
                    last: l.last,
                    events: l.events,
                }
            })
            .collect()
    }

    /// Entries from the cursor on (one epoch), each with the position after it.
    fn read_entries(
        &mut self,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Vec<(Entry, Pos)>, MonitorError> {
        let mut out: Vec<(Entry, Pos)> = Vec::new();
        let mut taken = 0usize;
        let numbers: Vec<(u64, u64)> = self.files.iter().map(|f| (f.number, f.bytes)).collect();
        for (number, size) in numbers {
            if number < self.cursor.file {
                continue;
            }
            let offset = if number == self.cursor.file {
                self.cursor.offset
            } else {
                0
            };
            if offset >= size {
                continue;
            }
            let limit = (max_bytes + HEADER + MAX_SPOOL_ENTRY) as u64;
            let bytes = read_from(&file_path(&self.dir, number), offset, limit)?;
            let mut pos = 0;
            while let Some((entry, next)) = parse(&bytes, pos) {
                let epoch_changed = out
                    .first()
                    .is_some_and(|(e, _)| e.event.epoch != entry.event.epoch);
                if epoch_changed || (!out.is_empty() && taken + (next - pos) > max_bytes) {
                    return Ok(out);
                }
                taken += next - pos;
                let end = Pos {
                    file: number,
                    offset: offset + next as u64,
                };
                out.push((entry, end));
                pos = next;
                if out.len() >= max_events {
                    return Ok(out);
                }
            }
            if !out.is_empty() && offset + (pos as u64) < size {
                // The read limit cut the file: what we have is a batch.
                return Ok(out);
            }
        }
        Ok(out)
    }

    /// The monitor has everything of `epoch` up to `upto`: forget what it covers.
    pub fn ack(&mut self, epoch: u64, upto: u64) -> Result<(), MonitorError> {
        self.stats.acked_upto = self.stats.acked_upto.max(upto);
        while let Some(s) = self.sent.front() {
            if s.epoch != epoch || s.to_seq > upto {
                break;
            }
            self.acked = self.acked.max(s.end);
            self.sent.pop_front();
        }
        self.losses
            .retain(|(l, _)| !(l.epoch == epoch && l.last <= upto));
        self.clamp_positions();
        // Files wholly before the acknowledged position go, except the one being written.
        while self.files.len() > 1 {
            let Some(head) = self.files.front() else {
                break;
            };
            let done = head.number < self.acked.file
                || (head.number == self.acked.file && self.acked.offset >= head.bytes);
            if !done {
                break;
            }
            let path = file_path(&self.dir, head.number);
            self.files.pop_front();
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(MonitorError::io("delete", &path, e));
                }
                _ => {}
            }
            self.clamp_positions();
        }
        self.save_state()
    }

    /// The link is gone: what was sent and not acknowledged will be sent again.
    pub fn rewind(&mut self) {
        self.cursor = self.acked;
        self.sent.clear();
        for (_, sent) in &mut self.losses {
            *sent = false;
        }
    }

    /// Batches sent and not acknowledged.
    pub fn in_flight(&self) -> usize {
        self.sent.len()
    }

    /// Bytes on disk (including acknowledged entries of the file being written).
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }

    /// Bytes after the acknowledged position.
    fn unacked_bytes(&self) -> u64 {
        let acked = self.acked;
        self.files
            .iter()
            .map(|f| match f.number.cmp(&acked.file) {
                std::cmp::Ordering::Less => 0,
                std::cmp::Ordering::Equal => f.bytes.saturating_sub(acked.offset),
                std::cmp::Ordering::Greater => f.bytes,
            })
            .sum()
    }

    /// Counters since open.
    pub fn stats(&self) -> SpoolStats {
        SpoolStats {
            bytes: self.bytes(),
            in_flight: self.sent.len(),
            unacked_bytes: self.unacked_bytes(),
            ..self.stats
        }
    }

    /// Writes buffered entries to the file (before reading, and on the log writer's timer).
    pub fn flush(&mut self) -> Result<(), MonitorError> {
        if let Some(out) = &mut self.out {
            if let Err(e) = out.flush() {
                self.out = None;
                if let Some(f) = self.files.back_mut() {
                    f.bytes = self.file_bytes;
                }
                return Err(MonitorError::io("write", &self.dir, e));
            }
        }
        Ok(())
    }

    fn save_state(&self) -> Result<(), MonitorError> {
        let state = State {
            acked: self.acked,
            losses: self.losses.iter().map(|(l, _)| *l).collect(),
            last: self.last,
        };
        let bytes = postcard::to_allocvec(&state)
            .map_err(|e| MonitorError::BadConfig(format!("spool state: {e}")))?;
        let path = self.dir.join(STATE);
        let tmp = self.dir.join(".state.tmp");
        fs::write(&tmp, bytes)
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(|e| MonitorError::io("write", &path, e))
    }
}

#[cfg(test)]
#[path = "spool_tests.rs"]
mod tests;
