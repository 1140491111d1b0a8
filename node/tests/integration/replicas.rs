//! Replicated persistent sessions (issue 23): three real nodes with `session.replicas = 1`;
//! the node holding the sessions is killed with `kill -9` and its data directory deleted,
//! and the sessions are served from their copies.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fubar::mqtt::packet::{
    Ack, Connect, Packet, ProtocolVersion, Publish, QoS as RawQoS, ReasonCode,
};

use fubar::mqtt::properties::Properties;

use crate::cluster::{three, Cluster};
use crate::common::{cluster_figure, encode, eventually, Broker, RawClient};
use crate::conformance::support::raw_subscribe;

const WAIT: Duration = Duration::from_secs(60);
const SUBSCRIBERS: usize = 1_000;
const PER_SUBSCRIBER: usize = 10;

fn send(raw: &mut RawClient, packet: &Packet) {
    send_as(raw, packet, ProtocolVersion::V311);
}

/// Encodes `packet` for protocol `version` and writes it.
pub(crate) fn send_as(raw: &mut RawClient, packet: &Packet, version: ProtocolVersion) {
    let mut buf = BytesMut::new();
    encode(packet, version, &mut buf);
    raw.send(&buf);
}

/// A 3.1.1 connection with clean session 0; returns it and CONNACK's session present.
fn connect_persistent(broker: &Broker, id: &str) -> (RawClient, bool) {
    connect(broker, id, None)
}

/// A connection with clean session (start) 0; MQTT 5.0 when `expiry` is given (the session
/// expiry interval). Returns it and CONNACK's session present.
pub(crate) fn connect(broker: &Broker, id: &str, expiry: Option<u32>) -> (RawClient, bool) {
    match try_connect(broker, id, expiry) {
        Ok(accepted) => accepted,
        Err(code) => panic!("{id}: expected an accepting CONNACK, got {code:?}"),
    }
}

/// As [`connect`], but a refusing CONNACK is its code (`Err`).
pub(crate) fn try_connect(
    broker: &Broker,
    id: &str,
    expiry: Option<u32>,
) -> Result<(RawClient, bool), Option<ReasonCode>> {
    let protocol = if expiry.is_some() {
        ProtocolVersion::V5
    } else {
        ProtocolVersion::V311
    };
    let mut raw = RawClient::connect(broker.addr);
    send_as(
        &mut raw,
        &Packet::Connect(Box::new(Connect {
            protocol,
            clean_session: false,
            keep_alive: 0,
            client_id: id.to_owned(),
            will: None,
            username: None,
            password: None,
            properties: Properties {
                session_expiry_interval: expiry,
                ..Default::default()
            },
        })),
        protocol,
    );
    match raw.read_packet_of(protocol, WAIT) {
        Some(Packet::ConnAck(a)) if a.code == ReasonCode::Success => Ok((raw, a.session_present)),
        Some(Packet::ConnAck(a)) => Err(Some(a.code)),
        other => panic!("{id}: expected a CONNACK, got {other:?}"),
    }
}

/// Publishes `PER_SUBSCRIBER` QoS 1 messages to each subscriber's topic from `broker`,
/// pipelined; every one must be acknowledged with success.
fn publish_all(broker: &Broker, prefix: &str) {
    let mut p = crate::conformance::support::raw_connect(broker, &format!("{prefix}-pub"), 0, None);
    let mut id: u16 = 0;
    let total = SUBSCRIBERS * PER_SUBSCRIBER;
    let chunk = 500;
    for start in (0..total).step_by(chunk) {
        for n in start..(start + chunk).min(total) {
            id = id % 60_000 + 1;
            send(
                &mut p,
                &Packet::Publish(Publish {
                    dup: false,
                    qos: RawQoS::AtLeastOnce,
                    retain: false,
                    topic: format!("r/{}", n % SUBSCRIBERS).into(),
                    packet_id: id,
                    payload: Bytes::from(format!("{prefix}-{n}")),
                    properties: Default::default(),
                }),
            );
        }
        for _ in start..(start + chunk).min(total) {
            match p.read_packet(WAIT) {
                Some(Packet::PubAck(Ack {
                    reason: ReasonCode::Success,
                    ..
                })) => {}
                other => panic!("expected a PUBACK, got {other:?}"),
            }
        }
    }
}

/// Makes the 1,000 persistent subscribers on `broker` (subscribed, then away).
fn subscribers_away(broker: &Broker) {
    for i in 0..SUBSCRIBERS {
        let (mut s, _) = connect_persistent(broker, &format!("s{i}"));
        raw_subscribe(&mut s, 1, &[(&format!("r/{i}"), RawQoS::AtLeastOnce)]);
        s.send(&[0xE0, 0x00]); // DISCONNECT: the session stays
    }
}

