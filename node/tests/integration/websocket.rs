//! MQTT over WebSocket, black-box: a node with `--ws-port 0` (and `--wss-port 0`), paho-mqtt
//! over WebSocket beside a TCP client, and a small RFC 6455 client of the test's own for the
//! bad input a library would not send.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{connect_v311, run_paho, Broker};

/// Upper bound for anything the broker or a client should do promptly.
const T: Duration = Duration::from_secs(10);

const PAHO_SCRIPT: &str = include_str!("websocket_paho.py");

/// The address a `listening on SCHEME://ADDR/mqtt` line of `broker` names.
pub(crate) fn ws_addr(broker: &Broker, scheme: &str) -> SocketAddr {
    let needle = format!("listening on {scheme}://");
    broker
        .log_lines()
        .iter()
        .find_map(|l| l.split_once(needle.as_str()))
        .map(|(_, a)| {
            a.trim()
                .trim_end_matches("/mqtt")
                .parse()
                .expect("ws address")
        })
        .unwrap_or_else(|| panic!("no {scheme} listener line"))
}

/// Waits for the `n`th event containing `needle`; fails with the node's log if none comes.
pub(crate) fn logged(broker: &Broker, needle: &str, n: usize) -> String {
    broker.wait_for_log_count(needle, n, T).unwrap_or_else(|| {
        panic!(
            "no {needle:?} (x{n}) in:\n{}",
            broker.log_lines().join("\n")
        )
    })
}

pub(crate) fn ws_broker(args: &[&str], config: &str) -> (Broker, SocketAddr) {
    let args = [&["--ws-port", "0"][..], args].concat();
    let broker = Broker::start_with(&args, config);
    let addr = ws_addr(&broker, "ws");
    (broker, addr)
}

// --- independent clients ------------------------------------------------------------------

fn paho_checks(broker: &Broker, ws_port: u16, level: &str, scheme: &str, ca: &str) {
    let lines = run_paho(
        broker,
        "websocket_paho.py",
        PAHO_SCRIPT,
        &[&ws_port.to_string(), level, scheme, ca],
    );
    for want in [
        "ws got retained retained",
        "ws got from tcp",
        "ws got a large message",
        "tcp got from ws",
        "tcp got the will",
        "done",
    ] {
        assert!(
            lines.iter().any(|l| l.trim() == want),
            "{scheme} {level}: no {want:?} in {lines:?}"
        );
    }
}

#[test]
fn paho_over_ws_talks_to_tcp_clients_at_3_1_1_and_5() {
    let (broker, ws) = ws_broker(&[], "");
    for level in ["4", "5"] {
        paho_checks(&broker, ws.port(), level, "ws", "-");
    }
    let connected = broker
        .log_lines()
        .into_iter()
        .filter(|l| l.contains(" connected ") && l.contains("transport=ws"))
        .count();
    assert!(connected >= 4, "{:#?}", broker.log_lines());
    assert!(broker
        .log_lines()
        .iter()
        .any(|l| l.contains(" connected ") && l.contains("transport=tcp")));
}

#[test]
fn paho_over_wss_talks_to_tcp_clients_at_3_1_1_and_5() {
    let tmp = tempfile::tempdir().unwrap();
    let ssl = tmp.path().join("ssl");
    let out = Command::new(env!("CARGO_BIN_EXE_fubar"))
        .args(["ssl", "new-certs", "--dir"])
        .arg(&ssl)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let file = |n: &str| ssl.join(n);
    let config = format!(
        "[ssl]\ncertfile = {:?}\nkeyfile = {:?}\ncafile = {:?}\n",
        file("cert.pem"),
        file("key.pem"),
        file("cacert.pem")
    );
    let broker = Broker::start_with(&["--wss-port", "0"], &config);
    let wss = ws_addr(&broker, "wss");
    let ca = file("cacert.pem");
    for level in ["4", "5"] {
        paho_checks(&broker, wss.port(), level, "wss", ca.to_str().unwrap());
    }
    assert!(broker
        .log_lines()
        .iter()
        .any(|l| l.contains(" connected ") && l.contains("transport=wss")));
    // Plain HTTP on the TLS port is a TLS refusal, not a crash.
    let mut s = TcpStream::connect(wss).unwrap();
    s.write_all(b"GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    logged(&broker, "plain HTTP (not TLS) on the TLS port", 1);
}

// --- a raw WebSocket client ----------------------------------------------------------------

pub(crate) fn request(path: &str, protocol: Option<&str>) -> String {
    let mut r = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    if let Some(p) = protocol {
        r.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
    }
    r.push_str("\r\n");
    r
}

/// Sends `req` and reads the HTTP response head.
pub(crate) fn http(addr: SocketAddr, req: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => break,
        }
    }
    (s, String::from_utf8_lossy(&head).into_owned())
}

/// An upgraded WebSocket with subprotocol `mqtt`.
pub(crate) fn ws_open(addr: SocketAddr) -> TcpStream {
    let (s, head) = http(addr, &request("/mqtt", Some("mqtt")));
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("Sec-WebSocket-Protocol: mqtt\r\n"), "{head}");
    assert!(
        head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "{head}"
    );
    s
}

