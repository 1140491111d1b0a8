//! Messages between nodes: a node forwards each message published on it to every other node
//! with a matching route, once per node; the receiver routes it to its own sessions only.
//!
//! One [`ForwardLink`] per member carries them on one long-lived QUIC stream, in batches with
//! consecutive sequence numbers. The receiver acknowledges a batch once its messages are in
//! their sessions' queues (and durable, for persistent sessions); the sender keeps QoS 1 and 2
//! messages until then and sends them again on a new stream after the link drops, and the
//! receiver drops what it has already delivered. QoS 0 messages are sent once. The receiver
//! (`receive`) keeps taking batches while earlier ones wait, and acknowledges them in order.
//!
//! Bounded: a link holds at most `capacity` messages waiting and as many unacknowledged;
//! beyond that new messages for that member are dropped, counted and reported as a warning.
//!
//! A message with an MQTT 5.0 expiry interval goes with what remains of it when it is
//! written (MQTT-3.3.2-6), and not at all once it has passed (MQTT-3.3.2-5); the receiver
//! counts its own deadline from its arrival.

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fubar_monitor::wire::{write_frame, FrameReader};
use fubar_monitor::MonitorError;
use quinn::SendStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::peer_wire::{ForwardAck, ForwardBatch, ForwardedMessage, PeerRequest, MAX_PEER_FRAME};
use super::peers::Peers;
use crate::broker::ack_gate::AckGate;
use crate::broker::persist::stored_properties;
use crate::mqtt::message::{remaining_secs, Message};

mod receive;
#[cfg(test)]
mod receive_tests;
pub use receive::{receive, Delivered};

/// Messages per batch frame, at most.
const BATCH_MESSAGES: usize = 1024;
/// Payload bytes per batch frame, about (a batch stops growing past this).
const BATCH_BYTES: usize = 1 << 20;
/// First and longest wait before dialing a member again.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How often drops on a link are reported, at most.
const DROP_REPORT_EVERY: Duration = Duration::from_secs(5);

/// The message as it travels to other nodes.
pub fn forwarded(message: &Message, publisher: &str) -> ForwardedMessage {
    ForwardedMessage {
        topic: message.topic.clone(),
        payload: message.payload.clone(),
        qos: message.qos as u8,
        retain: message.retain,
        properties: stored_properties(&message.properties),
        publisher: publisher.to_owned(),
        share: None,
        expires_at: message.expires_at,
    }
}

/// The message as it is written at `now`: with what remains of its expiry interval, or
/// `None` once that has passed (it is not sent).
fn on_wire(m: &Arc<ForwardedMessage>, now: Instant) -> Option<Arc<ForwardedMessage>> {
    let Some(at) = m.expires_at else {
        return Some(m.clone());
    };
    if at <= now {
        return None;
    }
    let mut out = (**m).clone();
    out.properties.message_expiry_secs = Some(remaining_secs(at, now));
    Some(Arc::new(out))
}

/// What a link has carried, counted by its task and read by `/metrics`.
#[derive(Debug, Default)]
struct LinkCounts {
    /// Messages written to the member (sent again after a drop included).
    messages: AtomicU64,
    /// Their topic and payload bytes.
    bytes: AtomicU64,
    /// Times the link went down and was dialed again.
    reconnects: AtomicU64,
    /// QoS 1/2 messages sent and not acknowledged now.
    unacked: AtomicU64,
}

/// A link's figures at one reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkFigures {
    /// The member's name.
    pub name: String,
    /// Messages waiting to be sent now.
    pub queued: u64,
    /// QoS 1/2 messages sent and not acknowledged now.
    pub unacked: u64,
    /// Messages written to the member since start.
    pub messages: u64,
    /// Their topic and payload bytes.
    pub bytes: u64,
    /// Messages dropped because the link was full.
    pub dropped: u64,
    /// Times the link went down and was dialed again.
    pub reconnects: u64,
}

/// The sending end of the message stream to one member.
#[derive(Debug)]
pub struct ForwardLink {
    /// The member's id (also its link id in the `AckGate`).
    pub id: u64,
    queue: mpsc::Sender<Queued>,
    gate: Arc<AckGate>,
    counts: Arc<LinkCounts>,
    dropped: AtomicU64,
    last_report: Mutex<Option<Instant>>,
    name: String,
}

