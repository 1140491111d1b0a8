//! What a connection does with each packet once it is decoded: CONNECT (identity, credentials,
//! session), PUBLISH (routing, acknowledgements that wait for durability), SUBSCRIBE and
//! UNSUBSCRIBE (router and session), and the acknowledgements of outgoing messages.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};

use super::super::client_owner::NotOwner;
use super::super::limits;
use super::super::router::{deliver, report_unstored};
use super::super::tracer::now_us;
use super::{Client, Connection};
use crate::broker::publish::{Origin, Published};
use crate::broker::session_end::SessionEnd;
use crate::mqtt::connection::{
    inflight_window, session_terms, CloseReason, PublishRefusal, SessionTerms,
};
use crate::mqtt::message::{Delivery, Message, RetainHandling, SubscriptionOptions, TraceMark};
use crate::mqtt::packet::{
    Ack, ConnAck, Connect, ConnectReturnCode, Disconnect, Packet, Properties, ProtocolVersion,
    Publish, QoS, SubAck, SubAckCode, Subscribe, UnsubAck, Unsubscribe,
};
use crate::mqtt::reason::ReasonCode;
use crate::mqtt::topic;

impl<R, W> Connection<R, W>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    pub(super) fn handle_packet(
        &mut self,
        now: Instant,
        packet: Packet,
    ) -> Result<(), CloseReason> {
        match packet {
            Packet::Publish(p) => self.handle_publish(now, p),
            Packet::PubAck(Ack { packet_id: id, .. }) => {
                let known = self.session(|s| s.handle_puback(id));
                self.note_unknown_ack("PUBACK", id, known);
                Ok(())
            }
            Packet::PubRec(Ack {
                packet_id: id,
                reason,
                ..
            }) if reason.is_error() => {
                // MQTT 5.0: the client refused the message; its delivery ends here, without
                // PUBREL (section 4.3.3), and it leaves the in-flight window.
                let known = self.session(|s| s.handle_pubrec_refused(id));
                self.note_unknown_ack("PUBREC", id, known);
                Ok(())
            }
            Packet::PubRec(Ack { packet_id: id, .. }) => {
                let known = self.session(|s| s.handle_pubrec(id));
                self.note_unknown_ack("PUBREC", id, known);
                self.send(&Packet::PubRel(self.proto.release_ack(id, known)));
                Ok(())
            }
            Packet::PubComp(Ack { packet_id: id, .. }) => {
                let known = self.session(|s| s.handle_pubcomp(id));
                self.note_unknown_ack("PUBCOMP", id, known);
                Ok(())
            }
            Packet::PubRel(Ack { packet_id: id, .. }) => {
                let known = self.session(|s| s.release_qos2(id));
                self.proto.flow.quota.pubrel_received(id);
                self.note_unknown_ack("PUBREL", id, known);
                self.send(&Packet::PubComp(self.proto.release_ack(id, known)));
                Ok(())
            }
            Packet::Subscribe(s) => {
                self.handle_subscribe(now, s);
                Ok(())
            }
            Packet::Unsubscribe(u) => {
                self.handle_unsubscribe(u);
                Ok(())
            }
            // Answered by the protocol core (`Connection::on_packet`).
            Packet::PingReq => Ok(()),
            Packet::Disconnect(d) => Err(self.handle_disconnect(&d)),
            // `Connection::on_packet` refuses server-to-client packets before they get here.
            other => Err(CloseReason::ProtocolError(format!(
                "unexpected {}",
                other.kind()
            ))),
        }
    }

    pub(super) async fn handle_connect(&mut self, mut c: Connect) -> Result<(), CloseReason> {
        let settings = self.settings.clone();
        // An MQTT 5.0 client that sent no client id is told the one it got (3.2.2.3.7).
        let sent_no_id = c.client_id.is_empty();
        let replaced_id = if settings.auth.client_id_from_username {
            Some(self.client_id_from_username(&mut c)?)
        } else {
            None
        };
        let refuse = |this: &mut Self, code: ReasonCode, why: &'static str| {
            this.send(&Packet::ConnAck(ConnAck::new(false, code)));
            // `code`: what a 3.1.1 client reads; an MQTT 5.0 client gets the reason code.
            tracing::info!(target: "access", peer = %this.peer, client = %c.client_id,
                user = c.username.as_deref().unwrap_or(""), protocol = %c.protocol,
                code = code.connect_return_code() as u8,
                reason = (c.protocol == ProtocolVersion::V5).then(|| format!("{:#04x}", code as u8)),
                "connect refused: {why}");
            Err(CloseReason::Refused(why))
        };
        if let Some(method) = c.properties.authentication_method.as_deref() {
            // Enhanced authentication: no method is configured, so none is accepted (MQTT
            // 5.0 section 4.12: CONNACK 0x8C, bad authentication method).
            self.send(&Packet::ConnAck(ConnAck::new(
                false,
                ReasonCode::BadAuthenticationMethod,
            )));
            tracing::info!(target: "access", peer = %self.peer, client = %c.client_id,
                protocol = %c.protocol, method, code = "0x8c",
                "connect refused: bad authentication method");
            return Err(CloseReason::Refused("bad authentication method"));
        }
        if !self.proto.client_id_allowed(&c) {
            return refuse(
                self,
                ConnectReturnCode::IdentifierRejected.into(),
                "identifier rejected",
            );
        }
        if let Some(will) = &c.will {
            if let Err(e) = settings.topic_limits().check_name(&will.topic) {
                limits::topic_refused("will", &c.client_id, self.peer, &will.topic, e);
                // MQTT 5.0 CONNACK 0x90; a 3.1.1 CONNECT the server will not serve is
                // answered by closing the connection (MQTT-3.1.4-1).
                if c.protocol == ProtocolVersion::V5 {
                    self.send(&Packet::ConnAck(ConnAck::new(
                        false,
                        ReasonCode::TopicNameInvalid,
                    )));
                }
                return Err(CloseReason::Refused("will topic over the topic limits"));
            }
        }
        if let Err(why) = self.broker.memory.admit() {
            return refuse(
                self,
                ConnectReturnCode::ServerUnavailable.into(),
                why.reason(),
            );
        }
        if let Some(user) = &self.cert_user {
            // The TLS handshake verified the client's certificate: its CN is the user, and
            // it stands for the password.
            c.username = Some(user.clone());
            c.password = None;
        } else if settings.auth.enabled {
            let broker = self.broker.clone();
            let check =
                broker
                    .accounts
                    .check(self.peer.ip(), c.username.as_deref(), c.password.as_deref());
            // A connection closed while its password waits or is checked is dropped with the
            // check: the throttle never counts a connection that is gone.
            let room = settings.mqtt.max_packet_size;
            let checked = tokio::select! {
                checked = check => checked,
                why = gone(&mut self.reader, self.proto.input_mut(), room) => {
                    tracing::info!(target: "access", peer = %self.peer, client = %c.client_id,
                        user = c.username.as_deref().unwrap_or(""), protocol = %c.protocol,
                        "connect abandoned: the connection closed before its password check ended");
                    return Err(why);
                }
            };
            if let Err(refusal) = checked {
                return refuse(self, refusal.code, refusal.reason);
            }
        }
        // The user the session will belong to: one a password or a certificate proved. A user
        // name sent while `--auth` is off proves nothing (`client_owner`).
        let user = (self.cert_user.is_some() || settings.auth.enabled)
            .then(|| c.username.clone())
            .flatten();
        if let Some(Some(original)) = &replaced_id {
            tracing::info!(target: "access", peer = %self.peer, client = %c.client_id,
                sent_client_id = %original, "client id replaced by the user name (auth.client_id_from_username)");
        }
        let assigned = c.client_id.is_empty();
        let client_id: Arc<str> = if assigned {
            self.broker.assign_client_id(self.conn_id).into()
        } else {
            c.client_id.as_str().into()
        };
        // The session lives on after the connection for its expiry interval, at most
        // `session.max_age_secs` (`session_terms`).
        let clean_start = c.clean_session;
        let SessionTerms {
            expiry_secs: expiry,
            persistent,
        } = session_terms(&c);
        c.clean_session = !persistent;
        // Another node may hold the client: it closes that connection, and a persistent
        // session comes here to be resumed.
        match self
            .broker
            .cluster
            .take_over(&client_id, user.as_deref(), !clean_start)
            .await
        {
            Ok(Some(moved)) => super::super::persist::install_moved(&self.broker, moved),
            Ok(None) => {}
            Err(refused) => return Err(self.refuse_not_owner(&c, user.as_deref(), refused)),
        }
        if let Err(why) =
            limits::admit_session(&self.broker, &settings, &client_id, clean_start, persistent)
        {
            limits::session_refused(&client_id, self.peer, why);
            // MQTT 5.0 0x97 quota exceeded; 3.1.1 CONNACK 3 server unavailable.
            self.send(&Packet::ConnAck(ConnAck::new(
                false,
                ReasonCode::QuotaExceeded,
            )));
            return Err(CloseReason::Refused("persistent session refused"));
        }
        let attached = match self.broker.registry.attach_with(
            &client_id,
            user.as_deref(),
            clean_start,
            persistent,
            self.conn_id,
            settings.session_limits(),
        ) {
            Ok(attached) => attached,
            Err(refused) => return Err(self.refuse_not_owner(&c, user.as_deref(), refused)),
        };
        // Topic rules see the user of the connection that holds the session now.
        attached.handle.acl.set_user(c.username.as_deref());
        if let Some(old) = &attached.discarded {
            self.broker.end_session(old, SessionEnd::Replaced);
        }
        if let Some(will) = &attached.discarded_will {
            self.broker.publish_will(&client_id, will, "session ended");
        }
        if attached.took_over {
            tracing::info!(target: "resource", client = %client_id, peer = %self.peer, "session taken over");
        }
        self.broker
            .cluster
            .client_attached(&client_id, user.as_deref());
        tracing::info!(target: "resource", client = %client_id, clean = c.clean_session,
            "{}", if attached.session_present { "session resumed" } else { "session created" });
        // Authentication and the session may have taken a while: the keep-alive counts
        // from now.
        let now = Instant::now();
        let connack = self.proto.accept_connect(
            now,
            &c,
            attached.session_present,
            sent_no_id.then(|| client_id.clone()),
        );
        let (session_present, keep_alive) = (connack.session_present, self.proto.keep_alive_secs());
        self.send(&Packet::ConnAck(connack));
        tracing::info!(target: "access", client = %client_id, peer = %self.peer,
            transport = self.transport,
            user = c.username.as_deref().unwrap_or(""), protocol = %c.protocol,
            keep_alive, clean_session = c.clean_session, session_present,
            "connected");
        if self.broker.tracer.client_traced(&client_id) {
            tracing::info!(target: "trace", client = %client_id, peer = %self.peer,
                user = c.username.as_deref().unwrap_or(""), protocol = %c.protocol,
                keep_alive, clean_session = c.clean_session, session_present,
                "connected");
        }
        let window = inflight_window(&c, settings.session.inflight_window);
        let resend = {
            let mut slot = attached.handle.lock();
            slot.session.set_inflight_window(window);
            slot.session.set_expiry_secs(expiry);
            let resend = slot.session.resend_on_resume(now);
            slot.submit_or_log("session resumed");
            resend
        };
        let will = self.allowed_will(&attached.handle, c.will);
        self.client = Some(Client {
            id: client_id,
            protocol: c.protocol,
            handle: attached.handle,
            will: will.map(Box::new),
            kicked: attached.kicked,
        });
        for p in resend {
            self.resend(p);
        }
        Ok(())
    }

    /// `auth.client_id_from_username`: the CONNECT's client id becomes its user name (the
    /// certificate's, with `ssl.username_from_cn`). Returns the client id it replaced, if it
    /// was another; a CONNECT without a user name is refused (CONNACK 5 / 0x87), as
    /// mosquitto's `use_username_as_clientid` does.
    fn client_id_from_username(&mut self, c: &mut Connect) -> Result<Option<String>, CloseReason> {
        let Some(user) = self.cert_user.clone().or_else(|| c.username.clone()) else {
            let code = ReasonCode::NotAuthorized;
            self.send(&Packet::ConnAck(ConnAck::new(false, code)));
            tracing::info!(target: "access", peer = %self.peer, client = %c.client_id,
                protocol = %c.protocol, code = code.connect_return_code() as u8,
                reason = (c.protocol == ProtocolVersion::V5).then(|| format!("{:#04x}", code as u8)),
                "connect refused: no user name to use as the client id (auth.client_id_from_username)");
            return Err(CloseReason::Refused("no user name for the client id"));
        };
        if user == c.client_id {
            return Ok(None);
        }
        Ok(Some(std::mem::replace(&mut c.client_id, user)))
    }

    /// Refuses a CONNECT whose client id has a session of another user (here or on the node
    /// holding it): CONNACK 2 identifier rejected (3.1/3.1.1) / 0x85 client identifier not
    /// valid (5.0). The session and its connection are left as they are.
    fn refuse_not_owner(
        &mut self,
        c: &Connect,
        user: Option<&str>,
        refused: NotOwner,
    ) -> CloseReason {
        let code = ReasonCode::ClientIdentifierNotValid;
        self.send(&Packet::ConnAck(ConnAck::new(false, code)));
        tracing::warn!(target: "access", peer = %self.peer, client = %c.client_id,
            user = user.unwrap_or(""), owner = %refused.owner, protocol = %c.protocol,
            code = code.connect_return_code() as u8,
            reason = (c.protocol == ProtocolVersion::V5).then(|| format!("{:#04x}", code as u8)),
            "connect refused: the client id's session belongs to another user");
        CloseReason::Refused("client id of another user")
    }

    /// Sends a packet a resumed session resends. A PUBLISH goes with its full topic (aliases
    /// are per connection) and, when it is larger than the client accepts, is dropped as if
    /// delivered (MQTT 5.0 3.1.2.11.4).
    fn resend(&mut self, packet: Packet) {
        let Packet::Publish(p) = packet else {
            return self.send(&packet);
        };
        if !self.proto.protocol().is_v5() {
            return self.send(&Packet::Publish(p));
        }
        let (topic, qos, packet_id) = (p.topic.clone(), p.qos, p.packet_id);
        match self.proto.flow.outgoing_publish(p, false) {
            Ok(packet) => self.send(&packet),
            Err(size) => {
                self.session(|s| s.discard_inflight(packet_id));
                self.report_too_large(&topic, qos, size);
            }
        }
    }

    fn handle_publish(&mut self, now: Instant, mut p: Publish) -> Result<(), CloseReason> {
        let v5 = self.proto.protocol().is_v5();
        self.check_client_publish(&mut p)?;
        // After the alias is resolved: the topic an alias stands for is checked too.
        self.check_publish_limits(&p)?;
        if !self.publish_allowed(&p) {
            return Ok(());
        }
        if !self.admit_retained(now, &p) {
            return Ok(());
        }
        // A QoS 2 packet id is stored with the message: if either write fails, the message
        // is not safe (a resend after a restart would be taken for a new message, or lost).
        let (fresh, mut store_error) = match p.qos {
            QoS::ExactlyOnce => self.receive_qos2(p.packet_id),
            _ => (true, None),
        };
        let (ticket, matched) = if fresh {
            let routed = self.route(Message::from_publish(&p), now);
            self.woke_sessions |= routed.delivered > 0;
            store_error = store_error.or(routed.store_error);
            (routed.ticket, routed.matched)
        } else {
            (0, true)
        };
        // MQTT 5.0: 0x10 when the message reached no subscriber, here or on another node
        // (sections 3.4.2.1, 3.5.2.1); still a success.
        let ack = Ack {
            reason: if v5 && !matched {
                ReasonCode::NoMatchingSubscribers
            } else {
                ReasonCode::Success
            },
            ..Ack::new(p.packet_id)
        };
        let ack = match p.qos {
            QoS::AtMostOnce => None,
            QoS::AtLeastOnce => Some(Packet::PubAck(ack)),
            QoS::ExactlyOnce => Some(Packet::PubRec(ack)),
        };
        match (ack, store_error) {
            (Some(ack), None) => self.acknowledge(ack, ticket, &p.topic),
            (Some(ack), Some(error)) => {
                if self.pending_acks.is_empty() {
                    self.refuse_unstored(ack, &p.topic, &error)?;
                } else {
                    // In its turn, after the acknowledgements waiting before it.
                    self.acknowledge_refused(ack, &p.topic, error);
                }
            }
            // QoS 0 has nothing to refuse: the failure is reported all the same.
            (None, Some(error)) => {
                tracing::error!(target: "error", client = self.client_id().unwrap_or("-"),
                    peer = %self.peer, topic = %p.topic, error = %error, "message not stored");
            }
            (None, None) => {}
        }
        Ok(())
    }

    /// Records a QoS 2 packet id as received (written to the store for a persistent
    /// session): whether the message is new, and why the write failed if it did.
    fn receive_qos2(&self, packet_id: u16) -> (bool, Option<Arc<str>>) {
        let Some(c) = &self.client else {
            return (true, None);
        };
        let mut slot = c.handle.lock();
        let fresh = slot.session.receive_qos2(packet_id);
        let error = slot.submit().err().map(|e| e.to_string().into());
        (fresh, error)
    }

    /// A topic over `mqtt.max_topic_levels` / `mqtt.max_topic_len` ends the connection:
    /// DISCONNECT 0x90 in MQTT 5.0, closed in 3.1.1.
    fn check_publish_limits(&self, p: &Publish) -> Result<(), CloseReason> {
        let Err(e) = self.settings.topic_limits().check_name(&p.topic) else {
            return Ok(());
        };
        limits::topic_refused(
            "PUBLISH",
            self.client_id().unwrap_or("-"),
            self.peer,
            &p.topic,
            e,
        );
        Err(CloseReason::BadPacket {
            code: ReasonCode::TopicNameInvalid,
            why: e.to_string(),
        })
    }

    /// Whether a retained PUBLISH may go on. Beyond a bound of the retained store an MQTT
    /// 5.0 PUBLISH is refused whole (PUBACK/PUBREC 0x97, not routed); a 3.1.1 client cannot
    /// be told, so its message is delivered and only not retained (the store refuses it).
    fn admit_retained(&mut self, now: Instant, p: &Publish) -> bool {
        if !p.retain || p.payload.is_empty() {
            return true;
        }
        let Err(why) = self.broker.retained.admits(&p.topic, p.payload.len(), now) else {
            return true;
        };
        let v5 = self.proto.protocol().is_v5();
        let client = self.client_id().unwrap_or("-");
        limits::retained_refused(client, self.peer, &p.topic, p.payload.len(), why, !v5);
        if !v5 {
            return true;
        }
        self.refuse_publish_v5(p, ReasonCode::QuotaExceeded, || why.to_string());
        false
    }

    /// Answers an MQTT 5.0 PUBLISH that is not routed with PUBACK/PUBREC `reason` and a reason
    /// string (nothing for QoS 0), in its turn among the acknowledgements.
    pub(super) fn refuse_publish_v5(
        &mut self,
        p: &Publish,
        reason: ReasonCode,
        why: impl FnOnce() -> String,
    ) {
        let ack = Ack {
            reason,
            properties: Properties {
                reason_string: self.proto.flow.reason_string(why),
                ..Properties::default()
            },
            ..Ack::new(p.packet_id)
        };
        match p.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.acknowledge(Packet::PubAck(ack), 0, &p.topic),
            QoS::ExactlyOnce => {
                // An error PUBREC ends the exchange (no PUBREL follows, MQTT 5.0 4.3.3).
                self.proto.flow.quota.pubrel_received(p.packet_id);
                self.acknowledge(Packet::PubRec(ack), 0, &p.topic);
            }
        }
    }

    /// Checks a client's PUBLISH (`Connection::check_publish`): no subscription identifier,
    /// and for MQTT 5.0 its topic alias resolved and its count against the receive maximum.
    fn check_client_publish(&mut self, p: &mut Publish) -> Result<(), CloseReason> {
        let v5 = self.proto.protocol().is_v5();
        let Err(refusal) = self.proto.check_publish(p, v5) else {
            return Ok(());
        };
        let client = self.client_id().unwrap_or("-");
        match &refusal {
            PublishRefusal::SubscriptionIdentifier => {
                tracing::warn!(target: "warning", client, peer = %self.peer, topic = %p.topic,
                    packet = "PUBLISH",
                    "PUBLISH from the client carries a subscription identifier (MQTT-3.3.4-6)");
            }
            PublishRefusal::TopicAlias { alias, error, max } => {
                tracing::warn!(target: "warning", client, peer = %self.peer, kind = "PUBLISH",
                    alias, topic = %p.topic, max, "topic alias refused: {error}");
            }
            PublishRefusal::ReceiveMaximum { max } => {
                tracing::warn!(target: "warning", client, peer = %self.peer, kind = "PUBLISH",
                    topic = %p.topic, qos = p.qos as u8, packet_id = p.packet_id, max,
                    waiting_acks = self.pending_acks.len(),
                    "receive maximum exceeded: more QoS 1/2 publishes unacknowledged than CONNACK allowed (MQTT-3.3.4-7)");
            }
        }
        Err(refusal.close_reason())
    }

    /// Routes a message: the durability ticket its acknowledgement must wait for (0 when no
    /// copy went to the store), how many sessions here it was queued for, and whether any
    /// subscriber, here or on another node, matched it.
    pub(super) fn route(&self, message: Message, now: Instant) -> RouteOutcome {
        // Its message expiry interval counts from now (MQTT 5.0 3.3.2.3.3).
        let mut message = message.expiring_from(now);
        let b = &self.broker;
        let topic = message.topic.clone();
        let publisher = self.client_id().unwrap_or("-");
        if b.tracer.client_traced(publisher) || b.tracer.topic_traced(&topic) {
            let mark = Arc::new(TraceMark {
                origin_us: now_us(),
                origin_client: publisher.into(),
                via: vec![self.settings.node.name.as_str().into()],
            });
            trace_hop(&mark, "received", &topic, publisher, 1);
            message.trace = Some(mark);
        }
        let mark = message.trace.clone();
        if let Some(client) = &self.client {
            message.publisher = Some(client.id.clone());
        }
        // A retained message is never sampled: the copy the retained store holds would
        // carry its stamp to every later subscriber.
        let every = self.settings.http.latency_sample_every;
        let n = self.routed.load(Ordering::Relaxed);
        self.routed.store(n + 1, Ordering::Relaxed);
        if every > 0 && !message.retain && n.is_multiple_of(every) {
            message.sampled_at = Some(Instant::now());
        }
        let Published { routed, matched } =
            b.publish(Arc::new(message), Origin::Client(self.client_id()));
        if let Some(mark) = &mark {
            trace_hop(mark, "routed", &topic, publisher, routed.delivered);
        }
        let ticket = match &b.store {
            Some(store) if routed.stored => store.ticket(),
            _ => 0,
        };
        RouteOutcome {
            ticket,
            delivered: routed.delivered,
            matched,
            store_error: routed.store_error,
        }
    }

    fn handle_subscribe(&mut self, now: Instant, s: Subscribe) {
        let Some(client) = &self.client else { return };
        let handle = client.handle.clone();
        let v5 = self.proto.protocol().is_v5();
        let max_subscriptions = self.settings.session.max_subscriptions;
        let topic_limits = self.settings.topic_limits();
        let mut codes = Vec::with_capacity(s.filters.len());
        let mut granted = Vec::new();
        let mut refused = Vec::new();
        for (filter, requested) in &s.filters {
            let qos = &requested.qos;
            if !topic::is_valid_subscription(filter) {
                // MQTT 5.0 says why (0x8F); 3.1.1 has only 0x80.
                codes.push(if v5 {
                    SubAckCode::Refused(ReasonCode::TopicFilterInvalid)
                } else {
                    SubAckCode::Failure
                });
                refused.push(format!("{filter:?}: topic filter invalid"));
                tracing::info!(target: "protocol", client = %handle.client_id, filter, "invalid topic filter refused");
                continue;
            }
            if let Err(e) = topic_limits.check_filter(filter) {
                codes.push(if v5 {
                    SubAckCode::Refused(ReasonCode::TopicFilterInvalid)
                } else {
                    SubAckCode::Failure
                });
                refused.push(e.to_string());
                limits::topic_refused("SUBSCRIBE", &handle.client_id, self.peer, filter, e);
                continue;
            }
            if !self.subscription_decision(&handle, filter).allow {
                // MQTT 5.0 0x87 not authorized; 3.1.1 has only 0x80.
                codes.push(if v5 {
                    SubAckCode::Refused(ReasonCode::NotAuthorized)
                } else {
                    SubAckCode::Failure
                });
                refused.push(format!("{filter:?}: not authorized"));
                continue;
            }
            // MQTT 5.0 subscription options (3.1.1 subscriptions keep their defaults), and the
            // SUBSCRIBE's subscription identifier, kept with each of its subscriptions
            // (MQTT 5.0 3.8.2.1.2; a subscription replaced without one has none).
            let options = SubscriptionOptions {
                qos: *qos,
                no_local: requested.no_local,
                retain_as_published: requested.retain_as_published,
                retain_handling: requested.retain_handling,
                subscription_id: s.properties.subscription_identifiers.first().copied(),
            };
            // Session first, then router: see `Router::subscribe`. A new filter beyond
            // `session.max_subscriptions` is refused (0x97 Quota exceeded; 0x80 in 3.1.1).
            // A persistent session's subscription is written before it is granted: one the
            // store did not take is undone and refused (0x80), or it would vanish at restart.
            let (over_quota, store_error) = {
                let mut slot = handle.lock();
                let over = !slot.session.has_subscription(filter)
                    && slot.session.subscription_count() >= max_subscriptions;
                let mut store_error = None;
                if !over {
                    let before = slot.session.subscribe(filter, options);
                    if let Err(e) = slot.submit() {
                        match before {
                            Some(old) => {
                                slot.session.subscribe(filter, old);
                            }
                            None => {
                                slot.session.unsubscribe(filter);
                            }
                        }
                        // The store still holds the session as it was before.
                        let _ = slot.session.take_changes();
                        store_error = Some(e);
                    }
                }
                (over, store_error)
            };
            if let Some(e) = store_error {
                codes.push(if v5 {
                    SubAckCode::Refused(ReasonCode::UnspecifiedError)
                } else {
                    SubAckCode::Failure
                });
                refused.push(format!(
                    "{filter:?}: the subscription could not be stored: {e}"
                ));
                tracing::error!(target: "error", client = %handle.client_id, peer = %self.peer,
                    filter, error = %e, "subscription not stored: refused");
                continue;
            }
            if over_quota {
                codes.push(SubAckCode::Refused(ReasonCode::QuotaExceeded));
                refused.push(format!(
                    "{filter:?}: session.max_subscriptions ({max_subscriptions}) reached"
                ));
                tracing::warn!(target: "warning", client = %handle.client_id, peer = %self.peer,
                    kind = "SUBSCRIBE", filter, max = max_subscriptions,
                    "subscription refused: session.max_subscriptions reached");
                continue;
            }
            let new = self.broker.router.subscribe(&handle, filter, options);
            tracing::info!(target: "resource", client = %handle.client_id, filter, qos = *qos as u8, "subscription added");
            codes.push(SubAckCode::Granted(*qos));
            // Retain handling: 0 sends retained messages at every subscribe, 1 only for a
            // new subscription, 2 never.
            let send_retained = match options.retain_handling {
                RetainHandling::OnSubscribe => true,
                RetainHandling::OnNewSubscription => new,
                RetainHandling::Never => false,
            };
            if send_retained {
                granted.push((filter.as_str(), *qos, options.subscription_id));
            }
        }
        let properties = Properties {
            reason_string: if refused.is_empty() {
                None
            } else {
                self.proto.flow.reason_string(|| refused.join("; "))
            },
            ..Properties::default()
        };
        self.send(&Packet::SubAck(SubAck {
            packet_id: s.packet_id,
            codes,
            properties,
        }));
        // Retained messages follow the SUBACK, flagged as retained (MQTT-3.3.1-8), with the
        // subscription's identifier; expired ones are not sent (MQTT 5.0 3.3.2.3.3).
        for (filter, qos, id) in granted {
            for message in self.broker.retained.matching(filter, now) {
                // Only what the rules let this client read (a wildcard may cover more).
                if !self.broker.router.may_receive(&handle, &message.topic) {
                    continue;
                }
                let qos = message.qos.min(qos);
                let retained = Delivery {
                    message,
                    qos,
                    retain: true,
                    share: None,
                    subscription_ids: id.into_iter().collect(),
                };
                let topic = retained.message.topic.clone();
                if let Ok(d) = deliver(&handle, retained, false) {
                    report_unstored(
                        d.store_error.as_ref(),
                        &handle.client_id,
                        &topic,
                        "retained message on subscribe",
                    );
                }
            }
        }
    }

    fn handle_unsubscribe(&mut self, u: Unsubscribe) {
        let mut reasons = Vec::with_capacity(u.filters.len());
        if let Some(client) = &self.client {
            for filter in &u.filters {
                // Such a filter cannot have been subscribed to.
                if let Err(e) = self.settings.topic_limits().check_filter(filter) {
                    limits::topic_refused("UNSUBSCRIBE", &client.id, self.peer, filter, e);
                    reasons.push(ReasonCode::TopicFilterInvalid);
                    continue;
                }
                let removed = self.broker.router.unsubscribe(&client.handle, filter);
                let (existed, left, store_error) = {
                    let mut slot = client.handle.lock();
                    let existed = slot.session.unsubscribe(filter);
                    let left = slot.session.take_shared(Some(filter));
                    (existed, left, slot.submit().err())
                };
                super::super::shared::hand_over(&self.broker, &client.id, left);
                if removed {
                    tracing::info!(target: "resource", client = %client.id, filter, "subscription removed");
                }
                if let Some(e) = store_error {
                    // Gone from memory, but the store still has it (it returns at restart):
                    // not a success.
                    tracing::error!(target: "error", client = %client.id, peer = %self.peer,
                        filter, error = %e, "unsubscription not stored");
                    reasons.push(ReasonCode::UnspecifiedError);
                    continue;
                }
                // MQTT 5.0 UNSUBACK: one reason per filter (section 3.11.3).
                reasons.push(if existed || removed {
                    ReasonCode::Success
                } else {
                    ReasonCode::NoSubscriptionExisted
                });
            }
        }
        let mut ack = UnsubAck::new(u.packet_id);
        if self.proto.protocol().is_v5() {
            ack.reasons = reasons;
        }
        self.send(&Packet::UnsubAck(ack));
    }

    /// The client's DISCONNECT: how the connection ends. MQTT 5.0 lets it ask for its will
    /// to be published (0x04) and change its session expiry interval, but not from 0 to
    /// more (MQTT-3.14.2-2: a protocol error).
    fn handle_disconnect(&mut self, d: &Disconnect) -> CloseReason {
        let Some(client) = &self.client else {
            return CloseReason::ClientDisconnect;
        };
        match self.proto.on_disconnect(d) {
            Ok(said) => {
                if let Some(secs) = said.session_expiry {
                    self.broker.registry.set_expiry(&client.handle, secs);
                    tracing::info!(target: "resource", client = %client.id, secs, "session expiry interval changed by DISCONNECT");
                }
                said.reason
            }
            Err(reason) => {
                let secs = d.properties.session_expiry_interval.unwrap_or(0);
                tracing::warn!(target: "warning", client = %client.id, peer = %self.peer, secs,
                    "DISCONNECT sets a session expiry interval after 0 in CONNECT (MQTT-3.14.2-2)");
                reason
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

/// What routing one message did, for its publisher's acknowledgement.
pub(super) struct RouteOutcome {
    /// The store's durability ticket the acknowledgement waits for (0: none).
    pub(super) ticket: u64,
    /// Sessions on this node it was queued for.
    pub(super) delivered: usize,
    /// Whether any subscriber matched it, on this node or another.
    pub(super) matched: bool,
    /// The first store write for it that failed: it must not be acknowledged as safe.
    pub(super) store_error: Option<Arc<str>>,
}

/// One hop of a traced message: where it is, and how long since it was received.
pub(super) fn trace_hop(mark: &TraceMark, hop: &str, topic: &str, client: &str, count: usize) {
    let latency_us = now_us().saturating_sub(mark.origin_us);
    let via: Vec<&str> = mark.via.iter().map(|n| &**n).collect();
    tracing::info!(target: "trace", hop, topic, client, from = %mark.origin_client,
        origin_us = mark.origin_us, latency_us, count, via = %via.join(">"), "message hop");
}

/// Reads on while a CONNECT's password is checked (what a client sends after its CONNECT is
/// kept in `rbuf`, up to `room` bytes), and ends when the client has closed the connection.
async fn gone<R: AsyncRead + Unpin>(
    reader: &mut R,
    rbuf: &mut BytesMut,
    room: usize,
) -> CloseReason {
    use tokio::io::AsyncReadExt as _;
    loop {
        if rbuf.len() >= room {
            // Full: the rest waits in the socket until the check has ended.
            return std::future::pending().await;
        }
        rbuf.reserve(4096);
        match reader.read_buf(rbuf).await {
            Ok(0) => return CloseReason::SocketClosed,
            Ok(_) => {}
            Err(e) => return CloseReason::SocketError(e.to_string()),
        }
    }
}
