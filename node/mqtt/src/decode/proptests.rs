//! Property tests of the codec: `decode(encode(p)) == p` over arbitrary valid packets of
//! every type, for 3.1.1 and for 5.0 (with arbitrary properties and reason codes), prefixes,
//! streams split into arbitrary chunks, and arbitrary bytes.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::encode::{encode, encoded_len};
use crate::properties::{self as prop_id, MAX_VARIABLE_BYTE_INTEGER};

const MAX: usize = 1 << 20;
const V3: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn enc(packet: &Packet, version: ProtocolVersion) -> BytesMut {
    let mut out = BytesMut::new();
    encode(packet, version, &mut out);
    out
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn topic() -> impl Strategy<Value = Arc<str>> {
    "[^+#\\x00]{1,24}".prop_map(Arc::from)
}

fn text() -> impl Strategy<Value = String> {
    "[^\\x00]{0,24}"
}

fn arc_text() -> impl Strategy<Value = Arc<str>> {
    text().prop_map(Arc::from)
}

fn payload() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..300).prop_map(Bytes::from)
}

fn nonzero_id() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}

fn one_of(codes: &'static [ReasonCode]) -> impl Strategy<Value = ReasonCode> {
    prop::sample::select(codes)
}

/// Arbitrary valid values for every property (each present or not).
fn arb_properties() -> impl Strategy<Value = Properties> {
    use prop::option::of;
    let messages = (
        of(any::<bool>()),
        of(any::<u32>()),
        of(arc_text()),
        of(topic()),
        of(payload()),
        prop::collection::vec(1..=MAX_VARIABLE_BYTE_INTEGER, 0..3),
        of(1..=u16::MAX),
        prop::collection::vec((arc_text(), arc_text()), 0..3),
    );
    let session = (
        of(any::<u32>()),
        of(arc_text()),
        of(any::<u16>()),
        of(arc_text()),
        of(payload()),
        of(any::<bool>()),
        of(any::<u32>()),
        of(any::<bool>()),
        of(arc_text()),
        of(arc_text()),
        of(arc_text()),
    );
    let limits = (
        of(1..=u16::MAX),
        of(any::<u16>()),
        of(prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce)]),
        of(any::<bool>()),
        of(1..=u32::MAX),
        of(any::<bool>()),
        of(any::<bool>()),
        of(any::<bool>()),
    );
    (messages, session, limits).prop_map(|(m, s, l)| Properties {
        payload_format_utf8: m.0,
        message_expiry_interval: m.1,
        content_type: m.2,
        response_topic: m.3,
        correlation_data: m.4,
        subscription_identifiers: m.5,
        topic_alias: m.6,
        user_properties: m.7,
        session_expiry_interval: s.0,
        assigned_client_identifier: s.1,
        server_keep_alive: s.2,
        authentication_method: s.3,
        authentication_data: s.4,
        request_problem_information: s.5,
        will_delay_interval: s.6,
        request_response_information: s.7,
        response_information: s.8,
        server_reference: s.9,
        reason_string: s.10,
        receive_maximum: l.0,
        topic_alias_maximum: l.1,
        maximum_qos: l.2,
        retain_available: l.3,
        maximum_packet_size: l.4,
        wildcard_subscription_available: l.5,
        subscription_identifier_available: l.6,
        shared_subscription_available: l.7,
    })
}

