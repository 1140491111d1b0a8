//! Segment files to text: `dump_dir` reads a class's files straight from disk.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use fubar_logproto::Class;

use crate::segment::{decode_records, list_segments, read_upto};
use crate::text::format_line;
use crate::LogError;

/// What a dump wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DumpReport {
    /// Events written as text lines.
    pub events: u64,
    /// Corrupt bytes skipped.
    pub skipped_bytes: u64,
}

/// The directory of a class's segment files.
pub fn class_dir(log_dir: &Path, class: Class) -> PathBuf {
    log_dir.join(class.name())
}

/// Dumps a class's segment files as text lines, oldest first, reading them directly (the node
/// may be running or not; a file deleted by rotation meanwhile is passed over).
pub fn dump_dir(log_dir: &Path, class: Class, out: &mut dyn Write) -> Result<DumpReport, LogError> {
    let files: Vec<(PathBuf, Option<u64>)> = list_segments(&class_dir(log_dir, class))?
        .into_iter()
        .map(|(_, p)| (p, None))
        .collect();
    dump_files(&files, out, Path::new("output"))
}

/// Dumps the given files (each read up to its limit, if any) to `out`, named `out_path` in errors.
pub(crate) fn dump_files(
    files: &[(PathBuf, Option<u64>)],
    out: &mut dyn Write,
    out_path: &Path,
) -> Result<DumpReport, LogError> {
    let mut report = DumpReport::default();
    for (path, limit) in files {
        let Some(bytes) = read_upto(path, *limit)? else {
            continue;
        };
        let (events, skipped) = decode_records(&bytes);
        report.skipped_bytes += skipped;
        for e in &events {
            let line = format_line(e);
            out.write_all(line.as_bytes())
                .and_then(|()| out.write_all(b"\n"))
                .map_err(|err| LogError::io("write", out_path, err))?;
        }
        report.events += events.len() as u64;
    }
    out.flush()
        .map_err(|err| LogError::io("write", out_path, err))?;
    Ok(report)
}

/// Erlang fubar's dump file name: `<node>-YYYYMMDDTHHMMSS-<class>.log` (UTC).
pub fn dump_file_name(node: &str, at: DateTime<Utc>, class: Class) -> String {
    let node: String = node
        .chars()
        .map(|c| {
            if matches!(c, '/' | '\\' | '\0') {
                '_'
            } else {
                c
            }
        })
        .collect();
    format!("{node}-{}-{class}.log", at.format("%Y%m%dT%H%M%S"))
}

/// The highest sequence number recorded per (node, boot epoch) in every class's segment files
/// under `log_dir`, read from disk (torn records are passed over).
///
/// A monitor seeds its duplicate filter with it at start, so events written before a crash but
/// not yet acknowledged are recognised when their node sends them again. It reads every
/// segment file: at most classes × `max_files` × `max_bytes`.
pub fn high_water_marks(log_dir: &Path) -> Result<BTreeMap<(String, u64), u64>, LogError> {
    let mut marks: BTreeMap<(String, u64), u64> = BTreeMap::new();
    for class in Class::ALL {
        for (_, path) in list_segments(&class_dir(log_dir, class))? {
            let Some(bytes) = read_upto(&path, None)? else {
                continue;
            };
            for e in decode_records(&bytes).0 {
                let mark = marks.entry((e.node, e.epoch)).or_insert(e.seq);
                *mark = (*mark).max(e.seq);
            }
        }
    }
    Ok(marks)
}

/// Whether a class has any segment files on disk.
pub(crate) fn has_segments(log_dir: &Path, class: Class) -> Result<bool, LogError> {
    Ok(!list_segments(&class_dir(log_dir, class))?.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn erlang_dump_naming() {
        let at = Utc
            .with_ymd_and_hms(2026, 11, 25, 14, 27, 16)
            .single()
            .unwrap();
        assert_eq!(
            dump_file_name("fubar@vm", at, Class::Access),
            "fubar@vm-20261125T142716-access.log"
        );
    }

    #[test]
    fn a_missing_dir_dumps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        let report = dump_dir(dir.path(), Class::Trace, &mut out).unwrap();
        assert_eq!(report, DumpReport::default());
        assert!(out.is_empty());
    }
}
