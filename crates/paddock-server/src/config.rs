//! Configuration: defaults, then an optional `paddock.toml`, then `PADDOCK_*` variables.

use paddock_backend::local::LocalMode;
use paddock_core::profile::{ExecutionProfile, Profiles};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::ServerError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Pretty on a terminal, JSON otherwise.
    Auto,
    Pretty,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the API listens on.
    pub listen: String,
    /// Where Paddock keeps its database and runner workspaces.
    pub data_dir: PathBuf,
    pub log_format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `paddock_server=debug`.
    pub log_level: String,
    /// Export spans over OpenTelemetry (OTLP/HTTP, protobuf) to this collector base URL,
    /// e.g. `http://127.0.0.1:4318` (sent to `/v1/traces`). Needs a binary built with the
    /// `otel` cargo feature; absent: no export.
    pub otel_endpoint: Option<String>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Seconds between keep-alive comments on idle SSE streams.
    pub sse_keepalive_secs: u64,
    /// Hours an `Idempotency-Key` is remembered (a retry after that is a new request).
    pub idempotency_retention_hours: u32,
    /// On SIGTERM, how long model calls in flight may take to finish before Paddock
    /// exits (a second SIGTERM exits at once). Commands in runners are never killed.
    pub shutdown_grace_secs: u64,
    /// The execution profile used when none is asked for.
    pub default_profile: String,
    /// Execution profiles by name (`[profiles.NAME]`); a `default` one is built in.
    pub profiles: BTreeMap<String, ExecutionProfile>,
    /// The local (bubblewrap) backend (`[local]`).
    pub local: LocalSettings,
    /// Runner supervision: automatic stops, sampling, pruning (`[runners]`).
    pub runners: RunnerSettings,
    /// The admin token. With it set, every route but /healthz and /metrics needs a token.
    pub api_token: Option<String>,
    /// Allow listening beyond loopback without any token (dangerous; off by default).
    pub allow_unauthenticated: bool,
    /// Per-caller token bucket in front of the API (`[rate_limit]`).
    pub rate_limit: RateLimitSettings,
    /// The audit trail (`[audit]`).
    pub audit: AuditSettings,
    /// Encryption of vault secrets (`[vault]`).
    pub vault: VaultSettings,
    /// The built-in agent: model providers, prices, turn limits (`[agent]`).
    pub agent: AgentSettings,
    /// The Docker backend (`[docker]`).
    pub docker: DockerSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DockerSettings {
    /// The engine's Unix socket.
    pub socket: PathBuf,
    /// The worker binary mounted read-only into containers; default: a static
    /// `paddock-worker` beside this binary, else this binary's `worker` subcommand.
    pub worker: Option<PathBuf>,
    /// The image of runners whose profile names no runbook.
    pub default_image: String,
    /// Seconds a new container's worker may take to answer.
    pub start_timeout_secs: u64,
    /// Size of each runner's tmpfs `/tmp`, in MiB.
    pub tmp_size_mb: u64,
    /// `[first, count]`: each container runs as a host uid of its own from this range
    /// (disjoint from `local.uid_range`); `[]`: every container is uid 1000.
    pub uid_range: Vec<u32>,
}

impl Default for DockerSettings {
    fn default() -> Self {
        DockerSettings {
            socket: PathBuf::from("/var/run/docker.sock"),
            worker: None,
            default_image: "paddock-base:latest".into(),
            start_timeout_secs: 30,
            tmp_size_mb: 256,
            uid_range: vec![300_000, 65_536],
        }
    }
}

