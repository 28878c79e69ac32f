//! The scripted model server: a stand-in for OpenAI-compatible and Anthropic model
//! providers that speaks their real wire formats, replays a deterministic script and
//! records every request it was sent.
//!
//! It is the only stand-in for a model provider the project uses: tests point the
//! production provider code at it (nothing in the client is mocked) and assert on the
//! exact requests it recorded.
//!
//! # Routes
//!
//! | Route | Wire format |
//! |---|---|
//! | `POST /v1/chat/completions` | OpenAI chat completions: SSE `data:` chunks ending with `data: [DONE]` when the body has `"stream": true` (a final usage chunk when `stream_options.include_usage` is true), else one `chat.completion` object |
//! | `POST /v1/messages` | Anthropic messages: SSE with `event:` lines (`message_start`, `ping`, `content_block_start`/`_delta`/`_stop`, `message_delta`, `message_stop`, `error`) when `"stream": true`, else one `message` object |
//!
//! Each request takes the next turn of the script, whichever route it hit: the same
//! script can drive either format. A request that finds the script exhausted gets a
//! provider-shaped HTTP 500 saying so.
//!
//! # Script format (JSON, as read by `paddock-model-server --script FILE.json`)
//!
//! ```json
//! {
//!   "turns": [
//!     {"reply": {
//!        "text": ["Hel", "lo"],
//!        "tool_calls": [{"name": "get_weather", "input": {"city": "Paris"}, "chunks": 3}],
//!        "usage": {"input_tokens": 12, "output_tokens": 7,
//!                  "cache_read_input_tokens": 100, "cache_creation_input_tokens": 20},
//!        "stop_reason": "tool_use",
//!        "first_delay_ms": 0, "chunk_delay_ms": 0,
//!        "hang_after": null, "stream_error": null
//!     }},
//!     {"error": {"status": 429, "message": "slow down", "retry_after": "1"}},
//!     {"hang": {}}
//!   ]
//! }
//! ```
//!
//! * `reply` — a model answer. `text` is a list of chunks, each sent as one delta.
//!   `tool_calls[]` has `name`, `input` (any JSON, normally an object), an optional
//!   `id` (default `call_<turn>_<n>` for OpenAI, `toolu_<turn>_<n>` for Anthropic)
//!   and `chunks` (default 3): the serialized input is split into that many partial
//!   JSON deltas. `usage` figures are reported the way each provider does: Anthropic
//!   puts input and cache figures in `message_start` and output tokens in
//!   `message_delta`; OpenAI reports `prompt_tokens = input + cache_read +
//!   cache_creation` with `prompt_tokens_details.cached_tokens = cache_read` (OpenAI
//!   has no cache-write figure). `stop_reason` is one of `end_turn`, `tool_use`,
//!   `max_tokens`, `refusal`, `stop_sequence` (default: `tool_use` when there are tool
//!   calls, else `end_turn`); OpenAI gets the matching `finish_reason`.
//!   `first_delay_ms` is waited (after the response headers) before the first delta,
//!   `chunk_delay_ms` before every later one: a slow stream. `hang_after: N` stops
//!   sending after N deltas and keeps the connection open (a stalled stream).
//!   `stream_error: {"type", "message"}` ends the stream with the provider's in-stream
//!   error (Anthropic `event: error`, OpenAI `data: {"error": …}`) after the deltas.
//! * `error` — an HTTP error: `status`, `message`, optional `type` (default: the
//!   provider's type for that status, e.g. `rate_limit_error` / `overloaded_error`),
//!   optional `code` (OpenAI's `error.code`, e.g. `insufficient_quota`), optional
//!   `retry_after` (sent verbatim as the `retry-after` header), optional `headers`
//!   (extra response headers) and optional `body` (replaces the provider-shaped body).
//! * `hang` — the request is recorded and never answered (until the server stops).

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

/// A deterministic queue of turns: each request served takes the next one.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Script {
    pub turns: Vec<Turn>,
}

impl Script {
    pub fn new(turns: impl IntoIterator<Item = Turn>) -> Self {
        Script {
            turns: turns.into_iter().collect(),
        }
    }

    /// Reads a script from a JSON file (the format in the module docs).
    pub fn from_file(path: &Path) -> std::io::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        serde_json::from_str(&text).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })
    }
}

