//! Feeds arbitrary bytes to the MQTT decoder until it needs more input or errors, and checks
//! that every decoded packet re-encodes to bytes that decode to the same packet, and that the
//! rate limit's peek (`starts_with_whole_publish`) never claims a whole PUBLISH the decoder
//! then finds incomplete or of another type. The first byte picks the connection's protocol
//! version (3.1.1 or 5.0), so both codecs are fuzzed from one corpus.
#![no_main]

use bytes::BytesMut;
use fubar_mqtt::decode::{decode, starts_with_whole_publish};
use fubar_mqtt::encode::{encoded_len, try_encode};
use fubar_mqtt::packet::{Packet, ProtocolVersion};
use libfuzzer_sys::fuzz_target;

/// Small, so the size-limit path is exercised too.
const MAX_PACKET_SIZE: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, data)) = data.split_first() else {
        return;
    };
    let version = if selector & 1 == 0 {
        ProtocolVersion::V311
    } else {
        ProtocolVersion::V5
    };
    let mut buf = BytesMut::from(data);
    loop {
        let whole_publish = starts_with_whole_publish(&buf);
        let packet = match decode(&mut buf, MAX_PACKET_SIZE, version) {
            Ok(Some(packet)) => packet,
            Ok(None) => {
                assert!(!whole_publish, "peek saw a whole PUBLISH the decoder wants more of");
                break;
            }
            Err(_) => break,
        };
        if whole_publish {
            assert!(matches!(packet, Packet::Publish(_)), "peek said PUBLISH: {packet:?}");
        }
        // A CONNECT is written in the version it names; everything else in the connection's.
        let mut wire = BytesMut::new();
        try_encode(&packet, version, &mut wire).expect("a decoded packet encodes");
        assert_eq!(wire.len(), encoded_len(&packet, version));
        // Re-encoding never grows a packet (the varint becomes minimal), but allow any size.
        assert_eq!(decode(&mut wire, usize::MAX, version), Ok(Some(packet)));
        assert!(wire.is_empty());
    }
});
