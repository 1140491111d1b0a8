//! The cluster at a glance: members, roles, the Raft leader and term, each node's log link to
//! the monitor (events/s, lag, losses, last seen) and each node's own counts (connections,
//! sessions, memory), asked over its cluster port. The page reloads itself.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use fubar_logproto::admin::{AdminRequest, AdminResponse, NodeStatus};

use std::collections::HashMap;

use fubar_monitor::search::{search, SearchRequest};

use super::html::{esc, page as frame, time};
use super::routes::{html, signed_in, Console};
use crate::admin::{Remote, Requester, Target};
use crate::cluster::NodeName;

/// Seconds between two reloads of the page.
const REFRESH_SECS: u32 = 5;
/// Memory alarm changes read to find each node's newest (a node flapping more than this
/// many times among all nodes' newest shows the others as off).
const ALARM_EVENTS: usize = 1000;

/// `GET /cluster`.
pub(super) async fn page(State(state): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let session = match signed_in(&state, &headers) {
        Ok(s) => s,
        Err(page) => return *page,
    };
    let mut body = format!(
        "<meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\"><p class=\"muted\">Reloads \
         every {REFRESH_SECS} s.</p>"
    );
    let alarms = memory_alarms(&state).await;
    body.push_str(&members(&state, &alarms).await);
    body.push_str(&links(&state));
    html(
        StatusCode::OK,
        frame("Cluster", "/cluster", &session.csrf, &body),
    )
}

/// The members table, with each member's own status asked over its cluster port.
async fn members(state: &Console, alarms: &HashMap<String, (bool, i64)>) -> String {
    let Some(member) = state.broker.member.get() else {
        return "<p>This monitor is not in a cluster.</p>".to_owned();
    };
    let status = member.status();
    let targets: Vec<(String, Option<Target>)> = status
        .members
        .iter()
        .map(|m| {
            // A member that is down is not asked: the page would wait for its timeout.
            let asked = m.name != status.node && m.link == "up";
            let target = asked.then(|| remote(state, &m.name, &m.addr));
            (m.name.clone(), target.flatten())
        })
        .collect();
    let (done, answers) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let answers: Vec<Option<NodeStatus>> = std::thread::scope(|scope| {
            let asks: Vec<_> = targets
                .iter()
                .map(|(_, target)| {
                    scope.spawn(move || match target {
                        Some(t) => match crate::admin::request(t, &AdminRequest::Status) {
                            Ok(AdminResponse::Status(s)) => Some(s),
                            _ => None,
                        },
                        None => None,
                    })
                })
                .collect();
            asks.into_iter().map(|a| a.join().ok().flatten()).collect()
        });
        let _ = done.send(answers);
    });
    let mut answers = answers.await.unwrap_or_default();
    // The monitor's own row, from its own admin commands.
    if let Some(own) = status.members.iter().position(|m| m.name == status.node) {
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        crate::admin::dispatch(
            state.broker.clone(),
            Requester::Local,
            AdminRequest::Status,
            tx,
        )
        .await;
        if let (Some(AdminResponse::Status(s)), Some(slot)) =
            (rx.recv().await, answers.get_mut(own))
        {
            *slot = Some(s);
        }
    }
    let mut out = format!(
        "<h2>Members</h2><p id=\"raft\">leader <b id=\"leader\">{}</b>, term {}, applied {}\
         </p><table id=\"members\"><thead><tr><th>node</th><th>role</th><th>kind</th>\
         <th>link</th><th>address</th><th>connections</th><th>sessions</th>\
         <th>subscriptions</th><th>memory</th><th>memory alarm</th><th>uptime</th></tr>\
         </thead><tbody>",
        esc(status.leader.as_deref().unwrap_or("none")),
        status.term,
        status.applied
    );
    for (i, m) in status.members.iter().enumerate() {
        let node = answers.get(i).cloned().flatten();
        let cell = |f: fn(&NodeStatus) -> String| node.as_ref().map(f).unwrap_or_default();
        let _ = write!(
            out,
            "<tr class=\"member\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"alarm\">{}</td><td>{}</td>\
             </tr>",
            esc(&m.name),
            esc(&m.role),
            esc(&m.kind),
            esc(&m.link),
            esc(&m.addr),
            cell(|s| s.connections.to_string()),
            cell(|s| s.sessions.to_string()),
            cell(|s| s.subscriptions.to_string()),
            cell(|s| format!("{} MiB", s.memory_bytes >> 20)),
            match alarms.get(&m.name) {
                Some((true, since)) => format!("<b>on</b> since {}", time(*since)),
                Some((false, _)) | None => "off".to_owned(),
            },
            cell(|s| format!("{} s", s.uptime_secs)),
        );
    }
    out.push_str("</tbody></table>");
    out
}

/// Each node's memory alarm as its newest `memory alarm on|off` warning says: (on, since).
async fn memory_alarms(state: &Console) -> HashMap<String, (bool, i64)> {
    let request = SearchRequest {
        query: "class:warning AND (\"memory alarm on\" OR \"memory alarm off\")".to_owned(),
        limit: ALARM_EVENTS,
        ..SearchRequest::default()
    };
    let index = state.monitor.index.clone();
    let found = tokio::task::spawn_blocking(move || search(&index, &request)).await;
    let mut alarms = HashMap::new();
    for e in found.ok().and_then(Result::ok).unwrap_or_default() {
        let on = e.message.starts_with("memory alarm on");
        if on || e.message.starts_with("memory alarm off") {
            // Newest first: the first one of a node is its state.
            alarms.entry(e.node.clone()).or_insert((on, e.time_us));
        }
    }
    alarms
}

/// A member's admin endpoint over its cluster port, proving membership with the cookie.
pub(super) fn remote(state: &Console, name: &str, addr: &str) -> Option<Target> {
    let port = addr.rsplit(':').next()?;
    let node: NodeName = format!("{name}:{port}").parse().ok()?;
    Some(Target::Remote(Box::new(Remote {
        node,
        cafile: None,
        cookie_file: state.broker.settings().cookie_file(),
        cert: None,
        socket: std::path::PathBuf::new(),
    })))
}

/// Each node's log link to this monitor.
fn links(state: &Console) -> String {
    let mut out = String::from(
        "<h2>Log links to the monitor</h2><table id=\"links\"><thead><tr><th>node</th>\
         <th>link</th><th>events/s</th><th>lag</th><th>events</th><th>duplicates</th>\
         <th>lost</th><th>last sequence</th></tr></thead><tbody>",
    );
    for s in state.monitor.server.stats() {
        let _ = write!(
            out,
            "<tr class=\"link\"><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&s.node),
            if s.connected { "up" } else { "down" },
            s.events_per_sec,
            s.lag_ms.map(|l| format!("{l} ms")).unwrap_or_default(),
            s.counts.events,
            s.counts.duplicates,
            s.counts.lost,
            s.upto_seq,
        );
    }
    out.push_str("</tbody></table>");
    out
}
