//! The model gateway: where the model traffic of an ACP agent inside a runner goes.
//!
//! Each runner that hosts an ACP agent gets a Unix socket of its own,
//! `gateway.sock`, beside its worker's (the runner's `/run/paddock`), served here; the
//! worker relays a loopback TCP port inside the sandbox to it, so the agent talks
//! plain HTTP to `127.0.0.1:PORT` and the sandbox needs no network. A token minted for
//! the runner's current start authenticates every call: it dies when the runner stops
//! (a new start mints another), and it is not a provider key: the gateway forwards
//! each call to the session's provider with the provider's real key, which never
//! enters the sandbox.
//!
//! Every call is held to the session's budget and quotas before it is sent, and
//! metered with the built-in agent's code: `span.model_request_start`/`_end` with the
//! tokens and cost, and `session.usage`. A call made after the budget is spent gets an
//! error from the gateway and the turn stops with `budget_reached`.
//!
//! The model a call names is mapped to the agent's model: agents are configured with it,
//! and a request for another model (a CLI's own choice of a small model for titles,
//! say) is sent to the agent's model all the same.

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::{Stream, StreamExt};
use paddock_agent::gateway::{error_body, usage_of_body, Call, ModelWire, UsageTap};
use paddock_agent::provider::Usage as ModelUsage;
use paddock_core::event::{ModelRequestEnd, ServerEvent};
use paddock_core::lifecycle::RunnerState;
use paddock_core::ts::Timestamp;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use super::budget::{spent, Spent};
use super::builtin::Builtin;
use super::ctx::Ctx;

/// Largest request body the gateway relays.
const MAX_BODY: usize = 64 * 1024 * 1024;
/// The socket's file name in the runner's socket directory.
pub(crate) const SOCKET_NAME: &str = "gateway.sock";

/// What the gateway asks of the harness whose agent calls it.
pub(crate) trait GatewayHooks: Send + Sync {
    /// Seconds the session's open turn has run (for `max_wall_seconds`).
    fn turn_secs(&self, session_id: &str) -> f64;
    /// A call was refused because the budget or a quota is spent: stop the turn.
    fn spent(&self, session_id: &str, why: Spent);
}

struct Open {
    token: String,
    started_at: Option<Timestamp>,
    task: tokio::task::JoinHandle<()>,
    path: PathBuf,
}

pub(crate) struct Gateways {
    cx: Arc<Ctx>,
    builtin: Arc<Builtin>,
    hooks: std::sync::OnceLock<std::sync::Weak<dyn GatewayHooks>>,
    open: Mutex<HashMap<String, Open>>,
}

pub(crate) fn random_token() -> String {
    let mut b = [0u8; 24];
    if getrandom::fill(&mut b).is_err() {
        // No randomness source: a token nobody can guess cannot be made either.
        return String::new();
    }
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("pgw_{hex}")
}

fn constant_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= (x ^ b.get(i).copied().unwrap_or(0)) as usize;
    }
    diff == 0
}

impl Gateways {
    pub fn new(cx: Arc<Ctx>, builtin: Arc<Builtin>) -> Self {
        Gateways {
            cx,
            builtin,
            hooks: std::sync::OnceLock::new(),
            open: Mutex::new(HashMap::new()),
        }
    }

    pub fn set_hooks(&self, hooks: std::sync::Weak<dyn GatewayHooks>) {
        let _ = self.hooks.set(hooks);
    }

    fn hooks(&self) -> Option<Arc<dyn GatewayHooks>> {
        self.hooks.get().and_then(std::sync::Weak::upgrade)
    }

    /// Serves the gateway of runner `runner_id` (started at `started_at`) on
    /// `socket_dir/gateway.sock`; returns the token of this start (`token`: the one an
    /// earlier orchestrator minted for it, which the agent still holds; else a new
    /// one). Idempotent per start.
    pub fn open(
        self: &Arc<Self>,
        runner_id: &str,
        started_at: Option<Timestamp>,
        socket_dir: &Path,
        token: Option<String>,
    ) -> Result<String, String> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(o) = open.get(runner_id) {
            if o.started_at == started_at && !o.task.is_finished() {
                return Ok(o.token.clone());
            }
            o.task.abort();
        }
        let token = token.unwrap_or_else(random_token);
        if token.is_empty() {
            return Err("no randomness source to mint a gateway token".into());
        }
        let path = socket_dir.join(SOCKET_NAME);
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path)
            .map_err(|e| format!("cannot serve the model gateway on {}: {e}", path.display()))?;
        // The sandbox user connects to it; the directory is the runner's own.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let listener = tokio::net::UnixListener::from_std(listener)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let served = Arc::new(Served {
            gateways: self.clone(),
            runner_id: runner_id.to_string(),
            token: token.clone(),
            started_at,
        });
        let app = Router::new()
            .fallback(relay)
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .with_state(served);
        let rid = runner_id.to_string();
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(runner_id = %rid, error = %e, "the model gateway stopped");
            }
        });
        tracing::info!(runner_id, socket = %path.display(), "model gateway open");
        open.insert(
            runner_id.to_string(),
            Open {
                token: token.clone(),
                started_at,
                task,
                path,
            },
        );
        Ok(token)
    }

    /// Stops serving a runner's gateway (its token dies with it).
    pub fn close(&self, runner_id: &str) {
        let o = self
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(runner_id);
        if let Some(o) = o {
            o.task.abort();
            let _ = std::fs::remove_file(&o.path);
        }
    }
}

