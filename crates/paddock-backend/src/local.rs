//! The local backend: each runner is a bubblewrap sandbox on this machine — its own
//! mount, PID, IPC, UTS, network and user namespaces, read-only system directories, a
//! writable workspace at `/workspace`, tmpfs `/tmp`, no capabilities, no new
//! privileges, running as an unprivileged host user. Limits come from cgroups where the
//! host offers them. A plain-process mode exists for hosts without bubblewrap; it is
//! reported as `unisolated`.
//!
//! Runners are detached from the orchestrator (own process group, not its children
//! after a restart), so they survive it; everything needed to find them again lives
//! in the runner's directory: `<root>/<runner_id>/{workspace,sock,etc,meta.json,worker.log}`.

use async_trait::async_trait;
use paddock_core::harness::{AGENTS_PREFIX, AGENTS_RUNBOOK};
use paddock_core::runner::Isolation;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::uids::{self, UidPool};
use crate::worker::WorkerClient;
use crate::{
    cgroup, io, Backend, BackendError, Capabilities, Connector, Enforced, Enforcement, Managed,
    NetworkPolicy, Provisioned, Result, RunnerSpec, SeccompLevel,
};

/// How the worker is started: a binary and the arguments before its own flags
/// (`paddock` + `["worker"]`, or a standalone `paddock-worker` with none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerCommand {
    pub path: PathBuf,
    pub args: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LocalMode {
    /// bubblewrap namespaces.
    Bwrap,
    /// A plain process: no isolation at all.
    Process,
}

#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// Where runner directories live (e.g. `<data_dir>/runners`).
    pub root: PathBuf,
    pub worker: WorkerCommand,
    pub mode: LocalMode,
    /// The host user sandboxes run as (`None`: the orchestrator's own user), when no
    /// `uid_range` gives each runner its own.
    pub sandbox_uid: Option<u32>,
    /// `(first, count)`: each runner gets a host uid of its own from this range (needs
    /// root and setpriv, like `sandbox_uid`).
    pub uid_range: Option<(u32, u32)>,
    /// How long a new worker may take to answer.
    pub start_timeout: Duration,
    /// The host prefix of the ACP agents (scripts/agents.sh), mounted read-only at
    /// `/opt/paddock-agents` in runners of the `agents` runbook.
    pub agents_dir: Option<PathBuf>,
}

impl LocalConfig {
    pub fn new(root: PathBuf, worker: WorkerCommand) -> Self {
        LocalConfig {
            root,
            worker,
            mode: LocalMode::Bwrap,
            sandbox_uid: Some(65534),
            uid_range: None,
            start_timeout: Duration::from_secs(15),
            agents_dir: None,
        }
    }
}

/// The devices a plain-process worker may write (it has the host's `/dev`).
/// (Not `/dev/shm` or `/dev/pts`: other runners' shared memory and terminals are there.)
const PROCESS_DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/tty",
    "/dev/random",
    "/dev/urandom",
];

/// What the runner's directory records about its sandbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    mode: LocalMode,
    /// Host pid of the process we started (bwrap, or the worker itself).
    pid: i32,
    /// Host pid of the sandbox's init (PID namespace), when bwrap reported it.
    child_pid: Option<i32>,
    enforced: Enforced,
}

pub struct LocalBackend {
    cfg: LocalConfig,
    bwrap: Option<PathBuf>,
    setpriv: Option<PathBuf>,
    uids: Option<UidPool>,
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// Whether `pid` is alive and belongs to runner `id` (guards pid reuse): its command
/// line carries the id as an argument of its own (bubblewrap's `--setenv
/// PADDOCK_RUNNER_ID <id>`) or as a directory of a path (a plain worker's socket), and
/// it runs as the runner's host uid (or as us, the moment before it drops to it) — so
/// another runner's process cannot pass for it by its command line.
fn alive(pid: i32, id: &str, uid: Option<u32>) -> bool {
    let Ok(c) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let dir = format!("/{id}/");
    let named = c.split(|b| *b == 0).any(|a| {
        let a = String::from_utf8_lossy(a);
        a == id || a.contains(&dir)
    });
    named && uid.is_none_or(|u| runs_as(pid, u))
}

/// Whether `pid`'s real uid is `uid`, or ours.
fn runs_as(pid: i32, uid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    // SAFETY: getuid(2) has no preconditions.
    let me = unsafe { libc::getuid() };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u32>().ok())
        .is_some_and(|real| real == uid || real == me)
}

