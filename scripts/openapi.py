#!/usr/bin/env python3
"""Generates crates/paddock-server/openapi.json: `python3 scripts/openapi.py crates/paddock-server/openapi.json`.

The committed document is the source of truth that the drift test checks against the router;
edit this script and regenerate when routes or schemas change."""
import json
import sys

S = "#/components/schemas/"
P = "#/components/parameters/"
R = "#/components/responses/"
H = "#/components/headers/"


def ref(name):
    return {"$ref": S + name}


def nullable(schema):
    """`schema` or null. Refs are wrapped in anyOf; plain types get a type list."""
    if "$ref" in schema or "oneOf" in schema or "anyOf" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    s = dict(schema)
    t = s["type"]
    s["type"] = (t if isinstance(t, list) else [t]) + ["null"]
    if "enum" in s:
        s["enum"] = list(s["enum"]) + [None]
    return s


def desc(schema, text):
    s = dict(schema)
    s["description"] = text
    return s


def obj(props, required=(), closed=False, description=None, **extra):
    o = {"type": "object"}
    if description:
        o["description"] = description
    if required:
        o["required"] = list(required)
    o["properties"] = props
    if closed:
        o["additionalProperties"] = False
    o.update(extra)
    return o


def const(v, description=None):
    s = {"type": "string", "const": v}
    if description:
        s["description"] = description
    return s


STR = {"type": "string"}
BOOL = {"type": "boolean"}
TS = {"type": "string", "format": "date-time", "description": "RFC 3339 time in UTC with microseconds."}
TS_NULL = {"type": ["string", "null"], "format": "date-time"}
UINT = {"type": "integer", "minimum": 0}
STR_LIST = {"type": "array", "items": STR}

schemas = {}

# ------------------------------------------------------------------ shared

schemas["Metadata"] = {
    "type": "object",
    "description": "Free-form string pairs: at most 16 pairs, keys 1 to 64 characters, values at most 512 characters (error code `invalid_metadata`).",
    "maxProperties": 16,
    "propertyNames": {"minLength": 1, "maxLength": 64},
    "additionalProperties": {"type": "string", "maxLength": 512},
}
schemas["MetadataPatch"] = {
    "type": "object",
    "description": "A metadata patch: a string upserts the key, null deletes it; keys not named are kept. The merged map must obey the Metadata limits.",
    "propertyNames": {"minLength": 1, "maxLength": 64},
    "additionalProperties": {"type": ["string", "null"], "maxLength": 512},
}
schemas["Money"] = obj(
    {
        "amount": {
            "type": "string",
            "pattern": "^[0-9]*\\.?[0-9]*$",
            "description": "A non-negative decimal string in minor units (cents for USD), e.g. \"1250\".",
            "examples": ["1250"],
        },
        "currency": {"type": "string", "const": "USD", "description": "Only \"USD\" is supported."},
    },
    required=["amount", "currency"],
    closed=True,
    description="An amount of money, as on the wire.",
)

# ------------------------------------------------------------------ agents: model

EFFORTS = ["low", "medium", "high", "xhigh", "max"]
schemas["Effort"] = obj(
    {"type": {"type": "string", "enum": EFFORTS}},
    required=["type"],
    closed=True,
    description="A reasoning effort level in object form.",
)
schemas["ModelConfig"] = obj(
    {
        "id": {"type": "string", "minLength": 1, "maxLength": 256, "description": "Model id, e.g. `claude-sonnet-4-6`."},
        "effort": nullable(ref("Effort")),
        "inference_geo": {"type": ["string", "null"]},
        "speed": {"type": "string", "enum": ["standard", "fast"], "description": "Defaults to `standard`."},
    },
    required=["id", "effort", "inference_geo", "speed"],
    description="The resolved model configuration (always the object form in responses).",
)
schemas["ModelConfigParam"] = obj(
    {
        "id": {"type": "string", "minLength": 1, "maxLength": 256},
        "effort": {
            "description": "A level string or `{\"type\": level}`.",
            "anyOf": [
                {"type": "string", "enum": EFFORTS},
                ref("Effort"),
                {"type": "null"},
            ],
        },
        "inference_geo": {"type": ["string", "null"]},
        "speed": {"type": ["string", "null"], "enum": ["standard", "fast", None]},
    },
    required=["id"],
    closed=True,
    description="The object form of `model` in a request.",
)
schemas["ModelParam"] = {
    "description": "`model` in a request: a bare model id or a config object.",
    "oneOf": [
        {"type": "string", "minLength": 1, "maxLength": 256, "description": "A model id; resolved to the object form."},
        ref("ModelConfigParam"),
    ],
}

# ------------------------------------------------------------------ agents: tools

schemas["PermissionPolicy"] = obj(
    {"type": {"type": "string", "enum": ["always_allow", "always_ask", "auto"]}},
    required=["type"],
    closed=True,
    description="How tool calls are permitted: `always_allow`, `always_ask` (the session idles with `requires_action` until the client confirms), or `auto` (the server judges each call).",
)
schemas["ToolDefaults"] = obj(
    {
        "enabled": {"type": ["boolean", "null"], "description": "Defaults to true."},
        "permission_policy": nullable(ref("PermissionPolicy")),
    },
    closed=True,
    description="Defaults applied to every tool of a toolset. Always fully resolved in responses.",
)
BUILTIN = ["bash", "edit", "read", "write", "glob", "grep", "web_fetch", "web_search"]
DOMAINS = {"type": ["array", "null"], "items": STR, "minItems": 1, "maxItems": 64}
schemas["BuiltinToolConfig"] = obj(
    {
        "name": {"type": "string", "enum": BUILTIN},
        "type": {"type": ["string", "null"], "enum": BUILTIN + [None], "description": "Must equal `name` when given; always set in responses."},
        "enabled": {"type": ["boolean", "null"]},
        "permission_policy": nullable(ref("PermissionPolicy")),
        "allowed_domains": desc(DOMAINS, "web_fetch / web_search: 1 to 64 domains when given."),
        "blocked_domains": desc(DOMAINS, "web_fetch / web_search: 1 to 64 domains when given."),
        "max_content_tokens": {"type": ["integer", "null"], "minimum": 0, "description": "web_fetch only."},
        "url_sources": {"description": "web_fetch only: `{user_input?, server_tool_results?, client_tool_results?}`."},
        "user_location": {"description": "web_search only: `{type: \"approximate\", city?, region?, country?, timezone?}`."},
    },
    required=["name"],
    closed=True,
    description="A per-tool override inside `agent_toolset_20260401`. Responses list all eight built-in tools, resolved.",
)
schemas["McpToolConfig"] = obj(
    {
        "name": {"type": "string", "minLength": 1, "maxLength": 256},
        "enabled": {"type": ["boolean", "null"]},
        "permission_policy": nullable(ref("PermissionPolicy")),
    },
    required=["name"],
    closed=True,
    description="A per-tool override inside an `mcp_toolset`.",
)
schemas["AgentToolset"] = obj(
    {
        "type": const("agent_toolset_20260401"),
        "default_config": nullable(ref("ToolDefaults")),
        "configs": nullable({"type": "array", "items": ref("BuiltinToolConfig")}),
    },
    required=["type"],
    closed=True,
    description="The built-in tools. May appear at most once. Default policy: `always_allow`.",
)
schemas["McpToolset"] = obj(
    {
        "type": const("mcp_toolset"),
        "mcp_server_name": {"type": "string", "description": "Must match `mcp_servers[].name`; one toolset per server."},
        "default_config": nullable(ref("ToolDefaults")),
        "configs": nullable({"type": "array", "items": ref("McpToolConfig")}),
    },
    required=["type", "mcp_server_name"],
    closed=True,
    description="The tools of one MCP server. Default policy: `always_ask`.",
)
schemas["CustomTool"] = obj(
    {
        "type": const("custom"),
        "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,128}$", "description": "Unique among custom tools."},
        "description": {"type": "string", "minLength": 1, "maxLength": 10000},
        "input_schema": {
            "type": "object",
            "description": "A JSON Schema whose `type` is \"object\".",
            "required": ["type"],
            "properties": {"type": {"type": "string", "const": "object"}},
        },
    },
    required=["type", "name", "description", "input_schema"],
    closed=True,
    description="A client-executed tool: the session emits `agent.custom_tool_use` and waits for `user.custom_tool_result`.",
)
schemas["Tool"] = {
    "description": "One entry of `tools[]` (at most 256 in all), discriminated by `type`.",
    "oneOf": [ref("AgentToolset"), ref("McpToolset"), ref("CustomTool")],
    "discriminator": {
        "propertyName": "type",
        "mapping": {
            "agent_toolset_20260401": S + "AgentToolset",
            "mcp_toolset": S + "McpToolset",
            "custom": S + "CustomTool",
        },
    },
}
schemas["McpServer"] = obj(
    {
        "type": const("url"),
        "name": {"type": "string", "minLength": 1, "maxLength": 255, "description": "Unique; must be referenced by an `mcp_toolset`."},
        "url": {"type": "string", "pattern": "^https?://", "description": "An http:// or https:// URL."},
    },
    required=["type", "name", "url"],
    closed=True,
    description="An MCP server the agent may use (at most 20).",
)
SKILL_VERSION = {"type": ["string", "null"], "description": "Omitted or null = `latest`; always set in responses."}
schemas["Skill"] = {
    "description": "A skill, discriminated by `type`.",
    "oneOf": [
        obj(
            {"type": const("anthropic"), "skill_id": {"type": "string", "minLength": 1, "maxLength": 256}, "version": SKILL_VERSION},
            required=["type", "skill_id"],
            closed=True,
        ),
        obj(
            {"type": const("custom"), "skill_id": {"type": "string", "pattern": "^skill_", "maxLength": 256}, "version": SKILL_VERSION},
            required=["type", "skill_id"],
            closed=True,
        ),
    ],
}
schemas["ExecutionIdentity"] = {
    "description": "Whose identity tool calls run under. Omitted or null = `{\"type\": \"service_account\"}`.",
    "oneOf": [
        obj({"type": const("service_account")}, required=["type"], closed=True),
        obj(
            {"type": const("aws_role"), "role_arn": {"type": "string", "minLength": 1, "maxLength": 2048}},
            required=["type", "role_arn"],
            closed=True,
        ),
    ],
}
schemas["Multiagent"] = {
    "type": "object",
    "description": "Multiagent configuration (`coordinator` or `multiagent_20261001`), stored as given.",
    "required": ["type"],
    "properties": {"type": {"type": "string", "enum": ["coordinator", "multiagent_20261001"]}},
    "additionalProperties": True,
}
schemas["Harness"] = {
    "description": "Paddock's field: which agent implementation runs the session. `builtin` is Paddock's own agent loop in the orchestrator; an ACP harness runs an Agent Client Protocol agent inside the runner (docs/agents-acp.md), given as the object or, on input, as `acp:ADAPTER`; `shell` plain shell tasks. Defaults to `builtin`.",
    "oneOf": [
        {"type": "string", "enum": ["builtin", "shell"]},
        {
            "type": "string",
            "description": "Input shorthand of an ACP harness (`openclaw` is accepted for `acp:openclaw`).",
            "enum": ["acp:openclaw", "acp:claude-code", "acp:codex", "acp:gemini", "openclaw"],
        },
        obj(
            {
                "type": {"type": "string", "enum": ["acp"]},
                "adapter": {"type": "string", "enum": ["openclaw", "claude-code", "codex", "gemini", "custom"]},
                "command": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 64,
                            "description": "`custom` only: the program and arguments that start the agent speaking ACP on stdio."},
                "env": {"type": "object", "additionalProperties": {"type": "string"}, "maxProperties": 64},
            },
            required=["type", "adapter"],
            closed=True,
        ),
    ],
}
schemas["Quotas"] = obj(
    {
        "max_tokens": {"type": ["integer", "null"], "minimum": 0},
        "max_turns": {"type": ["integer", "null"], "minimum": 0, "maximum": 4294967295},
        "max_wall_seconds": {"type": ["integer", "null"], "minimum": 0},
        "max_list_cost": nullable(ref("Money")),
    },
    closed=True,
    description="Paddock's field: per-session limits the orchestrator enforces for sessions of this agent. A null or missing limit means no limit.",
)
schemas["ToolProfile"] = {
    "type": "string",
    "enum": ["messaging", "standard", "full"],
    "description": "Paddock's field: a shorthand for an `agent_toolset_20260401` entry, expanded into `tools` when the agent is written. `messaging`: no built-in tools. `standard`: read, write, edit, glob, grep (always allowed) and bash under `auto`. `full`: every built-in tool Paddock runs, always allowed (web_fetch only where the runner's network allows it; web_search stays disabled). Cannot be combined with an explicit `agent_toolset_20260401` entry.",
}
EXEC_PROFILE_AGENT = "Paddock's field: the agent's default execution profile (backend, image/runbook, resource limits, network policy, timeouts), used by sessions that name none. 1 to 128 characters."

agent_props = {
    "id": {"type": "string", "description": "`agent_…`"},
    "type": const("agent"),
    "name": {"type": "string"},
    "version": {"type": "integer", "minimum": 1, "description": "Starts at 1 and goes up by one with each change."},
    "description": {"type": ["string", "null"]},
    "system": {"type": ["string", "null"], "description": "The system prompt."},
    "model": ref("ModelConfig"),
    "tools": {"type": "array", "items": ref("Tool"), "description": "Tools in resolved form."},
    "mcp_servers": {"type": "array", "items": ref("McpServer")},
    "skills": {"type": "array", "items": ref("Skill")},
    "metadata": ref("Metadata"),
    "execution_identity": ref("ExecutionIdentity"),
    "multiagent": nullable(ref("Multiagent")),
    "harness": ref("Harness"),
    "tool_profile": nullable(ref("ToolProfile")),
    "quotas": ref("Quotas"),
    "execution_profile": {"type": ["string", "null"], "description": EXEC_PROFILE_AGENT},
    "created_at": TS,
    "updated_at": TS,
    "archived_at": TS_NULL,
}
schemas["Agent"] = obj(
    agent_props,
    required=list(agent_props),
    description="An agent version (`type: \"agent\"`): reusable, versioned configuration. Every change writes an immutable version. Paddock's additive fields: `harness`, `tool_profile`, `quotas`, `execution_profile`.",
)
schemas["AgentCreate"] = obj(
    {
        "model": ref("ModelParam"),
        "name": {"type": "string", "minLength": 1, "maxLength": 256},
        "description": {"type": ["string", "null"], "description": "`\"\"` is stored as null."},
        "system": {"type": ["string", "null"], "description": "`\"\"` is stored as null."},
        "tools": nullable({"type": "array", "items": ref("Tool"), "maxItems": 256}),
        "mcp_servers": nullable({"type": "array", "items": ref("McpServer"), "maxItems": 20}),
        "skills": nullable({"type": "array", "items": ref("Skill")}),
        "metadata": nullable(ref("Metadata")),
        "execution_identity": nullable(ref("ExecutionIdentity")),
        "multiagent": nullable(ref("Multiagent")),
        "harness": nullable(desc(ref("Harness"), "Paddock's field: which agent implementation runs sessions of this agent (default `builtin`).")),
        "tool_profile": nullable(ref("ToolProfile")),
        "quotas": nullable(desc(ref("Quotas"), "Paddock's field: per-session limits (default: none).")),
        "execution_profile": {"type": ["string", "null"], "minLength": 1, "maxLength": 128, "description": EXEC_PROFILE_AGENT},
    },
    required=["model", "name"],
    closed=True,
    description="Body of `POST /v1/agents`. Unknown fields are refused. Paddock's additive fields: `harness`, `tool_profile`, `quotas`, `execution_profile`.",
)
schemas["AgentUpdate"] = obj(
    {
        "version": {"type": ["integer", "null"], "minimum": 1, "description": "Optimistic concurrency: when given and not the current version, the update fails with 409 (`version_conflict`)."},
        "name": {"type": "string", "minLength": 1, "maxLength": 256, "description": "Cannot be cleared."},
        "model": desc(ref("ModelParam"), "Cannot be cleared; an object replaces the whole model config."),
        "description": {"type": ["string", "null"], "description": "null or `\"\"` clears."},
        "system": {"type": ["string", "null"], "description": "null or `\"\"` clears."},
        "tools": nullable({"type": "array", "items": ref("Tool"), "maxItems": 256}),
        "mcp_servers": nullable({"type": "array", "items": ref("McpServer"), "maxItems": 20}),
        "skills": nullable({"type": "array", "items": ref("Skill")}),
        "metadata": nullable(ref("MetadataPatch")),
        "execution_identity": nullable(ref("ExecutionIdentity")),
        "multiagent": nullable(ref("Multiagent")),
        "harness": nullable(desc(ref("Harness"), "Paddock's field; null resets to `builtin`.")),
        "tool_profile": nullable(desc(ref("ToolProfile"), "Replaces the built-in toolset with the profile's; null only forgets the label.")),
        "quotas": nullable(desc(ref("Quotas"), "Paddock's field; replaces the quotas, null removes them.")),
        "execution_profile": {"type": ["string", "null"], "minLength": 1, "maxLength": 128, "description": "Paddock's field: the default execution profile; null clears."},
    },
    closed=True,
    description="Body of `POST /v1/agents/{agent_id}`. Every field is optional: omitted = keep, null = clear (or reset to the default); arrays replace. An update that changes nothing returns the current version without writing a new one. Unknown fields are refused.",
)

# ------------------------------------------------------------------ environments

