//! Client tools: `pub` and `sub` (`pubsub`), load generation (`bench`). They speak MQTT through `mqtt/` and never touch
//! `broker/`.

pub mod bench;
pub mod client;
pub mod pubsub;
