//! A plain HTTP/1.1 test client for a node's HTTP endpoint.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::eventually;

/// `GET path` over HTTP/1.1 with `Connection: close`: the status code and the body. A test
/// client only (the node serves HTTP with hyper); fails the test if the server does not
/// answer.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the HTTP endpoint");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read the HTTP answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status code");
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    (
        status,
        if chunked {
            unchunk(body)
        } else {
            body.to_owned()
        },
    )
}

/// The body of a chunked HTTP/1.1 answer.
fn unchunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Polls `/metrics` at `addr` until `pred` holds for it (up to a minute: a monitor indexes on
/// a timer); returns that text.
pub fn wait_metrics(addr: SocketAddr, what: &str, pred: impl Fn(&str) -> bool) -> String {
    eventually(what, Duration::from_secs(60), || {
        let (status, text) = http_get(addr, "/metrics");
        assert_eq!(status, 200);
        if pred(&text) {
            Ok(text)
        } else {
            Err(text)
        }
    })
}

/// The value of one series (`name{labels}` exactly as printed) in a `/metrics` text.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}
