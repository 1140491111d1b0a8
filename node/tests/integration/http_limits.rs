//! The HTTP endpoint against a client that holds sockets open: beyond `http.max_connections`
//! a connection is closed at accept (a `warning`), a connection that never gets a response
//! (a request trickled byte by byte) is closed after `http.idle_timeout_secs`, and then the
//! endpoint serves again; MQTT clients are served all along.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::common::{http_get, Broker, RawClient};

const WAIT: Duration = Duration::from_secs(20);

/// Whether the server closes `s` (EOF or a reset) within `WAIT`.
fn closed_by_server(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
    }
}

#[test]
fn sockets_held_open_on_the_http_port_are_bounded_and_timed_out() {
    let broker = Broker::start_with(
        &["--http-port", "0"],
        "[http]\nmax_connections = 3\nidle_timeout_secs = 1\n",
    );
    let http = broker.http();
    // Three slow clients, each with an unfinished request: they hold every slot.
    let mut slow: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut s = TcpStream::connect(http).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            s
        })
        .collect();
    // Accepted in the order they connected: the fourth finds no slot left.
    let mut fourth = TcpStream::connect(http).unwrap();
    assert!(
        closed_by_server(&mut fourth),
        "the fourth is closed at accept"
    );
    broker
        .wait_for_log(
            "HTTP connection refused: http.max_connections are open",
            WAIT,
        )
        .expect("a warning says why");
    // MQTT is not touched by any of it.
    let mut mqtt = RawClient::connect(broker.addr);
    mqtt.send(&crate::common::connect_v311("still-served"));
    assert!(mqtt.read_packet(WAIT).is_some(), "CONNACK");
    // The slow ones never finish their request: each is closed at its deadline.
    for s in &mut slow {
        assert!(closed_by_server(s), "a request never finished is closed");
    }
    // And the endpoint serves again.
    let (status, body) = http_get(http, "/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
}
