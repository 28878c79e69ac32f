//! The backend contract suite. Each check takes a backend (and, for adoption, a way to
//! build a fresh instance of it, as a restarted orchestrator would) and panics with a
//! clear message on the first broken promise.
// A test suite: a broken promise is a panic with its message, as in any test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::BodyExt;
use hyper::Method;
use paddock_backend::worker::{ExecOutput, WorkerClient};
use paddock_backend::{Backend, Limits, Managed, NetworkPolicy, RunnerSpec, SeccompLevel};
use paddock_core::id;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn spec(network: NetworkPolicy, limits: Limits) -> RunnerSpec {
    RunnerSpec {
        runner_id: id::new(id::RUNNER),
        session_id: None,
        image: None,
        env: BTreeMap::from([("PADDOCK_TEST".to_string(), "contract".to_string())]),
        limits,
        network,
        seccomp: Default::default(),
    }
}

async fn provision(b: &dyn Backend, spec: &RunnerSpec) -> WorkerClient {
    b.provision(spec)
        .await
        .unwrap_or_else(|e| panic!("{}: provision failed: {e}", b.name()));
    WorkerClient::new(b.connector(&spec.runner_id))
}

pub async fn sh(w: &WorkerClient, script: &str) -> ExecOutput {
    w.exec(&json!({"command": script}))
        .await
        .unwrap_or_else(|e| panic!("exec {script:?}: {e}"))
}

async fn raw(w: &WorkerClient, method: Method, path: &str, body: &[u8]) -> (u16, Bytes) {
    let resp = w
        .request(
            method,
            path,
            Bytes::copy_from_slice(body),
            Some("application/octet-stream"),
        )
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    (status, body)
}

fn managed(list: &[Managed], id: &str) -> Option<bool> {
    list.iter().find(|m| m.runner_id == id).map(|m| m.running)
}

