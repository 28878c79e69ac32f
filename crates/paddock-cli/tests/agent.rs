//! The built-in agent end to end: a real `paddock serve`, real bubblewrap runners and
//! the scripted model server (the one stand-in: it speaks the real OpenAI and
//! Anthropic wire formats). Every case runs against both formats.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{bwrap, data_dir, http, Serve};
use paddock_testkit::model_server::{ModelServer, Reply, Script, Turn};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const KINDS: [&str; 2] = ["openai", "anthropic"];

struct Rig {
    _rt: tokio::runtime::Runtime,
    models: ModelServer,
    serve: Option<Serve>,
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
    kind: &'static str,
}

impl Rig {
    fn new(kind: &'static str, turns: Vec<Turn>) -> Rig {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let models = rt
            .block_on(ModelServer::start(Script::new(turns)))
            .expect("model server");
        let base = match kind {
            "openai" => models.openai_base_url(),
            _ => models.anthropic_base_url(),
        };
        let dir = data_dir();
        let config = dir.path().join("paddock.toml");
        std::fs::write(
            &config,
            format!(
                r#"
[runners]
sweep_interval_ms = 200

[agent]
default_provider = "scripted"

[[agent.providers]]
name = "scripted"
kind = "{kind}"
base_url = "{base}"
api_key_env = "SCRIPTED_API_KEY"
max_retries = 0

# 1000 input tokens = $1 = 100 cents; 1000 output tokens = 200 cents.
[agent.prices."scripted/test-model"]
input = 1000.0
output = 2000.0
"#
            ),
        )
        .expect("config");
        let mut rig = Rig {
            _rt: rt,
            models,
            serve: None,
            dir,
            config,
            kind,
        };
        rig.start();
        rig
    }

    fn start(&mut self) {
        self.serve = Some(Serve::start_env(
            self.dir.path(),
            Some(&self.config),
            &[("SCRIPTED_API_KEY", "sk-test-scripted")],
        ));
    }

    fn url(&self) -> String {
        self.serve.as_ref().expect("serving").url.clone()
    }

    fn serve(&self) -> &Serve {
        self.serve.as_ref().expect("serving")
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        http(method, &format!("{}{path}", self.url()), body)
    }

    fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (code, v) = self.call(method, path, body);
        assert!((200..300).contains(&code), "{method} {path}: {code} {v}");
        v
    }

    /// An agent (`extra` merged into the create body), an environment and a session.
    fn session(&self, extra: Value) -> String {
        self.session_with(extra, json!({}))
    }

    /// The same, with `session_extra` merged into the session create body.
    fn session_with(&self, extra: Value, session_extra: Value) -> String {
        let mut body =
            json!({"name": "helper", "model": "scripted/test-model", "system": "You are terse."});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        let agent = self.ok("POST", "/v1/agents", Some(body));
        let env = self.ok(
            "POST",
            "/v1/environments",
            Some(json!({"name": format!("env-{}", agent["id"].as_str().unwrap_or("x")), "config": {"type": "cloud", "networking": {"type": "unrestricted"}}})),
        );
        let mut body = json!({"agent": agent["id"], "environment_id": env["id"]});
        if let (Some(b), Some(e)) = (body.as_object_mut(), session_extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        let s = self.ok("POST", "/v1/sessions", Some(body));
        s["id"].as_str().expect("session id").to_string()
    }

    /// The session's runner (there must be one).
    fn runner_of(&self, sid: &str) -> String {
        self.ok("GET", &format!("/v1/sessions/{sid}"), None)["runner_id"]
            .as_str()
            .expect("runner")
            .to_string()
    }

    /// Whether `path` exists in the runner's workspace (the file API's status).
    fn stat(&self, rid: &str, path: &str) -> u16 {
        self.call(
            "GET",
            &format!("/v1/runners/{rid}/files/stat?path={path}"),
            None,
        )
        .0
    }

    fn send(&self, sid: &str, events: Value) -> (u16, Value) {
        self.call(
            "POST",
            &format!("/v1/sessions/{sid}/events"),
            Some(json!({ "events": events })),
        )
    }

    fn say(&self, sid: &str, text: &str) {
        let (code, v) = self.send(
            sid,
            json!([{"type": "user.message", "content": [{"type": "text", "text": text}]}]),
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

    /// Polls the log until `done` holds, failing with the log after `secs`.
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
                self.kind,
                evs.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n"),
                std::fs::read_to_string(&self.serve().log)
                    .unwrap_or_default()
                    .lines()
                    .rev()
                    .take(30)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_idle(&self, sid: &str, reason: &str, nth: usize) -> Vec<Value> {
        self.wait_for(sid, 60, |evs| {
            idles(evs).iter().filter(|r| r.as_str() == reason).count() >= nth
        })
    }
}

/// Stop reasons of the `session.status_idle` events, in order.
fn idles(evs: &[Value]) -> Vec<String> {
    evs.iter()
        .filter(|e| e["type"] == "session.status_idle")
        .map(|e| e["stop_reason"]["type"].as_str().unwrap_or("").to_string())
        .collect()
}

/// The event types, without the runner's own lifecycle events.
fn kinds(evs: &[Value]) -> Vec<String> {
    evs.iter()
        .map(|e| e["type"].as_str().unwrap_or("").to_string())
        .filter(|t| !t.starts_with("runner.") && t != "session.updated")
        .collect()
}

fn of_type<'a>(evs: &'a [Value], t: &str) -> Vec<&'a Value> {
    evs.iter().filter(|e| e["type"] == t).collect()
}

