//! The production provider code against the scripted model server
//! (`paddock_testkit::model_server`), for both wire formats.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::{anyhow, Context, Result};
use futures::StreamExt;
use paddock_agent::provider::{
    build_provider, ApiKey, ContentPart, EnvKeys, Message, ModelRequest, Provider, ProviderConfig,
    ProviderKind, Providers, StopReason, StreamEvent, ToolSpec, Usage,
};
use paddock_agent::{ProviderError, RetryStatus, SessionErrorType};
use paddock_testkit::model_server::{ErrorReply, ModelServer, Reply, Script, StreamOutcome, Turn};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

const KEY: &str = "sk-test-0123456789";

fn config(kind: ProviderKind, base_url: String) -> ProviderConfig {
    let mut c = ProviderConfig::new("scripted", kind, Some(base_url));
    c.api_key_env = Some("PADDOCK_TEST_UNUSED_KEY_VAR".into());
    c.timeout_secs = 10;
    c.max_retries = 2;
    c.initial_backoff_ms = 10;
    c.max_backoff_ms = 50;
    c
}

fn base_url(kind: ProviderKind, server: &ModelServer) -> String {
    match kind {
        ProviderKind::OpenAi => server.openai_base_url(),
        ProviderKind::Anthropic => server.anthropic_base_url(),
        ProviderKind::Gemini => unreachable!("gemini serves the gateway only"),
    }
}

fn provider(kind: ProviderKind, server: &ModelServer) -> Result<Arc<dyn Provider>> {
    Ok(build_provider(
        &config(kind, base_url(kind, server)),
        Some(ApiKey::new(KEY)),
    )?)
}

fn model(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::OpenAi => "gpt-4o",
        ProviderKind::Anthropic => "claude-sonnet-4-6",
        ProviderKind::Gemini => unreachable!("gemini serves the gateway only"),
    }
}

fn hello(kind: ProviderKind) -> ModelRequest {
    ModelRequest::new(model(kind), vec![Message::user("Say hello")], 256)
}

async fn start(turns: Vec<Turn>) -> Result<ModelServer> {
    Ok(ModelServer::start(Script::new(turns)).await?)
}

async fn events(p: &dyn Provider, req: &ModelRequest) -> Result<Vec<StreamEvent>> {
    let mut stream = p.stream(req).await?;
    let mut out = Vec::new();
    while let Some(ev) = stream.next().await {
        out.push(ev?);
    }
    Ok(out)
}

/// Runs a scenario once per wire format.
macro_rules! both_formats {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn openai() -> anyhow::Result<()> {
                super::$name(paddock_agent::provider::ProviderKind::OpenAi).await
            }
            #[tokio::test]
            async fn anthropic() -> anyhow::Result<()> {
                super::$name(paddock_agent::provider::ProviderKind::Anthropic).await
            }
        }
    )*};
}

both_formats!(
    text_streams_in_order_and_reassembles,
    tool_call_input_arrives_in_partial_json_deltas,
    usage_includes_cache_tokens,
    exact_requests_are_sent,
    rate_limit_with_retry_after_is_retried,
    server_errors_are_retried_until_exhausted,
    overloaded_is_classified,
    wrong_key_is_auth_and_not_retried,
    bad_request_names_the_message,
    unreachable_port_is_unreachable,
    slow_stream_delivers_the_first_delta_early,
    dropping_the_stream_closes_the_connection,
    hanging_provider_times_out,
    stalled_stream_times_out,
    error_inside_the_stream_is_classified,
    missing_key_fails_without_sending,
    non_streaming_answers_are_served,
);

