//! The indexer: tails the segment files of a log dir and feeds the [`EventIndex`].
//!
//! Each class's read position (segment number and byte offset) is the checkpoint. It travels
//! as the payload of the tantivy commit that makes the documents read up to it durable, so a
//! restart resumes exactly where the last commit ended: no event is indexed twice or skipped,
//! whatever happened between commits. The indexer commits at most every `commit_interval`.
//!
//! The newest file of a class is still being written: the indexer never passes a record there
//! that is incomplete or fails its checksum, it waits (the writer completes it, or truncates it
//! when it repairs a torn tail at restart and appends after it). Once a newer file exists, the
//! older one is final, and a bad record or torn tail in it is skipped and reported. A file
//! deleted by rotation before it was read to its end is counted as missed, and reading goes on
//! at the oldest file left. Documents whose files have rotated out of the log are deleted from
//! the index ("retention follows the segments"), and so are documents older than the optional
//! `retention`.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fubar_logproto::{Class, EventRef};
use fubar_logs::{class_dir, record_body, MAX_RECORD_LEN, RECORD_HEADER};
use serde::{Deserialize, Serialize};
use tantivy::{Index, TantivyDocument};

use crate::index::{EventIndex, IndexError, MIN_INDEX_HEAP_BYTES};
use crate::index_lag::{IndexLag, PendingTimes};

/// How often the indexer commits by default: events are searchable well within 2 s.
pub const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_millis(500);
/// Bytes read per class per pass (about 5,000 events, 50 ms of indexing), so that a pass
/// over every class stays well under the commit interval even with a backlog: commits keep
/// their pace and one busy class does not hold back the others.
const CLASS_BUDGET: u64 = 512 << 10;
/// How often documents older than `retention` are deleted.
const RETENTION_EVERY: Duration = Duration::from_secs(10);
/// How long `run` sleeps when there is nothing new.
const IDLE_TICK: Duration = Duration::from_millis(50);
/// How long `run` waits after an error before it tries again.
const ERROR_BACKOFF: Duration = Duration::from_secs(1);
/// Segment file name suffix and digits, as `fubar-logs` writes them.
const SUFFIX: &str = ".seg";
const DIGITS: usize = 12;

/// How the indexer runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexerConfig {
    /// The log dir whose `<class>/NNNNNNNNNNNN.seg` files are indexed.
    pub log_dir: PathBuf,
    /// Commit (and make new events searchable) at most this often.
    pub commit_interval: Duration,
    /// Also delete documents older than this (`log.index_retention`); `None`: only what
    /// rotated out of the segments leaves the index.
    pub retention: Option<Duration>,
}

impl IndexerConfig {
    /// The defaults for a log dir.
    pub fn new(log_dir: &Path) -> Self {
        Self {
            log_dir: log_dir.to_path_buf(),
            commit_interval: DEFAULT_COMMIT_INTERVAL,
            retention: None,
        }
    }
}

/// Counters: since start ([`Indexer::stats`]) or for one poll.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexerStats {
    /// Events added to the index.
    pub indexed: u64,
    /// Commits made.
    pub commits: u64,
    /// Corrupt bytes skipped (bad records and torn tails in final files).
    pub skipped_bytes: u64,
    /// Segment files deleted by rotation before they were read to their end.
    pub missed_segments: u64,
    /// Class logs found behind the checkpoint (recreated): read again from their start.
    pub resets: u64,
}

impl IndexerStats {
    fn add(&mut self, other: &Self) {
        self.indexed += other.indexed;
        self.commits += other.commits;
        self.skipped_bytes += other.skipped_bytes;
        self.missed_segments += other.missed_segments;
        self.resets += other.resets;
    }
}

/// A class's read position: the next byte to read, and the oldest segment still indexed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Position {
    segment: u64,
    offset: u64,
    retained_from: u64,
}

/// Every class's position, keyed by class name: the payload of each commit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Checkpoint {
    classes: BTreeMap<String, Position>,
}

