//! The built-in brain: it calls the model from here, the orchestrator, and runs the
//! tools the model asks for in the session's runner (the hands). Provider keys never
//! leave this process.
//!
//! Each step does one thing: recover work a restart cut short, run the next cleared
//! tool, or call the model (after the budget check). Dropping a model stream closes its
//! connection; dropping an exec stream makes the worker kill the command's process
//! group, so an interrupt stops either at once.

use async_trait::async_trait;
use paddock_agent::permission::{self, Permission};
use paddock_agent::provider::{
    ModelRequest, Provider, Providers, StopReason as ModelStop, StreamEvent, Usage as ModelUsage,
};
use paddock_agent::tools::{self, AvailableTool, ToolKind, ToolLimits};
use paddock_agent::ProviderError;
use paddock_core::agent::BuiltinTool;
use paddock_core::event::{
    EvaluatedPermission, NewEvent, RetryStatus, ServerEvent, SessionError, SessionErrorType,
    StopReason, ToolUse,
};
use paddock_core::id;
use paddock_core::lifecycle::RunnerState;
use paddock_core::runner::NetworkPolicy;
use paddock_core::session::Session;
use paddock_core::ts;
use serde_json::{json, Value};
use std::sync::{Arc, RwLock};
use std::time::Instant;
use tokio::sync::watch;

use super::budget::spent;
use super::ctx::Ctx;
use super::harness::{Harness, Progress, Raced, Step};
use super::view::{Pending, Turn, View};
use super::Control;
use crate::error::ApiResult;

pub(crate) struct Builtin {
    providers: RwLock<Providers>,
    default_provider: Option<String>,
    limits: ToolLimits,
}

fn word(p: Permission) -> EvaluatedPermission {
    match p {
        Permission::Allow => EvaluatedPermission::Allow,
        Permission::Ask => EvaluatedPermission::Ask,
        Permission::Deny => EvaluatedPermission::Deny,
    }
}

#[async_trait]
impl Harness for Builtin {
    async fn recover(
        &self,
        cx: &Ctx,
        session: &Session,
        _view: &View,
        turn: &Turn,
    ) -> ApiResult<Option<Progress>> {
        if let (Some(start), true) = (&turn.open_call, cx.before_restart(turn.open_call_at)) {
            // The orchestrator stopped during a model call: its answer is lost. Close
            // its span as failed (its usage is unknown); the call is made again, once,
            // by the next step (as a new, metered call, held to the budget first).
            tracing::info!(session_id = %session.id, "repeating a model call cut off by a restart");
            cx.emit_one(
                &session.id,
                ServerEvent::SpanModelRequestEnd(paddock_core::event::ModelRequestEnd {
                    model_request_start_id: start.clone(),
                    model_usage: ModelUsage::default(),
                    is_error: true,
                    model: None,
                    cost: None,
                }),
            )
            .await?;
            return Ok(Some(Progress::Continue));
        }
        Ok(None)
    }

    async fn step(&self, cx: &Ctx, s: Step<'_>) -> ApiResult<Progress> {
        let Step {
            session,
            view,
            turn,
            interrupts,
            control,
        } = s;
        let sid = session.id.as_str();
        if let Some(p) = turn.pending.first() {
            if !p.may_run() {
                let why = match &p.answer {
                    Some((false, Some(m))) => format!("The user denied this tool call: {m}"),
                    Some((false, None)) => "The user denied this tool call.".to_string(),
                    _ => "This tool call was not allowed.".to_string(),
                };
                cx.emit_one(sid, ServerEvent::tool_result(&p.id, why, true))
                    .await?;
                return Ok(Progress::Continue);
            }
            let output = match self.run_tool(cx, session, p, interrupts).await? {
                Raced::Done(o) => o,
                Raced::Interrupted => return Ok(Progress::Continue),
            };
            if p.started.is_some() && output.is_none() {
                // Started by an orchestrator that stopped since, and the runner cannot
                // say how it ended.
                cx.emit_one(
                    sid,
                    ServerEvent::tool_result(
                        &p.id,
                        "Paddock restarted while this tool call was running, and its runner no longer knows it: it may not have completed. Check the workspace before retrying.",
                        true,
                    ),
                )
                .await?;
                return Ok(Progress::Continue);
            }
            let Some(output) = output else {
                return Ok(Progress::Continue);
            };
            cx.emit_one(
                sid,
                ServerEvent::tool_result(&p.id, output.content, output.is_error),
            )
            .await?;
            return Ok(Progress::Continue);
        }
        if turn.model_calls == 0 || turn.last_call_used_tools || turn.last_call_failed {
            let turn_secs = turn
                .started_at
                .map(|t| (ts::now() - t).as_seconds_f64().max(0.0))
                .unwrap_or(0.0);
            if let Some(s) = spent(session, turn_secs) {
                cx.out_of_budget(session, view, s).await?;
                return Ok(Progress::Continue);
            }
            if turn.model_calls >= cx.settings.max_model_calls_per_turn {
                let error = SessionError::new(
                    SessionErrorType::ToolUseLimitReached,
                    format!("the turn made {} model calls, the most one turn may make (agent.max_model_calls_per_turn)", turn.model_calls),
                    RetryStatus::Exhausted,
                );
                cx.end_turn(
                    sid,
                    view,
                    StopReason::EndTurn,
                    "the turn was ended",
                    vec![ServerEvent::error(error)],
                )
                .await?;
                return Ok(Progress::Continue);
            }
            return self
                .model_call(cx, session, view, control, interrupts)
                .await;
        }
        cx.end_turn(sid, view, StopReason::EndTurn, "", vec![])
            .await?;
        Ok(Progress::Continue)
    }
}

