//! The backend contract suite (paddock-testkit) against the Docker backend and a real
//! Docker engine, with the `paddock-base` runbook image (scripts/images.sh). Required
//! in CI (`PADDOCK_REQUIRE_DOCKER=1`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use paddock_backend::docker::{DockerBackend, DockerConfig};
use paddock_backend::local::WorkerCommand;
use paddock_backend::{Backend, Isolation, Limits, NetworkPolicy};
use paddock_testkit::{contract, require_or_skip};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// The worker mounted into containers: the static one when built, else this `paddock`.
fn worker() -> WorkerCommand {
    match std::env::var_os("PADDOCK_STATIC_WORKER").map(PathBuf::from) {
        Some(p) if p.exists() => WorkerCommand {
            path: p,
            args: vec![],
        },
        _ => WorkerCommand {
            path: PathBuf::from(env!("CARGO_BIN_EXE_paddock")),
            args: vec!["worker".into()],
        },
    }
}

/// The host uids the tests' containers get, one each (no host user has them, and the
/// local backend's tests use others).
const UIDS: (u32, u32) = (500_000, 1_000);

fn docker(root: &Path) -> DockerBackend {
    let mut cfg = DockerConfig::new(root.join("docker"), worker());
    cfg.uid_range = Some(UIDS);
    DockerBackend::new(cfg)
}

