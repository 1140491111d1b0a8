//! MQTT over WebSocket behaves as TCP does where the guards are concerned: the memory alarm
//! and the publish rate limit hold over `ws`, and `wss` takes the `mqtts` listener's TLS
//! configuration whole: a client certificate required and turned into the user name, and
//! `fubar ctl ssl reload` renewing the certificates for new connections. And every member of
//! a cluster serves it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use fubar::mqtt::packet::{Packet, QoS};

use crate::common::{connect_v311, qos0_burst, Broker};
use crate::conformance::support::{raw_connect, raw_subscribe, read, wait_log};
use crate::websocket::{
    closed, frame, http, logged, read_binary, request, ws_addr, ws_broker, ws_open,
};

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn over_ws_the_memory_alarm_refuses_new_connections_with_connack_3() {
    // A watermark below any real process's memory: the alarm goes on at the first check.
    let (broker, addr) = ws_broker(
        &[],
        "[memory]\nhigh_watermark = 0.000001\nlow_watermark = 0.0000005\ncheck_ms = 20\n",
    );
    broker
        .wait_for_log("memory alarm on", WAIT)
        .expect("the alarm is reported as a warning");
    let mut s = ws_open(addr);
    s.write_all(&frame(2, true, &connect_v311("ws-refused-by-alarm")))
        .unwrap();
    assert_eq!(
        read_binary(&mut s, 4),
        [0x20, 0x02, 0x00, 0x03],
        "CONNACK 3"
    );
    assert!(closed(&mut s), "the connection ends after the refusal");
    let line = logged(&broker, "connect refused: memory alarm", 1);
    assert!(line.contains("code=3"), "{line}");
}

#[test]
fn over_ws_a_client_over_max_messages_per_sec_is_slowed_down_and_loses_nothing() {
    const LIMIT: usize = 50;
    const SENT: usize = 4 * LIMIT;
    let (broker, addr) = ws_broker(&[], &format!("[mqtt]\nmax_messages_per_sec = {LIMIT}\n"));
    let mut sub = raw_connect(&broker, "tcp-reader", 60, None);
    raw_subscribe(&mut sub, 1, &[("flood/ws", QoS::AtMostOnce)]);
    let mut publisher = ws_open(addr);
    publisher
        .write_all(&frame(2, true, &connect_v311("ws-flooder")))
        .unwrap();
    assert_eq!(read_binary(&mut publisher, 4), [0x20, 0x02, 0x00, 0x00]);
    // The whole burst in one WebSocket frame.
    let burst = qos0_burst("flood/ws", SENT);
    publisher.write_all(&frame(2, true, &burst)).unwrap();
    for i in 0..SENT {
        match read(&mut sub) {
            Packet::Publish(p) => assert_eq!(p.payload, i.to_string().as_bytes(), "in order"),
            other => panic!("expected PUBLISH #{i}, got {other:?}"),
        }
    }
    // Still connected: a PINGREQ is answered.
    publisher.write_all(&frame(2, true, &[0xc0, 0x00])).unwrap();
    assert_eq!(read_binary(&mut publisher, 2), [0xd0, 0x00]);
    let line = wait_log(&broker, "client throttled");
    assert!(line.contains("client=ws-flooder"), "{line}");
    assert!(line.contains(&format!("limit={LIMIT}")), "{line}");
    assert!(!broker
        .log_lines()
        .iter()
        .any(|l| l.contains("disconnected client=ws-flooder")));
}

/// A 3.1.1 CONNECT with a keep-alive of `secs`.
fn connect_keep_alive(id: &str, secs: u8) -> Vec<u8> {
    let mut c = connect_v311(id);
    c[11] = secs; // the low byte of the keep-alive (fixed header 2, then 8 bytes)
    c
}

