//! The classed logs seen from outside: `fubar ctl log|trace|untrace`, the interactive shell,
//! `fubar log dump`, and the files the node leaves in its log dir.
//!
//! Brokers here start without `--log-stdout` (`Broker::start_bare`) so that the `[log]`
//! settings alone decide which classes are open and where they go. Daily files changing name
//! at midnight are not tested here (no clock to move from outside); `logs/` unit-tests them.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use fubar::mqtt::packet::Packet;
use rumqttc::QoS;

use crate::common::{
    connect_v311, ctl_command, ctl_in, ctl_ok, eventually, exit_within, log_dir_in, Broker,
    RawClient, NODE_NAME,
};
use crate::conformance::support::{wait_log, wait_log_count, Mqtt, WAIT};

/// Every class, in the order `log list` shows them.
const CLASSES: [&str; 9] = [
    "access", "packet", "protocol", "resource", "debug", "info", "warning", "error", "trace",
];

/// A settings file opening exactly `classes` (TOML inline-table body) and flushing often.
fn config(classes: &str) -> String {
    format!("[log]\nflush_ms = 10\nclasses = {{ {classes} }}\n")
}

/// Runs `fubar ctl ARGS`, checks it failed with `code` and nothing on stdout, and that stderr
/// says `needle`; returns stderr.
fn ctl_fails(broker: &Broker, args: &[&str], code: i32, needle: &str) -> String {
    let out = broker.ctl(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "fubar ctl {args:?} should fail: {stderr}"
    );
    assert!(out.stdout.is_empty(), "fubar ctl {args:?}: stdout {out:?}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(
        stderr.contains(needle),
        "fubar ctl {args:?}: {needle:?} in {stderr:?}"
    );
    stderr
}

/// Runs `fubar log dump ARGS` (the offline reader); checks it succeeded; returns stdout.
fn offline_dump(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_fubar"))
        .args(["log", "dump"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run fubar log dump");
    assert!(
        out.status.success(),
        "fubar log dump {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 dump")
}

/// One row of `log list`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    open: bool,
    redirect: String,
    files: u64,
    bytes: u64,
    events: u64,
    overwritten: u64,
    dropped: u64,
}

/// `log list`, parsed (and checked to have its header and one row per class, in order).
fn list(broker: &Broker) -> BTreeMap<String, Row> {
    let text = ctl_ok(broker, &["log", "list"]);
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(
        header,
        [
            "class",
            "open",
            "redirect",
            "files",
            "bytes",
            "events",
            "overwritten",
            "dropped"
        ],
        "{text}"
    );
    let mut rows = BTreeMap::new();
    let mut order = Vec::new();
    for line in lines {
        let w: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(w.len(), 8, "a row of 8 columns: {line:?}");
        let n = |i: usize| -> u64 { w[i].parse().unwrap_or_else(|_| panic!("number: {line}")) };
        assert!(w[1] == "yes" || w[1] == "no", "{line}");
        order.push(w[0].to_owned());
        rows.insert(
            w[0].to_owned(),
            Row {
                open: w[1] == "yes",
                redirect: w[2].to_owned(),
                files: n(3),
                bytes: n(4),
                events: n(5),
                overwritten: n(6),
                dropped: n(7),
            },
        );
    }
    assert_eq!(order, CLASSES, "every class, once, in order: {text}");
    rows
}

/// `fubar ctl log dump CLASS FILE` (which flushes first); returns the file's text.
fn ctl_dump(broker: &Broker, class: &str) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join(format!("{class}.txt"));
    let said = ctl_ok(broker, &["log", "dump", class, file.to_str().unwrap()]);
    let text = std::fs::read_to_string(&file).expect("dump file");
    let n = text.lines().count();
    assert_eq!(
        said,
        format!("{n} events of {class} written to {}\n", file.display()),
        "the reply counts the lines written"
    );
    text
}

/// Dumps `class` until the dump contains `needle` (events reach the writer asynchronously).
fn ctl_dump_until(broker: &Broker, class: &str, needle: &str) -> String {
    eventually(&format!("{needle:?} in the {class} dump"), WAIT, || {
        Some(ctl_dump(broker, class)).filter(|t| t.contains(needle))
    })
}

/// A raw MQTT 3.1.1 client, connected (CONNACK read).
fn raw_connected(broker: &Broker, id: &str) -> RawClient {
    let mut raw = RawClient::connect(broker.addr);
    raw.send(&connect_v311(id));
    match raw.read_packet(WAIT) {
        Some(Packet::ConnAck(_)) => raw,
        other => panic!("{id}: expected CONNACK, got {other:?}"),
    }
}

