//! The `fubar` binary itself: exit codes and stderr for bad starts, `--help`, SIGTERM with
//! clients connected, and the default data directory.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fubar::mqtt::packet::{ConnectReturnCode, Packet};

use crate::common::{connect_v311, exit_within, fubar, RawClient};

/// Upper bound for anything the binary should do promptly.
const T: Duration = Duration::from_secs(10);

/// Runs `cmd` to its exit; kills it and fails the test if it is still running after `T`
/// (a node that should have refused to start but serves instead).
fn run_to_exit(cmd: &mut Command) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fubar");
    exit_within(child, T).unwrap_or_else(|out| {
        panic!(
            "fubar still running after {T:?}; stdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn stderr_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn port_in_use_exits_1_with_one_line_naming_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = run_to_exit(
        fubar()
            .args(["node", "--bind", "127.0.0.1", "--name", "busy@localhost"])
            .args(["--mqtt-port", &addr.port().to_string()])
            .arg("--data-dir")
            .arg(dir.path()),
    );
    let lines = stderr_lines(&out);
    assert_eq!(out.status.code(), Some(1), "stderr: {lines:?}");
    assert_eq!(lines.len(), 1, "stderr: {lines:?}");
    assert!(lines[0].contains(&addr.to_string()), "{lines:?}");
    drop(taken);
}

#[test]
fn unknown_flag_exits_1_with_one_line() {
    let out = run_to_exit(fubar().args(["node", "--no-such-flag"]));
    let lines = stderr_lines(&out);
    assert_eq!(out.status.code(), Some(1), "stderr: {lines:?}");
    assert_eq!(lines.len(), 1, "stderr: {lines:?}");
    assert!(lines[0].contains("--no-such-flag"), "{lines:?}");
    assert!(out.stdout.is_empty());
}

#[test]
fn settings_file_with_unknown_key_exits_1_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fubar.toml");
    std::fs::write(&config, "[mqtt]\nno_such_key = 1\n").unwrap();
    let out = run_to_exit(
        fubar()
            .args(["node", "--bind", "127.0.0.1", "--mqtt-port", "0"])
            .arg("--data-dir")
            .arg(dir.path())
            .arg("--config")
            .arg(&config),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!(
            "fubar: invalid settings file {}",
            config.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("no_such_key"), "{stderr}");
    // The reason is said once, not repeated by the error chain.
    assert_eq!(stderr.matches("unknown field").count(), 1, "{stderr}");
    assert!(out.stdout.is_empty(), "the node must not have started");
}

#[test]
fn help_exits_0() {
    let out = run_to_exit(fubar().arg("--help"));
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("node"), "{stdout}");
    assert!(out.stderr.is_empty());

    let out = run_to_exit(fubar().args(["node", "--help"]));
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("--mqtt-port"), "{stdout}");
}

/// A running `fubar node` whose stdout lines arrive on a channel.
struct Node {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Node {
    fn spawn(cmd: &mut Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn fubar");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(crate::common::unquote(&line)).is_err() {
                    break;
                }
            }
        });
        Self {
            child: Some(child),
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a stdout line containing `needle`.
    fn wait_for(&mut self, needle: &str) -> String {
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        let deadline = Instant::now() + T;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no stdout line containing {needle:?}; stdout:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// The MQTT address from the "listening on" line.
    fn addr(&mut self) -> SocketAddr {
        let line = self.wait_for("listening on mqtt://");
        line.rsplit("mqtt://")
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// SIGTERM; waits for the exit and for the rest of stdout.
    fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success());
        let status = child.wait().expect("wait");
        // The reader thread ends at EOF, which closes the channel.
        while let Ok(line) = self.lines.recv_timeout(T) {
            self.seen.push(line);
        }
        status
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn sigterm_closes_clients_and_exits_successfully() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::spawn(
        fubar()
            .args(["node", "--bind", "127.0.0.1", "--mqtt-port", "0"])
            .args(["--name", "term@localhost", "--log-stdout", "access,info"])
            .arg("--data-dir")
            .arg(dir.path()),
    );
    let addr = node.addr();
    let mut clients: Vec<RawClient> = ["c1", "c2"]
        .iter()
        .map(|id| {
            let mut c = RawClient::connect(addr);
            c.send(&connect_v311(id));
            match c.read_packet(T) {
                Some(Packet::ConnAck(a)) => assert_eq!(a.code, ConnectReturnCode::Accepted),
                other => panic!("expected CONNACK, got {other:?}"),
            }
            node.wait_for(&format!(" connected client={id} "));
            c
        })
        .collect();

    let status = node.terminate();
    assert!(
        status.success(),
        "{status}; stdout:\n{}",
        node.seen.join("\n")
    );
    for c in &mut clients {
        assert!(c.closed_within(T), "a client's connection stayed open");
    }
    for id in ["c1", "c2"] {
        let line = node.wait_for(&format!(" disconnected client={id} "));
        assert!(line.contains("reason=server shutdown"), "{line}");
    }
    node.wait_for(" node stopped");
}

#[test]
fn default_data_dir_is_created_under_the_working_directory() {
    let cwd = tempfile::tempdir().unwrap();
    let mut node = Node::spawn(
        fubar()
            .args(["node", "--mqtt-port", "0", "--bind", "127.0.0.1"])
            .current_dir(cwd.path()),
    );
    let line = node.wait_for("listening on mqtt://");
    let name = line
        .strip_prefix("fubar node ")
        .and_then(|rest| rest.split(" listening on").next())
        .unwrap_or_else(|| panic!("unexpected start line {line:?}"));
    assert!(name.starts_with("fubar@"), "default node name {name:?}");
    let node_dir = cwd.path().join("data").join(name);
    assert!(
        node_dir.is_dir(),
        "{} missing; working directory holds {:?}",
        node_dir.display(),
        list(cwd.path())
    );
    let status = node.terminate();
    assert!(status.success(), "{status}");
}

#[test]
fn sigterm_as_soon_as_listening_is_graceful() {
    // Scripts stop a node as soon as it says it listens; the signal must not kill it.
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::spawn(
        fubar()
            .args(["node", "--bind", "127.0.0.1", "--mqtt-port", "0"])
            .args(["--name", "quick@localhost", "--log-stdout", "info"])
            .arg("--data-dir")
            .arg(dir.path()),
    );
    node.addr();
    let status = node.terminate();
    assert!(
        status.success(),
        "{status}; stdout:\n{}",
        node.seen.join("\n")
    );
    node.wait_for(" node stopped");
}

fn list(dir: &Path) -> Vec<String> {
    walk(dir, dir)
}

fn walk(root: &Path, dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        out.push(path.strip_prefix(root).unwrap().display().to_string());
        if path.is_dir() {
            out.extend(walk(root, &path));
        }
    }
    out
}
