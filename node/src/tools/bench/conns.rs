//! `fubar bench conns`: batch-start N clients with ids `0001`…`N` (as Erlang fubar's
//! `mqtt_client:batch_start`), hold them, and report the connect rate, failures by reason, and
//! the broker's resident memory per connection. With a subscription prefix each client also
//! subscribes to `PREFIX/<its id>` (a filter of its own, as many devices do), which in a
//! cluster makes every client one route and one registry change to replicate.
//!
//! Above one source address's ephemeral ports it spreads connections over `127.0.0.x` source
//! addresses (loopback only). It raises its own open-file limit and says what to tune when it
//! cannot.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::net::TcpSocket;
use tokio::sync::{Mutex, Semaphore};

use super::control::{BrokerUsage, BrokerWatch, Control};
use super::report::{interrupted_note, thousands, Report};
use crate::mqtt::packet::{Packet, ProtocolVersion, QoS, Subscribe};
use crate::tools::client::{connect_on, connect_packet, granted, ClientReader, ClientWriter, Dial};

/// Connections per source address before the next `127.0.0.x` is used (the default
/// ephemeral port range holds about 28,000).
const PER_SOURCE: usize = 25_000;

/// How a batch of clients is started.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// The broker.
    pub addr: SocketAddr,
    /// The protocol version every client speaks (3.1.1 unless `-V 5`).
    pub version: ProtocolVersion,
    /// Clients.
    pub clients: usize,
    /// How many clients came before this batch: its ids and source addresses go on from
    /// there (0 for a batch of its own).
    pub first: usize,
    /// Client id prefix (ids are PREFIX0001 … PREFIXN).
    pub id_prefix: String,
    /// Connections per second at most (as fast as possible without).
    pub rate: Option<u32>,
    /// Connection attempts in progress at once.
    pub concurrency: usize,
    /// Keep-alive the clients announce, seconds (0: none).
    pub keep_alive: u16,
    /// Each client subscribes to `PREFIX/<its id>` after CONNACK and counts as connected
    /// once the SUBACK is in.
    pub subscribe: Option<String>,
    /// TLS and/or WebSocket (`--cafile`, `--ws`); plain TCP without.
    pub dial: Option<Dial>,
}

/// One connected client of a batch.
#[derive(Debug)]
pub struct BatchClient {
    /// Its client id.
    pub id: String,
    /// Reading half.
    pub reader: ClientReader,
    /// Writing half.
    pub writer: ClientWriter,
}

/// The clients a batch connected and what failed.
#[derive(Debug, Default)]
pub struct Batch {
    /// Connected clients (CONNACK 0), in the order they connected.
    pub clients: Vec<BatchClient>,
    /// Failures by reason.
    pub failures: BTreeMap<String, u64>,
    /// Seconds from the first attempt to the last answer.
    pub seconds: f64,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct ConnsOptions {
    /// The clients.
    pub batch: BatchOptions,
    /// How long to hold the clients once connected.
    pub hold: Duration,
    /// The broker's process id, to read its resident memory.
    pub broker_pid: Option<u32>,
}

/// What was measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ConnsReport {
    /// Clients asked for.
    pub clients: usize,
    /// Clients connected (CONNACK 0).
    pub connected: u64,
    /// Clients that failed.
    pub failed: u64,
    /// Failures by reason.
    pub failures: BTreeMap<String, u64>,
    /// Seconds from the first attempt to the last CONNACK.
    pub seconds: f64,
    /// Connections per second.
    pub rate: f64,
    /// Clients connected first, before the broker's memory is read for the baseline of
    /// `rss_per_connection` (a tenth of them, at most 1,000).
    pub warm_up: u64,
    /// The broker's resident memory once the warm-up clients were connected, bytes.
    pub rss_after_warm_up: u64,
    /// What each connection after the warm-up added to the broker's resident memory:
    /// `(rss_after - rss_after_warm_up) / (connected - warm_up)`, bytes (0 without
    /// `--broker-pid`). Measured from the warm-up, not from the start, so that the
    /// allocator's first-use churn (a broker's resident memory can fall on its first
    /// connections, as memory freed at start is given back) is not counted.
    pub rss_per_connection: f64,
    /// Whether the run was cut short (Ctrl-C).
    pub interrupted: bool,
    /// The broker's CPU time and memory (with `--broker-pid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker: Option<BrokerUsage>,
}

