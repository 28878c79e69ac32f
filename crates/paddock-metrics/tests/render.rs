//! The rendered text, parsed back with a real Prometheus text-format parser
//! (`openmetrics-parser`, which resolves escapes and checks histogram structure).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use openmetrics_parser::prometheus::parse_prometheus;
use openmetrics_parser::{
    HistogramValue, MetricsExposition, PrometheusType, PrometheusValue, Sample,
};
use paddock_metrics::{
    CounterVec, FloatCounterVec, GaugeVec, HistogramVec, PaddockMetrics, Registry, TokenKind,
    TokenUsage, HTTP_BUCKETS,
};

type Exposition = MetricsExposition<PrometheusType, PrometheusValue>;

fn parse(text: &str) -> Exposition {
    match parse_prometheus(text) {
        Ok(e) => e,
        Err(e) => panic!("render does not parse: {e:?}\n{text}"),
    }
}

/// The sample of `family` whose labels are exactly `labels`.
fn sample<'a>(
    e: &'a Exposition,
    family: &str,
    labels: &[(&str, &str)],
) -> &'a Sample<PrometheusValue> {
    let fam = e
        .families
        .get(family)
        .unwrap_or_else(|| panic!("no family {family}"));
    let want: HashMap<&str, &str> = labels.iter().copied().collect();
    fam.iter_samples()
        .find(|s| {
            let set = s.get_labelset().expect("labelset");
            let have: HashMap<&str, &str> =
                set.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            have == want
        })
        .unwrap_or_else(|| panic!("no sample {family}{labels:?}"))
}

fn counter(e: &Exposition, family: &str, labels: &[(&str, &str)]) -> f64 {
    match &sample(e, family, labels).value {
        PrometheusValue::Counter(c) => c.value.as_f64(),
        v => panic!("{family} is not a counter: {v:?}"),
    }
}

fn gauge(e: &Exposition, family: &str, labels: &[(&str, &str)]) -> f64 {
    match &sample(e, family, labels).value {
        PrometheusValue::Gauge(g) => g.as_f64(),
        v => panic!("{family} is not a gauge: {v:?}"),
    }
}

fn histogram<'a>(e: &'a Exposition, family: &str, labels: &[(&str, &str)]) -> &'a HistogramValue {
    match &sample(e, family, labels).value {
        PrometheusValue::Histogram(h) => h,
        v => panic!("{family} is not a histogram: {v:?}"),
    }
}

/// `(le, cumulative count)` pairs, checked to be cumulative, with `+Inf` equal to `_count`.
fn buckets(h: &HistogramValue) -> Vec<(f64, u64)> {
    let out: Vec<(f64, u64)> = h
        .buckets
        .iter()
        .map(|b| (b.upper_bound, b.count.as_f64() as u64))
        .collect();
    for w in out.windows(2) {
        assert!(
            w[0].0 < w[1].0 && w[0].1 <= w[1].1,
            "not cumulative: {out:?}"
        );
    }
    let last = out.last().expect("a bucket");
    assert_eq!(last.0, f64::INFINITY);
    assert_eq!(Some(last.1), h.count, "+Inf != _count");
    out
}

const ALL_FAMILIES: [(&str, PrometheusType); 14] = [
    ("paddock_build_info", PrometheusType::Gauge),
    ("paddock_http_requests_total", PrometheusType::Counter),
    (
        "paddock_http_request_duration_seconds",
        PrometheusType::Histogram,
    ),
    ("paddock_runners", PrometheusType::Gauge),
    (
        "paddock_runner_provision_duration_seconds",
        PrometheusType::Histogram,
    ),
    (
        "paddock_runner_exec_duration_seconds",
        PrometheusType::Histogram,
    ),
    (
        "paddock_agent_turn_duration_seconds",
        PrometheusType::Histogram,
    ),
    ("paddock_warm_pool_hits_total", PrometheusType::Counter),
    ("paddock_warm_pool_misses_total", PrometheusType::Counter),
    ("paddock_model_tokens_total", PrometheusType::Counter),
    ("paddock_model_cost_usd_total", PrometheusType::Counter),
    ("paddock_quota_rejections_total", PrometheusType::Counter),
    ("paddock_rate_limited_total", PrometheusType::Counter),
    (
        "paddock_store_operation_duration_seconds",
        PrometheusType::Histogram,
    ),
];

