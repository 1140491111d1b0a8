//! The `protocol` and `packet` log events of a connection: every packet decoded or encoded
//! (with its MQTT 5.0 reason codes and properties), and the raw bytes (hex, capped) when the
//! `packet` class is on.

use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::sync::Arc;

use fubar_logs::{Class, PacketBody, PacketRecord, PacketSink};

use tracing::field::{display, DisplayValue};

use super::retained::RetainChange;
use crate::mqtt::packet::{
    FilterOptions, Packet, Properties, ProtocolVersion, ReasonCode, RetainHandling, SubAckCode,
};
use crate::mqtt::properties_text::quoted;
use crate::mqtt::redact;

/// Most raw bytes shown in one `packet` event.
const HEX_CAP: usize = 64;

/// One packet of a connection, as its log events need it.
pub(crate) struct Logged<'a> {
    /// The writer's fast path, when the node has a log engine.
    pub(crate) sink: Option<&'a PacketSink>,
    /// The client id, once its CONNECT was accepted.
    pub(crate) client: Option<&'a Arc<str>>,
    /// The client's address.
    pub(crate) peer: SocketAddr,
    /// The connection's protocol version.
    pub(crate) version: ProtocolVersion,
    /// Whether the client is followed in the `trace` class.
    pub(crate) traced: bool,
}

/// A packet of `size` bytes received.
pub(crate) fn received(at: &Logged<'_>, packet: &Packet, size: usize) {
    log("in", at, packet, size);
}

/// A packet of `size` bytes sent.
pub(crate) fn sent(at: &Logged<'_>, packet: &Packet, size: usize) {
    log("out", at, packet, size);
}

/// Whether a PUBLISH sent now would be recorded nowhere (neither class open for it): the
/// sender may then skip building the packet the record is made from.
pub(crate) fn quiet(at: &Logged<'_>) -> bool {
    match at.sink {
        Some(sink) => !(sink.wants(Class::Protocol) || (at.traced && sink.wants(Class::Trace))),
        None => !at.traced && !tracing::enabled!(target: "protocol", tracing::Level::DEBUG),
    }
}

/// Whether the fast path carries `packet`: PUBLISH, its acknowledgements and pings, without
/// MQTT 5.0 properties.
fn fast(packet: &Packet, v5: bool) -> bool {
    match packet {
        Packet::Publish(p) => !v5 || p.properties.is_empty(),
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            !v5 || a.properties.is_empty()
        }
        Packet::PingReq | Packet::PingResp => true,
        _ => false,
    }
}

/// The record of a packet the fast path carries (PUBLISH, its acknowledgements and pings,
/// without MQTT 5.0 properties), or `None` for the rest, which `tracing` carries.
fn fast_body(packet: &Packet, v5: bool) -> Option<PacketBody> {
    match packet {
        Packet::Publish(p) if !v5 || p.properties.is_empty() => Some(PacketBody::Publish {
            packet_id: p.packet_id,
            topic: p.topic.clone(),
            qos: p.qos as u8,
            retain: p.retain,
            dup: p.dup,
            payload_size: u32::try_from(p.payload.len()).unwrap_or(u32::MAX),
        }),
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a)
            if !v5 || a.properties.is_empty() =>
        {
            Some(PacketBody::Ack {
                packet_id: a.packet_id,
                reason: v5.then_some(a.reason as u8),
            })
        }
        Packet::PingReq | Packet::PingResp => Some(PacketBody::Ping),
        _ => None,
    }
}

/// Sends the fast path's records of `packet`; false when it is not a fast-path packet.
fn log_fast(dir: &'static str, at: &Logged<'_>, packet: &Packet, size: usize) -> bool {
    let Some(sink) = at.sink else {
        return false;
    };
    let protocol = sink.wants(Class::Protocol);
    let trace = at.traced && sink.wants(Class::Trace);
    if !protocol && !trace {
        // Nothing to record (`tracing` would record nothing either).
        return matches!(
            packet,
            Packet::Publish(_)
                | Packet::PubAck(_)
                | Packet::PubRec(_)
                | Packet::PubRel(_)
                | Packet::PubComp(_)
                | Packet::PingReq
                | Packet::PingResp
        );
    }
    let v5 = at.version.is_v5();
    if !fast(packet, v5) {
        return false;
    }
    let record = |class| {
        move || {
            let body = fast_body(packet, v5).unwrap_or(PacketBody::Ping);
            PacketRecord::new(
                class,
                dir,
                at.client.cloned(),
                at.peer,
                packet.kind(),
                body,
                size,
            )
        }
    };
    if protocol {
        sink.send_with(Class::Protocol, record(Class::Protocol));
    }
    if trace {
        sink.send_with(Class::Trace, record(Class::Trace));
    }
    true
}

