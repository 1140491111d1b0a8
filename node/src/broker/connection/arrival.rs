//! The order in which input reached the server's connections, so that a PUBLISH is routed
//! after the SUBSCRIBEs that reached the server before it (issue 15.2).
//!
//! Each connection's task reads its own socket, so a SUBSCRIBE that arrived first can still be
//! handled after a PUBLISH that arrived just behind it on another connection: the IO driver
//! wakes the two tasks in arrival order, but tokio runs the last woken first (its LIFO slot),
//! or both at once on two workers. The subscriber would then miss a message published after
//! its SUBSCRIBE reached the server (about half the time in a tight loop).
//!
//! Every event below takes the next number of one process-wide sequence, so numbers order
//! them. [`Watched`] wraps a connection's read half; the waker it hands the socket puts the
//! connection in the set of *unread arrivals* when input wakes it after its socket was found
//! empty (the driver wakes sockets in the order the kernel reported them ready), numbered as
//! of that moment. It leaves the set once what its next read took is handled, or when a read
//! finds the socket empty.
//!
//! Before routing the first PUBLISH of a read, its connection takes a number and waits, for a
//! bounded time (`mqtt.publish_order_wait_us`), until no other connection is in the set under
//! an earlier number. Only earlier numbers are waited for, so waits never go in a circle.
//! (Letting the driver run first, for input already in the kernel but not yet reported, cost
//! a tenth of QoS 0 fan-in and changed no measured miss rate: not done.)
//!
//! What keeps this off the publish path: only input that follows an idle moment is waited for
//! (a connection streaming input, read without wake-ups, is not in the set, so a client
//! flooding its socket cannot hold the node's publishes), and a connection
//! that has published and never subscribed is *quiet* (nobody waits for it) until it sends a
//! SUBSCRIBE or UNSUBSCRIBE. A connection that stops reading for a while (throttled,
//! authenticating, its client not reading) is out of the set meanwhile. What is left uncovered:
//! a SUBSCRIBE from a client that is publishing at that moment, or whose first SUBSCRIBE
//! follows its publishes; a PUBLISH a busy connection reads before the driver has reported a
//! SUBSCRIBE that came just before it; and packets the kernel reports out of order.

use parking_lot::{Mutex, MutexGuard};
use std::collections::BTreeSet;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::Notify;

/// The connections with input not yet read and handled, as (number, connection), and the
/// next number (process-wide: one broker per process; a second one in a test only waits a
/// little more).
struct Arrivals {
    unread: BTreeSet<(u64, usize)>,
    next: u64,
}

impl Arrivals {
    fn take(&mut self) -> u64 {
        self.next += 1;
        self.next
    }
}

static ARRIVALS: Mutex<Arrivals> = Mutex::new(Arrivals {
    unread: BTreeSet::new(),
    next: 0,
});

/// Told when a connection leaves the set or moves up, while some connection waits for that.
static PROGRESS: Notify = Notify::const_new();

/// Connections waiting on `PROGRESS` (the set tells it only when there are some).
static WAITING: AtomicUsize = AtomicUsize::new(0);

fn arrivals() -> MutexGuard<'static, Arrivals> {
    ARRIVALS.lock()
}

fn progress() {
    if WAITING.load(Ordering::Acquire) > 0 {
        PROGRESS.notify_waiters();
    }
}

/// One connection's place in the arrival order.
#[derive(Default)]
struct Stamp {
    state: Mutex<StampState>,
    task: Mutex<Option<Waker>>,
}

#[derive(Default)]
struct StampState {
    /// Its number while it is in the set.
    seq: Option<u64>,
    /// Unread input came after this number.
    drained: u64,
    /// Whether the last read that took input came after a wake-up (the connection was in
    /// the set).
    woken_read: bool,
    /// The number taken when input woke the connection again after that read, while it was
    /// still in the set: that input is unread, and keeps it in the set under this number.
    woken_again: Option<u64>,
    /// Wake-ups ever: a read that finds the socket empty leaves the set only if none came
    /// while it read.
    wakes: u64,
    /// Not reading for a while: wake-ups put nothing in the set.
    paused: bool,
    /// A publisher that has not subscribed: nobody waits for its input.
    quiet: bool,
    /// Gone, or its input is thrown away: never in the set again.
    closed: bool,
}

