use std::collections::BTreeSet;

use fubar_logs::format_line;

use super::*;
use crate::index::tests::{event, T0};

/// A small cluster's worth of events: seq `i + 1` happens `i + 1` µs after `T0`.
fn fixture() -> Vec<Event> {
    let peer1 = ("peer", "127.0.0.1:58096");
    let peer2 = ("peer", "10.0.0.2:40000");
    let mut events = vec![
        event(
            "n1@host",
            Class::Access,
            1,
            &[("client", "c1"), peer1, ("user", "alice")],
        ),
        event(
            "n1@host",
            Class::Protocol,
            2,
            &[
                ("dir", "in"),
                ("client", "c1"),
                peer1,
                ("kind", "PUBLISH"),
                ("topic", "sensors/42/temp"),
            ],
        ),
        event(
            "n2@host",
            Class::Access,
            3,
            &[("client", "c2"), peer2, ("reason", "keep-alive timeout")],
        ),
        event(
            "n2@host",
            Class::Protocol,
            4,
            &[
                ("dir", "in"),
                ("client", "-"),
                ("kind", "CONNECT"),
                ("client_id", "c3"),
            ],
        ),
        event(
            "n1@host",
            Class::Warning,
            5,
            &[("reason", "timeout keep alive")],
        ),
        event(
            "n1@host",
            Class::Access,
            6,
            &[("client", "c1"), peer1, ("reason", "keep-alive timeout")],
        ),
        event(
            "n2@host",
            Class::Resource,
            7,
            &[("client", "c2"), ("filter", "sensors/+/temp")],
        ),
        event(
            "n2@host",
            Class::Protocol,
            8,
            &[
                ("client", "c2"),
                ("kind", "PUBLISH"),
                ("topic", "sensors/42/temp/x"),
            ],
        ),
    ];
    events[4].message = "keep-alive ping late".into();
    events
}

fn indexed(events: &[Event]) -> (tempfile::TempDir, EventIndex) {
    let dir = tempfile::tempdir().unwrap();
    let index = EventIndex::open_or_create(dir.path(), 0).unwrap();
    for e in events {
        index.add(e).unwrap();
    }
    index.commit().unwrap();
    (dir, index)
}

fn request(query: &str) -> SearchRequest {
    SearchRequest {
        query: query.into(),
        limit: 100,
        ..SearchRequest::default()
    }
}

/// The sequence numbers of a search's results, in order.
fn seqs(index: &EventIndex, request: &SearchRequest) -> Vec<u64> {
    search_at(index, request, T0 + 1_000)
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect()
}

fn query(index: &EventIndex, q: &str) -> Vec<u64> {
    seqs(index, &request(q))
}

#[test]
fn a_hit_is_the_identical_event_and_prints_like_a_redirect() {
    let events = fixture();
    let (_dir, index) = indexed(&events);
    assert_eq!(index.num_docs(), events.len() as u64);
    let mut found = search_at(&index, &request(""), T0).unwrap();
    found.reverse();
    assert_eq!(found, events);
    let lines: Vec<String> = found.iter().map(format_line).collect();
    let expected: Vec<String> = events.iter().map(format_line).collect();
    assert_eq!(lines, expected);
}

#[test]
fn each_query_form_finds_its_events_newest_first() {
    let (_dir, index) = indexed(&fixture());
    assert_eq!(query(&index, "client:c1 AND class:access"), [6, 1]);
    assert_eq!(
        query(&index, "client:c1 class:access"),
        [6, 1],
        "AND by default"
    );
    assert_eq!(query(&index, "client:c1 OR client:c3"), [6, 4, 2, 1]);
    assert_eq!(query(&index, "client:c3"), [4], "client_id feeds client");
    assert_eq!(
        query(&index, "topic:\"sensors/42/temp\""),
        [2],
        "exact topic"
    );
    assert_eq!(query(&index, "topic:sensors/42/temp"), [2]);
    assert_eq!(query(&index, "filter:\"sensors/+/temp\""), [7]);
    assert_eq!(query(&index, "\"keep-alive timeout\""), [6, 3], "a phrase");
    assert_eq!(
        query(&index, "keep alive timeout"),
        [6, 5, 3],
        "words, any order"
    );
    assert_eq!(query(&index, "node:n1@host"), [6, 5, 2, 1]);
    assert_eq!(query(&index, "node:n1@host -class:access"), [5, 2]);
    assert_eq!(query(&index, "type:PUBLISH"), [8, 2]);
    assert_eq!(query(&index, "peer:\"127.0.0.1:58096\""), [6, 2, 1]);
    assert_eq!(query(&index, "user:alice"), [1]);
    assert_eq!(query(&index, "seq:[3 TO 5]"), [5, 4, 3]);
    assert_eq!(query(&index, "epoch:7 AND seq:8"), [8]);
    let from = chrono::DateTime::from_timestamp_micros(T0 + 7).unwrap();
    let q = format!("time:[{} TO *]", from.to_rfc3339());
    assert_eq!(query(&index, &q), [8, 7]);
    assert_eq!(query(&index, "timeout"), [6, 5, 3], "field values are text");
    assert_eq!(query(&index, "TIMEOUT"), [6, 5, 3], "text is case-blind");
    assert_eq!(
        query(&index, "client:C1"),
        Vec::<u64>::new(),
        "keywords are exact"
    );
}

