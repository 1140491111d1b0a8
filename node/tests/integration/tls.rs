//! MQTT over TLS, black-box: certificates made by `fubar ssl new-certs` in a temp dir, a node
//! with `--mqtts-port 0`, and real clients (`openssl s_client`, `mosquitto_pub`/`mosquitto_sub`,
//! paho-mqtt) beside a small rustls client of the test's own. A missing tool fails the test
//! with the command that installs it.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::common::encode;
use bytes::{Bytes, BytesMut};
use fubar::mqtt::decode::decode;
use fubar::mqtt::packet::{
    Ack, ConnAck, Connect, Packet, ProtocolVersion, Publish, QoS, ReasonCode, SubAckCode, Subscribe,
};
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};

use crate::common::{connect_v311, fubar, log_of, Broker, Proc, RawClient};

/// Upper bound for anything the broker or a client should do promptly.
const T: Duration = Duration::from_secs(10);
/// `-W` for mosquitto_sub: it gives up (and the test fails) after this many seconds.
const SUB_TIMEOUT: &str = "10";

const MOSQUITTO_INSTALL: &str = "apt-get install -y mosquitto-clients";
const OPENSSL_INSTALL: &str = "apt-get install -y openssl";
const PAHO_INSTALL: &str = "python3 -m pip install 'paho-mqtt>=2,<3'";

// --- tools --------------------------------------------------------------------------------

/// Fails the test unless `program` can be run.
fn require(program: &str, args: &[&str], install: &str) {
    if let Err(e) = Command::new(program).args(args).output() {
        panic!(
            "{program} is needed by this test but cannot be run ({e}); install it with `{install}`"
        );
    }
}

fn require_mosquitto() {
    require("mosquitto_sub", &["--help"], MOSQUITTO_INSTALL);
    require("mosquitto_pub", &["--help"], MOSQUITTO_INSTALL);
}

fn require_openssl() {
    require("openssl", &["version"], OPENSSL_INSTALL);
}

fn require_paho() {
    require("python3", &["--version"], "apt-get install -y python3");
    let out = Command::new("python3")
        .args([
            "-c",
            "import paho.mqtt.client, paho.mqtt.enums; assert paho.mqtt.__version__ >= '2'",
        ])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "paho-mqtt 2.x is needed by this test; install it with `{PAHO_INSTALL}`\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// --- certificates and brokers -------------------------------------------------------------

/// `fubar ssl new-certs --dir DIR EXTRA...`, to its end.
fn new_certs(dir: &Path, extra: &[&str]) -> Output {
    fubar()
        .args(["ssl", "new-certs", "--dir"])
        .arg(dir)
        .args(extra)
        .output()
        .expect("run fubar ssl new-certs")
}

fn new_certs_ok(dir: &Path, extra: &[&str]) {
    let out = new_certs(dir, extra);
    assert!(
        out.status.success(),
        "fubar ssl new-certs {extra:?} failed: {}",
        text(&out.stderr)
    );
}

/// A temp dir with `ssl/` made by `fubar ssl new-certs --client dev1`.
struct Certs {
    tmp: tempfile::TempDir,
}

impl Certs {
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let certs = Self { tmp };
        new_certs_ok(&certs.dir(), &["--client", "dev1"]);
        certs
    }

    /// The `ssl` directory.
    fn dir(&self) -> PathBuf {
        self.tmp.path().join("ssl")
    }

    /// A file of the `ssl` directory.
    fn file(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }

    fn ca(&self) -> PathBuf {
        self.file("cacert.pem")
    }

    /// A second CA with its own `client-dev1`, in `other/` (trusted by nobody here).
    fn other(&self) -> PathBuf {
        let dir = self.tmp.path().join("other");
        new_certs_ok(&dir, &["--client", "dev1"]);
        dir
    }

    /// (certificate, key) of the client certificate `client-NAME` in `dir`.
    fn client_in(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        (
            dir.join(format!("client-{name}.pem")),
            dir.join(format!("client-{name}.key.pem")),
        )
    }

    fn dev1(&self) -> (PathBuf, PathBuf) {
        Self::client_in(&self.dir(), "dev1")
    }

    /// The `[mqtts]` and `[ssl]` settings pointing at these files, plus `extra` TOML lines
    /// (for the `[ssl]` table).
    fn config(&self, verify: &str, extra: &str) -> String {
        self.config_with(verify, extra, "")
    }

    fn config_with(&self, verify: &str, ssl_extra: &str, mqtts_extra: &str) -> String {
        format!(
            "[mqtts]\n{mqtts_extra}\n[ssl]\ncertfile = {:?}\nkeyfile = {:?}\ncafile = {:?}\nverify = {verify:?}\n{ssl_extra}\n",
            self.file("cert.pem"),
            self.file("key.pem"),
            self.ca(),
        )
    }
}

