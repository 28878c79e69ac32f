//! The scripted model server's OpenAI Responses and Gemini wire formats, its side rules
//! and its error envelopes, driven with a plain HTTP client. One check runs the
//! official `openai` Python SDK against the Responses route when `PADDOCK_SDK_PYTHON`
//! names a Python that can import it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures::StreamExt;
use paddock_testkit::model_server::{ErrorReply, ModelServer, Reply, Script, SideRule, Turn};
use serde_json::{json, Value};
use std::time::Duration;

const GEMINI_STREAM: &str = "/v1beta/models/gemini-2.5-flash:streamGenerateContent";
const GEMINI_GENERATE: &str = "/v1beta/models/gemini-2.5-flash:generateContent";

async fn start(script: Script) -> ModelServer {
    ModelServer::start(script).await.expect("server starts")
}

async fn post(server: &ModelServer, path: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}{path}", server.base_url()))
        .json(body)
        .send()
        .await
        .expect("request sent")
}

async fn post_json(server: &ModelServer, path: &str, body: &Value) -> (u16, Value) {
    let resp = post(server, path, body).await;
    let status = resp.status().as_u16();
    let v = resp.json::<Value>().await.expect("a JSON body");
    (status, v)
}

/// The SSE events of a body: (the `event:` name, the `data:` JSON).
fn parse_sse(text: &str) -> Vec<(Option<String>, Value)> {
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut event = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = Some(e.to_string());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                } else {
                    panic!("unexpected SSE line {line:?}");
                }
            }
            (event, serde_json::from_str(&data).expect("data is JSON"))
        })
        .collect()
}

async fn post_sse(server: &ModelServer, path: &str, body: &Value) -> Vec<(Option<String>, Value)> {
    let resp = post(server, path, body).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    parse_sse(&resp.text().await.expect("body"))
}

fn weather_reply() -> Reply {
    Reply::text(["Hel", "lo"])
        .tool_call("get_weather", json!({"city": "Paris", "days": 3}), 3)
        .usage(12, 7, 100, 20)
}

fn responses_request(stream: bool) -> Value {
    json!({"model": "gpt-5-codex", "input": "hi", "stream": stream})
}

#[tokio::test]
async fn responses_stream_events_text_and_function_call() {
    let server = start(Script::new([weather_reply().into()])).await;
    let events = post_sse(&server, "/v1/responses", &responses_request(true)).await;

    let types: Vec<&str> = events
        .iter()
        .map(|(_, d)| d["type"].as_str().expect("type"))
        .collect();
    assert_eq!(
        types,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    for (n, (event, data)) in events.iter().enumerate() {
        assert_eq!(event.as_deref(), data["type"].as_str(), "event line = type");
        assert_eq!(
            data["sequence_number"],
            json!(n),
            "sequence numbers count up"
        );
    }

    let created = &events[0].1["response"];
    assert_eq!(created["object"], "response");
    assert_eq!(created["status"], "in_progress");
    assert_eq!(created["model"], "gpt-5-codex");
    assert_eq!(created["output"], json!([]));
    let id = created["id"].as_str().expect("id").to_string();

    let added = &events[2].1;
    assert_eq!(added["output_index"], 0);
    assert_eq!(added["item"]["type"], "message");
    assert_eq!(added["item"]["role"], "assistant");
    assert_eq!(added["item"]["status"], "in_progress");
    let message_id = added["item"]["id"].as_str().expect("item id").to_string();
    assert_eq!(
        events[3].1["part"],
        json!({"type": "output_text", "text": "", "annotations": []})
    );

    let text: String = events
        .iter()
        .filter(|(_, d)| d["type"] == "response.output_text.delta")
        .map(|(_, d)| {
            assert_eq!(d["item_id"], message_id.as_str());
            assert_eq!(d["output_index"], 0);
            assert_eq!(d["content_index"], 0);
            d["delta"].as_str().expect("delta").to_string()
        })
        .collect();
    assert_eq!(text, "Hello");
    assert_eq!(events[6].1["text"], "Hello");
    assert_eq!(events[7].1["part"]["text"], "Hello");
    assert_eq!(
        events[8].1["item"],
        json!({"type": "message", "id": message_id, "status": "completed", "role": "assistant",
               "content": [{"type": "output_text", "text": "Hello", "annotations": []}]})
    );

    let call_added = &events[9].1;
    assert_eq!(call_added["output_index"], 1);
    assert_eq!(call_added["item"]["type"], "function_call");
    assert_eq!(call_added["item"]["name"], "get_weather");
    assert_eq!(call_added["item"]["call_id"], "call_1_0");
    assert_eq!(call_added["item"]["arguments"], "");
    let call_item_id = call_added["item"]["id"].as_str().expect("id").to_string();
    let args: String = events
        .iter()
        .filter(|(_, d)| d["type"] == "response.function_call_arguments.delta")
        .map(|(_, d)| {
            assert_eq!(d["item_id"], call_item_id.as_str());
            assert_eq!(d["output_index"], 1);
            d["delta"].as_str().expect("delta").to_string()
        })
        .collect();
    let input = json!({"city": "Paris", "days": 3});
    assert_eq!(args, input.to_string());
    assert_eq!(events[13].1["arguments"], input.to_string());
    let call_done = &events[14].1["item"];
    assert_eq!(call_done["status"], "completed");
    assert_eq!(call_done["arguments"], input.to_string());
    assert_eq!(call_done["call_id"], "call_1_0");

    let completed = &events[15].1["response"];
    assert_eq!(completed["id"], id.as_str());
    assert_eq!(completed["status"], "completed");
    assert_eq!(completed["output"].as_array().map(Vec::len), Some(2));
    assert_eq!(completed["output"][0], events[8].1["item"]);
    assert_eq!(completed["output"][1], *call_done);
    assert_eq!(
        completed["usage"],
        json!({"input_tokens": 132,
               "input_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 20},
               "output_tokens": 7, "output_tokens_details": {"reasoning_tokens": 0},
               "total_tokens": 139})
    );

    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].path, "/v1/responses");
    assert_eq!(reqs[0].body["input"], "hi");
    assert!(!reqs[0].side);
}

