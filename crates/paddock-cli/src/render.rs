//! A session's events as a readable transcript: what the user said, what the agent
//! answered, which tools it called and what they returned.

use serde_json::Value;

/// Tool results show at most this many lines, then "… N more lines".
pub const MAX_RESULT_LINES: usize = 10;
/// Longer lines (and tool inputs) are cut to this many characters.
pub const MAX_LINE_CHARS: usize = 200;

/// How events are rendered.
#[derive(Debug, Clone, Copy, Default)]
pub struct Style {
    /// Also show progress events (`session.status_running`, `span.*`, usage, runner
    /// changes, unknown types), one dim line each.
    pub verbose: bool,
    /// Dim those lines with ANSI escapes (only when printing to a terminal).
    pub color: bool,
}

impl Style {
    /// `verbose` as asked; color only when stdout is a terminal and `NO_COLOR` is unset.
    pub fn for_stdout(verbose: bool) -> Style {
        use std::io::IsTerminal;
        Style {
            verbose,
            color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }
}

/// The readable form of one event with the default style: `None` for progress events
/// (`session.status_running`, `span.*`, usage, runner changes) and unknown types.
pub fn render_event(e: &Value) -> Option<String> {
    let shown = match e["type"].as_str().unwrap_or("") {
        "user.message" => format!("you: {}", content_text(&e["content"])),
        "user.interrupt" => "you: (interrupt)".to_string(),
        "user.tool_confirmation" => confirmation(e),
        "user.custom_tool_result" | "user.tool_result" => format!(
            "you: result for {}\n{}",
            e["custom_tool_use_id"]
                .as_str()
                .or_else(|| e["tool_use_id"].as_str())
                .unwrap_or("?"),
            tool_result_block(e)
        ),
        "agent.message" => content_text(&e["content"]),
        "agent.tool_use" | "agent.mcp_tool_use" => tool_use_line(e),
        "agent.tool_result" | "agent.mcp_tool_result" => tool_result_block(e),
        "agent.custom_tool_use" => format!(
            "⏺ custom tool {}({}) awaits your result",
            e["name"].as_str().unwrap_or("?"),
            compact_json(&e["input"])
        ),
        "session.status_idle" => idle_line(e),
        "session.error" => error_line(&e["error"]),
        "session.status_rescheduled" => {
            "· session rescheduled after a transient error; retrying".to_string()
        }
        "session.status_terminated" => "· session terminated".to_string(),
        "session.deleted" => "· session deleted".to_string(),
        _ => return None,
    };
    Some(shown)
}

/// The readable form of one event; with `style.verbose`, progress events and unknown
/// types become one (dim) line each. `None` when the event is not shown.
pub fn render(e: &Value, style: Style) -> Option<String> {
    if let Some(shown) = render_event(e) {
        return Some(shown);
    }
    let kind = e["type"].as_str().unwrap_or("");
    // The preview events of `event_deltas` (never asked for): the final event follows.
    if !style.verbose || kind == "event_start" || kind == "event_delta" {
        return None;
    }
    let line = progress_line(kind, e);
    Some(if style.color {
        format!("\x1b[2m{line}\x1b[0m")
    } else {
        line
    })
}

/// The one-line form of progress events (shown with `--verbose`).
fn progress_line(kind: &str, e: &Value) -> String {
    match kind {
        "session.status_running" => "· running".to_string(),
        "agent.thinking" => "· thinking".to_string(),
        "span.model_request_start" => "· model request".to_string(),
        "span.model_request_end" => {
            let u = &e["model_usage"];
            let mut s = format!(
                "· model request done: {} in / {} out tokens",
                number(&u["input_tokens"]),
                number(&u["output_tokens"])
            );
            if u["cache_read_input_tokens"].as_u64().unwrap_or(0) > 0 {
                s.push_str(&format!(
                    ", {} read from cache",
                    number(&u["cache_read_input_tokens"])
                ));
            }
            if e["is_error"].as_bool() == Some(true) {
                s.push_str(" (failed)");
            }
            s
        }
        "session.usage" => {
            let u = &e["usage"];
            let mut s = format!(
                "· usage: {} in / {} out tokens",
                number(&u["input_tokens"]),
                number(&u["output_tokens"])
            );
            if let Some(amount) = u["list_cost"]["amount"].as_str() {
                s.push_str(&format!(
                    ", {amount} {}",
                    u["list_cost"]["currency"].as_str().unwrap_or("")
                ));
            }
            s.trim_end().to_string()
        }
        "runner.state_changed" => {
            let mut s = format!(
                "· runner {}: {} → {}",
                e["runner_id"].as_str().unwrap_or("?"),
                e["from"].as_str().unwrap_or("-"),
                e["to"].as_str().unwrap_or("?")
            );
            if let Some(r) = e["reason"].as_str().filter(|r| !r.is_empty()) {
                s.push_str(&format!(" ({})", truncate(r, MAX_LINE_CHARS)));
            }
            s
        }
        "span.outcome_evaluation_end" => format!(
            "· outcome evaluation: {}",
            e["result"].as_str().unwrap_or("?")
        ),
        other => format!("· {}", if other.is_empty() { "?" } else { other }),
    }
}

/// Text blocks joined by newlines; other blocks as `[image]`, `[document]`, ….
fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .map(|b| match b["type"].as_str() {
                Some("text") | None => b["text"].as_str().unwrap_or("").to_string(),
                Some("search_result") => format!(
                    "[search result: {}]",
                    b["title"].as_str().unwrap_or("untitled")
                ),
                Some(other) => format!("[{other}]"),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn confirmation(e: &Value) -> String {
    let tool_use = e["tool_use_id"].as_str().unwrap_or("?");
    match e["result"].as_str() {
        Some("deny") => match e["deny_message"].as_str().filter(|m| !m.is_empty()) {
            Some(m) => format!("you: deny {tool_use}: {m}"),
            None => format!("you: deny {tool_use}"),
        },
        Some(r) => format!("you: {r} {tool_use}"),
        None => format!("you: answer {tool_use}"),
    }
}

/// `⏺ bash(ls -la)`: the tool name, its main input, and `[ask]`/`[denied]`.
fn tool_use_line(e: &Value) -> String {
    let name = e["name"].as_str().unwrap_or("?");
    let shown_name = match e["mcp_server_name"].as_str() {
        Some(server) => format!("{server}/{name}"),
        None => name.to_string(),
    };
    let mut s = format!("⏺ {shown_name}({})", tool_input_summary(name, &e["input"]));
    match e["evaluated_permission"].as_str() {
        Some("ask") => s.push_str(" [ask]"),
        Some("deny") => s.push_str(" [denied]"),
        _ => {}
    }
    s
}

/// The input that says what a call does: bash's command, the file of read/write/edit,
/// glob/grep's pattern (and path); otherwise compact JSON. At most `MAX_LINE_CHARS`.
pub fn tool_input_summary(name: &str, input: &Value) -> String {
    let field = |k: &str| input[k].as_str().filter(|s| !s.is_empty());
    let summary = match name {
        "bash" => field("command").map(first_line),
        "read" | "write" | "edit" => field("file_path")
            .or_else(|| field("path"))
            .map(str::to_string),
        "glob" | "grep" => field("pattern").map(|p| match field("path") {
            Some(path) => format!("{p} in {path}"),
            None => p.to_string(),
        }),
        "web_fetch" => field("url").map(str::to_string),
        "web_search" => field("query").map(str::to_string),
        _ => None,
    };
    truncate(
        &summary.unwrap_or_else(|| compact_json(input)),
        MAX_LINE_CHARS,
    )
}

/// The first line, with ` …` when more follow.
fn first_line(s: &str) -> String {
    let mut lines = s.trim().lines();
    let first = lines.next().unwrap_or("").to_string();
    if lines.next().is_some() {
        format!("{first} …")
    } else {
        first
    }
}

fn compact_json(v: &Value) -> String {
    let s = match v {
        Value::Null => String::new(),
        Value::Object(m) if m.is_empty() => String::new(),
        other => other.to_string(),
    };
    truncate(&s, MAX_LINE_CHARS)
}

/// At most `max` characters, the last being `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A tool's output, indented under its call: at most `MAX_RESULT_LINES` lines, then
/// "… N more lines"; `error:` first when `is_error`.
fn tool_result_block(e: &Value) -> String {
    let text = content_text(&e["content"]);
    let lines: Vec<&str> = text.trim_end().lines().collect();
    let mut out: Vec<String> = vec![];
    let shown = lines.len().min(MAX_RESULT_LINES);
    for (i, line) in lines[..shown].iter().enumerate() {
        let line = truncate(line, MAX_LINE_CHARS);
        out.push(if i == 0 {
            format!("  ⎿ {line}")
        } else {
            format!("    {line}")
        });
    }
    if out.is_empty() {
        out.push("  ⎿ (no output)".to_string());
    }
    if lines.len() > shown {
        let more = lines.len() - shown;
        out.push(format!(
            "    … {more} more line{}",
            if more == 1 { "" } else { "s" }
        ));
    }
    if e["is_error"].as_bool() == Some(true) {
        if let Some(first) = out.first_mut() {
            *first = first.replacen("⎿ ", "⎿ error: ", 1);
        }
    }
    out.join("\n")
}

fn idle_line(e: &Value) -> String {
    let reason = &e["stop_reason"];
    let kind = reason["type"].as_str().unwrap_or("unknown");
    match kind {
        "requires_action" => {
            let n = reason["event_ids"].as_array().map(Vec::len).unwrap_or(0);
            format!(
                "· idle (requires_action: {n} tool use{} await{} an answer)",
                if n == 1 { "" } else { "s" },
                if n == 1 { "s" } else { "" }
            )
        }
        "refusal" => {
            let d = &e["stop_details"];
            let mut s = "· idle (refusal".to_string();
            if let Some(c) = d["category"].as_str() {
                s.push_str(&format!(": {c}"));
            }
            if let Some(x) = d["explanation"].as_str().filter(|x| !x.is_empty()) {
                s.push_str(&format!(" — {}", truncate(x, MAX_LINE_CHARS)));
            }
            s.push(')');
            s
        }
        other => format!("· idle ({other})"),
    }
}

fn error_line(err: &Value) -> String {
    let mut s = format!(
        "error: {}: {}",
        err["type"].as_str().unwrap_or("unknown_error"),
        err["message"].as_str().unwrap_or("no message")
    );
    if let Some(r) = err["retry_status"]["type"]
        .as_str()
        .or_else(|| err["retry_status"].as_str())
    {
        s.push_str(&format!(" ({r})"));
    }
    s
}

fn number(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        _ => "?".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn verbose() -> Style {
        Style {
            verbose: true,
            color: false,
        }
    }

    #[test]
    fn messages() {
        let user = json!({"type": "user.message", "content": [{"type": "text", "text": "list the files"}]});
        assert_eq!(render_event(&user).as_deref(), Some("you: list the files"));
        let agent = json!({"type": "agent.message", "content": [
            {"type": "text", "text": "Here they are."},
            {"type": "text", "text": "Two files."}
        ]});
        assert_eq!(
            render_event(&agent).as_deref(),
            Some("Here they are.\nTwo files.")
        );
        let img = json!({"type": "user.message", "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image", "source": {"type": "url", "url": "https://x"}}
        ]});
        assert_eq!(
            render_event(&img).as_deref(),
            Some("you: what is this?\n[image]")
        );
    }

    #[test]
    fn tool_uses_show_the_main_input() {
        let cases = [
            (
                json!({"name": "bash", "input": {"command": "ls -la"}}),
                "⏺ bash(ls -la)",
            ),
            (
                json!({"name": "bash", "input": {"command": "cd x\nmake"}}),
                "⏺ bash(cd x …)",
            ),
            (
                json!({"name": "read", "input": {"file_path": "/w/src/main.rs"}}),
                "⏺ read(/w/src/main.rs)",
            ),
            (
                json!({"name": "write", "input": {"file_path": "a.txt", "content": "hi"}}),
                "⏺ write(a.txt)",
            ),
            (
                json!({"name": "edit", "input": {"file_path": "b.rs", "old_string": "x", "new_string": "y"}}),
                "⏺ edit(b.rs)",
            ),
            (
                json!({"name": "glob", "input": {"pattern": "**/*.rs"}}),
                "⏺ glob(**/*.rs)",
            ),
            (
                json!({"name": "grep", "input": {"pattern": "TODO", "path": "src"}}),
                "⏺ grep(TODO in src)",
            ),
            (
                json!({"name": "web_fetch", "input": {"url": "https://example.com"}}),
                "⏺ web_fetch(https://example.com)",
            ),
            (
                json!({"name": "lookup", "input": {"id": 7}}),
                r#"⏺ lookup({"id":7})"#,
            ),
        ];
        for (mut e, want) in cases {
            e["type"] = json!("agent.tool_use");
            assert_eq!(render_event(&e).as_deref(), Some(want), "{e}");
        }
    }

    #[test]
    fn tool_use_permissions_and_long_inputs() {
        let ask = json!({"type": "agent.tool_use", "name": "bash", "input": {"command": "rm -rf build"}, "evaluated_permission": "ask"});
        assert_eq!(
            render_event(&ask).as_deref(),
            Some("⏺ bash(rm -rf build) [ask]")
        );
        let deny = json!({"type": "agent.tool_use", "name": "bash", "input": {"command": "curl x"}, "evaluated_permission": "deny"});
        assert_eq!(
            render_event(&deny).as_deref(),
            Some("⏺ bash(curl x) [denied]")
        );
        let allow = json!({"type": "agent.tool_use", "name": "bash", "input": {"command": "ls"}, "evaluated_permission": "allow"});
        assert_eq!(render_event(&allow).as_deref(), Some("⏺ bash(ls)"));

        let long =
            json!({"type": "agent.tool_use", "name": "other", "input": {"blob": "x".repeat(1000)}});
        let line = render_event(&long).unwrap_or_default();
        let inner = line
            .strip_prefix("⏺ other(")
            .and_then(|s| s.strip_suffix(')'))
            .unwrap_or_default();
        assert_eq!(inner.chars().count(), MAX_LINE_CHARS, "{line}");
        assert!(inner.ends_with('…'), "{line}");

        let mcp = json!({"type": "agent.mcp_tool_use", "mcp_server_name": "gh", "name": "list_issues", "input": {"repo": "a/b"}});
        assert_eq!(
            render_event(&mcp).as_deref(),
            Some(r#"⏺ gh/list_issues({"repo":"a/b"})"#)
        );
    }

    #[test]
    fn tool_results_are_indented_and_truncated() {
        let short = json!({"type": "agent.tool_result", "tool_use_id": "evt_1", "content": [{"type": "text", "text": "a.txt\nb.txt\n"}]});
        assert_eq!(
            render_event(&short).as_deref(),
            Some("  ⎿ a.txt\n    b.txt")
        );

        let text: Vec<String> = (1..=25).map(|i| format!("line {i}")).collect();
        let long = json!({"type": "agent.tool_result", "tool_use_id": "evt_1", "content": [{"type": "text", "text": text.join("\n")}]});
        let out = render_event(&long).unwrap_or_default();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), MAX_RESULT_LINES + 1, "{out}");
        assert_eq!(lines[0], "  ⎿ line 1");
        assert_eq!(lines[9], "    line 10");
        assert_eq!(lines[10], "    … 15 more lines");

        let eleven: Vec<String> = (1..=11).map(|i| i.to_string()).collect();
        let one_more = json!({"type": "agent.tool_result", "content": [{"type": "text", "text": eleven.join("\n")}]});
        let out = render_event(&one_more).unwrap_or_default();
        assert!(out.ends_with("    … 1 more line"), "{out}");

        let wide = json!({"type": "agent.tool_result", "content": [{"type": "text", "text": "y".repeat(5000)}]});
        let out = render_event(&wide).unwrap_or_default();
        assert_eq!(out.chars().count(), "  ⎿ ".chars().count() + MAX_LINE_CHARS);

        let err = json!({"type": "agent.tool_result", "is_error": true, "content": [{"type": "text", "text": "No such file\nsecond"}]});
        assert_eq!(
            render_event(&err).as_deref(),
            Some("  ⎿ error: No such file\n    second")
        );
        let empty = json!({"type": "agent.tool_result", "content": []});
        assert_eq!(render_event(&empty).as_deref(), Some("  ⎿ (no output)"));
    }

