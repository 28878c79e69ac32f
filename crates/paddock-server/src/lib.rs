//! Paddock's orchestrator: the v1 REST + SSE API (wire-compatible with the Managed
//! Agents API for the primitives it shares) over a [`Store`].

mod agent_loop;
pub mod config;
mod error;
mod extract;
mod hub;
mod manager;
#[cfg(feature = "otel")]
pub mod otel;
mod request_id;
mod routes;
mod security;
mod supervisor;
mod timed_store;

use axum::extract::Request;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{on, MethodFilter};
use axum::Router;
use paddock_backend::local::{LocalBackend, LocalConfig, WorkerCommand};
use paddock_backend::Backend;
use paddock_store::{SqliteStore, Store};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use config::{Config, LogFormat};
pub use error::ServerError;

/// The committed OpenAPI document, served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    hub: Arc<hub::Hub>,
    manager: Arc<manager::Manager>,
    shutdown: watch::Receiver<bool>,
    routes: Arc<Vec<(&'static str, &'static str)>>,
    /// The audit action of each `(method, route)`.
    routes_actions: Arc<std::collections::HashMap<(String, String), String>>,
    limiter: Arc<security::RateLimiter>,
    pub metrics: Arc<paddock_metrics::PaddockMetrics>,
    /// Seals and opens vault secrets.
    keyring: Arc<paddock_vault::Keyring>,
    /// The built-in agent loop.
    agent: Arc<agent_loop::AgentRuntime>,
    /// SIGTERM arrived: `/healthz` says `draining` while model calls in flight finish.
    draining: Arc<std::sync::atomic::AtomicBool>,
}

/// Builds the router and, alongside, the list of `(method, path)` it serves.
struct Routes {
    router: Router<AppState>,
    table: Vec<(&'static str, &'static str)>,
    actions: Vec<String>,
}

/// `paddock_server::routes::agents::create` → `agents.create`.
fn action_of<H>() -> String {
    let name = std::any::type_name::<H>();
    let mut parts: Vec<&str> = name.rsplit("::").take(2).collect();
    parts.reverse();
    parts.join(".")
}

impl Routes {
    fn add<H, T>(mut self, method: &'static str, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = match method {
            "GET" => MethodFilter::GET,
            "POST" => MethodFilter::POST,
            "DELETE" => MethodFilter::DELETE,
            "PUT" => MethodFilter::PUT,
            other => panic!("route table uses unsupported method {other}"),
        };
        self.router = self.router.route(path, on(filter, handler));
        self.table.push((method, path));
        self.actions.push(action_of::<H>());
        self
    }
}

