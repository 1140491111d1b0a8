//! What the tests share: starting and stopping a real broker (and cluster members, client
//! processes) and reading what it logs; raw MQTT bytes (`raw`), an HTTP client (`http`) and
//! waiting on state that announces no event (`wait`).

#![allow(
    dead_code,
    unreachable_pub,
    reason = "a test-only module; not every test uses every helper"
)]

use parking_lot::{Condvar, Mutex};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod http;
mod raw;
mod wait;

pub use http::{http_get, metric, wait_metrics};
pub use raw::{
    connect_packet, connect_v311, encode, frame, qos0_burst, read_frame, string, varint, RawClient,
};
pub use wait::{eventually, exit_within, poll_until};

/// Every log class, so tests can wait for the events they expect.
const ALL_CLASSES: &str = "access,protocol,resource,warning,error,info,trace";

/// The node name every test broker runs under.
pub const NODE_NAME: &str = "test@localhost";

/// A broker's data directory: its own temporary one (removed on drop), or one the test owns
/// so that a second broker can start on the same state.
pub enum DataDir {
    /// Created for this broker, removed on drop.
    Owned(tempfile::TempDir),
    /// Given by the test (`Broker::start_in`).
    Shared(PathBuf),
}

impl DataDir {
    /// The directory.
    pub fn path(&self) -> &Path {
        match self {
            Self::Owned(t) => t.path(),
            Self::Shared(p) => p,
        }
    }
}

/// A `fubar node` process on 127.0.0.1 with a free port and its own data dir.
pub struct Broker {
    child: Option<Child>,
    /// The MQTT listener's address.
    pub addr: SocketAddr,
    /// The MQTT over TLS listener's address, when the node has one (`--mqtts-port 0`).
    pub tls_addr: Option<SocketAddr>,
    /// The data directory.
    pub dir: DataDir,
    lines: Arc<(Mutex<Vec<String>>, Condvar)>,
}

impl Broker {
    /// A broker on its defaults (plus a free port).
    pub fn start() -> Self {
        Self::start_with(&[], "")
    }

    /// A broker with extra flags and a settings file holding `config` (TOML) if non-empty.
    pub fn start_with(args: &[&str], config: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_on(DataDir::Owned(dir), true, args, config)
    }

    /// A broker on the data dir `dir` (kept after the broker ends), so that a broker started
    /// again on it finds the state the previous one left.
    pub fn start_in(dir: &Path, args: &[&str], config: &str) -> Self {
        Self::start_on(DataDir::Shared(dir.to_owned()), true, args, config)
    }

    /// Like `start_with`, without `--log-stdout`: only the settings (`[log] classes` in
    /// `config`, or the defaults) decide which classes are open and where they go.
    pub fn start_bare(args: &[&str], config: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_on(DataDir::Owned(dir), false, args, config)
    }

    /// Like `start_in`, without `--log-stdout`.
    pub fn start_bare_in(dir: &Path, args: &[&str], config: &str) -> Self {
        Self::start_on(DataDir::Shared(dir.to_owned()), false, args, config)
    }

