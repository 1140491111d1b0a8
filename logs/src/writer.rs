//! The writer thread: drains the bounded channel into the engine, flushes on a timer.
//!
//! A thread rather than a tokio task, so logging works with or without a runtime and a slow
//! disk never stalls an executor.

use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use fubar_logproto::Event;

use crate::engine::Engine;
use crate::shared::Shared;

/// Messages to the writer; events are sent with `try_send`, the rest with `send`.
pub(crate) enum Msg {
    /// An event to record.
    Event(Event),
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

/// Locks the engine, even if a panic poisoned the lock (its state is still usable).
pub(crate) fn lock(engine: &Mutex<Engine>) -> MutexGuard<'_, Engine> {
    engine.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The writer loop; returns after `Shutdown`, or when every sender is gone.
pub(crate) fn run(
    engine: &Arc<Mutex<Engine>>,
    shared: &Shared,
    rx: &Receiver<Msg>,
    flush_interval: Duration,
) {
    lock(engine).write_pending();
    let mut next_flush = Instant::now() + flush_interval;
    let mut last_event = Instant::now();
    loop {
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
                    eng.write_event(&event);
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
            if handled >= BATCH {
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
