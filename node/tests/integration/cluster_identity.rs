//! A cluster from the cookie alone: the monitor and a node started in empty folders, names
//! with ports, the mutual cookie proof (a node or a monitor of another cookie is refused),
//! what a certificate may stand for on the cluster port, and a flood of connections that
//! never prove anything.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::QoS;

use crate::common::{eventually, exit_within, fubar, spawn_member, Broker, DataDir};
use crate::conformance::support::Mqtt;

const WAIT: Duration = Duration::from_secs(30);

/// A UDP port free on loopback now (bound and released).
fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A TCP port free on loopback now.
fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `fubar ARGS` in `cwd`, stdout and stderr collected, ready once `ready` is printed.
fn start_in(cwd: &Path, args: &[&str], ready: &str) -> Broker {
    let mut cmd = fubar();
    cmd.current_dir(cwd).args(args);
    Broker::spawn_capturing(cmd, DataDir::Shared(cwd.join("data")), ready, true)
}

/// Copies the cookie of one machine's data folder to another's, as an operator would.
fn copy_cookie(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.join("data")).unwrap();
    std::fs::copy(from.join("data/cookie"), to.join("data/cookie")).unwrap();
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `fubar search QUERY --node NODE` run in `cwd`.
fn search(cwd: &Path, node: &str, query: &str) -> Output {
    fubar()
        .current_dir(cwd)
        .args(["search", "--node", node, query])
        .output()
        .unwrap()
}

