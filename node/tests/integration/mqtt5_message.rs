//! MQTT 5.0 message features with an independent client (rumqttc::v5): the message expiry
//! interval (a queued message of an offline session expires; one that lives is sent with what
//! remains of its interval, also after a restart; a retained message expires), subscription
//! identifiers (one copy for overlapping subscriptions carries both; retained messages carry
//! the subscription's; a client may not send one), a 3.1.1 subscriber beside them getting the
//! plain message, and retain as published for copies from another cluster node.

use std::collections::VecDeque;
use std::path::Path;
use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::v5::{
    ConnAck, ConnectReturnCode, DisconnectReasonCode, Filter, Publish, PublishProperties,
    SubscribeProperties,
};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{Client, Connection, ConnectionError, Event, Incoming, MqttOptions, StateError};
use rumqttc::Outgoing;

use crate::common::Broker;
use crate::conformance::support::Mqtt;

/// How long to wait for what must happen before the test fails.
const WAIT: Duration = Duration::from_secs(15);

/// A rumqttc v5 client, driven by the test's own calls (its event loop runs on a runtime of
/// its own while the test waits for an event).
struct V5 {
    id: String,
    client: Client,
    conn: Connection,
    /// PUBLISH packets received while waiting for something else.
    stash: VecDeque<Publish>,
}

impl V5 {
    /// A clean connection without a session expiry interval.
    fn connect(broker: &Broker, id: &str) -> (Self, ConnAck) {
        Self::connect_with(broker, id, true, None)
    }

    /// A connection with clean start and session expiry interval as given; waits for CONNACK.
    fn connect_with(
        broker: &Broker,
        id: &str,
        clean_start: bool,
        expiry: Option<u32>,
    ) -> (Self, ConnAck) {
        let mut o = MqttOptions::new(id, "127.0.0.1", broker.port());
        o.set_keep_alive(Duration::from_secs(60));
        o.set_clean_start(clean_start);
        o.set_session_expiry_interval(expiry);
        let (client, conn) = Client::new(o, 100);
        let mut c = Self {
            id: id.to_owned(),
            client,
            conn,
            stash: VecDeque::new(),
        };
        let connack = c.wait("CONNACK", |e| match e {
            Event::Incoming(Incoming::ConnAck(a)) => Some(a.clone()),
            _ => None,
        });
        assert_eq!(connack.code, ConnectReturnCode::Success, "{id}");
        (c, connack)
    }

    /// The next event before `deadline`: `None` on timeout, the error if the connection
    /// failed.
    fn event(&mut self, deadline: Instant) -> Option<Result<Event, ConnectionError>> {
        let left = deadline.checked_duration_since(Instant::now())?;
        self.conn.recv_timeout(left).ok()
    }

    /// Waits for the first event for which `f` says `Some` (PUBLISH packets before it are
    /// kept for `next_publish`).
    fn wait<T>(&mut self, what: &str, mut f: impl FnMut(&Event) -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        while let Some(e) = self.event(deadline) {
            let e = e.unwrap_or_else(|e| panic!("{}: waiting for {what}: {e:?}", self.id));
            if let Some(t) = f(&e) {
                return t;
            }
            if let Event::Incoming(Incoming::Publish(p)) = e {
                self.stash.push_back(p);
            }
        }
        panic!("{}: no {what}", self.id)
    }

    /// Waits until the broker ends the connection; returns why.
    fn wait_error(&mut self) -> ConnectionError {
        let deadline = Instant::now() + WAIT;
        while let Some(e) = self.event(deadline) {
            if let Err(e) = e {
                return e;
            }
        }
        panic!("{}: the connection was not closed", self.id)
    }

    /// Subscribes to `filters` in one SUBSCRIBE with subscription identifier `id`.
    fn subscribe(&mut self, filters: Vec<Filter>, id: Option<usize>) {
        let properties = SubscribeProperties {
            id,
            user_properties: Vec::new(),
        };
        self.client
            .subscribe_many_with_properties(filters, properties)
            .unwrap();
        self.wait("SUBACK", |e| {
            matches!(e, Event::Incoming(Incoming::SubAck(_))).then_some(())
        });
    }

