//! Replicated persistent sessions under faults (issue 23): a partition that isolates the
//! session's node (the session lease, `cluster.session_lease_ms`), and takeover and expiry
//! after a failover behave as on one node.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fubar::mqtt::packet::{
    Ack, Packet, ProtocolVersion, Publish, QoS as RawQoS, ReasonCode, Subscribe,
};

use crate::cluster::{three, Cluster, Member as LoopMember};
use crate::common::{cluster_dir, eventually, Broker, Proc};
use crate::conformance::support::raw_subscribe;
use crate::partition::{net_or_skip, publish, three_across, wait_status, Member, Net, WAIT};
use crate::replicas::{connect, send_as, try_connect};

const REPLICAS: &str = "[session]\nreplicas = 1\n";
const CLIENT: &str = include_str!("replicas_client.py");

/// A raw client (`replicas_client.py`) run on `m`'s side of `net`, writing what happens to
/// `out`, a line an event.
fn client(net: &Net, m: &Member, script: &Path, id: &str, out: &Path, topic: &str) -> Proc {
    let mut cmd = net.exec(m.side);
    cmd.arg("python3")
        .arg(script)
        .arg(m.broker.addr.ip().to_string())
        .arg(m.broker.port().to_string())
        .arg(id)
        .arg(out);
    if !topic.is_empty() {
        cmd.arg(topic);
    }
    Proc::spawn(&mut cmd)
}

fn lines(out: &Path) -> Vec<String> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Client `ps` on `m`'s side (no subscription): waits for a line starting with `until`, and
/// checks that its CONNACK was `connack` ("connack SESSION_PRESENT CODE").
fn client_until(
    net: &Net,
    m: &Member,
    script: &Path,
    out: &Path,
    until: &str,
    connack: &str,
) -> Proc {
    let c = client(net, m, script, "ps", out, "");
    let got = wait_line(out, until);
    assert!(
        got.contains(&connack.to_owned()),
        "{} wants {connack}: {got:?}",
        m.name
    );
    c
}

/// Waits until `out` has a line starting with `prefix`; returns every line so far.
fn wait_line(out: &Path, prefix: &str) -> Vec<String> {
    eventually(&format!("{out:?}: {prefix:?}"), WAIT, || {
        let l = lines(out);
        if l.iter().any(|l| l.starts_with(prefix)) {
            Ok(l)
        } else {
            Err(l.join("\n"))
        }
    })
}

fn wait_log(b: &Broker, what: &[&str]) -> String {
    b.expect_line(what, WAIT)
}

