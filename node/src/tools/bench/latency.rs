//! `fubar bench latency`: one publisher at a fixed rate, one subscriber; each payload carries
//! its send time, and the subscriber records publish-to-delivery latency in an HDR histogram.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::control::{wait_for_count, BrokerUsage, BrokerWatch, Control, QUIET};
use super::report::{interrupted_note, thousands, Report};
use crate::mqtt::packet::{Ack, Packet, ProtocolVersion, Publish, QoS, Subscribe};
use crate::tools::client::{connect, ClientReader, ClientWriter, Dial};

/// What to run.
#[derive(Debug, Clone)]
pub struct LatencyOptions {
    /// The broker.
    pub addr: SocketAddr,
    /// The protocol version every client speaks (3.1.1 unless `-V 5`).
    pub version: ProtocolVersion,
    /// Messages per second.
    pub rate: u32,
    /// Messages in all.
    pub messages: u64,
    /// QoS of publish and subscription.
    pub qos: QoS,
    /// Payload bytes (at least 8: the send time).
    pub size: usize,
    /// Topic.
    pub topic: String,
    /// TLS, if any.
    pub tls: Option<Dial>,
    /// Client id prefix.
    pub id_prefix: String,
    /// The broker's process id, to report its CPU time.
    pub broker_pid: Option<u32>,
}

/// Latency percentiles of a set of deliveries, microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest.
    pub max_us: u64,
}

impl Percentiles {
    /// The percentiles of a histogram of microseconds.
    pub fn of(h: &Histogram<u64>) -> Self {
        Self {
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }

    /// A histogram of 1 µs to 60 s at 3 significant digits.
    pub fn histogram() -> Histogram<u64> {
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
    }

    /// Table rows, in milliseconds.
    pub fn rows(&self) -> Vec<(String, String)> {
        [
            ("p50", self.p50_us),
            ("p90", self.p90_us),
            ("p99", self.p99_us),
            ("p99.9", self.p999_us),
            ("max", self.max_us),
        ]
        .into_iter()
        .map(|(name, us)| (name.to_owned(), format!("{:.3} ms", us as f64 / 1000.0)))
        .collect()
    }
}

/// What was measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LatencyReport {
    /// QoS of publish and subscription.
    pub qos: u8,
    /// Messages per second asked for.
    pub rate: u32,
    /// Messages sent.
    pub sent: u64,
    /// Messages received.
    pub received: u64,
    /// Latency percentiles.
    #[serde(flatten)]
    pub latency: Percentiles,
    /// Cut short by Ctrl-C.
    pub interrupted: bool,
    /// The broker's CPU time and memory (with `--broker-pid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker: Option<BrokerUsage>,
}

