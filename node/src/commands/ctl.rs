//! `fubar ctl`: one request to a running node's admin socket, its reply printed.

use anyhow::bail;
use fubar_logproto::admin::{AdminRequest, AdminResponse};

use crate::admin;
use crate::cli::{AccountCommand, AclCommand, CtlArgs, CtlCommand, NodeLocation};
use crate::settings::Settings;

/// Runs one `fubar ctl` command.
pub(crate) fn run(args: CtlArgs) -> anyhow::Result<()> {
    let request = match args.command {
        CtlCommand::Status => AdminRequest::Status,
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
        CtlCommand::Settings { name: None, .. } => AdminRequest::SettingsList,
        CtlCommand::Settings {
            name: Some(name),
            value: Some(value),
        } => AdminRequest::SettingsSet { name, value },
        CtlCommand::Settings {
            name: Some(name),
            value: None,
        } => bail!("fubar ctl settings {name} needs a value"),
    };
    let socket = admin::socket_path(&located(&args.node).node_dir());
    print(admin::request(&socket, &request)?)
}

/// The settings that locate a node from `--name` and `--data-dir` (same defaults as `node`).
pub(crate) fn located(node: &NodeLocation) -> Settings {
    let mut s = Settings::default();
    if let Some(n) = &node.name {
        s.node.name = n.clone();
    }
    if let Some(d) = &node.data_dir {
        s.node.data_dir = d.clone();
    }
    s
}

fn print(reply: AdminResponse) -> anyhow::Result<()> {
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
            println!("memory        {:.1} MiB", s.memory_bytes as f64 / 1048576.0);
            println!("cluster role  {}", s.cluster_role);
            println!("auth          {}", if s.auth { "on" } else { "off" });
        }
        AdminResponse::Accounts(names) => names.iter().for_each(|n| println!("{n}")),
        AdminResponse::Acl(rules) => {
            for r in rules {
                println!("{} {}", if r.allow { "allow" } else { "deny " }, r.cidr);
            }
        }
        AdminResponse::Settings(pairs) => {
            for (n, v) in pairs {
                println!("{n} = {v}");
            }
        }
    }
    Ok(())
}
