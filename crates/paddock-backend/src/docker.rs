//! The Docker backend: one hardened container per runner, over the Docker Engine API
//! (`bollard`).
//!
//! * The worker binary is bind-mounted read-only at `/usr/local/bin/paddock-worker`
//!   (images need no rebuild per Paddock version) and serves on a Unix socket in a
//!   per-runner host directory mounted at `/run/paddock`; the workspace is another
//!   host directory mounted at `/workspace`, so snapshots, restores and adoption work
//!   as for the local backend.
//! * Hardened by default: every capability dropped, `no-new-privileges`, a non-root
//!   user (`1000:1000`), a read-only root filesystem with a tmpfs `/tmp`, pids / memory
//!   / CPU limits from the execution profile, `init` to reap zombies, and the labels
//!   `paddock.managed=true`, `paddock.runner_id`, `paddock.session_id`, and
//!   `paddock.root` (this Paddock's runner directory: several Paddocks may share an
//!   engine, and each adopts and sweeps only its own containers).
//! * Networks: `none` (no interface but loopback), `unrestricted` (the default
//!   bridge), `limited` (an internal network of its own whose only way out is an
//!   allowlisting egress proxy Paddock runs on that network's gateway address; no DNS
//!   for anything else).
//! * Containers outlive the orchestrator: a restarted Paddock finds them by label.

use async_trait::async_trait;
use bollard::models::{ContainerCreateBody, HostConfig, NetworkCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, ListContainersOptions, LogsOptions,
    RemoveContainerOptions, StopContainerOptions,
};
use bollard::Docker;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OnceCell;

use crate::local::WorkerCommand;
use crate::uids::{self, UidPool};
use crate::{io, Backend};
use crate::{
    BackendError, Capabilities, Connector, Enforced, Enforcement, Isolation, Managed,
    NetworkPolicy, Provisioned, Result, RunnerSpec, SeccompLevel, Stats,
};

/// The uid and gid runners run as (the `paddock` user of the runbook images).
pub const RUNNER_UID: u32 = 1000;
const WORKER_IN_CONTAINER: &str = "/usr/local/bin/paddock-worker";

#[derive(Debug, Clone)]
pub struct DockerConfig {
    /// Per-runner directories (workspace, socket, metadata) on this host.
    pub root: PathBuf,
    /// The worker binary bind-mounted into containers (a static `paddock-worker`, or
    /// `paddock` with `["worker"]`).
    pub worker: WorkerCommand,
    /// The image of runners whose profile names none.
    pub default_image: String,
    /// The engine's socket.
    pub socket: PathBuf,
    /// How long a new worker may take to answer.
    pub start_timeout: Duration,
    /// Size of the tmpfs at `/tmp`.
    pub tmp_size_mb: u64,
    /// `(first, count)`: each runner's container runs as a host uid of its own from
    /// this range (None: every container runs as `RUNNER_UID`).
    pub uid_range: Option<(u32, u32)>,
}

impl DockerConfig {
    pub fn new(root: PathBuf, worker: WorkerCommand) -> Self {
        DockerConfig {
            root,
            worker,
            default_image: "paddock-base:latest".into(),
            socket: PathBuf::from("/var/run/docker.sock"),
            start_timeout: Duration::from_secs(30),
            tmp_size_mb: 256,
            uid_range: None,
        }
    }
}

/// What the backend remembers of a runner on disk (it survives a restart).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Meta {
    container_id: String,
    /// The container's init process on the host (for the socket's PID-namespace check).
    pid: Option<i32>,
    /// `limited` networking: the network, the proxy's address and the allowlist.
    egress: Option<EgressMeta>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct EgressMeta {
    network: String,
    proxy: std::net::SocketAddr,
    allowed_hosts: Vec<String>,
}

pub struct DockerBackend {
    cfg: DockerConfig,
    docker: OnceCell<Docker>,
    /// Egress proxies of `limited` runners, by runner id.
    proxies: Arc<Mutex<HashMap<String, paddock_egress::EgressProxy>>>,
    uids: Option<UidPool>,
}

