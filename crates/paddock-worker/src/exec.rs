//! `POST /exec`, `GET /exec/{id}` and `POST /cancel`: processes in their own
//! process groups, output streamed as NDJSON; timeouts and cancellation kill the
//! whole group (SIGTERM, then SIGKILL after a grace period). An exec belongs to the
//! runner, not to the connection that started it: its records are kept in a journal
//! (journal.rs), the connection only reads them, and another one can read them again
//! from any position (`GET /exec/{id}?from=N`). A dropped connection ends the exec
//! only when the request asked for that (`kill_on_disconnect`).
//!
//! Reaping: the exec's leader is waited for with `waitid(WNOWAIT)` on a small
//! dedicated thread, so that it stays a zombie (its pid, which is also the
//! process-group id, cannot be reused) until the worker has sent the final
//! SIGKILL to the group; only then is it reaped.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, Response};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch, Notify};

use crate::error::WorkerError;
use crate::http::{self, Body, ChannelBody};
use crate::journal::Journal;
use crate::{files, State, TOKEN_ENV};

/// Bytes read from a pipe at once (and so the largest `data` of a record).
pub const CHUNK_BYTES: usize = 64 * 1024;
/// Longest accepted exec id.
pub const MAX_ID_LEN: usize = 128;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    pub command: Option<String>,
    pub argv: Option<Vec<String>>,
    pub cwd: Option<String>,
    pub env: Option<BTreeMap<String, String>>,
    pub stdin: Option<String>,
    pub stdin_b64: Option<String>,
    pub timeout_ms: Option<u64>,
    pub id: Option<String>,
    /// End the exec when the connection that started it drops (default false).
    pub kill_on_disconnect: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    pub id: Option<String>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Record<'a> {
    Started {
        id: &'a str,
        pid: i32,
    },
    Stdout {
        data: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        data_b64: Option<String>,
    },
    Stderr {
        data: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        data_b64: Option<String>,
    },
    Exit {
        id: &'a str,
        code: Option<i32>,
        signal: Option<i32>,
        duration_ms: u64,
        timed_out: bool,
        cancelled: bool,
        /// Output bytes past the journal's limit, not kept.
        #[serde(skip_serializing_if = "is_zero")]
        output_dropped_bytes: u64,
    },
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn line(record: &Record<'_>) -> Bytes {
    let mut v = serde_json::to_vec(record).unwrap_or_else(|_| b"{}".to_vec());
    v.push(b'\n');
    Bytes::from(v)
}

struct RunningExec {
    pid: i32,
    started: Instant,
    cancel: Arc<Notify>,
}

/// A running exec as reported by `GET /status`.
#[derive(Debug, Clone, Serialize)]
pub struct RunningInfo {
    pub id: String,
    pub pid: i32,
    pub running_ms: u64,
}

#[derive(Default)]
struct Table {
    running: HashMap<String, RunningExec>,
    /// The records of running execs and of finished ones still retained.
    journals: HashMap<String, Arc<Journal>>,
    /// Pids of exec leaders not yet reaped by their driver; the orphan reaper
    /// must leave them alone.
    leaders: HashSet<i32>,
    /// Ids of the last [`MAX_FORGOTTEN`] execs whose records were pruned, oldest
    /// first: `GET /exec/{id}` tells them (ran, outcome no longer known) from ids
    /// never started here.
    forgotten: VecDeque<String>,
    forgotten_set: HashSet<String>,
}

impl Table {
    fn forget(&mut self, id: &str) {
        if self.journals.remove(id).is_none() || !self.forgotten_set.insert(id.to_string()) {
            return;
        }
        self.forgotten.push_back(id.to_string());
        if self.forgotten.len() > MAX_FORGOTTEN {
            if let Some(old) = self.forgotten.pop_front() {
                self.forgotten_set.remove(&old);
            }
        }
    }
}

