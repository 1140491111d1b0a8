//! Packets in, events and answers out: what the protocol core decides on its own (refusals
//! with their codes, per version) and what it hands the broker, with the packets the broker's
//! answers turn into.

use bytes::Bytes;

use super::tests::{accept, connect, connected, limits, publish, t};
use super::*;
use crate::message::RetainHandling;
use crate::packet::{
    Ack, ConnAck, Connect, Disconnect, FilterOptions, LastWill, Properties, ProtocolVersion, QoS,
    SubAckCode, Subscribe, Unsubscribe,
};
use crate::reason::ReasonCode;
use crate::topic::TopicLimitError;

/// Every event the connection has for the broker now.
fn events(c: &mut Connection) -> Vec<Event> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

/// Exactly `N` of them.
fn exactly<const N: usize, T: std::fmt::Debug>(v: Vec<T>) -> [T; N] {
    v.try_into()
        .unwrap_or_else(|v: Vec<T>| panic!("{N} expected, not {v:?}"))
}

/// Every packet the connection sends of itself now.
fn transmits(c: &mut Connection) -> Vec<Packet> {
    std::iter::from_fn(|| c.poll_transmit()).collect()
}

/// A new connection handed `connect` as its first packet.
fn connecting(connect: Connect, limits: Limits) -> Connection {
    let mut c = Connection::new(t(0.0), limits);
    c.handle_packet(t(0.0), Packet::Connect(Box::new(connect)));
    c
}

fn refused_connack(c: &mut Connection) -> Option<ReasonCode> {
    match transmits(c).as_slice() {
        [] => None,
        [Packet::ConnAck(ConnAck {
            session_present: false,
            code,
            ..
        })] => Some(*code),
        other => panic!("a refusing CONNACK, not {other:?}"),
    }
}

/// The connect refusal and the close that follow a CONNECT the protocol refuses.
fn connect_refusal(c: &mut Connection) -> ConnectRefusal {
    match events(c).as_slice() {
        [Event::Refused(Refusal::Connect { why, .. }), Event::Close(reason)] => {
            assert_eq!(*reason, why.close_reason());
            why.clone()
        }
        other => panic!("a refusal and a close, not {other:?}"),
    }
}

#[test]
fn a_connect_that_meets_the_rules_goes_to_the_broker_with_its_terms() {
    let mut v5 = connect(ProtocolVersion::V5, 30, "");
    v5.clean_session = false;
    v5.properties.session_expiry_interval = Some(60);
    let mut c = connecting(v5, limits());
    let [Event::Connect(request)] = exactly::<1, _>(events(&mut c)) else {
        panic!("one CONNECT event");
    };
    assert!(
        request.assign_client_id,
        "no client id sent: one is assigned"
    );
    assert!(!request.clean_start);
    assert_eq!(
        request.terms,
        SessionTerms {
            expiry_secs: Some(60),
            persistent: true
        }
    );
    assert!(!request.connect.clean_session, "persistent");
    assert!(
        transmits(&mut c).is_empty(),
        "the broker answers, not the rules"
    );
    assert!(!c.is_connected(), "until the broker accepts it");
    let ack = accept(&mut c, t(0.0), &request.connect, true, "auto-7");
    assert_eq!(
        ack.properties.assigned_client_identifier.as_deref(),
        Some("auto-7")
    );
    assert!(c.is_connected());
    // A client that sent its own id is not told one.
    let mut c = connecting(connect(ProtocolVersion::V5, 30, "mine"), limits());
    let [Event::Connect(request)] = exactly::<1, _>(events(&mut c)) else {
        panic!("one CONNECT event");
    };
    assert!(!request.assign_client_id);
    let ack = accept(&mut c, t(0.0), &request.connect, false, "mine");
    assert_eq!(ack.properties.assigned_client_identifier, None);
}

