//! The wire vocabulary shared by every fubar node, its tools and the monitor.
//!
//! This crate owns the log `Class` and `Event` types (`event`), the admin requests and replies
//! (`admin`), the log link's messages between nodes and the monitor with its ALPN name
//! (`link`), and their length-prefixed postcard framing (`frame`). Later steps add search
//! requests. It depends on no other fubar crate.

pub mod admin;
pub mod event;
pub mod frame;
pub mod link;

pub use event::{Class, Event, EventRef};
