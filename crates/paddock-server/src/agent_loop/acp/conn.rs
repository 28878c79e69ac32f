//! Starting an ACP agent in a runner and speaking to it: the process is started by the
//! worker (`POST /processes`), its stdio reaches us over the worker's attach stream,
//! and the `agent-client-protocol` crate frames JSON-RPC on it. The agent's requests
//! to us are answered inside the sandbox through the worker, confined to the
//! workspace: `fs/*` through the file routes, `terminal/*` as worker processes.
//!
//! Handlers never wait on anything but the worker: what needs a decision
//! (`session/request_permission`) or must stay in order (`session/update`) goes out on
//! one channel to the session's pump.

use agent_client_protocol::schema::ProtocolVersion;
use agent_client_protocol::v1::{self, schema};
use agent_client_protocol::{Agent, ByteStreams, Client, Error, UntypedMessage};
use axum::http::Method;
use bytes::Bytes;
use paddock_backend::WorkerClient;
use schema::{
    ClientCapabilities, CreateTerminalRequest, CreateTerminalResponse, FileSystemCapabilities,
    Implementation, InitializeRequest, InitializeResponse, KillTerminalRequest,
    KillTerminalResponse, ReadTextFileRequest, ReadTextFileResponse, ReleaseTerminalRequest,
    ReleaseTerminalResponse, RequestPermissionRequest, RequestPermissionResponse,
    SessionNotification, TerminalExitStatus, TerminalOutputRequest, TerminalOutputResponse,
    WaitForTerminalExitRequest, WaitForTerminalExitResponse, WriteTextFileRequest,
    WriteTextFileResponse,
};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

use super::tap::{self, Answers, Tap};
use tokio_util::compat::{TokioAsyncReadCompatExt, TokioAsyncWriteCompatExt};

/// Where a runner's workspace is, as its processes see it.
pub(crate) const WORKSPACE: &str = "/workspace";

/// What the agent sends us that the pump handles, in the order it arrived.
pub(crate) enum FromAgent {
    Update(Box<SessionNotification>),
    Permission {
        request: Box<RequestPermissionRequest>,
        reply: v1::Responder<RequestPermissionResponse>,
    },
    /// The agent withdrew one of its requests (`$/cancel_request`).
    Withdrawn,
    /// The prompt of turn `turn` returned.
    PromptDone {
        turn: u32,
        result: Result<schema::PromptResponse, Error>,
    },
    /// The agent's stdout closed (it exited, or the worker went away).
    Closed,
}

/// A connected agent: the handle to call it with and the driver task.
pub(crate) struct Connection {
    pub cx: v1::ConnectionTo<Agent>,
    pub driver: tokio::task::JoinHandle<()>,
}

/// A workspace-relative path for an absolute path inside the sandbox, or why not.
fn in_workspace(path: &std::path::Path) -> Result<String, Error> {
    let p = path.to_string_lossy();
    let rel = if p == WORKSPACE {
        ""
    } else if let Some(r) = p.strip_prefix(&format!("{WORKSPACE}/")) {
        r
    } else {
        return Err(Error::invalid_params().data(format!(
            "{p} is outside the workspace ({WORKSPACE}); Paddock serves files of the workspace only"
        )));
    };
    Ok(rel.to_string())
}

fn enc(s: &str) -> String {
    serde_urlencoded::to_string([("path", s)]).unwrap_or_default()
}

fn worker_failed(e: impl std::fmt::Display) -> Error {
    Error::internal_error().data(e.to_string())
}

async fn read_file(
    w: &WorkerClient,
    req: ReadTextFileRequest,
) -> Result<ReadTextFileResponse, Error> {
    let rel = in_workspace(&req.path)?;
    let resp = w
        .request(
            Method::GET,
            &format!("/files/read?{}", enc(&rel)),
            Bytes::new(),
            None,
        )
        .await
        .map_err(worker_failed)?;
    let status = resp.status();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .map_err(worker_failed)?
        .to_bytes();
    if status.as_u16() == 404 {
        return Err(schema::Error::resource_not_found(Some(req.path.display().to_string())).into());
    }
    if !status.is_success() {
        return Err(worker_failed(String::from_utf8_lossy(&body)));
    }
    let text = String::from_utf8_lossy(&body);
    // `line` is 1-based; `limit` counts lines.
    let start = req.line.map(|l| l.saturating_sub(1) as usize).unwrap_or(0);
    let lines: Vec<&str> = text.split_inclusive('\n').skip(start).collect();
    let lines = match req.limit {
        Some(n) => &lines[..lines.len().min(n as usize)],
        None => &lines[..],
    };
    Ok(ReadTextFileResponse::new(lines.concat()))
}

