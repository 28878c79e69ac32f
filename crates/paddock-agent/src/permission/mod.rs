//! Permission decisions for built-in tool calls.
//!
//! [`evaluate`] applies a tool's [`PermissionPolicy`]: `always_allow` and
//! `always_ask` decide by themselves; `auto` judges the call with [`AUTO_RULES`], a
//! table of data: the first matching **deny** rule wins, else the first matching
//! **allow** rule, else the call is asked about (`indeterminate`).
//!
//! The rules are a convenience, not a security boundary: they are lexical (a path is
//! judged by its text, a command by its words), so a determined command can evade
//! them. What confines a tool is the sandbox (its namespaces, network policy and
//! workspace) and the worker's path confinement. The table is documented in
//! `docs/tools.md`.

mod shell;

use crate::tools::{workspace_relative, WORKSPACE};
use paddock_core::agent::{BuiltinTool, PermissionPolicy};
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::OnceLock;

/// What happens to a tool call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    Allow,
    Ask,
    Deny,
}

impl Permission {
    /// The wire value of `evaluated_permission` (`allow`, `ask`, `deny`).
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Allow => "allow",
            Permission::Ask => "ask",
            Permission::Deny => "deny",
        }
    }
}

/// The decision on one tool call.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub permission: Permission,
    /// The wire `evaluation` object: `{"type":"always_allow"}` | `{"type":"always_ask"}`
    /// | `{"type":"auto","evaluated_permission":{"type":"allow"} |
    /// {"type":"ask","reason_code":"indeterminate"} | {"type":"deny","reason_code":"high_risk"}}`.
    pub evaluation: Value,
    /// Human words for why (`rule_name: description`), for the tool result of a denied
    /// call; `None` under `always_allow`/`always_ask`.
    pub reason: Option<String>,
}

/// How a rule recognizes a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Matcher {
    /// Every tool call.
    Always,
    /// A path input of the call — `file_path` (read, write, edit), `path` (glob, grep)
    /// or an absolute glob `pattern` — lies outside the workspace (lexically: `..`
    /// climbing out, `~`, or an absolute path not under `/workspace`).
    PathOutsideWorkspace,
    /// No path input lies outside the workspace (absent optional paths mean the
    /// workspace itself).
    PathInsideWorkspace,
    /// The bash `command` matches this regular expression (anywhere in its text).
    CommandRegex(&'static str),
    /// Every simple command of the bash `command` is read-only or workspace-local (see
    /// [`SAFE_PROGRAMS`]), and every redirection writes inside `/workspace` or `/tmp`
    /// (or `/dev/null`). A call without a command (`restart`) runs nothing and matches.
    SafeCommand,
}

/// One rule of the `auto` policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    pub name: &'static str,
    pub tools: &'static [BuiltinTool],
    pub matcher: Matcher,
    pub permission: Permission,
    /// `high_risk` for deny rules, `indeterminate` for ask rules, `None` for allow.
    pub reason_code: Option<&'static str>,
    pub description: &'static str,
}

use BuiltinTool::{Bash, Edit, Glob, Grep, Read, WebFetch, WebSearch, Write};

const FILE_TOOLS: &[BuiltinTool] = &[Read, Write, Edit, Glob, Grep];
const ALL_TOOLS: &[BuiltinTool] = &[Bash, Edit, Read, Write, Glob, Grep, WebFetch, WebSearch];