    /// Subscribes to one filter at QoS 1.
    fn subscribe_one(&mut self, filter: &str, id: Option<usize>) {
        self.subscribe(vec![Filter::new(filter, QoS::AtLeastOnce)], id);
    }

    /// Publishes at QoS 1 with these properties and waits for PUBACK.
    fn publish_with(&mut self, topic: &str, retain: bool, payload: &str, p: PublishProperties) {
        self.client
            .publish_with_properties(topic, QoS::AtLeastOnce, retain, payload.to_owned(), p)
            .unwrap();
        let pkid = self.wait("PUBLISH sent", |e| match e {
            Event::Outgoing(Outgoing::Publish(id)) => Some(*id),
            _ => None,
        });
        self.wait("PUBACK", |e| {
            matches!(e, Event::Incoming(Incoming::PubAck(a)) if a.pkid == pkid).then_some(())
        });
    }

    /// Publishes at QoS 1 with message expiry interval `expiry`, and waits for PUBACK.
    fn publish(&mut self, topic: &str, retain: bool, payload: &str, expiry: Option<u32>) {
        let p = PublishProperties {
            message_expiry_interval: expiry,
            ..PublishProperties::default()
        };
        self.publish_with(topic, retain, payload, p);
    }

    /// The next PUBLISH received.
    fn next_publish(&mut self) -> Publish {
        if let Some(p) = self.stash.pop_front() {
            return p;
        }
        self.wait("PUBLISH", |e| match e {
            Event::Incoming(Incoming::Publish(p)) => Some(p.clone()),
            _ => None,
        })
    }

    /// The PUBLISH packets received up to the one with payload `marker` (left out). Sent
    /// after the others from one publisher, the marker comes after every earlier message of
    /// the session: what has not come by then never will.
    fn until(&mut self, marker: &str) -> Vec<Publish> {
        let mut got = Vec::new();
        loop {
            let p = self.next_publish();
            if p.payload == marker.as_bytes() {
                return got;
            }
            got.push(p);
        }
    }

    /// Sends DISCONNECT (normal: a session with an expiry interval stays).
    fn disconnect(mut self) {
        self.client.disconnect().unwrap();
        self.wait("DISCONNECT sent", |e| {
            matches!(e, Event::Outgoing(Outgoing::Disconnect)).then_some(())
        });
    }
}

fn payload(p: &Publish) -> String {
    String::from_utf8_lossy(&p.payload).into_owned()
}

fn expiry(p: &Publish) -> Option<u32> {
    p.properties
        .as_ref()
        .and_then(|p| p.message_expiry_interval)
}

fn subscription_ids(p: &Publish) -> Vec<usize> {
    let mut ids = p
        .properties
        .as_ref()
        .map(|p| p.subscription_identifiers.clone())
        .unwrap_or_default();
    ids.sort_unstable();
    ids
}

/// Waits for a log line containing every one of `needles`; returns it.
fn wait_log(broker: &Broker, needles: &[&str]) -> String {
    broker.expect_line(needles, WAIT)
}

/// Lets a message expiry interval of `secs` pass: the one thing these tests must wait for.
/// Expiry is checked when a message is about to go out, so no event announces it and real
/// time has to pass; the rule itself is held with a fake clock in `node/mqtt` (`session.rs`,
/// `message.rs`). These end-to-end tests keep the shortest intervals MQTT can state (1 s; 2 s
/// across a restart, so that the deadline passes while the node is down) and a margin for the
/// whole-second rounding.
fn let_pass(secs: u64) {
    std::thread::sleep(Duration::from_millis(secs * 1000 + 300));
}

/// An offline persistent session: `id` subscribed to `filter` with subscription identifier
/// `sub_id`, then disconnected (and seen gone by the broker).
fn offline_session(broker: &Broker, id: &str, filter: &str, sub_id: Option<usize>) {
    let (mut s, _) = V5::connect_with(broker, id, true, Some(600));
    s.subscribe_one(filter, sub_id);
    s.disconnect();
    wait_log(broker, &["disconnected", &format!("client={id}")]);
}

