//! `paddock`: `paddock serve` runs the orchestrator; every other command is a client of
//! its API (like `docker` and `dockerd`).

mod client;
mod output;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::process::ExitCode;

use client::{CliError, Client};

#[derive(Parser)]
#[command(
    name = "paddock",
    version,
    about = "Managed agent runners, self-hosted"
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

#[derive(Subcommand)]
enum Cmd {
    /// Run the orchestrator (API server).
    Serve(ServeArgs),
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
    List {
        #[command(flatten)]
        list: ListArgs,
        /// Only sessions in these statuses (repeatable).
        #[arg(long = "status")]
        statuses: Vec<String>,
        #[arg(long)]
        agent: Option<String>,
    },
    Get {
        id: String,
    },
    Update {
        id: String,
        #[arg(long)]
        title: Option<String>,
    },
    /// Send a user message (or an interrupt) to a session.
    Send {
        id: String,
        /// The message text.
        message: Option<String>,
        #[arg(long, conflicts_with = "message")]
        interrupt: bool,
        /// A JSON file with `{"events": [...]}`.
        #[arg(long, conflicts_with_all = ["message", "interrupt"])]
        file: Option<PathBuf>,
        /// Makes a retried send safe.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Print a session's events; `--follow` keeps streaming new ones.
    Events {
        id: String,
        #[arg(long, short)]
        follow: bool,
    },
    Archive {
        id: String,
    },
    Delete {
        id: String,
    },
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
    /// Destroy a runner and its workspace (idempotent).
    Destroy {
        id: String,
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
                file,
            } => {
                let mut b = read_body(&file)?;
                set(&mut b, "name", name);
                set(&mut b, "model", model);
                set(&mut b, "system", system);
                set(&mut b, "description", description);
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
                message,
                interrupt,
                file,
                idempotency_key,
            } => {
                let body = if let Some(f) = &file {
                    Value::Object(read_body(&Some(f.clone()))?)
                } else if interrupt {
                    json!({"events": [{"type": "user.interrupt"}]})
                } else {
                    let text = message.ok_or_else(|| {
                        CliError::Usage("give a message, --interrupt or --file".into())
                    })?;
                    json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": text}]}]})
                };
                let out = c
                    .post(
                        &format!("/v1/sessions/{id}/events"),
                        &body,
                        idempotency_key.as_deref(),
                    )
                    .await?;
                if cli.json {
                    output::print_json(&out);
                } else {
                    for e in out["data"].as_array().into_iter().flatten() {
                        println!("{}", output::event_line(e));
                    }
                }
            }
            SessionCmd::Events { id, follow } => c.events(&id, follow).await?,
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
            RunnerCmd::Destroy { id } => c.show(
                c.delete(&format!("/v1/runners/{id}")).await?,
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
    }
    Ok(())
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
