//! The state of one client's session, sans-IO.
//!
//! A session outlives connections when the client asked for a persistent one (clean session
//! 0). It holds the client's subscriptions, the bounded queue of messages waiting to be sent,
//! the in-flight window of QoS 1/2 messages sent but not yet acknowledged, and the packet ids of
//! QoS 2 messages received but not yet released.
//!
//! ### Invariants
//! - `queue` holds at most `limits.max_queued_messages` entries and `queued_bytes` (the sum of
//!   their `Message::cost`) stays within `limits.max_queued_bytes`, except that one message is
//!   always accepted into an empty queue. Overflow drops the oldest queued entries.
//! - `inflight` holds at most `limits.inflight_window` entries, in the order they were sent,
//!   with distinct packet ids; QoS 0 messages never enter it.
//! - Messages leave the queue in the order they entered it, so delivery is in order per topic.

use std::collections::{HashMap, HashSet, VecDeque};

use super::message::{Delivery, SubscriptionOptions};
use super::packet::{Packet, Publish, QoS};

/// The bounds of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Most messages waiting in the queue (not counting in-flight ones).
    pub max_queued_messages: usize,
    /// Most bytes (topic + payload) waiting in the queue.
    pub max_queued_bytes: usize,
    /// Most QoS 1/2 messages sent and not yet acknowledged.
    pub inflight_window: usize,
}

/// Where an outgoing QoS 1/2 message stands in its acknowledgement flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)] // the names follow the packet each state waits for
enum InflightState {
    /// QoS 1 sent, waiting for PUBACK.
    AwaitingPubAck,
    /// QoS 2 sent, waiting for PUBREC.
    AwaitingPubRec,
    /// QoS 2 PUBREL sent, waiting for PUBCOMP.
    AwaitingPubComp,
}

#[derive(Debug, Clone)]
struct Inflight {
    packet_id: u16,
    delivery: Delivery,
    state: InflightState,
}

/// What `Session::enqueue` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[must_use]
pub struct Enqueued {
    /// How many older messages were dropped to make room.
    pub dropped: usize,
}

/// One client's session.
#[derive(Debug)]
pub struct Session {
    limits: SessionLimits,
    subscriptions: HashMap<String, SubscriptionOptions>,
    queue: VecDeque<Delivery>,
    queued_bytes: usize,
    inflight: VecDeque<Inflight>,
    awaiting_pubrel: HashSet<u16>,
    next_packet_id: u16,
    dropped_total: u64,
}

impl Session {
    /// A new, empty session.
    pub fn new(limits: SessionLimits) -> Self {
        Self {
            limits,
            subscriptions: HashMap::new(),
            queue: VecDeque::new(),
            queued_bytes: 0,
            inflight: VecDeque::new(),
            awaiting_pubrel: HashSet::new(),
            next_packet_id: 1,
            dropped_total: 0,
        }
    }

    /// Adds or replaces a subscription; returns the options it replaced.
    pub fn subscribe(
        &mut self,
        filter: &str,
        options: SubscriptionOptions,
    ) -> Option<SubscriptionOptions> {
        self.subscriptions.insert(filter.to_owned(), options)
    }

    /// Removes a subscription; returns whether it existed.
    pub fn unsubscribe(&mut self, filter: &str) -> bool {
        self.subscriptions.remove(filter).is_some()
    }

    /// The session's subscriptions.
    pub fn subscriptions(&self) -> impl Iterator<Item = (&str, &SubscriptionOptions)> {
        self.subscriptions.iter().map(|(f, o)| (f.as_str(), o))
    }

    /// Queues a message for delivery, dropping the oldest queued ones if a bound is passed.
    pub fn enqueue(&mut self, delivery: Delivery) -> Enqueued {
        self.queued_bytes += delivery.message.cost();
        self.queue.push_back(delivery);
        let mut dropped = 0;
        while self.queue.len() > 1
            && (self.queue.len() > self.limits.max_queued_messages
                || self.queued_bytes > self.limits.max_queued_bytes)
        {
            if let Some(old) = self.queue.pop_front() {
                self.queued_bytes -= old.message.cost();
                dropped += 1;
            }
        }
        self.dropped_total += dropped as u64;
        Enqueued { dropped }
    }

