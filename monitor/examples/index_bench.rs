//! Indexing and search figures for the monitor's event index (issue #7 targets).
//!
//! Writes N synthetic events (1,000 clients, 9 classes, 100,000 events/s of event time) as
//! segment files, indexes them with the [`Indexer`] (committing every 500 ms, as in
//! production), then times 200 warm queries of each kind: `client:cNNN` newest 100, and
//! `class:access` over a time window newest 100. The segment files are written in the log
//! engine's format by a plain buffered writer (the bench measures the index, not the engine).
//! Indexing CPU time comes from `/proc/self/stat`, so the figure per core holds on a machine
//! shared with other work, where events/s depends on the share the bench gets.
//!
//! ```text
//! cargo run --release -p fubar-monitor --example index_bench
//! FUBAR_BENCH_EVENTS=10000000 FUBAR_BENCH_DIR=/tmp/bench cargo run --release ...
//! ```
//! Settings (environment): `FUBAR_BENCH_EVENTS` (default 1,000,000), `FUBAR_BENCH_HEAP`
//! (writer heap bytes, default 50 MB), `FUBAR_BENCH_DIR` (scratch dir, default a temp dir;
//! its `logs` and `index` are deleted first).

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fubar_logproto::{Class, Event};
use fubar_logs::{class_dir, encode_record};
use fubar_monitor::index::{EventIndex, DEFAULT_INDEX_HEAP_BYTES};
use fubar_monitor::indexer::{Indexer, IndexerConfig};
use fubar_monitor::search::{search, SearchRequest};

