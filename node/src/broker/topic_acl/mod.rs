//! Topic rules: who may publish to and subscribe to which topics (issue 17).
//!
//! Not to be confused with [`super::acl`], which allows or denies *addresses* at accept.
//!
//! - [`rule`]: one rule, its text form and matching (sans IO).
//! - [`rules`]: a set of rules indexed for deciding, and how rules combine (sans IO).
//! - [`mosquitto`]: reading a mosquitto `acl_file` (sans IO).
//! - here: the node's current rules (swapped whole on a change, with a generation counter)
//!   and each session's cache of decisions, checked against that counter.
//!
//! With no rules and `acl.default = allow` (the default) nothing is checked: one atomic load.

pub mod mosquitto;
pub mod rule;
pub mod rules;

use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use fubar_store::{Store, StoreError};

pub use rule::{Action, Rule, RuleError};
pub use rules::{Decision, RuleSet};

/// Decisions a session keeps per action before its cache starts over (bounded memory under
/// a client that publishes to ever new topics).
const CACHE_ENTRIES: usize = 4096;

/// The node's topic rules.
#[derive(Debug)]
pub struct TopicAcl {
    rules: RwLock<Arc<RuleSet>>,
    /// Bumped by every change of the rules or of the default: caches older than it are stale.
    generation: AtomicU64,
    /// `acl.default = allow`.
    default_allow: AtomicBool,
    /// Whether anything must be checked: rules exist or the default denies.
    active: AtomicBool,
}

impl Default for TopicAcl {
    fn default() -> Self {
        Self {
            rules: RwLock::default(),
            generation: AtomicU64::new(1),
            default_allow: AtomicBool::new(true),
            active: AtomicBool::new(false),
        }
    }
}

impl TopicAcl {
    /// The rules kept in `store` (a stored rule that no longer parses is skipped, with a
    /// warning).
    pub fn load(store: Option<&Arc<Store>>) -> Result<Self, StoreError> {
        let acl = Self::default();
        if let Some(store) = store {
            acl.replace(parse_stored(store.topic_rules()?));
        }
        Ok(acl)
    }

    /// Makes `rules` the node's rules.
    pub fn replace(&self, rules: RuleSet) {
        let active = !rules.is_empty() || !self.default_allow.load(Ordering::Acquire);
        *self.rules.write() = Arc::new(rules);
        self.active.store(active, Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Reloads the rules from the store (after the replicated state changed them).
    pub fn reload(&self, store: &Store) -> Result<(), StoreError> {
        self.replace(parse_stored(store.topic_rules()?));
        Ok(())
    }

    /// Sets `acl.default`.
    pub fn set_default(&self, allow: bool) {
        if self.default_allow.swap(allow, Ordering::AcqRel) == allow {
            return;
        }
        let empty = self.current().is_empty();
        self.active.store(!empty || !allow, Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The rules now.
    pub fn current(&self) -> Arc<RuleSet> {
        self.rules.read().clone()
    }

    /// Whether anything is checked at all.
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    fn default_allow(&self) -> bool {
        self.default_allow.load(Ordering::Acquire)
    }

    /// Whether `who` may publish to `topic` (uncached: a will, a one-off).
    pub fn decide_topic(&self, who: rule::Who<'_>, action: Action, topic: &str) -> Decision {
        if !self.is_active() {
            return allowed();
        }
        self.current()
            .decide_topic(who, action, topic, self.default_allow())
    }

    /// Whether `who` may subscribe to `filter` (a `$share/GROUP/FILTER` by its FILTER).
    pub fn decide_subscription(&self, who: rule::Who<'_>, filter: &str) -> Decision {
        if !self.is_active() {
            return allowed();
        }
        let inner = crate::mqtt::topic::shared(filter).map_or(filter, |(_, f)| f);
        self.current()
            .decide_subscription(who, inner, self.default_allow())
    }

    /// Whether `session` may `action` on `topic`, from its cache when the rules have not
    /// changed since.
    pub fn check(&self, session: &SessionAcl, action: Action, topic: &Arc<str>) -> Decision {
        self.check_fresh(session, action, topic).0
    }

    /// [`TopicAcl::check`], and whether the decision was made now (not from the cache).
    pub fn check_fresh(
        &self,
        session: &SessionAcl,
        action: Action,
        topic: &Arc<str>,
    ) -> (Decision, bool) {
        if !self.is_active() {
            return (allowed(), false);
        }
        let generation = self.generation.load(Ordering::Acquire);
        let mut cache = session.cache.lock();
        let cache = cache.get_or_insert_with(Box::default);
        if cache.generation != generation {
            cache.publish.clear();
            cache.read.clear();
            cache.generation = generation;
        }
        let decisions = match action {
            Action::Publish => &mut cache.publish,
            Action::Subscribe => &mut cache.read,
        };
        if let Some((last, true)) = &decisions.last {
            if **last == **topic {
                return (allowed(), false);
            }
        }
        if let Some(d) = decisions.by_topic.get(topic) {
            decisions.last = Some((topic.clone(), d.allow));
            // An allow is returned without its rule: no shared reference count is touched
            // on the hot path (many publishers delivering to one subscriber).
            return (if d.allow { allowed() } else { d.clone() }, false);
        }
        let identity = session.identity.read().clone();
        let who = identity.who();
        let decision = self
            .current()
            .decide_topic(who, action, topic, self.default_allow());
        if decisions.by_topic.len() >= CACHE_ENTRIES {
            decisions.by_topic.clear();
        }
        decisions.by_topic.insert(topic.clone(), decision.clone());
        decisions.last = Some((topic.clone(), decision.allow));
        (decision, true)
    }
}

fn allowed() -> Decision {
    Decision {
        allow: true,
        rule: None,
    }
}

fn parse_stored(texts: Vec<String>) -> RuleSet {
    RuleSet::new(texts.into_iter().filter_map(|t| match t.parse::<Rule>() {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(target: "warning", rule = %t, error = %e, "ignoring a stored topic rule");
            None
        }
    }))
}

/// Who a session's client is, as rules see it.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The user name of its last CONNECT.
    pub user: Option<Arc<str>>,
    /// Its client id.
    pub client: Arc<str>,
}

impl Identity {
    /// The identity as rules take it.
    pub fn who(&self) -> rule::Who<'_> {
        rule::Who {
            user: self.user.as_deref(),
            client: &self.client,
        }
    }
}

/// A session's identity and its cache of decisions.
#[derive(Debug)]
pub struct SessionAcl {
    identity: RwLock<Identity>,
    /// Made on the first check: without topic rules a session never needs one, and inline it
    /// would take 150 bytes of every session.
    cache: Mutex<Option<Box<Cache>>>,
}

#[derive(Debug, Default)]
struct Cache {
    generation: u64,
    publish: Decisions,
    read: Decisions,
}

/// Decisions of one action by topic, and the last one asked for: a stream of messages on one
/// topic (the common case) is answered by a string comparison, without hashing.
#[derive(Debug, Default)]
struct Decisions {
    by_topic: HashMap<Arc<str>, Decision>,
    last: Option<(Arc<str>, bool)>,
}

impl Decisions {
    fn clear(&mut self) {
        self.by_topic.clear();
        self.last = None;
    }
}

impl SessionAcl {
    /// A session of `client` whose user is not known yet.
    pub fn new(client: Arc<str>) -> Self {
        Self {
            identity: RwLock::new(Identity { user: None, client }),
            cache: Mutex::default(),
        }
    }

