//! What the node does for each admin request.

use std::sync::atomic::Ordering;

use fubar_logproto::admin::{AclRule, AdminRequest, AdminResponse, NodeStatus};

use super::cluster_commands;
use super::context::NodeContext;

/// Runs one admin request against the broker.
pub(super) async fn execute(node: &NodeContext, request: AdminRequest) -> AdminResponse {
    let broker = &node.broker;
    match request.clone() {
        AdminRequest::Status => AdminResponse::Status(status(node)),
        AdminRequest::Stop => {
            tracing::info!(target: "info", "stop requested through the admin socket");
            broker.shutdown.cancel();
            AdminResponse::Done("stopping".into())
        }
        AdminRequest::AccountUpdate { name, password } => {
            match node.state().put_account(&name, password).await {
                Ok(created) => {
                    tracing::info!(target: "resource", account = %name, created, "account updated");
                    AdminResponse::Done(if created {
                        format!("account {name} created")
                    } else {
                        format!("password of {name} changed")
                    })
                }
                Err(e) => AdminResponse::Error(e.to_string()),
            }
        }
        AdminRequest::AccountDelete { name } => match node.state().delete_account(&name).await {
            Ok(true) => {
                tracing::info!(target: "resource", account = %name, "account deleted");
                AdminResponse::Done(format!("account {name} deleted"))
            }
            Ok(false) => AdminResponse::Error(format!("no account {name}")),
            Err(e) => AdminResponse::Error(e.to_string()),
        },
        AdminRequest::AccountList => AdminResponse::Accounts(broker.accounts.names()),
        AdminRequest::AclAllow { cidr } => acl_set(node, &cidr, true),
        AdminRequest::AclDeny { cidr } => acl_set(node, &cidr, false),
        AdminRequest::AclDelete { cidr } => match broker.acl.delete(&cidr) {
            Ok(true) => {
                let shown = cidr
                    .parse::<crate::broker::acl::Cidr>()
                    .map_or_else(|_| cidr.clone(), |c| c.to_string());
                tracing::info!(target: "resource", rule = %shown, "address rule deleted");
                AdminResponse::Done(format!("rule {shown} deleted"))
            }
            Ok(false) => AdminResponse::Error(format!("no rule {cidr}")),
            Err(e) => AdminResponse::Error(e.to_string()),
        },
        AdminRequest::AclList => AdminResponse::Acl(
            broker
                .acl
                .list()
                .into_iter()
                .map(|(cidr, allow)| AclRule { cidr, allow })
                .collect(),
        ),
        AdminRequest::TopicAclAdd { rule } => super::topic_acl_commands::add(node, &rule).await,
        AdminRequest::TopicAclDelete { rule } => {
            super::topic_acl_commands::delete(node, &rule).await
        }
        AdminRequest::TopicAclList => super::topic_acl_commands::list(node),
        AdminRequest::TopicAclImport { text } => {
            super::topic_acl_commands::import(node, &text).await
        }
        AdminRequest::SettingsList => AdminResponse::Settings(broker.settings().flatten()),
        AdminRequest::TraceClient { client_id } => {
            broker.tracer.trace_client(&client_id);
            tracing::info!(target: "info", client = %client_id, "tracing client");
            AdminResponse::Done(format!("tracing client {client_id}"))
        }
        AdminRequest::TraceTopic { filter } => match broker.tracer.trace_topic(&filter) {
            Ok(_) => {
                tracing::info!(target: "info", filter = %filter, "tracing topic");
                AdminResponse::Done(format!("tracing topic {filter}"))
            }
            Err(e) => AdminResponse::Error(e.to_string()),
        },
        AdminRequest::UntraceClient { client_id } => {
            if broker.tracer.untrace_client(&client_id) {
                AdminResponse::Done(format!("stopped tracing client {client_id}"))
            } else {
                AdminResponse::Error(format!("client {client_id} is not traced"))
            }
        }
        AdminRequest::UntraceTopic { filter } => {
            if broker.tracer.untrace_topic(&filter) {
                AdminResponse::Done(format!("stopped tracing topic {filter}"))
            } else {
                AdminResponse::Error(format!("topic {filter} is not traced"))
            }
        }
        AdminRequest::SslReload => match broker.tls_config() {
            None => AdminResponse::Error("this node has no TLS listener (mqtts.port)".into()),
            Some(_) => match broker.load_tls() {
                Ok(()) => {
                    tracing::info!(target: "info", "TLS certificates reloaded");
                    AdminResponse::Done("TLS certificates reloaded for new connections".into())
                }
                Err(e) => {
                    AdminResponse::Error(format!("{e}; the previous certificates stay in use"))
                }
            },
        },
        AdminRequest::TraceList => {
            let (clients, topics) = broker.tracer.list();
            AdminResponse::Traces { clients, topics }
        }
        AdminRequest::LogOpen { .. }
        | AdminRequest::LogClose { .. }
        | AdminRequest::LogOut { .. }
        | AdminRequest::LogList => {
            let n = node.clone();
            tokio::task::spawn_blocking(move || super::log_commands::execute(&n, request))
                .await
                .unwrap_or_else(|e| AdminResponse::Error(e.to_string()))
        }
        AdminRequest::Search(q) => {
            let n = node.clone();
            tokio::task::spawn_blocking(move || super::monitor_commands::run_search(&n, q))
                .await
                .unwrap_or_else(|e| AdminResponse::Error(e.to_string()))
        }
        AdminRequest::LogCollect { class, on } => {
            super::monitor_commands::collect(node, &class, on)
        }
        AdminRequest::LogLinks => super::monitor_commands::links(node),
        AdminRequest::ConsoleSignIn => super::monitor_commands::console_sign_in(node),
        AdminRequest::LogTail { .. } | AdminRequest::LogDump { .. } => {
            AdminResponse::Error("a tail or a dump is a stream: dispatch serves it".into())
        }
        AdminRequest::ClusterStatus => cluster_commands::status(node),
        AdminRequest::ClusterLeave { node: name } => cluster_commands::leave(node, name).await,
        AdminRequest::SettingsSet { name, value } => {
            match node.state().set_setting(&name, &value).await {
                Ok(shown) => AdminResponse::Done(format!("{name} = {shown}")),
                Err(e) => AdminResponse::Error(e.to_string()),
            }
        }
    }
}

