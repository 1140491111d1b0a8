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
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use fubar_store::Durable;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{oneshot, watch, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;

mod acks;
mod arrival;
mod close;
mod connect;
mod events;
mod outgoing;
mod publish;
mod subscribe;
mod topic_rules;

use acks::PendingAck;
use arrival::Watched;

use super::packet_log;
use super::registry::SessionHandle;
use super::Broker;
use crate::mqtt::connection::{Acked, Admission, CloseReason, Connection as Protocol, Event};
use crate::mqtt::decode::{starts_with_whole_publish, DecodeError};
use crate::mqtt::packet::{LastWill, Packet, ProtocolVersion};
use crate::settings::Settings;

/// Smallest and largest room made in the read buffer for one read. A connection starts small
/// (an idle client costs little memory: a PINGREQ is 2 bytes, most CONNECTs are under 64),
/// doubles while reads fill the room, and halves while they use little of it.
const MIN_READ: u32 = 64;
const MAX_READ: u32 = 64 << 10;

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
    /// Room made in the protocol core's input buffer before the next read (between
    /// `MIN_READ` and `MAX_READ`).
    read_chunk: u32,
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
    /// The mark of copies on other members settled (`Broker::gate`), to wait on.
    settled: Option<watch::Receiver<u64>>,
    /// Messages from this client were queued for sessions since this task last yielded.
    woke_sessions: bool,
    /// Bytes were read since the last PUBLISH was routed: see `let_earlier_input_in`.
    fresh_input: bool,
    /// A packet was split off the input since it was last empty: see `run`.
    split_input: bool,
    /// The client has sent a SUBSCRIBE or UNSUBSCRIBE: PUBLISHes on other connections wait
    /// for its input (see `arrival`).
    subscribed: bool,
    /// PUBLISH packets this connection routed, to pick the ones whose publish-to-delivery
    /// time is measured (an atomic only because `route` takes `&self`; never contended).
    routed: std::sync::atomic::AtomicU64,
    /// Counts the client in `Stats::online` while it is connected.
    online: Option<super::online::Online>,
}

