//! The driver of one client connection: a tokio task that moves bytes and timers in and out
//! of the sans-IO pieces (codec, `ConnectionState`, `Session`) and calls the router.
//!
//! It `select!`s over the socket read, the socket write, the session's wake-up, the next
//! deadline, a takeover and the shutdown token. Partial reads live in `rbuf` and unwritten
//! bytes in `wbuf`, so every branch is cancel-safe.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::packet_log;
use super::registry::SessionHandle;
use super::router::deliver;
use super::tracer::now_us;
use super::Broker;
use crate::mqtt::connection::{CloseReason, ConnectionState};
use crate::mqtt::decode::{decode, DecodeError};
use crate::mqtt::encode::encode;
use crate::mqtt::message::{Delivery, Message, SubscriptionOptions, TraceMark};
use crate::mqtt::packet::{
    ConnAck, Connect, ConnectReturnCode, LastWill, Packet, ProtocolVersion, Publish, QoS, SubAck,
    SubAckCode, Subscribe, Unsubscribe,
};
use crate::mqtt::topic;
use crate::settings::Settings;

/// How much to read from the socket at a time.
const READ_CHUNK: usize = 4096;

/// The client behind a connection, once its CONNECT was accepted.
struct Client {
    id: Arc<str>,
    protocol: ProtocolVersion,
    handle: Arc<SessionHandle>,
    will: Option<LastWill>,
    kicked: oneshot::Receiver<()>,
}

/// One connection and its buffers.
struct Connection<R, W> {
    broker: Arc<Broker>,
    /// The settings when the connection was accepted (run-time changes apply to new ones).
    settings: Arc<Settings>,
    peer: SocketAddr,
    conn_id: u64,
    reader: R,
    writer: W,
    /// The user name a verified client certificate gave (`ssl.username_from_cn`): it stands
    /// for the CONNECT's credentials.
    cert_user: Option<String>,
    rbuf: BytesMut,
    wbuf: BytesMut,
    state: ConnectionState,
    client: Option<Client>,
    /// The client id of a CONNECT being handled (`client` is set only once it is accepted),
    /// so that a traced client's CONNECT and CONNACK are traced too.
    connecting: Option<String>,
    write_blocked_since: Option<Instant>,
    shutdown: CancellationToken,
    /// PUBACK/PUBREC waiting, in order, until the store's durable ticket reaches theirs.
    pending_acks: VecDeque<(u64, Packet)>,
    durable: Option<watch::Receiver<u64>>,
}

/// Serves one connection (plain TCP or TLS, already accepted) until it ends.
pub(crate) async fn serve<R, W>(
    broker: Arc<Broker>,
    (reader, writer): (R, W),
    peer: SocketAddr,
    cert_user: Option<String>,
    shutdown: CancellationToken,
) where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    let conn_id = broker.next_conn_id();
    let now = Instant::now();
    let settings = broker.settings();
    let mut conn = Connection {
        state: ConnectionState::new(now, settings.connect_timeout()),
        durable: broker.store.as_ref().map(|s| s.durable_watch()),
        pending_acks: VecDeque::new(),
        settings,
        broker,
        peer,
        conn_id,
        reader,
        writer,
        cert_user,
        rbuf: BytesMut::with_capacity(READ_CHUNK),
        wbuf: BytesMut::new(),
        client: None,
        connecting: None,
        write_blocked_since: None,
        shutdown,
    };
    tracing::debug!(target: "access", %peer, conn_id, "connection accepted");
    let reason = conn.run().await;
    conn.finish(reason).await;
}

