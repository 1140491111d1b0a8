//! A network partition: three members, two in one network namespace and one in another,
//! joined by a veth pair the test creates, cuts and mends (and removes). Needs root (or
//! CAP_NET_ADMIN); where namespaces cannot be made the test says so and passes.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::common::{
    cluster_dir, cluster_figure, eventually, poll_until, spawn_member, Broker, Proc,
};

pub(crate) const WAIT: Duration = Duration::from_secs(40);
const BIN: &str = env!("CARGO_BIN_EXE_fubar");

/// Two namespaces and the veth pair between them, removed on drop.
pub(crate) struct Net {
    a: String,
    b: String,
    /// The first three octets of the pair's /24.
    prefix: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Net {
    pub(crate) fn create() -> Result<Self, String> {
        let id = std::process::id();
        let net = Self {
            a: format!("fubar-a-{id}"),
            b: format!("fubar-b-{id}"),
            prefix: format!("10.213.{}", id % 250),
        };
        ip(&["netns", "add", &net.a])?;
        ip(&["netns", "add", &net.b])?;
        let (va, vb) = (format!("fa{}", id % 100_000), format!("fb{}", id % 100_000));
        ip(&[
            "link", "add", &va, "netns", &net.a, "type", "veth", "peer", "name", &vb, "netns",
            &net.b,
        ])?;
        for (ns, dev, host) in [(&net.a, &va, 1), (&net.b, &vb, 2)] {
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            let addr = format!("{}.{host}/24", net.prefix);
            ip(&["-n", ns, "addr", "add", &addr, "dev", dev])?;
        }
        Ok(net)
    }

    pub(crate) fn host(&self, side: u8) -> String {
        format!("{}.{side}", self.prefix)
    }

    fn veth_a(&self) -> String {
        format!("fa{}", std::process::id() % 100_000)
    }

    /// Cuts the link: side b is alone.
    pub(crate) fn cut(&self) {
        ip(&["-n", &self.a, "link", "set", &self.veth_a(), "down"]).expect("cut");
    }

    /// Mends it.
    pub(crate) fn heal(&self) {
        ip(&["-n", &self.a, "link", "set", &self.veth_a(), "up"]).expect("heal");
    }

    pub(crate) fn exec(&self, side: u8) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", if side == 1 { &self.a } else { &self.b }]);
        cmd
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.a]);
        let _ = ip(&["netns", "del", &self.b]);
    }
}

pub(crate) struct Member {
    pub(crate) broker: Broker,
    pub(crate) name: String,
    pub(crate) cluster_port: u16,
    pub(crate) side: u8,
}

pub(crate) fn start(net: &Net, dir: &Path, side: u8, name: &str, master: &str) -> Member {
    let host = net.host(side);
    let node = format!("{name}@{host}");
    let mut cmd = net.exec(side);
    cmd.arg(BIN)
        .args(["node", "--name", &node, "--master", master, "--data-dir"])
        .arg(dir)
        .arg("--config")
        .arg(dir.join("cluster.toml"))
        .args(["--bind", &host, "--mqtt-port", "0", "--cluster-port", "0"])
        .args(["--log-stdout", "warning,info,resource"]);
    let (broker, cluster_port) = spawn_member(cmd, dir, WAIT);
    Member {
        broker,
        name: node,
        cluster_port,
        side,
    }
}

/// n1 and n2 on side 1 (the majority), n3 alone on side 2; returns once all three vote.
pub(crate) fn three_across(net: &Net, dir: &Path) -> (Member, Member, Member) {
    let n1 = start(net, dir, 1, "n1", &format!("n1@{}", net.host(1)));
    let master = format!("{}:{}", n1.name, n1.cluster_port);
    let n2 = start(net, dir, 1, "n2", &master);
    let n3 = start(net, dir, 2, "n3", &master);
    wait_status(dir, &n1.name, "three voters", |s| {
        s.lines().filter(|l| l.contains(" voter ")).count() == 3
    });
    (n1, n2, n3)
}

fn ctl(dir: &Path, node: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["ctl", "--node", node, "--data-dir"])
        .arg(dir)
        .args(args)
        .output()
        .expect("fubar ctl")
}

fn status(dir: &Path, node: &str) -> String {
    String::from_utf8_lossy(&ctl(dir, node, &["cluster", "status"]).stdout).into_owned()
}

pub(crate) fn wait_status(
    dir: &Path,
    node: &str,
    what: &str,
    pred: impl Fn(&str) -> bool,
) -> String {
    eventually(&format!("{node}: {what}"), WAIT, || {
        let s = status(dir, node);
        if pred(&s) {
            Ok(s)
        } else {
            Err(s)
        }
    })
}

