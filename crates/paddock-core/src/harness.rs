//! Who runs an agent's sessions (the agent's `harness`, Paddock's field): the built-in
//! brain in the orchestrator, or an Agent Client Protocol agent inside the runner,
//! started from a row of data ([`AdapterSpec`]) that says how.
//!
//! Wire forms: `"builtin"`, `"shell"`, `"acp:claude-code"` (input shorthand) or
//! `{"type": "acp", "adapter": "claude-code"}`; a user's own ACP agent is
//! `{"type": "acp", "adapter": "custom", "command": ["my-agent", "--acp"], "env": {…}}`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;

use crate::CoreError;

/// The ACP agents Paddock knows how to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AcpAdapter {
    Openclaw,
    ClaudeCode,
    Codex,
    Gemini,
    /// A command line of the user's that speaks ACP on stdio.
    Custom,
}

impl AcpAdapter {
    pub const ALL: [AcpAdapter; 5] = [
        AcpAdapter::Openclaw,
        AcpAdapter::ClaudeCode,
        AcpAdapter::Codex,
        AcpAdapter::Gemini,
        AcpAdapter::Custom,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AcpAdapter::Openclaw => "openclaw",
            AcpAdapter::ClaudeCode => "claude-code",
            AcpAdapter::Codex => "codex",
            AcpAdapter::Gemini => "gemini",
            AcpAdapter::Custom => "custom",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// An ACP harness: which adapter, and for `custom` the command line and environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcpHarness {
    pub adapter: AcpAdapter,
    /// `custom` only: the program and its arguments, as run inside the runner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Extra environment of the agent process (any adapter).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

/// Which agent implementation runs the session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Harness {
    /// The built-in brain in the orchestrator.
    #[default]
    Builtin,
    /// An ACP agent inside the runner.
    Acp(AcpHarness),
    /// Plain shell tasks (no agent runs sessions of it).
    Shell,
}

impl Harness {
    pub fn acp(adapter: AcpAdapter) -> Self {
        Harness::Acp(AcpHarness {
            adapter,
            command: None,
            env: BTreeMap::new(),
        })
    }

    /// The short name: `builtin`, `shell`, `acp:claude-code`, ….
    pub fn name(&self) -> String {
        match self {
            Harness::Builtin => "builtin".into(),
            Harness::Shell => "shell".into(),
            Harness::Acp(a) => format!("acp:{}", a.adapter.as_str()),
        }
    }