schemas["Networking"] = {
    "description": "Network policy of a cloud environment (response form, every field present).",
    "oneOf": [
        obj({"type": const("unrestricted")}, required=["type"]),
        obj(
            {
                "type": const("limited"),
                "allowed_hosts": {"type": "array", "items": STR, "description": "Host names or `*.domain` patterns."},
                "allow_mcp_servers": BOOL,
                "allow_package_managers": BOOL,
            },
            required=["type", "allowed_hosts", "allow_mcp_servers", "allow_package_managers"],
        ),
    ],
}
schemas["NetworkingParam"] = {
    "description": "Network policy in a request. Under `limited`, the booleans default to false.",
    "oneOf": [
        obj({"type": const("unrestricted")}, required=["type"], closed=True),
        obj(
            {
                "type": const("limited"),
                "allowed_hosts": {"type": ["array", "null"], "items": {"type": "string", "description": "A DNS name or `*.domain`; no scheme, port or path."}},
                "allow_mcp_servers": {"type": ["boolean", "null"]},
                "allow_package_managers": {"type": ["boolean", "null"]},
            },
            required=["type"],
            closed=True,
        ),
    ],
}
PKG_LIST = {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 512}}
schemas["Packages"] = obj(
    {
        "type": const("packages"),
        "apt": PKG_LIST,
        "cargo": PKG_LIST,
        "gem": PKG_LIST,
        "go": PKG_LIST,
        "npm": PKG_LIST,
        "pip": PKG_LIST,
    },
    required=["type", "apt", "cargo", "gem", "go", "npm", "pip"],
    description="Packages installed into the sandbox, by package manager (every list present in responses).",
)
PKG_LIST_NULL = nullable(PKG_LIST)
schemas["PackagesParam"] = obj(
    {
        "type": {"type": ["string", "null"], "enum": ["packages", None]},
        "apt": PKG_LIST_NULL,
        "cargo": PKG_LIST_NULL,
        "gem": PKG_LIST_NULL,
        "go": PKG_LIST_NULL,
        "npm": PKG_LIST_NULL,
        "pip": PKG_LIST_NULL,
    },
    closed=True,
    description="Packages in a request; on update, omitted lists are kept. Under `limited` networking, packages need `allow_package_managers: true`.",
)
schemas["EnvConfig"] = {
    "description": "The resolved environment config, discriminated by `type`.",
    "oneOf": [
        obj(
            {"type": const("cloud"), "networking": ref("Networking"), "packages": ref("Packages")},
            required=["type", "networking", "packages"],
        ),
        obj({"type": const("self_hosted")}, required=["type"]),
    ],
}
schemas["EnvConfigParam"] = {
    "description": "`config` in a request. Default: cloud, unrestricted, no packages. The type is fixed at creation (`invalid_config_type_change`); on update omitted sub-fields are kept.",
    "oneOf": [
        obj(
            {
                "type": const("cloud"),
                "networking": nullable(ref("NetworkingParam")),
                "packages": nullable(ref("PackagesParam")),
            },
            required=["type"],
            closed=True,
        ),
        obj({"type": const("self_hosted")}, required=["type"], closed=True),
    ],
}
schemas["BackendKind"] = {
    "type": "string",
    "enum": ["local", "docker", "ssh", "kubernetes"],
    "description": "Paddock's field: the compute backend runners of this environment run on.",
}
schemas["ResourceLimits"] = obj(
    {
        "cpu": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 1024, "description": "Number of CPUs."},
        "memory_mb": {"type": ["integer", "null"], "minimum": 1},
        "pids": {"type": ["integer", "null"], "minimum": 1},
        "disk_mb": {"type": ["integer", "null"], "minimum": 1},
    },
    closed=True,
    description="Paddock's field: resource limits for runners of this environment. A null or missing limit means no limit.",
)
ENV_NAME = "^[A-Za-z_][A-Za-z0-9_]*$"
RUNBOOK = "Paddock's field: the runbook (image) runners of this environment start from."
EXEC_PROFILE_ENV = "Paddock's field: the execution profile sessions in this environment use when neither the session nor its agent names one."
ENV_VARS = "Paddock's field: environment variables set in the sandbox. Names are letters, digits and `_`, not starting with a digit; values may not contain NUL."
IDLE_ENV = "Paddock's field: the default `idle_timeout_secs` of runners created from this environment — seconds without exec or file activity before such a runner is stopped (0: never; null: the server's default). Copied at creation: a change does not affect existing runners."
env_props = {
    "id": {"type": "string", "description": "`env_…`"},
    "type": const("environment"),
    "name": STR,
    "description": {"type": ["string", "null"]},
    "metadata": ref("Metadata"),
    "scope": {"type": ["string", "null"], "enum": ["organization", "account", None]},
    "config": ref("EnvConfig"),
    "runbook": {"type": ["string", "null"], "description": RUNBOOK},
    "backend": nullable(ref("BackendKind")),
    "execution_profile": {"type": ["string", "null"], "description": EXEC_PROFILE_ENV},
    "env": {"type": "object", "propertyNames": {"pattern": ENV_NAME}, "additionalProperties": STR, "description": ENV_VARS},
    "resource_limits": ref("ResourceLimits"),
    "idle_timeout_secs": {"type": ["integer", "null"], "minimum": 0, "description": IDLE_ENV},
    "created_at": TS,
    "updated_at": TS,
    "archived_at": TS_NULL,
}
schemas["Environment"] = obj(
    env_props,
    required=list(env_props),
    description="A sandbox template (`type: \"environment\"`). Archived environments take no new sessions and cannot be changed. Paddock's additive fields: `runbook`, `backend`, `execution_profile`, `env`, `resource_limits`, `idle_timeout_secs`.",
)
schemas["EnvironmentCreate"] = obj(
    {
        "name": {"type": "string", "minLength": 1, "maxLength": 256},
        "config": nullable(ref("EnvConfigParam")),
        "description": {"type": ["string", "null"]},
        "metadata": nullable(ref("Metadata")),
        "scope": {"type": ["string", "null"], "enum": ["organization", "account", None]},
        "runbook": {"type": ["string", "null"], "description": RUNBOOK},
        "backend": nullable(ref("BackendKind")),
        "execution_profile": {"type": ["string", "null"], "description": EXEC_PROFILE_ENV},
        "env": {"type": ["object", "null"], "propertyNames": {"pattern": ENV_NAME}, "additionalProperties": STR, "description": ENV_VARS},
        "resource_limits": nullable(ref("ResourceLimits")),
        "idle_timeout_secs": {"type": ["integer", "null"], "minimum": 0, "description": IDLE_ENV},
    },
    required=["name"],
    closed=True,
    description="Body of `POST /v1/environments`. Unknown fields are refused. Paddock's additive fields: `runbook`, `backend`, `execution_profile`, `env`, `resource_limits`, `idle_timeout_secs`.",
)
schemas["EnvironmentUpdate"] = obj(
    {
        "name": {"type": "string", "minLength": 1, "maxLength": 256, "description": "Cannot be cleared."},
        "config": nullable(desc(ref("EnvConfigParam"), "Merged over the current config; null resets it to the default of the same type.")),
        "description": {"type": ["string", "null"], "description": "null clears; `\"\"` is stored as empty."},
        "metadata": nullable(desc(ref("MetadataPatch"), "Patch; here `\"\"` deletes a key too. null keeps the metadata.")),
        "scope": {"type": ["string", "null"], "enum": ["organization", "account", None]},
        "runbook": {"type": ["string", "null"], "description": "Paddock's field; null clears."},
        "backend": nullable(desc(ref("BackendKind"), "Paddock's field; null clears.")),
        "execution_profile": {"type": ["string", "null"], "description": "Paddock's field; null clears."},
        "env": {
            "type": ["object", "null"],
            "propertyNames": {"pattern": ENV_NAME},
            "additionalProperties": {"type": ["string", "null"]},
            "description": "Paddock's field, a patch: a string sets the variable, null removes it; null for the whole map removes every variable.",
        },
        "resource_limits": nullable(desc(ref("ResourceLimits"), "Paddock's field; replaces the limits, null removes them.")),
        "idle_timeout_secs": {"type": ["integer", "null"], "minimum": 0, "description": "Paddock's field: the idle timeout for runners created from now on; null clears (the server's default applies)."},
    },
    closed=True,
    description="Body of `POST /v1/environments/{environment_id}`. Every field is optional: omitted = keep, null = clear. Archived environments refuse updates with 400 `environment_archived`. Unknown fields are refused.",
)

# ------------------------------------------------------------------ sessions

schemas["SessionStatus"] = {
    "type": "string",
    "enum": ["rescheduling", "running", "idle", "terminated"],
    "description": "`rescheduling` (transient error, retrying), `running`, `idle` (waiting for input; new sessions start idle) or `terminated`.",
}
schemas["Budget"] = obj(
    {"type": const("limit"), "max_list_cost": ref("Money")},
    required=["type", "max_list_cost"],
    closed=True,
    description="A spending cap for a session. Omitted = uncapped.",
)
schemas["Usage"] = obj(
    {
        "input_tokens": UINT,
        "output_tokens": UINT,
        "cache_read_input_tokens": UINT,
        "cache_creation": obj(
            {"ephemeral_5m_input_tokens": UINT, "ephemeral_1h_input_tokens": UINT},
            required=["ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens"],
        ),
        "active_seconds": {"type": "number", "minimum": 0},
        "list_cost": ref("Money"),
        "server_tool_use": obj(
            {"web_search_requests": UINT, "web_fetch_requests": UINT},
            required=["web_search_requests", "web_fetch_requests"],
        ),
    },
    required=["input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation", "active_seconds", "list_cost", "server_tool_use"],
    description="Cumulative usage of a session.",
)
schemas["SessionStats"] = obj(
    {
        "active_seconds": {"type": "number", "minimum": 0},
        "duration_seconds": {"type": "number", "minimum": 0, "description": "Seconds since creation, computed when the response is made."},
        "turns": {"type": "integer", "minimum": 0, "description": "Paddock's field: turns the agent has started (what the `max_turns` quota counts)."},
    },
    required=["active_seconds", "duration_seconds"],
)
CHECKOUT = {
    "description": "`{type: \"branch\", name}` or `{type: \"commit\", sha}`.",
    "oneOf": [
        obj({"type": const("branch"), "name": STR}, required=["type", "name"]),
        obj({"type": const("commit"), "sha": STR}, required=["type", "sha"]),
        {"type": "null"},
    ],
}
schemas["SessionResource"] = obj(
    {
        "id": {"type": "string", "description": "`sesrsc_…`"},
        "type": const("github_repository"),
        "url": STR,
        "checkout": CHECKOUT,
        "mount_path": STR,
        "created_at": TS,
        "updated_at": TS,
    },
    required=["id", "type", "url", "checkout", "mount_path", "created_at", "updated_at"],
    description="A resource mounted into the session's sandbox. Paddock supports GitHub repositories only.",
)
schemas["SessionResourceParam"] = obj(
    {
        "type": const("github_repository"),
        "url": {"type": "string", "pattern": "^https://"},
        "checkout": CHECKOUT,
        "mount_path": {"type": ["string", "null"], "pattern": "^/", "description": "Absolute, without `..`. Default `/workspace/<repo>`."},
    },
    required=["type", "url"],
    closed=True,
    description="A resource in `POST /v1/sessions`. `file` and `memory_store` resources and `authorization_token` are refused with 400.",
)
schemas["AgentReference"] = obj(
    {
        "type": const("agent"),
        "id": {"type": "string", "minLength": 1, "maxLength": 256},
        "version": {"type": ["integer", "null"], "minimum": 1, "description": "Omitted = latest."},
    },
    required=["type", "id"],
    closed=True,
)
schemas["AgentWithOverrides"] = obj(
    {
        "type": const("agent_with_overrides"),
        "id": {"type": "string", "minLength": 1, "maxLength": 256},
        "version": {"type": ["integer", "null"], "minimum": 1},
        "model": nullable(ref("ModelParam")),
        "system": {"type": ["string", "null"], "maxLength": 100000, "description": "null clears."},
        "tools": nullable({"type": "array", "items": ref("Tool")}),
        "mcp_servers": nullable({"type": "array", "items": ref("McpServer")}),
        "skills": nullable({"type": "array", "items": ref("Skill")}),
    },
    required=["type", "id"],
    closed=True,
    description="An agent with values replaced for this session only.",
)
schemas["SessionAgentUpdate"] = obj(
    {
        "tools": nullable({"type": "array", "items": ref("Tool")}),
        "mcp_servers": nullable({"type": "array", "items": ref("McpServer")}),
    },
    closed=True,
    description="Replaces the session's agent tools / MCP servers (null clears). Refused with 409 while the session is running.",
)
EXEC_PROFILE_SESSION = "Paddock's field: the execution profile that runs this session's runner — the one given at creation, else the agent's default, else the environment's."
session_props = {
    "id": {"type": "string", "description": "`sesn_…`"},
    "type": const("session"),
    "status": ref("SessionStatus"),
    "agent": desc(ref("Agent"), "The agent snapshot this session runs, pinned at creation (after overrides)."),
    "environment_id": STR,
    "title": {"type": ["string", "null"]},
    "metadata": ref("Metadata"),
    "resources": {"type": "array", "items": ref("SessionResource")},
    "vault_ids": {"type": "array", "items": STR},
    "outcome_evaluations": {"type": "array", "items": {"type": "object"}},
    "stats": ref("SessionStats"),
    "usage": ref("Usage"),
    "budget": nullable(ref("Budget")),
    "deployment_id": {"type": ["string", "null"], "description": "Always null: Paddock has no deployments."},
    "runner_id": {"type": ["string", "null"], "description": "Paddock's field: the runner executing this session's tools, once one exists (`run_…`)."},
    "execution_profile": {"type": ["string", "null"], "description": EXEC_PROFILE_SESSION},
    "created_at": TS,
    "updated_at": TS,
    "archived_at": TS_NULL,
}
schemas["Session"] = obj(
    session_props,
    required=list(session_props),
    description="A durable conversation of an agent in an environment (`type: \"session\"`). Paddock's additive fields: `runner_id`, `execution_profile`.",
)
schemas["SessionCreate"] = obj(
    {
        "agent": {
            "description": "An agent id (latest version, pinned now), `{type: \"agent\", id, version?}` or `{type: \"agent_with_overrides\", …}`. Archived agents are refused (400 `agent_archived`).",
            "oneOf": [
                {"type": "string", "minLength": 1, "maxLength": 256},
                ref("AgentReference"),
                ref("AgentWithOverrides"),
            ],
        },
        "environment_id": {"type": "string", "minLength": 1, "maxLength": 256, "description": "Archived environments are refused (400 `environment_archived`)."},
        "title": {"type": ["string", "null"], "maxLength": 1024},
        "metadata": nullable(ref("Metadata")),
        "resources": nullable({"type": "array", "items": ref("SessionResourceParam")}),
        "vault_ids": nullable({"type": "array", "items": STR, "description": "Vaults (`vlt_…`) whose `environment_variable` credentials are set in the sandbox of the session's runner. An unknown vault is refused with 404 `vault_not_found`, an archived one with 400."}),
        "initial_events": nullable({"type": "array", "items": ref("UserMessage"), "maxItems": 50, "description": "Only `user.message` may start a session."}),
        "budget": nullable(ref("Budget")),
        "execution_profile": {"type": ["string", "null"], "description": "Paddock's field: the execution profile for this session; defaults to the agent's, then the environment's."},
    },
    required=["agent", "environment_id"],
    closed=True,
    description="Body of `POST /v1/sessions`. Unknown fields are refused. Paddock's additive field: `execution_profile`.",
)
schemas["SessionUpdate"] = obj(
    {
        "title": {"type": ["string", "null"]},
        "metadata": nullable(desc(ref("MetadataPatch"), "Patch; null keeps the metadata.")),
        "agent": nullable(ref("SessionAgentUpdate")),
        "budget": nullable(desc(ref("Budget"), "Replaces the budget, null removes it; a budget cannot be added to a session created without one.")),
        "vault_ids": {"description": "Reserved: any value is refused with 400."},
    },
    closed=True,
    description="Body of `POST /v1/sessions/{session_id}`. Every field is optional. A change emits a `session.updated` event. Archived sessions refuse updates with 409. Unknown fields are refused.",
)

# ------------------------------------------------------------------ events