fn engine(context: &str, e: bollard::errors::Error) -> BackendError {
    BackendError::Unavailable {
        backend: "docker",
        reason: format!("{context}: {e}"),
    }
}

fn not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

fn container_name(id: &str) -> String {
    format!("paddock-{id}")
}

fn network_name(id: &str) -> String {
    format!("paddock-net-{id}")
}

impl DockerBackend {
    pub fn new(cfg: DockerConfig) -> Self {
        DockerBackend {
            uids: cfg
                .uid_range
                .map(|(first, count)| UidPool::new("docker", cfg.root.clone(), first, count)),
            cfg,
            docker: OnceCell::new(),
            proxies: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    async fn docker(&self) -> Result<&Docker> {
        self.docker
            .get_or_try_init(|| async {
                let path = self.cfg.socket.display().to_string();
                let d = Docker::connect_with_unix(&path, 120, bollard::API_DEFAULT_VERSION)
                    .map_err(|e| engine("connecting to the Docker engine", e))?;
                // Speak the engine's version (Debian's docker.io is older than bollard).
                d.negotiate_version()
                    .await
                    .map_err(|e| engine("negotiating the Docker API version", e))
            })
            .await
    }

    /// Whether the engine answers (and its version), for availability reports.
    pub async fn probe(&self) -> Result<String> {
        let v = self
            .docker()
            .await?
            .version()
            .await
            .map_err(|e| engine("asking the engine's version", e))?;
        Ok(v.version.unwrap_or_default())
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.cfg.root.join(id)
    }

    /// Which Paddock a container belongs to: its runner directory root on this host.
    fn root_label(&self) -> String {
        self.cfg.root.display().to_string()
    }

    fn socket(&self, id: &str) -> PathBuf {
        self.dir(id).join("sock").join("worker.sock")
    }

    fn read_meta(&self, id: &str) -> Option<Meta> {
        let text = std::fs::read(self.dir(id).join("meta.json")).ok()?;
        serde_json::from_slice(&text).ok()
    }

    fn write_meta(&self, id: &str, meta: &Meta) -> Result<()> {
        let path = self.dir(id).join("meta.json");
        let tmp = path.with_extension("json.tmp");
        let body = serde_json::to_vec(meta)
            .map_err(|e| BackendError::io("encoding meta.json", std::io::Error::other(e)))?;
        std::fs::write(&tmp, body).map_err(io("writing meta.json"))?;
        std::fs::rename(&tmp, &path).map_err(io("writing meta.json"))
    }

    /// The pool, when this process may hand files to its uids (root).
    fn pool(&self) -> Option<&UidPool> {
        // SAFETY: geteuid(2) has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        self.uids.as_ref().filter(|_| root)
    }

    /// The host uid runner `id`'s container runs as (claimed from the range on first
    /// use; without root, every container is `RUNNER_UID`).
    fn runner_uid(&self, id: &str) -> Result<u32> {
        match self.pool() {
            Some(pool) => pool.of(id).map(|(uid, _)| uid),
            None => Ok(RUNNER_UID),
        }
    }

    /// The host uid runner `id` has (with a range: the one recorded, if any).
    pub fn uid_of(&self, id: &str) -> Option<u32> {
        match self.pool() {
            Some(pool) => pool.recorded(id),
            None => Some(RUNNER_UID),
        }
    }

    /// The uids claimed now, with their runners (the per-runner range only).
    pub fn claimed_uids(&self) -> Vec<(u32, String)> {
        self.uids.as_ref().map(UidPool::claimed).unwrap_or_default()
    }

    /// The runner's directories: `workspace` and `sock` belong to the runner's user, and
    /// `etc/passwd` names it `paddock` (the image's own names user 1000).
    fn layout(&self, id: &str) -> Result<u32> {
        use std::os::unix::fs::PermissionsExt;
        let dir = self.dir(id);
        std::fs::create_dir_all(dir.join("etc")).map_err(io("creating the runner directory"))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))
            .map_err(io("chmod"))?;
        let uid = self.runner_uid(id)?;
        for sub in ["workspace", "sock"] {
            let p = dir.join(sub);
            std::fs::create_dir_all(&p).map_err(io("creating the runner directory"))?;
            uids::hand_over(&p, uid)?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700))
                .map_err(io("chmod"))?;
        }
        std::fs::write(
            dir.join("etc/passwd"),
            format!("root:x:0:0:root:/root:/bin/sh\npaddock:x:{uid}:{uid}:Paddock runner:/workspace:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"),
        )
        .map_err(io("writing passwd"))?;
        std::fs::write(
            dir.join("etc/group"),
            format!("root:x:0:\npaddock:x:{uid}:\nnogroup:x:65534:\n"),
        )
        .map_err(io("writing group"))?;
        Ok(uid)
    }

    /// Starts (or re-attaches) the egress proxy of a `limited` runner on its network's
    /// gateway. Returns the proxy's address.
    async fn ensure_proxy(
        &self,
        id: &str,
        allowed_hosts: &[String],
        want: Option<std::net::SocketAddr>,
    ) -> Result<EgressMeta> {
        let docker = self.docker().await?;
        let net = network_name(id);
        let gateway = match docker
            .inspect_network(
                &net,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
        {
            Ok(n) => n,
            Err(e) if not_found(&e) => {
                docker
                    .create_network(NetworkCreateRequest {
                        name: net.clone(),
                        driver: Some("bridge".into()),
                        internal: Some(true),
                        labels: Some(HashMap::from([
                            ("paddock.managed".to_string(), "true".to_string()),
                            ("paddock.runner_id".to_string(), id.to_string()),
                            ("paddock.root".to_string(), self.root_label()),
                        ])),
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| engine("creating the runner's internal network", e))?;
                docker
                    .inspect_network(
                        &net,
                        None::<bollard::query_parameters::InspectNetworkOptions>,
                    )
                    .await
                    .map_err(|e| engine("inspecting the runner's network", e))?
            }
            Err(e) => return Err(engine("inspecting the runner's network", e)),
        }
        .ipam
        .and_then(|i| i.config)
        .and_then(|c| c.into_iter().find_map(|c| c.gateway))
        .and_then(|g| g.parse::<std::net::IpAddr>().ok())
        .ok_or_else(|| BackendError::Unavailable {
            backend: "docker",
            reason: format!("network {net} has no IPv4 gateway for the egress proxy"),
        })?;
        if let Some(p) = self
            .proxies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
        {
            return Ok(EgressMeta {
                network: net,
                proxy: p.local_addr(),
                allowed_hosts: allowed_hosts.to_vec(),
            });
        }
        let allow = paddock_egress::Allowlist::new(allowed_hosts).map_err(|e| {
            BackendError::Unsupported {
                field: "network.allowed_hosts".into(),
                message: e.to_string(),
            }
        })?;
        // The same port as before when re-attaching: the container's HTTP_PROXY names it.
        let port = want
            .filter(|w| w.ip() == gateway)
            .map(|w| w.port())
            .unwrap_or(0);
        let listener = tokio::net::TcpListener::bind((gateway, port))
            .await
            .map_err(io(format!("binding the egress proxy on {gateway}")))?;
        let log_path = self.dir(id).join("egress.log");
        let runner = id.to_string();
        let on_decision: Arc<dyn Fn(&paddock_egress::Decision) + Send + Sync> = Arc::new(
            move |d: &paddock_egress::Decision| {
                tracing::info!(runner_id = %runner, host = %d.host, port = d.port, allowed = d.allowed, reason = %d.reason, "egress decision");
                if let Ok(line) = serde_json::to_string(d) {
                    use std::io::Write;
                    if let Ok(mut f) = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&log_path)
                    {
                        let _ = writeln!(f, "{line}");
                    }
                }
            },
        );
        let proxy = paddock_egress::EgressProxy::start(
            listener,
            paddock_egress::ProxyConfig::new(allow),
            on_decision,
        )
        .await;
        let addr = proxy.local_addr();
        self.proxies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), proxy);
        Ok(EgressMeta {
            network: net,
            proxy: addr,
            allowed_hosts: allowed_hosts.to_vec(),
        })
    }

    async fn drop_proxy(&self, id: &str) {
        let p = self
            .proxies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        if let Some(p) = p {
            p.stop().await;
        }
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let docker = self.docker().await?;
        match docker
            .remove_container(
                &container_name(id),
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(engine("removing the container", e)),
        }
    }

    /// Creates and starts the runner's container and waits for its worker.
    async fn launch(&self, spec: &RunnerSpec) -> Result<Provisioned> {
        let id = &spec.runner_id;
        let docker = self.docker().await?;
        let uid = self.layout(id)?;
        self.remove_container(id).await?;
        let sock = self.socket(id);
        let _ = std::fs::remove_file(&sock);
        let mut env: Vec<String> = vec!["HOME=/workspace".into(), "USER=paddock".into()];
        env.extend(spec.env.iter().map(|(k, v)| format!("{k}={v}")));
        let mut egress = None;
        let network_mode = match &spec.network {
            NetworkPolicy::None => "none".to_string(),
            NetworkPolicy::Unrestricted => "bridge".to_string(),
            NetworkPolicy::Limited { allowed_hosts } => {
                let want = self.read_meta(id).and_then(|m| m.egress).map(|e| e.proxy);
                let e = self.ensure_proxy(id, allowed_hosts, want).await?;
                let url = format!("http://{}", e.proxy);
                for k in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
                    env.push(format!("{k}={url}"));
                }
                let net = e.network.clone();
                egress = Some(e);
                net
            }
        };
        let mut cmd = vec![WORKER_IN_CONTAINER.to_string()];
        cmd.extend(self.cfg.worker.args.iter().cloned());
        cmd.extend(crate::SANDBOX_WORKER_ARGS.iter().map(|s| s.to_string()));
        // An image's /var (package databases, caches) is part of its system.
        cmd.extend(["--readable", "/var"].map(String::from));
        let dir = self.dir(id);
        let binds = vec![
            format!("{}:/workspace:rw", dir.join("workspace").display()),
            format!("{}:/run/paddock:rw", dir.join("sock").display()),
            format!(
                "{}:{WORKER_IN_CONTAINER}:ro",
                self.cfg.worker.path.display()
            ),
            format!("{}:/etc/passwd:ro", dir.join("etc/passwd").display()),
            format!("{}:/etc/group:ro", dir.join("etc/group").display()),
        ];
        let mut labels = HashMap::from([
            ("paddock.managed".to_string(), "true".to_string()),
            ("paddock.runner_id".to_string(), id.clone()),
            ("paddock.root".to_string(), self.root_label()),
        ]);
        if let Some(s) = &spec.session_id {
            labels.insert("paddock.session_id".into(), s.clone());
        }
        let l = &spec.limits;
        let host_config = HostConfig {
            binds: Some(binds),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(security_opt(spec.seccomp)),
            readonly_rootfs: Some(true),
            tmpfs: Some(HashMap::from([(
                "/tmp".to_string(),
                format!("rw,nosuid,nodev,size={}m", self.cfg.tmp_size_mb),
            )])),
            memory: l.memory_mb.map(|m| (m * 1024 * 1024) as i64),
            // No swap beyond the memory limit.
            memory_swap: l.memory_mb.map(|m| (m * 1024 * 1024) as i64),
            nano_cpus: l.cpu.map(|c| (c * 1e9) as i64),
            pids_limit: l.pids.map(|p| p as i64),
            network_mode: Some(network_mode),
            init: Some(true),
            ..Default::default()
        };
        let image = match spec.image.as_deref() {
            // Runbook names stand for the images scripts/images.sh builds.
            Some(r @ ("base" | "web" | "locked" | "agents")) => format!("paddock-{r}:latest"),
            Some(i) => i.to_string(),
            None => self.cfg.default_image.clone(),
        };
        let created = docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(container_name(id)),
                    ..Default::default()
                }),
                ContainerCreateBody {
                    image: Some(image.clone()),
                    user: Some(format!("{uid}:{uid}")),
                    cmd: Some(cmd),
                    env: Some(env),
                    working_dir: Some("/workspace".into()),
                    labels: Some(labels),
                    host_config: Some(host_config),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| match &e {
                bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                } => BackendError::Unsupported {
                    field: "image".into(),
                    message: format!(
                        "image {image:?} is not on this Docker engine; build it (scripts/images.sh)"
                    ),
                },
                _ => engine("creating the container", e),
            })?;
        docker
            .start_container(
                &container_name(id),
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .map_err(|e| engine("starting the container", e))?;
        let pid = docker
            .inspect_container(&container_name(id), None::<InspectContainerOptions>)
            .await
            .ok()
            .and_then(|c| c.state)
            .and_then(|s| s.pid)
            .map(|p| p as i32)
            .filter(|p| *p > 0);
        self.write_meta(
            id,
            &Meta {
                container_id: created.id.clone(),
                pid,
                egress,
            },
        )?;
        let connector = self.connector(id);
        let client = crate::WorkerClient::new(connector.clone());
        let health = match client.wait_healthy(self.cfg.start_timeout).await {
            Ok(h) => h,
            Err(e) => {
                let logs = self.logs(id, 20).await.unwrap_or_default();
                let _ = self.remove_container(id).await;
                return Err(BackendError::Timeout(format!(
                    "the worker in container {} did not answer: {e}; its log: {logs}",
                    container_name(id)
                )));
            }
        };
        let mut enforced = self.enforced(spec);
        enforced.landlock = crate::LandlockReport::from_health(&health);
        Ok(Provisioned {
            connector,
            enforced,
            handle: serde_json::json!({"container_id": created.id, "container": container_name(id)}),
        })
    }

    fn enforced(&self, spec: &RunnerSpec) -> Enforced {
        let l = &spec.limits;
        Enforced {
            cpu: l.cpu.map(|_| Enforcement::Container),
            memory: l.memory_mb.map(|_| Enforcement::Container),
            pids: l.pids.map(|_| Enforcement::Container),
            disk: l.disk_mb.map(|_| Enforcement::NotEnforced),
            seccomp: (spec.seccomp != SeccompLevel::Unconfined).then_some(spec.seccomp),
            landlock: None,
        }
    }
}

