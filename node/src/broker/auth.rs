//! Accounts and the checking of CONNECT credentials.
//!
//! Passwords are kept as argon2id hashes (PHC strings) in the store and in memory, never in
//! clear and never logged. Checking a password is deliberately slow, so it runs on the
//! blocking pool under a bound (`auth.max_concurrent_checks`). Failed attempts from one address
//! are throttled: after a failure, the next attempt from that address waits
//! `auth.failure_delay_ms`, doubling with each further failure up to
//! `auth.max_failure_delay_ms`, and attempts from one address are served one slot at a time, so
//! opening many connections at once does not multiply the guessing rate.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use fubar_store::records::AccountRecord;
use fubar_store::{Store, StoreError};
use tokio::sync::Semaphore;

use crate::mqtt::packet::ConnectReturnCode;
use crate::settings::AuthSettings;

/// Why credentials were refused, with the CONNACK code to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The return code.
    pub code: ConnectReturnCode,
    /// What the `access` event says.
    pub reason: &'static str,
}

/// The accounts of a node.
#[derive(Debug)]
pub struct Accounts {
    hashes: RwLock<HashMap<String, String>>,
    store: Option<Arc<Store>>,
    checks: Semaphore,
    /// A real hash to check against for unknown users, so that a refusal takes as long
    /// whether or not the user exists.
    decoy: String,
    throttle: Throttle,
}

/// Hashes a password (slow: call off the async threads).
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

fn verify(password: &[u8], phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| Argon2::default().verify_password(password, &h).is_ok())
        .unwrap_or(false)
}

impl Accounts {
    /// The accounts kept in `store` (none without one).
    pub fn load(store: Option<Arc<Store>>, settings: &AuthSettings) -> Result<Self, StoreError> {
        let mut hashes = HashMap::new();
        if let Some(s) = &store {
            for (name, record) in s.accounts()? {
                hashes.insert(name, record.password_hash);
            }
        }
        Ok(Self {
            hashes: RwLock::new(hashes),
            store,
            checks: Semaphore::new(settings.max_concurrent_checks.max(1)),
            decoy: hash_password("decoy").unwrap_or_default(),
            throttle: Throttle::new(settings),
        })
    }

    /// Creates an account or changes its password (slow: hashes).
    pub fn update(&self, name: &str, password: &str) -> Result<bool, String> {
        if name.is_empty() || name.contains('\0') {
            return Err("the account name must be non-empty and without NUL".into());
        }
        let password_hash = hash_password(password)?;
        if let Some(store) = &self.store {
            store
                .put_account(
                    name,
                    &AccountRecord {
                        password_hash: password_hash.clone(),
                    },
                )
                .map_err(|e| e.to_string())?;
        }
        let mut hashes = self.hashes.write().unwrap_or_else(PoisonError::into_inner);
        Ok(hashes.insert(name.to_owned(), password_hash).is_none())
    }

    /// Deletes an account; returns whether it existed.
    pub fn delete(&self, name: &str) -> Result<bool, String> {
        if let Some(store) = &self.store {
            store.delete_account(name).map_err(|e| e.to_string())?;
        }
        let mut hashes = self.hashes.write().unwrap_or_else(PoisonError::into_inner);
        Ok(hashes.remove(name).is_some())
    }

    /// Sets an account's password hash in memory only (the replicated state has stored it).
    pub fn set_hash(&self, name: &str, password_hash: &str) {
        let mut hashes = self.hashes.write().unwrap_or_else(PoisonError::into_inner);
        hashes.insert(name.to_owned(), password_hash.to_owned());
    }

    /// Forgets an account in memory only (the replicated state has deleted it).
    pub fn forget(&self, name: &str) {
        let mut hashes = self.hashes.write().unwrap_or_else(PoisonError::into_inner);
        hashes.remove(name);
    }

    /// Account names, sorted.
    pub fn names(&self) -> Vec<String> {
        let hashes = self.hashes.read().unwrap_or_else(PoisonError::into_inner);
        let mut names: Vec<String> = hashes.keys().cloned().collect();
        names.sort();
        names
    }

