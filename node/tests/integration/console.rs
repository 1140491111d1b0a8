//! The monitor's web console in a real browser (headless Chromium driven by Selenium, as
//! `scripts/test.sh` installs it) against a real monitor and two broker nodes: sign in with
//! the URL `fubar console url` prints, search, the histogram, a device's timeline with a
//! takeover from n1 to n2, the trace button, a live tail, the cluster page, bad input, and
//! markup in a client id and a topic shown as text. Screenshots go to `target/console-*.png`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::{connect_v311, eventually, frame, fubar, string, Broker, DataDir, RawClient};

const WAIT: Duration = Duration::from_secs(30);
const MONITOR: &str = "monitor@localhost";
/// A client id and a topic made of markup: the pages must show them as text.
const MARKUP: &str = "<script>window.pwned=1</script>";

/// A monitor with its console and two nodes, sharing one data dir (one cookie).
struct Cluster {
    dir: tempfile::TempDir,
}

impl Cluster {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = fubar();
        cmd.args(args).arg("--data-dir").arg(self.dir.path()).args([
            "--bind",
            "127.0.0.1",
            "--cluster-port",
            "0",
        ]);
        cmd
    }

    /// The monitor (no MQTT) with its console; returns it, its cluster port and console URL.
    fn monitor(&self) -> (Broker, u16, String) {
        let mut cmd = self.command(&["monitor", "--no-mqtt", "--name", MONITOR]);
        cmd.args(["--console-port", "0", "--log-stdout", "access"]);
        let m = Broker::spawn(
            cmd,
            DataDir::Shared(self.dir.path().to_owned()),
            "ready (no MQTT",
        );
        let port = m.collecting_port();
        let line = m.wait_for_log("console on http://", WAIT).unwrap();
        let url = line.rsplit("console on ").next().unwrap().trim().to_owned();
        (m, port, url)
    }

    fn node(&self, name: &str, port: u16) -> Broker {
        let node = format!("{name}@localhost");
        let master = format!("{MONITOR}:{port}");
        let mut cmd = self.command(&["node", "--name", &node, "--master", &master]);
        cmd.args(["--mqtt-port", "0"]);
        Broker::spawn_serving(cmd, DataDir::Shared(self.dir.path().to_owned()))
    }

    fn fubar(&self, args: &[&str]) -> Output {
        fubar()
            .args(args)
            .args(["--node", MONITOR, "--data-dir"])
            .arg(self.dir.path())
            .output()
            .expect("run fubar")
    }

    /// Waits until `fubar search QUERY` prints `n` lines containing every one of `needles`.
    fn wait_found(&self, query: &str, needles: &[&str], n: usize) {
        eventually(&format!("{n} lines with {needles:?}"), WAIT, || {
            let out = self.fubar(&["search", query]);
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            let found = text
                .lines()
                .filter(|l| needles.iter().all(|s| l.contains(s)))
                .count();
            if found >= n {
                Ok(())
            } else {
                Err(text)
            }
        });
    }
}

/// Why the browser test cannot run here, if it cannot (scripts/test.sh installs all of it).
fn browser_missing() -> Option<String> {
    for (program, args) in [
        ("chromium", &["--version"][..]),
        ("chromedriver", &["--version"][..]),
        ("python3", &["-c", "import selenium"][..]),
        ("mosquitto_pub", &["--help"][..]),
    ] {
        let ok = Command::new(program)
            .args(args)
            .output()
            .is_ok_and(|o| program == "mosquitto_pub" || o.status.success());
        if !ok {
            return Some(format!("{program} (scripts/test.sh installs it)"));
        }
    }
    None
}

/// `target/`, where the screenshots go.
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_fubar"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_owned()
}

/// A client `id` that connects to `broker`, publishes `topic` if given, and stays connected.
fn client(broker: &Broker, id: &str, topic: Option<&str>) -> RawClient {
    let mut c = RawClient::connect(broker.addr);
    c.send(&connect_v311(id));
    c.read_packet(WAIT).expect("CONNACK");
    if let Some(topic) = topic {
        let mut body = string(topic);
        body.extend_from_slice(b"markup");
        c.send(&frame(0x30, &body));
    }
    c
}

