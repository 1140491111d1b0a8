//! `fubar bench probe`: Erlang fubar's `mqtt_probe`. A batch of clients (ids `0001`…`N`) is
//! held connected; one probe client publishes every `interval` to a random one of them by
//! client id (direct messages), or to a topic they all subscribe to. Each payload carries its
//! send time; the batch records publish-to-delivery latency in one HDR histogram.
//!
//! Each batch client also subscribes to its own id, so brokers without fubar's direct
//! messaging deliver the probe's messages too (fubar delivers such a message once).

use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::conns::{batch_start, BatchClient, BatchOptions};
use super::control::{wait_for_count, BrokerUsage, BrokerWatch, Control, QUIET};
use super::latency::{age_of, stamped_payload, Percentiles};
use super::report::{interrupted_note, thousands, Report};
use crate::mqtt::packet::{Ack, Packet, Publish, QoS, Subscribe};
use crate::tools::client::{connect, granted, ClientReader, ClientWriter};

/// What to run.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// The batch of clients (its `addr` is the broker).
    pub batch: BatchOptions,
    /// Time between two probe messages (zero: as fast as the socket takes them).
    pub interval: Duration,
    /// How long the probe publishes.
    pub duration: Duration,
    /// Publish to this topic, which every batch client subscribes to, rather than to client
    /// ids.
    pub topic: Option<String>,
    /// QoS of the probe's publishes and the subscriptions.
    pub qos: QoS,
    /// Payload bytes (at least 8: the send time).
    pub size: usize,
    /// The broker's process id, to report its CPU time and memory.
    pub broker_pid: Option<u32>,
}

/// What was measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProbeReport {
    /// `direct` (to client ids) or `topic`.
    pub mode: &'static str,
    /// QoS of the probe's messages.
    pub qos: u8,
    /// Batch clients asked for.
    pub clients: usize,
    /// Batch clients connected and subscribed.
    pub connected: u64,
    /// Batch clients that failed to connect or subscribe.
    pub failed: u64,
    /// Connections per second while the batch started.
    pub connect_rate: f64,
    /// Messages the probe published.
    pub sent: u64,
    /// Messages the batch received.
    pub received: u64,
    /// Deliveries expected: `sent` (direct) or `sent × connected` (topic).
    pub expected: u64,
    /// Seconds the probe ran, to its last delivery.
    pub seconds: f64,
    /// `sent / seconds`.
    pub sent_rate: f64,
    /// `received / seconds`.
    pub received_rate: f64,
    /// Publish-to-delivery latency.
    #[serde(flatten)]
    pub latency: Percentiles,
    /// Cut short by Ctrl-C.
    pub interrupted: bool,
    /// The broker's CPU time and memory (with `--broker-pid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker: Option<BrokerUsage>,
}

impl Report for ProbeReport {
    fn bench(&self) -> &'static str {
        "probe"
    }

    fn rows(&self) -> Vec<(String, String)> {
        let mut rows = vec![
            (
                "probe".to_owned(),
                format!(
                    "{} messages at QoS {} to {} clients{}",
                    self.mode,
                    self.qos,
                    thousands(self.clients as f64),
                    interrupted_note(self.interrupted)
                ),
            ),
            ("connected".into(), thousands(self.connected as f64)),
            ("failed".into(), thousands(self.failed as f64)),
            ("connects/s".into(), thousands(self.connect_rate)),
            ("sent".into(), thousands(self.sent as f64)),
            ("received".into(), thousands(self.received as f64)),
            ("expected".into(), thousands(self.expected as f64)),
            ("seconds".into(), format!("{:.3}", self.seconds)),
            ("sent/s".into(), thousands(self.sent_rate)),
            ("received/s".into(), thousands(self.received_rate)),
        ];
        rows.extend(self.latency.rows());
        rows.extend(super::control::usage_rows(
            self.broker.as_ref(),
            self.received as f64,
            "msgs",
        ));
        rows
    }
}

/// What the batch received, shared by its readers.
#[derive(Debug)]
struct Deliveries {
    count: AtomicU64,
    latency: Mutex<Histogram<u64>>,
}

