//! The wire vocabulary shared by every fubar node, its tools and the monitor.
//!
//! This crate owns the log `Class` and `Event` types (`event`), the admin requests and replies
//! (`admin`), and their length-prefixed postcard framing (`frame`). Later steps add event
//! batches and acks, search requests, and the ALPN names of the QUIC links. It depends on no
//! other fubar crate.

pub mod admin;
pub mod event;
pub mod frame;

pub use event::{Class, Event};
