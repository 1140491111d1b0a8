//! Who may change the cluster (issue 16.2): operator certificates of the cluster CA with a
//! `read` or `admin` role, refused commands answered with a clear error, an operator
//! certificate that opens no log or peer link, and the `access` event of every remote
//! command, which never carries a password.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crate::common::{fubar, Broker, DataDir};

const WAIT: Duration = Duration::from_secs(30);
const PASSWORD: &str = "s3cret-Pa55";

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The cluster CA in `dir/ca`: the monitor's node certificate and two operators.
fn certificates(dir: &Path) {
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
        "mon@localhost",
        "--operator",
        "reader",
    ]);
    run(&[
        "ssl",
        "new-certs",
        "--dir",
        "ca",
        "--operator",
        "boss",
        "--role",
        "admin",
    ]);
}

/// A monitor on the cluster CA, its `access` events on stdout; returns it and its cluster
/// port.
fn monitor(dir: &Path) -> (Broker, u16) {
    let config = dir.join("mon.toml");
    std::fs::write(
        &config,
        format!(
            "[cluster]\ncafile = {:?}\nnode_certfile = {:?}\nnode_keyfile = {:?}\nrefusal_warning_ms = 1\n",
            dir.join("ca/cacert.pem"),
            dir.join("ca/node-mon@localhost.pem"),
            dir.join("ca/node-mon@localhost.key.pem"),
        ),
    )
    .unwrap();
    let mut cmd = fubar();
    cmd.args(["monitor", "--name", "mon@localhost", "--data-dir"])
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
        .args(["--log-stdout", "access,warning,info"]);
    let monitor = Broker::spawn(
        cmd,
        DataDir::Shared(dir.join("data")),
        "listening on mqtt://",
    );
    let line = monitor
        .wait_for_log("collecting on cluster://", WAIT)
        .expect("the monitor's cluster port");
    let port = line.rsplit(':').next().unwrap().trim().parse().unwrap();
    (monitor, port)
}

/// `fubar TOOL --node mon@localhost:PORT` with `operator`'s certificate, from an empty folder
/// (no admin socket there: the cluster port is used).
fn as_operator(dir: &Path, port: u16, operator: &str, tool: &str, args: &[&str]) -> Output {
    let empty = tempfile::tempdir().unwrap();
    fubar()
        .arg(tool)
        .args(["--node", &format!("mon@localhost:{port}"), "--data-dir"])
        .arg(empty.path())
        .arg("--cafile")
        .arg(dir.join("ca/cacert.pem"))
        .arg("--certfile")
        .arg(dir.join(format!("ca/operator-{operator}.pem")))
        .arg("--keyfile")
        .arg(dir.join(format!("ca/operator-{operator}.key.pem")))
        .args(args)
        .output()
        .unwrap()
}

/// `fubar ctl --node mon@localhost:PORT` with the cookie of the monitor's data folder (as a
/// node holds it), from an empty folder.
fn as_member(dir: &Path, port: u16, args: &[&str]) -> Output {
    let empty = tempfile::tempdir().unwrap();
    fubar()
        .arg("ctl")
        .args(["--node", &format!("mon@localhost:{port}"), "--data-dir"])
        .arg(empty.path())
        .arg("--cafile")
        .arg(dir.join("ca/cacert.pem"))
        .arg("--cookie-file")
        .arg(dir.join("data/cookie"))
        .args(args)
        .output()
        .unwrap()
}

/// The one `admin command` event of `operator` running `command`.
fn access_event(monitor: &Broker, operator: &str, command: &str) -> String {
    access_event_of(monitor, &format!("operator {operator} "), command)
}

/// The one `admin command` event of `identity` (`operator NAME`, `node NAME`) running
/// `command`.
fn access_event_of(monitor: &Broker, identity: &str, command: &str) -> String {
    // Lines are unquoted as they are read (`common::unquote`).
    monitor.expect_line(
        &[
            "admin command",
            &format!("identity={identity}"),
            &format!("command={command}"),
        ],
        WAIT,
    )
}