#[test]
fn over_ws_mqtt_3_1_keep_alive_and_takeover_work_as_over_tcp() {
    let (broker, addr) = ws_broker(&[], "");
    // An MQTT 3.1 client asks for `mqttv3.1`, which is echoed.
    let (mut old, head) = http(addr, &request("/mqtt", Some("mqttv3.1")));
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.contains("Sec-WebSocket-Protocol: mqttv3.1\r\n"),
        "{head}"
    );
    let mut body = vec![0, 6];
    body.extend_from_slice(b"MQIsdp");
    body.extend_from_slice(&[3, 0b10, 0, 60, 0, 4]);
    body.extend_from_slice(b"v31c");
    let mut connect = vec![0x10, body.len() as u8];
    connect.extend_from_slice(&body);
    old.write_all(&frame(2, true, &connect)).unwrap();
    assert_eq!(read_binary(&mut old, 4), [0x20, 0x02, 0x00, 0x00]);
    logged(&broker, " connected client=v31c ", 1);

    // Keep-alive: a ws client silent for 1.5 x its keep-alive is closed.
    let mut silent = ws_open(addr);
    silent
        .write_all(&frame(2, true, &connect_keep_alive("ws-silent", 1)))
        .unwrap();
    assert_eq!(read_binary(&mut silent, 4), [0x20, 0x02, 0x00, 0x00]);
    assert!(closed(&mut silent), "the silent ws client is closed");
    let line = logged(&broker, "disconnected client=ws-silent", 1);
    assert!(line.contains("reason=keep-alive timeout"), "{line}");

    // Takeover: the same client id over TCP ends the ws connection.
    let mut first = ws_open(addr);
    first
        .write_all(&frame(2, true, &connect_v311("moving")))
        .unwrap();
    assert_eq!(read_binary(&mut first, 4), [0x20, 0x02, 0x00, 0x00]);
    let mut tcp = raw_connect(&broker, "moving", 60, None);
    assert!(closed(&mut first), "the ws connection is taken over");
    let line = logged(&broker, "disconnected client=moving", 1);
    assert!(
        line.contains("transport=ws") && line.contains("reason=taken over"),
        "{line}"
    );
    tcp.send(&[0xc0, 0x00]);
    assert_eq!(read(&mut tcp), Packet::PingResp);
}

// --- wss: the mqtts TLS configuration, client certificates, reload ------------------------

fn fubar(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fubar"))
        .args(args)
        .output()
        .expect("run fubar")
}

/// `fubar ssl new-certs` into `dir` with a client certificate `client-dev1`.
fn new_certs(dir: &Path, force: bool) {
    let dir = dir.to_str().unwrap();
    let mut args = vec!["ssl", "new-certs", "--dir", dir, "--client", "dev1"];
    if force {
        args.push("--force");
    }
    let out = fubar(&args);
    assert!(out.status.success(), "{out:?}");
}

/// `fubar pub` over wss to `port`, trusting `ca`, with a client certificate if given.
fn wss_pub(port: u16, ca: &Path, cert: Option<(&Path, &Path)>, id: &str) -> Output {
    let port = port.to_string();
    let mut args = vec![
        "pub",
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "--ws",
        "-i",
        id,
        "-t",
        "wss/x",
        "-q",
        "1",
        "-m",
        id,
    ];
    let ca = ca.to_str().unwrap();
    args.extend(["--cafile", ca]);
    let paths;
    if let Some((c, k)) = cert {
        paths = [c.to_str().unwrap(), k.to_str().unwrap()];
        args.extend(["--cert", paths[0], "--key", paths[1]]);
    }
    fubar(&args)
}

fn dev1(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("client-dev1.pem"), dir.join("client-dev1.key.pem"))
}

