//! Durable broker state.
//!
//! This crate will own fubar's preserved state in fjall (accounts, retained messages,
//! persistent sessions and their queues, settings, routes) and its replication across the
//! cluster. The single-node broker of step 1 keeps that state in memory.
