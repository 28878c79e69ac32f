//! ACP agents end to end: the real npm packages (scripts/agents.sh) inside real runners
//! (bubblewrap, Docker), spoken to over ACP by a real `paddock serve`, their model
//! traffic through Paddock's model gateway to the scripted model server (the one
//! stand-in: it speaks the real wire formats). Required in CI (`PADDOCK_REQUIRE_AGENTS=1`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

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

impl Drop for Rig {
    /// Runners outlive `paddock serve` by design (they are adopted at its next start):
    /// destroy them, agents and all, before the server goes.
    fn drop(&mut self) {
        if self.serve.is_none() {
            return;
        }
        let (_, list) = self.call("GET", "/v1/runners?limit=100", None);
        for r in list["data"].as_array().into_iter().flatten() {
            if let Some(id) = r["id"].as_str() {
                let _ = self.call("DELETE", &format!("/v1/runners/{id}?wait=true"), None);
            }
        }
    }
}

/// Stop reasons of the turns ended so far (not the `requires_action` pauses).
fn ended(evs: &[Value]) -> Vec<String> {
    evs.iter()
        .filter(|e| {
            e["type"] == "session.status_idle" && e["stop_reason"]["type"] != "requires_action"
        })
        .map(|e| e["stop_reason"]["type"].as_str().unwrap_or("").to_string())
        .collect()
}

fn of_type<'a>(evs: &'a [Value], t: &str) -> Vec<&'a Value> {
    evs.iter().filter(|e| e["type"] == t).collect()
}

