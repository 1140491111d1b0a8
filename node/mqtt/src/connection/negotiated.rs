//! What a connection agreed with its client at CONNECT beyond MQTT 3.1.1: the server's
//! Receive Maximum and how much of it the client uses, topic aliases both ways, the client's
//! maximum packet size, and whether the client wants reason strings. A 3.1/3.1.1 client leaves
//! it at its defaults, which change nothing on the wire.

use std::sync::Arc;

use super::Limits;
use crate::encode::encoded_len;
use crate::packet::{Connect, Packet, Properties, ProtocolVersion, Publish};
use crate::receive_quota::ReceiveQuota;
use crate::topic_alias::{InboundAliases, Outbound, OutboundAliases};

/// The MQTT 5.0 terms of one connection.
#[derive(Debug)]
pub struct Negotiated {
    /// QoS 1/2 PUBLISHes the client has outstanding, against the server's Receive Maximum.
    pub quota: ReceiveQuota,
    /// Aliases the client set for the topics it publishes to.
    pub inbound: InboundAliases,
    /// Aliases the server gave to the topics it sends.
    outbound: OutboundAliases,
    /// The client's Maximum Packet Size (MQTT 5.0 3.1.2.11.4), when it gave one.
    client_max_packet: Option<usize>,
    /// Whether a reason string may go on packets other than PUBLISH, CONNACK and DISCONNECT
    /// (the client did not set Request Problem Information to 0, MQTT-3.1.2-29).
    reason_strings: bool,
}

impl Negotiated {
    /// The terms before CONNECT: the server's own limits, nothing from the client yet.
    pub fn new(limits: &Limits) -> Self {
        Self {
            quota: ReceiveQuota::new(limits.receive_maximum),
            inbound: InboundAliases::new(limits.topic_alias_maximum),
            outbound: OutboundAliases::new(0),
            client_max_packet: None,
            reason_strings: false,
        }
    }

    /// An MQTT 5.0 client's CONNECT was accepted: what it asked for. The server gives at most
    /// `Limits::topic_alias_maximum` aliases to the topics it sends, fewer if the client allows
    /// fewer (MQTT-3.3.2-11).
    pub fn on_connect(&mut self, c: &Connect, limits: &Limits) {
        let p = &c.properties;
        self.client_max_packet = p
            .maximum_packet_size
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        self.reason_strings = p.request_problem_information != Some(false);
        let aliases = p
            .topic_alias_maximum
            .unwrap_or(0)
            .min(limits.topic_alias_maximum);
        self.outbound = OutboundAliases::new(aliases);
    }

    /// A reason string for an acknowledgement, unless the client asked for none.
    pub fn reason_string(&self, text: impl FnOnce() -> String) -> Option<Arc<str>> {
        self.reason_strings.then(|| text().into())
    }

    /// The client's maximum packet size, when it gave one.
    pub fn client_max_packet(&self) -> Option<usize> {
        self.client_max_packet
    }

    /// The size of `packet` when it is larger than the client accepts (PUBLISH is checked on
    /// its own path, by `outgoing_publish`).
    pub fn oversize(&self, packet: &Packet, version: ProtocolVersion) -> Option<usize> {
        let max = self.client_max_packet?;
        if matches!(packet, Packet::Publish(_)) {
            return None;
        }
        let size = encoded_len(packet, version);
        (size > max).then_some(size)
    }

    /// `packet` made to fit the client's maximum packet size by leaving out its reason string
    /// and user properties (MQTT-3.1.2-24), or its size if even that is too large.
    pub fn fit(&self, mut packet: Packet, version: ProtocolVersion) -> Result<Packet, usize> {
        let Some(max) = self.client_max_packet else {
            return Ok(packet);
        };
        let size = encoded_len(&packet, version);
        if size <= max {
            return Ok(packet);
        }
        if let Some(p) = properties_mut(&mut packet) {
            p.reason_string = None;
            p.user_properties.clear();
        }
        let size = encoded_len(&packet, version);
        if size <= max {
            Ok(packet)
        } else {
            Err(size)
        }
    }

    /// An outgoing PUBLISH (MQTT 5.0), its topic aliased when `alias` and the client allows
    /// aliases; `Err(size)` when it is larger than the client's maximum packet size, and must
    /// be dropped as if it had been delivered (MQTT 5.0 3.1.2.11.4). Nothing is aliased then.
    pub fn outgoing_publish(&mut self, p: Publish, alias: bool) -> Result<Packet, usize> {
        let topic = p.topic.clone();
        let plan = if alias {
            self.outbound.plan(&topic)
        } else {
            Outbound::Full
        };
        let mut packet = Packet::Publish(p);
        if let Packet::Publish(p) = &mut packet {
            plan.apply(p);
        }
        if let Some(max) = self.client_max_packet {
            let size = encoded_len(&packet, ProtocolVersion::V5);
            if size > max {
                // A new alias makes the packet 3 bytes larger: without it, it may still fit.
                let Outbound::Set(_) = plan else {
                    return Err(size);
                };
                if let Packet::Publish(p) = &mut packet {
                    Outbound::Full.apply(p);
                }
                let size = encoded_len(&packet, ProtocolVersion::V5);
                return if size > max { Err(size) } else { Ok(packet) };
            }
        }
        self.outbound.commit(&topic, plan);
        Ok(packet)
    }
}

