//! `fubar ctl acl topic add|delete|list|import`: topic rules, kept in the store; on a
//! cluster member changed through Raft, so every member applies the same set (the replicated
//! view reloads them when the change is applied).

use fubar_logproto::admin::AdminResponse;
use fubar_store::replicated::{Change, Outcome};

use super::context::NodeContext;
use crate::broker::topic_acl::{mosquitto, Rule, RuleSet};
use crate::settings::AclDefault;

/// Adds `rules` (normal text forms) everywhere they are kept; returns how many were new.
async fn put(node: &NodeContext, rules: Vec<String>) -> Result<usize, String> {
    let broker = &node.broker;
    let current = broker.topic_acl.current();
    let new = rules.iter().filter(|r| !current.contains(r)).count();
    if let Some(m) = node.member.as_ref() {
        m.propose_now(vec![Change::PutTopicRules { rules }]).await?;
        return Ok(new);
    }
    if let Some(store) = &broker.store {
        store.put_topic_rules(&rules).map_err(|e| e.to_string())?;
    }
    let all = current.texts().cloned().chain(rules);
    broker.topic_acl.replace(parse_all(all));
    Ok(new)
}

fn parse_all(texts: impl Iterator<Item = String>) -> RuleSet {
    RuleSet::new(texts.filter_map(|t| t.parse::<Rule>().ok()))
}

/// `fubar ctl acl topic add RULE`.
pub(super) async fn add(node: &NodeContext, text: &str) -> AdminResponse {
    let rule = match text.parse::<Rule>() {
        Ok(r) => r.to_string(),
        Err(e) => return AdminResponse::Error(e.to_string()),
    };
    match put(node, vec![rule.clone()]).await {
        Ok(new) => {
            tracing::info!(target: "resource", rule = %rule, new = new > 0, "topic rule added");
            AdminResponse::Done(if new > 0 {
                format!("added: {rule}")
            } else {
                format!("already there: {rule}")
            })
        }
        Err(e) => AdminResponse::Error(e),
    }
}

/// `fubar ctl acl topic delete RULE`.
pub(super) async fn delete(node: &NodeContext, text: &str) -> AdminResponse {
    let broker = &node.broker;
    let rule = match text.parse::<Rule>() {
        Ok(r) => r.to_string(),
        Err(e) => return AdminResponse::Error(e.to_string()),
    };
    let current = broker.topic_acl.current();
    if !current.contains(&rule) {
        return AdminResponse::Error(format!("no rule {rule} (see `fubar ctl acl topic list`)"));
    }
    let result = if let Some(m) = node.member.as_ref() {
        m.propose_now(vec![Change::DeleteTopicRules {
            rules: vec![rule.clone()],
        }])
        .await
        .map(|o| matches!(o.0.first(), Some(Outcome::Removed(true))))
    } else {
        let stored = match &broker.store {
            Some(store) => store
                .delete_topic_rules(std::slice::from_ref(&rule))
                .map_err(|e| e.to_string()),
            None => Ok(1),
        };
        stored.map(|_| {
            let rest = current.texts().filter(|t| **t != rule).cloned();
            broker.topic_acl.replace(parse_all(rest));
            true
        })
    };
    match result {
        Ok(true) => {
            tracing::info!(target: "resource", rule = %rule, "topic rule deleted");
            AdminResponse::Done(format!("deleted: {rule}"))
        }
        Ok(false) => AdminResponse::Error(format!("no rule {rule}")),
        Err(e) => AdminResponse::Error(e),
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
    match put(node, texts).await {
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
        Err(e) => AdminResponse::Error(e),
    }
}