/// One scripted answer to one request.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Turn {
    Reply(Reply),
    Error(ErrorReply),
    Hang(Hang),
}

impl Turn {
    /// A reply streaming `chunks` as text deltas, ending the turn.
    pub fn text<S: Into<String>>(chunks: impl IntoIterator<Item = S>) -> Self {
        Turn::Reply(Reply::text(chunks))
    }

    /// An HTTP error with the provider's error body for `status`.
    pub fn error(status: u16, message: impl Into<String>) -> Self {
        Turn::Error(ErrorReply::new(status, message))
    }

    pub fn hang() -> Self {
        Turn::Hang(Hang::default())
    }
}

impl From<Reply> for Turn {
    fn from(r: Reply) -> Self {
        Turn::Reply(r)
    }
}

impl From<ErrorReply> for Turn {
    fn from(e: ErrorReply) -> Self {
        Turn::Error(e)
    }
}

/// A model answer (see the module docs for each field's wire rendering).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Reply {
    pub text: Vec<String>,
    pub tool_calls: Vec<ToolCall>,
    pub usage: ScriptUsage,
    pub stop_reason: Option<String>,
    pub first_delay_ms: u64,
    pub chunk_delay_ms: u64,
    pub hang_after: Option<usize>,
    pub stream_error: Option<StreamError>,
}

impl Reply {
    pub fn text<S: Into<String>>(chunks: impl IntoIterator<Item = S>) -> Self {
        Reply {
            text: chunks.into_iter().map(Into::into).collect(),
            ..Reply::default()
        }
    }

    pub fn tool_call(mut self, name: impl Into<String>, input: Value, chunks: usize) -> Self {
        self.tool_calls.push(ToolCall {
            id: None,
            name: name.into(),
            input,
            chunks,
        });
        self
    }

    pub fn usage(mut self, input: u64, output: u64, cache_read: u64, cache_creation: u64) -> Self {
        self.usage = ScriptUsage {
            input_tokens: input,
            output_tokens: output,
            cache_read_input_tokens: cache_read,
            cache_creation_input_tokens: cache_creation,
        };
        self
    }

    pub fn stop_reason(mut self, reason: impl Into<String>) -> Self {
        self.stop_reason = Some(reason.into());
        self
    }

    /// A slow stream: wait `first` before the first delta and `each` before every other.
    pub fn delays(mut self, first: Duration, each: Duration) -> Self {
        self.first_delay_ms = first.as_millis() as u64;
        self.chunk_delay_ms = each.as_millis() as u64;
        self
    }

    /// Stall (connection kept open, nothing sent) after `deltas` deltas.
    pub fn hang_after(mut self, deltas: usize) -> Self {
        self.hang_after = Some(deltas);
        self
    }

    /// End the stream with the provider's in-stream error event after the deltas.
    pub fn stream_error(
        mut self,
        error_type: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        self.stream_error = Some(StreamError {
            error_type: error_type.into(),
            message: message.into(),
        });
        self
    }