/// provision → healthz → exec → files → stop/start keeps the workspace → list-managed →
/// destroy (twice).
pub async fn lifecycle(b: &dyn Backend) {
    let spec = spec(NetworkPolicy::None, Limits::default());
    let id = spec.runner_id.clone();
    let w = provision(b, &spec).await;
    let h = w.healthz().await.expect("healthz");
    assert_eq!(h["status"], "ok", "{h}");

    // Exit codes, stderr, environment.
    let ok = sh(&w, "echo hello; echo oops >&2; echo $PADDOCK_TEST").await;
    assert_eq!(ok.code, Some(0));
    assert_eq!(ok.stdout_text(), "hello\ncontract\n");
    assert_eq!(ok.stderr_text(), "oops\n");
    assert_eq!(sh(&w, "exit 3").await.code, Some(3));
    let argv = w
        .exec(&json!({"argv": ["printf", "%s|", "a b", "c"], "stdin": ""}))
        .await
        .expect("argv exec");
    assert_eq!(argv.stdout_text(), "a b|c|");
    let piped = w
        .exec(&json!({"command": "tr a-z A-Z", "stdin": "shout"}))
        .await
        .expect("stdin exec");
    assert_eq!(piped.stdout_text(), "SHOUT");

    // Large output arrives whole.
    let big = sh(&w, "head -c 3000000 /dev/zero | tr '\\0' 'x'").await;
    assert_eq!(big.stdout.len(), 3_000_000, "large output is complete");
    assert!(big.stdout.iter().all(|c| *c == b'x'));

    // A timeout kills the command and everything it started.
    let started = Instant::now();
    let t = w
        .exec(&json!({"command": "sleep 30 & sleep 30; echo never", "timeout_ms": 400}))
        .await
        .expect("timeout exec");
    assert!(t.timed_out, "{t:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the timeout took {:?}",
        started.elapsed()
    );
    let left = sh(
        &w,
        "cat /proc/[0-9]*/comm 2>/dev/null | grep -c '^sleep$' || true",
    )
    .await;
    assert_eq!(
        left.stdout_text().trim(),
        "0",
        "no process of a timed-out command survives"
    );

    // Cancel ends a running command.
    let w2 = w.clone();
    let long = tokio::spawn(async move {
        w2.exec(&json!({"command": "sleep 30", "id": "long-one"}))
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let c = w
        .json(Method::POST, "/cancel", Some(&json!({"id": "long-one"})))
        .await
        .expect("cancel");
    assert_eq!(c["cancelled"], json!(["long-one"]), "{c}");
    let out = tokio::time::timeout(Duration::from_secs(10), long)
        .await
        .expect("cancelled exec ends")
        .expect("task")
        .expect("exec");
    assert!(out.cancelled, "{out:?}");

    // Files round trip.
    let (st, _) = raw(
        &w,
        Method::PUT,
        "/files/write?path=dir/note.txt&mkdirs=true",
        b"remember me",
    )
    .await;
    assert!((200..300).contains(&st), "write: {st}");
    let (st, body) = raw(&w, Method::GET, "/files/read?path=dir/note.txt", b"").await;
    assert_eq!((st, body.as_ref()), (200, b"remember me".as_ref()));
    let list = w
        .json(Method::GET, "/files/list?path=dir", None)
        .await
        .expect("list");
    let names: Vec<&str> = list["entries"]
        .as_array()
        .or_else(|| list.as_array())
        .expect("entries")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(names, ["note.txt"], "{list}");
    let stat = w
        .json(Method::GET, "/files/stat?path=dir/note.txt", None)
        .await
        .expect("stat");
    assert_eq!(stat["size"], 11, "{stat}");
    assert_eq!(
        sh(&w, "cat /workspace/dir/note.txt").await.stdout_text(),
        "remember me"
    );

    // Stop, then start: the workspace is intact.
    let found = b.list_managed().await.expect("list managed");
    assert_eq!(
        managed(&found, &id),
        Some(true),
        "list-managed finds the running runner"
    );
    b.stop(&id, Duration::from_secs(2)).await.expect("stop");
    assert!(
        w.healthz().await.is_err(),
        "a stopped runner's worker does not answer"
    );
    let found = b.list_managed().await.expect("list managed");
    assert_eq!(
        managed(&found, &id),
        Some(false),
        "a stopped runner is listed as not running"
    );
    b.start(&spec).await.expect("start");
    let w = WorkerClient::new(b.connector(&id));
    assert_eq!(
        sh(&w, "cat dir/note.txt").await.stdout_text(),
        "remember me"
    );

    // Delete a file, then destroy twice.
    let (st, _) = raw(&w, Method::DELETE, "/files?path=dir/note.txt", b"").await;
    assert!((200..300).contains(&st), "delete: {st}");
    let (st, _) = raw(&w, Method::GET, "/files/read?path=dir/note.txt", b"").await;
    assert_eq!(st, 404);
    b.destroy(&id).await.expect("destroy");
    b.destroy(&id).await.expect("destroy is idempotent");
    let found = b.list_managed().await.expect("list managed");
    assert_eq!(managed(&found, &id), None, "a destroyed runner is gone");
}

/// A runner outlives the backend instance that made it: a fresh instance (a restarted
/// orchestrator) finds it running and can use it.
pub async fn adoption(b: Arc<dyn Backend>, fresh: impl Fn() -> Arc<dyn Backend>) {
    let spec = spec(NetworkPolicy::None, Limits::default());
    let id = spec.runner_id.clone();
    let w = provision(b.as_ref(), &spec).await;
    sh(&w, "echo kept > adopted.txt").await;
    drop(b);
    let b2 = fresh();
    let found = b2.list_managed().await.expect("list managed");
    assert_eq!(
        managed(&found, &id),
        Some(true),
        "the new instance finds the runner running"
    );
    let w2 = WorkerClient::new(b2.connector(&id));
    assert_eq!(sh(&w2, "cat adopted.txt").await.stdout_text(), "kept\n");
    b2.destroy(&id).await.expect("destroy");
}

/// Execs outlive their connection and the backend instance that started them: a
/// fresh instance (a restarted orchestrator) reads a running command's records again
/// from the start with `GET /exec/{id}` and gets its real outcome. One started with
/// `kill_on_disconnect` dies with its connection instead.
pub async fn detached_execs(b: Arc<dyn Backend>, fresh: impl Fn() -> Arc<dyn Backend>) {
    let spec = spec(NetworkPolicy::None, Limits::default());
    let id = spec.runner_id.clone();
    let w = provision(b.as_ref(), &spec).await;
    let start = |exec: &'static str, script: &'static str, kill: bool| {
        let w = w.clone();
        async move {
            let body = json!({"id": exec, "command": script, "kill_on_disconnect": kill});
            let resp = w
                .request(
                    Method::POST,
                    "/exec",
                    Bytes::from(body.to_string()),
                    Some("application/json"),
                )
                .await
                .unwrap_or_else(|e| panic!("exec {exec}: {e}"));
            assert_eq!(resp.status().as_u16(), 200, "exec {exec} starts");
            // The first record (its start) says it runs; then the connection goes.
            let mut stream = resp.into_body().into_data_stream();
            let first = stream.next().await;
            assert!(matches!(first, Some(Ok(_))), "exec {exec} streams a record");
        }
    };
    start(
        "contract-kept",
        "echo begun; sleep 1; echo done > kept.txt; echo finished; exit 7",
        false,
    )
    .await;
    start("contract-killed", "sleep 1; echo ran > killed.txt", true).await;
    drop(w);
    drop(b);
    let b2 = fresh();
    let w2 = WorkerClient::new(b2.connector(&id));
    let (code, records) = read_exec(&w2, "contract-kept").await;
    assert_eq!(
        code,
        Some(7),
        "{}: the exec's real exit code after re-attaching: {records:?}",
        b2.name()
    );
    let stdout: String = records
        .iter()
        .filter(|r| r["type"] == "stdout")
        .map(|r| String::from_utf8_lossy(&paddock_backend::worker::record_bytes(r)).into_owned())
        .collect();
    assert_eq!(stdout, "begun\nfinished\n", "every record, from the start");
    assert_eq!(sh(&w2, "cat kept.txt").await.stdout_text(), "done\n");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let killed = sh(&w2, "cat killed.txt 2>&1; echo rc=$?")
        .await
        .stdout_text();
    assert!(
        killed.contains("rc=1"),
        "{}: a kill_on_disconnect exec dies with its connection: {killed}",
        b2.name()
    );
    b2.destroy(&id).await.expect("destroy");
}

/// `GET /exec/{id}?from=0` to its end: the exit code and every record.
async fn read_exec(w: &WorkerClient, exec: &str) -> (Option<i64>, Vec<Value>) {
    let (status, body) = raw(w, Method::GET, &format!("/exec/{exec}?from=0"), b"").await;
    assert_eq!(status, 200, "GET /exec/{exec} finds it");
    let records: Vec<Value> = body
        .split(|b| *b == b'\n')
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect();
    let code = records
        .iter()
        .find(|r| r["type"] == "exit")
        .and_then(|r| r["code"].as_i64());
    (code, records)
}

/// Attacks from inside the sandbox; each must fail.
pub async fn isolation_attacks(b: &dyn Backend) {
    isolation_attacks_via(b, "127.0.0.1").await
}

/// The same, where the orchestrator's host is reached at `host_addr` from a sandbox
/// with unrestricted networking (a container reaches its bridge's gateway, not the
/// host's loopback).
pub async fn isolation_attacks_via(b: &dyn Backend, host_addr: &str) {
    let caps = b.capabilities();
    let limits = Limits {
        pids: Some(64),
        ..Limits::default()
    };
    let spec = spec(NetworkPolicy::None, limits);
    let id = spec.runner_id.clone();
    let w = provision(b, &spec).await;

    // Files outside the workspace: a host file next to the runners, and system files.
    let secret_dir = std::env::temp_dir().join(format!("paddock-secret-{id}"));
    std::fs::create_dir_all(&secret_dir).expect("secret dir");
    let secret = secret_dir.join("secret.txt");
    std::fs::write(&secret, "host secret").expect("secret");
    let read = sh(&w, &format!("cat {} 2>&1", secret.display())).await;
    assert_ne!(
        read.code,
        Some(0),
        "reading a host file must fail: {read:?}"
    );
    assert!(!read.stdout_text().contains("host secret"));
    let shadow = sh(&w, "cat /etc/shadow 2>&1").await;
    assert_ne!(
        shadow.code,
        Some(0),
        "/etc/shadow must not be readable: {shadow:?}"
    );
    for target in [
        "/usr/bin/paddock-pwned",
        "/etc/passwd",
        &format!("{}/x", secret_dir.display()),
    ] {
        let wr = sh(&w, &format!("echo pwned > {target} 2>&1")).await;
        assert_ne!(wr.code, Some(0), "writing {target} must fail: {wr:?}");
    }
    assert!(!std::path::Path::new("/usr/bin/paddock-pwned").exists());
    assert!(!secret_dir.join("x").exists());
    assert_eq!(
        std::fs::read_to_string("/etc/passwd")
            .map(|p| p.contains("pwned"))
            .ok(),
        Some(false)
    );
    let _ = std::fs::remove_dir_all(&secret_dir);

    // Host processes are invisible.
    let procs = sh(&w, "ls /proc | grep -c '^[0-9][0-9]*$'").await;
    let n: u32 = procs.stdout_text().trim().parse().unwrap_or(999);
    assert!(
        n < 16,
        "the sandbox sees {n} processes; the host's must be hidden"
    );
    let host_pid = std::process::id();
    let mine = sh(
        &w,
        &format!("cat /proc/{host_pid}/cmdline 2>/dev/null | tr '\\0' ' '"),
    )
    .await;
    let own_cmdline =
        std::fs::read_to_string(format!("/proc/{host_pid}/cmdline")).unwrap_or_default();
    assert!(
        own_cmdline.is_empty()
            || !mine
                .stdout_text()
                .contains(own_cmdline.split('\0').next().unwrap_or("?")),
        "the test process is visible inside the sandbox"
    );

    // No privileges: not root, no capabilities, no new privileges, no mounts.
    let who = sh(
        &w,
        "id -u; grep -E '^(CapEff|NoNewPrivs)' /proc/self/status",
    )
    .await;
    let text = who.stdout_text();
    assert!(!text.starts_with("0\n"), "the sandbox runs as root: {text}");
    assert!(text.contains("CapEff:\t0000000000000000"), "{text}");
    assert!(text.contains("NoNewPrivs:\t1"), "{text}");
    let userns = sh(&w, "unshare -U true 2>&1").await;
    assert_ne!(
        userns.code,
        Some(0),
        "nested user namespaces must be refused: {userns:?}"
    );
    let mount = sh(&w, "mount -t tmpfs none /tmp 2>&1").await;
    assert_ne!(mount.code, Some(0), "mount must fail: {mount:?}");

    // A TCP listener on the host is unreachable under network: none ...
    let listener = std::net::TcpListener::bind((host_addr, 0)).expect("listener");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let probe = format!("bash -c 'echo hi > /dev/tcp/{host_addr}/{port}' 2>&1");
    let tcp = sh(&w, &probe).await;
    assert_ne!(
        tcp.code,
        Some(0),
        "connecting to the host must fail: {tcp:?}"
    );
    assert!(
        listener.accept().is_err(),
        "the host listener accepted a connection from the sandbox"
    );
    // ... and reachable with unrestricted networking (so the probe itself works).
    if caps.network_policies.iter().any(|p| p == "unrestricted") {
        let open = spec_with(NetworkPolicy::Unrestricted);
        let wo = provision(b, &open).await;
        let ok = sh(&wo, &probe).await;
        assert_eq!(ok.code, Some(0), "the control connection must work: {ok:?}");
        let deadline = Instant::now() + Duration::from_secs(5);
        while listener.accept().is_err() {
            assert!(
                Instant::now() < deadline,
                "the control connection never arrived"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        b.destroy(&open.runner_id).await.expect("destroy");
    }

    // A fork bomb stops at the pids limit: the shell prints how many processes it
    // started and fails ("Cannot fork") when the limit bites.
    if caps.limits.pids.is_some() {
        let bomb = sh(
            &w,
            "i=0; while [ $i -lt 300 ]; do sleep 30 & i=$((i+1)); echo $i; done",
        )
        .await;
        let started: u32 = bomb
            .stdout_text()
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0);
        assert!(
            (10..64).contains(&started),
            "{started} processes started under a pids limit of 64 (some must start, \
             not all): {bomb:?}"
        );
        assert_ne!(
            bomb.code,
            Some(0),
            "the fork bomb ran to completion: {bomb:?}"
        );
        assert!(
            bomb.stderr_text().to_lowercase().contains("fork"),
            "the shell should report that it cannot fork: {bomb:?}"
        );
        // The runner works again once the bomb's processes are gone.
        let after = sh(&w, "echo alive").await;
        assert_eq!(after.stdout_text(), "alive\n");
    } else {
        eprintln!(
            "SKIPPED fork-bomb check: {} enforces no pids limit on this host",
            b.name()
        );
    }
    // The sandbox cannot point the orchestrator at another socket: it replaces its
    // socket with a link to another runner's, and its client must refuse the peer.
    let other = spec_with(NetworkPolicy::None);
    provision(b, &other).await;
    if let paddock_backend::Connector::UnixSocket {
        path: other_sock, ..
    } = b.connector(&other.runner_id)
    {
        let swap = sh(
            &w,
            &format!("rm -f /run/paddock/worker.sock && ln -s {} /run/paddock/worker.sock && echo swapped", other_sock.display()),
        )
        .await;
        if swap.stdout_text().contains("swapped") {
            let redirected = WorkerClient::new(b.connector(&id));
            let answer = redirected.healthz().await;
            assert!(
                answer.is_err(),
                "the client followed a swapped socket to another runner: {answer:?}"
            );
        }
    }
    b.destroy(&other.runner_id).await.expect("destroy");

    b.destroy(&id).await.expect("destroy");
}

fn spec_with(network: NetworkPolicy) -> RunnerSpec {
    spec(network, Limits::default())
}

/// The whole suite, in order.
pub async fn run_all(b: Arc<dyn Backend>, fresh: impl Fn() -> Arc<dyn Backend>) {
    lifecycle(b.as_ref()).await;
    isolation_attacks(b.as_ref()).await;
    detached_execs(b.clone(), &fresh).await;
    adoption(b, fresh).await;
}

/// Reads a value's `name` fields (helper for list answers).
pub fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["name"].as_str().map(str::to_string))
        .collect()
}

/// The system-call probe (crate `paddock-syscall-probe`): `$PADDOCK_SYSCALL_PROBE`
/// (scripts/test builds it static), else one built beside the test binaries (`cargo
/// build --workspace`); None when neither exists.
pub fn syscall_probe() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("PADDOCK_SYSCALL_PROBE") {
        let p = std::path::PathBuf::from(p);
        return p.exists().then_some(p);
    }
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.parent()?.join("paddock-syscall-probe");
    p.exists().then_some(p)
}