/// Sends DISCONNECT and waits for the broker to close.
fn raw_disconnect(mut raw: RawClient) {
    raw.send(&[0xe0, 0x00]);
    assert!(raw.closed_within(WAIT), "closed after DISCONNECT");
}

/// The segment files of a class, oldest first.
fn segments(log_dir: &Path, class: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(log_dir.join(class))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "seg"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Bytes on disk in a class's segment files.
fn segment_bytes(log_dir: &Path, class: &str) -> u64 {
    segments(log_dir, class)
        .iter()
        .map(|p| std::fs::metadata(p).expect("segment").len())
        .sum()
}

/// The date and time columns of a text line: `class date time node message ...`.
fn date_time(line: &str) -> (String, String) {
    let w: Vec<&str> = line.split_whitespace().collect();
    assert!(w.len() >= 5, "a log line: {line:?}");
    (w[1].to_owned(), w[2].to_owned())
}

/// Checks a text line's shape: class, `YYYY-MM-DD HH:MM:SS.micros`, node name.
fn assert_line_shape(line: &str, class: &str) {
    let w: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(w[0], class, "{line}");
    let (date, time) = date_time(line);
    assert!(
        date.len() == 10 && date.as_bytes()[4] == b'-' && date.as_bytes()[7] == b'-',
        "date: {line}"
    );
    assert!(
        time.len() == 15 && time.as_bytes()[8] == b'.',
        "time with microseconds: {line}"
    );
    assert_eq!(w[3], NODE_NAME, "{line}");
}

// ---- log out at run time -----------------------------------------------------------------

#[test]
fn log_out_takes_effect_at_once_on_stdout_then_in_a_daily_file() {
    let broker = Broker::start_bare(&[], &config(r#"access = "stdout""#));
    assert!(!list(&broker)["protocol"].open);

    let mut c = Mqtt::connect(&broker, "p1");
    c.publish_acked("a/before", QoS::AtLeastOnce, false, b"1");
    c.disconnect();
    // The access line comes after the publish's protocol lines, had there been any.
    wait_log(&broker, "disconnected client=p1 ");
    let protocol = |b: &Broker| -> Vec<String> {
        b.log_lines()
            .into_iter()
            .filter(|l| l.starts_with("protocol"))
            .collect()
    };
    assert_eq!(protocol(&broker), Vec::<String>::new(), "protocol closed");

    assert_eq!(
        ctl_ok(&broker, &["log", "out", "protocol", "stdout"]),
        "protocol -> stdout\n"
    );
    let mut c = Mqtt::connect(&broker, "p2");
    c.publish_acked("a/after", QoS::AtLeastOnce, false, b"2");
    let line = wait_log(&broker, "topic=a/after");
    assert_line_shape(&line, "protocol");
    for field in ["kind=PUBLISH", "dir=in", "client=p2", "qos=1"] {
        assert!(line.contains(field), "{field} in {line}");
    }
    c.disconnect();
    wait_log(&broker, "disconnected client=p2 ");
    let seen = protocol(&broker);
    assert!(
        seen.iter()
            .any(|l| l.contains("kind=PUBACK") && l.contains("dir=out")),
        "{seen:#?}"
    );

    assert_eq!(
        ctl_ok(&broker, &["log", "out", "protocol", "pfx"]),
        "protocol -> pfx\n"
    );
    let mut c = Mqtt::connect(&broker, "p3");
    c.publish_acked("a/file", QoS::AtLeastOnce, false, b"3");
    c.disconnect();
    wait_log(&broker, "disconnected client=p3 ");
    assert_eq!(protocol(&broker), seen, "no more protocol lines on stdout");

    // The daily file, named after the UTC date of its events.
    let dir = broker.log_dir();
    let files = eventually("pfx_<date>.log.1 with the PUBLISH to a/file", WAIT, || {
        let files: Vec<(String, String)> = std::fs::read_dir(&dir)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("pfx_"))
            .map(|n| {
                let text = std::fs::read_to_string(dir.join(&n)).unwrap_or_default();
                (n, text)
            })
            .collect();
        files
            .iter()
            .any(|(_, t)| t.contains("kind=DISCONNECT"))
            .then_some(files)
    });
    let mut all = String::new();
    for (name, text) in &files {
        let date = name
            .strip_prefix("pfx_")
            .and_then(|n| n.strip_suffix(".log.1"))
            .unwrap_or_else(|| panic!("daily file name pfx_YYYY-MM-DD.log.1: {name}"));
        for line in text.lines() {
            assert_line_shape(line, "protocol");
            assert_eq!(date_time(line).0, date, "{name}: {line}");
        }
        all.push_str(text);
    }
    let all = crate::common::unquote(&all);
    for needle in [
        "kind=CONNECT",
        "client_id=p3",
        "kind=CONNACK",
        "topic=a/file",
        "kind=PUBACK",
        "kind=DISCONNECT",
    ] {
        assert!(all.contains(needle), "{needle} in {all}");
    }
    assert!(!all.contains("a/after"), "only events after the redirect");
}

// ---- close and open ----------------------------------------------------------------------

#[test]
fn log_close_stops_recording_and_log_open_resumes() {
    let broker = Broker::start_bare(&[], &config(r#"access = "none""#));
    let dir = broker.log_dir();
    // Clients stay connected to the end: their disconnects would move the counts.
    let _k1 = raw_connected(&broker, "k1");
    assert!(ctl_dump(&broker, "access").contains("connected client=k1 "));
    let open = list(&broker)["access"].clone();
    assert!(open.open && open.events > 0 && open.bytes > 0, "{open:?}");
    let on_disk = segment_bytes(&dir, "access");
    assert!(on_disk > 0);

    assert_eq!(
        ctl_ok(&broker, &["log", "close", "access"]),
        "access closed\n"
    );
    // CONNACK comes after the `connected` event is emitted (or not: the class is closed).
    let _k2 = raw_connected(&broker, "k2");
    let dump = ctl_dump(&broker, "access");
    assert!(
        !dump.contains("k2"),
        "nothing recorded while closed: {dump}"
    );
    let closed = list(&broker)["access"].clone();
    assert!(!closed.open);
    assert_eq!(
        (closed.events, closed.bytes, closed.files),
        (open.events, open.bytes, open.files)
    );
    assert_eq!(
        segment_bytes(&dir, "access"),
        on_disk,
        "files stay, unchanged"
    );

    assert_eq!(ctl_ok(&broker, &["log", "open", "access"]), "access open\n");
    let _k3 = raw_connected(&broker, "k3");
    let dump = ctl_dump(&broker, "access");
    assert!(dump.contains("connected client=k3 "), "{dump}");
    assert!(!dump.contains("k2"));
    let reopened = list(&broker)["access"].clone();
    assert!(
        reopened.open && reopened.events > open.events,
        "{reopened:?}"
    );
    assert!(segment_bytes(&dir, "access") > on_disk);
}

// ---- log list ----------------------------------------------------------------------------

#[test]
fn log_list_shows_every_class_and_its_counts_move() {
    let broker = Broker::start_bare(&[], &config(r#"access = "none", trace = "stdout""#));
    let rows = list(&broker);
    let access = rows["access"].clone();
    assert!(access.open && access.redirect == "none", "{access:?}");
    assert!(rows["trace"].open && rows["trace"].redirect == "stdout");
    let idle = Row {
        open: false,
        redirect: "none".into(),
        files: 0,
        bytes: 0,
        events: 0,
        overwritten: 0,
        dropped: 0,
    };
    for class in ["packet", "protocol", "resource", "debug", "info", "error"] {
        assert_eq!(rows[class], idle, "{class}");
    }

    let c = raw_connected(&broker, "l1");
    raw_disconnect(c);
    ctl_dump_until(&broker, "access", "disconnected client=l1 ");
    let moved = list(&broker)["access"].clone();
    assert!(
        moved.events >= access.events + 3,
        "accepted, connected, disconnected: {moved:?}"
    );
    assert!(moved.bytes > access.bytes && moved.files >= 1, "{moved:?}");
    assert_eq!(moved.bytes, segment_bytes(&broker.log_dir(), "access"));
    assert_eq!((moved.overwritten, moved.dropped), (0, 0));

    ctl_ok(&broker, &["log", "out", "protocol", "proto"]);
    let rows = list(&broker);
    assert!(rows["protocol"].open && rows["protocol"].redirect == "proto");
    assert_eq!(rows["resource"], idle, "other classes untouched");
}

// ---- dump --------------------------------------------------------------------------------

/// The node sends a dump back and `ctl` writes it (issue 16.3: the node used to create the
/// requester's path itself, over any file it could write): an existing file or a symbolic
/// link at the path is refused and left as it was, a new file is 0600, and the node writes
/// nothing.
#[test]
fn a_dump_arrives_at_the_caller_and_never_writes_over_a_file_or_through_a_link() {
    use std::os::unix::fs::PermissionsExt as _;
    let data = tempfile::tempdir().expect("temp dir");
    let broker = Broker::start_bare_in(data.path(), &[], &config(r#"access = "none""#));
    let c = raw_connected(&broker, "v1");
    raw_disconnect(c);
    // The content arrives at the caller's file, readable by the caller only.
    let text = ctl_dump_until(&broker, "access", "disconnected client=v1 ");
    assert!(text.contains("connected client=v1 "), "{text}");
    let out = tempfile::tempdir().expect("temp dir");
    let fresh = out.path().join("fresh.txt");
    ctl_ok(&broker, &["log", "dump", "access", fresh.to_str().unwrap()]);
    let mode = std::fs::metadata(&fresh).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // Without a path, the text is on standard output.
    let said = ctl_ok(&broker, &["log", "dump", "access"]);
    assert!(said.contains("disconnected client=v1 "), "{said}");

    let log_files = |dir: &Path| -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = walk(dir);
        files.sort();
        files
    };
    let before = log_files(&broker.log_dir());
    // The old attack: a path that exists.
    let victim = out.path().join("victim.txt");
    std::fs::write(&victim, "precious").unwrap();
    let stderr = ctl_fails(
        &broker,
        &["log", "dump", "access", victim.to_str().unwrap()],
        1,
        "exists already",
    );
    assert!(stderr.contains("victim.txt"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    // A link to a file, and a dangling link: neither is followed.
    let link = out.path().join("link.txt");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    ctl_fails(
        &broker,
        &["log", "dump", "access", link.to_str().unwrap()],
        1,
        "exists already",
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    let dangling = out.path().join("dangling.txt");
    let target = out.path().join("made-through-the-link.txt");
    std::os::unix::fs::symlink(&target, &dangling).unwrap();
    ctl_fails(
        &broker,
        &["log", "dump", "access", dangling.to_str().unwrap()],
        1,
        "exists already",
    );
    assert!(!target.exists(), "the dump followed a dangling link");
    // And the node wrote nothing of its own (only its segment files are in its log dir).
    let after: Vec<PathBuf> = log_files(&broker.log_dir())
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert!(
        after.iter().all(|p| !p.to_string_lossy().contains("dump")),
        "the node wrote {after:?}"
    );
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn binary_segments_dump_to_the_same_text_online_and_offline() {
    let data = tempfile::tempdir().expect("temp dir");
    let settings = config(r#"access = "none", resource = "none", error = "none""#);
    let broker = Broker::start_bare_in(data.path(), &[], &settings);
    let log_dir = broker.log_dir();
    let mut online = String::new();
    for id in ["d1", "d2"] {
        let c = raw_connected(&broker, id);
        raw_disconnect(c);
        // The broker closes the socket before it logs the disconnect.
        online = ctl_dump_until(&broker, "access", &format!("disconnected client={id} "));
    }
    let lines: Vec<&str> = online.lines().collect();
    let at = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle} in {online}"))
    };
    let order = [
        at("connected client=d1 "),
        at("disconnected client=d1 "),
        at("connected client=d2 "),
        at("disconnected client=d2 "),
    ];
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "oldest first: {online}"
    );
    for l in &lines {
        assert_line_shape(l, "access");
    }
    let times: Vec<(String, String)> = lines.iter().map(|l| date_time(l)).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "in time order");

    let dir_arg = log_dir.to_str().unwrap();
    assert_eq!(
        offline_dump(&["--dir", dir_arg, "access"]),
        online,
        "node running"
    );

    // Every class with events, one file each, written by ctl in its current directory.
    let out = tempfile::tempdir().expect("temp dir");
    let out_dir = out.path().to_owned();
    let ran = ctl_command(data.path(), &["log", "dump"])
        .current_dir(&out_dir)
        .output()
        .expect("run fubar ctl");
    assert!(ran.status.success(), "{ran:?}");
    let said = String::from_utf8(ran.stdout).expect("UTF-8 output");
    let mut dumped = BTreeMap::new();
    for line in said.lines() {
        let (class, rest) = line.split_once(": ").expect("CLASS: N events -> PATH");
        let (n, path) = rest.split_once(" events -> ").expect("N events -> PATH");
        let path = PathBuf::from(path);
        assert_eq!(path.parent(), Some(out_dir.as_path()), "{line}");
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with(&format!("{NODE_NAME}-")) && name.ends_with(&format!("-{class}.log")),
            "{name}"
        );
        let text = std::fs::read_to_string(&path).expect("dump file");
        assert_eq!(text.lines().count().to_string(), n, "{line}");
        dumped.insert(class.to_owned(), text);
    }
    assert_eq!(
        dumped.keys().collect::<Vec<_>>(),
        ["access", "resource"],
        "classes with events only: {said}"
    );
    assert_eq!(dumped["access"], online);
    assert!(dumped["resource"].contains("session created client=d1 "));
    assert_eq!(
        offline_dump(&["--dir", dir_arg, "resource"]),
        dumped["resource"]
    );

    assert!(broker.stop().success());
    assert_eq!(
        offline_dump(&["--dir", dir_arg, "access"]),
        online,
        "node stopped"
    );
    // Without --dir: the node's own log dir, from --data-dir and --name.
    let data_arg = data.path().to_str().unwrap();
    let located = offline_dump(&["--data-dir", data_arg, "--name", NODE_NAME, "access"]);
    assert_eq!(located, online);
    // Without a class: every class with files, in class order.
    assert_eq!(
        offline_dump(&["--dir", dir_arg]),
        format!("{online}{}", dumped["resource"])
    );
}

// ---- tracing -----------------------------------------------------------------------------

/// The `trace` lines on stdout so far.
fn trace_lines(broker: &Broker) -> Vec<String> {
    broker
        .log_lines()
        .into_iter()
        .filter(|l| l.starts_with("trace "))
        .collect()
}

/// The value of `key=` in a line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

#[test]
fn a_traced_client_shows_only_its_own_events() {
    let broker = Broker::start_bare(&[], &config(r#"access = "stdout", trace = "stdout""#));
    assert_eq!(
        ctl_ok(&broker, &["trace", "client", "c1"]),
        "tracing client c1\n"
    );
    let mut c1 = Mqtt::connect(&broker, "c1");
    let mut c2 = Mqtt::connect(&broker, "c2");
    c1.subscribe("t1/x", QoS::AtLeastOnce);
    c2.subscribe("t2/x", QoS::AtLeastOnce);
    c1.publish_acked("t1/x", QoS::AtLeastOnce, false, b"from c1");
    c2.publish_acked("t2/x", QoS::AtLeastOnce, false, b"from c2");
    c1.next_publish();
    c2.next_publish();
    c1.disconnect();
    c2.disconnect();
    // Each client's last line (access comes after trace for the same disconnect).
    wait_log_count(&broker, "disconnected client=c1 ", 2);
    wait_log(&broker, "disconnected client=c2 ");

    let trace = trace_lines(&broker);
    let shown = trace.join("\n");
    assert!(!shown.contains("c2"), "nothing about c2:\n{shown}");
    for l in &trace {
        assert_line_shape(l, "trace");
    }
    let has = |parts: &[&str]| trace.iter().any(|l| parts.iter().all(|p| l.contains(p)));
    for parts in [
        &["connected client=c1 ", "clean_session=true"][..],
        &["disconnected client=c1 ", "reason="],
        &["kind=CONNECT", "dir=in", "client_id=c1"],
        &["kind=CONNACK", "dir=out"],
        &["kind=SUBSCRIBE", "dir=in", "client=c1"],
        &["kind=SUBACK", "dir=out", "client=c1"],
        &["kind=PUBLISH", "dir=in", "client=c1", "topic=t1/x"],
        &["kind=PUBACK", "dir=out", "client=c1"],
        &["kind=PUBLISH", "dir=out", "client=c1", "topic=t1/x"],
        &["kind=PUBACK", "dir=in", "client=c1"],
        &["kind=DISCONNECT", "dir=in", "client=c1"],
    ] {
        assert!(has(parts), "{parts:?} in the trace:\n{shown}");
    }
    let hops: Vec<&String> = trace.iter().filter(|l| l.contains("message hop")).collect();
    let hop_names: Vec<&str> = hops.iter().filter_map(|l| field(l, "hop")).collect();
    assert_eq!(hop_names, ["received", "routed", "sent"], "{shown}");
    for l in &hops {
        assert_eq!(field(l, "topic"), Some("t1/x"), "{l}");
        assert_eq!(field(l, "from"), Some("c1"), "{l}");
        let latency: u64 = field(l, "latency_us")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("latency_us in {l}"));
        assert!(latency < 60_000_000, "{l}");
    }
}

#[test]
fn a_traced_topic_follows_messages_from_any_client_until_untraced() {
    let broker = Broker::start_bare(&[], &config(r#"trace = "stdout""#));
    assert_eq!(
        ctl_ok(&broker, &["trace", "topic", "a/#"]),
        "tracing topic a/#\n"
    );
    assert_eq!(
        ctl_ok(&broker, &["trace", "client", "zz"]),
        "tracing client zz\n"
    );
    assert_eq!(
        ctl_ok(&broker, &["trace", "list"]),
        "client zz\ntopic  a/#\n"
    );
    let mut sub = Mqtt::connect(&broker, "sub");
    sub.subscribe("#", QoS::AtMostOnce);
    let mut publ = Mqtt::connect(&broker, "pub9");
    publ.publish_acked("b/x", QoS::AtLeastOnce, false, b"untraced");
    publ.publish_acked("a/x", QoS::AtLeastOnce, false, b"one");
    assert_eq!(
        crate::conformance::support::text(&sub.next_publish()),
        "untraced"
    );
    assert_eq!(
        crate::conformance::support::text(&sub.next_publish()),
        "one"
    );
    wait_log(&broker, "hop=sent topic=a/x");

    let hops = |b: &Broker| -> Vec<String> {
        trace_lines(b)
            .into_iter()
            .filter(|l| l.contains("message hop"))
            .collect()
    };
    let first = hops(&broker);
    let names: Vec<(&str, &str, &str)> = first
        .iter()
        .map(|l| {
            assert_eq!(field(l, "topic"), Some("a/x"), "only a/#: {l}");
            assert_eq!(field(l, "from"), Some("pub9"), "{l}");
            assert!(field(l, "latency_us").is_some(), "{l}");
            (
                field(l, "hop").unwrap(),
                field(l, "client").unwrap(),
                field(l, "count").unwrap(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("received", "pub9", "1"),
            ("routed", "pub9", "1"),
            ("sent", "sub", "1")
        ]
    );
    // Neither client is traced: no packets in the trace.
    assert!(!trace_lines(&broker).iter().any(|l| l.contains("kind=")));

    assert_eq!(
        ctl_ok(&broker, &["untrace", "topic", "a/#"]),
        "stopped tracing topic a/#\n"
    );
    assert_eq!(ctl_ok(&broker, &["trace", "list"]), "client zz\n");
    publ.publish_acked("a/x", QoS::AtLeastOnce, false, b"two");
    assert_eq!(
        crate::conformance::support::text(&sub.next_publish()),
        "two"
    );
    // A marker: a topic traced afterwards; its hops come after any of "two"'s would have.
    ctl_ok(&broker, &["trace", "topic", "m/#"]);
    publ.publish_acked("m/marker", QoS::AtLeastOnce, false, b"marker");
    sub.next_publish();
    wait_log(&broker, "hop=sent topic=m/marker");
    let after: Vec<String> = hops(&broker)
        .into_iter()
        .filter(|l| l.contains("topic=a/x"))
        .collect();
    assert_eq!(after, first, "no hops once untraced");

    ctl_fails(
        &broker,
        &["untrace", "topic", "a/#"],
        1,
        "topic a/# is not traced",
    );
    ctl_fails(
        &broker,
        &["untrace", "client", "c9"],
        1,
        "client c9 is not traced",
    );
    assert_eq!(
        ctl_ok(&broker, &["untrace", "client", "zz"]),
        "stopped tracing client zz\n"
    );
    assert_eq!(ctl_ok(&broker, &["trace", "list"]), "topic  m/#\n");
}

// ---- errors ------------------------------------------------------------------------------

#[test]
fn bad_classes_redirects_commands_and_filters_are_refused_and_change_nothing() {
    let broker = Broker::start_bare(&[], &config(r#"access = "none", trace = "none""#));
    let before = ctl_ok(&broker, &["log", "list"]);
    let files_before = log_dir_files(&broker.log_dir());

    let unknown = "unknown log class \"nonsense\"";
    ctl_fails(&broker, &["log", "open", "nonsense"], 1, unknown);
    ctl_fails(&broker, &["log", "close", "nonsense"], 1, unknown);
    ctl_fails(&broker, &["log", "out", "nonsense", "stdout"], 1, unknown);
    ctl_fails(&broker, &["log", "dump", "nonsense", "/tmp/x"], 1, unknown);
    for bad in ["../x", "a/b", "..", "a\\b"] {
        ctl_fails(
            &broker,
            &["log", "out", "trace", bad],
            1,
            &format!("bad log redirect {bad:?}"),
        );
    }
    ctl_fails(&broker, &["log", "out", "trace", ""], 1, "empty prefix");
    ctl_fails(
        &broker,
        &["trace", "topic", "a/#/b"],
        1,
        "\"a/#/b\" is not a valid topic filter",
    );
    // Unknown commands: clap refuses them (exit 1, one line) before the node is asked anything.
    ctl_fails(
        &broker,
        &["nonsense"],
        1,
        "unrecognized subcommand 'nonsense'",
    );
    ctl_fails(
        &broker,
        &["log", "frobnicate"],
        1,
        "unrecognized subcommand 'frobnicate'",
    );
    ctl_fails(&broker, &["log", "out", "trace"], 1, "required");

    assert_eq!(ctl_ok(&broker, &["log", "list"]), before, "nothing changed");
    assert_eq!(ctl_ok(&broker, &["trace", "list"]), "");
    assert_eq!(
        log_dir_files(&broker.log_dir()),
        files_before,
        "no file made"
    );
    assert!(!broker.log_dir().parent().unwrap().join("x_").exists());
}

/// Every path under a log dir, sorted.
fn log_dir_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d)
            .expect("read dir")
            .filter_map(Result::ok)
        {
            let p = e.path();
            if p.is_dir() {
                todo.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

// ---- the interactive shell ---------------------------------------------------------------

#[test]
fn the_shell_reads_commands_from_piped_stdin() {
    let broker = Broker::start_bare(&[], &config(r#"access = "none""#));
    let mut child = ctl_command(broker.dir.path(), &[])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fubar ctl");
    let script = "log out trace stdout\n\
                  account update romeo 1234\n\
                  settings mqtt.max_packet_size 8192\n\
                  nonsense\n\
                  log open nonsense\n\
                  help\n\
                  quit\n\
                  account update juliet 5678\n";
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .expect("write stdin");
    // A shell stuck on its input is killed at the deadline and fails the test.
    let out = exit_within(child, WAIT).unwrap_or_else(|out| {
        panic!(
            "fubar ctl shell did not end: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let both = format!("--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert!(out.status.success(), "{both}");
    for needle in [
        "fubar admin shell on",
        "trace -> stdout",
        "account romeo created",
        "mqtt.max_packet_size = 8192",
        "Usage:",
    ] {
        assert!(stdout.contains(needle), "{needle:?} in {both}");
    }
    assert!(
        stderr.contains("unrecognized subcommand 'nonsense'"),
        "{both}"
    );
    assert!(
        stderr.contains("error: unknown log class \"nonsense\""),
        "{both}"
    );
    assert!(!stdout.contains("juliet"), "nothing after quit: {both}");

    // The changes really happened.
    assert_eq!(ctl_ok(&broker, &["account", "list"]), "romeo\n");
    assert!(ctl_ok(&broker, &["settings"]).contains("mqtt.max_packet_size = 8192\n"));
    let trace = list(&broker)["trace"].clone();
    assert!(trace.open && trace.redirect == "stdout", "{trace:?}");
    // Without a terminal rustyline reads plain lines (no prompt echoed) and still keeps history.
    assert!(!stdout.contains("fubar> "), "{both}");
    let history = std::fs::read_to_string(broker.dir.path().join(NODE_NAME).join("ctl_history"))
        .expect("history file");
    assert!(history.contains("log out trace stdout\n"), "{history}");
}

#[test]
fn the_shell_ends_at_end_of_input() {
    let broker = Broker::start_bare(&[], &config(r#"access = "none""#));
    let out = ctl_in(broker.dir.path(), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---- wrap-around and recovery --------------------------------------------------------------

#[test]
fn segments_wrap_around_and_the_dump_keeps_the_newest_events() {
    let settings = "[log]\nflush_ms = 10\nmax_bytes = 4096\nmax_files = 2\n\
                    classes = { access = \"none\" }\n";
    let broker = Broker::start_bare(&[], settings);
    let n = 80;
    for i in 0..n {
        let c = raw_connected(&broker, &format!("w{i:03}"));
        raw_disconnect(c);
    }
    let last = format!("disconnected client=w{:03} ", n - 1);
    let online = ctl_dump_until(&broker, "access", &last);
    let access = list(&broker)["access"].clone();
    assert!(access.overwritten > 0, "{access:?}");
    assert!(access.files <= 2, "{access:?}");
    let files = segments(&broker.log_dir(), "access");
    assert!(!files.is_empty() && files.len() <= 2, "{files:?}");
    assert!(segment_bytes(&broker.log_dir(), "access") <= 2 * 4096);

    let offline = offline_dump(&["--dir", broker.log_dir().to_str().unwrap(), "access"]);
    assert_eq!(offline, online);
    assert!(offline.contains(&last), "the newest events are kept");
    assert!(
        !offline.contains("connected client=w000 "),
        "the oldest are gone"
    );
    // What is left is a run of the newest: every id from the first kept one to the last.
    let ids: Vec<u32> = offline
        .lines()
        .filter(|l| l.contains(" connected client=w"))
        .map(|l| field(l, "client").unwrap()[1..].parse().unwrap())
        .collect();
    let first = ids[0];
    assert_eq!(ids, (first..n).collect::<Vec<u32>>());
    assert!(
        (ids.len() as u64) * 3 <= access.events,
        "kept fewer than written"
    );
}

#[test]
fn a_torn_tail_after_kill_9_is_skipped_and_reported() {
    let data = tempfile::tempdir().expect("temp dir");
    let settings = config(r#"access = "none", warning = "stdout""#);
    let broker = Broker::start_bare_in(data.path(), &[], &settings);
    let c = raw_connected(&broker, "t1");
    raw_disconnect(c);
    let before = ctl_dump_until(&broker, "access", "disconnected client=t1 ");
    broker.kill9();

    let log_dir = log_dir_in(data.path());
    let newest = segments(&log_dir, "access").pop().expect("a segment file");
    let size = std::fs::metadata(&newest).unwrap().len();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&newest)
        .unwrap();
    f.write_all(&[0xff; 37]).unwrap();
    drop(f);

    let broker = Broker::start_bare_in(data.path(), &[], &settings);
    let warning = wait_log(&broker, "log segment tail was torn or corrupt");
    assert_line_shape(&warning, "warning");
    assert_eq!(field(&warning, "class"), Some("access"), "{warning}");
    assert_eq!(field(&warning, "skipped_bytes"), Some("37"), "{warning}");
    assert_eq!(
        field(&warning, "kept_bytes"),
        Some(size.to_string().as_str())
    );
    assert_eq!(std::fs::metadata(&newest).unwrap().len(), size, "truncated");

    let c = raw_connected(&broker, "t2");
    raw_disconnect(c);
    let after = ctl_dump_until(&broker, "access", "disconnected client=t2 ");
    assert!(after.starts_with(&before), "earlier events kept:\n{after}");
    let out = Command::new(env!("CARGO_BIN_EXE_fubar"))
        .args(["log", "dump", "--dir", log_dir.to_str().unwrap(), "access"])
        .output()
        .expect("fubar log dump");
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), after);
    assert!(out.stderr.is_empty(), "nothing corrupt left");
}

/// Under a flood the `protocol` class records what its writer can and counts the rest: once
/// `log list` has let the writer catch up, every packet event is written or counted dropped.
#[test]
fn every_protocol_event_is_written_or_counted_as_dropped() {
    const SENT: usize = 20_000;
    let broker = Broker::start_with(
        &[],
        "[log]\nclasses = { protocol = \"proto\" }\nchannel_capacity = 64\nmax_events_per_sec = 2000\n",
    );
    let mut raw = raw_connected(&broker, "flooder");
    raw.send(&crate::common::qos0_burst("flood/t", SENT));
    raw_disconnect(raw);
    let list = ctl_ok(&broker, &["log", "list"]);
    let line = list
        .lines()
        .find(|l| l.starts_with("protocol"))
        .expect("protocol line");
    // class open redirect files bytes events overwritten dropped
    let cols: Vec<&str> = line.split_whitespace().collect();
    let written: u64 = cols[5].parse().expect("events");
    let dropped: u64 = cols[7].parse().expect("dropped");
    // CONNECT and DISCONNECT in, CONNACK out, and the PUBLISH packets in.
    assert_eq!(written + dropped, SENT as u64 + 3, "{line}");
    assert!(
        dropped > 0,
        "the flood outran a 2,000 events/s writer: {line}"
    );
}
