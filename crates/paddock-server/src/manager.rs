//! The runner manager: turns API requests into lifecycle transitions and backend calls.
//! Every transition is persisted (with its `runner.state_changed` event) before the
//! backend acts on it; on startup the manager adopts what survived a restart.

use paddock_backend::{Backend, BackendError, Managed, RunnerSpec, WorkerClient};
use paddock_core::lifecycle::RunnerState;
use paddock_core::profile::Profiles;
use paddock_core::runner::{NetworkPolicy, Runner};
use paddock_core::{environment::Networking, id, ts, CoreError};
use paddock_store::{PageReq, RunnerChange, Store};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

use crate::config::RunnerSettings;
use crate::error::{ApiResult, ServerError};
use crate::hub::Hub;

/// `POST /v1/runners`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRunner {
    #[serde(default)]
    pub environment_id: Option<String>,
    #[serde(default)]
    pub execution_profile: Option<String>,
    #[serde(default)]
    pub session_id: Option<String>,
    #[serde(default)]
    pub env: Option<BTreeMap<String, String>>,
    /// Seconds without activity before the runner is stopped (0: never).
    #[serde(default)]
    pub idle_timeout_secs: Option<u64>,
    /// Stop the runner once its session's cost reaches this.
    #[serde(default)]
    pub budget: Option<paddock_core::common::Money>,
}

/// The network a runner gets: the profile's policy, narrowed to what the environment
/// asks for.
pub(crate) fn runner_network(
    profile: &paddock_core::profile::ExecutionProfile,
    env: Option<&paddock_core::environment::Environment>,
) -> NetworkPolicy {
    let network = profile.network_policy();
    match env.map(|e| &e.config) {
        Some(paddock_core::environment::EnvConfig::Cloud { networking, .. }) => {
            let asked = match networking {
                Networking::Unrestricted {} => NetworkPolicy::Unrestricted,
                Networking::Limited { allowed_hosts, .. } => NetworkPolicy::Limited {
                    allowed_hosts: allowed_hosts.clone(),
                },
            };
            network.narrowest(&asked)
        }
        _ => network,
    }
}

pub struct Manager {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) hub: Arc<Hub>,
    pub backends: BTreeMap<String, Arc<dyn Backend>>,
    pub profiles: Profiles,
    pub(crate) settings: RunnerSettings,
    /// Where snapshots are kept.
    pub(crate) snapshot_dir: std::path::PathBuf,
    /// Serializes capacity checks with the inserts they guard.
    admission: Mutex<()>,
    /// One lifecycle operation at a time per runner.
    op_locks: std::sync::Mutex<std::collections::HashMap<String, Arc<Mutex<()>>>>,
    pub(crate) monitor: crate::supervisor::Monitor,
    keyring: Arc<paddock_vault::Keyring>,
    pub(crate) metrics: Arc<paddock_metrics::PaddockMetrics>,
    /// Teardowns going on in the background ([`Manager::destroy_soon`]).
    teardowns: tokio_util::task::TaskTracker,
    /// Runner activity not written yet ([`Manager::touch`]).
    pub(crate) touched: crate::supervisor::Touched,
}

fn backend_err(field: &str, e: BackendError) -> ServerError {
    match e {
        BackendError::Unsupported { field: f, message } => {
            ServerError::invalid(format!("{field}.{f}"), message)
        }
        BackendError::Unavailable { .. } => ServerError::Unavailable {
            message: e.to_string(),
            code: "backend_unavailable",
        },
        other => ServerError::Backend(other),
    }
}

/// What a manager is built from.
pub struct ManagerDeps {
    pub store: Arc<dyn Store>,
    pub hub: Arc<Hub>,
    pub backends: BTreeMap<String, Arc<dyn Backend>>,
    pub profiles: Profiles,
    pub settings: RunnerSettings,
    pub snapshot_dir: std::path::PathBuf,
    pub keyring: Arc<paddock_vault::Keyring>,
    pub metrics: Arc<paddock_metrics::PaddockMetrics>,
}

impl Manager {
    pub fn new(d: ManagerDeps) -> Self {
        Manager {
            store: d.store,
            hub: d.hub,
            backends: d.backends,
            profiles: d.profiles,
            monitor: crate::supervisor::Monitor::new(d.settings.history_len),
            settings: d.settings,
            snapshot_dir: d.snapshot_dir,
            keyring: d.keyring,
            metrics: d.metrics,
            admission: Mutex::new(()),
            op_locks: std::sync::Mutex::new(std::collections::HashMap::new()),
            teardowns: tokio_util::task::TaskTracker::new(),
            touched: Default::default(),
        }
    }

