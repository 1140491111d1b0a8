//! The router: which sessions a published message goes to.
//!
//! A publish walks the subscription trie under a read lock, collects its targets, drops the
//! lock, and only then queues the message in each target session (each locked briefly on its
//! own). No lock is held across the fan-out, so a slow session never stalls a publisher.

use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cluster_hooks::{ClusterHooks, LocalOnly};
use super::registry::{Registry, SessionHandle};
use super::retained::{RetainChange, RetainedStore};
use super::shared::SharedGroups;
use super::topic_acl::{log_denied, Action, TopicAcl};
use crate::mqtt::message::{Delivery, Message, SubscriptionOptions};
use crate::mqtt::packet::QoS;
use crate::mqtt::topic;
use crate::mqtt::trie::SubscriptionTrie;

/// How often a session's queue drops are reported, at most.
const DROP_REPORT_EVERY: Duration = Duration::from_secs(1);

/// One subscription in the trie: the session and the options it subscribed with.
#[derive(Debug, Clone)]
pub struct Subscriber {
    /// The subscribing session.
    pub handle: Arc<SessionHandle>,
    /// Its options for this filter.
    pub options: SubscriptionOptions,
}

/// What one publish did, for logs and counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routed {
    /// Sessions the message was queued for.
    pub delivered: usize,
    /// Older messages dropped from full session queues to make room.
    pub dropped: usize,
    /// QoS 0 copies not queued because the client is away.
    pub skipped_offline: usize,
    /// QoS 0 copies not queued because of the memory alarm (the client has a backlog).
    pub shed: usize,
    /// Whether a copy went to the store (a persistent session's queue or the retained
    /// store): the publisher's acknowledgement must then wait until it is durable.
    pub stored: bool,
    /// What happened to the retained store, if the message was retained.
    pub retained: Option<RetainChange>,
    /// The first store write that failed (a copy for a persistent session, or the retained
    /// message): the message is not safe, and its publisher must not be told it is.
    pub store_error: Option<Arc<str>>,
}

impl Routed {
    /// Counts what `deliver` did with one copy.
    fn count(&mut self, delivered: Result<Delivered, NotQueued>) {
        match delivered {
            Ok(d) => {
                self.delivered += 1;
                self.dropped += d.dropped;
                self.stored |= d.stored;
                if self.store_error.is_none() {
                    self.store_error = d.store_error;
                }
            }
            Err(NotQueued::Away) => self.skipped_offline += 1,
            Err(NotQueued::Shed) => self.shed += 1,
        }
    }
}

/// Subscriptions of every session of the node, and the fan-out of messages to them.
#[derive(Debug)]
pub struct Router {
    trie: RwLock<SubscriptionTrie<Arc<str>, Subscriber>>,
    /// Told when a filter gets its first local subscriber and loses its last one.
    hooks: Arc<dyn ClusterHooks>,
    /// Local subscribers per filter, kept only in a cluster.
    counts: Mutex<HashMap<Arc<str>, usize>>,
    /// Shared subscriptions (`$share/GROUP/FILTER`).
    shared: Mutex<SharedGroups>,
    /// Topic rules: a copy goes only to a session allowed to read its topic.
    acl: Arc<TopicAcl>,
}

impl Default for Router {
    /// A router of a standalone node that follows no topic rules (unit tests).
    fn default() -> Self {
        Self::new(Arc::default(), Arc::new(LocalOnly))
    }
}

impl Router {
    /// A router whose deliveries follow `acl` and whose route changes go to `hooks`.
    pub fn new(acl: Arc<TopicAcl>, hooks: Arc<dyn ClusterHooks>) -> Self {
        Self {
            trie: RwLock::default(),
            hooks,
            counts: Mutex::default(),
            shared: Mutex::default(),
            acl,
        }
    }