impl Builtin {
    pub fn new(providers: Providers, default_provider: Option<String>, limits: ToolLimits) -> Self {
        let default_provider = default_provider.or_else(|| {
            let names = providers.names();
            (names.len() == 1).then(|| names[0].to_string())
        });
        Builtin {
            providers: RwLock::new(providers),
            default_provider,
            limits,
        }
    }

    /// Replaces the providers (keys from a vault are resolved once the store is open).
    pub fn set_providers(&self, p: Providers) {
        *self.providers.write().unwrap_or_else(|e| e.into_inner()) = p;
    }

    /// The provider a model id goes to, the provider's own model id, and its name.
    pub fn provider_for(
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

    async fn available(&self, cx: &Ctx, s: &Session) -> Vec<AvailableTool> {
        let network = cx.network(s).await;
        tools::available_tools(&s.agent.tools, network != NetworkPolicy::None)
    }

    async fn model_call(
        &self,
        cx: &Ctx,
        session: &Session,
        view: &View,
        c: &Control,
        irx: &mut watch::Receiver<u64>,
    ) -> ApiResult<Progress> {
        let sid = session.id.as_str();
        let available = self.available(cx, session).await;
        // A drain lets this call finish (its answer is written before the exit).
        c.in_model_call
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let _streaming = InModelCall(c);
        let start = cx
            .emit_one(sid, ServerEvent::SpanModelRequestStart {})
            .await?;
        let (provider, model, provider_name) = match self.provider_for(&session.agent.model.id) {
            Ok(x) => x,
            Err(e) => {
                self.model_failed(cx, session, c, &e).await?;
                return Ok(Progress::Continue);
            }
        };
        let mut req = ModelRequest::new(
            model.clone(),
            view.messages.clone(),
            cx.settings.max_output_tokens,
        );
        req.system = session.agent.system.clone();
        req.tools = available.iter().map(|t| t.spec.clone()).collect();
        let started = Instant::now();
        let stream = tokio::select! {
            s = provider.stream(&req) => s,
            _ = irx.changed() => return Ok(Progress::Continue),
        };
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => {
                self.model_failed(cx, session, c, &e).await?;
                return Ok(Progress::Continue);
            }
        };
        let mut text = Text::default();
        let mut usage = ModelUsage::default();
        let mut stop: Option<ModelStop> = None;
        let mut used_tools = false;
        let mut first_token = true;
        loop {
            let next = tokio::select! {
                n = futures::StreamExt::next(&mut stream) => n,
                _ = irx.changed() => {
                    // Keep what was said; the next step ends the turn.
                    text.flush(cx, sid).await?;
                    return Ok(Progress::Continue);
                }
            };
            let Some(item) = next else { break };
            match item {
                Ok(StreamEvent::TextDelta(t)) => {
                    if first_token {
                        first_token = false;
                        tracing::debug!(session_id = %sid, ttft_ms = started.elapsed().as_millis() as u64, "first token");
                    }
                    text.delta(cx, sid, &t);
                }
                Ok(StreamEvent::ToolUse { name, input, .. }) => {
                    text.flush(cx, sid).await?;
                    used_tools = true;
                    self.tool_use(cx, sid, &available, &name, input).await?;
                }
                Ok(StreamEvent::Usage(u)) => usage = u,
                Ok(StreamEvent::Stop(s)) => stop = Some(s),
                Err(e) => {
                    text.flush(cx, sid).await?;
                    self.model_failed(cx, session, c, &e).await?;
                    return Ok(Progress::Continue);
                }
            }
        }
        text.flush(cx, sid).await?;
        cx.metered(sid, &start.id, &provider_name, &model, &usage)
            .await?;
        tracing::debug!(session_id = %sid, ms = started.elapsed().as_millis() as u64, ?stop, "model call done");
        if !used_tools {
            let reason = match stop {
                Some(ModelStop::Refusal) => StopReason::Refusal,
                _ => StopReason::EndTurn,
            };
            let view = cx.view(sid, c).await?;
            cx.end_turn(sid, &view, reason, "", vec![]).await?;
        }
        Ok(Progress::Continue)
    }

