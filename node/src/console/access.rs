//! Who may use the console: one-time sign-in tokens handed out by `fubar console url`, and the
//! sessions they open (a cookie naming the session, a CSRF token for every POST).
//!
//! Sans-IO: every method takes `now`; the HTTP handlers pass the clock in. Both tables are
//! bounded (`console.max_pending_sign_ins`, `console.max_sessions`): the oldest entry goes.

use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom as _, SystemRandom};

use crate::settings::ConsoleSettings;

/// The session cookie's name.
pub const COOKIE: &str = "fubar_console";

/// A signed-in browser: its session id (the cookie) and the token its forms carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The cookie value.
    pub id: String,
    /// The CSRF token every POST of this session must carry.
    pub csrf: String,
}

/// Why a sign-in token was refused (said in the `access` event, not to the browser).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Never handed out, already used, or dropped for newer ones.
    Unknown,
    /// Handed out, but too long ago.
    Expired,
}

impl Refusal {
    /// The reason as the `access` event says it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown or used token",
            Self::Expired => "expired token",
        }
    }
}

/// The console's sign-in tokens and sessions.
#[derive(Debug)]
pub struct SignIn {
    /// Where the console listens, `http://ADDR`.
    base_url: String,
    sign_in_ttl: Duration,
    max_pending: usize,
    session_ttl: Duration,
    max_sessions: usize,
    state: Mutex<Tables>,
    random: SystemRandom,
}

#[derive(Debug, Default)]
struct Tables {
    /// Unused tokens with their expiry, oldest first.
    tokens: VecDeque<(String, Instant)>,
    /// Sessions by id.
    sessions: HashMap<String, (Session, Instant)>,
    /// Session ids, oldest first (may name sessions already signed out).
    order: VecDeque<String>,
}

impl SignIn {
    /// The sign-in desk of a console listening at `base_url`.
    pub fn new(base_url: String, settings: &ConsoleSettings) -> Self {
        Self {
            base_url,
            sign_in_ttl: Duration::from_secs(settings.sign_in_ttl_secs),
            max_pending: settings.max_pending_sign_ins,
            session_ttl: Duration::from_secs(settings.session_ttl_secs),
            max_sessions: settings.max_sessions,
            state: Mutex::new(Tables::default()),
            random: SystemRandom::new(),
        }
    }

    /// Where the console listens, `http://ADDR` or `https://ADDR`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    fn tables(&self) -> parking_lot::MutexGuard<'_, Tables> {
        self.state.lock()
    }

    /// A fresh random token (32 bytes, hex).
    fn token(&self) -> String {
        let mut bytes = [0u8; 32];
        // The system generator does not fail on Linux; if it did, a zero token would be
        // guessable, so refuse to go on.
        self.random
            .fill(&mut bytes)
            .expect("the system random generator failed");
        bytes.iter().fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }

    /// A new one-time sign-in URL, valid for `console.sign_in_ttl_secs` from `now`.
    pub fn sign_in_url_at(&self, now: Instant) -> String {
        let token = self.token();
        let mut t = self.tables();
        t.tokens.retain(|(_, expires)| *expires > now);
        while t.tokens.len() >= self.max_pending {
            t.tokens.pop_front();
        }
        t.tokens.push_back((token.clone(), now + self.sign_in_ttl));
        format!("{}/sign-in?token={token}", self.base_url)
    }

    /// A new one-time sign-in URL, valid from now.
    pub fn sign_in_url(&self) -> String {
        self.sign_in_url_at(Instant::now())
    }

    /// Uses up `token` and opens a session, or says why not.
    pub fn redeem(&self, token: &str, now: Instant) -> Result<Session, Refusal> {
        let mut t = self.tables();
        let at = t
            .tokens
            .iter()
            .position(|(known, _)| constant_time_eq(known.as_bytes(), token.as_bytes()))
            .ok_or(Refusal::Unknown)?;
        let (_, expires) = t.tokens.remove(at).ok_or(Refusal::Unknown)?;
        if expires <= now {
            return Err(Refusal::Expired);
        }
        drop(t);
        let session = Session {
            id: self.token(),
            csrf: self.token(),
        };
        let mut t = self.tables();
        t.sessions.retain(|_, (_, expires)| *expires > now);
        let live: std::collections::HashSet<String> = t.sessions.keys().cloned().collect();
        t.order.retain(|id| live.contains(id));
        while t.sessions.len() >= self.max_sessions {
            match t.order.pop_front() {
                Some(oldest) => {
                    t.sessions.remove(&oldest);
                }
                None => break,
            }
        }
        t.sessions.insert(
            session.id.clone(),
            (session.clone(), now + self.session_ttl),
        );
        t.order.push_back(session.id.clone());
        Ok(session)
    }

    /// The session a cookie names, if it is open at `now`.
    pub fn session(&self, id: &str, now: Instant) -> Option<Session> {
        let mut t = self.tables();
        match t.sessions.get(id) {
            Some((s, expires)) if *expires > now => Some(s.clone()),
            Some(_) => {
                t.sessions.remove(id);
                None
            }
            None => None,
        }
    }

    /// Ends a session.
    pub fn sign_out(&self, id: &str) {
        self.tables().sessions.remove(id);
    }

    /// Whether `csrf` is the token of `session`.
    pub fn csrf_ok(session: &Session, csrf: &str) -> bool {
        constant_time_eq(session.csrf.as_bytes(), csrf.as_bytes())
    }
}

