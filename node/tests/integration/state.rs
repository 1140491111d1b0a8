//! Preserved state: what a graceful restart and a `kill -9` restart bring back, `fubar reset`,
//! and a node refusing to start on damaged state.
//!
//! Each test owns a data dir and starts brokers on it one after the other with the same node
//! name, so the second finds what the first left.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use bytes::Bytes;
use fubar::mqtt::packet::{
    Ack, Connect, ConnectReturnCode, Packet, ProtocolVersion, Publish as RawPublish, QoS as RawQoS,
};
use rumqttc::{MqttOptions, QoS};

use crate::common::{ctl_in, exit_within, fubar, Broker, RawClient, NODE_NAME};
use crate::conformance::support::{
    options, read, send_packet, summary, text, wait_disconnected, Mqtt,
};

/// How a broker is brought down before the restart.
#[derive(Debug, Clone, Copy)]
enum Down {
    /// SIGTERM: the graceful stop.
    Graceful,
    /// SIGKILL: nothing is flushed at exit.
    Kill9,
}

/// Stops `broker` the way `down` says and starts a new one on the same data dir.
fn restart(broker: Broker, down: Down, dir: &Path, args: &[&str]) -> Broker {
    match down {
        Down::Graceful => assert!(broker.stop().success(), "graceful stop failed"),
        Down::Kill9 => {
            broker.kill9();
        }
    }
    Broker::start_in(dir, args, "")
}

/// Options for a persistent session (clean session 0).
fn persistent(broker: &Broker, id: &str) -> MqttOptions {
    let mut o = options(broker, id);
    o.set_clean_session(false);
    o
}

/// Runs `fubar ctl` and checks it succeeded; returns its stdout.
fn ctl_ok(dir: &Path, args: &[&str]) -> String {
    let out = ctl_in(dir, args);
    assert!(
        out.status.success(),
        "fubar ctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

// ---- what a restart brings back -----------------------------------------------------------

fn account_survives(down: Down) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_in(dir.path(), &["--auth"], "");
    ctl_ok(dir.path(), &["account", "update", "romeo", "wherefore"]);
    let broker = restart(broker, down, dir.path(), &["--auth"]);
    let mut o = options(&broker, "romeo-client");
    o.set_credentials("romeo", "wherefore");
    // connect_with fails the test unless CONNACK accepts.
    let client = Mqtt::connect_with(o);
    assert!(!client.connack.session_present);
    assert_eq!(ctl_ok(dir.path(), &["account", "list"]), "romeo\n");
}

#[test]
fn account_survives_graceful_restart() {
    account_survives(Down::Graceful);
}

#[test]
fn account_survives_kill9_restart() {
    account_survives(Down::Kill9);
}

fn retained_survives(down: Down) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_in(dir.path(), &[], "");
    let mut publisher = Mqtt::connect(&broker, "pub");
    publisher.publish_acked("keep/r", QoS::AtLeastOnce, true, b"kept");
    let broker = restart(broker, down, dir.path(), &[]);
    let mut sub = Mqtt::connect(&broker, "late");
    sub.subscribe("keep/#", QoS::AtLeastOnce);
    let got = sub.next_publish();
    assert_eq!(
        summary(std::slice::from_ref(&got)),
        [("keep/r".into(), "kept".into())]
    );
    assert!(got.retain, "a retained message comes with the retain flag");
    assert_eq!(got.qos, QoS::AtLeastOnce);
}

#[test]
fn retained_message_survives_graceful_restart() {
    retained_survives(Down::Graceful);
}

#[test]
fn retained_message_survives_kill9_restart() {
    retained_survives(Down::Kill9);
}

