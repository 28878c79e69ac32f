//! `paddock`: `paddock serve` runs the orchestrator; every other command is a client of
//! its API (like `docker` and `dockerd`).

mod client;
mod follow;
mod output;
mod render;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::process::ExitCode;

use client::{CliError, Client};
use follow::{Cursor, Follower, TurnWatcher};

#[derive(Parser)]
#[command(
    name = "paddock",
    version,
    about = "Managed agent runners, self-hosted",
    after_help = TOP_HELP
)]
struct Cli {
    /// The Paddock API to talk to.
    #[arg(
        long,
        global = true,
        env = "PADDOCK_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    url: String,
    /// Print raw JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// API token (sent as `Authorization: Bearer`).
    #[arg(long, global = true, env = "PADDOCK_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

const TOP_HELP: &str = "\
Give an agent a task and watch it work:
  paddock start --agent NAME_OR_ID --prompt \"fix the failing test\" --follow
  paddock sessions send SESSION --message \"now add a test\" --follow
  paddock sessions confirm SESSION TOOL_USE_ID --allow --follow

Exit codes: 0 ok (with --follow: the turn ended with end_turn); 1 the API refused the
request (4xx), or the turn ended with refusal / retries_exhausted / the session terminated;
2 usage error (unknown or ambiguous agent/environment name); 3 Paddock unreachable, or the
turn hit its budget (budget_reached); 4 server error, or tool uses await an answer
(requires_action). `paddock run` and `runners exec` exit with the command's code.";

/// The exit codes of `--follow` (`start`, `sessions send/confirm/tool-result`).
const FOLLOW_HELP: &str = "\
With --follow, exits when the agent's turn ends: 0 end_turn; 1 refusal, retries_exhausted,
or the session terminated/deleted; 3 budget_reached; 4 requires_action (the tool uses
awaiting an answer are printed on stderr, with the command that answers them).";

#[derive(Subcommand)]
enum Cmd {
    /// Run the orchestrator (API server).
    Serve(ServeArgs),
    /// Start a session of an agent with a first prompt; `--follow` shows the agent's
    /// work until its turn ends.
    #[command(after_help = FOLLOW_HELP)]
    Start(StartArgs),
    /// Manage agents.
    #[command(subcommand)]
    Agents(AgentCmd),
    /// Manage environments.
    #[command(subcommand, name = "envs", alias = "environments")]
    Envs(EnvCmd),
    /// Manage sessions and their events.
    #[command(subcommand)]
    Sessions(SessionCmd),
    /// Manage runners (sandboxes).
    #[command(subcommand)]
    Runners(RunnerCmd),
    /// The in-sandbox worker (started by backends; see docs/worker-protocol.md).
    #[command(disable_help_flag = true)]
    Worker {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// List runners (like a task executor's `list`).
    List {
        /// Only runners in this state (repeatable).
        #[arg(long = "status")]
        statuses: Vec<String>,
        /// Only runners on this backend.
        #[arg(long)]
        executor: Option<String>,
        /// One JSON object per line.
        #[arg(long)]
        jsonl: bool,
    },
    /// A runner's state, uptime, usage, cost and limits.
    Status { runner: String },
    /// A runner's logs; `--follow` streams new lines.
    Logs {
        runner: String,
        #[arg(long, default_value_t = 100)]
        lines: u32,
        #[arg(long, short)]
        follow: bool,
    },
    /// Stop a runner now (running commands are killed without a grace).
    Kill { runner: String },
    /// Destroy a runner and its workspace.
    Cleanup { runner: String },
    /// The fleet at a glance; `--watch` refreshes, `--stream` prints JSON lines.
    Dashboard {
        /// Refresh every SECS seconds.
        #[arg(long)]
        watch: Option<u64>,
        /// Print one JSON snapshot per line (every --watch seconds, default 5).
        #[arg(long)]
        stream: bool,
    },
    /// Snapshots of runner workspaces: create, list, restore, branch, delete.
    #[command(subcommand)]
    Snapshots(SnapshotCmd),
    /// Run one command in a new runner: provision, stream its output, exit with its
    /// code, clean up (unless --keep).
    Run(RunArgs),
}

#[derive(Args)]
struct RunArgs {
    /// Execution profile (default: the server's default profile).
    #[arg(long)]
    profile: Option<String>,
    /// Backend to run on (picks the first profile that uses it).
    #[arg(long)]
    executor: Option<String>,
    /// Environment to take variables, limits and network from.
    #[arg(long = "env")]
    environment: Option<String>,
    /// Keep the runner afterwards (its id is printed on stderr).
    #[arg(long)]
    keep: bool,
    /// Kill the command after this many seconds.
    #[arg(long)]
    timeout: Option<u64>,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

#[derive(Args)]
struct StartArgs {
    /// The agent: an id (`agent_…`) or a name.
    #[arg(long)]
    agent: String,
    /// The environment: an id (`env_…`) or a name [default: `default`, created when
    /// missing, with unrestricted networking].
    #[arg(long = "env")]
    environment: Option<String>,
    /// The first user message.
    #[arg(long)]
    prompt: String,
    /// The session's title.
    #[arg(long)]
    title: Option<String>,
    #[command(flatten)]
    follow: FollowArgs,
}

#[derive(Args)]
struct FollowArgs {
    /// Show the events as they come until the agent's turn ends (exit code: see below).
    #[arg(long, short)]
    follow: bool,
    /// With --follow: also show progress (model requests and their tokens, usage, runner
    /// changes).
    #[arg(long, short, requires = "follow")]
    verbose: bool,
}

#[derive(Args)]
struct ServeArgs {
    /// A paddock.toml config file (PADDOCK_* variables override it).
    #[arg(long, env = "PADDOCK_CONFIG")]
    config: Option<PathBuf>,
    /// Listen address, e.g. 127.0.0.1:8080.
    #[arg(long)]
    listen: Option<String>,
    /// Data directory (database, workspaces).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Args)]
struct ListArgs {
    /// Page size.
    #[arg(long, default_value_t = 20)]
    limit: u32,
    /// Follow `next_page` until the end.
    #[arg(long)]
    all: bool,
    /// Include archived records.
    #[arg(long)]
    include_archived: bool,
}

#[derive(Subcommand)]
enum AgentCmd {
    /// Create an agent.
    Create {
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        model: Option<String>,
        #[arg(long)]
        system: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// Who runs its sessions: `builtin` (default), or an ACP agent in the runner:
        /// `acp:openclaw`, `acp:claude-code`, `acp:codex`, `acp:gemini` (docs/agents-acp.md).
        #[arg(long)]
        harness: Option<String>,
        /// Tool shorthand: `messaging`, `standard` or `full`.
        #[arg(long)]
        tool_profile: Option<String>,
        /// A JSON file with the full request body (flags override its fields).
        #[arg(long)]
        file: Option<PathBuf>,
    },
    List(ListArgs),
    Get {
        id: String,
        #[arg(long)]
        version: Option<u32>,
    },
    /// Update an agent; `--version` guards against overwriting someone else's change.
    Update {
        id: String,
        #[arg(long)]
        version: Option<u32>,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        model: Option<String>,
        #[arg(long)]
        system: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        file: Option<PathBuf>,
    },
    Archive {
        id: String,
    },
    Delete {
        id: String,
    },
    Versions {
        id: String,
    },
}

#[derive(Subcommand)]
enum EnvCmd {
    Create {
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// Limit egress to these hosts (repeatable); without it networking is unrestricted.
        #[arg(long = "allow-host")]
        allow_hosts: Vec<String>,
        #[arg(long)]
        file: Option<PathBuf>,
    },
    List(ListArgs),
    Get {
        id: String,
    },
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        file: Option<PathBuf>,
    },
    Archive {
        id: String,
    },
    Delete {
        id: String,
    },
}

#[derive(Subcommand)]
enum SessionCmd {
    /// Create a session (see also `paddock start`).
    Create {
        /// Agent id (latest version is pinned).
        #[arg(long)]
        agent: String,
        /// Pin this agent version instead of the latest.
        #[arg(long)]
        agent_version: Option<u32>,
        #[arg(long = "env")]
        environment: String,
        #[arg(long)]
        title: Option<String>,
        /// A first user message.
        #[arg(long)]
        message: Option<String>,
    },
    /// List sessions, newest first.
    List {
        #[command(flatten)]
        list: ListArgs,
        /// Only sessions in these statuses (repeatable).
        #[arg(long = "status")]
        statuses: Vec<String>,
        #[arg(long)]
        agent: Option<String>,
    },
    /// A session: status, agent, title.
    Get { id: String },
    /// Change a session's title.
    Update {
        id: String,
        #[arg(long)]
        title: Option<String>,
    },
    /// Send a user message (or an interrupt) to a session; `--follow` shows the agent's
    /// work until its turn ends.
    #[command(after_help = FOLLOW_HELP)]
    Send {
        id: String,
        /// The message text (same as --message).
        #[arg(value_name = "MESSAGE")]
        text: Option<String>,
        /// The message text.
        #[arg(long, conflicts_with = "text")]
        message: Option<String>,
        /// Send an interrupt instead (same as `paddock sessions interrupt`).
        #[arg(long, conflicts_with_all = ["text", "message"])]
        interrupt: bool,
        /// A JSON file with `{"events": [...]}`.
        #[arg(long, conflicts_with_all = ["text", "message", "interrupt"])]
        file: Option<PathBuf>,
        /// Makes a retried send safe.
        #[arg(long)]
        idempotency_key: Option<String>,
        #[command(flatten)]
        follow: FollowArgs,
    },
    /// Interrupt the agent's current turn.
    Interrupt { id: String },
    /// Allow or deny a tool use that awaits confirmation (`requires_action`).
    #[command(after_help = FOLLOW_HELP)]
    Confirm {
        id: String,
        /// The id of the `agent.tool_use` event.
        tool_use_id: String,
        #[arg(long, conflicts_with = "deny", required_unless_present = "deny")]
        allow: bool,
        #[arg(long, required_unless_present = "allow")]
        deny: bool,
        /// Why it is denied (told to the agent); only with --deny.
        #[arg(long, conflicts_with = "allow")]
        message: Option<String>,
        #[command(flatten)]
        follow: FollowArgs,
    },
    /// Answer a custom tool use (`agent.custom_tool_use`) with its result.
    #[command(after_help = FOLLOW_HELP)]
    ToolResult {
        id: String,
        /// The id of the `agent.custom_tool_use` event.
        custom_tool_use_id: String,
        /// The result, as text.
        #[arg(long)]
        content: String,
        /// The tool failed; `--content` says why.
        #[arg(long)]
        error: bool,
        #[command(flatten)]
        follow: FollowArgs,
    },
    /// Print a session's events as a log; `--follow` prints them as a readable
    /// transcript (tool calls and results) and keeps streaming until the session ends.
    Events {
        id: String,
        #[arg(long, short)]
        follow: bool,
        /// With --follow: also show progress (model requests and their tokens, usage,
        /// runner changes).
        #[arg(long, short, requires = "follow")]
        verbose: bool,
    },
    /// Archive a session (it keeps its events).
    Archive { id: String },
    /// Delete a session and its events.
    Delete { id: String },
}

#[derive(Subcommand)]
enum SnapshotCmd {
    Create {
        runner: String,
        #[arg(long)]
        label: Option<String>,
    },
    List {
        #[arg(long)]
        runner: Option<String>,
    },
    Get {
        id: String,
    },
    /// Restore a runner's workspace to a snapshot.
    Restore {
        runner: String,
        snapshot: String,
    },
    /// A new runner whose workspace starts as the snapshot.
    Branch {
        snapshot: String,
        #[arg(long)]
        profile: Option<String>,
    },
    Delete {
        id: String,
    },
}

#[derive(Subcommand)]
enum RunnerCmd {
    Restart {
        id: String,
    },
    /// Provision a runner.
    Create {
        #[arg(long)]
        profile: Option<String>,
        #[arg(long = "env")]
        environment: Option<String>,
        #[arg(long)]
        session: Option<String>,
    },
    List {
        #[command(flatten)]
        list: ListArgs,
        #[arg(long = "state")]
        states: Vec<String>,
    },
    Get {
        id: String,
    },
    Stop {
        id: String,
    },
    Start {
        id: String,
    },
    /// Destroy a runner and its workspace (idempotent). The teardown goes on in the
    /// background (the runner shows `destroying`) unless --wait is given.
    Destroy {
        id: String,
        /// Return once the runner is destroyed.
        #[arg(long)]
        wait: bool,
    },
    /// Run a command in a runner, streaming its output; exits with its code.
    Exec {
        id: String,
        #[arg(long)]
        timeout: Option<u64>,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    Logs {
        id: String,
        #[arg(long, default_value_t = 200)]
        tail: u32,
    },
}

fn read_body(file: &Option<PathBuf>) -> anyhow::Result<Map<String, Value>> {
    let Some(path) = file else {
        return Ok(Map::new());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    match serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))? {
        Value::Object(m) => Ok(m),
        _ => anyhow::bail!("{} must hold a JSON object", path.display()),
    }
}

fn set(body: &mut Map<String, Value>, key: &str, v: Option<impl Into<Value>>) {
    if let Some(v) = v {
        body.insert(key.to_string(), v.into());
    }
}

fn list_query(l: &ListArgs) -> Vec<(String, String)> {
    let mut q = vec![("limit".to_string(), l.limit.to_string())];
    if l.include_archived {
        q.push(("include_archived".into(), "true".into()));
    }
    q
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut env: Vec<(String, String)> = std::env::vars().collect();
    if let Some(l) = args.listen {
        env.push(("PADDOCK_LISTEN".into(), l));
    }
    if let Some(d) = args.data_dir {
        env.push(("PADDOCK_DATA_DIR".into(), d.display().to_string()));
    }
    // Without --config, a paddock.toml in the working directory is used when present.
    let file = args.config.or_else(|| {
        let local = PathBuf::from("paddock.toml");
        local.is_file().then_some(local)
    });
    let config = paddock_server::Config::load(file.as_deref(), env)?;
    paddock_server::init_logging(&config);
    tracing::info!(
        data_dir = %config.data_dir.display(),
        listen = %config.listen,
        config_file = ?file,
        "starting paddock"
    );
    let served = async {
        let server = paddock_server::Server::bind(config).await?;
        server.run(paddock_server::shutdown_signal()).await
    }
    .await;
    // Sends the spans still buffered by the OpenTelemetry exporter, if one runs.
    paddock_server::shutdown_tracing();
    Ok(served?)
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let c = Client::new(&cli.url, cli.json, cli.token.as_deref());
    match cli.cmd {
        Cmd::Serve(args) => serve(args).await.map_err(CliError::Other)?,
        Cmd::Agents(cmd) => match cmd {
            AgentCmd::Create {
                name,
                model,
                system,
                description,
                harness,
                tool_profile,
                file,
            } => {
                let mut b = read_body(&file)?;
                set(&mut b, "name", name);
                set(&mut b, "model", model);
                set(&mut b, "system", system);
                set(&mut b, "description", description);
                set(&mut b, "harness", harness);
                set(&mut b, "tool_profile", tool_profile);
                c.show(
                    c.post("/v1/agents", &Value::Object(b), None).await?,
                    output::AGENT,
                );
            }
            AgentCmd::List(l) => {
                c.list("/v1/agents", list_query(&l), l.all, output::AGENT)
                    .await?
            }
            AgentCmd::Get { id, version } => {
                let q: Vec<(String, String)> = version
                    .map(|v| ("version".into(), v.to_string()))
                    .into_iter()
                    .collect();
                c.show(c.get(&format!("/v1/agents/{id}"), &q).await?, output::AGENT);
            }
            AgentCmd::Update {
                id,
                version,
                name,
                model,
                system,
                description,
                file,
            } => {
                let mut b = read_body(&file)?;
                set(&mut b, "version", version);
                set(&mut b, "name", name);
                set(&mut b, "model", model);
                set(&mut b, "system", system);
                set(&mut b, "description", description);
                c.show(
                    c.post(&format!("/v1/agents/{id}"), &Value::Object(b), None)
                        .await?,
                    output::AGENT,
                );
            }
            AgentCmd::Archive { id } => c.show(
                c.post(&format!("/v1/agents/{id}/archive"), &json!({}), None)
                    .await?,
                output::AGENT,
            ),
            AgentCmd::Delete { id } => c.show(
                c.delete(&format!("/v1/agents/{id}")).await?,
                output::DELETED,
            ),
            AgentCmd::Versions { id } => {
                c.list(
                    &format!("/v1/agents/{id}/versions"),
                    vec![],
                    true,
                    output::AGENT,
                )
                .await?
            }
        },
        Cmd::Envs(cmd) => match cmd {
            EnvCmd::Create {
                name,
                description,
                allow_hosts,
                file,
            } => {
                let mut b = read_body(&file)?;
                set(&mut b, "name", name);
                set(&mut b, "description", description);
                if !allow_hosts.is_empty() {
                    b.insert(
                        "config".into(),
                        json!({"type": "cloud", "networking": {"type": "limited", "allowed_hosts": allow_hosts}}),
                    );
                }
                c.show(
                    c.post("/v1/environments", &Value::Object(b), None).await?,
                    output::ENVIRONMENT,
                );
            }
            EnvCmd::List(l) => {
                c.list(
                    "/v1/environments",
                    list_query(&l),
                    l.all,
                    output::ENVIRONMENT,
                )
                .await?
            }
            EnvCmd::Get { id } => c.show(
                c.get(&format!("/v1/environments/{id}"), &[]).await?,
                output::ENVIRONMENT,
            ),
            EnvCmd::Update {
                id,
                name,
                description,
                file,
            } => {
                let mut b = read_body(&file)?;
                set(&mut b, "name", name);
                set(&mut b, "description", description);
                c.show(
                    c.post(&format!("/v1/environments/{id}"), &Value::Object(b), None)
                        .await?,
                    output::ENVIRONMENT,
                );
            }
            EnvCmd::Archive { id } => c.show(
                c.post(&format!("/v1/environments/{id}/archive"), &json!({}), None)
                    .await?,
                output::ENVIRONMENT,
            ),
            EnvCmd::Delete { id } => c.show(
                c.delete(&format!("/v1/environments/{id}")).await?,
                output::DELETED,
            ),
        },
        Cmd::Sessions(cmd) => match cmd {
            SessionCmd::Create {
                agent,
                agent_version,
                environment,
                title,
                message,
            } => {
                let agent = match agent_version {
                    Some(v) => json!({"type": "agent", "id": agent, "version": v}),
                    None => json!(agent),
                };
                let mut b = json!({"agent": agent, "environment_id": environment});
                if let Some(t) = title {
                    b["title"] = json!(t);
                }
                if let Some(m) = message {
                    b["initial_events"] =
                        json!([{"type": "user.message", "content": [{"type": "text", "text": m}]}]);
                }
                c.show(c.post("/v1/sessions", &b, None).await?, output::SESSION);
            }
            SessionCmd::List {
                list,
                statuses,
                agent,
            } => {
                let mut q = list_query(&list);
                q.extend(statuses.into_iter().map(|s| ("statuses[]".to_string(), s)));
                if let Some(a) = agent {
                    q.push(("agent_id".into(), a));
                }
                c.list("/v1/sessions", q, list.all, output::SESSION).await?
            }
            SessionCmd::Get { id } => c.show(
                c.get(&format!("/v1/sessions/{id}"), &[]).await?,
                output::SESSION,
            ),
            SessionCmd::Update { id, title } => {
                let mut b = Map::new();
                set(&mut b, "title", title);
                c.show(
                    c.post(&format!("/v1/sessions/{id}"), &Value::Object(b), None)
                        .await?,
                    output::SESSION,
                );
            }
            SessionCmd::Send {
                id,
                text,
                message,
                interrupt,
                file,
                idempotency_key,
                follow,
            } => {
                let body = if let Some(f) = &file {
                    Value::Object(read_body(&Some(f.clone()))?)
                } else if interrupt {
                    json!({"events": [{"type": "user.interrupt"}]})
                } else {
                    let text = message.or(text).ok_or_else(|| {
                        CliError::Usage("give a message, --interrupt or --file".into())
                    })?;
                    json!({"events": [user_message(&text)]})
                };
                send_events(&c, &id, &body, idempotency_key.as_deref(), &follow).await?
            }
            SessionCmd::Interrupt { id } => {
                let body = json!({"events": [{"type": "user.interrupt"}]});
                send_events(&c, &id, &body, None, &FollowArgs::none()).await?
            }
            SessionCmd::Confirm {
                id,
                tool_use_id,
                allow,
                deny,
                message,
                follow,
            } => {
                let body = json!({"events": [confirmation(&tool_use_id, allow, deny, message)?]});
                send_events(&c, &id, &body, None, &follow).await?
            }
            SessionCmd::ToolResult {
                id,
                custom_tool_use_id,
                content,
                error,
                follow,
            } => {
                let body = json!({"events": [{
                    "type": "user.custom_tool_result",
                    "custom_tool_use_id": custom_tool_use_id,
                    "content": [{"type": "text", "text": content}],
                    "is_error": error,
                }]});
                send_events(&c, &id, &body, None, &follow).await?
            }
            SessionCmd::Events {
                id, follow: false, ..
            } => c.events(&id).await?,
            SessionCmd::Events { id, verbose, .. } => {
                let resp = follow::open(&c, &id, &Cursor::Start).await?;
                let follower = Follower {
                    client: &c,
                    session: id,
                    json: cli.json,
                    style: render::Style::for_stdout(verbose),
                    turn: None,
                    fallback: Cursor::Start,
                };
                follower.run(resp).await?;
            }
            SessionCmd::Archive { id } => c.show(
                c.post(&format!("/v1/sessions/{id}/archive"), &json!({}), None)
                    .await?,
                output::SESSION,
            ),
            SessionCmd::Delete { id } => c.show(
                c.delete(&format!("/v1/sessions/{id}")).await?,
                output::DELETED,
            ),
        },
        Cmd::Runners(cmd) => match cmd {
            RunnerCmd::Create {
                profile,
                environment,
                session,
            } => {
                let mut b = Map::new();
                set(&mut b, "execution_profile", profile);
                set(&mut b, "environment_id", environment);
                set(&mut b, "session_id", session);
                let r = c.post("/v1/runners", &Value::Object(b), None).await?;
                output::warn_unisolated(&r);
                c.show(r, output::RUNNER);
            }
            RunnerCmd::List { list, states } => {
                let mut q = list_query(&list);
                q.retain(|(k, _)| k != "include_archived");
                q.extend(states.into_iter().map(|s| ("states[]".to_string(), s)));
                c.list("/v1/runners", q, list.all, output::RUNNER).await?
            }
            RunnerCmd::Get { id } => {
                let r = c.get(&format!("/v1/runners/{id}"), &[]).await?;
                output::warn_unisolated(&r);
                c.show(r, output::RUNNER)
            }
            RunnerCmd::Restart { id } => c.show(
                c.post(&format!("/v1/runners/{id}/restart"), &json!({}), None)
                    .await?,
                output::RUNNER,
            ),
            RunnerCmd::Stop { id } => c.show(
                c.post(&format!("/v1/runners/{id}/stop"), &json!({}), None)
                    .await?,
                output::RUNNER,
            ),
            RunnerCmd::Start { id } => c.show(
                c.post(&format!("/v1/runners/{id}/start"), &json!({}), None)
                    .await?,
                output::RUNNER,
            ),
            RunnerCmd::Destroy { id, wait } => c.show(
                c.delete(&format!(
                    "/v1/runners/{id}{}",
                    if wait { "?wait=true" } else { "" }
                ))
                .await?,
                output::RUNNER,
            ),
            RunnerCmd::Exec {
                id,
                timeout,
                command,
            } => {
                let code = c.exec(&id, &command, timeout).await?;
                return Err(CliError::Exit(code));
            }
            RunnerCmd::Logs { id, tail } => c.logs(&id, tail, false).await?,
        },
        Cmd::Worker { .. } => unreachable_worker()?,
        Cmd::List {
            statuses,
            executor,
            jsonl,
        } => {
            let mut q: Vec<(String, String)> = statuses
                .into_iter()
                .map(|s| ("states[]".to_string(), s))
                .collect();
            if let Some(e) = executor {
                q.push(("backend".into(), e));
            }
            q.push(("limit".into(), "100".into()));
            if jsonl {
                let page = c.get("/v1/runners", &q).await?;
                for r in page["data"].as_array().into_iter().flatten() {
                    println!("{r}");
                }
            } else {
                c.list("/v1/runners", q, true, output::RUNNER).await?
            }
        }
        Cmd::Status { runner } => {
            let r = c.get(&format!("/v1/runners/{runner}"), &[]).await?;
            output::warn_unisolated(&r);
            if cli.json {
                output::print_json(&r);
            } else {
                output::print_status(&r);
            }
        }
        Cmd::Logs {
            runner,
            lines,
            follow,
        } => c.logs(&runner, lines, follow).await?,
        Cmd::Kill { runner } => c.show(
            c.post(
                &format!("/v1/runners/{runner}/stop"),
                &json!({"timeout_secs": 0}),
                None,
            )
            .await?,
            output::RUNNER,
        ),
        Cmd::Cleanup { runner } => c.show(
            c.delete(&format!("/v1/runners/{runner}")).await?,
            output::RUNNER,
        ),
        Cmd::Dashboard { watch, stream } => c.dashboard(watch, stream).await?,
        Cmd::Snapshots(cmd) => match cmd {
            SnapshotCmd::Create { runner, label } => {
                let mut b = Map::new();
                set(&mut b, "label", label);
                c.show(
                    c.post(
                        &format!("/v1/runners/{runner}/snapshots"),
                        &Value::Object(b),
                        None,
                    )
                    .await?,
                    output::SNAPSHOT,
                )
            }
            SnapshotCmd::List { runner } => {
                let q: Vec<(String, String)> = runner
                    .map(|r| ("runner_id".to_string(), r))
                    .into_iter()
                    .collect();
                c.list("/v1/snapshots", q, true, output::SNAPSHOT).await?
            }
            SnapshotCmd::Get { id } => c.show(
                c.get(&format!("/v1/snapshots/{id}"), &[]).await?,
                output::SNAPSHOT,
            ),
            SnapshotCmd::Restore { runner, snapshot } => c.show(
                c.post(
                    &format!("/v1/runners/{runner}/restore"),
                    &json!({"snapshot_id": snapshot}),
                    None,
                )
                .await?,
                output::RUNNER,
            ),
            SnapshotCmd::Branch { snapshot, profile } => {
                let mut b = Map::new();
                set(&mut b, "execution_profile", profile);
                c.show(
                    c.post(
                        &format!("/v1/snapshots/{snapshot}/branch"),
                        &Value::Object(b),
                        None,
                    )
                    .await?,
                    output::RUNNER,
                )
            }
            SnapshotCmd::Delete { id } => c.show(
                c.delete(&format!("/v1/snapshots/{id}")).await?,
                output::DELETED,
            ),
        },
        Cmd::Run(args) => {
            let code = run_once(&c, args).await?;
            return Err(CliError::Exit(code));
        }
        Cmd::Start(args) => start(&c, args).await?,
    }
    Ok(())
}

impl FollowArgs {
    fn none() -> Self {
        FollowArgs {
            follow: false,
            verbose: false,
        }
    }
}

fn user_message(text: &str) -> Value {
    json!({"type": "user.message", "content": [{"type": "text", "text": text}]})
}

/// A `user.tool_confirmation` (`deny_message` only with a denial).
fn confirmation(
    tool_use_id: &str,
    allow: bool,
    deny: bool,
    message: Option<String>,
) -> Result<Value, CliError> {
    let mut e = json!({"type": "user.tool_confirmation", "tool_use_id": tool_use_id});
    match (allow, deny) {
        (true, false) if message.is_none() => e["result"] = json!("allow"),
        (false, true) => {
            e["result"] = json!("deny");
            if let Some(m) = message {
                e["deny_message"] = json!(m);
            }
        }
        (true, false) => return Err(CliError::Usage("--message goes with --deny".into())),
        _ => return Err(CliError::Usage("give one of --allow and --deny".into())),
    }
    Ok(e)
}

/// Sends `body` (`{"events": [...]}`) to a session. Without `--follow` prints the
/// stored events; with it, subscribes first (so nothing is missed), sends, then prints
/// the session's events until the turn ends and exits with the turn's code.
async fn send_events(
    c: &Client,
    session: &str,
    body: &Value,
    idempotency_key: Option<&str>,
    f: &FollowArgs,
) -> Result<(), CliError> {
    let stream = if f.follow {
        Some(follow::open(c, session, &Cursor::End).await?)
    } else {
        None
    };
    let out = c
        .post(
            &format!("/v1/sessions/{session}/events"),
            body,
            idempotency_key,
        )
        .await?;
    let sent = sent_ids(&out);
    let Some(stream) = stream else {
        if c.json() {
            output::print_json(&out);
        } else {
            for e in out["data"].as_array().into_iter().flatten() {
                println!("{}", output::event_line(e));
            }
        }
        return Ok(());
    };
    let fallback = sent
        .last()
        .map(|id| Cursor::After(id.clone()))
        .unwrap_or(Cursor::End);
    follow_turn(c, session, stream, sent, fallback, f.verbose).await
}

/// The ids of the events a send stored.
fn sent_ids(out: &Value) -> Vec<String> {
    out["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["id"].as_str().map(str::to_string))
        .collect()
}

/// Prints the session's events from `stream` until the turn started by `sent` ends;
/// a turn that did not end with `end_turn` becomes `CliError::Exit`.
async fn follow_turn(
    c: &Client,
    session: &str,
    stream: reqwest::Response,
    sent: Vec<String>,
    fallback: Cursor,
    verbose: bool,
) -> Result<(), CliError> {
    let follower = Follower {
        client: c,
        session: session.to_string(),
        json: c.json(),
        style: render::Style::for_stdout(verbose),
        turn: Some(TurnWatcher::new(sent)),
        fallback,
    };
    match follower.run(stream).await? {
        0 => Ok(()),
        code => Err(CliError::Exit(code)),
    }
}

/// The `id` of the one record in `list` whose `name` is `name`: `Ok(None)` when there
/// is none, a usage error naming the candidates when there are several.
fn pick_named(list: &[Value], name: &str, what: &str) -> Result<Option<String>, CliError> {
    let ids: Vec<&str> = list
        .iter()
        .filter(|r| r["name"].as_str() == Some(name))
        .filter_map(|r| r["id"].as_str())
        .collect();
    match ids.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.to_string())),
        many => Err(CliError::Usage(format!(
            "{} {what}s are named {name:?} ({}); give an id instead",
            many.len(),
            many.join(", ")
        ))),
    }
}

/// Every (unarchived) record of a list endpoint, following `next_page`.
async fn list_all(c: &Client, path: &str) -> Result<Vec<Value>, CliError> {
    let mut query = vec![("limit".to_string(), "100".to_string())];
    let mut rows = vec![];
    loop {
        let page = c.get(path, &query).await?;
        rows.extend(page["data"].as_array().cloned().unwrap_or_default());
        match page["next_page"].as_str().filter(|n| !n.is_empty()) {
            Some(next) => {
                query.retain(|(k, _)| k != "page");
                query.push(("page".into(), next.to_string()));
            }
            None => return Ok(rows),
        }
    }
}

/// An agent id, given an id (`agent_…`) or a unique name.
async fn resolve_agent(c: &Client, agent: &str) -> Result<String, CliError> {
    if agent.starts_with("agent_") {
        return Ok(agent.to_string());
    }
    let all = list_all(c, "/v1/agents").await?;
    pick_named(&all, agent, "agent")?.ok_or_else(|| {
        CliError::Usage(format!(
            "no agent is named {agent:?} (see `paddock agents list`)"
        ))
    })
}

/// The environment `default` is created on first use.
const DEFAULT_ENV: &str = "default";

/// An environment id, given an id (`env_…`) or a unique name; the environment named
/// `default` is created (cloud, unrestricted networking) when it does not exist.
async fn resolve_environment(c: &Client, env: Option<&str>) -> Result<String, CliError> {
    let name = env.unwrap_or(DEFAULT_ENV);
    if name.starts_with("env_") {
        return Ok(name.to_string());
    }
    let all = list_all(c, "/v1/environments").await?;
    if name == DEFAULT_ENV {
        // Two `paddock start` racing may both create it: use the oldest.
        let oldest = all
            .iter()
            .filter(|e| e["name"].as_str() == Some(DEFAULT_ENV))
            .min_by(|a, b| a["created_at"].as_str().cmp(&b["created_at"].as_str()));
        if let Some(id) = oldest.and_then(|e| e["id"].as_str()) {
            return Ok(id.to_string());
        }
        let created = c
            .post(
                "/v1/environments",
                &json!({
                    "name": DEFAULT_ENV,
                    "config": {"type": "cloud", "networking": {"type": "unrestricted"}},
                }),
                None,
            )
            .await?;
        let id = created["id"].as_str().unwrap_or_default().to_string();
        eprintln!("paddock: created environment {DEFAULT_ENV:?} ({id})");
        return Ok(id);
    }
    pick_named(&all, name, "environment")?.ok_or_else(|| {
        CliError::Usage(format!(
            "no environment is named {name:?} (see `paddock envs list`)"
        ))
    })
}

/// `paddock start`: a session of the agent with a first prompt.
async fn start(c: &Client, a: StartArgs) -> Result<(), CliError> {
    let agent = resolve_agent(c, &a.agent).await?;
    let environment = resolve_environment(c, a.environment.as_deref()).await?;
    let mut body = json!({"agent": agent, "environment_id": environment});
    if let Some(t) = a.title {
        body["title"] = json!(t);
    }
    let session = c.post("/v1/sessions", &body, None).await?;
    let sid = session["id"].as_str().unwrap_or_default().to_string();
    let out = match c
        .post(
            &format!("/v1/sessions/{sid}/events"),
            &json!({"events": [user_message(&a.prompt)]}),
            None,
        )
        .await
    {
        Ok(out) => out,
        Err(e) => {
            eprintln!("paddock: session {sid} was created but the prompt was not sent");
            return Err(e);
        }
    };
    if !a.follow.follow {
        if c.json() {
            output::print_json(&session);
        } else {
            println!("{sid}");
        }
        return Ok(());
    }
    eprintln!("paddock: session {sid}");
    // From the start of the log: the prompt was sent before the stream opened.
    let stream = follow::open(c, &sid, &Cursor::Start).await?;
    follow_turn(
        c,
        &sid,
        stream,
        sent_ids(&out),
        Cursor::Start,
        a.follow.verbose,
    )
    .await
}

/// `worker` is dispatched in `main` before the client runs; reaching it here is a bug.
fn unreachable_worker() -> Result<(), CliError> {
    Err(CliError::Usage(
        "`paddock worker` must be the first argument".into(),
    ))
}

/// `paddock run`: provision, stream, clean up; returns the command's exit code.
async fn run_once(c: &Client, a: RunArgs) -> Result<u8, CliError> {
    let mut profile = a.profile;
    if let Some(exec) = &a.executor {
        let profiles = c.get("/v1/profiles", &[]).await?;
        let list = profiles["data"].as_array().cloned().unwrap_or_default();
        let fits = |p: &Value| p["backend"].as_str() == Some(exec.as_str());
        match &profile {
            Some(name) => {
                let p = list
                    .iter()
                    .find(|p| p["name"].as_str() == Some(name.as_str()));
                if !p.is_some_and(fits) {
                    return Err(CliError::Usage(format!(
                        "profile {name:?} does not run on executor {exec:?}"
                    )));
                }
            }
            None => {
                let p = list.iter().find(|p| fits(p)).ok_or_else(|| {
                    CliError::Usage(format!("no execution profile runs on executor {exec:?}"))
                })?;
                profile = p["name"].as_str().map(str::to_string);
            }
        }
    }
    let mut b = Map::new();
    set(&mut b, "execution_profile", profile);
    set(&mut b, "environment_id", a.environment);
    let r = c.post("/v1/runners", &Value::Object(b), None).await?;
    output::warn_unisolated(&r);
    let id = r["id"].as_str().unwrap_or_default().to_string();
    let result = if r["state"] != "running" {
        Err(CliError::Usage(format!(
            "runner {id} did not start: {}",
            r["error"].as_str().unwrap_or("unknown reason")
        )))
    } else {
        c.exec(&id, &a.command, a.timeout).await
    };
    if a.keep {
        eprintln!("runner {id} kept");
    } else if let Err(e) = c.delete(&format!("/v1/runners/{id}")).await {
        eprintln!("warning: could not destroy runner {id}: {e}");
    }
    result
}

fn main() -> ExitCode {
    // `paddock worker …` is the in-sandbox worker: it owns its runtime and arguments.
    let mut argv = std::env::args().skip(1);
    if argv.next().as_deref() == Some("worker") {
        return paddock_worker::cli::main(argv);
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Exit(code)) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("paddock").chain(args.iter().copied()))
    }

    fn session_cmd(args: &[&str]) -> SessionCmd {
        match parse(args).map(|c| c.cmd) {
            Ok(Cmd::Sessions(s)) => s,
            Ok(_) => panic!("not a sessions command: {args:?}"),
            Err(e) => panic!("{args:?}: {e}"),
        }
    }

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn start_arguments() {
        let Ok(Cli {
            cmd: Cmd::Start(a),
            json,
            ..
        }) = parse(&["start", "--agent", "helper", "--prompt", "fix it"])
        else {
            panic!("start should parse");
        };
        assert_eq!((a.agent.as_str(), a.prompt.as_str()), ("helper", "fix it"));
        assert_eq!((a.environment, a.title), (None, None));
        assert!(!a.follow.follow && !a.follow.verbose && !json);

        let Ok(Cli {
            cmd: Cmd::Start(a),
            json,
            ..
        }) = parse(&[
            "start", "--agent", "agent_1", "--env", "env_2", "--prompt", "p", "--title", "t",
            "--follow", "-v", "--json",
        ])
        else {
            panic!("start should parse");
        };
        assert_eq!(a.environment.as_deref(), Some("env_2"));
        assert_eq!(a.title.as_deref(), Some("t"));
        assert!(a.follow.follow && a.follow.verbose && json);

        for bad in [
            &["start", "--agent", "a"][..],
            &["start", "--prompt", "p"],
            &["start", "--agent", "a", "--prompt", "p", "--verbose"],
        ] {
            let e = parse(bad).err().map(|e| e.exit_code());
            assert_eq!(e, Some(2), "{bad:?} should be a usage error");
        }
    }

    #[test]
    fn send_arguments() {
        for args in [
            &["sessions", "send", "sesn_1", "hello"][..],
            &["sessions", "send", "sesn_1", "--message", "hello"],
        ] {
            let SessionCmd::Send {
                id,
                text,
                message,
                follow,
                ..
            } = session_cmd(args)
            else {
                panic!("send should parse");
            };
            assert_eq!(id, "sesn_1");
            assert_eq!(message.or(text).as_deref(), Some("hello"));
            assert!(!follow.follow);
        }
        let SessionCmd::Send {
            follow, interrupt, ..
        } = session_cmd(&["sessions", "send", "s", "--message", "m", "-f", "--verbose"])
        else {
            panic!("send should parse");
        };
        assert!(follow.follow && follow.verbose && !interrupt);
        assert!(parse(&["sessions", "send", "s", "a", "--message", "b"]).is_err());
        assert!(parse(&["sessions", "send", "s", "--message", "b", "--interrupt"]).is_err());
        assert!(matches!(
            session_cmd(&["sessions", "interrupt", "sesn_1"]),
            SessionCmd::Interrupt { id } if id == "sesn_1"
        ));
    }

    #[test]
    fn confirm_arguments() {
        let SessionCmd::Confirm {
            id,
            tool_use_id,
            allow,
            deny,
            message,
            follow,
        } = session_cmd(&[
            "sessions", "confirm", "sesn_1", "evt_2", "--allow", "--follow",
        ])
        else {
            panic!("confirm should parse");
        };
        assert_eq!((id.as_str(), tool_use_id.as_str()), ("sesn_1", "evt_2"));
        assert!(allow && !deny && message.is_none() && follow.follow);
        assert_eq!(
            confirmation(&tool_use_id, allow, deny, message).ok(),
            Some(
                json!({"type": "user.tool_confirmation", "tool_use_id": "evt_2", "result": "allow"})
            )
        );

        let SessionCmd::Confirm {
            tool_use_id,
            allow,
            deny,
            message,
            ..
        } = session_cmd(&[
            "sessions",
            "confirm",
            "s",
            "evt_2",
            "--deny",
            "--message",
            "no",
        ])
        else {
            panic!("confirm should parse");
        };
        assert_eq!(
            confirmation(&tool_use_id, allow, deny, message).ok(),
            Some(
                json!({"type": "user.tool_confirmation", "tool_use_id": "evt_2",
                "result": "deny", "deny_message": "no"})
            )
        );

        for bad in [
            &["sessions", "confirm", "s", "e"][..],
            &["sessions", "confirm", "s", "e", "--allow", "--deny"],
            &["sessions", "confirm", "s", "e", "--allow", "--message", "m"],
            &["sessions", "confirm", "s", "--allow"],
        ] {
            let e = parse(bad).err().map(|e| e.exit_code());
            assert_eq!(e, Some(2), "{bad:?} should be a usage error");
        }
        assert!(confirmation("e", true, false, Some("m".into())).is_err());
        assert!(confirmation("e", false, false, None).is_err());
    }

    #[test]
    fn tool_result_and_events_arguments() {
        let SessionCmd::ToolResult {
            id,
            custom_tool_use_id,
            content,
            error,
            follow,
        } = session_cmd(&[
            "sessions",
            "tool-result",
            "sesn_1",
            "evt_3",
            "--content",
            "42",
            "--error",
            "-f",
        ])
        else {
            panic!("tool-result should parse");
        };
        assert_eq!(
            (id.as_str(), custom_tool_use_id.as_str(), content.as_str()),
            ("sesn_1", "evt_3", "42")
        );
        assert!(error && follow.follow);
        assert!(parse(&["sessions", "tool-result", "s", "e"]).is_err());

        let SessionCmd::Events {
            follow, verbose, ..
        } = session_cmd(&["sessions", "events", "s", "--follow", "--verbose"])
        else {
            panic!("events should parse");
        };
        assert!(follow && verbose);
        assert!(parse(&["sessions", "events", "s", "--verbose"]).is_err());
    }

    #[test]
    fn names_resolve_to_one_id() {
        let list = vec![
            json!({"id": "agent_1", "name": "helper"}),
            json!({"id": "agent_2", "name": "twin"}),
            json!({"id": "agent_3", "name": "twin"}),
        ];
        assert_eq!(
            pick_named(&list, "helper", "agent").ok(),
            Some(Some("agent_1".to_string()))
        );
        assert_eq!(pick_named(&list, "nobody", "agent").ok(), Some(None));
        let e = pick_named(&list, "twin", "agent").err();
        assert_eq!(e.as_ref().map(CliError::exit_code), Some(2));
        let msg = e.map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("agent_2") && msg.contains("agent_3"), "{msg}");
    }

    #[test]
    fn sent_event_ids_come_from_the_echo() {
        let out = json!({"data": [{"id": "evt_1", "type": "user.message"}, {"id": "evt_2"}]});
        assert_eq!(sent_ids(&out), vec!["evt_1", "evt_2"]);
        assert!(sent_ids(&json!({})).is_empty());
    }
}
