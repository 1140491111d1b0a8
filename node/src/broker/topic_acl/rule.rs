//! One topic rule: its text form, its parsed filter template, and how that template meets a
//! topic name or another filter for one client.
//!
//! Text form (what `fubar ctl acl topic add` takes and `list` shows):
//!
//! ```text
//! EFFECT ACTION [user NAME | client ID] FILTER
//! allow both devices/%c/#
//! deny publish user alice alerts/#
//! allow subscribe client dashboard-1 tenants/+/status
//! ```
//!
//! `%u` stands for the client's user name and `%c` for its client id, anywhere inside a level.
//! A substituted value is compared as literal text: a `+`, `#` or `/` in a user name or client
//! id never acts as a wildcard or a level separator, and such a value never satisfies an
//! `allow` rule (mosquitto refuses such clients for the same reason).

use std::fmt;
use std::str::FromStr;

use crate::mqtt::topic;

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Effect {
    /// Grants the action.
    Allow,
    /// Refuses the action.
    Deny,
}

/// Which actions a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Actions {
    /// PUBLISH (and direct messages, whose topic is a client id; and a will).
    Publish,
    /// SUBSCRIBE, joining a `$share` group, and receiving a message through a subscription.
    Subscribe,
    /// Both.
    Both,
}

/// The action a decision is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Sending a message to a topic.
    Publish,
    /// Subscribing to a filter, or receiving a message on a topic.
    Subscribe,
}

impl Actions {
    /// Whether the rule is about `action`.
    pub fn covers(self, action: Action) -> bool {
        matches!(
            (self, action),
            (Self::Both, _)
                | (Self::Publish, Action::Publish)
                | (Self::Subscribe, Action::Subscribe)
        )
    }
}

/// Whom a rule is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// Every client.
    Everyone,
    /// Clients connected with this user name.
    User(String),
    /// The client with this client id.
    Client(String),
}

impl Subject {
    /// Rank in specificity: a client rule beats a user rule, which beats a rule for everyone.
    fn rank(&self) -> u32 {
        match self {
            Self::Client(_) => 3,
            Self::User(_) => 2,
            Self::Everyone => 1,
        }
    }
}

/// One piece of a level that carries a substitution.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Part {
    Text(Box<str>),
    User,
    Client,
}

/// One level of a rule's filter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Level {
    /// Plain text.
    Literal(Box<str>),
    /// Text with `%u` / `%c` in it.
    Template(Box<[Part]>),
    /// `+`.
    Plus,
    /// `#` (always the last level).
    Hash,
}

/// Who is asking: the values `%u` and `%c` stand for, and what the subject of a rule is
/// compared with.
#[derive(Debug, Clone, Copy)]
pub struct Who<'a> {
    /// The user name of the connection, if it gave one.
    pub user: Option<&'a str>,
    /// The client id.
    pub client: &'a str,
}

/// Whether a substituted value could pass for more than one literal level.
fn dangerous(value: &str) -> bool {
    value.contains(['+', '#', '/'])
}

/// A topic rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    /// Allow or deny.
    pub effect: Effect,
    /// Publish, subscribe or both.
    pub actions: Actions,
    /// Whom it is for.
    pub subject: Subject,
    /// The filter as written (with `%u` / `%c`).
    pub filter: String,
    levels: Box<[Level]>,
    uses_user: bool,
    uses_client: bool,
}

/// Why a rule's text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// The text does not have the rule's shape.
    #[error("expected `allow|deny publish|subscribe|both [user NAME | client ID] FILTER`: {0}")]
    Shape(String),
    /// The filter is not a valid MQTT topic filter.
    #[error("{0:?} is not a valid topic filter (`+` only as a whole level, `#` only as the whole last level, no NUL)")]
    Filter(String),
    /// A `%` not followed by `u` or `c`.
    #[error(
        "{filter:?}: unknown substitution %{what} (only %u, the user name, and %c, the client id)"
    )]
    Substitution {
        /// The filter.
        filter: String,
        /// What followed the `%`.
        what: String,
    },
    /// A filter for `$` topics.
    #[error("{0:?}: rules for topics starting with `$` are not supported (`$SYS` is the broker's; a `$share/GROUP/FILTER` subscription is checked through its FILTER)")]
    Dollar(String),
}