#[test]
fn a_queued_message_of_an_offline_session_expires_and_one_that_lives_carries_what_remains() {
    let broker = Broker::start();
    offline_session(&broker, "exp-sub", "exp/t", None);
    let (mut p, _) = V5::connect(&broker, "exp-pub");
    p.publish("exp/t", false, "short", Some(1));
    p.publish("exp/t", false, "long", Some(600));
    p.publish("exp/t", false, "forever", None);
    let_pass(1);
    let (mut s, connack) = V5::connect_with(&broker, "exp-sub", false, Some(600));
    assert!(connack.session_present);
    p.publish("exp/t", false, "end", None);
    let got = s.until("end");
    let payloads: Vec<String> = got.iter().map(payload).collect();
    assert_eq!(
        payloads,
        ["long", "forever"],
        "the short one expired (MQTT-3.3.2-5)"
    );
    let left = expiry(&got[0]).expect("the interval goes with the message");
    assert!(
        0 < left && left <= 600,
        "what remains (MQTT-3.3.2-6): {left}"
    );
    assert_eq!(expiry(&got[1]), None);
    let line = wait_log(&broker, &["message expired", "client=exp-sub"]);
    assert!(line.contains("topic=exp/t"), "{line}");
}

/// `fubar ctl status` on `dir`'s node: the number after `retained`.
fn retained_count(dir: &Path) -> String {
    let out = crate::common::ctl_in(dir, &["status"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("retained "))
        .unwrap_or_else(|| panic!("no retained in status:\n{text}"))
        .trim()
        .to_owned()
}

#[test]
fn an_expired_retained_message_is_not_sent_and_is_forgotten() {
    let broker = Broker::start();
    let (mut p, _) = V5::connect(&broker, "ret-pub");
    p.publish("ret/gone", true, "gone", Some(1));
    p.publish("ret/keep", true, "keep", None);
    // While it lives, a new subscriber gets it with what remains of its interval.
    let (mut early, _) = V5::connect(&broker, "ret-early");
    early.subscribe_one("ret/gone", None);
    let m = early.next_publish();
    assert_eq!(payload(&m), "gone");
    assert!(m.retain);
    assert_eq!(expiry(&m), Some(1));
    let_pass(1);
    let (mut late, _) = V5::connect(&broker, "ret-late");
    late.subscribe_one("ret/#", None);
    p.publish("ret/marker", false, "end", None);
    let got: Vec<String> = late.until("end").iter().map(payload).collect();
    assert_eq!(got, ["keep"], "the expired one is not sent");
    wait_log(&broker, &["retained message expired", "topic=ret/gone"]);
    assert_eq!(retained_count(broker.dir.path()), "1", "forgotten");
}

#[test]
fn overlapping_subscriptions_give_one_copy_with_both_identifiers_and_a_311_client_the_plain_message(
) {
    let broker = Broker::start();
    let (mut s, connack) = V5::connect(&broker, "ids-sub");
    let available = connack
        .properties
        .as_ref()
        .and_then(|p| p.subscription_identifiers_available);
    assert_eq!(
        available,
        Some(1),
        "CONNACK: subscription identifiers available"
    );
    s.subscribe_one("ids/+", Some(7));
    s.subscribe_one("ids/#", Some(3));
    s.subscribe_one("ids/x", None);
    let mut old = Mqtt::connect(&broker, "ids-311");
    old.subscribe("ids/#", rumqttc::QoS::AtLeastOnce);
    let (mut p, _) = V5::connect(&broker, "ids-pub");
    let props = PublishProperties {
        message_expiry_interval: Some(600),
        user_properties: vec![("k".into(), "v".into())],
        ..PublishProperties::default()
    };
    p.publish_with("ids/x", false, "one", props);
    p.publish("ids/x", false, "end", None);
    let got = s.until("end");
    assert_eq!(got.len(), 1, "one copy (MQTT-3.3.5-1)");
    assert_eq!(subscription_ids(&got[0]), [3, 7], "both ids (MQTT-3.3.4-4)");
    // The 3.1.1 client gets the same message with no properties: were any written, they
    // would be read as part of its topic or payload.
    let plain = old.next_publish();
    assert_eq!(plain.topic, "ids/x");
    assert_eq!(&plain.payload[..], b"one");
    assert_eq!(&old.next_publish().payload[..], b"end");
    // A retained message sent at subscribe carries that subscription's identifier.
    p.publish("ids/r", true, "kept", None);
    let (mut r, _) = V5::connect(&broker, "ids-ret");
    r.subscribe_one("ids/r", Some(5));
    let m = r.next_publish();
    assert!(m.retain);
    assert_eq!(subscription_ids(&m), [5]);
}

#[test]
fn a_queued_message_keeps_its_deadline_and_subscription_identifier_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_in(dir.path(), &[], "");
    offline_session(&broker, "rs-sub", "rs/t", Some(12));
    let (mut p, _) = V5::connect(&broker, "rs-pub");
    p.publish("rs/t", false, "short", Some(2));
    p.publish("rs/t", false, "long", Some(600));
    drop(p);
    broker.stop();
    let broker = Broker::start_in(dir.path(), &[], "");
    let_pass(2);
    let (mut s, connack) = V5::connect_with(&broker, "rs-sub", false, Some(600));
    assert!(connack.session_present);
    let (mut p, _) = V5::connect(&broker, "rs-pub");
    p.publish("rs/t", false, "end", None);
    let got = s.until("end");
    let payloads: Vec<String> = got.iter().map(payload).collect();
    assert_eq!(
        payloads,
        ["long"],
        "the short one expired while the node was down"
    );
    let left = expiry(&got[0]).unwrap();
    assert!(0 < left && left <= 600, "{left}");
    assert_eq!(
        subscription_ids(&got[0]),
        [12],
        "kept with the queued message"
    );
    p.publish("rs/t", false, "after", None);
    let after = s.next_publish();
    assert_eq!(payload(&after), "after");
    assert_eq!(subscription_ids(&after), [12], "kept with the subscription");
}

