//! MQTT 5.0 at the connection level: reason codes on the acknowledgements (no matching
//! subscribers, topic filter invalid, quota exceeded, no subscription existed, packet
//! identifier not found), the server's receive maximum, topic aliases both ways, the client's
//! maximum packet size and the server keep alive. Paho (MQTTv5) checks what an independent
//! client can express; raw bytes on a socket send what it will not (an alias of 0, too many
//! unacknowledged publishes, acknowledgements of unknown ids) and read back the exact bytes.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::cluster::Cluster;
use crate::common::{frame, http_get, metric, run_paho, string, varint, Broker};

/// The paho script: runs one scenario, prints one line per check.
const SCRIPT: &str = include_str!("mqtt5_flow.py");

/// Long enough for anything that must happen; only reached when the broker is wrong.
const WAIT: Duration = Duration::from_secs(15);

fn paho(broker: &Broker, scenario: &str) -> Vec<String> {
    run_paho(broker, "flow5.py", SCRIPT, &[scenario])
}

/// A socket speaking raw MQTT bytes; packets are read back as (first byte, body).
struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).expect("tcp connect");
        stream.set_nodelay(true).unwrap();
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    /// Connects and sends `connect`; returns the CONNACK's properties.
    fn open(addr: SocketAddr, connect: &[u8]) -> (Self, HashMap<u8, u32>) {
        let mut raw = Self::connect(addr);
        raw.send(connect);
        let (first, body) = raw.next(WAIT).expect("CONNACK");
        assert_eq!(first, 0x20, "CONNACK expected: {body:?}");
        let props = if body.len() > 2 {
            properties(&body[2..])
        } else {
            HashMap::new()
        };
        (raw, props)
    }

    fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    /// The next whole packet, or `None` when the connection closed or `timeout` passed.
    fn next(&mut self, timeout: Duration) -> Option<(u8, Vec<u8>)> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((header, len)) = fixed_header(&self.buf) {
                if self.buf.len() >= header + len {
                    let first = self.buf[0];
                    let body = self.buf[header..header + len].to_vec();
                    self.buf.drain(..header + len);
                    return Some((first, body));
                }
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Reads until the server's DISCONNECT; returns its reason code (None: closed without).
    fn disconnect_reason(&mut self) -> Option<u8> {
        while let Some((first, body)) = self.next(WAIT) {
            if first == 0xE0 {
                return Some(body.first().copied().unwrap_or(0));
            }
        }
        None
    }
}

/// (header length, remaining length) once the fixed header is whole.
fn fixed_header(buf: &[u8]) -> Option<(usize, usize)> {
    let mut len = 0usize;
    for (i, byte) in buf.iter().enumerate().skip(1).take(4) {
        len |= usize::from(byte & 0x7F) << (7 * (i - 1));
        if byte & 0x80 == 0 {
            return Some((i + 1, len));
        }
    }
    None
}

/// CONNECT: `level` 4 (3.1.1) or 5, clean start, this keep-alive and (5) these properties.
fn connect(level: u8, id: &str, keep_alive: u16, flags: u8, props: &[u8]) -> Vec<u8> {
    let mut body = string("MQTT");
    body.push(level);
    body.push(flags);
    body.extend_from_slice(&keep_alive.to_be_bytes());
    if level == 5 {
        body.extend(varint(props.len()));
        body.extend_from_slice(props);
    }
    body.extend(string(id));
    frame(0x10, &body)
}

fn connect5(id: &str) -> Vec<u8> {
    connect(5, id, 60, 0x02, &[])
}

fn publish(level: u8, topic: &str, qos: u8, id: u16, props: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut body = string(topic);
    if qos > 0 {
        body.extend_from_slice(&id.to_be_bytes());
    }
    if level == 5 {
        body.extend(varint(props.len()));
        body.extend_from_slice(props);
    }
    body.extend_from_slice(payload);
    frame(0x30 | (qos << 1), &body)
}

fn subscribe(level: u8, id: u16, filter: &str, qos: u8) -> Vec<u8> {
    let mut body = id.to_be_bytes().to_vec();
    if level == 5 {
        body.push(0);
    }
    body.extend(string(filter));
    body.push(qos);
    frame(0x82, &body)
}

