//! OpenAI-compatible chat completions (`POST {base_url}/chat/completions`).

use super::http::{classify, error_fields, HttpCore, WireParser};
use super::sse::SseEvent;
use super::{
    ApiKey, ContentPart, ModelRequest, ModelStream, Provider, ProviderConfig, ProviderKind, Role,
    StopReason, StreamEvent, Usage,
};
use crate::ProviderError;
use reqwest::header::{HeaderValue, AUTHORIZATION};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, VecDeque};

/// An OpenAI-compatible provider: OpenAI itself or any server speaking its chat
/// completions API (vLLM, Ollama, OpenRouter, …).
#[derive(Debug)]
pub struct OpenAiProvider {
    core: HttpCore,
    url: String,
}

impl OpenAiProvider {
    pub fn new(config: &ProviderConfig, key: Option<ApiKey>) -> Result<Self, ProviderError> {
        let mut auth = Vec::new();
        if let Some(k) = &key {
            let mut v = HeaderValue::from_str(&format!("Bearer {}", k.expose())).map_err(|_| {
                ProviderError::Config(format!(
                    "provider {:?}: the API key is not a valid header value",
                    config.name
                ))
            })?;
            v.set_sensitive(true);
            auth.push((AUTHORIZATION, v));
        }
        let core = HttpCore::new(config, auth, key.is_some())?;
        let url = format!("{}/chat/completions", core.base_url);
        Ok(OpenAiProvider { core, url })
    }

    /// The chat completions request body for `request`.
    pub fn request_body(request: &ModelRequest) -> Value {
        let mut messages = Vec::new();
        if let Some(system) = request.system.as_deref().filter(|s| !s.is_empty()) {
            messages.push(json!({"role": "system", "content": system}));
        }
        for m in &request.messages {
            match m.role {
                Role::User => {
                    let mut texts = Vec::new();
                    for part in &m.content {
                        match part {
                            // Tool results must directly follow the assistant's calls.
                            ContentPart::ToolResult {
                                tool_use_id,
                                content,
                                is_error,
                            } => messages.push(json!({
                                "role": "tool",
                                "tool_call_id": tool_use_id,
                                "content": if *is_error { format!("Error: {content}") } else { content.clone() },
                            })),
                            ContentPart::Text { text } if !text.is_empty() => texts.push(text),
                            _ => {}
                        }
                    }
                    match texts.as_slice() {
                        [] => {}
                        [one] => messages.push(json!({"role": "user", "content": one})),
                        many => messages.push(json!({
                            "role": "user",
                            "content": many.iter().map(|t| json!({"type": "text", "text": t})).collect::<Vec<_>>(),
                        })),
                    }
                }
                Role::Assistant => {
                    let mut text = String::new();
                    let mut calls = Vec::new();
                    for part in &m.content {
                        match part {
                            ContentPart::Text { text: t } => text.push_str(t),
                            ContentPart::ToolUse { id, name, input } => calls.push(json!({
                                "id": id, "type": "function",
                                "function": {"name": name, "arguments": input.to_string()},
                            })),
                            ContentPart::ToolResult { .. } => {}
                        }
                    }
                    let mut msg = Map::new();
                    msg.insert("role".into(), json!("assistant"));
                    msg.insert(
                        "content".into(),
                        if text.is_empty() && !calls.is_empty() {
                            Value::Null
                        } else {
                            json!(text)
                        },
                    );
                    if !calls.is_empty() {
                        msg.insert("tool_calls".into(), Value::Array(calls));
                    }
                    messages.push(Value::Object(msg));
                }
            }
        }
        let mut body = Map::new();
        body.insert("model".into(), json!(request.model));
        body.insert("messages".into(), Value::Array(messages));
        if !request.tools.is_empty() {
            body.insert(
                "tools".into(),
                request
                    .tools
                    .iter()
                    .map(|t| {
                        json!({"type": "function", "function": {
                            "name": t.name, "description": t.description, "parameters": t.input_schema,
                        }})
                    })
                    .collect(),
            );
        }
        body.insert("max_completion_tokens".into(), json!(request.max_tokens));
        if let Some(t) = request.temperature {
            body.insert("temperature".into(), json!(t));
        }
        body.insert("stream".into(), json!(true));
        body.insert("stream_options".into(), json!({"include_usage": true}));
        Value::Object(body)
    }
}

#[async_trait::async_trait]
impl Provider for OpenAiProvider {
    fn name(&self) -> &str {
        &self.core.name
    }

    fn kind(&self) -> ProviderKind {
        ProviderKind::OpenAi
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
        self.core.forward("", tail, query, body, extra).await
    }
}

#[derive(Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

struct Parser {
    provider: String,
    calls: BTreeMap<u64, PartialCall>,
    calls_flushed: bool,
    finish: Option<String>,
    usage: Option<Usage>,
}

impl Parser {
    fn new(provider: &str) -> Self {
        Parser {
            provider: provider.to_string(),
            calls: BTreeMap::new(),
            calls_flushed: false,
            finish: None,
            usage: None,
        }
    }

    fn protocol(&self, message: String) -> ProviderError {
        ProviderError::Protocol {
            provider: self.provider.clone(),
            message,
        }
    }

