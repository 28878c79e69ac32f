use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::{AppState, OPENAPI};

/// `{"status": "ok"}`, or `503 {"status": "draining"}` once a SIGTERM arrived (so that
/// a load balancer sends new work elsewhere).
pub async fn healthz(State(s): State<AppState>) -> Response {
    if s.draining.load(std::sync::atomic::Ordering::SeqCst) {
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "draining"})),
        )
            .into_response();
    }
    axum::Json(json!({"status": "ok"})).into_response()
}

/// The endpoint map: every route the server answers.
pub async fn index(State(s): State<AppState>) -> Response {
    let endpoints: Vec<_> = s
        .routes
        .iter()
        .map(|(m, p)| json!({"method": m, "path": p}))
        .collect();
    axum::Json(json!({
        "type": "paddock",
        "name": "Paddock",
        "version": env!("CARGO_PKG_VERSION"),
        "documentation": "/openapi.json",
        "endpoints": endpoints,
    }))
    .into_response()
}

/// Prometheus text exposition (no token needed).
pub async fn metrics(State(s): State<AppState>) -> Response {
    let runners = s.manager.all_runners().await.unwrap_or_default();
    let mut counts: std::collections::BTreeMap<(String, String), u64> = Default::default();
    for r in runners
        .iter()
        .filter(|r| r.state != paddock_core::lifecycle::RunnerState::Destroyed)
    {
        *counts
            .entry((r.state.to_string(), r.backend.clone()))
            .or_default() += 1;
    }
    s.metrics.set_runners(
        counts
            .iter()
            .map(|((st, b), n)| (st.as_str(), b.as_str(), *n)),
    );
    (
        [(CONTENT_TYPE, paddock_metrics::CONTENT_TYPE)],
        s.metrics.render(),
    )
        .into_response()
}

pub async fn openapi() -> Response {
    ([(CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
