//! Docker runners through the real `paddock serve` process: a docker execution profile,
//! hardening visible from inside, limits, adoption after SIGTERM and a crash, orphaned
//! containers stopped at start, and container logs. Required in CI
//! (`PADDOCK_REQUIRE_DOCKER=1`).

mod common;

use common::{data_dir, http, Serve};
use paddock_testkit::require_or_skip;
use serde_json::{json, Value};
use std::process::Command;

fn available() -> bool {
    let ok = Command::new("docker")
        .args(["image", "inspect", "paddock-base:latest"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    require_or_skip(
        "docker",
        ok,
        "no Docker engine with the paddock-base image (scripts/test starts dockerd and runs scripts/images.sh)",
    )
}

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
    if !available() {
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
    assert_eq!(c[0]["Config"]["User"], "1000:1000");
    assert_eq!(c[0]["Config"]["Labels"]["paddock.managed"], "true");
    assert_eq!(c[0]["Config"]["Labels"]["paddock.runner_id"], id.as_str());
    let inside = exec(&s.url, &id, "id -u; touch /etc/x 2>&1; echo hi > mark; cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max");
    let out = inside["stdout"].as_str().unwrap_or_default();
    assert!(out.starts_with("1000\n"), "{inside}");
    assert!(out.contains("Read-only file system"), "{inside}");
    assert!(
        out.contains("268435456"),
        "the memory limit is the container's: {inside}"
    );
    // The engine's figures reach the runner's samples (memory from its cgroup).
    let (_, detail) = http("GET", &format!("{}/v1/runners/{id}", s.url), None);
    assert_eq!(detail["id"], id.as_str(), "{detail}");
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

    // SIGTERM leaves the container running; the next Paddock adopts it.
    let (status, _) = s.terminate();
    assert!(status.success());
    assert!(
        container_running(&name),
        "a graceful shutdown must not stop runners"
    );
    let s2 = Serve::start_with(d.path(), Some(&cfg));
    let (_, r) = http("GET", &format!("{}/v1/runners/{id}", s2.url), None);
    assert_eq!(r["state"], "running", "adopted: {r}");
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
    for n in [name, format!("paddock-{lid}")] {
        let _ = Command::new("docker").args(["rm", "-f", &n]).output();
    }
}
