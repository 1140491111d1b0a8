//! A store write or fsync that fails is never acknowledged (issue 24.1): a broker with a real
//! store on 127.0.0.1:0, clients speaking raw MQTT through the crate's codec, and failures
//! injected into the store (`Store::inject_failures`, a test-only hook).

use parking_lot::Mutex;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fubar_store::{Store, SyncMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

use super::{Broker, Server};
use crate::mqtt::decode::decode;
use crate::mqtt::encode::try_encode;
use crate::mqtt::packet::{
    Ack, Connect, FilterOptions, Packet, Properties, ProtocolVersion, Publish, QoS, SubAckCode,
    Subscribe,
};
use crate::mqtt::reason::ReasonCode;
use crate::settings::Settings;

/// How long a test waits for a packet before it fails (a hang, not a timing assertion).
const WAIT: Duration = Duration::from_secs(20);

/// The `error` class events seen, each as its message and fields.
#[derive(Clone, Default)]
struct Errors(Arc<Mutex<Vec<String>>>);

impl Errors {
    fn all(&self) -> Vec<String> {
        self.0.lock().clone()
    }
}

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={:?}", field.name(), value));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.push_str(&format!(" {}={}", field.name(), value));
    }
}

impl<S: tracing::Subscriber> Layer<S> for Errors {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() == "error" {
            let mut f = Fields(String::new());
            event.record(&mut f);
            self.0.lock().push(f.0);
        }
    }
}

/// A node with a store in a temporary folder, serving on 127.0.0.1 (a free port).
struct Node {
    addr: SocketAddr,
    store: Arc<Store>,
    broker: Arc<Broker>,
    _dir: tempfile::TempDir,
}

async fn node() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::default();
    settings.node.data_dir = dir.path().to_owned();
    settings.mqtt.bind = IpAddr::V4(Ipv4Addr::LOCALHOST);
    settings.mqtt.port = 0;
    std::fs::create_dir_all(settings.state_dir()).unwrap();
    let store =
        Arc::new(Store::open(&settings.state_dir(), SyncMode::Group, Duration::ZERO).unwrap());
    let broker = Arc::new(Broker::standalone(settings, Some(store.clone())).unwrap());
    let server = Server::bind(broker.clone()).await.unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.run());
    Node {
        addr,
        store,
        broker,
        _dir: dir,
    }
}

/// A client speaking raw MQTT.
struct Client {
    stream: TcpStream,
    rbuf: BytesMut,
    version: ProtocolVersion,
}

