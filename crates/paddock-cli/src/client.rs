//! A small client of the Paddock API for the CLI.

use futures::StreamExt;
use serde_json::Value;

use crate::output::{self, Columns};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{status} {kind}: {message}")]
    Api {
        status: u16,
        kind: String,
        message: String,
    },
    #[error("cannot reach Paddock at {url}: {source} (is `paddock serve` running? set --url or PADDOCK_URL)")]
    Unreachable { url: String, source: reqwest::Error },
    #[error("{0}")]
    Usage(String),
    /// A command run through Paddock ended with this code.
    #[error("exit {0}")]
    Exit(u8),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Api { status, .. } if *status < 500 => 1,
            CliError::Usage(_) => 2,
            CliError::Exit(c) => *c,
            CliError::Unreachable { .. } => 3,
            _ => 4,
        }
    }
}

pub struct Client {
    base: String,
    http: reqwest::Client,
    json: bool,
}

impl Client {
    pub fn new(base: &str, json: bool, token: Option<&str>) -> Self {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(t) = token {
            if let Ok(mut v) = reqwest::header::HeaderValue::from_str(&format!("Bearer {t}")) {
                v.set_sensitive(true);
                headers.insert(reqwest::header::AUTHORIZATION, v);
            }
        }
        let mut http = reqwest::Client::builder().default_headers(headers);
        if !base.starts_with("https://") {
            // A plain-HTTP Paddock needs no certificate roots; loading the system's
            // would cost every CLI call about 10 ms (docs/performance.md).
            http = http.tls_certs_only([]);
        }
        Client {
            base: base.trim_end_matches('/').to_string(),
            http: http.build().unwrap_or_default(),
            json,
        }
    }

