//! What the model gateway knows of the wire formats it relays: which format a request
//! is, how to point it at the session's model, how to read the usage out of an answer
//! (streamed or not) for metering, and how each format spells an error.
//!
//! The gateway relays; it does not translate. An agent speaking Anthropic messages is
//! served by an Anthropic-kind provider, one speaking OpenAI chat completions or the
//! Responses API by an OpenAI-kind provider (docs/agents-acp.md).

use serde_json::{json, Value};

pub use paddock_core::harness::ModelWire;

use crate::provider::sse::{SseDecoder, SseEvent};
use crate::provider::{ProviderKind, Usage};

/// A gateway request, classified by its path (relative to the gateway's root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub wire: ModelWire,
    /// The path to ask the provider for, relative to its API root: `messages`,
    /// `chat/completions`, `responses`, or Gemini's `models/{model}:{action}`.
    pub tail: String,
    /// Gemini: the action (`streamGenerateContent`, `generateContent`, `countTokens`).
    pub action: Option<String>,
}

impl Call {
    /// `None` for a path the gateway does not relay.
    pub fn classify(path: &str) -> Option<Call> {
        let p = path.trim_end_matches('/');
        let simple = |wire, tail: &str| {
            Some(Call {
                wire,
                tail: tail.to_string(),
                action: None,
            })
        };
        match p {
            "/v1/messages" => simple(ModelWire::Anthropic, "messages"),
            "/v1/messages/count_tokens" => simple(ModelWire::Anthropic, "messages/count_tokens"),
            "/v1/chat/completions" | "/chat/completions" => {
                simple(ModelWire::OpenaiChat, "chat/completions")
            }
            "/v1/responses" | "/responses" => simple(ModelWire::OpenaiResponses, "responses"),
            _ => {
                let rest = p
                    .strip_prefix("/v1beta/models/")
                    .or_else(|| p.strip_prefix("/v1/models/"))?;
                let (model, action) = rest.rsplit_once(':')?;
                if model.is_empty() || model.contains('/') {
                    return None;
                }
                match action {
                    "streamGenerateContent" | "generateContent" | "countTokens" => Some(Call {
                        wire: ModelWire::Gemini,
                        tail: format!("models/{model}:{action}"),
                        action: Some(action.to_string()),
                    }),
                    _ => None,
                }
            }
        }
    }

    /// Whether the call is a model call (metered, held to the budget); token counting
    /// is not.
    pub fn metered(&self) -> bool {
        self.tail != "messages/count_tokens" && self.action.as_deref() != Some("countTokens")
    }

    /// Whether a provider of `kind` speaks this call's format.
    pub fn served_by(&self, kind: ProviderKind) -> bool {
        served_by(self.wire, kind)
    }

    /// Points the request at `model` (the session's model, as its provider names it):
    /// the body's `model`, or Gemini's path. Streamed OpenAI chat completions are asked
    /// for their usage (`stream_options.include_usage`), which metering needs.
    /// Returns whether the answer streams and the model the agent asked for.
    pub fn rewrite(&mut self, body: &mut Value, model: &str) -> (bool, Option<String>) {
        match self.wire {
            ModelWire::Gemini => {
                let asked = self
                    .tail
                    .strip_prefix("models/")
                    .and_then(|r| r.rsplit_once(':'))
                    .map(|(m, _)| m.to_string());
                let action = self.action.clone().unwrap_or_default();
                self.tail = format!("models/{model}:{action}");
                (action == "streamGenerateContent", asked)
            }
            _ => {
                let asked = body
                    .get("model")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                if let Some(o) = body.as_object_mut() {
                    o.insert("model".into(), json!(model));
                }
                let stream = body.get("stream").and_then(Value::as_bool) == Some(true);
                if stream && self.wire == ModelWire::OpenaiChat {
                    if let Some(o) = body.as_object_mut() {
                        let opts = o.entry("stream_options").or_insert_with(|| json!({}));
                        if let Some(opts) = opts.as_object_mut() {
                            opts.insert("include_usage".into(), json!(true));
                        }
                    }
                }
                (stream, asked)
            }
        }
    }
}

/// Whether a provider of `kind` speaks `wire`.
pub fn served_by(wire: ModelWire, kind: ProviderKind) -> bool {
    matches!(
        (wire, kind),
        (ModelWire::Anthropic, ProviderKind::Anthropic)
            | (ModelWire::OpenaiChat, ProviderKind::OpenAi)
            | (ModelWire::OpenaiResponses, ProviderKind::OpenAi)
            | (ModelWire::Gemini, ProviderKind::Gemini)
    )
}

/// The base URL an API client of `wire` takes for a gateway at `root` (OpenAI's
/// clients put the version in the base URL; Anthropic's and Gemini's do not).
pub fn base_url(wire: ModelWire, root: &str) -> String {
    match wire {
        ModelWire::OpenaiChat | ModelWire::OpenaiResponses => format!("{root}/v1"),
        ModelWire::Anthropic | ModelWire::Gemini => root.to_string(),
    }
}