impl<R, W> Connection<R, W>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    async fn run(&mut self) -> CloseReason {
        let write_limit = self.settings.mqtt.write_buffer_bytes;
        let stall = Duration::from_secs(self.settings.mqtt.stalled_reader_timeout_secs);
        loop {
            if let Err(reason) = self.process_input().await {
                return reason;
            }
            self.release_durable_acks();
            self.fill_from_session(write_limit);
            let now = Instant::now();
            if self.wbuf.is_empty() {
                self.write_blocked_since = None;
            } else if self.write_blocked_since.is_none() {
                self.write_blocked_since = Some(now);
            }
            // Stop reading from a client that does not read what we write: that bounds
            // `wbuf` (acknowledgements pile up there) and pushes back on the client. While we
            // do not read, its keep-alive is not held against it: the stall timer decides.
            let may_read = self.wbuf.len() < 2 * write_limit;
            let stall_deadline = self.write_blocked_since.map(|t| t + stall);
            let keep_alive_deadline = self.state.poll_timeout().filter(|_| may_read);
            let deadline = match (keep_alive_deadline, stall_deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let may_write = !self.wbuf.is_empty();
            let handle = self.client.as_ref().map(|c| c.handle.clone());
            let kicked = self.client.as_mut().map(|c| &mut c.kicked);
            let waiting_ack = self.pending_acks.front().map(|(t, _)| *t);
            if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK {
                self.rbuf.reserve(READ_CHUNK);
            }
            // Biased: socket IO that is ready is handled before any timer is looked at, so
            // bytes already received always count before a keep-alive verdict.
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return CloseReason::ServerShutdown,
                _ = taken_over(kicked) => return CloseReason::TakenOver,
                r = self.writer.write_buf(&mut self.wbuf), if may_write => match r {
                    Ok(_) => self.write_blocked_since = (!self.wbuf.is_empty()).then(Instant::now),
                    Err(e) => return CloseReason::SocketError(e.to_string()),
                },
                r = self.reader.read_buf(&mut self.rbuf), if may_read => match r {
                    Ok(0) => return CloseReason::SocketClosed,
                    Ok(n) => packet_log::bytes("in", self.peer, &self.rbuf[self.rbuf.len() - n..]),
                    Err(e) => return CloseReason::SocketError(e.to_string()),
                },
                _ = durable_at_least(self.durable.as_mut(), waiting_ack) => {}
                _ = wake(handle.as_deref()) => {}
                _ = sleep_until(deadline) => {
                    let now = Instant::now();
                    if let Some(reason) = self.state.handle_timeout(now).filter(|_| may_read) {
                        return reason;
                    }
                    if stall_deadline.is_some_and(|d| now >= d) {
                        return CloseReason::StalledReader;
                    }
                }
            }
        }
    }

    /// Decodes and handles every whole packet in `rbuf`.
    async fn process_input(&mut self) -> Result<(), CloseReason> {
        let max = self.settings.mqtt.max_packet_size;
        loop {
            let before = self.rbuf.len();
            let packet = match decode(&mut self.rbuf, max) {
                Ok(Some(p)) => p,
                Ok(None) => return Ok(()),
                Err(e) => return Err(self.refuse_input(e)),
            };
            let size = before - self.rbuf.len();
            if let (Packet::Connect(c), None) = (&packet, &self.client) {
                self.connecting = Some(c.client_id.clone());
            }
            packet_log::received(self.client_id(), self.peer, &packet, size, self.traced());
            self.state.on_packet(Instant::now(), &packet)?;
            match packet {
                Packet::Connect(c) => self.handle_connect(c).await?,
                other => self.handle_packet(other)?,
            }
        }
    }

    /// Sends the acknowledgements whose messages are durable now, in order.
    fn release_durable_acks(&mut self) {
        let durable = self.durable.as_ref().map_or(u64::MAX, |d| *d.borrow());
        while self
            .pending_acks
            .front()
            .is_some_and(|(t, _)| *t <= durable)
        {
            if let Some((_, ack)) = self.pending_acks.pop_front() {
                self.send(&ack);
            }
        }
    }

    /// Sends a PUBACK/PUBREC once `ticket` is durable, after any acknowledgement already
    /// waiting (MQTT-4.6.0-2: acknowledgements go in the order the PUBLISHes came).
    fn acknowledge(&mut self, ack: Packet, ticket: u64) {
        if ticket == 0 && self.pending_acks.is_empty() {
            self.send(&ack);
        } else {
            self.pending_acks.push_back((ticket, ack));
        }
    }

    /// A packet that could not be decoded: answers what the spec asks and says why to close.
    fn refuse_input(&mut self, error: DecodeError) -> CloseReason {
        let client = self.client_id().unwrap_or("-").to_owned();
        tracing::warn!(target: "warning", client, peer = %self.peer, %error, "bad packet");
        match error {
            DecodeError::PacketTooLarge { size, max } => CloseReason::PacketTooLarge { size, max },
            DecodeError::UnsupportedProtocolLevel(_) if !self.state.is_connected() => {
                self.send(&Packet::ConnAck(ConnAck {
                    session_present: false,
                    code: ConnectReturnCode::UnacceptableProtocolVersion,
                }));
                CloseReason::Refused("unacceptable protocol level")
            }
            other => CloseReason::ProtocolError(other.to_string()),
        }
    }

    fn handle_packet(&mut self, packet: Packet) -> Result<(), CloseReason> {
        match packet {
            Packet::Publish(p) => {
                self.handle_publish(p);
                Ok(())
            }
            Packet::PubAck(id) => {
                let known = self.session(|s| s.handle_puback(id));
                self.note_unknown_ack("PUBACK", id, known);
                Ok(())
            }
            Packet::PubRec(id) => {
                let known = self.session(|s| s.handle_pubrec(id));
                self.note_unknown_ack("PUBREC", id, known);
                self.send(&Packet::PubRel(id));
                Ok(())
            }
            Packet::PubComp(id) => {
                let known = self.session(|s| s.handle_pubcomp(id));
                self.note_unknown_ack("PUBCOMP", id, known);
                Ok(())
            }
            Packet::PubRel(id) => {
                let known = self.session(|s| s.release_qos2(id));
                self.note_unknown_ack("PUBREL", id, known);
                self.send(&Packet::PubComp(id));
                Ok(())
            }
            Packet::Subscribe(s) => {
                self.handle_subscribe(s);
                Ok(())
            }
            Packet::Unsubscribe(u) => {
                self.handle_unsubscribe(u);
                Ok(())
            }
            Packet::PingReq => {
                self.send(&Packet::PingResp);
                Ok(())
            }
            Packet::Disconnect => Err(CloseReason::ClientDisconnect),
            // ConnectionState refuses server-to-client packets before they get here.
            other => Err(CloseReason::ProtocolError(format!(
                "unexpected {}",
                other.kind()
            ))),
        }
    }

    async fn handle_connect(&mut self, mut c: Connect) -> Result<(), CloseReason> {
        let settings = self.settings.clone();
        let refuse = |this: &mut Self, code, why: &'static str| {
            this.send(&Packet::ConnAck(ConnAck {
                session_present: false,
                code,
            }));
            tracing::info!(target: "access", peer = %this.peer, client = %c.client_id,
                user = c.username.as_deref().unwrap_or(""), protocol = %c.protocol, code = code as u8,
                "connect refused: {why}");
            Err(CloseReason::Refused(why))
        };
        let id_ok = match c.protocol {
            // MQTT 3.1 allows 1 to 23 characters.
            ProtocolVersion::V31 => (1..=23).contains(&c.client_id.chars().count()),
            ProtocolVersion::V311 => {
                c.client_id.len() <= settings.mqtt.max_client_id_len
                    && (!c.client_id.is_empty() || c.clean_session)
            }
        };
        if !id_ok {
            return refuse(
                self,
                ConnectReturnCode::IdentifierRejected,
                "identifier rejected",
            );
        }
        if self.broker.memory.is_on() {
            return refuse(
                self,
                ConnectReturnCode::ServerUnavailable,
                "memory alarm: above the high watermark",
            );
        }
        if let Some(user) = &self.cert_user {
            // The TLS handshake verified the client's certificate: its CN is the user, and
            // it stands for the password.
            c.username = Some(user.clone());
            c.password = None;
        } else if settings.auth.enabled {
            let checked = self
                .broker
                .accounts
                .check(self.peer.ip(), c.username.as_deref(), c.password.as_deref())
                .await;
            if let Err(refusal) = checked {
                return refuse(self, refusal.code, refusal.reason);
            }
        }
        let client_id: Arc<str> = if c.client_id.is_empty() {
            self.broker.assign_client_id(self.conn_id).into()
        } else {
            c.client_id.as_str().into()
        };
        let attached = self.broker.registry.attach(
            &client_id,
            c.clean_session,
            self.conn_id,
            settings.session_limits(),
        );
        if let Some(old) = &attached.discarded {
            self.broker.router.remove_session(old);
            tracing::info!(target: "resource", client = %client_id, "session ended: replaced by a clean session");
        }
        if attached.took_over {
            tracing::info!(target: "resource", client = %client_id, peer = %self.peer, "session taken over");
        }
        tracing::info!(target: "resource", client = %client_id, clean = c.clean_session,
            "{}", if attached.session_present { "session resumed" } else { "session created" });
        let session_present = attached.session_present && c.protocol != ProtocolVersion::V31;
        self.send(&Packet::ConnAck(ConnAck {
            session_present,
            code: ConnectReturnCode::Accepted,
        }));
        self.state.on_connected(Instant::now(), c.keep_alive);
        tracing::info!(target: "access", client = %client_id, peer = %self.peer,
            user = c.username.as_deref().unwrap_or(""), protocol = %c.protocol,
            keep_alive = c.keep_alive, clean_session = c.clean_session, session_present,
            "connected");
        if self.broker.tracer.client_traced(&client_id) {
            tracing::info!(target: "trace", client = %client_id, peer = %self.peer,
                user = c.username.as_deref().unwrap_or(""), protocol = %c.protocol,
                keep_alive = c.keep_alive, clean_session = c.clean_session, session_present,
                "connected");
        }
        let resend = attached.handle.lock().session.resend_on_resume();
        self.client = Some(Client {
            id: client_id,
            protocol: c.protocol,
            handle: attached.handle,
            will: c.will,
            kicked: attached.kicked,
        });
        for p in &resend {
            self.send(p);
        }
        Ok(())
    }

    fn handle_publish(&mut self, p: Publish) {
        let fresh = match p.qos {
            QoS::ExactlyOnce => self.session(|s| s.receive_qos2(p.packet_id)),
            _ => true,
        };
        let ticket = if fresh {
            self.route(Message::from_publish(&p))
        } else {
            0
        };
        match p.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.acknowledge(Packet::PubAck(p.packet_id), ticket),
            QoS::ExactlyOnce => self.acknowledge(Packet::PubRec(p.packet_id), ticket),
        }
    }

    /// Routes a message; returns the durability ticket its acknowledgement must wait for (0
    /// when no copy went to the store).
    fn route(&self, mut message: Message) -> u64 {
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
        let routed = b.router.publish(
            Arc::new(message),
            &b.registry,
            &b.retained,
            b.memory.is_on(),
        );
        if let Some(mark) = &mark {
            trace_hop(mark, "routed", &topic, publisher, routed.delivered);
        }
        b.stats.record_routed(&routed);
        if let Some(change) = routed.retained {
            packet_log::retained(self.client_id(), &topic, change);
        }
        match &b.store {
            Some(store) if routed.stored => store.ticket(),
            _ => 0,
        }
    }

    fn handle_subscribe(&mut self, s: Subscribe) {
        let Some(client) = &self.client else { return };
        let handle = client.handle.clone();
        let mut codes = Vec::with_capacity(s.filters.len());
        let mut granted = Vec::new();
        for (filter, qos) in &s.filters {
            if !topic::is_valid_topic_filter(filter) {
                codes.push(SubAckCode::Failure);
                tracing::info!(target: "protocol", client = %handle.client_id, filter, "invalid topic filter refused");
                continue;
            }
            let options = SubscriptionOptions {
                qos: *qos,
                ..Default::default()
            };
            // Session first, then router: see `Router::subscribe`.
            handle.lock().session.subscribe(filter, options);
            self.broker.router.subscribe(&handle, filter, options);
            tracing::info!(target: "resource", client = %handle.client_id, filter, qos = *qos as u8, "subscription added");
            codes.push(SubAckCode::Granted(*qos));
            granted.push((filter.as_str(), *qos));
        }
        self.send(&Packet::SubAck(SubAck {
            packet_id: s.packet_id,
            codes,
        }));
        // Retained messages follow the SUBACK, flagged as retained (MQTT-3.3.1-8).
        for (filter, qos) in granted {
            for message in self.broker.retained.matching(filter) {
                let qos = message.qos.min(qos);
                let retained = Delivery {
                    message,
                    qos,
                    retain: true,
                };
                let _ = deliver(&handle, retained, false);
            }
        }
    }

    fn handle_unsubscribe(&mut self, u: Unsubscribe) {
        if let Some(client) = &self.client {
            for filter in &u.filters {
                let removed = self.broker.router.unsubscribe(&client.handle, filter);
                client.handle.lock().session.unsubscribe(filter);
                if removed {
                    tracing::info!(target: "resource", client = %client.id, filter, "subscription removed");
                }
            }
        }
        self.send(&Packet::UnsubAck(u.packet_id));
    }

    fn note_unknown_ack(&self, kind: &str, packet_id: u16, known: bool) {
        if !known {
            tracing::debug!(target: "protocol", client = self.client_id().unwrap_or("-"), kind,
                packet_id, "acknowledgement for an unknown packet id");
        }
    }

    /// Runs `f` on the session (the connection has one once CONNECT was accepted).
    fn session<T: Default>(&self, f: impl FnOnce(&mut crate::mqtt::session::Session) -> T) -> T {
        match &self.client {
            Some(c) => f(&mut c.handle.lock().session),
            None => T::default(),
        }
    }

    /// Moves queued messages from the session into the write buffer, up to `limit` bytes.
    fn fill_from_session(&mut self, limit: usize) {
        let Some(client) = &self.client else { return };
        let mut out = Vec::new();
        {
            let mut slot = client.handle.lock();
            if !slot.is_owned_by(self.conn_id) {
                // Taken over: what is queued now belongs to the new connection, which has
                // already collected what this one had in flight.
                return;
            }
            let mut budget = limit.saturating_sub(self.wbuf.len());
            while budget > 0 {
                let Some((p, message)) = slot.session.poll_send() else {
                    break;
                };
                budget = budget.saturating_sub(p.payload.len() + p.topic.len() + 8);
                out.push((Packet::Publish(p), message.trace.clone()));
            }
        }
        self.broker.stats.record_sent(out.len());
        for (p, mark) in &out {
            self.send(p);
            if let (Some(mark), Packet::Publish(p)) = (mark, p) {
                trace_hop(mark, "sent", &p.topic, self.client_id().unwrap_or("-"), 1);
            }
        }
    }

    /// Encodes a packet into the write buffer.
    fn send(&mut self, packet: &Packet) {
        let before = self.wbuf.len();
        encode(packet, &mut self.wbuf);
        let size = self.wbuf.len() - before;
        packet_log::sent(self.client_id(), self.peer, packet, size, self.traced());
        packet_log::bytes("out", self.peer, &self.wbuf[before..]);
    }

    /// Whether this connection's client is followed in the `trace` class.
    fn traced(&self) -> bool {
        self.client_id()
            .or(self.connecting.as_deref())
            .is_some_and(|id| self.broker.tracer.client_traced(id))
    }

    fn client_id(&self) -> Option<&str> {
        self.client.as_ref().map(|c| &*c.id)
    }

    /// Ends the connection: flushes what can be flushed, publishes the will if the way it
    /// ended calls for it, and releases (or ends) the session.
    async fn finish(mut self, reason: CloseReason) {
        if !matches!(
            reason,
            CloseReason::SocketError(_) | CloseReason::StalledReader
        ) {
            let flush = Duration::from_millis(self.settings.mqtt.close_flush_ms);
            let _ = tokio::time::timeout(flush, async {
                self.writer.write_all_buf(&mut self.wbuf).await?;
                self.writer.shutdown().await
            })
            .await;
        }
        let Some(client) = self.client.take() else {
            tracing::info!(target: "access", peer = %self.peer, %reason, "disconnected before CONNECT");
            return;
        };
        if reason.publishes_will() {
            if let Some(will) = &client.will {
                tracing::info!(target: "access", client = %client.id, topic = %will.topic, "publishing will");
                let _ = self.route(Message::from_will(will));
            }
        }
        let ended = self
            .broker
            .registry
            .detach(&client.handle, self.conn_id, Instant::now());
        if ended {
            self.broker.router.remove_session(&client.handle);
            tracing::info!(target: "resource", client = %client.id, "session ended");
        }
        let level = client.protocol;
        if self.broker.tracer.client_traced(&client.id) {
            tracing::info!(target: "trace", client = %client.id, peer = %self.peer, %reason, "disconnected");
        }
        match reason {
            CloseReason::ClientDisconnect | CloseReason::ServerShutdown => {
                tracing::info!(target: "access", client = %client.id, peer = %self.peer, protocol = %level, %reason, "disconnected");
            }
            _ => {
                tracing::warn!(target: "access", client = %client.id, peer = %self.peer, protocol = %level, %reason, "disconnected");
            }
        }
    }
}

