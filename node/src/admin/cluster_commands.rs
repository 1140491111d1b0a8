//! Admin commands about the cluster, and the replicated versions of the commands that change
//! state every member shares (accounts, settings): on a cluster member they go through Raft
//! and every member applies them; on a standalone node they change the node's own store.

use std::sync::Arc;

use fubar_logproto::admin::AdminResponse;
use fubar_store::records::AccountRecord;
use fubar_store::replicated::{node_id, Change, Outcome};

use super::context::NodeContext;
use crate::broker::auth::hash_password;
use crate::cluster::member::ClusterMember;
use crate::cluster::NodeName;

const NOT_CLUSTERED: &str =
    "this node is not in a cluster (start it with --master NAME@HOST[:PORT], or as the monitor)";

fn member(node: &NodeContext) -> Option<&Arc<ClusterMember>> {
    node.member.as_ref()
}

fn not_clustered() -> AdminResponse {
    AdminResponse::Error(NOT_CLUSTERED.into())
}

/// `fubar ctl cluster status`.
pub(super) fn status(node: &NodeContext) -> AdminResponse {
    member(node).map_or_else(not_clustered, |m| AdminResponse::Cluster(m.status()))
}

/// `fubar ctl cluster leave [NODE]`.
pub(super) async fn leave(ctx: &NodeContext, node: Option<String>) -> AdminResponse {
    let Some(m) = member(ctx) else {
        return not_clustered();
    };
    let name = match node {
        Some(n) => match n.parse::<NodeName>() {
            Ok(n) => n.id(),
            Err(e) => return AdminResponse::Error(e.to_string()),
        },
        None => m.info.name.clone(),
    };
    match m.leave(node_id(&name)).await {
        Ok(()) => {
            tracing::info!(target: "info", node = %name, "member left the cluster");
            AdminResponse::Done(format!("{name} left the cluster"))
        }
        Err(e) => AdminResponse::Error(format!("{name} cannot leave: {e}")),
    }
}

/// Creates an account or changes its password on every member; `None` on a standalone node.
pub(super) async fn account_update(
    node: &NodeContext,
    name: &str,
    password: String,
) -> Option<Result<bool, String>> {
    let broker = &node.broker;
    let m = node.member.as_ref()?;
    if name.is_empty() || name.contains('\0') {
        return Some(Err(
            "the account name must be non-empty and without NUL".into()
        ));
    }
    let existed = broker.accounts.names().iter().any(|n| n == name);
    // Hashing is deliberately slow: keep it off the async threads.
    let hashed = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
    let password_hash = match hashed {
        Ok(h) => h,
        Err(e) => return Some(Err(e)),
    };
    let change = Change::PutAccount {
        name: name.to_owned(),
        record: AccountRecord { password_hash },
    };
    Some(m.propose_now(vec![change]).await.map(|_| !existed))
}

/// Deletes an account on every member; `None` on a standalone node.
pub(super) async fn account_delete(node: &NodeContext, name: &str) -> Option<Result<bool, String>> {
    let m = node.member.as_ref()?;
    let change = Change::DeleteAccount {
        name: name.to_owned(),
    };
    Some(
        m.propose_now(vec![change])
            .await
            .map(|o| matches!(o.0.first(), Some(Outcome::Removed(true)))),
    )
}

/// Changes a setting here and on every member (a standalone node only here).
pub(super) async fn setting_set(
    node: &NodeContext,
    name: &str,
    value: &str,
) -> Result<String, String> {
    let broker = &node.broker;
    let shown = broker.change_setting(name, value)?;
    if let Some(m) = node.member.as_ref() {
        let change = Change::PutSetting {
            name: name.to_owned(),
            value: shown.clone(),
        };
        m.propose_now(vec![change])
            .await
            .map_err(|e| format!("changed here, but not on the other members: {e}"))?;
    }
    Ok(shown)
}
