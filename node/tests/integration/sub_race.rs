//! Issue 15.2: a subscription is live for messages published after its SUBSCRIBE was read.
//! Client B subscribes to a new topic and client A publishes to it at once, without waiting
//! for B's SUBACK. Whether B got the message is told without a timer: after the SUBACK, A
//! publishes a marker to the same topic, and per-publisher order puts the first before it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::common::{connect_packet, frame, read_frame, string, Broker};

const WAIT: Duration = Duration::from_secs(10);

/// The flood below takes a core: the race is not measured while it runs.
static ONE_AT_A_TIME: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

fn one_at_a_time() -> parking_lot::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock()
}

/// MQTT 3.1.1 (`level` 4) or 5.0 (5) client, `flags` the connect flags.
fn open(broker: &Broker, level: u8, flags: u8, id: &str) -> TcpStream {
    let mut s = TcpStream::connect(broker.addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(&connect_packet(level, flags, id)).unwrap();
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
    let _alone = one_at_a_time();
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

/// A client that has subscribed and then floods its socket (QoS 0 PUBLISHes to a topic nobody
/// reads: nothing comes back that it would have to read) must not hold the node's publishes: with the wait bound at a minute, a publisher held by
/// it would not be heard within the read timeout. A subscriber that sent a SUBSCRIBE is
/// waited for; one streaming input is not.
#[test]
fn sub_race_a_client_flooding_its_socket_does_not_hold_other_publishes() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let _alone = one_at_a_time();
    let _flood = crate::common::flooding();
    let broker = Broker::start_with(&[], "[mqtt]\npublish_order_wait_us = 60000000\n");
    let mut flooder = open(&broker, 4, 0x02, "flooder");
    // Subscribed once: from then on the flooder's input is waited for after an idle moment.
    let mut sub = 1u16.to_be_bytes().to_vec();
    sub.extend(string("flood/x"));
    sub.push(0);
    flooder.write_all(&frame(0x82, &sub)).unwrap();
    assert_eq!(read_frame(&mut flooder).expect("SUBACK").0, 0x90, "SUBACK");
    let stop = Arc::new(AtomicBool::new(false));
    let mut drain = flooder.try_clone().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        while drain.read(&mut buf).is_ok_and(|n| n > 0) {}
    });
    let mut batch = Vec::new();
    let mut body = string("flood/none");
    body.extend_from_slice(&[b'x'; 1024]);
    for _ in 0..1024 {
        batch.extend(frame(0x30, &body));
    }
    let writer =
        {
            let stop = stop.clone();
            let mut out = flooder.try_clone().unwrap();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) && out.write_all(&batch).is_ok() {}
            })
        };
    let mut b = open(&broker, 4, 0x02, "flood-b");
    let mut a = open(&broker, 4, 0x02, "flood-a");
    let mut sub = 1u16.to_be_bytes().to_vec();
    sub.extend(string("flood/topic"));
    sub.push(0);
    b.write_all(&frame(0x82, &sub)).unwrap();
    assert_eq!(read_frame(&mut b).expect("SUBACK").0, 0x90, "SUBACK");
    for i in 0..100u32 {
        let mut body = string("flood/topic");
        body.extend_from_slice(&i.to_be_bytes());
        a.write_all(&frame(0x30, &body)).unwrap();
        let (first, body) = read_frame(&mut b).expect("PUBLISH");
        assert_eq!(first >> 4, 3, "PUBLISH {i} reaches the subscriber");
        assert!(body.ends_with(&i.to_be_bytes()));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = flooder.shutdown(std::net::Shutdown::Both);
    writer.join().unwrap();
    reader.join().unwrap();
}
