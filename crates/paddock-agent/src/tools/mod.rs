//! The built-in tools the agent loop offers the model, and how each one runs inside the
//! session's sandbox through its worker (docs/worker-protocol.md).
//!
//! * [`available_tools`] turns an agent's (resolved) `tools[]` into the list the model
//!   is offered: enabled built-ins (never `web_search`: Paddock has no search backend;
//!   `web_fetch` only when the runner's network allows it), then custom tools.
//! * [`run_tool`] (with the tool's config) and [`run_builtin`] (without) run one call
//!   of a built-in tool and always return a [`ToolOutput`] (bad input, a refused path or a failing worker are `is_error`
//!   results the model can read, never panics or `Err`s).
//!
//! Paths: the sandbox workspace is [`WORKSPACE`] (`/workspace`). A tool path may be
//! relative to it or absolute under it; anything else (another absolute path, `~`, or
//! `..` climbing out) is refused before the worker is asked, and the worker confines
//! every path again (symbolic links included).
//!
//! The bash tool is **stateless**: every call runs in a fresh `/bin/sh -c` in the
//! workspace, so `cd`, variables and background jobs do not survive to the next call;
//! `restart` is accepted (the wire has it) and changes nothing.
//!
//! The semantics of every tool, and the `auto` permission rules that guard them
//! ([`crate::permission`]), are documented in `docs/tools.md`.

mod exec;
mod files;
mod specs;

use crate::provider::ToolSpec;
use paddock_backend::{BackendError, WorkerClient};
use paddock_core::agent::{BuiltinTool, BuiltinToolConfig, PermissionPolicy, Tool};
use serde_json::{Map, Value};

pub use specs::builtin_spec;

/// Where the workspace is inside every sandbox.
pub const WORKSPACE: &str = "/workspace";

/// What kind of tool a model-facing tool is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToolKind {
    /// Run by Paddock in the sandbox ([`run_builtin`]).
    Builtin(BuiltinTool),
    /// Run by the client: the session emits `agent.custom_tool_use` and waits for
    /// `user.custom_tool_result`.
    Custom,
}

/// A tool the model is offered.
#[derive(Clone, Debug, PartialEq)]
pub struct AvailableTool {
    /// The name the model calls it by (`bash`, `web_fetch`, or the custom tool's name).
    pub name: String,
    pub kind: ToolKind,
    /// The tool's permission policy. Custom tools are client-executed and carry
    /// `always_allow` (the policy is not consulted for them).
    pub policy: PermissionPolicy,
    pub spec: ToolSpec,
    /// The built-in tool's configuration (domain lists, content limit); `None` for
    /// custom tools.
    pub config: Option<BuiltinToolConfig>,
}

impl AvailableTool {
    /// A built-in tool with no configuration beyond its policy (for tests and callers
    /// that build tool lists by hand).
    pub fn builtin(tool: BuiltinTool, policy: PermissionPolicy) -> Self {
        AvailableTool {
            name: builtin_name(tool).to_string(),
            kind: ToolKind::Builtin(tool),
            policy,
            spec: builtin_spec(tool),
            config: None,
        }
    }
}

