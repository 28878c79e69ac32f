//! Model providers behind one trait.
//!
//! A [`ModelRequest`] is provider-neutral; a [`Provider`] turns it into its wire format,
//! sends it (retrying 429/5xx/connection failures with exponential backoff and jitter,
//! honouring `retry-after`, *before* the stream starts) and returns a [`ModelStream`] of
//! [`StreamEvent`]s: text deltas as they arrive, each tool call once its input is
//! complete, then the usage the provider reported, then the stop reason.
//!
//! Two implementations, both streaming:
//!
//! | kind | request | `base_url` (default) |
//! |---|---|---|
//! | [`ProviderKind::OpenAi`] | `POST {base_url}/chat/completions`, `Authorization: Bearer` | includes the API version, as in OpenAI's SDK (`https://api.openai.com/v1`; vLLM/Ollama/OpenRouter style `http://host:port/v1`) |
//! | [`ProviderKind::Anthropic`] | `POST {base_url}/v1/messages`, `x-api-key` + `anthropic-version` | the API root without version, as in Anthropic's SDK and `ANTHROPIC_BASE_URL` (`https://api.anthropic.com`) |
//!
//! A trailing `/` on `base_url` is ignored.
//!
//! Models are addressed as `provider/model` (split at the first `/`, so
//! `openrouter/anthropic/claude-sonnet-4-6` is model `anthropic/claude-sonnet-4-6` of
//! provider `openrouter`); [`Providers`] resolves them.
//!
//! Dropping a [`ModelStream`] drops the HTTP response, which closes its connection: that
//! is how a turn is interrupted.

mod anthropic;
mod gemini;
mod http;
mod openai;
pub(crate) mod sse;

pub use anthropic::AnthropicProvider;
pub use gemini::GeminiProvider;
pub use openai::OpenAiProvider;

use crate::ProviderError;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Who said a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    User,
    Assistant,
}

/// One part of a message's content.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    Text {
        text: String,
    },
    /// A tool call the model made (in an assistant message).
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    /// The result of a tool call (in a user message).
    ToolResult {
        tool_use_id: String,
        content: String,
        #[serde(default)]
        is_error: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: Vec<ContentPart>,
}

impl Message {
    pub fn user(text: impl Into<String>) -> Self {
        Message {
            role: Role::User,
            content: vec![ContentPart::Text { text: text.into() }],
        }
    }

    pub fn assistant(text: impl Into<String>) -> Self {
        Message {
            role: Role::Assistant,
            content: vec![ContentPart::Text { text: text.into() }],
        }
    }

    /// A user message carrying tool results.
    pub fn tool_results(results: impl IntoIterator<Item = ContentPart>) -> Self {
        Message {
            role: Role::User,
            content: results.into_iter().collect(),
        }
    }
}

/// A tool the model may call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON Schema of the tool's input (an object schema).
    pub input_schema: Value,
}

/// A provider-neutral model call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelRequest {
    /// The provider's own model id (without the `provider/` prefix).
    pub model: String,
    pub system: Option<String>,
    pub messages: Vec<Message>,
    #[serde(default)]
    pub tools: Vec<ToolSpec>,
    pub max_tokens: u32,
    #[serde(default)]
    pub temperature: Option<f64>,
}

impl ModelRequest {
    pub fn new(model: impl Into<String>, messages: Vec<Message>, max_tokens: u32) -> Self {
        ModelRequest {
            model: model.into(),
            system: None,
            messages,
            tools: Vec::new(),
            max_tokens,
            temperature: None,
        }
    }
}

/// Tokens of one model call, as the provider reported them (the wire's `model_usage`).
/// `input_tokens` excludes cached tokens for both kinds (OpenAI's `prompt_tokens`
/// includes its `cached_tokens`, which are moved to `cache_read_input_tokens`).
pub use paddock_core::event::ModelUsage as Usage;

/// Why the model stopped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    EndTurn,
    ToolUse,
    MaxTokens,
    Refusal,
    /// Anything else, as the provider named it (`stop_sequence`, `pause_turn`, …).
    Other(String),
}

/// One event of a streamed model response. A well-formed stream is: any number of
/// `TextDelta` and `ToolUse`, then exactly one `Usage`, then exactly one `Stop`.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamEvent {
    TextDelta(String),
    /// A complete tool call (its partial-JSON input deltas already joined and parsed).
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    Usage(Usage),
    Stop(StopReason),
}

/// A whole model response, gathered from a stream.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelResponse {
    /// Text (consecutive deltas joined) and tool calls, in the order they came.
    pub content: Vec<ContentPart>,
    pub usage: Usage,
    pub stop_reason: StopReason,
}

