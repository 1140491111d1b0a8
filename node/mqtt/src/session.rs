//! The state of one client's session, sans-IO.
//!
//! A session outlives connections when the client asked for a persistent one (clean session
//! 0). It holds the client's subscriptions, the bounded queue of messages waiting to be sent,
//! the in-flight window of QoS 1/2 messages sent but not yet acknowledged, and the packet ids of
//! QoS 2 messages received but not yet released.
//!
//! A persistent session also keeps a journal of its changes (`SessionChange`) for the broker
//! to write to the store; the session itself does no IO.
//!
//! ### Invariants
//! - `queue` holds at most `limits.max_queued_messages` entries and `queued_bytes` (the sum of
//!   their `Message::cost`) stays within `limits.max_queued_bytes`, except that one message is
//!   always accepted into an empty queue. Overflow drops the oldest queued entries.
//! - `inflight` holds at most `limits.inflight_window` entries, in the order they were sent,
//!   with distinct packet ids; QoS 0 messages never enter it.
//! - Messages leave the queue in the order they entered it, so delivery is in order per topic.
//! - Every message has a sequence number, increasing in the order messages were queued.
//! - A queued message whose MQTT 5.0 expiry interval has passed is never sent: `poll_send`
//!   drops it (MQTT-3.3.2-5). One already in flight is completed, as delivery has started.
//!   Time is passed in (`now`); nothing here reads a clock.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use super::message::{Delivery, Message, SubscriptionOptions};
use super::packet::{Ack, Packet, Publish, QoS};

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

/// Where a QoS 1/2 message stands in its delivery to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Waiting in the queue.
    Queued,
    /// Sent at QoS 1 with this packet id, waiting for PUBACK.
    WaitPubAck(u16),
    /// Sent at QoS 2 with this packet id, waiting for PUBREC.
    WaitPubRec(u16),
    /// PUBREL sent for this packet id, waiting for PUBCOMP.
    WaitPubComp(u16),
}

impl DeliveryState {
    fn packet_id(self) -> Option<u16> {
        match self {
            Self::Queued => None,
            Self::WaitPubAck(id) | Self::WaitPubRec(id) | Self::WaitPubComp(id) => Some(id),
        }
    }
}

/// A change a persistent session made, for the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionChange {
    /// A QoS 1/2 message was queued, or its delivery state changed: (re)write it.
    Put {
        /// Its sequence number.
        seq: u64,
        /// The message and how it is delivered.
        delivery: Delivery,
        /// Its new state.
        state: DeliveryState,
    },
    /// A QoS 1/2 message left the session (acknowledged, or dropped by overflow).
    Remove {
        /// Its sequence number.
        seq: u64,
    },
    /// A QoS 2 message with this packet id was received and awaits PUBREL.
    Qos2Received(u16),
    /// The QoS 2 packet id was released.
    Qos2Released(u16),
    /// The subscriptions (or the session expiry interval) changed: rewrite the session record.
    Subscriptions,
}

/// A message of a session as restored from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoredDelivery {
    /// Its sequence number.
    pub seq: u64,
    /// The message and how it is delivered.
    pub delivery: Delivery,
    /// Where it stood.
    pub state: DeliveryState,
}

#[derive(Debug, Clone)]
struct Queued {
    seq: u64,
    delivery: Delivery,
}

#[derive(Debug, Clone)]
struct Inflight {
    seq: u64,
    packet_id: u16,
    delivery: Delivery,
    state: DeliveryState,
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
    /// By filter. A B-tree: an empty one takes 24 bytes of every session, a hash map 48.
    subscriptions: BTreeMap<String, SubscriptionOptions>,
    queue: VecDeque<Queued>,
    queued_bytes: usize,
    inflight: VecDeque<Inflight>,
    awaiting_pubrel: BTreeSet<u16>,
    next_packet_id: u16,
    /// The ids in flight were all given by `allocate_packet_id`, in ascending order, since
    /// the window was last empty (not wrapped, nor restored from the store).
    ids_ascending: bool,
    next_seq: u64,
    dropped_total: u64,
    /// Messages dropped from the queue because they expired, not yet taken by the driver.
    /// Boxed: only MQTT 5.0 messages expire, and an empty `Vec` would take 24 bytes of every
    /// session.
    #[expect(clippy::box_collection, reason = "8 bytes while empty, not 24")]
    expired: Option<Box<Vec<Arc<Message>>>>,
    expired_total: u64,
    /// Changes not yet written to the store; `None` for a session that is not persistent.
    journal: Option<Vec<SessionChange>>,
    /// MQTT 5.0 session expiry interval the client asked for, in seconds; `None` for a 3.1/3.1.1
    /// session (kept for the node's `session.max_age_secs`).
    expiry_secs: Option<u32>,
    /// The verified user the session belongs to (the one whose connection created it); `None`
    /// for a session created without one. Stored with a persistent session's record.
    user: Option<Arc<str>>,
}