#[test]
fn the_monitor_and_a_node_in_empty_folders_need_nothing_but_the_cookie() {
    let (mon_dir, n1_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (port, port2, mqtt) = (free_udp_port(), free_udp_port(), free_tcp_port());
    let monitor_name = format!("monitor@127.0.0.1:{port}");
    let monitor = start_in(
        mon_dir.path(),
        &["monitor", "--no-mqtt", "--name", &monitor_name],
        "ready (no MQTT",
    );
    // It made its cluster identity, said where, and keeps its key to itself.
    let made = monitor
        .wait_for_log("cluster TLS identity", WAIT)
        .expect("one info line says the identity was made");
    let identity = mon_dir.path().join("data/monitor@127.0.0.1/cluster-tls");
    assert!(
        made.contains(&identity.display().to_string()) || made.contains("cluster-tls"),
        "{made}"
    );
    let key = identity.join("node.key.pem");
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The cluster port is the one in the name.
    assert!(
        monitor
            .wait_for_log(&format!("collecting on cluster://0.0.0.0:{port}"), WAIT)
            .is_some(),
        "{:?}",
        monitor.log_lines()
    );
    // Another machine: the cookie is copied there, as Erlang's is.
    copy_cookie(mon_dir.path(), n1_dir.path());
    let n1_name = format!("n1@127.0.0.1:{port2}");
    let mqtt_port = mqtt.to_string();
    let mut n1 = start_in(
        n1_dir.path(),
        &[
            "node",
            "--name",
            &n1_name,
            "--master",
            &monitor_name,
            "--mqtt-port",
            &mqtt_port,
        ],
        "listening on mqtt://",
    );
    n1.addr = SocketAddr::from(([127, 0, 0, 1], mqtt));
    assert!(n1
        .log_lines()
        .iter()
        .any(|l| l.contains(&format!("cluster port on cluster://0.0.0.0:{port2}"))));
    // n1 has joined once the monitor lists it (no log class is on its terminal here).
    eventually("the monitor to list n1", WAIT, || {
        let out = fubar()
            .current_dir(mon_dir.path())
            .args(["ctl", "--node", &monitor_name, "cluster", "status"])
            .output()
            .unwrap();
        let s = text(&out);
        if s.contains("n1@127.0.0.1") {
            Ok(())
        } else {
            Err(s)
        }
    });
    let client = Mqtt::connect(&n1, "c1");
    let connected = Instant::now();
    eventually("search on the monitor to find c1's connect", WAIT, || {
        let t = text(&search(mon_dir.path(), &monitor_name, "client:c1"));
        if t.contains("n1@127.0.0.1") && t.contains("client=c1") {
            Ok(())
        } else {
            Err(t)
        }
    });
    let found = connected.elapsed();
    // The figure (issue 15: within 2 s) is reported, not asserted: a test on a loaded
    // 2-core machine must not fail on timing.
    eprintln!("a connect on n1 was found by search on the monitor after {found:?}");
    // From n1's machine too (the cookie, no CA): over the monitor's cluster port.
    let out = search(n1_dir.path(), &monitor_name, "client:c1");
    assert!(text(&out).contains("client=c1"), "{}", text(&out));
    drop(client);

    // A node with another cookie (a fresh folder makes its own) is refused, and says on
    // stderr that it is alone.
    let intruder_dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(intruder_dir.path().join("data")).unwrap();
    std::fs::write(
        intruder_dir.path().join("fubar.toml"),
        "[cluster]\njoin_warning_ms = 500\n",
    )
    .unwrap();
    let intruder = start_in(
        intruder_dir.path(),
        &[
            "node",
            "--config",
            "fubar.toml",
            "--name",
            &format!("intruder@127.0.0.1:{}", free_udp_port()),
            "--master",
            &monitor_name,
            "--mqtt-port",
            "0",
            "--log-stdout",
            "info,warning",
        ],
        "listening on mqtt://",
    );
    intruder
        .wait_for_log(
            "stderr: fubar: intruder@127.0.0.1 has not joined its cluster",
            WAIT,
        )
        .expect("the intruder says on stderr that it is alone");
    assert!(intruder
        .wait_for_log("joined the cluster", Duration::from_millis(500))
        .is_none());
    let status = fubar()
        .current_dir(mon_dir.path())
        .args(["ctl", "--node", &monitor_name, "cluster", "status"])
        .output()
        .unwrap();
    let status = text(&status);
    assert!(
        status.contains("n1@127.0.0.1") && !status.contains("intruder"),
        "{status}"
    );

    // A monitor with another cookie: n1's cookie does not open it, and n1's peer gives it up
    // before saying who it is.
    let other_dir = tempfile::tempdir().unwrap();
    let other_port = free_udp_port();
    let other_name = format!("monitor@127.0.0.1:{other_port}");
    let other = start_in(
        other_dir.path(),
        &["monitor", "--no-mqtt", "--name", &other_name],
        "ready (no MQTT",
    );
    let n2_dir = tempfile::tempdir().unwrap();
    copy_cookie(n1_dir.path(), n2_dir.path());
    std::fs::write(
        n2_dir.path().join("fubar.toml"),
        "[cluster]\njoin_warning_ms = 500\n",
    )
    .unwrap();
    let n2 = start_in(
        n2_dir.path(),
        &[
            "node",
            "--config",
            "fubar.toml",
            "--name",
            &format!("n2@127.0.0.1:{}", free_udp_port()),
            "--master",
            &other_name,
            "--mqtt-port",
            "0",
            "--log-stdout",
            "info,warning",
        ],
        "listening on mqtt://",
    );
    let line = n2
        .wait_for_log("stderr: fubar: n2@127.0.0.1 has not joined", WAIT)
        .expect("n2 stays alone");
    assert!(line.contains("did not prove the cluster cookie"), "{line}");
    assert!(n2
        .wait_for_log("shipping logs", Duration::from_millis(500))
        .is_none());
    let out = search(other_dir.path(), &other_name, "");
    assert!(!text(&out).contains("n2@127.0.0.1"), "{}", text(&out));
    drop((n2, other, intruder, n1, monitor));
}

#[test]
fn a_name_and_a_cluster_port_that_disagree_are_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = fubar()
        .current_dir(dir.path())
        .args([
            "node",
            "--name",
            "n1@127.0.0.1:5000",
            "--cluster-port",
            "6000",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("5000") && err.contains("6000"), "{err}");
}

/// A broker `NAME@127.0.0.1:PORT` of a brokers-only cluster on `dir` (one cookie).
fn ported(dir: &Path, name: &str, port: u16, master: &str) -> Broker {
    let mut cmd = fubar();
    cmd.args(["node", "--name", &format!("{name}@127.0.0.1:{port}")])
        .args(["--master", master, "--data-dir"])
        .arg(dir)
        .args(["--bind", "127.0.0.1", "--mqtt-port", "0"])
        .args(["--log-stdout", "warning,info"]);
    spawn_member(cmd, dir, WAIT).0
}

#[test]
fn a_brokers_only_cluster_with_ports_in_the_names_forms_and_routes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ports = [free_udp_port(), free_udp_port(), free_udp_port()];
    let master = format!("n1@127.0.0.1:{}", ports[0]);
    // As the README says: naming itself as master founds the cluster (the port included).
    let mut cmd = fubar();
    cmd.args([
        "node",
        "--name",
        &master,
        "--cluster-port",
        &ports[0].to_string(),
    ])
    .args(["--master", &master, "--data-dir"])
    .arg(dir)
    .args(["--bind", "127.0.0.1", "--mqtt-port", "0"])
    .args(["--log-stdout", "warning,info"]);
    let n1 = spawn_member(cmd, dir, WAIT).0;
    n1.wait_for_log("cluster founded", WAIT)
        .expect("n1 recognises itself as its master");
    let n2 = ported(dir, "n2", ports[1], &master);
    let n3 = ported(dir, "n3", ports[2], &master);
    for n in [&n2, &n3] {
        n.wait_for_log("joined the cluster", WAIT).expect("joins");
    }
    eventually("a three-voter cluster with a leader", WAIT, || {
        let out = fubar()
            .args(["ctl", "--node", &master, "--data-dir"])
            .arg(dir)
            .args(["cluster", "status"])
            .output()
            .unwrap();
        let s = text(&out);
        if s.lines().filter(|l| l.contains(" voter ")).count() == 3 && !s.contains("leader none") {
            Ok(())
        } else {
            Err(s)
        }
    });
    let mut sub = Mqtt::connect(&n3, "far");
    sub.subscribe("x/#", QoS::AtLeastOnce);
    let mut publisher = Mqtt::connect(&n1, "near");
    let p = eventually("a message to cross from n1 to n3", WAIT, || {
        publisher.publish_acked("x/y", QoS::AtLeastOnce, false, b"across");
        sub.try_next_publish(Duration::from_millis(300))
    });
    assert_eq!(&p.payload[..], b"across");
}

