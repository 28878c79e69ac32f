//! Runners: one live sandbox each. In this crate only the record and its lifecycle;
//! backends (mechanism) live elsewhere.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::environment::ResourceLimits;
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

/// What a runner may reach on the network, weakest to strongest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NetworkPolicy {
    /// Loopback only.
    #[default]
    None,
    /// Only the listed hosts (and `*.domain` patterns), through an egress proxy.
    Limited {
        allowed_hosts: Vec<String>,
    },
    Unrestricted,
}

impl NetworkPolicy {
    pub fn name(&self) -> &'static str {
        match self {
            NetworkPolicy::None => "none",
            NetworkPolicy::Limited { .. } => "limited",
            NetworkPolicy::Unrestricted => "unrestricted",
        }
    }

    fn rank(&self) -> u8 {
        match self {
            NetworkPolicy::None => 0,
            NetworkPolicy::Limited { .. } => 1,
            NetworkPolicy::Unrestricted => 2,
        }
    }

    /// The stricter of two policies (an operator's profile caps what an environment asks).
    /// Two `limited` policies keep the hosts allowed by both.
    pub fn narrowest(&self, other: &NetworkPolicy) -> NetworkPolicy {
        match (self, other) {
            (
                NetworkPolicy::Limited { allowed_hosts: a },
                NetworkPolicy::Limited { allowed_hosts: b },
            ) => NetworkPolicy::Limited {
                allowed_hosts: a.iter().filter(|h| b.contains(h)).cloned().collect(),
            },
            _ if self.rank() <= other.rank() => self.clone(),
            _ => other.clone(),
        }
    }
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
    /// Image or runbook (backends without images ignore it).
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub network: NetworkPolicy,
    /// The limits asked for.
    #[serde(default)]
    pub limits: ResourceLimits,
    /// How each limit is actually enforced on the backend (`null`: not enforced).
    #[serde(default)]
    pub enforced: serde_json::Value,
    /// The system-call filter asked for (its profile's; `enforced.seccomp` says what
    /// the backend applies).
    #[serde(default)]
    pub seccomp: crate::profile::SeccompLevel,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Why the runner last changed state when no user asked for it (idle timeout,
    /// budget, TTL, pruning, a provisioning timeout, …), or why it errored.
    #[serde(default)]
    pub reason: Option<String>,
    /// When it last entered `running`.
    #[serde(default, with = "serde_ts::option")]
    pub started_at: Option<Timestamp>,
    /// The last exec or file operation.
    #[serde(default, with = "serde_ts::option")]
    pub last_activity_at: Option<Timestamp>,
    /// Seconds without activity before it is stopped (`0`: never; absent: the default).
    #[serde(default)]
    pub idle_timeout_secs: Option<u64>,
    /// Stop the runner once its session's cost reaches this (Paddock's per-runner budget).
    #[serde(default)]
    pub budget: Option<crate::common::Money>,
    /// Settings changed while running that take effect at the next start.
    #[serde(default)]
    pub pending_restart: Vec<String>,
    /// Provisioned ahead of demand and waiting in its profile's warm pool.
    #[serde(default)]
    pub warm: bool,
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
        if to == RunnerState::Running {
            self.started_at = Some(now);
            self.last_activity_at = Some(now);
            self.pending_restart.clear();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_narrowest_network_policy_wins() {
        let limited = |h: &[&str]| NetworkPolicy::Limited {
            allowed_hosts: h.iter().map(|s| s.to_string()).collect(),
        };
        assert_eq!(
            NetworkPolicy::Unrestricted.narrowest(&NetworkPolicy::None),
            NetworkPolicy::None
        );
        assert_eq!(
            NetworkPolicy::None.narrowest(&limited(&["a"])),
            NetworkPolicy::None
        );
        assert_eq!(
            NetworkPolicy::Unrestricted.narrowest(&limited(&["a"])),
            limited(&["a"])
        );
        assert_eq!(
            limited(&["a", "b"]).narrowest(&limited(&["b", "c"])),
            limited(&["b"])
        );
    }
}
