//! `fubar bench fanin` and `fubar bench fanout`: publishers send to one topic that subscribers
//! all subscribe to, at QoS 0, 1 or 2. Fan-in is many publishers and one subscriber, fan-out
//! one publisher and many subscribers; both are this one flow with different counts.
//!
//! Each publisher keeps up to `window` QoS 1/2 messages unacknowledged (QoS 0 is written as
//! fast as the socket takes it), optionally paced to a total rate. Subscribers subscribe at the
//! same QoS and acknowledge what they receive. They may be connected to another broker than
//! the publishers (another member of a cluster), so publishing starts only once the
//! subscriptions are routable from the publishers' broker: a probe client publishes a
//! readiness message every few milliseconds until every subscriber has seen one (in a cluster
//! a subscription becomes a route on the other members after a Raft commit, so SUBACK alone
//! says nothing there). Probe messages are not counted.
//!
//! The run ends when every subscriber has every message, or nothing arrived for `QUIET`, or at
//! the time limit, or on Ctrl-C; its time runs from the first publish to the last
//! acknowledgement or delivery.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::Barrier;
use tokio_util::sync::CancellationToken;

use super::control::{wait_for_count, BrokerUsage, BrokerWatch, Control, QUIET};
use super::report::{interrupted_note, thousands, Report};
use crate::mqtt::packet::{Ack, Packet, ProtocolVersion, Publish, QoS, Subscribe};
use crate::tools::client::{connect, granted, ClientReader, ClientWriter, Dial};

/// Bytes of publishes buffered before they are written.
const WRITE_BATCH: usize = 64 << 10;
/// Payload of the readiness probes (never counted as deliveries).
const READY_PROBE: &[u8] = b"fubar-bench: ready?";
/// Time between two readiness probes.
const READY_EVERY: Duration = Duration::from_millis(5);
/// How long subscriptions may take to become routable unless told otherwise.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// What to run.
#[derive(Debug, Clone)]
pub struct FlowOptions {
    /// The publishers' broker.
    pub addr: SocketAddr,
    /// The protocol version every client speaks (3.1.1 unless `-V 5`).
    pub version: ProtocolVersion,
    /// The subscribers' broker (`addr`, or another member of its cluster).
    pub sub_addr: SocketAddr,
    /// How long the subscriptions may take to become routable from `addr`.
    pub ready_timeout: Duration,
    /// Connect over TLS.
    pub tls: Option<Dial>,
    /// Publishing connections.
    pub publishers: usize,
    /// Subscribing connections.
    pub subscribers: usize,
    /// Messages per publisher.
    pub messages: u64,
    /// QoS of the publishes and the subscriptions.
    pub qos: QoS,
    /// Payload bytes.
    pub size: usize,
    /// Unacknowledged publishes per publisher (QoS 1/2).
    pub window: usize,
    /// Messages per second across all publishers (as fast as possible without).
    pub rate: Option<u32>,
    /// Stop publishing after this long.
    pub duration: Option<Duration>,
    /// Topic.
    pub topic: String,
    /// Client id prefix.
    pub id_prefix: String,
    /// The broker's process id, to report its CPU time and memory.
    pub broker_pid: Option<u32>,
}

/// What was measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FlowReport {
    /// `fanin` or `fanout`.
    #[serde(skip)]
    pub name: &'static str,
    /// QoS of the publishes.
    pub qos: u8,
    /// Publishing connections.
    pub publishers: usize,
    /// Subscribing connections.
    pub subscribers: usize,
    /// Payload bytes.
    pub size: usize,
    /// Messages published and acknowledged (QoS 1/2) or written (QoS 0).
    pub published: u64,
    /// Messages the subscribers received, all together.
    pub delivered: u64,
    /// `published × subscribers`.
    pub expected: u64,
    /// `expected - delivered`.
    pub lost: u64,
    /// Seconds from the first publish to the last acknowledgement or delivery.
    pub seconds: f64,
    /// `published / seconds`.
    pub publish_rate: f64,
    /// `delivered / seconds`.
    pub delivery_rate: f64,
    /// Cut short by Ctrl-C.
    pub interrupted: bool,
    /// The broker's CPU time and memory (with `--broker-pid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker: Option<BrokerUsage>,
}

