//! Independent clients against the broker: `mosquitto_sub`/`mosquitto_pub` (Debian
//! `mosquitto-clients`) and Python `paho-mqtt` 2.x. A missing tool fails the test with the
//! command that installs it.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::{log_of, Broker, Proc};

/// Upper bound for anything the broker or a client should do promptly.
const T: Duration = Duration::from_secs(10);
/// `-W` for mosquitto_sub: it gives up (and the test fails) after this many seconds.
const SUB_TIMEOUT: &str = "10";

const MOSQUITTO_INSTALL: &str = "apt-get install -y mosquitto-clients";
const PAHO_INSTALL: &str = "python3 -m pip install 'paho-mqtt>=2,<3'";

/// Fails the test unless `program` can be run.
fn require(program: &str, install: &str) {
    if let Err(e) = Command::new(program).arg("--help").output() {
        panic!(
            "{program} is needed by this test but cannot be run ({e}); install it with `{install}`"
        );
    }
}

fn require_mosquitto() {
    require("mosquitto_sub", MOSQUITTO_INSTALL);
    require("mosquitto_pub", MOSQUITTO_INSTALL);
}

fn require_paho() {
    require("python3", "apt-get install -y python3");
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

fn mosquitto(broker: &Broker, program: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(["-h", "127.0.0.1", "-p", &broker.port().to_string()])
        .args(args);
    cmd
}

/// Runs mosquitto_pub to completion; it must succeed.
fn mosquitto_pub(broker: &Broker, args: &[&str]) {
    let out = mosquitto(broker, "mosquitto_pub", args)
        .output()
        .expect("run mosquitto_pub");
    assert!(
        out.status.success(),
        "mosquitto_pub {args:?} failed: {}\nlog:\n{}",
        String::from_utf8_lossy(&out.stderr),
        log_of(broker)
    );
}

/// Waits for a stdout line of the broker containing every needle; returns it.
fn wait_line(broker: &Broker, needles: &[&str]) -> String {
    broker.expect_line(needles, T)
}

/// Waits until `client` has a subscription in place.
fn wait_subscribed(broker: &Broker, client: &str, sub: &mut Proc) {
    let needle = format!("subscription added client={client} ");
    if broker.wait_for_log(&needle, T).is_none() {
        let out = std::mem::replace(sub, Proc(None));
        let out = out.kill();
        panic!(
            "{client} did not subscribe; its stderr: {}\nlog:\n{}",
            String::from_utf8_lossy(&out.stderr),
            log_of(broker)
        );
    }
}

/// The process's stdout, after checking it exited successfully.
fn stdout_of(broker: &Broker, what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}): stdout {:?}, stderr {:?}\nlog:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        log_of(broker)
    );
    String::from_utf8(out.stdout.clone()).expect("utf-8 output")
}

// --- mosquitto_sub / mosquitto_pub --------------------------------------------------------

/// One message through mosquitto clients at `qos`, end to end; the broker's packet log shows
/// the QoS flow was the one asked for.
fn mosquitto_roundtrip(qos: u8) {
    require_mosquitto();
    let broker = Broker::start();
    let (sub_id, pub_id) = (format!("sub-q{qos}"), format!("pub-q{qos}"));
    let (topic, message) = (format!("it/q{qos}"), format!("hello q{qos}"));
    let q = qos.to_string();
    let mut sub = Proc::spawn(&mut mosquitto(
        &broker,
        "mosquitto_sub",
        &[
            "-i",
            &sub_id,
            "-t",
            &topic,
            "-q",
            &q,
            "-C",
            "1",
            "-W",
            SUB_TIMEOUT,
            "-v",
        ],
    ));
    wait_subscribed(&broker, &sub_id, &mut sub);
    mosquitto_pub(
        &broker,
        &["-i", &pub_id, "-t", &topic, "-q", &q, "-m", &message],
    );
    let out = stdout_of(&broker, "mosquitto_sub", &sub.output());
    assert_eq!(out, format!("{topic} {message}\n"));

    let sub_client = format!("client={sub_id} ");
    let pub_client = format!("client={pub_id} ");
    let qos_field = format!("qos={qos} ");
    wait_line(
        &broker,
        &["dir=in ", &pub_client, "kind=PUBLISH ", &qos_field],
    );
    wait_line(
        &broker,
        &["dir=out ", &sub_client, "kind=PUBLISH ", &qos_field],
    );
    match qos {
        1 => {
            wait_line(&broker, &["dir=out ", &pub_client, "kind=PUBACK "]);
            wait_line(&broker, &["dir=in ", &sub_client, "kind=PUBACK "]);
        }
        2 => {
            wait_line(&broker, &["dir=in ", &pub_client, "kind=PUBREL "]);
            wait_line(&broker, &["dir=out ", &pub_client, "kind=PUBCOMP "]);
            wait_line(&broker, &["dir=in ", &sub_client, "kind=PUBREC "]);
            wait_line(&broker, &["dir=in ", &sub_client, "kind=PUBCOMP "]);
        }
        _ => {}
    }
}