    fn stop(&self) -> &str {
        match &self.stop_reason {
            Some(s) => s,
            None if self.tool_calls.is_empty() => "end_turn",
            None => "tool_use",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ToolCall {
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub input: Value,
    #[serde(default = "default_tool_chunks")]
    pub chunks: usize,
}

fn default_tool_chunks() -> usize {
    3
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ScriptUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub cache_creation_input_tokens: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StreamError {
    #[serde(rename = "type")]
    pub error_type: String,
    pub message: String,
}

/// An HTTP error response.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ErrorReply {
    pub status: u16,
    pub message: String,
    #[serde(default, rename = "type")]
    pub error_type: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub retry_after: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Option<Value>,
}

impl ErrorReply {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        ErrorReply {
            status,
            message: message.into(),
            error_type: None,
            code: None,
            retry_after: None,
            headers: BTreeMap::new(),
            body: None,
        }
    }

    pub fn retry_after(mut self, value: impl Into<String>) -> Self {
        self.retry_after = Some(value.into());
        self
    }

    pub fn error_type(mut self, t: impl Into<String>) -> Self {
        self.error_type = Some(t.into());
        self
    }

    pub fn code(mut self, c: impl Into<String>) -> Self {
        self.code = Some(c.into());
        self
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Hang {}

/// A request as the server received it.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// Lower-case header names; repeated headers joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// The JSON body (a JSON string holding the raw text when it was not JSON).
    pub body: Value,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// What became of a streamed response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamOutcome {
    /// Still being sent.
    Open,
    /// Every frame was handed to the connection.
    Completed,
    /// The response body was dropped before its end: the client went away (or the
    /// server stopped).
    Disconnected,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamRecord {
    /// Index into [`ModelServer::requests`].
    pub request: usize,
    /// Frames (SSE events) in the scripted stream and how many were handed over.
    pub frames_total: usize,
    pub frames_sent: usize,
    pub outcome: StreamOutcome,
}

#[derive(Default)]
struct Inner {
    turns: VecDeque<Turn>,
    turns_served: usize,
    requests: Vec<RecordedRequest>,
    streams: Vec<StreamRecord>,
}

struct Shared {
    inner: Mutex<Inner>,
    changed: Notify,
    shutdown: watch::Receiver<bool>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind: keep serving it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running scripted model server on loopback. Stops when dropped.
pub struct ModelServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ModelServer {
    /// Starts serving `script` on `127.0.0.1` at a free port.
    pub async fn start(script: Script) -> std::io::Result<Self> {
        Self::start_on(script, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    pub async fn start_on(script: Script, addr: SocketAddr) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                turns: script.turns.into(),
                ..Inner::default()
            }),
            changed: Notify::new(),
            shutdown: shutdown_rx,
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(openai))
            .route("/v1/messages", post(anthropic))
            .fallback(not_found)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("paddock model server stopped: {e}");
            }
        });
        Ok(ModelServer {
            addr,
            shared,
            shutdown,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` — what an Anthropic provider takes as its base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/v1` — what an OpenAI-compatible provider takes.
    pub fn openai_base_url(&self) -> String {
        format!("{}/v1", self.base_url())
    }

    /// Same as [`Self::base_url`]: Anthropic base URLs have no version segment.
    pub fn anthropic_base_url(&self) -> String {
        self.base_url()
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    pub fn request_count(&self) -> usize {
        self.shared.lock().requests.len()
    }

    /// Appends turns to the script.
    pub fn push(&self, turn: impl Into<Turn>) {
        self.shared.lock().turns.push_back(turn.into());
    }

    pub fn remaining_turns(&self) -> usize {
        self.shared.lock().turns.len()
    }

    /// Every streamed response so far and what became of it.
    pub fn streams(&self) -> Vec<StreamRecord> {
        self.shared.lock().streams.clone()
    }

    /// Waits until a streamed response has been dropped before its end (the client
    /// disconnected). Returns that stream's record, or `None` on timeout.
    pub async fn wait_for_disconnect(&self, timeout: Duration) -> Option<StreamRecord> {
        let wait = async {
            loop {
                let notified = self.shared.changed.notified();
                if let Some(s) = self
                    .shared
                    .lock()
                    .streams
                    .iter()
                    .find(|s| s.outcome == StreamOutcome::Disconnected)
                {
                    return s.clone();
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.ok()
    }

    /// Waits until `n` requests have been received; false on timeout.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.shared.changed.notified();
                if self.shared.lock().requests.len() >= n {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }

    /// Serves until the task ends (for the binary).
    pub async fn wait(&mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        self.task.abort();
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    OpenAi,
    Anthropic,
}

async fn openai(
    State(s): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    serve(s, Format::OpenAi, uri, headers, body).await
}

async fn anthropic(
    State(s): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    serve(s, Format::Anthropic, uri, headers, body).await
}

async fn not_found(uri: Uri) -> Response {
    json_response(
        404,
        &json!({"type": "error", "error": {"type": "not_found_error",
            "message": format!("the scripted model server has no route {}", uri.path())}}),
        &[],
    )
}

async fn serve(
    shared: Arc<Shared>,
    format: Format,
    uri: Uri,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&raw)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&raw).into_owned()));
    let mut recorded = BTreeMap::<String, String>::new();
    for (name, value) in &headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        recorded
            .entry(name.as_str().to_string())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    let (index, turn, turn_no) = {
        let mut inner = shared.lock();
        inner.requests.push(RecordedRequest {
            method: "POST".into(),
            path: uri.path().to_string(),
            headers: recorded,
            body: body.clone(),
        });
        let turn = inner.turns.pop_front();
        if turn.is_some() {
            inner.turns_served += 1;
        }
        (inner.requests.len() - 1, turn, inner.turns_served)
    };
    shared.changed.notify_waiters();

    if !body.is_object() {
        let e = ErrorReply::new(400, "the request body is not a JSON object");
        return error_response(format, &e);
    }
    let Some(turn) = turn else {
        let e = ErrorReply::new(
            500,
            format!("scripted model server: the script is exhausted (request {index} has no turn)"),
        );
        return error_response(format, &e);
    };
    match turn {
        Turn::Error(e) => error_response(format, &e),
        Turn::Hang(_) => {
            let mut rx = shared.shutdown.clone();
            let _ = rx.wait_for(|stop| *stop).await;
            error_response(format, &ErrorReply::new(503, "server stopping"))
        }
        Turn::Reply(reply) => {
            let model = body
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or("scripted-model")
                .to_string();
            let streaming = body.get("stream").and_then(Value::as_bool) == Some(true);
            if !streaming {
                let v = match format {
                    Format::OpenAi => openai_message(&reply, &model, turn_no),
                    Format::Anthropic => anthropic_message(&reply, &model, turn_no),
                };
                let delay = reply.first_delay_ms
                    + reply.chunk_delay_ms * (reply_delta_count(&reply).saturating_sub(1)) as u64;
                tokio::time::sleep(Duration::from_millis(delay)).await;
                return json_response(200, &v, &[]);
            }
            let frames = match format {
                Format::OpenAi => {
                    let include_usage = body
                        .pointer("/stream_options/include_usage")
                        .and_then(Value::as_bool)
                        == Some(true);
                    openai_frames(&reply, &model, turn_no, include_usage)
                }
                Format::Anthropic => anthropic_frames(&reply, &model, turn_no),
            };
            stream_response(shared, index, frames, &reply)
        }
    }
}

fn json_response(status: u16, body: &Value, headers: &[(String, String)]) -> Response {
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            h.insert(k, v);
        }
    }
    resp
}

fn default_error_type(format: Format, status: u16) -> &'static str {
    match (format, status) {
        (Format::Anthropic, 400) => "invalid_request_error",
        (Format::Anthropic, 401) => "authentication_error",
        (Format::Anthropic, 402) => "billing_error",
        (Format::Anthropic, 403) => "permission_error",
        (Format::Anthropic, 404) => "not_found_error",
        (Format::Anthropic, 413) => "request_too_large",
        (Format::Anthropic, 429) => "rate_limit_error",
        (Format::Anthropic, 503 | 529) => "overloaded_error",
        (Format::Anthropic, 504) => "timeout_error",
        (Format::Anthropic, _) => "api_error",
        (Format::OpenAi, 401) => "invalid_request_error",
        (Format::OpenAi, 429) => "requests",
        (Format::OpenAi, s) if s >= 500 => "server_error",
        (Format::OpenAi, _) => "invalid_request_error",
    }
}

fn error_response(format: Format, e: &ErrorReply) -> Response {
    let error_type = e
        .error_type
        .clone()
        .unwrap_or_else(|| default_error_type(format, e.status).to_string());
    let body = e.body.clone().unwrap_or_else(|| match format {
        Format::Anthropic => json!({
            "type": "error",
            "error": {"type": error_type, "message": e.message},
            "request_id": "req_scripted",
        }),
        Format::OpenAi => {
            let code = e.code.clone().map(Value::String).unwrap_or(match e.status {
                401 => json!("invalid_api_key"),
                429 => json!("rate_limit_exceeded"),
                _ => Value::Null,
            });
            json!({"error": {"message": e.message, "type": error_type, "param": null, "code": code}})
        }
    });
    let mut headers: Vec<(String, String)> = e.headers.clone().into_iter().collect();
    if let Some(ra) = &e.retry_after {
        headers.push(("retry-after".into(), ra.clone()));
    }
    json_response(e.status, &body, &headers)
}

/// One SSE frame and whether it is a content delta (which the delays apply to).
struct Frame {
    bytes: Bytes,
    delta: bool,
}

fn sse(event: Option<&str>, data: &Value) -> Bytes {
    match event {
        Some(e) => Bytes::from(format!("event: {e}\ndata: {data}\n\n")),
        None => Bytes::from(format!("data: {data}\n\n")),
    }
}

/// Splits `s` into `n` (at least one) pieces of nearly equal character counts.
fn split_chunks(s: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    let n = n.clamp(1, chars.len().max(1));
    let size = chars.len().div_ceil(n).max(1);
    let mut out: Vec<String> = chars.chunks(size).map(|c| c.iter().collect()).collect();
    if out.is_empty() {
        out.push(String::new());
    }
    out
}

fn tool_input_text(t: &ToolCall) -> String {
    if t.input.is_null() {
        "{}".to_string()
    } else {
        t.input.to_string()
    }
}

fn reply_delta_count(r: &Reply) -> usize {
    r.text.len()
        + r.tool_calls
            .iter()
            .map(|t| split_chunks(&tool_input_text(t), t.chunks).len())
            .sum::<usize>()
}

fn openai_tool_id(t: &ToolCall, turn: usize, i: usize) -> String {
    t.id.clone().unwrap_or_else(|| format!("call_{turn}_{i}"))
}

fn anthropic_tool_id(t: &ToolCall, turn: usize, i: usize) -> String {
    t.id.clone().unwrap_or_else(|| format!("toolu_{turn}_{i}"))
}

fn openai_finish(stop: &str) -> &'static str {
    match stop {
        "tool_use" => "tool_calls",
        "max_tokens" => "length",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

fn openai_usage(u: &ScriptUsage) -> Value {
    let prompt = u.input_tokens + u.cache_read_input_tokens + u.cache_creation_input_tokens;
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": u.output_tokens,
        "total_tokens": prompt + u.output_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cache_read_input_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    })
}

