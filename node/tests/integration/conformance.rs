//! MQTT 3.1 / 3.1.1 conformance: one test per behaviour of the broker, observed from the
//! outside with rumqttc clients (raw bytes where rumqttc cannot say it) and the broker's log.
//!
//! Negative claims ("X is not delivered") are proven with a marker message published after X
//! on a path that delivers in order, never by waiting for a while.

mod delivery;
mod limits;
mod retained;
mod sessions;
mod subscriptions;
pub(crate) mod support;
mod will;