/// Completes when the session is taken over by another connection (never without one).
async fn taken_over(kicked: Option<&mut oneshot::Receiver<()>>) {
    match kicked {
        // A dropped sender also means the session is no longer ours.
        Some(rx) => {
            let _ = rx.await;
        }
        None => std::future::pending().await,
    }
}

/// One hop of a traced message: where it is, and how long since it was received.
fn trace_hop(mark: &TraceMark, hop: &str, topic: &str, client: &str, count: usize) {
    let latency_us = now_us().saturating_sub(mark.origin_us);
    let via: Vec<&str> = mark.via.iter().map(|n| &**n).collect();
    tracing::info!(target: "trace", hop, topic, client, from = %mark.origin_client,
        origin_us = mark.origin_us, latency_us, count, via = %via.join(">"), "message hop");
}

/// Completes when the store's durable ticket reaches `ticket` (never without one).
async fn durable_at_least(durable: Option<&mut watch::Receiver<u64>>, ticket: Option<u64>) {
    match (durable, ticket) {
        (Some(rx), Some(t)) => {
            if rx.wait_for(|d| *d >= t).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        _ => std::future::pending().await,
    }
}

/// Completes when a message is queued for the session (never without one).
async fn wake(handle: Option<&SessionHandle>) {
    match handle {
        Some(h) => h.notify.notified().await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `deadline` (forever without one).
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}
