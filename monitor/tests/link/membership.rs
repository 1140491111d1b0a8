//! Membership: certificates and the cookie; non-members and bad frames.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use fubar_logproto::admin::{AdminRequest, AdminResponse};
use fubar_logproto::frame::encode;
use fubar_logproto::link::{
    MonitorMsg, NodeMsg, ADMIN_ALPN, BINDING_LABEL, BINDING_LEN, LOG_ALPN, MAX_HELLO_FRAME,
    NONCE_LEN, REFUSED,
};
use fubar_logproto::Class;
use fubar_monitor::admin::AdminClient;
use fubar_monitor::config::LinkLimits;
use fubar_monitor::cookie::Cookie;
use quinn::crypto::rustls::QuicClientConfig;
use quinn::{Connection, ConnectionError, Endpoint, RecvStream, SendStream};
use tracing_subscriber::layer::SubscriberExt as _;

use crate::{free_addr, monitor_logs, seqs_of, wait_for, Monitor, Node, Pki, SECRET};

fn cookie() -> Option<Cookie> {
    Cookie::from_secret(SECRET)
}

#[tokio::test]
async fn non_members_are_refused_with_a_warning_and_certificate_members_ship() {
    let pki = Pki::new(&["n1@localhost", "n2@localhost"]);
    let other_ca = Pki::new(&["n3@localhost"]);
    let dir = tempfile::tempdir().unwrap();
    let (logs, layer) = monitor_logs(dir.path());
    // The monitor's warnings are recorded by its own log engine.
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
    let monitor = Monitor::start(&pki, free_addr(), cookie(), dir.path(), logs, None);
    // n2 is a member the cluster knows: its certificate stands for it.
    monitor.server.set_members(["n2@localhost".to_owned()]);
    let addr = monitor.addr();
    let wrong = Cookie::from_secret(b"another cluster's cookie!!");
    let bad_cookie = Node::start("bad@localhost", addr, pki.client_tls(None), wrong);
    let foreign = Node::start(
        "n3@localhost",
        addr,
        pki.client_tls(Some((&other_ca, "n3@localhost"))),
        None,
    );
    // n1 presents n2's certificate (valid, but not its own) and no cookie.
    let impostor = Node::start(
        "n1@localhost",
        addr,
        pki.client_tls(Some((&pki, "n2@localhost"))),
        None,
    );
    for node in [&bad_cookie, &foreign, &impostor] {
        node.emit(1..=5);
    }
    // A member by certificate alone (the monitor has a cookie, it is not needed).
    let member = Node::start(
        "n2@localhost",
        addr,
        pki.client_tls(Some((&pki, "n2@localhost"))),
        None,
    );
    member.emit(1..=5);
    let server = monitor.server.clone();
    wait_for("three refusals", || server.refused() >= 3).await;
    wait_for("the member's events", || {
        server
            .stats()
            .iter()
            .any(|s| s.node == "n2@localhost" && s.upto_seq == 5)
    })
    .await;
    let stats = bad_cookie.shipper.stats();
    assert!(stats.refusals >= 1, "{stats:?}");
    assert!(
        stats.last_error.as_deref().unwrap_or("").contains(REFUSED),
        "a generic refusal: {stats:?}"
    );
    wait_for("warnings written", || monitor.link_warnings().len() >= 3).await;
    let warnings = monitor.link_warnings();
    let find = |node: &str, reason: &str| {
        warnings.iter().any(|w| {
            w.field("node") == Some(node)
                && w.field("peer").is_some()
                && w.field("reason").is_some_and(|r| r.contains(reason))
        })
    };
    // The node with another cookie gives up before it proves anything: the monitor did not
    // prove the node's cookie. The monitor hears no proof from it.
    assert!(find("-", "bad proof frame"), "{warnings:#?}");
    assert!(find("-", "TLS handshake failed"), "{warnings:#?}");
    assert!(find("n1@localhost", "certificate names"), "{warnings:#?}");
    let access = monitor.recorded(Class::Access);
    assert_eq!(seqs_of(&access, "n2@localhost"), [1, 2, 3, 4, 5]);
    assert_eq!(access.len(), 5, "nothing from non-members");
    for node in [bad_cookie, foreign, impostor, member] {
        node.shipper.shutdown().await;
    }
    monitor.server.shutdown().await;
}

