//! Destroys off the critical path, through the real `paddock serve` and CLI: `DELETE
//! /v1/runners/{id}` answers `destroying` at once and the teardown follows in the
//! background; 200 `paddock run`s leave no sandbox, process, cgroup, container or
//! directory behind (local with real bubblewrap, and Docker); a teardown cut off by a
//! SIGKILL of the orchestrator is finished at the next start.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{bwrap, data_dir, docker_base, http, text, Serve};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const RUNS: usize = 200;

fn config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let p = dir.join("paddock.toml");
    let worker = match std::env::var("PADDOCK_STATIC_WORKER") {
        Ok(w) if Path::new(&w).exists() => format!("[docker]\nworker = {w:?}\n"),
        _ => String::new(),
    };
    std::fs::write(
        &p,
        format!(
            "[profiles.default]\npids = 64\n\n[profiles.box]\nbackend = \"docker\"\nrunbook = \"base\"\n\n{extra}\n{worker}"
        ),
    )
    .expect("config");
    p
}

/// Every runner of the server, page by page.
fn runners(s: &Serve) -> Vec<Value> {
    let mut all = vec![];
    let mut page = String::new();
    loop {
        let (st, list) = http(
            "GET",
            &format!("{}/v1/runners?limit=100{page}", s.url),
            None,
        );
        assert_eq!(st, 200, "{list}");
        all.extend(list["data"].as_array().cloned().unwrap_or_default());
        match list["next_page"].as_str() {
            Some(p) => page = format!("&page={p}"),
            None => return all,
        }
    }
}

/// Waits until every runner is `destroyed`; their ids.
fn all_destroyed(s: &Serve, expect: usize, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    loop {
        let rs = runners(s);
        let done = rs.iter().filter(|r| r["state"] == "destroyed").count();
        if rs.len() >= expect && done == rs.len() {
            return rs
                .iter()
                .filter_map(|r| r["id"].as_str().map(str::to_string))
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "{done} of {} runners destroyed after {within:?}: {rs:#?}",
            rs.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Processes whose command line names one of these runners (a local sandbox's bwrap
/// carries its runner's id).
fn processes_of(ids: &[String]) -> Vec<String> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| {
            let c = std::fs::read(e.path().join("cmdline")).ok()?;
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            ids.iter().any(|id| c.contains(id.as_str())).then_some(c)
        })
        .collect()
}

/// The cgroups (of any controller) left for these runners.
fn cgroups_of(ids: &[String]) -> Vec<String> {
    let mut parents = vec![Path::new("/sys/fs/cgroup/paddock").to_path_buf()];
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        parents.extend(rd.flatten().map(|e| e.path().join("paddock")));
    }
    let mut left = vec![];
    for p in parents {
        for id in ids {
            if p.join(id).exists() {
                left.push(p.join(id).display().to_string());
            }
        }
    }
    left
}

/// The runner directories left under the data dir, and the host uids still claimed
/// for these runners (`<backend root>/.uids/<uid>` names its runner).
fn dirs_of(data: &Path, ids: &[String]) -> Vec<String> {
    let mut left = vec![];
    for sub in ["runners", "docker"] {
        for claim in std::fs::read_dir(data.join(sub).join(".uids"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let holder = std::fs::read_to_string(claim.path()).unwrap_or_default();
            if ids.contains(&holder) {
                left.push(format!("{} ({holder})", claim.path().display()));
            }
        }
    }
    for sub in ["runners", "docker"] {
        for id in ids {
            let p = data.join(sub).join(id);
            if p.exists() {
                left.push(p.display().to_string());
            }
        }
    }
    left
}

/// Containers of this engine left for these runners.
fn containers_of(ids: &[String]) -> Vec<String> {
    let out = Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            "label=paddock.managed=true",
            "--format",
            "{{.Label \"paddock.runner_id\"}}",
        ])
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| ids.iter().any(|id| id == l.trim()))
        .map(str::to_string)
        .collect()
}

/// `paddock run -- echo hi`, `RUNS` times: each prints `hi` and exits 0; once their
/// teardowns are done nothing of them is left.
fn runs_leave_nothing_behind(profile: &str) {
    let d = data_dir();
    let s = Serve::start_with(d.path(), Some(&config(d.path(), "")));
    for i in 0..RUNS {
        let o = s.cli(&["run", "--profile", profile, "--", "echo", "hi"]);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(0), "run {i}: {err}");
        assert_eq!(out, "hi\n", "run {i}: {err}");
    }
    let ids = all_destroyed(&s, RUNS, Duration::from_secs(120));
    assert_eq!(ids.len(), RUNS);
    assert_eq!(processes_of(&ids), Vec::<String>::new(), "processes left");
    assert!(cgroups_of(&ids).is_empty(), "{:?}", cgroups_of(&ids));
    assert!(
        dirs_of(d.path(), &ids).is_empty(),
        "{:?}",
        dirs_of(d.path(), &ids)
    );
    if profile == "box" {
        assert!(containers_of(&ids).is_empty(), "{:?}", containers_of(&ids));
    }
    println!("{profile}: {RUNS} runs, nothing left behind");
}

