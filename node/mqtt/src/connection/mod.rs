//! The rules of one client connection, sans-IO: which packet may come when, what CONNECT
//! settles (keep-alive, CONNACK properties, client id, receive maximum, topic aliases), and the
//! connection's timers (CONNECT timeout, keep-alive, stalled reader, publish throttle).
//!
//! `Connection` knows nothing of sockets, sessions or routing, and never reads a clock: every
//! method that depends on time takes `now`. Its methods come in the kinds quinn-proto uses:
//! - inputs: `handle_bytes(..)` (or a read straight into `input_mut()`), `decode_next()`
//!   (the next whole packet of the bytes read), `handle_packet(now, ..)` (a decoded packet
//!   arrived: the protocol's rules are applied to it), `on_decode_error(..)`,
//!   `on_output(now, ..)` (what the socket took), `handle_timeout(now)`, `close(..)`;
//! - answers, once the broker did its part of an event: `accept_connect(now, ..)` or
//!   `refuse_connect(..)`, `publish_ack(..)` / `refuse_publish(..)` / `unstored_ack(..)`,
//!   `answer_subscribe(..)`, `answer_unsubscribe(..)`, `release(..)`, `complete(..)`;
//! - questions: `admit(now)` (may the next packet be handled now, or is the client
//!   throttled), `is_stalled(now)`, `is_connected()`;
//! - outputs: `poll_event()`, what the broker must do (authenticate and attach a client,
//!   route a PUBLISH, subscribe, close with a reason: `event.rs`), `poll_transmit()`, the
//!   packets the connection sends of itself, and `poll_timeout()`, the one deadline at which
//!   the driver must call `handle_timeout`.
//!
//! The driver (a tokio task in the broker) reads the clock once per turn of its loop, feeds
//! bytes in, does what the events ask, and writes what `poll_transmit` gives it.

mod answers;
mod close;
mod connect;
mod event;
#[cfg(test)]
mod event_tests;
mod inbound;
mod negotiated;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;

pub use self::close::ClientDisconnect;
pub use self::connect::{inflight_window, session_terms, SessionTerms};
pub use self::event::{
    Acked, ConnectRefusal, ConnectRequest, Event, FilterRefusal, Refusal, RequestedFilter,
    SubscribeOutcome, SubscribeRequest, UnsubscribeOutcome, UnsubscribeRequest,
};
pub use self::negotiated::Negotiated;
pub use crate::close_reason::CloseReason;
use crate::decode::{decode, starts_with_whole_publish, DecodeError};
use crate::packet::{Packet, ProtocolVersion, Publish};
use crate::receive_quota::QuotaExceeded;
use crate::token_bucket::TokenBucket;
use crate::topic::{TopicLimitError, TopicLimits};
use crate::topic_alias::AliasError;

/// The server's limits one connection is held to: the settings it was accepted under (each is
/// a named setting of the broker, `mqtt.*`; run-time changes apply to new connections).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest packet accepted, in bytes; announced in CONNACK (`mqtt.max_packet_size`).
    pub max_packet_size: usize,
    /// Time a new connection has to send CONNECT (`mqtt.connect_timeout_secs`).
    pub connect_timeout: Duration,
    /// Longest client id of a 3.1.1 or 5.0 client (`mqtt.max_client_id_len`).
    pub max_client_id_len: usize,
    /// Time a client may leave written data unread (`mqtt.stalled_reader_timeout_secs`).
    pub stalled_reader_timeout: Duration,
    /// PUBLISH packets handled per second at most (`mqtt.max_messages_per_sec`, 0: no limit).
    pub max_messages_per_sec: u64,
    /// The server's Receive Maximum (`mqtt.receive_maximum`).
    pub receive_maximum: u16,
    /// Topic aliases each way (`mqtt.topic_alias_maximum`).
    pub topic_alias_maximum: u16,
    /// Longest keep-alive an MQTT 5.0 client is held to (`mqtt.max_keep_alive_secs`).
    pub max_keep_alive_secs: u16,
    /// Bounds on topic names and filters (`mqtt.max_topic_levels`, `mqtt.max_topic_len`).
    pub topic_limits: TopicLimits,
    /// The client id is the user name (`auth.client_id_from_username`).
    pub client_id_from_username: bool,
}

