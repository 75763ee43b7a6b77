//! The request-duration histogram, observed with atomics only.
//!
//! prometheus-client's `Histogram` takes a mutex on every observation (it also keeps native
//! buckets and exemplars we do not use); with a handful of worker threads answering at once
//! that lock showed in `benches/metrics.sh`. Here an observation is two relaxed atomic
//! additions: its bucket and the sum (in nanoseconds). The count is the buckets' total, so the
//! `+Inf` bucket always equals `_count`; a scrape during an observation may see the sum a step
//! ahead of the buckets or behind, which Prometheus' rate() arithmetic tolerates. Encoding goes
//! through prometheus-client's own histogram encoder.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

/// A fixed-bucket histogram of durations. Cloning shares it.
#[derive(Debug, Clone)]
pub struct DurationHistogram {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Upper bounds in seconds, ascending (the `+Inf` bucket is implied).
    bounds: Vec<f64>,
    /// One counter per bound plus `+Inf`; not cumulative.
    counts: Vec<AtomicU64>,
    sum_nanos: AtomicU64,
}

impl DurationHistogram {
    /// A histogram with these upper bounds (seconds; sorted here, duplicates dropped).
    #[must_use]
    pub fn new(bounds: impl IntoIterator<Item = f64>) -> Self {
        let mut bounds: Vec<f64> = bounds.into_iter().filter(|b| b.is_finite()).collect();
        bounds.sort_by(f64::total_cmp);
        bounds.dedup();
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Self { inner: Arc::new(Inner { bounds, counts, sum_nanos: AtomicU64::new(0) }) }
    }

    /// Records one duration.
    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        // The first bucket whose bound is >= the value (`le` is inclusive); past all: +Inf.
        let i = self.inner.bounds.partition_point(|b| *b < secs);
        if let Some(c) = self.inner.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.inner.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// (sum in seconds, count, per-bucket counts with their bounds, `+Inf` last).
    fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let bounds = self.inner.bounds.iter().copied().chain(std::iter::once(f64::INFINITY));
        let buckets: Vec<(f64, u64)> =
            bounds.zip(self.inner.counts.iter().map(|c| c.load(Ordering::Relaxed))).collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        #[allow(clippy::cast_precision_loss)] // sums beyond 2^53 ns (104 days of waiting) round
        let sum = self.inner.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        (sum, count, buckets)
    }
}

impl EncodeMetric for DurationHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.snapshot();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_inclusive_and_count_is_their_total() {
        let h = DurationHistogram::new([0.002, 0.001, 0.004]);
        for us in [500, 1_000, 1_001, 4_000, 9_000, 9_000] {
            h.observe(Duration::from_micros(us));
        }
        let (sum, count, buckets) = h.snapshot();
        assert_eq!(count, 6);
        assert_eq!(buckets, vec![(0.001, 2), (0.002, 1), (0.004, 1), (f64::INFINITY, 2)]);
        assert!((sum - 0.024_501).abs() < 1e-12, "{sum}");
    }

    #[test]
    fn encodes_cumulative_buckets() {
        let mut registry = prometheus_client::registry::Registry::default();
        let h = DurationHistogram::new([0.001, 0.01]);
        registry.register("took_seconds", "How long", h.clone());
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_secs(1));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("encode");
        for line in [
            "# TYPE took_seconds histogram",
            "took_seconds_count 3",
            "took_seconds_bucket{le=\"0.001\"} 1",
            "took_seconds_bucket{le=\"0.01\"} 2",
            "took_seconds_bucket{le=\"+Inf\"} 3",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
        }
        assert!(out.contains("took_seconds_sum 1.0051"), "{out}");
    }
}
