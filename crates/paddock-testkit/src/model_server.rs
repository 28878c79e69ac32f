//! The scripted model server: a stand-in for model providers (OpenAI chat completions
//! and Responses, Anthropic messages, Google Gemini) that speaks their real wire
//! formats, replays a deterministic script and records every request it was sent.
//!
//! It is the only stand-in for a model provider the project uses: tests point the
//! production provider code (or a real agent CLI) at it (nothing in the client is
//! mocked) and assert on the exact requests it recorded.
//!
//! # Routes
//!
//! | Route | Wire format |
//! |---|---|
//! | `POST /v1/chat/completions` | OpenAI chat completions: SSE `data:` chunks ending with `data: [DONE]` when the body has `"stream": true` (a final usage chunk when `stream_options.include_usage` is true), else one `chat.completion` object |
//! | `POST /v1/messages` | Anthropic messages: SSE with `event:` lines (`message_start`, `ping`, `content_block_start`/`_delta`/`_stop`, `message_delta`, `message_stop`, `error`) when `"stream": true`, else one `message` object |
//! | `POST /v1/responses` | OpenAI Responses: SSE with `event:` lines and `data:` objects carrying `type` and `sequence_number` (`response.created`, `response.in_progress`, `response.output_item.added`/`.done`, `response.content_part.added`/`.done`, `response.output_text.delta`/`.done`, `response.function_call_arguments.delta`/`.done`, then `response.completed`, `response.incomplete` or `error` + `response.failed`) when `"stream": true`, else one `response` object |
//! | `POST /v1beta/models/{model}:streamGenerateContent` | Gemini: SSE `data:` chunks (`GenerateContentResponse` objects), whatever the `alt` query says (clients send `?alt=sse`) |
//! | `POST /v1beta/models/{model}:generateContent` | Gemini: one `GenerateContentResponse` object |
//! | `POST /v1beta/models/{model}:countTokens` | Gemini: `{"totalTokens": N}` with N = body bytes / 4. Takes no turn (recorded with `side: true`) |
//!
//! Each request takes the next turn of the script, whichever route it hit: the same
//! script can drive any format. A request that finds the script exhausted gets a
//! provider-shaped HTTP 500 saying so. A request matching a side rule (below) is
//! answered by that rule instead and takes no turn. Every request is recorded
//! ([`ModelServer::requests`]), with its path as received (for Gemini it holds the
//! model and the action, e.g. `/v1beta/models/gemini-2.5-flash:streamGenerateContent`);
//! [`ModelServer::main_requests`] leaves out those answered without a turn. Gemini
//! takes the model from the path, the other formats from the body's `model` field.
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
//!   ],
//!   "side": [
//!     {"when": {"body_contains": "\"output_config\"", "path_contains": "/v1/messages"},
//!      "reply": {"text": ["{\"title\": \"Scripted title\"}"]}}
//!   ]
//! }
//! ```
//!
//! * `reply` — a model answer. `text` is a list of chunks, each sent as one delta.
//!   `tool_calls[]` has `name`, `input` (any JSON, normally an object), an optional
//!   `id` (default `call_<turn>_<n>` for OpenAI chat and Responses (`call_id`; the
//!   Responses item `id` is `fc_scripted_<turn>_<n>`), `toolu_<turn>_<n>` for
//!   Anthropic; Gemini sends `functionCall.id` only when it is given) and `chunks`
//!   (default 3): the serialized input is split into that many partial JSON deltas
//!   (Gemini never splits a call: each call is one chunk with `args` as an object).
//!   In Responses an `input` that is a JSON string makes a freeform `custom_tool_call`
//!   (like Codex's `apply_patch`; item id `ctc_scripted_<turn>_<n>`) whose `input` is
//!   that string, streamed as `response.custom_tool_call_input.delta`/`.done`.
//!   `usage` figures are reported the way each provider does: Anthropic puts input and
//!   cache figures in `message_start` and output tokens in `message_delta`; OpenAI
//!   chat reports `prompt_tokens = input + cache_read + cache_creation` with
//!   `prompt_tokens_details.cached_tokens = cache_read` (it has no cache-write
//!   figure); Responses reports `input_tokens` (the same sum),
//!   `input_tokens_details.cached_tokens = cache_read` and `.cache_write_tokens =
//!   cache_creation`, `output_tokens` and `total_tokens` in `response.completed`;
//!   Gemini puts `usageMetadata` on every chunk: `promptTokenCount` (the same sum),
//!   `candidatesTokenCount = output`, `cachedContentTokenCount = cache_read`,
//!   `totalTokenCount`. `stop_reason` is one of `end_turn`, `tool_use`,
//!   `max_tokens`, `refusal`, `stop_sequence` (default: `tool_use` when there are tool
//!   calls, else `end_turn`); OpenAI chat gets the matching `finish_reason`, Gemini the
//!   matching `finishReason` (`STOP`, `MAX_TOKENS`, `SAFETY` for a refusal) on its last
//!   chunk, and Responses ends `completed`, except `max_tokens` and `refusal`, which
//!   end `incomplete` (`incomplete_details.reason` `max_output_tokens` /
//!   `content_filter`, stream event `response.incomplete`).
//!   `first_delay_ms` is waited (after the response headers) before the first delta,
//!   `chunk_delay_ms` before every later one: a slow stream (a non-streaming answer
//!   waits their total before it is sent). `hang_after: N` stops sending after N
//!   deltas and keeps the connection open (a stalled stream). The deltas are the text
//!   chunks and the tool-input pieces (Gemini: the text chunks and the calls).
//!   `stream_error: {"type", "message"}` ends the stream with the provider's in-stream
//!   error after the deltas: Anthropic `event: error`, OpenAI chat `data: {"error": …}`,
//!   Responses `event: error` (`code` = type) then `event: response.failed`
//!   (`response.error = {code: type, message}`), Gemini `data: {"error": {code,
//!   message, status}}` (a Google status such as `UNAVAILABLE` is used as is; a few
//!   other providers' types map to one, e.g. `overloaded_error` → 503 `UNAVAILABLE`).
//! * `error` — an HTTP error: `status`, `message`, optional `type` (default: the
//!   provider's type for that status, e.g. `rate_limit_error` / `overloaded_error`;
//!   for Gemini the `error.status`, default `INVALID_ARGUMENT`, `UNAUTHENTICATED`,
//!   `PERMISSION_DENIED`, `NOT_FOUND`, `RESOURCE_EXHAUSTED`, `INTERNAL`,
//!   `UNAVAILABLE`, … from the HTTP status), optional `code` (OpenAI's `error.code`,
//!   e.g. `insufficient_quota`), optional `retry_after` (sent verbatim as the
//!   `retry-after` header; for Gemini a number of seconds also becomes a
//!   `google.rpc.RetryInfo` detail), optional `headers` (extra response headers) and
//!   optional `body` (replaces the provider-shaped body). Envelopes: Anthropic
//!   `{"type": "error", "error": {type, message}}`, OpenAI chat and Responses
//!   `{"error": {message, type, param, code}}`, Gemini `{"error": {code, message,
//!   status}}`.
//! * `hang` — the request is recorded and never answered (until the server stops).
//!
//! `side` (optional) lists side rules for the extra calls real agents make besides
//! their main turns (Claude Code's session-title call has `output_config` in its body;
//! Gemini's model router calls `generateContent` on another model). Each has a `when`
//! with an optional `body_contains` (a substring of the request body as sent, or of its
//! compact JSON serialization) and an optional `path_contains` (a substring of the
//! path); every condition given must hold (a rule with none matches everything). The
//! first matching rule answers with its `reply`, in the request's format and stream
//! mode, and the request takes no turn; rules can answer any number of times. Such
//! requests are recorded with `side: true`; ids in their answers use `side<request>`
//! in place of the turn number.

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
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