/// The `auto` policy's rules. Deny rules are checked first (first match wins), then
/// allow rules, then ask rules; a call no rule matches is asked about.
pub const AUTO_RULES: &[Rule] = &[
    Rule {
        name: "path_outside_workspace",
        tools: FILE_TOOLS,
        matcher: Matcher::PathOutsideWorkspace,
        permission: Permission::Deny,
        reason_code: Some("high_risk"),
        description: "the path is outside the workspace /workspace",
    },
    Rule {
        name: "read_in_workspace",
        tools: &[Read, Glob, Grep],
        matcher: Matcher::PathInsideWorkspace,
        permission: Permission::Allow,
        reason_code: None,
        description: "reading inside the workspace",
    },
    Rule {
        name: "write_in_workspace",
        tools: &[Write, Edit],
        matcher: Matcher::PathInsideWorkspace,
        permission: Permission::Allow,
        reason_code: None,
        description: "changing a file inside the workspace",
    },
    Rule {
        name: "web_fetch",
        tools: &[WebFetch],
        matcher: Matcher::Always,
        permission: Permission::Ask,
        reason_code: Some("indeterminate"),
        description: "fetching a URL reaches outside the sandbox",
    },
    Rule {
        name: "rm_system_or_home",
        tools: &[Bash],
        matcher: Matcher::CommandRegex(concat!(
            r"\brm\s+(?:[^;&|\n]*\s)?",
            r#"["']?"#,
            r#"(?:(?:/|~/?|\$HOME/?|\$\{HOME\}/?)\*?|/(?:etc|usr|bin|sbin|lib|lib32|lib64|libx32|boot|root|sys|proc)(?:/[^\s;&|)"']*)?)"#,
            r#"["']?(?:\s|$|[;&|)])"#
        )),
        permission: Permission::Deny,
        reason_code: Some("high_risk"),
        description: "rm of /, the home directory or a system directory",
    },
    Rule {
        name: "make_filesystem",
        tools: &[Bash],
        matcher: Matcher::CommandRegex(r"\b(?:mkfs(?:\.\w+)?|mke2fs|mkswap|wipefs)\b"),
        permission: Permission::Deny,
        reason_code: Some("high_risk"),
        description: "formatting or wiping a filesystem",
    },
    Rule {
        name: "dd_to_device",
        tools: &[Bash],
        matcher: Matcher::CommandRegex(
            r"\bdd\b[^;&|\n]*\bof=/dev/(?:sd|hd|vd|xvd|nvme|mmcblk|disk|mapper/|dm-|md|loop|sr|mem\b|kmem|port)",
        ),
        permission: Permission::Deny,
        reason_code: Some("high_risk"),
        description: "dd onto a device",
    },
    Rule {
        name: "redirect_to_device",
        tools: &[Bash],
        matcher: Matcher::CommandRegex(
            r">\s*/dev/(?:sd|hd|vd|xvd|nvme|mmcblk|disk|mapper/|dm-|md\d|mem\b|kmem|port)",
        ),
        permission: Permission::Deny,
        reason_code: Some("high_risk"),
        description: "writing onto a block device",
    },
    Rule {
        name: "fork_bomb",
        tools: &[Bash],
        matcher: Matcher::CommandRegex(
            r"(?::|\b\w+)\s*\(\s*\)\s*\{\s*(?::|\w+)\s*\|\s*(?::|\w+)\s*&",
        ),
        permission: Permission::Deny,
        reason_code: Some("high_risk"),
        description: "a fork bomb",
    },
    Rule {
        name: "power_off",
        tools: &[Bash],
        matcher: Matcher::CommandRegex(concat!(
            r"(?:^|[;&|\n]|\bsudo\s)\s*(?:\S*/)?(?:shutdown|reboot|halt|poweroff)\b",
            r"|\bsystemctl\s+(?:poweroff|reboot|halt|kexec)\b",
            r"|(?:^|[;&|\n]|\bsudo\s)\s*(?:telinit|init)\s+[06]\b"
        )),
        permission: Permission::Deny,
        reason_code: Some("high_risk"),
        description: "shutting down or rebooting the machine",
    },
    Rule {
        name: "kill_every_process",
        tools: &[Bash],
        matcher: Matcher::CommandRegex(r"\bkill\s+(?:-\S+\s+)*-1\s*(?:$|[;&|)\n])"),
        permission: Permission::Deny,
        reason_code: Some("high_risk"),
        description: "kill -1 signals every process",
    },
    Rule {
        name: "recursive_chmod_system",
        tools: &[Bash],
        matcher: Matcher::CommandRegex(concat!(
            r"\b(?:chmod|chown|chgrp)\s+(?:[^;&|\n]*\s)?(?:-[a-zA-Z]*R[a-zA-Z]*|--recursive)\s+",
            r"(?:[^;&|\n]*\s)?",
            r#"["']?/(?:\*|(?:etc|usr|bin|sbin|lib|lib32|lib64|boot|root|home|var|sys|proc|dev)(?:/[^\s;&|)"']*)?)?"#,
            r#"["']?(?:\s|$|[;&|)])"#
        )),
        permission: Permission::Deny,
        reason_code: Some("high_risk"),
        description: "recursive chmod/chown of / or a system directory",
    },
    Rule {
        name: "remote_script",
        tools: &[Bash],
        matcher: Matcher::CommandRegex(concat!(
            r"\b(?:curl|wget)\b[^;&\n]*\|\s*(?:sudo\s+)?(?:\S*/)?(?:ba|da|z|k|fi)?sh\b",
            r"|\b(?:ba|da|z|k)?sh\b[^;&|\n]*(?:<\(|\$\()\s*(?:curl|wget)\b"
        )),
        permission: Permission::Deny,
        reason_code: Some("high_risk"),
        description: "running a script downloaded from the network",
    },
    Rule {
        name: "force_push_main",
        tools: &[Bash],
        matcher: Matcher::CommandRegex(concat!(
            r"\bgit\b[^;&|\n]*\bpush\b(?:",
            r"[^;&|\n]*(?:\s--force\S*|\s-f\b)[^;&|\n]*\b(?:main|master)\b",
            r"|[^;&|\n]*\b(?:main|master)\b[^;&|\n]*(?:\s--force\S*|\s-f\b)",
            r"|[^;&|\n]*\s\+(?:refs/heads/)?(?:main|master)\b)"
        )),
        permission: Permission::Deny,
        reason_code: Some("high_risk"),
        description: "force-pushing to main or master",
    },
    Rule {
        name: "bash_read_only",
        tools: &[Bash],
        matcher: Matcher::SafeCommand,
        permission: Permission::Allow,
        reason_code: None,
        description: "read-only or workspace-local commands",
    },
    Rule {
        name: "undetermined",
        tools: ALL_TOOLS,
        matcher: Matcher::Always,
        permission: Permission::Ask,
        reason_code: Some("indeterminate"),
        description: "no rule can tell that this call is safe",
    },
];

