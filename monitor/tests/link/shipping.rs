//! Shipping: exactly once in the monitor's segments across absences, cuts and restarts.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use fubar_logproto::{Class, Event};
use fubar_logs::LogHandle;
use fubar_monitor::cookie::Cookie;
use fubar_monitor::server::MonitorServer;
use fubar_monitor::shipper::{SharedSpool, Shipper, ShipperConfig, SpoolConfig};
use fubar_monitor::sink::EventSink;
use fubar_monitor::MonitorError;
use tracing_subscriber::layer::SubscriberExt as _;

use crate::{fast_limits, free_addr, monitor_logs, seqs_of, wait_for, Monitor, Node, Pki, SECRET};

fn cookie() -> Option<Cookie> {
    Cookie::from_secret(SECRET)
}

/// Writes through the log engine, and cuts the node's link right after the `after`-th write,
/// before its acknowledgement can go out.
struct CutAfter {
    logs: LogHandle,
    after: usize,
    writes: AtomicUsize,
    server: OnceLock<MonitorServer>,
    node: &'static str,
}

impl EventSink for CutAfter {
    fn write(&self, events: &[Event]) -> Result<(), MonitorError> {
        self.logs.write_events(events)?;
        if self.writes.fetch_add(1, Ordering::SeqCst) + 1 == self.after {
            if let Some(server) = self.server.get() {
                assert!(server.disconnect(self.node));
            }
        }
        Ok(())
    }
}

#[tokio::test]
async fn exactly_once_across_a_monitor_absence_and_a_cut_before_the_ack() {
    let pki = Pki::new(&[]);
    let addr = free_addr();
    let node = Node::start("n1@localhost", addr, pki.client_tls(None), cookie());
    // No monitor yet: the node keeps spooling.
    node.emit(1..=50);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = node.shipper.stats();
    assert!(!stats.connected && stats.connects == 0, "{stats:?}");
    let dir = tempfile::tempdir().unwrap();
    let (logs, _layer) = monitor_logs(dir.path());
    let cut = Arc::new(CutAfter {
        logs: logs.clone(),
        after: 3,
        writes: AtomicUsize::new(0),
        server: OnceLock::new(),
        node: "n1@localhost",
    });
    let sink: Arc<dyn EventSink> = cut.clone();
    let monitor = Monitor::start(&pki, addr, cookie(), dir.path(), logs, Some(sink));
    let _ = cut.server.set(monitor.server.clone());
    node.emit(51..=120);
    let server = monitor.server.clone();
    wait_for("all 120 events acknowledged", || {
        server.stats().first().is_some_and(|s| s.upto_seq == 120)
    })
    .await;
    let written = seqs_of(&monitor.recorded(Class::Access), "n1@localhost");
    assert_eq!(written, (1..=120).collect::<Vec<_>>(), "each event once");
    let stats = node.shipper.stats();
    assert!(
        stats.connects >= 2,
        "the cut forced a reconnection: {stats:?}"
    );
    let at_monitor = &monitor.server.stats()[0];
    assert!(
        at_monitor.counts.duplicates >= 10,
        "the cut batch came again: {at_monitor:?}"
    );
    assert_eq!(at_monitor.counts.events, 120);
    assert_eq!((at_monitor.counts.lost, at_monitor.counts.missing), (0, 0));
    wait_for("the spool emptied", || node.spool.stats().in_flight == 0).await;
    node.shipper.shutdown().await;
    monitor.server.shutdown().await;
}

/// Writes through the log engine; the `at`-th write then waits for the test's go-ahead.
struct Gate {
    logs: LogHandle,
    at: usize,
    writes: AtomicUsize,
    reached: Mutex<Option<mpsc::Sender<()>>>,
    release: Mutex<Option<mpsc::Receiver<()>>>,
}