/// A cluster on the operator's own CA: `ca/` (node certificates of n1, n2 and an unknown
/// ghost, and a device certificate dev1), and `other/` (another CA's node certificate).
fn own_ca(dir: &Path) {
    let run = |args: &[&str]| {
        let out = fubar().current_dir(dir).args(args).output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
    };
    run(&[
        "ssl",
        "new-certs",
        "--dir",
        "ca",
        "--node",
        "n1@localhost",
        "--node",
        "n2@localhost",
        "--node",
        "ghost@localhost",
        "--client",
        "dev1",
    ]);
    run(&[
        "ssl",
        "new-certs",
        "--dir",
        "other",
        "--node",
        "n3@localhost",
    ]);
}

/// A node of the own-CA cluster with its certificate.
fn ca_member(dir: &Path, name: &str, master: &str) -> (Broker, u16) {
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            // Every refusal is a warning here (their rate limit has its own test).
            "[cluster]\ncafile = {:?}\nnode_certfile = {:?}\nnode_keyfile = {:?}\nrefusal_warning_ms = 1\n",
            dir.join("ca/cacert.pem"),
            dir.join(format!("ca/node-{name}@localhost.pem")),
            dir.join(format!("ca/node-{name}@localhost.key.pem")),
        ),
    )
    .unwrap();
    let mut cmd = fubar();
    cmd.args([
        "node",
        "--name",
        &format!("{name}@localhost"),
        "--master",
        master,
    ])
    .arg("--data-dir")
    .arg(dir.join("data"))
    .arg("--config")
    .arg(&config)
    .args([
        "--bind",
        "127.0.0.1",
        "--mqtt-port",
        "0",
        "--cluster-port",
        "0",
    ])
    .args(["--log-stdout", "warning,info"]);
    spawn_member(cmd, &dir.join("data"), WAIT)
}