/// The properties of a CONNACK (after flags and code), by identifier; numbers only.
fn properties(block: &[u8]) -> HashMap<u8, u32> {
    let Some((header, len)) = fixed_header(&[&[0u8][..], block].concat()) else {
        return HashMap::new();
    };
    let mut p = &block[header - 1..header - 1 + len];
    let mut out = HashMap::new();
    while let Some((&id, rest)) = p.split_first() {
        let size = match id {
            0x13 | 0x21 | 0x22 => 2,
            0x11 | 0x27 => 4,
            0x24 | 0x25 | 0x28 | 0x29 | 0x2A => 1,
            0x12 | 0x1F | 0x1A | 0x1C => 2 + usize::from(u16::from_be_bytes([rest[0], rest[1]])),
            other => panic!("property {other:#x} not expected in CONNACK"),
        };
        let value = match size {
            1 => u32::from(rest[0]),
            2 => u32::from(u16::from_be_bytes([rest[0], rest[1]])),
            4 => u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]),
            _ => 0,
        };
        out.insert(id, value);
        p = &rest[size..];
    }
    out
}

#[test]
fn mqtt5_flow_reason_codes_on_acknowledgements_with_paho() {
    let broker = Broker::start();
    assert_eq!(
        paho(&broker, "acks"),
        [
            "receive maximum 32",
            // No subscriber anywhere: 0x10, still a success.
            "puback nobody 16",
            "suback [1, 143] \"$share/grp\": topic filter invalid",
            "puback subscribed 0",
            "unsuback [0, 17] None",
            // Request Problem Information 0: no reason string (MQTT-3.1.2-29).
            "suback quiet [1, 143] None",
            "suback 3.1.1 [1, 128]",
        ]
    );
}

#[test]
fn mqtt5_flow_subscriptions_beyond_the_sessions_quota_are_refused() {
    let broker = Broker::start_with(&[], "[session]\nmax_subscriptions = 2\n");
    assert_eq!(
        paho(&broker, "quota"),
        [
            "suback [1, 1, 151]",
            "again [1]",
            "suback 3.1.1 [1, 1, 128]"
        ]
    );
    let line = broker
        .wait_for_log("session.max_subscriptions reached", WAIT)
        .expect("the refusal is logged");
    assert!(
        line.contains("client=quota5") && line.contains("q/3"),
        "{line}"
    );
}

#[test]
fn mqtt5_flow_topic_aliases_both_ways_with_paho() {
    let broker = Broker::start();
    assert_eq!(
        paho(&broker, "aliases"),
        [
            "server alias maximum 10",
            // The server aliases what it sends the client that allows it: the topic and its
            // alias once, then the alias alone.
            "v5 'alias/topic/long' 1 one",
            "v5 '' 1 two",
            "v5 'alias/other' 2 three",
            "v5 '' 1 four",
            // The publisher's aliases were resolved: a 3.1.1 subscriber gets full topics.
            "3.1.1 'alias/topic/long' None one",
            "3.1.1 'alias/topic/long' None two",
            "3.1.1 'alias/other' None three",
            "3.1.1 'alias/topic/long' None four",
        ]
    );
}

#[test]
fn mqtt5_flow_server_keep_alive_is_told_with_paho() {
    let broker = Broker::start();
    assert_eq!(
        paho(&broker, "keepalive"),
        [
            "asked 0 server keep alive 3600",
            "asked 7200 server keep alive 3600",
            "asked 60 server keep alive None",
        ]
    );
}

#[test]
fn mqtt5_flow_a_message_too_large_for_the_client_is_dropped_as_if_delivered() {
    let broker = Broker::start_with(&["--http-port", "0"], "");
    assert_eq!(
        paho(&broker, "too-large"),
        ["received big/b None small", "then big/c None next"]
    );
    let line = broker
        .wait_for_log("larger than the client's maximum packet size", WAIT)
        .expect("the drop is logged");
    for field in ["client=small", "topic=big/a", "max=300"] {
        assert!(line.contains(field), "{field} in {line}");
    }
    // And counted as a drop for that reason.
    let (_, text) = http_get(broker.http(), "/metrics");
    assert_eq!(
        metric(
            &text,
            "fubar_messages_dropped_total{reason=\"client_max_packet_size\"}"
        ),
        Some(1.0)
    );
}

#[test]
fn mqtt5_flow_a_topic_alias_of_0_or_above_the_maximum_gets_0x94_an_unknown_one_0x82() {
    let broker = Broker::start();
    let (mut zero, props) = Raw::open(broker.addr, &connect5("alias0"));
    assert_eq!(
        props.get(&0x22),
        Some(&10),
        "topic alias maximum: {props:?}"
    );
    zero.send(&publish(5, "t/x", 0, 0, &[0x23, 0, 0], b"m"));
    assert_eq!(zero.disconnect_reason(), Some(0x94));

    let (mut high, _) = Raw::open(broker.addr, &connect5("alias11"));
    high.send(&publish(5, "t/x", 0, 0, &[0x23, 0, 11], b"m"));
    assert_eq!(high.disconnect_reason(), Some(0x94));

    let (mut unknown, _) = Raw::open(broker.addr, &connect5("alias-unknown"));
    unknown.send(&publish(5, "", 0, 0, &[0x23, 0, 3], b"m"));
    assert_eq!(unknown.disconnect_reason(), Some(0x82));

    let line = broker
        .wait_for_log("topic alias refused", WAIT)
        .expect("logged");
    assert!(
        line.contains("client=alias11") && line.contains("max=10"),
        "{line}"
    );
    let line = broker.wait_for_log("bad packet", WAIT).expect("logged");
    assert!(
        line.contains("client=alias0") && line.contains("MQTT-3.3.2-8"),
        "{line}"
    );
}

