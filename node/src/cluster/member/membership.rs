//! Membership: founding a cluster, joining through a master, adding and removing members
//! (on the leader), keeping the voters odd and capped, and a member's new address.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use anyhow::Context as _;
use fubar_store::replicated::{node_id, Change, NodeInfo, NodeRole};
use openraft::ChangeMembers;

use super::{ClusterMember, RETRY_MAX, RETRY_MIN};
use crate::cluster::peer_wire::{PeerRequest, PeerResponse};
use crate::cluster::NodeName;

impl ClusterMember {
    /// Makes this node the first member of a new cluster.
    pub(super) async fn found(&self) -> anyhow::Result<()> {
        let mut nodes = BTreeMap::new();
        nodes.insert(self.id, self.info.clone());
        self.raft
            .initialize(nodes)
            .await
            .context("cannot found the cluster")?;
        tracing::info!(target: "info", node = %self.info.name, "cluster founded");
        Ok(())
    }

    /// Asks `master_name` to add this node, until it does.
    pub(super) async fn join_through(self: Arc<Self>, master_name: NodeName) {
        let master = master_name.id();
        let master_info = NodeInfo {
            name: master_name.id(),
            addr: format!("{}:{}", master_name.host, master_name.port),
            role: NodeRole::Broker,
        };
        let master_id = node_id(&master_info.name);
        self.peers.learn(master_id, master_info);
        let mut wait = RETRY_MIN;
        let started = tokio::time::Instant::now();
        let mut warn_after = self.config.join_warning;
        loop {
            let last_reason: String = match self
                .peers
                .call(master_id, &PeerRequest::Join(self.info.clone()))
                .await
            {
                Ok(PeerResponse::Done(Ok(()))) => {
                    tracing::info!(target: "info", node = %self.info.name, master = %master,
                        "joined the cluster");
                    return;
                }
                Ok(PeerResponse::Done(Err(e))) => {
                    tracing::warn!(target: "warning", master = %master, reason = %e,
                        "join refused; retrying");
                    format!("join refused: {e}")
                }
                Ok(other) => {
                    tracing::error!(target: "error", master = %master, answer = ?other,
                        "unexpected answer to a join; retrying");
                    "unexpected answer to a join".into()
                }
                Err(e) => {
                    tracing::warn!(target: "warning", master = %master, error = %e,
                        "cannot reach the master to join; retrying");
                    format!("cannot reach it: {e}")
                }
            };
            let waited = started.elapsed();
            if waited >= warn_after {
                // Not only in the warning log: an operator watching the terminal must not
                // believe this node is clustered while it is alone. Less often as time goes.
                eprintln!(
                    "fubar: {} has not joined its cluster through {} after {}s ({}); still trying",
                    self.info.name,
                    master_name,
                    waited.as_secs(),
                    last_reason
                );
                warn_after = waited * 2;
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.stop.cancelled() => return,
            }
            wait = (wait * 2).min(RETRY_MAX);
        }
    }

    /// Tells the cluster this node's new address (it restarted on another port or host):
    /// asks each other member in turn to pass it to the leader, until one does.
    pub(super) async fn announce_address(self: Arc<Self>) {
        let mut wait = RETRY_MIN;
        loop {
            let others: Vec<(u64, NodeInfo)> = {
                let m = self.raft.metrics().borrow().membership_config.clone();
                m.membership()
                    .nodes()
                    .filter(|(id, _)| **id != self.id)
                    .map(|(id, n)| (*id, n.clone()))
                    .collect()
            };
            for (id, info) in others {
                self.peers.learn(id, info);
                let request = PeerRequest::Join(self.info.clone());
                if let Ok(PeerResponse::Done(Ok(()))) = self.peers.call(id, &request).await {
                    tracing::info!(target: "info", node = %self.info.name, addr = %self.info.addr,
                        "new cluster address announced");
                    return;
                }
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.stop.cancelled() => return,
            }
            wait = (wait * 2).min(RETRY_MAX);
        }
    }

