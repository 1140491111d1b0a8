//! MQTT 5.0 with an independent client (paho-mqtt, MQTTv5): the CONNACK's assigned client id
//! and availability flags, properties passed through unchanged (response topic, correlation
//! data, user properties, content type), a 3.1.1 client on the same topic, and the server's
//! DISCONNECT with reason 0x8E when a session is taken over.

use std::process::Command;

use crate::common::Broker;

/// The paho script: prints one line per check.
const SCRIPT: &str = include_str!("mqtt5_paho.py");

#[test]
fn paho_v5_properties_pass_through_beside_a_311_client_and_takeover_says_why() {
    let check = Command::new("python3")
        .args(["-c", "import paho.mqtt.client, paho.mqtt.enums"])
        .output()
        .expect("python3");
    assert!(
        check.status.success(),
        "paho-mqtt 2.x is needed (scripts/test.sh installs it)"
    );
    let broker = Broker::start();
    let script = broker.dir.path().join("v5.py");
    std::fs::write(&script, SCRIPT).unwrap();
    let out = Command::new("python3")
        .arg(&script)
        .arg(broker.port().to_string())
        .output()
        .expect("run python3");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "connack 0 True 1 1",
            "v311 req/x hello",
            "v5 req/x hello resp/1 b'corr-42' [('k', 'v')] text/plain",
            "takeover 142",
        ],
        "{text}"
    );
}