    /// Checks a harness given on create or update; `field` is its path.
    pub fn validate(&self, field: &str) -> Result<(), CoreError> {
        let Harness::Acp(a) = self else {
            return Ok(());
        };
        match (&a.command, a.adapter) {
            (None, AcpAdapter::Custom) => return Err(CoreError::invalid(
                format!("{field}.command"),
                "the custom adapter needs the command that starts the agent speaking ACP on stdio",
            )),
            (Some(c), AcpAdapter::Custom) => {
                if c.is_empty() || c[0].is_empty() {
                    return Err(CoreError::invalid(
                        format!("{field}.command"),
                        "must name a program",
                    ));
                }
                if c.len() > 64 || c.iter().any(|s| s.len() > 4096 || s.contains('\0')) {
                    return Err(CoreError::invalid(
                        format!("{field}.command"),
                        "at most 64 arguments of at most 4096 bytes each, without NUL",
                    ));
                }
            }
            (Some(_), other) => {
                return Err(CoreError::invalid(
                    format!("{field}.command"),
                    format!(
                    "only the custom adapter takes a command; {} is started as Paddock knows it",
                    other.as_str()
                ),
                ))
            }
            (None, _) => {}
        }
        if a.env.len() > 64 {
            return Err(CoreError::invalid(
                format!("{field}.env"),
                "at most 64 variables",
            ));
        }
        for (k, v) in &a.env {
            let ok_name = !k.is_empty()
                && !k.starts_with(|c: char| c.is_ascii_digit())
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok_name || v.contains('\0') || v.len() > 32 * 1024 {
                return Err(CoreError::invalid(
                    format!("{field}.env.{k}"),
                    "variable names are letters, digits and _ (not starting with a digit); values hold no NUL and at most 32 KiB",
                ));
            }
        }
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum Tagged {
    Builtin {},
    Shell {},
    Acp(AcpHarness),
}

impl Serialize for Harness {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Harness::Builtin => s.serialize_str("builtin"),
            Harness::Shell => s.serialize_str("shell"),
            Harness::Acp(a) => Tagged::Acp(a.clone()).serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Harness {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Name(String),
            Tagged(Tagged),
        }
        match Wire::deserialize(d)? {
            Wire::Tagged(Tagged::Builtin {}) => Ok(Harness::Builtin),
            Wire::Tagged(Tagged::Shell {}) => Ok(Harness::Shell),
            Wire::Tagged(Tagged::Acp(a)) => Ok(Harness::Acp(a)),
            Wire::Name(n) => match n.as_str() {
                "builtin" => Ok(Harness::Builtin),
                "shell" => Ok(Harness::Shell),
                // The name Paddock used before ACP adapters had names.
                "openclaw" => Ok(Harness::acp(AcpAdapter::Openclaw)),
                other => match other.strip_prefix("acp:").and_then(AcpAdapter::parse) {
                    Some(a) => Ok(Harness::acp(a)),
                    None => Err(serde::de::Error::custom(format!(
                        "unknown harness {other:?}: expected builtin, shell or acp:ADAPTER with ADAPTER one of {}",
                        AcpAdapter::ALL.map(AcpAdapter::as_str).join(", ")
                    ))),
                },
            },
        }
    }
}

/// The wire format an agent's model traffic uses (what the model gateway must speak).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelWire {
    /// Anthropic messages (`POST /v1/messages`).
    Anthropic,
    /// OpenAI chat completions (`POST /v1/chat/completions`).
    OpenaiChat,
    /// OpenAI Responses (`POST /v1/responses`).
    OpenaiResponses,
    /// Gemini `generateContent` / `streamGenerateContent`.
    Gemini,
}

/// How Paddock starts one ACP adapter: a row of data. Values may hold placeholders,
/// filled in at start:
///
/// | placeholder | value |
/// |---|---|
/// | `{gateway}` | the model gateway's root URL inside the runner (`http://127.0.0.1:PORT`) |
/// | `{wire_base}` | the base URL the agent's API client takes for the wire in use (the root for Anthropic and Gemini, `…/v1` for OpenAI's) |
/// | `{wire_name}` | the adapter's own name of that wire (see `wires`) |
/// | `{token}` | the runner's gateway token |
/// | `{model}` | the agent's model as its provider names it |
/// | `{ask}` | `ask.0` when every tool call may run unasked, else `ask.1` |
/// | `{nonce}` | a random token of this start (for the agent's own loopback services) |
/// | `{home}` | a private writable directory of the agent process |
/// | `{workspace}` | the runner's workspace |
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdapterSpec {
    pub adapter: AcpAdapter,
    /// The npm package and the version Paddock installs and tests.
    pub package: &'static str,
    pub version: &'static str,
    /// The runbook whose image (Docker) or host prefix (local) holds the agent.
    pub runbook: &'static str,
    /// The program and arguments that start it speaking ACP on stdio.
    pub command: &'static [&'static str],
    /// The formats its model traffic can take, in order of preference, with the
    /// adapter's own name of each (`{wire_name}`); the first one the session's
    /// provider speaks is used.
    pub wires: &'static [(ModelWire, &'static str)],
    /// `{ask}`: the adapter's setting for "never ask" and for "ask first".
    pub ask: (&'static str, &'static str),
    /// Its environment: the gateway, and the settings that turn off telemetry, update
    /// checks and login flows.
    pub env: &'static [(&'static str, &'static str)],
    /// Files written under `{home}` before it starts (settings files).
    pub files: &'static [(&'static str, &'static str)],
    /// The session mode to set after `session/new` when every tool call may run
    /// (`always_allow`), and when calls are to be asked (`always_ask`, `auto`).
    pub mode_allow: Option<&'static str>,
    pub mode_ask: Option<&'static str>,
    /// Which client file-system requests to offer (`fs.readTextFile`, `fs.writeTextFile`).
    pub client_fs: (bool, bool),
}

/// Where the agents' prefix (Node and the npm packages) is inside a runner.
pub const AGENTS_PREFIX: &str = "/opt/paddock-agents";
/// The runbook holding the agents.
pub const AGENTS_RUNBOOK: &str = "agents";

const CLAUDE_ENV: &[(&str, &str)] = &[
    ("ANTHROPIC_BASE_URL", "{gateway}"),
    ("ANTHROPIC_AUTH_TOKEN", "{token}"),
    ("ANTHROPIC_MODEL", "{model}"),
    ("ANTHROPIC_SMALL_FAST_MODEL", "{model}"),
    // Without it the CLI calls api.anthropic.com (flags, bootstrap, telemetry) with
    // the key it was given.
    ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
    ("DISABLE_AUTOUPDATER", "1"),
    ("DISABLE_TELEMETRY", "1"),
    ("DISABLE_ERROR_REPORTING", "1"),
    ("CLAUDE_CODE_ENABLE_PROMPT_SUGGESTION", "false"),
    ("CLAUDE_CODE_MAX_RETRIES", "2"),
    ("CLAUDE_CONFIG_DIR", "{home}/claude"),
    ("CLAUDE_CODE_TMPDIR", "{home}/tmp"),
    ("IS_SANDBOX", "1"),
];