fn subscription_survives(down: Down) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_in(dir.path(), &[], "");
    let mut sub = Mqtt::connect_with(persistent(&broker, "keeper"));
    sub.subscribe("sub/t", QoS::AtLeastOnce);
    sub.disconnect();
    wait_disconnected(&broker, "keeper", 1);
    let broker = restart(broker, down, dir.path(), &[]);
    let mut sub = Mqtt::connect_with(persistent(&broker, "keeper"));
    assert!(sub.connack.session_present, "the session came back");
    // No SUBSCRIBE: the message arrives through the kept subscription.
    let mut publisher = Mqtt::connect(&broker, "pub");
    publisher.publish_acked("sub/t", QoS::AtLeastOnce, false, b"after restart");
    let got = sub.next_publish();
    assert_eq!(
        summary(std::slice::from_ref(&got)),
        [("sub/t".into(), "after restart".into())]
    );
    assert_eq!(got.qos, QoS::AtLeastOnce, "with the subscription's QoS");
}

#[test]
fn persistent_subscription_survives_graceful_restart() {
    subscription_survives(Down::Graceful);
}

#[test]
fn persistent_subscription_survives_kill9_restart() {
    subscription_survives(Down::Kill9);
}

fn queued_survive(down: Down) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_in(dir.path(), &[], "");
    let mut sub = Mqtt::connect_with(persistent(&broker, "away"));
    sub.subscribe("q/t", QoS::ExactlyOnce);
    sub.disconnect();
    wait_disconnected(&broker, "away", 1);
    let mut publisher = Mqtt::connect(&broker, "pub");
    publisher.publish_acked("q/t", QoS::AtLeastOnce, false, b"one");
    publisher.publish_acked("q/t", QoS::ExactlyOnce, false, b"two");
    drop(publisher);
    let broker = restart(broker, down, dir.path(), &[]);
    let mut sub = Mqtt::connect_with(persistent(&broker, "away"));
    assert!(sub.connack.session_present);
    let got = sub.publishes(2);
    assert_eq!(
        summary(&got),
        [("q/t".into(), "one".into()), ("q/t".into(), "two".into())],
        "both queued messages, in order"
    );
    assert_eq!(got[0].qos, QoS::AtLeastOnce);
    assert_eq!(got[1].qos, QoS::ExactlyOnce);
}

#[test]
fn queued_qos1_and_qos2_messages_survive_graceful_restart() {
    queued_survive(Down::Graceful);
}

#[test]
fn queued_qos1_and_qos2_messages_survive_kill9_restart() {
    queued_survive(Down::Kill9);
}

#[test]
fn qos1_acknowledged_then_kill9_reaches_the_offline_subscriber_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_in(dir.path(), &[], "");
    let mut sub = Mqtt::connect_with(persistent(&broker, "offline"));
    sub.subscribe("acked/t", QoS::AtLeastOnce);
    sub.disconnect();
    wait_disconnected(&broker, "offline", 1);
    let mut publisher = Mqtt::connect(&broker, "pub");
    // publish_acked returns once the PUBACK is in; the SIGKILL follows at once.
    publisher.publish_acked("acked/t", QoS::AtLeastOnce, false, b"promised");
    broker.kill9();
    let broker = Broker::start_in(dir.path(), &[], "");
    let mut sub = Mqtt::connect_with(persistent(&broker, "offline"));
    let got = sub.next_publish();
    assert_eq!(text(&got), "promised");
    assert_eq!(got.topic, "acked/t");
}

#[test]
fn unacknowledged_inflight_qos1_survives_kill9_and_is_redelivered_with_dup() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_in(dir.path(), &[], "");
    let mut o = persistent(&broker, "slow-acker");
    o.set_manual_acks(true);
    let mut sub = Mqtt::connect_with(o);
    sub.subscribe("inflight/t", QoS::AtLeastOnce);
    let mut publisher = Mqtt::connect(&broker, "pub");
    publisher.publish_acked("inflight/t", QoS::AtLeastOnce, false, b"unacked");
    let first = sub.next_publish();
    assert_eq!(text(&first), "unacked");
    assert!(!first.dup);
    // No PUBACK from the subscriber: the message is in flight when the broker dies.
    broker.kill9();
    drop(sub);
    drop(publisher);
    let broker = Broker::start_in(dir.path(), &[], "");
    let mut o = persistent(&broker, "slow-acker");
    o.set_manual_acks(true);
    let mut sub = Mqtt::connect_with(o);
    assert!(sub.connack.session_present);
    let again = sub.next_publish();
    assert_eq!(text(&again), "unacked");
    assert!(again.dup, "a redelivery carries DUP");
    assert_eq!(again.pkid, first.pkid, "with the same packet id");
    assert_eq!(again.qos, QoS::AtLeastOnce);
    sub.ack(&again);
}

