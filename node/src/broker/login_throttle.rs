//! Throttling of failed logins, sans-IO (every call takes `now`).
//!
//! Two bounds, so that one device with a wrong password behind a carrier NAT does not lock out
//! the other devices behind the same address, while a password spray from one address is
//! still stopped:
//!
//! - **Per (address, user name)**: after a failed login that pair is refused at once for
//!   `auth.failure_delay_ms`, doubling with each further failure up to
//!   `auth.max_failure_delay_ms`. Only a password check that was made and failed counts: an
//!   attempt refused while penalised, or a connection gone before its check ended, never
//!   extends the penalty.
//! - **Per address**, whatever the user names: at most `auth.max_address_failures_per_min`
//!   failed checks a minute (a bucket of that many, refilled over a minute). While it is
//!   empty every login from the address is refused at once.
//!
//! An IPv6 address counts as its /64 (what one host or one home is given), so that a client
//! cannot step round both bounds by changing the low bits of its address.
//!
//! Both tables hold at most `auth.max_tracked_addresses` entries; when full, entries that
//! no longer hold anything back are dropped first, then the half that holds back least (the
//! penalties ending soonest, the buckets fullest), so that a scan of many addresses cannot
//! wipe out the penalty of the one that sprayed. A user name is kept as
//! a keyed hash, so an entry costs the same whatever the name's length (up to 64 KiB).

use std::collections::HashMap;
use std::hash::BuildHasher as _;
use std::hash::RandomState;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use crate::settings::AuthSettings;

/// Why a login is refused before its password is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Penalty {
    /// This user name failed from this address a moment ago.
    User,
    /// This address failed too often, whatever the user names.
    Address,
}

impl Penalty {
    /// What the `access` event says.
    pub fn reason(self) -> &'static str {
        match self {
            Self::User => "penalised after failed logins for this user name from this address",
            Self::Address => "penalised after too many failed logins from this address",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct UserFailures {
    count: u32,
    /// Refused at once until then.
    until: Instant,
}

#[derive(Debug, Clone, Copy)]
struct AddressBucket {
    /// Failed checks still allowed now (fractions refill over time).
    tokens: f64,
    at: Instant,
}

/// The throttle's state.
#[derive(Debug)]
pub struct LoginThrottle {
    base: Duration,
    max: Duration,
    per_address: f64,
    capacity: usize,
    /// Keyed by (address, hash of the user name): bounded memory per entry.
    users: HashMap<(IpAddr, u64), UserFailures>,
    addresses: HashMap<IpAddr, AddressBucket>,
    /// A random key per process, so that nobody can choose user names that collide.
    names: RandomState,
}

/// The address the throttle and the fair check queue count `ip` as: an IPv4 address (also
/// one mapped into IPv6) as it is, an IPv6 address as its /64.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !((1u128 << 64) - 1))),
        },
    }
}

/// The window of `auth.max_address_failures_per_min`.
const ADDRESS_WINDOW: Duration = Duration::from_secs(60);

/// The penalty after `count` failures: `base`, doubling, at most `max`.
fn penalty(base: Duration, max: Duration, count: u32) -> Duration {
    let factor = 1u32 << count.saturating_sub(1).min(20);
    base.saturating_mul(factor).min(max)
}

impl AddressBucket {
    /// Failed checks allowed at `now`, with what refilled since `at` (`full` a minute).
    fn tokens_at(&self, now: Instant, full: f64) -> f64 {
        let refill = now.saturating_duration_since(self.at).as_secs_f64()
            / ADDRESS_WINDOW.as_secs_f64()
            * full;
        (self.tokens + refill).min(full)
    }
}

impl LoginThrottle {
    /// A throttle with the bounds of `s`.
    pub fn new(s: &AuthSettings) -> Self {
        Self {
            base: Duration::from_millis(s.failure_delay_ms),
            max: Duration::from_millis(s.max_failure_delay_ms),
            per_address: s.max_address_failures_per_min.max(1) as f64,
            capacity: s.max_tracked_addresses.max(1),
            users: HashMap::new(),
            addresses: HashMap::new(),
            names: RandomState::new(),
        }
    }

    fn user_key(&self, addr: IpAddr, user: &str) -> (IpAddr, u64) {
        (address_key(addr), self.names.hash_one(user))
    }

    /// Whether a login of `user` from `addr` may be checked at `now`; `Err` refuses it at
    /// once (and changes nothing: a refused attempt never lengthens a penalty).
    pub fn admit(&self, addr: IpAddr, user: &str, now: Instant) -> Result<(), Penalty> {
        if let Some(b) = self.addresses.get(&address_key(addr)) {
            if b.tokens_at(now, self.per_address) < 1.0 {
                return Err(Penalty::Address);
            }
        }
        match self.users.get(&self.user_key(addr, user)) {
            Some(f) if now < f.until => Err(Penalty::User),
            _ => Ok(()),
        }
    }

