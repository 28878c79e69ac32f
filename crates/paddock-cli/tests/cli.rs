//! The `paddock` binary end to end: `paddock serve` as a real process, the client
//! commands against it, exit codes, and a graceful SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Serve, BIN};
use serde_json::Value;
use std::process::Command;

#[test]
fn cli_drives_the_api_and_serve_shuts_down_gracefully() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Serve::start(dir.path());

    let agent = s.json(&[
        "agents",
        "create",
        "--name",
        "helper",
        "--model",
        "claude-sonnet-4-6",
    ]);
    let aid = agent["id"].as_str().expect("id").to_string();
    let updated = s.json(&[
        "agents",
        "update",
        &aid,
        "--version",
        "1",
        "--system",
        "be brief",
    ]);
    assert_eq!(updated["version"], 2);
    let stale = s.cli(&[
        "agents",
        "update",
        &aid,
        "--version",
        "1",
        "--system",
        "again",
    ]);
    assert_eq!(stale.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&stale.stderr).contains("409 conflict_error"));

    let env = s.json(&[
        "envs",
        "create",
        "--name",
        "sandbox",
        "--allow-host",
        "pypi.org",
    ]);
    assert_eq!(env["config"]["networking"]["allowed_hosts"][0], "pypi.org");
    let eid = env["id"].as_str().expect("id").to_string();

    let sess = s.json(&[
        "sessions",
        "create",
        "--agent",
        &aid,
        "--env",
        &eid,
        "--title",
        "t",
        "--message",
        "hello",
    ]);
    let sid = sess["id"].as_str().expect("id").to_string();
    assert_eq!(sess["agent"]["version"], 2);
    let sent = s.json(&["sessions", "send", &sid, "second message"]);
    assert_eq!(sent["data"][0]["type"], "user.message");

    // Human output: a table with the session, and readable event lines.
    let table = s.cli(&["sessions", "list"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.starts_with("ID"), "{text}");
    // (No model provider is configured: the agent's turns end in a session.error.)
    assert!(
        text.contains(&sid) && (text.contains("idle") || text.contains("running")),
        "{text}"
    );
    let events = s.cli(&["sessions", "events", &sid]);
    let text = String::from_utf8_lossy(&events.stdout);
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("user.")).collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].contains("user.message") && lines[0].contains("hello"),
        "{text}"
    );
    assert!(lines[1].contains("second message"), "{text}");

    // Clear errors and exit codes.
    let missing = s.cli(&["agents", "get", "agent_nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).starts_with("error: 404 not_found_error"));
    let nowhere = Command::new(BIN)
        .args(["--url", "http://127.0.0.1:9", "agents", "list"])
        .output()
        .expect("runs");
    assert_eq!(nowhere.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&nowhere.stderr).contains("cannot reach Paddock"));

    // SIGTERM: a clean exit with structured logs, and the data is still there after.
    let (status, log) = s.terminate();
    assert!(status.success(), "exit {status:?}: {log}");
    let first = log.lines().next().expect("a log line");
    let parsed: Value = serde_json::from_str(first).expect("JSON logs when not on a terminal");
    assert!(parsed["level"].is_string(), "{first}");
    assert!(log.contains("shutting down"), "{log}");
    // Lines about a session carry its id.
    assert!(
        log.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|v| v["span"]["session_id"] == sid.as_str() && v["span"]["request_id"].is_string()),
        "no log line carries session_id {sid}"
    );

    let s2 = Serve::start(dir.path());
    let again = s2.json(&["sessions", "get", &sid]);
    assert_eq!(again["title"], "t");
    let all = s2.json(&["agents", "versions", &aid]);
    assert_eq!(all.as_array().expect("array").len(), 2);
}
