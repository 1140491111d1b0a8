//! The log families of `/metrics`: the log engine per class, the link that ships events to
//! the monitor (on a cluster member), and on the monitor what it takes in from each node and
//! how far its search index is behind.

use std::fmt;
use std::path::Path;

use fubar_monitor::shipper::{ShipperStats, SpoolStats};
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;

use super::encode::{counter, counters, gauge, gauges, histogram};
use crate::cluster::monitor::MonitorRole;

/// The log engine, per class.
pub(super) fn encode_logs(
    enc: &mut DescriptorEncoder<'_>,
    logs: &fubar_logs::LogHandle,
) -> fmt::Result {
    let classes = logs.list();
    let names: Vec<String> = classes.iter().map(|c| c.class.to_string()).collect();
    let series = |f: &dyn Fn(&fubar_logs::ClassStatus) -> u64| -> Vec<(&str, u64)> {
        names
            .iter()
            .zip(&classes)
            .map(|(n, c)| (n.as_str(), f(c)))
            .collect()
    };
    counters(
        enc,
        "log_events",
        "Log events written, by class.",
        "class",
        &series(&|c| c.events),
    )?;
    counters(
        enc,
        "log_events_dropped",
        "Log events dropped because the log channel was full, by class.",
        "class",
        &series(&|c| c.dropped),
    )?;
    gauges(
        enc,
        "log_segment_bytes",
        "Bytes in the log segment files on disk, by class.",
        "class",
        &series(&|c| c.bytes),
    )
}

/// The spool a cluster member keeps its events in until the monitor has them, and the
/// shipper that sends them (absent until a monitor is known).
pub(super) fn encode_shipping(
    enc: &mut DescriptorEncoder<'_>,
    (spool, shipper): &(SpoolStats, Option<ShipperStats>),
) -> fmt::Result {
    gauge(
        enc,
        "log_spool_bytes",
        "Bytes in the log spool on disk (events kept for the monitor, at most cluster.spool_bytes).",
        spool.bytes,
    )?;
    gauge(
        enc,
        "log_ship_backlog_bytes",
        "Spool bytes the monitor has not acknowledged yet: how far shipping is behind.",
        spool.unacked_bytes,
    )?;
    counter(
        enc,
        "log_spool_appended_events",
        "Events put in the spool for the monitor.",
        spool.appended,
    )?;
    counter(
        enc,
        "log_spool_lost_events",
        "Events dropped from the spool before the monitor had them (spool full, or too large).",
        spool.lost,
    )?;
    gauge(
        enc,
        "log_ship_in_flight_batches",
        "Batches sent to the monitor and not acknowledged yet.",
        spool.in_flight as u64,
    )?;
    let shipper = shipper.clone().unwrap_or_default();
    gauge(
        enc,
        "log_ship_connected",
        "1 while the link to the monitor is up, else 0.",
        u64::from(shipper.connected),
    )?;
    counter(
        enc,
        "log_ship_connects",
        "Links to the monitor established.",
        shipper.connects,
    )?;
    counter(
        enc,
        "log_ship_batches",
        "Batches sent to the monitor (sent again after a drop included).",
        shipper.batches_sent,
    )
}

/// What the monitor takes in from each node, and its index.
pub(super) fn encode_monitor(
    enc: &mut DescriptorEncoder<'_>,
    monitor: &MonitorRole,
) -> fmt::Result {
    let links = monitor.server.stats();
    let names: Vec<&str> = links.iter().map(|l| l.node.as_str()).collect();
    let per_node = |f: &dyn Fn(usize) -> u64| -> Vec<(&str, u64)> {
        names.iter().enumerate().map(|(i, n)| (*n, f(i))).collect()
    };
    counters(
        enc,
        "monitor_ingested_events",
        "Events the monitor has received from each node.",
        "node",
        &per_node(&|i| links[i].counts.events),
    )?;
    counters(
        enc,
        "monitor_duplicate_events",
        "Events received again (resends) from each node, written once.",
        "node",
        &per_node(&|i| links[i].counts.duplicates),
    )?;
    counters(
        enc,
        "monitor_lost_events",
        "Events a node's sequence numbers say were lost before they reached the monitor.",
        "node",
        &per_node(&|i| links[i].counts.lost),
    )?;
    gauges(
        enc,
        "monitor_link_connected",
        "1 while a node's log link to the monitor is up, else 0.",
        "node",
        &per_node(&|i| u64::from(links[i].connected)),
    )?;
    gauge(
        enc,
        "monitor_index_documents",
        "Events in the monitor's search index.",
        monitor.index.num_docs(),
    )?;
    gauge(
        enc,
        "monitor_index_bytes",
        "Bytes of the monitor's search index on disk.",
        dir_bytes(monitor.index.dir()),
    )?;
    let lag = monitor.index_lag.figures();
    histogram(
        enc,
        "monitor_index_lag_seconds",
        "Time from an event logged on its node to the index commit that makes it searchable here (shipping included).",
        lag.sum_seconds,
        lag.count,
        &lag.buckets,
    )?;
    // Last: a node that has shipped nothing yet has no lag to show.
    let mut m = enc.encode_descriptor(
        "monitor_link_lag_milliseconds",
        "How far behind a node's last shipped batch is (its wall clock to the monitor's), by node.",
        None,
        MetricType::Gauge,
    )?;
    for link in &links {
        if let Some(lag) = link.lag_ms {
            m.encode_family(&[("node", link.node.as_str())])?
                .encode_gauge(&lag)?;
        }
    }
    Ok(())
}

/// Bytes of the files in `dir` (tantivy keeps its index flat in one folder).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok()?.metadata().ok())
        .filter(std::fs::Metadata::is_file)
        .map(|m| m.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::collector::Collector;
    use prometheus_client::registry::Registry;

    #[derive(Debug)]
    struct Shipping(SpoolStats, Option<ShipperStats>);

    impl Collector for Shipping {
        fn encode(&self, mut enc: DescriptorEncoder<'_>) -> fmt::Result {
            encode_shipping(&mut enc, &(self.0, self.1.clone()))
        }
    }

    #[test]
    fn shipping_shows_the_spool_and_a_missing_shipper_as_down() {
        let spool = SpoolStats {
            appended: 12,
            lost: 1,
            forgotten_losses: 0,
            bytes: 4096,
            in_flight: 2,
            acked_upto: 9,
            unacked_bytes: 1024,
        };
        let mut registry = Registry::with_prefix("fubar");
        registry.register_collector(Box::new(Shipping(spool, None)));
        let text = super::super::render(&registry).unwrap();
        for line in [
            "fubar_log_spool_bytes 4096",
            "fubar_log_ship_backlog_bytes 1024",
            "fubar_log_spool_appended_events_total 12",
            "fubar_log_spool_lost_events_total 1",
            "fubar_log_ship_in_flight_batches 2",
            "fubar_log_ship_connected 0",
            "fubar_log_ship_connects_total 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line} in\n{text}");
        }
    }

    #[test]
    fn an_index_dir_is_the_sum_of_its_files() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(dir_bytes(dir.path()), 0);
        std::fs::write(dir.path().join("a"), [0; 100]).unwrap();
        std::fs::write(dir.path().join("b"), [0; 28]).unwrap();
        assert_eq!(dir_bytes(dir.path()), 128);
        assert_eq!(dir_bytes(&dir.path().join("none")), 0);
    }
}
