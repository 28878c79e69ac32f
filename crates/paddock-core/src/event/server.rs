//! Every event type Paddock writes to a session's log, with its payload, as one enum
//! serde-tagged by `type`. The agent loop, its view of the log, the SSE layer and the
//! CLI all speak this enum instead of matching on type strings.
//!
//! The log itself stays raw ([`super::Event`]: a type string and a JSON payload), so an
//! event of a type this enum does not know, or one written by an older Paddock with a
//! different shape, still round-trips through the store and the API unchanged:
//! [`super::Event::typed`] is `None` for it, and code that only understands typed
//! events passes it by.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{ConfirmResult, ContentBlock};
use crate::common::Money;
use crate::lifecycle::RunnerState;
use crate::session::{Budget, Usage};

/// `evaluated_permission` of a tool use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvaluatedPermission {
    Allow,
    Ask,
    Deny,
}

/// `session.status_idle.stop_reason`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StopReason {
    EndTurn,
    /// The tool uses awaiting a confirmation or a client's result.
    RequiresAction {
        event_ids: Vec<String>,
    },
    RetriesExhausted,
    BudgetReached,
    Refusal,
}

/// `session.error.error.type` (wire reference §8.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionErrorType {
    #[serde(rename = "unknown_error")]
    Unknown,
    #[serde(rename = "model_overloaded_error")]
    ModelOverloaded,
    #[serde(rename = "model_rate_limited_error")]
    ModelRateLimited,
    #[serde(rename = "model_request_failed_error")]
    ModelRequestFailed,
    #[serde(rename = "mcp_connection_failed_error")]
    McpConnectionFailed,
    #[serde(rename = "mcp_authentication_failed_error")]
    McpAuthenticationFailed,
    #[serde(rename = "billing_error")]
    Billing,
    #[serde(rename = "tool_use_limit_reached_error")]
    ToolUseLimitReached,
}

impl SessionErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionErrorType::Unknown => "unknown_error",
            SessionErrorType::ModelOverloaded => "model_overloaded_error",
            SessionErrorType::ModelRateLimited => "model_rate_limited_error",
            SessionErrorType::ModelRequestFailed => "model_request_failed_error",
            SessionErrorType::McpConnectionFailed => "mcp_connection_failed_error",
            SessionErrorType::McpAuthenticationFailed => "mcp_authentication_failed_error",
            SessionErrorType::Billing => "billing_error",
            SessionErrorType::ToolUseLimitReached => "tool_use_limit_reached_error",
        }
    }
}

/// `session.error.error.retry_status`: serializes as `{"type": "retrying"}` etc.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RetryStatus {
    /// The server keeps trying.
    Retrying,
    /// The turn is abandoned; the session goes back to idle.
    Exhausted,
    /// The session will terminate: nothing but an operator's change can fix it.
    Terminal,
}

/// The `error` object of a `session.error` event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionError {
    #[serde(rename = "type")]
    pub error_type: SessionErrorType,
    pub message: String,
    pub retry_status: RetryStatus,
    /// Paddock's: the agent quota that was reached (the reference has no quota type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<String>,
}

impl SessionError {
    pub fn new(
        error_type: SessionErrorType,
        message: impl Into<String>,
        retry: RetryStatus,
    ) -> Self {
        SessionError {
            error_type,
            message: message.into(),
            retry_status: retry,
            quota: None,
        }
    }
}

/// `span.model_request_end.model_usage`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelUsage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub cache_read_input_tokens: u64,
    #[serde(default)]
    pub cache_creation_input_tokens: u64,
}

impl ModelUsage {
    pub fn add(&mut self, other: &ModelUsage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cache_read_input_tokens += other.cache_read_input_tokens;
        self.cache_creation_input_tokens += other.cache_creation_input_tokens;
    }
}

/// `agent.tool_use` (built-in tools) and `agent.mcp_tool_use` (with `mcp_server_name`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolUse {
    pub name: String,
    #[serde(default)]
    pub input: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_server_name: Option<String>,
    /// Absent when the call was refused before any policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluated_permission: Option<EvaluatedPermission>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<Value>,
}

