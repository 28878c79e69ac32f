//! The seam between the driver and whoever thinks. The driver (`mod.rs`) owns the
//! log, turns, resume after a restart, interrupts, queued input, confirmations and
//! budgets; a [`Harness`] is the brain it runs: the built-in loop ([`super::builtin`])
//! or an ACP agent inside the sandbox. A new harness is a new file beside `builtin.rs`.

use async_trait::async_trait;
use paddock_core::session::Session;
use tokio::sync::watch;

use super::ctx::Ctx;
use super::view::{Turn, View};
use super::Control;
use crate::error::ApiResult;

/// What a step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Something was written: look at the log again.
    Continue,
    /// Nothing to do until new input arrives (or the harness kicks the driver).
    Wait,
}

/// One step's inputs: the session as it is now and the view of its log.
pub(crate) struct Step<'a> {
    pub session: &'a Session,
    pub view: &'a View,
    pub turn: &'a Turn,
    /// Changes when the user interrupts: what the step starts is raced against it.
    pub interrupts: &'a mut watch::Receiver<u64>,
    pub control: &'a Control,
}

/// How a step in flight ended when it was raced against an interrupt.
pub(crate) enum Raced<T> {
    Done(T),
    Interrupted,
}

#[async_trait]
pub(crate) trait Harness: Send + Sync {
    /// Deals with work of the open turn that a restart of the orchestrator cut short,
    /// before anything else happens in the turn; `None` when there is none.
    async fn recover(
        &self,
        _cx: &Ctx,
        _session: &Session,
        _view: &View,
        _turn: &Turn,
    ) -> ApiResult<Option<Progress>> {
        Ok(None)
    }

    /// Takes the open turn one step further. The driver calls it only when the turn is
    /// open, was not interrupted, and nothing in it waits for the client.
    async fn step(&self, cx: &Ctx, step: Step<'_>) -> ApiResult<Progress>;

    /// The user interrupted the open turn: stop what runs for it. The driver then ends
    /// the turn (pending tool uses get error results).
    async fn interrupt(&self, _cx: &Ctx, _session: &Session) -> ApiResult<()> {
        Ok(())
    }
}