impl Report for FlowReport {
    fn bench(&self) -> &'static str {
        self.name
    }

    fn rows(&self) -> Vec<(String, String)> {
        let mut rows = vec![
            (
                self.name.to_owned(),
                format!(
                    "QoS {}, {} publisher(s) -> {} subscriber(s), {} B payloads{}",
                    self.qos,
                    self.publishers,
                    self.subscribers,
                    self.size,
                    interrupted_note(self.interrupted)
                ),
            ),
            ("published".into(), thousands(self.published as f64)),
            ("delivered".into(), thousands(self.delivered as f64)),
            ("lost".into(), thousands(self.lost as f64)),
            ("seconds".into(), format!("{:.3}", self.seconds)),
            ("published/s".into(), thousands(self.publish_rate)),
            ("delivered/s".into(), thousands(self.delivery_rate)),
        ];
        let work = if self.subscribers > 0 {
            self.delivered
        } else {
            self.published
        };
        rows.extend(super::control::usage_rows(
            self.broker.as_ref(),
            work as f64,
            "msgs",
        ));
        rows
    }
}

/// A subscriber's running count, read by the run's end check and the progress bar.
#[derive(Debug, Default)]
struct Received {
    count: AtomicU64,
    /// Microseconds from the run's start to the last delivery.
    last_us: AtomicU64,
    /// A readiness probe reached it.
    ready: AtomicBool,
}

/// Runs the flow.
pub async fn run(o: FlowOptions, control: &Control) -> std::io::Result<FlowReport> {
    let epoch = Instant::now();
    let done = CancellationToken::new();
    let mut subscribers = Vec::new();
    let mut received = Vec::new();
    for i in 0..o.subscribers {
        let (r, w) = subscribe(&o, &format!("{}sub{i}", o.id_prefix)).await?;
        let counts = Arc::new(Received::default());
        received.push(counts.clone());
        subscribers.push(tokio::spawn(count_deliveries(
            r,
            w,
            counts,
            epoch,
            done.clone(),
        )));
    }
    if let Err(e) = wait_until_routable(&o, &received, control).await {
        done.cancel();
        return Err(e);
    }
    let published = Arc::new(AtomicU64::new(0));
    let start = Arc::new(Barrier::new(o.publishers + 1));
    let mut publishers = Vec::new();
    for i in 0..o.publishers {
        let (r, w, _) = connect(
            o.addr,
            o.tls.as_ref(),
            o.version,
            &format!("{}pub{i}", o.id_prefix),
            true,
            600,
        )
        .await?;
        let (o, start, published) = (o.clone(), start.clone(), published.clone());
        let stop = control.stop.clone();
        publishers.push(tokio::spawn(async move {
            start.wait().await;
            publish_all(r, w, &o, &published, &stop).await
        }));
    }
    let watch = BrokerWatch::start(o.broker_pid);
    control
        .progress
        .set_length(o.messages * o.publishers as u64);
    let ticker = tokio::spawn(show_progress(
        control.progress.clone(),
        published.clone(),
        received.clone(),
        done.clone(),
    ));
    start.wait().await;
    let began = Instant::now();
    for p in publishers {
        p.await.map_err(std::io::Error::other)??;
    }
    let mut finished = Instant::now();
    let published = published.load(Ordering::Relaxed);
    let expected = published * o.subscribers as u64;
    let total = || -> u64 {
        received
            .iter()
            .map(|r| r.count.load(Ordering::Relaxed))
            .sum()
    };
    wait_for_count(total, expected, QUIET, &control.stop).await;
    done.cancel();
    for s in subscribers {
        let _ = s.await;
    }
    let _ = ticker.await;
    let delivered: u64 = received
        .iter()
        .map(|r| r.count.load(Ordering::Relaxed))
        .sum();
    if let Some(last) = received
        .iter()
        .map(|r| r.last_us.load(Ordering::Relaxed))
        .max()
    {
        finished = finished.max(epoch + Duration::from_micros(last));
    }
    let seconds = finished.duration_since(began).as_secs_f64().max(1e-9);
    Ok(FlowReport {
        name: if o.publishers >= o.subscribers {
            "fanin"
        } else {
            "fanout"
        },
        qos: o.qos as u8,
        publishers: o.publishers,
        subscribers: o.subscribers,
        size: o.size,
        published,
        delivered,
        expected,
        lost: expected.saturating_sub(delivered),
        seconds,
        publish_rate: published as f64 / seconds,
        delivery_rate: delivered as f64 / seconds,
        interrupted: control.stop.is_cancelled(),
        broker: watch.map(BrokerWatch::finish),
    })
}

/// Where the subscribers connect: `sub_host`/`sub_port` where given, else the publishers'
/// host and port.
pub fn subscriber_target<'a>(
    host: &'a str,
    port: u16,
    sub_host: Option<&'a str>,
    sub_port: Option<u16>,
) -> (&'a str, u16) {
    (sub_host.unwrap_or(host), sub_port.unwrap_or(port))
}