    /// Adds `info` to the cluster (on the leader; passed on to it from another member).
    pub async fn join(&self, info: NodeInfo) -> Result<(), MembershipError> {
        let leader = self.leader().ok_or(MembershipError::NoLeader)?;
        if leader != self.id {
            return match self.peers.call(leader, &PeerRequest::Join(info)).await {
                Ok(PeerResponse::Done(r)) => r.map_err(MembershipError::Refused),
                Ok(other) => Err(MembershipError::Leader(format!(
                    "unexpected answer {other:?}"
                ))),
                Err(e) => Err(MembershipError::Leader(e.to_string())),
            };
        }
        let id = node_id(&info.name);
        let name = info.name.clone();
        self.peers.learn(id, info.clone());
        let recorded = {
            let m = self.raft.metrics().borrow().membership_config.clone();
            m.membership().get_node(&id).cloned()
        };
        match recorded {
            Some(r) if r == info => {} // joined already (a retry)
            Some(_) => {
                // A member restarted at a new address: same node, same log, new place.
                self.raft
                    .change_membership(ChangeMembers::SetNodes([(id, info)].into()), true)
                    .await
                    .map_err(|e| MembershipError::Raft(e.to_string()))?;
                tracing::info!(target: "info", node = %name, "member moved to a new address");
            }
            None => {
                self.raft
                    .add_learner(id, info, true)
                    .await
                    .map_err(|e| MembershipError::Raft(e.to_string()))?;
            }
        }
        self.balance_voters().await?;
        self.dropped_lock().remove(&id);
        // Its silence starts again from now: it has just spoken.
        self.peers.heard_from(id);
        tracing::info!(target: "info", node = %name, "member joined");
        Ok(())
    }

    /// Removes member `id` for good (on the leader; passed on to it from another member).
    pub async fn leave(&self, id: u64) -> Result<(), MembershipError> {
        let leader = self.leader().ok_or(MembershipError::NoLeader)?;
        if leader != self.id {
            return match self.peers.call(leader, &PeerRequest::Leave(id)).await {
                Ok(PeerResponse::Done(r)) => r.map_err(MembershipError::Refused),
                Ok(other) => Err(MembershipError::Leader(format!(
                    "unexpected answer {other:?}"
                ))),
                Err(e) => Err(MembershipError::Leader(e.to_string())),
            };
        }
        let membership = self.raft.metrics().borrow().membership_config.clone();
        let voters: BTreeSet<u64> = membership.membership().voter_ids().collect();
        if voters.contains(&id) {
            let mut rest = voters.clone();
            rest.remove(&id);
            if rest.is_empty() {
                return Err(MembershipError::LastVoter);
            }
            self.raft
                .change_membership(ChangeMembers::RemoveVoters([id].into()), false)
                .await
                .map_err(|e| MembershipError::Raft(e.to_string()))?;
        } else {
            self.raft
                .change_membership(ChangeMembers::RemoveNodes([id].into()), false)
                .await
                .map_err(|e| MembershipError::Raft(e.to_string()))?;
        }
        self.propose_now(vec![Change::DropNode { node: id }])
            .await?;
        self.balance_voters().await?;
        Ok(())
    }

    /// Promotes learners until the voters are as many as allowed, and odd.
    pub(super) async fn balance_voters(&self) -> Result<(), MembershipError> {
        let membership = self.raft.metrics().borrow().membership_config.clone();
        let voters: BTreeSet<u64> = membership.membership().voter_ids().collect();
        let learners: Vec<u64> = membership.membership().learner_ids().collect();
        let total = voters.len() + learners.len();
        let mut want = total.min(self.config.max_voters.max(1));
        if want.is_multiple_of(2) {
            want -= 1;
        }
        if voters.len() >= want {
            return Ok(());
        }
        let add: BTreeSet<u64> = learners.into_iter().take(want - voters.len()).collect();
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(add), false)
            .await
            .map_err(|e| MembershipError::Raft(e.to_string()))?;
        Ok(())
    }
}

/// Why a member could not join or leave.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// No leader is known at the moment.
    #[error("no leader at the moment")]
    NoLeader,
    /// The only voter cannot leave: nobody would be left to decide.
    #[error("the last voter cannot leave")]
    LastVoter,
    /// The leader could not be asked, or answered out of turn.
    #[error("{0}")]
    Leader(String),
    /// The leader refused (its reason).
    #[error("{0}")]
    Refused(String),
    /// Raft did not change the membership.
    #[error("{0}")]
    Raft(String),
    /// The member's departure was not recorded in the replicated state.
    #[error(transparent)]
    NotRecorded(#[from] super::proposer::ProposeError),
}
