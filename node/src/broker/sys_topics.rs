//! `$SYS/broker/...`: the node's figures as retained messages under mosquitto's names, so
//! that dashboards and tools written for mosquitto read fubar too.
//!
//! Every `sys.interval_secs` the node publishes them at QoS 0, retained in memory only (they
//! mean nothing after a restart, so they never reach the store or the replicated state). In
//! a cluster each node also publishes the same figures under `$SYS/broker/node/NAME/...`,
//! forwarded to the members with subscribers, so one subscription sees every node. Clients
//! cannot publish under `$SYS/` (`TopicLimits::check_name`), and a filter starting with `#`
//! or `+` never matches it (`topic::matches`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::Broker;
use crate::mqtt::message::{Message, MessageProperties};
use crate::mqtt::packet::QoS;

/// The averaging periods of the `load/...` topics, in seconds, with their names.
const LOAD_PERIODS: [(&str, f64); 3] = [("1min", 60.0), ("5min", 300.0), ("15min", 900.0)];

/// Exponentially weighted per-minute rates, as mosquitto's `load/...` topics report them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadAverage {
    /// One average per period of `LOAD_PERIODS`.
    pub per_minute: [f64; 3],
}

impl LoadAverage {
    /// Folds in `count` events seen over the last `secs` seconds.
    pub fn update(&mut self, count: u64, secs: f64) {
        if secs <= 0.0 {
            return;
        }
        let rate = count as f64 * 60.0 / secs;
        for (avg, (_, period)) in self.per_minute.iter_mut().zip(LOAD_PERIODS) {
            let keep = (-secs / period).exp();
            *avg = *avg * keep + rate * (1.0 - keep);
        }
    }
}

/// Figures published at one tick.
#[derive(Debug, Clone, PartialEq)]
pub struct SysFigures {
    /// (topic suffix after `$SYS/broker/`, payload).
    pub topics: Vec<(String, String)>,
}

/// The node's figures now, with the load averages kept between ticks.
pub fn figures(broker: &Broker, received: &LoadAverage, sent: &LoadAverage) -> SysFigures {
    let s = &broker.stats;
    let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed).to_string();
    let mut topics = vec![
        (
            "version".to_owned(),
            format!("fubar version {}", env!("CARGO_PKG_VERSION")),
        ),
        (
            "uptime".to_owned(),
            format!("{} seconds", broker.started.elapsed().as_secs()),
        ),
        ("clients/connected".to_owned(), n(&s.connections)),
        (
            "clients/total".to_owned(),
            broker.registry.len().to_string(),
        ),
        ("messages/received".to_owned(), n(&s.messages_in)),
        ("messages/sent".to_owned(), n(&s.messages_out)),
        ("bytes/received".to_owned(), n(&s.bytes_in)),
        ("bytes/sent".to_owned(), n(&s.bytes_out)),
        (
            "subscriptions/count".to_owned(),
            broker.router.subscription_count().to_string(),
        ),
        (
            "retained messages/count".to_owned(),
            broker.retained.len().to_string(),
        ),
    ];
    for (i, (period, _)) in LOAD_PERIODS.iter().enumerate() {
        topics.push((
            format!("load/messages/received/{period}"),
            format!("{:.2}", received.per_minute[i]),
        ));
        topics.push((
            format!("load/messages/sent/{period}"),
            format!("{:.2}", sent.per_minute[i]),
        ));
    }
    SysFigures { topics }
}