const CREATED: u64 = 1_700_000_000;

fn openai_frames(r: &Reply, model: &str, turn: usize, include_usage: bool) -> Vec<Frame> {
    let id = format!("chatcmpl-scripted-{turn}");
    let chunk = |delta: Value, finish: Value| {
        json!({
            "id": id, "object": "chat.completion.chunk", "created": CREATED, "model": model,
            "system_fingerprint": "fp_scripted",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        })
    };
    let mut frames = vec![Frame {
        bytes: sse(
            None,
            &chunk(
                json!({"role": "assistant", "content": "", "refusal": null}),
                Value::Null,
            ),
        ),
        delta: false,
    }];
    for text in &r.text {
        frames.push(Frame {
            bytes: sse(None, &chunk(json!({"content": text}), Value::Null)),
            delta: true,
        });
    }
    for (i, t) in r.tool_calls.iter().enumerate() {
        for (n, piece) in split_chunks(&tool_input_text(t), t.chunks)
            .into_iter()
            .enumerate()
        {
            let call = if n == 0 {
                json!({"index": i, "id": openai_tool_id(t, turn, i), "type": "function",
                       "function": {"name": t.name, "arguments": piece}})
            } else {
                json!({"index": i, "function": {"arguments": piece}})
            };
            frames.push(Frame {
                bytes: sse(None, &chunk(json!({"tool_calls": [call]}), Value::Null)),
                delta: true,
            });
        }
    }
    if let Some(e) = &r.stream_error {
        frames.push(Frame {
            bytes: sse(
                None,
                &json!({"error": {"message": e.message, "type": e.error_type, "param": null, "code": null}}),
            ),
            delta: false,
        });
        return frames;
    }
    frames.push(Frame {
        bytes: sse(None, &chunk(json!({}), json!(openai_finish(r.stop())))),
        delta: false,
    });
    if include_usage {
        frames.push(Frame {
            bytes: sse(
                None,
                &json!({
                    "id": id, "object": "chat.completion.chunk", "created": CREATED, "model": model,
                    "system_fingerprint": "fp_scripted", "choices": [], "usage": openai_usage(&r.usage),
                }),
            ),
            delta: false,
        });
    }
    frames.push(Frame {
        bytes: Bytes::from_static(b"data: [DONE]\n\n"),
        delta: false,
    });
    frames
}