#[test]
fn local_runs_leave_nothing_behind() {
    if !bwrap() {
        return;
    }
    runs_leave_nothing_behind("default");
}

#[test]
fn docker_runs_leave_nothing_behind() {
    if !docker_base() {
        return;
    }
    runs_leave_nothing_behind("box");
}

#[test]
fn destroy_answers_destroying_and_a_bad_wait_is_refused() {
    if !bwrap() {
        return;
    }
    let d = data_dir();
    let s = Serve::start_with(d.path(), Some(&config(d.path(), "")));
    let (_, r) = http("POST", &format!("{}/v1/runners", s.url), Some(json!({})));
    let id = r["id"].as_str().expect("id").to_string();
    let (st, err) = http(
        "DELETE",
        &format!("{}/v1/runners/{id}?wait=soon", s.url),
        None,
    );
    assert_eq!(st, 400, "{err}");
    assert!(err.to_string().contains("wait"), "{err}");
    let (st, r) = http("DELETE", &format!("{}/v1/runners/{id}", s.url), None);
    assert_eq!((st, r["state"].as_str()), (202, Some("destroying")), "{r}");
    let (st, _) = http(
        "POST",
        &format!("{}/v1/runners/{id}/exec", s.url),
        Some(json!({"command": "true"})),
    );
    assert_eq!(st, 409, "a destroying runner runs nothing");
    all_destroyed(&s, 1, Duration::from_secs(30));
    let (st, r) = http("DELETE", &format!("{}/v1/runners/{id}", s.url), None);
    assert_eq!((st, r["state"].as_str()), (200, Some("destroyed")), "{r}");
    let (_, evs) = http("GET", &format!("{}/v1/runners/{id}/events", s.url), None);
    let tos: Vec<&str> = evs["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|e| e["to"].as_str())
        .collect();
    assert_eq!(
        tos,
        [
            "creating",
            "provisioning",
            "running",
            "destroying",
            "destroyed"
        ]
    );
}

#[test]
fn a_teardown_cut_off_by_a_crash_is_finished_at_the_next_start() {
    if !bwrap() {
        return;
    }
    const N: usize = 20;
    let d = data_dir();
    // Each runner runs a command that ignores SIGTERM: its teardown waits for the
    // worker's kill grace (2 s) before the sandbox goes.
    let cfg = config(d.path(), "[runners]\nstop_grace_secs = 30\n");
    let s = Serve::start_with(d.path(), Some(&cfg));
    let mut ids = vec![];
    for _ in 0..N {
        let (st, r) = http("POST", &format!("{}/v1/runners", s.url), Some(json!({})));
        assert_eq!(st, 200, "{r}");
        let id = r["id"].as_str().expect("id").to_string();
        // Started, then left running: the connection goes after 0.3 s.
        let _ = Command::new("curl")
            .args([
                "-s",
                "-m",
                "0.3",
                "-H",
                "content-type: application/json",
                "-d",
                r#"{"command": "trap '' TERM; sleep 600", "kill_on_disconnect": false}"#,
                &format!("{}/v1/runners/{id}/exec", s.url),
            ])
            .output();
        ids.push(id);
    }
    let running = processes_of(&ids);
    assert!(running.len() >= N, "{running:?}");
    for id in &ids {
        let (st, r) = http("DELETE", &format!("{}/v1/runners/{id}", s.url), None);
        assert_eq!(st, 202, "{r}");
    }
    let destroying = runners(&s)
        .iter()
        .filter(|r| r["state"] == "destroying")
        .count();
    let left = processes_of(&ids);
    s.crash();
    assert_eq!(
        destroying, N,
        "every teardown was still going on at the crash"
    );
    assert!(
        !left.is_empty(),
        "the teardowns had not stopped the sandboxes yet"
    );

    let s = Serve::start_with(d.path(), Some(&cfg));
    let done = all_destroyed(&s, N, Duration::from_secs(60));
    assert_eq!(done.len(), N);
    assert_eq!(processes_of(&ids), Vec::<String>::new(), "processes left");
    assert!(cgroups_of(&ids).is_empty(), "{:?}", cgroups_of(&ids));
    assert!(
        dirs_of(d.path(), &ids).is_empty(),
        "{:?}",
        dirs_of(d.path(), &ids)
    );
}
