//! A node's side of the log link: the log engine's tap feeds a bounded on-disk spool from
//! boot, and once the cluster's monitor is known (from the replicated membership) the
//! shipper sends the spool to it, resending what was not acknowledged.

use parking_lot::Mutex;
use std::sync::Arc;

use anyhow::Context as _;
use fubar_logproto::link::LOG_ALPN;
use fubar_logs::LogHandle;
use fubar_monitor::config::ShipperLimits;
use fubar_monitor::cookie::Cookie;
use fubar_monitor::shipper::{
    SharedSpool, Shipper, ShipperConfig, ShipperStats, SpoolConfig, SpoolStats,
};
use fubar_store::replicated::{NodeInfo, NodeRole};

use super::member::ClusterMember;
use super::NodeName;
use crate::settings::Settings;

/// The spool, and the shipper once there is a monitor to ship to.
#[derive(Debug)]
pub struct LogShipping {
    spool: SharedSpool,
    logs: LogHandle,
    tls: Arc<rustls::ClientConfig>,
    cookie: Cookie,
    node: String,
    epoch: u64,
    shipper: Mutex<Option<Shipper>>,
}

impl LogShipping {
    /// Starts spooling this node's events (the default classes; the monitor's `Collect`
    /// orders adjust the set), so that events before the first link are kept.
    pub fn start(settings: &Settings, logs: &LogHandle, epoch: u64) -> anyhow::Result<Arc<Self>> {
        let mut spool_config = SpoolConfig::new(settings.node_dir().join("spool"));
        spool_config.max_bytes = settings.cluster.spool_bytes;
        let spool = SharedSpool::open(&spool_config).context("cannot open the log spool")?;
        logs.set_tap(Some(spool.tap()));
        for class in fubar_monitor::config::DEFAULT_COLLECT {
            logs.ship(class, true);
        }
        let tls = super::endpoint::client_tls(settings, LOG_ALPN)?;
        let cookie_file = settings.cookie_file();
        let cookie = Cookie::load_or_create(&cookie_file)
            .with_context(|| format!("cannot use the cluster cookie {}", cookie_file.display()))?;
        Ok(Arc::new(Self {
            spool,
            logs: logs.clone(),
            tls,
            cookie,
            node: settings.node.name.clone(),
            epoch,
            shipper: Mutex::new(None),
        }))
    }

    /// Ships to `monitor` (once: the first monitor found keeps the link).
    pub fn ship_to(&self, monitor: &NodeInfo) -> anyhow::Result<()> {
        let mut shipper = self.shipper.lock();
        if shipper.is_some() {
            return Ok(());
        }
        let name: NodeName = monitor.name.parse()?;
        let addr = std::net::ToSocketAddrs::to_socket_addrs(&monitor.addr)
            .with_context(|| format!("cannot resolve the monitor's address {}", monitor.addr))?
            .find(std::net::SocketAddr::is_ipv4)
            .with_context(|| format!("the monitor's address {} has no IPv4", monitor.addr))?;
        let config = ShipperConfig {
            node: self.node.clone(),
            epoch: self.epoch,
            monitor: addr,
            server_name: name.host,
            limits: ShipperLimits::default(),
        };
        *shipper = Some(Shipper::start(
            config,
            self.tls.clone(),
            Some(self.cookie.clone()),
            self.spool.clone(),
            Some(self.logs.clone()),
        )?);
        tracing::info!(target: "info", monitor = %monitor.name, addr = %addr, "shipping logs to the monitor");
        Ok(())
    }

    /// Waits for a monitor in the cluster's membership, then ships to it.
    pub async fn ship_when_monitor_known(self: Arc<Self>, member: Arc<ClusterMember>) {
        let mut metrics = member.raft.metrics();
        loop {
            let monitor = {
                let membership = metrics.borrow_and_update().membership_config.clone();
                let found = membership
                    .membership()
                    .nodes()
                    .map(|(_, n)| n.clone())
                    .find(|n| n.role == NodeRole::Monitor);
                found
            };
            if let Some(monitor) = monitor {
                if let Err(e) = self.ship_to(&monitor) {
                    tracing::error!(target: "error", monitor = %monitor.name, error = %e,
                        "cannot ship logs to the monitor");
                }
                return;
            }
            if metrics.changed().await.is_err() {
                return;
            }
        }
    }

    /// The spool's counters, and the shipper's once there is a monitor to ship to.
    pub fn figures(&self) -> (SpoolStats, Option<ShipperStats>) {
        let shipper = self.shipper.lock().as_ref().map(Shipper::stats);
        (self.spool.stats(), shipper)
    }

    /// Stops the shipper (what was not acknowledged stays in the spool).
    pub async fn shutdown(&self) {
        let shipper = self.shipper.lock().take();
        if let Some(s) = shipper {
            s.shutdown().await;
        }
    }
}
