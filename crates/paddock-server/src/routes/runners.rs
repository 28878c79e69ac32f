use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use paddock_backend::worker::worker_error;
use paddock_core::lifecycle::RunnerState;
use paddock_store::{Order, RunnerFilter};
use serde_json::{json, Value};

use super::{page_json, to_value};
use crate::error::{ApiResult, ServerError};
use crate::extract::{Body, Id, Json, PathId, Query};
use crate::manager::CreateRunner;
use crate::AppState;

pub async fn list(State(s): State<AppState>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let mut q = Query::parse(q.as_deref())?;
    let states = q
        .list("states")
        .into_iter()
        .map(|st| {
            RunnerState::parse(&st).ok_or_else(|| {
                ServerError::invalid("states[]", format!("unknown runner state {st:?}"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let filter = RunnerFilter {
        states,
        session_id: q.str("session_id")?,
        backend: q.str("backend")?,
    };
    let page = q.page(20, 100, Some(Order::Desc))?;
    q.finish()?;
    let page = s.store.list_runners(filter, page).await?;
    Ok(page_json(page, false, to_value))
}

pub async fn retrieve(State(s): State<AppState>, Id(runner_id): Id) -> ApiResult<Response> {
    Ok(axum::Json(s.store.get_runner(&runner_id).await?).into_response())
}

pub async fn create(
    State(s): State<AppState>,
    Json(req): Json<CreateRunner>,
) -> ApiResult<Response> {
    Ok(axum::Json(s.manager.create(req).await?).into_response())
}

pub async fn stop(State(s): State<AppState>, Id(id): Id) -> ApiResult<Response> {
    Ok(axum::Json(s.manager.stop(&id).await?).into_response())
}

pub async fn start(State(s): State<AppState>, Id(id): Id) -> ApiResult<Response> {
    Ok(axum::Json(s.manager.start(&id).await?).into_response())
}

pub async fn destroy(State(s): State<AppState>, Id(id): Id) -> ApiResult<Response> {
    Ok(axum::Json(s.manager.destroy(&id).await?).into_response())
}

/// Sends a request to the runner's worker and streams its answer back.
async fn forward(
    s: &AppState,
    id: &str,
    method: Method,
    worker_path: &str,
    query: Option<String>,
    body: Bytes,
    content_type: Option<&str>,
) -> ApiResult<Response> {
    let client = s.manager.worker(id).await?;
    let pq = match query {
        Some(q) if !q.is_empty() => format!("{worker_path}?{q}"),
        _ => worker_path.to_string(),
    };
    let resp = client.request(method, &pq, body, content_type).await?;
    let status = resp.status();
    if !status.is_success() {
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        return Err(ServerError::Backend(worker_error(status.as_u16(), &bytes)));
    }
    // The worker's own headers (content type and length, X-Paddock-*) pass through;
    // hop-by-hop ones do not.
    let (parts, body) = resp.into_parts();
    let mut out = Response::new(axum::body::Body::new(body));
    *out.status_mut() = status;
    for (name, value) in &parts.headers {
        if !matches!(
            name.as_str(),
            "connection" | "transfer-encoding" | "keep-alive" | "date"
        ) {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    Ok(out)
}

/// `POST /v1/runners/{id}/exec`: the worker's NDJSON stream, as it is produced.
pub async fn exec(State(s): State<AppState>, Id(id): Id, Body(body): Body) -> ApiResult<Response> {
    // Refuse what is not a JSON object here, with the API's own error shape.
    let v: Value = paddock_core::common::parse_json(&body)?;
    if !v.is_object() {
        return Err(ServerError::invalid("body", "expected a JSON object"));
    }
    forward(
        &s,
        &id,
        Method::POST,
        "/exec",
        None,
        body,
        Some("application/json"),
    )
    .await
}

pub async fn files_read(
    State(s): State<AppState>,
    PathId(id): PathId,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    forward(&s, &id, Method::GET, "/files/read", q, Bytes::new(), None).await
}

pub async fn files_write(
    State(s): State<AppState>,
    PathId(id): PathId,
    RawQuery(q): RawQuery,
    Body(body): Body,
) -> ApiResult<Response> {
    forward(
        &s,
        &id,
        Method::PUT,
        "/files/write",
        q,
        body,
        Some("application/octet-stream"),
    )
    .await
}

pub async fn files_list(
    State(s): State<AppState>,
    PathId(id): PathId,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    forward(&s, &id, Method::GET, "/files/list", q, Bytes::new(), None).await
}

pub async fn files_stat(
    State(s): State<AppState>,
    PathId(id): PathId,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    forward(&s, &id, Method::GET, "/files/stat", q, Bytes::new(), None).await
}

pub async fn files_delete(
    State(s): State<AppState>,
    PathId(id): PathId,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    forward(&s, &id, Method::DELETE, "/files", q, Bytes::new(), None).await
}

/// `POST /v1/runners/{id}/cancel`: stops running commands (`{"id"}`, or all).
pub async fn cancel(
    State(s): State<AppState>,
    Id(id): Id,
    Body(body): Body,
) -> ApiResult<Response> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        Bytes::from_static(b"{}")
    } else {
        body
    };
    let v: Value = paddock_core::common::parse_json(&body)?;
    if !v.is_object() {
        return Err(ServerError::invalid("body", "expected a JSON object"));
    }
    forward(
        &s,
        &id,
        Method::POST,
        "/cancel",
        None,
        body,
        Some("application/json"),
    )
    .await
}

/// `GET /v1/runners/{id}/status`: the worker's live resource figures.
pub async fn status(State(s): State<AppState>, Id(id): Id) -> ApiResult<Response> {
    let client = s.manager.worker(&id).await?;
    let v = client.json(Method::GET, "/status", None).await?;
    Ok(axum::Json(json!({"type": "runner_status", "runner_id": id, "status": v})).into_response())
}

/// `GET /v1/runners/{id}/logs?tail=N`: the sandbox's own log, plus the worker's recent
/// log and exec output when it is running.
pub async fn logs(
    State(s): State<AppState>,
    PathId(id): PathId,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let mut q = Query::parse(q.as_deref())?;
    let tail = q.u32("tail")?.unwrap_or(200).clamp(1, 10_000) as usize;
    q.finish()?;
    let sandbox = s.manager.sandbox_logs(&id, tail).await?;
    let worker = match s.manager.worker(&id).await {
        Ok(c) => c
            .json(Method::GET, &format!("/logs?tail={tail}"), None)
            .await
            .unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    Ok(axum::Json(
        json!({"type": "runner_logs", "runner_id": id, "sandbox": sandbox, "worker": worker}),
    )
    .into_response())
}

/// `GET /v1/runners/{id}/events`: the runner's own event log (state changes).
pub async fn events(
    State(s): State<AppState>,
    PathId(id): PathId,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let mut q = Query::parse(q.as_deref())?;
    let page = q.page(100, 1000, Some(Order::Asc))?;
    q.finish()?;
    let page = s.store.list_runner_events(&id, page).await?;
    Ok(page_json(page, false, |e| e.to_json()))
}

/// `GET /v1/backends`: what each configured backend really enforces here.
pub async fn backends(State(s): State<AppState>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    Query::parse(q.as_deref())?.finish()?;
    let data: Vec<Value> = s
        .manager
        .backends
        .values()
        .map(|b| {
            let mut v = to_value(b.capabilities());
            v["type"] = json!("backend");
            v
        })
        .collect();
    Ok(axum::Json(json!({"data": data, "next_page": null})).into_response())
}

/// `GET /v1/profiles`: the execution profiles runners can be created from.
pub async fn profiles(State(s): State<AppState>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    Query::parse(q.as_deref())?.finish()?;
    let p = &s.manager.profiles;
    let data: Vec<Value> = p
        .profiles
        .iter()
        .map(|(name, prof)| {
            let mut v = to_value(prof);
            v["type"] = json!("execution_profile");
            v["name"] = json!(name);
            v["default"] = json!(*name == p.default);
            v
        })
        .collect();
    Ok(axum::Json(json!({"data": data, "next_page": null})).into_response())
}
