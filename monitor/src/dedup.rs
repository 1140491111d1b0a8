//! The duplicate filter: per (node, boot epoch), which sequence numbers are accounted for.
//!
//! Sans-IO. A node's batches cover consecutive sequence ranges (`Batch::from_seq..=to_seq`),
//! so one number per (node, epoch) — `upto`, everything at or below it is written or known
//! never to come — is enough to drop resent events and to acknowledge contiguously. The
//! connection task calls [`Tracker::plan`], writes the fresh events, then [`Tracker::commit`]:
//! a failed write leaves the tracker as it was, so the resend is taken.

use std::collections::VecDeque;

use fubar_logproto::link::Batch;

use crate::config::{MAX_EPOCHS_PER_NODE, MAX_LOST_RANGES};
use crate::MonitorError;

/// What a (node, epoch) has amounted to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Events written.
    pub events: u64,
    /// Events received again and dropped.
    pub duplicates: u64,
    /// Events the node reported dropped (its spool overflowed).
    pub lost: u64,
    /// Numbers the node never shipped (classes not collected).
    pub not_shipped: u64,
    /// Numbers skipped with no account from the node (should stay 0).
    pub missing: u64,
}

impl Counts {
    /// Adds `other` to these counts.
    pub fn add(&mut self, other: &Self) {
        self.events += other.events;
        self.duplicates += other.duplicates;
        self.lost += other.lost;
        self.not_shipped += other.not_shipped;
        self.missing += other.missing;
    }
}

/// What to do with one batch: write `batch.events[fresh_from..]`, then commit.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a plan does nothing until its events are written and it is committed"]
pub struct Plan {
    /// Index of the first event not seen before (events are sorted, so the fresh ones are a
    /// suffix).
    pub fresh_from: usize,
    /// The `upto` after this batch: the acknowledgement to send once written.
    pub upto: u64,
    /// What the batch adds to the counts.
    pub delta: Counts,
}

/// The duplicate filter of one (node, epoch).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tracker {
    /// Every number at or below it is accounted for; `None` before the first batch.
    upto: Option<u64>,
    /// Totals so far.
    counts: Counts,
}

impl Tracker {
    /// A tracker that has seen nothing: it starts at the first batch's `from_seq`.
    pub fn new() -> Self {
        Self::default()
    }

    /// A tracker that knows everything up to `upto` is written (read back from the segments
    /// at start).
    pub fn seeded(upto: u64) -> Self {
        Self {
            upto: Some(upto),
            counts: Counts::default(),
        }
    }

    /// Everything at or below it is accounted for.
    pub fn upto(&self) -> Option<u64> {
        self.upto
    }

    /// Totals so far.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// What to write of `batch` (checked with [`check_batch`] first) and the ack after it.
    pub fn plan(&self, batch: &Batch) -> Plan {
        let old = self
            .upto
            .unwrap_or_else(|| batch.from_seq.saturating_sub(1));
        let fresh_from = batch.events.partition_point(|e| e.seq <= old);
        let fresh = (batch.events.len() - fresh_from) as u64;
        let duplicates = fresh_from as u64;
        if batch.to_seq <= old {
            return Plan {
                fresh_from,
                upto: old,
                delta: Counts {
                    duplicates,
                    ..Counts::default()
                },
            };
        }
        let missing = batch.from_seq.saturating_sub(old.saturating_add(1));
        let lost: u64 = batch
            .lost
            .iter()
            .map(|r| {
                if r.first > old {
                    r.events
                } else if r.last > old {
                    r.events.min(r.last - old)
                } else {
                    0
                }
            })
            .sum();
        let region = batch.to_seq - old;
        let not_shipped = region
            .saturating_sub(missing)
            .saturating_sub(fresh)
            .saturating_sub(lost);
        Plan {
            fresh_from,
            upto: batch.to_seq,
            delta: Counts {
                events: fresh,
                duplicates,
                lost,
                not_shipped,
                missing,
            },
        }
    }

    /// Records a plan whose fresh events are now written.
    pub fn commit(&mut self, plan: &Plan) {
        self.upto = Some(self.upto.map_or(plan.upto, |u| u.max(plan.upto)));
        self.counts.add(&plan.delta);
    }
}