/// Whether the packet at the front of the input may be handled now (`Connection::admit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Handle it.
    Now,
    /// Leave it, and everything after it, unread until `poll_timeout`.
    Later,
    /// As `Later`, and this is the first time the client is throttled: the driver reports it
    /// (once per connection) with the limit it exceeds.
    FirstThrottled {
        /// PUBLISH packets per second allowed.
        limit: u64,
    },
}

/// Why an incoming PUBLISH ends the connection (`Connection::check_publish`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishRefusal {
    /// A client's PUBLISH carries a subscription identifier, which only goes from server to
    /// client (MQTT-3.3.4-6).
    SubscriptionIdentifier,
    /// Its topic alias is 0, above the maximum, or unknown (MQTT-3.3.2-8, -9, -10).
    TopicAlias {
        /// The alias it carried.
        alias: Option<u16>,
        /// What was wrong with it.
        error: AliasError,
        /// The Topic Alias Maximum announced in CONNACK.
        max: u16,
    },
    /// One QoS 1/2 PUBLISH more than the Receive Maximum is unacknowledged (MQTT-3.3.4-7).
    ReceiveMaximum {
        /// The Receive Maximum announced in CONNACK.
        max: u16,
    },
    /// Its topic is over the topic limits, or under `$SYS/` (DISCONNECT 0x90 in MQTT 5.0).
    Topic(TopicLimitError),
}