#[test]
fn mosquitto_qos0() {
    mosquitto_roundtrip(0);
}

#[test]
fn mosquitto_qos1() {
    mosquitto_roundtrip(1);
}

#[test]
fn mosquitto_qos2() {
    mosquitto_roundtrip(2);
}

#[test]
fn mosquitto_retained_message_reaches_later_subscriber_and_can_be_cleared() {
    require_mosquitto();
    let broker = Broker::start();
    let topic = "it/retained";
    // QoS 1: mosquitto_pub exits after PUBACK, by which time the broker stored the message.
    mosquitto_pub(
        &broker,
        &["-i", "pub-r", "-t", topic, "-q", "1", "-r", "-m", "kept"],
    );
    wait_line(&broker, &["retained message set", "topic=it/retained"]);

    let format = ["-F", "%r %q %t %p"];
    let mut sub = Proc::spawn(&mut mosquitto(
        &broker,
        "mosquitto_sub",
        &[
            &[
                "-i",
                "late",
                "-t",
                topic,
                "-q",
                "1",
                "-C",
                "1",
                "-W",
                SUB_TIMEOUT,
            ][..],
            &format[..],
        ]
        .concat(),
    ));
    wait_subscribed(&broker, "late", &mut sub);
    let out = stdout_of(&broker, "mosquitto_sub", &sub.output());
    assert_eq!(
        out, "1 1 it/retained kept\n",
        "retain flag, QoS, topic, payload"
    );

    // An empty retained message clears it: the next subscriber's first message is a live one.
    mosquitto_pub(
        &broker,
        &["-i", "pub-r", "-t", topic, "-q", "1", "-r", "-n"],
    );
    wait_line(&broker, &["retained message cleared", "topic=it/retained"]);
    let mut sub = Proc::spawn(&mut mosquitto(
        &broker,
        "mosquitto_sub",
        &[
            &[
                "-i",
                "later",
                "-t",
                topic,
                "-q",
                "1",
                "-C",
                "1",
                "-W",
                SUB_TIMEOUT,
            ][..],
            &format[..],
        ]
        .concat(),
    ));
    wait_subscribed(&broker, "later", &mut sub);
    mosquitto_pub(
        &broker,
        &["-i", "pub-r", "-t", topic, "-q", "1", "-m", "live"],
    );
    let out = stdout_of(&broker, "mosquitto_sub", &sub.output());
    assert_eq!(out, "0 1 it/retained live\n");
}

/// Subscribe and publish with mosquitto clients speaking `version` (`-V`); the broker logs
/// the protocol it saw as `protocol`.
fn mosquitto_version(version: &str, protocol: &str) {
    require_mosquitto();
    let broker = Broker::start();
    let topic = format!("it/{version}");
    let (sub_id, pub_id) = (format!("sub-{version}"), format!("pub-{version}"));
    let mut sub = Proc::spawn(&mut mosquitto(
        &broker,
        "mosquitto_sub",
        &[
            "-V",
            version,
            "-i",
            &sub_id,
            "-t",
            &topic,
            "-q",
            "1",
            "-C",
            "1",
            "-W",
            SUB_TIMEOUT,
            "-v",
        ],
    ));
    wait_subscribed(&broker, &sub_id, &mut sub);
    mosquitto_pub(
        &broker,
        &[
            "-V",
            version,
            "-i",
            &pub_id,
            "-t",
            &topic,
            "-q",
            "1",
            "-m",
            "versioned",
        ],
    );
    let out = stdout_of(&broker, "mosquitto_sub", &sub.output());
    assert_eq!(out, format!("{topic} versioned\n"));
    let protocol = format!("protocol={protocol} ");
    for id in [&sub_id, &pub_id] {
        let line = wait_line(&broker, &[" connected", &format!("client={id} ")]);
        assert!(line.contains(&protocol), "{line}");
    }
}