    /// The next PUBLISH to send, if the queue has one the in-flight window lets out.
    ///
    /// QoS 0 messages go as soon as they reach the head of the queue. A QoS 1/2 message at the
    /// head waits while the window is full, and so does everything behind it: that keeps the
    /// order of messages on a topic.
    #[must_use]
    pub fn poll_publish(&mut self) -> Option<Publish> {
        let head = self.queue.front()?;
        if head.qos != QoS::AtMostOnce && self.inflight.len() >= self.limits.inflight_window {
            return None;
        }
        let delivery = self.queue.pop_front()?;
        self.queued_bytes -= delivery.message.cost();
        let packet_id = match delivery.qos {
            QoS::AtMostOnce => 0,
            qos => {
                let id = self.allocate_packet_id();
                let state = if qos == QoS::AtLeastOnce {
                    InflightState::AwaitingPubAck
                } else {
                    InflightState::AwaitingPubRec
                };
                self.inflight.push_back(Inflight {
                    packet_id: id,
                    delivery: delivery.clone(),
                    state,
                });
                id
            }
        };
        Some(publish_of(&delivery, packet_id, false))
    }

    fn allocate_packet_id(&mut self) -> u16 {
        // The window is far smaller than 65535, so a free id is always found quickly.
        loop {
            let id = self.next_packet_id;
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            if !self.inflight.iter().any(|i| i.packet_id == id) {
                return id;
            }
        }
    }

    fn take_inflight(&mut self, packet_id: u16, state: InflightState) -> Option<usize> {
        self.inflight
            .iter()
            .position(|i| i.packet_id == packet_id && i.state == state)
    }

    /// PUBACK received; returns whether it acknowledged a message in flight.
    pub fn handle_puback(&mut self, packet_id: u16) -> bool {
        match self.take_inflight(packet_id, InflightState::AwaitingPubAck) {
            Some(at) => self.inflight.remove(at).is_some(),
            None => false,
        }
    }

    /// PUBREC received; returns whether it matched a message in flight. Either way the caller
    /// answers with PUBREL (MQTT-4.3.3-3).
    pub fn handle_pubrec(&mut self, packet_id: u16) -> bool {
        match self.take_inflight(packet_id, InflightState::AwaitingPubRec) {
            Some(at) => {
                self.inflight[at].state = InflightState::AwaitingPubComp;
                true
            }
            // A repeated PUBREC after a reconnect finds the message already released.
            None => self
                .take_inflight(packet_id, InflightState::AwaitingPubComp)
                .is_some(),
        }
    }

    /// PUBCOMP received; returns whether it completed a message in flight.
    pub fn handle_pubcomp(&mut self, packet_id: u16) -> bool {
        match self.take_inflight(packet_id, InflightState::AwaitingPubComp) {
            Some(at) => self.inflight.remove(at).is_some(),
            None => false,
        }
    }

    /// A QoS 2 PUBLISH arrived from the client; returns true the first time for its packet
    /// id (route it), false for a redelivery of one not yet released (do not route it again).
    pub fn receive_qos2(&mut self, packet_id: u16) -> bool {
        self.awaiting_pubrel.insert(packet_id)
    }

    /// PUBREL received for an incoming QoS 2 message; returns whether the id was pending.
    /// Either way the caller answers with PUBCOMP.
    pub fn release_qos2(&mut self, packet_id: u16) -> bool {
        self.awaiting_pubrel.remove(&packet_id)
    }

    /// The packets to resend when a client resumes this session: every unacknowledged
    /// PUBLISH again with DUP set, and PUBREL for QoS 2 messages already received, in the
    /// order they were first sent (MQTT-4.4.0-1).
    pub fn resend_on_resume(&self) -> Vec<Packet> {
        self.inflight
            .iter()
            .map(|i| match i.state {
                InflightState::AwaitingPubComp => Packet::PubRel(i.packet_id),
                _ => Packet::Publish(publish_of(&i.delivery, i.packet_id, true)),
            })
            .collect()
    }

