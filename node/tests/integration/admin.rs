//! The admin socket and `fubar ctl`: accounts and the CONNECT auth matrix, status, stop, the
//! socket's protection, address rules and run-time settings.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Output};

use bytes::Bytes;
use fubar::mqtt::packet::{ConnAck, Connect, ConnectReturnCode, Packet, ProtocolVersion};
use rumqttc::QoS;

use crate::common::{connect_v311, ctl_command, ctl_in, ctl_ok, Broker, RawClient, NODE_NAME};
use crate::conformance::support::{send_packet, text, wait_log, Mqtt, WAIT};

/// Runs `fubar ctl` and checks it failed with exit status 1 and one line of stderr
/// containing `needle`; returns that line.
fn ctl_refused(broker: &Broker, args: &[&str], needle: &str) -> String {
    refused(&broker.ctl(args), &format!("fubar ctl {args:?}"), needle)
}

fn refused(out: &Output, what: &str, needle: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{what} should fail: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{what}: one line: {stderr:?}");
    assert!(
        lines[0].contains(needle),
        "{what}: {needle:?} in {stderr:?}"
    );
    lines[0].to_owned()
}

// ---- accounts ---------------------------------------------------------------------------

#[test]
fn account_update_list_delete_print_what_they_did() {
    let broker = Broker::start();
    assert_eq!(ctl_ok(&broker, &["account", "list"]), "");
    assert_eq!(
        ctl_ok(&broker, &["account", "update", "romeo", "pw1"]),
        "account romeo created\n"
    );
    assert_eq!(
        ctl_ok(&broker, &["account", "update", "romeo", "pw2"]),
        "password of romeo changed\n"
    );
    ctl_ok(&broker, &["account", "update", "juliet", "pw3"]);
    assert_eq!(
        ctl_ok(&broker, &["account", "list"]),
        "juliet\nromeo\n",
        "sorted names"
    );
    assert_eq!(
        ctl_ok(&broker, &["account", "delete", "romeo"]),
        "account romeo deleted\n"
    );
    assert_eq!(ctl_ok(&broker, &["account", "list"]), "juliet\n");
}

#[test]
fn deleting_a_missing_account_fails_with_a_message() {
    let broker = Broker::start();
    ctl_ok(&broker, &["account", "update", "juliet", "pw"]);
    ctl_refused(&broker, &["account", "delete", "romeo"], "no account romeo");
    assert_eq!(ctl_ok(&broker, &["account", "list"]), "juliet\n");
}

// ---- the auth matrix ----------------------------------------------------------------------

/// The password of the account every auth test creates; it must never show in the log.
const PASSWORD: &str = "Pw-of-romeo-7f3a";
/// A wrong password, which must not show either.
const WRONG: &str = "Wrong-pw-c41d";

/// A broker with `--auth` and the account `romeo`.
fn auth_broker() -> Broker {
    let broker = Broker::start_with(&["--auth"], "");
    ctl_ok(&broker, &["account", "update", "romeo", PASSWORD]);
    broker
}

