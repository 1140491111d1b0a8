use std::fs::OpenOptions;
use std::io::Write;

use fubar_logs::{decode_records, encode_record, LogConfig, Redirect};
use tracing_subscriber::layer::SubscriberExt;

use super::*;
use crate::index::tests::{event, T0};
use crate::search::{search, search_at, SearchRequest, MAX_LIMIT};
use fubar_logproto::Event;

fn ev(class: Class, seq: u64) -> Event {
    let client = format!("c{}", seq % 3);
    event("n1@host", class, seq, &[("client", &client)])
}

fn segment(log_dir: &Path, class: Class, number: u64) -> PathBuf {
    class_dir(log_dir, class).join(format!("{number:012}.seg"))
}

fn records(events: &[Event]) -> Vec<u8> {
    events
        .iter()
        .flat_map(|e| encode_record(e).unwrap())
        .collect()
}

/// Appends bytes to a segment file (creating it and its dir).
fn append(path: &Path, bytes: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(bytes).unwrap();
}

fn write_events(log_dir: &Path, class: Class, number: u64, seqs: std::ops::Range<u64>) {
    let events: Vec<Event> = seqs.map(|s| ev(class, s)).collect();
    append(&segment(log_dir, class, number), &records(&events));
}

fn open(dir: &Path) -> Arc<EventIndex> {
    Arc::new(EventIndex::open_or_create(dir, 0).unwrap())
}

fn indexer(index: &Arc<EventIndex>, log_dir: &Path) -> Indexer {
    Indexer::new(Arc::clone(index), IndexerConfig::new(log_dir)).unwrap()
}

/// Every indexed (class, seq), sorted: duplicates would show twice.
fn indexed(index: &EventIndex) -> Vec<(Class, u64)> {
    let all = SearchRequest {
        limit: MAX_LIMIT,
        ..SearchRequest::default()
    };
    let mut found: Vec<(Class, u64)> = search_at(index, &all, T0)
        .unwrap()
        .iter()
        .map(|e| (e.class, e.seq))
        .collect();
    found.sort_unstable();
    found
}

fn expect(class: Class, seqs: std::ops::Range<u64>) -> Vec<(Class, u64)> {
    seqs.map(|s| (class, s)).collect()
}

struct Dirs {
    logs: tempfile::TempDir,
    index: tempfile::TempDir,
}

fn dirs() -> Dirs {
    Dirs {
        logs: tempfile::tempdir().unwrap(),
        index: tempfile::tempdir().unwrap(),
    }
}

#[test]
fn new_records_and_new_segments_are_indexed_once() {
    let d = dirs();
    let index = open(d.index.path());
    let mut ix = indexer(&index, d.logs.path());
    assert_eq!(ix.poll_once().unwrap().indexed, 0, "no log yet");
    write_events(d.logs.path(), Class::Access, 1, 0..3);
    write_events(d.logs.path(), Class::Error, 1, 100..101);
    assert_eq!(ix.poll_once().unwrap().indexed, 4);
    write_events(d.logs.path(), Class::Access, 1, 3..5);
    write_events(d.logs.path(), Class::Access, 2, 5..7);
    let delta = ix.poll_once().unwrap();
    assert_eq!((delta.indexed, delta.commits), (4, 1));
    assert_eq!(ix.poll_once().unwrap().indexed, 0);
    let mut want = expect(Class::Access, 0..7);
    want.push((Class::Error, 100));
    assert_eq!(indexed(&index), want);
}

