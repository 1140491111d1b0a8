//! Arbitrary bytes as a segment file: the reader must never panic, and every event it
//! returns must survive a re-encode and a second read unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let (events, _skipped) = fubar_logs::decode_records(bytes);
    let mut again = Vec::new();
    for e in &events {
        if let Ok(record) = fubar_logs::encode_record(e) {
            again.extend_from_slice(&record);
        }
    }
    let (events2, skipped2) = fubar_logs::decode_records(&again);
    assert_eq!(skipped2, 0);
    assert_eq!(events, events2);
});