impl PublishRefusal {
    /// The reason the connection closes with.
    pub fn close_reason(&self) -> CloseReason {
        match self {
            Self::SubscriptionIdentifier => CloseReason::ProtocolError(
                "PUBLISH from the client carries a subscription identifier".into(),
            ),
            Self::TopicAlias { error, .. } => match error {
                AliasError::Invalid { .. } => CloseReason::TopicAliasInvalid(error.to_string()),
                AliasError::Unknown(_) => CloseReason::ProtocolError(error.to_string()),
            },
            Self::ReceiveMaximum { max } => CloseReason::ReceiveMaximumExceeded { max: *max },
            Self::Topic(e) => CloseReason::BadPacket {
                code: crate::reason::ReasonCode::TopicNameInvalid,
                why: e.to_string(),
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitingConnect { deadline: Instant },
    Connected,
}

/// The protocol state of one connection.
#[derive(Debug)]
pub struct Connection {
    /// Shared by every connection accepted under the same settings (not a copy each).
    limits: Arc<Limits>,
    phase: Phase,
    /// Keep-alive grace: 1.5 × the keep-alive agreed at CONNECT, `None` for none.
    keep_alive: Option<Duration>,
    /// The keep-alive agreed at CONNECT, in seconds (0: none).
    keep_alive_secs: u16,
    last_received: Instant,
    /// Whether the driver reads the socket: while it does not (the client is throttled, or
    /// does not read what it is sent), the keep-alive is not held against the client.
    reading: bool,
    /// Since when written data has waited for the client to read it.
    unread_since: Option<Instant>,
    /// Paces PUBLISH packets (`Limits::max_messages_per_sec`); `None` without a limit.
    /// Boxed: most nodes set no limit, and inline it would take 48 bytes of every connection.
    publish_pace: Option<Box<TokenBucket>>,
    /// Until when input is left unread because the client publishes faster than its limit.
    throttled_until: Option<Instant>,
    /// Whether the client has been throttled yet (reported once per connection).
    throttle_reported: bool,
    /// The protocol version packets are decoded and encoded with: 3.1.1 until a CONNECT
    /// names its own.
    protocol: ProtocolVersion,
    /// Bytes read from the client and not yet decoded: partial packets wait here between
    /// reads, and whole ones behind a throttled PUBLISH.
    input: BytesMut,
    /// The session expiry interval of the accepted CONNECT (MQTT 5.0; `None` before 5.0).
    session_expiry: Option<u32>,
    /// Packets the connection sends of itself, waiting for `poll_transmit`.
    transmit: VecDeque<Packet>,
    /// What the broker must do, waiting for `poll_event` (no room kept while empty).
    events: VecDeque<Event>,
    /// A packet ended the connection: nothing after it is looked at.
    closing: bool,
    /// The user a verified client certificate gave (`ssl.username_from_cn`): it stands for
    /// the CONNECT's credentials.
    certificate_user: Option<String>,
    /// The client sent no client id: an MQTT 5.0 CONNACK tells it the one it got.
    tell_client_id: bool,
    /// What CONNECT settled beyond 3.1.1 (MQTT 5.0).
    pub flow: Negotiated,
}

impl Connection {
    /// A connection accepted at `now`, which must send CONNECT within the connect timeout.
    pub fn new(now: Instant, limits: impl Into<Arc<Limits>>) -> Self {
        let limits = limits.into();
        let rate = limits.max_messages_per_sec;
        Self {
            phase: Phase::AwaitingConnect {
                deadline: now + limits.connect_timeout,
            },
            keep_alive: None,
            keep_alive_secs: 0,
            last_received: now,
            reading: true,
            unread_since: None,
            publish_pace: (rate > 0).then(|| Box::new(TokenBucket::new(rate, now))),
            throttled_until: None,
            throttle_reported: false,
            protocol: ProtocolVersion::V311,
            input: BytesMut::new(),
            session_expiry: None,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            closing: false,
            certificate_user: None,
            tell_client_id: false,
            flow: Negotiated::new(&limits),
            limits,
        }
    }

    /// The limits the connection is held to.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The user a verified client certificate gave (`ssl.username_from_cn`): it stands for
    /// the CONNECT's user name and password.
    pub fn set_certificate_user(&mut self, user: Option<String>) {
        self.certificate_user = user;
    }

    /// The user a verified client certificate gave, if any.
    pub fn certificate_user(&self) -> Option<&str> {
        self.certificate_user.as_deref()
    }

    /// The protocol version packets are decoded and encoded with: 3.1.1 until a CONNECT
    /// names its own.
    pub fn protocol(&self) -> ProtocolVersion {
        self.protocol
    }

    /// Bytes read from the client (`decode_next` takes them a packet at a time).
    pub fn handle_bytes(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
    }

    /// The bytes read and not yet decoded.
    pub fn input(&self) -> &[u8] {
        &self.input
    }

    /// The input buffer itself, for a driver that reads its socket straight into it (no copy)
    /// and sizes it to its reads.
    pub fn input_mut(&mut self) -> &mut BytesMut {
        &mut self.input
    }

    /// Decodes the next whole packet of the input, in the connection's protocol version and
    /// within `Limits::max_packet_size`; `None` until a whole packet is there. The first
    /// CONNECT sets the version of everything after it.
    pub fn decode_next(&mut self) -> Result<Option<Packet>, DecodeError> {
        let packet = decode(&mut self.input, self.limits.max_packet_size, self.protocol)?;
        if let Some(Packet::Connect(c)) = &packet {
            if !self.is_connected() {
                self.protocol = c.protocol;
            }
        }
        Ok(packet)
    }

    /// A packet arrived at `now`: checks it is allowed at this point of the connection
    /// (CONNECT first and only once, no server-to-client packet types from a client). A
    /// PINGREQ is answered (`poll_transmit`).
    pub fn on_packet(&mut self, now: Instant, packet: &Packet) -> Result<(), CloseReason> {
        self.last_received = now;
        let violation = |why: &str| Err(CloseReason::ProtocolError(why.to_owned()));
        match (self.phase, packet) {
            (Phase::AwaitingConnect { .. }, Packet::Connect(_)) => Ok(()),
            (Phase::AwaitingConnect { .. }, _) => violation("first packet is not CONNECT"),
            (Phase::Connected, Packet::Connect(_)) => violation("second CONNECT"),
            (
                Phase::Connected,
                Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp,
            ) => Err(CloseReason::ProtocolError(format!(
                "{} is a server-to-client packet",
                packet.kind()
            ))),
            (Phase::Connected, Packet::PingReq) => {
                self.transmit.push_back(Packet::PingResp);
                Ok(())
            }
            (Phase::Connected, _) => Ok(()),
        }
    }

    /// Whether CONNECT has been accepted.
    pub fn is_connected(&self) -> bool {
        self.phase == Phase::Connected
    }

    /// The keep-alive agreed at CONNECT, in seconds (0: none).
    pub fn keep_alive_secs(&self) -> u16 {
        self.keep_alive_secs
    }

    /// Checks a client's PUBLISH and, for MQTT 5.0, resolves its topic alias (the topic is
    /// set, the alias taken off) and counts it against the server's Receive Maximum.
    pub fn check_publish(&mut self, p: &mut Publish, v5: bool) -> Result<(), PublishRefusal> {
        if !p.properties.subscription_identifiers.is_empty() {
            return Err(PublishRefusal::SubscriptionIdentifier);
        }
        if !v5 {
            return Ok(());
        }
        let alias = p.properties.topic_alias.take();
        match self.flow.inbound.resolve(&p.topic, alias) {
            Ok(topic) => p.topic = topic,
            Err(error) => {
                return Err(PublishRefusal::TopicAlias {
                    alias,
                    error,
                    max: self.flow.inbound.max(),
                })
            }
        }
        if let Err(QuotaExceeded { max }) = self.flow.quota.on_publish(p.qos, p.packet_id) {
            return Err(PublishRefusal::ReceiveMaximum { max });
        }
        Ok(())
    }

    /// Whether the packet at the front of the input may be handled at `now`. A whole PUBLISH
    /// takes a token of `Limits::max_messages_per_sec`; without one, it and everything after
    /// it wait (they must be handled in the order they came) until the throttle ends, which
    /// `poll_timeout` includes.
    #[must_use]
    pub fn admit(&mut self, now: Instant) -> Admission {
        let Some(pace) = &mut self.publish_pace else {
            return Admission::Now;
        };
        if self.throttled_until.is_some_and(|until| now < until) {
            return Admission::Later;
        }
        self.throttled_until = None;
        if !starts_with_whole_publish(&self.input) {
            return Admission::Now;
        }
        let Err(wait) = pace.try_take(now) else {
            return Admission::Now;
        };
        self.throttled_until = Some(now + wait);
        if std::mem::replace(&mut self.throttle_reported, true) {
            Admission::Later
        } else {
            Admission::FirstThrottled { limit: pace.rate() }
        }
    }

    /// Whether input is left unread at `now` because the client is throttled.
    pub fn is_throttled(&self) -> bool {
        self.throttled_until.is_some()
    }

    /// Whether the driver reads the socket this turn: the keep-alive and CONNECT timeout
    /// count only while it does.
    pub fn set_reading(&mut self, reading: bool) {
        self.reading = reading;
    }

    /// What the socket took at `now`: whether written data still waits for the client, and
    /// whether some was written since the last call (the stalled-reader timer starts again).
    pub fn on_output(&mut self, now: Instant, unwritten: bool, progressed: bool) {
        self.unread_since = match (unwritten, self.unread_since) {
            (false, _) => None,
            (true, Some(since)) if !progressed => Some(since),
            (true, _) => Some(now),
        };
    }

    /// When the driver must call `handle_timeout` (or look at its input again, after a
    /// throttle), if ever.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.idle_deadline(),
            self.stall_deadline(),
            self.throttled_until,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Whether the client has left written data unread for `Limits::stalled_reader_timeout`
    /// at `now`. A flood of messages for the client keeps its driver busy and would starve
    /// its timer, so the driver asks this on every turn, not only when the timer fires.
    pub fn is_stalled(&self, now: Instant) -> bool {
        self.stall_deadline().is_some_and(|d| now >= d)
    }

    /// Time has reached `now`: why the connection must close, if it must.
    #[must_use]
    pub fn handle_timeout(&mut self, now: Instant) -> Option<CloseReason> {
        if self.idle_deadline().is_some_and(|d| now >= d) {
            return Some(match self.phase {
                Phase::AwaitingConnect { .. } => CloseReason::ConnectTimeout,
                Phase::Connected => CloseReason::KeepAliveTimeout,
            });
        }
        self.is_stalled(now).then_some(CloseReason::StalledReader)
    }

    /// The CONNECT timeout or the keep-alive deadline, while the driver reads.
    fn idle_deadline(&self) -> Option<Instant> {
        if !self.reading {
            return None;
        }
        match self.phase {
            Phase::AwaitingConnect { deadline } => Some(deadline),
            Phase::Connected => self.keep_alive.map(|k| self.last_received + k),
        }
    }

    fn stall_deadline(&self) -> Option<Instant> {
        self.unread_since
            .map(|since| since + self.limits.stalled_reader_timeout)
    }
}