/// Clears every property `ctx` may not carry.
fn restrict(mut p: Properties, ctx: PropertyContext) -> Properties {
    fn keep<T>(slot: &mut Option<T>, ctx: PropertyContext, id: u8) {
        if !ctx.allows(id) {
            *slot = None;
        }
    }
    keep(
        &mut p.payload_format_utf8,
        ctx,
        prop_id::PAYLOAD_FORMAT_INDICATOR,
    );
    keep(
        &mut p.message_expiry_interval,
        ctx,
        prop_id::MESSAGE_EXPIRY_INTERVAL,
    );
    keep(&mut p.content_type, ctx, prop_id::CONTENT_TYPE);
    keep(&mut p.response_topic, ctx, prop_id::RESPONSE_TOPIC);
    keep(&mut p.correlation_data, ctx, prop_id::CORRELATION_DATA);
    if !ctx.allows(prop_id::SUBSCRIPTION_IDENTIFIER) {
        p.subscription_identifiers.clear();
    }
    if ctx == PropertyContext::Subscribe {
        p.subscription_identifiers.truncate(1);
    }
    keep(
        &mut p.session_expiry_interval,
        ctx,
        prop_id::SESSION_EXPIRY_INTERVAL,
    );
    keep(
        &mut p.assigned_client_identifier,
        ctx,
        prop_id::ASSIGNED_CLIENT_IDENTIFIER,
    );
    keep(&mut p.server_keep_alive, ctx, prop_id::SERVER_KEEP_ALIVE);
    keep(
        &mut p.authentication_method,
        ctx,
        prop_id::AUTHENTICATION_METHOD,
    );
    keep(
        &mut p.authentication_data,
        ctx,
        prop_id::AUTHENTICATION_DATA,
    );
    keep(
        &mut p.request_problem_information,
        ctx,
        prop_id::REQUEST_PROBLEM_INFORMATION,
    );
    keep(
        &mut p.will_delay_interval,
        ctx,
        prop_id::WILL_DELAY_INTERVAL,
    );
    keep(
        &mut p.request_response_information,
        ctx,
        prop_id::REQUEST_RESPONSE_INFORMATION,
    );
    keep(
        &mut p.response_information,
        ctx,
        prop_id::RESPONSE_INFORMATION,
    );
    keep(&mut p.server_reference, ctx, prop_id::SERVER_REFERENCE);
    keep(&mut p.reason_string, ctx, prop_id::REASON_STRING);
    keep(&mut p.receive_maximum, ctx, prop_id::RECEIVE_MAXIMUM);
    keep(
        &mut p.topic_alias_maximum,
        ctx,
        prop_id::TOPIC_ALIAS_MAXIMUM,
    );
    keep(&mut p.topic_alias, ctx, prop_id::TOPIC_ALIAS);
    keep(&mut p.maximum_qos, ctx, prop_id::MAXIMUM_QOS);
    keep(&mut p.retain_available, ctx, prop_id::RETAIN_AVAILABLE);
    keep(
        &mut p.maximum_packet_size,
        ctx,
        prop_id::MAXIMUM_PACKET_SIZE,
    );
    keep(
        &mut p.wildcard_subscription_available,
        ctx,
        prop_id::WILDCARD_SUBSCRIPTION_AVAILABLE,
    );
    keep(
        &mut p.subscription_identifier_available,
        ctx,
        prop_id::SUBSCRIPTION_IDENTIFIER_AVAILABLE,
    );
    keep(
        &mut p.shared_subscription_available,
        ctx,
        prop_id::SHARED_SUBSCRIPTION_AVAILABLE,
    );
    p
}

/// Properties for `ctx` in MQTT 5.0, none before.
fn props(v5: bool, ctx: PropertyContext) -> BoxedStrategy<Properties> {
    if v5 {
        arb_properties().prop_map(move |p| restrict(p, ctx)).boxed()
    } else {
        Just(Properties::default()).boxed()
    }
}

fn arb_connect(v5: bool) -> impl Strategy<Value = Connect> {
    let will = (
        topic(),
        payload(),
        qos(),
        any::<bool>(),
        props(v5, PropertyContext::Will),
    )
        .prop_map(|(topic, payload, qos, retain, properties)| LastWill {
            topic,
            payload,
            qos,
            retain,
            properties,
        });
    let protocol = if v5 {
        Just(V5).boxed()
    } else {
        prop_oneof![Just(ProtocolVersion::V31), Just(V3)].boxed()
    };
    (
        protocol,
        any::<bool>(),
        any::<u16>(),
        text(),
        prop::option::of(will),
        prop::option::of(text()),
        prop::option::of(payload()),
        props(v5, PropertyContext::Connect),
    )
        .prop_map(
            move |(
                protocol,
                clean_session,
                keep_alive,
                client_id,
                will,
                username,
                password,
                properties,
            )| {
                Connect {
                    protocol,
                    clean_session,
                    keep_alive,
                    client_id,
                    will,
                    // MQTT 5.0 allows a password without a user name.
                    password: password.filter(|_| v5 || username.is_some()),
                    username,
                    properties,
                }
            },
        )
}