/// Publishes the `$SYS` topics every `sys.interval_secs` until the node stops (at once if
/// the interval is 0).
pub async fn run(broker: Arc<Broker>) {
    let secs = broker.settings().sys.interval_secs;
    if secs == 0 {
        return;
    }
    let period = Duration::from_secs(secs);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut received, mut sent) = (LoadAverage::default(), LoadAverage::default());
    let mut last = (0, 0, tokio::time::Instant::now());
    loop {
        tokio::select! {
            _ = broker.shutdown.cancelled() => return,
            now = tick.tick() => {
                let (in_now, out_now) = (
                    broker.stats.messages_in.load(Ordering::Relaxed),
                    broker.stats.messages_out.load(Ordering::Relaxed),
                );
                let elapsed = now.duration_since(last.2).as_secs_f64();
                if elapsed > 0.0 {
                    received.update(in_now.saturating_sub(last.0), elapsed);
                    sent.update(out_now.saturating_sub(last.1), elapsed);
                }
                last = (in_now, out_now, now);
                publish(&broker, &figures(&broker, &received, &sent));
            }
        }
    }
}

/// Publishes one tick's figures: `$SYS/broker/...` here, and in a cluster
/// `$SYS/broker/node/NAME/...` here and on the members that have subscribers.
fn publish(broker: &Broker, figures: &SysFigures) {
    let clustered = broker.cluster.is_clustered();
    let name = broker.settings().node.name.clone();
    for (suffix, payload) in &figures.topics {
        publish_one(broker, format!("$SYS/broker/{suffix}"), payload, false);
        if clustered {
            publish_one(
                broker,
                format!("$SYS/broker/node/{name}/{suffix}"),
                payload,
                true,
            );
        }
    }
}

fn publish_one(broker: &Broker, topic: String, payload: &str, forward: bool) {
    let message = Arc::new(Message {
        topic: topic.into(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        qos: QoS::AtMostOnce,
        retain: true,
        properties: MessageProperties::default(),
        trace: None,
        publisher: None,
        expires_at: None,
        sampled_at: None,
    });
    // Retained apart from the clients' messages: in memory only, in no bound or count.
    broker.retained.hold_sys(message.clone());
    broker
        .router
        .publish_copy(message.clone(), &broker.registry, broker.memory.is_on());
    if forward {
        broker.cluster.forward(&message, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;

    #[test]
    fn load_averages_approach_a_steady_rate_and_decay() {
        let mut load = LoadAverage::default();
        // 10 messages every 10 s: 60 a minute.
        for _ in 0..600 {
            load.update(10, 10.0);
        }
        for avg in load.per_minute {
            assert!((avg - 60.0).abs() < 0.5, "{avg}");
        }
        load.update(0, 60.0);
        // After a quiet minute the 1-minute average fell most.
        assert!(load.per_minute[0] < load.per_minute[1]);
        assert!(load.per_minute[1] < load.per_minute[2]);
    }

    #[test]
    fn figures_carry_mosquittos_names_and_the_counters() {
        let broker = Broker::standalone(Settings::default(), None).unwrap();
        broker.stats.messages_in.store(7, Ordering::Relaxed);
        broker.stats.bytes_out.store(99, Ordering::Relaxed);
        let f = figures(&broker, &LoadAverage::default(), &LoadAverage::default());
        let get = |t: &str| {
            f.topics
                .iter()
                .find(|(s, _)| s == t)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("no {t}"))
        };
        assert_eq!(get("messages/received"), "7");
        assert_eq!(get("bytes/sent"), "99");
        assert_eq!(get("clients/connected"), "0");
        assert_eq!(get("retained messages/count"), "0");
        assert!(get("version").starts_with("fubar version "));
        assert_eq!(get("load/messages/received/15min"), "0.00");
    }

    #[test]
    fn a_tick_retains_the_figures_in_memory() {
        let broker = Broker::standalone(Settings::default(), None).unwrap();
        publish(
            &broker,
            &figures(&broker, &LoadAverage::default(), &LoadAverage::default()),
        );
        let held = broker
            .retained
            .matching("$SYS/broker/uptime", std::time::Instant::now());
        assert_eq!(held.len(), 1);
        assert!(broker
            .retained
            .matching("#", std::time::Instant::now())
            .is_empty());
        // They take nothing from the clients' retained budget or count.
        assert_eq!(broker.retained.len(), 0);
        assert!(
            broker
                .retained
                .matching("$SYS/broker/#", std::time::Instant::now())
                .len()
                > 10
        );
    }
}