/// `no-new-privileges` and Paddock's system-call policy as the container's seccomp
/// profile (the same policy as local runners'; `unconfined` keeps the engine's
/// default profile).
fn security_opt(level: SeccompLevel) -> Vec<String> {
    let mut opts = vec!["no-new-privileges:true".to_string()];
    if let Some(profile) = paddock_seccomp::docker_profile(level) {
        opts.push(format!("seccomp={profile}"));
    }
    opts
}

/// A file of a container's cgroup (v1, cgroupfs or systemd layout).
fn cgroup_text(cid: &str, controller: &str, file: &str) -> Option<String> {
    [
        format!("/sys/fs/cgroup/{controller}/docker/{cid}/{file}"),
        format!("/sys/fs/cgroup/{controller}/system.slice/docker-{cid}.scope/{file}"),
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok())
}

fn cgroup_u64(cid: &str, controller: &str, file: &str) -> Option<u64> {
    cgroup_text(cid, controller, file)?.trim().parse().ok()
}

#[async_trait]
impl crate::Backend for DockerBackend {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn capabilities(&self) -> Capabilities {
        let available = self.cfg.socket.exists();
        Capabilities {
            backend: "docker".into(),
            available,
            note: (!available).then(|| {
                format!(
                    "no Docker engine socket at {} (install docker.io and start dockerd)",
                    self.cfg.socket.display()
                )
            }),
            isolation: Isolation::Container,
            network_policies: vec!["none".into(), "limited".into(), "unrestricted".into()],
            snapshots: true,
            stats: true,
            limits: Enforced {
                cpu: Some(Enforcement::Container),
                memory: Some(Enforcement::Container),
                pids: Some(Enforcement::Container),
                disk: Some(Enforcement::NotEnforced),
                seccomp: None,
                landlock: None,
            },
            survives_restart: true,
        }
    }

