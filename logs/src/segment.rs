//! Rolling binary segment files: `<dir>/<class>/<NNNNNNNNNNNN>.seg`.
//!
//! A record is `u32 length (big-endian), u32 crc32 of the body (big-endian), postcard Event`.
//! A file holds at most `max_bytes` (a single record larger than that gets a file to itself);
//! at most `max_files` files are kept, the oldest deleted and its events counted as
//! overwritten. File numbers only grow, so a reader's `(file, offset)` never lands in a file
//! that was rewritten under it. The current file is the highest number; at open its torn or
//! corrupt tail is truncated away and reported.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use fubar_logproto::Event;

use crate::LogError;

/// Bytes before each record's body: length and crc32.
pub const RECORD_HEADER: usize = 8;
/// The largest record body accepted, written or read (a bigger length means corruption).
pub const MAX_RECORD_LEN: usize = 16 << 20;
/// Segment file name suffix.
const SUFFIX: &str = ".seg";
/// Digits in a segment file's number.
const DIGITS: usize = 12;
/// Write buffer per class.
const BUFFER: usize = 64 << 10;

/// One record, encoded with its header, ready to append.
pub fn encode_record(event: &Event) -> Result<Vec<u8>, LogError> {
    let mut rec = Vec::new();
    encode_record_into(event, &mut rec)?;
    Ok(rec)
}

/// As `encode_record`, into `rec` (cleared first), so a writer can reuse one buffer.
pub(crate) fn encode_record_into(
    event: &impl serde::Serialize,
    rec: &mut Vec<u8>,
) -> Result<(), LogError> {
    rec.clear();
    rec.extend_from_slice(&[0u8; RECORD_HEADER]);
    let taken = std::mem::take(rec);
    *rec = postcard::to_extend(event, taken)
        .map_err(|e| LogError::Event(format!("cannot encode event: {e}")))?;
    let body_len = rec.len() - RECORD_HEADER;
    if body_len == 0 || body_len > MAX_RECORD_LEN {
        return Err(LogError::Event(format!(
            "event of {body_len} bytes is larger than the {MAX_RECORD_LEN}-byte record limit"
        )));
    }
    let crc = crc32fast::hash(&rec[RECORD_HEADER..]);
    // body_len <= MAX_RECORD_LEN fits in a u32.
    let len = u32::try_from(body_len).unwrap_or(u32::MAX);
    rec[..4].copy_from_slice(&len.to_be_bytes());
    rec[4..RECORD_HEADER].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// What lies at one offset of a segment.
enum Next<'a> {
    /// A record with a good checksum: its body, and where the next one starts.
    Good(&'a [u8], usize),
    /// A record whose length is plausible but whose checksum is wrong: skip to the given offset.
    Bad(usize),
    /// No record can start here (short header, bad length, or past the end): the rest is lost.
    Torn,
}

fn next_record(bytes: &[u8], pos: usize) -> Next<'_> {
    let Some(header) = bytes.get(pos..pos.saturating_add(RECORD_HEADER)) else {
        return Next::Torn;
    };
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    let start = pos + RECORD_HEADER;
    if len == 0 || len > MAX_RECORD_LEN {
        return Next::Torn;
    }
    let Some(body) = bytes.get(start..start + len) else {
        return Next::Torn;
    };
    if crc32fast::hash(body) == crc {
        Next::Good(body, start + len)
    } else {
        Next::Bad(start + len)
    }
}

/// The body of one whole record (header, body and nothing after) if its length and checksum
/// are good, for a reader that decodes it in place ([`fubar_logproto::EventRef`]).
pub fn record_body(record: &[u8]) -> Option<&[u8]> {
    match next_record(record, 0) {
        Next::Good(body, end) if end == record.len() => Some(body),
        _ => None,
    }
}

/// An event from a whole record body, refusing trailing bytes.
fn decode_body(body: &[u8]) -> Option<Event> {
    match postcard::take_from_bytes::<Event>(body) {
        Ok((event, [])) => Some(event),
        _ => None,
    }
}