#[tokio::test]
async fn responses_non_streaming_object() {
    let server = start(Script::new([weather_reply().into()])).await;
    let (status, v) = post_json(&server, "/v1/responses", &responses_request(false)).await;
    assert_eq!(status, 200);
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    assert_eq!(v["model"], "gpt-5-codex");
    assert!(v["created_at"].is_u64());
    assert!(v["id"].as_str().is_some_and(|id| id.starts_with("resp_")));
    let output = v["output"].as_array().expect("output");
    assert_eq!(output.len(), 2);
    assert_eq!(output[0]["type"], "message");
    assert_eq!(output[0]["status"], "completed");
    assert_eq!(output[0]["role"], "assistant");
    assert_eq!(
        output[0]["content"],
        json!([{"type": "output_text", "text": "Hello", "annotations": []}])
    );
    assert!(output[0]["id"].is_string());
    assert_eq!(output[1]["type"], "function_call");
    assert_eq!(output[1]["name"], "get_weather");
    assert_eq!(output[1]["call_id"], "call_1_0");
    assert_eq!(output[1]["status"], "completed");
    assert!(output[1]["id"].is_string());
    let args: Value =
        serde_json::from_str(output[1]["arguments"].as_str().expect("arguments")).expect("json");
    assert_eq!(args, json!({"city": "Paris", "days": 3}));
    assert_eq!(v["usage"]["input_tokens"], 132);
    assert_eq!(v["usage"]["input_tokens_details"]["cached_tokens"], 100);
    assert_eq!(v["usage"]["output_tokens"], 7);
    assert_eq!(v["usage"]["output_tokens_details"]["reasoning_tokens"], 0);
    assert_eq!(v["usage"]["total_tokens"], 139);
}

#[tokio::test]
async fn responses_stream_error_and_incomplete_endings() {
    let server = start(Script::new([
        Reply::text(["par"])
            .stream_error("server_error", "boom")
            .into(),
        Reply::text(["cut"]).stop_reason("max_tokens").into(),
    ]))
    .await;

    let events = post_sse(&server, "/v1/responses", &responses_request(true)).await;
    let n = events.len();
    assert_eq!(events[n - 2].0.as_deref(), Some("error"));
    assert_eq!(
        events[n - 2].1,
        json!({"type": "error", "code": "server_error", "message": "boom", "param": null,
               "sequence_number": n - 2})
    );
    assert_eq!(events[n - 1].0.as_deref(), Some("response.failed"));
    let failed = &events[n - 1].1["response"];
    assert_eq!(failed["status"], "failed");
    assert_eq!(
        failed["error"],
        json!({"code": "server_error", "message": "boom"})
    );
    assert!(!events
        .iter()
        .any(|(_, d)| d["type"] == "response.completed"));

    let events = post_sse(&server, "/v1/responses", &responses_request(true)).await;
    let (event, last) = events.last().expect("events");
    assert_eq!(event.as_deref(), Some("response.incomplete"));
    assert_eq!(last["response"]["status"], "incomplete");
    assert_eq!(
        last["response"]["incomplete_details"],
        json!({"reason": "max_output_tokens"})
    );
}

