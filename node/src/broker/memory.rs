//! The memory alarm, as Erlang fubar's `vm_memory_monitor`: above the high watermark (a share
//! of the machine's memory) the node refuses new connections with CONNACK 3 and drops QoS 0
//! backlog first; it leaves the alarm below the low watermark. Entering and leaving are
//! `warning` events.
//!
//! Between two checks a connection storm could carry the node far past the watermark, so each
//! admitted connection also spends an estimate of its cost from the headroom the last check
//! measured: when the headroom is spent, new connections are refused until the next check
//! measures what they really cost.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Broker;
use crate::process_memory::{resident_bytes, total_bytes};

/// What a connection is assumed to cost between its admission and the next memory check:
/// an idle one measures about 4 KiB, and one in its first packets holds read and write
/// buffers and a session too.
pub const CONNECTION_ESTIMATE_BYTES: u64 = 16 << 10;

/// Why a new connection is refused for memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryRefusal {
    /// The alarm is on.
    Alarm,
    /// The connections admitted since the last check would spend the headroom.
    NoHeadroom,
}

impl MemoryRefusal {
    /// The reason logged with the refusal.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Alarm => "memory alarm: above the high watermark",
            Self::NoHeadroom => "memory: new connections would pass the high watermark",
        }
    }
}

/// Whether the node is above its memory high watermark, and how much it may still take.
#[derive(Debug)]
pub struct MemoryAlarm {
    on: AtomicBool,
    /// Bytes below the high watermark at the last check, less the estimates of connections
    /// admitted since (unknown, so unlimited, before the first check).
    headroom: AtomicU64,
}

impl Default for MemoryAlarm {
    fn default() -> Self {
        Self {
            on: AtomicBool::new(false),
            headroom: AtomicU64::new(u64::MAX),
        }
    }
}

impl MemoryAlarm {
    /// Admits a new connection, spending its estimate from the headroom, or says why not.
    pub fn admit(&self) -> Result<(), MemoryRefusal> {
        if self.is_on() {
            return Err(MemoryRefusal::Alarm);
        }
        self.headroom
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| {
                h.checked_sub(CONNECTION_ESTIMATE_BYTES)
            })
            .map(drop)
            .map_err(|_| MemoryRefusal::NoHeadroom)
    }

    /// Whether the alarm is on.
    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// Decides the alarm for `used` bytes of `total`; returns `Some(new state)` on a change.
    /// Also measures the headroom anew.
    pub fn update(&self, used: u64, total: u64, high: f64, low: f64) -> Option<bool> {
        let limit = (high * total as f64) as u64;
        self.headroom
            .store(limit.saturating_sub(used), Ordering::Relaxed);
        let share = used as f64 / total.max(1) as f64;
        let was = self.is_on();
        let now = if was { share >= low } else { share >= high };
        (now != was).then(|| {
            self.on.store(now, Ordering::Relaxed);
            now
        })
    }
}

/// Watches the node's memory every `memory.check_ms` until shutdown.
pub(crate) async fn watch(broker: Arc<Broker>, shutdown: CancellationToken) {
    let total = total_bytes();
    if total == 0 {
        tracing::warn!(target: "warning", "cannot read the machine's memory: the memory alarm is off");
        return;
    }
    loop {
        let settings = broker.settings();
        let every = Duration::from_millis(settings.memory.check_ms.max(10));
        let used = resident_bytes();
        let (high, low) = (
            settings.memory.high_watermark,
            settings.memory.low_watermark,
        );
        match broker.memory.update(used, total, high, low) {
            Some(true) => {
                tracing::warn!(target: "warning", used_bytes = used, total_bytes = total,
                    high_watermark = high, "memory alarm on: refusing new connections, dropping QoS 0 backlog");
                let dropped = broker.registry.drop_qos0_everywhere();
                broker
                    .stats
                    .messages_shed
                    .fetch_add(dropped as u64, Ordering::Relaxed);
                tracing::warn!(target: "warning", dropped, "QoS 0 backlog dropped under the memory alarm");
            }
            Some(false) => {
                tracing::warn!(target: "warning", used_bytes = used, total_bytes = total,
                    low_watermark = low, "memory alarm off");
            }
            None => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alarm_has_hysteresis() {
        let a = MemoryAlarm::default();
        assert_eq!(a.update(39, 100, 0.40, 0.38), None);
        assert_eq!(a.update(40, 100, 0.40, 0.38), Some(true));
        assert_eq!(
            a.update(39, 100, 0.40, 0.38),
            None,
            "between the marks: stays on"
        );
        assert_eq!(a.update(37, 100, 0.40, 0.38), Some(false));
        assert!(!a.is_on());
    }

    #[test]
    fn connections_between_checks_spend_the_headroom() {
        let a = MemoryAlarm::default();
        for _ in 0..1000 {
            assert_eq!(a.admit(), Ok(()), "no check yet: nothing is known");
        }
        let total = 1 << 30;
        let high = 0.5;
        // Room for three connections' estimates below the watermark.
        let used = (total as f64 * high) as u64 - 3 * CONNECTION_ESTIMATE_BYTES - 1;
        assert_eq!(a.update(used, total, high, 0.4), None);
        for _ in 0..3 {
            assert_eq!(a.admit(), Ok(()));
        }
        assert_eq!(a.admit(), Err(MemoryRefusal::NoHeadroom));
        // The next check measures what they really cost: less than estimated here.
        assert_eq!(a.update(used - (1 << 20), total, high, 0.4), None);
        assert_eq!(a.admit(), Ok(()));
        assert_eq!(a.update(total, total, high, 0.4), Some(true));
        assert_eq!(a.admit(), Err(MemoryRefusal::Alarm));
    }
}