impl Session {
    /// A new, empty session.
    pub fn new(limits: SessionLimits) -> Self {
        Self {
            limits,
            subscriptions: BTreeMap::new(),
            queue: VecDeque::new(),
            queued_bytes: 0,
            inflight: VecDeque::new(),
            awaiting_pubrel: BTreeSet::new(),
            next_packet_id: 1,
            ids_ascending: true,
            next_seq: 1,
            dropped_total: 0,
            expired: None,
            expired_total: 0,
            journal: None,
            expiry_secs: None,
            user: None,
        }
    }

    /// The session as belonging to `user` (set when it is created or read back, never
    /// changed after: not journaled, a new persistent session's first record carries it).
    #[must_use]
    pub fn with_user(mut self, user: Option<Arc<str>>) -> Self {
        self.user = user;
        self
    }

    /// The verified user the session belongs to, if it was created by one.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The session with this MQTT 5.0 session expiry interval, as read back from the store
    /// (not journaled: it is stored already).
    #[must_use]
    pub fn with_expiry_secs(mut self, secs: Option<u32>) -> Self {
        self.expiry_secs = secs;
        self
    }

    /// Sets the MQTT 5.0 session expiry interval (from CONNECT, or changed by DISCONNECT);
    /// a persistent session's record is rewritten with it.
    pub fn set_expiry_secs(&mut self, secs: Option<u32>) {
        if self.expiry_secs != secs {
            self.expiry_secs = secs;
            self.record(SessionChange::Subscriptions);
        }
    }

    /// The MQTT 5.0 session expiry interval, if the client gave one.
    pub fn expiry_secs(&self) -> Option<u32> {
        self.expiry_secs
    }

    /// A persistent session rebuilt from the store. Its journal starts empty: what was read
    /// is already stored.
    pub fn restore(
        limits: SessionLimits,
        subscriptions: Vec<(String, SubscriptionOptions)>,
        mut messages: Vec<RestoredDelivery>,
        qos2_received: Vec<u16>,
    ) -> Self {
        let mut s = Self::new(limits);
        s.subscriptions = subscriptions.into_iter().collect();
        messages.sort_by_key(|m| m.seq);
        for m in messages {
            s.next_seq = s.next_seq.max(m.seq + 1);
            match m.state.packet_id() {
                None => {
                    s.queued_bytes += m.delivery.message.cost();
                    s.queue.push_back(Queued {
                        seq: m.seq,
                        delivery: m.delivery,
                    });
                }
                Some(packet_id) => {
                    s.ids_ascending = false;
                    s.next_packet_id = packet_id.checked_add(1).unwrap_or(1);
                    s.inflight.push_back(Inflight {
                        seq: m.seq,
                        packet_id,
                        delivery: m.delivery,
                        state: m.state,
                    });
                }
            }
        }
        s.awaiting_pubrel = qos2_received.into_iter().collect();
        s.journal = Some(Vec::new());
        s
    }

    /// Makes the session persistent (or not). Turning it on journals everything it holds, so
    /// the store gets the whole session.
    pub fn set_persistent(&mut self, on: bool) {
        if !on {
            self.journal = None;
            return;
        }
        if self.journal.is_some() {
            return;
        }
        let mut journal = vec![SessionChange::Subscriptions];
        for i in &self.inflight {
            journal.push(SessionChange::Put {
                seq: i.seq,
                delivery: i.delivery.clone(),
                state: i.state,
            });
        }
        for q in self
            .queue
            .iter()
            .filter(|q| q.delivery.qos != QoS::AtMostOnce)
        {
            journal.push(SessionChange::Put {
                seq: q.seq,
                delivery: q.delivery.clone(),
                state: DeliveryState::Queued,
            });
        }
        journal.extend(
            self.awaiting_pubrel
                .iter()
                .map(|id| SessionChange::Qos2Received(*id)),
        );
        self.journal = Some(journal);
    }

    /// Everything the session holds, in the shape `restore` takes: subscriptions, queued and
    /// in-flight QoS 1/2 messages, and the QoS 2 packet ids received and not released.
    pub fn export(
        &self,
    ) -> (
        Vec<(String, SubscriptionOptions)>,
        Vec<RestoredDelivery>,
        Vec<u16>,
    ) {
        let subscriptions = self
            .subscriptions
            .iter()
            .map(|(f, o)| (f.clone(), *o))
            .collect();
        let mut messages: Vec<RestoredDelivery> = self
            .inflight
            .iter()
            .map(|i| RestoredDelivery {
                seq: i.seq,
                delivery: i.delivery.clone(),
                state: i.state,
            })
            .collect();
        messages.extend(
            self.queue
                .iter()
                .filter(|q| q.delivery.qos != QoS::AtMostOnce)
                .map(|q| RestoredDelivery {
                    seq: q.seq,
                    delivery: q.delivery.clone(),
                    state: DeliveryState::Queued,
                }),
        );
        let qos2 = self.awaiting_pubrel.iter().copied().collect();
        (subscriptions, messages, qos2)
    }

    /// Sets how many QoS 1/2 messages may be in flight at once (an MQTT 5.0 client's receive
    /// maximum, at most the configured window). Messages already in flight stay.
    pub fn set_inflight_window(&mut self, n: usize) {
        self.limits.inflight_window = n.max(1);
    }

