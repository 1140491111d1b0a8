//! A small async MQTT client over fubar's own codec, for the tools.

use std::io;
use std::net::SocketAddr;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::mqtt::decode::decode;
use crate::mqtt::encode::encode;
use crate::mqtt::packet::{Connect, ConnectReturnCode, Packet, ProtocolVersion};

/// Largest packet the tools accept from a broker.
const MAX_PACKET: usize = 16 << 20;

/// The reading half of a client connection.
#[derive(Debug)]
pub struct ClientReader {
    stream: OwnedReadHalf,
    buf: BytesMut,
}

/// The writing half of a client connection; packets are buffered until `flush`.
#[derive(Debug)]
pub struct ClientWriter {
    stream: OwnedWriteHalf,
    buf: BytesMut,
}

/// Connects to `addr`, sends CONNECT for `client_id` and waits for CONNACK 0.
pub async fn connect(
    addr: SocketAddr,
    client_id: &str,
    clean_session: bool,
    keep_alive: u16,
) -> io::Result<(ClientReader, ClientWriter, bool)> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (r, w) = stream.into_split();
    let mut reader = ClientReader {
        stream: r,
        buf: BytesMut::with_capacity(64 << 10),
    };
    let mut writer = ClientWriter {
        stream: w,
        buf: BytesMut::with_capacity(64 << 10),
    };
    writer.push(&Packet::Connect(Connect {
        protocol: ProtocolVersion::V311,
        clean_session,
        keep_alive,
        client_id: client_id.to_owned(),
        will: None,
        username: None,
        password: None,
    }));
    writer.flush().await?;
    match reader.next().await? {
        Packet::ConnAck(a) if a.code == ConnectReturnCode::Accepted => {
            Ok((reader, writer, a.session_present))
        }
        Packet::ConnAck(a) => Err(io::Error::other(format!(
            "connection refused: {:?}",
            a.code
        ))),
        other => Err(io::Error::other(format!(
            "expected CONNACK, got {}",
            other.kind()
        ))),
    }
}

impl ClientReader {
    /// The next packet from the broker.
    pub async fn next(&mut self) -> io::Result<Packet> {
        loop {
            match decode(&mut self.buf, MAX_PACKET) {
                Ok(Some(p)) => return Ok(p),
                Ok(None) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }
}

impl ClientWriter {
    /// Buffers a packet.
    pub fn push(&mut self, packet: &Packet) {
        encode(packet, &mut self.buf);
    }

    /// Bytes buffered and not yet written.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Writes everything buffered.
    pub async fn flush(&mut self) -> io::Result<()> {
        self.stream.write_all_buf(&mut self.buf).await
    }
}
