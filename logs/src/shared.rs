//! State shared by the tracing layer, the handle and the writer thread: atomics only.

use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};

use fubar_logproto::{Class, Event};

use crate::text::now_us;

/// Counters and switches read on the hot path without locks.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The node's name, `name@host`.
    pub(crate) node: String,
    /// The node's boot epoch.
    pub(crate) epoch: u64,
    /// Bit `class.index()` set when the class is open.
    open: AtomicU16,
    /// Bit `class.index()` set when the class is shipped to the monitor (through the tap).
    shipped: AtomicU16,
    /// Events dropped because the channel was full since start, per class.
    dropped: [AtomicU64; Class::ALL.len()],
    /// `dropped` as the last warning event reported it (the writer's alone).
    reported: [AtomicU64; Class::ALL.len()],
    /// Events in the channel now (sent by the layer, not yet taken by the writer).
    queued: AtomicUsize,
    /// The channel's capacity.
    capacity: usize,
}

impl Shared {
    pub(crate) fn new(node: String, epoch: u64, capacity: usize) -> Self {
        Self {
            queued: AtomicUsize::new(0),
            capacity,
            node,
            epoch,
            open: AtomicU16::new(0),
            shipped: AtomicU16::new(0),
            dropped: Default::default(),
            reported: Default::default(),
        }
    }

    /// Whether events of `class` go to the tap (shipped to the monitor).
    pub(crate) fn is_shipped(&self, class: Class) -> bool {
        self.shipped.load(Ordering::Relaxed) & bit(class) != 0
    }

    /// Whether the layer should take events of `class`: recorded here, shipped, or both.
    pub(crate) fn is_wanted(&self, class: Class) -> bool {
        (self.open.load(Ordering::Relaxed) | self.shipped.load(Ordering::Relaxed)) & bit(class) != 0
    }

    /// Marks `class` open or closed for the layer.
    pub(crate) fn set_open(&self, class: Class, open: bool) {
        self.set_bit(&self.open, class, open);
    }

    /// Marks `class` shipped or not.
    pub(crate) fn set_shipped(&self, class: Class, shipped: bool) {
        self.set_bit(&self.shipped, class, shipped);
    }

    fn set_bit(&self, bits: &AtomicU16, class: Class, on: bool) {
        let wanted = self.is_wanted(class);
        if on {
            bits.fetch_or(bit(class), Ordering::Relaxed);
        } else {
            bits.fetch_and(!bit(class), Ordering::Relaxed);
        }
        if self.is_wanted(class) != wanted {
            // The layer's answer to `register_callsite` changed for this class's callsites.
            tracing::callsite::rebuild_interest_cache();
        }
    }

    /// Closes every class and stops shipping (at shutdown).
    pub(crate) fn close_all(&self) {
        self.open.store(0, Ordering::Relaxed);
        self.shipped.store(0, Ordering::Relaxed);
        tracing::callsite::rebuild_interest_cache();
    }

    /// A new event of this node, stamped now; the writer gives it its sequence number, so
    /// numbers follow the order of recording and shipping exactly.
    pub(crate) fn event(
        &self,
        class: Class,
        message: String,
        fields: Vec<(std::borrow::Cow<'static, str>, String)>,
    ) -> Event {
        Event {
            node: self.node.clone(),
            epoch: self.epoch,
            seq: 0,
            time_us: now_us(),
            class,
            message,
            fields,
        }
    }

    /// Whether the channel is full: the layer then drops the event before building it, so
    /// an overloaded writer costs the publish path almost nothing.
    pub(crate) fn is_full(&self) -> bool {
        self.queued.load(Ordering::Relaxed) >= self.capacity
    }

    /// An event entered the channel.
    pub(crate) fn enqueued(&self) {
        self.queued.fetch_add(1, Ordering::Relaxed);
    }

    /// The writer took an event from the channel.
    pub(crate) fn dequeued(&self) {
        self.queued.fetch_sub(1, Ordering::Relaxed);
    }

    /// Counts an event dropped because the channel was full.
    ///
    /// One atomic add: under a flood every publish path drops here, from every core, and each
    /// contended counter more is a cache line bounced between them. Totals and what is not
    /// reported yet are derived from this one counter.
    pub(crate) fn record_drop(&self, class: Class) {
        if let Some(c) = self.dropped.get(class.index()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Events dropped since start.
    pub(crate) fn dropped_total(&self) -> u64 {
        self.dropped.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Events of `class` dropped since start.
    pub(crate) fn dropped(&self, class: Class) -> u64 {
        self.dropped
            .get(class.index())
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Takes the drops not reported yet, per class (what was dropped since the last call).
    pub(crate) fn take_unreported(&self) -> Vec<(Class, u64)> {
        Class::ALL
            .into_iter()
            .zip(self.dropped.iter().zip(&self.reported))
            .filter_map(|(class, (dropped, reported))| {
                let now = dropped.load(Ordering::Relaxed);
                match now - reported.swap(now, Ordering::Relaxed) {
                    0 => None,
                    n => Some((class, n)),
                }
            })
            .collect()
    }
}

fn bit(class: Class) -> u16 {
    1u16 << (class.index() % 16)
}
