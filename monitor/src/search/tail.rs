//! Matching single events against a search, for a live `log tail`.
//!
//! A [`TailFilter`] checks events one by one, with no index: the query is validated by the same
//! tantivy parser as a search (so it is refused with the same message), then its syntax tree is
//! evaluated against each event, field by field, with the same tokenizer the index uses for
//! `text`. Supported: terms and phrases on any field, `AND`/`OR`/`NOT`/`+`/`-` and parentheses,
//! ranges on `time`, `seq`, `epoch` and the keyword fields, `IN [..]` sets and `field:*` on the
//! fast fields (node, class, time, seq, epoch; as in a search), and phrase prefixes (`"keep-al"*`). Refused (`BadQuery`): phrase slop (`"a b"~2`),
//! and ranges or sets on `text`. Boosts are ignored (results are not scored).

use fubar_logproto::{Class, Event};
use tantivy::query_grammar::{
    self, Occur, UserInputAst, UserInputBound, UserInputLeaf, UserInputLiteral,
};
use tantivy::tokenizer::{TextAnalyzer, TokenizerManager};
use tantivy::Index;

use super::{parser, SearchError, SearchRequest};
use crate::index::{event_text, keyword_values, name, schema, KEYWORDS};

/// A search compiled for checking events one at a time.
#[derive(Clone)]
pub struct TailFilter {
    /// `None`: the query is empty, every event matches it.
    query: Option<UserInputAst>,
    class: Option<Class>,
    from_us: Option<i64>,
    until_us: Option<i64>,
    analyzer: TextAnalyzer,
    /// Scratch: the event's text and its tokens.
    text: String,
    tokens: Vec<String>,
}

impl std::fmt::Debug for TailFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TailFilter")
            .field("query", &self.query)
            .field("class", &self.class)
            .field("from_us", &self.from_us)
            .field("until_us", &self.until_us)
            .finish_non_exhaustive()
    }
}

/// Whether one event matches a search (compiles the query each time: for many events, keep a
/// [`TailFilter`]).
pub fn matches(request: &SearchRequest, event: &Event) -> Result<bool, SearchError> {
    let now = chrono::Utc::now().timestamp_micros();
    Ok(TailFilter::new(request, now)?.matches(event))
}

impl TailFilter {
    /// Compiles `request`; `since_us` counts back from `now_us`. `limit` plays no part.
    pub fn new(request: &SearchRequest, now_us: i64) -> Result<Self, SearchError> {
        let text = request.query.trim();
        let query = if text.is_empty() {
            None
        } else {
            let (schema, fields) = schema();
            let index = Index::create_in_ram(schema);
            parser(&index, &fields)
                .parse_query(text)
                .map_err(|e| SearchError::BadQuery(e.to_string()))?;
            let ast = query_grammar::parse_query(text)
                .map_err(|_| SearchError::BadQuery(format!("Syntax Error: {text}")))?;
            check(&ast)?;
            Some(ast)
        };
        let (from_us, until_us) = request.time_range(now_us);
        let analyzer = TokenizerManager::default()
            .get("default")
            .ok_or_else(|| SearchError::BadQuery("no default tokenizer".to_owned()))?;
        Ok(Self {
            query,
            class: request.class,
            from_us,
            until_us,
            analyzer,
            text: String::new(),
            tokens: Vec::new(),
        })
    }

    /// Whether `event` matches.
    pub fn matches(&mut self, event: &Event) -> bool {
        if self.class.is_some_and(|c| c != event.class)
            || self.from_us.is_some_and(|t| event.time_us < t)
            || self.until_us.is_some_and(|t| event.time_us >= t)
        {
            return false;
        }
        let Some(query) = &self.query else {
            return true;
        };
        event_text(&event.message, event.pairs(), &mut self.text);
        self.tokens.clear();
        let tokens = &mut self.tokens;
        self.analyzer
            .token_stream(&self.text)
            .process(&mut |t| tokens.push(t.text.clone()));
        let ctx = Ctx {
            event,
            tokens: &self.tokens,
            analyzer: self.analyzer.clone(),
        };
        // A query that reduces to nothing matches nothing, as tantivy's empty query does.
        ctx.eval(query).unwrap_or(false)
    }
}

