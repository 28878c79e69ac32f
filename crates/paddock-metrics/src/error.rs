/// Why a family could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricsError {
    /// A metric name outside `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    #[error("invalid metric name {0:?}")]
    InvalidMetricName(String),
    /// A label name outside `[a-zA-Z_][a-zA-Z0-9_]*`, reserved (`__…`, `le` on a histogram)
    /// or repeated within one family.
    #[error("metric {metric}: invalid label name {label:?}")]
    InvalidLabelName { metric: String, label: String },
    /// A family whose name, or one of its series names (`_bucket`, `_sum`, `_count`), is
    /// already served by a registered family.
    #[error("metric {0:?} is already registered")]
    Duplicate(String),
}
