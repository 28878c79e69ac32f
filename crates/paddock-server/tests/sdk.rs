//! Drives the server with the official `anthropic` Python SDK (tests/sdk/test_compat.py).
//! Needs `PADDOCK_SDK_PYTHON` (a Python with `anthropic` and `pytest`); `scripts/test`
//! sets it up. With `PADDOCK_REQUIRE_SDK=1` (as in CI) a missing SDK is a failure.
//!
//! The built-in agent runs for real: its model is the scripted model server (the one
//! stand-in, speaking the real Anthropic wire format) and its tools run in a local
//! runner started with the `paddock-worker` binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{tempdir, TestServer};
use paddock_agent::provider::{ProviderConfig, ProviderKind};
use paddock_backend::local::LocalMode;
use paddock_core::profile::{ExecutionProfile, NetworkMode};
use paddock_server::config::{AgentSettings, LocalSettings};
use paddock_testkit::model_server::{ModelServer, Reply, Script};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The environment variable the scripted provider's key is read from (set below, in
/// this process, which is the server's).
const MODEL_KEY_ENV: &str = "PADDOCK_SDK_TEST_MODEL_KEY";
const MODEL_KEY: &str = "sk-sdk-compat-scripted-0123";

/// What the agent turn's model says, and what the SDK test expects from it.
const FIRST_TEXT_CHUNKS: [&str; 5] = ["Let me ", "run that ", "command ", "for you ", "now."];
const TOOL_COMMAND: &str = "echo sdk-tool-ran";
const TOOL_OUTPUT: &str = "sdk-tool-ran";
const FINAL_TEXT: &str = "All done.";
/// (input, output) tokens each scripted model call reports.
const USAGE: [(u64, u64); 2] = [(123, 45), (200, 5)];

