//! The spool alone: batching, acknowledgements, overflow, restarts.

use std::fs;

use fubar_logproto::link::Lost;
use fubar_logproto::{Class, Event};

use super::*;

fn event(epoch: u64, seq: u64, pad: usize) -> Event {
    Event {
        node: "n1@h".into(),
        epoch,
        seq,
        time_us: seq as i64,
        class: Class::Access,
        message: "x".repeat(pad),
        fields: vec![("client".into(), format!("c{seq}"))],
    }
}

fn config(dir: &std::path::Path, max_bytes: u64, files: u64) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_path_buf(),
        max_bytes,
        files,
    }
}

fn seqs(batch: &Batch) -> Vec<u64> {
    batch.events.iter().map(|e| e.seq).collect()
}

#[test]
fn batches_cover_consecutive_ranges_and_acks_free_the_files() {
    let tmp = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(&config(tmp.path(), 1 << 20, 4)).unwrap();
    // 2, 3 and 5 shipped: 1 and 4 were events of classes not collected.
    for seq in [2, 3, 5] {
        assert!(spool.append(&event(7, seq, 10)).unwrap().is_empty());
    }
    let b = spool.next_batch(2, 1 << 20).unwrap().unwrap();
    assert_eq!(
        (b.epoch, b.from_seq, b.to_seq, seqs(&b)),
        (7, 1, 3, vec![2, 3])
    );
    let b = spool.next_batch(2, 1 << 20).unwrap().unwrap();
    assert_eq!((b.from_seq, b.to_seq, seqs(&b)), (4, 5, vec![5]));
    assert!(spool.next_batch(2, 1 << 20).unwrap().is_none());
    assert_eq!(spool.in_flight(), 2);
    spool.ack(7, 3).unwrap();
    assert_eq!(spool.in_flight(), 1);
    // The link drops: what was not acked comes again.
    spool.rewind();
    let b = spool.next_batch(10, 1 << 20).unwrap().unwrap();
    assert_eq!((b.from_seq, seqs(&b)), (4, vec![5]));
    spool.ack(7, 5).unwrap();
    assert!(spool.next_batch(10, 1 << 20).unwrap().is_none());
    assert_eq!(spool.stats().appended, 3);
}

#[test]
fn a_batch_stops_at_its_byte_budget_and_at_a_new_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(&config(tmp.path(), 1 << 20, 4)).unwrap();
    for seq in 1..=4 {
        spool.append(&event(7, seq, 100)).unwrap();
    }
    spool.append(&event(8, 1, 100)).unwrap();
    let b = spool.next_batch(100, 300).unwrap().unwrap();
    assert_eq!(
        seqs(&b),
        [1, 2],
        "two entries of ~130 bytes fit in 300, not three"
    );
    let b = spool.next_batch(100, 1 << 20).unwrap().unwrap();
    assert_eq!((b.epoch, seqs(&b)), (7, vec![3, 4]));
    let b = spool.next_batch(100, 1 << 20).unwrap().unwrap();
    assert_eq!((b.epoch, b.from_seq, seqs(&b)), (8, 1, vec![1]));
}

#[test]
fn overflow_drops_the_oldest_file_and_reports_the_loss_once_acked() {
    let tmp = tempfile::tempdir().unwrap();
    // 4 files of 1 KiB: each entry ~ 220 bytes, 4 per file.
    let mut spool = Spool::open(&config(tmp.path(), 4096, 4)).unwrap();
    let mut losses = Vec::new();
    for seq in 1..=40 {
        losses.extend(spool.append(&event(7, seq, 200)).unwrap());
        assert!(spool.bytes() <= 4096, "bounded: {}", spool.bytes());
    }
    assert!(!losses.is_empty());
    let lost: u64 = losses.iter().map(|l| l.events).sum();
    assert_eq!(spool.stats().lost, lost);
    // The oldest went first, in one merged range starting at 1.
    let b = spool.next_batch(1000, 1 << 20).unwrap().unwrap();
    assert_eq!(b.from_seq, 1);
    assert_eq!(
        b.lost,
        [Lost {
            first: 1,
            last: lost,
            events: lost
        }]
    );
    assert_eq!(seqs(&b), (lost + 1..=40).collect::<Vec<_>>());
    assert_eq!(b.to_seq, 40);
    // Not acked: resent after a rewind, loss included; acked: gone.
    spool.rewind();
    let again = spool.next_batch(1000, 1 << 20).unwrap().unwrap();
    assert_eq!(again, b);
    spool.ack(7, 40).unwrap();
    spool.rewind();
    assert!(spool.next_batch(1000, 1 << 20).unwrap().is_none());
}

