//! Shared subscriptions: the sessions subscribed to `$share/GROUP/FILTER` form a group, and
//! each message matching FILTER goes to one of them, in turn (MQTT 5.0 section 4.8.2; 3.1.1
//! clients may use them too).

use std::collections::HashMap;
use std::sync::Arc;

use super::registry::SessionHandle;
use super::router::{report_unstored, Subscriber};
use super::Broker;
use crate::mqtt::message::Delivery;
use crate::mqtt::trie::SubscriptionTrie;

/// Hands the messages a member left unacknowledged (`Session::take_shared`) to other members
/// of their groups: one online here if there is one, else on another node, else any member
/// (an away member's queue keeps it for its return).
pub(crate) fn hand_over(broker: &Broker, from: &str, deliveries: Vec<Delivery>) {
    if deliveries.is_empty() {
        return;
    }
    let (mut here, mut elsewhere, mut lost) = (0usize, 0usize, 0usize);
    for d in deliveries {
        let Some(share) = d.share else { continue };
        if broker.router.redeliver_shared(&share, d.message.clone()) {
            here += 1;
        } else if broker.cluster.forward_share(&share, &d.message) {
            elsewhere += 1;
        } else {
            let topic = d.message.topic.clone();
            let routed = broker.router.deliver_shared(&share, d.message, false);
            report_unstored(
                routed.store_error.as_ref(),
                from,
                &topic,
                "shared message handed over",
            );
            if routed.delivered > 0 {
                here += 1;
            } else {
                lost += 1;
            }
        }
    }
    tracing::info!(target: "resource", client = from, here, elsewhere,
        "unacknowledged shared-subscription messages handed to other members");
    if lost > 0 {
        tracing::warn!(target: "warning", client = from, lost,
            "shared-subscription messages dropped: their group has no other member");
    }
}

/// Every share group of the node.
#[derive(Debug, Default)]
pub struct SharedGroups {
    /// Groups by the filter they match, keyed by the whole `$share/GROUP/FILTER`.
    trie: SubscriptionTrie<Arc<str>, ()>,
    groups: HashMap<Arc<str>, Group>,
}

/// The members of one group, and whose turn it is.
#[derive(Debug, Default)]
struct Group {
    members: Vec<Subscriber>,
    next: usize,
}

impl SharedGroups {
    /// Whether there is no group.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Adds (or replaces) `sub` in the group `share` whose filter is `inner`; true when new.
    pub fn add(&mut self, share: &str, inner: &str, sub: Subscriber) -> bool {
        let key: Arc<str> = share.into();
        self.trie.insert(inner, key.clone(), ());
        let group = self.groups.entry(key).or_default();
        match group
            .members
            .iter_mut()
            .find(|m| m.handle.client_id == sub.handle.client_id)
        {
            Some(m) => {
                *m = sub;
                false
            }
            None => {
                group.members.push(sub);
                true
            }
        }
    }

    /// Removes `handle` from the group `share` (filter `inner`); true if it was a member.
    pub fn remove(&mut self, share: &str, inner: &str, handle: &Arc<SessionHandle>) -> bool {
        let Some(group) = self.groups.get_mut(share) else {
            return false;
        };
        let before = group.members.len();
        group.members.retain(|m| !Arc::ptr_eq(&m.handle, handle));
        let removed = group.members.len() < before;
        if group.members.is_empty() {
            self.groups.remove(share);
            self.trie.remove(inner, &Arc::from(share));
        }
        removed
    }

    /// Calls `f` with every group and its number of members.
    pub fn for_each_group(&self, mut f: impl FnMut(&str, usize)) {
        for (share, group) in &self.groups {
            f(share, group.members.len());
        }
    }

    /// The groups whose filter matches `topic`.
    pub fn matching(&self, topic: &str) -> Vec<Arc<str>> {
        let mut shares = Vec::new();
        self.trie
            .for_each_match(topic, |share, ()| shares.push(share.clone()));
        shares
    }

    /// The member of `share` whose turn it is: the next one online (any member if none is).
    pub fn pick(&mut self, share: &str) -> Option<Subscriber> {
        self.choose(share, false)
    }

    /// The member of `share` whose turn it is among those online; none if none is.
    pub fn pick_online(&mut self, share: &str) -> Option<Subscriber> {
        self.choose(share, true)
    }

    fn choose(&mut self, share: &str, online_only: bool) -> Option<Subscriber> {
        let group = self.groups.get_mut(share)?;
        let n = group.members.len();
        let start = group.next % n;
        let online = (0..n)
            .map(|i| (start + i) % n)
            .find(|&i| group.members[i].handle.lock().is_online());
        let chosen = match online {
            Some(i) => i,
            None if online_only => return None,
            None => start,
        };
        group.next = chosen + 1;
        Some(group.members[chosen].clone())
    }
}
