//! Secrets taken out of raw packet bytes before they are logged: a CONNECT's password and
//! MQTT 5.0 authentication data (CONNECT properties, AUTH). The `packet` log class shows the
//! first bytes of every packet in hex, and those bytes are written to segments, shipped to
//! the monitor and indexed, so a secret must never reach it.
//!
//! Works on the head of a frame (the first bytes only, as logged), whole or cut short, and
//! on bytes that did not decode: whatever cannot be parsed with certainty is masked.
//!
//! A will's payload is left as it is: it is application data, like the PUBLISH payloads the
//! same class shows, not a credential. The user name and client id stay readable too (they
//! are what a search of the log looks for).

/// The byte a secret's bytes are replaced with (`*`, hex `2a`).
pub const MASK: u8 = b'*';

/// CONNECT and AUTH, the packet types that may carry a secret.
const CONNECT: u8 = 1;
const AUTH: u8 = 15;

/// What of a received frame's `head` may be logged: the head cut to the frame (a frame that did
/// not decode is cut at the length its fixed header declares, so the bytes of a next frame,
/// maybe a CONNECT, are never shown under the kind of this one), with its secrets masked
/// ([`mask_secrets`]). `size` is the frame's length when it decoded, else every byte read;
/// returns the bytes and whether anything was masked.
pub fn loggable_head(
    mut head: Vec<u8>,
    size: usize,
    decoded: bool,
    password_len: Option<usize>,
) -> (Vec<u8>, bool) {
    let mut frame_len = size;
    if !decoded {
        if let Some(declared) = declared_frame_len(&head) {
            frame_len = frame_len.min(declared);
        }
    }
    head.truncate(frame_len.max(1).min(head.len()));
    let masked = mask_secrets(&mut head, frame_len, decoded, password_len);
    (head, masked)
}

/// The length a frame's fixed header declares (header included), if the header is whole and
/// well formed in `head`.
fn declared_frame_len(head: &[u8]) -> Option<usize> {
    let header_len = fixed_header_len(head)?;
    let mut remaining = 0usize;
    for (i, b) in head[1..header_len].iter().enumerate() {
        remaining |= usize::from(b & 0x7f) << (7 * i);
    }
    Some(header_len + remaining)
}

/// Masks the secrets in `head`, the first bytes of one frame of `frame_len` bytes in all.
/// `password_len` is the decoded CONNECT's password length (`None`: no password, or the frame
/// did not decode). Returns whether anything was masked.
///
/// - CONNECT: the password is the frame's last field, so its bytes and length prefix are the
///   frame's last `2 + password_len`; an MQTT 5.0 CONNECT's properties (which may hold
///   authentication data) are masked whole. A CONNECT that did not decode (`decoded` false)
///   is masked after its fixed header.
/// - AUTH: everything after the reason code (the properties: method and data).
pub fn mask_secrets(
    head: &mut [u8],
    frame_len: usize,
    decoded: bool,
    password_len: Option<usize>,
) -> bool {
    let Some(&first) = head.first() else {
        return false;
    };
    let kind = first >> 4;
    if kind != CONNECT && kind != AUTH {
        return false;
    }
    let Some(header_len) = fixed_header_len(head) else {
        // Not even the fixed header is whole: mask all but the type byte.
        return mask(head, 1..head.len());
    };
    if !decoded {
        return mask(head, header_len..head.len());
    }
    if kind == AUTH {
        // Reason code (1 byte), then the properties.
        return mask(head, header_len + 1..head.len());
    }
    let mut masked = false;
    if let Some(len) = password_len {
        let start = frame_len.saturating_sub(2 + len);
        masked |= mask(head, start..frame_len);
    }
    match v5_properties(head, header_len) {
        Properties::None => {}
        Properties::At(range) => masked |= mask(head, range),
        Properties::Unknown(from) => masked |= mask(head, from..head.len()),
    }
    masked
}

