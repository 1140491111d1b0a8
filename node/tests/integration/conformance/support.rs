//! Helpers for the conformance tests: a rumqttc client driven on a shared tokio runtime whose
//! events arrive on a channel, raw-packet helpers built on fubar's encoder, and log waits.

use std::collections::VecDeque;
use std::sync::{mpsc, LazyLock};
use std::time::{Duration, Instant};

use crate::common::encode;
use bytes::{Bytes, BytesMut};
use fubar::mqtt::packet::{
    ConnAck as RawConnAck, Connect, LastWill as RawWill, Packet, ProtocolVersion, QoS as RawQoS,
    ReasonCode, SubAck as RawSubAck, Subscribe as RawSubscribe,
};
use rumqttc::{
    AsyncClient, ConnAck, ConnectionError, Event, Incoming, MqttOptions, Outgoing, Publish, QoS,
    SubscribeFilter, SubscribeReasonCode,
};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

use crate::common::{Broker, RawClient};

/// How long to wait for something that must happen before the test fails. Generous: it is
/// only ever reached when the broker is wrong.
pub(crate) const WAIT: Duration = Duration::from_secs(15);

/// One runtime drives the event loops of every rumqttc client of the test binary.
static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
});

/// Options for a client of `broker` with id `id` (clean session, keep-alive 60 s).
pub(crate) fn options(broker: &Broker, id: &str) -> MqttOptions {
    let mut o = MqttOptions::new(id, "127.0.0.1", broker.port());
    o.set_keep_alive(Duration::from_secs(60));
    o
}

/// A rumqttc client whose event loop runs in its own task; events are read by the test.
pub(crate) struct Mqtt {
    /// The client id.
    pub(crate) id: String,
    client: AsyncClient,
    events: mpsc::Receiver<Result<Event, ConnectionError>>,
    stash: VecDeque<Event>,
    task: Option<JoinHandle<()>>,
    /// The CONNACK the broker answered with.
    pub(crate) connack: ConnAck,
}

impl Mqtt {
    /// Connects with default options (clean session) and waits for CONNACK.
    pub(crate) fn connect(broker: &Broker, id: &str) -> Self {
        Self::connect_with(options(broker, id))
    }

    /// Connects with `opts` and waits for an accepting CONNACK.
    pub(crate) fn connect_with(opts: MqttOptions) -> Self {
        let id = opts.client_id();
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
        let first = events.recv_timeout(WAIT).expect("no CONNACK in time");
        let Ok(Event::Incoming(Incoming::ConnAck(connack))) = first else {
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

    /// The next event before `deadline`; `None` on timeout, or when the event loop failed.
    fn next_event(&mut self, deadline: Instant) -> Option<Result<Event, ConnectionError>> {
        let left = deadline.checked_duration_since(Instant::now())?;
        self.events.recv_timeout(left).ok()
    }

    /// Waits for the first event (stashed ones first) for which `f` says `Some`; other events
    /// are kept for later waits (except those no test looks at).
    pub(crate) fn wait_for<T>(
        &mut self,
        timeout: Duration,
        mut f: impl FnMut(&Event) -> Option<T>,
    ) -> Option<T> {
        if let Some(i) = self.stash.iter().position(|e| f(e).is_some()) {
            let e = self.stash.remove(i).expect("stashed event");
            return f(&e);
        }
        let deadline = Instant::now() + timeout;
        while let Some(Ok(e)) = self.next_event(deadline) {
            if let Some(t) = f(&e) {
                return Some(t);
            }
            if worth_keeping(&e) {
                self.stash.push_back(e);
            }
        }
        None
    }

    /// Waits until the event loop fails (the broker closed the connection, say); returns the
    /// error, or `None` if it did not within `timeout`.
    pub(crate) fn wait_error(&mut self, timeout: Duration) -> Option<ConnectionError> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.next_event(deadline)? {
                Ok(e) if worth_keeping(&e) => self.stash.push_back(e),
                Ok(_) => {}
                Err(e) => return Some(e),
            }
        }
    }

    /// The next PUBLISH received, or `None` after `timeout`.
    pub(crate) fn try_next_publish(&mut self, timeout: Duration) -> Option<Publish> {
        self.wait_for(timeout, |e| match e {
            Event::Incoming(Incoming::Publish(p)) => Some(p.clone()),
            _ => None,
        })
    }

