//! Anthropic messages (`POST {base_url}/v1/messages`).

use super::http::{classify, error_fields, HttpCore, WireParser};
use super::sse::SseEvent;
use super::{
    ApiKey, ContentPart, ModelRequest, ModelStream, Provider, ProviderConfig, ProviderKind, Role,
    StopReason, StreamEvent, Usage,
};
use crate::ProviderError;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, VecDeque};

/// The `anthropic-version` header sent (a config `headers` entry overrides it).
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// The Anthropic messages API.
#[derive(Debug)]
pub struct AnthropicProvider {
    core: HttpCore,
    url: String,
}

impl AnthropicProvider {
    pub fn new(config: &ProviderConfig, key: Option<ApiKey>) -> Result<Self, ProviderError> {
        let mut auth = Vec::new();
        if !config
            .headers
            .keys()
            .any(|k| k.eq_ignore_ascii_case("anthropic-version"))
        {
            auth.push((
                HeaderName::from_static("anthropic-version"),
                HeaderValue::from_static(ANTHROPIC_VERSION),
            ));
        }
        if let Some(k) = &key {
            let mut v = HeaderValue::from_str(k.expose()).map_err(|_| {
                ProviderError::Config(format!(
                    "provider {:?}: the API key is not a valid header value",
                    config.name
                ))
            })?;
            v.set_sensitive(true);
            auth.push((HeaderName::from_static("x-api-key"), v));
        }
        let core = HttpCore::new(config, auth, key.is_some())?;
        let url = format!("{}/v1/messages", core.base_url);
        Ok(AnthropicProvider { core, url })
    }

    /// The messages request body for `request`.
    pub fn request_body(request: &ModelRequest) -> Value {
        let messages: Vec<Value> = request
            .messages
            .iter()
            .map(|m| {
                let content: Vec<Value> = m
                    .content
                    .iter()
                    .filter_map(|part| match part {
                        // The API rejects empty text blocks.
                        ContentPart::Text { text } if text.is_empty() => None,
                        ContentPart::Text { text } => Some(json!({"type": "text", "text": text})),
                        ContentPart::ToolUse { id, name, input } => Some(
                            json!({"type": "tool_use", "id": id, "name": name, "input": input}),
                        ),
                        ContentPart::ToolResult {
                            tool_use_id,
                            content,
                            is_error,
                        } => {
                            let mut b = json!({"type": "tool_result", "tool_use_id": tool_use_id,
                                               "content": content});
                            if *is_error {
                                b["is_error"] = json!(true);
                            }
                            Some(b)
                        }
                    })
                    .collect();
                let role = match m.role {
                    Role::User => "user",
                    Role::Assistant => "assistant",
                };
                json!({"role": role, "content": content})
            })
            .collect();
        let mut body = Map::new();
        body.insert("model".into(), json!(request.model));
        body.insert("max_tokens".into(), json!(request.max_tokens));
        if let Some(system) = request.system.as_deref().filter(|s| !s.is_empty()) {
            body.insert("system".into(), json!(system));
        }
        body.insert("messages".into(), Value::Array(messages));
        if !request.tools.is_empty() {
            body.insert(
                "tools".into(),
                request
                    .tools
                    .iter()
                    .map(|t| {
                        json!({"name": t.name, "description": t.description,
                               "input_schema": t.input_schema})
                    })
                    .collect(),
            );
        }
        if let Some(t) = request.temperature {
            body.insert("temperature".into(), json!(t));
        }
        body.insert("stream".into(), json!(true));
        Value::Object(body)
    }
}

#[async_trait::async_trait]
impl Provider for AnthropicProvider {
    fn name(&self) -> &str {
        &self.core.name
    }

    fn kind(&self) -> ProviderKind {
        ProviderKind::Anthropic
    }

    async fn stream(&self, request: &ModelRequest) -> Result<ModelStream, ProviderError> {
        let body = serde_json::to_vec(&Self::request_body(request))
            .map_err(|e| ProviderError::Config(format!("cannot encode the request: {e}")))?;
        let resp = self.core.send(&self.url, body).await?;
        self.core.event_stream(resp, Parser::new(&self.core.name))
    }

    async fn forward(
        &self,
        tail: &str,
        query: Option<&str>,
        body: Vec<u8>,
        extra: &[(reqwest::header::HeaderName, reqwest::header::HeaderValue)],
    ) -> Result<reqwest::Response, ProviderError> {
        self.core.forward("/v1", tail, query, body, extra).await
    }
}

enum Block {
    Text,
    Tool {
        id: String,
        name: String,
        json: String,
        initial: Value,
    },
    Other,
}

struct Parser {
    provider: String,
    started: bool,
    usage: Usage,
    blocks: BTreeMap<u64, Block>,
    stop: Option<String>,
}

impl Parser {
    fn new(provider: &str) -> Self {
        Parser {
            provider: provider.to_string(),
            started: false,
            usage: Usage::default(),
            blocks: BTreeMap::new(),
            stop: None,
        }
    }

    fn protocol(&self, message: String) -> ProviderError {
        ProviderError::Protocol {
            provider: self.provider.clone(),
            message,
        }
    }

