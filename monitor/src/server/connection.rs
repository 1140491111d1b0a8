//! One node's link at the monitor: handshake and membership proof, then batches and acks.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fubar_logproto::admin::{AdminRequest, AdminResponse};
use fubar_logproto::link::{
    Batch, MonitorMsg, NodeMsg, ADMIN_ALPN, BINDING_LABEL, BINDING_LEN, MAX_ADMIN_REQUEST,
    MAX_HELLO_FRAME, MAX_NODE_NAME, NONCE_LEN, PEER_ALPN, REFUSED,
};
use fubar_logproto::{Class, Event};
use fubar_ssl::CertKind;
use quinn::{Connection, Incoming, RecvStream, SendStream, VarInt};
use rustls_pki_types::CertificateDer;
use tokio::sync::{mpsc, Mutex as AsyncMutex, OwnedSemaphorePermit};

use super::{Inner, PeerLink, Unproven};
use crate::admin::{AdminCall, Caller, ADMIN_REPLY_CAPACITY};
use crate::cookie;
use crate::dedup::{check_batch, NodeDedup};
use crate::stats::BatchDone;
use crate::wire::{is_malformed, write_frame, FrameReader};
use crate::MonitorError;

/// QUIC close code of a link refused or closed for a protocol violation.
const CLOSE_REFUSED: u32 = 1;
/// How long a refused peer is given to read the refusal.
const REFUSAL_LINGER: Duration = Duration::from_millis(500);
/// How long an admin client is given to read the last reply and close.
const REPLY_LINGER: Duration = Duration::from_secs(5);

/// Why a link ended before or during its life.
enum End {
    /// Not a member (or could not say who it is): refused, with a warning.
    Refused {
        node: Option<String>,
        reason: String,
    },
    /// Broke the protocol or the link failed after admission.
    Failed { node: String, error: MonitorError },
}

/// A peer that got through the handshake.
struct Admitted {
    conn: Connection,
    send: SendStream,
    recv: RecvStream,
    reader: FrameReader,
    node: String,
    kind: LinkKind,
    /// Who it proved to be (an operator only on an admin link).
    caller: Caller,
}

/// What a link is for, by its ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkKind {
    /// A node's log link (`fubar-log/1`).
    Log,
    /// A remote admin client (`fubar-admin/1`).
    Admin,
    /// A cluster member (`fubar-cluster/1`).
    Peer,
}

/// Counts a refusal and logs it as a `warning` event, at most one per address per interval
/// (with the number of refusals it stands for) and `limits.max_refusal_warnings` per
/// interval in all; refusals beyond those are summed up in one summary warning at the end of
/// the interval. The claimed name and the reason are cut short and cleaned, since they may
/// come from the peer.
pub(super) fn refusal(inner: &Inner, peer: SocketAddr, node: Option<&str>, reason: &str) {
    inner.refused.fetch_add(1, Ordering::Relaxed);
    let verdict = inner.refusal_log.due(peer.ip(), Instant::now());
    if let Some(summary) = verdict.summary {
        summary_warning(&inner.refusal_log, summary);
    }
    if verdict.budget_spent {
        // The summary comes at the end of the interval even if no refusal follows.
        let log = Arc::clone(&inner.refusal_log);
        let at = tokio::time::Instant::from_std(log.summary_at());
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            if let Some(summary) = log.summary(Instant::now()) {
                summary_warning(&log, summary);
            }
        });
    }
    let Some(refusals) = verdict.warn else {
        return;
    };
    tracing::warn!(
        target: "warning",
        peer = %peer,
        node = %node.map_or_else(|| "-".to_owned(), |n| bounded_text(n, 64)),
        reason = %bounded_text(reason, 200),
        refusals,
        "cluster port: connection refused"
    );
}

/// The one warning for the refusals of an interval beyond the warning budget.
fn summary_warning(log: &super::RefusalLog, (refusals, addresses): (u64, u64)) {
    tracing::warn!(
        target: "warning",
        peer = "(many)",
        refusals,
        addresses,
        interval_ms = u64::try_from(log.interval().as_millis()).unwrap_or(u64::MAX),
        "cluster port: connections refused, not warned about one by one (too many in one interval)"
    );
}

