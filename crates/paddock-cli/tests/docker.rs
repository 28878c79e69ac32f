//! Docker runners through the real `paddock serve` process: a docker execution profile,
//! hardening visible from inside, limits, adoption after SIGTERM and a crash, orphaned
//! containers stopped at start, and container logs. Required in CI
//! (`PADDOCK_REQUIRE_DOCKER=1`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{data_dir, docker_base, http, Serve};
use serde_json::{json, Value};
use std::process::Command;

fn config(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("paddock.toml");
    let worker = match std::env::var("PADDOCK_STATIC_WORKER") {
        Ok(w) if std::path::Path::new(&w).exists() => format!("worker = {w:?}\n"),
        _ => String::new(),
    };
    std::fs::write(
        &p,
        format!(
            r#"
default_profile = "box"

[runners]
sample_interval_ms = 200

[profiles.box]
backend = "docker"
runbook = "base"
memory_mb = 256
pids = 100
cpu = 0.5

[profiles.locked]
backend = "docker"
runbook = "locked"

[docker]
{worker}"#
        ),
    )
    .expect("config");
    p
}

fn container_running(name: &str) -> bool {
    Command::new("docker")
        .args(["inspect", "-f", "{{.State.Running}}", name])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "true")
        .unwrap_or(false)
}

/// Runs a command in a runner; the exec route streams NDJSON records.
fn exec(url: &str, id: &str, cmd: &str) -> Value {
    let (code, v) = http(
        "POST",
        &format!("{url}/v1/runners/{id}/exec"),
        Some(json!({"command": cmd})),
    );
    assert_eq!(code, 200, "{v}");
    let text = v
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string());
    let (mut stdout, mut stderr, mut exit) = (String::new(), String::new(), Value::Null);
    for line in text.lines() {
        let Ok(rec) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        match rec["type"].as_str() {
            Some("stdout") => stdout.push_str(rec["data"].as_str().unwrap_or_default()),
            Some("stderr") => stderr.push_str(rec["data"].as_str().unwrap_or_default()),
            Some("exit") => exit = rec["code"].clone(),
            _ => {}
        }
    }
    json!({"stdout": stdout, "stderr": stderr, "code": exit})
}