fn n(v: &Value, path: &str) -> u64 {
    v.pointer(path).and_then(Value::as_u64).unwrap_or(0)
}

/// The usage of one answer in `wire`'s JSON (a whole response, or one streamed event's
/// data), if it carries one. `input_tokens` excludes cached tokens, as everywhere in
/// Paddock.
fn usage_in(wire: ModelWire, v: &Value, into: &mut Option<Usage>) {
    match wire {
        ModelWire::Anthropic => {
            // A whole message, or `message_start` (input and cache figures) and
            // `message_delta` (output tokens so far, sometimes input figures again).
            let u = v
                .get("usage")
                .or_else(|| v.pointer("/message/usage"))
                .filter(|u| u.is_object());
            if let Some(u) = u {
                let cur = into.get_or_insert_with(Usage::default);
                let keep = |new: u64, old: u64| if new > 0 { new } else { old };
                cur.input_tokens = keep(n(u, "/input_tokens"), cur.input_tokens);
                cur.cache_read_input_tokens = keep(
                    n(u, "/cache_read_input_tokens"),
                    cur.cache_read_input_tokens,
                );
                cur.cache_creation_input_tokens = keep(
                    n(u, "/cache_creation_input_tokens"),
                    cur.cache_creation_input_tokens,
                );
                cur.output_tokens = keep(n(u, "/output_tokens"), cur.output_tokens);
            }
        }
        ModelWire::OpenaiChat => {
            if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
                let cached = n(u, "/prompt_tokens_details/cached_tokens");
                *into = Some(Usage {
                    input_tokens: n(u, "/prompt_tokens").saturating_sub(cached),
                    output_tokens: n(u, "/completion_tokens"),
                    cache_read_input_tokens: cached,
                    cache_creation_input_tokens: 0,
                });
            }
        }
        ModelWire::OpenaiResponses => {
            let u = v
                .pointer("/response/usage")
                .or_else(|| v.get("usage"))
                .filter(|u| u.is_object());
            if let Some(u) = u {
                let cached = n(u, "/input_tokens_details/cached_tokens");
                *into = Some(Usage {
                    input_tokens: n(u, "/input_tokens").saturating_sub(cached),
                    output_tokens: n(u, "/output_tokens"),
                    cache_read_input_tokens: cached,
                    cache_creation_input_tokens: 0,
                });
            }
        }
        ModelWire::Gemini => {
            // Every streamed chunk may carry the figures so far; the last one counts.
            if let Some(u) = v.get("usageMetadata").filter(|u| u.is_object()) {
                let cached = n(u, "/cachedContentTokenCount");
                *into = Some(Usage {
                    input_tokens: n(u, "/promptTokenCount").saturating_sub(cached),
                    output_tokens: n(u, "/candidatesTokenCount") + n(u, "/thoughtsTokenCount"),
                    cache_read_input_tokens: cached,
                    cache_creation_input_tokens: 0,
                });
            }
        }
    }
}

/// The usage of a whole (non-streamed) answer.
pub fn usage_of_body(wire: ModelWire, body: &[u8]) -> Option<Usage> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let mut u = None;
    usage_in(wire, &v, &mut u);
    u
}

/// Reads the usage out of a streamed answer as its bytes go by.
#[derive(Debug)]
pub struct UsageTap {
    wire: ModelWire,
    sse: SseDecoder,
    usage: Option<Usage>,
    events: Vec<SseEvent>,
}

impl UsageTap {
    pub fn new(wire: ModelWire) -> Self {
        UsageTap {
            wire,
            sse: SseDecoder::default(),
            usage: None,
            events: Vec::new(),
        }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        if self.sse.push(chunk, &mut self.events).is_err() {
            return;
        }
        self.take_events();
    }

    fn take_events(&mut self) {
        for e in self.events.drain(..) {
            if let Ok(v) = serde_json::from_str::<Value>(&e.data) {
                usage_in(self.wire, &v, &mut self.usage);
            }
        }
    }

    /// The usage seen so far (the stream may have been cut short).
    pub fn usage(&mut self) -> Option<Usage> {
        let _ = self.sse.finish(&mut self.events);
        self.take_events();
        self.usage
    }
}

