//! The v1 API end to end: a real server on an ephemeral port over a real SQLite file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{tempdir, Sse, TestServer};
use paddock_core::lifecycle::RunnerState;
use paddock_core::runner::{Isolation, Runner};
use paddock_core::{id, ts};
use paddock_store::Store;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn agents_version_on_change_and_refuse_stale_updates() {
    let (_d, dir) = tempdir();
    let s = TestServer::start(&dir).await;
    let a = s
        .ok(
            "/v1/agents",
            json!({"name": "a", "model": "m", "system": "one", "metadata": {"k": "v"}}),
        )
        .await;
    let id = a["id"].as_str().expect("id");
    assert!(id.starts_with("agent_"));
    assert_eq!(a["type"], "agent");
    assert_eq!(a["version"], 1);
    assert_eq!(
        a["model"],
        json!({"id": "m", "effort": null, "inference_geo": null, "speed": "standard"})
    );
    assert_eq!(a["execution_identity"], json!({"type": "service_account"}));
    assert_eq!(a["harness"], "builtin");

    let b = s
        .ok(
            &format!("/v1/agents/{id}"),
            json!({"version": 1, "system": "two"}),
        )
        .await;
    assert_eq!(b["version"], 2);
    assert_eq!(b["system"], "two");
    assert_eq!(b["metadata"], json!({"k": "v"}), "omitted fields are kept");

    // An update that changes nothing makes no new version.
    let same = s
        .ok(
            &format!("/v1/agents/{id}"),
            json!({"system": "two", "name": "a"}),
        )
        .await;
    assert_eq!(same["version"], 2);

    // A stale version is a 409 the SDK must not retry.
    let resp = s
        .http
        .post(s.url(&format!("/v1/agents/{id}")))
        .json(&json!({"version": 1, "system": "three"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 409);
    assert_eq!(resp.headers()["x-should-retry"], "false");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "conflict_error");
    assert_eq!(body["error"]["details"]["error_code"], "version_conflict");
    assert!(body["request_id"]
        .as_str()
        .is_some_and(|r| r.starts_with("req_")));

    let (st, v1) = s.get(&format!("/v1/agents/{id}?version=1")).await;
    assert_eq!(st, 200);
    assert_eq!(v1["system"], "one");
    let (st, latest) = s.get(&format!("/v1/agents/{id}")).await;
    assert_eq!((st, latest["version"].clone()), (200, json!(2)));
    let (st, _) = s.get(&format!("/v1/agents/{id}?version=3")).await;
    assert_eq!(st, 404);

    let (_, versions) = s.get(&format!("/v1/agents/{id}/versions")).await;
    let vs: Vec<i64> = versions["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|a| a["version"].as_i64().expect("v"))
        .collect();
    assert_eq!(vs, [2, 1]);
    assert_eq!(versions["next_page"], Value::Null);

    // Archived agents take no new sessions but stay readable.
    let env = s.environment().await;
    let arch = s.ok(&format!("/v1/agents/{id}/archive"), json!({})).await;
    assert!(arch["archived_at"].is_string());
    let (st, err) = s
        .post(
            "/v1/sessions",
            json!({"agent": id, "environment_id": env["id"]}),
        )
        .await;
    assert_eq!(st, 400, "{err}");
    assert_eq!(err["error"]["details"]["error_code"], "agent_archived");
    let (_, list) = s.get("/v1/agents").await;
    assert!(list["data"]
        .as_array()
        .expect("data")
        .iter()
        .all(|a| a["id"] != id));
    let (_, list) = s.get("/v1/agents?include_archived=true").await;
    assert!(list["data"]
        .as_array()
        .expect("data")
        .iter()
        .any(|a| a["id"] == id));

    // Paddock's hard delete.
    let (st, del) = s.call("DELETE", &format!("/v1/agents/{id}"), None).await;
    assert_eq!((st, del["type"].clone()), (200, json!("agent_deleted")));
    let (st, _) = s.get(&format!("/v1/agents/{id}")).await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn environments_crud_and_delete_guard() {
    let (_d, dir) = tempdir();
    let s = TestServer::start(&dir).await;
    let e = s
        .ok(
            "/v1/environments",
            json!({"name": "e", "config": {"type": "cloud", "networking": {"type": "limited", "allowed_hosts": ["pypi.org"], "allow_package_managers": true}, "packages": {"pip": ["requests"]}},
                   "runbook": "paddock-base", "backend": "local", "env": {"FOO": "bar"}, "resource_limits": {"cpu": 1.5, "memory_mb": 512}}),
        )
        .await;
    let eid = e["id"].as_str().expect("id");
    assert!(eid.starts_with("env_"));
    assert_eq!(e["config"]["packages"]["npm"], json!([]));
    assert_eq!(e["config"]["networking"]["allow_mcp_servers"], false);
    assert_eq!(e["resource_limits"]["memory_mb"], 512);

    let u = s
        .ok(
            &format!("/v1/environments/{eid}"),
            json!({"name": "renamed", "description": "d", "env": {"FOO": null, "BAR": "1"}}),
        )
        .await;
    assert_eq!(u["name"], "renamed");
    assert_eq!(
        u["config"]["packages"]["pip"],
        json!(["requests"]),
        "config kept"
    );
    assert_eq!(u["env"], json!({"BAR": "1"}));

    let (st, err) = s
        .post(
            &format!("/v1/environments/{eid}"),
            json!({"config": {"type": "self_hosted"}}),
        )
        .await;
    assert_eq!(st, 400);
    assert_eq!(
        err["error"]["details"]["error_code"],
        "invalid_config_type_change"
    );

    let a = s.agent().await;
    let sess = s
        .ok(
            "/v1/sessions",
            json!({"agent": a["id"], "environment_id": eid}),
        )
        .await;
    let (st, err) = s
        .call("DELETE", &format!("/v1/environments/{eid}"), None)
        .await;
    assert_eq!(st, 409, "{err}");
    assert!(err["error"]["message"]
        .as_str()
        .expect("msg")
        .contains("live session"));
    s.ok(
        &format!("/v1/sessions/{}/archive", sess["id"].as_str().expect("id")),
        json!({}),
    )
    .await;

    let arch = s
        .ok(&format!("/v1/environments/{eid}/archive"), json!({}))
        .await;
    assert!(arch["archived_at"].is_string());
    let (st, err) = s
        .post(&format!("/v1/environments/{eid}"), json!({"name": "x"}))
        .await;
    assert_eq!(
        (st, err["error"]["details"]["error_code"].clone()),
        (400, json!("environment_archived"))
    );
    let (st, err) = s
        .post(
            "/v1/sessions",
            json!({"agent": a["id"], "environment_id": eid}),
        )
        .await;
    assert_eq!(
        (st, err["error"]["details"]["error_code"].clone()),
        (400, json!("environment_archived"))
    );

    let (st, del) = s
        .call("DELETE", &format!("/v1/environments/{eid}"), None)
        .await;
    assert_eq!(
        (st, del),
        (200, json!({"id": eid, "type": "environment_deleted"}))
    );
    let (st, err) = s.get(&format!("/v1/environments/{eid}")).await;
    assert_eq!(
        (st, err["error"]["details"]["error_code"].clone()),
        (404, json!("environment_not_found"))
    );
}

#[tokio::test]
async fn sessions_pin_versions_filter_and_page_both_ways() {
    let (_d, dir) = tempdir();
    let s = TestServer::start(&dir).await;
    let a = s.agent().await;
    let aid = a["id"].as_str().expect("id").to_string();
    let e = s.environment().await;
    let eid = e["id"].clone();

    let first = s
        .ok(
            "/v1/sessions",
            json!({"agent": aid, "environment_id": eid, "title": "t0", "metadata": {"n": "0"}}),
        )
        .await;
    assert!(first["id"].as_str().expect("id").starts_with("sesn_"));
    assert_eq!(first["status"], "idle");
    assert_eq!(first["agent"]["version"], 1);
    assert_eq!(first["vault_ids"], json!([]));
    assert_eq!(
        first["usage"]["list_cost"],
        json!({"amount": "0", "currency": "USD"})
    );

    s.ok(&format!("/v1/agents/{aid}"), json!({"system": "v2"}))
        .await;
    let mut ids = vec![first["id"].as_str().expect("id").to_string()];
    for i in 1..5 {
        let v = s
            .ok(
                "/v1/sessions",
                json!({"agent": aid, "environment_id": eid, "title": format!("t{i}")}),
            )
            .await;
        assert_eq!(
            v["agent"]["version"], 2,
            "a bare id pins the latest version"
        );
        ids.push(v["id"].as_str().expect("id").to_string());
    }
    let pinned = s
        .ok(
            "/v1/sessions",
            json!({"agent": {"type": "agent", "id": aid, "version": 1}, "environment_id": eid}),
        )
        .await;
    assert_eq!(pinned["agent"]["version"], 1);
    assert_eq!(pinned["agent"]["system"], Value::Null);
    let overridden = s
        .ok("/v1/sessions", json!({"agent": {"type": "agent_with_overrides", "id": aid, "version": 1, "system": "custom", "model": "other"}, "environment_id": eid}))
        .await;
    assert_eq!(overridden["agent"]["system"], "custom");
    assert_eq!(overridden["agent"]["model"]["id"], "other");
    let (_, stored) = s
        .get(&format!(
            "/v1/sessions/{}",
            first["id"].as_str().expect("id")
        ))
        .await;
    assert_eq!(
        stored["agent"]["version"], 1,
        "a session keeps the version it was created with"
    );

    // Filters: agent_version, and desc (default) vs asc order.
    let (_, v2) = s
        .get(&format!(
            "/v1/sessions?agent_id={aid}&agent_version=2&limit=100"
        ))
        .await;
    assert_eq!(v2["data"].as_array().expect("data").len(), 4);
    let (st, _) = s
        .get("/v1/sessions?statuses[]=idle&statuses[]=running")
        .await;
    assert_eq!(st, 200);
    let (st, err) = s.get("/v1/sessions?statuses[]=sleeping").await;
    assert_eq!(st, 400);
    assert!(err["error"]["message"]
        .as_str()
        .expect("msg")
        .starts_with("statuses[]"));
    let (_, none) = s.get("/v1/sessions?statuses[]=running").await;
    assert_eq!(none["data"], json!([]));
    // Paddock has no deployments: that filter matches nothing, with the other parameters still checked.
    let (st, none) = s
        .get("/v1/sessions?deployment_id=dep_x&limit=5&include_archived=true")
        .await;
    assert_eq!(
        (st, none["data"].clone(), none["next_page"].clone()),
        (200, json!([]), Value::Null)
    );

    // Walk forward two at a time in ascending order, then back with prev_page.
    let mut seen = vec![];
    let mut pages = vec![];
    let mut q = format!("/v1/sessions?agent_id={aid}&agent_version=2&order=asc&limit=2");
    loop {
        let (st, page) = s.get(&q).await;
        assert_eq!(st, 200, "{page}");
        seen.extend(
            page["data"]
                .as_array()
                .expect("data")
                .iter()
                .map(|x| x["id"].as_str().expect("id").to_string()),
        );
        pages.push(page.clone());
        match page["next_page"].as_str() {
            Some(n) => {
                q = format!(
                    "/v1/sessions?agent_id={aid}&agent_version=2&order=asc&limit=2&page={n}"
                )
            }
            None => break,
        }
    }
    assert_eq!(seen, ids[1..].to_vec());
    assert_eq!(pages[0]["prev_page"], Value::Null);
    let prev = pages[1]["prev_page"]
        .as_str()
        .expect("second page has a prev_page");
    let (_, back) = s
        .get(&format!(
            "/v1/sessions?agent_id={aid}&agent_version=2&order=asc&limit=2&page={prev}"
        ))
        .await;
    let ids_of = |v: &Value| -> Vec<String> {
        v["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|x| x["id"].as_str().expect("id").to_string())
            .collect()
    };
    assert_eq!(ids_of(&back), ids_of(&pages[0]));

    // Default order is newest first.
    let (_, desc) = s
        .get(&format!(
            "/v1/sessions?agent_id={aid}&agent_version=2&limit=100"
        ))
        .await;
    let got: Vec<&str> = desc["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|x| x["id"].as_str().expect("id"))
        .collect();
    let mut expect: Vec<&str> = ids[1..].iter().map(String::as_str).collect();
    expect.reverse();
    assert_eq!(got, expect);

    // Update emits session.updated with only the changed fields.
    let sid = ids[0].clone();
    let u = s
        .ok(
            &format!("/v1/sessions/{sid}"),
            json!({"title": "renamed", "metadata": {"n": null, "m": "1"}}),
        )
        .await;
    assert_eq!(u["title"], "renamed");
    assert_eq!(u["metadata"], json!({"m": "1"}));
    let evs = s.all_events(&sid).await;
    let last = evs.last().expect("an event");
    assert_eq!(last["type"], "session.updated");
    assert_eq!(last["title"], "renamed");
    assert!(last.get("budget").is_none());

    // Archive hides it; delete removes it and its events.
    s.ok(&format!("/v1/sessions/{sid}/archive"), json!({}))
        .await;
    let (st, err) = s
        .post(
            &format!("/v1/sessions/{sid}/events"),
            json!({"events": [{"type": "user.interrupt"}]}),
        )
        .await;
    assert_eq!(st, 409, "{err}");
    let (st, del) = s.call("DELETE", &format!("/v1/sessions/{sid}"), None).await;
    assert_eq!((st, del["type"].clone()), (200, json!("session_deleted")));
    let (st, _) = s.get(&format!("/v1/sessions/{sid}/events")).await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn bad_input_gets_a_4xx_that_names_the_problem() {
    let (_d, dir) = tempdir();
    let s = TestServer::start(&dir).await;
    let sess = s.session().await;
    let sid = sess["id"].as_str().expect("id");
    let cases: Vec<(&str, String, Value, u16, &str)> = vec![
        (
            "POST",
            "/v1/agents".into(),
            json!({"name": "a", "model": "m", "colour": "red"}),
            400,
            "colour",
        ),
        (
            "POST",
            "/v1/agents".into(),
            json!({"model": "m"}),
            400,
            "name",
        ),
        (
            "POST",
            "/v1/agents".into(),
            json!({"name": 5, "model": "m"}),
            400,
            "name",
        ),
        (
            "POST",
            "/v1/agents".into(),
            json!({"name": "a", "model": "m", "metadata": {"k": 1}}),
            400,
            "metadata.k",
        ),
        (
            "POST",
            "/v1/agents".into(),
            json!({"name": "a", "model": "m", "tools": [{"type": "hammer"}]}),
            400,
            "tools[0]",
        ),
        // Inside a tagged union the error names the union's field and the bad value.
        (
            "POST",
            "/v1/environments".into(),
            json!({"name": "e", "config": {"type": "cloud", "networking": {"type": "open"}}}),
            400,
            "config: unknown variant `open`",
        ),
        (
            "POST",
            "/v1/environments".into(),
            json!({"name": "e", "config": {"type": "cloud", "networking": {"type": "limited", "allowed_hosts": ["ftp://x"]}}}),
            400,
            "config.networking.allowed_hosts[0]",
        ),
        (
            "POST",
            "/v1/sessions".into(),
            json!({"agent": "agent_nope", "environment_id": "env_nope"}),
            404,
            "agent",
        ),
        (
            "POST",
            "/v1/sessions".into(),
            json!({"agent": sess["agent"]["id"], "environment_id": "env_nope"}),
            404,
            "environment",
        ),
        (
            "POST",
            "/v1/sessions".into(),
            json!({"agent": sess["agent"]["id"], "environment_id": sess["environment_id"], "budget": {"type": "limit", "max_list_cost": {"amount": "lots", "currency": "USD"}}}),
            400,
            "budget.max_list_cost.amount",
        ),
        (
            "POST",
            "/v1/sessions".into(),
            json!({"agent": sess["agent"]["id"], "environment_id": sess["environment_id"], "vault_ids": ["vlt_x"]}),
            404,
            "vault_ids[0]",
        ),
        (
            "POST",
            format!("/v1/sessions/{sid}/events"),
            json!({"events": []}),
            400,
            "events",
        ),
        (
            "POST",
            format!("/v1/sessions/{sid}/events"),
            json!({"events": [{"type": "user.message", "content": "hi"}]}),
            400,
            "events[0]",
        ),
        (
            "POST",
            format!("/v1/sessions/{sid}/events"),
            json!({"events": [{"type": "agent.message", "content": []}]}),
            400,
            "events[0]",
        ),
        (
            "POST",
            format!("/v1/sessions/{sid}/events"),
            json!({"events": [{"type": "user.tool_confirmation", "tool_use_id": "evt_nope", "result": "allow"}]}),
            400,
            "events[0].tool_use_id",
        ),
        (
            "POST",
            format!("/v1/sessions/{sid}/events"),
            json!({"events": [{"type": "user.custom_tool_result", "custom_tool_use_id": "evt_nope"}]}),
            400,
            "events[0].custom_tool_use_id",
        ),
        (
            "POST",
            "/v1/sessions/sesn_nope/events".into(),
            json!({"events": [{"type": "user.interrupt"}]}),
            404,
            "session",
        ),
        (
            "POST",
            format!("/v1/sessions/{sid}"),
            json!({"vault_ids": []}),
            400,
            "vault_ids",
        ),
        (
            "GET",
            "/v1/agents?limit=1000".into(),
            Value::Null,
            400,
            "limit",
        ),
        (
            "GET",
            "/v1/agents?page=garbage".into(),
            Value::Null,
            400,
            "page",
        ),
        (
            "GET",
            "/v1/agents?created_at[gte]=yesterday".into(),
            Value::Null,
            400,
            "created_at[gte]",
        ),
        (
            "GET",
            "/v1/agents?colour=red".into(),
            Value::Null,
            400,
            "colour",
        ),
        (
            "GET",
            format!("/v1/sessions/{sid}/events/stream?after=evt_nope"),
            Value::Null,
            400,
            "after",
        ),
        (
            "GET",
            "/v1/runners/run_nope".into(),
            Value::Null,
            404,
            "runner",
        ),
        ("PUT", "/v1/agents".into(), Value::Null, 405, "PUT"),
        ("GET", "/v2/agents".into(), Value::Null, 404, "route"),
    ];
    for (method, path, body, status, needle) in cases {
        let body = if body.is_null() { None } else { Some(body) };
        let (st, v) = s.call(method, &path, body.clone()).await;
        assert_eq!(st, status, "{method} {path} {body:?}: {v}");
        assert_eq!(v["type"], "error", "{v}");
        let msg = v["error"]["message"].as_str().unwrap_or("");
        assert!(
            msg.contains(needle),
            "{method} {path}: message {msg:?} should name {needle:?}"
        );
    }

    // Malformed JSON and oversize bodies.
    let resp = s
        .http
        .post(s.url("/v1/agents"))
        .body("{\"name\": ")
        .header("content-type", "application/json")
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 400);
    let v: Value = resp.json().await.expect("json");
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("msg")
            .contains("malformed JSON"),
        "{v}"
    );
    let huge = json!({"name": "a", "model": "m", "system": "x".repeat(100 * 1024)});
    let (st, v) = s.post("/v1/agents", huge).await;
    assert_eq!(st, 413, "{v}");
    assert_eq!(v["error"]["details"]["error_code"], "request_too_large");

    // Nothing was half-written: only the one agent of the fixture exists.
    let (_, agents) = s.get("/v1/agents?include_archived=true").await;
    assert_eq!(agents["data"].as_array().expect("data").len(), 1);
    assert_eq!(s.all_events(sid).await.len(), 0);
}

#[tokio::test]
async fn idempotency_keys_make_retries_safe() {
    let (_d, dir) = tempdir();
    let s = TestServer::start(&dir).await;
    let sess = s.session().await;
    let sid = sess["id"].as_str().expect("id");
    let body = json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "once"}]}]});
    let send = |b: Value| {
        s.http
            .post(s.url(&format!("/v1/sessions/{sid}/events")))
            .header("Idempotency-Key", "k-1")
            .json(&b)
            .send()
    };
    let r1 = send(body.clone()).await.expect("sent");
    assert_eq!(r1.status().as_u16(), 200);
    assert!(r1.headers().get("idempotent-replayed").is_none());
    let v1: Value = r1.json().await.expect("json");
    let r2 = send(body.clone()).await.expect("sent");
    assert_eq!(r2.status().as_u16(), 200);
    assert_eq!(r2.headers()["idempotent-replayed"], "true");
    let v2: Value = r2.json().await.expect("json");
    assert_eq!(v1, v2);
    assert_eq!(
        s.all_events(sid).await.len(),
        1,
        "the retry appended nothing"
    );

    let other = json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "different"}]}]});
    let r3 = send(other).await.expect("sent");
    assert_eq!(r3.status().as_u16(), 409);
    let v3: Value = r3.json().await.expect("json");
    assert_eq!(
        v3["error"]["details"]["error_code"],
        "idempotency_key_reused"
    );
    assert_eq!(s.all_events(sid).await.len(), 1);
}

