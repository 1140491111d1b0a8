//! Per-node link statistics for `log list` on the monitor. Sans-IO: times are passed in.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::dedup::Counts;

/// Length of the window over which a node's event rate is measured.
const RATE_WINDOW: Duration = Duration::from_secs(2);

/// One node as the monitor sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeStats {
    /// The node's name.
    pub node: String,
    /// Whether a link from it is up.
    pub connected: bool,
    /// Its address on the current (or last) link.
    pub peer: Option<SocketAddr>,
    /// The boot epoch of its newest batch.
    pub epoch: u64,
    /// The sequence number acknowledged last (of `epoch`).
    pub upto_seq: u64,
    /// Events written per second, over the last couple of seconds.
    pub events_per_sec: f64,
    /// How far behind the node's newest shipped event was when it was written: the monitor's
    /// clock minus the event's time, in milliseconds (clock skew included).
    pub lag_ms: Option<i64>,
    /// Totals over the epochs kept: events, duplicates, lost, not shipped, missing.
    pub counts: Counts,
    /// Batches taken since start.
    pub batches: u64,
    /// Links refused or closed for a protocol violation, since start.
    pub rejected: u64,
}

/// Events per second over a short window.
#[derive(Debug, Clone)]
pub(crate) struct Rate {
    start: Instant,
    count: u64,
    last: f64,
}

impl Rate {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            start: now,
            count: 0,
            last: 0.0,
        }
    }

    pub(crate) fn add(&mut self, now: Instant, n: u64) {
        self.roll(now);
        self.count += n;
    }

    pub(crate) fn per_sec(&mut self, now: Instant) -> f64 {
        self.roll(now);
        self.last
    }

    fn roll(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.start);
        if elapsed >= RATE_WINDOW {
            // A window with no event at all after a long quiet spell reads 0.
            self.last = if elapsed >= 2 * RATE_WINDOW && self.count == 0 {
                0.0
            } else {
                self.count as f64 / elapsed.as_secs_f64()
            };
            self.start = now;
            self.count = 0;
        }
    }
}

/// The live part of a node's statistics.
#[derive(Debug, Clone)]
pub(crate) struct NodeLive {
    pub(crate) connected: bool,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) epoch: u64,
    pub(crate) upto_seq: u64,
    pub(crate) lag_ms: Option<i64>,
    pub(crate) counts: Counts,
    pub(crate) batches: u64,
    pub(crate) rejected: u64,
    pub(crate) last_seen: Instant,
    rate: Rate,
}

impl NodeLive {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            connected: false,
            peer: None,
            epoch: 0,
            upto_seq: 0,
            lag_ms: None,
            counts: Counts::default(),
            batches: 0,
            rejected: 0,
            last_seen: now,
            rate: Rate::new(now),
        }
    }

    /// A batch was written: `fresh` new events, the newest stamped `newest_us` (if any),
    /// `wall_us` the monitor's clock, `counts` the node's totals after it.
    pub(crate) fn on_batch(&mut self, now: Instant, batch: BatchDone) {
        self.last_seen = now;
        self.batches += 1;
        self.epoch = batch.epoch;
        self.upto_seq = batch.upto;
        self.counts = batch.counts;
        self.rate.add(now, batch.fresh);
        if let Some(t) = batch.newest_us {
            self.lag_ms = Some(batch.wall_us.saturating_sub(t) / 1000);
        }
    }

    pub(crate) fn snapshot(&mut self, node: &str, now: Instant) -> NodeStats {
        NodeStats {
            node: node.to_owned(),
            connected: self.connected,
            peer: self.peer,
            epoch: self.epoch,
            upto_seq: self.upto_seq,
            events_per_sec: self.rate.per_sec(now),
            lag_ms: self.lag_ms,
            counts: self.counts,
            batches: self.batches,
            rejected: self.rejected,
        }
    }
}

/// What one written batch amounts to, for the statistics.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchDone {
    pub(crate) epoch: u64,
    pub(crate) upto: u64,
    pub(crate) fresh: u64,
    pub(crate) newest_us: Option<i64>,
    pub(crate) wall_us: i64,
    pub(crate) counts: Counts,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_measured_over_windows_with_a_fake_clock() {
        let t0 = Instant::now();
        let mut r = Rate::new(t0);
        r.add(t0, 100);
        r.add(t0 + Duration::from_secs(1), 100);
        assert_eq!(
            r.per_sec(t0 + Duration::from_secs(1)),
            0.0,
            "first window open"
        );
        assert_eq!(r.per_sec(t0 + RATE_WINDOW), 100.0);
        assert_eq!(r.per_sec(t0 + RATE_WINDOW * 4), 0.0, "quiet since");
    }

    #[test]
    fn a_batch_updates_the_live_figures() {
        let t0 = Instant::now();
        let mut live = NodeLive::new(t0);
        live.on_batch(
            t0,
            BatchDone {
                epoch: 7,
                upto: 10,
                fresh: 4,
                newest_us: Some(1_000_000),
                wall_us: 3_500_000,
                counts: Counts {
                    events: 4,
                    ..Counts::default()
                },
            },
        );
        let s = live.snapshot("n1@h", t0 + RATE_WINDOW);
        assert_eq!((s.epoch, s.upto_seq, s.batches), (7, 10, 1));
        assert_eq!(s.lag_ms, Some(2500));
        assert_eq!(s.events_per_sec, 2.0);
        assert_eq!(s.counts.events, 4);
    }
}
