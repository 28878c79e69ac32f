//! Docker runner figures, measured against the raw baselines in the same run. Run with
//! `cargo bench -p paddock-cli --bench docker_runner`.
//!
//! 1. Cold time to first exec: `docker run --rm paddock-base:latest true` (the CLI's
//!    wall time; also with `--network none`, and the Engine API called directly over
//!    its socket without the CLI) against a Paddock Docker runner: `DockerBackend::provision`
//!    plus the first `exec` of `true` through the worker.
//! 2. Warm-pool claim latency: `POST /v1/runners` against a real `paddock serve` whose
//!    profile keeps a warm pool, against the same request for a profile without one.
//! 3. Memory of 50 idle runners: the containers' cgroups (and `docker stats`), and what
//!    they cost on the host outside their cgroups (containerd shims, the engine).
//!
//! It only measures: nothing here asserts a timing. Without a Docker engine or the
//! `paddock-base` image it says why and exits 0.
//!
//! Run it alone on its Docker engine: every `paddock serve` starting on the machine
//! (any test's) sweeps the Paddock containers its store does not know as orphans, this
//! bench's included; and the `paddock serve` of section 2 would sweep other people's,
//! so that section is skipped while the engine holds Paddock containers not this run's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::stats;

use paddock_backend::docker::{DockerBackend, DockerConfig};
use paddock_backend::local::WorkerCommand;
use paddock_backend::{Backend, Limits, NetworkPolicy, WorkerClient};
use paddock_testkit::contract;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const IMAGE: &str = "paddock-base:latest";
const ENGINE_SOCKET: &str = "/var/run/docker.sock";
/// Cold starts per path, after one unrecorded warm-up each (page cache, first connection).
const COLD_N: usize = 10;
/// Warm-pool claims, and cold creates of the profile without a pool.
const CLAIM_N: usize = 10;
const CLAIM_COLD_N: usize = 5;
/// The warm pool's size in the bench's profile.
const POOL: usize = 2;
/// Idle runners for the memory figures.
const IDLE_N: usize = 50;
const SWEPT: &str = "if the container is gone, another `paddock serve` on this machine probably \
                     swept it as an orphan: run this bench alone on its Docker engine";

fn ratio(what: &str, num: Duration, den: Duration, target: Option<f64>) {
    let r = num.as_secs_f64() / den.as_secs_f64();
    match target {
        Some(t) => println!("  ratio {what}: {r:.2}x (target ≤ {t}x)"),
        None => println!("  ratio {what}: {r:.2}x"),
    }
}

fn mib(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

/// The static worker of `scripts/test` when there is one, else `paddock worker`.
fn worker() -> (WorkerCommand, Option<PathBuf>) {
    if let Ok(w) = std::env::var("PADDOCK_STATIC_WORKER") {
        let p = PathBuf::from(w);
        if p.exists() {
            return (
                WorkerCommand {
                    path: p.clone(),
                    args: vec![],
                },
                Some(p),
            );
        }
    }
    (
        WorkerCommand {
            path: PathBuf::from(env!("CARGO_BIN_EXE_paddock")),
            args: vec!["worker".into()],
        },
        None,
    )
}

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI runs")
}

