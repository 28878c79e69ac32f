//! The built-in agent loop: the brain. It runs here, in the orchestrator; the session's
//! runner only executes tools (the hands), and provider keys never leave this process.
//!
//! One driver task per session at most. The driver takes one *step* at a time: it
//! rebuilds the session's [`view::View`] from the event log, does the one thing that
//! comes next (open a turn, ask for confirmations, run a tool, call the model, end the
//! turn) and writes its outcome as events before looking again. Because the log is the
//! only state, a restarted orchestrator resumes every open turn from it
//! ([`AgentRuntime::resume_all`]).
//!
//! Budgets and quotas are checked before **every** model call. A `user.interrupt`
//! cancels the step in flight: dropping a model stream closes its connection, dropping
//! an exec stream makes the worker kill the command's process group.

pub mod view;

use paddock_agent::permission::{self, Permission};
use paddock_agent::pricing::{PriceTable, Usd};
use paddock_agent::provider::{
    ModelRequest, Provider, StopReason, StreamEvent, Usage as ModelUsage,
};
use paddock_agent::tools::{self, AvailableTool, ToolKind, ToolLimits};
use paddock_agent::ProviderError;
use paddock_backend::WorkerClient;
use paddock_core::agent::BuiltinTool;
use paddock_core::event::{Event, NewEvent};
use paddock_core::lifecycle::RunnerState;
use paddock_core::runner::NetworkPolicy;
use paddock_core::session::{Budget, Session, SessionStatus, Usage};
use paddock_core::{id, ts};
use paddock_store::{Append, Store};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

use crate::config::AgentSettings;
use crate::error::{ApiResult, ServerError};
use crate::hub::Hub;
use crate::manager::{CreateRunner, Manager};
use view::{Pending, View};

/// Wakes a session's driver: new input, or an interrupt.
#[derive(Default)]
struct Control {
    dirty: AtomicBool,
    wake: Notify,
    interrupts: watch::Sender<u64>,
    /// The view so far and the last event it has seen: each step reads only what
    /// was appended since.
    view: Mutex<(i64, View)>,
}

pub struct AgentRuntime {
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    manager: Arc<Manager>,
    providers: std::sync::RwLock<paddock_agent::provider::Providers>,
    default_provider: Option<String>,
    prices: PriceTable,
    settings: AgentSettings,
    limits: ToolLimits,
    metrics: Arc<paddock_metrics::PaddockMetrics>,
    drivers: Mutex<HashMap<String, Arc<Control>>>,
    /// When this process started: work in flight before it was cut short by a restart.
    started_at: paddock_core::ts::Timestamp,
    shutdown: watch::Receiver<bool>,
}

