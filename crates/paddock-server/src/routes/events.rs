//! Session events: send, list, and the SSE stream with resume.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream};
use paddock_core::event::{parse_user_events, Event, NewEvent, SendEvents, MAX_EVENTS_PER_REQUEST};
use paddock_core::{common::parse_json, id, ts};
use paddock_store::{Append, EventFilter, Idempotency, Order};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::watch;

use super::page_json;
use crate::error::{ApiResult, ServerError};
use crate::extract::{Body, Id, PathId, Query};
use crate::hub::Tip;
use crate::AppState;

const STREAM_BATCH: usize = 200;

pub async fn send(
    State(s): State<AppState>,
    Id(sid): Id,
    headers: HeaderMap,
    Body(body): Body,
) -> ApiResult<Response> {
    let idempotency = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let key = v
                .to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= 255)
                .ok_or_else(|| {
                    ServerError::invalid(
                        "Idempotency-Key",
                        "must be 1 to 255 visible ASCII characters",
                    )
                })?;
            let hash = Sha256::digest(&body);
            Some(Idempotency {
                key: key.to_string(),
                request_hash: hash.iter().map(|b| format!("{b:02x}")).collect(),
            })
        }
    };
    let req: SendEvents = parse_json(&body)?;
    let parsed = parse_user_events("events", req.events, MAX_EVENTS_PER_REQUEST)?;
    let mut append = Append {
        idempotency,
        ..Append::default()
    };
    for (i, (ev, reference)) in parsed.into_iter().enumerate() {
        if let Some(r) = reference {
            let field = match &r {
                paddock_core::event::Reference::PendingToolUse(_) => "tool_use_id",
                paddock_core::event::Reference::PendingCustomToolUse(_) => "custom_tool_use_id",
            };
            append.references.push((format!("events[{i}].{field}"), r));
        }
        append.events.push(NewEvent {
            id: None,
            kind: ev.kind().to_string(),
            payload: ev.payload(),
        });
    }
    let new_turn = append.events.iter().any(|e| e.kind == "user.message");
    let interrupt = append.events.iter().any(|e| e.kind == "user.interrupt");
    if new_turn {
        // A session whose budget or quota is spent takes no new turn (429).
        let session = s.store.get_session(&sid).await?;
        if let Err(e) = crate::agent_loop::check_new_turn(&session) {
            s.metrics.quota_rejected(match &e {
                ServerError::QuotaExceeded { code, .. } => code,
                _ => "quota",
            });
            return Err(e);
        }
    }
    let out = s.store.append_events(&sid, append).await?;
    if let Some(last) = out.events.last() {
        s.hub.published(&sid, last.seq);
    }
    if !out.replayed {
        if interrupt {
            s.agent.interrupt(&sid);
        } else {
            s.agent.kick(&sid);
        }
    }
    let data: Vec<_> = out.events.iter().map(Event::to_json).collect();
    let mut resp = axum::Json(json!({ "data": data })).into_response();
    if out.replayed {
        resp.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(resp)
}

pub async fn list(
    State(s): State<AppState>,
    PathId(sid): PathId,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let mut q = Query::parse(q.as_deref())?;
    let filter = EventFilter {
        types: q.list("types"),
        processed_gt: q.time("created_at[gt]")?,
        processed_gte: q.time("created_at[gte]")?,
        processed_lt: q.time("created_at[lt]")?,
        processed_lte: q.time("created_at[lte]")?,
    };
    let page = q.page(100, 1000, Some(Order::Asc))?;
    q.finish()?;
    let page = s.store.list_events(&sid, filter, page).await?;
    Ok(page_json(page, false, |e| e.to_json()))
}

/// Where a stream starts: after the event named by `Last-Event-ID` or `?after=`
/// (`after=start` replays the whole log); without either, at the current end.
async fn start_seq(
    s: &AppState,
    sid: &str,
    headers: &HeaderMap,
    after: Option<String>,
) -> ApiResult<i64> {
    let header = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .filter(|v| !v.is_empty());
    let (field, cursor) = match (header, after) {
        (Some(h), _) => ("Last-Event-ID", Some(h)),
        (None, a) => ("after", a),
    };
    match cursor.as_deref() {
        None => Ok(s.store.last_seq(sid).await?),
        Some("start") => Ok(0),
        Some(eid) => match s.store.event_seq(sid, eid).await {
            Ok(seq) => Ok(seq),
            Err(paddock_store::StoreError::NotFound { .. }) => Err(ServerError::invalid(
                field,
                format!("{eid:?} is not an event of session {sid:?}"),
            )),
            Err(e) => Err(e.into()),
        },
    }
}