fn routes() -> Routes {
    use routes::*;
    Routes {
        router: Router::new(),
        table: vec![],
        actions: vec![],
    }
    .add("GET", "/", meta::index)
    .add("GET", "/healthz", meta::healthz)
    .add("GET", "/metrics", meta::metrics)
    .add("POST", "/v1/tokens", tokens::create)
    .add("GET", "/v1/tokens", tokens::list)
    .add("GET", "/v1/tokens/{token_id}", tokens::retrieve)
    .add("DELETE", "/v1/tokens/{token_id}", tokens::revoke)
    .add("GET", "/v1/audit", tokens::audit)
    .add("POST", "/v1/vaults", vaults::create)
    .add("GET", "/v1/vaults", vaults::list)
    .add("GET", "/v1/vaults/{vault_id}", vaults::retrieve)
    .add("POST", "/v1/vaults/{vault_id}", vaults::update)
    .add("DELETE", "/v1/vaults/{vault_id}", vaults::delete)
    .add("POST", "/v1/vaults/{vault_id}/archive", vaults::archive)
    .add(
        "POST",
        "/v1/vaults/{vault_id}/credentials",
        vaults::cred_create,
    )
    .add(
        "GET",
        "/v1/vaults/{vault_id}/credentials",
        vaults::cred_list,
    )
    .add(
        "GET",
        "/v1/vaults/{vault_id}/credentials/{credential_id}",
        vaults::cred_retrieve,
    )
    .add(
        "POST",
        "/v1/vaults/{vault_id}/credentials/{credential_id}",
        vaults::cred_update,
    )
    .add(
        "DELETE",
        "/v1/vaults/{vault_id}/credentials/{credential_id}",
        vaults::cred_delete,
    )
    .add(
        "POST",
        "/v1/vaults/{vault_id}/credentials/{credential_id}/archive",
        vaults::cred_archive,
    )
    .add(
        "POST",
        "/v1/vaults/{vault_id}/credentials/{credential_id}/mcp_oauth_validate",
        vaults::cred_validate,
    )
    .add("GET", "/openapi.json", meta::openapi)
    .add("POST", "/v1/agents", agents::create)
    .add("GET", "/v1/agents", agents::list)
    .add("GET", "/v1/agents/{agent_id}", agents::retrieve)
    .add("POST", "/v1/agents/{agent_id}", agents::update)
    .add("DELETE", "/v1/agents/{agent_id}", agents::delete)
    .add("POST", "/v1/agents/{agent_id}/archive", agents::archive)
    .add("GET", "/v1/agents/{agent_id}/versions", agents::versions)
    .add("POST", "/v1/environments", environments::create)
    .add("GET", "/v1/environments", environments::list)
    .add(
        "GET",
        "/v1/environments/{environment_id}",
        environments::retrieve,
    )
    .add(
        "POST",
        "/v1/environments/{environment_id}",
        environments::update,
    )
    .add(
        "DELETE",
        "/v1/environments/{environment_id}",
        environments::delete,
    )
    .add(
        "POST",
        "/v1/environments/{environment_id}/archive",
        environments::archive,
    )
    .add("POST", "/v1/sessions", sessions::create)
    .add("GET", "/v1/sessions", sessions::list)
    .add("GET", "/v1/sessions/{session_id}", sessions::retrieve)
    .add("POST", "/v1/sessions/{session_id}", sessions::update)
    .add("DELETE", "/v1/sessions/{session_id}", sessions::delete)
    .add(
        "POST",
        "/v1/sessions/{session_id}/archive",
        sessions::archive,
    )
    .add("POST", "/v1/sessions/{session_id}/events", events::send)
    .add("GET", "/v1/sessions/{session_id}/events", events::list)
    .add(
        "GET",
        "/v1/sessions/{session_id}/events/stream",
        events::stream,
    )
    .add("GET", "/v1/runners", runners::list)
    .add("POST", "/v1/runners", runners::create)
    .add("GET", "/v1/runners/{runner_id}", runners::retrieve)
    .add("POST", "/v1/runners/{runner_id}", runners::update)
    .add("DELETE", "/v1/runners/{runner_id}", runners::destroy)
    .add("POST", "/v1/runners/{runner_id}/restart", runners::restart)
    .add("GET", "/v1/runners/{runner_id}/metrics", runners::metrics)
    .add("GET", "/v1/runners/{runner_id}/activity", runners::activity)
    .add(
        "POST",
        "/v1/runners/{runner_id}/snapshots",
        runners::snapshot_create,
    )
    .add(
        "GET",
        "/v1/runners/{runner_id}/snapshots",
        runners::snapshots_of_runner,
    )
    .add("POST", "/v1/runners/{runner_id}/restore", runners::restore)
    .add("GET", "/v1/snapshots", runners::snapshots)
    .add("GET", "/v1/snapshots/{snapshot_id}", runners::snapshot_get)
    .add(
        "DELETE",
        "/v1/snapshots/{snapshot_id}",
        runners::snapshot_delete,
    )
    .add(
        "POST",
        "/v1/snapshots/{snapshot_id}/branch",
        runners::branch,
    )
    .add("GET", "/v1/fleet", runners::fleet)
    .add("POST", "/v1/runners/{runner_id}/stop", runners::stop)
    .add("POST", "/v1/runners/{runner_id}/start", runners::start)
    .add("POST", "/v1/runners/{runner_id}/exec", runners::exec)
    .add("POST", "/v1/runners/{runner_id}/cancel", runners::cancel)
    .add("GET", "/v1/runners/{runner_id}/status", runners::status)
    .add("GET", "/v1/runners/{runner_id}/logs", runners::logs)
    .add("GET", "/v1/runners/{runner_id}/events", runners::events)
    .add(
        "GET",
        "/v1/runners/{runner_id}/files/read",
        runners::files_read,
    )
    .add(
        "PUT",
        "/v1/runners/{runner_id}/files/write",
        runners::files_write,
    )
    .add(
        "GET",
        "/v1/runners/{runner_id}/files/list",
        runners::files_list,
    )
    .add(
        "GET",
        "/v1/runners/{runner_id}/files/stat",
        runners::files_stat,
    )
    .add(
        "DELETE",
        "/v1/runners/{runner_id}/files",
        runners::files_delete,
    )
    .add("GET", "/v1/backends", runners::backends)
    .add("GET", "/v1/profiles", runners::profiles)
}

