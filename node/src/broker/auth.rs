//! Accounts and the checking of CONNECT credentials.
//!
//! Passwords are kept as argon2id hashes (PHC strings) in the store and in memory, never in
//! clear and never logged. Checking a password is deliberately slow, so it runs on the
//! blocking pool, at most `auth.max_concurrent_checks` at once, shared fairly between
//! addresses (`fair_checks`). Failed logins are throttled per (address, user name) and, much
//! higher, per address (`login_throttle`); an attempt while penalised is refused at once.

use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use super::fair_checks::FairChecks;
use super::login_throttle::{address_key, LoginThrottle, Penalty};
use crate::mqtt::packet::ConnectReturnCode;
use crate::mqtt::reason::ReasonCode;
use crate::settings::AuthSettings;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use fubar_store::records::AccountRecord;
use fubar_store::{Store, StoreError};

/// Why credentials were refused, with the CONNACK code to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The CONNACK code (MQTT 5.0; a 3.1/3.1.1 client gets its return code).
    pub code: ReasonCode,
    /// What the `access` event says.
    pub reason: &'static str,
}

/// The accounts of a node.
#[derive(Debug)]
pub struct Accounts {
    hashes: RwLock<HashMap<String, String>>,
    store: Option<Arc<Store>>,
    checks: Arc<FairChecks>,
    throttle: Mutex<LoginThrottle>,
}

/// Why an account could not be created, changed or deleted.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The name is empty or holds a NUL.
    #[error("the account name must be non-empty and without NUL")]
    BadName,
    /// The password hasher failed.
    #[error("cannot hash the password: {0}")]
    Hash(String),
    /// The store refused the change.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Hashes a password (slow: call off the async threads).
pub fn hash_password(password: &str) -> Result<String, AccountError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AccountError::Hash(e.to_string()))
}

