//! The driver of one client connection: a tokio task that moves bytes and timers in and out
//! of the sans-IO pieces (codec, `fubar_mqtt::connection::Connection`, `Session`) and calls the router.
//!
//! It `select!`s over the socket read, the socket write, the session's wake-up, the next
//! deadline, a takeover and the shutdown token. Partial reads live in the protocol core's input buffer and unwritten
//! bytes in `wbuf`, so every branch is cancel-safe.
//!
//! The protocol rules and timers are the sans-IO `fubar_mqtt::connection::Connection`
//! (`proto`): the task reads the clock once per turn and passes it in. A client that publishes
//! faster than `mqtt.max_messages_per_sec` is slowed down, not cut off: `proto` says the next
//! PUBLISH waits, it is left in the input buffer, and the socket is not read until the throttle ends, so
//! TCP flow control pushes back on the client. The pause is one timer deadline among the
//! others (no polling), and while it lasts the keep-alive is not held against the client: it is
//! the broker that is not reading.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use fubar_store::Durable;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{oneshot, watch, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;

mod arrival;
mod handlers;
mod topic_rules;

use arrival::Watched;
use handlers::trace_hop;

use super::packet_log;
use super::registry::{SessionHandle, WillDelay};
use super::Broker;
use crate::broker::session_end::SessionEnd;
use crate::mqtt::connection::{Admission, CloseReason, Connection as Protocol, Limits};
use crate::mqtt::decode::{starts_with_whole_publish, DecodeError};
use crate::mqtt::encode::try_encode;
use crate::mqtt::message::Message;
use crate::mqtt::packet::{Ack, LastWill, Packet, Properties, ProtocolVersion, QoS};
use crate::mqtt::reason::ReasonCode;
use crate::settings::Settings;

/// How much to read from the socket at a time.
/// Smallest and largest room made in the read buffer for one read. A connection starts small
/// (an idle client costs little memory), doubles while reads fill the room, and halves while
/// they use little of it.
const MIN_READ: usize = 256;
const MAX_READ: usize = 64 << 10;
/// Most packets one `fill_from_session` reserves room for at once (the write budget decides
/// how many it takes).
const FILL_BATCH: usize = 256;

/// The client behind a connection, once its CONNECT was accepted.
struct Client {
    id: Arc<str>,
    protocol: ProtocolVersion,
    handle: Arc<SessionHandle>,
    /// Boxed: most clients have none, and inline it would take ~340 bytes of every
    /// connection's task for its whole life.
    will: Option<Box<LastWill>>,
    kicked: oneshot::Receiver<()>,
}

/// One connection and its buffers.
struct Connection<R, W> {
    broker: Arc<Broker>,
    /// The settings when the connection was accepted (run-time changes apply to new ones).
    settings: Arc<Settings>,
    peer: SocketAddr,
    /// The listener's transport, for the `access` events: `tcp`, `tls`, `ws` or `wss`.
    transport: &'static str,
    conn_id: u64,
    reader: Watched<R>,
    writer: W,
    /// The user name a verified client certificate gave (`ssl.username_from_cn`): it stands
    /// for the CONNECT's credentials.
    cert_user: Option<String>,
    /// Room made in the protocol core's input buffer before the next read (between
    /// `MIN_READ` and `MAX_READ`).
    read_chunk: usize,
    wbuf: BytesMut,
    /// The protocol rules and timers of the connection (sans-IO).
    proto: Protocol,
    client: Option<Client>,
    /// The client id of a CONNECT being handled (`client` is set only once it is accepted),
    /// so that a traced client's CONNECT and CONNACK are traced too.
    connecting: Option<String>,
    shutdown: CancellationToken,
    /// This connection's `mqtt.max_connections` slot, given back as soon as it closes.
    slot: Option<OwnedSemaphorePermit>,
    /// PUBACK/PUBREC waiting, in order, until the store says what became of their tickets.
    pending_acks: VecDeque<PendingAck>,
    durable: Option<watch::Receiver<Durable>>,
    /// Messages from this client were queued for sessions since this task last yielded.
    woke_sessions: bool,
    /// Bytes were read since the last PUBLISH was routed: see `let_earlier_input_in`.
    fresh_input: bool,
    /// The client has sent a SUBSCRIBE or UNSUBSCRIBE: PUBLISHes on other connections wait
    /// for its input (see `arrival`).
    subscribed: bool,
    /// PUBLISH packets this connection routed, to pick the ones whose publish-to-delivery
    /// time is measured (an atomic only because `route` takes `&self`; never contended).
    routed: std::sync::atomic::AtomicU64,
    /// Counts the client in `Stats::online` while it is connected.
    online: Option<super::online::Online>,
}