    pub(crate) fn backend(&self, name: &str) -> ApiResult<&Arc<dyn Backend>> {
        self.backends
            .get(name)
            .ok_or_else(|| ServerError::Unavailable {
                message: format!("backend {name:?} is not configured on this server"),
                code: "backend_unavailable",
            })
    }

    pub(crate) fn published(&self, c: &RunnerChange) {
        if let Some(e) = &c.session_event {
            self.hub.published(&e.session_id, e.seq);
        }
    }

    /// Moves a runner through the lifecycle (persisted, with its event).
    /// `reason` says why (an automatic stop, a failure); on `errored` it is the error.
    pub(crate) async fn transition(
        &self,
        id: &str,
        to: RunnerState,
        reason: Option<String>,
        enforced: Option<serde_json::Value>,
    ) -> ApiResult<Runner> {
        let now = ts::now();
        let change = self
            .store
            .update_runner(
                id,
                Box::new(move |r| {
                    let mut n = r.clone();
                    n.transition(to, now)?;
                    n.error = if to == RunnerState::Errored {
                        reason.clone()
                    } else {
                        None
                    };
                    n.reason = reason;
                    if let Some(e) = enforced {
                        n.enforced = e;
                    }
                    Ok(Some(n))
                }),
            )
            .await?;
        self.published(&change);
        Ok(change.runner)
    }

    /// The spec the backend gets: the runner's settings plus, for a session's runner,
    /// its vaults' `environment_variable` secrets (resolved here, never stored on the
    /// runner).
    pub(crate) async fn spec_with_secrets(&self, r: &Runner) -> ApiResult<RunnerSpec> {
        let mut spec = Self::spec(r);
        let Some(sid) = &r.session_id else {
            return Ok(spec);
        };
        let Ok(session) = self.store.get_session(sid).await else {
            return Ok(spec);
        };
        for vid in &session.vault_ids {
            let Ok(vault) = self.store.get_vault(vid).await else {
                continue;
            };
            if !vault["archived_at"].is_null() {
                continue;
            }
            let creds = self
                .store
                .list_credentials(
                    vid,
                    false,
                    PageReq {
                        limit: 1000,
                        ..PageReq::default()
                    },
                )
                .await?;
            for c in creds.data {
                if c["auth"]["type"] != "environment_variable" {
                    continue;
                }
                let (Some(cid), Some(name)) = (c["id"].as_str(), c["auth"]["secret_name"].as_str())
                else {
                    continue;
                };
                let (_, sealed) = self.store.get_credential(vid, cid).await?;
                let secrets = crate::routes::vaults::open_with(&self.keyring, cid, &sealed)?;
                if let Some(v) = secrets.get("secret_value").and_then(|v| v.as_str()) {
                    spec.env.insert(name.to_string(), v.to_string());
                }
            }
        }
        Ok(spec)
    }

    pub(crate) fn spec(r: &Runner) -> RunnerSpec {
        RunnerSpec {
            runner_id: r.id.clone(),
            session_id: r.session_id.clone(),
            image: r.image.clone(),
            env: r.env.clone(),
            limits: r.limits.clone(),
            network: r.network.clone(),
            seccomp: r.seccomp,
        }
    }

    pub async fn create(&self, req: CreateRunner) -> ApiResult<Runner> {
        self.create_seeded(req, None).await
    }

    /// Creates a runner; with `seed`, its workspace starts as that snapshot.
    pub async fn create_seeded(
        &self,
        req: CreateRunner,
        seed: Option<std::path::PathBuf>,
    ) -> ApiResult<Runner> {
        self.create_inner(req, seed, false).await
    }

    /// Provisions a runner for `profile`'s warm pool.
    pub(crate) async fn create_warm(&self, profile: &str) -> ApiResult<Runner> {
        let req = CreateRunner {
            environment_id: None,
            execution_profile: Some(profile.to_string()),
            session_id: None,
            env: None,
            idle_timeout_secs: None,
            budget: None,
        };
        self.create_inner(req, None, true).await
    }