async fn text_streams_in_order_and_reassembles(kind: ProviderKind) -> Result<()> {
    let server = start(vec![Turn::text(["Hel", "lo", ", wor", "ld!"])]).await?;
    let p = provider(kind, &server)?;
    let evs = events(p.as_ref(), &hello(kind)).await?;
    let deltas: Vec<&str> = evs
        .iter()
        .filter_map(|e| match e {
            StreamEvent::TextDelta(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(deltas, ["Hel", "lo", ", wor", "ld!"]);
    assert!(
        matches!(evs[evs.len() - 2], StreamEvent::Usage(_)),
        "{evs:?}"
    );
    assert_eq!(evs.last(), Some(&StreamEvent::Stop(StopReason::EndTurn)));

    server.push(Turn::text(["Hello", " again"]));
    let resp = p.stream(&hello(kind)).await?.collect_response().await?;
    assert_eq!(resp.text(), "Hello again");
    assert_eq!(
        resp.content,
        vec![ContentPart::Text {
            text: "Hello again".into()
        }]
    );
    assert_eq!(resp.stop_reason, StopReason::EndTurn);
    assert_eq!(server.request_count(), 2);
    Ok(())
}

async fn tool_call_input_arrives_in_partial_json_deltas(kind: ProviderKind) -> Result<()> {
    let weather = json!({"city": "Paris", "units": "metric", "days": [1, 2, 3], "note": "caf\u{e9} \"quoted\""});
    let reply = Reply::text(["Let me check."])
        .tool_call("get_weather", weather.clone(), 5)
        .tool_call("get_time", json!({"tz": "Europe/Paris"}), 3)
        .usage(50, 30, 0, 0);
    let server = start(vec![reply.into()]).await?;
    let p = provider(kind, &server)?;
    let evs = events(p.as_ref(), &hello(kind)).await?;
    let prefix = match kind {
        ProviderKind::OpenAi => "call_1_",
        ProviderKind::Anthropic => "toolu_1_",
        ProviderKind::Gemini => unreachable!("gemini serves the gateway only"),
    };
    let tools: Vec<&StreamEvent> = evs
        .iter()
        .filter(|e| matches!(e, StreamEvent::ToolUse { .. }))
        .collect();
    assert_eq!(
        tools,
        [
            &StreamEvent::ToolUse {
                id: format!("{prefix}0"),
                name: "get_weather".into(),
                input: weather
            },
            &StreamEvent::ToolUse {
                id: format!("{prefix}1"),
                name: "get_time".into(),
                input: json!({"tz": "Europe/Paris"})
            },
        ]
    );
    assert_eq!(evs[0], StreamEvent::TextDelta("Let me check.".into()));
    assert_eq!(evs.last(), Some(&StreamEvent::Stop(StopReason::ToolUse)));
    // The input really came in pieces: 1 text delta + 5 + 3 input deltas were streamed.
    let streams = server.streams();
    assert_eq!(streams.len(), 1);
    assert_eq!(streams[0].outcome, StreamOutcome::Completed);
    Ok(())
}

async fn usage_includes_cache_tokens(kind: ProviderKind) -> Result<()> {
    let reply = Reply::text(["ok"]).usage(12, 7, 100, 20);
    let server = start(vec![reply.into()]).await?;
    let p = provider(kind, &server)?;
    let resp = p.stream(&hello(kind)).await?.collect_response().await?;
    let expected = match kind {
        ProviderKind::Gemini => unreachable!("gemini serves the gateway only"),
        ProviderKind::Anthropic => Usage {
            input_tokens: 12,
            output_tokens: 7,
            cache_read_input_tokens: 100,
            cache_creation_input_tokens: 20,
        },
        // OpenAI reports prompt_tokens = 132 with cached_tokens = 100 and has no
        // cache-write figure: the uncached 32 are input.
        ProviderKind::OpenAi => Usage {
            input_tokens: 32,
            output_tokens: 7,
            cache_read_input_tokens: 100,
            cache_creation_input_tokens: 0,
        },
    };
    assert_eq!(resp.usage, expected);
    let cost = paddock_agent::pricing::PriceTable::builtin().cost(model(kind), &resp.usage);
    assert!(cost.priced);
    Ok(())
}

async fn exact_requests_are_sent(kind: ProviderKind) -> Result<()> {
    let first = Reply::text(["Let me check."])
        .tool_call("get_weather", json!({"city": "Paris"}), 3)
        .usage(40, 12, 0, 0);
    let server = start(vec![first.into(), Turn::text(["18°C and sunny."])]).await?;
    let p = provider(kind, &server)?;
    let schema =
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]});
    let mut req = ModelRequest::new(
        model(kind),
        vec![Message::user("What's the weather in Paris?")],
        512,
    );
    req.system = Some("You are terse.".into());
    req.temperature = Some(0.5);
    req.tools = vec![ToolSpec {
        name: "get_weather".into(),
        description: "Current weather for a city".into(),
        input_schema: schema.clone(),
    }];
    let resp = p.stream(&req).await?.collect_response().await?;
    assert_eq!(resp.stop_reason, StopReason::ToolUse);
    let call_id = match resp.content.last() {
        Some(ContentPart::ToolUse { id, .. }) => id.clone(),
        other => return Err(anyhow!("expected a tool call, got {other:?}")),
    };
    req.messages.push(resp.into_message());
    req.messages
        .push(Message::tool_results([ContentPart::ToolResult {
            tool_use_id: call_id.clone(),
            content: "18°C, sunny".into(),
            is_error: false,
        }]));
    let second = p.stream(&req).await?.collect_response().await?;
    assert_eq!(second.text(), "18°C and sunny.");

    let recorded = server.requests();
    assert_eq!(recorded.len(), 2);
    let r = &recorded[1];
    assert_eq!(r.method, "POST");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(
        r.header("user-agent")
            .is_some_and(|u| u.starts_with("paddock/")),
        "{:?}",
        r.header("user-agent")
    );
    match kind {
        ProviderKind::Gemini => unreachable!("gemini serves the gateway only"),
        ProviderKind::OpenAi => {
            assert_eq!(r.path, "/v1/chat/completions");
            assert_eq!(
                r.header("authorization"),
                Some(format!("Bearer {KEY}").as_str())
            );
            assert_eq!(r.header("x-api-key"), None);
            assert_eq!(
                r.body,
                json!({
                    "model": "gpt-4o",
                    "messages": [
                        {"role": "system", "content": "You are terse."},
                        {"role": "user", "content": "What's the weather in Paris?"},
                        {"role": "assistant", "content": "Let me check.", "tool_calls": [
                            {"id": call_id, "type": "function",
                             "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                        {"role": "tool", "tool_call_id": call_id, "content": "18°C, sunny"},
                    ],
                    "tools": [{"type": "function", "function": {
                        "name": "get_weather", "description": "Current weather for a city",
                        "parameters": schema}}],
                    "max_completion_tokens": 512,
                    "temperature": 0.5,
                    "stream": true,
                    "stream_options": {"include_usage": true},
                })
            );
        }
        ProviderKind::Anthropic => {
            assert_eq!(r.path, "/v1/messages");
            assert_eq!(r.header("x-api-key"), Some(KEY));
            assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
            assert_eq!(r.header("authorization"), None);
            assert_eq!(
                r.body,
                json!({
                    "model": "claude-sonnet-4-6",
                    "max_tokens": 512,
                    "system": "You are terse.",
                    "messages": [
                        {"role": "user", "content": [{"type": "text", "text": "What's the weather in Paris?"}]},
                        {"role": "assistant", "content": [
                            {"type": "text", "text": "Let me check."},
                            {"type": "tool_use", "id": call_id, "name": "get_weather", "input": {"city": "Paris"}}]},
                        {"role": "user", "content": [
                            {"type": "tool_result", "tool_use_id": call_id, "content": "18°C, sunny"}]},
                    ],
                    "tools": [{"name": "get_weather", "description": "Current weather for a city",
                               "input_schema": schema}],
                    "temperature": 0.5,
                    "stream": true,
                })
            );
        }
    }
    // The first request had only the user message.
    let first_messages = recorded[0].body["messages"]
        .as_array()
        .context("messages")?
        .len();
    assert_eq!(
        first_messages,
        match kind {
            ProviderKind::OpenAi => 2, // system + user
            ProviderKind::Anthropic => 1,
            ProviderKind::Gemini => unreachable!("gemini serves the gateway only"),
        }
    );
    Ok(())
}

async fn rate_limit_with_retry_after_is_retried(kind: ProviderKind) -> Result<()> {
    let server = start(vec![
        ErrorReply::new(429, "Rate limited, slow down")
            .retry_after("1")
            .into(),
        Turn::text(["finally"]),
    ])
    .await?;
    let p = provider(kind, &server)?;
    let started = Instant::now();
    let resp = p.stream(&hello(kind)).await?.collect_response().await?;
    let waited = started.elapsed();
    assert_eq!(resp.text(), "finally");
    assert_eq!(server.request_count(), 2, "one 429, one success");
    // The configured backoff is at most 50 ms: waiting ~1 s means retry-after was used.
    assert!(
        waited >= Duration::from_millis(950),
        "waited only {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
    let reqs = server.requests();
    assert_eq!(
        reqs[0].body, reqs[1].body,
        "the retry sends the same request"
    );
    Ok(())
}

async fn server_errors_are_retried_until_exhausted(kind: ProviderKind) -> Result<()> {
    let server = start(vec![
        Turn::error(500, "internal error 1"),
        Turn::error(500, "internal error 2"),
        Turn::error(500, "internal error 3"),
        Turn::text(["never reached"]),
    ])
    .await?;
    let p = provider(kind, &server)?;
    let err = p
        .stream(&hello(kind))
        .await
        .err()
        .context("expected an error")?;
    assert!(
        matches!(
            &err,
            ProviderError::Server { status: Some(500), attempts: 3, message, .. } if message == "internal error 3"
        ),
        "{err:?}"
    );
    assert_eq!(server.request_count(), 3, "1 attempt + max_retries 2");
    let s = err.session_error();
    assert_eq!(s.error_type, SessionErrorType::ModelRequestFailed);
    assert_eq!(s.retry_status, RetryStatus::Exhausted);
    assert!(
        s.message.contains("scripted") && s.message.contains("3 attempt"),
        "{}",
        s.message
    );
    assert_eq!(server.remaining_turns(), 1);
    Ok(())
}

async fn overloaded_is_classified(kind: ProviderKind) -> Result<()> {
    let status = match kind {
        ProviderKind::Gemini => unreachable!("gemini serves the gateway only"),
        ProviderKind::OpenAi => 503,
        ProviderKind::Anthropic => 529,
    };
    let turns: Vec<Turn> = (0..3).map(|_| Turn::error(status, "Overloaded")).collect();
    let server = start(turns).await?;
    let mut c = config(kind, base_url(kind, &server));
    c.max_retries = 1;
    let p = build_provider(&c, Some(ApiKey::new(KEY)))?;
    let err = p
        .stream(&hello(kind))
        .await
        .err()
        .context("expected an error")?;
    assert!(
        matches!(err, ProviderError::Overloaded { status: Some(s), attempts: 2, .. } if s == status),
        "{err:?}"
    );
    assert_eq!(server.request_count(), 2);
    let s = serde_json::to_value(err.session_error())?;
    assert_eq!(s["type"], json!("model_overloaded_error"));
    assert_eq!(s["retry_status"], json!({"type": "exhausted"}));
    Ok(())
}

async fn wrong_key_is_auth_and_not_retried(kind: ProviderKind) -> Result<()> {
    let server = start(vec![
        Turn::error(401, "invalid x-api-key"),
        Turn::text(["never reached"]),
    ])
    .await?;
    let p = provider(kind, &server)?;
    let err = p
        .stream(&hello(kind))
        .await
        .err()
        .context("expected an error")?;
    assert!(
        matches!(&err, ProviderError::Auth { status: 401, message, .. } if message == "invalid x-api-key"),
        "{err:?}"
    );
    assert_eq!(server.request_count(), 1, "a wrong key is not retried");
    let s = err.session_error();
    assert_eq!(s.retry_status, RetryStatus::Terminal);
    assert_eq!(s.error_type, SessionErrorType::ModelRequestFailed);
    assert!(s.message.contains("API key"), "{}", s.message);
    assert!(!s.message.contains(KEY), "the key never appears in errors");
    Ok(())
}

async fn bad_request_names_the_message(kind: ProviderKind) -> Result<()> {
    let server = start(vec![Turn::error(400, "messages.0.content: Field required")]).await?;
    let p = provider(kind, &server)?;
    let err = p
        .stream(&hello(kind))
        .await
        .err()
        .context("expected an error")?;
    assert!(
        matches!(err, ProviderError::BadRequest { status: 400, .. }),
        "{err:?}"
    );
    assert!(err
        .to_string()
        .contains("messages.0.content: Field required"));
    assert_eq!(server.request_count(), 1);
    assert_eq!(err.retry_status(), RetryStatus::Exhausted);
    Ok(())
}

async fn unreachable_port_is_unreachable(kind: ProviderKind) -> Result<()> {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let url = match kind {
        ProviderKind::Gemini => unreachable!("gemini serves the gateway only"),
        ProviderKind::OpenAi => format!("http://127.0.0.1:{port}/v1"),
        ProviderKind::Anthropic => format!("http://127.0.0.1:{port}"),
    };
    let p = build_provider(&config(kind, url), Some(ApiKey::new(KEY)))?;
    let err = p
        .stream(&hello(kind))
        .await
        .err()
        .context("expected an error")?;
    match &err {
        ProviderError::Unreachable { url, attempts, .. } => {
            assert!(url.contains(&port.to_string()), "{url}");
            assert_eq!(*attempts, 3, "connection failures are retried");
        }
        other => return Err(anyhow!("expected Unreachable, got {other:?}")),
    }
    let s = err.session_error();
    assert_eq!(s.error_type, SessionErrorType::ModelRequestFailed);
    assert_eq!(s.retry_status, RetryStatus::Exhausted);
    assert!(s.message.contains("unreachable"), "{}", s.message);
    Ok(())
}

async fn slow_stream_delivers_the_first_delta_early(kind: ProviderKind) -> Result<()> {
    let reply = Reply::text(["first", " second", " third", " fourth"])
        .delays(Duration::ZERO, Duration::from_millis(400));
    let server = start(vec![reply.into()]).await?;
    let p = provider(kind, &server)?;
    let started = Instant::now();
    let mut stream = p.stream(&hello(kind)).await?;
    let mut first = None;
    let mut text = String::new();
    while let Some(ev) = stream.next().await {
        if let StreamEvent::TextDelta(t) = ev? {
            first.get_or_insert_with(|| started.elapsed());
            text.push_str(&t);
        }
    }
    let total = started.elapsed();
    let first = first.context("no text")?;
    assert_eq!(text, "first second third fourth");
    // Three 400 ms gaps follow the first delta: it must not wait for them.
    assert!(total >= Duration::from_millis(1200), "total {total:?}");
    assert!(
        first + Duration::from_millis(800) < total,
        "time to first token {first:?} vs total {total:?}"
    );
    Ok(())
}

async fn dropping_the_stream_closes_the_connection(kind: ProviderKind) -> Result<()> {
    let chunks: Vec<String> = (0..40).map(|i| format!("chunk{i} ")).collect();
    let reply = Reply::text(chunks).delays(Duration::ZERO, Duration::from_millis(50));
    let server = start(vec![reply.into()]).await?;
    let p = provider(kind, &server)?;
    let mut stream = p.stream(&hello(kind)).await?;
    let mut deltas = 0;
    while deltas < 2 {
        match stream.next().await.context("stream ended early")?? {
            StreamEvent::TextDelta(_) => deltas += 1,
            other => return Err(anyhow!("unexpected {other:?}")),
        }
    }
    drop(stream);
    let record = server
        .wait_for_disconnect(Duration::from_secs(5))
        .await
        .context("the server never saw the client go away")?;
    assert!(
        record.frames_sent < record.frames_total,
        "disconnected after sending everything? {record:?}"
    );
    Ok(())
}

async fn hanging_provider_times_out(kind: ProviderKind) -> Result<()> {
    let server = start(vec![Turn::hang()]).await?;
    let mut c = config(kind, base_url(kind, &server));
    c.timeout_secs = 1;
    c.max_retries = 0;
    let p = build_provider(&c, Some(ApiKey::new(KEY)))?;
    let started = Instant::now();
    let err = p
        .stream(&hello(kind))
        .await
        .err()
        .context("expected a timeout")?;
    assert!(
        matches!(
            err,
            ProviderError::Timeout {
                waiting: "waiting for the response",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(err.session_error().retry_status, RetryStatus::Exhausted);
    Ok(())
}

async fn stalled_stream_times_out(kind: ProviderKind) -> Result<()> {
    let server = start(vec![Reply::text(["a", "b", "c"]).hang_after(1).into()]).await?;
    let mut c = config(kind, base_url(kind, &server));
    c.timeout_secs = 1;
    let p = build_provider(&c, Some(ApiKey::new(KEY)))?;
    let mut stream = p.stream(&hello(kind)).await?;
    assert_eq!(
        stream.next().await.context("first")??,
        StreamEvent::TextDelta("a".into())
    );
    let err = stream
        .next()
        .await
        .context("an error, not the end")?
        .err()
        .context("expected a timeout")?;
    assert!(
        matches!(
            err,
            ProviderError::Timeout {
                waiting: "waiting for the next stream event",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        stream.next().await.is_none(),
        "the stream ends after an error"
    );
    Ok(())
}

async fn error_inside_the_stream_is_classified(kind: ProviderKind) -> Result<()> {
    let reply = Reply::text(["partial"]).stream_error("overloaded_error", "Overloaded");
    let server = start(vec![reply.into()]).await?;
    let p = provider(kind, &server)?;
    let mut stream = p.stream(&hello(kind)).await?;
    assert_eq!(
        stream.next().await.context("first")??,
        StreamEvent::TextDelta("partial".into())
    );
    let err = stream
        .next()
        .await
        .context("an error")?
        .err()
        .context("expected an error")?;
    assert!(
        matches!(err, ProviderError::Overloaded { status: None, .. }),
        "{err:?}"
    );
    assert_eq!(
        err.session_error().error_type,
        SessionErrorType::ModelOverloaded
    );
    Ok(())
}

async fn missing_key_fails_without_sending(kind: ProviderKind) -> Result<()> {
    let server = start(vec![Turn::text(["never"])]).await?;
    let mut c = config(kind, base_url(kind, &server));
    c.api_key_env = Some("PADDOCK_TEST_SURELY_UNSET_KEY".into());
    let providers = Providers::from_configs(&[c], &EnvKeys)?;
    let (p, model) = providers.resolve("scripted/some-model")?;
    assert_eq!(model, "some-model");
    let err = p
        .stream(&hello(kind))
        .await
        .err()
        .context("expected an error")?;
    assert!(
        matches!(&err, ProviderError::MissingApiKey { env, .. } if env == "PADDOCK_TEST_SURELY_UNSET_KEY"),
        "{err:?}"
    );
    assert_eq!(err.retry_status(), RetryStatus::Terminal);
    assert_eq!(server.request_count(), 0);
    Ok(())
}

async fn non_streaming_answers_are_served(kind: ProviderKind) -> Result<()> {
    // The scripted server also answers `"stream": false` in each provider's shape.
    let reply = Reply::text(["Hello", " there"])
        .tool_call("t", json!({"a": 1}), 2)
        .usage(5, 6, 7, 0);
    let server = start(vec![reply.into()]).await?;
    let (url, body) = match kind {
        ProviderKind::Gemini => unreachable!("gemini serves the gateway only"),
        ProviderKind::OpenAi => (
            format!("{}/chat/completions", server.openai_base_url()),
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
        ),
        ProviderKind::Anthropic => (
            format!("{}/v1/messages", server.anthropic_base_url()),
            json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}),
        ),
    };
    let v: Value = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    match kind {
        ProviderKind::Gemini => unreachable!("gemini serves the gateway only"),
        ProviderKind::OpenAi => {
            assert_eq!(v["object"], json!("chat.completion"));
            let msg = &v["choices"][0]["message"];
            assert_eq!(msg["content"], json!("Hello there"));
            assert_eq!(
                msg["tool_calls"][0]["function"]["arguments"],
                json!("{\"a\":1}")
            );
            assert_eq!(v["choices"][0]["finish_reason"], json!("tool_calls"));
            assert_eq!(v["usage"]["prompt_tokens"], json!(12));
            assert_eq!(
                v["usage"]["prompt_tokens_details"]["cached_tokens"],
                json!(7)
            );
        }
        ProviderKind::Anthropic => {
            assert_eq!(v["type"], json!("message"));
            assert_eq!(
                v["content"][0],
                json!({"type": "text", "text": "Hello there"})
            );
            assert_eq!(v["content"][1]["input"], json!({"a": 1}));
            assert_eq!(v["stop_reason"], json!("tool_use"));
            assert_eq!(v["usage"]["cache_read_input_tokens"], json!(7));
        }
    }
    Ok(())
}

#[tokio::test]
async fn openai_insufficient_quota_is_billing_and_not_retried() -> Result<()> {
    let server = start(vec![
        ErrorReply::new(429, "You exceeded your current quota")
            .error_type("insufficient_quota")
            .code("insufficient_quota")
            .into(),
        Turn::text(["never"]),
    ])
    .await?;
    let p = provider(ProviderKind::OpenAi, &server)?;
    let err = p
        .stream(&hello(ProviderKind::OpenAi))
        .await
        .err()
        .context("expected an error")?;
    assert!(
        matches!(err, ProviderError::Billing { status: 429, .. }),
        "{err:?}"
    );
    assert_eq!(server.request_count(), 1);
    let s = serde_json::to_value(err.session_error())?;
    assert_eq!(s["type"], json!("billing_error"));
    assert_eq!(s["retry_status"], json!({"type": "terminal"}));
    Ok(())
}

#[tokio::test]
async fn registry_routes_provider_model_to_the_right_wire_format() -> Result<()> {
    let server = start(vec![
        Turn::text(["from openai"]),
        Turn::text(["from anthropic"]),
    ])
    .await?;
    let mut o = config(ProviderKind::OpenAi, server.openai_base_url());
    o.name = "local-openai".into();
    o.api_key_env = None;
    let mut a = config(ProviderKind::Anthropic, server.anthropic_base_url());
    a.name = "local-anthropic".into();
    a.api_key_env = None;
    let providers = Providers::from_configs(&[o, a], &EnvKeys)?;
    for (model_ref, path, text) in [
        ("local-openai/gpt-4o", "/v1/chat/completions", "from openai"),
        (
            "local-anthropic/claude-sonnet-4-6",
            "/v1/messages",
            "from anthropic",
        ),
    ] {
        let (p, model) = providers.resolve(model_ref)?;
        let req = ModelRequest::new(model.clone(), vec![Message::user("hi")], 16);
        let resp = p.stream(&req).await?.collect_response().await?;
        assert_eq!(resp.text(), text);
        let last = server.requests().pop().context("recorded")?;
        assert_eq!(last.path, path);
        assert_eq!(last.body["model"], json!(model));
        // No key configured: no auth header at all.
        assert_eq!(last.header("authorization"), None);
        assert_eq!(last.header("x-api-key"), None);
    }
    let err = providers
        .resolve("nope/gpt-4o")
        .err()
        .context("expected an error")?;
    assert!(
        err.to_string().contains("unknown model provider \"nope\""),
        "{err}"
    );
    assert!(
        err.to_string().contains("local-anthropic, local-openai"),
        "{err}"
    );
    Ok(())
}
