//! Runners: one live sandbox each. In this crate only the record and its lifecycle;
//! backends (mechanism) live elsewhere.

use serde::{Deserialize, Serialize};

use crate::lifecycle::{transition, RunnerState};
use crate::ts::{serde_ts, Timestamp};
use crate::CoreError;

/// How strongly a runner is isolated from its host, as reported to users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    /// Linux namespaces (bubblewrap).
    Namespaces,
    /// A container (Docker, Kubernetes pod).
    Container,
    /// A separate host reached over SSH.
    Host,
    /// A plain process on the orchestrator's host: no isolation at all.
    Unisolated,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Runner {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub state: RunnerState,
    pub backend: String,
    pub isolation: Isolation,
    pub execution_profile: Option<String>,
    pub environment_id: Option<String>,
    pub session_id: Option<String>,
    /// Why the runner is `errored`, when it is.
    pub error: Option<String>,
    #[serde(with = "serde_ts")]
    pub created_at: Timestamp,
    #[serde(with = "serde_ts")]
    pub updated_at: Timestamp,
}

impl Runner {
    /// Moves the runner to `to` if the lifecycle allows it.
    pub fn transition(&mut self, to: RunnerState, now: Timestamp) -> Result<(), CoreError> {
        self.state = transition(self.state, to)?;
        self.updated_at = now;
        Ok(())
    }
}