/// Where a provider's API key lives in a vault (`[agent.provider_keys.NAME]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultKeyRef {
    pub vault_id: String,
    pub credential_id: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentSettings {
    /// Run the built-in agent on sessions' messages. Off: Paddock stores and relays
    /// events only (something else drives the sessions through the API).
    pub enabled: bool,
    /// Model providers (`[[agent.providers]]`: name, kind = "openai" | "anthropic",
    /// base_url, api_key_env, timeouts, retries). A model is addressed as
    /// `provider/model`.
    pub providers: Vec<paddock_agent::provider::ProviderConfig>,
    /// API keys kept in a vault instead of an environment variable, by provider name.
    pub provider_keys: BTreeMap<String, VaultKeyRef>,
    /// The provider of a model id without `provider/` (default: the only configured
    /// provider, if there is exactly one).
    pub default_provider: Option<String>,
    /// Prices overriding the built-in table, USD per million tokens, by model
    /// (`[agent.prices."openai/gpt-4o"] input = 2.5, output = 10`).
    pub prices: BTreeMap<String, paddock_agent::pricing::PriceOverride>,
    /// `max_tokens` of each model call.
    pub max_output_tokens: u32,
    /// Model calls one turn may make before it is ended.
    pub max_model_calls_per_turn: u32,
    /// Largest tool output given back to the model, in bytes (longer output is cut in
    /// the middle with a marker).
    pub max_tool_output_bytes: usize,
}

