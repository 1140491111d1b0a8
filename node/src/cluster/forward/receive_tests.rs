//! The forward receiver takes batches while earlier ones wait, and acknowledges them in order:
//! a real store, a broker whose persistent sessions have a backup that confirms its copies
//! only when the test says (the `AckGate`), and a QUIC stream on 127.0.0.1.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fubar_monitor::wire::{write_frame, FrameReader};
use fubar_store::{Store, SyncMode};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{RecvStream, SendStream};

use super::{receive, Delivered};
use crate::broker::ack_gate::AckGate;
use crate::broker::cluster_hooks::Recording;
use crate::broker::Broker;
use crate::cluster::peer_wire::{ForwardAck, ForwardBatch, MAX_PEER_FRAME};
use crate::mqtt::message::SubscriptionOptions;
use crate::mqtt::packet::QoS;
use crate::settings::Settings;

/// How long a step may take before the test fails (a hang, not a timing assertion).
const WAIT: Duration = Duration::from_secs(20);

/// The backup confirms its copies up to `upto`.
fn confirm(hooks: &Recording, upto: u64) {
    let tickets: Vec<u64> = hooks
        .copies
        .borrow()
        .iter()
        .map(|(t, _)| *t)
        .filter(|t| *t <= upto)
        .collect();
    if let Some(gate) = &hooks.gate {
        gate.settle(Recording::BACKUP, tickets);
    }
}

/// Waits until a copy of a message on `topic` is made; returns the last ticket then.
async fn copied(hooks: &Recording, topic: &str) -> u64 {
    let mut copies = hooks.copies.subscribe();
    let seen = tokio::time::timeout(
        WAIT,
        copies.wait_for(|c| c.iter().any(|(_, t)| t.iter().any(|t| t == topic))),
    )
    .await
    .unwrap_or_else(|_| panic!("no copy of {topic} made"))
    .expect("copies watch open")
    .clone();
    seen.iter().map(|(t, _)| *t).max().unwrap_or(0)
}

/// The near end of a QUIC stream on 127.0.0.1, and the connection and endpoint it lives on.
type NearEnd = (SendStream, RecvStream, (quinn::Connection, quinn::Endpoint));

/// A QUIC stream on 127.0.0.1 whose far end runs `receive` on `broker`, opened with a
/// first batch `first`.
async fn stream_to(broker: Arc<Broker>, first: &ForwardBatch) -> NearEnd {
    fubar_ssl::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let (identity, _) = fubar_ssl::self_made_identity(dir.path(), "n1@localhost").unwrap();
    let trust = fubar_ssl::ClusterTrust::Cookie;
    let server_tls = fubar_ssl::cluster_server_config(&identity, &trust, &[b"t"]).unwrap();
    let client_tls = fubar_ssl::cluster_client_config(None, &trust, &[b"t"]).unwrap();
    let server = quinn::Endpoint::server(
        quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(server_tls).unwrap())),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let mut client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    client.set_default_client_config(quinn::ClientConfig::new(Arc::new(
        QuicClientConfig::try_from(client_tls).unwrap(),
    )));
    let addr = server.local_addr().unwrap();
    tokio::spawn(async move {
        let conn = server.accept().await.expect("a connection").await.unwrap();
        let (send, recv) = conn.accept_bi().await.unwrap();
        let delivered = Arc::new(Delivered::default());
        let reader = FrameReader::new(MAX_PEER_FRAME);
        let served = receive(
            broker,
            delivered,
            "n2@localhost".into(),
            1,
            send,
            recv,
            reader,
        );
        let _ = served.await;
        drop((conn, server, dir));
    });
    let conn = client.connect(addr, "localhost").unwrap().await.unwrap();
    let (mut send, recv) = conn.open_bi().await.unwrap();
    write_frame(&mut send, first).await.unwrap();
    (send, recv, (conn, client))
}

fn batch(first_seq: u64, topic: &str) -> ForwardBatch {
    ForwardBatch {
        first_seq,
        messages: vec![super::tests::qos1(topic, Bytes::from_static(b"safe"))],
    }
}

async fn ack(reader: &mut FrameReader, recv: &mut RecvStream) -> u64 {
    let ack = tokio::time::timeout(WAIT, reader.next::<ForwardAck>(recv))
        .await
        .expect("an acknowledgement")
        .unwrap()
        .expect("the stream open");
    ack.upto_seq
}

#[tokio::test]
async fn a_batch_is_taken_while_the_one_before_waits_for_its_copy_and_each_is_acknowledged_in_order(
) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), SyncMode::Group, Duration::ZERO).unwrap());
    let hooks = Arc::new(Recording {
        gate: Some(Arc::new(AckGate::default())),
        ..Recording::default()
    });
    let broker = Arc::new(Broker::new(Settings::default(), Some(store), hooks.clone()).unwrap());
    // A persistent session subscribed to p/#.
    let limits = Settings::default().session_limits();
    let keeper = broker
        .registry
        .attach_with("keeper", None, true, true, 1, limits)
        .unwrap()
        .handle;
    let options = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        ..Default::default()
    };
    keeper.lock().session.subscribe("p/#", options);
    broker.router.subscribe(&keeper, "p/#", options);

    let (mut send, mut recv, _link) = stream_to(broker.clone(), &batch(1, "p/1")).await;
    let first = copied(&hooks, "p/1").await;
    // Batch 1's copy is not confirmed, yet batch 2 is taken and copied.
    write_frame(&mut send, &batch(2, "p/2")).await.unwrap();
    copied(&hooks, "p/2").await;
    let mut reader = FrameReader::new(MAX_PEER_FRAME);
    // Batch 1 is acknowledged while batch 2 still waits for its copy.
    confirm(&hooks, first);
    assert_eq!(ack(&mut reader, &mut recv).await, 1);
    confirm(&hooks, u64::MAX);
    assert_eq!(ack(&mut reader, &mut recv).await, 2);
    // Sent again (as after a reconnection): acknowledged, not queued twice.
    write_frame(&mut send, &batch(2, "p/2")).await.unwrap();
    assert_eq!(ack(&mut reader, &mut recv).await, 2);
    assert_eq!(keeper.lock().session.queued(), 2);
}
