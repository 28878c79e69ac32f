//! `GET /status`: resource usage of the worker's process tree, its cgroup
//! (when readable), and the workspace on disk. Everything is read from
//! `/proc`, `/sys/fs/cgroup` and the filesystem at request time.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::exec::RunningInfo;

/// The disk walk stops after this many entries (and says so).
pub const MAX_DISK_ENTRIES: u64 = 2_000_000;

#[derive(Debug, Serialize)]
pub struct Status {
    pub version: &'static str,
    pub pid: u32,
    pub uptime_ms: u64,
    pub cpu: Cpu,
    pub memory: Memory,
    pub processes: Processes,
    pub disk: Disk,
    pub execs: Execs,
}

#[derive(Debug, Serialize)]
pub struct Cpu {
    /// User + system CPU seconds of the worker and its live descendants, plus
    /// those of descendants already reaped.
    pub tree_seconds: f64,
    /// `usage_usec` of the worker's cgroup (v2) or `cpuacct.usage` (v1).
    pub cgroup_seconds: Option<f64>,
    /// CPUs available to the worker.
    pub cores: usize,
}

#[derive(Debug, Serialize)]
pub struct Memory {
    /// Sum of the resident set sizes of the worker's process tree.
    pub tree_rss_bytes: u64,
    pub cgroup_current_bytes: Option<u64>,
    /// `null` when unlimited or unreadable.
    pub cgroup_max_bytes: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct Processes {
    /// The worker plus its live descendants.
    pub tree: u64,
    pub cgroup: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct Disk {
    /// Bytes allocated on disk under the workspace (like `du`).
    pub workspace_bytes: u64,
    /// Sum of file sizes under the workspace (like `du --apparent-size`).
    pub workspace_apparent_bytes: u64,
    /// Files, directories and links counted.
    pub workspace_entries: u64,
    /// The walk stopped at [`MAX_DISK_ENTRIES`].
    pub truncated: bool,
    pub fs_total_bytes: Option<u64>,
    pub fs_available_bytes: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct Execs {
    pub running: Vec<RunningInfo>,
    pub started_total: u64,
}

struct ProcInfo {
    ppid: i32,
    ticks: u64,
    rss_pages: u64,
}

fn read_proc_stat(pid: i32) -> Option<ProcInfo> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ..." — comm may contain spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state); field n is f[n - 3].
    let num = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    if f.first() == Some(&"Z") {
        // Zombies hold no memory; their CPU time is counted when reaped.
        return Some(ProcInfo {
            ppid: f.get(1)?.parse().ok()?,
            ticks: 0,
            rss_pages: 0,
        });
    }
    Some(ProcInfo {
        ppid: f.get(1)?.parse().ok()?,
        ticks: num(14)? + num(15)? + num(16)? + num(17)?,
        rss_pages: num(24)?,
    })
}

struct Tree {
    count: u64,
    ticks: u64,
    rss_pages: u64,
}

fn process_tree(root: i32) -> Tree {
    let mut infos: HashMap<i32, ProcInfo> = HashMap::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for ent in dir.flatten() {
            if let Some(pid) = ent.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) {
                if let Some(info) = read_proc_stat(pid) {
                    infos.insert(pid, info);
                }
            }
        }
    }
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for (pid, info) in &infos {
        children.entry(info.ppid).or_default().push(*pid);
    }
    let mut tree = Tree {
        count: 0,
        ticks: 0,
        rss_pages: 0,
    };
    let mut seen = HashSet::new();
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        if !seen.insert(pid) {
            continue;
        }
        if let Some(info) = infos.get(&pid) {
            tree.count += 1;
            tree.ticks += info.ticks;
            tree.rss_pages += info.rss_pages;
        }
        if let Some(kids) = children.get(&pid) {
            stack.extend(kids.iter().copied());
        }
    }
    tree
}

fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[derive(Default)]
struct Cgroup {
    cpu_seconds: Option<f64>,
    mem_current: Option<u64>,
    mem_max: Option<u64>,
    pids: Option<u64>,
}

