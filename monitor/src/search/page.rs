//! One page of a search, as the console shows it: the events of the page (newest first), how
//! many match in all, and a histogram of the matches over the time range, all from one pass of
//! tantivy over the index (its date-histogram aggregation over the `time` fast field).

use fubar_logproto::Event;
use serde_json::json;
use tantivy::aggregation::agg_req::Aggregations;
use tantivy::aggregation::agg_result::{AggregationResult, BucketResult};
use tantivy::aggregation::{AggContextParams, AggregationCollector, Key};
use tantivy::collector::Count;

use super::{build_query, newest_first, SearchError, SearchRequest, MAX_LIMIT};
use crate::index::{name, EventIndex};

/// Matching events a page may skip (newer than it): tantivy keeps every skipped hit in a heap,
/// so deeper pages are refused; a narrower time range reaches the same events.
pub const MAX_SKIPPED: usize = 100_000;

/// The aggregation's name in the request and its result.
const HISTOGRAM: &str = "histogram";

/// A page of a search over a closed time range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// The query and class (its `limit` is ignored: `page_size` says how many).
    pub search: SearchRequest,
    /// The range's start (µs since the Unix epoch, inclusive).
    pub from_us: i64,
    /// The range's end (µs, exclusive); after `from_us`.
    pub until_us: i64,
    /// Events per page.
    pub page_size: usize,
    /// The page, from 0 (newest).
    pub page: usize,
    /// Bars of the histogram wanted (the range is cut into about this many equal intervals).
    pub buckets: usize,
}

/// One bar of the histogram: the matching events in `[start_us, start_us + width)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// Its start (µs since the Unix epoch).
    pub start_us: i64,
    /// Matching events in it.
    pub count: u64,
}

/// A page of results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The page's events, newest first.
    pub events: Vec<Event>,
    /// Matching events in the whole range.
    pub total: usize,
    /// The histogram over the range, oldest bar first.
    pub histogram: Vec<Bucket>,
    /// The width of each bar, µs.
    pub bucket_us: i64,
}

/// The width of a histogram bar over `[from, until)` cut in about `buckets`: whole
/// milliseconds (the aggregation's unit), at least one.
pub fn bucket_width_us(from_us: i64, until_us: i64, buckets: usize) -> i64 {
    let span_ms = (until_us.saturating_sub(from_us) / 1000).max(1);
    let buckets = i64::try_from(buckets.max(1)).unwrap_or(i64::MAX);
    (span_ms.saturating_add(buckets - 1) / buckets).max(1) * 1000
}

