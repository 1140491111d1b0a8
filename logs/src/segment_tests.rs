//! Segment files: wrap-around, torn tails, corrupt records, round trips.

use std::fs::{self, OpenOptions};
use std::io::Write;

use fubar_logproto::{Class, Event};
use proptest::prelude::*;

use crate::dump::dump_dir;
use crate::segment::{encode_record, list_segments, SegmentLog};
use crate::test_util::{event, read_class};
use crate::text::format_line;

#[test]
fn wrap_around_keeps_exactly_the_newest_events_and_counts_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("access");
    let (max_bytes, max_files) = (4096u64, 3usize);
    let (mut log, rec) = SegmentLog::open(&dir, max_bytes, max_files).unwrap();
    assert!(rec.is_none());
    let written: Vec<Event> = (1..=400)
        .map(|i| event(Class::Access, i, (i % 37) as usize))
        .collect();
    for e in &written {
        log.append(e).unwrap();
    }
    log.flush().unwrap();

    let files = list_segments(&dir).unwrap();
    assert_eq!(files.len(), max_files);
    for (_, path) in &files {
        assert!(fs::metadata(path).unwrap().len() <= max_bytes);
    }
    let (kept, skipped) = read_class(&dir);
    assert_eq!(skipped, 0);
    // Exactly the newest: a suffix of what was written, and everything else counted.
    assert!(!kept.is_empty());
    assert_eq!(kept[..], written[written.len() - kept.len()..]);
    assert_eq!(log.overwritten(), (written.len() - kept.len()) as u64);
    let kept_bytes: u64 = kept
        .iter()
        .map(|e| encode_record(e).unwrap().len() as u64)
        .sum();
    assert_eq!(kept_bytes, log.bytes());
    assert!(kept_bytes <= max_bytes * max_files as u64);
    // No whole file more would have fit: the oldest deleted file's events are really gone.
    assert!(kept_bytes > max_bytes * (max_files as u64 - 1));
    let first_number = files[0].0;
    assert!(
        first_number > 1,
        "older files were deleted, numbers never reused"
    );

    // Reopened, the per-file counts are rebuilt: the next deletion counts the right events.
    drop(log);
    let (oldest_events, _) = crate::segment::decode_records(&fs::read(&files[0].1).unwrap());
    let (mut log, rec) = SegmentLog::open(&dir, max_bytes, max_files).unwrap();
    assert!(rec.is_none());
    let mut seq = 401;
    while list_segments(&dir).unwrap()[0].0 == first_number {
        log.append(&event(Class::Access, seq, 10)).unwrap();
        seq += 1;
    }
    assert_eq!(log.overwritten(), oldest_events.len() as u64);
}

/// Writes `n` events and returns them (the log is dropped, as at a crash after a flush).
fn write_events(dir: &std::path::Path, n: u64, max_bytes: u64) -> Vec<Event> {
    let (mut log, _) = SegmentLog::open(dir, max_bytes, 100).unwrap();
    let events: Vec<Event> = (1..=n).map(|i| event(Class::Trace, i, 5)).collect();
    for e in &events {
        log.append(e).unwrap();
    }
    log.flush().unwrap();
    events
}

#[test]
fn a_torn_tail_is_truncated_at_open_and_appending_continues_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("trace");
    let mut events = write_events(&dir, 10, 1 << 20);
    let (_, path) = list_segments(&dir).unwrap().pop().unwrap();
    let len = fs::metadata(&path).unwrap().len();
    let last_len = encode_record(&events[9]).unwrap().len() as u64;
    // Cut the last record in the middle, as a crash mid-write would.
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 5)
        .unwrap();

    let (mut log, rec) = SegmentLog::open(&dir, 1 << 20, 100).unwrap();
    let rec = rec.expect("the torn tail is reported");
    assert_eq!(rec.path, path);
    assert_eq!(rec.skipped, last_len - 5);
    assert_eq!(rec.kept, len - last_len);
    assert_eq!(fs::metadata(&path).unwrap().len(), len - last_len);

    events.pop();
    let next = event(Class::Trace, 11, 3);
    log.append(&next).unwrap();
    log.flush().unwrap();
    events.push(next);
    assert_eq!(read_class(&dir), (events, 0));
}

#[test]
fn garbage_after_the_last_record_is_cut_away() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("trace");
    let events = write_events(&dir, 3, 1 << 20);
    let (_, path) = list_segments(&dir).unwrap().pop().unwrap();
    OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(&[0xab; 13])
        .unwrap();

    let (_, rec) = SegmentLog::open(&dir, 1 << 20, 100).unwrap();
    assert_eq!(rec.map(|r| r.skipped), Some(13));
    assert_eq!(read_class(&dir), (events, 0));
    // A second open finds nothing more to repair.
    assert!(SegmentLog::open(&dir, 1 << 20, 100).unwrap().1.is_none());
}

