//! The set of families rendered at `/metrics`.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use crate::MetricsError;

/// The Prometheus type of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
}

impl MetricType {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
        }
    }
}

/// A family the registry can render. Implemented by [`crate::CounterVec`],
/// [`crate::FloatCounterVec`], [`crate::GaugeVec`] and [`crate::HistogramVec`].
pub trait Collector: Send + Sync {
    fn name(&self) -> &str;
    fn metric_type(&self) -> MetricType;
    fn label_names(&self) -> &[&'static str];
    /// Appends `# HELP`, `# TYPE` and every sample line, in the 0.0.4 text format.
    fn encode(&self, out: &mut String);
}

/// Families in registration order; renders them all.
#[derive(Default)]
pub struct Registry {
    collectors: RwLock<Vec<Arc<dyn Collector>>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let collectors = self
            .collectors
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        f.debug_list()
            .entries(collectors.iter().map(|c| c.name().to_owned()))
            .finish()
    }
}

fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

/// The sample names a family writes.
fn sample_names(c: &dyn Collector) -> Vec<String> {
    let name = c.name();
    match c.metric_type() {
        MetricType::Histogram => vec![
            name.to_owned(),
            format!("{name}_bucket"),
            format!("{name}_sum"),
            format!("{name}_count"),
        ],
        _ => vec![name.to_owned()],
    }
}

/// Checks `c`'s names, alone and against the families already in `existing`.
pub(crate) fn check(
    c: &dyn Collector,
    existing: &[Arc<dyn Collector>],
) -> Result<(), MetricsError> {
    let name = c.name();
    if !valid_metric_name(name) {
        return Err(MetricsError::InvalidMetricName(name.to_owned()));
    }
    let labels = c.label_names();
    for (i, label) in labels.iter().enumerate() {
        let reserved = c.metric_type() == MetricType::Histogram && *label == "le";
        if !valid_label_name(label) || reserved || labels[..i].contains(label) {
            return Err(MetricsError::InvalidLabelName {
                metric: name.to_owned(),
                label: (*label).to_owned(),
            });
        }
    }
    let mine = sample_names(c);
    for other in existing {
        let theirs = sample_names(other.as_ref());
        if mine.iter().any(|n| theirs.contains(n)) {
            return Err(MetricsError::Duplicate(name.to_owned()));
        }
    }
    Ok(())
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a family after checking its metric and label names and that none of its
    /// sample names is taken; returns it shared, to record into.
    pub fn register<C: Collector + 'static>(&self, collector: C) -> Result<Arc<C>, MetricsError> {
        let collector = Arc::new(collector);
        let mut collectors = self
            .collectors
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        check(collector.as_ref(), &collectors)?;
        collectors.push(collector.clone());
        Ok(collector)
    }

    /// For families whose names are fixed in this crate and checked by its tests.
    pub(crate) fn register_static<C: Collector + 'static>(&self, collector: C) -> Arc<C> {
        let collector = Arc::new(collector);
        self.collectors
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(collector.clone());
        collector
    }

    pub(crate) fn collectors(&self) -> Vec<Arc<dyn Collector>> {
        self.collectors
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Appends every family to `out`, in registration order.
    pub fn encode(&self, out: &mut String) {
        for c in self.collectors() {
            c.encode(out);
        }
    }

    /// Every family in the Prometheus text format 0.0.4 (serve with [`crate::CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        self.encode(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CounterVec, GaugeVec, HistogramVec};

    #[test]
    fn names_are_checked() {
        let r = Registry::new();
        assert!(r
            .register(CounterVec::new("ok_total", "h", ["a", "b_2"]))
            .is_ok());
        assert_eq!(
            r.register(CounterVec::new("9bad", "h", [])).err(),
            Some(MetricsError::InvalidMetricName("9bad".into()))
        );
        assert_eq!(
            r.register(CounterVec::new("", "h", [])).err(),
            Some(MetricsError::InvalidMetricName("".into()))
        );
        for label in ["__x", "a-b", "", "1a"] {
            assert!(matches!(
                r.register(GaugeVec::new("g", "h", [label])),
                Err(MetricsError::InvalidLabelName { .. })
            ));
        }
        assert!(matches!(
            r.register(GaugeVec::new("g", "h", ["a", "a"])),
            Err(MetricsError::InvalidLabelName { .. })
        ));
        assert!(matches!(
            r.register(HistogramVec::new("h", "h", ["le"], &[1.0])),
            Err(MetricsError::InvalidLabelName { .. })
        ));
        // `le` is an ordinary label on a gauge.
        assert!(r.register(GaugeVec::new("g_le", "h", ["le"])).is_ok());
    }

    #[test]
    fn duplicates_are_refused_including_histogram_series() {
        let r = Registry::new();
        assert!(r
            .register(HistogramVec::new("lat", "h", [], &[1.0]))
            .is_ok());
        assert_eq!(
            r.register(GaugeVec::new("lat", "h", [])).err(),
            Some(MetricsError::Duplicate("lat".into()))
        );
        assert_eq!(
            r.register(CounterVec::new("lat_count", "h", [])).err(),
            Some(MetricsError::Duplicate("lat_count".into()))
        );
        assert!(r.register(GaugeVec::new("lat_other", "h", [])).is_ok());
        assert_eq!(format!("{r:?}"), r#"["lat", "lat_other"]"#);
    }
}