/// The worker binary runners start: the static one `scripts/test` builds, else this
/// workspace's `paddock-worker`, built now (an in-process server cannot use the default,
/// `paddock worker`: its executable is this test).
fn worker_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("PADDOCK_STATIC_WORKER").map(PathBuf::from) {
        if p.is_file() {
            return p;
        }
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(cargo)
        .args([
            "build",
            "-q",
            "-p",
            "paddock-worker",
            "--bin",
            "paddock-worker",
            "--message-format=json",
        ])
        .current_dir(root)
        .stderr(Stdio::inherit())
        .output()
        .expect("cargo runs");
    assert!(out.status.success(), "building paddock-worker failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "paddock-worker")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo reports the paddock-worker executable")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_sdk_works_unmodified() {
    let Some(python) = std::env::var_os("PADDOCK_SDK_PYTHON") else {
        if std::env::var("PADDOCK_REQUIRE_SDK").as_deref() == Ok("1") {
            panic!("PADDOCK_REQUIRE_SDK=1 but PADDOCK_SDK_PYTHON is not set; run scripts/test");
        }
        eprintln!("SKIPPED official_python_sdk_works_unmodified: PADDOCK_SDK_PYTHON is not set (scripts/test sets it)");
        return;
    };
    let worker = tokio::task::spawn_blocking(worker_binary)
        .await
        .expect("worker build task");

    // One agent turn: text streamed slowly (so previews have something to preview) and
    // a bash call, then the final answer once the tool result is back.
    let models = ModelServer::start(Script::new(vec![
        Reply::text(FIRST_TEXT_CHUNKS)
            .delays(Duration::from_millis(50), Duration::from_millis(50))
            .tool_call("bash", json!({ "command": TOOL_COMMAND }), 2)
            .usage(USAGE[0].0, USAGE[0].1, 0, 0)
            .into(),
        Reply::text([FINAL_TEXT])
            .usage(USAGE[1].0, USAGE[1].1, 0, 0)
            .into(),
    ]))
    .await
    .expect("model server starts");
    std::env::set_var(MODEL_KEY_ENV, MODEL_KEY);
    let provider = |name: &str| {
        let mut p = ProviderConfig::new(
            name,
            ProviderKind::Anthropic,
            Some(models.anthropic_base_url()),
        );
        p.api_key_env = Some(MODEL_KEY_ENV.into());
        p.max_retries = 0;
        p.timeout_secs = 30;
        p
    };

    let (_d, dir) = tempdir();
    // With a token configured: the SDK's `api_key` is its bearer token.
    let token = "paddock-sdk-compat-token-0123";
    let s = TestServer::start_with(paddock_server::Config {
        api_token: Some(token.into()),
        agent: AgentSettings {
            // Two providers and no default: the other tests' agents use a model id
            // without a provider (`claude-sonnet-4-6`), which must not reach the script.
            // Only `scripted/…` does (`decoy` is never used: the request count below
            // would show it).
            providers: vec![provider("scripted"), provider("decoy")],
            ..AgentSettings::default()
        },
        // Plain-process runners: this test is about the wire, not isolation (the local
        // backend's contract suite covers bubblewrap), and it must not depend on user
        // namespaces being available.
        local: LocalSettings {
            mode: LocalMode::Process,
            sandbox_uid: None,
            worker: Some(worker),
            ..LocalSettings::default()
        },
        // Plain-process mode can only give runners unrestricted network.
        profiles: BTreeMap::from([(
            "default".to_string(),
            ExecutionProfile {
                network: NetworkMode::Unrestricted,
                ..ExecutionProfile::default()
            },
        )]),
        ..common::config(&dir)
    })
    .await;
    let agent_spec = json!({
        "model": "scripted/sdk-compat-model",
        "first_text": FIRST_TEXT_CHUNKS.concat(),
        "min_deltas": FIRST_TEXT_CHUNKS.len(),
        "command": TOOL_COMMAND,
        "tool_output": TOOL_OUTPUT,
        "final_text": FINAL_TEXT,
        "usage": USAGE,
    });
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/sdk/test_compat.py");
    let base = s.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            // The ACP case runs from crates/paddock-cli/tests/acp.rs, with real agents.
            .args([
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "-rs",
                "-k",
                "not acp",
            ])
            .arg(&script)
            .env("PADDOCK_URL", base)
            .env("PADDOCK_API_KEY", token)
            .env("PADDOCK_SDK_AGENT", agent_spec.to_string())
            .output()
    })
    .await
    .expect("pytest task")
    .expect("pytest starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}\n{stderr}");

    // Runners the agent turn started: listed before any assertion so they are always
    // destroyed (plain-process workers would otherwise outlive the test).
    let auth = |r: reqwest::RequestBuilder| r.bearer_auth(token);
    let runners: Value = auth(s.http.get(s.url("/v1/runners?limit=100")))
        .send()
        .await
        .expect("list runners")
        .json()
        .await
        .expect("runner list");
    let runners = runners["data"].as_array().cloned().unwrap_or_default();
    for r in &runners {
        let id = r["id"].as_str().unwrap_or_default();
        let resp = auth(s.http.delete(s.url(&format!("/v1/runners/{id}?wait=true"))))
            .send()
            .await
            .expect("destroy runner");
        assert!(resp.status().is_success(), "destroying runner {id}");
    }

    assert!(
        out.status.success(),
        "the SDK tests failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(" passed"), "no SDK test ran:\n{stdout}");
    assert!(
        !stdout.contains("skipped"),
        "SDK tests were skipped:\n{stdout}"
    );

    // The agent turn really went through the scripted model, with the configured key,
    // and its tool really ran in a runner of that session.
    let requests = models.requests();
    assert_eq!(
        requests.len(),
        2,
        "exactly the agent test's two model calls reach the script: {requests:#?}"
    );
    for r in &requests {
        assert_eq!(r.path, "/v1/messages");
        assert_eq!(r.header("x-api-key"), Some(MODEL_KEY));
        assert_eq!(r.body["model"], "sdk-compat-model");
    }
    assert!(
        requests[1].body["messages"]
            .to_string()
            .contains(TOOL_OUTPUT),
        "the second model call carries the tool's output: {}",
        requests[1].body
    );
    assert_eq!(
        runners.len(),
        1,
        "one runner, for the agent turn: {runners:?}"
    );
    assert!(
        runners[0]["session_id"].as_str().is_some(),
        "the runner belongs to a session: {}",
        runners[0]
    );

    // The server really required the token the SDK sent.
    let (status, _) = s.get("/v1/agents").await;
    assert_eq!(status, 401, "requests without the token are refused");
    s.stop().await;
}
