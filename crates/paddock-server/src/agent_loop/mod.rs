//! The agent loop: a **driver** per session that runs a [`Harness`] (who thinks).
//!
//! The driver owns what every harness shares: the event log (its only state), turns,
//! queued input, confirmations, interrupts, resume after a restart, and budgets. It
//! takes one *step* at a time: it brings the session's [`view::View`] up to date with
//! the log, does the one thing that comes next (open a turn, end an interrupted one,
//! ask for confirmations) or hands the step to the session's harness, and writes the
//! outcome as events before looking again. Because the log is the only state, a
//! restarted orchestrator resumes every open turn from it ([`AgentRuntime::resume_all`]).
//!
//! Harnesses: [`builtin`] (the built-in brain, which calls the model from here and
//! runs tools in the runner) and [`acp`] (an Agent Client Protocol agent inside the
//! runner, whose model traffic goes through the [`gateway`]). A harness is chosen by
//! the agent's `harness`.

mod acp;
mod budget;
mod builtin;
mod ctx;
mod gateway;
mod harness;
pub mod view;

pub use budget::check_new_turn;

use paddock_agent::pricing::PriceTable;
use paddock_agent::tools::ToolLimits;
use paddock_core::agent::Harness as HarnessKind;
use paddock_core::event::{RetryStatus, ServerEvent, SessionError, SessionErrorType, StopReason};
use paddock_core::session::SessionStatus;
use paddock_core::ts;
use paddock_store::{Append, Store};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{watch, Notify};

use crate::config::AgentSettings;
use crate::error::{ApiResult, ServerError};
use crate::hub::Hub;
use crate::manager::Manager;
use builtin::Builtin;
use ctx::Ctx;
use harness::{Harness, Progress, Step};
use view::View;

/// Wakes a session's driver: new input, or an interrupt.
#[derive(Default)]
pub(crate) struct Control {
    /// A model call is streaming (a drain lets it finish).
    pub(crate) in_model_call: AtomicBool,
    dirty: AtomicBool,
    wake: Notify,
    interrupts: watch::Sender<u64>,
    /// The view so far and the last event it has seen: each step reads only what
    /// was appended since.
    view: Mutex<(i64, View)>,
}

pub struct AgentRuntime {
    cx: Arc<Ctx>,
    builtin: Arc<Builtin>,
    acp: Arc<acp::Acp>,
    drivers: Mutex<HashMap<String, Arc<Control>>>,
    shutdown: watch::Receiver<bool>,
    /// A drain began: drivers start no new step.
    draining: AtomicBool,
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

impl AgentRuntime {
    pub fn new(d: RuntimeDeps) -> Result<Arc<Self>, ServerError> {
        let prices = PriceTable::builtin()
            .with_overrides(&d.settings.prices)
            .map_err(|e| ServerError::Config(format!("agent.prices: {e}")))?;
        let limits = ToolLimits {
            max_output_bytes: d.settings.max_tool_output_bytes,
            ..ToolLimits::default()
        };
        let builtin = Arc::new(Builtin::new(
            d.providers,
            d.settings.default_provider.clone(),
            limits,
        ));
        let cx = Arc::new(Ctx {
            store: d.store,
            hub: d.hub,
            manager: d.manager,
            metrics: d.metrics,
            settings: d.settings,
            prices,
            started_at: ts::now(),
            metering: Default::default(),
        });
        let gateways = Arc::new(gateway::Gateways::new(cx.clone(), builtin.clone()));
        let acp = Arc::new(acp::Acp::new(cx.clone(), builtin.clone(), gateways.clone()));
        let hooks: Arc<dyn gateway::GatewayHooks> = acp.clone();
        gateways.set_hooks(Arc::downgrade(&hooks));
        Ok(Arc::new_cyclic(|me: &std::sync::Weak<AgentRuntime>| {
            let me = me.clone();
            acp.set_kick(Arc::new(move |sid: &str| {
                if let Some(rt) = me.upgrade() {
                    rt.kick(sid);
                }
            }));
            AgentRuntime {
                cx,
                builtin,
                acp,
                drivers: Mutex::new(HashMap::new()),
                shutdown: d.shutdown,
                draining: AtomicBool::new(false),
            }
        }))
    }

    /// Replaces the providers (keys from a vault are resolved once the store is open).
    pub fn set_providers(&self, p: paddock_agent::provider::Providers) {
        self.builtin.set_providers(p);
    }

