//! Runner supervision: usage sampling (a short history per runner, OOM kills and a full
//! disk reported as events), automatic stops (idle timeout, wall-clock TTL, budget) and
//! pruning, plus the operations built on them (restart, settings, snapshots, fleet).

use paddock_backend::WorkerClient;
use paddock_core::common::Money;
use paddock_core::lifecycle::RunnerState;
use paddock_core::runner::{NetworkPolicy, Runner};
use paddock_core::ts::{self, Timestamp};
use paddock_core::{id, CoreError};
use paddock_store::{PageReq, RunnerFilter, Snapshot};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

use crate::error::{ApiResult, ServerError};
use crate::manager::Manager;

/// How long runner activity waits in memory before it is written.
pub const TOUCH_FLUSH: Duration = Duration::from_millis(250);

/// Runner activity not written yet.
pub type Touched = Arc<Mutex<Pending>>;

#[derive(Default)]
pub struct Pending {
    /// Runner id → when it was last active; kept until that time is written.
    at: HashMap<String, Timestamp>,
    /// A task is writing them.
    flushing: bool,
}

/// One usage sample of a running runner.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    #[serde(with = "paddock_core::ts::serde_ts")]
    pub at: Timestamp,
    pub cpu_seconds: Option<f64>,
    /// CPU use since the previous sample, in percent of one core.
    pub cpu_percent: Option<f64>,
    pub memory_bytes: Option<u64>,
    pub memory_limit_bytes: Option<u64>,
    pub disk_bytes: Option<u64>,
    pub fs_available_bytes: Option<u64>,
    pub processes: Option<u64>,
    /// Network bytes in and out since the sandbox started (backends that measure it).
    #[serde(default)]
    pub network_rx_bytes: Option<u64>,
    #[serde(default)]
    pub network_tx_bytes: Option<u64>,
}

/// In-memory monitoring state (rebuilt after a restart by sampling again).
pub struct Monitor {
    history_len: usize,
    samples: Mutex<HashMap<String, VecDeque<Sample>>>,
    oom_seen: Mutex<HashMap<String, u64>>,
    disk_full: Mutex<HashSet<String>>,
}

impl Monitor {
    pub fn new(history_len: usize) -> Self {
        Monitor {
            history_len,
            samples: Mutex::new(HashMap::new()),
            oom_seen: Mutex::new(HashMap::new()),
            disk_full: Mutex::new(HashSet::new()),
        }
    }

    pub fn history(&self, id: &str) -> Vec<Sample> {
        let m = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        m.get(id)
            .map(|d| d.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn latest(&self, id: &str) -> Option<Sample> {
        let m = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        m.get(id).and_then(|d| d.back().cloned())
    }

    fn push(&self, id: &str, mut s: Sample) {
        let mut m = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let d = m.entry(id.to_string()).or_default();
        if let (Some(prev), Some(now)) = (d.back(), s.cpu_seconds) {
            let dt = (s.at - prev.at).as_seconds_f64();
            if let (Some(before), true) = (prev.cpu_seconds, dt > 0.0) {
                s.cpu_percent = Some(((now - before).max(0.0) / dt * 100.0 * 10.0).round() / 10.0);
            }
        }
        d.push_back(s);
        while d.len() > self.history_len {
            d.pop_front();
        }
    }

    fn forget(&self, keep: &HashSet<String>) {
        let mut m = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|k, _| keep.contains(k));
    }
}

/// `POST /v1/runners/{id}`: settings of a live runner.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunnerUpdate {
    #[serde(default)]
    pub idle_timeout_secs: paddock_core::common::Patch<u64>,
    #[serde(default)]
    pub budget: paddock_core::common::Patch<Money>,
    /// Variables to set (a string) or remove (`null`); applied at the next start.
    #[serde(default)]
    pub env: Option<BTreeMap<String, Option<String>>>,
    /// `none` or `unrestricted` (within the profile); applied at the next start.
    #[serde(default)]
    pub network: Option<NetworkPolicy>,
}

