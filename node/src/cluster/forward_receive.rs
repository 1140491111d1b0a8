//! The receiving end of a member's message stream (`forward`): each batch's messages are
//! routed to this node's sessions as the batch arrives, and the batch is acknowledged once
//! what it queued for persistent sessions is durable here and, with `session.replicas`, copied
//! to those sessions' backups.
//!
//! Pipelined, as the backup's group commit is: batches keep being read and routed while earlier
//! ones wait for their fsync and their copies, and acknowledgements go in order, each once its
//! batch and every batch before it are settled. Waiting per batch instead made every batch
//! pay a whole fsync and a backup round trip before the next was read (forwarded QoS 1 into
//! replicated sessions ran at 0.014 of the unreplicated figure).
//!
//! Bounded by the sender: it keeps at most `cluster.forward_queue` messages unacknowledged,
//! so at most as many batches wait here.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use fubar_monitor::wire::{write_frame, FrameReader};
use fubar_monitor::MonitorError;
use quinn::{RecvStream, SendStream};

use super::forward::{local_message, Delivered, ForwardBatchIn};
use super::peer_wire::{ForwardAck, MAX_PEER_FRAME};
use crate::broker::publish::Origin;
use crate::broker::Broker;

/// A batch routed and not yet acknowledged.
#[derive(Debug)]
struct Pending {
    /// The store's ticket for what the batch queued for persistent sessions, if it did.
    ticket: Option<u64>,
    /// The copies made for backups while it was routed: `(after, upto]` in the ack gate.
    copies: Option<(u64, u64)>,
    /// The batch's last sequence number (the acknowledgement).
    upto: u64,
    /// The highest sequence number delivered once it is acknowledged.
    last: u64,
}

/// Where a pending batch stands.
enum Settled {
    Not,
    Done,
    Failed(String),
}

/// Serves a message stream from member `node` (after its `Forward` request) until it ends.
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
    let mut durable = broker.store.as_ref().map(|s| s.durable_watch());
    let mut settled = broker.gate.as_ref().map(|g| g.watch());
    let mut pending: VecDeque<Pending> = VecDeque::new();
    // Delivered here, acknowledged or not: a batch sent again is routed once.
    let mut last = delivered.last(&node, epoch);
    let mut open = true;
    loop {
        // Acknowledge, once, the newest batch settled with every batch before it.
        let mut acked = None;
        while let Some(front) = pending.front() {
            match settle(&broker, front, durable.as_mut(), settled.as_mut()) {
                Settled::Not => break,
                Settled::Done => acked = pending.pop_front(),
                Settled::Failed(e) => return Err(not_stored(&node, e)),
            }
        }
        if let Some(batch) = acked {
            delivered.set(&node, epoch, batch.last);
            write_frame(
                &mut send,
                &ForwardAck {
                    upto_seq: batch.upto,
                },
            )
            .await?;
        }
        if !open && pending.is_empty() {
            return Ok(());
        }
        tokio::select! {
            body = reader.next_body(&mut recv), if open => match body? {
                Some(body) => {
                    let batch = route(&broker, Bytes::from(body), &mut last)?;
                    if let Some(e) = batch.1 {
                        return Err(not_stored(&node, e));
                    }
                    pending.push_back(batch.0);
                }
                None => open = false,
            },
            r = changed(durable.as_mut()), if pending.front().is_some_and(|p| p.ticket.is_some()) => {
                r?;
            }
            r = changed(settled.as_mut()), if pending.front().is_some_and(|p| p.copies.is_some()) => {
                r?;
            }
        }
    }
}

/// Routes one batch's new messages; the batch to acknowledge later, and the error of a store
/// write that failed (then nothing of it is acknowledged).
fn route(
    broker: &Broker,
    body: Bytes,
    last: &mut u64,
) -> Result<(Pending, Option<String>), MonitorError> {
    // Payloads stay slices of the frame: no copy per message.
    let batch: ForwardBatchIn<'_> = postcard::from_bytes(&body)
        .map_err(|e| MonitorError::Protocol(format!("bad forward batch: {e}")))?;
    let mut stored = false;
    let mut store_error = None;
    let mut upto = *last;
    let copies_after = broker.gate.as_ref().map_or(0, |g| g.last());
    // One arrival time for the batch: no clock read per message.
    let arrived = Instant::now();
    for (i, m) in batch.messages.into_iter().enumerate() {
        let seq = batch.first_seq + i as u64;
        upto = seq;
        if seq <= *last {
            continue; // sent again after a reconnection: delivered already
        }
        *last = seq;
        let share = m.share;
        let message = Arc::new(local_message(m, &body, arrived));
        let routed = broker.publish(message, Origin::Forwarded { share }).routed;
        stored |= routed.stored;
        if store_error.is_none() {
            store_error = routed.store_error.map(|e| e.to_string());
        }
    }
    let ticket = stored
        .then(|| broker.store.as_ref().map(|s| s.ticket()))
        .flatten();
    let copies = broker
        .gate
        .as_ref()
        .map(|g| (copies_after, g.last()))
        .filter(|(after, upto)| upto > after);
    let batch = Pending {
        ticket,
        copies,
        upto,
        last: *last,
    };
    Ok((batch, store_error))
}

/// Whether `batch`'s writes are durable and its copies made, as far as the watches have seen.
fn settle(
    broker: &Broker,
    batch: &Pending,
    durable: Option<&mut tokio::sync::watch::Receiver<fubar_store::Durable>>,
    settled: Option<&mut tokio::sync::watch::Receiver<u64>>,
) -> Settled {
    if let (Some(ticket), Some(durable)) = (batch.ticket, durable) {
        match durable.borrow_and_update().outcome(ticket) {
            None => return Settled::Not,
            Some(Err(e)) => return Settled::Failed(e.to_string()),
            Some(Ok(())) => {}
        }
    }
    if let (Some((after, upto)), Some(settled), Some(gate)) =
        (batch.copies, settled, broker.gate.as_ref())
    {
        if *settled.borrow_and_update() < upto {
            return Settled::Not;
        }
        if gate.outcome(after, upto) == Some(false) {
            return Settled::Failed("a session backup did not confirm its copy".into());
        }
    }
    Settled::Done
}

/// Completes when the watch changes (never without one).
async fn changed<T>(
    watch: Option<&mut tokio::sync::watch::Receiver<T>>,
) -> Result<(), MonitorError> {
    match watch {
        Some(w) => w.changed().await.map_err(|_| MonitorError::Net {
            op: "storing forwarded messages",
            source: std::io::Error::other("the store's or the backups' watch closed"),
        }),
        None => std::future::pending().await,
    }
}

/// A batch whose messages could not be stored: not acknowledged, nor counted as delivered;
/// the sender keeps it and sends it again on a new stream (a copy already queued here may
/// come twice).
fn not_stored(node: &str, error: String) -> MonitorError {
    tracing::error!(target: "error", node = %node, error = %error,
        "forwarded messages not stored: the batch is not acknowledged");
    MonitorError::Net {
        op: "storing forwarded messages",
        source: std::io::Error::other(error),
    }
}