/// Every `(method, path)` the API serves, in the order they are routed.
pub fn route_table() -> Vec<(&'static str, &'static str)> {
    routes().table
}

async fn not_found(req: Request) -> ServerError {
    ServerError::NotFound {
        what: format!("route {} {}", req.method(), req.uri().path()),
        code: Some("route_not_found".into()),
    }
}

async fn method_not_allowed(method: Method, req: Request) -> ServerError {
    ServerError::MethodNotAllowed(format!("{method} is not allowed on {}", req.uri().path()))
}

/// A bound, ready-to-run server.
pub struct Server {
    listener: TcpListener,
    state: AppState,
    shutdown_tx: watch::Sender<bool>,
}

impl Server {
    /// Opens the store under the data directory, binds the listen address, and adopts
    /// the runners that survived the last run.
    pub async fn bind(config: Config) -> Result<Server, ServerError> {
        let store = SqliteStore::open(&config.database_path())?;
        let listener = TcpListener::bind(&config.listen).await?;
        let server = Server::with_store(config, Arc::new(store), listener)?;
        server.rotate_vault_keys().await?;
        server.provider_keys_from_vaults().await?;
        server.state.manager.adopt().await?;
        Ok(server)
    }

    pub fn with_store(
        config: Config,
        store: Arc<dyn Store>,
        listener: TcpListener,
    ) -> Result<Server, ServerError> {
        let (shutdown_tx, shutdown) = watch::channel(false);
        let hub = Arc::new(hub::Hub::default());
        let (keyring, source) = paddock_vault::Keyring::load(
            config.vault.key.as_deref(),
            &config.vault.previous_keys,
            &config.data_dir.join("vault.key"),
        )
        .map_err(|e| ServerError::Config(format!("vault: {e}")))?;
        tracing::info!(key = %source, "vault key loaded");
        let keyring = Arc::new(keyring);
        let metrics = Arc::new(paddock_metrics::PaddockMetrics::new(env!(
            "CARGO_PKG_VERSION"
        )));
        let profiles = config.execution_profiles();
        for (name, p) in &profiles.profiles {
            if p.seccomp == paddock_core::profile::SeccompLevel::Unconfined {
                tracing::warn!(
                    profile = %name,
                    "UNCONFINED: runners of this profile have no system-call filter of Paddock's (seccomp = \"unconfined\"); code in them can mount, create namespaces and trace processes as far as the other layers allow"
                );
            }
        }
        // Every store call is timed (paddock_store_operation_duration_seconds).
        let store: Arc<dyn Store> = Arc::new(timed_store::TimedStore::new(store, metrics.clone()));
        let manager = Arc::new(manager::Manager::new(manager::ManagerDeps {
            store: store.clone(),
            hub: hub.clone(),
            backends: backends(&config)?,
            profiles,
            settings: config.runners.clone(),
            snapshot_dir: config.data_dir.join("snapshots"),
            keyring: keyring.clone(),
            metrics: metrics.clone(),
        }));
        let providers = paddock_agent::provider::Providers::from_configs(
            &config.agent.providers,
            &paddock_agent::provider::EnvKeys,
        )
        .map_err(|e| ServerError::Config(format!("agent.providers: {e}")))?;
        let agent = agent_loop::AgentRuntime::new(agent_loop::RuntimeDeps {
            store: store.clone(),
            hub: hub.clone(),
            manager: manager.clone(),
            providers,
            settings: config.agent.clone(),
            metrics: metrics.clone(),
            shutdown: shutdown.clone(),
        })?;
        let r = routes();
        let routes_actions = r
            .table
            .iter()
            .zip(r.actions)
            .map(|((m, p), a)| ((m.to_string(), p.to_string()), a))
            .collect();
        let limiter = Arc::new(security::RateLimiter::new(
            config.rate_limit.per_second,
            config.rate_limit.burst,
        ));
        let state = AppState {
            keyring,
            routes_actions: Arc::new(routes_actions),
            limiter,
            metrics,
            config: Arc::new(config),
            store,
            hub,
            manager,
            agent,
            draining: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            shutdown,
            routes: Arc::new(route_table()),
        };
        Ok(Server {
            listener,
            state,
            shutdown_tx,
        })
    }