#[test]
fn a_cleared_retained_message_stays_cleared_after_kill9() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_in(dir.path(), &[], "");
    let mut publisher = Mqtt::connect(&broker, "pub");
    publisher.publish_acked("clr/gone", QoS::AtLeastOnce, true, b"old");
    publisher.publish_acked("clr/kept", QoS::AtLeastOnce, true, b"kept");
    publisher.publish_acked("clr/gone", QoS::AtLeastOnce, true, b"");
    let broker = restart(broker, Down::Kill9, dir.path(), &[]);
    let mut sub = Mqtt::connect(&broker, "late");
    sub.subscribe("clr/#", QoS::AtLeastOnce);
    // Retained messages follow the SUBACK; a live marker comes after them.
    let mut publisher = Mqtt::connect(&broker, "pub");
    publisher.publish_acked("clr/marker", QoS::AtLeastOnce, false, b"marker");
    let got = sub.publishes(2);
    assert_eq!(
        summary(&got),
        [
            ("clr/kept".into(), "kept".into()),
            ("clr/marker".into(), "marker".into())
        ],
        "the cleared topic has no retained message"
    );
}

#[test]
fn an_unsubscribe_is_kept_across_kill9() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_in(dir.path(), &[], "");
    let mut sub = Mqtt::connect_with(persistent(&broker, "picky"));
    sub.subscribe_many(&[("un/a", QoS::AtLeastOnce), ("un/b", QoS::AtLeastOnce)]);
    sub.unsubscribe("un/a");
    sub.disconnect();
    wait_disconnected(&broker, "picky", 1);
    let broker = restart(broker, Down::Kill9, dir.path(), &[]);
    let mut sub = Mqtt::connect_with(persistent(&broker, "picky"));
    assert!(sub.connack.session_present);
    let mut publisher = Mqtt::connect(&broker, "pub");
    publisher.publish_acked("un/a", QoS::AtLeastOnce, false, b"unsubscribed");
    publisher.publish_acked("un/b", QoS::AtLeastOnce, false, b"marker");
    assert_eq!(
        summary(&[sub.next_publish()]),
        [("un/b".into(), "marker".into())]
    );
}

#[test]
fn a_session_discarded_by_a_clean_connect_stays_gone_after_kill9() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_in(dir.path(), &[], "");
    let mut sub = Mqtt::connect_with(persistent(&broker, "fickle"));
    sub.subscribe("gone/t", QoS::AtLeastOnce);
    sub.disconnect();
    wait_disconnected(&broker, "fickle", 1);
    let clean = Mqtt::connect(&broker, "fickle");
    clean.disconnect();
    wait_disconnected(&broker, "fickle", 2);
    let broker = restart(broker, Down::Kill9, dir.path(), &[]);
    let sub = Mqtt::connect_with(persistent(&broker, "fickle"));
    assert!(
        !sub.connack.session_present,
        "the discarded session came back"
    );
}

/// A raw MQTT 3.1.1 connection with clean session 0.
fn raw_persistent(broker: &Broker, id: &str) -> RawClient {
    let mut raw = RawClient::connect(broker.addr);
    send_packet(
        &mut raw,
        &Packet::Connect(Box::new(Connect {
            protocol: ProtocolVersion::V311,
            clean_session: false,
            keep_alive: 60,
            client_id: id.to_owned(),
            will: None,
            username: None,
            password: None,
            properties: Default::default(),
        })),
    );
    match read(&mut raw) {
        Packet::ConnAck(a) if a.code == ConnectReturnCode::Accepted => raw,
        other => panic!("expected an accepting CONNACK, got {other:?}"),
    }
}

