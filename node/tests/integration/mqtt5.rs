//! MQTT 5.0 with an independent client (paho-mqtt, MQTTv5): the CONNACK's assigned client id
//! and availability flags, properties passed through unchanged (response topic, correlation
//! data, user properties, content type), a 3.1.1 client on the same topic, and the server's
//! DISCONNECT with reason 0x8E when a session is taken over; enhanced authentication refused
//! with 0x8C (no method is configured); subscription options no local, retain as published
//! and retain handling.

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
            "auth 140",
            // retain handling 2: no retained message at subscribe; retain as published
            "opts keep/x new 1",
            // no local: its own message to "mine" does not come back
            "opts mine other 0",
        ],
        "{text}"
    );
}

#[test]
fn fubar_pub_and_sub_speak_version_5() {
    let broker = Broker::start();
    let port = broker.port().to_string();
    let fubar = env!("CARGO_BIN_EXE_fubar");
    let mut sub = crate::common::Proc::spawn(Command::new(fubar).args([
        "sub",
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-V",
        "mqttv5",
        "-t",
        "five/#",
        "-C",
        "1",
        "-v",
        "-i",
        "sub5",
    ]));
    broker.wait_for_log_count("client=sub5", 1, std::time::Duration::from_secs(10));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let out = Command::new(fubar)
            .args([
                "pub",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-V",
                "5",
                "-t",
                "five/a",
                "-m",
                "hi",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        if sub.0.as_mut().unwrap().try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the v5 subscriber got nothing"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let text = String::from_utf8_lossy(&sub.output().stdout).into_owned();
    assert_eq!(text.trim(), "five/a hi");
    let lines = broker.log_lines();
    let line = lines
        .iter()
        .find(|l| l.contains(" connected") && l.contains("client=sub5 "))
        .expect("the subscriber's connection is logged");
    assert!(line.contains("protocol=5.0"), "{line}");
}