/// One decoded-packet event in the class `$target` (a literal: tracing targets are static).
///
/// For an MQTT 5.0 connection the event also carries the packet's reason code(s) as hex
/// (`reason=0x8e`, `reasons=0x00,0x80` for SUBACK and UNSUBACK) and its `properties` (and a
/// CONNECT's `will_properties`) when any is set. They are `Display` wrappers, so nothing is
/// formatted unless the event is recorded; a 3.1/3.1.1 event has the fields it always had.
macro_rules! packet_event {
    ($target:literal, $dir:expr, $client:expr, $peer:expr, $v5:expr, $packet:expr, $size:expr) => {{
        let (dir, client, peer, v5, size) = ($dir, $client, $peer, $v5, $size);
        let kind = $packet.kind();
        let props = |p| props_field(v5, p);
        let reason = |r: ReasonCode| v5.then(|| display(Hex(r as u8)));
        match $packet {
            Packet::Publish(p) => tracing::debug!(target: $target, dir, client, %peer, kind,
                packet_id = p.packet_id, topic = %p.topic, qos = p.qos as u8, retain = p.retain,
                dup = p.dup, payload_size = p.payload.len(), properties = props(&p.properties),
                size, "packet"),
            Packet::Connect(c) => tracing::debug!(target: $target, dir, client, %peer, kind,
                protocol = %c.protocol, client_id = %c.client_id, clean_session = c.clean_session,
                keep_alive = c.keep_alive, will = c.will.is_some(),
                user = c.username.as_deref().unwrap_or(""), properties = props(&c.properties),
                will_properties = c.will.as_ref().and_then(|w| props(&w.properties)),
                size, "packet"),
            Packet::ConnAck(a) => tracing::debug!(target: $target, dir, client, %peer, kind,
                code = (!v5).then(|| a.code.connect_return_code() as u8), reason = reason(a.code),
                session_present = a.session_present, properties = props(&a.properties), size,
                "packet"),
            Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
                tracing::debug!(target: $target, dir, client, %peer, kind,
                    packet_id = a.packet_id, reason = reason(a.reason),
                    properties = props(&a.properties), size, "packet")
            }
            Packet::Subscribe(s) => tracing::debug!(target: $target, dir, client, %peer, kind,
                packet_id = s.packet_id, filters = %Filters(&s.filters),
                properties = props(&s.properties), size, "packet"),
            Packet::SubAck(s) => tracing::debug!(target: $target, dir, client, %peer, kind,
                packet_id = s.packet_id, codes = (!v5).then(|| tracing::field::debug(&s.codes)),
                reasons = v5.then(|| display(SubAckReasons(&s.codes))),
                properties = props(&s.properties), size, "packet"),
            Packet::Unsubscribe(u) => tracing::debug!(target: $target, dir, client, %peer, kind,
                packet_id = u.packet_id, filters = ?u.filters, properties = props(&u.properties),
                size, "packet"),
            Packet::UnsubAck(u) => tracing::debug!(target: $target, dir, client, %peer, kind,
                packet_id = u.packet_id, reasons = v5.then(|| display(Reasons(&u.reasons))),
                properties = props(&u.properties), size, "packet"),
            Packet::Disconnect(d) => tracing::debug!(target: $target, dir, client, %peer, kind,
                reason = reason(d.reason), properties = props(&d.properties), size, "packet"),
            Packet::Auth(a) => tracing::debug!(target: $target, dir, client, %peer, kind,
                reason = reason(a.reason), properties = props(&a.properties), size, "packet"),
            other => tracing::debug!(target: $target, dir, client, %peer, kind,
                packet_id = other.packet_id(), size, "packet"),
        }
    }};
}

fn log(dir: &'static str, at: &Logged<'_>, packet: &Packet, size: usize) {
    if log_fast(dir, at, packet, size) {
        return;
    }
    let (peer, traced) = (at.peer, at.traced);
    let client = at.client.map_or("-", |c| &**c);
    let v5 = at.version.is_v5();
    if tracing::enabled!(target: "protocol", tracing::Level::DEBUG) {
        packet_event!("protocol", dir, client, peer, v5, packet, size);
    }
    if traced {
        packet_event!("trace", dir, client, peer, v5, packet, size);
    }
}

