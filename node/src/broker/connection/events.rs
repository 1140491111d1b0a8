//! The protocol core's smaller events (`fubar_mqtt::connection::Event`): acknowledgements of
//! the messages this connection sent, a session expiry changed by DISCONNECT, and the log of a
//! rule the client broke. CONNECT, PUBLISH, SUBSCRIBE and UNSUBSCRIBE have files of their own.

use tokio::io::{AsyncRead, AsyncWrite};

use super::super::limits;
use super::Connection;
use crate::mqtt::connection::{Acked, ConnectRefusal, PublishRefusal, Refusal};
use crate::mqtt::packet::ProtocolVersion;
use crate::mqtt::reason::ReasonCode;

/// Plain PUBACKs settled under one lock, at most (a full in-flight window of 100 is one run).
const MAX_ACK_RUN: usize = 256;

impl<R, W> Connection<R, W>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    /// The client acknowledged (or released) a message: the session moves on, and a PUBREC
    /// or PUBREL is answered (`Connection::release`, `Connection::complete`).
    pub(super) fn handle_acked(&mut self, acked: Acked) {
        match acked {
            Acked::PubAck(id) => {
                let known = self.session(|s| s.handle_puback(id));
                self.note_unknown_ack("PUBACK", id, known);
            }
            Acked::PubRecRefused(id) => {
                // MQTT 5.0: the client refused the message; it leaves the in-flight window.
                let known = self.session(|s| s.handle_pubrec_refused(id));
                self.note_unknown_ack("PUBREC", id, known);
            }
            Acked::PubRec(id) => {
                let known = self.session(|s| s.handle_pubrec(id));
                self.note_unknown_ack("PUBREC", id, known);
                self.proto.release(id, known);
            }
            Acked::PubComp(id) => {
                let known = self.session(|s| s.handle_pubcomp(id));
                self.note_unknown_ack("PUBCOMP", id, known);
            }
            Acked::PubRel(id) => {
                let known = self.session(|s| s.release_qos2(id));
                self.note_unknown_ack("PUBREL", id, known);
                self.proto.complete(id, known);
            }
        }
        self.send_transmits();
    }

    /// A subscriber's plain PUBACK for `first`, and every plain acknowledgement right behind
    /// it in the input (what one write of the client carried): the PUBACKs are settled under
    /// one lock of the session, not one each (the lock a publisher delivering to this session
    /// takes too). An acknowledgement of another kind ends the run and is handled after it.
    pub(super) fn handle_pubacks(&mut self, now: std::time::Instant, first: u16) {
        // On the stack: this is a plain function, not part of the connection's future.
        let mut ids = [0u16; MAX_ACK_RUN];
        ids[0] = first;
        let mut n = 1;
        let mut after = None;
        while n < MAX_ACK_RUN {
            match self.proto.take_plain_ack(now) {
                Some(Acked::PubAck(id)) => {
                    ids[n] = id;
                    n += 1;
                }
                Some(other) => {
                    after = Some(other);
                    break;
                }
                None => break,
            }
        }
        let unknown: Vec<u16> = self.session(|s| {
            ids[..n]
                .iter()
                .copied()
                .filter(|id| !s.handle_puback(*id))
                .collect()
        });
        for id in unknown {
            self.note_unknown_ack("PUBACK", id, false);
        }
        match after {
            Some(acked) => self.handle_acked(acked),
            None => self.send_transmits(),
        }
    }

    /// The client's DISCONNECT changed its session expiry interval (MQTT 5.0).
    pub(super) fn set_session_expiry(&self, secs: u32) {
        let Some(client) = &self.client else { return };
        self.broker.registry.set_expiry(&client.handle, secs);
        tracing::info!(target: "resource", client = %client.id, secs, "session expiry interval changed by DISCONNECT");
    }

    /// Logs a rule the client broke, in the class a search for it looks in.
    pub(super) fn log_refusal(&self, refusal: &Refusal) {
        let peer = self.peer;
        let client = self.client_id().unwrap_or("-");
        match refusal {
            Refusal::Connect {
                client_id,
                user,
                why,
            } => self.log_connect_refusal(client_id, user.as_deref(), why),
            Refusal::Publish {
                topic,
                qos,
                packet_id,
                why,
            } => match why {
                PublishRefusal::SubscriptionIdentifier => {
                    tracing::warn!(target: "warning", client, %peer, topic, packet = "PUBLISH",
                        "PUBLISH from the client carries a subscription identifier (MQTT-3.3.4-6)");
                }
                PublishRefusal::TopicAlias { alias, error, max } => {
                    tracing::warn!(target: "warning", client, %peer, kind = "PUBLISH",
                        alias, topic, max, "topic alias refused: {error}");
                }
                PublishRefusal::ReceiveMaximum { max } => {
                    tracing::warn!(target: "warning", client, %peer, kind = "PUBLISH",
                        topic, qos = *qos as u8, packet_id, max,
                        waiting_acks = self.pending_acks.len(),
                        "receive maximum exceeded: more QoS 1/2 publishes unacknowledged than CONNACK allowed (MQTT-3.3.4-7)");
                }
                PublishRefusal::Topic(e) => {
                    limits::topic_refused("PUBLISH", client, peer, topic, *e)
                }
            },
            Refusal::DisconnectExpiry { secs } => {
                tracing::warn!(target: "warning", client, %peer, secs,
                    "DISCONNECT sets a session expiry interval after 0 in CONNECT (MQTT-3.14.2-2)");
            }
        }
    }

    /// Logs a CONNECT the protocol refused (in `access`, where every connect is).
    fn log_connect_refusal(&self, client: &str, user: Option<&str>, why: &ConnectRefusal) {
        let (peer, protocol) = (self.peer, self.proto.protocol());
        // `code`: what a 3.1.1 client reads; an MQTT 5.0 client gets the reason code.
        let reason = |code: ReasonCode| {
            (protocol == ProtocolVersion::V5).then(|| format!("{:#04x}", code as u8))
        };
        match why {
            ConnectRefusal::BadAuthenticationMethod(method) => {
                tracing::info!(target: "access", %peer, client, %protocol, method, code = "0x8c",
                    "connect refused: bad authentication method");
            }
            ConnectRefusal::IdentifierRejected => {
                let code = ReasonCode::ClientIdentifierNotValid;
                tracing::info!(target: "access", %peer, client, user = user.unwrap_or(""),
                    %protocol, code = code.connect_return_code() as u8, reason = reason(code),
                    "connect refused: identifier rejected");
            }
            ConnectRefusal::NoUserName => {
                let code = ReasonCode::NotAuthorized;
                tracing::info!(target: "access", %peer, client, %protocol,
                    code = code.connect_return_code() as u8, reason = reason(code),
                    "connect refused: no user name to use as the client id (auth.client_id_from_username)");
            }
            ConnectRefusal::WillTopic { topic, error } => {
                limits::topic_refused("will", client, peer, topic, *error);
            }
        }
    }

    fn note_unknown_ack(&self, kind: &str, packet_id: u16, known: bool) {
        if !known {
            tracing::debug!(target: "protocol", client = self.client_id().unwrap_or("-"), kind,
                packet_id, "acknowledgement for an unknown packet id");
        }
    }

    /// Runs `f` on the session (the connection has one once CONNECT was accepted), and
    /// writes what it changed (a delivery acknowledged, a QoS 2 exchange ended): no
    /// acknowledgement to the client waits on those, so a failure is reported only.
    pub(super) fn session<T: Default>(
        &self,
        f: impl FnOnce(&mut crate::mqtt::session::Session) -> T,
    ) -> T {
        match &self.client {
            Some(c) => {
                let mut slot = c.handle.lock();
                let out = f(&mut slot.session);
                slot.submit_or_log("session state");
                out
            }
            None => T::default(),
        }
    }
}