/// Why the bench cannot run here, if it cannot.
fn unavailable() -> Option<String> {
    match Command::new("docker").args(["info"]).output() {
        Err(e) => return Some(format!("no docker CLI ({e})")),
        Ok(o) if !o.status.success() => {
            return Some(format!(
                "the Docker engine does not answer: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ))
        }
        Ok(_) => {}
    }
    if !Path::new(ENGINE_SOCKET).exists() {
        return Some(format!("no engine socket at {ENGINE_SOCKET}"));
    }
    if !docker(&["image", "inspect", IMAGE]).status.success() {
        return Some(format!(
            "no {IMAGE} image (build it with scripts/images.sh)"
        ));
    }
    None
}

/// A directory the runners' user can traverse (the worker socket lives below it).
fn tempdir() -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    d
}

/// Removes, when dropped (a panic included), every container this bench started: Paddock
/// containers whose bind mounts lie under one of `roots`, and the raw baseline's
/// containers by their label. Other Paddock containers on the engine are left alone.
struct Cleanup {
    roots: Vec<PathBuf>,
    label: String,
}

impl Cleanup {
    fn ours(&self) -> Vec<String> {
        let mut out = vec![];
        let managed = docker(&["ps", "-aq", "--filter", "label=paddock.managed=true"]);
        let ids: Vec<String> = String::from_utf8_lossy(&managed.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if !ids.is_empty() {
            let mut args = vec![
                "inspect",
                "-f",
                "{{.Id}} {{range .HostConfig.Binds}}{{.}} {{end}}",
            ];
            args.extend(ids.iter().map(String::as_str));
            // Containers removed meanwhile make inspect fail for them only.
            let o = docker(&args);
            for line in String::from_utf8_lossy(&o.stdout).lines() {
                let mut parts = line.split_whitespace();
                let Some(id) = parts.next() else { continue };
                if parts.any(|b| {
                    self.roots
                        .iter()
                        .any(|r| b.starts_with(&*r.to_string_lossy()))
                }) {
                    out.push(id.to_string());
                }
            }
        }
        let raw = docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=paddock.bench.run={}", self.label),
        ]);
        out.extend(
            String::from_utf8_lossy(&raw.stdout)
                .split_whitespace()
                .map(str::to_string),
        );
        out
    }

    fn run(&self) -> usize {
        let ids = self.ours();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids.iter().map(String::as_str));
            let _ = docker(&args);
        }
        ids.len()
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let n = self.run();
        if n > 0 && std::thread::panicking() {
            eprintln!("docker_runner: removed {n} leftover container(s)");
        }
    }
}

