//! The engine, the handle and the tracing layer together.

use std::fs::{self, OpenOptions};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use fubar_logproto::{Class, Event};
use tracing_subscriber::layer::SubscriberExt;

use crate::engine::Engine;
use crate::segment::list_segments;
use crate::shared::Shared;
use crate::test_util::{event, read_class, Captured};
use crate::writer::lock;
use crate::{
    class_dir, format_line, start_with_stdout, EventLayer, LogConfig, LogError, LogHandle, Redirect,
};

fn config(dir: &Path, classes: Vec<(Class, Redirect)>, capacity: usize) -> LogConfig {
    LogConfig {
        node: "fubar@vm".into(),
        epoch: 42,
        dir: dir.to_path_buf(),
        max_bytes: 1 << 20,
        max_files: 10,
        classes,
        channel_capacity: capacity,
        // Long, so the tests see only the flushes they ask for.
        flush_interval: Duration::from_secs(3600),
        max_events_per_sec: 0,
    }
}

fn started(
    dir: &Path,
    classes: Vec<(Class, Redirect)>,
    capacity: usize,
) -> (LogHandle, EventLayer, Captured) {
    let out = Captured::default();
    let (handle, layer) =
        start_with_stdout(config(dir, classes, capacity), Box::new(out.clone())).unwrap();
    (handle, layer, out)
}

/// Runs `f` with a subscriber made of the layer alone.
fn with_layer(layer: EventLayer, f: impl FnOnce()) {
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, f);
}

fn recorded(dir: &Path, class: Class) -> Vec<Event> {
    read_class(&class_dir(dir, class)).0
}

#[test]
fn a_class_event_becomes_an_event_with_its_fields() {
    let tmp = tempfile::tempdir().unwrap();
    let (handle, layer, _) = started(tmp.path(), vec![(Class::Access, Redirect::None)], 64);
    with_layer(layer, || {
        tracing::info!(target: "access", client = %"c1", "connected");
        tracing::info!(target: "access", size = 12u32, flag = ?Some(true), name = "n", "fields");
        tracing::info!(target: "fubar::broker", "not a class: ignored");
    });
    handle.flush();
    let events = recorded(tmp.path(), Class::Access);
    assert_eq!(events.len(), 2);
    let e = &events[0];
    assert_eq!(
        (e.node.as_str(), e.epoch, e.class),
        ("fubar@vm", 42, Class::Access)
    );
    assert_eq!(e.message, "connected");
    assert_eq!(e.fields, vec![("client".into(), "c1".to_owned())]);
    assert!((e.time_us - Utc::now().timestamp_micros()).abs() < 60_000_000);
    assert_eq!(
        events[1].fields,
        vec![
            ("size".into(), "12".to_owned()),
            ("flag".into(), "Some(true)".to_owned()),
            ("name".into(), "n".to_owned()),
        ]
    );
    handle.shutdown();
}

#[test]
fn closed_classes_record_nothing_and_out_opens_for_the_next_event() {
    let tmp = tempfile::tempdir().unwrap();
    let (handle, layer, stdout) = started(tmp.path(), vec![(Class::Access, Redirect::None)], 64);
    let h = handle.clone();
    with_layer(layer, || {
        tracing::info!(target: "trace", "closed: dropped on the floor");
        tracing::info!(target: "protocol", "closed too");
        h.out(Class::Trace, Redirect::Stdout).unwrap();
        tracing::info!(target: "trace", client = "c9", "now open");
    });
    handle.flush();
    assert!(recorded(tmp.path(), Class::Protocol).is_empty());
    let trace = recorded(tmp.path(), Class::Trace);
    assert_eq!(trace.len(), 1);
    assert_eq!(trace[0].message, "now open");
    assert_eq!(stdout.text(), format!("{}\n", format_line(&trace[0])));
    let status = handle.list();
    let t = status.iter().find(|s| s.class == Class::Trace).unwrap();
    assert!(t.open);
    assert_eq!(
        (t.redirect.clone(), t.events, t.files),
        (Redirect::Stdout, 1, 1)
    );
    let p = status.iter().find(|s| s.class == Class::Protocol).unwrap();
    assert!(!p.open);
    assert_eq!((p.files, p.events), (0, 0));
    handle.shutdown();
}

#[test]
fn close_stops_recording_and_keeps_the_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (handle, layer, _) = started(tmp.path(), vec![(Class::Info, Redirect::None)], 64);
    let h = handle.clone();
    with_layer(layer, || {
        tracing::info!(target: "info", "one");
        h.close(Class::Info).unwrap();
        tracing::info!(target: "info", "two");
        h.open(Class::Info).unwrap();
        tracing::info!(target: "info", "three");
    });
    handle.flush();
    let messages: Vec<String> = recorded(tmp.path(), Class::Info)
        .into_iter()
        .map(|e| e.message)
        .collect();
    assert_eq!(messages, ["one", "three"]);
    handle.shutdown();
}