#[test]
fn every_family_is_present_before_any_sample() {
    let m = PaddockMetrics::new("1.2.3");
    let text = m.render();
    let e = parse(&text);
    for (name, kind) in ALL_FAMILIES {
        let fam = e
            .families
            .get(name)
            .unwrap_or_else(|| panic!("missing {name}\n{text}"));
        assert_eq!(fam.family_type, kind, "{name}");
        assert!(!fam.help.is_empty(), "{name} has no help");
        assert!(text.contains(&format!("# HELP {name} ")), "{name}");
        assert!(text.contains(&format!("# TYPE {name} ")), "{name}");
    }
    assert_eq!(e.families.len(), ALL_FAMILIES.len());
    assert_eq!(
        gauge(&e, "paddock_build_info", &[("version", "1.2.3")]),
        1.0
    );
    // Label-less families show their single series at zero.
    assert_eq!(counter(&e, "paddock_rate_limited_total", &[]), 0.0);
    let turn = histogram(&e, "paddock_agent_turn_duration_seconds", &[]);
    assert_eq!(turn.count, Some(0));
    assert!(buckets(turn).iter().all(|(_, n)| *n == 0));
    // Labelled ones have no series yet.
    assert_eq!(
        e.families["paddock_http_requests_total"]
            .iter_samples()
            .count(),
        0
    );
}

#[test]
fn recorded_values_parse_back() {
    let m = PaddockMetrics::new("0.1.0");
    let route = "/v1/sessions/{session_id}";
    m.http_request("GET", route, 200, Duration::from_millis(3));
    m.http_request("GET", route, 200, Duration::from_millis(30));
    m.http_request("GET", route, 404, Duration::from_millis(2));
    m.http_request("POST", "/v1/sessions", 201, Duration::from_secs(20));
    m.http_request("BREW", "unmatched", 405, Duration::from_millis(1));

    m.set_runners([("running", "local", 5), ("stopped", "docker", 2)]);
    m.set_runners([
        ("running", "local", 3),
        ("running", "local", 1),
        ("errored", "local", 1),
    ]);

    m.record_provision("local", Duration::from_millis(80));
    m.record_provision("local", Duration::from_secs(3));
    m.record_exec("docker", Duration::from_millis(500));
    m.record_agent_turn(Duration::from_secs(7));
    m.warm_pool_hit("default");
    m.warm_pool_hit("default");
    m.warm_pool_miss("gpu");
    let usage = TokenUsage {
        input: 1000,
        output: 200,
        cache_read: 50,
        cache_write: 0,
    };
    m.record_model_usage("anthropic", "claude-sonnet-4-6", &usage, 0.25);
    m.record_model_usage("anthropic", "claude-sonnet-4-6", &usage, 0.5);
    m.add_model_tokens("openai", "gpt-5", TokenKind::Output, 7);
    m.add_model_cost("openai", "gpt-5", 0.125);
    m.quota_rejected("sessions");
    m.quota_rejected("sessions");
    m.quota_rejected("runners");
    m.rate_limited();
    m.record_store_operation("get_runner", Duration::from_micros(300));
    m.record_store_operation("get_runner", Duration::from_micros(700));

    let text = m.render();
    let e = parse(&text);

    let req = |method, route, status| {
        counter(
            &e,
            "paddock_http_requests_total",
            &[("method", method), ("route", route), ("status", status)],
        )
    };
    assert_eq!(req("GET", route, "200"), 2.0);
    assert_eq!(req("GET", route, "404"), 1.0);
    assert_eq!(req("POST", "/v1/sessions", "201"), 1.0);
    assert_eq!(req("other", "unmatched", "405"), 1.0);

    let get = histogram(
        &e,
        "paddock_http_request_duration_seconds",
        &[("method", "GET"), ("route", route)],
    );
    assert_eq!(get.count, Some(3));
    let sum = get.sum.expect("a sum").as_f64();
    assert!((sum - 0.035).abs() < 1e-12, "{sum}");
    let b = buckets(get);
    assert_eq!(b.len(), HTTP_BUCKETS.len() + 1);
    let at = |le: f64| b.iter().find(|(l, _)| *l == le).map(|(_, n)| *n);
    assert_eq!(at(0.001), None);
    assert_eq!(at(0.0025), None);
    assert_eq!(at(0.005), Some(2)); // 2 ms and 3 ms
    assert_eq!(at(0.025), Some(2));
    assert_eq!(at(0.05), Some(3)); // 30 ms
    assert_eq!(at(10.0), Some(3));
    let post = histogram(
        &e,
        "paddock_http_request_duration_seconds",
        &[("method", "POST"), ("route", "/v1/sessions")],
    );
    let pb = buckets(post);
    assert_eq!(pb[pb.len() - 2], (10.0, 0)); // 20 s is only in +Inf
    assert_eq!(pb[pb.len() - 1], (f64::INFINITY, 1));

    let runners = |state, backend| {
        gauge(
            &e,
            "paddock_runners",
            &[("state", state), ("backend", backend)],
        )
    };
    assert_eq!(runners("running", "local"), 4.0);
    assert_eq!(runners("errored", "local"), 1.0);
    assert_eq!(runners("stopped", "docker"), 0.0);

    let prov = histogram(
        &e,
        "paddock_runner_provision_duration_seconds",
        &[("backend", "local")],
    );
    assert_eq!(prov.count, Some(2));
    assert!((prov.sum.expect("sum").as_f64() - 3.08).abs() < 1e-12);
    assert_eq!(
        buckets(prov).iter().find(|(l, _)| *l == 0.1).map(|x| x.1),
        Some(1)
    );
    let exec = histogram(
        &e,
        "paddock_runner_exec_duration_seconds",
        &[("backend", "docker")],
    );
    assert_eq!(exec.count, Some(1));
    assert_eq!(exec.sum.expect("sum").as_f64(), 0.5);
    let turn = histogram(&e, "paddock_agent_turn_duration_seconds", &[]);
    assert_eq!(turn.count, Some(1));
    assert_eq!(turn.sum.expect("sum").as_f64(), 7.0);

    assert_eq!(
        counter(
            &e,
            "paddock_warm_pool_hits_total",
            &[("profile", "default")]
        ),
        2.0
    );
    assert_eq!(
        counter(&e, "paddock_warm_pool_misses_total", &[("profile", "gpu")]),
        1.0
    );

    let tokens = |p, mdl, kind| {
        counter(
            &e,
            "paddock_model_tokens_total",
            &[("provider", p), ("model", mdl), ("kind", kind)],
        )
    };
    assert_eq!(tokens("anthropic", "claude-sonnet-4-6", "input"), 2000.0);
    assert_eq!(tokens("anthropic", "claude-sonnet-4-6", "output"), 400.0);
    assert_eq!(
        tokens("anthropic", "claude-sonnet-4-6", "cache_read"),
        100.0
    );
    assert_eq!(tokens("anthropic", "claude-sonnet-4-6", "cache_write"), 0.0);
    assert_eq!(tokens("openai", "gpt-5", "output"), 7.0);
    let cost = |p, mdl| {
        counter(
            &e,
            "paddock_model_cost_usd_total",
            &[("provider", p), ("model", mdl)],
        )
    };
    assert_eq!(cost("anthropic", "claude-sonnet-4-6"), 0.75);
    assert_eq!(cost("openai", "gpt-5"), 0.125);

    assert_eq!(
        counter(
            &e,
            "paddock_quota_rejections_total",
            &[("quota", "sessions")]
        ),
        2.0
    );
    assert_eq!(
        counter(
            &e,
            "paddock_quota_rejections_total",
            &[("quota", "runners")]
        ),
        1.0
    );
    assert_eq!(counter(&e, "paddock_rate_limited_total", &[]), 1.0);

    let store = histogram(
        &e,
        "paddock_store_operation_duration_seconds",
        &[("operation", "get_runner")],
    );
    assert_eq!(store.count, Some(2));
    assert!((store.sum.expect("sum").as_f64() - 0.001).abs() < 1e-12);
    let sb = buckets(store);
    let at = |le: f64| sb.iter().find(|(l, _)| *l == le).map(|(_, n)| *n);
    assert_eq!(at(0.00025), Some(0));
    assert_eq!(at(0.0005), Some(1));
    assert_eq!(at(0.001), Some(2));
}

