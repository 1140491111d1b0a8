//! How far the search index is behind the events: for every event a commit makes
//! searchable, the time from when its node logged it (its `time_us`) to that commit, on the
//! monitor's clock. It includes the shipping and any clock skew between the node and the
//! monitor. Kept as a histogram `/metrics` reads while the indexer runs (relaxed atomics).

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of the lag buckets, in microseconds (10 ms to 5 min; slower goes to `+Inf`).
pub const LAG_BOUNDS_US: [u64; 12] = [
    10_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    30_000_000,
    60_000_000,
    300_000_000,
];

/// The lag histogram, shared between the indexer thread and `/metrics`.
#[derive(Debug, Default)]
pub struct IndexLag {
    /// Events per bucket of `LAG_BOUNDS_US` (not cumulative), then the ones above the last.
    counts: [AtomicU64; LAG_BOUNDS_US.len() + 1],
    /// Sum of the lags, in microseconds.
    sum_us: AtomicU64,
}

/// What [`IndexLag`] holds at one reading.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexLagFigures {
    /// (upper bound in seconds, events in this bucket only), `+Inf` last.
    pub buckets: Vec<(f64, u64)>,
    /// Events made searchable.
    pub count: u64,
    /// Sum of their lags, in seconds.
    pub sum_seconds: f64,
}

impl IndexLag {
    fn record(&self, lag_us: u64) {
        let i = LAG_BOUNDS_US.partition_point(|&b| b < lag_us);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(lag_us, Ordering::Relaxed);
    }

    /// The figures now.
    pub fn figures(&self) -> IndexLagFigures {
        let mut count = 0;
        let buckets = self
            .counts
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let n = c.load(Ordering::Relaxed);
                count += n;
                let bound = LAG_BOUNDS_US
                    .get(i)
                    .map_or(f64::INFINITY, |&us| us as f64 / 1e6);
                (bound, n)
            })
            .collect();
        IndexLagFigures {
            buckets,
            count,
            sum_seconds: self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// When the events added since the last commit were logged.
#[derive(Debug, Default)]
pub(crate) struct PendingTimes {
    times_us: Vec<i64>,
}

impl PendingTimes {
    /// An event logged at `time_us` was added to the index.
    pub(crate) fn note(&mut self, time_us: i64) {
        self.times_us.push(time_us);
    }

    /// The events noted were committed at `now_us`: records their lags in `lag`, and forgets
    /// them. An event stamped later than `now_us` (clock skew) counts as no lag.
    pub(crate) fn committed(&mut self, now_us: i64, lag: &IndexLag) {
        for t in self.times_us.drain(..) {
            lag.record(u64::try_from(now_us.saturating_sub(t)).unwrap_or(0));
        }
    }

    /// Forgets the events noted (their documents were rolled back).
    pub(crate) fn forget(&mut self) {
        self.times_us.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_records_the_lag_of_each_of_its_events() {
        let lag = IndexLag::default();
        let mut pending = PendingTimes::default();
        pending.note(1_000_000);
        pending.note(1_980_000);
        pending.committed(2_000_000, &lag);
        let f = lag.figures();
        assert_eq!(f.count, 2);
        assert!((f.sum_seconds - 1.02).abs() < 1e-9);
        assert_eq!(f.buckets[1], (0.05, 1), "20 ms");
        assert_eq!(f.buckets[5], (1.0, 1), "1 s");
        // Nothing pending: a commit (of deletions only) records nothing.
        pending.committed(9_000_000, &lag);
        assert_eq!(lag.figures().count, 2);
        // An event from a node whose clock is ahead counts as no lag; a rolled back one not at all.
        pending.note(3_000_000);
        pending.committed(2_500_000, &lag);
        pending.note(1);
        pending.forget();
        pending.committed(2_500_000, &lag);
        let f = lag.figures();
        assert_eq!((f.count, f.buckets[0]), (3, (0.01, 1)));
        assert_eq!(f.buckets.last(), Some(&(f64::INFINITY, 0)));
    }
}