/// Publishes a readiness probe from the publishers' broker every `READY_EVERY` until every
/// subscriber has seen one (or a stop): the subscriptions are then routable from there.
async fn wait_until_routable(
    o: &FlowOptions,
    received: &[Arc<Received>],
    control: &Control,
) -> std::io::Result<()> {
    if received.is_empty() {
        return Ok(());
    }
    let id = format!("{}ready", o.id_prefix);
    let (_r, mut w, _) = connect(o.addr, o.tls.as_ref(), o.version, &id, true, 600).await?;
    let probe = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: o.topic.as_str().into(),
        packet_id: 0,
        payload: Bytes::from_static(READY_PROBE),
        properties: Default::default(),
    });
    let deadline = Instant::now() + o.ready_timeout;
    while !received.iter().all(|r| r.ready.load(Ordering::Relaxed)) {
        if control.stop.is_cancelled() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "the subscriptions to {} at {} never became routable from {} in {:?}",
                    o.topic, o.sub_addr, o.addr, o.ready_timeout
                ),
            ));
        }
        w.push(&probe);
        w.flush().await?;
        tokio::time::sleep(READY_EVERY).await;
    }
    w.push(&Packet::Disconnect(Default::default()));
    let _ = w.flush().await;
    Ok(())
}

/// Connects a subscriber and waits for its SUBACK.
async fn subscribe(o: &FlowOptions, id: &str) -> std::io::Result<(ClientReader, ClientWriter)> {
    let (mut r, mut w, _) = connect(o.sub_addr, o.tls.as_ref(), o.version, id, true, 600)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("subscriber at {}: {e}", o.sub_addr)))?;
    w.push(&Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: vec![(o.topic.clone(), o.qos.into())],
        properties: Default::default(),
    }));
    w.flush().await?;
    loop {
        match r.next().await? {
            Packet::SubAck(a) if granted(&a.codes) => return Ok((r, w)),
            Packet::SubAck(_) => {
                return Err(std::io::Error::other(format!(
                    "the broker refused the subscription to {}",
                    o.topic
                )))
            }
            _ => {}
        }
    }
}

