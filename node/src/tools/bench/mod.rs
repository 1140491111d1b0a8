//! `fubar bench`: load generation against any MQTT broker, with results a person can read and
//! `--json` for scripts.

pub mod conns;
pub mod fanin;
pub mod handshakes;
pub mod latency;