impl Stamp {
    fn state(&self) -> MutexGuard<'_, StampState> {
        self.state.lock()
    }

    /// This connection's key in the set.
    fn id(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    /// Enters the set as drained, unless it is in already (or closed or paused).
    fn enter(&self, state: &mut StampState) {
        if state.seq.is_some() || state.closed || state.paused || state.quiet {
            return;
        }
        state.seq = Some(state.drained);
        arrivals().unread.insert((state.drained, self.id()));
    }

    /// Leaves the set, if it is in; input arriving from now on comes after the number taken.
    fn leave(&self, state: &mut StampState) {
        state.woken_again = None;
        if state.seq.is_none() && state.quiet {
            // Nothing to remove, and no number needed: a quiet connection enters nothing.
            return;
        }
        let mut all = arrivals();
        state.drained = all.take();
        if let Some(seq) = state.seq.take() {
            all.unread.remove(&(seq, self.id()));
            drop(all);
            progress();
        }
    }

    /// What the first read after a wake-up took is handled: out of the set. If more was
    /// waiting (a read that filled the buffer), the connection is streaming, and input read
    /// without a wake-up is not waited for: a client that floods the socket cannot hold every
    /// PUBLISH of the node to `mqtt.publish_order_wait_us`.
    fn read_handled(&self, state: &mut StampState) {
        let Some(seq) = state.seq else { return };
        if !state.woken_read {
            return;
        }
        state.woken_read = false;
        match state.woken_again.take() {
            Some(again) => {
                state.seq = Some(again);
                {
                    let mut all = arrivals();
                    all.unread.remove(&(seq, self.id()));
                    all.unread.insert((again, self.id()));
                }
                progress();
            }
            None => self.leave(state),
        }
    }
}

impl Wake for Stamp {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        {
            let mut state = self.state();
            state.wakes += 1;
            if state.seq.is_some() && state.woken_read && state.woken_again.is_none() {
                state.woken_again = Some(arrivals().take());
            }
            self.enter(&mut state);
        }
        let task = self.task.lock().clone();
        if let Some(task) = task {
            task.wake();
        }
    }
}

/// A connection's read half, in the set of unread arrivals while input may wait in it.
pub(super) struct Watched<R> {
    inner: R,
    stamp: Arc<Stamp>,
    waker: Waker,
    /// A copy of the stamp's `quiet`: a quiet connection's reads bypass all of this (the
    /// socket gets the task's own waker), so publishers pay nothing per read.
    quiet: bool,
}

impl<R> Watched<R> {
    pub(super) fn new(inner: R) -> Self {
        let stamp = Arc::new(Stamp::default());
        Self {
            waker: Waker::from(stamp.clone()),
            stamp,
            inner,
            quiet: false,
        }
    }

    /// What routing the input read last must wait for: the other connections in the set
    /// under a number taken before now; `None` when there are none (the common case, checked
    /// under one lock).
    pub(super) fn earlier(&self) -> Option<Earlier> {
        let own = self.stamp.id();
        let mut all = arrivals();
        let before = all.take();
        let pending = all.unread.range(..(before, 0)).any(|(_, id)| *id != own);
        drop(all);
        pending.then(|| Earlier {
            before,
            stamp: self.stamp.clone(),
        })
    }

    /// Whether the input read last came after a wake-up: the IO driver had then reported
    /// every socket that was ready before this one, so they are in the set already.
    #[cfg(test)]
    pub(super) fn read_was_woken(&self) -> bool {
        self.stamp.state().woken_read
    }

    /// The connection stops reading for a while: out of the set meanwhile (nobody waits for
    /// input it will not read), and wake-ups put nothing in it until `resume`.
    pub(super) fn pause(&self) {
        let mut state = self.stamp.state();
        if !state.paused {
            state.paused = true;
            self.stamp.leave(&mut state);
        }
    }

    /// The connection reads again after a pause: in the set until a read finds its socket
    /// empty. Input that arrived meanwhile woke nothing (no read was waiting for it, and the
    /// socket stays marked readable).
    pub(super) fn resume(&self) {
        let mut state = self.stamp.state();
        if state.paused {
            state.paused = false;
            self.stamp.enter(&mut state);
        }
    }

    /// Whether others wait for this connection's input: not while it has published and not
    /// subscribed (see the module's notes).
    pub(super) fn set_quiet(&mut self, quiet: bool) {
        if self.quiet == quiet {
            return;
        }
        self.quiet = quiet;
        let mut state = self.stamp.state();
        if state.quiet != quiet {
            state.quiet = quiet;
            if quiet {
                self.stamp.leave(&mut state);
            }
        }
    }

    /// Its input is read only to be thrown away from now on: never in the set again.
    pub(super) fn ignore(&self) {
        let mut state = self.stamp.state();
        state.closed = true;
        self.stamp.leave(&mut state);
    }

    /// Its number while it is in the set (tests).
    #[cfg(test)]
    fn seq(&self) -> Option<u64> {
        self.stamp.state().seq
    }
}

/// The connections a PUBLISH is routed after (see [`Watched::earlier`]).
pub(super) struct Earlier {
    before: u64,
    stamp: Arc<Stamp>,
}