#[test]
fn a_qos2_message_received_before_kill9_is_not_delivered_twice_when_resent() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_in(dir.path(), &[], "");
    let mut sub = Mqtt::connect_with(persistent(&broker, "once"));
    sub.subscribe("q2/t", QoS::ExactlyOnce);
    sub.disconnect();
    wait_disconnected(&broker, "once", 1);
    let publish = |dup| {
        Packet::Publish(RawPublish {
            dup,
            qos: RawQoS::ExactlyOnce,
            retain: false,
            topic: "q2/t".into(),
            packet_id: 7,
            payload: Bytes::from_static(b"exactly once"),
            properties: Default::default(),
        })
    };
    let mut raw = raw_persistent(&broker, "q2-pub");
    send_packet(&mut raw, &publish(false));
    assert_eq!(read(&mut raw), Packet::PubRec(Ack::new(7)));
    // The broker dies before the PUBREL: the publisher must send the PUBLISH again.
    broker.kill9();
    let broker = Broker::start_in(dir.path(), &[], "");
    let mut raw = raw_persistent(&broker, "q2-pub");
    send_packet(&mut raw, &publish(true));
    assert_eq!(read(&mut raw), Packet::PubRec(Ack::new(7)));
    send_packet(&mut raw, &Packet::PubRel(Ack::new(7)));
    assert_eq!(read(&mut raw), Packet::PubComp(Ack::new(7)));
    let mut sub = Mqtt::connect_with(persistent(&broker, "once"));
    let mut publisher = Mqtt::connect(&broker, "pub");
    publisher.publish_acked("q2/t", QoS::AtLeastOnce, false, b"marker");
    let got = sub.publishes(2);
    assert_eq!(
        summary(&got),
        [
            ("q2/t".into(), "exactly once".into()),
            ("q2/t".into(), "marker".into())
        ]
    );
}

// ---- fubar reset ----------------------------------------------------------------------------

/// `fubar reset` on the node of `dir`, with `extra` flags and `stdin` as its input.
fn reset(dir: &Path, extra: &[&str], stdin: &str) -> Output {
    let mut child = fubar()
        .arg("reset")
        .arg("--data-dir")
        .arg(dir)
        .args(["--name", NODE_NAME])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fubar reset");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).expect("write stdin");
    drop(input);
    child.wait_with_output().expect("wait")
}

/// A stopped node's data dir holding the account `romeo`.
fn stopped_node_with_an_account() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_in(dir.path(), &[], "");
    ctl_ok(dir.path(), &["account", "update", "romeo", "wherefore"]);
    assert!(broker.stop().success());
    dir
}

/// The account names of the node of `dir`, seen by starting it.
fn accounts_after_start(dir: &Path) -> String {
    let broker = Broker::start_in(dir, &[], "");
    let names = ctl_ok(dir, &["account", "list"]);
    assert!(broker.stop().success());
    names
}

#[test]
fn reset_yes_clears_the_state_of_a_stopped_node() {
    let dir = stopped_node_with_an_account();
    let out = reset(dir.path(), &["--yes"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("cleared"));
    assert_eq!(accounts_after_start(dir.path()), "", "accounts are gone");
}

#[test]
fn reset_answered_no_deletes_nothing() {
    let dir = stopped_node_with_an_account();
    let out = reset(dir.path(), &[], "n\n");
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("[y/N]"), "it asked: {stdout}");
    assert!(stdout.contains("nothing deleted"), "{stdout}");
    assert_eq!(accounts_after_start(dir.path()), "romeo\n");
}

#[test]
fn reset_refuses_while_the_node_runs() {
    let dir = tempfile::tempdir().unwrap();
    let _broker = Broker::start_in(dir.path(), &[], "");
    ctl_ok(dir.path(), &["account", "update", "romeo", "wherefore"]);
    let out = reset(dir.path(), &["--yes"], "");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("in use"), "{stderr}");
    assert_eq!(ctl_ok(dir.path(), &["account", "list"]), "romeo\n");
}