/// A bare QUIC connection to the monitor, for sending what a shipper never would.
async fn raw(pki: &Pki, addr: SocketAddr) -> (Endpoint, Connection, SendStream, RecvStream) {
    let crypto = QuicClientConfig::try_from(pki.client_tls(None)).unwrap();
    let mut endpoint = Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let conn = endpoint.connect(addr, "localhost").unwrap().await.unwrap();
    let (send, recv) = conn.open_bi().await.unwrap();
    (endpoint, conn, send, recv)
}

/// Waits for the monitor to close `conn`, returning its close code.
async fn closed_by_monitor(conn: &Connection) -> u64 {
    let closed = tokio::time::timeout(Duration::from_secs(10), conn.closed())
        .await
        .expect("the monitor closes the connection");
    match closed {
        ConnectionError::ApplicationClosed(c) => c.error_code.into_inner(),
        other => panic!("closed by {other:?}"),
    }
}

/// Reads one monitor frame (the test's own, non-cancel-safe reader).
async fn read_msg(recv: &mut RecvStream) -> MonitorMsg {
    let mut header = [0; 4];
    recv.read_exact(&mut header).await.unwrap();
    let mut body = vec![0; u32::from_be_bytes(header) as usize];
    recv.read_exact(&mut body).await.unwrap();
    postcard::from_bytes(&body).unwrap()
}

/// A bare connection that proves the cookie by hand and is welcomed.
async fn raw_member(pki: &Pki, addr: SocketAddr, node: &str) -> (Endpoint, Connection, SendStream) {
    let (endpoint, conn, mut send, mut recv) = raw(pki, addr).await;
    let client_nonce = [7; NONCE_LEN];
    let hello = NodeMsg::Hello {
        nonce: client_nonce,
    };
    send.write_all(&encode(&hello).unwrap()).await.unwrap();
    let MonitorMsg::Challenge { nonce, mac } = read_msg(&mut recv).await else {
        panic!("no challenge");
    };
    let mut binding = [0; BINDING_LEN];
    conn.export_keying_material(&mut binding, BINDING_LABEL, b"")
        .unwrap();
    let cookie = cookie().unwrap();
    assert!(cookie.verify_server(&binding, &nonce, &client_nonce, &mac.unwrap()));
    let mac = cookie.prove(&binding, &nonce, &client_nonce, node, 3);
    let proof = NodeMsg::Proof {
        node: node.into(),
        epoch: 3,
        mac: Some(mac),
    };
    send.write_all(&encode(&proof).unwrap()).await.unwrap();
    assert!(matches!(
        read_msg(&mut recv).await,
        MonitorMsg::Welcome { .. }
    ));
    (endpoint, conn, send)
}