#[test]
fn docker_runners_are_hardened_survive_restarts_and_orphans_are_stopped() {
    if !docker_base() {
        return;
    }
    let d = data_dir();
    let cfg = config(d.path());
    let s = Serve::start_with(d.path(), Some(&cfg));
    let (_, backends) = http("GET", &format!("{}/v1/backends", s.url), None);
    let docker = backends["data"]
        .as_array()
        .expect("backends")
        .iter()
        .find(|b| b["backend"] == "docker")
        .cloned()
        .expect("the docker backend is listed");
    assert_eq!(docker["available"], true, "{docker}");
    assert_eq!(docker["isolation"], "container");

    let (code, r) = http("POST", &format!("{}/v1/runners", s.url), Some(json!({})));
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["state"], "running", "{r}");
    assert_eq!(r["backend"], "docker");
    let id = r["id"].as_str().expect("id").to_string();
    let name = format!("paddock-{id}");
    // Hardening and limits, seen from the engine and from inside.
    let inspect = Command::new("docker")
        .args(["inspect", &name])
        .output()
        .expect("inspect");
    let c: Value = serde_json::from_slice(&inspect.stdout).expect("json");
    let hc = &c[0]["HostConfig"];
    assert_eq!(hc["CapDrop"], json!(["ALL"]));
    assert_eq!(hc["ReadonlyRootfs"], true);
    assert_eq!(hc["Memory"], 256 * 1024 * 1024);
    assert_eq!(hc["PidsLimit"], 100);
    assert_eq!(hc["NanoCpus"], 500_000_000);
    assert_eq!(hc["NetworkMode"], "none");
    assert!(hc["SecurityOpt"].to_string().contains("no-new-privileges"));
    // A host uid of its own, from the default [docker] uid_range (never root).
    let user = c[0]["Config"]["User"].as_str().expect("user").to_string();
    let uid: u32 = user
        .split(':')
        .next()
        .and_then(|u| u.parse().ok())
        .expect("a numeric uid");
    assert!((300_000..365_536).contains(&uid), "{user}");
    assert_eq!(user, format!("{uid}:{uid}"));
    assert!(
        hc["SecurityOpt"].to_string().contains("seccomp="),
        "Paddock's profile"
    );
    assert_eq!(c[0]["Config"]["Labels"]["paddock.managed"], "true");
    assert_eq!(c[0]["Config"]["Labels"]["paddock.runner_id"], id.as_str());
    let inside = exec(&s.url, &id, "id -u; touch /etc/x 2>&1; echo hi > mark; cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max");
    let out = inside["stdout"].as_str().unwrap_or_default();
    assert!(out.starts_with(&format!("{uid}\n")), "{inside}");
    assert!(out.contains("Read-only file system"), "{inside}");
    assert!(
        out.contains("268435456"),
        "the memory limit is the container's: {inside}"
    );
    // The engine's figures reach the runner's samples: memory and pids from the
    // container's cgroup, network counters from its namespace (none: loopback only).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let sample = loop {
        let (_, detail) = http("GET", &format!("{}/v1/runners/{id}", s.url), None);
        if detail["latest_sample"].is_object() {
            break detail["latest_sample"].clone();
        }
        assert!(std::time::Instant::now() < deadline, "no sample: {detail}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(sample["memory_limit_bytes"], 256 * 1024 * 1024, "{sample}");
    assert!(sample["memory_bytes"].as_u64().unwrap_or(0) > 0, "{sample}");
    assert!(sample["processes"].as_u64().unwrap_or(0) >= 1, "{sample}");
    assert_eq!(sample["network_rx_bytes"], 0, "{sample}");
    // Container logs through the logs route.
    let (code, logs) = http("GET", &format!("{}/v1/runners/{id}/logs", s.url), None);
    assert_eq!(code, 200, "{logs}");

    // The locked runbook: data processing only.
    let (code, l) = http(
        "POST",
        &format!("{}/v1/runners", s.url),
        Some(json!({"execution_profile": "locked"})),
    );
    assert_eq!(code, 200, "{l}");
    let lid = l["id"].as_str().expect("id").to_string();
    let py = exec(&s.url, &lid, "python3 -c 'print(6*7)'; ls 2>&1; echo rc=$?");
    let out = py["stdout"].as_str().unwrap_or_default().to_string()
        + py["stderr"].as_str().unwrap_or_default();
    assert!(out.starts_with("42\n"), "{py}");
    assert!(!out.contains("rc=0"), "ls exists in the locked image: {py}");

    // SIGTERM leaves the container running; the next Paddock adopts it. A container
    // removed while Paddock is down is marked lost.
    let (code, lose) = http("POST", &format!("{}/v1/runners", s.url), Some(json!({})));
    assert_eq!(code, 200, "{lose}");
    let lose = lose["id"].as_str().expect("id").to_string();
    let (status, _) = s.terminate();
    assert!(status.success());
    assert!(
        container_running(&name),
        "a graceful shutdown must not stop runners"
    );
    let gone = Command::new("docker")
        .args(["rm", "-f", &format!("paddock-{lose}")])
        .output()
        .expect("docker rm");
    assert!(gone.status.success());
    let s2 = Serve::start_with(d.path(), Some(&cfg));
    let (_, r) = http("GET", &format!("{}/v1/runners/{id}", s2.url), None);
    assert_eq!(r["state"], "running", "adopted: {r}");
    let (_, l) = http("GET", &format!("{}/v1/runners/{lose}", s2.url), None);
    assert_eq!(l["state"], "errored", "{l}");
    assert!(l["error"].as_str().unwrap_or("").contains("lost"), "{l}");
    let v = exec(&s2.url, &id, "cat mark");
    assert_eq!(v["stdout"], "hi\n");
    // A crash too.
    s2.crash();
    assert!(container_running(&name));
    let s3 = Serve::start_with(d.path(), Some(&cfg));
    let v = exec(&s3.url, &id, "cat mark");
    assert_eq!(v["stdout"], "hi\n", "adopted after a crash");

    // Orphans: containers no runner record owns are stopped and removed at start.
    let (status, _) = s3.terminate();
    assert!(status.success());
    for f in ["paddock.db", "paddock.db-wal", "paddock.db-shm"] {
        let _ = std::fs::remove_file(d.path().join(f));
    }
    let s4 = Serve::start_with(d.path(), Some(&cfg));
    assert!(s4.cli(&["runners", "list"]).status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while container_running(&name) {
        assert!(
            std::time::Instant::now() < deadline,
            "the orphan was not stopped"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    drop(s4);
    remove_containers_of(d.path());
}

/// Removes every container of the Paddock whose data directory is `data` (a warm
/// pool may have been refilling when the server was stopped).
fn remove_containers_of(data: &std::path::Path) {
    let root = data.join("docker");
    let out = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=paddock.root={}", root.display()),
        ])
        .output()
        .expect("docker ps");
    for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        let _ = Command::new("docker").args(["rm", "-f", id]).output();
    }
}

fn runners(url: &str) -> Vec<Value> {
    let (_, v) = http("GET", &format!("{url}/v1/runners?limit=100"), None);
    v["data"].as_array().cloned().unwrap_or_default()
}

fn warm_ids(url: &str) -> Vec<String> {
    runners(url)
        .into_iter()
        .filter(|r| r["warm"] == true && r["state"] == "running")
        .filter_map(|r| r["id"].as_str().map(str::to_string))
        .collect()
}