impl Checkpoint {
    fn load(index: &EventIndex) -> Result<Self, IndexError> {
        match index.committed_payload()? {
            None => Ok(Self::default()),
            Some(payload) => serde_json::from_str(&payload).map_err(|e| IndexError::Checkpoint {
                path: index.dir().to_path_buf(),
                why: e.to_string(),
            }),
        }
    }
}

/// Tails a log dir's segment files into an [`EventIndex`].
#[derive(Debug)]
pub struct Indexer {
    index: Arc<EventIndex>,
    config: IndexerConfig,
    checkpoint: Checkpoint,
    stats: IndexerStats,
    /// Documents added or deleted since the last commit.
    pending: bool,
    last_commit: Option<Instant>,
    last_retention: Option<Instant>,
    /// Scratch for an event's text.
    text: String,
    /// Documents of the chunk being walked, added to the index together.
    docs: Vec<TantivyDocument>,
    /// When the events added since the last commit were logged.
    pending_times: PendingTimes,
    /// How far behind the events their commits are (for `/metrics`).
    lag: Arc<IndexLag>,
}

impl Indexer {
    /// An indexer resuming from the checkpoint of the index's last commit.
    pub fn new(index: Arc<EventIndex>, config: IndexerConfig) -> Result<Self, IndexError> {
        let checkpoint = Checkpoint::load(&index)?;
        Ok(Self {
            index,
            config,
            checkpoint,
            stats: IndexerStats::default(),
            pending: false,
            last_commit: None,
            last_retention: None,
            text: String::new(),
            docs: Vec::new(),
            pending_times: PendingTimes::default(),
            lag: Arc::default(),
        })
    }

    /// How far behind the events their commits are, updated at each commit.
    pub fn lag(&self) -> Arc<IndexLag> {
        self.lag.clone()
    }

    /// Counters since start.
    pub fn stats(&self) -> IndexerStats {
        self.stats
    }

    /// Reads what is new (up to a budget per class) and commits if `commit_interval` has
    /// passed since the last commit. Returns what this poll did.
    pub fn poll(&mut self, now: Instant) -> Result<IndexerStats, IndexError> {
        let mut delta = IndexerStats::default();
        let result = self.pass(&mut delta).and_then(|_| {
            let due = self
                .last_commit
                .is_none_or(|t| now.saturating_duration_since(t) >= self.config.commit_interval);
            if self.pending && due {
                self.commit_at(now, &mut delta)
            } else {
                Ok(())
            }
        });
        self.finish(result, delta)
    }

    /// Reads everything new and commits at once (for tests and rebuilds).
    pub fn poll_once(&mut self) -> Result<IndexerStats, IndexError> {
        let mut delta = IndexerStats::default();
        let result = self.catch_up(&mut delta);
        self.finish(result, delta)
    }

    fn catch_up(&mut self, delta: &mut IndexerStats) -> Result<(), IndexError> {
        while self.pass(delta)? {}
        self.commit_at(Instant::now(), delta)
    }

