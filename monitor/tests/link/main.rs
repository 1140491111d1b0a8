//! The log link end to end on loopback: real quinn endpoints, real TLS material from
//! `fubar_ssl::new_certs`, the monitor writing through a real log engine.

#![allow(
    clippy::unwrap_used,
    reason = "a test and its helpers fail by panicking"
)]

mod admin;
mod membership;
mod shipping;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fubar_logproto::link::{ADMIN_ALPN, LOG_ALPN};
use fubar_logproto::{Class, Event};
use fubar_logs::{class_dir, decode_records, EventLayer, LogConfig, LogHandle, Redirect};
use fubar_monitor::config::{LinkLimits, ShipperLimits};
use fubar_monitor::cookie::Cookie;
use fubar_monitor::server::{MonitorServer, ServerConfig};
use fubar_monitor::shipper::{SharedSpool, Shipper, ShipperConfig, SpoolConfig};
use fubar_monitor::sink::EventSink;
use fubar_ssl::{ClientVerify, NewCerts, ServerTlsFiles};
use tempfile::TempDir;

/// The cluster's secret in these tests.
pub(crate) const SECRET: &[u8] = b"the cluster cookie of the tests";

/// A CA with the monitor's certificate (localhost, 127.0.0.1) and node certificates.
pub(crate) struct Pki {
    dir: TempDir,
}

impl Pki {
    pub(crate) fn new(nodes: &[&str]) -> Self {
        fubar_ssl::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        fubar_ssl::new_certs(&NewCerts {
            dir: dir.path().to_path_buf(),
            nodes: nodes.iter().map(|n| (*n).to_owned()).collect(),
            ..NewCerts::default()
        })
        .unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The monitor's TLS: client certificates optional (cookie members have none).
    pub(crate) fn server_tls(&self) -> Arc<rustls::ServerConfig> {
        let files = ServerTlsFiles {
            certfile: self.path("cert.pem"),
            keyfile: self.path("key.pem"),
            cafile: Some(self.path("cacert.pem")),
            verify: ClientVerify::Optional,
        };
        fubar_ssl::quic_server_config(&files, &[LOG_ALPN, ADMIN_ALPN]).unwrap()
    }

    /// A node's TLS, trusting `self`'s CA, presenting `cert`'s node certificate if given.
    pub(crate) fn client_tls(&self, cert: Option<(&Self, &str)>) -> Arc<rustls::ClientConfig> {
        self.client_tls_for(cert, LOG_ALPN)
    }

    /// [`Pki::client_tls`] offering `alpn`.
    pub(crate) fn client_tls_for(
        &self,
        cert: Option<(&Self, &str)>,
        alpn: &[u8],
    ) -> Arc<rustls::ClientConfig> {
        let files = cert.map(|(pki, node)| {
            (
                pki.path(&format!("node-{node}.pem")),
                pki.path(&format!("node-{node}.key.pem")),
            )
        });
        let files = files.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
        fubar_ssl::quic_client_config(Some(&self.path("cacert.pem")), files, &[alpn]).unwrap()
    }
}

/// A monitor: its log engine in a temp dir (warnings recorded) and its endpoint.
pub(crate) struct Monitor {
    pub(crate) dir: PathBuf,
    pub(crate) logs: LogHandle,
    pub(crate) server: MonitorServer,
}

/// Starts the monitor's log engine; its layer is returned for the test thread's subscriber.
pub(crate) fn monitor_logs(dir: &Path) -> (LogHandle, EventLayer) {
    fubar_logs::start(LogConfig {
        node: "monitor@localhost".into(),
        epoch: 1,
        dir: dir.to_path_buf(),
        max_bytes: 1 << 20,
        max_files: 10,
        classes: vec![(Class::Warning, Redirect::None)],
        channel_capacity: 1024,
        flush_interval: Duration::from_millis(50),
        max_events_per_sec: 0,
    })
    .unwrap()
}

impl Monitor {
    /// Starts a monitor on `bind` with `cookie`, writing through `sink` (the log engine if
    /// `None`).
    pub(crate) fn start(
        pki: &Pki,
        bind: SocketAddr,
        cookie: Option<Cookie>,
        dir: &Path,
        logs: LogHandle,
        sink: Option<Arc<dyn EventSink>>,
    ) -> Self {
        // Every refusal is warned about (no rate limit).
        let limits = LinkLimits {
            refusal_warning_interval: Duration::from_nanos(1),
            ..LinkLimits::default()
        };
        Self::start_with_limits(pki, bind, cookie, dir, logs, sink, limits)
    }