/// Sends a 3.1.1 CONNECT with these credentials; returns the CONNACK's code.
fn connack_code(
    broker: &Broker,
    id: &str,
    user: Option<&str>,
    password: Option<&str>,
) -> (ConnectReturnCode, RawClient) {
    let mut raw = RawClient::connect(broker.addr);
    send_packet(
        &mut raw,
        &Packet::Connect(Box::new(Connect {
            protocol: ProtocolVersion::V311,
            clean_session: true,
            keep_alive: 60,
            client_id: id.to_owned(),
            will: None,
            username: user.map(str::to_owned),
            password: password.map(|p| Bytes::copy_from_slice(p.as_bytes())),
            properties: Default::default(),
        })),
    );
    match raw.read_packet(WAIT) {
        Some(Packet::ConnAck(ConnAck { code, .. })) => (code.connect_return_code(), raw),
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// Checks a refused CONNECT: the code, the close, the `access` line with `reason`, and no
/// password anywhere in the log.
fn assert_refused(
    broker: &Broker,
    id: &str,
    user: Option<&str>,
    password: Option<&str>,
    code: ConnectReturnCode,
    reason: &str,
) {
    let (got, mut raw) = connack_code(broker, id, user, password);
    assert_eq!(got, code);
    assert!(raw.closed_within(WAIT), "closed after the refusal");
    let line = wait_log(broker, &format!("connect refused: {reason}"));
    assert!(line.starts_with("access "), "an access event: {line}");
    assert!(line.contains(&format!("client={id}")), "{line}");
    // The connection's last line: every line about it is in now.
    wait_log(broker, "disconnected before CONNECT");
    assert_no_password_logged(broker);
}

fn assert_no_password_logged(broker: &Broker) {
    for line in broker.log_lines() {
        assert!(
            !line.contains(PASSWORD) && !line.contains(WRONG),
            "password in the log: {line}"
        );
    }
}

#[test]
fn auth_without_credentials_is_refused_with_5() {
    let broker = auth_broker();
    assert_refused(
        &broker,
        "anon",
        None,
        None,
        ConnectReturnCode::NotAuthorized,
        "no user name given",
    );
}

#[test]
fn auth_with_a_wrong_password_is_refused_with_4() {
    let broker = auth_broker();
    assert_refused(
        &broker,
        "guesser",
        Some("romeo"),
        Some(WRONG),
        ConnectReturnCode::BadUserNameOrPassword,
        "wrong password",
    );
}

#[test]
fn auth_with_an_unknown_user_is_refused_with_4() {
    let broker = auth_broker();
    assert_refused(
        &broker,
        "stranger",
        Some("mercutio"),
        Some(PASSWORD),
        ConnectReturnCode::BadUserNameOrPassword,
        "unknown user",
    );
}

#[test]
fn auth_with_a_deleted_user_is_refused_with_4() {
    let broker = auth_broker();
    // The account worked before it was deleted.
    let (code, _ok) = connack_code(&broker, "before", Some("romeo"), Some(PASSWORD));
    assert_eq!(code, ConnectReturnCode::Accepted);
    ctl_ok(&broker, &["account", "delete", "romeo"]);
    assert_refused(
        &broker,
        "after",
        Some("romeo"),
        Some(PASSWORD),
        ConnectReturnCode::BadUserNameOrPassword,
        "unknown user",
    );
}

#[test]
fn auth_with_the_right_password_is_accepted() {
    let broker = auth_broker();
    let (code, _raw) = connack_code(&broker, "romeo-client", Some("romeo"), Some(PASSWORD));
    assert_eq!(code, ConnectReturnCode::Accepted);
    let line = wait_log(&broker, "connected client=romeo-client");
    assert!(line.contains("user=romeo "), "{line}");
    assert_no_password_logged(&broker);
}

#[test]
fn auth_off_accepts_anonymous_clients() {
    let broker = Broker::start();
    let (code, _raw) = connack_code(&broker, "anon", None, None);
    assert_eq!(code, ConnectReturnCode::Accepted);
}

// ---- status and stop --------------------------------------------------------------------

/// The value of a `fubar ctl status` field.
fn field<'a>(status: &'a str, name: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name).filter(|v| v.starts_with(' ')))
        .unwrap_or_else(|| panic!("no {name} in status:\n{status}"))
        .trim()
}

#[test]
fn status_prints_name_version_listeners_connections_sessions_memory_and_role() {
    let broker = Broker::start();
    let _client = Mqtt::connect(&broker, "watched");
    let status = ctl_ok(&broker, &["status"]);
    assert_eq!(field(&status, "node"), NODE_NAME);
    assert_eq!(field(&status, "version"), env!("CARGO_PKG_VERSION"));
    assert_eq!(
        field(&status, "listeners"),
        format!("mqtt://{}", broker.addr)
    );
    assert_eq!(field(&status, "connections"), "1");
    assert_eq!(field(&status, "sessions"), "1");
    assert!(field(&status, "uptime").ends_with(" s"), "{status}");
    let memory = field(&status, "memory");
    let mib: f64 = memory
        .strip_suffix(" MiB")
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("memory {memory:?}"));
    assert!(mib > 0.0, "{status}");
    assert_eq!(field(&status, "cluster role"), "standalone");
}

#[test]
fn ctl_stop_stops_the_node_gracefully() {
    let broker = Broker::start();
    assert_eq!(ctl_ok(&broker, &["stop"]), "stopping\n");
    wait_log(&broker, "node stopped");
    let status = broker.wait_exit();
    assert!(status.success(), "{status:?}");
}