/// An index field a query names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Text,
    Time,
    Seq,
    Epoch,
    Node,
    Class,
    Keyword(usize),
}

/// The field named by a query term (`None`: the default field); `None` if it is not one a
/// tail can check (the parser has refused unknown names already).
fn target(field: Option<&str>) -> Option<Target> {
    Some(match field {
        None | Some(name::TEXT) => Target::Text,
        Some(name::TIME) => Target::Time,
        Some(name::SEQ) => Target::Seq,
        Some(name::EPOCH) => Target::Epoch,
        Some(name::NODE) => Target::Node,
        Some(name::CLASS) => Target::Class,
        Some(other) => Target::Keyword(KEYWORDS.iter().position(|(k, _)| *k == other)?),
    })
}

/// Refuses what [`Ctx::eval`] cannot check exactly.
fn check(ast: &UserInputAst) -> Result<(), SearchError> {
    let refuse = |what: &str| Err(SearchError::BadQuery(format!("{what} in a tail query")));
    match ast {
        UserInputAst::Clause(clauses) => clauses.iter().try_for_each(|(_, a)| check(a)),
        UserInputAst::Boost(inner, _) => check(inner),
        UserInputAst::Leaf(leaf) => {
            let (field, text_refused) = match &**leaf {
                UserInputLeaf::All => return Ok(()),
                UserInputLeaf::Literal(l) if l.slop > 0 => return refuse("phrase slop (~N)"),
                UserInputLeaf::Literal(l) => (l.field_name.as_deref(), false),
                UserInputLeaf::Range { field, .. } | UserInputLeaf::Set { field, .. } => {
                    (field.as_deref(), true)
                }
                UserInputLeaf::Exists { field } => match target(Some(field)) {
                    Some(Target::Text | Target::Keyword(_)) => {
                        return refuse(&format!("{field}:* (only fast fields have it)"))
                    }
                    _ => (Some(field.as_str()), false),
                },
                UserInputLeaf::Regex { .. } => return refuse("a regular expression"),
            };
            match target(field) {
                None => refuse(&format!("field {:?}", field.unwrap_or_default())),
                Some(Target::Text) if text_refused => refuse("a range or set on text"),
                Some(_) => Ok(()),
            }
        }
    }
}

/// One event being checked.
struct Ctx<'a> {
    event: &'a Event,
    /// Its text's tokens, in order.
    tokens: &'a [String],
    analyzer: TextAnalyzer,
}