#[test]
fn the_console_in_a_browser_searches_follows_a_device_and_tails_live() {
    if let Some(why) = browser_missing() {
        eprintln!("skipped: the console's browser test needs {why}");
        return;
    }
    let cluster = Cluster {
        dir: crate::common::cluster_dir(""),
    };
    let (monitor, port, console) = cluster.monitor();
    let n1 = cluster.node("n1", port);
    let n2 = cluster.node("n2", port);
    // dev-1 on n1, then on n2: n2 takes the session over from n1.
    let _first = client(&n1, "dev-1", None);
    cluster.wait_found("client:dev-1", &["n1@localhost", "connected"], 1);
    let _second = client(&n2, "dev-1", None);
    cluster.wait_found("client:dev-1", &["n1@localhost", "disconnected"], 1);
    cluster.wait_found("client:dev-1", &["n2@localhost", "connected"], 1);
    // Markup as a client id and a topic.
    let _markup = client(&n1, MARKUP, Some(MARKUP));
    cluster.wait_found("", &["connected", "<script>"], 1);

    // A wrong token is refused, and said in an `access` event.
    let wrong = format!("{console}/sign-in?token=0123");
    let out = cluster.fubar(&["console", "url"]);
    assert!(out.status.success(), "{out:?}");
    let url = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        url.starts_with(&format!("{console}/sign-in?token=")),
        "{url}"
    );

    let shots = target_dir();
    let script = cluster.dir.path().join("console_browser.py");
    std::fs::write(&script, include_str!("console_browser.py")).unwrap();
    let out = Command::new("python3")
        .arg(&script)
        .args([
            &console,
            &url,
            &wrong,
            shots.to_str().unwrap(),
            &n1.port().to_string(),
            MARKUP,
            env!("CARGO_BIN_EXE_fubar"),
            cluster.dir.path().to_str().unwrap(),
        ])
        .output()
        .expect("run python3");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && text.lines().any(|l| l == "ok"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if let Some(line) = text.lines().find(|l| l.starts_with("publish to tail row")) {
        eprintln!("{line}");
    }
    for page in ["search", "timeline", "tail", "trace", "cluster"] {
        let shot = shots.join(format!("console-{page}.png"));
        assert!(shot.exists(), "no screenshot at {}", shot.display());
    }
    // The refused sign-ins (a wrong token, a reused one) are `access` events on the monitor.
    let refused = monitor
        .wait_for_log_count("console sign-in refused", 2, WAIT)
        .expect("two refused sign-ins in the monitor's access class");
    assert!(refused.contains("unknown or used token"), "{refused}");
    assert!(monitor
        .log_lines()
        .iter()
        .any(|l| l.contains("console signed in")));
    assert!(monitor
        .log_lines()
        .iter()
        .any(|l| l.contains("console request refused") && l.contains("bad CSRF token")));
}

#[test]
fn with_console_tls_the_console_is_https_and_its_cookie_secure() {
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("skipped: needs curl");
        return;
    }
    let cluster = Cluster {
        dir: crate::common::cluster_dir("[console]\ntls = true\n"),
    };
    let mut cmd = cluster.command(&["monitor", "--no-mqtt", "--name", MONITOR]);
    cmd.args(["--console-port", "0", "--log-stdout", "access"])
        .arg("--config")
        .arg(cluster.dir.path().join("cluster.toml"));
    let monitor = Broker::spawn(
        cmd,
        DataDir::Shared(cluster.dir.path().to_owned()),
        "ready (no MQTT",
    );
    let line = monitor.wait_for_log("console on ", WAIT).unwrap();
    assert!(line.contains("console on https://"), "{line}");
    let out = cluster.fubar(&["console", "url"]);
    let url = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let curl = |url: &str| {
        let out = Command::new("curl")
            .args(["-sk", "-i", "--max-time", "20", url])
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let answer = curl(&url);
    assert!(answer.starts_with("HTTP/1.1 303"), "{answer}");
    let cookie = answer
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .expect("a session cookie");
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("; Secure"),
        "{cookie}"
    );
    // Plain HTTP on the same port gets no page.
    let plain = curl(&url.replacen("https://", "http://", 1));
    assert!(!plain.contains("HTTP/1.1 303"), "{plain}");
    drop(monitor);
}