/// An error answer in `wire`'s own envelope.
pub fn error_body(wire: ModelWire, status: u16, message: &str) -> Value {
    match wire {
        ModelWire::Anthropic => {
            let t = match status {
                400 => "invalid_request_error",
                401 => "authentication_error",
                403 => "permission_error",
                404 => "not_found_error",
                429 => "rate_limit_error",
                529 => "overloaded_error",
                _ => "api_error",
            };
            json!({"type": "error", "error": {"type": t, "message": message}})
        }
        ModelWire::OpenaiChat | ModelWire::OpenaiResponses => {
            let t = match status {
                401 => "authentication_error",
                403 => "permission_error",
                404 => "not_found_error",
                429 => "rate_limit_error",
                s if s >= 500 => "server_error",
                _ => "invalid_request_error",
            };
            json!({"error": {"message": message, "type": t, "param": null, "code": null}})
        }
        ModelWire::Gemini => {
            let s = match status {
                400 => "INVALID_ARGUMENT",
                401 => "UNAUTHENTICATED",
                403 => "PERMISSION_DENIED",
                404 => "NOT_FOUND",
                429 => "RESOURCE_EXHAUSTED",
                503 => "UNAVAILABLE",
                _ => "INTERNAL",
            };
            json!({"error": {"code": status, "message": message, "status": s}})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_classify_into_wire_formats() {
        let c = Call::classify("/v1/messages").expect("anthropic");
        assert_eq!(
            (c.wire, c.tail.as_str()),
            (ModelWire::Anthropic, "messages")
        );
        assert_eq!(
            Call::classify("/v1/responses").map(|c| c.wire),
            Some(ModelWire::OpenaiResponses)
        );
        assert_eq!(
            Call::classify("/v1/chat/completions").map(|c| c.wire),
            Some(ModelWire::OpenaiChat)
        );
        let g = Call::classify("/v1beta/models/gemini-2.5-flash:streamGenerateContent")
            .expect("gemini");
        assert_eq!(g.action.as_deref(), Some("streamGenerateContent"));
        assert!(Call::classify("/v1beta/models/a/b:generateContent").is_none());
        assert!(Call::classify("/v1/models/x:delete").is_none());
        assert!(Call::classify("/v1/files").is_none());
    }

    #[test]
    fn rewriting_points_at_the_session_model_and_asks_for_usage() {
        let mut c = Call::classify("/v1/chat/completions").expect("chat");
        let mut body = json!({"model": "gpt-x", "stream": true, "messages": []});
        assert_eq!(c.rewrite(&mut body, "m1"), (true, Some("gpt-x".into())));
        assert_eq!(body["model"], "m1");
        assert_eq!(body["stream_options"]["include_usage"], true);
        let mut g = Call::classify("/v1beta/models/gemini-pro:streamGenerateContent").expect("g");
        let mut body = json!({"contents": []});
        assert_eq!(
            g.rewrite(&mut body, "m2"),
            (true, Some("gemini-pro".into()))
        );
        assert_eq!(g.tail, "models/m2:streamGenerateContent");
    }

    #[test]
    fn usage_is_read_from_each_format_streamed_and_whole() {
        let mut t = UsageTap::new(ModelWire::Anthropic);
        t.push(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":10,\"cache_read_input_tokens\":5,\"cache_creation_input_tokens\":2,\"output_tokens\":1}}}\n\nevent: message_delta\nda");
        t.push(b"ta: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":7}}\n\n");
        assert_eq!(
            t.usage(),
            Some(Usage {
                input_tokens: 10,
                output_tokens: 7,
                cache_read_input_tokens: 5,
                cache_creation_input_tokens: 2
            })
        );
        let mut t = UsageTap::new(ModelWire::OpenaiResponses);
        t.push(b"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":30,\"input_tokens_details\":{\"cached_tokens\":10},\"output_tokens\":4}}}\n\n");
        assert_eq!(
            t.usage()
                .map(|u| (u.input_tokens, u.cache_read_input_tokens, u.output_tokens)),
            Some((20, 10, 4))
        );
        let mut t = UsageTap::new(ModelWire::Gemini);
        t.push(b"data: {\"usageMetadata\":{\"promptTokenCount\":9,\"candidatesTokenCount\":1}}\n\ndata: {\"usageMetadata\":{\"promptTokenCount\":9,\"candidatesTokenCount\":3,\"thoughtsTokenCount\":2}}\n\n");
        assert_eq!(
            t.usage().map(|u| (u.input_tokens, u.output_tokens)),
            Some((9, 5))
        );
        let body = br#"{"usage":{"prompt_tokens":12,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":2}}}"#;
        assert_eq!(
            usage_of_body(ModelWire::OpenaiChat, body)
                .map(|u| (u.input_tokens, u.cache_read_input_tokens)),
            Some((10, 2))
        );
        assert_eq!(UsageTap::new(ModelWire::OpenaiChat).usage(), None);
    }

    #[test]
    fn errors_use_each_formats_envelope() {
        assert_eq!(
            error_body(ModelWire::Anthropic, 403, "no")["error"]["type"],
            "permission_error"
        );
        assert_eq!(
            error_body(ModelWire::OpenaiResponses, 400, "no")["error"]["message"],
            "no"
        );
        assert_eq!(
            error_body(ModelWire::Gemini, 429, "no")["error"]["status"],
            "RESOURCE_EXHAUSTED"
        );
    }
}