SOURCE = {
    "type": "object",
    "required": ["type"],
    "properties": {"type": STR},
    "additionalProperties": True,
}
schemas["TextBlock"] = obj({"type": const("text"), "text": {"type": "string", "minLength": 1}}, required=["type", "text"], closed=True)
schemas["ImageBlock"] = obj(
    {
        "type": const("image"),
        "source": {
            **SOURCE,
            "properties": {"type": {"type": "string", "enum": ["base64", "url", "file"]}},
            "description": "`{type: \"base64\", media_type, data}`, `{type: \"url\", url}` or `{type: \"file\", file_id}`.",
        },
    },
    required=["type", "source"],
    closed=True,
)
schemas["DocumentBlock"] = obj(
    {
        "type": const("document"),
        "source": {
            **SOURCE,
            "properties": {"type": {"type": "string", "enum": ["base64", "text", "url", "file"]}},
            "description": "base64, `{type: \"text\", media_type: \"text/plain\", data}`, url or file.",
        },
        "title": STR,
        "context": STR,
    },
    required=["type", "source"],
    closed=True,
)
schemas["RedactedBlock"] = obj({"type": const("redacted")}, required=["type"], closed=True)
schemas["SearchResultBlock"] = obj(
    {
        "type": const("search_result"),
        "source": {"type": "string", "description": "A URL."},
        "title": STR,
        "content": {"type": "array", "items": {"type": "object"}, "description": "`{type: \"text\", text}` entries."},
        "citations": {"type": "object", "description": "`{enabled: bool}`."},
    },
    required=["type", "source", "title", "content"],
    closed=True,
)
schemas["ContentBlock"] = {
    "description": "A content block (request and response are the same shape), discriminated by `type`.",
    "oneOf": [ref("TextBlock"), ref("ImageBlock"), ref("DocumentBlock"), ref("RedactedBlock"), ref("SearchResultBlock")],
    "discriminator": {
        "propertyName": "type",
        "mapping": {
            "text": S + "TextBlock",
            "image": S + "ImageBlock",
            "document": S + "DocumentBlock",
            "redacted": S + "RedactedBlock",
            "search_result": S + "SearchResultBlock",
        },
    },
}
THREAD = {"type": "string", "description": "Subagent thread; absent = all threads / the primary thread."}
schemas["UserMessage"] = obj(
    {"type": const("user.message"), "content": {"type": "array", "items": ref("ContentBlock"), "minItems": 1}},
    required=["type", "content"],
    closed=True,
    description="A user turn.",
)
schemas["UserInterrupt"] = obj(
    {"type": const("user.interrupt"), "session_thread_id": THREAD},
    required=["type"],
    closed=True,
    description="Stops the running turn.",
)
schemas["UserToolConfirmation"] = obj(
    {
        "type": const("user.tool_confirmation"),
        "tool_use_id": {"type": "string", "minLength": 1, "maxLength": 256, "description": "An `agent.tool_use` / `agent.mcp_tool_use` of this session awaiting confirmation and not yet answered."},
        "result": {"type": "string", "enum": ["allow", "deny"]},
        "deny_message": {"type": "string", "description": "Only with `result: \"deny\"`."},
        "session_thread_id": THREAD,
    },
    required=["type", "tool_use_id", "result"],
    closed=True,
    description="Answers a tool call that awaits confirmation.",
)
schemas["UserCustomToolResult"] = obj(
    {
        "type": const("user.custom_tool_result"),
        "custom_tool_use_id": {"type": "string", "minLength": 1, "maxLength": 256, "description": "An `agent.custom_tool_use` of this session not yet answered."},
        "content": {"type": "array", "items": ref("ContentBlock")},
        "is_error": BOOL,
        "session_thread_id": THREAD,
    },
    required=["type", "custom_tool_use_id"],
    closed=True,
    description="The result of a custom (client-executed) tool.",
)
schemas["UserEvent"] = {
    "description": "An event a client may send, discriminated by `type`. `user.define_outcome`, `user.tool_result` and `system.message` are refused by Paddock with 400.",
    "oneOf": [ref("UserMessage"), ref("UserInterrupt"), ref("UserToolConfirmation"), ref("UserCustomToolResult")],
    "discriminator": {
        "propertyName": "type",
        "mapping": {
            "user.message": S + "UserMessage",
            "user.interrupt": S + "UserInterrupt",
            "user.tool_confirmation": S + "UserToolConfirmation",
            "user.custom_tool_result": S + "UserCustomToolResult",
        },
    },
}
schemas["SendEvents"] = obj(
    {"events": {"type": "array", "items": ref("UserEvent"), "minItems": 1, "maxItems": 100}},
    required=["events"],
    closed=True,
    description="Body of `POST /v1/sessions/{session_id}/events`. The events are appended atomically, in order.",
)
schemas["Event"] = {
    "type": "object",
    "description": "A stored session event: `id`, `type`, `processed_at` and the fields of its type (see the Managed Agents event list; Paddock adds `runner.*` events). Clients should ignore unknown types and fields.",
    "required": ["id", "type", "processed_at"],
    "properties": {
        "id": {"type": "string", "description": "`evt_…`"},
        "type": {"type": "string", "examples": ["user.message", "agent.message", "session.status_idle"]},
        "processed_at": TS,
    },
    "additionalProperties": True,
}
schemas["SentEvents"] = obj(
    {"data": {"type": "array", "items": ref("Event")}},
    required=["data"],
    description="The appended events, echoed with their ids.",
)
schemas["EventStream"] = {
    "type": "string",
    "description": "Server-Sent Events. Every frame is `id: <event id>`, `event: <event type>`, `data: <the Event as one-line JSON>`. Idle streams get `:keep-alive` comment lines. A deleted session ends the stream with a `session.deleted` frame; a failure ends it with an `event: error` frame whose data is the Error envelope.",
}

# ------------------------------------------------------------------ runners

schemas["RunnerState"] = {
    "type": "string",
    "enum": ["creating", "provisioning", "running", "stopping", "stopped", "destroying", "destroyed", "errored"],
    "description": "The runner lifecycle: creating → provisioning → running → stopping → stopped → destroying → destroyed; provisioning, running, stopping and stopped may go to errored, errored may go to destroying, and stopped may go back to provisioning (restart).",
}
schemas["Isolation"] = {
    "type": "string",
    "enum": ["namespaces", "container", "host", "unisolated"],
    "description": "How strongly a runner is isolated from its host: `namespaces` (bubblewrap), `container`, `host` (a separate host over SSH) or `unisolated` (a plain process on the orchestrator's host).",
}
HOSTS = {"type": "array", "items": {"type": "string", "description": "A host name or `*.domain` pattern."}}
schemas["NetworkPolicy"] = {
    "description": "What a runner may reach on the network, discriminated by `type`: `none` (loopback only), `limited` (only `allowed_hosts`, through an egress proxy) or `unrestricted`. A runner gets the narrowest of its profile's policy and its environment's networking (two `limited` policies keep the hosts both allow).",
    "oneOf": [
        obj({"type": const("none")}, required=["type"]),
        obj({"type": const("limited"), "allowed_hosts": HOSTS}, required=["type", "allowed_hosts"]),
        obj({"type": const("unrestricted")}, required=["type"]),
    ],
}
schemas["Enforcement"] = {
    "type": "string",
    "enum": ["cgroup_v1", "cgroup_v2", "rlimit", "container", "not_enforced"],
    "description": "How a limit is enforced: a cgroup (v1 or v2) controller, an rlimit (memory falls back to an address-space `ulimit -v`), the container runtime, or `not_enforced` (asked for, but nothing on this host enforces it).",
}
ENFORCEMENT_NULL = nullable(ref("Enforcement"))
schemas["SeccompLevel"] = {
    "type": "string",
    "enum": ["default", "strict", "unconfined"],
    "description": "A runner's system-call filter (docs/security.md): `default` denies what an agent's workload never needs (kernel modules, kexec, bpf, perf, mounts, new namespaces, ptrace, other processes' memory, keyrings, userfaultfd, file handles, port I/O, the clock) with EPERM; `strict` also denies io_uring, personality and the NUMA memory-policy calls; `unconfined` applies no filter of Paddock's (warned at start).",
}
schemas["Enforced"] = obj(
    {"cpu": ENFORCEMENT_NULL, "memory": ENFORCEMENT_NULL, "pids": ENFORCEMENT_NULL, "disk": ENFORCEMENT_NULL,
     "seccomp": desc(ref("SeccompLevel"), "The system-call filter the backend applies; absent: none of Paddock's (an `unconfined` profile, or a plain-process local runner)."),
     "landlock": obj({"abi": {"type": "integer", "description": "The kernel's Landlock ABI version (0: none)."},
                      "status": {"type": "string", "enum": ["fully_enforced", "partially_enforced", "not_enforced"]}},
                     required=["abi", "status"],
                     description="What Landlock confines the runner's worker (and everything it runs) to: its workspace, /tmp, /dev and its socket directory writable, the system directories read-only, nothing else; as the worker reports it. `not_enforced`: this kernel has no Landlock.")},
    required=["cpu", "memory", "pids", "disk"],
    description="Limit by limit, how a limit is (or can be) enforced; null: not enforced (on a runner, usually because no limit was asked for).",
)
ENV_MAP = {"type": "object", "additionalProperties": STR}
runner_props = {
        "id": {"type": "string", "description": "`run_…`"},
        "type": const("runner"),
        "state": ref("RunnerState"),
        "backend": {"type": "string", "examples": ["local", "docker", "ssh", "kubernetes"]},
        "isolation": ref("Isolation"),
        "execution_profile": {"type": ["string", "null"], "description": "The execution profile the runner was created from."},
        "environment_id": {"type": ["string", "null"]},
        "session_id": {"type": ["string", "null"]},
        "error": {"type": ["string", "null"], "description": "Why the runner is `errored`, when it is."},
        "image": {"type": ["string", "null"], "description": "The image or runbook: the profile's `runbook`, else the environment's (backends without images ignore it)."},
        "network": ref("NetworkPolicy"),
        "limits": desc(ref("ResourceLimits"), "The limits asked for: the profile's, lowered by the environment's `resource_limits`. Every key is present; null means no limit."),
        "enforced": nullable(desc(ref("Enforced"), "How each limit is actually enforced on the backend.")),
        "env": desc(ENV_MAP, "Environment variables set in the sandbox: the environment's `env`, overridden by the `env` given at creation, then changed by updates."),
        "reason": {"type": ["string", "null"], "description": "Why the runner last changed state when no user asked for it — an automatic stop (`idle timeout: …`, `budget reached: …`, `max wall duration reached: …`), pruning (`pruned: …`), `restart`, `restoring snapshot …` — or why it is `errored`. null after a change a user asked for."},
        "started_at": desc(TS_NULL, "When the runner last entered `running`; null until then."),
        "last_activity_at": desc(TS_NULL, "The last exec, cancel or file operation (or the last start, when later). The idle timeout counts from here."),
        "idle_timeout_secs": {"type": ["integer", "null"], "minimum": 0, "description": "Seconds without activity after which the runner is stopped automatically (0: never; null: the server's default, see `idle_timeout_effective_secs` in the runner detail)."},
        "budget": nullable(desc(ref("Money"), "Paddock's per-runner budget: the runner is stopped once its session's list cost reaches it (null: the session's own budget, if any, applies).")),
        "pending_restart": {
            "type": "array",
            "items": {"type": "string", "enum": ["env", "network"]},
            "description": "Settings changed while the runner was running that take effect at its next start (`POST …/restart`, or stop and start); emptied when it enters `running`.",
        },
        "seccomp": desc(ref("SeccompLevel"), "The system-call filter asked for: its execution profile's `seccomp`. `enforced.seccomp` says what the backend applies."),
        "warm": {"type": "boolean", "description": "Provisioned ahead of demand and waiting in its execution profile's warm pool (`warm_pool`); a create request with the same boot inputs claims it (`runner.claimed` event)."},
        "created_at": TS,
        "updated_at": TS,
}
RUNNER_REQUIRED = ["id", "type", "state", "backend", "isolation", "execution_profile", "environment_id", "session_id", "error",
                   "image", "network", "limits", "enforced", "env", "reason", "started_at", "last_activity_at",
                   "idle_timeout_secs", "budget", "pending_restart", "seccomp", "warm", "created_at", "updated_at"]
assert sorted(RUNNER_REQUIRED) == sorted(runner_props)
schemas["Runner"] = obj(
    runner_props,
    required=RUNNER_REQUIRED,
    description="Paddock's resource: one live sandbox and its lifecycle state. `enforced` is null until the runner has been provisioned (and stays null when provisioning failed). A running runner is stopped automatically after its idle timeout, its profile's `ttl_secs` or when its budget is reached; `reason` says which.",
)
schemas["RunnerCost"] = obj(
    {
        "list_cost": desc(ref("Money"), "The list cost of the runner's session so far."),
        "budget": nullable(desc(ref("Money"), "The budget that stops the runner: its own `budget`, else its session's `budget.max_list_cost`; null: none.")),
    },
    required=["list_cost", "budget"],
    description="What the runner's session has cost, against the budget that applies to the runner.",
)
schemas["RunnerDetail"] = obj(
    {
        **runner_props,
        "uptime_seconds": {"type": ["number", "null"], "minimum": 0, "description": "Seconds since the runner last started, to a tenth; null unless it is `running`."},
        "idle_timeout_effective_secs": {"type": "integer", "minimum": 0, "description": "The idle timeout that applies: the runner's `idle_timeout_secs`, else the server's default (`runners.idle_timeout_secs`, 1800 unless configured). 0: never."},
        "latest_sample": nullable(desc(ref("Sample"), "The latest usage sample; null when there is none (the runner is not running, or has not been sampled yet).")),
        "cost": desc(ref("RunnerCost"), "Only when the runner serves a session."),
    },
    required=RUNNER_REQUIRED + ["uptime_seconds", "idle_timeout_effective_secs", "latest_sample"],
    description="A runner with live figures, as answered by `GET /v1/runners/{runner_id}` and `POST /v1/runners/{runner_id}`: the Runner's fields plus uptime, the idle timeout that applies, the latest usage sample and, when it serves a session, the cost against the budget.",
)
schemas["RunnerCreate"] = obj(
    {
        "environment_id": {"type": ["string", "null"], "description": "An environment to take the image, networking, resource limits, variables and default execution profile from. Archived environments are refused (400 `environment_archived`); an environment whose `backend` differs from the profile's is refused with 400."},
        "execution_profile": {"type": ["string", "null"], "description": "The execution profile (see `GET /v1/profiles`); defaults to the session's, then the environment's, then the server's default profile. An unknown name is a 400."},
        "session_id": {"type": ["string", "null"], "description": "The session this runner serves. The profile must allow the session's agent (400 otherwise)."},
        "env": {"type": ["object", "null"], "propertyNames": {"pattern": ENV_NAME}, "additionalProperties": STR, "description": "Environment variables, set over the environment's `env`. Names are letters, digits and `_`, not starting with a digit; values may not contain NUL (400 `env.<name>` otherwise)."},
        "idle_timeout_secs": {"type": ["integer", "null"], "minimum": 0, "description": "Seconds without exec or file activity before the runner is stopped (0: never). Default: the environment's `idle_timeout_secs`, else the server's (`runners.idle_timeout_secs`)."},
        "budget": nullable(desc(ref("Money"), "Stop the runner once its session's list cost reaches this. Default: the session's budget, if any.")),
    },
    closed=True,
    description="Body of `POST /v1/runners` (and of `POST /v1/snapshots/{snapshot_id}/branch`). Every field is optional; an empty body creates a runner from the default profile. Unknown fields are refused.",
)
schemas["RunnerUpdate"] = obj(
    {
        "idle_timeout_secs": {"type": ["integer", "null"], "minimum": 0, "description": "Seconds without exec or file activity before the runner is stopped (0: never); null: back to the server's default. Takes effect at once."},
        "budget": nullable(desc(ref("Money"), "Stop the runner once its session's list cost reaches this; null removes the runner's own budget (the session's then applies). Takes effect at once.")),
        "env": {
            "type": ["object", "null"],
            "propertyNames": {"pattern": ENV_NAME},
            "additionalProperties": {"type": ["string", "null"]},
            "description": "A patch of the runner's variables: a string sets one, null removes it; names not given are kept (null or omitted for the whole map: no change). Values may not contain NUL. Applied at the next start.",
        },
        "network": nullable(desc(ref("NetworkPolicy"), "A new network policy, at most the profile's (a `limited` policy may name only hosts the profile allows) and one the backend can enforce (400 `network` otherwise); null or omitted: no change. Applied at the next start.")),
    },
    closed=True,
    description="Body of `POST /v1/runners/{runner_id}`. Every field is optional. `idle_timeout_secs` and `budget` take effect at once; `env` and `network` at the runner's next start — changed while it runs, they are listed in `pending_restart` until then. Unknown fields are refused.",
)

# exec
schemas["ExecRequest"] = obj(
    {
        "command": {"type": ["string", "null"], "description": "A shell command line, run with `/bin/sh -c`. No NUL bytes."},
        "argv": {"type": ["array", "null"], "items": STR, "minItems": 1, "description": "A program and its arguments, run without a shell; `argv[0]` is looked up in `PATH` when it has no `/`. `argv[0]` must not be empty; no NUL bytes."},
        "cwd": {"type": ["string", "null"], "description": "Working directory, relative to the workspace (or absolute under it); must exist and stay inside the workspace. Default: the workspace root."},
        "env": {"type": ["object", "null"], "additionalProperties": STR, "description": "Variables added to the runner's environment for this command. Names are non-empty without `=` or NUL."},
        "stdin": {"type": ["string", "null"], "description": "Text written to the command's standard input, which is then closed. Without `stdin`/`stdin_b64` the command reads EOF at once."},
        "stdin_b64": {"type": ["string", "null"], "contentEncoding": "base64", "description": "Standard input as base64 (for bytes that are not UTF-8). At most one of `stdin` and `stdin_b64`."},
        "timeout_ms": {"type": ["integer", "null"], "minimum": 1, "description": "Kill the command's process group after this many milliseconds (SIGTERM, then SIGKILL after a grace period); the `exit` record then has `timed_out: true`. Default: no timeout."},
        "id": {"type": ["string", "null"], "pattern": "^[A-Za-z0-9._:-]{1,128}$", "description": "An id for this exec, unique among the runner's running execs; generated when omitted. Reported in the `started` and `exit` records."},
    },
    closed=True,
    oneOf=[
        {"required": ["command"], "properties": {"command": STR}},
        {"required": ["argv"], "properties": {"argv": {"type": "array"}}},
    ],
    description="Body of `POST /v1/runners/{runner_id}/exec`: exactly one of `command` and `argv`. Unknown fields are refused (by the runner's worker).",
)
schemas["ExecStarted"] = obj(
    {"type": const("started"), "id": {"type": "string", "description": "The exec id."}, "pid": {"type": "integer", "description": "Process id (and process-group id) of the command inside the sandbox."}},
    required=["type", "id", "pid"],
    description="The first record: the command is running.",
)
schemas["ExecOutput"] = obj(
    {
        "type": {"type": "string", "enum": ["stdout", "stderr"]},
        "data": {"type": "string", "description": "The chunk as text. When the bytes are not valid UTF-8, invalid sequences are replaced with U+FFFD and `data_b64` carries the exact bytes."},
        "data_b64": {"type": "string", "contentEncoding": "base64", "description": "Only when the chunk is not valid UTF-8: the exact bytes (standard base64, padded). Prefer it to `data` when present."},
    },
    required=["type", "data"],
    description="A chunk of output (at most 64 KiB): whatever one read of the pipe returned, so record boundaries carry no meaning; concatenate the chunks of a stream. Valid UTF-8 is never split inside a character. stdout and stderr records are in the order the worker read them.",
)
schemas["ExecExit"] = obj(
    {
        "type": const("exit"),
        "id": {"type": "string", "description": "The exec id."},
        "code": {"type": ["integer", "null"], "description": "Exit status; null when the command was ended by a signal."},
        "signal": {"type": ["integer", "null"], "description": "The signal that ended the command, when one did."},
        "duration_ms": UINT,
        "timed_out": {"type": "boolean", "description": "Killed because `timeout_ms` passed."},
        "cancelled": {"type": "boolean", "description": "Stopped because the worker cancelled its execs (e.g. the worker shutting down). Both `timed_out` and `cancelled` are false when the command ended by itself."},
    },
    required=["type", "id", "code", "signal", "duration_ms", "timed_out", "cancelled"],
    description="The last record: how the command ended. Exactly one of `code` and `signal` is non-null.",
)
schemas["ExecRecord"] = {
    "description": "One line of the `application/x-ndjson` exec stream, discriminated by `type`: `started` first, then `stdout`/`stderr` chunks as they are produced, then `exit`. A stream that ends without an `exit` record was cut off and the outcome is unknown: the worker died, or the runner was stopped or destroyed while the command ran. Clients should ignore record types they do not know.",
    "oneOf": [ref("ExecStarted"), ref("ExecOutput"), ref("ExecExit")],
    "discriminator": {
        "propertyName": "type",
        "mapping": {
            "started": S + "ExecStarted",
            "stdout": S + "ExecOutput",
            "stderr": S + "ExecOutput",
            "exit": S + "ExecExit",
        },
    },
}

