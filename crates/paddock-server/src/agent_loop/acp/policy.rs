//! The agent's permission policy applied to an ACP agent's tool calls.
//!
//! ACP agents bring their own tools; Paddock judges each call by the built-in tool of
//! the same nature, with that tool's configuration in the agent's toolset: a call
//! `kind` of `execute` is judged as `bash` (with its command), `edit`/`delete`/`move`
//! as `edit`, `read` as `read`, `search` as `grep`, `fetch` as `web_fetch`. A tool
//! disabled in the toolset is denied; `think` and `switch_mode` change nothing and
//! are allowed; any other kind is judged as `bash` without a command (under `auto`,
//! that asks).

use agent_client_protocol::v1::schema::ToolKind;
use paddock_agent::permission::{self, Permission};
use paddock_agent::tools::{AvailableTool, ToolKind as PaddockTool};
use paddock_core::agent::{BuiltinTool, PermissionPolicy};
use paddock_core::event::EvaluatedPermission;
use serde_json::{json, Value};

/// A judged call.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Decision {
    pub permission: EvaluatedPermission,
    pub evaluation: Option<Value>,
    pub reason: Option<String>,
}

pub(crate) struct Policy {
    tools: Vec<(BuiltinTool, PermissionPolicy)>,
    network: bool,
}

fn mapped(kind: &ToolKind) -> Option<BuiltinTool> {
    Some(match kind {
        ToolKind::Execute => BuiltinTool::Bash,
        ToolKind::Edit | ToolKind::Delete | ToolKind::Move => BuiltinTool::Edit,
        ToolKind::Read => BuiltinTool::Read,
        ToolKind::Search => BuiltinTool::Grep,
        ToolKind::Fetch => BuiltinTool::WebFetch,
        ToolKind::Think | ToolKind::SwitchMode => return None,
        _ => BuiltinTool::Bash,
    })
}

/// The input the built-in rules read, from an ACP call's raw input and locations.
fn input_for(tool: BuiltinTool, raw: &Value, paths: &[String]) -> Value {
    let s = |k: &str| raw.get(k).and_then(Value::as_str).map(str::to_string);
    match tool {
        BuiltinTool::Bash => {
            let command = s("command").or_else(|| s("cmd")).or_else(|| {
                // Codex sends its command as an argv (`["/bin/bash", "-lc", "…"]`).
                raw.get("command").and_then(Value::as_array).map(|a| {
                    let parts: Vec<&str> = a.iter().filter_map(Value::as_str).collect();
                    match parts.as_slice() {
                        [_, flag, script] if flag.starts_with('-') && flag.contains('c') => {
                            script.to_string()
                        }
                        other => other.join(" "),
                    }
                })
            });
            match command {
                Some(c) => json!({ "command": c }),
                None => json!({}),
            }
        }
        BuiltinTool::WebFetch => json!({"url": s("url").unwrap_or_default()}),
        _ => {
            let path = s("file_path")
                .or_else(|| s("path"))
                .or_else(|| paths.first().cloned())
                .unwrap_or_default();
            json!({"file_path": path, "path": path, "pattern": s("pattern").unwrap_or_default()})
        }
    }
}

impl Policy {
    /// The policy of the tools `available` to the agent, in a runner with network or
    /// without (where web_fetch is not offered, and need not be allowed).
    pub fn new(available: &[AvailableTool], network: bool) -> Self {
        let tools = available
            .iter()
            .filter_map(|t| match t.kind {
                PaddockTool::Builtin(b) => Some((b, t.policy)),
                PaddockTool::Custom => None,
            })
            .collect();
        Policy { tools, network }
    }

    /// Whether every call may run unasked (so the agent can be told not to ask).
    pub fn allows_everything(&self) -> bool {
        [
            BuiltinTool::Bash,
            BuiltinTool::Edit,
            BuiltinTool::Read,
            BuiltinTool::Grep,
            BuiltinTool::WebFetch,
        ]
        .iter()
        .filter(|b| self.network || **b != BuiltinTool::WebFetch)
        .all(|b| {
            self.tools
                .iter()
                .any(|(t, p)| t == b && *p == PermissionPolicy::AlwaysAllow)
        })
    }

