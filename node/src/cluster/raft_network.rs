//! openraft's network over the peer links: each Raft message is one request on its own
//! stream to the target member.

use std::sync::Arc;

use fubar_store::replicated::{NodeInfo, TypeConfig};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use super::peer_wire::{PeerRequest, PeerResponse};
use super::peers::{PeerError, Peers};

/// Makes a [`RaftClient`] per target member.
#[derive(Debug, Clone)]
pub struct RaftNetworkOverPeers {
    peers: Arc<Peers>,
}

impl RaftNetworkOverPeers {
    /// Raft messages over `peers`.
    pub fn new(peers: Arc<Peers>) -> Self {
        Self { peers }
    }
}

impl RaftNetworkFactory<TypeConfig> for RaftNetworkOverPeers {
    type Network = RaftClient;

    async fn new_client(&mut self, target: u64, node: &NodeInfo) -> RaftClient {
        self.peers.learn(target, node.clone());
        RaftClient {
            peers: self.peers.clone(),
            target,
        }
    }
}

/// Raft messages to one member.
#[derive(Debug)]
pub struct RaftClient {
    peers: Arc<Peers>,
    target: u64,
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<u64, NodeInfo, RaftError<u64, E>>>;

impl RaftClient {
    async fn call(
        &self,
        request: &PeerRequest,
        option: &RPCOption,
    ) -> Result<PeerResponse, RPCError<u64, NodeInfo, RaftError<u64, InstallSnapshotError>>> {
        self.peers
            .call_within(self.target, request, option.hard_ttl())
            .await
            .map_err(|e| match e {
                PeerError::Timeout { .. } | PeerError::Link { .. } | PeerError::Unknown(_) => {
                    RPCError::Unreachable(Unreachable::new(&e))
                }
                PeerError::Address { .. } => RPCError::Network(NetworkError::new(&e)),
            })
    }
}

fn unexpected<E: std::error::Error>(
    got: &PeerResponse,
) -> RPCError<u64, NodeInfo, RaftError<u64, E>> {
    let e = std::io::Error::other(format!("unexpected answer {got:?}"));
    RPCError::Network(NetworkError::new(&e))
}

/// The transport errors of a call, for an RPC whose remote error type is `E`.
fn retype<E: std::error::Error>(
    e: RPCError<u64, NodeInfo, RaftError<u64, InstallSnapshotError>>,
) -> RPCError<u64, NodeInfo, RaftError<u64, E>> {
    match e {
        RPCError::Unreachable(u) => RPCError::Unreachable(u),
        RPCError::Network(n) => RPCError::Network(n),
        other => RPCError::Network(NetworkError::new(&other)),
    }
}

impl RaftNetwork<TypeConfig> for RaftClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>> {
        match self
            .call(&PeerRequest::Append(rpc), &option)
            .await
            .map_err(retype)?
        {
            PeerResponse::Append(Ok(r)) => Ok(r),
            PeerResponse::Append(Err(e)) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(unexpected(&other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<u64>, InstallSnapshotError> {
        match self.call(&PeerRequest::Snapshot(rpc), &option).await? {
            PeerResponse::Snapshot(Ok(r)) => Ok(r),
            PeerResponse::Snapshot(Err(e)) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(unexpected(&other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<u64>> {
        match self
            .call(&PeerRequest::Vote(rpc), &option)
            .await
            .map_err(retype)?
        {
            PeerResponse::Vote(Ok(r)) => Ok(r),
            PeerResponse::Vote(Err(e)) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(unexpected(&other)),
        }
    }
}