#[test]
fn connect_rules_refuse_before_the_broker_is_asked() {
    // Enhanced authentication: no method is configured (CONNACK 0x8C).
    let mut auth = connect(ProtocolVersion::V5, 30, "c");
    auth.properties.authentication_method = Some("SCRAM-SHA-1".into());
    let mut c = connecting(auth, limits());
    assert_eq!(
        refused_connack(&mut c),
        Some(ReasonCode::BadAuthenticationMethod)
    );
    assert_eq!(
        connect_refusal(&mut c),
        ConnectRefusal::BadAuthenticationMethod("SCRAM-SHA-1".into())
    );
    // 3.1.1: an empty client id needs clean session (CONNACK 2).
    let mut unclean = connect(ProtocolVersion::V311, 30, "");
    unclean.clean_session = false;
    let mut c = connecting(unclean, limits());
    assert_eq!(
        refused_connack(&mut c),
        Some(ReasonCode::ClientIdentifierNotValid)
    );
    assert_eq!(connect_refusal(&mut c), ConnectRefusal::IdentifierRejected);
    // A will topic over the limits: MQTT 5.0 is told (0x90), 3.1.1 has no code and is closed.
    for (protocol, told) in [
        (ProtocolVersion::V5, Some(ReasonCode::TopicNameInvalid)),
        (ProtocolVersion::V311, None),
    ] {
        let mut with_will = connect(protocol, 30, "c");
        with_will.will = Some(LastWill {
            topic: "a/b/c/d/e/f/g/h/i".into(),
            payload: Bytes::new(),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Properties::default(),
        });
        let mut c = connecting(with_will, limits());
        assert_eq!(refused_connack(&mut c), told, "{protocol}");
        assert!(matches!(
            connect_refusal(&mut c),
            ConnectRefusal::WillTopic {
                error: TopicLimitError::TooManyLevels { .. },
                ..
            }
        ));
    }
}

#[test]
fn the_user_name_can_be_the_client_id_and_a_certificate_the_credentials() {
    let by_name = Limits {
        client_id_from_username: true,
        ..limits()
    };
    // No user name to take the id from: refused (CONNACK 5 / 0x87).
    let mut c = connecting(connect(ProtocolVersion::V311, 30, "sent"), by_name.clone());
    assert_eq!(refused_connack(&mut c), Some(ReasonCode::NotAuthorized));
    assert_eq!(connect_refusal(&mut c), ConnectRefusal::NoUserName);
    // The user name replaces the id, and the event says which it replaced.
    let mut named = connect(ProtocolVersion::V311, 30, "sent");
    named.username = Some("alice".into());
    let mut c = connecting(named, by_name.clone());
    let [Event::Connect(request)] = exactly::<1, _>(events(&mut c)) else {
        panic!("one CONNECT event");
    };
    assert_eq!(request.connect.client_id, "alice");
    assert_eq!(request.replaced_client_id.as_deref(), Some("sent"));
    // A verified certificate's user is the user (and the id) and stands for the password.
    let mut c = Connection::new(t(0.0), by_name);
    c.set_certificate_user(Some("device-9".into()));
    let mut claimed = connect(ProtocolVersion::V5, 30, "");
    claimed.username = Some("admin".into());
    claimed.password = Some(Bytes::from_static(b"guess"));
    c.handle_packet(t(0.0), Packet::Connect(Box::new(claimed)));
    let [Event::Connect(request)] = exactly::<1, _>(events(&mut c)) else {
        panic!("one CONNECT event");
    };
    assert_eq!(request.connect.client_id, "device-9");
    assert_eq!(request.connect.username.as_deref(), Some("device-9"));
    assert_eq!(request.connect.password, None);
    assert!(!request.assign_client_id);
}

#[test]
fn a_publish_reaches_the_broker_resolved_or_ends_the_connection() {
    let mut c = connected(ProtocolVersion::V5, 30, limits());
    let mut aliased = publish("room/1", QoS::AtLeastOnce, 1);
    aliased.properties.topic_alias = Some(1);
    c.handle_packet(t(1.0), Packet::Publish(aliased));
    let mut again = publish("", QoS::AtMostOnce, 0);
    again.properties.topic_alias = Some(1);
    c.handle_packet(t(1.0), Packet::Publish(again));
    let [Event::Publish(first), Event::Publish(second)] = exactly::<2, _>(events(&mut c)) else {
        panic!("two PUBLISH events");
    };
    assert_eq!(
        (&*first.topic, first.properties.topic_alias),
        ("room/1", None)
    );
    assert_eq!(&*second.topic, "room/1", "the alias resolved");
    // A topic under $SYS/ is the broker's: DISCONNECT 0x90, and nothing after it is looked at.
    c.handle_packet(
        t(2.0),
        Packet::Publish(publish("$SYS/x", QoS::AtMostOnce, 0)),
    );
    c.handle_packet(t(2.0), Packet::Publish(publish("fine", QoS::AtMostOnce, 0)));
    c.handle_packet(t(2.0), Packet::PingReq);
    match events(&mut c).as_slice() {
        [Event::Refused(Refusal::Publish { topic, why, .. }), Event::Close(reason)] => {
            assert_eq!(topic, "$SYS/x");
            assert_eq!(*why, PublishRefusal::Topic(TopicLimitError::Reserved));
            assert_eq!(
                reason.disconnect_reason(),
                Some(ReasonCode::TopicNameInvalid)
            );
        }
        other => panic!("a refusal and a close, not {other:?}"),
    }
    assert!(transmits(&mut c).is_empty(), "no PINGRESP after the close");
}

