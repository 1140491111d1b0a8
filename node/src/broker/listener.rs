//! The MQTT TCP listener and the accept loop.
//!
//! Accepting only spawns: every connection's CONNECT exchange runs in its own task under its
//! own timeout, so a slow client never stalls the accept loop. A semaphore bounds the number of
//! connections served at once, and a token bucket the number accepted per second
//! (`mqtt.max_connections_per_sec`): beyond it the loop stops accepting for a while, and the
//! kernel's listen backlog holds the connections that wait.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::rate_limit::TokenBucket;
use super::registry::Due;
use super::{transport, Broker};
use crate::broker::session_end::SessionEnd;

/// A bound MQTT listener and the broker it serves.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    tls_listener: Option<TcpListener>,
    ws_listener: Option<TcpListener>,
    wss_listener: Option<TcpListener>,
    broker: Arc<Broker>,
}

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy)]
enum Transport {
    Tcp,
    Tls,
    Ws,
    Wss,
}

impl Server {
    /// Binds the MQTT listener of the broker's settings, and the TLS and WebSocket listeners
    /// when `mqtts.port`, `ws.port` or `wss.port` is set (port 0 picks a free port).
    pub async fn bind(broker: Arc<Broker>) -> io::Result<Self> {
        let settings = broker.settings();
        let addr = SocketAddr::new(settings.mqtt.bind, settings.mqtt.port);
        let listener = TcpListener::bind(addr).await?;
        let fallback = settings.mqtt.bind;
        let tls_listener =
            bind_optional("mqtts", settings.mqtts.bind, settings.mqtts.port, fallback).await?;
        let ws_listener = bind_optional("ws", settings.ws.bind, settings.ws.port, fallback).await?;
        let wss_listener =
            bind_optional("wss", settings.wss.bind, settings.wss.port, fallback).await?;
        Ok(Self {
            listener,
            tls_listener,
            ws_listener,
            wss_listener,
            broker,
        })
    }

    /// The address the MQTT listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The address the TLS listener is bound to, if there is one.
    pub fn tls_local_addr(&self) -> Option<io::Result<SocketAddr>> {
        self.tls_listener.as_ref().map(TcpListener::local_addr)
    }

    /// The address the WebSocket listener is bound to, if there is one.
    pub fn ws_local_addr(&self) -> Option<io::Result<SocketAddr>> {
        self.ws_listener.as_ref().map(TcpListener::local_addr)
    }

    /// The address the secure WebSocket listener is bound to, if there is one.
    pub fn wss_local_addr(&self) -> Option<io::Result<SocketAddr>> {
        self.wss_listener.as_ref().map(TcpListener::local_addr)
    }

    /// The broker state this server serves.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Serves connections until the broker's shutdown token is cancelled, then closes the
    /// listeners, disconnects every client, waits (up to the shutdown grace) for their tasks
    /// to finish, and makes the state durable.
    pub async fn run(self) {
        let Self {
            listener,
            tls_listener,
            ws_listener,
            wss_listener,
            broker,
        } = self;
        let shutdown = broker.shutdown.clone();
        let tasks = TaskTracker::new();
        let permits = Arc::new(Semaphore::new(broker.settings().mqtt.max_connections));
        let mut pace = AcceptPace::new(&broker);
        tasks.spawn(sweep_expired_sessions(broker.clone(), shutdown.clone()));
        tasks.spawn(super::memory::watch(broker.clone(), shutdown.clone()));
        loop {
            let (accepted, transport) = tokio::select! {
                _ = shutdown.cancelled() => break,
                a = listener.accept() => (a, Transport::Tcp),
                a = accept_on(tls_listener.as_ref()) => (a, Transport::Tls),
                a = accept_on(ws_listener.as_ref()) => (a, Transport::Ws),
                a = accept_on(wss_listener.as_ref()) => (a, Transport::Wss),
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
            if !pace.admit(&broker, &shutdown).await {
                break;
            }
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                broker
                    .stats
                    .connections_refused
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(target: "access", %peer, transport = transport.name(), "connection refused: mqtt.max_connections reached");
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
                match transport {
                    Transport::Tcp => {
                        // Boxed like the others: the task is then as small as its smallest
                        // transport needs, and a ws or TLS connection does not also pay for
                        // room a TCP connection's driver would take (the memory bench showed
                        // each ws connection paying for both).
                        // Boxed before it is held: a local holding the future would keep
                        // its room in this task after the move.
                        let serving =
                            transport::serve_tcp(broker.clone(), stream, peer, shutdown, permit)
                                .map(Box::pin);
                        if let Some(serving) = serving {
                            serving.await;
                        }
                    }
                    Transport::Tls => {
                        broker.stats.connections_tls.fetch_add(1, Ordering::Relaxed);
                        // Boxed: the TLS state would otherwise size every TCP connection's
                        // task too.
                        Box::pin(transport::serve_tls(
                            broker.clone(),
                            stream,
                            peer,
                            shutdown,
                            permit,
                        ))
                        .await;
                        broker.stats.connections_tls.fetch_sub(1, Ordering::Relaxed);
                    }
                    Transport::Ws | Transport::Wss => {
                        // Boxed for the same reason: the upgrade and framing state.
                        Box::pin(transport::serve_ws(
                            broker.clone(),
                            stream,
                            peer,
                            matches!(transport, Transport::Wss),
                            shutdown,
                            permit,
                        ))
                        .await;
                    }
                }
                broker.stats.connections.fetch_sub(1, Ordering::Relaxed);
            });
        }
        drop(listener);
        drop(tls_listener);
        drop(ws_listener);
        drop(wss_listener);
        tasks.close();
        let grace = Duration::from_secs(broker.settings().mqtt.shutdown_grace_secs);
        if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
            tracing::warn!(target: "warning", remaining = tasks.len(), "shutdown grace passed with connections still open");
        }
        if let Some(store) = &broker.store {
            if let Err(e) = store.flush() {
                tracing::error!(target: "error", error = %e, "cannot flush the state at shutdown");
            }
        }
    }
}