# files
FILE_KINDS = ["file", "dir", "symlink", "other"]
MODE = {"type": "string", "pattern": "^[0-7]{4}$", "description": "Permission bits in octal, e.g. `0644`."}
schemas["FileEntry"] = obj(
    {
        "name": {"type": "string", "description": "The last path component; `\"\"` for the workspace root."},
        "path": {"type": "string", "description": "Relative to the workspace root; `.` for the root itself."},
        "type": {"type": "string", "enum": FILE_KINDS},
        "size": UINT,
        "mode": MODE,
        "mtime_ms": {"type": "integer", "description": "Modification time, milliseconds since the Unix epoch."},
        "target": {"type": "string", "description": "Symbolic links only: the link's target, as stored."},
    },
    required=["name", "path", "type", "size", "mode", "mtime_ms"],
    description="A file, directory, symbolic link or other entry of a runner's workspace (symbolic links are described, not followed).",
)
schemas["CancelRequest"] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"id": {"type": "string", "description": "The command to stop; omitted: every running command."}},
    "description": "Body of `POST /v1/runners/{runner_id}/cancel` (may be empty).",
}
schemas["FileStat"] = desc(ref("FileEntry"), "The answer of `GET /v1/runners/{runner_id}/files/stat`: the entry at `path` (a final symbolic link is described, not followed).")
schemas["FileList"] = obj(
    {
        "path": {"type": "string", "description": "The directory listed, relative to the workspace root."},
        "entries": {"type": "array", "items": ref("FileEntry"), "description": "Sorted by name."},
        "truncated": {"type": "boolean", "description": "More entries exist than `limit`."},
    },
    required=["path", "entries", "truncated"],
    description="The entries of one directory (not recursive).",
)
schemas["FileWritten"] = obj(
    {
        "path": {"type": "string", "description": "Relative to the workspace root."},
        "size": UINT,
        "created": {"type": "boolean", "description": "The file did not exist before."},
        "mode": MODE,
    },
    required=["path", "size", "created", "mode"],
    description="The file written (atomically: readers never see a half-written file).",
)
schemas["FileDeleted"] = obj(
    {
        "path": {"type": "string", "description": "Relative to the workspace root."},
        "deleted": {"type": "boolean", "const": True},
        "type": {"type": "string", "enum": FILE_KINDS, "description": "What was deleted."},
    },
    required=["path", "deleted", "type"],
    description="Confirms a deletion in a runner's workspace.",
)

# status, logs, events
U64_NULL = {"type": ["integer", "null"], "minimum": 0}
schemas["WorkerStatus"] = obj(
    {
        "version": {"type": "string", "description": "The worker's version."},
        "pid": UINT,
        "uptime_ms": UINT,
        "cpu": obj(
            {
                "tree_seconds": {"type": "number", "minimum": 0, "description": "User + system CPU seconds of the worker and its descendants (live and reaped)."},
                "cgroup_seconds": {"type": ["number", "null"], "minimum": 0, "description": "CPU seconds of the runner's cgroup, when readable."},
                "cores": {"type": "integer", "minimum": 0, "description": "CPUs available to the worker."},
            },
            required=["tree_seconds", "cgroup_seconds", "cores"],
        ),
        "memory": obj(
            {
                "tree_rss_bytes": UINT,
                "cgroup_current_bytes": U64_NULL,
                "cgroup_max_bytes": desc(U64_NULL, "null when unlimited or unreadable."),
            },
            required=["tree_rss_bytes", "cgroup_current_bytes", "cgroup_max_bytes"],
        ),
        "processes": obj(
            {"tree": desc(UINT, "The worker and its live descendants."), "cgroup": U64_NULL},
            required=["tree", "cgroup"],
        ),
        "disk": obj(
            {
                "workspace_bytes": desc(UINT, "Bytes allocated under the workspace (like `du`)."),
                "workspace_apparent_bytes": desc(UINT, "Sum of file sizes under the workspace (like `du --apparent-size`)."),
                "workspace_entries": UINT,
                "truncated": {"type": "boolean", "description": "The walk stopped at 2,000,000 entries."},
                "fs_total_bytes": U64_NULL,
                "fs_available_bytes": U64_NULL,
            },
            required=["workspace_bytes", "workspace_apparent_bytes", "workspace_entries", "truncated", "fs_total_bytes", "fs_available_bytes"],
        ),
        "execs": obj(
            {
                "running": {
                    "type": "array",
                    "items": obj({"id": STR, "pid": {"type": "integer"}, "running_ms": UINT}, required=["id", "pid", "running_ms"]),
                },
                "started_total": UINT,
            },
            required=["running", "started_total"],
        ),
    },
    required=["version", "pid", "uptime_ms", "cpu", "memory", "processes", "disk", "execs"],
    description="Live resource figures of a runner, read by its worker at request time.",
)
schemas["RunnerStatus"] = obj(
    {"type": const("runner_status"), "runner_id": STR, "status": ref("WorkerStatus")},
    required=["type", "runner_id", "status"],
    description="A running runner's live resource usage.",
)
schemas["WorkerLogs"] = obj(
    {
        "worker": {
            "type": "array",
            "items": obj({"ts_ms": UINT, "line": STR}, required=["ts_ms", "line"]),
            "description": "The worker's own recent log lines.",
        },
        "output": {
            "type": "array",
            "items": obj(
                {"ts_ms": UINT, "id": {"type": "string", "description": "The exec id."}, "stream": {"type": "string", "enum": ["stdout", "stderr"]}, "data": STR},
                required=["ts_ms", "id", "stream", "data"],
            ),
            "description": "Recent exec output, oldest first.",
        },
        "output_dropped_bytes": desc(UINT, "Output bytes evicted from the worker's buffer since it started."),
    },
    required=["worker", "output", "output_dropped_bytes"],
    description="What a running runner's worker kept: its log and recent exec output (last `tail` entries of each).",
)
schemas["RunnerLogs"] = obj(
    {
        "type": const("runner_logs"),
        "runner_id": STR,
        "sandbox": {"type": "string", "description": "The last `tail` lines of the sandbox's own log (the worker's stdout and stderr), newline-separated; `\"\"` when there is none."},
        "worker": nullable(ref("WorkerLogs")),
    },
    required=["type", "runner_id", "sandbox", "worker"],
    description="A runner's logs. `worker` is null unless the runner is running and its worker answers.",
)
schemas["RunnerLogLine"] = obj(
    {
        "ts_ms": {"type": "integer", "minimum": 0, "description": "When the worker recorded it, milliseconds since the Unix epoch."},
        "source": {"type": "string", "enum": ["worker", "exec"], "description": "`worker`: a line of the worker's own log; `exec`: a chunk of a command's output."},
        "exec_id": {"type": "string", "description": "`exec` only: the exec id."},
        "stream": {"type": "string", "enum": ["stdout", "stderr"], "description": "`exec` only."},
        "text": STR,
    },
    required=["ts_ms", "source", "text"],
    description="The data of an `event: log` frame of `GET /v1/runners/{runner_id}/logs?follow=true`.",
)
schemas["RunnerLogStream"] = {
    "type": "string",
    "description": "Server-Sent Events. Each new log line or output chunk — written after the stream opened; nothing is replayed — is an `event: log` frame whose data is a RunnerLogLine as one-line JSON, roughly in time order (the worker is polled four times a second). When the runner stops (its worker stops answering), a final `event: end` frame with data `{\"type\": \"end\", \"reason\": \"the runner stopped\"}` ends the stream; a server shutdown ends it without one. Idle streams get keep-alive comment lines.",
}

# runner events
def runner_event(kind, props, description):
    return obj(
        {"id": {"type": "string", "description": "`evt_…`"}, "type": const(kind), "runner_id": STR, "processed_at": TS, **props},
        required=["id", "type", "runner_id", "processed_at", *props],
        description=description,
    )


schemas["RunnerStateChanged"] = runner_event(
    "runner.state_changed",
    {
        "from": desc(nullable(ref("RunnerState")), "The previous state; null for the first event (the runner was created)."),
        "to": ref("RunnerState"),
        "reason": {"type": ["string", "null"], "description": "Why, when no user asked for the change (the runner's `reason`: an idle timeout, a budget, the TTL, pruning, `restart`, a restore), else the runner's `error`; null otherwise."},
    },
    "The runner moved from one lifecycle state to another.",
)
schemas["RunnerSnapshotCreated"] = runner_event(
    "runner.snapshot_created",
    {"snapshot_id": {"type": "string", "description": "`snap_…`"}, "size_bytes": UINT},
    "A snapshot of the runner's workspace was taken.",
)
schemas["RunnerRestored"] = runner_event(
    "runner.restored",
    {"snapshot_id": {"type": "string", "description": "`snap_…`"}},
    "The runner's workspace was replaced by a snapshot.",
)
schemas["RunnerOomKilled"] = runner_event(
    "runner.oom_killed",
    {
        "oom_kills": desc(UINT, "OOM kills in the runner's cgroup so far."),
        "new": {"type": "integer", "minimum": 1, "description": "OOM kills since the previous report."},
        "memory_limit_bytes": desc(U64_NULL, "The memory limit in force, when known."),
        "reason": STR,
    },
    "The kernel killed a process of the runner that exceeded its memory limit (seen by the sampler; backends that cannot tell never report it).",
)
schemas["RunnerDiskFull"] = runner_event(
    "runner.disk_full",
    {
        "disk_bytes": desc(U64_NULL, "Bytes allocated under the workspace."),
        "fs_available_bytes": desc(U64_NULL, "Free bytes left on the workspace's file system."),
        "disk_limit_bytes": desc(U64_NULL, "The runner's disk limit (`limits.disk_mb`), when it has one."),
    },
    "The workspace reached the runner's disk limit, or its file system is full (seen by the sampler). Reported once; again only after the disk stopped being full.",
)
RUNNER_EVENT_TYPES = {
    "runner.state_changed": "RunnerStateChanged",
    "runner.snapshot_created": "RunnerSnapshotCreated",
    "runner.restored": "RunnerRestored",
    "runner.oom_killed": "RunnerOomKilled",
    "runner.disk_full": "RunnerDiskFull",
}
schemas["RunnerEvent"] = {
    "description": "An entry of a runner's own event log, discriminated by `type`. The same events also go to the log of the runner's session, when it serves one (there without `runner_id`, except for `runner.state_changed`). Clients should ignore unknown types and fields.",
    "oneOf": [ref(n) for n in RUNNER_EVENT_TYPES.values()],
    "discriminator": {"propertyName": "type", "mapping": {t: S + n for t, n in RUNNER_EVENT_TYPES.items()}},
}

# metrics, activity
NUM_NULL = {"type": ["number", "null"], "minimum": 0}
schemas["Sample"] = obj(
    {
        "at": TS,
        "cpu_seconds": desc(NUM_NULL, "CPU seconds used so far: the runner's cgroup, else the worker's process tree."),
        "cpu_percent": desc(NUM_NULL, "CPU use since the previous sample, in percent of one core (above 100 with several cores busy), to a tenth; null on the first sample."),
        "memory_bytes": desc(U64_NULL, "Memory in use: measured by the backend (cgroup), else reported by the worker."),
        "memory_limit_bytes": desc(U64_NULL, "The memory limit; null when unlimited or unknown."),
        "disk_bytes": desc(U64_NULL, "Bytes allocated under the workspace."),
        "fs_available_bytes": desc(U64_NULL, "Free bytes on the workspace's file system."),
        "processes": desc(U64_NULL, "Processes in the runner."),
    },
    required=["at", "cpu_seconds", "cpu_percent", "memory_bytes", "memory_limit_bytes", "disk_bytes", "fs_available_bytes", "processes"],
    description="One usage sample of a running runner, taken by the orchestrator every `runners.sample_interval_ms` (10 s unless configured). null: not measurable on this backend or host.",
)
schemas["RunnerMetrics"] = obj(
    {
        "type": const("runner_metrics"),
        "runner_id": STR,
        "samples": {"type": "array", "items": ref("Sample"), "description": "Oldest first; at most `runners.history_len` (120 unless configured)."},
    },
    required=["type", "runner_id", "samples"],
    description="A runner's recent usage history, for charts. Kept in memory while the runner runs: empty once it stopped, and after the orchestrator restarts until it has been sampled again.",
)
schemas["RunnerActivity"] = obj(
    {
        "type": const("runner_activity"),
        "runner_id": STR,
        "data": {
            "type": "array",
            "items": {"anyOf": [ref("RunnerEvent"), ref("Event")]},
            "description": "Oldest first by `processed_at`: the runner's own events and, when it serves a session, that session's `user.message`, `agent.message`, `agent.tool_use`, `agent.tool_result`, `agent.custom_tool_use`, `session.status_running`, `session.status_idle` and `session.error` events.",
        },
    },
    required=["type", "runner_id", "data"],
    description="What happened on a runner, newest last.",
)

# snapshots
schemas["Snapshot"] = obj(
    {
        "id": {"type": "string", "description": "`snap_…`"},
        "type": const("snapshot"),
        "runner_id": {"type": "string", "description": "The runner whose workspace was copied."},
        "label": {"type": ["string", "null"], "description": "The label given at creation."},
        "path": {"type": "string", "description": "The archive (a gzipped tar) on the orchestrator's host, under its data directory."},
        "size_bytes": desc(UINT, "The archive's size."),
        "contents": {"type": "array", "items": {"type": "string", "examples": ["workspace"]}, "description": "What it holds; today always `[\"workspace\"]`."},
        "created_at": TS,
    },
    required=["id", "type", "runner_id", "label", "path", "size_bytes", "contents", "created_at"],
    description="Paddock's resource: a point-in-time copy of a runner's workspace, kept by the orchestrator. It can be restored into any runner or branched into a new one; it outlives its runner.",
)
schemas["SnapshotCreate"] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"label": {"type": ["string", "null"], "description": "A free-form label."}},
    "description": "Body of `POST /v1/runners/{runner_id}/snapshots` (may be empty).",
}
schemas["RestoreRequest"] = obj(
    {"snapshot_id": {"type": "string", "description": "The snapshot to restore (`snap_…`); it may come from any runner."}},
    required=["snapshot_id"],
    closed=True,
    description="Body of `POST /v1/runners/{runner_id}/restore`.",
)
schemas["StopRequest"] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"timeout_secs": {"type": ["integer", "null"], "minimum": 0, "description": "Seconds running commands get to end after being cancelled before everything is killed. Default: the server's `runners.stop_grace_secs` (5 unless configured)."}},
    "description": "Body of `POST /v1/runners/{runner_id}/stop` (may be empty).",
}

# fleet
COUNT_NULL = {"type": ["integer", "null"], "minimum": 0}
schemas["StateCounts"] = {
    "type": "object",
    "description": "Runners by state; states without runners are left out, and destroyed runners are not counted.",
    "propertyNames": ref("RunnerState"),
    "additionalProperties": UINT,
}
schemas["FleetProfile"] = obj(
    {
        "backend": ref("BackendKind"),
        "by_state": ref("StateCounts"),
        "active": desc(UINT, "Its runners that are creating, provisioning, running or stopping."),
        "max_runners": desc(COUNT_NULL, "The profile's `max_runners`; null: no limit."),
        "capacity_left": desc(COUNT_NULL, "How many more runners it admits now; null: no limit."),
    },
    required=["backend", "by_state", "active", "max_runners", "capacity_left"],
    description="One execution profile's runners and capacity.",
)
schemas["Fleet"] = obj(
    {
        "type": const("fleet"),
        "total": desc(UINT, "Runners that are not destroyed."),
        "active": desc(UINT, "Runners holding resources: creating, provisioning, running or stopping."),
        "by_state": ref("StateCounts"),
        "by_backend": {"type": "object", "additionalProperties": ref("StateCounts"), "description": "By backend name, then state."},
        "by_profile": {"type": "object", "additionalProperties": ref("FleetProfile"), "description": "Every configured execution profile by name, including those without runners."},
        "capacity": obj(
            {
                "max_active": desc(COUNT_NULL, "The most runners the server allows active at once (`runners.max_active`); null: no limit."),
                "capacity_left": desc(COUNT_NULL, "How many more runners the server admits now; null: no limit."),
            },
            required=["max_active", "capacity_left"],
        ),
        "cost": obj(
            {"list_cost": desc(ref("Money"), "The list cost of the sessions served by runners that are not destroyed, each session counted once.")},
            required=["list_cost"],
        ),
        "health": obj(
            {
                "errored": {
                    "type": "array",
                    "items": obj({"id": STR, "error": {"type": ["string", "null"]}}, required=["id", "error"]),
                    "description": "Runners in state `errored`, with their error.",
                },
                "above_memory_threshold": {
                    "type": "array",
                    "items": obj({"id": STR, "memory_bytes": UINT, "memory_limit_bytes": UINT}, required=["id", "memory_bytes", "memory_limit_bytes"]),
                    "description": "Runners whose latest sample uses at least `memory_alert_ratio` of their memory limit.",
                },
                "memory_alert_ratio": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "description": "The server's `runners.memory_alert_ratio` (0.9 unless configured)."},
            },
            required=["errored", "above_memory_threshold", "memory_alert_ratio"],
        ),
        "generated_at": TS,
    },
    required=["type", "total", "active", "by_state", "by_backend", "by_profile", "capacity", "cost", "health", "generated_at"],
    description="Every runner at a glance: counts by state, backend and profile, capacity, cost and health.",
)