#[test]
fn label_values_with_quote_backslash_and_newline_round_trip() {
    let m = PaddockMetrics::new("0.1.0");
    let route = "/weird/\"quoted\"/back\\slash/new\nline/{id},x=y}";
    m.http_request("GET", route, 500, Duration::from_millis(1));
    m.http_request("GET", route, 500, Duration::from_millis(1));
    let text = m.render();
    assert!(
        text.contains(r#"route="/weird/\"quoted\"/back\\slash/new\nline/{id},x=y}""#),
        "{text}"
    );
    let e = parse(&text);
    let labels = [("method", "GET"), ("route", route), ("status", "500")];
    assert_eq!(counter(&e, "paddock_http_requests_total", &labels), 2.0);
    let h = histogram(
        &e,
        "paddock_http_request_duration_seconds",
        &[("method", "GET"), ("route", route)],
    );
    assert_eq!(h.count, Some(2));
    // And the version label of build info, too.
    let m = PaddockMetrics::new("v\"1\\\n");
    assert_eq!(
        gauge(
            &parse(&m.render()),
            "paddock_build_info",
            &[("version", "v\"1\\\n")]
        ),
        1.0
    );
}

#[test]
fn concurrent_recording_sums_exactly() {
    const THREADS: usize = 8;
    const PER_THREAD: u64 = 5_000;
    let m = Arc::new(PaddockMetrics::new("0.1.0"));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let m = Arc::clone(&m);
            thread::spawn(move || {
                let own = format!("t{t}");
                for i in 0..PER_THREAD {
                    m.http_request("GET", "/shared", 200, Duration::from_millis(i % 20));
                    m.http_request("GET", &own, 200, Duration::from_millis(1));
                    m.add_model_cost("p", "m", 0.5);
                    m.add_model_tokens("p", "m", TokenKind::Input, 3);
                    m.rate_limited();
                    if i % 100 == 0 {
                        // Rendering while others record must not block or break them.
                        let _ = m.render();
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
    let total = (THREADS as u64) * PER_THREAD;
    let e = parse(&m.render());
    let shared = [("method", "GET"), ("route", "/shared"), ("status", "200")];
    assert_eq!(
        counter(&e, "paddock_http_requests_total", &shared) as u64,
        total
    );
    for t in 0..THREADS {
        let own = format!("t{t}");
        let labels = [
            ("method", "GET"),
            ("route", own.as_str()),
            ("status", "200"),
        ];
        assert_eq!(
            counter(&e, "paddock_http_requests_total", &labels) as u64,
            PER_THREAD
        );
    }
    let h = histogram(
        &e,
        "paddock_http_request_duration_seconds",
        &[("method", "GET"), ("route", "/shared")],
    );
    assert_eq!(h.count, Some(total));
    // Each thread observes 0..20 ms 250 times over: 190 ms per cycle; exact in binary
    // up to float rounding of the millisecond values.
    let expected_sum = (THREADS as f64) * (PER_THREAD as f64 / 20.0) * 0.19;
    let sum = h.sum.expect("sum").as_f64();
    assert!((sum - expected_sum).abs() < 1e-6, "{sum} vs {expected_sum}");
    buckets(h);
    assert_eq!(
        counter(
            &e,
            "paddock_model_cost_usd_total",
            &[("provider", "p"), ("model", "m")]
        ),
        total as f64 * 0.5
    );
    assert_eq!(
        counter(
            &e,
            "paddock_model_tokens_total",
            &[("provider", "p"), ("model", "m"), ("kind", "input")]
        ) as u64,
        total * 3
    );
    assert_eq!(counter(&e, "paddock_rate_limited_total", &[]) as u64, total);
}

#[test]
fn a_registry_of_custom_families_renders_and_parses() {
    let r = Registry::new();
    let c = r
        .register(CounterVec::new("x_events_total", "Events.", ["kind"]))
        .expect("register");
    let f = r
        .register(FloatCounterVec::new("x_seconds_total", "Seconds.", []))
        .expect("register");
    let g = r
        .register(GaugeVec::new(
            "x_queue_depth",
            "Help with \\ and\nnewline.",
            ["queue"],
        ))
        .expect("register");
    let h = r
        .register(HistogramVec::new(
            "x_size_bytes",
            "Sizes.",
            ["op"],
            &[10.0, 100.0],
        ))
        .expect("register");
    assert!(r
        .register(CounterVec::new("x_events_total", "Again.", []))
        .is_err());

    let a = c.with_labels(["a"]);
    a.inc();
    a.inc_by(4);
    f.with_labels([]).inc_by(1.25);
    g.set(["q"], 7.0);
    g.add(["q"], -2.5);
    let hist = h.with_labels(["read"]);
    for v in [5.0, 10.0, 50.0, 1000.0] {
        hist.observe(v);
    }

    let text = r.render();
    let e = parse(&text);
    assert_eq!(counter(&e, "x_events_total", &[("kind", "a")]), 5.0);
    assert_eq!(counter(&e, "x_seconds_total", &[]), 1.25);
    assert_eq!(gauge(&e, "x_queue_depth", &[("queue", "q")]), 4.5);
    assert_eq!(
        e.families["x_queue_depth"].help,
        "Help with \\ and\nnewline."
    );
    let hv = histogram(&e, "x_size_bytes", &[("op", "read")]);
    assert_eq!(buckets(hv), vec![(10.0, 2), (100.0, 3), (f64::INFINITY, 4)]);
    assert_eq!(hv.sum.expect("sum").as_f64(), 1065.0);
    assert!(
        text.contains("x_size_bytes_bucket{op=\"read\",le=\"+Inf\"} 4\n"),
        "{text}"
    );
    assert!(
        text.contains("x_size_bytes_count{op=\"read\"} 4\n"),
        "{text}"
    );
}

/// The checks above mean something only if the parser refuses what Prometheus refuses.
#[test]
fn the_parser_is_strict() {
    let bad = [
        // An unescaped quote inside a label value.
        "# TYPE a counter\na{r=\"x\"y\"} 1\n",
        // A raw newline inside a label value.
        "# TYPE a counter\na{r=\"x\ny\"} 1\n",
        // Buckets that are not cumulative.
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
        // No +Inf bucket.
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",
    ];
    for text in bad {
        assert!(parse_prometheus(text).is_err(), "accepted: {text:?}");
    }
}