    /// Usage figures are cumulative: each one present replaces the one before.
    fn merge_usage(&mut self, u: &Value) {
        let set = |field: &mut u64, key: &str| {
            if let Some(n) = u.get(key).and_then(Value::as_u64) {
                *field = n;
            }
        };
        set(&mut self.usage.input_tokens, "input_tokens");
        set(&mut self.usage.output_tokens, "output_tokens");
        set(
            &mut self.usage.cache_read_input_tokens,
            "cache_read_input_tokens",
        );
        set(
            &mut self.usage.cache_creation_input_tokens,
            "cache_creation_input_tokens",
        );
    }
}

impl WireParser for Parser {
    fn event(
        &mut self,
        event: SseEvent,
        out: &mut VecDeque<StreamEvent>,
    ) -> Result<bool, ProviderError> {
        let v: Value = serde_json::from_str(&event.data).map_err(|e| {
            self.protocol(format!("a stream event is not JSON ({e}): {}", event.data))
        })?;
        let kind = v
            .get("type")
            .and_then(Value::as_str)
            .or(event.event.as_deref())
            .unwrap_or("");
        let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
        match kind {
            "message_start" => {
                self.started = true;
                if let Some(u) = v.pointer("/message/usage") {
                    self.merge_usage(u);
                }
            }
            "content_block_start" => {
                let block = v.get("content_block").unwrap_or(&Value::Null);
                let b = match block.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        if let Some(t) = block.get("text").and_then(Value::as_str) {
                            if !t.is_empty() {
                                out.push_back(StreamEvent::TextDelta(t.to_string()));
                            }
                        }
                        Block::Text
                    }
                    Some("tool_use") => Block::Tool {
                        id: block
                            .get("id")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        name: block
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        json: String::new(),
                        initial: block.get("input").cloned().unwrap_or(json!({})),
                    },
                    // thinking, redacted_thinking, server tool blocks: not surfaced yet.
                    _ => Block::Other,
                };
                self.blocks.insert(index, b);
            }
            "content_block_delta" => {
                let delta = v.get("delta").unwrap_or(&Value::Null);
                match (
                    delta.get("type").and_then(Value::as_str),
                    self.blocks.get_mut(&index),
                ) {
                    (Some("text_delta"), _) => {
                        if let Some(t) = delta.get("text").and_then(Value::as_str) {
                            out.push_back(StreamEvent::TextDelta(t.to_string()));
                        }
                    }
                    (Some("input_json_delta"), Some(Block::Tool { json, .. })) => {
                        if let Some(p) = delta.get("partial_json").and_then(Value::as_str) {
                            json.push_str(p);
                        }
                    }
                    (Some("input_json_delta"), _) => {
                        return Err(self.protocol(format!(
                        "input_json_delta for content block {index}, which is not a tool_use block"
                    )))
                    }
                    _ => {}
                }
            }
            "content_block_stop" => {
                if let Some(Block::Tool {
                    id,
                    name,
                    json,
                    initial,
                }) = self.blocks.remove(&index)
                {
                    let input = if json.trim().is_empty() {
                        initial
                    } else {
                        serde_json::from_str(&json).map_err(|e| {
                            self.protocol(format!(
                                "the input of tool call {name:?} is not valid JSON ({e}): {json}"
                            ))
                        })?
                    };
                    out.push_back(StreamEvent::ToolUse { id, name, input });
                }
            }
            "message_delta" => {
                if let Some(s) = v.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.stop = Some(s.to_string());
                }
                if let Some(u) = v.get("usage") {
                    self.merge_usage(u);
                }
            }
            "message_stop" => {
                if !self.started {
                    return Err(self.protocol("message_stop before message_start".into()));
                }
                out.push_back(StreamEvent::Usage(self.usage));
                let stop = match self.stop.as_deref() {
                    Some("end_turn") | None => StopReason::EndTurn,
                    Some("tool_use") => StopReason::ToolUse,
                    Some("max_tokens") => StopReason::MaxTokens,
                    Some("refusal") => StopReason::Refusal,
                    Some(other) => StopReason::Other(other.to_string()),
                };
                out.push_back(StreamEvent::Stop(stop));
                return Ok(true);
            }
            "error" => {
                let (t, c, m) = error_fields(event.data.as_bytes());
                return Err(classify(
                    &self.provider,
                    None,
                    t.as_deref(),
                    c.as_deref(),
                    m,
                    None,
                ));
            }
            // ping, and event types added after this was written.
            _ => {}
        }
        Ok(false)
    }

    fn end(&mut self, _out: &mut VecDeque<StreamEvent>) -> Result<(), ProviderError> {
        Err(self.protocol("the stream ended before message_stop".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::Message;

    #[test]
    fn conversations_map_to_message_blocks() {
        let req = ModelRequest::new(
            "claude-sonnet-4-6",
            vec![
                Message::user(""),
                Message::tool_results([ContentPart::ToolResult {
                    tool_use_id: "toolu_1".into(),
                    content: "ok".into(),
                    is_error: false,
                }]),
            ],
            64,
        );
        let body = AnthropicProvider::request_body(&req);
        assert_eq!(
            body["messages"],
            json!([
                {"role": "user", "content": []},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}]},
            ])
        );
        assert!(body.get("system").is_none() && body.get("tools").is_none());
        assert_eq!(body["max_tokens"], json!(64));
    }
}