/// Whether a connection presenting `cert` (no cookie) is let in on `alpn`.
fn admitted_with(dir: &Path, port: u16, alpn: &[u8], cert: &str, name: &str) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let identity = fubar_ssl::NodeIdentity {
            certfile: dir.join(format!("{cert}.pem")),
            keyfile: dir.join(format!("{cert}.key.pem")),
        };
        let trust = fubar_ssl::ClusterTrust::Ca(dir.join("ca/cacert.pem"));
        let tls = fubar_ssl::cluster_client_config(Some(&identity), &trust, &[alpn]).unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        fubar_monitor::admin::AdminClient::connect(
            addr,
            "localhost",
            tls,
            None,
            name,
            Duration::from_secs(5),
        )
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
    })
}

#[test]
fn a_device_certificate_or_a_foreign_or_unknown_node_certificate_is_no_member() {
    use fubar_logproto::link::{ADMIN_ALPN, PEER_ALPN};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    own_ca(dir);
    let (n1, port) = ca_member(dir, "n1", "n1@localhost");
    n1.wait_for_log("cluster founded", WAIT).expect("founded");
    let bad = [
        ("ca/client-dev1", "dev1"),
        ("ca/client-dev1", "n1@localhost"),
        ("other/node-n3@localhost", "n3@localhost"),
        ("ca/node-ghost@localhost", "ghost@localhost"),
    ];
    for alpn in [ADMIN_ALPN, PEER_ALPN] {
        for (cert, name) in bad {
            let r = admitted_with(dir, port, alpn, cert, name);
            assert!(r.is_err(), "{cert} as {name} was let in");
        }
    }
    assert!(
        n1.wait_for_log("not a node certificate", WAIT).is_some(),
        "a device certificate on the cluster port is a warning: {:#?}",
        n1.log_lines()
    );
    // The user-facing path: `ctl` with the device certificate cannot stop the node.
    let empty = tempfile::tempdir().unwrap();
    let node = format!("n1@localhost:{port}");
    let out = fubar()
        .args(["ctl", "--node", &node, "--data-dir"])
        .arg(empty.path())
        .arg("--cafile")
        .arg(dir.join("ca/cacert.pem"))
        .arg("--certfile")
        .arg(dir.join("ca/client-dev1.pem"))
        .arg("--keyfile")
        .arg(dir.join("ca/client-dev1.key.pem"))
        .arg("stop")
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    // A real member joins (its certificate and the cookie), and its certificate alone then
    // opens remote admin.
    let (n2, _) = ca_member(dir, "n2", &node);
    n2.wait_for_log("joined the cluster", WAIT)
        .expect("n2 joins");
    eventually("a member's certificate to open admin", WAIT, || {
        admitted_with(
            dir,
            port,
            ADMIN_ALPN,
            "ca/node-n2@localhost",
            "n2@localhost",
        )
        .is_ok()
    });
    let out = fubar()
        .args(["ctl", "--node", &node, "--data-dir"])
        .arg(empty.path())
        .arg("--cafile")
        .arg(dir.join("ca/cacert.pem"))
        .arg("--certfile")
        .arg(dir.join("ca/node-n2@localhost.pem"))
        .arg("--keyfile")
        .arg(dir.join("ca/node-n2@localhost.key.pem"))
        .args(["cluster", "status"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(n1.log_lines().iter().all(|l| !l.contains("node stopped")));
}

/// What a flood of unproven connections got.
#[derive(Debug, Default)]
struct Flood {
    attempts: AtomicU64,
    /// Connections that got through the handshake (and then held their slot unproven).
    held: AtomicU64,
    refused: AtomicU64,
}

/// Opens connections to `target` from 127.0.0.2 that never prove anything, `wave` at a time,
/// until `stop`; each one that gets in sends half a frame header and waits to be closed.
fn flood(
    target: SocketAddr,
    wave: usize,
    stop: Arc<AtomicBool>,
) -> (Arc<Flood>, std::thread::JoinHandle<()>) {
    let stats = Arc::new(Flood::default());
    let counts = stats.clone();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let tls = fubar_ssl::cluster_client_config(
                None,
                &fubar_ssl::ClusterTrust::Cookie,
                &[fubar_logproto::link::PEER_ALPN],
            )
            .unwrap();
            let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
            let mut endpoint = quinn::Endpoint::client("127.0.0.2:0".parse().unwrap()).unwrap();
            endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
            while !stop.load(Ordering::Relaxed) {
                let mut tasks = tokio::task::JoinSet::new();
                for _ in 0..wave {
                    let endpoint = endpoint.clone();
                    let counts = counts.clone();
                    counts.attempts.fetch_add(1, Ordering::Relaxed);
                    tasks.spawn(async move {
                        let Ok(connecting) = endpoint.connect(target, "localhost") else {
                            return;
                        };
                        match tokio::time::timeout(Duration::from_secs(10), connecting).await {
                            Ok(Ok(conn)) => {
                                counts.held.fetch_add(1, Ordering::Relaxed);
                                if let Ok((mut send, _recv)) = conn.open_bi().await {
                                    let _ = send.write_all(&[0, 0]).await;
                                    let _ = tokio::time::timeout(
                                        Duration::from_secs(10),
                                        conn.closed(),
                                    )
                                    .await;
                                }
                            }
                            _ => {
                                counts.refused.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    });
                }
                while tasks.join_next().await.is_some() {}
            }
        });
    });
    (stats, thread)
}