    /// Polls until `stop` is set, then commits what is pending. Errors are reported as
    /// `warning` events and retried after a pause.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<(), IndexError> {
        while !stop.load(Ordering::Relaxed) {
            match self.poll(Instant::now()) {
                Ok(delta) if delta.indexed == 0 => std::thread::sleep(IDLE_TICK),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(target: "warning", error = %e, "log indexer");
                    std::thread::sleep(ERROR_BACKOFF);
                }
            }
        }
        if self.pending {
            let mut delta = IndexerStats::default();
            let result = self.commit_at(Instant::now(), &mut delta);
            self.finish(result, delta)?;
        }
        Ok(())
    }

    /// Adds `delta` to the totals, or on error drops everything uncommitted and goes back to
    /// the last commit's checkpoint, so index and checkpoint stay in step.
    fn finish(
        &mut self,
        result: Result<(), IndexError>,
        delta: IndexerStats,
    ) -> Result<IndexerStats, IndexError> {
        self.stats.add(&delta);
        if let Err(e) = result {
            self.pending = false;
            self.pending_times.forget();
            self.index.rollback()?;
            self.checkpoint = Checkpoint::load(&self.index)?;
            return Err(e);
        }
        Ok(delta)
    }

    /// Deletes what is past `retention` if due, then commits with the checkpoint.
    fn commit_at(&mut self, now: Instant, delta: &mut IndexerStats) -> Result<(), IndexError> {
        if let Some(keep) = self.config.retention {
            let due = self
                .last_retention
                .is_none_or(|t| now.saturating_duration_since(t) >= RETENTION_EVERY);
            if due {
                let keep_us = i64::try_from(keep.as_micros()).unwrap_or(i64::MAX);
                let cutoff = chrono::Utc::now()
                    .timestamp_micros()
                    .saturating_sub(keep_us);
                self.index.delete_before(cutoff)?;
                self.last_retention = Some(now);
                self.pending = true;
            }
        }
        if !self.pending {
            return Ok(());
        }
        let payload =
            serde_json::to_string(&self.checkpoint).map_err(|e| IndexError::Checkpoint {
                path: self.index.dir().to_path_buf(),
                why: e.to_string(),
            })?;
        self.index.commit_with(Some(&payload))?;
        self.pending_times
            .committed(chrono::Utc::now().timestamp_micros(), &self.lag);
        self.pending = false;
        self.last_commit = Some(now);
        delta.commits += 1;
        Ok(())
    }

    /// One pass over every class; whether any read position moved.
    fn pass(&mut self, delta: &mut IndexerStats) -> Result<bool, IndexError> {
        let mut moved = false;
        for class in Class::ALL {
            moved |= self.pass_class(class, delta)?;
        }
        Ok(moved)
    }

    fn pass_class(&mut self, class: Class, delta: &mut IndexerStats) -> Result<bool, IndexError> {
        let dir = class_dir(&self.config.log_dir, class);
        let segments = list_segments(&dir)?;
        let (Some(&(oldest, _)), Some(&(newest, _))) = (segments.first(), segments.last()) else {
            return Ok(false);
        };
        let before = self.position(class);
        let mut pos = before;
        if pos.segment > newest {
            delta.resets += 1;
            tracing::warn!(target: "warning", %class, checkpoint = pos.segment, newest,
                "log indexer: the class's segments are behind the index checkpoint; reading them again");
            pos = Position {
                retained_from: 0,
                ..Position::default()
            };
        }
        if pos.segment < oldest {
            // Segment numbers start at 1: 0 is a class never read before.
            if pos.segment != 0 {
                let missed = oldest - pos.segment;
                delta.missed_segments += missed;
                tracing::warn!(target: "warning", %class, from = pos.segment, missed,
                    "log indexer: segment files rotated out before they were indexed");
            }
            pos.segment = oldest;
            pos.offset = 0;
        }
        let mut budget = CLASS_BUDGET;
        for (i, (number, path)) in segments.iter().enumerate() {
            if *number < pos.segment {
                continue;
            }
            if *number > pos.segment {
                // A file missing from the sequence: deleted by hand.
                delta.missed_segments += number - pos.segment;
                pos = Position {
                    segment: *number,
                    offset: 0,
                    ..pos
                };
            }
            let last = i + 1 == segments.len();
            let read = self.read_segment(path, pos.offset, last, &mut budget, *number, delta)?;
            match read {
                FileRead::Gone => {
                    delta.missed_segments += 1;
                    pos.segment = number + 1;
                    pos.offset = 0;
                }
                FileRead::Shrunk => {
                    // Shorter than what was read of it: a new file under an old number.
                    delta.resets += 1;
                    tracing::warn!(target: "warning", %class, segment = number,
                        "log indexer: a segment file was replaced; reading it again");
                    pos.offset = 0;
                    break;
                }
                FileRead::Paused(offset) => {
                    pos.offset = offset;
                    break;
                }
                FileRead::Ended(offset) => pos.offset = offset,
            }
            if let Some(&(next, _)) = segments.get(i + 1) {
                pos.segment = next;
                pos.offset = 0;
            }
        }
        if oldest > pos.retained_from {
            self.index.delete_segments_before(class, oldest)?;
            pos.retained_from = oldest;
            self.pending = true;
        }
        self.checkpoint.classes.insert(class.name().to_owned(), pos);
        Ok(pos.segment != before.segment || pos.offset != before.offset)
    }

    fn position(&self, class: Class) -> Position {
        self.checkpoint
            .classes
            .get(class.name())
            .copied()
            .unwrap_or_default()
    }

    /// Indexes a file's records from `offset`. The newest file (`last`) is read up to its first
    /// incomplete or bad record; an older one to its end, skipping what is corrupt.
    fn read_segment(
        &mut self,
        path: &Path,
        mut offset: u64,
        last: bool,
        budget: &mut u64,
        number: u64,
        delta: &mut IndexerStats,
    ) -> Result<FileRead, IndexError> {
        let mut need = 0;
        loop {
            if *budget == 0 {
                return Ok(FileRead::Paused(offset));
            }
            // The budget, or one whole record if that is bigger.
            let want = usize::try_from(*budget).unwrap_or(usize::MAX).max(need);
            let Some((bytes, file_len)) = read_at(path, offset, want)? else {
                return Ok(FileRead::Gone);
            };
            if offset > file_len {
                return Ok(FileRead::Shrunk);
            }
            let more = offset + (bytes.len() as u64) < file_len;
            let walked = self.walk(&bytes, last, number, delta)?;
            offset += walked.consumed as u64;
            *budget = budget.saturating_sub(walked.consumed as u64);
            match walked.stop {
                Stop::End if more => need = 0,
                Stop::Incomplete(n) if more => need = n,
                Stop::End => return Ok(FileRead::Ended(offset)),
                Stop::Incomplete(_) | Stop::Corrupt if last => return Ok(FileRead::Paused(offset)),
                Stop::Incomplete(_) | Stop::Corrupt => {
                    let skipped = file_len.saturating_sub(offset);
                    delta.skipped_bytes += skipped;
                    tracing::warn!(target: "warning", path = %path.display(), offset, skipped,
                        "log indexer: torn or corrupt tail skipped");
                    return Ok(FileRead::Ended(file_len));
                }
            }
        }
    }

    /// Adds the complete good records at the start of `bytes`; in a final file (not `last`),
    /// skips bad records whose length is plausible.
    fn walk(
        &mut self,
        bytes: &[u8],
        last: bool,
        number: u64,
        delta: &mut IndexerStats,
    ) -> Result<Walked, IndexError> {
        let mut pos = 0;
        let stop = loop {
            let Some(header) = bytes.get(pos..pos + RECORD_HEADER) else {
                break if pos == bytes.len() {
                    Stop::End
                } else {
                    Stop::Incomplete(RECORD_HEADER)
                };
            };
            let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
            if len == 0 || len > MAX_RECORD_LEN {
                break Stop::Corrupt;
            }
            let end = pos + RECORD_HEADER + len;
            let Some(record) = bytes.get(pos..end) else {
                break Stop::Incomplete(RECORD_HEADER + len);
            };
            match decode_one(record) {
                Some((event, body)) => {
                    self.pending_times.note(event.time_us);
                    let doc = self
                        .index
                        .document(&event, body, Some(number), &mut self.text);
                    self.docs.push(doc);
                }
                None if last => break Stop::Corrupt,
                None => delta.skipped_bytes += (end - pos) as u64,
            }
            pos = end;
        };
        let added = self.docs.len() as u64;
        self.index.add_documents(&mut self.docs)?;
        delta.indexed += added;
        self.pending |= added > 0;
        Ok(Walked {
            consumed: pos,
            stop,
        })
    }
}

