//! Local runner figures, measured against the raw baseline in the same run:
//! a bare `bwrap … true` (with and without dropping to the sandbox user), then a
//! Paddock local runner's time to first exec, and exec round-trip latency on a running
//! runner. Run with `cargo bench -p paddock-cli --bench local_runner`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::stats;

use paddock_backend::local::{LocalBackend, LocalConfig, WorkerCommand};
use paddock_backend::{Backend, Limits, NetworkPolicy, SeccompLevel, WorkerClient};
use paddock_testkit::contract;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn bare_bwrap(setpriv: bool) -> Duration {
    let bwrap = common::bare_bwrap(&["/bin/true"]);
    let mut cmd = if setpriv {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            "bwrap",
        ])
        .args(bwrap.get_args());
        c
    } else {
        bwrap
    };
    let t = Instant::now();
    let st = cmd.status().expect("bwrap runs");
    assert!(st.success(), "bare bwrap failed");
    t.elapsed()
}

#[tokio::main]
async fn main() {
    if Command::new("bwrap").arg("--version").output().is_err() {
        println!("SKIPPED: bubblewrap is not installed");
        return;
    }
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let b = LocalBackend::new(LocalConfig::new(
        root.path().join("runners"),
        WorkerCommand {
            path: PathBuf::from(env!("CARGO_BIN_EXE_paddock")),
            args: vec!["worker".into()],
        },
    ));
    let (cold_n, exec_n) = (15, 300);
    println!(
        "Local runner benchmark ({} CPUs)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );

    // Warm the page cache so the first sample is not an outlier of disk reads.
    bare_bwrap(false);
    stats(
        "baseline: bwrap … /bin/true",
        (0..cold_n).map(|_| bare_bwrap(false)).collect(),
    );
    stats(
        "baseline: setpriv uid 65534 + bwrap … true",
        (0..cold_n).map(|_| bare_bwrap(true)).collect(),
    );

    let mut cold = vec![];
    let mut ids = vec![];
    for _ in 0..cold_n {
        let spec = contract::spec(
            NetworkPolicy::None,
            Limits {
                pids: Some(512),
                memory_mb: Some(2048),
                ..Limits::default()
            },
        );
        let t = Instant::now();
        let p = b.provision(&spec).await.expect("provision");
        let out = WorkerClient::new(p.connector)
            .exec(&json!({"argv": ["/bin/true"]}))
            .await
            .expect("exec");
        cold.push(t.elapsed());
        assert_eq!(out.code, Some(0));
        ids.push(spec.runner_id);
    }
    stats("paddock: provision + first exec (cold)", cold);

    let w = WorkerClient::new(b.connector(&ids[0]));
    let mut rt = vec![];
    for _ in 0..exec_n {
        let t = Instant::now();
        let out = w.exec(&json!({"argv": ["/bin/true"]})).await.expect("exec");
        rt.push(t.elapsed());
        assert_eq!(out.code, Some(0));
    }
    stats("paddock: exec /bin/true round trip (warm)", rt);
    let mut echo = vec![];
    for _ in 0..exec_n {
        let t = Instant::now();
        w.exec(&json!({"command": "echo hi"})).await.expect("exec");
        echo.push(t.elapsed());
    }
    stats("paddock: exec `sh -c 'echo hi'` round trip", echo);

    let mut destroy = vec![];
    for id in ids {
        let t = Instant::now();
        b.destroy(&id).await.expect("destroy");
        destroy.push(t.elapsed());
    }
    stats("paddock: destroy", destroy);

    // What the system-call filter and a host uid per runner cost a create: in turn,
    // one shared uid without a filter (as before them) and a uid of its own with the
    // default filter. (Landlock is the worker's own first step in both.)
    let plain = LocalBackend::new(LocalConfig::new(root.path().join("plain"), worker()));
    let mut cfg = LocalConfig::new(root.path().join("isolated"), worker());
    cfg.uid_range = Some((600_000, 1_000));
    let isolated = LocalBackend::new(cfg);
    let (mut before, mut after) = (vec![], vec![]);
    for i in 0..cold_n * 2 {
        let (b, level, out) = if i % 2 == 0 {
            (&plain, SeccompLevel::Unconfined, &mut before)
        } else {
            (&isolated, SeccompLevel::Default, &mut after)
        };
        let mut spec = contract::spec(NetworkPolicy::None, Limits::default());
        spec.seccomp = level;
        let t = Instant::now();
        b.provision(&spec).await.expect("provision");
        out.push(t.elapsed());
        b.destroy(&spec.runner_id).await.expect("destroy");
    }
    let a = stats("paddock: provision, shared uid, no seccomp filter", before);
    let z = stats(
        "paddock: provision, own uid + default seccomp filter",
        after,
    );
    println!(
        "{:<56} {:+.2} ms",
        "  added by the filter and the per-runner uid (medians)",
        (z.as_secs_f64() - a.as_secs_f64()) * 1000.0
    );
}

fn worker() -> WorkerCommand {
    WorkerCommand {
        path: PathBuf::from(env!("CARGO_BIN_EXE_paddock")),
        args: vec!["worker".into()],
    }
}