/// Waits, at most 10 s, until `left` says nothing of the sandbox of `id` is left.
async fn until_gone(id: &str, mut left: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while left() {
        if Instant::now() > deadline {
            return Err(BackendError::Timeout(format!(
                "the sandbox of {id} did not die"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

fn kill(pid: i32, sig: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(pid, sig);
    }
}

impl LocalBackend {
    pub fn new(cfg: LocalConfig) -> Self {
        LocalBackend {
            bwrap: which("bwrap"),
            setpriv: which("setpriv"),
            uids: cfg
                .uid_range
                .map(|(first, count)| UidPool::new("local", cfg.root.clone(), first, count)),
            cfg,
        }
    }

    /// Whether bubblewrap is installed (the contract suite needs to know).
    pub fn has_bwrap(&self) -> bool {
        self.bwrap.is_some()
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.cfg.root.join(id)
    }

    fn socket(&self, id: &str) -> PathBuf {
        self.dir(id).join("sock").join("worker.sock")
    }

    fn read_meta(&self, id: &str) -> Option<Meta> {
        let text = std::fs::read_to_string(self.dir(id).join("meta.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn is_running(&self, id: &str) -> bool {
        self.read_meta(id)
            .is_some_and(|m| alive(m.pid, id, self.uid_of(id)))
    }

    fn layout(&self, id: &str) -> Result<()> {
        let dir = self.dir(id);
        for sub in ["workspace", "sock", "etc"] {
            std::fs::create_dir_all(dir.join(sub))
                .map_err(io(format!("creating {}", dir.join(sub).display())))?;
        }
        let mode = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m))
                .map_err(io(format!("chmod {}", p.display())))
        };
        // Others may pass through the runner directory but not list it; the workspace
        // and socket belong to the sandbox user alone.
        mode(&self.cfg.root, 0o711)?;
        mode(&dir, 0o711)?;
        mode(&dir.join("etc"), 0o755)?;
        mode(&dir.join("workspace"), 0o700)?;
        mode(&dir.join("sock"), 0o700)?;
        if let Some(uid) = self.runner_uid(id)? {
            for sub in ["workspace", "sock"] {
                uids::hand_over(&dir.join(sub), uid)?;
            }
            // The sandbox user must be able to reach its directory to mount it.
            for a in dir.ancestors().skip(1) {
                let m = std::fs::metadata(a).map_err(io(format!("inspecting {}", a.display())))?;
                if m.permissions().mode() & 0o001 == 0 {
                    return Err(BackendError::Unavailable {
                        backend: "local",
                        reason: format!(
                            "sandboxes run as uid {uid}, which cannot traverse {} (mode {:o}); \
                             make it world-traversable (chmod o+x) or choose another data directory",
                            a.display(),
                            m.permissions().mode() & 0o7777
                        ),
                    });
                }
            }
        }
        std::fs::write(
            dir.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\npaddock:x:1000:1000:Paddock runner:/workspace:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        )
        .map_err(io("writing passwd"))?;
        std::fs::write(
            dir.join("etc/group"),
            "root:x:0:\npaddock:x:1000:\nnogroup:x:65534:\n",
        )
        .map_err(io("writing group"))?;
        Ok(())
    }

    /// Whether sandboxes can run as another host user: that needs root and setpriv;
    /// otherwise they keep our (unprivileged) user, mapped by bubblewrap's user
    /// namespace.
    fn drops_user(&self) -> bool {
        // SAFETY: geteuid(2) has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        root && self.setpriv.is_some() && self.cfg.mode == LocalMode::Bwrap
    }

    /// The host uid runner `id` runs as: its own from the pool (claimed on first use),
    /// else the shared `sandbox_uid`; None when sandboxes keep our user.
    fn runner_uid(&self, id: &str) -> Result<Option<u32>> {
        if !self.drops_user() {
            return Ok(None);
        }
        match &self.uids {
            Some(pool) => pool.of(id).map(|(uid, _)| Some(uid)),
            None => Ok(self.cfg.sandbox_uid),
        }
    }

    /// The host uid runner `id` has (none claimed or recorded: None).
    pub fn uid_of(&self, id: &str) -> Option<u32> {
        if !self.drops_user() {
            return None;
        }
        match &self.uids {
            Some(pool) => pool.recorded(id),
            None => self.cfg.sandbox_uid,
        }
    }

    /// The uids claimed now, with their runners (the per-runner range only).
    pub fn claimed_uids(&self) -> Vec<(u32, String)> {
        self.uids.as_ref().map(UidPool::claimed).unwrap_or_default()
    }

    /// bubblewrap's set-up arguments, and the worker's command line in the sandbox.
    fn bwrap_args(&self, spec: &RunnerSpec, dir: &Path) -> (Vec<String>, Vec<String>) {
        let mut a: Vec<String> = vec![];
        let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
        push(&[
            "--unshare-all",
            "--unshare-user",
            "--uid",
            "1000",
            "--gid",
            "1000",
        ]);
        if spec.network == NetworkPolicy::Unrestricted {
            push(&["--share-net"]);
        }
        // The environment is not on this command line (which any host user can read):
        // the sandbox inherits the process's cleared environment, set in `launch`.
        push(&[
            "--hostname",
            "paddock",
            "--new-session",
            "--cap-drop",
            "ALL",
            // No nested user namespaces: less kernel surface for code inside.
            "--disable-userns",
        ]);
        push(&["--ro-bind", "/usr", "/usr"]);
        for d in ["/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32"] {
            match std::fs::read_link(d) {
                Ok(target) => push(&["--symlink", &target.display().to_string(), d]),
                Err(_) if Path::new(d).is_dir() => push(&["--ro-bind", d, d]),
                Err(_) => {}
            }
        }
        for f in [
            "/etc/alternatives",
            "/etc/ssl/certs",
            "/etc/ca-certificates",
            "/etc/ld.so.cache",
            "/etc/localtime",
            "/etc/nsswitch.conf",
            "/etc/hosts",
            "/etc/profile",
        ] {
            push(&["--ro-bind-try", f, f]);
        }
        if spec.network == NetworkPolicy::Unrestricted {
            push(&["--ro-bind-try", "/etc/resolv.conf", "/etc/resolv.conf"]);
        }
        let d = |s: &str| dir.join(s).display().to_string();
        push(&["--ro-bind", &d("etc/passwd"), "/etc/passwd"]);
        push(&["--ro-bind", &d("etc/group"), "/etc/group"]);
        push(&["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]);
        push(&["--bind", &d("workspace"), "/workspace"]);
        push(&["--bind", &d("sock"), "/run/paddock"]);
        if spec.image.as_deref() == Some(AGENTS_RUNBOOK) {
            if let Some(agents) = &self.cfg.agents_dir {
                push(&["--ro-bind", &agents.display().to_string(), AGENTS_PREFIX]);
            }
        }
        push(&[
            "--ro-bind",
            &self.cfg.worker.path.display().to_string(),
            "/paddock/worker",
        ]);
        push(&["--chdir", "/workspace", "--info-fd", "3"]);
        let mut w: Vec<String> = vec!["/paddock/worker".into()];
        w.extend(self.cfg.worker.args.iter().cloned());
        w.extend(crate::SANDBOX_WORKER_ARGS.iter().map(|s| s.to_string()));
        (a, w)
    }

    /// Starts the sandbox of an existing runner directory and waits for its worker.
    async fn launch(&self, spec: &RunnerSpec) -> Result<Provisioned> {
        let began = Instant::now();
        let id = &spec.runner_id;
        let dir = self.dir(id);
        let sock = self.socket(id);
        if sock.as_os_str().len() >= 100 {
            return Err(BackendError::Unavailable {
                backend: "local",
                reason: format!(
                    "the worker socket path {} is too long for a Unix socket; use a shorter data directory",
                    sock.display()
                ),
            });
        }
        let _ = std::fs::remove_file(&sock);
        let _ = std::fs::remove_file(dir.join("info.json"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("worker.log"))
            .map_err(io("opening worker.log"))?;
        let log2 = log.try_clone().map_err(io("opening worker.log"))?;
        let groups = cgroup::create(id, &spec.limits);
        let mut enforced = groups.enforced.clone();
        let procs: Vec<String> = groups
            .procs
            .iter()
            .map(|p| p.display().to_string())
            .collect();

        let mut cmd = tokio::process::Command::new("/bin/sh");
        // The shell joins the runner's cgroups, then becomes the sandbox, so that no
        // process of the runner ever runs outside its limits.
        let mut script =
            String::from("for p in $PADDOCK_CGROUP_PROCS; do echo $$ > \"$p\" || exit 97; done; ");
        if spec.limits.memory_mb.is_some() && enforced.memory.is_none() {
            // No memory cgroup: fall back to an address-space rlimit.
            script.push_str("ulimit -v $PADDOCK_MEMORY_KB || exit 98; ");
            enforced.memory = Some(Enforcement::Rlimit);
        }
        // The system-call filter: bubblewrap reads its programs from fds 4 and 5
        // (`--add-seccomp-fd`) and installs them just before it starts the worker.
        let filtered =
            self.cfg.mode == LocalMode::Bwrap && spec.seccomp != SeccompLevel::Unconfined;
        if filtered {
            let programs = paddock_seccomp::bpf_programs(spec.seccomp).map_err(|e| {
                BackendError::Unavailable {
                    backend: "local",
                    reason: e.to_string(),
                }
            })?;
            for (i, p) in programs.iter().enumerate() {
                std::fs::write(dir.join(format!("seccomp-{i}.bpf")), p)
                    .map_err(io("writing the seccomp filter"))?;
            }
            enforced.seccomp = Some(spec.seccomp);
        }
        script.push_str(
            "info=$PADDOCK_INFO; unset PADDOCK_CGROUP_PROCS PADDOCK_INFO PADDOCK_MEMORY_KB; ",
        );
        // bubblewrap reads its arguments from fd 6 (`--args`): none of the host paths
        // they name shows in the sandbox's /proc/1/cmdline.
        script.push_str(match (self.cfg.mode, filtered) {
            (LocalMode::Bwrap, true) => {
                "exec \"$@\" 3>\"$info\" 4<seccomp-0.bpf 5<seccomp-1.bpf 6<bwrap.args"
            }
            (LocalMode::Bwrap, false) => "exec \"$@\" 3>\"$info\" 6<bwrap.args",
            (LocalMode::Process, _) => "exec \"$@\" 3>\"$info\"",
        });
        cmd.arg("-c").arg(script).arg("sh");
        match self.cfg.mode {
            LocalMode::Bwrap => {
                let bwrap = self.bwrap.clone().ok_or(BackendError::Unavailable {
                    backend: "local",
                    reason: "bubblewrap (bwrap) is not installed".into(),
                })?;
                if let (Some(uid), Some(setpriv)) = (self.uid_of(id), &self.setpriv) {
                    cmd.arg(setpriv)
                        .arg(format!("--reuid={uid}"))
                        .arg(format!("--regid={uid}"))
                        .arg("--clear-groups")
                        .arg("--");
                }
                let mut args = vec![];
                if filtered {
                    args.extend(
                        ["--add-seccomp-fd", "4", "--add-seccomp-fd", "5"].map(String::from),
                    );
                }
                let (setup, worker) = self.bwrap_args(spec, &dir);
                args.extend(setup);
                let mut file = Vec::new();
                for a in &args {
                    file.extend_from_slice(a.as_bytes());
                    file.push(0);
                }
                std::fs::write(dir.join("bwrap.args"), file)
                    .map_err(io("writing the sandbox's arguments"))?;
                // The runner's id on the command line finds its processes again.
                cmd.arg(bwrap)
                    .args(["--args", "6", "--setenv", "PADDOCK_RUNNER_ID", id, "--"])
                    .args(worker);
            }
            LocalMode::Process => {
                cmd.arg(&self.cfg.worker.path)
                    .args(&self.cfg.worker.args)
                    .arg("--socket")
                    .arg(&sock)
                    .arg("--workspace")
                    .arg(dir.join("workspace"))
                    // No namespaces here: Landlock alone keeps it to its workspace,
                    // and a temporary directory of its own.
                    .arg("--landlock")
                    .arg("--writable")
                    .arg(dir.join("tmp"));
                for dev in PROCESS_DEVICES {
                    cmd.arg("--writable").arg(dev);
                }
                std::fs::create_dir_all(dir.join("tmp"))
                    .map_err(io("creating the runner's tmp directory"))?;
                cmd.env_clear()
                    .env(
                        "PATH",
                        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    )
                    .env("HOME", dir.join("workspace"))
                    .env("PADDOCK_RUNNER_ID", id)
                    .envs(&spec.env);
            }
        }
        // Only what the sandbox should see (secrets included) — never the orchestrator's
        // own environment (provider keys, the vault key).
        let home = match self.cfg.mode {
            LocalMode::Bwrap => PathBuf::from("/workspace"),
            LocalMode::Process => dir.join("workspace"),
        };
        cmd.env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("HOME", home)
            .env("USER", "paddock")
            .env("PADDOCK_RUNNER_ID", id)
            .envs(&spec.env);
        if self.cfg.mode == LocalMode::Process {
            // The worker's spill files and its commands' temporary files stay in the
            // runner's own directory (the only other one Landlock lets it write).
            cmd.env("TMPDIR", dir.join("tmp"));
        }
        cmd.env("PADDOCK_CGROUP_PROCS", procs.join(" "))
            .env("PADDOCK_INFO", dir.join("info.json"))
            .env(
                "PADDOCK_MEMORY_KB",
                (spec.limits.memory_mb.unwrap_or(0) * 1024).to_string(),
            )
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            // Its own process group: a Ctrl-C or SIGTERM to the orchestrator's group
            // does not reach the sandbox.
            .process_group(0)
            .kill_on_drop(false);
        let prepared = began.elapsed();
        let mut child = cmd.spawn().map_err(io("starting the sandbox"))?;
        let spawned = began.elapsed();
        let pid = child.id().map(|p| p as i32).unwrap_or(-1);
        // Recorded at once, so a crash during the health wait leaves a sandbox that can
        // still be found and killed.
        let early = Meta {
            mode: self.cfg.mode,
            pid,
            child_pid: None,
            enforced: enforced.clone(),
        };
        std::fs::write(
            dir.join("meta.json"),
            serde_json::to_vec_pretty(&early).unwrap_or_default(),
        )
        .map_err(io("writing meta.json"))?;
        // Reap it when it exits while we run; after a restart, init does.
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        let client = WorkerClient::new(Connector::UnixSocket {
            path: sock.clone(),
            pid_ns: None,
        });
        let health = client.wait_healthy(self.cfg.start_timeout).await;
        let ready = began.elapsed();
        if let Ok(h) = &health {
            enforced.landlock = crate::LandlockReport::from_health(h);
        }
        let child_pid = std::fs::read_to_string(dir.join("info.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["child-pid"].as_i64())
            .map(|p| p as i32);
        let meta = Meta {
            mode: self.cfg.mode,
            pid,
            child_pid,
            enforced: enforced.clone(),
        };
        std::fs::write(
            dir.join("meta.json"),
            serde_json::to_vec_pretty(&meta).unwrap_or_default(),
        )
        .map_err(io("writing meta.json"))?;
        if let Err(e) = health {
            let tail = self.logs(id, 20).await.unwrap_or_default();
            let _ = self.kill_sandbox(id).await;
            return Err(BackendError::Timeout(format!("{e}; sandbox log:\n{tail}")));
        }
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        tracing::debug!(
            runner_id = %id,
            prepared_ms = ms(prepared),
            spawned_ms = ms(spawned),
            ready_ms = ms(ready),
            done_ms = ms(began.elapsed()),
            "sandbox started"
        );
        Ok(Provisioned {
            connector: self.connector(id),
            enforced,
            handle: json!({"pid": pid, "child_pid": child_pid, "mode": self.cfg.mode, "dir": dir}),
        })
    }

    /// The processes of a sandbox that has no record of its pid: a bwrap (the sandbox
    /// and the init of its PID namespace, whose death ends the rest) or a plain worker
    /// whose command line names the runner.
    fn unrecorded(&self, id: &str) -> Vec<i32> {
        let uid = self.uid_of(id);
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return vec![];
        };
        let ours = |argv0: &[u8]| {
            let argv0 = Path::new(std::ffi::OsStr::from_bytes(argv0));
            argv0.file_name().is_some_and(|n| n == "bwrap") || argv0 == self.cfg.worker.path
        };
        entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                let Ok(c) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                    return false;
                };
                let argv0 = c.split(|b| *b == 0).next().unwrap_or_default();
                ours(argv0) && alive(*pid, id, uid)
            })
            .collect()
    }

    /// Kills the processes of a sandbox that has no record of its pid and waits until
    /// they are gone.
    async fn kill_unrecorded(&self, id: &str) -> Result<()> {
        until_gone(id, || {
            let found = self.unrecorded(id);
            for p in &found {
                kill(*p, libc::SIGKILL);
            }
            !found.is_empty()
        })
        .await
    }

    /// Kills every process of the sandbox and waits until they are gone.
    async fn kill_sandbox(&self, id: &str) -> Result<()> {
        // Whatever is in the runner's cgroups belongs to it, meta or not.
        for p in cgroup::pids(id) {
            kill(p, libc::SIGKILL);
        }
        let Some(meta) = self.read_meta(id) else {
            // No record of its pid: a crash came between the spawn and the record.
            return self.kill_unrecorded(id).await;
        };
        // Only signal processes that are still this sandbox (their command line names
        // the runner): a recorded pid may have been reused since.
        let uid = self.uid_of(id);
        if let Some(c) = meta.child_pid.filter(|c| alive(*c, id, uid)) {
            // SIGKILL to a PID namespace's init ends every process in it.
            kill(c, libc::SIGKILL);
        }
        if alive(meta.pid, id, uid) {
            kill(-meta.pid, libc::SIGKILL);
            kill(meta.pid, libc::SIGKILL);
        }
        until_gone(id, || {
            alive(meta.pid, id, uid) || !cgroup::pids(id).is_empty()
        })
        .await
    }
}

#[async_trait]
impl Backend for LocalBackend {
    fn name(&self) -> &'static str {
        "local"
    }

    fn capabilities(&self) -> Capabilities {
        let (available, isolation, note) = match (self.cfg.mode, &self.bwrap) {
            (LocalMode::Bwrap, Some(_)) => (true, Isolation::Namespaces, None),
            (LocalMode::Bwrap, None) => (
                false,
                Isolation::Namespaces,
                Some("bubblewrap (bwrap) is not installed".to_string()),
            ),
            (LocalMode::Process, _) => (
                true,
                Isolation::Unisolated,
                Some("plain-process mode: runners are NOT isolated from this host".to_string()),
            ),
        };
        let network_policies = match self.cfg.mode {
            LocalMode::Bwrap => vec!["none".to_string(), "unrestricted".to_string()],
            LocalMode::Process => vec!["unrestricted".to_string()],
        };
        Capabilities {
            backend: "local".into(),
            available,
            note,
            isolation,
            network_policies,
            snapshots: false,
            stats: true,
            limits: cgroup::capabilities(),
            survives_restart: true,
        }
    }

    fn check(&self, spec: &RunnerSpec) -> Result<()> {
        let caps = self.capabilities();
        if !caps.available {
            return Err(BackendError::Unavailable {
                backend: "local",
                reason: caps.note.unwrap_or_default(),
            });
        }
        if !caps
            .network_policies
            .iter()
            .any(|p| p == spec.network.name())
        {
            return Err(BackendError::Unsupported {
                field: "network".into(),
                message: format!(
                    "the local backend ({}) cannot enforce network policy {:?}; it supports {:?}",
                    if self.cfg.mode == LocalMode::Bwrap {
                        "bubblewrap"
                    } else {
                        "plain process"
                    },
                    spec.network.name(),
                    caps.network_policies
                ),
            });
        }
        if spec.image.as_deref() == Some(AGENTS_RUNBOOK) {
            let found = self
                .cfg
                .agents_dir
                .as_ref()
                .filter(|d| d.join("bin/node").exists());
            if found.is_none() || self.cfg.mode != LocalMode::Bwrap {
                return Err(BackendError::Unsupported {
                    field: "runbook".into(),
                    message: match &self.cfg.agents_dir {
                        _ if self.cfg.mode != LocalMode::Bwrap => "the agents runbook needs the local backend in bwrap mode (it mounts the agents' prefix into the sandbox)".to_string(),
                        Some(d) => format!("the agents runbook mounts the ACP agents' prefix {}, which holds no bin/node: run scripts/agents.sh", d.display()),
                        None => "the agents runbook needs [local] agents_dir, the ACP agents' prefix (scripts/agents.sh)".to_string(),
                    },
                });
            }
        }
        Ok(())
    }

    async fn provision(&self, spec: &RunnerSpec) -> Result<Provisioned> {
        self.check(spec)?;
        self.layout(&spec.runner_id)?;
        self.launch(spec).await
    }

    async fn start(&self, spec: &RunnerSpec) -> Result<Provisioned> {
        self.check(spec)?;
        let id = &spec.runner_id;
        if !self.dir(id).join("workspace").is_dir() {
            return Err(BackendError::NotFound(id.clone()));
        }
        if self.is_running(id) {
            let meta = self.read_meta(id);
            return Ok(Provisioned {
                connector: self.connector(id),
                enforced: meta.map(|m| m.enforced).unwrap_or_default(),
                handle: json!({"adopted": true}),
            });
        }
        self.layout(id)?;
        self.launch(spec).await
    }

    async fn stop(&self, runner_id: &str, grace: Duration) -> Result<()> {
        if self.is_running(runner_id) {
            // Let running commands end their way first.
            let client = WorkerClient::new(self.connector(runner_id));
            let all = json!({});
            let deadline = Instant::now() + grace.max(Duration::from_millis(100));
            let cancel = client.json(hyper::Method::POST, "/cancel", Some(&all));
            if tokio::time::timeout_at(deadline.into(), cancel)
                .await
                .is_ok()
            {
                // Wait for the cancelled commands to end (their streams then close with
                // an exit record), at most until the grace runs out.
                while Instant::now() < deadline {
                    match tokio::time::timeout_at(
                        deadline.into(),
                        client.json(hyper::Method::GET, "/status", None),
                    )
                    .await
                    {
                        Ok(Ok(s))
                            if s["execs"]["running"]
                                .as_array()
                                .is_some_and(|r| !r.is_empty()) =>
                        {
                            tokio::time::sleep(Duration::from_millis(25)).await;
                        }
                        _ => break,
                    }
                }
            }
        }
        self.kill_sandbox(runner_id).await?;
        let _ = std::fs::remove_file(self.socket(runner_id));
        Ok(())
    }

    async fn destroy(&self, runner_id: &str) -> Result<()> {
        let dir = self.dir(runner_id);
        if !dir.exists() {
            cgroup::remove(runner_id);
            return Ok(());
        }
        self.kill_sandbox(runner_id).await?;
        cgroup::remove(runner_id);
        let uid = self.uids.as_ref().and_then(|p| p.recorded(runner_id));
        tokio::fs::remove_dir_all(&dir)
            .await
            .map_err(io(format!("removing {}", dir.display())))?;
        // Only now that nothing it owned is left may another runner get its uid.
        if let (Some(pool), Some(uid)) = (&self.uids, uid) {
            pool.release(runner_id, uid);
        }
        Ok(())
    }

    async fn list_managed(&self) -> Result<Vec<Managed>> {
        let mut out = vec![];
        let entries = match std::fs::read_dir(&self.cfg.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(BackendError::io("listing runners", e)),
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !e.path().join("workspace").is_dir() {
                continue;
            }
            out.push(Managed {
                running: self.is_running(&name),
                runner_id: name,
            });
        }
        out.sort_by(|a, b| a.runner_id.cmp(&b.runner_id));
        Ok(out)
    }

    async fn logs(&self, runner_id: &str, tail: usize) -> Result<String> {
        let path = self.dir(runner_id).join("worker.log");
        let text = match tokio::fs::read(&path).await {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BackendError::NotFound(runner_id.to_string()))
            }
            Err(e) => return Err(BackendError::io("reading worker.log", e)),
        };
        let lines: Vec<&str> = text.lines().collect();
        Ok(lines[lines.len().saturating_sub(tail)..].join("\n"))
    }

    fn connector(&self, runner_id: &str) -> Connector {
        // In a sandbox, the socket must be served by a process of the sandbox's PID
        // namespace (the sandbox user owns the socket directory and could swap it).
        let pid_ns = match self.cfg.mode {
            LocalMode::Process => None,
            LocalMode::Bwrap => Some(
                self.read_meta(runner_id)
                    .and_then(|m| m.child_pid)
                    .and_then(|c| std::fs::read_link(format!("/proc/{c}/ns/pid")).ok())
                    .map(|l| l.display().to_string())
                    .unwrap_or_else(|| "unknown".to_string()),
            ),
        };
        Connector::UnixSocket {
            path: self.socket(runner_id),
            pid_ns,
        }
    }

    async fn snapshot(&self, runner_id: &str, dest: &Path) -> Result<u64> {
        crate::workspace::archive(&self.dir(runner_id).join("workspace"), runner_id, dest).await
    }

    async fn restore(&self, runner_id: &str, src: &Path) -> Result<()> {
        if self.is_running(runner_id) {
            return Err(BackendError::Unsupported {
                field: "runner".into(),
                message: "stop the runner before restoring its workspace".into(),
            });
        }
        self.layout(runner_id)?;
        let uid = self.uid_of(runner_id);
        crate::workspace::restore(&self.dir(runner_id), src, uid).await
    }

    fn oom_kills(&self, runner_id: &str) -> Option<u64> {
        cgroup::oom_kills(runner_id)
    }

    fn stats(&self, runner_id: &str) -> crate::Stats {
        cgroup::stats(runner_id)
    }
}
