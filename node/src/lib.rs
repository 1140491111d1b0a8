//! fubar: a clustered MQTT broker built to be debugged.

pub mod broker;
pub mod mqtt;
