//! MQTT 5.0 with a second independent client, rumqttc's `v5` module (paho covers the same
//! ground in `mqtt5.rs`): the CONNACK's assigned client id and availability flags; session
//! expiry (a kept session resumed with its queued messages, an expiry of 0 not kept);
//! request/response and the other message properties passed through unchanged, a 3.1.1
//! client on the same topic getting the plain message; the server's DISCONNECT 0x8E on
//! takeover and 0x95 for a packet over its maximum; CONNECT with an authentication method
//! refused with 0x8C; a shared subscription whose members (one 5.0, one 3.1.1) take turns;
//! no local; retain handling 2 and retain as published; and the `protocol` log class showing
//! reason codes and properties.

use std::collections::{BTreeSet, VecDeque};
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::{mpsc, LazyLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::{
    ConnAck, ConnAckProperties, ConnectReturnCode, DisconnectReasonCode, Filter, Packet, Publish,
    PublishProperties, RetainForwardRule, SubscribeReasonCode,
};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, ConnectionError, Event, MqttOptions, StateError};
use rumqttc::Outgoing;
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

use crate::common::{connect_packet, frame, read_frame, Broker};
use crate::conformance::support::{wait_disconnected, wait_log, Mqtt, WAIT};

/// The event loops of this file's rumqttc v5 clients.
static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
});

/// Options for a v5 client of `broker` with id `id` (clean start, no session expiry).
fn options(broker: &Broker, id: &str) -> MqttOptions {
    let mut o = MqttOptions::new(id, "127.0.0.1", broker.port());
    o.set_keep_alive(Duration::from_secs(60));
    o
}

/// A rumqttc v5 client whose event loop runs in its own task; the test reads its events.
struct Mqtt5 {
    id: String,
    client: AsyncClient,
    events: mpsc::Receiver<Result<Event, ConnectionError>>,
    stash: VecDeque<Event>,
    task: Option<JoinHandle<()>>,
    /// The CONNACK the broker answered with.
    connack: ConnAck,
}

/// Starts the event loop of `opts`; returns the client, its events and the loop's task.
#[allow(clippy::type_complexity, reason = "a test helper's one tuple")]
fn start(
    opts: MqttOptions,
) -> (
    AsyncClient,
    mpsc::Receiver<Result<Event, ConnectionError>>,
    JoinHandle<()>,
) {
    let (client, mut eventloop) = AsyncClient::new(opts, 1000);
    let (tx, events) = mpsc::channel();
    let task = RUNTIME.spawn(async move {
        loop {
            let event = eventloop.poll().await;
            let failed = event.is_err();
            // Stop at the first error: rumqttc would reconnect on the next poll.
            if tx.send(event).is_err() || failed {
                return;
            }
        }
    });
    (client, events, task)
}

/// Connects with `opts` and returns the broker's first answer: a CONNACK event or the error
/// rumqttc made of it.
fn try_connect(opts: MqttOptions) -> Result<Event, ConnectionError> {
    let (_client, events, task) = start(opts);
    let first = events.recv_timeout(WAIT).expect("no answer to CONNECT");
    task.abort();
    first
}

impl Mqtt5 {
    fn connect(broker: &Broker, id: &str) -> Self {
        Self::connect_with(options(broker, id))
    }

    /// Connects with `opts` and waits for an accepting CONNACK.
    fn connect_with(opts: MqttOptions) -> Self {
        let id = opts.client_id();
        let (client, events, task) = start(opts);
        let first = events.recv_timeout(WAIT).expect("no CONNACK in time");
        let Ok(Event::Incoming(Packet::ConnAck(connack))) = first else {
            panic!("{id}: connect failed: {first:?}");
        };
        Self {
            id,
            client,
            events,
            stash: VecDeque::new(),
            task: Some(task),
            connack,
        }
    }

    fn props(&self) -> ConnAckProperties {
        self.connack
            .properties
            .clone()
            .expect("an MQTT 5.0 CONNACK has properties")
    }

