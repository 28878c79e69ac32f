//! The metric kinds: counter (integer and float), gauge and histogram, each as a family
//! (`…Vec<N>`, with `N` label names fixed at compile time) and as a handle on one series.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use crate::family::{Core, Family};
use crate::text::{f64_string, push_f64, push_u64, write_header, write_series};
use crate::{Collector, MetricType};

/// An `f64` updated with atomic bit-level compare-and-swap.
pub(crate) struct AtomicF64(AtomicU64);

impl AtomicF64 {
    fn new(v: f64) -> Self {
        AtomicF64(AtomicU64::new(v.to_bits()))
    }
    fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Relaxed))
    }
    fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Relaxed);
    }
    fn add(&self, d: f64) {
        // The closure always returns Some, so this cannot fail.
        let _ = self.0.fetch_update(Relaxed, Relaxed, |b| {
            Some((f64::from_bits(b) + d).to_bits())
        });
    }
}

// --- Counter ------------------------------------------------------------------------

pub(crate) struct CounterCore(AtomicU64);

impl Core for CounterCore {
    type Config = ();
    fn new(_: &()) -> Self {
        CounterCore(AtomicU64::new(0))
    }
}

/// One series of a [`CounterVec`]: a monotonically increasing integer.
#[derive(Clone)]
pub struct Counter(Arc<CounterCore>);

