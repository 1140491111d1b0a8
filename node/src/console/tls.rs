//! HTTPS for the console (`console.tls`), with the node's cluster certificate: a listener that
//! hands the HTTP server only connections whose TLS handshake is done.
//!
//! Handshakes run in their own tasks, at most `console.max_handshakes` at once and each within
//! `console.handshake_timeout_secs`, so a client that stalls its handshake holds one slot for
//! a bounded time and never the listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::http::bounded::{BoundedListener, BoundedStream};

/// Connections with their handshake done, waiting for the HTTP server.
const READY_QUEUE: usize = 16;

/// The console's TLS listener (an `axum::serve::Listener`).
#[derive(Debug)]
pub(super) struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<BoundedStream>, SocketAddr)>,
    addr: SocketAddr,
}

impl TlsListener {
    /// Accepts on `listener` and runs handshakes until `shutdown`.
    pub(super) fn start(
        mut listener: BoundedListener,
        acceptor: TlsAcceptor,
        handshake_timeout: Duration,
        max_handshakes: usize,
        shutdown: CancellationToken,
    ) -> std::io::Result<Self> {
        let addr = axum::serve::Listener::local_addr(&listener)?;
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        let slots = Arc::new(Semaphore::new(max_handshakes));
        tokio::spawn(async move {
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                // Bounded: at most `console.max_connections` open, each closed when idle.
                let (tcp, peer) = tokio::select! {
                    accepted = axum::serve::Listener::accept(&mut listener) => accepted,
                    () = shutdown.cancelled() => return,
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let done = tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await;
                    drop(slot);
                    match done {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::info!(target: "access", %peer, error = %e,
                                "console TLS handshake failed");
                        }
                        Err(_) => {
                            tracing::info!(target: "access", %peer,
                                "console TLS handshake timed out");
                        }
                    }
                });
            }
        });
        Ok(Self { ready, addr })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<BoundedStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept loop stopped (the node is stopping): nothing more comes.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}
