//! The client side of the membership handshake, shared by a node's log link (the shipper),
//! a cluster peer link and a remote admin client: `Hello` with a challenge, the server's
//! proof checked, then the client's `Proof`, then `Welcome` or `Refused`. The server's side
//! is `server::connection::admit`, the same for every ALPN.

use fubar_logproto::link::{
    MonitorMsg, NodeMsg, BINDING_LABEL, BINDING_LEN, MAX_HELLO_FRAME, REFUSED,
};
use quinn::{Connection, RecvStream, SendStream};

use crate::cookie::{self, Cookie};
use crate::wire::{write_frame, FrameReader};
use crate::MonitorError;

/// Largest frame read from the server once it has welcomed this side (acks and `Collect`
/// orders are small; an admin client raises it for replies).
const MAX_MONITOR_FRAME: usize = 64 << 10;

/// Longest refusal text shown from a server, characters.
pub(crate) const MAX_REFUSAL_TEXT: usize = 200;

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
    // Until the server has welcomed this side, its frames are no larger than a handshake
    // message: a server that is no member (or has not proven the cookie yet) cannot make this
    // side buffer, decode or log more.
    let mut reader = FrameReader::new(MAX_HELLO_FRAME);
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
        Some(MonitorMsg::Refused { reason }) => {
            return Err(MonitorError::Refused(refusal_text(&reason)))
        }
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
        }) => {
            reader.set_max(MAX_MONITOR_FRAME);
            Ok(Joined {
                send,
                recv,
                reader,
                max_frame,
                max_batch_events,
            })
        }
        Some(MonitorMsg::Refused { reason }) => Err(MonitorError::Refused(refusal_text(&reason))),
        Some(other) => Err(MonitorError::Protocol(format!(
            "unexpected {} before Welcome",
            kind(&other)
        ))),
        None => Err(MonitorError::Stream("closed during the handshake".into())),
    }
}

/// A server's refusal text as this side shows it (in errors, warnings, on a terminal): ours
/// as is; any other cut to `MAX_REFUSAL_TEXT` characters of printable ASCII (anything else
/// becomes `?`), since a server that is no member may say anything.
pub(crate) fn refusal_text(reason: &str) -> String {
    if reason == REFUSED {
        return REFUSED.to_owned();
    }
    let mut text: String = reason
        .chars()
        .take(MAX_REFUSAL_TEXT)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if reason.chars().nth(MAX_REFUSAL_TEXT).is_some() {
        text.push_str("...");
    }
    format!("the server said: {text}")
}

/// A message's name, for errors (never its contents: they come from an unproven peer).
pub(crate) fn kind(msg: &MonitorMsg) -> &'static str {
    match msg {
        MonitorMsg::Challenge { .. } => "Challenge",
        MonitorMsg::Welcome { .. } => "Welcome",
        MonitorMsg::Ack { .. } => "Ack",
        MonitorMsg::Refused { .. } => "Refused",
        MonitorMsg::Collect { .. } => "Collect",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_servers_refusal_text_is_cut_short_and_printable_ascii() {
        assert_eq!(refusal_text(REFUSED), REFUSED);
        let hostile = format!("\u{1b}[2J\u{1b}[31mrm -rf\r\n{}é", "x".repeat(1000));
        let shown = refusal_text(&hostile);
        assert!(shown.len() <= MAX_REFUSAL_TEXT + 40, "{}", shown.len());
        assert!(
            shown.chars().all(|c| c.is_ascii_graphic() || c == ' '),
            "{shown}"
        );
        assert!(
            shown.starts_with("the server said: ?[2J?[31mrm -rf??x"),
            "{shown}"
        );
        assert!(shown.ends_with("..."), "{shown}");
    }
}
