//! A request id per request: in the `request-id` header, in error bodies and in logs.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use paddock_core::id;
use std::time::Instant;
use tracing::Instrument;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being handled, when called inside one.
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

pub async fn middleware(
    axum::extract::State(s): axum::extract::State<crate::AppState>,
    req: Request,
    next: Next,
) -> Response {
    let rid = id::new(id::REQUEST);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    // Requests about one session or runner carry its id on every log line.
    let segments: Vec<&str> = path.split('/').collect();
    let id_of = |kind: &str| match segments.as_slice() {
        ["", "v1", k, id, ..] if *k == kind => Some(id.to_string()),
        _ => None,
    };
    let span = tracing::info_span!(
        "request",
        request_id = %rid,
        %method,
        %path,
        session_id = tracing::field::Empty,
        runner_id = tracing::field::Empty,
    );
    if let Some(sid) = id_of("sessions") {
        span.record("session_id", sid.as_str());
    }
    if let Some(run) = id_of("runners") {
        span.record("runner_id", run.as_str());
    }
    let started = Instant::now();
    let mut resp = REQUEST_ID
        .scope(rid.clone(), next.run(req).instrument(span.clone()))
        .await;
    s.metrics.http_request(
        method.as_str(),
        &route,
        resp.status().as_u16(),
        started.elapsed(),
    );
    if let Ok(v) = HeaderValue::from_str(&rid) {
        resp.headers_mut().insert("request-id", v);
    }
    span.in_scope(|| {
        tracing::info!(
            status = resp.status().as_u16(),
            ms = started.elapsed().as_secs_f64() * 1000.0,
            "handled"
        )
    });
    resp
}
