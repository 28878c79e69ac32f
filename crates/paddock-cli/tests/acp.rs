//! ACP agents end to end: the real npm packages (scripts/agents.sh) inside real runners
//! (bubblewrap, Docker), spoken to over ACP by a real `paddock serve`, their model
//! traffic through Paddock's model gateway to the scripted model server (the one
//! stand-in: it speaks the real wire formats). Required in CI (`PADDOCK_REQUIRE_AGENTS=1`).

mod common;

use common::{data_dir, http, Serve};
use paddock_testkit::model_server::{ModelServer, Reply, Script, SideRule, Turn};
use paddock_testkit::require_or_skip;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const AGENTS_DIR: &str = "/var/cache/paddock-images/agents";

fn agents_installed() -> bool {
    let dir = std::env::var("PADDOCK_AGENTS_DIR").unwrap_or_else(|_| AGENTS_DIR.into());
    let ok = std::path::Path::new(&dir).join(".paddock-agents").exists();
    require_or_skip(
        "agents",
        ok,
        "the ACP agents are not installed (scripts/agents.sh; scripts/test runs it)",
    ) && common::bwrap()
}

fn docker_agents() -> bool {
    let ok = std::process::Command::new("docker")
        .args(["image", "inspect", "paddock-agents:latest"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    require_or_skip(
        "docker",
        ok,
        "no Docker engine with the paddock-agents image (scripts/images.sh agents)",
    )
}

/// A canary provider key: it must never show up inside a runner or in any event.
const CANARY: &str = "sk-canary-7f3a9c2e1b";

struct Rig {
    rt: tokio::runtime::Runtime,
    models: ModelServer,
    serve: Option<Serve>,
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
    name: String,
}

impl Rig {
    /// `kind`: the provider's wire (`anthropic`, `openai`, `gemini`); `backend`: the
    /// execution profile's backend.
    fn new(name: &str, kind: &str, backend: &str, script: Script) -> Rig {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let models = rt
            .block_on(ModelServer::start(script))
            .expect("model server");
        let base = match kind {
            "openai" => models.openai_base_url(),
            _ => models.base_url(),
        };
        let dir = data_dir();
        let config = dir.path().join("paddock.toml");
        let worker = match std::env::var("PADDOCK_STATIC_WORKER") {
            Ok(w) if std::path::Path::new(&w).exists() => format!("worker = {w:?}\n"),
            _ => String::new(),
        };
        let agents_dir = std::env::var("PADDOCK_AGENTS_DIR").unwrap_or_else(|_| AGENTS_DIR.into());
        std::fs::write(
            &config,
            format!(
                r#"
default_profile = "agents"

[runners]
sweep_interval_ms = 200

[profiles.agents]
backend = "{backend}"
runbook = "agents"
memory_mb = 4096
pids = 1024

[local]
agents_dir = "{agents_dir}"

[docker]
{worker}
[agent]
default_provider = "scripted"

[[agent.providers]]
name = "scripted"
kind = "{kind}"
base_url = "{base}"
api_key_env = "SCRIPTED_API_KEY"
max_retries = 0

[agent.prices."scripted/claude-sonnet-4-5"]
input = 1000.0
output = 2000.0
"#
            ),
        )
        .expect("config");
        let mut rig = Rig {
            rt,
            models,
            serve: None,
            dir,
            config,
            name: name.to_string(),
        };
        rig.start();
        rig
    }

    fn start(&mut self) {
        self.serve = Some(Serve::start_env(
            self.dir.path(),
            Some(&self.config),
            &[("SCRIPTED_API_KEY", CANARY)],
        ));
    }

    fn serve(&self) -> &Serve {
        self.serve.as_ref().expect("serving")
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        http(method, &format!("{}{path}", self.serve().url), body)
    }

    fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (code, v) = self.call(method, path, body);
        assert!((200..300).contains(&code), "{method} {path}: {code} {v}");
        v
    }

    fn session(&self, agent: Value) -> String {
        let agent = self.ok("POST", "/v1/agents", Some(agent));
        let env = self.ok(
            "POST",
            "/v1/environments",
            Some(json!({"name": format!("env-{}", agent["id"].as_str().unwrap_or("x")), "config": {"type": "cloud", "networking": {"type": "unrestricted"}}})),
        );
        let s = self.ok(
            "POST",
            "/v1/sessions",
            Some(json!({"agent": agent["id"], "environment_id": env["id"]})),
        );
        s["id"].as_str().expect("session id").to_string()
    }

    fn say(&self, sid: &str, text: &str) {
        let (code, v) = self.call(
            "POST",
            &format!("/v1/sessions/{sid}/events"),
            Some(json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": text}]}]})),
        );
        assert_eq!(code, 200, "{v}");
    }

    fn events(&self, sid: &str) -> Vec<Value> {
        let v = self.ok(
            "GET",
            &format!("/v1/sessions/{sid}/events?limit=1000"),
            None,
        );
        v["data"].as_array().cloned().unwrap_or_default()
    }

    fn wait_for(&self, sid: &str, secs: u64, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let evs = self.events(sid);
            if done(&evs) {
                return evs;
            }
            assert!(
                Instant::now() < deadline,
                "[{}] timed out; the log:\n{}\nserver log tail:\n{}",
                self.name,
                evs.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n"),
                std::fs::read_to_string(&self.serve().log)
                    .unwrap_or_default()
                    .lines()
                    .rev()
                    .take(40)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Turns ended so far.
fn idles(evs: &[Value]) -> usize {
    evs.iter()
        .filter(|e| {
            e["type"] == "session.status_idle" && e["stop_reason"]["type"] != "requires_action"
        })
        .count()
}

fn types(evs: &[Value]) -> Vec<String> {
    evs.iter()
        .map(|e| e["type"].as_str().unwrap_or("?").to_string())
        .collect()
}

#[test]
fn claude_code_local_writes_a_file() {
    if !agents_installed() {
        return;
    }
    let script = Script::new([
        Turn::Reply(Reply::default().tool_call(
            "Write",
            json!({"file_path": "/workspace/hello.txt", "content": "hi from claude\n"}),
            2,
        )),
        Turn::text(["Wrote ", "the file."]),
    ])
    .with_side(
        SideRule::new(Reply::text(["{\"title\": \"A title\"}"])).body_contains("json_schema"),
    );
    let rig = Rig::new("claude-code/local", "anthropic", "local", script);
    let sid = rig.session(json!({
        "name": "claude", "model": "scripted/claude-sonnet-4-5",
        "harness": "acp:claude-code",
        "tools": [{"type": "agent_toolset_20260401"}],
    }));
    rig.say(&sid, "Write hi to hello.txt");
    let evs = rig.wait_for(&sid, 240, |e| idles(e) >= 1);
    eprintln!("{}", types(&evs).join("\n"));
    for e in &evs {
        eprintln!("{e}");
    }
    for r in rig.models.requests() {
        eprintln!(
            "{} {} side={} {}",
            r.method,
            r.path,
            r.side,
            r.body.to_string().chars().take(300).collect::<String>()
        );
    }
    let _ = &rig.rt;
}