async fn write_file(
    w: &WorkerClient,
    req: WriteTextFileRequest,
) -> Result<WriteTextFileResponse, Error> {
    let rel = in_workspace(&req.path)?;
    let resp = w
        .request(
            Method::PUT,
            &format!("/files/write?{}&mkdirs=true", enc(&rel)),
            Bytes::from(req.content),
            Some("application/octet-stream"),
        )
        .await
        .map_err(worker_failed)?;
    if !resp.status().is_success() {
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        return Err(worker_failed(String::from_utf8_lossy(&body)));
    }
    Ok(WriteTextFileResponse::new())
}

static TERMINALS: AtomicU64 = AtomicU64::new(1);

async fn create_terminal(
    w: &WorkerClient,
    req: CreateTerminalRequest,
) -> Result<CreateTerminalResponse, Error> {
    let cwd = match &req.cwd {
        Some(c) => in_workspace(c)?,
        None => String::new(),
    };
    let id = format!(
        "term-{}-{}",
        std::process::id(),
        TERMINALS.fetch_add(1, Ordering::Relaxed)
    );
    let mut argv = vec![req.command.clone()];
    argv.extend(req.args.iter().cloned());
    let env: serde_json::Map<String, Value> = req
        .env
        .iter()
        .map(|e| (e.name.clone(), json!(e.value)))
        .collect();
    let mut body = json!({"id": id, "argv": argv, "cwd": cwd, "env": env, "merge_stderr": true});
    if let Some(limit) = req.output_byte_limit.filter(|l| *l > 0) {
        body["output_limit_bytes"] = json!(limit.min(paddock_worker_limits::MAX_OUTPUT));
    }
    w.json(Method::POST, "/processes", Some(&body))
        .await
        .map_err(worker_failed)?;
    Ok(CreateTerminalResponse::new(id))
}

/// Limits of the worker's process routes (docs/worker-protocol.md §4.8).
mod paddock_worker_limits {
    pub const MAX_OUTPUT: u64 = 64 * 1024 * 1024;
}

fn exit_status(v: &Value) -> Option<TerminalExitStatus> {
    if v["running"].as_bool() != Some(false) {
        return None;
    }
    let signal = v["signal"].as_i64().map(|s| match s {
        9 => "SIGKILL".to_string(),
        15 => "SIGTERM".to_string(),
        2 => "SIGINT".to_string(),
        n => format!("signal {n}"),
    });
    Some(
        TerminalExitStatus::new()
            .exit_code(v["exit_code"].as_u64().map(|c| c as u32))
            .signal(signal),
    )
}

fn terminal_id(id: &str) -> Result<&str, Error> {
    if id.starts_with("term-") && !id.contains('/') {
        Ok(id)
    } else {
        Err(Error::invalid_params().data(format!("no terminal {id:?}")))
    }
}

async fn terminal_output(
    w: &WorkerClient,
    req: TerminalOutputRequest,
) -> Result<TerminalOutputResponse, Error> {
    let id = terminal_id(&req.terminal_id.0)?;
    let v = w
        .json(Method::GET, &format!("/processes/{id}/output?from=0"), None)
        .await
        .map_err(worker_failed)?;
    let text = v["text"].as_str().unwrap_or_default().to_string();
    let truncated = v["dropped"].as_u64().unwrap_or(0) > 0;
    Ok(TerminalOutputResponse::new(text, truncated).exit_status(exit_status(&v)))
}

async fn wait_terminal(
    w: &WorkerClient,
    req: WaitForTerminalExitRequest,
) -> Result<WaitForTerminalExitResponse, Error> {
    let id = terminal_id(&req.terminal_id.0)?;
    loop {
        // The worker's wait is bounded (and so is the client's call): ask again.
        let v = w
            .json(
                Method::GET,
                &format!("/processes/{id}/wait?timeout_ms=20000"),
                None,
            )
            .await
            .map_err(worker_failed)?;
        if let Some(s) = exit_status(&v) {
            return Ok(WaitForTerminalExitResponse::new(s));
        }
    }
}

