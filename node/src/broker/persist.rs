//! Between the broker's types and the store's records: conversions, writing a session's
//! journal, and reading everything back at start.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use fubar_store::records::{
    QueuedRecord, QueuedState, ReplicaOp, RestoredSession, SessionRecord, StoredMessage,
    StoredProperties, StoredSubscription,
};
use fubar_store::{Store, StoreError};

use super::Broker;
use crate::mqtt::message::{
    Delivery, Message, MessageProperties, RetainHandling, SubscriptionOptions,
};
use crate::mqtt::packet::QoS;
use crate::mqtt::session::{DeliveryState, RestoredDelivery, Session, SessionChange};

/// The stored form of a message.
pub(crate) fn stored_message(m: &Message) -> StoredMessage {
    StoredMessage {
        topic: m.topic.to_string(),
        payload: m.payload.to_vec(),
        qos: m.qos as u8,
        retain: m.retain,
        properties: stored_properties(&m.properties),
        expires_at_ms: m.expires_at.map(|at| {
            let (now, wall_ms) = clocks();
            wall_ms_of(at, now, wall_ms)
        }),
    }
}

/// The monotonic and the wall clock, read together: deadlines are `Instant`s in memory and
/// wall-clock milliseconds in the store, so that they hold across a restart.
fn clocks() -> (Instant, u64) {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (
        Instant::now(),
        u64::try_from(wall.as_millis()).unwrap_or(u64::MAX),
    )
}

/// `deadline` as wall-clock milliseconds since the Unix epoch (how the store keeps it).
pub(crate) fn deadline_ms(deadline: Instant) -> u64 {
    let (now, wall_ms) = clocks();
    wall_ms_of(deadline, now, wall_ms)
}

/// A deadline the store kept (wall-clock ms) as an `Instant` of this process.
pub(crate) fn deadline_of(at_ms: u64) -> Option<Instant> {
    let (now, wall_ms) = clocks();
    instant_of(at_ms, now, wall_ms)
}

/// `deadline` in milliseconds since the Unix epoch, `now` being `wall_ms`.
fn wall_ms_of(deadline: Instant, now: Instant, wall_ms: u64) -> u64 {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if deadline >= now {
        wall_ms.saturating_add(ms(deadline - now))
    } else {
        wall_ms.saturating_sub(ms(now - deadline))
    }
}

/// The deadline `at_ms` (milliseconds since the Unix epoch) as an `Instant`, `now` being
/// `wall_ms`: one long past is `now` (it has expired either way), one too far ahead for an
/// `Instant` is none (as `Message::expiring_from` does).
fn instant_of(at_ms: u64, now: Instant, wall_ms: u64) -> Option<Instant> {
    if at_ms >= wall_ms {
        now.checked_add(Duration::from_millis(at_ms - wall_ms))
    } else {
        Some(
            now.checked_sub(Duration::from_millis(wall_ms - at_ms))
                .unwrap_or(now),
        )
    }
}