/// `mosquitto_sub` on `m`'s side, printing the first message on `topic`, up to `secs` s.
fn subscribe(net: &Net, m: &Member, topic: &str, secs: u32) -> Proc {
    let mut cmd = net.exec(m.side);
    cmd.args(["mosquitto_sub", "-h", &m.broker.addr.ip().to_string()])
        .args(["-p", &m.broker.port().to_string(), "-t", topic, "-q", "1"])
        .args([
            "-C",
            "1",
            "-W",
            &secs.to_string(),
            "-i",
            &format!("sub-{}", m.name),
        ])
        .stdout(Stdio::piped());
    Proc::spawn(&mut cmd)
}

pub(crate) fn publish(net: &Net, m: &Member, topic: &str, message: &str) {
    let out = net
        .exec(m.side)
        .args(["mosquitto_pub", "-h", &m.broker.addr.ip().to_string()])
        .args([
            "-p",
            &m.broker.port().to_string(),
            "-t",
            topic,
            "-m",
            message,
            "-q",
            "1",
        ])
        .output()
        .expect("mosquitto_pub");
    assert!(out.status.success(), "mosquitto_pub: {out:?}");
}

/// Publishes until the subscriber has its message (routes settle through Raft); returns
/// what it printed.
fn deliver(net: &Net, from: &Member, mut sub: Proc, topic: &str, message: &str) -> String {
    let child = sub.0.as_mut().expect("a running subscriber");
    eventually(
        &format!("{message:?} to reach the subscriber"),
        WAIT,
        || {
            publish(net, from, topic, message);
            // -C 1: it exits once it has its message.
            poll_until(Duration::from_millis(300), || {
                child.try_wait().expect("try_wait").is_some()
            })
            .is_ok()
        },
    );
    String::from_utf8_lossy(&sub.output().stdout).into_owned()
}

fn mosquitto_present() -> bool {
    Command::new("mosquitto_pub")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// The namespaces for a partition test, or `None` (the test says why and passes) where the
/// mosquitto clients are missing or namespaces cannot be made.
pub(crate) fn net_or_skip() -> Option<Net> {
    if !mosquitto_present() {
        eprintln!("skipped: mosquitto_pub/mosquitto_sub are not installed");
        return None;
    }
    match Net::create() {
        Ok(n) => Some(n),
        Err(e) => {
            eprintln!("skipped: this machine does not allow network namespaces here: {e}");
            None
        }
    }
}

#[test]
fn a_partitioned_minority_serves_its_clients_takes_no_writes_and_heals_by_itself() {
    let Some(net) = net_or_skip() else { return };
    let tmp = cluster_dir("");
    let dir = tmp.path();

    let (n1, n2, n3) = three_across(&net, dir);
    // A route from the minority-to-be, so that dropping it shows.
    let probe = subscribe(&net, &n3, "p/#", 60);
    wait_status(dir, &n1.name, "n3's route", |s| {
        cluster_figure(s, "routes") >= 1
    });

    net.cut();
    // The majority notices, drops n3's routes and clients, and keeps taking writes.
    wait_status(dir, &n1.name, "n3 down and its route dropped", |s| {
        s.lines()
            .any(|l| l.starts_with(&n3.name) && l.contains("down"))
            && cluster_figure(s, "routes") == 0
    });
    let out = ctl(dir, &n2.name, &["account", "update", "dave", "pw"]);
    assert!(out.status.success(), "the majority takes writes: {out:?}");
    // The minority serves its own clients and local routes...
    let local = deliver(
        &net,
        &n3,
        subscribe(&net, &n3, "local/#", 20),
        "local/x",
        "here",
    );
    assert!(
        local.contains("here"),
        "n3 delivers locally while cut off: {local:?}"
    );
    // ...and takes no cluster-state writes.
    let out = ctl(dir, &n3.name, &["account", "update", "erin", "pw"]);
    assert!(
        !out.status.success(),
        "the minority refuses writes: {out:?}"
    );

    net.heal();
    // It heals without manual steps: n3 catches up and its route is back.
    let list = eventually("n3 to catch up", WAIT, || {
        let list =
            String::from_utf8_lossy(&ctl(dir, &n3.name, &["account", "list"]).stdout).into_owned();
        if list.contains("dave") {
            Ok(list)
        } else {
            Err(list)
        }
    });
    assert!(
        !list.contains("erin"),
        "the refused write never happened: {list}"
    );
    wait_status(dir, &n1.name, "n3's route back", |s| {
        cluster_figure(s, "routes") >= 1
    });
    let got = deliver(&net, &n1, probe, "p/after", "healed");
    assert!(
        got.contains("healed"),
        "n1 reaches n3's subscriber again: {got:?}"
    );
    drop((n1, n2, n3));
}