impl Rule {
    /// A rule from its parts; the filter is checked.
    pub fn new(
        effect: Effect,
        actions: Actions,
        subject: Subject,
        filter: &str,
    ) -> Result<Self, RuleError> {
        if filter.starts_with('$') {
            return Err(RuleError::Dollar(filter.into()));
        }
        if !topic::is_valid_topic_filter(filter) {
            return Err(RuleError::Filter(filter.into()));
        }
        let mut levels = Vec::new();
        let (mut uses_user, mut uses_client) = (false, false);
        for level in filter.split('/') {
            levels.push(match level {
                "+" => Level::Plus,
                "#" => Level::Hash,
                _ if level.contains('%') => {
                    let parts = template(filter, level)?;
                    uses_user |= parts.contains(&Part::User);
                    uses_client |= parts.contains(&Part::Client);
                    if parts.iter().all(|p| matches!(p, Part::Text(_))) {
                        Level::Literal(level.into())
                    } else {
                        Level::Template(parts.into())
                    }
                }
                _ => Level::Literal(level.into()),
            });
        }
        match &subject {
            Subject::User(n) | Subject::Client(n) if n.is_empty() || n.contains(['\0', ' ']) => {
                return Err(RuleError::Shape(format!(
                    "the name {n:?} must be non-empty, without spaces or NUL"
                )));
            }
            _ => {}
        }
        Ok(Self {
            effect,
            actions,
            subject,
            filter: filter.into(),
            levels: levels.into(),
            uses_user,
            uses_client,
        })
    }

    /// Specificity: the subject's rank, then the number of literal levels (a level with a
    /// substitution counts as literal), then a filter without `#` above one with it.
    pub fn specificity(&self) -> u32 {
        let literal = self
            .levels
            .iter()
            .filter(|l| matches!(l, Level::Literal(_) | Level::Template(_)))
            .count()
            .min(0xff_ffff) as u32;
        let no_hash = u32::from(!matches!(self.levels.last(), Some(Level::Hash)));
        (self.subject.rank() << 26) | (literal << 1) | no_hash
    }

    /// The first level, when it is plain text (for the index).
    pub(super) fn first_literal(&self) -> Option<&str> {
        match self.levels.first() {
            Some(Level::Literal(s)) => Some(s),
            _ => None,
        }
    }

    /// Whether the rule can apply to `who` at all: its substitutions have values (an `allow`
    /// never takes a value with `+`, `#` or `/`).
    fn usable(&self, who: Who<'_>) -> bool {
        if self.uses_user {
            match who.user {
                None => return false,
                Some(u) if self.effect == Effect::Allow && dangerous(u) => return false,
                Some(_) => {}
            }
        }
        !(self.uses_client && self.effect == Effect::Allow && dangerous(who.client))
    }

    /// Whether the rule's filter, for `who`, matches topic name `topic`.
    pub fn matches_topic(&self, who: Who<'_>, topic: &str) -> bool {
        if topic.starts_with('$') || !self.usable(who) {
            return false;
        }
        let mut levels = topic.split('/');
        for rule_level in self.levels.iter() {
            let Some(t) = levels.next() else {
                // `a/#` matches `a`.
                return matches!(rule_level, Level::Hash);
            };
            match rule_level {
                Level::Hash => return true,
                Level::Plus => {}
                Level::Literal(s) => {
                    if **s != *t {
                        return false;
                    }
                }
                Level::Template(parts) => {
                    if !template_matches(parts, who, t) {
                        return false;
                    }
                }
            }
        }
        levels.next().is_none()
    }

    /// Whether every topic that filter `filter` matches is matched by the rule, for `who`.
    pub fn covers_filter(&self, who: Who<'_>, filter: &str) -> bool {
        if filter.starts_with('$') || !self.usable(who) {
            return false;
        }
        let mut levels = filter.split('/');
        for rule_level in self.levels.iter() {
            let Some(f) = levels.next() else {
                return matches!(rule_level, Level::Hash);
            };
            match rule_level {
                Level::Hash => return true,
                Level::Plus => {
                    if f == "#" {
                        return false;
                    }
                }
                Level::Literal(s) => {
                    if f == "+" || f == "#" || **s != *f {
                        return false;
                    }
                }
                Level::Template(parts) => {
                    if f == "+" || f == "#" || !template_matches(parts, who, f) {
                        return false;
                    }
                }
            }
        }
        levels.next().is_none()
    }

