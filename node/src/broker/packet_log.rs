//! The `protocol` and `packet` log events of a connection: every packet decoded or encoded,
//! and the raw bytes (hex, capped) when the `packet` class is on.

use std::fmt::Write as _;
use std::net::SocketAddr;

use super::retained::RetainChange;
use crate::mqtt::packet::Packet;

/// Most raw bytes shown in one `packet` event.
const HEX_CAP: usize = 64;

/// A packet received from a client; `traced` also puts it in the `trace` class.
pub(crate) fn received(
    client: Option<&str>,
    peer: SocketAddr,
    packet: &Packet,
    size: usize,
    traced: bool,
) {
    log("in", client, peer, packet, size, traced);
}

/// A packet sent to a client; `traced` also puts it in the `trace` class.
pub(crate) fn sent(
    client: Option<&str>,
    peer: SocketAddr,
    packet: &Packet,
    size: usize,
    traced: bool,
) {
    log("out", client, peer, packet, size, traced);
}

/// One decoded-packet event in the class `$target` (a literal: tracing targets are static).
macro_rules! packet_event {
    ($target:literal, $dir:expr, $client:expr, $peer:expr, $packet:expr, $size:expr) => {{
        let (dir, client, peer, size) = ($dir, $client, $peer, $size);
        let kind = $packet.kind();
        match $packet {
            Packet::Publish(p) => tracing::debug!(target: $target, dir, client, %peer, kind,
                packet_id = p.packet_id, topic = %p.topic, qos = p.qos as u8, retain = p.retain,
                dup = p.dup, payload_size = p.payload.len(), size, "packet"),
            Packet::Connect(c) => tracing::debug!(target: $target, dir, client, %peer, kind,
                protocol = %c.protocol, client_id = %c.client_id, clean_session = c.clean_session,
                keep_alive = c.keep_alive, will = c.will.is_some(),
                user = c.username.as_deref().unwrap_or(""), size, "packet"),
            Packet::ConnAck(a) => tracing::debug!(target: $target, dir, client, %peer, kind,
                code = a.code.connect_return_code() as u8, session_present = a.session_present, size, "packet"),
            Packet::Subscribe(s) => tracing::debug!(target: $target, dir, client, %peer, kind,
                packet_id = s.packet_id, filters = ?s.filters, size, "packet"),
            Packet::SubAck(s) => tracing::debug!(target: $target, dir, client, %peer, kind,
                packet_id = s.packet_id, codes = ?s.codes, size, "packet"),
            Packet::Unsubscribe(u) => tracing::debug!(target: $target, dir, client, %peer, kind,
                packet_id = u.packet_id, filters = ?u.filters, size, "packet"),
            other => tracing::debug!(target: $target, dir, client, %peer, kind,
                packet_id = other.packet_id(), size, "packet"),
        }
    }};
}

fn log(
    dir: &str,
    client: Option<&str>,
    peer: SocketAddr,
    packet: &Packet,
    size: usize,
    traced: bool,
) {
    let client = client.unwrap_or("-");
    if tracing::enabled!(target: "protocol", tracing::Level::DEBUG) {
        packet_event!("protocol", dir, client, peer, packet, size);
    }
    if traced {
        packet_event!("trace", dir, client, peer, packet, size);
    }
}

/// Raw bytes moved on a socket.
pub(crate) fn bytes(dir: &str, peer: SocketAddr, data: &[u8]) {
    if !tracing::enabled!(target: "packet", tracing::Level::TRACE) {
        return;
    }
    let mut hex = String::with_capacity(2 * HEX_CAP.min(data.len()));
    for b in data.iter().take(HEX_CAP) {
        let _ = write!(hex, "{b:02x}");
    }
    tracing::trace!(target: "packet", dir, %peer, size = data.len(), hex, truncated = data.len() > HEX_CAP);
}

/// A retained message set or cleared by a publish.
pub(crate) fn retained(client: Option<&str>, topic: &str, change: RetainChange) {
    let client = client.unwrap_or("-");
    match change {
        RetainChange::Set => {
            tracing::info!(target: "resource", client, topic, "retained message set")
        }
        RetainChange::Cleared => {
            tracing::info!(target: "resource", client, topic, "retained message cleared")
        }
        RetainChange::Unchanged => {}
    }
}