/// Redraws the progress bar from the counters until the run is done.
async fn show_progress(
    bar: indicatif::ProgressBar,
    published: Arc<AtomicU64>,
    received: Vec<Arc<Received>>,
    done: CancellationToken,
) {
    loop {
        bar.set_position(published.load(Ordering::Relaxed));
        let delivered: u64 = received
            .iter()
            .map(|r| r.count.load(Ordering::Relaxed))
            .sum();
        bar.set_message(format!("delivered {}", thousands(delivered as f64)));
        tokio::select! {
            _ = done.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    bar.finish_and_clear();
}

/// One publisher: sends its messages, paced when a rate is given, and waits for their
/// acknowledgements; adds what is done to `published`.
async fn publish_all(
    mut r: ClientReader,
    mut w: ClientWriter,
    o: &FlowOptions,
    published: &AtomicU64,
    stop: &CancellationToken,
) -> std::io::Result<()> {
    let payload = Bytes::from(vec![b'x'; o.size]);
    let topic: Arc<str> = o.topic.as_str().into();
    let per_publisher = o
        .rate
        .map(|r| f64::from(r.max(1)) / o.publishers.max(1) as f64);
    let began = Instant::now();
    let deadline = o.duration.map(|d| began + d);
    let (mut sent, mut done) = (0u64, 0u64);
    let mut next_id: u16 = 1;
    // An MQTT 5.0 server's receive maximum caps the window (more would be a protocol error).
    let window = o.window.max(1).min(usize::from(r.receive_maximum())) as u64;
    loop {
        let stopping = stop.is_cancelled() || deadline.is_some_and(|d| Instant::now() >= d);
        let allowed = match (stopping, per_publisher) {
            (true, _) => sent,
            (false, None) => o.messages,
            (false, Some(r)) => o
                .messages
                .min((began.elapsed().as_secs_f64() * r) as u64 + 1),
        };
        while sent < allowed && (o.qos == QoS::AtMostOnce || sent - done < window) {
            w.push(&Packet::Publish(Publish {
                dup: false,
                qos: o.qos,
                retain: false,
                topic: topic.clone(),
                packet_id: if o.qos == QoS::AtMostOnce { 0 } else { next_id },
                payload: payload.clone(),
                properties: Default::default(),
            }));
            next_id = next_id.checked_add(1).unwrap_or(1);
            sent += 1;
            if w.buffered() >= WRITE_BATCH {
                break;
            }
        }
        if w.buffered() > 0 {
            w.flush().await?;
        }
        if o.qos == QoS::AtMostOnce {
            published.fetch_add(sent - done, Ordering::Relaxed);
            done = sent;
        }
        if done == sent && (stopping || sent == o.messages) {
            return Ok(());
        }
        // Wait for what lets the loop go on: an acknowledgement, the next paced send, a stop.
        let next_due =
            per_publisher.map(|r| began + Duration::from_secs_f64((sent + 1) as f64 / r));
        let window_full = o.qos != QoS::AtMostOnce && sent - done >= window;
        let may_send = !window_full && sent < o.messages && !stopping;
        if o.qos == QoS::AtMostOnce && next_due.is_none() {
            tokio::task::yield_now().await;
            continue;
        }
        let sleep_until = match (may_send, next_due) {
            (true, Some(due)) => due,
            _ => Instant::now() + QUIET,
        };
        tokio::select! {
            packet = r.next(), if o.qos != QoS::AtMostOnce => {
                let acked = answer(packet?, &mut w);
                let mut acked = u64::from(acked);
                while let Some(p) = r.try_next()? {
                    acked += u64::from(answer(p, &mut w));
                }
                done += acked;
                published.fetch_add(acked, Ordering::Relaxed);
            }
            _ = tokio::time::sleep_until(sleep_until.into()) => {
                if stopping && !may_send {
                    // Unacknowledged after a quiet spell at the end: give up on them.
                    return Ok(());
                }
            }
            _ = stop.cancelled(), if !stopping => {}
        }
    }
}

/// Answers a publisher's acknowledgement; true when it completes a message.
fn answer(packet: Packet, w: &mut ClientWriter) -> bool {
    match packet {
        Packet::PubAck(_) | Packet::PubComp(_) => true,
        Packet::PubRec(Ack { packet_id: id, .. }) => {
            w.push(&Packet::PubRel(Ack::new(id)));
            false
        }
        _ => false,
    }
}

/// One subscriber: counts deliveries and acknowledges them, one write per read.
async fn count_deliveries(
    mut r: ClientReader,
    mut w: ClientWriter,
    counts: Arc<Received>,
    epoch: Instant,
    done: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            p = r.next() => p,
            _ = done.cancelled() => return,
        };
        let Ok(first) = first else { return };
        let mut n = u64::from(deliver(first, &mut w, &counts));
        loop {
            match r.try_next() {
                Ok(Some(p)) => n += u64::from(deliver(p, &mut w, &counts)),
                Ok(None) => break,
                Err(_) => return,
            }
        }
        if n > 0 {
            counts.count.fetch_add(n, Ordering::Relaxed);
            counts
                .last_us
                .store(epoch.elapsed().as_micros() as u64, Ordering::Relaxed);
        }
        if w.buffered() > 0 && w.flush().await.is_err() {
            return;
        }
    }
}