#[test]
fn mosquitto_mqtt_31() {
    mosquitto_version("mqttv31", "3.1");
}

#[test]
fn mosquitto_mqtt_311() {
    mosquitto_version("mqttv311", "3.1.1");
}

#[test]
fn mosquitto_will_is_published_when_client_is_killed() {
    require_mosquitto();
    let broker = Broker::start();
    let mut watcher = Proc::spawn(&mut mosquitto(
        &broker,
        "mosquitto_sub",
        &[
            "-i",
            "watcher",
            "-t",
            "it/will",
            "-q",
            "1",
            "-C",
            "1",
            "-W",
            SUB_TIMEOUT,
            "-v",
        ],
    ));
    wait_subscribed(&broker, "watcher", &mut watcher);
    let mut doomed = Proc::spawn(&mut mosquitto(
        &broker,
        "mosquitto_sub",
        &[
            "-i",
            "doomed",
            "-t",
            "it/unused",
            "--will-topic",
            "it/will",
            "--will-payload",
            "doomed is gone",
            "--will-qos",
            "1",
        ],
    ));
    wait_subscribed(&broker, "doomed", &mut doomed);
    doomed.kill();
    let out = stdout_of(&broker, "watcher", &watcher.output());
    assert_eq!(out, "it/will doomed is gone\n");
    wait_line(&broker, &["publishing will", "client=doomed "]);
}

#[test]
fn mosquitto_persistent_session_gets_messages_sent_while_away() {
    require_mosquitto();
    let broker = Broker::start();
    let topic = "it/persist";
    let session = ["-c", "-i", "persist", "-t", topic, "-q", "1"];
    // -E: subscribe, wait for the SUBACK, disconnect (the session stays).
    let out = mosquitto(&broker, "mosquitto_sub", &[&session[..], &["-E"]].concat())
        .output()
        .expect("run mosquitto_sub");
    stdout_of(&broker, "mosquitto_sub -E", &out);
    wait_line(
        &broker,
        &[" disconnected client=persist ", "reason=disconnect"],
    );

    mosquitto_pub(
        &broker,
        &["-i", "pub-p", "-t", topic, "-q", "1", "-m", "while away 1"],
    );
    mosquitto_pub(
        &broker,
        &["-i", "pub-p", "-t", topic, "-q", "1", "-m", "while away 2"],
    );

    let back = Proc::spawn(&mut mosquitto(
        &broker,
        "mosquitto_sub",
        &[&session[..], &["-C", "2", "-W", SUB_TIMEOUT, "-v"]].concat(),
    ));
    let out = stdout_of(&broker, "mosquitto_sub (back)", &back.output());
    assert_eq!(out, "it/persist while away 1\nit/persist while away 2\n");
    wait_line(&broker, &["session resumed", "client=persist "]);
    let line = wait_line(
        &broker,
        &[" connected client=persist ", "session_present=true"],
    );
    assert!(line.contains("clean_session=false"), "{line}");
}

// --- paho-mqtt ----------------------------------------------------------------------------

/// Subscribes to `<topic>/#` at QoS 2 and prints `topic qos payload` for each of `count`
/// messages, then disconnects. Arguments: port, protocol (3.1 or 3.1.1), client id, topic,
/// count.
const PAHO_SUB: &str = r#"
import os, sys, threading
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

