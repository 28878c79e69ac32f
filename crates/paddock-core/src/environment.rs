//! Environments: sandbox templates. The `config` shape follows the reference (§5);
//! `runbook`, `backend`, `execution_profile`, `env` and `resource_limits` are Paddock's.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::common::{patch_metadata, require_text, validate_metadata, Metadata, Patch};
use crate::ts::{serde_ts, Timestamp};
use crate::CoreError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Networking {
    Unrestricted {},
    Limited {
        allowed_hosts: Vec<String>,
        allow_mcp_servers: bool,
        allow_package_managers: bool,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Packages {
    #[serde(rename = "type")]
    pub kind: String,
    pub apt: Vec<String>,
    pub cargo: Vec<String>,
    pub gem: Vec<String>,
    pub go: Vec<String>,
    pub npm: Vec<String>,
    pub pip: Vec<String>,
}

impl Packages {
    fn is_empty(&self) -> bool {
        [
            &self.apt,
            &self.cargo,
            &self.gem,
            &self.go,
            &self.npm,
            &self.pip,
        ]
        .iter()
        .all(|l| l.is_empty())
    }
}

/// The resolved environment config, as returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EnvConfig {
    Cloud {
        networking: Networking,
        packages: Packages,
    },
    SelfHosted {},
}

impl Default for EnvConfig {
    fn default() -> Self {
        EnvConfig::Cloud {
            networking: Networking::Unrestricted {},
            packages: Packages {
                kind: "packages".into(),
                ..Packages::default()
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum NetworkingParam {
    Unrestricted {},
    Limited {
        #[serde(default)]
        allowed_hosts: Option<Vec<String>>,
        #[serde(default)]
        allow_mcp_servers: Option<bool>,
        #[serde(default)]
        allow_package_managers: Option<bool>,
    },
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackagesParam {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub apt: Option<Vec<String>>,
    #[serde(default)]
    pub cargo: Option<Vec<String>>,
    #[serde(default)]
    pub gem: Option<Vec<String>>,
    #[serde(default)]
    pub go: Option<Vec<String>>,
    #[serde(default)]
    pub npm: Option<Vec<String>>,
    #[serde(default)]
    pub pip: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum EnvConfigParam {
    Cloud {
        #[serde(default)]
        networking: Option<NetworkingParam>,
        #[serde(default)]
        packages: Option<PackagesParam>,
    },
    SelfHosted {},
}

/// Where runners of this environment run (Paddock's field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    Local,
    Docker,
    Ssh,
    Kubernetes,
}

/// Resource limits for runners of this environment (Paddock's field).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceLimits {
    #[serde(default)]
    pub cpu: Option<f64>,
    #[serde(default)]
    pub memory_mb: Option<u64>,
    #[serde(default)]
    pub pids: Option<u64>,
    #[serde(default)]
    pub disk_mb: Option<u64>,
}

impl ResourceLimits {
    fn validate(&self) -> Result<(), CoreError> {
        if let Some(c) = self.cpu {
            if !(c.is_finite() && c > 0.0 && c <= 1024.0) {
                return Err(CoreError::invalid(
                    "resource_limits.cpu",
                    "must be a number of CPUs above 0",
                ));
            }
        }
        for (k, v) in [
            ("memory_mb", self.memory_mb),
            ("pids", self.pids),
            ("disk_mb", self.disk_mb),
        ] {
            if v == Some(0) {
                return Err(CoreError::invalid(
                    format!("resource_limits.{k}"),
                    "must be above 0 (omit it for no limit)",
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub description: Option<String>,
    pub metadata: Metadata,
    pub scope: Option<String>,
    pub config: EnvConfig,
    pub runbook: Option<String>,
    pub backend: Option<BackendKind>,
    pub execution_profile: Option<String>,
    pub env: BTreeMap<String, String>,
    pub resource_limits: ResourceLimits,
    /// Seconds without activity before a runner of this environment is stopped
    /// (0: never; absent: the server's default).
    #[serde(default)]
    pub idle_timeout_secs: Option<u64>,
    #[serde(with = "serde_ts")]
    pub created_at: Timestamp,
    #[serde(with = "serde_ts")]
    pub updated_at: Timestamp,
    #[serde(with = "serde_ts::option")]
    pub archived_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentCreate {
    pub name: String,
    #[serde(default)]
    pub config: Option<EnvConfigParam>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub metadata: Option<Metadata>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub runbook: Option<String>,
    #[serde(default)]
    pub backend: Option<BackendKind>,
    #[serde(default)]
    pub execution_profile: Option<String>,
    #[serde(default)]
    pub env: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub resource_limits: Option<ResourceLimits>,
    #[serde(default)]
    pub idle_timeout_secs: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentUpdate {
    #[serde(default)]
    pub name: Patch<String>,
    #[serde(default)]
    pub config: Patch<EnvConfigParam>,
    #[serde(default)]
    pub description: Patch<String>,
    #[serde(default)]
    pub metadata: Patch<BTreeMap<String, Option<String>>>,
    #[serde(default)]
    pub scope: Patch<String>,
    #[serde(default)]
    pub runbook: Patch<String>,
    #[serde(default)]
    pub backend: Patch<BackendKind>,
    #[serde(default)]
    pub execution_profile: Patch<String>,
    #[serde(default)]
    pub env: Patch<BTreeMap<String, Option<String>>>,
    #[serde(default)]
    pub resource_limits: Patch<ResourceLimits>,
    #[serde(default)]
    pub idle_timeout_secs: Patch<u64>,
}

/// A host in an allowlist: a DNS name or `*.domain`, no scheme, port or path.
pub fn valid_host_pattern(h: &str) -> bool {
    let name = h.strip_prefix("*.").unwrap_or(h);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// A valid environment variable name: letters, digits and `_`, not starting with a digit.
pub fn valid_env_name(k: &str) -> bool {
    let mut chars = k.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn resolve_networking(p: NetworkingParam) -> Result<Networking, CoreError> {
    Ok(match p {
        NetworkingParam::Unrestricted {} => Networking::Unrestricted {},
        NetworkingParam::Limited {
            allowed_hosts,
            allow_mcp_servers,
            allow_package_managers,
        } => {
            let hosts = allowed_hosts.unwrap_or_default();
            for (i, h) in hosts.iter().enumerate() {
                if !valid_host_pattern(h) {
                    return Err(CoreError::invalid(
                        format!("config.networking.allowed_hosts[{i}]"),
                        format!("{h:?} is not a host name or *.domain pattern"),
                    ));
                }
            }
            Networking::Limited {
                allowed_hosts: hosts,
                allow_mcp_servers: allow_mcp_servers.unwrap_or(false),
                allow_package_managers: allow_package_managers.unwrap_or(false),
            }
        }
    })
}

fn merge_packages(cur: &Packages, p: PackagesParam) -> Result<Packages, CoreError> {
    if let Some(k) = &p.kind {
        if k != "packages" {
            return Err(CoreError::invalid(
                "config.packages.type",
                "must be \"packages\"",
            ));
        }
    }
    let pick = |field: &str, new: Option<Vec<String>>, old: &Vec<String>| {
        let list = new.unwrap_or_else(|| old.clone());
        for (i, s) in list.iter().enumerate() {
            if s.trim().is_empty() || s.len() > 512 {
                return Err(CoreError::invalid(
                    format!("config.packages.{field}[{i}]"),
                    "package specs must be 1 to 512 characters",
                ));
            }
        }
        Ok(list)
    };
    Ok(Packages {
        kind: "packages".into(),
        apt: pick("apt", p.apt, &cur.apt)?,
        cargo: pick("cargo", p.cargo, &cur.cargo)?,
        gem: pick("gem", p.gem, &cur.gem)?,
        go: pick("go", p.go, &cur.go)?,
        npm: pick("npm", p.npm, &cur.npm)?,
        pip: pick("pip", p.pip, &cur.pip)?,
    })
}

/// Merges a config param over the current config (omitted sub-fields keep).
fn merge_config(cur: &EnvConfig, p: EnvConfigParam) -> Result<EnvConfig, CoreError> {
    let cfg = match (cur, p) {
        (EnvConfig::SelfHosted {}, EnvConfigParam::SelfHosted {}) => EnvConfig::SelfHosted {},
        (
            EnvConfig::Cloud {
                networking,
                packages,
            },
            EnvConfigParam::Cloud {
                networking: n,
                packages: pk,
            },
        ) => EnvConfig::Cloud {
            networking: match n {
                Some(n) => resolve_networking(n)?,
                None => networking.clone(),
            },
            packages: match pk {
                Some(pk) => merge_packages(packages, pk)?,
                None => packages.clone(),
            },
        },
        _ => {
            return Err(CoreError::invalid_code(
                "config.type",
                "the config type is fixed when the environment is created",
                "invalid_config_type_change",
            ))
        }
    };
    if let EnvConfig::Cloud {
        networking:
            Networking::Limited {
                allow_package_managers: false,
                ..
            },
        packages,
    } = &cfg
    {
        if !packages.is_empty() {
            return Err(CoreError::invalid(
                "config.packages",
                "limited networking needs allow_package_managers: true to install packages",
            ));
        }
    }
    Ok(cfg)
}

fn validate_extras(
    env: &BTreeMap<String, String>,
    limits: &ResourceLimits,
    scope: &Option<String>,
) -> Result<(), CoreError> {
    for (k, v) in env {
        if !valid_env_name(k) {
            return Err(CoreError::invalid(
                format!("env.{k}"),
                "variable names are letters, digits and _ and do not start with a digit",
            ));
        }
        if v.contains('\0') {
            return Err(CoreError::invalid(
                format!("env.{k}"),
                "values may not contain NUL",
            ));
        }
    }
    if let Some(s) = scope {
        if s != "organization" && s != "account" {
            return Err(CoreError::invalid(
                "scope",
                "expected \"organization\" or \"account\"",
            ));
        }
    }
    limits.validate()
}

impl EnvironmentCreate {
    pub fn into_environment(self, id: String, now: Timestamp) -> Result<Environment, CoreError> {
        require_text("name", &self.name, 256)?;
        let metadata = self.metadata.unwrap_or_default();
        validate_metadata("metadata", &metadata)?;
        let config = match self.config {
            None => EnvConfig::default(),
            Some(EnvConfigParam::SelfHosted {}) => EnvConfig::SelfHosted {},
            Some(p) => merge_config(&EnvConfig::default(), p)?,
        };
        let env = self.env.unwrap_or_default();
        let resource_limits = self.resource_limits.unwrap_or_default();
        validate_extras(&env, &resource_limits, &self.scope)?;
        Ok(Environment {
            id,
            kind: "environment".into(),
            name: self.name,
            description: self.description,
            metadata,
            scope: self.scope,
            config,
            runbook: self.runbook,
            backend: self.backend,
            execution_profile: self.execution_profile,
            env,
            resource_limits,
            idle_timeout_secs: self.idle_timeout_secs,
            created_at: now,
            updated_at: now,
            archived_at: None,
        })
    }
}

fn opt_patch<T: Clone>(p: Patch<T>, cur: &Option<T>) -> Option<T> {
    match p {
        Patch::Missing => cur.clone(),
        Patch::Null => None,
        Patch::Value(v) => Some(v),
    }
}

impl Environment {
    /// Applies an update; `Ok(None)` when nothing changes.
    pub fn apply_update(
        &self,
        u: EnvironmentUpdate,
        now: Timestamp,
    ) -> Result<Option<Environment>, CoreError> {
        if self.archived_at.is_some() {
            return Err(CoreError::invalid_code(
                "environment_id",
                "the environment is archived and cannot be changed",
                "environment_archived",
            ));
        }
        let mut next = self.clone();
        match u.name {
            Patch::Missing => {}
            Patch::Null => return Err(CoreError::invalid("name", "cannot be cleared")),
            Patch::Value(n) => {
                require_text("name", &n, 256)?;
                next.name = n;
            }
        }
        match u.config {
            Patch::Missing => {}
            Patch::Null => {
                next.config = match self.config {
                    EnvConfig::SelfHosted {} => EnvConfig::SelfHosted {},
                    EnvConfig::Cloud { .. } => EnvConfig::default(),
                }
            }
            Patch::Value(p) => next.config = merge_config(&self.config, p)?,
        }
        next.description = opt_patch(u.description, &self.description);
        if let Patch::Value(p) = u.metadata {
            next.metadata = patch_metadata("metadata", &self.metadata, &p, true)?;
        }
        next.scope = opt_patch(u.scope, &self.scope);
        next.runbook = opt_patch(u.runbook, &self.runbook);
        next.backend = opt_patch(u.backend, &self.backend);
        next.execution_profile = opt_patch(u.execution_profile, &self.execution_profile);
        match u.env {
            Patch::Missing => {}
            Patch::Null => next.env.clear(),
            Patch::Value(p) => {
                for (k, v) in p {
                    match v {
                        Some(v) => next.env.insert(k, v),
                        None => next.env.remove(&k),
                    };
                }
            }
        }
        match u.resource_limits {
            Patch::Missing => {}
            Patch::Null => next.resource_limits = ResourceLimits::default(),
            Patch::Value(l) => next.resource_limits = l,
        }
        next.idle_timeout_secs = opt_patch(u.idle_timeout_secs, &self.idle_timeout_secs);
        validate_extras(&next.env, &next.resource_limits, &next.scope)?;
        if next == *self {
            return Ok(None);
        }
        next.updated_at = now;
        Ok(Some(next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::parse_json;
    use crate::ts::now;

    fn create(json: &str) -> Result<Environment, CoreError> {
        parse_json::<EnvironmentCreate>(json.as_bytes())?.into_environment("env_x".into(), now())
    }

    #[test]
    fn configs_resolve_with_every_list_present() {
        let e = create(r#"{"name":"e"}"#).expect("valid");
        let v = serde_json::to_value(&e.config).expect("serializes");
        assert_eq!(v["type"], "cloud");
        assert_eq!(v["networking"]["type"], "unrestricted");
        assert_eq!(v["packages"]["pip"], serde_json::json!([]));
        let e = create(
            r#"{"name":"e","config":{"type":"cloud","networking":{"type":"limited","allowed_hosts":["api.example.com","*.pypi.org"],"allow_package_managers":true},"packages":{"pip":["requests==2.32.0"]}}}"#,
        )
        .expect("valid");
        let v = serde_json::to_value(&e.config).expect("serializes");
        assert_eq!(v["networking"]["allow_mcp_servers"], false);
        assert_eq!(v["packages"]["pip"][0], "requests==2.32.0");
    }

    #[test]
    fn bad_configs_name_the_field() {
        let e = create(r#"{"name":"e","config":{"type":"cloud","networking":{"type":"limited","allowed_hosts":["https://x.com/"]}}}"#).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("config.networking.allowed_hosts[0]"),
            "{e}"
        );
        let e = create(r#"{"name":"e","config":{"type":"cloud","networking":{"type":"limited"},"packages":{"apt":["git"]}}}"#).unwrap_err();
        assert!(e.to_string().starts_with("config.packages"), "{e}");
        let e = create(r#"{"name":"e","env":{"1BAD":"x"}}"#).unwrap_err();
        assert!(e.to_string().starts_with("env.1BAD"), "{e}");
        let e = create(r#"{"name":"e","resource_limits":{"cpu":0}}"#).unwrap_err();
        assert!(e.to_string().starts_with("resource_limits.cpu"), "{e}");
    }

    #[test]
    fn updates_merge_and_refuse_type_changes() {
        let e = create(r#"{"name":"e","config":{"type":"cloud","packages":{"pip":["a"]}},"metadata":{"a":"1","b":"2"}}"#)
            .expect("valid");
        let u: EnvironmentUpdate = parse_json(
            br#"{"config":{"type":"cloud","networking":{"type":"limited","allow_package_managers":true}},"metadata":{"a":"","b":null}}"#,
        )
        .expect("parses");
        let n = e.apply_update(u, now()).expect("valid").expect("changed");
        let v = serde_json::to_value(&n.config).expect("serializes");
        assert_eq!(v["packages"]["pip"][0], "a", "omitted packages are kept");
        assert_eq!(v["networking"]["type"], "limited");
        assert!(n.metadata.is_empty());
        let u: EnvironmentUpdate =
            parse_json(br#"{"config":{"type":"self_hosted"}}"#).expect("parses");
        let err = e.apply_update(u, now()).unwrap_err();
        assert!(matches!(
            err,
            CoreError::Invalid {
                code: Some("invalid_config_type_change"),
                ..
            }
        ));
        let same: EnvironmentUpdate = parse_json(br#"{"name":"e"}"#).expect("parses");
        assert_eq!(e.apply_update(same, now()).expect("valid"), None);
    }
}
