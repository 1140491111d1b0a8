//! Client ids belong to their user (issue 17): under `--auth`, bob connecting with the client
//! id of alice's session is refused (CONNACK 2 in 3.1.1, 0x85 in 5.0) whether he asks for a
//! clean or a persistent session, while alice keeps her connection and her queued messages:
//! on one node, after a restart, and across a cluster. And `auth.client_id_from_username`.
//!
//! The clients are raw MQTT 3.1.1 and 5.0 connections (fubar's own codec), so each CONNACK's
//! code and session present flag are read exactly as sent.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::common::encode;
use bytes::{Bytes, BytesMut};
use fubar::mqtt::decode::decode;
use fubar::mqtt::packet::{
    Ack, ConnAck, Connect, ConnectReturnCode, Packet, Properties, ProtocolVersion, Publish, QoS,
    ReasonCode, Subscribe,
};

use crate::cluster::Cluster;
use crate::common::{cluster_figure, ctl_in, eventually, member_line, unquote, Broker};

const WAIT: Duration = Duration::from_secs(20);
const PASSWORD: &str = "s3cret";

/// A raw MQTT connection of one protocol version.
struct Wire {
    stream: TcpStream,
    buf: BytesMut,
    version: ProtocolVersion,
    next_id: u16,
}

/// How a CONNECT asks for its session.
#[derive(Debug, Clone, Copy)]
struct Ask {
    version: ProtocolVersion,
    /// Clean session (3.1.1) / clean start (5.0).
    clean: bool,
    /// Whether the session outlives the connection (5.0: a session expiry interval).
    persistent: bool,
}

const V311_CLEAN: Ask = Ask {
    version: ProtocolVersion::V311,
    clean: true,
    persistent: false,
};
const V311_KEEP: Ask = Ask {
    version: ProtocolVersion::V311,
    clean: false,
    persistent: true,
};
const V5_CLEAN: Ask = Ask {
    version: ProtocolVersion::V5,
    clean: true,
    persistent: false,
};
const V5_KEEP: Ask = Ask {
    version: ProtocolVersion::V5,
    clean: false,
    persistent: true,
};

/// Every way bob may ask for alice's client id.
const EVERY_ASK: [Ask; 4] = [V311_CLEAN, V311_KEEP, V5_CLEAN, V5_KEEP];

impl Wire {
    /// Sends CONNECT and returns the connection with the CONNACK.
    fn connect(addr: SocketAddr, id: &str, user: Option<&str>, ask: Ask) -> (Self, ConnAck) {
        let stream = TcpStream::connect(addr).expect("tcp connect");
        stream.set_nodelay(true).unwrap();
        let mut wire = Self {
            stream,
            buf: BytesMut::new(),
            version: ask.version,
            next_id: 1,
        };
        let properties = Properties {
            session_expiry_interval: (ask.version == ProtocolVersion::V5 && ask.persistent)
                .then_some(3600),
            ..Properties::default()
        };
        wire.send(&Packet::Connect(Box::new(Connect {
            protocol: ask.version,
            clean_session: ask.clean,
            keep_alive: 60,
            client_id: id.to_owned(),
            will: None,
            username: user.map(str::to_owned),
            password: user.map(|_| Bytes::from_static(PASSWORD.as_bytes())),
            properties,
        })));
        match wire.read(WAIT) {
            Some(Packet::ConnAck(c)) => (wire, c),
            other => panic!("{id}: expected CONNACK, got {other:?}"),
        }
    }

    /// Connects and fails the test unless the CONNACK accepts.
    fn accepted(addr: SocketAddr, id: &str, user: Option<&str>, ask: Ask) -> (Self, bool) {
        let (wire, connack) = Self::connect(addr, id, user, ask);
        assert_eq!(
            connack.code,
            ReasonCode::Success,
            "{id} as {user:?}: {connack:?}"
        );
        (wire, connack.session_present)
    }

    fn send(&mut self, packet: &Packet) {
        let mut out = BytesMut::new();
        encode(packet, self.version, &mut out);
        self.stream.write_all(&out).expect("write");
    }