struct StreamState {
    s: AppState,
    sid: String,
    cursor: i64,
    rx: watch::Receiver<Tip>,
    shutdown: watch::Receiver<bool>,
    buffer: VecDeque<Event>,
    done: bool,
    /// Previews (`event_deltas[]`), when asked for, and the event types wanted.
    previews: Option<(
        tokio::sync::broadcast::Receiver<std::sync::Arc<serde_json::Value>>,
        Vec<String>,
    )>,
    /// Ids of the last events sent: a preview of one of them came too late.
    recent: VecDeque<String>,
    /// Previews of events in `buffer`: they go out before those events.
    early: VecDeque<SseEvent>,
    /// Previews read along with `buffer` of events not in it: they go out after it.
    late: VecDeque<serde_json::Value>,
}

/// The id of the event a preview announces.
fn preview_target(p: &serde_json::Value) -> Option<&str> {
    match p["type"].as_str()? {
        "event_start" => p["event"]["id"].as_str(),
        "event_delta" => p["event_id"].as_str(),
        _ => None,
    }
}

/// Takes the previews already produced when events were read from the store: those of
/// the events just read go out before them (a preview precedes its event, which a slow
/// stream may read in the same batch), the others after them.
fn take_pending_previews(st: &mut StreamState) {
    let Some((rx, wanted)) = st.previews.as_mut() else {
        return;
    };
    let wanted = wanted.clone();
    let mut pending = vec![];
    loop {
        match rx.try_recv() {
            Ok(p) => pending.push(p),
            Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => continue,
            Err(_) => break,
        }
    }
    for p in pending {
        let ours = preview_target(&p).is_some_and(|t| st.buffer.iter().any(|e| e.id == t));
        if !ours {
            st.late.push_back((*p).clone());
        } else if let Some(f) = preview_frame(st, &wanted, &p) {
            st.early.push_back(f);
        }
    }
}

/// The SSE frame of a preview, if the stream wants it and its event is not out yet.
fn preview_frame(st: &StreamState, wanted: &[String], p: &serde_json::Value) -> Option<SseEvent> {
    let kind = p["type"].as_str()?;
    let target = preview_target(p)?;
    let target_type = match kind {
        "event_start" => p["event"]["type"].as_str()?,
        _ => "agent.message",
    };
    if !wanted.iter().any(|w| w == target_type) || st.recent.iter().any(|r| r == target) {
        return None;
    }
    Some(SseEvent::default().event(kind).data(p.to_string()))
}

fn frame(e: &Event) -> SseEvent {
    SseEvent::default()
        .id(e.id.clone())
        .event(e.kind.clone())
        .data(e.to_json().to_string())
}

