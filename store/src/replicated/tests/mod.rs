//! Tests of the replicated state: openraft's storage suite, apply, snapshots, restart, and a
//! three-node cluster in one process.

mod apply;
mod cluster;
mod snapshot;
mod suite;

use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::{Entry, EntryPayload, Membership};

use super::*;
use crate::records::{AccountRecord, StoredMessage, StoredProperties};
use crate::{Store, SyncMode};

fn open(dir: &Path) -> Store {
    Store::open(dir, SyncMode::None, Duration::ZERO).expect("open")
}

fn entry(index: u64, changes: Vec<Change>) -> Entry<TypeConfig> {
    Entry {
        log_id: openraft::testing::log_id(1, 1, index),
        payload: EntryPayload::Normal(ChangeBatch(changes)),
    }
}

fn membership_entry(index: u64, voters: &[u64]) -> Entry<TypeConfig> {
    let nodes: BTreeMap<u64, NodeInfo> = voters
        .iter()
        .map(|&id| {
            let info = NodeInfo {
                name: format!("n{id}@host"),
                addr: format!("127.0.0.1:{}", 7000 + id),
                role: NodeRole::Broker,
            };
            (id, info)
        })
        .collect();
    let config = vec![voters.iter().copied().collect::<BTreeSet<_>>()];
    Entry {
        log_id: openraft::testing::log_id(1, 1, index),
        payload: EntryPayload::Membership(Membership::new(config, nodes)),
    }
}

fn message(topic: &str, payload: &[u8]) -> StoredMessage {
    StoredMessage {
        topic: topic.into(),
        payload: payload.to_vec(),
        qos: 1,
        retain: true,
        properties: StoredProperties::default(),
        expires_at_ms: None,
    }
}

fn account(hash: &str) -> AccountRecord {
    AccountRecord {
        password_hash: hash.into(),
    }
}

/// One change of every kind that leaves something behind.
fn sample_changes() -> Vec<Change> {
    vec![
        Change::PutAccount {
            name: "romeo".into(),
            record: account("$argon2id$r"),
        },
        Change::PutAcl {
            cidr: "10.0.0.0/8".into(),
            allow: false,
        },
        Change::PutSetting {
            name: "mqtt.max_packet_size".into(),
            value: "8192".into(),
        },
        Change::PutRetained(message("a/b", b"r")),
        Change::AddRoute {
            filter: "x/#".into(),
            node: 7,
        },
        Change::AddRoute {
            filter: "x/#".into(),
            node: 8,
        },
        Change::RegisterClient {
            client_id: "c1".into(),
            node: 7,
        },
        Change::PutTopicRules {
            rules: vec!["allow both devices/%c/#".into(), "deny publish x".into()],
        },
    ]
}

/// Everything the broker and the node read of the replicated state.
#[derive(Debug, PartialEq)]
struct Reads {
    accounts: Vec<(String, AccountRecord)>,
    acl: Vec<(String, bool)>,
    settings: Vec<(String, String)>,
    retained: Vec<StoredMessage>,
    routes: Vec<(String, u64)>,
    clients: Vec<(String, u64)>,
    topic_rules: Vec<String>,
}

fn reads(store: &Store) -> Reads {
    Reads {
        accounts: store.accounts().unwrap(),
        acl: store.acl().unwrap(),
        settings: store.settings().unwrap(),
        retained: store.retained().unwrap(),
        routes: store.routes().unwrap(),
        clients: store.clients().unwrap(),
        topic_rules: store.topic_rules().unwrap(),
    }
}

/// What a listener was told.
#[allow(
    clippy::large_enum_variant,
    reason = "a test record: size does not matter"
)]
#[derive(Debug, Clone, PartialEq)]
enum Heard {
    Applied(Change, Outcome),
    Reset,
}

#[derive(Default)]
struct Recorder(Mutex<Vec<Heard>>);

impl Recorder {
    fn take(&self) -> Vec<Heard> {
        std::mem::take(&mut *self.0.lock())
    }
}

impl ApplyListener for Recorder {
    fn applied(&self, change: &Change, outcome: &Outcome) {
        self.0
            .lock()
            .push(Heard::Applied(change.clone(), outcome.clone()));
    }

    fn reset(&self) {
        self.0.lock().push(Heard::Reset);
    }
}

fn listener(recorder: &Arc<Recorder>) -> Option<Arc<dyn ApplyListener>> {
    Some(recorder.clone())
}