#[test]
fn publish_acknowledgements_per_version() {
    let mut v5 = connected(ProtocolVersion::V5, 30, limits());
    let q1 = publish("a", QoS::AtLeastOnce, 7);
    let Some(Packet::PubAck(ack)) = v5.publish_ack(&q1, false) else {
        panic!("a PUBACK");
    };
    assert_eq!(ack.reason, ReasonCode::NoMatchingSubscribers);
    assert_eq!(
        v5.publish_ack(&publish("a", QoS::AtMostOnce, 0), true),
        None
    );
    let q2 = publish("a", QoS::ExactlyOnce, 8);
    assert!(
        matches!(v5.publish_ack(&q2, true), Some(Packet::PubRec(a)) if a.reason == ReasonCode::Success)
    );
    // A refused QoS 2 PUBLISH ends its exchange: its Receive Maximum slot is free again.
    v5.check_publish(&mut q2.clone(), true).unwrap();
    let refused = v5.refuse_publish(&q2, ReasonCode::QuotaExceeded, || "full".into());
    assert!(matches!(refused, Some(Packet::PubRec(a)) if a.reason == ReasonCode::QuotaExceeded));
    assert_eq!(v5.flow.quota.outstanding(), 0);
    // A message not stored: 0x80 with the reason in 5.0, the connection closed in 3.1.1.
    let unstored = v5
        .unstored_ack(Packet::PubAck(Ack::new(7)), "disk full")
        .unwrap();
    let Packet::PubAck(a) = unstored else {
        panic!("a PUBACK");
    };
    assert_eq!(a.reason, ReasonCode::UnspecifiedError);
    assert!(a.properties.reason_string.unwrap().contains("disk full"));
    let mut v311 = connected(ProtocolVersion::V311, 30, limits());
    assert_eq!(
        v311.publish_ack(&q1, false),
        Some(Packet::PubAck(Ack::new(7))),
        "3.1.1 has no reason code"
    );
    assert_eq!(
        v311.unstored_ack(Packet::PubAck(Ack::new(7)), "disk full"),
        Err(CloseReason::NotStored("disk full".into()))
    );
}

#[test]
fn acknowledgements_become_events_and_releases_are_answered() {
    let mut c = connected(ProtocolVersion::V5, 30, limits());
    let refused = Ack {
        reason: ReasonCode::UnspecifiedError,
        ..Ack::new(3)
    };
    c.handle_packet(t(1.0), Packet::PubAck(Ack::new(1)));
    c.handle_packet(t(1.0), Packet::PubRec(Ack::new(2)));
    c.handle_packet(t(1.0), Packet::PubRec(refused));
    c.handle_packet(t(1.0), Packet::PubComp(Ack::new(2)));
    c.handle_packet(t(1.0), Packet::PubRel(Ack::new(4)));
    assert_eq!(
        events(&mut c)
            .into_iter()
            .map(|e| match e {
                Event::Acked(a) => a,
                other => panic!("an acknowledgement, not {other:?}"),
            })
            .collect::<Vec<_>>(),
        [
            Acked::PubAck(1),
            Acked::PubRec(2),
            Acked::PubRecRefused(3),
            Acked::PubComp(2),
            Acked::PubRel(4)
        ]
    );
    c.release(2, true);
    c.complete(4, false);
    let sent = transmits(&mut c);
    assert!(
        matches!(&sent[0], Packet::PubRel(a) if a.packet_id == 2 && a.reason == ReasonCode::Success)
    );
    assert!(
        matches!(&sent[1], Packet::PubComp(a) if a.reason == ReasonCode::PacketIdentifierNotFound)
    );
}