    #[test]
    fn custom_tools_and_user_answers() {
        let custom = json!({"type": "agent.custom_tool_use", "name": "get_weather", "input": {"city": "Paris"}});
        assert_eq!(
            render_event(&custom).as_deref(),
            Some(r#"⏺ custom tool get_weather({"city":"Paris"}) awaits your result"#)
        );
        let deny = json!({"type": "user.tool_confirmation", "tool_use_id": "evt_9", "result": "deny", "deny_message": "not that"});
        assert_eq!(
            render_event(&deny).as_deref(),
            Some("you: deny evt_9: not that")
        );
        let allow =
            json!({"type": "user.tool_confirmation", "tool_use_id": "evt_9", "result": "allow"});
        assert_eq!(render_event(&allow).as_deref(), Some("you: allow evt_9"));
        let result = json!({"type": "user.custom_tool_result", "custom_tool_use_id": "evt_8", "content": [{"type": "text", "text": "sunny"}]});
        assert_eq!(
            render_event(&result).as_deref(),
            Some("you: result for evt_8\n  ⎿ sunny")
        );
        let interrupt = json!({"type": "user.interrupt"});
        assert_eq!(
            render_event(&interrupt).as_deref(),
            Some("you: (interrupt)")
        );
    }

    #[test]
    fn idle_and_errors() {
        let idle = |r: Value| json!({"type": "session.status_idle", "stop_reason": r});
        assert_eq!(
            render_event(&idle(json!({"type": "end_turn"}))).as_deref(),
            Some("· idle (end_turn)")
        );
        assert_eq!(
            render_event(&idle(
                json!({"type": "requires_action", "event_ids": ["a", "b"]})
            ))
            .as_deref(),
            Some("· idle (requires_action: 2 tool uses await an answer)")
        );
        assert_eq!(
            render_event(&idle(json!({"type": "budget_reached"}))).as_deref(),
            Some("· idle (budget_reached)")
        );
        let refusal = json!({"type": "session.status_idle", "stop_reason": {"type": "refusal"},
            "stop_details": {"type": "refusal", "category": "cyber", "explanation": "no"}});
        assert_eq!(
            render_event(&refusal).as_deref(),
            Some("· idle (refusal: cyber — no)")
        );
        let err = json!({"type": "session.error", "error": {"type": "model_overloaded_error",
            "message": "overloaded", "retry_status": {"type": "retrying"}}});
        assert_eq!(
            render_event(&err).as_deref(),
            Some("error: model_overloaded_error: overloaded (retrying)")
        );
    }

    #[test]
    fn progress_events_only_when_verbose() {
        let events = [
            json!({"type": "session.status_running"}),
            json!({"type": "span.model_request_start"}),
            json!({"type": "span.model_request_end", "model_usage": {"input_tokens": 1200, "output_tokens": 85, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}}),
            json!({"type": "session.usage", "usage": {"input_tokens": 10, "output_tokens": 2, "list_cost": {"amount": "0.0100", "currency": "USD"}}}),
            json!({"type": "runner.state_changed", "runner_id": "run_1", "from": "provisioning", "to": "running", "reason": null}),
            json!({"type": "agent.thinking"}),
            json!({"type": "something.new", "x": 1}),
        ];
        for e in &events {
            assert_eq!(render_event(e), None, "{e}");
            assert!(render(e, verbose()).is_some(), "{e}");
        }
        assert_eq!(
            render(&events[2], verbose()).as_deref(),
            Some("· model request done: 1200 in / 85 out tokens")
        );
        assert_eq!(
            render(&events[3], verbose()).as_deref(),
            Some("· usage: 10 in / 2 out tokens, 0.0100 USD")
        );
        assert_eq!(
            render(&events[4], verbose()).as_deref(),
            Some("· runner run_1: provisioning → running")
        );
        assert_eq!(
            render(&events[6], verbose()).as_deref(),
            Some("· something.new")
        );
        let dim = render(
            &events[0],
            Style {
                verbose: true,
                color: true,
            },
        );
        assert_eq!(dim.as_deref(), Some("\x1b[2m· running\x1b[0m"));
        // Stream previews are never shown, even verbose.
        assert_eq!(render(&json!({"type": "event_delta"}), verbose()), None);
    }
}