    /// Whether the rules let `handle`'s client read a message on `topic`. A denial is an
    /// `access` event once per session and topic until the rules change (a `#` subscriber
    /// on a busy node would otherwise log every message it does not get).
    pub fn may_receive(&self, handle: &SessionHandle, topic: &Arc<str>) -> bool {
        if !self.acl.is_active() {
            return true;
        }
        let (decision, fresh) = self.acl.check_fresh(&handle.acl, Action::Subscribe, topic);
        if !decision.allow && fresh {
            log_denied(&handle.acl.identity(), "receive", topic, &decision);
        }
        decision.allow
    }

    /// Filters with local subscribers (counted in a cluster only).
    pub fn local_filters(&self) -> Vec<String> {
        self.counts.lock().keys().map(|f| f.to_string()).collect()
    }

    fn counted(&self, filter: &str, added: bool) {
        let hooks = &self.hooks;
        if !hooks.is_clustered() {
            return;
        }
        let mut counts = self.counts.lock();
        if added {
            let n = counts.entry(filter.into()).or_insert(0);
            *n += 1;
            if *n == 1 {
                hooks.route_added(filter);
            }
        } else if let Some(n) = counts.get_mut(filter) {
            *n -= 1;
            if *n == 0 {
                counts.remove(filter);
                hooks.route_removed(filter);
            }
        }
    }

    /// Adds (or replaces) a subscription of `handle` to `filter`; returns true when new.
    ///
    /// Add the filter to the session first: a session that has ended by the time the trie is
    /// locked gets no entry, and one that ends later has the filter removed by
    /// `remove_session`, so no subscription outlives its session.
    pub fn subscribe(
        &self,
        handle: &Arc<SessionHandle>,
        filter: &str,
        options: SubscriptionOptions,
    ) -> bool {
        let sub = Subscriber {
            handle: handle.clone(),
            options,
        };
        if let Some((_, inner)) = topic::shared(filter) {
            let mut shared = self.shared.lock();
            if handle.lock().is_ended() {
                return false;
            }
            let new = shared.add(filter, inner, sub);
            drop(shared);
            if new {
                self.counted(filter, true);
            }
            return new;
        }
        let mut trie = self.trie.write();
        if handle.lock().is_ended() {
            return false;
        }
        let new = trie.insert(filter, handle.client_id.clone(), sub).is_none();
        if new {
            self.counted(filter, true);
        }
        new
    }

    /// Removes the subscription of `handle` to `filter`; returns whether it existed.
    pub fn unsubscribe(&self, handle: &Arc<SessionHandle>, filter: &str) -> bool {
        if let Some((_, inner)) = topic::shared(filter) {
            let mut shared = self.shared.lock();
            let removed = shared.remove(filter, inner, handle);
            drop(shared);
            if removed {
                self.counted(filter, false);
            }
            return removed;
        }
        let mut trie = self.trie.write();
        match trie.remove(filter, &handle.client_id) {
            Some(sub) if Arc::ptr_eq(&sub.handle, handle) => {
                self.counted(filter, false);
                true
            }
            Some(other) => {
                // Another session now owns this client id; its subscription stays.
                trie.insert(filter, handle.client_id.clone(), other);
                false
            }
            None => false,
        }
    }

    /// Removes every subscription of a session that ended.
    pub fn remove_session(&self, handle: &Arc<SessionHandle>) {
        let filters: Vec<String> = handle
            .lock()
            .session
            .subscriptions()
            .map(|(f, _)| f.to_owned())
            .collect();
        for f in filters {
            self.unsubscribe(handle, &f);
        }
    }

    /// Number of share groups (`$share/GROUP/FILTER`) with a member on this node.
    pub fn shared_group_count(&self) -> usize {
        let shared = self.shared.lock();
        let mut groups = 0;
        shared.for_each_group(|_, _| groups += 1);
        groups
    }

    /// Number of (filter, session) subscriptions.
    pub fn subscription_count(&self) -> usize {
        self.trie.read().len()
    }