/// The registry of running execs.
#[derive(Default)]
pub struct Execs {
    table: Mutex<Table>,
    started_total: AtomicU64,
    counter: AtomicU64,
    /// Exec response streams not yet fully handed to the connection.
    open_streams: std::sync::Arc<AtomicU64>,
}

/// Counts an open exec response stream until dropped.
pub struct StreamGuard(std::sync::Arc<AtomicU64>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Execs {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn running(&self) -> Vec<RunningInfo> {
        let mut out: Vec<RunningInfo> = self
            .lock()
            .running
            .iter()
            .map(|(id, e)| RunningInfo {
                id: id.clone(),
                pid: e.pid,
                running_ms: e.started.elapsed().as_millis() as u64,
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    pub fn is_idle(&self) -> bool {
        self.lock().running.is_empty()
    }

    /// No exec runs and every exec's stream (its exit record included) has been
    /// handed to its connection.
    pub fn is_drained(&self) -> bool {
        self.is_idle() && self.open_streams.load(Ordering::Acquire) == 0
    }

    pub(crate) fn stream_guard(&self) -> StreamGuard {
        self.open_streams.fetch_add(1, Ordering::AcqRel);
        StreamGuard(self.open_streams.clone())
    }

    pub fn started_total(&self) -> u64 {
        self.started_total.load(Ordering::Relaxed)
    }

    /// Signals cancellation to exec `id`, or to every running exec when
    /// `None`. Returns the ids signalled.
    pub fn cancel(&self, id: Option<&str>) -> Vec<String> {
        let table = self.lock();
        let mut ids = Vec::new();
        for (exec_id, exec) in table.running.iter() {
            if id.is_none_or(|id| id == exec_id) {
                exec.cancel.notify_one();
                ids.push(exec_id.clone());
            }
        }
        ids.sort();
        ids
    }

    fn next_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("exec_{:x}_{n}", crate::logs::now_ms())
    }

    /// Spawns a process leader the orphan reaper must leave alone (a long-lived
    /// process of `/processes`); [`Execs::forget_leader`] once it is reaped.
    pub(crate) fn spawn_leader(&self, command: &mut Command) -> io::Result<std::process::Child> {
        let mut table = self.lock();
        let child = command.spawn()?;
        table.leaders.insert(child.id() as i32);
        Ok(child)
    }

    pub(crate) fn forget_leader(&self, pid: i32) {
        self.lock().leaders.remove(&pid);
    }

    /// The journal of a running or retained exec; `Err(true)` for one whose records
    /// were pruned, `Err(false)` for an id never started here.
    fn journal(&self, id: &str) -> Result<Arc<Journal>, bool> {
        let table = self.lock();
        match table.journals.get(id) {
            Some(j) => Ok(j.clone()),
            None => Err(table.forgotten_set.contains(id)),
        }
    }

    /// Forgets finished execs past `retention`, and the oldest beyond `keep`.
    fn prune(table: &mut Table, retention: Duration, keep: usize) {
        let mut done: Vec<(Instant, String)> = table
            .journals
            .iter()
            .filter_map(|(id, j)| j.ended_at().map(|t| (t, id.clone())))
            .collect();
        done.sort();
        let over = done.len().saturating_sub(keep);
        for (i, (at, id)) in done.iter().enumerate() {
            if i < over || at.elapsed() >= retention {
                table.forget(id);
            }
        }
    }

    fn finish(&self, id: &str, pid: i32) {
        let mut table = self.lock();
        table.running.remove(id);
        table.leaders.remove(&pid);
    }

    /// Reaps zombie children of the worker that are not exec leaders
    /// (orphans re-parented to the worker when it is PID 1 or a subreaper).
    pub fn reap_orphans(&self) {
        let table = self.lock();
        // Cheap check first: has any child exited at all? (WNOWAIT: looking
        // reaps nothing.) Only then scan /proc for the non-leaders.
        // SAFETY: a zeroed siginfo_t is a valid out-parameter for waitid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let r = unsafe {
            libc::waitid(
                libc::P_ALL,
                0,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // SAFETY: si_pid is set by waitid for child events; 0 when none.
        if r != 0 || unsafe { info.si_pid() } == 0 {
            return;
        }
        let me = std::process::id() as i32;
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return;
        };
        for ent in dir.flatten() {
            let Some(pid) = ent.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if table.leaders.contains(&pid) {
                continue;
            }
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                continue;
            };
            let mut fields = rest.split_whitespace();
            let state = fields.next();
            let ppid = fields.next().and_then(|p| p.parse::<i32>().ok());
            if state == Some("Z") && ppid == Some(me) {
                let mut status = 0;
                // SAFETY: plain libc call on a pid we own as parent.
                let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
                if r == pid {
                    tracing::debug!(pid, "reaped orphan");
                }
            }
        }
    }
}

/// Sends `sig` to process group `pgid`. Never signals pgid 0 or 1 (which
/// would mean "our own group" / "every process").
pub(crate) fn kill_group(pgid: i32, sig: i32) {
    if pgid > 1 {
        // SAFETY: plain libc call; the guard above prevents broadcast kills.
        unsafe {
            libc::kill(-pgid, sig);
        }
    }
}

/// Waits, at most [`SETTLE_LIMIT`], until no process is left in group `pgid` (after
/// its final SIGKILL), reaping the orphaned zombies this worker inherits. One
/// `kill(-pgid, 0)` when nothing is left, as after most commands.
async fn settle_group(execs: &Execs, pgid: i32) {
    if pgid <= 1 {
        return;
    }
    let until = Instant::now() + SETTLE_LIMIT;
    loop {
        // SAFETY: signal 0 only checks whether the group has any process.
        if unsafe { libc::kill(-pgid, 0) } != 0 {
            return;
        }
        if Instant::now() >= until {
            tracing::warn!(pgid, "processes of a finished exec outlived its SIGKILL");
            return;
        }
        execs.reap_orphans();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The longest an exec's exit record waits for its killed processes to be gone.
const SETTLE_LIMIT: Duration = Duration::from_secs(2);

/// Blocks until `pid` has exited, without reaping it.
pub(crate) fn wait_exited_nowait(pid: i32) {
    loop {
        // SAFETY: zeroed siginfo_t is a valid out-parameter for waitid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if r == 0 {
            return;
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return; // ECHILD: already reaped (cannot happen) — nothing to wait for
        }
    }
}

/// What `waitpid(WNOHANG)` said about a child.
enum Reaped {
    Status(Option<i32>, Option<i32>),
    StillRunning,
    Gone,
}

/// Reaps `pid` if it has exited and decodes its status.
fn try_reap(pid: i32) -> Reaped {
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: plain libc call on our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            break;
        }
        if r == 0 {
            return Reaped::StillRunning;
        }
        if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        return Reaped::Gone;
    }
    let (code, signal) = decode_status(status);
    Reaped::Status(code, signal)
}

/// Reaps `pid`, which has exited or has been sent SIGKILL.
pub(crate) async fn reap(pid: i32) -> (Option<i32>, Option<i32>) {
    loop {
        match try_reap(pid) {
            Reaped::Status(code, signal) => return (code, signal),
            Reaped::Gone => return (None, None),
            Reaped::StillRunning => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

fn decode_status(status: libc::c_int) -> (Option<i32>, Option<i32>) {
    if libc::WIFEXITED(status) {
        (Some(libc::WEXITSTATUS(status)), None)
    } else if libc::WIFSIGNALED(status) {
        (None, Some(libc::WTERMSIG(status)))
    } else {
        (None, None)
    }
}

pub(crate) fn validate_id(id: &str) -> Result<(), WorkerError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if ok {
        Ok(())
    } else {
        Err(WorkerError::invalid(
            "id",
            format!("`id` must be 1-{MAX_ID_LEN} characters of [A-Za-z0-9._:-]"),
        ))
    }
}

fn no_nul(field: &str, value: &str) -> Result<(), WorkerError> {
    if value.as_bytes().contains(&0) {
        Err(WorkerError::invalid(
            field,
            format!("`{field}` must not contain NUL bytes"),
        ))
    } else {
        Ok(())
    }
}

pub(crate) struct Prepared {
    pub(crate) command: Command,
    pub(crate) id: String,
    pub(crate) stdin: Option<Vec<u8>>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) shown: String,
}

pub(crate) fn prepare(state: &State, req: ExecRequest) -> Result<Prepared, WorkerError> {
    let (program, args, shown) = match (req.command, req.argv) {
        (Some(_), Some(_)) => {
            return Err(WorkerError::invalid(
                "command",
                "give exactly one of `command` and `argv`, not both",
            ))
        }
        (None, None) => {
            return Err(WorkerError::invalid(
                "command",
                "one of `command` (a shell command line) or `argv` (a program and its arguments) is required",
            ))
        }
        (Some(command), None) => {
            no_nul("command", &command)?;
            let shown = command.clone();
            ("/bin/sh".to_string(), vec!["-c".to_string(), command], shown)
        }
        (None, Some(argv)) => {
            let mut it = argv.into_iter();
            let Some(program) = it.next() else {
                return Err(WorkerError::invalid("argv", "`argv` must not be empty"));
            };
            if program.is_empty() {
                return Err(WorkerError::invalid("argv", "`argv[0]` must not be empty"));
            }
            let args: Vec<String> = it.collect();
            no_nul("argv", &program)?;
            for a in &args {
                no_nul("argv", a)?;
            }
            let shown = std::iter::once(program.as_str())
                .chain(args.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(" ");
            (program, args, shown)
        }
    };
    let id = match req.id {
        Some(id) => {
            validate_id(&id)?;
            id
        }
        None => state.execs.next_id(),
    };
    let stdin = match (req.stdin, req.stdin_b64) {
        (Some(_), Some(_)) => {
            return Err(WorkerError::invalid(
                "stdin",
                "give at most one of `stdin` and `stdin_b64`",
            ))
        }
        (Some(s), None) => Some(s.into_bytes()),
        (None, Some(b)) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(b.as_bytes())
                .map_err(|e| {
                    WorkerError::invalid(
                        "stdin_b64",
                        format!("`stdin_b64` is not valid base64: {e}"),
                    )
                })?,
        ),
        (None, None) => None,
    };
    let timeout = match req.timeout_ms {
        Some(0) => {
            return Err(WorkerError::invalid(
                "timeout_ms",
                "`timeout_ms` must be at least 1",
            ))
        }
        Some(ms) => Some(Duration::from_millis(ms)),
        None => None,
    };
    let cwd = match req.cwd.as_deref() {
        None | Some("") => state.root.clone(),
        Some(cwd) => {
            let r = files::resolve(&state.root, cwd, true, "cwd")?;
            match &r.meta {
                None => {
                    return Err(WorkerError::NotFound(format!(
                        "cwd `{}`: no such directory",
                        r.rel
                    )))
                }
                Some(m) if !m.is_dir() => {
                    return Err(WorkerError::NotADirectory(format!(
                        "cwd `{}` is not a directory",
                        r.rel
                    )))
                }
                Some(_) => r.real,
            }
        }
    };
    let mut command = Command::new(&program);
    command
        .args(&args)
        .current_dir(&cwd)
        .process_group(0)
        // Always a pipe, closed at once when there is no stdin: this works
        // without /dev/null in minimal images.
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove(TOKEN_ENV);
    if let Some(env) = req.env {
        for (k, v) in env {
            if k.is_empty() || k.contains('=') || k.as_bytes().contains(&0) {
                return Err(WorkerError::invalid(
                    format!("env.{k}"),
                    "environment variable names must be non-empty and contain no `=` or NUL",
                ));
            }
            no_nul(&format!("env.{k}"), &v)?;
            command.env(k, v);
        }
    }
    Ok(Prepared {
        command,
        id,
        stdin,
        timeout,
        shown,
    })
}

/// `POST /exec`
pub async fn exec(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Body>, WorkerError> {
    let bytes = http::read_body(req, state.config.max_request_bytes, "the request body").await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(WorkerError::InvalidRequest {
            field: None,
            message: "the request body must be a JSON object".into(),
        });
    }
    let body: ExecRequest = http::parse_json(&bytes)?;
    let kill_on_disconnect = body.kill_on_disconnect.unwrap_or(false);
    let Prepared {
        mut command,
        id,
        stdin,
        timeout,
        shown,
    } = prepare(&state, body)?;

    let cancel = Arc::new(Notify::new());
    let gone = Arc::new(Notify::new());
    let journal = Arc::new(Journal::new(
        &id,
        state.config.journal_memory_bytes,
        state.config.journal_max_bytes,
        state.config.spill_dir.clone(),
    ));
    // The leader's exit is observed on a dedicated thread (see module docs), started
    // before the leader: a workload that fills its pids limit at once cannot keep the
    // worker from watching it (the thread would count against the same limit).
    let (pid_tx, pid_rx) = std::sync::mpsc::channel::<i32>();
    let (exit_tx, exit_rx) = oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("exec-wait".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            // No pid: the spawn failed (the sender is gone).
            if let Ok(pid) = pid_rx.recv() {
                wait_exited_nowait(pid);
                let _ = exit_tx.send(());
            }
        })
        .map_err(|e| WorkerError::Internal(format!("could not start a waiter thread: {e}")))?;
    // Spawn and register under the table lock, so the orphan reaper never
    // sees this leader unregistered.
    let mut child = {
        let mut table = state.execs.lock();
        if table.running.contains_key(&id) {
            return Err(WorkerError::Conflict(format!(
                "an exec with id `{id}` is already running"
            )));
        }
        Execs::prune(&mut table, state.config.exec_retention, MAX_RETAINED);
        let child = command
            .spawn()
            .map_err(|e| WorkerError::SpawnFailed(format!("{shown:?}: {e}")))?;
        let pid = child.id() as i32;
        table.leaders.insert(pid);
        table.running.insert(
            id.clone(),
            RunningExec {
                pid,
                started: Instant::now(),
                cancel: cancel.clone(),
            },
        );
        table.journals.insert(id.clone(), journal.clone());
        child
    };
    let pid = child.id() as i32;
    state.execs.started_total.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();

    if pid_tx.send(pid).is_err() {
        kill_group(pid, libc::SIGKILL);
        let _ = reap(pid).await;
        state.execs.finish(&id, pid);
        return Err(WorkerError::Internal(
            "the exec's waiter thread is gone".into(),
        ));
    }

    tracing::info!(id = %id, pid, command = %shown, timeout_ms = timeout.map(|t| t.as_millis() as u64), "exec started");

    // `started` is recorded before any output can be.
    journal.push(line(&Record::Started { id: &id, pid }), false);

    let (deadline_tx, deadline_rx) = watch::channel::<Option<tokio::time::Instant>>(None);
    let mut pumps = Vec::new();
    if let Some(out) = child.stdout.take() {
        match tokio::process::ChildStdout::from_std(out) {
            Ok(out) => pumps.push(tokio::spawn(pump(
                out,
                Stream::Stdout,
                journal.clone(),
                state.clone(),
                deadline_rx.clone(),
            ))),
            Err(e) => tracing::warn!(id = %id, error = %e, "cannot read stdout"),
        }
    }
    if let Some(err) = child.stderr.take() {
        match tokio::process::ChildStderr::from_std(err) {
            Ok(err) => pumps.push(tokio::spawn(pump(
                err,
                Stream::Stderr,
                journal.clone(),
                state.clone(),
                deadline_rx.clone(),
            ))),
            Err(e) => tracing::warn!(id = %id, error = %e, "cannot read stderr"),
        }
    }
    // Without stdin data the pipe is dropped below: the process reads EOF.
    let stdin_task = match (stdin, child.stdin.take()) {
        (Some(data), Some(pipe)) => match tokio::process::ChildStdin::from_std(pipe) {
            Ok(mut pipe) => Some(tokio::spawn(async move {
                let _ = pipe.write_all(&data).await;
                let _ = pipe.shutdown().await;
            })),
            Err(e) => {
                tracing::warn!(id = %id, error = %e, "cannot write stdin");
                None
            }
        },
        _ => None,
    };
    drop(child); // std::process::Child does not kill or reap on drop.

    let driver = Driver {
        state: state.clone(),
        id: id.clone(),
        pid,
        started,
        timeout,
        cancel,
        gone: gone.clone(),
        exit_rx,
        deadline_tx,
        pumps,
        stdin_task,
        journal: journal.clone(),
    };
    tokio::spawn(driver.run());
    Ok(stream_records(
        &state,
        journal,
        0,
        kill_on_disconnect.then_some(gone),
    ))
}

/// Most finished execs whose records are retained.
pub const MAX_RETAINED: usize = 256;
/// Records read from a journal at once by a stream.
const READ_BATCH: usize = 64;
/// Most ids of pruned execs remembered as such.
pub const MAX_FORGOTTEN: usize = 4096;

/// A response streaming `journal`'s records from index `from` as they come, ending
/// after the `exit` record. `on_gone`: told when the client leaves before the end.
fn stream_records(
    state: &Arc<State>,
    journal: Arc<Journal>,
    from: usize,
    on_gone: Option<Arc<Notify>>,
) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Result<Bytes, io::Error>>(16);
    let id = journal.id.clone();
    tokio::spawn(async move {
        let mut tick = journal.subscribe();
        let mut at = from;
        loop {
            let (records, last) = journal.read(at, READ_BATCH);
            // A full batch: more may be in already, with no tick to come (a finished
            // exec read again from the start).
            let more = records.len() == READ_BATCH;
            at += records.len();
            for r in records {
                if tx.send(Ok(r)).await.is_err() {
                    if let Some(g) = &on_gone {
                        g.notify_one();
                    }
                    return;
                }
            }
            if last {
                return;
            }
            if more {
                continue;
            }
            tokio::select! {
                changed = tick.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                _ = tx.closed() => {
                    if let Some(g) = &on_gone {
                        g.notify_one();
                    }
                    return;
                }
            }
        }
    });
    let mut resp = http::ndjson(ChannelBody::guarded(rx, state.execs.stream_guard()));
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-paddock-exec-id", v);
    }
    resp
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AttachQuery {
    from: Option<String>,
}