/// Segment file size, as the log engine's default.
const SEGMENT_BYTES: usize = 10 << 20;
const CLIENTS: u64 = 1_000;
const QUERIES: usize = 200;
/// Event time step: 100,000 events per second.
const STEP_US: i64 = 10;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// A small xorshift generator: reproducible and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Event `i`: shaped like the broker's access, protocol and resource events.
fn synthetic(i: u64, t0: i64, rng: &mut Rng) -> Event {
    let class = Class::ALL[(i % 9) as usize];
    let client = format!("c{:03}", rng.next() % CLIENTS);
    let peer = format!("10.0.{}.{}:{}", i % 200, i % 250, 30_000 + i % 20_000);
    let (message, fields): (&str, Vec<(&'static str, String)>) = match class {
        Class::Access => (
            if i.is_multiple_of(2) {
                "connected"
            } else {
                "disconnected"
            },
            vec![
                ("client", client),
                ("peer", peer),
                ("protocol", "MQTT 3.1.1".into()),
            ],
        ),
        Class::Protocol | Class::Trace | Class::Packet => (
            "packet",
            vec![
                ("dir", "in".into()),
                ("client", client),
                ("peer", peer),
                ("kind", "PUBLISH".into()),
                ("topic", format!("sensors/{}/temp", rng.next() % 10_000)),
                ("qos", "1".into()),
                ("size", (20 + i % 200).to_string()),
            ],
        ),
        Class::Resource => (
            "subscription added",
            vec![
                ("client", client),
                ("filter", format!("sensors/{}/#", i % 100)),
            ],
        ),
        _ => (
            "keep-alive timeout",
            vec![("client", client), ("reason", "keep-alive timeout".into())],
        ),
    };
    Event {
        node: format!("n{}@host", i % 4 + 1),
        epoch: 1,
        seq: i,
        time_us: t0 + i as i64 * STEP_US,
        class,
        message: message.into(),
        fields: fields.into_iter().map(|(k, v)| (k.into(), v)).collect(),
    }
}

/// One class's rolling segment files.
struct Segments {
    dir: PathBuf,
    number: u64,
    bytes: usize,
    out: Option<BufWriter<File>>,
}

impl Segments {
    fn append(&mut self, record: &[u8]) {
        if self.out.is_none() || self.bytes + record.len() > SEGMENT_BYTES {
            self.number += 1;
            self.bytes = 0;
            let path = self.dir.join(format!("{:012}.seg", self.number));
            self.out = Some(BufWriter::with_capacity(
                64 << 10,
                File::create(path).unwrap(),
            ));
        }
        if let Some(out) = &mut self.out {
            out.write_all(record).unwrap();
        }
        self.bytes += record.len();
    }
}

/// Writes `n` events as segment files; returns the first event's time.
fn write_segments(log_dir: &Path, n: u64) -> i64 {
    let t0 = chrono::Utc::now().timestamp_micros() - n as i64 * STEP_US;
    let mut classes: Vec<Segments> = Class::ALL
        .iter()
        .map(|c| {
            let dir = class_dir(log_dir, *c);
            fs::create_dir_all(&dir).unwrap();
            Segments {
                dir,
                number: 0,
                bytes: 0,
                out: None,
            }
        })
        .collect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for i in 0..n {
        let event = synthetic(i, t0, &mut rng);
        classes[event.class.index()].append(&encode_record(&event).unwrap());
    }
    for c in &mut classes {
        if let Some(out) = &mut c.out {
            out.flush().unwrap();
        }
    }
    t0
}

/// CPU time (user and system) this process has used, from /proc (Linux); zero elsewhere.
fn cpu_time() -> Duration {
    let stat = fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses: utime is the 12th, stime the 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    // The kernel's USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

fn dir_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// p50 and p99 of `QUERIES` runs of `request(i)`, after 20 warm-up runs.
fn latency(index: &EventIndex, request: impl Fn(usize) -> SearchRequest) -> (Duration, Duration) {
    for i in 0..20 {
        search(index, &request(i + QUERIES)).unwrap();
    }
    let mut times: Vec<Duration> = (0..QUERIES)
        .map(|i| {
            let r = request(i);
            let start = Instant::now();
            let found = search(index, &r).unwrap();
            let took = start.elapsed();
            assert!(!found.is_empty(), "{r:?} found nothing");
            took
        })
        .collect();
    times.sort_unstable();
    (times[QUERIES / 2], times[QUERIES * 99 / 100])
}

fn main() {
    let n = env_or("FUBAR_BENCH_EVENTS", 1_000_000) as u64;
    let heap = env_or("FUBAR_BENCH_HEAP", DEFAULT_INDEX_HEAP_BYTES);
    let temp;
    let root = match std::env::var_os("FUBAR_BENCH_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            temp = tempfile::tempdir().unwrap();
            temp.path().to_path_buf()
        }
    };
    let (log_dir, index_dir) = (root.join("logs"), root.join("index"));
    let _ = fs::remove_dir_all(&log_dir);
    let _ = fs::remove_dir_all(&index_dir);
    println!(
        "{n} events, 1000 clients, 9 classes, writer heap {heap} bytes, in {}",
        root.display()
    );

    let start = Instant::now();
    let t0 = write_segments(&log_dir, n);
    let write_secs = start.elapsed().as_secs_f64();
    let segment_bytes = dir_bytes(&log_dir);
    println!(
        "segments: {:.0} events/s written, {:.1} bytes/event ({} MB)",
        n as f64 / write_secs,
        segment_bytes as f64 / n as f64,
        segment_bytes >> 20
    );

    let index = Arc::new(EventIndex::open_or_create(&index_dir, heap).unwrap());
    let mut indexer = Indexer::new(Arc::clone(&index), IndexerConfig::new(&log_dir)).unwrap();
    let (start, cpu_start) = (Instant::now(), cpu_time());
    while indexer.poll(Instant::now()).unwrap().indexed > 0 {}
    indexer.poll_once().unwrap();
    let index_secs = start.elapsed().as_secs_f64();
    let index_cpu = cpu_time().saturating_sub(cpu_start).as_secs_f64();
    let stats = indexer.stats();
    assert_eq!((stats.indexed, index.num_docs()), (n, n));
    let index_bytes = dir_bytes(&index_dir);
    println!(
        "index: {:.0} events/s indexed ({:.1} s, {} commits), {:.1} bytes/event ({} MB), {} segments",
        n as f64 / index_secs,
        index_secs,
        stats.commits,
        index_bytes as f64 / n as f64,
        index_bytes >> 20,
        index.segments()
    );
    println!(
        "index CPU: {:.1} µs/event, {:.0} events/s per core busy ({:.0}% of a core on average)",
        index_cpu * 1e6 / n as f64,
        n as f64 / index_cpu,
        100.0 * index_cpu / index_secs
    );
    println!(
        "segments then index, one after the other: {:.0} events/s",
        n as f64 / (write_secs + index_secs)
    );

    let span = n as i64 * STEP_US;
    let (p50, p99) = latency(&index, |i| SearchRequest {
        query: format!("client:c{:03}", (i as u64 * 7919) % CLIENTS),
        limit: 100,
        ..SearchRequest::default()
    });
    println!("client:cNNN newest 100: p50 {p50:?}, p99 {p99:?}");
    let (p50, p99) = latency(&index, |i| {
        // A window of a tenth of the time span, at 200 different places.
        let from = t0 + span * (i % 90) as i64 / 100;
        SearchRequest {
            query: "class:access".into(),
            from_us: Some(from),
            until_us: Some(from + span / 10),
            limit: 100,
            ..SearchRequest::default()
        }
    });
    println!("class:access + time range newest 100: p50 {p50:?}, p99 {p99:?}");
}
