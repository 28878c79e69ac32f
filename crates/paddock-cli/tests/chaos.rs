//! The chaos suite of turns that survive restarts: a real `paddock serve` killed
//! (SIGKILL) or stopped (SIGTERM) at a random moment of a tool-using turn, then started
//! again on the same data directory, many times, on the local backend and on Docker.
//! Every trial must end as an uninterrupted turn would: `end_turn` with the scripted
//! final text, the command run exactly once (counted in the workspace), no event lost
//! or written twice, and the session's usage the sum of its model calls' spans.
//!
//! Bounded for CI: `PADDOCK_CHAOS_TRIALS` trials per signal and backend (default 100),
//! and a time budget per backend (`PADDOCK_CHAOS_SECS`, default 300); it prints its
//! counts, and the seed that reproduces it (`PADDOCK_CHAOS_SEED`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{data_dir, http, Serve};
use paddock_testkit::model_server::{ModelServer, Reply, Script, SideRule};
use paddock_testkit::require_or_skip;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Rig {
    _rt: tokio::runtime::Runtime,
    models: ModelServer,
    serve: Option<Serve>,
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
}

impl Rig {
    fn new(backend: &str) -> Rig {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let models = rt
            .block_on(ModelServer::start(Script::default()))
            .expect("model server");
        let dir = data_dir();
        let config = dir.path().join("paddock.toml");
        let worker = match std::env::var("PADDOCK_STATIC_WORKER") {
            Ok(w) if std::path::Path::new(&w).exists() => format!("worker = {w:?}\n"),
            _ => String::new(),
        };
        std::fs::write(
            &config,
            format!(
                r#"
default_profile = "chaos"
shutdown_grace_secs = 5

[rate_limit]
per_second = 0.0

[profiles.chaos]
backend = "{backend}"
runbook = "base"

[docker]
{worker}
[agent]
default_provider = "scripted"

[[agent.providers]]
name = "scripted"
kind = "anthropic"
base_url = "{base}"
api_key_env = "SCRIPTED_API_KEY"
max_retries = 0
"#,
                base = models.anthropic_base_url()
            ),
        )
        .expect("config");
        let mut rig = Rig {
            _rt: rt,
            models,
            serve: None,
            dir,
            config,
        };
        rig.start();
        rig
    }

    fn start(&mut self) {
        self.serve = Some(Serve::start_env(
            self.dir.path(),
            Some(&self.config),
            &[("SCRIPTED_API_KEY", "sk-chaos")],
        ));
    }

    fn url(&self) -> String {
        self.serve.as_ref().expect("serving").url.clone()
    }

    fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (code, v) = http(method, &format!("{}{path}", self.url()), body);
        assert!((200..300).contains(&code), "{method} {path}: {code} {v}");
        v
    }

    fn events(&self, sid: &str) -> Vec<Value> {
        self.ok(
            "GET",
            &format!("/v1/sessions/{sid}/events?limit=1000"),
            None,
        )["data"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// SIGKILL or SIGTERM (then the exit: a drain), and a new start.
    fn stop_and_start(&mut self, kill: bool) {
        let mut serve = self.serve.take().expect("serving");
        if kill {
            serve.crash();
        } else {
            let pid = serve.child.id().to_string();
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while serve.child.try_wait().ok().flatten().is_none() {
                assert!(Instant::now() < deadline, "no exit after SIGTERM");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        self.start();
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if self.serve.is_none() {
            return;
        }
        let (_, list) = http("GET", &format!("{}/v1/runners?limit=100", self.url()), None);
        for r in list["data"].as_array().into_iter().flatten() {
            if let Some(id) = r["id"].as_str() {
                let _ = http(
                    "DELETE",
                    &format!("{}/v1/runners/{id}?wait=true", self.url()),
                    None,
                );
            }
        }
    }
}

/// One trial; panics with what went wrong.
fn trial(rig: &mut Rig, agent: &str, env: &str, n: u64, kill: bool, delay: Duration) {
    // Content-addressed answers: a repeated model call gets the same reply.
    rig.models.push_side(
        SideRule::new(Reply::text([format!("done {n}")]).usage(20, 2, 0, 0))
            .body_contains(format!("result-{n}-end")),
    );
    rig.models.push_side(
        SideRule::new(
            Reply::default()
                .delays(Duration::from_millis(50), Duration::from_millis(20))
                .tool_call(
                    "bash",
                    json!({"command": format!("sleep 0.4; echo ran >> ran.txt; echo result-{n}-end")}),
                    2,
                )
                .usage(10, 1, 0, 0),
        )
        .body_contains(format!("trial-{n}-end")),
    );
    let sid = rig.ok(
        "POST",
        "/v1/sessions",
        Some(json!({"agent": agent, "environment_id": env})),
    )["id"]
        .as_str()
        .expect("session")
        .to_string();
    rig.ok(
        "POST",
        &format!("/v1/sessions/{sid}/events"),
        Some(json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": format!("trial-{n}-end: run it")}]}]})),
    );
    std::thread::sleep(delay);
    rig.stop_and_start(kill);
    let deadline = Instant::now() + Duration::from_secs(60);
    let evs = loop {
        let evs = rig.events(&sid);
        if evs.iter().any(|e| {
            e["type"] == "session.status_idle" && e["stop_reason"]["type"] != "requires_action"
        }) {
            break evs;
        }
        assert!(
            Instant::now() < deadline,
            "trial {n}: the turn did not end: {evs:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let what = format!(
        "trial {n} ({}, after {delay:?})",
        if kill { "SIGKILL" } else { "SIGTERM" }
    );
    let idle: Vec<&Value> = evs
        .iter()
        .filter(|e| e["type"] == "session.status_idle")
        .collect();
    assert_eq!(idle.len(), 1, "{what}: {evs:#?}");
    assert_eq!(
        idle[0]["stop_reason"]["type"], "end_turn",
        "{what}: {evs:#?}"
    );
    let last_text = evs
        .iter()
        .rev()
        .find(|e| e["type"] == "agent.message")
        .map(|e| e["content"][0]["text"].as_str().unwrap_or("").to_string());
    assert_eq!(
        last_text.as_deref(),
        Some(format!("done {n}").as_str()),
        "{what}: {evs:#?}"
    );
    let ids: std::collections::HashSet<&str> =
        evs.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids.len(), evs.len(), "{what}: an event twice");
    let results: Vec<&Value> = evs
        .iter()
        .filter(|e| e["type"] == "agent.tool_result")
        .collect();
    assert_eq!(results.len(), 1, "{what}: {evs:#?}");
    assert_eq!(results[0]["is_error"], false, "{what}: {evs:#?}");
    let (mut input, mut output) = (0u64, 0u64);
    for e in evs.iter().filter(|e| e["type"] == "span.model_request_end") {
        input += e["model_usage"]["input_tokens"].as_u64().unwrap_or(0);
        output += e["model_usage"]["output_tokens"].as_u64().unwrap_or(0);
    }
    let s = rig.ok("GET", &format!("/v1/sessions/{sid}"), None);
    assert_eq!(
        (
            s["usage"]["input_tokens"].as_u64(),
            s["usage"]["output_tokens"].as_u64()
        ),
        (Some(input), Some(output)),
        "{what}: usage is the sum of the spans"
    );
    let rid = s["runner_id"].as_str().expect("runner").to_string();
    let (_, ran) = http(
        "GET",
        &format!("{}/v1/runners/{rid}/files/read?path=ran.txt", rig.url()),
        None,
    );
    assert_eq!(
        ran.as_str(),
        Some("ran\n"),
        "{what}: the command ran exactly once"
    );
    let _ = http(
        "DELETE",
        &format!("{}/v1/runners/{rid}?wait=true", rig.url()),
        None,
    );
}

fn chaos(backend: &str) {
    let trials = env_num("PADDOCK_CHAOS_TRIALS", 100);
    let budget = Duration::from_secs(env_num("PADDOCK_CHAOS_SECS", 300));
    let seed = env_num("PADDOCK_CHAOS_SEED", {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(7)
    });
    let mut rng = Lcg(seed);
    let mut rig = Rig::new(backend);
    let agent = rig.ok(
        "POST",
        "/v1/agents",
        Some(json!({"name": "chaos", "model": "scripted/chaos-model", "tool_profile": "full"})),
    )["id"]
        .as_str()
        .expect("agent")
        .to_string();
    let env = rig.ok(
        "POST",
        "/v1/environments",
        Some(json!({"name": "chaos-env"})),
    )["id"]
        .as_str()
        .expect("env")
        .to_string();
    let started = Instant::now();
    let mut done = [0u64; 2];
    let mut n = 0;
    'outer: for round in 0..trials {
        for (i, kill) in [true, false].into_iter().enumerate() {
            if started.elapsed() > budget {
                println!(
                    "chaos [{backend}]: the time budget of {budget:?} ran out after round {round}"
                );
                break 'outer;
            }
            n += 1;
            // Anywhere from before the first model call to after the turn.
            let delay = Duration::from_millis(rng.next() % 1200);
            trial(&mut rig, &agent, &env, n, kill, delay);
            done[i] += 1;
        }
    }
    println!(
        "chaos [{backend}] (seed {seed}): {} SIGKILL and {} SIGTERM trials in {:.1} s, all turns ended as uninterrupted ones: end_turn, the same final text, the command once, no event lost or doubled, usage = the spans",
        done[0],
        done[1],
        started.elapsed().as_secs_f64()
    );
    assert!(done[0] > 0 && done[1] > 0, "no trial ran");
}

#[test]
fn chaos_on_the_local_backend() {
    if !common::bwrap() {
        return;
    }
    chaos("local");
}

#[test]
fn chaos_on_docker() {
    let ok = std::process::Command::new("docker")
        .args(["image", "inspect", "paddock-base:latest"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !require_or_skip("docker", ok, "no Docker engine with the paddock-base image") {
        return;
    }
    chaos("docker");
}