/// The probe, or None after saying why it is missing (a failure when
/// `PADDOCK_REQUIRE_<what>` asks for the tests of that backend).
pub fn syscall_probe_or_skip(what: &str) -> Option<std::path::PathBuf> {
    let probe = syscall_probe();
    crate::require_or_skip(
        what,
        probe.is_some(),
        "no system-call probe: set PADDOCK_SYSCALL_PROBE (scripts/test builds it) or cargo build -p paddock-syscall-probe",
    )
    .then_some(probe)
    .flatten()
}

/// Runs the probe in a new runner with `level`; its answers by call, and the runner's
/// `enforced` report.
async fn probe_in(
    b: &dyn Backend,
    level: SeccompLevel,
    probe: &[u8],
    calls: &[&str],
) -> (BTreeMap<String, String>, Value, ExecOutput) {
    let mut spec = spec_with(NetworkPolicy::None);
    spec.seccomp = level;
    let p = b
        .provision(&spec)
        .await
        .unwrap_or_else(|e| panic!("{}: provision failed: {e}", b.name()));
    let w = WorkerClient::new(b.connector(&spec.runner_id));
    let (st, _) = raw(&w, Method::PUT, "/files/write?path=probe", probe).await;
    assert_eq!(st, 200, "uploading the probe");
    let out = sh(
        &w,
        &format!("chmod +x probe && ./probe {}", calls.join(" ")),
    )
    .await;
    assert_eq!(out.code, Some(0), "{level:?}: the probe ran: {out:?}");
    let answers = out
        .stdout_text()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    // The kernel's own word on the filter, and what `unshare -U` makes of it.
    let status = sh(
        &w,
        "grep '^Seccomp:' /proc/self/status; unshare -U true 2>&1; echo unshare=$?",
    )
    .await;
    b.destroy(&spec.runner_id).await.expect("destroy");
    (
        answers,
        serde_json::to_value(&p.enforced).expect("enforced"),
        status,
    )
}

