//! MQTT 5.0 with an independent client (paho-mqtt, MQTTv5): the CONNACK's assigned client id
//! and availability flags, properties passed through unchanged (response topic, correlation
//! data, user properties, content type), a 3.1.1 client on the same topic, and the server's
//! DISCONNECT with reason 0x8E when a session is taken over; enhanced authentication refused
//! with 0x8C (no method is configured); subscription options no local, retain as published
//! and retain handling.

use std::process::Command;
use std::time::Duration;

use crate::common::{exit_within, run_paho, Broker};

const WAIT: Duration = Duration::from_secs(20);

/// The paho script: prints one line per check.
const SCRIPT: &str = include_str!("mqtt5_paho.py");

#[test]
fn paho_v5_properties_pass_through_beside_a_311_client_and_takeover_says_why() {
    let broker = Broker::start();
    let lines = run_paho(&broker, "v5.py", SCRIPT, &[]);
    assert_eq!(
        lines,
        [
            "connack 0 True 1 1",
            "v311 req/x hello",
            "v5 req/x hello resp/1 b'corr-42' [('k', 'v')] text/plain",
            "takeover 142 taken over",
            "auth 140",
            // retain handling 2: no retained message at subscribe; retain as published
            "opts keep/x new 1",
            // no local: its own message to "mine" does not come back
            "opts mine other 0",
        ],
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
    // Logged once the subscription is in the router: one message is enough from then on.
    broker
        .wait_for_log("subscription added client=sub5 ", WAIT)
        .expect("sub5 subscribes");
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
    let got = exit_within(sub.0.take().unwrap(), WAIT)
        .unwrap_or_else(|out| panic!("the v5 subscriber got nothing: {out:?}"));
    let text = String::from_utf8_lossy(&got.stdout).into_owned();
    assert_eq!(text.trim(), "five/a hi");
    let lines = broker.log_lines();
    let line = lines
        .iter()
        .find(|l| l.contains(" connected") && l.contains("client=sub5 "))
        .expect("the subscriber's connection is logged");
    assert!(line.contains("protocol=5.0"), "{line}");
}

#[test]
fn a_v5_clients_receive_maximum_bounds_what_it_has_in_flight() {
    use bytes::Bytes;
    use fubar::mqtt::packet::{Ack, Connect, Packet, ProtocolVersion, Publish, QoS, Subscribe};
    use fubar::mqtt::properties::Properties;
    use fubar::tools::client::connect_with;
    use std::time::Duration;

    let broker = Broker::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let connect = |id: &str, receive_maximum| Connect {
            protocol: ProtocolVersion::V5,
            clean_session: true,
            keep_alive: 60,
            client_id: id.to_owned(),
            will: None,
            username: None,
            password: None,
            properties: Properties {
                receive_maximum,
                ..Properties::default()
            },
        };
        let (mut r, mut w, _) = connect_with(broker.addr, None, connect("slow", Some(2)))
            .await
            .unwrap();
        w.push(&Packet::Subscribe(Subscribe {
            packet_id: 1,
            filters: vec![("rm".into(), QoS::AtLeastOnce.into())],
            properties: Properties::default(),
        }));
        w.flush().await.unwrap();
        assert!(matches!(r.next().await.unwrap(), Packet::SubAck(_)));
        let (_pr, mut pw, _) = connect_with(broker.addr, None, connect("fast", None))
            .await
            .unwrap();
        for i in 1..=5u16 {
            pw.push(&Packet::Publish(Publish {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain: false,
                topic: "rm".into(),
                packet_id: i,
                payload: Bytes::from_static(b"m"),
                properties: Properties::default(),
            }));
        }
        pw.flush().await.unwrap();
        // Without acknowledging: two in flight, no more.
        let mut ids = Vec::new();
        while let Ok(Ok(p)) = tokio::time::timeout(Duration::from_millis(700), r.next()).await {
            if let Packet::Publish(p) = p {
                ids.push(p.packet_id);
            }
        }
        assert_eq!(ids.len(), 2, "receive maximum 2: {ids:?}");
        // One acknowledged: one more comes.
        w.push(&Packet::PubAck(Ack::new(ids[0])));
        w.flush().await.unwrap();
        let next = tokio::time::timeout(Duration::from_secs(5), r.next())
            .await
            .expect("a third message after the acknowledgement")
            .unwrap();
        assert!(matches!(next, Packet::Publish(_)), "{next:?}");
    });
}
