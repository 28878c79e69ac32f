//! Runner management through a real `paddock serve` with short timeouts: lifecycle
//! operations, automatic stops with their reasons, monitoring, fleet aggregates,
//! snapshots, live settings, and troubleshooting (OOM, full disk, stuck provisioning).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{bwrap, data_dir, http, text, Serve};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const FAST: &str = r#"
[runners]
idle_timeout_secs = 0
sweep_interval_ms = 100
sample_interval_ms = 150

[profiles.default]
pids = 256
memory_mb = 512

[profiles.small]
memory_mb = 64
disk_mb = 1

[profiles.short]
ttl_secs = 1
"#;

fn serve(dir: &std::path::Path, extra: &str) -> Serve {
    let p = dir.join("paddock.toml");
    std::fs::write(&p, format!("{FAST}\n{extra}")).expect("config");
    Serve::start_with(dir, Some(&p))
}

fn create(s: &Serve, body: Value) -> String {
    let (st, r) = http("POST", &format!("{}/v1/runners", s.url), Some(body));
    assert_eq!((st, r["state"].as_str()), (200, Some("running")), "{r}");
    r["id"].as_str().expect("id").to_string()
}

fn get(s: &Serve, path: &str) -> Value {
    let (st, v) = http("GET", &format!("{}{path}", s.url), None);
    assert_eq!(st, 200, "{path}: {v}");
    v
}