fn acl_set(node: &NodeContext, cidr: &str, allow: bool) -> AdminResponse {
    let broker = &node.broker;
    match broker.acl.set(cidr, allow) {
        Ok(rule) => {
            let verb = if allow { "allow" } else { "deny" };
            tracing::info!(target: "resource", rule = %rule, allow, "address rule set");
            AdminResponse::Done(format!("{verb} {rule}"))
        }
        Err(e) => AdminResponse::Error(e.to_string()),
    }
}

fn status(node: &NodeContext) -> NodeStatus {
    let broker = &node.broker;
    let settings = broker.settings();
    NodeStatus {
        name: settings.node.name.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        uptime_secs: broker.started.elapsed().as_secs(),
        listeners: broker.listeners(),
        connections: broker.stats.connections.load(Ordering::Relaxed),
        sessions: broker.registry.len() as u64,
        subscriptions: broker.router.subscription_count() as u64,
        retained: broker.retained.len() as u64,
        memory_bytes: crate::process_memory::resident_bytes(),
        cluster_role: cluster_role(node),
        auth: settings.auth.enabled,
        delayed_accepts: broker.stats.accepts_delayed.load(Ordering::Relaxed),
        throttled_clients: broker.stats.clients_throttled.load(Ordering::Relaxed),
        messages_received: broker.stats.messages_in.load(Ordering::Relaxed),
        messages_sent: broker.stats.messages_out.load(Ordering::Relaxed),
    }
}

fn cluster_role(node: &NodeContext) -> String {
    let role = if node.monitor.as_ref().is_some() {
        "monitor"
    } else {
        "broker"
    };
    match node.member.as_ref() {
        None => "standalone".into(),
        Some(m) if m.is_leader() => format!("{role}, cluster leader"),
        Some(_) => format!("{role}, cluster member"),
    }
}