#[test]
fn sequence_numbers_are_consecutive_across_classes() {
    let tmp = tempfile::tempdir().unwrap();
    let classes = vec![
        (Class::Access, Redirect::None),
        (Class::Resource, Redirect::None),
    ];
    let (handle, layer, _) = started(tmp.path(), classes, 64);
    with_layer(layer, || {
        for i in 0..10 {
            if i % 3 == 0 {
                tracing::info!(target: "resource", i, "r");
            } else {
                tracing::info!(target: "access", i, "a");
            }
        }
    });
    handle.flush();
    let mut seqs: Vec<u64> = recorded(tmp.path(), Class::Access)
        .into_iter()
        .chain(recorded(tmp.path(), Class::Resource))
        .map(|e| e.seq)
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
    handle.shutdown();
}

#[test]
fn a_full_channel_drops_counts_and_reports_when_it_drains() {
    let tmp = tempfile::tempdir().unwrap();
    let classes = vec![
        (Class::Access, Redirect::None),
        (Class::Warning, Redirect::None),
    ];
    let (handle, layer, _) = started(tmp.path(), classes, 4);
    let engine = Arc::clone(&handle.inner.engine);
    with_layer(layer, || {
        // The test hook: holding the engine's lock blocks the writer.
        let guard = lock(&engine);
        for i in 0..50 {
            tracing::info!(target: "access", i, "flood");
        }
        drop(guard);
    });
    handle.flush();
    let dropped = handle.dropped();
    assert!(dropped > 0, "a capacity of 4 cannot take 50 events at once");
    let accepted = recorded(tmp.path(), Class::Access).len() as u64;
    assert_eq!(accepted + dropped, 50);
    let warnings = recorded(tmp.path(), Class::Warning);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(
        warnings[0].field("access"),
        Some(dropped.to_string().as_str())
    );
    assert_eq!(
        warnings[0].field("total"),
        Some(dropped.to_string().as_str())
    );
    let status = handle.list();
    let access = status.iter().find(|s| s.class == Class::Access).unwrap();
    assert_eq!((access.dropped, access.events), (dropped, accepted));
    handle.shutdown();
}

#[test]
fn a_torn_tail_found_at_start_is_reported_as_a_warning_event() {
    let tmp = tempfile::tempdir().unwrap();
    let classes = vec![
        (Class::Access, Redirect::None),
        (Class::Warning, Redirect::None),
    ];
    let (handle, layer, _) = started(tmp.path(), classes.clone(), 64);
    with_layer(layer, || {
        for i in 0..5 {
            tracing::info!(target: "access", i, "before the crash");
        }
    });
    handle.shutdown();
    let (_, path) = list_segments(&class_dir(tmp.path(), Class::Access))
        .unwrap()
        .pop()
        .unwrap();
    let len = fs::metadata(&path).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 3)
        .unwrap();

    let (handle, layer, _) = started(tmp.path(), classes, 64);
    with_layer(
        layer,
        || tracing::info!(target: "access", "after the restart"),
    );
    handle.flush();
    let warnings = recorded(tmp.path(), Class::Warning);
    assert_eq!(warnings.len(), 1);
    assert_eq!(
        warnings[0].field("path"),
        Some(path.display().to_string().as_str())
    );
    assert_eq!(warnings[0].field("class"), Some("access"));
    assert!(warnings[0].field("skipped_bytes").is_some_and(|s| s != "0"));
    let access: Vec<String> = recorded(tmp.path(), Class::Access)
        .into_iter()
        .map(|e| e.message)
        .collect();
    assert_eq!(access.len(), 5);
    assert_eq!(access[4], "after the restart");
    handle.shutdown();
}