/// Bytes of the fixed header (type byte and remaining-length varint), if whole in `head`.
fn fixed_header_len(head: &[u8]) -> Option<usize> {
    for (i, b) in head.iter().enumerate().skip(1).take(4) {
        if b & 0x80 == 0 {
            return Some(i + 1);
        }
    }
    None
}

/// Where an MQTT 5.0 CONNECT's properties lie in `head`.
enum Properties {
    /// Not a 5.0 CONNECT, or no property bytes in `head`.
    None,
    /// The property length varint and the properties.
    At(std::ops::Range<usize>),
    /// Cannot tell where they end: mask from here on.
    Unknown(usize),
}

fn v5_properties(head: &[u8], header_len: usize) -> Properties {
    let Some(name_len) = head.get(header_len..header_len + 2) else {
        return Properties::None;
    };
    let name_len = usize::from(u16::from_be_bytes([name_len[0], name_len[1]]));
    // Protocol name, then level (1), flags (1), keep alive (2).
    let level_at = header_len + 2 + name_len;
    let Some(&level) = head.get(level_at) else {
        return Properties::None;
    };
    if level != 5 {
        return Properties::None;
    }
    let props_at = level_at + 4;
    if props_at >= head.len() {
        return Properties::None;
    }
    let mut len = 0usize;
    for (i, b) in head[props_at..].iter().enumerate().take(4) {
        len |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            let end = props_at + i + 1 + len;
            return Properties::At(props_at..end);
        }
    }
    Properties::Unknown(props_at)
}