impl ModelResponse {
    /// All the text of the response.
    pub fn text(&self) -> String {
        self.content
            .iter()
            .filter_map(|p| match p {
                ContentPart::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The assistant message to append to the conversation.
    pub fn into_message(self) -> Message {
        Message {
            role: Role::Assistant,
            content: self.content,
        }
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, ProviderError>> + Send>>;

/// The events of one streamed model response. It ends after `Stop` or after the first
/// error. Dropping it aborts the HTTP request.
pub struct ModelStream {
    inner: EventStream,
}

impl ModelStream {
    pub fn new(
        inner: impl Stream<Item = Result<StreamEvent, ProviderError>> + Send + 'static,
    ) -> Self {
        ModelStream {
            inner: Box::pin(inner),
        }
    }

    /// Reads the whole stream into a [`ModelResponse`].
    pub async fn collect_response(mut self) -> Result<ModelResponse, ProviderError> {
        let mut content: Vec<ContentPart> = Vec::new();
        let mut usage = Usage::default();
        let mut stop = None;
        while let Some(event) = self.next().await {
            match event? {
                StreamEvent::TextDelta(t) => match content.last_mut() {
                    Some(ContentPart::Text { text }) => text.push_str(&t),
                    _ => content.push(ContentPart::Text { text: t }),
                },
                StreamEvent::ToolUse { id, name, input } => {
                    content.push(ContentPart::ToolUse { id, name, input })
                }
                StreamEvent::Usage(u) => usage = u,
                StreamEvent::Stop(s) => stop = Some(s),
            }
        }
        let stop_reason = stop.ok_or_else(|| ProviderError::Protocol {
            provider: "unknown".into(),
            message: "the stream ended without a stop reason".into(),
        })?;
        Ok(ModelResponse {
            content,
            usage,
            stop_reason,
        })
    }
}

impl Stream for ModelStream {
    type Item = Result<StreamEvent, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl fmt::Debug for ModelStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ModelStream")
    }
}

/// A model provider.
#[async_trait::async_trait]
pub trait Provider: Send + Sync + fmt::Debug {
    /// The configured name (the `provider` of `provider/model`).
    fn name(&self) -> &str;

    fn kind(&self) -> ProviderKind;

    /// Sends the request and returns the response stream once the provider has
    /// answered with success. Retryable failures before that point are retried as
    /// configured; the error returned is final.
    async fn stream(&self, request: &ModelRequest) -> Result<ModelStream, ProviderError>;

    /// Relays a request of the model gateway: `body` POSTed to `tail` (`messages`,
    /// `chat/completions`, `responses`, `models/M:ACTION`) under the provider's API
    /// root, with `query` and `extra` headers (the provider's own headers and key win),
    /// retried like [`Provider::stream`]. Returns the successful response, unread.
    async fn forward(
        &self,
        tail: &str,
        query: Option<&str>,
        body: Vec<u8>,
        extra: &[(reqwest::header::HeaderName, reqwest::header::HeaderValue)],
    ) -> Result<reqwest::Response, ProviderError>;
}

/// The wire format a provider speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProviderKind {
    /// OpenAI-compatible chat completions.
    #[serde(rename = "openai")]
    OpenAi,
    /// Anthropic messages.
    #[serde(rename = "anthropic")]
    Anthropic,
    /// Google's Gemini API (`generateContent`): only through the model gateway, for
    /// agents that speak it; the built-in agent does not.
    #[serde(rename = "gemini")]
    Gemini,
}

impl ProviderKind {
    pub fn default_base_url(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "https://api.openai.com/v1",
            ProviderKind::Anthropic => "https://api.anthropic.com",
            ProviderKind::Gemini => "https://generativelanguage.googleapis.com",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Gemini => "gemini",
        }
    }
}

/// One configured provider (e.g. a `[[providers]]` table of the orchestrator's config).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
    /// See the module docs for how each kind interprets it. Default: the kind's
    /// public API.
    #[serde(default)]
    pub base_url: Option<String>,
    /// The environment variable holding the API key. `None`: no key is sent (a local
    /// OpenAI-compatible server, say) unless one is given by other means (a vault).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Longest wait for the response headers, and for each stream event after that.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    #[serde(default = "default_connect_timeout_secs")]
    pub connect_timeout_secs: u64,
    /// Retries after the first attempt (so `max_retries + 1` requests at most).
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Exponential backoff: the first delay, doubled each retry up to the maximum,
    /// each reduced by up to 25% of jitter. A `retry-after` of up to 60 s replaces it.
    #[serde(default = "default_initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
    /// Extra headers sent with every request (e.g. `anthropic-beta`, OpenRouter's
    /// `HTTP-Referer`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn default_timeout_secs() -> u64 {
    600
}
fn default_connect_timeout_secs() -> u64 {
    10
}
fn default_max_retries() -> u32 {
    2
}
fn default_initial_backoff_ms() -> u64 {
    500
}
fn default_max_backoff_ms() -> u64 {
    8_000
}

impl ProviderConfig {
    /// A provider with the defaults for everything but name, kind and base URL.
    pub fn new(name: impl Into<String>, kind: ProviderKind, base_url: Option<String>) -> Self {
        ProviderConfig {
            name: name.into(),
            kind,
            base_url,
            api_key_env: None,
            timeout_secs: default_timeout_secs(),
            connect_timeout_secs: default_connect_timeout_secs(),
            max_retries: default_max_retries(),
            initial_backoff_ms: default_initial_backoff_ms(),
            max_backoff_ms: default_max_backoff_ms(),
            headers: BTreeMap::new(),
        }
    }

