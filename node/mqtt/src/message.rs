//! The application message as the router carries it, independent of protocol version.
//!
//! One `Message` is shared (`Arc`) by every session it is delivered to. The fields beyond
//! topic, payload, QoS and retain are MQTT 5 properties: 3.1/3.1.1 clients never set them, and
//! they pass through the router untouched so that adding the version 5 wire format does not
//! reshape routing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

pub use super::packet::RetainHandling;
use super::packet::{LastWill, Publish, QoS};
use super::properties::Properties;

/// MQTT 5 message properties that travel with a message from publisher to subscribers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageProperties {
    /// Payload format indicator: true when the payload is UTF-8 text.
    pub payload_is_utf8: bool,
    /// Message expiry interval in seconds, as the publisher gave it.
    pub message_expiry_secs: Option<u32>,
    /// Content type (a MIME type, say).
    pub content_type: Option<Arc<str>>,
    /// Response topic, for request/response.
    pub response_topic: Option<Arc<str>>,
    /// Correlation data, for request/response.
    pub correlation_data: Option<Bytes>,
    /// User properties, in order, duplicates allowed.
    pub user_properties: Vec<(Arc<str>, Arc<str>)>,
}

impl MessageProperties {
    /// The message properties among a PUBLISH's (or a will's) properties.
    pub fn of(p: &Properties) -> Self {
        Self {
            payload_is_utf8: p.payload_format_utf8.unwrap_or(false),
            message_expiry_secs: p.message_expiry_interval,
            content_type: p.content_type.clone(),
            response_topic: p.response_topic.clone(),
            correlation_data: p.correlation_data.clone(),
            user_properties: p.user_properties.clone(),
        }
    }

    /// Them as PUBLISH properties, for a subscriber (an MQTT 3.1.1 one gets none: the
    /// encoder leaves them out).
    pub fn to_properties(&self) -> Properties {
        Properties {
            payload_format_utf8: self.payload_is_utf8.then_some(true),
            message_expiry_interval: self.message_expiry_secs,
            content_type: self.content_type.clone(),
            response_topic: self.response_topic.clone(),
            correlation_data: self.correlation_data.clone(),
            user_properties: self.user_properties.clone(),
            ..Properties::default()
        }
    }
}

/// The mark of a traced message: when and where it entered the broker, and the nodes it has
/// passed, so the `trace` class can show its latency at each hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceMark {
    /// When it was received from its publisher, microseconds since the Unix epoch.
    pub origin_us: i64,
    /// The publisher's client id.
    pub origin_client: Arc<str>,
    /// Nodes it has passed, in order (the first is where it was published).
    pub via: Vec<Arc<str>>,
}

/// An application message published to a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Topic name.
    pub topic: Arc<str>,
    /// Payload, shared and never copied per subscriber.
    pub payload: Bytes,
    /// QoS the publisher sent it with.
    pub qos: QoS,
    /// Retain flag as published.
    pub retain: bool,
    /// MQTT 5 properties (empty for 3.1/3.1.1 publishers).
    pub properties: MessageProperties,
    /// Set when the message is traced.
    pub trace: Option<Arc<TraceMark>>,
    /// The client id of the client that published it (for MQTT 5.0 no local), when known.
    pub publisher: Option<Arc<str>>,
    /// When it expires: its message expiry interval counted from when the broker took it
    /// (`expiring_from`); `None` for a message that never expires.
    pub expires_at: Option<Instant>,
    /// When the broker routed it, for the one message in `observe.latency_sample_every` whose
    /// publish-to-delivery time is measured; `None` for the others.
    pub sampled_at: Option<Instant>,
}

impl Message {
    /// The message a PUBLISH packet carries.
    pub fn from_publish(p: &Publish) -> Self {
        Self {
            topic: p.topic.clone(),
            payload: p.payload.clone(),
            qos: p.qos,
            retain: p.retain,
            properties: MessageProperties::of(&p.properties),
            trace: None,
            publisher: None,
            expires_at: None,
            sampled_at: None,
        }
    }

    /// The message a will turns into when it is published.
    pub fn from_will(w: &LastWill) -> Self {
        Self {
            topic: w.topic.clone(),
            payload: w.payload.clone(),
            qos: w.qos,
            retain: w.retain,
            properties: MessageProperties::of(&w.properties),
            trace: None,
            publisher: None,
            expires_at: None,
            sampled_at: None,
        }
    }

