//! A decoded packet from the client meets the protocol's rules (`Connection::handle_packet`):
//! what the connection answers of itself goes to `poll_transmit`, what needs the broker to
//! `poll_event`.

use std::time::Instant;

use bytes::Buf;

use super::event::{
    Acked, ConnectRefusal, ConnectRequest, Event, FilterRefusal, Refusal, RequestedFilter,
    SubscribeRequest, UnsubscribeRequest,
};
use super::{session_terms, Connection, PublishRefusal};
use crate::close_reason::CloseReason;
use crate::message::SubscriptionOptions;
use crate::packet::{
    Ack, ConnAck, Connect, ConnectReturnCode, Disconnect, Packet, Publish, Subscribe, Unsubscribe,
};
use crate::reason::ReasonCode;
use crate::topic;

impl Connection {
    /// A decoded packet arrived at `now`. Checks it is allowed at this point of the
    /// connection and applies the protocol's rules to it: a PINGREQ is answered, a packet
    /// that breaks a rule closes the connection (`Event::Refused`, then `Event::Close`), and
    /// the rest become events for the broker (`poll_event`).
    pub fn handle_packet(&mut self, now: Instant, packet: Packet) {
        if self.closing {
            return;
        }
        if let Err(reason) = self.on_packet(now, &packet) {
            return self.close_with(reason);
        }
        match packet {
            Packet::Connect(c) => self.on_connect(*c),
            Packet::Publish(p) => self.on_publish(p),
            Packet::PubAck(Ack { packet_id, .. }) => self.on_acked(Acked::PubAck(packet_id)),
            Packet::PubRec(Ack {
                packet_id, reason, ..
            }) => self.on_acked(if reason.is_error() {
                Acked::PubRecRefused(packet_id)
            } else {
                Acked::PubRec(packet_id)
            }),
            Packet::PubComp(Ack { packet_id, .. }) => self.on_acked(Acked::PubComp(packet_id)),
            Packet::PubRel(Ack { packet_id, .. }) => self.on_acked(Acked::PubRel(packet_id)),
            Packet::Subscribe(s) => self.on_subscribe(s),
            Packet::Unsubscribe(u) => self.on_unsubscribe(u),
            // Answered by `on_packet`.
            Packet::PingReq => {}
            Packet::Disconnect(d) => self.on_client_disconnect(&d),
            // `on_packet` refuses server-to-client packets before they get here.
            other => self.close_with(CloseReason::ProtocolError(format!(
                "unexpected {}",
                other.kind()
            ))),
        }
    }

    /// Takes a plain acknowledgement (PUBACK, PUBREC, PUBREL or PUBCOMP of four bytes: no
    /// reason code, so success, and no properties) from the front of the input, without
    /// decoding a packet or queueing an event: what a subscriber at QoS 1/2 sends most. The
    /// same rules apply as through `decode_next` and `handle_packet`; anything else (another
    /// packet, a malformed ack, a connection not connected or closing) is left for them.
    pub fn take_plain_ack(&mut self, now: Instant) -> Option<Acked> {
        if self.closing || !self.is_connected() {
            return None;
        }
        let &[first, 2, high, low, ..] = &self.input[..] else {
            return None;
        };
        let packet_id = u16::from_be_bytes([high, low]);
        let acked = match first {
            0x40 => Acked::PubAck(packet_id),
            0x50 => Acked::PubRec(packet_id),
            0x62 => Acked::PubRel(packet_id),
            0x70 => Acked::PubComp(packet_id),
            _ => return None,
        };
        self.input.advance(4);
        self.last_received = now;
        self.count_release(acked);
        Some(acked)
    }

    fn on_acked(&mut self, acked: Acked) {
        self.count_release(acked);
        self.push(Event::Acked(acked));
    }

    /// A PUBREL: its QoS 2 PUBLISH stops counting against the Receive Maximum.
    fn count_release(&mut self, acked: Acked) {
        if let Acked::PubRel(id) = acked {
            self.flow.quota.pubrel_received(id);
        }
    }

