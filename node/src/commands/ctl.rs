//! `fubar ctl`: one request to a running node's admin socket, its reply printed.

use anyhow::bail;
use fubar_logproto::admin::{AdminRequest, AdminResponse};

use crate::admin;
use crate::cli::{
    AccountCommand, AclCommand, AclTopicCommand, ClusterCommand, CtlArgs, CtlCommand,
    CtlSslCommand, LogCommand, NodeLocation, RemoteAccess, TraceCommand, UntraceCommand,
};
use crate::cluster::NodeName;
use crate::settings::Settings;

/// Runs one `fubar ctl` command, or the interactive shell without one.
pub(crate) fn run(args: CtlArgs) -> anyhow::Result<()> {
    let settings = located(&args.node);
    let socket = target(&args.node, &args.remote)?;
    match args.command {
        Some(command) => run_command(&socket, command),
        None => super::shell::run(&socket, &settings.node_dir().join("ctl_history")),
    }
}

/// Runs one command against the node and prints (or, for a dump, writes) what comes back.
pub(crate) fn run_command(socket: &admin::Target, command: CtlCommand) -> anyhow::Result<()> {
    match command {
        CtlCommand::Log(LogCommand::List) => {
            print(admin::request(socket, &AdminRequest::LogList)?)?;
            // On the monitor, every node's link too.
            match admin::request(socket, &AdminRequest::LogLinks)? {
                links @ AdminResponse::LogLinks(_) => print(links),
                _ => Ok(()),
            }
        }
        CtlCommand::Log(LogCommand::Dump { class, path }) => {
            super::dump::run(socket, class, path.map(std::path::PathBuf::from))
        }
        command => print(admin::request(socket, &request_of(command)?)?),
    }
}

/// The admin request for a command line.
pub(crate) fn request_of(command: CtlCommand) -> anyhow::Result<AdminRequest> {
    Ok(match command {
        CtlCommand::Status => AdminRequest::Status,
        CtlCommand::Cluster(ClusterCommand::Status) => AdminRequest::ClusterStatus,
        CtlCommand::Cluster(ClusterCommand::Leave { node }) => AdminRequest::ClusterLeave { node },
        CtlCommand::Stop => AdminRequest::Stop,
        CtlCommand::Account(AccountCommand::Update { name, password }) => {
            AdminRequest::AccountUpdate { name, password }
        }
        CtlCommand::Account(AccountCommand::Delete { name }) => {
            AdminRequest::AccountDelete { name }
        }
        CtlCommand::Account(AccountCommand::List) => AdminRequest::AccountList,
        CtlCommand::Acl(AclCommand::Allow { cidr }) => AdminRequest::AclAllow { cidr },
        CtlCommand::Acl(AclCommand::Deny { cidr }) => AdminRequest::AclDeny { cidr },
        CtlCommand::Acl(AclCommand::Delete { cidr }) => AdminRequest::AclDelete { cidr },
        CtlCommand::Acl(AclCommand::List) => AdminRequest::AclList,
        CtlCommand::Acl(AclCommand::Topic(AclTopicCommand::Add { rule })) => {
            AdminRequest::TopicAclAdd {
                rule: rule.join(" "),
            }
        }
        CtlCommand::Acl(AclCommand::Topic(AclTopicCommand::Delete { rule })) => {
            AdminRequest::TopicAclDelete {
                rule: rule.join(" "),
            }
        }
        CtlCommand::Acl(AclCommand::Topic(AclTopicCommand::List)) => AdminRequest::TopicAclList,
        CtlCommand::Acl(AclCommand::Topic(AclTopicCommand::Import { file })) => {
            AdminRequest::TopicAclImport {
                text: std::fs::read_to_string(&file)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?,
            }
        }
        CtlCommand::Ssl(CtlSslCommand::Reload) => AdminRequest::SslReload,
        CtlCommand::Log(LogCommand::Open { class }) => AdminRequest::LogOpen { class },
        CtlCommand::Log(LogCommand::Close { class }) => AdminRequest::LogClose { class },
        CtlCommand::Log(LogCommand::Out { class, redirect }) => {
            AdminRequest::LogOut { class, redirect }
        }
        CtlCommand::Log(LogCommand::List) => AdminRequest::LogList,
        CtlCommand::Log(LogCommand::Collect { class, state }) => AdminRequest::LogCollect {
            class,
            on: state == "on",
        },
        // The path is the caller's: the node sends the text back (`super::dump`).
        CtlCommand::Log(LogCommand::Dump { class, path: _ }) => AdminRequest::LogDump { class },
        CtlCommand::Trace(TraceCommand::Client { id }) => {
            AdminRequest::TraceClient { client_id: id }
        }
        CtlCommand::Trace(TraceCommand::Topic { filter }) => AdminRequest::TraceTopic { filter },
        CtlCommand::Trace(TraceCommand::List) => AdminRequest::TraceList,
        CtlCommand::Untrace(UntraceCommand::Client { id }) => {
            AdminRequest::UntraceClient { client_id: id }
        }
        CtlCommand::Untrace(UntraceCommand::Topic { filter }) => {
            AdminRequest::UntraceTopic { filter }
        }
        CtlCommand::Settings { name: None, .. } => AdminRequest::SettingsList,
        CtlCommand::Settings {
            name: Some(name),
            value: Some(value),
        } => AdminRequest::SettingsSet { name, value },
        CtlCommand::Settings {
            name: Some(name),
            value: None,
        } => bail!("fubar ctl settings {name} needs a value"),
    })
}