/// What an unknown user's password is checked against, so that a refusal takes as long
/// whether or not the user exists: a hash in the form and with the costs of
/// `hash_password`'s (Argon2id, `Argon2::default()`; a test holds them equal), of no
/// password (its salt and output are fixed bytes). A constant, not hashed at start-up: the
/// hash's 19 MiB of working memory, freed at once, stayed resident (mimalloc returns a
/// thread's freed pages only when that thread allocates again) until the first connections
/// came, and the memory bench counted its return against them.
const DECOY: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$RZGuZY/Ln7PilRuJeIulWw$5cryZkshdj8V/yzs/0HpzFNd4Vt7Pmd0PHzJRe1AeR8";

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
            checks: FairChecks::new(settings.max_concurrent_checks),
            throttle: Mutex::new(LoginThrottle::new(settings)),
        })
    }

    /// Creates an account or changes its password (slow: hashes).
    pub fn update(&self, name: &str, password: &str) -> Result<bool, AccountError> {
        if name.is_empty() || name.contains('\0') {
            return Err(AccountError::BadName);
        }
        let password_hash = hash_password(password)?;
        self.put_hash(name, &password_hash)
    }

    /// Keeps an account's password hash (in the store, then in memory); returns whether the
    /// account is new.
    pub fn put_hash(&self, name: &str, password_hash: &str) -> Result<bool, AccountError> {
        if let Some(store) = &self.store {
            let record = AccountRecord {
                password_hash: password_hash.to_owned(),
            };
            store.put_account(name, &record)?;
        }
        let mut hashes = self.hashes.write();
        Ok(hashes
            .insert(name.to_owned(), password_hash.to_owned())
            .is_none())
    }

    /// Deletes an account; returns whether it existed.
    pub fn delete(&self, name: &str) -> Result<bool, AccountError> {
        if let Some(store) = &self.store {
            store.delete_account(name)?;
        }
        let mut hashes = self.hashes.write();
        Ok(hashes.remove(name).is_some())
    }

    /// Sets an account's password hash in memory only (the replicated state has stored it).
    pub fn set_hash(&self, name: &str, password_hash: &str) {
        let mut hashes = self.hashes.write();
        hashes.insert(name.to_owned(), password_hash.to_owned());
    }

    /// Forgets an account in memory only (the replicated state has deleted it).
    pub fn forget(&self, name: &str) {
        let mut hashes = self.hashes.write();
        hashes.remove(name);
    }

    /// Account names, sorted.
    pub fn names(&self) -> Vec<String> {
        let hashes = self.hashes.read();
        let mut names: Vec<String> = hashes.keys().cloned().collect();
        names.sort();
        names
    }

    fn throttle(&self) -> parking_lot::MutexGuard<'_, LoginThrottle> {
        self.throttle.lock()
    }

    /// Checks the credentials of a CONNECT from `peer`. A user name penalised at this
    /// address, or an address penalised for too many failures, is refused at once (MQTT 5.0
    /// 0x8A banned, 3.1.1 CONNACK 5) without a password check, also when the penalty began
    /// while this attempt waited for its turn.
    ///
    /// Drop the future when the connection goes away: nothing is then counted against the
    /// user or the address (a check already running still holds its slot until it ends, so
    /// `auth.max_concurrent_checks` bounds the work, however many connections come and go).
    pub async fn check(
        &self,
        peer: IpAddr,
        username: Option<&str>,
        password: Option<&[u8]>,
    ) -> Result<(), Refusal> {
        let user = username.unwrap_or("");
        let banned = |penalty: Penalty| Refusal {
            code: ReasonCode::Banned,
            reason: penalty.reason(),
        };
        self.throttle()
            .admit(peer, user, Instant::now())
            .map_err(banned)?;
        let Some(user) = username else {
            self.throttle().failed(peer, "", Instant::now());
            return Err(Refusal {
                code: ConnectReturnCode::NotAuthorized.into(),
                reason: "no user name given and anonymous access is off",
            });
        };
        let known = {
            let hashes = self.hashes.read();
            hashes.get(user).cloned()
        };
        let phc = known.clone().unwrap_or_else(|| DECOY.to_owned());
        let password = password.unwrap_or_default().to_vec();
        let slot = self.checks.acquire(address_key(peer)).await;
        // Attempts queued together (a burst of connections with the same wrong password)
        // are admitted before the first of them fails: look again now that it is our turn.
        self.throttle()
            .admit(peer, user, Instant::now())
            .map_err(banned)?;
        // The slot goes with the check and comes back with its verdict, so that the next
        // attempt in line sees this one's failure; if this future is dropped meanwhile, the
        // slot is freed only once the check has ended.
        let verdict = tokio::task::spawn_blocking(move || (verify(&password, &phc), slot)).await;
        let ok = verdict.as_ref().is_ok_and(|(ok, _)| *ok);
        if ok && known.is_some() {
            self.throttle().succeeded(peer, user);
            return Ok(());
        }
        self.throttle().failed(peer, user, Instant::now());
        Err(Refusal {
            code: ConnectReturnCode::BadUserNameOrPassword.into(),
            reason: if known.is_some() {
                "wrong password"
            } else {
                "unknown user"
            },
        })
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
    fn the_decoy_costs_what_a_real_hash_costs() {
        let decoy = PasswordHash::new(DECOY).unwrap();
        let real = hash_password("1234").unwrap();
        let real = PasswordHash::new(&real).unwrap();
        assert_eq!(decoy.algorithm, real.algorithm);
        assert_eq!(decoy.version, real.version);
        assert_eq!(decoy.params, real.params);
        assert_eq!(
            decoy.hash.map(|h| h.len()),
            real.hash.map(|h| h.len()),
            "the same output length"
        );
        assert_eq!(decoy.salt.map(|s| s.len()), real.salt.map(|s| s.len()));
        assert!(!verify(b"", DECOY) && !verify(b"decoy", DECOY));
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
        assert_eq!(
            wrong.code,
            ReasonCode::from(ConnectReturnCode::BadUserNameOrPassword)
        );
        // Penalised now: even the right password is refused at once, for this user only.
        let banned = accounts
            .check(peer, Some("romeo"), Some(b"1234"))
            .await
            .unwrap_err();
        assert_eq!(banned.code, ReasonCode::Banned);
        let unknown = accounts
            .check(peer, Some("juliet"), Some(b"1234"))
            .await
            .unwrap_err();
        assert_eq!(unknown.reason, "unknown user");
        let anonymous = accounts
            .check([127, 0, 0, 2].into(), None, None)
            .await
            .unwrap_err();
        assert_eq!(
            anonymous.code,
            ReasonCode::from(ConnectReturnCode::NotAuthorized)
        );
        assert!(accounts.delete("romeo").unwrap());
        assert!(accounts
            .check(peer, Some("romeo"), Some(b"1234"))
            .await
            .is_err());
        assert_eq!(accounts.names(), Vec::<String>::new());
    }

    /// Waits until `n` checks wait for a slot.
    async fn queued(accounts: &Accounts, n: usize) {
        while accounts.checks.waiting() < n {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_burst_of_wrong_passwords_is_checked_once_and_the_rest_refused_at_once() {
        let accounts = Arc::new(
            Accounts::load(
                None,
                &AuthSettings {
                    max_concurrent_checks: 1,
                    ..settings()
                },
            )
            .unwrap(),
        );
        accounts.update("romeo", "1234").unwrap();
        let peer: IpAddr = [127, 0, 0, 1].into();
        // Another address's check holds the only slot while the burst queues.
        let busy = accounts.checks.acquire([10, 0, 0, 1].into()).await;
        let burst: Vec<_> = (0..10)
            .map(|_| {
                let accounts = accounts.clone();
                tokio::spawn(async move {
                    accounts
                        .check(peer, Some("romeo"), Some(b"nope"))
                        .await
                        .unwrap_err()
                })
            })
            .collect();
        queued(&accounts, 10).await;
        drop(busy);
        let mut codes = Vec::new();
        for b in burst {
            codes.push(b.await.unwrap().code);
        }
        let checked = codes
            .iter()
            .filter(|c| **c == ReasonCode::from(ConnectReturnCode::BadUserNameOrPassword))
            .count();
        let banned = codes.iter().filter(|c| **c == ReasonCode::Banned).count();
        assert_eq!((checked, banned), (1, 9), "{codes:?}");
        // The other user names of the address are not held.
        accounts.update("juliet", "x").unwrap();
        assert!(accounts
            .check(peer, Some("juliet"), Some(b"x"))
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn a_check_whose_connection_is_gone_counts_nothing() {
        let accounts = Arc::new(Accounts::load(None, &settings()).unwrap());
        accounts.update("romeo", "1234").unwrap();
        let peer: IpAddr = [127, 0, 0, 1].into();
        // Both slots are held by other addresses while the attempt waits.
        let held = (
            accounts.checks.acquire([10, 0, 0, 1].into()).await,
            accounts.checks.acquire([10, 0, 0, 2].into()).await,
        );
        let gone = tokio::spawn({
            let accounts = accounts.clone();
            async move { accounts.check(peer, Some("romeo"), Some(b"nope")).await }
        });
        queued(&accounts, 1).await;
        gone.abort();
        assert!(gone.await.unwrap_err().is_cancelled());
        drop(held);
        assert_eq!(accounts.checks.running(), 0);
        assert_eq!(accounts.throttle().tracked(), 0, "nothing counted");
        assert!(accounts
            .check(peer, Some("romeo"), Some(b"1234"))
            .await
            .is_ok());
    }
}