    /// Judges one call the agent asks permission for.
    pub fn decide(&self, kind: &ToolKind, raw: &Value, paths: &[String]) -> Decision {
        let Some(tool) = mapped(kind) else {
            return Decision {
                permission: EvaluatedPermission::Allow,
                evaluation: Some(json!({"type": "always_allow"})),
                reason: None,
            };
        };
        let Some((_, policy)) = self.tools.iter().find(|(t, _)| *t == tool) else {
            return Decision {
                permission: EvaluatedPermission::Deny,
                evaluation: None,
                reason: Some(format!(
                    "the {} tool is not enabled for this agent",
                    tool.as_str()
                )),
            };
        };
        let d = permission::evaluate(*policy, tool, &input_for(tool, raw, paths));
        Decision {
            permission: match d.permission {
                Permission::Allow => EvaluatedPermission::Allow,
                Permission::Ask => EvaluatedPermission::Ask,
                Permission::Deny => EvaluatedPermission::Deny,
            },
            evaluation: Some(d.evaluation),
            reason: d.reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paddock_core::agent::Tool;

    fn policy_on(tools: Value, network: bool) -> Policy {
        let tools: Vec<Tool> = serde_json::from_value(tools).expect("tools");
        let tools = paddock_core::agent::resolve_tools(tools, &[]).expect("resolved");
        Policy::new(
            &paddock_agent::tools::available_tools(&tools, network),
            network,
        )
    }

    fn policy(tools: Value) -> Policy {
        policy_on(tools, true)
    }

    #[test]
    fn calls_are_judged_as_the_builtin_tool_of_their_kind() {
        let all = policy(json!([{"type": "agent_toolset_20260401"}]));
        assert!(all.allows_everything());
        // Without network, web_fetch is not offered, and need not be allowed.
        let offline = policy_on(json!([{"type": "agent_toolset_20260401"}]), false);
        assert!(offline.allows_everything());
        // With network, a web_fetch that asks means the agent must ask.
        let fetch_asks = policy_on(
            json!([{"type": "agent_toolset_20260401",
                    "configs": [{"name": "web_fetch", "permission_policy": {"type": "always_ask"}}]}]),
            true,
        );
        assert!(!fetch_asks.allows_everything());
        let d = all.decide(&ToolKind::Execute, &json!({"command": "rm -rf /"}), &[]);
        assert_eq!(d.permission, EvaluatedPermission::Allow);

        let ask = policy(json!([{"type": "agent_toolset_20260401",
            "default_config": {"permission_policy": {"type": "always_ask"}}}]));
        assert!(!ask.allows_everything());
        let d = ask.decide(&ToolKind::Edit, &json!({}), &["/workspace/a".into()]);
        assert_eq!(
            (d.permission, d.evaluation),
            (
                EvaluatedPermission::Ask,
                Some(json!({"type": "always_ask"}))
            )
        );
        assert_eq!(
            ask.decide(&ToolKind::Think, &json!({}), &[]).permission,
            EvaluatedPermission::Allow
        );

        let auto = policy(json!([{"type": "agent_toolset_20260401",
            "default_config": {"permission_policy": {"type": "auto"}}}]));
        let ls = auto.decide(
            &ToolKind::Execute,
            &json!({"command": ["/bin/bash", "-lc", "ls -la"]}),
            &[],
        );
        assert_eq!(ls.permission, EvaluatedPermission::Allow, "{ls:?}");
        let rm = auto.decide(&ToolKind::Execute, &json!({"command": "rm -rf /"}), &[]);
        assert_eq!(rm.permission, EvaluatedPermission::Deny, "{rm:?}");

        let no_bash = policy(json!([{"type": "agent_toolset_20260401",
            "configs": [{"name": "bash", "enabled": false}]}]));
        let d = no_bash.decide(&ToolKind::Execute, &json!({"command": "ls"}), &[]);
        assert_eq!(d.permission, EvaluatedPermission::Deny);
        assert!(!no_bash.allows_everything());
    }
}