    /// The message with its deadline set from its message expiry interval, counted from
    /// `now`: when the broker received it (for a will: when it is published, MQTT 5.0
    /// 3.1.3.2.4; for a copy from another node: when it arrived, with the interval that
    /// remained when it was sent).
    #[must_use]
    pub fn expiring_from(mut self, now: Instant) -> Self {
        self.expires_at = self
            .properties
            .message_expiry_secs
            .and_then(|secs| now.checked_add(Duration::from_secs(u64::from(secs))));
        self
    }

    /// Whether its message expiry interval has passed at `now`.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// The message expiry interval to send at `now`: what remains of it, in whole seconds
    /// rounded up (MQTT-3.3.2-6), 0 once it has passed. A message without a deadline keeps
    /// the interval it was published with (none for one that does not expire).
    pub fn remaining_expiry_secs(&self, now: Instant) -> Option<u32> {
        match self.expires_at {
            Some(at) => Some(remaining_secs(at, now)),
            None => self.properties.message_expiry_secs,
        }
    }

    /// Bytes this message accounts for in a session queue.
    pub fn cost(&self) -> usize {
        self.topic.len() + self.payload.len()
    }
}

/// What remains at `now` of an expiry interval that ends `at`, in whole seconds rounded up
/// (so at least 1 until it ends), 0 once it has ended.
pub fn remaining_secs(at: Instant, now: Instant) -> u32 {
    let left = at.saturating_duration_since(now);
    let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    u32::try_from(secs).unwrap_or(u32::MAX)
}

/// The options a subscription was made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubscriptionOptions {
    /// Maximum QoS granted.
    pub qos: QoS,
    /// MQTT 5 no local: do not deliver the subscriber's own messages.
    pub no_local: bool,
    /// MQTT 5 retain as published: keep the retain flag in normal forwarding.
    pub retain_as_published: bool,
    /// MQTT 5 retain handling.
    pub retain_handling: RetainHandling,
    /// MQTT 5 subscription identifier.
    pub subscription_id: Option<u32>,
}

/// One message on its way to one session: the shared message and how this session gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The message, shared by every session it goes to.
    pub message: Arc<Message>,
    /// QoS for this subscriber: the minimum of published and granted QoS.
    pub qos: QoS,
    /// Retain flag on the wire: set only when sent because of a new subscription.
    pub retain: bool,
    /// The share group (`$share/GROUP/FILTER`) it came through, if any: should this session
    /// leave the group before acknowledging it, it goes to another member.
    pub share: Option<Arc<str>>,
    /// MQTT 5.0 subscription identifiers of the session's subscriptions it matched (those
    /// that have one): the PUBLISH carries them all (MQTT-3.3.4-3, MQTT-3.3.4-4).
    pub subscription_ids: Vec<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expiring(secs: Option<u32>) -> Message {
        Message {
            topic: "t".into(),
            payload: Bytes::from_static(b"p"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: MessageProperties {
                message_expiry_secs: secs,
                ..MessageProperties::default()
            },
            trace: None,
            publisher: None,
            expires_at: None,
            sampled_at: None,
        }
    }

    #[test]
    fn the_remaining_interval_counts_down_from_reception_rounded_up() {
        let t0 = Instant::now();
        let m = expiring(Some(10)).expiring_from(t0);
        assert_eq!(m.expires_at, Some(t0 + Duration::from_secs(10)));
        assert_eq!(m.remaining_expiry_secs(t0), Some(10));
        // 9.7 s left is sent as 10: never 0 while the message lives, never above the interval.
        assert_eq!(
            m.remaining_expiry_secs(t0 + Duration::from_millis(300)),
            Some(10)
        );
        assert_eq!(
            m.remaining_expiry_secs(t0 + Duration::from_secs(4)),
            Some(6)
        );
        assert!(!m.is_expired(t0 + Duration::from_millis(9_999)));
        assert!(m.is_expired(t0 + Duration::from_secs(10)));
        assert_eq!(
            m.remaining_expiry_secs(t0 + Duration::from_secs(11)),
            Some(0)
        );
    }

    #[test]
    fn a_message_without_an_interval_never_expires() {
        let t0 = Instant::now();
        let m = expiring(None).expiring_from(t0);
        assert_eq!(m.expires_at, None);
        assert!(!m.is_expired(t0 + Duration::from_secs(1 << 40)));
        assert_eq!(m.remaining_expiry_secs(t0), None);
        assert_eq!(
            expiring(Some(10)).expiring_from(t0).expires_at,
            Some(t0 + Duration::from_secs(10))
        );
    }
}
