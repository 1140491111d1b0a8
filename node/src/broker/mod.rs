//! The broker: listeners, connection drivers, the router.

pub mod trie;