/// The system-call filter (`seccomp` of the profile): every call the policy denies
/// fails with `EPERM` from a probe program inside the sandbox (`clone3` with `ENOSYS`,
/// so that the C library falls back to `clone`), at `default` and `strict`; the kernel
/// reports a filter; `unshare -U` and `ptrace` attach fail. The positive control: the
/// same probe in an `unconfined` runner gets other answers for calls that can succeed
/// there, and the kernel reports no filter.
pub async fn syscall_filter(b: &dyn Backend, probe: &std::path::Path) {
    let bytes = std::fs::read(probe).expect("the probe binary");
    let mut calls: Vec<&str> = paddock_seccomp::denied(SeccompLevel::Strict);
    calls.extend(["clone3", "clone_newuser", "ptrace_attach", "socket_vsock"]);
    // What the issue names, whatever the policy's list says.
    let must = [
        "kexec_load",
        "init_module",
        "finit_module",
        "bpf",
        "perf_event_open",
        "ptrace_attach",
        "mount",
        "pivot_root",
        "unshare",
        "clone_newuser",
        "keyctl",
        "userfaultfd",
        "open_by_handle_at",
        "iopl",
        "ioperm",
        "io_uring_setup",
        "socket_vsock",
    ];
    for level in [SeccompLevel::Default, SeccompLevel::Strict] {
        let (got, enforced, status) = probe_in(b, level, &bytes, &calls).await;
        let denied = paddock_seccomp::denied(level);
        for name in denied.iter().copied().chain(must) {
            let want = if name == "clone3" { "ENOSYS" } else { "EPERM" };
            assert_eq!(
                got.get(name).map(String::as_str),
                Some(want),
                "{}: {level:?}: {name}: {got:?}",
                b.name()
            );
        }
        assert_eq!(got.get("clone3").map(String::as_str), Some("ENOSYS"));
        assert_eq!(enforced["seccomp"], json!(level), "{enforced}");
        let text = status.stdout_text();
        assert!(text.contains("Seccomp:\t2"), "{level:?}: {text}");
        assert!(!text.contains("unshare=0"), "unshare -U must fail: {text}");
    }
    // Strict denies more than default.
    let (got, _, _) = probe_in(b, SeccompLevel::Default, &bytes, &["personality"]).await;
    assert_eq!(
        got["personality"], "ok",
        "default leaves personality: {got:?}"
    );

    let (got, enforced, status) = probe_in(b, SeccompLevel::Unconfined, &bytes, &calls).await;
    // Docker's own default profile still applies to an unconfined container: it denies
    // `unshare`, `clone3`, `perf_event_open` and `process_vm_readv` itself.
    let passes: &[&str] = if b.name() == "docker" {
        &["ptrace_attach", "clock_adjtime"]
    } else {
        &[
            "unshare",
            "clone3",
            "ptrace_attach",
            "process_vm_readv",
            "perf_event_open",
        ]
    };
    for name in passes.iter().copied() {
        assert_ne!(
            got.get(name).map(String::as_str),
            Some("EPERM"),
            "{}: unconfined: {name} should get past the (absent) filter: {got:?}",
            b.name()
        );
    }
    assert!(
        enforced.get("seccomp").is_none_or(Value::is_null),
        "{enforced}"
    );
    let text = status.stdout_text();
    if b.name() == "local" {
        assert!(text.contains("Seccomp:\t0"), "unconfined: {text}");
    }
}

