//! Where a change to the state every member shares goes (accounts, topic rules, settings):
//! Raft on a cluster member, the node's own store on a standalone node. Each change is
//! checked once, here, whichever way it then goes; on a member, every node (this one
//! included) applies it when Raft commits it.

use std::sync::Arc;

use fubar_store::records::AccountRecord;
use fubar_store::replicated::{Change, Outcome};
use fubar_store::StoreError;

use super::member::ClusterMember;
use super::member::ProposeError;
use crate::broker::auth::{hash_password, AccountError};
use crate::broker::topic_acl::{Rule, RuleSet};
use crate::broker::{Broker, SettingError};

/// Why a shared-state change was not made.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The account change is not valid, or the store refused it.
    #[error(transparent)]
    Account(#[from] AccountError),
    /// The setting change is not valid, or the store refused it.
    #[error(transparent)]
    Setting(#[from] SettingError),
    /// The store refused the change.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Raft did not commit the change.
    #[error(transparent)]
    Cluster(#[from] ProposeError),
    /// Changed on this node, but the other members were not told.
    #[error("changed here, but not on the other members: {0}")]
    HereOnly(ProposeError),
    /// The blocking work (hashing) did not finish.
    #[error("{0}")]
    Aborted(String),
}

/// The shared state's log: this node's store, or the cluster's Raft log.
#[derive(Debug, Clone)]
pub enum StateLog {
    /// A standalone node: changes go to its store and its broker at once.
    Local(Arc<Broker>),
    /// A cluster member: changes go through Raft.
    Replicated {
        /// The broker (for what a change is checked against).
        broker: Arc<Broker>,
        /// The member that proposes the changes.
        member: Arc<ClusterMember>,
    },
}

impl StateLog {
    /// The log of a node with `broker` and, in a cluster, `member`.
    pub fn of(broker: &Arc<Broker>, member: Option<&Arc<ClusterMember>>) -> Self {
        match member {
            Some(member) => Self::Replicated {
                broker: broker.clone(),
                member: member.clone(),
            },
            None => Self::Local(broker.clone()),
        }
    }

    fn broker(&self) -> &Arc<Broker> {
        match self {
            Self::Local(broker) | Self::Replicated { broker, .. } => broker,
        }
    }

    /// Creates account `name` or changes its password; returns whether it is new.
    pub async fn put_account(&self, name: &str, password: String) -> Result<bool, StateError> {
        if name.is_empty() || name.contains('\0') {
            return Err(AccountError::BadName.into());
        }
        // Hashing is deliberately slow: keep it off the async threads.
        let password_hash = tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|e| StateError::Aborted(e.to_string()))??;
        match self {
            Self::Local(broker) => Ok(broker.accounts.put_hash(name, &password_hash)?),
            Self::Replicated { broker, member } => {
                let existed = broker.accounts.names().iter().any(|n| n == name);
                let change = Change::PutAccount {
                    name: name.to_owned(),
                    record: AccountRecord { password_hash },
                };
                member.propose_now(vec![change]).await?;
                Ok(!existed)
            }
        }
    }

    /// Deletes account `name`; returns whether it existed.
    pub async fn delete_account(&self, name: &str) -> Result<bool, StateError> {
        match self {
            Self::Local(broker) => Ok(broker.accounts.delete(name)?),
            Self::Replicated { member, .. } => {
                let change = Change::DeleteAccount {
                    name: name.to_owned(),
                };
                let outcome = member.propose_now(vec![change]).await?;
                Ok(matches!(outcome.0.first(), Some(Outcome::Removed(true))))
            }
        }
    }

    /// Adds topic rules (normal text forms, parsed already); returns how many were new.
    pub async fn put_topic_rules(&self, rules: Vec<String>) -> Result<usize, StateError> {
        let current = self.broker().topic_acl.current();
        let new = rules.iter().filter(|r| !current.contains(r)).count();
        match self {
            Self::Local(broker) => {
                if let Some(store) = &broker.store {
                    store.put_topic_rules(&rules)?;
                }
                let all = current.texts().cloned().chain(rules);
                broker.topic_acl.replace(parse_all(all));
            }
            Self::Replicated { member, .. } => {
                member
                    .propose_now(vec![Change::PutTopicRules { rules }])
                    .await?;
            }
        }
        Ok(new)
    }

    /// Deletes topic rule `rule` (its normal text form); returns whether it existed.
    pub async fn delete_topic_rule(&self, rule: &str) -> Result<bool, StateError> {
        let current = self.broker().topic_acl.current();
        if !current.contains(rule) {
            return Ok(false);
        }
        match self {
            Self::Local(broker) => {
                if let Some(store) = &broker.store {
                    store.delete_topic_rules(&[rule.to_owned()])?;
                }
                let rest = current.texts().filter(|t| *t != rule).cloned();
                broker.topic_acl.replace(parse_all(rest));
                Ok(true)
            }
            Self::Replicated { member, .. } => {
                let change = Change::DeleteTopicRules {
                    rules: vec![rule.to_owned()],
                };
                let outcome = member.propose_now(vec![change]).await?;
                Ok(matches!(outcome.0.first(), Some(Outcome::Removed(true))))
            }
        }
    }

    /// Changes setting `name` here (checked and stored) and, on a member, on every other
    /// member; returns the value as the settings show it.
    pub async fn set_setting(&self, name: &str, value: &str) -> Result<String, StateError> {
        let shown = self.broker().change_setting(name, value)?;
        if let Self::Replicated { member, .. } = self {
            let change = Change::PutSetting {
                name: name.to_owned(),
                value: shown.clone(),
            };
            member
                .propose_now(vec![change])
                .await
                .map_err(StateError::HereOnly)?;
        }
        Ok(shown)
    }
}

fn parse_all(texts: impl Iterator<Item = String>) -> RuleSet {
    RuleSet::new(texts.filter_map(|t| t.parse::<Rule>().ok()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::settings::Settings;

    fn standalone() -> (tempfile::TempDir, Arc<Broker>) {
        let dir = tempfile::tempdir().unwrap();
        let store = fubar_store::Store::open(
            dir.path(),
            fubar_store::SyncMode::None,
            Duration::from_millis(1),
        )
        .unwrap();
        let broker = Broker::standalone(Settings::default(), Some(Arc::new(store))).unwrap();
        (dir, Arc::new(broker))
    }

    #[tokio::test]
    async fn a_standalone_node_checks_stores_and_applies_each_change_once() {
        let (_dir, broker) = standalone();
        let log = StateLog::of(&broker, None);
        assert!(matches!(
            log.put_account("", "pw".into()).await,
            Err(StateError::Account(AccountError::BadName))
        ));
        assert!(log.put_account("alice", "one".into()).await.unwrap());
        assert!(!log.put_account("alice", "two".into()).await.unwrap());
        let stored = broker.store.as_ref().unwrap().accounts().unwrap();
        assert_eq!(stored.len(), 1, "kept in the store");
        assert!(log.delete_account("alice").await.unwrap());
        assert!(!log.delete_account("alice").await.unwrap());
        assert!(broker.accounts.names().is_empty());

        let rule = "allow subscribe sensors/#"
            .parse::<Rule>()
            .unwrap()
            .to_string();
        assert_eq!(log.put_topic_rules(vec![rule.clone()]).await.unwrap(), 1);
        assert_eq!(log.put_topic_rules(vec![rule.clone()]).await.unwrap(), 0);
        assert!(broker.topic_acl.current().contains(&rule));
        assert!(log.delete_topic_rule(&rule).await.unwrap());
        assert!(!log.delete_topic_rule(&rule).await.unwrap());
        assert!(!broker.topic_acl.current().contains(&rule));

        assert!(matches!(
            log.set_setting("no.such", "1").await,
            Err(StateError::Setting(_))
        ));
        let shown = log
            .set_setting("session.max_queued_messages", "7")
            .await
            .unwrap();
        assert_eq!(shown, "7");
        assert_eq!(broker.settings().session.max_queued_messages, 7);
    }
}
