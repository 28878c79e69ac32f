//! Paddock's in-sandbox worker, as a library.
//!
//! The worker is the process inside every sandbox. It runs commands (output
//! streamed as NDJSON, exit code, timeout, cancellation), reads and writes
//! files confined to a workspace directory, and reports resource usage, over
//! HTTP/1.1 on a Unix socket (default) or TCP (bearer token required). It
//! keeps no state the orchestrator cannot rebuild. The wire contract is
//! `docs/worker-protocol.md`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), paddock_worker::WorkerError> {
//! use paddock_worker::{Listener, Worker, WorkerConfig};
//! let worker = Worker::new(WorkerConfig::new("/workspace"))?;
//! let listener = tokio::net::UnixListener::bind("/run/paddock/worker.sock")
//!     .map_err(|e| paddock_worker::WorkerError::Config(e.to_string()))?;
//! worker
//!     .serve(vec![Listener::Unix(listener)], async {
//!         let _ = tokio::signal::ctrl_c().await;
//!     })
//!     .await
//! # }
//! ```

pub mod cli;
pub mod confine;
mod error;
mod exec;
mod files;
mod http;
mod journal;
mod logs;
mod procs;
mod status;

use std::convert::Infallible;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};

pub use error::WorkerError;
pub use logs::{LogLine, LogRing, LogRingWriter, OutputRecord};

use http::Body;

/// The worker's version (the crate version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Version of the wire protocol described in `docs/worker-protocol.md`.
pub const PROTOCOL_VERSION: u32 = 1;
/// Environment variable the binary reads the bearer token from; it is never
/// passed on to executed commands.
pub const TOKEN_ENV: &str = "PADDOCK_WORKER_TOKEN";

/// Default and maximum `tail` of `GET /logs`.
pub const DEFAULT_LOG_TAIL: usize = 200;
pub const MAX_LOG_TAIL: usize = 10_000;

/// How the worker behaves. Build with [`WorkerConfig::new`] and adjust.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// The directory every file route and exec `cwd` is confined to.
    pub workspace: PathBuf,
    /// Bearer token. Required for TCP listeners; when set, required on
    /// every route except `GET /healthz`, on every listener.
    pub token: Option<String>,
    /// Time between SIGTERM and SIGKILL when an exec is stopped.
    pub kill_grace: Duration,
    /// After an exec's leader exits, how long its output pipes may stay open
    /// (held by processes that left its process group) before the worker
    /// stops reading them.
    pub drain_timeout: Duration,
    /// Largest JSON request body (`/exec`, `/cancel`).
    pub max_request_bytes: usize,
    /// Largest body of `PUT /files/write`.
    pub max_write_bytes: u64,
    /// Bytes of recent exec output kept for `GET /logs`.
    pub output_ring_bytes: usize,
    /// An exec's records kept in memory; past it they move to a file in `spill_dir`.
    pub journal_memory_bytes: usize,
    /// Most bytes of records one exec keeps (output past it is dropped and counted).
    pub journal_max_bytes: u64,
    /// Where records past `journal_memory_bytes` go (`None`: they stay in memory).
    pub spill_dir: Option<PathBuf>,
    /// How long a finished exec's records stay readable (`GET /exec/{id}`).
    pub exec_retention: Duration,
    /// Where the worker's own log lines are kept for `GET /logs` (install
    /// `LogRing::writer` as the tracing writer to fill it). `None`: a ring
    /// nobody writes to.
    pub log_ring: Option<Arc<LogRing>>,
    /// Become a child subreaper and reap orphaned zombies (set this for the
    /// real binary; PID 1 in a container must reap).
    pub reap_orphans: bool,
    /// Where the Unix sockets that `POST /relays` forwards to live (the directory of
    /// the worker's own socket). `None`: no relays.
    pub relay_dir: Option<PathBuf>,
}

impl WorkerConfig {
    pub fn new(workspace: impl Into<PathBuf>) -> Self {
        WorkerConfig {
            workspace: workspace.into(),
            token: None,
            kill_grace: Duration::from_secs(2),
            drain_timeout: Duration::from_secs(2),
            max_request_bytes: 16 * 1024 * 1024,
            max_write_bytes: 1024 * 1024 * 1024,
            output_ring_bytes: 1024 * 1024,
            journal_memory_bytes: 4 * 1024 * 1024,
            journal_max_bytes: 256 * 1024 * 1024,
            spill_dir: Some(std::env::temp_dir().join("paddock-exec")),
            exec_retention: Duration::from_secs(600),
            log_ring: None,
            reap_orphans: false,
            relay_dir: None,
        }
    }
}

/// Shared state of one worker.
pub(crate) struct State {
    pub(crate) config: WorkerConfig,
    /// Canonical workspace root.
    pub(crate) root: PathBuf,
    pub(crate) started: Instant,
    pub(crate) execs: exec::Execs,
    pub(crate) procs: procs::Procs,
    pub(crate) output: logs::OutputRing,
    pub(crate) log_ring: Arc<LogRing>,
}

