//! What the broker tells the cluster layer, when the node is a cluster member: the broker
//! knows nothing of Raft or peer links, it only reports the events that change the
//! replicated state or that other nodes must see.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use fubar_store::records::{ReplicaOp, RestoredSession};

use super::client_owner::NotOwner;
use crate::mqtt::message::Message;

/// The cluster layer, seen from the broker. Calls are made on the hot path and must not
/// block: implementations queue the work (bounded) and return.
pub trait ClusterHooks: Send + Sync + fmt::Debug {
    /// Whether other nodes exist to tell: false on a standalone node, whose broker then
    /// keeps no per-filter counts and publishes no per-node `$SYS` topics.
    fn is_clustered(&self) -> bool {
        true
    }
    /// The first local subscription to `filter` was made (routes are per node and filter).
    fn route_added(&self, filter: &str);
    /// The last local subscription to `filter` is gone.
    fn route_removed(&self, filter: &str);
    /// A message was published on this node (by a client or a will): send it to every other
    /// node with a matching route or holding the client id it is addressed to, and replicate
    /// it if it is retained and `replicate_retained` (false when the retained store here
    /// refused it: the bound is checked where the message is published, and every member
    /// applies what is replicated). Returns whether another node, or a share group (on any node),
    /// takes it: an MQTT 5.0 publisher's acknowledgement says "no matching subscribers"
    /// otherwise.
    fn forward(&self, message: &Arc<Message>, replicate_retained: bool) -> bool;
    /// A message a member of share group `share` here left unacknowledged: send it to
    /// another node with members of the group, in turn. False when no other node has any.
    fn forward_share(&self, share: &Arc<str>, message: &Arc<Message>) -> bool;
    /// A client's session is attached to this node now, for a connection of verified user
    /// `owner` (none: no user was proven). The cluster records the owner with the holder, so
    /// every node refuses the id to other users even while its holder is away; when two users
    /// claim a new id at once on two nodes, the registration Raft orders first wins and the
    /// other node ends its session.
    fn client_attached(&self, client_id: &str, owner: Option<&str>);
    /// A client's session has ended on this node.
    fn client_ended(&self, client_id: &str);
    /// A client is connecting here for verified user `user`: if another node holds its
    /// session, that node closes its connection and, when `keep` (clean session 0) and the
    /// session is persistent, hands the session over. That node decides ownership: a session
    /// of another user stays there with its connection, and `NotOwner` comes back. Resolves
    /// at once when no other node holds it.
    fn take_over<'a>(
        &'a self,
        client_id: &'a str,
        user: Option<&'a str>,
        keep: bool,
    ) -> Pin<Box<dyn Future<Output = Result<Option<RestoredSession>, NotOwner>> + Send + 'a>>;
    /// Where acknowledgements wait for copies on other members (`None`: they never do).
    fn ack_gate(&self) -> Option<Arc<super::ack_gate::AckGate>> {
        None
    }
    /// Whether persistent sessions are copied to other members now: their journal writes
    /// are then also handed to `replicate`.
    fn replicating(&self) -> bool {
        false
    }
    /// A persistent session's journal writes, made here (called under the session's lock,
    /// in order): copy them to its backups. `full` is the whole session, for a backup that
    /// has no copy yet. Must not block.
    fn replicate(
        &self,
        _client_id: &str,
        _ops: Vec<ReplicaOp>,
        _full: &dyn Fn() -> RestoredSession,
    ) {
    }
    /// A persistent session ended here (or moved away): its copies are deleted.
    fn session_forgotten(&self, _client_id: &str) {}
    /// Whether a connection for `client_id` must be refused now (CONNACK server unavailable):
    /// its session is replicated and this node has not heard from a majority of the cluster
    /// for `cluster.session_lease_ms`, so another member may be serving it.
    fn refuses_session(&self, _client_id: &str) -> bool {
        false
    }
}

/// The hooks of a standalone node: no other node to tell, none to take a session from.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalOnly;

impl ClusterHooks for LocalOnly {
    fn is_clustered(&self) -> bool {
        false
    }
    fn route_added(&self, _filter: &str) {}
    fn route_removed(&self, _filter: &str) {}
    fn forward(&self, _message: &Arc<Message>, _replicate_retained: bool) -> bool {
        false
    }
    fn forward_share(&self, _share: &Arc<str>, _message: &Arc<Message>) -> bool {
        false
    }
    fn client_attached(&self, _client_id: &str, _owner: Option<&str>) {}
    fn client_ended(&self, _client_id: &str) {}
    fn take_over<'a>(
        &'a self,
        _client_id: &'a str,
        _user: Option<&'a str>,
        _keep: bool,
    ) -> Pin<Box<dyn Future<Output = Result<Option<RestoredSession>, NotOwner>> + Send + 'a>> {
        Box::pin(std::future::ready(Ok(None)))
    }
}

/// Hooks that remember what the broker told them (unit tests).
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct Recording {
    /// The client ids the broker said were free.
    pub(crate) ended: parking_lot::Mutex<Vec<String>>,
    /// The topics of the messages the broker asked to forward.
    pub(crate) forwarded: parking_lot::Mutex<Vec<String>>,
    /// With a gate, persistent sessions are replicated: each `replicate` is one copy, a ticket
    /// on link `Recording::BACKUP` that the test settles, noted in `copies`.
    pub(crate) gate: Option<Arc<super::ack_gate::AckGate>>,
    /// Per copy: its ticket and the topics of the messages it queued.
    pub(crate) copies: tokio::sync::watch::Sender<Vec<(u64, Vec<String>)>>,
}

#[cfg(test)]
impl Recording {
    /// The backup's link in the gate.
    pub(crate) const BACKUP: u64 = 9;
}

#[cfg(test)]
impl ClusterHooks for Recording {
    fn route_added(&self, _filter: &str) {}
    fn route_removed(&self, _filter: &str) {}
    fn forward(&self, message: &Arc<Message>, _replicate_retained: bool) -> bool {
        self.forwarded.lock().push(message.topic.to_string());
        false
    }
    fn forward_share(&self, _share: &Arc<str>, _message: &Arc<Message>) -> bool {
        false
    }
    fn client_attached(&self, _client_id: &str, _owner: Option<&str>) {}
    fn client_ended(&self, client_id: &str) {
        self.ended.lock().push(client_id.to_owned());
    }
    fn take_over<'a>(
        &'a self,
        _client_id: &'a str,
        _user: Option<&'a str>,
        _keep: bool,
    ) -> Pin<Box<dyn Future<Output = Result<Option<RestoredSession>, NotOwner>> + Send + 'a>> {
        Box::pin(std::future::ready(Ok(None)))
    }
    fn ack_gate(&self) -> Option<Arc<super::ack_gate::AckGate>> {
        self.gate.clone()
    }
    fn replicating(&self) -> bool {
        self.gate.is_some()
    }
    fn replicate(
        &self,
        _client_id: &str,
        ops: Vec<ReplicaOp>,
        _full: &dyn Fn() -> RestoredSession,
    ) {
        let Some(gate) = &self.gate else { return };
        let ticket = gate.issue(&[Self::BACKUP]);
        let topics = ops
            .iter()
            .filter_map(|op| match op {
                ReplicaOp::PutQueued { record, .. } => Some(record.message.topic.clone()),
                _ => None,
            })
            .collect();
        self.copies.send_modify(|c| c.push((ticket, topics)));
    }
}
