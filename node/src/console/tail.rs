//! The live tail: events as they reach the monitor, filtered by a query of `fubar search`'s
//! syntax, pushed to the browser as Server-Sent Events. Each tail has a bounded queue
//! (`console.tail_queue`); what does not fit is skipped and counted, and the page shows the
//! count. Pausing holds new rows in the page (bounded too) until resumed.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use fubar_logproto::{Class, Event};
use fubar_monitor::search::{SearchRequest, TailFilter};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use super::html::{esc, form, page as frame, time, url_encode};
use super::routes::{html, signed_in, Console};

/// The console's script: the search page's histogram drag and the live tail's page.
pub(super) const SCRIPT: &str = include_str!("console.js");

/// What a tail sends its browser.
enum Push {
    /// A matching event, as a table row.
    Row(String),
    /// Events skipped so far (the browser could not keep up, or the monitor's tail lagged).
    Skipped(u64),
}

/// `GET /tail?q=QUERY&class=CLASS`: the page, which opens the event stream.
pub(super) async fn page(
    State(state): State<Arc<Console>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let session = match signed_in(&state, &headers) {
        Ok(s) => s,
        Err(page) => return *page,
    };
    let f = form(query.as_deref().unwrap_or_default());
    let q = f.get("q").cloned().unwrap_or_default();
    let class = f.get("class").cloned().unwrap_or_default();
    let mut classes = String::from("<option value=\"\">any class</option>");
    for c in Class::ALL {
        let selected = if class == c.name() { " selected" } else { "" };
        let _ = write!(classes, "<option{selected}>{}</option>", c.name());
    }
    let src = format!(
        "/tail/events?q={}&class={}",
        url_encode(&q),
        url_encode(&class)
    );
    let body = format!(
        "<form method=\"get\" action=\"/tail\"><input type=\"text\" name=\"q\" id=\"q\" \
         value=\"{q}\" placeholder=\"query (empty: every event)\"> <select name=\"class\">\
         {classes}</select> <button>Follow</button></form>\
         <p><button id=\"pause\" type=\"button\">Pause</button> <span id=\"state\">\
         connecting</span> · skipped: <b id=\"skipped\">0</b> · shown: <b id=\"shown\">0</b>\
         </p><table id=\"tail\" data-src=\"{src}\"><thead><tr><th>time (UTC)</th><th>node\
         </th><th>class</th><th>client</th><th>topic</th><th>event</th></tr></thead>\
         <tbody id=\"rows\"></tbody></table><script src=\"/console.js\"></script>",
        q = esc(&q),
        src = esc(&src),
    );
    html(
        StatusCode::OK,
        frame("Live tail", "/tail", &session.csrf, &body),
    )
}

