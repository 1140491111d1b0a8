//! The subscription trie: which subscriptions match a topic, in time proportional to the
//! topic's levels rather than to the number of subscriptions.
//!
//! The trie is generic over a client key `K` and a per-subscription value `V` and knows nothing
//! else about the broker; it does no locking. Its answers agree with
//! [`topic::matches`](crate::topic::matches), including the `$` rule (MQTT-4.7.2-1).
//!
//! Every walk over it (insert, remove, lookup, counting, drop) is a loop, not a recursion, so
//! a filter or topic with tens of thousands of levels cannot overflow the stack.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;

/// Subscriptions keyed by (topic filter, client key), each carrying a value.
///
/// ### Invariants
///
/// - A filter's path is its levels up to its first `#`: a plain level leads to `children`,
///   `+` to `plus`. A filter ending in `#` is stored in `multi` of the node its path leads to,
///   any other filter in `exact`.
/// - No node but the root is empty: [`remove`](Self::remove) prunes the nodes it empties, so
///   memory follows the live subscriptions, not the churn.
/// - `len` is the number of (filter, key) entries across all nodes.
///
/// Filters should be valid ([`is_valid_topic_filter`](crate::topic::is_valid_topic_filter));
/// an invalid one is stored as [`topic::matches`](crate::topic::matches) reads it (a `#`
/// level ends it, other levels are literal) and never causes a panic.
pub struct SubscriptionTrie<K, V> {
    root: Node<K, V>,
    len: usize,
}

/// One level of the trie.
struct Node<K, V> {
    /// Children by literal level (never `+` or `#`).
    children: HashMap<Box<str>, Self>,
    /// The `+` child.
    plus: Option<Box<Self>>,
    /// Subscribers of `<path to here>/#`.
    multi: HashMap<K, V>,
    /// Subscribers of exactly `<path to here>`.
    exact: HashMap<K, V>,
}

impl<K, V> Node<K, V> {
    fn new() -> Self {
        Self {
            children: HashMap::new(),
            plus: None,
            multi: HashMap::new(),
            exact: HashMap::new(),
        }
    }

    /// Number of child nodes, `+` included.
    fn edges(&self) -> usize {
        self.children.len() + usize::from(self.plus.is_some())
    }

    /// The child a step leads to.
    fn child(&self, step: Step<'_>) -> Option<&Self> {
        match step {
            Step::Plus => self.plus.as_deref(),
            Step::Level(level) => self.children.get(level),
        }
    }

    /// The child a step leads to, mutably.
    fn child_mut(&mut self, step: Step<'_>) -> Option<&mut Self> {
        match step {
            Step::Plus => self.plus.as_deref_mut(),
            Step::Level(level) => self.children.get_mut(level),
        }
    }

    /// The child a step leads to, created if missing.
    fn child_or_insert(&mut self, step: Step<'_>) -> &mut Self {
        match step {
            Step::Plus => self.plus.get_or_insert_with(|| Box::new(Self::new())),
            Step::Level(level) => self.children.entry(level.into()).or_insert_with(Self::new),
        }
    }

    /// Detaches the child a step leads to.
    fn take_child(&mut self, step: Step<'_>) -> Option<Self> {
        match step {
            Step::Plus => self.plus.take().map(|node| *node),
            Step::Level(level) => self.children.remove(level),
        }
    }

    /// Moves the children out onto `stack`, so that dropping `self` does not recurse.
    fn drain_into(&mut self, stack: &mut Vec<Self>) {
        stack.extend(self.children.drain().map(|(_, node)| node));
        if let Some(plus) = self.plus.take() {
            stack.push(*plus);
        }
    }
}

/// Drops a subtree without recursing.
fn dismantle<K, V>(node: Node<K, V>) {
    let mut stack = vec![node];
    while let Some(mut node) = stack.pop() {
        node.drain_into(&mut stack);
    }
}

/// One step down a filter's path.
#[derive(Clone, Copy)]
enum Step<'a> {
    /// A literal level.
    Level(&'a str),
    /// The `+` wildcard.
    Plus,
}

/// A filter split into the steps of its path and whether it ends in `#` there.
struct Path<'a> {
    /// The levels before the first `#`, or `None` if the filter starts with `#`.
    levels: Option<&'a str>,
    /// Whether the filter has a `#` level.
    multi: bool,
}

