//! The log link between a node and the monitor: one QUIC bidirectional stream per connection,
//! opened by the node, carrying length-prefixed postcard frames (`frame`).
//!
//! ```text
//! node                                     monitor
//!  | Hello { node, epoch }                   |
//!  |---------------------------------------->|  certificate CN == node? -> Welcome
//!  |            Challenge { nonce }          |  else, with a cookie configured:
//!  |<----------------------------------------|
//!  | Proof { mac }                           |  HMAC-SHA256(cookie, binding || nonce || node || epoch)
//!  |---------------------------------------->|
//!  |    Welcome {..} | Refused { reason }    |  a refusal is generic and ends the connection
//!  |<----------------------------------------|
//!  |    Collect { class, on } (any time)     |
//!  |<----------------------------------------|
//!  | Batch { epoch, from_seq, to_seq, .. }   |  pipelined, oldest first
//!  |---------------------------------------->|  dedup, write to segments, flush
//!  |          Ack { epoch, upto_seq }        |  everything <= upto_seq of that epoch is durable
//!  |<----------------------------------------|
//! ```
//!
//! A batch *covers* the sequence range `from_seq..=to_seq` of one boot epoch of one node: every
//! sequence number in it is either one of its events, inside one of its `lost` ranges (dropped
//! on the node), or an event the node did not ship (its class was not collected). So the monitor
//! can advance a contiguous acknowledgement over gaps and still count losses per node.
//!
//! Every type here is postcard-safe: no untagged enums, no flattening, no skipped fields; field
//! order is the wire format, so new fields go at the end of a new message version (a new ALPN).

use serde::{Deserialize, Serialize};

use crate::{Class, Event};

/// ALPN of the log link, offered by both sides; a peer without it fails the TLS handshake.
pub const LOG_ALPN: &[u8] = b"fubar-log/1";

/// ALPN of the remote admin link on the same endpoint: the same `Hello` and membership proof
/// (the `node` of its `Hello` names the client, e.g. `ctl@HOST`, and its epoch is 0), then,
/// on the same stream, one `admin::AdminRequest` frame from the client and `AdminResponse`
/// frames back: one for an ordinary request, a stream of `Event` / `Missed` for `LogTail`
/// until the client goes away. The monitor finishes the stream after the last reply.
pub const ADMIN_ALPN: &[u8] = b"fubar-admin/1";

/// ALPN of a cluster peer link on the same endpoint: the same `Hello` and membership proof,
/// then the handshake stream is finished and the dialer opens one bidirectional stream per
/// request (Raft messages, joins, proposals) or a long-lived one for forwarded messages. The
/// node crate defines those frames.
pub const PEER_ALPN: &[u8] = b"fubar-cluster/1";

/// Largest admin request frame body the monitor reads; a larger one closes that connection.
pub const MAX_ADMIN_REQUEST: usize = 64 << 10;

/// Length of a challenge nonce, bytes.
pub const NONCE_LEN: usize = 32;

/// Length of a cookie proof (an HMAC-SHA256 tag), bytes.
pub const MAC_LEN: usize = 32;

/// TLS exporter label of the channel binding mixed into a cookie proof: a proof made on one TLS
/// session is worthless on another, so a relay cannot replay it.
pub const BINDING_LABEL: &[u8] = b"EXPORTER-fubar-log-cookie";

/// Length of the channel binding taken from the TLS exporter, bytes.
pub const BINDING_LEN: usize = 32;

/// A frame from a node to the monitor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeMsg {
    /// First frame: who the node says it is.
    Hello {
        /// The node's name, `name@host`.
        node: String,
        /// The node's current boot epoch.
        epoch: u64,
    },
    /// The answer to a `Challenge`: an HMAC-SHA256 tag proving the node holds the cookie.
    Proof {
        /// The tag.
        mac: [u8; MAC_LEN],
    },
    /// Events to record.
    Batch(Batch),
}

/// A run of one node's events of one boot epoch, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// The boot epoch of every event in it.
    pub epoch: u64,
    /// First sequence number the batch accounts for.
    pub from_seq: u64,
    /// Last sequence number the batch accounts for (at least `from_seq`).
    pub to_seq: u64,
    /// The events, by strictly increasing `seq`, all within `from_seq..=to_seq`.
    pub events: Vec<Event>,
    /// Ranges within `from_seq..=to_seq` whose events the node dropped (its spool overflowed),
    /// sorted and disjoint.
    pub lost: Vec<Lost>,
}

