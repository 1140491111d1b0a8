//! Who may run which admin command, and the `access` event each command leaves.
//!
//! Reading (status, lists, search, log tail, cluster status) needs [`Role::Read`]; changing
//! anything (stop, accounts, settings, address rules, log redirects, collection, tracing,
//! TLS reload, leaving the cluster) needs [`Role::Admin`]. The node's owner on its Unix
//! socket and a cluster member (the cookie, or a node certificate) have every right; an
//! operator certificate grants the role it is marked with. [`required_role`] is the one place
//! a command is classified: it has no catch-all arm, so a new command does not build until it
//! is.

use std::fmt;
use std::net::SocketAddr;

use fubar_logproto::admin::AdminRequest;
use fubar_monitor::admin::Caller;
pub use fubar_ssl::Role;

/// Who sent an admin request, and over what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requester {
    /// The node's owner, on its Unix socket (mode 0600 in a 0700 folder).
    Local,
    /// A client admitted on the cluster port.
    Remote {
        /// Who the handshake proved it to be.
        caller: Caller,
        /// Its address.
        peer: SocketAddr,
    },
}

impl Requester {
    /// What it may do.
    pub fn role(&self) -> Role {
        match self {
            Self::Local => Role::Admin,
            Self::Remote {
                caller: Caller::Member(_),
                ..
            } => Role::Admin,
            Self::Remote {
                caller: Caller::Operator { role, .. },
                ..
            } => *role,
        }
    }

    /// Its name in an `access` event: `local`, `node NAME` or `operator NAME`.
    fn identity(&self) -> String {
        match self {
            Self::Local => "local".to_owned(),
            Self::Remote {
                caller: Caller::Member(name),
                ..
            } => format!("node {name}"),
            Self::Remote {
                caller: Caller::Operator { name, .. },
                ..
            } => format!("operator {name}"),
        }
    }

    fn peer(&self) -> String {
        match self {
            Self::Local => "admin.sock".to_owned(),
            Self::Remote { peer, .. } => peer.to_string(),
        }
    }
}

/// The role a request needs.
pub fn required_role(request: &AdminRequest) -> Role {
    match request {
        AdminRequest::Status
        | AdminRequest::AccountList
        | AdminRequest::AclList
        | AdminRequest::TopicAclList
        | AdminRequest::SettingsList
        | AdminRequest::LogList
        // The dump comes back to the caller; the node writes nothing.
        | AdminRequest::LogDump { .. }
        | AdminRequest::TraceList
        | AdminRequest::Search(_)
        | AdminRequest::LogTail { .. }
        | AdminRequest::LogLinks
        | AdminRequest::ClusterStatus => Role::Read,
        AdminRequest::Stop
        | AdminRequest::AccountUpdate { .. }
        | AdminRequest::AccountDelete { .. }
        | AdminRequest::AclAllow { .. }
        | AdminRequest::AclDeny { .. }
        | AdminRequest::AclDelete { .. }
        | AdminRequest::TopicAclAdd { .. }
        | AdminRequest::TopicAclDelete { .. }
        | AdminRequest::TopicAclImport { .. }
        | AdminRequest::SettingsSet { .. }
        | AdminRequest::LogOpen { .. }
        | AdminRequest::LogClose { .. }
        | AdminRequest::LogOut { .. }
        | AdminRequest::TraceClient { .. }
        | AdminRequest::TraceTopic { .. }
        | AdminRequest::UntraceClient { .. }
        | AdminRequest::UntraceTopic { .. }
        | AdminRequest::SslReload
        | AdminRequest::LogCollect { .. }
        | AdminRequest::ClusterLeave { .. }
        // The console can start and stop traces.
        | AdminRequest::ConsoleSignIn => Role::Admin,
    }
}

