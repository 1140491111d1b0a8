//! Issue 15.3: a client the server closes can read why. The server half-closes after its
//! DISCONNECT and reads and discards what the client still sends (`mqtt.close_flush_ms`,
//! `mqtt.close_drain_bytes`), so the client reads the reason code instead of getting a reset,
//! and its own writes see no error.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::common::{connect_packet, frame, read_frame, Broker};

const WAIT: Duration = Duration::from_secs(10);

/// A v5 client with a clean start and no properties, CONNACK read.
fn open5(broker: &Broker, id: &str) -> TcpStream {
    let mut s = TcpStream::connect(broker.addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(&connect_packet(5, 0b10, id)).unwrap();
    let (first, connack) = read_frame(&mut s).expect("CONNACK");
    assert_eq!((first, connack[1]), (0x20, 0), "CONNACK 0");
    s
}

fn publish_qos2(id: u16) -> Vec<u8> {
    let mut body = vec![0, 1, b'q'];
    body.extend_from_slice(&id.to_be_bytes());
    body.push(0); // no properties
    body.extend_from_slice(&[b'p'; 64]);
    frame(0x34, &body)
}

/// Reads until EOF; the client must see the end of the stream, not a reset.
fn assert_clean_end(s: &mut TcpStream, what: &str) {
    let mut rest = [0u8; 4096];
    loop {
        match s.read(&mut rest) {
            Ok(0) => return,
            Ok(_) => continue,
            Err(e) => panic!("{what}: reset after the DISCONNECT instead of its end: {e}"),
        }
    }
}

#[test]
fn close_drain_receive_maximum_exceeded_0x93_is_read_while_the_client_keeps_sending() {
    const MAX: u16 = 4;
    let broker = Broker::start_with(&[], &format!("[mqtt]\nreceive_maximum = {MAX}\n"));
    for round in 0..30 {
        let mut s = open5(&broker, &format!("greedy{round}"));
        // receive maximum + 1 QoS 2 PUBLISHes at once, then every PUBREC answered with PUBREL.
        let burst: Vec<u8> = (1..=MAX + 1).flat_map(publish_qos2).collect();
        s.write_all(&burst).expect("PUBLISH burst");
        let reason = loop {
            let (first, body) = read_frame(&mut s)
                .unwrap_or_else(|e| panic!("round {round}: DISCONNECT lost: {e}"));
            match first {
                0x50 => {
                    // PUBREL for it, and a few more of the client's own packets: none of
                    // these writes may fail.
                    let rel = [0x62, 2, body[0], body[1]];
                    let more: Vec<u8> = std::iter::repeat_n([0xC0u8, 0], 64).flatten().collect();
                    s.write_all(&rel).expect("PUBREL write");
                    s.write_all(&more).expect("PINGREQ write");
                }
                0x70 | 0xD0 => {}
                0xE0 => break body[0],
                other => panic!("round {round}: unexpected packet {other:#04x}"),
            }
        };
        assert_eq!(reason, 0x93, "round {round}: receive maximum exceeded");
        assert_clean_end(&mut s, &format!("round {round}"));
    }
}

#[test]
fn close_drain_packet_too_large_0x95_is_read_while_the_client_writes_the_body() {
    const MAX: usize = 64 << 10;
    let broker = Broker::start_with(&[], &format!("[mqtt]\nmax_packet_size = {MAX}\n"));
    for round in 0..30 {
        let mut s = open5(&broker, &format!("big{round}"));
        // PUBLISH QoS 0 to "t", twice the maximum: the header first, then the body in pieces,
        // all of it, as a client that does not look at its input while writing does.
        let mut body = vec![0, 1, b't', 0];
        body.resize(2 * MAX, b'x');
        let packet = frame(0x30, &body);
        for chunk in packet.chunks(8 << 10) {
            s.write_all(chunk)
                .unwrap_or_else(|e| panic!("round {round}: write of the body failed: {e}"));
        }
        let (first, disconnect) =
            read_frame(&mut s).unwrap_or_else(|e| panic!("round {round}: DISCONNECT lost: {e}"));
        assert_eq!(first, 0xE0, "round {round}: DISCONNECT");
        assert_eq!(disconnect[0], 0x95, "round {round}: packet too large");
        assert_clean_end(&mut s, &format!("round {round}"));
    }
}

#[test]
fn close_drain_a_draining_connection_does_not_hold_its_max_connections_slot() {
    // One connection allowed, and a long drain: the closed client keeps its socket open.
    let broker = Broker::start_with(
        &[],
        "[mqtt]\nmax_connections = 1\nmax_packet_size = 1024\nclose_flush_ms = 30000\n",
    );
    let mut s = open5(&broker, "slot");
    let mut body = vec![0, 1, b't', 0];
    body.resize(2048, b'x');
    s.write_all(&frame(0x30, &body)).expect("oversized PUBLISH");
    let (first, disconnect) = read_frame(&mut s).expect("DISCONNECT");
    assert_eq!((first, disconnect[0]), (0xE0, 0x95));
    // `s` stays open (the server drains it for up to 30 s); the next client still gets in.
    let _next = open5(&broker, "next");
    drop(s);
}
