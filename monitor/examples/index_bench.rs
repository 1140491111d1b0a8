//! Ingest, indexing and search figures for the monitor's event index (issue #7 targets).
//!
//! 1. Live: a producer thread writes N synthetic events (1,000 clients, 9 classes; event
//!    times 10 µs apart) through the real log engine (`LogHandle::write_events`, in batches of
//!    1,000 as the link does) at an offered rate, while the [`Indexer`] runs on its own
//!    thread, committing every 500 ms. Reports the rate reached, how long after being written
//!    events became searchable (p50/p99/max, sampled every 10 ms), CPU per event (generation,
//!    segments and indexing together), and bytes on disk per event.
//! 2. `reindex` of the same segments into a new index: rebuild speed.
//! 3. 200 warm queries of each kind on the live index: `client:cNNN` newest 100, and
//!    `class:access` over a tenth of the time span, newest 100; then the console's search page
//!    (a page of 50, the total and a 60-bar date histogram over the whole span) and its device
//!    timeline (a client's newest 10,000 events).
//!
//! CPU time comes from `/proc/self/stat`: on a machine shared with other work, events/s depends
//! on the share the bench gets, CPU per event much less.
//!
//! ```text
//! cargo run --release -p fubar-monitor --example index_bench
//! FUBAR_BENCH_EVENTS=10000000 FUBAR_BENCH_DIR=/tmp/bench cargo run --release ...
//! ```
//! Settings (environment): `FUBAR_BENCH_EVENTS` (default 1,000,000), `FUBAR_BENCH_RATE`
//! (offered events/s, default 100,000; 0: as fast as it goes), `FUBAR_BENCH_HEAP` (writer heap
//! bytes, default 50 MB), `FUBAR_BENCH_DIR` (scratch dir, default a temp dir; its `logs`,
//! `index` and `rebuilt` are deleted first), `FUBAR_BENCH_REINDEX` (0: without the rebuild),
//! `FUBAR_BENCH_QUERIES` (0: without the queries).

#![allow(clippy::unwrap_used, reason = "a benchmark stops at its first error")]

use std::collections::VecDeque;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use fubar_logproto::{Class, Event};
use fubar_logs::LogConfig;
use fubar_monitor::index::{EventIndex, DEFAULT_INDEX_HEAP_BYTES};
use fubar_monitor::indexer::{reindex, Indexer, IndexerConfig};
use fubar_monitor::search::{search, search_page, PageRequest, SearchRequest};

/// Segment file size, as the log engine's default.
const SEGMENT_BYTES: u64 = 10 << 20;
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

/// The live pipeline's figures.
struct Live {
    /// Until the last event was written / was searchable.
    written: Duration,
    searchable: Duration,
    cpu: Duration,
    /// Write-to-searchable delays, sorted.
    lags: Vec<Duration>,
}

