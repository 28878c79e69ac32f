//! The ACP harness: the agent thinks inside the session's runner (OpenClaw, Claude
//! Code, Codex, Gemini CLI or a user's own), and this orchestrator is its Agent Client
//! Protocol client.
//!
//! At a session's first turn the harness provisions the runner (as the built-in brain
//! does at its first tool call), opens the runner's model gateway, has the worker relay
//! a loopback port to it, and starts the adapter's command as a worker process with an
//! environment that points its model traffic at that port with the runner's gateway
//! token (never a provider key). Then `initialize`, `session/new` in `/workspace`, the
//! session mode the agent's permission policy calls for, and one `session/prompt` per
//! turn. The agent's updates become events in the pump (`pump.rs`); a turn ends when
//! its prompt returns, and the driver writes that end here.
//!
//! * A permission the agent asks for is judged by the agent's policy (`policy.rs`):
//!   answered at once, or left to the user as a tool use with `evaluated_permission:
//!   "ask"` (`requires_action`) and answered when the user confirms.
//! * `user.interrupt` sends `session/cancel`.
//! * A model call made over budget is refused by the gateway, and the turn stops with
//!   `budget_reached` (and the runner, as for the built-in brain).
//! * The agent outlives an orchestrator restart. What a new orchestrator needs to take
//!   it over is kept with its process in the worker (`PUT /processes/{id}/state`: its
//!   ACP session, its gateway token, the turn it was prompted for and the stdout
//!   offset where that turn began). The new orchestrator serves the gateway again
//!   under the same token, attaches from that offset and replays the turn through the
//!   tap (`tap.rs`): events are written once (their ids derive from offsets), requests
//!   answered before are not answered again, and the prompt's answer, addressed to
//!   the old connection, ends the turn. Only when that state cannot be had (the
//!   runner restarted, the process is gone) does the turn end with a recoverable
//!   `session.error`.

mod conn;
mod policy;
mod pump;
mod tap;

use agent_client_protocol::v1::schema::{
    CancelNotification, ContentBlock, NewSessionRequest, PermissionOption, PromptRequest,
    RequestPermissionOutcome, RequestPermissionResponse, SessionId, SetSessionModeRequest,
    StopReason as AcpStop, TextContent,
};
use agent_client_protocol::v1::{self, Responder};
use agent_client_protocol::Agent;
use async_trait::async_trait;
use axum::http::Method;
use paddock_backend::{Connector, WorkerClient};
use paddock_core::event::{RetryStatus, ServerEvent, SessionError, SessionErrorType, StopReason};
use paddock_core::harness::{adapter_spec, AcpAdapter, Harness as HarnessKind, ModelWire};
use paddock_core::lifecycle::RunnerState;
use paddock_core::runner::NetworkPolicy;
use paddock_core::session::Session;
use paddock_core::ts::Timestamp;
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

use super::budget::Spent;
use super::builtin::Builtin;
use super::ctx::Ctx;
use super::gateway::{GatewayHooks, Gateways, SOCKET_NAME};
use super::harness::{Harness, Progress, Step};
use super::view::{Turn, View};
use crate::error::ApiResult;
use conn::{Attach, FromAgent, WORKSPACE};
use policy::Policy;
use pump::{choose, Ids, Pump};
use tap::{Answers, Tap};

/// Wakes a session's driver.
pub(crate) type Kick = Arc<dyn Fn(&str) + Send + Sync>;

/// The private writable directory of an agent process (tmpfs in every sandbox).
const HOME: &str = "/tmp/paddock-acp";
/// How long an agent may take to start answering ACP.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// A permission the agent waits for the user to give.
pub(crate) struct Ask {
    pub reply: Responder<RequestPermissionResponse>,
    pub options: Vec<PermissionOption>,
}

/// How a turn's prompt ended.
pub(crate) enum Outcome {
    Stopped(AcpStop),
    Failed(String),
    Closed,
}

/// What the driver and the pump share about a connection's turn.
#[derive(Default)]
pub(crate) struct Shared {
    /// The open turn this connection writes events for.
    pub turn: Option<u32>,
    pub turn_started: Option<Instant>,
    /// The turn whose prompt was sent.
    pub prompted: Option<u32>,
    /// Tool-use event id → the agent's permission request the user is to answer.
    pub asks: HashMap<String, Ask>,
    /// Tool uses with their result written.
    pub resulted: HashSet<String>,
    /// The gateway refused a call over budget.
    pub budget: Option<Spent>,
    pub outcome: Option<(u32, Outcome)>,
    /// The agent's stdout closed.
    pub closed: bool,
}