#[test]
fn newest_first_with_ties_by_sequence_and_a_limit() {
    let mut events: Vec<Event> = (1..=50)
        .map(|seq| event("n1@h", Class::Info, seq, &[]))
        .collect();
    // Two events in the same microsecond: the higher sequence number comes first.
    events[10].time_us = events[11].time_us;
    let (_dir, index) = indexed(&events);
    let mut r = request("");
    r.limit = 10;
    assert_eq!(seqs(&index, &r), (41..=50).rev().collect::<Vec<_>>());
    r.limit = 40;
    let all = seqs(&index, &r);
    assert_eq!(&all[38..], [12, 11], "tie at the same time");
    r.limit = 0;
    assert!(seqs(&index, &r).is_empty());
    r.limit = usize::MAX;
    assert_eq!(
        seqs(&index, &r).len(),
        50,
        "a huge limit is capped, not a panic"
    );
}

#[test]
fn class_and_time_filters_combine_with_the_query() {
    let (_dir, index) = indexed(&fixture());
    let mut r = request("");
    r.class = Some(Class::Access);
    assert_eq!(seqs(&index, &r), [6, 3, 1]);
    r.query = "client:c2".into();
    assert_eq!(seqs(&index, &r), [3]);
    let mut r = request("");
    r.from_us = Some(T0 + 3);
    r.until_us = Some(T0 + 6);
    assert_eq!(
        seqs(&index, &r),
        [5, 4, 3],
        "from inclusive, until exclusive"
    );
    r.class = Some(Class::Protocol);
    assert_eq!(seqs(&index, &r), [4]);
    // Since 3 µs before "now" (T0 + 8): 5 and later; the later of from and since wins.
    let mut r = request("");
    r.since_us = Some(3);
    r.from_us = Some(T0);
    assert_eq!(
        search_at(&index, &r, T0 + 8)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect::<Vec<_>>(),
        [8, 7, 6, 5]
    );
}

#[test]
fn a_bad_query_gets_the_parser_message() {
    let (_dir, index) = indexed(&fixture());
    for (q, says) in [
        ("client:(c1", "Syntax Error"),
        ("nosuch:x", "Field does not exist: 'nosuch'"),
        ("seq:abc", "integer"),
        ("-client:c1", "excluding"),
        ("time:yesterday", "date"),
        ("topic:*", "not a fast field"),
    ] {
        match search(&index, &request(q)) {
            Err(SearchError::BadQuery(message)) => {
                assert!(message.contains(says), "{q}: {message}");
            }
            other => panic!("{q}: {other:?}"),
        }
        assert!(matches!(
            TailFilter::new(&request(q), T0),
            Err(SearchError::BadQuery(_))
        ));
    }
}

#[test]
fn the_tail_filter_agrees_with_the_index() {
    let events = fixture();
    let (_dir, index) = indexed(&events);
    let from = chrono::DateTime::from_timestamp_micros(T0 + 4)
        .unwrap()
        .to_rfc3339();
    let queries = [
        "",
        "client:c1 AND class:access",
        "client:c1 class:access",
        "client:c1 OR client:c3",
        "(client:c1 OR client:c2) -class:access",
        "+client:c2 type:PUBLISH",
        "topic:\"sensors/42/temp\"",
        "\"keep-alive timeout\"",
        "\"keep-al\"*",
        "keep alive timeout",
        "keep-alive",
        "node:n1@host",
        "node:n1@host -class:access",
        "peer:\"127.0.0.1:58096\"",
        "seq:[3 TO 5}",
        "seq:>5",
        "client:[c1 TO c2]",
        "client: IN [c3 c2]",
        "class:*",
        "epoch:7 AND NOT seq:8",
        &format!("time:[{from} TO *]"),
        "TIMEOUT",
        "*",
    ];
    for q in queries {
        for class in [None, Some(Class::Access), Some(Class::Protocol)] {
            let mut r = request(q);
            r.class = class;
            r.from_us = Some(T0 + 2);
            let from_index: BTreeSet<u64> = search_at(&index, &r, T0)
                .unwrap_or_else(|e| panic!("{q:?}: {e}"))
                .iter()
                .map(|e| e.seq)
                .collect();
            let mut tail = TailFilter::new(&r, T0).unwrap();
            let from_tail: BTreeSet<u64> = events
                .iter()
                .filter(|e| tail.matches(e))
                .map(|e| e.seq)
                .collect();
            assert_eq!(from_tail, from_index, "{q:?} class {class:?}");
        }
    }
    assert!(matches(&request("client:c1"), &events[0]).unwrap());
    assert!(!matches(&request("client:c2"), &events[0]).unwrap());
}

#[test]
fn the_tail_filter_refuses_what_it_cannot_check() {
    for q in ["\"keep timeout\"~2", "text:[a TO b]"] {
        assert!(
            matches!(
                TailFilter::new(&request(q), T0),
                Err(SearchError::BadQuery(_))
            ),
            "{q}"
        );
    }
}
