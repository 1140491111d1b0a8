//! Applying changes: each change reads the state as left by the changes before it (in the same
//! entry and in earlier entries of the same `apply` call), and the writes of a whole call are
//! gathered so that they go to fjall in one atomic write batch.

use std::collections::BTreeMap;
use std::path::Path;

use fjall::OwnedWriteBatch as WriteBatch;

use super::change::{Change, Outcome};
use super::keyspaces::{parse_node, parse_route_key, route_key, DataKeyspaces, KeyValues, Ks};
use crate::records::Placement;
use crate::StoreError;

/// Writes not yet committed, layered over the keyspaces.
pub(crate) struct Pending<'a> {
    data: &'a DataKeyspaces,
    path: &'a Path,
    /// One write per key (a later write replaces an earlier one): fjall gives every write of a
    /// batch the same sequence number, so two writes to one key in a batch would be ambiguous.
    writes: BTreeMap<(Ks, Vec<u8>), Option<Vec<u8>>>,
}

impl<'a> Pending<'a> {
    pub(crate) fn new(data: &'a DataKeyspaces, path: &'a Path) -> Self {
        Self {
            data,
            path,
            writes: BTreeMap::new(),
        }
    }

    /// Applies one change; its writes join the pending ones.
    pub(crate) fn apply(&mut self, change: &Change) -> Result<Outcome, StoreError> {
        Ok(match change {
            Change::PutAccount { name, record } => {
                self.put(
                    Ks::Accounts,
                    name.as_bytes(),
                    postcard::to_allocvec(record)?,
                );
                Outcome::Done
            }
            Change::DeleteAccount { name } => Outcome::Removed(self.delete(Ks::Accounts, name)?),
            Change::PutAcl { cidr, allow } => {
                self.put(Ks::Acl, cidr.as_bytes(), vec![u8::from(*allow)]);
                Outcome::Done
            }
            Change::DeleteAcl { cidr } => Outcome::Removed(self.delete(Ks::Acl, cidr)?),
            Change::PutSetting { name, value } => {
                self.put(Ks::Settings, name.as_bytes(), value.as_bytes().to_vec());
                Outcome::Done
            }
            Change::PutRetained(message) => {
                self.put(
                    Ks::Retained,
                    message.topic.as_bytes(),
                    postcard::to_allocvec(message)?,
                );
                Outcome::Done
            }
            Change::DeleteRetained { topic } => Outcome::Removed(self.delete(Ks::Retained, topic)?),
            Change::AddRoute { filter, node } => {
                let key = route_key(filter, *node);
                let existed = self.get(Ks::Routes, &key)?.is_some();
                if !existed {
                    self.put(Ks::Routes, &key, Vec::new());
                }
                Outcome::Added(!existed)
            }
            Change::RemoveRoute { filter, node } => {
                Outcome::Removed(self.delete(Ks::Routes, route_key(filter, *node))?)
            }
            Change::RegisterClient { client_id, node } => self.register(client_id, *node, None)?,
            Change::RegisterOwnedClient {
                client_id,
                node,
                owner,
            } => self.register(client_id, *node, Some(owner))?,
            Change::UnregisterClient { client_id, node } => {
                let holds = self.client_holder(client_id)? == Some(*node);
                if holds {
                    self.writes
                        .insert((Ks::Clients, client_id.as_bytes().to_vec()), None);
                    // The session ended: the id is free for anyone again.
                    self.delete(Ks::ClientOwners, client_id)?;
                }
                Outcome::Removed(holds)
            }
            Change::DropNode { node } => self.drop_node(*node)?,
            Change::PutTopicRules { rules } => {
                for rule in rules {
                    self.put(Ks::TopicAcl, rule.as_bytes(), Vec::new());
                }
                Outcome::Done
            }
            Change::DeleteTopicRules { rules } => {
                let mut any = false;
                for rule in rules {
                    any |= self.delete(Ks::TopicAcl, rule)?;
                }
                Outcome::Removed(any)
            }
            Change::PlaceSession {
                client_id,
                placement,
            } => match self.placement(client_id)? {
                Some(current) if current.epoch > placement.epoch => Outcome::Stale {
                    epoch: current.epoch,
                },
                _ => {
                    let value = postcard::to_allocvec(placement)?;
                    self.put(Ks::Placements, client_id.as_bytes(), value);
                    Outcome::Done
                }
            },
            Change::ForgetPlacement { client_id, epoch } => {
                let current = self.placement(client_id)?;
                let same = current.is_some_and(|p| p.epoch == *epoch);
                if same {
                    self.delete(Ks::Placements, client_id)?;
                }
                Outcome::Removed(same)
            }
        })
    }

