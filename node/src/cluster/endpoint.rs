//! The node's QUIC endpoint on the cluster port: the same one for a monitor (log links,
//! remote admin, cluster peers) and for a broker that is a cluster member (remote admin and
//! cluster peers); membership is proven the same way on each (the mutual cookie proof, or a
//! node certificate of the cluster's own CA naming a known member).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use fubar_logproto::link::PEER_ALPN;
use fubar_monitor::cookie::Cookie;
use fubar_monitor::server::{MonitorServer, ServerConfig};
use fubar_monitor::sink::EventSink;

use crate::settings::Settings;

/// Where a node keeps the cluster identity it made itself: `<data_dir>/<name>/cluster-tls`.
pub fn identity_dir(settings: &Settings) -> std::path::PathBuf {
    settings.node_dir().join("cluster-tls")
}

/// This node's certificate on the cluster port, and how it trusts other members: the
/// operator's (`cluster.node_certfile` of `cluster.cafile`) when set, else the one it made
/// itself on first start (said in one `info` line), trusted by nobody: the cookie decides.
pub fn cluster_tls(
    settings: &Settings,
) -> anyhow::Result<(fubar_ssl::NodeIdentity, fubar_ssl::ClusterTrust)> {
    let c = &settings.cluster;
    let trust = if c.cafile.as_os_str().is_empty() {
        fubar_ssl::ClusterTrust::Cookie
    } else {
        fubar_ssl::ClusterTrust::Ca(c.cafile.clone())
    };
    if !c.node_certfile.as_os_str().is_empty() {
        let identity = fubar_ssl::NodeIdentity {
            certfile: c.node_certfile.clone(),
            keyfile: c.node_keyfile.clone(),
        };
        return Ok((identity, trust));
    }
    let dir = identity_dir(settings);
    let (identity, made) =
        fubar_ssl::self_made_identity(&dir, &settings.node.name).with_context(|| {
            format!(
                "cannot make this node's cluster identity in {}",
                dir.display()
            )
        })?;
    if made {
        // Said once, on the terminal too: the info class is not shown there by default.
        println!(
            "fubar node {} made its cluster TLS identity in {} (self-signed; the cookie proves membership)",
            settings.node.name,
            dir.display()
        );
        tracing::info!(target: "info", node = %settings.node.name, path = %dir.display(),
            "made this node's cluster TLS identity (self-signed; the cookie proves membership)");
    }
    Ok((identity, trust))
}

/// The server side's TLS for the cluster port, offering `alpns`.
pub fn server_tls(
    settings: &Settings,
    alpns: &[&[u8]],
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let (identity, trust) = cluster_tls(settings)?;
    fubar_ssl::cluster_server_config(&identity, &trust, alpns)
        .with_context(|| format!("the cluster port's TLS (trust: {trust})"))
}

/// The client side's TLS for dialing other members (`alpn`: peers, or the monitor's log
/// link), presenting this node's certificate when it has one of the cluster CA.
pub fn client_tls(settings: &Settings, alpn: &[u8]) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let (identity, trust) = cluster_tls(settings)?;
    // A self-made certificate proves nothing to anyone: it is not presented.
    let presented = matches!(trust, fubar_ssl::ClusterTrust::Ca(_)).then_some(&identity);
    fubar_ssl::cluster_client_config(presented, &trust, &[alpn])
        .with_context(|| format!("the cluster links' TLS (trust: {trust})"))
}

/// The client side's TLS for dialing other members (`PEER_ALPN`).
pub fn peer_client_tls(settings: &Settings) -> anyhow::Result<PeerTls> {
    let (identity, trust) = cluster_tls(settings)?;
    let shared = client_tls(settings, PEER_ALPN)?;
    Ok(PeerTls {
        shared,
        own_ca: matches!(trust, fubar_ssl::ClusterTrust::Ca(_)).then_some((identity, trust)),
    })
}

/// How this node checks the member it dials. With the cluster's own CA, the member's node
/// certificate must name the member dialed: another node of the same CA answering at that
/// address (a member that took over its address, or one an attacker controls) is refused by
/// TLS, as `fubar ctl` refuses it. With the cookie, the mutual proof decides and one
/// configuration serves every member.
#[derive(Debug)]
pub struct PeerTls {
    shared: Arc<rustls::ClientConfig>,
    own_ca: Option<(fubar_ssl::NodeIdentity, fubar_ssl::ClusterTrust)>,
}

