//! Test support: a hand-written HTTP/1.1 client over any `Read + Write`
//! stream (Unix socket or TCP), an in-process worker on a Unix socket in a
//! temporary directory, and /proc helpers.
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use paddock_worker::{Listener, Worker, WorkerConfig};
use serde_json::Value;

// ------------------------------------------------------------------ client

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Asserts an error response of `status` and `type`; returns the error object.
    #[track_caller]
    pub fn assert_error(&self, status: u16, kind: &str) -> Value {
        let body = self.json();
        assert_eq!(self.status, status, "status; body: {body}");
        assert_eq!(body["error"]["type"], kind, "error type; body: {body}");
        assert!(body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        body["error"].clone()
    }
}

enum Framing {
    Chunked { remaining: usize, done: bool },
    Length(usize),
    Close,
}

/// A response whose body is read incrementally.
pub struct ResponseReader<S: Read + Write> {
    reader: BufReader<S>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    framing: Framing,
}

fn read_line<R: BufRead>(r: &mut R) -> io::Result<String> {
    let mut line = String::new();
    let n = r.read_line(&mut line)?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Sends one request (with `Connection: close`) and reads the status line
/// and headers.
pub fn send<S: Read + Write>(
    mut stream: S,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<ResponseReader<S>> {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: worker\r\nConnection: close\r\n");
    if !body.is_empty() || method == "POST" || method == "PUT" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    // A server may answer (e.g. 413) and close before reading the whole
    // body: a failed body write is not fatal, the response is still read.
    if let Err(e) = stream.write_all(body).and_then(|_| stream.flush()) {
        if !matches!(
            e.kind(),
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
        ) {
            return Err(e);
        }
    }

    let mut reader = BufReader::new(stream);
    let status_line = read_line(&mut reader)?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {status_line:?}"),
            )
        })?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(&mut reader)?;
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let framing = if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        Framing::Chunked {
            remaining: 0,
            done: false,
        }
    } else if let Some(len) = get("content-length").and_then(|v| v.parse().ok()) {
        Framing::Length(len)
    } else {
        Framing::Close
    };
    Ok(ResponseReader {
        reader,
        status,
        headers,
        framing,
    })
}

impl<S: Read + Write> ResponseReader<S> {
    /// The next piece of the body, `None` at its end.
    pub fn read_some(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut buf = vec![0u8; 64 * 1024];
        match &mut self.framing {
            Framing::Length(0) => Ok(None),
            Framing::Length(left) => {
                let want = (*left).min(buf.len());
                let n = self.reader.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "body cut short",
                    ));
                }
                *left -= n;
                buf.truncate(n);
                Ok(Some(buf))
            }
            Framing::Close => {
                let n = self.reader.read(&mut buf)?;
                if n == 0 {
                    return Ok(None);
                }
                buf.truncate(n);
                Ok(Some(buf))
            }
            Framing::Chunked { remaining, done } => {
                if *done {
                    return Ok(None);
                }
                if *remaining == 0 {
                    let size_line = read_line(&mut self.reader)?;
                    let size_hex = size_line.split(';').next().unwrap_or("").trim();
                    let size = usize::from_str_radix(size_hex, 16).map_err(|_| {
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("bad chunk size {size_line:?}"),
                        )
                    })?;
                    if size == 0 {
                        // trailers, then the empty line
                        while !read_line(&mut self.reader)?.is_empty() {}
                        *done = true;
                        return Ok(None);
                    }
                    *remaining = size;
                }
                let want = (*remaining).min(buf.len());
                let n = self.reader.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "chunk cut short",
                    ));
                }
                *remaining -= n;
                if *remaining == 0 {
                    let crlf = read_line(&mut self.reader)?;
                    assert!(crlf.is_empty(), "chunk not followed by CRLF");
                }
                buf.truncate(n);
                Ok(Some(buf))
            }
        }
    }

    pub fn finish(mut self) -> io::Result<Response> {
        let mut body = Vec::new();
        while let Some(piece) = self.read_some()? {
            body.extend_from_slice(&piece);
        }
        Ok(Response {
            status: self.status,
            headers: self.headers,
            body,
        })
    }

    pub fn into_ndjson(self) -> Ndjson<S> {
        Ndjson {
            resp: self,
            buf: Vec::new(),
        }
    }
}

/// Reads NDJSON records one by one as they arrive.
pub struct Ndjson<S: Read + Write> {
    pub resp: ResponseReader<S>,
    buf: Vec<u8>,
}

impl<S: Read + Write> Ndjson<S> {
    pub fn next_record(&mut self) -> Option<Value> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                return Some(serde_json::from_slice(&line).expect("NDJSON record"));
            }
            match self.resp.read_some().expect("reading the stream") {
                Some(piece) => self.buf.extend_from_slice(&piece),
                None => {
                    assert!(self.buf.is_empty(), "stream ended mid-record");
                    return None;
                }
            }
        }
    }

    pub fn rest(mut self) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some(r) = self.next_record() {
            out.push(r);
        }
        out
    }
}

/// Percent-encodes a query value.
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A client bound to a Unix socket path (one connection per request).
#[derive(Clone)]
pub struct Client {
    pub sock: PathBuf,
    pub token: Option<String>,
}

impl Client {
    pub fn connect(&self) -> UnixStream {
        let s = UnixStream::connect(&self.sock).expect("connect to the worker socket");
        s.set_read_timeout(Some(Duration::from_secs(60))).ok();
        s
    }