/// The properties of a packet the server sends, where a reason string may be.
fn properties_mut(packet: &mut Packet) -> Option<&mut Properties> {
    match packet {
        Packet::ConnAck(a) => Some(&mut a.properties),
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            Some(&mut a.properties)
        }
        Packet::SubAck(a) => Some(&mut a.properties),
        Packet::UnsubAck(a) => Some(&mut a.properties),
        Packet::Disconnect(d) => Some(&mut d.properties),
        Packet::Auth(a) => Some(&mut a.properties),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::packet::{Ack, QoS, ReasonCode};

    fn connect(props: Properties) -> Connect {
        Connect {
            protocol: ProtocolVersion::V5,
            clean_session: true,
            keep_alive: 0,
            client_id: "c".into(),
            will: None,
            username: None,
            password: None,
            properties: props,
        }
    }

    fn publish(topic: &str, payload: usize) -> Publish {
        Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: topic.into(),
            packet_id: 1,
            payload: Bytes::from(vec![0u8; payload]),
            properties: Properties::default(),
        }
    }

    #[test]
    fn reason_strings_unless_the_client_asked_for_none() {
        let mqtt = super::super::tests::limits();
        let mut n = Negotiated::new(&mqtt);
        assert_eq!(n.reason_string(|| "x".into()), None, "before a v5 CONNECT");
        n.on_connect(&connect(Properties::default()), &mqtt);
        assert_eq!(n.reason_string(|| "x".into()).as_deref(), Some("x"));
        n.on_connect(
            &connect(Properties {
                request_problem_information: Some(false),
                ..Properties::default()
            }),
            &mqtt,
        );
        assert_eq!(n.reason_string(|| "x".into()), None);
    }

    #[test]
    fn acknowledgements_lose_their_reason_string_to_fit() {
        let mqtt = super::super::tests::limits();
        let mut n = Negotiated::new(&mqtt);
        n.on_connect(
            &connect(Properties {
                maximum_packet_size: Some(8),
                ..Properties::default()
            }),
            &mqtt,
        );
        let ack = Packet::PubRel(Ack {
            packet_id: 1,
            reason: ReasonCode::PacketIdentifierNotFound,
            properties: Properties {
                reason_string: Some("a long explanation".into()),
                ..Properties::default()
            },
        });
        assert!(n.oversize(&ack, ProtocolVersion::V5).is_some());
        let fitted = n.fit(ack, ProtocolVersion::V5).unwrap();
        assert_eq!(encoded_len(&fitted, ProtocolVersion::V5), 5);
        assert!(
            matches!(&fitted, Packet::PubRel(a) if a.properties.reason_string.is_none()
            && a.reason == ReasonCode::PacketIdentifierNotFound)
        );
    }

    #[test]
    fn a_publish_too_large_for_the_client_is_refused_and_aliases_follow_the_clients_leave() {
        let mqtt = super::super::tests::limits();
        let mut n = Negotiated::new(&mqtt);
        n.on_connect(
            &connect(Properties {
                maximum_packet_size: Some(100),
                topic_alias_maximum: Some(1),
                ..Properties::default()
            }),
            &mqtt,
        );
        assert!(matches!(n.outgoing_publish(publish("big/one", 200), true), Err(s) if s > 100));
        // The refused packet took no alias: the next topic gets it.
        let first = n.outgoing_publish(publish("small/one", 10), true).unwrap();
        assert!(
            matches!(&first, Packet::Publish(p) if &*p.topic == "small/one" && p.properties.topic_alias == Some(1))
        );
        let again = n.outgoing_publish(publish("small/one", 10), true).unwrap();
        assert!(
            matches!(&again, Packet::Publish(p) if p.topic.is_empty() && p.properties.topic_alias == Some(1))
        );
        // Resends go in full.
        let resend = n.outgoing_publish(publish("small/one", 10), false).unwrap();
        assert!(
            matches!(&resend, Packet::Publish(p) if &*p.topic == "small/one" && p.properties.topic_alias.is_none())
        );
    }

    #[test]
    fn the_server_gives_no_more_aliases_than_its_own_maximum() {
        let mqtt = Limits {
            topic_alias_maximum: 1,
            ..super::super::tests::limits()
        };
        let mut n = Negotiated::new(&mqtt);
        n.on_connect(
            &connect(Properties {
                topic_alias_maximum: Some(50),
                ..Properties::default()
            }),
            &mqtt,
        );
        let _ = n.outgoing_publish(publish("one/1", 1), true).unwrap();
        let two = n.outgoing_publish(publish("two/2", 1), true).unwrap();
        assert!(matches!(&two, Packet::Publish(p) if p.properties.topic_alias.is_none()));
    }

    #[test]
    fn a_new_alias_is_left_out_when_only_the_full_topic_fits() {
        let mqtt = super::super::tests::limits();
        let mut n = Negotiated::new(&mqtt);
        let p = publish("exact/fit", 10);
        let exact = encoded_len(&Packet::Publish(p.clone()), ProtocolVersion::V5);
        n.on_connect(
            &connect(Properties {
                maximum_packet_size: Some(u32::try_from(exact).unwrap()),
                topic_alias_maximum: Some(5),
                ..Properties::default()
            }),
            &mqtt,
        );
        let sent = n.outgoing_publish(p.clone(), true).unwrap();
        assert!(matches!(&sent, Packet::Publish(p) if p.properties.topic_alias.is_none()));
        // No alias was given: the next one is tried again.
        assert_eq!(n.outbound.plan("exact/fit"), Outbound::Set(1));
    }
}