/// What an orchestrator needs to take a running agent over, kept with its process in
/// the worker.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Handover {
    /// The runner start the agent was started in (another start: not this agent).
    runner_started: Option<String>,
    acp_session: String,
    /// The gateway token the agent was given.
    token: String,
    /// Where its event ids come from.
    nonce: String,
    started_ms: u64,
    /// The last turn it was prompted for, and the stdout offset where that turn began.
    turn: Option<u32>,
    turn_from: u64,
    /// The turn a `session/cancel` was sent for (a budget stop): the `cancelled` answer
    /// a replay of it meets is its own.
    #[serde(default)]
    cancelled_turn: Option<u32>,
}

/// A running agent of one session.
struct Live {
    runner_id: String,
    runner_started: Option<Timestamp>,
    proc_id: String,
    worker: WorkerClient,
    conn: v1::ConnectionTo<Agent>,
    acp_session: SessionId,
    shared: Arc<Mutex<Shared>>,
    tx: mpsc::UnboundedSender<FromAgent>,
    tap: Arc<Tap>,
    handover: Mutex<Handover>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Live {
    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps the handover with the agent's process (for the next orchestrator).
    async fn hand_over(&self, f: impl FnOnce(&mut Handover)) {
        let h = {
            let mut h = self.handover.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut h);
            h.clone()
        };
        let body = serde_json::to_value(&h).unwrap_or_default();
        if let Err(e) = self
            .worker
            .json(
                Method::PUT,
                &format!("/processes/{}/state", self.proc_id),
                Some(&body),
            )
            .await
        {
            tracing::warn!(runner_id = %self.runner_id, error = %e, "cannot keep the ACP agent's handover in its worker; a restart will end its turn");
        }
    }

    /// The last lines the agent wrote to stderr.
    async fn stderr_tail(&self) -> String {
        self.worker
            .json(
                Method::GET,
                &format!("/processes/{}/output?stream=stderr", self.proc_id),
                None,
            )
            .await
            .ok()
            .and_then(|v| v["text"].as_str().map(tail))
            .unwrap_or_default()
    }
}

/// The answers to an agent's requests, recorded in the session's log (an empty append
/// under an idempotency key per request): a replay finds them there.
struct LoggedAnswers {
    cx: Arc<Ctx>,
    session_id: String,
    nonce: String,
}

impl LoggedAnswers {
    /// Records the answer to the request at `offset`; whether it was recorded before.
    async fn record(&self, offset: u64) -> bool {
        let key = format!("acp-answer:{}:{offset}", self.nonce);
        let append = paddock_store::Append {
            idempotency: Some(paddock_store::Idempotency {
                request_hash: key.clone(),
                key,
            }),
            ..paddock_store::Append::default()
        };
        match self.cx.store.append_events(&self.session_id, append).await {
            Ok(a) => a.replayed,
            Err(e) => {
                tracing::warn!(session_id = %self.session_id, error = %e, "cannot record an answer to the ACP agent");
                false
            }
        }
    }
}

#[async_trait]
impl Answers for LoggedAnswers {
    async fn answered_before(&self, offset: u64) -> bool {
        self.record(offset).await
    }

    async fn answered(&self, offset: u64) {
        self.record(offset).await;
    }
}

/// Tool uses of the log with their result written.
fn resulted(view: &View) -> HashSet<String> {
    view.messages
        .iter()
        .flat_map(|m| &m.content)
        .filter_map(|p| match p {
            paddock_agent::provider::ContentPart::ToolResult { tool_use_id, .. } => {
                Some(tool_use_id.clone())
            }
            _ => None,
        })
        .collect()
}

/// What [`Acp::assemble`] makes a live agent of.
struct Parts {
    runner_id: String,
    runner_started: Option<Timestamp>,
    proc_id: String,
    worker: WorkerClient,
    conn: conn::Connection,
    tap: Arc<Tap>,
    handover: Handover,
    shared: Shared,
    policy: Policy,
}

