//! The client side of the membership handshake, shared by a node's log link (the shipper)
//! and a remote admin client: `Hello`, a cookie `Proof` if challenged, then `Welcome` or
//! `Refused`. The monitor's side is `server::connection::admit`, the same for both ALPNs.

use fubar_logproto::link::{MonitorMsg, NodeMsg, BINDING_LABEL, BINDING_LEN};
use quinn::{Connection, RecvStream, SendStream};

use crate::cookie::Cookie;
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

/// Opens the stream on `conn`, says who `node` is, answers a cookie challenge with `cookie`.
pub(crate) async fn join(
    conn: &Connection,
    node: &str,
    epoch: u64,
    cookie: Option<&Cookie>,
) -> Result<Joined, MonitorError> {
    let (mut send, mut recv) = conn.open_bi().await?;
    let mut reader = FrameReader::new(MAX_MONITOR_FRAME);
    let hello = NodeMsg::Hello {
        node: node.to_owned(),
        epoch,
    };
    write_frame(&mut send, &hello).await?;
    loop {
        match reader.next::<MonitorMsg>(&mut recv).await? {
            Some(MonitorMsg::Challenge { nonce }) => {
                let Some(cookie) = cookie else {
                    return Err(MonitorError::Refused(
                        "the monitor asks for the cluster cookie and none is configured".into(),
                    ));
                };
                let mut binding = [0; BINDING_LEN];
                conn.export_keying_material(&mut binding, BINDING_LABEL, b"")
                    .map_err(|_| MonitorError::Tls("no TLS exporter on this link".into()))?;
                let mac = cookie.prove(&binding, &nonce, node, epoch);
                write_frame(&mut send, &NodeMsg::Proof { mac }).await?;
            }
            Some(MonitorMsg::Welcome {
                max_frame,
                max_batch_events,
            }) => {
                return Ok(Joined {
                    send,
                    recv,
                    reader,
                    max_frame,
                    max_batch_events,
                })
            }
            Some(MonitorMsg::Refused { reason }) => return Err(MonitorError::Refused(reason)),
            Some(other) => {
                return Err(MonitorError::Protocol(format!(
                    "unexpected {other:?} before Welcome"
                )))
            }
            None => return Err(MonitorError::Stream("closed during the handshake".into())),
        }
    }
}
