//! MQTT 5.0 topic aliases (section 3.3.2.3.4), sans-IO: the two alias maps of one network
//! connection.
//!
//! Inbound, a client sets an alias by sending a PUBLISH with a topic and the alias, and uses it
//! by sending an empty topic with the alias. An alias of 0 or above the maximum the server
//! announced in CONNACK is refused (DISCONNECT 0x94), and so is an empty topic with an alias
//! never set on this connection (a protocol error, 0x82).
//!
//! Outbound, the server may alias the topics it sends once the client's CONNECT allowed it
//! (Topic Alias Maximum above 0). The policy is the simplest bounded one: the first distinct
//! topics sent on the connection take aliases 1, 2, ... up to the maximum and keep them for
//! the connection's life; later topics go in full. A topic's first PUBLISH carries the topic
//! and its alias, the ones after it an empty topic and the alias. Topics shorter than 4 bytes
//! are never aliased: the alias (3 bytes) would save nothing.
//!
//! Aliases belong to the network connection, not to the session (MQTT-3.3.2-7): each
//! connection starts with none both ways.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use super::packet::Publish;

/// Why an inbound PUBLISH's topic alias is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AliasError {
    /// 0 (MQTT-3.3.2-8), or above the maximum the server announced (MQTT-3.3.2-9):
    /// DISCONNECT 0x94.
    Invalid {
        /// The alias the client sent.
        alias: u16,
        /// The server's Topic Alias Maximum.
        max: u16,
    },
    /// An empty topic with an alias this connection never set: a protocol error (0x82).
    Unknown(u16),
}

impl fmt::Display for AliasError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid { alias, max } => {
                write!(
                    f,
                    "topic alias {alias} is outside 1..={max} (MQTT-3.3.2-8, 3.3.2-9)"
                )
            }
            Self::Unknown(alias) => {
                write!(f, "topic alias {alias} was never set on this connection")
            }
        }
    }
}

/// The aliases a client set on this connection, at most `max` of them.
#[derive(Debug, Default)]
pub struct InboundAliases {
    max: u16,
    topics: BTreeMap<u16, Arc<str>>,
}

impl InboundAliases {
    /// No alias yet; the client may set aliases 1 to `max` (0: none at all).
    pub fn new(max: u16) -> Self {
        Self {
            max,
            topics: BTreeMap::new(),
        }
    }

    /// The Topic Alias Maximum announced to the client.
    pub fn max(&self) -> u16 {
        self.max
    }

    /// The topic a PUBLISH is for: `topic` itself (and `alias`, when given, now stands for
    /// it), or, when `topic` is empty, the topic `alias` stands for.
    pub fn resolve(
        &mut self,
        topic: &Arc<str>,
        alias: Option<u16>,
    ) -> Result<Arc<str>, AliasError> {
        let Some(alias) = alias else {
            return Ok(topic.clone());
        };
        if alias == 0 || alias > self.max {
            return Err(AliasError::Invalid {
                alias,
                max: self.max,
            });
        }
        if topic.is_empty() {
            return self
                .topics
                .get(&alias)
                .cloned()
                .ok_or(AliasError::Unknown(alias));
        }
        // A known alias may be set again to another topic (MQTT 5.0 3.3.2.3.4).
        self.topics.insert(alias, topic.clone());
        Ok(topic.clone())
    }
}

/// Shortest topic worth an alias: the alias property takes 3 bytes.
const MIN_ALIASED_LEN: usize = 4;

/// What to send for one outbound topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outbound {
    /// The topic in full, no alias.
    Full,
    /// The topic in full with a new alias: from now on the alias stands for it.
    Set(u16),
    /// An empty topic with the alias already set for it.
    Use(u16),
}

impl Outbound {
    /// Rewrites `p`'s topic and Topic Alias property for this choice.
    pub fn apply(self, p: &mut Publish) {
        match self {
            Self::Full => p.properties.topic_alias = None,
            Self::Set(alias) => p.properties.topic_alias = Some(alias),
            Self::Use(alias) => {
                p.properties.topic_alias = Some(alias);
                p.topic = Arc::from("");
            }
        }
    }
}

/// The aliases the server gave to topics it sent on this connection.
#[derive(Debug, Default)]
pub struct OutboundAliases {
    max: u16,
    aliases: BTreeMap<Arc<str>, u16>,
}

impl OutboundAliases {
    /// No alias yet; at most `max` will be given (the client's Topic Alias Maximum, or less;
    /// 0: none, MQTT-3.3.2-11).
    pub fn new(max: u16) -> Self {
        Self {
            max,
            aliases: BTreeMap::new(),
        }
    }

