//! The monitor's and the shipper's additions: foreign events written as they are, the tap,
//! and the high-water marks read back from the segments.

use parking_lot::Mutex;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fubar_logproto::{Class, Event};
use tracing_subscriber::layer::SubscriberExt;

use crate::test_util::{event, read_class, Captured};
use crate::{
    class_dir, format_line, high_water_marks, start_with_stdout, LogConfig, Redirect, Tap,
};

fn config(dir: &Path, classes: Vec<(Class, Redirect)>) -> LogConfig {
    LogConfig {
        node: "monitor@vm".into(),
        epoch: 9,
        dir: dir.to_path_buf(),
        max_bytes: 1 << 20,
        max_files: 10,
        classes,
        channel_capacity: 64,
        flush_interval: Duration::from_secs(3600),
        max_events_per_sec: 0,
    }
}

#[test]
fn foreign_events_keep_their_identity_and_are_flushed_before_returning() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Captured::default();
    let classes = vec![(Class::Access, Redirect::Stdout)];
    let (handle, _layer) =
        start_with_stdout(config(tmp.path(), classes), Box::new(out.clone())).unwrap();
    let mut foreign: Vec<Event> = (5..8).map(|seq| event(Class::Access, seq, 3)).collect();
    // A class closed on the monitor is recorded all the same: the node shipped it.
    foreign.push(event(Class::Protocol, 8, 0));
    handle.write_events(&foreign).unwrap();
    // No flush asked: write_events flushed the segments itself.
    let (access, skipped) = read_class(&class_dir(tmp.path(), Class::Access));
    assert_eq!((access.as_slice(), skipped), (&foreign[..3], 0));
    assert_eq!(
        read_class(&class_dir(tmp.path(), Class::Protocol)).0,
        &foreign[3..]
    );
    assert_eq!((access[0].node.as_str(), access[0].epoch), ("fubar@vm", 42));
    handle.flush();
    let lines: String = foreign[..3]
        .iter()
        .map(|e| format!("{}\n", format_line(e)))
        .collect();
    assert_eq!(out.text(), lines, "the redirect got the foreign events too");
    let status = handle.list();
    let protocol = status.iter().find(|s| s.class == Class::Protocol).unwrap();
    assert!(
        !protocol.open,
        "writing foreign events does not open a class"
    );
    assert_eq!(protocol.events, 1);
    handle.shutdown();
    assert!(handle.write_events(&foreign).is_err(), "stopped");
}

/// A tap that keeps what it is given.
#[derive(Clone, Default)]
struct Kept(Arc<Mutex<Vec<Event>>>);

impl Tap for Kept {
    fn event(&mut self, event: &Event) {
        self.0.lock().push(event.clone());
    }
}

impl Kept {
    fn seqs(&self) -> Vec<(Class, u64)> {
        let kept = self.0.lock();
        kept.iter().map(|e| (e.class, e.seq)).collect()
    }
}

#[test]
fn shipped_classes_reach_the_tap_numbered_in_order_open_or_not() {
    let tmp = tempfile::tempdir().unwrap();
    let classes = vec![(Class::Access, Redirect::None)];
    let (handle, layer) =
        start_with_stdout(config(tmp.path(), classes), Box::new(Captured::default())).unwrap();
    let kept = Kept::default();
    assert!(handle.set_tap(Some(Box::new(kept.clone()))).is_none());
    handle.ship(Class::Trace, true);
    handle.ship(Class::Access, true);
    assert_eq!(handle.shipped(), [Class::Access, Class::Trace]);
    let h = handle.clone();
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!(target: "access", "1: open and shipped");
        tracing::info!(target: "trace", "2: shipped, closed here");
        tracing::info!(target: "debug", "neither: no number used");
        // Shipping is decided when the writer records an event: let it catch up first.
        h.flush();
        h.ship(Class::Access, false);
        tracing::info!(target: "access", "3: open, no longer shipped");
        tracing::info!(target: "trace", "4: shipped");
        h.flush();
        h.ship(Class::Trace, false);
        tracing::info!(target: "trace", "neither any more");
    });
    handle.flush();
    assert_eq!(
        kept.seqs(),
        [(Class::Access, 1), (Class::Trace, 2), (Class::Trace, 4)]
    );
    let access: Vec<u64> = read_class(&class_dir(tmp.path(), Class::Access))
        .0
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(access, [1, 3]);
    assert!(read_class(&class_dir(tmp.path(), Class::Trace))
        .0
        .is_empty());
    handle.shutdown();
}

#[test]
fn high_water_marks_are_the_highest_sequence_per_node_and_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let (handle, _layer) =
        start_with_stdout(config(tmp.path(), vec![]), Box::new(Captured::default())).unwrap();
    let mut events = vec![event(Class::Access, 3, 0), event(Class::Info, 7, 0)];
    let mut other = event(Class::Access, 2, 0);
    other.node = "n2@vm".into();
    events.push(other);
    let mut older = event(Class::Warning, 11, 0);
    older.epoch = 41;
    events.push(older);
    handle.write_events(&events).unwrap();
    let marks = high_water_marks(tmp.path()).unwrap();
    let expected = [
        (("fubar@vm".to_owned(), 41), 11),
        (("fubar@vm".to_owned(), 42), 7),
        (("n2@vm".to_owned(), 42), 2),
    ];
    assert_eq!(marks.into_iter().collect::<Vec<_>>(), expected);
    handle.shutdown();
}
