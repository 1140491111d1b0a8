//! `fubar search`, `fubar log tail` and `fubar log reindex`: the monitor's collected events.

use std::io::Write as _;
use std::os::unix::net::UnixStream;

use anyhow::{bail, Context as _};
use chrono::{DateTime, NaiveDateTime, Utc};
use fubar_logproto::admin::{AdminRequest, AdminResponse, SearchQuery};
use fubar_logproto::Event;

use super::ctl::{located, target};
use crate::admin;
use crate::cli::{NodeLocation, RemoteAccess, SearchArgs};

/// Runs `fubar search`.
pub(crate) fn run(a: SearchArgs) -> anyhow::Result<()> {
    let now_us = Utc::now().timestamp_micros();
    let from_us = match (&a.since, &a.from) {
        (Some(since), _) => Some(now_us - duration_us(since)?),
        (None, Some(from)) => Some(time_us(from)?),
        (None, None) => None,
    };
    let until_us = a.until.as_deref().map(time_us).transpose()?;
    let query = SearchQuery {
        query: a.query,
        class: a.class,
        from_us,
        until_us,
        limit: a.limit,
    };
    let socket = target(&a.node, &a.remote)?;
    match admin::request(&socket, &AdminRequest::Search(query))? {
        AdminResponse::Events(events) => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for e in &events {
                writeln!(out, "{}", line_of(e, a.json))?;
            }
            out.flush()?;
            Ok(())
        }
        AdminResponse::Error(e) => bail!("{e}"),
        other => bail!("unexpected reply from the monitor: {other:?}"),
    }
}

/// Runs `fubar log tail`: prints matching events until the monitor stops or Ctrl-C.
pub(crate) fn tail(
    node: &NodeLocation,
    remote: &RemoteAccess,
    class: Option<String>,
    query: String,
) -> anyhow::Result<()> {
    let socket = target(node, remote)?;
    let mut out = std::io::stdout().lock();
    let mut failed = None;
    admin::stream(&socket, &AdminRequest::LogTail { query, class }, |reply| {
        match reply {
            AdminResponse::Event(e) => writeln!(out, "{}", fubar_logs::format_line(&e))?,
            AdminResponse::Missed(n) => {
                writeln!(out, "... {n} events missed (the tail fell behind)")?;
            }
            AdminResponse::Error(e) => {
                failed = Some(e);
                return Ok(false);
            }
            _ => {}
        }
        out.flush()?;
        Ok(true)
    })
    .with_context(|| format!("log tail on {socket}"))?;
    match failed {
        Some(e) => bail!("{e}"),
        None => Ok(()),
    }
}

/// Runs `fubar log reindex`: rebuilds the monitor's index from its segments.
pub(crate) fn reindex(node: &NodeLocation) -> anyhow::Result<()> {
    let settings = located(node);
    let log_dir = settings.log_dir();
    if !log_dir.is_dir() {
        bail!("no log directory at {}", log_dir.display());
    }
    let socket = admin::socket_path(&settings.node_dir());
    if UnixStream::connect(&socket).is_ok() {
        bail!(
            "the monitor is running: stop it first (`fubar ctl --name {} stop`)",
            settings.node.name
        );
    }
    let index_dir = settings.node_dir().join("index");
    let stats =
        fubar_monitor::indexer::reindex(&log_dir, &index_dir, settings.monitor.index_heap_bytes)?;
    println!("index rebuilt in {}: {stats:?}", index_dir.display());
    Ok(())
}

/// An event as a text line (as the redirects write it) or as one JSON object.
fn line_of(e: &Event, json: bool) -> String {
    if !json {
        return fubar_logs::format_line(e);
    }
    let fields: serde_json::Map<String, serde_json::Value> = e
        .fields
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.clone())))
        .collect();
    serde_json::json!({
        "time": DateTime::from_timestamp_micros(e.time_us).map(|t| t.to_rfc3339()),
        "time_us": e.time_us,
        "node": e.node,
        "epoch": e.epoch,
        "seq": e.seq,
        "class": e.class.name(),
        "message": e.message,
        "fields": fields,
    })
    .to_string()
}

/// `30s`, `15m`, `1h`, `2d` in microseconds.
fn duration_us(s: &str) -> anyhow::Result<i64> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = n
        .parse()
        .with_context(|| format!("--since {s}: not a duration like 1h"))?;
    let secs = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => bail!("--since {s}: the unit is s, m, h or d"),
    };
    Ok(n * secs * 1_000_000)
}

/// `2026-11-25T14:00:00Z` (RFC 3339) or `2026-11-25 14:00:00` (UTC) in microseconds.
fn time_us(s: &str) -> anyhow::Result<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_micros());
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
        .map(|t| t.and_utc().timestamp_micros())
        .with_context(|| format!("{s:?}: a time is 2026-11-25T14:00:00Z or '2026-11-25 14:00:00'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_times() {
        assert_eq!(duration_us("90s").unwrap(), 90_000_000);
        assert_eq!(duration_us("2h").unwrap(), 7_200_000_000);
        assert!(duration_us("1w").is_err() && duration_us("h").is_err());
        assert_eq!(
            time_us("2026-11-25T00:00:01Z").unwrap(),
            time_us("2026-11-25 00:00:01").unwrap()
        );
        assert!(time_us("yesterday").is_err());
    }
}