/// `agent.tool_result`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolResult {
    pub tool_use_id: String,
    #[serde(default)]
    pub content: Vec<ContentBlock>,
    #[serde(default)]
    pub is_error: bool,
}

/// `span.model_request_end`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRequestEnd {
    pub model_request_start_id: String,
    #[serde(default)]
    pub model_usage: ModelUsage,
    #[serde(default)]
    pub is_error: bool,
    /// Paddock's: `provider/model` of the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Paddock's: the call's list cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<Money>,
}

/// Every event type Paddock stores, with its payload (wire reference §8, plus
/// Paddock's `runner.*`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ServerEvent {
    #[serde(rename = "user.message")]
    UserMessage { content: Vec<ContentBlock> },
    #[serde(rename = "user.interrupt")]
    UserInterrupt {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_thread_id: Option<String>,
    },
    #[serde(rename = "user.tool_confirmation")]
    UserToolConfirmation {
        tool_use_id: String,
        result: ConfirmResult,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deny_message: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_thread_id: Option<String>,
    },
    #[serde(rename = "user.custom_tool_result")]
    UserCustomToolResult {
        custom_tool_use_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<Vec<ContentBlock>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        is_error: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_thread_id: Option<String>,
    },
    #[serde(rename = "agent.message")]
    AgentMessage { content: Vec<ContentBlock> },
    #[serde(rename = "agent.thinking")]
    AgentThinking {},
    #[serde(rename = "agent.tool_use")]
    AgentToolUse(ToolUse),
    #[serde(rename = "agent.mcp_tool_use")]
    AgentMcpToolUse(ToolUse),
    #[serde(rename = "agent.tool_result")]
    AgentToolResult(ToolResult),
    #[serde(rename = "agent.mcp_tool_result")]
    AgentMcpToolResult {
        mcp_tool_use_id: String,
        #[serde(default)]
        content: Vec<ContentBlock>,
        #[serde(default)]
        is_error: bool,
    },
    #[serde(rename = "agent.custom_tool_use")]
    AgentCustomToolUse {
        name: String,
        #[serde(default)]
        input: Value,
    },
    #[serde(rename = "session.status_running")]
    SessionStatusRunning {},
    #[serde(rename = "session.status_idle")]
    SessionStatusIdle { stop_reason: StopReason },
    #[serde(rename = "session.status_rescheduled")]
    SessionStatusRescheduled {},
    #[serde(rename = "session.status_terminated")]
    SessionStatusTerminated {},
    #[serde(rename = "session.error")]
    SessionError { error: SessionError },
    /// Only the changed fields: `agent`, `budget`, `metadata`, `title`.
    #[serde(rename = "session.updated")]
    SessionUpdated(Map<String, Value>),
    #[serde(rename = "session.usage")]
    SessionUsage {
        usage: Usage,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        budget: Option<Budget>,
    },
    #[serde(rename = "session.deleted")]
    SessionDeleted {},
    #[serde(rename = "span.model_request_start")]
    SpanModelRequestStart {},
    #[serde(rename = "span.model_request_end")]
    SpanModelRequestEnd(ModelRequestEnd),
    /// Paddock's: a built-in tool call is about to be sent to the runner (written
    /// before it is, so that a restarted orchestrator knows whether to look for it).
    #[serde(rename = "span.tool_execution_start")]
    SpanToolExecutionStart {
        tool_use_id: String,
        runner_id: String,
        exec_id: String,
    },
    #[serde(rename = "runner.state_changed")]
    RunnerStateChanged {
        runner_id: String,
        from: Option<RunnerState>,
        to: RunnerState,
        #[serde(default)]
        reason: Option<String>,
    },
    #[serde(rename = "runner.claimed")]
    RunnerClaimed {
        runner_id: String,
        session_id: Option<String>,
        /// The execution profile whose warm pool it came from.
        from_pool: Option<String>,
    },
    #[serde(rename = "runner.snapshot_created")]
    RunnerSnapshotCreated {
        runner_id: String,
        snapshot_id: String,
        size_bytes: u64,
    },
    #[serde(rename = "runner.restored")]
    RunnerRestored {
        runner_id: String,
        snapshot_id: String,
    },
    #[serde(rename = "runner.oom_killed")]
    RunnerOomKilled {
        runner_id: String,
        oom_kills: u64,
        new: u64,
        memory_limit_bytes: Option<u64>,
        reason: String,
    },
    #[serde(rename = "runner.disk_full")]
    RunnerDiskFull {
        runner_id: String,
        disk_bytes: Option<u64>,
        fs_available_bytes: Option<u64>,
        disk_limit_bytes: Option<u64>,
    },
}