    /// Whether the session journals its changes for the store.
    pub fn is_persistent(&self) -> bool {
        self.journal.is_some()
    }

    /// Takes the changes made since the last call.
    pub fn take_changes(&mut self) -> Vec<SessionChange> {
        self.journal
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    fn record(&mut self, change: SessionChange) {
        if let Some(j) = &mut self.journal {
            j.push(change);
        }
    }

    /// Adds or replaces a subscription; returns the options it replaced.
    pub fn subscribe(
        &mut self,
        filter: &str,
        options: SubscriptionOptions,
    ) -> Option<SubscriptionOptions> {
        self.record(SessionChange::Subscriptions);
        self.subscriptions.insert(filter.to_owned(), options)
    }

    /// Removes a subscription; returns whether it existed.
    pub fn unsubscribe(&mut self, filter: &str) -> bool {
        let existed = self.subscriptions.remove(filter).is_some();
        if existed {
            self.record(SessionChange::Subscriptions);
        }
        existed
    }

    /// Whether the session has a subscription to exactly `filter`.
    pub fn has_subscription(&self, filter: &str) -> bool {
        self.subscriptions.contains_key(filter)
    }

    /// How many subscriptions the session has.
    pub fn subscription_count(&self) -> usize {
        self.subscriptions.len()
    }

    /// The session's subscriptions.
    pub fn subscriptions(&self) -> impl Iterator<Item = (&str, &SubscriptionOptions)> {
        self.subscriptions.iter().map(|(f, o)| (f.as_str(), o))
    }

    /// Queues a message for delivery, dropping the oldest queued ones if a bound is passed.
    pub fn enqueue(&mut self, delivery: Delivery) -> Enqueued {
        let seq = self.next_seq;
        self.next_seq += 1;
        if delivery.qos != QoS::AtMostOnce {
            self.record(SessionChange::Put {
                seq,
                delivery: delivery.clone(),
                state: DeliveryState::Queued,
            });
        }
        self.queued_bytes += delivery.message.cost();
        self.queue.push_back(Queued { seq, delivery });
        let mut dropped = 0;
        while self.queue.len() > 1
            && (self.queue.len() > self.limits.max_queued_messages
                || self.queued_bytes > self.limits.max_queued_bytes)
        {
            if let Some(old) = self.queue.pop_front() {
                self.queued_bytes -= old.delivery.message.cost();
                if old.delivery.qos != QoS::AtMostOnce {
                    self.record(SessionChange::Remove { seq: old.seq });
                }
                dropped += 1;
            }
        }
        self.dropped_total += dropped as u64;
        Enqueued { dropped }
    }

    /// The next PUBLISH to send at `now`, if the queue has one the in-flight window lets out.
    ///
    /// QoS 0 messages go as soon as they reach the head of the queue. A QoS 1/2 message at the
    /// head waits while the window is full, and so does everything behind it: that keeps the
    /// order of messages on a topic. Messages that have expired by `now` are dropped on the
    /// way (`take_expired`), and the PUBLISH carries what remains of the expiry interval.
    #[must_use]
    pub fn poll_publish(&mut self, now: Instant) -> Option<Publish> {
        self.poll_send(now).map(|(p, _)| p)
    }

    /// As `poll_publish`, with the message the PUBLISH carries (for its trace mark).
    #[must_use]
    pub fn poll_send(&mut self, now: Instant) -> Option<(Publish, Arc<Message>)> {
        let out = self.poll_outgoing(now)?;
        Some((out.publish(now), out.delivery.message.clone()))
    }

    /// As [`poll_send`](Self::poll_send), without building the PUBLISH: the delivery and the
    /// packet id it was given (0 at QoS 0), for a caller that encodes it from its parts.
    pub fn poll_outgoing(&mut self, now: Instant) -> Option<Outgoing<'_>> {
        self.drop_expired_head(now);
        let head = self.queue.front()?;
        if head.delivery.qos != QoS::AtMostOnce
            && self.inflight.len() >= self.limits.inflight_window
        {
            return None;
        }
        let Queued { seq, delivery } = self.queue.pop_front()?;
        self.queued_bytes -= delivery.message.cost();
        let packet_id = match delivery.qos {
            QoS::AtMostOnce => 0,
            qos => {
                let id = self.allocate_packet_id();
                let state = if qos == QoS::AtLeastOnce {
                    DeliveryState::WaitPubAck(id)
                } else {
                    DeliveryState::WaitPubRec(id)
                };
                if self.journal.is_some() {
                    // Only a persistent session keeps a journal: spare the others the copy.
                    self.record(SessionChange::Put {
                        seq,
                        delivery: delivery.clone(),
                        state,
                    });
                }
                // The in-flight record keeps the delivery, and the caller reads it there: no
                // second count on a message every subscriber's copy shares.
                self.inflight.push_back(Inflight {
                    seq,
                    packet_id: id,
                    delivery,
                    state,
                });
                let delivery = &self.inflight.back()?.delivery;
                return Some(Outgoing {
                    delivery: Leaving::InFlight(delivery),
                    packet_id: id,
                });
            }
        };
        Some(Outgoing {
            delivery: Leaving::Sent(delivery),
            packet_id,
        })
    }