#[test]
fn thousands_of_unproven_connections_from_one_address_do_not_stop_a_join_or_an_admin_command() {
    let _alone = crate::common::flooding();
    if UdpSocket::bind("127.0.0.2:0").is_err() {
        eprintln!("skipped: cannot send from 127.0.0.2 on this machine");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut cmd = fubar();
    cmd.args(["node", "--name", "n1@127.0.0.1", "--master", "n1@127.0.0.1"])
        .arg("--data-dir")
        .arg(dir)
        .args([
            "--bind",
            "127.0.0.1",
            "--mqtt-port",
            "0",
            "--cluster-port",
            "0",
        ])
        .args(["--log-stdout", "warning,info"]);
    let (n1, port) = spawn_member(cmd, dir, WAIT);
    n1.wait_for_log("cluster founded", WAIT).expect("founded");
    let stop = Arc::new(AtomicBool::new(false));
    let target = SocketAddr::from(([127, 0, 0, 1], port));
    let (stats, thread) = flood(target, 2_000, stop.clone());
    let started = Instant::now();
    eventually("the flood's first 2,000 attempts", WAIT, || {
        stats.attempts.load(Ordering::Relaxed) >= 2_000
    });
    // While the flood goes on: a member joins, and an admin command goes over the cluster
    // port from another machine (a folder with the cookie).
    let mut cmd = fubar();
    cmd.args(["node", "--name", "n2@127.0.0.1", "--master"])
        .arg(format!("n1@127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir)
        .args([
            "--bind",
            "127.0.0.1",
            "--mqtt-port",
            "0",
            "--cluster-port",
            "0",
        ])
        .args(["--log-stdout", "warning,info"]);
    let (n2, _) = spawn_member(cmd, dir, WAIT);
    n2.wait_for_log("joined the cluster", WAIT)
        .expect("n2 joins during the flood");
    let other = tempfile::tempdir().unwrap();
    std::fs::copy(dir.join("cookie"), other.path().join("cookie")).unwrap();
    let out = fubar()
        .args([
            "ctl",
            "--node",
            &format!("n1@127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(other.path())
        .args(["cluster", "status"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("n2@127.0.0.1"), "{}", text(&out));
    let attempts = stats.attempts.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    thread.join().unwrap();
    let (held, refused) = (
        stats.held.load(Ordering::Relaxed),
        stats.refused.load(Ordering::Relaxed),
    );
    eprintln!(
        "flood: {attempts} attempts from 127.0.0.2 in {:?}: {held} got a handshake, {refused} refused",
        started.elapsed()
    );
    assert!(attempts >= 2_000 && refused > 0, "{stats:?}");
    // Refusals are warned about once per address and interval, with their count.
    let warnings: Vec<String> = n1
        .log_lines()
        .into_iter()
        .filter(|l| l.contains("connection refused") && l.contains("127.0.0.2"))
        .collect();
    let intervals = started.elapsed().as_secs() / 10 + 2;
    assert!(!warnings.is_empty(), "no refusal warning");
    assert!(
        warnings.len() as u64 <= intervals,
        "{} warnings for {intervals} intervals: {warnings:#?}",
        warnings.len()
    );
    drop(n2);
}

#[test]
fn new_certs_in_a_checkout_writes_no_key_git_would_see() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    // The `ssl/` crate folder is refused outright.
    let out = fubar()
        .args(["ssl", "new-certs", "--dir"])
        .arg(root.join("ssl"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("Cargo.toml"), "{}", text(&out));
    // And what the default folder and the key names would hold is ignored (a second guard).
    for path in ["data/ssl/key.pem", "ssl/cakey.pem", "x/client-d.key.pem"] {
        let check = Command::new("git")
            .current_dir(root)
            .args(["check-ignore", "-q", path])
            .output();
        match check {
            Ok(out) if out.status.code() == Some(128) => eprintln!("skipped: not a git checkout"),
            Ok(out) => assert!(out.status.success(), "{path} is not ignored: {out:?}"),
            Err(e) => eprintln!("skipped: no git ({e})"),
        }
    }
}

#[test]
fn ctl_with_the_cluster_ca_refuses_a_node_certificate_for_another_node_than_the_one_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    own_ca(dir);
    let (n1, port) = ca_member(dir, "n1", "n1@localhost");
    n1.wait_for_log("cluster founded", WAIT).expect("founded");
    let empty = tempfile::tempdir().unwrap();
    // `ctl --node NODE status` with a member's certificate (n1's own) and the cluster CA.
    let status = |node: &str| {
        fubar()
            .args(["ctl", "--node", node, "--data-dir"])
            .arg(empty.path())
            .arg("--cafile")
            .arg(dir.join("ca/cacert.pem"))
            .arg("--certfile")
            .arg(dir.join("ca/node-n1@localhost.pem"))
            .arg("--keyfile")
            .arg(dir.join("ca/node-n1@localhost.key.pem"))
            .arg("status")
            .output()
            .unwrap()
    };
    eventually("n1 to answer status", WAIT, || {
        let out = status(&format!("n1@localhost:{port}"));
        if out.status.success() {
            Ok(())
        } else {
            Err(text(&out))
        }
    });
    // The same address named as ghost (a node certificate of the same CA exists for it):
    // the server shows n1's certificate, which is of the CA but not ghost's.
    let out = status(&format!("ghost@localhost:{port}"));
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("n1@localhost") && err.contains("not for the node dialed"),
        "{err}"
    );
    drop(n1);
}

#[test]
fn a_cluster_ca_without_this_nodes_certificate_is_refused_at_start_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    own_ca(dir);
    let config = dir.join("n1.toml");
    std::fs::write(
        &config,
        format!("[cluster]\ncafile = {:?}\n", dir.join("ca/cacert.pem")),
    )
    .unwrap();
    let child = fubar()
        .args(["node", "--name", "n1@localhost", "--master", "n1@localhost"])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--config")
        .arg(&config)
        .args([
            "--bind",
            "127.0.0.1",
            "--mqtt-port",
            "0",
            "--cluster-port",
            "0",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // It must exit by itself; one that runs is killed and fails the test.
    let out =
        exit_within(child, WAIT).unwrap_or_else(|out| panic!("the node started: {}", text(&out)));
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("cluster.cafile") && err.contains("cluster.node_certfile"),
        "{err}"
    );
}
