//! The MQTT TCP listener and the accept loop.
//!
//! Accepting only spawns: every connection's CONNECT exchange runs in its own task under its
//! own timeout, so a slow client never stalls the accept loop. A semaphore bounds the number of
//! connections served at once.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{connection, Broker};
use crate::settings::Settings;

/// A bound MQTT listener and the broker it serves.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    broker: Arc<Broker>,
}

impl Server {
    /// Binds the MQTT listener of `settings` (port 0 picks a free port).
    pub async fn bind(settings: Settings) -> io::Result<Self> {
        let addr = SocketAddr::new(settings.mqtt.bind, settings.mqtt.port);
        let listener = TcpListener::bind(addr).await?;
        Ok(Self {
            listener,
            broker: Arc::new(Broker::new(settings)),
        })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The broker state this server serves.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Serves connections until `shutdown` is cancelled, then closes the listener, disconnects
    /// every client and waits (up to the shutdown grace) for their tasks to finish.
    pub async fn run(self, shutdown: CancellationToken) {
        let Self { listener, broker } = self;
        let tasks = TaskTracker::new();
        let permits = Arc::new(Semaphore::new(broker.settings.mqtt.max_connections));
        tasks.spawn(sweep_expired_sessions(broker.clone(), shutdown.clone()));
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                a = listener.accept() => a,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, say: keep serving the connections we have.
                    tracing::warn!(target: "warning", error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                broker
                    .stats
                    .connections_refused
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(target: "access", %peer, "connection refused: mqtt.max_connections reached");
                continue;
            };
            let broker = broker.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                broker.stats.connections.fetch_add(1, Ordering::Relaxed);
                broker
                    .stats
                    .connections_total
                    .fetch_add(1, Ordering::Relaxed);
                connection::serve(broker.clone(), stream, peer, shutdown).await;
                broker.stats.connections.fetch_sub(1, Ordering::Relaxed);
                drop(permit);
            });
        }
        drop(listener);
        tasks.close();
        let grace = Duration::from_secs(broker.settings.mqtt.shutdown_grace_secs);
        if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
            tracing::warn!(target: "warning", remaining = tasks.len(), "shutdown grace passed with connections still open");
        }
    }
}

/// Removes persistent sessions whose clients stayed away longer than `session.max_age_secs`.
async fn sweep_expired_sessions(broker: Arc<Broker>, shutdown: CancellationToken) {
    let every = Duration::from_secs(broker.settings.session.expiry_sweep_secs.max(1));
    let max_age = Duration::from_secs(broker.settings.session.max_age_secs);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        for handle in broker.registry.expire(Instant::now(), max_age) {
            broker.router.remove_session(&handle);
            tracing::info!(target: "resource", client = %handle.client_id, "session ended: expired");
        }
    }
}