    /// Re-encrypts every secret sealed with a previous vault key under the current one.
    pub async fn rotate_vault_keys(&self) -> Result<u64, ServerError> {
        let mut n = 0;
        for (id, sealed) in self.state.store.all_sealed().await? {
            let s = paddock_vault::Sealed::parse(&sealed).map_err(|_| {
                ServerError::Config(format!(
                    "vault: the stored secret of credential {id} is malformed"
                ))
            })?;
            if self.state.keyring.needs_rotation(&s) {
                let fresh = self
                    .state
                    .keyring
                    .reseal(&s, id.as_bytes())
                    .map_err(|e| ServerError::Config(format!("vault rotation of {id}: {e}")))?;
                self.state
                    .store
                    .set_sealed(&id, fresh.into_string())
                    .await?;
                n += 1;
            }
        }
        if n > 0 {
            tracing::info!(
                credentials = n,
                "re-encrypted vault secrets under the current key"
            );
        }
        Ok(n)
    }

    /// Builds the providers again with the API keys `[agent.provider_keys]` names in
    /// vaults (keys from environment variables are used for the others).
    pub async fn provider_keys_from_vaults(&self) -> Result<(), ServerError> {
        let cfg = &self.state.config.agent;
        if cfg.provider_keys.is_empty() {
            return Ok(());
        }
        let mut keys = std::collections::HashMap::new();
        for (name, r) in &cfg.provider_keys {
            let (_, sealed) = self
                .state
                .store
                .get_credential(&r.vault_id, &r.credential_id)
                .await
                .map_err(|e| ServerError::Config(format!("agent.provider_keys.{name}: {e}")))?;
            let secrets =
                routes::vaults::open_with(&self.state.keyring, &r.credential_id, &sealed)?;
            let key = ["token", "secret_value", "access_token"]
                .iter()
                .find_map(|k| secrets.get(*k).and_then(|v| v.as_str()))
                .ok_or_else(|| {
                    ServerError::Config(format!(
                        "agent.provider_keys.{name}: credential {} holds no token",
                        r.credential_id
                    ))
                })?;
            keys.insert(name.clone(), paddock_agent::provider::ApiKey::new(key));
        }
        struct Keys(std::collections::HashMap<String, paddock_agent::provider::ApiKey>);
        impl paddock_agent::provider::KeySource for Keys {
            fn key_for(
                &self,
                p: &paddock_agent::provider::ProviderConfig,
            ) -> Option<paddock_agent::provider::ApiKey> {
                self.0
                    .get(&p.name)
                    .cloned()
                    .or_else(|| paddock_agent::provider::EnvKeys.key_for(p))
            }
        }
        let providers =
            paddock_agent::provider::Providers::from_configs(&cfg.providers, &Keys(keys))
                .map_err(|e| ServerError::Config(format!("agent.providers: {e}")))?;
        self.state.agent.set_providers(providers);
        Ok(())
    }