fn text_of(e: &Value) -> String {
    e["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["text"].as_str())
        .collect::<Vec<_>>()
        .join("")
}

/// How one adapter is driven by the scripted model: the tool call that writes a file,
/// and one its agent asks permission for (that creates `path`) when asked to ask.
struct Adapter {
    harness: &'static str,
    /// The provider kind the scripted model server speaks to it.
    kind: &'static str,
    write: fn(&str, &str) -> (&'static str, Value),
    asked: fn(&str) -> (&'static str, Value),
    /// A call of its shell tool running `command`.
    shell: fn(&str) -> (&'static str, Value),
    /// The name the agent reports its file-writing tool by.
    write_name: &'static str,
    /// Model calls one tool-using turn makes (the call, then the one with its result).
    calls_per_tool_turn: usize,
    /// Whether it closes a model call in flight when its turn is cancelled (Codex lets
    /// a stream that has sent nothing yet run out).
    hangs_up: bool,
    /// Whether a denied call goes back to the model (Codex ends its turn instead).
    model_after_deny: bool,
}

const CLAUDE: Adapter = Adapter {
    harness: "acp:claude-code",
    kind: "anthropic",
    write: |path, content| {
        (
            "Write",
            json!({"file_path": format!("/workspace/{path}"), "content": content}),
        )
    },
    asked: |path| {
        (
            "Write",
            json!({"file_path": format!("/workspace/{path}"), "content": "asked\n"}),
        )
    },
    shell: |command| ("Bash", json!({"command": command, "description": "Run it"})),
    write_name: "Write",
    calls_per_tool_turn: 2,
    hangs_up: true,
    model_after_deny: true,
};

const OPENCLAW: Adapter = Adapter {
    harness: "acp:openclaw",
    kind: "anthropic",
    write: |path, content| ("write", json!({"path": path, "content": content})),
    // OpenClaw asks for exec only, and only for commands without shell syntax.
    asked: |path| ("exec", json!({"command": format!("touch {path}")})),
    shell: |command| ("exec", json!({"command": command})),
    // Its tool calls carry no name: the event names the call's kind.
    write_name: "edit",
    calls_per_tool_turn: 2,
    hangs_up: true,
    model_after_deny: true,
};

const GEMINI: Adapter = Adapter {
    harness: "acp:gemini",
    kind: "gemini",
    write: |path, content| {
        (
            "write_file",
            json!({"file_path": format!("/workspace/{path}"), "content": content}),
        )
    },
    asked: |path| {
        (
            "write_file",
            json!({"file_path": format!("/workspace/{path}"), "content": "asked\n"}),
        )
    },
    shell: |command| ("run_shell_command", json!({"command": command})),
    write_name: "edit",
    calls_per_tool_turn: 2,
    hangs_up: true,
    model_after_deny: true,
};

const CODEX: Adapter = Adapter {
    harness: "acp:codex",
    kind: "openai",
    write: |path, content| {
        (
            "exec_command",
            json!({"cmd": format!("printf '%s' '{content}' > {path}")}),
        )
    },
    asked: |path| ("exec_command", json!({"cmd": format!("touch {path}")})),
    shell: |command| ("exec_command", json!({"cmd": command})),
    write_name: "execute",
    calls_per_tool_turn: 2,
    hangs_up: false,
    model_after_deny: false,
};

impl Rig {
    fn runner_of(&self, sid: &str) -> String {
        self.ok("GET", &format!("/v1/sessions/{sid}"), None)["runner_id"]
            .as_str()
            .expect("runner")
            .to_string()
    }

    fn file(&self, rid: &str, path: &str) -> (u16, Value) {
        self.call(
            "GET",
            &format!("/v1/runners/{rid}/files/read?path={path}"),
            None,
        )
    }

    /// Runs a shell command in the runner; returns its stdout.
    fn sh(&self, rid: &str, cmd: &str) -> String {
        let (code, v) = self.call(
            "POST",
            &format!("/v1/runners/{rid}/exec"),
            Some(json!({"command": cmd, "timeout_ms": 60000})),
        );
        assert_eq!(code, 200, "{v}");
        let text = v
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string());
        let mut out = String::new();
        for line in text.lines() {
            if let Ok(r) = serde_json::from_str::<Value>(line) {
                if r["type"] == "stdout" {
                    out.push_str(r["data"].as_str().unwrap_or(""));
                }
            }
        }
        out
    }

    fn send(&self, sid: &str, events: Value) {
        let (code, v) = self.call(
            "POST",
            &format!("/v1/sessions/{sid}/events"),
            Some(json!({ "events": events })),
        );
        assert_eq!(code, 200, "{v}");
    }

    /// SIGKILL, a pause, and a new start on the same data directory.
    fn crash_and_restart_after(&mut self, down: Duration) {
        if let Some(s) = self.serve.take() {
            s.crash();
        }
        std::thread::sleep(down);
        self.start();
    }
}

fn agent_body(a: &Adapter, policy: &str) -> Value {
    json!({
        "name": format!("{}-{policy}", a.harness.replace(':', "-")),
        "model": "scripted/claude-sonnet-4-5",
        "harness": a.harness,
        "tools": [{"type": "agent_toolset_20260401",
                   "default_config": {"permission_policy": {"type": policy}}}],
    })
}

/// The memory scanner run inside the runner: reads every readable mapping of every
/// process but itself and reports where the needle (given in two halves, so that no
/// command line holds it whole) shows up, and whether it found a control string in
/// its own memory (which proves the scan reads memory at all).
const SCAN: &str = r#"
import json, os, sys
needle = (sys.argv[1] + sys.argv[2]).encode()
control = ("paddock-" + "control-" + "marker").encode()
me, found, scanned, pids, ctrl = os.getpid(), [], 0, 0, False
for pid in [p for p in os.listdir('/proc') if p.isdigit()]:
    try:
        maps = open(f'/proc/{pid}/maps').read().splitlines()
        mem = open(f'/proc/{pid}/mem', 'rb', 0)
    except OSError:
        continue
    pids += 1
    for line in maps:
        addr, perms = line.split()[:2]
        if 'r' not in perms:
            continue
        a, b = (int(x, 16) for x in addr.split('-'))
        if b - a > (1 << 30):
            continue
        try:
            mem.seek(a)
            data = mem.read(b - a)
        except (OSError, OverflowError, ValueError):
            continue
        scanned += len(data)
        if int(pid) == me:
            ctrl = ctrl or control in data
        elif needle in data:
            found.append(pid)
print(json.dumps({"found": sorted(set(found)), "scanned_bytes": scanned, "pids": pids, "control": ctrl}))
"#;

/// The canary provider key is nowhere a sandbox can reach: not in any process's
/// environment, command line or readable memory, not in the workspace, `/tmp` or
/// `/run/paddock`, not in the runner's logs and not in any event.
fn assert_no_canary(rig: &Rig, sid: &str, rid: &str) {
    let (h1, h2) = CANARY.split_at(CANARY.len() / 2);
    let grep = rig.sh(
        rid,
        &format!(
            "n={h1}; n=\"${{n}}{h2}\"; [ ${{#n}} -gt 10 ] || exit 3; printf '%s\\n' \"$n\" | grep -rlaF -f - /proc/[0-9]*/environ /proc/[0-9]*/cmdline /workspace /tmp /run/paddock 2>/dev/null | grep -v \"^/proc/$$/\" ; echo scanned"
        ),
    );
    assert_eq!(
        grep.trim(),
        "scanned",
        "[{}] the canary key is reachable: {grep}",
        rig.name
    );
    // The positive control: the same grep finds a planted string.
    let planted = rig.sh(
        rid,
        "echo paddock-planted-marker > /tmp/planted.txt; grep -rlaF paddock-planted-marker /tmp; rm /tmp/planted.txt",
    );
    assert!(
        planted.contains("/tmp/planted.txt"),
        "the grep finds what is there: {planted}"
    );
    std::fs::write(rig.dir.path().join("scan.py"), SCAN).expect("scan script");
    let out = rig.sh(
        rid,
        &format!("cat > /tmp/scan.py <<'EOF'\n{SCAN}\nEOF\npython3 /tmp/scan.py {h1} {h2}"),
    );
    let v: Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("scan output {out:?}: {e}"));
    assert_eq!(v["control"], true, "the scan reads memory: {v}");
    assert!(
        v["pids"].as_u64().unwrap_or(0) >= 2,
        "the agent's processes were scanned: {v}"
    );
    assert_eq!(
        v["found"],
        json!([]),
        "[{}] the canary is in a sandbox process's memory: {v}",
        rig.name
    );
    let logs = rig
        .call("GET", &format!("/v1/runners/{rid}/logs?tail=10000"), None)
        .1;
    assert!(!logs.to_string().contains(CANARY), "runner logs");
    let events = serde_json::to_string(&rig.events(sid)).expect("json");
    assert!(!events.contains(CANARY), "events");
    // The provider did get it, in its auth header and nowhere else.
    let reqs = rig.models.requests();
    assert!(!reqs.is_empty());
    for r in &reqs {
        let auth = r
            .header("x-api-key")
            .or(r.header("authorization"))
            .or(r.header("x-goog-api-key"))
            .unwrap_or("");
        assert!(
            auth.contains(CANARY),
            "the provider got the real key: {:?}",
            r.headers
        );
        assert!(
            !r.body.to_string().contains(CANARY),
            "no key in a request body"
        );
    }
}

/// Every scenario of the ACP issue against one adapter on one backend.
fn exercise(a: &Adapter, backend: &str) {
    let script = Script::new([]).with_side(
        SideRule::new(Reply::text(["{\"title\": \"A title\"}"])).body_contains("json_schema"),
    );
    let mut rig = Rig::new(&format!("{}/{backend}", a.harness), a.kind, backend, script);

    // 1. A tool-using turn that writes a file in the workspace.
    let sid = rig.session(agent_body(a, "always_allow"));
    let (tool, input) = (a.write)("hello.txt", "hi from the agent\n");
    rig.models.push(
        Reply::default()
            .tool_call(tool, input, 2)
            .usage(100, 10, 0, 0),
    );
    rig.models
        .push(Reply::text(["Wrote ", "the file."]).usage(120, 5, 0, 0));
    rig.say(&sid, "Write hi to hello.txt");
    let evs = rig.wait_for(&sid, 300, |e| !ended(e).is_empty());
    assert_eq!(ended(&evs), ["end_turn"], "[{}] {evs:#?}", rig.name);
    let uses = of_type(&evs, "agent.tool_use");
    assert_eq!(uses.len(), 1, "{evs:#?}");
    assert_eq!(
        (
            uses[0]["name"].clone(),
            uses[0]["evaluated_permission"].clone()
        ),
        (json!(a.write_name), json!("allow"))
    );
    let results = of_type(&evs, "agent.tool_result");
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["tool_use_id"], uses[0]["id"]);
    assert_eq!(results[0]["is_error"], false, "{:?}", results[0]);
    for m in of_type(&evs, "agent.message") {
        assert!(
            !text_of(m).contains("not found"),
            "no warning from the agent: {m}"
        );
    }
    let answer = of_type(&evs, "agent.message")
        .last()
        .map(|e| text_of(e))
        .unwrap_or_default();
    assert!(answer.contains("Wrote the file."), "{answer:?}");
    let rid = rig.runner_of(&sid);
    let (code, body) = rig.file(&rid, "hello.txt");
    assert_eq!(
        (code, body.as_str()),
        (200, Some("hi from the agent\n")),
        "{body}"
    );
    // Metered through the gateway with the built-in agent's code.
    let ends: Vec<&Value> = of_type(&evs, "span.model_request_end")
        .into_iter()
        .filter(|e| {
            e["model_usage"]["input_tokens"] == 100 || e["model_usage"]["input_tokens"] == 120
        })
        .collect();
    assert_eq!(ends.len(), a.calls_per_tool_turn, "{evs:#?}");
    let session = rig.ok("GET", &format!("/v1/sessions/{sid}"), None);
    assert!(
        session["usage"]["input_tokens"].as_u64().unwrap_or(0) >= 220,
        "{session}"
    );
    assert!(of_type(&evs, "session.usage").len() >= a.calls_per_tool_turn);
    for r in rig.models.main_requests() {
        // In the body, or (Gemini) in the path.
        let model = r.body["model"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| r.path.clone());
        assert!(
            model.contains("claude-sonnet-4-5"),
            "the provider's own model id: {model}"
        );
    }

    // 2. The canary key is nowhere inside.
    assert_no_canary(&rig, &sid, &rid);

    // 3. An interrupt stops a model call in flight.
    rig.models
        .push(Reply::text(["far too slow"]).delays(Duration::from_secs(60), Duration::ZERO));
    let before = rig.events(&sid).len();
    rig.say(&sid, "Take your time.");
    rig.wait_for(&sid, 120, |e| {
        e[before..]
            .iter()
            .any(|x| x["type"] == "span.model_request_start")
    });
    let t = Instant::now();
    rig.send(&sid, json!([{"type": "user.interrupt"}]));
    let evs = rig.wait_for(&sid, 30, |e| ended(e).len() >= 2);
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "the interrupt took {:?}",
        t.elapsed()
    );
    assert_eq!(ended(&evs)[1], "end_turn");
    if a.hangs_up {
        let gone = rig
            .rt
            .block_on(rig.models.wait_for_disconnect(Duration::from_secs(20)));
        assert!(gone.is_some(), "the agent hung up on the model call");
    }

    // 4. An orchestrator crash while the agent's command runs. The agent goes on in its
    // runner; what it sends meanwhile waits in the worker, and its next model call in
    // the worker's relay; the new orchestrator takes the agent over and the turn ends
    // as it would have, each event once.
    let (tool, input) = (a.shell)("sleep 2; echo slept > slept.txt");
    rig.models.push(
        Reply::default()
            .tool_call(tool, input, 2)
            .usage(50, 5, 0, 0),
    );
    // Twice: a model call the agent had in flight at the crash fails for it, and its
    // own client may make it again (Claude Code's does; the others' calls come after
    // the command, when the new orchestrator serves).
    for _ in 0..2 {
        rig.models
            .push(Reply::text(["Slept ", "well."]).usage(60, 5, 0, 0));
    }
    let before = rig.events(&sid).len();
    rig.say(&sid, "Sleep a little, then write slept.txt.");
    rig.wait_for(&sid, 120, |e| {
        e[before..].iter().any(|x| x["type"] == "agent.tool_use")
    });
    // The command ends, and the agent calls its model, while no orchestrator runs.
    rig.crash_and_restart_after(Duration::from_secs(3));
    let evs = rig.wait_for(&sid, 120, |e| ended(e).len() >= 3);
    assert_eq!(ended(&evs)[2], "end_turn", "[{}] {evs:#?}", rig.name);
    let turn = &evs[before..];
    assert!(of_type(turn, "session.error").is_empty(), "{turn:#?}");
    let uses = of_type(turn, "agent.tool_use");
    let results = of_type(turn, "agent.tool_result");
    assert_eq!(
        (uses.len(), results.len()),
        (1, 1),
        "[{}] {turn:#?}",
        rig.name
    );
    assert_eq!(results[0]["tool_use_id"], uses[0]["id"]);
    assert_eq!(results[0]["is_error"], false, "{:?}", results[0]);
    let answer = of_type(turn, "agent.message")
        .last()
        .map(|e| text_of(e))
        .unwrap_or_default();
    assert!(answer.contains("Slept well."), "[{}] {turn:#?}", rig.name);
    let (code, body) = rig.file(&rid, "slept.txt");
    assert_eq!((code, body.as_str()), (200, Some("slept\n")), "{body}");
    rig.models.clear_turns();
    // A restart between turns: the agent is taken over idle, and its next words belong
    // to the next turn only.
    rig.crash_and_restart_after(Duration::from_millis(0));
    rig.models.push(Reply::text(["Back again."]));
    rig.say(&sid, "Still there?");
    let evs = rig.wait_for(&sid, 300, |e| ended(e).len() >= 4);
    assert_eq!(ended(&evs)[3], "end_turn", "{evs:#?}");
    let last = of_type(&evs, "agent.message")
        .last()
        .map(|e| text_of(e))
        .unwrap_or_default();
    let reqs: Vec<String> = rig
        .models
        .requests()
        .iter()
        .map(|r| {
            let msgs = r.body["messages"].as_array().cloned().unwrap_or_default();
            let users: Vec<String> = msgs
                .iter()
                .filter(|m| m["role"] == "user")
                .map(|m| m["content"].to_string().chars().take(120).collect())
                .collect();
            format!(
                "{} side={} messages={} users={users:?}",
                r.path,
                r.side,
                msgs.len()
            )
        })
        .collect();
    assert!(
        last.contains("Back again."),
        "{last:?}; requests: {reqs:#?}; the log: {evs:#?}"
    );
    // No event twice.
    let ids: std::collections::HashSet<&str> =
        evs.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids.len(), evs.len());

    // 5. Permission asks, answered allow, then deny.
    let sid = rig.session(agent_body(a, "always_ask"));
    let (tool, input) = (a.asked)("allowed.txt");
    rig.models.push(Reply::default().tool_call(tool, input, 1));
    rig.models.push(Reply::text(["Allowed."]));
    rig.say(&sid, "Make allowed.txt");
    let evs = rig.wait_for(&sid, 300, |e| {
        e.iter().any(|x| {
            x["type"] == "session.status_idle" && x["stop_reason"]["type"] == "requires_action"
        })
    });
    let ask = of_type(&evs, "agent.tool_use")
        .into_iter()
        .find(|u| u["evaluated_permission"] == "ask")
        .expect("an ask");
    assert_eq!(ask["evaluation"]["type"], "always_ask");
    let idle = evs
        .iter()
        .rev()
        .find(|x| x["type"] == "session.status_idle")
        .expect("idle");
    assert_eq!(idle["stop_reason"]["event_ids"], json!([ask["id"]]));
    rig.send(
        &sid,
        json!([{"type": "user.tool_confirmation", "tool_use_id": ask["id"], "result": "allow"}]),
    );
    let evs = rig.wait_for(&sid, 120, |e| !ended(e).is_empty());
    assert_eq!(ended(&evs), ["end_turn"], "{evs:#?}");
    let rid = rig.runner_of(&sid);
    assert_eq!(rig.file(&rid, "allowed.txt").0, 200, "the allowed call ran");
    let (tool, input) = (a.asked)("denied.txt");
    rig.models.push(Reply::default().tool_call(tool, input, 1));
    if a.model_after_deny {
        rig.models.push(Reply::text(["Understood."]));
    }
    rig.say(&sid, "Make denied.txt");
    let evs = rig.wait_for(&sid, 120, |e| {
        e.iter()
            .filter(|x| {
                x["type"] == "session.status_idle" && x["stop_reason"]["type"] == "requires_action"
            })
            .count()
            >= 2
    });
    let ask = of_type(&evs, "agent.tool_use")
        .into_iter()
        .filter(|u| u["evaluated_permission"] == "ask")
        .nth(1)
        .expect("a second ask");
    rig.send(&sid, json!([{"type": "user.tool_confirmation", "tool_use_id": ask["id"], "result": "deny", "deny_message": "not that one"}]));
    let evs = rig.wait_for(&sid, 120, |e| ended(e).len() >= 2);
    assert_eq!(ended(&evs)[1], "end_turn", "{evs:#?}");
    let result = of_type(&evs, "agent.tool_result")
        .into_iter()
        .find(|r| r["tool_use_id"] == ask["id"])
        .expect("a result");
    assert_eq!(result["is_error"], true);
    assert_eq!(
        rig.file(&rid, "denied.txt").0,
        404,
        "the denied call never ran"
    );

    // 6. A budget reached mid-turn stops the agent.
    let agent = rig.ok("POST", "/v1/agents", Some(agent_body(a, "always_allow")));
    let env = rig.ok(
        "POST",
        "/v1/environments",
        Some(json!({"name": "budget-env"})),
    );
    let sid = rig.ok(
        "POST",
        "/v1/sessions",
        Some(json!({
            "agent": agent["id"], "environment_id": env["id"],
            "budget": {"type": "limit", "max_list_cost": {"amount": "50", "currency": "USD"}},
        })),
    )["id"]
        .as_str()
        .expect("id")
        .to_string();
    let main_before = rig.models.main_requests().len();
    let (tool, input) = (a.write)("budget.txt", "spent\n");
    // 1000 input tokens = 100 cents, against a budget of 50.
    rig.models.push(
        Reply::default()
            .tool_call(tool, input, 1)
            .usage(1000, 0, 0, 0),
    );
    rig.models.push(Reply::text(["never sent"]));
    rig.say(&sid, "Work.");
    let evs = rig.wait_for(&sid, 300, |e| !ended(e).is_empty());
    assert_eq!(ended(&evs), ["budget_reached"], "{evs:#?}");
    assert_eq!(
        rig.models.main_requests().len(),
        main_before + 1,
        "no model call past the budget"
    );
    assert_eq!(rig.models.remaining_turns(), 1);
    let rid = rig.runner_of(&sid);
    let r = rig.ok("GET", &format!("/v1/runners/{rid}"), None);
    assert!(
        r["reason"].as_str().unwrap_or("").contains("budget") || r["state"] == "stopping",
        "{r}"
    );
}

