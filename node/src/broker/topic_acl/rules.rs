//! A set of topic rules, indexed for deciding, and the decision itself (sans IO).
//!
//! ### How rules combine
//! Among the rules for the client (its client id, its user name, everyone) that are about the
//! action and match the topic, the most specific decides ([`Rule::specificity`]: client rule >
//! user rule > rule for everyone; then more literal levels; then a filter without `#`); at
//! equal specificity a deny beats an allow. No rule matching: the default (`acl.default`).
//!
//! A SUBSCRIBE is decided on the rules whose filter *covers* the subscription's filter; when
//! that says deny, the subscription is still granted if a more specific allow rule overlaps
//! it (a device subscribing to `#` with `allow both devices/%c/#`): every message is then
//! checked again at delivery, so it receives only the topics it may read.
//!
//! ### Invariants
//! Every rule is in exactly one of `by_client`, `by_user`, `everyone_by_first`,
//! `everyone_wild`, according to its subject and first level; `all` holds each rule once.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::rule::{Action, Effect, Rule, Subject, Who};

/// What decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Allowed or not.
    pub allow: bool,
    /// The rule that decided; `None` when the default did.
    pub rule: Option<Arc<Rule>>,
}

impl Decision {
    /// The rule that decided, as text (`acl.default` when none did).
    pub fn rule_text(&self) -> String {
        self.rule
            .as_ref()
            .map_or_else(|| "acl.default".to_owned(), |r| r.to_string())
    }
}

/// The best candidate seen so far: its specificity and the rule.
#[derive(Default)]
struct Best {
    found: Option<(u32, Arc<Rule>)>,
}

impl Best {
    fn offer(&mut self, rule: &Arc<Rule>) {
        let spec = rule.specificity();
        let better = match &self.found {
            None => true,
            Some((s, r)) => {
                spec > *s
                    || (spec == *s && rule.effect == Effect::Deny && r.effect == Effect::Allow)
            }
        };
        if better {
            self.found = Some((spec, rule.clone()));
        }
    }

    fn decision(self, default_allow: bool) -> Decision {
        match self.found {
            Some((_, rule)) => Decision {
                allow: rule.effect == Effect::Allow,
                rule: Some(rule),
            },
            None => Decision {
                allow: default_allow,
                rule: None,
            },
        }
    }
}

/// The rules of the node, indexed.
#[derive(Debug, Default)]
pub struct RuleSet {
    all: BTreeSet<String>,
    by_client: HashMap<String, Vec<Arc<Rule>>>,
    by_user: HashMap<String, Vec<Arc<Rule>>>,
    everyone_by_first: HashMap<String, Vec<Arc<Rule>>>,
    everyone_wild: Vec<Arc<Rule>>,
}

impl RuleSet {
    /// The rules of `rules` (duplicates once).
    pub fn new(rules: impl IntoIterator<Item = Rule>) -> Self {
        let mut set = Self::default();
        for rule in rules {
            if !set.all.insert(rule.to_string()) {
                continue;
            }
            let rule = Arc::new(rule);
            match &rule.subject {
                Subject::Client(c) => set.by_client.entry(c.clone()).or_default().push(rule),
                Subject::User(u) => set.by_user.entry(u.clone()).or_default().push(rule),
                Subject::Everyone => match rule.first_literal() {
                    Some(first) => set
                        .everyone_by_first
                        .entry(first.to_owned())
                        .or_default()
                        .push(rule),
                    None => set.everyone_wild.push(rule),
                },
            }
        }
        set
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.all.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// The rules as text, sorted.
    pub fn texts(&self) -> impl Iterator<Item = &String> {
        self.all.iter()
    }

    /// Whether `text` (in normal form) is one of the rules.
    pub fn contains(&self, text: &str) -> bool {
        self.all.contains(text)
    }

    /// Every rule for `who` whose filter could concern a topic or filter whose first level is
    /// `first` (`None`: a wildcard first level, any rule could).
    fn candidates<'a>(
        &'a self,
        who: Who<'a>,
        first: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Arc<Rule>> + 'a {
        let client = self.by_client.get(who.client).into_iter().flatten();
        let user = who
            .user
            .and_then(|u| self.by_user.get(u))
            .into_iter()
            .flatten();
        let everyone: Box<dyn Iterator<Item = &'a Arc<Rule>> + 'a> = match first {
            Some(f) => Box::new(
                self.everyone_by_first
                    .get(f)
                    .into_iter()
                    .flatten()
                    .chain(self.everyone_wild.iter()),
            ),
            None => Box::new(
                self.everyone_by_first
                    .values()
                    .flatten()
                    .chain(self.everyone_wild.iter()),
            ),
        };
        client.chain(user).chain(everyone)
    }

    /// Whether `who` may `action` on topic name `topic`.
    pub fn decide_topic(
        &self,
        who: Who<'_>,
        action: Action,
        topic: &str,
        default_allow: bool,
    ) -> Decision {
        let mut best = Best::default();
        let first = topic.split('/').next();
        for rule in self.candidates(who, first) {
            if rule.actions.covers(action) && rule.matches_topic(who, topic) {
                best.offer(rule);
            }
        }
        best.decision(default_allow)
    }

