//! A client of the worker protocol (docs/worker-protocol.md): HTTP/1.1 over the
//! runner's Unix socket (or TCP with a bearer token).

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::time::{Duration, Instant};

use crate::{BackendError, Connector, Result};

#[derive(Debug, Clone)]
pub struct WorkerClient {
    connector: Connector,
}

/// The collected result of one exec.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub code: Option<i64>,
    pub signal: Option<i64>,
    pub timed_out: bool,
    pub cancelled: bool,
}

impl ExecOutput {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Decodes one NDJSON output record's bytes (`data`, or `data_b64` for binary).
pub fn record_bytes(rec: &Value) -> Vec<u8> {
    if let Some(b) = rec.get("data_b64").and_then(Value::as_str) {
        return decode_b64(b);
    }
    rec.get("data")
        .and_then(Value::as_str)
        .map(|s| s.as_bytes().to_vec())
        .unwrap_or_default()
}

fn decode_b64(s: &str) -> Vec<u8> {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let Some(v) = T.iter().position(|&t| t == c) else {
            continue;
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// The error a worker answered with (`{"type":"error","error":{type,message}}`).
pub fn worker_error(status: u16, body: &[u8]) -> BackendError {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    BackendError::Worker {
        status,
        kind: v["error"]["type"].as_str().map(str::to_string),
        message: v["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned()),
    }
}

/// How long a worker may take to accept a request and answer with headers.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl WorkerClient {
    pub fn new(connector: Connector) -> Self {
        WorkerClient { connector }
    }

    pub fn connector(&self) -> &Connector {
        &self.connector
    }

    /// Sends one request on a fresh connection and returns the streaming response.
    pub async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        body: Bytes,
        content_type: Option<&str>,
    ) -> Result<Response<Incoming>> {
        tokio::time::timeout(
            REQUEST_TIMEOUT,
            self.request_inner(method, path_and_query, body, content_type),
        )
        .await
        .map_err(|_| {
            BackendError::Timeout(format!(
                "the worker did not answer {path_and_query} within {REQUEST_TIMEOUT:?}"
            ))
        })?
    }

    async fn request_inner(
        &self,
        method: Method,
        path_and_query: &str,
        body: Bytes,
        content_type: Option<&str>,
    ) -> Result<Response<Incoming>> {
        self.send(
            Request::builder().method(method).uri(path_and_query),
            body,
            content_type,
        )
        .await
    }

    /// Attaches to a long-lived process's stdio (`GET /processes/{id}/attach`, an HTTP
    /// upgrade): the raw duplex stream (writes go to its stdin, reads come from its
    /// stdout from offset `from`; with `lines`, stdin takes whole lines only) and the
    /// offset the stream starts at.
    pub async fn attach(
        &self,
        id: &str,
        from: u64,
        lines: bool,
    ) -> Result<(TokioIo<Upgraded>, u64)> {
        let req = Request::builder()
            .method(Method::GET)
            .uri(format!("/processes/{id}/attach?from={from}&lines={lines}"))
            .header(hyper::header::CONNECTION, "Upgrade")
            .header(hyper::header::UPGRADE, "paddock-stdio");
        let resp = tokio::time::timeout(REQUEST_TIMEOUT, self.send(req, Bytes::new(), None))
            .await
            .map_err(|_| {
                BackendError::Timeout(format!(
                    "the worker did not answer the attach of {id} within {REQUEST_TIMEOUT:?}"
                ))
            })??;
        if resp.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
            let status = resp.status().as_u16();
            let body = http_body_util::Limited::new(resp.into_body(), 1024 * 1024)
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            return Err(worker_error(status, &body));
        }
        let start = resp
            .headers()
            .get("x-paddock-from")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(from);
        let io = hyper::upgrade::on(resp)
            .await
            .map_err(|e| BackendError::Unreachable(format!("attaching to {id}: {e}")))?;
        Ok((TokioIo::new(io), start))
    }

    async fn send(
        &self,
        req: hyper::http::request::Builder,
        body: Bytes,
        content_type: Option<&str>,
    ) -> Result<Response<Incoming>> {
        let mut req = req.header("host", "worker");
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let unreachable = |e: &dyn std::fmt::Display| BackendError::Unreachable(e.to_string());
        let (mut sender, conn) = match &self.connector {
            Connector::UnixSocket { path, pid_ns } => {
                let stream = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(|e| BackendError::Unreachable(format!("{}: {e}", path.display())))?;
                if let Some(expected) = pid_ns {
                    let peer = stream
                        .peer_cred()
                        .ok()
                        .and_then(|c| c.pid())
                        .and_then(|pid| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok())
                        .map(|l| l.display().to_string());
                    if peer.as_deref() != Some(expected.as_str()) {
                        return Err(BackendError::Unreachable(format!(
                            "{} is not served from inside this runner's sandbox; refusing it",
                            path.display()
                        )));
                    }
                }
                let (s, c) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| unreachable(&e))?;
                (s, tokio::spawn(c.with_upgrades()))
            }
            Connector::Tcp { addr, token } => {
                req = req.header("authorization", format!("Bearer {token}"));
                let stream = tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(|e| BackendError::Unreachable(format!("{addr}: {e}")))?;
                let (s, c) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| unreachable(&e))?;
                (s, tokio::spawn(c.with_upgrades()))
            }
        };
        let req = req
            .body(Full::new(body))
            .map_err(|e| BackendError::Unreachable(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| unreachable(&e))?;
        // The connection task ends by itself when the response body is done.
        drop(conn);
        Ok(resp)
    }

