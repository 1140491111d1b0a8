//! The `protocol` and `packet` log events of a connection: every packet decoded or encoded
//! (with its MQTT 5.0 reason codes and properties), and the raw bytes (hex, capped) when the
//! `packet` class is on.

use std::fmt::{self, Write as _};
use std::net::SocketAddr;

use tracing::field::{display, DisplayValue};

use super::retained::RetainChange;
use crate::mqtt::packet::{
    FilterOptions, Packet, Properties, ProtocolVersion, ReasonCode, RetainHandling, SubAckCode,
};
use crate::mqtt::properties_text::quoted;
use crate::mqtt::redact;

/// Most raw bytes shown in one `packet` event.
const HEX_CAP: usize = 64;

/// A packet received from a client of protocol `version`; `traced` also puts it in the `trace`
/// class.
pub(crate) fn received(
    client: Option<&str>,
    peer: SocketAddr,
    version: ProtocolVersion,
    packet: &Packet,
    size: usize,
    traced: bool,
) {
    log("in", client, peer, version, packet, size, traced);
}

/// A packet sent to a client of protocol `version`; `traced` also puts it in the `trace`
/// class.
pub(crate) fn sent(
    client: Option<&str>,
    peer: SocketAddr,
    version: ProtocolVersion,
    packet: &Packet,
    size: usize,
    traced: bool,
) {
    log("out", client, peer, version, packet, size, traced);
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

fn log(
    dir: &str,
    client: Option<&str>,
    peer: SocketAddr,
    version: ProtocolVersion,
    packet: &Packet,
    size: usize,
    traced: bool,
) {
    let client = client.unwrap_or("-");
    let v5 = version.is_v5();
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
    use crate::mqtt::packet::QoS;

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