/// A node with a TLS listener and these settings (and flags).
fn tls_broker(args: &[&str], config: &str) -> Broker {
    let args = [&["--mqtts-port", "0"][..], args].concat();
    let broker = Broker::start_with(&args, config);
    assert!(
        broker.tls_addr.is_some(),
        "no mqtts line; log:\n{}",
        log_of(&broker)
    );
    broker
}

/// Waits for a stdout line of the broker containing every needle; returns it.
fn wait_line(broker: &Broker, needles: &[&str]) -> String {
    broker.expect_line(needles, T)
}

/// Waits for the `access` event that closed a TLS connection, with `reason` in it.
fn wait_refused(broker: &Broker, reason: &str) -> String {
    let line = wait_line(broker, &["TLS connection refused", reason]);
    assert!(line.contains("access"), "not an access event: {line}");
    line
}

// --- a rustls MQTT client of the test's own -----------------------------------------------

/// MQTT 3.1.1 over a rustls client stream (fubar's own encoder and decoder).
struct TlsMqtt {
    stream: StreamOwned<ClientConnection, TcpStream>,
    buf: BytesMut,
    next_id: u16,
}

impl TlsMqtt {
    /// TCP connect and TLS handshake, trusting `ca`, presenting `cert` = (certificate, key).
    fn handshake(
        addr: SocketAddr,
        ca: &Path,
        cert: Option<(&Path, &Path)>,
    ) -> Result<Self, String> {
        let config = fubar_ssl::client_config(Some(ca), cert, &[]).map_err(|e| e.to_string())?;
        let name = ServerName::try_from("localhost").unwrap();
        let conn = ClientConnection::new(config, name).map_err(|e| e.to_string())?;
        let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(T)).unwrap();
        tcp.set_nodelay(true).unwrap();
        let mut stream = StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .map_err(|e| e.to_string())?;
        }
        Ok(Self {
            stream,
            buf: BytesMut::new(),
            next_id: 1,
        })
    }

    /// Handshake, CONNECT and CONNACK; `Err` says which step failed.
    fn try_connect(
        addr: SocketAddr,
        ca: &Path,
        cert: Option<(&Path, &Path)>,
        id: &str,
    ) -> Result<Self, String> {
        let mut c = Self::handshake(addr, ca, cert).map_err(|e| format!("handshake: {e}"))?;
        c.send(&Packet::Connect(Box::new(Connect {
            protocol: ProtocolVersion::V311,
            clean_session: true,
            keep_alive: 60,
            client_id: id.to_owned(),
            will: None,
            username: None,
            password: None,
            properties: Default::default(),
        })))
        .map_err(|e| format!("CONNECT: {e}"))?;
        match c.read() {
            Ok(Packet::ConnAck(ConnAck {
                code: ReasonCode::Success,
                ..
            })) => Ok(c),
            other => Err(format!("CONNACK: {other:?}")),
        }
    }

    fn connect(addr: SocketAddr, ca: &Path, cert: Option<(&Path, &Path)>, id: &str) -> Self {
        Self::try_connect(addr, ca, cert, id).unwrap_or_else(|e| panic!("{id}: {e}"))
    }

    fn send(&mut self, packet: &Packet) -> std::io::Result<()> {
        let mut out = BytesMut::new();
        encode(packet, ProtocolVersion::V311, &mut out);
        self.stream.write_all(&out)?;
        self.stream.flush()
    }

    /// The next packet; an error if the connection closed or nothing came within `T`.
    fn read(&mut self) -> Result<Packet, String> {
        loop {
            if let Some(p) = decode(&mut self.buf, 1 << 20, ProtocolVersion::V311)
                .map_err(|e| format!("{e:?}"))?
            {
                return Ok(p);
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err("closed".to_owned()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    fn id(&mut self) -> u16 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn subscribe(&mut self, filter: &str) {
        let packet_id = self.id();
        self.send(&Packet::Subscribe(Subscribe {
            packet_id,
            filters: vec![(filter.to_owned(), QoS::AtLeastOnce.into())],
            properties: Default::default(),
        }))
        .expect("SUBSCRIBE");
        match self.read() {
            Ok(Packet::SubAck(ack)) if ack.codes == [SubAckCode::Granted(QoS::AtLeastOnce)] => {}
            other => panic!("expected SUBACK granting QoS 1, got {other:?}"),
        }
    }

    /// Publishes at QoS 1; returns once PUBACK came (and any PUBLISH read meanwhile).
    fn publish(&mut self, topic: &str, payload: &str) -> Vec<(String, String)> {
        let packet_id = self.id();
        self.send(&Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: topic.into(),
            packet_id,
            payload: Bytes::copy_from_slice(payload.as_bytes()),
            properties: Default::default(),
        }))
        .expect("PUBLISH");
        let mut got = Vec::new();
        loop {
            match self.read() {
                Ok(Packet::PubAck(Ack { packet_id: id, .. })) if id == packet_id => return got,
                Ok(Packet::Publish(p)) => got.push(self.ack(p)),
                other => panic!("expected PUBACK {packet_id}, got {other:?}"),
            }
        }
    }

    fn ack(&mut self, p: Publish) -> (String, String) {
        if p.qos == QoS::AtLeastOnce {
            self.send(&Packet::PubAck(Ack::new(p.packet_id)))
                .expect("PUBACK");
        }
        (p.topic.to_string(), text(&p.payload))
    }

    /// The next PUBLISH (acknowledged): (topic, payload).
    fn next_publish(&mut self) -> (String, String) {
        match self.read() {
            Ok(Packet::Publish(p)) => self.ack(p),
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
}

/// A TLS client subscribed to its own topic: `check` publishes and receives one message, so
/// a test can show the TLS listener's other connections never notice a bad one.
struct Healthy {
    client: TlsMqtt,
    sent: u32,
}

impl Healthy {
    fn connect(broker: &Broker, certs: &Certs, cert: Option<(&Path, &Path)>) -> Self {
        let mut client = TlsMqtt::connect(broker.tls(), &certs.ca(), cert, "healthy");
        client.subscribe("healthy/#");
        let mut h = Self { client, sent: 0 };
        h.check();
        h
    }

    fn check(&mut self) {
        self.sent += 1;
        let want = ("healthy/n".to_owned(), format!("m{}", self.sent));
        let mut got = self.client.publish(&want.0, &want.1);
        if got.is_empty() {
            got.push(self.client.next_publish());
        }
        assert_eq!(got, [want], "the healthy TLS client's own message");
    }
}

// --- fubar ssl new-certs ------------------------------------------------------------------

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn new_certs_writes_keys_0600_der_ca_and_overwrites_only_with_force() {
    require_openssl();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ssl");
    let out = new_certs(&dir, &["--client", "dev1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let files = [
        "cacert.pem",
        "cacert.cer",
        "cakey.pem",
        "cert.pem",
        "key.pem",
        "client-dev1.pem",
        "client-dev1.key.pem",
    ];
    let printed: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    for name in files {
        let path = dir.join(name);
        assert!(path.is_file(), "{name} not written");
        assert!(
            printed.contains(&path.display().to_string()),
            "{name} not printed: {printed:?}"
        );
        #[cfg(unix)]
        {
            let want = if name.contains("key") { 0o600 } else { 0o644 };
            assert_eq!(mode(&path), want, "mode of {name}");
        }
    }

    // cacert.cer is the DER of cacert.pem (openssl says so).
    let der = fs::read(dir.join("cacert.cer")).unwrap();
    assert_eq!(der[0], 0x30, "DER starts with a SEQUENCE");
    let conv = Command::new("openssl")
        .args(["x509", "-inform", "DER", "-outform", "PEM", "-in"])
        .arg(dir.join("cacert.cer"))
        .output()
        .expect("run openssl");
    assert!(conv.status.success(), "{}", text(&conv.stderr));
    assert_eq!(
        text(&conv.stdout).trim(),
        fs::read_to_string(dir.join("cacert.pem")).unwrap().trim()
    );

    // Again without --force: refused, the file named, nothing changed.
    let before: Vec<Vec<u8>> = files
        .iter()
        .map(|f| fs::read(dir.join(f)).unwrap())
        .collect();
    for extra in [&[][..], &["--client", "dev1"][..]] {
        let out = new_certs(&dir, extra);
        assert_eq!(out.status.code(), Some(1), "second run {extra:?}");
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("already exists") && err.contains("--force"),
            "{err}"
        );
        assert!(
            files
                .iter()
                .any(|f| err.contains(&dir.join(f).display().to_string())),
            "names no file: {err}"
        );
        let after: Vec<Vec<u8>> = files
            .iter()
            .map(|f| fs::read(dir.join(f)).unwrap())
            .collect();
        assert!(before == after, "a refused run changed files");
    }

    // A directory that cannot be made (under a regular file): one line, the reason once.
    let out = new_certs(&dir.join("cert.pem").join("sub"), &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("cert.pem/sub"), "{err}");
    assert_eq!(err.matches("(os error").count(), 1, "{err}");

    // --force: everything made again, keys still 0600.
    let out = new_certs(&dir, &["--client", "dev1", "--force"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for (name, old) in files.iter().zip(&before) {
        let path = dir.join(name);
        assert_ne!(&fs::read(&path).unwrap(), old, "{name} not regenerated");
        #[cfg(unix)]
        {
            let want = if name.contains("key") { 0o600 } else { 0o644 };
            assert_eq!(mode(&path), want, "mode of {name}");
        }
    }
}

// --- real clients -------------------------------------------------------------------------

/// `openssl s_client` against the TLS port with `-CAfile`, the TLS version flag `version`.
fn s_client(broker: &Broker, ca: &Path, version: &str) -> Output {
    Command::new("openssl")
        .args(["s_client", "-connect", &broker.tls().to_string()])
        .arg("-CAfile")
        .arg(ca)
        .args(["-verify_ip", "127.0.0.1", "-verify_return_error", version])
        .stdin(Stdio::null())
        .output()
        .expect("run openssl s_client")
}

#[test]
fn openssl_s_client_verifies_the_server_with_tls13_and_tls12() {
    require_openssl();
    let certs = Certs::new();
    let broker = tls_broker(&[], &certs.config("none", ""));
    for (flag, proto) in [("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")] {
        let out = s_client(&broker, &certs.ca(), flag);
        let stdout = text(&out.stdout);
        assert!(
            out.status.success(),
            "s_client {flag} failed: {stdout}\n{}",
            text(&out.stderr)
        );
        assert!(stdout.contains("Verify return code: 0 (ok)"), "{stdout}");
        assert!(
            stdout.contains(&format!("New, {proto}, Cipher is")),
            "{stdout}"
        );
    }
    // A CA that did not sign the server's certificate: verification fails.
    let other = certs.other();
    let out = s_client(&broker, &other.join("cacert.pem"), "-tls1_3");
    assert!(!out.status.success(), "{}", text(&out.stdout));
}

fn mosquitto(program: &str, addr: SocketAddr, args: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(["-h", "127.0.0.1", "-p", &addr.port().to_string()])
        .args(args);
    cmd
}

/// `--cafile CA` and, when given, `--cert`/`--key`, as mosquitto takes them.
fn tls_args(ca: &Path, cert: Option<&(PathBuf, PathBuf)>) -> Vec<String> {
    let mut args = vec!["--cafile".to_owned(), ca.display().to_string()];
    if let Some((cert, key)) = cert {
        args.extend([
            "--cert".to_owned(),
            cert.display().to_string(),
            "--key".to_owned(),
            key.display().to_string(),
        ]);
    }
    args
}

/// Waits until `client` has a subscription in place.
fn wait_subscribed(broker: &Broker, client: &str, sub: &mut Proc) {
    let needle = format!("subscription added client={client} ");
    if broker.wait_for_log(&needle, T).is_none() {
        let out = std::mem::replace(sub, Proc(None)).kill();
        panic!(
            "{client} did not subscribe; its stderr: {}\nlog:\n{}",
            text(&out.stderr),
            log_of(broker)
        );
    }
}

fn run_ok(broker: &Broker, what: &str, cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().expect(what);
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}\nlog:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr),
        log_of(broker)
    );
    text(&out.stdout)
}

/// mosquitto_sub over TLS gets a QoS 1 message from mosquitto_pub over TLS and one from
/// mosquitto_pub over plain TCP; `cert` is the client certificate both present.
fn mosquitto_tls_roundtrip(broker: &Broker, ca: &Path, cert: Option<&(PathBuf, PathBuf)>) {
    let tls = tls_args(ca, cert);
    let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
    let mut sub = Proc::spawn(&mut mosquitto(
        "mosquitto_sub",
        broker.tls(),
        &[
            &tls[..],
            &["-i", "tls-sub", "-t", "tls/#", "-q", "1", "-C", "2", "-W"],
            &[SUB_TIMEOUT, "-v"],
        ]
        .concat(),
    ));
    wait_subscribed(broker, "tls-sub", &mut sub);
    run_ok(
        broker,
        "mosquitto_pub over TLS",
        &mut mosquitto(
            "mosquitto_pub",
            broker.tls(),
            &[
                &tls[..],
                &["-i", "tls-pub", "-t", "tls/a", "-q", "1", "-m", "over tls"],
            ]
            .concat(),
        ),
    );
    wait_line(broker, &["dir=out ", "client=tls-pub ", "kind=PUBACK "]);
    run_ok(
        broker,
        "mosquitto_pub over TCP",
        &mut mosquitto(
            "mosquitto_pub",
            broker.addr,
            &["-i", "tcp-pub", "-t", "tls/b", "-q", "1", "-m", "over tcp"],
        ),
    );
    let out = sub.output();
    assert!(
        out.status.success(),
        "mosquitto_sub: {}\nlog:\n{}",
        text(&out.stderr),
        log_of(broker)
    );
    assert_eq!(text(&out.stdout), "tls/a over tls\ntls/b over tcp\n");
    wait_line(broker, &["dir=in ", "client=tls-sub ", "kind=PUBACK "]);
}

#[test]
fn mosquitto_over_tls_beside_plain_tcp() {
    require_mosquitto();
    let certs = Certs::new();
    let broker = tls_broker(&[], &certs.config("none", ""));
    mosquitto_tls_roundtrip(&broker, &certs.ca(), None);
}

#[test]
fn mosquitto_with_a_client_certificate_when_verification_is_required() {
    require_mosquitto();
    let certs = Certs::new();
    let broker = tls_broker(&[], &certs.config("required", ""));
    mosquitto_tls_roundtrip(&broker, &certs.ca(), Some(&certs.dev1()));
    let line = wait_line(&broker, &["TLS handshake done", "cert_cn=dev1"]);
    assert!(line.contains("access"), "{line}");

    // Without a certificate: refused, and the broker says why.
    let tls = tls_args(&certs.ca(), None);
    let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
    let out = mosquitto(
        "mosquitto_pub",
        broker.tls(),
        &[
            &tls[..],
            &["-i", "no-cert", "-t", "tls/x", "-q", "1", "-m", "x"],
        ]
        .concat(),
    )
    .stdin(Stdio::null())
    .output()
    .expect("run mosquitto_pub");
    assert!(
        !out.status.success(),
        "accepted without a client certificate"
    );
    let line = wait_refused(&broker, "TLS handshake failed");
    assert!(line.contains("no certificates"), "{line}");
    assert!(
        !log_of(&broker).contains("client=no-cert "),
        "the client got as far as MQTT"
    );
}

/// Connects with TLS trusting the CA file argv[2], subscribes to argv[3]/#, publishes one
/// QoS 1 message to it, prints what comes back. Arguments: port, CA file, topic.
const PAHO_TLS: &str = r#"
import os, sys, threading
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

port, ca, topic = int(sys.argv[1]), sys.argv[2], sys.argv[3]
guard = threading.Timer(20, lambda: os._exit(3))
guard.daemon = True
guard.start()

def on_connect(client, userdata, flags, reason_code, properties):
    if reason_code.is_failure:
        print("connect refused:", reason_code, file=sys.stderr, flush=True)
        os._exit(2)
    client.subscribe(topic + "/#", qos=1)

def on_subscribe(client, userdata, mid, reason_codes, properties):
    client.publish(topic + "/x", "paho over tls", qos=1)

def on_message(client, userdata, msg):
    print(msg.topic, msg.qos, msg.payload.decode(), flush=True)
    client.disconnect()

c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="paho-tls",
                protocol=mqtt.MQTTv311)
c.tls_set(ca_certs=ca)
c.on_connect = on_connect
c.on_subscribe = on_subscribe
c.on_message = on_message
c.connect("127.0.0.1", port, keepalive=30)
c.loop_forever()
"#;

#[test]
fn paho_over_tls() {
    require_paho();
    let certs = Certs::new();
    let broker = tls_broker(&[], &certs.config("none", ""));
    let script = broker.dir.path().join("paho_tls.py");
    fs::write(&script, PAHO_TLS).unwrap();
    let out = run_ok(
        &broker,
        "paho over TLS",
        Command::new("python3")
            .arg(&script)
            .arg(broker.tls().port().to_string())
            .arg(certs.ca())
            .arg("pt"),
    );
    assert_eq!(out, "pt/x 1 paho over tls\n");
    wait_line(&broker, &["TLS handshake done"]);
    wait_line(&broker, &[" connected client=paho-tls "]);
}

#[test]
fn username_from_cn_stands_for_the_password() {
    require_mosquitto();
    let certs = Certs::new();
    let broker = tls_broker(
        &["--auth"],
        &certs.config("required", "username_from_cn = true"),
    );
    let tls = tls_args(&certs.ca(), Some(&certs.dev1()));
    let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
    run_ok(
        &broker,
        "mosquitto_pub with a client certificate and no password",
        &mut mosquitto(
            "mosquitto_pub",
            broker.tls(),
            &[
                &tls[..],
                &["-i", "cn-pub", "-t", "cn/x", "-q", "1", "-m", "x"],
            ]
            .concat(),
        ),
    );
    let line = wait_line(&broker, &[" connected client=cn-pub "]);
    assert!(
        line.contains("access") && line.contains(" user=dev1 "),
        "{line}"
    );

    // Auth is on: the same client over plain TCP, without the certificate, is refused.
    let out = mosquitto(
        "mosquitto_pub",
        broker.addr,
        &["-i", "tcp-anon", "-t", "cn/x", "-q", "1", "-m", "x"],
    )
    .stdin(Stdio::null())
    .output()
    .expect("run mosquitto_pub");
    assert!(!out.status.success(), "anonymous plain client accepted");
}

// --- bad input on the TLS port ------------------------------------------------------------

/// A node on `config` with a healthy TLS client; `bad` does something bad to the TLS port;
/// then the `access` event with `reason` is there and the healthy client still works.
fn bad_input(certs: &Certs, config: &str, reason: &str, bad: impl FnOnce(&Broker)) -> String {
    let broker = tls_broker(&[], config);
    let verify_required = config.contains("verify = \"required\"");
    let dev1 = certs.dev1();
    let cert = verify_required.then_some((dev1.0.as_path(), dev1.1.as_path()));
    let mut healthy = Healthy::connect(&broker, certs, cert);
    bad(&broker);
    healthy.check();
    let line = wait_refused(&broker, reason);
    healthy.check();
    // The healthy client was never disconnected.
    assert!(
        !log_of(&broker).contains("disconnected client=healthy "),
        "{}",
        log_of(&broker)
    );
    line
}

#[test]
fn plain_mqtt_on_the_tls_port_is_closed_with_a_reason() {
    let certs = Certs::new();
    bad_input(&certs, &certs.config("none", ""), "plain MQTT", |broker| {
        let mut raw = RawClient::connect(broker.tls());
        raw.send(&connect_v311("plain-on-tls"));
        assert!(raw.closed_within(T), "plain MQTT client not closed");
    });
}

#[test]
fn random_bytes_on_the_tls_port_are_closed_with_a_reason() {
    let certs = Certs::new();
    // A fixed xorshift stream: reproducible, and its first byte is neither a TLS handshake
    // record nor a CONNECT.
    let mut x: u32 = 0x2545_f491;
    let bytes: Vec<u8> = (0..512)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect();
    assert!(bytes[0] != 0x16 && bytes[0] != 0x10, "{:#x}", bytes[0]);
    let line = bad_input(
        &certs,
        &certs.config("none", ""),
        "not a TLS handshake",
        |broker| {
            let mut raw = RawClient::connect(broker.tls());
            raw.send(&bytes);
            assert!(raw.closed_within(T), "garbage not closed");
        },
    );
    assert!(line.contains(&format!("0x{:02x}", bytes[0])), "{line}");
}

/// A client certificate that is not accepted, with verification required: the connection
/// gets no CONNACK and the broker says why.
fn refused_client_cert(cert: &Path, key: &Path, certs: &Certs, reason: &str) {
    bad_input(certs, &certs.config("required", ""), reason, |broker| {
        let out = TlsMqtt::try_connect(broker.tls(), &certs.ca(), Some((cert, key)), "bad-cert");
        assert!(out.is_err(), "accepted");
    });
}

#[test]
fn untrusted_client_certificate_is_closed_with_a_reason() {
    let certs = Certs::new();
    let (cert, key) = Certs::client_in(&certs.other(), "dev1");
    refused_client_cert(&cert, &key, &certs, "invalid peer certificate");
}

#[test]
fn expired_client_certificate_is_closed_with_a_reason() {
    let certs = Certs::new();
    // Signed by the right CA, but valid only in 2020.
    let ca_key =
        rcgen::KeyPair::from_pem(&fs::read_to_string(certs.file("cakey.pem")).unwrap()).unwrap();
    let issuer =
        rcgen::Issuer::from_ca_cert_pem(&fs::read_to_string(certs.ca()).unwrap(), ca_key).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "old");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let (cert_path, key_path) = (
        certs.file("client-old.pem"),
        certs.file("client-old.key.pem"),
    );
    fs::write(&cert_path, cert.pem()).unwrap();
    fs::write(&key_path, key.serialize_pem()).unwrap();
    refused_client_cert(&cert_path, &key_path, &certs, "expired");
}

