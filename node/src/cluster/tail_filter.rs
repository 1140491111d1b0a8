//! Which events a live tail (`fubar log tail QUERY`) prints: the search syntax's common case,
//! checked event by event without an index. A query is terms joined by AND (or spaces); a
//! term is `field:value` (exact, as the index's keyword fields), `field:"value"`, a bare word
//! or a `"phrase"` (found in the message or any field value, ignoring case), or either
//! prefixed with `NOT` or `-`. OR and parentheses are refused: `fubar search` has them.

use fubar_logproto::Event;

/// A parsed tail query.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TailFilter {
    terms: Vec<(bool, Term)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Term {
    /// A field's value, exactly (`node`, `class` and `seq` included).
    Field(String, String),
    /// Text anywhere, lower-cased.
    Text(String),
}

impl TailFilter {
    /// Parses `query` (empty: every event).
    pub fn parse(query: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        let mut rest = query.trim();
        while !rest.is_empty() {
            let (token, after) = next_token(rest)?;
            rest = after.trim_start();
            match token.as_str() {
                "AND" | "&&" => continue,
                "OR" | "||" => {
                    return Err(
                        "a tail takes terms joined by AND; use `fubar search` for OR".into(),
                    )
                }
                _ => {}
            }
            if token.starts_with('(') {
                return Err("a tail takes no parentheses; use `fubar search` for them".into());
            }
            let (negated, token) = match token.strip_prefix('-') {
                Some(t) => (true, t.to_owned()),
                None if token == "NOT" => {
                    let (next, after) = next_token(rest)?;
                    rest = after.trim_start();
                    (true, next)
                }
                None => (false, token),
            };
            terms.push((negated, term_of(&token)));
        }
        Ok(Self { terms })
    }

    /// Whether `event` passes.
    pub fn matches(&self, event: &Event) -> bool {
        self.terms
            .iter()
            .all(|(negated, term)| holds(term, event) != *negated)
    }
}

/// The next token: a quoted phrase (kept with its quotes) or a run without spaces; a
/// `field:"quoted value"` stays one token.
fn next_token(s: &str) -> Result<(String, &str), String> {
    let mut in_quotes = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            c if c.is_whitespace() && !in_quotes => return Ok((s[..i].to_owned(), &s[i..])),
            _ => {}
        }
    }
    if in_quotes {
        return Err(format!("unbalanced quote in {s:?}"));
    }
    Ok((s.to_owned(), ""))
}

fn term_of(token: &str) -> Term {
    let unquote = |v: &str| v.trim_matches('"').to_owned();
    match token.split_once(':') {
        Some((field, value)) if !field.is_empty() && !field.starts_with('"') => {
            Term::Field(field.to_owned(), unquote(value))
        }
        _ => Term::Text(unquote(token).to_lowercase()),
    }
}

fn holds(term: &Term, e: &Event) -> bool {
    match term {
        Term::Field(field, value) => match field.as_str() {
            "node" => &e.node == value,
            "class" => e.class.name() == value,
            "seq" => e.seq.to_string() == *value,
            "text" => contains(&e.message, &value.to_lowercase()),
            _ => e.fields.iter().any(|(k, v)| k == field && v == value),
        },
        Term::Text(text) => {
            contains(&e.message, text) || e.fields.iter().any(|(_, v)| contains(v, text))
        }
    }
}

fn contains(haystack: &str, lower_needle: &str) -> bool {
    haystack.to_lowercase().contains(lower_needle)
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use fubar_logproto::Class;

    use super::*;

    fn event(class: Class, message: &str, fields: &[(&'static str, &str)]) -> Event {
        Event {
            node: "n1@host".into(),
            epoch: 1,
            seq: 7,
            time_us: 0,
            class,
            message: message.into(),
            fields: fields
                .iter()
                .map(|(k, v)| (Cow::Borrowed(*k), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn fields_words_phrases_and_negation() {
        let e = event(
            Class::Access,
            "disconnected",
            &[("client", "c1"), ("reason", "keep-alive timeout")],
        );
        let yes = [
            "",
            "client:c1",
            "client:c1 AND class:access",
            "node:n1@host seq:7",
            "\"keep-alive timeout\"",
            "Disconnected",
            "client:\"c1\"",
            "-client:c2",
            "NOT class:protocol",
        ];
        for q in yes {
            assert!(TailFilter::parse(q).unwrap().matches(&e), "{q}");
        }
        let no = [
            "client:c2",
            "class:access AND client:c9",
            "-client:c1",
            "timeouts",
        ];
        for q in no {
            assert!(!TailFilter::parse(q).unwrap().matches(&e), "{q}");
        }
    }

    #[test]
    fn what_a_tail_does_not_take_is_refused_with_a_reason() {
        for q in ["a OR b", "(a AND b)", "\"open"] {
            assert!(TailFilter::parse(q).is_err(), "{q}");
        }
    }
}
