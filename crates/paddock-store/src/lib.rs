//! Paddock's state. [`Store`] is the seam (a PostgreSQL implementation comes when several
//! orchestrators share a fleet); [`SqliteStore`] is the embedded default: WAL, foreign
//! keys, embedded migrations with a schema version, one transaction per change.

mod migrations;
mod page;
mod sqlite;

use async_trait::async_trait;
use paddock_core::agent::Agent;
use paddock_core::environment::Environment;
use paddock_core::event::{Event, NewEvent, Reference};
use paddock_core::lifecycle::RunnerState;
use paddock_core::runner::Runner;
use paddock_core::security::{ApiToken, AuditEntry};
use paddock_core::session::{Session, SessionChange, SessionStatus};
use paddock_core::ts::Timestamp;
use paddock_core::CoreError;
use serde_json::Value;

pub use page::{Cursor, Order, Page, PageReq};
pub use sqlite::SqliteStore;

/// Every way the store can fail.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} {id:?} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("{kind} {id:?} is at version {current}, not {expected}")]
    VersionConflict {
        kind: &'static str,
        id: String,
        expected: u32,
        current: u32,
    },
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Invalid(#[from] CoreError),
    #[error("the Idempotency-Key {key:?} was already used with a different request")]
    IdempotencyMismatch { key: String },
    #[error(
        "the database schema is version {found}; this Paddock knows versions 0 to {supported}"
    )]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored record is not valid: {0}")]
    Json(#[from] serde_json::Error),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("store task failed: {0}")]
    Task(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A pure change of a record: `Ok(None)` means "nothing to change".
pub type UpdateFn<T> = Box<dyn FnOnce(&T) -> Result<Option<T>, CoreError> + Send>;
/// A pure change of a runner (its state through the lifecycle transition function).
pub type RunnerUpdateFn = Box<dyn FnOnce(&Runner) -> Result<Option<Runner>, CoreError> + Send>;

/// What a runner change wrote: the runner, its `runner.state_changed` event when the
/// state moved, and the same event in its session's log when it has a session.
#[derive(Debug, Clone)]
pub struct RunnerChange {
    pub runner: Runner,
    pub event: Option<RunnerEvent>,
    pub session_event: Option<Event>,
}

/// A point-in-time copy of a runner's workspace, stored under the data directory.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub runner_id: String,
    pub label: Option<String>,
    /// The archive on the orchestrator's host.
    pub path: String,
    pub size_bytes: u64,
    /// What it holds (`workspace`; later also the container filesystem).
    pub contents: Vec<String>,
    #[serde(with = "paddock_core::ts::serde_ts")]
    pub created_at: Timestamp,
}

/// One entry of a runner's own event log.
#[derive(Debug, Clone, PartialEq)]
pub struct RunnerEvent {
    pub seq: i64,
    pub id: String,
    pub runner_id: String,
    pub kind: String,
    pub at: Timestamp,
    pub payload: serde_json::Map<String, serde_json::Value>,
}

impl RunnerEvent {
    pub fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("id".into(), self.id.clone().into());
        m.insert("type".into(), self.kind.clone().into());
        m.insert("runner_id".into(), self.runner_id.clone().into());
        m.insert(
            "processed_at".into(),
            paddock_core::ts::format(self.at).into(),
        );
        for (k, v) in &self.payload {
            m.insert(k.clone(), v.clone());
        }
        serde_json::Value::Object(m)
    }
}

/// A pure change of a session that also yields the `session.updated` payload.
pub type SessionUpdateFn =
    Box<dyn FnOnce(&Session) -> Result<Option<SessionChange>, CoreError> + Send>;

#[derive(Debug, Clone, Default)]
pub struct AgentFilter {
    pub include_archived: bool,
    pub created_gte: Option<Timestamp>,
    pub created_lte: Option<Timestamp>,
}

#[derive(Debug, Clone, Default)]
pub struct EnvironmentFilter {
    pub include_archived: bool,
}

#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    pub agent_id: Option<String>,
    pub agent_version: Option<u32>,
    pub include_archived: bool,
    pub statuses: Vec<SessionStatus>,
    pub created_gt: Option<Timestamp>,
    pub created_gte: Option<Timestamp>,
    pub created_lt: Option<Timestamp>,
    pub created_lte: Option<Timestamp>,
}