#[test]
fn mqtt5_flow_more_unreleased_qos2_publishes_than_the_receive_maximum_get_0x93() {
    let broker = Broker::start_with(&[], "[mqtt]\nreceive_maximum = 2\n");
    let (mut c, props) = Raw::open(broker.addr, &connect5("greedy2"));
    assert_eq!(props.get(&0x21), Some(&2), "receive maximum: {props:?}");
    c.send(
        &[
            publish(5, "q2", 2, 1, &[], b"a"),
            publish(5, "q2", 2, 2, &[], b"b"),
        ]
        .concat(),
    );
    for id in [1u8, 2] {
        let (first, body) = c.next(WAIT).expect("PUBREC");
        assert_eq!((first, &body[..2]), (0x50, &[0, id][..]));
    }
    // PUBREL 1 answered: one of the two is done, so one more may come.
    c.send(&[0x62, 2, 0, 1]);
    assert_eq!(c.next(WAIT), Some((0x70, vec![0, 1])));
    c.send(&publish(5, "q2", 2, 3, &[], b"c"));
    assert_eq!(c.next(WAIT).map(|(f, b)| (f, b[1])), Some((0x50, 3)));
    c.send(&publish(5, "q2", 2, 4, &[], b"d"));
    assert_eq!(c.disconnect_reason(), Some(0x93));
    let line = broker
        .wait_for_log("receive maximum exceeded", WAIT)
        .expect("logged");
    assert!(
        line.contains("client=greedy2") && line.contains("max=2"),
        "{line}"
    );
}

#[test]
fn mqtt5_flow_qos1_acknowledgements_waiting_for_the_store_count_against_the_receive_maximum() {
    // Acknowledgements wait for the store's group commit, which takes its time here.
    let broker = Broker::start_with(
        &[],
        "[mqtt]\nreceive_maximum = 2\n[store]\ngroup_commit_ms = 2000\n",
    );
    // A persistent session subscribed: each message to it is stored before its PUBACK.
    let session = [0x11, 0, 0, 0x0E, 0x10];
    let (mut keeper, _) = Raw::open(broker.addr, &connect(5, "keeper", 60, 0, &session));
    keeper.send(&subscribe(5, 1, "durable/#", 1));
    assert_eq!(keeper.next(WAIT).map(|(f, _)| f), Some(0x90));

    // A 3.1.1 client cannot be told: it is read from no faster than the store keeps up.
    let mut old = Raw::connect(broker.addr);
    old.send(&connect(4, "old-311", 60, 0x02, &[]));
    assert_eq!(old.next(WAIT), Some((0x20, vec![0, 0])));
    let three: Vec<u8> = (1..=3u16)
        .flat_map(|id| publish(4, "durable/a", 1, id, &[], b"m"))
        .collect();
    old.send(&three);
    for id in 1..=3u8 {
        assert_eq!(old.next(WAIT), Some((0x40, vec![0, id])), "PUBACK {id}");
    }

    let (mut c, _) = Raw::open(broker.addr, &connect5("greedy1"));
    let three: Vec<u8> = (1..=3u16)
        .flat_map(|id| publish(5, "durable/b", 1, id, &[], b"m"))
        .collect();
    c.send(&three);
    assert_eq!(c.disconnect_reason(), Some(0x93));
}

