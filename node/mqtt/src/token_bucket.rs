//! A token bucket, sans-IO: the overload limits (`mqtt.max_connections_per_sec` at accept,
//! `mqtt.max_messages_per_sec` per connection) ask it whether they may go on, and for how long
//! to stop reading when they may not.
//!
//! It holds `rate` tokens at most (one second's worth, so a client may burst that many at
//! once) and gains one every `1 / rate` seconds. It keeps no clock and no timer: time is passed
//! in, and the caller sleeps. A rate of 0 means no limit.
//!
//! ### Invariants
//!
//! It is kept as the time its balance will next be full (`full_at`, the generic cell rate
//! algorithm's "theoretical arrival time"), so an idle bucket costs nothing to keep up to date
//! and a full one does not grow past its burst: `full_at <= now` means the bucket is full, and
//! `full_at - now` is the time the tokens taken and not yet regained would take to come back,
//! never more than `burst_window`.

use std::time::{Duration, Instant};

/// Paces an action to a number per second, with a burst of one second's worth.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Tokens per second; 0 for no limit.
    rate: u64,
    /// Time one token takes to come back.
    interval: Duration,
    /// Time the whole burst takes to come back (`rate` × `interval`, at most one second).
    burst_window: Duration,
    /// When the bucket will be full again if nothing more is taken.
    full_at: Instant,
}

impl TokenBucket {
    /// A full bucket at `now` for `rate` actions per second (0: no limit).
    pub fn new(rate: u64, now: Instant) -> Self {
        let interval = match rate {
            0 => Duration::ZERO,
            r => Duration::from_nanos(1_000_000_000 / r),
        };
        Self {
            rate,
            interval,
            burst_window: interval * u32::try_from(rate).unwrap_or(u32::MAX),
            full_at: now,
        }
    }

    /// The rate it was made for (0: no limit).
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Whether the bucket holds its whole burst at `now` (nothing taken is still owed).
    pub fn is_full(&self, now: Instant) -> bool {
        self.full_at <= now
    }

    /// Takes one token at `now` if there is one. Otherwise takes nothing and returns how long
    /// to wait until there is one.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        if self.interval.is_zero() {
            return Ok(());
        }
        let full_at = self.full_at.max(now) + self.interval;
        let latest = now + self.burst_window;
        if full_at <= latest {
            self.full_at = full_at;
            Ok(())
        } else {
            Err(full_at - latest)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Takes tokens at `now` until one is refused; returns how many were taken and the wait.
    fn drain(b: &mut TokenBucket, now: Instant) -> (u64, Duration) {
        let mut taken = 0;
        loop {
            match b.try_take(now) {
                Ok(()) => taken += 1,
                Err(wait) => return (taken, wait),
            }
            assert!(taken <= 1_000_000, "the bucket never ran dry");
        }
    }

    #[test]
    fn a_full_bucket_gives_one_seconds_worth_then_asks_to_wait_one_interval() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(50, t0);
        assert_eq!(drain(&mut b, t0), (50, 20 * MS));
        assert!(!b.is_full(t0));
    }

    #[test]
    fn tokens_come_back_at_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(50, t0);
        let _ = drain(&mut b, t0);
        // Too early: still the rest of the interval to wait, and nothing taken.
        assert_eq!(b.try_take(t0 + 5 * MS), Err(15 * MS));
        assert_eq!(b.try_take(t0 + 20 * MS), Ok(()));
        assert_eq!(b.try_take(t0 + 20 * MS), Err(20 * MS));
        // A quarter of a second later, a quarter of the burst has come back.
        let t1 = t0 + 270 * MS;
        assert_eq!(drain(&mut b, t1).0, 12);
    }

    #[test]
    fn a_client_at_the_rate_is_never_refused() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100, t0);
        let _ = drain(&mut b, t0);
        for i in 1..=1000 {
            assert_eq!(b.try_take(t0 + i * 10 * MS), Ok(()), "token {i}");
        }
    }

    #[test]
    fn a_flood_gets_the_rate_over_time() {
        // Taking whenever the bucket says so, for ten seconds: the burst plus ten seconds'
        // worth, whatever the steps of the fake clock.
        let t0 = Instant::now();
        let mut b = TokenBucket::new(30, t0);
        let mut now = t0;
        let mut taken = 0;
        while now < t0 + Duration::from_secs(10) {
            match b.try_take(now) {
                Ok(()) => taken += 1,
                Err(wait) => {
                    assert!(wait > Duration::ZERO && wait <= b.interval, "{wait:?}");
                    now += wait;
                }
            }
        }
        assert_eq!(taken, 30 + 300);
    }

    #[test]
    fn an_idle_bucket_refills_to_its_burst_and_no_more() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, t0);
        let _ = drain(&mut b, t0);
        let later = t0 + Duration::from_secs(3600);
        assert!(b.is_full(later));
        assert_eq!(drain(&mut b, later).0, 10);
    }

    #[test]
    fn rate_one_allows_one_a_second() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1, t0);
        assert_eq!(b.try_take(t0), Ok(()));
        assert_eq!(b.try_take(t0), Err(Duration::from_secs(1)));
        assert_eq!(b.try_take(t0 + 999 * MS), Err(MS));
        assert_eq!(b.try_take(t0 + Duration::from_secs(1)), Ok(()));
    }

    #[test]
    fn rate_zero_never_limits() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(0, t0);
        for _ in 0..100_000 {
            assert_eq!(b.try_take(t0), Ok(()));
        }
        assert!(b.is_full(t0));
        assert_eq!(b.rate(), 0);
    }
}
