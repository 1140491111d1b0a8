//! A node's side of the log link (`--master MONITOR`): the log engine's tap feeds a bounded
//! on-disk spool, and the shipper sends it to the monitor, resending what was not acknowledged.

use anyhow::Context as _;
use fubar_logproto::link::LOG_ALPN;
use fubar_logs::LogHandle;
use fubar_monitor::config::ShipperLimits;
use fubar_monitor::cookie::Cookie;
use fubar_monitor::shipper::{SharedSpool, Shipper, ShipperConfig, SpoolConfig};

use super::NodeName;
use crate::settings::Settings;

/// Starts shipping this node's events to `settings.cluster.master`.
pub fn start(settings: &Settings, logs: &LogHandle, epoch: u64) -> anyhow::Result<Shipper> {
    let master: NodeName = settings.cluster.master.parse()?;
    let monitor = master
        .cluster_addr()
        .with_context(|| format!("cannot resolve the monitor {master}"))?;
    let mut spool_config = SpoolConfig::new(settings.node_dir().join("spool"));
    spool_config.max_bytes = settings.cluster.spool_bytes;
    let spool = SharedSpool::open(&spool_config).context("cannot open the log spool")?;
    logs.set_tap(Some(spool.tap()));
    // Spool the default classes from the start: events before the first link (or while the
    // monitor is away at boot) are kept, and the monitor's `Collect` orders adjust the set.
    for class in fubar_monitor::config::DEFAULT_COLLECT {
        logs.ship(class, true);
    }
    let node_cert = (!settings.cluster.node_certfile.as_os_str().is_empty()).then_some((
        settings.cluster.node_certfile.as_path(),
        settings.cluster.node_keyfile.as_path(),
    ));
    let tls = fubar_ssl::quic_client_config(Some(&settings.ssl.cafile), node_cert, &[LOG_ALPN])
        .context("the log link needs the cluster CA (ssl.cafile) to trust the monitor")?;
    let cookie_file = settings.cookie_file();
    let cookie = Cookie::load_or_create(&cookie_file)
        .with_context(|| format!("cannot use the cluster cookie {}", cookie_file.display()))?;
    let config = ShipperConfig {
        node: settings.node.name.clone(),
        epoch,
        monitor,
        server_name: master.host.clone(),
        limits: ShipperLimits::default(),
    };
    Ok(Shipper::start(
        config,
        tls,
        Some(cookie),
        spool,
        Some(logs.clone()),
    )?)
}
