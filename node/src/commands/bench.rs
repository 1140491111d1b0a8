//! `fubar bench`: turns the flags into a benchmark's options, runs it with a progress bar and
//! Ctrl-C handling, and prints its report.

use std::net::ToSocketAddrs as _;
use std::time::Duration;

use anyhow::Context as _;

use super::pubsub::protocol_version;
use crate::cli::{
    BatchArgs, BenchCommand, BenchTarget, ConnsArgs, FlowArgs, HandshakesArgs, IngestArgs,
    LatencyArgs, ProbeArgs, TlsArgs,
};
use crate::mqtt::packet::QoS;
use crate::tools::bench::conns::{self, BatchOptions, ConnsOptions};
use crate::tools::bench::control::Control;
use crate::tools::bench::flow::{self, FlowOptions};
use crate::tools::bench::handshakes::{self, HandshakeOptions};
use crate::tools::bench::latency::{self, LatencyOptions};
use crate::tools::bench::probe::{self, ProbeOptions};
use crate::tools::bench::report;
use crate::tools::client::Dial;

/// Progress bar of the message benchmarks.
const MESSAGES_BAR: &str = "{bar:40} {pos}/{len} sent {msg} {per_sec} {elapsed}";
/// Progress bar of the connection benchmarks.
const CONNECTIONS_BAR: &str = "{bar:40} {pos}/{len} connected {per_sec} {elapsed}";

/// Runs one `fubar bench` command.
pub(crate) fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        match cmd {
            BenchCommand::Fanin(a) => {
                flow_cmd(a.flow, a.publishers, a.subscribers, a.messages).await
            }
            BenchCommand::Fanout(a) => {
                flow_cmd(a.flow, a.publishers, a.subscribers, a.messages).await
            }
            BenchCommand::Handshakes(a) => handshakes_cmd(a).await,
            BenchCommand::Conns(a) => conns_cmd(a).await,
            BenchCommand::Probe(a) => probe_cmd(a).await,
            BenchCommand::Latency(a) => latency_cmd(a).await,
            BenchCommand::Ingest(a) => ingest_cmd(a).await,
        }
    })
}