impl Ctx<'_> {
    /// Whether the event matches `ast`; `None` if `ast` reduces to no condition (a literal
    /// with no tokens), which its enclosing clause then ignores, as tantivy's parser does.
    fn eval(&self, ast: &UserInputAst) -> Option<bool> {
        match ast {
            UserInputAst::Boost(inner, _) => self.eval(inner),
            UserInputAst::Leaf(leaf) => self.leaf(leaf),
            UserInputAst::Clause(clauses) => {
                let (mut must, mut should, mut any_should) = (false, false, false);
                let mut any = false;
                for (occur, sub) in clauses {
                    let Some(hit) = self.eval(sub) else {
                        continue;
                    };
                    any = true;
                    match occur.unwrap_or(Occur::Must) {
                        Occur::Must if !hit => return Some(false),
                        Occur::Must => must = true,
                        Occur::MustNot if hit => return Some(false),
                        Occur::MustNot => {}
                        Occur::Should => {
                            any_should = true;
                            should |= hit;
                        }
                    }
                }
                // Without required clauses, one optional clause must match; exclusions alone
                // match nothing.
                any.then_some(must || (any_should && should))
            }
        }
    }

    fn leaf(&self, leaf: &UserInputLeaf) -> Option<bool> {
        match leaf {
            UserInputLeaf::All => Some(true),
            UserInputLeaf::Literal(literal) => self.literal(literal),
            UserInputLeaf::Range {
                field,
                lower,
                upper,
            } => {
                let t = target(field.as_deref())?;
                if bound_str(lower).is_none() && bound_str(upper).is_none() {
                    return None;
                }
                Some(self.any_value(t, |v| in_range(t, v, lower, upper)))
            }
            UserInputLeaf::Set { field, elements } => {
                let t = target(field.as_deref())?;
                Some(self.any_value(t, |v| elements.iter().any(|e| equal(t, v, e))))
            }
            UserInputLeaf::Exists { field } => {
                let t = target(Some(field))?;
                Some(self.any_value(t, |_| true))
            }
            UserInputLeaf::Regex { .. } => Some(false),
        }
    }

    fn literal(&self, literal: &UserInputLiteral) -> Option<bool> {
        let t = target(literal.field_name.as_deref())?;
        if t != Target::Text {
            return Some(self.any_value(t, |v| equal(t, v, &literal.phrase)));
        }
        let mut analyzer = self.analyzer.clone();
        let mut phrase = Vec::new();
        analyzer
            .token_stream(&literal.phrase)
            .process(&mut |t| phrase.push(t.text.clone()));
        let (last, init) = phrase.split_last()?;
        let n = phrase.len();
        let hit = self.tokens.windows(n).any(|w| {
            w[..n - 1] == *init
                && if literal.prefix {
                    w[n - 1].starts_with(last.as_str())
                } else {
                    w[n - 1] == *last
                }
        });
        Some(hit)
    }

    /// Whether any of the event's values for `t` passes `test` (for `Text`, the whole text).
    fn any_value(&self, t: Target, mut test: impl FnMut(&str) -> bool) -> bool {
        let e = self.event;
        match t {
            Target::Text => !self.tokens.is_empty() && test(""),
            Target::Time => test(&e.time_us.to_string()),
            Target::Seq => test(&e.seq.to_string()),
            Target::Epoch => test(&e.epoch.to_string()),
            Target::Node => test(&e.node),
            Target::Class => test(e.class.name()),
            Target::Keyword(i) => keyword_values(e.pairs(), KEYWORDS[i].1).any(test),
        }
    }
}

/// A bound's text; `None` if unbounded (`*` included).
fn bound_str(bound: &UserInputBound) -> Option<&str> {
    match bound {
        UserInputBound::Inclusive(s) | UserInputBound::Exclusive(s) if s != "*" => Some(s),
        _ => None,
    }
}

/// A value as the ordered key a comparison uses: numbers as numbers (times in µs), strings as
/// bytes, as the index orders its terms. `None` if a query value does not parse.
#[derive(PartialEq, PartialOrd)]
enum Key<'a> {
    Number(i128),
    Bytes(&'a [u8]),
}

/// `value` is the event's (already numeric for numbers and times); `query` is as written.
fn key<'a>(t: Target, value: &'a str, from_query: bool) -> Option<Key<'a>> {
    match t {
        Target::Time if from_query => chrono::DateTime::parse_from_rfc3339(value)
            .ok()
            .map(|d| Key::Number(i128::from(d.timestamp_micros()))),
        Target::Time | Target::Seq | Target::Epoch => value.parse().ok().map(Key::Number),
        _ => Some(Key::Bytes(value.as_bytes())),
    }
}

fn equal(t: Target, value: &str, query: &str) -> bool {
    matches!((key(t, value, false), key(t, query, true)), (Some(a), Some(b)) if a == b)
}

fn in_range(t: Target, value: &str, lower: &UserInputBound, upper: &UserInputBound) -> bool {
    let Some(v) = key(t, value, false) else {
        return false;
    };
    let above = match (lower, bound_str(lower).and_then(|s| key(t, s, true))) {
        (_, None) => bound_str(lower).is_none(),
        (UserInputBound::Exclusive(_), Some(b)) => v > b,
        (_, Some(b)) => v >= b,
    };
    let below = match (upper, bound_str(upper).and_then(|s| key(t, s, true))) {
        (_, None) => bound_str(upper).is_none(),
        (UserInputBound::Exclusive(_), Some(b)) => v < b,
        (_, Some(b)) => v <= b,
    };
    above && below
}
