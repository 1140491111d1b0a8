//! Issue 15.2: a subscription is live for messages published after its SUBSCRIBE was read.
//! Client B subscribes to a new topic and client A publishes to it at once, without waiting
//! for B's SUBACK. Whether B got the message is told without a timer: after the SUBACK, A
//! publishes a marker to the same topic, and per-publisher order puts the first before it.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use crate::common::{frame, read_frame, string, Broker};

const WAIT: Duration = Duration::from_secs(10);

/// MQTT 3.1.1 (`level` 4) or 5.0 (5) client, `flags` the connect flags.
fn open(broker: &Broker, level: u8, flags: u8, id: &str) -> TcpStream {
    let mut s = TcpStream::connect(broker.addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_nodelay(true).unwrap();
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', level, flags, 0, 60];
    if level == 5 {
        body.push(0);
    }
    body.extend(string(id));
    s.write_all(&frame(0x10, &body)).unwrap();
    let (first, _) = read_frame(&mut s).expect("packet");
    assert_eq!(first, 0x20, "CONNACK");
    s
}

/// Tries `n` times; returns how often B missed the message published right after its SUBSCRIBE.
fn misses(broker: &Broker, level: u8, b_flags: u8, n: u16) -> u32 {
    let mut b = open(broker, level, b_flags, &format!("race-b{level}-{b_flags}"));
    let mut a = open(broker, level, 0x02, &format!("race-a{level}-{b_flags}"));
    let props: &[u8] = if level == 5 { &[0] } else { &[] };
    let mut missed = 0;
    for i in 1..=n {
        let topic = format!("race/{level}/{b_flags}/{i}");
        let mut sub = i.to_be_bytes().to_vec();
        sub.extend_from_slice(props);
        sub.extend(string(&topic));
        sub.push(0);
        let publish = |payload: &[u8]| {
            let mut body = string(&topic);
            body.extend_from_slice(props);
            body.extend_from_slice(payload);
            frame(0x30, &body)
        };
        b.write_all(&frame(0x82, &sub)).unwrap();
        a.write_all(&publish(b"first")).unwrap();
        let mut got_first = false;
        let mut subacked = false;
        loop {
            let (first, body) = read_frame(&mut b).expect("packet");
            match first >> 4 {
                9 => {
                    subacked = true;
                    a.write_all(&publish(b"marker")).unwrap();
                }
                3 if body.ends_with(b"first") => got_first = true,
                3 if body.ends_with(b"marker") => break,
                _ => panic!("unexpected packet {first:#04x}"),
            }
        }
        assert!(subacked);
        if !got_first {
            missed += 1;
        }
    }
    missed
}

#[test]
fn sub_race_a_publish_right_after_a_subscribe_reaches_it() {
    let broker = Broker::start();
    let persistent = misses(&broker, 4, 0x00, 1000);
    let clean = misses(&broker, 4, 0x02, 1000);
    let v5 = misses(&broker, 5, 0x02, 1000);
    eprintln!("missed of 1000: clean 3.1.1 {clean}, persistent 3.1.1 {persistent}, v5 {v5}");
    // Without the ordering a subscriber here missed 30 to 700 of each 1,000. With it, none on
    // an idle machine; on one loaded far past its cores (other builds and tests), about 1 in
    // 12,000 tries still slips through (the kernel or the IO driver reporting the two sockets
    // out of order), so a few are tolerated rather than failing a loaded CI run at random.
    assert!(
        clean + persistent + v5 <= 3,
        "missed: clean 3.1.1 {clean}, persistent 3.1.1 {persistent}, v5 {v5} of 1000 each"
    );
}