#[test]
fn claude_code_in_a_bubblewrap_runner() {
    if !agents_installed() {
        return;
    }
    exercise(&CLAUDE, "local");
}

#[test]
fn openclaw_in_a_bubblewrap_runner() {
    if !agents_installed() {
        return;
    }
    exercise(&OPENCLAW, "local");
}

#[test]
fn claude_code_in_a_docker_runner() {
    if !agents_installed() || !docker_agents() {
        return;
    }
    exercise(&CLAUDE, "docker");
}

#[test]
fn openclaw_in_a_docker_runner() {
    if !agents_installed() || !docker_agents() {
        return;
    }
    exercise(&OPENCLAW, "docker");
}

#[test]
fn gemini_cli_in_a_bubblewrap_runner() {
    if !agents_installed() {
        return;
    }
    exercise(&GEMINI, "local");
}

#[test]
fn gemini_cli_in_a_docker_runner() {
    if !agents_installed() || !docker_agents() {
        return;
    }
    exercise(&GEMINI, "docker");
}

/// The official `anthropic` SDK streams an ACP turn exactly as it streams a built-in one
/// (tests/sdk/test_compat.py, `test_acp_agent_turn_streams_like_the_builtin_one`).
#[test]
fn the_official_sdk_streams_an_acp_turn() {
    let Some(python) = std::env::var_os("PADDOCK_SDK_PYTHON") else {
        require_or_skip(
            "sdk",
            false,
            "PADDOCK_SDK_PYTHON is not set (scripts/test sets it)",
        );
        return;
    };
    if !agents_installed() {
        return;
    }
    let side = (7, 3);
    let script = Script::new([
        Turn::Reply(
            Reply::default()
                .tool_call(
                    "Write",
                    json!({"file_path": "/workspace/sdk.txt", "content": "from the sdk test\n"}),
                    2,
                )
                .usage(40, 4, 0, 0),
        ),
        Turn::Reply(
            Reply::text(["Wrote ", "sdk.txt ", "for you."])
                .delays(Duration::from_millis(30), Duration::from_millis(30))
                .usage(60, 6, 0, 0),
        ),
    ])
    .with_side(
        SideRule::new(Reply::text(["{\"title\": \"t\"}"]).usage(side.0, side.1, 0, 0))
            .body_contains("json_schema"),
    );
    let rig = Rig::new("sdk/claude-code/local", "anthropic", "local", script);
    let spec = json!({
        "model": "scripted/claude-sonnet-4-5", "harness": "acp:claude-code",
        "tool": "Write", "file_path": "/workspace/sdk.txt",
        "final_text": "Wrote sdk.txt for you.", "usage": [[40, 4], [60, 6]],
        "side_usage": [side.0, side.1], "seconds": 240.0,
    });
    let test =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/sdk/test_compat.py");
    let out = std::process::Command::new(python)
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-rs",
            "-k",
            "acp",
        ])
        .arg(&test)
        .env("PADDOCK_URL", &rig.serve().url)
        .env("PADDOCK_SDK_ACP", spec.to_string())
        .output()
        .expect("pytest runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed") && !stdout.contains("skipped"),
        "the SDK's ACP test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sessions = rig.ok("GET", "/v1/sessions?limit=10", None);
    assert!(sessions["data"].as_array().is_some());
    assert_eq!(
        rig.models.main_requests().len(),
        2,
        "both scripted calls went through the gateway"
    );
}