fn result_text(e: &Value) -> String {
    e["content"][0]["text"].as_str().unwrap_or("").to_string()
}

/// Every tool use has exactly one result and no event id repeats.
fn assert_consistent(evs: &[Value]) {
    let mut ids = std::collections::HashSet::new();
    for e in evs {
        assert!(
            ids.insert(e["id"].as_str().unwrap_or("")),
            "duplicate event {e}"
        );
    }
    for u in of_type(evs, "agent.tool_use") {
        let n = of_type(evs, "agent.tool_result")
            .iter()
            .filter(|r| r["tool_use_id"] == u["id"])
            .count();
        assert_eq!(n, 1, "tool use {} has {n} results", u["id"]);
    }
}

#[test]
fn a_tool_using_turn_writes_and_reads_a_file_in_the_sandbox() {
    if !bwrap() {
        return;
    }
    for kind in KINDS {
        let rig =
            Rig::new(
                kind,
                vec![
                Reply::default()
                    .tool_call(
                        "write",
                        json!({"file_path": "notes/hello.txt", "content": "hi from the agent\n"}),
                        3,
                    )
                    .usage(1000, 100, 0, 0)
                    .into(),
                Reply::text(["Let me check. "])
                    .tool_call("read", json!({"file_path": "/workspace/notes/hello.txt"}), 2)
                    .usage(2000, 50, 500, 0)
                    .into(),
                Reply::text(["The file ", "says hi."])
                    .usage(3000, 10, 0, 0)
                    .into(),
            ],
            );
        let sid = rig.session(json!({"tool_profile": "standard"}));
        rig.say(&sid, "Write a note, then read it back.");
        let evs = rig.wait_idle(&sid, "end_turn", 1);
        assert_consistent(&evs);
        assert_eq!(
            kinds(&evs),
            [
                "user.message",
                "session.status_running",
                "span.model_request_start",
                "agent.tool_use",
                "span.model_request_end",
                "session.usage",
                "span.tool_execution_start",
                "agent.tool_result",
                "span.model_request_start",
                "agent.message",
                "agent.tool_use",
                "span.model_request_end",
                "session.usage",
                "span.tool_execution_start",
                "agent.tool_result",
                "span.model_request_start",
                "agent.message",
                "span.model_request_end",
                "session.usage",
                "session.status_idle",
            ],
            "[{kind}]"
        );
        let uses = of_type(&evs, "agent.tool_use");
        assert_eq!(uses[0]["name"], "write");
        assert_eq!(uses[0]["evaluated_permission"], "allow");
        assert_eq!(uses[0]["evaluation"]["type"], "always_allow");
        let results = of_type(&evs, "agent.tool_result");
        assert_eq!(results[0]["is_error"], false, "{}", results[0]);
        assert_eq!(results[1]["is_error"], false, "{}", results[1]);
        assert!(
            result_text(results[1]).contains("hi from the agent"),
            "[{kind}] read result: {}",
            results[1]
        );
        let msgs = of_type(&evs, "agent.message");
        assert_eq!(result_text(msgs[1]), "The file says hi.");
        // The model saw the tool results: the third request carries the file's text.
        let reqs = rig.models.requests();
        assert_eq!(reqs.len(), 3, "[{kind}]");
        assert!(reqs[2].body.to_string().contains("hi from the agent"));
        assert!(!reqs[0].body.to_string().contains("sk-test-scripted"));
        assert_eq!(
            reqs[0].body["model"], "test-model",
            "the provider gets its own model id"
        );
        match kind {
            "openai" => assert_eq!(
                reqs[0].header("authorization"),
                Some("Bearer sk-test-scripted")
            ),
            _ => assert_eq!(reqs[0].header("x-api-key"), Some("sk-test-scripted")),
        }
        // The file is in the session's runner, provisioned at the first tool call.
        let session = rig.ok("GET", &format!("/v1/sessions/{sid}"), None);
        let rid = session["runner_id"]
            .as_str()
            .expect("a runner was provisioned");
        let (code, body) = rig.call(
            "GET",
            &format!("/v1/runners/{rid}/files/read?path=notes/hello.txt"),
            None,
        );
        assert_eq!(code, 200);
        assert_eq!(body, Value::String("hi from the agent\n".into()));
        // Metering: tokens summed from the provider's own figures, cost from the table.
        let u = &session["usage"];
        // Both formats report cached reads apart from fresh input (OpenAI's
        // prompt_tokens includes them; the provider code moves them out).
        let cache_read = 500;
        assert_eq!(u["input_tokens"], 6000, "[{kind}] {u}");
        assert_eq!(u["output_tokens"], 160);
        assert_eq!(u["cache_read_input_tokens"], cache_read);
        let ends = of_type(&evs, "span.model_request_end");
        assert_eq!(ends[1]["model_usage"]["input_tokens"], 2000);
        assert_eq!(ends[1]["model_usage"]["cache_read_input_tokens"], 500);
        assert_eq!(
            ends[1]["model_request_start_id"],
            of_type(&evs, "span.model_request_start")[1]["id"]
        );
        // 6000 input tokens at $1000/M = $6; 160 output at $2000/M = $0.32; 500 cached
        // reads at the input price (no cache price configured) = $0.5: 682 cents.
        assert_eq!(u["list_cost"]["amount"], "682", "[{kind}] {u}");
        let last_usage = of_type(&evs, "session.usage").last().cloned().cloned();
        assert_eq!(
            last_usage.expect("usage")["usage"]["list_cost"]["amount"],
            "682"
        );
        assert_eq!(session["status"], "idle");
        // Metrics count the calls.
        let (_, metrics) = rig.call("GET", "/metrics", None);
        let m = metrics.as_str().unwrap_or_default().to_string();
        assert!(
            m.lines()
                .any(|l| l.starts_with("paddock_model_tokens_total")
                    && l.contains("model=\"test-model\"")
                    && l.contains("kind=\"input\"")
                    && l.trim_end().ends_with(" 6000")),
            "[{kind}] metrics:\n{m}"
        );
    }
}

