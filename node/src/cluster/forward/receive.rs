//! The receiving end of a member's message stream: each new message routed to this node's
//! sessions, each batch acknowledged once its messages are in their queues, durable (for
//! persistent sessions) and copied to those sessions' backups.
//!
//! Batches are taken while earlier ones wait (`cluster::settling`): a batch's fsync and its
//! backups' round trip overlap with the next batches instead of coming one after the other
//! (the sender keeps up to `cluster.forward_queue` messages unacknowledged). Acknowledgements
//! are cumulative and go in order, one for the newest batch settled.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use fubar_monitor::wire::{write_frame, FrameReader};
use fubar_monitor::MonitorError;
use quinn::{RecvStream, SendStream};

use super::super::peer_wire::{ForwardAck, MAX_PEER_FRAME};
use super::super::settling::{Awaited, Settling, Watches};
use crate::broker::persist::message_of;
use crate::broker::publish::Origin;
use crate::broker::Broker;
use crate::mqtt::message::Message;

/// What a node remembers of each sender's stream, to drop messages sent again.
#[derive(Debug, Default)]
pub struct Delivered {
    /// Per sending node: its epoch and the highest sequence number delivered.
    last: Mutex<HashMap<String, (u64, u64)>>,
}

impl Delivered {
    fn last(&self, node: &str, epoch: u64) -> u64 {
        let last = self.last.lock();
        match last.get(node) {
            Some((e, seq)) if *e == epoch => *seq,
            _ => 0,
        }
    }

    fn set(&self, node: &str, epoch: u64, seq: u64) {
        self.last.lock().insert(node.to_owned(), (epoch, seq));
    }
}

/// A batch taken and not acknowledged yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Taken {
    /// The sequence number its acknowledgement names (its last message's).
    upto: u64,
    /// The highest sequence number delivered once it is acknowledged.
    last: u64,
}

/// Serves a message stream from member `node` (after its `Forward` request): routes each new
/// message to this node's sessions, and acknowledges the batches in order once delivered,
/// with at most `cluster.receive_window` of them waiting.
pub async fn receive(
    broker: Arc<Broker>,
    delivered: Arc<Delivered>,
    node: String,
    epoch: u64,
    mut send: SendStream,
    mut recv: RecvStream,
    mut reader: FrameReader,
) -> Result<(), MonitorError> {
    reader.set_max(MAX_PEER_FRAME);
    let watches = Watches::new(broker.store.as_deref(), broker.gate.as_ref());
    let window = broker.settings().cluster.receive_window;
    let mut pending: Settling<Taken> = Settling::new(window, watches);
    // The highest sequence number taken, delivered or waiting: what comes again is dropped.
    let mut last = delivered.last(&node, epoch);
    let mut open = true;
    loop {
        let (settled, failed) = pending.settled();
        if let Some(newest) = settled.last() {
            delivered.set(&node, epoch, newest.last);
            write_frame(
                &mut send,
                &ForwardAck {
                    upto_seq: newest.upto,
                },
            )
            .await?;
        }
        if let Some(e) = failed {
            // Not acknowledged, nor counted as delivered: the sender keeps the batch and
            // sends it again on a new stream (a copy already queued here may come twice).
            tracing::error!(target: "error", node = %node, error = %e,
                "forwarded messages not stored: the batch is not acknowledged");
            return Err(MonitorError::Net {
                op: "storing forwarded messages",
                source: std::io::Error::other(e),
            });
        }
        if !open && pending.is_empty() {
            return Ok(());
        }
        tokio::select! {
            body = reader.next_body(&mut recv), if open && pending.has_room() => {
                let Some(body) = body? else {
                    open = false;
                    continue;
                };
                last = last.max(delivered.last(&node, epoch));
                let (awaited, taken) = take(&broker, body, last)?;
                last = taken.last;
                // Nothing after a failed batch is acknowledged: read no more.
                open = awaited.error.is_none();
                pending.push(awaited, taken);
            }
            changed = pending.changed(), if !pending.is_empty() => {
                changed.map_err(|e| MonitorError::Net {
                    op: "storing forwarded messages",
                    source: std::io::Error::other(e),
                })?;
            }
        }
    }
}

/// Routes the messages of one batch frame numbered above `last` to this node's sessions;
/// returns what the batch waits for and what acknowledges it.
fn take(broker: &Broker, body: Vec<u8>, last: u64) -> Result<(Awaited, Taken), MonitorError> {
    // Payloads stay slices of the frame: no copy per message.
    let body = Bytes::from(body);
    let batch: ForwardBatchIn<'_> = postcard::from_bytes(&body)
        .map_err(|e| MonitorError::Protocol(format!("bad forward batch: {e}")))?;
    let mut taken = Taken { upto: last, last };
    let mut stored = false;
    let mut error: Option<String> = None;
    let copies_after = broker.gate.as_ref().map_or(0, |g| g.last());
    // One arrival time for the batch: no clock read per message.
    let arrived = Instant::now();
    for (i, m) in batch.messages.into_iter().enumerate() {
        let seq = batch.first_seq + i as u64;
        taken.upto = seq;
        if seq <= taken.last {
            continue; // sent again after a reconnection: delivered already
        }
        taken.last = seq;
        let share = m.share;
        let message = Arc::new(local_message(m, &body, arrived));
        let routed = broker.publish(message, Origin::Forwarded { share }).routed;
        stored |= routed.stored;
        if error.is_none() {
            error = routed.store_error.map(|e| e.to_string());
        }
    }
    let awaited = Awaited {
        // Copies of what was queued here for persistent sessions, on their backups.
        copies: (copies_after, broker.gate.as_ref().map_or(0, |g| g.last())),
        ticket: match (&broker.store, stored) {
            (Some(store), true) => store.ticket(),
            _ => 0,
        },
        error,
    };
    Ok((awaited, taken))
}

/// A [`super::ForwardBatch`] as it is read, borrowing from the frame (same wire format).
#[derive(serde::Deserialize)]
pub(super) struct ForwardBatchIn<'a> {
    pub(super) first_seq: u64,
    #[serde(borrow)]
    pub(super) messages: Vec<ForwardedIn<'a>>,
}

/// A [`super::ForwardedMessage`] as it is read, borrowing from the frame (same wire format).
#[derive(serde::Deserialize)]
pub(super) struct ForwardedIn<'a> {
    topic: &'a str,
    payload: &'a [u8],
    qos: u8,
    retain: bool,
    properties: fubar_store::records::StoredProperties,
    publisher: &'a str,
    share: Option<&'a str>,
}

/// A forwarded message as this node routes it, arrived at `now`: with the retain flag it
/// was published with, and its expiry interval (what remained of it when it was sent)
/// counted from now. Its payload is a slice of `frame`.
pub(super) fn local_message(m: ForwardedIn<'_>, frame: &Bytes, now: Instant) -> Message {
    let mut message = message_of(fubar_store::records::StoredMessage {
        topic: String::new(),
        payload: Vec::new(),
        qos: m.qos,
        retain: m.retain,
        properties: m.properties,
        expires_at_ms: None,
    });
    message.topic = m.topic.into();
    message.payload = frame.slice_ref(m.payload);
    message.publisher = (!m.publisher.is_empty()).then(|| m.publisher.into());
    message.expiring_from(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivered_numbers_are_per_sender_and_epoch() {
        let d = Delivered::default();
        assert_eq!(d.last("n1", 5), 0);
        d.set("n1", 5, 10);
        assert_eq!(d.last("n1", 5), 10);
        assert_eq!(d.last("n1", 6), 0, "a new boot epoch starts again");
        assert_eq!(d.last("n2", 5), 0);
    }
}