/// Writes `n` events through the log engine at `rate` events/s (0: as fast as it goes), in
/// batches of 1,000 as the link does, while an indexer thread tails the segments. Every 10 ms
/// the main thread notes how many events are written and how many are searchable: an event
/// is searchable `lag` after it was written.
fn live(log_dir: &Path, index: &Arc<EventIndex>, n: u64, rate: u64, t0: i64) -> Live {
    let config = LogConfig {
        node: "monitor@host".into(),
        epoch: 1,
        dir: log_dir.to_path_buf(),
        max_bytes: SEGMENT_BYTES,
        max_files: 100_000,
        classes: Vec::new(),
        channel_capacity: 1024,
        flush_interval: Duration::from_millis(100),
        max_events_per_sec: 0,
    };
    let (handle, _layer) = fubar_logs::start(config).unwrap();
    let written = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut indexer = Indexer::new(Arc::clone(index), IndexerConfig::new(log_dir)).unwrap();
    let indexing = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || indexer.run(&stop).unwrap())
    };
    let (start, cpu_start) = (Instant::now(), cpu_time());
    let producer = {
        let written = Arc::clone(&written);
        thread::spawn(move || {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
            for first in (0..n).step_by(1_000) {
                let last = (first + 1_000).min(n);
                let batch: Vec<Event> = (first..last).map(|i| synthetic(i, t0, &mut rng)).collect();
                handle.write_events(&batch).unwrap();
                written.store(last, Ordering::Release);
                if rate > 0 {
                    let due = start + Duration::from_secs_f64(last as f64 / rate as f64);
                    thread::sleep(due.saturating_duration_since(Instant::now()));
                }
            }
            let took = start.elapsed();
            handle.shutdown();
            took
        })
    };
    let mut samples: VecDeque<(Instant, u64)> = VecDeque::new();
    let mut lags = Vec::new();
    loop {
        let now = Instant::now();
        samples.push_back((now, written.load(Ordering::Acquire)));
        let searchable = index.num_docs();
        while samples.front().is_some_and(|(_, w)| *w <= searchable) {
            if let Some((at, w)) = samples.pop_front() {
                if w > 0 {
                    lags.push(now - at);
                }
            }
        }
        if searchable >= n {
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    let searchable = start.elapsed();
    let cpu = cpu_time().saturating_sub(cpu_start);
    let written = producer.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    indexing.join().unwrap();
    lags.sort_unstable();
    Live {
        written,
        searchable,
        cpu,
        lags,
    }
}

fn main() {
    let n = env_or("FUBAR_BENCH_EVENTS", 1_000_000) as u64;
    let rate = env_or("FUBAR_BENCH_RATE", 100_000) as u64;
    let heap = env_or("FUBAR_BENCH_HEAP", DEFAULT_INDEX_HEAP_BYTES);
    let temp;
    let root = match std::env::var_os("FUBAR_BENCH_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            temp = tempfile::tempdir().unwrap();
            temp.path().to_path_buf()
        }
    };
    let (log_dir, index_dir, rebuilt_dir) =
        (root.join("logs"), root.join("index"), root.join("rebuilt"));
    for dir in [&log_dir, &index_dir, &rebuilt_dir] {
        let _ = fs::remove_dir_all(dir);
    }
    println!(
        "{n} events, 1000 clients, 9 classes, offered at {rate} events/s (0: unpaced), writer heap {heap} bytes, in {}",
        root.display()
    );

    let t0 = chrono::Utc::now().timestamp_micros() - n as i64 * STEP_US;
    let index = Arc::new(EventIndex::open_or_create(&index_dir, heap).unwrap());
    let run = live(&log_dir, &index, n, rate, t0);
    let pct = |p: usize| run.lags[(run.lags.len() - 1) * p / 100];
    println!(
        "live (log engine segments + indexer): written at {:.0} events/s, all searchable after {:.1} s: {:.0} events/s",
        n as f64 / run.written.as_secs_f64(),
        run.searchable.as_secs_f64(),
        n as f64 / run.searchable.as_secs_f64(),
    );
    println!(
        "  written to searchable: p50 {:?}, p99 {:?}, max {:?}; CPU {:.1} µs/event ({:.0}% of a core)",
        pct(50),
        pct(99),
        pct(100),
        run.cpu.as_secs_f64() * 1e6 / n as f64,
        100.0 * run.cpu.as_secs_f64() / run.searchable.as_secs_f64()
    );
    let (segment_bytes, index_bytes) = (dir_bytes(&log_dir), dir_bytes(&index_dir));
    println!(
        "  on disk: segments {:.1} bytes/event ({} MB), index {:.1} bytes/event ({} MB, {} tantivy segments)",
        segment_bytes as f64 / n as f64,
        segment_bytes >> 20,
        index_bytes as f64 / n as f64,
        index_bytes >> 20,
        index.segments()
    );

    if env_or("FUBAR_BENCH_REINDEX", 1) != 0 {
        rebuild(&log_dir, &rebuilt_dir, heap, n);
    }
    if env_or("FUBAR_BENCH_QUERIES", 1) != 0 {
        queries(&index, n, t0);
    }
}