    /// `--json`: raw JSON output.
    pub fn json(&self) -> bool {
        self.json
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value, CliError> {
        let resp = req.send().await.map_err(|source| CliError::Unreachable {
            url: self.base.clone(),
            source,
        })?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        Err(CliError::Api {
            status: status.as_u16(),
            kind: body["error"]["type"]
                .as_str()
                .unwrap_or("error")
                .to_string(),
            message: body["error"]["message"]
                .as_str()
                .unwrap_or("the server gave no message")
                .to_string(),
        })
    }

    /// Opens a streaming GET (with `Last-Event-ID` when given); an error answer
    /// becomes `CliError::Api`.
    pub async fn open_stream(
        &self,
        path: &str,
        query: &[(&str, &str)],
        last_event_id: Option<&str>,
    ) -> Result<reqwest::Response, CliError> {
        let mut req = self
            .http
            .get(format!("{}{path}", self.base))
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .query(query);
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let resp = req.send().await.map_err(|source| CliError::Unreachable {
            url: self.base.clone(),
            source,
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        Err(CliError::Api {
            status,
            kind: body["error"]["type"]
                .as_str()
                .unwrap_or("error")
                .to_string(),
            message: body["error"]["message"].as_str().unwrap_or("").to_string(),
        })
    }

    pub async fn get(&self, path: &str, query: &[(String, String)]) -> Result<Value, CliError> {
        self.send(self.http.get(format!("{}{path}", self.base)).query(query))
            .await
    }

    pub async fn post(
        &self,
        path: &str,
        body: &Value,
        idem: Option<&str>,
    ) -> Result<Value, CliError> {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(body);
        if let Some(k) = idem {
            req = req.header("Idempotency-Key", k);
        }
        self.send(req).await
    }

    pub async fn delete(&self, path: &str) -> Result<Value, CliError> {
        self.send(self.http.delete(format!("{}{path}", self.base)))
            .await
    }

    pub fn show(&self, v: Value, cols: Columns) {
        if self.json {
            output::print_json(&v);
        } else {
            output::print_record(&v, cols);
        }
    }

    /// Prints a list, following `next_page` when `all` is set.
    pub async fn list(
        &self,
        path: &str,
        mut query: Vec<(String, String)>,
        all: bool,
        cols: Columns,
    ) -> Result<(), CliError> {
        let mut rows = vec![];
        loop {
            let page = self.get(path, &query).await?;
            rows.extend(page["data"].as_array().cloned().unwrap_or_default());
            match page["next_page"].as_str() {
                Some(next) if all => {
                    query.retain(|(k, _)| k != "page");
                    query.push(("page".into(), next.to_string()));
                }
                _ => break,
            }
        }
        if self.json {
            output::print_json(&Value::Array(rows));
        } else {
            output::print_table(&rows, cols);
        }
        Ok(())
    }

    /// Prints every event so far, one log line each (time, type, gist) or one JSON
    /// object per line. (`--follow` prints a transcript instead: see `follow::Follower`.)
    pub async fn events(&self, session_id: &str) -> Result<(), CliError> {
        let path = format!("/v1/sessions/{session_id}/events");
        let mut query = vec![("limit".to_string(), "1000".to_string())];
        loop {
            let page = self.get(&path, &query).await?;
            for e in page["data"].as_array().into_iter().flatten() {
                self.print_event(e);
            }
            match page["next_page"].as_str() {
                Some(n) => {
                    query.retain(|(k, _)| k != "page");
                    query.push(("page".into(), n.to_string()));
                }
                None => break,
            }
        }
        Ok(())
    }

    /// Runs a command in a runner, copying its output to ours as it arrives; returns
    /// its exit code (128 + signal when killed, 124 on timeout).
    pub async fn exec(
        &self,
        id: &str,
        argv: &[String],
        timeout: Option<u64>,
    ) -> Result<u8, CliError> {
        use std::io::Write;
        let mut body = serde_json::json!({"argv": argv});
        if let Some(t) = timeout {
            body["timeout_ms"] = serde_json::json!(t * 1000);
        }
        let resp = self
            .http
            .post(format!("{}/v1/runners/{id}/exec", self.base))
            .json(&body)
            .send()
            .await
            .map_err(|source| CliError::Unreachable {
                url: self.base.clone(),
                source,
            })?;
        let status = resp.status();
        if !status.is_success() {
            let v: Value = resp.json().await.unwrap_or(Value::Null);
            return Err(CliError::Api {
                status: status.as_u16(),
                kind: v["error"]["type"].as_str().unwrap_or("error").to_string(),
                message: v["error"]["message"].as_str().unwrap_or("").to_string(),
            });
        }
        let mut stream = resp.bytes_stream();
        let mut buf: Vec<u8> = vec![];
        let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
        while let Some(chunk) = stream.next().await {
            let Ok(chunk) = chunk else {
                return Err(CliError::Other(anyhow::anyhow!(
                    "the output stream was cut before the command finished (was the runner stopped?)"
                )));
            };
            buf.extend_from_slice(&chunk);
            while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                let Ok(rec) = serde_json::from_slice::<Value>(&line) else {
                    continue;
                };
                let bytes = paddock_backend::worker::record_bytes(&rec);
                match rec["type"].as_str() {
                    Some("stdout") => {
                        let _ = out.write_all(&bytes);
                        let _ = out.flush();
                    }
                    Some("stderr") => {
                        let _ = err.write_all(&bytes);
                        let _ = err.flush();
                    }
                    Some("exit") => {
                        if rec["timed_out"].as_bool() == Some(true) {
                            eprintln!("paddock: the command timed out");
                            return Ok(124);
                        }
                        if let Some(code) = rec["code"].as_i64() {
                            return Ok(code.clamp(0, 255) as u8);
                        }
                        let sig = rec["signal"].as_i64().unwrap_or(9);
                        return Ok((128 + sig).clamp(0, 255) as u8);
                    }
                    _ => {}
                }
            }
        }
        Err(CliError::Other(anyhow::anyhow!(
            "the exec stream ended without an exit status"
        )))
    }

    /// `paddock logs`: the last lines, then new ones as they come with `follow`.
    pub async fn logs(&self, id: &str, lines: u32, follow: bool) -> Result<(), CliError> {
        let v = self
            .get(
                &format!("/v1/runners/{id}/logs"),
                &[("tail".into(), lines.to_string())],
            )
            .await?;
        if self.json {
            println!("{v}");
        } else {
            let sandbox = v["sandbox"].as_str().unwrap_or("");
            if !sandbox.is_empty() {
                println!("{}", sandbox.trim_end());
            }
            for w in v["worker"]["output"].as_array().into_iter().flatten() {
                print!("{}", w["data"].as_str().unwrap_or(""));
            }
        }
        if !follow {
            return Ok(());
        }
        let resp = self
            .open_stream(
                &format!("/v1/runners/{id}/logs"),
                &[("follow", "true")],
                None,
            )
            .await?;
        let mut stream = resp.bytes_stream();
        let mut buf = String::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| CliError::Other(e.into()))?;
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                let data: String = frame
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                let Ok(rec) = serde_json::from_str::<Value>(&data) else {
                    continue;
                };
                if self.json {
                    println!("{rec}");
                } else if rec["type"] == "end" {
                    eprintln!(
                        "paddock: {}",
                        rec["reason"].as_str().unwrap_or("the stream ended")
                    );
                    return Ok(());
                } else {
                    let text = rec["text"].as_str().unwrap_or("");
                    if rec["source"] == "exec" {
                        print!("{text}");
                    } else {
                        println!("{text}");
                    }
                    use std::io::Write;
                    let _ = std::io::stdout().flush();
                }
            }
        }
        Ok(())
    }

    /// `paddock dashboard`: the fleet, once or every `watch` seconds; `stream` prints
    /// one JSON snapshot per line.
    pub async fn dashboard(&self, watch: Option<u64>, stream: bool) -> Result<(), CliError> {
        loop {
            let fleet = self.get("/v1/fleet", &[]).await?;
            if stream || self.json {
                println!("{fleet}");
            } else {
                let page = self
                    .get("/v1/runners", &[("limit".into(), "50".into())])
                    .await?;
                let runners: Vec<Value> = page["data"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|r| r["state"] != "destroyed")
                    .cloned()
                    .collect();
                if watch.is_some() {
                    print!("\x1b[2J\x1b[H");
                }
                output::print_fleet(&fleet, &runners);
            }
            use std::io::Write;
            let _ = std::io::stdout().flush();
            match (watch, stream) {
                (Some(s), _) => tokio::time::sleep(std::time::Duration::from_secs(s.max(1))).await,
                (None, true) => tokio::time::sleep(std::time::Duration::from_secs(5)).await,
                (None, false) => return Ok(()),
            }
        }
    }

    fn print_event(&self, e: &Value) {
        if self.json {
            println!("{e}");
        } else {
            println!("{}", output::event_line(e));
        }
    }
}