/// A deterministic queue of turns: each request served takes the next one, except
/// those a side rule answers.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Script {
    pub turns: Vec<Turn>,
    /// Checked in order before a request takes a turn (see the module docs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub side: Vec<SideRule>,
}

impl Script {
    pub fn new(turns: impl IntoIterator<Item = Turn>) -> Self {
        Script {
            turns: turns.into_iter().collect(),
            side: Vec::new(),
        }
    }

    /// Adds a side rule (checked after the ones already there).
    pub fn with_side(mut self, rule: SideRule) -> Self {
        self.side.push(rule);
        self
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

/// Answers the requests it matches with its reply, without taking a script turn (for
/// the extra calls agents make: session titles, model routers, …).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SideRule {
    #[serde(default)]
    pub when: SideWhen,
    pub reply: Reply,
}

/// The conditions of a side rule: every one given must hold.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct SideWhen {
    /// A substring of the request body as sent, or of its compact JSON serialization.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
    /// A substring of the request path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_contains: Option<String>,
}

impl SideRule {
    /// A rule answering `reply` to every request, until conditions are added.
    pub fn new(reply: Reply) -> Self {
        SideRule {
            when: SideWhen::default(),
            reply,
        }
    }

    /// Only requests whose body contains `s`.
    pub fn body_contains(mut self, s: impl Into<String>) -> Self {
        self.when.body_contains = Some(s.into());
        self
    }