/// Host pids of the processes running as `uid`.
pub fn pids_of(uid: u32) -> Vec<String> {
    let out = std::process::Command::new("pgrep")
        .args(["-u", &uid.to_string()])
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// `sh -c script` on the host as `uid`: a process of that runner's identity with every
/// namespace gone.
pub fn as_uid(uid: u32, script: &str) -> std::process::Output {
    std::process::Command::new("setpriv")
        .args([
            &format!("--reuid={uid}"),
            &format!("--regid={uid}"),
            "--clear-groups",
            "--",
            "sh",
            "-c",
            script,
        ])
        .output()
        .expect("setpriv runs")
}

/// Runner A's host identity (`ua`), outside every namespace and given runner B's
/// workspace path `ws_b` (which holds `secret.txt`), cannot read, list, write or
/// hard-link B's files, nor signal B's processes; B's identity (`ub`) can do each of
/// them (the positive control: the attack could have worked).
pub fn host_identity_attacks(ws_b: &std::path::Path, ua: u32, ub: u32) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(ws_b).expect("B's workspace");
    assert_eq!(
        (meta.uid(), meta.mode() & 0o777),
        (ub, 0o700),
        "B's workspace"
    );
    let pid_b = pids_of(ub)
        .into_iter()
        .next()
        .expect("a process of B's uid");
    let ws = ws_b.display();
    let attacks = [
        format!("cat {ws}/secret.txt"),
        format!("ls {ws}"),
        format!("echo pwned > {ws}/new.txt"),
        format!("ln {ws}/secret.txt {ws}/link.txt"),
        format!("kill -0 {pid_b}"),
    ];
    for attack in &attacks {
        let out = as_uid(ua, attack);
        assert!(
            !out.status.success(),
            "as A's uid {ua}: `{attack}` succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let own = as_uid(ub, attack);
        assert!(
            own.status.success(),
            "as B's uid {ub}: `{attack}` failed (the attack could not have worked): {}",
            String::from_utf8_lossy(&own.stderr)
        );
    }
}

/// No host fact inside a runner: none of `host_paths` (the data directory, the worker
/// binary's host path) shows in the sandbox's `/proc/1/cmdline`, its processes' command
/// lines or their environment — while those files are read for real (the worker's own
/// command line is there: the positive control).
pub async fn no_host_facts(b: &dyn Backend, host_paths: &[&str]) {
    let spec = spec_with(NetworkPolicy::None);
    let w = provision(b, &spec).await;
    let seen = sh(
        &w,
        "for f in /proc/1/cmdline /proc/[0-9]*/cmdline /proc/[0-9]*/environ; do tr '\\0' ' ' < $f 2>/dev/null; echo; done",
    )
    .await
    .stdout_text();
    assert!(
        seen.contains("--workspace /workspace"),
        "{}: the worker's command line was not read: {seen}",
        b.name()
    );
    for p in host_paths {
        assert!(
            !seen.contains(p),
            "{}: the host path {p} shows inside the runner:\n{seen}",
            b.name()
        );
    }
    b.destroy(&spec.runner_id).await.expect("destroy");
}
