//! Agents: reusable, versioned configuration. Every change writes an immutable version.
//! Wire shapes follow the reference (§3, §4); `harness`, `quotas` and `execution_profile`
//! are Paddock's additive fields.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

use crate::common::{patch_metadata, require_text, validate_metadata, Metadata, Money, Patch};
use crate::ts::{serde_ts, Timestamp};
use crate::CoreError;

// ---------------------------------------------------------------- model

const EFFORTS: [&str; 5] = ["low", "medium", "high", "xhigh", "max"];

/// `model` in a request: a bare id or a config object.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelParam {
    Id(String),
    Config(ModelConfigParam),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfigParam {
    pub id: String,
    #[serde(default)]
    pub effort: Option<Value>,
    #[serde(default)]
    pub inference_geo: Option<String>,
    #[serde(default)]
    pub speed: Option<String>,
}

impl<'de> Deserialize<'de> for ModelParam {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match Value::deserialize(d)? {
            Value::String(s) => Ok(ModelParam::Id(s)),
            v @ Value::Object(_) => serde_json::from_value(v)
                .map(ModelParam::Config)
                .map_err(D::Error::custom),
            _ => Err(D::Error::custom(
                "expected a model id string or an object {id, effort?, inference_geo?, speed?}",
            )),
        }
    }
}

/// The resolved model config, always in object form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub id: String,
    pub effort: Option<Effort>,
    pub inference_geo: Option<String>,
    pub speed: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Effort {
    #[serde(rename = "type")]
    pub level: String,
}

impl ModelParam {
    pub fn resolve(self, field: &str) -> Result<ModelConfig, CoreError> {
        let cfg = match self {
            ModelParam::Id(id) => ModelConfigParam {
                id,
                effort: None,
                inference_geo: None,
                speed: None,
            },
            ModelParam::Config(c) => c,
        };
        require_text(&format!("{field}.id"), &cfg.id, 256)?;
        let effort = match cfg.effort {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(Value::Object(o)) => match o.get("type") {
                Some(Value::String(s)) if o.len() == 1 => Some(s.clone()),
                _ => {
                    return Err(CoreError::invalid(
                        format!("{field}.effort"),
                        "expected a level string or {\"type\": level}",
                    ))
                }
            },
            Some(_) => {
                return Err(CoreError::invalid(
                    format!("{field}.effort"),
                    "expected a level string or {\"type\": level}",
                ))
            }
        };
        if let Some(level) = &effort {
            if !EFFORTS.contains(&level.as_str()) {
                return Err(CoreError::invalid(
                    format!("{field}.effort"),
                    format!("unknown level {level:?}; expected one of {EFFORTS:?}"),
                ));
            }
        }
        let speed = cfg.speed.unwrap_or_else(|| "standard".to_string());
        if speed != "standard" && speed != "fast" {
            return Err(CoreError::invalid(
                format!("{field}.speed"),
                format!("expected \"standard\" or \"fast\", got {speed:?}"),
            ));
        }
        Ok(ModelConfig {
            id: cfg.id,
            effort: effort.map(|level| Effort { level }),
            inference_geo: cfg.inference_geo,
            speed,
        })
    }
}

// ---------------------------------------------------------------- tools

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuiltinTool {
    Bash,
    Edit,
    Read,
    Write,
    Glob,
    Grep,
    WebFetch,
    WebSearch,
}

impl BuiltinTool {
    pub const ALL: [BuiltinTool; 8] = [
        BuiltinTool::Bash,
        BuiltinTool::Edit,
        BuiltinTool::Read,
        BuiltinTool::Write,
        BuiltinTool::Glob,
        BuiltinTool::Grep,
        BuiltinTool::WebFetch,
        BuiltinTool::WebSearch,
    ];