    /// Adds the pending writes to `batch`.
    pub(crate) fn write_into(self, batch: &mut WriteBatch) {
        for ((ks, key), value) in self.writes {
            let keyspace = self.data.get(ks);
            match value {
                Some(v) => batch.insert(keyspace, key, v),
                None => batch.remove(keyspace, key),
            }
        }
    }

    fn get(&self, ks: Ks, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(v) = self.writes.get(&(ks, key.to_vec())) {
            return Ok(v.clone());
        }
        Ok(self.data.get(ks).get(key)?.map(|v| v.to_vec()))
    }

    fn put(&mut self, ks: Ks, key: &[u8], value: Vec<u8>) {
        self.writes.insert((ks, key.to_vec()), Some(value));
    }

    /// Deletes a key; returns whether it existed.
    fn delete(&mut self, ks: Ks, key: impl AsRef<[u8]>) -> Result<bool, StoreError> {
        let key = key.as_ref();
        let existed = self.get(ks, key)?.is_some();
        if existed {
            self.writes.insert((ks, key.to_vec()), None);
        }
        Ok(existed)
    }

    /// `node` holds `client_id` now, for a connection of verified user `owner` (none: no
    /// user, or auth off): refused if the id belongs to another user (`client_owner`'s rule).
    fn register(
        &mut self,
        client_id: &str,
        node: u64,
        owner: Option<&String>,
    ) -> Result<Outcome, StoreError> {
        if let Some(current) = self.get(Ks::ClientOwners, client_id.as_bytes())? {
            let current = String::from_utf8_lossy(&current).into_owned();
            if owner != Some(&current) {
                return Ok(Outcome::NotOwner { owner: current });
            }
        }
        let previous = self.client_holder(client_id)?;
        self.put(
            Ks::Clients,
            client_id.as_bytes(),
            node.to_be_bytes().to_vec(),
        );
        if let Some(owner) = owner {
            self.put(
                Ks::ClientOwners,
                client_id.as_bytes(),
                owner.as_bytes().to_vec(),
            );
        }
        Ok(Outcome::PreviousHolder(previous.filter(|p| *p != node)))
    }

    fn placement(&self, client_id: &str) -> Result<Option<Placement>, StoreError> {
        self.get(Ks::Placements, client_id.as_bytes())?
            .map(|v| {
                postcard::from_bytes(&v)
                    .map_err(|e| self.corrupt(format!("placement of {client_id:?}: {e}")))
            })
            .transpose()
    }

    fn client_holder(&self, client_id: &str) -> Result<Option<u64>, StoreError> {
        self.get(Ks::Clients, client_id.as_bytes())?
            .map(|v| {
                parse_node(&v)
                    .ok_or_else(|| self.corrupt(format!("client record of {client_id:?}")))
            })
            .transpose()
    }

    fn drop_node(&mut self, node: u64) -> Result<Outcome, StoreError> {
        let mut filters = Vec::new();
        for (key, _) in self.scan(Ks::Routes)? {
            let (filter, n) =
                parse_route_key(&key).ok_or_else(|| self.corrupt(format!("route key {key:?}")))?;
            if n == node {
                self.writes.insert((Ks::Routes, key), None);
                filters.push(filter);
            }
        }
        let mut clients = Vec::new();
        for (key, value) in self.scan(Ks::Clients)? {
            let n = parse_node(&value).ok_or_else(|| self.corrupt(format!("client {key:?}")))?;
            if n == node {
                clients.push(String::from_utf8_lossy(&key).into_owned());
                self.writes.insert((Ks::Clients, key), None);
            }
        }
        Ok(Outcome::Dropped { filters, clients })
    }

    /// Every live key and value of a keyspace, pending writes included, in key order.
    fn scan(&self, ks: Ks) -> Result<KeyValues, StoreError> {
        let mut merged = BTreeMap::new();
        for g in self.data.get(ks).iter() {
            let (k, v) = g.into_inner()?;
            merged.insert(k.to_vec(), Some(v.to_vec()));
        }
        for ((pks, k), v) in &self.writes {
            if *pks == ks {
                merged.insert(k.clone(), v.clone());
            }
        }
        Ok(merged
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect())
    }

    fn corrupt(&self, what: String) -> StoreError {
        StoreError::Corrupt {
            path: self.path.to_owned(),
            what,
        }
    }
}
