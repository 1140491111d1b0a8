//! A device's timeline: everything the cluster recorded about one client id, oldest first,
//! across every node (connects and disconnects with their reasons, subscriptions, takeovers
//! from one node to another, and a traced client's message hops with their latency drawn as
//! bars); and the button that starts or stops `trace client ID` on every node.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use fubar_logproto::admin::{AdminRequest, AdminResponse};
use fubar_logproto::{Class, Event};
use fubar_monitor::search::{search, SearchRequest};

use super::html::{esc, form, page as frame, time, url_encode};
use super::routes::{checked_post, html, see_other, signed_in, Console};
use super::search_page::quoted;
use crate::admin::Target;

/// Fields shown beside an event's message (the rest are in the search page).
const SHOWN: [&str; 8] = [
    "reason",
    "peer",
    "topic",
    "filter",
    "qos",
    "kind",
    "hop",
    "transport",
];

/// `GET /timeline?client=ID`.
pub(super) async fn page(
    State(state): State<Arc<Console>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let session = match signed_in(&state, &headers) {
        Ok(s) => s,
        Err(page) => return *page,
    };
    let client = form(query.as_deref().unwrap_or_default())
        .remove("client")
        .unwrap_or_default();
    let mut body = format!(
        "<form method=\"get\" action=\"/timeline\"><input type=\"text\" name=\"client\" \
         id=\"client\" value=\"{}\" placeholder=\"client id\"> <button id=\"show\">Show\
         </button></form>",
        esc(&client)
    );
    if !client.is_empty() {
        let request = SearchRequest {
            query: format!("client:{}", quoted(&client)),
            limit: state.settings.timeline_limit,
            ..SearchRequest::default()
        };
        let index = state.monitor.index.clone();
        let found = tokio::task::spawn_blocking(move || search(&index, &request))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        let traced = state.node.broker.tracer.client_traced(&client);
        let _ = write!(
            body,
            "<h2>Timeline of <span id=\"subject\" class=\"mono\">{}</span></h2>",
            esc(&client)
        );
        body.push_str(&trace_form(&client, traced, &session.csrf));
        match found {
            Ok(mut events) => {
                events.reverse();
                body.push_str(&timeline(&events));
            }
            Err(e) => {
                let _ = write!(body, "<p class=\"error\" id=\"error\">{}</p>", esc(&e));
            }
        }
    }
    html(
        StatusCode::OK,
        frame("Device timeline", "/timeline", &session.csrf, &body),
    )
}

fn trace_form(client: &str, traced: bool, csrf: &str) -> String {
    let (on, label) = if traced {
        ("0", "Stop tracing this client")
    } else {
        ("1", "Trace this client on every node")
    };
    format!(
        "<form method=\"post\" action=\"/trace\"><input type=\"hidden\" name=\"csrf\" \
         value=\"{csrf}\"><input type=\"hidden\" name=\"client\" value=\"{client}\">\
         <input type=\"hidden\" name=\"on\" value=\"{on}\"><button id=\"trace\">{label}\
         </button></form>",
        csrf = esc(csrf),
        client = esc(client)
    )
}

/// The events oldest first; a change of node is marked, trace hops get a latency bar.
fn timeline(events: &[Event]) -> String {
    let longest = events
        .iter()
        .filter_map(latency_us)
        .max()
        .unwrap_or(0)
        .max(1);
    let mut out = format!(
        "<p id=\"count\">{} events, oldest first</p><table id=\"timeline\"><thead><tr>\
         <th>time (UTC)</th><th>node</th><th>class</th><th>event</th><th>details</th>\
         <th>latency</th></tr></thead><tbody>",
        events.len()
    );
    // A move is the client connecting on another node than where it last connected; other
    // events from another node (the old connection's late disconnect, a trace switched on
    // from the monitor) are not moves.
    let mut connected_on: Option<&str> = None;
    for e in events {
        if e.class == Class::Access && e.message == "connected" {
            if let Some(from) = connected_on.filter(|n| *n != e.node) {
                let _ = write!(
                    out,
                    "<tr class=\"moved\"><td colspan=\"6\">⇄ from {} to {}</td></tr>",
                    esc(from),
                    esc(&e.node)
                );
            }
            connected_on = Some(&e.node);
        }
        let details: Vec<String> = e
            .pairs()
            .filter(|(k, _)| SHOWN.contains(k))
            .map(|(k, v)| format!("{}={}", esc(k), esc(v)))
            .collect();
        let bar = latency_us(e).map_or(String::new(), |us| {
            let width = us.saturating_mul(200) / longest;
            format!(
                "<svg width=\"210\" height=\"12\"><rect class=\"bar\" width=\"{}\" \
                 height=\"12\"></rect></svg> {us} µs",
                width.max(1)
            )
        });
        let _ = write!(
            out,
            "<tr class=\"tl-event\" data-node=\"{node}\"><td class=\"mono\">{t}</td>\
             <td>{node}</td><td class=\"class-{class}\">{class}</td><td class=\"message\">\
             {message}</td><td class=\"mono\">{details}</td><td>{bar}</td></tr>",
            t = time(e.time_us),
            node = esc(&e.node),
            class = e.class.name(),
            message = esc(&e.message),
            details = details.join(" "),
        );
    }
    out.push_str("</tbody></table>");
    out
}

fn latency_us(e: &Event) -> Option<u64> {
    e.pairs()
        .find(|(k, _)| *k == "latency_us")
        .and_then(|(_, v)| v.parse().ok())
}

/// `POST /trace` (client, on, csrf): `trace client ID` or `untrace` on every node.
pub(super) async fn trace(
    State(state): State<Arc<Console>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let fields = match checked_post(&state, &headers, peer, &body) {
        Ok((_, fields)) => fields,
        Err(refused) => return *refused,
    };
    let client = fields.get("client").cloned().unwrap_or_default();
    let on = fields.get("on").is_some_and(|v| v == "1");
    if client.is_empty() {
        return see_other("/timeline");
    }
    let request = if on {
        AdminRequest::TraceClient {
            client_id: client.clone(),
        }
    } else {
        AdminRequest::UntraceClient {
            client_id: client.clone(),
        }
    };
    tracing::info!(target: "access", %peer, client = %client, on, "console trace");
    // The monitor itself, then every other member over its cluster port.
    if on {
        state.node.broker.tracer.trace_client(&client);
    } else {
        state.node.broker.tracer.untrace_client(&client);
    }
    let targets = member_targets(&state);
    let (done, finished) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        for target in targets {
            if let Err(e) = crate::admin::request(&target, &request)
                .map_err(|e| e.to_string())
                .and_then(|r| match r {
                    AdminResponse::Error(e) => Err(e),
                    _ => Ok(()),
                })
            {
                tracing::warn!(target: "warning", node = %target, error = %e,
                    "the console could not change a node's trace");
            }
        }
        let _ = done.send(());
    });
    let _ = finished.await;
    see_other(&format!("/timeline?client={}", url_encode(&client)))
}

/// Every other member's admin endpoint, reached over its cluster port with the cookie.
fn member_targets(state: &Console) -> Vec<Target> {
    let Some(member) = state.node.member.as_ref() else {
        return Vec::new();
    };
    let status = member.status();
    status
        .members
        .iter()
        .filter(|m| m.name != status.node)
        .filter_map(|m| super::cluster_page::remote(state, &m.name, &m.addr))
        .collect()
}
