use std::time::Duration;

use super::records::*;
use super::*;

fn open(dir: &Path) -> Store {
    Store::open(dir, SyncMode::Group, Duration::from_millis(1)).expect("open")
}

fn message(topic: &str, payload: &[u8]) -> StoredMessage {
    StoredMessage {
        topic: topic.into(),
        payload: payload.to_vec(),
        qos: 1,
        retain: true,
        properties: StoredProperties::default(),
        expires_at_ms: None,
    }
}

fn queued(payload: &[u8], state: QueuedState) -> QueuedRecord {
    QueuedRecord {
        message: message("t", payload),
        qos: 1,
        retain: false,
        state,
        subscription_ids: Vec::new(),
    }
}

#[test]
fn everything_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path());
        s.put_account(
            "romeo",
            &AccountRecord {
                password_hash: "$argon2id$x".into(),
            },
        )
        .unwrap();
        s.put_acl("10.0.0.0/8", false).unwrap();
        s.put_topic_rules(&["allow both a/%c".into(), "deny both b".into()])
            .unwrap();
        assert_eq!(
            s.delete_topic_rules(&["deny both b".into(), "nope".into()])
                .unwrap(),
            1
        );
        s.put_setting("mqtt.max_packet_size", "8192").unwrap();
        s.put_retained(&message("a/b", b"r")).unwrap();
        let rec = SessionRecord {
            subscriptions: vec![StoredSubscription {
                filter: "x/#".into(),
                qos: 2,
                no_local: false,
                retain_as_published: false,
                retain_handling: 0,
                subscription_id: None,
            }],
            expiry_secs: Some(30),
            owner: Some("alice".into()),
        };
        s.put_session("c1", &rec).unwrap();
        s.put_queued("c1", 2, &queued(b"second", QueuedState::Queued))
            .unwrap();
        s.put_queued("c1", 1, &queued(b"first", QueuedState::WaitPubAck(7)))
            .unwrap();
        let mut third = queued(b"third", QueuedState::Queued);
        third.message.expires_at_ms = Some(1_700_000_000_123);
        third.subscription_ids = vec![4, 11];
        s.put_queued("c1", 300, &third).unwrap();
        s.put_qos2("c1", 9).unwrap();
        s.flush().unwrap();
    }
    let s = open(dir.path());
    assert_eq!(s.accounts().unwrap()[0].0, "romeo");
    assert_eq!(s.acl().unwrap(), vec![("10.0.0.0/8".to_owned(), false)]);
    assert_eq!(s.topic_rules().unwrap(), vec!["allow both a/%c".to_owned()]);
    assert_eq!(s.settings().unwrap()[0].1, "8192");
    assert_eq!(s.retained().unwrap()[0].payload, b"r");
    let sessions = s.sessions().unwrap();
    assert_eq!(sessions.len(), 1);
    let c1 = &sessions[0];
    assert_eq!(c1.record.subscriptions[0].filter, "x/#");
    let order: Vec<u64> = c1.queued.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(order, vec![1, 2, 300], "queue comes back oldest first");
    assert_eq!(c1.queued[0].1.state, QueuedState::WaitPubAck(7));
    let third = &c1.queued[2].1;
    assert_eq!(third.message.expires_at_ms, Some(1_700_000_000_123));
    assert_eq!(third.subscription_ids, vec![4, 11]);
    assert_eq!(c1.qos2_received, vec![9]);
}

#[test]
fn deleting_a_session_leaves_one_with_a_longer_id() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    for id in ["a", "ab"] {
        s.put_session(id, &SessionRecord::default()).unwrap();
        s.put_queued(id, 1, &queued(b"m", QueuedState::Queued))
            .unwrap();
        s.put_qos2(id, 1).unwrap();
    }
    s.delete_session("a").unwrap();
    let left = s.sessions().unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].client_id, "ab");
    assert_eq!(left[0].queued.len(), 1);
    assert_eq!(left[0].qos2_received, vec![1]);
    s.delete_queued("ab", 1).unwrap();
    s.delete_qos2("ab", 1).unwrap();
    assert!(s.sessions().unwrap()[0].queued.is_empty());
}

