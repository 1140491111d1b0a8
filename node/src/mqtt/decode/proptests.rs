//! Property tests of the codec: `decode(encode(p)) == p` over arbitrary valid packets of
//! every type, prefixes, streams split into arbitrary chunks, and arbitrary bytes.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::mqtt::encode::{encode, encoded_len};

const MAX: usize = 1 << 20;

fn enc(packet: &Packet) -> BytesMut {
    let mut out = BytesMut::new();
    encode(packet, &mut out);
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

fn payload() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..300).prop_map(Bytes::from)
}

fn nonzero_id() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}

fn arb_connect() -> impl Strategy<Value = Connect> {
    let will =
        (topic(), payload(), qos(), any::<bool>()).prop_map(|(topic, payload, qos, retain)| {
            LastWill {
                topic,
                payload,
                qos,
                retain,
            }
        });
    (
        prop_oneof![Just(ProtocolVersion::V31), Just(ProtocolVersion::V311)],
        any::<bool>(),
        any::<u16>(),
        text(),
        prop::option::of(will),
        prop::option::of(text()),
        prop::option::of(payload()),
    )
        .prop_map(
            |(protocol, clean_session, keep_alive, client_id, will, username, password)| Connect {
                protocol,
                clean_session,
                keep_alive,
                client_id,
                will,
                password: password.filter(|_| username.is_some()),
                username,
            },
        )
}

fn arb_publish() -> impl Strategy<Value = Publish> {
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        topic(),
        nonzero_id(),
        payload(),
    )
        .prop_map(|(qos, dup, retain, topic, id, payload)| {
            let qos0 = qos == QoS::AtMostOnce;
            Publish {
                dup: dup && !qos0,
                qos,
                retain,
                topic,
                packet_id: if qos0 { 0 } else { id },
                payload,
            }
        })
}

fn arb_packet() -> impl Strategy<Value = Packet> {
    let code = prop_oneof![
        qos().prop_map(SubAckCode::Granted),
        Just(SubAckCode::Failure)
    ];
    let connack_code = (0u8..=5).prop_filter_map("code", ConnectReturnCode::from_u8);
    prop_oneof![
        arb_connect().prop_map(Packet::Connect),
        (any::<bool>(), connack_code).prop_map(|(session_present, code)| Packet::ConnAck(
            ConnAck {
                session_present,
                code
            }
        )),
        arb_publish().prop_map(Packet::Publish),
        any::<u16>().prop_map(Packet::PubAck),
        any::<u16>().prop_map(Packet::PubRec),
        any::<u16>().prop_map(Packet::PubRel),
        any::<u16>().prop_map(Packet::PubComp),
        (nonzero_id(), prop::collection::vec((text(), qos()), 1..5))
            .prop_map(|(packet_id, filters)| Packet::Subscribe(Subscribe { packet_id, filters })),
        (any::<u16>(), prop::collection::vec(code, 1..5))
            .prop_map(|(packet_id, codes)| Packet::SubAck(SubAck { packet_id, codes })),
        (nonzero_id(), prop::collection::vec(text(), 1..5)).prop_map(|(packet_id, filters)| {
            Packet::Unsubscribe(Unsubscribe { packet_id, filters })
        }),
        any::<u16>().prop_map(Packet::UnsubAck),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        Just(Packet::Disconnect),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn round_trip(packet in arb_packet()) {
        let mut buf = enc(&packet);
        prop_assert_eq!(buf.len(), encoded_len(&packet));
        prop_assert_eq!(peek_packet_size(&buf), Ok(Some(buf.len())));
        prop_assert_eq!(decode(&mut buf, MAX), Ok(Some(packet)));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn every_prefix_needs_more_bytes(packet in arb_packet()) {
        let wire = enc(&packet);
        for cut in 0..wire.len() {
            let mut buf = BytesMut::from(&wire[..cut]);
            prop_assert_eq!(decode(&mut buf, MAX), Ok(None));
            prop_assert_eq!(buf.len(), cut);
        }
    }

    #[test]
    fn a_stream_in_arbitrary_chunks_decodes_to_the_same_packets(
        packets in prop::collection::vec(arb_packet(), 1..8),
        chunk in 1usize..64,
    ) {
        let mut wire = BytesMut::new();
        for p in &packets {
            encode(p, &mut wire);
        }
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for piece in wire.chunks(chunk) {
            buf.extend_from_slice(piece);
            while let Some(p) = decode(&mut buf, MAX)? {
                got.push(p);
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got, packets);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = decode(&mut buf, 64) {}
    }
}