pub(crate) fn resolve(host: &str, port: u16) -> anyhow::Result<std::net::SocketAddr> {
    (host, port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {host}"))?
        .next()
        .with_context(|| format!("no address for {host}"))
}

/// How the tools' `--cafile/--cert/--key` and `--ws/--ws-path` flags reach the broker (none:
/// plain TCP).
pub(crate) fn tls_client(host: &str, t: &TlsArgs) -> anyhow::Result<Option<Dial>> {
    let ws = t.ws.then(|| (host.to_owned(), t.ws_path.clone()));
    let Some(ca) = &t.cafile else {
        return Ok(ws.map(|ws| Dial {
            tls: None,
            ws: Some(ws),
        }));
    };
    let pair = t.cert.as_deref().zip(t.key.as_deref());
    let config = fubar_ssl::client_config(Some(ca), pair, &[])?;
    let name = t.server_name.clone().unwrap_or_else(|| host.to_owned());
    let server_name = rustls::pki_types::ServerName::try_from(name.clone())
        .with_context(|| format!("{name:?} is not a valid server name"))?;
    Ok(Some(Dial {
        tls: Some((config, server_name)),
        ws,
    }))
}

/// A client id prefix of this process, so two runs against one broker do not take over each
/// other's clients.
fn run_prefix(bench: &str) -> String {
    format!("{bench}-{}-", std::process::id())
}

fn seconds(secs: f64, flag: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(secs).with_context(|| format!("{flag} {secs}: not a duration"))
}

fn batch_options(target: &BenchTarget, b: BatchArgs) -> anyhow::Result<BatchOptions> {
    let addr = resolve(&target.host, target.port)?;
    if let Err(why) = conns::raise_file_limit(b.clients) {
        eprintln!("fubar: {why}");
    }
    Ok(BatchOptions {
        addr,
        version: protocol_version(&target.protocol)?,
        clients: b.clients,
        first: 0,
        id_prefix: b.id_prefix,
        rate: b.rate,
        concurrency: b.concurrency,
        keep_alive: b.keep_alive,
        dial: None,
        subscribe: None,
    })
}

async fn flow_cmd(
    a: FlowArgs,
    publishers: usize,
    subscribers: usize,
    messages: u64,
) -> anyhow::Result<()> {
    let addr = resolve(&a.target.host, a.target.port)?;
    let (sub_host, sub_port) = flow::subscriber_target(
        &a.target.host,
        a.target.port,
        a.sub_host.as_deref(),
        a.sub_port,
    );
    let options = FlowOptions {
        addr,
        version: protocol_version(&a.target.protocol)?,
        sub_addr: resolve(sub_host, sub_port)?,
        ready_timeout: flow::READY_TIMEOUT,
        tls: tls_client(&a.target.host, &a.tls)?,
        publishers: publishers.max(1),
        subscribers,
        messages,
        qos: QoS::from_u8(a.qos).unwrap_or_default(),
        size: a.size,
        window: a.window.max(1),
        rate: a.rate,
        duration: a.duration.map(|d| seconds(d, "--duration")).transpose()?,
        topic: a.topic,
        id_prefix: run_prefix("flow"),
        broker_pid: a.target.broker_pid,
    };
    let control = Control::for_terminal(messages, MESSAGES_BAR);
    let r = flow::run(options, &control)
        .await
        .with_context(|| format!("benchmark against {addr} failed"))?;
    report::print(&r, a.target.json);
    Ok(())
}

async fn latency_cmd(a: LatencyArgs) -> anyhow::Result<()> {
    let addr = resolve(&a.target.host, a.target.port)?;
    let options = LatencyOptions {
        addr,
        version: protocol_version(&a.target.protocol)?,
        rate: a.rate,
        messages: a.messages,
        qos: QoS::from_u8(a.qos).unwrap_or_default(),
        size: a.size,
        topic: a.topic,
        tls: tls_client(&a.target.host, &a.tls)?,
        id_prefix: run_prefix("lat"),
        broker_pid: a.target.broker_pid,
    };
    let control = Control::for_terminal(a.messages, MESSAGES_BAR);
    let r = latency::run(options, &control)
        .await
        .with_context(|| format!("benchmark against {addr} failed"))?;
    report::print(&r, a.target.json);
    Ok(())
}

async fn conns_cmd(a: ConnsArgs) -> anyhow::Result<()> {
    let control = Control::for_terminal(a.batch.clients as u64, CONNECTIONS_BAR);
    let options = ConnsOptions {
        batch: BatchOptions {
            subscribe: a.subscribe,
            dial: tls_client(&a.target.host, &a.tls)?,
            ..batch_options(&a.target, a.batch)?
        },
        hold: Duration::from_secs(a.hold),
        broker_pid: a.target.broker_pid,
    };
    let r = conns::run(options, &control).await;
    report::print(&r, a.target.json);
    Ok(())
}

async fn probe_cmd(a: ProbeArgs) -> anyhow::Result<()> {
    let control = Control::for_terminal(a.batch.clients as u64, CONNECTIONS_BAR);
    let batch = batch_options(&a.target, a.batch)?;
    let addr = batch.addr;
    let options = ProbeOptions {
        batch,
        interval: Duration::from_millis(a.interval),
        duration: seconds(a.duration, "--duration")?,
        topic: a.topic,
        qos: QoS::from_u8(a.qos).unwrap_or_default(),
        size: a.size,
        broker_pid: a.target.broker_pid,
    };
    let r = probe::run(options, &control)
        .await
        .with_context(|| format!("probe against {addr} failed"))?;
    report::print(&r, a.target.json);
    Ok(())
}

async fn handshakes_cmd(a: HandshakesArgs) -> anyhow::Result<()> {
    let addr = resolve(&a.target.host, a.target.port)?;
    let options = HandshakeOptions {
        addr,
        version: protocol_version(&a.target.protocol)?,
        count: a.count,
        concurrency: a.concurrency,
        tls: tls_client(&a.target.host, &a.tls)?,
        id_prefix: run_prefix("hs"),
        broker_pid: a.target.broker_pid,
    };
    let control = Control::for_terminal(a.count as u64, CONNECTIONS_BAR);
    let r = handshakes::run(options, &control).await;
    report::print(&r, a.target.json);
    Ok(())
}

async fn ingest_cmd(a: IngestArgs) -> anyhow::Result<()> {
    let monitor: crate::cluster::NodeName = a.monitor.parse()?;
    let addr = monitor.cluster_addr()?;
    let tls = fubar_ssl::cluster_client_config(
        None,
        &match &a.cafile {
            Some(ca) => fubar_ssl::ClusterTrust::Ca(ca.clone()),
            None => fubar_ssl::ClusterTrust::Cookie,
        },
        &[fubar_logproto::link::LOG_ALPN],
    )?;
    let cookie = fubar_monitor::cookie::Cookie::load_or_create(&a.cookie_file)
        .with_context(|| format!("cannot read the cluster cookie {}", a.cookie_file.display()))?;
    let work = std::env::temp_dir().join(format!("fubar-ingest-{}", std::process::id()));
    let options = crate::tools::bench::ingest::IngestOptions {
        monitor: addr,
        server_name: monitor.host.clone(),
        tls,
        cookie: Some(cookie),
        nodes: a.nodes.max(1),
        events: a.events,
        work_dir: work.clone(),
        monitor_pid: a.broker_pid,
    };
    let control = Control::for_terminal(
        a.events,
        "{bar:40} {pos}/{len} acknowledged {per_sec} {elapsed}",
    );
    let r = crate::tools::bench::ingest::run(options, &control).await;
    let _ = std::fs::remove_dir_all(&work);
    let r = r.with_context(|| format!("ingest into {addr} failed"))?;
    report::print(&r, a.json);
    Ok(())
}
