//! Topic names and topic filters: validation and matching (MQTT 3.1.1 section 4.7).
//!
//! A topic is split into levels by `/`; levels may be empty (`/finance` has two levels, the
//! first empty). In a filter, `+` stands for exactly one level and `#`, which may only be the
//! last level, for the parent level and any number of child levels. Filters beginning with a
//! wildcard never match topics beginning with `$` (MQTT-4.7.2-1).
//!
//! These are pure functions on `&str`; they never allocate and never panic.

/// Longest topic name or filter in bytes: the length prefix of a UTF-8 string is 16 bits.
pub const MAX_TOPIC_LEN: usize = 65535;

/// Whether `topic` is a valid topic name for PUBLISH: non-empty, at most 65535 bytes, no
/// wildcards and no U+0000 (MQTT-4.7.3-1, MQTT-4.7.3-2, MQTT-4.7.1-1).
pub fn is_valid_topic_name(topic: &str) -> bool {
    !topic.is_empty() && topic.len() <= MAX_TOPIC_LEN && !topic.contains(['+', '#', '\0'])
}

/// Whether `filter` is a valid topic filter for SUBSCRIBE: non-empty, at most 65535 bytes, no
/// U+0000, `+` only as a whole level and `#` only as the whole last level (MQTT-4.7.1-2,
/// MQTT-4.7.1-3).
pub fn is_valid_topic_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.len() > MAX_TOPIC_LEN || filter.contains('\0') {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        match level {
            "+" => {}
            "#" if levels.peek().is_none() => {}
            _ if level.contains(['+', '#']) => return false,
            _ => {}
        }
    }
    true
}

/// The share group and the topic filter of a shared subscription `$share/GROUP/FILTER` (MQTT
/// 5.0 section 4.8.2, usable from 3.1.1 clients too); `None` for an ordinary filter. The
/// group is non-empty without `+`, `#` or `/`, and the filter after it is valid.
pub fn shared(filter: &str) -> Option<(&str, &str)> {
    let rest = filter.strip_prefix("$share/")?;
    let (group, inner) = rest.split_once('/')?;
    let good = !group.is_empty() && !group.contains(['+', '#']) && is_valid_topic_filter(inner);
    good.then_some((group, inner))
}

/// Whether `filter` is a valid subscription: a valid topic filter, and if it starts with
/// `$share/`, a valid shared subscription.
pub fn is_valid_subscription(filter: &str) -> bool {
    if filter.starts_with("$share/") || filter == "$share" {
        shared(filter).is_some()
    } else {
        is_valid_topic_filter(filter)
    }
}

/// The broker's own bounds on topic names and filters, tighter than the protocol's 65535
/// bytes: every level of a filter is a node of the subscription trie, so a 64 KiB filter of
/// empty levels would cost one allocation per level (issue 16.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicLimits {
    /// Most levels (`/`-separated parts) in a topic name or filter.
    pub max_levels: usize,
    /// Most bytes in a topic name or filter.
    pub max_len: usize,
}

/// How a topic name or filter exceeds [`TopicLimits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TopicLimitError {
    /// More levels than `mqtt.max_topic_levels`.
    #[error("{levels} topic levels, more than mqtt.max_topic_levels ({max})")]
    TooManyLevels {
        /// Levels it has (counted up to one past the limit).
        levels: usize,
        /// The limit.
        max: usize,
    },
    /// A name under `$SYS/`: only the broker publishes there (its `$SYS` figures).
    #[error("the $SYS/ topics are the broker's own")]
    Reserved,
    /// Longer than `mqtt.max_topic_len`.
    #[error("{len} bytes, more than mqtt.max_topic_len ({max})")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl TopicLimits {
    /// Checks a topic name (PUBLISH, will, retained): a client's may not be under `$SYS/`.
    pub fn check_name(&self, topic: &str) -> Result<(), TopicLimitError> {
        if is_sys(topic) {
            return Err(TopicLimitError::Reserved);
        }
        self.check(topic)
    }

    /// Checks a subscription or unsubscription filter. A shared subscription's levels are
    /// counted in the filter after `$share/GROUP/` (that is what the trie stores); its length
    /// is the whole string's.
    pub fn check_filter(&self, filter: &str) -> Result<(), TopicLimitError> {
        self.check_len(filter)?;
        let inner = shared(filter).map_or(filter, |(_, inner)| inner);
        self.check_levels(inner)
    }

    fn check(&self, topic: &str) -> Result<(), TopicLimitError> {
        self.check_len(topic)?;
        self.check_levels(topic)
    }

    fn check_len(&self, topic: &str) -> Result<(), TopicLimitError> {
        if topic.len() > self.max_len {
            return Err(TopicLimitError::TooLong {
                len: topic.len(),
                max: self.max_len,
            });
        }
        Ok(())
    }

    fn check_levels(&self, topic: &str) -> Result<(), TopicLimitError> {
        // Counting stops one past the limit: a long topic costs no more than a short one.
        let levels = topic
            .split('/')
            .take(self.max_levels.saturating_add(1))
            .count();
        if levels > self.max_levels {
            return Err(TopicLimitError::TooManyLevels {
                levels,
                max: self.max_levels,
            });
        }
        Ok(())
    }
}

