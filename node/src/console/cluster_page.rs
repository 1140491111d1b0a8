//! The cluster at a glance: members, roles, the Raft leader and term, each node's log link to
//! the monitor (events/s, lag, losses, last seen) and each node's own counts (connections,
//! sessions, memory, messages received and sent per second), asked over its cluster port.
//! The page reloads itself.

use parking_lot::Mutex;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// A rate is measured between two views of the page at most this far apart; beyond it (or at
/// the first view, or after a restart) the page shows the average since the node started.
const RATE_WINDOW: Duration = Duration::from_secs(300);

/// Each node's (when asked, messages received, messages sent), from the last view.
#[derive(Debug, Default)]
pub(super) struct Samples(Mutex<HashMap<String, (Instant, u64, u64)>>);

impl Samples {
    /// Messages received and sent per second by `node`, from its counters now and the
    /// previous view's; remembers these for the next view.
    fn rates(&self, node: &str, s: &NodeStatus, now: Instant) -> (f64, f64) {
        let mut map = self.0.lock();
        let previous = map.insert(node.to_owned(), (now, s.messages_received, s.messages_sent));
        rates(previous, s, now)
    }
}

/// The rates between `previous` and `s` (taken at `now`), or the averages since start when
/// there is no usable previous sample.
fn rates(previous: Option<(Instant, u64, u64)>, s: &NodeStatus, now: Instant) -> (f64, f64) {
    if let Some((then, received, sent)) = previous {
        let secs = now.duration_since(then).as_secs_f64();
        let restarted = s.messages_received < received || s.messages_sent < sent;
        if secs >= 1.0 && now.duration_since(then) <= RATE_WINDOW && !restarted {
            return (
                (s.messages_received - received) as f64 / secs,
                (s.messages_sent - sent) as f64 / secs,
            );
        }
    }
    let secs = s.uptime_secs.max(1) as f64;
    (
        s.messages_received as f64 / secs,
        s.messages_sent as f64 / secs,
    )
}

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
    let Some(member) = state.node.member.as_ref() else {
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
            state.node.clone(),
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
         <th>subscriptions</th><th>messages in/s</th><th>messages out/s</th><th>memory</th>\
         <th>memory alarm</th><th>uptime</th></tr>\
         </thead><tbody>",
        esc(status.leader.as_deref().unwrap_or("none")),
        status.term,
        status.applied
    );
    let now = Instant::now();
    for (i, m) in status.members.iter().enumerate() {
        let node = answers.get(i).cloned().flatten();
        let cell = |f: fn(&NodeStatus) -> String| node.as_ref().map(f).unwrap_or_default();
        let (rate_in, rate_out) = match &node {
            Some(s) => {
                let (r, w) = state.message_samples.rates(&m.name, s, now);
                (format!("{r:.1}"), format!("{w:.1}"))
            }
            None => (String::new(), String::new()),
        };
        let _ = write!(
            out,
            "<tr class=\"member\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td class=\"rate-in\">{}</td>\
             <td class=\"rate-out\">{}</td><td>{}</td><td class=\"alarm\">{}</td><td>{}</td>\
             </tr>",
            esc(&m.name),
            esc(&m.role),
            esc(&m.kind),
            esc(&m.link),
            esc(&m.addr),
            cell(|s| s.connections.to_string()),
            cell(|s| s.sessions.to_string()),
            cell(|s| s.subscriptions.to_string()),
            rate_in,
            rate_out,
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
        cookie_file: state.node.broker.settings().cookie_file(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn status(received: u64, sent: u64, uptime_secs: u64) -> NodeStatus {
        NodeStatus {
            name: "n1@localhost".into(),
            version: String::new(),
            uptime_secs,
            listeners: Vec::new(),
            connections: 0,
            sessions: 0,
            subscriptions: 0,
            retained: 0,
            memory_bytes: 0,
            cluster_role: String::new(),
            auth: false,
            delayed_accepts: 0,
            throttled_clients: 0,
            messages_received: received,
            messages_sent: sent,
        }
    }

    #[test]
    fn a_rate_is_measured_between_two_views_and_falls_back_to_the_average_since_start() {
        let samples = Samples::default();
        let t0 = Instant::now();
        // First view: the average since start.
        assert_eq!(
            samples.rates("n1", &status(1000, 500, 100), t0),
            (10.0, 5.0)
        );
        // Five seconds later: what came in between.
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(
            samples.rates("n1", &status(1500, 600, 105), t1),
            (100.0, 20.0)
        );
        // The node restarted (counters went back): the average again.
        let t2 = t1 + Duration::from_secs(5);
        assert_eq!(samples.rates("n1", &status(40, 20, 2), t2), (20.0, 10.0));
        // A previous view too old is not used.
        let t3 = t2 + RATE_WINDOW + Duration::from_secs(1);
        assert_eq!(
            samples.rates("n1", &status(340, 20, 303), t3).1,
            20.0 / 303.0
        );
    }
}
