//! MQTT over WebSocket (RFC 6455, MQTT 5.0 section 6): the HTTP upgrade, and a byte stream
//! over binary frames that the connection driver serves exactly as a TCP socket.
//!
//! The upgrade request is read and checked here, not inside tungstenite, so that every refusal
//! (not a WebSocket request, another path, no `mqtt` subprotocol, an origin not allowed) gets
//! an HTTP status and an `access` event with the reason. Framing after the upgrade is
//! tungstenite's, bounded by `mqtt.max_packet_size`: a frame header that announces more is
//! refused before its payload is buffered.
//!
//! What the driver sees: the payloads of binary frames, concatenated (an MQTT packet may span
//! frames and a frame may hold several packets). Ping frames are answered by tungstenite, a
//! close frame is the end of the stream (answered with a close frame), a text frame is an error
//! that closes the connection. Each write of the driver is one binary frame; shutting the
//! writer down sends a close frame.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

use crate::settings::Settings;
use crate::websocket::WsIo;

/// The largest upgrade request read (request line and headers).
const MAX_REQUEST_BYTES: usize = 8192;
/// The most headers an upgrade request may have.
const MAX_HEADERS: usize = 48;
/// The subprotocols served, in order of preference: MQTT 3.1.1 and 5.0 clients ask for
/// `mqtt`, MQTT 3.1 clients for `mqttv3.1`.
const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// Why an upgrade was refused: the HTTP status sent and the reason logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// The HTTP status code.
    pub(crate) status: u16,
    /// The reason, for the `access` event and the response body.
    pub(crate) reason: String,
}

impl Refusal {
    fn new(status: u16, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
        }
    }
}

/// An upgrade request that passed the checks.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Upgrade {
    /// `Sec-WebSocket-Accept` for the client's key.
    accept: String,
    /// The subprotocol echoed.
    pub(crate) protocol: &'static str,
    /// Bytes the client sent after the request (frames sent without waiting for the 101).
    rest: Vec<u8>,
}

/// The outcome of reading an upgrade request.
#[derive(Debug)]
pub(crate) enum HandshakeError {
    /// The request was refused; the status has been sent.
    Refused(Refusal),
    /// The socket failed or closed before a whole request came.
    Io(io::Error),
}

/// Reads the upgrade request from `stream`, answers it (101, or an HTTP error for a refusal)
/// and returns the WebSocket.
pub(crate) async fn accept<S>(
    mut stream: S,
    settings: &Settings,
) -> Result<(WsIo<S>, &'static str), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = Vec::with_capacity(1024);
    let checked = loop {
        if buf.len() >= MAX_REQUEST_BYTES {
            break Err(Refusal::new(431, "upgrade request too large"));
        }
        let mut chunk = [0u8; 1024];
        let want = chunk.len().min(MAX_REQUEST_BYTES - buf.len());
        let n = stream
            .read(&mut chunk[..want])
            .await
            .map_err(HandshakeError::Io)?;
        if n == 0 {
            return Err(HandshakeError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before a whole upgrade request",
            )));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(r) = check_request(&buf, settings) {
            break r;
        }
    };
    match checked {
        Ok(upgrade) => {
            let response = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Protocol: {}\r\n\r\n",
                upgrade.accept, upgrade.protocol
            );
            stream
                .write_all(response.as_bytes())
                .await
                .map_err(HandshakeError::Io)?;
            stream.flush().await.map_err(HandshakeError::Io)?;
            let ws = WebSocketStream::from_partially_read(
                stream,
                upgrade.rest,
                Role::Server,
                Some(config(settings)),
            )
            .await;
            Ok((WsIo::new(ws), upgrade.protocol))
        }
        Err(refusal) => {
            let _ = stream.write_all(&error_response(&refusal)).await;
            let _ = stream.shutdown().await;
            Err(HandshakeError::Refused(refusal))
        }
    }
}

/// The framing limits: a frame or a message may hold the largest MQTT packet accepted, plus
/// room for the packets that share a frame with it.
fn config(settings: &Settings) -> WebSocketConfig {
    crate::websocket::config(settings.mqtt.max_packet_size.saturating_add(64 * 1024))
}

/// The HTTP response of a refused upgrade.
fn error_response(refusal: &Refusal) -> Vec<u8> {
    let text = match refusal.status {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    };
    let body = format!("{}\n", refusal.reason);
    let extra = if refusal.status == 426 {
        "Sec-WebSocket-Version: 13\r\n"
    } else {
        ""
    };
    format!(
        "HTTP/1.1 {} {text}\r\n{extra}Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        refusal.status,
        body.len()
    )
    .into_bytes()
}