impl<'a> Path<'a> {
    fn parse(filter: &'a str) -> Self {
        let mut start = 0usize;
        for level in filter.split('/') {
            if level == "#" {
                return Self {
                    // `start` is just past a `/`, or 0 for a filter that starts with `#`.
                    levels: start.checked_sub(1).and_then(|end| filter.get(..end)),
                    multi: true,
                };
            }
            start += level.len() + 1;
        }
        Self {
            levels: Some(filter),
            multi: false,
        }
    }

    fn steps(&self) -> impl Iterator<Item = Step<'a>> {
        self.levels
            .into_iter()
            .flat_map(|levels| levels.split('/'))
            .map(|level| match level {
                "+" => Step::Plus,
                _ => Step::Level(level),
            })
    }
}

impl<K, V> SubscriptionTrie<K, V> {
    /// An empty trie.
    pub fn new() -> Self {
        Self {
            root: Node::new(),
            len: 0,
        }
    }

    /// Number of (filter, key) subscriptions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no subscriptions.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of nodes, root included (1 when empty); walks the whole trie.
    pub fn node_count(&self) -> usize {
        let mut count = 0;
        let mut stack = vec![&self.root];
        while let Some(node) = stack.pop() {
            count += 1;
            stack.extend(node.children.values());
            stack.extend(node.plus.as_deref());
        }
        count
    }

    /// Calls `f` for each subscription whose filter matches the topic name `topic`: once per
    /// matching filter, so a key subscribed through several filters is seen several times.
    pub fn for_each_match(&self, topic: &str, mut f: impl FnMut(&K, &V)) {
        self.for_each_match_by_filter(topic, |_, k, v| f(k, v));
    }

    /// As [`for_each_match`](Self::for_each_match), with a number for the filter each
    /// subscription matched through (0, 1, ...): a key is seen at most once per number, so a
    /// caller whose matches all have one number has no key twice.
    pub fn for_each_match_by_filter(&self, topic: &str, mut f: impl FnMut(usize, &K, &V)) {
        let mut filter = 0;
        let mut each = |subs: &HashMap<K, V>| {
            if !subs.is_empty() {
                subs.iter().for_each(|(k, v)| f(filter, k, v));
                filter += 1;
            }
        };
        // Wildcards in the first level of a filter do not match `$` topics (MQTT-4.7.2-1).
        let dollar = topic.starts_with('$');
        // (node, the levels still to match or `None` when all are consumed, is root)
        let mut stack: Vec<(&Node<K, V>, Option<&str>, bool)> =
            vec![(&self.root, Some(topic), true)];
        while let Some((node, rest, root)) = stack.pop() {
            let wildcards = !(root && dollar);
            if wildcards {
                each(&node.multi);
            }
            let Some(rest) = rest else {
                each(&node.exact);
                continue;
            };
            let (level, next) = match rest.split_once('/') {
                Some((level, next)) => (level, Some(next)),
                None => (rest, None),
            };
            if let Some(child) = node.children.get(level) {
                stack.push((child, next, false));
            }
            if wildcards {
                if let Some(plus) = node.plus.as_deref() {
                    stack.push((plus, next, false));
                }
            }
        }
    }
}

impl<K, V> SubscriptionTrie<K, V> {
    /// Calls `f` with every filter that has subscribers and how many it has.
    pub fn for_each_filter(&self, mut f: impl FnMut(&str, usize)) {
        let mut stack: Vec<(&Node<K, V>, Vec<&str>)> = vec![(&self.root, Vec::new())];
        while let Some((node, levels)) = stack.pop() {
            let path = levels.join("/");
            if !node.exact.is_empty() && !levels.is_empty() {
                f(&path, node.exact.len());
            }
            if !node.multi.is_empty() {
                let filter = if levels.is_empty() {
                    "#".to_owned()
                } else {
                    format!("{path}/#")
                };
                f(&filter, node.multi.len());
            }
            for (level, child) in &node.children {
                let mut next = levels.clone();
                next.push(level);
                stack.push((child, next));
            }
            if let Some(plus) = node.plus.as_deref() {
                let mut next = levels.clone();
                next.push("+");
                stack.push((plus, next));
            }
        }
    }
}