/// At most `max` characters of `text`, control characters replaced: peer-supplied text in a
/// log line.
pub(crate) fn bounded_text(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

/// Serves one incoming connection to its end.
pub(super) async fn run(
    inner: Arc<Inner>,
    incoming: Incoming,
    _permit: OwnedSemaphorePermit,
    unproven: Unproven,
) {
    let peer = incoming.remote_address();
    let admitted =
        tokio::time::timeout(inner.limits.handshake_timeout, admit(&inner, incoming)).await;
    // Proven or not, the connection no longer counts against its address's pre-proof slots.
    drop(unproven);
    let admitted = match admitted {
        Ok(Ok(a)) => {
            // Its address's next unproven connections may use the members' share.
            inner.remember(peer.ip(), Instant::now());
            a
        }
        Ok(Err(End::Refused { node, reason })) => {
            refusal(&inner, peer, node.as_deref(), &reason);
            return;
        }
        Ok(Err(End::Failed { node, error })) => {
            tracing::info!(target: "info", peer = %peer, node = %node, reason = %error, "log link ended");
            return;
        }
        Err(_) => {
            refusal(&inner, peer, None, "handshake timed out");
            return;
        }
    };
    let node = admitted.node.clone();
    let conn = admitted.conn.clone();
    if admitted.kind == LinkKind::Peer {
        hand_peer(&inner, admitted, peer).await;
        return;
    }
    if admitted.kind == LinkKind::Admin {
        // Not a log link: it does not take the node's place in the table.
        if let Err(error) = serve_admin(&inner, admitted).await {
            if is_malformed(&error) {
                // A bad or oversized request ends this connection only.
                tracing::warn!(target: "warning", peer = %peer, client = %node,
                    reason = %error, "admin link closed: malformed traffic");
                conn.close(VarInt::from_u32(CLOSE_REFUSED), b"malformed");
            } else {
                tracing::info!(target: "info", peer = %peer, client = %node,
                    reason = %error, "admin link ended");
            }
        }
        return;
    }
    let Some(dedup) = inner.register(&node, &conn) else {
        refusal(&inner, peer, Some(&node), "too many nodes");
        conn.close(VarInt::from_u32(CLOSE_REFUSED), b"");
        return;
    };
    if let Err(error) = serve(&inner, admitted, &dedup).await {
        if is_malformed(&error) {
            inner.with_live(&node, |l| l.rejected += 1);
            tracing::warn!(
                target: "warning",
                peer = %peer,
                node = %node,
                reason = %error,
                "log link closed: malformed traffic"
            );
            conn.close(VarInt::from_u32(CLOSE_REFUSED), b"malformed");
        } else {
            tracing::info!(target: "info", peer = %peer, node = %node, reason = %error, "log link ended");
        }
    }
    inner.unregister(&node, &conn);
}

/// TLS, `Hello`, the membership proof, `Welcome`.
async fn admit(inner: &Inner, incoming: Incoming) -> Result<Admitted, End> {
    let refused = |node: Option<&str>, reason: String| End::Refused {
        node: node.map(str::to_owned),
        reason,
    };
    let conn = incoming
        .await
        .map_err(|e| refused(None, format!("TLS handshake failed: {e}")))?;
    let kind = match alpn(&conn).as_deref() {
        Some(ADMIN_ALPN) => LinkKind::Admin,
        Some(PEER_ALPN) => LinkKind::Peer,
        _ => LinkKind::Log,
    };
    let (mut send, mut recv) = conn
        .accept_bi()
        .await
        .map_err(|e| refused(None, format!("no stream: {e}")))?;
    // Until the peer has proven membership, frames are no larger than a hello needs.
    let mut reader = FrameReader::new(MAX_HELLO_FRAME);
    let client_nonce = match reader.next::<NodeMsg>(&mut recv).await {
        Ok(Some(NodeMsg::Hello { nonce })) => nonce,
        other => {
            conn.close(VarInt::from_u32(CLOSE_REFUSED), b"");
            let reason = match other {
                Err(e) => format!("bad Hello: {e}"),
                Ok(_) => "the first frame is not Hello".into(),
            };
            return Err(refused(None, reason));
        }
    };
    let proven = prove(
        inner,
        &conn,
        &mut send,
        &mut reader,
        &mut recv,
        client_nonce,
    )
    .await;
    let (node, _epoch, operator) = match proven {
        // An operator certificate opens admin commands, never a log or peer link.
        Ok((node, _, Some(_))) if kind != LinkKind::Admin => {
            conn.close(VarInt::from_u32(CLOSE_REFUSED), b"");
            return Err(refused(
                Some(&node),
                "an operator certificate on a log or peer link".into(),
            ));
        }
        Ok(who) => who,
        Err((node, reason)) => {
            // Generic: a non-member learns nothing of why.
            let refusal = MonitorMsg::Refused {
                reason: REFUSED.into(),
            };
            if write_frame(&mut send, &refusal).await.is_ok() && send.finish().is_ok() {
                let _ = tokio::time::timeout(REFUSAL_LINGER, send.stopped()).await;
            }
            conn.close(VarInt::from_u32(CLOSE_REFUSED), b"");
            return Err(refused(node.as_deref(), reason));
        }
    };
    reader.set_max(inner.limits.max_frame);
    // A member now: the windows and streams a link needs (see `transport`).
    if let Ok(window) = VarInt::from_u64(inner.limits.receive_window()) {
        conn.set_receive_window(window);
    }
    conn.set_max_concurrent_bi_streams(VarInt::from_u32(super::DEFAULT_MAX_PEER_STREAMS));
    let welcome = MonitorMsg::Welcome {
        max_frame: u32::try_from(inner.limits.max_frame).unwrap_or(u32::MAX),
        max_batch_events: u32::try_from(inner.limits.max_batch_events).unwrap_or(u32::MAX),
    };
    let failed = |error| End::Failed {
        node: node.clone(),
        error,
    };
    write_frame(&mut send, &welcome).await.map_err(failed)?;
    let caller = match operator {
        Some(role) => Caller::Operator {
            name: node.clone(),
            role,
        },
        None => Caller::Member(node.clone()),
    };
    Ok(Admitted {
        conn,
        send,
        recv,
        reader,
        node,
        kind,
        caller,
    })
}

/// Gives an admitted cluster member's link to the node's cluster layer.
async fn hand_peer(inner: &Inner, mut link: Admitted, peer: SocketAddr) {
    let _ = link.send.finish();
    let handed = match inner.peers.get() {
        Some(taker) => taker
            .send(PeerLink {
                node: link.node.clone(),
                conn: link.conn.clone(),
            })
            .await
            .is_ok(),
        None => false,
    };
    if !handed {
        refusal(
            inner,
            peer,
            Some(&link.node),
            "this node is not in a cluster",
        );
        link.conn
            .close(VarInt::from_u32(CLOSE_REFUSED), b"not clustered");
    }
}

/// The protocol the peer chose (TLS ALPN).
fn alpn(conn: &Connection) -> Option<Vec<u8>> {
    conn.handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}

/// An admitted admin client: one request, handed to the installed handler, whose replies are
/// written back until it is done or the client goes away; then the stream is finished.
async fn serve_admin(inner: &Inner, mut link: Admitted) -> Result<(), MonitorError> {
    link.reader = FrameReader::new(MAX_ADMIN_REQUEST);
    let request = tokio::time::timeout(
        inner.limits.handshake_timeout,
        link.reader.next::<AdminRequest>(&mut link.recv),
    )
    .await
    .map_err(|_| MonitorError::Timeout("the admin request"))??
    .ok_or_else(|| MonitorError::Protocol("no admin request".into()))?;
    let (replies, mut rx) = mpsc::channel(ADMIN_REPLY_CAPACITY);
    let call = AdminCall {
        request,
        replies,
        caller: link.caller.clone(),
        peer: link.conn.remote_address(),
    };
    let handed = match inner.admin.get() {
        Some(handler) => handler.send(call).await.is_ok(),
        None => false,
    };
    if !handed {
        let reply = AdminResponse::Error("this monitor serves no remote admin".into());
        write_frame(&mut link.send, &reply).await?;
    }
    let gone = link.send.stopped();
    tokio::pin!(gone);
    loop {
        tokio::select! {
            reply = rx.recv() => match reply {
                Some(r) => write_frame(&mut link.send, &r).await?,
                None => break,
            },
            // The client stopped reading or closed: dropping `rx` ends a tail.
            _ = &mut gone => return Ok(()),
            _ = link.conn.closed() => return Ok(()),
        }
    }
    link.send
        .finish()
        .map_err(|e| MonitorError::Stream(e.to_string()))?;
    // Keep the connection until the client has read it all and closed it.
    let _ = tokio::time::timeout(REPLY_LINGER, link.conn.closed()).await;
    Ok(())
}

/// The server's proof and challenge, then the client's `Proof`: `Ok((node, epoch, None))` for
/// a member, `Ok((name, 0, Some(role)))` for an operator (whose certificate, checked against
/// the cluster CA, names it), `Err((claimed name, reason))` for the warning otherwise.
///
/// A member proves the cookie, or (when the TLS layer checks certificates against the
/// cluster CA) shows a node certificate naming itself and a member the cluster knows. A
/// certificate that is not a node certificate is refused whatever else comes with it: a
/// device certificate is never a cluster identity.
async fn prove(
    inner: &Inner,
    conn: &Connection,
    send: &mut SendStream,
    reader: &mut FrameReader,
    recv: &mut RecvStream,
    client_nonce: [u8; NONCE_LEN],
) -> Result<(String, u64, Option<fubar_ssl::Role>), (Option<String>, String)> {
    let fail = |node: Option<&str>, reason: String| (node.map(str::to_owned), reason);
    let certificate = peer_certificate(conn);
    let kind = certificate.as_deref().map(fubar_ssl::cert_kind);
    if kind == Some(CertKind::Other) {
        return Err(fail(
            None,
            "a certificate that is not a node certificate (a device's?)".into(),
        ));
    }
    let mut binding = [0; BINDING_LEN];
    conn.export_keying_material(&mut binding, BINDING_LABEL, b"")
        .map_err(|_| fail(None, "no TLS exporter".to_owned()))?;
    let server_nonce = cookie::nonce().map_err(|e| fail(None, e.to_string()))?;
    let mac = inner
        .cookie
        .as_ref()
        .map(|c| c.prove_server(&binding, &server_nonce, &client_nonce));
    write_frame(
        send,
        &MonitorMsg::Challenge {
            nonce: server_nonce,
            mac,
        },
    )
    .await
    .map_err(|e| fail(None, e.to_string()))?;
    let (node, epoch, mac) = match reader.next::<NodeMsg>(recv).await {
        Ok(Some(NodeMsg::Proof { node, epoch, mac })) => (node, epoch, mac),
        Ok(_) => return Err(fail(None, "no proof after the challenge".into())),
        Err(e) => return Err(fail(None, format!("bad proof frame: {e}"))),
    };
    if node.is_empty() || node.len() > MAX_NODE_NAME {
        return Err(fail(Some(&node), "no name, or too long a name".into()));
    }
    if let Some(mac) = mac {
        let Some(cookie) = &inner.cookie else {
            return Err(fail(
                Some(&node),
                "a cookie proof, and no cookie here".into(),
            ));
        };
        return if cookie.verify(&binding, &server_nonce, &client_nonce, &node, epoch, &mac) {
            Ok((node, epoch, None))
        } else {
            Err(fail(Some(&node), "wrong cookie proof".into()))
        };
    }
    match kind {
        Some(CertKind::Node(cn)) if inner.certs_vouch => {
            if cn != node {
                Err(fail(
                    Some(&node),
                    format!("its node certificate names {}", connection_text(&cn)),
                ))
            } else if !inner.is_member(&node) {
                Err(fail(
                    Some(&node),
                    "a node certificate of a node the cluster does not know, and no cookie proof"
                        .into(),
                ))
            } else {
                Ok((node, epoch, None))
            }
        }
        Some(CertKind::Operator { name, role }) if inner.certs_vouch => {
            if name == node {
                Ok((node, 0, Some(role)))
            } else {
                Err(fail(
                    Some(&node),
                    format!("its operator certificate names {}", connection_text(&name)),
                ))
            }
        }
        Some(_) => Err(fail(
            Some(&node),
            "a certificate without the cluster CA's authority, and no cookie proof".into(),
        )),
        None => Err(fail(
            Some(&node),
            "no certificate and no cookie proof".into(),
        )),
    }
}

fn connection_text(text: &str) -> String {
    format!("{:?}", bounded_text(text, 64))
}

/// The peer's certificate (the leaf), if it sent one.
fn peer_certificate(conn: &Connection) -> Option<Vec<u8>> {
    let chain = conn
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    chain.first().map(|c| c.to_vec())
}

/// The admitted link: batches in, acks and `Collect` orders out.
async fn serve(
    inner: &Inner,
    mut link: Admitted,
    dedup: &AsyncMutex<NodeDedup>,
) -> Result<(), MonitorError> {
    let mut collect = inner.collect.subscribe();
    let mut told = [None; Class::ALL.len()];
    loop {
        let wanted = *collect.borrow_and_update();
        for class in Class::ALL {
            let on = wanted[class.index()];
            if told[class.index()] != Some(on) {
                write_frame(&mut link.send, &MonitorMsg::Collect { class, on }).await?;
                told[class.index()] = Some(on);
            }
        }
        tokio::select! {
            frame = link.reader.next::<NodeMsg>(&mut link.recv) => match frame? {
                Some(NodeMsg::Batch(batch)) => {
                    let (epoch, upto_seq) = take_batch(inner, &link.node, batch, dedup).await?;
                    write_frame(&mut link.send, &MonitorMsg::Ack { epoch, upto_seq }).await?;
                }
                Some(other) => {
                    return Err(MonitorError::Protocol(format!("unexpected {}", kind(&other))));
                }
                None => return Ok(()),
            },
            changed = collect.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
            }
        }
    }
}

