//! A small async MQTT client over fubar's own codec, for the tools.

use std::io;
use std::net::SocketAddr;

use std::sync::Arc;

use bytes::BytesMut;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::mqtt::decode::decode;
use crate::mqtt::encode::try_encode;
use crate::mqtt::packet::{Connect, ConnectReturnCode, Packet, ProtocolVersion, SubAckCode};
use crate::mqtt::properties::Properties;
use crate::websocket::{config, WsIo};

/// Largest packet the tools accept from a broker.
const MAX_PACKET: usize = 16 << 20;

/// The reading half of a client connection (TCP or TLS).
pub struct ClientReader {
    /// The protocol version packets are read with (set by the CONNECT sent).
    version: ProtocolVersion,
    stream: Box<dyn AsyncRead + Unpin + Send>,
    buf: BytesMut,
    /// The MQTT 5.0 server's receive maximum from CONNACK: most QoS 1/2 publishes this client
    /// may have unacknowledged (65,535 when absent, and for 3.1/3.1.1).
    receive_maximum: u16,
}

/// The writing half of a client connection; packets are buffered until `flush`.
pub struct ClientWriter {
    /// The protocol version packets are written with (set by the CONNECT sent).
    version: ProtocolVersion,
    stream: Box<dyn AsyncWrite + Unpin + Send>,
    buf: BytesMut,
    /// The first packet that could not be encoded (a topic longer than 65,535 bytes, say):
    /// the next `flush` reports it, as a buffered writer reports a failed write.
    unencodable: Option<String>,
}

/// How the tools reach a broker beyond plain TCP: TLS, WebSocket, or both (wss).
#[derive(Clone, Default)]
pub struct Dial {
    /// TLS: the rustls client configuration (`fubar_ssl::client_config`) and the name the
    /// server's certificate must carry.
    pub tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    /// WebSocket: the host and path of the upgrade request (`ws://HOST/PATH`).
    pub ws: Option<(String, String)>,
}

impl std::fmt::Debug for Dial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dial")
            .field("server_name", &self.tls.as_ref().map(|t| &t.1))
            .field("ws", &self.ws)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ClientReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientReader").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ClientWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientWriter").finish_non_exhaustive()
    }
}

/// Opens a TCP (or, with `tls`, TLS) connection to `addr`, split into halves.
pub async fn open(
    addr: SocketAddr,
    tls: Option<&Dial>,
) -> io::Result<(ClientReader, ClientWriter)> {
    open_on(TcpStream::connect(addr).await?, tls).await
}

/// Splits a connected stream (made TLS with `tls`) into halves.
pub async fn open_on(
    stream: TcpStream,
    tls: Option<&Dial>,
) -> io::Result<(ClientReader, ClientWriter)> {
    stream.set_nodelay(true)?;
    type Halves = (
        Box<dyn AsyncRead + Unpin + Send>,
        Box<dyn AsyncWrite + Unpin + Send>,
    );
    fn halves<S: AsyncRead + AsyncWrite + Send + 'static>(s: S) -> Halves {
        let (r, w) = tokio::io::split(s);
        (Box::new(r), Box::new(w))
    }
    let (r, w): Halves = match tls {
        None => {
            let (r, w) = stream.into_split();
            (Box::new(r), Box::new(w))
        }
        Some(dial) => match (&dial.tls, &dial.ws) {
            (None, None) => halves(stream),
            (None, Some(ws)) => halves(ws_upgrade(stream, ws).await?),
            (Some((config, name)), ws) => {
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                let tls = connector.connect(name.clone(), stream).await?;
                match ws {
                    None => halves(tls),
                    Some(ws) => halves(ws_upgrade(tls, ws).await?),
                }
            }
        },
    };
    Ok((
        ClientReader {
            receive_maximum: u16::MAX,
            version: ProtocolVersion::V311,
            stream: r,
            buf: BytesMut::with_capacity(4096),
        },
        ClientWriter {
            version: ProtocolVersion::V311,
            stream: w,
            buf: BytesMut::with_capacity(4096),
            unencodable: None,
        },
    ))
}

/// The WebSocket upgrade (subprotocol `mqtt`) on a connected stream.
async fn ws_upgrade<S>(stream: S, (host, path): &(String, String)) -> io::Result<WsIo<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let other = |e: &dyn std::fmt::Display| io::Error::other(format!("websocket: {e}"));
    let mut request = format!("ws://{host}{path}")
        .into_client_request()
        .map_err(|e| other(&e))?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        tokio_tungstenite::tungstenite::http::HeaderValue::from_static("mqtt"),
    );
    let (ws, _) =
        tokio_tungstenite::client_async_with_config(request, stream, Some(config(MAX_PACKET)))
            .await
            .map_err(|e| other(&e))?;
    Ok(WsIo::new(ws))
}