#[test]
fn a_text_only_turn_provisions_no_runner() {
    for kind in KINDS {
        let rig = Rig::new(
            kind,
            vec![Reply::text(["Hello", ", world."]).usage(10, 3, 0, 0).into()],
        );
        let sid = rig.session(json!({"tool_profile": "full"}));
        rig.say(&sid, "Say hello.");
        let evs = rig.wait_idle(&sid, "end_turn", 1);
        assert_eq!(
            kinds(&evs),
            [
                "user.message",
                "session.status_running",
                "span.model_request_start",
                "agent.message",
                "span.model_request_end",
                "session.usage",
                "session.status_idle"
            ]
        );
        assert_eq!(
            result_text(of_type(&evs, "agent.message")[0]),
            "Hello, world."
        );
        let session = rig.ok("GET", &format!("/v1/sessions/{sid}"), None);
        assert_eq!(session["runner_id"], Value::Null, "[{kind}]");
        let runners = rig.ok("GET", "/v1/runners", None);
        assert_eq!(runners["data"].as_array().map(Vec::len), Some(0));
        // The model was offered the full toolset, but neither web_search (no backend)
        // nor web_fetch: the default execution profile gives runners no network.
        let body = rig.models.requests()[0].body.to_string();
        for t in ["bash", "read", "write", "edit", "glob", "grep"] {
            assert!(body.contains(&format!("\"{t}\"")), "[{kind}] {t} offered");
        }
        assert!(!body.contains("\"web_search\""));
        assert!(
            !body.contains("\"web_fetch\""),
            "[{kind}] no network, no web_fetch"
        );
        assert!(body.contains("You are terse."), "the system prompt is sent");
    }
}

#[test]
fn queued_messages_drain_in_order() {
    for kind in KINDS {
        let rig = Rig::new(
            kind,
            vec![
                Reply::text(["first ", "answer"])
                    .delays(Duration::from_millis(300), Duration::from_millis(300))
                    .into(),
                Reply::text(["second answer"]).into(),
            ],
        );
        let sid = rig.session(json!({}));
        rig.say(&sid, "one");
        // Once the first turn runs, a second message waits for the next one.
        rig.wait_for(&sid, 30, |e| {
            !of_type(e, "span.model_request_start").is_empty()
        });
        rig.say(&sid, "two");
        let evs = rig.wait_idle(&sid, "end_turn", 2);
        let reqs = rig.models.requests();
        assert_eq!(reqs.len(), 2, "[{kind}] one call per turn");
        let second = reqs[1].body.to_string();
        let (a, b, c) = (
            second.find("one").expect("one"),
            second.find("first answer").expect("answer"),
            second.find("two").expect("two"),
        );
        assert!(
            a < b && b < c,
            "[{kind}] the second turn sees the history in order: {second}"
        );
        assert!(
            !reqs[0].body.to_string().contains("two"),
            "[{kind}] a queued message waits for its turn"
        );
        assert_eq!(of_type(&evs, "session.status_running").len(), 2);
        let session = rig.ok("GET", &format!("/v1/sessions/{sid}"), None);
        assert_eq!(session["stats"]["turns"], 2);
    }
}

