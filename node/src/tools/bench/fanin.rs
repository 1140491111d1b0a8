//! `fubar bench fanin`: many publishers, one topic, optionally one subscriber counting.
//!
//! Each publisher keeps up to `window` QoS 1/2 messages unacknowledged (QoS 0 is written as
//! fast as the socket takes it). The rate reported is messages acknowledged (QoS 1/2) or
//! written (QoS 0) per second, from the first publish to the last acknowledgement, or, with a
//! subscriber, to the last message it received.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Barrier;

use crate::mqtt::packet::{Packet, Publish, QoS, Subscribe};
use crate::tools::client::{connect, ClientReader, ClientWriter, TlsClient};

/// What to run.
#[derive(Debug, Clone)]
pub struct FaninOptions {
    /// The broker.
    pub addr: SocketAddr,
    /// Publishing connections.
    pub publishers: usize,
    /// Messages per publisher.
    pub messages: usize,
    /// QoS of the publishes.
    pub qos: QoS,
    /// Payload bytes.
    pub size: usize,
    /// Unacknowledged publishes per publisher.
    pub window: usize,
    /// Topic.
    pub topic: String,
    /// Also run a subscriber (QoS 0) and count what it receives.
    pub subscribe: bool,
    /// Client id prefix.
    pub id_prefix: String,
    /// Connect over TLS.
    pub tls: Option<TlsClient>,
}

/// What was measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaninReport {
    /// Messages published and acknowledged (or written, for QoS 0).
    pub published: u64,
    /// Messages the subscriber received (0 without one).
    pub received: u64,
    /// Seconds from the first publish to the last acknowledgement.
    pub seconds: f64,
    /// `published / seconds`.
    pub rate: f64,
}

/// Runs the benchmark.
pub async fn run(o: FaninOptions) -> std::io::Result<FaninReport> {
    let expected = (o.publishers * o.messages) as u64;
    let subscriber = if o.subscribe {
        let (mut r, mut w, _) = connect(
            o.addr,
            o.tls.as_ref(),
            &format!("{}sub", o.id_prefix),
            true,
            600,
        )
        .await?;
        w.push(&Packet::Subscribe(Subscribe {
            packet_id: 1,
            filters: vec![(o.topic.clone(), QoS::AtMostOnce)],
        }));
        w.flush().await?;
        loop {
            if let Packet::SubAck(_) = r.next().await? {
                break;
            }
        }
        Some(tokio::spawn(count_received(r, w, expected)))
    } else {
        None
    };
    let start = Arc::new(Barrier::new(o.publishers + 1));
    let mut tasks = Vec::new();
    for i in 0..o.publishers {
        let (r, w, _) = connect(
            o.addr,
            o.tls.as_ref(),
            &format!("{}pub{i}", o.id_prefix),
            true,
            600,
        )
        .await?;
        let (o, start) = (o.clone(), start.clone());
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            publish_all(r, w, &o).await
        }));
    }
    start.wait().await;
    let began = Instant::now();
    let mut published = 0;
    for t in tasks {
        published += t.await.map_err(std::io::Error::other)??;
    }
    let mut finished = Instant::now();
    let received = match subscriber {
        Some(t) => {
            let (n, last) = t.await.unwrap_or((0, finished));
            finished = finished.max(last);
            n
        }
        None => 0,
    };
    // With a subscriber, the run ends when it has received what it will receive.
    let seconds = finished.duration_since(began).as_secs_f64();
    Ok(FaninReport {
        published,
        received,
        seconds,
        rate: published as f64 / seconds.max(1e-9),
    })
}

async fn publish_all(
    mut r: ClientReader,
    mut w: ClientWriter,
    o: &FaninOptions,
) -> std::io::Result<u64> {
    let payload = Bytes::from(vec![b'x'; o.size]);
    let topic: Arc<str> = o.topic.as_str().into();
    let mut sent = 0usize;
    let mut done = 0usize;
    let mut next_id: u16 = 1;
    while done < o.messages {
        while sent < o.messages && (o.qos == QoS::AtMostOnce || sent - done < o.window) {
            w.push(&Packet::Publish(Publish {
                dup: false,
                qos: o.qos,
                retain: false,
                topic: topic.clone(),
                packet_id: if o.qos == QoS::AtMostOnce { 0 } else { next_id },
                payload: payload.clone(),
            }));
            next_id = next_id.checked_add(1).unwrap_or(1);
            sent += 1;
            if w.buffered() >= 64 << 10 {
                break;
            }
        }
        w.flush().await?;
        if o.qos == QoS::AtMostOnce {
            done = sent;
            continue;
        }
        match r.next().await? {
            Packet::PubAck(_) | Packet::PubComp(_) => done += 1,
            Packet::PubRec(id) => w.push(&Packet::PubRel(id)),
            _ => {}
        }
    }
    w.flush().await?;
    Ok(done as u64)
}

/// Counts messages until `expected` arrived (or the connection ends); returns the count and
/// when the last one came.
async fn count_received(mut r: ClientReader, _w: ClientWriter, expected: u64) -> (u64, Instant) {
    let mut n = 0;
    let mut last = Instant::now();
    while n < expected {
        // A QoS 0 message dropped by the broker never comes: stop after a quiet spell.
        let Ok(next) = tokio::time::timeout(Duration::from_secs(2), r.next()).await else {
            break;
        };
        match next {
            Ok(Packet::Publish(_)) => {
                n += 1;
                last = Instant::now();
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    (n, last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::bench::test_broker::TestBroker;

    #[tokio::test]
    async fn fanin_against_an_in_memory_broker_counts_every_message() {
        let broker = TestBroker::start().await;
        let addr = broker.addr;
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let report = run(FaninOptions {
                addr,
                publishers: 3,
                messages: 200,
                qos,
                size: 16,
                window: 8,
                topic: "bench".into(),
                subscribe: true,
                id_prefix: format!("t{}-", qos as u8),
                tls: None,
            })
            .await
            .unwrap();
            assert_eq!(report.published, 600);
            assert_eq!(report.received, 600, "QoS {qos:?}");
            assert!(report.rate > 0.0);
        }
        broker.stop().await;
    }
}