    /// Records a tool call the model made, with its permission; refusals get their
    /// result at once.
    async fn tool_use(
        &self,
        cx: &Ctx,
        sid: &str,
        available: &[AvailableTool],
        name: &str,
        input: Value,
    ) -> ApiResult<()> {
        let Some(tool) = tools::find(available, name) else {
            // Refused before any policy: no `evaluation`.
            let eid = id::new(id::EVENT);
            let use_ = ServerEvent::AgentToolUse(ToolUse {
                name: name.to_string(),
                input,
                mcp_server_name: None,
                evaluated_permission: Some(EvaluatedPermission::Deny),
                evaluation: None,
            });
            let result = ServerEvent::tool_result(
                &eid,
                format!("The tool {name:?} is not available to this agent."),
                true,
            );
            cx.emit_events(
                sid,
                vec![NewEvent::typed_with_id(eid, &use_), result.into()],
            )
            .await?;
            return Ok(());
        };
        let builtin = match tool.kind {
            ToolKind::Custom => {
                cx.emit_one(
                    sid,
                    ServerEvent::AgentCustomToolUse {
                        name: name.to_string(),
                        input,
                    },
                )
                .await?;
                return Ok(());
            }
            ToolKind::Builtin(b) => b,
        };
        let d = permission::evaluate(tool.policy, builtin, &input);
        let eid = id::new(id::EVENT);
        let use_ = ServerEvent::AgentToolUse(ToolUse {
            name: name.to_string(),
            input,
            mcp_server_name: None,
            evaluated_permission: Some(word(d.permission)),
            evaluation: Some(d.evaluation),
        });
        let mut events = vec![NewEvent::typed_with_id(eid.clone(), &use_)];
        if d.permission == Permission::Deny {
            let why = d.reason.unwrap_or_else(|| "the permission policy".into());
            events.push(
                ServerEvent::tool_result(
                    &eid,
                    format!("Denied by the permission policy: {why}."),
                    true,
                )
                .into(),
            );
        }
        cx.emit_events(sid, events).await?;
        Ok(())
    }

    /// A model call failed: close its span (the turn's open call), report the error,
    /// end the turn.
    async fn model_failed(
        &self,
        cx: &Ctx,
        session: &Session,
        c: &Control,
        e: &ProviderError,
    ) -> ApiResult<()> {
        tracing::warn!(session_id = %session.id, error = %e, "model call failed");
        // The turn is abandoned either way; `retry_status` tells a passing failure
        // (`exhausted`) from one only an operator can fix (`terminal`).
        let view = cx.view(&session.id, c).await?;
        cx.end_turn(
            &session.id,
            &view,
            StopReason::RetriesExhausted,
            "the model request failed",
            vec![ServerEvent::error(e.session_error())],
        )
        .await
    }

