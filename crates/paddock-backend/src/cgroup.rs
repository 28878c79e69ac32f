//! Resource limits through cgroups (v2 when the host's unified hierarchy has the
//! controllers, else v1), reporting exactly which ones took effect.

use std::fs;
use std::path::{Path, PathBuf};

use crate::{Enforced, Enforcement, Limits};

const ROOT: &str = "/sys/fs/cgroup";
const GROUP: &str = "paddock";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    V2,
    V1,
    None,
}

/// Which cgroup flavour this host offers for our limits.
pub fn detect() -> Flavor {
    let controllers =
        fs::read_to_string(Path::new(ROOT).join("cgroup.controllers")).unwrap_or_default();
    if controllers.split_whitespace().any(|c| c == "pids") && writable(Path::new(ROOT)) {
        return Flavor::V2;
    }
    if ["pids", "memory", "cpu"]
        .iter()
        .any(|c| writable(&Path::new(ROOT).join(c)))
    {
        return Flavor::V1;
    }
    Flavor::None
}

fn writable(dir: &Path) -> bool {
    let probe = dir.join(format!("{GROUP}-probe-{}", std::process::id()));
    match fs::create_dir(&probe) {
        Ok(()) => {
            let _ = fs::remove_dir(&probe);
            true
        }
        Err(e) => e.kind() == std::io::ErrorKind::AlreadyExists,
    }
}

/// What this host can enforce, without creating anything for a runner.
pub fn capabilities() -> Enforced {
    let via = match detect() {
        Flavor::V2 => Some(Enforcement::CgroupV2),
        Flavor::V1 => Some(Enforcement::CgroupV1),
        Flavor::None => None,
    };
    let v1_has = |c: &str| writable(&Path::new(ROOT).join(c));
    match via {
        Some(Enforcement::CgroupV1) => Enforced {
            cpu: v1_has("cpu").then_some(Enforcement::CgroupV1),
            memory: v1_has("memory").then_some(Enforcement::CgroupV1),
            pids: v1_has("pids").then_some(Enforcement::CgroupV1),
            disk: None,
            seccomp: None,
            landlock: None,
        },
        Some(e) => Enforced {
            cpu: Some(e),
            memory: Some(e),
            pids: Some(e),
            disk: None,
            seccomp: None,
            landlock: None,
        },
        None => Enforced {
            cpu: None,
            memory: Some(Enforcement::Rlimit),
            pids: None,
            disk: None,
            seccomp: None,
            landlock: None,
        },
    }
}

/// The cgroup directories of one runner, created with its limits written.
#[derive(Debug, Clone, Default)]
pub struct RunnerGroups {
    /// `cgroup.procs` files the sandbox's first process must join.
    pub procs: Vec<PathBuf>,
    pub enforced: Enforced,
}

fn write(dir: &Path, file: &str, value: &str) -> bool {
    match fs::write(dir.join(file), value) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), file, value, error = %e, "cannot write cgroup limit");
            false
        }
    }
}

fn mkdir(dir: &Path) -> bool {
    match fs::create_dir_all(dir) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot create cgroup");
            false
        }
    }
}

/// Creates the runner's cgroups and writes its limits.
pub fn create(runner_id: &str, limits: &Limits) -> RunnerGroups {
    let mut g = RunnerGroups::default();
    match detect() {
        Flavor::V2 => {
            let parent = Path::new(ROOT).join(GROUP);
            if !mkdir(&parent) {
                return g;
            }
            let _ = fs::write(parent.join("cgroup.subtree_control"), "+cpu +memory +pids");
            let _ = fs::write(
                Path::new(ROOT).join("cgroup.subtree_control"),
                "+cpu +memory +pids",
            );
            let dir = parent.join(runner_id);
            if !mkdir(&dir) {
                return g;
            }
            if let Some(p) = limits.pids {
                if write(&dir, "pids.max", &p.to_string()) {
                    g.enforced.pids = Some(Enforcement::CgroupV2);
                }
            }
            if let Some(m) = limits.memory_mb {
                if write(&dir, "memory.max", &(m * 1024 * 1024).to_string()) {
                    let _ = write(&dir, "memory.swap.max", "0");
                    g.enforced.memory = Some(Enforcement::CgroupV2);
                }
            }
            if let Some(c) = limits.cpu {
                let quota = (c * 100_000.0).round() as u64;
                if write(&dir, "cpu.max", &format!("{quota} 100000")) {
                    g.enforced.cpu = Some(Enforcement::CgroupV2);
                }
            }
            g.procs.push(dir.join("cgroup.procs"));
        }
        Flavor::V1 => {
            let wants = [
                ("pids", limits.pids.is_some()),
                ("memory", limits.memory_mb.is_some()),
                ("cpu", limits.cpu.is_some()),
            ];
            for (ctl, wanted) in wants {
                if !wanted {
                    continue;
                }
                let dir = Path::new(ROOT).join(ctl).join(GROUP).join(runner_id);
                if !mkdir(&dir) {
                    continue;
                }
                let ok = match ctl {
                    "pids" => write(&dir, "pids.max", &limits.pids.unwrap_or(0).to_string()),
                    "memory" => {
                        let bytes = limits.memory_mb.unwrap_or(0) * 1024 * 1024;
                        let ok = write(&dir, "memory.limit_in_bytes", &bytes.to_string());
                        // Without this, swap lets a runner exceed its memory.
                        let _ =
                            fs::write(dir.join("memory.memsw.limit_in_bytes"), bytes.to_string());
                        ok
                    }
                    _ => {
                        let quota = (limits.cpu.unwrap_or(1.0) * 100_000.0).round() as u64;
                        write(&dir, "cpu.cfs_period_us", "100000")
                            && write(&dir, "cpu.cfs_quota_us", &quota.to_string())
                    }
                };
                if ok {
                    g.procs.push(dir.join("cgroup.procs"));
                    let e = Some(Enforcement::CgroupV1);
                    match ctl {
                        "pids" => g.enforced.pids = e,
                        "memory" => g.enforced.memory = e,
                        _ => g.enforced.cpu = e,
                    }
                }
            }
        }
        Flavor::None => {}
    }
    if limits.disk_mb.is_some() {
        g.enforced.disk = Some(Enforcement::NotEnforced);
    }
    g
}

