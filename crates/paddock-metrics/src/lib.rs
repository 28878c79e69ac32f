//! Paddock's Prometheus metrics, rendered as text (exposition format 0.0.4) for `/metrics`.
//!
//! Hand-rolled and dependency-light: counter, float counter, gauge and histogram
//! families ([`CounterVec`], [`FloatCounterVec`], [`GaugeVec`], [`HistogramVec`]) with
//! label names fixed at compile time (`[&str; N]`), kept in a [`Registry`] value (no
//! global state). Recording hashes the borrowed label values and takes a shared lock plus
//! one atomic operation; only a label tuple's first sample allocates.
//!
//! [`PaddockMetrics`] declares Paddock's families and a method per event:
//!
//! ```
//! use std::{sync::Arc, time::Duration};
//! use paddock_metrics::{PaddockMetrics, TokenUsage, CONTENT_TYPE};
//!
//! let metrics = Arc::new(PaddockMetrics::new(env!("CARGO_PKG_VERSION")));
//! metrics.http_request("GET", "/v1/sessions/{session_id}", 200, Duration::from_millis(3));
//! metrics.set_runners([("running", "local", 2), ("stopped", "local", 1)]);
//! let usage = TokenUsage { input: 1200, output: 300, ..Default::default() };
//! metrics.record_model_usage("anthropic", "claude-sonnet-4-6", &usage, 0.0081);
//!
//! let body = metrics.render(); // serve with `Content-Type: CONTENT_TYPE`
//! assert!(body.contains("paddock_http_requests_total{method=\"GET\",route=\"/v1/sessions/{session_id}\",status=\"200\"} 1\n"));
//! assert!(CONTENT_TYPE.starts_with("text/plain; version=0.0.4"));
//! ```

mod error;
mod family;
mod metric;
mod paddock;
mod registry;
mod text;

pub use error::MetricsError;
pub use metric::{
    Counter, CounterVec, FloatCounter, FloatCounterVec, Gauge, GaugeVec, Histogram, HistogramVec,
};
pub use paddock::{
    PaddockMetrics, TokenKind, TokenUsage, EXEC_BUCKETS, HTTP_BUCKETS, PROVISION_BUCKETS,
    STORE_BUCKETS, TURN_BUCKETS,
};
pub use registry::{Collector, MetricType, Registry};
pub use text::CONTENT_TYPE;
