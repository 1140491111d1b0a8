//! The password checks a node runs at once (`auth.max_concurrent_checks`), shared fairly
//! between addresses: when a check ends, the next one comes from the next address in turn,
//! so one address that opens thousands of connections cannot keep every other client
//! waiting behind its queue. A waiter whose connection is gone is skipped.

use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::oneshot;

/// The check slots and who waits for one.
#[derive(Debug)]
pub struct FairChecks {
    max: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    running: usize,
    /// Addresses with waiters, in the order they are served.
    turn: VecDeque<IpAddr>,
    waiting: HashMap<IpAddr, VecDeque<oneshot::Sender<CheckSlot>>>,
}

/// A running check's slot; the next waiter gets it when this is dropped.
#[derive(Debug)]
pub struct CheckSlot {
    checks: Option<Arc<FairChecks>>,
}

impl FairChecks {
    /// At most `max` checks at once (at least one).
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            state: Mutex::default(),
        })
    }

    fn state(&self) -> parking_lot::MutexGuard<'_, State> {
        self.state.lock()
    }

    /// Waits for a slot for a check from `addr`.
    pub async fn acquire(self: &Arc<Self>, addr: IpAddr) -> CheckSlot {
        let rx = {
            let mut s = self.state();
            if s.running < self.max {
                s.running += 1;
                return CheckSlot {
                    checks: Some(self.clone()),
                };
            }
            let (tx, rx) = oneshot::channel();
            let s = &mut *s;
            let queue = s.waiting.entry(addr).or_default();
            if queue.is_empty() {
                s.turn.push_back(addr);
            }
            queue.push_back(tx);
            rx
        };
        match rx.await {
            Ok(slot) => slot,
            // The sender is only dropped with its slot handed to someone else: cannot
            // happen while this waiter is queued, but never wait forever for it.
            Err(_) => Box::pin(self.acquire(addr)).await,
        }
    }

    /// Hands a slot that ended to the next waiter in turn, or frees it.
    fn release(self: &Arc<Self>) {
        let mut guard = self.state();
        let s = &mut *guard;
        while let Some(addr) = s.turn.pop_front() {
            let Some(queue) = s.waiting.get_mut(&addr) else {
                continue;
            };
            let next = queue.pop_front();
            if queue.is_empty() {
                s.waiting.remove(&addr);
            } else {
                s.turn.push_back(addr);
            }
            let Some(tx) = next else { continue };
            let slot = CheckSlot {
                checks: Some(self.clone()),
            };
            match tx.send(slot) {
                Ok(()) => return,
                // That connection is gone: its slot goes to the next waiter.
                Err(mut unused) => unused.checks = None,
            }
        }
        s.running -= 1;
    }

    /// Checks running now.
    pub fn running(&self) -> usize {
        self.state().running
    }

    /// Checks waiting for a slot now (some of them may be gone).
    pub fn waiting(&self) -> usize {
        self.state().waiting.values().map(VecDeque::len).sum()
    }
}

impl Drop for CheckSlot {
    fn drop(&mut self) {
        if let Some(checks) = self.checks.take() {
            checks.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_busy_address_takes_turns_with_the_others() {
        let checks = FairChecks::new(1);
        let busy: IpAddr = [10, 0, 0, 1].into();
        let other: IpAddr = [10, 0, 0, 2].into();
        let first = checks.acquire(busy).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // 5 waiters of the busy address queue first, then one of another address.
        for (i, addr) in [busy, busy, busy, busy, busy, other]
            .into_iter()
            .enumerate()
        {
            let (checks, order) = (checks.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _slot = checks.acquire(addr).await;
                order.lock().push(i);
            }));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(first);
        for t in tasks {
            t.await.unwrap();
        }
        let order = order.lock().clone();
        assert_eq!(
            order[..2],
            [0, 5],
            "the other address is served second: {order:?}"
        );
        assert_eq!(checks.running(), 0);
    }

    #[tokio::test]
    async fn a_waiter_that_is_gone_passes_its_turn_and_no_slot_is_lost() {
        let checks = FairChecks::new(1);
        let a: IpAddr = [10, 0, 0, 1].into();
        let first = checks.acquire(a).await;
        let gone = tokio::spawn({
            let checks = checks.clone();
            async move { checks.acquire(a).await }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        gone.abort();
        let _ = gone.await;
        drop(first);
        assert_eq!(
            checks.running(),
            0,
            "the slot was freed, not handed to the gone waiter"
        );
        let _again = checks.acquire(a).await;
        assert_eq!(checks.running(), 1);
    }
}