#[test]
fn ctl_without_a_node_fails_with_one_line_naming_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join(NODE_NAME).join("admin.sock");
    refused(
        &ctl_in(dir.path(), &["status"]),
        "ctl status without a node",
        &socket.display().to_string(),
    );
}

#[test]
fn ctl_after_kill9_fails_with_one_line_naming_the_stale_socket() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_in(dir.path(), &[], "");
    ctl_ok(&broker, &["status"]);
    assert!(!broker.kill9().success());
    // SIGKILL leaves the socket file behind with nobody listening.
    let socket = dir.path().join(NODE_NAME).join("admin.sock");
    assert!(socket.exists(), "the stale socket is still there");
    refused(
        &ctl_in(dir.path(), &["status"]),
        "ctl status after kill -9",
        &socket.display().to_string(),
    );
}

// ---- the admin socket's protection ---------------------------------------------------

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("metadata").mode() & 0o777
}

#[test]
fn admin_socket_is_0600_in_a_0700_node_dir_and_other_users_cannot_use_it() {
    let broker = Broker::start();
    let node_dir = broker.dir.path().join(NODE_NAME);
    assert_eq!(mode(&node_dir.join("admin.sock")), 0o600, "socket mode");
    assert_eq!(mode(&node_dir), 0o700, "node dir mode");
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !root {
        eprintln!("not root: cannot run fubar ctl as another user; modes checked only");
        return;
    }
    // Open the data dir itself (a temp dir is 0700), so only fubar's own modes keep others out.
    std::fs::set_permissions(broker.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let nobody = |cmd: &mut Command| {
        cmd.uid(65534).gid(65534);
    };
    // The checkout may lie in a private folder (a 0700 home) that user cannot enter: run a
    // copy of the binary from a folder anyone can read instead of target/.
    let Some(bin) = binary_for_another_user() else {
        return;
    };
    // Controls: that user can run the binary and reach the data dir, so a refusal below
    // comes from the node dir's and the socket's own modes.
    let mut version = Command::new(bin.path().join("fubar"));
    version.arg("--version");
    nobody(&mut version);
    match version.output() {
        Ok(out) if out.status.success() => {}
        other => {
            eprintln!("skipped: user nobody cannot run a copy of fubar in {} ({other:?}); modes checked only", bin.path().display());
            return;
        }
    }
    let mut reach = Command::new("sh");
    reach.args(["-c", "cd \"$1\"", "sh"]).arg(broker.dir.path());
    nobody(&mut reach);
    if !reach.status().is_ok_and(|s| s.success()) {
        eprintln!(
            "skipped: user nobody cannot enter {} (a private temp folder?); modes checked only",
            broker.dir.path().display()
        );
        return;
    }
    // `fubar ctl ... status`, the same arguments, from the copy.
    let mut status = Command::new(bin.path().join("fubar"));
    status.args(ctl_command(broker.dir.path(), &["status"]).get_args());
    status.stdin(std::process::Stdio::null());
    nobody(&mut status);
    let out = status.output().expect("run fubar ctl as nobody");
    let line = refused(&out, "ctl status as another user", "admin.sock");
    assert!(line.contains("ermission denied"), "{line}");
    // The owner still can.
    ctl_ok(&broker, &["status"]);
}

/// A copy of the fubar binary in a fresh folder every user may enter (mode 0755), or `None`
/// with the reason printed when one cannot be made.
fn binary_for_another_user() -> Option<tempfile::TempDir> {
    let dir = match tempfile::Builder::new()
        .prefix("fubar-bin-")
        .tempdir_in("/tmp")
    {
        Ok(d) => d,
        Err(e) => {
            eprintln!(
                "skipped: no folder in /tmp for a copy of the binary ({e}); modes checked only"
            );
            return None;
        }
    };
    let copy = dir.path().join("fubar");
    let made = std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .and_then(|()| std::fs::copy(env!("CARGO_BIN_EXE_fubar"), &copy))
        .and_then(|_| std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)));
    if let Err(e) = made {
        eprintln!(
            "skipped: cannot copy the binary to {} ({e}); modes checked only",
            dir.path().display()
        );
        return None;
    }
    Some(dir)
}

// ---- address rules ----------------------------------------------------------------------

