//! Serving the admin socket.

use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fubar_logproto::admin::{AdminRequest, AdminResponse};
use fubar_logproto::frame;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

use super::context::NodeContext;
use super::dispatch::dispatch;

/// Largest admin request accepted: as the remote admin's bound (a topic rules import carries
/// a whole acl_file).
const MAX_REQUEST: usize = fubar_logproto::link::MAX_ADMIN_REQUEST;
/// Time a client has to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A bound admin socket.
#[derive(Debug)]
pub struct Endpoint {
    listener: UnixListener,
    path: PathBuf,
    node: Arc<NodeContext>,
}

impl Endpoint {
    /// Binds the socket at `path` (replacing a stale one: the state lock already proved that
    /// no other node uses this directory) with mode 0600.
    pub fn bind(path: &Path, node: Arc<NodeContext>) -> io::Result<Self> {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        Ok(Self {
            listener,
            path: path.to_owned(),
            node,
        })
    }

    /// Serves requests until the node shuts down; then removes the socket.
    pub async fn run(self) {
        let shutdown = self.node.broker.shutdown.clone();
        // Requests in flight when the node stops (`ctl stop` itself) still get their reply.
        let in_flight = tokio_util::task::TaskTracker::new();
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                a = self.listener.accept() => a,
            };
            match accepted {
                Ok((stream, _)) => {
                    in_flight.spawn(serve(stream, self.node.clone()));
                }
                Err(e) => {
                    tracing::warn!(target: "warning", error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        in_flight.close();
        let _ = tokio::time::timeout(REPLY_GRACE, in_flight.wait()).await;
        let _ = std::fs::remove_file(&self.path);
    }
}

/// How long a stopping node waits for admin replies still being written (a live tail is
/// cut off after it).
const REPLY_GRACE: Duration = Duration::from_secs(2);

async fn serve(mut stream: UnixStream, node: Arc<NodeContext>) {
    let request = match tokio::time::timeout(REQUEST_TIMEOUT, read_request(&mut stream)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::warn!(target: "warning", error = %e, "bad admin request");
            let reply = AdminResponse::Error(format!("bad request: {e}"));
            let _ = write_reply(&mut stream, &reply).await;
            return;
        }
        Err(_) => {
            tracing::warn!(target: "warning", "admin client sent no request in time");
            return;
        }
    };
    let (replies, mut rx) = mpsc::channel(fubar_monitor::admin::ADMIN_REPLY_CAPACITY);
    tokio::spawn(dispatch(node, super::Requester::Local, request, replies));
    // Dropping `rx` when the client is gone ends a tail.
    while let Some(reply) = rx.recv().await {
        if let Err(e) = write_frame(&mut stream, &reply).await {
            tracing::debug!(target: "debug", error = %e, "admin reply not delivered");
            return;
        }
    }
    let _ = stream.shutdown().await;
}

async fn read_request(stream: &mut UnixStream) -> io::Result<AdminRequest> {
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).await?;
    let len = frame::body_len(header, MAX_REQUEST).map_err(io::Error::other)?;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await?;
    frame::decode(&body).map_err(io::Error::other)
}

async fn write_frame(stream: &mut UnixStream, reply: &AdminResponse) -> io::Result<()> {
    let bytes = frame::encode(reply).map_err(io::Error::other)?;
    stream.write_all(&bytes).await
}

async fn write_reply(stream: &mut UnixStream, reply: &AdminResponse) -> io::Result<()> {
    write_frame(stream, reply).await?;
    stream.shutdown().await
}

/// Remote admin requests waiting for the dispatcher (each then runs in its own task).
const REMOTE_QUEUE: usize = 64;

/// Serves remote admin (ALPN `fubar-admin/1`) on the cluster port `server` with the node's
/// own admin commands, as its Unix socket does, until the node shuts down.
pub fn serve_remote(server: &fubar_monitor::server::MonitorServer, node: Arc<NodeContext>) {
    let (calls, mut rx) = mpsc::channel(REMOTE_QUEUE);
    server.set_admin(calls);
    let shutdown = node.broker.shutdown.clone();
    tokio::spawn(async move {
        loop {
            let call = tokio::select! {
                c = rx.recv() => c,
                _ = shutdown.cancelled() => None,
            };
            let Some(call) = call else { break };
            let who = super::Requester::Remote {
                caller: call.caller,
                peer: call.peer,
            };
            tokio::spawn(dispatch(node.clone(), who, call.request, call.replies));
        }
    });
}