#[test]
fn reset_clears_damaged_state_under_a_data_dir_whose_name_says_lock() {
    // "in use" must come from the state's lock, not from words in the path of an error.
    let dir = tempfile::Builder::new()
        .prefix("blocks-")
        .tempdir()
        .unwrap();
    let broker = Broker::start_in(dir.path(), &[], "");
    ctl_ok(dir.path(), &["account", "update", "romeo", "wherefore"]);
    assert!(broker.stop().success());
    std::fs::write(state_dir(dir.path()).join("version"), b"garbage").unwrap();
    let out = reset(dir.path(), &["--yes"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(accounts_after_start(dir.path()), "");
}

// ---- damaged state at start -----------------------------------------------------------------
//
// What fjall 3.1 does with damage to the files under `<node>/state` (found by trying):
// - `version` garbled or emptied: refused (`InvalidVersion`); removed: refused ("File exists").
// - bytes garbled inside a journal entry (`N.jnl`): refused (`JournalRecovery(ChecksumMismatch)`).
// - a keyspace's `current` or `vN` file garbled, or a table file garbled: refused.
// - the journal truncated after the first entries: the lost entries are taken for a torn tail
//   (a crash while writing) and dropped silently; nothing can tell that from a real crash.
// - garbage over the *start* of the journal, or the journal emptied: fjall drops it all as a
//   torn tail (and truncates the file) and would open empty. The store refuses that case itself
//   (its format record is missing while its keyspaces exist).

/// `fubar node` on `dir`, run to its exit (killed, failing the test, if it starts serving).
fn node_run_to_exit(dir: &Path) -> Output {
    let child = fubar()
        .args(["node", "--bind", "127.0.0.1", "--mqtt-port", "0"])
        .args(["--name", NODE_NAME])
        .arg("--data-dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fubar node");
    exit_within(child, Duration::from_secs(20)).unwrap_or_else(|out| {
        panic!(
            "fubar node kept running on damaged state; stdout:\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn state_dir(dir: &Path) -> PathBuf {
    dir.join(NODE_NAME).join("state")
}

/// The journal file(s) of the state.
fn journals(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(state_dir(dir))
        .expect("state dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "jnl"))
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no journal in the state dir");
    out
}

/// Damages the state of a stopped node with `damage`, then checks that `fubar node` refuses
/// it with one line naming the state and `fubar reset`, and that the way out works.
fn refused_at_start(damage: impl FnOnce(&Path)) {
    let dir = stopped_node_with_an_account();
    damage(dir.path());
    let out = node_run_to_exit(dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one error line: {stderr}");
    let state = state_dir(dir.path()).display().to_string();
    assert!(lines[0].contains(&state), "names {state}: {stderr}");
    assert!(
        lines[0].contains("fubar reset"),
        "names the way out: {stderr}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("listening"),
        "never served"
    );
    // The way out: reset, and the node starts (empty).
    let out = reset(dir.path(), &["--yes"], "");
    assert!(
        out.status.success(),
        "reset of damaged state: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(accounts_after_start(dir.path()), "");
}

#[test]
fn garbled_journal_entry_is_refused_at_start() {
    refused_at_start(|dir| {
        // Flip bytes inside the account's record (its password hash follows the name).
        let journal = &journals(dir)[0];
        let mut bytes = std::fs::read(journal).unwrap();
        let at = bytes
            .windows(b"$argon2id$".len())
            .position(|w| w == b"$argon2id$")
            .expect("the account record is in the journal");
        bytes[at + 20..at + 24].fill(0xff);
        std::fs::write(journal, bytes).unwrap();
    });
}

#[test]
fn garbage_over_the_start_of_the_journal_is_refused_at_start() {
    refused_at_start(|dir| {
        let journal = &journals(dir)[0];
        let mut bytes = std::fs::read(journal).unwrap();
        bytes[..32].fill(b'#');
        std::fs::write(journal, bytes).unwrap();
    });
}

#[test]
fn garbled_version_file_is_refused_at_start() {
    refused_at_start(|dir| {
        std::fs::write(state_dir(dir).join("version"), b"garbage").unwrap();
    });
}
