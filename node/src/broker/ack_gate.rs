//! Acknowledgements that wait on other nodes: a publisher's PUBACK/PUBREC is held until the
//! copies its message made on other members are confirmed (a backup holding a persistent
//! session's journal, a node a message was forwarded to for its persistent sessions).
//!
//! Each such copy is a ticket, issued in order on one link (a backup, a forward stream) and
//! acknowledged by it in any order. The gate's `done` mark is the highest ticket with every
//! ticket up to it settled; a connection remembers the tickets issued while its PUBLISH was
//! routed and releases the acknowledgement once `done` passes them, or refuses it if one of
//! them failed (a link that timed out, a member dropped, a full queue). A ticket range is a
//! little wider than one message's copies (another connection's copies made at the same
//! moment fall in it): a failure of those refuses this acknowledgement too, which costs a
//! duplicate, never a loss.

use parking_lot::Mutex;
use std::collections::{BTreeSet, HashMap, VecDeque};

use tokio::sync::watch;

/// Failed ranges remembered; older ones are forgotten (their acknowledgements have long
/// been settled: a failure settles every ticket of its link at once).
const FAILED_KEPT: usize = 1024;

/// The tickets of copies on other nodes, and which of them are settled.
#[derive(Debug)]
pub struct AckGate {
    state: Mutex<GateState>,
    done: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct GateState {
    /// The last ticket issued.
    last: u64,
    /// Per link, its tickets not yet settled.
    links: HashMap<u64, BTreeSet<u64>>,
    /// Failed tickets, as inclusive ranges, newest last.
    failed: VecDeque<(u64, u64)>,
}

impl GateState {
    fn done(&self) -> u64 {
        self.links
            .values()
            .filter_map(|t| t.first())
            .min()
            .map_or(self.last, |first| first - 1)
    }

    fn note_failed(&mut self, lo: u64, hi: u64) {
        if let Some(back) = self.failed.back_mut() {
            if back.1 + 1 >= lo && lo >= back.0 {
                back.1 = back.1.max(hi);
                return;
            }
        }
        if self.failed.len() == FAILED_KEPT {
            self.failed.pop_front();
        }
        self.failed.push_back((lo, hi));
    }
}

impl Default for AckGate {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            done: watch::Sender::new(0),
        }
    }
}

impl AckGate {
    /// The last ticket issued (0: none yet).
    pub fn last(&self) -> u64 {
        self.state.lock().last
    }

    /// Issues a ticket for one copy on each of `links`.
    pub fn issue(&self, links: &[u64]) -> u64 {
        let mut s = self.state.lock();
        s.last += 1;
        let t = s.last;
        for link in links {
            s.links.entry(*link).or_default().insert(t);
        }
        t
    }

    /// `link` confirmed its copies of `tickets`.
    pub fn settle(&self, link: u64, tickets: impl IntoIterator<Item = u64>) {
        let mut s = self.state.lock();
        if let Some(open) = s.links.get_mut(&link) {
            for t in tickets {
                open.remove(&t);
            }
        }
        self.publish(&s);
    }

    /// `link` will not confirm `tickets`: their acknowledgements are refused.
    pub fn fail(&self, link: u64, tickets: impl IntoIterator<Item = u64>) {
        let mut s = self.state.lock();
        for t in tickets {
            let had = s.links.get_mut(&link).is_some_and(|open| open.remove(&t));
            if had {
                s.note_failed(t, t);
            }
        }
        self.publish(&s);
    }

    /// `link` will confirm none of its open tickets (it timed out, or its member was
    /// dropped); returns how many failed.
    pub fn fail_link(&self, link: u64) -> usize {
        let mut s = self.state.lock();
        let open = s.links.remove(&link).unwrap_or_default();
        if let (Some(lo), Some(hi)) = (open.first().copied(), open.last().copied()) {
            s.note_failed(lo, hi);
        }
        self.publish(&s);
        open.len()
    }

    fn publish(&self, s: &GateState) {
        let done = s.done();
        self.done.send_if_modified(|d| {
            let changed = *d != done;
            *d = done;
            changed
        });
    }

    /// What became of the tickets in `(after, upto]`: `None` while some are open, then
    /// whether all were confirmed.
    pub fn outcome(&self, after: u64, upto: u64) -> Option<bool> {
        let s = self.state.lock();
        if s.done() < upto {
            return None;
        }
        Some(!s.failed.iter().any(|(lo, hi)| *lo <= upto && *hi > after))
    }

    /// A receiver of the `done` mark, to wait on.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.done.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_settle_in_any_order_and_a_failure_refuses_its_range() {
        let g = AckGate::default();
        let a = g.issue(&[1, 2]);
        let b = g.issue(&[1]);
        let c = g.issue(&[2]);
        assert_eq!(g.outcome(0, a), None);
        g.settle(1, [b]);
        assert_eq!(g.outcome(0, a), None, "a waits for both links");
        g.settle(1, [a]);
        g.settle(2, [a]);
        assert_eq!(g.outcome(0, a), Some(true));
        assert_eq!(g.outcome(a, b), Some(true), "b settled before a");
        assert_eq!(g.outcome(b, c), None);
        assert_eq!(g.fail_link(2), 1);
        assert_eq!(g.outcome(b, c), Some(false));
        assert_eq!(
            g.outcome(0, b),
            Some(true),
            "earlier ranges are not touched"
        );
        let d = g.issue(&[1]);
        g.fail(1, [d]);
        assert_eq!(g.outcome(c, d), Some(false));
        let e = g.issue(&[1]);
        g.settle(1, [e]);
        assert_eq!(g.outcome(d, e), Some(true));
        assert_eq!(*g.watch().borrow(), e);
    }
}