#[test]
fn a_restart_resumes_at_the_last_commit_without_duplicates_or_losses() {
    let d = dirs();
    write_events(d.logs.path(), Class::Access, 1, 0..10);
    let index = open(d.index.path());
    let mut ix = Indexer::new(
        Arc::clone(&index),
        IndexerConfig {
            commit_interval: Duration::from_secs(3600),
            ..IndexerConfig::new(d.logs.path())
        },
    )
    .unwrap();
    let t = Instant::now();
    assert_eq!(ix.poll(t).unwrap().commits, 1, "the first poll commits");
    write_events(d.logs.path(), Class::Access, 1, 10..15);
    let delta = ix.poll(t + Duration::from_secs(1)).unwrap();
    assert_eq!(
        (delta.indexed, delta.commits),
        (5, 0),
        "read, not yet committed"
    );
    // A crash: the uncommitted documents and read position are lost together.
    drop(ix);
    drop(index);
    write_events(d.logs.path(), Class::Access, 2, 15..20);
    let index = open(d.index.path());
    assert_eq!(indexed(&index), expect(Class::Access, 0..10));
    let mut ix = indexer(&index, d.logs.path());
    assert_eq!(ix.poll_once().unwrap().indexed, 10);
    assert_eq!(indexed(&index), expect(Class::Access, 0..20));
    // A clean restart.
    drop(ix);
    drop(index);
    let index = open(d.index.path());
    let mut ix = indexer(&index, d.logs.path());
    assert_eq!(ix.poll_once().unwrap().indexed, 0);
    assert_eq!(indexed(&index), expect(Class::Access, 0..20));
}

#[test]
fn segments_rotated_out_are_counted_missed_and_leave_the_index() {
    let d = dirs();
    let index = open(d.index.path());
    let mut ix = indexer(&index, d.logs.path());
    write_events(d.logs.path(), Class::Access, 1, 0..3);
    write_events(d.logs.path(), Class::Error, 1, 100..102);
    ix.poll_once().unwrap();
    for (n, seqs) in [(2, 3..6), (3, 6..9), (4, 9..12)] {
        write_events(d.logs.path(), Class::Access, n, seqs);
    }
    fs::remove_file(segment(d.logs.path(), Class::Access, 1)).unwrap();
    fs::remove_file(segment(d.logs.path(), Class::Access, 2)).unwrap();
    let delta = ix.poll_once().unwrap();
    assert_eq!(
        delta.missed_segments, 2,
        "1 was not known to be complete, 2 was never read"
    );
    assert_eq!(delta.indexed, 6);
    let mut want = expect(Class::Access, 6..12);
    want.extend(expect(Class::Error, 100..102));
    assert_eq!(
        indexed(&index),
        want,
        "segment 1's events left; error's stayed"
    );
}

#[test]
fn a_torn_tail_is_awaited_in_the_newest_file_and_skipped_in_a_final_one() {
    let d = dirs();
    let path = segment(d.logs.path(), Class::Access, 1);
    let index = open(d.index.path());
    let mut ix = indexer(&index, d.logs.path());
    // Two records and half of a third: the writer is mid-write.
    let third = encode_record(&ev(Class::Access, 2)).unwrap();
    append(
        &path,
        &records(&[ev(Class::Access, 0), ev(Class::Access, 1)]),
    );
    append(&path, &third[..third.len() / 2]);
    let delta = ix.poll_once().unwrap();
    assert_eq!((delta.indexed, delta.skipped_bytes), (2, 0));
    append(&path, &third[third.len() / 2..]);
    assert_eq!(ix.poll_once().unwrap().indexed, 1, "completed, then read");
    // A torn tail, then the writer moves on to the next file: the tail is skipped.
    append(&path, &[0, 0, 0, 99, 1, 2]);
    assert_eq!(ix.poll_once().unwrap().skipped_bytes, 0, "newest: awaited");
    write_events(d.logs.path(), Class::Access, 2, 3..4);
    let delta = ix.poll_once().unwrap();
    assert_eq!((delta.indexed, delta.skipped_bytes), (1, 6));
    assert_eq!(indexed(&index), expect(Class::Access, 0..4));
}