/// Part 2: `reindex` of the segments into a new index.
fn rebuild(log_dir: &Path, rebuilt_dir: &Path, heap: usize, n: u64) {
    let (start, cpu_start) = (Instant::now(), cpu_time());
    let stats = reindex(log_dir, rebuilt_dir, heap).unwrap();
    let (secs, cpu) = (
        start.elapsed().as_secs_f64(),
        cpu_time().saturating_sub(cpu_start),
    );
    assert_eq!(stats.indexed, n);
    println!(
        "reindex from the segments: {:.0} events/s ({:.1} s, {} commits), CPU {:.1} µs/event ({:.0}% of a core)",
        n as f64 / secs,
        secs,
        stats.commits,
        cpu.as_secs_f64() * 1e6 / n as f64,
        100.0 * cpu.as_secs_f64() / secs
    );
    let _ = fs::remove_dir_all(rebuilt_dir);
}

/// Part 3: warm queries on the live index.
fn queries(index: &EventIndex, n: u64, t0: i64) {
    let span = n as i64 * STEP_US;
    let (p50, p99) = latency(index, |i| SearchRequest {
        query: format!("client:c{:03}", (i as u64 * 7919) % CLIENTS),
        limit: 100,
        ..SearchRequest::default()
    });
    println!("client:cNNN newest 100: p50 {p50:?}, p99 {p99:?}");
    let (p50, p99) = latency(index, |i| {
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
    console_pages(index, n, t0);
}

/// The console's search page (50 events of a page, the total and a 60-bar histogram in one
/// pass) and a device timeline (a client's newest 10,000 events), warm.
fn console_pages(index: &EventIndex, n: u64, t0: i64) {
    let span = n as i64 * STEP_US;
    let until = t0 + span + 1;
    let page = |query: String, from_us: i64| PageRequest {
        search: SearchRequest {
            query,
            ..SearchRequest::default()
        },
        from_us,
        until_us: until,
        page_size: 50,
        page: 0,
        buckets: 60,
    };
    let (p50, p99) = timed(|i| {
        let request = page(format!("client:c{:03}", (i as u64 * 7919) % CLIENTS), t0);
        search_page(index, &request).unwrap().total
    });
    println!("console search page client:cNNN, whole span + histogram: p50 {p50:?}, p99 {p99:?}");
    let (p50, p99) = timed(|_| {
        let request = page("class:access".into(), t0);
        search_page(index, &request).unwrap().total
    });
    println!("console search page class:access, whole span + histogram: p50 {p50:?}, p99 {p99:?}");
    let (p50, p99) = timed(|_| search_page(index, &page(String::new(), t0)).unwrap().total);
    println!("console search page, every event, whole span + histogram: p50 {p50:?}, p99 {p99:?}");
    let mut sizes = 0;
    let (p50, p99) = timed(|i| {
        let request = SearchRequest {
            query: format!("client:c{:03}", (i as u64 * 7919) % CLIENTS),
            limit: 10_000,
            ..SearchRequest::default()
        };
        let found = search(index, &request).unwrap().len();
        sizes = found;
        found
    });
    println!("console timeline (a client's newest {sizes} events): p50 {p50:?}, p99 {p99:?}");
}

/// p50 and p99 of `QUERIES` runs of `run` (after one warm-up run).
fn timed(mut run: impl FnMut(usize) -> usize) -> (Duration, Duration) {
    std::hint::black_box(run(0));
    let mut times: Vec<Duration> = (0..QUERIES)
        .map(|i| {
            let start = Instant::now();
            std::hint::black_box(run(i));
            start.elapsed()
        })
        .collect();
    times.sort();
    (times[QUERIES / 2], times[QUERIES * 99 / 100])
}
