//! The writer thread: drains the bounded channel into the engine, flushes on a timer.
//!
//! A thread rather than a tokio task, so logging works with or without a runtime and a slow
//! disk never stalls an executor.

use parking_lot::{Mutex, MutexGuard};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fubar_logproto::Event;

use crate::engine::Engine;
use crate::packet::PacketRecord;
use crate::shared::Shared;

/// Messages to the writer; events are sent with `try_send`, the rest with `send`.
pub(crate) enum Msg {
    /// An event to record.
    Event(Event),
    /// A packet record (`packet::PacketSink`), made into its event here, off the publish
    /// path; it spends the events/s budget as an event does.
    Packet(PacketRecord),
    /// Write everything received so far, then answer.
    Flush(SyncSender<()>),
    /// Write everything received so far and stop.
    Shutdown,
}

/// Messages handled under one lock of the engine, so control commands are not starved.
const BATCH: usize = 1024;

/// Polling period of the writer while events flow.
const POLL: Duration = Duration::from_millis(1);

/// Quiet time after which the writer parks on the channel.
const IDLE_BEFORE_PARKING: Duration = Duration::from_millis(200);

/// Locks the engine (parking_lot: a panic elsewhere leaves it usable, no poisoning).
pub(crate) fn lock(engine: &Mutex<Engine>) -> MutexGuard<'_, Engine> {
    engine.lock()
}

/// The writer loop; returns after `Shutdown`, or when every sender is gone.
pub(crate) fn run(
    engine: &Arc<Mutex<Engine>>,
    shared: &Shared,
    rx: &Receiver<Msg>,
    flush_interval: Duration,
    max_events_per_sec: u64,
) {
    lock(engine).write_pending();
    let mut next_flush = Instant::now() + flush_interval;
    let mut last_event = Instant::now();
    let mut budget = Budget::new(max_events_per_sec);
    loop {
        // Over its budget the writer waits for the next window; meanwhile the channel fills
        // and the layer drops (and counts) events before building them.
        if let Some(wait) = budget.exhausted(Instant::now()) {
            std::thread::sleep(wait);
        }
        // While events flow, poll every millisecond instead of parking on the channel: a
        // parked receiver makes every sender pay a futex wake-up, on the publish path. After
        // a quiet spell, park (one wake-up then is cheap).
        let first = match rx.try_recv() {
            Ok(msg) => Some(msg),
            Err(TryRecvError::Empty) if last_event.elapsed() < IDLE_BEFORE_PARKING => {
                std::thread::sleep(POLL);
                None
            }
            Err(TryRecvError::Empty) => {
                let wait = next_flush.saturating_duration_since(Instant::now());
                match rx.recv_timeout(wait) {
                    Ok(msg) => Some(msg),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => {
                        let mut eng = lock(engine);
                        eng.report_drops();
                        eng.flush_all();
                        return;
                    }
                }
            }
            Err(TryRecvError::Disconnected) => {
                let mut eng = lock(engine);
                eng.report_drops();
                eng.flush_all();
                return;
            }
        };
        if first.is_some() {
            last_event = Instant::now();
        }
        let mut eng = lock(engine);
        let mut next = first;
        let mut handled = 0;
        let mut drained = next.is_none();
        while let Some(msg) = next.take() {
            match msg {
                Msg::Event(event) => {
                    shared.dequeued();
                    eng.record(event);
                    budget.spend();
                }
                Msg::Packet(record) => {
                    shared.dequeued();
                    eng.record_packet(record);
                    budget.spend();
                }
                Msg::Flush(reply) => {
                    eng.report_drops();
                    eng.flush_all();
                    let _ = reply.send(());
                }
                Msg::Shutdown => {
                    eng.report_drops();
                    eng.flush_all();
                    return;
                }
            }
            handled += 1;
            if handled >= BATCH || budget.exhausted(Instant::now()).is_some() {
                break;
            }
            match rx.try_recv() {
                Ok(msg) => next = Some(msg),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => drained = true,
            }
        }
        if drained {
            // The pressure is over: say what was lost, and let a terminal catch up.
            eng.report_drops();
            eng.flush_stdout();
        }
        if Instant::now() >= next_flush {
            eng.flush_all();
            next_flush = Instant::now() + flush_interval;
        }
    }
}

/// The writer's budget of events per second, counted in windows of `BUDGET_WINDOW`.
struct Budget {
    per_window: u64,
    window_start: Instant,
    spent: u64,
}

/// Length of a budget window.
const BUDGET_WINDOW: Duration = Duration::from_millis(100);

impl Budget {
    fn new(max_events_per_sec: u64) -> Self {
        Self {
            per_window: if max_events_per_sec == 0 {
                u64::MAX
            } else {
                (max_events_per_sec / 10).max(1)
            },
            window_start: Instant::now(),
            spent: 0,
        }
    }

    fn spend(&mut self) {
        self.spent += 1;
    }

    /// How long to wait before writing more, if this window's budget is spent.
    fn exhausted(&mut self, now: Instant) -> Option<Duration> {
        if now >= self.window_start + BUDGET_WINDOW {
            self.window_start = now;
            self.spent = 0;
            return None;
        }
        (self.spent >= self.per_window).then(|| self.window_start + BUDGET_WINDOW - now)
    }
}

#[cfg(test)]
mod budget_tests {
    use super::*;

    #[test]
    fn budget_refills_each_window() {
        let mut b = Budget::new(30);
        let t0 = b.window_start;
        for _ in 0..3 {
            assert!(b.exhausted(t0).is_none());
            b.spend();
        }
        assert_eq!(
            b.exhausted(t0 + Duration::from_millis(40)),
            Some(Duration::from_millis(60))
        );
        assert!(b.exhausted(t0 + BUDGET_WINDOW).is_none(), "a new window");
        let mut unlimited = Budget::new(0);
        for _ in 0..10_000 {
            unlimited.spend();
        }
        assert!(unlimited.exhausted(unlimited.window_start).is_none());
    }
}
