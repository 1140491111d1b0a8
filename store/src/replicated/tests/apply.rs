//! Applying changes: each change's outcome and its effect on the store's reads.

use openraft::storage::RaftStateMachine;

use super::*;

async fn apply_one(sm: &mut StateMachine, index: u64, changes: Vec<Change>) -> Vec<Outcome> {
    let mut out = sm.apply([entry(index, changes)]).await.unwrap();
    assert_eq!(out.len(), 1);
    out.remove(0).0
}

#[tokio::test]
async fn every_change_has_its_outcome_and_effect() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (_log, mut sm) = store.replication(None).unwrap();

    let outcomes = apply_one(&mut sm, 1, sample_changes()).await;
    assert_eq!(
        outcomes,
        vec![
            Outcome::Done,
            Outcome::Done,
            Outcome::Done,
            Outcome::Done,
            Outcome::Added(true),
            Outcome::Added(true),
            Outcome::PreviousHolder(None),
            Outcome::Done,
        ]
    );
    assert_eq!(
        reads(&store),
        Reads {
            accounts: vec![("romeo".into(), account("$argon2id$r"))],
            acl: vec![("10.0.0.0/8".into(), false)],
            settings: vec![("mqtt.max_packet_size".into(), "8192".into())],
            retained: vec![message("a/b", b"r")],
            routes: vec![("x/#".into(), 7), ("x/#".into(), 8)],
            clients: vec![("c1".into(), 7)],
            topic_rules: vec!["allow both devices/%c/#".into(), "deny publish x".into()],
        }
    );
    assert_eq!(store.client_holder("c1").unwrap(), Some(7));
    assert_eq!(store.client_holder("c2").unwrap(), None);

    // A route added twice is there once; deletes say whether there was something to delete.
    let outcomes = apply_one(
        &mut sm,
        2,
        vec![
            Change::AddRoute {
                filter: "x/#".into(),
                node: 7,
            },
            Change::DeleteAccount {
                name: "romeo".into(),
            },
            Change::DeleteAccount {
                name: "romeo".into(),
            },
            Change::DeleteAcl {
                cidr: "10.0.0.0/8".into(),
            },
            Change::DeleteRetained {
                topic: "a/b".into(),
            },
            Change::DeleteRetained {
                topic: "nope".into(),
            },
            Change::RemoveRoute {
                filter: "x/#".into(),
                node: 8,
            },
            Change::RemoveRoute {
                filter: "x/#".into(),
                node: 9,
            },
            Change::DeleteTopicRules {
                rules: vec!["deny publish x".into(), "not there".into()],
            },
            Change::DeleteTopicRules {
                rules: vec!["not there".into()],
            },
        ],
    )
    .await;
    assert_eq!(
        outcomes,
        vec![
            Outcome::Added(false),
            Outcome::Removed(true),
            Outcome::Removed(false),
            Outcome::Removed(true),
            Outcome::Removed(true),
            Outcome::Removed(false),
            Outcome::Removed(true),
            Outcome::Removed(false),
            Outcome::Removed(true),
            Outcome::Removed(false),
        ]
    );
    let r = reads(&store);
    assert_eq!(r.topic_rules, vec!["allow both devices/%c/#".to_owned()]);
    assert!(r.accounts.is_empty() && r.acl.is_empty() && r.retained.is_empty());
    assert_eq!(r.routes, vec![("x/#".into(), 7)]);

    let (last, _) = sm.applied_state().await.unwrap();
    assert_eq!(last, Some(openraft::testing::log_id(1, 1, 2)));
}