#[test]
fn permissions_deny_ask_allow_and_custom_tools() {
    if !bwrap() {
        return;
    }
    for kind in KINDS {
        let rig = Rig::new(
            kind,
            vec![
                // web_fetch is disabled for this agent: refused before any policy.
                Reply::default()
                    .tool_call("web_fetch", json!({"url": "http://example.com"}), 1)
                    .into(),
                // `auto` denies a destructive command outright.
                Reply::default()
                    .tool_call("edit", json!({"file_path": "/etc/passwd", "old_string": "root", "new_string": "toor"}), 1)
                    .into(),
                // always_ask: the first is allowed, the second denied.
                Reply::default()
                    .tool_call("bash", json!({"command": "echo asked > asked.txt && cat asked.txt"}), 2)
                    .into(),
                Reply::default()
                    .tool_call("bash", json!({"command": "touch denied.txt"}), 2)
                    .into(),
                // A client-executed custom tool.
                Reply::default()
                    .tool_call("lookup", json!({"key": "answer"}), 1)
                    .into(),
                Reply::text(["done"]).into(),
            ],
        );
        let sid = rig.session(json!({
            "tools": [
                {"type": "agent_toolset_20260401",
                 "default_config": {"permission_policy": {"type": "auto"}},
                 "configs": [
                    {"name": "bash", "permission_policy": {"type": "always_ask"}},
                    {"name": "web_fetch", "enabled": false}
                 ]},
                {"type": "custom", "name": "lookup", "description": "Looks a key up.",
                 "input_schema": {"type": "object", "properties": {"key": {"type": "string"}}}}
            ]
        }));
        rig.say(&sid, "Do the risky things.");
        let evs = rig.wait_idle(&sid, "requires_action", 1);
        let uses = of_type(&evs, "agent.tool_use");
        assert_eq!(uses.len(), 3, "[{kind}] {uses:?}");
        // Disabled: denied, no evaluation, an error result.
        assert_eq!(uses[0]["name"], "web_fetch");
        assert_eq!(uses[0]["evaluated_permission"], "deny");
        assert!(uses[0].get("evaluation").is_none());
        // auto + outside the workspace: denied as high risk.
        assert_eq!(uses[1]["evaluated_permission"], "deny");
        assert_eq!(uses[1]["evaluation"]["type"], "auto");
        assert_eq!(
            uses[1]["evaluation"]["evaluated_permission"]["type"],
            "deny"
        );
        let results = of_type(&evs, "agent.tool_result");
        assert_eq!(results.len(), 2);
        assert!(results.iter().all(|r| r["is_error"] == true));
        // always_ask: the turn pauses on the bash call.
        assert_eq!(uses[2]["evaluated_permission"], "ask");
        assert_eq!(uses[2]["evaluation"]["type"], "always_ask");
        let idle = of_type(&evs, "session.status_idle")[0];
        assert_eq!(idle["stop_reason"]["event_ids"], json!([uses[2]["id"]]));
        let session = rig.ok("GET", &format!("/v1/sessions/{sid}"), None);
        assert_eq!(session["status"], "idle");
        // A confirmation of something that does not await one is refused.
        let (code, _) = rig.send(
            &sid,
            json!([{"type": "user.tool_confirmation", "tool_use_id": uses[1]["id"], "result": "allow"}]),
        );
        assert_eq!(code, 400);
        let (code, v) = rig.send(
            &sid,
            json!([{"type": "user.tool_confirmation", "tool_use_id": uses[2]["id"], "result": "allow"}]),
        );
        assert_eq!(code, 200, "{v}");
        let evs = rig.wait_idle(&sid, "requires_action", 2);
        let uses = of_type(&evs, "agent.tool_use");
        let r = of_type(&evs, "agent.tool_result")
            .into_iter()
            .find(|r| r["tool_use_id"] == uses[2]["id"])
            .cloned()
            .expect("result of the allowed call");
        assert_eq!(r["is_error"], false, "{r}");
        assert!(result_text(&r).contains("asked"), "{r}");
        assert_eq!(uses[3]["evaluated_permission"], "ask");
        let (code, v) = rig.send(
            &sid,
            json!([{"type": "user.tool_confirmation", "tool_use_id": uses[3]["id"], "result": "deny", "deny_message": "not today"}]),
        );
        assert_eq!(code, 200, "{v}");
        let evs = rig.wait_for(&sid, 60, |e| {
            !of_type(e, "agent.custom_tool_use").is_empty() && idles(e).len() >= 3
        });
        let r = of_type(&evs, "agent.tool_result")
            .into_iter()
            .find(|r| r["tool_use_id"] == uses[3]["id"])
            .cloned()
            .expect("result of the denied call");
        assert_eq!(r["is_error"], true);
        assert!(result_text(&r).contains("not today"), "{r}");
        let custom = of_type(&evs, "agent.custom_tool_use")[0].clone();
        assert_eq!(custom["name"], "lookup");
        assert_eq!(custom["input"], json!({"key": "answer"}));
        let idle = of_type(&evs, "session.status_idle")[2];
        assert_eq!(idle["stop_reason"]["type"], "requires_action");
        assert_eq!(idle["stop_reason"]["event_ids"], json!([custom["id"]]));
        let (code, v) = rig.send(
            &sid,
            json!([{"type": "user.custom_tool_result", "custom_tool_use_id": custom["id"], "content": [{"type": "text", "text": "forty-two"}]}]),
        );
        assert_eq!(code, 200, "{v}");
        let evs = rig.wait_idle(&sid, "end_turn", 1);
        assert_consistent(
            &evs.iter()
                .filter(|e| e["type"] != "agent.custom_tool_use")
                .cloned()
                .collect::<Vec<_>>(),
        );
        assert!(rig.models.requests()[5]
            .body
            .to_string()
            .contains("forty-two"));
        // The denied command never ran; the allowed one did.
        let rid = rig.runner_of(&sid);
        assert_eq!(rig.stat(&rid, "denied.txt"), 404);
        assert_eq!(rig.stat(&rid, "asked.txt"), 200);
    }
}