struct Served {
    gateways: Arc<Gateways>,
    runner_id: String,
    token: String,
    started_at: Option<Timestamp>,
}

/// A refusal, in the caller's wire format.
struct Refused {
    wire: ModelWire,
    status: u16,
    message: String,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_GATEWAY);
        let mut r = (
            status,
            axum::Json(error_body(self.wire, self.status, &self.message)),
        )
            .into_response();
        r.headers_mut()
            .insert("x-should-retry", HeaderValue::from_static("false"));
        r
    }
}

fn presented_token(h: &HeaderMap) -> Option<&str> {
    if let Some(v) = h.get("authorization").and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") {
            return Some(v[7..].trim());
        }
    }
    ["x-api-key", "x-goog-api-key"]
        .iter()
        .find_map(|k| h.get(*k).and_then(|v| v.to_str().ok()))
        .map(str::trim)
}

/// Headers of the agent's request the provider should see (never auth headers).
const PASSED_HEADERS: &[&str] = &["anthropic-beta", "openai-beta", "accept"];

async fn relay(
    State(s): State<Arc<Served>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match s.relay(method, uri, headers, body).await {
        Ok(r) => r,
        Err(r) => r.into_response(),
    }
}

impl Served {
    async fn relay(
        &self,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response, Refused> {
        let g = &self.gateways;
        let cx = &g.cx;
        let Some(mut call) = Call::classify(uri.path()) else {
            return Err(Refused {
                wire: ModelWire::OpenaiChat,
                status: 404,
                message: format!(
                    "the Paddock model gateway does not relay {} {}",
                    method,
                    uri.path()
                ),
            });
        };
        let wire = call.wire;
        let refuse = |status: u16, message: String| Refused {
            wire,
            status,
            message,
        };
        if method != Method::POST {
            return Err(refuse(405, format!("use POST for {}", uri.path())));
        }
        let token_ok = presented_token(&headers).is_some_and(|t| constant_eq(t, &self.token));
        if !token_ok {
            return Err(refuse(
                401,
                "missing or wrong gateway token (each runner start has its own)".into(),
            ));
        }
        let runner = cx
            .store
            .get_runner(&self.runner_id)
            .await
            .map_err(|e| refuse(403, format!("runner {}: {e}", self.runner_id)))?;
        if runner.state != RunnerState::Running || runner.started_at != self.started_at {
            return Err(refuse(
                403,
                format!(
                    "runner {} is {} since this token was minted; its token is revoked",
                    runner.id, runner.state
                ),
            ));
        }
        let Some(sid) = runner.session_id.clone() else {
            return Err(refuse(403, "this runner serves no session".into()));
        };
        let session = cx
            .store
            .get_session(&sid)
            .await
            .map_err(|e| refuse(403, format!("session {sid}: {e}")))?;
        let (provider, model, provider_name) = g
            .builtin
            .provider_for(&session.agent.model.id)
            .map_err(|e| refuse(400, e.to_string()))?;
        if !call.served_by(provider.kind()) {
            return Err(refuse(
                400,
                format!(
                    "the agent's model {} is served by provider {provider_name:?} of kind {}, which does not speak this request's format ({:?}); give the agent a model of a provider that does",
                    session.agent.model.id,
                    provider.kind().as_str(),
                    call.wire
                ),
            ));
        }
        let metered = call.metered();
        if metered {
            let turn_secs = g.hooks().map(|h| h.turn_secs(&sid)).unwrap_or(0.0);
            if let Some(why) = spent(&session, turn_secs) {
                let message = match &why {
                    Spent::Budget(m) | Spent::Quota(_, m) => m.clone(),
                };
                if let Some(h) = g.hooks() {
                    h.spent(&sid, why);
                }
                return Err(refuse(
                    403,
                    format!("Paddock refused the model call: {message}"),
                ));
            }
        }
        let mut json: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| refuse(400, format!("the request body is not JSON: {e}")))?;
        let (stream, asked) = call.rewrite(&mut json, &model);
        if asked.as_deref().is_some_and(|a| a != model) {
            tracing::debug!(session_id = %sid, asked = ?asked, model = %model, "gateway maps the requested model to the agent's");
        }
        let body = serde_json::to_vec(&json).map_err(|e| refuse(400, e.to_string()))?;
        let extra: Vec<_> = PASSED_HEADERS
            .iter()
            .filter_map(|k| {
                let v = headers.get(*k)?;
                Some((
                    reqwest::header::HeaderName::from_static(k),
                    reqwest::header::HeaderValue::from_bytes(v.as_bytes()).ok()?,
                ))
            })
            .collect();
        let start_id = if metered {
            let e = cx
                .emit_one(&sid, ServerEvent::SpanModelRequestStart {})
                .await
                .map_err(|e| refuse(500, e.to_string()))?;
            Some(e.id)
        } else {
            None
        };
        let meter = Meter {
            cx: cx.clone(),
            session_id: sid.clone(),
            start_id,
            provider: provider_name.clone(),
            model: model.clone(),
        };
        let upstream = provider
            .forward(&call.tail, uri.query(), body, &extra)
            .await;
        let resp = match upstream {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(session_id = %sid, error = %e, "gateway call failed");
                meter.failed().await;
                let status = match &e {
                    paddock_agent::ProviderError::RateLimited { .. } => 429,
                    paddock_agent::ProviderError::BadRequest { status, .. } => *status,
                    paddock_agent::ProviderError::Overloaded { .. } => 503,
                    _ => 502,
                };
                return Err(refuse(status, e.to_string()));
            }
        };
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok());
        let mut out = if stream {
            let tapped = Tapped {
                inner: Box::pin(resp.bytes_stream()),
                tap: UsageTap::new(call.wire),
                meter: Some(meter),
            };
            Response::new(Body::from_stream(tapped))
        } else {
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| refuse(502, format!("reading the provider's answer: {e}")))?;
            let usage = usage_of_body(call.wire, &bytes);
            meter.done(usage).await;
            Response::new(Body::from(bytes))
        };
        if let Some(ct) = content_type {
            out.headers_mut().insert("content-type", ct);
        }
        Ok(out)
    }
}

