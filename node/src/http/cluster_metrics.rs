//! The cluster's families of `/metrics`: membership and Raft state as this node sees them,
//! and each forward link to another member (what it carried, what waits, its round-trip
//! time, how often it was dialed again).

use std::fmt;
use std::time::Duration;

use prometheus_client::encoding::DescriptorEncoder;

use super::encode::{counters, gauge, gauges};
use crate::cluster::forward::LinkFigures;
use crate::cluster::member::ClusterMember;

/// Membership, Raft state and forward links of a cluster member.
pub(super) fn encode_cluster(
    enc: &mut DescriptorEncoder<'_>,
    member: &ClusterMember,
) -> fmt::Result {
    let status = member.status();
    let up = status
        .members
        .iter()
        .filter(|m| m.link == "up" || m.link == "self")
        .count() as u64;
    let total = status.members.len() as u64;
    gauges(
        enc,
        "cluster_members",
        "Members of the cluster as this node sees them, by link state.",
        "state",
        &[("up", up), ("down", total - up)],
    )?;
    let member_up: Vec<(&str, u64)> = status
        .members
        .iter()
        .map(|m| {
            (
                m.name.as_str(),
                u64::from(m.link == "up" || m.link == "self"),
            )
        })
        .collect();
    gauges(
        enc,
        "cluster_member_up",
        "1 while this node hears from a member (itself included), else 0, by member.",
        "member",
        &member_up,
    )?;
    gauge(
        enc,
        "cluster_term",
        "The Raft term this node knows.",
        status.term,
    )?;
    gauge(
        enc,
        "cluster_applied_index",
        "The last Raft log index applied on this node.",
        status.applied,
    )?;
    gauge(
        enc,
        "cluster_last_log_index",
        "The last index in this node's Raft log (appended, maybe not committed yet).",
        member.last_log_index(),
    )?;
    gauge(
        enc,
        "cluster_leader_known",
        "1 when this node knows a cluster leader, else 0.",
        u64::from(status.leader.is_some()),
    )?;
    gauge(
        enc,
        "cluster_is_leader",
        "1 when this node is the cluster leader, else 0.",
        u64::from(member.is_leader()),
    )?;
    if let Some(leader) = &status.leader {
        gauges(
            enc,
            "cluster_leader",
            "The cluster leader this node knows, by name (always 1).",
            "member",
            &[(leader.as_str(), 1u64)],
        )?;
    }
    gauge(
        enc,
        "cluster_routes",
        "Routes (filter, node) in this node's copy of the cluster state.",
        status.routes,
    )?;
    gauge(
        enc,
        "cluster_clients",
        "Client ids in this node's copy of the cluster registry.",
        status.clients,
    )?;
    gauge(
        enc,
        "cluster_pending_proposals",
        "Changes proposed to the replicated state and not applied yet.",
        status.pending,
    )?;
    let lags: Vec<(&str, u64)> = status
        .members
        .iter()
        .filter_map(|m| Some((m.name.as_str(), m.lag?)))
        .collect();
    if !lags.is_empty() {
        gauges(
            enc,
            "cluster_replication_lag_entries",
            "Raft log entries a member is behind the leader (on the leader only).",
            "member",
            &lags,
        )?;
    }
    encode_links(enc, &member.link_figures())
}

/// One series per forward link (started on the first message for a member).
fn encode_links(
    enc: &mut DescriptorEncoder<'_>,
    links: &[(LinkFigures, Option<Duration>)],
) -> fmt::Result {
    if links.is_empty() {
        return Ok(());
    }
    let series = |f: &dyn Fn(&LinkFigures) -> u64| -> Vec<(&str, u64)> {
        links.iter().map(|(l, _)| (l.name.as_str(), f(l))).collect()
    };
    counters(
        enc,
        "cluster_link_forwarded_messages",
        "Messages forwarded to a member (sent again after a link drop included).",
        "member",
        &series(&|l| l.messages),
    )?;
    counters(
        enc,
        "cluster_link_forwarded_bytes",
        "Topic and payload bytes of the messages forwarded to a member.",
        "member",
        &series(&|l| l.bytes),
    )?;
    gauges(
        enc,
        "cluster_link_queued_messages",
        "Messages waiting to be forwarded to a member (at most cluster.forward_queue).",
        "member",
        &series(&|l| l.queued),
    )?;
    gauges(
        enc,
        "cluster_link_unacked_messages",
        "QoS 1/2 messages forwarded to a member and not acknowledged yet.",
        "member",
        &series(&|l| l.unacked),
    )?;
    counters(
        enc,
        "cluster_link_dropped_messages",
        "Messages for a member dropped because its forward queue was full.",
        "member",
        &series(&|l| l.dropped),
    )?;
    counters(
        enc,
        "cluster_link_reconnects",
        "Times the forward link to a member went down and was dialed again.",
        "member",
        &series(&|l| l.reconnects),
    )?;
    let rtts: Vec<(&str, f64)> = links
        .iter()
        .filter_map(|(l, rtt)| Some((l.name.as_str(), rtt.as_ref()?.as_secs_f64())))
        .collect();
    if rtts.is_empty() {
        return Ok(());
    }
    gauges(
        enc,
        "cluster_link_rtt_seconds",
        "Round-trip time QUIC estimates on the connection to a member (while one is open).",
        "member",
        &rtts,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::collector::Collector;
    use prometheus_client::registry::Registry;

    /// A collector of fixed link figures.
    #[derive(Debug)]
    struct Links(Vec<(LinkFigures, Option<Duration>)>);

    impl Collector for Links {
        fn encode(&self, mut enc: DescriptorEncoder<'_>) -> fmt::Result {
            encode_links(&mut enc, &self.0)
        }
    }

    fn text(links: Vec<(LinkFigures, Option<Duration>)>) -> String {
        let mut registry = Registry::with_prefix("fubar");
        registry.register_collector(Box::new(Links(links)));
        super::super::render(&registry).unwrap()
    }

    #[test]
    fn each_link_is_a_series_named_after_its_member() {
        let link = |name: &str, messages| LinkFigures {
            name: name.into(),
            queued: 3,
            unacked: 2,
            messages,
            bytes: 10 * messages,
            dropped: 1,
            reconnects: 4,
        };
        let text = text(vec![
            (link("b@h", 7), Some(Duration::from_millis(2))),
            (link("c@h", 9), None),
        ]);
        for line in [
            "fubar_cluster_link_forwarded_messages_total{member=\"b@h\"} 7",
            "fubar_cluster_link_forwarded_messages_total{member=\"c@h\"} 9",
            "fubar_cluster_link_forwarded_bytes_total{member=\"c@h\"} 90",
            "fubar_cluster_link_queued_messages{member=\"b@h\"} 3",
            "fubar_cluster_link_unacked_messages{member=\"b@h\"} 2",
            "fubar_cluster_link_dropped_messages_total{member=\"b@h\"} 1",
            "fubar_cluster_link_reconnects_total{member=\"c@h\"} 4",
            "fubar_cluster_link_rtt_seconds{member=\"b@h\"} 0.002",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line} in\n{text}");
        }
        assert!(
            !text.contains("rtt_seconds{member=\"c@h\"}"),
            "no connection: no rtt"
        );
        assert_eq!(self::text(Vec::new()), "", "no link yet: no series");
    }
}