    /// Whether `who` may subscribe to `filter` (the filter inside a `$share`): see the module
    /// docs.
    pub fn decide_subscription(&self, who: Who<'_>, filter: &str, default_allow: bool) -> Decision {
        let first = filter.split('/').next().filter(|f| *f != "+" && *f != "#");
        let mut best = Best::default();
        for rule in self.candidates(who, first) {
            if rule.actions.covers(Action::Subscribe) && rule.covers_filter(who, filter) {
                best.offer(rule);
            }
        }
        let floor = best.found.as_ref().map(|(s, _)| *s);
        let decision = best.decision(default_allow);
        if decision.allow {
            return decision;
        }
        let overlapping_allow = self.candidates(who, first).any(|rule| {
            rule.effect == Effect::Allow
                && rule.actions.covers(Action::Subscribe)
                && floor.is_none_or(|f| rule.specificity() > f)
                && rule.intersects_filter(who, filter)
        });
        if overlapping_allow {
            Decision {
                allow: true,
                rule: None,
            }
        } else {
            decision
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(rules: &[&str]) -> RuleSet {
        RuleSet::new(rules.iter().map(|r| r.parse::<Rule>().unwrap()))
    }

    fn who<'a>(user: Option<&'a str>, client: &'a str) -> Who<'a> {
        Who { user, client }
    }

    #[test]
    fn most_specific_wins_and_deny_wins_ties() {
        let s = set(&[
            "allow both #",
            "deny both secret/#",
            "allow subscribe user ops secret/#",
            "deny subscribe client ops-7 secret/keys",
            "allow publish a/+/c",
            "deny publish a/b/+",
        ]);
        let anyone = who(Some("x"), "c1");
        let ops = who(Some("ops"), "ops-1");
        let ops7 = who(Some("ops"), "ops-7");
        let t = |w, a, topic| s.decide_topic(w, a, topic, false).allow;
        assert!(t(anyone, Action::Publish, "x/y"));
        assert!(!t(anyone, Action::Subscribe, "secret/keys"));
        assert!(
            t(ops, Action::Subscribe, "secret/keys"),
            "user rule beats everyone"
        );
        assert!(
            !t(ops, Action::Publish, "secret/keys"),
            "the user rule is subscribe only"
        );
        assert!(
            !t(ops7, Action::Subscribe, "secret/keys"),
            "client rule beats user rule"
        );
        assert!(t(ops7, Action::Subscribe, "secret/other"));
        assert!(
            !t(anyone, Action::Publish, "a/b/c"),
            "equal specificity: deny"
        );
        let d = s.decide_topic(ops7, Action::Subscribe, "secret/keys", true);
        assert_eq!(d.rule_text(), "deny subscribe client ops-7 secret/keys");
    }

    #[test]
    fn the_default_decides_when_nothing_matches() {
        let s = set(&["allow both devices/%c/#"]);
        let d1 = who(None, "d1");
        assert!(!s.decide_topic(d1, Action::Publish, "other", false).allow);
        assert!(s.decide_topic(d1, Action::Publish, "other", true).allow);
        assert_eq!(
            s.decide_topic(d1, Action::Publish, "other", false).rule,
            None
        );
        assert!(
            s.decide_topic(d1, Action::Publish, "devices/d1/t", false)
                .allow
        );
        assert!(
            !s.decide_topic(d1, Action::Publish, "devices/d2/t", false)
                .allow
        );
    }

    #[test]
    fn a_wildcard_subscription_is_granted_when_an_allow_overlaps_it() {
        let s = set(&["allow both devices/%c/#", "deny subscribe user bad #"]);
        let d1 = who(Some("tenant"), "d1");
        let sub = |w, f| s.decide_subscription(w, f, false).allow;
        assert!(sub(d1, "#"), "filtered at delivery");
        assert!(sub(d1, "devices/+/temp"));
        assert!(sub(d1, "devices/d1/#"));
        assert!(!sub(d1, "devices/d2/#"));
        assert!(!sub(d1, "other/#"));
        // A deny more specific than every overlapping allow refuses.
        assert!(!sub(who(Some("bad"), "d1"), "#"));
        assert!(
            !sub(who(Some("bad"), "d1"), "devices/d1/x"),
            "the user rule outranks the rule for everyone"
        );
        // With the default allow a covering deny still refuses.
        let s = set(&["deny subscribe secret/#"]);
        assert!(!s.decide_subscription(d1, "secret/+", true).allow);
        assert!(s.decide_subscription(d1, "#", true).allow);
    }

    #[test]
    fn duplicates_count_once_and_texts_are_sorted() {
        let s = set(&["deny both b", "allow both a", "deny  both b"]);
        assert_eq!(s.len(), 2);
        assert_eq!(
            s.texts().cloned().collect::<Vec<_>>(),
            ["allow both a", "deny both b"]
        );
    }

    #[test]
    fn ten_thousand_rules_decide_through_the_index() {
        let mut rules: Vec<Rule> = (0..9_990)
            .map(|i| {
                format!("allow both user u{i} tenants/{i}/#")
                    .parse()
                    .unwrap()
            })
            .collect();
        rules.extend((0..10).map(|i| format!("deny publish r{i}/#").parse::<Rule>().unwrap()));
        let s = RuleSet::new(rules);
        assert_eq!(s.len(), 10_000);
        let w = who(Some("u42"), "c");
        assert!(
            s.decide_topic(w, Action::Publish, "tenants/42/x", false)
                .allow
        );
        assert!(
            !s.decide_topic(w, Action::Publish, "tenants/43/x", false)
                .allow
        );
        assert!(!s.decide_topic(w, Action::Publish, "r3/x", true).allow);
        // The index looks at this user's rules and the matching first level only.
        assert_eq!(s.candidates(w, Some("tenants")).count(), 1);
    }
}
