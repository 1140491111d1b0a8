//! The stream of session journal writes to one backup.
//!
//! One long-lived QUIC stream per backup, as the forward links: entries in batches with
//! consecutive sequence numbers, acknowledged by the backup once durable. The sender keeps
//! what is not acknowledged and sends it again, in order, on a new stream after the link
//! drops (the writes are idempotent when replayed in order). Each entry carries the ticket of
//! the acknowledgements waiting on it (`AckGate`): settled by the backup's answer, failed when
//! the answer takes longer than `cluster.replica_ack_timeout_ms` (a `warning`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fubar_monitor::wire::{write_frame, FrameReader};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::broker::ack_gate::AckGate;
use crate::cluster::peer_wire::{PeerRequest, ReplicaAck, ReplicaEntry, MAX_PEER_FRAME};
use crate::cluster::peers::Peers;

/// Entries per batch frame, at most.
const BATCH_ENTRIES: usize = 1024;
/// First and longest wait before dialing a backup again.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// An entry queued for a backup, with its ticket.
type Queued = (Arc<ReplicaEntry>, u64);

/// The gate's link id of the replication stream to member `node` (forward links use the
/// node id itself).
pub fn gate_link(node: u64) -> u64 {
    node ^ 0x5eb1_1ca5_0000_0000
}

/// What a backup refused: (client id, the newer epoch it holds), for the member to fence.
pub type Fenced = mpsc::Sender<(String, u64)>;

/// The sending end of the replication stream to one backup.
#[derive(Debug)]
pub struct ReplicaLink {
    queue: mpsc::Sender<Queued>,
    gate: Arc<AckGate>,
    link: u64,
}

/// What a link is started with.
pub struct LinkConfig {
    /// The backup's id and name.
    pub id: u64,
    /// Its name, for events.
    pub name: String,
    /// This node's boot epoch.
    pub boot: u64,
    /// `cluster.replica_queue`.
    pub capacity: usize,
    /// `cluster.replica_ack_timeout_ms`.
    pub ack_timeout: Duration,
}

impl ReplicaLink {
    /// Starts the link.
    pub fn start(
        peers: Arc<Peers>,
        gate: Arc<AckGate>,
        config: LinkConfig,
        fenced: Fenced,
        stop: CancellationToken,
    ) -> Self {
        let capacity = config.capacity.max(1);
        let (queue, rx) = mpsc::channel(capacity);
        let link = gate_link(config.id);
        let sender = Sender {
            peers,
            gate: gate.clone(),
            link,
            config,
            fenced,
            next_seq: 1,
            unacked: VecDeque::new(),
            timed_out: false,
        };
        tokio::spawn(sender.run(rx, stop));
        Self { queue, gate, link }
    }

    /// Queues `entry` (ticket `ticket`); false (the ticket failed) when the queue is full.
    pub fn send(&self, entry: Arc<ReplicaEntry>, ticket: u64) -> bool {
        let sent = self.queue.try_send((entry, ticket)).is_ok();
        if !sent {
            self.gate.fail(self.link, [ticket]);
        }
        sent
    }
}

