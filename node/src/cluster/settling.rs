//! Batches taken from another member's stream and waiting to be acknowledged: the receivers
//! of forwarded messages (`forward`) and of session copies (`replica::serve`) keep reading and
//! applying batches while earlier ones wait for their fsync (the store's group commit covers
//! every batch applied before it) and for the copies they made on backups, and acknowledge
//! them in order once settled. No acknowledgement precedes what it stands for, and a batch
//! that failed is never acknowledged, nor any after it: the stream fails and the sender sends
//! them again on a new one.
//!
//! Bounded: at most `cluster.receive_window` batches wait; beyond them the receiver reads no
//! more until the oldest is settled, and QUIC flow control holds the sender back.

use std::collections::VecDeque;
use std::sync::Arc;

use fubar_store::{Durable, Store};
use tokio::sync::watch;

use crate::broker::ack_gate::AckGate;

/// What a batch waits for before it may be acknowledged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Awaited {
    /// The store's ticket covering its writes (0: none to wait for).
    pub ticket: u64,
    /// The broker's `AckGate` tickets issued while it was applied, `(after, upto]`: the
    /// copies it made on backups (empty: none).
    pub copies: (u64, u64),
    /// Why it failed already (a write refused while it was applied).
    pub error: Option<String>,
}

/// Where the outcomes of store tickets and of copies on backups are read from.
#[derive(Debug)]
pub struct Watches {
    durable: Option<watch::Receiver<Durable>>,
    gate: Option<(Arc<AckGate>, watch::Receiver<u64>)>,
}

impl Watches {
    /// Outcomes of `store`'s tickets and of `gate`'s copies (either absent: nothing of that
    /// kind is waited for).
    pub fn new(store: Option<&Store>, gate: Option<&Arc<AckGate>>) -> Self {
        Self {
            durable: store.map(Store::durable_watch),
            gate: gate.map(|g| (g.clone(), g.watch())),
        }
    }

    /// Marks the current values seen, so that `changed` waits for newer ones.
    fn mark_seen(&mut self) -> Option<Durable> {
        if let Some((_, done)) = &mut self.gate {
            done.borrow_and_update();
        }
        self.durable.as_mut().map(|d| *d.borrow_and_update())
    }

    /// What became of `a`: `None` while it waits, then whether it failed.
    fn outcome(&self, durable: Option<&Durable>, a: &Awaited) -> Option<Result<(), String>> {
        if let Some(e) = &a.error {
            return Some(Err(e.clone()));
        }
        if let Some(d) = durable {
            match d.outcome(a.ticket)? {
                Ok(()) => {}
                Err(e) => return Some(Err(e.to_string())),
            }
        }
        let (after, upto) = a.copies;
        if let (Some((gate, _)), true) = (&self.gate, upto > after) {
            if !gate.outcome(after, upto)? {
                return Some(Err("a session backup did not confirm its copy".into()));
            }
        }
        Some(Ok(()))
    }

    /// Waits until a store ticket or a copy is settled (or failed) since the last look.
    async fn changed(&mut self) -> Result<(), String> {
        let Self { durable, gate } = self;
        let durable = async {
            match durable {
                Some(d) => d
                    .changed()
                    .await
                    .map_err(|_| "the store's durability watch closed"),
                None => std::future::pending().await,
            }
        };
        let copies = async {
            match gate {
                Some((_, done)) => done.changed().await.map_err(|_| "the copies' watch closed"),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = durable => r.map_err(str::to_owned),
            r = copies => r.map_err(str::to_owned),
        }
    }
}

/// Batches applied and not acknowledged yet, oldest first, each with what it waits for and
/// what its acknowledgement says (`T`).
#[derive(Debug)]
pub struct Settling<T> {
    waiting: VecDeque<(Awaited, T)>,
    window: usize,
    watches: Watches,
}

impl<T> Settling<T> {
    /// Room for `window` batches (at least 1), their outcomes read from `watches`.
    pub fn new(window: usize, watches: Watches) -> Self {
        Self {
            waiting: VecDeque::new(),
            window: window.max(1),
            watches,
        }
    }

    /// Whether another batch may be taken.
    pub fn has_room(&self) -> bool {
        self.waiting.len() < self.window
    }

    /// Whether no batch waits.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// A batch applied, waiting for `awaited`.
    pub fn push(&mut self, awaited: Awaited, item: T) {
        self.waiting.push_back((awaited, item));
    }

    /// Takes the batches at the front that are settled, oldest first, and why the one after
    /// them failed, if it did (it stays: nothing after it is ever acknowledged).
    pub fn settled(&mut self) -> (Vec<T>, Option<String>) {
        let durable = self.watches.mark_seen();
        let mut done = Vec::new();
        while let Some((awaited, _)) = self.waiting.front() {
            match self.watches.outcome(durable.as_ref(), awaited) {
                None => break,
                Some(Err(e)) => return (done, Some(e)),
                Some(Ok(())) => {
                    if let Some((_, item)) = self.waiting.pop_front() {
                        done.push(item);
                    }
                }
            }
        }
        (done, None)
    }

    /// Waits until something the batches wait for may have moved (look again with
    /// `settled`); cancel-safe.
    pub async fn changed(&mut self) -> Result<(), String> {
        self.watches.changed().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_settled_batch_goes_while_a_later_one_waits_and_a_failure_stops_the_rest() {
        let gate = Arc::new(AckGate::default());
        let mut s = Settling::new(3, Watches::new(None, Some(&gate)));
        let link = 7;
        let first = gate.issue(&[link]);
        s.push(
            Awaited {
                copies: (0, first),
                ..Awaited::default()
            },
            "batch 1",
        );
        let second = gate.issue(&[link]);
        s.push(
            Awaited {
                copies: (first, second),
                ..Awaited::default()
            },
            "batch 2",
        );
        s.push(Awaited::default(), "batch 3 (nothing to wait for)");
        assert!(!s.has_room(), "the window is full");
        assert_eq!(
            s.settled(),
            (vec![], None),
            "batch 1's copy is not confirmed"
        );
        gate.settle(link, [first]);
        s.changed().await.unwrap();
        assert_eq!(
            s.settled(),
            (vec!["batch 1"], None),
            "batch 1 is acknowledged while batch 2 waits"
        );
        assert!(s.has_room());
        let third = gate.issue(&[link]);
        s.push(
            Awaited {
                copies: (second, third),
                ..Awaited::default()
            },
            "batch 4",
        );
        gate.settle(link, [third]);
        assert_eq!(s.settled(), (vec![], None), "in order: batch 2 first");
        gate.fail(link, [second]);
        s.changed().await.unwrap();
        let (done, failed) = s.settled();
        assert!(done.is_empty());
        assert!(failed.is_some(), "batch 2's copy failed");
        assert!(!s.is_empty(), "nothing after it is acknowledged");
        let mut refused = Settling::new(1, Watches::new(None, None));
        refused.push(
            Awaited {
                error: Some("write refused".into()),
                ..Awaited::default()
            },
            (),
        );
        assert_eq!(refused.settled(), (vec![], Some("write refused".into())));
    }
}