/// How the arguments of a safe program are judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operands {
    /// Any arguments (the program only reads).
    Any,
    /// At most this many operands (non-option arguments).
    AtMost(usize),
    /// Every operand is a path it may write: it must lie inside `/workspace` or `/tmp`.
    WritablePaths,
    /// `git`: the first argument must be one of [`SAFE_GIT`] (`--no-pager` may precede
    /// it); `init`'s operands must be writable paths.
    Git,
    /// `command`: only `command -v NAME…`.
    CommandV,
    /// `cd DIR`: always allowed; it moves the directory later relative paths are judged
    /// from (a directory outside the workspace makes them unjudgeable).
    Cd,
}

/// A program the `auto` policy lets bash run without asking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SafeProgram {
    pub name: &'static str,
    pub operands: Operands,
    /// Options that make it write or run something (exact, or `--opt=` prefixed).
    pub forbidden: &'static [&'static str],
}

const fn p(name: &'static str) -> SafeProgram {
    SafeProgram {
        name,
        operands: Operands::Any,
        forbidden: &[],
    }
}

const fn pf(name: &'static str, forbidden: &'static [&'static str]) -> SafeProgram {
    SafeProgram {
        name,
        operands: Operands::Any,
        forbidden,
    }
}

const fn po(name: &'static str, operands: Operands) -> SafeProgram {
    SafeProgram {
        name,
        operands,
        forbidden: &[],
    }
}

/// Programs bash may run under `auto` without asking (read-only, or writing only
/// inside the workspace).
pub const SAFE_PROGRAMS: &[SafeProgram] = &[
    p("ls"),
    p("cat"),
    p("head"),
    p("tail"),
    p("wc"),
    p("echo"),
    p("printf"),
    p("pwd"),
    p("grep"),
    p("egrep"),
    p("fgrep"),
    p("rg"),
    pf(
        "find",
        &[
            "-delete", "-exec", "-execdir", "-ok", "-okdir", "-fprint", "-fprint0", "-fprintf",
            "-fls",
        ],
    ),
    pf("sort", &["-o", "--output"]),
    po("uniq", Operands::AtMost(1)),
    p("diff"),
    p("cmp"),
    p("comm"),
    p("stat"),
    p("file"),
    p("which"),
    p("type"),
    p("true"),
    p("false"),
    p("test"),
    p("["),
    p("basename"),
    p("dirname"),
    p("realpath"),
    p("readlink"),
    p("du"),
    p("df"),
    p("date"),
    p("whoami"),
    p("id"),
    p("uname"),
    p("printenv"),
    po("env", Operands::AtMost(0)),
    p("nl"),
    p("tac"),
    p("rev"),
    p("cut"),
    p("tr"),
    p("column"),
    p("md5sum"),
    p("sha1sum"),
    p("sha256sum"),
    p("sha512sum"),
    p("cksum"),
    p("od"),
    p("hexdump"),
    p("strings"),
    p("seq"),
    p("sleep"),
    p("jq"),
    pf("tree", &["-o"]),
    p("nproc"),
    p("free"),
    p("uptime"),
    p("ps"),
    po("mkdir", Operands::WritablePaths),
    po("touch", Operands::WritablePaths),
    po("tee", Operands::WritablePaths),
    po("cp", Operands::WritablePaths),
    po("mv", Operands::WritablePaths),
    po("git", Operands::Git),
    po("command", Operands::CommandV),
    po("cd", Operands::Cd),
];

/// `git` subcommands bash may run under `auto` without asking.
pub const SAFE_GIT: &[&str] = &[
    "status",
    "diff",
    "log",
    "show",
    "branch",
    "add",
    "commit",
    "init",
    "rev-parse",
    "ls-files",
    "blame",
    "describe",
    "shortlog",
    "grep",
    "tag",
];
/// Options no safe git subcommand may take (they write files or run programs).
const GIT_FORBIDDEN: &[&str] = &["--output", "--exec", "--upload-pack", "--receive-pack"];

/// Judges one tool call under `policy`.
pub fn evaluate(policy: PermissionPolicy, tool: BuiltinTool, input: &Value) -> Decision {
    match policy {
        PermissionPolicy::AlwaysAllow => Decision {
            permission: Permission::Allow,
            evaluation: json!({"type": "always_allow"}),
            reason: None,
        },
        PermissionPolicy::AlwaysAsk => Decision {
            permission: Permission::Ask,
            evaluation: json!({"type": "always_ask"}),
            reason: None,
        },
        PermissionPolicy::Auto => {
            let rule = auto_rule(tool, input);
            let (permission, reason_code, reason) = match rule {
                Some(r) => (
                    r.permission,
                    r.reason_code,
                    format!("{}: {}", r.name, r.description),
                ),
                None => (
                    Permission::Ask,
                    Some("indeterminate"),
                    "no rule matched".to_string(),
                ),
            };
            let mut evaluated = json!({"type": permission.as_str()});
            if permission != Permission::Allow {
                evaluated["reason_code"] = json!(reason_code.unwrap_or("indeterminate"));
            }
            Decision {
                permission,
                evaluation: json!({"type": "auto", "evaluated_permission": evaluated}),
                reason: Some(reason),
            }
        }
    }
}

/// The rule that decides a call under `auto`: the first matching deny rule, else the
/// first matching allow rule, else the first matching ask rule.
pub fn auto_rule(tool: BuiltinTool, input: &Value) -> Option<&'static Rule> {
    let regexes = compiled();
    [Permission::Deny, Permission::Allow, Permission::Ask]
        .into_iter()
        .find_map(|permission| {
            AUTO_RULES.iter().enumerate().find_map(|(i, r)| {
                (r.permission == permission
                    && r.tools.contains(&tool)
                    && matches(r, regexes.get(i).and_then(Option::as_ref), tool, input))
                .then_some(r)
            })
        })
}