#[test]
fn a_cost_budget_hit_mid_turn_ends_it_and_refuses_new_turns() {
    if !bwrap() {
        return;
    }
    for kind in KINDS {
        let rig = Rig::new(
            kind,
            vec![
                // 100 cents, against a budget of 50: the next call must not happen.
                Reply::default()
                    .tool_call("bash", json!({"command": "echo working"}), 1)
                    .usage(1000, 0, 0, 0)
                    .into(),
                Reply::text(["never sent"]).into(),
            ],
        );
        let sid = rig.session_with(
            json!({"tool_profile": "full"}),
            json!({"budget": {"type": "limit", "max_list_cost": {"amount": "50", "currency": "USD"}}}),
        );
        rig.say(&sid, "Work.");
        let evs = rig.wait_idle(&sid, "budget_reached", 1);
        assert_eq!(
            rig.models.request_count(),
            1,
            "[{kind}] no model call past the budget"
        );
        // The tool of the first call still ran; then the turn ended before call two.
        let results = of_type(&evs, "agent.tool_result");
        assert_eq!(results.len(), 1);
        assert!(result_text(results[0]).contains("working"));
        assert_eq!(of_type(&evs, "span.model_request_start").len(), 1);
        let session = rig.ok("GET", &format!("/v1/sessions/{sid}"), None);
        assert_eq!(session["usage"]["list_cost"]["amount"], "100");
        // The runner is stopped, saying why.
        let rid = session["runner_id"].as_str().expect("runner").to_string();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = rig.ok("GET", &format!("/v1/runners/{rid}"), None);
            if r["state"] == "stopped" {
                assert!(r["reason"].as_str().unwrap_or("").contains("budget"), "{r}");
                break;
            }
            assert!(Instant::now() < deadline, "runner not stopped: {r}");
            std::thread::sleep(Duration::from_millis(100));
        }
        // New turns are refused with 429 (and not retried by SDKs).
        let (code, v) = rig.send(
            &sid,
            json!([{"type": "user.message", "content": [{"type": "text", "text": "more"}]}]),
        );
        assert_eq!(code, 429, "{v}");
        assert_eq!(v["error"]["type"], "rate_limit_error");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("budget"),
            "{v}"
        );
        // Raising the budget lets the session go on.
        rig.ok(
            "POST",
            &format!("/v1/sessions/{sid}"),
            Some(json!({"budget": {"type": "limit", "max_list_cost": {"amount": "500", "currency": "USD"}}})),
        );
        rig.say(&sid, "more");
        rig.wait_idle(&sid, "end_turn", 1);
    }
}

#[test]
fn a_token_quota_names_itself() {
    for kind in KINDS {
        let rig = Rig::new(
            kind,
            vec![Reply::text(["a long answer"]).usage(100, 50, 0, 0).into()],
        );
        let sid = rig.session(json!({"quotas": {"max_tokens": 120}}));
        rig.say(&sid, "one");
        rig.wait_idle(&sid, "end_turn", 1);
        // 150 tokens used of 120: the next turn is refused up front.
        let (code, v) = rig.send(
            &sid,
            json!([{"type": "user.message", "content": [{"type": "text", "text": "two"}]}]),
        );
        assert_eq!(code, 429, "[{kind}] {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("max_tokens"),
            "{v}"
        );
    }
}

#[test]
fn an_interrupt_stops_a_long_command() {
    if !bwrap() {
        return;
    }
    for kind in KINDS {
        let rig = Rig::new(
            kind,
            vec![
                Reply::default()
                    .tool_call(
                        "bash",
                        json!({"command": "sleep 4; echo late > late.txt"}),
                        1,
                    )
                    .into(),
                Reply::text(["after the interrupt"]).into(),
            ],
        );
        let sid = rig.session(json!({"tool_profile": "full"}));
        rig.say(&sid, "Run it.");
        rig.wait_for(&sid, 60, |e| !of_type(e, "agent.tool_use").is_empty());
        // Give the command time to start in the sandbox.
        std::thread::sleep(Duration::from_millis(1000));
        let t0 = Instant::now();
        let (code, v) = rig.send(&sid, json!([{"type": "user.interrupt"}]));
        assert_eq!(code, 200, "{v}");
        let evs = rig.wait_idle(&sid, "end_turn", 1);
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "[{kind}] interrupted promptly"
        );
        assert_consistent(&evs);
        let r = of_type(&evs, "agent.tool_result")[0];
        assert_eq!(r["is_error"], true);
        assert!(result_text(r).contains("interrupt"), "{r}");
        assert_eq!(
            rig.models.request_count(),
            1,
            "no model call after the interrupt"
        );
        // The command was killed: its file never appears.
        std::thread::sleep(Duration::from_secs(4));
        let rid = rig.runner_of(&sid);
        assert_eq!(
            rig.stat(&rid, "late.txt"),
            404,
            "[{kind}] the interrupted command went on"
        );
        // The session takes the next message normally.
        rig.say(&sid, "go on");
        let evs = rig.wait_idle(&sid, "end_turn", 2);
        assert_eq!(
            result_text(of_type(&evs, "agent.message").last().expect("msg")),
            "after the interrupt"
        );
    }
}