/// Why a model call may not be made.
enum Spent {
    Budget(String),
    Quota(&'static str, String),
}

/// How a step in flight ended when it was raced against an interrupt.
enum Raced<T> {
    Done(T),
    Interrupted,
}

pub struct RuntimeDeps {
    pub store: Arc<dyn Store>,
    pub hub: Arc<Hub>,
    pub manager: Arc<Manager>,
    pub providers: paddock_agent::provider::Providers,
    pub settings: AgentSettings,
    pub metrics: Arc<paddock_metrics::PaddockMetrics>,
    pub shutdown: watch::Receiver<bool>,
}

fn text_content(text: &str) -> Value {
    json!([{"type": "text", "text": text}])
}

/// An `agent.tool_result` answering the tool use `id`.
fn tool_result(id: &str, text: &str, is_error: bool) -> NewEvent {
    NewEvent::new(
        "agent.tool_result",
        json!({"tool_use_id": id, "content": text_content(text), "is_error": is_error}),
    )
}

fn cents(m: &paddock_core::common::Money) -> Usd {
    Usd::parse_cents(&m.amount).unwrap_or(Usd::ZERO)
}

/// The tightest cost limit on a session: its `budget` and its agent's quota.
fn cost_limit(s: &Session) -> Option<paddock_core::common::Money> {
    let budget = s
        .budget
        .as_ref()
        .map(|Budget::Limit { max_list_cost }| max_list_cost.clone());
    match (budget, s.agent.quotas.max_list_cost.clone()) {
        (Some(a), Some(b)) => Some(if cents(&a) <= cents(&b) { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// Whether the session may make another model call (`turn_secs`: the open turn so far).
fn spent(s: &Session, turn_secs: f64) -> Option<Spent> {
    if let Some(limit) = cost_limit(s) {
        if cents(&s.usage.list_cost) >= cents(&limit) {
            return Some(Spent::Budget(format!(
                "the session's cost of {} cents reached its budget of {} cents",
                s.usage.list_cost.amount, limit.amount
            )));
        }
    }
    let q = &s.agent.quotas;
    let u = &s.usage;
    let tokens = u.input_tokens
        + u.output_tokens
        + u.cache_read_input_tokens
        + u.cache_creation.ephemeral_5m_input_tokens
        + u.cache_creation.ephemeral_1h_input_tokens;
    if let Some(max) = q.max_tokens {
        if tokens >= max {
            return Some(Spent::Quota(
                "max_tokens",
                format!("quota max_tokens reached: {tokens} tokens used of {max}"),
            ));
        }
    }
    if let Some(max) = q.max_turns {
        if s.stats.turns > max {
            return Some(Spent::Quota(
                "max_turns",
                format!("quota max_turns reached: {max} turns"),
            ));
        }
    }
    if let Some(max) = q.max_wall_seconds {
        let used = u.active_seconds + turn_secs;
        if used >= max as f64 {
            return Some(Spent::Quota(
                "max_wall_seconds",
                format!("quota max_wall_seconds reached: {used:.1} s of {max} s"),
            ));
        }
    }
    None
}

/// Refuses a new turn of a session whose budget or quotas are spent (a 429).
pub fn check_new_turn(s: &Session) -> ApiResult<()> {
    // A new turn counts as one more.
    let mut next = s.clone();
    next.stats.turns += 1;
    match spent(&next, 0.0) {
        None => Ok(()),
        Some(Spent::Budget(m)) => Err(ServerError::QuotaExceeded {
            message: format!("session {}: {m}; raise the budget to go on", s.id),
            code: "budget_reached",
        }),
        Some(Spent::Quota(_, m)) => Err(ServerError::QuotaExceeded {
            message: format!("session {}: {m}", s.id),
            code: "quota_exceeded",
        }),
    }
}

impl AgentRuntime {
    pub fn new(d: RuntimeDeps) -> Result<Self, ServerError> {
        let prices = PriceTable::builtin()
            .with_overrides(&d.settings.prices)
            .map_err(|e| ServerError::Config(format!("agent.prices: {e}")))?;
        let default_provider = d.settings.default_provider.clone().or_else(|| {
            let names = d.providers.names();
            (names.len() == 1).then(|| names[0].to_string())
        });
        let limits = ToolLimits {
            max_output_bytes: d.settings.max_tool_output_bytes,
            ..ToolLimits::default()
        };
        Ok(AgentRuntime {
            store: d.store,
            hub: d.hub,
            manager: d.manager,
            providers: std::sync::RwLock::new(d.providers),
            default_provider,
            prices,
            settings: d.settings,
            limits,
            metrics: d.metrics,
            drivers: Mutex::new(HashMap::new()),
            started_at: ts::now(),
            shutdown: d.shutdown,
        })
    }

    /// Makes sure the session's driver looks at its log again.
    pub fn kick(self: &Arc<Self>, sid: &str) {
        if !self.settings.enabled {
            return;
        }
        let mut map = self.drivers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(sid) {
            c.dirty.store(true, Ordering::SeqCst);
            c.wake.notify_one();
            return;
        }
        let c = Arc::new(Control::default());
        map.insert(sid.to_string(), c.clone());
        let me = self.clone();
        let sid = sid.to_string();
        tokio::spawn(async move { me.drive(sid, c).await });
    }

    /// Cancels what the session's driver is doing (the interrupt is already in the log).
    pub fn interrupt(self: &Arc<Self>, sid: &str) {
        {
            let map = self.drivers.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(c) = map.get(sid) {
                c.interrupts.send_modify(|g| *g += 1);
            }
        }
        self.kick(sid);
    }

    /// After a start: drive every session whose log has something left to do.
    pub async fn resume_all(self: &Arc<Self>) -> ApiResult<()> {
        let mut page = paddock_store::PageReq {
            limit: 500,
            ..paddock_store::PageReq::default()
        };
        loop {
            let p = self
                .store
                .list_sessions(paddock_store::SessionFilter::default(), page.clone())
                .await?;
            for s in &p.data {
                if s.status == SessionStatus::Terminated {
                    continue;
                }
                let last = self.store.last_seq(&s.id).await?;
                let tail = self.store.events_after(&s.id, last - 1, 1).await?;
                let pending_input = tail.first().is_some_and(|e| e.kind.starts_with("user."));
                if s.status == SessionStatus::Running || pending_input {
                    tracing::info!(session_id = %s.id, "resuming the session's turn");
                    self.kick(&s.id);
                }
            }
            match p.next {
                Some(c) => page.cursor = Some(c),
                None => return Ok(()),
            }
        }
    }

    async fn drive(self: Arc<Self>, sid: String, c: Arc<Control>) {
        let mut shutdown = self.shutdown.clone();
        loop {
            c.dirty.store(false, Ordering::SeqCst);
            let progressed = tokio::select! {
                r = self.step(&sid, &c) => r,
                _ = shutdown.changed() => return,
            };
            match progressed {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(session_id = %sid, error = %e, "the agent loop stopped on an error");
                }
            }
            let mut map = self.drivers.lock().unwrap_or_else(|p| p.into_inner());
            if c.dirty.load(Ordering::SeqCst) {
                continue;
            }
            map.remove(&sid);
            return;
        }
    }

    /// The session's view, brought up to date with the events appended since the
    /// driver last looked.
    async fn view(&self, sid: &str, c: &Control) -> ApiResult<View> {
        let (mut seen, mut view) = c.view.lock().unwrap_or_else(|p| p.into_inner()).clone();
        loop {
            let batch = self.store.events_after(sid, seen, 1000).await?;
            let Some(last) = batch.last() else { break };
            seen = last.seq;
            for e in &batch {
                view.apply(e);
            }
        }
        *c.view.lock().unwrap_or_else(|p| p.into_inner()) = (seen, view.clone());
        Ok(view)
    }

    /// Appends events (and a status / usage / turn count in the same transaction).
    async fn emit(&self, sid: &str, append: Append) -> ApiResult<Vec<Event>> {
        let out = self.store.append_events(sid, append).await?;
        if let Some(last) = out.events.last() {
            self.hub.published(sid, last.seq);
        }
        Ok(out.events)
    }

    /// Appends events alone.
    async fn emit_events(&self, sid: &str, events: Vec<NewEvent>) -> ApiResult<Vec<Event>> {
        self.emit(
            sid,
            Append {
                events,
                ..Append::default()
            },
        )
        .await
    }

    async fn emit_one(&self, sid: &str, kind: &str, payload: Value) -> ApiResult<Event> {
        let mut evs = self
            .emit_events(sid, vec![NewEvent::new(kind, payload)])
            .await?;
        evs.pop()
            .ok_or_else(|| ServerError::Config("an append wrote no event".into()))
    }

    /// One step; `Ok(false)` when there is nothing to do until new input.
    async fn step(&self, sid: &str, c: &Control) -> ApiResult<bool> {
        // Interrupts from here on cancel what this step starts.
        let mut irx = c.interrupts.subscribe();
        irx.borrow_and_update();
        let session = match self.store.get_session(sid).await {
            Ok(s) => s,
            Err(paddock_store::StoreError::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        if session.archived_at.is_some() || session.status == SessionStatus::Terminated {
            return Ok(false);
        }
        let view = self.view(sid, c).await?;
        let Some(turn) = &view.turn else {
            if view.queued.is_empty() {
                return Ok(false);
            }
            if session.agent.harness != paddock_core::agent::Harness::Builtin {
                // Only the built-in agent runs here so far: say so rather than hang.
                let error = json!({
                    "type": "unknown_error",
                    "message": format!("the {:?} harness is not available in this Paddock; use harness \"builtin\"", session.agent.harness),
                    "retry_status": {"type": "terminal"},
                });
                self.emit(
                    sid,
                    Append {
                        events: vec![
                            NewEvent::new("session.status_running", json!({})),
                            NewEvent::new("session.error", json!({ "error": error })),
                            NewEvent::new(
                                "session.status_idle",
                                json!({"stop_reason": {"type": "end_turn"}}),
                            ),
                        ],
                        status: Some(SessionStatus::Idle),
                        turns: Some(view.turns + 1),
                        ..Append::default()
                    },
                )
                .await?;
                return Ok(true);
            }
            self.emit(
                sid,
                Append {
                    events: vec![NewEvent::new("session.status_running", json!({}))],
                    status: Some(SessionStatus::Running),
                    turns: Some(view.turns + 1),
                    ..Append::default()
                },
            )
            .await?;
            return Ok(true);
        };
        if turn.interrupted {
            self.end_turn(
                sid,
                &view,
                json!({"type": "end_turn"}),
                "interrupted by the user",
                vec![],
            )
            .await?;
            return Ok(true);
        }
        let before_restart =
            |t: Option<paddock_core::ts::Timestamp>| t.is_some_and(|t| t < self.started_at);
        if turn.open_call.is_some() && before_restart(turn.open_call_at) {
            // The orchestrator stopped during a model call: its answer is lost.
            let error = json!({
                "type": "model_request_failed_error",
                "message": "Paddock restarted during a model request; the turn was ended. Send a message to go on.",
                "retry_status": {"type": "exhausted"},
            });
            self.end_turn(
                sid,
                &view,
                json!({"type": "retries_exhausted"}),
                "Paddock restarted before this tool ran",
                vec![NewEvent::new("session.error", json!({ "error": error }))],
            )
            .await?;
            return Ok(true);
        }
        {
            // Cleared to run before a restart, and still without a result.
            let lost: Vec<&Pending> = turn
                .pending
                .iter()
                .filter(|p| p.may_run() && before_restart(p.cleared_at))
                .collect();
            if !lost.is_empty() {
                // Whether these ran is unknown: say so, and let the model decide.
                let events = lost
                    .iter()
                    .map(|p| {
                        tool_result(
                            &p.id,
                            "Paddock restarted while this tool call was pending or running; it may not have completed. Check the workspace before retrying.",
                            true,
                        )
                    })
                    .collect();
                self.emit_events(sid, events).await?;
                return Ok(true);
            }
        }
        if !turn.pending.is_empty() {
            let awaiting: Vec<String> = turn
                .pending
                .iter()
                .filter(|p| p.awaits_client())
                .map(|p| p.id.clone())
                .collect();
            if !awaiting.is_empty() {
                if turn.waiting_on.as_ref() == Some(&awaiting) {
                    return Ok(false);
                }
                self.emit(
                    sid,
                    Append {
                        events: vec![NewEvent::new(
                            "session.status_idle",
                            json!({"stop_reason": {"type": "requires_action", "event_ids": awaiting}}),
                        )],
                        status: Some(SessionStatus::Idle),
                        ..Append::default()
                    },
                )
                .await?;
                return Ok(true);
            }
            if turn.waiting_on.is_some() {
                self.emit(
                    sid,
                    Append {
                        events: vec![NewEvent::new("session.status_running", json!({}))],
                        status: Some(SessionStatus::Running),
                        ..Append::default()
                    },
                )
                .await?;
                return Ok(true);
            }
            let p = &turn.pending[0];
            if !p.may_run() {
                let why = match &p.answer {
                    Some((false, Some(m))) => format!("The user denied this tool call: {m}"),
                    Some((false, None)) => "The user denied this tool call.".to_string(),
                    _ => "This tool call was not allowed.".to_string(),
                };
                self.emit_events(sid, vec![tool_result(&p.id, &why, true)])
                    .await?;
                return Ok(true);
            }
            let output = match self.run_tool(&session, p, &mut irx).await? {
                Raced::Done(o) => o,
                Raced::Interrupted => return Ok(true),
            };
            self.emit_events(
                sid,
                vec![tool_result(&p.id, &output.content, output.is_error)],
            )
            .await?;
            return Ok(true);
        }
        if turn.model_calls == 0 || turn.last_call_used_tools {
            let turn_secs = turn
                .started_at
                .map(|t| (ts::now() - t).as_seconds_f64().max(0.0))
                .unwrap_or(0.0);
            if let Some(s) = spent(&session, turn_secs) {
                self.out_of_budget(&session, &view, s).await?;
                return Ok(true);
            }
            if turn.model_calls >= self.settings.max_model_calls_per_turn {
                let error = json!({
                    "type": "tool_use_limit_reached_error",
                    "message": format!("the turn made {} model calls, the most one turn may make (agent.max_model_calls_per_turn)", turn.model_calls),
                    "retry_status": {"type": "exhausted"},
                });
                self.end_turn(
                    sid,
                    &view,
                    json!({"type": "end_turn"}),
                    "the turn was ended",
                    vec![NewEvent::new("session.error", json!({ "error": error }))],
                )
                .await?;
                return Ok(true);
            }
            return self.model_call(&session, &view, c, &mut irx).await;
        }
        self.end_turn(sid, &view, json!({"type": "end_turn"}), "", vec![])
            .await?;
        Ok(true)
    }

    /// Ends the open turn: closes an open model span, gives every pending tool use an
    /// error result (`why`), adds `extra` events, then `session.status_idle`.
    async fn end_turn(
        &self,
        sid: &str,
        view: &View,
        stop_reason: Value,
        why: &str,
        extra: Vec<NewEvent>,
    ) -> ApiResult<()> {
        let mut events = Vec::new();
        if let Some(t) = &view.turn {
            if let Some(start) = &t.open_call {
                events.push(NewEvent::new(
                    "span.model_request_end",
                    json!({
                        "model_request_start_id": start,
                        "model_usage": {"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0},
                        "is_error": true,
                    }),
                ));
            }
            for p in &t.pending {
                events.push(tool_result(&p.id, &format!("Not run: {why}."), true));
            }
        }
        events.extend(extra);
        events.push(NewEvent::new(
            "session.status_idle",
            json!({ "stop_reason": stop_reason }),
        ));
        let session = self.store.get_session(sid).await?;
        let mut usage = session.usage.clone();
        if let Some(started) = view.turn.as_ref().and_then(|t| t.started_at) {
            let secs = (ts::now() - started).as_seconds_f64().max(0.0);
            usage.active_seconds = ((usage.active_seconds + secs) * 1000.0).round() / 1000.0;
            self.metrics
                .record_agent_turn(Duration::from_secs_f64(secs));
        }
        self.emit(
            sid,
            Append {
                events,
                status: Some(SessionStatus::Idle),
                usage: Some(usage),
                ..Append::default()
            },
        )
        .await?;
        Ok(())
    }

    async fn out_of_budget(&self, session: &Session, view: &View, s: Spent) -> ApiResult<()> {
        let (quota, message, extra) = match s {
            Spent::Budget(m) => ("max_list_cost", m, vec![]),
            Spent::Quota(q, m) => {
                let error = json!({
                    "type": "unknown_error",
                    "message": m,
                    "retry_status": {"type": "exhausted"},
                    "quota": q,
                });
                (
                    q,
                    m,
                    vec![NewEvent::new("session.error", json!({ "error": error }))],
                )
            }
        };
        tracing::info!(session_id = %session.id, quota, %message, "session out of budget");
        self.metrics.quota_rejected(quota);
        self.end_turn(
            &session.id,
            view,
            json!({"type": "budget_reached"}),
            "the session's budget is spent",
            extra,
        )
        .await?;
        if let Some(rid) = &session.runner_id {
            let _op = self.manager.lock_runner(rid).await;
            if let Ok(r) = self.store.get_runner(rid).await {
                if r.state == RunnerState::Running {
                    if let Err(e) = self
                        .manager
                        .stop_running(r, None, Some(format!("budget reached: {message}")))
                        .await
                    {
                        tracing::warn!(runner_id = %rid, error = %e, "cannot stop the runner of a spent session");
                    }
                }
            }
        }
        Ok(())
    }

    /// Replaces the providers (keys from a vault are resolved once the store is open).
    pub fn set_providers(&self, p: paddock_agent::provider::Providers) {
        *self.providers.write().unwrap_or_else(|e| e.into_inner()) = p;
    }

    fn provider_for(
        &self,
        model: &str,
    ) -> Result<(Arc<dyn Provider>, String, String), ProviderError> {
        let providers = self.providers.read().unwrap_or_else(|e| e.into_inner());
        if let Some((p, m)) = model.split_once('/') {
            if let Some(provider) = providers.get(p) {
                return Ok((provider.clone(), m.to_string(), p.to_string()));
            }
        }
        // A model id without a known provider prefix goes to the default provider.
        if let Some(p) = self
            .default_provider
            .as_deref()
            .and_then(|d| providers.get(d))
        {
            return Ok((p.clone(), model.to_string(), p.name().to_string()));
        }
        providers.resolve(model).map(|(p, m)| {
            let n = p.name().to_string();
            (p, m, n)
        })
    }

    /// The network a runner of this session has (or would have).
    async fn network(&self, s: &Session) -> NetworkPolicy {
        if let Some(rid) = &s.runner_id {
            if let Ok(r) = self.store.get_runner(rid).await {
                if r.state.is_active() || r.state == RunnerState::Stopped {
                    return r.network;
                }
            }
        }
        let env = self.store.get_environment(&s.environment_id).await.ok();
        let requested = s
            .execution_profile
            .clone()
            .or_else(|| env.as_ref().and_then(|e| e.execution_profile.clone()));
        let Ok((_, profile)) = self
            .manager
            .profiles
            .resolve("execution_profile", requested.as_deref())
        else {
            return NetworkPolicy::None;
        };
        crate::manager::runner_network(profile, env.as_ref())
    }

    async fn available(&self, s: &Session) -> Vec<AvailableTool> {
        let network = self.network(s).await;
        tools::available_tools(&s.agent.tools, network != NetworkPolicy::None)
    }

    async fn model_call(
        &self,
        session: &Session,
        view: &View,
        c: &Control,
        irx: &mut watch::Receiver<u64>,
    ) -> ApiResult<bool> {
        let sid = session.id.as_str();
        let available = self.available(session).await;
        let start = self
            .emit_one(sid, "span.model_request_start", json!({}))
            .await?;
        let (provider, model, provider_name) = match self.provider_for(&session.agent.model.id) {
            Ok(x) => x,
            Err(e) => {
                self.model_failed(session, c, &e).await?;
                return Ok(true);
            }
        };
        let mut req = ModelRequest::new(
            model.clone(),
            view.messages.clone(),
            self.settings.max_output_tokens,
        );
        req.system = session.agent.system.clone();
        req.tools = available.iter().map(|t| t.spec.clone()).collect();
        let started = Instant::now();
        let stream = tokio::select! {
            s = provider.stream(&req) => s,
            _ = irx.changed() => return Ok(true),
        };
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => {
                self.model_failed(session, c, &e).await?;
                return Ok(true);
            }
        };
        let mut text = String::new();
        let mut text_id: Option<String> = None;
        let mut usage = ModelUsage::default();
        let mut stop: Option<StopReason> = None;
        let mut used_tools = false;
        let mut first_token = true;
        loop {
            let next = tokio::select! {
                n = futures::StreamExt::next(&mut stream) => n,
                _ = irx.changed() => {
                    // Keep what was said; the next step ends the turn.
                    self.flush_text(sid, &mut text, &mut text_id).await?;
                    return Ok(true);
                }
            };
            let Some(item) = next else { break };
            match item {
                Ok(StreamEvent::TextDelta(t)) => {
                    if first_token {
                        first_token = false;
                        tracing::debug!(session_id = %sid, ttft_ms = started.elapsed().as_millis() as u64, "first token");
                    }
                    if text_id.is_none() {
                        let eid = id::new(id::EVENT);
                        self.hub.preview(
                            sid,
                            json!({"type": "event_start", "event": {"id": eid, "type": "agent.message"}}),
                        );
                        text_id = Some(eid);
                    }
                    if let Some(eid) = &text_id {
                        self.hub.preview(
                            sid,
                            json!({"type": "event_delta", "event_id": eid, "delta": {"type": "content_delta", "index": 0, "content": {"type": "text", "text": t}}}),
                        );
                    }
                    text.push_str(&t);
                }
                Ok(StreamEvent::ToolUse { name, input, .. }) => {
                    self.flush_text(sid, &mut text, &mut text_id).await?;
                    used_tools = true;
                    self.tool_use(sid, &available, &name, input).await?;
                }
                Ok(StreamEvent::Usage(u)) => usage = u,
                Ok(StreamEvent::Stop(s)) => stop = Some(s),
                Err(e) => {
                    self.flush_text(sid, &mut text, &mut text_id).await?;
                    self.model_failed(session, c, &e).await?;
                    return Ok(true);
                }
            }
        }
        self.flush_text(sid, &mut text, &mut text_id).await?;
        self.metered(session, &start.id, &provider_name, &model, &usage)
            .await?;
        tracing::debug!(session_id = %sid, ms = started.elapsed().as_millis() as u64, ?stop, "model call done");
        if !used_tools {
            let reason = match stop {
                Some(StopReason::Refusal) => json!({"type": "refusal"}),
                _ => json!({"type": "end_turn"}),
            };
            let view = self.view(sid, c).await?;
            self.end_turn(sid, &view, reason, "", vec![]).await?;
        }
        Ok(true)
    }

    async fn flush_text(
        &self,
        sid: &str,
        text: &mut String,
        text_id: &mut Option<String>,
    ) -> ApiResult<()> {
        let Some(eid) = text_id.take() else {
            return Ok(());
        };
        let t = std::mem::take(text);
        self.emit_events(
            sid,
            vec![NewEvent::with_id(
                eid,
                "agent.message",
                json!({ "content": text_content(&t) }),
            )],
        )
        .await?;
        Ok(())
    }

    /// Records a tool call the model made, with its permission; refusals get their
    /// result at once.
    async fn tool_use(
        &self,
        sid: &str,
        available: &[AvailableTool],
        name: &str,
        input: Value,
    ) -> ApiResult<()> {
        let Some(tool) = tools::find(available, name) else {
            // Refused before any policy: no `evaluation`.
            let eid = id::new(id::EVENT);
            self.emit_events(
                sid,
                vec![
                    NewEvent::with_id(
                        eid.clone(),
                        "agent.tool_use",
                        json!({"name": name, "input": input, "evaluated_permission": "deny"}),
                    ),
                    tool_result(
                        &eid,
                        &format!("The tool {name:?} is not available to this agent."),
                        true,
                    ),
                ],
            )
            .await?;
            return Ok(());
        };
        let builtin = match tool.kind {
            ToolKind::Custom => {
                self.emit_one(
                    sid,
                    "agent.custom_tool_use",
                    json!({"name": name, "input": input}),
                )
                .await?;
                return Ok(());
            }
            ToolKind::Builtin(b) => b,
        };
        let d = permission::evaluate(tool.policy, builtin, &input);
        let word = match d.permission {
            Permission::Allow => "allow",
            Permission::Ask => "ask",
            Permission::Deny => "deny",
        };
        let eid = id::new(id::EVENT);
        let mut events = vec![NewEvent::with_id(
            eid.clone(),
            "agent.tool_use",
            json!({"name": name, "input": input, "evaluated_permission": word, "evaluation": d.evaluation}),
        )];
        if d.permission == Permission::Deny {
            let why = d.reason.unwrap_or_else(|| "the permission policy".into());
            events.push(tool_result(
                &eid,
                &format!("Denied by the permission policy: {why}."),
                true,
            ));
        }
        self.emit_events(sid, events).await?;
        Ok(())
    }

    /// A model call failed: close its span (the turn's open call), report the error,
    /// end the turn.
    async fn model_failed(
        &self,
        session: &Session,
        c: &Control,
        e: &ProviderError,
    ) -> ApiResult<()> {
        tracing::warn!(session_id = %session.id, error = %e, "model call failed");
        let err = e.session_error();
        // The turn is abandoned either way; `retry_status` tells a passing failure
        // (`exhausted`) from one only an operator can fix (`terminal`).
        let stop = json!({"type": "retries_exhausted"});
        let view = self.view(&session.id, c).await?;
        self.end_turn(
            &session.id,
            &view,
            stop,
            "the model request failed",
            vec![NewEvent::new("session.error", json!({ "error": err }))],
        )
        .await
    }

    /// Meters a finished model call: its span end, `session.usage`, the session's usage.
    async fn metered(
        &self,
        session: &Session,
        start_id: &str,
        provider: &str,
        model: &str,
        u: &ModelUsage,
    ) -> ApiResult<()> {
        let full = format!("{provider}/{model}");
        let cost = self.prices.cost(&full, u);
        self.metrics.record_model_usage(
            provider,
            model,
            &paddock_metrics::TokenUsage {
                input: u.input_tokens,
                output: u.output_tokens,
                cache_read: u.cache_read_input_tokens,
                cache_write: u.cache_creation_input_tokens,
            },
            cost.usd,
        );
        let current = self.store.get_session(&session.id).await?;
        let mut usage: Usage = current.usage.clone();
        usage.input_tokens += u.input_tokens;
        usage.output_tokens += u.output_tokens;
        usage.cache_read_input_tokens += u.cache_read_input_tokens;
        usage.cache_creation.ephemeral_5m_input_tokens += u.cache_creation_input_tokens;
        let total = cents(&usage.list_cost) + cost.exact;
        usage.list_cost.amount = total.cents_string();
        let mut usage_event = json!({ "usage": usage });
        if let Some(b) = &current.budget {
            usage_event["budget"] = json!(b);
        }
        self.emit(
            &session.id,
            Append {
                events: vec![
                    NewEvent::new(
                        "span.model_request_end",
                        json!({
                            "model_request_start_id": start_id,
                            "model_usage": {
                                "input_tokens": u.input_tokens,
                                "output_tokens": u.output_tokens,
                                "cache_read_input_tokens": u.cache_read_input_tokens,
                                "cache_creation_input_tokens": u.cache_creation_input_tokens,
                            },
                            "is_error": false,
                            "model": full,
                            "cost": cost.list_cost(),
                        }),
                    ),
                    NewEvent::new("session.usage", usage_event),
                ],
                usage: Some(usage),
                ..Append::default()
            },
        )
        .await?;
        Ok(())
    }

    /// A worker for the session's runner, provisioning one at the first tool call.
    async fn worker_for(&self, s: &Session) -> Result<(WorkerClient, String), String> {
        let mut running = None;
        if let Some(rid) = &s.runner_id {
            match self.store.get_runner(rid).await {
                Ok(r) if r.state == RunnerState::Running => running = Some(rid.clone()),
                Ok(r) if r.state == RunnerState::Stopped => {
                    let r = self.manager.start(rid).await.map_err(|e| e.to_string())?;
                    if r.state == RunnerState::Running {
                        running = Some(r.id);
                    }
                }
                _ => {}
            }
        }
        let rid = match running {
            Some(rid) => rid,
            None => {
                let r = self
                    .manager
                    .create(CreateRunner {
                        environment_id: Some(s.environment_id.clone()),
                        execution_profile: None,
                        session_id: Some(s.id.clone()),
                        env: None,
                        idle_timeout_secs: None,
                        budget: None,
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                if r.state != RunnerState::Running {
                    return Err(r
                        .reason
                        .or(r.error)
                        .unwrap_or_else(|| format!("the runner is {}", r.state)));
                }
                r.id
            }
        };
        let w = self.manager.worker(&rid).await.map_err(|e| e.to_string())?;
        Ok((w, rid))
    }

    async fn run_tool(
        &self,
        session: &Session,
        p: &Pending,
        irx: &mut watch::Receiver<u64>,
    ) -> ApiResult<Raced<tools::ToolOutput>> {
        let available = self.available(session).await;
        let (tool, spec) = match tools::find(&available, &p.name) {
            Some(
                t @ AvailableTool {
                    kind: ToolKind::Builtin(b),
                    ..
                },
            ) => (*b, t.clone()),
            _ => {
                return Ok(Raced::Done(tools::ToolOutput {
                    content: format!("The tool {:?} is not available to this agent.", p.name),
                    is_error: true,
                }))
            }
        };
        let fresh = self.store.get_session(&session.id).await?;
        let (worker, rid) = tokio::select! {
            w = self.worker_for(&fresh) => match w {
                Ok(w) => w,
                Err(why) => {
                    return Ok(Raced::Done(tools::ToolOutput {
                        content: format!("The sandbox is not available: {why}"),
                        is_error: true,
                    }))
                }
            },
            _ = irx.changed() => return Ok(Raced::Interrupted),
        };
        self.manager.touch(&rid).await;
        let exec_id = format!("tool-{}", p.id);
        let started = Instant::now();
        let out = tokio::select! {
            o = tools::run_tool(&worker, &spec, &p.input, &self.limits, &exec_id) => o,
            _ = irx.changed() => {
                if tool == BuiltinTool::Bash {
                    // Dropping the stream already kills it; say so explicitly too.
                    let _ = worker
                        .json(
                            axum::http::Method::POST,
                            "/cancel",
                            Some(&json!({"id": exec_id})),
                        )
                        .await;
                }
                return Ok(Raced::Interrupted);
            }
        };
        self.manager.touch(&rid).await;
        if tool == BuiltinTool::Bash {
            if let Ok(r) = self.store.get_runner(&rid).await {
                self.metrics.record_exec(&r.backend, started.elapsed());
            }
        }
        Ok(Raced::Done(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paddock_core::common::Money;

    fn session(json_patch: Value) -> Session {
        let mut v = json!({
            "id": "sesn_1", "type": "session", "status": "idle",
            "agent": {
                "id": "agent_1", "type": "agent", "name": "a", "version": 1,
                "description": null, "system": null,
                "model": {"id": "m/x", "effort": null, "inference_geo": null, "speed": "standard"},
                "tools": [], "mcp_servers": [], "skills": [], "metadata": {},
                "execution_identity": {"type": "service_account"}, "multiagent": null,
                "harness": "builtin", "quotas": {}, "execution_profile": null,
                "created_at": "2026-01-01T00:00:00.000000Z", "updated_at": "2026-01-01T00:00:00.000000Z", "archived_at": null
            },
            "environment_id": "env_1", "title": null, "metadata": {}, "resources": [], "vault_ids": [],
            "outcome_evaluations": [], "stats": {"active_seconds": 0.0, "duration_seconds": 0.0, "turns": 1},
            "usage": {"input_tokens": 100, "output_tokens": 50, "cache_read_input_tokens": 0,
                      "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
                      "active_seconds": 10.0, "list_cost": {"amount": "5", "currency": "USD"},
                      "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0}},
            "budget": null, "deployment_id": null, "runner_id": null, "execution_profile": null,
            "created_at": "2026-01-01T00:00:00.000000Z", "updated_at": "2026-01-01T00:00:00.000000Z", "archived_at": null
        });
        json_merge(&mut v, json_patch);
        serde_json::from_value(v).expect("session")
    }

    fn json_merge(a: &mut Value, b: Value) {
        match (a, b) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    json_merge(a.entry(k).or_insert(Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    #[test]
    fn budgets_and_quotas_are_checked_before_each_call() {
        let s = session(json!({}));
        assert!(spent(&s, 0.0).is_none(), "no limits");
        let s = session(
            json!({"budget": {"type": "limit", "max_list_cost": {"amount": "5", "currency": "USD"}}}),
        );
        assert!(
            matches!(spent(&s, 0.0), Some(Spent::Budget(_))),
            "5 of 5 cents"
        );
        let s = session(
            json!({"budget": {"type": "limit", "max_list_cost": {"amount": "5.1", "currency": "USD"}}}),
        );
        assert!(spent(&s, 0.0).is_none(), "under budget");
        // The agent's quota is the tighter one here.
        let s = session(json!({
            "budget": {"type": "limit", "max_list_cost": {"amount": "100", "currency": "USD"}},
            "agent": {"quotas": {"max_list_cost": {"amount": "4", "currency": "USD"}}}
        }));
        assert!(matches!(spent(&s, 0.0), Some(Spent::Budget(_))));
        let s = session(json!({"agent": {"quotas": {"max_tokens": 150}}}));
        assert!(matches!(
            spent(&s, 0.0),
            Some(Spent::Quota("max_tokens", _))
        ));
        let s = session(json!({"agent": {"quotas": {"max_tokens": 151}}}));
        assert!(spent(&s, 0.0).is_none());
        let s = session(json!({"agent": {"quotas": {"max_wall_seconds": 12}}}));
        assert!(spent(&s, 1.0).is_none());
        assert!(matches!(
            spent(&s, 2.5),
            Some(Spent::Quota("max_wall_seconds", _))
        ));
        let s = session(json!({"agent": {"quotas": {"max_turns": 1}}}));
        assert!(spent(&s, 0.0).is_none(), "the first turn may run");
        assert!(check_new_turn(&s).is_err(), "a second one may not");
        let _ = Money {
            amount: "0".into(),
            currency: "USD".into(),
        };
    }
}
