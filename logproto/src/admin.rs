//! Requests to a node's admin endpoint (`fubar ctl`) and its replies.

use serde::{Deserialize, Serialize};

/// A command for a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminRequest {
    /// Node name, version, uptime, listeners, counts, memory, cluster role.
    Status,
    /// Stop the node gracefully, as SIGTERM does.
    Stop,
    /// Create an account or change its password.
    AccountUpdate {
        /// User name.
        name: String,
        /// New password (sent over the owner-only local socket, never logged).
        password: String,
    },
    /// Delete an account.
    AccountDelete {
        /// User name.
        name: String,
    },
    /// List account names.
    AccountList,
    /// Allow connections from an address block.
    AclAllow {
        /// `ADDR/PREFIX` or a single address.
        cidr: String,
    },
    /// Deny connections from an address block.
    AclDeny {
        /// `ADDR/PREFIX` or a single address.
        cidr: String,
    },
    /// Remove an address rule.
    AclDelete {
        /// `ADDR/PREFIX` or a single address, as it was added.
        cidr: String,
    },
    /// List address rules.
    AclList,
    /// List the effective settings.
    SettingsList,
    /// Change one setting at run time (and keep the change across restarts).
    SettingsSet {
        /// Dotted name, e.g. `mqtt.max_packet_size`.
        name: String,
        /// The new value, as it would be written in the TOML file.
        value: String,
    },
}

/// A node's state as `fubar ctl status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Node name, `name@host`.
    pub name: String,
    /// fubar version.
    pub version: String,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// Listeners, e.g. `mqtt://0.0.0.0:1883`.
    pub listeners: Vec<String>,
    /// Open MQTT connections.
    pub connections: u64,
    /// Sessions, online and offline.
    pub sessions: u64,
    /// Subscriptions (filter, session) in the router.
    pub subscriptions: u64,
    /// Retained messages.
    pub retained: u64,
    /// Resident memory of the node process, bytes.
    pub memory_bytes: u64,
    /// Cluster role (`standalone` until clustering).
    pub cluster_role: String,
    /// Whether clients must authenticate.
    pub auth: bool,
}

/// One address rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclRule {
    /// `ADDR/PREFIX`.
    pub cidr: String,
    /// Allow (true) or deny (false).
    pub allow: bool,
}

/// A node's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminResponse {
    /// The command was carried out; the text says what happened.
    Done(String),
    /// The command was refused or failed; the text says why and what is allowed.
    Error(String),
    /// The node's status.
    Status(NodeStatus),
    /// Account names.
    Accounts(Vec<String>),
    /// Address rules.
    Acl(Vec<AclRule>),
    /// Effective settings as (dotted name, TOML value) pairs.
    Settings(Vec<(String, String)>),
}
