//! Sessions: a durable conversation of an agent (pinned at the version it was created
//! with) in an environment. Wire shapes follow the reference (§6).

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

use crate::agent::{Agent, AgentOverrides, McpServer, ModelParam, Skill, Tool};
use crate::common::{
    from_value, patch_metadata, require_text, validate_metadata, Metadata, Money, Patch,
};
use crate::ts::{serde_ts, Timestamp};
use crate::CoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    Rescheduling,
    Running,
    Idle,
    Terminated,
}

impl SessionStatus {
    pub const ALL: [SessionStatus; 4] = [
        SessionStatus::Rescheduling,
        SessionStatus::Running,
        SessionStatus::Idle,
        SessionStatus::Terminated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Rescheduling => "rescheduling",
            SessionStatus::Running => "running",
            SessionStatus::Idle => "idle",
            SessionStatus::Terminated => "terminated",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Budget {
    Limit { max_list_cost: Money },
}

impl Budget {
    fn validate(&self) -> Result<(), CoreError> {
        let Budget::Limit { max_list_cost } = self;
        max_list_cost.validate("budget.max_list_cost")
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CacheCreation {
    pub ephemeral_5m_input_tokens: u64,
    pub ephemeral_1h_input_tokens: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerToolUse {
    pub web_search_requests: u64,
    pub web_fetch_requests: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub cache_creation: CacheCreation,
    pub active_seconds: f64,
    pub list_cost: Money,
    pub server_tool_use: ServerToolUse,
}

impl Default for Usage {
    fn default() -> Self {
        Usage {
            input_tokens: 0,
            output_tokens: 0,
            cache_read_input_tokens: 0,
            cache_creation: CacheCreation::default(),
            active_seconds: 0.0,
            list_cost: Money {
                amount: "0".into(),
                currency: "USD".into(),
            },
            server_tool_use: ServerToolUse::default(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionStats {
    pub active_seconds: f64,
    pub duration_seconds: f64,
    /// Turns the agent has started (Paddock's field; the `max_turns` quota counts them).
    #[serde(default)]
    pub turns: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub status: SessionStatus,
    /// The agent snapshot this session runs (its version is pinned at creation).
    pub agent: Agent,
    pub environment_id: String,
    pub title: Option<String>,
    pub metadata: Metadata,
    pub resources: Vec<Value>,
    pub vault_ids: Vec<String>,
    pub outcome_evaluations: Vec<Value>,
    pub stats: SessionStats,
    pub usage: Usage,
    pub budget: Option<Budget>,
    pub deployment_id: Option<String>,
    /// The runner executing this session's tools, once one exists (Paddock's field).
    pub runner_id: Option<String>,
    /// The execution profile chosen for this session (Paddock's field).
    pub execution_profile: Option<String>,
    #[serde(with = "serde_ts")]
    pub created_at: Timestamp,
    #[serde(with = "serde_ts")]
    pub updated_at: Timestamp,
    #[serde(with = "serde_ts::option")]
    pub archived_at: Option<Timestamp>,
}

impl Session {
    /// Fills in the derived `stats.duration_seconds` for a response.
    pub fn with_stats(mut self, now: Timestamp) -> Self {
        let secs = (now - self.created_at).as_seconds_f64();
        self.stats.duration_seconds = (secs.max(0.0) * 1000.0).round() / 1000.0;
        self
    }
}

/// `agent` of a session create request.
#[derive(Debug, Clone)]
pub enum AgentRef {
    /// A bare id: the latest version, pinned now.
    Latest(String),
    /// `{type:"agent", id, version?}` or `{type:"agent_with_overrides", …}`.
    Pinned {
        id: String,
        version: Option<u32>,
        overrides: Option<Box<AgentOverrides>>,
    },
}

/// A changed session and the `session.updated` payload (only the changed fields).
pub type SessionChange = (Session, Map<String, Value>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PinnedParam {
    #[serde(rename = "type")]
    _kind: String,
    id: String,
    #[serde(default)]
    version: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OverridesParam {
    #[serde(rename = "type")]
    _kind: String,
    id: String,
    #[serde(default)]
    version: Option<u32>,
    #[serde(default)]
    model: Option<ModelParam>,
    #[serde(default)]
    system: Patch<String>,
    #[serde(default)]
    tools: Option<Vec<Tool>>,
    #[serde(default)]
    mcp_servers: Option<Vec<McpServer>>,
    #[serde(default)]
    skills: Option<Vec<Skill>>,
}

impl<'de> Deserialize<'de> for AgentRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let v = Value::deserialize(d)?;
        match &v {
            Value::String(s) => Ok(AgentRef::Latest(s.clone())),
            Value::Object(o) => match o.get("type").and_then(Value::as_str) {
                Some("agent") => {
                    let p: PinnedParam = serde_json::from_value(v).map_err(D::Error::custom)?;
                    Ok(AgentRef::Pinned {
                        id: p.id,
                        version: p.version,
                        overrides: None,
                    })
                }
                Some("agent_with_overrides") => {
                    let p: OverridesParam = serde_json::from_value(v).map_err(D::Error::custom)?;
                    Ok(AgentRef::Pinned {
                        id: p.id,
                        version: p.version,
                        overrides: Some(Box::new(AgentOverrides {
                            model: p.model,
                            system: p.system,
                            tools: p.tools,
                            mcp_servers: p.mcp_servers,
                            skills: p.skills,
                        })),
                    })
                }
                _ => Err(D::Error::custom(
                    "`type` must be \"agent\" or \"agent_with_overrides\"",
                )),
            },
            _ => Err(D::Error::custom(
                "expected an agent id or {type: \"agent\", id, version?}",
            )),
        }
    }
}

impl AgentRef {
    pub fn id(&self) -> &str {
        match self {
            AgentRef::Latest(id) | AgentRef::Pinned { id, .. } => id,
        }
    }

    pub fn version(&self) -> Option<u32> {
        match self {
            AgentRef::Latest(_) => None,
            AgentRef::Pinned { version, .. } => *version,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionCreate {
    pub agent: AgentRef,
    pub environment_id: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub metadata: Option<Metadata>,
    #[serde(default)]
    pub resources: Option<Vec<Value>>,
    #[serde(default)]
    pub vault_ids: Option<Vec<String>>,
    #[serde(default)]
    pub initial_events: Option<Vec<Value>>,
    #[serde(default)]
    pub budget: Option<Budget>,
    #[serde(default)]
    pub execution_profile: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ResourceParam {
    GithubRepository {
        url: String,
        #[serde(default)]
        checkout: Option<Value>,
        #[serde(default)]
        mount_path: Option<String>,
    },
}

/// Turns `resources[]` of a create request into stored session resources.
pub fn resolve_resources(
    raw: Vec<Value>,
    now: Timestamp,
    new_id: &mut dyn FnMut() -> String,
) -> Result<Vec<Value>, CoreError> {
    raw.into_iter()
        .enumerate()
        .map(|(i, v)| {
            let f = format!("resources[{i}]");
            match v.get("type").and_then(Value::as_str) {
                Some("file") | Some("memory_store") => {
                    return Err(CoreError::invalid(
                        format!("{f}.type"),
                        "file and memory_store resources are not supported by Paddock",
                    ))
                }
                _ => {}
            }
            if v.get("authorization_token").is_some() {
                return Err(CoreError::invalid(
                    format!("{f}.authorization_token"),
                    "tokens are not stored on sessions; Paddock will take them from a vault",
                ));
            }
            let ResourceParam::GithubRepository {
                url,
                checkout,
                mount_path,
            } = from_value(&f, v)?;
            if !url.starts_with("https://") {
                return Err(CoreError::invalid(
                    format!("{f}.url"),
                    "must be an https:// URL",
                ));
            }
            if let Some(c) = &checkout {
                match c.get("type").and_then(Value::as_str) {
                    Some("branch") if c.get("name").and_then(Value::as_str).is_some() => {}
                    Some("commit") if c.get("sha").and_then(Value::as_str).is_some() => {}
                    _ => {
                        return Err(CoreError::invalid(
                            format!("{f}.checkout"),
                            "expected {type:\"branch\", name} or {type:\"commit\", sha}",
                        ))
                    }
                }
            }
            let repo = url
                .trim_end_matches('/')
                .trim_end_matches(".git")
                .rsplit('/')
                .next()
                .unwrap_or("repo")
                .to_string();
            let mount_path = mount_path.unwrap_or_else(|| format!("/workspace/{repo}"));
            if !mount_path.starts_with('/') || mount_path.split('/').any(|p| p == "..") {
                return Err(CoreError::invalid(
                    format!("{f}.mount_path"),
                    "must be an absolute path without `..`",
                ));
            }
            let now = crate::ts::format(now);
            Ok(json!({
                "id": new_id(),
                "type": "github_repository",
                "url": url,
                "checkout": checkout,
                "mount_path": mount_path,
                "created_at": now,
                "updated_at": now,
            }))
        })
        .collect()
}

impl SessionCreate {
    /// Checks the fields that need no lookup; the store checks the references.
    pub fn validate(&self) -> Result<(), CoreError> {
        require_text("agent", self.agent.id(), 256)?;
        if self.agent.version() == Some(0) {
            return Err(CoreError::invalid("agent.version", "versions start at 1"));
        }
        require_text("environment_id", &self.environment_id, 256)?;
        if let Some(m) = &self.metadata {
            validate_metadata("metadata", m)?;
        }
        if let Some(b) = &self.budget {
            b.validate()?;
        }
        if let Some(t) = &self.title {
            if t.chars().count() > 1024 {
                return Err(CoreError::invalid(
                    "title",
                    "must be at most 1024 characters",
                ));
            }
        }
        if let Some(ev) = &self.initial_events {
            if ev.len() > 50 {
                return Err(CoreError::invalid(
                    "initial_events",
                    format!("at most 50 events, got {}", ev.len()),
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionAgentUpdate {
    #[serde(default)]
    pub tools: Patch<Vec<Tool>>,
    #[serde(default)]
    pub mcp_servers: Patch<Vec<McpServer>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionUpdate {
    #[serde(default)]
    pub title: Patch<String>,
    #[serde(default)]
    pub metadata: Patch<BTreeMap<String, Option<String>>>,
    #[serde(default)]
    pub agent: Patch<SessionAgentUpdate>,
    #[serde(default)]
    pub budget: Patch<Budget>,
    #[serde(default)]
    pub vault_ids: Patch<Value>,
}

impl Session {
    /// Applies an update. Returns the new session and the `session.updated` payload
    /// (only the changed fields), or `None` when nothing changes.
    pub fn apply_update(
        &self,
        u: SessionUpdate,
        now: Timestamp,
    ) -> Result<Option<SessionChange>, CoreError> {
        if !u.vault_ids.is_missing() {
            return Err(CoreError::invalid(
                "vault_ids",
                "cannot be changed after a session is created",
            ));
        }
        let mut next = self.clone();
        let mut changed = Map::new();
        match u.title {
            Patch::Missing => {}
            Patch::Null => next.title = None,
            Patch::Value(t) => {
                if t.chars().count() > 1024 {
                    return Err(CoreError::invalid(
                        "title",
                        "must be at most 1024 characters",
                    ));
                }
                next.title = Some(t)
            }
        }
        if next.title != self.title {
            changed.insert("title".into(), json!(next.title));
        }
        if let Patch::Value(p) = u.metadata {
            next.metadata = patch_metadata("metadata", &self.metadata, &p, false)?;
            if next.metadata != self.metadata {
                changed.insert("metadata".into(), json!(next.metadata));
            }
        }
        match u.agent {
            Patch::Missing | Patch::Null => {}
            Patch::Value(a) => {
                if self.status == SessionStatus::Running {
                    return Err(CoreError::Conflict {
                        message: "the session's agent cannot change while it is running".into(),
                    });
                }
                let ov = AgentOverrides {
                    tools: match a.tools {
                        Patch::Missing => None,
                        Patch::Null => Some(vec![]),
                        Patch::Value(t) => Some(t),
                    },
                    mcp_servers: match a.mcp_servers {
                        Patch::Missing => None,
                        Patch::Null => Some(vec![]),
                        Patch::Value(s) => Some(s),
                    },
                    ..AgentOverrides::default()
                };
                next.agent = self.agent.with_overrides(ov)?;
                if next.agent != self.agent {
                    changed.insert("agent".into(), json!(next.agent));
                }
            }
        }
        match u.budget {
            Patch::Missing => {}
            Patch::Null => next.budget = None,
            Patch::Value(b) => {
                if self.budget.is_none() {
                    return Err(CoreError::invalid(
                        "budget",
                        "a budget cannot be added to a session created without one",
                    ));
                }
                b.validate()?;
                next.budget = Some(b);
            }
        }
        if next.budget != self.budget {
            changed.insert("budget".into(), json!(next.budget));
        }
        if changed.is_empty() {
            return Ok(None);
        }
        next.updated_at = now;
        Ok(Some((next, changed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::AgentCreate;
    use crate::common::parse_json;
    use crate::ts::now;

    fn session() -> Session {
        let agent = parse_json::<AgentCreate>(br#"{"name":"a","model":"m"}"#)
            .expect("parses")
            .into_agent("agent_1".into(), now())
            .expect("valid");
        Session {
            id: "sesn_1".into(),
            kind: "session".into(),
            status: SessionStatus::Idle,
            agent,
            environment_id: "env_1".into(),
            title: None,
            metadata: Metadata::new(),
            resources: vec![],
            vault_ids: vec![],
            outcome_evaluations: vec![],
            stats: SessionStats::default(),
            usage: Usage::default(),
            budget: None,
            deployment_id: None,
            runner_id: None,
            execution_profile: None,
            created_at: now(),
            updated_at: now(),
            archived_at: None,
        }
    }

    #[test]
    fn agent_refs_parse_in_every_form() {
        let c: SessionCreate =
            parse_json(br#"{"agent":"agent_1","environment_id":"env_1"}"#).expect("parses");
        assert!(matches!(c.agent, AgentRef::Latest(ref id) if id == "agent_1"));
        let c: SessionCreate = parse_json(
            br#"{"agent":{"type":"agent","id":"agent_1","version":2},"environment_id":"env_1"}"#,
        )
        .expect("parses");
        assert_eq!(c.agent.version(), Some(2));
        let c: SessionCreate = parse_json(
            br#"{"agent":{"type":"agent_with_overrides","id":"agent_1","system":"x"},"environment_id":"e"}"#,
        )
        .expect("parses");
        assert!(matches!(
            c.agent,
            AgentRef::Pinned {
                overrides: Some(_),
                ..
            }
        ));
        let e = parse_json::<SessionCreate>(
            br#"{"agent":{"type":"bot","id":"a"},"environment_id":"e"}"#,
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("agent:"), "{e}");
    }

    #[test]
    fn updates_report_only_changed_fields() {
        let s = session();
        let u: SessionUpdate =
            parse_json(br#"{"title":"t","metadata":{"k":"v"}}"#).expect("parses");
        let (n, changed) = s.apply_update(u, now()).expect("valid").expect("changed");
        assert_eq!(n.title.as_deref(), Some("t"));
        assert_eq!(changed.keys().collect::<Vec<_>>(), ["title", "metadata"]);
        let u: SessionUpdate = parse_json(br#"{"title":"t"}"#).expect("parses");
        assert!(n.apply_update(u, now()).expect("valid").is_none());
        let u: SessionUpdate = parse_json(br#"{"vault_ids":[]}"#).expect("parses");
        assert!(s
            .apply_update(u, now())
            .unwrap_err()
            .to_string()
            .starts_with("vault_ids"));
        let u: SessionUpdate = parse_json(
            br#"{"budget":{"type":"limit","max_list_cost":{"amount":"5","currency":"USD"}}}"#,
        )
        .expect("parses");
        assert!(s
            .apply_update(u, now())
            .unwrap_err()
            .to_string()
            .starts_with("budget"));
    }

    #[test]
    fn resources_resolve_github_repositories_only() {
        let mut n = 0;
        let mut id = || {
            n += 1;
            format!("sesrsc_{n}")
        };
        let r = resolve_resources(
            vec![json!({"type":"github_repository","url":"https://github.com/o/repo.git"})],
            now(),
            &mut id,
        )
        .expect("valid");
        assert_eq!(r[0]["mount_path"], "/workspace/repo");
        let e = resolve_resources(vec![json!({"type":"file","file_id":"f"})], now(), &mut id)
            .unwrap_err();
        assert!(e.to_string().starts_with("resources[0].type"), "{e}");
    }
}
