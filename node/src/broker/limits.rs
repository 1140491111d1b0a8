//! The node-wide bounds a client's packets are checked against (issue 16.4 and 16.5): topic
//! levels and length, the retained store, persistent sessions and the disk guard. The
//! connection driver calls these and sends what they decide; the `warning` events are
//! written here, with the fields a search needs (client, peer, the topic cut to a loggable
//! length, the limit).

use std::net::SocketAddr;
use std::time::Instant;

use super::retained::{RetainChange, RetainRefusal};
use super::router::Routed;
use super::Broker;
use crate::mqtt::topic::{truncated, TopicLimitError};
use crate::settings::Settings;

/// Bytes of a refused topic written to a `warning` (a refused topic may be 64 KiB).
const LOGGED_TOPIC_BYTES: usize = 256;

/// Hands the run-time-changeable bounds to the parts of the broker that hold them.
pub(crate) fn apply(broker: &Broker, settings: &Settings) {
    broker.retained.set_limits(settings.retained.clone());
    broker
        .registry
        .offline_budget()
        .set_max(settings.session.max_offline_queued_bytes);
    broker.disk.set_limits(
        settings.store.min_free_disk_bytes,
        std::time::Duration::from_millis(settings.store.disk_check_ms),
    );
}

/// Whether a routed message's retained copy goes to the cluster: not when the retained
/// store here refused it.
pub(crate) fn replicate(routed: &Routed) -> bool {
    !matches!(routed.retained, Some(RetainChange::Refused(_)))
}

/// A topic name or filter over `mqtt.max_topic_levels` / `mqtt.max_topic_len` was refused.
pub(crate) fn topic_refused(
    kind: &'static str,
    client: &str,
    peer: SocketAddr,
    topic: &str,
    error: TopicLimitError,
) {
    tracing::warn!(target: "warning", client, peer = %peer, kind,
        topic = %truncated(topic, LOGGED_TOPIC_BYTES), "topic refused: {error}");
}

/// A retained message from a client was refused (`delivered`: the message still went to its
/// subscribers, as for a 3.1.1 client, which cannot be told).
pub(crate) fn retained_refused(
    client: &str,
    peer: SocketAddr,
    topic: &str,
    size: usize,
    why: RetainRefusal,
    delivered: bool,
) {
    let outcome = if delivered {
        "delivered, not retained"
    } else {
        "refused"
    };
    tracing::warn!(target: "warning", client, peer = %peer, kind = "PUBLISH",
        topic = %truncated(topic, LOGGED_TOPIC_BYTES), size,
        "retained message {outcome}: {why}");
}

/// A will's retained copy was refused (the will was still published).
pub(crate) fn note_refused_will(client: &str, topic: &str, change: RetainChange) {
    if let RetainChange::Refused(why) = change {
        tracing::warn!(target: "warning", client, kind = "will",
            topic = %truncated(topic, LOGGED_TOPIC_BYTES),
            "retained will delivered, not retained: {why}");
    }
}

/// Why a CONNECT that would create a persistent session is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SessionRefusal {
    /// `session.max_persistent` persistent sessions exist.
    #[error("session.max_persistent ({max}) reached")]
    TooMany {
        /// The limit.
        max: usize,
    },
    /// The disk is nearly full.
    #[error(transparent)]
    DiskLow(#[from] super::disk_guard::DiskLow),
}

/// Whether `client_id` may have a persistent session: resuming its own always works; a new
/// one is refused at `session.max_persistent` or while the disk is nearly full.
pub(crate) fn admit_session(
    broker: &Broker,
    settings: &Settings,
    client_id: &str,
    clean_start: bool,
    persistent: bool,
) -> Result<(), SessionRefusal> {
    if !persistent {
        return Ok(());
    }
    let resumed = !clean_start
        && broker
            .registry
            .get(client_id)
            .is_some_and(|h| h.lock().session.is_persistent());
    if resumed {
        return Ok(());
    }
    let max = settings.session.max_persistent;
    if broker.registry.persistent_at_least(max, client_id) {
        return Err(SessionRefusal::TooMany { max });
    }
    if broker.store.is_some() {
        broker.disk.check(Instant::now())?;
    }
    Ok(())
}

/// A CONNECT refused by [`admit_session`].
pub(crate) fn session_refused(client: &str, peer: SocketAddr, why: SessionRefusal) {
    tracing::warn!(target: "warning", client, peer = %peer, kind = "CONNECT",
        "persistent session refused: {why}");
}