impl EventSink for Gate {
    fn write(&self, events: &[Event]) -> Result<(), MonitorError> {
        self.logs.write_events(events)?;
        if self.writes.fetch_add(1, Ordering::SeqCst) + 1 == self.at {
            if let Some(tx) = self.reached.lock().take() {
                let _ = tx.send(());
            }
            if let Some(rx) = self.release.lock().take() {
                let _ = rx.recv_timeout(Duration::from_secs(10));
            }
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_restarted_monitor_recognises_what_it_wrote_but_never_acknowledged() {
    let pki = Pki::new(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (logs, _layer) = monitor_logs(dir.path());
    let (reached_tx, reached_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel();
    let gate = Arc::new(Gate {
        logs: logs.clone(),
        at: 2,
        writes: AtomicUsize::new(0),
        reached: Mutex::new(Some(reached_tx)),
        release: Mutex::new(Some(release_rx)),
    });
    let sink: Arc<dyn EventSink> = gate;
    let first = Monitor::start(
        &pki,
        free_addr(),
        cookie(),
        dir.path(),
        logs.clone(),
        Some(sink),
    );
    let addr = first.addr();
    let node = Node::start("n1@localhost", addr, pki.client_tls(None), cookie());
    node.emit(1..=40);
    // The second batch is in the segments; the monitor goes away before acknowledging it.
    tokio::task::spawn_blocking(move || reached_rx.recv_timeout(Duration::from_secs(20)))
        .await
        .unwrap()
        .unwrap();
    first.server.shutdown().await;
    release_tx.send(()).unwrap();
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The same data dir, seeded from its segments, on the same port.
    let mut second = None;
    for _ in 0..50 {
        let config = fubar_monitor::server::ServerConfig {
            high_water: fubar_logs::high_water_marks(dir.path()).unwrap(),
            ..fubar_monitor::server::ServerConfig::new(addr)
        };
        let sink: Arc<dyn EventSink> = Arc::new(logs.clone());
        match MonitorServer::start(config, pki.server_tls(), cookie(), sink) {
            Ok(s) => {
                second = Some(s);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let second = second.expect("the port is free again");
    let server = second.clone();
    wait_for("all 40 acknowledged by the new monitor", || {
        server
            .stats()
            .iter()
            .any(|s| s.connected && s.upto_seq == 40)
    })
    .await;
    logs.flush();
    let written = seqs_of(&crate::recorded(dir.path(), Class::Access), "n1@localhost");
    assert_eq!(written, (1..=40).collect::<Vec<_>>(), "each event once");
    node.shipper.shutdown().await;
    second.shutdown().await;
}

#[tokio::test]
async fn the_log_engines_tap_feeds_the_spool_and_collect_orders_reach_the_node() {
    let pki = Pki::new(&[]);
    let mdir = tempfile::tempdir().unwrap();
    let (mlogs, _mlayer) = monitor_logs(mdir.path());
    let monitor = Monitor::start(&pki, free_addr(), cookie(), mdir.path(), mlogs, None);
    // The node's own log engine, its layer the test thread's subscriber.
    let ndir = tempfile::tempdir().unwrap();
    let (nlogs, nlayer) = fubar_logs::start(fubar_logs::LogConfig {
        node: "n1@localhost".into(),
        epoch: 5,
        dir: ndir.path().join("log"),
        max_bytes: 1 << 20,
        max_files: 4,
        // Recorded on the node, not collected by the monitor.
        classes: vec![(Class::Protocol, fubar_logs::Redirect::None)],
        channel_capacity: 1024,
        flush_interval: Duration::from_millis(50),
        max_events_per_sec: 0,
    })
    .unwrap();
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(nlayer));
    let spool = SharedSpool::open(&SpoolConfig::new(ndir.path().join("spool"))).unwrap();
    nlogs.set_tap(Some(spool.tap()));
    let config = ShipperConfig {
        node: "n1@localhost".into(),
        epoch: 5,
        monitor: monitor.addr(),
        server_name: "localhost".into(),
        limits: fast_limits(),
    };
    let shipper = Shipper::start(
        config,
        pki.client_tls(None),
        cookie(),
        spool,
        Some(nlogs.clone()),
    )
    .unwrap();
    // The monitor's collect set reaches the node's engine.
    wait_for("access shipped", || {
        nlogs.shipped().contains(&Class::Access)
    })
    .await;
    assert!(!nlogs.shipped().contains(&Class::Protocol));
    for i in 0..25 {
        tracing::info!(target: "access", client = i, "connected");
        tracing::info!(target: "protocol", "not collected");
    }
    nlogs.flush();
    let server = monitor.server.clone();
    wait_for("25 events written", || {
        server
            .stats()
            .first()
            .is_some_and(|s| s.counts.events == 25)
    })
    .await;
    let access = monitor.recorded(Class::Access);
    assert_eq!(access.len(), 25);
    assert!(access
        .iter()
        .all(|e| e.node == "n1@localhost" && e.epoch == 5));
    assert!(monitor.recorded(Class::Protocol).is_empty());
    // Every protocol event used a number: never shipped, counted as such.
    let stats = &monitor.server.stats()[0];
    assert!(stats.counts.not_shipped >= 24, "{stats:?}");
    assert_eq!(
        stats.upto_seq, 49,
        "the last protocol event is not covered yet"
    );
    assert_eq!(stats.counts.missing, 0);
    // Collection switched off at the monitor reaches the node.
    monitor.server.set_collect(Class::Access, false);
    wait_for("access no longer shipped", || {
        !nlogs.shipped().contains(&Class::Access)
    })
    .await;
    shipper.shutdown().await;
    monitor.server.shutdown().await;
    nlogs.shutdown();
}
