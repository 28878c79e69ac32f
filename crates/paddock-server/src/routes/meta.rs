use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::{AppState, OPENAPI};

pub async fn healthz() -> Response {
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

pub async fn openapi() -> Response {
    ([(CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