/// Serves one connection (plain TCP, TLS or WebSocket, already accepted and upgraded) until it
/// ends. Not an `async fn`: the connection is built before the future is, so the future holds
/// the connection and its loop, not also the arguments it was built from (an `async fn` keeps
/// its arguments' room for its whole life, moved or not).
pub(crate) fn serve<R, W>(
    broker: Arc<Broker>,
    (reader, writer): (R, W),
    peer: SocketAddr,
    transport: &'static str,
    cert_user: Option<String>,
    shutdown: CancellationToken,
    slot: OwnedSemaphorePermit,
) -> impl Future<Output = ()>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    let conn_id = broker.next_conn_id();
    let now = Instant::now();
    let settings = broker.settings();
    let mut conn = Connection {
        woke_sessions: false,
        // Built in place: a `let` binding moved from here would still take its room in this
        // task for its whole life (async state keeps a local until its scope ends).
        proto: {
            let mut proto = Protocol::new(now, broker.connection_limits());
            proto.set_certificate_user(cert_user);
            proto
        },
        durable: broker.store.as_ref().map(|s| s.durable_watch()),
        settled: broker.gate.as_ref().map(|g| g.watch()),
        pending_acks: VecDeque::new(),
        fresh_input: false,
        split_input: false,
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
        read_chunk: MIN_READ,
        wbuf: BytesMut::new(),
        client: None,
        connecting: None,
        shutdown,
        slot: Some(slot),
    };
    tracing::debug!(target: "access", %peer, transport, conn_id, "connection accepted");
    async move {
        let reason = conn.run().await;
        // Boxed: the close (flush, drain) is allocated when it happens, instead of sizing
        // every idle connection's task for it.
        Box::pin(conn.finish(reason)).await;
    }
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
            // Borrowed, not cloned: a clone per turn bumped the handle's count, a cache line
            // the publishers delivering to this session write too.
            let (handle, kicked) = match self.client.as_mut() {
                Some(c) => (Some(&*c.handle), Some(&mut c.kicked)),
                None => (None, None),
            };
            // Each wait only while its part is still open: the front acknowledgement waits on
            // both, and a wait already satisfied would end every turn at once (the store
            // synced, the copies not yet confirmed: the task spun until they were). When both
            // settled since `release_durable_acks` looked, the store's wait stays armed: it
            // ends at once and the next turn releases the acknowledgement (nothing else would
            // wake this task: a client waiting for its acknowledgements sends nothing).
            let front = self.pending_acks.front();
            let copies_ticket = front
                .and_then(|a| a.copies)
                .map(|c| c.1)
                .filter(|t| self.settled.as_ref().is_some_and(|s| *s.borrow() < *t));
            let durable_ticket = front.map(|a| a.ticket).filter(|t| {
                copies_ticket.is_none()
                    || self
                        .durable
                        .as_ref()
                        .is_some_and(|d| d.borrow().outcome(*t).is_none())
            });
            let durable = watch_wait(self.durable.as_mut(), durable_ticket, |durable, ticket| {
                durable.outcome(ticket).is_some()
            });
            let copies = watch_wait(self.settled.as_mut(), copies_ticket, |settled, ticket| {
                *settled >= ticket
            });
            let input = self.proto.input_mut();
            if input.is_empty()
                && (input.capacity() > 2 * self.read_chunk as usize
                    || (std::mem::take(&mut self.split_input) && self.read_chunk == MIN_READ))
            {
                // Reads have been small for a while: give the memory back. And a decoded
                // packet's bytes were split off the input, which turned it into a buffer
                // shared with them (a 40-byte header allocated, the old buffer kept): a
                // connection that reads little, as an idle one, starts again from a plain
                // buffer of its own once they are handled.
                *input = BytesMut::new();
            }
            if may_read && input.capacity() - input.len() < self.read_chunk as usize {
                input.reserve(self.read_chunk as usize);
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
                _ = durable_at_least(durable) => {}
                _ = durable_at_least(copies) => {}
                _ = wake(handle) => {}
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
            if self.fresh_input && starts_with_whole_publish(self.proto.input()) {
                // Before the PUBLISH is decoded: no packet is held across the wait (it would
                // sit in every connection's task, see `handle_events`).
                self.fresh_input = false;
                self.let_earlier_input_in(now).await;
            }
            if !self.handle_next_packet(now)? {
                return Ok(());
            }
            self.handle_events(now).await?;
        }
    }

    /// Decodes the next whole packet of the input, logs it and hands it to the protocol core;
    /// `false` until a whole packet is there. Not async: the packet is never held across an
    /// `.await` (it would take its room in every connection's task).
    fn handle_next_packet(&mut self, now: Instant) -> Result<bool, CloseReason> {
        let before = self.proto.input().len();
        // Raw bytes are logged per frame, not per read: a frame's kind is known, so a
        // CONNECT's password is masked before any byte of it is logged.
        let head = packet_log::head_of(self.proto.input());
        if head.is_none() && packet_log::quiet(&self.logged()) {
            // A subscriber's PUBACKs, one per message it gets: no packet decoded, no event.
            match self.proto.take_plain_ack(now) {
                Some(Acked::PubAck(id)) => {
                    self.handle_pubacks(now, id);
                    return Ok(true);
                }
                Some(acked) => {
                    self.handle_acked(acked);
                    return Ok(true);
                }
                None => {}
            }
        }
        let packet = match self.proto.decode_next() {
            Ok(Some(p)) => {
                self.split_input = true;
                p
            }
            Ok(None) => return Ok(false),
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
        self.proto.handle_packet(now, packet);
        self.send_transmits();
        Ok(true)
    }

    /// Does what the protocol core asks (`Connection::poll_event`). Only a CONNECT waits, and
    /// it waits boxed and after the event is gone: whatever is live across an `.await` here
    /// sits in every connection's task for its whole life.
    async fn handle_events(&mut self, now: Instant) -> Result<(), CloseReason> {
        loop {
            let request = {
                let Some(event) = self.proto.poll_event() else {
                    return Ok(());
                };
                match event {
                    Event::Connect(request) => request,
                    other => {
                        self.handle_event(now, other)?;
                        continue;
                    }
                }
            };
            // Nobody waits for this connection while it authenticates.
            self.reader.pause();
            let (protocol, started) = (request.connect.protocol, now);
            let connected = Box::pin(self.handle_connect(*request)).await;
            self.broker
                .stats
                .note_connect(protocol, &connected, started.elapsed());
            connected?;
            let online = &self.broker.stats.online;
            self.online = Some(super::online::Online::count(
                online,
                self.transport,
                protocol,
            ));
        }
    }

    /// Does what an event other than CONNECT asks.
    fn handle_event(&mut self, now: Instant, event: Event) -> Result<(), CloseReason> {
        match event {
            // `handle_events` handles it.
            Event::Connect(_) => Ok(()),
            Event::Publish(p) => {
                if !self.subscribed {
                    self.reader.set_quiet(true);
                }
                self.handle_publish(now, p)
            }
            Event::Subscribe(request) => {
                self.subscribed = true;
                self.reader.set_quiet(false);
                self.handle_subscribe(now, request);
                Ok(())
            }
            Event::Unsubscribe(request) => {
                self.subscribed = true;
                self.reader.set_quiet(false);
                self.handle_unsubscribe(request);
                Ok(())
            }
            Event::Acked(acked) => {
                self.handle_acked(acked);
                Ok(())
            }
            Event::SessionExpiry(secs) => {
                self.set_session_expiry(secs);
                Ok(())
            }
            Event::Refused(refusal) => {
                self.log_refusal(&refusal);
                Ok(())
            }
            Event::Close(reason) => Err(reason),
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
            // Boxed, and only when there is something to wait for: its timer and wake-up
            // are 300 bytes every connection's task would otherwise carry.
            Box::pin(earlier.wait(now + limit)).await;
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

/// A wait for the store, or the copies on other members, to settle an acknowledgement's ticket.
type DurableWait<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Waits until `done(value, ticket)` holds for the watched value: made only while an
/// acknowledgement waits on the store (or on the copies on other members), and boxed, since
/// a watch's wait is 200 bytes every connection's task would otherwise carry for its life.
fn watch_wait<'a, T: Send + Sync>(
    rx: Option<&'a mut watch::Receiver<T>>,
    ticket: Option<u64>,
    done: fn(&T, u64) -> bool,
) -> Option<DurableWait<'a>> {
    let (rx, ticket) = (rx?, ticket?);
    Some(Box::pin(async move {
        if rx.wait_for(|value| done(value, ticket)).await.is_err() {
            std::future::pending::<()>().await;
        }
    }))
}

/// Completes when what is waited for is settled: the store knows what became of a ticket
/// (durable, or its fsync failed), or the copies on other members are (never without one).
async fn durable_at_least(wait: Option<DurableWait<'_>>) {
    match wait {
        Some(wait) => wait.await,
        None => std::future::pending().await,
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
