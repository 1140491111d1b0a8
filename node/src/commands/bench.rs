//! `fubar bench`: runs a benchmark and prints its report.

use std::net::ToSocketAddrs as _;

use anyhow::Context as _;

use crate::cli::{BenchCommand, FaninArgs};
use crate::mqtt::packet::QoS;
use crate::tools::bench::fanin::{self, FaninOptions};

/// Runs one `fubar bench` command.
pub(crate) fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    match cmd {
        BenchCommand::Fanin(args) => runtime.block_on(fanin_cmd(args)),
    }
}

async fn fanin_cmd(a: FaninArgs) -> anyhow::Result<()> {
    let addr = (a.host.as_str(), a.port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {}", a.host))?
        .next()
        .with_context(|| format!("no address for {}", a.host))?;
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