/// Opens a TCP connection, sends CONNECT and checks the broker closes it without a CONNACK
/// (or any other packet).
fn assert_closed_without_connack(broker: &Broker) {
    let mut raw = RawClient::connect(broker.addr);
    raw.send(&connect_v311("denied-client"));
    if let Some(p) = raw.read_packet(WAIT) {
        panic!("a denied address got {p:?}");
    }
    assert!(raw.closed_within(WAIT), "the connection is closed");
}

#[test]
fn denied_address_is_closed_without_connack_and_logged() {
    let broker = Broker::start();
    assert_eq!(
        ctl_ok(&broker, &["acl", "deny", "127.0.0.1"]),
        "deny 127.0.0.1/32\n"
    );
    assert_closed_without_connack(&broker);
    let line = wait_log(&broker, "address denied");
    assert!(line.starts_with("access "), "{line}");
    assert!(line.contains("peer=127.0.0.1:"), "{line}");
}

#[test]
fn deny_leaves_connections_already_open_alone() {
    // Rules are checked when a connection is accepted, not afterwards.
    let broker = Broker::start();
    let mut open = Mqtt::connect(&broker, "already-in");
    open.subscribe("acl/t", QoS::AtLeastOnce);
    ctl_ok(&broker, &["acl", "deny", "127.0.0.0/8"]);
    assert_closed_without_connack(&broker);
    open.publish_acked("acl/t", QoS::AtLeastOnce, false, b"still here");
    assert_eq!(text(&open.next_publish()), "still here");
}

#[test]
fn deleting_the_rule_lets_new_connections_in_again() {
    let broker = Broker::start();
    ctl_ok(&broker, &["acl", "deny", "127.0.0.1/32"]);
    assert_closed_without_connack(&broker);
    assert_eq!(
        ctl_ok(&broker, &["acl", "delete", "127.0.0.1"]),
        "rule 127.0.0.1/32 deleted\n"
    );
    let client = Mqtt::connect(&broker, "welcome-back");
    assert!(!client.connack.session_present);
    ctl_refused(&broker, &["acl", "delete", "127.0.0.1"], "no rule");
}

#[test]
fn acl_list_shows_rules_most_specific_first() {
    let broker = Broker::start();
    assert_eq!(ctl_ok(&broker, &["acl", "list"]), "");
    ctl_ok(&broker, &["acl", "allow", "10.0.0.0/8"]);
    ctl_ok(&broker, &["acl", "deny", "10.1.0.0/16"]);
    ctl_ok(&broker, &["acl", "deny", "192.168.1.7"]);
    let list = ctl_ok(&broker, &["acl", "list"]);
    let rules: Vec<Vec<&str>> = list
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rules,
        [
            ["deny", "192.168.1.7/32"],
            ["deny", "10.1.0.0/16"],
            ["allow", "10.0.0.0/8"]
        ],
        "{list}"
    );
}

#[test]
fn acl_rules_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_in(dir.path(), &[], "");
    ctl_ok(&broker, &["acl", "allow", "10.0.0.0/8"]);
    ctl_ok(&broker, &["acl", "deny", "127.0.0.1"]);
    let before = ctl_ok(&broker, &["acl", "list"]);
    assert!(broker.stop().success());
    let broker = Broker::start_in(dir.path(), &[], "");
    assert_eq!(ctl_ok(&broker, &["acl", "list"]), before);
    assert_closed_without_connack(&broker);
}

#[test]
fn bad_cidr_is_refused_with_a_message() {
    let broker = Broker::start();
    ctl_refused(&broker, &["acl", "deny", "10.0.0.0/33"], "0..=32");
    ctl_refused(&broker, &["acl", "allow", "nonsense"], "ADDR/PREFIX");
    ctl_refused(&broker, &["acl", "deny", "::1/129"], "0..=128");
    assert_eq!(ctl_ok(&broker, &["acl", "list"]), "", "no rule added");
}

// ---- run-time settings -------------------------------------------------------------------

#[test]
fn settings_lists_the_effective_settings() {
    let broker = Broker::start_with(&[], "[session]\ninflight_window = 7\n");
    let list = ctl_ok(&broker, &["settings"]);
    let lines: Vec<&str> = list.lines().collect();
    for expected in [
        "mqtt.max_packet_size = 1048576",
        "session.inflight_window = 7",
        "mqtt.bind = \"127.0.0.1\"",
        "auth.enabled = false",
        "store.sync = \"group\"",
    ] {
        assert!(lines.contains(&expected), "{expected:?} in:\n{list}");
    }
}