#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub types: Vec<String>,
    pub processed_gt: Option<Timestamp>,
    pub processed_gte: Option<Timestamp>,
    pub processed_lt: Option<Timestamp>,
    pub processed_lte: Option<Timestamp>,
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub action: Option<String>,
    pub target: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct RunnerFilter {
    pub states: Vec<RunnerState>,
    pub session_id: Option<String>,
    pub backend: Option<String>,
}

/// A retried POST is recognised by its key; `request_hash` tells a replay from misuse.
#[derive(Debug, Clone)]
pub struct Idempotency {
    pub key: String,
    pub request_hash: String,
}

/// One atomic append to a session's log.
#[derive(Debug, Clone, Default)]
pub struct Append {
    pub events: Vec<NewEvent>,
    /// Pending tool uses the events answer; each must exist and be unanswered.
    pub references: Vec<(String, Reference)>,
    pub idempotency: Option<Idempotency>,
    /// A status the session moves to in the same transaction.
    pub status: Option<SessionStatus>,
    /// The session's new usage, written in the same transaction (the agent loop's
    /// metering: one writer per session).
    pub usage: Option<paddock_core::session::Usage>,
    /// The session's new `stats.turns`, in the same transaction.
    pub turns: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct Appended {
    pub events: Vec<Event>,
    /// True when an earlier request with the same idempotency key is being replayed.
    pub replayed: bool,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    // Agents: a row per agent plus an immutable row per version.
    async fn create_agent(&self, agent: Agent) -> Result<Agent>;
    async fn get_agent(&self, id: &str, version: Option<u32>) -> Result<Agent>;
    /// Applies `f` to the latest version; `expected` guards against lost updates.
    async fn update_agent(
        &self,
        id: &str,
        expected: Option<u32>,
        f: UpdateFn<Agent>,
    ) -> Result<Agent>;
    async fn archive_agent(&self, id: &str, now: Timestamp) -> Result<Agent>;
    async fn delete_agent(&self, id: &str) -> Result<()>;
    async fn list_agents(&self, filter: AgentFilter, page: PageReq) -> Result<Page<Agent>>;
    async fn list_agent_versions(&self, id: &str, page: PageReq) -> Result<Page<Agent>>;

    // Environments.
    async fn create_environment(&self, env: Environment) -> Result<Environment>;
    async fn get_environment(&self, id: &str) -> Result<Environment>;
    async fn update_environment(&self, id: &str, f: UpdateFn<Environment>) -> Result<Environment>;
    async fn archive_environment(&self, id: &str, now: Timestamp) -> Result<Environment>;
    /// Refused while a live (not terminated, not archived) session uses it.
    async fn delete_environment(&self, id: &str) -> Result<()>;
    async fn list_environments(
        &self,
        filter: EnvironmentFilter,
        page: PageReq,
    ) -> Result<Page<Environment>>;

    // Sessions.
    /// Stores a new session and its initial events together; re-checks that its agent
    /// and environment still exist and are not archived.
    async fn create_session(
        &self,
        session: Session,
        initial: Vec<NewEvent>,
    ) -> Result<(Session, Vec<Event>)>;
    async fn get_session(&self, id: &str) -> Result<Session>;
    /// Applies `f`; a change is stored with a `session.updated` event.
    async fn update_session(
        &self,
        id: &str,
        f: SessionUpdateFn,
    ) -> Result<(Session, Option<Event>)>;
    async fn archive_session(&self, id: &str, now: Timestamp) -> Result<Session>;
    async fn delete_session(&self, id: &str) -> Result<()>;
    async fn list_sessions(&self, filter: SessionFilter, page: PageReq) -> Result<Page<Session>>;

    // Events.
    async fn append_events(&self, session_id: &str, append: Append) -> Result<Appended>;
    async fn list_events(
        &self,
        session_id: &str,
        filter: EventFilter,
        page: PageReq,
    ) -> Result<Page<Event>>;
    /// Events with `seq > after`, oldest first, at most `limit`.
    async fn events_after(&self, session_id: &str, after: i64, limit: usize) -> Result<Vec<Event>>;
    /// The position of an event in its session's log.
    async fn event_seq(&self, session_id: &str, event_id: &str) -> Result<i64>;
    /// The newest position in a session's log (0 when empty).
    async fn last_seq(&self, session_id: &str) -> Result<i64>;

    // Runners.
    /// Stores a new runner (with its profile, for capacity checks) and its first
    /// `runner.state_changed` event.
    async fn insert_runner(&self, runner: Runner) -> Result<RunnerChange>;
    /// Applies `f`; a state change is stored with its `runner.state_changed` event.
    async fn update_runner(&self, id: &str, f: RunnerUpdateFn) -> Result<RunnerChange>;
    async fn list_runner_events(&self, id: &str, page: PageReq) -> Result<Page<RunnerEvent>>;
    /// Appends an event (not a state change) to a runner's log, and to its session's.
    async fn append_runner_event(
        &self,
        id: &str,
        kind: &str,
        payload: serde_json::Map<String, serde_json::Value>,
    ) -> Result<RunnerChange>;
    /// Records activity (an exec, a file operation) on a runner.
    async fn touch_runner(&self, id: &str, at: Timestamp) -> Result<()>;
    // API tokens (stored by the hash of their secret).
    async fn insert_token(&self, token: ApiToken, hash: String) -> Result<ApiToken>;
    async fn token_by_hash(&self, hash: &str) -> Result<Option<ApiToken>>;
    async fn get_token(&self, id: &str) -> Result<ApiToken>;
    async fn list_tokens(&self, page: PageReq) -> Result<Page<ApiToken>>;
    /// Revokes a token (idempotent).
    async fn revoke_token(&self, id: &str, now: Timestamp) -> Result<ApiToken>;

    // The audit trail.
    async fn append_audit(&self, entry: AuditEntry) -> Result<()>;
    /// Newest first; `action`/`target` may use `*` wildcards.
    async fn list_audit(&self, filter: AuditFilter, limit: usize) -> Result<Vec<AuditEntry>>;
    /// Deletes entries older than `before`; returns how many.
    async fn prune_audit(&self, before: Timestamp) -> Result<u64>;
    /// Forgets idempotency keys recorded before `before`; returns how many.
    async fn prune_idempotency_keys(&self, before: Timestamp) -> Result<u64>;

    // Vaults and their credentials. A credential's secret is stored sealed, apart from
    // its public body.
    async fn create_vault(&self, vault: Value) -> Result<Value>;
    async fn get_vault(&self, id: &str) -> Result<Value>;
    async fn put_vault(&self, vault: Value) -> Result<Value>;
    async fn list_vaults(&self, include_archived: bool, page: PageReq) -> Result<Page<Value>>;
    async fn delete_vault(&self, id: &str) -> Result<()>;
    async fn create_credential(&self, cred: Value, sealed: String) -> Result<Value>;
    /// The credential and its sealed secret.
    async fn get_credential(&self, vault_id: &str, id: &str) -> Result<(Value, String)>;
    async fn put_credential(&self, cred: Value, sealed: Option<String>) -> Result<Value>;
    async fn list_credentials(
        &self,
        vault_id: &str,
        include_archived: bool,
        page: PageReq,
    ) -> Result<Page<Value>>;
    async fn delete_credential(&self, vault_id: &str, id: &str) -> Result<()>;
    /// Every credential id with its sealed secret (for key rotation).
    async fn all_sealed(&self) -> Result<Vec<(String, String)>>;
    async fn set_sealed(&self, id: &str, sealed: String) -> Result<()>;

    // Snapshots.
    async fn insert_snapshot(&self, snap: Snapshot) -> Result<Snapshot>;
    async fn get_snapshot(&self, id: &str) -> Result<Snapshot>;
    async fn list_snapshots(
        &self,
        runner_id: Option<String>,
        page: PageReq,
    ) -> Result<Page<Snapshot>>;
    async fn delete_snapshot(&self, id: &str) -> Result<()>;
    /// Runners of a profile that hold resources (creating … stopping).
    async fn count_active_runners(&self, profile: &str) -> Result<u64>;
    async fn get_runner(&self, id: &str) -> Result<Runner>;
    async fn list_runners(&self, filter: RunnerFilter, page: PageReq) -> Result<Page<Runner>>;
}