/// Runs the probe.
pub async fn run(o: ProbeOptions, control: &Control) -> std::io::Result<ProbeReport> {
    let epoch = Instant::now();
    control.progress.set_length(o.batch.clients as u64);
    let batch = batch_start(&o.batch, control).await;
    let mut failed: u64 = batch.failures.values().sum();
    let connect_rate = batch.clients.len() as f64 / batch.seconds.max(1e-9);
    let mut subscribed = Vec::with_capacity(batch.clients.len());
    for client in batch.clients {
        match subscribe(client, o.topic.as_deref(), o.qos).await {
            Ok(c) => subscribed.push(c),
            Err(_) => failed += 1,
        }
    }
    let ids: Vec<String> = subscribed.iter().map(|c| c.id.clone()).collect();
    let deliveries = Arc::new(Deliveries {
        count: AtomicU64::new(0),
        latency: Mutex::new(Percentiles::histogram()),
    });
    let done = CancellationToken::new();
    let readers: Vec<_> = subscribed
        .into_iter()
        .map(|c| {
            tokio::spawn(receive(
                c.reader,
                c.writer,
                epoch,
                ping_every(o.batch.keep_alive),
                deliveries.clone(),
                done.clone(),
            ))
        })
        .collect();
    let watch = BrokerWatch::start(o.broker_pid);
    let probe = format!("{}probe", o.batch.id_prefix);
    let (pr, pw, _) = connect(o.batch.addr, None, o.batch.version, &probe, true, 600).await?;
    control.progress.reset();
    control.progress.set_length(o.duration.as_millis() as u64);
    let began = Instant::now();
    let sent = if ids.is_empty() {
        0
    } else {
        send(pr, pw, &o, &ids, epoch, control).await?
    };
    let expected = if o.topic.is_some() {
        sent * ids.len() as u64
    } else {
        sent
    };
    let count = || deliveries.count.load(Ordering::Relaxed);
    wait_for_count(count, expected, QUIET, &control.stop).await;
    let seconds = began.elapsed().as_secs_f64().max(1e-9);
    done.cancel();
    for r in readers {
        let _ = r.await;
    }
    control.progress.finish_and_clear();
    let received = count();
    let latency = Percentiles::of(&deliveries.latency.lock());
    Ok(ProbeReport {
        mode: if o.topic.is_some() { "topic" } else { "direct" },
        qos: o.qos as u8,
        clients: o.batch.clients,
        connected: ids.len() as u64,
        failed,
        connect_rate,
        sent,
        received,
        expected,
        seconds,
        sent_rate: sent as f64 / seconds,
        received_rate: received as f64 / seconds,
        latency,
        interrupted: control.stop.is_cancelled(),
        broker: watch.map(BrokerWatch::finish),
    })
}

/// Subscribes a batch client to its own id (or the common topic) and waits for the SUBACK.
async fn subscribe(
    mut c: BatchClient,
    topic: Option<&str>,
    qos: QoS,
) -> std::io::Result<BatchClient> {
    let filter = topic.unwrap_or(&c.id).to_owned();
    c.writer.push(&Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: vec![(filter, qos.into())],
        properties: Default::default(),
    }));
    c.writer.flush().await?;
    loop {
        match c.reader.next().await? {
            Packet::SubAck(a) if granted(&a.codes) => return Ok(c),
            Packet::SubAck(_) => return Err(std::io::Error::other("subscription refused")),
            _ => {}
        }
    }
}

/// The probe: publishes every `interval` until the duration is over or the run is stopped;
/// returns how many it published.
async fn send(
    mut r: ClientReader,
    mut w: ClientWriter,
    o: &ProbeOptions,
    ids: &[String],
    epoch: Instant,
    control: &Control,
) -> std::io::Result<u64> {
    let began = Instant::now();
    let deadline = began + o.duration;
    let mut rng = XorShift::seeded();
    let topics: Vec<Arc<str>> = match &o.topic {
        Some(t) => vec![t.as_str().into()],
        None => ids.iter().map(|id| id.as_str().into()).collect(),
    };
    let mut sent = 0u64;
    while Instant::now() < deadline && !control.stop.is_cancelled() {
        let topic = topics[rng.below(topics.len())].clone();
        let packet_id = if o.qos == QoS::AtMostOnce {
            0
        } else {
            (sent % 65_535) as u16 + 1
        };
        w.push(&Packet::Publish(Publish {
            dup: false,
            qos: o.qos,
            retain: false,
            topic,
            packet_id,
            payload: stamped_payload(epoch, o.size),
            properties: Default::default(),
        }));
        sent += 1;
        if !o.interval.is_zero() || w.buffered() >= 16 << 10 || o.qos != QoS::AtMostOnce {
            w.flush().await?;
        }
        if o.qos != QoS::AtMostOnce {
            // One message in flight at a time: the probe measures, it does not flood.
            loop {
                match r.next().await? {
                    Packet::PubAck(_) | Packet::PubComp(_) => break,
                    Packet::PubRec(Ack { packet_id: id, .. }) => {
                        w.push(&Packet::PubRel(Ack::new(id)));
                        w.flush().await?;
                    }
                    _ => {}
                }
            }
        }
        control
            .progress
            .set_position(began.elapsed().as_millis() as u64);
        if o.interval.is_zero() {
            tokio::task::yield_now().await;
        } else {
            let next = began + o.interval * sent.min(u64::from(u32::MAX)) as u32;
            tokio::select! {
                _ = tokio::time::sleep_until(next.into()) => {}
                _ = control.stop.cancelled() => {}
            }
        }
    }
    w.flush().await?;
    Ok(sent)
}