#[tokio::test]
async fn tool_confirmations_must_answer_a_pending_tool_use_once() {
    use paddock_core::event::NewEvent;
    use paddock_store::Append;
    let (_d, dir) = tempdir();
    let s = TestServer::start(&dir).await;
    let sess = s.session().await;
    let sid = sess["id"].as_str().expect("id");
    // The agent loop (a later issue) writes tool uses; here the store writes one directly.
    let appended = s
        .store
        .append_events(
            sid,
            Append {
                events: vec![NewEvent::new(
                    "agent.tool_use",
                    json!({"name": "bash", "input": {"command": "ls"}, "evaluated_permission": "ask"}),
                )],
                ..Append::default()
            },
        )
        .await
        .expect("appended");
    let tool_use = appended.events[0].id.clone();
    let confirm = json!({"events": [{"type": "user.tool_confirmation", "tool_use_id": tool_use, "result": "deny", "deny_message": "not now"}]});
    let (st, v) = s
        .post(&format!("/v1/sessions/{sid}/events"), confirm.clone())
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"][0]["deny_message"], "not now");
    let (st, v) = s.post(&format!("/v1/sessions/{sid}/events"), confirm).await;
    assert_eq!(st, 409, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .expect("msg")
        .contains("already been answered"));
}

#[tokio::test]
async fn streams_replay_follow_resume_and_never_repeat() {
    let (_d, dir) = tempdir();
    let s = TestServer::start(&dir).await;
    let a = s.agent().await;
    let e = s.environment().await;
    let sess = s
        .ok(
            "/v1/sessions",
            json!({"agent": a["id"], "environment_id": e["id"], "initial_events": [
                {"type": "user.message", "content": [{"type": "text", "text": "m0"}]}
            ]}),
        )
        .await;
    let sid = sess["id"].as_str().expect("id").to_string();
    s.send_text(&sid, "m1").await;

    // Replay from the start, then follow live.
    let url = s.url(&format!("/v1/sessions/{sid}/events/stream"));
    let mut a1 = Sse::open(s.http.get(&url).query(&[("after", "start")])).await;
    let mut got = vec![];
    for _ in 0..2 {
        let f = a1.event(WAIT).await.expect("replayed frame");
        assert_eq!(f.event.as_deref(), Some("user.message"));
        assert_eq!(
            f.id.as_deref(),
            f.json()["id"].as_str(),
            "SSE id is the event id"
        );
        got.push(f.json());
    }
    s.send_text(&sid, "m2").await;
    let live = a1.event(WAIT).await.expect("live frame");
    got.push(live.json());
    // Keep-alives arrive while idle (configured at 1 s).
    let ka = a1.frame(Duration::from_secs(3)).await.expect("keep-alive");
    assert!(ka.comment, "{ka:?}");
    drop(a1);

    // Events sent while disconnected are delivered on resume, from Last-Event-ID.
    s.send_text(&sid, "m3").await;
    s.send_text(&sid, "m4").await;
    let last_id = got.last().expect("one")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let mut a2 = Sse::open(s.http.get(&url).header("Last-Event-ID", &last_id)).await;
    for _ in 0..2 {
        got.push(a2.event(WAIT).await.expect("resumed frame").json());
    }
    assert!(
        a2.event(Duration::from_millis(300)).await.is_none(),
        "nothing repeated or extra"
    );

    let texts: Vec<&str> = got
        .iter()
        .map(|e| e["content"][0]["text"].as_str().expect("text"))
        .collect();
    assert_eq!(texts, ["m0", "m1", "m2", "m3", "m4"]);
    let listed = s.all_events(&sid).await;
    assert_eq!(got, listed, "the stream and the list agree exactly");

    // A stream opened without a cursor starts at the end: only new events.
    let mut fresh = Sse::open(s.http.get(&url)).await;
    s.send_text(&sid, "m5").await;
    let f = fresh.event(WAIT).await.expect("new event");
    assert_eq!(f.json()["content"][0]["text"], "m5");

    // `?after=` resumes too, and deleting the session ends every stream.
    let mut a3 = Sse::open(s.http.get(&url).query(&[("after", last_id.as_str())])).await;
    assert_eq!(
        a3.event(WAIT).await.expect("m3").json()["content"][0]["text"],
        "m3"
    );
    let (st, _) = s.call("DELETE", &format!("/v1/sessions/{sid}"), None).await;
    assert_eq!(st, 200);
    let mut kinds = vec![];
    while let Some(f) = fresh.event(WAIT).await {
        kinds.push(f.event.expect("event name"));
    }
    assert_eq!(kinds, ["session.deleted"]);
}