fn arb_publish(v5: bool) -> impl Strategy<Value = Publish> {
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        topic(),
        nonzero_id(),
        payload(),
        props(v5, PropertyContext::Publish),
    )
        .prop_map(|(qos, dup, retain, topic, id, payload, properties)| {
            let qos0 = qos == QoS::AtMostOnce;
            // With a topic alias, MQTT 5.0 may leave the topic out.
            let topic = match properties.topic_alias {
                Some(alias) if alias % 2 == 0 => Arc::from(""),
                _ => topic,
            };
            Publish {
                dup: dup && !qos0,
                qos,
                retain,
                topic,
                packet_id: if qos0 { 0 } else { id },
                payload,
                properties,
            }
        })
}

fn arb_filter_options(v5: bool) -> impl Strategy<Value = FilterOptions> {
    (qos(), any::<bool>(), any::<bool>(), 0u8..3).prop_map(move |(qos, nl, rap, rh)| {
        if !v5 {
            return FilterOptions::from(qos);
        }
        FilterOptions {
            qos,
            no_local: nl,
            retain_as_published: rap,
            retain_handling: match rh {
                0 => RetainHandling::OnSubscribe,
                1 => RetainHandling::OnNewSubscription,
                _ => RetainHandling::Never,
            },
        }
    })
}

/// An acknowledgement of PUBLISH: a reason code from `codes` in MQTT 5.0.
fn arb_ack(
    v5: bool,
    ctx: PropertyContext,
    codes: &'static [ReasonCode],
) -> impl Strategy<Value = Ack> {
    let reason = if v5 {
        one_of(codes).boxed()
    } else {
        Just(ReasonCode::Success).boxed()
    };
    (any::<u16>(), reason, props(v5, ctx)).prop_map(|(packet_id, reason, properties)| Ack {
        packet_id,
        reason,
        properties,
    })
}

fn arb_packet(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let v5 = version.is_v5();
    let suback_code = if v5 {
        one_of(reason::SUBACK)
            .prop_map(|c| match c as u8 {
                0..=2 => SubAckCode::Granted(QoS::from_u8(c as u8).unwrap_or_default()),
                0x80 => SubAckCode::Failure,
                _ => SubAckCode::Refused(c),
            })
            .boxed()
    } else {
        prop_oneof![
            qos().prop_map(SubAckCode::Granted),
            Just(SubAckCode::Failure)
        ]
        .boxed()
    };
    let connack_code = if v5 {
        one_of(reason::CONNACK).boxed()
    } else {
        (0u8..=5)
            .prop_filter_map("code", ConnectReturnCode::from_u8)
            .prop_map(ReasonCode::from)
            .boxed()
    };
    let unsuback_reasons = if v5 {
        prop::collection::vec(one_of(reason::UNSUBACK), 1..5).boxed()
    } else {
        Just(Vec::new()).boxed()
    };
    let tail = |ctx, codes: &'static [ReasonCode]| {
        let reason = if v5 {
            one_of(codes).boxed()
        } else {
            Just(ReasonCode::Success).boxed()
        };
        (reason, props(v5, ctx))
    };
    let mut kinds = vec![
        arb_connect(v5)
            .prop_map(|c| Packet::Connect(Box::new(c)))
            .boxed(),
        (
            any::<bool>(),
            connack_code,
            props(v5, PropertyContext::ConnAck),
        )
            .prop_map(|(session_present, code, properties)| {
                Packet::ConnAck(ConnAck {
                    session_present,
                    code,
                    properties,
                })
            })
            .boxed(),
        arb_publish(v5).prop_map(Packet::Publish).boxed(),
        arb_ack(v5, PropertyContext::PubAck, reason::PUBACK)
            .prop_map(Packet::PubAck)
            .boxed(),
        arb_ack(v5, PropertyContext::PubRec, reason::PUBACK)
            .prop_map(Packet::PubRec)
            .boxed(),
        arb_ack(v5, PropertyContext::PubRel, reason::PUBREL)
            .prop_map(Packet::PubRel)
            .boxed(),
        arb_ack(v5, PropertyContext::PubComp, reason::PUBREL)
            .prop_map(Packet::PubComp)
            .boxed(),
        (
            nonzero_id(),
            prop::collection::vec((text(), arb_filter_options(v5)), 1..5),
            props(v5, PropertyContext::Subscribe),
        )
            .prop_map(|(packet_id, filters, properties)| {
                Packet::Subscribe(Subscribe {
                    packet_id,
                    filters,
                    properties,
                })
            })
            .boxed(),
        (
            any::<u16>(),
            prop::collection::vec(suback_code, 1..5),
            props(v5, PropertyContext::SubAck),
        )
            .prop_map(|(packet_id, codes, properties)| {
                Packet::SubAck(SubAck {
                    packet_id,
                    codes,
                    properties,
                })
            })
            .boxed(),
        (
            nonzero_id(),
            prop::collection::vec(text(), 1..5),
            props(v5, PropertyContext::Unsubscribe),
        )
            .prop_map(|(packet_id, filters, properties)| {
                Packet::Unsubscribe(Unsubscribe {
                    packet_id,
                    filters,
                    properties,
                })
            })
            .boxed(),
        (
            any::<u16>(),
            unsuback_reasons,
            props(v5, PropertyContext::UnsubAck),
        )
            .prop_map(|(packet_id, reasons, properties)| {
                Packet::UnsubAck(UnsubAck {
                    packet_id,
                    reasons,
                    properties,
                })
            })
            .boxed(),
        Just(Packet::PingReq).boxed(),
        Just(Packet::PingResp).boxed(),
        tail(PropertyContext::Disconnect, reason::DISCONNECT)
            .prop_map(|(reason, properties)| Packet::Disconnect(Disconnect { reason, properties }))
            .boxed(),
    ];
    if v5 {
        kinds.push(
            tail(PropertyContext::Auth, reason::AUTH)
                .prop_map(|(reason, properties)| Packet::Auth(Auth { reason, properties }))
                .boxed(),
        );
    }
    prop::strategy::Union::new(kinds)
}