/// Meters one relayed call once its answer is over.
struct Meter {
    cx: Arc<Ctx>,
    session_id: String,
    start_id: Option<String>,
    provider: String,
    model: String,
}

impl Meter {
    async fn done(self, usage: Option<ModelUsage>) {
        let Some(start) = &self.start_id else { return };
        let r = self
            .cx
            .metered(
                &self.session_id,
                start,
                &self.provider,
                &self.model,
                &usage.unwrap_or_default(),
            )
            .await;
        if let Err(e) = r {
            tracing::warn!(session_id = %self.session_id, error = %e, "cannot meter a gateway call");
        }
    }

    async fn failed(self) {
        let Some(start) = self.start_id else { return };
        let end = ServerEvent::SpanModelRequestEnd(ModelRequestEnd {
            model_request_start_id: start,
            model_usage: ModelUsage::default(),
            is_error: true,
            model: Some(format!("{}/{}", self.provider, self.model)),
            cost: None,
        });
        if let Err(e) = self.cx.emit_one(&self.session_id, end).await {
            tracing::warn!(session_id = %self.session_id, error = %e, "cannot close a failed gateway call's span");
        }
    }
}

/// The provider's streamed answer on its way to the agent, its usage read as it goes;
/// metered when it ends, or when the agent hangs up early (what was used so far).
struct Tapped {
    inner: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    tap: UsageTap,
    meter: Option<Meter>,
}

impl Tapped {
    fn finish(&mut self) {
        if let Some(m) = self.meter.take() {
            let usage = self.tap.usage();
            tokio::spawn(m.done(usage));
        }
    }
}

impl Stream for Tapped {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(b))) => {
                self.tap.push(&b);
                Poll::Ready(Some(Ok(b)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.finish();
                Poll::Ready(Some(Err(std::io::Error::other(e))))
            }
            Poll::Ready(None) => {
                self.finish();
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Tapped {
    fn drop(&mut self) {
        self.finish();
    }
}