    /// [`Monitor::start`] with `limits`.
    pub(crate) fn start_with_limits(
        pki: &Pki,
        bind: SocketAddr,
        cookie: Option<Cookie>,
        dir: &Path,
        logs: LogHandle,
        sink: Option<Arc<dyn EventSink>>,
        limits: LinkLimits,
    ) -> Self {
        let mut config = ServerConfig::new(bind);
        // These monitors check certificates against the test CA: node certificates of known
        // members stand for them.
        config.certs_vouch = true;
        config.limits = limits;
        config.high_water = fubar_logs::high_water_marks(dir).unwrap();
        let sink = sink.unwrap_or_else(|| Arc::new(logs.clone()));
        let server = MonitorServer::start(config, pki.server_tls(), cookie, sink).unwrap();
        Self {
            dir: dir.to_path_buf(),
            logs,
            server,
        }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.server.local_addr().unwrap()
    }

    /// Every event of `class` in the monitor's segments, in file order.
    pub(crate) fn recorded(&self, class: Class) -> Vec<Event> {
        self.logs.flush();
        recorded(&self.dir, class)
    }

    /// The `warning` events about refused or closed links.
    pub(crate) fn link_warnings(&self) -> Vec<Event> {
        self.recorded(Class::Warning)
            .into_iter()
            .filter(|e| e.message.starts_with("log link") || e.message.starts_with("cluster port"))
            .collect()
    }
}

/// Every event of `class` under a log dir.
pub(crate) fn recorded(dir: &Path, class: Class) -> Vec<Event> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(class_dir(dir, class))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .flat_map(|p| decode_records(&std::fs::read(p).unwrap()).0)
        .collect()
}

/// A node's shipping side: its spool and shipper.
pub(crate) struct Node {
    pub(crate) name: String,
    pub(crate) epoch: u64,
    pub(crate) spool: SharedSpool,
    pub(crate) shipper: Shipper,
    pub(crate) _dir: TempDir,
}

/// Quick reconnection, small batches: several batches per test.
pub(crate) fn fast_limits() -> ShipperLimits {
    ShipperLimits {
        batch_events: 10,
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        connect_timeout: Duration::from_secs(5),
        ..ShipperLimits::default()
    }
}

impl Node {
    pub(crate) fn start(
        name: &str,
        monitor: SocketAddr,
        tls: Arc<rustls::ClientConfig>,
        cookie: Option<Cookie>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let spool = SharedSpool::open(&SpoolConfig::new(dir.path().join("spool"))).unwrap();
        let epoch = 77;
        let config = ShipperConfig {
            node: name.to_owned(),
            epoch,
            monitor,
            server_name: "localhost".into(),
            limits: fast_limits(),
        };
        let shipper = Shipper::start(config, tls, cookie, spool.clone(), None).unwrap();
        Self {
            name: name.to_owned(),
            epoch,
            spool,
            shipper,
            _dir: dir,
        }
    }

    /// Spools events `seqs` of class access, as the log engine's tap would.
    pub(crate) fn emit(&self, seqs: impl IntoIterator<Item = u64>) {
        for seq in seqs {
            self.spool
                .append(&event(&self.name, self.epoch, seq))
                .unwrap();
        }
    }
}

pub(crate) fn event(node: &str, epoch: u64, seq: u64) -> Event {
    Event {
        node: node.to_owned(),
        epoch,
        seq,
        time_us: 1_795_616_836_257_740 + seq as i64,
        class: Class::Access,
        message: format!("event {seq}"),
        fields: vec![("client".into(), format!("c{seq}"))],
    }
}

/// A free UDP port on loopback (bound and released).
pub(crate) fn free_addr() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Waits until `f` holds, or fails after 20 s.
pub(crate) async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The sequence numbers of `node`'s events in `events`.
pub(crate) fn seqs_of(events: &[Event], node: &str) -> Vec<u64> {
    events
        .iter()
        .filter(|e| e.node == node)
        .map(|e| e.seq)
        .collect()
}