    /// Publishes `message` (`shed_qos0`: see `deliver`): stores it if retained, and queues it for every session with a
    /// matching subscription, and for the session whose client id equals the topic (direct
    /// messaging), once per session at the highest QoS it qualifies for.
    pub fn publish(
        &self,
        message: Arc<Message>,
        registry: &Registry,
        retained: &RetainedStore,
        shed_qos0: bool,
    ) -> Routed {
        let change = message.retain.then(|| retained.set_written(&message));
        let mut routed = self.publish_copy(message, registry, shed_qos0);
        if let Some((change, written)) = change {
            routed.stored |= change.wrote() && retained.is_durable();
            routed.retained = Some(change);
            if let Err(e) = written {
                routed.store_error.get_or_insert(e);
            }
        }
        routed
    }

    /// Queues `message` for this node's sessions as `publish` does, without storing it in
    /// the retained store: for a copy published on another node, whose retained messages are
    /// replicated apart. Its retain flag is the one it was published with, for subscribers
    /// with retain as published.
    pub fn publish_copy(
        &self,
        message: Arc<Message>,
        registry: &Registry,
        shed_qos0: bool,
    ) -> Routed {
        let mut routed = Routed::default();
        let mut targets: Vec<Target> = Vec::new();
        // Filters that gave targets: with one, no session is there twice (no merging).
        let (mut filters, mut last_filter) = (0, None);
        {
            let trie = self.trie.read();
            trie.for_each_match_by_filter(&message.topic, |filter, _, sub| {
                // MQTT 5.0 no local: not back to the session that published it.
                if sub.options.no_local
                    && message.publisher.as_deref() == Some(&*sub.handle.client_id)
                {
                    return;
                }
                if last_filter != Some(filter) {
                    (filters, last_filter) = (filters + 1, Some(filter));
                }
                targets.push(Target {
                    handle: sub.handle.clone(),
                    qos: message.qos.min(sub.options.qos),
                    // MQTT 5.0 retain as published: the retain flag as published.
                    retain: sub.options.retain_as_published && message.retain,
                    subscription_ids: sub.options.subscription_id.into_iter().collect(),
                });
            });
        }
        if self.acl.is_active() {
            targets.retain(|t| self.may_receive(&t.handle, &message.topic));
        }
        // A direct message was checked as the publisher's PUBLISH to the client id.
        if let Some(direct) = registry.get(&message.topic) {
            filters += 1;
            targets.push(Target {
                handle: direct,
                qos: message.qos,
                retain: false,
                subscription_ids: Vec::new(),
            });
        }
        // In a cluster, the cluster layer chooses the node (and calls `deliver_shared`).
        let shared = if !self.hooks.is_clustered() {
            self.shared_targets(&message)
        } else {
            Vec::new()
        };
        if filters > 1 {
            targets = merge_overlapping(targets);
        }
        for target in targets {
            let delivery = Delivery {
                message: message.clone(),
                qos: target.qos,
                retain: target.retain,
                share: None,
                subscription_ids: target.subscription_ids,
            };
            routed.count(deliver(&target.handle, delivery, shed_qos0));
        }
        // A shared subscription is a subscription of its own: no merging with the others,
        // and its copy carries its own subscription identifier (MQTT-3.3.4-5).
        for (sub, share) in shared {
            let delivery = Delivery {
                qos: message.qos.min(sub.options.qos),
                message: message.clone(),
                retain: false,
                share: Some(share),
                subscription_ids: sub.options.subscription_id.into_iter().collect(),
            };
            routed.count(deliver(&sub.handle, delivery, shed_qos0));
        }
        routed
    }
}

/// One session a message goes to, through one of its subscriptions (or as a direct message).
struct Target {
    handle: Arc<SessionHandle>,
    qos: QoS,
    retain: bool,
    subscription_ids: Vec<u32>,
}