    /// What to send for `topic`; nothing changes until [`commit`](Self::commit).
    pub fn plan(&self, topic: &str) -> Outbound {
        if let Some(&alias) = self.aliases.get(topic) {
            return Outbound::Use(alias);
        }
        let given = self.aliases.len();
        if topic.len() < MIN_ALIASED_LEN || given >= usize::from(self.max) {
            return Outbound::Full;
        }
        // Aliases are given in order and never taken back, so the next one is the count + 1.
        Outbound::Set(u16::try_from(given + 1).unwrap_or(self.max))
    }

    /// A PUBLISH for `topic` went out as `plan` said: a new alias now stands for it.
    pub fn commit(&mut self, topic: &Arc<str>, plan: Outbound) {
        if let Outbound::Set(alias) = plan {
            self.aliases.insert(topic.clone(), alias);
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::packet::QoS;

    fn t(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    #[test]
    fn inbound_alias_is_set_by_a_topic_and_used_by_an_empty_one() {
        let mut a = InboundAliases::new(2);
        assert_eq!(a.resolve(&t("plain"), None), Ok(t("plain")));
        assert_eq!(a.resolve(&t("a/b"), Some(1)), Ok(t("a/b")));
        assert_eq!(a.resolve(&t(""), Some(1)), Ok(t("a/b")));
        // Set again: the alias now stands for the new topic.
        assert_eq!(a.resolve(&t("c/d"), Some(1)), Ok(t("c/d")));
        assert_eq!(a.resolve(&t(""), Some(1)), Ok(t("c/d")));
        assert_eq!(a.resolve(&t(""), Some(2)), Err(AliasError::Unknown(2)));
    }

    #[test]
    fn inbound_alias_zero_or_above_the_maximum_is_invalid() {
        let mut a = InboundAliases::new(2);
        assert_eq!(
            a.resolve(&t("x"), Some(0)),
            Err(AliasError::Invalid { alias: 0, max: 2 })
        );
        assert_eq!(
            a.resolve(&t("x"), Some(3)),
            Err(AliasError::Invalid { alias: 3, max: 2 })
        );
        let mut none = InboundAliases::new(0);
        assert_eq!(
            none.resolve(&t("x"), Some(1)),
            Err(AliasError::Invalid { alias: 1, max: 0 })
        );
    }

    #[test]
    fn outbound_aliases_go_to_the_first_topics_and_stay() {
        let mut a = OutboundAliases::new(2);
        let (one, two, three) = (t("one/1"), t("two/2"), t("three/3"));
        let plan = a.plan(&one);
        assert_eq!(plan, Outbound::Set(1));
        a.commit(&one, plan);
        assert_eq!(a.plan(&one), Outbound::Use(1));
        let plan = a.plan(&two);
        assert_eq!(plan, Outbound::Set(2));
        a.commit(&two, plan);
        // The maximum is reached: later topics go in full, the first keep their aliases.
        assert_eq!(a.plan(&three), Outbound::Full);
        a.commit(&three, Outbound::Full);
        assert_eq!(a.plan(&three), Outbound::Full);
        assert_eq!(a.plan(&two), Outbound::Use(2));
    }

    #[test]
    fn a_plan_not_committed_changes_nothing() {
        let mut a = OutboundAliases::new(1);
        let topic = t("big/one");
        assert_eq!(a.plan(&topic), Outbound::Set(1));
        // (The packet was too large to send: not committed.)
        let other = t("small/one");
        let plan = a.plan(&other);
        assert_eq!(plan, Outbound::Set(1));
        a.commit(&other, plan);
        assert_eq!(a.plan(&topic), Outbound::Full);
    }

    #[test]
    fn no_outbound_alias_without_the_clients_leave_or_for_short_topics() {
        let a = OutboundAliases::new(0);
        assert_eq!(a.plan("long/topic"), Outbound::Full);
        let a = OutboundAliases::new(5);
        assert_eq!(a.plan("abc"), Outbound::Full);
        assert_eq!(a.plan("abcd"), Outbound::Set(1));
    }

    #[test]
    fn apply_rewrites_the_publish() {
        let mut p = Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: t("a/topic"),
            packet_id: 1,
            payload: Bytes::from_static(b"x"),
            properties: Default::default(),
        };
        Outbound::Set(3).apply(&mut p);
        assert_eq!((&*p.topic, p.properties.topic_alias), ("a/topic", Some(3)));
        Outbound::Use(3).apply(&mut p);
        assert_eq!((&*p.topic, p.properties.topic_alias), ("", Some(3)));
    }
}