impl Client {
    /// Connects as `id`; `expiry`: an MQTT 5.0 session expiry interval (a persistent
    /// session), or for 3.1.1 whether the session is persistent (clean session 0).
    async fn connect(
        addr: SocketAddr,
        id: &str,
        version: ProtocolVersion,
        persistent: bool,
    ) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap();
        let mut c = Self {
            stream,
            rbuf: BytesMut::new(),
            version,
        };
        let properties = Properties {
            session_expiry_interval: (persistent && version == ProtocolVersion::V5).then_some(300),
            ..Properties::default()
        };
        c.send(&Packet::Connect(Box::new(Connect {
            protocol: version,
            clean_session: !persistent || version == ProtocolVersion::V5,
            keep_alive: 0,
            client_id: id.into(),
            will: None,
            username: None,
            password: None,
            properties,
        })))
        .await;
        match c.recv().await {
            Some(Packet::ConnAck(a)) => assert_eq!(a.code, ReasonCode::Success, "{a:?}"),
            other => panic!("expected CONNACK, got {other:?}"),
        }
        c
    }

    async fn send(&mut self, p: &Packet) {
        let mut out = BytesMut::new();
        try_encode(p, self.version, &mut out).unwrap();
        self.stream.write_all(&out).await.unwrap();
    }

    /// The next packet, or `None` once the server has closed the connection.
    async fn recv(&mut self) -> Option<Packet> {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(p) = decode(&mut self.rbuf, 1 << 20, self.version).unwrap() {
                    return Some(p);
                }
                match self.stream.read_buf(&mut self.rbuf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        })
        .await
        .expect("the server answers or closes")
    }

    async fn subscribe(&mut self, filter: &str) -> Vec<SubAckCode> {
        self.send(&Packet::Subscribe(Subscribe {
            packet_id: 1,
            filters: vec![(filter.into(), FilterOptions::from(QoS::AtLeastOnce))],
            properties: Properties::default(),
        }))
        .await;
        match self.recv().await {
            Some(Packet::SubAck(a)) => a.codes,
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    async fn publish(&mut self, topic: &str, qos: QoS, retain: bool, packet_id: u16) {
        self.send(&Packet::Publish(Publish {
            dup: false,
            qos,
            retain,
            topic: topic.into(),
            packet_id,
            payload: Bytes::from_static(b"must be safe"),
            properties: Properties::default(),
        }))
        .await;
    }

    /// The PUBACK or PUBREC answering a publish (skipping deliveries to this client).
    async fn ack(&mut self) -> Option<(bool, Ack)> {
        loop {
            match self.recv().await? {
                Packet::PubAck(a) => return Some((true, a)),
                Packet::PubRec(a) => return Some((false, a)),
                Packet::Publish(_) => {}
                other => panic!("expected PUBACK/PUBREC, got {other:?}"),
            }
        }
    }
}

/// A persistent subscriber of `topic` on `node`, connected.
async fn persistent_subscriber(node: &Node, topic: &str) -> Client {
    let mut sub = Client::connect(node.addr, "keeper", ProtocolVersion::V5, true).await;
    assert_eq!(
        sub.subscribe(topic).await,
        vec![SubAckCode::Granted(QoS::AtLeastOnce)]
    );
    sub
}

fn assert_logged(errors: &Errors, client: &str, topic: &str) {
    let all = errors.all();
    assert!(
        all.iter().any(|e| e.contains(&format!("client={client}"))
            && e.contains(&format!("topic={topic}"))
            && e.contains("injected")),
        "no error event naming {client}, {topic} and the store error: {all:#?}"
    );
}

fn capture() -> (Errors, tracing::subscriber::DefaultGuard) {
    let errors = Errors::default();
    let guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(errors.clone()));
    (errors, guard)
}

#[tokio::test]
async fn a_qos1_publish_whose_queued_copy_is_not_stored_gets_0x80_in_mqtt5() {
    let (errors, _guard) = capture();
    let node = node().await;
    let _sub = persistent_subscriber(&node, "safe/t").await;
    let mut publisher = Client::connect(node.addr, "pub5", ProtocolVersion::V5, false).await;
    // Healthy: acknowledged as a success.
    publisher
        .publish("safe/t", QoS::AtLeastOnce, false, 1)
        .await;
    let (puback, ack) = publisher.ack().await.expect("PUBACK");
    assert!(puback);
    assert_eq!(ack.reason, ReasonCode::Success);

    node.store.inject_failures(true, false);
    publisher
        .publish("safe/t", QoS::AtLeastOnce, false, 2)
        .await;
    let (puback, ack) = publisher.ack().await.expect("a refusing PUBACK");
    assert!(puback);
    assert_eq!(ack.packet_id, 2);
    assert_eq!(ack.reason, ReasonCode::UnspecifiedError, "{ack:?}");
    let why = ack.properties.reason_string.expect("a reason string");
    assert!(why.contains("could not be stored"), "{why}");
    assert_logged(&errors, "pub5", "safe/t");
    node.broker.shutdown.cancel();
}

#[tokio::test]
async fn a_qos1_publish_whose_queued_copy_is_not_stored_closes_a_311_connection() {
    let (errors, _guard) = capture();
    let node = node().await;
    let _sub = persistent_subscriber(&node, "safe/t").await;
    let mut publisher = Client::connect(node.addr, "pub3", ProtocolVersion::V311, false).await;
    node.store.inject_failures(true, false);
    publisher
        .publish("safe/t", QoS::AtLeastOnce, false, 7)
        .await;
    // 3.1.1 cannot refuse a PUBLISH: no PUBACK, the connection ends.
    assert_eq!(publisher.ack().await.map(|(_, a)| a), None);
    assert_logged(&errors, "pub3", "safe/t");
    node.broker.shutdown.cancel();
}

