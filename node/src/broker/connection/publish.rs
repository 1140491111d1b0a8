//! A client's PUBLISH the protocol core let through (`Event::Publish`): the topic rules, the
//! retained store's bounds, QoS 2 packet ids, routing, and the acknowledgement that waits for
//! the message to be durable.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite};

use super::super::limits;
use super::super::tracer::now_us;
use super::Connection;
use crate::broker::publish::{Origin, Published};
use crate::mqtt::connection::CloseReason;
use crate::mqtt::message::{Message, TraceMark};
use crate::mqtt::packet::{Publish, QoS};
use crate::mqtt::reason::ReasonCode;

impl<R, W> Connection<R, W>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    /// Routes a client's PUBLISH and acknowledges it (QoS 1/2) once its message is safe.
    pub(super) fn handle_publish(&mut self, now: Instant, p: Publish) -> Result<(), CloseReason> {
        if !self.publish_allowed(&p) {
            return Ok(());
        }
        if !self.admit_retained(now, &p) {
            return Ok(());
        }
        // A QoS 2 packet id is stored with the message: if either write fails, the message
        // is not safe (a resend after a restart would be taken for a new message, or lost).
        let (fresh, mut store_error) = match p.qos {
            QoS::ExactlyOnce => self.receive_qos2(p.packet_id),
            _ => (true, None),
        };
        let (ticket, copies, matched) = if fresh {
            let routed = self.route(Message::from_publish(&p), now);
            self.woke_sessions |= routed.delivered > 0;
            store_error = store_error.or(routed.store_error);
            (routed.ticket, routed.copies, routed.matched)
        } else {
            (0, None, true)
        };
        match (self.proto.publish_ack(&p, matched), store_error) {
            (Some(ack), None) => self.acknowledge(ack, ticket, copies, &p.topic),
            (Some(ack), Some(error)) => {
                if self.pending_acks.is_empty() {
                    self.refuse_unstored(ack, &p.topic, &error)?;
                } else {
                    // In its turn, after the acknowledgements waiting before it.
                    self.acknowledge_refused(ack, &p.topic, error);
                }
            }
            // QoS 0 has nothing to refuse: the failure is reported all the same.
            (None, Some(error)) => {
                tracing::error!(target: "error", client = self.client_id().unwrap_or("-"),
                    peer = %self.peer, topic = %p.topic, error = %error, "message not stored");
            }
            (None, None) => {}
        }
        Ok(())
    }

    /// Records a QoS 2 packet id as received (written to the store for a persistent
    /// session): whether the message is new, and why the write failed if it did.
    fn receive_qos2(&self, packet_id: u16) -> (bool, Option<Arc<str>>) {
        let Some(c) = &self.client else {
            return (true, None);
        };
        let mut slot = c.handle.lock();
        let fresh = slot.session.receive_qos2(packet_id);
        let error = slot.submit().err().map(|e| e.to_string().into());
        (fresh, error)
    }

    /// Whether a retained PUBLISH may go on. Beyond a bound of the retained store an MQTT
    /// 5.0 PUBLISH is refused whole (PUBACK/PUBREC 0x97, not routed); a 3.1.1 client cannot
    /// be told, so its message is delivered and only not retained (the store refuses it).
    fn admit_retained(&mut self, now: Instant, p: &Publish) -> bool {
        if !p.retain || p.payload.is_empty() {
            return true;
        }
        let Err(why) = self.broker.retained.admits(&p.topic, p.payload.len(), now) else {
            return true;
        };
        let v5 = self.proto.protocol().is_v5();
        let client = self.client_id().unwrap_or("-");
        limits::retained_refused(client, self.peer, &p.topic, p.payload.len(), why, !v5);
        if !v5 {
            return true;
        }
        self.refuse_publish_v5(p, ReasonCode::QuotaExceeded, || why.to_string());
        false
    }

    /// Answers an MQTT 5.0 PUBLISH that is not routed with PUBACK/PUBREC `reason` and a reason
    /// string (nothing for QoS 0), in its turn among the acknowledgements.
    pub(super) fn refuse_publish_v5(
        &mut self,
        p: &Publish,
        reason: ReasonCode,
        why: impl FnOnce() -> String,
    ) {
        if let Some(ack) = self.proto.refuse_publish(p, reason, why) {
            self.acknowledge(ack, 0, None, &p.topic);
        }
    }

    /// Routes a message: the durability ticket its acknowledgement must wait for (0 when no
    /// copy went to the store), how many sessions here it was queued for, and whether any
    /// subscriber, here or on another node, matched it.
    pub(super) fn route(&self, message: Message, now: Instant) -> RouteOutcome {
        // Its message expiry interval counts from now (MQTT 5.0 3.3.2.3.3).
        let mut message = message.expiring_from(now);
        let b = &self.broker;
        let topic = message.topic.clone();
        let publisher = self.client_id().unwrap_or("-");
        if b.tracer.client_traced(publisher) || b.tracer.topic_traced(&topic) {
            let mark = Arc::new(TraceMark {
                origin_us: now_us(),
                origin_client: publisher.into(),
                via: vec![self.settings.node.name.as_str().into()],
            });
            trace_hop(&mark, "received", &topic, publisher, 1);
            message.trace = Some(mark);
        }
        let mark = message.trace.clone();
        if let Some(client) = &self.client {
            message.publisher = Some(client.id.clone());
        }
        // A retained message is never sampled: the copy the retained store holds would
        // carry its stamp to every later subscriber.
        let every = self.settings.http.latency_sample_every;
        let n = self.routed.load(Ordering::Relaxed);
        self.routed.store(n + 1, Ordering::Relaxed);
        if every > 0 && !message.retain && n.is_multiple_of(every) {
            message.sampled_at = Some(Instant::now());
        }
        let copies_after = b.gate.as_ref().map_or(0, |g| g.last());
        let Published { routed, matched } =
            b.publish(Arc::new(message), Origin::Client(self.client_id()));
        let copies_upto = b.gate.as_ref().map_or(0, |g| g.last());
        if let Some(mark) = &mark {
            trace_hop(mark, "routed", &topic, publisher, routed.delivered);
        }
        let ticket = match &b.store {
            Some(store) if routed.stored => store.ticket(),
            _ => 0,
        };
        RouteOutcome {
            ticket,
            copies: (copies_upto > copies_after).then_some((copies_after, copies_upto)),
            delivered: routed.delivered,
            matched,
            store_error: routed.store_error,
        }
    }
}

/// What routing one message did, for its publisher's acknowledgement.
pub(super) struct RouteOutcome {
    /// The store's durability ticket the acknowledgement waits for (0: none).
    pub(super) ticket: u64,
    /// The tickets of copies on other members it made, `(after, upto]` (`AckGate`).
    pub(super) copies: Option<(u64, u64)>,
    /// Sessions on this node it was queued for.
    pub(super) delivered: usize,
    /// Whether any subscriber matched it, on this node or another.
    pub(super) matched: bool,
    /// The first store write for it that failed: it must not be acknowledged as safe.
    pub(super) store_error: Option<Arc<str>>,
}

/// One hop of a traced message: where it is, and how long since it was received.
pub(super) fn trace_hop(mark: &TraceMark, hop: &str, topic: &str, client: &str, count: usize) {
    let latency_us = now_us().saturating_sub(mark.origin_us);
    let via: Vec<&str> = mark.via.iter().map(|n| &**n).collect();
    tracing::info!(target: "trace", hop, topic, client, from = %mark.origin_client,
        origin_us = mark.origin_us, latency_us, count, via = %via.join(">"), "message hop");
}