#[test]
fn mqtt5_flow_unknown_packet_ids_get_0x92_and_3_1_1_bytes_stay_as_they_were() {
    let broker = Broker::start();
    let (mut c, _) = Raw::open(broker.addr, &connect5("ids5"));
    // PUBREL for nothing received: PUBCOMP 0x92 with a reason string.
    c.send(&[0x62, 2, 0, 77]);
    let (first, body) = c.next(WAIT).expect("PUBCOMP");
    assert_eq!((first, &body[..3]), (0x70, &[0, 77, 0x92][..]));
    assert!(String::from_utf8_lossy(&body).contains("77"), "{body:?}");
    // PUBREC for nothing sent: PUBREL 0x92.
    c.send(&[0x50, 2, 0, 78]);
    let (first, body) = c.next(WAIT).expect("PUBREL");
    assert_eq!((first, &body[..3]), (0x62, &[0, 78, 0x92][..]));
    // No subscriber: PUBACK 0x10.
    c.send(&publish(5, "nobody/5", 1, 5, &[], b"m"));
    assert_eq!(c.next(WAIT), Some((0x40, vec![0, 5, 0x10])));

    let mut old = Raw::connect(broker.addr);
    old.send(&connect(4, "ids311", 60, 0x02, &[]));
    assert_eq!(old.next(WAIT), Some((0x20, vec![0, 0])));
    old.send(&[0x62, 2, 0, 77]);
    assert_eq!(old.next(WAIT), Some((0x70, vec![0, 77])));
    old.send(&publish(4, "nobody/4", 1, 5, &[], b"m"));
    assert_eq!(old.next(WAIT), Some((0x40, vec![0, 5])));
    old.send(&subscribe(4, 6, "bad/#/x", 1));
    assert_eq!(old.next(WAIT), Some((0x90, vec![0, 6, 0x80])));
    old.send(&frame(0xA2, &[&[0, 7][..], &string("never")].concat()));
    assert_eq!(old.next(WAIT), Some((0xB0, vec![0, 7])));
}

#[test]
fn mqtt5_flow_server_keep_alive_holds_a_client_that_asked_for_none() {
    let broker = Broker::start_with(&[], "[mqtt]\nmax_keep_alive_secs = 1\n");
    // A 3.1.1 client cannot be told: it keeps its keep-alive of 0 (none).
    let mut old = Raw::connect(broker.addr);
    old.send(&connect(4, "ka311", 0, 0x02, &[]));
    assert_eq!(old.next(WAIT), Some((0x20, vec![0, 0])));

    let (mut c, props) = Raw::open(broker.addr, &connect(5, "ka5", 0, 0x02, &[]));
    assert_eq!(props.get(&0x13), Some(&1), "server keep alive: {props:?}");
    // Silent: held to the server's keep-alive (1.5 x 1 s).
    assert_eq!(c.disconnect_reason(), Some(0x8D));
    // The 3.1.1 client, connected before and just as silent, is still served.
    old.send(&[0xC0, 0]);
    assert_eq!(old.next(WAIT), Some((0xD0, vec![])));
}

#[test]
fn mqtt5_flow_no_matching_subscribers_looks_at_the_other_nodes_too() {
    let cluster = Cluster::new();
    let n1 = cluster.found("n1");
    let n2 = cluster.join("n2", &n1);
    let (mut sub, _) = Raw::open(n2.broker.addr, &connect5("sub-n2"));
    sub.send(&subscribe(5, 1, "far/#", 1));
    assert_eq!(sub.next(WAIT).map(|(f, _)| f), Some(0x90));
    cluster.wait_routes(&n1.name, 1);

    let (mut c, _) = Raw::open(n1.broker.addr, &connect5("pub-n1"));
    c.send(&publish(5, "far/x", 1, 1, &[], b"m"));
    assert_eq!(c.next(WAIT), Some((0x40, vec![0, 1])), "a subscriber on n2");
    c.send(&publish(5, "near/x", 1, 2, &[], b"m"));
    assert_eq!(
        c.next(WAIT),
        Some((0x40, vec![0, 2, 0x10])),
        "none anywhere"
    );
    let (first, _) = sub.next(WAIT).expect("the message reached n2");
    assert_eq!(first & 0xF0, 0x30);
}

#[test]
fn mqtt5_flow_a_packet_that_cannot_be_decoded_gets_the_decoders_reason() {
    let broker = Broker::start();
    // An unknown property identifier: malformed packet (0x81).
    let (mut bad, _) = Raw::open(broker.addr, &connect5("bad-prop"));
    bad.send(&publish(5, "t/x", 0, 0, &[0x7F, 0], b"m"));
    assert_eq!(bad.disconnect_reason(), Some(0x81));
    // A wildcard in a PUBLISH topic: topic name invalid (0x90).
    let (mut wild, _) = Raw::open(broker.addr, &connect5("bad-topic"));
    wild.send(&publish(5, "t/+", 0, 0, &[], b"m"));
    assert_eq!(wild.disconnect_reason(), Some(0x90));
    // The same bytes from a 3.1.1 client close it without a DISCONNECT.
    let mut old = Raw::connect(broker.addr);
    old.send(&connect(4, "old-topic", 60, 0x02, &[]));
    assert_eq!(old.next(WAIT).map(|(first, _)| first), Some(0x20));
    old.send(&publish(4, "t/+", 0, 0, &[], b"m"));
    assert_eq!(old.disconnect_reason(), None);
}