fn wait_warm(url: &str, n: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let w = warm_ids(url);
        if w.len() >= n {
            return w;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the pool never held {n}: {w:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn warm_pools_are_claimed_and_refilled_and_capacity_makes_room() {
    if !docker_base() {
        return;
    }
    let d = data_dir();
    let cfg = d.path().join("paddock.toml");
    let worker = match std::env::var("PADDOCK_STATIC_WORKER") {
        Ok(w) if std::path::Path::new(&w).exists() => format!("worker = {w:?}\n"),
        _ => String::new(),
    };
    std::fs::write(
        &cfg,
        format!(
            r#"
default_profile = "pool"
[runners]
sweep_interval_ms = 200
max_active = 4
busy_window_secs = 2

[profiles.pool]
backend = "docker"
runbook = "base"
warm_pool = 2

[docker]
{worker}"#
        ),
    )
    .expect("config");
    let s = Serve::start_with(d.path(), Some(&cfg));
    let url = s.url.clone();
    let pool = wait_warm(&url, 2);
    // A matching request claims a warm runner: same id, no longer warm, usable at once.
    let (code, r) = http("POST", &format!("{url}/v1/runners"), Some(json!({})));
    assert_eq!(code, 200, "{r}");
    let claimed = r["id"].as_str().expect("id").to_string();
    assert!(
        pool.contains(&claimed),
        "{claimed} came from the pool {pool:?}"
    );
    assert_eq!(r["warm"], false);
    assert_eq!(r["state"], "running");
    assert_eq!(exec(&url, &claimed, "echo claimed")["stdout"], "claimed\n");
    let (_, evs) = http("GET", &format!("{url}/v1/runners/{claimed}/events"), None);
    assert!(evs.to_string().contains("runner.claimed"), "{evs}");
    // The pool refills in the background.
    let refilled = wait_warm(&url, 2);
    assert!(!refilled.contains(&claimed));
    // Other boot inputs (variables) cannot use a warm runner.
    let (code, r2) = http(
        "POST",
        &format!("{url}/v1/runners"),
        Some(json!({"env": {"ROLE": "special"}})),
    );
    assert_eq!(code, 200, "{r2}");
    let special = r2["id"].as_str().expect("id").to_string();
    assert!(
        !refilled.contains(&special),
        "a runner with variables is provisioned cold"
    );
    let (_, metrics) = http("GET", &format!("{url}/metrics"), None);
    let m = metrics.as_str().unwrap_or_default().to_string();
    assert!(
        m.contains("paddock_warm_pool_hits_total{profile=\"pool\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("paddock_warm_pool_misses_total{profile=\"pool\"} 1"),
        "{m}"
    );
    // 4 active of 4 (2 warm + 2 in use). Under pressure the warm ones go first.
    let (code, r3) = http(
        "POST",
        &format!("{url}/v1/runners"),
        Some(json!({"env": {"N": "3"}})),
    );
    assert_eq!(code, 200, "{r3}");
    let (_, stopped) = http("GET", &format!("{url}/v1/runners?limit=100"), None);
    let stopped: Vec<&Value> = stopped["data"]
        .as_array()
        .expect("runners")
        .iter()
        .filter(|r| r["state"] == "stopped")
        .collect();
    assert_eq!(stopped.len(), 1, "{stopped:?}");
    assert!(
        refilled.iter().any(|w| stopped[0]["id"] == w.as_str()),
        "a warm runner made room"
    );
    assert!(stopped[0]["reason"]
        .as_str()
        .unwrap_or("")
        .contains("capacity"));
    // Everything busy (used just now, no warm one left idle): 503.
    for w in warm_ids(&url) {
        let (_, _) = http("DELETE", &format!("{url}/v1/runners/{w}?wait=true"), None);
    }
    let _ = (exec(&url, &claimed, "true"), exec(&url, &special, "true"));
    let r3id = r3["id"].as_str().expect("id").to_string();
    let _ = exec(&url, &r3id, "true");
    // Fill the fourth slot, then ask for a fifth while all four are busy.
    let (code, r4) = http(
        "POST",
        &format!("{url}/v1/runners"),
        Some(json!({"env": {"N": "4"}})),
    );
    assert_eq!(code, 200, "{r4}");
    let r4id = r4["id"].as_str().expect("id").to_string();
    let (code, err) = http(
        "POST",
        &format!("{url}/v1/runners"),
        Some(json!({"env": {"N": "5"}})),
    );
    assert_eq!(code, 503, "{err}");
    assert_eq!(err["error"]["details"]["error_code"], "capacity_exceeded");
    // Once they have been idle past the busy window, the oldest idle one makes room.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let _ = exec(&url, &r4id, "true");
    let (code, r5) = http(
        "POST",
        &format!("{url}/v1/runners"),
        Some(json!({"env": {"N": "5"}})),
    );
    assert_eq!(code, 200, "{r5}");
    let (_, old) = http("GET", &format!("{url}/v1/runners/{claimed}"), None);
    assert_eq!(
        old["state"], "stopped",
        "the oldest idle runner made room: {old}"
    );
    drop(s);
    remove_containers_of(d.path());
}