/// A client frame (masked, as RFC 6455 requires of clients).
pub(crate) fn frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
    header_len(&mut f, payload.len() as u64);
    let mask = [0x11, 0x22, 0x33, 0x44];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

pub(crate) fn header_len(f: &mut Vec<u8>, len: u64) {
    if len < 126 {
        f.push(0x80 | len as u8);
    } else if len < 65536 {
        f.push(0x80 | 126);
        f.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&len.to_be_bytes());
    }
}

/// Reads one server frame (unmasked): (opcode, payload); `None` once the socket closed.
pub(crate) fn read_frame(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).ok()?;
    let mut len = u64::from(h[1] & 0x7f);
    if len == 126 {
        let mut b = [0u8; 2];
        s.read_exact(&mut b).ok()?;
        len = u64::from(u16::from_be_bytes(b));
    } else if len == 127 {
        let mut b = [0u8; 8];
        s.read_exact(&mut b).ok()?;
        len = u64::from_be_bytes(b);
    }
    let mut payload = vec![0u8; len as usize];
    s.read_exact(&mut payload).ok()?;
    Some((h[0] & 0x0f, payload))
}

/// Reads binary frames until `n` payload bytes came.
pub(crate) fn read_binary(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < n {
        let (op, p) = read_frame(s).expect("a frame");
        assert_eq!(op, 2, "binary frames only");
        got.extend_from_slice(&p);
    }
    got
}

/// Whether the server ends the connection (a close frame, then EOF, or EOF) within `T`.
pub(crate) fn closed(s: &mut TcpStream) -> bool {
    let deadline = Instant::now() + T;
    while Instant::now() < deadline {
        match read_frame(s) {
            None => return true,
            Some((8, _)) => {}
            Some(_) => {}
        }
    }
    false
}

/// A healthy WebSocket MQTT client: CONNECT split over two frames, CONNACK back.
fn healthy(addr: SocketAddr, id: &str) -> TcpStream {
    let mut s = ws_open(addr);
    let connect = connect_v311(id);
    let (a, b) = connect.split_at(3);
    s.write_all(&[frame(2, true, a), frame(2, true, b)].concat())
        .unwrap();
    let connack = read_binary(&mut s, 4);
    assert_eq!(connack, [0x20, 0x02, 0x00, 0x00]);
    s
}

/// The healthy client still answers: a frame with two PINGREQs, a WebSocket ping.
fn still_healthy(s: &mut TcpStream) {
    s.write_all(&frame(2, true, &[0xc0, 0x00, 0xc0, 0x00]))
        .unwrap();
    assert_eq!(read_binary(s, 4), [0xd0, 0x00, 0xd0, 0x00]);
    s.write_all(&frame(9, true, b"hi")).unwrap();
    assert_eq!(read_frame(s), Some((0xa, b"hi".to_vec())), "pong");
}

#[test]
fn bad_websocket_input_is_refused_while_a_healthy_client_keeps_working() {
    let (broker, addr) = ws_broker(&[], "[ws]\nallowed_origins = [\"https://app.example\"]\n");
    let mut good = healthy(addr, "healthy");
    still_healthy(&mut good);

    // Not a WebSocket request at all.
    let (_, head) = http(addr, "GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    logged(
        &broker,
        "not a WebSocket request (no Upgrade: websocket)",
        1,
    );
    // A WebSocket without the mqtt subprotocol, or on another path, or from another origin.
    let (_, head) = http(addr, &request("/mqtt", None));
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    logged(&broker, "no mqtt subprotocol", 1);
    let (_, head) = http(addr, &request("/elsewhere", Some("mqtt")));
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    logged(&broker, "bad path", 1);
    let evil = request("/mqtt", Some("mqtt"))
        .replace("\r\n\r\n", "\r\nOrigin: https://evil.example\r\n\r\n");
    let (_, head) = http(addr, &evil);
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    logged(&broker, "not in ws.allowed_origins", 1);
    let refused = broker.wait_for_log_count("WebSocket upgrade refused", 4, T);
    assert!(refused.is_some_and(|l| l.starts_with("access")));

    // A text frame closes the connection.
    let mut s = ws_open(addr);
    s.write_all(&frame(1, true, b"hello")).unwrap();
    assert!(closed(&mut s));
    logged(&broker, "websocket text frame", 1);

    // A flood of fragments: the message grows past mqtt.max_packet_size and is refused.
    let mut s = ws_open(addr);
    let chunk = vec![0u8; 64 * 1024];
    let mut first = true;
    for _ in 0..40 {
        let opcode = if first { 2 } else { 0 };
        first = false;
        if s.write_all(&frame(opcode, false, &chunk)).is_err() {
            break;
        }
    }
    assert!(closed(&mut s));
    // A frame header that announces 100 MB: refused before any of it is buffered.
    let mut s = ws_open(addr);
    let mut f = vec![0x82];
    header_len(&mut f, 100_000_000);
    f.extend_from_slice(&[1, 2, 3, 4]);
    s.write_all(&f).unwrap();
    assert!(closed(&mut s));
    logged(&broker, "websocket frame too large", 2);

    still_healthy(&mut good);
    // A close frame is answered with one, and the client's session ends normally.
    good.write_all(&frame(8, true, &[0x03, 0xe8])).unwrap();
    assert_eq!(read_frame(&mut good).map(|f| f.0), Some(8));
    assert!(broker
        .wait_for_log("disconnected client=healthy", T)
        .is_some_and(|l| l.contains("transport=ws")));
}