    /// Checks the credentials of a CONNECT from `peer`, after any throttling delay.
    pub async fn check(
        &self,
        peer: IpAddr,
        username: Option<&str>,
        password: Option<&[u8]>,
    ) -> Result<(), Refusal> {
        let wait = self.throttle.reserve(peer, Instant::now());
        if !wait.is_zero() {
            tracing::debug!(target: "access", %peer, wait_ms = wait.as_millis() as u64, "throttling after failed logins");
            tokio::time::sleep(wait).await;
        }
        let Some(user) = username else {
            self.throttle.failed(peer, Instant::now());
            return Err(Refusal {
                code: ConnectReturnCode::NotAuthorized,
                reason: "no user name given and anonymous access is off",
            });
        };
        let known = {
            let hashes = self.hashes.read().unwrap_or_else(PoisonError::into_inner);
            hashes.get(user).cloned()
        };
        let phc = known.clone().unwrap_or_else(|| self.decoy.clone());
        let password = password.unwrap_or_default().to_vec();
        let ok = {
            let _permit = self.checks.acquire().await;
            tokio::task::spawn_blocking(move || verify(&password, &phc))
                .await
                .unwrap_or(false)
        };
        if ok && known.is_some() {
            self.throttle.succeeded(peer);
            return Ok(());
        }
        self.throttle.failed(peer, Instant::now());
        Err(Refusal {
            code: ConnectReturnCode::BadUserNameOrPassword,
            reason: if known.is_some() {
                "wrong password"
            } else {
                "unknown user"
            },
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    next_slot: Instant,
}

/// Per-address throttling of failed logins.
#[derive(Debug)]
struct Throttle {
    base: Duration,
    max: Duration,
    capacity: usize,
    by_addr: Mutex<HashMap<IpAddr, Failures>>,
}

impl Throttle {
    fn new(s: &AuthSettings) -> Self {
        Self {
            base: Duration::from_millis(s.failure_delay_ms),
            max: Duration::from_millis(s.max_failure_delay_ms),
            capacity: s.max_tracked_addresses.max(1),
            by_addr: Mutex::default(),
        }
    }

    fn delay(&self, count: u32) -> Duration {
        let factor = 1u32 << count.saturating_sub(1).min(20);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// How long an attempt from `addr` starting at `now` must wait; reserves its slot.
    fn reserve(&self, addr: IpAddr, now: Instant) -> Duration {
        let mut map = self.by_addr.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(f) = map.get_mut(&addr) else {
            return Duration::ZERO;
        };
        let slot = f.next_slot.max(now);
        f.next_slot = slot + self.delay(f.count);
        slot - now
    }

    fn failed(&self, addr: IpAddr, now: Instant) {
        let mut map = self.by_addr.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= self.capacity && !map.contains_key(&addr) {
            // Forget addresses that have been quiet longest; bounded memory under a scan.
            let max = self.max;
            map.retain(|_, f| f.next_slot + max > now);
            if map.len() >= self.capacity {
                map.clear();
            }
        }
        let f = map.entry(addr).or_insert(Failures {
            count: 0,
            next_slot: now,
        });
        f.count = f.count.saturating_add(1);
        f.next_slot = f.next_slot.max(now + self.delay(f.count));
    }

    fn succeeded(&self, addr: IpAddr) {
        self.by_addr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AuthSettings {
        AuthSettings {
            failure_delay_ms: 100,
            max_failure_delay_ms: 1000,
            ..AuthSettings::default()
        }
    }

    #[test]
    fn hashes_are_salted_and_verify() {
        let a = hash_password("1234").unwrap();
        let b = hash_password("1234").unwrap();
        assert_ne!(a, b, "salted");
        assert!(a.starts_with("$argon2id$"));
        assert!(!a.contains("1234"));
        assert!(verify(b"1234", &a));
        assert!(!verify(b"12345", &a));
        assert!(!verify(b"1234", "not a hash"));
    }

    #[test]
    fn throttle_doubles_and_serializes_attempts() {
        let t = Throttle::new(&settings());
        let ip: IpAddr = [10, 0, 0, 1].into();
        let t0 = Instant::now();
        assert_eq!(t.reserve(ip, t0), Duration::ZERO, "no failures, no wait");
        t.failed(ip, t0);
        // Two attempts arriving together after one failure are served 100 ms apart.
        assert_eq!(t.reserve(ip, t0), Duration::from_millis(100));
        assert_eq!(t.reserve(ip, t0), Duration::from_millis(200));
        t.failed(ip, t0);
        t.failed(ip, t0);
        t.failed(ip, t0);
        t.failed(ip, t0);
        t.failed(ip, t0);
        assert_eq!(t.delay(6), Duration::from_millis(1000), "capped");
        t.succeeded(ip);
        assert_eq!(t.reserve(ip, t0), Duration::ZERO);
        let other: IpAddr = [10, 0, 0, 2].into();
        assert_eq!(t.reserve(other, t0), Duration::ZERO, "per address");
    }

    #[test]
    fn throttle_memory_is_bounded() {
        let t = Throttle::new(&AuthSettings {
            max_tracked_addresses: 10,
            ..settings()
        });
        let now = Instant::now();
        for i in 0..100u8 {
            t.failed([10, 0, 1, i].into(), now);
        }
        assert!(t.by_addr.lock().unwrap().len() <= 10);
    }

    #[tokio::test]
    async fn credentials_matrix() {
        let accounts = Accounts::load(None, &settings()).unwrap();
        accounts.update("romeo", "1234").unwrap();
        let peer: IpAddr = [127, 0, 0, 1].into();
        assert!(accounts
            .check(peer, Some("romeo"), Some(b"1234"))
            .await
            .is_ok());
        let wrong = accounts
            .check(peer, Some("romeo"), Some(b"nope"))
            .await
            .unwrap_err();
        assert_eq!(wrong.code, ConnectReturnCode::BadUserNameOrPassword);
        let unknown = accounts
            .check(peer, Some("juliet"), Some(b"1234"))
            .await
            .unwrap_err();
        assert_eq!(unknown.reason, "unknown user");
        let anonymous = accounts.check(peer, None, None).await.unwrap_err();
        assert_eq!(anonymous.code, ConnectReturnCode::NotAuthorized);
        assert!(accounts.delete("romeo").unwrap());
        assert!(accounts
            .check(peer, Some("romeo"), Some(b"1234"))
            .await
            .is_err());
        assert_eq!(accounts.names(), Vec::<String>::new());
    }
}