/// Every directory that may hold the runner's groups.
fn dirs(runner_id: &str) -> Vec<PathBuf> {
    let mut v = vec![Path::new(ROOT).join(GROUP).join(runner_id)];
    for ctl in ["pids", "memory", "cpu"] {
        v.push(Path::new(ROOT).join(ctl).join(GROUP).join(runner_id));
    }
    v
}

/// Pids in the runner's groups (any flavour).
pub fn pids(runner_id: &str) -> Vec<i32> {
    let mut out = vec![];
    for d in dirs(runner_id) {
        if let Ok(s) = fs::read_to_string(d.join("cgroup.procs")) {
            out.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// OOM kills in the runner's memory group (`oom_kill` in `memory.events` on v2,
/// `memory.oom_control` on v1), when readable.
pub fn oom_kills(runner_id: &str) -> Option<u64> {
    let v2 = Path::new(ROOT)
        .join(GROUP)
        .join(runner_id)
        .join("memory.events");
    let v1 = Path::new(ROOT)
        .join("memory")
        .join(GROUP)
        .join(runner_id)
        .join("memory.oom_control");
    for f in [v2, v1] {
        if let Ok(text) = fs::read_to_string(&f) {
            return text.lines().find_map(|l| {
                l.strip_prefix("oom_kill ")
                    .and_then(|n| n.trim().parse().ok())
            });
        }
    }
    None
}

fn read_u64(p: &Path) -> Option<u64> {
    let t = fs::read_to_string(p).ok()?;
    let t = t.trim();
    // "max" (v2) and the v1 "unlimited" sentinel both mean no limit.
    t.parse::<u64>().ok().filter(|v| *v < (1u64 << 62))
}

/// Memory and pids of the runner's groups, read from the host.
pub fn stats(runner_id: &str) -> crate::Stats {
    let v2 = Path::new(ROOT).join(GROUP).join(runner_id);
    if v2.join("cgroup.procs").exists() {
        return crate::Stats {
            network_rx_bytes: None,
            network_tx_bytes: None,
            memory_bytes: read_u64(&v2.join("memory.current")),
            memory_limit_bytes: read_u64(&v2.join("memory.max")),
            pids: read_u64(&v2.join("pids.current")),
            pids_limit: read_u64(&v2.join("pids.max")),
        };
    }
    let mem = Path::new(ROOT).join("memory").join(GROUP).join(runner_id);
    let pids = Path::new(ROOT).join("pids").join(GROUP).join(runner_id);
    crate::Stats {
        network_rx_bytes: None,
        network_tx_bytes: None,
        memory_bytes: read_u64(&mem.join("memory.usage_in_bytes")),
        memory_limit_bytes: read_u64(&mem.join("memory.limit_in_bytes")),
        pids: read_u64(&pids.join("pids.current")),
        pids_limit: read_u64(&pids.join("pids.max")),
    }
}

/// Removes the runner's groups (they must be empty).
pub fn remove(runner_id: &str) {
    for d in dirs(runner_id) {
        if d.exists() {
            if let Err(e) = fs::remove_dir(&d) {
                tracing::warn!(dir = %d.display(), error = %e, "cannot remove cgroup");
            }
        }
    }
}