#[test]
fn a_partition_isolating_the_sessions_node_never_lets_both_sides_deliver_it() {
    let Some(net) = net_or_skip() else { return };
    let tmp = cluster_dir(REPLICAS);
    let dir = tmp.path();
    let script = dir.join("replicas_client.py");
    std::fs::write(&script, CLIENT).expect("write the client script");
    let out = |name: &str| -> PathBuf { dir.join(name) };

    // n1 and n2 are the majority (side 1); n3, alone on side 2, holds the session.
    let (n1, n2, n3) = three_across(&net, dir);
    wait_log(&n3.broker, &["replication switched", "on=true"]);
    let a = client(&net, &n3, &script, "ps", &out("a"), "lease/#");
    wait_line(&out("a"), "subscribed");
    wait_log(&n3.broker, &["persistent session placed", "client=ps"]);
    // Before the cut: a message from the majority reaches the session (its route and
    // placement are committed, and the copy on its backup holds the message).
    eventually("a message before the cut", WAIT, || {
        publish(&net, &n1, "lease/0", "before");
        crate::common::poll_until(Duration::from_secs(1), || {
            lines(&out("a"))
                .iter()
                .any(|l| l.starts_with("message before"))
        })
        .is_ok()
    });

    net.cut();
    // The isolated node closes the session's connection when its lease lapses...
    wait_log(&n3.broker, &["session lease lapsed", &n3.name]);
    wait_log(
        &n3.broker,
        &["session connection closed", "client=ps", &n3.name],
    );
    wait_line(&out("a"), "closed");
    // ...and the majority fails the session over from its copy.
    let failed_over = |b: &Broker| {
        b.log_lines()
            .iter()
            .any(|l| l.contains("session failed over") && l.contains("client=ps"))
    };
    eventually("ps to fail over to n1 or n2", WAIT, || {
        failed_over(&n1.broker) || failed_over(&n2.broker)
    });
    // The new primary's route is committed: a message published on the majority is
    // acknowledged (mosquitto_pub succeeds) and queued for the session.
    wait_status(dir, &n1.name, "ps's route on the majority", |s| {
        crate::common::cluster_figure(s, "routes") >= 1
    });
    publish(&net, &n1, "lease/1", "after-cut");
    // The isolated node refuses to resume the session (3.1.1 CONNACK 3, server unavailable).
    let refused = client_until(
        &net,
        &n3,
        &script,
        &out("refused"),
        "connack",
        "connack 0 3",
    );
    drop(refused);
    wait_log(&n3.broker, &["session refused", "client=ps", &n3.name]);

    // On the majority side the client finds its session and the message.
    let b = client_until(
        &net,
        &n2,
        &script,
        &out("b"),
        "message after-cut",
        "connack 1 0",
    );
    drop(b); // killed: its connection closes, the session stays

    net.heal();
    // The old node catches up and drops its stale copy without delivering it.
    wait_log(&n3.broker, &["session lease regained", &n3.name]);
    // (Fenced by the newer placement, or released by the newer registration, whichever
    // it applies first.)
    eventually("n3 to drop its stale copy of ps", WAIT, || {
        n3.broker.log_lines().iter().any(|l| {
            l.contains("client=ps")
                && (l.contains("session fenced") || l.contains("session taken over by another"))
        })
    });
    publish(&net, &n1, "lease/2", "after-heal");
    let c = client_until(
        &net,
        &n3,
        &script,
        &out("c"),
        "message after-heal",
        "connack 1 0",
    );
    drop(c);
    // Nothing of the session was delivered twice (the acknowledged ones were not stale
    // copies sent again), and the isolated connection never got what came after the cut.
    let a = a.kill();
    drop(a);
    let before_cut = lines(&out("a"));
    assert!(
        !before_cut.iter().any(|l| l.contains("after")),
        "the isolated node delivered after the cut: {before_cut:?}"
    );
    for name in ["b", "c"] {
        let got = lines(&out(name));
        let messages: Vec<&String> = got.iter().filter(|l| l.starts_with("message")).collect();
        for m in &messages {
            let count = messages.iter().filter(|o| o == &m).count();
            assert!(
                count == 1 || m.ends_with(" 1"),
                "{name}: {m} twice: {got:?}"
            );
            assert!(!m.contains("before"), "{name}: a stale copy: {got:?}");
        }
    }
    drop((n1, n2, n3));
}

/// The survivor that failed `client` over, and the other one.
fn failed_over<'a>(
    client: &str,
    a: &'a LoopMember,
    b: &'a LoopMember,
) -> (&'a LoopMember, &'a LoopMember) {
    let needle = format!("client={client}");
    let on = |m: &LoopMember| {
        m.broker
            .log_lines()
            .iter()
            .any(|l| l.contains("session failed over") && l.contains(&needle))
    };
    eventually(&format!("{client} to fail over"), WAIT, || {
        if on(a) {
            Ok((a, b))
        } else if on(b) {
            Ok((b, a))
        } else {
            Err(String::new())
        }
    })
}

/// Three nodes replicating; a persistent 3.1.1 session `id` subscribed to `id/#` on n1,
/// placed and routed from n2, its client gone.
fn session_away_on_n1(cluster: &Cluster, id: &str) -> (LoopMember, LoopMember, LoopMember) {
    let (n1, n2, n3) = three(cluster);
    n1.broker
        .expect_line(&["replication switched", "on=true"], WAIT);
    let (mut s, _) = connect(&n1.broker, id, None);
    raw_subscribe(&mut s, 1, &[(&format!("{id}/#"), RawQoS::AtLeastOnce)]);
    n1.broker.expect_line(
        &["persistent session placed", &format!("client={id}")],
        WAIT,
    );
    cluster.wait_routes("n2@localhost", 1);
    drop(s);
    (n1, n2, n3)
}

