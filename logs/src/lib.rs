//! A node's log engine.
//!
//! This crate will own the per-class sinks, the rolling binary segment files (size-capped,
//! N files, torn-tail safe), the redirects (none, stdout, daily text files), dumps to text,
//! runtime open/close/out, and the `tracing` layer that turns events whose target is a log
//! class (`access`, `protocol`, ...) into `Event`s.
//!
//! Until it lands, the broker prints its classed `tracing` events with `tracing-subscriber`.