    /// The next packet, or `None` when the connection closed or `timeout` passed.
    fn read(&mut self, timeout: Duration) -> Option<Packet> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(p)) = decode(&mut self.buf, 1 << 24, self.version) {
                return Some(p);
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

    fn subscribe(&mut self, filter: &str) {
        let packet_id = self.id();
        self.send(&Packet::Subscribe(Subscribe {
            packet_id,
            filters: vec![(filter.to_owned(), QoS::AtLeastOnce.into())],
            properties: Properties::default(),
        }));
        match self.read(WAIT) {
            Some(Packet::SubAck(s)) => assert_eq!(s.packet_id, packet_id),
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Publishes at QoS 1 and waits for PUBACK.
    fn publish(&mut self, topic: &str, payload: &str) {
        let packet_id = self.id();
        self.send(&Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: topic.into(),
            packet_id,
            payload: Bytes::copy_from_slice(payload.as_bytes()),
            properties: Properties::default(),
        }));
        match self.read(WAIT) {
            Some(Packet::PubAck(a)) => assert_eq!(a.packet_id, packet_id),
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }

    /// The next PUBLISH's payload (acknowledged), or `None` if none came within `timeout`.
    fn next_message(&mut self, timeout: Duration) -> Option<String> {
        loop {
            match self.read(timeout)? {
                Packet::Publish(p) => {
                    if p.qos != QoS::AtMostOnce {
                        self.send(&Packet::PubAck(Ack::new(p.packet_id)));
                    }
                    return Some(String::from_utf8_lossy(&p.payload).into_owned());
                }
                _ => continue,
            }
        }
    }

    /// The PUBLISH packets that come before the answer to a PINGREQ sent now: what a resumed
    /// session had queued is written before it.
    fn messages_before_pong(&mut self) -> usize {
        self.send(&Packet::PingReq);
        let mut n = 0;
        loop {
            match self.read(WAIT) {
                Some(Packet::PingResp) => return n,
                Some(Packet::Publish(_)) => n += 1,
                Some(_) => {}
                None => panic!("no PINGRESP"),
            }
        }
    }

    /// Sends DISCONNECT (a persistent session stays).
    fn disconnect(mut self) {
        self.send(&Packet::Disconnect(Default::default()));
        let _ = self.read(Duration::from_secs(2));
    }

    fn id(&mut self) -> u16 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }
}

/// What bob must get for `ask`: CONNACK 2 (3.1.1) / 0x85 (5.0), no session present, and
/// then the end of the connection without a single message.
fn assert_bob_refused(addr: SocketAddr, id: &str, ask: Ask) {
    assert_refused(addr, id, "bob", ask);
}

/// What `user` must get for `ask` when `id`'s session is another user's.
fn assert_refused(addr: SocketAddr, id: &str, user: &str, ask: Ask) {
    let (mut wire, connack) = Wire::connect(addr, id, Some(user), ask);
    let want = match ask.version {
        ProtocolVersion::V5 => ReasonCode::ClientIdentifierNotValid,
        _ => ConnectReturnCode::IdentifierRejected.into(),
    };
    assert_eq!(connack.code, want, "{user} {ask:?}");
    assert!(
        !connack.session_present,
        "{user} {ask:?}: no session present"
    );
    // Nothing of the owner's comes after the refusal: the connection just ends.
    assert_eq!(wire.read(WAIT), None, "{user} {ask:?}: got something");
}

/// alice's connection still serves her: a message published now reaches her.
fn assert_alice_served(alice: &mut Wire, publisher: &mut Wire, payload: &str) {
    publisher.publish("alice/inbox", payload);
    assert_eq!(alice.next_message(WAIT).as_deref(), Some(payload));
}