/// Connects to `addr` (over TLS with `tls`), sends CONNECT (protocol `version`) for
/// `client_id` and waits for CONNACK 0.
pub async fn connect(
    addr: SocketAddr,
    tls: Option<&Dial>,
    version: ProtocolVersion,
    client_id: &str,
    clean_session: bool,
    keep_alive: u16,
) -> io::Result<(ClientReader, ClientWriter, bool)> {
    let connect = connect_packet(version, client_id, clean_session, keep_alive);
    connect_with(addr, tls, connect).await
}

/// A plain CONNECT (no credentials, no will) in protocol `version`. In MQTT 5.0 a session
/// that is not clean is kept while away for as long as the server allows (a session expiry
/// interval of 0xFFFFFFFF, MQTT 5.0 3.1.2.11.2), as 3.1.1 keeps it: the same client then
/// behaves the same in both versions.
pub fn connect_packet(
    version: ProtocolVersion,
    client_id: &str,
    clean_session: bool,
    keep_alive: u16,
) -> Connect {
    Connect {
        protocol: version,
        clean_session,
        keep_alive,
        client_id: client_id.to_owned(),
        will: None,
        username: None,
        password: None,
        properties: Properties {
            session_expiry_interval: (version.is_v5() && !clean_session).then_some(u32::MAX),
            ..Properties::default()
        },
    }
}

/// Connects with a CONNECT of the caller's (credentials, will, protocol) and waits for
/// CONNACK 0; returns the halves and the session-present flag.
pub async fn connect_with(
    addr: SocketAddr,
    tls: Option<&Dial>,
    connect: Connect,
) -> io::Result<(ClientReader, ClientWriter, bool)> {
    connect_on(TcpStream::connect(addr).await?, tls, connect).await
}

/// As `connect_with`, on a stream the caller connected (from a chosen source address, say).
pub async fn connect_on(
    stream: TcpStream,
    tls: Option<&Dial>,
    connect: Connect,
) -> io::Result<(ClientReader, ClientWriter, bool)> {
    let (mut reader, mut writer) = open_on(stream, tls).await?;
    reader.version = connect.protocol;
    writer.version = connect.protocol;
    writer.push(&Packet::Connect(Box::new(connect)));
    writer.flush().await?;
    match reader.next().await? {
        Packet::ConnAck(a) if a.code == ConnectReturnCode::Accepted => {
            if let Some(n) = a.properties.receive_maximum {
                reader.receive_maximum = n;
            }
            Ok((reader, writer, a.session_present))
        }
        Packet::ConnAck(a) if reader.version.is_v5() => {
            Err(io::Error::other(format!("connection refused: {}", a.code)))
        }
        Packet::ConnAck(a) => Err(io::Error::other(format!(
            "connection refused: {:?}",
            a.code.connect_return_code()
        ))),
        other => Err(io::Error::other(format!(
            "expected CONNACK, got {}",
            other.kind()
        ))),
    }
}

/// Whether a SUBACK granted every filter (3.1.1 refuses with 0x80, MQTT 5.0 with any code
/// from 0x80 up).
pub fn granted(codes: &[SubAckCode]) -> bool {
    codes.iter().all(|c| matches!(c, SubAckCode::Granted(_)))
}

impl ClientReader {
    /// Most QoS 1/2 publishes the server lets this client have unacknowledged (its MQTT 5.0
    /// receive maximum; 65,535 when it gave none).
    pub fn receive_maximum(&self) -> u16 {
        self.receive_maximum
    }

    /// The next packet from the broker. Cancel-safe: bytes read stay buffered.
    pub async fn next(&mut self) -> io::Result<Packet> {
        loop {
            if let Some(p) = self.try_next()? {
                return Ok(p);
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// The next packet already read, without waiting for more bytes: lets a caller answer a
    /// whole read's worth of packets with one write.
    pub fn try_next(&mut self) -> io::Result<Option<Packet>> {
        decode(&mut self.buf, MAX_PACKET, self.version)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

impl ClientWriter {
    /// Buffers a packet. One that cannot be put on the wire is not buffered, and the next
    /// [`flush`](Self::flush) fails with why.
    pub fn push(&mut self, packet: &Packet) {
        if let Err(e) = try_encode(packet, self.version, &mut self.buf) {
            self.unencodable
                .get_or_insert_with(|| format!("cannot send {}: {e}", packet.kind()));
        }
    }

    /// Bytes buffered and not yet written.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Writes everything buffered; fails if a packet pushed since the last flush could not
    /// be encoded.
    pub async fn flush(&mut self) -> io::Result<()> {
        if let Some(why) = self.unencodable.take() {
            self.buf.clear();
            return Err(io::Error::new(io::ErrorKind::InvalidInput, why));
        }
        self.stream.write_all_buf(&mut self.buf).await
    }
}
