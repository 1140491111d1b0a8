//! The shipper: connects to the monitor, proves membership, sends the spool oldest-first in
//! pipelined batches, forgets what is acknowledged, and reconnects with backoff, resending
//! what was not acknowledged. The node keeps spooling meanwhile.

use parking_lot::Mutex;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use fubar_logproto::link::{MonitorMsg, NodeMsg};
use fubar_logs::LogHandle;
use quinn::crypto::rustls::QuicClientConfig;
use quinn::{Connection, Endpoint, IdleTimeout, RecvStream, SendStream, TransportConfig};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use super::SharedSpool;
use crate::config::ShipperLimits;
use crate::cookie::Cookie;
use crate::membership::join;
use crate::wire::{write_frame, FrameReader};
use crate::MonitorError;

/// Room left in the monitor's frame for the batch's own fields and `lost` ranges.
const FRAME_MARGIN: usize = 64 << 10;

/// Who the node is and where its monitor is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShipperConfig {
    /// The node's name, `name@host`.
    pub node: String,
    /// The node's boot epoch (the log engine's).
    pub epoch: u64,
    /// The monitor's address.
    pub monitor: SocketAddr,
    /// The name the monitor's certificate must carry (the HOST of `monitor@HOST`).
    pub server_name: String,
    /// Batching, pipelining and reconnection.
    pub limits: ShipperLimits,
}

/// What the shipper has done since start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShipperStats {
    /// Whether a link to the monitor is up (welcomed).
    pub connected: bool,
    /// Links established.
    pub connects: u64,
    /// Times the monitor refused this node.
    pub refusals: u64,
    /// Batches sent (resends included).
    pub batches_sent: u64,
    /// Acknowledgements received.
    pub acks: u64,
    /// Why the last link or attempt ended.
    pub last_error: Option<String>,
}

/// The running shipper; dropping it does not stop it: call [`Shipper::shutdown`].
#[derive(Debug)]
pub struct Shipper {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    stats: Mutex<ShipperStats>,
    reconnect: Notify,
    shutdown: watch::Sender<bool>,
}

impl Shared {
    fn update(&self, f: impl FnOnce(&mut ShipperStats)) {
        f(&mut self.stats.lock());
    }
}

/// Everything the link task needs.
struct Ctx {
    config: ShipperConfig,
    endpoint: Endpoint,
    cookie: Option<Cookie>,
    spool: SharedSpool,
    logs: Option<LogHandle>,
    shared: Arc<Shared>,
}

/// One welcomed link.
struct Link {
    conn: Connection,
    send: SendStream,
    recv: RecvStream,
    reader: FrameReader,
    batch_events: usize,
    batch_bytes: usize,
}

impl Shipper {
    /// Starts shipping `spool` to the monitor (needs a tokio runtime). `tls` is a TLS 1.3
    /// client configuration offering `LOG_ALPN` (`fubar_ssl::quic_client_config`), with the
    /// node certificate if the cluster uses them; `cookie` answers a cookie challenge; `logs`
    /// receives the monitor's `Collect` orders.
    pub fn start(
        config: ShipperConfig,
        tls: Arc<rustls::ClientConfig>,
        cookie: Option<Cookie>,
        spool: SharedSpool,
        logs: Option<LogHandle>,
    ) -> Result<Self, MonitorError> {
        let crypto =
            QuicClientConfig::try_from(tls).map_err(|e| MonitorError::Tls(e.to_string()))?;
        let mut client = quinn::ClientConfig::new(Arc::new(crypto));
        let mut transport = TransportConfig::default();
        let idle = IdleTimeout::try_from(config.limits.idle_timeout)
            .map_err(|e| MonitorError::BadConfig(format!("idle timeout: {e}")))?;
        transport
            .max_idle_timeout(Some(idle))
            .keep_alive_interval(Some(config.limits.idle_timeout / 3))
            .max_concurrent_bidi_streams(0u32.into())
            .max_concurrent_uni_streams(0u32.into())
            .mtu_discovery_config(Some(crate::config::mtu_discovery()));
        client.transport_config(Arc::new(transport));
        let local: SocketAddr = if config.monitor.is_ipv6() {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        };
        let mut endpoint = Endpoint::client(local).map_err(|source| MonitorError::Net {
            op: "bind the shipper's UDP socket",
            source,
        })?;
        endpoint.set_default_client_config(client);
        let shared = Arc::new(Shared {
            stats: Mutex::new(ShipperStats::default()),
            reconnect: Notify::new(),
            shutdown: watch::channel(false).0,
        });
        let ctx = Ctx {
            config,
            endpoint,
            cookie,
            spool,
            logs,
            shared: Arc::clone(&shared),
        };
        let task = tokio::spawn(run(ctx));
        Ok(Self { shared, task })
    }

    /// What the shipper has done.
    pub fn stats(&self) -> ShipperStats {
        self.shared.stats.lock().clone()
    }

    /// Drops the current link (if any); the shipper reconnects and resends what was not
    /// acknowledged.
    pub fn reconnect(&self) {
        self.shared.reconnect.notify_one();
    }

    /// Stops shipping and closes the link; the spool keeps what was not acknowledged.
    pub async fn shutdown(self) {
        self.shared.shutdown.send_replace(true);
        let _ = self.task.await;
    }
}

