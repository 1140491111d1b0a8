//! Remote admin over the monitor's endpoint (ALPN `fubar-admin/1`): the server hands each
//! admitted request to the handler its owner installed ([`crate::server::MonitorServer::set_admin`])
//! as an [`AdminCall`], and streams the handler's replies back; [`AdminClient`] is the other end.
//!
//! This crate does not know what a request does: the node runs its admin commands behind the
//! channel, the same dispatch its local Unix socket uses.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use fubar_logproto::admin::{AdminRequest, AdminResponse};
use fubar_logproto::frame::MAX_FRAME;
use quinn::crypto::rustls::QuicClientConfig;
use quinn::{Connection, Endpoint, IdleTimeout, RecvStream, SendStream, TransportConfig};
use tokio::sync::mpsc;

use crate::cookie::Cookie;
use crate::membership::join;
use crate::wire::{write_frame, FrameReader};
use crate::MonitorError;

/// Replies a handler may queue ahead of the stream (a tail's events; the tail is told what it
/// missed when it falls further behind).
pub const ADMIN_REPLY_CAPACITY: usize = 256;

/// One admitted remote request for the handler: send one reply (or, for `LogTail`, a stream
/// of them) on `replies`, then drop it; a closed `replies` means the client went away.
/// Whether `caller` may run `request` is the handler's decision.
#[derive(Debug)]
pub struct AdminCall {
    /// The request.
    pub request: AdminRequest,
    /// Where the replies go, in order.
    pub replies: mpsc::Sender<AdminResponse>,
    /// Who sent it, as the membership handshake proved.
    pub caller: Caller,
    /// The address it came from.
    pub peer: SocketAddr,
}

/// Who an admitted admin client is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A member (the cookie, or a node certificate of the cluster CA): every right.
    Member(String),
    /// The holder of an operator certificate of the cluster CA, with its role.
    Operator {
        /// The certificate's CN.
        name: String,
        /// What its marker grants.
        role: fubar_ssl::Role,
    },
}

/// A remote admin connection to a monitor, welcomed as a member.
#[derive(Debug)]
pub struct AdminClient {
    endpoint: Endpoint,
    conn: Connection,
    send: SendStream,
    recv: RecvStream,
    reader: FrameReader,
}

impl AdminClient {
    /// Connects to `addr` (whose certificate must name `server_name`), and proves membership as
    /// `client` (the CN of the certificate in `tls`, if it has one, or any name with `cookie`).
    /// `tls` offers `ADMIN_ALPN` (`fubar_ssl::quic_client_config`). Needs a tokio runtime.
    pub async fn connect(
        addr: SocketAddr,
        server_name: &str,
        tls: Arc<rustls::ClientConfig>,
        cookie: Option<&Cookie>,
        client: &str,
        idle_timeout: Duration,
    ) -> Result<Self, MonitorError> {
        let crypto =
            QuicClientConfig::try_from(tls).map_err(|e| MonitorError::Tls(e.to_string()))?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        let idle = IdleTimeout::try_from(idle_timeout)
            .map_err(|e| MonitorError::BadConfig(format!("idle timeout: {e}")))?;
        let mut transport = TransportConfig::default();
        transport
            .max_idle_timeout(Some(idle))
            .keep_alive_interval(Some(idle_timeout / 3))
            .max_concurrent_bidi_streams(0u32.into())
            .max_concurrent_uni_streams(0u32.into());
        config.transport_config(Arc::new(transport));
        let local: SocketAddr = if addr.is_ipv6() {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        };
        let mut endpoint = Endpoint::client(local).map_err(|source| MonitorError::Net {
            op: "bind the admin client's UDP socket",
            source,
        })?;
        endpoint.set_default_client_config(config);
        let conn = endpoint.connect(addr, server_name)?.await?;
        let joined = join(&conn, client, 0, cookie).await?;
        let mut reader = joined.reader;
        // Replies are larger than the handshake's messages (a search's events).
        reader.set_max(MAX_FRAME);
        Ok(Self {
            endpoint,
            conn,
            send: joined.send,
            recv: joined.recv,
            reader,
        })
    }

    /// Sends the one request of this connection.
    pub async fn send(&mut self, request: &AdminRequest) -> Result<(), MonitorError> {
        write_frame(&mut self.send, request).await?;
        self.send
            .finish()
            .map_err(|e| MonitorError::Stream(e.to_string()))
    }

    /// The next reply; `None` once the monitor has sent the last one.
    pub async fn next(&mut self) -> Result<Option<AdminResponse>, MonitorError> {
        self.reader.next(&mut self.recv).await
    }

    /// Sends `request` and returns its one reply.
    pub async fn request(&mut self, request: &AdminRequest) -> Result<AdminResponse, MonitorError> {
        self.send(request).await?;
        self.next()
            .await?
            .ok_or_else(|| MonitorError::Stream("the monitor sent no reply".into()))
    }

    /// Closes the connection and waits (a little) for the monitor to hear it.
    pub async fn close(self) {
        self.conn.close(0u32.into(), b"done");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }
}
