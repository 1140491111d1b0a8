//! What goes to the client: messages the session has queued (within the write budget, the
//! client's maximum packet size and its topic aliases), and every packet's encoding into the
//! write buffer, logged as it goes.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite};

use super::publish::trace_hop;
use super::{packet_log, Connection};
use crate::mqtt::encode::try_encode;
use crate::mqtt::message::Message;
use crate::mqtt::packet::{Packet, QoS};

/// Most packets one `fill_from_session` reserves room for at once (the write budget decides
/// how many it takes).
const FILL_BATCH: usize = 256;

impl<R, W> Connection<R, W>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    /// Moves queued messages from the session into the write buffer, up to `limit` bytes.
    pub(super) fn fill_from_session(&mut self, now: Instant, limit: usize) {
        let Some(client) = &self.client else { return };
        let mut too_large = Vec::new();
        let v5 = self.proto.protocol().is_v5();
        let mut out;
        let expired = {
            let mut slot = client.handle.lock();
            if !slot.is_owned_by(self.conn_id) {
                // Taken over: what is queued now belongs to the new connection, which has
                // already collected what this one had in flight.
                return;
            }
            // Room for what is queued, up to a turn's worth: one allocation, no regrowth.
            out = Vec::with_capacity(slot.session.queued().min(FILL_BATCH));
            let mut budget = limit.saturating_sub(self.wbuf.len());
            while budget > 0 {
                let Some((p, message)) = slot.session.poll_send(now) else {
                    break;
                };
                if let Some(at) = message.sampled_at {
                    let latency = now.saturating_duration_since(at);
                    self.broker.stats.delivery_latency.record(latency);
                }
                budget = budget.saturating_sub(p.payload.len() + p.topic.len() + 8);
                if !v5 {
                    out.push((Packet::Publish(p), message.trace.clone()));
                    continue;
                }
                let (qos, packet_id) = (p.qos, p.packet_id);
                match self.proto.flow.outgoing_publish(p, true) {
                    Ok(packet) => out.push((packet, message.trace.clone())),
                    Err(size) => {
                        // Larger than the client accepts: dropped as if delivered (MQTT 5.0
                        // 3.1.2.11.4, MQTT-3.1.2-25).
                        if qos != QoS::AtMostOnce {
                            slot.session.discard_inflight(packet_id);
                        }
                        too_large.push((message.topic.clone(), qos, size));
                    }
                }
            }
            let expired = slot.session.take_expired();
            // What went in flight (and expired) is written before the packets leave.
            slot.submit_or_log("delivery state");
            expired
        };
        self.note_expired(&client.id, &expired);
        for (topic, qos, size) in too_large {
            self.report_too_large(&topic, qos, size);
        }
        for (p, mark) in &out {
            if let Packet::Publish(p) = p {
                self.broker.stats.record_sent(p.qos);
            }
            self.send(p);
            if let (Some(mark), Packet::Publish(p)) = (mark, p) {
                trace_hop(mark, "sent", &p.topic, self.client_id().unwrap_or("-"), 1);
            }
        }
    }

    /// Counts and logs the messages the session dropped because their expiry interval had
    /// passed before they could be sent (MQTT-3.3.2-5).
    fn note_expired(&self, client: &str, expired: &[Arc<Message>]) {
        if expired.is_empty() {
            return;
        }
        self.broker
            .stats
            .messages_expired
            .fetch_add(expired.len() as u64, Ordering::Relaxed);
        for m in expired {
            tracing::debug!(target: "resource", client, topic = %m.topic, qos = m.qos as u8,
                expiry_secs = m.properties.message_expiry_secs.unwrap_or(0),
                "message expired in the session queue: dropped");
        }
    }

    /// A PUBLISH not sent: larger than the client's maximum packet size.
    pub(super) fn report_too_large(&self, topic: &str, qos: QoS, size: usize) {
        self.broker
            .stats
            .messages_too_large
            .fetch_add(1, Ordering::Relaxed);
        let client = self.client_id().unwrap_or("-");
        let max = self.proto.flow.client_max_packet().unwrap_or(0);
        tracing::warn!(target: "warning", client, peer = %self.peer, topic, qos = qos as u8, size, max,
            "message discarded: larger than the client's maximum packet size (MQTT-3.1.2-25)");
    }

    /// Encodes a packet into the write buffer, within the client's maximum packet size.
    pub(super) fn send(&mut self, packet: &Packet) {
        if let Some(size) = self.proto.flow.oversize(packet, self.proto.protocol()) {
            // Reason string and user properties are left out to fit (MQTT-3.1.2-24); a
            // packet that still does not fit is not sent.
            match self.proto.flow.fit(packet.clone(), self.proto.protocol()) {
                Ok(fitted) => return self.send(&fitted),
                Err(_) => {
                    let client = self.client_id().unwrap_or("-").to_owned();
                    tracing::warn!(target: "warning", client, peer = %self.peer, kind = packet.kind(),
                        size, max = self.proto.flow.client_max_packet().unwrap_or(0),
                        "packet not sent: larger than the client's maximum packet size (MQTT-3.1.2-24)");
                    return;
                }
            }
        }
        let before = self.wbuf.len();
        if let Err(error) = try_encode(packet, self.proto.protocol(), &mut self.wbuf) {
            // Not a packet this connection's version can carry (a broker bug, not the
            // client's): the connection goes on without it, and the log says so.
            let client = self.client_id().unwrap_or("-").to_owned();
            tracing::error!(target: "error", client, peer = %self.peer, kind = packet.kind(),
                %error, "packet not sent: it cannot be encoded");
            return;
        }
        let size = self.wbuf.len() - before;
        packet_log::sent(&self.logged(), packet, size);
        packet_log::sent_bytes(self.peer, &self.wbuf[before..]);
    }
}