    /// Drops the messages at the head of the queue whose expiry interval has passed: onward
    /// delivery has not started, so their copy for this session is deleted (MQTT-3.3.2-5).
    fn drop_expired_head(&mut self, now: Instant) {
        while self
            .queue
            .front()
            .is_some_and(|q| q.delivery.message.is_expired(now))
        {
            let Some(old) = self.queue.pop_front() else {
                break;
            };
            self.queued_bytes -= old.delivery.message.cost();
            if old.delivery.qos != QoS::AtMostOnce {
                self.record(SessionChange::Remove { seq: old.seq });
            }
            self.expired_total += 1;
            self.expired
                .get_or_insert_with(Default::default)
                .push(old.delivery.message);
        }
    }

    /// Takes the messages dropped because they expired since the last call (for the
    /// driver's log and counters).
    pub fn take_expired(&mut self) -> Vec<Arc<Message>> {
        self.expired.take().map(|v| *v).unwrap_or_default()
    }

    fn allocate_packet_id(&mut self) -> u16 {
        if self.inflight.is_empty() {
            self.ids_ascending = true;
        }
        // The window is far smaller than 65535, so a free id is always found quickly.
        loop {
            let id = self.next_packet_id;
            self.next_packet_id = match self.next_packet_id.checked_add(1) {
                Some(next) => next,
                None => {
                    self.ids_ascending = false;
                    1
                }
            };
            // Ids given in order since the window was last empty are all below `id`: no
            // walk of the window per message (a tenth of a QoS 1 fan-out's session time).
            if self.ids_ascending && self.inflight.back().is_none_or(|last| last.packet_id < id) {
                return id;
            }
            // The walk: is `id` free, and are the ids in flight back in ascending order below
            // it (the ones given before a wrap have been acknowledged)?
            let (mut used, mut ascending, mut previous) = (false, true, 0);
            for i in &self.inflight {
                if i.packet_id == id {
                    used = true;
                    break;
                }
                ascending &= previous < i.packet_id && i.packet_id < id;
                previous = i.packet_id;
            }
            if !used {
                self.ids_ascending = ascending;
                return id;
            }
        }
    }

    fn find_inflight(&self, state: DeliveryState) -> Option<usize> {
        self.inflight.iter().position(|i| i.state == state)
    }

    fn complete(&mut self, state: DeliveryState) -> bool {
        let Some(at) = self.find_inflight(state) else {
            return false;
        };
        if let Some(done) = self.inflight.remove(at) {
            self.record(SessionChange::Remove { seq: done.seq });
        }
        true
    }

    /// PUBACK received; returns whether it acknowledged a message in flight.
    pub fn handle_puback(&mut self, packet_id: u16) -> bool {
        self.complete(DeliveryState::WaitPubAck(packet_id))
    }

    /// PUBREC received; returns whether it matched a message in flight. Either way the caller
    /// answers with PUBREL (MQTT-4.3.3-3).
    pub fn handle_pubrec(&mut self, packet_id: u16) -> bool {
        if let Some(at) = self.find_inflight(DeliveryState::WaitPubRec(packet_id)) {
            let state = DeliveryState::WaitPubComp(packet_id);
            let entry = &mut self.inflight[at];
            entry.state = state;
            let change = SessionChange::Put {
                seq: entry.seq,
                delivery: entry.delivery.clone(),
                state,
            };
            self.record(change);
            return true;
        }
        // A repeated PUBREC after a reconnect finds the message already released.
        self.find_inflight(DeliveryState::WaitPubComp(packet_id))
            .is_some()
    }

    /// PUBREC with an error reason (0x80 or above, MQTT 5.0) received: the client refused the
    /// message, which ends its delivery without PUBREL (MQTT 5.0 4.3.3); returns whether it
    /// matched a message in flight.
    pub fn handle_pubrec_refused(&mut self, packet_id: u16) -> bool {
        self.complete(DeliveryState::WaitPubRec(packet_id))
    }

    /// A QoS 1/2 message just taken from `poll_send` with `packet_id` could not be sent (it is
    /// larger than the client's maximum packet size): it leaves the window and the store as
    /// if the client had acknowledged it (MQTT 5.0 3.1.2.11.4). Returns whether it was in
    /// flight.
    pub fn discard_inflight(&mut self, packet_id: u16) -> bool {
        let Some(at) = self.inflight.iter().position(|i| i.packet_id == packet_id) else {
            return false;
        };
        if let Some(done) = self.inflight.remove(at) {
            self.record(SessionChange::Remove { seq: done.seq });
        }
        true
    }

    /// PUBCOMP received; returns whether it completed a message in flight.
    pub fn handle_pubcomp(&mut self, packet_id: u16) -> bool {
        self.complete(DeliveryState::WaitPubComp(packet_id))
    }

    /// A QoS 2 PUBLISH arrived from the client; returns true the first time for its packet
    /// id (route it), false for a redelivery of one not yet released (do not route it again).
    pub fn receive_qos2(&mut self, packet_id: u16) -> bool {
        let fresh = self.awaiting_pubrel.insert(packet_id);
        if fresh {
            self.record(SessionChange::Qos2Received(packet_id));
        }
        fresh
    }