    /// Whether some topic is matched by both the rule, for `who`, and filter `filter`.
    pub fn intersects_filter(&self, who: Who<'_>, filter: &str) -> bool {
        if filter.starts_with('$') || !self.usable(who) {
            return false;
        }
        let mut levels = filter.split('/');
        for rule_level in self.levels.iter() {
            let Some(f) = levels.next() else {
                return matches!(rule_level, Level::Hash);
            };
            if f == "#" {
                return true;
            }
            match rule_level {
                Level::Hash => return true,
                Level::Plus => {}
                Level::Literal(s) => {
                    if f != "+" && **s != *f {
                        return false;
                    }
                }
                Level::Template(parts) => {
                    if f != "+" && !template_matches(parts, who, f) {
                        return false;
                    }
                }
            }
        }
        match levels.next() {
            None => true,
            Some("#") => levels.next().is_none(),
            Some(_) => false,
        }
    }

    /// Whether the rule is for `who`.
    pub fn is_for(&self, who: Who<'_>) -> bool {
        match &self.subject {
            Subject::Everyone => true,
            Subject::User(u) => who.user == Some(u.as_str()),
            Subject::Client(c) => who.client == c,
        }
    }
}

/// The parts of a level with `%` in it.
fn template(filter: &str, level: &str) -> Result<Vec<Part>, RuleError> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut chars = level.chars();
    while let Some(ch) = chars.next() {
        if ch != '%' {
            text.push(ch);
            continue;
        }
        let part = match chars.next() {
            Some('u') => Part::User,
            Some('c') => Part::Client,
            other => {
                return Err(RuleError::Substitution {
                    filter: filter.into(),
                    what: other.map(String::from).unwrap_or_default(),
                })
            }
        };
        if !text.is_empty() {
            parts.push(Part::Text(std::mem::take(&mut text).into()));
        }
        parts.push(part);
    }
    if !text.is_empty() {
        parts.push(Part::Text(text.into()));
    }
    Ok(parts)
}

/// Whether `level` is exactly the template with `who`'s values put in.
fn template_matches(parts: &[Part], who: Who<'_>, level: &str) -> bool {
    let mut rest = level;
    for part in parts {
        let piece = match part {
            Part::Text(t) => &**t,
            Part::User => match who.user {
                Some(u) => u,
                None => return false,
            },
            Part::Client => who.client,
        };
        match rest.strip_prefix(piece) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    rest.is_empty()
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        })
    }
}

impl fmt::Display for Actions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Publish => "publish",
            Self::Subscribe => "subscribe",
            Self::Both => "both",
        })
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Publish => "publish",
            Self::Subscribe => "subscribe",
        })
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ", self.effect, self.actions)?;
        match &self.subject {
            Subject::Everyone => {}
            Subject::User(u) => write!(f, "user {u} ")?,
            Subject::Client(c) => write!(f, "client {c} ")?,
        }
        f.write_str(&self.filter)
    }
}

impl FromStr for Rule {
    type Err = RuleError;

    fn from_str(s: &str) -> Result<Self, RuleError> {
        let shape = |why: &str| RuleError::Shape(format!("{why} in {s:?}"));
        let (effect, rest) = word(s.trim()).ok_or_else(|| shape("no effect"))?;
        let effect = match effect {
            "allow" => Effect::Allow,
            "deny" => Effect::Deny,
            other => return Err(shape(&format!("effect {other:?} is not allow or deny"))),
        };
        let (actions, rest) = word(rest).ok_or_else(|| shape("no action"))?;
        let actions = match actions {
            "publish" => Actions::Publish,
            "subscribe" => Actions::Subscribe,
            "both" => Actions::Both,
            other => {
                return Err(shape(&format!(
                    "action {other:?} is not publish, subscribe or both"
                )))
            }
        };
        let (subject, filter) = match word(rest) {
            Some((kind @ ("user" | "client"), after)) => match word(after) {
                Some((name, filter)) if !filter.is_empty() => {
                    let subject = if kind == "user" {
                        Subject::User(name.into())
                    } else {
                        Subject::Client(name.into())
                    };
                    (subject, filter)
                }
                _ => (Subject::Everyone, rest),
            },
            Some(_) => (Subject::Everyone, rest),
            None => return Err(shape("no filter")),
        };
        Self::new(effect, actions, subject, filter)
    }
}