#[test]
fn stalled_handshakes_time_out() {
    let certs = Certs::new();
    let config = certs.config_with("none", "", "handshake_timeout_secs = 1");
    let broker = tls_broker(&[], &config);
    let mut healthy = Healthy::connect(&broker, &certs, None);
    // Nothing at all, and the first bytes of a ClientHello (a record header announcing more).
    let mut silent = RawClient::connect(broker.tls());
    let mut partial = RawClient::connect(broker.tls());
    partial.send(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01]);
    healthy.check();
    assert!(silent.closed_within(T), "silent client not closed");
    assert!(partial.closed_within(T), "partial ClientHello not closed");
    let line = broker
        .wait_for_log_count("reason=TLS handshake timed out", 2, T)
        .unwrap_or_else(|| panic!("two timeouts not logged; log:\n{}", log_of(&broker)));
    assert!(
        line.contains("TLS connection refused") && line.contains("access"),
        "{line}"
    );
    healthy.check();
    assert!(!log_of(&broker).contains("disconnected client=healthy "));
}

// --- files the node cannot use ------------------------------------------------------------

/// `fubar node --mqtts-port 0` on `config`: it must exit 1 with one stderr line naming `file`.
fn refuses_to_start(config: &str, file: &Path) {
    let data = tempfile::tempdir().unwrap();
    let path = data.path().join("fubar.toml");
    fs::write(&path, config).unwrap();
    let out = fubar()
        .args([
            "node",
            "--bind",
            "127.0.0.1",
            "--mqtt-port",
            "0",
            "--mqtts-port",
            "0",
            "--name",
            crate::common::NODE_NAME,
        ])
        .arg("--data-dir")
        .arg(data.path())
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run fubar node");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains(&file.display().to_string()), "{err}");
    // The reason is said once (not "...: No such file (os error 2): No such file (os error 2)").
    assert_eq!(err.matches("(os error").count(), 1, "{err}");
    assert!(
        !text(&out.stdout).contains("listening"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn missing_or_unreadable_certificate_or_key_stops_the_node() {
    let certs = Certs::new();
    let nowhere = certs.file("nowhere.pem");
    // A directory where a file should be: it cannot be read (even by root).
    let dir = certs.file("a-directory");
    fs::create_dir(&dir).unwrap();
    let config =
        |cert: &Path, key: &Path| format!("[ssl]\ncertfile = {cert:?}\nkeyfile = {key:?}\n");
    let (cert, key) = (certs.file("cert.pem"), certs.file("key.pem"));
    refuses_to_start(&config(&nowhere, &key), &nowhere);
    refuses_to_start(&config(&cert, &nowhere), &nowhere);
    refuses_to_start(&config(&dir, &key), &dir);
    refuses_to_start(&config(&cert, &dir), &dir);
}

// --- fubar ctl ssl reload -----------------------------------------------------------------

#[test]
fn ssl_reload_swaps_certificates_for_new_connections_only() {
    let certs = Certs::new();
    let broker = tls_broker(&[], &certs.config("none", ""));
    let old_ca = certs.file("old-cacert.pem");
    fs::copy(certs.ca(), &old_ca).unwrap();
    let mut sub = TlsMqtt::connect(broker.tls(), &old_ca, None, "old-sub");
    sub.subscribe("r/#");

    // Renewed: a new CA and server certificate in the same files.
    new_certs_ok(&certs.dir(), &["--force"]);
    let out = broker.ctl(&["ssl", "reload"]);
    assert!(out.status.success(), "reload: {}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("reloaded"),
        "{}",
        text(&out.stdout)
    );

    // New connections: the new CA is trusted, the old one is not.
    let mut new = TlsMqtt::connect(broker.tls(), &certs.ca(), None, "new-pub");
    let err = TlsMqtt::try_connect(broker.tls(), &old_ca, None, "old-trust")
        .err()
        .expect("a client trusting only the old CA connected after the reload");
    assert!(err.contains("handshake"), "{err}");
    // The existing subscriber is still there.
    new.publish("r/1", "after reload");
    assert_eq!(sub.next_publish(), ("r/1".into(), "after reload".into()));

    // A broken certificate file: an error, and the certificates in use stay.
    fs::write(certs.file("cert.pem"), "not a certificate\n").unwrap();
    let out = broker.ctl(&["ssl", "reload"]);
    assert!(!out.status.success(), "broken reload succeeded");
    let err = text(&out.stderr);
    assert!(
        err.contains(&certs.file("cert.pem").display().to_string())
            && err.contains("previous certificates stay in use"),
        "{err}"
    );
    let mut again = TlsMqtt::connect(broker.tls(), &certs.ca(), None, "after-broken");
    again.publish("r/2", "after broken reload");
    assert_eq!(
        sub.next_publish(),
        ("r/2".into(), "after broken reload".into())
    );
    assert!(TlsMqtt::try_connect(broker.tls(), &old_ca, None, "old-trust-2").is_err());
}

#[test]
fn tls_a_client_closed_while_writing_gets_close_notify_not_a_reset() {
    // Issue 15.3 over TLS: the server closes a client sending a packet over its maximum;
    // it sends close_notify, then reads and discards what still comes, so the client's
    // writes succeed and it reads the orderly end of the stream.
    let certs = Certs::new();
    let broker = tls_broker(
        &[],
        &format!(
            "[mqtt]\nmax_packet_size = 65536\n{}",
            certs.config("none", "")
        ),
    );
    let addr = broker.tls_addr.unwrap();
    for round in 0..10 {
        let mut c = TlsMqtt::connect(addr, &certs.ca(), None, &format!("big-tls{round}"));
        // PUBLISH QoS 0 to "t", twice the maximum, written in pieces.
        let mut body = vec![0u8, 1, b't'];
        body.resize(2 << 16, b'x');
        let mut packet = vec![0x30];
        packet.extend(crate::common::varint(body.len()));
        packet.extend_from_slice(&body);
        for chunk in packet.chunks(8 << 10) {
            c.stream
                .write_all(chunk)
                .unwrap_or_else(|e| panic!("round {round}: write failed: {e}"));
        }
        c.stream.flush().expect("flush");
        match c.read() {
            Err(e) if e == "closed" => {}
            other => panic!("round {round}: expected close_notify, got {other:?}"),
        }
    }
}