/// Compares secrets without stopping at the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The session id in a `Cookie` header, if any.
pub fn session_cookie(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desk(pending: usize, sessions: usize) -> SignIn {
        let settings = ConsoleSettings {
            max_pending_sign_ins: pending,
            max_sessions: sessions,
            ..ConsoleSettings::default()
        };
        SignIn::new("http://127.0.0.1:1".into(), &settings)
    }

    fn token_of(url: &str) -> &str {
        url.rsplit("token=").next().unwrap()
    }

    #[test]
    fn a_token_works_once_and_opens_a_session() {
        let d = desk(10, 10);
        let now = Instant::now();
        let url = d.sign_in_url_at(now);
        assert!(url.starts_with("http://127.0.0.1:1/sign-in?token="));
        let s = d.redeem(token_of(&url), now).unwrap();
        assert_eq!(d.session(&s.id, now), Some(s.clone()));
        assert_eq!(d.redeem(token_of(&url), now), Err(Refusal::Unknown));
        assert_eq!(d.redeem("guess", now), Err(Refusal::Unknown));
        assert!(SignIn::csrf_ok(&s, &s.csrf));
        assert!(!SignIn::csrf_ok(&s, "nope"));
        d.sign_out(&s.id);
        assert_eq!(d.session(&s.id, now), None);
    }

    #[test]
    fn tokens_and_sessions_expire() {
        let d = desk(10, 10);
        let now = Instant::now();
        let url = d.sign_in_url_at(now);
        let late = now + Duration::from_secs(ConsoleSettings::default().sign_in_ttl_secs);
        assert_eq!(d.redeem(token_of(&url), late), Err(Refusal::Expired));
        let url = d.sign_in_url_at(now);
        let s = d.redeem(token_of(&url), now).unwrap();
        let later = now + Duration::from_secs(ConsoleSettings::default().session_ttl_secs);
        assert_eq!(d.session(&s.id, later), None);
    }

    #[test]
    fn the_oldest_token_and_session_go_beyond_the_bounds() {
        let d = desk(2, 2);
        let now = Instant::now();
        let urls: Vec<String> = (0..3).map(|_| d.sign_in_url_at(now)).collect();
        assert_eq!(d.redeem(token_of(&urls[0]), now), Err(Refusal::Unknown));
        let a = d.redeem(token_of(&urls[1]), now).unwrap();
        let b = d.redeem(token_of(&urls[2]), now).unwrap();
        let c = d.redeem(token_of(&d.sign_in_url_at(now)), now).unwrap();
        assert_eq!(d.session(&a.id, now), None);
        assert!(d.session(&b.id, now).is_some());
        assert!(d.session(&c.id, now).is_some());
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        assert_eq!(session_cookie("a=1; fubar_console=abc; b=2"), Some("abc"));
        assert_eq!(session_cookie("a=1"), None);
    }
}