/// Checks that a batch from `node` is well formed: at most `max_events` events, numbers
/// within its range and strictly increasing, every event of that node and epoch, `lost`
/// ranges sorted, disjoint and inside the range.
pub fn check_batch(batch: &Batch, node: &str, max_events: usize) -> Result<(), MonitorError> {
    let bad = |why: &str| Err(MonitorError::Protocol(format!("bad batch: {why}")));
    if batch.from_seq == 0 || batch.from_seq > batch.to_seq {
        return bad("empty or reversed range");
    }
    if batch.events.len() > max_events {
        return bad("too many events");
    }
    if batch.lost.len() > MAX_LOST_RANGES {
        return bad("too many lost ranges");
    }
    let mut last = batch.from_seq - 1;
    for e in &batch.events {
        if e.seq <= last || e.seq > batch.to_seq {
            return bad("event numbers out of order or out of range");
        }
        if e.epoch != batch.epoch || e.node != node {
            return bad("an event of another node or epoch");
        }
        last = e.seq;
    }
    let mut last = batch.from_seq - 1;
    for r in &batch.lost {
        if r.first <= last || r.first > r.last || r.last > batch.to_seq {
            return bad("lost ranges out of order or out of range");
        }
        if r.events > r.last - r.first + 1 {
            return bad("more lost events than numbers");
        }
        last = r.last;
    }
    Ok(())
}

/// The trackers of one node, one per boot epoch, the most recently created kept.
#[derive(Debug, Clone, Default)]
pub struct NodeDedup {
    epochs: VecDeque<(u64, Tracker)>,
}

impl NodeDedup {
    /// The tracker of `epoch`, created if new (forgetting the oldest epoch beyond
    /// [`MAX_EPOCHS_PER_NODE`]).
    pub fn tracker(&mut self, epoch: u64) -> &mut Tracker {
        let i = match self.epochs.iter().position(|(e, _)| *e == epoch) {
            Some(i) => i,
            None => {
                if self.epochs.len() >= MAX_EPOCHS_PER_NODE {
                    self.epochs.pop_front();
                }
                self.epochs.push_back((epoch, Tracker::new()));
                self.epochs.len() - 1
            }
        };
        &mut self.epochs[i].1
    }

    /// Seeds `epoch` with a known `upto` (at start, from the segments).
    pub fn seed(&mut self, epoch: u64, upto: u64) {
        let t = self.tracker(epoch);
        if t.upto.is_none_or(|u| u < upto) {
            t.upto = Some(upto);
        }
    }