/// A reason code as the logs show it: `0x8e`.
struct Hex(u8);

impl fmt::Display for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#04x}", self.0)
    }
}

/// UNSUBACK's reason codes: `0x00,0x11`.
struct Reasons<'a>(&'a [ReasonCode]);

impl fmt::Display for Reasons<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        hex_list(f, self.0.iter().map(|&r| r as u8))
    }
}

/// SUBACK's codes as the MQTT 5.0 reason codes they are sent as: `0x01,0x80`.
struct SubAckReasons<'a>(&'a [SubAckCode]);

impl fmt::Display for SubAckReasons<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        hex_list(
            f,
            self.0.iter().map(|c| match *c {
                SubAckCode::Granted(qos) => qos as u8,
                SubAckCode::Failure => ReasonCode::UnspecifiedError as u8,
                SubAckCode::Refused(r) => r as u8,
            }),
        )
    }
}

fn hex_list(f: &mut fmt::Formatter<'_>, codes: impl Iterator<Item = u8>) -> fmt::Result {
    for (i, code) in codes.enumerate() {
        if i > 0 {
            f.write_str(",")?;
        }
        write!(f, "{}", Hex(code))?;
    }
    Ok(())
}

/// The `properties` field of an MQTT 5.0 packet: absent when none is set (the text form is in
/// `mqtt::properties_text`).
fn props_field(v5: bool, p: &Properties) -> Option<DisplayValue<&Properties>> {
    (v5 && !p.is_empty()).then(|| display(p))
}

/// SUBSCRIBE's filters, each with its options: `'a/#' (QoS 1, No Local, Retain As Published,
/// Retain Handling 2), 'b' (QoS 0)`; the MQTT 5.0 options only when set (section 3.8.3.1).
struct Filters<'a>(&'a [(String, FilterOptions)]);