impl Counter {
    pub fn inc(&self) {
        self.inc_by(1);
    }
    pub fn inc_by(&self, n: u64) {
        self.0 .0.fetch_add(n, Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0 .0.load(Relaxed)
    }
}

/// A family of integer counters with `N` labels.
pub struct CounterVec<const N: usize>(Family<CounterCore, N>);

impl<const N: usize> CounterVec<N> {
    /// An unregistered family; [`crate::Registry::register`] checks the names.
    pub fn new(name: &'static str, help: &'static str, label_names: [&'static str; N]) -> Self {
        CounterVec(Family::new(name, help, label_names, ()))
    }
    /// The series of `values` (created at 0 if new), to keep and reuse.
    pub fn with_labels(&self, values: [&str; N]) -> Counter {
        Counter(self.0.get(values))
    }
    pub fn inc(&self, values: [&str; N]) {
        self.inc_by(values, 1);
    }
    pub fn inc_by(&self, values: [&str; N], n: u64) {
        self.0.with(values, |c| c.0.fetch_add(n, Relaxed));
    }
    /// The value of an existing series; `None` if it was never touched.
    pub fn get(&self, values: [&str; N]) -> Option<u64> {
        self.0.peek(values, |c| c.0.load(Relaxed))
    }
    /// How many series the family holds.
    pub fn series_count(&self) -> usize {
        self.0.len()
    }
}

impl<const N: usize> Collector for CounterVec<N> {
    fn name(&self) -> &str {
        self.0.name
    }
    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
    fn label_names(&self) -> &[&'static str] {
        &self.0.label_names
    }
    fn encode(&self, out: &mut String) {
        let f = &self.0;
        write_header(out, f.name, f.help, MetricType::Counter);
        f.for_each_sorted(|values, c| {
            write_series(out, f.name, "", &f.label_names, values, None);
            push_u64(out, c.0.load(Relaxed));
            out.push('\n');
        });
    }
}

// --- Float counter ------------------------------------------------------------------

pub(crate) struct FloatCounterCore(AtomicF64);

impl Core for FloatCounterCore {
    type Config = ();
    fn new(_: &()) -> Self {
        FloatCounterCore(AtomicF64::new(0.0))
    }
}

impl FloatCounterCore {
    fn inc_by(&self, v: f64) {
        // A counter only goes up: negative, NaN and infinite increments are dropped.
        if v.is_finite() && v > 0.0 {
            self.0.add(v);
        }
    }
}

/// One series of a [`FloatCounterVec`]: a monotonically increasing float (money, seconds).
#[derive(Clone)]
pub struct FloatCounter(Arc<FloatCounterCore>);

impl FloatCounter {
    /// Adds `v`; negative, NaN and infinite values are ignored.
    pub fn inc_by(&self, v: f64) {
        self.0.inc_by(v);
    }
    pub fn get(&self) -> f64 {
        self.0 .0.get()
    }
}

/// A family of float counters with `N` labels.
pub struct FloatCounterVec<const N: usize>(Family<FloatCounterCore, N>);

impl<const N: usize> FloatCounterVec<N> {
    pub fn new(name: &'static str, help: &'static str, label_names: [&'static str; N]) -> Self {
        FloatCounterVec(Family::new(name, help, label_names, ()))
    }
    pub fn with_labels(&self, values: [&str; N]) -> FloatCounter {
        FloatCounter(self.0.get(values))
    }
    /// Adds `v`; negative, NaN and infinite values are ignored (the series is still created).
    pub fn inc_by(&self, values: [&str; N], v: f64) {
        self.0.with(values, |c| c.inc_by(v));
    }
    pub fn get(&self, values: [&str; N]) -> Option<f64> {
        self.0.peek(values, |c| c.0.get())
    }
    pub fn series_count(&self) -> usize {
        self.0.len()
    }
}

impl<const N: usize> Collector for FloatCounterVec<N> {
    fn name(&self) -> &str {
        self.0.name
    }
    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
    fn label_names(&self) -> &[&'static str] {
        &self.0.label_names
    }
    fn encode(&self, out: &mut String) {
        let f = &self.0;
        write_header(out, f.name, f.help, MetricType::Counter);
        f.for_each_sorted(|values, c| {
            write_series(out, f.name, "", &f.label_names, values, None);
            push_f64(out, c.0.get());
            out.push('\n');
        });
    }
}

// --- Gauge --------------------------------------------------------------------------

pub(crate) struct GaugeCore(AtomicF64);

impl Core for GaugeCore {
    type Config = ();
    fn new(_: &()) -> Self {
        GaugeCore(AtomicF64::new(0.0))
    }
}

/// One series of a [`GaugeVec`]: a value that is set, or goes up and down.
#[derive(Clone)]
pub struct Gauge(Arc<GaugeCore>);

impl Gauge {
    pub fn set(&self, v: f64) {
        self.0 .0.set(v);
    }
    pub fn add(&self, d: f64) {
        self.0 .0.add(d);
    }
    pub fn sub(&self, d: f64) {
        self.0 .0.add(-d);
    }
    pub fn get(&self) -> f64 {
        self.0 .0.get()
    }
}

/// A family of gauges with `N` labels.
pub struct GaugeVec<const N: usize>(Family<GaugeCore, N>);

impl<const N: usize> GaugeVec<N> {
    pub fn new(name: &'static str, help: &'static str, label_names: [&'static str; N]) -> Self {
        GaugeVec(Family::new(name, help, label_names, ()))
    }
    pub fn with_labels(&self, values: [&str; N]) -> Gauge {
        Gauge(self.0.get(values))
    }
    pub fn set(&self, values: [&str; N], v: f64) {
        self.0.with(values, |g| g.0.set(v));
    }
    pub fn add(&self, values: [&str; N], d: f64) {
        self.0.with(values, |g| g.0.add(d));
    }
    pub fn get(&self, values: [&str; N]) -> Option<f64> {
        self.0.peek(values, |g| g.0.get())
    }
    pub fn series_count(&self) -> usize {
        self.0.len()
    }

    /// Replaces the whole family with a snapshot, atomically with respect to rendering:
    /// every series seen before and absent now drops to 0 (it stays, so graphs show 0
    /// rather than a gap), and each tuple's value is added to its series, so a tuple
    /// that appears twice counts twice (feed one `(labels, 1.0)` per item to count them).
    pub fn set_snapshot<K: AsRef<str>>(&self, snapshot: impl IntoIterator<Item = ([K; N], f64)>) {
        self.0
            .replace(snapshot, |g| g.0.set(0.0), |g, v: f64| g.0.add(v));
    }
}

impl<const N: usize> Collector for GaugeVec<N> {
    fn name(&self) -> &str {
        self.0.name
    }
    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
    fn label_names(&self) -> &[&'static str] {
        &self.0.label_names
    }
    fn encode(&self, out: &mut String) {
        let f = &self.0;
        write_header(out, f.name, f.help, MetricType::Gauge);
        f.for_each_sorted(|values, g| {
            write_series(out, f.name, "", &f.label_names, values, None);
            push_f64(out, g.0.get());
            out.push('\n');
        });
    }
}

// --- Histogram ----------------------------------------------------------------------

/// A histogram family's upper bounds and their rendered `le` values (`+Inf` last).
pub(crate) struct Buckets {
    bounds: Box<[f64]>,
    le: Box<[String]>,
}

impl Buckets {
    fn new(bounds: &[f64]) -> Self {
        let mut bounds: Vec<f64> = bounds.iter().copied().filter(|b| b.is_finite()).collect();
        bounds.sort_by(f64::total_cmp);
        bounds.dedup();
        let le = bounds
            .iter()
            .map(|b| f64_string(*b))
            .chain(std::iter::once("+Inf".to_owned()))
            .collect();
        Buckets {
            bounds: bounds.into(),
            le,
        }
    }
}

pub(crate) struct HistogramCore {
    buckets: Arc<Buckets>,
    /// Non-cumulative: `counts[i]` is observations in `(bounds[i-1], bounds[i]]`; the last
    /// one is above every bound. The count is their sum, so `+Inf` always equals `_count`.
    counts: Box<[AtomicU64]>,
    sum: AtomicF64,
}

impl Core for HistogramCore {
    type Config = Arc<Buckets>;
    fn new(buckets: &Arc<Buckets>) -> Self {
        HistogramCore {
            buckets: Arc::clone(buckets),
            counts: (0..buckets.le.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicF64::new(0.0),
        }
    }
}

impl HistogramCore {
    fn observe(&self, v: f64) {
        // NaN would poison the sum forever.
        if v.is_nan() {
            return;
        }
        let i = self.buckets.bounds.partition_point(|b| *b < v);
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Relaxed);
            self.sum.add(v);
        }
    }

    fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Relaxed)).sum()
    }
}

/// One series of a [`HistogramVec`].
#[derive(Clone)]
pub struct Histogram(Arc<HistogramCore>);

impl Histogram {
    /// Records `v` (NaN is ignored).
    pub fn observe(&self, v: f64) {
        self.0.observe(v);
    }
    /// Records a duration in seconds.
    pub fn observe_duration(&self, d: Duration) {
        self.0.observe(d.as_secs_f64());
    }
    pub fn count(&self) -> u64 {
        self.0.count()
    }
    pub fn sum(&self) -> f64 {
        self.0.sum.get()
    }
}

/// A family of histograms with `N` labels and fixed buckets.
pub struct HistogramVec<const N: usize>(Family<HistogramCore, N>);

impl<const N: usize> HistogramVec<N> {
    /// `buckets` are the upper bounds (`le`); non-finite ones are dropped, the rest sorted
    /// and deduplicated, and `+Inf` is always added.
    pub fn new(
        name: &'static str,
        help: &'static str,
        label_names: [&'static str; N],
        buckets: &[f64],
    ) -> Self {
        HistogramVec(Family::new(
            name,
            help,
            label_names,
            Arc::new(Buckets::new(buckets)),
        ))
    }
    /// The finite upper bounds in use.
    pub fn buckets(&self) -> &[f64] {
        &self.0.config().bounds
    }
    pub fn with_labels(&self, values: [&str; N]) -> Histogram {
        Histogram(self.0.get(values))
    }
    /// Records `v` (NaN is ignored).
    pub fn observe(&self, values: [&str; N], v: f64) {
        self.0.with(values, |h| h.observe(v));
    }
    /// Records a duration in seconds.
    pub fn observe_duration(&self, values: [&str; N], d: Duration) {
        self.observe(values, d.as_secs_f64());
    }
    /// `(count, sum)` of an existing series.
    pub fn get(&self, values: [&str; N]) -> Option<(u64, f64)> {
        self.0.peek(values, |h| (h.count(), h.sum.get()))
    }
    pub fn series_count(&self) -> usize {
        self.0.len()
    }
}

impl<const N: usize> Collector for HistogramVec<N> {
    fn name(&self) -> &str {
        self.0.name
    }
    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
    fn label_names(&self) -> &[&'static str] {
        &self.0.label_names
    }
    fn encode(&self, out: &mut String) {
        let f = &self.0;
        write_header(out, f.name, f.help, MetricType::Histogram);
        f.for_each_sorted(|values, h| {
            let mut cumulative = 0u64;
            for (count, le) in h.counts.iter().zip(h.buckets.le.iter()) {
                cumulative += count.load(Relaxed);
                write_series(
                    out,
                    f.name,
                    "_bucket",
                    &f.label_names,
                    values,
                    Some(("le", le)),
                );
                push_u64(out, cumulative);
                out.push('\n');
            }
            write_series(out, f.name, "_sum", &f.label_names, values, None);
            push_f64(out, h.sum.get());
            out.push('\n');
            write_series(out, f.name, "_count", &f.label_names, values, None);
            push_u64(out, cumulative);
            out.push('\n');
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_sanitized() {
        let h = HistogramVec::new("h", "h", [], &[1.0, f64::NAN, 0.5, 1.0, f64::INFINITY]);
        assert_eq!(h.buckets(), &[0.5, 1.0]);
    }

    #[test]
    fn observations_land_in_le_buckets() {
        let h = HistogramVec::new("h", "h", [], &[0.5, 1.0]);
        let s = h.with_labels([]);
        for v in [0.5, 0.7, 1.0, 1.5, f64::NAN] {
            s.observe(v);
        }
        let counts: Vec<u64> = s.0.counts.iter().map(|c| c.load(Relaxed)).collect();
        assert_eq!(counts, [1, 2, 1]);
        assert_eq!(s.count(), 4);
        assert_eq!(s.sum(), 3.7);
    }

    #[test]
    fn float_counter_ignores_bad_increments() {
        let c = FloatCounterVec::new("c", "c", ["a"]);
        c.inc_by(["x"], 1.5);
        c.inc_by(["x"], -1.0);
        c.inc_by(["x"], f64::NAN);
        c.inc_by(["x"], f64::INFINITY);
        assert_eq!(c.get(["x"]), Some(1.5));
        assert_eq!(c.get(["y"]), None);
    }

    #[test]
    fn unlabelled_families_start_with_their_series() {
        let c = CounterVec::new("c_total", "c", []);
        assert_eq!(c.get([]), Some(0));
        assert_eq!(c.series_count(), 1);
    }

    #[test]
    fn snapshot_zeroes_absent_series_and_sums_repeats() {
        let g = GaugeVec::new("g", "g", ["state"]);
        g.set_snapshot([(["running"], 2.0), (["stopped"], 1.0)]);
        g.set_snapshot([(["running"], 1.0), (["running"], 1.0), (["errored"], 1.0)]);
        assert_eq!(g.get(["running"]), Some(2.0));
        assert_eq!(g.get(["stopped"]), Some(0.0));
        assert_eq!(g.get(["errored"]), Some(1.0));
    }

    #[test]
    fn handles_share_the_series() {
        let c = CounterVec::new("c_total", "c", ["a", "b"]);
        let h = c.with_labels(["x", "y"]);
        h.inc();
        c.inc_by(["x", "y"], 2);
        assert_eq!(h.get(), 3);
        assert_eq!(c.series_count(), 1);
    }
}