impl<K: Eq + Hash + Clone, V> SubscriptionTrie<K, V> {
    /// Subscribes `key` to `filter`; returns the value it replaces if `key` already had it.
    pub fn insert(&mut self, filter: &str, key: K, value: V) -> Option<V> {
        let path = Path::parse(filter);
        let mut node = &mut self.root;
        for step in path.steps() {
            node = node.child_or_insert(step);
        }
        let subscribers = if path.multi {
            &mut node.multi
        } else {
            &mut node.exact
        };
        let previous = subscribers.insert(key, value);
        if previous.is_none() {
            self.len += 1;
        }
        previous
    }

    /// Unsubscribes `key` from `filter`, returning its value, and prunes emptied nodes.
    pub fn remove(&mut self, filter: &str, key: &K) -> Option<V> {
        let path = Path::parse(filter);

        // Find the node and how far up the path would be left empty, without changing anything.
        // `chain` is the depth of the first of the trailing nodes that hold nothing but the
        // link to the next node on the path.
        let mut node = &self.root;
        let mut depth = 0;
        let mut chain = None;
        for step in path.steps() {
            let next = node.child(step)?;
            if depth > 0 {
                let link = node.edges() == 1 && node.exact.is_empty() && node.multi.is_empty();
                chain = if link { chain.or(Some(depth)) } else { None };
            }
            node = next;
            depth += 1;
        }
        let (target, other) = if path.multi {
            (&node.multi, &node.exact)
        } else {
            (&node.exact, &node.multi)
        };
        if !target.contains_key(key) {
            return None;
        }
        let emptied = target.len() == 1 && other.is_empty() && node.edges() == 0;
        let prune_at = (emptied && depth > 0).then(|| chain.unwrap_or(depth));

        // Take the value out.
        let mut node = &mut self.root;
        for step in path.steps() {
            node = node.child_mut(step)?;
        }
        let value = if path.multi {
            node.multi.remove(key)
        } else {
            node.exact.remove(key)
        }?;
        self.len -= 1;

        // Cut the emptied chain off its parent.
        if let Some(prune_at) = prune_at {
            let mut node = &mut self.root;
            for (i, step) in path.steps().enumerate() {
                if i + 1 == prune_at {
                    if let Some(cut) = node.take_child(step) {
                        dismantle(cut);
                    }
                    break;
                }
                let Some(next) = node.child_mut(step) else {
                    break;
                };
                node = next;
            }
        }
        Some(value)
    }
}

impl<K, V> Default for SubscriptionTrie<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> Drop for SubscriptionTrie<K, V> {
    fn drop(&mut self) {
        dismantle(std::mem::replace(&mut self.root, Node::new()));
    }
}

