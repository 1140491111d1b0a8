//! The keyspaces the replicated state lives in, and how its keys are encoded.
//!
//! Accounts, address rules, topic rules, settings and retained messages share the broker's own keyspaces, so
//! the broker's reads (`Store::accounts()`, …) see the replicated state. Routes and the client
//! registry have their own. New keyspaces need no format bump: an older binary ignores them and
//! a newer one creates them empty.

use fjall::Keyspace;

/// Routes: `filter 0x00 node-id(u64 BE)` → empty.
pub(crate) const ROUTES: &str = "routes";
/// Client registry: `client id` → `node id (u64 BE)`.
pub(crate) const CLIENTS: &str = "clients";
/// Topic rules: `rule text` → empty.
pub(crate) const TOPIC_ACL: &str = "topic_acl";
/// Client id owners: `client id` → the verified user whose connection created its session.
/// Kept apart from the registry: a dropped node's clients lose their holder, not their owner.
pub(crate) const CLIENT_OWNERS: &str = "client_owners";
/// Session placements: `client id` → postcard `Placement` (primary, backups, epoch).
pub(crate) const PLACEMENTS: &str = "placements";
/// State machine meta: last applied log id, last membership.
pub(crate) const SM_META: &str = "sm_meta";
/// The current snapshot: its meta and its data in chunks.
pub(crate) const SNAPSHOT: &str = "raft_snapshot";
/// Raft log: `index (u64 BE)` → postcard entry.
pub(crate) const RAFT_LOG: &str = "raft_log";
/// Raft meta: vote, committed, last purged.
pub(crate) const RAFT_META: &str = "raft_meta";

/// One of the keyspaces that hold replicated data (what a snapshot carries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Ks {
    Accounts,
    Acl,
    Settings,
    Retained,
    Routes,
    Clients,
    TopicAcl,
    ClientOwners,
    Placements,
}

impl Ks {
    /// Every data keyspace, in snapshot order.
    pub(crate) const ALL: [Self; 9] = [
        Self::Accounts,
        Self::Acl,
        Self::Settings,
        Self::Retained,
        Self::Routes,
        Self::Clients,
        Self::TopicAcl,
        Self::ClientOwners,
        Self::Placements,
    ];

    /// The keyspace's name, as fjall and snapshots know it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Accounts => "accounts",
            Self::Acl => "acl",
            Self::Settings => "settings",
            Self::Retained => "retained",
            Self::Routes => ROUTES,
            Self::Clients => CLIENTS,
            Self::TopicAcl => TOPIC_ACL,
            Self::ClientOwners => CLIENT_OWNERS,
            Self::Placements => PLACEMENTS,
        }
    }
}

/// Raw keys and values of a keyspace, in key order.
pub(crate) type KeyValues = Vec<(Vec<u8>, Vec<u8>)>;

/// Handles on the data keyspaces.
#[derive(Clone)]
pub(crate) struct DataKeyspaces {
    pub(crate) accounts: Keyspace,
    pub(crate) acl: Keyspace,
    pub(crate) settings: Keyspace,
    pub(crate) retained: Keyspace,
    pub(crate) routes: Keyspace,
    pub(crate) clients: Keyspace,
    pub(crate) topic_acl: Keyspace,
    pub(crate) client_owners: Keyspace,
    pub(crate) placements: Keyspace,
}

impl DataKeyspaces {
    pub(crate) fn get(&self, ks: Ks) -> &Keyspace {
        match ks {
            Ks::Accounts => &self.accounts,
            Ks::Acl => &self.acl,
            Ks::Settings => &self.settings,
            Ks::Retained => &self.retained,
            Ks::Routes => &self.routes,
            Ks::Clients => &self.clients,
            Ks::TopicAcl => &self.topic_acl,
            Ks::ClientOwners => &self.client_owners,
            Ks::Placements => &self.placements,
        }
    }
}

/// Topic filters never contain U+0000 (MQTT forbids it), so a 0 byte ends the filter.
pub(crate) fn route_key(filter: &str, node: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(filter.len() + 9);
    k.extend_from_slice(filter.as_bytes());
    k.push(0);
    k.extend_from_slice(&node.to_be_bytes());
    k
}

/// The filter and node of a route key, or `None` if it is not one.
pub(crate) fn parse_route_key(k: &[u8]) -> Option<(String, u64)> {
    let split = k.len().checked_sub(9)?;
    let (filter, rest) = k.split_at(split);
    let (zero, node) = rest.split_first()?;
    if *zero != 0 {
        return None;
    }
    let filter = std::str::from_utf8(filter).ok()?.to_owned();
    Some((filter, u64::from_be_bytes(node.try_into().ok()?)))
}

/// The node id of a client registry value, or `None` if it is not one.
pub(crate) fn parse_node(v: &[u8]) -> Option<u64> {
    v.try_into().ok().map(u64::from_be_bytes)
}