/// Where the admin endpoint of the node named by `--node` is: its socket on this machine if
/// there is one, else (for a node named explicitly) its cluster port.
pub(crate) fn target(node: &NodeLocation, access: &RemoteAccess) -> anyhow::Result<admin::Target> {
    let settings = located(node);
    let socket = admin::socket_path(&settings.node_dir());
    // Only a socket that is surely absent sends us to the network: one we may not look at
    // (another user's node dir) is reported as it is.
    let absent =
        std::fs::symlink_metadata(&socket).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound);
    let Some(name) = node.name.as_deref().filter(|_| absent) else {
        return Ok(admin::Target::Local(socket));
    };
    let node: NodeName = name.parse()?;
    let cookie_file = access
        .cookie_file
        .clone()
        .unwrap_or_else(|| settings.node.data_dir.join("cookie"));
    let cert = access.certfile.clone().zip(access.keyfile.clone());
    Ok(admin::Target::Remote(Box::new(admin::Remote {
        node,
        cafile: access.cafile.clone(),
        cookie_file,
        cert,
        socket,
    })))
}

/// The settings that locate a node from `--name` and `--data-dir` (same defaults as `node`).
pub(crate) fn located(node: &NodeLocation) -> Settings {
    let mut s = Settings::default();
    if let Some(n) = &node.name {
        // The node's directory goes by its identity, `NAME@HOST`, whatever port is named.
        s.node.name = crate::cluster::identity(n);
    }
    if let Some(d) = &node.data_dir {
        s.node.data_dir = d.clone();
    }
    s
}