#[test]
fn a_plain_acknowledgement_is_taken_as_decoding_would_give_it() {
    // PUBACK 1, PUBREC 2, PUBREL 3, PUBCOMP 4, each of four bytes.
    let acks = [0x40, 2, 0, 1, 0x50, 2, 0, 2, 0x62, 2, 0, 3, 0x70, 2, 0, 4];
    for protocol in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let mut decoded = connected(protocol, 30, limits());
        let mut taken = connected(protocol, 30, limits());
        for c in [&mut decoded, &mut taken] {
            // A QoS 2 PUBLISH in, counted against the Receive Maximum until its PUBREL.
            c.check_publish(&mut publish("a", QoS::ExactlyOnce, 3), true)
                .unwrap();
            assert_eq!(c.flow.quota.outstanding(), 1);
            c.handle_bytes(&acks);
        }
        let mut by_decoding = Vec::new();
        while let Some(packet) = decoded.decode_next().unwrap() {
            decoded.handle_packet(t(20.0), packet);
            by_decoding.extend(events(&mut decoded).into_iter().map(|e| match e {
                Event::Acked(a) => a,
                other => panic!("an acknowledgement, not {other:?}"),
            }));
        }
        let by_taking: Vec<_> = std::iter::from_fn(|| taken.take_plain_ack(t(20.0))).collect();
        assert_eq!(by_taking, by_decoding, "{protocol:?}");
        assert_eq!(by_taking.len(), 4);
        assert!(taken.input().is_empty() && events(&mut taken).is_empty());
        assert_eq!(taken.flow.quota.outstanding(), 0, "the PUBREL released it");
        // Received at 20 s: the keep-alive runs from there, as for a decoded packet.
        assert_eq!(taken.poll_timeout(), decoded.poll_timeout());
        assert!(taken.poll_timeout() > connected(protocol, 30, limits()).poll_timeout());
    }

    // Anything else is left where it is for `decode_next`.
    let mut c = connected(ProtocolVersion::V311, 30, limits());
    for other in [
        &[0x40, 2, 0][..],          // not whole yet
        &[0x42, 2, 0, 1][..],       // reserved flags set: malformed
        &[0x60, 2, 0, 1][..],       // PUBREL without its 0b0010 flags
        &[0x40, 3, 0, 1, 0x10][..], // a reason code (5.0)
        &[0xC0, 0][..],             // PINGREQ
    ] {
        c.input_mut().clear();
        c.handle_bytes(other);
        assert_eq!(c.take_plain_ack(t(1.0)), None, "{other:02x?}");
        assert_eq!(c.input(), other);
    }
    // Not before CONNECT, nor once the connection is closing.
    let mut fresh = Connection::new(t(0.0), limits());
    fresh.handle_bytes(&acks);
    assert_eq!(fresh.take_plain_ack(t(1.0)), None);
    let mut closing = connected(ProtocolVersion::V311, 30, limits());
    closing.handle_packet(t(1.0), Packet::PingResp);
    closing.handle_bytes(&acks);
    assert_eq!(closing.take_plain_ack(t(1.0)), None);
}

#[test]
fn subscribe_filters_are_judged_here_and_answered_per_version() {
    for protocol in [ProtocolVersion::V5, ProtocolVersion::V311] {
        let mut c = connected(protocol, 30, limits());
        let mut s = Subscribe {
            packet_id: 9,
            filters: vec![
                ("ok/+".into(), FilterOptions::from(QoS::AtLeastOnce)),
                ("bad/#/x".into(), FilterOptions::from(QoS::AtMostOnce)),
                (
                    "1/2/3/4/5/6/7/8/9".into(),
                    FilterOptions::from(QoS::AtMostOnce),
                ),
                ("denied".into(), FilterOptions::from(QoS::AtMostOnce)),
            ],
            properties: Properties::default(),
        };
        s.filters[0].1.retain_handling = RetainHandling::Never;
        s.properties.subscription_identifiers = vec![5];
        c.handle_packet(t(1.0), Packet::Subscribe(s));
        let [Event::Subscribe(request)] = exactly::<1, _>(events(&mut c)) else {
            panic!("one SUBSCRIBE event");
        };
        let refused: Vec<_> = request.filters.iter().map(|f| f.refused).collect();
        assert_eq!(refused[0], None);
        assert_eq!(refused[1], Some(FilterRefusal::Invalid));
        assert!(matches!(refused[2], Some(FilterRefusal::OverLimits(_))));
        assert_eq!(refused[3], None, "the topic rules are the broker's");
        let options = request.filters[0].options;
        assert_eq!(options.subscription_id, Some(5));
        assert_eq!(options.retain_handling, RetainHandling::Never);
        c.answer_subscribe(
            &request,
            &[
                SubscribeOutcome::Granted(QoS::AtLeastOnce),
                SubscribeOutcome::Refused(FilterRefusal::Invalid),
                SubscribeOutcome::Refused(refused[2].unwrap()),
                SubscribeOutcome::NotAuthorized,
            ],
        );
        let [Packet::SubAck(ack)] = exactly::<1, _>(transmits(&mut c)) else {
            panic!("one SUBACK");
        };
        assert_eq!(ack.packet_id, 9);
        let expected = if protocol.is_v5() {
            vec![
                SubAckCode::Granted(QoS::AtLeastOnce),
                SubAckCode::Refused(ReasonCode::TopicFilterInvalid),
                SubAckCode::Refused(ReasonCode::TopicFilterInvalid),
                SubAckCode::Refused(ReasonCode::NotAuthorized),
            ]
        } else {
            vec![
                SubAckCode::Granted(QoS::AtLeastOnce),
                SubAckCode::Failure,
                SubAckCode::Failure,
                SubAckCode::Failure,
            ]
        };
        assert_eq!(ack.codes, expected, "{protocol}");
        // Reason strings go only to an MQTT 5.0 client that did not ask for none.
        let why = ack.properties.reason_string.as_deref().unwrap_or("");
        assert_eq!(why.contains("\"denied\": not authorized"), protocol.is_v5());
    }
}