#[test]
fn provider_failures_surface_as_session_errors() {
    for kind in KINDS {
        let rig = Rig::new(
            kind,
            vec![
                Turn::error(503, "upstream down"),
                Turn::error(401, "bad key"),
                Reply::text(["fine again"]).into(),
            ],
        );
        let sid = rig.session(json!({}));
        rig.say(&sid, "one");
        let evs = rig.wait_idle(&sid, "retries_exhausted", 1);
        let err = &of_type(&evs, "session.error")[0]["error"];
        assert_eq!(err["retry_status"]["type"], "exhausted", "[{kind}] {err}");
        assert!(
            matches!(
                err["type"].as_str(),
                Some("model_overloaded_error" | "model_request_failed_error")
            ),
            "{err}"
        );
        let end = of_type(&evs, "span.model_request_end")[0];
        assert_eq!(end["is_error"], true);
        rig.say(&sid, "two");
        let evs = rig.wait_for(&sid, 30, |e| {
            of_type(e, "session.error").len() >= 2 && idles(e).len() >= 2
        });
        assert_eq!(idles(&evs), ["retries_exhausted", "retries_exhausted"]);
        let err = &of_type(&evs, "session.error")[1]["error"];
        assert_eq!(err["type"], "model_request_failed_error", "{err}");
        assert_eq!(err["retry_status"]["type"], "terminal");
        rig.say(&sid, "three");
        let evs = rig.wait_idle(&sid, "end_turn", 1);
        assert_eq!(
            result_text(of_type(&evs, "agent.message").last().expect("msg")),
            "fine again"
        );
    }
}

#[test]
fn an_orchestrator_restart_during_a_running_command_picks_its_result_up() {
    if !bwrap() {
        return;
    }
    for kind in KINDS {
        let mut rig = Rig::new(
            kind,
            vec![
                Reply::default()
                    .tool_call("bash", json!({"command": "sleep 3; echo slow"}), 1)
                    .into(),
                Reply::text(["recovered"]).into(),
            ],
        );
        let sid = rig.session(json!({"tool_profile": "full"}));
        rig.say(&sid, "Run the slow thing.");
        rig.wait_for(&sid, 60, |e| !of_type(e, "agent.tool_use").is_empty());
        std::thread::sleep(Duration::from_millis(500));
        let (status, _) = rig.serve.take().expect("serving").terminate();
        assert!(status.success(), "graceful stop");
        rig.start();
        let evs = rig.wait_idle(&sid, "end_turn", 1);
        assert_consistent(&evs);
        // The command went on in the runner through the restart; its real output is
        // the result, and it ran once.
        let r = of_type(&evs, "agent.tool_result")[0];
        assert_eq!(r["is_error"], false, "{r}");
        assert!(result_text(r).contains("slow"), "{r}");
        assert_eq!(of_type(&evs, "span.tool_execution_start").len(), 1);
        assert_eq!(result_text(of_type(&evs, "agent.message")[0]), "recovered");
        assert_eq!(rig.models.request_count(), 2, "[{kind}] no call repeated");
        assert_eq!(idles(&evs), ["end_turn"]);
        assert_eq!(
            of_type(&evs, "session.status_running").len(),
            1,
            "one turn, resumed"
        );
    }
}

#[test]
fn the_cli_starts_follows_and_answers_a_turn() {
    if !bwrap() {
        return;
    }
    let rig = Rig::new(
        "anthropic",
        vec![
            Reply::default()
                .tool_call("bash", json!({"command": "echo from-the-sandbox"}), 1)
                .into(),
            Reply::text(["All ", "done."]).into(),
        ],
    );
    rig.ok(
        "POST",
        "/v1/agents",
        Some(json!({"name": "asker", "model": "scripted/test-model",
            "tools": [{"type": "agent_toolset_20260401", "default_config": {"permission_policy": {"type": "always_ask"}}}]})),
    );
    let out = rig.serve().cli(&[
        "start", "--agent", "asker", "--prompt", "run it", "--follow",
    ]);
    let (stdout, stderr) = common::text(&out);
    // The turn pauses on the bash call: exit 4, and how to answer.
    assert_eq!(out.status.code(), Some(4), "{stdout}\n{stderr}");
    assert!(stdout.contains("you: run it"), "{stdout}");
    assert!(
        stdout.contains("bash") && stdout.contains("echo from-the-sandbox"),
        "{stdout}"
    );
    assert!(stderr.contains("sessions confirm"), "{stderr}");
    let sid = stderr
        .split_whitespace()
        .find(|w| w.starts_with("sesn_"))
        .expect("the session id is named")
        .trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string();
    let tool_use = of_type(&rig.events(&sid), "agent.tool_use")[0]["id"]
        .as_str()
        .expect("tool use id")
        .to_string();
    let out = rig.serve().cli(&[
        "sessions", "confirm", &sid, &tool_use, "--allow", "--follow",
    ]);
    let (stdout, stderr) = common::text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("from-the-sandbox"),
        "the tool result is shown: {stdout}"
    );
    assert!(stdout.contains("All done."), "{stdout}");
}

