//! Bounds of the retained store (issue 16.5): without them one anonymous client fills the
//! disk, and in a cluster every member's disk, with retained messages.

use serde::{Deserialize, Serialize};

use super::SettingsError;

/// Bounds of the retained store. A retained PUBLISH beyond one is refused: PUBACK/PUBREC
/// 0x97 to an MQTT 5.0 client (the message is not routed), a `warning` for a 3.1.1 client
/// (the message is delivered, only not retained). Replacing a topic's message by one no
/// larger, and deleting one, always work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetainedSettings {
    /// Most topics with a retained message.
    pub max_messages: usize,
    /// Most bytes (topic + payload) of all retained messages together.
    pub max_bytes: u64,
    /// Largest payload of one retained message.
    pub max_payload_bytes: usize,
}

impl Default for RetainedSettings {
    fn default() -> Self {
        Self {
            // A retained "last known state" per device for a million devices.
            max_messages: 1_000_000,
            // Every retained message is held in memory as well as on disk, on every member.
            max_bytes: 1 << 30,
            // EMQX's retainer default (1 MB), and the default `mqtt.max_packet_size`; a
            // state message is rarely more than a few KiB.
            max_payload_bytes: 1 << 20,
        }
    }
}

impl RetainedSettings {
    pub(super) fn validate(&self) -> Result<(), SettingsError> {
        if self.max_messages == 0 || self.max_bytes == 0 || self.max_payload_bytes == 0 {
            return Err(SettingsError::Invalid {
                name: "retained.*",
                why: "must be at least 1".to_owned(),
            });
        }
        Ok(())
    }
}
