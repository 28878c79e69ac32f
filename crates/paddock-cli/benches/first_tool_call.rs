//! A session's first tool call: from `user.message` to the `agent.tool_result` of a
//! scripted `bash echo` call, when the runner is provisioned lazily on that call,
//! against the same call on the session's runner once it is live, and against one local
//! create (`POST /v1/runners` until it answers) measured in the same run.
//!
//! `cargo bench -p paddock-cli --bench first_tool_call` (needs bwrap; `PADDOCK_BENCH_N`,
//! default 20, samples). It only measures: nothing here asserts a timing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::{call, first_of, post, stats, Serve};

use paddock_testkit::model_server::{ModelServer, Reply, Script};
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

/// One turn: a `bash echo` call, then a text answer; the time from the POST of the
/// message to the tool's result on the session's stream.
async fn turn(http: &reqwest::Client, url: &str, models: &ModelServer, sid: &str) -> Duration {
    models.push(
        Reply::default()
            .tool_call("bash", json!({"command": "echo hi"}), 1)
            .usage(10, 1, 0, 0),
    );
    models.push(Reply::text(["done"]).usage(20, 2, 0, 0));
    let stream = http
        .get(format!("{url}/v1/sessions/{sid}/events/stream"))
        .send()
        .await
        .expect("stream");
    let result = first_of(stream, "agent.tool_result");
    let sent = Instant::now();
    post(
        http,
        format!("{url}/v1/sessions/{sid}/events"),
        json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "run it"}]}]}),
    )
    .await;
    result
        .await
        .expect("stream reader")
        .expect("the call's result streamed")
        - sent
}

#[tokio::main]
async fn main() {
    let Some(n) = common::samples("first_tool_call", 20) else {
        return;
    };
    let models = ModelServer::start(Script::default())
        .await
        .expect("model server");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let config = dir.path().join("paddock.toml");
    std::fs::write(&config, common::config(&models, "")).expect("config");
    let s = Serve::start(&dir.path().join("data"), &config, common::free_port());
    let url = s.url.clone();
    let http = reqwest::Client::new();
    let agent = post(
        &http,
        format!("{url}/v1/agents"),
        json!({"name": "bench", "model": "scripted/bench-model", "tool_profile": "full"}),
    )
    .await;
    let env = post(
        &http,
        format!("{url}/v1/environments"),
        json!({"name": "bench-env"}),
    )
    .await;
    println!("first_tool_call: {n} samples, local backend, release build\n");

    let (mut lazy, mut live, mut create) = (vec![], vec![], vec![]);
    let mut runners = vec![];
    for i in 0..=n {
        let session = post(
            &http,
            format!("{url}/v1/sessions"),
            json!({"agent": agent["id"], "environment_id": env["id"]}),
        )
        .await;
        let sid = session["id"].as_str().expect("session id").to_string();
        let first = turn(&http, &url, &models, &sid).await;
        let again = turn(&http, &url, &models, &sid).await;
        let t = Instant::now();
        let r = post(&http, format!("{url}/v1/runners"), json!({})).await;
        let created = t.elapsed();
        runners.push(r["id"].as_str().expect("runner id").to_string());
        let got = call(
            &http,
            reqwest::Method::GET,
            format!("{url}/v1/sessions/{sid}"),
            None,
        )
        .await;
        if let Some(r) = got["runner_id"].as_str() {
            runners.push(r.to_string());
        }
        for r in runners.drain(..) {
            call(
                &http,
                reqwest::Method::DELETE,
                format!("{url}/v1/runners/{r}?wait=true"),
                None,
            )
            .await;
        }
        // The first sample warms the page cache and the server up.
        if i > 0 {
            lazy.push(first);
            live.push(again);
            create.push(created);
        }
    }
    let a = stats("first tool call, runner provisioned on it", lazy);
    let b = stats("the same call, runner live", live);
    let c = stats("one local create: POST /v1/runners", create);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{:<56} {:>+8.2} ms against one local create of {:.2} ms ({:.2}x)",
        "what the lazy runner adds (median lazy − median live)",
        ms(a) - ms(b),
        ms(c),
        (ms(a) - ms(b)) / ms(c)
    );
}