    /// The next thing the broker must do for the connection, in the order the packets came.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        let event = self.events.pop_front();
        if self.events.is_empty() && self.events.capacity() > 0 && self.input.is_empty() {
            // Nothing more is buffered: an idle connection keeps no room for events.
            self.events = Default::default();
        }
        event
    }

    fn push(&mut self, event: Event) {
        self.events.push_back(event);
    }

    /// The connection ends: nothing the client sends after this is looked at.
    fn close_with(&mut self, reason: CloseReason) {
        self.closing = true;
        self.push(Event::Close(reason));
    }

    /// A CONNECT: the client id (from the user name under `Limits::client_id_from_username`),
    /// enhanced authentication, the version's client id rules and the will topic are the
    /// protocol's to judge; who the client is, the broker's.
    fn on_connect(&mut self, mut c: Connect) {
        let sent_no_id = c.client_id.is_empty();
        let mut replaced_client_id = None;
        if self.limits.client_id_from_username {
            // As mosquitto's `use_username_as_clientid`: a CONNECT without a user name is
            // refused (CONNACK 5 / 0x87).
            match self.certificate_user.clone().or_else(|| c.username.clone()) {
                None => return self.refuse_connect_rule(c, ConnectRefusal::NoUserName),
                Some(user) if user != c.client_id => {
                    replaced_client_id = Some(std::mem::replace(&mut c.client_id, user));
                }
                Some(_) => {}
            }
        }
        if let Some(method) = &c.properties.authentication_method {
            // No enhanced authentication method is configured, so none is accepted (MQTT 5.0
            // section 4.12: CONNACK 0x8C).
            let why = ConnectRefusal::BadAuthenticationMethod(method.to_string());
            return self.refuse_connect_rule(c, why);
        }
        if !self.client_id_allowed(&c) {
            return self.refuse_connect_rule(c, ConnectRefusal::IdentifierRejected);
        }
        if let Some(will) = &c.will {
            if let Err(error) = self.limits.topic_limits.check_name(&will.topic) {
                let topic = will.topic.to_string();
                return self.refuse_connect_rule(c, ConnectRefusal::WillTopic { topic, error });
            }
        }
        if let Some(user) = &self.certificate_user {
            // The TLS handshake verified the client's certificate: its CN is the user, and it
            // stands for the password.
            c.username = Some(user.clone());
            c.password = None;
        }
        let terms = session_terms(&c);
        let clean_start = c.clean_session;
        c.clean_session = !terms.persistent;
        self.tell_client_id = sent_no_id;
        let assign_client_id = c.client_id.is_empty();
        self.push(Event::Connect(Box::new(ConnectRequest {
            connect: c,
            replaced_client_id,
            terms,
            clean_start,
            assign_client_id,
        })));
    }

    /// Refuses a CONNECT that breaks a rule: the CONNACK that says why (none for a 3.1.1
    /// will topic over the limits, which has no code for it: MQTT-3.1.4-1), the refusal for the
    /// log, and the close.
    fn refuse_connect_rule(&mut self, c: Connect, why: ConnectRefusal) {
        let code = match &why {
            ConnectRefusal::BadAuthenticationMethod(_) => Some(ReasonCode::BadAuthenticationMethod),
            ConnectRefusal::IdentifierRejected => {
                Some(ConnectReturnCode::IdentifierRejected.into())
            }
            ConnectRefusal::NoUserName => Some(ReasonCode::NotAuthorized),
            ConnectRefusal::WillTopic { .. } => {
                c.protocol.is_v5().then_some(ReasonCode::TopicNameInvalid)
            }
        };
        if let Some(code) = code {
            self.refuse_connect(code);
        }
        let reason = why.close_reason();
        self.push(Event::Refused(Refusal::Connect {
            client_id: c.client_id,
            user: c.username,
            why,
        }));
        self.close_with(reason);
    }

    /// The broker refuses the CONNECT with `code` (sent as its 3.1.1 return code to a
    /// 3.1/3.1.1 client): the CONNACK goes to `poll_transmit`.
    pub fn refuse_connect(&mut self, code: ReasonCode) {
        self.transmit
            .push_back(Packet::ConnAck(ConnAck::new(false, code)));
    }

    /// A PUBLISH: no subscription identifier from a client, for MQTT 5.0 its topic alias
    /// resolved and its count against the Receive Maximum, and its topic within the limits.
    fn on_publish(&mut self, mut p: Publish) {
        let v5 = self.protocol.is_v5();
        let checked = self.check_publish(&mut p, v5).and_then(|()| {
            // After the alias is resolved: the topic an alias stands for is checked too.
            self.limits
                .topic_limits
                .check_name(&p.topic)
                .map_err(PublishRefusal::Topic)
        });
        match checked {
            Ok(()) => self.push(Event::Publish(p)),
            Err(why) => {
                let reason = why.close_reason();
                self.push(Event::Refused(Refusal::Publish {
                    topic: p.topic.to_string(),
                    qos: p.qos,
                    packet_id: p.packet_id,
                    why,
                }));
                self.close_with(reason);
            }
        }
    }

    /// A SUBSCRIBE: each filter with its options, and the ones that are not valid filters or
    /// are over the topic limits refused already.
    fn on_subscribe(&mut self, s: Subscribe) {
        // The SUBSCRIBE's subscription identifier goes with each of its subscriptions (MQTT
        // 5.0 3.8.2.1.2; a subscription replaced without one has none).
        let subscription_id = s.properties.subscription_identifiers.first().copied();
        let filters = s
            .filters
            .into_iter()
            .map(|(filter, requested)| {
                let refused = if !topic::is_valid_subscription(&filter) {
                    Some(FilterRefusal::Invalid)
                } else {
                    self.limits
                        .topic_limits
                        .check_filter(&filter)
                        .err()
                        .map(FilterRefusal::OverLimits)
                };
                // MQTT 5.0 subscription options (3.1.1 subscriptions keep their defaults).
                let options = SubscriptionOptions {
                    qos: requested.qos,
                    no_local: requested.no_local,
                    retain_as_published: requested.retain_as_published,
                    retain_handling: requested.retain_handling,
                    subscription_id,
                };
                RequestedFilter {
                    filter,
                    options,
                    refused,
                }
            })
            .collect();
        self.push(Event::Subscribe(SubscribeRequest {
            packet_id: s.packet_id,
            filters,
        }));
    }

    /// An UNSUBSCRIBE: a filter over the topic limits cannot have been subscribed to.
    fn on_unsubscribe(&mut self, u: Unsubscribe) {
        let filters = u
            .filters
            .into_iter()
            .map(|filter| {
                let over = self.limits.topic_limits.check_filter(&filter).err();
                (filter, over)
            })
            .collect();
        self.push(Event::Unsubscribe(UnsubscribeRequest {
            packet_id: u.packet_id,
            filters,
        }));
    }

    /// The client's DISCONNECT: how the connection ends, and the session expiry it may set.
    fn on_client_disconnect(&mut self, d: &Disconnect) {
        match self.on_disconnect(d) {
            Ok(said) => {
                if let Some(secs) = said.session_expiry {
                    self.push(Event::SessionExpiry(secs));
                }
                self.close_with(said.reason);
            }
            Err(reason) => {
                let secs = d.properties.session_expiry_interval.unwrap_or(0);
                self.push(Event::Refused(Refusal::DisconnectExpiry { secs }));
                self.close_with(reason);
            }
        }
    }
}