/// The wire name of a built-in tool (`web_fetch`, …).
pub fn builtin_name(tool: BuiltinTool) -> &'static str {
    match tool {
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

/// The built-in tool a name stands for.
pub fn builtin_from_name(name: &str) -> Option<BuiltinTool> {
    BuiltinTool::ALL
        .into_iter()
        .find(|t| builtin_name(*t) == name)
}

/// Enabled tools the model may call: built-ins of the `agent_toolset_20260401` entry
/// with `enabled = true` (never `web_search`: Paddock has no search backend;
/// `web_fetch` only when `network_allowed`), plus custom tools (client-executed).
/// `mcp_toolset` entries are skipped (MCP is not wired yet). Order: built-ins in
/// [`BuiltinTool::ALL`] order, then custom tools in the agent's order. A name is
/// offered once (a custom tool named like an offered built-in is dropped).
///
/// Unresolved configs fall back to the same defaults agent creation resolves them to
/// (`enabled: true`, `always_allow`).
pub fn available_tools(tools: &[Tool], network_allowed: bool) -> Vec<AvailableTool> {
    let mut out: Vec<AvailableTool> = Vec::new();
    for builtin in BuiltinTool::ALL {
        if !offerable(builtin, network_allowed) {
            continue;
        }
        let Some((enabled, policy, config)) = builtin_setting(tools, builtin) else {
            continue;
        };
        if enabled {
            out.push(AvailableTool {
                config,
                ..AvailableTool::builtin(builtin, policy)
            });
        }
    }
    for tool in tools {
        if let Tool::Custom {
            name,
            description,
            input_schema,
        } = tool
        {
            if out.iter().any(|t| &t.name == name) {
                tracing::warn!(tool = %name, "a custom tool repeats an offered tool's name; skipping it");
                continue;
            }
            out.push(AvailableTool {
                name: name.clone(),
                kind: ToolKind::Custom,
                policy: PermissionPolicy::AlwaysAllow,
                spec: ToolSpec {
                    name: name.clone(),
                    description: description.clone(),
                    input_schema: input_schema.clone(),
                },
                config: None,
            });
        }
    }
    out
}

/// Whether Paddock can run the tool at all in a sandbox with or without network.
fn offerable(tool: BuiltinTool, network_allowed: bool) -> bool {
    match tool {
        BuiltinTool::WebSearch => false,
        BuiltinTool::WebFetch => network_allowed,
        _ => true,
    }
}

/// `(enabled, policy, config)` of a built-in in the agent's toolset, `None` when the
/// agent has no toolset.
fn builtin_setting(
    tools: &[Tool],
    builtin: BuiltinTool,
) -> Option<(bool, PermissionPolicy, Option<BuiltinToolConfig>)> {
    tools.iter().find_map(|t| match t {
        Tool::AgentToolset {
            default_config,
            configs,
        } => {
            let default_enabled = default_config
                .as_ref()
                .and_then(|d| d.enabled)
                .unwrap_or(true);
            let default_policy = default_config
                .as_ref()
                .and_then(|d| d.permission_policy)
                .unwrap_or(PermissionPolicy::AlwaysAllow);
            let config = configs
                .as_deref()
                .unwrap_or_default()
                .iter()
                .find(|c| c.name == builtin)
                .cloned();
            let enabled = config
                .as_ref()
                .and_then(|c| c.enabled)
                .unwrap_or(default_enabled);
            let policy = config
                .as_ref()
                .and_then(|c| c.permission_policy)
                .unwrap_or(default_policy);
            Some((enabled, policy, config))
        }
        _ => None,
    })
}

/// The offered tool called `name`, if any.
pub fn find<'a>(available: &'a [AvailableTool], name: &str) -> Option<&'a AvailableTool> {
    available.iter().find(|t| t.name == name)
}

/// Why the model may not call `name` (for the `is_error` tool result of a call to a
/// tool it was not offered): not available in Paddock, needs network, disabled, or
/// unknown.
pub fn refusal(tools: &[Tool], name: &str, network_allowed: bool) -> String {
    match builtin_from_name(name) {
        Some(BuiltinTool::WebSearch) => "web_search is not available in Paddock".to_string(),
        Some(BuiltinTool::WebFetch) if !network_allowed => {
            "web_fetch is not available: this session's sandbox has no network access".to_string()
        }
        Some(b) => match builtin_setting(tools, b) {
            Some((false, _, _)) => format!("the tool {name} is disabled for this agent"),
            Some((true, _, _)) => format!("the tool {name} is available; call it again"),
            None => format!("the tool {name} is not enabled for this agent"),
        },
        None => format!("there is no tool named {name:?}"),
    }
}