#[test]
fn wss_requires_client_certificates_names_users_by_them_and_reloads() {
    let tmp = tempfile::tempdir().unwrap();
    let ssl = tmp.path().join("ssl");
    new_certs(&ssl, false);
    let config = format!(
        "[ssl]\ncertfile = {:?}\nkeyfile = {:?}\ncafile = {:?}\nverify = \"required\"\nusername_from_cn = true\n",
        ssl.join("cert.pem"),
        ssl.join("key.pem"),
        ssl.join("cacert.pem"),
    );
    let broker = Broker::start_with(&["--wss-port", "0", "--auth"], &config);
    let port = ws_addr(&broker, "wss").port();
    let ca = ssl.join("cacert.pem");
    let (cert, key) = dev1(&ssl);

    // With the certificate and no password: its common name is the user (--auth is on).
    let out = wss_pub(port, &ca, Some((&cert, &key)), "wss-cert");
    assert!(out.status.success(), "{out:?}");
    let line = logged(&broker, " connected client=wss-cert ", 1);
    for field in ["access", " user=dev1 ", "transport=wss"] {
        assert!(line.contains(field), "{field} missing in {line}");
    }
    // Without one: refused in the TLS handshake, before any WebSocket or MQTT.
    let out = wss_pub(port, &ca, None, "wss-no-cert");
    assert!(
        !out.status.success(),
        "accepted without a client certificate"
    );
    let line = logged(&broker, "TLS connection refused", 1);
    assert!(
        line.contains("access") && line.contains("no certificates"),
        "{line}"
    );
    assert!(!broker
        .log_lines()
        .iter()
        .any(|l| l.contains("client=wss-no-cert")));

    // Renewed certificates (a new CA, server and client certificate in the same files),
    // then `ctl ssl reload`: new wss connections use them.
    let old = tmp.path().join("old");
    std::fs::create_dir(&old).unwrap();
    for f in ["cacert.pem", "client-dev1.pem", "client-dev1.key.pem"] {
        std::fs::copy(ssl.join(f), old.join(f)).unwrap();
    }
    new_certs(&ssl, true);
    let out = broker.ctl(&["ssl", "reload"]);
    assert!(out.status.success(), "reload: {out:?}");
    let out = wss_pub(port, &ca, Some((&cert, &key)), "wss-renewed");
    assert!(out.status.success(), "{out:?}");
    logged(&broker, " connected client=wss-renewed ", 1);
    // The old CA no longer names the server; the old client certificate is no longer trusted.
    let (old_cert, old_key) = dev1(&old);
    let out = wss_pub(
        port,
        &old.join("cacert.pem"),
        Some((&cert, &key)),
        "wss-old-ca",
    );
    assert!(
        !out.status.success(),
        "the old CA still verifies the server"
    );
    let out = wss_pub(port, &ca, Some((&old_cert, &old_key)), "wss-old-cert");
    assert!(
        !out.status.success(),
        "the old client certificate is still trusted"
    );
    logged(&broker, "TLS connection refused", 2);
}

#[test]
fn every_member_of_a_cluster_serves_websocket_and_routes_between_them() {
    let cluster = crate::cluster::Cluster::new();
    let n1 = cluster.start("n1", "n1@localhost", &["--ws-port", "0"]);
    n1.broker
        .wait_for_log("cluster founded", WAIT)
        .expect("n1 founds the cluster");
    let n2 = cluster.start("n2", &n1.address(), &["--ws-port", "0"]);
    n2.broker
        .wait_for_log("joined the cluster", WAIT)
        .expect("n2 joins");
    // A ws subscriber on n1, a ws publisher on n2.
    let mut sub = ws_open(ws_addr(&n1.broker, "ws"));
    sub.write_all(&frame(2, true, &connect_v311("ws-sub-n1")))
        .unwrap();
    assert_eq!(read_binary(&mut sub, 4), [0x20, 0x02, 0x00, 0x00]);
    // SUBSCRIBE id 1 to "c/ws" at QoS 0; SUBACK 0.
    let subscribe = [
        0x82, 0x09, 0x00, 0x01, 0x00, 0x04, b'c', b'/', b'w', b's', 0x00,
    ];
    sub.write_all(&frame(2, true, &subscribe)).unwrap();
    assert_eq!(read_binary(&mut sub, 5), [0x90, 0x03, 0x00, 0x01, 0x00]);
    cluster.wait_routes("n2@localhost", 1);
    let mut publisher = ws_open(ws_addr(&n2.broker, "ws"));
    publisher
        .write_all(&frame(2, true, &connect_v311("ws-pub-n2")))
        .unwrap();
    assert_eq!(read_binary(&mut publisher, 4), [0x20, 0x02, 0x00, 0x00]);
    let publish = [0x30, 0x08, 0x00, 0x04, b'c', b'/', b'w', b's', b'h', b'i'];
    publisher.write_all(&frame(2, true, &publish)).unwrap();
    assert_eq!(
        read_binary(&mut sub, publish.len()),
        publish,
        "routed n2 -> n1"
    );
}
