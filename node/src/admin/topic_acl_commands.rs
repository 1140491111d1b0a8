//! `fubar ctl acl topic add|delete|list|import`: topic rules, changed through the node's
//! state log (its store, or Raft on a cluster member, so every member applies the same set).

use fubar_logproto::admin::AdminResponse;

use super::context::NodeContext;
use crate::broker::topic_acl::{mosquitto, Rule};
use crate::settings::AclDefault;

/// `fubar ctl acl topic add RULE`.
pub(super) async fn add(node: &NodeContext, text: &str) -> AdminResponse {
    let rule = match text.parse::<Rule>() {
        Ok(r) => r.to_string(),
        Err(e) => return AdminResponse::Error(e.to_string()),
    };
    match node.state().put_topic_rules(vec![rule.clone()]).await {
        Ok(new) => {
            tracing::info!(target: "resource", rule = %rule, new = new > 0, "topic rule added");
            AdminResponse::Done(if new > 0 {
                format!("added: {rule}")
            } else {
                format!("already there: {rule}")
            })
        }
        Err(e) => AdminResponse::Error(e.to_string()),
    }
}

/// `fubar ctl acl topic delete RULE`.
pub(super) async fn delete(node: &NodeContext, text: &str) -> AdminResponse {
    let broker = &node.broker;
    let rule = match text.parse::<Rule>() {
        Ok(r) => r.to_string(),
        Err(e) => return AdminResponse::Error(e.to_string()),
    };
    if !broker.topic_acl.current().contains(&rule) {
        return AdminResponse::Error(format!("no rule {rule} (see `fubar ctl acl topic list`)"));
    }
    let result = node.state().delete_topic_rule(&rule).await;
    match result {
        Ok(true) => {
            tracing::info!(target: "resource", rule = %rule, "topic rule deleted");
            AdminResponse::Done(format!("deleted: {rule}"))
        }
        Ok(false) => AdminResponse::Error(format!("no rule {rule}")),
        Err(e) => AdminResponse::Error(e.to_string()),
    }
}

/// `fubar ctl acl topic list`.
pub(super) fn list(node: &NodeContext) -> AdminResponse {
    let broker = &node.broker;
    AdminResponse::TopicRules {
        rules: broker.topic_acl.current().texts().cloned().collect(),
        default: default_name(node).into(),
    }
}

fn default_name(node: &NodeContext) -> &'static str {
    let broker = &node.broker;
    match broker.settings().acl.default {
        AclDefault::Allow => "allow",
        AclDefault::Deny => "deny",
    }
}

/// `fubar ctl acl topic import FILE`: all the file's rules, or none.
pub(super) async fn import(node: &NodeContext, text: &str) -> AdminResponse {
    let rules = match mosquitto::import(text) {
        Ok(rules) => rules,
        Err(refused) => {
            let lines: Vec<String> = refused.iter().map(ToString::to_string).collect();
            return AdminResponse::Error(format!(
                "nothing imported; {} line(s) refused:\n{}",
                refused.len(),
                lines.join("\n")
            ));
        }
    };
    let texts: Vec<String> = rules.iter().map(ToString::to_string).collect();
    let total = texts.len();
    match node.state().put_topic_rules(texts).await {
        Ok(new) => {
            tracing::info!(target: "resource", rules = total, new, "topic rules imported");
            let mut done = format!("imported {total} rules ({new} new)");
            if default_name(node) == "allow" {
                done.push_str(
                    "; mosquitto denies what no rule allows: `fubar ctl settings acl.default deny` gives the same decisions",
                );
            }
            AdminResponse::Done(done)
        }
        Err(e) => AdminResponse::Error(e.to_string()),
    }
}