fn cgroup() -> Cgroup {
    let mut out = Cgroup::default();
    let Ok(text) = fs::read_to_string("/proc/self/cgroup") else {
        return out;
    };
    let base = Path::new("/sys/fs/cgroup");
    let join = |dir: &Path, rel: &str| -> PathBuf { dir.join(rel.trim_start_matches('/')) };
    for l in text.lines() {
        let mut parts = l.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if controllers.is_empty() {
            // cgroup v2 (unified)
            let dir = join(base, path);
            if let Ok(stat) = fs::read_to_string(dir.join("cpu.stat")) {
                out.cpu_seconds = stat
                    .lines()
                    .find_map(|l| l.strip_prefix("usage_usec "))
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(|us| us as f64 / 1e6);
            }
            out.mem_current = out
                .mem_current
                .or_else(|| read_u64(&dir.join("memory.current")));
            out.mem_max = out.mem_max.or_else(|| read_u64(&dir.join("memory.max")));
            out.pids = out.pids.or_else(|| read_u64(&dir.join("pids.current")));
        } else {
            let names: Vec<&str> = controllers.split(',').collect();
            if names.contains(&"cpuacct") {
                let dir = join(&base.join(controllers), path);
                if let Some(ns) = read_u64(&dir.join("cpuacct.usage"))
                    .or_else(|| read_u64(&join(&base.join("cpuacct"), path).join("cpuacct.usage")))
                {
                    out.cpu_seconds = Some(ns as f64 / 1e9);
                }
            }
            if names.contains(&"memory") {
                let dir = join(&base.join("memory"), path);
                out.mem_current = read_u64(&dir.join("memory.usage_in_bytes"));
                // v1 reports "no limit" as a huge number.
                out.mem_max =
                    read_u64(&dir.join("memory.limit_in_bytes")).filter(|&v| v < (1u64 << 62));
            }
            if names.contains(&"pids") {
                out.pids = read_u64(&join(&base.join("pids"), path).join("pids.current"));
            }
        }
    }
    out
}

fn disk_usage(root: &Path) -> (u64, u64, u64, bool) {
    let mut allocated = 0u64;
    let mut apparent = 0u64;
    let mut entries = 0u64;
    let mut seen_inodes: HashSet<(u64, u64)> = HashSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        for ent in rd.flatten() {
            if entries >= MAX_DISK_ENTRIES {
                return (allocated, apparent, entries, true);
            }
            let Ok(meta) = ent.path().symlink_metadata() else {
                continue;
            };
            entries += 1;
            if meta.nlink() > 1 && !meta.is_dir() && !seen_inodes.insert((meta.dev(), meta.ino())) {
                continue;
            }
            allocated += meta.blocks() * 512;
            apparent += meta.len();
            if meta.is_dir() {
                stack.push(ent.path());
            }
        }
    }
    (allocated, apparent, entries, false)
}

fn statvfs(path: &Path) -> (Option<u64>, Option<u64>) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return (None, None);
    };
    // SAFETY: zeroed statvfs is a valid out-parameter; `c` is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return (None, None);
    }
    let frsize = st.f_frsize as u64;
    (
        Some(st.f_blocks as u64 * frsize),
        Some(st.f_bavail as u64 * frsize),
    )
}

/// Collects a status snapshot (blocking: walks /proc and the workspace).
pub fn collect(
    root: &Path,
    uptime_ms: u64,
    running: Vec<RunningInfo>,
    started_total: u64,
) -> Status {
    let me = std::process::id();
    // SAFETY: sysconf is always safe to call.
    let ticks_per_sec = match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
        t if t > 0 => t as f64,
        _ => 100.0,
    };
    let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        p if p > 0 => p as u64,
        _ => 4096,
    };
    let tree = process_tree(me as i32);
    let cg = cgroup();
    let (allocated, apparent, entries, truncated) = disk_usage(root);
    let (fs_total, fs_avail) = statvfs(root);
    Status {
        version: crate::VERSION,
        pid: me,
        uptime_ms,
        cpu: Cpu {
            tree_seconds: tree.ticks as f64 / ticks_per_sec,
            cgroup_seconds: cg.cpu_seconds,
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        },
        memory: Memory {
            tree_rss_bytes: tree.rss_pages * page,
            cgroup_current_bytes: cg.mem_current,
            cgroup_max_bytes: cg.mem_max,
        },
        processes: Processes {
            tree: tree.count,
            cgroup: cg.pids,
        },
        disk: Disk {
            workspace_bytes: allocated,
            workspace_apparent_bytes: apparent,
            workspace_entries: entries,
            truncated,
            fs_total_bytes: fs_total,
            fs_available_bytes: fs_avail,
        },
        execs: Execs {
            running,
            started_total,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_in_the_tree() {
        let tree = process_tree(std::process::id() as i32);
        assert!(tree.count >= 1);
        assert!(tree.rss_pages > 0);
    }

    #[test]
    fn disk_usage_counts_files() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a"), vec![1u8; 10_000]).unwrap();
        fs::create_dir(dir.path().join("d")).unwrap();
        fs::write(dir.path().join("d/b"), vec![1u8; 5_000]).unwrap();
        let (_alloc, apparent, entries, truncated) = disk_usage(dir.path());
        assert!(apparent >= 15_000);
        assert_eq!(entries, 3);
        assert!(!truncated);
    }
}