/// `GET /exec/{id}?from=N`: the records of a running or retained exec from record `N`
/// (default 0), live until its `exit` record.
pub async fn attach(
    state: Arc<State>,
    req: Request<Incoming>,
    id: &str,
) -> Result<Response<Body>, WorkerError> {
    validate_id(id)?;
    let q: AttachQuery = http::parse_query(req.uri().query())?;
    let from = http::parse_u64_param("from", q.from.as_deref())?.unwrap_or(0) as usize;
    let journal = state.execs.journal(id).map_err(|pruned| {
        if pruned {
            WorkerError::Expired(format!(
                "exec `{id}` finished longer ago than its retention: its records are gone"
            ))
        } else {
            WorkerError::NotFound(format!("no exec with id `{id}` was started here"))
        }
    })?;
    Ok(stream_records(&state, journal, from, None))
}

#[derive(Clone, Copy, Debug)]
enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Length of the longest prefix of `buf` that does not end inside a UTF-8
/// sequence which could still be completed by more bytes.
fn utf8_cut(buf: &[u8]) -> usize {
    match std::str::from_utf8(buf) {
        Ok(_) => buf.len(),
        Err(e) if e.error_len().is_none() => e.valid_up_to(),
        Err(_) => buf.len(),
    }
}

fn output_record(stream: Stream, bytes: &[u8]) -> Bytes {
    let (data, data_b64) = match std::str::from_utf8(bytes) {
        Ok(s) => (std::borrow::Cow::Borrowed(s), None),
        Err(_) => (
            String::from_utf8_lossy(bytes),
            Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
        ),
    };
    let record = match stream {
        Stream::Stdout => Record::Stdout {
            data: &data,
            data_b64,
        },
        Stream::Stderr => Record::Stderr {
            data: &data,
            data_b64,
        },
    };
    line(&record)
}