    /// `anthropic`, the public Anthropic API, key in `ANTHROPIC_API_KEY`.
    pub fn anthropic() -> Self {
        ProviderConfig {
            api_key_env: Some("ANTHROPIC_API_KEY".into()),
            ..Self::new("anthropic", ProviderKind::Anthropic, None)
        }
    }

    /// `openai`, the public OpenAI API, key in `OPENAI_API_KEY`.
    pub fn openai() -> Self {
        ProviderConfig {
            api_key_env: Some("OPENAI_API_KEY".into()),
            ..Self::new("openai", ProviderKind::OpenAi, None)
        }
    }

    /// The base URL in use, without a trailing `/`.
    pub fn effective_base_url(&self) -> String {
        self.base_url
            .as_deref()
            .unwrap_or(self.kind.default_base_url())
            .trim_end_matches('/')
            .to_string()
    }

    pub fn validate(&self) -> Result<(), ProviderError> {
        if self.name.is_empty() || self.name.contains('/') || self.name.trim() != self.name {
            return Err(ProviderError::Config(format!(
                "provider name {:?} must be non-empty, without '/' or surrounding spaces",
                self.name
            )));
        }
        let url = self.effective_base_url();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ProviderError::Config(format!(
                "provider {:?}: base_url {url:?} must start with http:// or https://",
                self.name
            )));
        }
        if self.timeout_secs == 0 || self.connect_timeout_secs == 0 {
            return Err(ProviderError::Config(format!(
                "provider {:?}: timeout_secs and connect_timeout_secs must be at least 1",
                self.name
            )));
        }
        Ok(())
    }
}

/// An API key. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(key.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Where provider keys come from: the environment now, the vault later.
pub trait KeySource: Send + Sync {
    /// The key for `provider`, or `None` when it has none.
    fn key_for(&self, provider: &ProviderConfig) -> Option<ApiKey>;
}

/// Reads each provider's `api_key_env` from the process environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct EnvKeys;

impl KeySource for EnvKeys {
    fn key_for(&self, provider: &ProviderConfig) -> Option<ApiKey> {
        let var = provider.api_key_env.as_deref()?;
        match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => Some(ApiKey::new(v.trim())),
            _ => None,
        }
    }
}

/// Builds the provider a config describes, with its key (if any).
pub fn build_provider(
    config: &ProviderConfig,
    key: Option<ApiKey>,
) -> Result<Arc<dyn Provider>, ProviderError> {
    Ok(match config.kind {
        ProviderKind::OpenAi => Arc::new(OpenAiProvider::new(config, key)?),
        ProviderKind::Anthropic => Arc::new(AnthropicProvider::new(config, key)?),
        ProviderKind::Gemini => Arc::new(GeminiProvider::new(config, key)?),
    })
}

/// A `provider/model` reference, split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelRef {
    pub provider: String,
    pub model: String,
}

impl ModelRef {
    pub fn parse(s: &str) -> Result<Self, ProviderError> {
        match s.split_once('/') {
            Some((p, m)) if !p.trim().is_empty() && !m.trim().is_empty() => Ok(ModelRef {
                provider: p.trim().to_string(),
                model: m.trim().to_string(),
            }),
            _ => Err(ProviderError::InvalidModel(s.to_string())),
        }
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.provider, self.model)
    }
}

/// The configured providers, by name.
#[derive(Clone, Debug, Default)]
pub struct Providers {
    by_name: BTreeMap<String, Arc<dyn Provider>>,
}