#[test]
fn deletes_report_whether_something_was_there() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    assert!(!s.delete_account("x").unwrap());
    s.put_account(
        "x",
        &AccountRecord {
            password_hash: "h".into(),
        },
    )
    .unwrap();
    assert!(s.delete_account("x").unwrap());
    assert!(!s.delete_acl("1.2.3.4/32").unwrap());
    s.put_retained(&message("t", b"1")).unwrap();
    s.delete_retained("t").unwrap();
    assert!(s.retained().unwrap().is_empty());
}

#[tokio::test]
async fn group_commit_makes_tickets_durable() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let mut durable = s.durable_watch();
    let mut last = 0;
    for i in 0..50u8 {
        last = s.put_retained(&message("t", &[i])).unwrap();
    }
    assert!(last >= 50);
    assert_eq!(s.ticket(), last);
    let reached = tokio::time::timeout(
        Duration::from_secs(10),
        durable.wait_for(|d| d.outcome(last).is_some()),
    )
    .await
    .expect("group commit within 10 s");
    assert_eq!(reached.unwrap().outcome(last), Some(Ok(())));
}

#[tokio::test]
async fn a_write_to_an_idle_store_is_synced_without_waiting_for_the_window() {
    // A window of an hour: a first write (and one long after the last fsync) must not wait
    // for it; nothing else is being written to share its fsync.
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), SyncMode::Group, Duration::from_secs(3_600)).unwrap();
    let mut durable = s.durable_watch();
    let ticket = s.put_retained(&message("t", b"1")).unwrap();
    let reached = tokio::time::timeout(
        Duration::from_secs(60),
        durable.wait_for(|d| d.outcome(ticket).is_some()),
    )
    .await
    .expect("an idle store syncs a write at once, not after its group window");
    assert_eq!(reached.unwrap().outcome(ticket), Some(Ok(())));
}

#[test]
fn an_injected_write_failure_is_returned_and_healed() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.inject_failures(true, false);
    assert!(s.put_retained(&message("t", b"1")).is_err());
    assert!(s.delete_qos2("c", 1).is_err());
    assert!(s.retained().unwrap().is_empty());
    s.inject_failures(false, false);
    s.put_retained(&message("t", b"1")).unwrap();
    assert_eq!(s.retained().unwrap().len(), 1);
}

#[tokio::test]
async fn a_ticket_whose_fsync_failed_is_reported_failed_never_durable() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let mut durable = s.durable_watch();
    s.inject_failures(false, true);
    let ticket = s.put_retained(&message("t", b"1")).unwrap();
    let seen = tokio::time::timeout(
        Duration::from_secs(10),
        durable.wait_for(|d| d.outcome(ticket).is_some()),
    )
    .await
    .expect("the fsync's outcome within 10 s")
    .unwrap()
    .outcome(ticket);
    assert_eq!(seen, Some(Err(DurabilityFailed)));
    // Once the disk is healed, later writes become durable again; the failed one stays failed.
    s.inject_failures(false, false);
    let later = s.put_retained(&message("t", b"2")).unwrap();
    let d = *tokio::time::timeout(
        Duration::from_secs(10),
        durable.wait_for(|d| d.outcome(later).is_some()),
    )
    .await
    .expect("the fsync's outcome within 10 s")
    .unwrap();
    assert_eq!(d.outcome(later), Some(Ok(())));
    assert_eq!(d.outcome(ticket), Some(Err(DurabilityFailed)));
}

#[test]
fn no_sync_mode_never_makes_writers_wait() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), SyncMode::None, Duration::ZERO).unwrap();
    assert_eq!(s.put_retained(&message("t", b"1")).unwrap(), 0);
    assert_eq!(s.ticket(), 0);
}

