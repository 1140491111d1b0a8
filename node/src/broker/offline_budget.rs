//! The node-wide bound on bytes queued for persistent sessions whose client is away
//! (`session.max_offline_queued_bytes`). Each session's queue has its own bounds; without
//! this one, many sessions left offline (a client-id generator, a fleet that went dark) could
//! together hold any amount of memory and disk.
//!
//! Each session slot remembers what it counts here (`SessionSlot::offline_counted`): set to
//! its queue's bytes whenever a message is queued while it is away, given back when a
//! connection takes the session or the session ends. So the total never drifts upwards: at
//! worst a session that went away with a backlog is counted from its first new message.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::disk_guard::DiskGuard;

/// How often at most a `warning` reports refused messages.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// Bytes queued node-wide for absent clients, and the bound.
#[derive(Debug)]
pub struct OfflineBudget {
    used: AtomicUsize,
    max: AtomicUsize,
    /// Messages refused since the last warning, and when that was (ms since `start`).
    unreported: AtomicU64,
    last_report_ms: AtomicU64,
    refused_total: AtomicU64,
    start: Instant,
    /// While the data folder's disk is nearly full, nothing more is queued for absent
    /// clients (their queues are persistent data).
    disk: Option<Arc<DiskGuard>>,
}

impl OfflineBudget {
    /// A budget of `max` bytes, refusing everything while `disk` says the disk is low.
    pub fn new(max: usize, disk: Option<Arc<DiskGuard>>) -> Self {
        Self {
            used: AtomicUsize::new(0),
            max: AtomicUsize::new(max),
            unreported: AtomicU64::new(0),
            last_report_ms: AtomicU64::new(0),
            refused_total: AtomicU64::new(0),
            start: Instant::now(),
            disk,
        }
    }

    /// Changes the bound (run time); what is queued stays.
    pub fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::Relaxed);
    }

    /// Bytes counted now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Messages refused since start.
    pub fn refused_total(&self) -> u64 {
        self.refused_total.load(Ordering::Relaxed)
    }

    /// Why `extra` more bytes may not be queued for an absent client at `now`, if so.
    pub fn refusal(&self, extra: usize, now: Instant) -> Option<&'static str> {
        if self.used().saturating_add(extra) > self.max.load(Ordering::Relaxed) {
            return Some("session.max_offline_queued_bytes");
        }
        if self.disk.as_ref().is_some_and(|d| d.check(now).is_err()) {
            return Some("disk nearly full (store.min_free_disk_bytes)");
        }
        None
    }

    /// A session's count goes from `from` to `to` bytes.
    pub fn adjust(&self, from: usize, to: usize) {
        if to >= from {
            self.used.fetch_add(to - from, Ordering::Relaxed);
        } else {
            let less = from - to;
            // Never below zero, whatever the order of concurrent updates.
            let _ = self
                .used
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                    Some(u.saturating_sub(less))
                });
        }
    }

    /// Counts one refused message; returns how many to report now (at most once a second).
    pub fn note_refused(&self, now: Instant) -> Option<u64> {
        self.refused_total.fetch_add(1, Ordering::Relaxed);
        self.unreported.fetch_add(1, Ordering::Relaxed);
        let now_ms = u64::try_from(now.saturating_duration_since(self.start).as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let last = self.last_report_ms.load(Ordering::Relaxed);
        let due = last == 0 || now_ms.saturating_sub(last) >= REPORT_EVERY.as_millis() as u64;
        if due
            && self
                .last_report_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.unreported.swap(0, Ordering::Relaxed));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_up_and_down_and_never_below_zero() {
        let b = OfflineBudget::new(100, None);
        let now = Instant::now();
        assert!(b.refusal(100, now).is_none());
        b.adjust(0, 60);
        assert!(b.refusal(40, now).is_none() && b.refusal(41, now).is_some());
        b.adjust(60, 10);
        assert_eq!(b.used(), 10);
        b.adjust(50, 0); // more than is counted: stays at zero
        assert_eq!(b.used(), 0);
        b.set_max(0);
        assert!(b.refusal(1, now).is_some());
    }

    #[test]
    fn refusals_are_reported_at_most_once_a_second_with_their_count() {
        let b = OfflineBudget::new(0, None);
        let t = Instant::now();
        assert_eq!(b.note_refused(t), Some(1));
        assert_eq!(b.note_refused(t + Duration::from_millis(10)), None);
        assert_eq!(b.note_refused(t + Duration::from_millis(20)), None);
        assert_eq!(b.note_refused(t + Duration::from_millis(1100)), Some(3));
        assert_eq!(b.refused_total(), 4);
    }
}