/// A socket the worker serves on.
pub enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// The worker: cheap to clone, every clone shares the same state.
#[derive(Clone)]
pub struct Worker {
    state: Arc<State>,
}

impl Worker {
    /// Validates the configuration (the workspace must be an existing
    /// directory; it is canonicalized).
    pub fn new(config: WorkerConfig) -> Result<Self, WorkerError> {
        let root = std::fs::canonicalize(&config.workspace)
            .map_err(|e| WorkerError::Config(format!("workspace {:?}: {e}", config.workspace)))?;
        if !root.is_dir() {
            return Err(WorkerError::Config(format!(
                "workspace {:?} is not a directory",
                config.workspace
            )));
        }
        if let Some(token) = &config.token {
            if token.is_empty() {
                return Err(WorkerError::Config("the token must not be empty".into()));
            }
        }
        let log_ring = config
            .log_ring
            .clone()
            .unwrap_or_else(|| LogRing::new(1000));
        let output = logs::OutputRing::new(config.output_ring_bytes);
        Ok(Worker {
            state: Arc::new(State {
                root,
                started: Instant::now(),
                execs: exec::Execs::default(),
                procs: procs::Procs::default(),
                output,
                log_ring,
                config,
            }),
        })
    }

    /// The canonical workspace root.
    pub fn workspace(&self) -> &Path {
        &self.state.root
    }

    /// Serves every listener until `shutdown` completes, then stops
    /// accepting, stops every running exec (as `POST /cancel` would) and
    /// waits for them to finish (bounded by the grace and drain timeouts).
    pub async fn serve(
        &self,
        listeners: Vec<Listener>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), WorkerError> {
        if self.state.config.token.is_none()
            && listeners.iter().any(|l| matches!(l, Listener::Tcp(_)))
        {
            return Err(WorkerError::Config(
                "a TCP listener requires a bearer token".into(),
            ));
        }
        if self.state.config.reap_orphans {
            set_subreaper();
        }
        let mut tasks = tokio::task::JoinSet::new();
        for listener in listeners {
            let state = self.state.clone();
            tasks.spawn(accept_loop(state, listener));
        }
        if self.state.config.reap_orphans || std::process::id() == 1 {
            let state = self.state.clone();
            tasks.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(2));
                loop {
                    tick.tick().await;
                    let st = state.clone();
                    let _ = tokio::task::spawn_blocking(move || st.execs.reap_orphans()).await;
                }
            });
        }
        shutdown.await;
        tracing::info!("shutting down");
        tasks.abort_all();
        self.shutdown().await;
        Ok(())
    }

    /// Signals every running exec to stop and returns their ids.
    pub fn cancel_all(&self) -> Vec<String> {
        self.state.execs.cancel(None)
    }

    /// Stops every running exec and waits (at most grace + drain + 1 s) for
    /// them to be reaped.
    pub async fn shutdown(&self) {
        self.state.procs.kill_all();
        let ids = self.cancel_all();
        if !ids.is_empty() {
            tracing::info!(?ids, "stopping running execs");
        }
        let limit =
            self.state.config.kill_grace + self.state.config.drain_timeout + Duration::from_secs(1);
        let deadline = Instant::now() + limit;
        // Wait until the cancelled execs have ended and their exit records have been
        // handed to their connections.
        while !self.state.execs.is_drained() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if !ids.is_empty() {
            // Let the connections flush what they were handed.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn set_subreaper() {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer argument.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };
    if r != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "could not become a child subreaper");
    }
}

async fn accept_loop(state: Arc<State>, listener: Listener) {
    loop {
        match &listener {
            Listener::Unix(l) => match l.accept().await {
                Ok((stream, _)) => spawn_connection(state.clone(), stream),
                Err(e) => accept_failed(e).await,
            },
            Listener::Tcp(l) => match l.accept().await {
                Ok((stream, peer)) => {
                    tracing::debug!(%peer, "tcp connection");
                    let _ = stream.set_nodelay(true);
                    spawn_connection(state.clone(), stream)
                }
                Err(e) => accept_failed(e).await,
            },
        }
    }
}

async fn accept_failed(e: std::io::Error) {
    // EMFILE and friends: back off instead of spinning.
    tracing::warn!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

fn spawn_connection<S>(state: Arc<State>, stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let service = service_fn(move |req| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(handle(state, req).await) }
        });
        let result = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(30))
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades()
            .await;
        if let Err(e) = result {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    });
}

/// Constant-time comparison of the presented token.
fn token_matches(expected: &str, presented: &str) -> bool {
    let (a, b) = (expected.as_bytes(), presented.as_bytes());
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= (x ^ b.get(i).copied().unwrap_or(0)) as usize;
    }
    diff == 0
}

fn authorized(state: &State, req: &Request<Incoming>) -> bool {
    let Some(expected) = &state.config.token else {
        return true;
    };
    req.headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .is_some_and(|t| token_matches(expected, t.trim()))
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let result = route(state, req).await;
    match result {
        Ok(resp) => {
            tracing::debug!(%method, %path, status = resp.status().as_u16(), "request");
            resp
        }
        Err(err) => {
            let status = err.status();
            if status.is_server_error() {
                tracing::error!(%method, %path, status = status.as_u16(), error = %err, "request failed");
            } else {
                tracing::info!(%method, %path, status = status.as_u16(), error = %err, "request refused");
            }
            http::error_response(&err)
        }
    }
}