fn kind(msg: &NodeMsg) -> &'static str {
    match msg {
        NodeMsg::Hello { .. } => "Hello",
        NodeMsg::Proof { .. } => "Proof",
        NodeMsg::Batch(_) => "Batch",
    }
}

/// Checks a batch, writes its fresh events through the sink and commits: returns the ack.
async fn take_batch(
    inner: &Inner,
    node: &str,
    mut batch: Batch,
    dedup: &AsyncMutex<NodeDedup>,
) -> Result<(u64, u64), MonitorError> {
    check_batch(&batch, node, inner.limits.max_batch_events)?;
    let mut filters = dedup.lock().await;
    let plan = filters.tracker(batch.epoch).plan(&batch);
    let fresh: Vec<Event> = batch.events.split_off(plan.fresh_from);
    let newest_us = fresh.last().map(|e| e.time_us);
    let count = fresh.len() as u64;
    if !fresh.is_empty() {
        let sink = Arc::clone(&inner.sink);
        tokio::task::spawn_blocking(move || sink.write(&fresh))
            .await
            .map_err(|e| MonitorError::Stream(format!("sink task: {e}")))??;
    }
    filters.tracker(batch.epoch).commit(&plan);
    let counts = filters.counts();
    drop(filters);
    let done = BatchDone {
        epoch: batch.epoch,
        upto: plan.upto,
        fresh: count,
        newest_us,
        wall_us: now_us(),
        counts,
    };
    inner.with_live(node, |l| l.on_batch(Instant::now(), done));
    Ok((batch.epoch, plan.upto))
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}