const GEMINI_ENV: &[(&str, &str)] = &[
    ("GEMINI_CLI_HOME", "{home}"),
    ("TMPDIR", "{home}/tmp"),
    ("GEMINI_CLI_NO_RELAUNCH", "true"),
    ("GOOGLE_GEMINI_BASE_URL", "{gateway}"),
    ("GEMINI_API_KEY", "{token}"),
    ("GEMINI_MODEL", "{model}"),
];

const GEMINI_SETTINGS: &str = r#"{
  "general": {"enableAutoUpdate": false, "enableAutoUpdateNotification": false, "maxAttempts": 2},
  "privacy": {"usageStatisticsEnabled": false},
  "telemetry": {"enabled": false},
  "ide": {"enabled": false},
  "tools": {"sandbox": false},
  "security": {"auth": {"selectedType": "gemini-api-key"}},
  "model": {"name": "{model}"}
}
"#;

const OPENCLAW: &str = "/opt/paddock-agents/lib/node_modules/openclaw/openclaw.mjs";

/// OpenClaw's ACP mode is a bridge to its gateway, a second process: start the gateway,
/// wait until it is ready, then become the bridge (both in the process's group).
const OPENCLAW_START: &str = r#"node "$OPENCLAW" gateway run > "$HOME/gateway.log" 2>&1 &
node -e 'const h=require("http"),t=Date.now();(function f(){h.get("http://127.0.0.1:18789/readyz",r=>{r.resume();r.statusCode===200?process.exit(0):setTimeout(f,250)}).on("error",()=>Date.now()-t>240000?process.exit(1):setTimeout(f,250))})()' || { echo "the OpenClaw gateway did not become ready:" >&2; tail -n 40 "$HOME/gateway.log" >&2; exit 1; }
exec node "$OPENCLAW" acp"#;

const OPENCLAW_ENV: &[(&str, &str)] = &[
    ("OPENCLAW", OPENCLAW),
    ("OPENCLAW_STATE_DIR", "{home}/state"),
    ("OPENCLAW_CONFIG_PATH", "{home}/state/openclaw.json"),
    ("OPENCLAW_GATEWAY_SECRET", "{nonce}"),
    ("OPENCLAW_MODEL_TOKEN", "{token}"),
    ("OPENCLAW_DISABLE_BONJOUR", "1"),
    ("OPENCLAW_NO_AUTO_UPDATE", "1"),
    ("OPENCLAW_OFFLINE", "1"),
    ("OPENCLAW_SKIP_CHANNELS", "1"),
    ("OPENCLAW_HIDE_BANNER", "1"),
    ("OPENCLAW_SUPPRESS_NOTES", "1"),
    ("CLAWHUB_DISABLE_TELEMETRY", "1"),
    ("DO_NOT_TRACK", "1"),
];

/// OpenClaw's configuration: its gateway on the sandbox's loopback, everything that
/// would reach the network off, one model provider (Paddock's gateway), tools run in
/// the workspace, the self-configuring and messaging tools denied.
const OPENCLAW_CONFIG: &str = r#"{
  "gateway": {"mode": "local", "port": 18789, "bind": "loopback",
              "auth": {"mode": "token", "token": "${OPENCLAW_GATEWAY_SECRET}"},
              "tailscale": {"mode": "off"}, "controlUi": {"enabled": false}},
  "update": {"checkOnStart": false, "auto": {"enabled": false}},
  "telemetry": {"enabled": false},
  "discovery": {"mdns": {"mode": "off"}},
  "browser": {"enabled": false},
  "cron": {"enabled": false},
  "plugins": {"enabled": false},
  "logging": {"file": "{home}/state/logs/openclaw.log"},
  "models": {"mode": "replace", "catalogRefresh": {"enabled": false},
             "providers": {"paddock": {"baseUrl": "{wire_base}", "apiKey": "${OPENCLAW_MODEL_TOKEN}", "api": "{wire_name}",
               "models": [{"id": "{model}", "name": "{model}", "reasoning": false, "input": ["text"],
                           "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0},
                           "contextWindow": 200000, "maxTokens": 8192}]}}},
  "agents": {"defaults": {"model": {"primary": "paddock/{model}"}, "utilityModel": "",
                          "workspace": "{home}/state/workspace", "cwd": "{workspace}",
                          "skipBootstrap": true, "heartbeat": {"every": "0m"}}},
  "tools": {"exec": {"mode": "{ask}"}, "profile": "coding",
            "deny": ["openclaw", "gateway", "group:web", "browser", "cron", "automations", "message", "nodes", "sessions_spawn", "subagents"]}
}
"#;

