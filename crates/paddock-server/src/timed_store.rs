//! A [`Store`] decorator that times every call of the store it wraps and records the
//! latency in `paddock_store_operation_duration_seconds{operation}`, the label being the
//! name of the trait method (`create_agent`, `append_events`, …). Calls that fail are
//! recorded as well: a slow error costs the caller as much as a slow success.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use paddock_core::agent::Agent;
use paddock_core::environment::Environment;
use paddock_core::event::{Event, NewEvent};
use paddock_core::runner::Runner;
use paddock_core::security::{ApiToken, AuditEntry};
use paddock_core::session::Session;
use paddock_core::ts::Timestamp;
use paddock_metrics::PaddockMetrics;
use paddock_store::{
    AgentFilter, Append, Appended, AuditFilter, EnvironmentFilter, EventFilter, Page, PageReq,
    Result, RunnerChange, RunnerEvent, RunnerFilter, RunnerUpdateFn, SessionFilter,
    SessionUpdateFn, Snapshot, Store, UpdateFn,
};
use serde_json::Value;

/// Wraps a [`Store`], recording how long each of its operations takes.
#[derive(Clone)]
pub struct TimedStore {
    pub inner: Arc<dyn Store>,
    pub metrics: Arc<PaddockMetrics>,
}

impl TimedStore {
    pub fn new(inner: Arc<dyn Store>, metrics: Arc<PaddockMetrics>) -> Self {
        TimedStore { inner, metrics }
    }

    /// Awaits `call` and records its elapsed time under `operation`, whatever its outcome.
    async fn timed<T, F>(&self, operation: &'static str, call: F) -> Result<T>
    where
        F: Future<Output = Result<T>> + Send,
    {
        let start = Instant::now();
        let out = call.await;
        self.metrics
            .record_store_operation(operation, start.elapsed());
        out
    }
}

/// `timed!(self.method(args…))` forwards to `self.inner.method(args…)`, timed under the
/// label `"method"`, so the label cannot drift from the method's name.
macro_rules! timed {
    ($self:ident . $method:ident ( $($arg:expr),* $(,)? )) => {
        $self
            .timed(stringify!($method), $self.inner.$method($($arg),*))
            .await
    };
}

#[async_trait]
impl Store for TimedStore {
    // Agents.
    async fn create_agent(&self, agent: Agent) -> Result<Agent> {
        timed!(self.create_agent(agent))
    }

    async fn get_agent(&self, id: &str, version: Option<u32>) -> Result<Agent> {
        timed!(self.get_agent(id, version))
    }

    async fn update_agent(
        &self,
        id: &str,
        expected: Option<u32>,
        f: UpdateFn<Agent>,
    ) -> Result<Agent> {
        timed!(self.update_agent(id, expected, f))
    }

    async fn archive_agent(&self, id: &str, now: Timestamp) -> Result<Agent> {
        timed!(self.archive_agent(id, now))
    }

    async fn delete_agent(&self, id: &str) -> Result<()> {
        timed!(self.delete_agent(id))
    }

    async fn list_agents(&self, filter: AgentFilter, page: PageReq) -> Result<Page<Agent>> {
        timed!(self.list_agents(filter, page))
    }

    async fn list_agent_versions(&self, id: &str, page: PageReq) -> Result<Page<Agent>> {
        timed!(self.list_agent_versions(id, page))
    }

    // Environments.
    async fn create_environment(&self, env: Environment) -> Result<Environment> {
        timed!(self.create_environment(env))
    }

    async fn get_environment(&self, id: &str) -> Result<Environment> {
        timed!(self.get_environment(id))
    }

    async fn update_environment(&self, id: &str, f: UpdateFn<Environment>) -> Result<Environment> {
        timed!(self.update_environment(id, f))
    }

    async fn archive_environment(&self, id: &str, now: Timestamp) -> Result<Environment> {
        timed!(self.archive_environment(id, now))
    }

    async fn delete_environment(&self, id: &str) -> Result<()> {
        timed!(self.delete_environment(id))
    }

    async fn list_environments(
        &self,
        filter: EnvironmentFilter,
        page: PageReq,
    ) -> Result<Page<Environment>> {
        timed!(self.list_environments(filter, page))
    }

