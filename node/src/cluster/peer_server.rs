//! The serving side of peer links: each admitted member's connection, each request stream
//! on it answered by this node's Raft or cluster layer.

use std::sync::Arc;

use fubar_monitor::server::PeerLink;
use fubar_monitor::wire::{is_malformed, write_frame, FrameReader};
use fubar_monitor::MonitorError;
use quinn::{RecvStream, SendStream};
use tokio::sync::mpsc;

use super::forward;
use super::member::ClusterMember;
use super::peer_wire::{PeerRequest, PeerResponse, MAX_PEER_FRAME};
use crate::broker::client_owner::NotOwner;

/// Takes admitted links until the endpoint closes.
pub async fn serve(member: Arc<ClusterMember>, mut links: mpsc::Receiver<PeerLink>) {
    while let Some(link) = links.recv().await {
        tokio::spawn(serve_link(member.clone(), link));
    }
}

/// Answers every stream the member opens, until the connection ends.
async fn serve_link(member: Arc<ClusterMember>, link: PeerLink) {
    tracing::debug!(target: "debug", node = %link.node, peer = %link.conn.remote_address(),
        "cluster peer link admitted");
    let id = fubar_store::replicated::node_id(&link.node);
    while let Ok((send, recv)) = link.conn.accept_bi().await {
        // Any request shows the member is alive (the leader's heartbeats, above all).
        member.peers().heard_from(id);
        let member = member.clone();
        let node = link.node.clone();
        let peer = link.conn.remote_address();
        let conn = link.conn.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_stream(&member, &node, send, recv).await {
                if is_malformed(&e) {
                    tracing::warn!(target: "warning", node = %node, %peer, reason = %e,
                        "cluster link closed: malformed traffic");
                    conn.close(1u32.into(), b"malformed");
                } else {
                    tracing::debug!(target: "debug", node = %node, %peer, error = %e,
                        "cluster stream ended");
                }
            }
        });
    }
}

async fn serve_stream(
    member: &Arc<ClusterMember>,
    node: &str,
    mut send: SendStream,
    mut recv: RecvStream,
) -> Result<(), MonitorError> {
    let mut reader = FrameReader::new(MAX_PEER_FRAME);
    let Some(request) = reader.next::<PeerRequest>(&mut recv).await? else {
        return Ok(());
    };
    let response = match request {
        PeerRequest::Vote(rpc) => PeerResponse::Vote(member.raft.vote(rpc).await),
        PeerRequest::Append(rpc) => PeerResponse::Append(member.raft.append_entries(rpc).await),
        PeerRequest::Snapshot(rpc) => {
            PeerResponse::Snapshot(member.raft.install_snapshot(rpc).await)
        }
        // Any member may pass a join on (the master a new node named is not always the
        // leader); every link here has proven membership of the cluster.
        PeerRequest::Join(info) => {
            PeerResponse::Done(member.join(info).await.map_err(|e| e.to_string()))
        }
        PeerRequest::Leave(id) => {
            PeerResponse::Done(member.leave(id).await.map_err(|e| e.to_string()))
        }
        PeerRequest::Propose(batch) => {
            PeerResponse::Proposed(member.propose_now(batch.0).await.map_err(|e| e.to_string()))
        }
        PeerRequest::ReadIndex => PeerResponse::ReadIndex(member.read_index()),
        PeerRequest::Ping => PeerResponse::Pong {
            leader: member.leader(),
        },
        PeerRequest::TakeOver {
            client_id,
            keep,
            user,
        } => match member.give_up(&client_id, user.as_deref(), keep) {
            Ok(session) => PeerResponse::Session(session),
            Err(NotOwner { owner }) => PeerResponse::NotOwner { owner },
        },
        PeerRequest::Replicate { epoch: _ } => {
            let Some((store, window)) = member
                .broker()
                .and_then(|b| Some((b.store.clone()?, b.settings().cluster.receive_window)))
            else {
                return Err(MonitorError::Protocol(
                    "this node keeps no session copies".into(),
                ));
            };
            let view = member.view();
            return super::replica::serve::receive(store, view, node, window, send, recv, reader)
                .await;
        }
        PeerRequest::Forward { epoch } => {
            let Some(broker) = member.broker() else {
                return Err(MonitorError::Protocol("this node has no broker yet".into()));
            };
            return forward::receive(
                broker,
                member.delivered(),
                node.to_owned(),
                epoch,
                send,
                recv,
                reader,
            )
            .await;
        }
    };
    write_frame(&mut send, &response).await?;
    send.finish()
        .map_err(|e| MonitorError::Stream(e.to_string()))?;
    Ok(())
}
