use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{Method, StatusCode};
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

/// The runner with live figures (uptime, latest sample, cost against budget).
pub async fn retrieve(State(s): State<AppState>, Id(runner_id): Id) -> ApiResult<Response> {
    Ok(axum::Json(s.manager.detail(&runner_id).await?).into_response())
}

/// `POST /v1/runners/{id}`: idle timeout, budget, env and network of a live runner.
pub async fn update(
    State(s): State<AppState>,
    Id(id): Id,
    Json(req): Json<crate::supervisor::RunnerUpdate>,
) -> ApiResult<Response> {
    s.manager.update(&id, req).await?;
    Ok(axum::Json(s.manager.detail(&id).await?).into_response())
}

pub async fn restart(State(s): State<AppState>, Id(id): Id) -> ApiResult<Response> {
    Ok(axum::Json(s.manager.restart(&id).await?).into_response())
}

/// `GET /v1/runners/{id}/metrics`: the sampled history (for charts).
pub async fn metrics(State(s): State<AppState>, Id(id): Id) -> ApiResult<Response> {
    s.store.get_runner(&id).await?;
    let samples = s.manager.monitor.history(&id);
    Ok(
        axum::Json(json!({"type": "runner_metrics", "runner_id": id, "samples": samples}))
            .into_response(),
    )
}

/// `GET /v1/runners/{id}/activity`: what happened on the runner, newest last — its own
/// events and, when it serves a session, the session's messages and tool calls.
pub async fn activity(
    State(s): State<AppState>,
    PathId(id): PathId,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let mut q = Query::parse(q.as_deref())?;
    let limit = q.u32("limit")?.unwrap_or(100).clamp(1, 1000) as usize;
    q.finish()?;
    let r = s.store.get_runner(&id).await?;
    let mut items: Vec<Value> = s
        .store
        .list_runner_events(
            &id,
            paddock_store::PageReq {
                limit: 1000,
                order: Order::Desc,
                cursor: None,
            },
        )
        .await?
        .data
        .iter()
        .map(|e| e.to_json())
        .collect();
    if let Some(sid) = &r.session_id {
        let filter = paddock_store::EventFilter {
            types: [
                "user.message",
                "agent.message",
                "agent.tool_use",
                "agent.tool_result",
                "agent.custom_tool_use",
                "session.status_running",
                "session.status_idle",
                "session.error",
            ]
            .iter()
            .map(|t| t.to_string())
            .collect(),
            ..Default::default()
        };
        if let Ok(p) = s
            .store
            .list_events(
                sid,
                filter,
                paddock_store::PageReq {
                    limit: 1000,
                    order: Order::Desc,
                    cursor: None,
                },
            )
            .await
        {
            items.extend(p.data.iter().map(|e| e.to_json()));
        }
    }
    items.sort_by(|a, b| a["processed_at"].as_str().cmp(&b["processed_at"].as_str()));
    let start = items.len().saturating_sub(limit);
    Ok(
        axum::Json(json!({"type": "runner_activity", "runner_id": id, "data": &items[start..]}))
            .into_response(),
    )
}

pub async fn create(
    State(s): State<AppState>,
    Json(req): Json<CreateRunner>,
) -> ApiResult<Response> {
    Ok(axum::Json(s.manager.create(req).await?).into_response())
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct StopBody {
    /// Seconds running commands get before everything is killed.
    #[serde(default)]
    timeout_secs: Option<u64>,
}

pub async fn stop(State(s): State<AppState>, Id(id): Id, Body(body): Body) -> ApiResult<Response> {
    let b: StopBody = if body.iter().all(u8::is_ascii_whitespace) {
        StopBody::default()
    } else {
        paddock_core::common::parse_json(&body)?
    };
    let grace = b.timeout_secs.map(std::time::Duration::from_secs);
    Ok(axum::Json(s.manager.stop(&id, grace).await?).into_response())
}

pub async fn start(State(s): State<AppState>, Id(id): Id) -> ApiResult<Response> {
    Ok(axum::Json(s.manager.start(&id).await?).into_response())
}

pub async fn destroy(
    State(s): State<AppState>,
    PathId(id): PathId,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let mut q = Query::parse(q.as_deref())?;
    let wait = q.bool("wait")?.unwrap_or(false);
    q.finish()?;
    if wait {
        return Ok(axum::Json(s.manager.destroy(&id).await?).into_response());
    }
    let r = s.manager.destroy_soon(&id).await?;
    let status = if r.state == RunnerState::Destroyed {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, axum::Json(r)).into_response())
}