fn any_version() -> impl Strategy<Value = ProtocolVersion> {
    prop_oneof![Just(V3), Just(V5)]
}

fn versioned_packet() -> impl Strategy<Value = (ProtocolVersion, Packet)> {
    any_version().prop_flat_map(|v| (Just(v), arb_packet(v)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn round_trip((version, packet) in versioned_packet()) {
        let mut buf = enc(&packet, version);
        prop_assert_eq!(buf.len(), encoded_len(&packet, version));
        prop_assert_eq!(peek_packet_size(&buf, version), Ok(Some(buf.len())));
        prop_assert_eq!(decode(&mut buf, MAX, version), Ok(Some(packet)));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn every_prefix_needs_more_bytes((version, packet) in versioned_packet()) {
        let wire = enc(&packet, version);
        for cut in 0..wire.len() {
            let mut buf = BytesMut::from(&wire[..cut]);
            prop_assert_eq!(decode(&mut buf, MAX, version), Ok(None));
            prop_assert_eq!(buf.len(), cut);
        }
    }

    #[test]
    fn a_stream_in_arbitrary_chunks_decodes_to_the_same_packets(
        (version, packets) in any_version()
            .prop_flat_map(|v| (Just(v), prop::collection::vec(arb_packet(v), 1..8))),
        chunk in 1usize..64,
    ) {
        let mut wire = BytesMut::new();
        for p in &packets {
            encode(p, version, &mut wire);
        }
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for piece in wire.chunks(chunk) {
            buf.extend_from_slice(piece);
            while let Some(p) = decode(&mut buf, MAX, version)? {
                got.push(p);
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got, packets);
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        version in any_version(),
        bytes in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = decode(&mut buf, 64, version) {}
    }

    /// A 3.1.1 packet re-encoded for 5.0 and decoded as 5.0 is the same packet: the defaults
    /// of the 5.0 fields mean "what 3.1.1 says".
    #[test]
    fn v311_packets_mean_the_same_in_v5(packet in arb_packet(V3)) {
        let packet = match packet {
            // These differ on purpose: the 3.1.1 forms carry no reason codes per filter, and
            // a CONNECT names its version.
            Packet::UnsubAck(_) | Packet::Connect(_) => return Ok(()),
            p => p,
        };
        let mut buf = enc(&packet, V5);
        prop_assert_eq!(decode(&mut buf, MAX, V5), Ok(Some(packet)));
    }
}