    fn start_on(dir: DataDir, log_stdout: bool, args: &[&str], config: &str) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fubar"));
        cmd.arg("node")
            .args([
                "--bind",
                "127.0.0.1",
                "--mqtt-port",
                "0",
                "--name",
                NODE_NAME,
            ])
            .arg("--data-dir")
            .arg(dir.path());
        if log_stdout {
            cmd.args(["--log-stdout", ALL_CLASSES]);
        }
        cmd.args(args);
        if !config.is_empty() {
            let path = dir.path().join("fubar.toml");
            std::fs::write(&path, config).expect("write config");
            cmd.arg("--config").arg(path);
        }
        let mut broker = Self::spawn(cmd, dir, "listening on mqtt://");
        let line = broker
            .wait_for_log("listening on mqtt://", Duration::from_secs(20))
            .expect("broker did not start listening");
        let addr = line.rsplit("mqtt://").next().unwrap().trim();
        broker.addr = addr.parse().expect("listen address");
        // The TLS listener's line comes before the plain one.
        broker.tls_addr = broker
            .log_lines()
            .iter()
            .find_map(|l| l.split_once("listening on mqtts://"))
            .map(|(_, a)| a.trim().parse().expect("TLS listen address"));
        broker
    }

    /// Spawns `cmd` (a `fubar` process on `dir`), collects its stdout lines, and waits for a
    /// line containing `ready`.
    pub fn spawn(cmd: Command, dir: DataDir, ready: &str) -> Self {
        Self::spawn_capturing(cmd, dir, ready, false)
    }

    /// [`Broker::spawn`], collecting its stderr lines too (prefixed `stderr: `) when `stderr`.
    pub fn spawn_capturing(mut cmd: Command, dir: DataDir, ready: &str, stderr: bool) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(if stderr {
                Stdio::piped()
            } else {
                Stdio::inherit()
            })
            .spawn()
            .expect("spawn fubar");
        let stdout = child.stdout.take().expect("stdout");
        let lines = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let (store, cv) = &*sink;
                store.lock().push(unquote(&line));
                cv.notify_all();
            }
        });
        if let Some(err) = child.stderr.take() {
            let sink = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    let (store, cv) = &*sink;
                    store.lock().push(format!("stderr: {line}"));
                    cv.notify_all();
                }
            });
        }
        let broker = Self {
            child: Some(child),
            addr: "127.0.0.1:0".parse().unwrap(),
            tls_addr: None,
            dir,
            lines,
        };
        broker
            .wait_for_log(ready, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("fubar never printed {ready:?}"));
        broker
    }

    /// The MQTT over TLS listener's address; fails the test if the node has none.
    pub fn tls(&self) -> SocketAddr {
        self.tls_addr.expect("this broker has no TLS listener")
    }

    /// The node's log directory (the default one: `<data dir>/<node name>/log`).
    pub fn log_dir(&self) -> PathBuf {
        log_dir_in(self.dir.path())
    }

    /// The MQTT port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every stdout line so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.lines.0.lock().clone()
    }

    /// Waits until a stdout line contains `needle`; returns it.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> Option<String> {
        self.wait_for_log_count(needle, 1, timeout)
    }

    /// Waits until `n` stdout lines contain `needle`; returns the last one.
    pub fn wait_for_log_count(&self, needle: &str, n: usize, timeout: Duration) -> Option<String> {
        self.wait_for_lines(|l| l.contains(needle), n, timeout)
    }

    /// Waits for a stdout line containing every one of `needles`; returns it, or fails the
    /// test showing the log's tail.
    pub fn expect_line(&self, needles: &[&str], timeout: Duration) -> String {
        self.wait_for_line(|l| needles.iter().all(|n| l.contains(n)), timeout)
            .unwrap_or_else(|| {
                let lines = self.log_lines();
                let tail = lines[lines.len().saturating_sub(40)..].join("\n");
                panic!("no log line containing all of {needles:?}; log tail:\n{tail}")
            })
    }

    /// Waits until a stdout line satisfies `matches`; returns it.
    pub fn wait_for_line(
        &self,
        matches: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Option<String> {
        self.wait_for_lines(matches, 1, timeout)
    }

    /// Waits until `n` stdout lines satisfy `matches` (woken by each new line, not polled);
    /// returns the last one.
    pub fn wait_for_lines(
        &self,
        matches: impl Fn(&str) -> bool,
        n: usize,
        timeout: Duration,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let (store, cv) = &*self.lines;
        let mut lines = store.lock();
        // Only lines not seen yet are scanned at each wake-up: a flood of log lines must not
        // make waiting quadratic.
        let (mut scanned, mut count) = (0, 0);
        loop {
            for line in &lines[scanned..] {
                if matches(line) {
                    count += 1;
                    if count == n {
                        return Some(line.clone());
                    }
                }
            }
            scanned = lines.len();
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            cv.wait_for(&mut lines, deadline - now);
        }
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn stop(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        child.wait().expect("wait")
    }

    /// Sends SIGKILL (`kill -9`: no chance to flush anything) and waits for the process.
    pub fn kill9(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        child.kill().expect("SIGKILL");
        child.wait().expect("wait")
    }

    /// Waits for the process to exit by itself (`fubar ctl stop`, say).
    pub fn wait_exit(mut self) -> ExitStatus {
        self.child.take().expect("running").wait().expect("wait")
    }

    /// The broker's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Runs `fubar ctl ARGS` against this broker.
    pub fn ctl(&self, args: &[&str]) -> Output {
        ctl_in(self.dir.path(), args)
    }
}

/// Runs `fubar ctl ARGS` against `broker`, checks it succeeded; returns its stdout.
pub fn ctl_ok(broker: &Broker, args: &[&str]) -> String {
    let out = broker.ctl(args);
    assert!(
        out.status.success(),
        "fubar ctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// A number after `name ` in a `fubar ctl cluster status` header (`routes 3  clients 2`);
/// 0 when absent.
pub fn cluster_figure(status: &str, name: &str) -> u64 {
    status
        .split_whitespace()
        .skip_while(|w| *w != name)
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The line of member `name` in a `fubar ctl cluster status` (after the header).
pub fn member_line<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status.lines().find(|l| l.starts_with(name))
}

/// The default log directory of the test node on the data dir `dir`.
pub fn log_dir_in(dir: &Path) -> PathBuf {
    dir.join(NODE_NAME).join("log")
}

/// Runs `fubar ctl --data-dir DIR --name test@localhost ARGS` to its end.
pub fn ctl_in(dir: &Path, args: &[&str]) -> Output {
    ctl_command(dir, args).output().expect("run fubar ctl")
}

/// The command `fubar ctl --data-dir DIR --name test@localhost ARGS`, stdin closed.
pub fn ctl_command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fubar"));
    cmd.arg("ctl")
        .arg("--data-dir")
        .arg(dir)
        .args(["--name", NODE_NAME])
        .args(args)
        .stdin(Stdio::null());
    cmd
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A log line with its quoted field values unquoted (`reason="taken over"` becomes
/// `reason=taken over`), so tests match on what a field says, not on how it is quoted.
pub fn unquote(line: &str) -> String {
    let mut out = line.replace("=\"", "=").replace("\" ", " ");
    if out.ends_with('"') {
        out.pop();
    }
    out
}

/// A client process that is killed if the test ends early.
pub struct Proc(pub Option<Child>);

impl Proc {
    /// Spawns `cmd` with its output captured.
    pub fn spawn(cmd: &mut Command) -> Self {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        Self(Some(child))
    }

    /// Waits for the process to exit on its own and returns what it printed.
    pub fn output(mut self) -> Output {
        self.0.take().unwrap().wait_with_output().expect("wait")
    }

    /// SIGKILL, as a crashing client would end.
    pub fn kill(mut self) -> Output {
        let mut child = self.0.take().unwrap();
        // It may have exited already; what it printed is still wanted.
        let _ = child.kill();
        child.wait_with_output().expect("wait")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A data dir for a cluster's members (one cookie; each node makes its own cluster TLS
/// identity on first start) and `cluster.toml` holding `extra` settings (TOML).
pub fn cluster_dir(extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("cluster.toml"), extra).expect("write config");
    dir
}

/// Spawns a cluster member (`cmd`, on the shared data dir `dir`) and waits until it serves
/// MQTT; returns it with its cluster (QUIC) port.
pub fn spawn_member(cmd: Command, dir: &Path, timeout: Duration) -> (Broker, u16) {
    let mut broker = Broker::spawn(cmd, DataDir::Shared(dir.to_owned()), "listening on mqtt://");
    let line = broker
        .wait_for_log("listening on mqtt://", timeout)
        .unwrap();
    broker.addr = line
        .rsplit("mqtt://")
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let line = broker
        .wait_for_log("cluster port on cluster://", timeout)
        .unwrap();
    let port = line.rsplit(':').next().unwrap().trim().parse().unwrap();
    (broker, port)
}

/// Runs a paho-mqtt (2.x, Python) script against `broker` (its port, then `args`, on the
/// command line) and returns the lines it printed; fails the test if it fails.
pub fn run_paho(broker: &Broker, name: &str, script: &str, args: &[&str]) -> Vec<String> {
    let check = Command::new("python3")
        .args(["-c", "import paho.mqtt.client, paho.mqtt.enums"])
        .output()
        .expect("python3");
    assert!(
        check.status.success(),
        "paho-mqtt 2.x is needed (scripts/test.sh installs it)"
    );
    let path = broker.dir.path().join(name);
    std::fs::write(&path, script).unwrap();
    let out = Command::new("python3")
        .arg(&path)
        .arg(broker.port().to_string())
        .args(args)
        .output()
        .expect("run python3");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines().map(str::to_owned).collect()
}

/// The `fubar` binary under test, with stdin closed (a test that feeds it sets its own).
pub fn fubar() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fubar"));
    cmd.stdin(Stdio::null());
    cmd
}

/// The broker's stdout so far, as one text (for assertion messages).
pub fn log_of(broker: &Broker) -> String {
    broker.log_lines().join("\n")
}

impl Broker {
    /// Spawns a cluster member serving MQTT and returns it once it listens, with `addr` read
    /// from its `listening on mqtt://` line.
    pub fn spawn_serving(cmd: Command, dir: DataDir) -> Self {
        let mut b = Self::spawn(cmd, dir, "listening on mqtt://");
        let line = b
            .wait_for_log("listening on mqtt://", Duration::from_secs(30))
            .expect("an MQTT listener");
        b.addr = line
            .rsplit("mqtt://")
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        b
    }

    /// A monitor's cluster port, from its `collecting on cluster://` line.
    pub fn collecting_port(&self) -> u16 {
        let line = self
            .wait_for_log("collecting on cluster://", Duration::from_secs(30))
            .expect("the monitor's cluster address");
        line.rsplit(':').next().unwrap().trim().parse().unwrap()
    }

    /// The HTTP endpoint's address (a node started with `--http-port 0`).
    pub fn http(&self) -> SocketAddr {
        let line = self
            .wait_for_log("http on http://", Duration::from_secs(20))
            .expect("this node has no HTTP endpoint");
        line.rsplit("http://")
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

/// Tests that flood the machine (thousands of handshakes, a socket written as fast as it
/// goes) take this exclusively; multi-node tests, whose members must answer `ctl` within its
/// timeout on two shared cores, take it shared, so the two never run at once.
static MACHINE: parking_lot::RwLock<()> = parking_lot::RwLock::new(());

/// Held by a test that floods the machine.
pub fn flooding() -> parking_lot::RwLockWriteGuard<'static, ()> {
    MACHINE.write()
}

/// Held by a multi-node test while its members run.
pub fn beside_floods() -> parking_lot::RwLockReadGuard<'static, ()> {
    MACHINE.read()
}
