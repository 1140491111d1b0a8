//! The backup's side of a replication stream: each entry written to this node's copies of
//! other nodes' sessions, the batch acknowledged once durable. An entry from an older epoch
//! than the copy here, or than the placement the cluster recorded, is refused (`fenced` in the
//! answer, a `warning` here): its sender was replaced as the session's primary.

use std::sync::Arc;

use fubar_monitor::wire::{write_frame, FrameReader};
use fubar_monitor::MonitorError;
use fubar_store::Store;
use quinn::{RecvStream, SendStream};

use crate::cluster::peer_wire::{ReplicaAck, ReplicaBatch, ReplicaEntry, MAX_PEER_FRAME};
use crate::cluster::settling::{Awaited, Settling, Watches};
use crate::cluster::view::ReplicatedView;

/// Serves a replication stream from member `node` until it ends, with at most `window`
/// batches waiting for their fsync.
pub async fn receive(
    store: Arc<Store>,
    view: &ReplicatedView,
    node: &str,
    window: usize,
    mut send: SendStream,
    mut recv: RecvStream,
    mut reader: FrameReader,
) -> Result<(), MonitorError> {
    reader.set_max(MAX_PEER_FRAME);
    // Group commit: batches keep being read and applied while earlier ones wait for their
    // fsync; each is acknowledged, in order, once the store reports its ticket durable. A
    // batch's acknowledgement still never precedes its durability.
    let mut pending: Settling<ReplicaAck> = Settling::new(window, Watches::new(Some(&store), None));
    let mut open = true;
    loop {
        let (settled, failed) = pending.settled();
        for ack in &settled {
            write_frame(&mut send, ack).await?;
        }
        if let Some(e) = failed {
            tracing::error!(target: "error", node, error = %e,
                "session copies not made durable: the batch is not acknowledged");
            return Err(storing_copies(e));
        }
        if !open && pending.is_empty() {
            return Ok(());
        }
        tokio::select! {
            batch = reader.next::<ReplicaBatch>(&mut recv), if open && pending.has_room() => {
                let Some(batch) = batch? else {
                    open = false;
                    continue;
                };
                let mut fenced = Vec::new();
                for entry in &batch.entries {
                    if let Some(newer) = apply(&store, view, node, entry)? {
                        fenced.push((entry.client_id.clone(), newer));
                    }
                }
                let upto_seq = batch.first_seq + batch.entries.len() as u64 - 1;
                let awaited = Awaited {
                    ticket: store.ticket(),
                    ..Awaited::default()
                };
                pending.push(awaited, ReplicaAck { upto_seq, fenced });
            }
            changed = pending.changed(), if !pending.is_empty() => {
                changed.map_err(storing_copies)?;
            }
        }
    }
}

/// The error that ends the stream when copies could not be made durable.
fn storing_copies(e: String) -> MonitorError {
    MonitorError::Net {
        op: "storing session copies",
        source: std::io::Error::other(e),
    }
}

/// Applies one entry; returns the newer epoch that refused it, if one did.
fn apply(
    store: &Store,
    view: &ReplicatedView,
    node: &str,
    entry: &ReplicaEntry,
) -> Result<Option<u64>, MonitorError> {
    let client = entry.client_id.as_str();
    let placed = view.placement(client).map(|p| p.epoch);
    let result = match placed.filter(|p| *p > entry.epoch) {
        Some(newer) => Err(newer),
        None => store
            .apply_replica(client, entry.epoch, &entry.ops)
            .map_err(|e| {
                tracing::error!(target: "error", client, node, error = %e,
                    "cannot store a session copy");
                MonitorError::Net {
                    op: "storing a session copy",
                    source: std::io::Error::other(e.to_string()),
                }
            })?
            .map_err(|stale| stale.held),
    };
    match result {
        Ok(_) => Ok(None),
        Err(newer) => {
            tracing::warn!(target: "warning", client, node, epoch = entry.epoch, newer,
                "session writes from a stale epoch refused: the sender no longer holds it");
            Ok(Some(newer))
        }
    }
}