/// How often a client with this keep-alive sends PINGREQ (never without one).
fn ping_every(keep_alive: u16) -> Duration {
    match keep_alive {
        0 => Duration::from_secs(365 * 24 * 3600),
        k => Duration::from_secs(u64::from(k)) / 2,
    }
}

/// A batch client's reader: times and acknowledges each delivery, and keeps the connection
/// alive, until `done`.
async fn receive(
    mut r: ClientReader,
    mut w: ClientWriter,
    epoch: Instant,
    ping: Duration,
    deliveries: Arc<Deliveries>,
    done: CancellationToken,
) {
    let mut next_ping = Instant::now() + ping;
    loop {
        let packet = tokio::select! {
            p = r.next() => p,
            _ = tokio::time::sleep_until(next_ping.into()) => {
                next_ping += ping;
                w.push(&Packet::PingReq);
                if w.flush().await.is_err() {
                    return;
                }
                continue;
            }
            _ = done.cancelled() => return,
        };
        match packet {
            Ok(Packet::Publish(p)) => {
                if let Some(us) = age_of(epoch, &p.payload) {
                    let mut h = deliveries.latency.lock();
                    h.saturating_record(us);
                }
                deliveries.count.fetch_add(1, Ordering::Relaxed);
                match p.qos {
                    QoS::AtLeastOnce => w.push(&Packet::PubAck(Ack::new(p.packet_id))),
                    QoS::ExactlyOnce => w.push(&Packet::PubRec(Ack::new(p.packet_id))),
                    QoS::AtMostOnce => {}
                }
            }
            Ok(Packet::PubRel(Ack { packet_id: id, .. })) => w.push(&Packet::PubComp(Ack::new(id))),
            Ok(_) => {}
            Err(_) => return,
        }
        if w.buffered() > 0 && w.flush().await.is_err() {
            return;
        }
    }
}

/// A small xorshift generator: the probe's random pick needs no more.
struct XorShift(u64);

impl XorShift {
    fn seeded() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Self(nanos | 1)
    }

    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::bench::test_broker::TestBroker;

    fn options(addr: std::net::SocketAddr, topic: Option<&str>, qos: QoS) -> ProbeOptions {
        ProbeOptions {
            batch: BatchOptions {
                addr,
                version: crate::mqtt::packet::ProtocolVersion::V311,
                clients: 20,
                first: 0,
                id_prefix: format!("p{}{}-", qos as u8, topic.is_some()),
                rate: None,
                concurrency: 8,
                keep_alive: 0,
                subscribe: None,
                dial: None,
            },
            interval: Duration::from_millis(2),
            duration: Duration::from_millis(300),
            topic: topic.map(str::to_owned),
            qos,
            size: 32,
            broker_pid: None,
        }
    }

    #[tokio::test]
    async fn direct_messages_each_reach_one_client_once() {
        let broker = TestBroker::start().await;
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let r = run(options(broker.addr, None, qos), &Control::quiet())
                .await
                .unwrap();
            assert_eq!((r.mode, r.connected, r.failed), ("direct", 20, 0));
            assert!(r.sent > 0);
            assert_eq!((r.expected, r.received), (r.sent, r.sent), "{qos:?}");
            assert!(r.latency.p50_us > 0 && r.latency.p50_us <= r.latency.max_us);
        }
        broker.stop().await;
    }

    #[tokio::test]
    async fn topic_messages_reach_every_client() {
        let broker = TestBroker::start().await;
        let r = run(
            options(broker.addr, Some("probe/all"), QoS::AtLeastOnce),
            &Control::quiet(),
        )
        .await
        .unwrap();
        assert_eq!(r.mode, "topic");
        assert!(r.sent > 0);
        assert_eq!(r.expected, r.sent * 20);
        assert_eq!(r.received, r.expected);
        broker.stop().await;
    }

    #[test]
    fn random_picks_stay_in_range_and_spread() {
        let mut rng = XorShift::seeded();
        let mut seen = [0u32; 7];
        for _ in 0..7_000 {
            seen[rng.below(7)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 500), "{seen:?}");
    }
}