fn openai_message(r: &Reply, model: &str, turn: usize) -> Value {
    let text: String = r.text.concat();
    let mut message = json!({
        "role": "assistant",
        "content": if text.is_empty() && !r.tool_calls.is_empty() { Value::Null } else { json!(text) },
        "refusal": null,
    });
    if !r.tool_calls.is_empty() {
        message["tool_calls"] = r
            .tool_calls
            .iter()
            .enumerate()
            .map(|(i, t)| {
                json!({"id": openai_tool_id(t, turn, i), "type": "function",
                       "function": {"name": t.name, "arguments": tool_input_text(t)}})
            })
            .collect();
    }
    json!({
        "id": format!("chatcmpl-scripted-{turn}"), "object": "chat.completion",
        "created": CREATED, "model": model, "system_fingerprint": "fp_scripted",
        "choices": [{"index": 0, "message": message, "logprobs": null,
                     "finish_reason": openai_finish(r.stop())}],
        "usage": openai_usage(&r.usage),
    })
}

fn anthropic_frames(r: &Reply, model: &str, turn: usize) -> Vec<Frame> {
    let u = &r.usage;
    let mut frames = vec![
        Frame {
            bytes: sse(
                Some("message_start"),
                &json!({"type": "message_start", "message": {
                    "id": format!("msg_scripted_{turn}"), "type": "message", "role": "assistant",
                    "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": u.input_tokens,
                              "cache_creation_input_tokens": u.cache_creation_input_tokens,
                              "cache_read_input_tokens": u.cache_read_input_tokens,
                              "output_tokens": 1, "service_tier": "standard"}}}),
            ),
            delta: false,
        },
        Frame {
            bytes: sse(Some("ping"), &json!({"type": "ping"})),
            delta: false,
        },
    ];
    let mut index = 0usize;
    if !r.text.is_empty() {
        frames.push(Frame {
            bytes: sse(
                Some("content_block_start"),
                &json!({"type": "content_block_start", "index": index,
                        "content_block": {"type": "text", "text": ""}}),
            ),
            delta: false,
        });
        for text in &r.text {
            frames.push(Frame {
                bytes: sse(
                    Some("content_block_delta"),
                    &json!({"type": "content_block_delta", "index": index,
                            "delta": {"type": "text_delta", "text": text}}),
                ),
                delta: true,
            });
        }
        frames.push(Frame {
            bytes: sse(
                Some("content_block_stop"),
                &json!({"type": "content_block_stop", "index": index}),
            ),
            delta: false,
        });
        index += 1;
    }
    for (i, t) in r.tool_calls.iter().enumerate() {
        frames.push(Frame {
            bytes: sse(
                Some("content_block_start"),
                &json!({"type": "content_block_start", "index": index,
                        "content_block": {"type": "tool_use", "id": anthropic_tool_id(t, turn, i),
                                          "name": t.name, "input": {}}}),
            ),
            delta: false,
        });
        for piece in split_chunks(&tool_input_text(t), t.chunks) {
            frames.push(Frame {
                bytes: sse(
                    Some("content_block_delta"),
                    &json!({"type": "content_block_delta", "index": index,
                            "delta": {"type": "input_json_delta", "partial_json": piece}}),
                ),
                delta: true,
            });
        }
        frames.push(Frame {
            bytes: sse(
                Some("content_block_stop"),
                &json!({"type": "content_block_stop", "index": index}),
            ),
            delta: false,
        });
        index += 1;
    }
    if let Some(e) = &r.stream_error {
        frames.push(Frame {
            bytes: sse(
                Some("error"),
                &json!({"type": "error", "error": {"type": e.error_type, "message": e.message}}),
            ),
            delta: false,
        });
        return frames;
    }
    frames.push(Frame {
        bytes: sse(
            Some("message_delta"),
            &json!({"type": "message_delta",
                    "delta": {"stop_reason": r.stop(), "stop_sequence": null},
                    "usage": {"output_tokens": u.output_tokens}}),
        ),
        delta: false,
    });
    frames.push(Frame {
        bytes: sse(Some("message_stop"), &json!({"type": "message_stop"})),
        delta: false,
    });
    frames
}