    // Sessions.
    async fn create_session(
        &self,
        session: Session,
        initial: Vec<NewEvent>,
    ) -> Result<(Session, Vec<Event>)> {
        timed!(self.create_session(session, initial))
    }

    async fn get_session(&self, id: &str) -> Result<Session> {
        timed!(self.get_session(id))
    }

    async fn update_session(
        &self,
        id: &str,
        f: SessionUpdateFn,
    ) -> Result<(Session, Option<Event>)> {
        timed!(self.update_session(id, f))
    }

    async fn archive_session(&self, id: &str, now: Timestamp) -> Result<Session> {
        timed!(self.archive_session(id, now))
    }

    async fn delete_session(&self, id: &str) -> Result<()> {
        timed!(self.delete_session(id))
    }

    async fn list_sessions(&self, filter: SessionFilter, page: PageReq) -> Result<Page<Session>> {
        timed!(self.list_sessions(filter, page))
    }

    // Events.
    async fn append_events(&self, session_id: &str, append: Append) -> Result<Appended> {
        timed!(self.append_events(session_id, append))
    }

    async fn list_events(
        &self,
        session_id: &str,
        filter: EventFilter,
        page: PageReq,
    ) -> Result<Page<Event>> {
        timed!(self.list_events(session_id, filter, page))
    }

    async fn events_after(&self, session_id: &str, after: i64, limit: usize) -> Result<Vec<Event>> {
        timed!(self.events_after(session_id, after, limit))
    }

    async fn event_seq(&self, session_id: &str, event_id: &str) -> Result<i64> {
        timed!(self.event_seq(session_id, event_id))
    }

    async fn last_seq(&self, session_id: &str) -> Result<i64> {
        timed!(self.last_seq(session_id))
    }

    // Runners.
    async fn insert_runner(&self, runner: Runner) -> Result<RunnerChange> {
        timed!(self.insert_runner(runner))
    }

    async fn update_runner(&self, id: &str, f: RunnerUpdateFn) -> Result<RunnerChange> {
        timed!(self.update_runner(id, f))
    }

    async fn list_runner_events(&self, id: &str, page: PageReq) -> Result<Page<RunnerEvent>> {
        timed!(self.list_runner_events(id, page))
    }

    async fn append_runner_event(
        &self,
        id: &str,
        kind: &str,
        payload: serde_json::Map<String, Value>,
    ) -> Result<RunnerChange> {
        timed!(self.append_runner_event(id, kind, payload))
    }

    async fn touch_runner(&self, id: &str, at: Timestamp) -> Result<()> {
        timed!(self.touch_runner(id, at))
    }