    async fn create_inner(
        &self,
        req: CreateRunner,
        seed: Option<std::path::PathBuf>,
        warm: bool,
    ) -> ApiResult<Runner> {
        let env = match &req.environment_id {
            Some(eid) => {
                let e = self.store.get_environment(eid).await?;
                if e.archived_at.is_some() {
                    return Err(CoreError::invalid_code(
                        "environment_id",
                        format!("environment {eid:?} is archived"),
                        "environment_archived",
                    )
                    .into());
                }
                Some(e)
            }
            None => None,
        };
        let session = match &req.session_id {
            Some(sid) => {
                let s = self.store.get_session(sid).await?;
                if s.archived_at.is_some()
                    || s.status == paddock_core::session::SessionStatus::Terminated
                {
                    return Err(CoreError::Conflict {
                        message: format!(
                            "session {sid} is archived or terminated and takes no runner"
                        ),
                    }
                    .into());
                }
                Some(s)
            }
            None => None,
        };
        let requested = req
            .execution_profile
            .clone()
            .or_else(|| session.as_ref().and_then(|s| s.execution_profile.clone()))
            .or_else(|| env.as_ref().and_then(|e| e.execution_profile.clone()));
        let (pname, profile) = self
            .profiles
            .resolve("execution_profile", requested.as_deref())?;
        if let Some(s) = &session {
            if !profile.allows_agent(&s.agent.id, &s.agent.name) {
                return Err(ServerError::invalid(
                    "execution_profile",
                    format!("profile {pname:?} does not allow agent {:?}", s.agent.name),
                ));
            }
        }
        let backend_name = serde_json::to_value(profile.backend)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        if let Some(b) = env.as_ref().and_then(|e| e.backend) {
            if b != profile.backend {
                return Err(ServerError::invalid(
                    "environment_id",
                    format!(
                        "the environment asks for backend {b:?} but profile {pname:?} uses {:?}",
                        profile.backend
                    ),
                ));
            }
        }
        let backend = self.backend(&backend_name)?.clone();
        // The profile caps; the environment may ask for less.
        let mut limits = profile.limits();
        if let Some(e) = &env {
            let l = &e.resource_limits;
            let pick =
                |field: &str, want: Option<u64>, cap: Option<u64>| -> ApiResult<Option<u64>> {
                    match (want, cap) {
                        (Some(w), Some(c)) if w > c => Err(ServerError::invalid(
                            format!("environment.resource_limits.{field}"),
                            format!("{w} is above profile {pname:?}'s limit of {c}"),
                        )),
                        (Some(w), _) => Ok(Some(w)),
                        (None, c) => Ok(c),
                    }
                };
            limits.memory_mb = pick("memory_mb", l.memory_mb, limits.memory_mb)?;
            limits.pids = pick("pids", l.pids, limits.pids)?;
            limits.disk_mb = pick("disk_mb", l.disk_mb, limits.disk_mb)?;
            limits.cpu = match (l.cpu, limits.cpu) {
                (Some(w), Some(c)) if w > c => {
                    return Err(ServerError::invalid(
                        "environment.resource_limits.cpu",
                        format!("{w} is above profile {pname:?}'s limit of {c}"),
                    ))
                }
                (Some(w), _) => Some(w),
                (None, c) => c,
            };
        }
        let network = runner_network(profile, env.as_ref());
        if let Some(b) = &req.budget {
            b.validate("budget")?;
        }
        let mut vars = env.as_ref().map(|e| e.env.clone()).unwrap_or_default();
        for (k, v) in req.env.clone().unwrap_or_default() {
            if !paddock_core::environment::valid_env_name(&k) || v.contains('\0') {
                return Err(ServerError::invalid(
                    format!("env.{k}"),
                    "variable names are letters, digits and _ (not starting with a digit); values hold no NUL",
                ));
            }
            vars.insert(k, v);
        }
        let now = ts::now();
        let runner = Runner {
            id: id::new(id::RUNNER),
            kind: "runner".into(),
            state: RunnerState::Creating,
            backend: backend_name.clone(),
            isolation: backend.capabilities().isolation,
            execution_profile: Some(pname.clone()),
            environment_id: env.as_ref().map(|e| e.id.clone()),
            session_id: session.as_ref().map(|s| s.id.clone()),
            error: None,
            image: profile
                .runbook
                .clone()
                .or_else(|| env.as_ref().and_then(|e| e.runbook.clone())),
            network,
            limits,
            enforced: serde_json::Value::Null,
            seccomp: profile.seccomp,
            env: vars,
            reason: None,
            started_at: None,
            last_activity_at: None,
            idle_timeout_secs: req
                .idle_timeout_secs
                .or(env.as_ref().and_then(|e| e.idle_timeout_secs)),
            budget: req.budget.clone(),
            pending_restart: vec![],
            warm,
            created_at: now,
            updated_at: now,
        };
        let spec = self.spec_with_secrets(&runner).await?;
        backend
            .check(&spec)
            .map_err(|e| backend_err("execution_profile", e))?;
        if !warm && seed.is_none() && profile.warm_pool > 0 {
            // Same boot inputs (profile, image, network, limits, no variables): a warm
            // runner will do.
            if spec.env.is_empty() {
                if let Some(r) = self.claim_warm(&runner).await? {
                    self.metrics.warm_pool_hit(&pname);
                    return Ok(r);
                }
            }
            self.metrics.warm_pool_miss(&pname);
        }
        {
            let _guard = self.admission.lock().await;
            if let Some(max) = self.settings.max_active {
                let active = self.count_active().await?;
                // A warm runner never takes the last free slot: demand comes first.
                if warm && active + 1 >= u64::from(max) {
                    return Err(ServerError::Unavailable {
                        message: "the warm pool may not fill the last free slot".into(),
                        code: "capacity_exceeded",
                    });
                }
                if active >= u64::from(max) && (warm || !self.make_room(None).await?) {
                    return Err(ServerError::Unavailable {
                        message: format!(
                            "{active} of the {max} runners this server allows are active, and every one is busy"
                        ),
                        code: "capacity_exceeded",
                    });
                }
            }
            if let Some(max) = profile.max_runners {
                let active = self.store.count_active_runners(&pname).await?;
                if warm && active + 1 >= u64::from(max) {
                    return Err(ServerError::Unavailable {
                        message: "the warm pool may not fill the profile's last free slot".into(),
                        code: "capacity_exceeded",
                    });
                }
                if active >= u64::from(max) && (warm || !self.make_room(Some(&pname)).await?) {
                    return Err(ServerError::Unavailable {
                        message: format!(
                            "profile {pname:?} already has {active} of its {max} runners active, and every one is busy"
                        ),
                        code: "capacity_exceeded",
                    });
                }
            }
            let change = self.store.insert_runner(runner).await?;
            self.published(&change);
        }
        let id = spec.runner_id.clone();
        if let Some(sid) = &spec.session_id {
            match self.bind_session(&id, sid).await {
                Ok(()) => {}
                Err(e) => {
                    // Never leave the runner in `creating`: it would count against
                    // capacity for ever.
                    let why = format!("binding the session failed: {e}");
                    self.transition(&id, RunnerState::Provisioning, None, None)
                        .await?;
                    self.transition(&id, RunnerState::Errored, Some(why), None)
                        .await?;
                    return Err(e);
                }
            }
        }
        self.transition(&id, RunnerState::Provisioning, None, None)
            .await?;
        if let Some(seed) = &seed {
            if let Err(e) = backend.restore(&id, seed).await {
                return self
                    .transition(
                        &id,
                        RunnerState::Errored,
                        Some(format!("seeding the workspace failed: {e}")),
                        None,
                    )
                    .await;
            }
        }
        let limit = Duration::from_secs(self.settings.provision_timeout_secs);
        let provision_started = std::time::Instant::now();
        let provisioned = match tokio::time::timeout(limit, backend.provision(&spec)).await {
            Ok(r) => r,
            Err(_) => {
                // Stuck: kill whatever started and report it.
                let _ = backend.stop(&id, Duration::ZERO).await;
                Err(BackendError::Timeout(format!(
                    "still provisioning after {limit:?}"
                )))
            }
        };
        self.metrics
            .record_provision(&backend_name, provision_started.elapsed());
        match provisioned {
            Ok(p) => {
                let enforced = serde_json::to_value(&p.enforced).ok();
                self.transition(&id, RunnerState::Running, None, enforced)
                    .await
            }
            Err(e) => {
                tracing::warn!(runner_id = %id, error = %e, "provisioning failed");
                self.transition(
                    &id,
                    RunnerState::Errored,
                    Some(format!("provisioning failed: {e}")),
                    None,
                )
                .await
            }
        }
    }