/// Bounds applied to every tool run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolLimits {
    /// Longest tool result text (bash, grep, web_fetch output; head and tail kept).
    pub max_output_bytes: usize,
    /// bash timeout when the call gives none.
    pub default_timeout_ms: u64,
    /// Largest bash `timeout_ms` honoured (larger ones are clamped).
    pub max_timeout_ms: u64,
    /// Most file bytes a `read` returns.
    pub max_read_bytes: u64,
    /// Most paths a `glob` returns.
    pub max_glob_results: usize,
}

impl Default for ToolLimits {
    fn default() -> Self {
        ToolLimits {
            max_output_bytes: 30_000,
            default_timeout_ms: 120_000,
            max_timeout_ms: 600_000,
            max_read_bytes: 256 * 1024,
            max_glob_results: 1000,
        }
    }
}

/// The result of one tool call, as the model sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolOutput {
    pub content: String,
    pub is_error: bool,
}

impl ToolOutput {
    pub fn ok(content: impl Into<String>) -> Self {
        ToolOutput {
            content: content.into(),
            is_error: false,
        }
    }

    pub fn error(content: impl Into<String>) -> Self {
        ToolOutput {
            content: content.into(),
            is_error: true,
        }
    }
}

/// Runs one call of a built-in tool in the sandbox. Never panics; bad input (a missing
/// or wrong-typed field) gives an `is_error` output naming the field, e.g.
/// `input.file_path: required string`.
///
/// This runs the tool without its per-tool config: `web_fetch` then has no domain
/// lists and no content limit beyond `limits`. For an offered tool, call [`run_tool`],
/// which applies them.
///
/// `exec_id` is the worker exec id bash uses (1–128 of `[A-Za-z0-9._:-]`), so the
/// caller can `POST /cancel` it; an empty id lets the worker choose. Dropping the
/// future drops the HTTP connection, and the worker then kills the command's process
/// group.
pub async fn run_builtin(
    worker: &WorkerClient,
    tool: BuiltinTool,
    input: &Value,
    limits: &ToolLimits,
    exec_id: &str,
) -> ToolOutput {
    run(worker, tool, None, input, limits, exec_id).await
}

/// [`run_builtin`] for an offered tool, with its config (web_fetch's
/// `allowed_domains`, `blocked_domains` and `max_content_tokens`). A custom tool gives
/// an `is_error` output: the client runs those.
pub async fn run_tool(
    worker: &WorkerClient,
    tool: &AvailableTool,
    input: &Value,
    limits: &ToolLimits,
    exec_id: &str,
) -> ToolOutput {
    match tool.kind {
        ToolKind::Builtin(b) => run(worker, b, tool.config.as_ref(), input, limits, exec_id).await,
        ToolKind::Custom => ToolOutput::error(format!(
            "{} is a custom tool: the client runs it, not the sandbox",
            tool.name
        )),
    }
}

/// What became of a tool call started before a restart, asked again of the runner.
pub enum Resumed {
    /// Its real outcome (a bash call's exec, re-read from the worker).
    Done(ToolOutput),
    /// It may run (again) with no harm: reads, searches, a write of the same content, or
    /// a bash call the worker never received.
    Rerun,
    /// Nobody can tell: the worker ran it but no longer has its records, or the call is
    /// not one to repeat.
    Unknown,
}

/// Finds out what became of a call that was started (its exec id `exec_id`) by an
/// orchestrator that stopped before it had the result.
pub async fn resume_tool(
    worker: &WorkerClient,
    tool: &AvailableTool,
    input: &Value,
    limits: &ToolLimits,
    exec_id: &str,
) -> Resumed {
    match tool.kind {
        ToolKind::Builtin(BuiltinTool::Bash) => {
            exec::resume_bash(worker, input, limits, exec_id).await
        }
        ToolKind::Builtin(
            BuiltinTool::Read
            | BuiltinTool::Glob
            | BuiltinTool::Grep
            | BuiltinTool::WebFetch
            | BuiltinTool::Write,
        ) => Resumed::Rerun,
        ToolKind::Builtin(BuiltinTool::Edit | BuiltinTool::WebSearch) | ToolKind::Custom => {
            Resumed::Unknown
        }
    }
}