/// The event of one whole record, read in place, and its body, if its checksum and encoding
/// are good (the test the log writer applies when it repairs a file, so both agree on where
/// the good records end).
fn decode_one(record: &[u8]) -> Option<(EventRef<'_>, &[u8])> {
    let body = record_body(record)?;
    match postcard::take_from_bytes::<EventRef<'_>>(body) {
        Ok((event, [])) => Some((event, body)),
        _ => None,
    }
}

/// How reading a file ended.
enum FileRead {
    /// It was deleted before it could be opened.
    Gone,
    /// It is shorter than the offset to read from (the log was recreated).
    Shrunk,
    /// Stopped at this offset: the budget ran out, or the newest file's next record is not
    /// there yet.
    Paused(u64),
    /// Read (or skipped) to its end, this offset.
    Ended(u64),
}

/// What ended a walk over a chunk of bytes.
enum Stop {
    /// Every byte was consumed.
    End,
    /// The next record needs this many bytes from where the walk stopped.
    Incomplete(usize),
    /// The next record is bad (and unskippable, or in the newest file).
    Corrupt,
}

struct Walked {
    consumed: usize,
    stop: Stop,
}

/// At most `max` bytes of a file from `offset`, and the file's length; `None` if it is gone.
fn read_at(path: &Path, offset: u64, max: usize) -> Result<Option<(Vec<u8>, u64)>, IndexError> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(IndexError::io("open", path)(e)),
    };
    let len = file.metadata().map_err(IndexError::io("stat", path))?.len();
    let mut bytes = Vec::new();
    if offset < len {
        file.seek(SeekFrom::Start(offset))
            .map_err(IndexError::io("seek", path))?;
        let max = max.min(usize::try_from(len - offset).unwrap_or(usize::MAX));
        bytes.reserve_exact(max);
        file.take(max as u64)
            .read_to_end(&mut bytes)
            .map_err(IndexError::io("read", path))?;
    }
    Ok(Some((bytes, len)))
}

