//! Three voters and a learner in one process, wired by an in-memory network: the shape the
//! node's QUIC glue takes (each RPC goes to the target's `Raft` handle; over QUIC the other
//! end deserializes the request and makes the same call).

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{Config, SnapshotPolicy};
use tempfile::TempDir;

use super::*;

/// Every node's `Raft`, by id: the in-memory stand-in for the cluster's QUIC links.
#[derive(Clone, Default)]
struct Router(Arc<Mutex<BTreeMap<u64, Raft>>>);

/// A link to one node.
struct Link {
    target: u64,
    router: Router,
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<u64, NodeInfo, RaftError<u64, E>>>;

impl Link {
    fn raft(&self) -> Result<Raft, Unreachable> {
        let nodes = self.router.0.lock();
        nodes
            .get(&self.target)
            .cloned()
            .ok_or_else(|| Unreachable::new(&std::io::Error::other("node down")))
    }
}

impl RaftNetworkFactory<TypeConfig> for Router {
    type Network = Link;

    async fn new_client(&mut self, target: u64, _node: &NodeInfo) -> Link {
        // A real factory dials `node.addr` (or reuses a connection); failures are reported per
        // RPC as `Unreachable`, so openraft backs off and retries.
        Link {
            target,
            router: self.clone(),
        }
    }
}

impl RaftNetwork<TypeConfig> for Link {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>> {
        let raft = self.raft()?;
        raft.append_entries(rpc)
            .await
            .map_err(|e| RemoteError::new(self.target, e).into())
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<u64>, InstallSnapshotError> {
        let raft = self.raft()?;
        raft.install_snapshot(rpc)
            .await
            .map_err(|e| RemoteError::new(self.target, e).into())
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> RpcResult<VoteResponse<u64>> {
        let raft = self.raft()?;
        raft.vote(rpc)
            .await
            .map_err(|e| RemoteError::new(self.target, e).into())
    }
}

struct Member {
    id: u64,
    info: NodeInfo,
    raft: Raft,
    store: Store,
    heard: Arc<Recorder>,
    _dir: TempDir,
}

async fn start(name: &str, router: &Router, config: &Arc<Config>) -> Member {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let heard = Arc::new(Recorder::default());
    let (log_store, state_machine) = store.replication(listener(&heard)).unwrap();
    let id = node_id(name);
    let raft = Raft::new(id, config.clone(), router.clone(), log_store, state_machine)
        .await
        .unwrap();
    router.0.lock().insert(id, raft.clone());
    Member {
        id,
        info: NodeInfo {
            name: name.into(),
            addr: format!("127.0.0.1:{}", 7000 + router.0.lock().len()),
            role: NodeRole::Broker,
        },
        raft,
        store,
        heard,
        _dir: dir,
    }
}

const WAIT: Option<Duration> = Some(Duration::from_secs(10));

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_the_leader_reaches_every_voter_and_a_learner() {
    let config = Arc::new(
        Config {
            heartbeat_interval: 50,
            election_timeout_min: 200,
            election_timeout_max: 400,
            // Keep no log behind snapshots, so the learner below must get a snapshot.
            max_in_snapshot_log_to_keep: 0,
            purge_batch_size: 1,
            snapshot_policy: SnapshotPolicy::Never,
            ..Default::default()
        }
        .validate()
        .unwrap(),
    );
    let router = Router::default();
    let mut members = Vec::new();
    for name in ["n1@host", "n2@host", "n3@host"] {
        members.push(start(name, &router, &config).await);
    }
    let voters: BTreeMap<u64, NodeInfo> = members.iter().map(|m| (m.id, m.info.clone())).collect();
    members[0].raft.initialize(voters).await.unwrap();
    let leader_id = members[0]
        .raft
        .wait(WAIT)
        .metrics(|m| m.current_leader.is_some(), "a leader")
        .await
        .unwrap()
        .current_leader
        .unwrap();
    let leader = members.iter().find(|m| m.id == leader_id).unwrap();

    let written = leader
        .raft
        .client_write(ChangeBatch(sample_changes()))
        .await
        .unwrap();
    assert_eq!(written.data.0.len(), sample_changes().len());
    for m in &members {
        m.raft
            .wait(WAIT)
            .applied_index_at_least(Some(written.log_id.index), "the write")
            .await
            .unwrap();
    }
    let expected = reads(&leader.store);
    assert_eq!(expected.routes, vec![("x/#".into(), 7), ("x/#".into(), 8)]);
    for m in &members {
        assert_eq!(reads(&m.store), expected, "{}", m.info);
        assert_eq!(m.heard.take().len(), sample_changes().len(), "{}", m.info);
    }

    // Snapshot and purge the leader's log: a learner joining now catches up by snapshot.
    leader.raft.trigger().snapshot().await.unwrap();
    leader
        .raft
        .wait(WAIT)
        .metrics(
            |m| m.purged.is_some_and(|p| p.index >= written.log_id.index),
            "purged after the snapshot",
        )
        .await
        .unwrap();
    let learner = start("n4@host", &router, &config).await;
    let joined = leader
        .raft
        .add_learner(learner.id, learner.info.clone(), true)
        .await
        .unwrap();
    learner
        .raft
        .wait(WAIT)
        .applied_index_at_least(Some(joined.log_id.index), "the learner's join")
        .await
        .unwrap();
    assert_eq!(reads(&learner.store), expected);
    assert!(learner.heard.take().contains(&Heard::Reset));

    // Later writes reach the learner through the log.
    let written = leader
        .raft
        .client_write(ChangeBatch(vec![Change::RegisterClient {
            client_id: "c1".into(),
            node: learner.id,
        }]))
        .await
        .unwrap();
    assert_eq!(written.data.0, vec![Outcome::PreviousHolder(Some(7))]);
    learner
        .raft
        .wait(WAIT)
        .applied_index_at_least(Some(written.log_id.index), "the second write")
        .await
        .unwrap();
    assert_eq!(learner.store.client_holder("c1").unwrap(), Some(learner.id));
    assert_eq!(
        learner.heard.take(),
        vec![Heard::Applied(
            Change::RegisterClient {
                client_id: "c1".into(),
                node: learner.id,
            },
            Outcome::PreviousHolder(Some(7)),
        )]
    );

    for m in members.iter().chain([&learner]) {
        m.raft.shutdown().await.unwrap();
    }
}
