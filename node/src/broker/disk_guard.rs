//! The disk guard: whether the disk of the data folder is too full for new persistent data
//! (retained messages, persistent sessions). A full disk would make fjall fail its writes
//! and the node stop; refusing growth early keeps it serving (issue 16.5).
//!
//! The free space is read with `statvfs` at most once per `store.disk_check_ms`, so the
//! publish path costs one clock read and a lock, not a system call.

use parking_lot::Mutex;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Whether the data folder's disk keeps `store.min_free_disk_bytes` free.
#[derive(Debug)]
pub struct DiskGuard {
    /// A folder on the disk watched (the node's folder; its parent until it exists).
    path: PathBuf,
    state: Mutex<GuardState>,
}

#[derive(Debug)]
struct GuardState {
    min_free: u64,
    interval: Duration,
    /// When the disk was last looked at, and the free bytes then (`None`: unreadable).
    last: Option<(Instant, Option<u64>)>,
    /// Whether the last refusal was reported (one `warning` per low period).
    reported: bool,
}

/// The disk is too full for new persistent data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("disk of the data folder has {free} bytes free, less than store.min_free_disk_bytes ({min_free})")]
pub struct DiskLow {
    /// Free bytes (for an unprivileged process) at the last look.
    pub free: u64,
    /// The threshold.
    pub min_free: u64,
}

impl DiskGuard {
    /// A guard over the disk holding `path`; `min_free` 0 turns it off.
    pub fn new(path: PathBuf, min_free: u64, interval: Duration) -> Self {
        Self {
            path,
            state: Mutex::new(GuardState {
                min_free,
                interval,
                last: None,
                reported: false,
            }),
        }
    }

    /// Changes the threshold and the interval (a run-time settings change); the next check
    /// looks at the disk again.
    pub fn set_limits(&self, min_free: u64, interval: Duration) {
        let mut s = self.state.lock();
        s.min_free = min_free;
        s.interval = interval;
        s.last = None;
    }

    /// `Err` while the disk has less than the threshold free.
    pub fn check(&self, now: Instant) -> Result<(), DiskLow> {
        let mut s = self.state.lock();
        if s.min_free == 0 {
            return Ok(());
        }
        let cached = s
            .last
            .filter(|(at, _)| now.saturating_duration_since(*at) < s.interval);
        let free = match cached {
            Some((_, free)) => free,
            None => {
                let free = self.free_bytes();
                s.last = Some((now, free));
                free
            }
        };
        if free.is_none_or(|f| f >= s.min_free) {
            s.reported = false;
            return Ok(());
        }
        let low = DiskLow {
            free: free.unwrap_or(0),
            min_free: s.min_free,
        };
        if !s.reported {
            s.reported = true;
            tracing::warn!(target: "warning", path = %self.path.display(), free = low.free,
                min_free = low.min_free, "disk nearly full: new persistent data refused");
        }
        Err(low)
    }

    /// Bytes free for an unprivileged process on the watched disk; `None` when it cannot be
    /// read (the guard then lets writes through: a missing folder is not a full disk).
    fn free_bytes(&self) -> Option<u64> {
        let mut dir = self.path.as_path();
        loop {
            match rustix::fs::statvfs(dir) {
                Ok(st) => return Some(st.f_bavail.saturating_mul(st.f_frsize)),
                Err(_) => dir = dir.parent()?,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_threshold_reads_as_a_full_disk_and_zero_turns_the_guard_off() {
        let dir = tempfile::tempdir().unwrap();
        let guard = DiskGuard::new(
            dir.path().join("not-yet"),
            u64::MAX,
            Duration::from_secs(60),
        );
        let now = Instant::now();
        let low = guard.check(now).unwrap_err();
        assert_eq!(low.min_free, u64::MAX);
        assert!(
            low.free > 0,
            "the free space was read through the parent folder"
        );
        guard.set_limits(1, Duration::from_secs(60));
        assert_eq!(guard.check(now), Ok(()));
        guard.set_limits(0, Duration::from_secs(60));
        assert_eq!(guard.check(now), Ok(()));
    }
}