    /// Makes the session's `runner_id` this runner.
    async fn bind_session(&self, id: &str, sid: &str) -> ApiResult<()> {
        let rid = id.to_string();
        let (_, ev) = self
            .store
            .update_session(
                sid,
                Box::new(move |s| {
                    let mut n = s.clone();
                    n.runner_id = Some(rid.clone());
                    n.updated_at = ts::now();
                    let changed =
                        serde_json::Map::from_iter([("runner_id".to_string(), rid.into())]);
                    Ok(Some((n, changed)))
                }),
            )
            .await?;
        if let Some(e) = ev {
            self.hub.published(sid, e.seq);
        }
        Ok(())
    }

    /// Hands a warm runner with the same boot inputs as `template` to its requester.
    async fn claim_warm(&self, template: &Runner) -> ApiResult<Option<Runner>> {
        let candidates: Vec<Runner> = self
            .all_runners()
            .await?
            .into_iter()
            .filter(|r| {
                r.warm
                    && r.state == RunnerState::Running
                    && r.execution_profile == template.execution_profile
                    && r.backend == template.backend
                    && r.image == template.image
                    && r.network == template.network
                    && r.limits == template.limits
            })
            .collect();
        for c in candidates {
            let _op = self.lock_runner(&c.id).await;
            let claimed = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let (t, flag) = (template.clone(), claimed.clone());
            let change = self
                .store
                .update_runner(
                    &c.id,
                    Box::new(move |cur| {
                        if !cur.warm || cur.state != RunnerState::Running {
                            return Ok(None);
                        }
                        let now = ts::now();
                        let mut n = cur.clone();
                        n.warm = false;
                        n.session_id = t.session_id;
                        n.environment_id = t.environment_id;
                        n.budget = t.budget;
                        n.idle_timeout_secs = t.idle_timeout_secs;
                        n.last_activity_at = Some(now);
                        n.updated_at = now;
                        flag.store(true, std::sync::atomic::Ordering::SeqCst);
                        Ok(Some(n))
                    }),
                )
                .await?;
            if !claimed.load(std::sync::atomic::Ordering::SeqCst) {
                continue;
            }
            let r = change.runner;
            let _ = self
                .store
                .append_runner_event(
                    &r.id,
                    "runner.claimed",
                    serde_json::Map::from_iter([
                        ("session_id".to_string(), serde_json::json!(r.session_id)),
                        (
                            "from_pool".to_string(),
                            serde_json::json!(r.execution_profile),
                        ),
                    ]),
                )
                .await;
            if let Some(sid) = &r.session_id {
                self.bind_session(&r.id, sid).await?;
            }
            tracing::info!(runner_id = %r.id, "claimed a warm runner");
            return Ok(Some(r));
        }
        Ok(None)
    }