impl ForwardLink {
    /// Starts the link to member `id` (named `name`) from boot `epoch`.
    pub fn start(
        peers: Arc<Peers>,
        id: u64,
        name: String,
        epoch: u64,
        capacity: usize,
        gate: Arc<AckGate>,
        stop: CancellationToken,
    ) -> Self {
        let (queue, rx) = mpsc::channel(capacity.max(1));
        let counts = Arc::new(LinkCounts::default());
        let sender = Sender {
            gate: gate.clone(),
            counts: counts.clone(),
            peers,
            id,
            name: name.clone(),
            epoch,
            capacity: capacity.max(1),
            next_seq: 1,
            unacked: VecDeque::new(),
        };
        tokio::spawn(sender.run(rx, stop));
        Self {
            id,
            gate,
            queue,
            counts,
            dropped: AtomicU64::new(0),
            last_report: Mutex::new(None),
            name,
        }
    }

    /// Queues `message` for the member, with the gate ticket its acknowledgement waits for
    /// (0: none); drops it (counted, reported, its ticket failed) if the link is full.
    pub fn send(&self, message: Arc<ForwardedMessage>, ticket: u64) {
        if self.queue.try_send((message, ticket)).is_err() {
            if ticket != 0 {
                self.gate.fail(self.id, [ticket]);
            }
            let total = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // A full link drops many in a row: look at the clock once in a while only.
            if total % 1024 != 1 {
                return;
            }
            let now = Instant::now();
            let mut last = self.last_report.lock();
            if last.is_none_or(|t| now.duration_since(t) >= DROP_REPORT_EVERY) {
                *last = Some(now);
                tracing::warn!(target: "warning", node = %self.name, dropped_total = total,
                    "forwarding queue full: messages to this node dropped");
            }
        }
    }

    /// Messages dropped because the link was full, since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The link's figures now.
    pub fn figures(&self) -> LinkFigures {
        let c = &self.counts;
        LinkFigures {
            name: self.name.clone(),
            queued: (self.queue.max_capacity() - self.queue.capacity()) as u64,
            unacked: c.unacked.load(Ordering::Relaxed),
            messages: c.messages.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            dropped: self.dropped(),
            reconnects: c.reconnects.load(Ordering::Relaxed),
        }
    }
}

/// A [`ForwardBatch`] as it is written, borrowing the queued messages (same wire format).
#[derive(serde::Serialize)]
struct ForwardBatchOut<'a> {
    first_seq: u64,
    messages: Vec<&'a ForwardedMessage>,
}

/// A message queued for a member, with the `AckGate` ticket its publisher's acknowledgement
/// waits for (0: none).
type Queued = (Arc<ForwardedMessage>, u64);

/// The task behind a [`ForwardLink`].
struct Sender {
    gate: Arc<AckGate>,
    counts: Arc<LinkCounts>,
    peers: Arc<Peers>,
    id: u64,
    name: String,
    epoch: u64,
    capacity: usize,
    next_seq: u64,
    /// QoS 1/2 messages sent and not acknowledged, oldest first, with their gate tickets.
    unacked: VecDeque<(u64, Arc<ForwardedMessage>, u64)>,
}