    /// PUBREL received for an incoming QoS 2 message; returns whether the id was pending.
    /// Either way the caller answers with PUBCOMP.
    pub fn release_qos2(&mut self, packet_id: u16) -> bool {
        let known = self.awaiting_pubrel.remove(&packet_id);
        if known {
            self.record(SessionChange::Qos2Released(packet_id));
        }
        known
    }

    /// The packets to resend when a client resumes this session: every unacknowledged
    /// PUBLISH again with DUP set, and PUBREL for QoS 2 messages already received, in the
    /// order they were first sent (MQTT-4.4.0-1). A PUBLISH carries what remains at `now` of
    /// its expiry interval.
    pub fn resend_on_resume(&self, now: Instant) -> Vec<Packet> {
        self.inflight
            .iter()
            .map(|i| match i.state {
                DeliveryState::WaitPubComp(id) => Packet::PubRel(Ack::new(id)),
                _ => Packet::Publish(publish_of(&i.delivery, i.packet_id, true, now)),
            })
            .collect()
    }

    /// Takes out the messages that came through a share group (`only` that group, or any)
    /// and are not acknowledged yet: queued ones, and in-flight ones whose PUBREC has not
    /// come (past PUBREC the client has the message). They go to another member of the
    /// group when this one leaves it (MQTT 5.0 section 4.8.2).
    pub fn take_shared(&mut self, only: Option<&str>) -> Vec<Delivery> {
        let wanted = |d: &Delivery| {
            d.share
                .as_deref()
                .is_some_and(|s| only.is_none_or(|o| o == s))
        };
        let mut taken = Vec::new();
        let mut removed = Vec::new();
        let mut freed = 0;
        self.inflight.retain(|i| {
            let take = wanted(&i.delivery) && !matches!(i.state, DeliveryState::WaitPubComp(_));
            if take {
                removed.push(i.seq);
                taken.push((i.seq, i.delivery.clone()));
            }
            !take
        });
        self.queue.retain(|q| {
            let take = wanted(&q.delivery);
            if take {
                freed += q.delivery.message.cost();
                if q.delivery.qos != QoS::AtMostOnce {
                    removed.push(q.seq);
                }
                taken.push((q.seq, q.delivery.clone()));
            }
            !take
        });
        self.queued_bytes -= freed;
        for seq in removed {
            self.record(SessionChange::Remove { seq });
        }
        taken.sort_by_key(|(seq, _)| *seq);
        taken.into_iter().map(|(_, d)| d).collect()
    }