/// The compiled regular expression of each rule (`None` for other matchers, and for
/// a pattern that does not compile — which then matches everything, failing closed).
fn compiled() -> &'static Vec<Option<Regex>> {
    static COMPILED: OnceLock<Vec<Option<Regex>>> = OnceLock::new();
    COMPILED.get_or_init(|| {
        AUTO_RULES
            .iter()
            .map(|r| match r.matcher {
                Matcher::CommandRegex(re) => match Regex::new(re) {
                    Ok(re) => Some(re),
                    Err(e) => {
                        tracing::error!(rule = r.name, error = %e, "a permission rule does not compile");
                        None
                    }
                },
                _ => None,
            })
            .collect()
    })
}

fn matches(rule: &Rule, regex: Option<&Regex>, tool: BuiltinTool, input: &Value) -> bool {
    match rule.matcher {
        Matcher::Always => true,
        Matcher::PathOutsideWorkspace => path_outside(tool, input),
        Matcher::PathInsideWorkspace => !path_outside(tool, input),
        Matcher::CommandRegex(_) => match (regex, input.get("command").and_then(Value::as_str)) {
            (Some(re), Some(cmd)) => re.is_match(cmd),
            // A broken pattern matches every command (fail closed).
            (None, Some(_)) => true,
            (_, None) => false,
        },
        Matcher::SafeCommand => match input.get("command") {
            None | Some(Value::Null) => true,
            Some(Value::String(cmd)) => safe_command(cmd),
            Some(_) => false,
        },
    }
}

