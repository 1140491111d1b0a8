//! Helpers shared by the unit tests.

use parking_lot::Mutex;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

use fubar_logproto::{Class, Event};

use crate::segment::{decode_records, list_segments};

/// 2026-11-25 14:27:16.257740 UTC.
pub(crate) const T0: i64 = 1_795_616_836_257_740;

/// An event with a message of `pad` extra bytes, so sizes vary.
pub(crate) fn event(class: Class, seq: u64, pad: usize) -> Event {
    Event {
        node: "fubar@vm".into(),
        epoch: 42,
        seq,
        time_us: T0 + seq as i64,
        class,
        message: format!("event {seq} {}", "x".repeat(pad)),
        fields: vec![
            ("client".into(), format!("c{seq}")),
            ("peer".into(), "127.0.0.1:58096".into()),
        ],
    }
}

/// Every event in a class dir's segment files, oldest first, and the bytes skipped.
pub(crate) fn read_class(dir: &Path) -> (Vec<Event>, u64) {
    let mut all = Vec::new();
    let mut skipped = 0;
    for (_, path) in list_segments(dir).unwrap_or_default() {
        let bytes = std::fs::read(&path).unwrap_or_default();
        let (events, s) = decode_records(&bytes);
        all.extend(events);
        skipped += s;
    }
    (all, skipped)
}

/// A `Write` whose bytes the test can read back (stands in for stdout).
#[derive(Clone, Default)]
pub(crate) struct Captured(pub(crate) Arc<Mutex<Vec<u8>>>);

impl Captured {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock()).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
