//! Admin commands about the cluster (status, leave). Changes to the state every member
//! shares go through `cluster::state_log`.

use std::sync::Arc;

use fubar_logproto::admin::AdminResponse;
use fubar_store::replicated::node_id;

use super::context::NodeContext;
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
