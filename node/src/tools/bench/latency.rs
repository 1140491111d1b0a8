//! `fubar bench latency`: one publisher at a fixed rate, one subscriber; each payload carries
//! its send time, and the subscriber records publish-to-delivery latency in an HDR histogram.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;

use crate::mqtt::packet::{Packet, Publish, QoS, Subscribe};
use crate::tools::client::{connect, TlsClient};

/// What to run.
#[derive(Debug, Clone)]
pub struct LatencyOptions {
    /// The broker.
    pub addr: SocketAddr,
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
    pub tls: Option<TlsClient>,
    /// Client id prefix.
    pub id_prefix: String,
}

/// What was measured, microseconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencyReport {
    /// Messages received.
    pub received: u64,
    /// Percentiles: 50, 90, 99, 99.9, max.
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

/// Runs the benchmark.
pub async fn run(o: LatencyOptions) -> std::io::Result<LatencyReport> {
    let started = Instant::now();
    let (mut sr, mut sw, _) = connect(
        o.addr,
        o.tls.as_ref(),
        &format!("{}sub", o.id_prefix),
        true,
        600,
    )
    .await?;
    sw.push(&Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: vec![(o.topic.clone(), o.qos)],
    }));
    sw.flush().await?;
    while !matches!(sr.next().await?, Packet::SubAck(_)) {}
    let expected = o.messages;
    let receiver = tokio::spawn(async move {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
        let mut got = 0u64;
        while got < expected {
            let next = tokio::time::timeout(Duration::from_secs(5), sr.next()).await;
            let Ok(Ok(packet)) = next else { break };
            if let Packet::Publish(p) = packet {
                got += 1;
                if let Some(sent) = p.payload.get(..8) {
                    let sent_us = u64::from_be_bytes(sent.try_into().unwrap_or([0; 8]));
                    let now_us = started.elapsed().as_micros() as u64;
                    h.saturating_record(now_us.saturating_sub(sent_us).max(1));
                }
                match p.qos {
                    QoS::AtLeastOnce => sw.push(&Packet::PubAck(p.packet_id)),
                    QoS::ExactlyOnce => sw.push(&Packet::PubRec(p.packet_id)),
                    QoS::AtMostOnce => {}
                }
            } else if let Packet::PubRel(id) = packet {
                sw.push(&Packet::PubComp(id));
            }
            if sw.buffered() > 0 && sw.flush().await.is_err() {
                break;
            }
        }
        (got, h)
    });
    let (mut pr, mut pw, _) = connect(
        o.addr,
        o.tls.as_ref(),
        &format!("{}pub", o.id_prefix),
        true,
        600,
    )
    .await?;
    let topic: Arc<str> = o.topic.as_str().into();
    let every = Duration::from_secs_f64(1.0 / f64::from(o.rate.max(1)));
    let begin = Instant::now();
    for i in 0..o.messages {
        tokio::time::sleep_until((begin + every * i as u32).into()).await;
        let mut payload = vec![0u8; o.size.max(8)];
        payload[..8].copy_from_slice(&(started.elapsed().as_micros() as u64).to_be_bytes());
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
            payload: Bytes::from(payload),
        }));
        pw.flush().await?;
        if o.qos != QoS::AtMostOnce {
            // Keep the publisher's acknowledgements flowing (never more than one behind).
            loop {
                match pr.next().await? {
                    Packet::PubAck(_) | Packet::PubComp(_) => break,
                    Packet::PubRec(id) => {
                        pw.push(&Packet::PubRel(id));
                        pw.flush().await?;
                    }
                    _ => {}
                }
            }
        }
    }
    let (received, h) = receiver.await.map_err(std::io::Error::other)?;
    Ok(LatencyReport {
        received,
        p50_us: h.value_at_quantile(0.50),
        p90_us: h.value_at_quantile(0.90),
        p99_us: h.value_at_quantile(0.99),
        p999_us: h.value_at_quantile(0.999),
        max_us: h.max(),
    })
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
            let r = run(LatencyOptions {
                addr,
                rate: 2000,
                messages: 200,
                qos,
                size: 64,
                topic: "lat".into(),
                tls: None,
                id_prefix: format!("lat{}-", qos as u8),
            })
            .await
            .unwrap();
            assert_eq!(r.received, 200, "{qos:?}");
            assert!(r.p50_us > 0 && r.p50_us <= r.p99_us && r.p99_us <= r.max_us);
        }
        broker.stop().await;
    }
}