fn anthropic_message(r: &Reply, model: &str, turn: usize) -> Value {
    let mut content = Vec::new();
    let text: String = r.text.concat();
    if !text.is_empty() {
        content.push(json!({"type": "text", "text": text}));
    }
    for (i, t) in r.tool_calls.iter().enumerate() {
        let input = if t.input.is_null() {
            json!({})
        } else {
            t.input.clone()
        };
        content.push(
            json!({"type": "tool_use", "id": anthropic_tool_id(t, turn, i),
                            "name": t.name, "input": input}),
        );
    }
    let u = &r.usage;
    json!({
        "id": format!("msg_scripted_{turn}"), "type": "message", "role": "assistant",
        "model": model, "content": content, "stop_reason": r.stop(), "stop_sequence": null,
        "usage": {"input_tokens": u.input_tokens,
                  "cache_creation_input_tokens": u.cache_creation_input_tokens,
                  "cache_read_input_tokens": u.cache_read_input_tokens,
                  "output_tokens": u.output_tokens, "service_tier": "standard"},
    })
}

/// Records what became of a stream when the response body is dropped.
struct StreamGuard {
    shared: Arc<Shared>,
    slot: usize,
    sent: usize,
    completed: bool,
}

impl StreamGuard {
    fn finish(&mut self) {
        self.completed = true;
    }

