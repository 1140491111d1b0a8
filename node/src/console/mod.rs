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

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::cluster::monitor::MonitorRole;
use crate::settings::Settings;

pub use access::SignIn;

/// The console's listener, bound but not yet serving, with its sign-in desk.
#[derive(Debug)]
pub struct ConsoleListener {
    listener: TcpListener,
    sign_in: Arc<SignIn>,
}

impl ConsoleListener {
    /// Binds `console.bind`:`console.port`; `None` when the settings turn the console off.
    pub async fn bind(settings: &Settings) -> std::io::Result<Option<Self>> {
        let Some(port) = settings.console.port else {
            return Ok(None);
        };
        let listener = TcpListener::bind(SocketAddr::new(settings.console.bind, port)).await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        Ok(Some(Self {
            listener,
            sign_in: Arc::new(SignIn::new(base_url, &settings.console)),
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
        broker: Arc<Broker>,
        monitor: Arc<MonitorRole>,
        shutdown: CancellationToken,
    ) {
        let settings = broker.settings().console.clone();
        let state = Arc::new(routes::Console {
            tails: Arc::new(tokio::sync::Semaphore::new(settings.max_tails)),
            settings,
            sign_in: self.sign_in,
            monitor,
            broker,
            shutdown: shutdown.clone(),
        });
        let app = routes::router(state).into_make_service_with_connect_info::<SocketAddr>();
        let served = axum::serve(self.listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::warn!(target: "warning", error = %e, "the console stopped");
        }
    }
}
