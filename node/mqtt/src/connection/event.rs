//! What a connection asks of the broker (`Connection::poll_event`), and the answers the broker
//! gives back for the requests that need one (a CONNECT, a SUBSCRIBE, an UNSUBSCRIBE).
//!
//! The protocol's own rules are applied before an event is made: a CONNECT reaches the broker
//! with an acceptable client id and will topic, a PUBLISH with its topic alias resolved, its
//! topic within the limits and its count against the Receive Maximum taken, a SUBSCRIBE with
//! the filters that are not valid filters already refused. What is left is who the client
//! is, where its session lives and who receives what: the broker's.

use crate::close_reason::CloseReason;
use crate::message::SubscriptionOptions;
use crate::packet::{Connect, Publish, QoS};
use crate::topic::TopicLimitError;

use super::{PublishRefusal, SessionTerms};

/// One thing the broker must do for the connection, in the order the packets came.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "PUBLISH is the hot path: boxing it would allocate per message; events are drained at once and an idle connection keeps no room for them"
)]
pub enum Event {
    /// A CONNECT that meets the protocol's rules: the broker checks the credentials, finds
    /// or makes the session, and answers with `accept_connect` or `refuse_connect`.
    Connect(Box<ConnectRequest>),
    /// A client's PUBLISH to route; a QoS 1/2 one is answered with `publish_ack` (or
    /// `refuse_publish`), sent in the order the PUBLISHes came (MQTT-4.6.0-2).
    Publish(Publish),
    /// The client acknowledged (or released) a message.
    Acked(Acked),
    /// A SUBSCRIBE: answered with `answer_subscribe`.
    Subscribe(SubscribeRequest),
    /// An UNSUBSCRIBE: answered with `answer_unsubscribe`.
    Unsubscribe(UnsubscribeRequest),
    /// The client's DISCONNECT sets a new session expiry interval (MQTT 5.0), in seconds.
    SessionExpiry(u32),
    /// The client broke a rule; the broker logs it. A `Close` follows.
    Refused(Refusal),
    /// The connection ends: what the client is told is in `poll_transmit` already.
    Close(CloseReason),
}

/// A CONNECT the protocol accepts, for the broker to authenticate and attach.
#[derive(Debug)]
pub struct ConnectRequest {
    /// The CONNECT, with the client id replaced by the user name under
    /// `Limits::client_id_from_username`, and the user of a verified client certificate in
    /// place of its credentials.
    pub connect: Connect,
    /// The client id the client sent, when the user name replaced it.
    pub replaced_client_id: Option<String>,
    /// How long the session outlives the connection; `connect.clean_session` is set to
    /// `!terms.persistent`.
    pub terms: SessionTerms,
    /// Whether the CONNECT asked to start clean (3.1.1 clean session, 5.0 clean start).
    pub clean_start: bool,
    /// The client sent no client id: the broker assigns one (an MQTT 5.0 client is told it
    /// in CONNACK).
    pub assign_client_id: bool,
}

/// An acknowledgement of a message the server sent, or a release of one it received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acked {
    /// PUBACK: a QoS 1 delivery ended.
    PubAck(u16),
    /// PUBREC: a QoS 2 delivery was received; the broker answers with `release`.
    PubRec(u16),
    /// PUBREC with an error code (MQTT 5.0): the client refused the message; its delivery
    /// ends here, without PUBREL (MQTT 5.0 4.3.3).
    PubRecRefused(u16),
    /// PUBCOMP: a QoS 2 delivery ended.
    PubComp(u16),
    /// PUBREL: the client releases a QoS 2 message it published; the broker answers with
    /// `complete`.
    PubRel(u16),
}

/// A SUBSCRIBE, filter by filter.
#[derive(Debug)]
pub struct SubscribeRequest {
    /// Its packet id, for the SUBACK.
    pub packet_id: u16,
    /// The filters, in the order the SUBACK answers them.
    pub filters: Vec<RequestedFilter>,
}

