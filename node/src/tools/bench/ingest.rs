//! `fubar bench ingest`: synthetic nodes ship events to a monitor through the real log link
//! (QUIC, membership proof, spool, batches, acknowledgements), and the rate at which the
//! monitor acknowledges them (written to its segments) is reported.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fubar_logproto::{Class, Event};
use fubar_monitor::config::ShipperLimits;
use fubar_monitor::cookie::Cookie;
use fubar_monitor::shipper::{SharedSpool, Shipper, ShipperConfig, SpoolConfig};
use serde::Serialize;

use super::control::{BrokerUsage, BrokerWatch, Control};
use super::report::{interrupted_note, thousands, Report};

/// Classes the synthetic events cycle through.
const CLASSES: [Class; 4] = [Class::Access, Class::Resource, Class::Info, Class::Warning];

/// What to run.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// The monitor's cluster address.
    pub monitor: SocketAddr,
    /// The name its certificate carries.
    pub server_name: String,
    /// TLS 1.3 client configuration trusting the cluster CA.
    pub tls: Arc<rustls::ClientConfig>,
    /// The cluster cookie.
    pub cookie: Option<Cookie>,
    /// Synthetic nodes, each with its own link and spool.
    pub nodes: usize,
    /// Events per node.
    pub events: u64,
    /// Where the spools go (removed by the caller).
    pub work_dir: PathBuf,
    /// The monitor's process id, for its CPU time.
    pub monitor_pid: Option<u32>,
}

/// What was measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct IngestReport {
    /// Synthetic nodes.
    pub nodes: usize,
    /// Events made, all nodes.
    pub events: u64,
    /// Events the monitor acknowledged (in its segments).
    pub acked: u64,
    /// Seconds from the first event to the last acknowledgement.
    pub seconds: f64,
    /// `acked / seconds`.
    pub events_per_sec: f64,
    /// Cut short by Ctrl-C.
    pub interrupted: bool,
    /// The monitor's CPU time and memory (with `--broker-pid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker: Option<BrokerUsage>,
}

impl Report for IngestReport {
    fn bench(&self) -> &'static str {
        "ingest"
    }

    fn rows(&self) -> Vec<(String, String)> {
        let mut rows = vec![
            (
                "ingest".to_owned(),
                format!(
                    "{} node(s) -> monitor{}",
                    self.nodes,
                    interrupted_note(self.interrupted)
                ),
            ),
            ("events".into(), thousands(self.events as f64)),
            ("acknowledged".into(), thousands(self.acked as f64)),
            ("seconds".into(), format!("{:.3}", self.seconds)),
            ("events/s".into(), thousands(self.events_per_sec)),
        ];
        rows.extend(super::control::usage_rows(
            self.broker.as_ref(),
            self.acked as f64,
            "events",
        ));
        rows
    }
}

/// A synthetic event of node `node`, number `seq`, like a broker's access and resource events.
pub fn synthetic_event(node: &str, epoch: u64, seq: u64) -> Event {
    let class = CLASSES[(seq % CLASSES.len() as u64) as usize];
    let client = format!("c{}", seq % 1000);
    let time_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    Event {
        node: node.to_owned(),
        epoch,
        seq,
        time_us,
        class,
        message: if class == Class::Access {
            "connected".into()
        } else {
            "session created".into()
        },
        fields: vec![
            (Cow::Borrowed("client"), client),
            (
                Cow::Borrowed("peer"),
                format!("10.0.{}.{}:5{:04}", seq % 200, seq % 250, seq % 10_000),
            ),
            (
                Cow::Borrowed("topic"),
                format!("sensors/{}/temp", seq % 5000),
            ),
        ],
    }
}

/// Runs the benchmark.
pub async fn run(o: IngestOptions, control: &Control) -> std::io::Result<IngestReport> {
    let epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_micros() as u64);
    let watch = BrokerWatch::start(o.monitor_pid);
    control.progress.set_length(o.events * o.nodes as u64);
    let began = Instant::now();
    let mut links = Vec::new();
    for k in 0..o.nodes {
        let node = format!("bench{k}@ingest");
        let mut config = SpoolConfig::new(o.work_dir.join(format!("spool-{k}")));
        config.max_bytes = 4 << 30;
        let spool = SharedSpool::open(&config).map_err(std::io::Error::other)?;
        let shipper = Shipper::start(
            ShipperConfig {
                node: node.clone(),
                epoch,
                monitor: o.monitor,
                server_name: o.server_name.clone(),
                limits: ShipperLimits::default(),
            },
            o.tls.clone(),
            o.cookie.clone(),
            spool.clone(),
            None,
        )
        .map_err(std::io::Error::other)?;
        let (producer_spool, events, stop) = (spool.clone(), o.events, control.stop.clone());
        let producer = tokio::task::spawn_blocking(move || {
            for seq in 1..=events {
                if stop.is_cancelled() {
                    return seq - 1;
                }
                if producer_spool
                    .append(&synthetic_event(&node, epoch, seq))
                    .is_err()
                {
                    return seq - 1;
                }
            }
            let _ = producer_spool.flush();
            events
        });
        links.push((spool, shipper, producer));
    }
    let mut made = 0;
    let mut producers = Vec::new();
    for (spool, shipper, producer) in links {
        producers.push((spool, shipper));
        made += producer.await.unwrap_or(0);
    }
    let acked =
        |p: &[(SharedSpool, Shipper)]| -> u64 { p.iter().map(|(s, _)| s.stats().acked_upto).sum() };
    let mut last_change = (acked(&producers), Instant::now());
    while acked(&producers) < made && !control.stop.is_cancelled() {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let now = acked(&producers);
        control.progress.set_position(now);
        if now != last_change.0 {
            last_change = (now, Instant::now());
        } else if last_change.1.elapsed() > Duration::from_secs(30) {
            break;
        }
    }
    let seconds = began.elapsed().as_secs_f64().max(1e-9);
    let acked_now = acked(&producers);
    for (_, shipper) in producers {
        shipper.shutdown().await;
    }
    control.progress.finish_and_clear();
    Ok(IngestReport {
        nodes: o.nodes,
        events: made,
        acked: acked_now,
        seconds,
        events_per_sec: acked_now as f64 / seconds,
        interrupted: control.stop.is_cancelled(),
        broker: watch.map(BrokerWatch::finish),
    })
}
