//! How far the search index is behind the events: for every event a commit makes
//! searchable, the time from when its node logged it (its `time_us`) to that commit, on the
//! monitor's clock. It includes the shipping and any clock skew between the node and the
//! monitor. Kept as a sum and a count (an average over any window is their rates' ratio) and
//! the largest lag of the last commit, read by `/metrics` while the indexer runs.

use std::sync::atomic::{AtomicU64, Ordering};

/// The lag figures, shared between the indexer thread and `/metrics`.
#[derive(Debug, Default)]
pub struct IndexLag {
    /// Sum of the lags of every event made searchable, in microseconds.
    sum_us: AtomicU64,
    /// Events made searchable.
    events: AtomicU64,
    /// The largest lag among the events of the last commit, in microseconds.
    last_max_us: AtomicU64,
}

/// What [`IndexLag`] holds at one reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexLagFigures {
    /// Sum of the lags of every event made searchable, in microseconds.
    pub sum_us: u64,
    /// Events made searchable.
    pub events: u64,
    /// The largest lag among the events of the last commit, in microseconds.
    pub last_max_us: u64,
}

impl IndexLag {
    /// The figures now.
    pub fn figures(&self) -> IndexLagFigures {
        IndexLagFigures {
            sum_us: self.sum_us.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            last_max_us: self.last_max_us.load(Ordering::Relaxed),
        }
    }
}

/// The times of the events added since the last commit.
#[derive(Debug, Default)]
pub(crate) struct PendingTimes {
    count: u64,
    sum_us: i128,
    oldest_us: Option<i64>,
}

impl PendingTimes {
    /// An event logged at `time_us` was added to the index.
    pub(crate) fn note(&mut self, time_us: i64) {
        self.count += 1;
        self.sum_us += i128::from(time_us);
        self.oldest_us = Some(self.oldest_us.map_or(time_us, |o| o.min(time_us)));
    }

    /// The events noted were committed at `now_us`: adds their lags to `lag`, and forgets
    /// them. An event stamped later than `now_us` (clock skew) counts as no lag.
    pub(crate) fn committed(&mut self, now_us: i64, lag: &IndexLag) {
        if let Some(oldest) = self.oldest_us {
            let total = i128::from(self.count) * i128::from(now_us) - self.sum_us;
            let total = u64::try_from(total.max(0)).unwrap_or(u64::MAX);
            let max = u64::try_from(now_us.saturating_sub(oldest).max(0)).unwrap_or(0);
            lag.sum_us.fetch_add(total, Ordering::Relaxed);
            lag.events.fetch_add(self.count, Ordering::Relaxed);
            lag.last_max_us.store(max, Ordering::Relaxed);
        }
        self.forget();
    }

    /// Forgets the events noted (their documents were rolled back).
    pub(crate) fn forget(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_adds_the_lags_of_its_events() {
        let lag = IndexLag::default();
        let mut pending = PendingTimes::default();
        pending.note(1_000_000);
        pending.note(1_500_000);
        pending.committed(2_000_000, &lag);
        assert_eq!(
            lag.figures(),
            IndexLagFigures {
                sum_us: 1_500_000,
                events: 2,
                last_max_us: 1_000_000
            }
        );
        // Nothing pending: a commit (of deletions only) changes nothing.
        pending.committed(9_000_000, &lag);
        assert_eq!(lag.figures().events, 2);
        // An event from a node whose clock is ahead counts as no lag.
        pending.note(3_000_000);
        pending.committed(2_500_000, &lag);
        assert_eq!(lag.figures().sum_us, 1_500_000);
        assert_eq!(lag.figures().events, 3);
        assert_eq!(lag.figures().last_max_us, 0);
    }
}
