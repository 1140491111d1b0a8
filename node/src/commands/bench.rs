//! `fubar bench`: runs a benchmark and prints its report.

use std::net::ToSocketAddrs as _;

use anyhow::Context as _;

use crate::cli::{BenchCommand, ConnsArgs, FaninArgs, HandshakesArgs, LatencyArgs, TlsArgs};
use crate::mqtt::packet::QoS;
use crate::tools::bench::conns::{self, ConnsOptions};
use crate::tools::bench::fanin::{self, FaninOptions};
use crate::tools::bench::handshakes::{self, HandshakeOptions};
use crate::tools::bench::latency::{self, LatencyOptions};
use crate::tools::client::TlsClient;

/// Runs one `fubar bench` command.
pub(crate) fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    match cmd {
        BenchCommand::Fanin(args) => runtime.block_on(fanin_cmd(args)),
        BenchCommand::Handshakes(args) => runtime.block_on(handshakes_cmd(args)),
        BenchCommand::Conns(args) => runtime.block_on(conns_cmd(args)),
        BenchCommand::Latency(args) => runtime.block_on(latency_cmd(args)),
    }
}

pub(crate) fn resolve(host: &str, port: u16) -> anyhow::Result<std::net::SocketAddr> {
    (host, port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {host}"))?
        .next()
        .with_context(|| format!("no address for {host}"))
}

/// The TLS client of the tools' `--cafile/--cert/--key` flags (none without `--cafile`).
pub(crate) fn tls_client(host: &str, t: &TlsArgs) -> anyhow::Result<Option<TlsClient>> {
    let Some(ca) = &t.cafile else {
        return Ok(None);
    };
    let pair = t.cert.as_deref().zip(t.key.as_deref());
    let config = fubar_ssl::client_config(Some(ca), pair, &[])?;
    let name = t.server_name.clone().unwrap_or_else(|| host.to_owned());
    let server_name = rustls::pki_types::ServerName::try_from(name.clone())
        .with_context(|| format!("{name:?} is not a valid server name"))?;
    Ok(Some(TlsClient {
        config,
        server_name,
    }))
}

async fn latency_cmd(a: LatencyArgs) -> anyhow::Result<()> {
    let addr = resolve(&a.host, a.port)?;
    let tls = tls_client(&a.host, &a.tls)?;
    let r = latency::run(LatencyOptions {
        addr,
        rate: a.rate,
        messages: a.messages,
        qos: QoS::from_u8(a.qos).unwrap_or_default(),
        size: a.size,
        topic: a.topic,
        tls,
        id_prefix: format!("lat-{}-", std::process::id()),
    })
    .await
    .with_context(|| format!("benchmark against {addr} failed"))?;
    if a.json {
        println!(
            "{{\"bench\":\"latency\",\"qos\":{},\"rate\":{},\"messages\":{},\"received\":{},\"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{}}}",
            a.qos, a.rate, a.messages, r.received, r.p50_us, r.p90_us, r.p99_us, r.p999_us, r.max_us
        );
    } else {
        println!(
            "latency   qos {} at {} msg/s, {} messages",
            a.qos, a.rate, a.messages
        );
        println!("received  {:>10}", r.received);
        for (name, v) in [
            ("p50", r.p50_us),
            ("p90", r.p90_us),
            ("p99", r.p99_us),
            ("p99.9", r.p999_us),
            ("max", r.max_us),
        ] {
            println!("{name:<9} {:>10.3} ms", v as f64 / 1000.0);
        }
    }
    Ok(())
}

async fn conns_cmd(a: ConnsArgs) -> anyhow::Result<()> {
    let addr = resolve(&a.host, a.port)?;
    if let Err(why) = conns::raise_file_limit(a.clients) {
        eprintln!("fubar: {why}");
    }
    let bar = indicatif::ProgressBar::new(a.clients as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} connected {per_sec} {elapsed}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let progress = bar.clone();
    let r = conns::run(
        ConnsOptions {
            addr,
            clients: a.clients,
            id_prefix: a.id_prefix,
            rate: a.rate,
            concurrency: a.concurrency,
            hold: std::time::Duration::from_secs(a.hold),
            broker_pid: a.broker_pid,
        },
        move |n| progress.set_position(n),
    )
    .await;
    bar.finish_and_clear();
    let failures: u64 = r.failures.values().sum();
    if a.json {
        let reasons: Vec<String> = r
            .failures
            .iter()
            .map(|(k, v)| format!("{:?}:{v}", k))
            .collect();
        println!(
            "{{\"bench\":\"conns\",\"clients\":{},\"connected\":{},\"failed\":{failures},\"failures\":{{{}}},\"seconds\":{:.3},\"rate\":{:.1},\"rss_before\":{},\"rss_after\":{},\"rss_per_connection\":{:.1},\"interrupted\":{}}}",
            a.clients, r.connected, reasons.join(","), r.seconds, r.rate, r.rss_before, r.rss_after, r.rss_per_connection, r.interrupted
        );
    } else {
        println!(
            "conns      {} clients{}",
            a.clients,
            if r.interrupted { " (interrupted)" } else { "" }
        );
        println!("connected  {:>10}", r.connected);
        println!("failed     {:>10}", failures);
        for (reason, n) in &r.failures {
            println!("  {n:>8}  {reason}");
        }
        println!("seconds    {:>10.3}", r.seconds);
        println!("per second {:>10.0}", r.rate);
        if a.broker_pid.is_some() {
            println!(
                "broker RSS {:>10.1} MiB -> {:.1} MiB",
                r.rss_before as f64 / 1048576.0,
                r.rss_after as f64 / 1048576.0
            );
            println!("per conn.  {:>10.0} B", r.rss_per_connection);
        }
    }
    Ok(())
}

async fn handshakes_cmd(a: HandshakesArgs) -> anyhow::Result<()> {
    let addr = resolve(&a.host, a.port)?;
    let tls = tls_client(&a.host, &a.tls)?;
    let over = if tls.is_some() { "tls" } else { "tcp" };
    let r = handshakes::run(HandshakeOptions {
        addr,
        count: a.count,
        concurrency: a.concurrency,
        tls,
        id_prefix: format!("hs-{}-", std::process::id()),
    })
    .await;
    if a.json {
        println!(
            "{{\"bench\":\"handshakes\",\"transport\":\"{over}\",\"concurrency\":{},\"connected\":{},\"failed\":{},\"seconds\":{:.3},\"rate\":{:.1}}}",
            a.concurrency, r.connected, r.failed, r.seconds, r.rate
        );
    } else {
        println!("handshakes over {over}, {} at a time", a.concurrency);
        println!("connected  {:>10}", r.connected);
        println!("failed     {:>10}", r.failed);
        println!("seconds    {:>10.3}", r.seconds);
        println!("per second {:>10.0}", r.rate);
    }
    Ok(())
}

async fn fanin_cmd(a: FaninArgs) -> anyhow::Result<()> {
    let addr = resolve(&a.host, a.port)?;
    let tls = tls_client(&a.host, &a.tls)?;
    let options = FaninOptions {
        addr,
        publishers: a.publishers.max(1),
        messages: a.messages,
        qos: QoS::from_u8(a.qos).unwrap_or(QoS::AtLeastOnce),
        size: a.size,
        window: a.window.max(1),
        topic: a.topic,
        subscribe: a.subscribe,
        id_prefix: format!("bench-{}-", std::process::id()),
        tls,
    };
    let r = fanin::run(options.clone())
        .await
        .with_context(|| format!("benchmark against {addr} failed"))?;
    if a.json {
        println!(
            "{{\"bench\":\"fanin\",\"qos\":{},\"publishers\":{},\"size\":{},\"window\":{},\"published\":{},\"received\":{},\"seconds\":{:.3},\"rate\":{:.1}}}",
            a.qos, options.publishers, options.size, options.window, r.published, r.received, r.seconds, r.rate
        );
    } else {
        println!(
            "fanin   qos {}  {} publishers × {} messages of {} B, window {}",
            a.qos, options.publishers, options.messages, options.size, options.window
        );
        println!("published  {:>10}", r.published);
        if options.subscribe {
            println!("received   {:>10}", r.received);
        }
        println!("seconds    {:>10.3}", r.seconds);
        println!("msgs/s     {:>10.0}", r.rate);
    }
    Ok(())
}
