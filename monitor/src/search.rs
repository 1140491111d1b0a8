//! Log search over the [`EventIndex`]: tantivy query syntax, class and time filters, newest
//! first.
//!
//! Queries name the index fields: `time` (a date: `time:[2026-11-25T14:00:00Z TO *]`), `node`,
//! `class`, the exact-match keywords of [`KEYWORDS`](crate::index::KEYWORDS) (`client`, `user`,
//! `peer`, `topic`, `type`, `filter`), `seq`, `epoch`, and `text` (message and every field
//! value, tokenized), the default field. Terms are ANDed unless `OR` says otherwise:
//! `client:c1 class:access`, `topic:"sensors/42/temp"`, `"keep-alive timeout"`, `node:n1@host`.
//! A keyword value with `:`, spaces or other query syntax in it is quoted:
//! `peer:"127.0.0.1:58096"`. A query of exclusions only (`-client:c1`) is refused by the
//! parser; `* -client:c1` says it. The empty query matches every event.

use std::ops::Bound;

use fubar_logproto::{Class, Event};
use serde::{Deserialize, Serialize};
use tantivy::collector::sort_key::SortByStaticFastValue;
use tantivy::collector::{Collector, Count, TopDocs};
use tantivy::query::{AllQuery, BooleanQuery, Occur, Query, QueryParser, RangeQuery, TermQuery};
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::{DateTime, DocAddress, Index, Order, Searcher, TantivyDocument, TantivyError, Term};

use crate::index::{date, name, EventIndex, Fields, IndexError};

mod page;
mod tail;

pub use page::{bucket_width_us, search_page, Bucket, Page, PageRequest, MAX_SKIPPED};

pub use tail::{matches, TailFilter};

/// The furthest time from 1970 a search may name, in µs (the index counts nanoseconds in
/// an `i64`).
const MAX_TIME_US: i64 = i64::MAX / 1000;

/// The most events one search returns; a larger `limit` is lowered to it.
pub const MAX_LIMIT: usize = 10_000;

/// A search: a query string and filters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchRequest {
    /// Tantivy query syntax over the index fields; empty matches every event.
    pub query: String,
    /// Only this class.
    pub class: Option<Class>,
    /// Only the events of the last this many microseconds before the search runs (`--since`).
    pub since_us: Option<i64>,
    /// Only events at or after this time (µs since the Unix epoch).
    pub from_us: Option<i64>,
    /// Only events before this time (µs since the Unix epoch).
    pub until_us: Option<i64>,
    /// The most events returned (newest first); 0 returns none.
    pub limit: usize,
}

impl SearchRequest {
    /// The time range `[from, until)` in µs the filters leave, at time `now_us`.
    pub fn time_range(&self, now_us: i64) -> (Option<i64>, Option<i64>) {
        let since = self.since_us.map(|d| now_us.saturating_sub(d));
        let from = match (self.from_us, since) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        (from, self.until_us)
    }
}

/// Why a search failed.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The query does not parse or names what cannot be searched: the parser's message.
    #[error("bad query: {0}")]
    BadQuery(String),
    /// The index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
}

/// The events matching `request`, newest first (ties by sequence number, highest first), at
/// most `request.limit` (and [`MAX_LIMIT`]).
pub fn search(index: &EventIndex, request: &SearchRequest) -> Result<Vec<Event>, SearchError> {
    search_at(index, request, chrono::Utc::now().timestamp_micros())
}

/// `search`, with `since_us` counted back from `now_us`.
pub(crate) fn search_at(
    index: &EventIndex,
    request: &SearchRequest,
    now_us: i64,
) -> Result<Vec<Event>, SearchError> {
    let limit = request.limit.min(MAX_LIMIT);
    if limit == 0 {
        return Ok(Vec::new());
    }
    let fields = index.fields();
    let query = build_query(index.index(), fields, request, now_us)?;
    let searcher = index.searcher();
    // The count rides along (one increment per match): one function serves both searches.
    let (events, _) = newest_first(&searcher, fields, &*query, limit, 0, Count)?;
    Ok(events)
}

