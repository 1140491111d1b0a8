//! Where the monitor puts the events it takes: normally the log engine's segments.

use fubar_logproto::Event;
use fubar_logs::LogHandle;

use crate::MonitorError;

/// Writes other nodes' events durably; called from a blocking thread, one batch at a time per
/// node. The monitor acknowledges a batch only after `write` returns `Ok`.
pub trait EventSink: Send + Sync + 'static {
    /// Writes `events` (node, epoch, sequence and time as they are) and returns once they
    /// are in a segment.
    fn write(&self, events: &[Event]) -> Result<(), MonitorError>;
}

impl EventSink for LogHandle {
    fn write(&self, events: &[Event]) -> Result<(), MonitorError> {
        Ok(self.write_events(events)?)
    }
}

/// The sink of a node that is not a monitor: its endpoint does not offer the log link's ALPN,
/// so nothing reaches it; a batch that somehow did would be refused, never dropped silently.
#[derive(Debug, Clone, Copy, Default)]
pub struct NotAMonitor;

impl EventSink for NotAMonitor {
    fn write(&self, _events: &[Event]) -> Result<(), MonitorError> {
        Err(MonitorError::Protocol("this node is not a monitor".into()))
    }
}