/// The type names of the events, for the places that filter by type (list filters,
/// the store's reference checks) without parsing payloads.
pub mod kind {
    pub const USER_MESSAGE: &str = "user.message";
    pub const USER_INTERRUPT: &str = "user.interrupt";
    pub const USER_TOOL_CONFIRMATION: &str = "user.tool_confirmation";
    pub const USER_CUSTOM_TOOL_RESULT: &str = "user.custom_tool_result";
    pub const AGENT_MESSAGE: &str = "agent.message";
    pub const AGENT_THINKING: &str = "agent.thinking";
    pub const AGENT_TOOL_USE: &str = "agent.tool_use";
    pub const AGENT_MCP_TOOL_USE: &str = "agent.mcp_tool_use";
    pub const AGENT_TOOL_RESULT: &str = "agent.tool_result";
    pub const AGENT_MCP_TOOL_RESULT: &str = "agent.mcp_tool_result";
    pub const AGENT_CUSTOM_TOOL_USE: &str = "agent.custom_tool_use";
    pub const SESSION_STATUS_RUNNING: &str = "session.status_running";
    pub const SESSION_STATUS_IDLE: &str = "session.status_idle";
    pub const SESSION_STATUS_RESCHEDULED: &str = "session.status_rescheduled";
    pub const SESSION_STATUS_TERMINATED: &str = "session.status_terminated";
    pub const SESSION_ERROR: &str = "session.error";
    pub const SESSION_UPDATED: &str = "session.updated";
    pub const SESSION_USAGE: &str = "session.usage";
    pub const SESSION_DELETED: &str = "session.deleted";
    pub const SPAN_MODEL_REQUEST_START: &str = "span.model_request_start";
    pub const SPAN_MODEL_REQUEST_END: &str = "span.model_request_end";
    pub const SPAN_TOOL_EXECUTION_START: &str = "span.tool_execution_start";
    pub const RUNNER_STATE_CHANGED: &str = "runner.state_changed";
    pub const RUNNER_CLAIMED: &str = "runner.claimed";
    pub const RUNNER_SNAPSHOT_CREATED: &str = "runner.snapshot_created";
    pub const RUNNER_RESTORED: &str = "runner.restored";
    pub const RUNNER_OOM_KILLED: &str = "runner.oom_killed";
    pub const RUNNER_DISK_FULL: &str = "runner.disk_full";
    /// Stream-only previews (`event_deltas`): never stored.
    pub const EVENT_START: &str = "event_start";
    pub const EVENT_DELTA: &str = "event_delta";
}

impl ServerEvent {
    /// The text of an `agent.message` (or any text) as the single content block.
    pub fn agent_text(text: impl Into<String>) -> ServerEvent {
        ServerEvent::AgentMessage {
            content: vec![ContentBlock::Text { text: text.into() }],
        }
    }

    /// An `agent.tool_result` of text.
    pub fn tool_result(
        tool_use_id: impl Into<String>,
        text: impl Into<String>,
        is_error: bool,
    ) -> ServerEvent {
        ServerEvent::AgentToolResult(ToolResult {
            tool_use_id: tool_use_id.into(),
            content: vec![ContentBlock::Text { text: text.into() }],
            is_error,
        })
    }

    /// `session.status_idle` with this reason.
    pub fn idle(stop_reason: StopReason) -> ServerEvent {
        ServerEvent::SessionStatusIdle { stop_reason }
    }

    /// `session.error` with this error.
    pub fn error(error: SessionError) -> ServerEvent {
        ServerEvent::SessionError { error }
    }

