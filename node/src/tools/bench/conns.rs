//! `fubar bench conns`: batch-start N clients with ids `0001`…`N` (as Erlang fubar's
//! `mqtt_client:batch_start`), hold them, and report the connect rate, failures by reason, and
//! the broker's resident memory per connection.
//!
//! Above one source address's ephemeral ports it spreads connections over `127.0.0.x` source
//! addresses (loopback only). It raises its own open-file limit and says what to tune when it
//! cannot.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpSocket;
use tokio::sync::{Mutex, Semaphore};

use crate::mqtt::packet::{Connect, ProtocolVersion};
use crate::tools::client::{connect_on, ClientReader, ClientWriter};

/// Connections per source address before the next `127.0.0.x` is used (the default
/// ephemeral port range holds about 28,000).
const PER_SOURCE: usize = 25_000;

/// What to run.
#[derive(Debug, Clone)]
pub struct ConnsOptions {
    /// The broker.
    pub addr: SocketAddr,
    /// Clients.
    pub clients: usize,
    /// Client id prefix (ids are PREFIX0001 … PREFIXN).
    pub id_prefix: String,
    /// Connections per second at most (as fast as possible without).
    pub rate: Option<u32>,
    /// Connection attempts in progress at once.
    pub concurrency: usize,
    /// How long to hold the clients once connected.
    pub hold: Duration,
    /// The broker's process id, to read its resident memory.
    pub broker_pid: Option<u32>,
}

/// What was measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnsReport {
    /// Clients connected (CONNACK 0).
    pub connected: u64,
    /// Failures by reason.
    pub failures: BTreeMap<String, u64>,
    /// Seconds from the first attempt to the last CONNACK.
    pub seconds: f64,
    /// Connections per second.
    pub rate: f64,
    /// Broker resident memory before and after connecting, bytes (0 without a pid).
    pub rss_before: u64,
    /// See `rss_before`.
    pub rss_after: u64,
    /// `(rss_after - rss_before) / connected`.
    pub rss_per_connection: f64,
    /// Whether the run was cut short (Ctrl-C).
    pub interrupted: bool,
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

/// Resident memory of a process, from /proc (0 where unavailable).
pub fn rss_of(pid: u32) -> u64 {
    crate::process_memory::resident_bytes_of(pid)
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

/// Runs the benchmark; `progress` is told of every connection made.
pub async fn run(o: ConnsOptions, progress: impl Fn(u64) + Send + Sync + 'static) -> ConnsReport {
    let rss_before = o.broker_pid.map_or(0, rss_of);
    let held: Arc<Mutex<Vec<(ClientReader, ClientWriter)>>> = Arc::default();
    let failures: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let permits = Arc::new(Semaphore::new(o.concurrency.max(1)));
    let progress = Arc::new(progress);
    let began = Instant::now();
    let mut tasks = Vec::with_capacity(o.clients);
    let interval = o
        .rate
        .map(|r| Duration::from_secs_f64(1.0 / f64::from(r.max(1))));
    let mut interrupted = false;
    for i in 0..o.clients {
        if let Some(every) = interval {
            let due = began + every * i as u32;
            tokio::select! {
                _ = tokio::time::sleep_until(due.into()) => {}
                _ = tokio::signal::ctrl_c() => { interrupted = true; break; }
            }
        }
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p,
            _ = tokio::signal::ctrl_c() => { interrupted = true; break; }
        };
        let Ok(permit) = permit else { break };
        let (held, failures, progress) = (held.clone(), failures.clone(), progress.clone());
        let id = format!("{}{:04}", o.id_prefix, i + 1);
        let (addr, source) = (o.addr, source_for(o.addr, i));
        tasks.push(tokio::spawn(async move {
            let result = open_client(addr, source, id).await;
            drop(permit);
            match result {
                Ok(halves) => {
                    let mut h = held.lock().await;
                    h.push(halves);
                    progress(h.len() as u64);
                }
                Err(reason) => *failures.lock().await.entry(reason).or_default() += 1,
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let seconds = began.elapsed().as_secs_f64();
    let connected = held.lock().await.len() as u64;
    if !interrupted && !o.hold.is_zero() {
        tokio::select! {
            _ = tokio::time::sleep(o.hold) => {}
            _ = tokio::signal::ctrl_c() => interrupted = true,
        }
    }
    let rss_after = o.broker_pid.map_or(0, rss_of);
    let failures = failures.lock().await.clone();
    ConnsReport {
        connected,
        failures,
        seconds,
        rate: connected as f64 / seconds.max(1e-9),
        rss_before,
        rss_after,
        rss_per_connection: rss_after.saturating_sub(rss_before) as f64 / (connected.max(1) as f64),
        interrupted,
    }
}

async fn open_client(
    addr: SocketAddr,
    source: Option<SocketAddr>,
    id: String,
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
    let connect = Connect {
        protocol: ProtocolVersion::V311,
        clean_session: true,
        keep_alive: 0,
        client_id: id,
        will: None,
        username: None,
        password: None,
    };
    connect_on(stream, None, connect)
        .await
        .map(|(r, w, _)| (r, w))
        .map_err(|e| reason_of(&e))
}

fn reason_of(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(24) => "too many open files (EMFILE)".into(),
        Some(99) => "no free source port (EADDRNOTAVAIL)".into(),
        _ => e.to_string(),
    }
}