impl Report for LatencyReport {
    fn bench(&self) -> &'static str {
        "latency"
    }

    fn rows(&self) -> Vec<(String, String)> {
        let mut rows = vec![
            (
                "latency".to_owned(),
                format!(
                    "QoS {} at {} msg/s{}",
                    self.qos,
                    thousands(f64::from(self.rate)),
                    interrupted_note(self.interrupted)
                ),
            ),
            ("sent".into(), thousands(self.sent as f64)),
            ("received".into(), thousands(self.received as f64)),
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

/// Microseconds since `epoch`, as the first 8 bytes of a payload of `size` bytes.
pub fn stamped_payload(epoch: Instant, size: usize) -> Bytes {
    let mut payload = vec![0u8; size.max(8)];
    payload[..8].copy_from_slice(&(epoch.elapsed().as_micros() as u64).to_be_bytes());
    Bytes::from(payload)
}

/// Microseconds from the stamp in `payload` to now, if it has one.
pub fn age_of(epoch: Instant, payload: &[u8]) -> Option<u64> {
    let sent = u64::from_be_bytes(payload.get(..8)?.try_into().ok()?);
    Some(
        (epoch.elapsed().as_micros() as u64)
            .saturating_sub(sent)
            .max(1),
    )
}

/// Runs the benchmark.
pub async fn run(o: LatencyOptions, control: &Control) -> std::io::Result<LatencyReport> {
    let epoch = Instant::now();
    let (mut sr, mut sw, _) = connect(
        o.addr,
        o.tls.as_ref(),
        o.version,
        &format!("{}sub", o.id_prefix),
        true,
        600,
    )
    .await?;
    sw.push(&Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: vec![(o.topic.clone(), o.qos.into())],
        properties: Default::default(),
    }));
    sw.flush().await?;
    while !matches!(sr.next().await?, Packet::SubAck(_)) {}
    let received = Arc::new(AtomicU64::new(0));
    let done = CancellationToken::new();
    let receiver = tokio::spawn(time_deliveries(
        sr,
        sw,
        epoch,
        received.clone(),
        done.clone(),
    ));
    let (mut pr, mut pw, _) = connect(
        o.addr,
        o.tls.as_ref(),
        o.version,
        &format!("{}pub", o.id_prefix),
        true,
        600,
    )
    .await?;
    let watch = BrokerWatch::start(o.broker_pid);
    control.progress.set_length(o.messages);
    let topic: Arc<str> = o.topic.as_str().into();
    let every = Duration::from_secs_f64(1.0 / f64::from(o.rate.max(1)));
    let begin = Instant::now();
    let mut sent = 0;
    for i in 0..o.messages {
        tokio::select! {
            _ = tokio::time::sleep_until((begin + every * i as u32).into()) => {}
            _ = control.stop.cancelled() => break,
        }
        let packet_id = if o.qos == QoS::AtMostOnce {
            0
        } else {
            (i % 65_535) as u16 + 1
        };
        pw.push(&Packet::Publish(Publish {
            dup: false,
            qos: o.qos,
            retain: false,
            topic: topic.clone(),
            packet_id,
            payload: stamped_payload(epoch, o.size),
            properties: Default::default(),
        }));
        pw.flush().await?;
        sent += 1;
        control.progress.inc(1);
        if o.qos != QoS::AtMostOnce {
            // Keep the publisher's acknowledgements flowing (never more than one behind).
            loop {
                match pr.next().await? {
                    Packet::PubAck(_) | Packet::PubComp(_) => break,
                    Packet::PubRec(Ack { packet_id: id, .. }) => {
                        pw.push(&Packet::PubRel(Ack::new(id)));
                        pw.flush().await?;
                    }
                    _ => {}
                }
            }
        }
    }
    let count = || received.load(Ordering::Relaxed);
    wait_for_count(count, sent, QUIET, &control.stop).await;
    done.cancel();
    let h = receiver.await.map_err(std::io::Error::other)?;
    control.progress.finish_and_clear();
    Ok(LatencyReport {
        qos: o.qos as u8,
        rate: o.rate,
        sent,
        received: received.load(Ordering::Relaxed),
        latency: Percentiles::of(&h),
        interrupted: control.stop.is_cancelled(),
        broker: watch.map(BrokerWatch::finish),
    })
}

/// The subscriber: records each delivery's age and acknowledges it, until `done`.
async fn time_deliveries(
    mut r: ClientReader,
    mut w: ClientWriter,
    epoch: Instant,
    received: Arc<AtomicU64>,
    done: CancellationToken,
) -> Histogram<u64> {
    let mut h = Percentiles::histogram();
    loop {
        let packet = tokio::select! {
            p = r.next() => p,
            _ = done.cancelled() => break,
        };
        match packet {
            Ok(Packet::Publish(p)) => {
                if let Some(us) = age_of(epoch, &p.payload) {
                    h.saturating_record(us);
                }
                received.fetch_add(1, Ordering::Relaxed);
                match p.qos {
                    QoS::AtLeastOnce => w.push(&Packet::PubAck(Ack::new(p.packet_id))),
                    QoS::ExactlyOnce => w.push(&Packet::PubRec(Ack::new(p.packet_id))),
                    QoS::AtMostOnce => {}
                }
            }
            Ok(Packet::PubRel(Ack { packet_id: id, .. })) => w.push(&Packet::PubComp(Ack::new(id))),
            Ok(_) => {}
            Err(_) => break,
        }
        if w.buffered() > 0 && w.flush().await.is_err() {
            break;
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::bench::test_broker::TestBroker;

    #[tokio::test]
    async fn every_message_is_timed() {
        let broker = TestBroker::start().await;
        let addr = broker.addr;
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let r = run(
                LatencyOptions {
                    addr,
                    version: ProtocolVersion::V311,
                    rate: 2000,
                    messages: 200,
                    qos,
                    size: 64,
                    topic: "lat".into(),
                    tls: None,
                    id_prefix: format!("lat{}-", qos as u8),
                    broker_pid: None,
                },
                &Control::quiet(),
            )
            .await
            .unwrap();
            assert_eq!((r.sent, r.received), (200, 200), "{qos:?}");
            let l = &r.latency;
            assert!(l.p50_us > 0 && l.p50_us <= l.p99_us && l.p99_us <= l.max_us);
        }
        broker.stop().await;
    }

    #[test]
    fn a_stamped_payload_tells_its_age() {
        let epoch = Instant::now() - Duration::from_millis(5);
        let p = stamped_payload(epoch, 3);
        assert_eq!(p.len(), 8, "at least the stamp");
        std::thread::sleep(Duration::from_millis(2));
        assert!(age_of(epoch, &p).unwrap() >= 2_000);
        assert_eq!(age_of(epoch, b"short"), None);
    }
}