/// A request as the `access` event shows it: the `ctl` command line, with a password
/// replaced by `***` (it is never written anywhere).
pub struct Shown<'a>(pub &'a AdminRequest);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opt = |o: &Option<String>| o.clone().unwrap_or_default();
        match self.0 {
            AdminRequest::Status => write!(f, "status"),
            AdminRequest::Stop => write!(f, "stop"),
            AdminRequest::AccountUpdate { name, password: _ } => {
                write!(f, "account update {name:?} ***")
            }
            AdminRequest::AccountDelete { name } => write!(f, "account delete {name:?}"),
            AdminRequest::AccountList => write!(f, "account list"),
            AdminRequest::AclAllow { cidr } => write!(f, "acl allow {cidr:?}"),
            AdminRequest::AclDeny { cidr } => write!(f, "acl deny {cidr:?}"),
            AdminRequest::AclDelete { cidr } => write!(f, "acl delete {cidr:?}"),
            AdminRequest::AclList => write!(f, "acl list"),
            AdminRequest::TopicAclAdd { rule } => write!(f, "acl topic add {rule:?}"),
            AdminRequest::TopicAclDelete { rule } => write!(f, "acl topic delete {rule:?}"),
            AdminRequest::TopicAclList => write!(f, "acl topic list"),
            AdminRequest::TopicAclImport { text } => {
                write!(f, "acl topic import ({} lines)", text.lines().count())
            }
            AdminRequest::SettingsList => write!(f, "settings"),
            AdminRequest::SettingsSet { name, value } => {
                write!(f, "settings {name:?} {value:?}")
            }
            AdminRequest::LogOpen { class } => write!(f, "log open {class:?}"),
            AdminRequest::LogClose { class } => write!(f, "log close {class:?}"),
            AdminRequest::LogOut { class, redirect } => {
                write!(f, "log out {class:?} {redirect:?}")
            }
            AdminRequest::LogList => write!(f, "log list"),
            AdminRequest::LogDump { class } => write!(f, "log dump {:?}", opt(class)),
            AdminRequest::TraceClient { client_id } => write!(f, "trace client {client_id:?}"),
            AdminRequest::TraceTopic { filter } => write!(f, "trace topic {filter:?}"),
            AdminRequest::UntraceClient { client_id } => {
                write!(f, "untrace client {client_id:?}")
            }
            AdminRequest::UntraceTopic { filter } => write!(f, "untrace topic {filter:?}"),
            AdminRequest::TraceList => write!(f, "trace list"),
            AdminRequest::SslReload => write!(f, "ssl reload"),
            AdminRequest::Search(q) => write!(f, "search {:?}", q.query),
            AdminRequest::LogTail { query, class } => {
                write!(f, "log tail {query:?} class {:?}", opt(class))
            }
            AdminRequest::LogCollect { class, on } => {
                write!(
                    f,
                    "log collect {class:?} {}",
                    if *on { "on" } else { "off" }
                )
            }
            AdminRequest::LogLinks => write!(f, "log links"),
            AdminRequest::ClusterStatus => write!(f, "cluster status"),
            AdminRequest::ClusterLeave { node } => write!(f, "cluster leave {:?}", opt(node)),
            AdminRequest::ConsoleSignIn => write!(f, "console url"),
        }
    }
}

/// Decides whether `who` may run `request`, and says so as an `access` event when the
/// request came over the cluster port; `Err` is the reply for a refused command.
pub fn authorize(who: &Requester, request: &AdminRequest) -> Result<(), String> {
    let needed = required_role(request);
    let role = who.role();
    let allowed = role >= needed;
    // The owner's own socket needs no record: only its owner can reach it.
    if *who == Requester::Local {
        return Ok(());
    }
    tracing::info!(
        target: "access",
        identity = %who.identity(),
        role = %role,
        peer = %who.peer(),
        command = %Shown(request),
        needs = %needed,
        allowed,
        "admin command"
    );
    if allowed {
        Ok(())
    } else {
        Err(format!(
            "refused: `{}` needs the {needed} role, and {} has the {role} role",
            Shown(request),
            who.identity()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fubar_logproto::admin::SearchQuery;

    fn operator(role: Role) -> Requester {
        Requester::Remote {
            caller: Caller::Operator {
                name: "op".into(),
                role,
            },
            peer: "127.0.0.1:9".parse().unwrap(),
        }
    }

    #[test]
    fn readers_read_and_only_admins_change() {
        let search = AdminRequest::Search(SearchQuery {
            query: String::new(),
            class: None,
            from_us: None,
            until_us: None,
            limit: 1,
        });
        let update = AdminRequest::AccountUpdate {
            name: "a".into(),
            password: "pw".into(),
        };
        for r in [&AdminRequest::Status, &search, &AdminRequest::ClusterStatus] {
            assert!(authorize(&operator(Role::Read), r).is_ok());
        }
        for r in [&AdminRequest::Stop, &update] {
            let why = authorize(&operator(Role::Read), r).unwrap_err();
            assert!(why.contains("admin role") && !why.contains("pw"), "{why}");
            assert!(authorize(&operator(Role::Admin), r).is_ok());
            assert!(authorize(&Requester::Local, r).is_ok());
        }
    }

    #[test]
    fn a_password_is_never_shown() {
        let shown = Shown(&AdminRequest::AccountUpdate {
            name: "alice".into(),
            password: "s3cret".into(),
        })
        .to_string();
        assert_eq!(shown, "account update \"alice\" ***");
    }
}