#[test]
fn a_publish_from_a_client_with_a_subscription_identifier_is_a_protocol_error() {
    let broker = Broker::start();
    let (mut c, _) = V5::connect(&broker, "sid-pub");
    let props = PublishProperties {
        subscription_identifiers: vec![4],
        ..PublishProperties::default()
    };
    c.client
        .publish_with_properties("sid/t", QoS::AtLeastOnce, false, "x", props)
        .unwrap();
    match c.wait_error() {
        ConnectionError::MqttState(StateError::ServerDisconnect { reason_code, .. }) => {
            assert_eq!(reason_code, DisconnectReasonCode::ProtocolError)
        }
        other => panic!("expected DISCONNECT 0x82, got {other:?}"),
    }
    let line = wait_log(&broker, &["subscription identifier", "client=sid-pub"]);
    assert!(line.contains("topic=sid/t"), "{line}");
}

#[test]
fn a_copy_from_another_node_keeps_its_retain_flag_for_retain_as_published() {
    use crate::cluster::Cluster;
    let cluster = Cluster::new();
    let n1 = cluster.found("n1");
    let n2 = cluster.join("n2", &n1);
    let (mut keep, _) = V5::connect(&n2.broker, "rap-keep");
    let mut rap = Filter::new("rap/#", QoS::AtLeastOnce);
    rap.preserve_retain = true;
    keep.subscribe(vec![rap], None);
    let (mut plain, _) = V5::connect(&n2.broker, "rap-plain");
    plain.subscribe_one("rap/#", None);
    cluster.wait_routes("n1@localhost", 1);
    let (mut p, _) = V5::connect(&n1.broker, "rap-pub");
    p.publish("rap/x", true, "r", Some(600));
    let m = keep.next_publish();
    assert_eq!(payload(&m), "r");
    assert!(m.retain, "retain as published, across nodes");
    let left = expiry(&m).expect("the interval goes across nodes");
    assert!(0 < left && left <= 600, "{left}");
    let m = plain.next_publish();
    assert_eq!(payload(&m), "r");
    assert!(!m.retain, "retain 0 on normal delivery (MQTT-3.3.1-12)");
}