/// Every readable event in a segment's bytes, and how many bytes were skipped as corrupt.
///
/// A record with a bad checksum or an undecodable body is skipped alone when its length is
/// plausible; otherwise the rest of the bytes is skipped (a reader resyncs at the next file).
pub fn decode_records(bytes: &[u8]) -> (Vec<Event>, u64) {
    let mut events = Vec::new();
    let mut skipped = 0u64;
    let mut pos = 0;
    while pos < bytes.len() {
        match next_record(bytes, pos) {
            Next::Good(body, next) => {
                match decode_body(body) {
                    Some(e) => events.push(e),
                    None => skipped += (next - pos) as u64,
                }
                pos = next;
            }
            Next::Bad(next) => {
                skipped += (next - pos) as u64;
                pos = next;
            }
            Next::Torn => {
                skipped += (bytes.len() - pos) as u64;
                break;
            }
        }
    }
    (events, skipped)
}

/// The leading run of good records: how many, and where it ends (the rest is a torn tail).
fn valid_prefix(bytes: &[u8]) -> (u64, usize) {
    let mut count = 0;
    let mut pos = 0;
    while pos < bytes.len() {
        match next_record(bytes, pos) {
            Next::Good(body, next) if decode_body(body).is_some() => {
                count += 1;
                pos = next;
            }
            _ => break,
        }
    }
    (count, pos)
}

/// Records with a good checksum (not decoded: for counting old files cheaply at open).
fn count_records(bytes: &[u8]) -> u64 {
    let mut count = 0;
    let mut pos = 0;
    while pos < bytes.len() {
        match next_record(bytes, pos) {
            Next::Good(_, next) => {
                count += 1;
                pos = next;
            }
            Next::Bad(next) => pos = next,
            Next::Torn => break,
        }
    }
    count
}

/// The path of segment `number` in a class dir.
pub(crate) fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:0DIGITS$}{SUFFIX}"))
}

/// The segment files in a class dir, oldest first; a missing dir has none.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, LogError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(LogError::io("read directory", dir, e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| LogError::io("read directory", dir, e))?;
        let name = entry.file_name();
        let Some(digits) = name.to_str().and_then(|n| n.strip_suffix(SUFFIX)) else {
            continue;
        };
        if digits.len() != DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(n) = digits.parse::<u64>() {
            found.push((n, entry.path()));
        }
    }
    found.sort_unstable();
    Ok(found)
}

/// Reads at most `limit` bytes of a file (`None` if it is gone: deleted by rotation).
pub(crate) fn read_upto(path: &Path, limit: Option<u64>) -> Result<Option<Vec<u8>>, LogError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LogError::io("open", path, e)),
    };
    let mut bytes = Vec::new();
    let read = match limit {
        Some(n) => file.take(n).read_to_end(&mut bytes),
        None => (&file).read_to_end(&mut bytes),
    };
    read.map_err(|e| LogError::io("read", path, e))?;
    Ok(Some(bytes))
}

/// One segment file's bookkeeping.
#[derive(Debug, Clone)]
struct SegFile {
    number: u64,
    bytes: u64,
    events: u64,
}

/// A torn or corrupt tail found and truncated at open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Recovery {
    /// The current file that was repaired.
    pub(crate) path: PathBuf,
    /// Bytes cut away.
    pub(crate) skipped: u64,
    /// Good bytes kept before them.
    pub(crate) kept: u64,
}

/// One class's rolling segment files, with the current one open for buffered appends.
#[derive(Debug)]
pub(crate) struct SegmentLog {
    dir: PathBuf,
    max_bytes: u64,
    max_files: usize,
    files: VecDeque<SegFile>,
    out: Option<BufWriter<File>>,
    overwritten: u64,
    /// The record being appended, reused from one event to the next.
    scratch: Vec<u8>,
}

impl SegmentLog {
    /// Opens (creating) a class dir: counts its files' events and repairs the current file.
    pub(crate) fn open(
        dir: &Path,
        max_bytes: u64,
        max_files: usize,
    ) -> Result<(Self, Option<Recovery>), LogError> {
        crate::private::create_private_dir(dir)
            .map_err(|e| LogError::io("create directory", dir, e))?;
        let listed = list_segments(dir)?;
        let mut files = VecDeque::with_capacity(listed.len());
        let mut recovery = None;
        let last = listed.len().saturating_sub(1);
        for (i, (number, path)) in listed.into_iter().enumerate() {
            let bytes = read_upto(&path, None)?.unwrap_or_default();
            let (events, len) = if i == last {
                let (events, good) = valid_prefix(&bytes);
                if good < bytes.len() {
                    truncate(&path, good as u64)?;
                    recovery = Some(Recovery {
                        path: path.clone(),
                        skipped: (bytes.len() - good) as u64,
                        kept: good as u64,
                    });
                }
                (events, good as u64)
            } else {
                (count_records(&bytes), bytes.len() as u64)
            };
            files.push_back(SegFile {
                number,
                bytes: len,
                events,
            });
        }
        let mut log = Self {
            dir: dir.to_path_buf(),
            max_bytes: max_bytes.max(1),
            max_files: max_files.max(1),
            files,
            out: None,
            overwritten: 0,
            scratch: Vec::new(),
        };
        log.trim()?;
        Ok((log, recovery))
    }