#[test]
fn the_engine_writes_constructed_events_to_daily_files_by_their_own_date() {
    let tmp = tempfile::tempdir().unwrap();
    let shared = Arc::new(Shared::new("fubar@vm".into(), 1, 16));
    let mut engine = Engine::new(
        shared,
        tmp.path(),
        1 << 20,
        10,
        Box::new(Captured::default()),
    );
    engine
        .set_redirect(Class::Warning, "fubar".parse().unwrap())
        .unwrap();
    let mut a = event(Class::Warning, 1, 0);
    a.time_us = Utc
        .with_ymd_and_hms(2026, 11, 25, 23, 59, 59)
        .single()
        .unwrap()
        .timestamp_micros();
    let mut b = event(Class::Warning, 2, 0);
    b.time_us = Utc
        .with_ymd_and_hms(2026, 11, 26, 0, 0, 1)
        .single()
        .unwrap()
        .timestamp_micros();
    engine.write_event(&a);
    engine.write_event(&b);
    engine.flush_all();
    let day = |d: &str| fs::read_to_string(tmp.path().join(format!("fubar_{d}.log.1"))).unwrap();
    assert_eq!(day("2026-11-25"), format!("{}\n", format_line(&a)));
    assert_eq!(day("2026-11-26"), format!("{}\n", format_line(&b)));
    assert_eq!(
        read_class(&class_dir(tmp.path(), Class::Warning)),
        (vec![a, b], 0)
    );
}

#[test]
fn bad_class_names_and_redirects_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (handle, _layer, _) = started(tmp.path(), vec![], 64);
    let err = LogError::from("bogus".parse::<Class>().unwrap_err());
    assert!(
        err.to_string().contains("access, packet, protocol"),
        "{err}"
    );
    let before = handle.list();
    let err = handle
        .out(Class::Trace, Redirect::Prefix("../escape".into()))
        .unwrap_err();
    assert!(matches!(err, LogError::BadRedirect { .. }), "{err}");
    assert_eq!(handle.list(), before);
    assert!(!tmp.path().join("trace").exists());
    handle.shutdown();
}

#[test]
fn dump_and_dump_all_write_what_was_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let classes = vec![
        (Class::Access, Redirect::None),
        (Class::Error, Redirect::None),
    ];
    let (handle, layer, _) = started(tmp.path(), classes, 64);
    with_layer(layer, || {
        tracing::info!(target: "access", client = "c1", "connected");
        tracing::error!(target: "error", "disk on fire");
    });
    // No explicit flush: dump flushes first.
    let file = tmp.path().join("access.txt");
    let report = handle.dump(Class::Access, &file).unwrap();
    let access = recorded(tmp.path(), Class::Access);
    assert_eq!((report.events, report.skipped_bytes), (1, 0));
    assert_eq!(
        fs::read_to_string(&file).unwrap(),
        format!("{}\n", format_line(&access[0]))
    );

    let out = tmp.path().join("dumps");
    let all = handle.dump_all(&out).unwrap();
    let classes: Vec<Class> = all.iter().map(|(c, _, _)| *c).collect();
    assert_eq!(classes, [Class::Access, Class::Error]);
    for (class, path, report) in &all {
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with("fubar@vm-") && name.ends_with(&format!("-{class}.log")),
            "{name}"
        );
        assert_eq!(report.events, 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(path).unwrap().permissions().mode() & 0o777;
            assert_eq!(
                mode, 0o600,
                "{name}: dumps hold the same events as segments"
            );
        }
    }
    handle.shutdown();
    handle.shutdown();
    assert!(matches!(handle.open(Class::Debug), Err(LogError::Stopped)));
}

/// Counts the events a layer stacked under `EventLayer` gets to see, by target.
#[derive(Clone, Default)]
struct Seen(Arc<parking_lot::Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Seen {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        self.0.lock().push(event.metadata().target().to_owned());
    }
}

#[test]
fn other_layers_still_see_other_targets_but_not_closed_classes() {
    let tmp = tempfile::tempdir().unwrap();
    let (handle, layer, _) = started(tmp.path(), vec![(Class::Access, Redirect::None)], 64);
    let seen = Seen::default();
    let subscriber = tracing_subscriber::registry()
        .with(seen.clone())
        .with(layer);
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!(target: "fubar::broker", "plain");
        tracing::info!(target: "access", "open class");
        tracing::info!(target: "packet", "closed class");
    });
    handle.flush();
    assert_eq!(*seen.0.lock(), ["fubar::broker", "access"]);
    assert_eq!(recorded(tmp.path(), Class::Access).len(), 1);
    handle.shutdown();
}

#[test]
fn the_writer_flushes_on_its_own_every_interval() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path(), vec![(Class::Debug, Redirect::None)], 64);
    cfg.flush_interval = Duration::from_millis(20);
    let (handle, layer) = start_with_stdout(cfg, Box::new(Captured::default())).unwrap();
    with_layer(layer, || tracing::debug!(target: "debug", "buffered"));
    // No flush() call: the timer must write it (polled, never a timing assertion).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while recorded(tmp.path(), Class::Debug).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(recorded(tmp.path(), Class::Debug).len(), 1);
    handle.shutdown();
}
