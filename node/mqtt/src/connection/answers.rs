//! The packets that answer the client once the broker has done its part: acknowledgements of
//! its PUBLISHes (and their refusals), SUBACK, UNSUBACK, PUBREL and PUBCOMP. Which code each
//! version gets, and what a reason string says, is decided here.

use std::sync::Arc;

use super::event::{FilterRefusal, SubscribeOutcome, SubscribeRequest, UnsubscribeOutcome};
use super::{CloseReason, Connection};
use crate::packet::{Ack, Packet, Properties, Publish, QoS, SubAck, SubAckCode, UnsubAck};
use crate::reason::ReasonCode;

impl Connection {
    /// The acknowledgement of a client's PUBLISH the broker routed (`None` at QoS 0): MQTT 5.0
    /// says 0x10 when no subscriber, here or on another node, matched it (sections 3.4.2.1,
    /// 3.5.2.1; still a success). The broker sends it once the message is safe.
    pub fn publish_ack(&self, p: &Publish, matched: bool) -> Option<Packet> {
        let ack = Ack {
            reason: if self.protocol.is_v5() && !matched {
                ReasonCode::NoMatchingSubscribers
            } else {
                ReasonCode::Success
            },
            ..Ack::new(p.packet_id)
        };
        match p.qos {
            QoS::AtMostOnce => None,
            QoS::AtLeastOnce => Some(Packet::PubAck(ack)),
            QoS::ExactlyOnce => Some(Packet::PubRec(ack)),
        }
    }

    /// Refuses an MQTT 5.0 PUBLISH the broker does not route: PUBACK/PUBREC `reason` with a
    /// reason string (`None` at QoS 0). An error PUBREC ends the exchange: no PUBREL follows
    /// (MQTT 5.0 4.3.3).
    pub fn refuse_publish(
        &mut self,
        p: &Publish,
        reason: ReasonCode,
        why: impl FnOnce() -> String,
    ) -> Option<Packet> {
        let ack = Ack {
            reason,
            properties: Properties {
                reason_string: self.flow.reason_string(why),
                ..Properties::default()
            },
            ..Ack::new(p.packet_id)
        };
        match p.qos {
            QoS::AtMostOnce => None,
            QoS::AtLeastOnce => Some(Packet::PubAck(ack)),
            QoS::ExactlyOnce => {
                self.flow.quota.pubrel_received(p.packet_id);
                Some(Packet::PubRec(ack))
            }
        }
    }

    /// A PUBLISH whose message could not be stored is not acknowledged as safe. MQTT 5.0:
    /// its `ack` goes with 0x80 and the reason; 3.1/3.1.1 has no refusing code, so the
    /// connection closes (the client sends the message again on a new one).
    pub fn unstored_ack(&mut self, ack: Packet, error: &str) -> Result<Packet, CloseReason> {
        if !self.protocol.is_v5() {
            return Err(CloseReason::NotStored(error.to_owned()));
        }
        let reason_string = self
            .flow
            .reason_string(|| format!("the message could not be stored: {error}"));
        Ok(match ack {
            Packet::PubAck(a) => Packet::PubAck(refused_ack(a, reason_string)),
            Packet::PubRec(a) => {
                // No PUBREL follows an error PUBREC (MQTT 5.0 4.3.3).
                self.flow.quota.pubrel_received(a.packet_id);
                Packet::PubRec(refused_ack(a, reason_string))
            }
            other => other,
        })
    }

    /// A PUBACK/PUBREC went to the client: a PUBACK ends its PUBLISH's count against the
    /// Receive Maximum.
    pub fn ack_sent(&mut self, ack: &Packet) {
        if matches!(ack, Packet::PubAck(_)) {
            self.flow.quota.puback_sent();
        }
    }

