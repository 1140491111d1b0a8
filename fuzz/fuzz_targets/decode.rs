//! Feeds arbitrary bytes to the MQTT decoder until it needs more input or errors, and checks
//! that every decoded packet re-encodes to bytes that decode to the same packet.
#![no_main]

use bytes::BytesMut;
use fubar::mqtt::decode::decode;
use fubar::mqtt::encode::{encode, encoded_len};
use libfuzzer_sys::fuzz_target;

/// Small, so the size-limit path is exercised too.
const MAX_PACKET_SIZE: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(packet)) = decode(&mut buf, MAX_PACKET_SIZE) {
        let mut wire = BytesMut::new();
        encode(&packet, &mut wire);
        assert_eq!(wire.len(), encoded_len(&packet));
        // Re-encoding never grows a packet (the varint becomes minimal), but allow any size.
        assert_eq!(decode(&mut wire, usize::MAX), Ok(Some(packet)));
        assert!(wire.is_empty());
    }
});
