//! The client side of the membership handshake, shared by a node's log link (the shipper),
//! a cluster peer link and a remote admin client: `Hello` with a challenge, the server's
//! proof checked, then the client's `Proof`, then `Welcome` or `Refused`. The server's side
//! is `server::connection::admit`, the same for every ALPN.

use fubar_logproto::link::{MonitorMsg, NodeMsg, BINDING_LABEL, BINDING_LEN};
use quinn::{Connection, RecvStream, SendStream};

use crate::cookie::{self, Cookie};
use crate::wire::{write_frame, FrameReader};
use crate::MonitorError;

/// Largest frame the monitor sends on the handshake (its messages are small).
const MAX_MONITOR_FRAME: usize = 64 << 10;

/// A stream the monitor has welcomed.
pub(crate) struct Joined {
    pub(crate) send: SendStream,
    pub(crate) recv: RecvStream,
    pub(crate) reader: FrameReader,
    /// The monitor's frame limit (`Welcome`).
    pub(crate) max_frame: u32,
    /// The monitor's batch limit (`Welcome`).
    pub(crate) max_batch_events: u32,
}

/// Opens the stream on `conn`, challenges the server, and once it has proven the cookie
/// (when this side holds one; without one the TLS layer must have checked the server's node
/// certificate against the cluster CA), says who `node` is and proves the cookie in turn.
pub(crate) async fn join(
    conn: &Connection,
    node: &str,
    epoch: u64,
    cookie: Option<&Cookie>,
) -> Result<Joined, MonitorError> {
    let (mut send, mut recv) = conn.open_bi().await?;
    let mut reader = FrameReader::new(MAX_MONITOR_FRAME);
    let client_nonce = cookie::nonce()?;
    write_frame(
        &mut send,
        &NodeMsg::Hello {
            nonce: client_nonce,
        },
    )
    .await?;
    let mut binding = [0; BINDING_LEN];
    conn.export_keying_material(&mut binding, BINDING_LABEL, b"")
        .map_err(|_| MonitorError::Tls("no TLS exporter on this link".into()))?;
    let (server_nonce, server_mac) = match reader.next::<MonitorMsg>(&mut recv).await? {
        Some(MonitorMsg::Challenge { nonce, mac }) => (nonce, mac),
        Some(MonitorMsg::Refused { reason }) => return Err(MonitorError::Refused(reason)),
        Some(other) => {
            return Err(MonitorError::Protocol(format!(
                "unexpected {} before the challenge",
                kind(&other)
            )))
        }
        None => return Err(MonitorError::Stream("closed during the handshake".into())),
    };
    let mac = match cookie {
        Some(cookie) => {
            // Nothing of value goes out before the server has shown it holds the cookie.
            let proven = server_mac.is_some_and(|mac| {
                cookie.verify_server(&binding, &server_nonce, &client_nonce, &mac)
            });
            if !proven {
                conn.close(1u32.into(), b"");
                return Err(MonitorError::Refused(
                    "the server did not prove the cluster cookie: not a member of this cluster \
                     (another cookie, or a man in the middle)"
                        .into(),
                ));
            }
            Some(cookie.prove(&binding, &server_nonce, &client_nonce, node, epoch))
        }
        None => None,
    };
    let proof = NodeMsg::Proof {
        node: node.to_owned(),
        epoch,
        mac,
    };
    write_frame(&mut send, &proof).await?;
    match reader.next::<MonitorMsg>(&mut recv).await? {
        Some(MonitorMsg::Welcome {
            max_frame,
            max_batch_events,
        }) => Ok(Joined {
            send,
            recv,
            reader,
            max_frame,
            max_batch_events,
        }),
        Some(MonitorMsg::Refused { reason }) => Err(MonitorError::Refused(reason)),
        Some(other) => Err(MonitorError::Protocol(format!(
            "unexpected {} before Welcome",
            kind(&other)
        ))),
        None => Err(MonitorError::Stream("closed during the handshake".into())),
    }
}

/// A message's name, for errors (never its contents: they come from an unproven peer).
fn kind(msg: &MonitorMsg) -> &'static str {
    match msg {
        MonitorMsg::Challenge { .. } => "Challenge",
        MonitorMsg::Welcome { .. } => "Welcome",
        MonitorMsg::Ack { .. } => "Ack",
        MonitorMsg::Refused { .. } => "Refused",
        MonitorMsg::Collect { .. } => "Collect",
    }
}