/// `paddock agents create --harness acp:claude-code` makes an ACP agent, and `paddock
/// start --agent … --prompt … --follow` runs its turn like the built-in agent's.
#[test]
fn the_cli_creates_and_starts_an_acp_agent() {
    if !agents_installed() {
        return;
    }
    let script = Script::new([
        Turn::Reply(Reply::default().tool_call(
            "Write",
            json!({"file_path": "/workspace/cli.txt", "content": "from the cli\n"}),
            1,
        )),
        Turn::text(["The CLI ", "file is written."]),
    ])
    .with_side(SideRule::new(Reply::text(["{\"title\": \"t\"}"])).body_contains("json_schema"));
    let rig = Rig::new("cli/claude-code/local", "anthropic", "local", script);
    let created = rig.serve().json(&[
        "agents",
        "create",
        "--name",
        "cli-claude",
        "--model",
        "scripted/claude-sonnet-4-5",
        "--harness",
        "acp:claude-code",
        "--tool-profile",
        "full",
    ]);
    assert_eq!(
        created["harness"],
        json!({"type": "acp", "adapter": "claude-code"}),
        "{created}"
    );
    let out = rig.serve().cli(&[
        "start",
        "--agent",
        "cli-claude",
        "--prompt",
        "write cli.txt",
        "--follow",
    ]);
    let (stdout, stderr) = common::text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("you: write cli.txt"), "{stdout}");
    assert!(stdout.contains("Write"), "the tool call is shown: {stdout}");
    assert!(stdout.contains("The CLI file is written."), "{stdout}");
    // A bad adapter name is refused, naming the field.
    let bad = rig.serve().cli(&[
        "agents",
        "create",
        "--name",
        "x",
        "--model",
        "m",
        "--harness",
        "acp:nope",
    ]);
    let (o, e) = common::text(&bad);
    assert!(!bad.status.success(), "{o}");
    assert!(e.contains("harness"), "{e}");
}