/// Copies one pipe to the response as records (and to the output ring).
/// Reads until EOF; once the leader has exited (`deadline` set), stops at the
/// deadline if the pipe is still open (a process that left the group holds it).
async fn pump<R: AsyncRead + Unpin>(
    mut pipe: R,
    stream: Stream,
    journal: Arc<Journal>,
    state: Arc<State>,
    mut deadline: watch::Receiver<Option<tokio::time::Instant>>,
) {
    let id = journal.id.clone();
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let current = *deadline.borrow_and_update();
        let read = match current {
            Some(at) => match tokio::time::timeout_at(at, pipe.read(&mut buf)).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::debug!(id = %id, stream = stream.name(), "pipe still open after the drain deadline");
                    break;
                }
            },
            None => {
                tokio::select! {
                    r = pipe.read(&mut buf) => r,
                    changed = deadline.changed() => {
                        if changed.is_err() {
                            break; // the driver is gone: nobody to report to
                        }
                        continue;
                    }
                }
            }
        };
        let n = match read {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(id = %id, stream = stream.name(), error = %e, "pipe read failed");
                break;
            }
        };
        pending.extend_from_slice(&buf[..n]);
        let cut = utf8_cut(&pending);
        if cut == 0 {
            continue;
        }
        let chunk: Vec<u8> = pending.drain(..cut).collect();
        state.output.push(&id, stream.name(), &chunk);
        journal.push(output_record(stream, &chunk), true);
    }
    if !pending.is_empty() {
        state.output.push(&id, stream.name(), &pending);
        journal.push(output_record(stream, &pending), true);
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Stop {
    Timeout,
    Cancel,
    Disconnect,
}

struct Driver {
    state: Arc<State>,
    id: String,
    pid: i32,
    started: Instant,
    timeout: Option<Duration>,
    cancel: Arc<Notify>,
    /// The starting connection left, and it asked to be killed then.
    gone: Arc<Notify>,
    exit_rx: oneshot::Receiver<()>,
    deadline_tx: watch::Sender<Option<tokio::time::Instant>>,
    pumps: Vec<tokio::task::JoinHandle<()>>,
    stdin_task: Option<tokio::task::JoinHandle<()>>,
    journal: Arc<Journal>,
}

impl Driver {
    async fn run(mut self) {
        let pid = self.pid;
        let deadline = self
            .timeout
            .and_then(|t| tokio::time::Instant::from_std(self.started).checked_add(t));
        let stop = tokio::select! {
            _ = &mut self.exit_rx => None,
            _ = sleep_until_opt(deadline) => Some(Stop::Timeout),
            _ = self.cancel.notified() => Some(Stop::Cancel),
            _ = self.gone.notified() => Some(Stop::Disconnect),
        };
        if let Some(stop) = stop {
            tracing::info!(id = %self.id, pid, reason = ?stop, "stopping exec: SIGTERM to its process group");
            kill_group(pid, libc::SIGTERM);
            let grace = self.state.config.kill_grace;
            if tokio::time::timeout(grace, &mut self.exit_rx)
                .await
                .is_err()
            {
                tracing::info!(id = %self.id, pid, "grace period over: SIGKILL to its process group");
                kill_group(pid, libc::SIGKILL);
                let _ = (&mut self.exit_rx).await;
            }
        }
        let duration = self.started.elapsed();
        // The leader is a zombie: its pgid cannot have been reused. Kill what
        // is left of the group, then reap.
        kill_group(pid, libc::SIGKILL);
        let (code, signal) = reap(pid).await;
        self.state.execs.finish(&self.id, pid);
        if self.state.config.reap_orphans {
            // The exit record means the command's processes are gone: wait for what
            // the SIGKILL is still tearing down and reap its zombies first.
            settle_group(&self.state.execs, pid).await;
        }
        if let Some(task) = self.stdin_task.take() {
            task.abort();
        }
        let _ = self.deadline_tx.send(Some(
            tokio::time::Instant::now() + self.state.config.drain_timeout,
        ));
        for pump in self.pumps.drain(..) {
            let _ = pump.await;
        }
        let timed_out = stop == Some(Stop::Timeout);
        let cancelled = stop == Some(Stop::Cancel);
        let record = Record::Exit {
            id: &self.id,
            code,
            signal,
            duration_ms: duration.as_millis() as u64,
            timed_out,
            cancelled,
            output_dropped_bytes: self.journal.dropped_bytes(),
        };
        self.journal.push(line(&record), false);
        self.journal.finish();
        tracing::info!(
            id = %self.id,
            pid,
            code,
            signal,
            duration_ms = duration.as_millis() as u64,
            timed_out,
            cancelled,
            client_disconnected = stop == Some(Stop::Disconnect),
            "exec finished"
        );
        if self.state.config.reap_orphans {
            self.state.execs.reap_orphans();
        }
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[derive(Serialize)]
struct CancelResponse {
    cancelled: Vec<String>,
}

/// `POST /cancel`
pub async fn cancel(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Body>, WorkerError> {
    let bytes = http::read_body(req, 64 * 1024, "the request body").await?;
    let body: CancelRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        CancelRequest::default()
    } else {
        http::parse_json(&bytes)?
    };
    if let Some(id) = &body.id {
        validate_id(id)?;
    }
    let cancelled = state.execs.cancel(body.id.as_deref());
    if let (Some(id), true) = (&body.id, cancelled.is_empty()) {
        return Err(WorkerError::NotFound(format!(
            "no running exec with id `{id}`"
        )));
    }
    tracing::info!(ids = ?cancelled, "cancel requested");
    Ok(http::ok_json(&CancelResponse { cancelled }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_cut_holds_back_incomplete_sequences() {
        assert_eq!(utf8_cut(b"abc"), 3);
        let e_acute = "é".as_bytes(); // 2 bytes
        assert_eq!(utf8_cut(&[b'a', e_acute[0]]), 1);
        assert_eq!(utf8_cut(&[b'a', 0xff, b'b']), 3);
    }

    #[test]
    fn binary_output_gets_base64() {
        let rec = output_record(Stream::Stdout, &[0xff, 0xfe]);
        let v: serde_json::Value = serde_json::from_slice(&rec).unwrap();
        assert_eq!(v["type"], "stdout");
        assert_eq!(v["data_b64"], "//4=");
        let rec = output_record(Stream::Stderr, b"hi");
        let v: serde_json::Value = serde_json::from_slice(&rec).unwrap();
        assert_eq!(v, serde_json::json!({"type": "stderr", "data": "hi"}));
    }

    #[test]
    fn ids_are_validated() {
        assert!(validate_id("job-1.a:b_c").is_ok());
        assert!(validate_id("").is_err());
        assert!(validate_id("a b").is_err());
        assert!(validate_id(&"x".repeat(129)).is_err());
    }
}
