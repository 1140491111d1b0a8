//! The connection's side of the topic rules: a PUBLISH, a will and each filter of a
//! SUBSCRIBE are checked here; deliveries are checked by the router.

use tokio::io::{AsyncRead, AsyncWrite};

use super::super::topic_acl::{log_denied, Action, Decision};
use super::Connection;
use crate::mqtt::packet::{Ack, LastWill, Packet, Publish, QoS};
use crate::mqtt::reason::ReasonCode;

impl<R, W> Connection<R, W>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    /// Whether the rules let the client publish `p`. A denied PUBLISH is not routed: MQTT
    /// 5.0 gets PUBACK/PUBREC 0x87; 3.1/3.1.1 cannot be told, so it is acknowledged as usual.
    pub(super) fn publish_allowed(&mut self, p: &Publish) -> bool {
        let acl = &self.broker.topic_acl;
        if !acl.is_active() {
            return true;
        }
        let Some(client) = &self.client else {
            return true;
        };
        let decision = acl.check(&client.handle.acl, Action::Publish, &p.topic);
        if decision.allow {
            return true;
        }
        log_denied(
            &client.handle.acl.identity(),
            "publish",
            &p.topic,
            &decision,
        );
        if !self.proto.protocol().is_v5() {
            match p.qos {
                QoS::AtMostOnce => {}
                QoS::AtLeastOnce => {
                    self.acknowledge(Packet::PubAck(Ack::new(p.packet_id)), 0, None, &p.topic)
                }
                QoS::ExactlyOnce => {
                    // Remembered as received, so that its PUBREL completes as usual.
                    self.session(|s| s.receive_qos2(p.packet_id));
                    self.acknowledge(Packet::PubRec(Ack::new(p.packet_id)), 0, None, &p.topic);
                }
            }
            return false;
        }
        self.refuse_publish_v5(p, ReasonCode::NotAuthorized, || {
            format!("denied by {}", decision.rule_text())
        });
        false
    }

    /// The will of a CONNECT, if the rules let the client publish it (else it is dropped,
    /// with an `access` event).
    pub(super) fn allowed_will(
        &self,
        handle: &super::super::registry::SessionHandle,
        will: Option<LastWill>,
    ) -> Option<LastWill> {
        let will = will?;
        let acl = &self.broker.topic_acl;
        if !acl.is_active() {
            return Some(will);
        }
        let decision = acl.check(&handle.acl, Action::Publish, &will.topic);
        if decision.allow {
            return Some(will);
        }
        log_denied(&handle.acl.identity(), "will", &will.topic, &decision);
        None
    }

    /// The rules' decision on a subscription to `filter` (a `$share` group's by its filter).
    pub(super) fn subscription_decision(
        &self,
        handle: &super::super::registry::SessionHandle,
        filter: &str,
    ) -> Decision {
        let identity = handle.acl.identity();
        let decision = self
            .broker
            .topic_acl
            .decide_subscription(identity.who(), filter);
        if !decision.allow {
            log_denied(&identity, "subscribe", filter, &decision);
        }
        decision
    }
}