/// Whether any path input of a file tool lies outside the workspace.
fn path_outside(tool: BuiltinTool, input: &Value) -> bool {
    let field = |k: &str| input.get(k).and_then(Value::as_str);
    let outside = |p: Option<&str>| p.is_some_and(|p| workspace_relative(p).is_err());
    match tool {
        Read | Write | Edit => outside(field("file_path")),
        Grep => outside(field("path")),
        Glob => {
            outside(field("path"))
                || field("pattern").is_some_and(|p| {
                    p.starts_with('/')
                        && (workspace_relative(p).is_err() || p.split('/').any(|c| c == ".."))
                })
        }
        _ => false,
    }
}

// ---------------------------------------------------------------- bash judgement

/// Whether every simple command of `cmd` is a safe program used safely.
fn safe_command(cmd: &str) -> bool {
    let Some(commands) = shell::parse(cmd) else {
        return false;
    };
    // The directory relative paths are judged from; `None` once it is unknown.
    let mut cwd: Option<String> = Some(WORKSPACE.to_string());
    commands.iter().all(|c| safe_simple(c, &mut cwd))
}

fn safe_simple(c: &shell::Simple, cwd: &mut Option<String>) -> bool {
    let redirects_ok = c.redirects.iter().all(|r| match &r.target {
        Some(t) if r.writes() => writable(t, cwd.as_deref()),
        _ => true,
    });
    if !redirects_ok {
        return false;
    }
    let Some(first) = c.words.first() else {
        return true; // only redirections (`> file`)
    };
    if first.expands || is_assignment(first) {
        return false;
    }
    let name = program_name(&first.text);
    let Some(prog) = SAFE_PROGRAMS.iter().find(|p| Some(p.name) == name) else {
        return false;
    };
    let args = &c.words[1..];
    let forbidden = |forbidden: &[&str]| {
        args.iter().any(|a| {
            forbidden.iter().any(|f| {
                a.text == *f
                    || (f.starts_with("--") && a.text.starts_with(&format!("{f}=")))
                    // `-o` also inside a cluster of short options (`-ro`, `-ofile`).
                    || (f.len() == 2
                        && !f.starts_with("--")
                        && a.text.starts_with('-')
                        && !a.text.starts_with("--")
                        && a.text[1..].contains(&f[1..]))
            })
        })
    };
    if forbidden(prog.forbidden) {
        return false;
    }
    let operands = operands_of(args);
    match prog.operands {
        Operands::Any => true,
        Operands::AtMost(n) => operands.len() <= n,
        Operands::WritablePaths => operands.iter().all(|w| writable(w, cwd.as_deref())),
        Operands::CommandV => args.first().is_some_and(|a| a.text == "-v"),
        Operands::Git => {
            let mut rest = args;
            while rest.first().is_some_and(|a| a.text == "--no-pager") {
                rest = &rest[1..];
            }
            let Some(sub) = rest.first() else {
                return true; // `git` alone prints its help
            };
            if sub.expands || !SAFE_GIT.contains(&sub.text.as_str()) || forbidden(GIT_FORBIDDEN) {
                return false;
            }
            sub.text != "init"
                || operands_of(&rest[1..])
                    .iter()
                    .all(|w| writable(w, cwd.as_deref()))
        }
        Operands::Cd => {
            *cwd = match operands.as_slice() {
                [dir] if !dir.expands => resolve(&dir.text, cwd.as_deref()),
                _ => None,
            };
            true
        }
    }
}

