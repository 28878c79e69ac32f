//! Long-lived processes (`/processes`, docs/worker-protocol.md §8) and loopback relays
//! (`/relays`, §9).
//!
//! A process here is an ACP agent or a terminal. It belongs to the runner, not to a
//! connection: its stdout (and stderr) are kept in bounded buffers addressed by byte
//! offsets, a client attaches to it (and attaches again after a dropped connection or
//! an orchestrator restart) from an offset, and only an explicit signal or delete, or
//! the worker stopping, ends it.
//!
//! A relay listens on a TCP port on the sandbox's loopback and forwards each connection
//! to a Unix socket beside the worker's own: that is how a program inside a sandbox
//! without a network reaches a service the orchestrator offers there (its model
//! gateway).

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, UPGRADE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::error::WorkerError;
use crate::exec::{self, ExecRequest};
use crate::http::{self, Body};
use crate::State;

/// Most processes one worker keeps (running or exited, until deleted).
pub const MAX_PROCESSES: usize = 64;
/// Bytes of stdout kept per process by default, and at most.
pub const DEFAULT_OUTPUT_LIMIT: u64 = 8 * 1024 * 1024;
pub const MAX_OUTPUT_LIMIT: u64 = 64 * 1024 * 1024;
/// Bytes of stderr kept per process (its tail).
pub const STDERR_LIMIT: usize = 256 * 1024;
/// The environment variable naming the process a descendant belongs to.
pub const MARKER: &str = "PADDOCK_PROCESS";
/// The protocol name of `GET /processes/{id}/attach`'s upgrade.
pub const ATTACH_PROTOCOL: &str = "paddock-stdio";
/// Longest `timeout_ms` of `GET /processes/{id}/wait`.
const MAX_WAIT: Duration = Duration::from_secs(300);
/// How long an exited process's output may take to reach its end before the exit is
/// shown anyway (a descendant may hold the pipe open for as long as it lives).
const OUTPUT_DRAIN: Duration = Duration::from_millis(500);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartRequest {
    id: String,
    argv: Option<Vec<String>>,
    command: Option<String>,
    cwd: Option<String>,
    env: Option<BTreeMap<String, String>>,
    /// stderr goes into the same buffer as stdout (a terminal).
    #[serde(default)]
    merge_stderr: bool,
    output_limit_bytes: Option<u64>,
}

/// A byte buffer addressed by offsets since the process started; the oldest bytes are
/// dropped past `limit`.
struct Buf {
    base: u64,
    data: Vec<u8>,
    limit: usize,
    eof: bool,
}