#[test]
fn a_read_operator_looks_and_an_admin_operator_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    certificates(dir);
    let (monitor, port) = monitor(dir);

    // Reading.
    let out = as_operator(dir, port, "reader", "ctl", &["status"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("mon@localhost"), "{}", text(&out));
    let out = as_operator(dir, port, "reader", "search", &["class:access"]);
    assert!(out.status.success(), "{}", text(&out));
    let line = access_event(&monitor, "reader", "status");
    assert!(
        line.contains("role=read")
            && line.contains("allowed=true")
            && line.contains("peer=127.0.0.1:"),
        "{line}"
    );

    // Changing: refused with a reply that says why (not a dropped connection).
    for args in [
        &["stop"][..],
        &["account", "update", "eve", PASSWORD],
        &["settings", "mqtt.max_packet_size", "100"],
    ] {
        let out = as_operator(dir, port, "reader", "ctl", args);
        assert!(!out.status.success(), "{args:?} was run: {}", text(&out));
        let said = text(&out);
        assert!(
            said.contains("refused") && said.contains("needs the admin role"),
            "{args:?}: {said}"
        );
        assert!(!said.contains(PASSWORD), "{said}");
    }
    let line = access_event(&monitor, "reader", "stop");
    assert!(line.contains("allowed=false"), "{line}");
    let line = access_event(&monitor, "reader", "account update");
    assert!(
        line.contains("allowed=false") && line.contains("***"),
        "{line}"
    );
    // Nothing changed.
    let out = as_operator(dir, port, "reader", "ctl", &["settings"]);
    assert!(
        text(&out).contains("mqtt.max_packet_size = 1048576"),
        "{}",
        text(&out)
    );
    let out = as_operator(dir, port, "reader", "ctl", &["account", "list"]);
    assert!(
        out.status.success() && !text(&out).contains("eve"),
        "{}",
        text(&out)
    );

    // The admin operator changes.
    let out = as_operator(
        dir,
        port,
        "boss",
        "ctl",
        &["account", "update", "eve", PASSWORD],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = as_operator(
        dir,
        port,
        "boss",
        "ctl",
        &["settings", "mqtt.max_packet_size", "100"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let line = access_event(&monitor, "boss", "account update");
    assert!(
        line.contains("role=admin") && line.contains("allowed=true"),
        "{line}"
    );
    let out = as_operator(dir, port, "reader", "ctl", &["account", "list"]);
    assert!(text(&out).contains("eve"), "{}", text(&out));

    // A remote dump (a read command) arrives at the caller; an existing file stays as it was.
    let out_dir = tempfile::tempdir().unwrap();
    let dumped = out_dir.path().join("access.txt");
    let out = as_operator(
        dir,
        port,
        "reader",
        "ctl",
        &["log", "dump", "access", dumped.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out));
    let dump = std::fs::read_to_string(&dumped).unwrap();
    assert!(dump.contains("admin command"), "{dump}");
    assert!(
        !dump.contains(PASSWORD),
        "a password in the access segments"
    );
    let victim = out_dir.path().join("victim.txt");
    std::fs::write(&victim, "precious").unwrap();
    let out = as_operator(
        dir,
        port,
        "reader",
        "ctl",
        &["log", "dump", "access", victim.to_str().unwrap()],
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");

    // The cookie keeps every right (it is what a node holds), and says who used it.
    let out = as_member(dir, port, &["account", "update", "mallory", PASSWORD]);
    assert!(out.status.success(), "{}", text(&out));
    let line = access_event_of(&monitor, "node ctl@", "account update");
    assert!(
        line.contains("role=admin")
            && line.contains("allowed=true")
            && line.contains("peer=127.0.0.1:")
            && line.contains("***"),
        "{line}"
    );

    // No password anywhere the node logged.
    assert!(
        monitor.log_lines().iter().all(|l| !l.contains(PASSWORD)),
        "a password in the log"
    );
    let out = as_operator(dir, port, "boss", "ctl", &["stop"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(monitor.wait_exit().success());
}

/// An operator certificate opens admin commands only: not a node's log link, not a peer link.
#[test]
fn an_operator_certificate_is_no_member() {
    use fubar_logproto::link::{LOG_ALPN, PEER_ALPN};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    certificates(dir);
    let (monitor, port) = monitor(dir);
    for alpn in [PEER_ALPN, LOG_ALPN] {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let joined = runtime.block_on(async {
            let identity = fubar_ssl::NodeIdentity {
                certfile: dir.join("ca/operator-boss.pem"),
                keyfile: dir.join("ca/operator-boss.key.pem"),
            };
            let trust = fubar_ssl::ClusterTrust::Ca(dir.join("ca/cacert.pem"));
            let tls = fubar_ssl::cluster_client_config(Some(&identity), &trust, &[alpn]).unwrap();
            fubar_monitor::admin::AdminClient::connect(
                SocketAddr::from(([127, 0, 0, 1], port)),
                "localhost",
                tls,
                None,
                "boss",
                Duration::from_secs(5),
            )
            .await
            .map(|_| ())
        });
        assert!(joined.is_err(), "an operator joined on {alpn:?}");
    }
    assert!(
        monitor
            .wait_for_log("an operator certificate on a log or peer link", WAIT)
            .is_some(),
        "{:#?}",
        monitor.log_lines()
    );
}