    /// Re-attaches surviving runners and sweeps orphaned sandboxes.
    pub async fn adopt(&self) -> Result<(), ServerError> {
        self.state.manager.adopt().await
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn router(&self) -> Router {
        routes()
            .router
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(axum::middleware::from_fn_with_state(
                self.state.clone(),
                security::authenticate,
            ))
            // Outside authentication, so refused requests are audited too.
            .layer(axum::middleware::from_fn_with_state(
                self.state.clone(),
                security::audit,
            ))
            .layer(axum::middleware::from_fn_with_state(
                self.state.clone(),
                security::rate_limit,
            ))
            .layer(axum::middleware::from_fn_with_state(
                self.state.clone(),
                request_id::middleware,
            ))
            .with_state(self.state.clone())
    }

    /// Serves until `shutdown` resolves, then ends open event streams and drains.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let app = self.router();
        self.state
            .manager
            .spawn_supervisor(self.state.shutdown.clone());
        // Open turns and unanswered input of the last run go on.
        let agent = self.state.agent.clone();
        tokio::spawn(async move {
            if let Err(e) = agent.resume_all().await {
                tracing::warn!(error = %e, "cannot resume the sessions of the last run");
            }
        });
        // Audit and idempotency-key retention: prune at start and hourly.
        let (store, days, hours, mut stop) = (
            self.state.store.clone(),
            self.state.config.audit.retention_days,
            self.state.config.idempotency_retention_hours,
            self.state.shutdown.clone(),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let before = paddock_core::ts::now() - time::Duration::days(i64::from(days));
                        match store.prune_audit(before).await {
                            Ok(n) if n > 0 => tracing::info!(entries = n, "pruned the audit trail"),
                            Ok(_) => {}
                            Err(e) => tracing::warn!(error = %e, "cannot prune the audit trail"),
                        }
                        let before = paddock_core::ts::now() - time::Duration::hours(i64::from(hours));
                        match store.prune_idempotency_keys(before).await {
                            Ok(n) if n > 0 => tracing::info!(keys = n, "forgot old idempotency keys"),
                            Ok(_) => {}
                            Err(e) => tracing::warn!(error = %e, "cannot prune idempotency keys"),
                        }
                    }
                    _ = stop.changed() => return,
                }
            }
        });
        let tx = self.shutdown_tx;
        let agent = self.state.agent.clone();
        let manager = self.state.manager.clone();
        let draining = self.state.draining.clone();
        let grace = std::time::Duration::from_secs(self.state.config.shutdown_grace_secs);
        tracing::info!(addr = %self.listener.local_addr()?, "paddock API listening");
        if self.state.config.api_token.is_none() {
            tracing::warn!(
                "NO API TOKEN IS SET: anyone who can reach {} may use this Paddock. \
                 Set PADDOCK_API_TOKEN to require tokens",
                self.listener.local_addr()?
            );
        }
        // Small SSE frames go out at once, not after the peer's delayed ACK.
        let listener = axum::serve::ListenerExt::tap_io(self.listener, |tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            shutdown.await;
            // Stop starting new steps; let model calls in flight finish (a second
            // signal, or the grace, ends the wait). Commands in runners go on.
            tracing::info!(
                grace_secs = grace.as_secs(),
                "draining: model calls in flight may finish"
            );
            draining.store(true, std::sync::atomic::Ordering::SeqCst);
            // Teardowns in the background finish too (else the next start does).
            tokio::select! {
                _ = async { tokio::join!(agent.drain(grace), manager.drain_teardowns(grace)) } => {}
                _ = shutdown_signal() => tracing::info!("a second signal: exiting now"),
            }
            tracing::info!("shutting down: closing event streams and draining requests");
            let _ = tx.send(true);
        })
        .await?;
        Ok(())
    }
}

/// How the local backend starts workers: the configured binary, else this binary's
/// `worker` subcommand.
fn worker_command(config: &Config) -> Result<WorkerCommand, ServerError> {
    let path = match &config.local.worker {
        Some(p) => p.clone(),
        None => std::env::current_exe()?,
    };
    Ok(worker_at(path))
}

/// The worker at `path`: `paddock` runs it as its `worker` subcommand, any other
/// binary (a standalone `paddock-worker`) directly.
fn worker_at(path: std::path::PathBuf) -> WorkerCommand {
    let is_paddock = path.file_name().is_some_and(|n| n == "paddock");
    WorkerCommand {
        args: if is_paddock {
            vec!["worker".into()]
        } else {
            vec![]
        },
        path,
    }
}