    /// Under capacity pressure: stops the runner idle the longest (warm ones first) to
    /// make room. False when every runner is busy (a turn running, or used within
    /// `busy_window_secs`).
    async fn make_room(&self, profile: Option<&str>) -> ApiResult<bool> {
        let now = ts::now();
        let mut idle = Vec::new();
        for r in self.all_runners().await? {
            if r.state != RunnerState::Running
                || profile.is_some_and(|p| r.execution_profile.as_deref() != Some(p))
            {
                continue;
            }
            let last = self
                .last_activity(&r)
                .or(r.started_at)
                .unwrap_or(r.created_at);
            if !r.warm && (now - last).as_seconds_f64() < self.settings.busy_window_secs as f64 {
                continue;
            }
            if let Some(sid) = &r.session_id {
                if let Ok(s) = self.store.get_session(sid).await {
                    if s.status == paddock_core::session::SessionStatus::Running {
                        continue;
                    }
                }
            }
            idle.push((!r.warm, last, r));
        }
        idle.sort_by_key(|a| (a.0, a.1));
        let Some((_, _, r)) = idle.into_iter().next() else {
            return Ok(false);
        };
        let _op = self.lock_runner(&r.id).await;
        let fresh = self.store.get_runner(&r.id).await?;
        if fresh.state != RunnerState::Running {
            return Ok(true);
        }
        let reason = "capacity: stopped to make room for a new runner".to_string();
        tracing::info!(runner_id = %r.id, "{reason}");
        self.stop_running(fresh, None, Some(reason.clone())).await?;
        crate::security::audit_system(
            self.store.as_ref(),
            "runners.auto_stop",
            &r.id,
            true,
            serde_json::json!({"reason": reason}),
        )
        .await;
        Ok(true)
    }

    /// Keeps every profile's warm pool full (runs in its own task).
    pub(crate) async fn refill_pools(&self) {
        for (name, p) in &self.profiles.profiles {
            if p.warm_pool == 0 {
                continue;
            }
            let Ok(all) = self.all_runners().await else {
                return;
            };
            let have = all
                .iter()
                .filter(|r| {
                    r.warm
                        && r.execution_profile.as_deref() == Some(name.as_str())
                        && matches!(
                            r.state,
                            RunnerState::Creating
                                | RunnerState::Provisioning
                                | RunnerState::Running
                        )
                })
                .count() as u32;
            for _ in have..p.warm_pool {
                match self.create_warm(name).await {
                    Ok(r) if r.state == RunnerState::Running => {
                        tracing::debug!(runner_id = %r.id, profile = %name, "warm runner ready")
                    }
                    Ok(r) => {
                        tracing::warn!(runner_id = %r.id, profile = %name, state = %r.state, "a warm runner failed to start");
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(profile = %name, error = %e, "cannot refill the warm pool");
                        break;
                    }
                }
            }
        }
    }