    /// The event's `type`.
    pub fn kind(&self) -> &'static str {
        use ServerEvent::*;
        match self {
            UserMessage { .. } => kind::USER_MESSAGE,
            UserInterrupt { .. } => kind::USER_INTERRUPT,
            UserToolConfirmation { .. } => kind::USER_TOOL_CONFIRMATION,
            UserCustomToolResult { .. } => kind::USER_CUSTOM_TOOL_RESULT,
            AgentMessage { .. } => kind::AGENT_MESSAGE,
            AgentThinking {} => kind::AGENT_THINKING,
            AgentToolUse(_) => kind::AGENT_TOOL_USE,
            AgentMcpToolUse(_) => kind::AGENT_MCP_TOOL_USE,
            AgentToolResult(_) => kind::AGENT_TOOL_RESULT,
            AgentMcpToolResult { .. } => kind::AGENT_MCP_TOOL_RESULT,
            AgentCustomToolUse { .. } => kind::AGENT_CUSTOM_TOOL_USE,
            SessionStatusRunning {} => kind::SESSION_STATUS_RUNNING,
            SessionStatusIdle { .. } => kind::SESSION_STATUS_IDLE,
            SessionStatusRescheduled {} => kind::SESSION_STATUS_RESCHEDULED,
            SessionStatusTerminated {} => kind::SESSION_STATUS_TERMINATED,
            SessionError { .. } => kind::SESSION_ERROR,
            SessionUpdated(_) => kind::SESSION_UPDATED,
            SessionUsage { .. } => kind::SESSION_USAGE,
            SessionDeleted {} => kind::SESSION_DELETED,
            SpanModelRequestStart {} => kind::SPAN_MODEL_REQUEST_START,
            SpanModelRequestEnd(_) => kind::SPAN_MODEL_REQUEST_END,
            SpanToolExecutionStart { .. } => kind::SPAN_TOOL_EXECUTION_START,
            RunnerStateChanged { .. } => kind::RUNNER_STATE_CHANGED,
            RunnerClaimed { .. } => kind::RUNNER_CLAIMED,
            RunnerSnapshotCreated { .. } => kind::RUNNER_SNAPSHOT_CREATED,
            RunnerRestored { .. } => kind::RUNNER_RESTORED,
            RunnerOomKilled { .. } => kind::RUNNER_OOM_KILLED,
            RunnerDiskFull { .. } => kind::RUNNER_DISK_FULL,
        }
    }

    /// The fields besides `type` (what the store keeps as the payload).
    pub fn payload(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(mut m)) => {
                m.remove("type");
                m
            }
            _ => Map::new(),
        }
    }

    /// Parses a wire event (`{type, …}`, with or without `id` and `processed_at`);
    /// `None` for a type this enum does not know or a payload of another shape.
    pub fn parse(v: &Value) -> Option<ServerEvent> {
        let mut m = v.as_object()?.clone();
        m.remove("id");
        m.remove("processed_at");
        serde_json::from_value(Value::Object(m)).ok()
    }
}

