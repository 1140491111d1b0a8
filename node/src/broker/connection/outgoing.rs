//! What goes to the client: messages the session has queued (within the write budget, the
//! client's maximum packet size and its topic aliases), and every packet's encoding into the
//! write buffer, logged as it goes.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};

use super::publish::trace_hop;
use super::{packet_log, Connection};
use crate::mqtt::encode::{try_encode, try_encode_plain_publish, EncodeError, PlainPublish};
use crate::mqtt::message::Message;
use crate::mqtt::packet::{Packet, QoS};

impl<R, W> Connection<R, W>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    /// Moves queued messages from the session into the write buffer, up to `limit` bytes.
    /// Each is encoded as it leaves the session's queue, under the session's lock: no batch
    /// of packets is built and read back (a PUBLISH is 336 bytes; the copies were a tenth of
    /// the fan-out's CPU), and the socket is written only after this returns, once what went
    /// in flight is submitted.
    pub(super) fn fill_from_session(&mut self, now: Instant, limit: usize) {
        let traced = self.traced();
        let Self {
            client,
            wbuf,
            proto,
            broker,
            peer,
            conn_id,
            ..
        } = self;
        let Some(client) = client.as_ref() else {
            return;
        };
        let logged = packet_log::Logged {
            sink: broker.packet_sink(),
            client: Some(&client.id),
            peer: *peer,
            version: proto.protocol(),
            traced,
        };
        let v5 = proto.protocol().is_v5();
        let plain = !v5 && packet_log::quiet(&logged);
        let mut too_large = Vec::new();
        // Counted once per batch: a shared counter bumped per message bounces between cores.
        let mut sent = [0u64; 3];
        let expired = {
            let mut slot = client.handle.lock();
            if !slot.is_owned_by(*conn_id) {
                // Taken over: what is queued now belongs to the new connection, which has
                // already collected what this one had in flight. A wake-up this connection
                // took was meant for it: passed on, since `deliver` wakes only an empty queue.
                client.handle.notify.notify_one();
                return;
            }
            let mut budget = limit.saturating_sub(wbuf.len());
            while budget > 0 {
                let Some(out) = slot.session.poll_outgoing(now) else {
                    break;
                };
                let message = &out.delivery.message;
                if let Some(at) = message.sampled_at {
                    let latency = now.saturating_duration_since(at);
                    broker.stats.delivery_latency.record(latency);
                }
                budget = budget.saturating_sub(message.payload.len() + message.topic.len() + 8);
                if plain {
                    // A 3.1/3.1.1 PUBLISH that no log records: written from the message's
                    // parts, no packet built.
                    let (qos, packet_id) = (out.delivery.qos, out.packet_id);
                    let publish = PlainPublish {
                        topic: &message.topic,
                        payload: &message.payload,
                        qos,
                        retain: out.delivery.retain,
                        dup: false,
                        packet_id,
                    };
                    let before = wbuf.len();
                    match try_encode_plain_publish(&publish, wbuf) {
                        Ok(()) => {
                            sent[qos as usize] += 1;
                            packet_log::sent_bytes(logged.peer, &wbuf[before..]);
                        }
                        Err(error) => not_encoded(&logged, "PUBLISH", &error),
                    }
                    if let Some(mark) = &message.trace {
                        trace_hop(mark, "sent", &message.topic, &client.id, 1);
                    }
                    continue;
                }
                let p = out.publish(now);
                let message = out.delivery.message.clone();
                let (qos, packet_id) = (p.qos, p.packet_id);
                let packet = if v5 {
                    match proto.flow.outgoing_publish(p, true) {
                        Ok(packet) => packet,
                        Err(size) => {
                            // Larger than the client accepts: dropped as if delivered (MQTT
                            // 5.0 3.1.2.11.4, MQTT-3.1.2-25).
                            if qos != QoS::AtMostOnce {
                                slot.session.discard_inflight(packet_id);
                            }
                            too_large.push((message.topic.clone(), qos, size));
                            continue;
                        }
                    }
                } else {
                    Packet::Publish(p)
                };
                sent[qos as usize] += 1;
                write_packet(wbuf, &packet, &logged);
                if let Some(mark) = &message.trace {
                    trace_hop(mark, "sent", &message.topic, &client.id, 1);
                }
            }
            let expired = slot.session.take_expired();
            // What went in flight (and expired) is written before the packets leave.
            slot.submit_or_log("delivery state");
            expired
        };
        broker.stats.record_sent_batch(sent);
        let client_id = client.id.clone();
        self.note_expired(&client_id, &expired);
        for (topic, qos, size) in too_large {
            self.report_too_large(&topic, qos, size);
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
        let traced = self.traced();
        let Self {
            wbuf,
            broker,
            client,
            peer,
            proto,
            ..
        } = self;
        let logged = packet_log::Logged {
            sink: broker.packet_sink(),
            client: client.as_ref().map(|c| &c.id),
            peer: *peer,
            version: proto.protocol(),
            traced,
        };
        write_packet(wbuf, packet, &logged);
    }
}

/// Encodes `packet` into `wbuf` and logs it (the `packet` class and its raw bytes). One the
/// connection's version cannot carry is a broker bug, not the client's: it is left out, and
/// the `error` class says so.
fn write_packet(wbuf: &mut BytesMut, packet: &Packet, logged: &packet_log::Logged<'_>) {
    let before = wbuf.len();
    if let Err(error) = try_encode(packet, logged.version, wbuf) {
        return not_encoded(logged, packet.kind(), &error);
    }
    let size = wbuf.len() - before;
    packet_log::sent(logged, packet, size);
    packet_log::sent_bytes(logged.peer, &wbuf[before..]);
}

/// A packet the connection's version cannot carry: a broker bug, not the client's. The
/// connection goes on without it, and the `error` class says so.
fn not_encoded(logged: &packet_log::Logged<'_>, kind: &str, error: &EncodeError) {
    let client = logged.client.map_or("-", |c| &**c);
    tracing::error!(target: "error", client, peer = %logged.peer, kind,
        %error, "packet not sent: it cannot be encoded");
}