    /// Waits for the first event (stashed ones first) for which `f` says `Some`; other
    /// events are kept for later waits.
    fn wait_for<T>(
        &mut self,
        timeout: Duration,
        mut f: impl FnMut(&Event) -> Option<T>,
    ) -> Option<T> {
        if let Some(i) = self.stash.iter().position(|e| f(e).is_some()) {
            let e = self.stash.remove(i).expect("stashed event");
            return f(&e);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let Ok(Ok(e)) = self.events.recv_timeout(left) else {
                return None;
            };
            if let Some(t) = f(&e) {
                return Some(t);
            }
            if !matches!(
                e,
                Event::Incoming(Packet::PingResp(_)) | Event::Outgoing(Outgoing::PingReq)
            ) {
                self.stash.push_back(e);
            }
        }
    }

    /// Waits until the event loop fails; returns the error.
    fn wait_error(&mut self) -> ConnectionError {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| panic!("{}: the connection did not end", self.id));
            match self.events.recv_timeout(left) {
                Ok(Ok(e)) => self.stash.push_back(e),
                Ok(Err(e)) => return e,
                Err(_) => panic!("{}: the connection did not end", self.id),
            }
        }
    }

    /// The next PUBLISH received, or `None` after `timeout`.
    fn try_next_publish(&mut self, timeout: Duration) -> Option<Publish> {
        self.wait_for(timeout, |e| match e {
            Event::Incoming(Packet::Publish(p)) => Some(p.clone()),
            _ => None,
        })
    }

    /// The next PUBLISH received; fails the test if none comes.
    fn next_publish(&mut self) -> Publish {
        let id = self.id.clone();
        self.try_next_publish(WAIT)
            .unwrap_or_else(|| panic!("{id}: no PUBLISH received"))
    }

    /// Subscribes with full options; returns the SUBACK's codes.
    fn subscribe_filter(&mut self, filter: Filter) -> Vec<SubscribeReasonCode> {
        let client = self.client.clone();
        RUNTIME
            .block_on(client.subscribe_many(vec![filter]))
            .expect("subscribe request");
        self.wait_for(WAIT, |e| match e {
            Event::Incoming(Packet::SubAck(s)) => Some(s.return_codes.clone()),
            _ => None,
        })
        .expect("no SUBACK")
    }

    /// Subscribes to `filter` at `qos` (no options); checks it was granted.
    fn subscribe(&mut self, filter: &str, qos: QoS) {
        let codes = self.subscribe_filter(Filter::new(filter, qos));
        assert_eq!(codes, [SubscribeReasonCode::Success(qos)], "{filter}");
    }

    /// Publishes with properties at QoS 1 and waits for the PUBACK.
    fn publish_acked(
        &mut self,
        topic: &str,
        retain: bool,
        payload: &[u8],
        properties: PublishProperties,
    ) {
        let client = self.client.clone();
        RUNTIME
            .block_on(client.publish_with_properties(
                topic,
                QoS::AtLeastOnce,
                retain,
                payload.to_vec(),
                properties,
            ))
            .expect("publish request");
        let id = self
            .wait_for(WAIT, |e| match e {
                Event::Outgoing(Outgoing::Publish(id)) if *id != 0 => Some(*id),
                _ => None,
            })
            .unwrap_or_else(|| panic!("PUBLISH to {topic} was not sent"));
        let acked = self.wait_for(WAIT, |e| {
            matches!(e, Event::Incoming(Packet::PubAck(a)) if a.pkid == id).then_some(())
        });
        assert!(acked.is_some(), "{}: no PUBACK for {topic}", self.id);
    }

    /// Publishes at QoS 1 without properties and waits for the PUBACK.
    fn publish(&mut self, topic: &str, retain: bool, payload: &[u8]) {
        self.publish_acked(topic, retain, payload, PublishProperties::default());
    }

    /// Sends DISCONNECT and waits until it was written.
    fn disconnect(mut self) {
        let client = self.client.clone();
        RUNTIME
            .block_on(client.disconnect())
            .expect("disconnect request");
        let sent = self.wait_for(WAIT, |e| {
            matches!(e, Event::Outgoing(Outgoing::Disconnect)).then_some(())
        });
        assert!(sent.is_some(), "{}: DISCONNECT not sent", self.id);
    }
}