/// Events a node dropped before shipping them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lost {
    /// First sequence number of the range.
    pub first: u64,
    /// Last sequence number of the range (inclusive).
    pub last: u64,
    /// How many events were dropped in it (the other numbers were never shipped).
    pub events: u64,
}

/// A frame from the monitor to a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MonitorMsg {
    /// Prove the cookie: answer with `Proof` over this nonce.
    Challenge {
        /// Fresh random bytes.
        nonce: [u8; NONCE_LEN],
    },
    /// The node is a member; batches may follow.
    Welcome {
        /// Largest frame body the monitor reads, bytes: batches must stay under it.
        max_frame: u32,
        /// Most events the monitor takes in one batch.
        max_batch_events: u32,
    },
    /// Everything of `epoch` up to `upto_seq` (inclusive) is in the monitor's segments.
    Ack {
        /// The boot epoch acknowledged.
        epoch: u64,
        /// Highest sequence number accounted for.
        upto_seq: u64,
    },
    /// The peer is not let in; the reason is deliberately generic. The connection ends.
    Refused {
        /// Always the same text for every kind of failure.
        reason: String,
    },
    /// Turn shipping of a class on or off on the node.
    Collect {
        /// The class.
        class: Class,
        /// Ship it (true) or not.
        on: bool,
    },
}

/// The refusal text every non-member gets, whatever failed.
pub const REFUSED: &str = "not a member of this cluster";

/// The bytes a cookie proof is computed over: `binding || nonce || len(node) || node || epoch`.
///
/// The node name is length-prefixed (u32, big-endian) so that no two (node, epoch) pairs give
/// the same bytes; the epoch is big-endian.
pub fn proof_input(binding: &[u8], nonce: &[u8; NONCE_LEN], node: &str, epoch: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(binding.len() + NONCE_LEN + 4 + node.len() + 8);
    out.extend_from_slice(binding);
    out.extend_from_slice(nonce);
    out.extend_from_slice(&u32::try_from(node.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(node.as_bytes());
    out.extend_from_slice(&epoch.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{body_len, decode, encode, MAX_FRAME};

    fn event(seq: u64) -> Event {
        Event {
            node: "n1@h".into(),
            epoch: 7,
            seq,
            time_us: 1,
            class: Class::Access,
            message: "m".into(),
            fields: vec![("client".into(), "c1".into())],
        }
    }

    #[test]
    fn every_message_round_trips_through_a_frame() {
        let node = [
            NodeMsg::Hello {
                node: "n1@h".into(),
                epoch: 7,
            },
            NodeMsg::Proof { mac: [3; MAC_LEN] },
            NodeMsg::Batch(Batch {
                epoch: 7,
                from_seq: 1,
                to_seq: 9,
                events: vec![event(2), event(9)],
                lost: vec![Lost {
                    first: 3,
                    last: 5,
                    events: 2,
                }],
            }),
        ];
        for msg in node {
            let bytes = encode(&msg).unwrap();
            let len = body_len(bytes[..4].try_into().unwrap(), MAX_FRAME).unwrap();
            assert_eq!(decode::<NodeMsg>(&bytes[4..4 + len]).unwrap(), msg);
        }
        let monitor = [
            MonitorMsg::Challenge {
                nonce: [9; NONCE_LEN],
            },
            MonitorMsg::Welcome {
                max_frame: 1,
                max_batch_events: 2,
            },
            MonitorMsg::Ack {
                epoch: 7,
                upto_seq: 9,
            },
            MonitorMsg::Refused {
                reason: REFUSED.into(),
            },
            MonitorMsg::Collect {
                class: Class::Trace,
                on: true,
            },
        ];
        for msg in monitor {
            let bytes = encode(&msg).unwrap();
            assert_eq!(decode::<MonitorMsg>(&bytes[4..]).unwrap(), msg);
        }
        assert!(decode::<NodeMsg>(&[0xff, 0x01]).is_err());
    }

    #[test]
    fn proof_input_separates_node_and_epoch() {
        let n = [0; NONCE_LEN];
        assert_ne!(
            proof_input(b"b", &n, "ab", 1),
            proof_input(b"b", &n, "a", 1)
        );
        assert_ne!(proof_input(b"b", &n, "a", 1), proof_input(b"b", &n, "a", 2));
        assert_ne!(proof_input(b"b", &n, "a", 1), proof_input(b"c", &n, "a", 1));
    }
}
