//! Human output: tables of chosen columns, records as key/value lines, events as lines.

use serde_json::Value;

/// The columns shown for a kind of record: (header, JSON pointer).
pub type Columns = &'static [(&'static str, &'static str)];

pub const AGENT: Columns = &[
    ("ID", "/id"),
    ("NAME", "/name"),
    ("VERSION", "/version"),
    ("MODEL", "/model/id"),
    ("ARCHIVED", "/archived_at"),
];
pub const ENVIRONMENT: Columns = &[
    ("ID", "/id"),
    ("NAME", "/name"),
    ("NETWORK", "/config/networking/type"),
    ("ARCHIVED", "/archived_at"),
];
pub const SESSION: Columns = &[
    ("ID", "/id"),
    ("STATUS", "/status"),
    ("AGENT", "/agent/id"),
    ("V", "/agent/version"),
    ("TITLE", "/title"),
    ("CREATED", "/created_at"),
];
pub const RUNNER: Columns = &[
    ("ID", "/id"),
    ("STATE", "/state"),
    ("BACKEND", "/backend"),
    ("ISOLATION", "/isolation"),
    ("PROFILE", "/execution_profile"),
    ("NETWORK", "/network/type"),
    ("SESSION", "/session_id"),
    ("ERROR", "/error"),
];
pub const DELETED: Columns = &[("ID", "/id"), ("TYPE", "/type")];

/// Says loudly on stderr when a runner is not isolated from its host.
pub fn warn_unisolated(r: &Value) {
    if r["isolation"] == "unisolated" {
        eprintln!(
            "WARNING: runner {} is UNISOLATED: it runs as a plain process on the Paddock host",
            r["id"].as_str().unwrap_or("?")
        );
    }
}

fn cell(v: &Value, pointer: &str) -> String {
    match v.pointer(pointer) {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

pub fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

pub fn print_record(v: &Value, cols: Columns) {
    let w = cols.iter().map(|(h, _)| h.len()).max().unwrap_or(0);
    for (h, p) in cols {
        println!("{h:<w$}  {}", cell(v, p));
    }
}

pub fn print_table(rows: &[Value], cols: Columns) {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| cols.iter().map(|(_, p)| cell(r, p)).collect())
        .collect();
    let widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(i, (h, _))| {
            cells
                .iter()
                .map(|r| r[i].len())
                .chain([h.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |vals: Vec<&str>| {
        let parts: Vec<String> = vals
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(cols.iter().map(|(h, _)| *h).collect());
    for r in &cells {
        line(r.iter().map(String::as_str).collect());
    }
}

fn text_of(content: &Value) -> String {
    content
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["text"].as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// One readable line per event: time, type and the gist.
pub fn event_line(e: &Value) -> String {
    let t = e["processed_at"].as_str().unwrap_or("");
    let kind = e["type"].as_str().unwrap_or("?");
    let gist = match kind {
        "user.message" | "agent.message" => text_of(&e["content"]),
        "agent.tool_use" | "agent.custom_tool_use" => {
            format!("{} {}", e["name"].as_str().unwrap_or("?"), e["input"])
        }
        "agent.tool_result" => text_of(&e["content"]),
        "user.tool_confirmation" => format!(
            "{} {}",
            e["result"].as_str().unwrap_or("?"),
            e["tool_use_id"].as_str().unwrap_or("")
        ),
        "session.status_idle" => e["stop_reason"]["type"].as_str().unwrap_or("").to_string(),
        "session.error" => e["error"]["message"].as_str().unwrap_or("").to_string(),
        _ => String::new(),
    };
    format!("{t}  {kind:<24} {gist}").trim_end().to_string()
}
