//! A real Paddock server on an ephemeral port over a real SQLite file, for tests.
#![allow(dead_code)]

use futures::StreamExt;
use paddock_server::{Config, Server};
use paddock_store::{SqliteStore, Store};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct TestServer {
    pub base: String,
    pub store: Arc<SqliteStore>,
    pub http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

pub fn config(dir: &Path) -> Config {
    Config {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.to_path_buf(),
        max_body_bytes: 64 * 1024,
        sse_keepalive_secs: 1,
        // Rate limiting has its own test; the others make bursts on purpose.
        rate_limit: paddock_server::config::RateLimitSettings {
            per_second: 0.0,
            burst: 0,
        },
        // These tests are about the event log itself: no agent answers.
        agent: paddock_server::config::AgentSettings {
            enabled: false,
            ..Default::default()
        },
        ..Config::default()
    }
}

impl TestServer {
    pub async fn start(dir: &Path) -> TestServer {
        Self::start_with(config(dir)).await
    }

    pub async fn start_with(cfg: Config) -> TestServer {
        let store = Arc::new(SqliteStore::open(&cfg.database_path()).expect("store opens"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let server = Server::with_store(cfg, store.clone() as Arc<dyn Store>, listener)
            .expect("server builds");
        server.adopt().await.expect("adoption");
        let addr = server.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            server
                .run(async {
                    let _ = rx.await;
                })
                .await
                .expect("server runs");
        });
        TestServer {
            base: format!("http://{addr}"),
            store,
            http: reqwest::Client::new(),
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    /// Graceful shutdown; returns once the server has stopped.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(10), h)
                .await
                .expect("server stops within 10 s")
                .expect("server task ends cleanly");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(m, self.url(path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(body)).await
    }

    /// POST that must succeed; returns the body.
    pub async fn ok(&self, path: &str, body: Value) -> Value {
        let (s, v) = self.post(path, body).await;
        assert_eq!(s, 200, "POST {path}: {v}");
        v
    }

    pub async fn agent(&self) -> Value {
        self.ok(
            "/v1/agents",
            json!({"name": "tester", "model": "claude-sonnet-4-6"}),
        )
        .await
    }

    pub async fn environment(&self) -> Value {
        self.ok("/v1/environments", json!({"name": "env"})).await
    }

    /// A new agent, environment and session; returns the session.
    pub async fn session(&self) -> Value {
        let a = self.agent().await;
        let e = self.environment().await;
        self.ok(
            "/v1/sessions",
            json!({"agent": a["id"], "environment_id": e["id"]}),
        )
        .await
    }

    pub async fn send_text(&self, sid: &str, text: &str) -> Value {
        let v = self
            .ok(
                &format!("/v1/sessions/{sid}/events"),
                json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": text}]}]}),
            )
            .await;
        v["data"][0].clone()
    }

    /// Every event of a session, following pages.
    pub async fn all_events(&self, sid: &str) -> Vec<Value> {
        let mut out = vec![];
        let mut page: Option<String> = None;
        loop {
            let q = match &page {
                Some(p) => format!("?limit=7&page={p}"),
                None => "?limit=7".into(),
            };
            let (s, v) = self.get(&format!("/v1/sessions/{sid}/events{q}")).await;
            assert_eq!(s, 200, "{v}");
            out.extend(v["data"].as_array().cloned().unwrap_or_default());
            match v["next_page"].as_str() {
                Some(p) => page = Some(p.to_string()),
                None => return out,
            }
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub fn tempdir() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path().to_path_buf();
    (d, p)
}

/// One parsed SSE frame.
#[derive(Debug, Clone)]
pub struct Frame {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
    pub comment: bool,
}

impl Frame {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).expect("frame data is JSON")
    }
}

pub struct Sse {
    stream: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: String,
}

impl Sse {
    pub async fn open(req: reqwest::RequestBuilder) -> Sse {
        let resp = req.send().await.expect("stream request");
        assert_eq!(resp.status().as_u16(), 200, "stream status");
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        assert!(ct.starts_with("text/event-stream"), "content-type {ct}");
        Sse {
            stream: resp.bytes_stream().boxed(),
            buf: String::new(),
        }
    }

    /// The next frame (keep-alive comments included), or None at end of stream / timeout.
    pub async fn frame(&mut self, timeout: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let raw: String = self.buf.drain(..end + 2).collect();
                let mut f = Frame {
                    id: None,
                    event: None,
                    data: String::new(),
                    comment: false,
                };
                for line in raw.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        f.id = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        f.event = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        f.data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    } else if line.starts_with(':') {
                        f.comment = true;
                    }
                }
                return Some(f);
            }
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Ok(Some(Ok(chunk))) => self.buf.push_str(&String::from_utf8_lossy(&chunk)),
                Ok(Some(Err(_))) | Ok(None) | Err(_) => return None,
            }
        }
    }

    /// The next event frame, skipping keep-alives.
    pub async fn event(&mut self, timeout: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let f = self.frame(left).await?;
            if !f.comment && f.event.is_some() {
                return Some(f);
            }
        }
    }
}