impl Sender {
    async fn run(mut self, mut rx: mpsc::Receiver<Queued>, stop: CancellationToken) {
        let mut backoff = BACKOFF_MIN;
        loop {
            let served = tokio::select! {
                r = self.serve(&mut rx) => r,
                () = stop.cancelled() => return,
            };
            match served {
                Ok(()) => return, // every handle is gone
                Err(e) => {
                    self.counts.reconnects.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(target: "debug", node = %self.name, error = %e,
                        unacked = self.unacked.len(), "forward link down; retrying");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = stop.cancelled() => return,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// One stream: resend what was not acknowledged, then forward until it fails.
    async fn serve(&mut self, rx: &mut mpsc::Receiver<Queued>) -> Result<(), String> {
        let conn = self
            .peers
            .connection(self.id)
            .await
            .map_err(|e| e.to_string())?;
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        let open = PeerRequest::Forward { epoch: self.epoch };
        write_frame(&mut send, &open)
            .await
            .map_err(|e| e.to_string())?;
        self.resend(&mut send).await.map_err(|e| e.to_string())?;
        let mut reader = FrameReader::new(MAX_PEER_FRAME);
        loop {
            let room = self.unacked.len() < self.capacity;
            tokio::select! {
                first = rx.recv(), if room => {
                    let Some(first) = first else { return Ok(()) };
                    self.send_batch(&mut send, first, rx).await.map_err(|e| e.to_string())?;
                }
                ack = reader.next::<ForwardAck>(&mut recv) => {
                    match ack.map_err(|e| e.to_string())? {
                        Some(ack) => self.acked(ack.upto_seq),
                        None => return Err("the member closed the stream".into()),
                    }
                }
            }
        }
    }

    /// Sends `first` and whatever else is waiting, up to a batch.
    async fn send_batch(
        &mut self,
        send: &mut SendStream,
        first: Queued,
        rx: &mut mpsc::Receiver<Queued>,
    ) -> Result<(), MonitorError> {
        let now = Instant::now();
        let mut batch = Vec::new();
        let mut bytes = 0;
        let mut next = Some(first);
        while let Some((m, ticket)) = next.take() {
            match on_wire(&m, now) {
                Some(m) => {
                    bytes += m.payload.len();
                    batch.push((m, ticket));
                }
                None => {
                    // Expired: nothing more to wait for.
                    self.gate.settle(self.id, [ticket]);
                    self.expired(&m);
                }
            }
            if batch.len() < BATCH_MESSAGES
                && bytes < BATCH_BYTES
                && self.unacked.len() + batch.len() < self.capacity
            {
                next = rx.try_recv().ok();
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        let first_seq = self.next_seq;
        self.next_seq += batch.len() as u64;
        for (i, (m, ticket)) in batch.iter().enumerate() {
            if m.qos > 0 {
                self.unacked
                    .push_back((first_seq + i as u64, m.clone(), *ticket));
            }
        }
        let frame = ForwardBatchOut {
            first_seq,
            messages: batch.iter().map(|(m, _)| &**m).collect(),
        };
        write_frame(send, &frame).await?;
        self.count_sent(frame.messages.iter().copied());
        Ok(())
    }

    /// Counts messages written to the member, and what is left unacknowledged.
    fn count_sent<'a>(&self, sent: impl Iterator<Item = &'a ForwardedMessage>) {
        let (mut messages, mut bytes) = (0, 0);
        for m in sent {
            messages += 1;
            bytes += (m.topic.len() + m.payload.len()) as u64;
        }
        let c = &self.counts;
        c.messages.fetch_add(messages, Ordering::Relaxed);
        c.bytes.fetch_add(bytes, Ordering::Relaxed);
        c.unacked
            .store(self.unacked.len() as u64, Ordering::Relaxed);
    }

    /// Sends every unacknowledged message again, with its sequence number, in runs of
    /// consecutive numbers.
    async fn resend(&mut self, send: &mut SendStream) -> Result<(), MonitorError> {
        let now = Instant::now();
        let mut expired = Vec::new();
        let mut settled = Vec::new();
        self.unacked.retain(|(_, m, ticket)| {
            let live = m.expires_at.is_none_or(|at| at > now);
            if !live {
                expired.push(m.clone());
                settled.push(*ticket);
            }
            live
        });
        self.gate.settle(self.id, settled);
        for m in &expired {
            self.expired(m);
        }
        let mut i = 0;
        while i < self.unacked.len() {
            let first_seq = self.unacked[i].0;
            let mut messages = Vec::new();
            while i < self.unacked.len()
                && self.unacked[i].0 == first_seq + messages.len() as u64
                && messages.len() < BATCH_MESSAGES
            {
                let mut m = (*self.unacked[i].1).clone();
                if let Some(at) = m.expires_at {
                    m.properties.message_expiry_secs = Some(remaining_secs(at, now));
                }
                messages.push(m);
                i += 1;
            }
            let batch = ForwardBatch {
                first_seq,
                messages,
            };
            write_frame(send, &batch).await?;
            self.count_sent(batch.messages.iter());
        }
        Ok(())
    }

    /// A message whose expiry interval passed before it could be sent to the member.
    fn expired(&self, m: &ForwardedMessage) {
        tracing::debug!(target: "resource", node = %self.name, topic = %m.topic,
            "message expired on its way to another node: dropped");
    }

    fn acked(&mut self, upto: u64) {
        let mut tickets = Vec::new();
        while self.unacked.front().is_some_and(|(seq, ..)| *seq <= upto) {
            if let Some((_, _, ticket)) = self.unacked.pop_front() {
                tickets.push(ticket);
            }
        }
        if tickets.iter().any(|t| *t != 0) {
            self.gate.settle(self.id, tickets);
        }
        self.counts
            .unacked
            .store(self.unacked.len() as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::receive::{local_message, ForwardBatchIn};
    use super::*;
    use bytes::Bytes;

    fn message(n: u8) -> ForwardedMessage {
        qos1(&format!("t/{n}"), Bytes::from(vec![n; 3]))
    }

    /// A QoS 1 message on `topic`, as it is forwarded.
    pub(super) fn qos1(topic: &str, payload: Bytes) -> ForwardedMessage {
        ForwardedMessage {
            topic: topic.into(),
            payload,
            qos: 1,
            retain: false,
            properties: Default::default(),
            publisher: String::new(),
            share: None,
            expires_at: None,
        }
    }

    #[test]
    fn the_borrowing_batch_is_the_batch_on_the_wire() {
        let messages = [message(1), message(2)];
        let out = ForwardBatchOut {
            first_seq: 7,
            messages: messages.iter().collect(),
        };
        let bytes = postcard::to_allocvec(&out).unwrap();
        let back: ForwardBatch = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.first_seq, 7);
        assert_eq!(back.messages.len(), 2);
        assert_eq!(&*back.messages[1].topic, "t/2");
        assert_eq!(&back.messages[1].payload[..], &[2, 2, 2]);
        // The receiver's borrowing reader sees the same, its payloads slices of the frame.
        let frame = Bytes::from(bytes);
        let batch: ForwardBatchIn<'_> = postcard::from_bytes(&frame).unwrap();
        assert_eq!(batch.first_seq, 7);
        let m = local_message(
            batch.messages.into_iter().nth(1).unwrap(),
            &frame,
            Instant::now(),
        );
        assert_eq!(&*m.topic, "t/2");
        assert_eq!(&m.payload[..], &[2, 2, 2]);
        assert!(!m.retain);
    }

    #[test]
    fn a_copy_goes_with_its_retain_flag_and_what_remains_of_its_expiry() {
        let t0 = Instant::now();
        let mut m = message(1);
        m.retain = true;
        m.properties.message_expiry_secs = Some(60);
        m.expires_at = Some(t0 + Duration::from_secs(60));
        let m = Arc::new(m);
        assert!(
            on_wire(&m, t0 + Duration::from_secs(60)).is_none(),
            "expired: not sent"
        );
        let sent = on_wire(&m, t0 + Duration::from_millis(20_500)).unwrap();
        assert_eq!(sent.properties.message_expiry_secs, Some(40));
        let bytes = postcard::to_allocvec(&ForwardBatchOut {
            first_seq: 1,
            messages: vec![&*sent],
        })
        .unwrap();
        let frame = Bytes::from(bytes);
        let batch: ForwardBatchIn<'_> = postcard::from_bytes(&frame).unwrap();
        let arrived = t0 + Duration::from_secs(30);
        let local = local_message(batch.messages.into_iter().next().unwrap(), &frame, arrived);
        assert!(local.retain, "the retain flag as published");
        assert_eq!(local.expires_at, Some(arrived + Duration::from_secs(40)));
        // A message without an interval goes as it is.
        let plain = Arc::new(message(2));
        assert!(Arc::ptr_eq(&on_wire(&plain, t0).unwrap(), &plain));
    }
}
