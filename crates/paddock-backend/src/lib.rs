//! How runners become real sandboxes. A [`Backend`] provisions, starts, stops and
//! destroys sandboxes and says what it really enforces ([`Capabilities`]); the
//! orchestrator reaches the `paddock worker` inside each through a [`Connector`].
//! Policy (what a runner may do) is data from the core crate; mechanism lives here.

mod cgroup;
pub mod docker;
pub mod local;
pub mod uids;
pub mod worker;
mod workspace;

use async_trait::async_trait;
pub use paddock_core::environment::ResourceLimits as Limits;
pub use paddock_core::profile::SeccompLevel;
pub use paddock_core::runner::{Isolation, NetworkPolicy};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub use worker::WorkerClient;

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The backend cannot run on this host (a tool or kernel feature is missing).
    #[error("backend {backend} is unavailable: {reason}")]
    Unavailable {
        backend: &'static str,
        reason: String,
    },
    /// The request asks for something this backend cannot enforce.
    #[error("{field}: {message}")]
    Unsupported { field: String, message: String },
    #[error("runner {0} has no sandbox on this backend")]
    NotFound(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("the worker answered {status}: {message}")]
    Worker {
        status: u16,
        /// The worker's `error.type` (e.g. `path_forbidden`), when it gave one.
        kind: Option<String>,
        message: String,
    },
    #[error("the worker is unreachable: {0}")]
    Unreachable(String),
    #[error("timed out: {0}")]
    Timeout(String),
}

impl BackendError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        BackendError::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = BackendError> = std::result::Result<T, E>;

/// `map_err` adapter: an I/O error with what was being done.
pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BackendError {
    let context = context.into();
    move |e| BackendError::io(context, e)
}

/// The worker's flags inside a sandbox (both backends): its socket and workspace, and
/// Landlock keeping it and what it runs to those, `/tmp`, `/dev`, and the system with a
/// sandbox's `/opt` and `/run` read-only (crate `paddock-worker`, `confine`).
pub(crate) const SANDBOX_WORKER_ARGS: &[&str] = &[
    "--socket",
    "/run/paddock/worker.sock",
    "--workspace",
    "/workspace",
    "--landlock",
    "--writable",
    "/tmp",
    "--writable",
    "/dev",
    "--readable",
    "/opt",
    "--readable",
    "/run",
];

/// Everything a backend needs to build one runner's sandbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunnerSpec {
    pub runner_id: String,
    pub session_id: Option<String>,
    /// Image or runbook name (backends without images ignore it).
    pub image: Option<String>,
    pub env: BTreeMap<String, String>,
    pub limits: Limits,
    pub network: NetworkPolicy,
    /// The system calls its processes may not make (`paddock-seccomp`).
    #[serde(default)]
    pub seccomp: SeccompLevel,
}

/// How a limit is enforced, when it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Enforcement {
    CgroupV1,
    CgroupV2,
    Rlimit,
    Container,
    /// Asked for, but nothing on this host enforces it.
    NotEnforced,
}

/// Which limits a runner actually has, limit by limit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Enforced {
    pub cpu: Option<Enforcement>,
    pub memory: Option<Enforcement>,
    pub pids: Option<Enforcement>,
    pub disk: Option<Enforcement>,
    /// The system-call filter applied (`default` or `strict`; absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp: Option<SeccompLevel>,
    /// What Landlock confines the runner's worker to, as its worker reports it (absent:
    /// not asked for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landlock: Option<LandlockReport>,
}

/// Landlock as a runner's worker reports it (`/healthz`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LandlockReport {
    /// The kernel's Landlock ABI version (0: this kernel has no Landlock).
    pub abi: i64,
    /// `fully_enforced`, `partially_enforced` (an older ABI handles fewer rights) or
    /// `not_enforced` (no Landlock in this kernel: the report says so, nothing fails).
    pub status: String,
}

