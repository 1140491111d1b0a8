//! Remote admin on the monitor's endpoint: the same membership proof, the installed handler's
//! replies streamed back, nodes' links untouched, bad requests closing only their connection.

use std::time::Duration;

use fubar_logproto::admin::{AdminRequest, AdminResponse};
use fubar_logproto::link::ADMIN_ALPN;
use fubar_logproto::Event;
use fubar_monitor::admin::{AdminCall, AdminClient};
use fubar_monitor::cookie::Cookie;
use fubar_monitor::MonitorError;
use tokio::sync::mpsc;

use crate::{free_addr, monitor_logs, wait_for, Monitor, Pki, SECRET};

const IDLE: Duration = Duration::from_secs(10);

/// A handler: `Status` is answered `Done`, `LogTail` gets events until the client goes away.
pub(crate) fn handler() -> (mpsc::Sender<AdminCall>, mpsc::Receiver<()>) {
    let (calls, mut rx) = mpsc::channel::<AdminCall>(8);
    let (tails_ended, ended) = mpsc::channel(8);
    tokio::spawn(async move {
        while let Some(call) = rx.recv().await {
            let ended = tails_ended.clone();
            tokio::spawn(async move {
                match call.request {
                    AdminRequest::LogTail { .. } => {
                        for seq in 1.. {
                            let e = Event {
                                node: "n@h".into(),
                                epoch: 1,
                                seq,
                                time_us: 0,
                                class: fubar_logproto::Class::Info,
                                message: "tick".into(),
                                fields: Vec::new(),
                            };
                            if call.replies.send(AdminResponse::Event(e)).await.is_err() {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        let _ = ended.send(()).await;
                    }
                    other => {
                        let _ = call
                            .replies
                            .send(AdminResponse::Done(format!("{other:?}")))
                            .await;
                    }
                }
            });
        }
    });
    (calls, ended)
}

#[tokio::test]
async fn members_run_requests_and_tails_and_non_members_are_refused() {
    let pki = Pki::new(&["ops@localhost"]);
    let dir = tempfile::tempdir().unwrap();
    let (logs, _layer) = monitor_logs(dir.path());
    let monitor = Monitor::start(
        &pki,
        free_addr(),
        Cookie::from_secret(SECRET),
        dir.path(),
        logs,
        None,
    );
    // ops is a member the cluster knows: its node certificate stands for it.
    monitor.server.set_members(["ops@localhost".to_owned()]);
    let addr = monitor.addr();
    let tls = pki.client_tls_for(None, ADMIN_ALPN);
    // No handler yet: an error reply, not a hang.
    let cookie = Cookie::from_secret(SECRET).unwrap();
    let mut c = AdminClient::connect(addr, "localhost", tls.clone(), Some(&cookie), "ctl@h", IDLE)
        .await
        .unwrap();
    let reply = c.request(&AdminRequest::Status).await.unwrap();
    assert!(matches!(reply, AdminResponse::Error(_)), "{reply:?}");
    c.close().await;
    let (calls, mut tails_ended) = handler();
    monitor.server.set_admin(calls);
    // A cookie member.
    let mut c = AdminClient::connect(addr, "localhost", tls.clone(), Some(&cookie), "ctl@h", IDLE)
        .await
        .unwrap();
    let reply = c.request(&AdminRequest::Status).await.unwrap();
    assert_eq!(reply, AdminResponse::Done("Status".into()));
    assert!(c.next().await.unwrap().is_none(), "one reply, then the end");
    c.close().await;
    // A certificate member, no cookie.
    let cert_tls = pki.client_tls_for(Some((&pki, "ops@localhost")), ADMIN_ALPN);
    let mut c = AdminClient::connect(addr, "localhost", cert_tls, None, "ops@localhost", IDLE)
        .await
        .unwrap();
    let reply = c.request(&AdminRequest::AccountList).await.unwrap();
    assert_eq!(reply, AdminResponse::Done("AccountList".into()));
    c.close().await;
    // A tail streams until the client goes away; then the handler sees it.
    let mut c = AdminClient::connect(addr, "localhost", tls.clone(), Some(&cookie), "ctl@h", IDLE)
        .await
        .unwrap();
    let tail = AdminRequest::LogTail {
        query: String::new(),
        class: None,
    };
    c.send(&tail).await.unwrap();
    for want in 1..=3 {
        match c.next().await.unwrap() {
            Some(AdminResponse::Event(e)) => assert_eq!(e.seq, want),
            other => panic!("{other:?}"),
        }
    }
    c.close().await;
    tokio::time::timeout(Duration::from_secs(10), tails_ended.recv())
        .await
        .expect("the tail ends with its client");
    // A wrong cookie: the client gives the server up (it did not prove the client's
    // cookie) before it sends its request; the server counts a refusal.
    let before = monitor.server.refused();
    let wrong = Cookie::from_secret(b"another cluster's cookie!!").unwrap();
    let refused = AdminClient::connect(addr, "localhost", tls.clone(), Some(&wrong), "x@h", IDLE)
        .await
        .unwrap_err();
    match refused {
        MonitorError::Refused(reason) => {
            assert!(
                reason.contains("did not prove the cluster cookie"),
                "{reason}"
            )
        }
        other => panic!("{other}"),
    }
    let server = monitor.server.clone();
    wait_for("the refusal counted", || server.refused() > before).await;
    // An oversized request closes that connection only; the next client is served.
    let mut c = AdminClient::connect(addr, "localhost", tls.clone(), Some(&cookie), "ctl@h", IDLE)
        .await
        .unwrap();
    let huge = AdminRequest::AccountUpdate {
        name: "u".into(),
        password: "x".repeat(fubar_logproto::link::MAX_ADMIN_REQUEST + (1 << 10)),
    };
    assert!(c.request(&huge).await.is_err());
    let mut c = AdminClient::connect(addr, "localhost", tls, Some(&cookie), "ctl@h", IDLE)
        .await
        .unwrap();
    let reply = c.request(&AdminRequest::Status).await.unwrap();
    assert_eq!(reply, AdminResponse::Done("Status".into()));
    c.close().await;
    // Admin clients are not nodes: no link is listed for them.
    assert!(
        monitor.server.stats().is_empty(),
        "{:?}",
        monitor.server.stats()
    );
    monitor.server.shutdown().await;
}
