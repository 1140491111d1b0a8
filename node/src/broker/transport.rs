//! From an accepted TCP socket to a connection the driver can serve: the address check, and
//! for the TLS listener the handshake, under its own timeout, inside the connection's task
//! (never in the accept loop), with an `access` event that says why a handshake failed.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::{connection, Broker};

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;
/// The first byte of an MQTT CONNECT.
const MQTT_CONNECT: u8 = 0x10;

/// Whether the address rules let `peer` in; logs the refusal.
fn admitted(broker: &Broker, peer: SocketAddr) -> bool {
    let allowed = broker.acl.allows(peer.ip());
    if !allowed {
        tracing::warn!(target: "access", %peer, "connection refused: address denied by the acl");
    }
    allowed
}

/// Serves a connection accepted on the plain MQTT listener.
pub(crate) async fn serve_tcp(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: CancellationToken,
    slot: OwnedSemaphorePermit,
) {
    if !admitted(&broker, peer) {
        return;
    }
    let _ = stream.set_nodelay(true);
    connection::serve(broker, stream.into_split(), peer, None, shutdown, slot).await;
}

/// Serves a connection accepted on the TLS listener: handshake first.
pub(crate) async fn serve_tls(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: CancellationToken,
    slot: OwnedSemaphorePermit,
) {
    if !admitted(&broker, peer) {
        return;
    }
    let Some(config) = broker.tls_config() else {
        return;
    };
    let settings = broker.settings();
    let _ = stream.set_nodelay(true);
    let limit = Duration::from_secs(settings.mqtts.handshake_timeout_secs);
    let handshake = async {
        // Look at the first byte first, so a plain MQTT client or garbage gets a clear reason.
        let mut first = [0u8; 1];
        match stream.peek(&mut first).await {
            Ok(0) => return Err("closed before the TLS handshake".to_owned()),
            Ok(_) if first[0] == MQTT_CONNECT => {
                return Err("plain MQTT (not TLS) on the TLS port".to_owned())
            }
            Ok(_) if first[0] != TLS_HANDSHAKE => {
                return Err(format!(
                    "not a TLS handshake (first byte 0x{:02x})",
                    first[0]
                ))
            }
            Ok(_) => {}
            Err(e) => return Err(format!("socket error before the TLS handshake: {e}")),
        }
        TlsAcceptor::from(config)
            .accept(stream)
            .await
            .map_err(|e| format!("TLS handshake failed: {e}"))
    };
    let tls = tokio::select! {
        _ = shutdown.cancelled() => return,
        r = tokio::time::timeout(limit, handshake) => match r {
            Ok(Ok(tls)) => tls,
            Ok(Err(why)) => {
                broker.stats.tls_handshakes_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(target: "access", %peer, reason = %why, "TLS connection refused");
                return;
            }
            Err(_) => {
                broker.stats.tls_handshakes_timed_out.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(target: "access", %peer, timeout_secs = limit.as_secs(),
                    reason = "TLS handshake timed out", "TLS connection refused");
                return;
            }
        },
    };
    let (_, session) = tls.get_ref();
    let cn = session
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|cert| fubar_ssl::peer_common_name(cert));
    let version = session
        .protocol_version()
        .map(|v| format!("{v:?}"))
        .unwrap_or_default();
    tracing::debug!(target: "access", %peer, tls = %version, cert_cn = cn.as_deref().unwrap_or("-"), "TLS handshake done");
    let cert_user = if settings.ssl.username_from_cn {
        cn
    } else {
        None
    };
    connection::serve(
        broker,
        tokio::io::split(tls),
        peer,
        cert_user,
        shutdown,
        slot,
    )
    .await;
}