/// Whether `topic` is `$SYS` or under `$SYS/`, where only the broker publishes.
pub fn is_sys(topic: &str) -> bool {
    topic
        .strip_prefix("$SYS")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The first `max` bytes of `topic` (cut at a character boundary), with `...` when cut: for
/// logging a topic that may be 64 KiB long.
pub fn truncated(topic: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if topic.len() <= max {
        return topic.into();
    }
    let mut end = max;
    while !topic.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &topic[..end], topic.len()).into()
}

/// Whether `filter` matches the topic name `topic`.
///
/// `filter` should be valid (see [`is_valid_topic_filter`]) and `topic` a valid name; other
/// input gives an unspecified answer but never panics. A `#` level ends the filter: it matches
/// whatever is left, including nothing, so `sport/#` matches `sport`.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut filter_levels = filter.split('/');
    let mut topic_levels = topic.split('/');
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(t)) if f == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;

    const LIMITS: TopicLimits = TopicLimits {
        max_levels: 4,
        max_len: 16,
    };

    #[test]
    fn exactly_the_limits_pass_and_one_more_fails() {
        assert_eq!(LIMITS.check_name("a/b/c/d"), Ok(()));
        assert_eq!(LIMITS.check_name("$SYS/x"), Err(TopicLimitError::Reserved));
        assert_eq!(LIMITS.check_name("$SYS"), Err(TopicLimitError::Reserved));
        assert_eq!(LIMITS.check_name("$SYSTEM/x"), Ok(()));
        assert_eq!(LIMITS.check_name("a/$SYS/x"), Ok(()));
        assert_eq!(LIMITS.check_name("///"), Ok(()));
        assert_eq!(
            LIMITS.check_name("a/b/c/d/e"),
            Err(TopicLimitError::TooManyLevels { levels: 5, max: 4 })
        );
        assert_eq!(
            LIMITS.check_filter("////"),
            Err(TopicLimitError::TooManyLevels { levels: 5, max: 4 })
        );
        assert_eq!(LIMITS.check_filter("+/+/+/#"), Ok(()));
        assert_eq!(LIMITS.check_name(&"x".repeat(16)), Ok(()));
        assert_eq!(
            LIMITS.check_name(&"x".repeat(17)),
            Err(TopicLimitError::TooLong { len: 17, max: 16 })
        );
    }

    #[test]
    fn shared_subscriptions_count_the_levels_of_their_filter() {
        assert_eq!(LIMITS.check_filter("$share/g/a/b/c/d"), Ok(()));
        assert!(LIMITS.check_filter("$share/g/a/b/c/d/e").is_err());
        assert!(LIMITS.check_filter("$share/group/a/bcd").is_err(), "length");
    }

    #[test]
    fn the_attack_filter_is_counted_only_up_to_the_limit() {
        let attack = format!("f0{}", "/".repeat(32_000));
        let big = TopicLimits {
            max_levels: 128,
            max_len: 65_535,
        };
        assert_eq!(
            big.check_filter(&attack),
            Err(TopicLimitError::TooManyLevels {
                levels: 129,
                max: 128
            })
        );
    }

    #[test]
    fn truncation_keeps_characters_whole() {
        assert_eq!(truncated("abc", 8), "abc");
        assert_eq!(truncated("abcdef", 3), "abc... (6 bytes)");
        assert_eq!(truncated("\u{e9}\u{e9}", 3), "\u{e9}... (4 bytes)");
    }
}

