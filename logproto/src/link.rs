//! The log link between a node and the monitor: one QUIC bidirectional stream per connection,
//! opened by the node, carrying length-prefixed postcard frames (`frame`).
//!
//! ```text
//! node (client)                            server (monitor, or any member)
//!  | Hello { nonce: cn }                     |  first frame, at most MAX_HELLO_FRAME bytes
//!  |---------------------------------------->|
//!  |  Challenge { nonce: sn, mac: server }   |  server = HMAC(cookie, "server" binding cn sn)
//!  |<----------------------------------------|
//!  client: with the cookie, checks `mac` before sending anything else (a server without the
//!  cookie, or a man in the middle, learns nothing, not even the client's name); with only a
//!  cluster CA, the TLS layer has checked the server's node certificate instead.
//!  | Proof { node, epoch, mac: client }      |  client = HMAC(cookie, "client" binding sn cn node epoch)
//!  |---------------------------------------->|  at most MAX_HELLO_FRAME bytes
//!  |    Welcome {..} | Refused { reason }    |  member: the proof holds, or a node certificate
//!  |<----------------------------------------|  of the cluster CA names a known member
//!  |    Collect { class, on } (any time)     |
//!  |<----------------------------------------|
//!  | Batch { epoch, from_seq, to_seq, .. }   |  pipelined, oldest first
//!  |---------------------------------------->|  dedup, write to segments, flush
//!  |          Ack { epoch, upto_seq }        |  everything <= upto_seq of that epoch is durable
//!  |<----------------------------------------|
//! ```
//!
//! `binding` is the TLS exporter of the session: each side proves the cookie for *this*
//! session only, so a relay between two sessions has nothing to replay. The two proofs carry
//! different labels, so one side's proof is never valid as the other's. The server sends
//! nothing but its proof before the client's proof holds; the client sends nothing but its
//! proof before the server's holds.
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
pub const LOG_ALPN: &[u8] = b"fubar-log/2";

/// ALPN of the remote admin link on the same endpoint: the same `Hello` and membership proof
/// (the `node` of its `Proof` names the client, e.g. `ctl@HOST`, and its epoch is 0), then,
/// on the same stream, one `admin::AdminRequest` frame from the client and `AdminResponse`
/// frames back: one for an ordinary request, a stream of `Event` / `Missed` for `LogTail`
/// until the client goes away. The monitor finishes the stream after the last reply.
pub const ADMIN_ALPN: &[u8] = b"fubar-admin/2";

/// ALPN of a cluster peer link on the same endpoint: the same `Hello` and membership proof,
/// then the handshake stream is finished and the dialer opens one bidirectional stream per
/// request (Raft messages, joins, proposals) or a long-lived one for forwarded messages. The
/// node crate defines those frames.
/// `/3`: a takeover carries the connecting user and may be refused (client ids belong to
/// their user), and a moved session its owner.
pub const PEER_ALPN: &[u8] = b"fubar-cluster/4";

/// Largest admin request frame body the monitor reads; a larger one closes that connection.
/// 4 MiB: `fubar ctl acl topic import` sends a whole mosquitto acl_file (about 100,000 rules);
/// only an admitted member or operator gets this far.
pub const MAX_ADMIN_REQUEST: usize = 4 << 20;

/// Largest frame read before the peer has proven membership (`Hello`, `Proof`), bytes: what
/// they need with a node name of [`MAX_NODE_NAME`] bytes, and no more. The dialing side
/// reads the server's frames (`Challenge`, `Refused`, `Welcome`) with the same limit until
/// it is welcomed.
pub const MAX_HELLO_FRAME: usize = 256;

