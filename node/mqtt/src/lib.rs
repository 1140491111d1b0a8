//! The MQTT protocol, sans-IO: packet types, the codec, topic names and filters, and the
//! per-client session and connection state machines. Nothing here opens a socket or reads a clock; callers
//! pass bytes and `now` in and take packets and deadlines out.

pub mod close_reason;
pub mod connection;
pub mod decode;
pub mod encode;
pub mod message;
pub mod packet;
pub mod properties;
pub mod properties_text;
pub mod reason;
pub mod receive_quota;
pub mod redact;
pub mod session;
pub mod token_bucket;
pub mod topic;
pub mod topic_alias;
pub mod trie;