#[cfg(test)]
mod shared_tests {
    use super::*;

    #[test]
    fn shared_subscriptions_are_parsed_and_checked() {
        assert_eq!(shared("$share/g1/a/+/c"), Some(("g1", "a/+/c")));
        assert_eq!(shared("$share/g/#"), Some(("g", "#")));
        assert_eq!(shared("a/b"), None);
        for bad in [
            "$share/g",
            "$share//a",
            "$share/g+/a",
            "$share/g/a#",
            "$share/#/a",
        ] {
            assert_eq!(shared(bad), None, "{bad}");
            assert!(!is_valid_subscription(bad), "{bad}");
        }
        assert!(is_valid_subscription("$share/g/x"));
        assert!(is_valid_subscription("$SYS/x"));
        assert!(!is_valid_subscription("$share"));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        #[rustfmt::skip]
        let cases: &[(&str, bool)] = &[
            // Section 4.7.3: at least one character, case sensitive, spaces allowed.
            ("sport/tennis/player1", true),
            ("ACCOUNTS", true),
            ("Accounts payable", true),
            ("/finance", true),
            ("finance/", true),
            ("/", true),
            ("//", true),
            ("$SYS/monitor/Clients", true),
            ("$", true),
            ("", false),
            // Wildcards belong to filters only.
            ("sport/+", false),
            ("sport/#", false),
            ("+", false),
            ("#", false),
            ("sport+", false),
            ("sp#rt", false),
            // U+0000 is never allowed.
            ("a\0b", false),
            ("\0", false),
            // Other non-ASCII characters are fine.
            ("caf\u{e9}/\u{1f600}", true),
        ];
        for &(topic, valid) in cases {
            assert_eq!(is_valid_topic_name(topic), valid, "name {topic:?}");
        }
    }

    #[test]
    fn topic_filters() {
        #[rustfmt::skip]
        let cases: &[(&str, bool)] = &[
            // Section 4.7.1.2, multi-level wildcard.
            ("sport/tennis/player1/#", true),
            ("#", true),
            ("sport/tennis/#", true),
            ("sport/tennis#", false),
            ("sport/tennis/#/ranking", false),
            ("sport/#", true),
            ("sport#", false),
            ("sport/#/x", false),
            ("#/", false),
            ("##", false),
            ("/#", true),
            // Section 4.7.1.3, single-level wildcard.
            ("+", true),
            ("+/tennis/#", true),
            ("sport+", false),
            ("sport/+/player1", true),
            ("sport/+/player", true),
            ("+/+", true),
            ("/+", true),
            ("+/", true),
            ("++", false),
            ("+/#", true),
            ("a/+b/c", false),
            // Empty levels are allowed.
            ("/finance", true),
            ("a//b", true),
            ("/", true),
            ("a/", true),
            // $ is an ordinary character in a filter.
            ("$SYS/#", true),
            ("$SYS/monitor/+", true),
            // Length and U+0000.
            ("", false),
            ("a\0", false),
        ];
        for &(filter, valid) in cases {
            assert_eq!(is_valid_topic_filter(filter), valid, "filter {filter:?}");
        }
    }

    #[test]
    fn length_limit() {
        let max = "a".repeat(MAX_TOPIC_LEN);
        let over = "a".repeat(MAX_TOPIC_LEN + 1);
        assert!(is_valid_topic_name(&max));
        assert!(!is_valid_topic_name(&over));
        assert!(is_valid_topic_filter(&max));
        assert!(!is_valid_topic_filter(&over));
        let deep = "/".repeat(MAX_TOPIC_LEN);
        assert!(is_valid_topic_filter(&deep));
        assert!(matches(&deep, &deep));
    }