/// The accept rate limit, `mqtt.max_connections_per_sec` (read again at every accept, so that
/// a run-time change applies at once).
struct AcceptPace {
    bucket: TokenBucket,
    /// Within a spell of held-back accepts; the spell is reported once, when it starts, and
    /// ends when the bucket has filled up again.
    slowed: bool,
}

impl AcceptPace {
    fn new(broker: &Broker) -> Self {
        let rate = broker.settings().mqtt.max_connections_per_sec;
        Self {
            bucket: TokenBucket::new(rate, Instant::now()),
            slowed: false,
        }
    }

    /// Waits until the connection just accepted may be served. While it waits nothing else is
    /// accepted, so the connections behind it wait in the kernel's backlog, not in the node.
    /// Returns false if the node is shutting down meanwhile.
    async fn admit(&mut self, broker: &Broker, shutdown: &CancellationToken) -> bool {
        let rate = broker.settings().mqtt.max_connections_per_sec;
        let mut now = Instant::now();
        if rate != self.bucket.rate() {
            self.bucket = TokenBucket::new(rate, now);
        }
        if self.bucket.is_full(now) {
            self.slowed = false;
        }
        let mut delayed = false;
        while let Err(wait) = self.bucket.try_take(now) {
            if !delayed {
                delayed = true;
                broker.stats.accepts_delayed.fetch_add(1, Ordering::Relaxed);
            }
            if !self.slowed {
                self.slowed = true;
                tracing::warn!(target: "warning", limit = rate,
                    "accepting slowly: mqtt.max_connections_per_sec reached, new connections wait in the listen backlog");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(wait) => {}
            }
            now = Instant::now();
        }
        true
    }
}

impl Transport {
    /// The name `access` events give it.
    fn name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Tls => "tls",
            Self::Ws => "ws",
            Self::Wss => "wss",
        }
    }
}

/// Binds one of the optional listeners (`what`: its settings' name, for the error).
async fn bind_optional(
    what: &str,
    bind: Option<std::net::IpAddr>,
    port: Option<u16>,
    fallback: std::net::IpAddr,
) -> io::Result<Option<TcpListener>> {
    let Some(port) = port else {
        return Ok(None);
    };
    let addr = SocketAddr::new(bind.unwrap_or(fallback), port);
    TcpListener::bind(addr)
        .await
        .map(Some)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr} ({what}): {e}")))
}

/// Accepts on a listener that may not exist (then never completes).
async fn accept_on(listener: Option<&TcpListener>) -> io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Ends persistent sessions whose clients stayed away longer than their session expiry
/// interval (at most `session.max_age_secs`) and publishes delayed wills when they are due.
/// Sleeps until the registry's earliest timer.
async fn sweep_expired_sessions(broker: Arc<Broker>, shutdown: CancellationToken) {
    loop {
        let next = broker.registry.next_due();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = broker.registry.timers_changed() => continue,
            _ = sleep_until(next) => {}
        }
        for due in broker.registry.take_due(Instant::now()) {
            match due {
                Due::Expired(handle) => {
                    broker.end_session(&handle, SessionEnd::Expired);
                }
                Due::Will(client_id, will) => broker.publish_will(&client_id, &will, "delayed"),
            }
        }
    }
}

/// Sleeps until `at` (forever without one).
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