#[test]
fn losses_of_an_old_epoch_go_alone_and_too_large_events_are_losses() {
    let tmp = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(&config(tmp.path(), 1 << 30, 4)).unwrap();
    spool.append(&event(7, 1, 0)).unwrap();
    let huge = spool.append(&event(7, 2, MAX_SPOOL_ENTRY)).unwrap();
    assert_eq!(
        huge,
        [Loss {
            epoch: 7,
            first: 2,
            last: 2,
            events: 1
        }]
    );
    spool.append(&event(7, 3, 0)).unwrap();
    let b = spool.next_batch(100, 1 << 20).unwrap().unwrap();
    assert_eq!((b.from_seq, b.to_seq, seqs(&b)), (1, 3, vec![1, 3]));
    assert_eq!(b.lost.len(), 1);
    spool.ack(7, 3).unwrap();
    // A loss of epoch 7 after the node moved on to epoch 8.
    spool.append(&event(8, 1, 0)).unwrap();
    spool
        .add_losses(&[Loss {
            epoch: 7,
            first: 4,
            last: 9,
            events: 6,
        }])
        .unwrap();
    let b = spool.next_batch(100, 1 << 20).unwrap().unwrap();
    assert_eq!((b.epoch, b.from_seq, b.to_seq), (7, 4, 9));
    assert!(b.events.is_empty());
    let b = spool.next_batch(100, 1 << 20).unwrap().unwrap();
    assert_eq!((b.epoch, seqs(&b)), (8, vec![1]));
}

#[test]
fn the_spool_survives_a_restart_with_its_acks_and_a_torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), 1 << 20, 4);
    {
        let mut spool = Spool::open(&cfg).unwrap();
        for seq in 1..=5 {
            spool.append(&event(7, seq, 10)).unwrap();
        }
        let b = spool.next_batch(2, 1 << 20).unwrap().unwrap();
        spool.ack(b.epoch, b.to_seq).unwrap();
        spool.flush().unwrap();
    }
    // A crash in the middle of a record.
    let file = list(tmp.path()).unwrap().pop().unwrap().1;
    let mut bytes = fs::read(&file).unwrap();
    bytes.extend_from_slice(&[0, 0, 0, 40, 1, 2]);
    fs::write(&file, bytes).unwrap();
    let mut spool = Spool::open(&cfg).unwrap();
    let b = spool.next_batch(100, 1 << 20).unwrap().unwrap();
    assert_eq!((b.from_seq, seqs(&b)), (3, vec![3, 4, 5]));
    // Appending goes on after the cut tail, numbering from the last entry.
    spool.append(&event(7, 8, 10)).unwrap();
    let b = spool.next_batch(100, 1 << 20).unwrap().unwrap();
    assert_eq!((b.from_seq, seqs(&b)), (6, vec![8]));
}

#[test]
fn a_loss_after_the_last_event_of_a_batch_waits_for_a_later_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(&config(tmp.path(), 1 << 30, 4)).unwrap();
    spool.append(&event(7, 1, 0)).unwrap();
    assert_eq!(
        spool.append(&event(7, 2, MAX_SPOOL_ENTRY)).unwrap().len(),
        1
    );
    spool.append(&event(7, 3, 0)).unwrap();
    // One event per batch: the loss of 2 must not ride with event 1 (it is past its range).
    let b = spool.next_batch(1, 1 << 20).unwrap().unwrap();
    assert_eq!(
        (b.from_seq, b.to_seq, seqs(&b), b.lost.len()),
        (1, 1, vec![1], 0)
    );
    let b = spool.next_batch(1, 1 << 20).unwrap().unwrap();
    assert_eq!((b.from_seq, b.to_seq, seqs(&b)), (2, 3, vec![3]));
    assert_eq!(
        b.lost,
        [Lost {
            first: 2,
            last: 2,
            events: 1
        }]
    );
    // A repeated number is passed over rather than breaking the order.
    assert!(spool.append(&event(7, 3, 0)).unwrap().is_empty());
    assert!(spool.next_batch(1, 1 << 20).unwrap().is_none());
}

#[test]
fn unacked_bytes_are_what_the_monitor_has_not_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(&config(tmp.path(), 1 << 20, 4)).unwrap();
    assert_eq!(spool.stats().unacked_bytes, 0);
    for seq in 1..=4 {
        spool.append(&event(7, seq, 100)).unwrap();
    }
    let all = spool.stats().unacked_bytes;
    assert!(all > 400, "{all}");
    assert_eq!(all, spool.stats().bytes);
    let b = spool.next_batch(2, 1 << 20).unwrap().unwrap();
    spool.ack(b.epoch, b.to_seq).unwrap();
    let half = spool.stats().unacked_bytes;
    assert!(half > 0 && half < all, "{half} of {all}");
    while let Some(b) = spool.next_batch(10, 1 << 20).unwrap() {
        spool.ack(b.epoch, b.to_seq).unwrap();
    }
    assert_eq!(spool.stats().unacked_bytes, 0);
}