/// Prints a reply; an error reply becomes an error.
pub(crate) fn print(reply: AdminResponse) -> anyhow::Result<()> {
    match reply {
        AdminResponse::Done(text) => println!("{text}"),
        AdminResponse::Error(text) => bail!("{text}"),
        AdminResponse::Status(s) => {
            println!("node          {}", s.name);
            println!("version       {}", s.version);
            println!("uptime        {} s", s.uptime_secs);
            println!("listeners     {}", s.listeners.join(", "));
            println!("connections   {}", s.connections);
            println!("sessions      {}", s.sessions);
            println!("subscriptions {}", s.subscriptions);
            println!("retained      {}", s.retained);
            println!(
                "messages      received {}, sent {}",
                s.messages_received, s.messages_sent
            );
            println!("memory        {:.1} MiB", s.memory_bytes as f64 / 1048576.0);
            println!("cluster role  {}", s.cluster_role);
            println!("auth          {}", if s.auth { "on" } else { "off" });
            println!(
                "throttled     clients {}, accepts {}",
                s.throttled_clients, s.delayed_accepts
            );
        }
        AdminResponse::Accounts(names) => names.iter().for_each(|n| println!("{n}")),
        AdminResponse::Acl(rules) => {
            for r in rules {
                println!("{} {}", if r.allow { "allow" } else { "deny " }, r.cidr);
            }
        }
        AdminResponse::TopicRules { rules, default } => {
            for r in &rules {
                println!("{r}");
            }
            println!("# {} rules; acl.default = {default}", rules.len());
        }
        AdminResponse::Settings(pairs) => {
            for (n, v) in pairs {
                println!("{n} = {v}");
            }
        }
        AdminResponse::LogClasses(classes) => {
            println!(
                "{:<9} {:<5} {:<12} {:>5} {:>12} {:>10} {:>11} {:>8}",
                "class", "open", "redirect", "files", "bytes", "events", "overwritten", "dropped"
            );
            for c in classes {
                println!(
                    "{:<9} {:<5} {:<12} {:>5} {:>12} {:>10} {:>11} {:>8}",
                    c.class,
                    if c.open { "yes" } else { "no" },
                    c.redirect,
                    c.files,
                    c.bytes,
                    c.events,
                    c.overwritten,
                    c.dropped
                );
            }
        }
        AdminResponse::Traces { clients, topics } => {
            for c in clients {
                println!("client {c}");
            }
            for t in topics {
                println!("topic  {t}");
            }
        }
        AdminResponse::Events(events) => {
            for e in &events {
                println!("{}", fubar_logs::format_line(e));
            }
        }
        AdminResponse::Event(e) => println!("{}", fubar_logs::format_line(&e)),
        AdminResponse::Missed(n) => println!("... {n} events missed (the tail fell behind)"),
        AdminResponse::LogLinks(links) => print_links(&links),
        AdminResponse::Cluster(status) => print_cluster(&status),
        AdminResponse::DumpStart { .. }
        | AdminResponse::DumpText(_)
        | AdminResponse::DumpEnd { .. } => bail!("a dump's text arrived outside `log dump`"),
    }
    Ok(())
}

/// The cluster as the node sees it.
fn print_cluster(s: &fubar_logproto::admin::ClusterStatus) {
    println!(
        "node {}  leader {}  term {}  applied {}  routes {}  clients {}  pending {}",
        s.node,
        s.leader.as_deref().unwrap_or("none"),
        s.term,
        s.applied,
        s.routes,
        s.clients,
        s.pending
    );
    println!(
        "{:<28} {:<22} {:<8} {:<8} {:<10} {:>6}",
        "member", "address", "role", "kind", "link", "lag"
    );
    for m in &s.members {
        println!(
            "{:<28} {:<22} {:<8} {:<8} {:<10} {:>6}",
            m.name,
            m.addr,
            m.role,
            m.kind,
            m.link,
            m.lag.map_or_else(|| "-".to_owned(), |l| l.to_string())
        );
    }
}

/// The monitor's view of every node's log link.
fn print_links(links: &[fubar_logproto::admin::LinkStatus]) {
    println!();
    println!(
        "{:<24} {:<4} {:>10} {:>10} {:>9} {:>9} {:>10} {:>8}",
        "node", "up", "events", "acked seq", "events/s", "lag ms", "duplicates", "lost"
    );
    for l in links {
        println!(
            "{:<24} {:<4} {:>10} {:>10} {:>9.0} {:>9} {:>10} {:>8}",
            l.node,
            if l.connected { "yes" } else { "no" },
            l.events,
            l.upto_seq,
            l.events_per_sec,
            l.lag_ms.map_or_else(|| "-".to_owned(), |ms| ms.to_string()),
            l.duplicates,
            l.lost
        );
    }
}