impl<K, V> fmt::Debug for SubscriptionTrie<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriptionTrie")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::topic::tests::MATCH_CASES;
    use crate::topic::{is_valid_topic_filter, is_valid_topic_name, matches};

    /// The (key, value) pairs visited for `topic`, sorted.
    fn matched<K: Ord + Clone, V: Ord + Clone>(
        trie: &SubscriptionTrie<K, V>,
        topic: &str,
    ) -> Vec<(K, V)> {
        let mut out = Vec::new();
        trie.for_each_match(topic, |k, v| out.push((k.clone(), v.clone())));
        out.sort();
        out
    }

    #[test]
    fn spec_table_one_filter_at_a_time() {
        for &(filter, topic, expected) in MATCH_CASES {
            let mut trie = SubscriptionTrie::new();
            trie.insert(filter, 1, ());
            let hit = !matched(&trie, topic).is_empty();
            assert_eq!(hit, expected, "{filter:?} vs {topic:?}");
        }
    }

    #[test]
    fn matches_are_numbered_by_filter() {
        let mut trie = SubscriptionTrie::new();
        for (filter, key) in [("a/b", 1), ("a/b", 2), ("a/+", 1), ("#", 3), ("x/y", 4)] {
            trie.insert(filter, key, filter);
        }
        let mut seen = Vec::new();
        trie.for_each_match_by_filter("a/b", |n, k, v| seen.push((*v, n, *k)));
        seen.sort();
        // One number per filter, shared by its keys; filters without a match take none.
        let numbers = |f: &str| -> Vec<usize> {
            seen.iter()
                .filter(|(v, ..)| *v == f)
                .map(|(_, n, _)| *n)
                .collect()
        };
        assert_eq!(seen.len(), 4);
        assert_eq!(numbers("a/b").len(), 2);
        assert_eq!(numbers("a/b")[0], numbers("a/b")[1]);
        let mut distinct: Vec<usize> = seen.iter().map(|(_, n, _)| *n).collect();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct, vec![0, 1, 2]);
    }

    #[test]
    fn spec_table_all_filters_at_once() {
        let mut trie = SubscriptionTrie::new();
        for (i, &(filter, _, _)) in MATCH_CASES.iter().enumerate() {
            assert_eq!(trie.insert(filter, i, filter), None);
        }
        assert_eq!(trie.len(), MATCH_CASES.len());
        for &(_, topic, _) in MATCH_CASES {
            let expected: Vec<_> = MATCH_CASES
                .iter()
                .enumerate()
                .filter(|(_, &(filter, _, _))| matches(filter, topic))
                .map(|(i, &(filter, _, _))| (i, filter))
                .collect();
            assert_eq!(matched(&trie, topic), expected, "topic {topic:?}");
        }
    }

    #[test]
    fn multi_level_wildcard_matches_parent() {
        let mut trie = SubscriptionTrie::new();
        trie.insert("sport/#", "k", 0);
        assert_eq!(matched(&trie, "sport"), [("k", 0)]);
        assert_eq!(matched(&trie, "sport/tennis/player1"), [("k", 0)]);
        assert_eq!(matched(&trie, "sports"), []);
    }

    #[test]
    fn dollar_topics_skip_root_wildcards() {
        let mut trie = SubscriptionTrie::new();
        trie.insert("#", 1, ());
        trie.insert("+/monitor/Clients", 2, ());
        trie.insert("$SYS/#", 3, ());
        trie.insert("$SYS/monitor/+", 4, ());
        trie.insert("+/#", 5, ());
        let keys = |topic| {
            matched(&trie, topic)
                .into_iter()
                .map(|(k, ())| k)
                .collect::<Vec<_>>()
        };
        assert_eq!(keys("$SYS/monitor/Clients"), [3, 4]);
        assert_eq!(keys("SYS/monitor/Clients"), [1, 2, 5]);
    }

    #[test]
    fn insert_replace_remove() {
        let mut trie = SubscriptionTrie::default();
        assert!(trie.is_empty());
        assert_eq!(trie.insert("a/+", "c1", 0), None);
        assert_eq!(trie.insert("a/+", "c1", 1), Some(0));
        assert_eq!(trie.len(), 1);
        assert_eq!(trie.insert("a/+", "c2", 2), None);
        assert_eq!(trie.insert("a/#", "c1", 3), None);
        assert_eq!(trie.len(), 3);
        assert_eq!(matched(&trie, "a/b"), [("c1", 1), ("c1", 3), ("c2", 2)]);

        assert_eq!(trie.remove("a/+", &"c3"), None);
        assert_eq!(trie.remove("a/b", &"c1"), None);
        assert_eq!(trie.remove("x/y/z", &"c1"), None);
        assert_eq!(trie.remove("a/+", &"c1"), Some(1));
        assert_eq!(trie.remove("a/+", &"c1"), None);
        assert_eq!(trie.len(), 2);
        assert_eq!(matched(&trie, "a/b"), [("c1", 3), ("c2", 2)]);
        assert_eq!(trie.remove("a/#", &"c1"), Some(3));
        assert_eq!(trie.remove("a/+", &"c2"), Some(2));
        assert!(trie.is_empty());
        assert_eq!(trie.node_count(), 1);
        assert_eq!(matched(&trie, "a/b"), []);
    }

    #[test]
    fn pruning_keeps_shared_nodes() {
        let mut trie = SubscriptionTrie::new();
        trie.insert("a/b/c/d", 1, ());
        trie.insert("a/b", 2, ());
        trie.insert("a/b/#", 3, ());
        trie.insert("a/+/c", 4, ());
        // root, a, b, c, d, +, c
        assert_eq!(trie.node_count(), 7);
        assert_eq!(trie.remove("a/b/c/d", &1), Some(()));
        // c and d go; b still holds 2 and 3.
        assert_eq!(trie.node_count(), 5);
        assert_eq!(trie.remove("a/b", &2), Some(()));
        assert_eq!(trie.node_count(), 5);
        assert_eq!(trie.remove("a/b/#", &3), Some(()));
        assert_eq!(trie.node_count(), 4);
        assert_eq!(trie.remove("a/+/c", &4), Some(()));
        assert_eq!(trie.node_count(), 1);
    }

    #[test]
    fn pruning_after_churn() {
        let filters = [
            "#", "+", "/", "a//b", "a/+/#", "$SYS/#", "a/b/c", "+/+/+/+", "a/b/",
        ];
        let mut trie = SubscriptionTrie::new();
        for round in 0..3 {
            for (i, filter) in filters.iter().enumerate() {
                for key in 0..4 {
                    trie.insert(filter, key, round * 100 + i);
                }
            }
            assert_eq!(trie.len(), filters.len() * 4);
            for filter in filters.iter().rev() {
                for key in 0..4 {
                    assert!(trie.remove(filter, &key).is_some(), "{filter:?} {key}");
                }
            }
            assert!(trie.is_empty());
            assert_eq!(trie.node_count(), 1);
        }
    }

    #[test]
    fn many_keys_on_one_filter() {
        let mut trie = SubscriptionTrie::new();
        for key in 0..1000u32 {
            trie.insert("sensors/+/temp", key, key * 2);
        }
        assert_eq!(trie.len(), 1000);
        assert_eq!(trie.node_count(), 4);
        let mut seen = Vec::new();
        trie.for_each_match("sensors/kitchen/temp", |&k, &v| {
            assert_eq!(v, k * 2);
            seen.push(k);
        });
        seen.sort_unstable();
        assert_eq!(seen, (0..1000).collect::<Vec<_>>());
        for key in (0..1000).step_by(2) {
            assert_eq!(trie.remove("sensors/+/temp", &key), Some(key * 2));
        }
        let mut count = 0;
        trie.for_each_match("sensors/x/temp", |k, _| {
            assert_eq!(k % 2, 1);
            count += 1;
        });
        assert_eq!(count, 500);
        assert_eq!(trie.node_count(), 4);
    }

    #[test]
    fn one_key_through_several_filters_is_visited_per_filter() {
        let mut trie = SubscriptionTrie::new();
        for filter in ["a/b", "a/+", "+/b", "a/#", "#"] {
            trie.insert(filter, "c", filter);
        }
        assert_eq!(matched(&trie, "a/b").len(), 5);
        assert_eq!(matched(&trie, "a/c").len(), 3);
    }

    #[test]
    fn deep_filters_do_not_overflow_the_stack() {
        // 65536 empty levels, the most a 65535-byte filter can have; a recursive walk or
        // drop would overflow a 2 MiB test thread stack.
        let deep = "/".repeat(65535);
        let deep_multi = format!("{}#", "/".repeat(65534));
        let mut trie = SubscriptionTrie::new();
        trie.insert(&deep, 1, ());
        trie.insert(&deep_multi, 2, ());
        assert_eq!(matched(&trie, &deep), [(1, ()), (2, ())]);
        assert_eq!(trie.node_count(), 65537);
        assert_eq!(trie.remove(&deep, &1), Some(()));
        assert_eq!(trie.node_count(), 65535);
        assert_eq!(trie.remove(&deep_multi, &2), Some(()));
        assert_eq!(trie.node_count(), 1);
        trie.insert(&deep, 3, ());
        drop(trie);
    }

    #[test]
    fn invalid_filters_are_read_like_matches_reads_them() {
        let mut trie = SubscriptionTrie::new();
        let filters = ["", "a/#/b", "sport#", "#/x", "++", "a\0"];
        for (i, filter) in filters.iter().enumerate() {
            trie.insert(filter, i, ());
        }
        for topic in ["", "a", "a/b", "sport#", "++", "$x", "x", "a\0"] {
            let expected: Vec<_> = (0..filters.len())
                .filter(|&i| matches(filters[i], topic))
                .map(|i| (i, ()))
                .collect();
            assert_eq!(matched(&trie, topic), expected, "topic {topic:?}");
        }
        for (i, filter) in filters.iter().enumerate() {
            assert_eq!(trie.remove(filter, &i), Some(()));
        }
        assert_eq!(trie.node_count(), 1);
    }

    #[test]
    fn for_each_filter_lists_every_filter_with_its_count() {
        let mut t = SubscriptionTrie::new();
        for (filter, key) in [
            ("a/b", 1),
            ("a/b", 2),
            ("a/+/c", 1),
            ("#", 3),
            ("a/#", 1),
            ("/x", 1),
        ] {
            t.insert(filter, key, ());
        }
        let mut seen = Vec::new();
        t.for_each_filter(|f, n| seen.push((f.to_owned(), n)));
        seen.sort();
        let want: Vec<(String, usize)> =
            [("#", 1), ("/x", 1), ("a/#", 1), ("a/+/c", 1), ("a/b", 2)]
                .iter()
                .map(|(f, n)| ((*f).to_owned(), *n))
                .collect();
        assert_eq!(seen, want);
    }

    fn filter_level() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["a", "b", "$s", "", "+"])
    }

    fn any_level() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["a", "b", "$s", "", "+", "#", "a+", "#b"])
    }

    fn valid_filter() -> impl Strategy<Value = String> {
        (prop::collection::vec(filter_level(), 0..4), any::<bool>())
            .prop_map(|(mut levels, multi)| {
                if multi || levels.is_empty() {
                    levels.push("#");
                }
                levels.join("/")
            })
            .prop_filter("valid filter", |f| is_valid_topic_filter(f))
    }

    fn any_filter() -> impl Strategy<Value = String> {
        prop::collection::vec(any_level(), 1..5).prop_map(|levels| levels.join("/"))
    }

    fn topic_name() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(vec!["a", "b", "$s", ""]), 1..5)
            .prop_map(|levels| levels.join("/"))
            .prop_filter("valid name", |t| is_valid_topic_name(t))
    }

    /// Inserts `filters` (key = index), then checks every topic against `matches`, removes the
    /// masked ones, checks again, removes the rest and checks that only the root is left.
    fn agrees_with_matches(filters: &[String], topics: &[String], mask: &[bool]) {
        let mut trie = SubscriptionTrie::new();
        for (i, filter) in filters.iter().enumerate() {
            assert_eq!(trie.insert(filter, i, i), None);
        }
        let mut live = vec![true; filters.len()];
        for pass in 0..2 {
            for topic in topics {
                let expected: Vec<_> = (0..filters.len())
                    .filter(|&i| live[i] && matches(&filters[i], topic))
                    .map(|i| (i, i))
                    .collect();
                assert_eq!(
                    matched(&trie, topic),
                    expected,
                    "topic {topic:?} {filters:?}"
                );
            }
            if pass == 0 {
                for (i, filter) in filters.iter().enumerate() {
                    if mask.get(i).copied().unwrap_or(false) {
                        assert_eq!(trie.remove(filter, &i), Some(i));
                        live[i] = false;
                    }
                }
                assert_eq!(trie.len(), live.iter().filter(|&&l| l).count());
            }
        }
        for (i, filter) in filters.iter().enumerate() {
            assert_eq!(trie.remove(filter, &i), live[i].then_some(i));
        }
        assert!(trie.is_empty());
        assert_eq!(trie.node_count(), 1);
    }

    proptest! {
        #[test]
        fn trie_agrees_with_matches(
            filters in prop::collection::vec(valid_filter(), 0..12),
            topics in prop::collection::vec(topic_name(), 1..8),
            mask in prop::collection::vec(any::<bool>(), 12),
        ) {
            agrees_with_matches(&filters, &topics, &mask);
        }

        #[test]
        fn trie_agrees_with_matches_on_invalid_filters(
            filters in prop::collection::vec(any_filter(), 0..12),
            topics in prop::collection::vec(topic_name(), 1..8),
            mask in prop::collection::vec(any::<bool>(), 12),
        ) {
            agrees_with_matches(&filters, &topics, &mask);
        }
    }
}