# backends, profiles
schemas["Backend"] = obj(
    {
        "type": const("backend"),
        "backend": {"type": "string", "examples": ["local"]},
        "available": {"type": "boolean", "description": "Whether runners can be created on it on this host."},
        "note": {"type": ["string", "null"], "description": "Why the backend is unavailable or degraded, when it is."},
        "isolation": ref("Isolation"),
        "network_policies": {
            "type": "array",
            "items": {"type": "string", "enum": ["none", "limited", "unrestricted"]},
            "description": "The network policies it can enforce; a runner asking for another is refused with 400.",
        },
        "snapshots": BOOL,
        "stats": {"type": "boolean", "description": "Whether `GET /v1/runners/{runner_id}/status` reports resource usage."},
        "limits": desc(ref("Enforced"), "The limits it can enforce on this host, and how."),
        "survives_restart": {"type": "boolean", "description": "Whether its runners survive an orchestrator restart."},
    },
    required=["type", "backend", "available", "note", "isolation", "network_policies", "snapshots", "stats", "limits", "survives_restart"],
    description="A configured compute backend and what it really enforces on this host.",
)
schemas["ExecutionProfile"] = obj(
    {
        "type": const("execution_profile"),
        "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$"},
        "default": {"type": "boolean", "description": "Used when no profile is named."},
        "backend": ref("BackendKind"),
        "runbook": {"type": ["string", "null"], "description": "Image or runbook for backends that use one."},
        "cpu": {"type": ["number", "null"], "exclusiveMinimum": 0, "description": "Most CPUs a runner may have; null: no limit."},
        "memory_mb": {"type": ["integer", "null"], "minimum": 1},
        "pids": {"type": ["integer", "null"], "minimum": 1},
        "disk_mb": {"type": ["integer", "null"], "minimum": 1},
        "network": {"type": "string", "enum": ["none", "limited", "unrestricted"], "description": "The most network a runner of this profile may have."},
        "allowed_hosts": desc(HOSTS, "Hosts for `network: \"limited\"` (empty otherwise)."),
        "ttl_secs": {"type": ["integer", "null"], "minimum": 0, "description": "A running runner is stopped automatically this long after it last started, with `reason` `max wall duration reached: …` (0 or null: no limit)."},
        "allowed_agents": {"type": "array", "items": STR, "description": "Agents (ids or names) allowed to use this profile; empty allows all."},
        "max_runners": {"type": ["integer", "null"], "minimum": 1, "description": "Most runners of this profile active at once (creating, provisioning, running or stopping); more are refused with 503 `capacity_exceeded` (the server's `runners.max_active` caps all profiles together). null: no limit."},
        "warm_pool": {"type": "integer", "minimum": 0, "description": "Runners kept provisioned and idle, ready to be claimed (0: none)."},
        "seccomp": ref("SeccompLevel"),
        "seccomp_policy": {"type": "object", "description": "The filter as data: `level`, `denied_with_eperm` (system-call names), `clone_flags_denied_with_eperm`, `denied_with_enosys`; for `unconfined`, `filter: null` and a `warning`."},
    },
    required=["type", "name", "default", "backend", "runbook", "cpu", "memory_mb", "pids", "disk_mb", "network", "allowed_hosts", "ttl_secs", "allowed_agents", "max_runners", "warm_pool", "seccomp", "seccomp_policy"],
    description="An operator's policy for runners (from the server configuration): backend, image, limits (caps an environment may lower), network, lifetime, agents and capacity.",
)

# ------------------------------------------------------------------ security: tokens, audit

schemas["Role"] = {
    "type": "string",
    "enum": ["viewer", "operator", "admin"],
    "description": "What a token may do. `viewer`: read (GET) everything but tokens and vaults, including the audit trail; `operator`: also change things (POST, PUT, DELETE) outside tokens and vaults; `admin`: also manage tokens and vaults. The server's own `api_token` is an admin.",
}
token_props = {
    "id": {"type": "string", "description": "`tok_…`"},
    "type": const("api_token"),
    "name": STR,
    "role": ref("Role"),
    "fingerprint": {"type": "string", "pattern": "^[0-9a-f]{12}$", "description": "A short, non-secret name of the token: the first 12 hex digits of its SHA-256. The audit trail shows it (`token:<fingerprint>`)."},
    "created_at": TS,
    "expires_at": desc(TS_NULL, "When the token stops working; null: never."),
    "revoked_at": desc(TS_NULL, "When the token was revoked; null while it is not."),
}
schemas["ApiToken"] = obj(
    token_props,
    required=list(token_props),
    description="Paddock's resource: a scoped API token. The secret itself is never returned after creation (it is stored hashed).",
)
schemas["ApiTokenCreated"] = obj(
    {
        **token_props,
        "token": {"type": "string", "pattern": "^pdk_[0-9a-f]{64}$", "description": "The secret, to send as `Authorization: Bearer <token>`. Shown in this answer only: it cannot be retrieved again."},
    },
    required=list(token_props) + ["token"],
    description="The answer of `POST /v1/tokens`: the new token and, once, its secret.",
)
schemas["TokenCreate"] = obj(
    {
        "name": {"type": "string", "minLength": 1, "maxLength": 128, "description": "A label for people; not blank, at most 128 characters."},
        "role": ref("Role"),
        "expires_at": {"type": ["string", "null"], "format": "date-time", "description": "An RFC 3339 time in the future; omitted or null: the token does not expire."},
    },
    required=["name", "role"],
    closed=True,
    description="Body of `POST /v1/tokens`. Unknown fields are refused.",
)
schemas["AuditEntry"] = obj(
    {
        "id": {"type": "string", "description": "`aud_…`"},
        "type": const("audit_entry"),
        "at": TS,
        "request_id": {"type": ["string", "null"], "description": "The request (`req_…`); null for automatic actions."},
        "actor": {"type": "string", "description": "Who: `token:<fingerprint>` (a token made with `POST /v1/tokens`), `admin:<fingerprint>` (the server's `api_token`), `ip:<address>` (a server without `api_token`) or `system` (an automatic action)."},
        "role": nullable(desc(ref("Role"), "The caller's role; null for automatic actions and on a server without `api_token`.")),
        "action": {"type": "string", "examples": ["agents.create", "runners.stop", "vaults.cred_create", "runners.auto_stop"], "description": "What was done: `<resource>.<handler>` for a request (`unrouted` for a request no route matched), or an automatic action (`runners.auto_stop`, `runners.auto_destroy`, `runners.lost`, `runners.orphan_swept`)."},
        "target": {"type": ["string", "null"], "description": "The resource acted on: the route's first path parameter, else the `id` of the object a successful create answered with; null when there is none."},
        "status": {"type": "integer", "minimum": 100, "maximum": 599, "description": "The HTTP status answered (automatic actions: 200 when they succeeded, 500 when not)."},
        "outcome": {"type": "string", "enum": ["ok", "error"]},
        "metadata": {"type": "object", "description": "For a request: `{method, route, path}` (the route template, null when no route matched). Never bodies, so never secrets."},
    },
    required=["id", "type", "at", "request_id", "actor", "role", "action", "target", "status", "outcome", "metadata"],
    description="Paddock's resource: one row of the audit trail. Every request that is not a read (GET or HEAD) and passed authentication is written, whatever its outcome, and so is every automatic action. Entries are kept `audit.retention_days` (90 unless configured).",
)
schemas["AuditList"] = obj(
    {
        "data": {"type": "array", "items": ref("AuditEntry"), "description": "Newest first, at most `limit`."},
        "next_page": {"type": "null", "description": "Always null: narrow the query (`until`) to read further back."},
    },
    required=["data", "next_page"],
    description="The newest audit entries that match the query.",
)

# ------------------------------------------------------------------ vaults

vault_props = {
    "id": {"type": "string", "description": "`vlt_…`"},
    "type": const("vault"),
    "display_name": STR,
    "metadata": ref("Metadata"),
    "created_at": TS,
    "updated_at": TS,
    "archived_at": TS_NULL,
}
schemas["Vault"] = obj(
    vault_props,
    required=list(vault_props),
    description="A named set of credentials (`type: \"vault\"`). A session lists vaults in `vault_ids`; the `environment_variable` credentials of those that are not archived are set in its runner's sandbox. Archived vaults take no new credentials and no new sessions.",
)
DISPLAY_NAME = {"type": "string", "minLength": 1, "maxLength": 255, "description": "Not blank, at most 255 characters."}
schemas["VaultCreate"] = obj(
    {"display_name": DISPLAY_NAME, "metadata": nullable(ref("Metadata"))},
    required=["display_name"],
    closed=True,
    description="Body of `POST /v1/vaults`. Unknown fields are refused.",
)
schemas["VaultUpdate"] = obj(
    {
        "display_name": {"type": ["string", "null"], "minLength": 1, "maxLength": 255, "description": "null keeps the name; it cannot be cleared."},
        "metadata": nullable(desc(ref("MetadataPatch"), "Patch; null keeps the metadata.")),
    },
    closed=True,
    description="Body of `POST /v1/vaults/{vault_id}`. Every field is optional: omitted or null = keep. Unknown fields are refused.",
)

# credentials: `auth` as answered (no secrets) and as sent (with them)
SECRET = "Write-only: sealed with the vault key (encrypted at rest) and never returned, logged or echoed in errors. Not empty, at most 64 KiB (UTF-8)."
SECRET_STR = {"type": "string", "minLength": 1, "writeOnly": True}
MCP_URL = {"type": "string", "pattern": "^https?://", "description": "The MCP server the credential is for: an http:// or https:// URL. Fixed at creation."}
schemas["StaticBearerAuth"] = obj(
    {"type": const("static_bearer"), "mcp_server_url": MCP_URL},
    required=["type", "mcp_server_url"],
    description="A fixed bearer token for an MCP server (the token is not returned).",
)
schemas["TokenEndpointAuth"] = obj(
    {"type": {"type": "string", "enum": ["none", "client_secret_basic", "client_secret_post"]}},
    required=["type"],
    description="How the client authenticates at the token endpoint (the client secret is not returned).",
)
schemas["McpOauthRefresh"] = obj(
    {
        "client_id": {"type": ["string", "null"]},
        "token_endpoint": {"type": ["string", "null"]},
        "token_endpoint_auth": nullable(ref("TokenEndpointAuth")),
        "resource": {"type": ["string", "null"]},
        "scope": {"type": ["string", "null"]},
    },
    required=["client_id", "token_endpoint", "token_endpoint_auth", "resource", "scope"],
    description="How the access token is refreshed (the refresh token and client secret are not returned).",
)
schemas["McpOauthAuth"] = obj(
    {
        "type": const("mcp_oauth"),
        "mcp_server_url": MCP_URL,
        "expires_at": {"type": ["string", "null"], "format": "date-time", "description": "When the access token expires, as given."},
        "refresh": nullable(ref("McpOauthRefresh")),
    },
    required=["type", "mcp_server_url", "expires_at", "refresh"],
    description="An OAuth access token for an MCP server, optionally refreshable (the tokens are not returned).",
)
CRED_NETWORKING_DESC = "Where the secret may be used: `{type: \"unrestricted\"}` or `{type: \"limited\", allowed_hosts}`. Stored and returned; Paddock does not enforce it (the variable is set in the sandbox regardless)."


def cred_networking(hosts_required):
    return {
        "description": CRED_NETWORKING_DESC,
        "oneOf": [
            obj({"type": const("unrestricted")}, required=["type"]),
            obj(
                {"type": const("limited"), "allowed_hosts": desc(HOSTS, "Host names or `*.domain` patterns" + ("." if hosts_required else "; omitted = none."))},
                required=["type", "allowed_hosts"] if hosts_required else ["type"],
            ),
        ],
    }


INJECTION = "Where the secret is injected into requests; `header` and `body` are stored as given and returned (null when not given). Paddock does not act on them."
schemas["EnvironmentVariableAuth"] = obj(
    {
        "type": const("environment_variable"),
        "secret_name": {"type": "string", "pattern": ENV_NAME, "description": "The environment variable set to the secret in the sandbox of the runner of every session that lists the vault. Fixed at creation."},
        "networking": cred_networking(True),
        "injection_location": obj({"header": {}, "body": {}}, required=["header", "body"], description=INJECTION),
    },
    required=["type", "secret_name", "networking", "injection_location"],
    description="A secret set as an environment variable in session sandboxes (the value is not returned).",
)
CRED_AUTH_TYPES = {
    "static_bearer": "StaticBearerAuth",
    "mcp_oauth": "McpOauthAuth",
    "environment_variable": "EnvironmentVariableAuth",
}
schemas["CredentialAuth"] = {
    "description": "A credential's `auth` as answered: its public part only, discriminated by `type`. Secrets are never returned.",
    "oneOf": [ref(n) for n in CRED_AUTH_TYPES.values()],
    "discriminator": {"propertyName": "type", "mapping": {t: S + n for t, n in CRED_AUTH_TYPES.items()}},
}


def auth_param(name, kind, props, create_required, fixed, description):
    """The create (`<name>Param`) and update (`<name>Patch`) forms of one `auth` type.

    On update only `type` is required and every other field may be null (= keep), except
    those that are already nullable or that the server refuses as null (`networking`)."""
    props = {"type": const(kind), **props}
    schemas[name + "Param"] = obj(props, required=["type", *create_required], closed=True, description=description + " Unknown fields are refused.")
    schemas[name + "Patch"] = obj(
        {k: (v if k == "type" else nullable(v) if "type" in v and not isinstance(v["type"], list) else v) for k, v in props.items()},
        required=["type"],
        closed=True,
        description=description + f" In an update: `type` must be the stored one; secrets given replace the stored ones, omitted or null ones are kept; `{fixed}` may be repeated but not changed (400). Unknown fields are refused.",
    )


auth_param(
    "StaticBearerAuth", "static_bearer",
    {"token": desc(SECRET_STR, "The bearer token. " + SECRET), "mcp_server_url": MCP_URL},
    ["token", "mcp_server_url"], "mcp_server_url",
    "`auth` of type `static_bearer` in a request.",
)
schemas["TokenEndpointAuthParam"] = obj(
    {
        "type": {"type": "string", "enum": ["none", "client_secret_basic", "client_secret_post"]},
        "client_secret": desc(SECRET_STR, "Required at creation unless `type` is `none`. " + SECRET),
    },
    required=["type"],
    closed=True,
    description="`refresh.token_endpoint_auth` in a request.",
)
schemas["McpOauthRefreshParam"] = obj(
    {
        "client_id": {"type": ["string", "null"]},
        "refresh_token": desc(SECRET_STR, "Required when `refresh` is given at creation. " + SECRET),
        "token_endpoint": {"type": ["string", "null"]},
        "token_endpoint_auth": nullable(ref("TokenEndpointAuthParam")),
        "resource": {"type": ["string", "null"]},
        "scope": {"type": ["string", "null"]},
    },
    closed=True,
    description="`auth.refresh` in a request. In an update, fields given replace the stored ones and omitted ones are kept.",
)
auth_param(
    "McpOauthAuth", "mcp_oauth",
    {
        "access_token": desc(SECRET_STR, "The OAuth access token. " + SECRET),
        "mcp_server_url": MCP_URL,
        "expires_at": {"type": ["string", "null"], "format": "date-time", "description": "When the access token expires (RFC 3339)."},
        "refresh": nullable(ref("McpOauthRefreshParam")),
    },
    ["access_token", "mcp_server_url"], "mcp_server_url",
    "`auth` of type `mcp_oauth` in a request.",
)
auth_param(
    "EnvironmentVariableAuth", "environment_variable",
    {
        "secret_name": {"type": "string", "pattern": ENV_NAME, "description": "The variable to set: letters, digits and `_`, not starting with a digit. Fixed at creation."},
        "secret_value": desc(SECRET_STR, "The variable's value. " + SECRET),
        "networking": cred_networking(False),
        "injection_location": nullable(obj({"header": {}, "body": {}}, closed=True, description=INJECTION)),
    },
    ["secret_name", "secret_value", "networking"], "secret_name",
    "`auth` of type `environment_variable` in a request.",
)


def auth_union(suffix, description):
    return {
        "description": description,
        "oneOf": [ref(n + suffix) for n in CRED_AUTH_TYPES.values()],
        "discriminator": {"propertyName": "type", "mapping": {t: S + n + suffix for t, n in CRED_AUTH_TYPES.items()}},
    }