    /// A password check of `user` from `addr` failed at `now`.
    pub fn failed(&mut self, addr: IpAddr, user: &str, now: Instant) {
        self.make_room(now);
        let (base, max, full) = (self.base, self.max, self.per_address);
        let key = self.user_key(addr, user);
        let f = self.users.entry(key).or_insert(UserFailures {
            count: 0,
            until: now,
        });
        // A pair quiet for longer than the longest penalty starts again from the first.
        if now.saturating_duration_since(f.until) > max {
            f.count = 0;
        }
        f.count = f.count.saturating_add(1);
        f.until = now + penalty(base, max, f.count);
        let bucket = self.addresses.entry(key.0).or_insert(AddressBucket {
            tokens: full,
            at: now,
        });
        *bucket = AddressBucket {
            tokens: (bucket.tokens_at(now, full) - 1.0).max(0.0),
            at: now,
        };
    }

    /// A login of `user` from `addr` succeeded: that pair starts afresh (the address's
    /// bucket does not: a spray that guesses one password is still a spray).
    pub fn succeeded(&mut self, addr: IpAddr, user: &str) {
        let key = self.user_key(addr, user);
        self.users.remove(&key);
    }

    /// Keeps both tables under `capacity` entries: first drops what holds nothing back any
    /// more, then (under a scan of many addresses) the half that holds back least.
    fn make_room(&mut self, now: Instant) {
        if self.users.len() >= self.capacity {
            let max = self.max;
            self.users.retain(|_, f| f.until + max > now);
            if self.users.len() >= self.capacity {
                let mut ends: Vec<Instant> = self.users.values().map(|f| f.until).collect();
                ends.sort_unstable();
                let cut = ends[ends.len() / 2];
                self.users.retain(|_, f| f.until > cut);
            }
        }
        if self.addresses.len() >= self.capacity {
            let full = self.per_address;
            self.addresses.retain(|_, b| b.tokens_at(now, full) < full);
            if self.addresses.len() >= self.capacity {
                // Keep the half that failed most (fewest failures left): a scan of many
                // addresses with one failure each must not wipe out a spray's empty bucket.
                let mut left: Vec<f64> = self
                    .addresses
                    .values()
                    .map(|b| b.tokens_at(now, full))
                    .collect();
                left.sort_unstable_by(f64::total_cmp);
                let cut = left[left.len() / 2];
                // At most half stay (all alike: none).
                self.addresses.retain(|_, b| b.tokens_at(now, full) < cut);
            }
        }
    }