async fn kill_terminal(
    w: &WorkerClient,
    req: KillTerminalRequest,
) -> Result<KillTerminalResponse, Error> {
    let id = terminal_id(&req.terminal_id.0)?;
    w.json(
        Method::POST,
        &format!("/processes/{id}/signal"),
        Some(&json!({"signal": "KILL"})),
    )
    .await
    .map_err(worker_failed)?;
    Ok(KillTerminalResponse::new())
}

async fn release_terminal(
    w: &WorkerClient,
    req: ReleaseTerminalRequest,
) -> Result<ReleaseTerminalResponse, Error> {
    let id = terminal_id(&req.terminal_id.0)?;
    w.json(Method::DELETE, &format!("/processes/{id}"), None)
        .await
        .map_err(worker_failed)?;
    Ok(ReleaseTerminalResponse::new())
}

/// Where a connection attaches to the agent's stdout, and what it resumes.
pub(crate) struct Attach {
    /// The offset to read from (0: a new agent; else the first line of the turn being
    /// resumed).
    pub from: u64,
    /// The turn whose prompt an earlier connection sent and that has not ended.
    pub resumed_turn: Option<u32>,
    /// That turn was cancelled before the restart (a budget stop).
    pub cancelled: bool,
    /// Stdout below this offset was read by an earlier connection (0: none was).
    pub replay_end: u64,
    pub answers: Arc<dyn Answers>,
}

