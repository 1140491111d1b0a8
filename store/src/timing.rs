//! A lock-free histogram of durations, for figures a scrape reads while the timed path keeps
//! running (the group commit's fsyncs here, a node's CONNECT handling): recording is two
//! relaxed atomic additions, reading takes no lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in microseconds (100 µs to 10 s; slower goes to `+Inf`).
pub const BUCKET_BOUNDS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Counts of durations per bucket, and their sum.
#[derive(Debug, Default)]
pub struct DurationHistogram {
    /// One count per bound of `BUCKET_BOUNDS_US`, then the ones above the last.
    counts: [AtomicU64; 17],
    sum_us: AtomicU64,
}

/// What a histogram holds at one reading, as Prometheus wants it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// (upper bound in seconds, durations in this bucket and above the one before: not
    /// cumulative, as prometheus-client's encoder wants them), `+Inf` last.
    pub buckets: Vec<(f64, u64)>,
    /// Durations recorded.
    pub count: u64,
    /// Their sum, in seconds.
    pub sum_seconds: f64,
}

impl DurationHistogram {
    /// Records one duration.
    pub fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = BUCKET_BOUNDS_US.partition_point(|&b| b < us);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// The counts now (each read once; a duration recorded meanwhile may show in the count of
    /// its bucket and not yet in the sum).
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut count = 0;
        let mut buckets = Vec::with_capacity(self.counts.len());
        for (i, c) in self.counts.iter().enumerate() {
            let n = c.load(Ordering::Relaxed);
            count += n;
            let bound = BUCKET_BOUNDS_US
                .get(i)
                .map_or(f64::INFINITY, |&us| us as f64 / 1e6);
            buckets.push((bound, n));
        }
        HistogramSnapshot {
            buckets,
            count,
            sum_seconds: self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_land_in_their_buckets() {
        let h = DurationHistogram::default();
        h.record(Duration::from_micros(100));
        h.record(Duration::from_micros(101));
        h.record(Duration::from_millis(3));
        h.record(Duration::from_secs(60));
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.buckets[0], (0.0001, 1));
        assert_eq!(s.buckets[1], (0.00025, 1));
        assert_eq!(s.buckets[5], (0.005, 1));
        assert_eq!(s.buckets[15], (10.0, 0));
        assert_eq!(s.buckets[16], (f64::INFINITY, 1));
        assert!((s.sum_seconds - 60.003201).abs() < 1e-9);
    }
}