impl PeerTls {
    /// The client configuration for dialing member `name`.
    pub fn for_member(
        &self,
        name: &crate::cluster::NodeName,
    ) -> Result<Arc<rustls::ClientConfig>, fubar_ssl::SslError> {
        let Some((identity, trust)) = &self.own_ca else {
            return Ok(self.shared.clone());
        };
        let names = [name.id(), name.to_string()];
        fubar_ssl::cluster_client_config_for_node(Some(identity), trust, &[PEER_ALPN], &names)
    }
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
    let c = &settings.cluster;
    config.certs_vouch = !c.cafile.as_os_str().is_empty();
    config.limits.handshake_timeout = Duration::from_millis(c.proof_timeout_ms);
    config.limits.max_connections = c.max_connections;
    config.limits.max_nodes = config.limits.max_nodes.max(c.max_connections);
    config.limits.max_unproven = c.max_unproven_connections;
    config.limits.max_unproven_per_address = c.max_unproven_per_address;
    config.limits.refusal_warning_interval = Duration::from_millis(c.refusal_warning_ms);
    config.limits.max_refusal_warnings = c.max_refusal_warnings;
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

#[cfg(test)]
mod tests {
    use super::*;
    use fubar_ssl::{ClusterTrust, NewCerts, NodeIdentity};
    use rustls::pki_types::ServerName;

    /// Whether a client with `client` completes a handshake with a server with `server`.
    async fn handshake(
        server: Arc<rustls::ServerConfig>,
        client: Arc<rustls::ClientConfig>,
    ) -> Result<(), String> {
        let (c, s) = tokio::io::duplex(64 << 10);
        let accept = tokio_rustls::TlsAcceptor::from(server).accept(s);
        let name = ServerName::try_from("localhost").unwrap();
        let connect = tokio_rustls::TlsConnector::from(client).connect(name, c);
        let (_, client) = tokio::join!(accept, connect);
        client.map(drop).map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn with_the_cluster_ca_a_member_is_dialed_only_if_its_certificate_names_it() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = tmp.path().to_owned();
        fubar_ssl::new_certs(&NewCerts {
            dir: ca.clone(),
            nodes: vec!["n1@localhost".into(), "n2@localhost".into()],
            ..NewCerts::default()
        })
        .unwrap();
        let node = |n: &str| NodeIdentity {
            certfile: ca.join(format!("node-{n}.pem")),
            keyfile: ca.join(format!("node-{n}.key.pem")),
        };
        let trust = ClusterTrust::Ca(ca.join("cacert.pem"));
        let me = node("n1@localhost");
        let tls = PeerTls {
            shared: fubar_ssl::cluster_client_config(Some(&me), &trust, &[PEER_ALPN]).unwrap(),
            own_ca: Some((me, trust.clone())),
        };
        // n2 answers, wherever it is dialed.
        let server =
            fubar_ssl::cluster_server_config(&node("n2@localhost"), &trust, &[PEER_ALPN]).unwrap();
        let n2: crate::cluster::NodeName = "n2@localhost".parse().unwrap();
        let n3: crate::cluster::NodeName = "n3@localhost".parse().unwrap();
        handshake(server.clone(), tls.for_member(&n2).unwrap())
            .await
            .expect("n2 dialed as n2");
        let err = handshake(server.clone(), tls.for_member(&n3).unwrap())
            .await
            .expect_err("n2 answering for n3");
        assert!(err.contains("n3@localhost"), "{err}");
        // The one shared configuration (what links used before) lets it through.
        handshake(server, tls.shared.clone())
            .await
            .expect("without the name, any node of the CA passes");
    }

    #[test]
    fn with_the_cookie_every_member_is_dialed_with_the_one_configuration() {
        let shared =
            fubar_ssl::cluster_client_config(None, &ClusterTrust::Cookie, &[PEER_ALPN]).unwrap();
        let tls = PeerTls {
            shared: shared.clone(),
            own_ca: None,
        };
        let n2: crate::cluster::NodeName = "n2@localhost".parse().unwrap();
        assert!(Arc::ptr_eq(&tls.for_member(&n2).unwrap(), &shared));
    }
}
