//! Writing one metric family in Prometheus text: the few shapes `/metrics` uses (a gauge or
//! counter, alone or with one label, and a histogram), over prometheus-client's encoder.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, NoLabelSet};
use prometheus_client::metrics::MetricType;

/// A relaxed read of a counter the broker keeps.
pub(super) fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// A gauge.
pub(super) fn gauge(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    v: impl EncodeGaugeValue,
) -> fmt::Result {
    enc.encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&v)
}

/// A counter; the encoder adds `_total` to its name.
pub(super) fn counter(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    v: u64,
) -> fmt::Result {
    enc.encode_descriptor(name, help, None, MetricType::Counter)?
        .encode_counter::<NoLabelSet, _, u64>(&v, None)
}

/// A counter with one label, one series per `(label value, count)`.
pub(super) fn counters(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    label: &str,
    series: &[(&str, u64)],
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, n) in series {
        m.encode_family(&[(label, *value)])?
            .encode_counter::<NoLabelSet, _, u64>(n, None)?;
    }
    Ok(())
}

/// A gauge with one label.
pub(super) fn gauges<V: EncodeGaugeValue>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    label: &str,
    series: &[(&str, V)],
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (value, n) in series {
        m.encode_family(&[(label, *value)])?.encode_gauge(n)?;
    }
    Ok(())
}

/// A histogram: `buckets` are (upper bound, count in that bucket only), `+Inf` last.
pub(super) fn histogram(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    sum: f64,
    count: u64,
    buckets: &[(f64, u64)],
) -> fmt::Result {
    enc.encode_descriptor(name, help, None, MetricType::Histogram)?
        .encode_histogram::<NoLabelSet>(sum, count, buckets, None)
}

/// A histogram of durations, in seconds.
pub(super) fn durations(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    h: &fubar_store::timing::HistogramSnapshot,
) -> fmt::Result {
    histogram(enc, name, help, h.sum_seconds, h.count, &h.buckets)
}
