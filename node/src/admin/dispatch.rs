//! The one entry point of admin requests, whatever the transport: the Unix socket
//! ([`super::Endpoint`]) and, on a cluster member, the cluster port
//! (`serve_remote`). Each request is authorized first
//! ([`super::authz`]); replies go to a channel the transport drains.

use std::sync::Arc;

use fubar_logproto::admin::{AdminRequest, AdminResponse};
use tokio::sync::mpsc;

use super::authz::{authorize, Requester};
use super::context::NodeContext;
use super::{commands, log_commands, monitor_commands};

/// Runs `request` from `who` and sends its replies on `replies`: a refusal, one reply, or a
/// stream of them (`LogTail` until the client goes away or the node stops, `LogDump` until
/// the text is all sent).
pub async fn dispatch(
    node: Arc<NodeContext>,
    who: Requester,
    request: AdminRequest,
    replies: mpsc::Sender<AdminResponse>,
) {
    if let Err(why) = authorize(&who, &request) {
        let _ = replies.send(AdminResponse::Error(why)).await;
        return;
    }
    match request {
        AdminRequest::LogTail { query, class } => {
            if let Err(why) =
                monitor_commands::tail(&node, &query, class.as_deref(), &replies).await
            {
                let _ = replies.send(AdminResponse::Error(why)).await;
            }
        }
        AdminRequest::LogDump { class } => {
            let out = replies.clone();
            let n = node.clone();
            let done =
                tokio::task::spawn_blocking(move || log_commands::dump(&n, class.as_deref(), &out))
                    .await
                    .unwrap_or_else(|e| Err(e.to_string()));
            if let Err(why) = done {
                let _ = replies.send(AdminResponse::Error(why)).await;
            }
        }
        request => {
            let reply = commands::execute(&node, request).await;
            let _ = replies.send(reply).await;
        }
    }
}