    fn check(&self, spec: &RunnerSpec) -> Result<()> {
        if !self.cfg.socket.exists() {
            return Err(BackendError::Unavailable {
                backend: "docker",
                reason: self.capabilities().note.unwrap_or_default(),
            });
        }
        if let NetworkPolicy::Limited { allowed_hosts } = &spec.network {
            paddock_egress::Allowlist::new(allowed_hosts).map_err(|e| {
                BackendError::Unsupported {
                    field: "network.allowed_hosts".into(),
                    message: e.to_string(),
                }
            })?;
        }
        if self.socket(&spec.runner_id).as_os_str().len() >= 100 {
            return Err(BackendError::Unavailable {
                backend: "docker",
                reason: "the worker socket path is too long for a Unix socket; use a shorter data directory".into(),
            });
        }
        Ok(())
    }

    async fn provision(&self, spec: &RunnerSpec) -> Result<Provisioned> {
        self.check(spec)?;
        self.launch(spec).await
    }

    async fn start(&self, spec: &RunnerSpec) -> Result<Provisioned> {
        self.check(spec)?;
        if !self.dir(&spec.runner_id).join("workspace").is_dir() {
            return Err(BackendError::NotFound(spec.runner_id.clone()));
        }
        // A fresh container on the same workspace: the spec (env, network) may have
        // changed since the last start.
        self.launch(spec).await
    }