#[test]
fn codex_in_a_bubblewrap_runner() {
    if !agents_installed() {
        return;
    }
    exercise(&CODEX, "local");
}

#[test]
fn codex_in_a_docker_runner() {
    if !agents_installed() || !docker_agents() {
        return;
    }
    exercise(&CODEX, "docker");
}

/// A user's own ACP agent (`custom`), written on the real ACP SDK for JavaScript (the
/// one Claude Code's adapter ships): the client's file-system and terminal requests it
/// makes are answered inside the runner, confined to the workspace; it finds the model
/// gateway in its environment, and calls it in OpenAI's chat format (metered), while a
/// wrong token is refused.
const CUSTOM_AGENT: &str = r#"
import { agent, methods, ndJsonStream, PROTOCOL_VERSION } from "/opt/paddock-agents/lib/node_modules/@agentclientprotocol/claude-agent-acp/node_modules/@agentclientprotocol/sdk/dist/v1/stable/acp.js";
import { Readable, Writable } from "node:stream";
const gw = process.env.PADDOCK_GATEWAY_URL, token = process.env.PADDOCK_GATEWAY_TOKEN;
async function chat(tok) {
  const r = await fetch(gw + "/v1/chat/completions", { method: "POST",
    headers: { "content-type": "application/json", authorization: "Bearer " + tok },
    body: JSON.stringify({ model: "anything", stream: true, messages: [{ role: "user", content: "hi" }] }) });
  return { status: r.status, body: await r.text() };
}
const app = agent({ name: "paddock-test-agent" })
  .onRequest(methods.agent.initialize, () => ({ protocolVersion: PROTOCOL_VERSION, agentCapabilities: {}, agentInfo: { name: "paddock-test-agent", version: "1" } }))
  .onRequest(methods.agent.session.new, () => ({ sessionId: "custom-1" }))
  .onNotification(methods.agent.session.cancel, () => {})
  .onRequest(methods.agent.session.prompt, async ({ params: p, client }) => {
    const out = {};
    const sid = p.sessionId;
    await client.request(methods.client.fs.writeTextFile, { sessionId: sid, path: "/workspace/custom/out.txt", content: "line one\nline two\n" });
    out.read = (await client.request(methods.client.fs.readTextFile, { sessionId: sid, path: "/workspace/custom/out.txt", line: 2, limit: 1 })).content;
    try { await client.request(methods.client.fs.readTextFile, { sessionId: sid, path: "/etc/hostname" }); out.outside = "read"; }
    catch (e) { out.outside = "refused"; }
    const t = await client.request(methods.client.terminal.create, { sessionId: sid, command: "sh", args: ["-c", "echo term-out; echo term-err >&2; exit 3"], cwd: "/workspace" });
    out.exit = (await client.request(methods.client.terminal.waitForExit, { sessionId: sid, terminalId: t.terminalId })).exitCode;
    out.output = (await client.request(methods.client.terminal.output, { sessionId: sid, terminalId: t.terminalId })).output;
    await client.request(methods.client.terminal.release, { sessionId: sid, terminalId: t.terminalId });
    // Two calls at once (as Claude Code makes them): both are metered.
    const [good, again] = await Promise.all([chat(token), chat(token)]);
    const bad = await chat("not-the-token");
    out.gateway = [good.status, again.status]; out.streamed = [good, again].every(r => r.body.includes("the gateway") && r.body.includes("[DONE]")); out.wrong_token = bad.status;
    await client.notify(methods.client.session.update, { sessionId: sid, update: { sessionUpdate: "agent_message_chunk", content: { type: "text", text: JSON.stringify(out) } } });
    return { stopReason: "end_turn" };
  });