#[tokio::test]
async fn many_writers_make_one_gap_free_log() {
    let (_d, dir) = tempdir();
    let s = TestServer::start(&dir).await;
    let sess = s.session().await;
    let sid = sess["id"].as_str().expect("id").to_string();
    let url = s.url(&format!("/v1/sessions/{sid}/events/stream"));
    let mut watcher = Sse::open(s.http.get(&url).query(&[("after", "start")])).await;

    let (writers, per_writer) = (16, 15);
    let mut tasks = vec![];
    for w in 0..writers {
        let http = s.http.clone();
        let u = s.url(&format!("/v1/sessions/{sid}/events"));
        tasks.push(tokio::spawn(async move {
            for i in 0..per_writer {
                let body = json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": format!("{w}-{i}")}]}]});
                let r = http.post(&u).json(&body).send().await.expect("sent");
                assert_eq!(r.status().as_u16(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer finished");
    }
    let total = writers * per_writer;
    let listed = s.all_events(&sid).await;
    assert_eq!(listed.len(), total);
    let ids: HashSet<&str> = listed
        .iter()
        .map(|e| e["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids.len(), total, "ids are unique");
    // Each writer's messages appear in the order it sent them.
    for w in 0..writers {
        let mine: Vec<String> = listed
            .iter()
            .filter_map(|e| e["content"][0]["text"].as_str())
            .filter(|t| t.starts_with(&format!("{w}-")))
            .map(str::to_string)
            .collect();
        let expect: Vec<String> = (0..per_writer).map(|i| format!("{w}-{i}")).collect();
        assert_eq!(mine, expect);
    }
    let mut streamed = vec![];
    while streamed.len() < total {
        streamed.push(watcher.event(WAIT).await.expect("streamed").json());
    }
    assert_eq!(
        streamed, listed,
        "the live stream saw the same log, in order, without gaps"
    );
}

#[tokio::test]
async fn data_survives_a_restart_and_shutdown_ends_streams() {
    let (_d, dir) = tempdir();
    let s = TestServer::start(&dir).await;
    let sess = s.session().await;
    let sid = sess["id"].as_str().expect("id").to_string();
    let sent = s.send_text(&sid, "before restart").await;
    let mut stream = Sse::open(
        s.http
            .get(s.url(&format!("/v1/sessions/{sid}/events/stream"))),
    )
    .await;
    // A graceful shutdown must not wait forever on an open stream.
    s.stop().await;
    assert!(stream.event(WAIT).await.is_none(), "the stream ended");

    let s2 = TestServer::start(&dir).await;
    let (st, again) = s2.get(&format!("/v1/sessions/{sid}")).await;
    assert_eq!(st, 200);
    assert_eq!(again["agent"]["id"], sess["agent"]["id"]);
    let evs = s2.all_events(&sid).await;
    assert_eq!(evs, vec![sent.clone()]);
    // The sequence continues after the restart.
    let next = s2.send_text(&sid, "after restart").await;
    let evs = s2.all_events(&sid).await;
    assert_eq!(evs, vec![sent, next]);
}

#[tokio::test]
async fn runners_are_listed_and_filtered() {
    let (_d, dir) = tempdir();
    let s = TestServer::start(&dir).await;
    let now = ts::now();
    let mk = |state: RunnerState, backend: &str| Runner {
        id: id::new(id::RUNNER),
        kind: "runner".into(),
        state,
        backend: backend.into(),
        isolation: if backend == "local" {
            Isolation::Namespaces
        } else {
            Isolation::Container
        },
        execution_profile: Some("default".into()),
        environment_id: None,
        session_id: None,
        error: None,
        image: None,
        network: Default::default(),
        limits: Default::default(),
        enforced: Value::Null,
        seccomp: Default::default(),
        env: Default::default(),
        reason: None,
        started_at: None,
        last_activity_at: None,
        idle_timeout_secs: None,
        budget: None,
        pending_restart: vec![],
        warm: false,
        created_at: now,
        updated_at: now,
    };
    let r1 = s
        .store
        .insert_runner(mk(RunnerState::Running, "local"))
        .await
        .expect("insert")
        .runner;
    let r2 = s
        .store
        .insert_runner(mk(RunnerState::Errored, "docker"))
        .await
        .expect("insert")
        .runner;
    let (st, one) = s.get(&format!("/v1/runners/{}", r1.id)).await;
    assert_eq!(st, 200);
    assert_eq!(one["type"], "runner");
    assert_eq!(one["state"], "running");
    assert_eq!(one["isolation"], "namespaces");
    let (_, all) = s.get("/v1/runners").await;
    let ids: Vec<&str> = all["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|r| r["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, [r2.id.as_str(), r1.id.as_str()], "newest first");
    let (_, errored) = s.get("/v1/runners?states[]=errored").await;
    assert_eq!(errored["data"].as_array().expect("data").len(), 1);
    assert_eq!(errored["data"][0]["id"], r2.id.as_str());
    let (_, local) = s.get("/v1/runners?backend=local").await;
    assert_eq!(local["data"][0]["id"], r1.id.as_str());
}

#[tokio::test]
async fn meta_routes_describe_the_api() {
    let (_d, dir) = tempdir();
    let s = TestServer::start(&dir).await;
    let (st, h) = s.get("/healthz").await;
    assert_eq!((st, h), (200, json!({"status": "ok"})));
    let (_, index) = s.get("/").await;
    let endpoints = index["endpoints"].as_array().expect("endpoints");
    assert_eq!(endpoints.len(), paddock_server::route_table().len());
    assert!(endpoints
        .contains(&json!({"method": "GET", "path": "/v1/sessions/{session_id}/events/stream"})));
    let (st, doc) = s.get("/openapi.json").await;
    assert_eq!(st, 200);
    assert!(doc["openapi"].as_str().expect("version").starts_with("3."));
    let resp = s.http.get(s.url("/healthz")).send().await.expect("sent");
    assert!(resp.headers()["request-id"]
        .to_str()
        .expect("ascii")
        .starts_with("req_"));
}

/// Bad uid ranges stop the server with the key named: an empty or overflowing range, a
/// range that holds a host user (root is uid 0), and two backends' ranges that overlap.
#[tokio::test]
async fn bad_uid_ranges_are_refused_naming_the_key() {
    for (local, docker, key) in [
        (vec![5, 0], vec![], "local.uid_range"),
        (vec![u32::MAX, 2], vec![], "local.uid_range"),
        (vec![0, 10], vec![], "local.uid_range"),
        (vec![], vec![1, 2, 3], "docker.uid_range"),
        (vec![400_000, 100], vec![400_050, 100], "docker.uid_range"),
    ] {
        let (_keep, dir) = tempdir();
        let mut cfg = common::config(&dir);
        cfg.local.uid_range = local.clone();
        cfg.docker.uid_range = docker.clone();
        let err = match paddock_server::Server::bind(cfg).await {
            Ok(_) => panic!("{local:?} / {docker:?} was accepted"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(key), "{local:?} / {docker:?}: {err}");
    }
}