/// One HTTP/1.0 request to the Engine API over its Unix socket: (status, body).
fn engine(method: &str, path: &str, body: Option<&Value>) -> (u16, String) {
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut s = UnixStream::connect(ENGINE_SOCKET).expect("engine socket");
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write to the engine");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read from the engine");
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// `docker <args>`: the CLI process's wall time.
fn cli_run(args: &[&str]) -> Duration {
    let t = Instant::now();
    let o = docker(args);
    let d = t.elapsed();
    assert!(
        o.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    d
}

/// The engine without the CLI: create + start + wait for `true` to exit (network none,
/// as Paddock's runners here). Removal is outside the timed part.
fn raw_engine_run(label: &str) -> Duration {
    let spec = json!({
        "Image": IMAGE,
        "Cmd": ["true"],
        "Labels": {"paddock.bench.run": label},
        "HostConfig": {"NetworkMode": "none"},
    });
    let t = Instant::now();
    let (code, body) = engine("POST", "/containers/create", Some(&spec));
    assert_eq!(code, 201, "create: {body}");
    let id = serde_json::from_str::<Value>(&body).expect("create JSON")["Id"]
        .as_str()
        .expect("container id")
        .to_string();
    let (code, body) = engine("POST", &format!("/containers/{id}/start"), None);
    assert_eq!(code, 204, "start: {body}");
    let (code, body) = engine("POST", &format!("/containers/{id}/wait"), None);
    let d = t.elapsed();
    assert_eq!(code, 200, "wait: {body}");
    assert!(body.contains("\"StatusCode\":0"), "true failed: {body}");
    let (code, body) = engine("DELETE", &format!("/containers/{id}?force=1"), None);
    assert_eq!(code, 204, "remove: {body}");
    d
}

fn backend(root: &Path, worker: WorkerCommand) -> DockerBackend {
    DockerBackend::new(DockerConfig::new(root.join("runners"), worker))
}

/// `/proc/loadavg`'s first three figures (the machine may be busy with other work).
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

async fn cold_start(root: &Path, worker: WorkerCommand, label: &str) {
    println!(
        "\n== 1. Cold time to first exec ({COLD_N} samples per path after 1 unrecorded warm-up; \
         the paths take turns so background load falls on all alike; load average {})",
        loadavg()
    );
    let run_default = ["run", "--rm", IMAGE, "true"];
    let run_none = ["run", "--rm", "--network", "none", IMAGE, "true"];
    let b = backend(root, worker);
    let (mut cli_default, mut cli_none, mut raw, mut cold, mut destroy) =
        (vec![], vec![], vec![], vec![], vec![]);
    for i in 0..=COLD_N {
        let a = cli_run(&run_default);
        let n = cli_run(&run_none);
        let r = raw_engine_run(label);
        let spec = contract::spec(NetworkPolicy::None, Limits::default());
        let t = Instant::now();
        let p = b
            .provision(&spec)
            .await
            .unwrap_or_else(|e| panic!("provision: {e} ({SWEPT})"));
        let out = WorkerClient::new(p.connector)
            .exec(&json!({"argv": ["true"]}))
            .await
            .expect("exec");
        let d = t.elapsed();
        assert_eq!(out.code, Some(0), "{out:?}");
        let t = Instant::now();
        b.destroy(&spec.runner_id).await.expect("destroy");
        if i > 0 {
            cli_default.push(a);
            cli_none.push(n);
            raw.push(r);
            cold.push(d);
            destroy.push(t.elapsed());
        }
    }
    let cli_default = stats("baseline: docker run --rm paddock-base true", cli_default);
    let cli_none = stats("baseline: docker run --rm --network none … true", cli_none);
    let raw = stats(
        "baseline: Engine API create+start+wait (no CLI, net none)",
        raw,
    );
    let paddock = stats("paddock: DockerBackend provision + first exec `true`", cold);
    stats("paddock: destroy (not in the figure above)", destroy);
    ratio("paddock / docker run --rm", paddock, cli_default, Some(1.2));
    ratio(
        "paddock / docker run --rm --network none",
        paddock,
        cli_none,
        None,
    );
    ratio("paddock / Engine API create+start+wait", paddock, raw, None);
    println!(
        "  note: `docker run --rm` includes a CLI process and the container's removal; the \
         Engine API path is three HTTP/1.0 calls on the engine's socket, removal untimed; \
         Paddock's figure includes a hardened create (binds, tmpfs, init, caps dropped), an \
         inspect, the worker's start and health check and one exec round trip; its destroy \
         is timed separately."
    );
}

/// A `paddock serve` process, killed when dropped.
struct Serve {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Serve {
    /// Starts `paddock serve`; `Err` with its log when it exits before listening (a
    /// config it rejects, say).
    fn start(data: &Path, config: &Path, log: PathBuf) -> Result<Serve, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_paddock"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(data)
            .arg("--config")
            .arg(config)
            .env("PADDOCK_LOG_LEVEL", "warn")
            .env("PADDOCK_LOG_FORMAT", "json")
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).expect("log file")))
            .spawn()
            .expect("paddock serve starts");
        let mut serve = Serve {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !paddock_testkit::answers_http(port) {
            if let Ok(Some(status)) = serve.child.try_wait() {
                return Err(format!(
                    "paddock serve exited ({status}): {}",
                    serve.log_text()
                ));
            }
            assert!(
                Instant::now() < deadline,
                "paddock serve did not listen within 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(serve)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http.request(method, url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("HTTP request");
    let status = resp.status().as_u16();
    let v = resp.json().await.unwrap_or(Value::Null);
    (status, v)
}

/// The ids of the pool's warm runners that are ready to be claimed (`"warm": true`,
/// running).
async fn pool_ready(http: &reqwest::Client, url: &str) -> Vec<String> {
    let (code, v) = call(
        http,
        reqwest::Method::GET,
        &format!("{url}/v1/runners?limit=100"),
        None,
    )
    .await;
    assert_eq!(code, 200, "list runners: {v}");
    v["data"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .filter(|r| r["warm"] == true && r["state"] == "running")
                .filter_map(|r| r["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until the pool is full: (how long it took, the warm runners' ids).
async fn wait_pool(http: &reqwest::Client, serve: &Serve) -> (Duration, Vec<String>) {
    let t = Instant::now();
    loop {
        let ids = pool_ready(http, &serve.url).await;
        if ids.len() >= POOL {
            return (t.elapsed(), ids);
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "the warm pool did not fill within 120 s: {}",
            serve.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn warm_pool(root: &Path, worker: Option<&Path>) {
    println!(
        "\n== 2. Warm-pool claim latency (POST /v1/runners round trip over HTTP, reqwest keep-alive; \
         pool of {POOL}; {CLAIM_N} claims, {CLAIM_COLD_N} cold creates)"
    );
    let worker = worker
        .map(|w| format!("worker = {:?}\n", w.display().to_string()))
        .unwrap_or_default();
    let config = root.join("paddock.toml");
    std::fs::write(
        &config,
        format!(
            r#"default_profile = "box"

[profiles.box]
backend = "docker"
runbook = "base"
warm_pool = {POOL}

[profiles.cold]
backend = "docker"
runbook = "base"

[docker]
{worker}"#
        ),
    )
    .expect("config");
    let data = root.join("data");
    std::fs::create_dir(&data).expect("data dir");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    // Containers carry their Paddock's runner directory (`paddock.root`): this server
    // adopts and sweeps only its own, whatever else runs on the engine.
    let serve = match Serve::start(&data, &config, root.join("serve.log")) {
        Ok(s) => s,
        Err(e) if e.contains("warm_pool") => {
            println!(
                "warm pool: not available (this paddock rejects `warm_pool`: {})",
                e.trim()
            );
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let http = reqwest::Client::new();
    let (fill, mut pool) = wait_pool(&http, &serve).await;
    println!(
        "pool filled ({POOL} warm runners running) {:.2} s after listening",
        fill.as_secs_f64()
    );
    // First connection, outside the samples.
    pool_ready(&http, &serve.url).await;

    let runners = format!("{}/v1/runners", serve.url);
    let mut warm = vec![];
    let mut refill = vec![];
    let mut from_pool = 0;
    for _ in 0..CLAIM_N {
        let t = Instant::now();
        let (code, r) = call(
            &http,
            reqwest::Method::POST,
            &runners,
            Some(json!({"execution_profile": "box"})),
        )
        .await;
        warm.push(t.elapsed());
        assert_eq!(code, 200, "claim: {r}");
        assert_eq!(r["state"], "running", "{r}");
        let id = r["id"].as_str().expect("runner id");
        from_pool += pool.iter().any(|p| p == id) as usize;
        assert_ne!(r["warm"], true, "a claimed runner leaves the pool: {r}");
        let (d, ids) = wait_pool(&http, &serve).await;
        refill.push(d);
        pool = ids;
        let (code, v) = call(
            &http,
            reqwest::Method::DELETE,
            &format!("{runners}/{id}"),
            None,
        )
        .await;
        assert!(code < 300, "delete: {v}");
    }
    let mut cold = vec![];
    for _ in 0..CLAIM_COLD_N {
        let t = Instant::now();
        let (code, r) = call(
            &http,
            reqwest::Method::POST,
            &runners,
            Some(json!({"execution_profile": "cold"})),
        )
        .await;
        cold.push(t.elapsed());
        assert_eq!(code, 200, "create: {r}");
        assert_eq!(r["state"], "running", "{r}");
        let id = r["id"].as_str().expect("runner id");
        let (code, v) = call(
            &http,
            reqwest::Method::DELETE,
            &format!("{runners}/{id}"),
            None,
        )
        .await;
        assert!(code < 300, "delete: {v}");
    }
    let w = stats(
        "paddock serve: POST /v1/runners, claims a warm runner",
        warm,
    );
    let c = stats("paddock serve: POST /v1/runners, no pool (cold)", cold);
    stats(
        &format!("pool back to {POOL} running after a claim (no request)"),
        refill,
    );
    ratio("cold / warm claim", c, w, None);
    println!(
        "  {from_pool} of {CLAIM_N} claims returned a runner that was in the pool just before \
         (matched by id against GET /v1/runners); refill is timed from the claim's response"
    );
    drop(serve);
}

/// Proportional set size (else resident size) of a process, in bytes.
fn pss(pid: &str) -> Option<u64> {
    let field = |file: &str, key: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/{file}"))
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    field("smaps_rollup", "Pss:").or_else(|| field("status", "VmRSS:"))
}

/// Host memory outside the containers' cgroups: the containerd shims of the containers
/// `cids` (count, PSS; one `containerd-shim-runc-v2 -id <container id>` each), and the
/// PSS of dockerd and containerd.
fn host_side(cids: &[String]) -> (usize, u64, u64, u64) {
    let (mut n, mut shims, mut dockerd, mut containerd) = (0, 0, 0, 0);
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = e.file_name().to_string_lossy().to_string();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let m = || pss(&pid).unwrap_or(0);
        match comm.trim() {
            c if c.starts_with("containerd-shim") => {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let cmdline = String::from_utf8_lossy(&cmdline);
                let id = cmdline
                    .split('\0')
                    .skip_while(|a| *a != "-id")
                    .nth(1)
                    .unwrap_or("");
                if cids.iter().any(|c| c == id) {
                    n += 1;
                    shims += m();
                }
            }
            "dockerd" => dockerd += m(),
            "containerd" => containerd += m(),
            _ => {}
        }
    }
    (n, shims, dockerd, containerd)
}

fn self_rss() -> u64 {
    pss("self").unwrap_or(0)
}

/// `12.3MiB` (docker's units) in bytes.
fn docker_size(s: &str) -> Option<f64> {
    let i = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = s.split_at(i);
    let k = match unit {
        "B" => 1.0,
        "KiB" | "kB" => 1024.0,
        "MiB" | "MB" => 1024.0 * 1024.0,
        "GiB" | "GB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(num.parse::<f64>().ok()? * k)
}

fn cgroup_memory(cid: &str, file: &str) -> Option<String> {
    [
        format!("/sys/fs/cgroup/memory/docker/{cid}/{file}"),
        format!("/sys/fs/cgroup/memory/system.slice/docker-{cid}.scope/{file}"),
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok())
}

async fn idle_memory(root: &Path, worker: WorkerCommand) {
    println!("\n== 3. Memory of {IDLE_N} idle runners (paddock-base, network none, no limits)");
    let b = backend(root, worker);
    let host_before = host_side(&[]);
    let self_before = self_rss();
    let t = Instant::now();
    let mut ids = vec![];
    for _ in 0..IDLE_N / 2 {
        let (s1, s2) = (
            contract::spec(NetworkPolicy::None, Limits::default()),
            contract::spec(NetworkPolicy::None, Limits::default()),
        );
        let (a, c) = tokio::join!(b.provision(&s1), b.provision(&s2));
        a.unwrap_or_else(|e| panic!("provision: {e} ({SWEPT})"));
        ids.push(s1.runner_id);
        c.unwrap_or_else(|e| panic!("provision: {e} ({SWEPT})"));
        ids.push(s2.runner_id);
    }
    println!(
        "provisioned {} runners two at a time in {:.1} s",
        ids.len(),
        t.elapsed().as_secs_f64()
    );
    // Idle: let the workers settle after their health checks.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let names: Vec<String> = ids.iter().map(|id| format!("paddock-{id}")).collect();
    let mut args = vec!["inspect", "-f", "{{.Id}}"];
    args.extend(names.iter().map(String::as_str));
    let o = docker(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cids: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    let (mut usage, mut kmem, mut rss, mut cache, mut read) = (0u64, 0u64, 0u64, 0u64, 0);
    for cid in &cids {
        let Some(u) = cgroup_memory(cid, "memory.usage_in_bytes") else {
            continue;
        };
        read += 1;
        usage += u.trim().parse::<u64>().unwrap_or(0);
        kmem += cgroup_memory(cid, "memory.kmem.usage_in_bytes")
            .and_then(|k| k.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let stat = cgroup_memory(cid, "memory.stat").unwrap_or_default();
        let get = |k: &str| {
            stat.lines()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        rss += get("total_rss ");
        cache += get("total_cache ");
    }
    let mut args = vec!["stats", "--no-stream", "--format", "{{.MemUsage}}"];
    args.extend(names.iter().map(String::as_str));
    let o = docker(&args);
    let stats_sum: Vec<f64> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| docker_size(l.split('/').next().unwrap_or("").trim()))
        .collect();
    let host_after = host_side(&cids);
    let self_after = self_rss();

    let per = |total: f64, n: usize| mib(total) / n.max(1) as f64;
    if read == 0 {
        println!("cgroup v1 memory files: not found (cgroup v2 or another driver?)");
    } else {
        println!(
            "cgroup v1 memory.usage_in_bytes ({read} containers)   total {:>8.1} MiB   per runner {:>6.2} MiB",
            mib(usage as f64),
            per(usage as f64, read)
        );
        println!(
            "  of which memory.stat total_rss                   total {:>8.1} MiB   per runner {:>6.2} MiB",
            mib(rss as f64),
            per(rss as f64, read)
        );
        println!(
            "  of which memory.stat total_cache (page cache)    total {:>8.1} MiB   per runner {:>6.2} MiB",
            mib(cache as f64),
            per(cache as f64, read)
        );
        println!(
            "  of which memory.kmem.usage_in_bytes (kernel)     total {:>8.1} MiB   per runner {:>6.2} MiB",
            mib(kmem as f64),
            per(kmem as f64, read)
        );
    }
    let s: f64 = stats_sum.iter().sum();
    println!(
        "docker stats --no-stream MemUsage ({} containers)   total {:>8.1} MiB   per runner {:>6.2} MiB",
        stats_sum.len(),
        mib(s),
        per(s, stats_sum.len())
    );
    let d = |a: u64, b: u64| a as f64 - b as f64;
    println!("  (docker stats shows usage minus inactive file pages, from the same cgroup files)");
    println!(
        "host side, outside the cgroups: {} containerd shims of these containers, PSS total {:>6.1} MiB \
         ({:.2} MiB per runner)",
        host_after.0,
        mib(host_after.1 as f64),
        per(host_after.1 as f64, host_after.0)
    );
    println!(
        "  engine PSS growth while they ran: dockerd {:+.1} MiB, containerd {:+.1} MiB \
         (other users of this engine move these too)",
        mib(d(host_after.2, host_before.2)),
        mib(d(host_after.3, host_before.3)),
    );
    println!(
        "orchestrator side: no egress proxies (network none; they run only for `limited`); \
         this process (DockerBackend in-process) {:+.1} MiB PSS",
        mib(d(self_after, self_before))
    );

    let t = Instant::now();
    for pair in ids.chunks(2) {
        let futs = pair.iter().map(|id| b.destroy(id));
        for r in futures::future::join_all(futs).await {
            r.expect("destroy");
        }
    }
    println!(
        "destroyed {} runners two at a time in {:.1} s",
        ids.len(),
        t.elapsed().as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    if let Some(why) = unavailable() {
        println!("SKIPPED: {why}");
        return;
    }
    let (worker, static_worker) = worker();
    let engine_version =
        String::from_utf8_lossy(&docker(&["version", "-f", "{{.Server.Version}}"]).stdout)
            .trim()
            .to_string();
    println!(
        "Docker runner benchmark ({} CPUs; engine {engine_version}; worker {} {})",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        worker.path.display(),
        worker.args.join(" ")
    );
    let root = tempdir();
    let _cleanup = Cleanup {
        roots: vec![root.path().to_path_buf()],
        label: format!("{}-{}", std::process::id(), root.path().display()).replace('/', "_"),
    };
    cold_start(root.path(), worker.clone(), &_cleanup.label).await;
    warm_pool(root.path(), static_worker.as_deref()).await;
    let left = _cleanup.run();
    if left > 0 {
        println!("(removed {left} container(s) paddock serve left behind: runners outlive it)");
    }
    idle_memory(root.path(), worker).await;
}
