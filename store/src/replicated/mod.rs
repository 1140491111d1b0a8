//! The replicated cluster state: openraft storage over the node's fjall database.
//!
//! Raft carries *metadata* only (membership, accounts, address rules, topic rules, settings, retained
//! messages, routes, the client registry); messages never go through it. Every member applies
//! the committed [`Change`]s into its own database, into the same keyspaces the broker reads
//! (`Store::accounts()`, `Store::retained()`, …, plus [`Store::routes()`](crate::Store::routes)
//! and [`Store::client_holder()`](crate::Store::client_holder)), so a node routes from local
//! reads.
//!
//! Wiring (the network is the node's business):
//!
//! ```ignore
//! let (log_store, state_machine) = store.replication(Some(listener))?;
//! let raft = Raft::new(node_id(&name), config, network, log_store, state_machine).await?;
//! raft.client_write(ChangeBatch(vec![Change::AddRoute { filter, node: id }])).await?;
//! ```
//!
//! In a cluster the replicated keyspaces must be written only through Raft: a direct
//! `Store::put_account` on one node would make its copy differ from the others.
//!
//! What is not here: the network (`RaftNetwork`), the Raft config, who joins as voter or
//! learner, and when a node is dropped: the node decides all of that.

mod apply;
mod change;
mod keyspaces;
mod log_store;
mod snapshot;
mod state_machine;
mod store_api;
mod types;

pub(crate) use keyspaces::{CLIENTS, CLIENT_OWNERS, PLACEMENTS, ROUTES, TOPIC_ACL};

pub use change::{Change, ChangeBatch, ChangeBatchOutcome, Outcome};
pub use log_store::LogStore;
pub use snapshot::SnapshotBuilder;
pub use state_machine::{ApplyListener, StateMachine};
pub use types::{node_id, NodeInfo, NodeRole, Raft, TypeConfig};

#[cfg(test)]
mod tests;