#[test]
fn after_a_failover_another_connection_takes_the_session_over_as_on_one_node() {
    let cluster = Cluster::with_settings(REPLICAS);
    let (n1, n2, n3) = session_away_on_n1(&cluster, "tk");
    n1.broker.kill9();
    let (holder, other) = failed_over("tk", &n2, &n3);
    let (mut first, present) = connect(&holder.broker, "tk", None);
    assert!(
        present,
        "the first connection after failover finds the session"
    );
    // A second connection with the same client id on the other survivor takes it over.
    let (mut second, present) = connect(&other.broker, "tk", None);
    assert!(present, "the takeover finds the session");
    assert!(
        first.closed_within(WAIT),
        "the first connection is closed by the takeover"
    );
    // The session is served by the second connection: its subscription is there.
    let through = crate::common::poll_until(WAIT, || {
        let mut p = crate::conformance::support::raw_connect(&holder.broker, "tk-pub", 0, None);
        send_as(
            &mut p,
            &Packet::Publish(Publish {
                dup: false,
                qos: RawQoS::AtLeastOnce,
                retain: false,
                topic: "tk/x".into(),
                packet_id: 1,
                payload: bytes::Bytes::from_static(b"taken"),
                properties: Default::default(),
            }),
            ProtocolVersion::V311,
        );
        let _ = p.read_packet(WAIT);
        match second.read_packet(Duration::from_secs(1)) {
            Some(Packet::Publish(m)) => {
                send_as(
                    &mut second,
                    &Packet::PubAck(Ack::new(m.packet_id)),
                    ProtocolVersion::V311,
                );
                m.payload.as_ref() == b"taken"
            }
            _ => false,
        }
    });
    if through.is_err() {
        for m in [holder, other] {
            eprintln!("{}:\n{}", m.name, m.broker.log_lines().join("\n"));
        }
        panic!("no message through the taken-over session");
    }
}

#[test]
fn after_a_failover_a_session_still_expires() {
    let cluster = Cluster::with_settings(REPLICAS);
    let (n1, n2, n3) = three(&cluster);
    n1.broker
        .expect_line(&["replication switched", "on=true"], WAIT);
    let (mut s, _) = connect(&n1.broker, "ex", Some(5));
    subscribe_v5(&mut s, "ex/#");
    n1.broker
        .expect_line(&["persistent session placed", "client=ex"], WAIT);
    cluster.wait_routes("n2@localhost", 1);
    drop(s);
    n1.broker.kill9();
    let (holder, other) = failed_over("ex", &n2, &n3);
    // It expires on its new node (not never)...
    holder
        .broker
        .expect_line(&["session ended: expired", "client=ex"], WAIT);
    // ...and a reconnection after that finds no session, on either survivor.
    let (_c, present) = connect(&other.broker, "ex", Some(5));
    assert!(!present, "the expired session is gone");
}

/// Publishes one QoS 1 message on `broker` and waits for its PUBACK.
fn publish_acked(broker: &Broker, topic: &str, payload: &'static [u8]) {
    let mut p = crate::conformance::support::raw_connect(broker, "restart-pub", 0, None);
    send_as(
        &mut p,
        &Packet::Publish(Publish {
            dup: false,
            qos: RawQoS::AtLeastOnce,
            retain: false,
            topic: topic.into(),
            packet_id: 1,
            payload: bytes::Bytes::from_static(payload),
            properties: Default::default(),
        }),
        ProtocolVersion::V311,
    );
    match p.read_packet(WAIT) {
        Some(Packet::PubAck(a)) if a.reason == ReasonCode::Success => {}
        other => panic!("expected a PUBACK for {topic}, got {other:?}"),
    }
}