/// The agent's permission policy in its session's runner (offline, web_fetch is not
/// offered and need not be allowed for the agent to run unasked).
async fn policy_for(cx: &Ctx, session: &Session) -> Policy {
    let network = cx.network(session).await != NetworkPolicy::None;
    let available = paddock_agent::tools::available_tools(&session.agent.tools, network);
    Policy::new(&available, network)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The runner's socket directory (where its model gateway is served), as its worker's
/// socket says.
fn socket_dir(worker: &WorkerClient, backend: &str) -> Result<std::path::PathBuf, String> {
    match worker.connector() {
        Connector::UnixSocket { path, .. } => path
            .parent()
            .map(std::path::Path::to_path_buf)
            .ok_or_else(|| "the worker socket has no directory".to_string()),
        Connector::Tcp { .. } => Err(format!(
            "the {backend} backend has no runner socket directory to serve the model gateway in"
        )),
    }
}

/// The last 2000 bytes of `t`, trimmed.
fn tail(t: &str) -> String {
    let t = t.trim();
    let start = t.floor_char_boundary(t.len().saturating_sub(2000));
    t[start..].to_string()
}

impl Drop for Live {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

pub(crate) struct Acp {
    cx: Arc<Ctx>,
    builtin: Arc<Builtin>,
    gateways: Arc<Gateways>,
    live: Mutex<HashMap<String, Arc<Live>>>,
    kick: OnceLock<Kick>,
}

fn proc_id(session_id: &str) -> String {
    format!("acp-{session_id}")
}

/// The command, environment, files and modes an ACP harness starts with.
struct Launch {
    command: Vec<String>,
    env: Vec<(String, String)>,
    files: Vec<(String, String)>,
    /// The wires it can speak (none: a custom agent, whatever it sends).
    wires: Vec<(ModelWire, String)>,
    ask: (String, String),
    mode_allow: Option<String>,
    mode_ask: Option<String>,
    fs: (bool, bool),
}

fn launch(h: &paddock_core::harness::AcpHarness) -> Result<Launch, String> {
    let mut l = match (h.adapter, adapter_spec(h.adapter)) {
        (AcpAdapter::Custom, _) => Launch {
            command: h
                .command
                .clone()
                .ok_or("the custom ACP adapter has no command")?,
            env: vec![],
            files: vec![],
            wires: vec![],
            ask: (String::new(), String::new()),
            mode_allow: None,
            mode_ask: None,
            fs: (true, true),
        },
        (_, Some(spec)) => Launch {
            command: spec.command.iter().map(|s| s.to_string()).collect(),
            env: spec
                .env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            files: spec
                .files
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            wires: spec
                .wires
                .iter()
                .map(|(w, n)| (*w, n.to_string()))
                .collect(),
            ask: (spec.ask.0.to_string(), spec.ask.1.to_string()),
            mode_allow: spec.mode_allow.map(str::to_string),
            mode_ask: spec.mode_ask.map(str::to_string),
            fs: spec.client_fs,
        },
        (a, None) => {
            return Err(format!(
                "Paddock has no launch recipe for the {} adapter yet",
                a.as_str()
            ))
        }
    };
    l.env
        .extend(h.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(l)
}

/// `sh -c` prelude that writes the settings files (their contents come in the
/// environment) before the agent starts.
fn prelude(files: &[(String, String)]) -> String {
    // A fresh home per start: what an earlier agent left there is not this one's.
    let mut s = String::from("set -e; rm -rf \"$HOME\"; mkdir -p \"$HOME/tmp\"; ");
    for (i, (path, _)) in files.iter().enumerate() {
        let dir = std::path::Path::new(path)
            .parent()
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        s.push_str(&format!(
            "mkdir -p \"$HOME/{dir}\"; printf '%s' \"$PADDOCK_ACP_FILE_{i}\" > \"$HOME/{path}\"; "
        ));
    }
    s.push_str("exec \"$@\"");
    s
}

impl Acp {
    pub fn new(cx: Arc<Ctx>, builtin: Arc<Builtin>, gateways: Arc<Gateways>) -> Self {
        Acp {
            cx,
            builtin,
            gateways,
            live: Mutex::new(HashMap::new()),
            kick: OnceLock::new(),
        }
    }

    pub fn set_kick(&self, kick: Kick) {
        let _ = self.kick.set(kick);
    }

    fn kick_fn(&self) -> Kick {
        self.kick
            .get()
            .cloned()
            .unwrap_or_else(|| Arc::new(|_: &str| {}))
    }

    fn live(&self, sid: &str) -> Option<Arc<Live>> {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(sid)
            .cloned()
    }

    fn forget(&self, sid: &str) -> Option<Arc<Live>> {
        let live = self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(sid);
        if let Some(l) = &live {
            self.gateways.close(&l.runner_id);
        }
        live
    }

    /// A live agent that can go on serving the session: same runner start, open stdout.
    async fn usable(&self, sid: &str) -> Option<Arc<Live>> {
        let live = self.live(sid)?;
        let ok = !live.shared().closed
            && match self.cx.store.get_runner(&live.runner_id).await {
                Ok(r) => r.state == RunnerState::Running && r.started_at == live.runner_started,
                Err(_) => false,
            };
        if ok {
            Some(live)
        } else {
            self.forget(sid);
            None
        }
    }

    /// Starts the session's agent in its runner (provisioning the runner if needed).
    async fn start(&self, session: &Session) -> Result<Arc<Live>, String> {
        let cx = &self.cx;
        let HarnessKind::Acp(h) = &session.agent.harness else {
            return Err("this session's agent has no ACP harness".into());
        };
        let l = launch(h)?;
        let fresh = cx
            .store
            .get_session(&session.id)
            .await
            .map_err(|e| e.to_string())?;
        let (worker, rid) = cx.worker_for(&fresh).await?;
        let runner = cx.store.get_runner(&rid).await.map_err(|e| e.to_string())?;
        let sock_dir = socket_dir(&worker, &runner.backend)?;
        let token = self
            .gateways
            .open(&rid, runner.started_at, &sock_dir, None)?;
        let relay = worker
            .json(
                Method::POST,
                "/relays",
                Some(&json!({"socket": SOCKET_NAME})),
            )
            .await
            .map_err(|e| format!("the worker could not relay the model gateway: {e}"))?;
        let port = relay["port"]
            .as_u64()
            .ok_or("the worker named no relay port")?;
        let gateway = format!("http://127.0.0.1:{port}");
        let (provider, model, provider_name) = self
            .builtin
            .provider_for(&session.agent.model.id)
            .map_err(|e| e.to_string())?;
        let (wire_base, wire_name) = if l.wires.is_empty() {
            (gateway.clone(), String::new())
        } else {
            let (w, n) = l
                .wires
                .iter()
                .find(|(w, _)| paddock_agent::gateway::served_by(*w, provider.kind()))
                .ok_or_else(|| {
                    format!(
                        "the {} adapter speaks {:?}, and the agent's model {} is of provider {provider_name:?} (kind {}), which speaks none of them",
                        h.adapter.as_str(),
                        l.wires.iter().map(|(w, _)| *w).collect::<Vec<_>>(),
                        session.agent.model.id,
                        provider.kind().as_str()
                    )
                })?;
            (paddock_agent::gateway::base_url(*w, &gateway), n.clone())
        };
        let policy = policy_for(cx, &fresh).await;
        let unasked = policy.allows_everything();
        let ask = if unasked { &l.ask.0 } else { &l.ask.1 };
        let nonce = super::gateway::random_token();
        let fill = |s: &str| {
            s.replace("{gateway}", &gateway)
                .replace("{wire_base}", &wire_base)
                .replace("{wire_name}", &wire_name)
                .replace("{token}", &token)
                .replace("{model}", &model)
                .replace("{ask}", ask)
                .replace("{nonce}", &nonce)
                .replace("{home}", HOME)
                .replace("{workspace}", WORKSPACE)
        };
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        env.insert("HOME".into(), HOME.into());
        env.insert(
            "PATH".into(),
            format!(
                "{}/bin:/usr/local/bin:/usr/bin:/bin",
                paddock_core::harness::AGENTS_PREFIX
            ),
        );
        // Every agent, a custom one included, finds the gateway here.
        env.insert("PADDOCK_GATEWAY_URL".into(), gateway.clone());
        env.insert("PADDOCK_GATEWAY_TOKEN".into(), token.clone());
        for (k, v) in &l.env {
            env.insert(k.clone(), fill(v));
        }
        for (i, (_, content)) in l.files.iter().enumerate() {
            env.insert(format!("PADDOCK_ACP_FILE_{i}"), fill(content));
        }
        let mut argv = vec![
            "/bin/sh".to_string(),
            "-c".into(),
            prelude(&l.files),
            "paddock-acp".into(),
        ];
        argv.extend(l.command.iter().map(|a| fill(a)));
        let pid = proc_id(&session.id);
        // What an earlier connection left running is not ours to take over.
        let _ = worker
            .json(Method::DELETE, &format!("/processes/{pid}"), None)
            .await;
        worker
            .json(
                Method::POST,
                "/processes",
                Some(&json!({"id": pid, "argv": argv, "env": env, "output_limit_bytes": 16 * 1024 * 1024})),
            )
            .await
            .map_err(|e| format!("the worker could not start the agent: {e}"))?;
        let stderr_tail = || async {
            worker
                .json(
                    Method::GET,
                    &format!("/processes/{pid}/output?stream=stderr"),
                    None,
                )
                .await
                .ok()
                .and_then(|v| v["text"].as_str().map(tail))
                .unwrap_or_default()
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let id_nonce = super::gateway::random_token();
        let answers = Arc::new(LoggedAnswers {
            cx: cx.clone(),
            session_id: session.id.clone(),
            nonce: id_nonce.clone(),
        });
        let at = Attach {
            from: 0,
            resumed_turn: None,
            cancelled: false,
            replay_end: 0,
            answers,
        };
        let (c, tap) = conn::connect(&worker, &pid, tx.clone(), at).await?;
        let setup = async {
            conn::initialize(&c.cx, l.fs).await?;
            let new =
                c.cx.send_request(NewSessionRequest::new(WORKSPACE))
                    .block_task()
                    .await
                    .map_err(|e| format!("session/new: {e}"))?;
            Ok::<_, String>(new)
        };
        let new = match tokio::time::timeout(START_TIMEOUT, setup).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                let tail = stderr_tail().await;
                let _ = worker
                    .json(Method::DELETE, &format!("/processes/{pid}"), None)
                    .await;
                return Err(format!(
                    "the ACP agent did not start: {e}; its stderr: {tail:?} (agents run from the {} runbook, see docs/agents-acp.md)",
                    paddock_core::harness::AGENTS_RUNBOOK
                ));
            }
            Err(_) => {
                let tail = stderr_tail().await;
                let _ = worker
                    .json(Method::DELETE, &format!("/processes/{pid}"), None)
                    .await;
                return Err(format!(
                    "the ACP agent did not answer within {START_TIMEOUT:?}; its stderr: {tail:?}"
                ));
            }
        };
        let policy = policy_for(cx, &fresh).await;
        let mode = if policy.allows_everything() {
            l.mode_allow
        } else {
            l.mode_ask
        };
        if let Some(m) = mode {
            let set =
                c.cx.send_request(SetSessionModeRequest::new(
                    new.session_id.clone(),
                    m.clone(),
                ))
                .block_task()
                .await;
            if let Err(e) = set {
                tracing::warn!(session_id = %session.id, mode = %m, error = %e, "the ACP agent refused the session mode");
            }
        }
        tracing::info!(session_id = %session.id, runner_id = %rid, adapter = h.adapter.as_str(), "ACP agent started");
        let handover = Handover {
            runner_started: runner.started_at.map(paddock_core::ts::format),
            acp_session: new.session_id.0.to_string(),
            token,
            nonce: id_nonce,
            started_ms: now_ms(),
            turn: None,
            turn_from: 0,
            cancelled_turn: None,
        };
        let live = self.assemble(
            &session.id,
            Parts {
                runner_id: rid,
                runner_started: runner.started_at,
                proc_id: pid,
                worker,
                conn: c,
                tap,
                handover,
                shared: Shared::default(),
                policy,
            },
            (tx, rx),
        );
        live.hand_over(|_| {}).await;
        Ok(live)
    }

    /// A live agent of session `sid` from its parts: its pump started, registered.
    fn assemble(
        &self,
        sid: &str,
        p: Parts,
        (tx, rx): (
            mpsc::UnboundedSender<FromAgent>,
            mpsc::UnboundedReceiver<FromAgent>,
        ),
    ) -> Arc<Live> {
        let shared = Arc::new(Mutex::new(p.shared));
        let ids = Ids {
            nonce: p.handover.nonce.clone(),
            ms: p.handover.started_ms,
            replay_end: p.tap.replay_end,
        };
        let pump = Pump::new(
            self.cx.clone(),
            sid.to_string(),
            shared.clone(),
            p.policy,
            self.kick_fn(),
            ids,
        );
        let pump = tokio::spawn(pump.run(rx));
        let live = Arc::new(Live {
            runner_id: p.runner_id,
            runner_started: p.runner_started,
            proc_id: p.proc_id,
            worker: p.worker,
            conn: p.conn.cx,
            acp_session: SessionId::new(p.handover.acp_session.clone()),
            shared,
            tx,
            tap: p.tap,
            handover: Mutex::new(p.handover),
            tasks: vec![p.conn.driver, pump],
        });
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sid.to_string(), live.clone());
        live
    }

    /// Takes over the session's agent that an earlier orchestrator started, when its
    /// process runs on in the same runner start and kept its handover. `view` is the
    /// log so far: an open turn the agent was prompted for is replayed and resumed.
    async fn reattach(&self, session: &Session, view: &View) -> Result<Arc<Live>, String> {
        let cx = &self.cx;
        let rid = session
            .runner_id
            .clone()
            .ok_or("the session has no runner")?;
        let (runner, worker) = cx
            .manager
            .worker_of(&rid)
            .await
            .map_err(|e| e.to_string())?;
        let pid = proc_id(&session.id);
        let status = worker
            .json(Method::GET, &format!("/processes/{pid}"), None)
            .await
            .map_err(|e| format!("no agent process: {e}"))?;
        if status["running"] != true {
            return Err("the agent's process has exited".into());
        }
        let handover: Handover = serde_json::from_value(status["state"].clone())
            .map_err(|e| format!("the agent's process kept no handover: {e}"))?;
        if handover.runner_started != runner.started_at.map(paddock_core::ts::format) {
            return Err("the agent was started in another start of the runner".into());
        }
        let sock_dir = socket_dir(&worker, &runner.backend)?;
        self.gateways.open(
            &rid,
            runner.started_at,
            &sock_dir,
            Some(handover.token.clone()),
        )?;
        let open = view.turn.is_some();
        let resumed_turn = handover.turn.filter(|t| open && *t == view.turns);
        let (tx, rx) = mpsc::unbounded_channel();
        let answers = Arc::new(LoggedAnswers {
            cx: cx.clone(),
            session_id: session.id.clone(),
            nonce: handover.nonce.clone(),
        });
        // A turn to resume is replayed from its first line; else the agent is idle
        // and only what it writes from now on is read (replaying an ended turn would
        // hand its words to the next one).
        let from = match resumed_turn {
            Some(_) => handover.turn_from,
            None => status["output_bytes"]
                .as_u64()
                .unwrap_or(handover.turn_from),
        };
        let at = Attach {
            from,
            resumed_turn,
            cancelled: resumed_turn.is_some() && handover.cancelled_turn == resumed_turn,
            // What the earlier orchestrator may have read: all the agent wrote so far.
            replay_end: status["output_bytes"].as_u64().unwrap_or(0),
            answers,
        };
        let (c, tap) = match conn::connect(&worker, &pid, tx.clone(), at).await {
            Ok(c) => c,
            Err(e) => {
                self.gateways.close(&rid);
                return Err(e);
            }
        };
        let policy = policy_for(cx, session).await;
        let shared = Shared {
            turn: open.then_some(view.turns),
            turn_started: open.then(Instant::now),
            prompted: resumed_turn,
            resulted: resulted(view),
            ..Shared::default()
        };
        tracing::info!(session_id = %session.id, runner_id = %rid, resumed_turn, from, "ACP agent taken over after a restart");
        Ok(self.assemble(
            &session.id,
            Parts {
                runner_id: rid,
                runner_started: runner.started_at,
                proc_id: pid,
                worker,
                conn: c,
                tap,
                handover,
                shared,
                policy,
            },
            (tx, rx),
        ))
    }

    /// Ends the open turn by how its prompt ended.
    async fn end(
        &self,
        cx: &Ctx,
        session: &Session,
        view: &View,
        live: &Live,
        outcome: Outcome,
    ) -> ApiResult<()> {
        let sid = &session.id;
        let budget = live.shared().budget.take();
        if let Some(why) = budget {
            return cx.out_of_budget(session, view, why).await;
        }
        let unreported = "the agent ended its turn without reporting this tool call's result";
        match outcome {
            Outcome::Stopped(AcpStop::Refusal) => {
                cx.end_turn(sid, view, StopReason::Refusal, unreported, vec![])
                    .await
            }
            Outcome::Stopped(_) => {
                cx.end_turn(sid, view, StopReason::EndTurn, unreported, vec![])
                    .await
            }
            Outcome::Failed(message) => {
                let e = SessionError::new(
                    SessionErrorType::ModelRequestFailed,
                    format!("the ACP agent's turn failed: {message}"),
                    RetryStatus::Exhausted,
                );
                cx.end_turn(
                    sid,
                    view,
                    StopReason::RetriesExhausted,
                    unreported,
                    vec![ServerEvent::error(e)],
                )
                .await
            }
            Outcome::Closed => {
                let e = SessionError::new(
                    SessionErrorType::Unknown,
                    format!(
                        "the ACP agent's process exited during the turn; the next message starts it again. Its stderr: {:?}",
                        live.stderr_tail().await
                    ),
                    RetryStatus::Exhausted,
                );
                cx.end_turn(
                    sid,
                    view,
                    StopReason::RetriesExhausted,
                    "the agent exited",
                    vec![ServerEvent::error(e)],
                )
                .await
            }
        }
    }
}

#[async_trait]
impl Harness for Acp {
    async fn recover(
        &self,
        cx: &Ctx,
        session: &Session,
        view: &View,
        turn: &Turn,
    ) -> ApiResult<Option<Progress>> {
        if self.live(&session.id).is_some() || !cx.before_restart(turn.started_at) {
            return Ok(None);
        }
        // The turn's agent spoke to the orchestrator before this one: take it over.
        match self.reattach(session, view).await {
            Ok(_) => return Ok(None),
            Err(why) => {
                tracing::info!(session_id = %session.id, reason = %why, "cannot take the ACP agent over; its turn ends");
            }
        }
        // Else stop what is left of it, and end the turn so the user can go on.
        if let Some(rid) = &session.runner_id {
            if let Ok(w) = cx.manager.worker(rid).await {
                let _ = w
                    .json(
                        Method::DELETE,
                        &format!("/processes/{}", proc_id(&session.id)),
                        None,
                    )
                    .await;
            }
        }
        let e = SessionError::new(
            SessionErrorType::Unknown,
            "Paddock restarted during the ACP agent's turn; the turn was ended. Send a message to go on.",
            RetryStatus::Exhausted,
        );
        cx.end_turn(
            &session.id,
            view,
            StopReason::RetriesExhausted,
            "Paddock restarted during the turn",
            vec![ServerEvent::error(e)],
        )
        .await?;
        Ok(Some(Progress::Continue))
    }

    async fn step(&self, cx: &Ctx, s: Step<'_>) -> ApiResult<Progress> {
        let Step {
            session,
            view,
            turn,
            interrupts,
            ..
        } = s;
        let sid = session.id.as_str();
        let turn_no = view.turns;
        // A spent session takes no further step, whoever noticed first (the gateway
        // refusing a call, or the supervisor stopping the runner over budget).
        let turn_secs = turn
            .started_at
            .map(|t| (paddock_core::ts::now() - t).as_seconds_f64().max(0.0))
            .unwrap_or(0.0);
        if let Some(why) = super::budget::spent(session, turn_secs) {
            if let Some(live) = self.forget(sid) {
                live.shared().turn = None;
                let _ = live
                    .conn
                    .send_notification(CancelNotification::new(live.acp_session.clone()));
            }
            cx.out_of_budget(session, view, why).await?;
            return Ok(Progress::Continue);
        }
        let live = match self.usable(sid).await {
            Some(l) => l,
            None => {
                // An agent an earlier orchestrator started goes on; else a new one.
                let started = tokio::select! {
                    r = async {
                        match self.reattach(session, view).await {
                            Ok(l) => Ok(l),
                            Err(_) => self.start(session).await,
                        }
                    } => r,
                    _ = interrupts.changed() => return Ok(Progress::Continue),
                };
                match started {
                    Ok(l) => l,
                    Err(why) => {
                        tracing::warn!(session_id = %sid, error = %why, "cannot start the ACP agent");
                        let e = SessionError::new(
                            SessionErrorType::Unknown,
                            why,
                            RetryStatus::Exhausted,
                        );
                        cx.end_turn(
                            sid,
                            view,
                            StopReason::RetriesExhausted,
                            "the agent did not start",
                            vec![ServerEvent::error(e)],
                        )
                        .await?;
                        return Ok(Progress::Continue);
                    }
                }
            }
        };
        let budget = live.shared().budget.is_some();
        let outcome = {
            let mut sh = live.shared();
            match sh.outcome.take() {
                Some((t, o)) if t == turn_no => {
                    sh.turn = None;
                    Some(o)
                }
                _ => None,
            }
        };
        if let Some(o) = outcome {
            let closed = matches!(o, Outcome::Closed);
            self.end(cx, session, view, &live, o).await?;
            if closed || budget {
                self.forget(sid);
            }
            return Ok(Progress::Continue);
        }
        if budget {
            // The gateway refused a call: the turn stops now (the agent was told to
            // cancel; its runner is stopped).
            let why = {
                let mut sh = live.shared();
                sh.turn = None;
                sh.budget.take()
            };
            if let Some(why) = why {
                cx.out_of_budget(session, view, why).await?;
            }
            self.forget(sid);
            return Ok(Progress::Continue);
        }
        // The user's answers to the agent's permission requests.
        let mut denied = Vec::new();
        for p in &turn.pending {
            let Some((allow, msg)) = &p.answer else {
                continue;
            };
            let ask = live.shared().asks.remove(&p.id);
            if let Some(ask) = ask {
                let _ = ask.reply.respond(choose(&ask.options, *allow));
                if !*allow && live.shared().resulted.insert(p.id.clone()) {
                    let why = match msg {
                        Some(m) => format!("The user denied this tool call: {m}"),
                        None => "The user denied this tool call.".to_string(),
                    };
                    denied.push(ServerEvent::tool_result(&p.id, why, true).into());
                }
            }
        }
        if !denied.is_empty() {
            cx.emit_events(sid, denied).await?;
            return Ok(Progress::Continue);
        }
        if live.shared().prompted == Some(turn_no) {
            return Ok(Progress::Wait);
        }
        {
            let mut sh = live.shared();
            sh.turn = Some(turn_no);
            sh.prompted = Some(turn_no);
            sh.turn_started = Some(Instant::now());
        }
        let text = if turn.input.is_empty() {
            "(no text)".to_string()
        } else {
            turn.input.join("\n\n")
        };
        let req = PromptRequest::new(
            live.acp_session.clone(),
            vec![ContentBlock::Text(TextContent::new(text))],
        );
        let (conn, tx) = (live.conn.clone(), live.tx.clone());
        let from = live.tap.consumed.load(std::sync::atomic::Ordering::SeqCst);
        let live = live.clone();
        tokio::spawn(async move {
            // Kept before the prompt goes: a restart replays the turn from here.
            live.hand_over(|h| {
                h.turn = Some(turn_no);
                h.turn_from = from;
            })
            .await;
            let result = conn.send_request(req).block_task().await;
            let _ = tx.send(FromAgent::PromptDone {
                turn: turn_no,
                result,
            });
        });
        Ok(Progress::Wait)
    }

    async fn interrupt(&self, _cx: &Ctx, session: &Session) -> ApiResult<()> {
        if let Some(live) = self.live(&session.id) {
            let _ = live
                .conn
                .send_notification(CancelNotification::new(live.acp_session.clone()));
            let asks: Vec<Ask> = {
                let mut sh = live.shared();
                sh.turn = None;
                sh.asks.drain().map(|(_, a)| a).collect()
            };
            for a in asks {
                let _ = a.reply.respond(RequestPermissionResponse::new(
                    RequestPermissionOutcome::Cancelled,
                ));
            }
        }
        Ok(())
    }
}

impl GatewayHooks for Acp {
    fn turn_secs(&self, session_id: &str) -> f64 {
        self.live(session_id)
            .and_then(|l| l.shared().turn_started)
            .map(|t| t.elapsed().as_secs_f64())
            .unwrap_or(0.0)
    }

    fn spent(&self, session_id: &str, why: Spent) {
        if let Some(live) = self.live(session_id) {
            live.shared().budget = Some(why);
            let _ = live
                .conn
                .send_notification(CancelNotification::new(live.acp_session.clone()));
            // A restart before the agent answers must know the answer is this turn's.
            let live = live.clone();
            tokio::spawn(async move { live.hand_over(|h| h.cancelled_turn = h.turn).await });
        }
        (self.kick_fn())(session_id);
    }
}

/// Whether a harness is an ACP one this Paddock can start.
pub(crate) fn startable(h: &HarnessKind) -> Result<(), String> {
    match h {
        HarnessKind::Acp(a) => launch(a).map(|_| ()),
        _ => Err("not an ACP harness".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prelude_writes_each_settings_file_from_the_environment() {
        let p = prelude(&[(".gemini/settings.json".into(), "{}".into())]);
        assert!(p.contains("mkdir -p \"$HOME/.gemini\""), "{p}");
        assert!(
            p.contains("\"$PADDOCK_ACP_FILE_0\" > \"$HOME/.gemini/settings.json\""),
            "{p}"
        );
        assert!(p.ends_with("exec \"$@\""));
    }
}
