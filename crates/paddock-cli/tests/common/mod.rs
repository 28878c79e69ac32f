//! A real `paddock serve` process for tests, and the CLI pointed at it.
#![allow(dead_code)]

use serde_json::Value;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_paddock");

pub struct Serve {
    pub child: Child,
    pub url: String,
    /// The server's stderr (a file, so a chatty server never blocks on a full pipe).
    pub log: std::path::PathBuf,
    /// The API token the CLI sends (`PADDOCK_TOKEN`), for servers that require one.
    pub token: Option<String>,
}

impl Serve {
    pub fn start(data_dir: &std::path::Path) -> Serve {
        Self::start_with(data_dir, None)
    }

    /// Starts `paddock serve` on a free port, with an optional `paddock.toml`.
    pub fn start_with(data_dir: &std::path::Path, config: Option<&std::path::Path>) -> Serve {
        Self::start_env(data_dir, config, &[])
    }

    /// The same, with extra environment variables for the server.
    pub fn start_env(
        data_dir: &std::path::Path,
        config: Option<&std::path::Path>,
        env: &[(&str, &str)],
    ) -> Serve {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let log =
            std::env::temp_dir().join(format!("paddock-serve-{port}-{}.log", std::process::id()));
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(data_dir)
            .env("PADDOCK_LOG_FORMAT", "json")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file));
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("paddock serve starts");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut child = child;
        while !paddock_testkit::answers_http(port) {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "paddock serve exited ({status}) before listening:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "paddock serve did not listen within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Serve {
            child,
            url,
            log,
            token: None,
        }
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(BIN);
        if let Some(t) = &self.token {
            cmd.env("PADDOCK_TOKEN", t);
        }
        cmd.args(args)
            .env("PADDOCK_URL", &self.url)
            .output()
            .expect("paddock runs")
    }

    pub fn json(&self, args: &[&str]) -> Value {
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

    /// SIGKILL (a crash), then wait.
    pub fn crash(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("wait");
    }

    /// SIGTERM, then wait: returns the exit status and the server's log.
    pub fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                return (status, log);
            }
            assert!(Instant::now() < deadline, "paddock serve ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Serve {
    /// Runners outlive `paddock serve` by design (the next start adopts them), so a
    /// server that is still up destroys its runners before it goes; one that crashed
    /// (`crash`) leaves them for the test's next server, as in production.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let out = self.cli(&["--json", "runners", "list", "--all", "--limit", "100"]);
            let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            let rows = list.get("data").unwrap_or(&list);
            for r in rows.as_array().into_iter().flatten() {
                if let (Some(id), Some(state)) = (r["id"].as_str(), r["state"].as_str()) {
                    if state != "destroyed" {
                        let _ = self.cli(&["runners", "destroy", "--wait", id]);
                    }
                }
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn bwrap() -> bool {
    let has = Command::new("sh")
        .args(["-c", "command -v bwrap"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    paddock_testkit::require_or_skip(
        "bwrap",
        has,
        "bubblewrap is not installed (scripts/test installs it)",
    )
}

/// A Docker engine with the `paddock-base` image, else a printed skip (an error when
/// `PADDOCK_REQUIRE_DOCKER=1`).
pub fn docker_base() -> bool {
    let ok = Command::new("docker")
        .args(["image", "inspect", "paddock-base:latest"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    paddock_testkit::require_or_skip(
        "docker",
        ok,
        "no Docker engine with the paddock-base image (scripts/test starts dockerd and runs scripts/images.sh)",
    )
}

pub fn data_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    d
}

pub fn http(method: &str, url: &str, body: Option<Value>) -> (u16, Value) {
    // curl keeps this test free of an async runtime.
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-o", "-", "-w", "\n%{http_code}", "-X", method, url]);
    if let Some(b) = body {
        cmd.args(["-H", "content-type: application/json", "-d", &b.to_string()]);
    }
    let out = cmd.output().expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').expect("status line");
    let v = serde_json::from_str(body).unwrap_or(Value::String(body.to_string()));
    (code.trim().parse().expect("status"), v)
}

pub fn text(o: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}
