//! Snapshots (build, install elsewhere) and restarts (everything comes back).

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::{RaftLogReader, RaftSnapshotBuilder, Vote};

use super::*;

#[tokio::test]
async fn snapshot_installed_elsewhere_reads_the_same_and_replaces_everything() {
    let src_dir = tempfile::tempdir().unwrap();
    let src = open(src_dir.path());
    let (_log, mut src_sm) = src.replication(None).unwrap();
    src_sm
        .apply([membership_entry(1, &[1, 2]), entry(2, sample_changes())])
        .await
        .unwrap();
    let built = src_sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    assert_eq!(
        built.meta.last_log_id,
        Some(openraft::testing::log_id(1, 1, 2))
    );

    // The target has state of its own, all of which the snapshot must replace.
    let dst_dir = tempfile::tempdir().unwrap();
    let dst = open(dst_dir.path());
    let recorder = Arc::new(Recorder::default());
    let (_log, mut dst_sm) = dst.replication(listener(&recorder)).unwrap();
    dst_sm
        .apply([entry(
            1,
            vec![
                Change::PutAccount {
                    name: "juliet".into(),
                    record: account("$argon2id$j"),
                },
                Change::PutAccount {
                    name: "romeo".into(),
                    record: account("$argon2id$old"),
                },
                Change::AddRoute {
                    filter: "stale".into(),
                    node: 3,
                },
            ],
        )])
        .await
        .unwrap();
    recorder.take();

    let mut receiving = dst_sm.begin_receiving_snapshot().await.unwrap();
    receiving
        .get_mut()
        .extend_from_slice(built.snapshot.get_ref());
    dst_sm
        .install_snapshot(&built.meta, receiving)
        .await
        .unwrap();

    assert_eq!(reads(&dst), reads(&src));
    assert_eq!(recorder.take(), vec![Heard::Reset]);
    assert_eq!(
        dst_sm.applied_state().await.unwrap(),
        src_sm.applied_state().await.unwrap()
    );
    let current = dst_sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta, built.meta);
    assert_eq!(current.snapshot.get_ref(), built.snapshot.get_ref());
}

#[tokio::test]
async fn a_garbled_snapshot_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (_log, mut sm) = store.replication(None).unwrap();
    sm.apply([entry(1, sample_changes())]).await.unwrap();
    let before = reads(&store);
    let meta = openraft::SnapshotMeta {
        last_log_id: Some(openraft::testing::log_id(2, 1, 9)),
        ..Default::default()
    };
    let data = Box::new(std::io::Cursor::new(vec![0xff; 16]));
    assert!(sm.install_snapshot(&meta, data).await.is_err());
    assert_eq!(reads(&store), before);
}

#[tokio::test]
async fn everything_comes_back_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let vote = Vote::new_committed(3, 2);
    let entries = vec![
        membership_entry(1, &[1, 2]),
        entry(2, sample_changes()),
        entry(
            3,
            vec![Change::DeleteRetained {
                topic: "a/b".into(),
            }],
        ),
        entry(4, vec![Change::DropNode { node: 8 }]),
    ];
    let (before, snapshot) = {
        let store = open(dir.path());
        let (mut log, mut sm) = store.replication(None).unwrap();
        log.save_vote(&vote).await.unwrap();
        log.blocking_append(entries.clone()).await.unwrap();
        log.save_committed(Some(openraft::testing::log_id(1, 1, 3)))
            .await
            .unwrap();
        sm.apply(entries[..3].to_vec()).await.unwrap();
        let snapshot = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        log.purge(openraft::testing::log_id(1, 1, 1)).await.unwrap();
        (reads(&store), snapshot)
    };

    let store = open(dir.path());
    let (mut log, mut sm) = store.replication(None).unwrap();
    assert_eq!(log.read_vote().await.unwrap(), Some(vote));
    assert_eq!(
        log.read_committed().await.unwrap(),
        Some(openraft::testing::log_id(1, 1, 3))
    );
    let state = log.get_log_state().await.unwrap();
    assert_eq!(
        state.last_purged_log_id,
        Some(openraft::testing::log_id(1, 1, 1))
    );
    assert_eq!(state.last_log_id, Some(openraft::testing::log_id(1, 1, 4)));
    let read: Vec<_> = log
        .try_get_log_entries(0..10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.log_id.index)
        .collect();
    assert_eq!(read, vec![2, 3, 4]);
    let (last, membership) = sm.applied_state().await.unwrap();
    assert_eq!(last, Some(openraft::testing::log_id(1, 1, 3)));
    assert_eq!(membership.voter_ids().collect::<Vec<_>>(), vec![1, 2]);
    let current = sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta, snapshot.meta);
    assert_eq!(current.snapshot.get_ref(), snapshot.snapshot.get_ref());
    assert_eq!(reads(&store), before);
    assert!(before.retained.is_empty() && before.clients == vec![("c1".into(), 7)]);
}

#[tokio::test]
async fn truncate_and_purge_are_inclusive() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (mut log, _sm) = store.replication(None).unwrap();
    log.blocking_append((1..=6).map(|i| entry(i, vec![])))
        .await
        .unwrap();
    log.truncate(openraft::testing::log_id(1, 1, 5))
        .await
        .unwrap();
    log.purge(openraft::testing::log_id(1, 1, 2)).await.unwrap();
    let read: Vec<_> = log
        .try_get_log_entries(..)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.log_id.index)
        .collect();
    assert_eq!(read, vec![3, 4]);
}