#[test]
fn unsubscribe_is_answered_with_a_reason_per_filter_in_v5_only() {
    for protocol in [ProtocolVersion::V5, ProtocolVersion::V311] {
        let mut c = connected(protocol, 30, limits());
        c.handle_packet(
            t(1.0),
            Packet::Unsubscribe(Unsubscribe {
                packet_id: 4,
                filters: vec!["a".into(), "1/2/3/4/5/6/7/8/9".into()],
                properties: Properties::default(),
            }),
        );
        let [Event::Unsubscribe(request)] = exactly::<1, _>(events(&mut c)) else {
            panic!("one UNSUBSCRIBE event");
        };
        assert_eq!(request.filters[0].1, None);
        assert!(request.filters[1].1.is_some(), "over the topic limits");
        c.answer_unsubscribe(
            4,
            &[
                UnsubscribeOutcome::NoSubscription,
                UnsubscribeOutcome::Invalid,
            ],
        );
        let [Packet::UnsubAck(ack)] = exactly::<1, _>(transmits(&mut c)) else {
            panic!("one UNSUBACK");
        };
        let expected = if protocol.is_v5() {
            vec![
                ReasonCode::NoSubscriptionExisted,
                ReasonCode::TopicFilterInvalid,
            ]
        } else {
            Vec::new()
        };
        assert_eq!(ack.reasons, expected, "{protocol}");
    }
}

#[test]
fn a_disconnect_ends_with_its_reason_and_may_set_the_session_expiry() {
    let mut c = connected(ProtocolVersion::V5, 30, limits());
    let mut d = Disconnect {
        reason: ReasonCode::DisconnectWithWillMessage,
        properties: Properties::default(),
    };
    d.properties.session_expiry_interval = Some(0);
    c.handle_packet(t(1.0), Packet::Disconnect(d));
    match events(&mut c).as_slice() {
        [Event::SessionExpiry(0), Event::Close(CloseReason::ClientDisconnectWithWill)] => {}
        other => panic!("the expiry then the close, not {other:?}"),
    }
}

#[test]
fn packets_out_of_order_close_the_connection() {
    let mut c = Connection::new(t(0.0), limits());
    c.handle_packet(t(0.0), Packet::PingReq);
    assert!(matches!(
        events(&mut c).as_slice(),
        [Event::Close(CloseReason::ProtocolError(_))]
    ));
    let mut c = connected(ProtocolVersion::V311, 30, limits());
    c.handle_packet(
        t(1.0),
        Packet::Connect(Box::new(connect(ProtocolVersion::V311, 30, "c"))),
    );
    assert!(matches!(
        events(&mut c).as_slice(),
        [Event::Close(CloseReason::ProtocolError(why))] if why == "second CONNECT"
    ));
}

#[test]
fn an_idle_connection_keeps_no_room_for_events() {
    let mut c = connected(ProtocolVersion::V311, 30, limits());
    c.handle_packet(t(1.0), Packet::PubAck(Ack::new(1)));
    assert!(c.events.capacity() > 0);
    assert!(c.poll_event().is_some());
    assert_eq!(c.events.capacity(), 0, "given back once drained");
    c.handle_packet(t(2.0), Packet::PingReq);
    assert!(c.transmit.capacity() > 0);
    assert_eq!(c.poll_transmit(), Some(Packet::PingResp));
    assert_eq!(c.transmit.capacity(), 0, "given back once drained");
}