impl Buf {
    fn new(limit: usize) -> Self {
        Buf {
            base: 0,
            data: Vec::new(),
            limit,
            eof: false,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.data.extend_from_slice(bytes);
        if self.data.len() > self.limit {
            let cut = self.data.len() - self.limit;
            self.data.drain(..cut);
            self.base += cut as u64;
        }
    }

    fn end(&self) -> u64 {
        self.base + self.data.len() as u64
    }

    /// Up to `max` bytes from offset `from` (from the oldest kept byte when `from` was
    /// dropped): the offset they start at and the bytes.
    fn read(&self, from: u64, max: usize) -> (u64, &[u8]) {
        let start = from.clamp(self.base, self.end());
        let i = (start - self.base) as usize;
        let j = (i + max).min(self.data.len());
        (start, &self.data[i..j])
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
struct Exit {
    code: Option<i32>,
    signal: Option<i32>,
}

struct Proc {
    id: String,
    pid: i32,
    shown: String,
    started_at_ms: u64,
    merged: bool,
    stdin: tokio::sync::Mutex<Option<tokio::process::ChildStdin>>,
    out: Mutex<Buf>,
    err: Mutex<Buf>,
    exit: Mutex<Option<Exit>>,
    /// What the client keeps here about its exchange with the process (`PUT
    /// /processes/{id}/state`): an orchestrator that restarts reads it back.
    client_state: Mutex<serde_json::Value>,
    /// Bumped on new output, EOF and exit.
    tick: watch::Sender<u64>,
}

/// Sends `sig` to the process's group and to every process that still carries its
/// marker in its environment: a daemon it started in a session of its own, or an
/// orphan the worker inherited, goes with it.
fn kill_tree(p: &Proc, sig: i32) {
    exec::kill_group(p.pid, sig);
    let marker = format!("{MARKER}={}", p.id);
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return;
    };
    for ent in dir.flatten() {
        let Some(pid) = ent.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid <= 1 || pid == me {
            continue;
        }
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if env.split(|b| *b == 0).any(|v| v == marker.as_bytes()) {
            // SAFETY: plain kill(2) of a pid found above (never 0, 1 or the worker).
            unsafe {
                libc::kill(pid, sig);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Proc {
    fn bump(&self) {
        self.tick.send_modify(|n| *n += 1);
    }

    fn exit(&self) -> Option<Exit> {
        *lock(&self.exit)
    }

    /// Waits (at most [`OUTPUT_DRAIN`]) for the output readers to reach the end of the
    /// pipes of a process that has exited, so that the output a client reads once it sees
    /// `running: false` is all of it. A descendant that still holds a pipe open keeps it
    /// from ending: its later output keeps arriving, after the exit.
    fn drain_output(&self) {
        let deadline = std::time::Instant::now() + OUTPUT_DRAIN;
        while !(lock(&self.out).eof && lock(&self.err).eof) && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn status(&self) -> ProcStatus {
        let exit = self.exit();
        ProcStatus {
            id: self.id.clone(),
            pid: self.pid,
            command: self.shown.clone(),
            running: exit.is_none(),
            exit_code: exit.and_then(|e| e.code),
            signal: exit.and_then(|e| e.signal),
            started_at_ms: self.started_at_ms,
            merge_stderr: self.merged,
            output_bytes: lock(&self.out).end(),
            stderr_bytes: lock(&self.err).end(),
            state: lock(&self.client_state).clone(),
        }
    }
}

#[derive(Debug, Serialize)]
struct ProcStatus {
    id: String,
    pid: i32,
    command: String,
    running: bool,
    exit_code: Option<i32>,
    signal: Option<i32>,
    started_at_ms: u64,
    merge_stderr: bool,
    /// The offset just past the newest stdout byte (bytes written so far).
    output_bytes: u64,
    stderr_bytes: u64,
    /// The client's state (`null` until it puts one).
    state: serde_json::Value,
}

/// The worker's processes and relays.
#[derive(Default)]
pub struct Procs {
    table: Mutex<HashMap<String, Arc<Proc>>>,
    /// Relay socket name → loopback port.
    relays: tokio::sync::Mutex<HashMap<String, u16>>,
}

impl Procs {
    fn get(&self, id: &str) -> Result<Arc<Proc>, WorkerError> {
        lock(&self.table)
            .get(id)
            .cloned()
            .ok_or_else(|| WorkerError::NotFound(format!("no process with id `{id}`")))
    }

    /// SIGKILLs every running process's group (the worker is stopping).
    pub fn kill_all(&self) {
        for p in lock(&self.table).values() {
            kill_tree(p, libc::SIGKILL);
        }
    }
}

/// Reads `r` to its end on a thread of its own, into `buf` of `proc`.
fn spawn_reader(proc: Arc<Proc>, mut r: impl Read + Send + 'static, stderr: bool) {
    let spawned = std::thread::Builder::new()
        .name(format!("proc-{}", proc.pid))
        .stack_size(64 * 1024)
        .spawn(move || {
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                match r.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => {
                        let buf = if stderr { &proc.err } else { &proc.out };
                        lock(buf).push(&chunk[..n]);
                        proc.bump();
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
            let buf = if stderr { &proc.err } else { &proc.out };
            lock(buf).eof = true;
            proc.bump();
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start a process output reader");
    }
}

/// `POST /processes`
async fn start(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, WorkerError> {
    let bytes = http::read_body(req, state.config.max_request_bytes, "the request body").await?;
    let body: StartRequest = http::parse_json(&bytes)?;
    exec::validate_id(&body.id)?;
    let limit = body.output_limit_bytes.unwrap_or(DEFAULT_OUTPUT_LIMIT);
    if limit == 0 || limit > MAX_OUTPUT_LIMIT {
        return Err(WorkerError::invalid(
            "output_limit_bytes",
            format!("`output_limit_bytes` must be 1 to {MAX_OUTPUT_LIMIT}"),
        ));
    }
    let prepared = exec::prepare(
        &state,
        ExecRequest {
            command: body.command,
            argv: body.argv,
            cwd: body.cwd,
            env: body.env,
            stdin: None,
            stdin_b64: None,
            timeout_ms: None,
            id: Some(body.id.clone()),
            kill_on_disconnect: None,
        },
    )?;
    let mut command = prepared.command;
    // Every process it starts inherits this: how its descendants are found even when
    // they leave its process group or are reparented (see `kill_tree`).
    command.env(MARKER, &body.id);
    let merged_reader = if body.merge_stderr {
        let (r, w) = io::pipe().map_err(|e| WorkerError::io("creating a pipe", e))?;
        let w2 = w
            .try_clone()
            .map_err(|e| WorkerError::io("creating a pipe", e))?;
        command.stdout(w).stderr(w2);
        Some(r)
    } else {
        None
    };
    let proc = {
        let mut table = lock(&state.procs.table);
        match table.get(&body.id) {
            Some(p) if p.exit().is_none() => {
                return Err(WorkerError::Conflict(format!(
                    "a process with id `{}` is already running",
                    body.id
                )))
            }
            Some(_) => {
                table.remove(&body.id);
            }
            None if table.len() >= MAX_PROCESSES => {
                return Err(WorkerError::Conflict(format!(
                    "this worker already keeps {MAX_PROCESSES} processes; delete some first"
                )))
            }
            None => {}
        }
        let mut child = state
            .execs
            .spawn_leader(&mut command)
            .map_err(|e| WorkerError::SpawnFailed(format!("{:?}: {e}", prepared.shown)))?;
        // The command holds the write ends of a merged pipe: drop them, so the reader
        // sees EOF when the process's side closes.
        drop(command);
        let stdin = child
            .stdin
            .take()
            .and_then(|s| tokio::process::ChildStdin::from_std(s).ok());
        let proc = Arc::new(Proc {
            id: body.id.clone(),
            pid: child.id() as i32,
            shown: prepared.shown.clone(),
            started_at_ms: crate::logs::now_ms(),
            merged: body.merge_stderr,
            stdin: tokio::sync::Mutex::new(stdin),
            out: Mutex::new(Buf::new(limit as usize)),
            err: Mutex::new(Buf::new(STDERR_LIMIT)),
            exit: Mutex::new(None),
            client_state: Mutex::new(serde_json::Value::Null),
            tick: watch::channel(0).0,
        });
        match merged_reader {
            Some(r) => {
                spawn_reader(proc.clone(), r, false);
                lock(&proc.err).eof = true;
            }
            None => {
                if let Some(out) = child.stdout.take() {
                    spawn_reader(proc.clone(), out, false);
                }
                if let Some(err) = child.stderr.take() {
                    spawn_reader(proc.clone(), err, true);
                }
            }
        }
        table.insert(body.id.clone(), proc.clone());
        proc
    };
    let waiter = {
        let (proc, state) = (proc.clone(), state.clone());
        std::thread::Builder::new()
            .name(format!("wait-{}", proc.pid))
            .stack_size(64 * 1024)
            .spawn(move || {
                let mut status: libc::c_int = 0;
                let code = loop {
                    // SAFETY: waits for our own child; the orphan reaper leaves leaders alone.
                    let r = unsafe { libc::waitpid(proc.pid, &mut status, 0) };
                    if r == proc.pid {
                        break Some(status);
                    }
                    if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                        break None;
                    }
                };
                state.execs.forget_leader(proc.pid);
                let exit = match code {
                    Some(s) if libc::WIFEXITED(s) => Exit {
                        code: Some(libc::WEXITSTATUS(s)),
                        signal: None,
                    },
                    Some(s) if libc::WIFSIGNALED(s) => Exit {
                        code: None,
                        signal: Some(libc::WTERMSIG(s)),
                    },
                    _ => Exit::default(),
                };
                tracing::info!(id = %proc.id, pid = proc.pid, ?exit, "process exited");
                proc.drain_output();
                *lock(&proc.exit) = Some(exit);
                proc.bump();
            })
    };
    if let Err(e) = waiter {
        exec::kill_group(proc.pid, libc::SIGKILL);
        return Err(WorkerError::Internal(format!(
            "could not start a waiter thread: {e}"
        )));
    }
    tracing::info!(id = %proc.id, pid = proc.pid, command = %proc.shown, "process started");
    Ok(http::json(StatusCode::CREATED, &proc.status()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OutputQuery {
    from: Option<String>,
    limit: Option<String>,
    stream: Option<String>,
}

#[derive(Serialize)]
struct Output {
    /// The offset the text starts at (later than `from` when older bytes were dropped).
    from: u64,
    /// The offset to ask from next.
    next: u64,
    /// Bytes between `from` as asked and the text's start that are no longer kept.
    dropped: u64,
    /// UTF-8 (invalid sequences replaced).
    text: String,
    eof: bool,
    #[serde(flatten)]
    status: ProcStatus,
}

/// `GET /processes/{id}/output?from=&limit=&stream=stdout|stderr`
fn output(p: &Proc, req: &Request<Incoming>) -> Result<Response<Body>, WorkerError> {
    let q: OutputQuery = http::parse_query(req.uri().query())?;
    let from = http::parse_u64_param("from", q.from.as_deref())?.unwrap_or(0);
    let limit = http::parse_u64_param("limit", q.limit.as_deref())?
        .unwrap_or(1024 * 1024)
        .min(MAX_OUTPUT_LIMIT) as usize;
    let buf = match q.stream.as_deref() {
        None | Some("stdout") => &p.out,
        Some("stderr") => &p.err,
        Some(other) => {
            return Err(WorkerError::invalid(
                "stream",
                format!("`stream` must be stdout or stderr, got {other:?}"),
            ))
        }
    };
    let (start, text, eof, end) = {
        let b = lock(buf);
        let (start, bytes) = b.read(from, limit);
        (
            start,
            String::from_utf8_lossy(bytes).into_owned(),
            b.eof,
            start + bytes.len() as u64,
        )
    };
    Ok(http::ok_json(&Output {
        from: start,
        next: end,
        dropped: start.saturating_sub(from),
        text,
        eof,
        status: p.status(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitQuery {
    timeout_ms: Option<String>,
}

/// `GET /processes/{id}/wait?timeout_ms=`: the status once the process has exited, or
/// when the timeout passes (then `running` is still true).
async fn wait(p: Arc<Proc>, req: &Request<Incoming>) -> Result<Response<Body>, WorkerError> {
    let q: WaitQuery = http::parse_query(req.uri().query())?;
    let timeout = http::parse_u64_param("timeout_ms", q.timeout_ms.as_deref())?
        .map(Duration::from_millis)
        .unwrap_or(MAX_WAIT)
        .min(MAX_WAIT);
    let mut rx = p.tick.subscribe();
    let _ = tokio::time::timeout(timeout, async {
        while p.exit().is_none() {
            if rx.changed().await.is_err() {
                return;
            }
        }
    })
    .await;
    Ok(http::ok_json(&p.status()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignalRequest {
    signal: String,
}

/// `POST /processes/{id}/signal {"signal": "TERM"|"KILL"|"INT"|"HUP"}`: to the
/// process's whole group.
async fn signal(
    state: &State,
    p: &Proc,
    req: Request<Incoming>,
) -> Result<Response<Body>, WorkerError> {
    let bytes = http::read_body(req, state.config.max_request_bytes, "the request body").await?;
    let body: SignalRequest = http::parse_json(&bytes)?;
    let sig = match body.signal.trim_start_matches("SIG") {
        "TERM" => libc::SIGTERM,
        "KILL" => libc::SIGKILL,
        "INT" => libc::SIGINT,
        "HUP" => libc::SIGHUP,
        other => {
            return Err(WorkerError::invalid(
                "signal",
                format!("`signal` must be TERM, KILL, INT or HUP, got {other:?}"),
            ))
        }
    };
    if p.exit().is_none() {
        kill_tree(p, sig);
    }
    Ok(http::ok_json(&p.status()))
}

/// Largest client state a process keeps.
pub const MAX_CLIENT_STATE: usize = 64 * 1024;

/// `PUT /processes/{id}/state` (any JSON value): replaces the client's state.
async fn put_state(p: &Proc, req: Request<Incoming>) -> Result<Response<Body>, WorkerError> {
    let bytes = http::read_body(req, MAX_CLIENT_STATE, "the state").await?;
    let v: serde_json::Value = http::parse_json(&bytes)?;
    *lock(&p.client_state) = v;
    Ok(http::ok_json(&p.status()))
}

/// `DELETE /processes/{id}`: kills it and what it started, and forgets it.
fn delete(state: &State, p: &Proc) -> Result<Response<Body>, WorkerError> {
    // Its descendants may outlive it: kill them whether it runs or not.
    kill_tree(p, libc::SIGKILL);
    lock(&state.procs.table).remove(&p.id);
    Ok(http::ok_json(&p.status()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AttachQuery {
    from: Option<String>,
    /// `true`: what the client sends reaches stdin in whole lines only (a line cut off
    /// by a dropped connection never does), for line-framed protocols such as ACP's.
    lines: Option<String>,
}

/// `GET /processes/{id}/attach?from=N[&lines=true]` with `Upgrade: paddock-stdio`:
/// after `101`, the connection carries raw bytes both ways: what the client sends goes
/// to the process's stdin (with `lines=true`, in whole lines only), and its stdout from
/// offset `N` comes back, live, until the process has exited and its output is all sent
/// (then the worker closes its side). Closing the connection leaves the process running.
fn attach(p: Arc<Proc>, mut req: Request<Incoming>) -> Result<Response<Body>, WorkerError> {
    let q: AttachQuery = http::parse_query(req.uri().query())?;
    let from = http::parse_u64_param("from", q.from.as_deref())?.unwrap_or(0);
    let lines = http::parse_bool_param("lines", q.lines.as_deref())?;
    let asked = req
        .headers()
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(ATTACH_PROTOCOL));
    if !asked {
        return Err(WorkerError::invalid(
            "Upgrade",
            format!("attach needs `Connection: Upgrade` and `Upgrade: {ATTACH_PROTOCOL}`"),
        ));
    }
    let start = lock(&p.out).read(from, 0).0;
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(io) => relay_stdio(p, TokioIo::new(io), start, lines).await,
            Err(e) => tracing::debug!(error = %e, "attach upgrade failed"),
        }
    });
    let mut resp = Response::new(http::full(bytes::Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static(ATTACH_PROTOCOL));
    if let Ok(v) = HeaderValue::from_str(&start.to_string()) {
        h.insert("x-paddock-from", v);
    }
    Ok(resp)
}

async fn relay_stdio<S>(p: Arc<Proc>, io: S, mut offset: u64, lines: bool)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(io);
    let to_stdin = {
        let p = p.clone();
        async move {
            let mut chunk = vec![0u8; 64 * 1024];
            // In line mode, the bytes after the last newline wait for the rest of their line.
            let mut partial: Vec<u8> = Vec::new();
            loop {
                let n = match rd.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let ready: Vec<u8> = if lines {
                    partial.extend_from_slice(&chunk[..n]);
                    match partial.iter().rposition(|b| *b == b'\n') {
                        Some(i) => partial.drain(..=i).collect(),
                        None => continue,
                    }
                } else {
                    chunk[..n].to_vec()
                };
                let mut stdin = p.stdin.lock().await;
                let Some(pipe) = stdin.as_mut() else { return };
                if pipe.write_all(&ready).await.is_err() || pipe.flush().await.is_err() {
                    *stdin = None;
                    return;
                }
            }
        }
    };
    let from_stdout = async move {
        let mut rx = p.tick.subscribe();
        loop {
            let (chunk, done) = {
                let b = lock(&p.out);
                let (start, bytes) = b.read(offset, 64 * 1024);
                offset = start + bytes.len() as u64;
                (bytes.to_vec(), b.eof && offset == b.end())
            };
            if !chunk.is_empty() {
                if wr.write_all(&chunk).await.is_err() || wr.flush().await.is_err() {
                    return;
                }
                continue;
            }
            if done && p.exit().is_some() {
                let _ = wr.shutdown().await;
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    };
    // Either side ending ends the attachment (never the process).
    tokio::select! {
        _ = to_stdin => {}
        _ = from_stdout => {}
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RelayRequest {
    socket: String,
    #[serde(default)]
    port: u16,
}

#[derive(Serialize)]
struct Relay {
    socket: String,
    port: u16,
}

/// How long a relayed connection waits for its target to listen: an orchestrator
/// restarting is back within it, and the connection goes through instead of failing.
pub const RELAY_PATIENCE: Duration = Duration::from_secs(30);

/// Connects to `target`, retrying (with a growing pause) while nothing listens there,
/// for up to [`RELAY_PATIENCE`].
async fn connect_patiently(target: &std::path::Path) -> io::Result<tokio::net::UnixStream> {
    let deadline = tokio::time::Instant::now() + RELAY_PATIENCE;
    let mut pause = Duration::from_millis(20);
    loop {
        match tokio::net::UnixStream::connect(target).await {
            Ok(s) => return Ok(s),
            Err(e) if tokio::time::Instant::now() + pause > deadline => return Err(e),
            Err(_) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
        }
    }
}

/// `POST /relays {"socket": NAME, "port": P}`: listens on 127.0.0.1:P (0: any free
/// port) inside the sandbox and forwards every connection to the Unix socket NAME in
/// the worker's relay directory. Idempotent per NAME.
async fn relay(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, WorkerError> {
    let bytes = http::read_body(req, state.config.max_request_bytes, "the request body").await?;
    let body: RelayRequest = http::parse_json(&bytes)?;
    let name = body.socket;
    let valid = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !valid {
        return Err(WorkerError::invalid(
            "socket",
            "`socket` must be a file name of [A-Za-z0-9._-] in the worker's relay directory",
        ));
    }
    let Some(dir) = state.config.relay_dir.clone() else {
        return Err(WorkerError::NotFound(
            "this worker has no relay directory (it serves no Unix socket)".into(),
        ));
    };
    let mut relays = state.procs.relays.lock().await;
    if let Some(port) = relays.get(&name) {
        return Ok(http::ok_json(&Relay {
            socket: name,
            port: *port,
        }));
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", body.port))
        .await
        .map_err(|e| WorkerError::io(format!("listening on 127.0.0.1:{}", body.port), e))?;
    let port = listener
        .local_addr()
        .map_err(|e| WorkerError::io("reading the relay's address", e))?
        .port();
    let target: PathBuf = dir.join(&name);
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let target = target.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                match connect_patiently(&target).await {
                    Ok(mut unix) => {
                        let _ = tokio::io::copy_bidirectional(&mut tcp, &mut unix).await;
                    }
                    Err(e) => {
                        tracing::info!(socket = %target.display(), error = %e, "relay target unreachable")
                    }
                }
            });
        }
    });
    tracing::info!(socket = %name, port, "relay listening");
    relays.insert(name.clone(), port);
    Ok(http::json(
        StatusCode::CREATED,
        &Relay { socket: name, port },
    ))
}

/// Routes `/processes…` and `/relays`.
pub async fn route(
    state: Arc<State>,
    req: Request<Incoming>,
    path: &str,
) -> Result<Response<Body>, WorkerError> {
    let method = req.method().clone();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let not_allowed = |allow: &'static str| WorkerError::MethodNotAllowed {
        method: method.to_string(),
        path: path.to_string(),
        allow,
    };
    match parts.as_slice() {
        ["relays"] => match method {
            Method::POST => relay(state, req).await,
            _ => Err(not_allowed("POST")),
        },
        ["processes"] => match method {
            Method::POST => start(state, req).await,
            Method::GET => {
                let list: Vec<ProcStatus> = {
                    let table = lock(&state.procs.table);
                    let mut v: Vec<ProcStatus> = table.values().map(|p| p.status()).collect();
                    v.sort_by(|a, b| a.id.cmp(&b.id));
                    v
                };
                Ok(http::ok_json(&serde_json::json!({ "processes": list })))
            }
            _ => Err(not_allowed("GET, POST")),
        },
        ["processes", id] => {
            let p = state.procs.get(id)?;
            match method {
                Method::GET => Ok(http::ok_json(&p.status())),
                Method::DELETE => delete(&state, &p),
                _ => Err(not_allowed("GET, DELETE")),
            }
        }
        ["processes", id, action] => {
            let p = state.procs.get(id)?;
            match (*action, method.clone()) {
                ("output", Method::GET) => output(&p, &req),
                ("wait", Method::GET) => wait(p, &req).await,
                ("attach", Method::GET) => attach(p, req),
                ("signal", Method::POST) => signal(&state, &p, req).await,
                ("state", Method::PUT) => put_state(&p, req).await,
                ("output" | "wait" | "attach", _) => Err(not_allowed("GET")),
                ("signal", _) => Err(not_allowed("POST")),
                ("state", _) => Err(not_allowed("PUT")),
                _ => Err(WorkerError::NotFound(format!("no route for {path}"))),
            }
        }
        _ => Err(WorkerError::NotFound(format!("no route for {path}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_drop_the_oldest_bytes_and_keep_offsets() {
        let mut b = Buf::new(8);
        b.push(b"0123456789");
        assert_eq!((b.base, b.end()), (2, 10));
        assert_eq!(b.read(0, 100), (2, &b"23456789"[..]));
        assert_eq!(b.read(5, 2), (5, &b"56"[..]));
        assert_eq!(b.read(50, 2), (10, &b""[..]));
        b.push(b"ab");
        assert_eq!(b.read(9, 100), (9, &b"9ab"[..]));
    }
}
