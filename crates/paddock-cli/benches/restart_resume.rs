//! A turn resumed after a crash, measured against a bare restart in the same run. Run
//! with `cargo bench -p paddock-cli --bench restart_resume` (needs bwrap).
//!
//! Each sample: a built-in agent's turn on the local backend runs a bash tool call
//! (`sleep 0.3`); the moment its `span.tool_execution_start` is logged, `paddock serve`
//! is killed (SIGKILL); the command finishes while no orchestrator runs; then the
//! server is started again on the same data directory and timed from its spawn to:
//!
//! * listening (the baseline: a restart with nothing to resume),
//! * the resumed call's `agent.tool_result` (the real result, picked up from the worker's
//!   journal: the command is not run again),
//! * the end of the turn (`session.status_idle`, after one more model call).
//!
//! It only measures: nothing here asserts a timing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::{call, stats, Serve};

use paddock_testkit::model_server::{ModelServer, Reply, Script};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

const SAMPLES: usize = 10;

async fn events(http: &reqwest::Client, url: &str, sid: &str) -> Vec<Value> {
    call(
        http,
        reqwest::Method::GET,
        format!("{url}/v1/sessions/{sid}/events?limit=1000"),
        None,
    )
    .await["data"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Polls the session's events until `pred` holds; returns them.
async fn until(
    http: &reqwest::Client,
    url: &str,
    sid: &str,
    pred: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let evs = events(http, url, sid).await;
        if pred(&evs) {
            return evs;
        }
        assert!(Instant::now() < deadline, "timed out: {evs:#?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn has(evs: &[Value], ty: &str) -> bool {
    evs.iter().any(|e| e["type"] == ty)
}

#[tokio::main]
async fn main() {
    let has_bwrap = Command::new("sh")
        .args(["-c", "command -v bwrap"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !has_bwrap {
        println!("SKIPPED: bubblewrap is not installed (scripts/test installs it)");
        return;
    }
    println!(
        "Restart benchmark (built-in agent, local backend; {} CPUs; {SAMPLES} samples)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    let models = ModelServer::start(Script::default())
        .await
        .expect("model server");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let config = dir.path().join("paddock.toml");
    std::fs::write(&config, common::config(&models, "")).expect("config");
    let data = dir.path().join("data");
    let http = reqwest::Client::new();
    let port = common::free_port();
    let mut s = Serve::start(&data, &config, port);
    let agent = call(
        &http,
        reqwest::Method::POST,
        format!("{}/v1/agents", s.url),
        Some(json!({"name": "bench", "model": "scripted/bench-model", "tool_profile": "full"})),
    )
    .await;
    let env = call(
        &http,
        reqwest::Method::POST,
        format!("{}/v1/environments", s.url),
        Some(json!({"name": "bench-env"})),
    )
    .await;
    let (mut listening, mut result, mut idle) = (vec![], vec![], vec![]);
    let mut runners = vec![];
    for n in 0..SAMPLES {
        models.push(
            Reply::default()
                .tool_call(
                    "bash",
                    json!({"command": format!("sleep 0.3; echo result-{n}")}),
                    1,
                )
                .usage(10, 1, 0, 0),
        );
        models.push(Reply::text([format!("done {n}")]).usage(20, 2, 0, 0));
        let session = call(
            &http,
            reqwest::Method::POST,
            format!("{}/v1/sessions", s.url),
            Some(json!({"agent": agent["id"], "environment_id": env["id"]})),
        )
        .await;
        let sid = session["id"].as_str().expect("session id").to_string();
        call(
            &http,
            reqwest::Method::POST,
            format!("{}/v1/sessions/{sid}/events", s.url),
            Some(json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "run it"}]}]})),
        )
        .await;
        until(&http, &s.url, &sid, |e| has(e, "span.tool_execution_start")).await;
        s.kill();
        // The command finishes while no orchestrator runs.
        tokio::time::sleep(Duration::from_millis(500)).await;
        s = Serve::start(&data, &config, port);
        listening.push(s.listening);
        let evs = until(&http, &s.url, &sid, |e| has(e, "agent.tool_result")).await;
        result.push(s.spawned.elapsed());
        let r = evs
            .iter()
            .find(|e| e["type"] == "agent.tool_result")
            .expect("a result");
        assert_eq!(r["is_error"], false, "the resumed call succeeded: {r}");
        until(&http, &s.url, &sid, |e| has(e, "session.status_idle")).await;
        idle.push(s.spawned.elapsed());
        let got = call(
            &http,
            reqwest::Method::GET,
            format!("{}/v1/sessions/{sid}", s.url),
            None,
        )
        .await;
        if let Some(r) = got["runner_id"].as_str() {
            runners.push(r.to_string());
        }
    }
    let base = stats("baseline: restart, spawn → listening", listening);
    let res = stats(
        "restart mid-call, spawn → resumed agent.tool_result",
        result,
    );
    stats(
        "restart mid-call, spawn → turn end (one more model call)",
        idle,
    );
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{:<56} {:>+8.2} ms (median result − median listening)",
        "time to resume a tool call after a restart",
        ms(res) - ms(base)
    );
    for r in runners {
        let _ = http
            .delete(format!("{}/v1/runners/{r}", s.url))
            .send()
            .await;
    }
}