/// Reads what subscriber `i` gets on `raw` until it has every message of `prefix` for it;
/// each is acknowledged. A copy of one already received must carry DUP.
fn receive_all(raw: &mut RawClient, i: usize, prefix: &str, got: &mut BTreeMap<String, usize>) {
    let want: Vec<String> = (0..PER_SUBSCRIBER)
        .map(|k| format!("{prefix}-{}", k * SUBSCRIBERS + i))
        .collect();
    while !want.iter().all(|w| got.contains_key(w)) {
        let Some(packet) = raw.read_packet(WAIT) else {
            let missing: Vec<&String> = want.iter().filter(|w| !got.contains_key(*w)).collect();
            panic!("s{i}: missing {missing:?}");
        };
        let Packet::Publish(p) = packet else { continue };
        let text = String::from_utf8_lossy(&p.payload).into_owned();
        let seen = got.entry(text.clone()).or_insert(0);
        *seen += 1;
        assert!(*seen == 1 || p.dup, "s{i}: {text} twice without DUP");
        send(raw, &Packet::PubAck(Ack::new(p.packet_id)));
    }
}

/// Waits until the survivors have failed over all the dead node's sessions, and `n3` has
/// applied their registrations (a member says "session failed over" as it proposes its
/// registration, which reaches the others through Raft a moment later: a client connecting to
/// n3 before that finds no holder there and gets a fresh session).
fn wait_failed_over(cluster: &Cluster, survivors: &[&Broker]) {
    eventually("every session to fail over", WAIT, || {
        let n: usize = survivors
            .iter()
            .map(|b| {
                b.log_lines()
                    .iter()
                    .filter(|l| l.contains("session failed over"))
                    .count()
            })
            .sum();
        if n >= SUBSCRIBERS {
            Ok(n)
        } else {
            Err(format!("{n} failed over so far"))
        }
    });
    cluster.wait_status("n3@localhost", "every session registered", |s| {
        cluster_figure(s, "clients") >= SUBSCRIBERS as u64
    });
}

#[test]
fn acknowledged_messages_of_offline_sessions_survive_the_loss_of_their_node_and_its_disk() {
    let cluster = Cluster::with_settings("[session]\nreplicas = 1\n");
    let (n1, n2, n3) = three(&cluster);
    subscribers_away(&n1.broker);
    cluster.wait_routes("n2@localhost", SUBSCRIBERS as u64);
    publish_all(&n2.broker, "m");
    n1.broker.kill9();
    std::fs::remove_dir_all(cluster.path().join(&n1.name)).expect("n1's data dir deleted");
    wait_failed_over(&cluster, &[&n2.broker, &n3.broker]);
    for i in 0..SUBSCRIBERS {
        let (mut s, present) = connect_persistent(&n3.broker, &format!("s{i}"));
        assert!(present, "s{i}: CONNACK says session present");
        let mut got = BTreeMap::new();
        receive_all(&mut s, i, "m", &mut got);
    }
}

#[test]
fn acknowledged_messages_of_online_sessions_survive_the_loss_of_their_node() {
    let cluster = Cluster::with_settings("[session]\nreplicas = 1\n");
    let (n1, n2, n3) = three(&cluster);
    let mut online: Vec<RawClient> = (0..SUBSCRIBERS)
        .map(|i| {
            let (mut s, _) = connect_persistent(&n1.broker, &format!("s{i}"));
            raw_subscribe(&mut s, 1, &[(&format!("r/{i}"), RawQoS::AtLeastOnce)]);
            s
        })
        .collect();
    cluster.wait_routes("n2@localhost", SUBSCRIBERS as u64);
    publish_all(&n2.broker, "m");
    // Each subscriber takes (and acknowledges) its first three messages; the others are in
    // flight when its node dies.
    let mut got: Vec<BTreeMap<String, usize>> = vec![BTreeMap::new(); SUBSCRIBERS];
    for (i, s) in online.iter_mut().enumerate() {
        while got[i].len() < 3 {
            let Some(Packet::Publish(p)) = s.read_packet(WAIT) else {
                panic!("s{i}: no message on n1");
            };
            got[i].insert(String::from_utf8_lossy(&p.payload).into_owned(), 1);
            send(s, &Packet::PubAck(Ack::new(p.packet_id)));
        }
    }
    n1.broker.kill9();
    std::fs::remove_dir_all(cluster.path().join(&n1.name)).expect("n1's data dir deleted");
    drop(online);
    wait_failed_over(&cluster, &[&n2.broker, &n3.broker]);
    for (i, got) in got.iter_mut().enumerate() {
        let (mut s, present) = connect_persistent(&n3.broker, &format!("s{i}"));
        assert!(present, "s{i}: CONNACK says session present");
        receive_all(&mut s, i, "m", got);
    }
}