/// Masks `range` of `head` (clamped to it); whether any byte was in it.
fn mask(head: &mut [u8], range: std::ops::Range<usize>) -> bool {
    let end = range.end.min(head.len());
    let start = range.start.min(end);
    head[start..end].fill(MASK);
    end > start
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::decode;
    use crate::encode::encode;
    use crate::packet::{Connect, LastWill, Packet, Properties as Props, ProtocolVersion, QoS};
    use bytes::{Bytes, BytesMut};

    fn connect(protocol: ProtocolVersion, auth_data: Option<&'static [u8]>) -> Connect {
        Connect {
            protocol,
            clean_session: true,
            keep_alive: 30,
            client_id: "dev1".into(),
            will: Some(LastWill {
                topic: "w".into(),
                payload: Bytes::from_static(b"bye"),
                qos: QoS::AtMostOnce,
                retain: false,
                properties: Props::default(),
            }),
            username: Some("alice".into()),
            password: Some(Bytes::from_static(b"hunter2")),
            properties: Props {
                authentication_method: auth_data.map(|_| "SCRAM-SHA-1".into()),
                authentication_data: auth_data.map(Bytes::from_static),
                ..Props::default()
            },
        }
    }

    fn frame(packet: &Packet, protocol: ProtocolVersion) -> Vec<u8> {
        let mut buf = BytesMut::new();
        encode(packet, protocol, &mut buf);
        buf.to_vec()
    }

    fn holds(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    /// Every cut of the frame (as the log's cap may make) holds no byte run of the secret
    /// longer than 2 bytes, and the user name stays readable in the whole frame.
    fn check(frame: &[u8], password: &[u8], secret: Option<&[u8]>, protocol: ProtocolVersion) {
        let mut buf = BytesMut::from(frame);
        let Some(Packet::Connect(c)) = decode(&mut buf, 1 << 20, protocol).unwrap() else {
            panic!("not a connect");
        };
        let pw = c.password.as_ref().map(Bytes::len);
        for cut in 0..=frame.len() {
            let mut head = frame[..cut].to_vec();
            mask_secrets(&mut head, frame.len(), true, pw);
            for s in [Some(password), secret].into_iter().flatten() {
                for w in s.windows(3) {
                    assert!(!holds(&head, w), "cut {cut}: {head:?} holds {w:?}");
                }
            }
        }
        let mut whole = frame.to_vec();
        assert!(mask_secrets(&mut whole, frame.len(), true, pw));
        assert!(holds(&whole, b"alice"), "the user name is not a secret");
        assert!(holds(&whole, b"dev1"), "nor the client id");
    }

    #[test]
    fn a_connect_password_is_masked_at_every_cut() {
        for protocol in [
            ProtocolVersion::V31,
            ProtocolVersion::V311,
            ProtocolVersion::V5,
        ] {
            let f = frame(
                &Packet::Connect(Box::new(connect(protocol, None))),
                protocol,
            );
            check(&f, b"hunter2", None, protocol);
        }
    }

    #[test]
    fn v5_authentication_data_in_connect_is_masked() {
        let p = ProtocolVersion::V5;
        let f = frame(
            &Packet::Connect(Box::new(connect(p, Some(b"s3cr3t-nonce")))),
            p,
        );
        check(&f, b"hunter2", Some(b"s3cr3t-nonce"), p);
    }

    #[test]
    fn auth_packets_and_undecoded_connects_are_masked_after_the_header() {
        // AUTH: type 15, remaining 15, reason 0x18, properties (length 13): data 0x16.
        let mut auth = vec![0xf0, 15, 0x18, 13, 0x16, 0, 10];
        auth.extend_from_slice(b"topsecret!");
        let len = auth.len();
        assert!(mask_secrets(&mut auth, len, true, None));
        assert!(!holds(&auth, b"sec"));
        assert_eq!(&auth[..3], &[0xf0, 15, 0x18]);
        // A CONNECT that did not decode: nothing past its fixed header is trusted.
        let mut bad = frame(
            &Packet::Connect(Box::new(connect(ProtocolVersion::V311, None))),
            ProtocolVersion::V311,
        );
        let len = bad.len();
        assert!(mask_secrets(&mut bad, len, false, None));
        assert!(!holds(&bad, b"ali"));
        // A fixed header cut short.
        let mut short = vec![0x10, 0xff, 0xff];
        assert!(mask_secrets(&mut short, 1000, false, None));
        assert_eq!(short, [0x10, MASK, MASK]);
    }

    #[test]
    fn an_undecoded_frame_is_cut_at_its_declared_length() {
        // A malformed PUBLISH (its topic length runs past its body), then a CONNECT in the
        // same read: the CONNECT's bytes are not logged as part of the PUBLISH.
        let bad_publish = [0x30, 3, 0, 9, b't'];
        let connect = frame(
            &Packet::Connect(Box::new(connect(ProtocolVersion::V311, None))),
            ProtocolVersion::V311,
        );
        let mut read = bad_publish.to_vec();
        read.extend_from_slice(&connect);
        let size = read.len();
        let (head, masked) = loggable_head(read[..size.min(64)].to_vec(), size, false, None);
        assert_eq!(head, bad_publish);
        assert!(!masked);
        // A header that declares more than was read: all that was read is this frame's.
        let (head, _) = loggable_head(vec![0x30, 100, 0, 1], 4, false, None);
        assert_eq!(head, [0x30, 100, 0, 1]);
        // A header cut short: nothing to cut at; a CONNECT type is masked after its type.
        let (head, masked) = loggable_head(vec![0x10, 0x80], 2, false, None);
        assert_eq!(head, [0x10, MASK]);
        assert!(masked);
        // A decoded frame is cut at its size, and its password masked.
        let mut two = connect.clone();
        two.extend_from_slice(&[0xc0, 0]);
        let (head, masked) = loggable_head(two, connect.len(), true, Some(7));
        assert_eq!(head.len(), connect.len());
        assert!(masked && !holds(&head, b"hun"));
    }

    #[test]
    fn other_packets_are_left_alone() {
        let mut publish = vec![0x30, 5, 0, 1, b't', b'p', b'w'];
        let before = publish.clone();
        assert!(!mask_secrets(&mut publish, 7, true, None));
        assert_eq!(publish, before);
        assert!(!mask_secrets(&mut [], 0, true, None));
    }
}
