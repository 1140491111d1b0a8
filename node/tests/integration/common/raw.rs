//! Raw MQTT bytes: packets written byte by byte, and a client that reads them back with
//! fubar's own decoder.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use fubar::mqtt::decode::decode;
use fubar::mqtt::packet::{Packet, ProtocolVersion};

/// A client that writes raw bytes and reads packets with fubar's own decoder.
pub struct RawClient {
    stream: TcpStream,
    buf: BytesMut,
}

impl RawClient {
    /// Connects a TCP socket (no MQTT yet).
    pub fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).expect("tcp connect");
        stream.set_nodelay(true).unwrap();
        Self {
            stream,
            buf: BytesMut::new(),
        }
    }

    /// Writes bytes (errors ignored: the broker may have closed already).
    pub fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    /// Reads the next packet, or `None` if the connection closed or `timeout` passed.
    pub fn read_packet(&mut self, timeout: Duration) -> Option<Packet> {
        self.read_packet_of(ProtocolVersion::V311, timeout)
    }

    /// `read_packet`, decoding packets of protocol `version`.
    pub fn read_packet_of(
        &mut self,
        version: ProtocolVersion,
        timeout: Duration,
    ) -> Option<Packet> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(p)) = decode(&mut self.buf, 1 << 28, version) {
                return Some(p);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => return None,
            }
        }
    }

    /// True when the broker closes the connection within `timeout` (packets before the
    /// close are skipped).
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }
}

/// CONNECT bytes for MQTT 3.1.1 with a client id, clean session, keep-alive 60.
pub fn connect_v311(client_id: &str) -> Vec<u8> {
    connect_packet(4, 0b10, client_id)
}

/// CONNECT bytes, written byte by byte: protocol `level` (4: 3.1.1; 5: 5.0, with no
/// properties), connect `flags` (0b10: clean session), keep-alive 60, the client id and
/// nothing else (the flags must not ask for a will, a user name or a password).
pub fn connect_packet(level: u8, flags: u8, client_id: &str) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', level, flags, 0, 60];
    if level == 5 {
        body.push(0);
    }
    body.extend(string(client_id));
    frame(0x10, &body)
}

/// A variable byte integer (MQTT 5.0 1.5.5), for tests that write packets byte by byte.
pub fn varint(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            return out;
        }
    }
}

/// A packet written byte by byte: the first byte, the remaining length, the body.
pub fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    out.extend(varint(body.len()));
    out.extend_from_slice(body);
    out
}

/// A length-prefixed MQTT string (the bytes need not be valid UTF-8).
pub fn string(s: impl AsRef<[u8]>) -> Vec<u8> {
    let s = s.as_ref();
    let mut out = (s.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(s);
    out
}

/// Reads one whole packet (first byte and body) from a raw socket, within the socket's own
/// read timeout.
pub fn read_frame(s: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut first = [0u8; 1];
    s.read_exact(&mut first)?;
    let (mut len, mut shift) = (0usize, 0);
    loop {
        let mut b = [0u8; 1];
        s.read_exact(&mut b)?;
        len |= ((b[0] & 0x7F) as usize) << shift;
        shift += 7;
        if b[0] & 0x80 == 0 {
            break;
        }
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    Ok((first[0], body))
}

/// `n` QoS 0 PUBLISH packets (MQTT 3.1.1) to `topic`, payloads "0", "1", ..., back to back.
pub fn qos0_burst(topic: &str, n: usize) -> BytesMut {
    use fubar::mqtt::packet::{Publish, QoS};
    let mut burst = BytesMut::new();
    for i in 0..n {
        let publish = Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: Arc::from(topic),
            packet_id: 0,
            payload: Bytes::from(i.to_string()),
            properties: Default::default(),
        };
        encode(&Packet::Publish(publish), ProtocolVersion::V311, &mut burst);
    }
    burst
}

/// Appends a packet the test built, which must fit on the wire.
pub fn encode(packet: &Packet, version: ProtocolVersion, out: &mut BytesMut) {
    fubar::mqtt::encode::try_encode(packet, version, out).expect("a test packet encodes");
}