#[test]
fn a_restarted_node_never_serves_a_session_that_failed_over_while_it_was_down() {
    let cluster = Cluster::with_settings(REPLICAS);
    let (n1, n2, n3) = session_away_on_n1(&cluster, "rs");
    // Acknowledged, so on n1 and in the copy on its backup.
    publish_acked(&n2.broker, "rs/1", b"before");
    n1.broker.kill9();
    let (holder, _) = failed_over("rs", &n2, &n3);
    // Published on the new primary while n1 is down: only the failed-over session has it.
    publish_acked(&holder.broker, "rs/2", b"after");

    // n1 comes back with its disk, and its stale copy of the session. From its first moment
    // a client resuming the session there is refused (not caught up yet) or finds the session
    // as the cluster has it, "after" included; never n1's stale copy.
    let n1 = cluster.start("n1", &holder.address(), &[]);
    let mut refusals = 0;
    let (mut c, present) = eventually("n1 to resume rs", WAIT, || {
        match try_connect(&n1.broker, "rs", None) {
            Ok(accepted) => Ok(accepted),
            Err(Some(ReasonCode::ServerUnavailable)) => {
                refusals += 1;
                Err("refused: catching up".to_owned())
            }
            Err(other) => panic!("rs: unexpected CONNACK {other:?}"),
        }
    });
    assert!(
        present,
        "the session is found (session present) after {refusals} refusals\nn1:\n{}\n{}:\n{}",
        n1.broker.log_lines().join("\n"),
        holder.name,
        holder.broker.log_lines().join("\n")
    );
    eprintln!("rs resumed on n1 after {refusals} refusals");
    let mut got = Vec::new();
    while !["before", "after"]
        .iter()
        .all(|want| got.iter().any(|p: &String| p == want))
    {
        match c.read_packet(WAIT) {
            Some(Packet::Publish(m)) => {
                got.push(String::from_utf8_lossy(&m.payload).into_owned());
                send_as(
                    &mut c,
                    &Packet::PubAck(Ack::new(m.packet_id)),
                    ProtocolVersion::V311,
                );
            }
            Some(_) => {}
            None => panic!(
                "n1 served a copy without the messages acknowledged for it: got {got:?} \
                 ({refusals} refusals first)\n{}",
                n1.broker.log_lines().join("\n")
            ),
        }
    }
}

/// Subscribes an MQTT 5.0 connection to `filter` at QoS 1 and waits for its SUBACK.
fn subscribe_v5(s: &mut crate::common::RawClient, filter: &str) {
    send_as(
        s,
        &Packet::Subscribe(Subscribe {
            packet_id: 1,
            filters: vec![(filter.to_owned(), RawQoS::AtLeastOnce.into())],
            properties: Default::default(),
        }),
        ProtocolVersion::V5,
    );
    assert!(
        matches!(
            s.read_packet_of(ProtocolVersion::V5, WAIT),
            Some(Packet::SubAck(_))
        ),
        "SUBACK"
    );
}

/// A persistent MQTT 5.0 session `id` on `broker` expiring `secs` after its client leaves,
/// subscribed to `id/#`; its client has left (DISCONNECT) when this returns.
fn session_left(broker: &Broker, id: &str, secs: u32) {
    let (mut s, _) = connect(broker, id, Some(secs));
    subscribe_v5(&mut s, &format!("{id}/#"));
    send_as(
        &mut s,
        &Packet::Disconnect(Default::default()),
        ProtocolVersion::V5,
    );
    assert!(s.closed_within(WAIT), "the broker closes after DISCONNECT");
}

#[test]
fn a_session_whose_deadline_passed_while_its_node_was_down_is_gone_after_the_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = Broker::start_in(dir.path(), &[], "");
    // The broker closes the connection after the session has left (and its deadline was
    // written).
    session_left(&broker, "dl", 1);
    broker.kill9();
    // Down for longer than the session's expiry interval: waiting for time to pass is the
    // point here, nothing to poll for.
    std::thread::sleep(Duration::from_millis(1_500));
    let broker = Broker::start_in(dir.path(), &[], "");
    let (_c, present) = connect(&broker, "dl", Some(1));
    assert!(
        !present,
        "the session expired while the node was down (its deadline is kept, not restarted)"
    );
}

#[test]
fn a_failed_over_session_keeps_the_deadline_it_had_on_its_lost_node() {
    let cluster = Cluster::with_settings(REPLICAS);
    let (n1, n2, n3) = three(&cluster);
    n1.broker
        .expect_line(&["replication switched", "on=true"], WAIT);
    // Its client leaves; the session expires 1 s later, before the cluster can drop n1
    // (cluster.node_down_ms, 2 s) and fail the session over.
    session_left(&n1.broker, "fd", 1);
    n1.broker
        .expect_line(&["persistent session placed", "client=fd"], WAIT);
    cluster.wait_routes("n2@localhost", 1);
    // Acknowledged, so on the backup; the deadline went the same way before it.
    publish_acked(&n2.broker, "fd/1", b"queued");
    n1.broker.kill9();
    let (holder, _) = failed_over("fd", &n2, &n3);
    // (One connection: it makes a new session of its own, which another would find.)
    let (_c, present) = connect(&holder.broker, "fd", Some(1));
    assert!(
        !present,
        "the session's deadline passed before its failover: it is not served"
    );
}