// --- fubar's own tools ---------------------------------------------------------------------

#[test]
fn fubar_pub_and_sub_speak_websocket() {
    let (broker, addr) = ws_broker(&[], "");
    let port = addr.port().to_string();
    let fubar = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_fubar"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Retained, so the subscriber gets it whenever it subscribes.
    fubar(&[
        "pub",
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "--ws",
        "-t",
        "tools/ws",
        "-m",
        "over-ws",
        "-r",
    ]);
    let got = fubar(&[
        "sub",
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "--ws",
        "-t",
        "tools/ws",
        "-C",
        "1",
    ]);
    assert!(got.contains("over-ws"), "{got}");
    let lines = broker.log_lines();
    let ws_clients = lines
        .iter()
        .filter(|l| l.contains(" connected ") && l.contains("transport=ws"))
        .count();
    assert_eq!(ws_clients, 2, "{lines:#?}");
}

// --- a real browser ------------------------------------------------------------------------

/// Why the browser test cannot run here, if it cannot (scripts/test.sh installs all of it).
fn browser_missing(mqtt_js: &Path) -> Option<String> {
    for (program, args, install) in [
        (
            "chromium",
            &["--version"][..],
            "apt-get install -y chromium",
        ),
        (
            "chromedriver",
            &["--version"][..],
            "apt-get install -y chromium-driver",
        ),
        (
            "mosquitto_pub",
            &["--help"][..],
            "apt-get install -y mosquitto-clients",
        ),
        (
            "python3",
            &["-c", "import selenium"][..],
            "python3 -m pip install selenium",
        ),
    ] {
        let ok = Command::new(program)
            .args(args)
            .output()
            .is_ok_and(|o| program == "mosquitto_pub" || o.status.success());
        if !ok {
            return Some(format!("{program} {args:?} fails: `{install}`"));
        }
    }
    (!mqtt_js.exists()).then(|| {
        format!(
            "no {} (`npm install --prefix {} mqtt@5`)",
            mqtt_js.display(),
            mqtt_js.ancestors().nth(4).unwrap().display()
        )
    })
}

#[test]
fn a_browser_page_talks_mqtt_over_ws_with_mqtt_js() {
    // target/debug/fubar → target/
    let target = Path::new(env!("CARGO_BIN_EXE_fubar"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_owned();
    let mqtt_js = target.join("mqttjs/node_modules/mqtt/dist/mqtt.min.js");
    if let Some(why) = browser_missing(&mqtt_js) {
        eprintln!("skipped: the browser test needs {why}");
        return;
    }
    let (broker, ws) = ws_broker(&[], "");
    let screenshot = target.join("websocket-browser.png");
    let _ = std::fs::remove_file(&screenshot);
    let lines = run_paho(
        &broker,
        "websocket_browser.py",
        include_str!("websocket_browser.py"),
        &[
            &ws.port().to_string(),
            mqtt_js.to_str().unwrap(),
            screenshot.to_str().unwrap(),
        ],
    );
    assert!(lines.iter().any(|l| l == "ok"), "{lines:?}");
    assert!(
        screenshot.exists(),
        "no screenshot at {}",
        screenshot.display()
    );
    logged(&broker, "connected client=browser-1", 1);
    assert!(broker
        .log_lines()
        .iter()
        .any(|l| l.contains("client=browser-1") && l.contains("transport=ws")));
}

// --- the upgrade's deadline and slot --------------------------------------------------------

#[test]
fn a_stalled_upgrade_holds_a_connection_slot_until_its_deadline() {
    let (broker, ws) = ws_broker(
        &[],
        "[mqtt]\nmax_connections = 1\nconnect_timeout_secs = 2\n",
    );
    // Half an upgrade request, then nothing: it holds the node's only slot...
    let mut stalled = TcpStream::connect(ws).unwrap();
    stalled
        .write_all(b"GET /mqtt HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // (a second connection on the same listener is accepted after it: the backlog is FIFO)
    let _refused = TcpStream::connect(ws).unwrap();
    let line = logged(&broker, "mqtt.max_connections reached", 1);
    assert!(line.contains("transport=ws"), "{line}");
    // ...until mqtt.connect_timeout_secs ends it with an access event.
    let line = logged(&broker, "WebSocket upgrade timed out", 1);
    assert!(
        line.starts_with("access") && line.contains("transport=ws"),
        "{line}"
    );
    let mut s = [0u8; 1];
    stalled.set_read_timeout(Some(T)).unwrap();
    assert_eq!(stalled.read(&mut s).unwrap_or(0), 0, "closed");
    // The slot is free again.
    let mut good = healthy(ws, "after-stall");
    still_healthy(&mut good);
}
