//! The HTTP endpoint of a node: `GET /metrics` (Prometheus text), `GET /healthz` (the process
//! answers) and `GET /readyz` (the node serves: listeners up, store open, and in a cluster
//! joined with a leader known).
//!
//! It reads the broker only through the counters and snapshots the broker exports
//! (`Broker::stats`, `registry.len()`, the cluster member's status, …); the broker does not
//! know it exists. A scrape takes no lock on the message path: counters are relaxed atomics.

pub(crate) mod bounded;
mod cluster_metrics;
mod encode;
mod log_metrics;
mod metrics;
mod process;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin::NodeContext;
#[cfg(test)]
use crate::broker::Broker;
use bounded::BoundedListener;

pub use metrics::render;

/// A bound HTTP endpoint, not yet serving.
#[derive(Debug)]
pub struct HttpEndpoint {
    listener: BoundedListener,
    state: Arc<Shared>,
}

/// What every request reads.
#[derive(Debug)]
struct Shared {
    node: Arc<NodeContext>,
    registry: Registry,
}

impl HttpEndpoint {
    /// Binds `http.bind`:`http.port`; `None` when the settings turn the endpoint off.
    pub async fn bind(node: Arc<NodeContext>) -> std::io::Result<Option<Self>> {
        let settings = node.broker.settings();
        let Some(port) = settings.http.port else {
            return Ok(None);
        };
        let listener = TcpListener::bind(SocketAddr::new(settings.http.bind, port)).await?;
        let listener = BoundedListener::new(
            "http",
            listener,
            settings.http.max_connections,
            Duration::from_secs(settings.http.idle_timeout_secs),
        );
        let registry = metrics::registry(node.clone());
        Ok(Some(Self {
            listener,
            state: Arc::new(Shared { node, registry }),
        }))
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        axum::serve::Listener::local_addr(&self.listener)
    }

    /// Serves requests until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        let app = axum::Router::new()
            .route("/metrics", get(metrics_page))
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .with_state(self.state);
        let served = axum::serve(self.listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::warn!(target: "warning", error = %e, "the HTTP endpoint stopped");
        }
    }
}

async fn metrics_page(State(state): State<Arc<Shared>>) -> impl IntoResponse {
    match render(&state.registry) {
        Ok(text) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            )],
            text,
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "cannot encode the metrics\n".to_owned(),
        ),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<Arc<Shared>>) -> (StatusCode, String) {
    match not_ready(&state.node) {
        None => (StatusCode::OK, "ready\n".into()),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    }
}

/// Why the node cannot serve yet (one line), or `None` when it can.
pub fn not_ready(node: &NodeContext) -> Option<String> {
    let broker = &node.broker;
    if broker.shutdown.is_cancelled() {
        return Some("shutting down".into());
    }
    if broker.store.is_none() {
        return Some("the store is not open".into());
    }
    let listeners = broker.listeners();
    let serving = listeners
        .iter()
        .any(|l| l.starts_with("mqtt://") || l.starts_with("mqtts://"));
    let monitor_only = node.monitor.is_some() && !listeners.is_empty();
    if !serving && !monitor_only {
        return Some("no listener is accepting yet".into());
    }
    if let Some(member) = &node.member {
        let status = member.status();
        if !status.members.iter().any(|m| m.name == status.node) {
            return Some("not joined to the cluster yet".into());
        }
        if status.leader.is_none() {
            return Some("no cluster leader known".into());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;

    #[test]
    fn not_ready_without_a_store_or_a_listener() {
        let node = NodeContext::broker_only(Arc::new(
            Broker::standalone(Settings::default(), None).unwrap(),
        ));
        assert_eq!(not_ready(&node).as_deref(), Some("the store is not open"));
        let dir = tempfile::tempdir().unwrap();
        let store = fubar_store::Store::open(
            dir.path(),
            fubar_store::SyncMode::None,
            Duration::from_millis(1),
        )
        .unwrap();
        let node = NodeContext::broker_only(Arc::new(
            Broker::standalone(Settings::default(), Some(Arc::new(store))).unwrap(),
        ));
        let broker = &node.broker;
        assert_eq!(
            not_ready(&node).as_deref(),
            Some("no listener is accepting yet")
        );
        broker.add_listener("mqtt://127.0.0.1:1883".into());
        assert_eq!(not_ready(&node), None);
        broker.shutdown.cancel();
        assert_eq!(not_ready(&node).as_deref(), Some("shutting down"));
    }
}
