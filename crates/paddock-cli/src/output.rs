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
pub const SNAPSHOT: Columns = &[
    ("ID", "/id"),
    ("RUNNER", "/runner_id"),
    ("LABEL", "/label"),
    ("SIZE", "/size_bytes"),
    ("CREATED", "/created_at"),
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

fn human_bytes(v: &Value) -> String {
    match v.as_f64() {
        None => "-".into(),
        Some(b) if b >= 1073741824.0 => format!("{:.1} GiB", b / 1073741824.0),
        Some(b) if b >= 1048576.0 => format!("{:.1} MiB", b / 1048576.0),
        Some(b) if b >= 1024.0 => format!("{:.1} KiB", b / 1024.0),
        Some(b) => format!("{b} B"),
    }
}

/// `paddock status`: one runner, readably.
pub fn print_status(r: &Value) {
    let s = &r["latest_sample"];
    let rows: Vec<(&str, String)> = vec![
        ("runner", cell(r, "/id")),
        ("state", cell(r, "/state")),
        ("reason", cell(r, "/reason")),
        (
            "backend",
            format!("{} ({})", cell(r, "/backend"), cell(r, "/isolation")),
        ),
        ("profile", cell(r, "/execution_profile")),
        ("network", cell(r, "/network/type")),
        ("session", cell(r, "/session_id")),
        (
            "uptime",
            r["uptime_seconds"]
                .as_f64()
                .map(|u| format!("{u:.0} s"))
                .unwrap_or("-".into()),
        ),
        ("last activity", cell(r, "/last_activity_at")),
        (
            "idle timeout",
            r["idle_timeout_effective_secs"]
                .as_u64()
                .map(|t| {
                    if t == 0 {
                        "never".into()
                    } else {
                        format!("{t} s")
                    }
                })
                .unwrap_or("-".into()),
        ),
        (
            "cpu",
            s["cpu_percent"]
                .as_f64()
                .map(|c| format!("{c:.1} %"))
                .unwrap_or("-".into()),
        ),
        (
            "memory",
            format!(
                "{} / {}",
                human_bytes(&s["memory_bytes"]),
                human_bytes(&s["memory_limit_bytes"])
            ),
        ),
        ("disk", human_bytes(&s["disk_bytes"])),
        ("processes", cell(s, "/processes")),
        (
            "cost",
            format!(
                "{} {}",
                cell(r, "/cost/list_cost/amount"),
                cell(r, "/cost/list_cost/currency")
            ),
        ),
        ("budget", cell(r, "/cost/budget/amount")),
        (
            "limits",
            format!(
                "cpu {} · memory {} MiB · pids {}",
                cell(r, "/limits/cpu"),
                cell(r, "/limits/memory_mb"),
                cell(r, "/limits/pids")
            ),
        ),
        (
            "enforced",
            format!(
                "cpu {} · memory {} · pids {} · disk {}",
                cell(r, "/enforced/cpu"),
                cell(r, "/enforced/memory"),
                cell(r, "/enforced/pids"),
                cell(r, "/enforced/disk")
            ),
        ),
        ("error", cell(r, "/error")),
    ];
    for (k, v) in rows {
        println!("{k:<14} {v}");
    }
}

/// `paddock dashboard`: the fleet view.
pub fn print_fleet(f: &Value, runners: &[Value]) {
    println!(
        "runners {}  active {}  capacity left {}  cost {} USD  ({})",
        cell(f, "/total"),
        cell(f, "/active"),
        cell(f, "/capacity/capacity_left"),
        cell(f, "/cost/list_cost/amount"),
        cell(f, "/generated_at"),
    );
    let states: Vec<String> = f["by_state"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    println!(
        "by state: {}",
        if states.is_empty() {
            "-".into()
        } else {
            states.join(" · ")
        }
    );
    let errored = f["health"]["errored"].as_array().map(Vec::len).unwrap_or(0);
    let hot = f["health"]["above_memory_threshold"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    println!("health: {errored} errored · {hot} above the memory threshold");
    println!();
    print_table(runners, RUNNER);
}