async fn run(
    worker: &WorkerClient,
    builtin: BuiltinTool,
    config: Option<&BuiltinToolConfig>,
    input: &Value,
    limits: &ToolLimits,
    exec_id: &str,
) -> ToolOutput {
    tracing::debug!(
        tool = builtin_name(builtin),
        exec_id,
        "running a built-in tool"
    );
    let result = match builtin {
        BuiltinTool::Bash => exec::bash(worker, input, limits, exec_id).await,
        BuiltinTool::Read => files::read(worker, input, limits).await,
        BuiltinTool::Write => files::write(worker, input).await,
        BuiltinTool::Edit => files::edit(worker, input).await,
        BuiltinTool::Glob => files::glob(worker, input, limits).await,
        BuiltinTool::Grep => exec::grep(worker, input, limits, exec_id).await,
        BuiltinTool::WebFetch => exec::web_fetch(worker, input, limits, config, exec_id).await,
        BuiltinTool::WebSearch => Err("web_search is not available in Paddock".to_string()),
    };
    let out = result.unwrap_or_else(ToolOutput::error);
    tracing::debug!(
        tool = builtin_name(builtin),
        is_error = out.is_error,
        bytes = out.content.len(),
        "built-in tool finished"
    );
    out
}

// ---------------------------------------------------------------- truncation

/// Truncates long text keeping its head and tail, with a marker
/// `[… N bytes truncated …]` on its own line in the middle. The result is at most
/// `max` bytes when `max` leaves room for the marker (about 50 bytes); never splits a
/// UTF-8 character.
pub fn truncate_output(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    head_tail(s.as_bytes(), &[], s.len() as u64, max)
}

fn marker(omitted: u64) -> String {
    format!("\n[… {omitted} bytes truncated …]\n")
}

fn is_continuation(b: u8) -> bool {
    b & 0xC0 == 0x80
}

/// Renders a byte stream of which `head` (its first bytes) and `tail` (its last bytes)
/// were kept and `total` bytes were seen, in at most about `max` bytes. When `head` and
/// `tail` together are the whole stream, they may be cut anywhere.
pub(crate) fn head_tail(head: &[u8], tail: &[u8], total: u64, max: usize) -> String {
    let kept = (head.len() + tail.len()) as u64;
    if kept == total && total <= max as u64 {
        let mut all = head.to_vec();
        all.extend_from_slice(tail);
        return String::from_utf8_lossy(&all).into_owned();
    }
    let joined;
    let (head, tail) = if kept == total {
        // Nothing was dropped yet: cut the whole stream afresh.
        let mut all = head.to_vec();
        all.extend_from_slice(tail);
        joined = all;
        let mid = joined.len() / 2;
        (&joined[..mid], &joined[mid..])
    } else {
        (head, tail)
    };
    let keep = max.saturating_sub(marker(total).len());
    let mut h = head.len().min(keep / 2);
    let mut t = tail.len().min(keep - h);
    // Give the head any room the tail does not use.
    h = head.len().min(keep - t);
    while h > 0 && h < head.len() && is_continuation(head[h]) {
        h -= 1;
    }
    let mut start = tail.len() - t;
    while start < tail.len() && is_continuation(tail[start]) {
        start += 1;
    }
    t = tail.len() - start;
    let omitted = total.saturating_sub((h + t) as u64);
    let mut out = String::from_utf8_lossy(&head[..h]).into_owned();
    out.push_str(&marker(omitted));
    out.push_str(&String::from_utf8_lossy(&tail[start..]));
    out
}