/// Longest node name a `Proof` may carry, bytes.
pub const MAX_NODE_NAME: usize = 160;

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
    /// First frame: the client's challenge to the server.
    Hello {
        /// Fresh random bytes.
        nonce: [u8; NONCE_LEN],
    },
    /// The answer to a `Challenge`: who the client is, and its cookie proof.
    Proof {
        /// The node's name, `name@host` (a remote admin client's is `ctl@host`).
        node: String,
        /// The node's current boot epoch (0 for an admin client).
        epoch: u64,
        /// HMAC-SHA256 tag proving the client holds the cookie ([`ProofRole::Client`]); none
        /// from a client proving itself with a node certificate only.
        mac: Option<[u8; MAC_LEN]>,
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
    /// The server's proof of the cookie for the client's nonce, and its own challenge: answer
    /// with `Proof`.
    Challenge {
        /// Fresh random bytes.
        nonce: [u8; NONCE_LEN],
        /// HMAC-SHA256 tag ([`ProofRole::Server`]); none from a server without a cookie.
        mac: Option<[u8; MAC_LEN]>,
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

/// Which side of a link a cookie proof is for: the label makes one side's proof worthless as
/// the other's (a server cannot reflect a client's proof back at it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofRole {
    /// The dialing side (its `Proof`).
    Client,
    /// The accepting side (its `Challenge`).
    Server,
}

/// The bytes a cookie proof is computed over: `label || binding || server nonce || client
/// nonce || len(node) || node || epoch` (a server's proof has an empty node and epoch 0).
///
/// The node name is length-prefixed (u32, big-endian) so that no two (node, epoch) pairs give
/// the same bytes; the epoch is big-endian.
pub fn proof_input(
    role: ProofRole,
    binding: &[u8],
    server_nonce: &[u8; NONCE_LEN],
    client_nonce: &[u8; NONCE_LEN],
    node: &str,
    epoch: u64,
) -> Vec<u8> {
    let label: &[u8] = match role {
        ProofRole::Client => b"fubar cookie proof v2: client\0",
        ProofRole::Server => b"fubar cookie proof v2: server\0",
    };
    let mut out =
        Vec::with_capacity(label.len() + binding.len() + 2 * NONCE_LEN + 4 + node.len() + 8);
    out.extend_from_slice(label);
    out.extend_from_slice(binding);
    out.extend_from_slice(server_nonce);
    out.extend_from_slice(client_nonce);
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
                nonce: [1; NONCE_LEN],
            },
            NodeMsg::Proof {
                node: "n1@h".into(),
                epoch: 7,
                mac: Some([3; MAC_LEN]),
            },
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
                mac: Some([8; MAC_LEN]),
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
    fn proof_input_separates_role_node_epoch_and_nonces() {
        let (a, b) = ([0; NONCE_LEN], [1; NONCE_LEN]);
        let c = ProofRole::Client;
        let p = |role, bind: &[u8], s, cl, node, epoch| proof_input(role, bind, s, cl, node, epoch);
        assert_ne!(p(c, b"b", &a, &b, "ab", 1), p(c, b"b", &a, &b, "a", 1));
        assert_ne!(p(c, b"b", &a, &b, "a", 1), p(c, b"b", &a, &b, "a", 2));
        assert_ne!(p(c, b"b", &a, &b, "a", 1), p(c, b"c", &a, &b, "a", 1));
        assert_ne!(p(c, b"b", &a, &b, "a", 1), p(c, b"b", &b, &a, "a", 1));
        assert_ne!(
            p(c, b"b", &a, &b, "", 0),
            p(ProofRole::Server, b"b", &a, &b, "", 0)
        );
    }

    #[test]
    fn a_hello_and_a_proof_with_the_longest_name_fit_the_pre_proof_limit() {
        let hello = encode(&NodeMsg::Hello {
            nonce: [0xff; NONCE_LEN],
        })
        .unwrap();
        assert!(hello.len() - 4 <= MAX_HELLO_FRAME);
        let proof = encode(&NodeMsg::Proof {
            node: "n".repeat(MAX_NODE_NAME),
            epoch: u64::MAX,
            mac: Some([0xff; MAC_LEN]),
        })
        .unwrap();
        assert!(proof.len() - 4 <= MAX_HELLO_FRAME, "{}", proof.len());
        // And the server's messages before the dialing side is welcomed.
        for msg in [
            MonitorMsg::Challenge {
                nonce: [0xff; NONCE_LEN],
                mac: Some([0xff; MAC_LEN]),
            },
            MonitorMsg::Refused {
                reason: REFUSED.into(),
            },
            MonitorMsg::Welcome {
                max_frame: u32::MAX,
                max_batch_events: u32::MAX,
            },
        ] {
            let frame = encode(&msg).unwrap();
            assert!(frame.len() - 4 <= MAX_HELLO_FRAME, "{msg:?}");
        }
    }
}