/// Docker and the base image, or a printed reason.
fn available() -> bool {
    let engine = Command::new("docker")
        .args(["image", "inspect", "paddock-base:latest"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    require_or_skip(
        "docker",
        engine,
        "no Docker engine with the paddock-base image (scripts/test starts dockerd and runs scripts/images.sh)",
    )
}

fn data_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    d
}

/// The default bridge's address on this host (`docker0`): how a container reaches it.
fn bridge_gateway() -> String {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "docker0"])
        .output()
        .expect("ip addr");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("docker0 has no IPv4 address: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_lifecycle() {
    if !available() {
        return;
    }
    let d = data_dir();
    contract::lifecycle(&docker(d.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_isolation_attacks() {
    if !available() {
        return;
    }
    let d = data_dir();
    let b = docker(d.path());
    assert_eq!(b.capabilities().isolation, Isolation::Container);
    contract::isolation_attacks_via(&b, &bridge_gateway()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_system_call_filter() {
    if !available() {
        return;
    }
    let Some(probe) = contract::syscall_probe_or_skip("docker") else {
        return;
    };
    let d = data_dir();
    contract::syscall_filter(&docker(d.path()), &probe).await;
}

/// Each container runs as a host uid of its own, which owns its workspace: runner A's
/// uid, outside every namespace, cannot touch runner B's files or processes, B's can
/// (contract::host_identity_attacks); a new backend instance keeps the uids, and
/// destroying both releases them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_container_has_a_host_uid_of_its_own() {
    if !available() {
        return;
    }
    let d = data_dir();
    let root = d.path().to_path_buf();
    let b = docker(&root);
    let (sa, sb) = (
        contract::spec(NetworkPolicy::None, Limits::default()),
        contract::spec(NetworkPolicy::None, Limits::default()),
    );
    let pa = b.provision(&sa).await.expect("provision A");
    let pb = b.provision(&sb).await.expect("provision B");
    let (ua, ub) = (
        b.uid_of(&sa.runner_id).expect("A's uid"),
        b.uid_of(&sb.runner_id).expect("B's uid"),
    );
    assert_ne!(ua, ub);
    assert!((UIDS.0..UIDS.0 + UIDS.1).contains(&ua), "{ua}");
    // Landlock holds in the container too (on a kernel that has ABI 6, Linux 6.12):
    // the image's /home is out of reach.
    let landlock = pa.enforced.landlock.clone().expect("a Landlock report");
    let wa = paddock_backend::WorkerClient::new(pa.connector);
    if landlock.abi >= 6 {
        assert_eq!(landlock.status, "fully_enforced", "{landlock:?}");
        let home = contract::sh(&wa, "ls /home 2>&1").await;
        assert!(home.stdout_text().contains("ermission denied"), "{home:?}");
    } else {
        eprintln!(
            "SKIPPED the Landlock checks: this kernel has Landlock ABI {}",
            landlock.abi
        );
    }
    let me = contract::sh(&wa, "id -u; id -un; echo $HOME")
        .await
        .stdout_text();
    assert_eq!(me, format!("{ua}\npaddock\n/workspace\n"));
    let wb = paddock_backend::WorkerClient::new(pb.connector);
    contract::sh(&wb, "echo b-secret > secret.txt").await;
    let ws_b = root.join("docker").join(&sb.runner_id).join("workspace");
    contract::host_identity_attacks(&ws_b, ua, ub);
    let again = docker(&root);
    assert_eq!(again.uid_of(&sa.runner_id), Some(ua));
    for s in [&sa, &sb] {
        again.destroy(&s.runner_id).await.expect("destroy");
    }
    assert!(
        again.claimed_uids().is_empty(),
        "{:?}",
        again.claimed_uids()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_runners_survive_a_new_backend_instance() {
    if !available() {
        return;
    }
    let d = data_dir();
    let root = d.path().to_path_buf();
    contract::adoption(Arc::new(docker(&root)), move || {
        Arc::new(docker(&root)) as Arc<dyn Backend>
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_execs_outlive_their_connection() {
    if !available() {
        return;
    }
    let d = data_dir();
    let root = d.path().to_path_buf();
    contract::detached_execs(Arc::new(docker(&root)), move || {
        Arc::new(docker(&root)) as Arc<dyn Backend>
    })
    .await;
}

/// A test host: a container of the project's own serving HTTP on the default bridge.
struct TestHost {
    name: String,
    ip: String,
}

impl TestHost {
    fn start(tag: &str) -> TestHost {
        let name = format!("paddock-test-{tag}-{}", std::process::id());
        let _ = Command::new("docker").args(["rm", "-f", &name]).output();
        let out = Command::new("docker")
            .args([
                "run",
                "-d",
                "--rm",
                "--name",
                &name,
                "--label",
                "paddock.test=true",
                "paddock-base:latest",
                "python3",
                "-m",
                "http.server",
                "8000",
            ])
            .output()
            .expect("docker run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ip = Command::new("docker")
            .args(["inspect", "-f", "{{.NetworkSettings.IPAddress}}", &name])
            .output()
            .expect("inspect");
        let ip = String::from_utf8_lossy(&ip.stdout).trim().to_string();
        assert!(!ip.is_empty(), "the test host has an address");
        // Wait until it serves.
        for _ in 0..100 {
            if std::net::TcpStream::connect((ip.as_str(), 8000)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        TestHost { name, ip }
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.name])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limited_networking_goes_only_through_the_allowlisting_proxy() {
    use paddock_backend::{Limits, NetworkPolicy};
    if !available() {
        return;
    }
    let allowed = TestHost::start("allowed");
    let denied = TestHost::start("denied");
    let d = data_dir();
    let b = docker(d.path());
    let spec = contract::spec(
        NetworkPolicy::Limited {
            allowed_hosts: vec![allowed.ip.clone(), "*.allowed.example".into()],
        },
        Limits::default(),
    );
    let id = spec.runner_id.clone();
    b.provision(&spec).await.expect("provision");
    let w = paddock_backend::WorkerClient::new(b.connector(&id));
    // The allowed host, through the proxy (plain HTTP and a CONNECT tunnel).
    let ok = contract::sh(
        &w,
        &format!(
            "curl -s -o /dev/null -w '%{{http_code}}' --max-time 10 http://{}:8000/",
            allowed.ip
        ),
    )
    .await;
    assert_eq!(
        ok.stdout_text(),
        "200",
        "allowed host via the proxy: {ok:?}"
    );
    let tunnel = contract::sh(
        &w,
        &format!(
            "curl -s -p -o /dev/null -w '%{{http_code}}' --max-time 10 http://{}:8000/",
            allowed.ip
        ),
    )
    .await;
    assert_eq!(
        tunnel.stdout_text(),
        "200",
        "CONNECT tunnel to the allowed host: {tunnel:?}"
    );
    // A host not in the allowlist: 403 from the proxy.
    let no = contract::sh(
        &w,
        &format!(
            "curl -s -o /dev/null -w '%{{http_code}}' --max-time 10 http://{}:8000/",
            denied.ip
        ),
    )
    .await;
    assert_eq!(no.stdout_text(), "403", "denied host: {no:?}");
    // Around the proxy: direct TCP to the allowed host, to a public address and to the
    // cloud metadata address all fail.
    for target in [
        format!("{}/8000", allowed.ip),
        "1.1.1.1/80".to_string(),
        "169.254.169.254/80".to_string(),
    ] {
        let direct = contract::sh(
            &w,
            &format!("timeout 5 bash -c 'echo > /dev/tcp/{target}' 2>&1; echo rc=$?"),
        )
        .await;
        assert!(
            !direct.stdout_text().contains("rc=0"),
            "direct TCP to {target} worked: {direct:?}"
        );
    }
    // The metadata address through the proxy is refused too.
    let meta = contract::sh(
        &w,
        "curl -s -o /dev/null -w '%{http_code}' --max-time 10 http://169.254.169.254/latest/meta-data/",
    )
    .await;
    assert_eq!(
        meta.stdout_text(),
        "403",
        "metadata via the proxy: {meta:?}"
    );
    // No DNS for anything: names resolve only at the proxy.
    let dns = contract::sh(&w, "getent hosts deb.debian.org; echo rc=$?").await;
    assert!(!dns.stdout_text().contains("rc=0"), "DNS answered: {dns:?}");
    // The proxy logged each decision.
    let log = std::fs::read_to_string(d.path().join("docker").join(&id).join("egress.log"))
        .expect("egress log");
    let decisions: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let about = |host: &str, allowed: bool| {
        decisions
            .iter()
            .filter(|d| d["host"] == host && d["allowed"] == allowed)
            .count()
    };
    assert_eq!(about(&allowed.ip, true), 2, "{log}");
    assert_eq!(about(&denied.ip, false), 1, "{log}");
    assert_eq!(about("169.254.169.254", false), 1, "{log}");
    // A restarted orchestrator (a fresh backend) re-attaches the proxy on the same port.
    drop(b);
    let b2 = docker(d.path());
    let managed = b2.list_managed().await.expect("list");
    assert!(managed.iter().any(|m| m.runner_id == id && m.running));
    let again = contract::sh(
        &w,
        &format!(
            "curl -s -o /dev/null -w '%{{http_code}}' --max-time 10 http://{}:8000/",
            allowed.ip
        ),
    )
    .await;
    assert_eq!(again.stdout_text(), "200", "after re-attaching: {again:?}");
    b2.destroy(&id).await.expect("destroy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_memory_and_cpu_limits_hold() {
    use paddock_backend::{Enforcement, Limits, NetworkPolicy};
    if !available() {
        return;
    }
    let d = data_dir();
    let b = docker(d.path());
    let spec = contract::spec(
        NetworkPolicy::None,
        Limits {
            memory_mb: Some(64),
            cpu: Some(0.5),
            ..Limits::default()
        },
    );
    let p = b.provision(&spec).await.expect("provision");
    assert_eq!(p.enforced.memory, Some(Enforcement::Container));
    assert_eq!(p.enforced.cpu, Some(Enforcement::Container));
    let w = paddock_backend::WorkerClient::new(p.connector.clone());
    // A 256 MiB allocation in a 64 MiB container (no swap beyond it) cannot succeed;
    // a small one can.
    let small = contract::sh(
        &w,
        "python3 -c 'b = bytearray(16 * 1024 * 1024); print(len(b))'",
    )
    .await;
    assert_eq!(small.stdout_text().trim(), "16777216", "{small:?}");
    let big = contract::sh(
        &w,
        "python3 -c 'b = bytearray(256 * 1024 * 1024); print(len(b))' 2>&1",
    )
    .await;
    assert!(
        big.code != Some(0) || big.signal.is_some(),
        "a 256 MiB allocation succeeded under a 64 MiB limit: {big:?}"
    );
    // The CPU quota is the engine's: half a CPU.
    let quota = contract::sh(
        &w,
        "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us 2>/dev/null || cat /sys/fs/cgroup/cpu.max",
    )
    .await;
    let nums: Vec<u64> = quota
        .stdout_text()
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    assert!(
        nums.len() == 2 && nums[0] * 2 == nums[1],
        "expected a quota of half the period: {quota:?}"
    );
    // An OOM kill is counted from outside (the container's memory cgroup).
    if big.signal == Some(9) {
        assert!(
            b.oom_kills(&spec.runner_id).unwrap_or(0) >= 1,
            "the OOM kill of {big:?} was not counted"
        );
    }
    b.destroy(&spec.runner_id).await.expect("destroy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_host_path_shows_inside_a_container() {
    if !available() {
        return;
    }
    let d = data_dir();
    let data = d.path().display().to_string();
    let worker = worker().path.display().to_string();
    contract::no_host_facts(&docker(d.path()), &[&data, &worker]).await;
}