    /// Only requests whose path contains `s`.
    pub fn path_contains(mut self, s: impl Into<String>) -> Self {
        self.when.path_contains = Some(s.into());
        self
    }

    fn matches(&self, path: &str, raw: &str, compact: &str) -> bool {
        let body_ok = self
            .when
            .body_contains
            .as_deref()
            .is_none_or(|s| raw.contains(s) || compact.contains(s));
        let path_ok = self
            .when
            .path_contains
            .as_deref()
            .is_none_or(|s| path.contains(s));
        body_ok && path_ok
    }
}

/// A request as the server received it.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// Lower-case header names; repeated headers joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// The JSON body (a JSON string holding the raw text when it was not JSON).
    pub body: Value,
    /// True when the request took no script turn: a side rule answered it (or it was a
    /// Gemini `countTokens` call).
    pub side: bool,
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
    side: Vec<SideRule>,
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
                side: script.side,
                ..Inner::default()
            }),
            changed: Notify::new(),
            shutdown: shutdown_rx,
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(openai))
            .route("/v1/messages", post(anthropic))
            .route("/v1/responses", post(responses))
            .route("/v1beta/models/{rest}", post(gemini))
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

    /// The requests that took (or found no) script turn: [`Self::requests`] without
    /// those answered by a side rule or by Gemini's `countTokens`.
    pub fn main_requests(&self) -> Vec<RecordedRequest> {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| !r.side)
            .cloned()
            .collect()
    }

    pub fn request_count(&self) -> usize {
        self.shared.lock().requests.len()
    }

    /// Appends turns to the script.
    pub fn push(&self, turn: impl Into<Turn>) {
        self.shared.lock().turns.push_back(turn.into());
    }

    /// Appends a side rule (checked after the ones already there).
    pub fn push_side(&self, rule: SideRule) {
        self.shared.lock().side.push(rule);
    }

    /// Drops the turns not taken yet; how many there were.
    pub fn clear_turns(&self) -> usize {
        let mut sh = self.shared.lock();
        let n = sh.turns.len();
        sh.turns.clear();
        n
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    OpenAi,
    Anthropic,
    Responses,
    Gemini,
}

/// What the route tells about a call before its body is read.
struct Call {
    format: Format,
    /// The model named by the path (Gemini), else the body's `model` is used.
    model: Option<String>,
    /// Whether to stream, when the path says (Gemini), else the body's `stream`.
    stream: Option<bool>,
}

impl Call {
    fn body_driven(format: Format) -> Self {
        Call {
            format,
            model: None,
            stream: None,
        }
    }
}

async fn openai(
    State(s): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    serve(s, Call::body_driven(Format::OpenAi), uri, headers, body).await
}

async fn anthropic(
    State(s): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    serve(s, Call::body_driven(Format::Anthropic), uri, headers, body).await
}

async fn responses(
    State(s): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    serve(s, Call::body_driven(Format::Responses), uri, headers, body).await
}