/// `NAME=value` as a command prefix.
fn is_assignment(w: &shell::Word) -> bool {
    !w.quoted
        && w.text.split_once('=').is_some_and(|(n, _)| {
            !n.is_empty()
                && !n.starts_with(|c: char| c.is_ascii_digit())
                && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// The program a command word names, when it is a bare name or lives in a system
/// binary directory (`/usr/bin/ls` is `ls`; `./ls` is not).
fn program_name(word: &str) -> Option<&str> {
    if !word.contains('/') {
        return Some(word);
    }
    let (dir, name) = word.rsplit_once('/')?;
    matches!(
        dir,
        "/bin" | "/usr/bin" | "/usr/local/bin" | "/sbin" | "/usr/sbin"
    )
    .then_some(name)
}

/// The non-option arguments (everything after `--`).
fn operands_of(args: &[shell::Word]) -> Vec<&shell::Word> {
    let mut out = Vec::new();
    let mut options_done = false;
    for a in args {
        if !options_done && a.text == "--" {
            options_done = true;
        } else if options_done || !a.text.starts_with('-') || a.text == "-" {
            out.push(a);
        }
    }
    out
}

/// The absolute, lexically normalized form of `path` seen from `cwd`.
fn resolve(path: &str, cwd: Option<&str>) -> Option<String> {
    let joined = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{}/{path}", cwd?)
    };
    let mut parts: Vec<&str> = Vec::new();
    for c in joined.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            name => parts.push(name),
        }
    }
    Some(format!("/{}", parts.join("/")))
}

/// Whether a command may write `w`: inside `/workspace` or `/tmp`, or `/dev/null`,
/// `/dev/stdout`, `/dev/stderr`.
fn writable(w: &shell::Word, cwd: Option<&str>) -> bool {
    if w.expands || w.text.is_empty() {
        return false;
    }
    let Some(abs) = resolve(&w.text, cwd) else {
        return false;
    };
    let under = |root: &str| abs == root || abs.starts_with(&format!("{root}/"));
    under(WORKSPACE)
        || under("/tmp")
        || matches!(abs.as_str(), "/dev/null" | "/dev/stdout" | "/dev/stderr")
}

#[cfg(test)]
mod tests;