/// The `limit` newest matches of `query` after skipping `offset` (newest first, ties by
/// sequence), with what `extra` collects in the same pass.
pub(crate) fn newest_first<C: Collector>(
    searcher: &Searcher,
    fields: &Fields,
    query: &dyn Query,
    limit: usize,
    offset: usize,
    extra: C,
) -> Result<(Vec<Event>, C::Fruit), SearchError> {
    let top = TopDocs::with_limit(limit).and_offset(offset).order_by((
        (
            SortByStaticFastValue::<DateTime>::for_field(name::TIME),
            Order::Desc,
        ),
        (
            SortByStaticFastValue::<u64>::for_field(name::SEQ),
            Order::Desc,
        ),
    ));
    let (hits, fruit) = searcher.search(query, &(top, extra)).map_err(|e| match e {
        // The parser let through what the schema cannot do (`topic:*` on a field that is
        // not fast): the query's fault, not the index's.
        TantivyError::SchemaError(message) => SearchError::BadQuery(message),
        e => IndexError::tantivy("search")(e).into(),
    })?;
    let events = hits
        .into_iter()
        .map(|(_, address)| stored_event(searcher, fields, address))
        .collect::<Result<_, _>>()?;
    Ok((events, fruit))
}

/// The query parser over the schema: `text` by default, terms ANDed.
pub(crate) fn parser(index: &Index, fields: &Fields) -> QueryParser {
    let mut parser = QueryParser::for_index(index, vec![fields.text]);
    parser.set_conjunction_by_default();
    parser
}

/// The user's query (all events if empty) AND the class AND the time range.
fn build_query(
    index: &Index,
    fields: &Fields,
    request: &SearchRequest,
    now_us: i64,
) -> Result<Box<dyn Query>, SearchError> {
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    let text = request.query.trim();
    if !text.is_empty() {
        let query = parser(index, fields)
            .parse_query(text)
            .map_err(|e| SearchError::BadQuery(e.to_string()))?;
        clauses.push((Occur::Must, query));
    }
    if let Some(class) = request.class {
        let term = Term::from_field_text(fields.class, class.name());
        clauses.push((
            Occur::Must,
            Box::new(TermQuery::new(term, IndexRecordOption::Basic)),
        ));
    }
    let (from, until) = request.time_range(now_us);
    // The index keeps times in nanoseconds: beyond about 292 years from 1970 they overflow.
    if [from, until]
        .iter()
        .flatten()
        .any(|t| t.unsigned_abs() > MAX_TIME_US.unsigned_abs())
    {
        return Err(SearchError::BadQuery(
            "a time of the range is out of reach (years 1678 to 2262)".to_owned(),
        ));
    }
    if from.is_some() || until.is_some() {
        let bound = |t: Option<i64>, inclusive: bool| match t {
            None => Bound::Unbounded,
            Some(t) if inclusive => Bound::Included(Term::from_field_date(fields.time, date(t))),
            Some(t) => Bound::Excluded(Term::from_field_date(fields.time, date(t))),
        };
        let range = RangeQuery::new(bound(from, true), bound(until, false));
        clauses.push((Occur::Must, Box::new(range)));
    }
    Ok(match clauses.len() {
        0 => Box::new(AllQuery),
        1 => clauses.remove(0).1,
        _ => Box::new(BooleanQuery::new(clauses)),
    })
}

/// The event stored in a document.
fn stored_event(
    searcher: &Searcher,
    fields: &Fields,
    address: DocAddress,
) -> Result<Event, IndexError> {
    let doc: TantivyDocument = searcher
        .doc(address)
        .map_err(IndexError::tantivy("read a document"))?;
    let bytes = doc
        .get_first(fields.event)
        .and_then(|v| v.as_bytes())
        .ok_or_else(|| IndexError::Decode("a document without its event".to_owned()))?;
    postcard::from_bytes(bytes).map_err(|e| IndexError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests;