    /// Makes sure the session's driver looks at its log again.
    pub fn kick(self: &Arc<Self>, sid: &str) {
        if !self.cx.settings.enabled {
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
        let store = &self.cx.store;
        let mut page = paddock_store::PageReq {
            limit: 500,
            ..paddock_store::PageReq::default()
        };
        loop {
            let p = store
                .list_sessions(paddock_store::SessionFilter::default(), page.clone())
                .await?;
            for s in &p.data {
                if s.status == SessionStatus::Terminated {
                    continue;
                }
                let last = store.last_seq(&s.id).await?;
                let tail = store.events_after(&s.id, last - 1, 1).await?;
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

    /// Starts no new step, and waits (at most `grace`) until no model call streams.
    /// Steps that run tools are left to the shutdown: the commands go on in their
    /// runners and are picked up again after the restart.
    pub async fn drain(&self, grace: std::time::Duration) {
        self.draining.store(true, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let busy = self
                .drivers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .filter(|c| c.in_model_call.load(Ordering::SeqCst))
                .count();
            if busy == 0 {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::info!(
                    model_calls = busy,
                    "drain grace over: leaving model calls to the restart"
                );
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    async fn drive(self: Arc<Self>, sid: String, c: Arc<Control>) {
        let mut shutdown = self.shutdown.clone();
        loop {
            if self.draining.load(Ordering::SeqCst) {
                // The orchestrator is stopping: the step is taken after the restart.
                self.drivers
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&sid);
                return;
            }
            c.dirty.store(false, Ordering::SeqCst);
            let progressed = tokio::select! {
                r = self.step(&sid, &c) => r,
                _ = shutdown.changed() => return,
            };
            match progressed {
                Ok(Progress::Continue) => continue,
                Ok(Progress::Wait) => {}
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

    /// The harness that runs an agent, or why none can.
    fn harness(&self, kind: &HarnessKind) -> Result<&dyn Harness, String> {
        match kind {
            HarnessKind::Builtin => Ok(self.builtin.as_ref()),
            HarnessKind::Acp(_) => acp::startable(kind).map(|()| self.acp.as_ref() as &dyn Harness),
            other => Err(format!(
                "the {} harness is not available in this Paddock; use harness \"builtin\"",
                other.name()
            )),
        }
    }

    /// One step of the driver.
    async fn step(&self, sid: &str, c: &Control) -> ApiResult<Progress> {
        let cx = &self.cx;
        // Interrupts from here on cancel what this step starts.
        let mut irx = c.interrupts.subscribe();
        irx.borrow_and_update();
        let session = match cx.store.get_session(sid).await {
            Ok(s) => s,
            Err(paddock_store::StoreError::NotFound { .. }) => return Ok(Progress::Wait),
            Err(e) => return Err(e.into()),
        };
        if session.archived_at.is_some() || session.status == SessionStatus::Terminated {
            return Ok(Progress::Wait);
        }
        let view = cx.view(sid, c).await?;
        let harness = self.harness(&session.agent.harness);
        let Some(turn) = &view.turn else {
            if view.queued.is_empty() {
                return Ok(Progress::Wait);
            }
            if let Err(why) = harness {
                // Say so rather than hang.
                let error =
                    SessionError::new(SessionErrorType::Unknown, why, RetryStatus::Terminal);
                cx.emit(
                    sid,
                    Append {
                        events: vec![
                            ServerEvent::SessionStatusRunning {}.into(),
                            ServerEvent::error(error).into(),
                            ServerEvent::idle(StopReason::EndTurn).into(),
                        ],
                        status: Some(SessionStatus::Idle),
                        turns: Some(view.turns + 1),
                        ..Append::default()
                    },
                )
                .await?;
                return Ok(Progress::Continue);
            }
            cx.open_turn(sid, &view).await?;
            return Ok(Progress::Continue);
        };
        let harness = match harness {
            Ok(h) => h,
            Err(why) => {
                cx.end_turn(sid, &view, StopReason::EndTurn, &why, vec![])
                    .await?;
                return Ok(Progress::Continue);
            }
        };
        if turn.interrupted {
            harness.interrupt(cx, &session).await?;
            cx.end_turn(
                sid,
                &view,
                StopReason::EndTurn,
                "interrupted by the user",
                vec![],
            )
            .await?;
            return Ok(Progress::Continue);
        }
        if let Some(p) = harness.recover(cx, &session, &view, turn).await? {
            return Ok(p);
        }
        let awaiting: Vec<String> = turn
            .pending
            .iter()
            .filter(|p| p.awaits_client())
            .map(|p| p.id.clone())
            .collect();
        if !awaiting.is_empty() {
            if turn.waiting_on.as_ref() == Some(&awaiting) {
                return Ok(Progress::Wait);
            }
            cx.emit(
                sid,
                Append {
                    events: vec![ServerEvent::idle(StopReason::RequiresAction {
                        event_ids: awaiting,
                    })
                    .into()],
                    status: Some(SessionStatus::Idle),
                    ..Append::default()
                },
            )
            .await?;
            return Ok(Progress::Continue);
        }
        if turn.waiting_on.is_some() {
            // Every answer is in: the turn runs again.
            cx.emit(
                sid,
                Append {
                    events: vec![ServerEvent::SessionStatusRunning {}.into()],
                    status: Some(SessionStatus::Running),
                    ..Append::default()
                },
            )
            .await?;
            return Ok(Progress::Continue);
        }
        harness
            .step(
                cx,
                Step {
                    session: &session,
                    view: &view,
                    turn,
                    interrupts: &mut irx,
                    control: c,
                },
            )
            .await
    }
}
