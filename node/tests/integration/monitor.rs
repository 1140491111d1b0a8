//! The monitor and its nodes as separate processes on loopback: shipping, search, a monitor
//! killed and restarted, a torn segment, and peers that are not members.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::{connect_v311, eventually, fubar, poll_until, Broker, DataDir, RawClient};

const WAIT: Duration = Duration::from_secs(30);
const MONITOR: &str = "monitor@localhost";

/// A data dir shared by a monitor and its nodes (one cookie), with the cluster's TLS files.
struct Cluster {
    dir: tempfile::TempDir,
}

impl Cluster {
    fn new() -> Self {
        Self {
            dir: crate::common::cluster_dir(""),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = fubar();
        cmd.args(args)
            .arg("--data-dir")
            .arg(self.path())
            .arg("--config")
            .arg(self.path().join("cluster.toml"));
        cmd
    }

    /// The monitor, without MQTT, on `port` (0: a free one); returns it with its port.
    fn monitor(&self, port: u16) -> (Broker, u16) {
        let mut cmd = self.command(&["monitor", "--no-mqtt", "--name", MONITOR]);
        cmd.args(["--bind", "127.0.0.1", "--cluster-port", &port.to_string()])
            .args(["--log-stdout", "warning,info"]);
        let m = Broker::spawn(
            cmd,
            DataDir::Shared(self.path().to_owned()),
            "ready (no MQTT",
        );
        let port = m.collecting_port();
        (m, port)
    }

    /// A broker node `name@localhost` shipping to the monitor on `port`.
    fn node(&self, name: &str, port: u16, extra: &[&str]) -> Broker {
        let node = format!("{name}@localhost");
        let master = format!("{MONITOR}:{port}");
        let mut cmd = self.command(&["node", "--name", &node, "--master", &master]);
        cmd.args([
            "--bind",
            "127.0.0.1",
            "--mqtt-port",
            "0",
            "--cluster-port",
            "0",
        ])
        .args(extra);
        Broker::spawn_serving(cmd, DataDir::Shared(self.path().to_owned()))
    }

    fn search(&self, query: &str, extra: &[&str]) -> Output {
        fubar()
            .args(["search", "--node", MONITOR, "--data-dir"])
            .arg(self.path())
            .arg(query)
            .args(extra)
            .output()
            .expect("fubar search")
    }

    /// Waits until `fubar search QUERY` prints a line containing `needle`.
    fn wait_found(&self, query: &str, needle: &str) -> String {
        poll_until(WAIT, || {
            let out = self.search(query, &[]);
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            if text.lines().any(|l| l.contains(needle)) {
                Ok(text)
            } else {
                Err(text)
            }
        })
        .unwrap_or_else(|text| {
            let links = fubar()
                .args(["ctl", "--node", MONITOR, "--data-dir"])
                .arg(self.path())
                .args(["log", "list"])
                .output()
                .expect("fubar ctl log list");
            panic!(
                "{needle:?} never found by {query:?}: {text}\nmonitor: {}",
                String::from_utf8_lossy(&links.stdout)
            )
        })
    }

    fn monitor_log_dir(&self) -> PathBuf {
        self.path().join(MONITOR).join("log")
    }
}

/// Connects `id` to `broker` and disconnects cleanly.
fn visit(broker: &Broker, id: &str) {
    let mut c = RawClient::connect(broker.addr);
    c.send(&connect_v311(id));
    c.read_packet(WAIT).expect("CONNACK");
    c.send(&[0xE0, 0x00]);
    let _ = c.closed_within(WAIT);
}

#[test]
fn mqtt_activity_on_two_nodes_is_found_by_search() {
    let cluster = Cluster::new();
    let (monitor, port) = cluster.monitor(0);
    let n1 = cluster.node("n1", port, &[]);
    let n2 = cluster.node("n2", port, &[]);
    visit(&n1, "alice");
    visit(&n2, "bob");
    let found = cluster.wait_found("client:alice AND class:access", "connected client=alice");
    assert!(found.lines().all(|l| l.contains("n1@localhost")), "{found}");
    let found = cluster.wait_found("client:bob", "disconnected client=bob");
    assert!(found
        .lines()
        .all(|l| l.contains("n2@localhost") && l.contains("client=bob")));
    // Newest first, and --limit holds.
    let out = cluster.search("client:bob", &["--limit", "1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains("disconnected") || text.contains("session ended"),
        "{text}"
    );
    // JSON lines for scripts.
    let out = cluster.search("client:alice", &["--json", "--class", "access"]);
    let first = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap()
        .to_owned();
    let v: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(
        (v["node"].as_str(), v["class"].as_str()),
        (Some("n1@localhost"), Some("access"))
    );
    // A bad query gets the parser's message and exit 1.
    let out = cluster.search("client:(", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bad query"),
        "{out:?}"
    );
    // The monitor lists both nodes' links.
    let out = fubar()
        .args(["ctl", "--node", MONITOR, "--data-dir"])
        .arg(cluster.path())
        .args(["log", "list"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("n1@localhost") && text.contains("n2@localhost"),
        "{text}"
    );
    // `protocol` is not shipped by default; `log collect` turns it on for every node, and
    // keeps it as a setting for the monitor's next start.
    let ctl = |args: &[&str]| {
        fubar()
            .args(["ctl", "--node", MONITOR, "--data-dir"])
            .arg(cluster.path())
            .args(args)
            .output()
            .unwrap()
    };
    let out = ctl(&["log", "collect", "protocol", "on"]);
    assert!(out.status.success(), "{out:?}");
    // The switch reaches the nodes over their links, after `log collect` returns: carol
    // visits again until a visit made after n2 turned the class on is found.
    poll_until(WAIT, || {
        visit(&n2, "carol");
        let out = cluster.search("class:protocol AND client:carol", &[]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if text.lines().any(|l| l.contains("kind=DISCONNECT")) {
            Ok(())
        } else {
            Err(text)
        }
    })
    .unwrap_or_else(|text| panic!("carol's DISCONNECT never in class protocol: {text}"));
    let out = ctl(&["settings"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("monitor.collect") && l.contains("protocol")),
        "{text}"
    );
    // The cluster's access class to the monitor's stdout, at once.
    let out = ctl(&["log", "out", "access", "stdout"]);
    assert!(out.status.success(), "{out:?}");
    visit(&n1, "dave");
    let line = monitor
        .wait_for_log("connected client=dave", WAIT)
        .expect("n1's access event on the monitor's stdout");
    assert!(
        line.starts_with("access") && line.contains("n1@localhost"),
        "{line}"
    );
}

/// (epoch, seq) → how many times the monitor has that event of `node`, from its index.
fn sequences(cluster: &Cluster, node: &str) -> BTreeMap<(u64, u64), usize> {
    let out = cluster.search(&format!("node:{node}"), &["--json", "--limit", "10000"]);
    assert!(out.status.success(), "{out:?}");
    let mut seen = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = (v["epoch"].as_u64().unwrap(), v["seq"].as_u64().unwrap());
        *seen.entry(key).or_insert(0) += 1;
    }
    seen
}

#[test]
fn a_monitor_killed_and_restarted_during_traffic_gets_every_event_once() {
    let cluster = Cluster::new();
    let (monitor, port) = cluster.monitor(0);
    let n1 = cluster.node("n1", port, &[]);
    for i in 0..20 {
        visit(&n1, &format!("before{i}"));
    }
    cluster.wait_found("client:before19", "disconnected client=before19");
    let _ = monitor.kill9();
    // The node keeps serving and spools while the monitor is away.
    for i in 0..20 {
        visit(&n1, &format!("away{i}"));
    }
    let (_monitor, _) = cluster.monitor(port);
    for i in 0..20 {
        visit(&n1, &format!("after{i}"));
    }
    cluster.wait_found("client:after19", "disconnected client=after19");
    cluster.wait_found("client:away19", "disconnected client=away19");
    let seen = sequences(&cluster, "n1@localhost");
    let dups: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "events written twice: {dups:?}");
    // Every number of the node's run is there: nothing lost either.
    let seqs: Vec<u64> = seen.keys().map(|(_, s)| *s).collect();
    let max = *seqs.iter().max().unwrap();
    assert_eq!(seqs.len() as u64, max, "gaps in 1..={max}");
    assert!(seen
        .keys()
        .all(|(e, _)| *e == seen.keys().next().unwrap().0));
}

#[test]
fn a_torn_segment_after_kill_9_is_skipped_reported_and_searching_goes_on() {
    let cluster = Cluster::new();
    let (monitor, port) = cluster.monitor(0);
    let n1 = cluster.node("n1", port, &[]);
    visit(&n1, "first");
    cluster.wait_found("client:first", "disconnected client=first");
    let _ = monitor.kill9();
    // Garbage after the last record of the newest access segment: a torn write.
    let access = cluster.monitor_log_dir().join("access");
    let newest = std::fs::read_dir(&access)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .max()
        .expect("an access segment");
    let mut bytes = std::fs::read(&newest).unwrap();
    bytes.extend_from_slice(&[0x00, 0x00, 0x01, 0x00, 0xde, 0xad, 0xbe, 0xef, 0x17]);
    std::fs::write(&newest, bytes).unwrap();
    let (monitor, _) = cluster.monitor(port);
    // The class's segments are repaired when it is next written.
    visit(&n1, "second");
    monitor
        .wait_for_log("torn", WAIT)
        .expect("the torn tail is reported as a warning");
    cluster.wait_found("client:second", "disconnected client=second");
    cluster.wait_found("client:first", "connected client=first");
    // A rebuilt index finds the same (monitor stopped).
    let _ = monitor.stop();
    let out = fubar()
        .args(["log", "reindex", "--node", MONITOR, "--data-dir"])
        .arg(cluster.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let (_monitor, _) = cluster.monitor(port);
    cluster.wait_found("client:second", "connected client=second");
}

#[test]
fn a_node_without_the_cookie_is_refused_and_garbage_harms_no_link() {
    let cluster = Cluster::new();
    let (monitor, port) = cluster.monitor(0);
    let n1 = cluster.node("n1", port, &[]);
    let other = cluster.path().join("other-cookie");
    std::fs::write(&other, "a different secret, long enough").unwrap();
    let mut perms = std::fs::metadata(&other).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
    std::fs::set_permissions(&other, perms).unwrap();
    let intruder = cluster.node(
        "intruder",
        port,
        &["--cookie-file", other.to_str().unwrap()],
    );
    // The intruder gives the monitor up when it cannot prove the intruder's cookie, before
    // saying its name: the monitor warns about a connection that proved nothing.
    monitor
        .wait_for_log("connection refused", WAIT)
        .filter(|l| l.starts_with("warning"))
        .expect("the refusal is a warning on the monitor");
    // Datagrams that are not QUIC, to the monitor's port.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..200u32 {
        let junk: Vec<u8> = (0..(i % 1200 + 1)).map(|b| (b * 31 + i) as u8).collect();
        let _ = udp.send_to(&junk, ("127.0.0.1", port));
    }
    visit(&intruder, "sneaky");
    visit(&n1, "honest");
    cluster.wait_found("client:honest", "disconnected client=honest");
    let out = cluster.search("node:intruder@localhost", &[]);
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_node_started_before_its_monitor_spools_from_boot_and_ships_when_it_comes() {
    let cluster = Cluster::new();
    // A UDP port nothing listens on yet.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let n1 = cluster.node("n1", port, &[]);
    visit(&n1, "early");
    let (_monitor, _) = cluster.monitor(port);
    cluster.wait_found("client:early", "disconnected client=early");
}

/// A directory standing for another machine: only a copy of the cluster's cookie (0600), no
/// node of its own.
fn remote_machine(cluster: &Cluster, cookie: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cookie");
    match cookie {
        Some(secret) => std::fs::write(&path, secret).unwrap(),
        None => {
            std::fs::copy(cluster.path().join("cookie"), &path).unwrap();
        }
    }
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
    std::fs::set_permissions(&path, perms).unwrap();
    dir
}

/// `fubar COMMAND --node monitor@localhost:PORT ... ARGS` from the other machine's directory.
fn remote(dir: &Path, port: u16, args: &[&str]) -> Output {
    let node = format!("{MONITOR}:{port}");
    fubar()
        .arg(args[0])
        .args(["--node", &node, "--data-dir"])
        .arg(dir)
        .args(&args[1..])
        .output()
        .expect("fubar")
}

#[test]
fn ctl_and_search_reach_the_monitor_over_its_cluster_port() {
    let cluster = Cluster::new();
    let (monitor, port) = cluster.monitor(0);
    let n1 = cluster.node("n1", port, &[]);
    visit(&n1, "faraway");
    cluster.wait_found("client:faraway", "disconnected client=faraway");
    let other = remote_machine(&cluster, None);
    let out = remote(other.path(), port, &["ctl", "status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.contains(MONITOR) && text.contains("cluster://"),
        "{text}"
    );
    let out = remote(other.path(), port, &["ctl", "log", "list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.contains("access") && text.contains("n1@localhost"),
        "{text}"
    );
    let out = remote(other.path(), port, &["search", "client:faraway"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(text.contains("connected client=faraway"), "{text}");
    // The admin link did not take any node's place: n1 still ships.
    visit(&n1, "after-admin");
    cluster.wait_found("client:after-admin", "disconnected client=after-admin");
    // A remote tail sees new events, then ends when its client is killed.
    let node = format!("{MONITOR}:{port}");
    let mut tail = fubar()
        .args(["log", "tail", "--node", &node, "--data-dir"])
        .arg(other.path())
        .arg("client:tailed")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = tail.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + WAIT;
    let mut seen = false;
    while !seen && Instant::now() < deadline {
        visit(&n1, "tailed");
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
            if line.contains("client=tailed") {
                seen = true;
                break;
            }
        }
    }
    let _ = tail.kill();
    let _ = tail.wait();
    assert!(seen, "the remote tail showed no event of client tailed");
    drop(monitor);
}

#[test]
fn ctl_with_a_wrong_cookie_is_refused_over_the_cluster_port() {
    let cluster = Cluster::new();
    let (monitor, port) = cluster.monitor(0);
    let other = remote_machine(&cluster, Some("not this cluster's secret at all"));
    let out = remote(other.path(), port, &["ctl", "status"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a member"), "{err}");
    assert!(out.stdout.is_empty(), "{out:?}");
    // ctl gives the monitor up before it says who it is (the monitor did not prove ctl's
    // cookie): the monitor warns about a connection that proved nothing.
    monitor
        .wait_for_log("connection refused", WAIT)
        .filter(|l| l.starts_with("warning"))
        .expect("the refusal is a warning on the monitor");
    let out = remote(other.path(), port, &["search", ""]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

/// Every file under `dir` (recursively).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn the_packet_class_never_holds_a_password_on_the_node_in_a_daily_file_or_on_the_monitor() {
    const PASSWORD: &str = "Zq7-s3cret-Pw";
    let cluster = Cluster::new();
    let (_monitor, port) = cluster.monitor(0);
    let n1 = cluster.node("n1", port, &[]);
    let ctl = |node: &str, args: &[&str]| {
        let out = fubar()
            .args(["ctl", "--node", node, "--data-dir"])
            .arg(cluster.path())
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    ctl(MONITOR, &["log", "collect", "packet", "on"]);
    // `packet` open on n1, to a daily text file.
    ctl("n1@localhost", &["log", "out", "packet", "daily-packets"]);
    // A 3.1.1 CONNECT with a user name and the password, then a clean DISCONNECT; again until
    // the monitor has it (n1 learns that `packet` is collected through the cluster's settings).
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0xC2, 0, 30];
    for field in ["pwclient", "alice", PASSWORD] {
        body.extend_from_slice(&(field.len() as u16).to_be_bytes());
        body.extend_from_slice(field.as_bytes());
    }
    let mut connect = vec![0x10];
    connect.extend(crate::common::varint(body.len()));
    connect.extend(body);
    // The CONNECT's packet event reaches the monitor's index: its user name is there in hex,
    // its password is not (neither as text nor as hex).
    let user_hex = "616c696365";
    let found = eventually("the CONNECT to reach the monitor", WAIT, || {
        let mut c = RawClient::connect(n1.addr);
        c.send(&connect);
        c.read_packet(WAIT).expect("CONNACK");
        c.send(&[0xE0, 0x00]);
        let _ = c.closed_within(WAIT);
        let out = cluster.search("class:packet", &[]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if text.contains(user_hex) {
            Ok(text)
        } else {
            Err(text)
        }
    });
    // An MQTT 5.0 CONNECT with authentication data (a property) and a password: whatever the
    // node answers (it offers no enhanced authentication), neither reaches a log.
    const AUTH_DATA: &str = "Ad9-s3cret-Data";
    let mut props = vec![0x15, 0, 7];
    props.extend_from_slice(b"SCRAM-X");
    props.extend_from_slice(&[0x16, 0, AUTH_DATA.len() as u8]);
    props.extend_from_slice(AUTH_DATA.as_bytes());
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 5, 0xC2, 0, 30];
    body.extend(crate::common::varint(props.len()));
    body.extend(props);
    for field in ["pwclient5", "bobby", PASSWORD] {
        body.extend_from_slice(&(field.len() as u16).to_be_bytes());
        body.extend_from_slice(field.as_bytes());
    }
    let mut connect5 = vec![0x10];
    connect5.extend(crate::common::varint(body.len()));
    connect5.extend(body);
    let mut c = RawClient::connect(n1.addr);
    c.send(&connect5);
    let _ = c.read_packet(WAIT);
    let _ = c.closed_within(WAIT);
    let found5 = cluster.wait_found("class:packet", "626f626279");
    let hex = |s: &str| -> String { s.bytes().map(|b| format!("{b:02x}")).collect() };
    let password_hex = hex(PASSWORD);
    let secret_hex = &password_hex[..12]; // 6 bytes of it are enough to give it away
    let auth_hex = hex(AUTH_DATA);
    let auth_secret_hex = &auth_hex[..12];
    for text in [&found, &found5] {
        for needle in [PASSWORD, secret_hex, AUTH_DATA, auth_secret_hex] {
            assert!(!text.contains(needle), "{needle} in {text}");
        }
        assert!(text.contains("redacted=true"), "{text}");
    }
    // Nowhere on disk either: the node's and the monitor's segments, the daily text file, the
    // index and the spool. Byte search over every file of the shared data folder.
    let files = files_under(cluster.path());
    assert!(
        files.iter().any(|p| p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("daily-packets"))),
        "no daily file in {files:?}"
    );
    for file in &files {
        let bytes = std::fs::read(file).unwrap_or_default();
        for needle in [
            PASSWORD.as_bytes(),
            secret_hex.as_bytes(),
            AUTH_DATA.as_bytes(),
            auth_secret_hex.as_bytes(),
        ] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{} holds the password",
                file.display()
            );
        }
        #[cfg(unix)]
        if file.to_string_lossy().contains("/log/") {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode & 0o077, 0, "{} is {mode:o}", file.display());
        }
    }
}

#[test]
fn the_monitor_serves_its_ingest_and_index_figures_over_http() {
    let cluster = Cluster::new();
    let mut cmd = cluster.command(&["monitor", "--no-mqtt", "--name", MONITOR]);
    cmd.args([
        "--bind",
        "127.0.0.1",
        "--cluster-port",
        "0",
        "--http-port",
        "0",
    ])
    .args(["--log-stdout", "warning,info"]);
    let monitor = Broker::spawn(
        cmd,
        DataDir::Shared(cluster.path().to_owned()),
        "ready (no MQTT",
    );
    let port = monitor.collecting_port();
    let http = monitor.http();
    let n1 = cluster.node("n1", port, &[]);
    visit(&n1, "alice");
    crate::common::wait_metrics(http, "n1's events ingested and indexed", |text| {
        let ingested = crate::common::metric(
            text,
            "fubar_monitor_ingested_events_total{node=\"n1@localhost\"}",
        );
        let indexed = crate::common::metric(text, "fubar_monitor_index_documents");
        ingested.is_some_and(|n| n > 0.0) && indexed.is_some_and(|n| n > 0.0)
    });
    assert_eq!(crate::common::http_get(http, "/readyz").0, 200);
}