const PATCH: &str = "*** Begin Patch\n*** Add File: a.txt\n+hi\n*** End Patch\n";

#[tokio::test]
async fn responses_string_input_is_a_custom_tool_call() {
    let reply = Reply::default().tool_call("apply_patch", json!(PATCH), 2);
    let server = start(Script::new([reply.clone().into(), reply.into()])).await;
    let events = post_sse(&server, "/v1/responses", &responses_request(true)).await;
    let types: Vec<&str> = events
        .iter()
        .map(|(_, d)| d["type"].as_str().expect("type"))
        .collect();
    assert_eq!(
        types,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.custom_tool_call_input.delta",
            "response.custom_tool_call_input.delta",
            "response.custom_tool_call_input.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let added = &events[2].1["item"];
    assert_eq!(added["type"], "custom_tool_call");
    assert_eq!(added["name"], "apply_patch");
    assert_eq!(added["input"], "");
    let input: String = events[3..5]
        .iter()
        .map(|(_, d)| {
            assert_eq!(d["item_id"], added["id"]);
            d["delta"].as_str().expect("delta").to_string()
        })
        .collect();
    assert_eq!(input, PATCH);
    assert_eq!(events[5].1["input"], PATCH);
    let done = &events[6].1["item"];
    assert_eq!(
        *done,
        json!({"type": "custom_tool_call", "id": added["id"], "call_id": "call_1_0",
               "name": "apply_patch", "input": PATCH, "status": "completed"})
    );
    assert_eq!(events[7].1["response"]["output"], json!([done]));

    let (_, v) = post_json(&server, "/v1/responses", &responses_request(false)).await;
    assert_eq!(v["output"][0]["type"], "custom_tool_call");
    assert_eq!(v["output"][0]["input"], PATCH);
}

#[tokio::test]
async fn responses_and_gemini_streams_stall_at_hang_after() {
    let server = start(Script::new([
        Reply::text(["a", "b"]).hang_after(1).into(),
        Reply::text(["a", "b"]).hang_after(1).into(),
    ]))
    .await;
    for path in ["/v1/responses", GEMINI_STREAM] {
        let resp = post(&server, path, &responses_request(true)).await;
        let mut body = resp.bytes_stream();
        let mut text = String::new();
        let stalled = tokio::time::timeout(Duration::from_millis(400), async {
            while let Some(chunk) = body.next().await {
                text.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
            }
        })
        .await
        .is_err();
        assert!(stalled, "{path}: the stream kept the connection open");
        assert!(
            text.contains(r#""a""#),
            "{path}: the first delta came: {text}"
        );
        assert!(
            !text.contains(r#""b""#),
            "{path}: the second did not: {text}"
        );
    }
}

fn gemini_body() -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
           "generationConfig": {"temperature": 1}})
}

#[tokio::test]
async fn gemini_stream_text_and_function_call() {
    let server = start(Script::new([weather_reply().into()])).await;
    let events = post_sse(&server, &format!("{GEMINI_STREAM}?alt=sse"), &gemini_body()).await;
    assert_eq!(events.len(), 3, "two text chunks and one call: {events:?}");
    for (event, chunk) in &events {
        assert_eq!(*event, None, "Gemini sends data: lines only");
        assert_eq!(chunk["modelVersion"], "gemini-2.5-flash");
        let candidate = &chunk["candidates"][0];
        assert_eq!(candidate["index"], 0);
        assert_eq!(candidate["content"]["role"], "model");
        assert_eq!(
            chunk["usageMetadata"],
            json!({"promptTokenCount": 132, "candidatesTokenCount": 7,
                   "cachedContentTokenCount": 100, "totalTokenCount": 139})
        );
    }
    let parts: Vec<&Value> = events
        .iter()
        .map(|(_, c)| &c["candidates"][0]["content"]["parts"][0])
        .collect();
    assert_eq!(*parts[0], json!({"text": "Hel"}));
    assert_eq!(*parts[1], json!({"text": "lo"}));
    assert_eq!(
        *parts[2],
        json!({"functionCall": {"name": "get_weather", "args": {"city": "Paris", "days": 3}}})
    );
    assert!(events[0].1["candidates"][0].get("finishReason").is_none());
    assert!(events[1].1["candidates"][0].get("finishReason").is_none());
    assert_eq!(events[2].1["candidates"][0]["finishReason"], "STOP");

    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].path, GEMINI_STREAM);
    assert_eq!(reqs[0].body, gemini_body());
}