/// Equal policies, with `limited` host lists compared as sets.
fn same_policy(a: &NetworkPolicy, b: &NetworkPolicy) -> bool {
    match (a, b) {
        (
            NetworkPolicy::Limited { allowed_hosts: x },
            NetworkPolicy::Limited { allowed_hosts: y },
        ) => {
            let (x, y): (HashSet<&String>, HashSet<&String>) =
                (x.iter().collect(), y.iter().collect());
            x == y
        }
        _ => a == b,
    }
}

fn f64_at(v: &Value, p: &str) -> Option<f64> {
    v.pointer(p).and_then(Value::as_f64)
}

fn u64_at(v: &Value, p: &str) -> Option<u64> {
    v.pointer(p).and_then(Value::as_u64)
}

fn cost_cents(m: &Money) -> f64 {
    m.amount.trim().parse().unwrap_or(0.0)
}

impl Manager {
    /// Runners holding resources, across profiles.
    pub(crate) async fn count_active(&self) -> ApiResult<u64> {
        Ok(self
            .all_runners()
            .await?
            .iter()
            .filter(|r| r.state.is_active())
            .count() as u64)
    }

    pub(crate) async fn all_runners(&self) -> ApiResult<Vec<Runner>> {
        let mut out = vec![];
        let mut page = PageReq {
            limit: 500,
            ..PageReq::default()
        };
        loop {
            let p = self
                .store
                .list_runners(RunnerFilter::default(), page.clone())
                .await?;
            out.extend(p.data);
            match p.next {
                Some(c) => page.cursor = Some(c),
                None => return Ok(out),
            }
        }
    }

    pub async fn restart(&self, id: &str) -> ApiResult<Runner> {
        let _op = self.lock_runner(id).await;
        let r = self.store.get_runner(id).await?;
        if r.state == RunnerState::Running {
            self.stop_running(r, None, Some("restart".into())).await?;
        }
        self.start_locked(id).await
    }

