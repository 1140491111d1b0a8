//! Waiting on state that announces no event (a status, a file, a `ctl` answer, a child
//! process) by polling it with a short backoff; log lines are waited on without polling
//! (`Broker::wait_for_line`).

use std::process::{Child, Output};
use std::time::{Duration, Instant};

/// The longest backoff between two looks of a poll: short, so that a wait ends soon after what
/// it waits for happens.
const MAX_POLL_PAUSE: Duration = Duration::from_millis(100);

/// What one look of a poll found: done (with a value), or not yet (with what it saw, for the
/// failure message).
pub trait Look {
    /// The value a successful look gives.
    type Value;
    /// `Ok` when done; `Err` with what was seen when not yet.
    fn look(self) -> Result<Self::Value, String>;
}

impl Look for bool {
    type Value = ();
    fn look(self) -> Result<(), String> {
        if self {
            Ok(())
        } else {
            Err(String::new())
        }
    }
}

impl<T> Look for Option<T> {
    type Value = T;
    fn look(self) -> Result<T, String> {
        self.ok_or_else(String::new)
    }
}

impl<T> Look for Result<T, String> {
    type Value = T;
    fn look(self) -> Self {
        self
    }
}

/// Looks with `look` (a status, a file, a `ctl` answer: state that announces no event) until
/// it is done, pausing between looks with a short backoff; `Err` with the last thing seen when
/// `timeout` passes first.
pub fn poll_until<L: Look>(
    timeout: Duration,
    mut look: impl FnMut() -> L,
) -> Result<L::Value, String> {
    let deadline = Instant::now() + timeout;
    let mut backoff = Duration::from_millis(10);
    loop {
        let started = Instant::now();
        let seen = match look().look() {
            Ok(value) => return Ok(value),
            Err(seen) => seen,
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(seen);
        }
        // A costly look (a `fubar ctl` or `search` process) is followed by a pause as long:
        // polling takes at most half of a shared 2-core machine from the node it waits on.
        let pause = backoff.max(now - started);
        std::thread::sleep(pause.min(deadline - now));
        backoff = (backoff * 2).min(MAX_POLL_PAUSE);
    }
}

/// [`poll_until`], failing the test (naming `what` and the last thing seen) at the timeout.
pub fn eventually<L: Look>(what: &str, timeout: Duration, look: impl FnMut() -> L) -> L::Value {
    poll_until(timeout, look)
        .unwrap_or_else(|seen| panic!("timed out after {timeout:?} waiting for {what}\n{seen}"))
}

/// Waits for `child` to exit by itself within `timeout`: `Ok` with what it printed, or `Err`
/// with what it printed once killed at the deadline (a process that should have ended runs on).
pub fn exit_within(mut child: Child, timeout: Duration) -> Result<Output, Output> {
    let exited = poll_until(timeout, || child.try_wait().expect("try_wait").is_some()).is_ok();
    if !exited {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("wait");
    if exited {
        Ok(out)
    } else {
        Err(out)
    }
}
