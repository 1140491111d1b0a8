//! One admin request, wherever it came from (the local Unix socket or the monitor's QUIC
//! endpoint): its replies go to a channel the transport drains.

use std::sync::Arc;

use fubar_logproto::admin::{AdminRequest, AdminResponse};
use tokio::sync::mpsc;

use super::{commands, monitor_commands};
use crate::broker::Broker;

/// Runs `request` and sends its replies on `replies`: one, or for `LogTail` a stream of
/// events until the client goes away (`replies` closed) or the node stops.
pub async fn dispatch(
    broker: Arc<Broker>,
    request: AdminRequest,
    replies: mpsc::Sender<AdminResponse>,
) {
    if let AdminRequest::LogTail { query, class } = request {
        if let Err(why) = monitor_commands::tail(&broker, &query, class.as_deref(), &replies).await
        {
            let _ = replies.send(AdminResponse::Error(why)).await;
        }
        return;
    }
    let reply = commands::execute(&broker, request).await;
    let _ = replies.send(reply).await;
}
