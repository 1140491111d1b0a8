//! Client tools: load generation (`bench`). They speak MQTT through `mqtt/` and never touch
//! `broker/`.

pub mod bench;
pub mod client;
