//! The memory alarm, as Erlang fubar's `vm_memory_monitor`: above the high watermark (a share
//! of the machine's memory) the node refuses new connections with CONNACK 3 and drops QoS 0
//! backlog first; it leaves the alarm below the low watermark. Entering and leaving are
//! `warning` events.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Broker;
use crate::process_memory::{resident_bytes, total_bytes};

/// Whether the node is above its memory high watermark.
#[derive(Debug, Default)]
pub struct MemoryAlarm {
    on: AtomicBool,
}

impl MemoryAlarm {
    /// Whether the alarm is on.
    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// Decides the alarm for `used` bytes of `total`; returns `Some(new state)` on a change.
    pub fn update(&self, used: u64, total: u64, high: f64, low: f64) -> Option<bool> {
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
}