#[tokio::test]
async fn register_returns_the_previous_holder_and_unregister_needs_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (_log, mut sm) = store.replication(None).unwrap();
    let register = |node| Change::RegisterClient {
        client_id: "c1".into(),
        node,
    };
    let unregister = |node| Change::UnregisterClient {
        client_id: "c1".into(),
        node,
    };

    // Later changes of one entry see the earlier ones.
    let outcomes = apply_one(&mut sm, 1, vec![register(1), register(2), register(2)]).await;
    assert_eq!(
        outcomes,
        vec![
            Outcome::PreviousHolder(None),
            Outcome::PreviousHolder(Some(1)),
            // Re-registering on the holder is no takeover.
            Outcome::PreviousHolder(None),
        ]
    );
    // n1 lets go late, after n2 took the client over: n2 keeps it.
    assert_eq!(
        apply_one(&mut sm, 2, vec![unregister(1)]).await,
        vec![Outcome::Removed(false)]
    );
    assert_eq!(store.client_holder("c1").unwrap(), Some(2));
    assert_eq!(
        apply_one(&mut sm, 3, vec![unregister(2)]).await,
        vec![Outcome::Removed(true)]
    );
    assert_eq!(store.client_holder("c1").unwrap(), None);
}

#[tokio::test]
async fn a_client_id_belongs_to_the_user_that_registered_it_until_its_session_ends() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (_log, mut sm) = store.replication(None).unwrap();
    let owned = |node, owner: &str| Change::RegisterOwnedClient {
        client_id: "alice-dev".into(),
        node,
        owner: owner.into(),
    };
    let plain = |node| Change::RegisterClient {
        client_id: "alice-dev".into(),
        node,
    };
    let not_alice = Outcome::NotOwner {
        owner: "alice".into(),
    };
    // alice on n1; bob on n2 and an anonymous connection on n3 are refused, in the same
    // entry (two first claims at once: the first ordered wins) and in later ones; alice
    // herself moves the id to n2.
    let outcomes = apply_one(
        &mut sm,
        1,
        vec![owned(1, "alice"), owned(2, "bob"), plain(3)],
    )
    .await;
    assert_eq!(
        outcomes,
        vec![
            Outcome::PreviousHolder(None),
            not_alice.clone(),
            not_alice.clone()
        ]
    );
    assert_eq!(store.client_holder("alice-dev").unwrap(), Some(1));
    // n1 is dropped (dead): the holder goes, the owner stays.
    apply_one(&mut sm, 2, vec![Change::DropNode { node: 1 }]).await;
    assert_eq!(store.client_holder("alice-dev").unwrap(), None);
    assert_eq!(
        apply_one(&mut sm, 3, vec![owned(2, "bob"), owned(2, "alice")]).await,
        vec![not_alice, Outcome::PreviousHolder(None)]
    );
    assert_eq!(
        store.client_owners().unwrap(),
        vec![("alice-dev".to_owned(), "alice".to_owned())]
    );
    // Her session ends on its holder: the id is free again.
    apply_one(
        &mut sm,
        4,
        vec![Change::UnregisterClient {
            client_id: "alice-dev".into(),
            node: 2,
        }],
    )
    .await;
    assert!(store.client_owners().unwrap().is_empty());
    assert_eq!(
        apply_one(&mut sm, 5, vec![owned(3, "bob")]).await,
        vec![Outcome::PreviousHolder(None)]
    );
}

#[tokio::test]
async fn drop_node_removes_only_that_nodes_routes_and_clients() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (_log, mut sm) = store.replication(None).unwrap();
    let route = |filter: &str, node| Change::AddRoute {
        filter: filter.into(),
        node,
    };
    let register = |client_id: &str, node| Change::RegisterClient {
        client_id: client_id.into(),
        node,
    };
    apply_one(
        &mut sm,
        1,
        vec![
            route("a", 1),
            route("a", 2),
            route("b/+", 2),
            register("c1", 1),
            register("c2", 2),
        ],
    )
    .await;
    // Routes and clients added in the same entry as the DropNode go too.
    let outcomes = apply_one(
        &mut sm,
        2,
        vec![
            route("c", 2),
            register("c3", 2),
            Change::DropNode { node: 2 },
        ],
    )
    .await;
    assert_eq!(
        outcomes[2],
        Outcome::Dropped {
            filters: vec!["a".into(), "b/+".into(), "c".into()],
            clients: vec!["c2".into(), "c3".into()],
        }
    );
    assert_eq!(store.routes().unwrap(), vec![("a".into(), 1)]);
    assert_eq!(store.clients().unwrap(), vec![("c1".into(), 1)]);
}

