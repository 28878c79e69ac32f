//! What the benches share: how a distribution is printed, and a real `paddock serve`
//! on the scripted model server.
#![allow(dead_code)]

use paddock_testkit::model_server::ModelServer;
use serde_json::Value;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Prints n / min / median / p90 of `xs` in milliseconds; returns the median.
pub fn stats(name: &str, mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let pct = |p: f64| xs[((xs.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "{name:<56} n={:<4} min {:>8.2} ms   median {:>8.2} ms   p90 {:>8.2} ms",
        xs.len(),
        ms(xs[0]),
        ms(pct(0.5)),
        ms(pct(0.9))
    );
    pct(0.5)
}

pub const KEY_ENV: &str = "PADDOCK_BENCH_MODEL_KEY";
pub const KEY: &str = "sk-bench-scripted-0123";

/// A `paddock.toml`: `head` (top-level keys and tables of the bench's own), no rate
/// limit, and the scripted model server as the default provider `scripted`.
pub fn config(models: &ModelServer, head: &str) -> String {
    format!(
        r#"{head}
[rate_limit]
per_second = 0.0

[agent]
default_provider = "scripted"

[[agent.providers]]
name = "scripted"
kind = "anthropic"
base_url = "{base}"
api_key_env = "{KEY_ENV}"
max_retries = 0
"#,
        base = models.anthropic_base_url()
    )
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A `paddock serve` process, killed when dropped.
pub struct Serve {
    pub child: Child,
    pub url: String,
    pub log: PathBuf,
    /// When it was spawned, and how long it took to listen.
    pub spawned: Instant,
    pub listening: Duration,
}

impl Serve {
    /// Starts `paddock serve` on `port` over `data` with `config` (its log beside the
    /// config file) and waits until it listens.
    pub fn start(data: &Path, config: &Path, port: u16) -> Serve {
        std::fs::create_dir_all(data).expect("data dir");
        let log = config.with_file_name("serve.log");
        let spawned = Instant::now();
        let child = Command::new(env!("CARGO_BIN_EXE_paddock"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(data)
            .arg("--config")
            .arg(config)
            .env("PADDOCK_LOG_LEVEL", "warn")
            .env("PADDOCK_LOG_FORMAT", "json")
            .env(KEY_ENV, KEY)
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).expect("log file")))
            .spawn()
            .expect("paddock serve starts");
        let mut serve = Serve {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
            spawned,
            listening: Duration::ZERO,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !paddock_testkit::answers_http(port) {
            if let Ok(Some(status)) = serve.child.try_wait() {
                panic!("paddock serve exited ({status}):\n{}", serve.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "paddock serve did not listen within 20 s"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        serve.listening = spawned.elapsed();
        serve
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL (a crash), and the exit.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A request with a JSON body (or none); panics unless it succeeds.
pub async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> Value {
    let mut req = http.request(method, &url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{url}: {status} {v}");
    v
}

pub async fn post(http: &reqwest::Client, url: String, body: Value) -> Value {
    call(http, reqwest::Method::POST, url, Some(body)).await
}

/// Reads an opened session event stream until its turn ends (in a task, so frames are
/// stamped as they arrive while the caller POSTs): when its first `event_delta` came,
/// `None` if no preview streamed.
pub fn first_delta(resp: reqwest::Response) -> tokio::task::JoinHandle<Option<Instant>> {
    first_of(resp, "event_delta")
}

/// The same for the first event of type `ty`.
pub fn first_of(
    resp: reqwest::Response,
    ty: &'static str,
) -> tokio::task::JoinHandle<Option<Instant>> {
    use futures::StreamExt;
    assert_eq!(resp.status().as_u16(), 200, "stream status");
    let mut body = resp.bytes_stream();
    tokio::spawn(async move {
        let mut buf = String::new();
        let mut first: Option<Instant> = None;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.expect("stream chunk");
            let now = Instant::now();
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                let event = frame
                    .lines()
                    .find_map(|l| l.strip_prefix("event:"))
                    .map(str::trim)
                    .unwrap_or("");
                if event == ty {
                    first.get_or_insert(now);
                }
                match event {
                    "session.error" => panic!("the turn failed: {frame}"),
                    "session.status_idle" => return first,
                    _ => {}
                }
            }
        }
        panic!("the stream ended before the turn did");
    })
}

/// What a bench binary does first: answers `--list`, skips without bubblewrap (`None`),
/// else the number of samples (`PADDOCK_BENCH_N`, or `default`).
pub fn samples(name: &str, default: usize) -> Option<usize> {
    if std::env::args().any(|a| a == "--list") {
        println!("{name}: bench");
        return None;
    }
    if Command::new("bwrap").arg("--version").output().is_err() {
        println!("{name}: skipped, bubblewrap is not installed");
        return None;
    }
    Some(
        std::env::var("PADDOCK_BENCH_N")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

/// A bare `bwrap` with the namespaces and system mounts of a local runner, running
/// `argv`: the raw baseline of the local backend.
pub fn bare_bwrap(argv: &[&str]) -> Command {
    let mut c = Command::new("bwrap");
    c.args([
        "--unshare-all",
        "--unshare-user",
        "--ro-bind",
        "/usr",
        "/usr",
        "--symlink",
        "usr/lib",
        "/lib",
        "--symlink",
        "usr/lib64",
        "/lib64",
        "--symlink",
        "usr/bin",
        "/bin",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
        "--",
    ])
    .args(argv);
    c
}