    /// Forgets queued QoS 0 messages: they are not kept for a client that went away.
    pub fn drop_qos0(&mut self) {
        let mut bytes = 0;
        self.queue.retain(|d| {
            let keep = d.qos != QoS::AtMostOnce;
            if !keep {
                bytes += d.message.cost();
            }
            keep
        });
        self.queued_bytes -= bytes;
    }

    /// Messages waiting in the queue.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Bytes waiting in the queue.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// QoS 1/2 messages sent and not yet acknowledged.
    pub fn inflight(&self) -> usize {
        self.inflight.len()
    }

    /// Messages dropped by queue overflow over the session's life.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total
    }
}

fn publish_of(delivery: &Delivery, packet_id: u16, dup: bool) -> Publish {
    Publish {
        dup,
        qos: delivery.qos,
        retain: delivery.retain,
        topic: delivery.message.topic.clone(),
        packet_id,
        payload: delivery.message.payload.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::mqtt::message::{Message, MessageProperties};

    fn limits() -> SessionLimits {
        SessionLimits {
            max_queued_messages: 10,
            max_queued_bytes: 1000,
            inflight_window: 2,
        }
    }

    fn delivery(topic: &str, payload: &str, qos: QoS) -> Delivery {
        Delivery {
            message: Arc::new(Message {
                topic: topic.into(),
                payload: Bytes::copy_from_slice(payload.as_bytes()),
                qos,
                retain: false,
                properties: MessageProperties::default(),
            }),
            qos,
            retain: false,
        }
    }

    fn payload(p: &Publish) -> &[u8] {
        &p.payload
    }

    #[test]
    fn qos0_goes_out_without_packet_id_or_window() {
        let mut s = Session::new(limits());
        for i in 0..5 {
            let _ = s.enqueue(delivery("t", &i.to_string(), QoS::AtMostOnce));
        }
        for i in 0..5 {
            let p = s.poll_publish().expect("qos0 is never held back");
            assert_eq!(p.packet_id, 0);
            assert_eq!(payload(&p), i.to_string().as_bytes());
        }
        assert_eq!(s.inflight(), 0);
        assert!(s.poll_publish().is_none());
    }

    #[test]
    fn window_holds_back_qos1_and_what_follows_it() {
        let mut s = Session::new(limits());
        let _ = s.enqueue(delivery("t", "a", QoS::AtLeastOnce));
        let _ = s.enqueue(delivery("t", "b", QoS::AtLeastOnce));
        let _ = s.enqueue(delivery("t", "c", QoS::AtLeastOnce));
        let _ = s.enqueue(delivery("t", "d", QoS::AtMostOnce));
        let a = s.poll_publish().unwrap();
        let b = s.poll_publish().unwrap();
        assert_ne!(a.packet_id, b.packet_id);
        assert!(a.packet_id != 0 && b.packet_id != 0);
        // Window of 2 is full: c waits, and d (QoS 0) waits behind it to keep the order.
        assert!(s.poll_publish().is_none());
        assert!(s.handle_puback(a.packet_id));
        assert_eq!(payload(&s.poll_publish().unwrap()), b"c");
        assert_eq!(payload(&s.poll_publish().unwrap()), b"d");
        assert!(
            !s.handle_puback(a.packet_id),
            "a second PUBACK matches nothing"
        );
    }

    #[test]
    fn qos2_flow_and_resend_on_resume() {
        let mut s = Session::new(limits());
        let _ = s.enqueue(delivery("t", "x", QoS::ExactlyOnce));
        let _ = s.enqueue(delivery("t", "y", QoS::ExactlyOnce));
        let x = s.poll_publish().unwrap();
        let y = s.poll_publish().unwrap();
        assert!(
            !s.handle_pubcomp(x.packet_id),
            "PUBCOMP before PUBREC matches nothing"
        );
        assert!(s.handle_pubrec(x.packet_id));
        // Reconnect now: x is past PUBREC, so PUBREL is resent; y is resent with DUP.
        let resend = s.resend_on_resume();
        assert_eq!(resend.len(), 2);
        assert_eq!(resend[0], Packet::PubRel(x.packet_id));
        match &resend[1] {
            Packet::Publish(p) => {
                assert!(p.dup);
                assert_eq!(p.packet_id, y.packet_id);
                assert_eq!(p.payload, y.payload);
            }
            other => panic!("expected PUBLISH, got {other:?}"),
        }
        assert!(s.handle_pubcomp(x.packet_id));
        assert!(s.handle_pubrec(y.packet_id));
        assert!(
            s.handle_pubrec(y.packet_id),
            "repeated PUBREC is still answered"
        );
        assert!(s.handle_pubcomp(y.packet_id));
        assert_eq!(s.inflight(), 0);
    }

    #[test]
    fn overflow_drops_oldest_by_count() {
        let mut s = Session::new(limits());
        let mut dropped = 0;
        for i in 0..15 {
            dropped += s
                .enqueue(delivery("t", &format!("{i:02}"), QoS::AtLeastOnce))
                .dropped;
        }
        assert_eq!(dropped, 5);
        assert_eq!(s.queued(), 10);
        assert_eq!(s.dropped_total(), 5);
        assert_eq!(payload(&s.poll_publish().unwrap()), b"05");
    }

    #[test]
    fn overflow_drops_oldest_by_bytes() {
        let mut s = Session::new(limits());
        let big = "x".repeat(399); // 400 bytes with the topic
        assert_eq!(s.enqueue(delivery("t", &big, QoS::AtLeastOnce)).dropped, 0);
        assert_eq!(s.enqueue(delivery("t", &big, QoS::AtLeastOnce)).dropped, 0);
        assert_eq!(s.enqueue(delivery("t", &big, QoS::AtLeastOnce)).dropped, 1);
        assert_eq!(s.queued_bytes(), 800);
        // One message is always accepted, even past the byte bound.
        let mut s = Session::new(limits());
        let huge = "x".repeat(5000);
        assert_eq!(s.enqueue(delivery("t", &huge, QoS::AtLeastOnce)).dropped, 0);
        assert_eq!(s.queued(), 1);
    }

    #[test]
    fn packet_ids_skip_ids_in_flight_and_wrap() {
        let mut s = Session::new(SessionLimits {
            inflight_window: 3,
            ..limits()
        });
        s.next_packet_id = u16::MAX;
        for _ in 0..3 {
            let _ = s.enqueue(delivery("t", "p", QoS::AtLeastOnce));
        }
        let ids: Vec<u16> = (0..3)
            .map(|_| s.poll_publish().unwrap().packet_id)
            .collect();
        assert_eq!(ids, vec![u16::MAX, 1, 2]);
        // Free id 1 only; the next allocation walks past 3.. and never reuses 2 or MAX.
        assert!(s.handle_puback(1));
        s.next_packet_id = u16::MAX;
        let _ = s.enqueue(delivery("t", "p", QoS::AtLeastOnce));
        assert_eq!(s.poll_publish().unwrap().packet_id, 1);
    }

    #[test]
    fn incoming_qos2_is_routed_once() {
        let mut s = Session::new(limits());
        assert!(s.receive_qos2(7));
        assert!(
            !s.receive_qos2(7),
            "a DUP before PUBREL is not routed again"
        );
        assert!(s.release_qos2(7));
        assert!(!s.release_qos2(7));
        assert!(s.receive_qos2(7), "after release, the id is new again");
    }

    #[test]
    fn drop_qos0_keeps_qos1_and_byte_count() {
        let mut s = Session::new(limits());
        let _ = s.enqueue(delivery("t", "a", QoS::AtMostOnce));
        let _ = s.enqueue(delivery("t", "b", QoS::AtLeastOnce));
        let _ = s.enqueue(delivery("t", "c", QoS::AtMostOnce));
        s.drop_qos0();
        assert_eq!(s.queued(), 1);
        assert_eq!(s.queued_bytes(), 2);
        assert_eq!(payload(&s.poll_publish().unwrap()), b"b");
    }

    #[test]
    fn subscriptions_replace_and_remove() {
        let mut s = Session::new(limits());
        let q1 = SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            ..Default::default()
        };
        assert!(s.subscribe("a/+", q1).is_none());
        assert_eq!(s.subscribe("a/+", SubscriptionOptions::default()), Some(q1));
        assert_eq!(s.subscriptions().count(), 1);
        assert!(s.unsubscribe("a/+"));
        assert!(!s.unsubscribe("a/+"));
    }
}