/// One filter of a SUBSCRIBE.
#[derive(Debug)]
pub struct RequestedFilter {
    /// The topic filter.
    pub filter: String,
    /// Its options, with the SUBSCRIBE's subscription identifier (MQTT 5.0 3.8.2.1.2).
    pub options: SubscriptionOptions,
    /// Set when the protocol refuses the filter already: the broker answers with it.
    pub refused: Option<FilterRefusal>,
}

/// Why a filter is refused before the broker looks at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterRefusal {
    /// Not a valid topic filter (MQTT 4.7).
    Invalid,
    /// Over `mqtt.max_topic_levels` / `mqtt.max_topic_len`.
    OverLimits(TopicLimitError),
}

/// What became of one filter of a SUBSCRIBE (`answer_subscribe`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscribeOutcome {
    /// Subscribed, at this maximum QoS.
    Granted(QoS),
    /// The protocol refused it (`RequestedFilter::refused`).
    Refused(FilterRefusal),
    /// The topic rules do not let the client read it.
    NotAuthorized,
    /// A new filter beyond `session.max_subscriptions` (the maximum).
    QuotaExceeded(usize),
    /// The store did not take the subscription (why): it was undone.
    NotStored(String),
}

/// An UNSUBSCRIBE, filter by filter.
#[derive(Debug)]
pub struct UnsubscribeRequest {
    /// Its packet id, for the UNSUBACK.
    pub packet_id: u16,
    /// The filters; a filter over the topic limits cannot have been subscribed to, and
    /// carries why.
    pub filters: Vec<(String, Option<TopicLimitError>)>,
}

/// What became of one filter of an UNSUBSCRIBE (`answer_unsubscribe`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsubscribeOutcome {
    /// The subscription is gone.
    Removed,
    /// There was none.
    NoSubscription,
    /// The filter is over the topic limits.
    Invalid,
    /// Gone from memory, but the store still has it.
    NotStored,
}

/// A rule the client broke, for the broker's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A CONNECT refused by the protocol (its CONNACK, if any, is in `poll_transmit`).
    Connect {
        /// The client id it sent.
        client_id: String,
        /// The user name it sent.
        user: Option<String>,
        /// Why.
        why: ConnectRefusal,
    },
    /// A PUBLISH that ends the connection.
    Publish {
        /// Its topic (as sent: an alias may have left it empty).
        topic: String,
        /// Its QoS.
        qos: QoS,
        /// Its packet id (0 at QoS 0).
        packet_id: u16,
        /// What was wrong.
        why: PublishRefusal,
    },
    /// A DISCONNECT that sets a session expiry interval after 0 in CONNECT (MQTT-3.14.2-2).
    DisconnectExpiry {
        /// The interval it asked for.
        secs: u32,
    },
}

/// Why the protocol refuses a CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectRefusal {
    /// Enhanced authentication with a method the server does not have (CONNACK 0x8C).
    BadAuthenticationMethod(String),
    /// The client id breaks the version's rules (CONNACK 2 / 0x85).
    IdentifierRejected,
    /// `auth.client_id_from_username` without a user name (CONNACK 5 / 0x87).
    NoUserName,
    /// The will topic is over the topic limits (MQTT 5.0 CONNACK 0x90; 3.1.1 closed).
    WillTopic {
        /// The will topic.
        topic: String,
        /// How it is over.
        error: TopicLimitError,
    },
}

impl ConnectRefusal {
    /// What the connection closes with.
    pub fn close_reason(&self) -> CloseReason {
        CloseReason::Refused(match self {
            Self::BadAuthenticationMethod(_) => "bad authentication method",
            Self::IdentifierRejected => "identifier rejected",
            Self::NoUserName => "no user name for the client id",
            Self::WillTopic { .. } => "will topic over the topic limits",
        })
    }
}
