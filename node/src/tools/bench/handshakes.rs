//! `fubar bench handshakes`: how many clients a second can connect (TCP or TLS handshake,
//! CONNECT, CONNACK) and disconnect, with `concurrency` of them at a time.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::control::{BrokerUsage, BrokerWatch, Control};
use super::report::{interrupted_note, thousands, Report};
use crate::mqtt::packet::{Disconnect, Packet, ProtocolVersion};
use crate::tools::client::{connect, Dial};

/// What to run.
#[derive(Debug, Clone)]
pub struct HandshakeOptions {
    /// The broker.
    pub addr: SocketAddr,
    /// The protocol version every client speaks (3.1.1 unless `-V 5`).
    pub version: ProtocolVersion,
    /// Connections in all.
    pub count: usize,
    /// Connections in progress at once.
    pub concurrency: usize,
    /// Connect over TLS.
    pub tls: Option<Dial>,
    /// Client id prefix.
    pub id_prefix: String,
    /// The broker's process id, to report its CPU time.
    pub broker_pid: Option<u32>,
}

/// What was measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HandshakeReport {
    /// `tcp` or `tls`.
    pub transport: &'static str,
    /// Connections in progress at once.
    pub concurrency: usize,
    /// Connections that reached CONNACK 0.
    pub connected: u64,
    /// Connections that failed.
    pub failed: u64,
    /// Seconds for all of them.
    pub seconds: f64,
    /// `connected / seconds`.
    pub rate: f64,
    /// Cut short by Ctrl-C.
    pub interrupted: bool,
    /// The broker's CPU time and memory (with `--broker-pid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker: Option<BrokerUsage>,
}

impl Report for HandshakeReport {
    fn bench(&self) -> &'static str {
        "handshakes"
    }

    fn rows(&self) -> Vec<(String, String)> {
        let mut rows = vec![
            (
                "handshakes".to_owned(),
                format!(
                    "over {}, {} at a time{}",
                    self.transport,
                    self.concurrency,
                    interrupted_note(self.interrupted)
                ),
            ),
            ("connected".into(), thousands(self.connected as f64)),
            ("failed".into(), thousands(self.failed as f64)),
            ("seconds".into(), format!("{:.3}", self.seconds)),
            ("connects/s".into(), thousands(self.rate)),
        ];
        rows.extend(super::control::usage_rows(
            self.broker.as_ref(),
            self.connected as f64,
            "connects",
        ));
        rows
    }
}

/// Runs the benchmark.
pub async fn run(o: HandshakeOptions, control: &Control) -> HandshakeReport {
    let next = Arc::new(AtomicUsize::new(0));
    let watch = BrokerWatch::start(o.broker_pid);
    control.progress.set_length(o.count as u64);
    let began = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..o.concurrency.max(1) {
        let (o, next, control) = (o.clone(), next.clone(), control.clone());
        workers.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u64, 0u64);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= o.count || control.stop.is_cancelled() {
                    return (ok, failed);
                }
                let id = format!("{}{i}", o.id_prefix);
                match connect(o.addr, o.tls.as_ref(), o.version, &id, true, 60).await {
                    Ok((_r, mut w, _)) => {
                        w.push(&Packet::Disconnect(Disconnect::default()));
                        let _ = w.flush().await;
                        ok += 1;
                    }
                    Err(_) => failed += 1,
                }
                control.progress.inc(1);
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
    control.progress.finish_and_clear();
    HandshakeReport {
        transport: match o.tls.as_ref().map(|d| (d.tls.is_some(), d.ws.is_some())) {
            None | Some((false, false)) => "tcp",
            Some((true, false)) => "tls",
            Some((false, true)) => "ws",
            Some((true, true)) => "wss",
        },
        concurrency: o.concurrency.max(1),
        connected,
        failed,
        seconds,
        rate: connected as f64 / seconds.max(1e-9),
        interrupted: control.stop.is_cancelled(),
        broker: watch.map(BrokerWatch::finish),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::bench::test_broker::TestBroker;

    #[tokio::test]
    async fn every_handshake_is_counted() {
        let broker = TestBroker::start().await;
        let r = run(
            HandshakeOptions {
                addr: broker.addr,
                version: ProtocolVersion::V311,
                count: 40,
                concurrency: 4,
                tls: None,
                id_prefix: "hs-".into(),
                broker_pid: None,
            },
            &Control::quiet(),
        )
        .await;
        assert_eq!((r.connected, r.failed, r.transport), (40, 0, "tcp"));
        broker.stop().await;
    }
}