    async fn stop(&self, runner_id: &str, grace: Duration) -> Result<()> {
        let docker = self.docker().await?;
        let t = grace.as_secs_f64().ceil() as i32;
        let r = docker
            .stop_container(
                &container_name(runner_id),
                Some(StopContainerOptions {
                    t: Some(t),
                    ..Default::default()
                }),
            )
            .await;
        self.drop_proxy(runner_id).await;
        match r {
            Ok(()) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            // 304: already stopped.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(engine("stopping the container", e)),
        }
    }

    async fn destroy(&self, runner_id: &str) -> Result<()> {
        self.remove_container(runner_id).await?;
        self.drop_proxy(runner_id).await;
        let docker = self.docker().await?;
        match docker.remove_network(&network_name(runner_id)).await {
            Ok(()) => {}
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(engine("removing the runner's network", e)),
        }
        let uid = self.pool().and_then(|p| p.recorded(runner_id));
        match tokio::fs::remove_dir_all(self.dir(runner_id)).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(BackendError::io("removing the runner directory", e)),
        }
        // Only now that nothing it owned is left may another runner get its uid.
        if let (Some(pool), Some(uid)) = (self.pool(), uid) {
            pool.release(runner_id, uid);
        }
        Ok(())
    }

    async fn list_managed(&self) -> Result<Vec<Managed>> {
        let docker = self.docker().await?;
        let list = docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                // Only this Paddock's: several may share one engine.
                filters: Some(HashMap::from([(
                    "label".to_string(),
                    vec![
                        "paddock.managed=true".to_string(),
                        format!("paddock.root={}", self.root_label()),
                    ],
                )])),
                ..Default::default()
            }))
            .await
            .map_err(|e| engine("listing containers", e))?;
        let mut out = Vec::new();
        for c in list {
            let Some(id) = c.labels.as_ref().and_then(|l| l.get("paddock.runner_id")) else {
                continue;
            };
            let running = c.state.map(|s| s.to_string()) == Some("running".to_string());
            if running {
                // Re-attach the egress proxy a restarted orchestrator lost.
                if let Some(e) = self.read_meta(id).and_then(|m| m.egress) {
                    if let Err(err) = self.ensure_proxy(id, &e.allowed_hosts, Some(e.proxy)).await {
                        tracing::warn!(runner_id = %id, error = %err, "cannot re-attach the egress proxy");
                    }
                }
            }
            out.push(Managed {
                runner_id: id.clone(),
                running,
            });
        }
        Ok(out)
    }

    async fn logs(&self, runner_id: &str, tail: usize) -> Result<String> {
        let docker = self.docker().await?;
        let mut s = docker.logs(
            &container_name(runner_id),
            Some(LogsOptions {
                stdout: true,
                stderr: true,
                tail: tail.to_string(),
                ..Default::default()
            }),
        );
        let mut out = String::new();
        while let Some(chunk) = s.next().await {
            match chunk {
                Ok(c) => out.push_str(&String::from_utf8_lossy(&c.into_bytes())),
                Err(e) if not_found(&e) => {
                    return Err(BackendError::NotFound(runner_id.to_string()))
                }
                Err(e) => return Err(engine("reading the container's log", e)),
            }
        }
        Ok(out.trim_end().to_string())
    }

    fn connector(&self, runner_id: &str) -> Connector {
        // The socket must be served from the container's PID namespace.
        let pid_ns = self
            .read_meta(runner_id)
            .and_then(|m| m.pid)
            .and_then(|p| std::fs::read_link(format!("/proc/{p}/ns/pid")).ok())
            .map(|l| l.display().to_string())
            .unwrap_or_else(|| "unknown".to_string());
        Connector::UnixSocket {
            path: self.socket(runner_id),
            pid_ns: Some(pid_ns),
        }
    }

    async fn snapshot(&self, runner_id: &str, dest: &Path) -> Result<u64> {
        crate::workspace::archive(&self.dir(runner_id).join("workspace"), runner_id, dest).await
    }

    async fn restore(&self, runner_id: &str, src: &Path) -> Result<()> {
        let docker = self.docker().await?;
        let running = docker
            .inspect_container(&container_name(runner_id), None::<InspectContainerOptions>)
            .await
            .ok()
            .and_then(|c| c.state)
            .and_then(|s| s.running)
            .unwrap_or(false);
        if running {
            return Err(BackendError::Unsupported {
                field: "runner".into(),
                message: "stop the runner before restoring its workspace".into(),
            });
        }
        let uid = self.layout(runner_id)?;
        crate::workspace::restore(&self.dir(runner_id), src, Some(uid)).await
    }

    fn oom_kills(&self, runner_id: &str) -> Option<u64> {
        let cid = self.read_meta(runner_id)?.container_id;
        cgroup_text(&cid, "memory", "memory.oom_control")?
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|v| v.trim().parse().ok())
    }

    fn stats(&self, runner_id: &str) -> Stats {
        let Some(meta) = self.read_meta(runner_id) else {
            return Stats::default();
        };
        let cid = &meta.container_id;
        let limit =
            cgroup_u64(cid, "memory", "memory.limit_in_bytes").filter(|l| *l < (1u64 << 62));
        // The container's own network namespace, read through its init process.
        let (rx, tx) = meta
            .pid
            .and_then(|p| std::fs::read_to_string(format!("/proc/{p}/net/dev")).ok())
            .map(|text| {
                text.lines()
                    .skip(2)
                    .filter_map(|l| l.split_once(':'))
                    .filter(|(name, _)| name.trim() != "lo")
                    .fold((0u64, 0u64), |(rx, tx), (_, rest)| {
                        let f: Vec<u64> = rest
                            .split_whitespace()
                            .filter_map(|x| x.parse().ok())
                            .collect();
                        (
                            rx + f.first().copied().unwrap_or(0),
                            tx + f.get(8).copied().unwrap_or(0),
                        )
                    })
            })
            .unzip();
        Stats {
            network_rx_bytes: rx,
            network_tx_bytes: tx,
            memory_bytes: cgroup_u64(cid, "memory", "memory.usage_in_bytes"),
            memory_limit_bytes: limit,
            pids: cgroup_u64(cid, "pids", "pids.current"),
            pids_limit: cgroup_u64(cid, "pids", "pids.max"),
        }
    }
}