    /// The next PUBLISH received; fails the test if none comes.
    pub(crate) fn next_publish(&mut self) -> Publish {
        let id = self.id.clone();
        self.try_next_publish(WAIT)
            .unwrap_or_else(|| panic!("{id}: no PUBLISH received"))
    }

    /// The next `n` PUBLISH packets received.
    pub(crate) fn publishes(&mut self, n: usize) -> Vec<Publish> {
        (0..n).map(|_| self.next_publish()).collect()
    }

    /// Hands a PUBLISH to the event loop without waiting for it to be sent.
    pub(crate) fn send_publish(&self, topic: &str, qos: QoS, retain: bool, payload: &[u8]) {
        let client = self.client.clone();
        RUNTIME
            .block_on(client.publish(topic, qos, retain, payload.to_vec()))
            .expect("publish request");
    }

    /// Sends a PUBLISH; returns its packet id (0 for QoS 0) once it was written.
    pub(crate) fn publish(&mut self, topic: &str, qos: QoS, retain: bool, payload: &[u8]) -> u16 {
        self.send_publish(topic, qos, retain, payload);
        if qos == QoS::AtMostOnce {
            return 0;
        }
        self.wait_for(WAIT, |e| match e {
            Event::Outgoing(Outgoing::Publish(id)) if *id != 0 => Some(*id),
            _ => None,
        })
        .unwrap_or_else(|| panic!("PUBLISH to {topic} was not sent"))
    }

    /// Publishes at QoS 1 or 2 and waits for the end of the acknowledgement flow (PUBACK, or
    /// PUBREC then PUBCOMP).
    pub(crate) fn publish_acked(&mut self, topic: &str, qos: QoS, retain: bool, payload: &[u8]) {
        let id = self.publish(topic, qos, retain, payload);
        match qos {
            QoS::AtMostOnce => panic!("QoS 0 has no acknowledgement"),
            QoS::AtLeastOnce => {
                self.expect_incoming(|p| matches!(p, Incoming::PubAck(a) if a.pkid == id))
            }
            QoS::ExactlyOnce => {
                self.expect_incoming(|p| matches!(p, Incoming::PubRec(a) if a.pkid == id));
                self.expect_incoming(|p| matches!(p, Incoming::PubComp(a) if a.pkid == id));
            }
        }
    }

    /// Waits for an incoming packet matching `pred`; fails the test if none comes.
    pub(crate) fn expect_incoming(&mut self, pred: impl Fn(&Incoming) -> bool) {
        let found = self.wait_for(WAIT, |e| match e {
            Event::Incoming(p) if pred(p) => Some(()),
            _ => None,
        });
        assert!(found.is_some(), "{}: expected packet not received", self.id);
    }

    /// Subscribes to one filter; returns the SUBACK return codes.
    pub(crate) fn subscribe(&mut self, filter: &str, qos: QoS) -> Vec<SubscribeReasonCode> {
        self.subscribe_many(&[(filter, qos)])
    }

    /// Subscribes to several filters in one SUBSCRIBE; returns the SUBACK return codes.
    pub(crate) fn subscribe_many(&mut self, filters: &[(&str, QoS)]) -> Vec<SubscribeReasonCode> {
        let filters: Vec<SubscribeFilter> = filters
            .iter()
            .map(|(f, q)| SubscribeFilter::new((*f).to_owned(), *q))
            .collect();
        let client = self.client.clone();
        RUNTIME
            .block_on(client.subscribe_many(filters))
            .expect("subscribe request");
        self.wait_for(WAIT, |e| match e {
            Event::Incoming(Incoming::SubAck(s)) => Some(s.return_codes.clone()),
            _ => None,
        })
        .expect("no SUBACK")
    }

    /// Unsubscribes and waits for UNSUBACK.
    pub(crate) fn unsubscribe(&mut self, filter: &str) {
        let client = self.client.clone();
        RUNTIME
            .block_on(client.unsubscribe(filter))
            .expect("unsubscribe request");
        self.expect_incoming(|p| matches!(p, Incoming::UnsubAck(_)));
    }

    /// Acknowledges a PUBLISH (with manual acks).
    pub(crate) fn ack(&mut self, publish: &Publish) {
        let client = self.client.clone();
        RUNTIME.block_on(client.ack(publish)).expect("ack request");
    }

    /// Sends DISCONNECT and waits until it was written.
    pub(crate) fn disconnect(mut self) {
        let client = self.client.clone();
        RUNTIME
            .block_on(client.disconnect())
            .expect("disconnect request");
        let sent = self.wait_for(WAIT, |e| {
            matches!(e, Event::Outgoing(Outgoing::Disconnect)).then_some(())
        });
        assert!(sent.is_some(), "{}: DISCONNECT not sent", self.id);
    }

