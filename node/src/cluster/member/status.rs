//! What `fubar ctl cluster status` shows: the cluster as this node sees it.

use std::collections::BTreeSet;

use std::time::{Duration, Instant};

use fubar_logproto::admin::{ClusterStatus, MemberStatus};
use openraft::ServerState;

use super::ClusterMember;
use crate::cluster::forward::LinkFigures;

impl ClusterMember {
    /// The cluster as this node sees it.
    pub fn status(&self) -> ClusterStatus {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let now = Instant::now();
        let seen = self.seen.lock().clone();
        let last_log = metrics.last_log_index.unwrap_or(0);
        let name_of = |id: u64| {
            membership
                .get_node(&id)
                .map_or_else(|| id.to_string(), |n| n.name.clone())
        };
        let members = membership
            .nodes()
            .map(|(id, n)| {
                let link = if *id == self.id {
                    "self".to_owned()
                } else {
                    match seen.get(id) {
                        Some(t) if now.duration_since(*t) < self.config.node_down => "up".into(),
                        Some(t) => format!("down {}s", now.duration_since(*t).as_secs()),
                        None => "down".into(),
                    }
                };
                let lag = metrics.replication.as_ref().map(|r| {
                    let matched = r.get(id).cloned().flatten().map_or(0, |l| l.index);
                    last_log.saturating_sub(matched)
                });
                MemberStatus {
                    name: n.name.clone(),
                    addr: n.addr.clone(),
                    role: n.role.to_string(),
                    kind: if voters.contains(id) {
                        "voter"
                    } else {
                        "learner"
                    }
                    .into(),
                    link,
                    lag,
                }
            })
            .collect();
        let (routes, clients) = self.view.sizes();
        ClusterStatus {
            node: self.info.name.clone(),
            leader: metrics.current_leader.map(name_of),
            term: metrics.current_term,
            applied: metrics.last_applied.map_or(0, |l| l.index),
            members,
            routes: routes as u64,
            clients: clients as u64,
            pending: self.pending.len() as u64,
        }
    }

    /// The forward links to the other members, with the round-trip time of the connection
    /// to each (for `/metrics`).
    pub fn link_figures(&self) -> Vec<(LinkFigures, Option<Duration>)> {
        let links = self.links.read();
        links
            .iter()
            .map(|(id, link)| (link.figures(), self.peers.rtt(*id)))
            .collect()
    }

    /// The last index in this node's Raft log (appended, not necessarily committed yet).
    pub fn last_log_index(&self) -> u64 {
        self.raft.metrics().borrow().last_log_index.unwrap_or(0)
    }

    /// Whether this node is the leader.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }
}