#[tokio::test]
async fn a_qos2_publish_whose_fsync_fails_gets_a_refusing_pubrec() {
    let (errors, _guard) = capture();
    let node = node().await;
    let _sub = persistent_subscriber(&node, "safe/t").await;
    let mut publisher = Client::connect(node.addr, "pub5", ProtocolVersion::V5, false).await;
    node.store.inject_failures(false, true);
    publisher
        .publish("safe/t", QoS::ExactlyOnce, false, 3)
        .await;
    let (puback, ack) = publisher.ack().await.expect("a refusing PUBREC");
    assert!(!puback, "PUBREC answers QoS 2");
    assert_eq!(ack.reason, ReasonCode::UnspecifiedError, "{ack:?}");
    let all = errors.all();
    assert!(
        all.iter().any(|e| e.contains("client=pub5")
            && e.contains("topic=safe/t")
            && e.contains("fsync")),
        "{all:#?}"
    );
    node.broker.shutdown.cancel();
}

#[tokio::test]
async fn a_retained_message_not_stored_is_refused() {
    let (errors, _guard) = capture();
    let node = node().await;
    let mut publisher = Client::connect(node.addr, "pub5", ProtocolVersion::V5, false).await;
    node.store.inject_failures(true, false);
    publisher.publish("kept/t", QoS::AtLeastOnce, true, 4).await;
    let (_, ack) = publisher.ack().await.expect("a refusing PUBACK");
    assert_eq!(ack.reason, ReasonCode::UnspecifiedError, "{ack:?}");
    assert_logged(&errors, "pub5", "kept/t");
    node.broker.shutdown.cancel();
}

#[tokio::test]
async fn a_persistent_subscription_not_stored_is_refused_and_undone() {
    let (errors, _guard) = capture();
    let node = node().await;
    let mut sub = Client::connect(node.addr, "keeper", ProtocolVersion::V5, true).await;
    node.store.inject_failures(true, false);
    // 0x80 on the wire (the decoder reads it back as the 3.1.1 failure code).
    let codes = sub.subscribe("lost/t").await;
    assert!(
        matches!(
            codes[..],
            [SubAckCode::Failure | SubAckCode::Refused(ReasonCode::UnspecifiedError)]
        ),
        "{codes:?}"
    );
    assert!(errors.all().iter().any(|e| e.contains("client=keeper")));
    // Not in the router either: a publish finds no subscriber.
    node.store.inject_failures(false, false);
    let mut publisher = Client::connect(node.addr, "pub5", ProtocolVersion::V5, false).await;
    publisher
        .publish("lost/t", QoS::AtLeastOnce, false, 5)
        .await;
    let (_, ack) = publisher.ack().await.expect("PUBACK");
    assert_eq!(ack.reason, ReasonCode::NoMatchingSubscribers);
    node.broker.shutdown.cancel();
}

#[tokio::test]
async fn a_311_qos2_publish_not_stored_is_stored_when_sent_again() {
    let (errors, _guard) = capture();
    let node = node().await;
    let _sub = persistent_subscriber(&node, "safe/t").await;
    let mut publisher = Client::connect(node.addr, "pub3", ProtocolVersion::V311, true).await;
    node.store.inject_failures(true, false);
    publisher
        .publish("safe/t", QoS::ExactlyOnce, false, 9)
        .await;
    assert_eq!(
        publisher.ack().await.map(|(_, a)| a),
        None,
        "closed, no PUBREC"
    );
    assert_logged(&errors, "pub3", "safe/t");
    // The disk is back: the client sends the message again with the same packet id, and it
    // is routed and stored, not taken for a duplicate of a message the store never had.
    node.store.inject_failures(false, false);
    let mut publisher = Client::connect(node.addr, "pub3", ProtocolVersion::V311, true).await;
    publisher
        .publish("safe/t", QoS::ExactlyOnce, false, 9)
        .await;
    let (puback, ack) = publisher.ack().await.expect("PUBREC");
    assert!(!puback);
    assert_eq!(ack.reason, ReasonCode::Success);
    let stored = node.store.sessions().unwrap();
    let keeper = stored.iter().find(|s| s.client_id == "keeper").unwrap();
    assert!(
        !keeper.queued.is_empty(),
        "the copy for the subscriber is stored"
    );
    node.broker.shutdown.cancel();
}
