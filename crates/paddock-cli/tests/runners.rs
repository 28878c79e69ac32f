//! Runners through the real `paddock serve` process and CLI, with real bubblewrap:
//! `paddock run`, the runner API, capacity, provisioning failures, adoption across a
//! restart, runners lost while the orchestrator was down, and orphan sweeping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{bwrap, data_dir, http, text, Serve};
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

const CONFIG: &str = r#"
[profiles.default]
pids = 128
memory_mb = 512

[profiles.open]
network = "unrestricted"

[profiles.tiny]
max_runners = 1
"#;

fn config(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let p = dir.join("paddock.toml");
    std::fs::write(&p, format!("{CONFIG}\n{extra}")).expect("config");
    p
}

#[test]
fn paddock_run_streams_output_and_exits_with_the_command() {
    if !bwrap() {
        return;
    }
    let d = data_dir();
    let s = Serve::start_with(d.path(), Some(&config(d.path(), "")));
    let out = s.cli(&["run", "--", "sh", "-c", "echo out; echo err >&2; exit 7"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(7), "{stdout} {stderr}");
    assert_eq!(stdout, "out\n");
    assert!(stderr.contains("err"), "{stderr}");
    // The run hands its runner to a background teardown (202 destroying) and exits.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let all = s.json(&["runners", "list"]);
        if all[0]["state"] == "destroyed" {
            break;
        }
        assert_eq!(all[0]["state"], "destroying", "run cleans up: {all}");
        assert!(std::time::Instant::now() < deadline, "run cleans up: {all}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    let kept = s.cli(&["run", "--keep", "--profile", "open", "--", "true"]);
    let (_, stderr) = text(&kept);
    assert_eq!(kept.status.code(), Some(0), "{stderr}");
    let id = stderr
        .split_whitespace()
        .find(|w| w.starts_with("run_"))
        .expect("the kept runner's id is printed")
        .to_string();
    let r = s.json(&["runners", "get", &id]);
    assert_eq!(
        (r["state"].as_str(), r["network"]["type"].as_str()),
        (Some("running"), Some("unrestricted"))
    );
    let ex = s.cli(&["runners", "exec", &id, "--", "sh", "-c", "exit 42"]);
    assert_eq!(ex.status.code(), Some(42));
    let t = s.cli(&[
        "runners",
        "exec",
        &id,
        "--timeout",
        "1",
        "--",
        "sleep",
        "30",
    ]);
    assert_eq!(t.status.code(), Some(124), "a timed-out command exits 124");
    let unknown = s.cli(&["run", "--executor", "kubernetes", "--", "true"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(text(&unknown)
        .1
        .contains("no execution profile runs on executor"));
    s.json(&["runners", "destroy", "--wait", &id]);
}

#[test]
fn the_runner_api_drives_the_lifecycle() {
    if !bwrap() {
        return;
    }
    let d = data_dir();
    let s = Serve::start_with(d.path(), Some(&config(d.path(), "")));
    let base = s.url.clone();
    let u = |p: &str| format!("{base}{p}");

    // What the backend really enforces is visible.
    let (_, backends) = http("GET", &u("/v1/backends"), None);
    let local = backends["data"]
        .as_array()
        .expect("backends")
        .iter()
        .find(|b| b["backend"] == "local")
        .cloned()
        .expect("the local backend is listed");
    assert_eq!(local["isolation"], "namespaces");
    let (_, profiles) = http("GET", &u("/v1/profiles"), None);
    assert_eq!(profiles["data"].as_array().expect("profiles").len(), 3);

    // A runner for a session, from an environment.
    let agent = s.json(&["agents", "create", "--name", "a", "--model", "m"]);
    let env = s.json(&["envs", "create", "--name", "e"]);
    let sess = s.json(&[
        "sessions",
        "create",
        "--agent",
        agent["id"].as_str().expect("id"),
        "--env",
        env["id"].as_str().expect("id"),
    ]);
    let sid = sess["id"].as_str().expect("id");
    let (st, r) = http(
        "POST",
        &u("/v1/runners"),
        Some(json!({"environment_id": env["id"], "session_id": sid, "env": {"GREETING": "hi"}})),
    );
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["state"], "running", "{r}");
    assert_eq!(
        r["network"]["type"], "none",
        "the default profile keeps the network closed"
    );
    assert_eq!(
        r["enforced"]["pids"]
            .as_str()
            .map(|s| s.starts_with("cgroup")),
        Some(true),
        "{r}"
    );
    let rid = r["id"].as_str().expect("id").to_string();
    let (_, sess) = http("GET", &u(&format!("/v1/sessions/{sid}")), None);
    assert_eq!(sess["runner_id"], rid.as_str());
    let (_, evs) = http(
        "GET",
        &u(&format!(
            "/v1/sessions/{sid}/events?types[]=runner.state_changed"
        )),
        None,
    );
    let tos: Vec<&str> = evs["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|e| e["to"].as_str())
        .collect();
    assert_eq!(tos, ["creating", "provisioning", "running"]);

    // Exec (streamed NDJSON), files, and a confinement refusal in the API's own shape.
    let ex = s.cli(&[
        "runners",
        "exec",
        &rid,
        "--",
        "sh",
        "-c",
        "echo $GREETING > hello.txt; cat hello.txt",
    ]);
    assert_eq!(text(&ex).0, "hi\n");
    let (st, body) = http(
        "GET",
        &u(&format!("/v1/runners/{rid}/files/read?path=hello.txt")),
        None,
    );
    assert_eq!((st, body), (200, Value::String("hi\n".into())));
    let (st, err) = http(
        "PUT",
        &u(&format!("/v1/runners/{rid}/files/write?path=../escape")),
        Some(json!("x")),
    );
    assert_eq!(st, 403, "{err}");
    assert_eq!(err["error"]["type"], "permission_error");
    let (st, err) = http(
        "POST",
        &u(&format!("/v1/runners/{rid}/exec")),
        Some(json!({"comand": "ls"})),
    );
    assert_eq!(st, 400, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .expect("msg")
            .contains("comand"),
        "{err}"
    );
    let (st, status) = http("GET", &u(&format!("/v1/runners/{rid}/status")), None);
    assert_eq!(st, 200);
    assert!(
        status["status"]["disk"].is_object()
            || status["status"]["disk_bytes"].is_number()
            || status["status"].is_object(),
        "{status}"
    );

    // Stop refuses exec; start brings the workspace back; illegal moves name the state.
    let stopped = s.json(&["runners", "stop", &rid]);
    assert_eq!(stopped["state"], "stopped");
    let (st, err) = http(
        "POST",
        &u(&format!("/v1/runners/{rid}/exec")),
        Some(json!({"command": "true"})),
    );
    assert_eq!(st, 409, "{err}");
    assert!(err["error"]["message"]
        .as_str()
        .expect("msg")
        .contains("stopped"));
    assert_eq!(
        s.json(&["runners", "stop", &rid])["state"],
        "stopped",
        "stop is idempotent"
    );
    assert_eq!(s.json(&["runners", "start", &rid])["state"], "running");
    let (_, body) = http(
        "GET",
        &u(&format!("/v1/runners/{rid}/files/read?path=hello.txt")),
        None,
    );
    assert_eq!(body, Value::String("hi\n".into()));
    let (_, logs) = http("GET", &u(&format!("/v1/runners/{rid}/logs?tail=50")), None);
    assert_eq!(logs["type"], "runner_logs");
    // The teardown goes on after the answer; --wait waits for it.
    assert_eq!(s.json(&["runners", "destroy", &rid])["state"], "destroying");
    assert_eq!(
        s.json(&["runners", "destroy", "--wait", &rid])["state"],
        "destroyed"
    );
    assert_eq!(
        s.json(&["runners", "destroy", &rid])["state"],
        "destroyed",
        "destroy is idempotent"
    );
    let (st, err) = http("POST", &u(&format!("/v1/runners/{rid}/start")), None);
    assert_eq!(st, 409);
    assert!(err["error"]["message"]
        .as_str()
        .expect("msg")
        .contains("destroyed"));
    assert!(
        !d.path().join("runners").join(&rid).exists(),
        "the workspace is gone"
    );

    // Bad input names the field.
    for (body, needle) in [
        (json!({"execution_profile": "huge"}), "execution_profile"),
        (json!({"env": {"1BAD": "x"}}), "env.1BAD"),
        (json!({"colour": "red"}), "colour"),
        (json!({"environment_id": "env_nope"}), "environment"),
    ] {
        let (st, err) = http("POST", &u("/v1/runners"), Some(body.clone()));
        assert!((400..500).contains(&st), "{body}: {st} {err}");
        assert!(
            err["error"]["message"]
                .as_str()
                .expect("msg")
                .contains(needle),
            "{body}: {err}"
        );
    }

    // Capacity: the tiny profile allows one active runner.
    let (_, one) = http(
        "POST",
        &u("/v1/runners"),
        Some(json!({"execution_profile": "tiny"})),
    );
    assert_eq!(one["state"], "running");
    let (st, err) = http(
        "POST",
        &u("/v1/runners"),
        Some(json!({"execution_profile": "tiny"})),
    );
    assert_eq!(st, 503, "{err}");
    assert_eq!(err["error"]["details"]["error_code"], "capacity_exceeded");
    http(
        "DELETE",
        &u(&format!("/v1/runners/{}", one["id"].as_str().expect("id"))),
        None,
    );
    let (_, again) = http(
        "POST",
        &u("/v1/runners"),
        Some(json!({"execution_profile": "tiny"})),
    );
    assert_eq!(
        again["state"], "running",
        "capacity frees when a runner is destroyed"
    );
    http(
        "DELETE",
        &u(&format!(
            "/v1/runners/{}",
            again["id"].as_str().expect("id")
        )),
        None,
    );
}

#[test]
fn a_provisioning_failure_lands_in_errored_with_the_reason() {
    if !bwrap() {
        return;
    }
    let d = data_dir();
    let cfg = config(
        d.path(),
        "[local]\nworker = \"/nonexistent/paddock-worker\"\nstart_timeout_secs = 2\n",
    );
    let s = Serve::start_with(d.path(), Some(&cfg));
    let (st, r) = http("POST", &format!("{}/v1/runners", s.url), Some(json!({})));
    assert_eq!(st, 200);
    assert_eq!(r["state"], "errored", "{r}");
    assert!(
        r["error"]
            .as_str()
            .expect("reason")
            .contains("provisioning failed"),
        "{r}"
    );
    let rid = r["id"].as_str().expect("id");
    let (_, evs) = http("GET", &format!("{}/v1/runners/{rid}/events", s.url), None);
    let tos: Vec<&str> = evs["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|e| e["to"].as_str())
        .collect();
    assert_eq!(tos, ["creating", "provisioning", "errored"]);
    assert_eq!(
        s.json(&["runners", "destroy", "--wait", rid])["state"],
        "destroyed"
    );
}

#[test]
fn runners_survive_a_restart_and_the_lost_and_orphaned_are_handled() {
    if !bwrap() {
        return;
    }
    let d = data_dir();
    let cfg = config(d.path(), "");
    let s = Serve::start_with(d.path(), Some(&cfg));
    let keep = s.json(&["runners", "create"]);
    let lose = s.json(&["runners", "create"]);
    let (keep, lose) = (
        keep["id"].as_str().expect("id").to_string(),
        lose["id"].as_str().expect("id").to_string(),
    );
    let ex = s.cli(&[
        "runners",
        "exec",
        &keep,
        "--",
        "sh",
        "-c",
        "echo survived > mark",
    ]);
    assert_eq!(ex.status.code(), Some(0));

    // A graceful shutdown leaves runners running.
    let (status, _) = s.terminate();
    assert!(status.success());
    let meta = |id: &str| -> Value {
        serde_json::from_str(
            &std::fs::read_to_string(d.path().join("runners").join(id).join("meta.json"))
                .expect("meta"),
        )
        .expect("json")
    };
    // Alive and not a zombie (a dead sandbox waits for whoever inherited it to reap it).
    let alive = |pid: i64| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|st| {
                st.rsplit(')')
                    .next()
                    .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(false)
    };
    let keep_pid = meta(&keep)["pid"].as_i64().expect("pid");
    assert!(alive(keep_pid), "the sandbox outlived the orchestrator");
    // While it is down, one sandbox dies.
    let lose_meta = meta(&lose);
    for key in ["child_pid", "pid"] {
        if let Some(p) = lose_meta[key].as_i64() {
            Command::new("kill")
                .args(["-KILL", &p.to_string()])
                .status()
                .expect("kill");
        }
    }
    std::thread::sleep(Duration::from_millis(300));

    let s2 = Serve::start_with(d.path(), Some(&cfg));
    let r = s2.json(&["runners", "get", &keep]);
    assert_eq!(r["state"], "running", "adopted: {r}");
    let ex = s2.cli(&["runners", "exec", &keep, "--", "cat", "mark"]);
    assert_eq!(text(&ex).0, "survived\n");
    let r = s2.json(&["runners", "get", &lose]);
    assert_eq!(r["state"], "errored", "{r}");
    assert!(r["error"].as_str().expect("reason").contains("lost"), "{r}");

    // A crashed orchestrator leaves runners running too.
    s2.crash();
    assert!(
        alive(keep_pid),
        "the sandbox outlived an orchestrator crash"
    );
    let s2b = Serve::start_with(d.path(), Some(&cfg));
    let ex = s2b.cli(&["runners", "exec", &keep, "--", "cat", "mark"]);
    assert_eq!(text(&ex).0, "survived\n", "adopted again after the crash");

    // Orphans: a sandbox no runner record owns is swept at start.
    let (status, _) = s2b.terminate();
    assert!(status.success());
    for f in ["paddock.db", "paddock.db-wal", "paddock.db-shm"] {
        let _ = std::fs::remove_file(d.path().join(f));
    }
    let s3 = Serve::start_with(d.path(), Some(&cfg));
    // Adoption runs before the API answers; the port is open a moment earlier.
    assert!(s3.cli(&["runners", "list"]).status.success());
    assert!(
        !d.path().join("runners").join(&keep).exists(),
        "the orphan was swept"
    );
    assert!(!alive(keep_pid), "the orphan's processes are gone");
    drop(s3);
}