/// Runs the search of `request`'s page, its total and its histogram in one pass.
pub fn search_page(index: &EventIndex, request: &PageRequest) -> Result<Page, SearchError> {
    if request.until_us <= request.from_us {
        return Err(SearchError::BadQuery(
            "the time range ends before it starts".to_owned(),
        ));
    }
    let mut search = request.search.clone();
    search.since_us = None;
    search.from_us = Some(request.from_us);
    search.until_us = Some(request.until_us);
    let fields = index.fields();
    let query = build_query(index.index(), fields, &search, 0)?;
    let page_size = request.page_size.clamp(1, MAX_LIMIT);
    let offset = request.page.saturating_mul(page_size);
    if offset > MAX_SKIPPED {
        return Err(SearchError::BadQuery(format!(
            "page {} is too deep (pages skip at most {MAX_SKIPPED} events): narrow the time range",
            request.page.saturating_add(1)
        )));
    }
    let bucket_us = bucket_width_us(request.from_us, request.until_us, request.buckets);
    let histogram = histogram_collector(request.from_us, request.until_us, bucket_us)?;
    let searcher = index.searcher();
    let (events, (total, aggregated)) = newest_first(
        &searcher,
        fields,
        &*query,
        page_size,
        offset,
        (Count, histogram),
    )?;
    let histogram = match aggregated.0.get(HISTOGRAM) {
        Some(AggregationResult::BucketResult(BucketResult::Histogram { buckets })) => buckets
            .iter()
            .map(|b| Bucket {
                start_us: key_ms(&b.key).saturating_mul(1000),
                count: b.doc_count,
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(Page {
        events,
        total,
        histogram,
        bucket_us,
    })
}

/// A date histogram over `time` in `[from, until)` with bars of `bucket_us` starting at
/// `from`, empty bars included.
fn histogram_collector(
    from_us: i64,
    until_us: i64,
    bucket_us: i64,
) -> Result<AggregationCollector, SearchError> {
    let interval_ms = bucket_us / 1000;
    let from_ms = from_us.div_euclid(1000);
    let last_ms = (until_us - 1).div_euclid(1000);
    let request = json!({
        HISTOGRAM: {
            "date_histogram": {
                "field": name::TIME,
                "fixed_interval": format!("{interval_ms}ms"),
                "offset": format!("{}ms", from_ms.rem_euclid(interval_ms)),
                "min_doc_count": 0,
                "extended_bounds": { "min": from_ms, "max": last_ms },
                "hard_bounds": { "min": from_ms, "max": last_ms },
            }
        }
    });
    let aggregations: Aggregations = serde_json::from_value(request)
        .map_err(|e| SearchError::BadQuery(format!("histogram request: {e}")))?;
    Ok(AggregationCollector::from_aggs(
        aggregations,
        AggContextParams::default(),
    ))
}

/// A histogram key (milliseconds since the Unix epoch) as an integer.
fn key_ms(key: &Key) -> i64 {
    match key {
        Key::I64(v) => *v,
        Key::U64(v) => i64::try_from(*v).unwrap_or(i64::MAX),
        // Whole milliseconds, so exact in an f64.
        #[allow(
            clippy::cast_possible_truncation,
            reason = "keys are whole milliseconds"
        )]
        Key::F64(v) => *v as i64,
        Key::Str(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::EventIndex;
    use fubar_logproto::Class;

    fn event(seq: u64, time_us: i64, client: &str) -> Event {
        Event {
            node: "n1@h".into(),
            epoch: 1,
            seq,
            time_us,
            class: Class::Access,
            message: "connected".into(),
            fields: vec![("client".into(), client.to_owned())],
        }
    }

    fn index_of(events: &[Event]) -> (tempfile::TempDir, EventIndex) {
        let dir = tempfile::tempdir().unwrap();
        let index = EventIndex::open_or_create(dir.path(), 15_000_000).unwrap();
        for e in events {
            index.add(e).unwrap();
        }
        index.commit().unwrap();
        (dir, index)
    }

    #[test]
    fn the_histogram_counts_every_match_of_the_range_and_pages_go_newest_first() {
        let base = 1_700_000_000_000_000;
        let events: Vec<Event> = (0..50)
            .map(|i| event(i, base + i64::try_from(i).unwrap() * 1_000_000, "c1"))
            .chain([event(99, base + 5_000_000, "c2")])
            .collect();
        let (_dir, index) = index_of(&events);
        let request = PageRequest {
            search: SearchRequest {
                query: "client:c1".into(),
                ..SearchRequest::default()
            },
            from_us: base + 10_000_000,
            until_us: base + 40_000_000,
            page_size: 7,
            page: 1,
            buckets: 6,
        };
        let page = search_page(&index, &request).unwrap();
        assert_eq!(page.total, 30);
        assert_eq!(page.bucket_us, 5_000_000);
        assert_eq!(page.histogram.len(), 6, "{:?}", page.histogram);
        assert!(page.histogram.iter().all(|b| b.count == 5));
        assert_eq!(page.histogram[0].start_us, base + 10_000_000);
        let seqs: Vec<u64> = page.events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![32, 31, 30, 29, 28, 27, 26]);
        // A page past the end is empty, not an error; an absurd one is refused.
        let past = PageRequest {
            page: 10,
            ..request.clone()
        };
        let page = search_page(&index, &past).unwrap();
        assert!(page.events.is_empty());
        assert_eq!(page.total, 30);
        let absurd = PageRequest {
            page: usize::MAX,
            ..request.clone()
        };
        assert!(matches!(
            search_page(&index, &absurd),
            Err(SearchError::BadQuery(m)) if m.contains("too deep")
        ));
    }

    #[test]
    fn a_range_ending_before_it_starts_or_a_bad_query_is_refused() {
        let (_dir, index) = index_of(&[event(1, 1_000_000, "c1")]);
        let mut request = PageRequest {
            search: SearchRequest::default(),
            from_us: 2_000_000,
            until_us: 1_000_000,
            page_size: 10,
            page: 0,
            buckets: 10,
        };
        assert!(matches!(
            search_page(&index, &request),
            Err(SearchError::BadQuery(_))
        ));
        request.until_us = 3_000_000;
        request.from_us = -(i64::MAX / 10);
        assert!(matches!(
            search_page(&index, &request),
            Err(SearchError::BadQuery(m)) if m.contains("out of reach")
        ));
        request.from_us = 2_000_000;
        request.search.query = "client:(".into();
        assert!(matches!(
            search_page(&index, &request),
            Err(SearchError::BadQuery(_))
        ));
    }
}