/// A `[first, count]` uid range of a backend (`[]`: none), refused when it holds host
/// users.
fn uid_range(key: &str, v: &[u32]) -> Result<Option<(u32, u32)>, ServerError> {
    match v {
        [] => Ok(None),
        [first, count] if *count > 0 && first.checked_add(*count).is_some() => {
            let range = *first..first + count;
            let users = paddock_backend::uids::host_users_in(&range);
            if !users.is_empty() {
                return Err(ServerError::Config(format!(
                    "{key}: {}..{} holds host users: {}; choose a range no host user has",
                    range.start,
                    range.end,
                    users.join(", ")
                )));
            }
            Ok(Some((*first, *count)))
        }
        _ => Err(ServerError::Config(format!(
            "{key}: must be [first, count] with count > 0 (or [] for none)"
        ))),
    }
}

fn backends(config: &Config) -> Result<BTreeMap<String, Arc<dyn Backend>>, ServerError> {
    let mut local = LocalConfig::new(config.data_dir.join("runners"), worker_command(config)?);
    local.mode = config.local.mode;
    local.sandbox_uid = config.local.sandbox_uid;
    local.uid_range = uid_range("local.uid_range", &config.local.uid_range)?;
    local.agents_dir = Some(config.local.agents_dir.clone());
    local.start_timeout = std::time::Duration::from_secs(config.local.start_timeout_secs);
    let local_uids = local.uid_range;
    let local = LocalBackend::new(local);
    let caps = local.capabilities();
    if let Some(note) = &caps.note {
        tracing::warn!(backend = "local", available = caps.available, "{note}");
    }
    let mut map: BTreeMap<String, Arc<dyn Backend>> = BTreeMap::new();
    map.insert("local".into(), Arc::new(local));
    let d = &config.docker;
    let worker = match &d.worker {
        Some(p) => worker_at(p.clone()),
        None => {
            // A static worker beside this binary runs in any image; else this binary.
            let exe = std::env::current_exe()?;
            match exe.parent().map(|p| p.join("paddock-worker")) {
                Some(p) if p.is_file() => worker_at(p),
                _ => WorkerCommand {
                    path: exe,
                    args: vec!["worker".into()],
                },
            }
        }
    };
    let mut docker =
        paddock_backend::docker::DockerConfig::new(config.data_dir.join("docker"), worker);
    docker.socket = d.socket.clone();
    docker.default_image = d.default_image.clone();
    docker.start_timeout = std::time::Duration::from_secs(d.start_timeout_secs);
    docker.tmp_size_mb = d.tmp_size_mb;
    docker.uid_range = uid_range("docker.uid_range", &d.uid_range)?;
    if let (Some((a, n)), Some((b, m))) = (local_uids, docker.uid_range) {
        if a < b + m && b < a + n {
            return Err(ServerError::Config(format!(
                "docker.uid_range {b}..{} overlaps local.uid_range {a}..{}: runners of the two backends would share host uids",
                b + m,
                a + n
            )));
        }
    }
    map.insert(
        "docker".into(),
        Arc::new(paddock_backend::docker::DockerBackend::new(docker)),
    );
    Ok(map)
}

/// Sets up `tracing`: pretty on a terminal, JSON otherwise (or as configured). Built with
/// the `otel` feature and with `otel_endpoint` set, spans are also exported over OTLP/HTTP;
/// call [`shutdown_tracing`] before exiting so the last ones are sent.
pub fn init_logging(config: &Config) {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::{Layer, SubscriberExt};
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log_level));
    let json = match config.log_format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if json {
        fmt.json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed()
    } else {
        fmt.boxed()
    };
    let registry = tracing_subscriber::registry().with(filter).with(fmt);
    #[cfg(feature = "otel")]
    {
        let (layer, provider) = match config.otel_endpoint.as_deref().map(otel::layer) {
            Some(Ok((layer, provider))) => (Some(layer), Some(provider)),
            Some(Err(e)) => {
                eprintln!("paddock: OpenTelemetry exporter disabled: {e}");
                (None, None)
            }
            None => (None, None),
        };
        if registry.with(layer).try_init().is_ok() {
            if let Some(p) = provider {
                otel::install(p);
            }
        }
    }
    #[cfg(not(feature = "otel"))]
    let _ = registry.try_init();
}

/// Sends the spans still buffered by the OpenTelemetry exporter and stops it; a no-op
/// when none was started (always, without the `otel` feature).
pub fn shutdown_tracing() {
    #[cfg(feature = "otel")]
    otel::shutdown();
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
