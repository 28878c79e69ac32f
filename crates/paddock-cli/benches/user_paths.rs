//! What a user runs, end to end: the real `paddock` binary against a real `paddock
//! serve`, each row paired in turn with its raw baseline in the same run (bare `bwrap`,
//! `curl`, `docker run --rm`). Prints medians, p90 and ratios; asserts no timing.
//!
//! `cargo bench -p paddock-cli --bench user_paths` (`PADDOCK_BENCH_N`, default 20, runs
//! per row; the Docker rows run when the engine has the `paddock-base` image).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{bare_bwrap, free_port, stats, Serve};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_paddock");

fn timed(mut cmd: Command) -> (Duration, Output) {
    cmd.stdin(Stdio::null());
    let t = Instant::now();
    let out = cmd.output().expect("runs");
    let d = t.elapsed();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (d, out)
}

fn paddock(url: &str, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args).env("PADDOCK_URL", url);
    c
}

fn docker_ready() -> bool {
    Command::new("docker")
        .args(["image", "inspect", "paddock-base:latest"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Prints a row pair and their ratio.
fn pair(name: &str, ours: Vec<Duration>, base_name: &str, base: Vec<Duration>) {
    let a = stats(name, ours);
    let b = stats(base_name, base);
    println!(
        "{:<56} {:.2}x\n",
        format!("  ratio {name} / {base_name}"),
        a.as_secs_f64() / b.as_secs_f64()
    );
}

fn main() {
    let Some(n) = common::samples("user_paths", 20) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let docker = docker_ready();
    let worker = match std::env::var("PADDOCK_STATIC_WORKER") {
        Ok(w) if Path::new(&w).exists() => format!("[docker]\nworker = {w:?}\n"),
        _ => String::new(),
    };
    let cfg = dir.path().join("paddock.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[rate_limit]
per_second = 0.0

[agent]
enabled = false

[profiles.default]

[profiles.box]
backend = "docker"
runbook = "base"

[profiles.warm]
backend = "docker"
runbook = "base"
warm_pool = 2
{worker}"#
        ),
    )
    .expect("config");
    let s = Serve::start(&dir.path().join("data"), &cfg, free_port());
    let url = s.url.clone();
    println!(
        "user_paths: {n} runs per row, each pair in turn; paddock serve listening after {:.1} ms\n",
        s.listening.as_secs_f64() * 1000.0
    );

    // Warm-up: page cache, the first runner's directories.
    timed(paddock(&url, &["run", "--", "echo", "hi"]));
    timed(bare_bwrap(&["echo", "hi"]));

    let (mut ours, mut base) = (vec![], vec![]);
    for _ in 0..n {
        let (d, out) = timed(paddock(&url, &["run", "--", "echo", "hi"]));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
        ours.push(d);
        base.push(timed(bare_bwrap(&["echo", "hi"])).0);
    }
    pair(
        "paddock run -- echo hi (local)",
        ours,
        "bare bwrap --unshare-all … echo hi",
        base,
    );

    let mut kept = vec![];
    let mut keep = vec![];
    for _ in 0..n {
        let (d, out) = timed(paddock(&url, &["run", "--keep", "--", "echo", "hi"]));
        keep.push(d);
        let err = String::from_utf8_lossy(&out.stderr);
        if let Some(id) = err.split_whitespace().find(|w| w.starts_with("run_")) {
            kept.push(id.to_string());
        }
    }
    stats("paddock run --keep -- echo hi (local)", keep);
    for id in &kept {
        let _ = paddock(&url, &["runners", "destroy", id]).output();
    }

    let (mut ours, mut base) = (vec![], vec![]);
    for _ in 0..n {
        ours.push(timed(paddock(&url, &["runners", "list"])).0);
        let mut c = Command::new("curl");
        c.args(["-s", "-o", "/dev/null", &format!("{url}/v1/runners")]);
        base.push(timed(c).0);
    }
    pair(
        "paddock runners list",
        ours,
        "curl of GET /v1/runners",
        base,
    );

    if !docker {
        println!("docker rows skipped: no engine with the paddock-base image");
        return;
    }
    let docker_run = || {
        let mut c = Command::new("docker");
        c.args([
            "run",
            "--rm",
            "--network",
            "none",
            "paddock-base",
            "echo",
            "hi",
        ]);
        c
    };
    timed(paddock(
        &url,
        &["run", "--profile", "box", "--", "echo", "hi"],
    ));
    timed(docker_run());
    let (mut ours, mut base) = (vec![], vec![]);
    for _ in 0..n {
        ours.push(
            timed(paddock(
                &url,
                &["run", "--profile", "box", "--", "echo", "hi"],
            ))
            .0,
        );
        base.push(timed(docker_run()).0);
    }
    pair(
        "paddock run --profile box -- echo hi (Docker, cold)",
        ours,
        "docker run --rm --network none paddock-base echo hi",
        base,
    );

    // The warm pool fills in the background; claims 1.5 s apart let it refill.
    std::thread::sleep(Duration::from_secs(5));
    let mut warm = vec![];
    for _ in 0..n {
        warm.push(
            timed(paddock(
                &url,
                &["run", "--profile", "warm", "--", "echo", "hi"],
            ))
            .0,
        );
        std::thread::sleep(Duration::from_millis(1500));
    }
    stats("paddock run --profile warm -- echo hi (warm pool)", warm);

    // Does a refill slow a claim? Claims from a full pool, each after the pool is full
    // again, against claims made while a refill is provisioning (a warm runner
    // `creating` or `provisioning`): the refill's own time is printed too.
    let mut idle = vec![];
    let mut during = vec![];
    let mut refill = vec![];
    for _ in 0..n {
        let full = wait_for_pool(&url, |r| r.running == 2 && r.starting == 0);
        assert!(full.is_some(), "the warm pool did not fill");
        idle.push(
            timed(paddock(
                &url,
                &["run", "--profile", "warm", "--", "echo", "hi"],
            ))
            .0,
        );
        let t = Instant::now();
        if wait_for_pool(&url, |r| r.starting > 0 && r.running >= 1).is_none() {
            continue;
        }
        during.push(
            timed(paddock(
                &url,
                &["run", "--profile", "warm", "--", "echo", "hi"],
            ))
            .0,
        );
        if wait_for_pool(&url, |r| r.running == 2 && r.starting == 0).is_some() {
            refill.push(t.elapsed());
        }
    }
    stats("warm claim, pool full, no refill running", idle);
    stats("warm claim while the pool refills", during);
    stats(
        "  (claim → pool full again, refills of 1–2 runners)",
        refill,
    );
}

/// The `warm` profile's pool: warm runners running and starting.
struct Pool {
    running: usize,
    starting: usize,
}

/// Polls `GET /v1/runners` every 2 ms (at most 30 s) until `done` holds.
fn wait_for_pool(url: &str, done: impl Fn(&Pool) -> bool) -> Option<Pool> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let out = Command::new("curl")
            .args(["-s", &format!("{url}/v1/runners?limit=100")])
            .output()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let warm: Vec<&serde_json::Value> = v["data"]
            .as_array()?
            .iter()
            .filter(|r| r["warm"] == true && r["execution_profile"] == "warm")
            .collect();
        let pool = Pool {
            running: warm.iter().filter(|r| r["state"] == "running").count(),
            starting: warm
                .iter()
                .filter(|r| r["state"] == "creating" || r["state"] == "provisioning")
                .count(),
        };
        if done(&pool) {
            return Some(pool);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}