    /// Entries held (both tables), for tests and status.
    pub fn tracked(&self) -> usize {
        self.users.len() + self.addresses.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AuthSettings {
        AuthSettings {
            failure_delay_ms: 100,
            max_failure_delay_ms: 1000,
            max_address_failures_per_min: 10,
            ..AuthSettings::default()
        }
    }

    const NAT: [u8; 4] = [10, 0, 0, 1];

    #[test]
    fn a_failing_user_is_penalised_and_others_behind_the_same_address_are_not() {
        let mut t = LoginThrottle::new(&settings());
        let ip: IpAddr = NAT.into();
        let t0 = Instant::now();
        assert_eq!(t.admit(ip, "bad", t0), Ok(()));
        t.failed(ip, "bad", t0);
        assert_eq!(t.admit(ip, "bad", t0), Err(Penalty::User));
        assert_eq!(t.admit(ip, "good", t0), Ok(()), "per (address, user)");
        assert_eq!(t.admit([10, 0, 0, 2].into(), "bad", t0), Ok(()));
        // 100 ms, then 200, 400, ... capped at 1 s.
        assert_eq!(
            t.admit(ip, "bad", t0 + Duration::from_millis(99)),
            Err(Penalty::User)
        );
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(t.admit(ip, "bad", t1), Ok(()));
        t.failed(ip, "bad", t1);
        assert_eq!(
            t.admit(ip, "bad", t1 + Duration::from_millis(199)),
            Err(Penalty::User)
        );
        assert_eq!(
            penalty(t.base, t.max, 9),
            Duration::from_millis(1000),
            "capped"
        );
        t.succeeded(ip, "bad");
        assert_eq!(t.admit(ip, "bad", t1), Ok(()));
    }

    #[test]
    fn refused_attempts_never_lengthen_the_penalty() {
        let mut t = LoginThrottle::new(&settings());
        let ip: IpAddr = NAT.into();
        let t0 = Instant::now();
        t.failed(ip, "u", t0);
        for i in 0..100 {
            // 100 attempts (closed at once, or refused) while penalised.
            assert!(t.admit(ip, "u", t0 + Duration::from_millis(i)).is_err());
        }
        assert_eq!(t.admit(ip, "u", t0 + Duration::from_millis(100)), Ok(()));
    }

    #[test]
    fn a_spray_of_user_names_from_one_address_is_stopped_and_refills() {
        let mut t = LoginThrottle::new(&settings());
        let ip: IpAddr = NAT.into();
        let t0 = Instant::now();
        for i in 0..10 {
            let user = format!("user{i}");
            assert_eq!(t.admit(ip, &user, t0), Ok(()), "{user}");
            t.failed(ip, &user, t0);
        }
        assert_eq!(t.admit(ip, "user10", t0), Err(Penalty::Address));
        assert_eq!(t.admit(ip, "anyone", t0), Err(Penalty::Address));
        assert_eq!(
            t.admit([10, 0, 0, 9].into(), "anyone", t0),
            Ok(()),
            "other addresses"
        );
        // 10 a minute: one more after 6 s.
        assert_eq!(
            t.admit(ip, "user10", t0 + Duration::from_secs(5)),
            Err(Penalty::Address)
        );
        assert_eq!(t.admit(ip, "user10", t0 + Duration::from_secs(6)), Ok(()));
    }

    #[test]
    fn a_pair_quiet_for_long_starts_again_from_the_first_delay() {
        let mut t = LoginThrottle::new(&settings());
        let ip: IpAddr = NAT.into();
        let t0 = Instant::now();
        for i in 0..5 {
            t.failed(ip, "u", t0 + Duration::from_secs(i));
        }
        let later = t0 + Duration::from_secs(60);
        t.failed(ip, "u", later);
        assert_eq!(t.admit(ip, "u", later + Duration::from_millis(100)), Ok(()));
    }

    #[test]
    fn memory_is_bounded_under_a_scan() {
        let mut t = LoginThrottle::new(&AuthSettings {
            max_tracked_addresses: 10,
            ..settings()
        });
        let now = Instant::now();
        for i in 0..=255u8 {
            t.failed([10, 0, 1, i].into(), &format!("u{i}"), now);
        }
        assert!(
            t.users.len() <= 10 && t.addresses.len() <= 10,
            "{}",
            t.tracked()
        );
    }

    #[test]
    fn a_scan_of_many_addresses_does_not_free_a_spraying_one() {
        let mut t = LoginThrottle::new(&AuthSettings {
            max_tracked_addresses: 10,
            ..settings()
        });
        let now = Instant::now();
        let spray: IpAddr = NAT.into();
        for i in 0..10 {
            t.failed(spray, &format!("user{i}"), now);
        }
        assert_eq!(t.admit(spray, "next", now), Err(Penalty::Address));
        // Then one failure from each of many other addresses fills the table over and over.
        for i in 0..=255u8 {
            t.failed([10, 0, 1, i].into(), "u", now);
            assert!(t.addresses.len() <= 10);
        }
        assert_eq!(t.admit(spray, "next", now), Err(Penalty::Address));
    }

    #[test]
    fn an_ipv6_64_counts_as_one_address() {
        let mut t = LoginThrottle::new(&settings());
        let t0 = Instant::now();
        let host = |low: u16| IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, low]);
        // A spray stepping through the low bits of one /64 drains one bucket.
        for i in 0..10u16 {
            let user = format!("user{i}");
            assert_eq!(t.admit(host(i), &user, t0), Ok(()), "{user}");
            t.failed(host(i), &user, t0);
        }
        assert_eq!(t.admit(host(999), "user0", t0), Err(Penalty::Address));
        let next_64 = IpAddr::from([0x2001, 0xdb8, 0, 2, 0, 0, 0, 1]);
        assert_eq!(t.admit(next_64, "user0", t0), Ok(()));
        // An IPv4 address mapped into IPv6 is the IPv4 address.
        let v4: IpAddr = NAT.into();
        let mapped = IpAddr::V6(std::net::Ipv4Addr::from(NAT).to_ipv6_mapped());
        assert_eq!(address_key(mapped), v4);
        t.failed(v4, "u", t0);
        assert_eq!(t.admit(mapped, "u", t0), Err(Penalty::User));
    }

    #[test]
    fn long_user_names_are_kept_as_hashes_and_told_apart() {
        let mut t = LoginThrottle::new(&settings());
        let t0 = Instant::now();
        let ip: IpAddr = NAT.into();
        let long = "x".repeat(65_535);
        t.failed(ip, &long, t0);
        assert_eq!(t.admit(ip, &long, t0), Err(Penalty::User));
        assert_eq!(t.admit(ip, &long[1..], t0), Ok(()));
    }
}
