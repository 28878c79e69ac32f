//! An ACP agent (Claude Code's adapter, the real npm package) in a bubblewrap runner,
//! measured against raw baselines in the same run. Run with
//! `cargo bench -p paddock-cli --bench acp_agent` (needs scripts/agents.sh and bwrap).
//!
//! * Time to first token: the scripted model server called directly with the
//!   production provider client, against a user message POSTed to a session whose agent
//!   is already running, timed to the first `event_delta` on the session's stream (the
//!   agent's model call goes through the model gateway and its text comes back as ACP
//!   updates).
//! * Cold start of an agent runner: a new session's first message to its first
//!   `event_delta` (runner provisioned, agent started, `initialize`, `session/new`,
//!   the first model call), against Node starting the adapter's entry point under a
//!   bare `bwrap` of the same mounts, and against the first token of a warm agent.
//!
//! It only measures: nothing here asserts a timing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::{first_delta, post, stats, Serve, KEY};

use futures::StreamExt;
use paddock_agent::provider::{
    build_provider, ApiKey, Message, ModelRequest, ProviderConfig, ProviderKind, StreamEvent,
};
use paddock_testkit::model_server::{ModelServer, Reply, Script, SideRule};
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};

const WARM: usize = 15;
const COLD: usize = 5;
const MODEL: &str = "claude-sonnet-4-5";
const AGENTS: &str = "/var/cache/paddock-images/agents";
const CHUNKS: usize = 20;
const CHUNK_GAP: Duration = Duration::from_millis(10);

fn reply() -> Reply {
    Reply::text((0..CHUNKS).map(|i| format!("token{i} ")))
        .delays(Duration::ZERO, CHUNK_GAP)
        .usage(10, CHUNKS as u64, 0, 0)
}

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
    for _ in 0..WARM {
        models.push(reply());
        let t = Instant::now();
        let mut stream = provider.stream(&req).await.expect("model stream");
        let mut first = None;
        while let Some(ev) = stream.next().await {
            if let StreamEvent::TextDelta(_) = ev.expect("stream event") {
                first.get_or_insert_with(|| t.elapsed());
            }
        }
        out.push(first.expect("a text delta"));
    }
    stats("direct: provider.stream → first TextDelta", out)
}

/// One turn: POST the message, time to the first `event_delta` on the session's stream.
async fn turn(http: &reqwest::Client, url: &str, sid: &str) -> Duration {
    let resp = http
        .get(format!(
            "{url}/v1/sessions/{sid}/events/stream?event_deltas%5B%5D=agent.message"
        ))
        .send()
        .await
        .expect("stream opens");
    let reader = first_delta(resp);
    let t = Instant::now();
    post(
        http,
        format!("{url}/v1/sessions/{sid}/events"),
        json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "Say something."}]}]}),
    )
    .await;
    let first = tokio::time::timeout(Duration::from_secs(300), reader)
        .await
        .expect("the turn ends")
        .expect("reader")
        .expect("a preview streamed");
    first.saturating_duration_since(t)
}

/// Node starting the adapter's entry point under a bare `bwrap` with the same mounts.
fn bare_node(agents: &str) -> Duration {
    let mut out = vec![];
    for _ in 0..COLD {
        let t = Instant::now();
        let ok = Command::new("bwrap")
            .args([
                "--unshare-all", "--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib",
                "--symlink", "usr/lib64", "/lib64", "--symlink", "usr/bin", "/bin",
                "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--ro-bind", agents,
                "/opt/paddock-agents", "--", "/opt/paddock-agents/bin/node", "-e",
                "require('/opt/paddock-agents/lib/node_modules/@agentclientprotocol/claude-agent-acp/package.json')",
            ])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "bare bwrap + node runs");
        out.push(t.elapsed());
    }
    stats("baseline: bare bwrap + node loads the adapter", out)
}

#[tokio::main]
async fn main() {
    let agents = std::env::var("PADDOCK_AGENTS_DIR").unwrap_or_else(|_| AGENTS.into());
    if !std::path::Path::new(&agents)
        .join(".paddock-agents")
        .exists()
    {
        println!("SKIPPED: the ACP agents are not installed at {agents} (scripts/agents.sh)");
        return;
    }
    println!(
        "ACP agent benchmark (Claude Code's adapter in a bubblewrap runner; {} CPUs; {WARM} warm and {COLD} cold samples)",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    let models = ModelServer::start(Script::default().with_side(
        SideRule::new(Reply::text(["{\"title\": \"t\"}"])).body_contains("json_schema"),
    ))
    .await
    .expect("model server");
    let base = direct(&models).await;
    let bare = bare_node(&agents);

    let dir = tempfile::tempdir().expect("tempdir");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let config = dir.path().join("paddock.toml");
    let head = format!(
        r#"default_profile = "agents"

[profiles.agents]
backend = "local"
runbook = "agents"
memory_mb = 4096
pids = 1024

[local]
agents_dir = "{agents}"
"#
    );
    std::fs::write(&config, common::config(&models, &head)).expect("config");
    let serve = Serve::start(&dir.path().join("data"), &config, common::free_port());
    let http = reqwest::Client::new();
    let agent = post(
        &http,
        format!("{}/v1/agents", serve.url),
        json!({"name": "bench", "model": format!("scripted/{MODEL}"), "harness": "acp:claude-code",
               "tools": [{"type": "agent_toolset_20260401"}]}),
    )
    .await;
    let env = post(
        &http,
        format!("{}/v1/environments", serve.url),
        json!({"name": "bench-env"}),
    )
    .await;
    let session = || async {
        post(
            &http,
            format!("{}/v1/sessions", serve.url),
            json!({"agent": agent["id"], "environment_id": env["id"]}),
        )
        .await["id"]
            .as_str()
            .expect("session id")
            .to_string()
    };
    let mut cold = vec![];
    let mut sids = vec![];
    for _ in 0..COLD {
        models.push(reply());
        let sid = session().await;
        cold.push(turn(&http, &serve.url, &sid).await);
        sids.push(sid);
    }
    let cold = stats(
        "paddock: cold (new runner + agent) → first event_delta",
        cold,
    );
    let mut warm = vec![];
    for _ in 0..WARM {
        models.push(reply());
        warm.push(turn(&http, &serve.url, &sids[0]).await);
    }
    let warm = stats("paddock: warm agent, POST → first event_delta", warm);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{:<56} {:>+8.2} ms (median warm − median direct)",
        "time to first token overhead",
        ms(warm) - ms(base)
    );
    println!(
        "{:<56} {:>8.2} ms (median cold − median warm); {:.1}x the bare node start",
        "cold start of an agent runner",
        ms(cold) - ms(warm),
        ms(cold) / ms(bare).max(0.001)
    );
    for sid in sids {
        let _ = http
            .delete(format!("{}/v1/sessions/{sid}", serve.url))
            .send()
            .await;
    }
}
