//! The `log` commands of the admin endpoint: the node's log engine at run time.

use std::path::PathBuf;

use fubar_logproto::admin::{AdminRequest, AdminResponse, LogClassStatus};
use fubar_logproto::Class;
use fubar_logs::Redirect;

use crate::broker::Broker;

/// Runs one `log` request (blocking: a dump reads and writes files).
pub(super) fn execute(broker: &Broker, request: AdminRequest) -> AdminResponse {
    let Some(logs) = broker.logs.get() else {
        return AdminResponse::Error("this node runs without its log engine".into());
    };
    let class = |name: &str| name.parse::<Class>().map_err(|e| e.to_string());
    let result = match request {
        AdminRequest::LogOpen { class: name } => class(&name).and_then(|c| {
            logs.open(c).map_err(|e| e.to_string())?;
            Ok(AdminResponse::Done(format!("{c} open")))
        }),
        AdminRequest::LogClose { class: name } => class(&name).and_then(|c| {
            logs.close(c).map_err(|e| e.to_string())?;
            Ok(AdminResponse::Done(format!("{c} closed")))
        }),
        AdminRequest::LogOut {
            class: name,
            redirect,
        } => class(&name).and_then(|c| {
            let r: Redirect = redirect
                .parse()
                .map_err(|e: fubar_logs::LogError| e.to_string())?;
            let shown = r.to_string();
            logs.out(c, r).map_err(|e| e.to_string())?;
            tracing::info!(target: "info", class = %c, redirect = %shown, "log redirected");
            Ok(AdminResponse::Done(format!("{c} -> {shown}")))
        }),
        AdminRequest::LogList => Ok(AdminResponse::LogClasses(
            logs.list()
                .into_iter()
                .map(|s| LogClassStatus {
                    class: s.class.to_string(),
                    open: s.open,
                    redirect: s.redirect.to_string(),
                    files: s.files as u64,
                    bytes: s.bytes,
                    events: s.events,
                    overwritten: s.overwritten,
                    dropped: s.dropped,
                })
                .collect(),
        )),
        AdminRequest::LogDump {
            class: Some(name),
            path,
        } => class(&name).and_then(|c| {
            let path = path
                .map(PathBuf::from)
                .unwrap_or_else(|| broker.settings().log_dir().join(format!("{c}.dump.log")));
            let report = logs.dump(c, &path).map_err(|e| e.to_string())?;
            Ok(AdminResponse::Done(format!(
                "{} events of {c} written to {}{}",
                report.events,
                path.display(),
                skipped(report.skipped_bytes)
            )))
        }),
        AdminRequest::LogDump { class: None, path } => {
            let dir = path
                .map(PathBuf::from)
                .unwrap_or_else(|| broker.settings().log_dir());
            logs.dump_all(&dir).map_err(|e| e.to_string()).map(|files| {
                let lines: Vec<String> = files
                    .iter()
                    .map(|(c, p, r)| {
                        format!(
                            "{c}: {} events -> {}{}",
                            r.events,
                            p.display(),
                            skipped(r.skipped_bytes)
                        )
                    })
                    .collect();
                AdminResponse::Done(if lines.is_empty() {
                    "no class has events".into()
                } else {
                    lines.join("\n")
                })
            })
        }
        other => Err(format!("not a log request: {other:?}")),
    };
    result.unwrap_or_else(AdminResponse::Error)
}

fn skipped(bytes: u64) -> String {
    if bytes == 0 {
        String::new()
    } else {
        format!(" ({bytes} corrupt bytes skipped)")
    }
}