/// `/v1beta/models/{model}:{action}`: the model and the action share one segment.
async fn gemini(
    State(s): State<Arc<Shared>>,
    UrlPath(rest): UrlPath<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (model, action) = rest.rsplit_once(':').unwrap_or((rest.as_str(), ""));
    let stream = match action {
        "streamGenerateContent" => true,
        "generateContent" => false,
        "countTokens" => {
            record(&s, &uri, &headers, &body, true);
            let tokens = (body.len() / 4) as u64;
            return json_response(200, &json!({"totalTokens": tokens}), &[]);
        }
        _ => {
            let e = ErrorReply::new(
                404,
                format!(
                    "the scripted model server has no Gemini method {action:?} (path {})",
                    uri.path()
                ),
            );
            return error_response(Format::Gemini, &e);
        }
    };
    let call = Call {
        format: Format::Gemini,
        model: Some(model.to_string()),
        stream: Some(stream),
    };
    serve(s, call, uri, headers, body).await
}

async fn not_found(uri: Uri) -> Response {
    json_response(
        404,
        &json!({"type": "error", "error": {"type": "not_found_error",
            "message": format!("the scripted model server has no route {}", uri.path())}}),
        &[],
    )
}

fn parse_body(raw: &Bytes) -> Value {
    serde_json::from_slice(raw)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(raw).into_owned()))
}

fn recorded_request(uri: &Uri, headers: &HeaderMap, body: Value, side: bool) -> RecordedRequest {
    let mut recorded = BTreeMap::<String, String>::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        recorded
            .entry(name.as_str().to_string())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    RecordedRequest {
        method: "POST".into(),
        path: uri.path().to_string(),
        headers: recorded,
        body,
        side,
    }
}

/// Records a request that takes no turn.
fn record(shared: &Shared, uri: &Uri, headers: &HeaderMap, raw: &Bytes, side: bool) {
    let request = recorded_request(uri, headers, parse_body(raw), side);
    shared.lock().requests.push(request);
    shared.changed.notify_waiters();
}

