//! The cluster: real `fubar` processes on loopback joining through a master, routing across
//! nodes, replicated state, takeover across nodes, and members that die or leave.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use rumqttc::QoS;

use crate::common::{
    cluster_dir, cluster_figure, eventually, fubar, member_line, spawn_member, Broker, DataDir,
};
use crate::conformance::support::{options, Mqtt};

const WAIT: Duration = Duration::from_secs(30);

/// A data dir shared by every member (one cookie), with the cluster's TLS files.
pub(crate) struct Cluster {
    dir: tempfile::TempDir,
    /// Never beside a test that floods the machine (see `common::flooding`).
    _not_flooded: parking_lot::RwLockReadGuard<'static, ()>,
}

/// A running member: its process, name and cluster port.
pub(crate) struct Member {
    pub(crate) broker: Broker,
    pub(crate) name: String,
    pub(crate) cluster_port: u16,
}

impl Cluster {
    pub(crate) fn new() -> Self {
        Self::with_settings("")
    }

    /// A cluster whose members all get these extra settings (TOML).
    pub(crate) fn with_settings(extra: &str) -> Self {
        Self {
            _not_flooded: crate::common::beside_floods(),
            dir: cluster_dir(extra),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A broker `NAME@localhost` joining through `master` (its own name founds a cluster).
    pub(crate) fn start(&self, name: &str, master: &str, extra: &[&str]) -> Member {
        let node = format!("{name}@localhost");
        let mut cmd = fubar();
        cmd.args(["node", "--name", &node, "--master", master])
            .arg("--data-dir")
            .arg(self.path())
            .arg("--config")
            .arg(self.path().join("cluster.toml"))
            .args(["--bind", "127.0.0.1", "--mqtt-port", "0"])
            .args(["--log-stdout", "warning,info,resource"])
            .args(extra);
        if !extra.contains(&"--cluster-port") {
            cmd.args(["--cluster-port", "0"]);
        }
        let (broker, cluster_port) = spawn_member(cmd, self.path(), WAIT);
        Member {
            broker,
            name: node,
            cluster_port,
        }
    }

    /// The first member, founding the cluster.
    pub(crate) fn found(&self, name: &str) -> Member {
        let m = self.start(name, &format!("{name}@localhost"), &[]);
        m.broker
            .wait_for_log("cluster founded", WAIT)
            .expect("the founder says it founded the cluster");
        m
    }

    /// A member joining through `master`, once it has joined.
    pub(crate) fn join(&self, name: &str, master: &Member) -> Member {
        let m = self.start(name, &master.address(), &[]);
        m.broker
            .wait_for_log("joined the cluster", WAIT)
            .expect("the new member joins");
        m
    }

    /// `fubar ctl --node NAME ARGS` on this cluster's data dir.
    pub(crate) fn ctl(&self, node: &str, args: &[&str]) -> Output {
        fubar()
            .args(["ctl", "--node", node, "--data-dir"])
            .arg(self.path())
            .args(args)
            .output()
            .expect("fubar ctl")
    }

    /// `ctl cluster status` of `node`, as text.
    pub(crate) fn status(&self, node: &str) -> String {
        let out = self.ctl(node, &["cluster", "status"]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Waits until `node`'s cluster status satisfies `pred`; returns it.
    pub(crate) fn wait_status(
        &self,
        node: &str,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        eventually(&format!("{node}: {what}"), WAIT, || {
            let s = self.status(node);
            if pred(&s) {
                Ok(s)
            } else {
                Err(s)
            }
        })
    }

    /// Waits until `node` has at least `n` routes in its table.
    pub(crate) fn wait_routes(&self, node: &str, n: u64) {
        self.wait_status(node, &format!("{n} routes"), |s| {
            cluster_figure(s, "routes") >= n
        });
    }
}

impl Member {
    /// `NAME@localhost:PORT`, as `--master` takes it.
    pub(crate) fn address(&self) -> String {
        format!("{}:{}", self.name, self.cluster_port)
    }
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn three(cluster: &Cluster) -> (Member, Member, Member) {
    let n1 = cluster.found("n1");
    let n2 = cluster.join("n2", &n1);
    let n3 = cluster.join("n3", &n1);
    cluster.wait_status("n1@localhost", "three voters", |s| {
        s.lines().filter(|l| l.contains(" voter ")).count() == 3
    });
    (n1, n2, n3)
}

#[test]
fn a_publish_on_one_node_reaches_every_matching_subscriber_on_every_node_once() {
    let cluster = Cluster::new();
    let (n1, n2, n3) = three(&cluster);
    // Overlapping filters of one client on n2: one copy, at the highest QoS.
    let mut s2 = Mqtt::connect(&n2.broker, "s2");
    s2.subscribe_many(&[("a/#", QoS::AtLeastOnce), ("a/+", QoS::AtMostOnce)]);
    let mut s3 = Mqtt::connect(&n3.broker, "s3");
    s3.subscribe("a/b", QoS::AtLeastOnce);
    // A local subscriber on the publisher's node too.
    let mut s1 = Mqtt::connect(&n1.broker, "s1");
    s1.subscribe("a/b", QoS::AtMostOnce);
    cluster.wait_routes("n1@localhost", 4);

    let mut p = Mqtt::connect(&n1.broker, "p");
    for i in 0..50u32 {
        p.publish_acked("a/b", QoS::AtLeastOnce, false, &i.to_be_bytes());
    }
    for sub in [&mut s2, &mut s3] {
        let got: Vec<Vec<u8>> = sub
            .publishes(50)
            .into_iter()
            .map(|p| p.payload.to_vec())
            .collect();
        let want: Vec<Vec<u8>> = (0..50u32).map(|i| i.to_be_bytes().to_vec()).collect();
        assert_eq!(got, want, "{}: every message once, in order", sub.id);
        assert!(
            sub.try_next_publish(Duration::from_millis(300)).is_none(),
            "{}: no duplicate",
            sub.id
        );
    }
    assert_eq!(s1.publishes(50).len(), 50);
    // QoS 0 across nodes as well.
    p.publish("a/c", QoS::AtMostOnce, false, b"zero");
    assert_eq!(&s2.next_publish().payload[..], b"zero");
}

#[test]
fn retained_messages_accounts_and_settings_changed_on_one_node_are_seen_on_all() {
    let cluster = Cluster::new();
    let (n1, n2, n3) = three(&cluster);
    let mut p = Mqtt::connect(&n2.broker, "p");
    p.publish_acked("state/door", QoS::AtLeastOnce, true, b"open");
    ok(&cluster.ctl("n1@localhost", &["account", "update", "alice", "secret"]));
    ok(&cluster.ctl(
        "n1@localhost",
        &["settings", "session.max_queued_messages", "777"],
    ));
    for node in [&n1, &n3] {
        let m = eventually(
            &format!("{}: the retained message", node.name),
            WAIT,
            || {
                let mut s = Mqtt::connect(&node.broker, "reader");
                s.subscribe("state/#", QoS::AtLeastOnce);
                s.try_next_publish(Duration::from_millis(500))
            },
        );
        assert_eq!(&m.payload[..], b"open");
        assert!(m.retain);
        let accounts = ok(&cluster.ctl(&node.name, &["account", "list"]));
        assert!(accounts.contains("alice"), "{}: {accounts}", node.name);
        let settings = ok(&cluster.ctl(&node.name, &["settings"]));
        assert!(
            settings.contains("session.max_queued_messages = 777"),
            "{}: {settings}",
            node.name
        );
    }
    // The replicated account logs in on another node (with authentication on).
    ok(&cluster.ctl("n3@localhost", &["settings", "auth.enabled", "true"]));
    let mut opts = options(&n2.broker, "alice-client");
    opts.set_credentials("alice", "secret");
    eventually("alice to log in on n2", WAIT, || {
        let mut c = Mqtt::connect_with(opts.clone());
        c.wait_error(Duration::from_millis(300)).is_none()
    });
    // Clearing the retained message on one node clears it everywhere.
    p.publish_acked("state/door", QoS::AtLeastOnce, true, b"");
    let mut reader = options(&n3.broker, "reader2");
    reader.set_credentials("alice", "secret");
    eventually("the retained message to be cleared on n3", WAIT, || {
        let mut s = Mqtt::connect_with(reader.clone());
        s.subscribe("state/#", QoS::AtLeastOnce);
        s.try_next_publish(Duration::from_millis(300)).is_none()
    });
}

#[test]
fn direct_messages_and_session_takeover_work_across_nodes() {
    let cluster = Cluster::new();
    let (n1, n2, _n3) = three(&cluster);
    let mut o = options(&n1.broker, "c1");
    o.set_clean_session(false);
    let mut c1 = Mqtt::connect_with(o);
    c1.subscribe("news", QoS::AtLeastOnce);
    cluster.wait_status("n2@localhost", "c1 registered", |s| {
        cluster_figure(s, "clients") >= 1
    });
    cluster.wait_routes("n2@localhost", 1);
    // A message to topic `c1` published on n2 reaches c1 on n1.
    let mut p = Mqtt::connect(&n2.broker, "p");
    p.publish_acked("c1", QoS::AtLeastOnce, false, b"direct");
    assert_eq!(&c1.next_publish().payload[..], b"direct");
    // c1 goes away; a message is queued for its persistent session on n1.
    drop(c1);
    eventually("n1 to see c1 leave", WAIT, || {
        let s = ok(&cluster.ctl("n1@localhost", &["status"]));
        if s.lines()
            .any(|l| l.split_whitespace().eq(["connections", "0"]))
        {
            Ok(())
        } else {
            Err(s)
        }
    });
    // The forwarded copy must be in c1's queue on n1 before c1 asks for its session. A
    // marker published after it goes the same ordered link n2 -> n1: once n1 has delivered
    // the marker, it has queued the message.
    let mut marker = Mqtt::connect(&n1.broker, "marker");
    marker.subscribe("marker", QoS::AtLeastOnce);
    cluster.wait_routes("n2@localhost", 2);
    p.publish_acked("news", QoS::AtLeastOnce, false, b"while away");
    p.publish_acked("marker", QoS::AtLeastOnce, false, b"after");
    assert_eq!(&marker.next_publish().payload[..], b"after");
    // c1 comes back on n2: its session (subscription and queued message) moved there.
    let mut o = options(&n2.broker, "c1");
    o.set_clean_session(false);
    let mut c1 = Mqtt::connect_with(o);
    assert_eq!(&c1.next_publish().payload[..], b"while away");
    assert!(
        n1.broker
            .wait_for_log("session taken over by another node", WAIT)
            .is_some(),
        "n1 gave the session up"
    );
    // Its subscription works on n2 now, for messages published on n1.
    cluster.wait_status("n1@localhost", "c1 held by n2", |s| {
        cluster_figure(s, "clients") >= 2
    });
    let mut q = Mqtt::connect(&n1.broker, "q");
    let m = crate::common::poll_until(WAIT, || {
        q.publish_acked("news", QoS::AtLeastOnce, false, b"later");
        c1.try_next_publish(Duration::from_millis(500))
    })
    .unwrap_or_else(|_| {
        for (name, b) in [("n1", &n1.broker), ("n2", &n2.broker), ("n3", &_n3.broker)] {
            eprintln!("{name}:\n{}", b.log_lines().join("\n"));
        }
        panic!("news never reached c1 on n2");
    });
    assert_eq!(&m.payload[..], b"later");
}

#[test]
fn a_node_that_has_just_joined_takes_a_persistent_session_over_with_its_queue() {
    let cluster = Cluster::new();
    let n1 = cluster.found("n1");
    let n2 = cluster.join("n2", &n1);
    // c1's persistent session is on n2, with a message queued while it is away.
    let mut o = options(&n2.broker, "c1");
    o.set_clean_session(false);
    let mut c1 = Mqtt::connect_with(o);
    c1.subscribe("news", QoS::AtLeastOnce);
    drop(c1);
    let mut p = Mqtt::connect(&n2.broker, "p");
    p.publish_acked("news", QoS::AtLeastOnce, false, b"while away");
    // n3 joins through n1 (so it learns n1 at once, n2 only from the membership) and c1
    // connects there straight away: n3 must ask n2 for the session, not start it afresh.
    let n3 = cluster.join("n3", &n1);
    cluster.wait_status("n3@localhost", "c1 and p registered", |s| {
        cluster_figure(s, "clients") >= 2
    });
    let mut o = options(&n3.broker, "c1");
    o.set_clean_session(false);
    let mut c1 = Mqtt::connect_with(o);
    assert_eq!(&c1.next_publish().payload[..], b"while away");
    assert!(
        n2.broker
            .wait_for_log("session taken over by another node", WAIT)
            .is_some_and(|l| l.contains("moved=true")),
        "n2 handed the session over"
    );
}

#[test]
fn a_connection_on_another_node_closes_the_first_one() {
    let cluster = Cluster::new();
    let (n1, n2, _n3) = three(&cluster);
    let mut first = Mqtt::connect(&n1.broker, "twin");
    cluster.wait_status("n2@localhost", "twin registered", |s| {
        cluster_figure(s, "clients") >= 1
    });
    let _second = Mqtt::connect(&n2.broker, "twin");
    assert!(
        first.wait_error(WAIT).is_some(),
        "the connection on n1 is closed when the client connects to n2"
    );
}

#[test]
fn kill_9_of_a_member_leaves_the_others_serving_and_drops_its_routes() {
    let cluster = Cluster::new();
    let (n1, n2, n3) = three(&cluster);
    let mut s3 = Mqtt::connect(&n3.broker, "s3");
    s3.subscribe("t", QoS::AtLeastOnce);
    let mut s2 = Mqtt::connect(&n2.broker, "s2");
    s2.subscribe("t", QoS::AtLeastOnce);
    cluster.wait_routes("n1@localhost", 2);
    n3.broker.kill9();
    // The others drop the dead member's routes and keep serving.
    cluster.wait_status("n1@localhost", "n3 down and its route dropped", |s| {
        member_line(s, "n3@localhost").is_some_and(|l| l.contains("down"))
            && cluster_figure(s, "routes") == 1
    });
    let mut p = Mqtt::connect(&n1.broker, "p");
    p.publish_acked("t", QoS::AtLeastOnce, false, b"after");
    assert_eq!(&s2.next_publish().payload[..], b"after");
    // Cluster state can still be written (two voters of three are a majority).
    ok(&cluster.ctl("n2@localhost", &["account", "update", "bob", "pw"]));
    // The dead member restarts, rejoins and catches up.
    let n3 = cluster.start("n3", &n1.address(), &[]);
    cluster.wait_status("n1@localhost", "n3 back", |s| {
        member_line(s, "n3@localhost").is_some_and(|l| l.contains(" up "))
    });
    eventually("n3 to catch up with the account", WAIT, || {
        ok(&cluster.ctl("n3@localhost", &["account", "list"])).contains("bob")
    });
    let mut s3 = Mqtt::connect(&n3.broker, "s3");
    s3.subscribe("t", QoS::AtLeastOnce);
    cluster.wait_routes("n1@localhost", 2);
    p.publish_acked("t", QoS::AtLeastOnce, false, b"back");
    assert_eq!(&s3.next_publish().payload[..], b"back");
}

#[test]
fn leave_takes_a_member_out_cleanly() {
    let cluster = Cluster::new();
    let (_n1, n2, n3) = three(&cluster);
    ok(&cluster.ctl("n3@localhost", &["cluster", "leave"]));
    let s = cluster.wait_status("n2@localhost", "two members", |s| {
        member_line(s, "n3@localhost").is_none()
    });
    assert!(member_line(&s, "n1@localhost").is_some(), "{s}");
    drop(n3);
    // The two left still commit changes.
    ok(&cluster.ctl("n2@localhost", &["account", "update", "carol", "pw"]));
    drop(n2);
}

#[test]
fn a_process_without_the_cookie_cannot_join() {
    let cluster = Cluster::new();
    let n1 = cluster.found("n1");
    let other = cluster.path().join("other-cookie");
    std::fs::write(&other, "not the cluster's cookie").unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let intruder = cluster.start(
        "intruder",
        &n1.address(),
        &["--cookie-file", other.to_str().unwrap()],
    );
    n1.broker
        .wait_for_log("refused", WAIT)
        .expect("the founder logs the refusal as a warning");
    assert!(
        intruder
            .broker
            .wait_for_log("joined the cluster", Duration::from_secs(2))
            .is_none(),
        "the intruder never joins"
    );
    let s = cluster.status("n1@localhost");
    assert!(member_line(&s, "intruder@localhost").is_none(), "{s}");
}

#[test]
fn acknowledged_messages_survive_a_dropped_link_between_nodes() {
    // Members are not declared dead during the restart below: the link drops and returns.
    let cluster = Cluster::with_settings("[cluster]\nnode_down_ms = 120000\n");
    let n1 = cluster.found("n1");
    let n2 = cluster.join("n2", &n1);
    let port = n2.cluster_port.to_string();
    let mut o = options(&n2.broker, "keeper");
    o.set_clean_session(false);
    let mut s2 = Mqtt::connect_with(o);
    s2.subscribe("q/#", QoS::AtLeastOnce);
    cluster.wait_routes("n1@localhost", 1);
    drop(s2);
    let mut p = Mqtt::connect(&n1.broker, "p");
    for i in 0..100u32 {
        p.publish_acked("q/x", QoS::AtLeastOnce, false, &i.to_be_bytes());
    }
    // n2 goes down and comes back on the same cluster port: the link to it drops, and the
    // messages acknowledged to the publisher meanwhile wait on n1.
    assert!(n2.broker.stop().success());
    for i in 100..200u32 {
        p.publish_acked("q/x", QoS::AtLeastOnce, false, &i.to_be_bytes());
    }
    let n2 = cluster.start("n2", &n1.address(), &["--cluster-port", &port]);
    for i in 200..300u32 {
        p.publish_acked("q/x", QoS::AtLeastOnce, false, &i.to_be_bytes());
    }
    let mut o = options(&n2.broker, "keeper");
    o.set_clean_session(false);
    let mut s2 = Mqtt::connect_with(o);
    let mut seen = std::collections::BTreeSet::new();
    let mut last = None;
    while seen.len() < 300 {
        let m = s2
            .try_next_publish(WAIT)
            .unwrap_or_else(|| panic!("only {} of 300 messages arrived", seen.len()));
        let n = u32::from_be_bytes(m.payload[..4].try_into().unwrap());
        // Resent copies may repeat (QoS 1), but the order never goes back past a new one.
        if seen.insert(n) {
            assert!(last.is_none_or(|l| n > l), "{n} after {last:?}");
            last = Some(n);
        }
    }
}

#[test]
fn every_member_serves_remote_admin_and_ships_logs_to_the_monitor_whoever_its_master() {
    let cluster = Cluster::new();
    // The monitor founds the cluster; n2 joins through n1, a broker.
    let mut cmd = fubar();
    cmd.args(["monitor", "--name", "mon@localhost", "--data-dir"])
        .arg(cluster.path())
        .arg("--config")
        .arg(cluster.path().join("cluster.toml"))
        .args([
            "--bind",
            "127.0.0.1",
            "--mqtt-port",
            "0",
            "--cluster-port",
            "0",
        ])
        .args(["--log-stdout", "warning,info"]);
    let monitor = Broker::spawn(
        cmd,
        DataDir::Shared(cluster.path().to_owned()),
        "listening on mqtt://",
    );
    let line = monitor
        .wait_for_log("collecting on cluster://", WAIT)
        .unwrap();
    let mon = Member {
        broker: monitor,
        name: "mon@localhost".into(),
        cluster_port: line.rsplit(':').next().unwrap().trim().parse().unwrap(),
    };
    let n1 = cluster.join("n1", &mon);
    let n2 = cluster.join("n2", &n1);
    n2.broker
        .wait_for_log("shipping logs to the monitor", WAIT)
        .expect("n2 finds the monitor in the membership");
    let mut c = Mqtt::connect(&n2.broker, "far-client");
    c.subscribe("x", QoS::AtMostOnce);
    drop(c);
    eventually("n2's events to reach the monitor", WAIT, || {
        let out = fubar()
            .args(["search", "--node", "mon@localhost", "--data-dir"])
            .arg(cluster.path())
            .arg("client:far-client")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains("n2@localhost")
    });
    // From a machine holding only the cookie, `ctl --node` reaches a broker.
    let other = tempfile::tempdir().unwrap();
    let cookie = other.path().join("cookie");
    std::fs::copy(cluster.path().join("cookie"), &cookie).unwrap();
    let out = fubar()
        .args(["ctl", "--node", &n2.address(), "--data-dir"])
        .arg(other.path())
        .args(["cluster", "status"])
        .output()
        .unwrap();
    let text = ok(&out);
    assert!(text.contains("node n2@localhost"), "{text}");
    assert!(
        text.contains("mon@localhost") && text.contains("monitor"),
        "{text}"
    );
}

#[test]
fn a_restarted_member_withdraws_the_routes_of_clients_it_no_longer_has() {
    // The member is never declared dead here: only its own restart cleans up.
    let cluster = Cluster::with_settings("[cluster]\nnode_down_ms = 120000\n");
    let n1 = cluster.found("n1");
    let n2 = cluster.join("n2", &n1);
    let port = n2.cluster_port.to_string();
    let mut s = Mqtt::connect(&n2.broker, "short-lived");
    s.subscribe("stale/#", QoS::AtMostOnce);
    cluster.wait_routes("n1@localhost", 1);
    n2.broker.kill9();
    let n2 = cluster.start("n2", &n1.address(), &["--cluster-port", &port]);
    let withdrawn = crate::common::poll_until(WAIT, || {
        let s = cluster.status("n1@localhost");
        cluster_figure(&s, "routes") == 0 && cluster_figure(&s, "clients") == 0
    });
    if withdrawn.is_err() {
        for (name, b) in [("n1", &n1.broker), ("n2", &n2.broker)] {
            eprintln!("{name}:\n{}", b.log_lines().join("\n"));
        }
        panic!(
            "the stale route and client were not withdrawn:\n{}",
            cluster.status("n1@localhost")
        );
    }
}

#[test]
fn a_share_group_spread_over_nodes_gets_each_message_once() {
    let cluster = Cluster::new();
    let (n1, n2, n3) = three(&cluster);
    // 3.1.1 clients in one group, on two other nodes; an ordinary subscriber beside them.
    let mut a = Mqtt::connect(&n2.broker, "worker-a");
    a.subscribe("$share/workers/jobs/#", QoS::AtLeastOnce);
    let mut b = Mqtt::connect(&n3.broker, "worker-b");
    b.subscribe("$share/workers/jobs/#", QoS::AtLeastOnce);
    let mut all = Mqtt::connect(&n3.broker, "auditor");
    all.subscribe("jobs/#", QoS::AtLeastOnce);
    cluster.wait_routes("n1@localhost", 3);
    let mut p = Mqtt::connect(&n1.broker, "p");
    for i in 0..40u32 {
        p.publish_acked("jobs/x", QoS::AtLeastOnce, false, &i.to_be_bytes());
    }
    assert_eq!(
        all.publishes(40).len(),
        40,
        "the ordinary subscriber gets every message"
    );
    let mut got = Vec::new();
    for w in [&mut a, &mut b] {
        let mut mine = 0;
        while let Some(m) = w.try_next_publish(Duration::from_millis(700)) {
            got.push(u32::from_be_bytes(m.payload[..4].try_into().unwrap()));
            mine += 1;
        }
        assert!(mine > 0, "{} took no turn", w.id);
    }
    got.sort_unstable();
    assert_eq!(
        got,
        (0..40).collect::<Vec<_>>(),
        "each message to one member, once"
    );
}

#[test]
fn a_share_member_leaving_one_node_hands_its_unacknowledged_messages_to_another_node() {
    use crate::common::{connect_v311, RawClient};
    use fubar::mqtt::packet::Packet;
    let cluster = Cluster::new();
    let n1 = cluster.found("n1");
    let n2 = cluster.join("n2", &n1);
    let mut worker = Mqtt::connect(&n1.broker, "worker");
    worker.subscribe("$share/g/jobs", QoS::AtLeastOnce);
    // A member on n2 that takes its turns and never acknowledges them.
    let mut lazy = RawClient::connect(n2.broker.addr);
    lazy.send(&connect_v311("lazy"));
    assert!(matches!(lazy.read_packet(WAIT), Some(Packet::ConnAck(_))));
    let filter = b"$share/g/jobs";
    let mut subscribe = vec![
        0x82,
        (2 + 2 + filter.len() + 1) as u8,
        0,
        1,
        0,
        filter.len() as u8,
    ];
    subscribe.extend_from_slice(filter);
    subscribe.push(1);
    lazy.send(&subscribe);
    assert!(matches!(lazy.read_packet(WAIT), Some(Packet::SubAck(_))));
    cluster.wait_routes("n1@localhost", 2);
    let mut p = Mqtt::connect(&n1.broker, "boss");
    for i in 0..10u32 {
        p.publish_acked("jobs", QoS::AtLeastOnce, false, &i.to_be_bytes());
    }
    let mut in_flight = 0;
    while let Some(Packet::Publish(_)) = lazy.read_packet(Duration::from_secs(2)) {
        in_flight += 1;
    }
    assert!(in_flight > 0, "the member on n2 took no turn");
    drop(lazy);
    let mut got: Vec<u32> = worker
        .publishes(10)
        .iter()
        .map(|m| u32::from_be_bytes(m.payload[..4].try_into().unwrap()))
        .collect();
    got.sort_unstable();
    assert_eq!(
        got,
        (0..10).collect::<Vec<_>>(),
        "every job reaches the worker on n1"
    );
}