fn event_stream(st: StreamState) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    stream::unfold(st, |mut st| async move {
        loop {
            if st.done {
                return None;
            }
            if let Some(f) = st.early.pop_front() {
                return Some((Ok(f), st));
            }
            if let Some(e) = st.buffer.pop_front() {
                st.cursor = e.seq;
                if st.previews.is_some() {
                    if st.recent.len() >= 64 {
                        st.recent.pop_front();
                    }
                    st.recent.push_back(e.id.clone());
                }
                let f = frame(&e);
                return Some((Ok(f), st));
            }
            if let Some(p) = st.late.pop_front() {
                let wanted = st
                    .previews
                    .as_ref()
                    .map(|(_, w)| w.clone())
                    .unwrap_or_default();
                if let Some(f) = preview_frame(&st, &wanted, &p) {
                    return Some((Ok(f), st));
                }
                continue;
            }
            // Mark the current tip as seen before reading, so that a commit racing
            // with the read still wakes us up.
            let tip = *st.rx.borrow_and_update();
            match st
                .s
                .store
                .events_after(&st.sid, st.cursor, STREAM_BATCH)
                .await
            {
                Ok(events) if !events.is_empty() => {
                    st.buffer.extend(events);
                    take_pending_previews(&mut st);
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    st.done = true;
                    let (_, body) = ServerError::from(e).envelope();
                    return Some((
                        Ok(SseEvent::default().event("error").data(body.to_string())),
                        st,
                    ));
                }
            }
            if tip.deleted {
                st.done = true;
                let body = json!({
                    "id": id::new(id::EVENT),
                    "type": "session.deleted",
                    "processed_at": ts::format(ts::now()),
                });
                let f = SseEvent::default()
                    .event("session.deleted")
                    .data(body.to_string());
                return Some((Ok(f), st));
            }
            let preview = async {
                match st.previews.as_mut() {
                    Some((rx, _)) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            // Previews first: they precede the event they announce, which is stored
            // right after them.
            tokio::select! {
                biased;
                p = preview => {
                    if let Ok(p) = p {
                        let wanted = st.previews.as_ref().map(|(_, w)| w.clone()).unwrap_or_default();
                        if let Some(f) = preview_frame(&st, &wanted, &p) {
                            return Some((Ok(f), st));
                        }
                    }
                    // Lagged (a slow stream misses previews, never events) or not wanted.
                }
                changed = st.rx.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
                _ = st.shutdown.changed() => return None,
            }
        }
    })
}

pub async fn stream(
    State(s): State<AppState>,
    PathId(sid): PathId,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let mut q = Query::parse(q.as_deref())?;
    let deltas = q.list("event_deltas");
    for d in &deltas {
        if d != "agent.message" && d != "agent.thinking" {
            return Err(ServerError::invalid(
                "event_deltas[]",
                format!("expected agent.message or agent.thinking, got {d:?}"),
            ));
        }
    }
    let after = q.str("after")?;
    q.finish()?;
    // Subscribe before reading where to start, so nothing committed in between is missed.
    let rx = s.hub.subscribe(&sid);
    let previews = (!deltas.is_empty()).then(|| (s.hub.subscribe_previews(&sid), deltas));
    s.store.get_session(&sid).await?;
    let cursor = start_seq(&s, &sid, &headers, after).await?;
    let keepalive = Duration::from_secs(s.config.sse_keepalive_secs);
    let st = StreamState {
        shutdown: s.shutdown.clone(),
        s,
        sid,
        cursor,
        rx,
        buffer: VecDeque::new(),
        done: false,
        previews,
        recent: VecDeque::new(),
        early: VecDeque::new(),
        late: VecDeque::new(),
    };
    let mut resp = Sse::new(event_stream(st))
        .keep_alive(KeepAlive::new().interval(keepalive).text("keep-alive"))
        .into_response();
    resp.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-cache"));
    resp.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AgentSettings, Config, RateLimitSettings};
    use futures::StreamExt;
    use paddock_core::event::ServerEvent;
    use paddock_store::{SqliteStore, Store};
    use std::sync::Arc;

    /// A stream that is slow to read (here: not read at all until the message is
    /// stored) still sends every preview of the message, before it.
    #[tokio::test]
    async fn previews_read_with_their_event_go_out_before_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = Config {
            listen: "127.0.0.1:0".into(),
            data_dir: dir.path().to_path_buf(),
            rate_limit: RateLimitSettings {
                per_second: 0.0,
                burst: 0,
            },
            agent: AgentSettings {
                enabled: false,
                ..Default::default()
            },
            ..Config::default()
        };
        let store = Arc::new(SqliteStore::open(&cfg.database_path()).expect("store"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let server =
            crate::Server::with_store(cfg, store as Arc<dyn Store>, listener).expect("server");
        let st = server.state.clone();
        let addr = server.local_addr().expect("addr");
        tokio::spawn(server.run(std::future::pending()));
        let http = reqwest::Client::new();
        let post = |path: &str, body: serde_json::Value| {
            let req = http.post(format!("http://{addr}{path}")).json(&body);
            async move {
                let v: serde_json::Value =
                    req.send().await.expect("post").json().await.expect("json");
                v["id"].as_str().expect("an id").to_string()
            }
        };
        let agent = post(
            "/v1/agents",
            json!({"name": "a", "model": "claude-sonnet-4-6"}),
        )
        .await;
        let env = post("/v1/environments", json!({"name": "e"})).await;
        let sid = post(
            "/v1/sessions",
            json!({"agent": agent, "environment_id": env}),
        )
        .await;

        let resp = stream(
            State(st.clone()),
            PathId(sid.clone()),
            HeaderMap::new(),
            RawQuery(Some("event_deltas[]=agent.message".into())),
        )
        .await
        .expect("the stream opens");
        let eid = id::new(id::EVENT);
        st.hub.preview(
            &sid,
            json!({"type": "event_start", "event": {"id": eid, "type": "agent.message"}}),
        );
        for t in ["Wrote ", "it."] {
            st.hub.preview(
                &sid,
                json!({"type": "event_delta", "event_id": eid, "delta": {"type": "content_delta", "index": 0, "content": {"type": "text", "text": t}}}),
            );
        }
        let out = st
            .store
            .append_events(
                &sid,
                Append {
                    events: vec![NewEvent::typed_with_id(
                        eid.clone(),
                        &ServerEvent::agent_text("Wrote it."),
                    )],
                    ..Append::default()
                },
            )
            .await
            .expect("append");
        st.hub.published(&sid, out.events[0].seq);

        let mut body = resp.into_body().into_data_stream();
        let mut text = String::new();
        while !text.contains("event: agent.message") {
            let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
                .await
                .expect("the stream goes on")
                .expect("a chunk")
                .expect("bytes");
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        let kinds: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect();
        assert_eq!(
            kinds,
            ["event_start", "event_delta", "event_delta", "agent.message"],
            "{text}"
        );
    }
}