/// Acknowledges a delivery; true when the packet was one of the run's messages (a readiness
/// probe only marks the subscriber ready).
fn deliver(packet: Packet, w: &mut ClientWriter, counts: &Received) -> bool {
    match packet {
        Packet::Publish(p) => {
            match p.qos {
                QoS::AtLeastOnce => w.push(&Packet::PubAck(Ack::new(p.packet_id))),
                QoS::ExactlyOnce => w.push(&Packet::PubRec(Ack::new(p.packet_id))),
                QoS::AtMostOnce => {}
            }
            if *p.payload == *READY_PROBE {
                counts.ready.store(true, Ordering::Relaxed);
                return false;
            }
            true
        }
        Packet::PubRel(Ack { packet_id: id, .. }) => {
            w.push(&Packet::PubComp(Ack::new(id)));
            false
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::bench::test_broker::TestBroker;

    fn options(addr: SocketAddr, qos: QoS, publishers: usize, subscribers: usize) -> FlowOptions {
        FlowOptions {
            addr,
            version: ProtocolVersion::V311,
            sub_addr: addr,
            ready_timeout: READY_TIMEOUT,
            tls: None,
            publishers,
            subscribers,
            messages: 200,
            qos,
            size: 16,
            window: 8,
            rate: None,
            duration: None,
            topic: format!("bench/{}/{publishers}/{subscribers}", qos as u8),
            id_prefix: format!("t{}-{publishers}-{subscribers}-", qos as u8),
            broker_pid: Some(std::process::id()),
        }
    }

    #[tokio::test]
    async fn fan_in_and_fan_out_deliver_every_message_at_every_qos() {
        let broker = TestBroker::start().await;
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let r = run(options(broker.addr, qos, 3, 1), &Control::quiet())
                .await
                .unwrap();
            assert_eq!(r.name, "fanin");
            assert_eq!((r.published, r.delivered, r.lost), (600, 600, 0), "{qos:?}");
            assert!(r.broker.is_some());
            let r = run(options(broker.addr, qos, 1, 4), &Control::quiet())
                .await
                .unwrap();
            assert_eq!(r.name, "fanout");
            assert_eq!(
                (r.published, r.expected, r.delivered),
                (200, 800, 800),
                "{qos:?}"
            );
            assert!(r.delivery_rate > 0.0);
        }
        broker.stop().await;
    }

    #[tokio::test]
    async fn fan_in_speaks_mqtt_5_and_delivers_every_message_at_every_qos() {
        let broker = TestBroker::start().await;
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let mut o = options(broker.addr, qos, 3, 1);
            o.version = ProtocolVersion::V5;
            o.id_prefix = format!("v5-{}", o.id_prefix);
            let r = run(o, &Control::quiet()).await.unwrap();
            assert_eq!((r.published, r.delivered, r.lost), (600, 600, 0), "{qos:?}");
        }
        broker.stop().await;
    }

    #[tokio::test]
    async fn without_subscribers_publishes_are_acknowledged() {
        let broker = TestBroker::start().await;
        let r = run(
            options(broker.addr, QoS::AtLeastOnce, 2, 0),
            &Control::quiet(),
        )
        .await
        .unwrap();
        assert_eq!((r.published, r.expected, r.delivered), (400, 0, 0));
        broker.stop().await;
    }

    #[tokio::test]
    async fn a_paced_run_sends_everything_and_a_time_limit_stops_it() {
        let broker = TestBroker::start().await;
        let mut o = options(broker.addr, QoS::AtLeastOnce, 2, 1);
        o.rate = Some(2000);
        let r = run(o.clone(), &Control::quiet()).await.unwrap();
        assert_eq!((r.published, r.delivered), (400, 400));
        // A limit far below what the count needs ends the run with fewer, all delivered.
        o.rate = Some(100);
        o.messages = 1_000_000;
        o.duration = Some(Duration::from_millis(300));
        let r = run(o, &Control::quiet()).await.unwrap();
        assert!(r.published > 0 && r.published < 2_000_000, "{r:?}");
        assert_eq!(r.delivered, r.published);
        broker.stop().await;
    }

    #[test]
    fn subscribers_default_to_the_publishers_broker() {
        assert_eq!(
            subscriber_target("127.0.0.1", 1883, None, None),
            ("127.0.0.1", 1883)
        );
        assert_eq!(
            subscriber_target("127.0.0.1", 1883, None, Some(1884)),
            ("127.0.0.1", 1884)
        );
        assert_eq!(
            subscriber_target("127.0.0.1", 1883, Some("::1"), None),
            ("::1", 1883)
        );
    }

    #[tokio::test]
    async fn subscribers_connect_to_their_own_address_and_publishing_waits_for_their_route() {
        // Two brokers that know nothing of each other: the subscriber's filter is on the
        // second, and the first never routes to it, so the run ends at the readiness check
        // instead of publishing into the void.
        let (publishers, subscribers) = (TestBroker::start().await, TestBroker::start().await);
        let mut o = options(publishers.addr, QoS::AtMostOnce, 1, 1);
        o.sub_addr = subscribers.addr;
        o.ready_timeout = Duration::from_millis(300);
        let run = tokio::spawn(async move { run(o, &Control::quiet()).await });
        let deadline = Instant::now() + Duration::from_secs(10);
        while subscribers.broker.router.subscription_count() == 0 {
            assert!(
                Instant::now() < deadline,
                "the subscriber never reached its broker"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(publishers.broker.router.subscription_count(), 0);
        let err = run.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
        assert!(err.to_string().contains("never became routable"), "{err}");
        publishers.stop().await;
        subscribers.stop().await;
    }

    #[tokio::test]
    async fn a_stop_ends_the_run_with_what_was_measured() {
        let broker = TestBroker::start().await;
        let mut o = options(broker.addr, QoS::AtMostOnce, 1, 1);
        o.rate = Some(1000);
        o.messages = 1_000_000;
        let control = Control::quiet();
        let stop = control.stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            stop.cancel();
        });
        let r = run(o, &control).await.unwrap();
        assert!(r.interrupted);
        assert!(r.published > 0 && r.published < 1_000_000);
        broker.stop().await;
    }
}
