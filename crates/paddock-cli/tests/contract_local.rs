//! The backend contract suite (paddock-testkit) against the local backend, with real
//! bubblewrap and `paddock worker` inside. Required in CI (`PADDOCK_REQUIRE_BWRAP=1`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use paddock_backend::local::{LocalBackend, LocalConfig, LocalMode, WorkerCommand};
use paddock_backend::{Backend, Isolation, Limits, NetworkPolicy};
use paddock_testkit::{contract, require_or_skip};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn worker() -> WorkerCommand {
    WorkerCommand {
        path: PathBuf::from(env!("CARGO_BIN_EXE_paddock")),
        args: vec!["worker".into()],
    }
}

/// The host uids the tests' runners get, one each (no host user has them).
const UIDS: (u32, u32) = (300_000, 1_000);

fn local(root: &Path, mode: LocalMode) -> LocalBackend {
    let mut cfg = LocalConfig::new(root.join("runners"), worker());
    cfg.mode = mode;
    cfg.uid_range = Some(UIDS);
    LocalBackend::new(cfg)
}

/// A data directory the unprivileged sandbox user can traverse.
fn data_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    d
}

fn bwrap_or_skip(b: &LocalBackend) -> bool {
    require_or_skip(
        "bwrap",
        b.has_bwrap(),
        "bubblewrap is not installed (scripts/test installs it)",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_lifecycle() {
    let d = data_dir();
    let b = local(d.path(), LocalMode::Bwrap);
    if !bwrap_or_skip(&b) {
        return;
    }
    contract::lifecycle(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_isolation_attacks() {
    let d = data_dir();
    let b = local(d.path(), LocalMode::Bwrap);
    if !bwrap_or_skip(&b) {
        return;
    }
    assert_eq!(b.capabilities().isolation, Isolation::Namespaces);
    contract::isolation_attacks(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_runners_survive_a_new_backend_instance() {
    let d = data_dir();
    let root = d.path().to_path_buf();
    let b = local(&root, LocalMode::Bwrap);
    if !bwrap_or_skip(&b) {
        return;
    }
    contract::adoption(Arc::new(b), move || {
        Arc::new(local(&root, LocalMode::Bwrap)) as Arc<dyn Backend>
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_execs_outlive_their_connection() {
    let d = data_dir();
    let root = d.path().to_path_buf();
    let b = local(&root, LocalMode::Bwrap);
    if !bwrap_or_skip(&b) {
        return;
    }
    contract::detached_execs(Arc::new(b), move || {
        Arc::new(local(&root, LocalMode::Bwrap)) as Arc<dyn Backend>
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limits_are_enforced_or_reported() {
    let d = data_dir();
    let b = local(d.path(), LocalMode::Bwrap);
    if !bwrap_or_skip(&b) {
        return;
    }
    let spec = contract::spec(
        NetworkPolicy::None,
        Limits {
            memory_mb: Some(64),
            ..Limits::default()
        },
    );
    let p = b.provision(&spec).await.expect("provision");
    let w = paddock_backend::WorkerClient::new(p.connector.clone());
    if p.enforced.memory.is_some() {
        // Allocate 256 MiB in a 64 MiB runner: the allocation must not succeed.
        let out = contract::sh(
            &w,
            "head -c 268435456 /dev/zero | tail -c 1 > /dev/null; echo done",
        )
        .await;
        let hit = out.code != Some(0)
            || out.signal.is_some()
            || !out.stdout_text().contains("done")
            || out.stderr_text().contains("emory");
        // `tail` buffers little; use python for a real resident allocation when present.
        let py = contract::sh(
            &w,
            "python3 -c 'b = bytearray(256 * 1024 * 1024); print(len(b))' 2>&1",
        )
        .await;
        assert!(
            py.code != Some(0) || py.signal.is_some(),
            "a 256 MiB allocation succeeded under a 64 MiB limit ({:?}): {py:?} (tail check: {hit})",
            p.enforced.memory
        );
    } else {
        eprintln!("SKIPPED memory check: no memory limit is enforceable on this host");
    }
    b.destroy(&spec.runner_id).await.expect("destroy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_process_mode_works_and_says_it_is_unisolated() {
    let d = data_dir();
    let b = local(d.path(), LocalMode::Process);
    let caps = b.capabilities();
    assert_eq!(caps.isolation, Isolation::Unisolated);
    assert!(
        caps.note
            .as_deref()
            .is_some_and(|n| n.contains("NOT isolated")),
        "{caps:?}"
    );
    assert_eq!(caps.network_policies, ["unrestricted"]);
    // It refuses what it cannot enforce.
    let none = contract::spec(NetworkPolicy::None, Limits::default());
    let err = b.check(&none).unwrap_err().to_string();
    assert!(err.starts_with("network:"), "{err}");
    let spec = contract::spec(NetworkPolicy::Unrestricted, Limits::default());
    let p = b.provision(&spec).await.expect("provision");
    let w = paddock_backend::WorkerClient::new(p.connector);
    let out = contract::sh(&w, "echo $PADDOCK_TEST; pwd").await;
    assert_eq!(out.code, Some(0));
    assert!(out.stdout_text().starts_with("contract\n"), "{out:?}");
    b.destroy(&spec.runner_id).await.expect("destroy");
}

/// The pids of the processes whose command line names runner `id`.
fn processes_naming(id: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(id))
        })
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect()
}

/// A crash between the spawn of a sandbox and the record of its pid leaves a sandbox
/// nobody recorded (and, without limits, in no cgroup): a destroy still finds its
/// processes by the runner id their command line names, and kills them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_without_a_record_of_its_pid_is_still_destroyed() {
    let d = data_dir();
    let b = local(d.path(), LocalMode::Bwrap);
    if !bwrap_or_skip(&b) {
        return;
    }
    let spec = contract::spec(NetworkPolicy::None, Limits::default());
    b.provision(&spec).await.expect("provision");
    let dir = d.path().join("runners").join(&spec.runner_id);
    assert!(
        !processes_naming(&spec.runner_id).is_empty(),
        "the sandbox's bwrap names its runner"
    );
    std::fs::remove_file(dir.join("meta.json")).expect("meta.json");
    b.destroy(&spec.runner_id).await.expect("destroy");
    assert!(
        processes_naming(&spec.runner_id).is_empty(),
        "left running: {:?}",
        processes_naming(&spec.runner_id)
    );
    assert!(!dir.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_system_call_filter() {
    let d = data_dir();
    let b = local(d.path(), LocalMode::Bwrap);
    if !bwrap_or_skip(&b) {
        return;
    }
    let Some(probe) = contract::syscall_probe_or_skip("bwrap") else {
        return;
    };
    contract::syscall_filter(&b, &probe).await;
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Each runner runs as a host uid of its own, which owns its workspace (mode 0700): a
/// process of runner A's uid outside every namespace, given B's paths, cannot read,
/// write, hard-link or signal anything of B's — while B's own uid can (the positive
/// control). A restarted backend keeps each runner's uid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_runner_has_a_host_uid_of_its_own() {
    let d = data_dir();
    let root = d.path().to_path_buf();
    let b = local(&root, LocalMode::Bwrap);
    if !bwrap_or_skip(&b) {
        return;
    }
    if !require_or_skip(
        "bwrap",
        is_root(),
        "per-runner uids need root (and setpriv)",
    ) {
        return;
    }
    let (sa, sb) = (
        contract::spec(NetworkPolicy::None, Limits::default()),
        contract::spec(NetworkPolicy::None, Limits::default()),
    );
    b.provision(&sa).await.expect("provision A");
    let pb = b.provision(&sb).await.expect("provision B");
    let (ua, ub) = (
        b.uid_of(&sa.runner_id).expect("A's uid"),
        b.uid_of(&sb.runner_id).expect("B's uid"),
    );
    assert_ne!(ua, ub);
    let range = UIDS.0..UIDS.0 + UIDS.1;
    assert!(range.contains(&ua) && range.contains(&ub), "{ua} {ub}");
    // The sandbox's processes run as its own host uid.
    assert!(!contract::pids_of(ua).is_empty() && !contract::pids_of(ub).is_empty());
    let wb = paddock_backend::WorkerClient::new(pb.connector.clone());
    contract::sh(&wb, "echo b-secret > secret.txt").await;
    let ws_b = root.join("runners").join(&sb.runner_id).join("workspace");
    contract::host_identity_attacks(&ws_b, ua, ub);
    // A new backend instance (a restarted orchestrator) sees the same uids, and a
    // restart of the sandbox keeps it.
    let again = local(&root, LocalMode::Bwrap);
    assert_eq!(again.uid_of(&sa.runner_id), Some(ua));
    again
        .stop(&sa.runner_id, std::time::Duration::from_millis(100))
        .await
        .expect("stop");
    let pa = again.start(&sa).await.expect("start");
    let wa = paddock_backend::WorkerClient::new(pa.connector);
    assert_eq!(contract::sh(&wa, "true").await.code, Some(0));
    assert!(!contract::pids_of(ua).is_empty(), "restarted as {ua}");
    for s in [&sa, &sb] {
        again.destroy(&s.runner_id).await.expect("destroy");
    }
    assert!(
        again.claimed_uids().is_empty(),
        "{:?}",
        again.claimed_uids()
    );
}

/// Files under the runners' root owned by a uid of `range`.
fn owned_in(dir: &Path, range: &std::ops::Range<u32>, out: &mut Vec<String>) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(m) = std::fs::symlink_metadata(e.path()) else {
            continue;
        };
        if range.contains(&m.uid()) {
            out.push(format!("{} ({})", e.path().display(), m.uid()));
        }
        if m.is_dir() {
            owned_in(&e.path(), range, out);
        }
    }
}

/// 200 runners created (each writes a file) and destroyed in turn: no uid stays
/// claimed and no file of a released uid is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_runners_leave_no_uid_behind() {
    let d = data_dir();
    let b = local(d.path(), LocalMode::Bwrap);
    if !bwrap_or_skip(&b) {
        return;
    }
    if !require_or_skip(
        "bwrap",
        is_root(),
        "per-runner uids need root (and setpriv)",
    ) {
        return;
    }
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..200 {
        let spec = contract::spec(NetworkPolicy::None, Limits::default());
        let p = b.provision(&spec).await.expect("provision");
        seen.insert(b.uid_of(&spec.runner_id).expect("uid"));
        let w = paddock_backend::WorkerClient::new(p.connector);
        let out = contract::sh(&w, "echo x > file.txt && mkdir -p d && echo y > d/f").await;
        assert_eq!(out.code, Some(0), "{out:?}");
        b.destroy(&spec.runner_id).await.expect("destroy");
    }
    assert!(seen.len() > 1, "uids are spread over the range: {seen:?}");
    assert!(b.claimed_uids().is_empty(), "{:?}", b.claimed_uids());
    let mut left = vec![];
    owned_in(d.path(), &(UIDS.0..UIDS.0 + UIDS.1), &mut left);
    assert!(left.is_empty(), "files of released uids: {left:?}");
}

/// A namespace escape, simulated: a plain-process worker (no namespaces at all) with
/// Landlock only cannot open another runner's workspace or the data directory, though
/// the host's permissions would let it (the orchestrator reads the same file: the
/// positive control), while its own workspace and the system stay usable. A bubblewrap
/// runner is confined the same way (`/` is not readable, `/usr` is), and both report it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn landlock_keeps_a_worker_to_its_workspace() {
    if !require_or_skip(
        "landlock",
        paddock_worker::confine::kernel_abi() >= 6,
        "this kernel has no Landlock ABI 6 (Linux 6.12)",
    ) {
        return;
    }
    let d = data_dir();
    let b = local(d.path(), LocalMode::Process);
    let (sa, sb) = (
        contract::spec(NetworkPolicy::Unrestricted, Limits::default()),
        contract::spec(NetworkPolicy::Unrestricted, Limits::default()),
    );
    let pa = b.provision(&sa).await.expect("provision A");
    let pb = b.provision(&sb).await.expect("provision B");
    let landlock = pa.enforced.landlock.clone().expect("a Landlock report");
    assert_eq!(landlock.status, "fully_enforced", "{landlock:?}");
    assert!(landlock.abi >= 6, "{landlock:?}");
    let wa = paddock_backend::WorkerClient::new(pa.connector);
    let wb = paddock_backend::WorkerClient::new(pb.connector);
    assert_eq!(
        contract::sh(&wb, "echo b-secret > secret.txt").await.code,
        Some(0)
    );
    let secret = d
        .path()
        .join("runners")
        .join(&sb.runner_id)
        .join("workspace/secret.txt");
    assert_eq!(
        std::fs::read_to_string(&secret).expect("the host may read it"),
        "b-secret\n"
    );
    let data = d.path().display();
    for attack in [
        format!("cat {}", secret.display()),
        format!("ls {data}"),
        format!("echo pwned > {data}/pwned.txt"),
        format!("ln -s {} own-link && cat own-link", secret.display()),
    ] {
        let out = contract::sh(&wa, &format!("exec 2>&1; {attack}")).await;
        assert_ne!(out.code, Some(0), "`{attack}` worked: {out:?}");
        assert!(
            out.stdout_text().contains("ermission denied"),
            "`{attack}`: {out:?}"
        );
    }
    assert!(!d.path().join("pwned.txt").exists());
    let own = contract::sh(&wa, "echo mine > mine.txt && cat mine.txt && head -c 5 /etc/passwd && ls /usr/bin >/dev/null && echo ok").await;
    assert_eq!(
        (own.code, own.stdout_text().ends_with("ok\n")),
        (Some(0), true),
        "{own:?}"
    );
    for s in [&sa, &sb] {
        b.destroy(&s.runner_id).await.expect("destroy");
    }

    let bw = local(d.path(), LocalMode::Bwrap);
    if !bw.has_bwrap() {
        return;
    }
    let spec = contract::spec(NetworkPolicy::None, Limits::default());
    let p = bw.provision(&spec).await.expect("provision");
    assert_eq!(
        p.enforced.landlock.as_ref().map(|l| l.status.as_str()),
        Some("fully_enforced")
    );
    let w = paddock_backend::WorkerClient::new(p.connector);
    let root = contract::sh(&w, "ls / 2>&1").await;
    assert!(root.stdout_text().contains("ermission denied"), "{root:?}");
    let usr = contract::sh(&w, "ls /usr >/dev/null && echo x > /tmp/t && cat /tmp/t").await;
    assert_eq!(
        (usr.code, usr.stdout_text()),
        (Some(0), "x\n".to_string()),
        "{usr:?}"
    );
    bw.destroy(&spec.runner_id).await.expect("destroy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_host_path_shows_inside_a_local_runner() {
    let d = data_dir();
    let b = local(d.path(), LocalMode::Bwrap);
    if !bwrap_or_skip(&b) {
        return;
    }
    let data = d.path().display().to_string();
    contract::no_host_facts(&b, &[&data, env!("CARGO_BIN_EXE_paddock")]).await;
}