    /// The wire name (`bash`, `web_fetch`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            BuiltinTool::Bash => "bash",
            BuiltinTool::Edit => "edit",
            BuiltinTool::Read => "read",
            BuiltinTool::Write => "write",
            BuiltinTool::Glob => "glob",
            BuiltinTool::Grep => "grep",
            BuiltinTool::WebFetch => "web_fetch",
            BuiltinTool::WebSearch => "web_search",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum PermissionPolicy {
    AlwaysAllow,
    AlwaysAsk,
    Auto,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolDefaults {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub permission_policy: Option<PermissionPolicy>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuiltinToolConfig {
    pub name: BuiltinTool,
    #[serde(rename = "type", default)]
    pub kind: Option<BuiltinTool>,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub permission_policy: Option<PermissionPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_domains: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked_domains: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_content_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_sources: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_location: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpToolConfig {
    pub name: String,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub permission_policy: Option<PermissionPolicy>,
}

/// One entry of `tools[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum Tool {
    #[serde(rename = "agent_toolset_20260401")]
    AgentToolset {
        #[serde(default)]
        default_config: Option<ToolDefaults>,
        #[serde(default)]
        configs: Option<Vec<BuiltinToolConfig>>,
    },
    #[serde(rename = "mcp_toolset")]
    McpToolset {
        mcp_server_name: String,
        #[serde(default)]
        default_config: Option<ToolDefaults>,
        #[serde(default)]
        configs: Option<Vec<McpToolConfig>>,
    },
    #[serde(rename = "custom")]
    Custom {
        name: String,
        description: String,
        input_schema: Value,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum McpServer {
    Url { name: String, url: String },
}

impl McpServer {
    pub fn name(&self) -> &str {
        match self {
            McpServer::Url { name, .. } => name,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Skill {
    Anthropic {
        skill_id: String,
        #[serde(default)]
        version: Option<String>,
    },
    Custom {
        skill_id: String,
        #[serde(default)]
        version: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ExecutionIdentity {
    ServiceAccount {},
    AwsRole { role_arn: String },
}

impl Default for ExecutionIdentity {
    fn default() -> Self {
        ExecutionIdentity::ServiceAccount {}
    }
}

pub use crate::harness::Harness;

/// Per-session limits enforced by the orchestrator (Paddock's field).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quotas {
    #[serde(default)]
    pub max_tokens: Option<u64>,
    #[serde(default)]
    pub max_turns: Option<u32>,
    #[serde(default)]
    pub max_wall_seconds: Option<u64>,
    #[serde(default)]
    pub max_list_cost: Option<Money>,
}

/// Paddock's shorthands for an `agent_toolset_20260401` config (Paddock's field).
///
/// | profile | built-in tools |
/// |---|---|
/// | `messaging` | none |
/// | `standard` | `read`, `write`, `edit`, `glob`, `grep` (always allowed) and `bash` under `auto` (git and read-only commands run, risky ones ask, destructive ones are denied) |
/// | `full` | every built-in tool Paddock runs (`web_search` has no backend and stays disabled), always allowed; `web_fetch` only where the runner's network allows it |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolProfile {
    Messaging,
    Standard,
    Full,
}

impl ToolProfile {
    /// The toolset entry the profile stands for (`None` for `messaging`).
    pub fn toolset(self) -> Option<Tool> {
        let cfg = |name: BuiltinTool, enabled: bool, policy: PermissionPolicy| BuiltinToolConfig {
            name,
            kind: None,
            enabled: Some(enabled),
            permission_policy: Some(policy),
            allowed_domains: None,
            blocked_domains: None,
            max_content_tokens: None,
            url_sources: None,
            user_location: None,
        };
        use BuiltinTool::*;
        use PermissionPolicy::*;
        match self {
            ToolProfile::Messaging => None,
            ToolProfile::Standard => Some(Tool::AgentToolset {
                default_config: Some(ToolDefaults {
                    enabled: Some(false),
                    permission_policy: Some(AlwaysAllow),
                }),
                configs: Some(vec![
                    cfg(Read, true, AlwaysAllow),
                    cfg(Write, true, AlwaysAllow),
                    cfg(Edit, true, AlwaysAllow),
                    cfg(Glob, true, AlwaysAllow),
                    cfg(Grep, true, AlwaysAllow),
                    cfg(Bash, true, Auto),
                ]),
            }),
            ToolProfile::Full => Some(Tool::AgentToolset {
                default_config: Some(ToolDefaults {
                    enabled: Some(true),
                    permission_policy: Some(AlwaysAllow),
                }),
                configs: Some(vec![cfg(WebSearch, false, AlwaysAllow)]),
            }),
        }
    }
}

/// Expands `tool_profile` into `tools` (an error when both name a built-in toolset).
fn apply_tool_profile(
    profile: Option<ToolProfile>,
    mut tools: Vec<Tool>,
) -> Result<Vec<Tool>, CoreError> {
    let Some(p) = profile else {
        return Ok(tools);
    };
    if tools.iter().any(|t| matches!(t, Tool::AgentToolset { .. })) {
        return Err(CoreError::invalid(
            "tool_profile",
            "give either tool_profile or an agent_toolset_20260401 entry in tools, not both",
        ));
    }
    if let Some(t) = p.toolset() {
        tools.insert(0, t);
    }
    Ok(tools)
}

fn valid_tool_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Validates `tools` and `mcp_servers` together and returns them in resolved form.
pub fn resolve_tools(tools: Vec<Tool>, mcp_servers: &[McpServer]) -> Result<Vec<Tool>, CoreError> {
    if tools.len() > 256 {
        return Err(CoreError::invalid(
            "tools",
            format!("at most 256 tools are allowed, got {}", tools.len()),
        ));
    }
    let server_names: BTreeSet<&str> = mcp_servers.iter().map(McpServer::name).collect();
    let mut seen_toolset = false;
    let mut seen_mcp = BTreeSet::new();
    let mut seen_custom = BTreeSet::new();
    let mut out = Vec::with_capacity(tools.len());
    for (i, tool) in tools.into_iter().enumerate() {
        let f = format!("tools[{i}]");
        out.push(match tool {
            Tool::AgentToolset {
                default_config,
                configs,
            } => {
                if std::mem::replace(&mut seen_toolset, true) {
                    return Err(CoreError::invalid(
                        f,
                        "agent_toolset_20260401 may appear only once",
                    ));
                }
                let d = default_config.unwrap_or(ToolDefaults {
                    enabled: None,
                    permission_policy: None,
                });
                let enabled = d.enabled.unwrap_or(true);
                let policy = d.permission_policy.unwrap_or(PermissionPolicy::AlwaysAllow);
                let mut overrides: BTreeMap<BuiltinTool, BuiltinToolConfig> = BTreeMap::new();
                for (j, c) in configs.unwrap_or_default().into_iter().enumerate() {
                    let cf = format!("{f}.configs[{j}]");
                    if c.kind.is_some_and(|k| k != c.name) {
                        return Err(CoreError::invalid(
                            format!("{cf}.type"),
                            "must equal `name` when given",
                        ));
                    }
                    for (key, list) in [
                        ("allowed_domains", &c.allowed_domains),
                        ("blocked_domains", &c.blocked_domains),
                    ] {
                        if let Some(l) = list {
                            if l.is_empty() || l.len() > 64 {
                                return Err(CoreError::invalid(
                                    format!("{cf}.{key}"),
                                    "must hold 1 to 64 domains when given",
                                ));
                            }
                        }
                    }
                    if overrides.insert(c.name, c.clone()).is_some() {
                        return Err(CoreError::invalid(
                            format!("{cf}.name"),
                            "each tool may be configured only once",
                        ));
                    }
                }
                let configs = BuiltinTool::ALL
                    .into_iter()
                    .map(|name| {
                        let o = overrides.remove(&name);
                        let mut c = o.unwrap_or(BuiltinToolConfig {
                            name,
                            kind: None,
                            enabled: None,
                            permission_policy: None,
                            allowed_domains: None,
                            blocked_domains: None,
                            max_content_tokens: None,
                            url_sources: None,
                            user_location: None,
                        });
                        c.kind = Some(name);
                        c.enabled = Some(c.enabled.unwrap_or(enabled));
                        c.permission_policy = Some(c.permission_policy.unwrap_or(policy));
                        c
                    })
                    .collect();
                Tool::AgentToolset {
                    default_config: Some(ToolDefaults {
                        enabled: Some(enabled),
                        permission_policy: Some(policy),
                    }),
                    configs: Some(configs),
                }
            }
            Tool::McpToolset {
                mcp_server_name,
                default_config,
                configs,
            } => {
                if !server_names.contains(mcp_server_name.as_str()) {
                    return Err(CoreError::invalid(
                        format!("{f}.mcp_server_name"),
                        format!("no entry of mcp_servers is named {mcp_server_name:?}"),
                    ));
                }
                if !seen_mcp.insert(mcp_server_name.clone()) {
                    return Err(CoreError::invalid(
                        format!("{f}.mcp_server_name"),
                        "each MCP server may have only one mcp_toolset",
                    ));
                }
                let d = default_config.unwrap_or(ToolDefaults {
                    enabled: None,
                    permission_policy: None,
                });
                let enabled = d.enabled.unwrap_or(true);
                let policy = d.permission_policy.unwrap_or(PermissionPolicy::AlwaysAsk);
                let mut names = BTreeSet::new();
                let mut resolved = Vec::new();
                for (j, c) in configs.unwrap_or_default().into_iter().enumerate() {
                    require_text(&format!("{f}.configs[{j}].name"), &c.name, 256)?;
                    if !names.insert(c.name.clone()) {
                        return Err(CoreError::invalid(
                            format!("{f}.configs[{j}].name"),
                            "each tool may be configured only once",
                        ));
                    }
                    resolved.push(McpToolConfig {
                        name: c.name,
                        enabled: Some(c.enabled.unwrap_or(enabled)),
                        permission_policy: Some(c.permission_policy.unwrap_or(policy)),
                    });
                }
                Tool::McpToolset {
                    mcp_server_name,
                    default_config: Some(ToolDefaults {
                        enabled: Some(enabled),
                        permission_policy: Some(policy),
                    }),
                    configs: Some(resolved),
                }
            }
            Tool::Custom {
                name,
                description,
                input_schema,
            } => {
                if !valid_tool_name(&name) {
                    return Err(CoreError::invalid(
                        format!("{f}.name"),
                        "must be 1 to 128 characters of [A-Za-z0-9_-]",
                    ));
                }
                if !seen_custom.insert(name.clone()) {
                    return Err(CoreError::invalid(
                        format!("{f}.name"),
                        format!("a custom tool named {name:?} appears twice"),
                    ));
                }
                require_text(&format!("{f}.description"), &description, 10_000)?;
                if input_schema.get("type").and_then(Value::as_str) != Some("object") {
                    return Err(CoreError::invalid(
                        format!("{f}.input_schema.type"),
                        "must be \"object\"",
                    ));
                }
                Tool::Custom {
                    name,
                    description,
                    input_schema,
                }
            }
        });
    }
    for name in &server_names {
        if !seen_mcp.contains(*name) {
            return Err(CoreError::invalid(
                "mcp_servers",
                format!("MCP server {name:?} is not referenced by any mcp_toolset in tools"),
            ));
        }
    }
    Ok(out)
}

pub fn validate_mcp_servers(servers: &[McpServer]) -> Result<(), CoreError> {
    if servers.len() > 20 {
        return Err(CoreError::invalid(
            "mcp_servers",
            format!("at most 20 servers are allowed, got {}", servers.len()),
        ));
    }
    let mut names = BTreeSet::new();
    for (i, s) in servers.iter().enumerate() {
        let McpServer::Url { name, url } = s;
        require_text(&format!("mcp_servers[{i}].name"), name, 255)?;
        if !names.insert(name.as_str()) {
            return Err(CoreError::invalid(
                format!("mcp_servers[{i}].name"),
                format!("duplicate name {name:?}"),
            ));
        }
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(CoreError::invalid(
                format!("mcp_servers[{i}].url"),
                "must be an http:// or https:// URL",
            ));
        }
    }
    Ok(())
}

pub fn resolve_skills(skills: Vec<Skill>) -> Result<Vec<Skill>, CoreError> {
    skills
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let (id, v) = match &s {
                Skill::Anthropic { skill_id, version } | Skill::Custom { skill_id, version } => {
                    (skill_id, version)
                }
            };
            require_text(&format!("skills[{i}].skill_id"), id, 256)?;
            if matches!(s, Skill::Custom { .. }) && !id.starts_with("skill_") {
                return Err(CoreError::invalid(
                    format!("skills[{i}].skill_id"),
                    "custom skill ids start with `skill_`",
                ));
            }
            let version = Some(v.clone().unwrap_or_else(|| "latest".to_string()));
            Ok(match s {
                Skill::Anthropic { skill_id, .. } => Skill::Anthropic { skill_id, version },
                Skill::Custom { skill_id, .. } => Skill::Custom { skill_id, version },
            })
        })
        .collect()
}

fn validate_multiagent(v: &Value) -> Result<(), CoreError> {
    match v.get("type").and_then(Value::as_str) {
        Some("coordinator") | Some("multiagent_20261001") => Ok(()),
        _ => Err(CoreError::invalid(
            "multiagent.type",
            "expected \"coordinator\" or \"multiagent_20261001\"",
        )),
    }
}

fn validate_identity(e: &ExecutionIdentity) -> Result<(), CoreError> {
    if let ExecutionIdentity::AwsRole { role_arn } = e {
        require_text("execution_identity.role_arn", role_arn, 2048)?;
    }
    Ok(())
}

fn validate_quotas(q: &Quotas) -> Result<(), CoreError> {
    if let Some(m) = &q.max_list_cost {
        m.validate("quotas.max_list_cost")?;
    }
    Ok(())
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

// ---------------------------------------------------------------- agent

/// An agent version as stored and returned (`type: "agent"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub version: u32,
    pub description: Option<String>,
    pub system: Option<String>,
    pub model: ModelConfig,
    pub tools: Vec<Tool>,
    pub mcp_servers: Vec<McpServer>,
    pub skills: Vec<Skill>,
    pub metadata: Metadata,
    pub execution_identity: ExecutionIdentity,
    pub multiagent: Option<Value>,
    pub harness: Harness,
    /// The shorthand `tools` was expanded from, if any.
    #[serde(default)]
    pub tool_profile: Option<ToolProfile>,
    pub quotas: Quotas,
    pub execution_profile: Option<String>,
    #[serde(with = "serde_ts")]
    pub created_at: Timestamp,
    #[serde(with = "serde_ts")]
    pub updated_at: Timestamp,
    #[serde(with = "serde_ts::option")]
    pub archived_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentCreate {
    pub model: ModelParam,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub system: Option<String>,
    #[serde(default)]
    pub tools: Option<Vec<Tool>>,
    #[serde(default)]
    pub mcp_servers: Option<Vec<McpServer>>,
    #[serde(default)]
    pub skills: Option<Vec<Skill>>,
    #[serde(default)]
    pub metadata: Option<Metadata>,
    #[serde(default)]
    pub execution_identity: Option<ExecutionIdentity>,
    #[serde(default)]
    pub multiagent: Option<Value>,
    #[serde(default)]
    pub harness: Option<Harness>,
    #[serde(default)]
    pub tool_profile: Option<ToolProfile>,
    #[serde(default)]
    pub quotas: Option<Quotas>,
    #[serde(default)]
    pub execution_profile: Option<String>,
}

impl AgentCreate {
    pub fn into_agent(self, id: String, now: Timestamp) -> Result<Agent, CoreError> {
        require_text("name", &self.name, 256)?;
        let model = self.model.resolve("model")?;
        let mcp_servers = self.mcp_servers.unwrap_or_default();
        validate_mcp_servers(&mcp_servers)?;
        let tools = apply_tool_profile(self.tool_profile, self.tools.unwrap_or_default())?;
        let tools = resolve_tools(tools, &mcp_servers)?;
        let skills = resolve_skills(self.skills.unwrap_or_default())?;
        let metadata = self.metadata.unwrap_or_default();
        validate_metadata("metadata", &metadata)?;
        let execution_identity = self.execution_identity.unwrap_or_default();
        validate_identity(&execution_identity)?;
        if let Some(m) = &self.multiagent {
            validate_multiagent(m)?;
        }
        let quotas = self.quotas.unwrap_or_default();
        validate_quotas(&quotas)?;
        if let Some(h) = &self.harness {
            h.validate("harness")?;
        }
        if let Some(p) = &self.execution_profile {
            require_text("execution_profile", p, 128)?;
        }
        Ok(Agent {
            id,
            kind: "agent".into(),
            name: self.name,
            version: 1,
            description: non_empty(self.description),
            system: non_empty(self.system),
            model,
            tools,
            mcp_servers,
            skills,
            metadata,
            execution_identity,
            multiagent: self.multiagent,
            harness: self.harness.unwrap_or_default(),
            tool_profile: self.tool_profile,
            quotas,
            execution_profile: self.execution_profile,
            created_at: now,
            updated_at: now,
            archived_at: None,
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentUpdate {
    #[serde(default)]
    pub version: Option<u32>,
    #[serde(default)]
    pub name: Patch<String>,
    #[serde(default)]
    pub model: Patch<ModelParam>,
    #[serde(default)]
    pub description: Patch<String>,
    #[serde(default)]
    pub system: Patch<String>,
    #[serde(default)]
    pub tools: Patch<Vec<Tool>>,
    #[serde(default)]
    pub mcp_servers: Patch<Vec<McpServer>>,
    #[serde(default)]
    pub skills: Patch<Vec<Skill>>,
    #[serde(default)]
    pub metadata: Patch<BTreeMap<String, Option<String>>>,
    #[serde(default)]
    pub execution_identity: Patch<ExecutionIdentity>,
    #[serde(default)]
    pub multiagent: Patch<Value>,
    #[serde(default)]
    pub harness: Patch<Harness>,
    #[serde(default)]
    pub tool_profile: Patch<ToolProfile>,
    #[serde(default)]
    pub quotas: Patch<Quotas>,
    #[serde(default)]
    pub execution_profile: Patch<String>,
}

fn text_patch(p: Patch<String>, cur: &Option<String>) -> Option<String> {
    match p {
        Patch::Missing => cur.clone(),
        Patch::Null => None,
        Patch::Value(s) => non_empty(Some(s)),
    }
}

impl Agent {
    /// Applies an update; `Ok(None)` when it changes nothing (no new version).
    pub fn apply_update(&self, u: AgentUpdate, now: Timestamp) -> Result<Option<Agent>, CoreError> {
        if u.version == Some(0) {
            return Err(CoreError::invalid("version", "versions start at 1"));
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
        match u.model {
            Patch::Missing => {}
            Patch::Null => return Err(CoreError::invalid("model", "cannot be cleared")),
            Patch::Value(m) => next.model = m.resolve("model")?,
        }
        next.description = text_patch(u.description, &self.description);
        next.system = text_patch(u.system, &self.system);
        let tools_given = !u.tools.is_missing();
        let tools_changed =
            tools_given || !u.mcp_servers.is_missing() || matches!(u.tool_profile, Patch::Value(_));
        match u.mcp_servers {
            Patch::Missing => {}
            Patch::Null => next.mcp_servers = vec![],
            Patch::Value(s) => {
                validate_mcp_servers(&s)?;
                next.mcp_servers = s;
            }
        }
        let mut tools = match u.tools {
            Patch::Missing => self.tools.clone(),
            Patch::Null => vec![],
            Patch::Value(t) => t,
        };
        match u.tool_profile {
            Patch::Missing => {
                if tools_given && tools.iter().any(|t| matches!(t, Tool::AgentToolset { .. })) {
                    // The explicit toolset replaces whatever the profile expanded to.
                    next.tool_profile = None;
                }
            }
            Patch::Null => next.tool_profile = None,
            Patch::Value(p) => {
                if !tools_given {
                    tools.retain(|t| !matches!(t, Tool::AgentToolset { .. }));
                }
                tools = apply_tool_profile(Some(p), tools)?;
                next.tool_profile = Some(p);
            }
        }
        if tools_changed {
            next.tools = resolve_tools(tools, &next.mcp_servers)?;
        }
        match u.skills {
            Patch::Missing => {}
            Patch::Null => next.skills = vec![],
            Patch::Value(s) => next.skills = resolve_skills(s)?,
        }
        match u.metadata {
            Patch::Missing | Patch::Null => {}
            Patch::Value(p) => {
                next.metadata = patch_metadata("metadata", &self.metadata, &p, false)?
            }
        }
        match u.execution_identity {
            Patch::Missing => {}
            Patch::Null => next.execution_identity = ExecutionIdentity::default(),
            Patch::Value(e) => {
                validate_identity(&e)?;
                next.execution_identity = e;
            }
        }
        match u.multiagent {
            Patch::Missing => {}
            Patch::Null => next.multiagent = None,
            Patch::Value(m) => {
                validate_multiagent(&m)?;
                next.multiagent = Some(m);
            }
        }
        match u.harness {
            Patch::Missing => {}
            Patch::Null => next.harness = Harness::default(),
            Patch::Value(h) => {
                h.validate("harness")?;
                next.harness = h;
            }
        }
        match u.quotas {
            Patch::Missing => {}
            Patch::Null => next.quotas = Quotas::default(),
            Patch::Value(q) => {
                validate_quotas(&q)?;
                next.quotas = q;
            }
        }
        match u.execution_profile {
            Patch::Missing => {}
            Patch::Null => next.execution_profile = None,
            Patch::Value(p) => {
                require_text("execution_profile", &p, 128)?;
                next.execution_profile = Some(p);
            }
        }
        if next == *self {
            return Ok(None);
        }
        next.version = self.version + 1;
        next.updated_at = now;
        Ok(Some(next))
    }
}

/// The agent-level overrides a session may carry (`agent_with_overrides`).
#[derive(Debug, Clone, Default)]
pub struct AgentOverrides {
    pub model: Option<ModelParam>,
    pub system: Patch<String>,
    pub tools: Option<Vec<Tool>>,
    pub mcp_servers: Option<Vec<McpServer>>,
    pub skills: Option<Vec<Skill>>,
}

impl Agent {
    /// The agent snapshot a session runs with, after its overrides.
    pub fn with_overrides(&self, o: AgentOverrides) -> Result<Agent, CoreError> {
        let mut a = self.clone();
        if let Some(m) = o.model {
            a.model = m.resolve("agent.model")?;
        }
        if let Patch::Value(s) = &o.system {
            if s.chars().count() > 100_000 {
                return Err(CoreError::invalid(
                    "agent.system",
                    "must be at most 100000 characters",
                ));
            }
        }
        a.system = text_patch(o.system, &self.system);
        let tools_changed = o.tools.is_some() || o.mcp_servers.is_some();
        if let Some(s) = o.mcp_servers {
            validate_mcp_servers(&s).map_err(|e| prefix(e, "agent"))?;
            a.mcp_servers = s;
        }
        if tools_changed {
            let tools = o.tools.unwrap_or_else(|| self.tools.clone());
            a.tools = resolve_tools(tools, &a.mcp_servers).map_err(|e| prefix(e, "agent"))?;
        }
        if let Some(s) = o.skills {
            a.skills = resolve_skills(s).map_err(|e| prefix(e, "agent"))?;
        }
        Ok(a)
    }
}

/// Prefixes the field path of a validation error (e.g. `tools[0]` → `agent.tools[0]`).
pub fn prefix(e: CoreError, p: &str) -> CoreError {
    match e {
        CoreError::Invalid {
            field,
            message,
            code,
        } => CoreError::Invalid {
            field: format!("{p}.{field}"),
            message,
            code,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::parse_json;
    use crate::ts::now;

    fn create(json: &str) -> Result<Agent, CoreError> {
        parse_json::<AgentCreate>(json.as_bytes())?.into_agent("agent_x".into(), now())
    }

    #[test]
    fn a_bare_model_id_resolves_to_the_object_form() {
        let a = create(r#"{"name":"a","model":"claude-sonnet-4-6"}"#).expect("valid");
        assert_eq!(a.model.id, "claude-sonnet-4-6");
        assert_eq!(a.model.speed, "standard");
        assert_eq!(a.version, 1);
        assert_eq!(a.execution_identity, ExecutionIdentity::ServiceAccount {});
        let a = create(r#"{"name":"a","model":{"id":"m","effort":{"type":"low"},"speed":"fast"}}"#)
            .expect("valid");
        assert_eq!(
            a.model.effort,
            Some(Effort {
                level: "low".into()
            })
        );
        let e = create(r#"{"name":"a","model":{"id":"m","effort":"huge"}}"#).unwrap_err();
        assert!(e.to_string().starts_with("model.effort"), "{e}");
    }

    #[test]
    fn the_toolset_resolves_every_builtin_tool() {
        let a = create(
            r#"{"name":"a","model":"m","tools":[{"type":"agent_toolset_20260401",
                "default_config":{"permission_policy":{"type":"always_ask"}},
                "configs":[{"name":"bash","enabled":false}]}]}"#,
        )
        .expect("valid");
        let Tool::AgentToolset {
            configs: Some(c),
            default_config: Some(d),
        } = &a.tools[0]
        else {
            panic!("resolved toolset expected: {:?}", a.tools)
        };
        assert_eq!(d.enabled, Some(true));
        assert_eq!(c.len(), 8);
        assert_eq!(c[0].name, BuiltinTool::Bash);
        assert_eq!(c[0].enabled, Some(false));
        assert_eq!(c[1].enabled, Some(true));
        assert_eq!(c[1].permission_policy, Some(PermissionPolicy::AlwaysAsk));
    }

    fn enabled(a: &Agent) -> Vec<(BuiltinTool, PermissionPolicy)> {
        a.tools
            .iter()
            .filter_map(|t| match t {
                Tool::AgentToolset {
                    configs: Some(c), ..
                } => Some(c),
                _ => None,
            })
            .flatten()
            .filter(|c| c.enabled == Some(true))
            .filter_map(|c| c.permission_policy.map(|p| (c.name, p)))
            .collect()
    }

    #[test]
    fn tool_profiles_expand_into_toolsets() {
        let a = create(r#"{"name":"a","model":"m","tool_profile":"messaging"}"#).expect("valid");
        assert!(enabled(&a).is_empty());
        assert_eq!(a.tool_profile, Some(ToolProfile::Messaging));
        let a = create(r#"{"name":"a","model":"m","tool_profile":"standard"}"#).expect("valid");
        let e = enabled(&a);
        assert_eq!(e.len(), 6, "{e:?}");
        assert!(e.contains(&(BuiltinTool::Bash, PermissionPolicy::Auto)));
        assert!(e.contains(&(BuiltinTool::Edit, PermissionPolicy::AlwaysAllow)));
        assert!(!e.iter().any(|(t, _)| *t == BuiltinTool::WebFetch));
        let a = create(r#"{"name":"a","model":"m","tool_profile":"full"}"#).expect("valid");
        let e = enabled(&a);
        assert_eq!(e.len(), 7, "everything but web_search: {e:?}");
        let err = create(
            r#"{"name":"a","model":"m","tool_profile":"full","tools":[{"type":"agent_toolset_20260401"}]}"#,
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("tool_profile"), "{err}");
        let err = create(r#"{"name":"a","model":"m","tool_profile":"most"}"#).unwrap_err();
        assert!(err.to_string().contains("tool_profile"), "{err}");
        // An update to another profile replaces the toolset; custom tools stay.
        let a = create(
            r#"{"name":"a","model":"m","tool_profile":"full","tools":[{"type":"custom","name":"c","description":"d","input_schema":{"type":"object"}}]}"#,
        )
        .expect("valid");
        let u: AgentUpdate = parse_json(br#"{"tool_profile":"standard"}"#).expect("update parses");
        let b = a.apply_update(u, now()).expect("valid").expect("changed");
        assert_eq!(enabled(&b).len(), 6);
        assert_eq!(b.tool_profile, Some(ToolProfile::Standard));
        assert!(b.tools.iter().any(|t| matches!(t, Tool::Custom { .. })));
        assert_eq!(b.tools.len(), 2);
    }

    #[test]
    fn mcp_servers_and_toolsets_must_match() {
        let e = create(
            r#"{"name":"a","model":"m","mcp_servers":[{"type":"url","name":"gh","url":"https://x"}]}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("not referenced"), "{e}");
        let e = create(
            r#"{"name":"a","model":"m","tools":[{"type":"mcp_toolset","mcp_server_name":"nope"}]}"#,
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("tools[0].mcp_server_name"), "{e}");
        let ok = create(
            r#"{"name":"a","model":"m","mcp_servers":[{"type":"url","name":"gh","url":"https://x"}],
                "tools":[{"type":"mcp_toolset","mcp_server_name":"gh"}]}"#,
        );
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn custom_tools_are_checked() {
        let e = create(
            r#"{"name":"a","model":"m","tools":[{"type":"custom","name":"bad name","description":"d","input_schema":{"type":"object"}}]}"#,
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("tools[0].name"), "{e}");
        let e = create(
            r#"{"name":"a","model":"m","tools":[{"type":"custom","name":"ok","description":"d","input_schema":{"type":"string"}}]}"#,
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with("tools[0].input_schema.type"),
            "{e}"
        );
    }

    #[test]
    fn updates_make_versions_only_when_something_changes() {
        let a = create(r#"{"name":"a","model":"m","metadata":{"k":"v"}}"#).expect("valid");
        let same: AgentUpdate = parse_json(br#"{"name":"a","model":"m"}"#).expect("parses");
        assert_eq!(a.apply_update(same, now()).expect("valid"), None);
        let upd: AgentUpdate =
            parse_json(br#"{"system":"be brief","metadata":{"k":null,"j":"w"}}"#).expect("parses");
        let b = a.apply_update(upd, now()).expect("valid").expect("changed");
        assert_eq!(b.version, 2);
        assert_eq!(b.system.as_deref(), Some("be brief"));
        assert_eq!(b.metadata, [("j".to_string(), "w".to_string())].into());
        let clear: AgentUpdate = parse_json(br#"{"system":""}"#).expect("parses");
        let c = b
            .apply_update(clear, now())
            .expect("valid")
            .expect("changed");
        assert_eq!(c.system, None);
        let bad: AgentUpdate = parse_json(br#"{"name":null}"#).expect("parses");
        assert!(a
            .apply_update(bad, now())
            .unwrap_err()
            .to_string()
            .starts_with("name"));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e =
            parse_json::<AgentCreate>(br#"{"name":"a","model":"m","colour":"red"}"#).unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
    }
}