    /// Appends one event (buffered), starting a new file when this one would pass `max_bytes`.
    pub(crate) fn append(&mut self, event: &impl serde::Serialize) -> Result<(), LogError> {
        let mut rec = std::mem::take(&mut self.scratch);
        let result = encode_record_into(event, &mut rec).and_then(|()| self.append_record(&rec));
        self.scratch = rec;
        result
    }

    fn append_record(&mut self, rec: &[u8]) -> Result<(), LogError> {
        let need = rec.len() as u64;
        let roll = match self.files.back() {
            None => true,
            Some(f) => f.bytes > 0 && f.bytes.saturating_add(need) > self.max_bytes,
        };
        if roll {
            self.roll()?;
        }
        if self.out.is_none() {
            let path = self.current_path();
            let file = crate::private::open_private_append(&path)
                .map_err(|e| LogError::io("open", &path, e))?;
            self.out = Some(BufWriter::with_capacity(BUFFER, file));
        }
        let Some(out) = &mut self.out else {
            return Ok(());
        };
        if let Err(e) = out.write_all(rec) {
            // The file may now end in a partial record: never append after it.
            self.out = None;
            if let Some(f) = self.files.back_mut() {
                f.bytes = self.max_bytes;
            }
            return Err(LogError::io("write", &self.current_path(), e));
        }
        if let Some(f) = self.files.back_mut() {
            f.bytes += need;
            f.events += 1;
        }
        Ok(())
    }

    /// Writes buffered records to the file.
    pub(crate) fn flush(&mut self) -> Result<(), LogError> {
        let Some(out) = &mut self.out else {
            return Ok(());
        };
        if let Err(e) = out.flush() {
            self.out = None;
            if let Some(f) = self.files.back_mut() {
                f.bytes = self.max_bytes;
            }
            return Err(LogError::io("write", &self.current_path(), e));
        }
        Ok(())
    }

    /// Flushes and closes the current file (the class is closed; its files stay).
    pub(crate) fn close_file(&mut self) -> Result<(), LogError> {
        let result = self.flush();
        self.out = None;
        result
    }

    /// The files (path and flushed size), oldest first, for a reader.
    pub(crate) fn snapshot(&self) -> Vec<(PathBuf, u64)> {
        self.files
            .iter()
            .map(|f| (segment_path(&self.dir, f.number), f.bytes))
            .collect()
    }

    /// How many segment files there are.
    pub(crate) fn file_count(&self) -> usize {
        self.files.len()
    }

    /// Total bytes in the segment files.
    pub(crate) fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }

    /// Events deleted with old files since open.
    pub(crate) fn overwritten(&self) -> u64 {
        self.overwritten
    }

    fn current_path(&self) -> PathBuf {
        segment_path(&self.dir, self.files.back().map_or(0, |f| f.number))
    }

    /// Closes the current file and starts the next number, deleting the oldest beyond the cap.
    fn roll(&mut self) -> Result<(), LogError> {
        let flushed = self.close_file();
        let number = self.files.back().map_or(1, |f| f.number.saturating_add(1));
        let path = segment_path(&self.dir, number);
        let file = crate::private::private_file()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| LogError::io("create", &path, e))?;
        self.out = Some(BufWriter::with_capacity(BUFFER, file));
        self.files.push_back(SegFile {
            number,
            bytes: 0,
            events: 0,
        });
        self.trim()?;
        flushed
    }

    /// Deletes the oldest files beyond `max_files`, counting their events as overwritten.
    fn trim(&mut self) -> Result<(), LogError> {
        while self.files.len() > self.max_files {
            let Some(old) = self.files.pop_front() else {
                break;
            };
            self.overwritten += old.events;
            let path = segment_path(&self.dir, old.number);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(LogError::io("delete", &path, e)),
            }
        }
        Ok(())
    }
}

fn truncate(path: &Path, len: u64) -> Result<(), LogError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| LogError::io("open", path, e))?;
    file.set_len(len)
        .map_err(|e| LogError::io("truncate", path, e))?;
    file.sync_data().map_err(|e| LogError::io("sync", path, e))
}