// ---------------------------------------------------------------- paths

/// Resolves a path the model gave against the workspace, lexically: relative to
/// [`WORKSPACE`] or absolute under it. Returns the workspace-relative path (`.` for the
/// root), or the refusal message when it lies outside.
pub fn workspace_relative(path: &str) -> Result<String, String> {
    let outside = || format!("{path} is outside the workspace {WORKSPACE}");
    let rest = if let Some(abs) = path.strip_prefix('/') {
        let under = abs
            .strip_prefix(&WORKSPACE[1..])
            .filter(|r| r.is_empty() || r.starts_with('/'))
            .ok_or_else(outside)?;
        under
    } else if path == "~" || path.starts_with("~/") {
        return Err(outside());
    } else {
        path
    };
    let mut parts: Vec<&str> = Vec::new();
    for c in rest.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop().ok_or_else(outside)?;
            }
            name => parts.push(name),
        }
    }
    Ok(if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    })
}

/// How a workspace-relative path is shown to the model.
pub(crate) fn display_path(rel: &str) -> String {
    if rel == "." {
        WORKSPACE.to_string()
    } else {
        format!("{WORKSPACE}/{rel}")
    }
}

/// A query string `k=v&…`, form-encoded.
pub(crate) fn query(pairs: &[(&str, &str)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        q.append_pair(k, v);
    }
    q.finish()
}

/// Words for a worker failure concerning `path` (already shown form).
pub(crate) fn worker_failure(e: &BackendError, path: &str) -> String {
    match e {
        BackendError::Worker { kind, message, .. } => match kind.as_deref() {
            Some("path_forbidden") => format!("{path} is outside the workspace {WORKSPACE}"),
            Some("not_found") => format!("{path}: no such file or directory"),
            Some("not_a_file") => format!("{path} is not a regular file"),
            Some("not_a_directory") => format!("{path}: not a directory"),
            Some("permission_denied") => format!("{path}: permission denied"),
            _ => format!("{path}: the sandbox refused: {message}"),
        },
        other => format!("the sandbox could not be reached: {other}"),
    }
}

// ---------------------------------------------------------------- input

type Fields = Map<String, Value>;

pub(crate) fn fields(input: &Value) -> Result<&Fields, String> {
    input
        .as_object()
        .ok_or_else(|| "input: expected an object".to_string())
}

/// A field that is absent or `null`.
fn absent(v: Option<&Value>) -> bool {
    matches!(v, None | Some(Value::Null))
}

pub(crate) fn req_str<'a>(f: &'a Fields, key: &str) -> Result<&'a str, String> {
    f.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("input.{key}: required string"))
}

pub(crate) fn opt_str<'a>(f: &'a Fields, key: &str) -> Result<Option<&'a str>, String> {
    let v = f.get(key);
    if absent(v) {
        return Ok(None);
    }
    v.and_then(Value::as_str)
        .map(Some)
        .ok_or_else(|| format!("input.{key}: expected a string"))
}

pub(crate) fn opt_bool(f: &Fields, key: &str) -> Result<Option<bool>, String> {
    let v = f.get(key);
    if absent(v) {
        return Ok(None);
    }
    v.and_then(Value::as_bool)
        .map(Some)
        .ok_or_else(|| format!("input.{key}: expected a boolean"))
}

pub(crate) fn opt_positive(f: &Fields, key: &str) -> Result<Option<u64>, String> {
    let v = f.get(key);
    if absent(v) {
        return Ok(None);
    }
    v.and_then(Value::as_u64)
        .filter(|n| *n >= 1)
        .map(Some)
        .ok_or_else(|| format!("input.{key}: expected a positive integer"))
}