#[tokio::test]
async fn gemini_generate_content_non_streaming() {
    let server = start(Script::new([
        weather_reply().into(),
        Reply::text(["long"]).stop_reason("max_tokens").into(),
        Reply::text(["no"]).stop_reason("refusal").into(),
    ]))
    .await;
    let (status, v) = post_json(&server, GEMINI_GENERATE, &gemini_body()).await;
    assert_eq!(status, 200);
    assert_eq!(v["modelVersion"], "gemini-2.5-flash");
    let candidate = &v["candidates"][0];
    assert_eq!(candidate["finishReason"], "STOP");
    assert_eq!(candidate["content"]["role"], "model");
    assert_eq!(
        candidate["content"]["parts"],
        json!([{"text": "Hello"},
               {"functionCall": {"name": "get_weather", "args": {"city": "Paris", "days": 3}}}])
    );
    assert_eq!(v["usageMetadata"]["promptTokenCount"], 132);
    assert_eq!(v["usageMetadata"]["candidatesTokenCount"], 7);
    assert_eq!(v["usageMetadata"]["cachedContentTokenCount"], 100);
    assert_eq!(v["usageMetadata"]["totalTokenCount"], 139);

    let other_model = "/v1beta/models/paddock-test-model:generateContent";
    let (_, v) = post_json(&server, other_model, &gemini_body()).await;
    assert_eq!(v["candidates"][0]["finishReason"], "MAX_TOKENS");
    assert_eq!(v["modelVersion"], "paddock-test-model");
    let (_, v) = post_json(&server, GEMINI_GENERATE, &gemini_body()).await;
    assert_eq!(v["candidates"][0]["finishReason"], "SAFETY");

    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, [GEMINI_GENERATE, other_model, GEMINI_GENERATE]);
}

#[tokio::test]
async fn gemini_count_tokens_takes_no_turn() {
    let server = start(Script::new([Turn::text(["turn one"])])).await;
    let body = gemini_body();
    let (status, v) = post_json(
        &server,
        "/v1beta/models/gemini-2.5-flash:countTokens",
        &body,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(v, json!({"totalTokens": body.to_string().len() / 4}));
    assert_eq!(server.remaining_turns(), 1);

    let (_, v) = post_json(&server, GEMINI_GENERATE, &body).await;
    assert_eq!(
        v["candidates"][0]["content"]["parts"],
        json!([{"text": "turn one"}])
    );
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].path, "/v1beta/models/gemini-2.5-flash:countTokens");
    assert!(reqs[0].side);
    let main = server.main_requests();
    assert_eq!(main.len(), 1);
    assert_eq!(main[0].path, GEMINI_GENERATE);
}

