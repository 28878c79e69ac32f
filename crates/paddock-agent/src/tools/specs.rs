//! What the model is told about each built-in tool: its description and input schema
//! (the inputs of the wire reference §4.2).

use super::builtin_name;
use crate::provider::ToolSpec;
use paddock_core::agent::BuiltinTool;
use serde_json::json;

/// The model-facing spec of a built-in tool.
pub fn builtin_spec(tool: BuiltinTool) -> ToolSpec {
    let (description, input_schema) = match tool {
        BuiltinTool::Bash => (
            "Runs a shell command in the sandbox with /bin/sh -c, working directory \
             /workspace, and returns its standard output, then its standard error, then \
             its exit status. Each call runs in a fresh shell: the working directory, \
             variables and background processes do not carry over to the next call (chain \
             commands with && instead). `restart` is accepted and has nothing to reset. \
             Long output keeps its head and tail. `timeout_ms` defaults to 120000 and is at \
             most 600000; a command still running then is killed.",
            json!({
                "type": "object",
                "properties": {
                    "command": {"type": "string", "description": "The command line to run."},
                    "restart": {"type": "boolean", "description": "Restart the shell (commands are stateless; nothing to reset)."},
                    "timeout_ms": {"type": "integer", "minimum": 1, "description": "Wall-clock limit in milliseconds."}
                }
            }),
        ),
        BuiltinTool::Read => (
            "Reads a text file of the workspace and returns its lines numbered like \
             `cat -n`. `file_path` is relative to /workspace or absolute under it. \
             `view_range` [start, end] selects lines (1-based, inclusive; end 0 or -1 = to \
             the end of the file). Long files are cut; read further with view_range.",
            json!({
                "type": "object",
                "properties": {
                    "file_path": {"type": "string"},
                    "view_range": {
                        "type": "array",
                        "items": {"type": "integer"},
                        "minItems": 2,
                        "maxItems": 2,
                        "description": "[start, end] line numbers, 1-based; end <= 0 means the end of the file."
                    }
                },
                "required": ["file_path"]
            }),
        ),
        BuiltinTool::Write => (
            "Writes a file of the workspace, replacing it if it exists and creating missing \
             parent directories. `file_path` is relative to /workspace or absolute under it.",
            json!({
                "type": "object",
                "properties": {
                    "file_path": {"type": "string"},
                    "content": {"type": "string"}
                },
                "required": ["file_path", "content"]
            }),
        ),
        BuiltinTool::Edit => (
            "Replaces text in a file of the workspace: `old_string` must occur exactly once \
             (include enough surrounding context to make it unique) unless `replace_all` is \
             true, and must differ from `new_string`.",
            json!({
                "type": "object",
                "properties": {
                    "file_path": {"type": "string"},
                    "old_string": {"type": "string"},
                    "new_string": {"type": "string"},
                    "replace_all": {"type": "boolean"}
                },
                "required": ["file_path", "old_string", "new_string"]
            }),
        ),
        BuiltinTool::Glob => (
            "Lists the files under `path` (default /workspace) whose path relative to \
             `path` matches a glob `pattern` (`*` and `?` stay within one directory, `**` \
             crosses directories, `{a,b}` alternatives, `[abc]` classes), e.g. `**/*.rs`. \
             Paths are returned relative to /workspace, sorted.",
            json!({
                "type": "object",
                "properties": {
                    "pattern": {"type": "string"},
                    "path": {"type": "string"}
                },
                "required": ["pattern"]
            }),
        ),
        BuiltinTool::Grep => (
            "Searches the files under `path` (a directory or one file; default /workspace) \
             for lines matching `pattern`, a POSIX extended regular expression (grep -E), \
             and returns them as path:line:text. Binary files are skipped.",
            json!({
                "type": "object",
                "properties": {
                    "pattern": {"type": "string"},
                    "path": {"type": "string"}
                },
                "required": ["pattern"]
            }),
        ),
        BuiltinTool::WebFetch => (
            "Fetches an http or https URL from inside the sandbox (redirects followed, 30 s \
             limit) and returns the response body, followed by its HTTP status.",
            json!({
                "type": "object",
                "properties": {
                    "url": {"type": "string"}
                },
                "required": ["url"]
            }),
        ),
        BuiltinTool::WebSearch => (
            "Searches the web. Not available in Paddock.",
            json!({
                "type": "object",
                "properties": {
                    "query": {"type": "string"}
                },
                "required": ["query"]
            }),
        ),
    };
    ToolSpec {
        name: builtin_name(tool).to_string(),
        description: description.to_string(),
        input_schema,
    }
}