app.connect(ndJsonStream(Writable.toWeb(process.stdout), Readable.toWeb(process.stdin)));
"#;

#[test]
fn a_custom_acp_agent_gets_files_terminals_and_the_gateway() {
    if !agents_installed() {
        return;
    }
    // Both calls wait 300 ms for their first token: they end, and are metered, at once.
    let reply = || {
        Reply::text(["from ", "the gateway"])
            .usage(11, 2, 0, 0)
            .delays(Duration::from_millis(300), Duration::ZERO)
    };
    let script = Script::new([Turn::Reply(reply()), Turn::Reply(reply())]);
    let rig = Rig::new("custom/local", "openai", "local", script);
    let sid = rig.session(json!({
        "name": "custom", "model": "scripted/claude-sonnet-4-5",
        "harness": {"type": "acp", "adapter": "custom",
                    "command": ["/bin/sh", "-c", "exec /opt/paddock-agents/bin/node --input-type=module -e \"$AGENT_JS\""],
                    "env": {"AGENT_JS": CUSTOM_AGENT}},
    }));
    rig.say(&sid, "go");
    let evs = rig.wait_for(&sid, 120, |e| !ended(e).is_empty());
    assert_eq!(ended(&evs), ["end_turn"], "{evs:#?}");
    let said: Value = serde_json::from_str(&text_of(
        of_type(&evs, "agent.message")
            .last()
            .expect("the agent's report"),
    ))
    .expect("a JSON report");
    assert_eq!(
        said,
        json!({"read": "line two\n", "outside": "refused", "exit": 3,
               "output": "term-out\nterm-err\n", "gateway": [200, 200], "streamed": true,
               "wrong_token": 401}),
        "{evs:#?}"
    );
    let rid = rig.runner_of(&sid);
    let (code, body) = rig.file(&rid, "custom/out.txt");
    assert_eq!((code, body.as_str()), (200, Some("line one\nline two\n")));
    // The gateway's calls were metered (usage read from the stream it asked usage for),
    // and the two at once both count in the session's usage.
    let end = of_type(&evs, "span.model_request_end");
    assert_eq!(end.len(), 2, "{evs:#?}");
    assert_eq!(end[0]["model_usage"]["input_tokens"], 11);
    assert_eq!(end[0]["model_usage"]["output_tokens"], 2);
    let session = rig.ok("GET", &format!("/v1/sessions/{sid}"), None);
    assert_eq!(
        (
            session["usage"]["input_tokens"].clone(),
            session["usage"]["output_tokens"].clone()
        ),
        (json!(22), json!(4)),
        "{session}"
    );
    let r = &rig.models.requests()[0];
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(
        r.body["model"], "claude-sonnet-4-5",
        "mapped to the agent's model"
    );
    assert_eq!(r.body["stream_options"]["include_usage"], true);
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {CANARY}").as_str())
    );
}