    /// Every matching example of section 4.7, then edge cases.
    pub(crate) const MATCH_CASES: &[(&str, &str, bool)] = &[
        // 4.7.1.2: sport/tennis/player1/# matches the parent and any children.
        ("sport/tennis/player1/#", "sport/tennis/player1", true),
        (
            "sport/tennis/player1/#",
            "sport/tennis/player1/ranking",
            true,
        ),
        (
            "sport/tennis/player1/#",
            "sport/tennis/player1/score/wimbledon",
            true,
        ),
        ("sport/tennis/player1/#", "sport/tennis/player2", false),
        ("sport/tennis/player1/#", "sport/tennis", false),
        // "sport/#" also matches the singular "sport".
        ("sport/#", "sport", true),
        ("sport/#", "sport/", true),
        ("sport/#", "sport/tennis/player1", true),
        ("sport/#", "sports", false),
        ("#", "sport", true),
        ("#", "sport/tennis/player1", true),
        ("#", "/", true),
        ("sport/tennis/#", "sport/tennis", true),
        ("sport/tennis/#", "sport/tennis/player1", true),
        // 4.7.1.3: + matches exactly one level.
        ("sport/tennis/+", "sport/tennis/player1", true),
        ("sport/tennis/+", "sport/tennis/player2", true),
        ("sport/tennis/+", "sport/tennis/player1/ranking", false),
        ("sport/+", "sport", false),
        ("sport/+", "sport/", true),
        ("sport/+/player1", "sport/tennis/player1", true),
        ("+/tennis/#", "sport/tennis/player1", true),
        ("+/tennis/#", "sport/tennis", true),
        ("+/tennis/#", "sport/golf", false),
        ("+", "sport", true),
        ("+", "sport/tennis", false),
        // "/finance" has an empty first level.
        ("+/+", "/finance", true),
        ("/+", "/finance", true),
        ("+", "/finance", false),
        ("/finance", "/finance", true),
        ("/finance", "finance", false),
        ("finance", "/finance", false),
        // 4.7.2: wildcards at the start never match $ topics (MQTT-4.7.2-1).
        ("#", "$SYS", false),
        ("#", "$SYS/monitor/Clients", false),
        ("+/monitor/Clients", "$SYS/monitor/Clients", false),
        ("+", "$SYS", false),
        ("+/#", "$SYS/x", false),
        ("$SYS/#", "$SYS/monitor/Clients", true),
        ("$SYS/#", "$SYS/x", true),
        ("$SYS/#", "$SYS", true),
        ("$SYS/monitor/+", "$SYS/monitor/Clients", true),
        ("$SYS/+", "$SYS/x", true),
        // $ only matters in the first level.
        ("a/+", "a/$x", true),
        ("a/#", "a/$x/y", true),
        ("+/$x", "a/$x", true),
        // Matching is case sensitive (4.7.3).
        ("ACCOUNTS", "Accounts", false),
        ("Accounts payable", "Accounts payable", true),
        // Empty levels and trailing slashes.
        ("a//b", "a//b", true),
        ("a/+/b", "a//b", true),
        ("a//b", "a/b", false),
        ("a/b", "a/b/", false),
        ("a/b/", "a/b", false),
        ("a/b/", "a/b/", true),
        ("a/b/+", "a/b/", true),
        ("a/b/#", "a/b/", true),
        ("+", "/", false),
        ("+/+", "/", true),
        ("/#", "/", true),
        ("/#", "a", false),
        ("/", "/", true),
        ("+/", "/", true),
        ("+/", "a", false),
        // # alone and +/#.
        ("#", "a", true),
        ("#", "a/b/c/d", true),
        ("+/#", "a", true),
        ("+/#", "a/b", true),
        ("+/#", "/", true),
        ("+/+/#", "a", false),
        // Exact matches and near misses.
        ("a/b/c", "a/b/c", true),
        ("a/b/c", "a/b", false),
        ("a/b", "a/b/c", false),
        ("a/b", "a/bc", false),
    ];

    #[test]
    fn matching() {
        for &(filter, topic, expected) in MATCH_CASES {
            assert!(is_valid_topic_filter(filter), "filter {filter:?}");
            assert!(is_valid_topic_name(topic), "topic {topic:?}");
            assert_eq!(matches(filter, topic), expected, "{filter:?} vs {topic:?}");
        }
    }

    #[test]
    fn invalid_input_does_not_panic() {
        for filter in ["", "a/#/b", "sport#", "++", "\0", "#/#", "/#/"] {
            for topic in ["", "a", "a/b", "$", "+", "#", "/", "\0"] {
                let _ = matches(filter, topic);
            }
        }
    }
}