    /// The client's PUBREC for `packet_id` was handled (`known`: the session had that
    /// message in flight): the PUBREL goes to `poll_transmit`.
    pub fn release(&mut self, packet_id: u16, known: bool) {
        let ack = self.release_ack(packet_id, known);
        self.transmit.push_back(Packet::PubRel(ack));
    }

    /// The client's PUBREL for `packet_id` was handled (`known`: the session held that QoS 2
    /// message): the PUBCOMP goes to `poll_transmit`.
    pub fn complete(&mut self, packet_id: u16, known: bool) {
        let ack = self.release_ack(packet_id, known);
        self.transmit.push_back(Packet::PubComp(ack));
    }

    /// The SUBACK for `request`, one outcome per filter (`poll_transmit`). MQTT 5.0 says why a
    /// filter was refused (and sums the reasons up in a reason string, unless the client
    /// asked for none); 3.1/3.1.1 has only 0x80.
    pub fn answer_subscribe(&mut self, request: &SubscribeRequest, outcomes: &[SubscribeOutcome]) {
        let v5 = self.protocol.is_v5();
        let refused_as = |code| {
            if v5 {
                SubAckCode::Refused(code)
            } else {
                SubAckCode::Failure
            }
        };
        let mut codes = Vec::with_capacity(outcomes.len());
        let mut refused = Vec::new();
        for (requested, outcome) in request.filters.iter().zip(outcomes) {
            let filter = &requested.filter;
            codes.push(match outcome {
                SubscribeOutcome::Granted(qos) => SubAckCode::Granted(*qos),
                SubscribeOutcome::Refused(FilterRefusal::Invalid) => {
                    refused.push(format!("{filter:?}: topic filter invalid"));
                    refused_as(ReasonCode::TopicFilterInvalid)
                }
                SubscribeOutcome::Refused(FilterRefusal::OverLimits(e)) => {
                    refused.push(e.to_string());
                    refused_as(ReasonCode::TopicFilterInvalid)
                }
                SubscribeOutcome::NotAuthorized => {
                    refused.push(format!("{filter:?}: not authorized"));
                    refused_as(ReasonCode::NotAuthorized)
                }
                SubscribeOutcome::NotStored(e) => {
                    refused.push(format!(
                        "{filter:?}: the subscription could not be stored: {e}"
                    ));
                    refused_as(ReasonCode::UnspecifiedError)
                }
                SubscribeOutcome::QuotaExceeded(max) => {
                    refused.push(format!(
                        "{filter:?}: session.max_subscriptions ({max}) reached"
                    ));
                    // 0x97 Quota exceeded; a 3.1.1 client reads 0x80.
                    SubAckCode::Refused(ReasonCode::QuotaExceeded)
                }
            });
        }
        let properties = Properties {
            reason_string: if refused.is_empty() {
                None
            } else {
                self.flow.reason_string(|| refused.join("; "))
            },
            ..Properties::default()
        };
        self.transmit.push_back(Packet::SubAck(SubAck {
            packet_id: request.packet_id,
            codes,
            properties,
        }));
    }

    /// The UNSUBACK for `packet_id` (`poll_transmit`): MQTT 5.0 gives one reason per filter
    /// (section 3.11.3), 3.1/3.1.1 the packet id only.
    pub fn answer_unsubscribe(&mut self, packet_id: u16, outcomes: &[UnsubscribeOutcome]) {
        let mut ack = UnsubAck::new(packet_id);
        if self.protocol.is_v5() {
            ack.reasons = outcomes
                .iter()
                .map(|outcome| match outcome {
                    UnsubscribeOutcome::Removed => ReasonCode::Success,
                    UnsubscribeOutcome::NoSubscription => ReasonCode::NoSubscriptionExisted,
                    UnsubscribeOutcome::Invalid => ReasonCode::TopicFilterInvalid,
                    UnsubscribeOutcome::NotStored => ReasonCode::UnspecifiedError,
                })
                .collect();
        }
        self.transmit.push_back(Packet::UnsubAck(ack));
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
