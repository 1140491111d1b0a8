//! `fubar bench handshakes`: how many clients a second can connect (TCP or TLS handshake,
//! CONNECT, CONNACK) and disconnect, with `concurrency` of them at a time.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::mqtt::packet::Packet;
use crate::tools::client::{connect, TlsClient};

/// What to run.
#[derive(Debug, Clone)]
pub struct HandshakeOptions {
    /// The broker.
    pub addr: SocketAddr,
    /// Connections in all.
    pub count: usize,
    /// Connections in progress at once.
    pub concurrency: usize,
    /// Connect over TLS.
    pub tls: Option<TlsClient>,
    /// Client id prefix.
    pub id_prefix: String,
}

/// What was measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HandshakeReport {
    /// Connections that reached CONNACK 0.
    pub connected: u64,
    /// Connections that failed.
    pub failed: u64,
    /// Seconds for all of them.
    pub seconds: f64,
    /// `connected / seconds`.
    pub rate: f64,
}

/// Runs the benchmark.
pub async fn run(o: HandshakeOptions) -> HandshakeReport {
    let next = Arc::new(AtomicUsize::new(0));
    let began = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..o.concurrency.max(1) {
        let (o, next) = (o.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u64, 0u64);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= o.count {
                    return (ok, failed);
                }
                let id = format!("{}{i}", o.id_prefix);
                match connect(o.addr, o.tls.as_ref(), &id, true, 60).await {
                    Ok((_r, mut w, _)) => {
                        w.push(&Packet::Disconnect);
                        let _ = w.flush().await;
                        ok += 1;
                    }
                    Err(_) => failed += 1,
                }
            }
        }));
    }
    let (mut connected, mut failed) = (0, 0);
    for w in workers {
        if let Ok((ok, bad)) = w.await {
            connected += ok;
            failed += bad;
        }
    }
    let seconds = began.elapsed().as_secs_f64();
    HandshakeReport {
        connected,
        failed,
        seconds,
        rate: connected as f64 / seconds.max(1e-9),
    }
}
