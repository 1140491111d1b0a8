//! The monitor's web console: search, a device's timeline, a live tail and the cluster at a
//! glance, as server-rendered HTML with a little plain JavaScript and inline SVG. Everything
//! the browser loads comes from here (it works on an air-gapped network).
//!
//! It stands beside `admin/` and `http/`: it reads the monitor through its index, its live
//! tail and its link statistics, and the cluster through the member's status; the broker does
//! not know it exists. Only a monitor serves it (`console.port`), only to a browser signed in
//! with a one-time URL from `fubar console url` ([`access`]).

pub mod access;
mod cluster_page;
mod html;
mod routes;
mod search_page;
mod tail;
mod timeline;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt as _;

use tokio::net::TcpListener;

use crate::http::bounded::BoundedListener;
use tokio_util::sync::CancellationToken;

use crate::admin::NodeContext;
use crate::cluster::monitor::MonitorRole;
use crate::settings::Settings;

pub use access::SignIn;

/// The console's listener, bound but not yet serving, with its sign-in desk.
#[derive(Debug)]
pub struct ConsoleListener {
    listener: TcpListener,
    sign_in: Arc<SignIn>,
    /// HTTPS (`console.tls`).
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl ConsoleListener {
    /// Binds `console.bind`:`console.port`; `None` when the settings turn the console off.
    pub async fn bind(settings: &Settings) -> anyhow::Result<Option<Self>> {
        let Some(port) = settings.console.port else {
            return Ok(None);
        };
        let tls = match settings.console.tls {
            true => Some(https_config(settings)?),
            false => None,
        };
        let listener = TcpListener::bind(SocketAddr::new(settings.console.bind, port)).await?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let base_url = format!("{scheme}://{}", listener.local_addr()?);
        Ok(Some(Self {
            listener,
            sign_in: Arc::new(SignIn::new(base_url, &settings.console)),
            tls,
        }))
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The sign-in desk (the admin command `console url` hands out its URLs).
    pub fn sign_in(&self) -> Arc<SignIn> {
        self.sign_in.clone()
    }

    /// Serves the console until `shutdown` is cancelled.
    pub async fn run(
        self,
        node: Arc<NodeContext>,
        monitor: Arc<MonitorRole>,
        shutdown: CancellationToken,
    ) {
        let settings = node.broker.settings().console.clone();
        let shutdown_tails = shutdown.clone();
        let state = Arc::new(routes::Console {
            secure: self.tls.is_some(),
            tails: Arc::new(tokio::sync::Semaphore::new(settings.max_tails)),
            settings: settings.clone(),
            sign_in: self.sign_in,
            monitor,
            node,
            shutdown: shutdown_tails,
            message_samples: Default::default(),
        });
        let app = routes::router(state).into_make_service_with_connect_info::<SocketAddr>();
        let stop = shutdown.clone();
        let stopped = async move { stop.cancelled().await };
        let bounded = BoundedListener::new(
            "console",
            self.listener,
            settings.max_connections,
            Duration::from_secs(settings.idle_timeout_secs),
        );
        let served = match self.tls {
            Some(config) => {
                let listener = match tls::TlsListener::start(
                    bounded,
                    tokio_rustls::TlsAcceptor::from(config),
                    Duration::from_secs(settings.handshake_timeout_secs),
                    settings.max_handshakes,
                    shutdown,
                ) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(target: "warning", error = %e, "the console stopped");
                        return;
                    }
                };
                // `tap_io` only to get the peer address as `ConnectInfo`.
                axum::serve(listener.tap_io(|_| {}), app)
                    .with_graceful_shutdown(stopped)
                    .await
            }
            None => {
                axum::serve(bounded.tap_io(|_| {}), app)
                    .with_graceful_shutdown(stopped)
                    .await
            }
        };
        if let Err(e) = served {
            tracing::warn!(target: "warning", error = %e, "the console stopped");
        }
    }
}

/// The console's HTTPS configuration: this node's cluster certificate (its operator-issued
/// one of `cluster.cafile`, or the one it made itself), HTTP/1.1, no client certificates.
fn https_config(settings: &Settings) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let (identity, _) = crate::cluster::endpoint::cluster_tls(settings)?;
    let files = fubar_ssl::ServerTlsFiles {
        certfile: identity.certfile,
        keyfile: identity.keyfile,
        cafile: None,
        verify: fubar_ssl::ClientVerify::None,
    };
    Ok(fubar_ssl::server_config(&files, &[b"http/1.1"])?)
}