    /// Totals over every epoch kept.
    pub fn counts(&self) -> Counts {
        let mut total = Counts::default();
        for (_, t) in &self.epochs {
            total.add(&t.counts);
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fubar_logproto::link::Lost;
    use fubar_logproto::{Class, Event};

    fn event(seq: u64) -> Event {
        Event {
            node: "n1@h".into(),
            epoch: 7,
            seq,
            time_us: 0,
            class: Class::Access,
            message: String::new(),
            fields: Vec::new(),
        }
    }

    fn batch(from: u64, to: u64, seqs: &[u64]) -> Batch {
        Batch {
            epoch: 7,
            from_seq: from,
            to_seq: to,
            events: seqs.iter().map(|s| event(*s)).collect(),
            lost: Vec::new(),
        }
    }

    /// Checks, plans and commits; returns the fresh numbers and the ack.
    fn take(t: &mut Tracker, b: &Batch) -> (Vec<u64>, u64) {
        check_batch(b, "n1@h", 100).unwrap();
        let plan = t.plan(b);
        t.commit(&plan);
        let fresh = b.events[plan.fresh_from..].iter().map(|e| e.seq).collect();
        (fresh, plan.upto)
    }

    #[test]
    fn resent_batches_are_dropped_and_partly_new_ones_trimmed() {
        let mut t = Tracker::new();
        assert_eq!(take(&mut t, &batch(1, 3, &[1, 2, 3])), (vec![1, 2, 3], 3));
        assert_eq!(take(&mut t, &batch(1, 3, &[1, 2, 3])), (vec![], 3));
        assert_eq!(take(&mut t, &batch(2, 5, &[2, 3, 4, 5])), (vec![4, 5], 5));
        let c = t.counts();
        assert_eq!((c.events, c.duplicates, c.missing), (5, 5, 0));
    }

    #[test]
    fn an_older_batch_after_a_newer_one_is_a_duplicate_not_a_rewind() {
        let mut t = Tracker::new();
        take(&mut t, &batch(1, 2, &[1, 2]));
        take(&mut t, &batch(3, 4, &[3, 4]));
        // Reordered on the wire (or resent late): nothing new, the ack does not go back.
        assert_eq!(take(&mut t, &batch(3, 3, &[3])), (vec![], 4));
        assert_eq!(t.upto(), Some(4));
    }

    #[test]
    fn gaps_are_never_shipped_lost_or_missing_and_counted_apart() {
        let mut t = Tracker::new();
        // 1..=10: events 2 and 9; 3..=5 lost (2 events dropped on the node), the rest not
        // collected.
        let mut b = batch(1, 10, &[2, 9]);
        b.lost.push(Lost {
            first: 3,
            last: 5,
            events: 2,
        });
        assert_eq!(take(&mut t, &b), (vec![2, 9], 10));
        let c = t.counts();
        assert_eq!((c.events, c.lost, c.not_shipped, c.missing), (2, 2, 6, 0));
        // The node skips 11..=14 without a word: missing.
        assert_eq!(take(&mut t, &batch(15, 15, &[15])), (vec![15], 15));
        assert_eq!(t.counts().missing, 4);
        // A loss-only batch (the spool lost a whole range) moves the ack on.
        let mut b = batch(16, 20, &[]);
        b.lost.push(Lost {
            first: 16,
            last: 20,
            events: 5,
        });
        assert_eq!(take(&mut t, &b), (vec![], 20));
        assert_eq!(t.counts().lost, 7);
    }

    #[test]
    fn a_first_batch_starts_the_tracker_where_it_begins_and_a_seed_below_it() {
        let mut t = Tracker::new();
        assert_eq!(
            take(&mut t, &batch(500, 501, &[500, 501])),
            (vec![500, 501], 501)
        );
        assert_eq!(
            t.counts().missing,
            0,
            "what was acked before is not missing"
        );
        let mut seeded = Tracker::seeded(400);
        assert_eq!(
            take(&mut seeded, &batch(380, 402, &[390, 401])),
            (vec![401], 402)
        );
    }

    #[test]
    fn a_failed_write_is_not_committed_so_the_resend_is_taken() {
        let mut t = Tracker::new();
        take(&mut t, &batch(1, 2, &[1, 2]));
        let b = batch(3, 4, &[3, 4]);
        let _lost_in_a_failed_write = t.plan(&b);
        assert_eq!(t.upto(), Some(2));
        assert_eq!(take(&mut t, &b), (vec![3, 4], 4));
    }

    #[test]
    fn a_new_epoch_has_its_own_tracker_and_old_ones_are_bounded() {
        let mut node = NodeDedup::default();
        let p = node.tracker(7).plan(&batch(1, 5, &[5]));
        node.tracker(7).commit(&p);
        let mut next = batch(1, 2, &[1, 2]);
        next.epoch = 8;
        let p = node.tracker(8).plan(&next);
        assert_eq!(p.fresh_from, 0, "seq 1 of a new boot is new");
        node.tracker(8).commit(&p);
        assert_eq!(node.counts().events, 3);
        node.seed(7, 3);
        assert_eq!(
            node.tracker(7).upto(),
            Some(5),
            "a lower seed changes nothing"
        );
        for epoch in 100..100 + MAX_EPOCHS_PER_NODE as u64 {
            node.tracker(epoch);
        }
        assert_eq!(node.epochs.len(), MAX_EPOCHS_PER_NODE);
        assert!(node.epochs.iter().all(|(e, _)| *e >= 100));
    }

    #[test]
    fn malformed_batches_are_refused() {
        let ok = batch(1, 3, &[1, 3]);
        check_batch(&ok, "n1@h", 10).unwrap();
        assert!(
            check_batch(&ok, "n2@h", 10).is_err(),
            "another node's events"
        );
        assert!(check_batch(&ok, "n1@h", 1).is_err(), "too many events");
        for bad in [
            batch(0, 3, &[1]),
            batch(3, 1, &[]),
            batch(1, 3, &[3, 1]),
            batch(1, 3, &[2, 2]),
            batch(2, 3, &[1]),
            batch(1, 3, &[4]),
        ] {
            assert!(check_batch(&bad, "n1@h", 10).is_err(), "{bad:?}");
        }
        let mut other_epoch = batch(1, 1, &[1]);
        other_epoch.events[0].epoch = 8;
        assert!(check_batch(&other_epoch, "n1@h", 10).is_err());
        for lost in [
            vec![Lost {
                first: 2,
                last: 1,
                events: 0,
            }],
            vec![Lost {
                first: 1,
                last: 4,
                events: 1,
            }],
            vec![Lost {
                first: 1,
                last: 2,
                events: 3,
            }],
            vec![
                Lost {
                    first: 2,
                    last: 2,
                    events: 1,
                },
                Lost {
                    first: 2,
                    last: 3,
                    events: 1,
                },
            ],
        ] {
            let mut b = batch(1, 3, &[]);
            b.lost = lost;
            assert!(check_batch(&b, "n1@h", 10).is_err(), "{b:?}");
        }
    }
}