    // API tokens.
    async fn insert_token(&self, token: ApiToken, hash: String) -> Result<ApiToken> {
        timed!(self.insert_token(token, hash))
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<ApiToken>> {
        timed!(self.token_by_hash(hash))
    }

    async fn get_token(&self, id: &str) -> Result<ApiToken> {
        timed!(self.get_token(id))
    }

    async fn list_tokens(&self, page: PageReq) -> Result<Page<ApiToken>> {
        timed!(self.list_tokens(page))
    }

    async fn revoke_token(&self, id: &str, now: Timestamp) -> Result<ApiToken> {
        timed!(self.revoke_token(id, now))
    }

    // The audit trail.
    async fn append_audit(&self, entry: AuditEntry) -> Result<()> {
        timed!(self.append_audit(entry))
    }

    async fn list_audit(&self, filter: AuditFilter, limit: usize) -> Result<Vec<AuditEntry>> {
        timed!(self.list_audit(filter, limit))
    }

    async fn prune_audit(&self, before: Timestamp) -> Result<u64> {
        timed!(self.prune_audit(before))
    }

    async fn prune_idempotency_keys(&self, before: Timestamp) -> Result<u64> {
        timed!(self.prune_idempotency_keys(before))
    }

    // Vaults and credentials.
    async fn create_vault(&self, vault: Value) -> Result<Value> {
        timed!(self.create_vault(vault))
    }

    async fn get_vault(&self, id: &str) -> Result<Value> {
        timed!(self.get_vault(id))
    }

    async fn put_vault(&self, vault: Value) -> Result<Value> {
        timed!(self.put_vault(vault))
    }

    async fn list_vaults(&self, include_archived: bool, page: PageReq) -> Result<Page<Value>> {
        timed!(self.list_vaults(include_archived, page))
    }

    async fn delete_vault(&self, id: &str) -> Result<()> {
        timed!(self.delete_vault(id))
    }

    async fn create_credential(&self, cred: Value, sealed: String) -> Result<Value> {
        timed!(self.create_credential(cred, sealed))
    }

    async fn get_credential(&self, vault_id: &str, id: &str) -> Result<(Value, String)> {
        timed!(self.get_credential(vault_id, id))
    }

    async fn put_credential(&self, cred: Value, sealed: Option<String>) -> Result<Value> {
        timed!(self.put_credential(cred, sealed))
    }

    async fn list_credentials(
        &self,
        vault_id: &str,
        include_archived: bool,
        page: PageReq,
    ) -> Result<Page<Value>> {
        timed!(self.list_credentials(vault_id, include_archived, page))
    }

    async fn delete_credential(&self, vault_id: &str, id: &str) -> Result<()> {
        timed!(self.delete_credential(vault_id, id))
    }

    async fn all_sealed(&self) -> Result<Vec<(String, String)>> {
        timed!(self.all_sealed())
    }

    async fn set_sealed(&self, id: &str, sealed: String) -> Result<()> {
        timed!(self.set_sealed(id, sealed))
    }

    // Snapshots.
    async fn insert_snapshot(&self, snap: Snapshot) -> Result<Snapshot> {
        timed!(self.insert_snapshot(snap))
    }

    async fn get_snapshot(&self, id: &str) -> Result<Snapshot> {
        timed!(self.get_snapshot(id))
    }

    async fn list_snapshots(
        &self,
        runner_id: Option<String>,
        page: PageReq,
    ) -> Result<Page<Snapshot>> {
        timed!(self.list_snapshots(runner_id, page))
    }

    async fn delete_snapshot(&self, id: &str) -> Result<()> {
        timed!(self.delete_snapshot(id))
    }

    async fn count_active_runners(&self, profile: &str) -> Result<u64> {
        timed!(self.count_active_runners(profile))
    }

    async fn get_runner(&self, id: &str) -> Result<Runner> {
        timed!(self.get_runner(id))
    }

    async fn list_runners(&self, filter: RunnerFilter, page: PageReq) -> Result<Page<Runner>> {
        timed!(self.list_runners(filter, page))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paddock_core::agent::AgentCreate;
    use paddock_core::common::parse_json;
    use paddock_core::{id, ts};
    use paddock_store::{SqliteStore, StoreError};

    fn count_line(operation: &str, n: u64) -> String {
        format!("paddock_store_operation_duration_seconds_count{{operation=\"{operation}\"}} {n}\n")
    }

    #[tokio::test]
    async fn records_every_call_by_operation_errors_included() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inner = SqliteStore::open(&dir.path().join("paddock.db")).expect("the store opens");
        let metrics = Arc::new(PaddockMetrics::new("test"));
        let store = TimedStore::new(Arc::new(inner), metrics.clone());

        let body = br#"{"name": "timed", "model": "claude-sonnet-4-6"}"#;
        let agent = parse_json::<AgentCreate>(body)
            .expect("agent body parses")
            .into_agent(id::new(id::AGENT), ts::now())
            .expect("agent is valid");
        let created = store.create_agent(agent).await.expect("agent is created");

        for _ in 0..2 {
            let got = store
                .get_agent(&created.id, None)
                .await
                .expect("agent is found");
            assert_eq!(got.id, created.id);
        }
        // A failing call is timed too.
        match store.get_agent("agent_missing", None).await {
            Err(StoreError::NotFound { .. }) => {}
            other => panic!("expected NotFound, got {other:?}"),
        }
        let page = store
            .list_agents(AgentFilter::default(), PageReq::default())
            .await
            .expect("agents are listed");
        assert_eq!(page.data.len(), 1);

        let text = metrics.render();
        for (operation, n) in [("create_agent", 1), ("get_agent", 3), ("list_agents", 1)] {
            let line = count_line(operation, n);
            assert!(text.contains(&line), "missing {line:?} in:\n{text}");
        }
        assert!(
            !text.contains("operation=\"delete_agent\""),
            "an operation never called has no series:\n{text}"
        );
    }
}
