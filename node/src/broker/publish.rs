//! The one publish path: a client's PUBLISH, a will (at once or delayed) and a copy another
//! node forwarded all go through `Broker::publish`, which routes the message here, tells the
//! cluster, counts it and logs what the retained store did.

use std::sync::Arc;

use super::router::Routed;
use super::{limits, packet_log, Broker};
use crate::mqtt::message::Message;

/// Where a message comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin<'a> {
    /// A PUBLISH of a client connected here (`None`: before its CONNECT was accepted).
    Client(Option<&'a str>),
    /// The will of client `0`.
    Will(&'a str),
    /// A copy another node forwarded; `share` names the share group it is for.
    Forwarded {
        /// The share group (`$share/GROUP/FILTER`) whose turn here it is, if any.
        share: Option<&'a str>,
    },
}

/// What a publish did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    /// The deliveries here.
    pub routed: Routed,
    /// Whether any subscriber, here or (for a message published here) on another node,
    /// matched: an MQTT 5.0 publisher's acknowledgement says "no matching subscribers"
    /// otherwise.
    pub matched: bool,
}

impl Broker {
    /// Routes `message` from `origin`: to the sessions here and, for a message published
    /// here, to the other nodes; counted and, when retained, logged.
    pub fn publish(&self, message: Arc<Message>, origin: Origin<'_>) -> Published {
        let shed = self.memory.is_on();
        let (client, routed) = match origin {
            Origin::Forwarded { share: Some(share) } => {
                let routed = self.router.deliver_shared(share, message, shed);
                let matched = routed.delivered > 0;
                return Published { routed, matched };
            }
            // With its retain flag (for retain as published), and not stored: the retained
            // store is replicated apart, and the node it came from counted it.
            Origin::Forwarded { share: None } => {
                let routed = self.router.publish_copy(message, &self.registry, shed);
                let matched = routed.delivered + routed.skipped_offline + routed.shed > 0;
                return Published { routed, matched };
            }
            Origin::Client(client) => (
                client,
                self.router
                    .publish(message.clone(), &self.registry, &self.retained, shed),
            ),
            Origin::Will(client) => (
                Some(client),
                self.router
                    .publish(message.clone(), &self.registry, &self.retained, shed),
            ),
        };
        // Copies not queued (QoS 0 for a client away, or shed) still had a subscriber.
        let mut matched = routed.delivered + routed.skipped_offline + routed.shed > 0;
        matched |= self.cluster.forward(&message, limits::replicate(&routed));
        self.stats.record_matched(matched);
        self.stats.record_routed(&routed, message.qos);
        if let Some(change) = routed.retained {
            if let Origin::Will(client) = origin {
                limits::note_refused_will(client, &message.topic, change);
            }
            packet_log::retained(client, &message.topic, change);
        }
        Published { routed, matched }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use bytes::Bytes;

    use super::*;
    use crate::broker::cluster_hooks::Recording;
    use crate::mqtt::message::{MessageProperties, SubscriptionOptions};
    use crate::mqtt::packet::QoS;
    use crate::settings::Settings;

    fn message(topic: &str) -> Arc<Message> {
        Arc::new(Message {
            topic: topic.into(),
            payload: Bytes::from_static(b"p"),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: MessageProperties::default(),
            trace: None,
            publisher: None,
            expires_at: None,
            sampled_at: None,
        })
    }

    #[test]
    fn what_is_published_here_goes_to_the_cluster_and_a_forwarded_copy_does_not() {
        let hooks = Arc::new(Recording::default());
        let broker = Broker::new(Settings::default(), None, hooks.clone()).unwrap();
        let limits = Settings::default().session_limits();
        let sub = broker
            .registry
            .attach_with("sub", None, true, false, 1, limits)
            .unwrap()
            .handle;
        let options = SubscriptionOptions {
            qos: QoS::AtMostOnce,
            ..Default::default()
        };
        sub.lock().session.subscribe("t/#", options);
        broker.router.subscribe(&sub, "t/#", options);

        let from_client = broker.publish(message("t/client"), Origin::Client(Some("pub")));
        let will = broker.publish(message("t/will"), Origin::Will("gone"));
        let forwarded = broker.publish(message("t/copy"), Origin::Forwarded { share: None });
        let unmatched = broker.publish(message("u/none"), Origin::Client(Some("pub")));

        for published in [&from_client, &will, &forwarded] {
            assert_eq!(published.routed.delivered, 1);
            assert!(published.matched);
        }
        assert!(!unmatched.matched);
        // A forwarded copy is never sent on again: the node it came from sent it everywhere.
        assert_eq!(*hooks.forwarded.lock(), ["t/client", "t/will", "u/none"]);
        // Counted once, on the node where it was published.
        assert_eq!(broker.stats.messages_in.load(Ordering::Relaxed), 3);
        assert_eq!(
            broker.stats.messages_no_subscriber.load(Ordering::Relaxed),
            1
        );
        assert_eq!(sub.lock().session.queued(), 3);
    }
}