    /// Forgets queued QoS 0 messages: they are not kept for a client that went away.
    pub fn drop_qos0(&mut self) {
        let mut bytes = 0;
        self.queue.retain(|q| {
            let keep = q.delivery.qos != QoS::AtMostOnce;
            if !keep {
                bytes += q.delivery.message.cost();
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

    /// Messages dropped because they expired, over the session's life.
    pub fn expired_total(&self) -> u64 {
        self.expired_total
    }
}

/// A message leaving the session's queue (`Session::poll_outgoing`).
#[derive(Debug)]
pub struct Outgoing<'a> {
    /// The delivery: the message and how this session gets it.
    pub delivery: Leaving<'a>,
    /// The packet id it was given (0 at QoS 0).
    pub packet_id: u16,
}

/// A delivery leaving the queue: gone from the session (QoS 0), or kept in flight (QoS 1/2),
/// where it is read without taking another count on its message.
#[derive(Debug)]
pub enum Leaving<'a> {
    /// At QoS 0: the session keeps nothing of it.
    Sent(Delivery),
    /// At QoS 1/2: the session's in-flight record of it.
    InFlight(&'a Delivery),
}

impl std::ops::Deref for Leaving<'_> {
    type Target = Delivery;

    fn deref(&self) -> &Delivery {
        match self {
            Self::Sent(d) => d,
            Self::InFlight(d) => d,
        }
    }
}

impl Outgoing<'_> {
    /// The PUBLISH that carries it, with what remains of its expiry interval at `now`.
    pub fn publish(&self, now: Instant) -> Publish {
        publish_of(&self.delivery, self.packet_id, false, now)
    }
}

/// The PUBLISH of `delivery` at `now`: with the expiry interval that remains (MQTT-3.3.2-6)
/// and the subscription identifiers of the subscriptions it matched (MQTT-3.3.4-3).
fn publish_of(delivery: &Delivery, packet_id: u16, dup: bool, now: Instant) -> Publish {
    let message = &delivery.message;
    let mut properties = message.properties.to_properties();
    properties.message_expiry_interval = message.remaining_expiry_secs(now);
    properties
        .subscription_identifiers
        .clone_from(&delivery.subscription_ids);
    Publish {
        dup,
        qos: delivery.qos,
        retain: delivery.retain,
        topic: message.topic.clone(),
        packet_id,
        payload: message.payload.clone(),
        properties,
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::message::MessageProperties;

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
                trace: None,
                publisher: None,
                expires_at: None,
                sampled_at: None,
            }),
            qos,
            retain: false,
            share: None,
            subscription_ids: Vec::new(),
        }
    }

    /// A fake clock: `secs` after a fixed start.
    fn at(secs: u64) -> Instant {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *START.get_or_init(Instant::now) + std::time::Duration::from_secs(secs)
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
            let p = s.poll_publish(at(0)).expect("qos0 is never held back");
            assert_eq!(p.packet_id, 0);
            assert_eq!(payload(&p), i.to_string().as_bytes());
        }
        assert_eq!(s.inflight(), 0);
        assert!(s.poll_publish(at(0)).is_none());
    }

    #[test]
    fn window_holds_back_qos1_and_what_follows_it() {
        let mut s = Session::new(limits());
        let _ = s.enqueue(delivery("t", "a", QoS::AtLeastOnce));
        let _ = s.enqueue(delivery("t", "b", QoS::AtLeastOnce));
        let _ = s.enqueue(delivery("t", "c", QoS::AtLeastOnce));
        let _ = s.enqueue(delivery("t", "d", QoS::AtMostOnce));
        let a = s.poll_publish(at(0)).unwrap();
        let b = s.poll_publish(at(0)).unwrap();
        assert_ne!(a.packet_id, b.packet_id);
        assert!(a.packet_id != 0 && b.packet_id != 0);
        // Window of 2 is full: c waits, and d (QoS 0) waits behind it to keep the order.
        assert!(s.poll_publish(at(0)).is_none());
        assert!(s.handle_puback(a.packet_id));
        assert_eq!(payload(&s.poll_publish(at(0)).unwrap()), b"c");
        assert_eq!(payload(&s.poll_publish(at(0)).unwrap()), b"d");
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
        let x = s.poll_publish(at(0)).unwrap();
        let y = s.poll_publish(at(0)).unwrap();
        assert!(
            !s.handle_pubcomp(x.packet_id),
            "PUBCOMP before PUBREC matches nothing"
        );
        assert!(s.handle_pubrec(x.packet_id));
        // Reconnect now: x is past PUBREC, so PUBREL is resent; y is resent with DUP.
        let resend = s.resend_on_resume(at(0));
        assert_eq!(resend.len(), 2);
        assert_eq!(resend[0], Packet::PubRel(Ack::new(x.packet_id)));
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
    fn a_discarded_message_leaves_the_window_and_the_store() {
        let mut s = Session::new(limits());
        s.set_persistent(true);
        let _ = s.take_changes();
        let _ = s.enqueue(delivery("t", "big", QoS::AtLeastOnce));
        let _ = s.enqueue(delivery("t", "b", QoS::AtLeastOnce));
        let _ = s.enqueue(delivery("t", "c", QoS::AtLeastOnce));
        let big = s.poll_publish(at(0)).unwrap();
        let _b = s.poll_publish(at(0)).unwrap();
        assert!(s.poll_publish(at(0)).is_none(), "window of 2 is full");
        let _ = s.take_changes();
        assert!(s.discard_inflight(big.packet_id));
        assert!(matches!(
            s.take_changes().as_slice(),
            [SessionChange::Remove { .. }]
        ));
        assert_eq!(payload(&s.poll_publish(at(0)).unwrap()), b"c");
        assert!(!s.discard_inflight(big.packet_id), "already gone");
        assert!(
            s.resend_on_resume(at(0))
                .iter()
                .all(|p| !matches!(p, Packet::Publish(p) if p.payload == big.payload)),
            "a discarded message is not resent"
        );
    }

    #[test]
    fn a_refused_pubrec_ends_the_delivery_without_pubrel() {
        let mut s = Session::new(limits());
        let _ = s.enqueue(delivery("t", "x", QoS::ExactlyOnce));
        let x = s.poll_publish(at(0)).unwrap();
        assert!(s.handle_pubrec_refused(x.packet_id));
        assert_eq!(s.inflight(), 0);
        assert!(s.resend_on_resume(at(0)).is_empty());
        assert!(!s.handle_pubrec_refused(x.packet_id));
    }

    #[test]
    fn subscriptions_are_counted() {
        let mut s = Session::new(limits());
        let _ = s.subscribe("a/#", SubscriptionOptions::default());
        let _ = s.subscribe("b", SubscriptionOptions::default());
        let _ = s.subscribe("a/#", SubscriptionOptions::default());
        assert_eq!(s.subscription_count(), 2);
        assert!(s.has_subscription("a/#") && !s.has_subscription("a/+"));
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
        assert_eq!(payload(&s.poll_publish(at(0)).unwrap()), b"05");
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
            .map(|_| s.poll_publish(at(0)).unwrap().packet_id)
            .collect();
        assert_eq!(ids, vec![u16::MAX, 1, 2]);
        // Free id 1 only; the next allocation walks past 3.. and never reuses 2 or MAX.
        assert!(s.handle_puback(1));
        s.next_packet_id = u16::MAX;
        let _ = s.enqueue(delivery("t", "p", QoS::AtLeastOnce));
        assert_eq!(s.poll_publish(at(0)).unwrap().packet_id, 1);
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
        assert_eq!(payload(&s.poll_publish(at(0)).unwrap()), b"b");
    }

    #[test]
    fn take_shared_takes_unacknowledged_share_messages_in_order() {
        let mut s = Session::new(limits());
        s.set_persistent(true);
        let share = |d: Delivery, g: &str| Delivery {
            share: Some(g.into()),
            ..d
        };
        let _ = s.enqueue(share(delivery("t", "a", QoS::ExactlyOnce), "$share/g/t"));
        let _ = s.enqueue(share(delivery("t", "b", QoS::AtLeastOnce), "$share/g/t"));
        let _ = s.enqueue(delivery("t", "mine", QoS::AtLeastOnce));
        let _ = s.enqueue(share(delivery("t", "c", QoS::AtLeastOnce), "$share/h/t"));
        let _ = s.enqueue(share(delivery("t", "d", QoS::AtLeastOnce), "$share/g/t"));
        let a = s.poll_publish(at(0)).unwrap();
        let _b = s.poll_publish(at(0)).unwrap(); // window of 2: b in flight, the rest queued
        assert!(s.handle_pubrec(a.packet_id), "past PUBREC: a stays");
        let _ = s.take_changes();
        let taken = s.take_shared(Some("$share/g/t"));
        let payloads: Vec<&[u8]> = taken.iter().map(|d| &d.message.payload[..]).collect();
        assert_eq!(payloads, [&b"b"[..], b"d"]);
        assert_eq!(s.inflight(), 1);
        assert_eq!(s.queued(), 2);
        assert_eq!(s.queued_bytes(), 5 + 2);
        assert_eq!(
            s.take_changes(),
            vec![
                SessionChange::Remove { seq: 2 },
                SessionChange::Remove { seq: 5 }
            ]
        );
        let rest = s.take_shared(None);
        assert_eq!(rest.len(), 1, "any group: c");
        assert_eq!(&rest[0].message.payload[..], b"c");
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

    #[test]
    fn journal_records_the_whole_delivery_flow() {
        let mut s = Session::new(limits());
        let _ = s.enqueue(delivery("t", "before", QoS::AtLeastOnce));
        assert!(s.take_changes().is_empty(), "not persistent: no journal");
        s.set_persistent(true);
        let first = s.take_changes();
        assert_eq!(first[0], SessionChange::Subscriptions);
        assert!(matches!(
            first[1],
            SessionChange::Put {
                seq: 1,
                state: DeliveryState::Queued,
                ..
            }
        ));
        let _ = s.enqueue(delivery("t", "q0", QoS::AtMostOnce));
        assert!(s.take_changes().is_empty(), "QoS 0 is never stored");
        let p = s.poll_publish(at(0)).unwrap();
        assert_eq!(
            s.take_changes(),
            vec![SessionChange::Put {
                seq: 1,
                delivery: delivery("t", "before", QoS::AtLeastOnce),
                state: DeliveryState::WaitPubAck(p.packet_id)
            }]
        );
        assert!(s.handle_puback(p.packet_id));
        assert_eq!(s.take_changes(), vec![SessionChange::Remove { seq: 1 }]);
        assert!(s.receive_qos2(5));
        assert!(s.release_qos2(5));
        assert_eq!(
            s.take_changes(),
            vec![
                SessionChange::Qos2Received(5),
                SessionChange::Qos2Released(5)
            ]
        );
    }

    #[test]
    fn overflow_journals_removals_of_stored_messages() {
        let mut s = Session::new(SessionLimits {
            max_queued_messages: 1,
            ..limits()
        });
        s.set_persistent(true);
        let _ = s.take_changes();
        let _ = s.enqueue(delivery("t", "a", QoS::AtLeastOnce));
        let _ = s.enqueue(delivery("t", "b", QoS::AtLeastOnce));
        let changes = s.take_changes();
        assert_eq!(changes.len(), 3);
        assert_eq!(changes[2], SessionChange::Remove { seq: 1 });
    }

    /// A delivery whose message, received at `at(received)`, expires `secs` later.
    fn expiring(payload: &str, qos: QoS, received: u64, secs: u32) -> Delivery {
        let mut d = delivery("t", payload, qos);
        let mut m = (*d.message).clone();
        m.properties.message_expiry_secs = Some(secs);
        d.message = Arc::new(m.expiring_from(at(received)));
        d
    }

    #[test]
    fn expired_queued_messages_are_dropped_and_the_rest_carry_what_remains() {
        let mut s = Session::new(limits());
        s.set_persistent(true);
        let _ = s.enqueue(expiring("short", QoS::AtLeastOnce, 0, 5));
        let _ = s.enqueue(expiring("q0", QoS::AtMostOnce, 0, 1));
        let _ = s.enqueue(expiring("long", QoS::AtLeastOnce, 0, 100));
        let _ = s.enqueue(delivery("t", "forever", QoS::AtLeastOnce));
        let _ = s.take_changes();
        // Ten seconds later the client is back: the first two are gone (MQTT-3.3.2-5).
        let p = s.poll_publish(at(10)).unwrap();
        assert_eq!(payload(&p), b"long");
        assert_eq!(
            p.properties.message_expiry_interval,
            Some(90),
            "MQTT-3.3.2-6"
        );
        let p = s.poll_publish(at(10)).unwrap();
        assert_eq!(payload(&p), b"forever");
        assert_eq!(p.properties.message_expiry_interval, None);
        let expired: Vec<Bytes> = s.take_expired().iter().map(|m| m.payload.clone()).collect();
        assert_eq!(expired, [&b"short"[..], b"q0"]);
        assert!(s.take_expired().is_empty(), "taken once");
        assert_eq!(s.expired_total(), 2);
        assert_eq!(s.queued(), 0);
        assert_eq!(s.queued_bytes(), 0);
        let changes = s.take_changes();
        assert_eq!(
            changes[0],
            SessionChange::Remove { seq: 1 },
            "the stored copy of the QoS 1 message goes too (the QoS 0 one was never stored)"
        );
        assert!(matches!(changes[1], SessionChange::Put { seq: 3, .. }));
    }

    #[test]
    fn a_message_in_flight_is_resent_with_what_remains_even_past_its_expiry() {
        let mut s = Session::new(limits());
        let _ = s.enqueue(expiring("m", QoS::AtLeastOnce, 0, 30));
        let p = s.poll_publish(at(0)).unwrap();
        assert_eq!(p.properties.message_expiry_interval, Some(30));
        let resent = |s: &Session, secs| match &s.resend_on_resume(at(secs))[..] {
            [Packet::Publish(p)] => p.properties.message_expiry_interval,
            other => panic!("expected one PUBLISH, got {other:?}"),
        };
        assert_eq!(resent(&s, 12), Some(18));
        // Delivery has started: it is completed, not dropped.
        assert_eq!(resent(&s, 40), Some(0));
        assert!(s.handle_puback(p.packet_id));
    }

    #[test]
    fn a_publish_carries_the_subscription_identifiers_of_its_delivery() {
        let mut s = Session::new(limits());
        let d = Delivery {
            subscription_ids: vec![3, 7],
            ..delivery("t", "x", QoS::AtLeastOnce)
        };
        let _ = s.enqueue(d);
        let p = s.poll_publish(at(0)).unwrap();
        assert_eq!(p.properties.subscription_identifiers, vec![3, 7]);
        // And again when resent after a reconnection.
        match &s.resend_on_resume(at(1))[..] {
            [Packet::Publish(p)] => assert_eq!(p.properties.subscription_identifiers, vec![3, 7]),
            other => panic!("expected one PUBLISH, got {other:?}"),
        }
    }

    #[test]
    fn restore_rebuilds_queue_inflight_and_counters() {
        let restored = vec![
            RestoredDelivery {
                seq: 9,
                delivery: delivery("t", "queued", QoS::AtLeastOnce),
                state: DeliveryState::Queued,
            },
            RestoredDelivery {
                seq: 4,
                delivery: delivery("t", "sent", QoS::ExactlyOnce),
                state: DeliveryState::WaitPubComp(77),
            },
        ];
        let mut s = Session::restore(limits(), vec![], restored, vec![3]);
        assert!(s.is_persistent());
        assert_eq!(
            s.resend_on_resume(at(0)),
            vec![Packet::PubRel(Ack::new(77))]
        );
        assert!(
            !s.receive_qos2(3),
            "QoS 2 id 3 was pending before the restart"
        );
        let p = s.poll_publish(at(0)).unwrap();
        assert_eq!(payload(&p), b"queued");
        assert_eq!(p.packet_id, 78);
        let _ = s.take_changes();
        let _ = s.enqueue(delivery("t", "new", QoS::AtLeastOnce));
        assert!(matches!(
            s.take_changes()[0],
            SessionChange::Put { seq: 10, .. }
        ));
    }

    #[test]
    fn restored_ids_out_of_order_are_never_given_twice() {
        // Sent before a restart: id 5 (seq 1), then, after the ids wrapped, id 2 (seq 2).
        let restored = [(1, 5), (2, 2)]
            .into_iter()
            .map(|(seq, id)| RestoredDelivery {
                seq,
                delivery: delivery("t", "old", QoS::AtLeastOnce),
                state: DeliveryState::WaitPubAck(id),
            })
            .collect();
        let window = SessionLimits {
            inflight_window: 10,
            ..limits()
        };
        let mut s = Session::restore(window, vec![], restored, vec![]);
        for _ in 0..4 {
            let _ = s.enqueue(delivery("t", "new", QoS::AtLeastOnce));
        }
        let ids: Vec<u16> = (0..4)
            .map(|_| s.poll_publish(at(0)).unwrap().packet_id)
            .collect();
        assert_eq!(ids, vec![3, 4, 6, 7], "5 is still in flight");
        // Once the window is empty, ids are given in order again.
        for id in [5, 2, 3, 4, 6, 7] {
            assert!(s.handle_puback(id));
        }
        let _ = s.enqueue(delivery("t", "new", QoS::AtLeastOnce));
        assert_eq!(s.poll_publish(at(0)).unwrap().packet_id, 8);
    }
}