/// One target per session: overlapping subscriptions deliver once, at the highest QoS
/// (MQTT-3.3.5-1), with the retain flag if any of them keeps it, and with the subscription
/// identifiers of all of them (MQTT-3.3.4-4).
fn merge_overlapping(mut targets: Vec<Target>) -> Vec<Target> {
    if targets.len() < 2 {
        return targets;
    }
    targets.sort_by_key(|t| Arc::as_ptr(&t.handle));
    // In place: a fan-out to many sessions does not build a second list.
    targets.dedup_by(|later, kept| {
        if !Arc::ptr_eq(&later.handle, &kept.handle) {
            return false;
        }
        kept.qos = kept.qos.max(later.qos);
        kept.retain |= later.retain;
        kept.subscription_ids.append(&mut later.subscription_ids);
        true
    });
    targets
}

impl Router {
    /// One member of each local share group matching the message, with its group.
    fn shared_targets(&self, message: &Message) -> Vec<(Subscriber, Arc<str>)> {
        let mut shared = self.shared.lock();
        if shared.is_empty() {
            return Vec::new();
        }
        shared
            .matching(&message.topic)
            .into_iter()
            .filter_map(|share| shared.pick(&share).map(|sub| (sub, share)))
            .filter(|(sub, _)| self.may_receive(&sub.handle, &message.topic))
            .collect()
    }

    /// Gives a message that a member of group `share` left unacknowledged to a member that
    /// is online here; false when the group has none here.
    pub fn redeliver_shared(&self, share: &Arc<str>, message: Arc<Message>) -> bool {
        let sub = self.shared.lock().pick_online(share);
        let Some(sub) = sub else { return false };
        if !self.may_receive(&sub.handle, &message.topic) {
            return false;
        }
        let delivery = Delivery {
            qos: message.qos.min(sub.options.qos),
            message,
            retain: false,
            share: Some(share.clone()),
            subscription_ids: sub.options.subscription_id.into_iter().collect(),
        };
        let topic = delivery.message.topic.clone();
        let delivered = deliver(&sub.handle, delivery, false);
        if let Ok(d) = &delivered {
            report_unstored(
                d.store_error.as_ref(),
                &sub.handle.client_id,
                &topic,
                "shared message handed over",
            );
        }
        delivered.is_ok()
    }

    /// Delivers `message` to the member of share group `share` (`$share/GROUP/FILTER`)
    /// whose turn it is, if the group has members here: the cluster layer chose this node.
    pub fn deliver_shared(&self, share: &str, message: Arc<Message>, shed_qos0: bool) -> Routed {
        let mut routed = Routed::default();
        let sub = self.shared.lock().pick(share);
        if let Some(sub) = sub.filter(|s| self.may_receive(&s.handle, &message.topic)) {
            let delivery = Delivery {
                qos: message.qos.min(sub.options.qos),
                message,
                retain: false,
                share: Some(share.into()),
                subscription_ids: sub.options.subscription_id.into_iter().collect(),
            };
            routed.count(deliver(&sub.handle, delivery, shed_qos0));
        }
        routed
    }
}

/// What `deliver` did with one message for one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// Older messages dropped to make room.
    pub dropped: usize,
    /// Whether the message went to the store with the session.
    pub stored: bool,
    /// Why the session's store write failed, if it did: the copy is queued in memory only.
    pub store_error: Option<Arc<str>>,
}

/// Why `deliver` did not queue a QoS 0 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotQueued {
    /// The client is away.
    Away,
    /// The memory alarm is on and the client has a backlog.
    Shed,
}