    fn update(&self, outcome: StreamOutcome) {
        if let Some(s) = self.shared.lock().streams.get_mut(self.slot) {
            s.frames_sent = self.sent;
            s.outcome = outcome;
        }
        self.shared.changed.notify_waiters();
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let outcome = if self.completed {
            StreamOutcome::Completed
        } else {
            StreamOutcome::Disconnected
        };
        self.update(outcome);
    }
}

struct StreamState {
    frames: VecDeque<Frame>,
    deltas_sent: usize,
    first_delay: Duration,
    chunk_delay: Duration,
    hang_after: Option<usize>,
    guard: StreamGuard,
    shutdown: watch::Receiver<bool>,
}

fn stream_response(shared: Arc<Shared>, request: usize, frames: Vec<Frame>, r: &Reply) -> Response {
    let slot = {
        let mut inner = shared.lock();
        inner.streams.push(StreamRecord {
            request,
            frames_total: frames.len(),
            frames_sent: 0,
            outcome: StreamOutcome::Open,
        });
        inner.streams.len() - 1
    };
    let state = StreamState {
        frames: frames.into(),
        deltas_sent: 0,
        first_delay: Duration::from_millis(r.first_delay_ms),
        chunk_delay: Duration::from_millis(r.chunk_delay_ms),
        hang_after: r.hang_after,
        shutdown: shared.shutdown.clone(),
        guard: StreamGuard {
            shared,
            slot,
            sent: 0,
            completed: false,
        },
    };
    let body = Body::from_stream(frame_stream(state));
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        "content-type",
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert("cache-control", HeaderValue::from_static("no-cache"));
    resp
}

fn frame_stream(state: StreamState) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
    futures::stream::unfold(state, |mut st| async move {
        let frame = match st.frames.pop_front() {
            Some(f) => f,
            None => {
                st.guard.finish();
                return None;
            }
        };
        if frame.delta {
            if st.hang_after.is_some_and(|n| st.deltas_sent >= n) {
                let _ = st.shutdown.wait_for(|stop| *stop).await;
                return None;
            }
            let delay = if st.deltas_sent == 0 {
                st.first_delay
            } else {
                st.chunk_delay
            };
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            st.deltas_sent += 1;
        }
        st.guard.sent += 1;
        st.guard.update(StreamOutcome::Open);
        Some((Ok(frame.bytes), st))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_chunks_covers_the_text() {
        let s = r#"{"city":"Paris"}"#;
        let parts = split_chunks(s, 3);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts.concat(), s);
        assert_eq!(split_chunks("", 3), vec![String::new()]);
        assert_eq!(split_chunks("ab", 5).concat(), "ab");
    }

    #[test]
    fn script_json_round_trips() {
        let text = r#"{"turns": [
            {"reply": {"text": ["a", "b"], "tool_calls": [{"name": "t", "input": {"x": 1}}],
                       "usage": {"input_tokens": 3}, "chunk_delay_ms": 5}},
            {"error": {"status": 429, "message": "slow", "retry_after": "1"}},
            {"hang": {}}
        ]}"#;
        let script: Script = serde_json::from_str(text).expect("parses");
        assert_eq!(script.turns.len(), 3);
        match &script.turns[0] {
            Turn::Reply(r) => {
                assert_eq!(r.tool_calls[0].chunks, 3);
                assert_eq!(r.usage.input_tokens, 3);
                assert_eq!(r.stop(), "tool_use");
            }
            other => panic!("{other:?}"),
        }
        let again: Script =
            serde_json::from_value(serde_json::to_value(&script).expect("to json")).expect("back");
        assert_eq!(again, script);
    }
}