/// A PUBACK/PUBREC waiting for the fsync that makes its message durable.
struct PendingAck {
    ticket: u64,
    ack: Packet,
    /// The message's topic, named if the fsync fails.
    topic: Arc<str>,
    /// Set when a write for the message failed already: it is refused in its turn.
    error: Option<Arc<str>>,
}

/// Serves one connection (plain TCP, TLS or WebSocket, already accepted and upgraded) until it
/// ends.
pub(crate) async fn serve<R, W>(
    broker: Arc<Broker>,
    (reader, writer): (R, W),
    peer: SocketAddr,
    transport: &'static str,
    cert_user: Option<String>,
    shutdown: CancellationToken,
    slot: OwnedSemaphorePermit,
) where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    let conn_id = broker.next_conn_id();
    let now = Instant::now();
    let settings = broker.settings();
    let mut conn = Connection {
        woke_sessions: false,
        proto: Protocol::new(now, limits(&settings)),
        durable: broker.store.as_ref().map(|s| s.durable_watch()),
        pending_acks: VecDeque::new(),
        fresh_input: false,
        subscribed: false,
        routed: std::sync::atomic::AtomicU64::new(0),
        online: None,
        settings,
        broker,
        peer,
        transport,
        conn_id,
        reader: Watched::new(reader),
        writer,
        cert_user,
        read_chunk: MIN_READ,
        wbuf: BytesMut::new(),
        client: None,
        connecting: None,
        shutdown,
        slot: Some(slot),
    };
    tracing::debug!(target: "access", %peer, transport, conn_id, "connection accepted");
    let reason = conn.run().await;
    // Boxed: the close (flush, drain) is allocated when it happens, instead of sizing every
    // idle connection's task for it.
    Box::pin(conn.finish(reason)).await;
}