#[tokio::test]
async fn side_rules_answer_without_taking_a_turn() {
    let script: Script = serde_json::from_value(json!({
        "turns": [{"reply": {"text": ["turn one"]}}, {"reply": {"text": ["turn two"]}}],
        "side": [{"when": {"body_contains": "\"output_config\""},
                  "reply": {"text": ["{\"title\": \"Scripted title\"}"]}}]
    }))
    .expect("script parses");
    let server = start(script).await;
    server.push_side(
        SideRule::new(Reply::text([r#"{"complexity_score": 1}"#])).path_contains("flash-lite"),
    );

    let title_request = json!({"model": "claude-haiku", "max_tokens": 100, "stream": false,
        "messages": [{"role": "user", "content": "name this"}],
        "output_config": {"format": {"type": "json_schema",
            "schema": {"type": "object", "properties": {"title": {"type": "string"}}}}}});
    let main_request = json!({"model": "claude-sonnet", "max_tokens": 100,
        "messages": [{"role": "user", "content": "hi"}]});

    let (_, v) = post_json(&server, "/v1/messages", &title_request).await;
    assert_eq!(v["content"][0]["text"], r#"{"title": "Scripted title"}"#);
    let (_, v) = post_json(&server, "/v1/messages", &main_request).await;
    assert_eq!(
        v["content"][0]["text"], "turn one",
        "the side call took no turn"
    );
    // Rules answer any number of times, in the request's own format.
    let (_, v) = post_json(&server, "/v1/messages", &title_request).await;
    assert_eq!(v["content"][0]["text"], r#"{"title": "Scripted title"}"#);
    let router = "/v1beta/models/gemini-3.5-flash-lite:generateContent";
    let (_, v) = post_json(&server, router, &gemini_body()).await;
    assert_eq!(
        v["candidates"][0]["content"]["parts"][0]["text"],
        r#"{"complexity_score": 1}"#
    );
    let events = post_sse(&server, GEMINI_STREAM, &gemini_body()).await;
    assert_eq!(
        events[0].1["candidates"][0]["content"]["parts"][0]["text"],
        "turn two"
    );
    assert_eq!(server.remaining_turns(), 0);

    let sides: Vec<bool> = server.requests().iter().map(|r| r.side).collect();
    assert_eq!(sides, [true, false, true, true, false]);
    let main: Vec<String> = server.main_requests().into_iter().map(|r| r.path).collect();
    assert_eq!(main, ["/v1/messages", GEMINI_STREAM]);
    assert_eq!(server.main_requests()[0].body, main_request);
}

#[tokio::test]
async fn http_errors_use_each_formats_envelope() {
    let server = start(Script::new([
        ErrorReply::new(429, "slow down").retry_after("2").into(),
        ErrorReply::new(429, "slow down").retry_after("2").into(),
        Turn::error(503, "overloaded"),
        Turn::error(401, "bad key"),
        ErrorReply::new(400, "quota")
            .error_type("FAILED_PRECONDITION")
            .into(),
    ]))
    .await;

    let resp = post(&server, "/v1/responses", &responses_request(true)).await;
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("2")
    );
    assert_eq!(
        resp.json::<Value>().await.expect("json"),
        json!({"error": {"message": "slow down", "type": "requests", "param": null,
                         "code": "rate_limit_exceeded"}})
    );

    let resp = post(&server, GEMINI_STREAM, &gemini_body()).await;
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("2")
    );
    assert_eq!(
        resp.json::<Value>().await.expect("json"),
        json!({"error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED",
                         "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                      "retryDelay": "2s"}]}})
    );

    let (status, v) = post_json(&server, GEMINI_GENERATE, &gemini_body()).await;
    assert_eq!(status, 503);
    assert_eq!(
        v,
        json!({"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}})
    );
    let (status, v) = post_json(&server, GEMINI_STREAM, &gemini_body()).await;
    assert_eq!(status, 401);
    assert_eq!(v["error"]["status"], "UNAUTHENTICATED");
    let (status, v) = post_json(&server, GEMINI_STREAM, &gemini_body()).await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["status"], "FAILED_PRECONDITION");

    // The script is exhausted: a 500 in each format's envelope.
    let (status, v) = post_json(&server, GEMINI_STREAM, &gemini_body()).await;
    assert_eq!(status, 500);
    assert_eq!(v["error"]["code"], 500);
    assert_eq!(v["error"]["status"], "INTERNAL");
    let (status, v) = post_json(&server, "/v1/responses", &responses_request(false)).await;
    assert_eq!(status, 500);
    assert_eq!(v["error"]["type"], "server_error");

    // An unknown Gemini method is a Gemini 404 and takes no turn.
    let (status, v) = post_json(
        &server,
        "/v1beta/models/gemini-2.5-flash:embedContent",
        &gemini_body(),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(v["error"]["status"], "NOT_FOUND");
}

#[tokio::test]
async fn gemini_stream_error_is_an_error_chunk() {
    let server = start(Script::new([Reply::text(["par"])
        .stream_error("overloaded_error", "busy")
        .into()]))
    .await;
    let events = post_sse(&server, GEMINI_STREAM, &gemini_body()).await;
    assert_eq!(events.len(), 2);
    assert!(events[0].1["candidates"][0].get("finishReason").is_none());
    assert_eq!(
        events[1].1,
        json!({"error": {"code": 503, "message": "busy", "status": "UNAVAILABLE"}})
    );
}

const SDK_CHECK: &str = r#"
import json, sys
import openai
import pydantic
from openai.types.responses import Response, ResponseStreamEvent

# The SDK builds its models without validating them: validate every event and
# response strictly against the SDK's types as well.
validate_event = pydantic.TypeAdapter(ResponseStreamEvent).validate_python

client = openai.OpenAI(base_url=sys.argv[1], api_key="sk-test", max_retries=0)
out = {}

events = list(client.responses.create(model="gpt-test", input="hi", stream=True))
for e in events:
    validate_event(e.to_dict(mode="json"))
out["types"] = [e.type for e in events]
out["classes"] = [type(e).__name__ for e in events]
out["text"] = "".join(e.delta for e in events if e.type == "response.output_text.delta")
out["args"] = "".join(
    e.delta for e in events if e.type == "response.function_call_arguments.delta")
done = events[-1].response
u = done.usage
out["stream_output_text"] = done.output_text
out["stream_usage"] = [u.input_tokens, u.input_tokens_details.cached_tokens,
                       u.output_tokens, u.total_tokens]

with client.responses.stream(model="gpt-test", input="hi") as stream:
    for _ in stream:
        pass
    final = stream.get_final_response()
out["helper_output_text"] = final.output_text
out["helper_calls"] = [[o.name, o.arguments, o.call_id]
                       for o in final.output if o.type == "function_call"]
out["helper_custom"] = [[o.name, o.input, o.call_id]
                        for o in final.output if o.type == "custom_tool_call"]

resp = client.responses.create(model="gpt-test", input="hi")
Response.model_validate(resp.to_dict(mode="json"))
u = resp.usage
out["output_text"] = resp.output_text
out["usage"] = [u.input_tokens, u.input_tokens_details.cached_tokens,
                u.output_tokens, u.output_tokens_details.reasoning_tokens, u.total_tokens]
out["calls"] = [[o.name, o.arguments, o.call_id] for o in resp.output if o.type == "function_call"]
out["custom"] = [[o.name, o.input, o.call_id] for o in resp.output if o.type == "custom_tool_call"]
print(json.dumps(out))
"#;

#[tokio::test]
async fn openai_python_sdk_parses_responses() {
    let python = std::env::var("PADDOCK_SDK_PYTHON").unwrap_or_default();
    let importable = !python.is_empty()
        && tokio::process::Command::new(&python)
            .args(["-c", "import openai"])
            .output()
            .await
            .is_ok_and(|o| o.status.success());
    let why = if python.is_empty() {
        "PADDOCK_SDK_PYTHON is not set".to_string()
    } else {
        format!("{python} cannot import openai")
    };
    if !paddock_testkit::require_or_skip("openai_sdk", importable, &why) {
        return;
    }

    let reply = weather_reply().tool_call("apply_patch", json!(PATCH), 2);
    let server = start(Script::new([
        reply.clone().into(),
        reply.clone().into(),
        reply.into(),
    ]))
    .await;
    let out = tokio::process::Command::new(&python)
        .args(["-c", SDK_CHECK, &server.openai_base_url()])
        .output()
        .await
        .expect("python runs");
    assert!(
        out.status.success(),
        "the SDK check failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("the check prints JSON");
    let args = json!({"city": "Paris", "days": 3}).to_string();
    assert_eq!(v["types"][0], "response.created");
    assert_eq!(
        v["types"].as_array().and_then(|t| t.last()),
        Some(&json!("response.completed"))
    );
    for class in [
        "ResponseCreatedEvent",
        "ResponseOutputItemAddedEvent",
        "ResponseContentPartAddedEvent",
        "ResponseTextDeltaEvent",
        "ResponseFunctionCallArgumentsDeltaEvent",
        "ResponseFunctionCallArgumentsDoneEvent",
        "ResponseCustomToolCallInputDeltaEvent",
        "ResponseCustomToolCallInputDoneEvent",
        "ResponseOutputItemDoneEvent",
        "ResponseCompletedEvent",
    ] {
        assert!(
            v["classes"]
                .as_array()
                .is_some_and(|c| c.contains(&json!(class))),
            "the SDK built a {class}: {}",
            v["classes"]
        );
    }
    assert_eq!(v["text"], "Hello");
    assert_eq!(v["args"], args.as_str());
    assert_eq!(v["stream_output_text"], "Hello");
    assert_eq!(v["stream_usage"], json!([132, 100, 7, 139]));
    assert_eq!(v["helper_output_text"], "Hello");
    assert_eq!(
        v["helper_calls"],
        json!([["get_weather", args, "call_2_0"]])
    );
    assert_eq!(
        v["helper_custom"],
        json!([["apply_patch", PATCH, "call_2_1"]])
    );
    assert_eq!(v["output_text"], "Hello");
    assert_eq!(v["usage"], json!([132, 100, 7, 0, 139]));
    assert_eq!(v["calls"], json!([["get_weather", args, "call_3_0"]]));
    assert_eq!(v["custom"], json!([["apply_patch", PATCH, "call_3_1"]]));
    assert_eq!(server.main_requests().len(), 3);
}
