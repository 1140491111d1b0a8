//! Reading a mosquitto `acl_file` into topic rules (sans IO: text in, rules out).
//!
//! | mosquitto | fubar |
//! |---|---|
//! | `user NAME` then `topic read F` | `allow subscribe user NAME F` |
//! | `topic write F` / `topic readwrite F` (or `topic F`) | `allow publish …` / `allow both …` |
//! | `topic deny F` | `deny both user NAME F` |
//! | `pattern [read\|write\|readwrite\|deny] F` | the same, for everyone (`%u`, `%c` kept) |
//!
//! mosquitto checks a user's `topic` lines before the `pattern` lines, and within each group a
//! `deny` before any grant; fubar's rules rank a user rule above a rule for everyone (the
//! same) and, within a rank, the more specific filter first. The two agree unless, within one
//! group, a grant more specific than a `deny` overlaps it: such a pair is refused, as is
//! anything else fubar cannot express (`topic` lines before the first `user` line, which
//! mosquitto applies to anonymous clients only; `$` topics; names with spaces). mosquitto
//! denies what no line grants: `acl.default = deny` gives the same decisions.

use super::rule::{Actions, Effect, Rule, Subject};

/// One line the import refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// 1-based line number.
    pub line: usize,
    /// Why.
    pub why: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.why)
    }
}

/// The rules of a mosquitto acl_file, or every line it refused (then nothing is imported).
pub fn import(text: &str) -> Result<Vec<Rule>, Vec<Refusal>> {
    let mut refused = Vec::new();
    let mut user: Option<String> = None;
    // (line, group: the user or None for patterns, rule)
    let mut rules: Vec<(usize, Option<String>, Rule)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let mut refuse = |why: String| refused.push(Refusal { line, why });
        let (keyword, rest) = match trimmed.split_once(char::is_whitespace) {
            Some((k, r)) => (k, r.trim()),
            None => (trimmed, ""),
        };
        match keyword {
            "user" => {
                if rest.is_empty() {
                    refuse("`user` without a user name".into());
                } else if rest.contains(char::is_whitespace) {
                    refuse(format!(
                        "user name {rest:?} has a space: rules cannot name it"
                    ));
                } else {
                    user = Some(rest.to_owned());
                }
            }
            "topic" | "pattern" => {
                let (access, filter) = match rest.split_once(char::is_whitespace) {
                    Some((a, f)) => (Some(a), f.trim()),
                    None => (None, rest),
                };
                if filter.is_empty() {
                    refuse(format!("`{keyword}` without a topic"));
                    continue;
                }
                let (effect, actions) = match access {
                    None => (Effect::Allow, Actions::Both),
                    Some("read") => (Effect::Allow, Actions::Subscribe),
                    Some("write") => (Effect::Allow, Actions::Publish),
                    Some("readwrite") => (Effect::Allow, Actions::Both),
                    Some("deny") => (Effect::Deny, Actions::Both),
                    Some(other) => {
                        refuse(format!(
                            "access {other:?} is not read, write, readwrite or deny"
                        ));
                        continue;
                    }
                };
                let (subject, group) = if keyword == "pattern" {
                    (Subject::Everyone, None)
                } else if let Some(u) = &user {
                    if filter.contains('%') {
                        refuse(format!(
                            "{filter:?}: mosquitto substitutes %u/%c only in `pattern` lines"
                        ));
                        continue;
                    }
                    (Subject::User(u.clone()), Some(u.clone()))
                } else {
                    refuse(
                        "a `topic` line before the first `user` line is for anonymous clients only in mosquitto; fubar has no rule for that".into(),
                    );
                    continue;
                };
                match Rule::new(effect, actions, subject, filter) {
                    Ok(rule) => rules.push((line, group, rule)),
                    Err(e) => refuse(e.to_string()),
                }
            }
            other => refuse(format!(
                "{other:?} is not a mosquitto acl_file line (user, topic, pattern, # comment)"
            )),
        }
    }
    // Within a group mosquitto applies a deny before any grant: a grant more specific than an
    // overlapping deny would win here and lose there.
    for (dline, dgroup, deny) in rules.iter().filter(|r| r.2.effect == Effect::Deny) {
        for (aline, agroup, allow) in rules.iter().filter(|r| r.2.effect == Effect::Allow) {
            if agroup == dgroup
                && allow.specificity() > deny.specificity()
                && filters_overlap(&allow.filter, &deny.filter)
            {
                refused.push(Refusal {
                    line: *aline,
                    why: format!(
                        "mosquitto denies {:?} here (line {dline} denies {:?}), fubar would allow it (the more specific rule wins): write the rules without the overlap",
                        allow.filter, deny.filter
                    ),
                });
            }
        }
    }
    if refused.is_empty() {
        Ok(rules.into_iter().map(|(_, _, r)| r).collect())
    } else {
        refused.sort_by_key(|r| r.line);
        Err(refused)
    }
}

/// Whether two filters can match a common topic, taking a level with `%` as `+`.
fn filters_overlap(a: &str, b: &str) -> bool {
    fn norm(l: &str) -> &str {
        if l.contains('%') {
            "+"
        } else {
            l
        }
    }
    let mut la = a.split('/').map(norm);
    let mut lb = b.split('/').map(norm);
    loop {
        match (la.next(), lb.next()) {
            (Some("#"), _) | (_, Some("#")) => return true,
            (None, None) => return true,
            (Some(x), Some(y)) if x == "+" || y == "+" || x == y => {}
            (None, Some(_)) | (Some(_), None) => return false,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(rules: &[Rule]) -> Vec<String> {
        rules.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_file_becomes_rules() {
        let file = "# comment\n\
                    \n\
                    pattern readwrite devices/%c/#\n\
                    pattern read tenants/%u/#\n\
                    user alice\n\
                    topic read news/#\n\
                    topic write alice/out\n\
                    topic alice/both\n\
                    topic deny alice/secret\n\
                    user bob\n\
                    topic readwrite bob/#\n";
        let rules = import(file).unwrap();
        assert_eq!(
            texts(&rules),
            [
                "allow both devices/%c/#",
                "allow subscribe tenants/%u/#",
                "allow subscribe user alice news/#",
                "allow publish user alice alice/out",
                "allow both user alice alice/both",
                "deny both user alice alice/secret",
                "allow both user bob bob/#",
            ]
        );
    }

    #[test]
    fn garbage_and_what_fubar_cannot_express_are_refused_with_line_numbers() {
        let file = "topic read anon/#\n\
                    user alice\n\
                    topic sometimes x\n\
                    hello world\n\
                    topic read $SYS/#\n\
                    pattern read a/%x\n\
                    topic read a/%u\n\
                    user two words\n\
                    topic read a/#/b\n";
        let refused = import(file).unwrap_err();
        let lines: Vec<usize> = refused.iter().map(|r| r.line).collect();
        assert_eq!(lines, [1, 3, 4, 5, 6, 7, 8, 9], "{refused:#?}");
        assert!(refused[0].why.contains("anonymous"));
        assert!(refused[3].why.contains('$'));
        assert!(refused[4].why.contains("%x"));
    }

    #[test]
    fn a_grant_more_specific_than_a_deny_of_its_group_is_refused() {
        let file = "user a\ntopic deny x/#\ntopic read x/y\n";
        let refused = import(file).unwrap_err();
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].line, 3);
        // In different groups the ranks agree with mosquitto's order.
        assert!(import("pattern deny x/#\nuser a\ntopic read x/y\n").is_ok());
        // A deny at least as specific as the grant agrees too.
        assert!(import("user a\ntopic deny x/y\ntopic read x/#\n").is_ok());
    }
}
