//! Clients connected now, by the listener they came in on and the MQTT version they speak:
//! one relaxed atomic per (listener, protocol), raised when a CONNECT is accepted and lowered
//! when that connection ends (by a guard, so no way out of the driver forgets it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::mqtt::packet::ProtocolVersion;

/// The listeners by the transport names the drivers use.
const TRANSPORTS: [&str; 4] = ["tcp", "tls", "ws", "wss"];
/// The listeners as `/metrics` labels them (as `fubar_connections` does), in that order.
pub const LISTENERS: [&str; 4] = ["mqtt", "mqtts", "ws", "wss"];
/// The protocol levels, as `/metrics` labels them.
pub const PROTOCOLS: [&str; 3] = ["3.1", "3.1.1", "5.0"];

/// Clients connected now, by listener and protocol level.
#[derive(Debug, Default)]
pub struct OnlineClients {
    counts: [[AtomicU64; PROTOCOLS.len()]; LISTENERS.len()],
}

impl OnlineClients {
    /// The clients connected now: `(listener, protocol, count)` for every pair.
    pub fn counts(&self) -> Vec<(&'static str, &'static str, u64)> {
        let mut out = Vec::with_capacity(LISTENERS.len() * PROTOCOLS.len());
        for (l, row) in LISTENERS.iter().zip(&self.counts) {
            for (p, n) in PROTOCOLS.iter().zip(row) {
                out.push((*l, *p, n.load(Ordering::Relaxed)));
            }
        }
        out
    }

    /// All clients connected now.
    pub fn total(&self) -> u64 {
        self.counts
            .iter()
            .flatten()
            .map(|n| n.load(Ordering::Relaxed))
            .sum()
    }
}

/// Counts one connected client until it is dropped.
#[derive(Debug)]
pub struct Online {
    owner: Arc<OnlineClients>,
    listener: usize,
    protocol: usize,
}

impl Online {
    /// Counts a client whose CONNECT was accepted on `transport` (`tcp`, `tls`, `ws` or
    /// `wss`; an unknown one counts as `tcp`) speaking `protocol`.
    pub fn count(owner: &Arc<OnlineClients>, transport: &str, protocol: ProtocolVersion) -> Self {
        let listener = TRANSPORTS.iter().position(|t| *t == transport).unwrap_or(0);
        let protocol = match protocol {
            ProtocolVersion::V31 => 0,
            ProtocolVersion::V311 => 1,
            ProtocolVersion::V5 => 2,
        };
        owner.counts[listener][protocol].fetch_add(1, Ordering::Relaxed);
        Self {
            owner: owner.clone(),
            listener,
            protocol,
        }
    }
}

impl Drop for Online {
    fn drop(&mut self) {
        self.owner.counts[self.listener][self.protocol].fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_counts_while_its_guard_lives() {
        let online = Arc::new(OnlineClients::default());
        let a = Online::count(&online, "ws", ProtocolVersion::V5);
        let b = Online::count(&online, "tcp", ProtocolVersion::V311);
        let c = Online::count(&online, "tcp", ProtocolVersion::V311);
        let counts = online.counts();
        assert!(counts.contains(&("ws", "5.0", 1)));
        assert!(counts.contains(&("mqtt", "3.1.1", 2)));
        assert_eq!(online.total(), 3);
        drop((a, b));
        assert_eq!(online.total(), 1);
        drop(c);
        assert!(online.counts().iter().all(|(_, _, n)| *n == 0));
    }
}