/// Queues one delivery in one session and wakes its connection. An error when a QoS 0
/// message was not queued: for an absent client, or with `shed_qos0` (the memory alarm)
/// behind a backlog.
pub fn deliver(
    handle: &SessionHandle,
    delivery: Delivery,
    shed_qos0: bool,
) -> Result<Delivered, NotQueued> {
    let (dropped, stored, report, store_error, wake) = {
        let mut slot = handle.lock();
        if delivery.qos == QoS::AtMostOnce {
            if !slot.is_online() {
                return Err(NotQueued::Away);
            }
            if shed_qos0 && slot.session.queued() > 0 {
                return Err(NotQueued::Shed);
            }
        }
        let stored = delivery.qos != QoS::AtMostOnce && slot.session.is_persistent();
        let away = stored && !slot.is_online();
        let refusal = away
            .then(|| {
                handle
                    .offline_budget()
                    .refusal(delivery.message.cost(), Instant::now())
            })
            .flatten();
        if let Some(why) = refusal {
            // The node holds enough for absent clients, or its disk is nearly full.
            drop(slot);
            refused_offline(handle, why);
            return Ok(Delivered {
                dropped: 1,
                stored: false,
                store_error: None,
            });
        }
        // Only a queue that was empty needs a wake-up: the connection drains the whole queue
        // on every turn of its loop, and a non-empty queue means a wake-up is already on its
        // way, or the connection is held by its in-flight window or its socket (a PUBACK or a
        // write wakes it then), or the client is away. A wake-up per message made the
        // connection turn once per message and contend for this lock with the publisher.
        let wake = slot.session.queued() == 0;
        let dropped = slot.session.enqueue(delivery).dropped;
        if away {
            slot.recount_offline();
        }
        // Written now, under the session's lock, and the result goes back to the publisher.
        let store_error = slot.submit().err().map(|e| Arc::from(e.to_string()));
        let report = if dropped > 0 {
            slot.note_drops(dropped, Instant::now(), DROP_REPORT_EVERY)
                .map(|n| (n, slot.session.dropped_total()))
        } else {
            None
        };
        (dropped, stored, report, store_error, wake)
    };
    if let Some((dropped, total)) = report {
        tracing::warn!(
            target: "warning",
            client = %handle.client_id,
            dropped,
            dropped_total = total,
            "session queue full: dropped oldest messages"
        );
    }
    if wake {
        handle.notify.notify_one();
    }
    Ok(Delivered {
        dropped,
        stored,
        store_error,
    })
}

/// Reports a store write that failed for a copy no acknowledgement waits on (a will, a
/// retained message sent on SUBSCRIBE, a copy handed over or delivered for a share group):
/// an `error` event, since no publisher can be refused.
pub fn report_unstored(error: Option<&Arc<str>>, client: &str, topic: &str, what: &str) {
    if let Some(error) = error {
        tracing::error!(target: "error", client, topic, error = %error, what,
            "message not stored");
    }
}

