//! What the driver and every harness share: the store and hub to write events with,
//! the runner manager, metering, and the few turn-level writes all of them make
//! (ending a turn, stopping a spent session).

use paddock_agent::pricing::PriceTable;
use paddock_agent::provider::Usage as ModelUsage;
use paddock_backend::WorkerClient;
use paddock_core::event::{
    Event, ModelRequestEnd, NewEvent, RetryStatus, ServerEvent, SessionError, SessionErrorType,
    StopReason,
};
use paddock_core::lifecycle::RunnerState;
use paddock_core::runner::NetworkPolicy;
use paddock_core::session::{Session, SessionStatus, Usage};
use paddock_core::ts::{self, Timestamp};
use paddock_store::{Append, Store};
use std::sync::Arc;
use std::time::Duration;

use super::budget::{cents, Spent};
use super::view::View;
use super::Control;
use crate::config::AgentSettings;
use crate::error::{ApiResult, ServerError};
use crate::hub::Hub;
use crate::manager::{CreateRunner, Manager};

pub(crate) struct Ctx {
    pub store: Arc<dyn Store>,
    pub hub: Arc<Hub>,
    pub manager: Arc<Manager>,
    pub metrics: Arc<paddock_metrics::PaddockMetrics>,
    pub settings: AgentSettings,
    pub prices: PriceTable,
    /// When this process started: work in flight before it was cut short by a restart.
    pub started_at: Timestamp,
    /// One metering at a time per session: a session's usage is read, added to and
    /// written, and an agent may make model calls at once (Claude Code does).
    pub metering: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Ctx {
    /// Whether `t` is before this process started (work a restart cut short).
    pub fn before_restart(&self, t: Option<Timestamp>) -> bool {
        t.is_some_and(|t| t < self.started_at)
    }

    /// The session's view, brought up to date with the events appended since the
    /// driver last looked.
    pub async fn view(&self, sid: &str, c: &Control) -> ApiResult<View> {
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
    pub async fn emit(&self, sid: &str, append: Append) -> ApiResult<Vec<Event>> {
        let out = self.store.append_events(sid, append).await?;
        if let Some(last) = out.events.last() {
            self.hub.published(sid, last.seq);
        }
        Ok(out.events)
    }

    /// Appends events alone.
    pub async fn emit_events(&self, sid: &str, events: Vec<NewEvent>) -> ApiResult<Vec<Event>> {
        self.emit(
            sid,
            Append {
                events,
                ..Append::default()
            },
        )
        .await
    }

    /// Appends one typed event.
    pub async fn emit_one(&self, sid: &str, event: ServerEvent) -> ApiResult<Event> {
        let mut evs = self.emit_events(sid, vec![event.into()]).await?;
        evs.pop()
            .ok_or_else(|| ServerError::Config("an append wrote no event".into()))
    }

    /// Opens a turn: `session.status_running`, the session running, one more turn.
    pub async fn open_turn(&self, sid: &str, view: &View) -> ApiResult<()> {
        self.emit(
            sid,
            Append {
                events: vec![ServerEvent::SessionStatusRunning {}.into()],
                status: Some(SessionStatus::Running),
                turns: Some(view.turns + 1),
                ..Append::default()
            },
        )
        .await?;
        Ok(())
    }

    /// Ends the open turn: closes an open model span, gives every pending tool use an
    /// error result (`why`), adds `extra` events, then `session.status_idle`.
    pub async fn end_turn(
        &self,
        sid: &str,
        view: &View,
        stop_reason: StopReason,
        why: &str,
        extra: Vec<ServerEvent>,
    ) -> ApiResult<()> {
        let mut events: Vec<NewEvent> = Vec::new();
        if let Some(t) = &view.turn {
            if let Some(start) = &t.open_call {
                events.push(
                    ServerEvent::SpanModelRequestEnd(ModelRequestEnd {
                        model_request_start_id: start.clone(),
                        model_usage: ModelUsage::default(),
                        is_error: true,
                        model: None,
                        cost: None,
                    })
                    .into(),
                );
            }
            for p in &t.pending {
                events
                    .push(ServerEvent::tool_result(&p.id, format!("Not run: {why}."), true).into());
            }
        }
        events.extend(extra.into_iter().map(NewEvent::from));
        events.push(ServerEvent::idle(stop_reason).into());
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

    /// Ends the turn of a session whose budget or quota is spent (`budget_reached`)
    /// and stops its runner.
    pub async fn out_of_budget(&self, session: &Session, view: &View, s: Spent) -> ApiResult<()> {
        let (quota, message, extra) = match s {
            Spent::Budget(m) => ("max_list_cost", m, vec![]),
            Spent::Quota(q, m) => {
                let mut error =
                    SessionError::new(SessionErrorType::Unknown, m.clone(), RetryStatus::Exhausted);
                error.quota = Some(q.to_string());
                (q, m, vec![ServerEvent::error(error)])
            }
        };
        tracing::info!(session_id = %session.id, quota, %message, "session out of budget");
        self.metrics.quota_rejected(quota);
        self.end_turn(
            &session.id,
            view,
            StopReason::BudgetReached,
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

    /// Meters a finished model call: its span end, `session.usage`, the session's usage.
    pub async fn metered(
        &self,
        session_id: &str,
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
        let lock = {
            let mut m = self.metering.lock().unwrap_or_else(|p| p.into_inner());
            m.retain(|_, l| Arc::strong_count(l) > 1);
            m.entry(session_id.to_string()).or_default().clone()
        };
        let _one_at_a_time = lock.lock().await;
        let current = self.store.get_session(session_id).await?;
        let mut usage: Usage = current.usage.clone();
        usage.input_tokens += u.input_tokens;
        usage.output_tokens += u.output_tokens;
        usage.cache_read_input_tokens += u.cache_read_input_tokens;
        usage.cache_creation.ephemeral_5m_input_tokens += u.cache_creation_input_tokens;
        let total = cents(&usage.list_cost) + cost.exact;
        usage.list_cost.amount = total.cents_string();
        let events = vec![
            ServerEvent::SpanModelRequestEnd(ModelRequestEnd {
                model_request_start_id: start_id.to_string(),
                model_usage: *u,
                is_error: false,
                model: Some(full),
                cost: Some(cost.list_cost()),
            })
            .into(),
            ServerEvent::SessionUsage {
                usage: usage.clone(),
                budget: current.budget.clone(),
            }
            .into(),
        ];
        self.emit(
            session_id,
            Append {
                events,
                usage: Some(usage),
                ..Append::default()
            },
        )
        .await?;
        Ok(())
    }

    /// A worker for the session's runner, provisioning one at the first tool call.
    pub async fn worker_for(&self, s: &Session) -> Result<(WorkerClient, String), String> {
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

    /// The network a runner of this session has (or would have).
    pub async fn network(&self, s: &Session) -> NetworkPolicy {
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
}