    /// Serializes lifecycle operations (stop, start, restore, snapshot, destroy,
    /// automatic actions) on one runner.
    pub(crate) async fn lock_runner(&self, id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut map = self.op_locks.lock().unwrap_or_else(|p| p.into_inner());
            map.retain(|_, l| Arc::strong_count(l) > 1);
            map.entry(id.to_string())
                .or_insert_with(|| Arc::new(Mutex::new(())))
                .clone()
        };
        lock.lock_owned().await
    }

    /// Stops a running runner; `grace` for running commands (default from config).
    pub async fn stop(&self, id: &str, grace: Option<Duration>) -> ApiResult<Runner> {
        let _op = self.lock_runner(id).await;
        let r = self.store.get_runner(id).await?;
        match r.state {
            RunnerState::Stopped => Ok(r),
            RunnerState::Running => self.stop_running(r, grace, None).await,
            other => Err(CoreError::Conflict {
                message: format!("runner {id} is {other}; only a running runner can be stopped"),
            }
            .into()),
        }
    }

    /// Stops a running runner; `reason` says why when it is automatic.
    pub(crate) async fn stop_running(
        &self,
        r: Runner,
        grace: Option<Duration>,
        reason: Option<String>,
    ) -> ApiResult<Runner> {
        let backend = self.backend(&r.backend)?.clone();
        self.transition(&r.id, RunnerState::Stopping, reason.clone(), None)
            .await?;
        let grace = grace.unwrap_or(Duration::from_secs(self.settings.stop_grace_secs));
        match backend.stop(&r.id, grace).await {
            Ok(()) => {
                self.transition(&r.id, RunnerState::Stopped, reason, None)
                    .await
            }
            Err(e) => {
                self.transition(
                    &r.id,
                    RunnerState::Errored,
                    Some(format!("stop failed: {e}")),
                    None,
                )
                .await
            }
        }
    }

    pub async fn start(&self, id: &str) -> ApiResult<Runner> {
        let _op = self.lock_runner(id).await;
        self.start_locked(id).await
    }

    /// `start`, for callers that hold the runner's lock.
    pub(crate) async fn start_locked(&self, id: &str) -> ApiResult<Runner> {
        let r = self.store.get_runner(id).await?;
        match r.state {
            RunnerState::Running => Ok(r),
            RunnerState::Stopped => {
                let backend = self.backend(&r.backend)?.clone();
                // Everything that can fail comes before the runner leaves `stopped`.
                let spec = self.spec_with_secrets(&r).await?;
                self.transition(id, RunnerState::Provisioning, None, None)
                    .await?;
                match backend.start(&spec).await {
                    Ok(p) => {
                        let enforced = serde_json::to_value(&p.enforced).ok();
                        self.transition(id, RunnerState::Running, None, enforced)
                            .await
                    }
                    Err(e) => {
                        self.transition(
                            id,
                            RunnerState::Errored,
                            Some(format!("start failed: {e}")),
                            None,
                        )
                        .await
                    }
                }
            }
            other => Err(CoreError::Conflict {
                message: format!("runner {id} is {other}; only a stopped runner can be started"),
            }
            .into()),
        }
    }

    /// Destroys a runner in the background: `destroying` is persisted before this
    /// returns, and the teardown (stopping what runs, removing the sandbox, its
    /// workspace and cgroup) follows. Idempotent: a runner already `destroying` gets
    /// its teardown tried again. A teardown cut off by a crash is finished by
    /// [`Manager::adopt`] at the next start.
    pub async fn destroy_soon(self: &Arc<Self>, id: &str) -> ApiResult<Runner> {
        let (r, was_running) = {
            let _op = self.lock_runner(id).await;
            let r = self.store.get_runner(id).await?;
            match r.state {
                RunnerState::Destroyed | RunnerState::Destroying => (r, false),
                RunnerState::Running | RunnerState::Stopped | RunnerState::Errored => {
                    let running = r.state == RunnerState::Running;
                    let r = self
                        .transition(id, RunnerState::Destroying, None, None)
                        .await?;
                    (r, running)
                }
                other => {
                    return Err(CoreError::Conflict {
                        message: format!("runner {id} is {other}; retry once it settles"),
                    }
                    .into())
                }
            }
        };
        if r.state == RunnerState::Destroying {
            let (m, id) = (self.clone(), id.to_string());
            self.teardowns
                .spawn(async move { m.tear_down(&id, was_running).await });
        }
        Ok(r)
    }

    /// Finishes the destroy of a `destroying` runner: stops it (with the stop grace,
    /// when it was running), removes its sandbox, and marks it `destroyed`. A failure
    /// leaves it `destroying`, to be tried again by the next destroy or start.
    async fn tear_down(&self, id: &str, was_running: bool) {
        let _op = self.lock_runner(id).await;
        let r = match self.store.get_runner(id).await {
            Ok(r) if r.state == RunnerState::Destroying => r,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(runner_id = %id, error = %e, "cannot read the runner to tear it down");
                return;
            }
        };
        let backend = match self.backend(&r.backend) {
            Ok(b) => b.clone(),
            Err(e) => {
                tracing::warn!(runner_id = %id, error = %e, "cannot tear the runner down");
                return;
            }
        };
        if was_running {
            let grace = Duration::from_secs(self.settings.stop_grace_secs);
            if let Err(e) = backend.stop(id, grace).await {
                tracing::debug!(runner_id = %id, error = %e, "stopping before the teardown");
            }
        }
        if let Err(e) = backend.destroy(id).await {
            tracing::warn!(runner_id = %id, error = %e, "teardown failed; the runner stays destroying (destroy it again, or restart, to retry)");
            return;
        }
        if let Err(e) = self
            .transition(id, RunnerState::Destroyed, r.reason.clone(), None)
            .await
        {
            tracing::warn!(runner_id = %id, error = %e, "cannot mark the runner destroyed");
        }
    }

    /// Waits, for at most `grace`, for the teardowns going on in the background.
    pub async fn drain_teardowns(&self, grace: Duration) {
        self.teardowns.close();
        if tokio::time::timeout(grace, self.teardowns.wait())
            .await
            .is_err()
        {
            tracing::info!(
                left = self.teardowns.len(),
                "teardowns unfinished at exit; the next start finishes them"
            );
        }
    }

    /// Destroys a runner (stopping it first when it runs) before returning. Idempotent.
    pub async fn destroy(&self, id: &str) -> ApiResult<Runner> {
        self.destroy_with_reason(id, None).await
    }

    /// Destroys a runner; `reason` says why when it is automatic (pruning).
    pub(crate) async fn destroy_with_reason(
        &self,
        id: &str,
        reason: Option<String>,
    ) -> ApiResult<Runner> {
        let _op = self.lock_runner(id).await;
        self.destroy_locked(id, reason).await
    }

    /// `destroy_with_reason`, for callers that hold the runner's lock.
    pub(crate) async fn destroy_locked(
        &self,
        id: &str,
        reason: Option<String>,
    ) -> ApiResult<Runner> {
        let mut r = self.store.get_runner(id).await?;
        if r.state == RunnerState::Running {
            r = self.stop_running(r, None, reason.clone()).await?;
        }
        match r.state {
            RunnerState::Destroyed => return Ok(r),
            RunnerState::Stopped | RunnerState::Errored => {
                r = self
                    .transition(id, RunnerState::Destroying, reason.clone(), None)
                    .await?;
            }
            // A destroy that failed halfway is retried.
            RunnerState::Destroying => {}
            other => {
                return Err(CoreError::Conflict {
                    message: format!("runner {id} is {other}; retry once it settles"),
                }
                .into())
            }
        }
        let backend = self.backend(&r.backend)?.clone();
        backend.destroy(id).await.map_err(ServerError::Backend)?;
        self.transition(id, RunnerState::Destroyed, reason, None)
            .await
    }

    /// A client of the runner's worker; the runner must be running.
    pub async fn worker(&self, id: &str) -> ApiResult<WorkerClient> {
        Ok(self.worker_of(id).await?.1)
    }

    /// A running runner and a client of its worker.
    pub async fn worker_of(&self, id: &str) -> ApiResult<(Runner, WorkerClient)> {
        let r = self.store.get_runner(id).await?;
        if r.state != RunnerState::Running {
            return Err(CoreError::Conflict {
                message: format!("runner {id} is {}; it must be running", r.state),
            }
            .into());
        }
        let client = WorkerClient::new(self.backend(&r.backend)?.connector(id));
        Ok((r, client))
    }

    pub async fn sandbox_logs(&self, id: &str, tail: usize) -> ApiResult<String> {
        let r = self.store.get_runner(id).await?;
        match self.backend(&r.backend)?.logs(id, tail).await {
            Ok(l) => Ok(l),
            Err(BackendError::NotFound(_)) => Ok(String::new()),
            Err(e) => Err(ServerError::Backend(e)),
        }
    }

    /// After a (re)start: re-attach runners that survived, mark what was lost, and
    /// destroy sandboxes no runner owns.
    pub async fn adopt(&self) -> ApiResult<()> {
        let live = self.all_runners().await?;
        let known: HashSet<String> = live
            .iter()
            .filter(|r| r.state != RunnerState::Destroyed)
            .map(|r| r.id.clone())
            .collect();
        let mut found: BTreeMap<String, Managed> = BTreeMap::new();
        let mut listed_by: BTreeMap<String, String> = BTreeMap::new();
        let mut unlisted: HashSet<String> = HashSet::new();
        for (name, b) in &self.backends {
            if !b.capabilities().available {
                tracing::debug!(backend = %name, "backend unavailable; nothing to adopt from it");
                unlisted.insert(name.clone());
                continue;
            }
            match b.list_managed().await {
                Ok(ms) => {
                    for m in ms {
                        listed_by.insert(m.runner_id.clone(), name.clone());
                        found.insert(m.runner_id.clone(), m);
                    }
                }
                Err(e) => {
                    tracing::warn!(backend = %name, error = %e, "cannot list sandboxes; leaving its runners as they are");
                    unlisted.insert(name.clone());
                }
            }
        }
        for r in live {
            if unlisted.contains(&r.backend) {
                continue;
            }
            let running = found.get(&r.id).is_some_and(|m| m.running);
            match r.state {
                RunnerState::Running => {
                    let healthy = running
                        && match self.backends.get(&r.backend) {
                            Some(b) => WorkerClient::new(b.connector(&r.id))
                                .wait_healthy(Duration::from_secs(3))
                                .await
                                .is_ok(),
                            None => false,
                        };
                    if healthy {
                        tracing::info!(runner_id = %r.id, "adopted running runner");
                    } else {
                        tracing::warn!(runner_id = %r.id, "runner lost while the orchestrator was down");
                        if running {
                            // Alive but not answering: stop it, so it holds nothing unseen.
                            if let Some(b) = self.backends.get(&r.backend) {
                                let _ = b.stop(&r.id, Duration::ZERO).await;
                            }
                        }
                        crate::security::audit_system(
                            self.store.as_ref(),
                            "runners.lost",
                            &r.id,
                            true,
                            serde_json::json!({"reason": "the sandbox was gone when the orchestrator started"}),
                        )
                        .await;
                        self.transition(
                            &r.id,
                            RunnerState::Errored,
                            Some("the sandbox was lost while the orchestrator was down; destroy and recreate it".into()),
                            None,
                        )
                        .await?;
                    }
                }
                RunnerState::Creating | RunnerState::Provisioning => {
                    if let Some(b) = self.backends.get(&r.backend) {
                        let _ = b.stop(&r.id, Duration::ZERO).await;
                    }
                    if r.state == RunnerState::Creating {
                        self.transition(&r.id, RunnerState::Provisioning, None, None)
                            .await?;
                    }
                    self.transition(
                        &r.id,
                        RunnerState::Errored,
                        Some("the orchestrator stopped while this runner was provisioning; destroy and recreate it".into()),
                        None,
                    )
                    .await?;
                }
                RunnerState::Stopping => {
                    let result = match self.backends.get(&r.backend) {
                        Some(b) => b
                            .stop(&r.id, Duration::ZERO)
                            .await
                            .map_err(|e| e.to_string()),
                        None => Err("backend not configured".into()),
                    };
                    match result {
                        Ok(()) => {
                            self.transition(&r.id, RunnerState::Stopped, None, None)
                                .await?
                        }
                        Err(e) => {
                            self.transition(
                                &r.id,
                                RunnerState::Errored,
                                Some(format!("stop failed: {e}")),
                                None,
                            )
                            .await?
                        }
                    };
                }
                // A teardown the last run began (or that failed): finish it.
                RunnerState::Destroying => {
                    tracing::info!(runner_id = %r.id, "finishing the teardown of a destroyed runner");
                    self.tear_down(&r.id, false).await;
                }
                RunnerState::Stopped | RunnerState::Errored if running => {
                    if let Some(b) = self.backends.get(&r.backend) {
                        let _ = b.stop(&r.id, Duration::ZERO).await;
                    }
                }
                _ => {}
            }
        }
        for (id, m) in found {
            if !known.contains(&id) {
                tracing::warn!(runner_id = %id, running = m.running, "sweeping an orphaned sandbox");
                crate::security::audit_system(
                    self.store.as_ref(),
                    "runners.orphan_swept",
                    &id,
                    true,
                    serde_json::json!({"running": m.running}),
                )
                .await;
                if let Some(b) = listed_by.get(&id).and_then(|n| self.backends.get(n)) {
                    if let Err(e) = b.destroy(&id).await {
                        tracing::warn!(runner_id = %id, error = %e, "cannot sweep orphan");
                    }
                }
            }
        }
        Ok(())
    }
}