    /// Runs a cleared tool call once: the start is written to the log before the call
    /// goes to the runner. A call already started (by an orchestrator that restarted
    /// since) is asked of its runner again instead: its real outcome, or `None` when
    /// the runner cannot say.
    async fn run_tool(
        &self,
        cx: &Ctx,
        session: &Session,
        p: &Pending,
        irx: &mut watch::Receiver<u64>,
    ) -> ApiResult<Raced<Option<tools::ToolOutput>>> {
        let available = self.available(cx, session).await;
        let (tool, spec) = match tools::find(&available, &p.name) {
            Some(
                t @ AvailableTool {
                    kind: ToolKind::Builtin(b),
                    ..
                },
            ) => (*b, t.clone()),
            _ => {
                return Ok(Raced::Done(Some(tools::ToolOutput {
                    content: format!("The tool {:?} is not available to this agent.", p.name),
                    is_error: true,
                })))
            }
        };
        let fresh = cx.store.get_session(&session.id).await?;
        if let Some((started_on, exec_id)) = &p.started {
            let same_runner = fresh.runner_id.as_deref() == Some(started_on.as_str());
            let running = match cx.store.get_runner(started_on).await {
                Ok(r) => r.state == RunnerState::Running,
                Err(_) => false,
            };
            if !(same_runner && running) {
                return Ok(Raced::Done(None));
            }
            let Ok(worker) = cx.manager.worker(started_on).await else {
                return Ok(Raced::Done(None));
            };
            tracing::info!(session_id = %session.id, exec_id = %exec_id, "resuming a tool call started before a restart");
            let resumed = tokio::select! {
                r = tools::resume_tool(&worker, &spec, &p.input, &self.limits, exec_id) => r,
                _ = irx.changed() => {
                    let _ = worker
                        .json(axum::http::Method::POST, "/cancel", Some(&json!({"id": exec_id})))
                        .await;
                    return Ok(Raced::Interrupted);
                }
            };
            match resumed {
                tools::Resumed::Done(out) => return Ok(Raced::Done(Some(out))),
                tools::Resumed::Unknown => return Ok(Raced::Done(None)),
                tools::Resumed::Rerun => {}
            }
        }
        let (worker, rid) = tokio::select! {
            w = cx.worker_for(&fresh) => match w {
                Ok(w) => w,
                Err(why) => {
                    return Ok(Raced::Done(Some(tools::ToolOutput {
                        content: format!("The sandbox is not available: {why}"),
                        is_error: true,
                    })))
                }
            },
            _ = irx.changed() => return Ok(Raced::Interrupted),
        };
        cx.manager.touch(&rid);
        let exec_id = format!("tool-{}", p.id);
        cx.emit_one(
            &session.id,
            ServerEvent::SpanToolExecutionStart {
                tool_use_id: p.id.clone(),
                runner_id: rid.clone(),
                exec_id: exec_id.clone(),
            },
        )
        .await?;
        let started = Instant::now();
        let out = tokio::select! {
            o = tools::run_tool(&worker, &spec, &p.input, &self.limits, &exec_id) => o,
            _ = irx.changed() => {
                if tool == BuiltinTool::Bash {
                    // The exec outlives its stream: stop it.
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
        cx.manager.touch(&rid);
        if tool == BuiltinTool::Bash {
            if let Ok(r) = cx.store.get_runner(&rid).await {
                cx.metrics.record_exec(&r.backend, started.elapsed());
            }
        }
        Ok(Raced::Done(Some(out)))
    }
}

/// Clears `Control::in_model_call` when the model call's step is over.
struct InModelCall<'a>(&'a Control);

impl Drop for InModelCall<'_> {
    fn drop(&mut self) {
        self.0
            .in_model_call
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The text of the model's answer so far, previewed as it streams (`event_start`, then
/// `event_delta`s, to the streams that asked) and stored as one `agent.message` with
/// the previewed id.
#[derive(Default)]
struct Text {
    text: String,
    id: Option<String>,
}

impl Text {
    fn delta(&mut self, cx: &Ctx, sid: &str, t: &str) {
        let eid = self.id.get_or_insert_with(|| {
            let eid = id::new(id::EVENT);
            cx.hub.preview(
                sid,
                json!({"type": "event_start", "event": {"id": eid, "type": "agent.message"}}),
            );
            eid
        });
        cx.hub.preview(
            sid,
            json!({"type": "event_delta", "event_id": eid, "delta": {"type": "content_delta", "index": 0, "content": {"type": "text", "text": t}}}),
        );
        self.text.push_str(t);
    }

    async fn flush(&mut self, cx: &Ctx, sid: &str) -> ApiResult<()> {
        let Some(eid) = self.id.take() else {
            return Ok(());
        };
        let t = std::mem::take(&mut self.text);
        cx.emit_events(
            sid,
            vec![NewEvent::typed_with_id(eid, &ServerEvent::agent_text(t))],
        )
        .await?;
        Ok(())
    }
}