    fn auth(&self) -> Option<String> {
        self.token.as_ref().map(|t| format!("Bearer {t}"))
    }

    pub fn request(&self, method: &str, target: &str, body: &[u8]) -> Response {
        let auth = self.auth();
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        send(self.connect(), method, target, &headers, body)
            .and_then(|r| r.finish())
            .unwrap_or_else(|e| panic!("{method} {target}: {e}"))
    }

    pub fn get(&self, target: &str) -> Response {
        self.request("GET", target, b"")
    }

    pub fn post(&self, target: &str, body: &Value) -> Response {
        self.request("POST", target, body.to_string().as_bytes())
    }

    pub fn put(&self, target: &str, body: &[u8]) -> Response {
        self.request("PUT", target, body)
    }

    pub fn delete(&self, target: &str) -> Response {
        self.request("DELETE", target, b"")
    }

    pub fn write_file(&self, path: &str, body: &[u8]) -> Response {
        self.put(
            &format!("/files/write?path={}&mkdirs=true", enc(path)),
            body,
        )
    }

    /// Starts an exec and returns the stream once the headers arrived.
    pub fn exec_stream(&self, body: &Value) -> Ndjson<UnixStream> {
        let auth = self.auth();
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        let payload = body.to_string();
        let resp = send(
            self.connect(),
            "POST",
            "/exec",
            &headers,
            payload.as_bytes(),
        )
        .expect("POST /exec");
        assert_eq!(resp.status, 200, "exec refused: {:?}", resp.headers);
        resp.into_ndjson()
    }

    /// Runs an exec to completion and returns every record.
    /// A GET whose answer is NDJSON records, read to its end.
    pub fn get_ndjson(&self, target: &str) -> Vec<Value> {
        let r = self.get(target);
        assert_eq!(r.status, 200, "{target}: {}", r.text());
        r.text()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("a JSON record"))
            .collect()
    }

    pub fn exec(&self, body: &Value) -> Vec<Value> {
        let records = self.exec_stream(body).rest();
        assert_eq!(
            records.first().map(|r| r["type"].clone()),
            Some("started".into()),
            "{records:?}"
        );
        assert_eq!(
            records.last().map(|r| r["type"].clone()),
            Some("exit".into()),
            "{records:?}"
        );
        records
    }
}

pub fn exit_of(records: &[Value]) -> &Value {
    records.last().expect("records")
}

/// Concatenated bytes of one stream ("stdout" / "stderr").
pub fn output_of(records: &[Value], stream: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records.iter().filter(|r| r["type"] == stream) {
        if let Some(b64) = r["data_b64"].as_str() {
            out.extend(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .expect("base64"),
            );
        } else {
            out.extend_from_slice(r["data"].as_str().expect("data").as_bytes());
        }
    }
    out
}

pub fn text_of(records: &[Value], stream: &str) -> String {
    String::from_utf8(output_of(records, stream)).expect("utf-8 output")
}

// ------------------------------------------------------------------ worker

/// An in-process worker on a Unix socket; stops when dropped.
pub struct TestWorker {
    pub dir: tempfile::TempDir,
    /// The workspace (canonical).
    pub ws: PathBuf,
    /// A directory next to the workspace that must never be touched.
    pub outside: PathBuf,
    pub client: Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestWorker {
    pub fn start() -> Self {
        Self::start_with(|_| {})
    }

    pub fn start_with(adjust: impl FnOnce(&mut WorkerConfig)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let ws = dir.path().join("ws");
        let outside = dir.path().join("outside");
        std::fs::create_dir(&ws).unwrap();
        std::fs::create_dir(&outside).unwrap();
        let ws = std::fs::canonicalize(ws).unwrap();
        let outside = std::fs::canonicalize(outside).unwrap();
        let sock = dir.path().join("w.sock");
        let mut config = WorkerConfig::new(&ws);
        config.kill_grace = Duration::from_millis(500);
        config.drain_timeout = Duration::from_millis(500);
        adjust(&mut config);
        let token = config.token.clone();
        let worker = Worker::new(config).expect("worker config");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        let sock2 = sock.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::UnixListener::bind(&sock2).expect("bind");
                let _ = ready_tx.send(());
                worker
                    .serve(vec![Listener::Unix(listener)], async move {
                        let _ = stop_rx.await;
                    })
                    .await
                    .expect("serve");
            });
            rt.shutdown_timeout(Duration::from_secs(1));
        });
        ready_rx.recv().expect("worker thread started");
        TestWorker {
            dir,
            ws,
            outside,
            client: Client { sock, token },
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for TestWorker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl std::ops::Deref for TestWorker {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

// ------------------------------------------------------------------ /proc

/// (state, pgrp) of a process, `None` if it does not exist.
pub fn proc_state(pid: i32) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some((f.first()?.chars().next()?, f.get(2)?.parse().ok()?))
}

/// A process that exists and is not a zombie.
pub fn is_alive(pid: i32) -> bool {
    matches!(proc_state(pid), Some((s, _)) if s != 'Z' && s != 'X')
}

/// Live (non-zombie) members of process group `pgid`.
pub fn live_group_members(pgid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for ent in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Some(pid) = ent.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) {
            if let Some((state, pgrp)) = proc_state(pid) {
                if pgrp == pgid && state != 'Z' && state != 'X' {
                    out.push(pid);
                }
            }
        }
    }
    out
}

/// Waits up to `timeout` for `cond`.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}