port, proto, cid, topic, count = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
protocol = {"3.1": mqtt.MQTTv31, "3.1.1": mqtt.MQTTv311}[proto]
guard = threading.Timer(20, lambda: os._exit(3))
guard.daemon = True
guard.start()
got = 0

def on_connect(client, userdata, flags, reason_code, properties):
    if reason_code.is_failure:
        print("connect refused:", reason_code, file=sys.stderr, flush=True)
        os._exit(2)
    client.subscribe(topic + "/#", qos=2)

def on_message(client, userdata, msg):
    global got
    print(msg.topic, msg.qos, msg.payload.decode(), flush=True)
    got += 1
    if got == count:
        client.disconnect()

c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=cid, protocol=protocol)
c.on_connect = on_connect
c.on_message = on_message
c.connect("127.0.0.1", port, keepalive=30)
c.loop_forever()
"#;

/// Publishes `m0`, `m1`, `m2` to `<topic>/q0`, `/q1`, `/q2` at QoS 0, 1, 2, each
/// acknowledged before the next. Arguments: port, protocol, client id, topic.
const PAHO_PUB: &str = r#"
import os, sys, threading
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

port, proto, cid, topic = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
protocol = {"3.1": mqtt.MQTTv31, "3.1.1": mqtt.MQTTv311}[proto]
connected = threading.Event()

def on_connect(client, userdata, flags, reason_code, properties):
    if reason_code.is_failure:
        print("connect refused:", reason_code, file=sys.stderr, flush=True)
        os._exit(2)
    connected.set()

c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=cid, protocol=protocol)
c.on_connect = on_connect
c.connect("127.0.0.1", port, keepalive=30)
c.loop_start()
if not connected.wait(10):
    sys.exit("no CONNACK")
for qos in (0, 1, 2):
    info = c.publish(f"{topic}/q{qos}", f"m{qos}", qos=qos)
    info.wait_for_publish(10)
    if not info.is_published():
        sys.exit(f"QoS {qos} publish not completed")
    print("published", qos, flush=True)
c.disconnect()
c.loop_stop()
"#;

fn python(script: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("python3");
    cmd.arg(script).args(args);
    cmd
}

/// A paho subscriber and a paho publisher, both speaking `protocol`, exchange messages at
/// QoS 0, 1 and 2.
fn paho_roundtrip(protocol: &str, tag: &str) {
    require_paho();
    let broker = Broker::start();
    let sub_py = broker.dir.path().join("paho_sub.py");
    let pub_py = broker.dir.path().join("paho_pub.py");
    std::fs::write(&sub_py, PAHO_SUB).unwrap();
    std::fs::write(&pub_py, PAHO_PUB).unwrap();
    let port = broker.port().to_string();
    let topic = format!("pa/{tag}");
    let (sub_id, pub_id) = (format!("paho-sub-{tag}"), format!("paho-pub-{tag}"));

    let mut sub = Proc::spawn(&mut python(
        &sub_py,
        &[&port, protocol, &sub_id, &topic, "3"],
    ));
    wait_subscribed(&broker, &sub_id, &mut sub);
    let out = python(&pub_py, &[&port, protocol, &pub_id, &topic])
        .output()
        .expect("run python3");
    let published = stdout_of(&broker, "paho publisher", &out);
    assert_eq!(published, "published 0\npublished 1\npublished 2\n");

    let received = stdout_of(&broker, "paho subscriber", &sub.output());
    let mut lines: Vec<&str> = received.lines().collect();
    lines.sort_unstable();
    let expected: Vec<String> = (0..3).map(|q| format!("{topic}/q{q} {q} m{q}")).collect();
    assert_eq!(lines, expected, "subscriber output:\n{received}");

    let protocol = format!("protocol={protocol} ");
    for id in [&sub_id, &pub_id] {
        let line = wait_line(&broker, &[" connected", &format!("client={id} ")]);
        assert!(line.contains(&protocol), "{line}");
    }
}

#[test]
fn paho_mqtt_311_qos_0_1_2() {
    paho_roundtrip("3.1.1", "v311");
}

#[test]
fn paho_mqtt_31_qos_0_1_2() {
    paho_roundtrip("3.1", "v31");
}
