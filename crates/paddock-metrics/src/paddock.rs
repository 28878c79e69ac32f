//! Paddock's own families, with a recording method per event.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::{CounterVec, FloatCounterVec, GaugeVec, HistogramVec, Registry};

/// Request latency: 5 ms … 10 s (Prometheus' defaults).
pub const HTTP_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Runner provisioning: 50 ms (a warm sandbox) … 5 min (an image pull).
pub const PROVISION_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];
/// A command in a runner: 10 ms … 1 h.
pub const EXEC_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];
/// One agent turn (model calls and tools): 0.5 s … 30 min.
pub const TURN_BUCKETS: &[f64] = &[
    0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
];
/// A store operation: 100 µs … 1 s.
pub const STORE_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// The `kind` label of `paddock_model_tokens_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    Input,
    Output,
    CacheRead,
    CacheWrite,
}

impl TokenKind {
    pub const ALL: [TokenKind; 4] = [
        TokenKind::Input,
        TokenKind::Output,
        TokenKind::CacheRead,
        TokenKind::CacheWrite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Input => "input",
            TokenKind::Output => "output",
            TokenKind::CacheRead => "cache_read",
            TokenKind::CacheWrite => "cache_write",
        }
    }
}

/// The tokens of one model call (or several), by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUsage {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
}

impl TokenUsage {
    pub fn get(&self, kind: TokenKind) -> u64 {
        match kind {
            TokenKind::Input => self.input,
            TokenKind::Output => self.output,
            TokenKind::CacheRead => self.cache_read,
            TokenKind::CacheWrite => self.cache_write,
        }
    }
}

/// Keeps the `method` label bounded: the standard methods as they are, anything else `other`.
fn method_label(method: &str) -> &str {
    match method {
        "GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "CONNECT" | "OPTIONS" | "TRACE" | "PATCH" => {
            method
        }
        _ => "other",
    }
}

/// A `u16` in decimal on the stack, so a request's `status` label allocates nothing.
struct U16Label {
    buf: [u8; 5],
    start: usize,
}

impl U16Label {
    fn new(mut n: u16) -> Self {
        let mut buf = [b'0'; 5];
        let mut start = buf.len();
        loop {
            start -= 1;
            buf[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        U16Label { buf, start }
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[self.start..]).unwrap_or("0")
    }
}

/// Every Paddock metric, registered in one [`Registry`]. The server keeps one in an
/// `Arc`, records through the methods below and serves [`PaddockMetrics::render`] at
/// `/metrics` with [`crate::CONTENT_TYPE`].
pub struct PaddockMetrics {
    registry: Registry,
    http_requests: Arc<CounterVec<3>>,
    http_request_duration: Arc<HistogramVec<2>>,
    runners: Arc<GaugeVec<2>>,
    provision_duration: Arc<HistogramVec<1>>,
    exec_duration: Arc<HistogramVec<1>>,
    turn_duration: Arc<HistogramVec<0>>,
    warm_pool_hits: Arc<CounterVec<1>>,
    warm_pool_misses: Arc<CounterVec<1>>,
    model_tokens: Arc<CounterVec<3>>,
    model_cost: Arc<FloatCounterVec<2>>,
    quota_rejections: Arc<CounterVec<1>>,
    rate_limited: Arc<CounterVec<0>>,
    store_duration: Arc<HistogramVec<1>>,
}

impl fmt::Debug for PaddockMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PaddockMetrics")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl PaddockMetrics {
    /// All families, present (with `# HELP`/`# TYPE`) before their first sample;
    /// `paddock_build_info{version}` is 1.
    pub fn new(version: &str) -> Self {
        let r = Registry::new();
        let build_info = r.register_static(GaugeVec::new(
            "paddock_build_info",
            "Paddock build information; always 1.",
            ["version"],
        ));
        build_info.set([version], 1.0);
        PaddockMetrics {
            http_requests: r.register_static(CounterVec::new(
                "paddock_http_requests_total",
                "HTTP requests answered, by method, matched route and status code.",
                ["method", "route", "status"],
            )),
            http_request_duration: r.register_static(HistogramVec::new(
                "paddock_http_request_duration_seconds",
                "Time from receiving an HTTP request to sending its response head, by method and matched route.",
                ["method", "route"],
                HTTP_BUCKETS,
            )),
            runners: r.register_static(GaugeVec::new(
                "paddock_runners",
                "Runners by lifecycle state and backend, as of the last snapshot.",
                ["state", "backend"],
            )),
            provision_duration: r.register_static(HistogramVec::new(
                "paddock_runner_provision_duration_seconds",
                "Time to provision a runner until it is ready, by backend.",
                ["backend"],
                PROVISION_BUCKETS,
            )),
            exec_duration: r.register_static(HistogramVec::new(
                "paddock_runner_exec_duration_seconds",
                "Duration of commands executed in runners, by backend.",
                ["backend"],
                EXEC_BUCKETS,
            )),
            turn_duration: r.register_static(HistogramVec::new(
                "paddock_agent_turn_duration_seconds",
                "Duration of agent turns, from user event to the agent going idle.",
                [],
                TURN_BUCKETS,
            )),
            warm_pool_hits: r.register_static(CounterVec::new(
                "paddock_warm_pool_hits_total",
                "Runner requests served from the warm pool, by execution profile.",
                ["profile"],
            )),
            warm_pool_misses: r.register_static(CounterVec::new(
                "paddock_warm_pool_misses_total",
                "Runner requests the warm pool could not serve, by execution profile.",
                ["profile"],
            )),
            model_tokens: r.register_static(CounterVec::new(
                "paddock_model_tokens_total",
                "Model tokens used, by provider, model and kind (input, output, cache_read, cache_write).",
                ["provider", "model", "kind"],
            )),
            model_cost: r.register_static(FloatCounterVec::new(
                "paddock_model_cost_usd_total",
                "Estimated model cost in US dollars, by provider and model.",
                ["provider", "model"],
            )),
            quota_rejections: r.register_static(CounterVec::new(
                "paddock_quota_rejections_total",
                "Requests rejected because a quota was exhausted, by quota.",
                ["quota"],
            )),
            rate_limited: r.register_static(CounterVec::new(
                "paddock_rate_limited_total",
                "Requests rejected by rate limiting.",
                [],
            )),
            store_duration: r.register_static(HistogramVec::new(
                "paddock_store_operation_duration_seconds",
                "Latency of store operations, by operation.",
                ["operation"],
                STORE_BUCKETS,
            )),
            registry: r,
        }
    }