/// Text blocks joined by newlines; other blocks are named (`[image]`, `[document: t]`),
/// since a reader that shows only text cannot show them.
pub fn blocks_text(blocks: &[ContentBlock]) -> String {
    blocks
        .iter()
        .map(|b| match b {
            ContentBlock::Text { text } => text.clone(),
            ContentBlock::Document { title, .. } => match title {
                Some(t) => format!("[document: {t}]"),
                None => "[document]".to_string(),
            },
            ContentBlock::Image { .. } => "[image]".to_string(),
            ContentBlock::Redacted {} => "[redacted]".to_string(),
            ContentBlock::SearchResult { title, .. } => format!("[search result: {title}]"),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::super::Event;
    use super::*;
    use serde_json::json;

    fn stored(kind: &str, payload: Value) -> Event {
        Event {
            seq: 1,
            id: "evt_1".into(),
            session_id: "sesn_1".into(),
            kind: kind.into(),
            processed_at: crate::ts::now(),
            payload: payload.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn every_variant_names_its_own_type() {
        let cases = [
            json!({"type": "user.message", "content": [{"type": "text", "text": "hi"}]}),
            json!({"type": "user.interrupt"}),
            json!({"type": "user.tool_confirmation", "tool_use_id": "evt_1", "result": "deny", "deny_message": "no"}),
            json!({"type": "user.custom_tool_result", "custom_tool_use_id": "evt_2", "content": [], "is_error": false}),
            json!({"type": "agent.message", "content": [{"type": "text", "text": "a"}]}),
            json!({"type": "agent.thinking"}),
            json!({"type": "agent.tool_use", "name": "bash", "input": {"command": "ls"}, "evaluated_permission": "ask", "evaluation": {"type": "always_ask"}}),
            json!({"type": "agent.mcp_tool_use", "name": "fetch", "input": {}, "mcp_server_name": "web"}),
            json!({"type": "agent.tool_result", "tool_use_id": "evt_3", "content": [{"type": "text", "text": "ok"}], "is_error": false}),
            json!({"type": "agent.mcp_tool_result", "mcp_tool_use_id": "evt_4", "content": [], "is_error": true}),
            json!({"type": "agent.custom_tool_use", "name": "lookup", "input": {"q": 1}}),
            json!({"type": "session.status_running"}),
            json!({"type": "session.status_idle", "stop_reason": {"type": "requires_action", "event_ids": ["evt_3"]}}),
            json!({"type": "session.status_rescheduled"}),
            json!({"type": "session.status_terminated"}),
            json!({"type": "session.error", "error": {"type": "unknown_error", "message": "m", "retry_status": {"type": "exhausted"}, "quota": "max_turns"}}),
            json!({"type": "session.updated", "title": "t"}),
            json!({"type": "session.usage", "usage": crate::session::Usage::default()}),
            json!({"type": "session.deleted"}),
            json!({"type": "span.model_request_start"}),
            json!({"type": "span.model_request_end", "model_request_start_id": "evt_5", "model_usage": {"input_tokens": 1, "output_tokens": 2, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}, "is_error": false, "model": "p/m", "cost": {"amount": "1", "currency": "USD"}}),
            json!({"type": "span.tool_execution_start", "tool_use_id": "evt_1", "runner_id": "run_1", "exec_id": "tool-evt_1"}),
            json!({"type": "runner.state_changed", "runner_id": "run_1", "from": null, "to": "creating", "reason": null}),
            json!({"type": "runner.claimed", "runner_id": "run_1", "session_id": "sesn_1", "from_pool": "box"}),
            json!({"type": "runner.snapshot_created", "runner_id": "run_1", "snapshot_id": "snap_1", "size_bytes": 10}),
            json!({"type": "runner.restored", "runner_id": "run_1", "snapshot_id": "snap_1"}),
            json!({"type": "runner.oom_killed", "runner_id": "run_1", "oom_kills": 1, "new": 1, "memory_limit_bytes": 64, "reason": "r"}),
            json!({"type": "runner.disk_full", "runner_id": "run_1", "disk_bytes": 3, "fs_available_bytes": null, "disk_limit_bytes": 1}),
        ];
        for v in cases {
            let e = ServerEvent::parse(&v).unwrap_or_else(|| panic!("parses: {v}"));
            assert_eq!(e.kind(), v["type"], "{v}");
            // Serializing gives back the same wire object.
            let mut back = Value::Object(e.payload());
            back["type"] = json!(e.kind());
            assert_eq!(back, v);
        }
    }

    #[test]
    fn unknown_and_misshapen_events_stay_raw() {
        let e = stored("agent.thread_context_compacted", json!({"x": 1}));
        assert!(e.typed().is_none());
        assert_eq!(e.to_json()["x"], 1, "the raw event round-trips");
        let e = stored("agent.tool_result", json!({"content": "not blocks"}));
        assert!(e.typed().is_none());
        let e = stored(
            "session.status_idle",
            json!({"stop_reason": {"type": "end_turn"}}),
        );
        assert_eq!(e.typed(), Some(ServerEvent::idle(StopReason::EndTurn)));
    }

    #[test]
    fn blocks_text_names_what_it_cannot_show() {
        let blocks: Vec<ContentBlock> = serde_json::from_value(json!([
            {"type": "text", "text": "a"},
            {"type": "document", "source": {"type": "text", "data": "x"}, "title": "T"},
            {"type": "image", "source": {"type": "url", "url": "u"}}
        ]))
        .expect("blocks");
        assert_eq!(blocks_text(&blocks), "a\n[document: T]\n[image]");
    }
}
