//! `Store`'s side of the replicated state: handing out the Raft storage, and the node's reads.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use fjall::KeyspaceCreateOptions;

use super::keyspaces::{
    parse_node, parse_route_key, DataKeyspaces, RAFT_LOG, RAFT_META, SM_META, SNAPSHOT,
};
use super::log_store::LogStore;
use super::snapshot::SnapshotStore;
use super::state_machine::{ApplyListener, StateMachine};
use crate::{Store, StoreError};

impl Store {
    /// The Raft log store and state machine over this store's database, for `Raft::new`.
    /// `listener` is told about every applied change. Callable once per `Store`: two state
    /// machines over one database would apply every entry twice.
    pub fn replication(
        &self,
        listener: Option<Arc<dyn ApplyListener>>,
    ) -> Result<(LogStore, StateMachine), StoreError> {
        if self.replication_taken.swap(true, Ordering::SeqCst) {
            return Err(StoreError::ReplicationTaken);
        }
        let ks = |name: &str| self.db.keyspace(name, KeyspaceCreateOptions::default);
        let log_store = LogStore::new(
            self.path.clone(),
            self.db.clone(),
            ks(RAFT_LOG)?,
            ks(RAFT_META)?,
        );
        let data = DataKeyspaces {
            accounts: self.accounts.clone(),
            acl: self.acl.clone(),
            settings: self.settings.clone(),
            retained: self.retained.clone(),
            routes: self.routes.clone(),
            clients: self.clients.clone(),
            topic_acl: self.topic_acl.clone(),
            client_owners: self.client_owners.clone(),
            placements: self.placements.clone(),
        };
        let snapshots = SnapshotStore::new(self.path.clone(), self.db.clone(), ks(SNAPSHOT)?);
        let state_machine = StateMachine::new(
            self.path.clone(),
            self.db.clone(),
            data,
            ks(SM_META)?,
            snapshots,
            listener,
        );
        Ok((log_store, state_machine))
    }

    /// Every route: (topic filter, node id with subscribers for it), by filter.
    pub fn routes(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.routes
            .iter()
            .map(|g| {
                let k = g.key()?;
                parse_route_key(&k).ok_or_else(|| self.corrupt(format!("route key {:?}", &k[..])))
            })
            .collect()
    }

    /// The node holding the session of `client_id`, if any.
    pub fn client_holder(&self, client_id: &str) -> Result<Option<u64>, StoreError> {
        self.clients
            .get(client_id)?
            .map(|v| {
                parse_node(&v)
                    .ok_or_else(|| self.corrupt(format!("client record of {client_id:?}")))
            })
            .transpose()
    }

    /// The whole client registry: (client id, node holding it), by client id.
    pub fn clients(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.clients
            .iter()
            .map(|g| {
                let (k, v) = g.into_inner()?;
                let id = String::from_utf8_lossy(&k).into_owned();
                let node = parse_node(&v)
                    .ok_or_else(|| self.corrupt(format!("client record of {id:?}")))?;
                Ok((id, node))
            })
            .collect()
    }

    /// Every client id with an owner: (client id, the verified user whose connection created
    /// its session), by client id.
    pub fn client_owners(&self) -> Result<Vec<(String, String)>, StoreError> {
        crate::text_pairs(&self.client_owners)
    }

    /// Every session placement: (client id, where it lives and its epoch), by client id.
    pub fn placements(&self) -> Result<Vec<(String, crate::records::Placement)>, StoreError> {
        self.placements
            .iter()
            .map(|g| {
                let (k, v) = g.into_inner()?;
                let id = String::from_utf8_lossy(&k).into_owned();
                Ok((id.clone(), self.decode("placement", &k, &v)?))
            })
            .collect()
    }
}