schemas["CredentialAuthParam"] = auth_union("Param", "`auth` in `POST /v1/vaults/{vault_id}/credentials`, discriminated by `type`. It carries the secrets, which are write-only: sealed with the vault key, bound to the credential's id, and never returned, logged or echoed in errors (messages name fields, never values).")
schemas["CredentialAuthPatch"] = auth_union("Patch", "`auth` in `POST /v1/vaults/{vault_id}/credentials/{credential_id}`, discriminated by `type`, which must be the stored one. Secrets given are sealed anew (rotation); the others are kept. Secrets are write-only.")
cred_props = {
    "id": {"type": "string", "description": "`vcrd_…`"},
    "type": const("vault_credential"),
    "vault_id": STR,
    "auth": ref("CredentialAuth"),
    "display_name": {"type": ["string", "null"]},
    "metadata": ref("Metadata"),
    "created_at": TS,
    "updated_at": TS,
    "archived_at": TS_NULL,
}
schemas["VaultCredential"] = obj(
    cred_props,
    required=list(cred_props),
    description="A credential in a vault (`type: \"vault_credential\"`): the public part of its `auth`, never its secrets. Archived credentials are no longer used.",
)
schemas["VaultCredentialCreate"] = obj(
    {
        "auth": ref("CredentialAuthParam"),
        "display_name": {"type": ["string", "null"], "minLength": 1, "maxLength": 255, "description": "Not blank, at most 255 characters."},
        "metadata": nullable(ref("Metadata")),
    },
    required=["auth"],
    closed=True,
    description="Body of `POST /v1/vaults/{vault_id}/credentials`. Unknown fields are refused.",
)
schemas["VaultCredentialUpdate"] = obj(
    {
        "auth": nullable(desc(ref("CredentialAuthPatch"), "Omitted or null keeps the auth.")),
        "display_name": {"type": ["string", "null"], "minLength": 1, "maxLength": 255, "description": "null keeps the name."},
        "metadata": nullable(desc(ref("MetadataPatch"), "Patch; null keeps the metadata.")),
    },
    closed=True,
    description="Body of `POST /v1/vaults/{vault_id}/credentials/{credential_id}`. Every field is optional: omitted or null = keep. Unknown fields are refused.",
)
schemas["CredentialValidation"] = obj(
    {
        "type": const("vault_credential_validation"),
        "credential_id": STR,
        "vault_id": STR,
        "status": {"type": "string", "enum": ["valid", "invalid", "unknown"], "description": "Paddock always answers `unknown`: it does not probe MCP servers."},
        "has_refresh_token": {"type": "boolean", "description": "Whether a refresh token is stored."},
        "validated_at": TS,
    },
    required=["type", "credential_id", "vault_id", "status", "has_refresh_token", "validated_at"],
    description="The answer of `POST …/credentials/{credential_id}/mcp_oauth_validate`.",
)

# ------------------------------------------------------------------ pages, meta, errors

CURSOR = {"type": ["string", "null"], "description": "Pass as `page` to get the next page; null when there is none."}


def page(item, prev=False):
    props = {"data": {"type": "array", "items": ref(item)}, "next_page": CURSOR}
    req = ["data", "next_page"]
    if prev:
        props["prev_page"] = {"type": ["string", "null"], "description": "Pass as `page` to get the previous page; null when there is none."}
        req.append("prev_page")
    return obj(props, required=req, description=f"A page of {item} objects.")


schemas["AgentPage"] = page("Agent")
schemas["EnvironmentPage"] = page("Environment")
schemas["SessionPage"] = page("Session", prev=True)
schemas["EventPage"] = page("Event")
schemas["RunnerPage"] = page("Runner")
schemas["RunnerEventPage"] = page("RunnerEvent")
schemas["SnapshotPage"] = page("Snapshot")
schemas["TokenPage"] = page("ApiToken")
schemas["VaultPage"] = page("Vault")
schemas["VaultCredentialPage"] = page("VaultCredential")


def fixed_list(item, what):
    return obj(
        {
            "data": {"type": "array", "items": ref(item)},
            "next_page": {"type": "null", "description": "Always null: the list is never paged."},
        },
        required=["data", "next_page"],
        description=f"Every {what}, in one page.",
    )


schemas["BackendList"] = fixed_list("Backend", "configured backend")
schemas["ProfileList"] = fixed_list("ExecutionProfile", "configured execution profile, sorted by name")
schemas["Deleted"] = obj(
    {
        "id": STR,
        "type": {"type": "string", "enum": ["agent_deleted", "environment_deleted", "session_deleted", "snapshot_deleted", "vault_deleted", "vault_credential_deleted"]},
    },
    required=["id", "type"],
    description="Confirms a deletion.",
)
schemas["Error"] = obj(
    {
        "type": const("error"),
        "error": obj(
            {
                "type": {
                    "type": "string",
                    "enum": ["invalid_request_error", "authentication_error", "permission_error", "not_found_error", "conflict_error", "rate_limit_error", "api_error", "timeout_error", "overloaded_error"],
                },
                "message": {"type": "string", "description": "For invalid input, starts with the JSON path of the offending field."},
                "details": obj(
                    {
                        "error_code": {
                            "type": "string",
                            "description": "A narrower code, e.g. `invalid_metadata`, `environment_archived`, `agent_archived`, `invalid_config_type_change`, `request_too_large`, `agent_not_found`, `environment_not_found`, `session_not_found`, `runner_not_found`, `snapshot_not_found`, `token_not_found`, `vault_not_found`, `credential_not_found`, `route_not_found`, `conflict`, `version_conflict`, `illegal_transition`, `idempotency_key_reused`; for runners also `unsupported`, `worker_rejected`, `path_forbidden`, `file_not_found`, `sandbox_not_found`, `worker_error`, `worker_unreachable`, `backend_timeout`, `backend_io`, `backend_unavailable`, `capacity_exceeded`.",
                        }
                    },
                    required=["error_code"],
                ),
            },
            required=["type", "message"],
        ),
        "request_id": {"type": "string", "description": "`req_…`, also in the `request-id` header."},
    },
    required=["type", "error"],
    description="The error envelope of every non-2xx response.",
)
schemas["Health"] = obj({"status": const("ok")}, required=["status"])
schemas["Index"] = obj(
    {
        "type": const("paddock"),
        "name": const("Paddock"),
        "version": STR,
        "documentation": {"type": "string", "const": "/openapi.json"},
        "endpoints": {
            "type": "array",
            "items": obj(
                {"method": {"type": "string", "enum": ["GET", "POST", "PUT", "DELETE"]}, "path": STR},
                required=["method", "path"],
            ),
        },
    },
    required=["type", "name", "version", "documentation", "endpoints"],
    description="The endpoint map: every route the server answers.",
)
schemas["OpenApiDocument"] = {"type": "object", "description": "This OpenAPI document."}

# ------------------------------------------------------------------ parameters, headers, responses


def path_param(name, what):
    return {"name": name, "in": "path", "required": True, "description": f"The {what} id.", "schema": STR}


def query(name, schema, description):
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


def array_query(name, items, description):
    p = query(name, {"type": "array", "items": items}, description + f" Repeat for several values; the plain form `{name[:-2]}=` is accepted too.")
    p["style"] = "form"
    p["explode"] = True
    return p


parameters = {
    "AgentId": path_param("agent_id", "agent"),
    "EnvironmentId": path_param("environment_id", "environment"),
    "SessionId": path_param("session_id", "session"),
    "RunnerId": path_param("runner_id", "runner"),
    "SnapshotId": path_param("snapshot_id", "snapshot"),
    "TokenId": path_param("token_id", "token (`tok_…`)"),
    "VaultId": path_param("vault_id", "vault (`vlt_…`)"),
    "CredentialId": path_param("credential_id", "credential (`vcrd_…`)"),
    "Limit": query("limit", {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}, "Page size."),
    "Page": query("page", STR, "An opaque cursor from `next_page` (or `prev_page`) of a previous response, sent with the same query."),
    "IncludeArchived": query("include_archived", {"type": "boolean", "default": False}, "Include archived objects."),
    "CreatedAtGt": query("created_at[gt]", {"type": "string", "format": "date-time"}, "Only objects created after this RFC 3339 time."),
    "CreatedAtGte": query("created_at[gte]", {"type": "string", "format": "date-time"}, "Only objects created at or after this RFC 3339 time."),
    "CreatedAtLt": query("created_at[lt]", {"type": "string", "format": "date-time"}, "Only objects created before this RFC 3339 time."),
    "CreatedAtLte": query("created_at[lte]", {"type": "string", "format": "date-time"}, "Only objects created at or before this RFC 3339 time."),
}


def pref(name):
    return {"$ref": P + name}


headers = {
    "RequestId": {"description": "The id of this request (`req_…`), also in error bodies and the server log.", "schema": STR},
    "ShouldRetry": {"description": "`false` on every 4xx: replaying the same request will not help.", "schema": {"type": "string", "enum": ["false"]}},
    "IdempotentReplayed": {"description": "`true` when the response replays an earlier request with the same `Idempotency-Key`.", "schema": {"type": "string", "enum": ["true"]}},
    "RetryAfter": {"description": "Whole seconds to wait before retrying (at least 1).", "schema": {"type": "integer", "minimum": 1}},
    "RetryAfterMs": {"description": "Milliseconds to wait before retrying (at least 1); SDKs prefer it to `retry-after`.", "schema": {"type": "integer", "minimum": 1}},
}


def err_response(description, client_error=True):
    h = {"request-id": {"$ref": H + "RequestId"}}
    if client_error:
        h["x-should-retry"] = {"$ref": H + "ShouldRetry"}
    return {
        "description": description,
        "headers": h,
        "content": {"application/json": {"schema": ref("Error")}},
    }


responses = {
    "BadRequest": err_response("Invalid input (`invalid_request_error`); the message names the field or query parameter."),
    "NotFound": err_response("The object (or one it refers to) does not exist (`not_found_error`)."),
    "Conflict": err_response("The request conflicts with the object's current state (`conflict_error`)."),
    "PayloadTooLarge": err_response("The request body is larger than the configured limit (`request_too_large`)."),
    "Forbidden": err_response("The runner's worker refused a path outside the workspace, or the operating system refused access (`permission_error`; `path_forbidden` in both cases)."),
    "BadGateway": err_response("The runner's worker failed or could not be reached (`api_error`, `worker_error` or `worker_unreachable`).", client_error=False),
    "ServiceUnavailable": err_response("No capacity: the profile's `max_runners`, or the server's `runners.max_active`, are all active (`capacity_exceeded`), or the runner's backend is not configured or cannot run on this host (`backend_unavailable`); `overloaded_error`.", client_error=False),
    "GatewayTimeout": err_response("The backend did not finish in time (`timeout_error`, `backend_timeout`).", client_error=False),
    "Unauthorized": err_response("No token, or a token that is not valid, expired or revoked (`authentication_error`)."),
    "PermissionDenied": err_response("The token's role may not use this route (`permission_error`): a viewer may only read, an operator may not touch tokens or vaults."),
    "TooManyRequests": {
        "description": "The caller (its token, else its IP address) sent more than the server's `rate_limit` allows (`rate_limit_error`). Retry after the wait the headers give; there is no `x-should-retry` header.",
        "headers": {
            "request-id": {"$ref": H + "RequestId"},
            "retry-after": {"$ref": H + "RetryAfter"},
            "retry-after-ms": {"$ref": H + "RetryAfterMs"},
        },
        "content": {"application/json": {"schema": ref("Error")}},
    },
    "InternalError": err_response("The server or the backend failed (`api_error`): a file operation of the backend (`backend_io`, the cause in the message), or an internal error (a generic message, no code; the server log has the details under the request id).", client_error=False),
}


def ok(schema_name, description="OK", content_type="application/json", extra_headers=None):
    """A 200 response; `schema_name` is a component name or an inline schema."""
    h = {"request-id": {"$ref": H + "RequestId"}}
    if extra_headers:
        h.update(extra_headers)
    schema = ref(schema_name) if isinstance(schema_name, str) else schema_name
    return {"description": description, "headers": h, "content": {content_type: {"schema": schema}}}


ERR = {400: "BadRequest", 403: "Forbidden", 404: "NotFound", 409: "Conflict", 413: "PayloadTooLarge",
       500: "InternalError", 502: "BadGateway", 503: "ServiceUnavailable", 504: "GatewayTimeout"}


def op(op_id, summary, tag, ok_resp, errors=(), params=(), body=None, body_required=True, description=None):
    o = {"operationId": op_id, "summary": summary, "tags": [tag]}
    if description:
        o["description"] = description
    if params:
        o["parameters"] = list(params)
    if body:
        o["requestBody"] = {"required": body_required, "content": {"application/json": {"schema": ref(body)}}}
    o["responses"] = {"200": ok_resp}
    # `errors`: codes, or {code: description} to say what the code means for this operation.
    for code in sorted(errors):
        r = {"$ref": R + ERR[code]}
        if isinstance(errors, dict) and errors[code]:
            r["description"] = errors[code]
        o["responses"][str(code)] = r
    return o


def order(default, by):
    return query("order", {"type": "string", "enum": ["asc", "desc"], "default": default}, f"Sort order by {by}.")


paths = {}


def add(path, method, operation):
    paths.setdefault(path, {})[method] = operation


EMPTY_POST = "The body is ignored (SDKs send an empty one)."

add("/", "get", op("getIndex", "List the API's endpoints", "Meta", ok("Index")))
add("/healthz", "get", op("getHealth", "Health check", "Meta", ok("Health")))
add("/openapi.json", "get", op("getOpenApi", "This OpenAPI document", "Meta", ok("OpenApiDocument")))
add("/metrics", "get", op(
    "getMetrics", "Prometheus metrics", "Meta",
    ok({"type": "string", "description": "`# HELP` / `# TYPE` lines and samples of the `paddock_…` families."}, "The metrics in the Prometheus text exposition format 0.0.4 (`Content-Type: text/plain; version=0.0.4; charset=utf-8`).", "text/plain; version=0.0.4"),
    description="Paddock's metrics for a Prometheus scraper, e.g. `paddock_build_info`, `paddock_http_requests_total`, `paddock_http_request_duration_seconds`, `paddock_runners` (by state and backend), `paddock_model_tokens_total`, `paddock_model_cost_usd_total` and `paddock_rate_limited_total`. Needs no token and is not rate-limited.",
))

# agents
add("/v1/agents", "post", op("createAgent", "Create an agent", "Agents", ok("Agent"), [400, 413], body="AgentCreate"))
add("/v1/agents", "get", op(
    "listAgents", "List agents", "Agents", ok("AgentPage"), [400],
    params=[pref("IncludeArchived"), pref("CreatedAtGte"), pref("CreatedAtLte"), pref("Limit"), pref("Page")],
    description="Oldest first.",
))
add("/v1/agents/{agent_id}", "get", op(
    "retrieveAgent", "Retrieve an agent", "Agents", ok("Agent"), [400, 404],
    params=[pref("AgentId"), query("version", {"type": "integer", "minimum": 1}, "A version to retrieve (starts at 1); omitted = latest.")],
))
add("/v1/agents/{agent_id}", "post", op(
    "updateAgent", "Update an agent", "Agents", ok("Agent"), [400, 404, 409, 413],
    params=[pref("AgentId")], body="AgentUpdate", body_required=False,
    description="Writes a new version when something changes. 409 when `version` is not the current version or the agent is archived.",
))
add("/v1/agents/{agent_id}", "delete", op(
    "deleteAgent", "Delete an agent", "Agents", ok("Deleted"), [404, 409],
    params=[pref("AgentId")],
    description="Paddock's addition (the Managed Agents API has no agent delete). 409 while live sessions use the agent.",
))
add("/v1/agents/{agent_id}/archive", "post", op(
    "archiveAgent", "Archive an agent", "Agents", ok("Agent"), [400, 404],
    params=[pref("AgentId")], description="Archived agents take no new sessions and cannot be changed. " + EMPTY_POST,
))
add("/v1/agents/{agent_id}/versions", "get", op(
    "listAgentVersions", "List an agent's versions", "Agents", ok("AgentPage"), [400, 404],
    params=[pref("AgentId"), pref("Limit"), pref("Page")], description="Newest version first.",
))

# environments
add("/v1/environments", "post", op("createEnvironment", "Create an environment", "Environments", ok("Environment"), [400, 413], body="EnvironmentCreate"))
add("/v1/environments", "get", op(
    "listEnvironments", "List environments", "Environments", ok("EnvironmentPage"), [400],
    params=[pref("IncludeArchived"), pref("Limit"), pref("Page")],
))
add("/v1/environments/{environment_id}", "get", op(
    "retrieveEnvironment", "Retrieve an environment", "Environments", ok("Environment"), [404], params=[pref("EnvironmentId")],
))
add("/v1/environments/{environment_id}", "post", op(
    "updateEnvironment", "Update an environment", "Environments", ok("Environment"), [400, 404, 413],
    params=[pref("EnvironmentId")], body="EnvironmentUpdate", body_required=False,
))
add("/v1/environments/{environment_id}", "delete", op(
    "deleteEnvironment", "Delete an environment", "Environments", ok("Deleted"), [404, 409],
    params=[pref("EnvironmentId")], description="409 while live sessions use the environment.",
))
add("/v1/environments/{environment_id}/archive", "post", op(
    "archiveEnvironment", "Archive an environment", "Environments", ok("Environment"), [400, 404],
    params=[pref("EnvironmentId")], description="Archived environments take no new sessions and cannot be changed. " + EMPTY_POST,
))

