//! Execution profiles: an operator's policy for runners, as data — which backend,
//! image, limits, network, lifetime and agents, and how many runners at once.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::environment::{valid_host_pattern, BackendKind, ResourceLimits};
use crate::runner::NetworkPolicy;
use crate::CoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    None,
    Limited,
    Unrestricted,
}

/// The system-call filter of a profile's runners (the policy: crate `paddock-seccomp`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeccompLevel {
    #[default]
    Default,
    Strict,
    /// No filter of Paddock's (a warning at start and in `GET /v1/profiles`).
    Unconfined,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecutionProfile {
    pub backend: BackendKind,
    /// Image or runbook for backends that use one.
    pub runbook: Option<String>,
    pub cpu: Option<f64>,
    pub memory_mb: Option<u64>,
    pub pids: Option<u64>,
    pub disk_mb: Option<u64>,
    /// The most network a runner of this profile may have.
    pub network: NetworkMode,
    /// Hosts for `network = "limited"`.
    pub allowed_hosts: Vec<String>,
    /// A runner is stopped this long after it started (0 or absent: no limit).
    pub ttl_secs: Option<u64>,
    /// Agents (ids or names) allowed to use this profile; empty allows all.
    pub allowed_agents: Vec<String>,
    /// Most runners of this profile active at once (absent: no limit).
    pub max_runners: Option<u32>,
    /// Runners kept provisioned and idle, ready to be claimed (0: none).
    pub warm_pool: u32,
    /// The system calls its runners may not make.
    pub seccomp: SeccompLevel,
}

impl Default for ExecutionProfile {
    fn default() -> Self {
        ExecutionProfile {
            backend: BackendKind::Local,
            runbook: None,
            cpu: None,
            memory_mb: Some(2048),
            pids: Some(512),
            disk_mb: None,
            network: NetworkMode::None,
            allowed_hosts: vec![],
            ttl_secs: None,
            allowed_agents: vec![],
            max_runners: None,
            warm_pool: 0,
            seccomp: SeccompLevel::Default,
        }
    }
}

impl ExecutionProfile {
    pub fn limits(&self) -> ResourceLimits {
        ResourceLimits {
            cpu: self.cpu,
            memory_mb: self.memory_mb,
            pids: self.pids,
            disk_mb: self.disk_mb,
        }
    }

    pub fn network_policy(&self) -> NetworkPolicy {
        match self.network {
            NetworkMode::None => NetworkPolicy::None,
            NetworkMode::Unrestricted => NetworkPolicy::Unrestricted,
            NetworkMode::Limited => NetworkPolicy::Limited {
                allowed_hosts: self.allowed_hosts.clone(),
            },
        }
    }

    /// Whether an agent (by id or name) may use this profile.
    pub fn allows_agent(&self, id: &str, name: &str) -> bool {
        self.allowed_agents.is_empty() || self.allowed_agents.iter().any(|a| a == id || a == name)
    }

    pub fn validate(&self, name: &str) -> Result<(), CoreError> {
        let f = |k: &str| format!("profiles.{name}.{k}");
        if let Some(c) = self.cpu {
            if !(c.is_finite() && c > 0.0) {
                return Err(CoreError::invalid(f("cpu"), "must be above 0"));
            }
        }
        for (k, v) in [
            ("memory_mb", self.memory_mb),
            ("pids", self.pids),
            ("disk_mb", self.disk_mb),
        ] {
            if v == Some(0) {
                return Err(CoreError::invalid(
                    f(k),
                    "must be above 0 (leave it out for no limit)",
                ));
            }
        }
        if self.max_runners == Some(0) {
            return Err(CoreError::invalid(f("max_runners"), "must be above 0"));
        }
        if self.max_runners.is_some_and(|m| self.warm_pool >= m) {
            return Err(CoreError::invalid(
                f("warm_pool"),
                "must be below max_runners (the last slot is kept for demand)",
            ));
        }
        match self.network {
            NetworkMode::Limited if self.allowed_hosts.is_empty() => {
                return Err(CoreError::invalid(
                    f("allowed_hosts"),
                    "network = \"limited\" needs at least one allowed host",
                ))
            }
            NetworkMode::Limited => {}
            _ if !self.allowed_hosts.is_empty() => {
                return Err(CoreError::invalid(
                    f("allowed_hosts"),
                    "only meaningful with network = \"limited\"",
                ))
            }
            _ => {}
        }
        for (i, h) in self.allowed_hosts.iter().enumerate() {
            if !valid_host_pattern(h) {
                return Err(CoreError::invalid(
                    format!("{}[{i}]", f("allowed_hosts")),
                    format!("{h:?} is not a host name or *.domain pattern"),
                ));
            }
        }
        Ok(())
    }
}

/// The configured profiles and which one is the default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profiles {
    pub default: String,
    pub profiles: BTreeMap<String, ExecutionProfile>,
}

impl Default for Profiles {
    fn default() -> Self {
        Profiles {
            default: "default".into(),
            profiles: [("default".to_string(), ExecutionProfile::default())].into(),
        }
    }
}

impl Profiles {
    pub fn validate(&self) -> Result<(), CoreError> {
        if !self.profiles.contains_key(&self.default) {
            return Err(CoreError::invalid(
                "default_profile",
                format!("no profile is named {:?}", self.default),
            ));
        }
        for (name, p) in &self.profiles {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(CoreError::invalid(
                    format!("profiles.{name}"),
                    "profile names are letters, digits, - and _",
                ));
            }
            p.validate(name)?;
        }
        Ok(())
    }

    /// The profile named, or the default; an unknown name is a 400 on `field`.
    pub fn resolve(
        &self,
        field: &str,
        name: Option<&str>,
    ) -> Result<(String, &ExecutionProfile), CoreError> {
        let name = name.unwrap_or(&self.default);
        self.profiles
            .get(name)
            .map(|p| (name.to_string(), p))
            .ok_or_else(|| {
                CoreError::invalid(
                    field,
                    format!(
                        "no execution profile is named {name:?}; configured: {:?}",
                        self.profiles.keys().collect::<Vec<_>>()
                    ),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_validate_with_field_paths() {
        assert!(Profiles::default().validate().is_ok());
        let p = Profiles {
            default: "fast".into(),
            ..Profiles::default()
        };
        assert!(p
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("default_profile"));
        let mut p = Profiles::default();
        p.profiles.insert(
            "web".into(),
            ExecutionProfile {
                network: NetworkMode::Limited,
                ..ExecutionProfile::default()
            },
        );
        assert!(p
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("profiles.web.allowed_hosts"));
        let mut p = Profiles::default();
        p.profiles.insert(
            "x".into(),
            ExecutionProfile {
                pids: Some(0),
                ..ExecutionProfile::default()
            },
        );
        assert!(p
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("profiles.x.pids"));
        let e = Profiles::default()
            .resolve("execution_profile", Some("nope"))
            .unwrap_err();
        assert!(e.to_string().starts_with("execution_profile"));
    }

    #[test]
    fn agents_are_allowed_by_id_or_name() {
        let open = ExecutionProfile::default();
        assert!(open.allows_agent("agent_1", "a"));
        let closed = ExecutionProfile {
            allowed_agents: vec!["coder".into()],
            ..ExecutionProfile::default()
        };
        assert!(closed.allows_agent("agent_1", "coder"));
        assert!(!closed.allows_agent("agent_1", "writer"));
    }
}