#[test]
fn config_example_is_a_settings_file_a_node_starts_with_and_changes_nothing() {
    let out = Command::new(env!("CARGO_BIN_EXE_fubar"))
        .args(["config", "example"])
        .output()
        .expect("run fubar config example");
    assert!(out.status.success(), "{out:?}");
    let example = String::from_utf8(out.stdout).expect("UTF-8");
    assert!(
        example.contains("\n[auth]\n") && example.contains("\nmax_address_failures_per_min = "),
        "{example}"
    );
    // A node given the example (flags still win for name, folder, address and port) runs with
    // exactly the settings of a node given nothing.
    let plain = Broker::start();
    let from_example = Broker::start_with(&[], &example);
    let settings = |broker: &Broker| -> Vec<String> {
        ctl_ok(broker, &["settings"])
            .lines()
            .filter(|l| !l.starts_with("node.data_dir ="))
            .map(str::to_owned)
            .collect()
    };
    let (a, b) = (settings(&plain), settings(&from_example));
    assert!(a.len() > 20, "{a:?}");
    assert_eq!(a, b);
}

#[test]
fn changed_max_packet_size_applies_to_new_connections_only() {
    let broker = Broker::start();
    let big = vec![b'x'; 4000];
    let mut old = Mqtt::connect(&broker, "before-change");
    assert_eq!(
        ctl_ok(&broker, &["settings", "mqtt.max_packet_size", "2048"]),
        "mqtt.max_packet_size = 2048\n"
    );
    let mut new = Mqtt::connect(&broker, "after-change");
    // Within the new limit: accepted.
    new.publish_acked("size/t", QoS::AtLeastOnce, false, &[b'y'; 1000]);
    new.send_publish("size/t", QoS::AtLeastOnce, false, &big);
    assert!(
        new.wait_error(WAIT).is_some(),
        "the new connection is closed"
    );
    let line = wait_log(&broker, "client=after-change");
    let line = if line.contains("packet too large") {
        line
    } else {
        wait_log(&broker, "packet too large")
    };
    assert!(line.contains("maximum 2048"), "{line}");
    // The connection opened before the change keeps the limit it started with.
    old.publish_acked("size/t", QoS::AtLeastOnce, false, &big);
}

#[test]
fn changed_setting_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_in(dir.path(), &[], "");
    ctl_ok(&broker, &["settings", "mqtt.max_packet_size", "2048"]);
    assert!(broker.stop().success());
    let broker = Broker::start_in(dir.path(), &[], "");
    let list = ctl_ok(&broker, &["settings"]);
    assert!(
        list.lines().any(|l| l == "mqtt.max_packet_size = 2048"),
        "{list}"
    );
    let mut client = Mqtt::connect(&broker, "after-restart");
    client.send_publish("size/t", QoS::AtLeastOnce, false, &[b'x'; 4000]);
    assert!(client.wait_error(WAIT).is_some(), "the limit applies");
    wait_log(&broker, "maximum 2048");
}

#[test]
fn bad_setting_changes_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_in(dir.path(), &[], "");
    let before = ctl_ok(&broker, &["settings"]);
    for (name, value, says) in [
        ("mqtt.no_such_setting", "1", "unknown setting"),
        ("nosection", "1", "SECTION.KEY"),
        ("mqtt.max_packet_size", "big", "expected usize"),
        ("mqtt.max_packet_size", "1", "64 ..= 268435460"),
        ("mqtt.max_packet_size", "300000000", "64 ..= 268435460"),
        ("mqtt.max_packet_size", "-5", "mqtt.max_packet_size"),
        ("mqtt.port", "1884", "only at start"),
    ] {
        // `--`: a value may start with a dash.
        ctl_refused(&broker, &["settings", "--", name, value], says);
        assert_eq!(
            ctl_ok(&broker, &["settings"]),
            before,
            "after {name} {value}"
        );
    }
    assert!(
        !broker
            .log_lines()
            .iter()
            .any(|l| l.contains("setting changed")),
        "no change logged"
    );
    assert!(broker.stop().success());
    let broker = Broker::start_in(dir.path(), &[], "");
    assert_eq!(ctl_ok(&broker, &["settings"]), before, "nothing was stored");
}