impl Earlier {
    /// Whether some of them may still have input unread or unhandled.
    fn pending(&self) -> bool {
        let own = self.stamp.id();
        arrivals()
            .unread
            .range(..(self.before, 0))
            .any(|(_, id)| *id != own)
    }

    /// Sleeps until none of them has input left unread or unhandled, or until `until`.
    pub(super) async fn wait(self, until: Instant) {
        let _waiting = Waiting::new();
        let until = tokio::time::Instant::from_std(until);
        loop {
            let progress = PROGRESS.notified();
            tokio::pin!(progress);
            // Registered before the check: a connection leaving right after it still wakes us.
            progress.as_mut().enable();
            if !self.pending() {
                return;
            }
            if tokio::time::timeout_at(until, progress).await.is_err() {
                return;
            }
        }
    }
}

/// Counts a connection in `WAITING` while it waits.
struct Waiting;

impl Waiting {
    fn new() -> Self {
        WAITING.fetch_add(1, Ordering::AcqRel);
        Self
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        WAITING.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<R> Drop for Watched<R> {
    fn drop(&mut self) {
        self.ignore();
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Watched<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.quiet {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        {
            let mut task = this.stamp.task.lock();
            if !task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        // Reading again: what the last read took has been handled.
        let seen = {
            let mut state = this.stamp.state();
            this.stamp.read_handled(&mut state);
            state.wakes
        };
        let before = buf.filled().len();
        let polled =
            Pin::new(&mut this.inner).poll_read(&mut Context::from_waker(&this.waker), buf);
        let mut state = this.stamp.state();
        if state.closed {
            return polled;
        }
        let read = buf.filled().len() - before;
        match &polled {
            Poll::Ready(Ok(())) if read > 0 => {
                // Input read without a wake-up (the task was busy when it came) does not
                // enter: see the module's notes.
                state.woken_read = state.seq.is_some();
                // What woke it again came before this read, which takes it.
                state.woken_again = None;
            }
            // Empty (or closed, or failed): nothing of this connection waits to be read,
            // unless input woke it while it read.
            _ if state.wakes == seen => this.stamp.leave(&mut state),
            _ => {}
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that is empty until told otherwise.
    struct Pipe(Vec<u8>);

    impl AsyncRead for Pipe {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if self.0.is_empty() {
                return Poll::Pending;
            }
            let n = self.0.len().min(buf.remaining());
            let data: Vec<u8> = self.0.drain(..n).collect();
            buf.put_slice(&data);
            Poll::Ready(Ok(()))
        }
    }

    fn poll(r: &mut Watched<Pipe>) -> Poll<io::Result<()>> {
        let mut bytes = [0u8; 16];
        let mut buf = ReadBuf::new(&mut bytes);
        Pin::new(r).poll_read(&mut Context::from_waker(Waker::noop()), &mut buf)
    }

    fn watched() -> Watched<Pipe> {
        let mut r = Watched::new(Pipe(Vec::new()));
        assert!(poll(&mut r).is_pending(), "starts empty, waiting for input");
        r
    }

    #[test]
    fn a_connection_is_in_the_set_from_its_wake_up_until_its_socket_is_found_empty() {
        let mut a = watched();
        let b = watched();
        assert_eq!(a.seq(), None);
        a.waker.wake_by_ref();
        let first = a.seq().expect("woken: in the set");
        a.waker.wake_by_ref();
        assert_eq!(a.seq(), Some(first), "once however often woken");
        b.waker.wake_by_ref();
        assert!(
            b.seq() > a.seq(),
            "numbered as drained: b's read came later"
        );
        a.inner.0 = b"x".to_vec();
        assert!(poll(&mut a).is_ready(), "data");
        assert_eq!(
            a.seq(),
            Some(first),
            "in the set while what was read is handled"
        );
        assert!(poll(&mut a).is_pending(), "empty");
        assert_eq!(a.seq(), None, "out of the set");
        a.inner.0 = b"y".to_vec();
        assert!(poll(&mut a).is_ready());
        assert_eq!(
            a.seq(),
            None,
            "input read without a wake-up: the task was busy"
        );
        assert!(!a.read_was_woken());
        a.pause();
        assert_eq!(a.seq(), None, "not in the set while it does not read");
        a.waker.wake_by_ref();
        assert_eq!(a.seq(), None, "a wake-up while paused changes nothing");
        a.resume();
        assert!(
            a.seq().is_some(),
            "reading again: input may have come meanwhile"
        );
        assert!(poll(&mut a).is_pending());
        assert_eq!(
            a.seq(),
            None,
            "left by the read that finds the socket empty"
        );
        a.resume();
        assert_eq!(a.seq(), None, "a resume without a pause changes nothing");
        a.ignore();
        a.inner.0 = b"z".to_vec();
        assert!(poll(&mut a).is_ready());
        assert_eq!(a.seq(), None, "input thrown away is never waited for");
        b.waker.wake_by_ref();
        let stamp = b.stamp.clone();
        drop(b);
        assert_eq!(stamp.state().seq, None, "dropped: out of the set for good");
        Waker::from(stamp.clone()).wake_by_ref();
        assert_eq!(stamp.state().seq, None, "a late wake-up changes nothing");
    }

    #[test]
    fn a_connection_leaves_once_its_first_read_after_a_wake_up_is_handled() {
        let mut a = watched();
        a.waker.wake_by_ref();
        let first = a.seq().unwrap();
        a.inner.0 = vec![1; 40];
        assert!(poll(&mut a).is_ready(), "a full read: more waits");
        assert!(a.read_was_woken());
        assert_eq!(
            a.seq(),
            Some(first),
            "in the set while what it read is handled"
        );
        assert!(poll(&mut a).is_ready(), "the rest, read without a wake-up");
        assert_eq!(
            a.seq(),
            None,
            "a client streaming (or flooding) its socket is not waited for"
        );
        assert!(!a.read_was_woken());
    }

    #[test]
    fn input_that_wakes_a_connection_while_it_handles_a_read_keeps_it_in_the_set() {
        let mut a = watched();
        a.waker.wake_by_ref();
        let first = a.seq().unwrap();
        a.inner.0 = b"SUBSCRIBE 1".to_vec();
        assert!(poll(&mut a).is_ready());
        // The next SUBSCRIBE comes while the first is handled.
        a.waker.wake_by_ref();
        let b = watched();
        b.waker.wake_by_ref();
        a.inner.0 = b"SUBSCRIBE 2".to_vec();
        assert!(
            poll(&mut a).is_ready(),
            "read at once: the socket was ready"
        );
        let again = a
            .seq()
            .expect("still in the set: the second input was unread");
        assert!(
            again > first && again < b.seq().unwrap(),
            "numbered at its wake-up"
        );
        assert!(a.read_was_woken());
        assert!(poll(&mut a).is_pending());
        assert_eq!(a.seq(), None);
    }

    #[test]
    fn a_publisher_that_has_not_subscribed_is_not_waited_for() {
        let mut a = watched();
        a.set_quiet(true);
        a.waker.wake_by_ref();
        assert_eq!(a.seq(), None, "quiet: its wake-ups enter nothing");
        a.inner.0 = b"PUBLISH".to_vec();
        assert!(poll(&mut a).is_ready());
        assert!(poll(&mut a).is_pending());
        a.set_quiet(false);
        a.waker.wake_by_ref();
        assert!(a.seq().is_some(), "it subscribed: waited for again");
        a.set_quiet(true);
        assert_eq!(a.seq(), None, "quiet again: out of the set at once");
    }

    /// The race of issue 15.2 at this level: the publisher was in the set first (it was busy
    /// when its PUBLISH came, so the PUBLISH woke nothing), the subscriber's input came after
    /// that but before the publisher read.
    #[test]
    fn a_publish_waits_for_input_in_the_set_before_its_check_not_before_its_own_number() {
        let mut publisher = watched();
        let subscriber = watched();
        publisher.waker.wake_by_ref();
        subscriber.waker.wake_by_ref();
        assert!(publisher.seq() < subscriber.seq());
        publisher.inner.0 = b"PUBLISH".to_vec();
        assert!(poll(&mut publisher).is_ready());
        let earlier = publisher
            .earlier()
            .expect("the subscriber's input is waited for");
        // Input that enters the set after the check is not waited for.
        let late = watched();
        late.waker.wake_by_ref();
        assert!(late.seq().unwrap() > earlier.before);
    }

    #[tokio::test]
    async fn a_publisher_sleeps_until_the_earlier_input_is_handled() {
        let early = watched();
        let mut late = watched();
        early.waker.wake_by_ref();
        late.inner.0 = b"PUBLISH".to_vec();
        assert!(poll(&mut late).is_ready());
        // `early` is in the set: a bound that has passed runs out.
        late.earlier().unwrap().wait(Instant::now()).await;
        assert!(late.earlier().is_some());
        let waiter = tokio::spawn(
            late.earlier()
                .unwrap()
                .wait(Instant::now() + std::time::Duration::from_secs(60)),
        );
        tokio::task::yield_now().await;
        early.pause();
        // Woken by `early` leaving, long before the bound (other tests' connections in this
        // process may hold it a moment).
        waiter.await.unwrap();
    }
}