# sessions
add("/v1/sessions", "post", op(
    "createSession", "Create a session", "Sessions", ok("Session"), [400, 404, 413], body="SessionCreate",
    description="New sessions start `idle`. 404 when the agent, agent version, environment or a vault does not exist.",
))
add("/v1/sessions", "get", op(
    "listSessions", "List sessions", "Sessions", ok("SessionPage"), [400],
    params=[
        query("agent_id", STR, "Only sessions of this agent."),
        query("agent_version", {"type": "integer", "minimum": 0}, "Only sessions pinned to this agent version; needs `agent_id`."),
        pref("IncludeArchived"),
        array_query("statuses[]", ref("SessionStatus"), "Only sessions in these statuses."),
        pref("CreatedAtGt"), pref("CreatedAtGte"), pref("CreatedAtLt"), pref("CreatedAtLte"),
        query("deployment_id", STR, "Accepted for compatibility; Paddock has no deployments, so the page is empty."),
        query("memory_store_id", STR, "Accepted for compatibility; Paddock has no memory stores, so the page is empty."),
        pref("Limit"),
        order("desc", "`created_at`"),
        pref("Page"),
    ],
))
add("/v1/sessions/{session_id}", "get", op("retrieveSession", "Retrieve a session", "Sessions", ok("Session"), [404], params=[pref("SessionId")]))
add("/v1/sessions/{session_id}", "post", op(
    "updateSession", "Update a session", "Sessions", ok("Session"), [400, 404, 409, 413],
    params=[pref("SessionId")], body="SessionUpdate", body_required=False,
    description="409 when the session is archived, or when `agent` changes while it is running.",
))
add("/v1/sessions/{session_id}", "delete", op(
    "deleteSession", "Delete a session", "Sessions", ok("Deleted"), [404, 409],
    params=[pref("SessionId")], description="Ends open event streams with `session.deleted`. 409 while the session is running.",
))
add("/v1/sessions/{session_id}/archive", "post", op(
    "archiveSession", "Archive a session", "Sessions", ok("Session"), [400, 404, 409],
    params=[pref("SessionId")], description="409 while the session is running. " + EMPTY_POST,
))

# events
EVENT_TIME = "compared with `processed_at`."
add("/v1/sessions/{session_id}/events", "post", op(
    "sendEvents", "Send events to a session", "Events",
    ok("SentEvents", extra_headers={"idempotent-replayed": {"$ref": H + "IdempotentReplayed"}}),
    [400, 404, 409, 413],
    params=[
        pref("SessionId"),
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "description": "Paddock's addition: 1 to 255 characters. A retry with the same key and body returns the first response (with `idempotent-replayed: true`) without appending again; the same key with a different body is a 409 (`idempotency_key_reused`).",
            "schema": {"type": "string", "minLength": 1, "maxLength": 255},
        },
    ],
    body="SendEvents",
    description="409 when the session is archived or terminated, or a tool use is already answered. A `user.message` starts (or queues) a turn of the agent; 429 (`rate_limit_error`, `details.error_code` `budget_reached` or `quota_exceeded`, `x-should-retry: false`) when the session's budget or its agent's quotas are spent. `user.interrupt` cancels the turn in flight (its model stream and running command).",
))
add("/v1/sessions/{session_id}/events", "get", op(
    "listEvents", "List a session's events", "Events", ok("EventPage"), [400, 404],
    params=[
        pref("SessionId"),
        array_query("types[]", STR, "Only events of these types."),
        query("created_at[gt]", {"type": "string", "format": "date-time"}, "Only events processed after this time; " + EVENT_TIME),
        query("created_at[gte]", {"type": "string", "format": "date-time"}, "Only events processed at or after this time; " + EVENT_TIME),
        query("created_at[lt]", {"type": "string", "format": "date-time"}, "Only events processed before this time; " + EVENT_TIME),
        query("created_at[lte]", {"type": "string", "format": "date-time"}, "Only events processed at or before this time; " + EVENT_TIME),
        query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}, "Page size."),
        order("asc", "`processed_at` (log order)"),
        pref("Page"),
    ],
))
add("/v1/sessions/{session_id}/events/stream", "get", op(
    "streamEvents", "Stream a session's events", "Events",
    {
        "description": "A Server-Sent Events stream of the session's events, in log order, starting after the resume point.",
        "headers": {"request-id": {"$ref": H + "RequestId"}},
        "content": {"text/event-stream": {"schema": ref("EventStream")}},
    },
    [400, 404],
    params=[
        pref("SessionId"),
        array_query("event_deltas[]", {"type": "string", "enum": ["agent.message", "agent.thinking"]}, "Preview deltas to include: `event_start` (announcing the id the final event will have) and `event_delta` frames for `agent.message` text as the model streams it. Previews are never stored; a stream that falls behind may miss some, never an event."),
        query("after", STR, "Resume after this event id; `start` replays the whole log. Without it (or `Last-Event-ID`) the stream starts at the current end."),
        {
            "name": "Last-Event-ID",
            "in": "header",
            "required": False,
            "description": "Resume after this event id (takes precedence over `after`). An id that is not an event of this session is a 400.",
            "schema": STR,
        },
    ],
))

# runners
add("/v1/runners", "get", op(
    "listRunners", "List runners", "Runners", ok("RunnerPage"), [400],
    params=[
        array_query("states[]", ref("RunnerState"), "Only runners in these states."),
        query("session_id", STR, "Only the runners of this session."),
        query("backend", STR, "Only runners on this backend."),
        pref("Limit"),
        order("desc", "creation"),
        pref("Page"),
    ],
    description="Paddock's resource.",
))
RUNNING_409 = "The runner is not `running` (`conflict`)."
RUNNER_404 = "The runner does not exist (`runner_not_found`)."
SNAPSHOT_404 = "The snapshot does not exist (`snapshot_not_found`)."
BACKEND_503 = "The runner's backend is not configured on this server (`backend_unavailable`)."
add("/v1/runners/{runner_id}", "get", op(
    "retrieveRunner", "Retrieve a runner", "Runners", ok("RunnerDetail"), {400: None, 404: RUNNER_404},
    params=[pref("RunnerId")],
    description="The runner with live figures: uptime, the idle timeout that applies, the latest usage sample and, when it serves a session, its cost against the budget.",
))
add("/v1/runners/{runner_id}", "post", op(
    "updateRunner", "Update a runner's settings", "Runners", ok("RunnerDetail", "The runner with its new settings, as `GET /v1/runners/{runner_id}` answers it."),
    {
        400: "Invalid body: an unknown field, a bad budget, a bad variable name or value (`env.<name>`), or a network policy wider than the runner's profile allows or one its backend cannot enforce (`network`).",
        404: RUNNER_404,
        409: "The runner is `destroying` or `destroyed`; its settings are final (`conflict`).",
        413: None,
        503: BACKEND_503,
    },
    params=[pref("RunnerId")], body="RunnerUpdate", body_required=False,
    description="Changes a runner's settings in any state but `destroying` and `destroyed`. The idle timeout and the budget apply at once; variables and the network policy at the next start — while the runner runs they are listed in `pending_restart` (use `POST /v1/runners/{runner_id}/restart`).",
))
WORKER_502 = "The worker failed or could not be reached (`worker_error`, `worker_unreachable`). Worker refusals the API has no status for end up here too, e.g. a duplicate exec id, a command that cannot be started, a non-empty directory without `recursive=true`."
WORKER_QUERY = "The query string is passed to the runner's worker as is; the worker refuses unknown parameters with 400 (`worker_rejected`)."
add("/v1/runners", "post", op(
    "createRunner", "Create a runner", "Runners", ok("Runner"),
    {
        400: "Invalid body, unknown or refused execution profile (`execution_profile`, including a network policy or limit the backend cannot enforce: `execution_profile.network`), archived environment (`environment_archived`), environment limits above the profile's, or an environment whose backend differs from the profile's.",
        404: "The environment or session does not exist.",
        409: "The session is archived or terminated and takes no runner (`conflict`).",
        413: None,
        503: None,
    },
    body="RunnerCreate", body_required=False,
    description="Resolves the execution profile, checks that the backend can honour it, and provisions the sandbox before answering. Answers with the runner `running`, or `errored` (with `error`) when provisioning failed. Each state change is written to the runner's event log (and its session's, when it serves one).",
))
add("/v1/runners/{runner_id}", "delete", op(
    "destroyRunner", "Destroy a runner", "Runners", ok("Runner", "The runner, now `destroyed`."),
    {
        400: None,
        404: RUNNER_404,
        409: "The runner is `creating`, `provisioning` or `stopping`; retry once it settles (`conflict`).",
        503: BACKEND_503,
        504: "The sandbox did not die in time; the runner stays `destroying` and the destroy can be retried.",
    },
    params=[pref("RunnerId")],
    description="Stops the runner first when it is running, then removes its sandbox and workspace. Idempotent: destroying a destroyed runner returns it as is. The runner record stays (state `destroyed`).",
))
add("/v1/runners/{runner_id}/stop", "post", op(
    "stopRunner", "Stop a runner", "Runners", ok("Runner", "The runner, now `stopped` (or `errored` when stopping failed)."),
    {400: "The body is not JSON, or has an unknown field or a bad `timeout_secs`.", 404: RUNNER_404, 409: "The runner is neither `running` nor `stopped` (`conflict`).", 413: None, 503: BACKEND_503},
    params=[pref("RunnerId")], body="StopRequest", body_required=False,
    description="Asks the worker to cancel running execs, waits up to `timeout_secs` for them to end, then kills the sandbox, keeping its workspace. Exec streams still open end without an `exit` record. Stopping a stopped runner returns it unchanged. The body may be empty.",
))
add("/v1/runners/{runner_id}/restart", "post", op(
    "restartRunner", "Restart a runner", "Runners", ok("Runner", "The runner, now `running` (or `errored` when stopping or starting failed)."),
    {400: None, 404: RUNNER_404, 409: "The runner is neither `running` nor `stopped` (`conflict`).", 503: BACKEND_503},
    params=[pref("RunnerId")],
    description="Stops a running runner (with the server's default grace; the state changes carry the reason `restart`) and starts it again with its workspace intact, applying the settings in `pending_restart`. A stopped runner is just started. " + EMPTY_POST,
))
add("/v1/runners/{runner_id}/start", "post", op(
    "startRunner", "Start a stopped runner", "Runners", ok("Runner", "The runner, now `running` (or `errored` when starting failed)."),
    {400: None, 404: RUNNER_404, 409: "The runner is neither `stopped` nor `running` (`conflict`).", 503: BACKEND_503},
    params=[pref("RunnerId")],
    description="Starts a stopped runner again with its workspace intact. Starting a running runner returns it unchanged. " + EMPTY_POST,
))
add("/v1/runners/{runner_id}/exec", "post", op(
    "execInRunner", "Run a command in a runner", "Runners",
    {
        "description": "The command started: its records as newline-delimited JSON, streamed as they are produced (`started`, output chunks, `exit`). A non-zero exit, a timeout or a cancellation is reported in the `exit` record, not as an error status.",
        "headers": {"request-id": {"$ref": H + "RequestId"}},
        "content": {"application/x-ndjson": {"schema": ref("ExecRecord")}},
    },
    {
        400: "The body is not a JSON object, or the worker refused it (`worker_rejected`): unknown field, both or neither of `command` and `argv`, bad `id`, `timeout_ms: 0`, `cwd` not a directory, …",
        403: "`cwd` is outside the workspace (`path_forbidden`).",
        404: "The runner does not exist, or `cwd` does not (`file_not_found`).",
        409: RUNNING_409,
        413: None,
        502: WORKER_502,
        503: BACKEND_503,
    },
    params=[pref("RunnerId")], body="ExecRequest",
    description="Runs one command in the runner's workspace, in its own process group. Closing the response stream kills the command. The runner must be `running`.",
))
add("/v1/runners/{runner_id}/cancel", "post", op(
    "cancelRunnerCommands", "Cancel running commands", "Runners",
    ok({"type": "object", "required": ["cancelled"], "properties": {"cancelled": {"type": "array", "items": {"type": "string"}, "description": "Ids of the commands that were stopped."}}}),
    {400: None, 404: RUNNER_404, 409: RUNNING_409, 502: WORKER_502, 503: BACKEND_503},
    params=[pref("RunnerId")], body="CancelRequest", body_required=False,
    description="Stops the running command with this `id` (given in the exec request, or read from its `started` record), or every running command when `id` is left out. Each one gets SIGTERM, then SIGKILL after a grace; its stream ends with an `exit` record with `cancelled: true`.",
))
add("/v1/runners/{runner_id}/status", "get", op(
    "getRunnerStatus", "A runner's live resource usage", "Runners", ok("RunnerStatus"),
    {400: None, 404: RUNNER_404, 409: RUNNING_409, 502: WORKER_502, 503: BACKEND_503},
    params=[pref("RunnerId")],
))
add("/v1/runners/{runner_id}/logs", "get", op(
    "getRunnerLogs", "A runner's logs", "Runners",
    {
        "description": "Without `follow`: the logs as JSON. With `follow=true`: a Server-Sent Events stream of new log lines.",
        "headers": {"request-id": {"$ref": H + "RequestId"}},
        "content": {
            "application/json": {"schema": ref("RunnerLogs")},
            "text/event-stream": {"schema": ref("RunnerLogStream")},
        },
    },
    {
        400: None,
        404: RUNNER_404,
        409: "`follow=true` and the runner is not `running` (`conflict`).",
        502: "`follow=true` and the worker failed or could not be reached (`worker_error`, `worker_unreachable`).",
        503: BACKEND_503,
    },
    params=[
        pref("RunnerId"),
        query("tail", {"type": "integer", "minimum": 0, "default": 200}, "Lines (and output records) to return; clamped to 1 … 10000. Ignored with `follow=true`."),
        query("follow", {"type": "boolean", "default": False}, "Stream new log lines as Server-Sent Events (`text/event-stream`) instead of answering once; needs a running runner."),
    ],
    description="Without `follow`, works in every state: the sandbox's log is read from the backend; the worker's part only while the runner is running. With `follow=true`, streams the worker's log lines and exec output written after the stream opened, as `event: log` frames (data: RunnerLogLine), until the runner stops (`event: end`).",
))
add("/v1/runners/{runner_id}/events", "get", op(
    "listRunnerEvents", "List a runner's events", "Runners", ok("RunnerEventPage"), {400: None, 404: RUNNER_404},
    params=[
        pref("RunnerId"),
        query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}, "Page size."),
        order("asc", "position in the log"),
        pref("Page"),
    ],
    description="The runner's own event log, oldest first by default: every state change, snapshot and restore, and the OOM kills and full disks the sampler saw.",
))
add("/v1/runners/{runner_id}/metrics", "get", op(
    "getRunnerMetrics", "A runner's usage history", "Runners", ok("RunnerMetrics"), {400: None, 404: RUNNER_404},
    params=[pref("RunnerId")],
    description="The usage samples the orchestrator took while the runner ran (CPU, memory, disk, processes), oldest first, for charts. Works in every state; the history is empty unless the runner is running.",
))
add("/v1/runners/{runner_id}/activity", "get", op(
    "getRunnerActivity", "A runner's activity", "Runners", ok("RunnerActivity"), {400: None, 404: RUNNER_404},
    params=[
        pref("RunnerId"),
        query("limit", {"type": "integer", "minimum": 0, "default": 100}, "How many of the newest entries to return; clamped to 1 … 1000."),
    ],
    description="What happened on the runner, merged and oldest first: its own events and, when it serves a session, the session's messages, tool calls and status changes. Each source contributes at most its newest 1000 events.",
))
PATH_Q = "A path relative to the workspace root (or absolute under it). `..` may not climb above the root, and symbolic links are followed only inside the workspace."
add("/v1/runners/{runner_id}/files/read", "get", op(
    "readRunnerFile", "Read a file", "Runners",
    ok({"type": "string", "contentMediaType": "application/octet-stream", "description": "The bytes from `offset`, at most `limit` of them."}, "The file's bytes.", "application/octet-stream"),
    {
        400: "`path` is missing or not a regular file, a bad `offset`/`limit`, or an unknown parameter (`worker_rejected`).",
        403: "`path` is outside the workspace (`path_forbidden`).",
        404: "The runner or the file does not exist (`file_not_found`).",
        409: RUNNING_409, 502: WORKER_502, 503: BACKEND_503,
    },
    params=[
        pref("RunnerId"),
        {"name": "path", "in": "query", "required": True, "description": PATH_Q, "schema": {"type": "string", "minLength": 1}},
        query("offset", {"type": "integer", "minimum": 0, "default": 0}, "First byte to return; past the end, the body is empty."),
        query("limit", {"type": "integer", "minimum": 0}, "Most bytes to return; omitted = to the end of the file."),
    ],
    description=WORKER_QUERY,
))
add("/v1/runners/{runner_id}/files/write", "put", op(
    "writeRunnerFile", "Write a file", "Runners", ok("FileWritten"),
    {
        400: "`path` is missing, is the workspace root or not a regular file, its parent is not a directory, a bad `mode`/`mkdirs`, or an unknown parameter (`worker_rejected`).",
        403: "`path` is outside the workspace (`path_forbidden`).",
        404: "The runner does not exist, or the parent directory does not and `mkdirs` is not true (`file_not_found`).",
        409: RUNNING_409,
        413: "The body is larger than the server's `max_body_bytes` (or the worker's limit).",
        502: WORKER_502, 503: BACKEND_503,
    },
    params=[
        pref("RunnerId"),
        {"name": "path", "in": "query", "required": True, "description": PATH_Q, "schema": {"type": "string", "minLength": 1}},
        query("mode", {"type": "string", "pattern": "^(0o)?[0-7]+$", "examples": ["0644"]}, "Permission bits in octal, at most `7777`. Default: the existing file's mode, else `0644`."),
        query("mkdirs", {"type": "boolean", "default": False}, "Create missing parent directories."),
    ],
    description="Replaces the file with the request body, atomically (written to a temporary sibling, then renamed). " + WORKER_QUERY,
))
paths["/v1/runners/{runner_id}/files/write"]["put"]["requestBody"] = {
    "required": False,
    "description": "The file's new contents, raw; an empty body writes an empty file.",
    "content": {"application/octet-stream": {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}}},
}
add("/v1/runners/{runner_id}/files/list", "get", op(
    "listRunnerFiles", "List a directory", "Runners", ok("FileList"),
    {
        400: "`path` is not a directory, a bad `limit`, or an unknown parameter (`worker_rejected`).",
        403: "`path` is outside the workspace (`path_forbidden`).",
        404: "The runner or the directory does not exist (`file_not_found`).",
        409: RUNNING_409, 502: WORKER_502, 503: BACKEND_503,
    },
    params=[
        pref("RunnerId"),
        query("path", {"type": "string", "default": "."}, PATH_Q + " Default: the workspace root."),
        query("limit", {"type": "integer", "minimum": 1, "maximum": 100000, "default": 10000}, "Most entries to return."),
    ],
    description=WORKER_QUERY,
))
add("/v1/runners/{runner_id}/files/stat", "get", op(
    "statRunnerFile", "Describe a file", "Runners", ok("FileStat"),
    {
        400: "`path` is missing, or an unknown parameter (`worker_rejected`).",
        403: "`path` is outside the workspace (`path_forbidden`).",
        404: "The runner or the file does not exist (`file_not_found`).",
        409: RUNNING_409, 502: WORKER_502, 503: BACKEND_503,
    },
    params=[
        pref("RunnerId"),
        {"name": "path", "in": "query", "required": True, "description": PATH_Q + " A final symbolic link is described, not followed.", "schema": {"type": "string", "minLength": 1}},
    ],
    description=WORKER_QUERY,
))
add("/v1/runners/{runner_id}/files", "delete", op(
    "deleteRunnerFile", "Delete a file or directory", "Runners", ok("FileDeleted"),
    {
        400: "`path` is missing, a bad `recursive`, or an unknown parameter (`worker_rejected`).",
        403: "`path` is outside the workspace or is the workspace root (`path_forbidden`).",
        404: "The runner or the file does not exist (`file_not_found`).",
        409: RUNNING_409,
        502: WORKER_502 + " (The worker's 409 `directory_not_empty` arrives as this 502.)",
        503: BACKEND_503,
    },
    params=[
        pref("RunnerId"),
        {"name": "path", "in": "query", "required": True, "description": PATH_Q + " A final symbolic link is removed itself, not its target.", "schema": {"type": "string", "minLength": 1}},
        query("recursive", {"type": "boolean", "default": False}, "Delete a non-empty directory and everything in it."),
    ],
    description=WORKER_QUERY,
))
add("/v1/runners/{runner_id}/snapshots", "post", op(
    "createSnapshot", "Snapshot a runner's workspace", "Snapshots", ok("Snapshot"),
    {
        400: "The body is not JSON, or has an unknown field.",
        404: "The runner does not exist (`runner_not_found`), or has no workspace on its backend (`sandbox_not_found`).",
        409: "The runner is `creating`, `destroying` or `destroyed`: there is no workspace to snapshot (`conflict`).",
        413: None,
        500: "Archiving the workspace failed (`backend_io`).",
        503: BACKEND_503,
    },
    params=[pref("RunnerId")], body="SnapshotCreate", body_required=False,
    description="Copies the runner's workspace into an archive kept by the orchestrator and writes `runner.snapshot_created` to its event log. A running runner keeps running: files changed while they are read are copied as they were at that moment. The body may be empty.",
))
add("/v1/runners/{runner_id}/snapshots", "get", op(
    "listRunnerSnapshots", "List a runner's snapshots", "Snapshots", ok("SnapshotPage"), {400: None, 404: RUNNER_404},
    params=[pref("RunnerId"), pref("Limit"), order("desc", "creation"), pref("Page")],
))
add("/v1/runners/{runner_id}/restore", "post", op(
    "restoreRunner", "Restore a runner's workspace from a snapshot", "Snapshots",
    ok("Runner", "The runner: `running` again when it was running (or `errored` when it could not be started again), else still `stopped`."),
    {
        400: "Invalid body: `snapshot_id` missing, or an unknown field.",
        404: "The snapshot (`snapshot_not_found`) or the runner (`runner_not_found`) does not exist.",
        409: "The runner is neither `running` nor `stopped` (`conflict`).",
        413: None,
        500: "The snapshot could not be extracted (`backend_io`); the workspace is left as it was, and a runner that was running is started again.",
        503: BACKEND_503,
    },
    params=[pref("RunnerId")], body="RestoreRequest",
    description="Replaces the runner's workspace with the snapshot's contents (a snapshot of any runner), stopping a running runner first (reason `restoring snapshot …`) and starting it again afterwards. Writes `runner.restored` to its event log.",
))
add("/v1/snapshots", "get", op(
    "listSnapshots", "List snapshots", "Snapshots", ok("SnapshotPage"), [400],
    params=[query("runner_id", STR, "Only the snapshots of this runner."), pref("Limit"), order("desc", "creation"), pref("Page")],
    description="Snapshots of every runner, including destroyed ones.",
))
add("/v1/snapshots/{snapshot_id}", "get", op(
    "retrieveSnapshot", "Retrieve a snapshot", "Snapshots", ok("Snapshot"), {400: None, 404: SNAPSHOT_404},
    params=[pref("SnapshotId")],
))
add("/v1/snapshots/{snapshot_id}", "delete", op(
    "deleteSnapshot", "Delete a snapshot", "Snapshots", ok("Deleted", "`{id, type: \"snapshot_deleted\"}`."), {400: None, 404: SNAPSHOT_404},
    params=[pref("SnapshotId")],
    description="Removes the snapshot and its archive.",
))
add("/v1/snapshots/{snapshot_id}/branch", "post", op(
    "branchSnapshot", "Create a runner from a snapshot", "Snapshots",
    ok("Runner", "The new runner, `running`, or `errored` (with `error`) when seeding its workspace or provisioning failed."),
    {
        400: "Invalid body or refused profile, as for `POST /v1/runners`.",
        404: "The snapshot (`snapshot_not_found`), or the environment or session named, does not exist.",
        409: "The session is archived or terminated and takes no runner (`conflict`).",
        413: None,
        503: None,
    },
    params=[pref("SnapshotId")], body="RunnerCreate", body_required=False,
    description="Creates a runner as `POST /v1/runners` does, its workspace starting as the snapshot's contents; the snapshot's runner is not touched. `execution_profile` and `environment_id` default to those of the snapshot's runner.",
))
add("/v1/fleet", "get", op(
    "getFleet", "Every runner at a glance", "Runners", ok("Fleet"), [400],
    description="Counts of the runners that are not destroyed by state, backend and execution profile, capacity left (per profile and server-wide), the cost of the sessions they serve, and health: errored runners and those near their memory limit.",
))
add("/v1/backends", "get", op(
    "listBackends", "List backends", "Runners", ok("BackendList"),
    description="The compute backends configured on this server and what each really enforces on this host.",
))
add("/v1/profiles", "get", op(
    "listProfiles", "List execution profiles", "Runners", ok("ProfileList"),
    description="The execution profiles runners can be created from (server configuration), and which one is the default.",
))