    /// The registry, to add families of the server's own (names are checked there).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Every family in the Prometheus text format 0.0.4.
    pub fn render(&self) -> String {
        self.registry.render()
    }

    /// One answered HTTP request. `route` must be the matched route template
    /// (`/v1/sessions/{session_id}`), never the raw path, or series grow without bound;
    /// use a fixed value such as `unmatched` for requests no route matched. Methods other
    /// than the standard nine are recorded as `other`.
    pub fn http_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let method = method_label(method);
        let status = U16Label::new(status);
        self.http_requests.inc([method, route, status.as_str()]);
        self.http_request_duration
            .observe_duration([method, route], elapsed);
    }

    /// Replaces `paddock_runners` with a snapshot of `(state, backend, count)`. Series
    /// absent from it drop to 0; repeated pairs add up, so one `(state, backend, 1)` per
    /// runner works as well as pre-counted totals.
    pub fn set_runners<S, B>(&self, snapshot: impl IntoIterator<Item = (S, B, u64)>)
    where
        S: AsRef<str>,
        B: AsRef<str>,
    {
        self.runners.set_snapshot(
            snapshot
                .into_iter()
                .map(|(s, b, n)| ([Label::S(s), Label::B(b)], n as f64)),
        );
    }

    /// A runner became ready on `backend` after `elapsed`.
    pub fn record_provision(&self, backend: &str, elapsed: Duration) {
        self.provision_duration.observe_duration([backend], elapsed);
    }

    /// A command finished in a runner on `backend` after `elapsed`.
    pub fn record_exec(&self, backend: &str, elapsed: Duration) {
        self.exec_duration.observe_duration([backend], elapsed);
    }

    /// An agent turn finished after `elapsed`.
    pub fn record_agent_turn(&self, elapsed: Duration) {
        self.turn_duration.observe_duration([], elapsed);
    }

    /// A runner for `profile` came from the warm pool.
    pub fn warm_pool_hit(&self, profile: &str) {
        self.warm_pool_hits.inc([profile]);
    }

    /// A runner for `profile` had to be provisioned cold.
    pub fn warm_pool_miss(&self, profile: &str) {
        self.warm_pool_misses.inc([profile]);
    }

    /// Tokens of one kind.
    pub fn add_model_tokens(&self, provider: &str, model: &str, kind: TokenKind, tokens: u64) {
        self.model_tokens
            .inc_by([provider, model, kind.as_str()], tokens);
    }

    /// Cost in US dollars; negative, NaN and infinite amounts are ignored.
    pub fn add_model_cost(&self, provider: &str, model: &str, usd: f64) {
        self.model_cost.inc_by([provider, model], usd);
    }

    /// One model call's usage: all four token kinds (zeros included, so every kind's
    /// series exists) and its cost.
    pub fn record_model_usage(
        &self,
        provider: &str,
        model: &str,
        usage: &TokenUsage,
        cost_usd: f64,
    ) {
        for kind in TokenKind::ALL {
            self.add_model_tokens(provider, model, kind, usage.get(kind));
        }
        self.add_model_cost(provider, model, cost_usd);
    }

    /// A request refused because `quota` is exhausted.
    pub fn quota_rejected(&self, quota: &str) {
        self.quota_rejections.inc([quota]);
    }

    /// A request refused by rate limiting.
    pub fn rate_limited(&self) {
        self.rate_limited.inc([]);
    }

    /// A store operation took `elapsed`.
    pub fn record_store_operation(&self, operation: &str, elapsed: Duration) {
        self.store_duration.observe_duration([operation], elapsed);
    }
}

/// Two `AsRef<str>` types as one, for a label array.
enum Label<S, B> {
    S(S),
    B(B),
}

impl<S: AsRef<str>, B: AsRef<str>> AsRef<str> for Label<S, B> {
    fn as_ref(&self) -> &str {
        match self {
            Label::S(s) => s.as_ref(),
            Label::B(b) => b.as_ref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::check;

    #[test]
    fn every_family_passes_the_registry_checks() {
        let m = PaddockMetrics::new("0.1.0");
        let all = m.registry.collectors();
        assert_eq!(all.len(), 14);
        for (i, c) in all.iter().enumerate() {
            assert_eq!(check(c.as_ref(), &all[..i]), Ok(()), "{}", c.name());
        }
    }

    #[test]
    fn status_labels() {
        for n in [0u16, 7, 42, 200, 404, 503, 65535] {
            assert_eq!(U16Label::new(n).as_str(), n.to_string());
        }
    }

    #[test]
    fn methods_are_bounded() {
        assert_eq!(method_label("GET"), "GET");
        assert_eq!(method_label("PATCH"), "PATCH");
        assert_eq!(method_label("get"), "other");
        assert_eq!(method_label("BREW"), "other");
    }
}