#[test]
fn a_corrupt_record_in_an_older_file_is_skipped_by_dump() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("trace");
    let events = write_events(&dir, 60, 1024);
    let files = list_segments(&dir).unwrap();
    assert!(files.len() >= 3);

    // A flipped bit in the first record's body: only that record is lost.
    let mut bytes = fs::read(&files[0].1).unwrap();
    bytes[12] ^= 0x40;
    fs::write(&files[0].1, &bytes).unwrap();
    // A wrecked length in the second file's first record: the rest of that file is lost, and
    // reading resyncs at the third file.
    let mut second = fs::read(&files[1].1).unwrap();
    let second_len = second.len() as u64;
    let (second_events, _) = crate::segment::decode_records(&second);
    second[0] = 0xff;
    fs::write(&files[1].1, &second).unwrap();

    let mut out = Vec::new();
    let report = dump_dir(tmp.path(), Class::Trace, &mut out).unwrap();
    let first_len = encode_record(&events[0]).unwrap().len() as u64;
    assert_eq!(report.skipped_bytes, first_len + second_len);
    let expected: Vec<&Event> = events[1..]
        .iter()
        .filter(|e| !second_events.contains(e))
        .collect();
    assert_eq!(report.events, expected.len() as u64);
    let text: String = expected.iter().map(|e| format_line(e) + "\n").collect();
    assert_eq!(String::from_utf8(out).unwrap(), text);
}

#[test]
fn binary_to_dump_round_trip_is_format_line_oldest_first() {
    let tmp = tempfile::tempdir().unwrap();
    let events = write_events(&tmp.path().join("trace"), 50, 700);
    assert!(list_segments(&tmp.path().join("trace")).unwrap().len() > 1);
    let mut out = Vec::new();
    let report = dump_dir(tmp.path(), Class::Trace, &mut out).unwrap();
    assert_eq!((report.events, report.skipped_bytes), (50, 0));
    let text: String = events.iter().map(|e| format_line(e) + "\n").collect();
    assert_eq!(String::from_utf8(out).unwrap(), text);
}

#[test]
fn decode_records_survives_any_prefix_of_a_segment() {
    let events: Vec<Event> = (1..=5).map(|i| event(Class::Info, i, 2)).collect();
    let bytes: Vec<u8> = events
        .iter()
        .flat_map(|e| encode_record(e).unwrap())
        .collect();
    for cut in 0..=bytes.len() {
        let (got, skipped) = crate::segment::decode_records(&bytes[..cut]);
        assert_eq!(got[..], events[..got.len()]);
        let good: usize = events[..got.len()]
            .iter()
            .map(|e| encode_record(e).unwrap().len())
            .sum();
        assert_eq!(skipped, (cut - good) as u64);
    }
}

fn arb_event() -> impl Strategy<Value = Event> {
    (
        "[a-z]{1,8}@[a-z]{1,8}",
        any::<u64>(),
        any::<u64>(),
        any::<i64>(),
        prop::sample::select(Class::ALL.to_vec()),
        ".{0,80}",
        prop::collection::vec(("[a-z_]{1,10}", ".{0,40}"), 0..6),
    )
        .prop_map(
            |(node, epoch, seq, time_us, class, message, fields)| Event {
                node,
                epoch,
                seq,
                time_us,
                class,
                message,
                fields: fields.into_iter().map(|(k, v)| (k.into(), v)).collect(),
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn events_survive_write_reopen_dump(
        before in prop::collection::vec(arb_event(), 0..40),
        after in prop::collection::vec(arb_event(), 0..10),
        max_bytes in 64u64..4096,
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("debug");
        let (mut log, _) = SegmentLog::open(&dir, max_bytes, 100_000).unwrap();
        for e in &before {
            log.append(e).unwrap();
        }
        log.flush().unwrap();
        drop(log);
        let (mut log, rec) = SegmentLog::open(&dir, max_bytes, 100_000).unwrap();
        prop_assert!(rec.is_none());
        for e in &after {
            log.append(e).unwrap();
        }
        log.flush().unwrap();
        let all: Vec<Event> = before.iter().chain(&after).cloned().collect();
        prop_assert_eq!(read_class(&dir), (all.clone(), 0));
        let mut out = Vec::new();
        let report = dump_dir(tmp.path(), Class::Debug, &mut out).unwrap();
        prop_assert_eq!(report.events, all.len() as u64);
        let text: String = all.iter().map(|e| format_line(e) + "\n").collect();
        prop_assert_eq!(String::from_utf8(out).unwrap(), text);
    }

    #[test]
    fn decode_records_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let (events, skipped) = crate::segment::decode_records(&bytes);
        prop_assert!(skipped <= bytes.len() as u64);
        prop_assert!(events.len() <= bytes.len() / crate::segment::RECORD_HEADER);
    }
}