async fn serve(
    shared: Arc<Shared>,
    call: Call,
    uri: Uri,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let format = call.format;
    let body = parse_body(&raw);
    let path = uri.path().to_string();
    let raw_text = String::from_utf8_lossy(&raw);
    let compact = body.to_string();
    let (index, turn, tag) = {
        let mut inner = shared.lock();
        let side = inner
            .side
            .iter()
            .find(|rule| rule.matches(&path, &raw_text, &compact))
            .map(|rule| rule.reply.clone());
        let is_side = side.is_some();
        inner
            .requests
            .push(recorded_request(&uri, &headers, body.clone(), is_side));
        let index = inner.requests.len() - 1;
        match side {
            Some(reply) => (index, Some(Turn::Reply(reply)), format!("side{index}")),
            None => {
                let turn = inner.turns.pop_front();
                if turn.is_some() {
                    inner.turns_served += 1;
                }
                (index, turn, inner.turns_served.to_string())
            }
        }
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
            let model = call.model.unwrap_or_else(|| {
                body.get("model")
                    .and_then(Value::as_str)
                    .unwrap_or("scripted-model")
                    .to_string()
            });
            let streaming = call
                .stream
                .unwrap_or_else(|| body.get("stream").and_then(Value::as_bool) == Some(true));
            if !streaming {
                let (v, deltas) = match format {
                    Format::OpenAi => (
                        openai_message(&reply, &model, &tag),
                        reply_delta_count(&reply),
                    ),
                    Format::Anthropic => (
                        anthropic_message(&reply, &model, &tag),
                        reply_delta_count(&reply),
                    ),
                    Format::Responses => (
                        responses_message(&reply, &model, &tag),
                        responses_delta_count(&reply),
                    ),
                    Format::Gemini => (
                        gemini_message(&reply, &model, &tag),
                        gemini_delta_count(&reply),
                    ),
                };
                let delay =
                    reply.first_delay_ms + reply.chunk_delay_ms * (deltas.saturating_sub(1)) as u64;
                tokio::time::sleep(Duration::from_millis(delay)).await;
                return json_response(200, &v, &[]);
            }
            let frames = match format {
                Format::OpenAi => {
                    let include_usage = body
                        .pointer("/stream_options/include_usage")
                        .and_then(Value::as_bool)
                        == Some(true);
                    openai_frames(&reply, &model, &tag, include_usage)
                }
                Format::Anthropic => anthropic_frames(&reply, &model, &tag),
                Format::Responses => responses_frames(&reply, &model, &tag),
                Format::Gemini => gemini_frames(&reply, &model, &tag),
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

/// Google's canonical status name for an HTTP status.
fn gemini_status(status: u16) -> &'static str {
    match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        412 => "FAILED_PRECONDITION",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        s if s >= 500 => "INTERNAL",
        _ => "INVALID_ARGUMENT",
    }
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
        (Format::OpenAi | Format::Responses, 401) => "invalid_request_error",
        (Format::OpenAi | Format::Responses, 429) => "requests",
        (Format::OpenAi | Format::Responses, s) if s >= 500 => "server_error",
        (Format::OpenAi | Format::Responses, _) => "invalid_request_error",
        (Format::Gemini, s) => gemini_status(s),
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
        Format::OpenAi | Format::Responses => {
            let code = e.code.clone().map(Value::String).unwrap_or(match e.status {
                401 => json!("invalid_api_key"),
                429 => json!("rate_limit_exceeded"),
                _ => Value::Null,
            });
            json!({"error": {"message": e.message, "type": error_type, "param": null, "code": code}})
        }
        Format::Gemini => {
            let mut error = json!({"code": e.status, "message": e.message, "status": error_type});
            if let Some(secs) = e
                .retry_after
                .as_deref()
                .and_then(|ra| ra.trim().parse::<f64>().ok())
            {
                error["details"] = json!([{
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": format!("{secs}s"),
                }]);
            }
            json!({"error": error})
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

fn openai_tool_id(t: &ToolCall, turn: &str, i: usize) -> String {
    t.id.clone().unwrap_or_else(|| format!("call_{turn}_{i}"))
}

fn anthropic_tool_id(t: &ToolCall, turn: &str, i: usize) -> String {
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

fn openai_frames(r: &Reply, model: &str, turn: &str, include_usage: bool) -> Vec<Frame> {
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

fn openai_message(r: &Reply, model: &str, turn: &str) -> Value {
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

fn anthropic_frames(r: &Reply, model: &str, turn: &str) -> Vec<Frame> {
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

fn anthropic_message(r: &Reply, model: &str, turn: &str) -> Value {
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

fn responses_usage(u: &ScriptUsage) -> Value {
    let input = u.input_tokens + u.cache_read_input_tokens + u.cache_creation_input_tokens;
    json!({
        "input_tokens": input,
        "input_tokens_details": {"cached_tokens": u.cache_read_input_tokens,
                                 "cache_write_tokens": u.cache_creation_input_tokens},
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input + u.output_tokens,
    })
}

/// The final `status` of a Responses answer and its `incomplete_details`.
fn responses_status(r: &Reply) -> (&'static str, Value) {
    match r.stop() {
        "max_tokens" => ("incomplete", json!({"reason": "max_output_tokens"})),
        "refusal" => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

fn responses_object(
    model: &str,
    turn: &str,
    status: &str,
    output: Vec<Value>,
    usage: Value,
    error: Value,
    incomplete: Value,
) -> Value {
    json!({
        "id": format!("resp_scripted_{turn}"), "object": "response", "created_at": CREATED,
        "status": status, "background": false, "error": error, "incomplete_details": incomplete,
        "instructions": null, "max_output_tokens": null, "metadata": {}, "model": model,
        "output": output, "parallel_tool_calls": true, "previous_response_id": null,
        "reasoning": {"effort": null, "summary": null}, "service_tier": "default",
        "store": false, "temperature": 1.0, "text": {"format": {"type": "text"}},
        "tool_choice": "auto", "tools": [], "top_p": 1.0, "truncation": "disabled",
        "usage": usage, "user": null,
    })
}

fn responses_message_id(turn: &str) -> String {
    format!("msg_scripted_{turn}")
}

/// A Responses tool call: a freeform `custom_tool_call` (its input is the script's
/// string) when the scripted input is a JSON string, else a `function_call`.
struct ResponsesCall {
    custom: bool,
    /// The item id.
    id: String,
    /// The arguments (`function_call`) or the input (`custom_tool_call`).
    text: String,
}

impl ResponsesCall {
    fn new(t: &ToolCall, turn: &str, i: usize) -> Self {
        match &t.input {
            Value::String(input) => ResponsesCall {
                custom: true,
                id: format!("ctc_scripted_{turn}_{i}"),
                text: input.clone(),
            },
            _ => ResponsesCall {
                custom: false,
                id: format!("fc_scripted_{turn}_{i}"),
                text: tool_input_text(t),
            },
        }
    }
}

fn responses_text_part(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": []})
}

fn responses_message_item(turn: &str, status: &str, content: Vec<Value>) -> Value {
    json!({"type": "message", "id": responses_message_id(turn), "status": status,
           "role": "assistant", "content": content})
}

fn responses_call_item(t: &ToolCall, turn: &str, i: usize, status: &str, done: bool) -> Value {
    let call = ResponsesCall::new(t, turn, i);
    let text = if done { call.text.as_str() } else { "" };
    if call.custom {
        json!({"type": "custom_tool_call", "id": call.id, "call_id": openai_tool_id(t, turn, i),
               "name": t.name, "input": text, "status": status})
    } else {
        json!({"type": "function_call", "id": call.id, "call_id": openai_tool_id(t, turn, i),
               "name": t.name, "arguments": text, "status": status})
    }
}

fn responses_delta_count(r: &Reply) -> usize {
    r.text.len()
        + r.tool_calls
            .iter()
            .enumerate()
            .map(|(i, t)| split_chunks(&ResponsesCall::new(t, "", i).text, t.chunks).len())
            .sum::<usize>()
}

/// The output items of a finished Responses answer: the message (when there is text),
/// then one `function_call` (or `custom_tool_call`) per tool call.
fn responses_output(r: &Reply, turn: &str, status: &str) -> Vec<Value> {
    let mut output = Vec::new();
    let text: String = r.text.concat();
    if !r.text.is_empty() {
        output.push(responses_message_item(
            turn,
            status,
            vec![responses_text_part(&text)],
        ));
    }
    for (i, t) in r.tool_calls.iter().enumerate() {
        output.push(responses_call_item(t, turn, i, "completed", true));
    }
    output
}

fn responses_message(r: &Reply, model: &str, turn: &str) -> Value {
    let (status, incomplete) = responses_status(r);
    let item_status = if status == "completed" {
        "completed"
    } else {
        "incomplete"
    };
    responses_object(
        model,
        turn,
        status,
        responses_output(r, turn, item_status),
        responses_usage(&r.usage),
        Value::Null,
        incomplete,
    )
}

/// Numbers the events of a Responses stream.
struct ResponsesEvents {
    frames: Vec<Frame>,
    seq: u64,
}

impl ResponsesEvents {
    fn push(&mut self, kind: &str, mut data: Value, delta: bool) {
        data["sequence_number"] = json!(self.seq);
        self.seq += 1;
        self.frames.push(Frame {
            bytes: sse(Some(kind), &data),
            delta,
        });
    }
}

fn responses_frames(r: &Reply, model: &str, turn: &str) -> Vec<Frame> {
    let mut ev = ResponsesEvents {
        frames: Vec::new(),
        seq: 0,
    };
    let started = || {
        responses_object(
            model,
            turn,
            "in_progress",
            Vec::new(),
            Value::Null,
            Value::Null,
            Value::Null,
        )
    };
    ev.push(
        "response.created",
        json!({"type": "response.created", "response": started()}),
        false,
    );
    ev.push(
        "response.in_progress",
        json!({"type": "response.in_progress", "response": started()}),
        false,
    );
    let (status, incomplete) = responses_status(r);
    let item_status = if status == "completed" {
        "completed"
    } else {
        "incomplete"
    };
    let mut output_index = 0usize;
    if !r.text.is_empty() {
        let item_id = responses_message_id(turn);
        let text: String = r.text.concat();
        ev.push(
            "response.output_item.added",
            json!({"type": "response.output_item.added", "output_index": output_index,
                   "item": responses_message_item(turn, "in_progress", Vec::new())}),
            false,
        );
        ev.push(
            "response.content_part.added",
            json!({"type": "response.content_part.added", "item_id": item_id,
                   "output_index": output_index, "content_index": 0,
                   "part": responses_text_part("")}),
            false,
        );
        for chunk in &r.text {
            ev.push(
                "response.output_text.delta",
                json!({"type": "response.output_text.delta", "item_id": item_id,
                       "output_index": output_index, "content_index": 0, "delta": chunk,
                       "logprobs": []}),
                true,
            );
        }
        ev.push(
            "response.output_text.done",
            json!({"type": "response.output_text.done", "item_id": item_id,
                   "output_index": output_index, "content_index": 0, "text": text,
                   "logprobs": []}),
            false,
        );
        ev.push(
            "response.content_part.done",
            json!({"type": "response.content_part.done", "item_id": item_id,
                   "output_index": output_index, "content_index": 0,
                   "part": responses_text_part(&text)}),
            false,
        );
        ev.push(
            "response.output_item.done",
            json!({"type": "response.output_item.done", "output_index": output_index,
                   "item": responses_message_item(turn, item_status,
                                                  vec![responses_text_part(&text)])}),
            false,
        );
        output_index += 1;
    }
    for (i, t) in r.tool_calls.iter().enumerate() {
        let call = ResponsesCall::new(t, turn, i);
        ev.push(
            "response.output_item.added",
            json!({"type": "response.output_item.added", "output_index": output_index,
                   "item": responses_call_item(t, turn, i, "in_progress", false)}),
            false,
        );
        let (delta, done) = if call.custom {
            (
                "response.custom_tool_call_input.delta",
                "response.custom_tool_call_input.done",
            )
        } else {
            (
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
            )
        };
        for piece in split_chunks(&call.text, t.chunks) {
            ev.push(
                delta,
                json!({"type": delta, "item_id": call.id, "output_index": output_index,
                       "delta": piece}),
                true,
            );
        }
        let mut done_event =
            json!({"type": done, "item_id": call.id, "output_index": output_index});
        if call.custom {
            done_event["input"] = json!(call.text);
        } else {
            done_event["name"] = json!(t.name);
            done_event["arguments"] = json!(call.text);
        }
        ev.push(done, done_event, false);
        ev.push(
            "response.output_item.done",
            json!({"type": "response.output_item.done", "output_index": output_index,
                   "item": responses_call_item(t, turn, i, "completed", true)}),
            false,
        );
        output_index += 1;
    }
    if let Some(e) = &r.stream_error {
        ev.push(
            "error",
            json!({"type": "error", "code": e.error_type, "message": e.message, "param": null}),
            false,
        );
        let failed = responses_object(
            model,
            turn,
            "failed",
            responses_output(r, turn, "incomplete"),
            Value::Null,
            json!({"code": e.error_type, "message": e.message}),
            Value::Null,
        );
        ev.push(
            "response.failed",
            json!({"type": "response.failed", "response": failed}),
            false,
        );
        return ev.frames;
    }
    let done = responses_object(
        model,
        turn,
        status,
        responses_output(r, turn, item_status),
        responses_usage(&r.usage),
        Value::Null,
        incomplete,
    );
    let kind = if status == "completed" {
        "response.completed"
    } else {
        "response.incomplete"
    };
    ev.push(kind, json!({"type": kind, "response": done}), false);
    ev.frames
}

fn gemini_usage(u: &ScriptUsage) -> Value {
    let prompt = u.input_tokens + u.cache_read_input_tokens + u.cache_creation_input_tokens;
    json!({
        "promptTokenCount": prompt,
        "candidatesTokenCount": u.output_tokens,
        "cachedContentTokenCount": u.cache_read_input_tokens,
        "totalTokenCount": prompt + u.output_tokens,
    })
}

fn gemini_finish(stop: &str) -> &'static str {
    match stop {
        "max_tokens" => "MAX_TOKENS",
        "refusal" => "SAFETY",
        _ => "STOP",
    }
}

fn gemini_call_part(t: &ToolCall) -> Value {
    let args = if t.input.is_null() {
        json!({})
    } else {
        t.input.clone()
    };
    let mut call = json!({"name": t.name, "args": args});
    if let Some(id) = &t.id {
        call["id"] = json!(id);
    }
    json!({"functionCall": call})
}

fn gemini_chunk(
    parts: Vec<Value>,
    finish: Option<&str>,
    r: &Reply,
    model: &str,
    turn: &str,
) -> Value {
    let mut candidate = json!({"content": {"role": "model", "parts": parts}, "index": 0});
    if let Some(f) = finish {
        candidate["finishReason"] = json!(f);
    }
    json!({
        "candidates": [candidate],
        "usageMetadata": gemini_usage(&r.usage),
        "modelVersion": model,
        "responseId": format!("scripted-{turn}"),
    })
}

fn gemini_delta_count(r: &Reply) -> usize {
    r.text.len() + r.tool_calls.len()
}

fn gemini_message(r: &Reply, model: &str, turn: &str) -> Value {
    let mut parts = Vec::new();
    if !r.text.is_empty() {
        parts.push(json!({"text": r.text.concat()}));
    }
    parts.extend(r.tool_calls.iter().map(gemini_call_part));
    if parts.is_empty() {
        parts.push(json!({"text": ""}));
    }
    gemini_chunk(parts, Some(gemini_finish(r.stop())), r, model, turn)
}

/// Gemini's in-stream error for a scripted stream error: a Google status is used as
/// is, a few other providers' error types are mapped to one.
fn gemini_stream_error(e: &StreamError) -> Value {
    let (code, status) = match e.error_type.as_str() {
        "INVALID_ARGUMENT" | "invalid_request_error" => (400, "INVALID_ARGUMENT"),
        "UNAUTHENTICATED" | "authentication_error" => (401, "UNAUTHENTICATED"),
        "PERMISSION_DENIED" | "permission_error" => (403, "PERMISSION_DENIED"),
        "NOT_FOUND" | "not_found_error" => (404, "NOT_FOUND"),
        "RESOURCE_EXHAUSTED" | "rate_limit_error" | "rate_limit_exceeded" => {
            (429, "RESOURCE_EXHAUSTED")
        }
        "UNAVAILABLE" | "overloaded_error" => (503, "UNAVAILABLE"),
        "DEADLINE_EXCEEDED" | "timeout_error" => (504, "DEADLINE_EXCEEDED"),
        "INTERNAL" | "api_error" | "server_error" => (500, "INTERNAL"),
        other => (500, other),
    };
    json!({"error": {"code": code, "message": e.message, "status": status}})
}

fn gemini_frames(r: &Reply, model: &str, turn: &str) -> Vec<Frame> {
    let mut parts: Vec<(Value, bool)> = r.text.iter().map(|t| (json!({"text": t}), true)).collect();
    parts.extend(r.tool_calls.iter().map(|t| (gemini_call_part(t), true)));
    if parts.is_empty() && r.stream_error.is_none() {
        parts.push((json!({"text": ""}), false));
    }
    let last = parts.len().saturating_sub(1);
    let finish = gemini_finish(r.stop());
    let mut frames: Vec<Frame> = parts
        .into_iter()
        .enumerate()
        .map(|(n, (part, delta))| {
            let finish = (n == last && r.stream_error.is_none()).then_some(finish);
            Frame {
                bytes: sse(None, &gemini_chunk(vec![part], finish, r, model, turn)),
                delta,
            }
        })
        .collect();
    if let Some(e) = &r.stream_error {
        frames.push(Frame {
            bytes: sse(None, &gemini_stream_error(e)),
            delta: false,
        });
    }
    frames
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

    #[test]
    fn side_rules_parse_and_match() {
        let text = r#"{"turns": [], "side": [
            {"when": {"body_contains": "\"output_config\"", "path_contains": "/v1/messages"},
             "reply": {"text": ["t"]}},
            {"reply": {"text": ["any"]}}
        ]}"#;
        let script: Script = serde_json::from_str(text).expect("parses");
        assert_eq!(script.side.len(), 2);
        let rule = &script.side[0];
        let body = r#"{"output_config": {}}"#;
        assert!(rule.matches("/v1/messages", body, body));
        assert!(rule.matches("/v1/messages", r#"{ "output_config" : 1}"#, body));
        assert!(!rule.matches("/v1/responses", body, body));
        assert!(!rule.matches("/v1/messages", "{}", "{}"));
        assert!(script.side[1].matches("/anything", "", ""));
        let again: Script =
            serde_json::from_value(serde_json::to_value(&script).expect("to json")).expect("back");
        assert_eq!(again, script);
        let plain = serde_json::to_value(Script::new([Turn::hang()])).expect("to json");
        assert!(plain.get("side").is_none(), "no side rules, no side field");
    }
}