/// Connects to the agent process `proc_id` of a worker (attached at `at.from`, through
/// the tap) and starts the ACP client on it; what the agent sends goes to `tx`.
pub(crate) async fn connect(
    worker: &WorkerClient,
    proc_id: &str,
    tx: mpsc::UnboundedSender<FromAgent>,
    at: Attach,
) -> Result<(Connection, Arc<Tap>), String> {
    let (io, start) = worker
        .attach(proc_id, at.from, true)
        .await
        .map_err(|e| format!("attaching to the agent's stdio: {e}"))?;
    let tap = Arc::new(Tap {
        consumed: AtomicU64::new(start),
        replay_end: at.replay_end,
    });
    let io = tap::splice(io, start, tap.clone(), at.answers, at.cancelled);
    let resumed_turn = at.resumed_turn;
    let (read, write) = tokio::io::split(io);
    let transport = ByteStreams::new(write.compat_write(), read.compat());
    let (cx_tx, cx_rx) = tokio::sync::oneshot::channel::<v1::ConnectionTo<Agent>>();
    let (tx_n, tx_p, tx_c) = (tx.clone(), tx.clone(), tx);
    let (w1, w2, w3, w4, w5, w6, w7) = (
        worker.clone(),
        worker.clone(),
        worker.clone(),
        worker.clone(),
        worker.clone(),
        worker.clone(),
        worker.clone(),
    );
    let run = Client
        .v1()
        .name("paddock")
        .on_receive_notification(
            async move |m: UntypedMessage, _cx| {
                let (method, params) = m.into_parts();
                match method.as_str() {
                    "session/update" => match serde_json::from_value::<SessionNotification>(params) {
                        Ok(n) => {
                            let _ = tx_n.send(FromAgent::Update(Box::new(n)));
                        }
                        Err(e) => tracing::debug!(error = %e, "an ACP update of a kind Paddock does not know"),
                    },
                    "$/cancel_request" => {
                        let _ = tx_n.send(FromAgent::Withdrawn);
                    }
                    tap::PROMPT_DONE => {
                        if let Some(turn) = resumed_turn {
                            let result = match (params.get("result"), params.get("error")) {
                                (Some(r), _) => serde_json::from_value(r.clone()).map_err(|e| {
                                    Error::internal_error().data(format!("the prompt's answer: {e}"))
                                }),
                                (None, Some(e)) => Err(serde_json::from_value(e.clone())
                                    .unwrap_or_else(|_| Error::internal_error().data(e.to_string()))),
                                (None, None) => Err(Error::internal_error().data("an empty answer")),
                            };
                            let _ = tx_n.send(FromAgent::PromptDone { turn, result });
                        }
                    }
                    other => tracing::debug!(method = other, "ACP notification ignored"),
                }
                Ok(())
            },
            agent_client_protocol::on_receive_notification!(),
        )
        .on_receive_request(
            async move |request: RequestPermissionRequest, reply, _cx| {
                let _ = tx_p.send(FromAgent::Permission {
                    request: Box::new(request),
                    reply,
                });
                Ok(())
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            async move |req: ReadTextFileRequest, responder, _cx| {
                let w = w1.clone();
                tokio::spawn(async move {
                    let _ = responder.respond_with_result(read_file(&w, req).await);
                });
                Ok(())
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            async move |req: WriteTextFileRequest, responder, _cx| {
                let w = w2.clone();
                tokio::spawn(async move {
                    let _ = responder.respond_with_result(write_file(&w, req).await);
                });
                Ok(())
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            async move |req: CreateTerminalRequest, responder, _cx| {
                let w = w3.clone();
                tokio::spawn(async move {
                    let _ = responder.respond_with_result(create_terminal(&w, req).await);
                });
                Ok(())
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            async move |req: TerminalOutputRequest, responder, _cx| {
                let w = w4.clone();
                tokio::spawn(async move {
                    let _ = responder.respond_with_result(terminal_output(&w, req).await);
                });
                Ok(())
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            async move |req: WaitForTerminalExitRequest, responder, _cx| {
                let w = w5.clone();
                tokio::spawn(async move {
                    let _ = responder.respond_with_result(wait_terminal(&w, req).await);
                });
                Ok(())
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            async move |req: KillTerminalRequest, responder, _cx| {
                let w = w6.clone();
                tokio::spawn(async move {
                    let _ = responder.respond_with_result(kill_terminal(&w, req).await);
                });
                Ok(())
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            async move |req: ReleaseTerminalRequest, responder, _cx| {
                let w = w7.clone();
                tokio::spawn(async move {
                    let _ = responder.respond_with_result(release_terminal(&w, req).await);
                });
                Ok(())
            },
            agent_client_protocol::on_receive_request!(),
        )
        .connect_with(transport, async move |cx: v1::ConnectionTo<Agent>| {
            let _ = cx_tx.send(cx.clone());
            cx.incoming_closed().await;
            Ok(())
        });
    let driver = tokio::spawn(async move {
        if let Err(e) = run.await {
            tracing::debug!(error = %e, "the ACP connection ended with an error");
        }
        let _ = tx_c.send(FromAgent::Closed);
    });
    let cx = cx_rx
        .await
        .map_err(|_| "the ACP connection closed before it started".to_string())?;
    Ok((Connection { cx, driver }, tap))
}

/// `initialize`, checked: the agent must speak protocol version 1.
pub(crate) async fn initialize(
    cx: &v1::ConnectionTo<Agent>,
    fs: (bool, bool),
) -> Result<InitializeResponse, String> {
    let req = InitializeRequest::new(ProtocolVersion::V1)
        .client_capabilities(
            ClientCapabilities::new()
                .fs(FileSystemCapabilities::new()
                    .read_text_file(fs.0)
                    .write_text_file(fs.1))
                .terminal(true),
        )
        .client_info(Implementation::new("paddock", env!("CARGO_PKG_VERSION")));
    let resp = cx
        .send_request(req)
        .block_task()
        .await
        .map_err(|e| format!("initialize: {e}"))?;
    if resp.protocol_version != ProtocolVersion::V1 {
        return Err(format!(
            "the agent speaks ACP protocol version {}; Paddock speaks 1",
            resp.protocol_version
        ));
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_workspace_paths_are_served() {
        assert_eq!(
            in_workspace(std::path::Path::new("/workspace/a/b.txt"))
                .ok()
                .as_deref(),
            Some("a/b.txt")
        );
        assert_eq!(
            in_workspace(std::path::Path::new("/workspace"))
                .ok()
                .as_deref(),
            Some("")
        );
        assert!(in_workspace(std::path::Path::new("/workspace2/x")).is_err());
        assert!(in_workspace(std::path::Path::new("/etc/passwd")).is_err());
    }
}