/// Checks an upgrade request read so far: `None` while it is incomplete.
pub(crate) fn check_request(buf: &[u8], settings: &Settings) -> Option<Result<Upgrade, Refusal>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let end = match req.parse(buf) {
        Ok(httparse::Status::Complete(end)) => end,
        Ok(httparse::Status::Partial) => return None,
        Err(httparse::Error::TooManyHeaders) => {
            return Some(Err(Refusal::new(431, "too many headers")))
        }
        Err(e) => {
            return Some(Err(Refusal::new(
                400,
                format!("not a WebSocket request: not HTTP ({e})"),
            )))
        }
    };
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .map(str::trim)
    };
    let has_token = |name: &str, token: &str| {
        header(name).is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    let method = req.method.unwrap_or("");
    if method != "GET" {
        return Some(Err(Refusal::new(
            405,
            format!("not a WebSocket request (method {method})"),
        )));
    }
    if !has_token("upgrade", "websocket") || !has_token("connection", "upgrade") {
        return Some(Err(Refusal::new(
            400,
            "not a WebSocket request (no Upgrade: websocket)",
        )));
    }
    let Some(key) = header("sec-websocket-key").filter(|k| !k.is_empty()) else {
        return Some(Err(Refusal::new(
            400,
            "not a WebSocket request (no Sec-WebSocket-Key)",
        )));
    };
    if header("sec-websocket-version") != Some("13") {
        return Some(Err(Refusal::new(426, "WebSocket version is not 13")));
    }
    let path = req.path.unwrap_or("");
    let path = path.split(['?', '#']).next().unwrap_or("");
    if path != settings.ws.path {
        return Some(Err(Refusal::new(
            404,
            format!("bad path {path:?} (ws.path is {:?})", settings.ws.path),
        )));
    }
    if let Some(origin) = header("origin") {
        let allowed = &settings.ws.allowed_origins;
        if !allowed.is_empty() && !allowed.iter().any(|a| a == origin) {
            return Some(Err(Refusal::new(
                403,
                format!("origin {origin:?} not in ws.allowed_origins"),
            )));
        }
    }
    let offered: Vec<&str> = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-protocol"))
        .filter_map(|h| std::str::from_utf8(h.value).ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let Some(protocol) = SUBPROTOCOLS
        .into_iter()
        .find(|p| offered.iter().any(|o| o.eq_ignore_ascii_case(p)))
    else {
        return Some(Err(Refusal::new(
            400,
            format!("no mqtt subprotocol (offered {offered:?})"),
        )));
    };
    Some(Ok(Upgrade {
        accept: derive_accept_key(key.as_bytes()),
        protocol,
        rest: buf[end..].to_vec(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(lines: &[&str]) -> Vec<u8> {
        let mut r = lines.join("\r\n");
        r.push_str("\r\n\r\n");
        r.into_bytes()
    }

    const OK: [&str; 6] = [
        "GET /mqtt HTTP/1.1",
        "Host: x",
        "Upgrade: websocket",
        "Connection: keep-alive, Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ];

    fn with(extra: &[&str]) -> Vec<u8> {
        let mut lines = OK.to_vec();
        lines.extend_from_slice(extra);
        request(&lines)
    }

    #[test]
    fn an_mqtt_upgrade_is_accepted_with_the_subprotocol_echoed() {
        let s = Settings::default();
        let up = check_request(&with(&["Sec-WebSocket-Protocol: mqtt"]), &s)
            .unwrap()
            .unwrap();
        // RFC 6455 section 1.3's example key and answer.
        assert_eq!(up.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(up.protocol, "mqtt");
        let up = check_request(&with(&["Sec-WebSocket-Protocol: chat, mqttv3.1"]), &s)
            .unwrap()
            .unwrap();
        assert_eq!(up.protocol, "mqttv3.1");
    }

    #[test]
    fn bytes_after_the_request_are_kept() {
        let mut r = with(&["Sec-WebSocket-Protocol: mqtt"]);
        r.extend_from_slice(&[0x82, 0x00]);
        let up = check_request(&r, &Settings::default()).unwrap().unwrap();
        assert_eq!(up.rest, vec![0x82, 0x00]);
    }

    #[test]
    fn an_incomplete_request_waits_for_more() {
        let r = with(&["Sec-WebSocket-Protocol: mqtt"]);
        assert!(check_request(&r[..r.len() - 2], &Settings::default()).is_none());
    }

    #[test]
    fn refusals_name_their_reason_and_status() {
        let s = Settings::default();
        let status = |r: &[u8]| check_request(r, &s).unwrap().unwrap_err().status;
        assert_eq!(status(&with(&[])), 400, "no subprotocol");
        assert_eq!(
            status(&request(&["GET /mqtt HTTP/1.1", "Host: x"])),
            400,
            "plain GET"
        );
        assert_eq!(status(&request(&["POST /mqtt HTTP/1.1", "Host: x"])), 405);
        assert_eq!(status(b"\x10\x0c\x00\x04MQTT\r\n\r\n"), 400, "raw MQTT");
        let mut other = OK.to_vec();
        other[0] = "GET /other HTTP/1.1";
        other.push("Sec-WebSocket-Protocol: mqtt");
        assert_eq!(status(&request(&other)), 404);
        let mut v12 = OK.to_vec();
        v12[5] = "Sec-WebSocket-Version: 12";
        v12.push("Sec-WebSocket-Protocol: mqtt");
        assert_eq!(status(&request(&v12)), 426);
    }

    #[test]
    fn origins_are_checked_only_when_listed() {
        let mut s = Settings::default();
        let r = with(&[
            "Sec-WebSocket-Protocol: mqtt",
            "Origin: https://evil.example",
        ]);
        assert!(check_request(&r, &s).unwrap().is_ok());
        s.ws.allowed_origins = vec!["https://app.example".into()];
        assert_eq!(check_request(&r, &s).unwrap().unwrap_err().status, 403);
        let good = with(&[
            "Sec-WebSocket-Protocol: mqtt",
            "Origin: https://app.example",
        ]);
        assert!(check_request(&good, &s).unwrap().is_ok());
    }
}
