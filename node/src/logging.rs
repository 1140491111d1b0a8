//! Starting the node's log engine (`fubar-logs`) and installing it as the `tracing`
//! subscriber: every event whose target is a log class goes to that class's segments and
//! redirect.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use fubar_logproto::Class;
use fubar_logs::{LogConfig, LogHandle, Redirect};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::settings::Settings;

/// Starts the log engine for `settings` and installs its layer globally; returns it with the
/// node's boot epoch (µs since the Unix epoch), which numbers this run's events.
pub fn init(settings: &Settings) -> anyhow::Result<(LogHandle, u64)> {
    let mut classes = Vec::new();
    for (name, redirect) in &settings.log.classes {
        let class: Class = name.parse()?;
        let redirect: Redirect = redirect.parse()?;
        classes.push((class, redirect));
    }
    let epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    let dir = settings.log_dir();
    let config = LogConfig {
        node: settings.node.name.clone(),
        epoch,
        dir: dir.clone(),
        max_bytes: settings.log.max_bytes,
        max_files: settings.log.max_files,
        classes,
        channel_capacity: settings.log.channel_capacity,
        flush_interval: Duration::from_millis(settings.log.flush_ms.max(1)),
        max_events_per_sec: settings.log.max_events_per_sec,
    };
    let (handle, layer) = fubar_logs::start(config)
        .with_context(|| format!("cannot start the log engine in {}", dir.display()))?;
    tracing_subscriber::registry().with(layer).try_init()?;
    Ok((handle, epoch))
}
