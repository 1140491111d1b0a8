//! The fast front door for the hottest events: a connection's PUBLISH and acknowledgements in
//! the `protocol` and `trace` classes.
//!
//! Through `tracing`, each of them costs the publish path a dozen formatted, allocated field
//! strings. Here the connection builds a [`PacketRecord`] instead: the packet's raw values
//! (static kind and direction, ids, flags, sizes, and the client id and topic it already holds
//! as shared strings), no formatting and no allocation. It goes on the writer's bounded queue
//! like any event; the writer thread turns it into the very event the `tracing` path makes
//! (same message, fields and order), so segments, text lines, dumps, search and the monitor
//! see no difference. A full queue drops the record and counts it, as it does an event.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;

use fubar_logproto::{Class, Event, EventRef};

use crate::shared::Shared;
use crate::text::{now_us, push_uint};
use crate::writer::Msg;

/// One packet sent or received, in raw values. The event it becomes is the one
/// `packet_log`'s `tracing` macro makes for the same packet: message `packet` and the fields
/// `dir client peer kind [packet_id topic qos retain dup payload_size | packet_id [reason]]
/// size`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketRecord {
    /// `protocol` or `trace`.
    pub class: Class,
    /// When, in microseconds since the Unix epoch (stamped by [`PacketRecord::new`]).
    pub time_us: i64,
    /// `in` or `out`.
    pub dir: &'static str,
    /// The client id (`-` before CONNECT was accepted).
    pub client: Option<Arc<str>>,
    /// The client's address.
    pub peer: SocketAddr,
    /// The packet's kind as the logs name it (`PUBLISH`, `PUBACK`, `PINGREQ`, ...).
    pub kind: &'static str,
    /// What the kind carries.
    pub body: PacketBody,
    /// The packet's size on the wire, fixed header included.
    pub size: u32,
}

/// The values of one packet kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacketBody {
    /// A PUBLISH without MQTT 5.0 properties.
    Publish {
        /// Packet identifier (0 at QoS 0).
        packet_id: u16,
        /// Topic name.
        topic: Arc<str>,
        /// QoS.
        qos: u8,
        /// RETAIN flag.
        retain: bool,
        /// DUP flag.
        dup: bool,
        /// Payload bytes.
        payload_size: u32,
    },
    /// PUBACK, PUBREC, PUBREL or PUBCOMP without MQTT 5.0 properties; `reason` only on an
    /// MQTT 5.0 connection.
    Ack {
        /// Packet identifier.
        packet_id: u16,
        /// The MQTT 5.0 reason code.
        reason: Option<u8>,
    },
    /// PINGREQ or PINGRESP.
    Ping,
}

impl PacketRecord {
    /// A record stamped now.
    pub fn new(
        class: Class,
        dir: &'static str,
        client: Option<Arc<str>>,
        peer: SocketAddr,
        kind: &'static str,
        body: PacketBody,
        size: usize,
    ) -> Self {
        Self {
            class,
            time_us: now_us(),
            dir,
            client,
            peer,
            kind,
            body,
            size: u32::try_from(size).unwrap_or(u32::MAX),
        }
    }