impl Default for AgentSettings {
    fn default() -> Self {
        AgentSettings {
            enabled: true,
            providers: Vec::new(),
            provider_keys: BTreeMap::new(),
            default_provider: None,
            prices: BTreeMap::new(),
            max_output_tokens: 8192,
            max_model_calls_per_turn: 50,
            max_tool_output_bytes: 30_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Requests per second per caller (token, else IP); 0 disables rate limiting.
    pub per_second: f64,
    /// Requests a caller may make at once.
    pub burst: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        RateLimitSettings {
            per_second: 50.0,
            burst: 100,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSettings {
    /// Days audit entries are kept.
    pub retention_days: u32,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings { retention_days: 90 }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VaultSettings {
    /// The key (32 bytes, base64). Absent: `<data_dir>/vault.key`, created on first use.
    pub key: Option<String>,
    /// Keys secrets may still be sealed with; they are re-encrypted at startup.
    pub previous_keys: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunnerSettings {
    /// Seconds without exec or file activity before a runner is stopped (0: never).
    pub idle_timeout_secs: u64,
    /// How often automatic stops, budgets and pruning are checked.
    pub sweep_interval_ms: u64,
    /// How often CPU, memory and disk are sampled from running runners.
    pub sample_interval_ms: u64,
    /// Samples kept per runner (the chart history).
    pub history_len: usize,
    /// Longest a provisioning may take before the runner is errored.
    pub provision_timeout_secs: u64,
    /// Grace for running commands when a runner is stopped.
    pub stop_grace_secs: u64,
    /// Destroy runners stopped for this long (absent: never).
    pub prune_stopped_after_secs: Option<u64>,
    /// Destroy stopped or errored runners older than this (absent: never).
    pub prune_max_age_secs: Option<u64>,
    /// Most runners active at once across all profiles (absent: no limit). At the
    /// limit, the runner idle the longest is stopped to make room; 503 when all are busy.
    pub max_active: Option<u32>,
    /// A runner used within this many seconds (or whose session runs a turn) is busy
    /// and never stopped to make room.
    pub busy_window_secs: u64,
    /// Memory use (share of the limit) above which a runner is reported unhealthy.
    pub memory_alert_ratio: f64,
}

impl Default for RunnerSettings {
    fn default() -> Self {
        RunnerSettings {
            idle_timeout_secs: 1800,
            sweep_interval_ms: 2000,
            sample_interval_ms: 10_000,
            history_len: 120,
            provision_timeout_secs: 120,
            stop_grace_secs: 5,
            prune_stopped_after_secs: None,
            prune_max_age_secs: None,
            max_active: None,
            busy_window_secs: 10,
            memory_alert_ratio: 0.9,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LocalSettings {
    /// `bwrap` (namespaces) or `process` (no isolation at all).
    pub mode: LocalMode,
    /// Host user id sandboxes run as (needs `setpriv`) when `uid_range` is off.
    pub sandbox_uid: Option<u32>,
    /// `[first, count]`: each runner runs as a host uid of its own from this range
    /// (needs root and `setpriv`); `[]` turns it off (every runner is `sandbox_uid`).
    pub uid_range: Vec<u32>,
    /// The worker binary; default: this `paddock` binary's `worker` subcommand.
    pub worker: Option<PathBuf>,
    /// Seconds a new worker may take to answer.
    pub start_timeout_secs: u64,
    /// The ACP agents' prefix (scripts/agents.sh), mounted read-only at
    /// `/opt/paddock-agents` in runners of the `agents` runbook.
    pub agents_dir: PathBuf,
}

impl Default for LocalSettings {
    fn default() -> Self {
        LocalSettings {
            mode: LocalMode::Bwrap,
            sandbox_uid: Some(65534),
            uid_range: vec![200_000, 65_536],
            worker: None,
            start_timeout_secs: 15,
            agents_dir: PathBuf::from("/var/cache/paddock-images/agents"),
        }
    }
}

/// The data directory when none is configured: `/var/lib/paddock` for root (sandboxes
/// run as an unprivileged user and must reach it), else `$XDG_DATA_HOME/paddock`, else
/// `~/.local/share/paddock`, else `./paddock-data`.
pub fn default_data_dir() -> PathBuf {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/lib/paddock");
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("paddock");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(h).join(".local/share/paddock");
    }
    PathBuf::from("paddock-data")
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            data_dir: default_data_dir(),
            log_format: LogFormat::Auto,
            log_level: "info".into(),
            otel_endpoint: None,
            max_body_bytes: 4 * 1024 * 1024,
            sse_keepalive_secs: 15,
            idempotency_retention_hours: 24,
            shutdown_grace_secs: 20,
            default_profile: "default".into(),
            profiles: BTreeMap::new(),
            local: LocalSettings::default(),
            runners: RunnerSettings::default(),
            api_token: None,
            allow_unauthenticated: false,
            rate_limit: RateLimitSettings::default(),
            audit: AuditSettings::default(),
            vault: VaultSettings::default(),
            agent: AgentSettings::default(),
            docker: DockerSettings::default(),
        }
    }
}

fn bad(key: &str, msg: impl std::fmt::Display) -> ServerError {
    ServerError::Config(format!("{key}: {msg}"))
}

impl Config {
    /// Loads the config file (if any) and applies environment overrides from `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ServerError> {
        let mut cfg = match file {
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).map_err(|e| bad(&p.display().to_string(), e))?;
                toml::from_str(&text).map_err(|e| bad(&p.display().to_string(), e))?
            }
            None => Config::default(),
        };
        for (k, v) in env {
            match k.as_str() {
                "PADDOCK_LISTEN" => cfg.listen = v,
                "PADDOCK_DATA_DIR" => cfg.data_dir = PathBuf::from(v),
                "PADDOCK_LOG_FORMAT" => {
                    cfg.log_format = match v.as_str() {
                        "auto" => LogFormat::Auto,
                        "pretty" => LogFormat::Pretty,
                        "json" => LogFormat::Json,
                        other => {
                            return Err(bad(
                                &k,
                                format!("expected auto, pretty or json, got {other:?}"),
                            ))
                        }
                    }
                }
                "PADDOCK_LOG_LEVEL" => cfg.log_level = v,
                "PADDOCK_OTEL_ENDPOINT" => cfg.otel_endpoint = Some(v).filter(|e| !e.is_empty()),
                "PADDOCK_MAX_BODY_BYTES" => {
                    cfg.max_body_bytes = v.parse().map_err(|e| bad(&k, e))?
                }
                "PADDOCK_SSE_KEEPALIVE_SECS" => {
                    cfg.sse_keepalive_secs = v.parse().map_err(|e| bad(&k, e))?
                }
                "PADDOCK_SHUTDOWN_GRACE_SECS" => {
                    cfg.shutdown_grace_secs = v.parse().map_err(|e| bad(&k, e))?
                }
                "PADDOCK_DEFAULT_PROFILE" => cfg.default_profile = v,
                "PADDOCK_API_TOKEN" => cfg.api_token = Some(v).filter(|t| !t.is_empty()),
                "PADDOCK_ALLOW_UNAUTHENTICATED" => {
                    cfg.allow_unauthenticated = matches!(v.as_str(), "1" | "true" | "yes")
                }
                "PADDOCK_RATE_LIMIT_PER_SECOND" => {
                    cfg.rate_limit.per_second = v.parse().map_err(|e| bad(&k, e))?
                }
                "PADDOCK_RATE_LIMIT_BURST" => {
                    cfg.rate_limit.burst = v.parse().map_err(|e| bad(&k, e))?
                }
                "PADDOCK_VAULT_KEY" => cfg.vault.key = Some(v).filter(|t| !t.is_empty()),
                "PADDOCK_WORKER_BIN" => cfg.local.worker = Some(PathBuf::from(v)),
                "PADDOCK_DOCKER_WORKER" => cfg.docker.worker = Some(PathBuf::from(v)),
                "PADDOCK_LOCAL_MODE" => {
                    cfg.local.mode = match v.as_str() {
                        "bwrap" => LocalMode::Bwrap,
                        "process" => LocalMode::Process,
                        other => {
                            return Err(bad(
                                &k,
                                format!("expected bwrap or process, got {other:?}"),
                            ))
                        }
                    }
                }
                _ => {}
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), ServerError> {
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(bad(
                "listen",
                format!("{:?} is not an address like 127.0.0.1:8080", self.listen),
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(bad("data_dir", "must not be empty"));
        }
        if self.max_body_bytes < 1024 {
            return Err(bad("max_body_bytes", "must be at least 1024"));
        }
        if self.sse_keepalive_secs == 0 {
            return Err(bad("sse_keepalive_secs", "must be at least 1"));
        }
        if let Some(e) = &self.otel_endpoint {
            if !cfg!(feature = "otel") {
                return Err(bad(
                    "otel_endpoint",
                    "set, but this paddock was built without the otel feature; rebuild with --features otel",
                ));
            }
            // No TLS client is built in: the collector is meant to be a local agent.
            if !e.starts_with("http://") {
                return Err(bad(
                    "otel_endpoint",
                    format!("{e:?} is not a URL like http://127.0.0.1:4318 (plain http only)"),
                ));
            }
        }
        if let Some(t) = &self.api_token {
            if t.len() < 16 {
                return Err(bad("api_token", "must be at least 16 characters"));
            }
        }
        if !(self.rate_limit.per_second >= 0.0 && self.rate_limit.per_second.is_finite()) {
            return Err(bad("rate_limit.per_second", "must be 0 (off) or more"));
        }
        if self.rate_limit.per_second > 0.0 && self.rate_limit.burst == 0 {
            return Err(bad("rate_limit.burst", "must be at least 1"));
        }
        let loopback = self
            .listen
            .parse::<std::net::SocketAddr>()
            .map(|a| a.ip().is_loopback())
            .unwrap_or(false);
        if self.api_token.is_none() && !loopback && !self.allow_unauthenticated {
            return Err(bad(
                "listen",
                format!(
                    "{} is not a loopback address and no api_token is set: anyone who can reach it could run code. \
                     Set PADDOCK_API_TOKEN, listen on 127.0.0.1, or force it with allow_unauthenticated = true",
                    self.listen
                ),
            ));
        }
        let r = &self.runners;
        if r.sweep_interval_ms < 10 || r.sample_interval_ms < 10 {
            return Err(bad(
                "runners",
                "sweep_interval_ms and sample_interval_ms must be at least 10",
            ));
        }
        if r.history_len == 0 || r.provision_timeout_secs == 0 {
            return Err(bad(
                "runners",
                "history_len and provision_timeout_secs must be at least 1",
            ));
        }
        if !(r.memory_alert_ratio > 0.0 && r.memory_alert_ratio <= 1.0) {
            return Err(bad("runners.memory_alert_ratio", "must be in (0, 1]"));
        }
        if r.max_active == Some(0) {
            return Err(bad(
                "runners.max_active",
                "must be at least 1 (leave it out for no limit)",
            ));
        }
        let a = &self.agent;
        let mut names = std::collections::BTreeSet::new();
        for (i, p) in a.providers.iter().enumerate() {
            p.validate()
                .map_err(|e| bad(&format!("agent.providers[{i}]"), e))?;
            if !names.insert(p.name.as_str()) {
                return Err(bad(
                    &format!("agent.providers[{i}].name"),
                    format!("{:?} is configured twice", p.name),
                ));
            }
        }
        for name in a.provider_keys.keys() {
            if !names.contains(name.as_str()) {
                return Err(bad(
                    &format!("agent.provider_keys.{name}"),
                    "no provider of that name is configured",
                ));
            }
        }
        if let Some(d) = &a.default_provider {
            if !names.contains(d.as_str()) {
                return Err(bad(
                    "agent.default_provider",
                    format!("no provider named {d:?} is configured"),
                ));
            }
        }
        if a.max_output_tokens == 0 || a.max_model_calls_per_turn == 0 {
            return Err(bad(
                "agent",
                "max_output_tokens and max_model_calls_per_turn must be at least 1",
            ));
        }
        if a.max_tool_output_bytes < 1024 {
            return Err(bad("agent.max_tool_output_bytes", "must be at least 1024"));
        }
        paddock_agent::pricing::PriceTable::builtin()
            .with_overrides(&a.prices)
            .map_err(|e| bad("agent.prices", e))?;
        self.execution_profiles()
            .validate()
            .map_err(|e| ServerError::Config(e.to_string()))?;
        Ok(())
    }

    /// The configured profiles, with the built-in `default` when none is configured.
    pub fn execution_profiles(&self) -> Profiles {
        let mut profiles = self.profiles.clone();
        if profiles.is_empty() {
            profiles.insert("default".into(), ExecutionProfile::default());
        }
        Profiles {
            default: self.default_profile.clone(),
            profiles,
        }
    }

    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("paddock.db")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn env_overrides_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("paddock.toml");
        std::fs::write(&f, "listen = \"127.0.0.1:9000\"\nmax_body_bytes = 2048\n").expect("write");
        let c = Config::load(
            Some(&f),
            env(&[
                ("PADDOCK_LISTEN", "0.0.0.0:7000"),
                ("PADDOCK_API_TOKEN", "a-long-enough-admin-token"),
            ]),
        )
        .expect("valid");
        assert_eq!(c.api_token.as_deref(), Some("a-long-enough-admin-token"));
        let e = Config::load(Some(&f), env(&[("PADDOCK_LISTEN", "0.0.0.0:7000")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a loopback address"), "{e}");
        assert_eq!(c.listen, "0.0.0.0:7000");
        assert_eq!(c.max_body_bytes, 2048);
    }

    #[test]
    fn bad_config_names_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("paddock.toml");
        std::fs::write(&f, "listn = \"x\"\n").expect("write");
        let e = Config::load(Some(&f), env(&[])).unwrap_err().to_string();
        assert!(e.contains("listn"), "{e}");
        let e = Config::load(None, env(&[("PADDOCK_LISTEN", "nowhere")]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("config: listen"), "{e}");
        let e = Config::load(None, env(&[("PADDOCK_SSE_KEEPALIVE_SECS", "x")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("PADDOCK_SSE_KEEPALIVE_SECS"), "{e}");
    }

    #[test]
    fn otel_endpoint_needs_the_feature() {
        let endpoint = ("PADDOCK_OTEL_ENDPOINT", "http://127.0.0.1:4318");
        let r = Config::load(None, env(&[endpoint]));
        if cfg!(feature = "otel") {
            let c = r.expect("valid");
            assert_eq!(c.otel_endpoint.as_deref(), Some("http://127.0.0.1:4318"));
            let e = Config::load(None, env(&[("PADDOCK_OTEL_ENDPOINT", "127.0.0.1:4318")]))
                .unwrap_err()
                .to_string();
            assert!(e.contains("otel_endpoint"), "{e}");
        } else {
            let e = r.unwrap_err().to_string();
            assert!(e.contains("rebuild with --features otel"), "{e}");
        }
        let c = Config::load(None, env(&[("PADDOCK_OTEL_ENDPOINT", "")])).expect("valid");
        assert_eq!(c.otel_endpoint, None);
    }
}