# tokens, audit
TOKEN_404 = "The token does not exist (`token_not_found`)."
ADMINS = "Admins only. "
add("/v1/tokens", "post", op(
    "createToken", "Create an API token", "Security", ok("ApiTokenCreated", "The token, with its secret in `token`: store it now, it is not shown again."),
    {400: "Invalid body: unknown field, blank or too long `name`, unknown `role`, or `expires_at` not in the future.", 413: None},
    body="TokenCreate",
    description=ADMINS + "Tokens are checked only on a server with an `api_token`; without one, every caller is an admin and tokens are not needed. The secret is stored hashed.",
))
add("/v1/tokens", "get", op(
    "listTokens", "List API tokens", "Security", ok("TokenPage"), [400],
    params=[pref("Limit"), order("desc", "creation"), pref("Page")],
    description=ADMINS + "Revoked and expired tokens are listed too. Secrets are never returned.",
))
add("/v1/tokens/{token_id}", "get", op(
    "retrieveToken", "Retrieve an API token", "Security", ok("ApiToken"), {400: "An unknown query parameter.", 404: TOKEN_404},
    params=[pref("TokenId")], description=ADMINS + "The secret is never returned.",
))
add("/v1/tokens/{token_id}", "delete", op(
    "revokeToken", "Revoke an API token", "Security", ok("ApiToken", "The token, with `revoked_at` set."), {400: "An unknown query parameter.", 404: TOKEN_404},
    params=[pref("TokenId")],
    description=ADMINS + "The token stops working at once; its record stays. Idempotent: revoking a revoked token returns it unchanged.",
))
AUDIT_MATCH = "`*` matches any run of characters; without one the value must match whole. Case-insensitive."
add("/v1/audit", "get", op(
    "listAudit", "Read the audit trail", "Security", ok("AuditList"),
    {400: "A bad time or `limit`, or an unknown query parameter."},
    params=[
        query("since", {"type": "string", "format": "date-time"}, "Only entries at or after this RFC 3339 time."),
        query("until", {"type": "string", "format": "date-time"}, "Only entries at or before this RFC 3339 time."),
        query("action", {"type": "string", "examples": ["agents.*"]}, "Only entries whose `action` matches; " + AUDIT_MATCH),
        query("target", {"type": "string", "examples": ["run_*"]}, "Only entries whose `target` matches; " + AUDIT_MATCH),
        query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}, "Most entries to return."),
    ],
    description="The newest matching entries first, in one answer (`next_page` is always null). Any role may read it: entries name fingerprints and routes, never secrets or bodies.",
))

# vaults
VAULT_404 = "The vault does not exist (`vault_not_found`)."
CRED_404 = "The vault (`vault_not_found`), or the credential in it (`credential_not_found`), does not exist."
add("/v1/vaults", "post", op(
    "createVault", "Create a vault", "Vaults", ok("Vault"),
    {400: "Invalid body: unknown field, missing or bad `display_name`, or bad metadata (`invalid_metadata`).", 413: None},
    body="VaultCreate", description=ADMINS.strip(),
))
add("/v1/vaults", "get", op(
    "listVaults", "List vaults", "Vaults", ok("VaultPage"), [400],
    params=[pref("IncludeArchived"), pref("Limit"), pref("Page")], description=ADMINS + "Oldest first.",
))
add("/v1/vaults/{vault_id}", "get", op(
    "retrieveVault", "Retrieve a vault", "Vaults", ok("Vault"), {404: VAULT_404}, params=[pref("VaultId")], description=ADMINS.strip(),
))
add("/v1/vaults/{vault_id}", "post", op(
    "updateVault", "Update a vault", "Vaults", ok("Vault"), {400: None, 404: VAULT_404, 413: None},
    params=[pref("VaultId")], body="VaultUpdate", body_required=False, description=ADMINS.strip(),
))
add("/v1/vaults/{vault_id}", "delete", op(
    "deleteVault", "Delete a vault", "Vaults", ok("Deleted", "`{id, type: \"vault_deleted\"}`."), {404: VAULT_404},
    params=[pref("VaultId")],
    description=ADMINS + "Deletes the vault and every credential in it. Sessions that list it keep its id; their runners no longer get its secrets.",
))
add("/v1/vaults/{vault_id}/archive", "post", op(
    "archiveVault", "Archive a vault", "Vaults", ok("Vault"), {400: None, 404: VAULT_404},
    params=[pref("VaultId")],
    description=ADMINS + "Archived vaults take no new credentials and no new sessions, and their secrets are no longer set in runners. Archiving an archived vault returns it unchanged. " + EMPTY_POST,
))

# credentials
add("/v1/vaults/{vault_id}/credentials", "post", op(
    "createCredential", "Create a credential", "Vaults", ok("VaultCredential", "The credential, without its secrets."),
    {
        400: "Invalid body: unknown field, unknown `auth.type`, a missing or empty secret, a missing or bad `mcp_server_url`, `secret_name`, `networking` or `expires_at`, bad metadata, or the vault is archived. The message names the field, never a secret.",
        404: VAULT_404,
        413: None,
    },
    params=[pref("VaultId")], body="VaultCredentialCreate",
    description=ADMINS + "The secrets in `auth` are sealed with the vault key, bound to the credential's id, and never returned.",
))
add("/v1/vaults/{vault_id}/credentials", "get", op(
    "listCredentials", "List a vault's credentials", "Vaults", ok("VaultCredentialPage"), {400: None, 404: VAULT_404},
    params=[pref("VaultId"), pref("IncludeArchived"), pref("Limit"), pref("Page")], description=ADMINS + "Oldest first; without secrets.",
))
add("/v1/vaults/{vault_id}/credentials/{credential_id}", "get", op(
    "retrieveCredential", "Retrieve a credential", "Vaults", ok("VaultCredential", "The credential, without its secrets."), {404: CRED_404},
    params=[pref("VaultId"), pref("CredentialId")], description=ADMINS.strip(),
))
add("/v1/vaults/{vault_id}/credentials/{credential_id}", "post", op(
    "updateCredential", "Update a credential", "Vaults", ok("VaultCredential", "The credential, without its secrets."),
    {
        400: "Invalid body: unknown field, `auth.type` not the stored one, a changed `mcp_server_url` or `secret_name`, an empty secret, or bad metadata. The message names the field, never a secret.",
        404: CRED_404,
        413: None,
    },
    params=[pref("VaultId"), pref("CredentialId")], body="VaultCredentialUpdate", body_required=False,
    description=ADMINS + "Secrets given in `auth` replace the stored ones (rotation) and take effect when a runner is next provisioned or started; the others are kept.",
))
add("/v1/vaults/{vault_id}/credentials/{credential_id}", "delete", op(
    "deleteCredential", "Delete a credential", "Vaults", ok("Deleted", "`{id, type: \"vault_credential_deleted\"}`."), {404: CRED_404},
    params=[pref("VaultId"), pref("CredentialId")], description=ADMINS + "Deletes the credential and its sealed secrets.",
))
add("/v1/vaults/{vault_id}/credentials/{credential_id}/archive", "post", op(
    "archiveCredential", "Archive a credential", "Vaults", ok("VaultCredential"), {400: None, 404: CRED_404},
    params=[pref("VaultId"), pref("CredentialId")],
    description=ADMINS + "Archived credentials are no longer set in runners. Archiving an archived credential returns it unchanged. " + EMPTY_POST,
))
add("/v1/vaults/{vault_id}/credentials/{credential_id}/mcp_oauth_validate", "post", op(
    "validateCredential", "Validate an MCP OAuth credential", "Vaults", ok("CredentialValidation"),
    {400: "The credential is not of type `mcp_oauth`.", 404: CRED_404},
    params=[pref("VaultId"), pref("CredentialId")],
    description=ADMINS + "Paddock does not probe the MCP server, so `status` is always `unknown`; `has_refresh_token` says whether the credential can be refreshed. " + EMPTY_POST,
))

# authentication: every route but the open ones needs a token and is rate-limited
OPEN_ROUTES = {"/healthz", "/metrics"}
FORBIDDEN_VIEWER = "The token is a viewer's, which may only read (`permission_error`)."
FORBIDDEN_ADMIN = "The token is not an admin's: tokens and vaults are for admins only (`permission_error`)."


def least_role(method, path):
    """As the server decides (`RouteClass::of`): tokens and vaults need an admin, other changes an operator."""
    if path.startswith(("/v1/tokens", "/v1/vaults")):
        return "admin"
    return "viewer" if method in ("get", "head") else "operator"


for path, item in paths.items():
    for method, o in item.items():
        if path in OPEN_ROUTES:
            o["security"] = []
            continue
        r = o["responses"]
        r["401"] = {"$ref": R + "Unauthorized"}
        role = least_role(method, path)
        if role != "viewer":
            why = FORBIDDEN_ADMIN if role == "admin" else FORBIDDEN_VIEWER
            if "403" in r:
                r["403"]["description"] = r["403"]["description"] + " Or: " + why[0].lower() + why[1:]
            else:
                r["403"] = {"$ref": R + "PermissionDenied", "description": why}
        r["429"] = {"$ref": R + "TooManyRequests"}
        o["responses"] = dict(sorted(r.items(), key=lambda kv: int(kv[0])))


doc = {
    "openapi": "3.1.0",
    "info": {
        "title": "Paddock",
        "version": "0.1.0",
        "description": "Paddock's orchestrator API: agents, environments, sessions and their events, wire-compatible with the Managed Agents API for the primitives it shares, plus Paddock's runners. Query arrays use brackets (`statuses[]=a&statuses[]=b`); unknown query parameters are refused with 400 (`beta=true` is ignored). Updates are `POST /v1/<things>/{id}` (omitted = keep, null = clear). Unknown routes answer 404 and wrong methods 405, both with the Error envelope. Every route but `/healthz` and `/metrics` needs an API token (`bearerAuth`) and is rate-limited per caller; every change, and every action Paddock takes by itself, is written to the audit trail (`GET /v1/audit`).",
        "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
    },
    "servers": [{"url": "http://127.0.0.1:8080", "description": "The default listen address."}],
    "tags": [
        {"name": "Meta"},
        {"name": "Agents"},
        {"name": "Environments"},
        {"name": "Sessions"},
        {"name": "Events"},
        {"name": "Runners", "description": "Paddock's resource: live sandboxes (lifecycle, settings, commands, files, status, metrics, activity and logs), the fleet at a glance, and the execution profiles and backends runners are created from."},
        {"name": "Snapshots", "description": "Paddock's resource: point-in-time copies of runner workspaces, restored into a runner or branched into a new one."},
        {"name": "Vaults", "description": "Vaults and their credentials, for admins. Secrets are write-only: encrypted at rest with the vault key and never returned. The `environment_variable` credentials of the vaults a session lists are set in its runner's sandbox."},
        {"name": "Security", "description": "Paddock's resources: API tokens with roles (`viewer`, `operator`, `admin`), and the audit trail."},
    ],
    "security": [{"bearerAuth": []}],
    "paths": paths,
    "components": {
        "securitySchemes": {
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": "An API token: the server's `api_token` (an admin) or one made with `POST /v1/tokens` (its role). Send `Authorization: Bearer <token>`; `x-api-key: <token>` is accepted too. Without an `api_token` configured, the server takes no tokens: it listens on loopback only (unless `allow_unauthenticated`) and every caller is an admin.",
            },
        },
        "schemas": schemas,
        "parameters": parameters,
        "headers": headers,
        "responses": responses,
    },
}

out = sys.argv[1]
with open(out, "w") as f:
    json.dump(doc, f, indent=2, ensure_ascii=False)
    f.write("\n")
print("wrote", out, len(paths), "paths")