/// `GET /tail/events?q=QUERY&class=CLASS`: the Server-Sent Events stream.
pub(super) async fn events(
    State(state): State<Arc<Console>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Err(page) = signed_in(&state, &headers) {
        return *page;
    }
    let f = form(query.as_deref().unwrap_or_default());
    let class = match f.get("class").map(String::as_str).unwrap_or_default() {
        "" => None,
        name => match name.parse::<Class>() {
            Ok(c) => Some(c),
            Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        },
    };
    let request = SearchRequest {
        query: f.get("q").cloned().unwrap_or_default(),
        class,
        ..SearchRequest::default()
    };
    let now_us = chrono::Utc::now().timestamp_micros();
    let filter = match TailFilter::new(&request, now_us) {
        Ok(filter) => filter,
        Err(e) => return failed(e.to_string()),
    };
    let Ok(permit) = state.tails.clone().try_acquire_owned() else {
        return failed(format!(
            "{} live tails are open already (console.max_tails)",
            state.settings.max_tails
        ));
    };
    let (tx, rx) = mpsc::channel(state.settings.tail_queue);
    let source = state.monitor.tail.subscribe();
    let shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        follow(source, filter, tx, shutdown).await;
        drop(permit);
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let push = rx.recv().await?;
        let event = match push {
            Push::Row(row) => SseEvent::default().event("row").data(row),
            Push::Skipped(n) => SseEvent::default().event("skipped").data(n.to_string()),
        };
        Some((Ok::<_, Infallible>(event), rx))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// A stream of one `failed` event saying why the tail cannot run (the page shows it).
fn failed(why: String) -> Response {
    let once = futures_util::stream::once(async move {
        Ok::<_, Infallible>(SseEvent::default().event("failed").data(why))
    });
    Sse::new(once).into_response()
}

/// Moves matching events from the monitor's tail to the browser's queue until the browser
/// goes away or the node stops; counts what the queue had no room for.
async fn follow(
    mut source: tokio::sync::broadcast::Receiver<Arc<Event>>,
    mut filter: TailFilter,
    out: mpsc::Sender<Push>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut skipped = 0u64;
    let mut told = 0u64;
    loop {
        let next = tokio::select! {
            n = source.recv() => n,
            // The count goes out as soon as the browser has read enough to make room for it.
            Ok(room) = out.reserve(), if skipped != told => {
                room.send(Push::Skipped(skipped));
                told = skipped;
                continue;
            }
            () = shutdown.cancelled() => return,
            () = out.closed() => return,
        };
        match next {
            Ok(e) if filter.matches(&e) => {
                if out.try_send(Push::Row(row(&e))).is_err() {
                    skipped += 1;
                }
            }
            Ok(_) => {}
            Err(RecvError::Lagged(n)) => skipped += n,
            Err(RecvError::Closed) => return,
        }
    }
}

/// An event as a row of the tail's table (every value escaped).
fn row(e: &Event) -> String {
    let field = |names: &[&str]| {
        e.pairs()
            .find(|(k, v)| names.contains(k) && *v != "-")
            .map(|(_, v)| esc(v))
            .unwrap_or_default()
    };
    let details: Vec<String> = e
        .pairs()
        .map(|(k, v)| format!("{}={}", esc(k), esc(v)))
        .collect();
    format!(
        "<tr class=\"tail-event\"><td class=\"mono\">{}</td><td>{}</td><td class=\"class-{c}\">\
         {c}</td><td>{}</td><td>{}</td><td>{} <span class=\"mono muted\">{}</span></td></tr>",
        time(e.time_us),
        esc(&e.node),
        field(&["client", "client_id"]),
        field(&["topic"]),
        esc(&e.message),
        details.join(" "),
        c = e.class.name(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::broadcast;

    fn event(seq: u64, client: &str) -> Arc<Event> {
        Arc::new(Event {
            node: "n1@h".into(),
            epoch: 1,
            seq,
            time_us: 1,
            class: Class::Access,
            message: "connected".into(),
            fields: vec![("client".into(), client.to_owned())],
        })
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_browser_that_falls_behind_is_told_how_many_events_it_missed() {
        let (events, source) = broadcast::channel(16);
        let request = SearchRequest {
            query: "client:c1".into(),
            ..SearchRequest::default()
        };
        let filter = TailFilter::new(&request, 0).unwrap();
        let (out, mut browser) = mpsc::channel(1);
        let shutdown = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(follow(source, filter, out, shutdown.clone()));
        for seq in 0..5 {
            events.send(event(seq, "c1")).unwrap();
        }
        // Not matching: neither shown nor counted.
        events.send(event(5, "c2")).unwrap();
        match browser.recv().await {
            Some(Push::Row(row)) => assert!(row.contains("c1"), "{row}"),
            _ => panic!("the first event first"),
        }
        match browser.recv().await {
            Some(Push::Skipped(n)) => assert_eq!(n, 4),
            _ => panic!("then the count of the skipped"),
        }
        events.send(event(6, "<b>c1</b>")).unwrap();
        events.send(event(7, "c1")).unwrap();
        match browser.recv().await {
            Some(Push::Row(row)) => assert!(row.contains("client=c1"), "{row}"),
            _ => panic!("a row"),
        }
        shutdown.cancel();
        task.await.unwrap();
    }
}