impl fmt::Display for Filters<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (filter, o)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            quoted(f, filter)?;
            write!(f, " (QoS {}", o.qos as u8)?;
            if o.no_local {
                f.write_str(", No Local")?;
            }
            if o.retain_as_published {
                f.write_str(", Retain As Published")?;
            }
            if o.retain_handling != RetainHandling::OnSubscribe {
                write!(f, ", Retain Handling {}", o.retain_handling as u8)?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// Whether the `packet` class records raw bytes (checked before a frame's head is copied).
pub(crate) fn bytes_enabled() -> bool {
    tracing::enabled!(target: "packet", tracing::Level::TRACE)
}

/// The first bytes of what is in `buf`, kept for [`received_bytes`] when the `packet` class
/// is on (the decoder consumes the frame).
pub(crate) fn head_of(buf: &[u8]) -> Option<Vec<u8>> {
    bytes_enabled().then(|| buf[..buf.len().min(HEX_CAP)].to_vec())
}

/// The raw bytes of one received frame of `size` bytes (`head`: its first bytes), with a
/// CONNECT's password and MQTT 5.0 authentication data masked (`mqtt::redact`); `packet` is
/// the decoded frame, `None` when it did not decode.
pub(crate) fn received_bytes(
    peer: SocketAddr,
    head: Vec<u8>,
    size: usize,
    packet: Option<&Packet>,
) {
    let password = match packet {
        Some(Packet::Connect(c)) => c.password.as_ref().map(|p| p.len()),
        _ => None,
    };
    let (head, redacted) = redact::loggable_head(head, size, packet.is_some(), password);
    raw("in", peer, &head, size, redacted);
}

/// The raw bytes of one encoded frame sent (the broker sends no secret).
pub(crate) fn sent_bytes(peer: SocketAddr, frame: &[u8]) {
    if bytes_enabled() {
        raw(
            "out",
            peer,
            &frame[..frame.len().min(HEX_CAP)],
            frame.len(),
            false,
        );
    }
}

fn raw(dir: &str, peer: SocketAddr, head: &[u8], size: usize, redacted: bool) {
    let mut hex = String::with_capacity(2 * head.len());
    for b in head {
        let _ = write!(hex, "{b:02x}");
    }
    tracing::trace!(target: "packet", dir, %peer, size, hex, truncated = size > head.len(), redacted);
}

/// A retained message set or cleared by a publish.
pub(crate) fn retained(client: Option<&str>, topic: &str, change: RetainChange) {
    let client = client.unwrap_or("-");
    match change {
        RetainChange::Set => {
            tracing::info!(target: "resource", client, topic, "retained message set")
        }
        RetainChange::Cleared => {
            tracing::info!(target: "resource", client, topic, "retained message cleared")
        }
        // The refusal is a `warning`, where the publisher's peer is known (broker/limits.rs).
        RetainChange::Unchanged | RetainChange::Refused(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::packet::{Ack, Publish, QoS};
    use fubar_logs::{Event, LogConfig, Redirect};
    use tracing_subscriber::layer::SubscriberExt as _;

    fn publish(qos: QoS, props: bool) -> Packet {
        let mut properties = Properties::default();
        if props {
            properties.user_properties.push(("k".into(), "v".into()));
        }
        Packet::Publish(Publish {
            dup: qos != QoS::AtMostOnce,
            qos,
            retain: true,
            topic: "a/b c".into(),
            packet_id: if qos == QoS::AtMostOnce { 0 } else { 7 },
            payload: bytes::Bytes::from_static(b"hello"),
            properties,
        })
    }

    fn ack(reason: ReasonCode, props: bool) -> Ack {
        let mut a = Ack::new(9);
        a.reason = reason;
        if props {
            a.properties.reason_string = Some("why".into());
        }
        a
    }

    /// Every packet of `cases`, logged once through `tracing` and once through the sink, for
    /// a traced and an untraced client of each version: the events of each pair must be the
    /// same (message and fields, in order).
    #[test]
    fn the_fast_path_records_what_tracing_records() {
        let cases = vec![
            publish(QoS::AtMostOnce, false),
            publish(QoS::AtLeastOnce, false),
            publish(QoS::ExactlyOnce, true),
            Packet::PubAck(ack(ReasonCode::Success, false)),
            Packet::PubRec(ack(ReasonCode::NoMatchingSubscribers, false)),
            Packet::PubRel(ack(ReasonCode::Success, true)),
            Packet::PubComp(ack(ReasonCode::PacketIdentifierNotFound, false)),
            Packet::PingReq,
            Packet::PingResp,
            // The kinds `tracing` carries on both paths: each still makes one event.
            Packet::Connect(Box::new(crate::mqtt::packet::Connect {
                protocol: ProtocolVersion::V311,
                clean_session: true,
                keep_alive: 30,
                client_id: "c1".into(),
                will: None,
                username: Some("u".into()),
                password: Some(bytes::Bytes::from_static(b"secret")),
                properties: Properties::default(),
            })),
            Packet::ConnAck(crate::mqtt::packet::ConnAck::new(
                false,
                ReasonCode::Success,
            )),
            Packet::Subscribe(crate::mqtt::packet::Subscribe {
                packet_id: 3,
                filters: vec![("a/#".into(), FilterOptions::from(QoS::AtLeastOnce))],
                properties: Properties::default(),
            }),
            Packet::SubAck(crate::mqtt::packet::SubAck {
                packet_id: 3,
                codes: vec![SubAckCode::Granted(QoS::AtLeastOnce)],
                properties: Properties::default(),
            }),
            Packet::Unsubscribe(crate::mqtt::packet::Unsubscribe {
                packet_id: 4,
                filters: vec!["a/#".into()],
                properties: Properties::default(),
            }),
            Packet::UnsubAck(crate::mqtt::packet::UnsubAck {
                packet_id: 4,
                reasons: vec![ReasonCode::Success],
                properties: Properties::default(),
            }),
            Packet::Disconnect(crate::mqtt::packet::Disconnect::default()),
        ];
        // Those the fast path carries, on an MQTT 5.0 connection: all but the two with
        // properties and the seven `tracing` kinds.
        let fast_in_v5 = cases.len() - 2 - 7;
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            node: "n@h".into(),
            epoch: 1,
            dir: dir.path().to_path_buf(),
            max_bytes: 1 << 20,
            max_files: 4,
            classes: vec![
                (Class::Protocol, Redirect::None),
                (Class::Trace, Redirect::None),
            ],
            channel_capacity: 4096,
            flush_interval: std::time::Duration::from_secs(3600),
            max_events_per_sec: 0,
        };
        let (handle, layer) = fubar_logs::start(config).unwrap();
        let sink = handle.packet_sink();
        let client: Arc<str> = "c1".into();
        let peer: SocketAddr = "127.0.0.1:1883".parse().unwrap();
        let subscriber = tracing_subscriber::registry().with(layer);
        let mut pairs = 0;
        tracing::subscriber::with_default(subscriber, || {
            for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
                for traced in [false, true] {
                    for packet in &cases {
                        for sink in [None, Some(&sink)] {
                            let at = Logged {
                                sink,
                                client: Some(&client),
                                peer,
                                version,
                                traced,
                            };
                            received(&at, packet, 21);
                            sent(&at, packet, 22);
                        }
                        pairs += 2;
                    }
                }
            }
        });
        // Without a `tracing` subscriber only the fast path records.
        let at = Logged {
            sink: Some(&sink),
            client: Some(&client),
            peer,
            version: ProtocolVersion::V5,
            traced: false,
        };
        for packet in &cases {
            received(&at, packet, 21);
        }
        handle.flush();
        let read = |class| -> Vec<Event> {
            let mut files: Vec<_> = std::fs::read_dir(fubar_logs::class_dir(dir.path(), class))
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            files.sort();
            files
                .iter()
                .flat_map(|f| fubar_logs::decode_records(&std::fs::read(f).unwrap()).0)
                .collect()
        };
        let mut protocol = read(Class::Protocol);
        assert_eq!(
            protocol.len(),
            2 * pairs + fast_in_v5,
            "one event per packet and path"
        );
        protocol.truncate(2 * pairs);
        let by_path = |events: &[Event]| {
            // Each packet's events: through tracing (in, out), then through the sink (in, out).
            for four in events.chunks(4) {
                for (tracing, fast) in [(&four[0], &four[2]), (&four[1], &four[3])] {
                    assert_eq!(tracing.message, fast.message);
                    assert_eq!(tracing.fields, fast.fields, "{:?}", tracing.fields);
                }
            }
        };
        by_path(&protocol);
        let trace = read(Class::Trace);
        assert_eq!(trace.len(), pairs, "traced clients only");
        by_path(&trace);
        handle.shutdown();
    }

    #[test]
    fn reason_codes_show_as_hex() {
        assert_eq!(Hex(ReasonCode::SessionTakenOver as u8).to_string(), "0x8e");
        assert_eq!(Hex(0).to_string(), "0x00");
        assert_eq!(
            Reasons(&[ReasonCode::Success, ReasonCode::NoSubscriptionExisted]).to_string(),
            "0x00,0x11"
        );
        assert_eq!(Reasons(&[]).to_string(), "");
    }

    #[test]
    fn suback_codes_show_as_the_v5_reason_codes_sent() {
        let codes = [
            SubAckCode::Granted(QoS::AtMostOnce),
            SubAckCode::Granted(QoS::ExactlyOnce),
            SubAckCode::Failure,
            SubAckCode::Refused(ReasonCode::NotAuthorized),
        ];
        assert_eq!(SubAckReasons(&codes).to_string(), "0x00,0x02,0x80,0x87");
    }

    #[test]
    fn subscribe_filters_show_their_options_when_set() {
        let filters = vec![
            ("a/#".to_owned(), FilterOptions::from(QoS::AtLeastOnce)),
            (
                "b c".to_owned(),
                FilterOptions {
                    qos: QoS::AtMostOnce,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: RetainHandling::Never,
                },
            ),
            (
                "it's".to_owned(),
                FilterOptions {
                    retain_handling: RetainHandling::OnNewSubscription,
                    ..FilterOptions::default()
                },
            ),
        ];
        assert_eq!(
            Filters(&filters).to_string(),
            r"'a/#' (QoS 1), 'b c' (QoS 0, No Local, Retain As Published, Retain Handling 2), 'it\'s' (QoS 0, Retain Handling 1)"
        );
    }

    #[test]
    fn properties_field_only_for_v5_and_only_when_set() {
        let empty = Properties::default();
        let set = Properties {
            topic_alias: Some(1),
            ..Properties::default()
        };
        assert!(props_field(true, &empty).is_none());
        assert!(props_field(false, &set).is_none());
        assert_eq!(
            format!("{:?}", props_field(true, &set).expect("set")),
            "Topic Alias=1"
        );
    }
}