#[test]
fn a_pending_confirmation_survives_a_restart() {
    if !bwrap() {
        return;
    }
    for kind in KINDS {
        let mut rig = Rig::new(
            kind,
            vec![
                Reply::default()
                    .tool_call(
                        "bash",
                        json!({"command": "echo confirmed-after-restart"}),
                        1,
                    )
                    .into(),
                Reply::text(["ok"]).into(),
            ],
        );
        let sid = rig.session(json!({
            "tools": [{"type": "agent_toolset_20260401", "default_config": {"permission_policy": {"type": "always_ask"}}}]
        }));
        rig.say(&sid, "Run it, after asking.");
        let evs = rig.wait_idle(&sid, "requires_action", 1);
        let tool_use = of_type(&evs, "agent.tool_use")[0]["id"].clone();
        rig.serve.take().expect("serving").crash();
        rig.start();
        // Still waiting after the restart: nothing was re-emitted or run.
        std::thread::sleep(Duration::from_millis(500));
        let after = rig.events(&sid);
        assert_eq!(after.len(), evs.len(), "[{kind}] the restart wrote nothing");
        let session = rig.ok("GET", &format!("/v1/sessions/{sid}"), None);
        assert_eq!(session["status"], "idle");
        let (code, v) = rig.send(
            &sid,
            json!([{"type": "user.tool_confirmation", "tool_use_id": tool_use, "result": "allow"}]),
        );
        assert_eq!(code, 200, "{v}");
        let evs = rig.wait_idle(&sid, "end_turn", 1);
        assert_consistent(&evs);
        let r = of_type(&evs, "agent.tool_result")[0];
        assert_eq!(r["is_error"], false, "{r}");
        assert!(result_text(r).contains("confirmed-after-restart"), "{r}");
        assert_eq!(rig.models.request_count(), 2);
    }
}

#[test]
fn a_provider_key_can_come_from_a_vault() {
    let mut rig = Rig::new("anthropic", vec![Reply::text(["keyed"]).into()]);
    let vault = rig.ok(
        "POST",
        "/v1/vaults",
        Some(json!({"display_name": "providers"})),
    );
    let cred = rig.ok(
        "POST",
        &format!("/v1/vaults/{}/credentials", vault["id"].as_str().expect("id")),
        Some(json!({"auth": {"type": "static_bearer", "token": "sk-from-the-vault", "mcp_server_url": "https://unused.example"}})),
    );
    // The key is read from the vault at start.
    let (status, _) = rig.serve.take().expect("serving").terminate();
    assert!(status.success());
    let mut cfg = std::fs::read_to_string(&rig.config).expect("config");
    cfg.push_str(&format!(
        "\n[agent.provider_keys.scripted]\nvault_id = {:?}\ncredential_id = {:?}\n",
        vault["id"].as_str().expect("id"),
        cred["id"].as_str().expect("id"),
    ));
    std::fs::write(&rig.config, cfg).expect("config");
    rig.start();
    let sid = rig.session(json!({}));
    rig.say(&sid, "hello");
    rig.wait_idle(&sid, "end_turn", 1);
    let req = &rig.models.requests()[0];
    assert_eq!(
        req.header("x-api-key"),
        Some("sk-from-the-vault"),
        "the vault's key, not the environment's"
    );
    // A provider key naming a credential that does not exist stops the start.
    let mut cfg = std::fs::read_to_string(&rig.config).expect("config");
    cfg = cfg.replace(cred["id"].as_str().expect("id"), "vcrd_missing");
    std::fs::write(&rig.config, &cfg).expect("config");
    let (status, _) = rig.serve.take().expect("serving").terminate();
    assert!(status.success());
    let out = std::process::Command::new(common::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(rig.dir.path())
        .arg("--config")
        .arg(&rig.config)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("agent.provider_keys.scripted"), "{err}");
}

/// The usage the session reports is the sum of its model calls' spans.
fn assert_usage_is_the_sum_of_spans(rig: &Rig, sid: &str, evs: &[Value]) {
    let (mut input, mut output) = (0u64, 0u64);
    for e in of_type(evs, "span.model_request_end") {
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
        "{s}"
    );
}