#[tokio::test]
async fn garbage_and_oversized_frames_close_only_their_connection() {
    let pki = Pki::new(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (logs, layer) = monitor_logs(dir.path());
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
    let monitor = Monitor::start(&pki, free_addr(), cookie(), dir.path(), logs, None);
    let addr = monitor.addr();
    let good = Node::start("n1@localhost", addr, pki.client_tls(None), cookie());
    good.emit(1..=30);
    let server = monitor.server.clone();
    let acked = |n: u64| {
        let server = server.clone();
        move || {
            server
                .stats()
                .iter()
                .any(|s| s.node == "n1@localhost" && s.upto_seq == n)
        }
    };
    wait_for("the first 30", acked(30)).await;

    // Garbage instead of Hello.
    let (_e1, c1, mut s1, _r1) = raw(&pki, addr).await;
    s1.write_all(&[0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o'])
        .await
        .unwrap();
    assert_eq!(closed_by_monitor(&c1).await, 1);
    // A length far over the frame limit.
    let (_e2, c2, mut s2, _r2) = raw(&pki, addr).await;
    s2.write_all(&[0xff, 0xff, 0xff, 0xff, 0]).await.unwrap();
    assert_eq!(closed_by_monitor(&c2).await, 1);
    // A member (cookie proof made by hand) that sends garbage after its welcome.
    let (_e3, c3, mut s3) = raw_member(&pki, addr, "n9@localhost").await;
    s3.write_all(&[0, 0, 0, 3, 0xfe, 0xfe, 0xfe]).await.unwrap();
    assert_eq!(closed_by_monitor(&c3).await, 1);

    // The good node never noticed.
    good.emit(31..=60);
    wait_for("all 60", acked(60)).await;
    let written = seqs_of(&monitor.recorded(Class::Access), "n1@localhost");
    assert_eq!(written, (1..=60).collect::<Vec<_>>());
    assert_eq!(good.shipper.stats().connects, 1);
    wait_for("warnings written", || monitor.link_warnings().len() >= 3).await;
    let warnings = monitor.link_warnings();
    let reasons: Vec<&str> = warnings.iter().filter_map(|w| w.field("reason")).collect();
    assert!(
        reasons.iter().any(|r| r.contains("bad Hello: malformed")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("over the")),
        "{reasons:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.message.contains("malformed traffic")
                && w.field("node") == Some("n9@localhost")),
        "{warnings:#?}"
    );
    good.shipper.shutdown().await;
    monitor.server.shutdown().await;
}

#[tokio::test]
async fn a_node_refuses_a_server_with_another_cookie_before_saying_anything() {
    let pki = Pki::new(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (logs, layer) = monitor_logs(dir.path());
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
    let other = Cookie::from_secret(b"a monitor of another cluster");
    let monitor = Monitor::start(&pki, free_addr(), other, dir.path(), logs, None);
    let node = Node::start(
        "n1@localhost",
        monitor.addr(),
        pki.client_tls(None),
        cookie(),
    );
    node.emit(1..=5);
    let shipper = &node.shipper;
    wait_for("the node gives the server up", || {
        shipper
            .stats()
            .last_error
            .is_some_and(|e| e.contains("did not prove the cluster cookie"))
    })
    .await;
    // The server never heard who the node is, and got none of its events.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        monitor.server.stats().is_empty(),
        "{:?}",
        monitor.server.stats()
    );
    assert!(monitor.recorded(Class::Access).is_empty());
    node.shipper.shutdown().await;
    monitor.server.shutdown().await;
}

#[tokio::test]
async fn a_first_frame_larger_than_a_hello_is_refused_unread() {
    let pki = Pki::new(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (logs, layer) = monitor_logs(dir.path());
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
    let monitor = Monitor::start(&pki, free_addr(), cookie(), dir.path(), logs, None);
    let (_e, conn, mut send, _r) = raw(&pki, monitor.addr()).await;
    let len = u32::try_from(MAX_HELLO_FRAME + 1).unwrap();
    send.write_all(&len.to_be_bytes()).await.unwrap();
    assert_eq!(closed_by_monitor(&conn).await, 1);
    monitor.server.shutdown().await;
}

#[tokio::test]
async fn an_unproven_connection_cannot_make_the_monitor_buffer_more_than_a_few_kib() {
    let pki = Pki::new(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (logs, layer) = monitor_logs(dir.path());
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
    let monitor = Monitor::start(&pki, free_addr(), cookie(), dir.path(), logs, None);
    let (_e, conn, mut send, _r) = raw(&pki, monitor.addr()).await;
    let hello = NodeMsg::Hello {
        nonce: [7; NONCE_LEN],
    };
    send.write_all(&encode(&hello).unwrap()).await.unwrap();
    // A second stream is not allowed before the proof.
    let second = tokio::time::timeout(Duration::from_millis(500), conn.open_bi()).await;
    assert!(second.is_err(), "a second stream opened before the proof");
    // 1 MiB more on the first stream: flow control stops it at the small pre-proof window,
    // so the write cannot finish before the proof deadline closes the connection (with the
    // link's 8 MiB windows it finished at once).
    let written = send.write_all(&vec![0u8; 1 << 20]).await;
    assert!(
        written.is_err(),
        "1 MiB was buffered by the monitor before any proof"
    );
    monitor.server.shutdown().await;
}

/// A QUIC client bound to `ip` (any of 127.0.0.0/8 on Linux: all of it is loopback), with
/// keep-alives so the connections it holds stay up for the test.
fn client_on(pki: &Pki, ip: [u8; 4], alpn: &[u8]) -> Endpoint {
    let crypto = QuicClientConfig::try_from(pki.client_tls_for(None, alpn)).unwrap();
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(Duration::from_secs(2)));
    config.transport_config(Arc::new(transport));
    let mut endpoint = Endpoint::client(SocketAddr::from((ip, 0))).unwrap();
    endpoint.set_default_client_config(config);
    endpoint
}

#[tokio::test]
async fn unproven_connections_from_many_addresses_leave_members_and_admin_their_share() {
    let pki = Pki::new(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (logs, layer) = monitor_logs(dir.path());
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
    // The default shares, scaled down: 64 slots, 16 for strangers' unproven connections, 2
    // per address; an unproven connection keeps its slot for the whole test.
    let limits = LinkLimits {
        max_connections: 64,
        max_unproven: 16,
        max_unproven_per_address: 2,
        handshake_timeout: Duration::from_secs(120),
        refusal_warning_interval: Duration::from_nanos(1),
        ..LinkLimits::default()
    };
    let monitor =
        Monitor::start_with_limits(&pki, free_addr(), cookie(), dir.path(), logs, None, limits);
    let addr = monitor.addr();
    let (calls, _tails) = crate::admin::handler();
    monitor.server.set_admin(calls);
    let server = monitor.server.clone();
    let acked = |node: &'static str, n: u64| {
        let server = server.clone();
        move || {
            server
                .stats()
                .iter()
                .any(|s| s.node == node && s.upto_seq == n)
        }
    };
    // A member ships from 127.0.0.1: its address is now known.
    let n1 = Node::start("n1@localhost", addr, pki.client_tls(None), cookie());
    n1.emit(1..=3);
    wait_for("n1's events", acked("n1@localhost", 3)).await;

    // 70 other addresses open all the unproven connections they can and prove nothing
    // (without a pool of their own, 32 addresses filled all 64 slots).
    let mut held = Vec::new();
    let mut endpoints = Vec::new();
    let mut refused = 0;
    for i in 0..70u8 {
        let endpoint = client_on(&pki, [127, 0, 1, 10 + i], LOG_ALPN);
        for _ in 0..2 {
            let connecting = endpoint.connect(addr, "localhost").unwrap();
            match tokio::time::timeout(Duration::from_secs(10), connecting).await {
                Ok(Ok(conn)) => held.push(conn),
                Ok(Err(_)) => refused += 1,
                Err(_) => panic!("a connection attempt neither got in nor was refused"),
            }
        }
        endpoints.push(endpoint);
    }
    assert_eq!(held.len(), 16, "the strangers' share is full");
    assert_eq!(refused, 140 - 16);

    // A new member from a known address still joins and ships, and an admin command with the
    // cookie still runs.
    let n2 = Node::start("n2@localhost", addr, pki.client_tls(None), cookie());
    n2.emit(1..=3);
    wait_for("n2's events", acked("n2@localhost", 3)).await;
    let cookie = cookie().unwrap();
    let mut admin = AdminClient::connect(
        addr,
        "localhost",
        pki.client_tls_for(None, ADMIN_ALPN),
        Some(&cookie),
        "ctl@localhost",
        Duration::from_secs(10),
    )
    .await
    .expect("an admin client with the cookie gets in");
    let reply = admin.request(&AdminRequest::Status).await.unwrap();
    assert_eq!(reply, AdminResponse::Done("Status".into()));
    admin.close().await;
    assert!(
        held.iter().all(|c| c.close_reason().is_none()),
        "the flood still holds its share"
    );
    wait_for("refusal warnings", || {
        monitor.link_warnings().iter().any(|w| {
            w.field("reason")
                .is_some_and(|r| r.contains("not known as members"))
        })
    })
    .await;
    for node in [n1, n2] {
        node.shipper.shutdown().await;
    }
    monitor.server.shutdown().await;
}

/// A server that is no member: it answers the first `Hello` with `reply` (one frame, its
/// length prefix included) and holds the connection until the client closes it.
async fn hostile_server(pki: &Pki, reply: Vec<u8>) -> (Endpoint, SocketAddr) {
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(pki.server_tls()).unwrap();
    let config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let endpoint = Endpoint::server(config, free_addr()).unwrap();
    let addr = endpoint.local_addr().unwrap();
    let server = endpoint.clone();
    tokio::spawn(async move {
        while let Some(incoming) = server.accept().await {
            let reply = reply.clone();
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                let Ok((mut send, mut recv)) = conn.accept_bi().await else {
                    return;
                };
                let mut hello = [0; 4];
                if recv.read_exact(&mut hello).await.is_err() {
                    return;
                }
                let _ = send.write_all(&reply).await;
                let _ = send.finish();
                let _ = tokio::time::timeout(Duration::from_secs(10), conn.closed()).await;
            });
        }
    });
    (endpoint, addr)
}

#[tokio::test]
async fn a_servers_refusal_is_shown_short_and_clean_and_a_huge_one_is_not_read() {
    let pki = Pki::new(&[]);
    // A refusal text of 300 characters of terminal escapes and line breaks: under 64 KiB,
    // over the first frame's 256 bytes.
    let hostile = format!("\u{1b}[2J\u{1b}[31m{}\r\nfake log line", "x".repeat(300));
    let big = encode(&MonitorMsg::Refused { reason: hostile }).unwrap();
    // A short one still full of escapes: read, and shown as printable ASCII.
    let short = encode(&MonitorMsg::Refused {
        reason: "\u{1b}[31mgo away\r\n\u{7}".into(),
    })
    .unwrap();
    assert!(short.len() - 4 <= MAX_HELLO_FRAME);
    for (reply, expect) in [(big, "over"), (short, "?[31mgo away???")] {
        let (server, addr) = hostile_server(&pki, reply).await;
        // A node's log link: the shipper's error and its warning carry no more of it.
        let node = Node::start("n1@localhost", addr, pki.client_tls(None), cookie());
        let shipper = &node.shipper;
        wait_for("the node gives the server up", || {
            shipper.stats().last_error.is_some()
        })
        .await;
        let error = shipper.stats().last_error.unwrap();
        assert!(error.len() < 300, "{error}");
        assert!(error.contains(expect), "{error}");
        assert!(
            error.chars().all(|c| c.is_ascii_graphic() || c == ' '),
            "{error:?}"
        );
        node.shipper.shutdown().await;
        // `fubar ctl`'s side (the admin client): the same.
        let connected = AdminClient::connect(
            addr,
            "localhost",
            pki.client_tls_for(None, ADMIN_ALPN),
            cookie().as_ref(),
            "ctl@localhost",
            Duration::from_secs(10),
        )
        .await;
        let Err(failed) = connected.map(|_| ()) else {
            panic!("a hostile server let an admin client in");
        };
        let failed = failed.to_string();
        assert!(failed.len() < 300, "{failed}");
        assert!(failed.contains(expect), "{failed}");
        assert!(
            failed.chars().all(|c| c.is_ascii_graphic() || c == ' '),
            "{failed:?}"
        );
        server.close(0u32.into(), b"");
    }
}

#[tokio::test]
async fn refusals_from_many_addresses_beyond_the_budget_are_one_summary_warning() {
    let pki = Pki::new(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (logs, layer) = monitor_logs(dir.path());
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
    let limits = LinkLimits {
        refusal_warning_interval: Duration::from_secs(2),
        max_refusal_warnings: 2,
        ..LinkLimits::default()
    };
    let monitor =
        Monitor::start_with_limits(&pki, free_addr(), cookie(), dir.path(), logs, None, limits);
    let addr = monitor.addr();
    // Ten addresses, one garbage hello each: ten refusals.
    for i in 0..10u8 {
        let endpoint = client_on(&pki, [127, 0, 2, 10 + i], LOG_ALPN);
        let conn = endpoint.connect(addr, "localhost").unwrap().await.unwrap();
        let (mut send, _recv) = conn.open_bi().await.unwrap();
        send.write_all(&[0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o'])
            .await
            .unwrap();
        assert_eq!(closed_by_monitor(&conn).await, 1);
    }
    // Every refusal is accounted for: a warning per address within the budget, the rest in
    // a summary (the budget is 2 per interval, so at least one interval has one).
    let count = |w: &fubar_logproto::Event| -> u64 {
        w.field("refusals")
            .and_then(|r| r.parse().ok())
            .unwrap_or(0)
    };
    wait_for("a summary accounting for every refusal", || {
        let warnings = monitor.link_warnings();
        warnings.iter().map(count).sum::<u64>() == 10
            && warnings
                .iter()
                .any(|w| w.message.contains("not warned about one by one"))
    })
    .await;
    let warnings = monitor.link_warnings();
    let summary = warnings
        .iter()
        .find(|w| w.message.contains("not warned about one by one"))
        .unwrap();
    assert!(count(summary) >= 1, "{summary:?}");
    assert!(summary.field("addresses").is_some(), "{summary:?}");
    assert!(
        warnings.len() < 10,
        "fewer warnings than refusals: {warnings:#?}"
    );
    monitor.server.shutdown().await;
}
