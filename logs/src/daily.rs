//! Daily text files for a prefix redirect: `<dir>/<prefix>_YYYY-MM-DD.log.N`.
//!
//! The day is the UTC date of each event's own timestamp, so a file holds one day's events
//! whatever the writer's clock says. `N` starts at 1 and moves on once a file has passed
//! `max_bytes` (as Erlang fubar's `fubar_log` did); after a restart the newest `N` of the day
//! is appended to.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::NaiveDate;

use crate::text::{push_line, utc_date, Written};
use crate::LogError;

/// Write buffer per daily file.
const BUFFER: usize = 32 << 10;

/// The daily file `<dir>/<prefix>_YYYY-MM-DD.log.N`.
pub fn daily_path(dir: &Path, prefix: &str, date: NaiveDate, n: u32) -> PathBuf {
    dir.join(format!("{prefix}_{}.log.{n}", date.format("%Y-%m-%d")))
}

/// The open file of one day.
#[derive(Debug)]
struct DayFile {
    /// Its day, as days since the Unix epoch: the cheap check of each event's day.
    day: i64,
    n: u32,
    path: PathBuf,
    out: BufWriter<File>,
    bytes: u64,
}

/// The text files of one prefix (shared by every class redirected to it).
#[derive(Debug)]
pub(crate) struct DailyWriter {
    dir: PathBuf,
    prefix: String,
    max_bytes: u64,
    current: Option<DayFile>,
    /// The line being written, reused from one event to the next.
    line: String,
}

impl DailyWriter {
    /// A writer for `prefix` in `dir`; files are opened at the first event.
    pub(crate) fn new(dir: &Path, prefix: &str, max_bytes: u64) -> Self {
        Self {
            dir: dir.to_path_buf(),
            prefix: prefix.to_owned(),
            line: String::new(),
            max_bytes: max_bytes.max(1),
            current: None,
        }
    }

    /// Appends the event's text line to the file of its day.
    pub(crate) fn write(&mut self, event: &impl Written) -> Result<(), LogError> {
        let day = event.time_us().div_euclid(86_400_000_000);
        let reopen = match &self.current {
            None => Some(None),
            Some(f) if f.day != day => Some(None),
            Some(f) if f.bytes >= self.max_bytes => Some(Some(f.n.saturating_add(1))),
            Some(_) => None,
        };
        if let Some(n) = reopen {
            self.flush()?;
            self.current = None;
            let date = utc_date(event.time_us());
            let n = match n {
                Some(n) => n,
                None => self.newest_n(date)?,
            };
            self.current = Some(self.open_day(date, n)?);
        }
        let Some(f) = &mut self.current else {
            return Ok(());
        };
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        push_line(&mut line, event);
        line.push('\n');
        let written = f.out.write_all(line.as_bytes());
        let len = line.len() as u64;
        self.line = line;
        if let Err(e) = written {
            let path = f.path.clone();
            self.current = None;
            return Err(LogError::io("write", &path, e));
        }
        f.bytes += len;
        Ok(())
    }

    /// Writes buffered lines to the file.
    pub(crate) fn flush(&mut self) -> Result<(), LogError> {
        let Some(f) = &mut self.current else {
            return Ok(());
        };
        if let Err(e) = f.out.flush() {
            let path = f.path.clone();
            self.current = None;
            return Err(LogError::io("write", &path, e));
        }
        Ok(())
    }

    /// The `N` to append to for `date`: the highest existing one, or the next if it is full.
    fn newest_n(&self, date: NaiveDate) -> Result<u32, LogError> {
        let stem = format!("{}_{}.log.", self.prefix, date.format("%Y-%m-%d"));
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(1),
            Err(e) => return Err(LogError::io("read directory", &self.dir, e)),
        };
        let mut newest: Option<(u32, u64)> = None;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(n) = name
                .to_str()
                .and_then(|s| s.strip_prefix(&stem))
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if n > 0 && newest.is_none_or(|(m, _)| n > m) {
                let len = entry.metadata().map_or(0, |m| m.len());
                newest = Some((n, len));
            }
        }
        Ok(match newest {
            None => 1,
            Some((n, len)) if len >= self.max_bytes => n.saturating_add(1),
            Some((n, _)) => n,
        })
    }

    fn open_day(&self, date: NaiveDate, n: u32) -> Result<DayFile, LogError> {
        crate::private::create_private_dir(&self.dir)
            .map_err(|e| LogError::io("create directory", &self.dir, e))?;
        let path = daily_path(&self.dir, &self.prefix, date, n);
        let file = crate::private::open_private_append(&path)
            .map_err(|e| LogError::io("open", &path, e))?;
        let bytes = file
            .metadata()
            .map_err(|e| LogError::io("stat", &path, e))?
            .len();
        Ok(DayFile {
            day: (date - chrono::DateTime::UNIX_EPOCH.date_naive()).num_days(),
            n,
            path,
            out: BufWriter::with_capacity(BUFFER, file),
            bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::format_line;
    use chrono::{TimeZone, Utc};
    use fubar_logproto::{Class, Event};

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, seq: u64) -> Event {
        Event {
            node: "fubar@vm".into(),
            epoch: 7,
            seq,
            time_us: Utc
                .with_ymd_and_hms(y, mo, d, h, mi, s)
                .single()
                .map_or(0, |t| t.timestamp_micros()),
            class: Class::Warning,
            message: "queue overflow".into(),
            fields: vec![("client".into(), "c1".into())],
        }
    }

    fn read(dir: &Path, name: &str) -> String {
        fs::read_to_string(dir.join(name)).unwrap_or_default()
    }

    #[test]
    fn the_day_of_the_event_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = DailyWriter::new(dir.path(), "fubar", 1 << 20);
        let a = at(2026, 11, 25, 23, 59, 59, 1);
        let b = at(2026, 11, 26, 0, 0, 1, 2);
        w.write(&a).unwrap();
        w.write(&b).unwrap();
        w.flush().unwrap();
        assert_eq!(
            read(dir.path(), "fubar_2026-11-25.log.1"),
            format!("{}\n", format_line(&a))
        );
        assert_eq!(
            read(dir.path(), "fubar_2026-11-26.log.1"),
            format!("{}\n", format_line(&b))
        );
    }

    #[test]
    fn n_rolls_past_max_bytes_and_a_reopen_appends() {
        let dir = tempfile::tempdir().unwrap();
        let e = at(2026, 11, 25, 12, 0, 0, 1);
        let line = format!("{}\n", format_line(&e));
        let max = line.len() as u64 * 2; // two lines reach it; the third starts .2
        let mut w = DailyWriter::new(dir.path(), "fubar", max);
        for _ in 0..3 {
            w.write(&e).unwrap();
        }
        w.flush().unwrap();
        drop(w);
        assert_eq!(read(dir.path(), "fubar_2026-11-25.log.1"), line.repeat(2));
        assert_eq!(read(dir.path(), "fubar_2026-11-25.log.2"), line);
        // A new writer (a restart) appends to .2, which has room for one more line.
        let mut w = DailyWriter::new(dir.path(), "fubar", max);
        w.write(&e).unwrap();
        w.write(&e).unwrap();
        w.flush().unwrap();
        assert_eq!(read(dir.path(), "fubar_2026-11-25.log.2"), line.repeat(2));
        assert_eq!(read(dir.path(), "fubar_2026-11-25.log.3"), line);
        assert!(!dir.path().join("fubar_2026-11-25.log.4").exists());
    }
}