#[test]
fn a_bad_record_is_skipped_in_a_final_file_and_awaited_in_the_newest() {
    let d = dirs();
    let index = open(d.index.path());
    let mut ix = indexer(&index, d.logs.path());
    let mut bad = encode_record(&ev(Class::Access, 1)).unwrap();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    // In a final file: skipped alone, the records after it are read.
    let old = segment(d.logs.path(), Class::Access, 1);
    append(&old, &records(&[ev(Class::Access, 0)]));
    append(&old, &bad);
    append(&old, &records(&[ev(Class::Access, 2)]));
    // In the newest: the writer repairs it at restart by truncating, and appends after it.
    let new = segment(d.logs.path(), Class::Access, 2);
    append(&new, &records(&[ev(Class::Access, 3)]));
    let good = fs::metadata(&new).unwrap().len();
    append(&new, &bad);
    let delta = ix.poll_once().unwrap();
    assert_eq!((delta.indexed, delta.skipped_bytes), (3, bad.len() as u64));
    OpenOptions::new()
        .write(true)
        .open(&new)
        .unwrap()
        .set_len(good)
        .unwrap();
    append(&new, &records(&[ev(Class::Access, 4)]));
    let delta = ix.poll_once().unwrap();
    assert_eq!((delta.indexed, delta.skipped_bytes), (1, 0));
    let mut want = expect(Class::Access, 0..5);
    want.remove(1);
    assert_eq!(indexed(&index), want);
}

#[test]
fn time_retention_deletes_old_documents() {
    let d = dirs();
    let now = chrono::Utc::now().timestamp_micros();
    let mut old = ev(Class::Info, 0);
    old.time_us = now - 3_600_000_000;
    let mut recent = ev(Class::Info, 1);
    recent.time_us = now;
    append(
        &segment(d.logs.path(), Class::Info, 1),
        &records(&[old, recent]),
    );
    let index = open(d.index.path());
    let config = IndexerConfig {
        retention: Some(Duration::from_secs(60)),
        ..IndexerConfig::new(d.logs.path())
    };
    let mut ix = Indexer::new(Arc::clone(&index), config).unwrap();
    ix.poll_once().unwrap();
    // Deletes apply to what was committed before them: the next due pass removes `old`.
    ix.last_retention = None;
    ix.poll_once().unwrap();
    let seqs: Vec<u64> = indexed(&index).iter().map(|(_, s)| *s).collect();
    assert_eq!(seqs, [1]);
}

#[test]
fn reindex_rebuilds_the_same_results() {
    let d = dirs();
    write_events(d.logs.path(), Class::Access, 1, 0..20);
    write_events(d.logs.path(), Class::Access, 2, 20..30);
    write_events(d.logs.path(), Class::Protocol, 1, 100..140);
    let queries = ["", "client:c1", "client:c2 AND class:access", "event"];
    let results = |index: &EventIndex| -> Vec<Vec<Event>> {
        queries
            .iter()
            .map(|q| {
                let r = SearchRequest {
                    query: (*q).into(),
                    limit: 25,
                    ..SearchRequest::default()
                };
                search(index, &r).unwrap()
            })
            .collect()
    };
    let before = {
        let index = open(d.index.path());
        indexer(&index, d.logs.path()).poll_once().unwrap();
        // A duplicate the indexer would never make: reindex must drop it.
        index.add(&ev(Class::Access, 0)).unwrap();
        index.commit().unwrap();
        assert_eq!(index.num_docs(), 71);
        let before = results(&index);
        assert!(
            matches!(
                reindex(d.logs.path(), d.index.path(), 0),
                Err(IndexError::Tantivy { .. })
            ),
            "a held index is not deleted"
        );
        before
    };
    let stats = reindex(d.logs.path(), d.index.path(), 0).unwrap();
    assert_eq!(stats.indexed, 70);
    let index = open(d.index.path());
    assert_eq!(index.num_docs(), 70);
    let after = results(&index);
    assert_eq!(after[1..], before[1..]);
    assert_eq!(after[0].len(), 25);
    let stray = tempfile::tempdir().unwrap();
    fs::write(stray.path().join("notes.txt"), "keep me").unwrap();
    assert!(matches!(
        reindex(d.logs.path(), stray.path(), 0),
        Err(IndexError::NotAnIndex(_))
    ));
    assert!(stray.path().join("notes.txt").exists());
}