/// Records an exec's duration when its stream goes away.
struct ExecTimer {
    metrics: std::sync::Arc<paddock_metrics::PaddockMetrics>,
    backend: String,
    started: std::time::Instant,
}

impl Drop for ExecTimer {
    fn drop(&mut self) {
        self.metrics
            .record_exec(&self.backend, self.started.elapsed());
    }
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
    let (runner, client) = s.manager.worker_of(id).await?;
    s.manager.touch(id);
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
    let body = if worker_path == "/exec" {
        // The exec's duration is its whole stream (recorded when it ends or is dropped).
        let timer = ExecTimer {
            metrics: s.metrics.clone(),
            backend: runner.backend,
            started: std::time::Instant::now(),
        };
        let stream = futures::StreamExt::map(body.into_data_stream(), move |chunk| {
            let _ = &timer;
            chunk
        });
        axum::body::Body::from_stream(stream)
    } else {
        axum::body::Body::new(body)
    };
    let mut out = Response::new(body);
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
/// A command run through the API ends when its caller goes away (a CLI's Ctrl-C), unless
/// the body says `"kill_on_disconnect": false`.
pub async fn exec(State(s): State<AppState>, Id(id): Id, Body(body): Body) -> ApiResult<Response> {
    // Refuse what is not a JSON object here, with the API's own error shape.
    let mut v: Value = paddock_core::common::parse_json(&body)?;
    let Some(obj) = v.as_object_mut() else {
        return Err(ServerError::invalid("body", "expected a JSON object"));
    };
    obj.entry("kill_on_disconnect").or_insert(Value::Bool(true));
    forward(
        &s,
        &id,
        Method::POST,
        "/exec",
        None,
        Bytes::from(v.to_string()),
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
    let follow = q.bool("follow")?.unwrap_or(false);
    q.finish()?;
    if follow {
        return follow_logs(s, id).await;
    }
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

/// One log line for the follow stream: `{ts_ms, source, stream?, id?, text}`.
fn log_records(v: &Value) -> Vec<(i64, Value)> {
    let mut out = vec![];
    for w in v["worker"].as_array().into_iter().flatten() {
        out.push((
            w["ts_ms"].as_i64().unwrap_or(0),
            json!({"ts_ms": w["ts_ms"], "source": "worker", "text": w["line"]}),
        ));
    }
    for o in v["output"].as_array().into_iter().flatten() {
        out.push((o["ts_ms"].as_i64().unwrap_or(0),
            json!({"ts_ms": o["ts_ms"], "source": "exec", "exec_id": o["id"], "stream": o["stream"], "text": o["data"]})));
    }
    out.sort_by_key(|(t, _)| *t);
    out
}

/// `GET /v1/runners/{id}/logs?follow=true`: SSE of log lines written after the stream
/// opened (worker lines and exec output), until the runner stops or the server does.
async fn follow_logs(s: AppState, id: String) -> ApiResult<Response> {
    use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
    let client = s.manager.worker(&id).await?;
    let first = client.json(Method::GET, "/logs?tail=10000", None).await?;
    // Everything already there counts as seen: the stream carries only new lines.
    let mut seen: std::collections::HashSet<String> = log_records(&first)
        .into_iter()
        .map(|(_, r)| r.to_string())
        .collect();
    let mut shutdown = s.shutdown.clone();
    let keepalive = std::time::Duration::from_secs(s.config.sse_keepalive_secs);
    let stream = async_stream_lines(move |tx| async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let v = match client.json(Method::GET, "/logs?tail=10000", None).await {
                Ok(v) => v,
                Err(_) => {
                    let _ = tx
                        .send(SseEvent::default().event("end").data(
                            json!({"type": "end", "reason": "the runner stopped"}).to_string(),
                        ))
                        .await;
                    return;
                }
            };
            if seen.len() > 50_000 {
                // Bounded: forget what the worker's rings no longer hold.
                let current: std::collections::HashSet<String> = log_records(&v)
                    .into_iter()
                    .map(|(_, r)| r.to_string())
                    .collect();
                seen.retain(|k| current.contains(k));
            }
            for (_, rec) in log_records(&v) {
                let key = rec.to_string();
                if seen.insert(key)
                    && tx
                        .send(SseEvent::default().event("log").data(rec.to_string()))
                        .await
                        .is_err()
                {
                    return;
                }
            }
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(keepalive))
        .into_response())
}

/// A stream fed by a task through a channel (ends when the task does).
fn async_stream_lines<F, Fut>(
    f: F,
) -> impl futures::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<axum::response::sse::Event>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    tokio::spawn(f(tx));
    futures::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) },
    )
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
            v["seccomp_policy"] = paddock_seccomp::describe(prof.seccomp);
            v
        })
        .collect();
    Ok(axum::Json(json!({"data": data, "next_page": null})).into_response())
}

