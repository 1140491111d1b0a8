//! fubar: a clustered MQTT broker built to be debugged.
//!
//! The binary's `main` parses the command line (`cli`) and hands it to `commands::run`. The
//! broker is built from sans-IO protocol pieces (`mqtt`, the `fubar-mqtt` crate) driven by tokio tasks (`broker`).

pub mod admin;
pub mod broker;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod console;
pub mod http;
mod layers;
pub mod logging;
/// The MQTT protocol core lives in its own crate (`node/mqtt`, no tokio); re-exported so
/// `fubar::mqtt::…` paths keep working for tools and tests.
pub use fubar_mqtt as mqtt;
pub mod process_memory;
pub mod settings;
pub mod tools;
pub mod websocket;
