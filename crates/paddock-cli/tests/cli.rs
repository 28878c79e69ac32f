//! The `paddock` binary end to end: `paddock serve` as a real process, the client
//! commands against it, exit codes, and a graceful SIGTERM.

use serde_json::Value;
use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_paddock");

struct Serve {
    child: Child,
    url: String,
}

impl Serve {
    fn start(data_dir: &std::path::Path) -> Serve {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(BIN)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(data_dir)
            .env("PADDOCK_LOG_FORMAT", "json")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("paddock serve starts");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "paddock serve did not listen within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Serve { child, url }
    }

    fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("PADDOCK_URL", &self.url)
            .output()
            .expect("paddock runs")
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.cli(&all);
        assert!(
            out.status.success(),
            "paddock {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("--json prints JSON")
    }

    /// SIGTERM, then wait: returns the exit status and the server's log.
    fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                let mut log = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut log);
                }
                return (status, log);
            }
            assert!(Instant::now() < deadline, "paddock serve ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
    assert!(text.contains(&sid) && text.contains("idle"), "{text}");
    let events = s.cli(&["sessions", "events", &sid]);
    let text = String::from_utf8_lossy(&events.stdout);
    let lines: Vec<&str> = text.lines().collect();
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

    let s2 = Serve::start(dir.path());
    let again = s2.json(&["sessions", "get", &sid]);
    assert_eq!(again["title"], "t");
    let all = s2.json(&["agents", "versions", &aid]);
    assert_eq!(all.as_array().expect("array").len(), 2);
}