/// `GET /v1/fleet`: every runner at a glance.
pub async fn fleet(State(s): State<AppState>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    Query::parse(q.as_deref())?.finish()?;
    Ok(axum::Json(s.manager.fleet().await?).into_response())
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SnapshotBody {
    #[serde(default)]
    label: Option<String>,
}

pub async fn snapshot_create(
    State(s): State<AppState>,
    Id(id): Id,
    Body(body): Body,
) -> ApiResult<Response> {
    let b: SnapshotBody = if body.iter().all(u8::is_ascii_whitespace) {
        SnapshotBody::default()
    } else {
        paddock_core::common::parse_json(&body)?
    };
    Ok(axum::Json(s.manager.snapshot(&id, b.label).await?).into_response())
}

pub async fn snapshots_of_runner(
    State(s): State<AppState>,
    PathId(id): PathId,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let mut q = Query::parse(q.as_deref())?;
    let page = q.page(20, 100, Some(Order::Desc))?;
    q.finish()?;
    s.store.get_runner(&id).await?;
    Ok(page_json(
        s.store.list_snapshots(Some(id), page).await?,
        false,
        to_value,
    ))
}

pub async fn snapshots(State(s): State<AppState>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let mut q = Query::parse(q.as_deref())?;
    let runner = q.str("runner_id")?;
    let page = q.page(20, 100, Some(Order::Desc))?;
    q.finish()?;
    Ok(page_json(
        s.store.list_snapshots(runner, page).await?,
        false,
        to_value,
    ))
}

pub async fn snapshot_get(State(s): State<AppState>, Id(id): Id) -> ApiResult<Response> {
    Ok(axum::Json(s.store.get_snapshot(&id).await?).into_response())
}

pub async fn snapshot_delete(State(s): State<AppState>, Id(id): Id) -> ApiResult<Response> {
    s.manager.delete_snapshot(&id).await?;
    Ok(super::deleted(&id, "snapshot_deleted"))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreBody {
    snapshot_id: String,
}

pub async fn restore(
    State(s): State<AppState>,
    Id(id): Id,
    Json(b): Json<RestoreBody>,
) -> ApiResult<Response> {
    Ok(axum::Json(s.manager.restore(&id, &b.snapshot_id).await?).into_response())
}

pub async fn branch(
    State(s): State<AppState>,
    Id(id): Id,
    Json(req): Json<CreateRunner>,
) -> ApiResult<Response> {
    Ok(axum::Json(s.manager.branch(&id, req).await?).into_response())
}