    /// A request whose answer is JSON; a non-2xx answer becomes an error. The whole call
    /// (answer included, at most 64 MiB) is bounded in time: a stalled worker cannot
    /// hang its caller.
    pub async fn json(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        tokio::time::timeout(REQUEST_TIMEOUT, self.json_inner(method, path, body))
            .await
            .map_err(|_| {
                BackendError::Timeout(format!(
                    "the worker did not answer {path} within {REQUEST_TIMEOUT:?}"
                ))
            })?
    }

    async fn json_inner(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let (bytes, ct) = match body {
            Some(b) => (Bytes::from(b.to_string()), Some("application/json")),
            None => (Bytes::new(), None),
        };
        let resp = self.request(method, path, bytes, ct).await?;
        let status = resp.status();
        let body = http_body_util::Limited::new(resp.into_body(), 64 * 1024 * 1024)
            .collect()
            .await
            .map_err(|e| BackendError::Unreachable(format!("reading the worker's answer: {e}")))?
            .to_bytes();
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(worker_error(status.as_u16(), &body));
        }
        Ok(v)
    }

    pub async fn healthz(&self) -> Result<Value> {
        self.json(Method::GET, "/healthz", None).await
    }

    /// Polls `/healthz` until the worker answers or `timeout` passes. The pause between
    /// tries stays short (1 ms, growing to 5 ms): a try is a failed connect to a Unix
    /// socket, which costs microseconds, while every millisecond of pause past the
    /// worker's start is added to the runner's (docs/performance.md).
    pub async fn wait_healthy(&self, timeout: Duration) -> Result<Value> {
        let started = Instant::now();
        let mut delay = Duration::from_millis(1);
        loop {
            match self.healthz().await {
                Ok(v) => return Ok(v),
                Err(e) if started.elapsed() >= timeout => {
                    return Err(BackendError::Timeout(format!(
                        "the worker did not answer within {timeout:?}: {e}"
                    )))
                }
                Err(_) => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(5));
                }
            }
        }
    }

    /// Runs a command and collects its whole output.
    pub async fn exec(&self, req: &Value) -> Result<ExecOutput> {
        let resp = self
            .request(
                Method::POST,
                "/exec",
                Bytes::from(req.to_string()),
                Some("application/json"),
            )
            .await?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| BackendError::Unreachable(e.to_string()))?
                .to_bytes();
            return Err(worker_error(status.as_u16(), &body));
        }
        let mut out = ExecOutput::default();
        let mut stream = resp.into_body().into_data_stream();
        let mut buf = Vec::new();
        let mut ended = false;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| BackendError::Unreachable(e.to_string()))?;
            buf.extend_from_slice(&chunk);
            while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                let Ok(rec) = serde_json::from_slice::<Value>(&line) else {
                    continue;
                };
                match rec["type"].as_str() {
                    Some("stdout") => out.stdout.extend(record_bytes(&rec)),
                    Some("stderr") => out.stderr.extend(record_bytes(&rec)),
                    Some("exit") => {
                        out.code = rec["code"].as_i64();
                        out.signal = rec["signal"].as_i64();
                        out.timed_out = rec["timed_out"].as_bool().unwrap_or(false);
                        out.cancelled = rec["cancelled"].as_bool().unwrap_or(false);
                        ended = true;
                    }
                    _ => {}
                }
            }
        }
        if !ended {
            return Err(BackendError::Unreachable(
                "the exec stream ended without an exit record".into(),
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_records_decode() {
        assert_eq!(decode_b64("aGVsbG8="), b"hello");
        assert_eq!(decode_b64("AP8="), vec![0u8, 255]);
        let rec = serde_json::json!({"type": "stdout", "data_b64": "AP8="});
        assert_eq!(record_bytes(&rec), vec![0u8, 255]);
        let rec = serde_json::json!({"type": "stdout", "data": "hi"});
        assert_eq!(record_bytes(&rec), b"hi");
    }
}
