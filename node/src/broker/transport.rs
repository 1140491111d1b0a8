//! From an accepted TCP socket to a connection the driver can serve: the address check, and
//! for the TLS and WebSocket listeners the handshakes, under their own timeouts, inside the
//! connection's task (never in the accept loop), with an `access` event that says why a
//! handshake failed.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::{connection, ws, Broker};

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

/// Serves a connection accepted on the plain MQTT listener: `None` when the address rules
/// refuse it. Not an `async fn`, for the reason `connection::serve` is not.
pub(crate) fn serve_tcp(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: CancellationToken,
    slot: OwnedSemaphorePermit,
) -> Option<impl Future<Output = ()>> {
    if !admitted(&broker, peer) {
        return None;
    }
    let _ = stream.set_nodelay(true);
    Some(connection::serve(
        broker,
        stream.into_split(),
        peer,
        "tcp",
        None,
        shutdown,
        slot,
    ))
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
    let Some((tls, cert_user)) = tls_handshake(&broker, stream, peer, &shutdown).await else {
        return;
    };
    connection::serve(
        broker,
        tokio::io::split(tls),
        peer,
        "tls",
        cert_user,
        shutdown,
        slot,
    )
    .await;
}

/// Serves a connection accepted on a WebSocket listener (`secure`: the wss one, TLS first):
/// the HTTP upgrade runs under `mqtt.connect_timeout_secs`.
pub(crate) async fn serve_ws(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    secure: bool,
    shutdown: CancellationToken,
    slot: OwnedSemaphorePermit,
) {
    if !admitted(&broker, peer) {
        return;
    }
    if secure {
        let Some((tls, cert_user)) = tls_handshake(&broker, stream, peer, &shutdown).await else {
            return;
        };
        // Boxed: the TLS state would otherwise size every plain ws connection's task too.
        Box::pin(upgrade(broker, tls, peer, "wss", cert_user, shutdown, slot)).await;
    } else {
        let _ = stream.set_nodelay(true);
        upgrade(broker, stream, peer, "ws", None, shutdown, slot).await;
    }
}

/// The WebSocket upgrade of a connection, then the driver over its binary frames.
async fn upgrade<S>(
    broker: Arc<Broker>,
    stream: S,
    peer: SocketAddr,
    transport: &'static str,
    cert_user: Option<String>,
    shutdown: CancellationToken,
    slot: OwnedSemaphorePermit,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let settings = broker.settings();
    let limit = settings.connect_timeout();
    let upgraded = tokio::select! {
        _ = shutdown.cancelled() => return,
        // Boxed: the handshake's buffers are freed once it is done, instead of sizing the
        // connection's task for as long as it lives.
        r = tokio::time::timeout(limit, Box::pin(ws::accept(stream, &settings))) => r,
    };
    let (io, protocol) = match upgraded {
        Ok(Ok(upgraded)) => upgraded,
        Ok(Err(ws::HandshakeError::Refused(refusal))) => {
            tracing::warn!(target: "access", %peer, transport, status = refusal.status,
                reason = %refusal.reason, "WebSocket upgrade refused");
            return;
        }
        Ok(Err(ws::HandshakeError::Io(e))) => {
            tracing::info!(target: "access", %peer, transport, reason = %e,
                "WebSocket upgrade abandoned");
            return;
        }
        Err(_) => {
            tracing::warn!(target: "access", %peer, transport, timeout_secs = limit.as_secs(),
                reason = "WebSocket upgrade timed out", "WebSocket upgrade refused");
            return;
        }
    };
    tracing::debug!(target: "access", %peer, transport, subprotocol = protocol, "WebSocket upgrade done");
    connection::serve(
        broker,
        tokio::io::split(io),
        peer,
        transport,
        cert_user,
        shutdown,
        slot,
    )
    .await;
}

/// The TLS handshake of the mqtts and wss listeners, under `mqtts.handshake_timeout_secs`:
/// the TLS stream and the user name its client certificate gives, or `None` (logged).
async fn tls_handshake(
    broker: &Broker,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: &CancellationToken,
) -> Option<(TlsStream<TcpStream>, Option<String>)> {
    let config = broker.tls_config()?;
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
            Ok(_) if first[0] == b'G' => {
                return Err("plain HTTP (not TLS) on the TLS port".to_owned())
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
        _ = shutdown.cancelled() => return None,
        r = tokio::time::timeout(limit, handshake) => match r {
            Ok(Ok(tls)) => tls,
            Ok(Err(why)) => {
                broker.stats.tls_handshakes_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(target: "access", %peer, reason = %why, "TLS connection refused");
                return None;
            }
            Err(_) => {
                broker.stats.tls_handshakes_timed_out.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(target: "access", %peer, timeout_secs = limit.as_secs(),
                    reason = "TLS handshake timed out", "TLS connection refused");
                return None;
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
    Some((tls, cert_user))
}

#[cfg(all(test, target_pointer_width = "64"))]
mod future_size {
    use std::sync::Arc;

    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::Semaphore;
    use tokio_util::sync::CancellationToken;

    use crate::broker::Broker;
    use crate::settings::Settings;

    /// Every idle plain-TCP connection holds this future (boxed): the memory bench's figure
    /// per connection is mostly it, rounded up to the allocator's size class (mimalloc's
    /// classes step by 256 bytes between 1,024 and 2,048).
    #[tokio::test]
    async fn a_plain_connection_future_fits_in_1280_bytes() -> Result<(), Box<dyn std::error::Error>>
    {
        let broker = Arc::new(Broker::standalone(Settings::default(), None)?);
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let client = TcpStream::connect(listener.local_addr()?).await?;
        let (stream, peer) = listener.accept().await?;
        let permit = Arc::new(Semaphore::new(1)).acquire_owned().await?;
        let serving = super::serve_tcp(broker, stream, peer, CancellationToken::new(), permit)
            .ok_or("refused")?;
        let size = size_of_val(&serving);
        assert!(size <= 1280, "the connection future is {size} bytes");
        drop(client);
        Ok(())
    }
}