impl<R, W> Connection<R, W>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    async fn run(&mut self) -> CloseReason {
        let write_limit = self.settings.mqtt.write_buffer_bytes;
        // Whether the socket took some output, or the timer fired, since the last turn.
        let (mut wrote, mut timer_fired) = (false, false);
        loop {
            // The one clock read of this turn: everything below is decided at `now`.
            let now = Instant::now();
            if let Err(reason) = self.process_input(now).await {
                return reason;
            }
            if std::mem::take(&mut self.woke_sessions) {
                // Let the sessions just woken (on this worker) write their deliveries before
                // this task writes its acknowledgements: a subscriber then gets a message
                // before its publisher hears it was taken, as a single-threaded broker does.
                tokio::task::yield_now().await;
            }
            if let Err(reason) = self.release_durable_acks() {
                return reason;
            }
            self.fill_from_session(now, write_limit);
            let unwritten = !self.wbuf.is_empty();
            self.proto
                .on_output(now, unwritten, std::mem::take(&mut wrote));
            // Stop reading from a client that does not read what we write: that bounds
            // `wbuf` (acknowledgements pile up there) and pushes back on the client. Stop
            // reading too while the client is throttled. While we do not read, its keep-alive
            // is not held against it: the stall timer, or the end of the throttle, decides.
            let may_read = self.wbuf.len() < 2 * write_limit
                && !self.proto.is_throttled()
                && !self.acks_full();
            if may_read {
                self.reader.resume();
            } else {
                self.reader.pause();
            }
            self.proto.set_reading(may_read);
            // The stall is checked on every turn, not only when the timer fires: a flood of
            // messages for this session keeps the wake-up branch ready and would starve the
            // timer. The keep-alive only when it fires: bytes already received count first.
            if std::mem::take(&mut timer_fired) {
                if let Some(reason) = self.proto.handle_timeout(now) {
                    return reason;
                }
            } else if self.proto.is_stalled(now) {
                return CloseReason::StalledReader;
            }
            // The end of a throttle is a deadline even if it has just passed: `process_input`
            // then handles what waits in the input without a read having to come first.
            let deadline = self.proto.poll_timeout();
            let may_write = unwritten;
            let handle = self.client.as_ref().map(|c| c.handle.clone());
            let kicked = self.client.as_mut().map(|c| &mut c.kicked);
            let waiting_ack = self.pending_acks.front().map(|a| a.ticket);
            let input = self.proto.input_mut();
            if input.is_empty() && input.capacity() > 2 * self.read_chunk {
                // Reads have been small for a while: give the memory back.
                *input = BytesMut::new();
            }
            if may_read && input.capacity() - input.len() < self.read_chunk {
                input.reserve(self.read_chunk);
            }
            let room = input.capacity() - input.len();
            // Biased: socket IO that is ready is handled before any timer is looked at, so
            // bytes already received always count before a keep-alive verdict.
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return CloseReason::ServerShutdown,
                _ = taken_over(kicked) => return CloseReason::TakenOver,
                r = self.writer.write_buf(&mut self.wbuf), if may_write => match r {
                    Ok(n) => {
                        self.broker.stats.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
                        wrote = true;
                    }
                    Err(e) => return CloseReason::SocketError(e.to_string()),
                },
                // Straight into the protocol core's input: no copy.
                r = self.reader.read_buf(self.proto.input_mut()), if may_read => match r {
                    Ok(0) => return CloseReason::SocketClosed,
                    Ok(n) => {
                        self.broker.stats.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                        self.fresh_input = true;
                        self.read_chunk = if n == room {
                            (self.read_chunk * 2).min(MAX_READ)
                        } else if n < room / 4 {
                            (self.read_chunk / 2).max(MIN_READ)
                        } else {
                            self.read_chunk
                        };
                    }
                    Err(e) => return CloseReason::SocketError(e.to_string()),
                },
                _ = durable_at_least(self.durable.as_mut(), waiting_ack) => {}
                _ = wake(handle.as_deref()) => {}
                // Judged at the top of the next turn, at that turn's `now`.
                _ = sleep_until(deadline) => timer_fired = true,
            }
        }
    }

    /// Decodes and handles every whole packet of the input.
    async fn process_input(&mut self, now: Instant) -> Result<(), CloseReason> {
        loop {
            if self.acks_full() && starts_with_whole_publish(self.proto.input()) {
                // `mqtt.receive_maximum` acknowledgements wait for durability: the next
                // PUBLISH waits for them (a 3.1.1 client has no receive maximum to obey).
                self.release_durable_acks()?;
                if self.acks_full() {
                    return Ok(());
                }
            }
            if !self.admit_next(now) {
                return Ok(());
            }
            let before = self.proto.input().len();
            // Raw bytes are logged per frame, not per read: a frame's kind is known, so a
            // CONNECT's password is masked before any byte of it is logged.
            let head = packet_log::head_of(self.proto.input());
            let packet = match self.proto.decode_next() {
                Ok(Some(p)) => p,
                Ok(None) => return Ok(()),
                Err(e) => {
                    if let Some(head) = head {
                        packet_log::received_bytes(self.peer, head, before, None);
                    }
                    return Err(self.refuse_input(e));
                }
            };
            let size = before - self.proto.input().len();
            if let Some(head) = head {
                packet_log::received_bytes(self.peer, head, size, Some(&packet));
            }
            if let Packet::Connect(c) = &packet {
                if self.client.is_none() {
                    self.connecting = Some(c.client_id.clone());
                }
            }
            packet_log::received(&self.logged(), &packet, size);
            self.proto.on_packet(now, &packet)?;
            self.send_transmits();
            match packet {
                // Boxed: the CONNECT exchange (authentication included) runs once, and inline
                // its state would make every connection's task that much bigger for its life.
                Packet::Connect(c) => {
                    // Nobody waits for this connection while it authenticates.
                    self.reader.pause();
                    let (protocol, started) = (c.protocol, now);
                    let connected = Box::pin(self.handle_connect(*c)).await;
                    self.broker
                        .stats
                        .note_connect(protocol, &connected, started.elapsed());
                    if connected.is_ok() {
                        let online = &self.broker.stats.online;
                        self.online = Some(super::online::Online::count(
                            online,
                            self.transport,
                            protocol,
                        ));
                    }
                    connected?
                }
                other => {
                    match &other {
                        Packet::Publish(_) => {
                            if std::mem::take(&mut self.fresh_input) {
                                self.let_earlier_input_in(now).await;
                            }
                            if !self.subscribed {
                                self.reader.set_quiet(true);
                            }
                        }
                        Packet::Subscribe(_) | Packet::Unsubscribe(_) => {
                            self.subscribed = true;
                            self.reader.set_quiet(false);
                        }
                        _ => {}
                    }
                    self.handle_packet(now, other)?
                }
            }
        }
    }

    /// Before routing the first PUBLISH of what was just read, waits (at most
    /// `mqtt.publish_order_wait_us`) until the input that reached other connections before
    /// it has been read and handled: a SUBSCRIBE that reached the server first is then in
    /// the router before this PUBLISH is routed (see `arrival`).
    async fn let_earlier_input_in(&self, now: Instant) {
        let limit = Duration::from_micros(self.settings.mqtt.publish_order_wait_us);
        if limit.is_zero() {
            return;
        }
        if let Some(earlier) = self.reader.earlier() {
            earlier.wait(now + limit).await;
        }
    }

    /// Whether the next packet of the input may be handled at `now`, or waits because
    /// the client publishes faster than `mqtt.max_messages_per_sec` (reported once).
    fn admit_next(&mut self, now: Instant) -> bool {
        let limit = match self.proto.admit(now) {
            Admission::Now => return true,
            Admission::Later => return false,
            Admission::FirstThrottled { limit } => limit,
        };
        self.broker
            .stats
            .clients_throttled
            .fetch_add(1, Ordering::Relaxed);
        let client = self.client_id().unwrap_or("-").to_owned();
        tracing::warn!(target: "warning", client, peer = %self.peer, limit,
            "client throttled: publishing faster than mqtt.max_messages_per_sec, reading paused");
        false
    }

    /// Sends the acknowledgements whose messages are durable now, in order; one whose fsync
    /// failed is refused instead (`refuse_unstored`), which closes a 3.1/3.1.1 connection.
    fn release_durable_acks(&mut self) -> Result<(), CloseReason> {
        let durable = self.durable.as_ref().map_or(
            Durable {
                synced: u64::MAX,
                failed: 0,
            },
            |d| *d.borrow(),
        );
        while let Some(outcome) = self
            .pending_acks
            .front()
            .and_then(|a| durable.outcome(a.ticket))
        {
            let Some(pending) = self.pending_acks.pop_front() else {
                break;
            };
            match (outcome, pending.error) {
                (Ok(()), None) => self.send_ack(&pending.ack),
                (_, Some(e)) => self.refuse_unstored(pending.ack, &pending.topic, &e)?,
                (Err(e), None) => {
                    self.refuse_unstored(pending.ack, &pending.topic, &e.to_string())?;
                }
            }
        }
        Ok(())
    }

    /// A PUBLISH whose message could not be stored: an `error` event, and no acknowledgement
    /// saying it is safe. MQTT 5.0: `ack` (a PUBACK or PUBREC) goes with 0x80 and the reason,
    /// in its turn after the acknowledgements before it; 3.1/3.1.1 has no refusing code, so
    /// the connection is closed (the client sends the message again on a new one).
    fn refuse_unstored(
        &mut self,
        ack: Packet,
        topic: &str,
        error: &str,
    ) -> Result<(), CloseReason> {
        let client = self.client_id().unwrap_or("-").to_owned();
        let v5 = self.proto.protocol().is_v5();
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
        if !v5 {
            return Err(CloseReason::NotStored(error.to_owned()));
        }
        let reason_string = self
            .proto
            .flow
            .reason_string(|| format!("the message could not be stored: {error}"));
        let ack = match ack {
            Packet::PubAck(a) => Packet::PubAck(refused_ack(a, reason_string)),
            Packet::PubRec(a) => {
                // No PUBREL follows an error PUBREC (MQTT 5.0 4.3.3).
                self.proto.flow.quota.pubrel_received(a.packet_id);
                Packet::PubRec(refused_ack(a, reason_string))
            }
            other => other,
        };
        self.send_ack(&ack);
        Ok(())
    }

    /// Sends a PUBACK/PUBREC; a PUBACK ends its PUBLISH's count against the receive maximum.
    fn send_ack(&mut self, ack: &Packet) {
        self.send(ack);
        if matches!(ack, Packet::PubAck(_)) {
            self.proto.flow.quota.puback_sent();
        }
    }

    /// Whether as many acknowledgements wait for durability as `mqtt.receive_maximum`: a
    /// 3.1/3.1.1 client is then not read from. (An MQTT 5.0 client never gets there: it is
    /// disconnected with 0x93 first.)
    fn acks_full(&self) -> bool {
        !self.proto.protocol().is_v5()
            && self.pending_acks.len() >= usize::from(self.proto.flow.quota.max())
    }

    /// Sends a PUBACK/PUBREC for a message of `topic` once `ticket` is durable, after any
    /// acknowledgement already waiting (MQTT-4.6.0-2: acknowledgements go in the order the
    /// PUBLISHes came).
    fn acknowledge(&mut self, ack: Packet, ticket: u64, topic: &Arc<str>) {
        if ticket == 0 && self.pending_acks.is_empty() {
            self.send_ack(&ack);
        } else {
            self.pending_acks.push_back(PendingAck {
                ticket,
                ack,
                topic: topic.clone(),
                error: None,
            });
        }
    }

    /// Refuses a PUBLISH whose message could not be stored (`refuse_unstored`) once the
    /// acknowledgements waiting before it have gone (MQTT-4.6.0-2).
    fn acknowledge_refused(&mut self, ack: Packet, topic: &Arc<str>, error: Arc<str>) {
        self.pending_acks.push_back(PendingAck {
            ticket: 0,
            ack,
            topic: topic.clone(),
            error: Some(error),
        });
    }

    /// A packet that could not be decoded: logged, answered as the spec asks
    /// (`Connection::on_decode_error`), and why to close.
    fn refuse_input(&mut self, error: DecodeError) -> CloseReason {
        let client = self.client_id().unwrap_or("-").to_owned();
        tracing::warn!(target: "warning", client, peer = %self.peer, %error, "bad packet");
        let reason = self.proto.on_decode_error(error);
        self.send_transmits();
        reason
    }

    /// Sends what the protocol core sends of itself (a PINGRESP, a refusing CONNACK, a
    /// closing DISCONNECT), through `send`: within the client's maximum packet size, and
    /// logged as every packet is.
    fn send_transmits(&mut self) {
        while let Some(packet) = self.proto.poll_transmit() {
            self.send(&packet);
        }
    }

    /// Moves queued messages from the session into the write buffer, up to `limit` bytes.
    fn fill_from_session(&mut self, now: Instant, limit: usize) {
        let Some(client) = &self.client else { return };
        let mut too_large = Vec::new();
        let v5 = self.proto.protocol().is_v5();
        let mut out;
        let expired = {
            let mut slot = client.handle.lock();
            if !slot.is_owned_by(self.conn_id) {
                // Taken over: what is queued now belongs to the new connection, which has
                // already collected what this one had in flight.
                return;
            }
            // Room for what is queued, up to a turn's worth: one allocation, no regrowth.
            out = Vec::with_capacity(slot.session.queued().min(FILL_BATCH));
            let mut budget = limit.saturating_sub(self.wbuf.len());
            while budget > 0 {
                let Some((p, message)) = slot.session.poll_send(now) else {
                    break;
                };
                if let Some(at) = message.sampled_at {
                    let latency = now.saturating_duration_since(at);
                    self.broker.stats.delivery_latency.record(latency);
                }
                budget = budget.saturating_sub(p.payload.len() + p.topic.len() + 8);
                if !v5 {
                    out.push((Packet::Publish(p), message.trace.clone()));
                    continue;
                }
                let (qos, packet_id) = (p.qos, p.packet_id);
                match self.proto.flow.outgoing_publish(p, true) {
                    Ok(packet) => out.push((packet, message.trace.clone())),
                    Err(size) => {
                        // Larger than the client accepts: dropped as if delivered (MQTT 5.0
                        // 3.1.2.11.4, MQTT-3.1.2-25).
                        if qos != QoS::AtMostOnce {
                            slot.session.discard_inflight(packet_id);
                        }
                        too_large.push((message.topic.clone(), qos, size));
                    }
                }
            }
            let expired = slot.session.take_expired();
            // What went in flight (and expired) is written before the packets leave.
            slot.submit_or_log("delivery state");
            expired
        };
        self.note_expired(&client.id, &expired);
        for (topic, qos, size) in too_large {
            self.report_too_large(&topic, qos, size);
        }
        for (p, mark) in &out {
            if let Packet::Publish(p) = p {
                self.broker.stats.record_sent(p.qos);
            }
            self.send(p);
            if let (Some(mark), Packet::Publish(p)) = (mark, p) {
                trace_hop(mark, "sent", &p.topic, self.client_id().unwrap_or("-"), 1);
            }
        }
    }

    /// Counts and logs the messages the session dropped because their expiry interval had
    /// passed before they could be sent (MQTT-3.3.2-5).
    fn note_expired(&self, client: &str, expired: &[Arc<Message>]) {
        if expired.is_empty() {
            return;
        }
        self.broker
            .stats
            .messages_expired
            .fetch_add(expired.len() as u64, Ordering::Relaxed);
        for m in expired {
            tracing::debug!(target: "resource", client, topic = %m.topic, qos = m.qos as u8,
                expiry_secs = m.properties.message_expiry_secs.unwrap_or(0),
                "message expired in the session queue: dropped");
        }
    }

    /// A PUBLISH not sent: larger than the client's maximum packet size.
    fn report_too_large(&self, topic: &str, qos: QoS, size: usize) {
        self.broker
            .stats
            .messages_too_large
            .fetch_add(1, Ordering::Relaxed);
        let client = self.client_id().unwrap_or("-");
        let max = self.proto.flow.client_max_packet().unwrap_or(0);
        tracing::warn!(target: "warning", client, peer = %self.peer, topic, qos = qos as u8, size, max,
            "message discarded: larger than the client's maximum packet size (MQTT-3.1.2-25)");
    }

    /// Encodes a packet into the write buffer, within the client's maximum packet size.
    fn send(&mut self, packet: &Packet) {
        if let Some(size) = self.proto.flow.oversize(packet, self.proto.protocol()) {
            // Reason string and user properties are left out to fit (MQTT-3.1.2-24); a
            // packet that still does not fit is not sent.
            match self.proto.flow.fit(packet.clone(), self.proto.protocol()) {
                Ok(fitted) => return self.send(&fitted),
                Err(_) => {
                    let client = self.client_id().unwrap_or("-").to_owned();
                    tracing::warn!(target: "warning", client, peer = %self.peer, kind = packet.kind(),
                        size, max = self.proto.flow.client_max_packet().unwrap_or(0),
                        "packet not sent: larger than the client's maximum packet size (MQTT-3.1.2-24)");
                    return;
                }
            }
        }
        let before = self.wbuf.len();
        if let Err(error) = try_encode(packet, self.proto.protocol(), &mut self.wbuf) {
            // Not a packet this connection's version can carry (a broker bug, not the
            // client's): the connection goes on without it, and the log says so.
            let client = self.client_id().unwrap_or("-").to_owned();
            tracing::error!(target: "error", client, peer = %self.peer, kind = packet.kind(),
                %error, "packet not sent: it cannot be encoded");
            return;
        }
        let size = self.wbuf.len() - before;
        packet_log::sent(&self.logged(), packet, size);
        packet_log::sent_bytes(self.peer, &self.wbuf[before..]);
    }

    /// Whether this connection's client is followed in the `trace` class.
    fn traced(&self) -> bool {
        self.client_id()
            .or(self.connecting.as_deref())
            .is_some_and(|id| self.broker.tracer.client_traced(id))
    }

    /// What this connection's packet events need.
    fn logged(&self) -> packet_log::Logged<'_> {
        packet_log::Logged {
            sink: self.broker.packet_sink(),
            client: self.client.as_ref().map(|c| &c.id),
            peer: self.peer,
            version: self.proto.protocol(),
            traced: self.traced(),
        }
    }

    fn client_id(&self) -> Option<&str> {
        self.client.as_ref().map(|c| &*c.id)
    }

    /// Ends the connection: flushes what can be flushed, publishes the will if the way it
    /// ended calls for it, and releases (or ends) the session.
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
        super::shared::hand_over(&self.broker, &client.id, shared_left);
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

    async fn finish(mut self, reason: CloseReason) {
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

/// The limits a new connection is held to, from the settings it is accepted under.
fn limits(settings: &Settings) -> Limits {
    let mqtt = &settings.mqtt;
    Limits {
        max_packet_size: mqtt.max_packet_size,
        connect_timeout: settings.connect_timeout(),
        max_client_id_len: mqtt.max_client_id_len,
        stalled_reader_timeout: Duration::from_secs(mqtt.stalled_reader_timeout_secs),
        max_messages_per_sec: mqtt.max_messages_per_sec,
        receive_maximum: mqtt.receive_maximum,
        topic_alias_maximum: mqtt.topic_alias_maximum,
        max_keep_alive_secs: mqtt.max_keep_alive_secs,
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

/// An acknowledgement turned into a refusal: 0x80 (unspecified error), with its reason.
fn refused_ack(ack: Ack, reason_string: Option<Arc<str>>) -> Ack {
    Ack {
        reason: ReasonCode::UnspecifiedError,
        properties: Properties {
            reason_string,
            ..Properties::default()
        },
        ..ack
    }
}

/// Completes when the store knows what became of `ticket`: durable, or its fsync failed
/// (never without one).
async fn durable_at_least(durable: Option<&mut watch::Receiver<Durable>>, ticket: Option<u64>) {
    match (durable, ticket) {
        (Some(rx), Some(t)) => {
            if rx.wait_for(|d| d.outcome(t).is_some()).await.is_err() {
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