#[test]
fn a_long_command_runs_through_two_restarts() {
    if !bwrap() {
        return;
    }
    let mut rig = Rig::new(
        "anthropic",
        vec![
            Reply::default()
                .tool_call(
                    "bash",
                    json!({"command": "sleep 5; echo done >> ran.txt; echo done"}),
                    1,
                )
                .usage(10, 1, 0, 0)
                .into(),
            Reply::text(["finished"]).usage(20, 2, 0, 0).into(),
        ],
    );
    let sid = rig.session(json!({"tool_profile": "full"}));
    rig.say(&sid, "Run the long thing.");
    rig.wait_for(&sid, 60, |e| {
        !of_type(e, "span.tool_execution_start").is_empty()
    });
    std::thread::sleep(Duration::from_millis(1000));
    rig.serve.take().expect("serving").crash();
    rig.start();
    std::thread::sleep(Duration::from_millis(1500));
    let (status, _) = rig.serve.take().expect("serving").terminate();
    assert!(status.success());
    rig.start();
    let evs = rig.wait_idle(&sid, "end_turn", 1);
    assert_consistent(&evs);
    let r = of_type(&evs, "agent.tool_result")[0];
    assert_eq!(r["is_error"], false, "{r}");
    assert!(result_text(r).contains("done"), "the whole output: {r}");
    assert_eq!(
        of_type(&evs, "span.tool_execution_start").len(),
        1,
        "sent once"
    );
    let rid = rig.runner_of(&sid);
    let (_, ran) = rig.call(
        "GET",
        &format!("/v1/runners/{rid}/files/read?path=ran.txt"),
        None,
    );
    assert_eq!(ran.as_str(), Some("done\n"), "it ran exactly once");
    assert_eq!(result_text(of_type(&evs, "agent.message")[0]), "finished");
    assert_eq!(rig.models.request_count(), 2, "no model call repeated");
    assert_usage_is_the_sum_of_spans(&rig, &sid, &evs);
}

#[test]
fn a_model_call_cut_off_by_a_crash_is_made_again_once() {
    if !bwrap() {
        return;
    }
    for kind in KINDS {
        let mut rig = Rig::new(
            kind,
            vec![
                Turn::hang(),
                Reply::text(["the answer"]).usage(30, 3, 0, 0).into(),
            ],
        );
        let sid = rig.session(json!({}));
        rig.say(&sid, "Think.");
        rig.wait_for(&sid, 60, |e| {
            !of_type(e, "span.model_request_start").is_empty()
        });
        // The span opens before the request is sent: crash once the provider has it (a
        // crash before it did would make the repeat the first call the script sees).
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while rig.models.request_count() < 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "[{kind}] the model call never reached the provider"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        rig.serve.take().expect("serving").crash();
        rig.start();
        let evs = rig.wait_idle(&sid, "end_turn", 1);
        assert_consistent(&evs);
        assert!(
            of_type(&evs, "session.error").is_empty(),
            "[{kind}] {evs:#?}"
        );
        let ends = of_type(&evs, "span.model_request_end");
        assert_eq!(ends.len(), 2, "{evs:#?}");
        assert_eq!(
            ends[0]["is_error"], true,
            "the lost call is closed as failed"
        );
        assert_eq!(ends[1]["is_error"], false);
        assert_eq!(result_text(of_type(&evs, "agent.message")[0]), "the answer");
        assert_eq!(rig.models.request_count(), 2, "[{kind}] repeated once");
        assert_eq!(
            of_type(&evs, "session.status_running").len(),
            1,
            "one turn, resumed"
        );
        assert_usage_is_the_sum_of_spans(&rig, &sid, &evs);
    }
}

#[test]
fn sigterm_lets_a_model_call_finish_and_the_turn_goes_on_after() {
    if !bwrap() {
        return;
    }
    let mut rig = Rig::new(
        "anthropic",
        vec![
            Reply::text(["Running ", "it."])
                .delays(Duration::from_millis(1500), Duration::from_millis(100))
                .tool_call("bash", json!({"command": "echo drained"}), 1)
                .usage(10, 1, 0, 0)
                .into(),
            Reply::text(["all good"]).usage(20, 2, 0, 0).into(),
        ],
    );
    let sid = rig.session(json!({"tool_profile": "full"}));
    rig.say(&sid, "Go.");
    rig.wait_for(&sid, 60, |e| {
        !of_type(e, "span.model_request_start").is_empty()
    });
    let mut serve = rig.serve.take().expect("serving");
    let url = serve.url.clone();
    let pid = serve.child.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    // While it drains, the health check says so.
    std::thread::sleep(Duration::from_millis(200));
    let (code, health) = http("GET", &format!("{url}/healthz"), None);
    assert_eq!(
        (code, health["status"].as_str()),
        (503, Some("draining")),
        "{health}"
    );
    // One signal only (a second one exits at once): wait for the exit.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = serve.child.try_wait().expect("wait") {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "paddock serve did not exit after draining"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "a clean exit after the drain");
    // The model call finished before the exit: its answer is in the log.
    rig.start();
    let evs = rig.wait_idle(&sid, "end_turn", 1);
    assert_consistent(&evs);
    let ends = of_type(&evs, "span.model_request_end");
    assert!(ends.iter().all(|e| e["is_error"] == false), "{evs:#?}");
    assert!(result_text(of_type(&evs, "agent.tool_result")[0]).contains("drained"));
    assert_eq!(rig.models.request_count(), 2, "no model call repeated");
    assert_eq!(
        result_text(of_type(&evs, "agent.message").last().expect("answer")),
        "all good"
    );
}