const CODEX: &str = "/opt/paddock-agents/lib/node_modules/@zed-industries/codex-acp/node_modules/@zed-industries/codex-acp-linux-x64/bin/codex-acp";

/// Codex's model catalogue entry for the agent's model: without one it warns, as agent
/// text, at every prompt, and offers a fallback tool set.
const CODEX_MODELS: &str = r#"{"models":[{"slug":"{model}","display_name":"{model}","supported_reasoning_levels":[],"shell_type":"shell_command","visibility":"list","supported_in_api":true,"priority":0,"base_instructions":"You are Codex, a coding agent, working in the workspace of a Paddock runner.","supports_reasoning_summaries":false,"support_verbosity":false,"truncation_policy":{"mode":"tokens","limit":10000},"supports_parallel_tool_calls":true,"experimental_supported_tools":[],"context_window":200000,"apply_patch_tool_type":"freeform"}]}
"#;

const CODEX_ENV: &[(&str, &str)] = &[
    ("CODEX_HOME", "{home}/codex"),
    ("PADDOCK_GATEWAY_TOKEN", "{token}"),
];

/// Every adapter Paddock knows, as data (docs/agents-acp.md lists the same table).
pub const ADAPTERS: &[AdapterSpec] = &[
    AdapterSpec {
        adapter: AcpAdapter::Openclaw,
        package: "openclaw",
        version: "2026.9.6",
        runbook: AGENTS_RUNBOOK,
        command: &["/bin/sh", "-c", OPENCLAW_START],
        wires: &[
            (ModelWire::Anthropic, "anthropic-messages"),
            (ModelWire::OpenaiChat, "openai-completions"),
            (ModelWire::OpenaiResponses, "openai-responses"),
        ],
        ask: ("full", "ask"),
        env: OPENCLAW_ENV,
        files: &[("state/openclaw.json", OPENCLAW_CONFIG)],
        mode_allow: None,
        mode_ask: None,
        client_fs: (true, true),
    },
    AdapterSpec {
        adapter: AcpAdapter::Codex,
        package: "@zed-industries/codex-acp",
        version: "0.16.0",
        runbook: AGENTS_RUNBOOK,
        command: &[
            CODEX,
            "-c", "model_provider=\"paddock\"",
            "-c", "model_providers.paddock.name=\"Paddock gateway\"",
            "-c", "model_providers.paddock.base_url=\"{wire_base}\"",
            "-c", "model_providers.paddock.env_key=\"PADDOCK_GATEWAY_TOKEN\"",
            "-c", "model_providers.paddock.wire_api=\"responses\"",
            "-c", "model_providers.paddock.request_max_retries=0",
            "-c", "model_providers.paddock.stream_max_retries=0",
            "-c", "model=\"{model}\"",
            "-c", "model_catalog_json=\"{home}/codex/models.json\"",
            "-c", "features.personality=false",
            "-c", "sandbox_mode=\"danger-full-access\"",
            "-c", "approval_policy=\"{ask}\"",
            "-c", "web_search=\"disabled\"",
            "-c", "features.multi_agent=false",
            "-c", "features.goals=false",
            "-c", "analytics.enabled=false",
            "-c", "check_for_update_on_startup=false",
            "-c", "shell_environment_policy.ignore_default_excludes=false",
        ],
        wires: &[(ModelWire::OpenaiResponses, "responses")],
        ask: ("never", "untrusted"),
        env: CODEX_ENV,
        files: &[("codex/config.toml", ""), ("codex/models.json", CODEX_MODELS)],
        mode_allow: None,
        mode_ask: None,
        client_fs: (true, true),
    },
    AdapterSpec {
        adapter: AcpAdapter::ClaudeCode,
        package: "@agentclientprotocol/claude-agent-acp",
        version: "0.101.0",
        runbook: AGENTS_RUNBOOK,
        command: &[
            "/opt/paddock-agents/bin/node",
            "/opt/paddock-agents/lib/node_modules/@agentclientprotocol/claude-agent-acp/dist/index.js",
        ],
        wires: &[(ModelWire::Anthropic, "anthropic")],
        ask: ("", ""),
        env: CLAUDE_ENV,
        files: &[],
        mode_allow: Some("bypassPermissions"),
        mode_ask: Some("default"),
        client_fs: (true, true),
    },
    AdapterSpec {
        adapter: AcpAdapter::Gemini,
        package: "@google/gemini-cli",
        version: "0.61.0",
        runbook: AGENTS_RUNBOOK,
        command: &[
            "/opt/paddock-agents/bin/node",
            "/opt/paddock-agents/lib/node_modules/@google/gemini-cli/bundle/gemini.js",
            "--acp",
        ],
        wires: &[(ModelWire::Gemini, "gemini")],
        ask: ("", ""),
        env: GEMINI_ENV,
        files: &[(".gemini/settings.json", GEMINI_SETTINGS)],
        mode_allow: None,
        mode_ask: None,
        // Gemini reads files from disk itself and treats a client's "not found" as a
        // failure when it creates one: offer writes only.
        client_fs: (false, true),
    },
];