impl Report for ConnsReport {
    fn bench(&self) -> &'static str {
        "conns"
    }

    fn rows(&self) -> Vec<(String, String)> {
        let mut rows = vec![
            (
                "conns".to_owned(),
                format!(
                    "{} clients{}",
                    thousands(self.clients as f64),
                    interrupted_note(self.interrupted)
                ),
            ),
            ("connected".into(), thousands(self.connected as f64)),
            ("failed".into(), thousands(self.failed as f64)),
        ];
        for (reason, n) in &self.failures {
            rows.push((format!("  {}", thousands(*n as f64)), reason.clone()));
        }
        rows.push(("seconds".into(), format!("{:.3}", self.seconds)));
        rows.push(("connects/s".into(), thousands(self.rate)));
        rows.extend(super::control::usage_rows(
            self.broker.as_ref(),
            self.connected as f64,
            "connects",
        ));
        if self.broker.is_some() {
            rows.push((
                "RSS per connection".into(),
                format!(
                    "{} B (growth after the first {} clients)",
                    thousands(self.rss_per_connection),
                    thousands(self.warm_up as f64)
                ),
            ));
        }
        rows
    }
}

/// Raises this process's open-file limit to what `clients` need; the error says what to tune.
pub fn raise_file_limit(clients: usize) -> Result<u64, String> {
    let want = clients as u64 + 256;
    match rlimit::increase_nofile_limit(want) {
        Ok(got) if got >= want => Ok(got),
        Ok(got) => Err(format!(
            "the open-file limit is {got}, {clients} clients need about {want}: raise the hard limit (`ulimit -Hn {want}` as root, or LimitNOFILE= for a service, or /etc/security/limits.conf), and the broker's too"
        )),
        Err(e) => Err(format!("cannot raise the open-file limit: {e}")),
    }
}

/// The source address for connection `i`: the first `PER_SOURCE` use the kernel's choice;
/// later ones, for a loopback broker, go out from 127.0.0.2, .3, … with a port of their own
/// (binding to port 0 makes the kernel search every bound port: slow with thousands).
fn source_for(addr: SocketAddr, i: usize) -> Option<SocketAddr> {
    match addr.ip() {
        IpAddr::V4(v4) if v4.is_loopback() && i >= PER_SOURCE => {
            let host = 1 + (i / PER_SOURCE) as u8;
            let port = 20_000 + (i % PER_SOURCE) as u16;
            Some(SocketAddr::new(Ipv4Addr::new(127, 0, 0, host).into(), port))
        }
        _ => None,
    }
}