    /// The event the `tracing` path makes for this packet, borrowed: numbers are formatted
    /// into `values` (cleared first), strings are the record's own. No allocation but the
    /// list of fields.
    pub(crate) fn view<'a>(
        &'a self,
        node: &'a str,
        epoch: u64,
        seq: u64,
        values: &'a mut String,
    ) -> EventRef<'a> {
        values.clear();
        // Each formatted value's end in `values`, in field order.
        let mut ends: [usize; 8] = [0; 8];
        let mut n = 0;
        let mut end = |values: &String| {
            ends[n] = values.len();
            n += 1;
        };
        push_peer(values, self.peer);
        end(values);
        match &self.body {
            PacketBody::Publish {
                packet_id,
                qos,
                retain,
                dup,
                payload_size,
                ..
            } => {
                for number in [u64::from(*packet_id), u64::from(*qos)] {
                    push_uint(values, number);
                    end(values);
                }
                for flag in [*retain, *dup] {
                    values.push_str(if flag { "true" } else { "false" });
                    end(values);
                }
                push_uint(values, u64::from(*payload_size));
                end(values);
            }
            PacketBody::Ack { packet_id, reason } => {
                push_uint(values, u64::from(*packet_id));
                end(values);
                if let Some(code) = reason {
                    let _ = write!(values, "{:#04x}", code);
                    end(values);
                }
            }
            PacketBody::Ping => {}
        }
        push_uint(values, u64::from(self.size));
        end(values);
        let values: &'a str = values;
        let mut i = 0;
        let mut next = move || {
            let start = if i == 0 { 0 } else { ends[i - 1] };
            let end = ends[i];
            i += 1;
            &values[start..end]
        };
        let mut fields: Vec<(&'a str, &'a str)> = Vec::with_capacity(12);
        fields.push(("dir", self.dir));
        fields.push(("client", self.client.as_deref().unwrap_or("-")));
        fields.push(("peer", next()));
        fields.push(("kind", self.kind));
        match &self.body {
            PacketBody::Publish { topic, .. } => {
                fields.push(("packet_id", next()));
                fields.push(("topic", topic));
                fields.push(("qos", next()));
                fields.push(("retain", next()));
                fields.push(("dup", next()));
                fields.push(("payload_size", next()));
            }
            PacketBody::Ack { reason, .. } => {
                fields.push(("packet_id", next()));
                if reason.is_some() {
                    fields.push(("reason", next()));
                }
            }
            PacketBody::Ping => {}
        }
        fields.push(("size", next()));
        EventRef {
            node,
            epoch,
            seq,
            time_us: self.time_us,
            class: self.class,
            message: "packet",
            fields,
        }
    }

    /// The event the `tracing` path makes for this packet, of this node.
    pub(crate) fn into_event(self, node: &str, epoch: u64) -> Event {
        let mut fields: Vec<(Cow<'static, str>, String)> = Vec::with_capacity(12);
        let mut put = |name: &'static str, value: String| fields.push((Cow::Borrowed(name), value));
        put("dir", self.dir.to_owned());
        put("client", self.client.as_deref().unwrap_or("-").to_owned());
        put("peer", self.peer.to_string());
        put("kind", self.kind.to_owned());
        match self.body {
            PacketBody::Publish {
                packet_id,
                topic,
                qos,
                retain,
                dup,
                payload_size,
            } => {
                put("packet_id", packet_id.to_string());
                put("topic", topic.to_string());
                put("qos", qos.to_string());
                put("retain", retain.to_string());
                put("dup", dup.to_string());
                put("payload_size", payload_size.to_string());
            }
            PacketBody::Ack { packet_id, reason } => {
                put("packet_id", packet_id.to_string());
                if let Some(code) = reason {
                    let mut hex = String::with_capacity(4);
                    let _ = write!(hex, "{code:#04x}");
                    put("reason", hex);
                }
            }
            PacketBody::Ping => {}
        }
        put("size", self.size.to_string());
        Event {
            node: node.to_owned(),
            epoch,
            seq: 0,
            time_us: self.time_us,
            class: self.class,
            message: "packet".to_owned(),
            fields,
        }
    }
}

/// `address:port`, as `SocketAddr`'s `Display` writes it (IPv4 without the formatter).
fn push_peer(out: &mut String, peer: SocketAddr) {
    match peer {
        SocketAddr::V4(v4) => {
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_uint(out, u64::from(octet));
            }
            out.push(':');
            push_uint(out, u64::from(v4.port()));
        }
        SocketAddr::V6(_) => {
            let _ = write!(out, "{peer}");
        }
    }
}

/// Where a connection sends its packet records: the writer's queue. Cheap to clone.
#[derive(Clone)]
pub struct PacketSink {
    pub(crate) shared: Arc<Shared>,
    pub(crate) tx: SyncSender<Msg>,
}

impl std::fmt::Debug for PacketSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketSink")
            .field("node", &self.shared.node)
            .finish_non_exhaustive()
    }
}

impl PacketSink {
    /// Whether `class` is recorded (one atomic load): build no record otherwise.
    pub fn wants(&self, class: Class) -> bool {
        self.shared.is_wanted(class)
    }

    /// Queues the record `build` makes for the writer; on a full queue it is dropped and
    /// counted before it is even built, as an event would be. Never blocks.
    pub fn send_with(&self, class: Class, build: impl FnOnce() -> PacketRecord) {
        if self.shared.is_full() {
            self.shared.record_drop(class);
            return;
        }
        let record = build();
        // Counted before sending, so the writer never takes one that was not counted.
        self.shared.enqueued();
        match self.tx.try_send(Msg::Packet(record)) {
            Ok(()) => {}
            Err(TrySendError::Disconnected(_)) => self.shared.dequeued(),
            Err(TrySendError::Full(_)) => {
                self.shared.dequeued();
                self.shared.record_drop(class);
            }
        }
    }
}