/// Polls the runner until `pred` holds (or panics after `secs`).
fn wait_for(s: &Serve, id: &str, secs: u64, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let r = get(s, &format!("/v1/runners/{id}"));
        if pred(&r) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {r}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn events(s: &Serve, id: &str) -> Vec<Value> {
    get(s, &format!("/v1/runners/{id}/events"))["data"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn lifecycle_operations_and_automatic_stops() {
    if !bwrap() {
        return;
    }
    let d = data_dir();
    let s = serve(d.path(), "");

    // Restart keeps the workspace; kill stops at once.
    let id = create(&s, json!({}));
    let ex = s.cli(&["runners", "exec", &id, "--", "sh", "-c", "echo kept > f"]);
    assert_eq!(ex.status.code(), Some(0));
    let r = s.json(&["runners", "restart", &id]);
    assert_eq!(r["state"], "running");
    assert_eq!(
        text(&s.cli(&["runners", "exec", &id, "--", "cat", "f"])).0,
        "kept\n"
    );
    let reasons: Vec<Value> = events(&s, &id)
        .iter()
        .map(|e| e["reason"].clone())
        .collect();
    assert!(reasons.contains(&json!("restart")), "{reasons:?}");
    let long = std::process::Command::new(common::BIN)
        .args(["runners", "exec", &id, "--", "sleep", "60"])
        .env("PADDOCK_URL", &s.url)
        .spawn()
        .expect("long exec");
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let k = s.json(&["kill", &id]);
    assert_eq!(k["state"], "stopped");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "kill took {:?}",
        started.elapsed()
    );
    let out = long.wait_with_output().expect("exec ends");
    assert!(!out.status.success(), "the killed command did not succeed");
    let (st, err) = http("POST", &format!("{}/v1/runners/{id}/restart", s.url), None);
    assert_eq!(st, 200, "restart of a stopped runner starts it: {err}");
    s.json(&["cleanup", &id]);
    let (st, err) = http("POST", &format!("{}/v1/runners/{id}/stop", s.url), None);
    assert_eq!(st, 409);
    assert!(
        err["error"]["message"]
            .as_str()
            .expect("msg")
            .contains("destroyed"),
        "{err}"
    );

    // Idle timeout: activity keeps a runner alive, idleness stops it, with the reason.
    let idle = create(&s, json!({"idle_timeout_secs": 1}));
    for _ in 0..6 {
        assert_eq!(
            s.cli(&["runners", "exec", &idle, "--", "true"])
                .status
                .code(),
            Some(0)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(
        get(&s, &format!("/v1/runners/{idle}"))["state"],
        "running",
        "activity keeps it running"
    );
    let r = wait_for(&s, &idle, 10, "the idle stop", |r| r["state"] == "stopped");
    assert!(
        r["reason"]
            .as_str()
            .expect("reason")
            .starts_with("idle timeout"),
        "{r}"
    );
    let last = events(&s, &idle).last().cloned().expect("events");
    assert_eq!(
        (
            last["to"].as_str(),
            last["reason"].as_str().map(|r| r.starts_with("idle"))
        ),
        (Some("stopped"), Some(true))
    );

    // Max wall duration (the profile's ttl_secs).
    let ttl = create(&s, json!({"execution_profile": "short"}));
    let r = wait_for(&s, &ttl, 10, "the TTL stop", |r| r["state"] == "stopped");
    assert!(
        r["reason"]
            .as_str()
            .expect("reason")
            .contains("max wall duration"),
        "{r}"
    );

    // Budget: a runner whose session has reached its budget is stopped; others run on.
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
    let rich = create(
        &s,
        json!({"session_id": sid, "budget": {"amount": "500", "currency": "USD"}}),
    );
    let broke = create(
        &s,
        json!({"session_id": sid, "budget": {"amount": "0", "currency": "USD"}}),
    );
    let r = wait_for(&s, &broke, 10, "the budget stop", |r| {
        r["state"] == "stopped"
    });
    assert!(
        r["reason"]
            .as_str()
            .expect("reason")
            .starts_with("budget reached"),
        "{r}"
    );
    assert_eq!(get(&s, &format!("/v1/runners/{rich}"))["state"], "running");
    let session_events = get(
        &s,
        &format!("/v1/sessions/{sid}/events?types[]=runner.state_changed&limit=100"),
    );
    assert!(
        session_events["data"]
            .as_array()
            .expect("data")
            .iter()
            .any(|e| e["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("budget"))),
        "the automatic stop shows in the session's log"
    );
    s.json(&["cleanup", &rich]);
}

#[test]
fn stopped_runners_are_pruned() {
    if !bwrap() {
        return;
    }
    let d = data_dir();
    let s = serve(d.path(), "");
    drop(s);
    let s = {
        let p = d.path().join("paddock.toml");
        let cfg = FAST.replace(
            "idle_timeout_secs = 0",
            "idle_timeout_secs = 0\nprune_stopped_after_secs = 1",
        );
        std::fs::write(&p, cfg).expect("config");
        Serve::start_with(d.path(), Some(&p))
    };
    let id = create(&s, json!({}));
    s.json(&["runners", "stop", &id]);
    let r = wait_for(&s, &id, 10, "the prune", |r| r["state"] == "destroyed");
    assert!(
        r["reason"].as_str().expect("reason").starts_with("pruned"),
        "{r}"
    );
    assert!(!d.path().join("runners").join(&id).exists());
}

#[test]
fn monitoring_fleet_and_settings() {
    if !bwrap() {
        return;
    }
    let d = data_dir();
    let s = serve(d.path(), "");
    let a = create(&s, json!({}));
    let b = create(&s, json!({}));
    let gone = create(&s, json!({}));
    s.json(&["runners", "stop", &b]);
    s.json(&["cleanup", &gone]);

    // Live figures: uptime, a sample with the enforced memory limit, history growing.
    let r = wait_for(&s, &a, 10, "a sample", |r| r["latest_sample"].is_object());
    assert!(r["uptime_seconds"].as_f64().expect("uptime") >= 0.0);
    assert_eq!(
        r["latest_sample"]["memory_limit_bytes"],
        json!(512u64 * 1024 * 1024),
        "{r}"
    );
    std::thread::sleep(Duration::from_millis(600));
    let m = get(&s, &format!("/v1/runners/{a}/metrics"));
    assert!(m["samples"].as_array().expect("samples").len() >= 2, "{m}");
    let status = s.cli(&["status", &a]);
    let (out, _) = text(&status);
    assert!(
        out.contains("running") && out.contains("512.0 MiB"),
        "{out}"
    );

    // Fleet aggregates match the runners we made.
    let f = get(&s, "/v1/fleet");
    assert_eq!(f["by_state"], json!({"running": 1, "stopped": 1}), "{f}");
    assert_eq!(
        (f["total"].as_u64(), f["active"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(f["by_profile"]["default"]["active"], 1);
    let lines = s.cli(&["list", "--jsonl"]);
    let n = text(&lines)
        .0
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).is_ok())
        .count();
    assert_eq!(n, 3, "list --jsonl prints one runner per line");
    // The live stream: one fleet snapshot per interval, as JSON lines.
    let mut streaming = std::process::Command::new(common::BIN)
        .args(["dashboard", "--stream", "--watch", "1"])
        .env("PADDOCK_URL", &s.url)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("dashboard --stream");
    std::thread::sleep(Duration::from_millis(2500));
    streaming.kill().expect("stop the stream");
    let out = streaming.wait_with_output().expect("output");
    let snaps: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(snaps.len() >= 2, "{snaps:?}");
    assert!(snaps
        .iter()
        .all(|f| f["type"] == "fleet" && f["active"] == 1));
    let dash = s.cli(&["dashboard"]);
    assert!(
        text(&dash).0.contains("by state: running 1 · stopped 1"),
        "{}",
        text(&dash).0
    );

    // A follow-mode log stream receives lines written after it connected.
    let follower = std::process::Command::new("curl")
        .args([
            "-sN",
            "--max-time",
            "4",
            &format!("{}/v1/runners/{a}/logs?follow=true", s.url),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("curl");
    std::thread::sleep(Duration::from_millis(600));
    s.cli(&[
        "runners",
        "exec",
        &a,
        "--",
        "sh",
        "-c",
        "echo written-after-connect",
    ]);
    let got = String::from_utf8_lossy(&follower.wait_with_output().expect("curl ends").stdout)
        .into_owned();
    assert!(
        got.contains("event: log") && got.contains("written-after-connect"),
        "{got}"
    );

    // Activity feed.
    let act = get(&s, &format!("/v1/runners/{a}/activity"));
    assert!(act["data"]
        .as_array()
        .expect("data")
        .iter()
        .any(|e| e["type"] == "runner.state_changed"));

    // Settings: idle timeout applies now; env applies at the next start.
    let (st, u) = http(
        "POST",
        &format!("{}/v1/runners/{a}", s.url),
        Some(json!({"idle_timeout_secs": 3600, "env": {"LATER": "yes"}})),
    );
    assert_eq!(st, 200, "{u}");
    assert_eq!(u["idle_timeout_effective_secs"], 3600);
    assert_eq!(u["pending_restart"], json!(["env"]));
    assert_eq!(
        text(&s.cli(&["runners", "exec", &a, "--", "sh", "-c", "echo ${LATER:-no}"])).0,
        "no\n"
    );
    s.json(&["runners", "restart", &a]);
    assert_eq!(
        text(&s.cli(&["runners", "exec", &a, "--", "sh", "-c", "echo ${LATER:-no}"])).0,
        "yes\n"
    );
    assert_eq!(
        get(&s, &format!("/v1/runners/{a}"))["pending_restart"],
        json!([])
    );
    let (st, err) = http(
        "POST",
        &format!("{}/v1/runners/{a}", s.url),
        Some(json!({"network": {"type": "unrestricted"}})),
    );
    assert_eq!(
        st, 400,
        "the default profile caps the network at none: {err}"
    );
}

#[test]
fn snapshots_restore_and_branch() {
    if !bwrap() {
        return;
    }
    let d = data_dir();
    let s = serve(d.path(), "");
    let id = create(&s, json!({}));
    let sh = |runner: &str, script: &str| {
        text(&s.cli(&["runners", "exec", runner, "--", "sh", "-c", script])).0
    };
    sh(&id, "mkdir -p src && echo original > src/main.txt && head -c 100000 /dev/urandom > blob && sha256sum blob > blob.sum");
    let snap = s.json(&["snapshots", "create", &id, "--label", "before"]);
    let sid = snap["id"].as_str().expect("id").to_string();
    assert!(
        snap["size_bytes"].as_u64().expect("size") > 100_000,
        "{snap}"
    );
    assert!(std::path::Path::new(snap["path"].as_str().expect("path"))
        .starts_with(d.path().join("snapshots")));

    // Change everything, then restore: the old contents are back.
    sh(
        &id,
        "echo changed > src/main.txt; rm blob; echo new > extra",
    );
    let r = s.json(&["snapshots", "restore", &id, &sid]);
    assert_eq!(
        r["state"], "running",
        "a running runner is restarted after the restore"
    );
    assert_eq!(
        sh(
            &id,
            "cat src/main.txt; sha256sum -c blob.sum; ls extra 2>/dev/null || echo no-extra"
        ),
        "original\nblob: OK\nno-extra\n"
    );

    // Branch: a new runner starting from the snapshot; the original is untouched.
    let b = s.json(&["snapshots", "branch", &sid]);
    let bid = b["id"].as_str().expect("id").to_string();
    assert_ne!(bid, id);
    sh(&bid, "echo branched > src/main.txt");
    assert_eq!(sh(&bid, "cat src/main.txt"), "branched\n");
    assert_eq!(sh(&id, "cat src/main.txt"), "original\n");

    // A broken snapshot cannot corrupt the live workspace.
    let bad = s.json(&["snapshots", "create", &id, "--label", "to-corrupt"]);
    std::fs::write(bad["path"].as_str().expect("path"), b"not a tarball").expect("corrupt");
    let (st, err) = http(
        "POST",
        &format!("{}/v1/runners/{id}/restore", s.url),
        Some(json!({"snapshot_id": bad["id"]})),
    );
    assert!(st >= 400, "{err}");
    assert_eq!(
        sh(&id, "cat src/main.txt"),
        "original\n",
        "the workspace survived the failed restore"
    );

    let list = s.json(&["snapshots", "list", "--runner", &id]);
    assert_eq!(list.as_array().expect("list").len(), 2);
    s.json(&["snapshots", "delete", &sid]);
    assert!(!std::path::Path::new(snap["path"].as_str().expect("path")).exists());
    let (st, _) = http("GET", &format!("{}/v1/snapshots/{sid}", s.url), None);
    assert_eq!(st, 404);
}

#[test]
fn oom_kills_full_disks_and_stuck_provisioning_are_reported() {
    if !bwrap() {
        return;
    }
    let d = data_dir();
    let s = serve(d.path(), "");
    let id = create(&s, json!({"execution_profile": "small"}));
    let out = s.cli(&[
        "runners",
        "exec",
        &id,
        "--",
        "python3",
        "-c",
        "b = bytearray(256 * 1024 * 1024)",
    ]);
    assert_ne!(out.status.code(), Some(0), "the allocation must fail");
    let deadline = Instant::now() + Duration::from_secs(10);
    let kinds = loop {
        let kinds: Vec<String> = events(&s, &id)
            .iter()
            .filter_map(|e| e["type"].as_str().map(str::to_string))
            .collect();
        if kinds.iter().any(|k| k == "runner.oom_killed") || Instant::now() > deadline {
            break kinds;
        }
        std::thread::sleep(Duration::from_millis(150));
    };
    assert!(
        kinds.contains(&"runner.oom_killed".to_string()),
        "{kinds:?}"
    );

    // Past its 1 MiB disk allowance the runner is reported full.
    s.cli(&[
        "runners",
        "exec",
        &id,
        "--",
        "sh",
        "-c",
        "head -c 3000000 /dev/zero > fill",
    ]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !events(&s, &id)
        .iter()
        .any(|e| e["type"] == "runner.disk_full")
    {
        assert!(
            Instant::now() < deadline,
            "no runner.disk_full event: {:?}",
            events(&s, &id)
        );
        std::thread::sleep(Duration::from_millis(150));
    }

    // A worker that never answers: the runner errors after the provisioning timeout.
    let (status, _) = s.terminate();
    assert!(status.success());
    let hang = d.path().join("hang.sh");
    std::fs::write(&hang, "#!/bin/sh\nexec sleep 600\n").expect("script");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hang, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let extra = format!(
        "[local]\nworker = \"{}\"\nstart_timeout_secs = 60\n",
        hang.display()
    );
    let p = d.path().join("paddock.toml");
    std::fs::write(
        &p,
        format!(
            "{}\n{extra}",
            FAST.replace(
                "sample_interval_ms = 150",
                "sample_interval_ms = 150\nprovision_timeout_secs = 1"
            )
        ),
    )
    .expect("config");
    let s = Serve::start_with(d.path(), Some(&p));
    let started = Instant::now();
    let (st, r) = http("POST", &format!("{}/v1/runners", s.url), Some(json!({})));
    assert_eq!(st, 200);
    assert_eq!(r["state"], "errored", "{r}");
    assert!(
        r["error"]
            .as_str()
            .expect("error")
            .contains("still provisioning"),
        "{r}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}