/// A path field resolved into the workspace (`.` when absent and optional).
pub(crate) fn path_field(f: &Fields, key: &str, required: bool) -> Result<String, String> {
    let p = if required {
        req_str(f, key)?
    } else {
        match opt_str(f, key)? {
            Some(p) => p,
            None => return Ok(".".to_string()),
        }
    };
    if p.is_empty() {
        return Err(format!("input.{key}: must not be empty"));
    }
    if p.contains('\0') {
        return Err(format!("input.{key}: must not contain a NUL byte"));
    }
    workspace_relative(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use paddock_core::agent::ToolDefaults;
    use serde_json::json;

    fn cfg(name: BuiltinTool, enabled: bool, policy: PermissionPolicy) -> BuiltinToolConfig {
        BuiltinToolConfig {
            name,
            kind: Some(name),
            enabled: Some(enabled),
            permission_policy: Some(policy),
            allowed_domains: None,
            blocked_domains: None,
            max_content_tokens: None,
            url_sources: None,
            user_location: None,
        }
    }

    fn resolved(all_enabled: bool, policy: PermissionPolicy) -> Tool {
        Tool::AgentToolset {
            default_config: Some(ToolDefaults {
                enabled: Some(all_enabled),
                permission_policy: Some(policy),
            }),
            configs: Some(
                BuiltinTool::ALL
                    .into_iter()
                    .map(|t| cfg(t, all_enabled, policy))
                    .collect(),
            ),
        }
    }

    fn custom(name: &str) -> Tool {
        Tool::Custom {
            name: name.into(),
            description: format!("{name} tool"),
            input_schema: json!({"type": "object"}),
        }
    }

    fn names(v: &[AvailableTool]) -> Vec<&str> {
        v.iter().map(|t| t.name.as_str()).collect()
    }

    #[test]
    fn all_enabled_offers_every_runnable_builtin_in_order_then_custom_tools() {
        let tools = vec![
            custom("zeta"),
            resolved(true, PermissionPolicy::AlwaysAsk),
            Tool::McpToolset {
                mcp_server_name: "gh".into(),
                default_config: None,
                configs: None,
            },
            custom("alpha"),
        ];
        let with_net = available_tools(&tools, true);
        assert_eq!(
            names(&with_net),
            [
                "bash",
                "edit",
                "read",
                "write",
                "glob",
                "grep",
                "web_fetch",
                "zeta",
                "alpha"
            ]
        );
        let offline = available_tools(&tools, false);
        assert_eq!(
            names(&offline),
            ["bash", "edit", "read", "write", "glob", "grep", "zeta", "alpha"]
        );
        let bash = &with_net[0];
        assert_eq!(bash.kind, ToolKind::Builtin(BuiltinTool::Bash));
        assert_eq!(bash.policy, PermissionPolicy::AlwaysAsk);
        assert_eq!(bash.spec.name, "bash");
        assert_eq!(
            bash.config.as_ref().map(|c| c.name),
            Some(BuiltinTool::Bash)
        );
        let zeta = &with_net[7];
        assert_eq!(zeta.kind, ToolKind::Custom);
        assert_eq!(zeta.spec.description, "zeta tool");
        assert!(zeta.config.is_none());
    }

    #[test]
    fn per_tool_enabled_and_policy_are_honoured() {
        let mut configs: Vec<BuiltinToolConfig> = BuiltinTool::ALL
            .into_iter()
            .map(|t| cfg(t, false, PermissionPolicy::AlwaysAllow))
            .collect();
        configs[2] = cfg(BuiltinTool::Read, true, PermissionPolicy::Auto);
        configs[0] = cfg(BuiltinTool::Bash, true, PermissionPolicy::AlwaysAsk);
        configs[7] = cfg(BuiltinTool::WebSearch, true, PermissionPolicy::AlwaysAllow);
        let tools = vec![Tool::AgentToolset {
            default_config: None,
            configs: Some(configs),
        }];
        let got = available_tools(&tools, true);
        assert_eq!(names(&got), ["bash", "read"]);
        assert_eq!(got[0].policy, PermissionPolicy::AlwaysAsk);
        assert_eq!(got[1].policy, PermissionPolicy::Auto);
        assert!(find(&got, "read").is_some());
        assert!(find(&got, "write").is_none());
        assert!(find(&got, "web_search").is_none());
    }

    #[test]
    fn unresolved_toolset_uses_the_creation_defaults() {
        let tools = vec![Tool::AgentToolset {
            default_config: None,
            configs: None,
        }];
        let got = available_tools(&tools, false);
        assert_eq!(
            names(&got),
            ["bash", "edit", "read", "write", "glob", "grep"]
        );
        assert!(got
            .iter()
            .all(|t| t.policy == PermissionPolicy::AlwaysAllow));
        assert!(available_tools(&[], true).is_empty());
    }

    #[test]
    fn custom_tool_named_like_a_builtin_is_offered_once() {
        let tools = vec![
            resolved(true, PermissionPolicy::AlwaysAllow),
            custom("bash"),
        ];
        let got = available_tools(&tools, false);
        assert_eq!(got.iter().filter(|t| t.name == "bash").count(), 1);
        assert_eq!(got[0].kind, ToolKind::Builtin(BuiltinTool::Bash));
        // With bash disabled the custom one takes the name.
        let tools = vec![
            resolved(false, PermissionPolicy::AlwaysAllow),
            custom("bash"),
        ];
        let got = available_tools(&tools, false);
        assert_eq!(names(&got), ["bash"]);
        assert_eq!(got[0].kind, ToolKind::Custom);
    }

    #[test]
    fn refusal_explains_why() {
        let tools = vec![resolved(false, PermissionPolicy::AlwaysAllow)];
        assert_eq!(
            refusal(&tools, "web_search", true),
            "web_search is not available in Paddock"
        );
        assert!(refusal(&tools, "web_fetch", false).contains("no network"));
        assert_eq!(
            refusal(&tools, "bash", true),
            "the tool bash is disabled for this agent"
        );
        assert!(refusal(&[], "read", true).contains("not enabled"));
        assert!(refusal(&tools, "frobnicate", true).contains("no tool named \"frobnicate\""));
    }

    #[test]
    fn names_round_trip() {
        for t in BuiltinTool::ALL {
            assert_eq!(builtin_from_name(builtin_name(t)), Some(t));
            // The wire name is the serde name.
            assert_eq!(json!(t), json!(builtin_name(t)));
            assert_eq!(builtin_spec(t).name, builtin_name(t));
        }
        assert_eq!(builtin_from_name("nope"), None);
    }

    #[test]
    fn specs_are_object_schemas_listing_the_wire_inputs() {
        let props = |t: BuiltinTool| -> Vec<String> {
            let spec = builtin_spec(t);
            assert_eq!(spec.input_schema["type"], "object");
            assert!(!spec.description.is_empty());
            spec.input_schema["properties"]
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default()
        };
        assert_eq!(
            props(BuiltinTool::Bash),
            ["command", "restart", "timeout_ms"]
        );
        assert_eq!(props(BuiltinTool::Read), ["file_path", "view_range"]);
        assert_eq!(props(BuiltinTool::Write), ["file_path", "content"]);
        assert_eq!(
            props(BuiltinTool::Edit),
            ["file_path", "old_string", "new_string", "replace_all"]
        );
        assert_eq!(props(BuiltinTool::Glob), ["pattern", "path"]);
        assert_eq!(props(BuiltinTool::Grep), ["pattern", "path"]);
        assert_eq!(props(BuiltinTool::WebFetch), ["url"]);
        assert!(builtin_spec(BuiltinTool::Bash)
            .description
            .contains("fresh shell"));
    }

    #[test]
    fn workspace_paths_resolve_lexically() {
        assert_eq!(workspace_relative("a/b.txt").as_deref(), Ok("a/b.txt"));
        assert_eq!(workspace_relative("./a//b/./c").as_deref(), Ok("a/b/c"));
        assert_eq!(workspace_relative("/workspace/a/b").as_deref(), Ok("a/b"));
        assert_eq!(workspace_relative("/workspace").as_deref(), Ok("."));
        assert_eq!(workspace_relative("/workspace/").as_deref(), Ok("."));
        assert_eq!(workspace_relative(".").as_deref(), Ok("."));
        assert_eq!(workspace_relative("a/../b").as_deref(), Ok("b"));
        for bad in [
            "/etc/passwd",
            "/workspaces/x",
            "/workspace/../etc",
            "../x",
            "a/../../x",
            "~",
            "~/x",
            "/",
        ] {
            let e = workspace_relative(bad).err();
            assert_eq!(
                e,
                Some(format!("{bad} is outside the workspace /workspace")),
                "{bad}"
            );
        }
    }

    #[test]
    fn input_helpers_name_the_field() {
        let v = json!({"s": "x", "n": 3, "b": true, "z": null, "neg": -1, "f": 1.5});
        let f = fields(&v).unwrap();
        assert_eq!(req_str(f, "s"), Ok("x"));
        assert_eq!(req_str(f, "n"), Err("input.n: required string".into()));
        assert_eq!(
            req_str(f, "missing"),
            Err("input.missing: required string".into())
        );
        assert_eq!(opt_str(f, "z"), Ok(None));
        assert_eq!(opt_str(f, "b"), Err("input.b: expected a string".into()));
        assert_eq!(opt_bool(f, "b"), Ok(Some(true)));
        assert_eq!(opt_bool(f, "s"), Err("input.s: expected a boolean".into()));
        assert_eq!(opt_positive(f, "n"), Ok(Some(3)));
        for bad in ["neg", "f", "s"] {
            assert_eq!(
                opt_positive(f, bad),
                Err(format!("input.{bad}: expected a positive integer"))
            );
        }
        assert_eq!(
            fields(&json!([1])).err().as_deref(),
            Some("input: expected an object")
        );
        assert_eq!(path_field(f, "missing", false).as_deref(), Ok("."));
        let v = json!({"p": ""});
        assert_eq!(
            path_field(fields(&v).unwrap(), "p", true),
            Err("input.p: must not be empty".into())
        );
    }

    #[test]
    fn truncate_keeps_head_and_tail_with_a_marker() {
        let s: String = (0..1000).map(|i| format!("{i:04}\n")).collect();
        assert_eq!(truncate_output(&s, s.len()), s);
        let t = truncate_output(&s, 500);
        assert!(t.len() <= 500, "{}", t.len());
        assert!(t.starts_with("0000\n0001\n"));
        assert!(t.ends_with("0998\n0999\n"));
        let omitted: usize = t
            .split("[… ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(omitted > 4000);
        // Everything is accounted for: kept head + tail + omitted = original.
        let body = t.replace(&marker(omitted as u64), "");
        assert_eq!(body.len() + omitted, s.len());
    }

    #[test]
    fn truncate_never_splits_a_character() {
        let s = "é".repeat(1000) + &"日".repeat(1000);
        for max in [64, 65, 66, 101, 333, 1000] {
            let t = truncate_output(&s, max);
            assert!(t.len() <= max, "{max}: {}", t.len());
            assert!(!t.contains('\u{FFFD}'), "{max}");
            assert!(t.contains("bytes truncated"));
        }
        // Tiny limits keep only the marker.
        assert!(truncate_output(&s, 3).starts_with("\n[… "));
    }

    #[test]
    fn head_tail_counts_bytes_dropped_by_a_capture() {
        // A capture kept 4 head and 4 tail bytes of 100.
        let t = head_tail(b"abcd", b"wxyz", 100, 1000);
        assert_eq!(t, "abcd\n[… 92 bytes truncated …]\nwxyz");
    }
}