    /// Records the user name of the connection now holding the session (its decisions
    /// are made again).
    pub fn set_user(&self, user: Option<&str>) {
        let mut identity = self.identity.write();
        if identity.user.as_deref() == user {
            return;
        }
        identity.user = user.map(Into::into);
        drop(identity);
        // Dropped: made again, empty, by the next check.
        *self.cache.lock() = None;
    }

    /// The identity now.
    pub fn identity(&self) -> Identity {
        self.identity.read().clone()
    }
}

/// The `access` event of a denial.
pub fn log_denied(identity: &Identity, action: &str, topic: &str, decision: &Decision) {
    tracing::info!(target: "access", client = %identity.client,
        user = identity.user.as_deref().unwrap_or(""), action, topic,
        rule = %decision.rule_text(), "denied by topic rules");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(rules: &[&str]) -> RuleSet {
        RuleSet::new(rules.iter().map(|r| r.parse::<Rule>().unwrap()))
    }

    #[test]
    fn nothing_is_checked_until_rules_exist_or_the_default_denies() {
        let acl = TopicAcl::default();
        assert!(!acl.is_active());
        acl.set_default(false);
        assert!(acl.is_active());
        acl.set_default(true);
        assert!(!acl.is_active());
        acl.replace(set(&["deny both x"]));
        assert!(acl.is_active());
    }

    #[test]
    fn a_rule_change_reaches_cached_decisions() {
        let acl = TopicAcl::default();
        acl.replace(set(&["allow both devices/%c/#"]));
        acl.set_default(false);
        let s = SessionAcl::new("d1".into());
        let t: Arc<str> = "devices/d1/x".into();
        let o: Arc<str> = "other".into();
        assert!(acl.check(&s, Action::Publish, &t).allow);
        assert!(!acl.check(&s, Action::Publish, &o).allow);
        acl.replace(set(&["deny publish devices/%c/x", "allow both #"]));
        assert!(
            !acl.check(&s, Action::Publish, &t).allow,
            "cache invalidated"
        );
        assert!(acl.check(&s, Action::Publish, &o).allow);
        assert!(acl.check(&s, Action::Subscribe, &t).allow);
    }

    #[test]
    fn the_user_of_a_new_connection_is_decided_afresh() {
        let acl = TopicAcl::default();
        acl.replace(set(&["allow both t/%u/#"]));
        acl.set_default(false);
        let s = SessionAcl::new("c".into());
        let t: Arc<str> = "t/al/x".into();
        assert!(!acl.check(&s, Action::Publish, &t).allow);
        s.set_user(Some("al"));
        assert!(acl.check(&s, Action::Publish, &t).allow);
        s.set_user(Some("bo"));
        assert!(!acl.check(&s, Action::Publish, &t).allow);
    }

    #[test]
    fn a_shared_subscription_is_decided_by_its_filter() {
        let acl = TopicAcl::default();
        acl.replace(set(&["deny subscribe secret/#"]));
        let who = rule::Who {
            user: None,
            client: "c",
        };
        assert!(!acl.decide_subscription(who, "$share/g/secret/x").allow);
        assert!(acl.decide_subscription(who, "$share/g/open/x").allow);
    }
}