/// The first space-separated word and what follows it (trimmed), if there is a word.
fn word(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start();
    if s.is_empty() {
        return None;
    }
    Some(match s.split_once(char::is_whitespace) {
        Some((w, rest)) => (w, rest.trim()),
        None => (s, ""),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who<'a>(user: Option<&'a str>, client: &'a str) -> Who<'a> {
        Who { user, client }
    }

    #[test]
    fn text_form_round_trips() {
        for text in [
            "allow both devices/%c/#",
            "deny publish user alice alerts/#",
            "allow subscribe client dash-1 tenants/+/status",
            "allow both t-%u/x",
        ] {
            let rule: Rule = text.parse().unwrap();
            assert_eq!(rule.to_string(), text);
        }
        let spaced: Rule = "  allow   both   user  bob   a b/c ".parse().unwrap();
        assert_eq!(spaced.subject, Subject::User("bob".into()));
        assert_eq!(spaced.filter, "a b/c", "a filter may hold spaces");
        let everyone: Rule = "allow both user".parse().unwrap();
        assert_eq!(everyone.subject, Subject::Everyone, "a topic named user");
    }

    #[test]
    fn bad_rules_are_refused_with_the_reason() {
        let err = |s: &str| s.parse::<Rule>().unwrap_err();
        assert!(matches!(err("allow both a/#/b"), RuleError::Filter(_)));
        assert!(matches!(err("allow both a+/b"), RuleError::Filter(_)));
        assert!(matches!(
            err("allow both a/%x/b"),
            RuleError::Substitution { what, .. } if what == "x"
        ));
        assert!(matches!(
            err("allow both a/%"),
            RuleError::Substitution { .. }
        ));
        assert!(matches!(err("allow both $SYS/#"), RuleError::Dollar(_)));
        assert!(matches!(err("allow both $share/g/x"), RuleError::Dollar(_)));
        assert!(matches!(err("permit both x"), RuleError::Shape(_)));
        assert!(matches!(err("allow read x"), RuleError::Shape(_)));
        assert!(matches!(err("allow both"), RuleError::Shape(_)));
        assert!(matches!(err(""), RuleError::Shape(_)));
    }

    #[test]
    fn substitutions_match_only_the_clients_own_values() {
        let r: Rule = "allow both devices/%c/#".parse().unwrap();
        assert!(r.matches_topic(who(None, "d1"), "devices/d1/temp"));
        assert!(r.matches_topic(who(None, "d1"), "devices/d1"));
        assert!(!r.matches_topic(who(None, "d1"), "devices/d2/temp"));
        let u: Rule = "allow both t/%u-x/+".parse().unwrap();
        assert!(u.matches_topic(who(Some("al"), "c"), "t/al-x/1"));
        assert!(!u.matches_topic(who(Some("al"), "c"), "t/bo-x/1"));
        assert!(
            !u.matches_topic(who(None, "c"), "t/-x/1"),
            "no user: no match"
        );
        // A client id with a wildcard or a separator never gets an allow through a
        // substitution.
        assert!(!r.matches_topic(who(None, "+"), "devices/+/x"));
        assert!(!r.covers_filter(who(None, "+"), "devices/+/#"));
        assert!(!r.matches_topic(who(None, "a/b"), "devices/a/b/x"));
        assert!(!r.intersects_filter(who(None, "+"), "devices/+/#"));
    }

    #[test]
    fn filters_cover_and_intersect() {
        let w = who(Some("u"), "c");
        let r: Rule = "allow both a/+/c".parse().unwrap();
        assert!(r.covers_filter(w, "a/b/c") && r.covers_filter(w, "a/+/c"));
        assert!(!r.covers_filter(w, "a/#") && r.intersects_filter(w, "a/#"));
        assert!(!r.intersects_filter(w, "a/b/d") && r.intersects_filter(w, "+/+/+"));
        assert!(r.intersects_filter(w, "#"));
        let h: Rule = "allow both a/#".parse().unwrap();
        assert!(h.covers_filter(w, "a") && h.covers_filter(w, "a/#") && h.covers_filter(w, "a/+"));
        assert!(!h.covers_filter(w, "#") && !h.covers_filter(w, "+/x"));
        assert!(h.intersects_filter(w, "+/x") && !h.intersects_filter(w, "b/+"));
        let flat: Rule = "allow both a".parse().unwrap();
        assert!(flat.intersects_filter(w, "a/#"), "a/# matches a");
        assert!(!flat.intersects_filter(w, "a/+"));
        assert!(!h.matches_topic(w, "$SYS/x") && !h.intersects_filter(w, "$SYS/#"));
    }

    #[test]
    fn specificity_orders_subject_then_literal_levels_then_hash() {
        let s = |t: &str| t.parse::<Rule>().unwrap().specificity();
        assert!(s("allow both client c #") > s("allow both user u a/b/c/d"));
        assert!(s("allow both user u #") > s("allow both a/b/c"));
        assert!(s("allow both a/b/c") > s("allow both a/b/#"));
        assert!(s("allow both a/b/+") > s("allow both a/b/#"));
        assert!(s("allow both a/%c/x") == s("allow both a/b/x"));
        assert!(s("allow both a/+/c") == s("deny both a/b/+"));
    }
}