#[tokio::test]
async fn listener_hears_every_change_in_order_and_membership_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let recorder = Arc::new(Recorder::default());
    let (_log, mut sm) = store.replication(listener(&recorder)).unwrap();

    let out = sm
        .apply([
            membership_entry(1, &[1, 2, 3]),
            entry(2, sample_changes()),
            entry(
                3,
                vec![Change::RegisterClient {
                    client_id: "c1".into(),
                    node: 8,
                }],
            ),
        ])
        .await
        .unwrap();
    assert_eq!(out.len(), 3);
    assert!(out[0].0.is_empty(), "a membership entry has no outcomes");

    let heard = recorder.take();
    let changes: Vec<Change> = heard
        .iter()
        .map(|h| match h {
            Heard::Applied(c, _) => c.clone(),
            Heard::Reset => panic!("no reset expected"),
        })
        .collect();
    let mut expected = sample_changes();
    expected.push(Change::RegisterClient {
        client_id: "c1".into(),
        node: 8,
    });
    assert_eq!(changes, expected);
    assert_eq!(
        heard.last(),
        Some(&Heard::Applied(
            expected[expected.len() - 1].clone(),
            Outcome::PreviousHolder(Some(7))
        ))
    );

    let (last, membership) = sm.applied_state().await.unwrap();
    assert_eq!(last, Some(openraft::testing::log_id(1, 1, 3)));
    assert_eq!(
        membership.log_id(),
        &Some(openraft::testing::log_id(1, 1, 1))
    );
    let voters: Vec<u64> = membership.voter_ids().collect();
    assert_eq!(voters, vec![1, 2, 3]);
}

#[test]
fn replication_is_handed_out_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let _pieces = store.replication(None).unwrap();
    assert!(matches!(
        store.replication(None),
        Err(crate::StoreError::ReplicationTaken)
    ));
}

#[test]
fn node_ids_are_stable_and_distinct() {
    assert_eq!(node_id("n1@host1"), node_id("n1@host1"));
    assert_ne!(node_id("n1@host1"), node_id("n2@host1"));
    assert_ne!(node_id(""), 0);
    // The FNV-1a value is the format: every member must derive the same ids.
    assert_eq!(node_id("a"), 0xaf63_dc4c_8601_ec8c);
}

#[tokio::test]
async fn a_placement_only_moves_forward_and_outlives_its_node() {
    use crate::records::Placement;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (_log, mut sm) = store.replication(None).unwrap();
    let place = |primary, epoch| Change::PlaceSession {
        client_id: "c".into(),
        placement: Placement {
            primary,
            backups: vec![9],
            epoch,
        },
    };
    let out = apply_one(&mut sm, 1, vec![place(1, 1), place(2, 2), place(1, 1)]).await;
    assert_eq!(
        out,
        vec![Outcome::Done, Outcome::Done, Outcome::Stale { epoch: 2 }]
    );
    // Dropping its old primary leaves the placement: its backup takes the session from it.
    apply_one(&mut sm, 2, vec![Change::DropNode { node: 2 }]).await;
    let placements = store.placements().unwrap();
    assert_eq!(placements.len(), 1);
    assert_eq!(placements[0].1.primary, 2);
    assert_eq!(placements[0].1.epoch, 2);
    let forget = |epoch| Change::ForgetPlacement {
        client_id: "c".into(),
        epoch,
    };
    let out = apply_one(&mut sm, 3, vec![forget(1), forget(2)]).await;
    assert_eq!(out, vec![Outcome::Removed(false), Outcome::Removed(true)]);
    assert!(store.placements().unwrap().is_empty());
}