/// Connect, ship until the link fails, wait, again; until shutdown.
async fn run(ctx: Ctx) {
    let limits = ctx.config.limits.clone();
    let mut shutdown = ctx.shared.shutdown.subscribe();
    let mut backoff = limits.backoff_min;
    while !*shutdown.borrow() {
        let attempt = tokio::time::timeout(limits.connect_timeout, connect(&ctx)).await;
        let ended = match attempt {
            Ok(Ok(link)) => {
                backoff = limits.backoff_min;
                ctx.shared.update(|s| {
                    s.connected = true;
                    s.connects += 1;
                });
                let conn = link.conn.clone();
                let result = ship(&ctx, link, &mut shutdown).await;
                conn.close(0u32.into(), b"bye");
                ctx.shared.update(|s| s.connected = false);
                ctx.spool.lock().rewind();
                result
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(MonitorError::Timeout("connecting to the monitor")),
        };
        if let Err(e) = ended {
            if let MonitorError::Refused(reason) = &e {
                tracing::warn!(
                    target: "warning",
                    monitor = %ctx.config.monitor,
                    reason = %reason,
                    "the monitor refused this node's log link"
                );
                ctx.shared.update(|s| s.refusals += 1);
            }
            ctx.shared.update(|s| s.last_error = Some(e.to_string()));
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => {}
        }
        backoff = (backoff * 2).min(limits.backoff_max);
    }
    ctx.endpoint.close(0u32.into(), b"shutdown");
    let _ = tokio::time::timeout(Duration::from_secs(1), ctx.endpoint.wait_idle()).await;
}

/// Connects, says who the node is, answers a cookie challenge; returns the welcomed link.
async fn connect(ctx: &Ctx) -> Result<Link, MonitorError> {
    let config = &ctx.config;
    let conn = ctx
        .endpoint
        .connect(config.monitor, &config.server_name)?
        .await?;
    let joined = join(&conn, &config.node, config.epoch, ctx.cookie.as_ref()).await?;
    let limits = &config.limits;
    let frame_room = (joined.max_frame as usize)
        .saturating_sub(FRAME_MARGIN)
        .max(1);
    Ok(Link {
        conn,
        send: joined.send,
        recv: joined.recv,
        reader: joined.reader,
        batch_events: limits
            .batch_events
            .min(joined.max_batch_events as usize)
            .max(1),
        batch_bytes: limits.batch_bytes.min(frame_room),
    })
}

/// Sends batches while fewer than `max_in_flight` are unacknowledged, and takes acks and
/// `Collect` orders; returns when the link fails, or `Ok` on reconnect or shutdown.
async fn ship(
    ctx: &Ctx,
    mut link: Link,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), MonitorError> {
    let max_in_flight = ctx.config.limits.max_in_flight.max(1);
    let ack_timeout = ctx.config.limits.ack_timeout;
    // When the oldest unacknowledged batch started waiting: a monitor that stops answering
    // (killed, its host gone) is given up on after `ack_timeout`, long before QUIC's idle
    // timeout would notice, and the batches are resent on a new link.
    let mut waiting_since: Option<tokio::time::Instant> = None;
    loop {
        while ctx.spool.lock().in_flight() < max_in_flight {
            let (events, bytes) = (link.batch_events, link.batch_bytes);
            let next = ctx.spool.with(move |s| s.next_batch(events, bytes)).await?;
            let Some(batch) = next else {
                break;
            };
            write_frame(&mut link.send, &NodeMsg::Batch(batch)).await?;
            waiting_since.get_or_insert_with(tokio::time::Instant::now);
            ctx.shared.update(|s| s.batches_sent += 1);
        }
        let in_flight = ctx.spool.lock().in_flight();
        let room = in_flight < max_in_flight;
        if in_flight == 0 {
            waiting_since = None;
        }
        let ack_deadline = waiting_since.map(|t| t + ack_timeout);
        tokio::select! {
            msg = link.reader.next::<MonitorMsg>(&mut link.recv) => match msg? {
                Some(MonitorMsg::Ack { epoch, upto_seq }) => {
                    ctx.spool.with(move |s| s.ack(epoch, upto_seq)).await?;
                    ctx.shared.update(|s| s.acks += 1);
                    waiting_since = Some(tokio::time::Instant::now());
                }
                Some(MonitorMsg::Collect { class, on }) => {
                    if let Some(logs) = &ctx.logs {
                        logs.ship(class, on);
                    }
                }
                Some(other) => {
                    // Its name only: a `Refused` may carry up to a frame of the server's text.
                    return Err(MonitorError::Protocol(format!(
                        "unexpected {}",
                        crate::membership::kind(&other)
                    )));
                }
                None => return Err(MonitorError::Stream("the monitor closed the link".into())),
            },
            () = ctx.spool.ready(), if room => {}
            () = sleep_until_opt(ack_deadline) => {
                return Err(MonitorError::Stream(format!(
                    "no acknowledgement from the monitor in {ack_timeout:?}"
                )));
            }
            () = ctx.shared.reconnect.notified() => return Ok(()),
            _ = shutdown.changed() => return Ok(()),
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
