//! The node's QUIC endpoint on the cluster port: the same one for a monitor (log links,
//! remote admin, cluster peers) and for a broker that is a cluster member (remote admin and
//! cluster peers); membership is proven the same way on each (a node certificate of the
//! cluster CA, or the cookie).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use fubar_logproto::link::PEER_ALPN;
use fubar_monitor::cookie::Cookie;
use fubar_monitor::server::{MonitorServer, ServerConfig};
use fubar_monitor::sink::EventSink;
use tokio::sync::mpsc;

use crate::broker::Broker;
use crate::settings::Settings;

/// Remote admin requests waiting for the dispatcher (each then runs in its own task).
pub const ADMIN_QUEUE: usize = 64;

/// The server side's TLS for the cluster port, offering `alpns`.
pub fn server_tls(
    settings: &Settings,
    alpns: &[&[u8]],
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let files = fubar_ssl::ServerTlsFiles {
        certfile: settings.ssl.certfile.clone(),
        keyfile: settings.ssl.keyfile.clone(),
        cafile: Some(settings.ssl.cafile.clone()),
        verify: fubar_ssl::ClientVerify::Optional,
    };
    fubar_ssl::quic_server_config(&files, alpns).map_err(|e| {
        anyhow::anyhow!(
            "the cluster port needs TLS material (`fubar ssl new-certs`, settings ssl.*): {e}"
        )
    })
}

/// The client side's TLS for dialing other members (`PEER_ALPN`), with the node certificate
/// if one is configured.
pub fn peer_client_tls(settings: &Settings) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let node_cert = (!settings.cluster.node_certfile.as_os_str().is_empty()).then_some((
        settings.cluster.node_certfile.as_path(),
        settings.cluster.node_keyfile.as_path(),
    ));
    fubar_ssl::quic_client_config(Some(&settings.ssl.cafile), node_cert, &[PEER_ALPN])
        .context("cluster links need the cluster CA (ssl.cafile) to trust other members")
}

/// The cluster cookie (created on first use).
pub fn cookie(settings: &Settings) -> anyhow::Result<Cookie> {
    let file = settings.cookie_file();
    Cookie::load_or_create(&file)
        .with_context(|| format!("cannot use the cluster cookie {}", file.display()))
}

/// The endpoint's base configuration: the cluster port, this node's name and boot epoch.
pub fn server_config(settings: &Settings, epoch: u64) -> ServerConfig {
    let mut config = ServerConfig::new(SocketAddr::new(
        settings.cluster.bind.unwrap_or(settings.mqtt.bind),
        settings.cluster.port,
    ));
    config.node = settings.node.name.clone();
    config.epoch = epoch;
    config
}

/// Starts the endpoint of a broker that is a cluster member: remote admin and peers.
pub fn start_member_endpoint(settings: &Settings, epoch: u64) -> anyhow::Result<MonitorServer> {
    use fubar_logproto::link::ADMIN_ALPN;
    let tls = server_tls(settings, &[ADMIN_ALPN, PEER_ALPN])?;
    let sink: Arc<dyn EventSink> = Arc::new(fubar_monitor::sink::NotAMonitor);
    MonitorServer::start(
        server_config(settings, epoch),
        tls,
        Some(cookie(settings)?),
        sink,
    )
    .context("cannot start the cluster port")
}

/// Serves remote admin (ALPN `fubar-admin/1`) on `server` with the node's own admin
/// commands, as its Unix socket does, until the node shuts down.
pub fn serve_admin(server: &MonitorServer, broker: Arc<Broker>) {
    let (calls, mut rx) = mpsc::channel(ADMIN_QUEUE);
    server.set_admin(calls);
    let shutdown = broker.shutdown.clone();
    tokio::spawn(async move {
        loop {
            let call = tokio::select! {
                c = rx.recv() => c,
                _ = shutdown.cancelled() => None,
            };
            let Some(call) = call else { break };
            tokio::spawn(crate::admin::dispatch(
                broker.clone(),
                call.request,
                call.replies,
            ));
        }
    });
}