/// Connects a batch of clients, `concurrency` attempts at a time and at most `rate` a second;
/// the progress bar counts connected clients. A stop ends it early with what it has.
pub async fn batch_start(o: &BatchOptions, control: &Control) -> Batch {
    let held: Arc<Mutex<Vec<BatchClient>>> = Arc::default();
    let failures: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let permits = Arc::new(Semaphore::new(o.concurrency.max(1)));
    let began = Instant::now();
    let mut tasks = Vec::with_capacity(o.clients);
    let interval = o
        .rate
        .map(|r| Duration::from_secs_f64(1.0 / f64::from(r.max(1))));
    for (n, i) in (o.first..o.first + o.clients).enumerate() {
        if let Some(every) = interval {
            let due = began + every * n as u32;
            tokio::select! {
                _ = tokio::time::sleep_until(due.into()) => {}
                _ = control.stop.cancelled() => break,
            }
        }
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p,
            _ = control.stop.cancelled() => break,
        };
        let Ok(permit) = permit else { break };
        let (held, failures) = (held.clone(), failures.clone());
        let progress = control.progress.clone();
        let id = format!("{}{:04}", o.id_prefix, i + 1);
        let (addr, source, keep_alive) = (o.addr, source_for(o.addr, i), o.keep_alive);
        let version = o.version;
        let filter = o.subscribe.as_ref().map(|p| format!("{p}/{id}"));
        let dial = o.dial.clone();
        tasks.push(tokio::spawn(async move {
            let result =
                open_client(addr, source, dial.as_ref(), version, id.clone(), keep_alive).await;
            let result = match (result, filter) {
                (Ok((r, w)), Some(filter)) => subscribe_to(r, w, filter).await,
                (result, _) => result,
            };
            drop(permit);
            match result {
                Ok((reader, writer)) => {
                    held.lock().await.push(BatchClient { id, reader, writer });
                    progress.inc(1);
                }
                Err(reason) => *failures.lock().await.entry(reason).or_default() += 1,
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let seconds = began.elapsed().as_secs_f64();
    let clients = std::mem::take(&mut *held.lock().await);
    let failures = std::mem::take(&mut *failures.lock().await);
    Batch {
        clients,
        failures,
        seconds,
    }
}

/// Runs the benchmark: a warm-up tenth of the clients (at most 1,000), the broker's memory
/// read, then the rest.
pub async fn run(o: ConnsOptions, control: &Control) -> ConnsReport {
    let watch = BrokerWatch::start(o.broker_pid);
    control.progress.set_length(o.batch.clients as u64);
    let warm_up = (o.batch.clients / 10).min(1000);
    let mut batch = batch_start(
        &BatchOptions {
            clients: warm_up,
            ..o.batch.clone()
        },
        control,
    )
    .await;
    let warm_connected = batch.clients.len() as u64;
    let rss_after_warm_up = o
        .broker_pid
        .map_or(0, crate::process_memory::resident_bytes_of);
    if !control.stop.is_cancelled() {
        let rest = batch_start(
            &BatchOptions {
                clients: o.batch.clients - warm_up,
                first: o.batch.first + warm_up,
                ..o.batch.clone()
            },
            control,
        )
        .await;
        batch.clients.extend(rest.clients);
        for (reason, n) in rest.failures {
            *batch.failures.entry(reason).or_default() += n;
        }
        batch.seconds += rest.seconds;
    }
    control.progress.finish_and_clear();
    let connected = batch.clients.len() as u64;
    let mut clients = batch.clients;
    if !control.stop.is_cancelled() && !o.hold.is_zero() {
        tokio::select! {
            _ = hold(&mut clients, o.hold, o.batch.keep_alive) => {}
            _ = control.stop.cancelled() => {}
        }
    }
    let broker = watch.map(BrokerWatch::finish);
    let rss_per_connection = broker.map_or(0.0, |b| {
        b.rss_after.saturating_sub(rss_after_warm_up) as f64
            / connected.saturating_sub(warm_connected).max(1) as f64
    });
    ConnsReport {
        clients: o.batch.clients,
        connected,
        failed: batch.failures.values().sum(),
        failures: batch.failures,
        seconds: batch.seconds,
        rate: connected as f64 / batch.seconds.max(1e-9),
        warm_up: warm_connected,
        rss_after_warm_up,
        rss_per_connection,
        interrupted: control.stop.is_cancelled(),
        broker,
    }
}

/// Holds the clients for `how_long`, each sending PINGREQ at half its keep-alive so the broker
/// keeps them (the 2-byte PINGRESPs wait unread in the socket buffers).
async fn hold(clients: &mut [BatchClient], how_long: Duration, keep_alive: u16) {
    let end = Instant::now() + how_long;
    let every = match keep_alive {
        0 => how_long,
        k => Duration::from_secs(u64::from(k)) / 2,
    };
    loop {
        let next = (Instant::now() + every).min(end);
        tokio::time::sleep_until(next.into()).await;
        if Instant::now() >= end {
            return;
        }
        for c in clients.iter_mut() {
            c.writer.push(&Packet::PingReq);
            let _ = c.writer.flush().await;
        }
    }
}

async fn open_client(
    addr: SocketAddr,
    source: Option<SocketAddr>,
    dial: Option<&Dial>,
    version: ProtocolVersion,
    id: String,
    keep_alive: u16,
) -> Result<(ClientReader, ClientWriter), String> {
    let socket = TcpSocket::new_v4().map_err(|e| reason_of(&e))?;
    if let Some(src) = source {
        if socket.bind(src).is_err() {
            // That port is taken: let the kernel pick one on the same address.
            let any = SocketAddr::new(src.ip(), 0);
            socket
                .bind(any)
                .map_err(|e| format!("bind {any}: {}", reason_of(&e)))?;
        }
    }
    let stream = socket.connect(addr).await.map_err(|e| reason_of(&e))?;
    let connect = connect_packet(version, &id, true, keep_alive);
    connect_on(stream, dial, connect)
        .await
        .map(|(r, w, _)| (r, w))
        .map_err(|e| reason_of(&e))
}

/// Subscribes a connected client to `filter` (QoS 0) and waits for the SUBACK.
async fn subscribe_to(
    mut reader: ClientReader,
    mut writer: ClientWriter,
    filter: String,
) -> Result<(ClientReader, ClientWriter), String> {
    writer.push(&Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: vec![(filter, QoS::AtMostOnce.into())],
        properties: Default::default(),
    }));
    writer.flush().await.map_err(|e| reason_of(&e))?;
    loop {
        match reader.next().await.map_err(|e| reason_of(&e))? {
            Packet::SubAck(a) if !granted(&a.codes) => return Err("subscription refused".into()),
            Packet::SubAck(_) => return Ok((reader, writer)),
            _ => {}
        }
    }
}

fn reason_of(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(24) => "too many open files (EMFILE)".into(),
        Some(99) => "no free source port (EADDRNOTAVAIL)".into(),
        Some(111) => "connection refused (ECONNREFUSED)".into(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::bench::test_broker::TestBroker;

    fn batch(addr: SocketAddr, clients: usize) -> BatchOptions {
        BatchOptions {
            addr,
            version: ProtocolVersion::V311,
            clients,
            first: 0,
            id_prefix: "c".into(),
            rate: None,
            concurrency: 8,
            keep_alive: 0,
            subscribe: None,
            dial: None,
        }
    }

    #[tokio::test]
    async fn batch_start_names_clients_0001_to_n() {
        let broker = TestBroker::start().await;
        let b = batch_start(&batch(broker.addr, 30), &Control::quiet()).await;
        let mut ids: Vec<String> = b.clients.iter().map(|c| c.id.clone()).collect();
        ids.sort();
        assert_eq!(ids.len(), 30);
        assert_eq!((ids[0].as_str(), ids[29].as_str()), ("c0001", "c0030"));
        assert!(b.failures.is_empty());
        // A batch that follows another goes on from its last id.
        let then = BatchOptions {
            first: 30,
            ..batch(broker.addr, 5)
        };
        let later = batch_start(&then, &Control::quiet()).await;
        let mut ids: Vec<String> = later.clients.iter().map(|c| c.id.clone()).collect();
        ids.sort();
        assert_eq!(ids, ["c0031", "c0032", "c0033", "c0034", "c0035"]);
        drop((b, later));
        broker.stop().await;
    }

    #[tokio::test]
    async fn with_a_prefix_each_client_subscribes_to_a_filter_of_its_own() {
        let broker = TestBroker::start().await;
        let o = BatchOptions {
            subscribe: Some("dev".into()),
            ..batch(broker.addr, 12)
        };
        let b = batch_start(&o, &Control::quiet()).await;
        assert_eq!(
            (b.clients.len(), b.failures.len()),
            (12, 0),
            "{:?}",
            b.failures
        );
        // The SUBACK is in before a client counts as connected: all 12 filters are there.
        assert_eq!(broker.broker.router.subscription_count(), 12);
        // And each is its own: a message to dev/c0007 reaches c0007.
        let (_r, mut w, _) =
            crate::tools::client::connect(broker.addr, None, ProtocolVersion::V311, "p", true, 60)
                .await
                .unwrap();
        w.push(&Packet::Publish(crate::mqtt::packet::Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: "dev/c0007".into(),
            packet_id: 0,
            payload: bytes::Bytes::from_static(b"hi"),
            properties: Default::default(),
        }));
        w.flush().await.unwrap();
        let mut clients = b.clients;
        let i = clients.iter().position(|c| c.id == "c0007").unwrap();
        let mut c7 = clients.swap_remove(i);
        match c7.reader.next().await.unwrap() {
            Packet::Publish(p) => assert_eq!(&*p.topic, "dev/c0007"),
            other => panic!("{other:?}"),
        }
        drop((clients, c7));
        broker.stop().await;
    }

    #[tokio::test]
    async fn conns_reports_connections_and_failures_by_reason() {
        let broker = TestBroker::start().await;
        let o = ConnsOptions {
            batch: BatchOptions {
                rate: Some(500),
                ..batch(broker.addr, 20)
            },
            hold: Duration::from_millis(10),
            broker_pid: Some(std::process::id()),
        };
        let r = run(o, &Control::quiet()).await;
        assert_eq!((r.connected, r.failed, r.warm_up), (20, 0, 2));
        assert!(r.rate > 0.0 && r.broker.is_some() && r.rss_after_warm_up > 0);
        broker.stop().await;
        // Nothing listens there any more: every client fails, with the reason.
        let o = ConnsOptions {
            batch: batch(broker_addr_gone().await, 5),
            hold: Duration::ZERO,
            broker_pid: None,
        };
        let r = run(o, &Control::quiet()).await;
        assert_eq!((r.connected, r.failed), (0, 5));
        assert_eq!(
            r.failures.get("connection refused (ECONNREFUSED)"),
            Some(&5),
            "{r:?}"
        );
    }

    /// A loopback address nothing listens on.
    async fn broker_addr_gone() -> SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    }

    #[test]
    fn source_addresses_spread_beyond_one_address_ports() {
        let broker: SocketAddr = "127.0.0.1:1883".parse().unwrap();
        assert_eq!(source_for(broker, 0), None);
        assert_eq!(source_for(broker, PER_SOURCE - 1), None);
        assert_eq!(
            source_for(broker, PER_SOURCE),
            Some("127.0.0.2:20000".parse().unwrap())
        );
        assert_eq!(
            source_for(broker, 3 * PER_SOURCE + 5),
            Some("127.0.0.4:20005".parse().unwrap())
        );
        let remote: SocketAddr = "10.0.0.1:1883".parse().unwrap();
        assert_eq!(source_for(remote, 3 * PER_SOURCE), None);
    }
}
