//! The acknowledgements of a client's QoS 1/2 PUBLISHes: each waits, in the order the
//! PUBLISHes came (MQTT-4.6.0-2), until the store says its message is durable; one whose
//! message could not be stored is refused instead of acknowledged (issue 24.1).

use std::sync::Arc;

use fubar_store::Durable;
use tokio::io::{AsyncRead, AsyncWrite};

use super::Connection;
use crate::mqtt::connection::CloseReason;
use crate::mqtt::packet::Packet;

/// Why an acknowledgement is refused when a copy on another member failed.
const NOT_COPIED: &str = "a copy on another member was not confirmed";

/// A PUBACK/PUBREC waiting for the fsync that makes its message durable.
pub(super) struct PendingAck {
    pub(super) ticket: u64,
    /// The tickets `(after, upto]` of copies on other members it waits for too.
    pub(super) copies: Option<(u64, u64)>,
    ack: Packet,
    /// The message's topic, named if the fsync fails.
    topic: Arc<str>,
    /// Set when a write for the message failed already: it is refused in its turn.
    error: Option<Arc<str>>,
}

impl<R, W> Connection<R, W>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    /// Sends the acknowledgements whose messages are durable now, in order; one whose fsync
    /// failed is refused instead (`refuse_unstored`), which closes a 3.1/3.1.1 connection.
    pub(super) fn release_durable_acks(&mut self) -> Result<(), CloseReason> {
        let durable = self.durable.as_ref().map_or(
            Durable {
                synced: u64::MAX,
                failed: 0,
            },
            |d| *d.borrow(),
        );
        while let Some(outcome) = self.pending_acks.front().and_then(|a| {
            let stored = durable.outcome(a.ticket)?;
            let copied = match (a.copies, &self.broker.gate) {
                (Some((after, upto)), Some(gate)) => gate.outcome(after, upto)?,
                _ => true,
            };
            Some(match stored {
                Ok(()) if !copied => Err(NOT_COPIED.to_owned()),
                Ok(()) => Ok(()),
                Err(e) => Err(e.to_string()),
            })
        }) {
            let Some(pending) = self.pending_acks.pop_front() else {
                break;
            };
            match (outcome, pending.error) {
                (Ok(()), None) => self.send_ack(&pending.ack),
                (_, Some(e)) => self.refuse_unstored(pending.ack, &pending.topic, &e)?,
                (Err(e), None) => self.refuse_unstored(pending.ack, &pending.topic, &e)?,
            }
        }
        Ok(())
    }

    /// A PUBLISH whose message could not be stored: an `error` event, and no acknowledgement
    /// saying it is safe. MQTT 5.0: `ack` (a PUBACK or PUBREC) goes with 0x80 and the reason,
    /// in its turn after the acknowledgements before it; 3.1/3.1.1 has no refusing code, so
    /// the connection is closed (the client sends the message again on a new one).
    pub(super) fn refuse_unstored(
        &mut self,
        ack: Packet,
        topic: &str,
        error: &str,
    ) -> Result<(), CloseReason> {
        let client = self.client_id().unwrap_or("-").to_owned();
        tracing::error!(target: "error", client, peer = %self.peer, topic, error,
            "message not stored: the publisher is not told it is safe");
        if let (Packet::PubRec(a), Some(c)) = (&ack, &self.client) {
            // The QoS 2 exchange ends here (an error PUBREC, or the connection closed): a
            // PUBLISH sent again with this packet id is routed and stored again, a possible
            // duplicate rather than a message lost.
            let mut slot = c.handle.lock();
            slot.session.release_qos2(a.packet_id);
            slot.submit_or_log("QoS 2 release after a message not stored");
        }
        let ack = self.proto.unstored_ack(ack, error)?;
        self.send_ack(&ack);
        Ok(())
    }

    /// Sends a PUBACK/PUBREC; a PUBACK ends its PUBLISH's count against the receive maximum.
    fn send_ack(&mut self, ack: &Packet) {
        self.send(ack);
        self.proto.ack_sent(ack);
    }

    /// Whether as many acknowledgements wait for durability as `mqtt.receive_maximum`: a
    /// 3.1/3.1.1 client is then not read from. (An MQTT 5.0 client never gets there: it is
    /// disconnected with 0x93 first.)
    pub(super) fn acks_full(&self) -> bool {
        !self.proto.protocol().is_v5()
            && self.pending_acks.len() >= usize::from(self.proto.flow.quota.max())
    }

    /// Sends a PUBACK/PUBREC for a message of `topic` once `ticket` is durable, after any
    /// acknowledgement already waiting (MQTT-4.6.0-2: acknowledgements go in the order the
    /// PUBLISHes came).
    pub(super) fn acknowledge(
        &mut self,
        ack: Packet,
        ticket: u64,
        copies: Option<(u64, u64)>,
        topic: &Arc<str>,
    ) {
        if ticket == 0 && copies.is_none() && self.pending_acks.is_empty() {
            self.send_ack(&ack);
        } else {
            self.pending_acks.push_back(PendingAck {
                ticket,
                copies,
                ack,
                topic: topic.clone(),
                error: None,
            });
        }
    }

    /// Refuses a PUBLISH whose message could not be stored (`refuse_unstored`) once the
    /// acknowledgements waiting before it have gone (MQTT-4.6.0-2).
    pub(super) fn acknowledge_refused(&mut self, ack: Packet, topic: &Arc<str>, error: Arc<str>) {
        self.pending_acks.push_back(PendingAck {
            ticket: 0,
            copies: None,
            ack,
            topic: topic.clone(),
            error: Some(error),
        });
    }
}