/// The stored form of a message's MQTT 5 properties.
pub(crate) fn stored_properties(p: &MessageProperties) -> StoredProperties {
    StoredProperties {
        payload_is_utf8: p.payload_is_utf8,
        message_expiry_secs: p.message_expiry_secs,
        content_type: p.content_type.as_deref().map(str::to_owned),
        response_topic: p.response_topic.as_deref().map(str::to_owned),
        correlation_data: p.correlation_data.as_ref().map(|b| b.to_vec()),
        user_properties: p
            .user_properties
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// A message read back from the store.
pub(crate) fn message_of(m: StoredMessage) -> Message {
    let p = m.properties;
    let expires_at = m.expires_at_ms.and_then(|at| {
        let (now, wall_ms) = clocks();
        instant_of(at, now, wall_ms)
    });
    Message {
        topic: m.topic.into(),
        payload: Bytes::from(m.payload),
        qos: qos_of(m.qos),
        retain: m.retain,
        properties: MessageProperties {
            payload_is_utf8: p.payload_is_utf8,
            message_expiry_secs: p.message_expiry_secs,
            content_type: p.content_type.map(Into::into),
            response_topic: p.response_topic.map(Into::into),
            correlation_data: p.correlation_data.map(Bytes::from),
            user_properties: p
                .user_properties
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        },
        trace: None,
        publisher: None,
        expires_at,
        sampled_at: None,
    }
}

fn qos_of(v: u8) -> QoS {
    QoS::from_u8(v).unwrap_or(QoS::AtLeastOnce)
}

fn stored_subscription(filter: &str, o: &SubscriptionOptions) -> StoredSubscription {
    StoredSubscription {
        filter: filter.to_owned(),
        qos: o.qos as u8,
        no_local: o.no_local,
        retain_as_published: o.retain_as_published,
        retain_handling: match o.retain_handling {
            RetainHandling::OnSubscribe => 0,
            RetainHandling::OnNewSubscription => 1,
            RetainHandling::Never => 2,
        },
        subscription_id: o.subscription_id,
    }
}

fn subscription_of(s: StoredSubscription) -> (String, SubscriptionOptions) {
    let options = SubscriptionOptions {
        qos: qos_of(s.qos),
        no_local: s.no_local,
        retain_as_published: s.retain_as_published,
        retain_handling: match s.retain_handling {
            1 => RetainHandling::OnNewSubscription,
            2 => RetainHandling::Never,
            _ => RetainHandling::OnSubscribe,
        },
        subscription_id: s.subscription_id,
    };
    (s.filter, options)
}

fn queued_state(s: DeliveryState) -> QueuedState {
    match s {
        DeliveryState::Queued => QueuedState::Queued,
        DeliveryState::WaitPubAck(id) => QueuedState::WaitPubAck(id),
        DeliveryState::WaitPubRec(id) => QueuedState::WaitPubRec(id),
        DeliveryState::WaitPubComp(id) => QueuedState::WaitPubComp(id),
    }
}

fn delivery_state(s: QueuedState) -> DeliveryState {
    match s {
        QueuedState::Queued => DeliveryState::Queued,
        QueuedState::WaitPubAck(id) => DeliveryState::WaitPubAck(id),
        QueuedState::WaitPubRec(id) => DeliveryState::WaitPubRec(id),
        QueuedState::WaitPubComp(id) => DeliveryState::WaitPubComp(id),
    }
}

/// Writes a persistent session's journal to the store. Runs under the session's lock, so the
/// writes of one session reach the store in the order they were made. Every change is tried
/// (a later one may still succeed, and each is whole in itself); the first error is returned,
/// and means the journal is not all in the store. With `copies`, each write is also added
/// there, in the form a backup applies it.
pub(crate) fn write_changes(
    store: &Store,
    client_id: &str,
    session: &Session,
    changes: Vec<SessionChange>,
    mut copies: Option<&mut Vec<ReplicaOp>>,
) -> Result<(), StoreError> {
    let mut first_error = None;
    for change in changes {
        let op = replica_op(session, change);
        let result = match &op {
            ReplicaOp::PutQueued { seq, record } => {
                store.put_queued(client_id, *seq, record).map(drop)
            }
            ReplicaOp::RemoveQueued { seq } => store.delete_queued(client_id, *seq),
            ReplicaOp::PutQos2(id) => store.put_qos2(client_id, *id),
            ReplicaOp::DeleteQos2(id) => store.delete_qos2(client_id, *id),
            ReplicaOp::PutSession(record) => store.put_session(client_id, record).map(drop),
            ReplicaOp::Deadline(at) => store.put_deadline(client_id, *at).map(drop),
            ReplicaOp::Full(_) | ReplicaOp::Delete => Ok(()),
        };
        if let Some(copies) = copies.as_deref_mut() {
            copies.push(op);
        }
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// One journal change as a store write (the same for this node's store and a backup's).
fn replica_op(session: &Session, change: SessionChange) -> ReplicaOp {
    match change {
        SessionChange::Put {
            seq,
            delivery,
            state,
        } => ReplicaOp::PutQueued {
            seq,
            record: QueuedRecord {
                message: stored_message(&delivery.message),
                qos: delivery.qos as u8,
                retain: delivery.retain,
                state: queued_state(state),
                subscription_ids: delivery.subscription_ids,
            },
        },
        SessionChange::Remove { seq } => ReplicaOp::RemoveQueued { seq },
        SessionChange::Qos2Received(id) => ReplicaOp::PutQos2(id),
        SessionChange::Qos2Released(id) => ReplicaOp::DeleteQos2(id),
        SessionChange::Subscriptions => ReplicaOp::PutSession(SessionRecord {
            subscriptions: session
                .subscriptions()
                .map(|(f, o)| stored_subscription(f, o))
                .collect(),
            expiry_secs: session.expiry_secs(),
            owner: session.user().map(str::to_owned),
        }),
    }
}

/// Loads retained messages and persistent sessions (offline, with their subscriptions in the
/// router) into a new broker.
pub(crate) fn restore(broker: &Broker, store: &Arc<Store>) -> Result<(), StoreError> {
    let retained = store.retained()?;
    let retained_count = retained.len();
    broker
        .retained
        .restore(retained.into_iter().map(|m| Arc::new(message_of(m))));
    let sessions = store.sessions()?;
    let session_count = sessions.len();
    let now = Instant::now();
    for s in sessions {
        // Offline since the last run: it expires when it would have (a store of an earlier
        // version kept no deadline: its sessions start their expiry now).
        let deadline = s.expires_at_ms.and_then(deadline_of);
        restore_session(broker, s, now, deadline, false);
    }
    tracing::info!(target: "info", retained = retained_count, sessions = session_count,
        path = %store.path().display(), "state restored");
    Ok(())
}

/// Puts one persistent session into the registry (offline since `now`, or until `deadline`
/// when one was kept) and its subscriptions into the router. `moved`: it comes from another
/// node, so everything it holds is written to this node's store too.
fn restore_session(
    broker: &Broker,
    s: RestoredSession,
    now: Instant,
    deadline: Option<Instant>,
    moved: bool,
) {
    let limits = broker.settings().session_limits();
    let subscriptions: Vec<(String, SubscriptionOptions)> = s
        .record
        .subscriptions
        .into_iter()
        .map(subscription_of)
        .collect();
    let messages = s
        .queued
        .into_iter()
        .map(|(seq, q)| RestoredDelivery {
            seq,
            delivery: Delivery {
                message: Arc::new(message_of(q.message)),
                qos: qos_of(q.qos),
                retain: q.retain,
                share: None,
                subscription_ids: q.subscription_ids,
            },
            state: delivery_state(q.state),
        })
        .collect();
    // Until its client connects again, topic rules see the session's owner (the verified
    // user that created it): messages queued for it while it is away are checked as its.
    let owner = s.record.owner.clone();
    let mut session = Session::restore(limits, subscriptions.clone(), messages, s.qos2_received)
        .with_expiry_secs(s.record.expiry_secs)
        .with_user(s.record.owner.map(Into::into));
    if moved {
        // Journal everything: the next write puts the whole session in this node's store.
        session.set_persistent(false);
        session.set_persistent(true);
    }
    let handle = broker
        .registry
        .restore(&s.client_id, session, now, deadline);
    handle.acl.set_user(owner.as_deref());
    if moved {
        handle.lock().submit_or_log("session moved here");
    }
    for (filter, options) in &subscriptions {
        broker.router.subscribe(&handle, filter, *options);
    }
}

/// A persistent session as it leaves this node for another one.
pub(crate) fn exported(client_id: &str, session: &Session) -> RestoredSession {
    let (subscriptions, messages, qos2_received) = session.export();
    RestoredSession {
        client_id: client_id.to_owned(),
        record: SessionRecord {
            subscriptions: subscriptions
                .iter()
                .map(|(f, o)| stored_subscription(f, o))
                .collect(),
            expiry_secs: session.expiry_secs(),
            owner: session.user().map(str::to_owned),
        },
        queued: messages
            .into_iter()
            .map(|m| {
                let record = QueuedRecord {
                    message: stored_message(&m.delivery.message),
                    qos: m.delivery.qos as u8,
                    retain: m.delivery.retain,
                    state: queued_state(m.state),
                    subscription_ids: m.delivery.subscription_ids,
                };
                (m.seq, record)
            })
            .collect(),
        qos2_received,
        expires_at_ms: None,
    }
}

/// Installs a persistent session that moved here from another node (offline until its
/// client's CONNECT, which is in progress, resumes it).
pub(crate) fn install_moved(broker: &Broker, session: RestoredSession) {
    restore_session(broker, session, Instant::now(), None, true);
}

/// Installs a persistent session taken over from this node's copy of it (its node was
/// lost): offline, it expires when it would have on its old node.
pub(crate) fn install_failed_over(broker: &Broker, session: RestoredSession) {
    let deadline = session.expires_at_ms.and_then(deadline_of);
    let ms = session.expires_at_ms;
    let client_id = session.client_id.clone();
    // Its first write here sends the whole session, deadline included, to its new backups;
    // this node's store keeps the deadline apart.
    restore_session(broker, session, Instant::now(), deadline, true);
    if let (Some(ms), Some(store)) = (ms, &broker.store) {
        if let Err(e) = store.put_deadline(&client_id, Some(ms)) {
            tracing::error!(target: "error", client = %client_id, error = %e,
                "cannot store the session's expiry deadline");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_goes_to_the_wall_clock_and_back() {
        let now = Instant::now();
        let wall_ms = 1_700_000_000_000;
        let later = now + Duration::from_millis(90_500);
        assert_eq!(wall_ms_of(later, now, wall_ms), wall_ms + 90_500);
        // Read back after a restart 30 s later: 60.5 s remain.
        let restart = now + Duration::from_secs(600);
        let back = instant_of(wall_ms + 90_500, restart, wall_ms + 30_000).unwrap();
        assert_eq!(back - restart, Duration::from_millis(60_500));
        // One that passed while the node was down is expired once read back.
        let past = instant_of(wall_ms + 90_500, restart, wall_ms + 100_000).unwrap();
        assert!(past < restart);
        assert_eq!(restart - past, Duration::from_millis(9_500));
        let earlier = now.checked_sub(Duration::from_millis(1_000)).unwrap_or(now);
        assert!(wall_ms_of(earlier, now, wall_ms) <= wall_ms);
    }

    #[test]
    fn a_stored_message_keeps_its_deadline_and_a_queued_one_its_subscription_ids() {
        let mut m = Message {
            topic: "t".into(),
            payload: Bytes::from_static(b"p"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: MessageProperties {
                message_expiry_secs: Some(100),
                ..MessageProperties::default()
            },
            trace: None,
            publisher: None,
            expires_at: None,
            sampled_at: None,
        };
        m = m.expiring_from(Instant::now());
        let back = message_of(stored_message(&m));
        assert_eq!(back.properties.message_expiry_secs, Some(100));
        let left = back.remaining_expiry_secs(Instant::now()).unwrap();
        assert!((99..=100).contains(&left), "{left}");
        let never = Message {
            expires_at: None,
            sampled_at: None,
            properties: MessageProperties::default(),
            ..m
        };
        assert_eq!(message_of(stored_message(&never)).expires_at, None);
        // A queued delivery goes to the store with its subscription identifiers.
        let mut session = Session::new(crate::mqtt::session::SessionLimits {
            max_queued_messages: 10,
            max_queued_bytes: 1000,
            inflight_window: 1,
        })
        .with_user(Some("alice".into()));
        let _ = session.enqueue(Delivery {
            message: Arc::new(never),
            qos: QoS::AtLeastOnce,
            retain: false,
            share: None,
            subscription_ids: vec![2, 5],
        });
        let out = exported("c", &session);
        assert_eq!(out.queued[0].1.subscription_ids, vec![2, 5]);
        // and with its owner, so the node it moves to refuses other users too.
        assert_eq!(out.record.owner.as_deref(), Some("alice"));
    }
}
