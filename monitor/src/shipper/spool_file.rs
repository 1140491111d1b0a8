//! The spool's file format: records `u32 length, u32 crc32, postcard (from_seq, Event)` in
//! numbered files.

use std::fs::{self, File};
use std::io::{self, Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};

use fubar_logproto::Event;
use serde::{Deserialize, Serialize};

use crate::MonitorError;

/// The largest entry shipped, bytes: a bigger event is dropped from shipping and counted lost
/// (it would not fit in the monitor's frames).
pub const MAX_SPOOL_ENTRY: usize = 1 << 20;
/// Record header: length and crc32.
pub(super) const HEADER: usize = 8;
const SUFFIX: &str = ".spool";
const DIGITS: usize = 12;

#[derive(Serialize)]
pub(super) struct EntryRef<'a> {
    from_seq: u64,
    event: &'a Event,
}

#[derive(Deserialize)]
pub(super) struct Entry {
    pub(super) from_seq: u64,
    pub(super) event: Event,
}

/// Encodes one entry with its header into `rec`; `None` if it is too large to ship.
pub(super) fn encode(rec: &mut Vec<u8>, from_seq: u64, event: &Event) -> Option<()> {
    rec.clear();
    rec.extend_from_slice(&[0; HEADER]);
    let taken = std::mem::take(rec);
    *rec = postcard::to_extend(&EntryRef { from_seq, event }, taken).ok()?;
    let len = rec.len() - HEADER;
    if len > MAX_SPOOL_ENTRY {
        return None;
    }
    let crc = crc32fast::hash(&rec[HEADER..]);
    rec[..4].copy_from_slice(&u32::try_from(len).ok()?.to_be_bytes());
    rec[4..HEADER].copy_from_slice(&crc.to_be_bytes());
    Some(())
}

/// The entry at `pos`, and where the next starts; `None` at the end or at a bad record.
pub(super) fn parse(bytes: &[u8], pos: usize) -> Option<(Entry, usize)> {
    let header = bytes.get(pos..pos + HEADER)?;
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    if len == 0 || len > MAX_SPOOL_ENTRY {
        return None;
    }
    let body = bytes.get(pos + HEADER..pos + HEADER + len)?;
    if crc32fast::hash(body) != crc {
        return None;
    }
    match postcard::take_from_bytes::<Entry>(body) {
        Ok((entry, [])) => Some((entry, pos + HEADER + len)),
        _ => None,
    }
}

pub(super) fn file_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:0DIGITS$}{SUFFIX}"))
}

/// The spool files of `dir`, oldest first.
pub(super) fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, MonitorError> {
    let mut found = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| MonitorError::io("read directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| MonitorError::io("read directory", dir, e))?;
        let name = entry.file_name();
        let Some(digits) = name.to_str().and_then(|n| n.strip_suffix(SUFFIX)) else {
            continue;
        };
        if digits.len() == DIGITS && digits.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(n) = digits.parse() {
                found.push((n, entry.path()));
            }
        }
    }
    found.sort_unstable();
    Ok(found)
}

/// At most `limit` bytes of a file from `offset` (nothing if it is gone).
pub(super) fn read_from(path: &Path, offset: u64, limit: u64) -> Result<Vec<u8>, MonitorError> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(MonitorError::io("open", path, e)),
    };
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| MonitorError::io("read", path, e))?;
    let mut bytes = Vec::new();
    file.take(limit)
        .read_to_end(&mut bytes)
        .map_err(|e| MonitorError::io("read", path, e))?;
    Ok(bytes)
}