/// The task behind a [`ReplicaLink`].
struct Sender {
    peers: Arc<Peers>,
    gate: Arc<AckGate>,
    link: u64,
    config: LinkConfig,
    fenced: Fenced,
    next_seq: u64,
    /// Sent and not acknowledged, oldest first: (seq, entry, ticket, when sent).
    unacked: VecDeque<(u64, Arc<ReplicaEntry>, u64, Instant)>,
    /// The oldest unacknowledged entry passed the timeout (reported once until answered).
    timed_out: bool,
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
                Ok(()) => return,
                Err(e) => tracing::debug!(target: "debug", node = %self.config.name, error = %e,
                    unacked = self.unacked.len(), "replication link down; retrying"),
            }
            // Entries keep coming while the backup is away: their tickets time out.
            let until = tokio::time::Instant::now() + backoff;
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(until) => break,
                    () = stop.cancelled() => return,
                    () = self.deadline() => self.time_out(),
                }
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// When the oldest unacknowledged entry times out (never while none waits).
    async fn deadline(&self) {
        match self.unacked.front().filter(|_| !self.timed_out) {
            Some((_, _, _, sent)) => {
                let at = *sent + self.config.ack_timeout;
                tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
            }
            None => std::future::pending().await,
        }
    }

    /// The backup did not answer in time: the acknowledgements waiting on it are refused.
    fn time_out(&mut self) {
        self.timed_out = true;
        let failed = self.gate.fail_link(self.link);
        tracing::warn!(target: "warning", node = %self.config.name, unacked = self.unacked.len(),
            refused = failed, timeout_ms = self.config.ack_timeout.as_millis() as u64,
            "session backup not answering: acknowledgements waiting on it are refused");
    }

    async fn serve(&mut self, rx: &mut mpsc::Receiver<Queued>) -> Result<(), String> {
        let conn = self
            .peers
            .connection(self.config.id)
            .await
            .map_err(|e| e.to_string())?;
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        let open = PeerRequest::Replicate {
            epoch: self.config.boot,
        };
        write_frame(&mut send, &open)
            .await
            .map_err(|e| e.to_string())?;
        self.resend(&mut send).await?;
        let mut reader = FrameReader::new(MAX_PEER_FRAME);
        loop {
            let room = self.unacked.len() < self.config.capacity;
            tokio::select! {
                first = rx.recv(), if room => {
                    let Some(first) = first else { return Ok(()) };
                    self.send_batch(&mut send, first, rx).await?;
                }
                ack = reader.next::<ReplicaAck>(&mut recv) => {
                    match ack.map_err(|e| e.to_string())? {
                        Some(ack) => self.acked(ack),
                        None => return Err("the backup closed the stream".into()),
                    }
                }
                () = self.deadline() => self.time_out(),
            }
        }
    }

    async fn send_batch(
        &mut self,
        send: &mut quinn::SendStream,
        first: Queued,
        rx: &mut mpsc::Receiver<Queued>,
    ) -> Result<(), String> {
        let now = Instant::now();
        let mut entries = Vec::new();
        let mut next = Some(first);
        while let Some((entry, ticket)) = next.take() {
            let seq = self.next_seq;
            self.next_seq += 1;
            self.unacked.push_back((seq, entry.clone(), ticket, now));
            entries.push(entry);
            if entries.len() < BATCH_ENTRIES && self.unacked.len() < self.config.capacity {
                next = rx.try_recv().ok();
            }
        }
        let first_seq = self.next_seq - entries.len() as u64;
        write_batch(send, first_seq, &entries).await
    }

    /// Sends every unacknowledged entry again, in order.
    async fn resend(&mut self, send: &mut quinn::SendStream) -> Result<(), String> {
        let all: Vec<(u64, Arc<ReplicaEntry>)> = self
            .unacked
            .iter()
            .map(|(s, e, _, _)| (*s, e.clone()))
            .collect();
        for chunk in all.chunks(BATCH_ENTRIES) {
            let entries: Vec<Arc<ReplicaEntry>> = chunk.iter().map(|(_, e)| e.clone()).collect();
            write_batch(send, chunk[0].0, &entries).await?;
        }
        Ok(())
    }

    fn acked(&mut self, ack: ReplicaAck) {
        let mut tickets = Vec::new();
        while self
            .unacked
            .front()
            .is_some_and(|(seq, ..)| *seq <= ack.upto_seq)
        {
            if let Some((_, _, ticket, _)) = self.unacked.pop_front() {
                tickets.push(ticket);
            }
        }
        self.gate.settle(self.link, tickets);
        if self.timed_out {
            self.timed_out = false;
            tracing::info!(target: "info", node = %self.config.name,
                "session backup answering again");
        }
        for fenced in ack.fenced {
            if self.fenced.try_send(fenced).is_err() {
                tracing::warn!(target: "warning", node = %self.config.name,
                    "fencing queue full: a fenced session is handled at its next write");
            }
        }
    }
}

/// A [`ReplicaBatch`] as it is written, borrowing the entries (same wire format).
#[derive(serde::Serialize)]
struct BatchOut<'a> {
    first_seq: u64,
    entries: Vec<&'a ReplicaEntry>,
}

async fn write_batch(
    send: &mut quinn::SendStream,
    first_seq: u64,
    entries: &[Arc<ReplicaEntry>],
) -> Result<(), String> {
    let out = BatchOut {
        first_seq,
        entries: entries.iter().map(|e| &**e).collect(),
    };
    write_frame(send, &out).await.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::peer_wire::ReplicaBatch;

    #[test]
    fn the_borrowing_batch_is_the_batch_on_the_wire() {
        let e = Arc::new(ReplicaEntry {
            client_id: "c".into(),
            epoch: 3,
            ops: vec![fubar_store::records::ReplicaOp::PutQos2(4)],
        });
        let bytes = postcard::to_allocvec(&BatchOut {
            first_seq: 5,
            entries: vec![&e],
        })
        .unwrap();
        let back: ReplicaBatch = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.first_seq, 5);
        assert_eq!(back.entries[0].epoch, 3);
        assert_ne!(gate_link(7), 7);
    }
}