    /// Records activity on a runner. It is kept in memory and written within
    /// [`TOUCH_FLUSH`], one write per runner however many requests came: a write (an
    /// fsync) per request would be most of an exec's time through the API, and would
    /// hold the store up for the next one. Readers of a runner's activity use
    /// [`Manager::last_activity`], which sees what is not written yet.
    pub fn touch(&self, id: &str) {
        {
            let mut p = self.touched.lock().unwrap_or_else(|p| p.into_inner());
            p.at.insert(id.to_string(), ts::now());
            if std::mem::replace(&mut p.flushing, true) {
                return;
            }
        }
        let (store, touched) = (self.store.clone(), self.touched.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(TOUCH_FLUSH).await;
                let batch: Vec<(String, Timestamp)> = {
                    let p = touched.lock().unwrap_or_else(|p| p.into_inner());
                    p.at.iter().map(|(id, at)| (id.clone(), *at)).collect()
                };
                for (id, at) in &batch {
                    if let Err(e) = store.touch_runner(id, *at).await {
                        tracing::debug!(runner_id = %id, error = %e, "cannot record runner activity");
                    }
                }
                // What was written is forgotten, unless it was touched again meanwhile.
                let mut p = touched.lock().unwrap_or_else(|p| p.into_inner());
                for (id, at) in batch {
                    if p.at.get(&id) == Some(&at) {
                        p.at.remove(&id);
                    }
                }
                if p.at.is_empty() {
                    p.flushing = false;
                    return;
                }
            }
        });
    }

    /// When a runner was last active, counting activity not written yet.
    pub fn last_activity(&self, r: &Runner) -> Option<Timestamp> {
        let pending = self
            .touched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .at
            .get(&r.id)
            .copied();
        r.last_activity_at.max(pending)
    }

    pub async fn update(&self, id: &str, u: RunnerUpdate) -> ApiResult<Runner> {
        let r = self.store.get_runner(id).await?;
        if r.state == RunnerState::Destroyed || r.state == RunnerState::Destroying {
            return Err(CoreError::Conflict {
                message: format!("runner {id} is {}; its settings are final", r.state),
            }
            .into());
        }
        if let paddock_core::common::Patch::Value(b) = &u.budget {
            b.validate("budget")?;
        }
        if let Some(env) = &u.env {
            for (k, v) in env {
                if !paddock_core::environment::valid_env_name(k)
                    || v.as_deref().is_some_and(|v| v.contains('\0'))
                {
                    return Err(ServerError::invalid(
                        format!("env.{k}"),
                        "not a valid variable name or value",
                    ));
                }
            }
        }
        if let Some(n) = &u.network {
            let profile = self
                .profiles
                .resolve("execution_profile", r.execution_profile.as_deref())?
                .1;
            if !same_policy(&profile.network_policy().narrowest(n), n) {
                return Err(ServerError::invalid(
                    "network",
                    format!(
                        "the runner's profile allows at most {:?} networking",
                        profile.network_policy().name()
                    ),
                ));
            }
            let b = self.backend(&r.backend)?;
            let spec = Self::spec(&Runner {
                network: n.clone(),
                ..r.clone()
            });
            b.check(&spec)
                .map_err(|e| ServerError::invalid("network", e.to_string()))?;
        }
        let live = r.state == RunnerState::Running;
        let change = self
            .store
            .update_runner(
                id,
                Box::new(move |cur| {
                    let mut n = cur.clone();
                    match u.idle_timeout_secs {
                        paddock_core::common::Patch::Missing => {}
                        paddock_core::common::Patch::Null => n.idle_timeout_secs = None,
                        paddock_core::common::Patch::Value(v) => n.idle_timeout_secs = Some(v),
                    }
                    match u.budget {
                        paddock_core::common::Patch::Missing => {}
                        paddock_core::common::Patch::Null => n.budget = None,
                        paddock_core::common::Patch::Value(b) => n.budget = Some(b),
                    }
                    if let Some(env) = u.env {
                        for (k, v) in env {
                            match v {
                                Some(v) => n.env.insert(k, v),
                                None => n.env.remove(&k),
                            };
                        }
                        if live
                            && n.env != cur.env
                            && !n.pending_restart.contains(&"env".to_string())
                        {
                            n.pending_restart.push("env".into());
                        }
                    }
                    if let Some(net) = u.network {
                        if live
                            && net != cur.network
                            && !n.pending_restart.contains(&"network".to_string())
                        {
                            n.pending_restart.push("network".into());
                        }
                        n.network = net;
                    }
                    n.updated_at = ts::now();
                    Ok(Some(n))
                }),
            )
            .await?;
        Ok(change.runner)
    }

    // ------------------------------------------------------------ snapshots

    pub async fn snapshot(&self, id: &str, label: Option<String>) -> ApiResult<Snapshot> {
        let _op = self.lock_runner(id).await;
        let r = self.store.get_runner(id).await?;
        if matches!(
            r.state,
            RunnerState::Destroyed | RunnerState::Destroying | RunnerState::Creating
        ) {
            return Err(CoreError::Conflict {
                message: format!(
                    "runner {id} is {}; there is no workspace to snapshot",
                    r.state
                ),
            }
            .into());
        }
        let b = self.backend(&r.backend)?.clone();
        let sid = id::new(id::SNAPSHOT);
        let path = self.snapshot_dir.join(format!("{sid}.tar.gz"));
        let size = b.snapshot(id, &path).await?;
        let snap = Snapshot {
            id: sid,
            kind: "snapshot".into(),
            runner_id: id.to_string(),
            label,
            path: path.display().to_string(),
            size_bytes: size,
            contents: vec!["workspace".into()],
            created_at: ts::now(),
        };
        let snap = match self.store.insert_snapshot(snap).await {
            Ok(s) => s,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(e.into());
            }
        };
        let payload = Map::from_iter([
            ("snapshot_id".to_string(), json!(snap.id)),
            ("size_bytes".to_string(), json!(snap.size_bytes)),
        ]);
        if let Ok(c) = self
            .store
            .append_runner_event(id, "runner.snapshot_created", payload)
            .await
        {
            self.published(&c);
        }
        Ok(snap)
    }

    pub async fn delete_snapshot(&self, sid: &str) -> ApiResult<()> {
        let snap = self.store.get_snapshot(sid).await?;
        self.store.delete_snapshot(sid).await?;
        if let Err(e) = std::fs::remove_file(&snap.path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(snapshot_id = %sid, error = %e, "cannot remove snapshot file");
            }
        }
        Ok(())
    }

    /// Restores a runner's workspace to a snapshot (stopping and restarting it when it
    /// runs). A failed restore leaves the workspace as it was.
    pub async fn restore(&self, id: &str, snapshot_id: &str) -> ApiResult<Runner> {
        let _op = self.lock_runner(id).await;
        let snap = self.store.get_snapshot(snapshot_id).await?;
        let r = self.store.get_runner(id).await?;
        let was_running = match r.state {
            RunnerState::Running => {
                self.stop_running(
                    r.clone(),
                    None,
                    Some(format!("restoring snapshot {snapshot_id}")),
                )
                .await?;
                true
            }
            RunnerState::Stopped => false,
            other => {
                return Err(CoreError::Conflict {
                    message: format!(
                        "runner {id} is {other}; only a running or stopped runner can be restored"
                    ),
                }
                .into())
            }
        };
        let b = self.backend(&r.backend)?.clone();
        let restored = b.restore(id, std::path::Path::new(&snap.path)).await;
        let out = if was_running {
            self.start_locked(id).await?
        } else {
            self.store.get_runner(id).await?
        };
        restored?;
        let payload = Map::from_iter([("snapshot_id".to_string(), json!(snapshot_id))]);
        if let Ok(c) = self
            .store
            .append_runner_event(id, "runner.restored", payload)
            .await
        {
            self.published(&c);
        }
        Ok(out)
    }

    /// A new runner whose workspace starts as the snapshot (same profile and environment).
    pub async fn branch(
        &self,
        snapshot_id: &str,
        mut req: crate::manager::CreateRunner,
    ) -> ApiResult<Runner> {
        let snap = self.store.get_snapshot(snapshot_id).await?;
        let origin = self.store.get_runner(&snap.runner_id).await?;
        req.execution_profile = req.execution_profile.or(origin.execution_profile.clone());
        req.environment_id = req.environment_id.or(origin.environment_id.clone());
        self.create_seeded(req, Some(std::path::PathBuf::from(&snap.path)))
            .await
    }

    // ------------------------------------------------------------ fleet

    pub async fn fleet(&self) -> ApiResult<Value> {
        let runners = self.all_runners().await?;
        let mut by_state: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_backend: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        let mut by_profile: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        let mut errored = vec![];
        let mut hot = vec![];
        let mut sessions = HashSet::new();
        let mut active = 0u64;
        for r in &runners {
            if r.state == RunnerState::Destroyed {
                continue;
            }
            *by_state.entry(r.state.to_string()).or_default() += 1;
            *by_backend
                .entry(r.backend.clone())
                .or_default()
                .entry(r.state.to_string())
                .or_default() += 1;
            let p = r.execution_profile.clone().unwrap_or_default();
            *by_profile
                .entry(p)
                .or_default()
                .entry(r.state.to_string())
                .or_default() += 1;
            if r.state.is_active() {
                active += 1;
            }
            if r.state == RunnerState::Errored {
                errored.push(json!({"id": r.id, "error": r.error}));
            }
            if let Some(s) = self.monitor.latest(&r.id) {
                if let (Some(m), Some(l)) = (s.memory_bytes, s.memory_limit_bytes) {
                    if l > 0 && m as f64 >= self.settings.memory_alert_ratio * l as f64 {
                        hot.push(json!({"id": r.id, "memory_bytes": m, "memory_limit_bytes": l}));
                    }
                }
            }
            if let Some(sid) = &r.session_id {
                sessions.insert(sid.clone());
            }
        }
        let mut cost = 0.0;
        for sid in sessions {
            if let Ok(s) = self.store.get_session(&sid).await {
                cost += cost_cents(&s.usage.list_cost);
            }
        }
        let profiles: BTreeMap<String, Value> = self
            .profiles
            .profiles
            .iter()
            .map(|(name, p)| {
                let states = by_profile.get(name).cloned().unwrap_or_default();
                let active: u64 = states
                    .iter()
                    .filter(|(s, _)| RunnerState::parse(s).is_some_and(RunnerState::is_active))
                    .map(|(_, n)| n)
                    .sum();
                (
                    name.clone(),
                    json!({"backend": p.backend, "by_state": states, "active": active,
                           "max_runners": p.max_runners,
                           "capacity_left": p.max_runners.map(|m| u64::from(m).saturating_sub(active))}),
                )
            })
            .collect();
        Ok(json!({
            "type": "fleet",
            "total": runners.iter().filter(|r| r.state != RunnerState::Destroyed).count(),
            "active": active,
            "by_state": by_state,
            "by_backend": by_backend,
            "by_profile": profiles,
            "capacity": {
                "max_active": self.settings.max_active,
                "capacity_left": self.settings.max_active.map(|m| u64::from(m).saturating_sub(active)),
            },
            "cost": {"list_cost": {"amount": format!("{cost}"), "currency": "USD"}},
            "health": {"errored": errored, "above_memory_threshold": hot,
                       "memory_alert_ratio": self.settings.memory_alert_ratio},
            "generated_at": ts::format(ts::now()),
        }))
    }

    /// The runner with live figures: uptime, the latest sample, cost against budget.
    pub async fn detail(&self, id: &str) -> ApiResult<Value> {
        let r = self.store.get_runner(id).await?;
        let mut v = serde_json::to_value(&r).unwrap_or(Value::Null);
        let now = ts::now();
        v["uptime_seconds"] = match (r.state, r.started_at) {
            (RunnerState::Running, Some(t)) => {
                json!(((now - t).as_seconds_f64() * 10.0).round() / 10.0)
            }
            _ => Value::Null,
        };
        v["idle_timeout_effective_secs"] = json!(self.idle_timeout(&r));
        v["latest_sample"] = json!(self.monitor.latest(id));
        if let Some(sid) = &r.session_id {
            if let Ok(s) = self.store.get_session(sid).await {
                v["cost"] =
                    json!({"list_cost": s.usage.list_cost, "budget": self.budget_of(&r, &s)});
            }
        }
        Ok(v)
    }

    fn idle_timeout(&self, r: &Runner) -> u64 {
        r.idle_timeout_secs
            .unwrap_or(self.settings.idle_timeout_secs)
    }

    fn budget_of(&self, r: &Runner, s: &paddock_core::session::Session) -> Option<Money> {
        r.budget.clone().or_else(|| {
            s.budget
                .as_ref()
                .map(|paddock_core::session::Budget::Limit { max_list_cost }| max_list_cost.clone())
        })
    }

    // ------------------------------------------------------------ loops

    /// Starts the sampler and the sweeper; both end when `shutdown` turns true.
    pub fn spawn_supervisor(self: &Arc<Self>, shutdown: watch::Receiver<bool>) {
        let m = self.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let mut tick =
                tokio::time::interval(Duration::from_millis(m.settings.sweep_interval_ms));
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if let Err(e) = m.sweep().await {
                            tracing::warn!(error = %e, "runner sweep failed");
                        }
                    }
                    _ = stop.changed() => return,
                }
            }
        });
        let m = self.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let mut tick =
                tokio::time::interval(Duration::from_millis(m.settings.sweep_interval_ms));
            loop {
                tokio::select! {
                    _ = tick.tick() => m.refill_pools().await,
                    _ = stop.changed() => return,
                }
            }
        });
        let m = self.clone();
        let mut stop = shutdown;
        tokio::spawn(async move {
            let mut tick =
                tokio::time::interval(Duration::from_millis(m.settings.sample_interval_ms));
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if let Err(e) = m.sample_all().await {
                            tracing::warn!(error = %e, "runner sampling failed");
                        }
                    }
                    _ = stop.changed() => return,
                }
            }
        });
    }

    /// Automatic stops and pruning, each with its reason.
    pub async fn sweep(&self) -> ApiResult<()> {
        let now = ts::now();
        for r in self.all_runners().await? {
            match r.state {
                RunnerState::Running => {
                    if self.stop_reason(&r, now).await.is_none() {
                        continue;
                    }
                    // Judge again under the lock, on fresh state: the user may just
                    // have used the runner.
                    let _op = self.lock_runner(&r.id).await;
                    let Ok(fresh) = self.store.get_runner(&r.id).await else {
                        continue;
                    };
                    if fresh.state != RunnerState::Running {
                        continue;
                    }
                    let Some(reason) = self.stop_reason(&fresh, ts::now()).await else {
                        continue;
                    };
                    tracing::info!(runner_id = %r.id, %reason, "stopping runner automatically");
                    let result = self.stop_running(fresh, None, Some(reason.clone())).await;
                    crate::security::audit_system(
                        self.store.as_ref(),
                        "runners.auto_stop",
                        &r.id,
                        result.is_ok(),
                        json!({"reason": reason}),
                    )
                    .await;
                    if let Err(e) = result {
                        tracing::warn!(runner_id = %r.id, error = %e, "automatic stop failed");
                    }
                }
                RunnerState::Stopped | RunnerState::Errored => {
                    let stopped_for = (now - r.updated_at).as_seconds_f64();
                    let age = (now - r.created_at).as_seconds_f64();
                    let reason = match (
                        self.settings.prune_stopped_after_secs,
                        self.settings.prune_max_age_secs,
                    ) {
                        (Some(s), _)
                            if r.state == RunnerState::Stopped && stopped_for >= s as f64 =>
                        {
                            Some(format!("pruned: stopped for more than {s} s"))
                        }
                        (_, Some(a)) if age >= a as f64 => {
                            Some(format!("pruned: older than {a} s"))
                        }
                        _ => None,
                    };
                    if let Some(reason) = reason {
                        // Only if it is still in the state it was judged in (never a
                        // runner someone just started).
                        let _op = self.lock_runner(&r.id).await;
                        let Ok(fresh) = self.store.get_runner(&r.id).await else {
                            continue;
                        };
                        if fresh.state != r.state || fresh.updated_at != r.updated_at {
                            continue;
                        }
                        tracing::info!(runner_id = %r.id, %reason, "pruning runner");
                        let result = self.destroy_locked(&r.id, Some(reason.clone())).await;
                        crate::security::audit_system(
                            self.store.as_ref(),
                            "runners.auto_destroy",
                            &r.id,
                            result.is_ok(),
                            json!({"reason": reason}),
                        )
                        .await;
                        if let Err(e) = result {
                            tracing::warn!(runner_id = %r.id, error = %e, "pruning failed");
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Whether the runner's worker reports a command still running.
    async fn has_running_commands(&self, r: &Runner) -> bool {
        let Ok(b) = self.backend(&r.backend) else {
            return false;
        };
        let client = WorkerClient::new(b.connector(&r.id));
        match tokio::time::timeout(
            Duration::from_secs(3),
            client.json(axum::http::Method::GET, "/status", None),
        )
        .await
        {
            Ok(Ok(s)) => {
                s["execs"]["running"]
                    .as_array()
                    .is_some_and(|r| !r.is_empty())
                    || s["running"].as_array().is_some_and(|r| !r.is_empty())
            }
            _ => false,
        }
    }

    async fn stop_reason(&self, r: &Runner, now: Timestamp) -> Option<String> {
        if r.warm {
            // Waiting in the pool is its purpose.
            return None;
        }
        if let Some(ttl) = self
            .profiles
            .profiles
            .get(r.execution_profile.as_deref().unwrap_or(""))
            .and_then(|p| p.ttl_secs)
            .filter(|t| *t > 0)
        {
            if r.started_at
                .is_some_and(|t| (now - t).as_seconds_f64() >= ttl as f64)
            {
                return Some(format!(
                    "max wall duration reached: running for more than {ttl} s"
                ));
            }
        }
        let idle = self.idle_timeout(r);
        if idle > 0 {
            if let Some(last) = self.last_activity(r).or(r.started_at) {
                if (now - last).as_seconds_f64() >= idle as f64 {
                    if self.has_running_commands(r).await {
                        // A long command is activity too.
                        self.touch(&r.id);
                    } else {
                        return Some(format!("idle timeout: no activity for {idle} s"));
                    }
                }
            }
        }
        if let Some(sid) = &r.session_id {
            if let Ok(s) = self.store.get_session(sid).await {
                if let Some(b) = self.budget_of(r, &s) {
                    if cost_cents(&s.usage.list_cost) >= cost_cents(&b) {
                        return Some(format!(
                            "budget reached: the session cost {} of {} {}",
                            s.usage.list_cost.amount, b.amount, b.currency
                        ));
                    }
                }
            }
        }
        None
    }

    async fn sample_all(&self) -> ApiResult<()> {
        let runners = self.all_runners().await?;
        let running: HashSet<String> = runners
            .iter()
            .filter(|r| r.state == RunnerState::Running)
            .map(|r| r.id.clone())
            .collect();
        self.monitor.forget(&running);
        for r in runners.iter().filter(|r| r.state == RunnerState::Running) {
            let Ok(b) = self.backend(&r.backend) else {
                continue;
            };
            let client = WorkerClient::new(b.connector(&r.id));
            let status = match tokio::time::timeout(
                Duration::from_secs(5),
                client.json(axum::http::Method::GET, "/status", None),
            )
            .await
            {
                Ok(Ok(v)) => v,
                _ => continue,
            };
            let outside = b.stats(&r.id);
            let sample = Sample {
                at: ts::now(),
                cpu_seconds: f64_at(&status, "/cpu/cgroup_seconds")
                    .or_else(|| f64_at(&status, "/cpu/tree_seconds")),
                cpu_percent: None,
                memory_bytes: outside
                    .memory_bytes
                    .or_else(|| u64_at(&status, "/memory/cgroup_current_bytes"))
                    .or_else(|| u64_at(&status, "/memory/tree_rss_bytes")),
                memory_limit_bytes: outside
                    .memory_limit_bytes
                    .or_else(|| u64_at(&status, "/memory/cgroup_max_bytes")),
                disk_bytes: u64_at(&status, "/disk/workspace_bytes"),
                fs_available_bytes: u64_at(&status, "/disk/fs_available_bytes"),
                processes: outside
                    .pids
                    .or_else(|| u64_at(&status, "/processes/cgroup"))
                    .or_else(|| u64_at(&status, "/processes/tree")),
                network_rx_bytes: outside.network_rx_bytes,
                network_tx_bytes: outside.network_tx_bytes,
            };
            let full = sample.fs_available_bytes == Some(0)
                || r.limits
                    .disk_mb
                    .zip(sample.disk_bytes)
                    .is_some_and(|(mb, used)| used >= mb * 1024 * 1024);
            self.monitor.push(&r.id, sample.clone());
            if let Some(kills) = b.oom_kills(&r.id) {
                let before = {
                    let mut seen = self
                        .monitor
                        .oom_seen
                        .lock()
                        .unwrap_or_else(|p| p.into_inner());
                    seen.insert(r.id.clone(), kills).unwrap_or(0)
                };
                if kills > before {
                    let payload = Map::from_iter([
                        ("oom_kills".to_string(), json!(kills)),
                        ("new".to_string(), json!(kills - before)),
                        ("memory_limit_bytes".to_string(), json!(sample.memory_limit_bytes)),
                        ("reason".to_string(), json!("the kernel killed a process that exceeded the runner's memory limit")),
                    ]);
                    if let Ok(c) = self
                        .store
                        .append_runner_event(&r.id, "runner.oom_killed", payload)
                        .await
                    {
                        self.published(&c);
                    }
                }
            }
            let newly_full = {
                let mut set = self
                    .monitor
                    .disk_full
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if full {
                    set.insert(r.id.clone())
                } else {
                    set.remove(&r.id);
                    false
                }
            };
            if newly_full {
                let payload = Map::from_iter([
                    ("disk_bytes".to_string(), json!(sample.disk_bytes)),
                    (
                        "fs_available_bytes".to_string(),
                        json!(sample.fs_available_bytes),
                    ),
                    (
                        "disk_limit_bytes".to_string(),
                        json!(r.limits.disk_mb.map(|m| m * 1024 * 1024)),
                    ),
                ]);
                if let Ok(c) = self
                    .store
                    .append_runner_event(&r.id, "runner.disk_full", payload)
                    .await
                {
                    self.published(&c);
                }
            }
        }
        Ok(())
    }
}