#[test]
fn a_second_open_of_the_same_state_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _s = open(dir.path());
    let err = Store::open(dir.path(), SyncMode::None, Duration::ZERO).unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
    assert!(err.is_in_use(), "{err}");
    assert!(err.to_string().contains("fubar reset"));
}

#[test]
fn undecodable_records_are_reported_as_corrupt_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path());
        s.retained.insert("bad", [0xff, 0xff, 0xff]).unwrap();
        s.flush().unwrap();
    }
    let s = open(dir.path());
    let err = s.retained().unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }));
    let text = err.to_string();
    assert!(
        text.contains(&dir.path().display().to_string()) && text.contains("fubar reset"),
        "{text}"
    );
}

#[test]
fn a_format_3_store_is_upgraded_and_its_sessions_have_no_owner() {
    let dir = tempfile::tempdir().unwrap();
    let old = SessionRecordV3 {
        subscriptions: Vec::new(),
        expiry_secs: Some(60),
    };
    {
        let db = Database::builder(dir.path()).open().unwrap();
        let meta = db.keyspace("meta", KeyspaceCreateOptions::default).unwrap();
        meta.insert(META_FORMAT, 3u32.to_be_bytes()).unwrap();
        let sessions = db
            .keyspace("sessions", KeyspaceCreateOptions::default)
            .unwrap();
        sessions
            .insert("dev1", postcard::to_allocvec(&old).unwrap())
            .unwrap();
        db.persist(PersistMode::SyncAll).unwrap();
    }
    {
        let s = open(dir.path());
        let back = s.sessions().unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].client_id, "dev1");
        assert_eq!(back[0].record.expiry_secs, Some(60));
        assert_eq!(back[0].record.owner, None);
    }
    // Upgraded for good: opened again as format 4.
    let s = open(dir.path());
    assert_eq!(s.sessions().unwrap()[0].record.owner, None);
}

#[test]
fn another_format_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Database::builder(dir.path()).open().unwrap();
        let meta = db.keyspace("meta", KeyspaceCreateOptions::default).unwrap();
        meta.insert(META_FORMAT, 99u32.to_be_bytes()).unwrap();
        db.persist(PersistMode::SyncAll).unwrap();
    }
    let err = Store::open(dir.path(), SyncMode::None, Duration::ZERO).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
}

#[test]
fn a_lost_journal_is_refused_not_opened_empty() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path());
        s.put_setting("mqtt.max_packet_size", "8192").unwrap();
    }
    // Garbage over the start of the journal: fjall drops it as a torn tail.
    let journal = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "jnl"))
        .expect("a journal file");
    let mut bytes = std::fs::read(&journal).unwrap();
    bytes[..16].fill(0xab);
    std::fs::write(&journal, bytes).unwrap();
    let err = Store::open(dir.path(), SyncMode::None, Duration::ZERO).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("fubar reset"), "{err}");
}

#[tokio::test]
async fn figures_count_writes_fsyncs_and_journal_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let before = s.figures();
    assert_eq!(before.writes, 0);
    assert!(before.journals >= 1);
    let mut durable = s.durable_watch();
    let ticket = s.put_retained(&message("t", &[7; 4096])).unwrap();
    s.delete_retained("t").unwrap();
    durable
        .wait_for(|d| d.outcome(ticket).is_some())
        .await
        .unwrap();
    let after = s.figures();
    assert_eq!(after.writes, 2);
    // The value, the topic twice (key of the insert and of the delete), and the rest of the record.
    assert!(after.written_bytes > 4096 + 2, "{after:?}");
    assert!(after.journal_bytes > 0, "{after:?}");
    assert!(after.disk_bytes >= after.journal_bytes);
    assert!(s.fsync_times().count >= 1);
    assert_eq!(after.fsync_failures, 0);
    s.inject_failures(false, true);
    let failed = s.put_retained(&message("t", b"1")).unwrap();
    durable
        .wait_for(|d| d.outcome(failed).is_some())
        .await
        .unwrap();
    assert_eq!(s.figures().fsync_failures, 1);
}