    /// Drops the TCP connection without DISCONNECT and waits until the socket is closed.
    pub(crate) fn kill(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = RUNTIME.block_on(task);
        }
    }
}

impl Drop for Mqtt {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Whether a test may wait for this event later (QoS 0 sends and pings are dropped, so a
/// flood does not pile up).
fn worth_keeping(e: &Event) -> bool {
    !matches!(
        e,
        Event::Outgoing(
            Outgoing::Publish(0)
                | Outgoing::PingReq
                | Outgoing::PingResp
                | Outgoing::PubAck(_)
                | Outgoing::PubRec(_)
                | Outgoing::PubComp(_)
        ) | Event::Incoming(Incoming::PingResp)
    )
}

/// The payload of a PUBLISH as text.
pub(crate) fn text(p: &Publish) -> &str {
    std::str::from_utf8(&p.payload).expect("UTF-8 payload")
}

/// The topics and payloads of some PUBLISH packets, for readable assertions.
pub(crate) fn summary(ps: &[Publish]) -> Vec<(String, String)> {
    ps.iter()
        .map(|p| (p.topic.clone(), text(p).to_owned()))
        .collect()
}

/// Waits for a log line containing `needle`; fails the test (showing the log's tail) if none
/// comes.
pub(crate) fn wait_log(broker: &Broker, needle: &str) -> String {
    wait_log_count(broker, needle, 1)
}

/// Waits for the `n`th log line containing `needle`.
pub(crate) fn wait_log_count(broker: &Broker, needle: &str, n: usize) -> String {
    broker
        .wait_for_log_count(needle, n, WAIT)
        .unwrap_or_else(|| {
            let lines = broker.log_lines();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            panic!("no log line #{n} containing {needle:?}; log tail:\n{tail}")
        })
}

/// Waits until the broker has finished the `n`th connection of client `id` (will published,
/// session released).
pub(crate) fn wait_disconnected(broker: &Broker, id: &str, n: usize) -> String {
    wait_log_count(broker, &format!("disconnected client={id} "), n)
}

// ---- raw packets -------------------------------------------------------------------------

/// Encodes `packet` with fubar's encoder and writes it.
pub(crate) fn send_packet(raw: &mut RawClient, packet: &Packet) {
    let mut buf = BytesMut::new();
    encode(packet, ProtocolVersion::V311, &mut buf);
    raw.send(&buf);
}

/// The next packet from a raw connection; fails the test if none comes.
pub(crate) fn read(raw: &mut RawClient) -> Packet {
    raw.read_packet(WAIT).expect("no packet from the broker")
}

/// A will for a raw CONNECT.
pub(crate) fn raw_will(topic: &str, payload: &str, qos: RawQoS, retain: bool) -> RawWill {
    RawWill {
        topic: topic.into(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        qos,
        retain,
        properties: Default::default(),
    }
}

/// Opens a raw MQTT 3.1.1 connection and checks CONNACK accepts it.
pub(crate) fn raw_connect(
    broker: &Broker,
    id: &str,
    keep_alive: u16,
    will: Option<RawWill>,
) -> RawClient {
    let mut raw = RawClient::connect(broker.addr);
    send_packet(
        &mut raw,
        &Packet::Connect(Box::new(Connect {
            protocol: ProtocolVersion::V311,
            clean_session: true,
            keep_alive,
            client_id: id.to_owned(),
            will,
            username: None,
            password: None,
            properties: Default::default(),
        })),
    );
    match read(&mut raw) {
        Packet::ConnAck(RawConnAck {
            code: ReasonCode::Success,
            ..
        }) => raw,
        other => panic!("expected an accepting CONNACK, got {other:?}"),
    }
}

/// Subscribes a raw connection; returns the SUBACK.
pub(crate) fn raw_subscribe(
    raw: &mut RawClient,
    packet_id: u16,
    filters: &[(&str, RawQoS)],
) -> RawSubAck {
    send_packet(
        raw,
        &Packet::Subscribe(RawSubscribe {
            packet_id,
            filters: filters
                .iter()
                .map(|(f, q)| ((*f).to_owned(), (*q).into()))
                .collect(),
            properties: Default::default(),
        }),
    );
    match read(raw) {
        Packet::SubAck(s) => s,
        other => panic!("expected SUBACK, got {other:?}"),
    }
}
