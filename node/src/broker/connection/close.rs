//! How a connection ends: an MQTT 5.0 client is told why, the client leaves its session (its
//! will published or delayed, its share-group messages handed over), the last bytes are
//! flushed and the input drained so that the kernel does not reset what was said, and the
//! `access` event says how it ended.

use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::super::registry::WillDelay;
use super::{Client, Connection};
use crate::broker::session_end::SessionEnd;
use crate::mqtt::connection::CloseReason;
use crate::mqtt::message::Message;

impl<R, W> Connection<R, W>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    /// Tells an MQTT 5.0 client why the server ends its connection (the flush in `finish`
    /// writes it).
    fn tell_why(&mut self, reason: &CloseReason) {
        self.proto.close(reason);
        self.send_transmits();
    }

    /// The client leaves: its unacknowledged shared-subscription messages go to other
    /// members, its will is published or delayed, and its session is released (or ends).
    fn leave(&self, client: &Client, reason: &CloseReason) {
        let now = Instant::now();
        // A member of share groups leaving: what it has not acknowledged goes to another
        // member (MQTT 5.0 4.8.2). Not on takeover (the new connection resends it) nor at
        // shutdown (a persistent session keeps it).
        let shared_left = if matches!(reason, CloseReason::TakenOver | CloseReason::ServerShutdown)
        {
            Vec::new()
        } else {
            let mut slot = client.handle.lock();
            if slot.is_owned_by(self.conn_id) {
                let left = slot.session.take_shared(None);
                slot.submit_or_log("shared messages handed over");
                left
            } else {
                Vec::new()
            }
        };
        // MQTT 5.0 will delay: the will waits (in the registry) while the session lives, and
        // is dropped if the client comes back in time.
        let mut delayed = None;
        if let Some(will) = client.will.as_ref().filter(|_| reason.publishes_will()) {
            match will.properties.will_delay_interval.filter(|d| *d > 0) {
                Some(secs) => delayed = Some((will.clone(), Duration::from_secs(u64::from(secs)))),
                None => {
                    tracing::info!(target: "access", client = %client.id, topic = %will.topic, "publishing will");
                    let _ = self.route(Message::from_will(will), now);
                }
            }
        }
        let ended = self
            .broker
            .registry
            .detach(&client.handle, self.conn_id, now);
        super::super::shared::hand_over(&self.broker, &client.id, shared_left);
        if let Some((will, delay)) = delayed {
            match self
                .broker
                .registry
                .delay_will(&client.handle, *will, delay, now)
            {
                WillDelay::PublishNow(will) => {
                    self.broker.publish_will(&client.id, &will, "session ended")
                }
                WillDelay::Delayed => {
                    tracing::info!(target: "access", client = %client.id, delay_secs = delay.as_secs(), "will delayed")
                }
                WillDelay::Dropped => {
                    tracing::info!(target: "access", client = %client.id, "will dropped: the session has a new connection")
                }
            }
        }
        if ended {
            self.broker.end_session(&client.handle, SessionEnd::Closed);
        }
    }

    /// Ends the connection: tells the client why, leaves the session, flushes what can be
    /// flushed, drains the input and logs how it ended.
    pub(super) async fn finish(mut self, reason: CloseReason) {
        // Nobody waits for input that is thrown away from now on (see `arrival`).
        self.reader.ignore();
        self.tell_why(&reason);
        // The session is released before the last bytes are flushed: a client reconnecting
        // at once finds it as the end of this connection left it.
        let client = self.client.take();
        if let Some(client) = &client {
            self.leave(client, &reason);
        }
        // So is its `mqtt.max_connections` slot: the flush and drain below may take up to
        // `mqtt.close_flush_ms`, and must not keep a returning client out.
        drop(self.slot.take());
        // A stalled reader gets its bounded try too: its DISCONNECT (0x97) is sent if the
        // socket takes it.
        if !matches!(reason, CloseReason::SocketError(_)) {
            let flush = Duration::from_millis(self.settings.mqtt.close_flush_ms);
            let deadline = tokio::time::Instant::now() + flush;
            let shut = tokio::time::timeout_at(deadline, async {
                self.writer.write_all_buf(&mut self.wbuf).await?;
                // Half-close (TLS: close_notify, then FIN): the client reads our last packet
                // and then the end of the stream.
                self.writer.shutdown().await
            })
            .await;
            // Closing a socket with unread input makes the kernel send a reset, which can
            // destroy the DISCONNECT (or refusing CONNACK) before the client reads it: read
            // and discard what the client still sends, until it closes, `close_flush_ms`
            // passes or `close_drain_bytes` have come (issue 15.3). Not after a close the
            // client asked for or made itself: nothing more is coming then.
            let drain = !matches!(
                reason,
                CloseReason::SocketClosed
                    | CloseReason::ClientDisconnect
                    | CloseReason::ClientDisconnectWithWill
            );
            if drain && matches!(shut, Ok(Ok(()))) {
                let limit = self.settings.mqtt.close_drain_bytes;
                let _ =
                    tokio::time::timeout_at(deadline, drain_input(&mut self.reader, limit)).await;
            }
        }
        let Some(client) = client else {
            tracing::info!(target: "access", peer = %self.peer, transport = self.transport, %reason, "disconnected before CONNECT");
            return;
        };
        let level = client.protocol;
        if self.broker.tracer.client_traced(&client.id) {
            tracing::info!(target: "trace", client = %client.id, peer = %self.peer, %reason, "disconnected");
        }
        match reason {
            CloseReason::ClientDisconnect
            | CloseReason::ClientDisconnectWithWill
            | CloseReason::ServerShutdown => {
                tracing::info!(target: "access", client = %client.id, peer = %self.peer, transport = self.transport, protocol = %level, %reason, "disconnected");
            }
            _ => {
                tracing::warn!(target: "access", client = %client.id, peer = %self.peer, transport = self.transport, protocol = %level, %reason, "disconnected");
            }
        }
    }
}

/// Reads and discards input until the peer closes, a read fails or `limit` bytes came.
async fn drain_input<R: AsyncRead + Unpin>(reader: &mut R, limit: usize) {
    // On the heap, and only while draining: an array here sat in every connection's task.
    let mut buf = vec![0u8; 4096];
    let mut seen = 0usize;
    while seen < limit {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => seen += n,
        }
    }
}