/// Adds accounts alice and bob on a node's data dir.
fn add_accounts(dir: &std::path::Path) {
    for user in ["alice", "bob"] {
        let out = ctl_in(dir, &["account", "update", user, PASSWORD]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn bob_cannot_take_resume_or_replace_alices_session_and_alice_keeps_it() {
    let broker = Broker::start_with(&["--auth"], "");
    add_accounts(broker.dir.path());
    let (mut alice, _) = Wire::accepted(broker.addr, "alice-dev", Some("alice"), V311_KEEP);
    alice.subscribe("alice/#");
    let (mut publisher, _) = Wire::accepted(broker.addr, "pub", Some("bob"), V311_CLEAN);
    // Online: every way of asking is refused, and alice stays connected and served.
    for (i, ask) in EVERY_ASK.into_iter().enumerate() {
        assert_bob_refused(broker.addr, "alice-dev", ask);
        assert_alice_served(&mut alice, &mut publisher, &format!("online {i}"));
    }
    let line = broker
        .wait_for_log(
            "connect refused: the client id's session belongs to another user",
            WAIT,
        )
        .expect("an access event for the refusal");
    let line = unquote(&line);
    for field in [
        "access",
        "client=alice-dev",
        "user=bob",
        "owner=alice",
        "peer=127.0.0.1:",
    ] {
        assert!(line.contains(field), "{field} missing in {line}");
    }
    // Offline, with a message queued for her: still refused, and nothing of hers leaks.
    alice.disconnect();
    publisher.publish("alice/inbox", "while away");
    for ask in EVERY_ASK {
        assert_bob_refused(broker.addr, "alice-dev", ask);
    }
    // alice comes back to her session and its queued message.
    let (mut alice, present) = Wire::accepted(broker.addr, "alice-dev", Some("alice"), V311_KEEP);
    assert!(present, "alice's session is still there");
    assert_eq!(alice.next_message(WAIT).as_deref(), Some("while away"));
}

#[test]
fn alices_stored_session_is_still_hers_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_in(dir.path(), &["--auth"], "");
    add_accounts(dir.path());
    let (mut alice, _) = Wire::accepted(broker.addr, "alice-dev", Some("alice"), V5_KEEP);
    alice.subscribe("alice/#");
    alice.disconnect();
    let (mut publisher, _) = Wire::accepted(broker.addr, "pub", Some("bob"), V311_CLEAN);
    publisher.publish("alice/inbox", "before the restart");
    drop(publisher);
    assert!(broker.stop().success(), "graceful stop");
    // The owner was read back from the store with the session.
    let broker = Broker::start_in(dir.path(), &["--auth"], "");
    for ask in EVERY_ASK {
        assert_bob_refused(broker.addr, "alice-dev", ask);
    }
    let (mut alice, present) = Wire::accepted(broker.addr, "alice-dev", Some("alice"), V5_KEEP);
    assert!(present, "alice's session survived the restart and bob");
    assert_eq!(
        alice.next_message(WAIT).as_deref(),
        Some("before the restart")
    );
}

#[test]
fn a_session_from_before_auth_goes_to_the_first_user_fresh_and_is_then_theirs() {
    let dir = tempfile::tempdir().unwrap();
    // Without --auth: an anonymous persistent session with a queued message.
    let broker = Broker::start_in(dir.path(), &[], "");
    let (mut dev, _) = Wire::accepted(broker.addr, "dev", None, V311_KEEP);
    dev.subscribe("dev/#");
    dev.disconnect();
    let (mut publisher, _) = Wire::accepted(broker.addr, "pub", None, V311_CLEAN);
    publisher.publish("dev/inbox", "anonymous era");
    drop(publisher);
    assert!(broker.stop().success(), "graceful stop");
    // With --auth: bob claims the id; nothing of the old session passes to him.
    let broker = Broker::start_in(dir.path(), &["--auth"], "");
    add_accounts(dir.path());
    let (mut bob, present) = Wire::accepted(broker.addr, "dev", Some("bob"), V311_KEEP);
    assert!(!present, "an ownerless session is not resumed for a user");
    assert_eq!(bob.messages_before_pong(), 0, "none of the old queue");
    bob.disconnect();
    // From now on the id is bob's.
    assert_refused(broker.addr, "dev", "alice", V311_KEEP);
    assert_refused(broker.addr, "dev", "alice", V5_CLEAN);
    let (_, present) = Wire::accepted(broker.addr, "dev", Some("bob"), V311_KEEP);
    assert!(present, "bob's own session");
}

/// Connects until the account, replicated from another node, is known here.
fn accepted_when_replicated(addr: SocketAddr, id: &str, user: &str, ask: Ask) -> (Wire, bool) {
    eventually(&format!("{user} to be accepted"), WAIT, || {
        let (wire, connack) = Wire::connect(addr, id, Some(user), ask);
        if connack.code == ReasonCode::Success {
            Ok((wire, connack.session_present))
        } else {
            Err(format!("{connack:?}"))
        }
    })
}

#[test]
fn across_the_cluster_the_node_holding_alices_session_refuses_bob() {
    let cluster = Cluster::with_settings("[auth]\nenabled = true\n");
    let n1 = cluster.found("n1");
    let n2 = cluster.join("n2", &n1);
    add_accounts_on(&cluster, "n1@localhost");
    let (mut alice, _) = accepted_when_replicated(n1.broker.addr, "alice-dev", "alice", V311_KEEP);
    alice.subscribe("alice/#");
    // A publisher on alice's node: its PUBACK comes once her session has the message.
    let (mut publisher, _) = Wire::accepted(n1.broker.addr, "pub", Some("bob"), V311_CLEAN);
    // Once n2 knows that n1 holds alice-dev, a connection there asks n1 for it.
    cluster.wait_status("n2@localhost", "alice-dev registered", |s| {
        cluster_figure(s, "clients") >= 2
    });
    // bob's account has reached n2 once he may connect there.
    let _bob = accepted_when_replicated(n2.broker.addr, "bob-dev", "bob", V311_CLEAN);
    for (i, ask) in EVERY_ASK.into_iter().enumerate() {
        assert_bob_refused(n2.broker.addr, "alice-dev", ask);
        assert_alice_served(&mut alice, &mut publisher, &format!("online {i}"));
    }
    // Offline on n1 with a queued message: still refused from n2.
    alice.disconnect();
    publisher.publish("alice/inbox", "while away");
    for ask in [V311_KEEP, V5_KEEP, V5_CLEAN] {
        assert_bob_refused(n2.broker.addr, "alice-dev", ask);
    }
    // alice resumes on n2: the session moves there with its owner ...
    let (mut alice, present) =
        Wire::accepted(n2.broker.addr, "alice-dev", Some("alice"), V311_KEEP);
    assert!(present, "alice's session moved to n2");
    assert_eq!(alice.next_message(WAIT).as_deref(), Some("while away"));
    // ... so n2 decides now, for a connection to n1 too. A client registered on n2 after
    // alice shows n1 has learnt that n2 holds her (n2's changes are applied in order).
    cluster.wait_status("n1@localhost", "alice-dev, pub and bob-dev", |s| {
        cluster_figure(s, "clients") == 3
    });
    let _marker = Wire::accepted(n2.broker.addr, "marker", Some("bob"), V311_CLEAN);
    cluster.wait_status("n1@localhost", "the marker registered", |s| {
        cluster_figure(s, "clients") == 4
    });
    assert_bob_refused(n1.broker.addr, "alice-dev", V311_KEEP);
    assert_bob_refused(n1.broker.addr, "alice-dev", V5_CLEAN);
    assert_bob_refused(n2.broker.addr, "alice-dev", V5_KEEP);
    assert_alice_served(&mut alice, &mut publisher, "still hers");
}

fn add_accounts_on(cluster: &Cluster, node: &str) {
    for user in ["alice", "bob"] {
        let out = cluster.ctl(node, &["account", "update", user, PASSWORD]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn client_id_from_username_makes_the_user_name_the_client_id() {
    let broker = Broker::start_with(&["--auth"], "[auth]\nclient_id_from_username = true\n");
    add_accounts(broker.dir.path());
    // alice's client id "laptop" becomes "alice": a second connection of hers with another
    // client id takes the first one's session over.
    let (mut first, _) = Wire::accepted(broker.addr, "laptop", Some("alice"), V311_KEEP);
    first.subscribe("alice/#");
    let (_second, present) = Wire::accepted(broker.addr, "phone", Some("alice"), V311_KEEP);
    assert!(present, "the same session: client id alice both times");
    assert_eq!(
        first.read(WAIT),
        None,
        "the first connection was taken over"
    );
    assert!(broker
        .wait_for_log("client id replaced by the user name", WAIT)
        .is_some_and(|l| unquote(&l).contains("sent_client_id=laptop")));
    // An MQTT 5.0 client that sent none is told the one it has.
    let (_, connack) = Wire::connect(broker.addr, "", Some("bob"), V5_CLEAN);
    assert_eq!(connack.code, ReasonCode::Success);
    assert_eq!(
        connack.properties.assigned_client_identifier.as_deref(),
        Some("bob")
    );
    // Without --auth the user name sent is used as it is, and a CONNECT without one is
    // refused: CONNACK 5 not authorized (3.1.1) / 0x87 (5.0).
    let open = Broker::start_with(&[], "[auth]\nclient_id_from_username = true\n");
    for ask in [V311_CLEAN, V5_CLEAN] {
        let (_, connack) = Wire::connect(open.addr, "anon", None, ask);
        let want = match ask.version {
            ProtocolVersion::V5 => ReasonCode::NotAuthorized,
            _ => ConnectReturnCode::NotAuthorized.into(),
        };
        assert_eq!(connack.code, want, "{ask:?}");
    }
    let (_, present) = Wire::accepted(open.addr, "x", Some("carol"), V311_CLEAN);
    assert!(!present);
    assert!(open.wait_for_log("connected client=carol ", WAIT).is_some());
}

#[test]
fn while_the_node_holding_alices_session_is_dead_no_other_node_gives_bob_her_id() {
    // Sessions not replicated: alice's dies with n1 and only her id's owner survives it
    // (with copies, the session fails over with its owner: `replicas_faults`).
    let cluster = Cluster::with_settings("[auth]\nenabled = true\n[session]\nreplicas = 0\n");
    let n1 = cluster.found("n1");
    let n2 = cluster.join("n2", &n1);
    let n3 = cluster.join("n3", &n1);
    cluster.wait_status("n1@localhost", "three voters", |s| {
        s.lines().filter(|l| l.contains(" voter ")).count() == 3
    });
    add_accounts_on(&cluster, "n1@localhost");
    let (mut alice, _) = accepted_when_replicated(n1.broker.addr, "alice-dev", "alice", V311_KEEP);
    alice.subscribe("alice/#");
    // bob's account has reached n2 and n3 once he may connect there; his client registered
    // after alice's on n3 shows both nodes have learnt hers (n1's changes apply in order).
    let (_bob2, _) = accepted_when_replicated(n2.broker.addr, "bob-2", "bob", V311_CLEAN);
    let (_bob3, _) = accepted_when_replicated(n3.broker.addr, "bob-3", "bob", V311_CLEAN);
    for node in ["n2@localhost", "n3@localhost"] {
        cluster.wait_status(node, "alice-dev, bob-2 and bob-3", |s| {
            cluster_figure(s, "clients") >= 3
        });
    }
    drop(alice);
    n1.broker.kill9();
    // At once, while n1 cannot answer a takeover, and after the others dropped it (and
    // with it the registration of alice-dev): the id is still alice's.
    for ask in EVERY_ASK {
        assert_bob_refused(n2.broker.addr, "alice-dev", ask);
    }
    cluster.wait_status("n2@localhost", "n1 down and its clients dropped", |s| {
        member_line(s, "n1@localhost").is_some_and(|l| l.contains("down"))
            && cluster_figure(s, "clients") == 2
    });
    for ask in EVERY_ASK {
        assert_bob_refused(n3.broker.addr, "alice-dev", ask);
    }
    // alice herself may start again on a surviving node (her old session died with n1).
    let (mut alice, present) =
        Wire::accepted(n3.broker.addr, "alice-dev", Some("alice"), V311_KEEP);
    assert!(!present, "the session was on the dead node");
    alice.subscribe("alice/#");
    let (mut publisher, _) = Wire::accepted(n2.broker.addr, "pub", Some("bob"), V311_CLEAN);
    cluster.wait_routes("n2@localhost", 1);
    assert_alice_served(&mut alice, &mut publisher, "on n3");
    for ask in [V311_KEEP, V5_CLEAN] {
        assert_bob_refused(n2.broker.addr, "alice-dev", ask);
    }
}