impl Drop for Mqtt5 {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn text(p: &Publish) -> &str {
    std::str::from_utf8(&p.payload).expect("UTF-8 payload")
}

fn topic(p: &Publish) -> &str {
    std::str::from_utf8(&p.topic).expect("UTF-8 topic")
}

// ---- CONNACK -----------------------------------------------------------------------------

#[test]
fn connack_assigns_a_client_id_and_says_what_is_available() {
    let broker = Broker::start();
    let anon = Mqtt5::connect(&broker, "");
    let p = anon.props();
    let assigned = p
        .assigned_client_identifier
        .clone()
        .expect("an empty client id gets one assigned (MQTT-3.2.2-16)");
    assert!(!assigned.is_empty());
    // The broker knows the client by the id it assigned.
    wait_log(&broker, &format!(" connected client={assigned} "));
    assert_eq!(p.retain_available, Some(1), "{p:?}");
    assert_eq!(p.wildcard_subscription_available, Some(1), "{p:?}");
    assert_eq!(p.shared_subscription_available, Some(1), "{p:?}");
    assert_eq!(p.max_packet_size, Some(1_048_576), "{p:?}");
    assert!(!anon.connack.session_present);

    // A client that names itself gets no assigned id; two anonymous clients get two ids.
    let named = Mqtt5::connect(&broker, "named5");
    assert_eq!(named.props().assigned_client_identifier, None);
    let other = Mqtt5::connect(&broker, "");
    assert_ne!(other.props().assigned_client_identifier, Some(assigned));
}

// ---- session expiry ----------------------------------------------------------------------

#[test]
fn a_kept_session_resumes_with_its_queued_messages_and_expiry_0_is_not_kept() {
    let broker = Broker::start();
    let kept = |id: &str, expiry: Option<u32>| {
        let mut o = options(&broker, id);
        o.set_clean_start(false);
        o.set_session_expiry_interval(expiry);
        o
    };
    let mut keeper = Mqtt5::connect_with(kept("keeper5", Some(300)));
    assert!(!keeper.connack.session_present);
    keeper.subscribe("q/#", QoS::AtLeastOnce);
    keeper.disconnect();
    wait_disconnected(&broker, "keeper5", 1);

    let mut publisher = Mqtt5::connect(&broker, "qpub5");
    for i in 1..=3 {
        publisher.publish("q/a", false, format!("m{i}").as_bytes());
    }

    let mut keeper = Mqtt5::connect_with(kept("keeper5", Some(300)));
    assert!(keeper.connack.session_present, "the session was kept");
    let got: Vec<String> = (0..3)
        .map(|_| {
            let p = keeper.next_publish();
            assert_eq!((topic(&p), p.qos), ("q/a", QoS::AtLeastOnce));
            text(&p).to_owned()
        })
        .collect();
    assert_eq!(got, ["m1", "m2", "m3"], "queued while away, in order");
    keeper.disconnect();

    // Expiry 0 (the default: no property): the session ends with the connection
    // (MQTT-3.1.2-23), even without clean start.
    let mut fleeting = Mqtt5::connect_with(kept("fleeting5", None));
    fleeting.subscribe("q/#", QoS::AtLeastOnce);
    fleeting.disconnect();
    wait_disconnected(&broker, "fleeting5", 1);
    publisher.publish("q/a", false, b"lost");
    let fleeting = Mqtt5::connect_with(kept("fleeting5", None));
    assert!(
        !fleeting.connack.session_present,
        "a session with expiry 0 is not kept"
    );
}

// ---- message properties ------------------------------------------------------------------

#[test]
fn request_response_and_message_properties_pass_through_and_a_311_client_gets_the_message() {
    let broker = Broker::start();
    let mut responder = Mqtt5::connect(&broker, "responder5");
    responder.subscribe("req/#", QoS::AtLeastOnce);
    let mut old = Mqtt::connect(&broker, "old311");
    old.subscribe("req/#", rumqttc::QoS::AtLeastOnce);
    let mut requester = Mqtt5::connect(&broker, "requester5");
    requester.subscribe("resp/requester5", QoS::AtLeastOnce);

    let request = PublishProperties {
        payload_format_indicator: Some(1),
        content_type: Some("text/plain".into()),
        response_topic: Some("resp/requester5".into()),
        correlation_data: Some(Bytes::from_static(b"\x00corr-42\xff")),
        user_properties: vec![
            ("k".into(), "v".into()),
            ("k".into(), "second".into()),
            ("trace".into(), "é ü".into()),
        ],
        ..PublishProperties::default()
    };
    requester.publish_acked("req/x", false, b"what time is it", request.clone());

    let got = responder.next_publish();
    assert_eq!((topic(&got), text(&got)), ("req/x", "what time is it"));
    let props = got.properties.clone().expect("properties");
    assert_eq!(props.payload_format_indicator, Some(1));
    assert_eq!(props.content_type, request.content_type);
    assert_eq!(props.response_topic, request.response_topic);
    assert_eq!(props.correlation_data, request.correlation_data);
    assert_eq!(
        props.user_properties, request.user_properties,
        "user properties in order, repeats kept (MQTT-3.3.2-17, MQTT-3.3.2-18)"
    );

    // The answer goes where the request said, with the request's correlation data.
    let answer = PublishProperties {
        correlation_data: props.correlation_data.clone(),
        ..PublishProperties::default()
    };
    let to = props.response_topic.clone().expect("response topic");
    responder.publish_acked(&to, false, b"noon", answer);
    let reply = requester.next_publish();
    assert_eq!((topic(&reply), text(&reply)), ("resp/requester5", "noon"));
    assert_eq!(
        reply.properties.and_then(|p| p.correlation_data),
        request.correlation_data
    );

    // The 3.1.1 client has no properties on the wire: it gets the message itself.
    let plain = old.next_publish();
    assert_eq!(
        (plain.topic.as_str(), &plain.payload[..]),
        ("req/x", &b"what time is it"[..])
    );
}

// ---- the server's DISCONNECT -------------------------------------------------------------

#[test]
fn a_taken_over_client_is_told_0x8e() {
    let broker = Broker::start();
    let mut first = Mqtt5::connect(&broker, "twin5");
    let _second = Mqtt5::connect(&broker, "twin5");
    match first.wait_error() {
        ConnectionError::MqttState(StateError::ServerDisconnect {
            reason_code,
            reason_string,
        }) => {
            assert_eq!(reason_code, DisconnectReasonCode::SessionTakenOver);
            assert!(reason_string.is_some_and(|s| s.contains("taken over")));
        }
        other => panic!("expected DISCONNECT 0x8E, got {other:?}"),
    }
}

#[test]
fn a_packet_over_the_servers_maximum_gets_disconnect_0x95() {
    let broker = Broker::start_with(&[], "[mqtt]\nmax_packet_size = 1024\n");
    // rumqttc learns the maximum from CONNACK and refuses to send a larger packet itself
    // (StateError::OutgoingPacketTooLarge), so it cannot show what the server does: the
    // oversized PUBLISH below is raw bytes.
    let probe = Mqtt5::connect(&broker, "probe5");
    assert_eq!(probe.props().max_packet_size, Some(1024));

    let mut s = TcpStream::connect(broker.addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    // CONNECT: "MQTT", level 5, clean start, keep-alive 60, no properties, id "big5".
    s.write_all(&connect_packet(5, 0b10, "big5")).unwrap();
    let (first, connack) = read_frame(&mut s).expect("CONNACK");
    assert_eq!(
        (first, connack[0], connack[1]),
        (0x20, 0, 0x00),
        "CONNACK 0"
    );
    // PUBLISH QoS 0 to "t", no properties, a 2000-byte payload.
    let mut body = vec![0, 1, b't', 0];
    body.extend_from_slice(&[b'x'; 2000]);
    s.write_all(&frame(0x30, &body)).unwrap();
    let (first, disconnect) = read_frame(&mut s).expect("DISCONNECT");
    assert_eq!(first, 0xE0, "DISCONNECT");
    assert_eq!(disconnect[0], 0x95, "Packet too large (MQTT-4.13.1-1)");
    // And then the connection is closed.
    let mut rest = [0u8; 16];
    assert!(matches!(s.read(&mut rest), Ok(0) | Err(_)));
}

#[test]
fn connect_with_an_authentication_method_is_refused_0x8c() {
    let broker = Broker::start();
    let mut o = options(&broker, "auth5");
    o.set_authentication_method(Some("SCRAM-SHA-1".into()));
    o.set_authentication_data(Some(Bytes::from_static(b"client-first")));
    match try_connect(o) {
        Err(ConnectionError::ConnectionRefused(code)) => {
            assert_eq!(code, ConnectReturnCode::BadAuthenticationMethod)
        }
        other => panic!("expected CONNACK 0x8C, got {other:?}"),
    }
    // Without the method the same client is welcome.
    Mqtt5::connect(&broker, "auth5");
}

// ---- subscriptions -----------------------------------------------------------------------

#[test]
fn a_shared_subscription_with_a_v5_and_a_311_member_takes_turns() {
    let broker = Broker::start();
    let mut five = Mqtt5::connect(&broker, "share5");
    five.subscribe("$share/g/work/#", QoS::AtLeastOnce);
    let mut old = Mqtt::connect(&broker, "share311");
    old.subscribe("$share/g/work/#", rumqttc::QoS::AtLeastOnce);
    let mut publisher = Mqtt5::connect(&broker, "boss5");
    let jobs: Vec<String> = (1..=6).map(|i| format!("job{i}")).collect();
    for job in &jobs {
        publisher.publish("work/x", false, job.as_bytes());
    }
    let (mut by_five, mut by_old) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + WAIT;
    while by_five.len() + by_old.len() < jobs.len() {
        assert!(
            Instant::now() < deadline,
            "jobs missing: {by_five:?} {by_old:?}"
        );
        if let Some(p) = five.try_next_publish(Duration::from_millis(50)) {
            by_five.push(text(&p).to_owned());
        }
        if let Some(p) = old.try_next_publish(Duration::from_millis(50)) {
            by_old.push(crate::conformance::support::text(&p).to_owned());
        }
    }
    // Each job went to one member only, and each member had its turns (MQTT 5.0 4.8.2).
    let all: BTreeSet<&String> = by_five.iter().chain(&by_old).collect();
    assert_eq!(
        (all.len(), by_five.len() + by_old.len()),
        (jobs.len(), jobs.len()),
        "{by_five:?} {by_old:?}"
    );
    assert!(
        !by_five.is_empty() && !by_old.is_empty(),
        "{by_five:?} {by_old:?}"
    );
}

#[test]
fn no_local_keeps_a_clients_own_messages_from_it() {
    let broker = Broker::start();
    let mut me = Mqtt5::connect(&broker, "me5");
    let mut filter = Filter::new("chat", QoS::AtLeastOnce);
    filter.nolocal = true;
    assert_eq!(
        me.subscribe_filter(filter),
        [SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    let mut other = Mqtt5::connect(&broker, "other5");
    // Its own message first, then another client's: only the other one arrives
    // (MQTT-3.8.3-3).
    me.publish("chat", false, b"mine");
    other.publish("chat", false, b"theirs");
    let got = me.next_publish();
    assert_eq!(text(&got), "theirs");
}

#[test]
fn retain_handling_2_sends_no_retained_message_and_retain_as_published_keeps_the_flag() {
    let broker = Broker::start();
    let mut publisher = Mqtt5::connect(&broker, "retainer5");
    publisher.publish("keep/x", true, b"old");

    // Retain handling 0: the retained message at subscribe (as a control).
    let mut plain = Mqtt5::connect(&broker, "plain5");
    plain.subscribe("keep/#", QoS::AtLeastOnce);
    let first = plain.next_publish();
    assert_eq!((text(&first), first.retain), ("old", true));

    // Retain handling 2: none (MQTT-3.3.1-11); retain as published: a live message keeps
    // its retain flag (MQTT-3.3.1-13), which a plain subscription clears (MQTT-3.3.1-12).
    let mut opts = Mqtt5::connect(&broker, "opts5");
    let mut filter = Filter::new("keep/#", QoS::AtLeastOnce);
    filter.retain_forward_rule = RetainForwardRule::Never;
    filter.preserve_retain = true;
    assert_eq!(
        opts.subscribe_filter(filter),
        [SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    publisher.publish("keep/x", true, b"new");
    let got = opts.next_publish();
    assert_eq!((text(&got), got.retain), ("new", true));
    let live = plain.next_publish();
    assert_eq!((text(&live), live.retain), ("new", false));
}

// ---- the protocol log --------------------------------------------------------------------

/// The first line of class `class` on stdout that contains every one of `parts`; waits for
/// it (lines are written by a timer).
fn class_line(broker: &Broker, class: &str, parts: &[&str]) -> String {
    let prefix = format!("{class} ");
    broker
        .wait_for_line(
            |l| l.starts_with(&prefix) && parts.iter().all(|p| l.contains(p)),
            WAIT,
        )
        .unwrap_or_else(|| panic!("no {class} line with {parts:?}"))
}

/// The first `protocol` line that contains every one of `parts`.
fn protocol_line(broker: &Broker, parts: &[&str]) -> String {
    class_line(broker, "protocol", parts)
}

#[test]
fn the_protocol_log_shows_v5_reason_codes_and_properties() {
    // `Broker::start` shows the protocol class on stdout.
    let broker = Broker::start();
    let mut sub = Mqtt5::connect(&broker, "logsub5");
    let mut filter = Filter::new("log/#", QoS::AtLeastOnce);
    filter.nolocal = true;
    filter.retain_forward_rule = RetainForwardRule::Never;
    sub.subscribe_filter(filter);
    // The publisher is traced too: its packets also go to the `trace` class.
    let out = broker.ctl(&["trace", "client", "logpub5"]);
    assert!(out.status.success(), "{out:?}");
    let mut publ = Mqtt5::connect(&broker, "logpub5");
    publ.publish_acked(
        "log/x",
        false,
        b"hello",
        PublishProperties {
            content_type: Some("text/plain".into()),
            correlation_data: Some(Bytes::from_static(b"1234")),
            user_properties: vec![("trace-id".into(), "abc-1".into())],
            ..PublishProperties::default()
        },
    );
    sub.next_publish();

    // CONNECT and CONNACK come before the connection has its client: found by its peer.
    let connect = protocol_line(&broker, &["kind=CONNECT", "client_id=logpub5 ", "dir=in"]);
    let peer = connect
        .split_whitespace()
        .find(|w| w.starts_with("peer="))
        .expect("peer field");
    let connack = protocol_line(&broker, &["kind=CONNACK", &format!("{peer} "), "dir=out"]);
    assert!(connack.contains(" reason=0x00 "), "{connack}");
    for p in [
        "Retain Available=1",
        "Maximum Packet Size=1048576",
        "Wildcard Subscription Available=1",
        "Shared Subscription Available=1",
    ] {
        assert!(connack.contains(p), "{p} in {connack}");
    }
    // Only what is set: no assigned id for a client that named itself.
    assert!(!connack.contains("Assigned Client Identifier"), "{connack}");

    let publish = protocol_line(&broker, &["kind=PUBLISH", "client=logpub5 ", "dir=in"]);
    for p in [
        "properties=Content Type='text/plain', Correlation Data=<4 bytes>, \
         User Property='trace-id'='abc-1'",
        "topic=log/x",
    ] {
        assert!(publish.contains(p), "{p} in {publish}");
    }
    let traced = class_line(
        &broker,
        "trace",
        &["kind=PUBLISH", "client=logpub5 ", "dir=in"],
    );
    assert!(
        traced.contains("User Property='trace-id'='abc-1'"),
        "{traced}"
    );
    // The subscriber gets the same properties.
    let out = protocol_line(&broker, &["kind=PUBLISH", "client=logsub5 ", "dir=out"]);
    assert!(out.contains("User Property='trace-id'='abc-1'"), "{out}");
    let puback = protocol_line(&broker, &["kind=PUBACK", "client=logpub5 ", "dir=out"]);
    assert!(puback.contains(" reason=0x"), "{puback}");
    let subscribe = protocol_line(&broker, &["kind=SUBSCRIBE", "client=logsub5 "]);
    assert!(
        subscribe.contains("filters='log/#' (QoS 1, No Local, Retain Handling 2)"),
        "{subscribe}"
    );
    let suback = protocol_line(&broker, &["kind=SUBACK", "client=logsub5 "]);
    assert!(suback.contains(" reasons=0x01 "), "{suback}");

    // The server's DISCONNECT says why, as a reason code.
    let mut first = Mqtt5::connect(&broker, "logtwin5");
    let _second = Mqtt5::connect(&broker, "logtwin5");
    first.wait_error();
    let disconnect = protocol_line(&broker, &["kind=DISCONNECT", "client=logtwin5 ", "dir=out"]);
    assert!(disconnect.contains(" reason=0x8e "), "{disconnect}");
    assert!(
        disconnect.contains("properties=Reason String='"),
        "{disconnect}"
    );

    // A 3.1.1 client's events have neither.
    let mut old = Mqtt::connect(&broker, "log311");
    old.publish_acked("log/y", rumqttc::QoS::AtLeastOnce, false, b"x");
    let line = protocol_line(&broker, &["kind=PUBLISH", "client=log311 ", "dir=in"]);
    assert!(
        !line.contains("properties=") && !line.contains("reason="),
        "{line}"
    );
}