/// The row of a known adapter (`custom` has none).
pub fn adapter_spec(adapter: AcpAdapter) -> Option<&'static AdapterSpec> {
    ADAPTERS.iter().find(|a| a.adapter == adapter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn harnesses_parse_from_names_and_objects_and_serialize_back() {
        let cases = [
            (json!("builtin"), Harness::Builtin, json!("builtin")),
            (json!("shell"), Harness::Shell, json!("shell")),
            (
                json!("acp:claude-code"),
                Harness::acp(AcpAdapter::ClaudeCode),
                json!({"type": "acp", "adapter": "claude-code"}),
            ),
            (
                json!("openclaw"),
                Harness::acp(AcpAdapter::Openclaw),
                json!({"type": "acp", "adapter": "openclaw"}),
            ),
            (
                json!({"type": "acp", "adapter": "custom", "command": ["x", "--acp"]}),
                Harness::Acp(AcpHarness {
                    adapter: AcpAdapter::Custom,
                    command: Some(vec!["x".into(), "--acp".into()]),
                    env: BTreeMap::new(),
                }),
                json!({"type": "acp", "adapter": "custom", "command": ["x", "--acp"]}),
            ),
            (
                json!({"type": "builtin"}),
                Harness::Builtin,
                json!("builtin"),
            ),
        ];
        for (input, want, out) in cases {
            let h: Harness = serde_json::from_value(input.clone()).expect("parses");
            assert_eq!(h, want, "{input}");
            assert_eq!(serde_json::to_value(&h).expect("json"), out);
        }
        for bad in [
            json!("acp:nope"),
            json!("acp"),
            json!({"type": "acp"}),
            json!(3),
        ] {
            assert!(
                serde_json::from_value::<Harness>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn harness_validation_names_the_field() {
        let custom = |c: Option<Vec<&str>>| {
            Harness::Acp(AcpHarness {
                adapter: AcpAdapter::Custom,
                command: c.map(|c| c.into_iter().map(String::from).collect()),
                env: BTreeMap::new(),
            })
        };
        assert!(custom(Some(vec!["agent"])).validate("harness").is_ok());
        let e = custom(None).validate("harness").unwrap_err();
        assert!(e.to_string().starts_with("harness.command"), "{e}");
        let e = custom(Some(vec![""])).validate("harness").unwrap_err();
        assert!(e.to_string().starts_with("harness.command"), "{e}");
        let mut h = AcpHarness {
            adapter: AcpAdapter::ClaudeCode,
            command: Some(vec!["x".into()]),
            env: BTreeMap::new(),
        };
        let e = Harness::Acp(h.clone()).validate("harness").unwrap_err();
        assert!(e.to_string().starts_with("harness.command"), "{e}");
        h.command = None;
        h.env.insert("1BAD".into(), "v".into());
        let e = Harness::Acp(h).validate("harness").unwrap_err();
        assert!(e.to_string().starts_with("harness.env.1BAD"), "{e}");
    }

    #[test]
    fn every_known_adapter_has_a_row() {
        for a in AcpAdapter::ALL {
            assert_eq!(adapter_spec(a).is_some(), a != AcpAdapter::Custom, "{a:?}");
        }
        for row in ADAPTERS {
            // It runs from the agents' prefix (directly, or through a variable).
            let from_prefix = row.command.iter().any(|a| a.starts_with(AGENTS_PREFIX))
                || row.env.iter().any(|(_, v)| v.starts_with(AGENTS_PREFIX));
            assert!(from_prefix, "{:?}", row.adapter);
            assert!(
                !row.version.is_empty() && !row.wires.is_empty(),
                "{:?}",
                row.adapter
            );
            assert_eq!(row.runbook, AGENTS_RUNBOOK);
        }
    }
}