#[test]
fn events_written_by_the_log_engine_are_found() {
    let d = dirs();
    let config = LogConfig {
        node: "n9@host".into(),
        epoch: 5,
        dir: d.logs.path().to_path_buf(),
        max_bytes: 300,
        max_files: 3,
        classes: vec![(Class::Access, Redirect::None)],
        channel_capacity: 1024,
        flush_interval: Duration::from_secs(3600),
        max_events_per_sec: 0,
    };
    let (handle, layer) = fubar_logs::start(config).unwrap();
    let subscriber = tracing_subscriber::registry().with(layer);
    let index = open(d.index.path());
    let mut ix = indexer(&index, d.logs.path());
    tracing::subscriber::with_default(subscriber, || {
        for i in 0..5 {
            tracing::info!(target: "access", client = %format!("c{i}"), peer = "127.0.0.1:1", "connected");
        }
        handle.flush();
        assert_eq!(ix.poll_once().unwrap().indexed, 5);
        // Enough to rotate every file seen so far out of the log.
        for i in 5..40 {
            tracing::info!(target: "access", client = %format!("c{i}"), "keep-alive timeout");
        }
        handle.flush();
    });
    let delta = ix.poll_once().unwrap();
    handle.shutdown();
    let on_disk: Vec<u64> = fs::read_dir(class_dir(d.logs.path(), Class::Access))
        .unwrap()
        .map(|e| {
            let bytes = fs::read(e.unwrap().path()).unwrap();
            decode_records(&bytes).0.len() as u64
        })
        .collect();
    assert_eq!(
        index.num_docs(),
        on_disk.iter().sum::<u64>(),
        "the index follows the log"
    );
    // The files read first grew and rotated out between the polls: missed, not indexed.
    assert!(delta.missed_segments >= 1, "{delta:?}");
    assert_eq!(delta.indexed, index.num_docs());
    let hit = search(
        &index,
        &SearchRequest {
            query: "client:c39 \"keep-alive timeout\" node:n9@host".into(),
            limit: 10,
            ..SearchRequest::default()
        },
    )
    .unwrap();
    assert_eq!(hit.len(), 1);
    assert_eq!((hit[0].epoch, hit[0].field("client")), (5, Some("c39")));
}

#[test]
fn a_recreated_log_is_read_again_from_its_start() {
    let d = dirs();
    let index = open(d.index.path());
    let mut ix = indexer(&index, d.logs.path());
    write_events(d.logs.path(), Class::Access, 1, 0..5);
    ix.poll_once().unwrap();
    // The log dir is wiped and the writer starts again at file 1, shorter than before.
    fs::remove_dir_all(class_dir(d.logs.path(), Class::Access)).unwrap();
    write_events(d.logs.path(), Class::Access, 1, 10..12);
    let delta = ix.poll_once().unwrap();
    assert_eq!((delta.resets, delta.indexed), (1, 2));
    // Again, with the checkpoint past the newest file.
    write_events(d.logs.path(), Class::Access, 2, 12..13);
    write_events(d.logs.path(), Class::Access, 3, 13..14);
    ix.poll_once().unwrap();
    fs::remove_dir_all(class_dir(d.logs.path(), Class::Access)).unwrap();
    write_events(d.logs.path(), Class::Access, 1, 20..23);
    let delta = ix.poll_once().unwrap();
    assert_eq!((delta.resets, delta.indexed), (1, 3));
    let found = indexed(&index);
    assert_eq!(
        found.len(),
        5 + 2 + 2 + 3,
        "old documents stay until time retention"
    );
}

#[test]
fn a_running_indexer_makes_events_searchable_within_two_seconds() {
    let d = dirs();
    let index = open(d.index.path());
    let mut ix = indexer(&index, d.logs.path());
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || ix.run(&stop).map(|()| ix.stats()))
    };
    let path = segment(d.logs.path(), Class::Access, 1);
    for batch in 0..3u64 {
        let written = Instant::now();
        let seqs = batch * 10..batch * 10 + 10;
        append(
            &path,
            &records(&seqs.map(|s| ev(Class::Access, s)).collect::<Vec<_>>()),
        );
        while index.num_docs() < (batch + 1) * 10 {
            assert!(
                written.elapsed() < Duration::from_secs(2),
                "not searchable in 2 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let stats = thread.join().unwrap().unwrap();
    assert_eq!(stats.indexed, 30);
    assert_eq!(indexed(&index), expect(Class::Access, 0..30));
}
