//! Time to first token of the built-in agent, measured against the raw baseline in the
//! same run: the scripted model server called directly with the production provider
//! client, then the same server behind a real `paddock serve` (a user message POSTed,
//! the first `event_delta` preview read off the session's SSE stream). Run with
//! `cargo bench -p paddock-cli --bench agent_ttft`.
//!
//! Both paths stream the same scripted reply (first token without delay) over the same
//! provider code; the difference is what Paddock adds: the API request, the event log
//! writes that open the turn, the agent loop's step and the preview's fan-out to SSE.
//! It only measures: nothing here asserts a timing.
//!
//! The Paddock path runs twice: with the stream on a connection taken from the client's
//! keep-alive pool (what pooling clients do by default) and on a new connection. The
//! two differ when the first frames of a stream wait on the client's delayed ACK
//! (small writes held back by Nagle's algorithm on a socket without `TCP_NODELAY`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::{first_delta, post, stats, Serve, KEY};

use futures::StreamExt;
use paddock_agent::provider::{
    build_provider, ApiKey, Message, ModelRequest, ProviderConfig, ProviderKind, StreamEvent,
};
use paddock_testkit::model_server::{ModelServer, Reply, Script};
use serde_json::json;
use std::time::{Duration, Instant};

/// Samples per path, after `WARMUP` unrecorded ones (first connections, lazy setup).
const N: usize = 30;
const WARMUP: usize = 3;
/// Text chunks in every scripted reply: the first at once, the others `CHUNK_GAP` apart
/// (a model streaming tokens). Without a gap the whole reply, and the `agent.message`
/// that ends its preview, can be stored before the SSE stream gets to the previews,
/// which are best-effort: it then drops them as late and there is no first delta to time.
const CHUNKS: usize = 20;
const CHUNK_GAP: Duration = Duration::from_millis(10);
const MODEL: &str = "bench-model";
const TURN_TIMEOUT: Duration = Duration::from_secs(30);

/// The scripted answer of every turn: `CHUNKS` text deltas, the first one at once.
fn reply() -> Reply {
    Reply::text((0..CHUNKS).map(|i| format!("token{i} ")))
        .delays(Duration::ZERO, CHUNK_GAP)
        .usage(10, CHUNKS as u64, 0, 0)
}

/// (a) The provider client straight at the scripted server: time to the first text delta.
async fn direct(models: &ModelServer) -> Duration {
    let mut cfg = ProviderConfig::new(
        "scripted",
        ProviderKind::Anthropic,
        Some(models.anthropic_base_url()),
    );
    cfg.max_retries = 0;
    let provider = build_provider(&cfg, Some(ApiKey::new(KEY))).expect("provider");
    let req = ModelRequest::new(MODEL, vec![Message::user("Say something.")], 1024);
    let mut out = vec![];
    for i in 0..WARMUP + N {
        models.push(reply());
        let t = Instant::now();
        let mut stream = provider.stream(&req).await.expect("model stream");
        let mut first = None;
        let mut text = String::new();
        while let Some(ev) = stream.next().await {
            if let StreamEvent::TextDelta(d) = ev.expect("stream event") {
                first.get_or_insert_with(|| t.elapsed());
                text.push_str(&d);
            }
        }
        assert_eq!(text.matches("token").count(), CHUNKS, "the whole reply");
        if i >= WARMUP {
            out.push(first.expect("a text delta"));
        }
    }
    stats("direct: provider.stream → first TextDelta", out)
}

/// How the SSE stream's connection is made.
#[derive(Clone, Copy)]
enum StreamConn {
    /// Taken from the client's keep-alive pool (it served the request before): what
    /// pooling clients (reqwest, the SDK's httpx) do by default.
    Pooled,
    /// A new TCP connection for every stream.
    Fresh,
}

/// (b) Through `paddock serve`: POST the user message, time to the first `event_delta`
/// frame on the session's stream (opened beforehand). One fresh session per turn, so
/// every sample starts from the same state. Turns whose previews were all dropped (see
/// `CHUNKS`) are counted, not timed.
async fn through_paddock(
    models: &ModelServer,
    serve: &Serve,
    conn: StreamConn,
) -> Option<Duration> {
    let label = match conn {
        StreamConn::Pooled => "paddock: POST → first event_delta (pooled conn)",
        StreamConn::Fresh => "paddock: POST → first event_delta (fresh conn)",
    };
    let http = reqwest::Client::new();
    let agent = post(
        &http,
        format!("{}/v1/agents", serve.url),
        json!({"name": "ttft", "model": format!("scripted/{MODEL}"), "tool_profile": "messaging"}),
    )
    .await;
    let env = post(
        &http,
        format!("{}/v1/environments", serve.url),
        json!({"name": "ttft-env"}),
    )
    .await;
    let mut out = vec![];
    let mut missed = 0;
    for i in 0..WARMUP + N {
        models.push(reply());
        let session = post(
            &http,
            format!("{}/v1/sessions", serve.url),
            json!({"agent": agent["id"], "environment_id": env["id"]}),
        )
        .await;
        let sid = session["id"].as_str().expect("session id").to_string();
        // Returns once the response headers are in: the stream is subscribed.
        let stream_client = match conn {
            StreamConn::Pooled => http.clone(),
            StreamConn::Fresh => reqwest::Client::new(),
        };
        let resp = stream_client
            .get(format!(
                "{}/v1/sessions/{sid}/events/stream?event_deltas%5B%5D=agent.message",
                serve.url
            ))
            .send()
            .await
            .expect("stream opens");
        let reader = first_delta(resp);
        let t = Instant::now();
        post(
            &http,
            format!("{}/v1/sessions/{sid}/events", serve.url),
            json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "Say something."}]}]}),
        )
        .await;
        let first = tokio::time::timeout(TURN_TIMEOUT, reader)
            .await
            .unwrap_or_else(|_| panic!("turn {i} did not end:\n{}", serve.log_text()))
            .expect("reader task");
        if i >= WARMUP {
            match first {
                Some(first) => out.push(first.saturating_duration_since(t)),
                None => missed += 1,
            }
        }
    }
    if missed > 0 {
        println!("{label}: {missed} of {N} turns ended without any event_delta (not timed)");
    }
    (!out.is_empty()).then(|| stats(label, out))
}

#[tokio::main]
async fn main() {
    println!(
        "Agent time-to-first-token benchmark ({} CPUs; {N} samples per path after {WARMUP} warm-up; \
         {CHUNKS} chunks per reply, the first without delay, then {} ms apart)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        CHUNK_GAP.as_millis()
    );
    let models = ModelServer::start(Script::default())
        .await
        .expect("model server");
    let base = direct(&models).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("paddock.toml");
    std::fs::write(&config, common::config(&models, "")).expect("config");
    let serve = Serve::start(&dir.path().join("data"), &config, common::free_port());
    let pooled = through_paddock(&models, &serve, StreamConn::Pooled).await;
    let fresh = through_paddock(&models, &serve, StreamConn::Fresh).await;
    let model_calls = models.request_count();
    assert_eq!(
        model_calls,
        3 * (WARMUP + N),
        "one model call per turn on each path"
    );
    for (name, paddock) in [("pooled conn", pooled), ("fresh conn", fresh)] {
        match paddock {
            Some(paddock) => println!(
                "{:<52} {:>+8.2} ms (median paddock − median direct)",
                format!("overhead ({name})"),
                (paddock.as_secs_f64() - base.as_secs_f64()) * 1000.0
            ),
            None => println!("overhead ({name}): not measured (no turn streamed a preview)"),
        }
    }
}