async fn route(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, WorkerError> {
    let path = req.uri().path().to_string();
    if let Some(id) = path.strip_prefix("/exec/") {
        if req.method() != Method::GET {
            let method = req.method().to_string();
            http::drain(&mut req.into_body()).await;
            return Err(WorkerError::MethodNotAllowed {
                method,
                path: path.clone(),
                allow: "GET",
            });
        }
        if !authorized(&state, &req) {
            return Err(WorkerError::Unauthorized);
        }
        let id = id.to_string();
        return exec::attach(state, req, &id).await;
    }
    if path == "/relays" || path == "/processes" || path.starts_with("/processes/") {
        if !authorized(&state, &req) {
            let mut body = req.into_body();
            http::drain(&mut body).await;
            return Err(WorkerError::Unauthorized);
        }
        return procs::route(state, req, &path).await;
    }
    let allow: &'static str = match path.as_str() {
        "/healthz" | "/status" | "/logs" | "/files/read" | "/files/list" | "/files/stat" => "GET",
        "/exec" | "/cancel" => "POST",
        "/files/write" => "PUT",
        "/files" => "DELETE",
        _ => {
            http::drain(&mut req.into_body()).await;
            return Err(WorkerError::NotFound(format!("no route for {path}")));
        }
    };
    if req.method().as_str() != allow {
        let method = req.method().to_string();
        http::drain(&mut req.into_body()).await;
        return Err(WorkerError::MethodNotAllowed {
            method,
            path,
            allow,
        });
    }
    if path == "/healthz" {
        return Ok(healthz());
    }
    if !authorized(&state, &req) {
        http::drain(&mut req.into_body()).await;
        return Err(WorkerError::Unauthorized);
    }
    match (req.method(), path.as_str()) {
        (&Method::POST, "/exec") => exec::exec(state, req).await,
        (&Method::POST, "/cancel") => exec::cancel(state, req).await,
        (&Method::GET, "/status") => status_route(state, req).await,
        (&Method::GET, "/logs") => logs_route(&state, req),
        (&Method::GET, "/files/read") => files::read(&state, req).await,
        (&Method::PUT, "/files/write") => files::write(&state, req).await,
        (&Method::GET, "/files/list") => files::list(&state, req).await,
        (&Method::GET, "/files/stat") => files::stat(&state, req).await,
        (&Method::DELETE, "/files") => files::delete(&state, req).await,
        _ => Err(WorkerError::Internal(format!("unrouted {path}"))),
    }
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
    protocol: u32,
    pid: u32,
    /// What Landlock confines the worker to (`--landlock`).
    landlock: confine::Confinement,
}

fn healthz() -> Response<Body> {
    http::ok_json(&Health {
        status: "ok",
        version: VERSION,
        protocol: PROTOCOL_VERSION,
        pid: std::process::id(),
        landlock: confine::current(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoQuery {}

async fn status_route(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Body>, WorkerError> {
    let _: NoQuery = http::parse_query(req.uri().query())?;
    let uptime_ms = state.started.elapsed().as_millis() as u64;
    let running = state.execs.running();
    let started_total = state.execs.started_total();
    let root = state.root.clone();
    let status = tokio::task::spawn_blocking(move || {
        status::collect(&root, uptime_ms, running, started_total)
    })
    .await
    .map_err(|e| WorkerError::Internal(format!("status collection failed: {e}")))?;
    Ok(http::ok_json(&status))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogsQuery {
    tail: Option<String>,
    id: Option<String>,
}

#[derive(Serialize)]
struct LogsResponse {
    worker: Vec<LogLine>,
    output: Vec<OutputRecord>,
    output_dropped_bytes: u64,
}

fn logs_route(state: &State, req: Request<Incoming>) -> Result<Response<Body>, WorkerError> {
    let q: LogsQuery = http::parse_query(req.uri().query())?;
    let tail = http::parse_u64_param("tail", q.tail.as_deref())?
        .map(|n| (n as usize).min(MAX_LOG_TAIL))
        .unwrap_or(DEFAULT_LOG_TAIL);
    let worker = if q.id.is_some() {
        Vec::new()
    } else {
        state.log_ring.tail(tail)
    };
    let (output, output_dropped_bytes) = state.output.tail(tail, q.id.as_deref());
    Ok(http::ok_json(&LogsResponse {
        worker,
        output,
        output_dropped_bytes,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(token_matches("secret", "secret"));
        assert!(!token_matches("secret", "secreT"));
        assert!(!token_matches("secret", "secret2"));
        assert!(!token_matches("secret", ""));
    }

    #[test]
    fn workspace_must_exist() {
        let err = Worker::new(WorkerConfig::new("/definitely/not/here"))
            .err()
            .unwrap();
        assert_eq!(err.kind(), "internal_error");
        assert!(err.to_string().contains("workspace"));
    }
}