impl Providers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds every configured provider, taking keys from `keys`. A provider whose
    /// `api_key_env` is set but empty is still registered (with a warning): its calls
    /// fail with [`ProviderError::MissingApiKey`], so one missing key does not stop the
    /// others from working.
    pub fn from_configs(
        configs: &[ProviderConfig],
        keys: &dyn KeySource,
    ) -> Result<Self, ProviderError> {
        let mut providers = Providers::new();
        for config in configs {
            if providers.by_name.contains_key(&config.name) {
                return Err(ProviderError::Config(format!(
                    "provider {:?} is configured twice",
                    config.name
                )));
            }
            let key = keys.key_for(config);
            if key.is_none() {
                if let Some(env) = &config.api_key_env {
                    tracing::warn!(provider = %config.name, env = %env,
                        "model provider has no API key; its calls will fail until it is set");
                }
            }
            providers.insert(build_provider(config, key)?);
        }
        Ok(providers)
    }

    /// Adds (or replaces) a provider under its own name.
    pub fn insert(&mut self, provider: Arc<dyn Provider>) {
        self.by_name.insert(provider.name().to_string(), provider);
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Provider>> {
        self.by_name.get(name)
    }

    pub fn names(&self) -> Vec<&str> {
        self.by_name.keys().map(String::as_str).collect()
    }

    /// Resolves `provider/model` to the provider and the provider's model id.
    pub fn resolve(&self, model: &str) -> Result<(Arc<dyn Provider>, String), ProviderError> {
        let r = ModelRef::parse(model)?;
        match self.by_name.get(&r.provider) {
            Some(p) => Ok((p.clone(), r.model)),
            None => Err(ProviderError::UnknownProvider {
                name: r.provider,
                model: model.to_string(),
                known: if self.by_name.is_empty() {
                    "none".to_string()
                } else {
                    self.names().join(", ")
                },
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_refs_split_at_the_first_slash() {
        let r = ModelRef::parse("openrouter/anthropic/claude-sonnet-4-6").expect("parses");
        assert_eq!(r.provider, "openrouter");
        assert_eq!(r.model, "anthropic/claude-sonnet-4-6");
        assert_eq!(r.to_string(), "openrouter/anthropic/claude-sonnet-4-6");
        for bad in ["gpt-4o", "/gpt-4o", "openai/", ""] {
            assert!(
                matches!(ModelRef::parse(bad), Err(ProviderError::InvalidModel(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn registry_names_the_unknown_provider() {
        let configs = [ProviderConfig::anthropic(), ProviderConfig::openai()];
        let providers = Providers::from_configs(&configs, &EnvKeys).expect("builds");
        let (p, model) = providers
            .resolve("anthropic/claude-sonnet-4-6")
            .expect("resolves");
        assert_eq!(p.name(), "anthropic");
        assert_eq!(p.kind(), ProviderKind::Anthropic);
        assert_eq!(model, "claude-sonnet-4-6");
        let err = providers
            .resolve("mistral/large")
            .expect_err("unknown provider");
        let msg = err.to_string();
        assert!(
            msg.contains("\"mistral\"") && msg.contains("anthropic, openai"),
            "{msg}"
        );
        assert!(matches!(
            providers.resolve("claude"),
            Err(ProviderError::InvalidModel(_))
        ));
    }

    #[test]
    fn configs_are_validated_and_parsed_with_defaults() {
        let c: ProviderConfig = serde_json::from_value(serde_json::json!({
            "name": "local", "kind": "openai", "base_url": "http://127.0.0.1:8000/v1/"
        }))
        .expect("parses");
        assert_eq!(c.effective_base_url(), "http://127.0.0.1:8000/v1");
        assert_eq!(c.max_retries, 2);
        assert_eq!(c.timeout_secs, 600);
        assert!(c.validate().is_ok());
        assert_eq!(
            ProviderConfig::anthropic().effective_base_url(),
            "https://api.anthropic.com"
        );
        let dup = [ProviderConfig::openai(), ProviderConfig::openai()];
        assert!(matches!(
            Providers::from_configs(&dup, &EnvKeys),
            Err(ProviderError::Config(_))
        ));
        let mut bad = ProviderConfig::openai();
        bad.base_url = Some("api.openai.com".into());
        assert!(bad.validate().is_err());
        let unknown_field = serde_json::from_value::<ProviderConfig>(serde_json::json!({
            "name": "x", "kind": "openai", "api_key": "sk-inline"
        }));
        assert!(unknown_field.is_err(), "keys are never inline in config");
    }

    #[test]
    fn api_keys_do_not_show_in_debug() {
        let k = ApiKey::new("sk-secret");
        assert!(!format!("{k:?}").contains("secret"));
    }
}
