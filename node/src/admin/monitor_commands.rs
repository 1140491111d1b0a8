//! The monitor's admin commands: search, live tail, what is collected, and the nodes' links.

use std::sync::Arc;

use fubar_logproto::admin::{AdminResponse, LinkStatus, SearchQuery};
use fubar_logproto::Class;
use fubar_monitor::search::{search, SearchRequest, TailFilter};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use super::context::NodeContext;
use crate::cluster::monitor::MonitorRole;

fn monitor_of(node: &NodeContext) -> Result<Arc<MonitorRole>, String> {
    node.monitor
        .clone()
        .ok_or_else(|| "this node is not a monitor (start one with `fubar monitor`)".to_owned())
}

fn class_of(name: Option<&str>) -> Result<Option<Class>, String> {
    name.map(|n| n.parse::<Class>().map_err(|e| e.to_string()))
        .transpose()
}

/// Searches the monitor's index (blocking: run it off the async threads).
pub(super) fn run_search(node: &NodeContext, q: SearchQuery) -> AdminResponse {
    let run = || -> Result<AdminResponse, String> {
        let monitor = monitor_of(node)?;
        let request = SearchRequest {
            query: q.query,
            class: class_of(q.class.as_deref())?,
            since_us: None,
            from_us: q.from_us,
            until_us: q.until_us,
            limit: q.limit as usize,
        };
        let events = search(&monitor.index, &request).map_err(|e| e.to_string())?;
        Ok(AdminResponse::Events(events))
    };
    run().unwrap_or_else(AdminResponse::Error)
}

/// Turns shipping of a class on or off on every node.
pub(super) fn collect(node: &NodeContext, class: &str, on: bool) -> AdminResponse {
    let broker = &node.broker;
    let run = || -> Result<AdminResponse, String> {
        let monitor = monitor_of(node)?;
        let class: Class = class
            .parse()
            .map_err(|e: fubar_logproto::event::UnknownClass| e.to_string())?;
        monitor.server.set_collect(class, on);
        tracing::info!(target: "info", class = %class, on, "log collection changed");
        let now: Vec<String> = monitor
            .server
            .collected()
            .iter()
            .map(ToString::to_string)
            .collect();
        // Kept as the `monitor.collect` setting, so a restarted monitor collects the same.
        let value = format!(
            "[{}]",
            now.iter()
                .map(|c| format!("{c:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        broker
            .change_setting("monitor.collect", &value)
            .map_err(|e| e.to_string())?;
        Ok(AdminResponse::Done(format!(
            "{class} {}; collected: {}",
            if on { "collected" } else { "not collected" },
            now.join(", ")
        )))
    };
    run().unwrap_or_else(AdminResponse::Error)
}

/// A one-time sign-in URL for the monitor's web console.
pub(super) fn console_sign_in(node: &NodeContext) -> AdminResponse {
    let run = || -> Result<AdminResponse, String> {
        monitor_of(node)?;
        let door = node.console.as_ref().ok_or_else(|| {
            "this monitor has no console (start it with --console-port or [console] port)"
                .to_owned()
        })?;
        Ok(AdminResponse::Done(door.sign_in_url()))
    };
    run().unwrap_or_else(AdminResponse::Error)
}

/// Every node's link.
pub(super) fn links(node: &NodeContext) -> AdminResponse {
    match monitor_of(node) {
        Ok(m) => AdminResponse::LogLinks(
            m.server
                .stats()
                .into_iter()
                .map(|s| LinkStatus {
                    node: s.node,
                    connected: s.connected,
                    peer: s.peer.map(|p| p.to_string()).unwrap_or_default(),
                    epoch: s.epoch,
                    upto_seq: s.upto_seq,
                    events_per_sec: s.events_per_sec,
                    lag_ms: s.lag_ms,
                    events: s.counts.events,
                    duplicates: s.counts.duplicates,
                    lost: s.counts.lost,
                })
                .collect(),
        ),
        Err(e) => AdminResponse::Error(e),
    }
}

/// A live tail: every matching event as it reaches the monitor, one reply each, until the
/// client goes away (`out` closed) or the node stops.
pub(super) async fn tail(
    node: &NodeContext,
    query: &str,
    class: Option<&str>,
    out: &mpsc::Sender<AdminResponse>,
) -> Result<(), String> {
    let broker = &node.broker;
    let monitor = monitor_of(node)?;
    let request = SearchRequest {
        query: query.to_owned(),
        class: class_of(class)?,
        since_us: None,
        from_us: None,
        until_us: None,
        limit: 0,
    };
    let now_us = chrono::Utc::now().timestamp_micros();
    let mut filter = TailFilter::new(&request, now_us).map_err(|e| e.to_string())?;
    let mut rx = monitor.tail.subscribe();
    let shutdown = broker.shutdown.clone();
    loop {
        let next = tokio::select! {
            n = rx.recv() => n,
            _ = shutdown.cancelled() => return Ok(()),
            () = out.closed() => return Ok(()),
        };
        let reply = match next {
            Ok(e) if filter.matches(&e) => AdminResponse::Event((*e).clone()),
            Ok(_) => continue,
            Err(RecvError::Lagged(n)) => AdminResponse::Missed(n),
            Err(RecvError::Closed) => return Ok(()),
        };
        if out.send(reply).await.is_err() {
            return Ok(());
        }
    }
}