/// The segment files of a class dir, oldest first; a missing dir has none.
fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, IndexError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(IndexError::io("read directory", dir)(e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(IndexError::io("read directory", dir))?;
        let name = entry.file_name();
        let Some(digits) = name.to_str().and_then(|n| n.strip_suffix(SUFFIX)) else {
            continue;
        };
        if digits.len() == DIGITS && digits.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(n) = digits.parse::<u64>() {
                found.push((n, entry.path()));
            }
        }
    }
    found.sort_unstable();
    Ok(found)
}

/// Deletes the index in `index_dir` and builds it again from the segments in `log_dir`
/// (`fubar log reindex`). Refuses a dir that is neither empty nor an index, and an index that
/// a writer holds (a running monitor).
pub fn reindex(
    log_dir: &Path,
    index_dir: &Path,
    heap_bytes: usize,
) -> Result<IndexerStats, IndexError> {
    clear_index_dir(index_dir)?;
    let index = Arc::new(EventIndex::open_or_create(index_dir, heap_bytes)?);
    let mut indexer = Indexer::new(index, IndexerConfig::new(log_dir))?;
    indexer.poll_once()?;
    Ok(indexer.stats())
}

fn clear_index_dir(dir: &Path) -> Result<(), IndexError> {
    let mut entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(IndexError::io("read directory", dir)(e)),
    };
    if entries.next().is_none() {
        return Ok(());
    }
    if !dir.join("meta.json").is_file() {
        return Err(IndexError::NotAnIndex(dir.to_path_buf()));
    }
    // Any schema will do: this only checks that no writer holds the index.
    let index = Index::open_in_dir(dir).map_err(IndexError::tantivy("open"))?;
    let writer = index
        .writer::<TantivyDocument>(MIN_INDEX_HEAP_BYTES)
        .map_err(IndexError::tantivy("lock"))?;
    drop(writer);
    drop(index);
    fs::remove_dir_all(dir).map_err(IndexError::io("delete", dir))
}

#[cfg(test)]
mod tests;