impl LandlockReport {
    /// From a worker's `/healthz` answer; None when its Landlock is `off`.
    pub fn from_health(health: &serde_json::Value) -> Option<Self> {
        let l = &health["landlock"];
        let status = l["status"].as_str().filter(|s| *s != "off")?;
        Some(LandlockReport {
            abi: l["abi"].as_i64().unwrap_or(0),
            status: status.to_string(),
        })
    }
}

/// What a backend can really do, as reported to users.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capabilities {
    pub backend: String,
    pub available: bool,
    /// Why the backend is unavailable or degraded, when it is.
    pub note: Option<String>,
    pub isolation: Isolation,
    pub network_policies: Vec<String>,
    pub snapshots: bool,
    pub stats: bool,
    /// Limits it can enforce on this host and how.
    pub limits: Enforced,
    /// Whether runners survive an orchestrator restart.
    pub survives_restart: bool,
}

/// How to reach the worker of a runner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Connector {
    UnixSocket {
        path: PathBuf,
        /// The PID namespace (`/proc/<pid>/ns/pid` link) the worker must live in; the
        /// client refuses a socket served from anywhere else (e.g. a sandbox that
        /// replaced its socket with a link to another one).
        #[serde(default)]
        pid_ns: Option<String>,
    },
    Tcp {
        addr: String,
        token: String,
    },
}

/// A sandbox the backend has running.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provisioned {
    pub connector: Connector,
    pub enforced: Enforced,
    /// Backend-specific details kept with the runner (pids, container id, …).
    pub handle: serde_json::Value,
}

/// Usage measured by the backend; `None` where it cannot tell.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub memory_bytes: Option<u64>,
    pub memory_limit_bytes: Option<u64>,
    pub pids: Option<u64>,
    pub pids_limit: Option<u64>,
    /// Bytes received and sent on the sandbox's network interfaces (loopback excluded).
    #[serde(default)]
    pub network_rx_bytes: Option<u64>,
    #[serde(default)]
    pub network_tx_bytes: Option<u64>,
}

/// A sandbox found on the host (for adoption and orphan sweeping).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Managed {
    pub runner_id: String,
    pub running: bool,
}

#[async_trait]
pub trait Backend: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn capabilities(&self) -> Capabilities;
    /// Checks that a spec can be honoured before anything is created.
    fn check(&self, spec: &RunnerSpec) -> Result<()>;
    /// Creates the sandbox and starts its worker; returns once the worker answers.
    async fn provision(&self, spec: &RunnerSpec) -> Result<Provisioned>;
    /// Starts a stopped sandbox again, its workspace intact.
    async fn start(&self, spec: &RunnerSpec) -> Result<Provisioned>;
    /// Stops the sandbox: running commands get `grace`, then everything is killed.
    async fn stop(&self, runner_id: &str, grace: Duration) -> Result<()>;
    /// Removes the sandbox and its workspace. Idempotent.
    async fn destroy(&self, runner_id: &str) -> Result<()>;
    /// Every sandbox of this backend on the host.
    async fn list_managed(&self) -> Result<Vec<Managed>>;
    /// The sandbox's own log (the worker's stdout and stderr), last `tail` lines.
    async fn logs(&self, runner_id: &str, tail: usize) -> Result<String>;
    fn connector(&self, runner_id: &str) -> Connector;
    /// Writes a point-in-time copy of the runner's workspace to `dest`; returns its size.
    async fn snapshot(&self, runner_id: &str, dest: &std::path::Path) -> Result<u64>;
    /// Replaces the workspace of a runner with no running sandbox (stopped, or not yet
    /// provisioned) by the snapshot at `src`. A failure leaves the workspace as it was.
    async fn restore(&self, runner_id: &str, src: &std::path::Path) -> Result<()>;
    /// How many times the kernel OOM-killed a process of the runner, when it can tell.
    fn oom_kills(&self, runner_id: &str) -> Option<u64>;
    /// Usage the backend measures from outside the sandbox (cgroups, the engine).
    fn stats(&self, runner_id: &str) -> Stats;
}