    fn flush_calls(&mut self, out: &mut VecDeque<StreamEvent>) -> Result<(), ProviderError> {
        if self.calls_flushed {
            return Ok(());
        }
        self.calls_flushed = true;
        for (index, call) in std::mem::take(&mut self.calls) {
            let input = if call.arguments.trim().is_empty() {
                json!({})
            } else {
                serde_json::from_str(&call.arguments).map_err(|e| {
                    self.protocol(format!(
                        "the arguments of tool call {:?} are not valid JSON ({e}): {}",
                        call.name, call.arguments
                    ))
                })?
            };
            out.push_back(StreamEvent::ToolUse {
                id: if call.id.is_empty() {
                    format!("call_{index}")
                } else {
                    call.id
                },
                name: call.name,
                input,
            });
        }
        Ok(())
    }

    fn complete(&mut self, out: &mut VecDeque<StreamEvent>) -> Result<(), ProviderError> {
        self.flush_calls(out)?;
        let usage = self.usage.unwrap_or_else(|| {
            tracing::warn!(provider = %self.provider, "the stream reported no usage; metering zero tokens");
            Usage::default()
        });
        out.push_back(StreamEvent::Usage(usage));
        let stop = match self.finish.as_deref() {
            Some("stop") | None => StopReason::EndTurn,
            Some("tool_calls" | "function_call") => StopReason::ToolUse,
            Some("length") => StopReason::MaxTokens,
            Some("content_filter") => StopReason::Refusal,
            Some(other) => StopReason::Other(other.to_string()),
        };
        out.push_back(StreamEvent::Stop(stop));
        Ok(())
    }
}

fn usage_from(u: &Value) -> Usage {
    let n = |p: &str| u.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let prompt = n("/prompt_tokens");
    let cached = n("/prompt_tokens_details/cached_tokens");
    Usage {
        input_tokens: prompt.saturating_sub(cached),
        output_tokens: n("/completion_tokens"),
        cache_read_input_tokens: cached,
        cache_creation_input_tokens: 0,
    }
}

impl WireParser for Parser {
    fn event(
        &mut self,
        event: SseEvent,
        out: &mut VecDeque<StreamEvent>,
    ) -> Result<bool, ProviderError> {
        let data = event.data.trim();
        if data == "[DONE]" {
            self.complete(out)?;
            return Ok(true);
        }
        if data.is_empty() {
            return Ok(false);
        }
        let v: Value = serde_json::from_str(data)
            .map_err(|e| self.protocol(format!("a stream chunk is not JSON ({e}): {data}")))?;
        if v.get("error").is_some_and(|e| !e.is_null()) {
            let (t, c, m) = error_fields(data.as_bytes());
            return Err(classify(
                &self.provider,
                None,
                t.as_deref(),
                c.as_deref(),
                m,
                None,
            ));
        }
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(usage_from(u));
        }
        let choices = v.get("choices").and_then(Value::as_array);
        for choice in choices.into_iter().flatten() {
            if choice.get("index").and_then(Value::as_u64).unwrap_or(0) != 0 {
                continue;
            }
            let delta = choice.get("delta").unwrap_or(&Value::Null);
            for key in ["content", "refusal"] {
                if let Some(t) = delta.get(key).and_then(Value::as_str) {
                    if !t.is_empty() {
                        out.push_back(StreamEvent::TextDelta(t.to_string()));
                    }
                }
            }
            let tool_calls = delta.get("tool_calls").and_then(Value::as_array);
            for (pos, tc) in tool_calls.into_iter().flatten().enumerate() {
                let index = tc
                    .get("index")
                    .and_then(Value::as_u64)
                    .unwrap_or(pos as u64);
                let call = self.calls.entry(index).or_default();
                if let Some(id) = tc.get("id").and_then(Value::as_str) {
                    if !id.is_empty() {
                        call.id = id.to_string();
                    }
                }
                if let Some(name) = tc.pointer("/function/name").and_then(Value::as_str) {
                    if call.name.is_empty() {
                        call.name = name.to_string();
                    }
                }
                if let Some(args) = tc.pointer("/function/arguments").and_then(Value::as_str) {
                    call.arguments.push_str(args);
                }
            }
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                self.finish = Some(reason.to_string());
                self.flush_calls(out)?;
            }
        }
        Ok(false)
    }

    fn end(&mut self, out: &mut VecDeque<StreamEvent>) -> Result<(), ProviderError> {
        if self.finish.is_some() {
            // Some compatible servers end without `[DONE]`; the answer was complete.
            return self.complete(out);
        }
        Err(self.protocol("the stream ended before the response was complete".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{Message, ToolSpec};

    #[test]
    fn conversations_map_to_chat_messages() {
        let mut req = ModelRequest::new(
            "gpt-4o",
            vec![
                Message::user("weather?"),
                Message {
                    role: Role::Assistant,
                    content: vec![ContentPart::ToolUse {
                        id: "call_1".into(),
                        name: "get_weather".into(),
                        input: json!({"city": "Paris"}),
                    }],
                },
                Message::tool_results([ContentPart::ToolResult {
                    tool_use_id: "call_1".into(),
                    content: "boom".into(),
                    is_error: true,
                }]),
            ],
            100,
        );
        req.system = Some("be brief".into());
        req.tools.push(ToolSpec {
            name: "get_weather".into(),
            description: "d".into(),
            input_schema: json!({"type": "object"}),
        });
        let body = OpenAiProvider::request_body(&req);
        assert_eq!(
            body["messages"],
            json!([
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "Error: boom"},
            ])
        );
        assert_eq!(
            body["tools"][0]["function"]["parameters"],
            json!({"type": "object"})
        );
        assert_eq!(body["stream_options"], json!({"include_usage": true}));
        assert!(body.get("temperature").is_none());
    }
}
