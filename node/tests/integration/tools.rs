//! `fubar pub` and `fubar sub` against a real broker, checked with mosquitto's clients.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{fubar, Broker};

const WAIT: Duration = Duration::from_secs(20);

/// Starts `fubar sub` with `args` and waits until the broker has its subscription.
fn sub(broker: &Broker, id: &str, args: &[&str]) -> std::process::Child {
    let child = fubar()
        .args([
            "sub",
            "-h",
            "127.0.0.1",
            "-p",
            &broker.port().to_string(),
            "-i",
            id,
        ])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fubar sub");
    broker
        .wait_for_log(&format!("subscription added client={id} "), WAIT)
        .expect("fubar sub subscribed");
    child
}

fn publish(broker: &Broker, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut child = fubar()
        .args(["pub", "-h", "127.0.0.1", "-p", &broker.port().to_string()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fubar pub");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

#[test]
fn pub_and_sub_carry_messages_at_every_qos() {
    let broker = Broker::start();
    let s = sub(
        &broker,
        "tool-sub",
        &["-t", "tools/#", "-q", "2", "-v", "-C", "5"],
    );
    for (qos, msg) in [("0", "zero"), ("1", "one"), ("2", "two")] {
        let out = publish(
            &broker,
            &["-t", &format!("tools/q{qos}"), "-m", msg, "-q", qos],
            None,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = publish(
        &broker,
        &["-t", "tools/lines", "-s", "-q", "1"],
        Some("a\nb\n"),
    );
    assert!(out.status.success());
    let out = s.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "tools/q0 zero\ntools/q1 one\ntools/q2 two\ntools/lines a\ntools/lines b\n"
    );
}

#[test]
fn pub_retains_and_clears_and_sends_files() {
    let broker = Broker::start();
    let file = broker.dir.path().join("payload.bin");
    std::fs::write(&file, b"from a file").unwrap();
    let out = publish(
        &broker,
        &[
            "-t",
            "tools/r",
            "-f",
            file.to_str().unwrap(),
            "-r",
            "-q",
            "1",
        ],
        None,
    );
    assert!(out.status.success());
    // A later mosquitto_sub gets the retained message.
    let got = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &broker.port().to_string(),
            "-t",
            "tools/r",
            "-C",
            "1",
            "-W",
            "10",
        ])
        .output()
        .expect("mosquitto_sub (apt-get install mosquitto-clients)");
    assert_eq!(String::from_utf8_lossy(&got.stdout), "from a file\n");
    let out = publish(&broker, &["-t", "tools/r", "-n", "-r"], None);
    assert!(out.status.success());
    broker
        .wait_for_log("retained message cleared", WAIT)
        .expect("the empty retained message clears it");
}

#[test]
fn sub_receives_what_mosquitto_pub_sends_and_stops_when_idle() {
    let broker = Broker::start();
    let s = sub(&broker, "idle-sub", &["-t", "m/x", "-W", "2"]);
    let sent = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &broker.port().to_string(),
            "-t",
            "m/x",
            "-m",
            "hi",
            "-q",
            "1",
        ])
        .status()
        .expect("mosquitto_pub (apt-get install mosquitto-clients)");
    assert!(sent.success());
    let out = s.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "-W ends the subscriber after a quiet spell"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
}

#[test]
fn bad_topics_and_missing_payloads_are_refused_with_exit_1() {
    let broker = Broker::start();
    // A client id longer than a string on the wire can be (65,535 bytes): an error, not a
    // panic.
    let too_long = "a".repeat(70_000);
    for args in [
        vec!["-t", "a/+", "-m", "x"],
        vec!["-t", "", "-m", "x"],
        vec!["-t", "a/b"],
        vec!["-t", "a/b", "-m", "x", "-i", &too_long],
    ] {
        let out = publish(&broker, &args, None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{:.200}", err);
        assert_eq!(err.lines().count(), 1, "one line: {err}");
    }
    let out = fubar()
        .args([
            "sub",
            "-h",
            "127.0.0.1",
            "-p",
            &broker.port().to_string(),
            "-t",
            "a/#/b",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn pub_with_wrong_credentials_fails_with_the_reason() {
    let broker = Broker::start_with(&["--auth"], "");
    let out = publish(
        &broker,
        &["-t", "a", "-m", "x", "-u", "nobody", "-P", "nope"],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("BadUserNameOrPassword"));
}