/// A message not queued for an absent client because the node's offline budget is spent:
/// a `warning` at most once a second, with the count.
fn refused_offline(handle: &SessionHandle, why: &'static str) {
    let budget = handle.offline_budget();
    if let Some(refused) = budget.note_refused(Instant::now()) {
        tracing::warn!(
            target: "warning",
            client = %handle.client_id,
            refused,
            refused_total = budget.refused_total(),
            queued_bytes = budget.used(),
            limit = why,
            "offline queues full: message not queued for an absent client"
        );
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::mqtt::message::MessageProperties;
    use crate::mqtt::packet::Publish;
    use crate::mqtt::session::SessionLimits;

    fn limits() -> SessionLimits {
        SessionLimits {
            max_queued_messages: 100,
            max_queued_bytes: 100_000,
            inflight_window: 10,
        }
    }

    fn msg(topic: &str, qos: QoS) -> Arc<Message> {
        Arc::new(Message {
            topic: topic.into(),
            payload: Bytes::from_static(b"p"),
            qos,
            retain: false,
            properties: MessageProperties::default(),
            trace: None,
            publisher: None,
            expires_at: None,
            sampled_at: None,
        })
    }

    fn opts(qos: QoS) -> SubscriptionOptions {
        SubscriptionOptions {
            qos,
            ..Default::default()
        }
    }

    fn drain(h: &SessionHandle) -> Vec<Publish> {
        let mut slot = h.lock();
        std::iter::from_fn(|| slot.session.poll_publish(Instant::now())).collect()
    }

    #[test]
    fn overlapping_subscriptions_deliver_once_at_highest_qos() {
        let (router, registry, retained) = (
            Router::default(),
            Registry::default(),
            RetainedStore::default(),
        );
        let a = registry.attach("a", true, 1, limits()).handle;
        assert!(router.subscribe(&a, "x/+", opts(QoS::AtMostOnce)));
        assert!(router.subscribe(&a, "x/#", opts(QoS::ExactlyOnce)));
        assert!(router.subscribe(&a, "x/y", opts(QoS::AtLeastOnce)));
        let routed = router.publish(msg("x/y", QoS::ExactlyOnce), &registry, &retained, false);
        assert_eq!(routed.delivered, 1);
        let out = drain(&a);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].qos, QoS::ExactlyOnce);
    }

    #[test]
    fn qos_is_downgraded_to_the_subscription() {
        let (router, registry, retained) = (
            Router::default(),
            Registry::default(),
            RetainedStore::default(),
        );
        let a = registry.attach("a", true, 1, limits()).handle;
        router.subscribe(&a, "t", opts(QoS::AtLeastOnce));
        router.publish(msg("t", QoS::ExactlyOnce), &registry, &retained, false);
        assert_eq!(drain(&a)[0].qos, QoS::AtLeastOnce);
    }

    #[test]
    fn direct_message_to_a_client_id() {
        let (router, registry, retained) = (
            Router::default(),
            Registry::default(),
            RetainedStore::default(),
        );
        let c1 = registry.attach("c1", true, 1, limits()).handle;
        let routed = router.publish(msg("c1", QoS::AtLeastOnce), &registry, &retained, false);
        assert_eq!(routed.delivered, 1);
        assert_eq!(&*drain(&c1)[0].topic, "c1");
        // Subscribed to its own id as well: still once.
        router.subscribe(&c1, "c1", opts(QoS::AtMostOnce));
        router.publish(msg("c1", QoS::AtLeastOnce), &registry, &retained, false);
        let out = drain(&c1);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].qos, QoS::AtLeastOnce);
    }

    #[test]
    fn offline_sessions_get_qos1_but_not_qos0() {
        let (router, registry, retained) = (
            Router::default(),
            Registry::default(),
            RetainedStore::default(),
        );
        let a = registry.attach("a", false, 1, limits()).handle;
        router.subscribe(&a, "t", opts(QoS::AtLeastOnce));
        registry.detach(&a, 1, Instant::now());
        let r0 = router.publish(msg("t", QoS::AtMostOnce), &registry, &retained, false);
        assert_eq!(r0.skipped_offline, 1);
        let r1 = router.publish(msg("t", QoS::AtLeastOnce), &registry, &retained, false);
        assert_eq!(r1.delivered, 1);
        assert_eq!(a.lock().session.queued(), 1);
    }

    #[test]
    fn shedding_skips_qos0_behind_a_backlog_only() {
        let (router, registry, retained) = (
            Router::default(),
            Registry::default(),
            RetainedStore::default(),
        );
        let a = registry.attach("a", true, 1, limits()).handle;
        router.subscribe(&a, "t", opts(QoS::AtLeastOnce));
        let r = router.publish(msg("t", QoS::AtMostOnce), &registry, &retained, true);
        assert_eq!(r.delivered, 1, "no backlog: QoS 0 still goes");
        let r = router.publish(msg("t", QoS::AtMostOnce), &registry, &retained, true);
        assert_eq!(r.shed, 1, "behind a backlog it is shed");
        assert_eq!(r.skipped_offline, 0);
        let r = router.publish(msg("t", QoS::AtLeastOnce), &registry, &retained, true);
        assert_eq!(r.delivered, 1, "QoS 1 is never shed");
    }

    #[test]
    fn a_share_group_takes_turns_and_ordinary_subscribers_get_every_message() {
        let (router, registry, retained) = (
            Router::default(),
            Registry::default(),
            RetainedStore::default(),
        );
        let members: Vec<_> = ["m1", "m2", "m3"]
            .iter()
            .map(|id| registry.attach(id, true, 1, limits()).handle)
            .collect();
        for m in &members {
            assert!(router.subscribe(m, "$share/g/t/+", opts(QoS::AtLeastOnce)));
        }
        let plain = registry.attach("plain", true, 1, limits()).handle;
        router.subscribe(&plain, "t/#", opts(QoS::AtLeastOnce));
        for _ in 0..6 {
            router.publish(msg("t/x", QoS::AtLeastOnce), &registry, &retained, false);
        }
        for m in &members {
            assert_eq!(drain(m).len(), 2, "{}: its turns", m.client_id);
        }
        assert_eq!(drain(&plain).len(), 6);
        // A member that leaves gets no more.
        assert!(router.unsubscribe(&members[0], "$share/g/t/+"));
        for _ in 0..4 {
            router.publish(msg("t/x", QoS::AtLeastOnce), &registry, &retained, false);
        }
        assert!(drain(&members[0]).is_empty());
        assert_eq!(drain(&members[1]).len() + drain(&members[2]).len(), 4);
    }

    #[test]
    fn a_share_group_passes_over_members_that_are_away() {
        let (router, registry, retained) = (
            Router::default(),
            Registry::default(),
            RetainedStore::default(),
        );
        let away = registry.attach("away", false, 1, limits()).handle;
        let here = registry.attach("here", true, 2, limits()).handle;
        router.subscribe(&away, "$share/g/t", opts(QoS::AtLeastOnce));
        router.subscribe(&here, "$share/g/t", opts(QoS::AtLeastOnce));
        registry.detach(&away, 1, Instant::now());
        for _ in 0..4 {
            router.publish(msg("t", QoS::AtLeastOnce), &registry, &retained, false);
        }
        assert_eq!(drain(&here).len(), 4);
        assert_eq!(away.lock().session.queued(), 0);
    }

    fn with_id(qos: QoS, id: u32) -> SubscriptionOptions {
        SubscriptionOptions {
            subscription_id: Some(id),
            ..opts(qos)
        }
    }

    #[test]
    fn one_copy_for_overlapping_subscriptions_carries_every_identifier() {
        let (router, registry, retained) = (
            Router::default(),
            Registry::default(),
            RetainedStore::default(),
        );
        let a = registry.attach("a", true, 1, limits()).handle;
        router.subscribe(&a, "x/+", with_id(QoS::AtMostOnce, 7));
        router.subscribe(&a, "x/#", with_id(QoS::AtLeastOnce, 3));
        router.subscribe(&a, "x/y", opts(QoS::AtMostOnce));
        let b = registry.attach("b", true, 1, limits()).handle;
        router.subscribe(&b, "x/y", opts(QoS::AtLeastOnce));
        router.publish(msg("x/y", QoS::AtLeastOnce), &registry, &retained, false);
        let out = drain(&a);
        assert_eq!(out.len(), 1, "one copy (MQTT-3.3.5-1)");
        let mut ids = out[0].properties.subscription_identifiers.clone();
        ids.sort_unstable();
        assert_eq!(ids, [3, 7], "MQTT-3.3.4-4");
        assert_eq!(out[0].qos, QoS::AtLeastOnce);
        let out = drain(&b);
        assert!(out[0].properties.subscription_identifiers.is_empty());
    }

    #[test]
    fn a_shared_subscriptions_copy_carries_its_own_identifier() {
        let (router, registry, retained) = (
            Router::default(),
            Registry::default(),
            RetainedStore::default(),
        );
        let a = registry.attach("a", true, 1, limits()).handle;
        router.subscribe(&a, "$share/g/t", with_id(QoS::AtLeastOnce, 9));
        router.subscribe(&a, "t", with_id(QoS::AtLeastOnce, 4));
        router.publish(msg("t", QoS::AtLeastOnce), &registry, &retained, false);
        let mut ids: Vec<Vec<u32>> = drain(&a)
            .into_iter()
            .map(|p| p.properties.subscription_identifiers)
            .collect();
        ids.sort();
        assert_eq!(
            ids,
            [vec![4], vec![9]],
            "two copies, each its own (MQTT-3.3.4-5)"
        );
    }

    #[test]
    fn a_copy_from_another_node_keeps_its_retain_flag_and_is_not_stored() {
        let (router, registry, retained) = (
            Router::default(),
            Registry::default(),
            RetainedStore::default(),
        );
        let keep = registry.attach("keep", true, 1, limits()).handle;
        router.subscribe(
            &keep,
            "t",
            SubscriptionOptions {
                retain_as_published: true,
                ..opts(QoS::AtLeastOnce)
            },
        );
        let plain = registry.attach("plain", true, 1, limits()).handle;
        router.subscribe(&plain, "t", opts(QoS::AtLeastOnce));
        let mut m = (*msg("t", QoS::AtLeastOnce)).clone();
        m.retain = true;
        let routed = router.publish_copy(Arc::new(m), &registry, false);
        assert_eq!(routed.delivered, 2);
        assert_eq!(routed.retained, None);
        assert!(
            retained.is_empty(),
            "the retained store is replicated apart"
        );
        assert!(drain(&keep)[0].retain, "retain as published");
        assert!(!drain(&plain)[0].retain);
    }

    #[test]
    fn deliveries_follow_the_topic_rules_and_their_changes() {
        use crate::broker::topic_acl::{Rule, RuleSet};
        let rules = |r: &[&str]| RuleSet::new(r.iter().map(|t| t.parse::<Rule>().unwrap()));
        let acl = Arc::new(TopicAcl::default());
        acl.replace(rules(&["allow both devices/%c/#"]));
        acl.set_default(false);
        let router = Router::new(acl.clone(), Arc::new(LocalOnly));
        let (registry, retained) = (Registry::default(), RetainedStore::default());
        let d1 = registry.attach("d1", true, 1, limits()).handle;
        router.subscribe(&d1, "#", opts(QoS::AtLeastOnce));
        router.subscribe(&d1, "$share/g/devices/#", opts(QoS::AtLeastOnce));
        for t in ["devices/d2/x", "devices/d1/x", "other"] {
            router.publish(msg(t, QoS::AtLeastOnce), &registry, &retained, false);
        }
        let topics: Vec<String> = drain(&d1).iter().map(|p| p.topic.to_string()).collect();
        assert_eq!(
            topics,
            ["devices/d1/x", "devices/d1/x"],
            "plain and shared copy"
        );
        // A direct message was checked as its publisher's PUBLISH: it is not withheld.
        let routed = router.publish(msg("d1", QoS::AtLeastOnce), &registry, &retained, false);
        assert_eq!(routed.delivered, 1);
        drain(&d1);
        // A rule change reaches the subscription that exists.
        acl.replace(rules(&["allow both #"]));
        router.publish(
            msg("devices/d2/x", QoS::AtLeastOnce),
            &registry,
            &retained,
            false,
        );
        assert_eq!(drain(&d1).len(), 2, "plain and shared copy");
    }

    #[test]
    fn an_ended_session_cannot_subscribe() {
        let (router, registry) = (Router::default(), Registry::default());
        let old = registry.attach("a", true, 1, limits()).handle;
        let _new = registry.attach("a", true, 2, limits()).handle;
        assert!(!router.subscribe(&old, "t", opts(QoS::AtMostOnce)));
        assert_eq!(router.subscription_count(), 0);
    }

    #[test]
    fn unsubscribe_of_a_replaced_session_keeps_the_new_one() {
        let (router, registry) = (Router::default(), Registry::default());
        let old = registry.attach("a", false, 1, limits()).handle;
        let new = registry.attach("a", true, 2, limits()).handle;
        router.subscribe(&new, "t", opts(QoS::AtMostOnce));
        assert!(!router.unsubscribe(&old, "t"));
        assert_eq!(router.subscription_count(), 1);
    }
}
