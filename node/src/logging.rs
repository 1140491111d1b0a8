//! Printing classed log events until the log engine (`fubar-logs`) routes them.
//!
//! Every event's `tracing` target is its log class. The classes named in `log.stdout` are
//! printed to stdout, one line per event; the others cost only a disabled-callsite check.

use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Layer as _, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::settings::LogSettings;

/// Installs the global subscriber for `settings`.
pub fn init(settings: &LogSettings) -> anyhow::Result<()> {
    let mut targets = Targets::new();
    for class in &settings.stdout {
        targets = targets.with_target(class.as_str(), Level::TRACE);
    }
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stdout)
        .with_ansi(false)
        .with_level(false)
        .with_target(true);
    tracing_subscriber::registry()
        .with(fmt.with_filter(targets))
        .try_init()?;
    Ok(())
}
