//! The embedded SQLite store. One connection behind a mutex, used from blocking tasks;
//! every change is one IMMEDIATE transaction, so writers are serialized and the
//! per-session event sequence has no gaps.

use async_trait::async_trait;
use paddock_core::agent::Agent;
use paddock_core::environment::Environment;
use paddock_core::event::{Event, NewEvent, Reference};
use paddock_core::id;
use paddock_core::runner::Runner;
use paddock_core::session::{Session, SessionStatus};
use paddock_core::ts::{self, Timestamp};
use paddock_core::CoreError;
use rusqlite::types::Value as Sql;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row, Transaction};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::migrations::MIGRATIONS;
use crate::page::{finish, plan};
use paddock_core::security::{ApiToken, AuditEntry};

use crate::{
    AgentFilter, Append, Appended, AuditFilter, EnvironmentFilter, EventFilter, Page, PageReq,
    Result, RunnerChange, RunnerEvent, RunnerFilter, RunnerUpdateFn, SessionFilter,
    SessionUpdateFn, Snapshot, Store, StoreError, UpdateFn,
};

#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

fn to_json<T: Serialize>(v: &T) -> Result<String> {
    Ok(serde_json::to_string(v)?)
}

fn from_json<T: DeserializeOwned>(s: &str) -> Result<T> {
    Ok(serde_json::from_str(s)?)
}

fn not_found(kind: &'static str, id: &str) -> StoreError {
    StoreError::NotFound {
        kind,
        id: id.to_string(),
    }
}

fn tsopt(t: Option<Timestamp>) -> Option<String> {
    t.map(ts::format)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        enable_wal(&conn)?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&mut conn)?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64> {
        let c = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        Ok(c.pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    /// Runs `f` in one IMMEDIATE transaction on a blocking thread.
    async fn tx<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = conn.lock().unwrap_or_else(|p| p.into_inner());
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Runs a read on a blocking thread.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let c = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&c)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

pub(crate) fn migrate(conn: &mut Connection) -> Result<()> {
    let supported = MIGRATIONS.len() as i64;
    // Read the version inside the exclusive transaction, so that two processes opening
    // a new file at once cannot both apply the same migration.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)?;
    let current: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if current > supported || current < 0 {
        return Err(StoreError::SchemaTooNew {
            found: current,
            supported,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tracing::info!(version = i + 1, "applied store migration");
    }
    tx.commit()?;
    Ok(())
}

/// Switches to WAL, retrying while another connection holds the file: changing the
/// journal mode does not wait on the busy handler.
fn enable_wal(conn: &Connection) -> Result<()> {
    let mut attempt = 0;
    loop {
        match conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0)) {
            Ok(_) => return Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && attempt < 200 =>
            {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(25));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Runs a keyset-paginated query. `select` must yield the key as its first column.
fn list_page<T>(
    c: &Connection,
    select: &str,
    key: &str,
    conds: Vec<String>,
    params: Vec<Sql>,
    req: &PageReq,
    map: impl Fn(&Row<'_>) -> Result<T>,
) -> Result<Page<T>> {
    list_page_within(c, select, key, conds, params, req, map, None)
}

/// Events can be large (images): a page or a stream batch holds at most this many bytes
/// of payload (and at least one event).
const EVENT_BYTES_BUDGET: usize = 8 * 1024 * 1024;

fn event_bytes(e: &Event) -> usize {
    e.payload.values().map(|v| v.to_string().len()).sum()
}

/// A byte limit, and each row's weight.
type Budget<'a, T> = (usize, &'a dyn Fn(&T) -> usize);

/// [`list_page`], and with `budget` (a byte limit and each row's weight) a page ends
/// early once its rows weigh that much; its cursor then leads on from there.
#[allow(clippy::too_many_arguments)]
fn list_page_within<T>(
    c: &Connection,
    select: &str,
    key: &str,
    mut conds: Vec<String>,
    params: Vec<Sql>,
    req: &PageReq,
    map: impl Fn(&Row<'_>) -> Result<T>,
    budget: Option<Budget<'_, T>>,
) -> Result<Page<T>> {
    let (cursor_cond, dir, reversed) = plan(req, key);
    conds.extend(cursor_cond);
    let where_ = if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    };
    let sql = format!(
        "{select}{where_} ORDER BY {key} {dir} LIMIT {}",
        req.limit + 1
    );
    let mut stmt = c.prepare(&sql)?;
    let mut rows = stmt.query(params_from_iter(params))?;
    let mut out = Vec::new();
    let mut bytes = 0usize;
    while let Some(r) = rows.next()? {
        let row = map(r)?;
        if let Some((max, weigh)) = budget {
            bytes += weigh(&row);
            if bytes > max && !out.is_empty() && out.len() < req.limit {
                // Over the budget: this row starts the next page (it is fetched, so
                // the page knows there is more).
                let cut = PageReq {
                    limit: out.len(),
                    order: req.order,
                    cursor: req.cursor,
                };
                out.push((r.get::<_, i64>(0)?, row));
                return Ok(finish(&cut, out, reversed));
            }
        }
        out.push((r.get::<_, i64>(0)?, row));
    }
    Ok(finish(req, out, reversed))
}

// ------------------------------------------------------------------ agents

fn load_agent(c: &Connection, id: &str, version: Option<u32>) -> Result<Agent> {
    let row: Option<(u32, Option<String>)> = c
        .query_row(
            "SELECT version, archived_at FROM agents WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (latest, archived_at) = row.ok_or_else(|| not_found("agent", id))?;
    let v = version.unwrap_or(latest);
    let body: Option<String> = c
        .query_row(
            "SELECT body FROM agent_versions WHERE agent_id = ?1 AND version = ?2",
            params![id, v],
            |r| r.get(0),
        )
        .optional()?;
    let body = body.ok_or_else(|| not_found("agent version", &format!("{id} version {v}")))?;
    let mut agent: Agent = from_json(&body)?;
    agent.archived_at = archived_at.as_deref().and_then(ts::parse);
    Ok(agent)
}

fn live_sessions(c: &Connection, column: &str, id: &str) -> Result<i64> {
    Ok(c.query_row(
        &format!(
            "SELECT count(*) FROM sessions WHERE {column} = ?1 AND archived_at IS NULL AND status != 'terminated'"
        ),
        [id],
        |r| r.get(0),
    )?)
}

// ------------------------------------------------------------------ sessions

fn load_session(c: &Connection, id: &str) -> Result<Session> {
    load_body(c, "sessions", "session", id)
}

fn write_session(c: &Connection, s: &Session) -> Result<()> {
    let n = c.execute(
        "UPDATE sessions SET status = ?2, archived_at = ?3, body = ?4 WHERE id = ?1",
        params![s.id, s.status.as_str(), tsopt(s.archived_at), to_json(s)?],
    )?;
    if n == 0 {
        return Err(not_found("session", &s.id));
    }
    Ok(())
}

fn event_from_row(r: &Row<'_>) -> Result<Event> {
    let processed: String = r.get(4)?;
    Ok(Event {
        seq: r.get(0)?,
        id: r.get(1)?,
        session_id: r.get(5)?,
        kind: r.get(2)?,
        processed_at: ts::parse(&processed)
            .ok_or_else(|| StoreError::Task(format!("bad stored time {processed:?}")))?,
        payload: from_json(&r.get::<_, String>(3)?)?,
    })
}

const EVENT_COLS: &str = "seq, id, type, payload, processed_at, session_id";

/// Appends events at the end of a session's log inside an open transaction.
fn insert_events(
    tx: &Transaction<'_>,
    session_id: &str,
    events: Vec<NewEvent>,
    now: Timestamp,
) -> Result<Vec<Event>> {
    // Stamped here, inside the transaction that assigns the seq, so that event times
    // never run backwards along the log (the caller's time may be older).
    let _ = now;
    let now = ts::now();
    let last: i64 = tx
        .query_row(
            "SELECT last_seq FROM sessions WHERE id = ?1",
            [session_id],
            |r| r.get(0),
        )
        .optional()?
        .ok_or_else(|| not_found("session", session_id))?;
    let mut out = Vec::with_capacity(events.len());
    let mut stmt = tx.prepare_cached(
        "INSERT INTO events (session_id, seq, id, type, processed_at, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for (i, e) in events.into_iter().enumerate() {
        let ev = Event {
            seq: last + 1 + i as i64,
            id: e.id.unwrap_or_else(|| id::new(id::EVENT)),
            session_id: session_id.to_string(),
            kind: e.kind,
            processed_at: now,
            payload: e.payload,
        };
        stmt.execute(params![
            session_id,
            ev.seq,
            ev.id,
            ev.kind,
            ts::format(now),
            to_json(&ev.payload)?
        ])?;
        out.push(ev);
    }
    if let Some(l) = out.last() {
        tx.execute(
            "UPDATE sessions SET last_seq = ?2 WHERE id = ?1",
            params![session_id, l.seq],
        )?;
    }
    Ok(out)
}

fn check_reference(
    tx: &Transaction<'_>,
    session_id: &str,
    field: &str,
    r: &Reference,
) -> Result<()> {
    let (target, kinds, answer_kind, answer_key): (&str, &[&str], &str, &str) = match r {
        Reference::PendingToolUse(t) => (
            t,
            &["agent.tool_use", "agent.mcp_tool_use"],
            "user.tool_confirmation",
            "$.tool_use_id",
        ),
        Reference::PendingCustomToolUse(t) => (
            t,
            &["agent.custom_tool_use"],
            "user.custom_tool_result",
            "$.custom_tool_use_id",
        ),
    };
    let row: Option<(String, String)> = tx
        .query_row(
            "SELECT type, payload FROM events WHERE session_id = ?1 AND id = ?2",
            params![session_id, target],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let awaiting = match &row {
        Some((kind, payload)) if kinds.contains(&kind.as_str()) => {
            kind == "agent.custom_tool_use"
                || serde_json::from_str::<serde_json::Value>(payload)
                    .ok()
                    .and_then(|p| p.get("evaluated_permission").cloned())
                    == Some(serde_json::Value::String("ask".into()))
        }
        _ => false,
    };
    if !awaiting {
        return Err(CoreError::invalid(
            field,
            format!(
                "{target:?} is not a {} of this session that awaits an answer",
                kinds.join(" or ")
            ),
        )
        .into());
    }
    let answered: i64 = tx.query_row(
        &format!(
            "SELECT count(*) FROM events WHERE session_id = ?1 AND type = ?2 AND json_extract(payload, '{answer_key}') = ?3"
        ),
        params![session_id, answer_kind, target],
        |r| r.get(0),
    )?;
    if answered > 0 {
        return Err(StoreError::Conflict(format!(
            "{field}: {target:?} has already been answered"
        )));
    }
    Ok(())
}

/// Adds `col IN (?, ?, …)` for `values` (nothing when there are none).
fn push_in(
    col: &str,
    values: impl IntoIterator<Item = String>,
    conds: &mut Vec<String>,
    p: &mut Vec<Sql>,
) {
    let mut marks = vec![];
    for v in values {
        p.push(Sql::Text(v));
        marks.push(format!("?{}", p.len()));
    }
    if !marks.is_empty() {
        conds.push(format!("{col} IN ({})", marks.join(", ")));
    }
}

/// The JSON `body` of the row of `table` with this id, or NotFound naming `kind`.
/// (`table` is always one of this file's constants, never input.)
fn load_body<T: DeserializeOwned>(
    c: &Connection,
    table: &str,
    kind: &'static str,
    id: &str,
) -> Result<T> {
    let body: Option<String> = c
        .query_row(
            &format!("SELECT body FROM {table} WHERE id = ?1"),
            [id],
            |r| r.get(0),
        )
        .optional()?;
    from_json(&body.ok_or_else(|| not_found(kind, id))?)
}

fn ts_conds(
    col: &str,
    bounds: [(&str, Option<Timestamp>); 4],
    conds: &mut Vec<String>,
    p: &mut Vec<Sql>,
) {
    for (op, t) in bounds {
        if let Some(t) = t {
            p.push(Sql::Text(ts::format(t)));
            conds.push(format!("{col} {op} ?{}", p.len()));
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_agent(&self, agent: Agent) -> Result<Agent> {
        self.tx(move |tx| {
            tx.execute(
                "INSERT INTO agents (id, version, created_at, archived_at) VALUES (?1, ?2, ?3, NULL)",
                params![agent.id, agent.version, ts::format(agent.created_at)],
            )?;
            tx.execute(
                "INSERT INTO agent_versions (agent_id, version, body) VALUES (?1, ?2, ?3)",
                params![agent.id, agent.version, to_json(&agent)?],
            )?;
            Ok(agent)
        })
        .await
    }

    async fn get_agent(&self, id: &str, version: Option<u32>) -> Result<Agent> {
        let id = id.to_string();
        self.read(move |c| load_agent(c, &id, version)).await
    }

    async fn update_agent(
        &self,
        id: &str,
        expected: Option<u32>,
        f: UpdateFn<Agent>,
    ) -> Result<Agent> {
        let id = id.to_string();
        self.tx(move |tx| {
            let cur = load_agent(tx, &id, None)?;
            if let Some(e) = expected {
                if e != cur.version {
                    return Err(StoreError::VersionConflict {
                        kind: "agent",
                        id,
                        expected: e,
                        current: cur.version,
                    });
                }
            }
            if cur.archived_at.is_some() {
                return Err(StoreError::Conflict(format!(
                    "agent {id:?} is archived and cannot be changed"
                )));
            }
            let Some(next) = f(&cur)? else {
                return Ok(cur);
            };
            tx.execute(
                "INSERT INTO agent_versions (agent_id, version, body) VALUES (?1, ?2, ?3)",
                params![id, next.version, to_json(&next)?],
            )?;
            tx.execute(
                "UPDATE agents SET version = ?2 WHERE id = ?1",
                params![id, next.version],
            )?;
            Ok(next)
        })
        .await
    }

    async fn archive_agent(&self, id: &str, now: Timestamp) -> Result<Agent> {
        let id = id.to_string();
        self.tx(move |tx| {
            tx.execute(
                "UPDATE agents SET archived_at = ?2 WHERE id = ?1 AND archived_at IS NULL",
                params![id, ts::format(now)],
            )?;
            load_agent(tx, &id, None)
        })
        .await
    }

    async fn delete_agent(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.tx(move |tx| {
            load_agent(tx, &id, None)?;
            let live = live_sessions(tx, "agent_id", &id)?;
            if live > 0 {
                return Err(StoreError::Conflict(format!(
                    "agent {id:?} is used by {live} live session(s); archive or delete them first"
                )));
            }
            tx.execute("DELETE FROM agents WHERE id = ?1", [&id])?;
            Ok(())
        })
        .await
    }

    async fn list_agents(&self, filter: AgentFilter, page: PageReq) -> Result<Page<Agent>> {
        self.read(move |c| {
            let mut conds = vec![];
            let mut p = vec![];
            if !filter.include_archived {
                conds.push("a.archived_at IS NULL".to_string());
            }
            ts_conds(
                "a.created_at",
                [(">=", filter.created_gte), ("<=", filter.created_lte), (">", None), ("<", None)],
                &mut conds,
                &mut p,
            );
            list_page(
                c,
                "SELECT a.k, v.body, a.archived_at FROM agents a JOIN agent_versions v ON v.agent_id = a.id AND v.version = a.version",
                "a.k",
                conds,
                p,
                &page,
                |r| {
                    let mut a: Agent = from_json(&r.get::<_, String>(1)?)?;
                    a.archived_at = r.get::<_, Option<String>>(2)?.as_deref().and_then(ts::parse);
                    Ok(a)
                },
            )
        })
        .await
    }

    async fn list_agent_versions(&self, id: &str, page: PageReq) -> Result<Page<Agent>> {
        let id = id.to_string();
        self.read(move |c| {
            let latest = load_agent(c, &id, None)?;
            list_page(
                c,
                "SELECT version, body FROM agent_versions",
                "version",
                vec!["agent_id = ?1".into()],
                vec![Sql::Text(id.clone())],
                &page,
                |r| {
                    let mut a: Agent = from_json(&r.get::<_, String>(1)?)?;
                    a.archived_at = latest.archived_at;
                    Ok(a)
                },
            )
        })
        .await
    }

    // -------------------------------------------------------------- environments

    async fn create_environment(&self, env: Environment) -> Result<Environment> {
        self.tx(move |tx| {
            tx.execute(
                "INSERT INTO environments (id, created_at, archived_at, body) VALUES (?1, ?2, NULL, ?3)",
                params![env.id, ts::format(env.created_at), to_json(&env)?],
            )?;
            Ok(env)
        })
        .await
    }

    async fn get_environment(&self, id: &str) -> Result<Environment> {
        let id = id.to_string();
        self.read(move |c| load_environment(c, &id)).await
    }

    async fn update_environment(&self, id: &str, f: UpdateFn<Environment>) -> Result<Environment> {
        let id = id.to_string();
        self.tx(move |tx| {
            let cur = load_environment(tx, &id)?;
            let Some(next) = f(&cur)? else {
                return Ok(cur);
            };
            write_environment(tx, &next)?;
            Ok(next)
        })
        .await
    }

    async fn archive_environment(&self, id: &str, now: Timestamp) -> Result<Environment> {
        let id = id.to_string();
        self.tx(move |tx| {
            let mut env = load_environment(tx, &id)?;
            if env.archived_at.is_none() {
                env.archived_at = Some(now);
                env.updated_at = now;
                write_environment(tx, &env)?;
            }
            Ok(env)
        })
        .await
    }

    async fn delete_environment(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.tx(move |tx| {
            load_environment(tx, &id)?;
            let live = live_sessions(tx, "environment_id", &id)?;
            if live > 0 {
                return Err(StoreError::Conflict(format!(
                    "environment {id:?} is used by {live} live session(s); archive or delete them first"
                )));
            }
            tx.execute("DELETE FROM environments WHERE id = ?1", [&id])?;
            Ok(())
        })
        .await
    }

    async fn list_environments(
        &self,
        filter: EnvironmentFilter,
        page: PageReq,
    ) -> Result<Page<Environment>> {
        self.read(move |c| {
            let conds = if filter.include_archived {
                vec![]
            } else {
                vec!["archived_at IS NULL".to_string()]
            };
            list_page(
                c,
                "SELECT k, body FROM environments",
                "k",
                conds,
                vec![],
                &page,
                |r| from_json(&r.get::<_, String>(1)?),
            )
        })
        .await
    }

    // -------------------------------------------------------------- sessions

    async fn create_session(
        &self,
        session: Session,
        initial: Vec<NewEvent>,
    ) -> Result<(Session, Vec<Event>)> {
        self.tx(move |tx| {
            let env = load_environment(tx, &session.environment_id)?;
            if env.archived_at.is_some() {
                return Err(CoreError::invalid_code(
                    "environment_id",
                    format!("environment {:?} is archived", env.id),
                    "environment_archived",
                )
                .into());
            }
            let agent_archived: Option<Option<String>> = tx
                .query_row(
                    "SELECT archived_at FROM agents WHERE id = ?1",
                    [&session.agent.id],
                    |r| r.get(0),
                )
                .optional()?;
            match agent_archived {
                None => return Err(not_found("agent", &session.agent.id)),
                Some(Some(_)) => {
                    return Err(CoreError::invalid_code(
                        "agent",
                        format!("agent {:?} is archived", session.agent.id),
                        "agent_archived",
                    )
                    .into())
                }
                Some(None) => {}
            }
            tx.execute(
                "INSERT INTO sessions (id, agent_id, agent_version, environment_id, status, created_at, archived_at, last_seq, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, 0, ?7)",
                params![
                    session.id,
                    session.agent.id,
                    session.agent.version,
                    session.environment_id,
                    session.status.as_str(),
                    ts::format(session.created_at),
                    to_json(&session)?
                ],
            )?;
            let events = insert_events(tx, &session.id, initial, session.created_at)?;
            Ok((session, events))
        })
        .await
    }

    async fn get_session(&self, id: &str) -> Result<Session> {
        let id = id.to_string();
        self.read(move |c| load_session(c, &id)).await
    }

    async fn update_session(
        &self,
        id: &str,
        f: SessionUpdateFn,
    ) -> Result<(Session, Option<Event>)> {
        let id = id.to_string();
        self.tx(move |tx| {
            let cur = load_session(tx, &id)?;
            if cur.archived_at.is_some() {
                return Err(StoreError::Conflict(format!(
                    "session {id:?} is archived and cannot be changed"
                )));
            }
            let Some((next, changed)) = f(&cur)? else {
                return Ok((cur, None));
            };
            write_session(tx, &next)?;
            let ev = insert_events(
                tx,
                &id,
                vec![NewEvent::new(
                    "session.updated",
                    serde_json::Value::Object(changed),
                )],
                next.updated_at,
            )?;
            Ok((next, ev.into_iter().next()))
        })
        .await
    }

    async fn archive_session(&self, id: &str, now: Timestamp) -> Result<Session> {
        let id = id.to_string();
        self.tx(move |tx| {
            let mut s = load_session(tx, &id)?;
            if s.archived_at.is_some() {
                return Ok(s);
            }
            if s.status == SessionStatus::Running {
                return Err(StoreError::Conflict(format!(
                    "session {id:?} is running; interrupt it before archiving"
                )));
            }
            s.archived_at = Some(now);
            s.updated_at = now;
            write_session(tx, &s)?;
            Ok(s)
        })
        .await
    }

    async fn delete_session(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.tx(move |tx| {
            let s = load_session(tx, &id)?;
            if s.status == SessionStatus::Running {
                return Err(StoreError::Conflict(format!(
                    "session {id:?} is running; interrupt it before deleting"
                )));
            }
            tx.execute("DELETE FROM sessions WHERE id = ?1", [&id])?;
            Ok(())
        })
        .await
    }

    async fn list_sessions(&self, filter: SessionFilter, page: PageReq) -> Result<Page<Session>> {
        self.read(move |c| {
            let mut conds = vec![];
            let mut p: Vec<Sql> = vec![];
            if !filter.include_archived {
                conds.push("archived_at IS NULL".to_string());
            }
            if let Some(a) = filter.agent_id {
                p.push(Sql::Text(a));
                conds.push(format!("agent_id = ?{}", p.len()));
            }
            if let Some(v) = filter.agent_version {
                p.push(Sql::Integer(i64::from(v)));
                conds.push(format!("agent_version = ?{}", p.len()));
            }
            push_in(
                "status",
                filter.statuses.iter().map(|s| s.as_str().to_string()),
                &mut conds,
                &mut p,
            );
            ts_conds(
                "created_at",
                [
                    (">", filter.created_gt),
                    (">=", filter.created_gte),
                    ("<", filter.created_lt),
                    ("<=", filter.created_lte),
                ],
                &mut conds,
                &mut p,
            );
            list_page(
                c,
                "SELECT k, body FROM sessions",
                "k",
                conds,
                p,
                &page,
                |r| from_json(&r.get::<_, String>(1)?),
            )
        })
        .await
    }

    // -------------------------------------------------------------- events

    async fn append_events(&self, session_id: &str, append: Append) -> Result<Appended> {
        let sid = session_id.to_string();
        self.tx(move |tx| {
            let mut session = load_session(tx, &sid)?;
            if let Some(idem) = &append.idempotency {
                let prior: Option<(String, String)> = tx
                    .query_row(
                        "SELECT request_hash, event_ids FROM idempotency_keys WHERE session_id = ?1 AND key = ?2",
                        params![sid, idem.key],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?;
                if let Some((hash, ids)) = prior {
                    if hash != idem.request_hash {
                        return Err(StoreError::IdempotencyMismatch {
                            key: idem.key.clone(),
                        });
                    }
                    let ids: Vec<String> = from_json(&ids)?;
                    let mut events = Vec::with_capacity(ids.len());
                    for eid in ids {
                        events.push(tx.query_row(
                            &format!("SELECT {EVENT_COLS} FROM events WHERE session_id = ?1 AND id = ?2"),
                            params![sid, eid],
                            |r| Ok(event_from_row(r)),
                        )??);
                    }
                    return Ok(Appended {
                        events,
                        replayed: true,
                    });
                }
            }
            if session.archived_at.is_some() {
                return Err(StoreError::Conflict(format!(
                    "session {sid:?} is archived and takes no new events"
                )));
            }
            if session.status == SessionStatus::Terminated {
                return Err(StoreError::Conflict(format!(
                    "session {sid:?} is terminated and takes no new events"
                )));
            }
            let mut seen = HashSet::new();
            for (field, r) in &append.references {
                if !seen.insert(r.clone()) {
                    return Err(StoreError::Conflict(format!(
                        "{field}: the same tool use is answered twice in one request"
                    )));
                }
                check_reference(tx, &sid, field, r)?;
            }
            let now = ts::now();
            let events = insert_events(tx, &sid, append.events, now)?;
            let mut changed = false;
            if let Some(status) = append.status {
                if status != session.status {
                    session.status = status;
                    changed = true;
                }
            }
            if let Some(usage) = append.usage {
                session.usage = usage;
                changed = true;
            }
            if let Some(turns) = append.turns {
                session.stats.turns = turns;
                changed = true;
            }
            if changed {
                session.updated_at = now;
                write_session(tx, &session)?;
            }
            if let Some(idem) = &append.idempotency {
                let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
                tx.execute(
                    "INSERT INTO idempotency_keys (session_id, key, request_hash, event_ids, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![sid, idem.key, idem.request_hash, to_json(&ids)?, ts::format(now)],
                )?;
            }
            Ok(Appended {
                events,
                replayed: false,
            })
        })
        .await
    }

    async fn list_events(
        &self,
        session_id: &str,
        filter: EventFilter,
        page: PageReq,
    ) -> Result<Page<Event>> {
        let sid = session_id.to_string();
        self.read(move |c| {
            load_session(c, &sid)?;
            let mut p = vec![Sql::Text(sid)];
            let mut conds = vec!["session_id = ?1".to_string()];
            push_in("type", filter.types, &mut conds, &mut p);
            ts_conds(
                "processed_at",
                [
                    (">", filter.processed_gt),
                    (">=", filter.processed_gte),
                    ("<", filter.processed_lt),
                    ("<=", filter.processed_lte),
                ],
                &mut conds,
                &mut p,
            );
            list_page_within(
                c,
                &format!("SELECT {EVENT_COLS} FROM events"),
                "seq",
                conds,
                p,
                &page,
                event_from_row,
                Some((EVENT_BYTES_BUDGET, &event_bytes)),
            )
        })
        .await
    }

    async fn events_after(&self, session_id: &str, after: i64, limit: usize) -> Result<Vec<Event>> {
        let sid = session_id.to_string();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {EVENT_COLS} FROM events WHERE session_id = ?1 AND seq > ?2 ORDER BY seq ASC LIMIT ?3"
            ))?;
            let mut rows = stmt.query(params![sid, after, limit as i64])?;
            let mut out = Vec::new();
            // A byte budget as well as a count: events can be large (images).
            let mut bytes = 0usize;
            while let Some(r) = rows.next()? {
                let e = event_from_row(r)?;
                bytes += event_bytes(&e);
                out.push(e);
                if bytes >= EVENT_BYTES_BUDGET {
                    break;
                }
            }
            Ok(out)
        })
        .await
    }

    async fn event_seq(&self, session_id: &str, event_id: &str) -> Result<i64> {
        let (sid, eid) = (session_id.to_string(), event_id.to_string());
        self.read(move |c| {
            c.query_row(
                "SELECT seq FROM events WHERE session_id = ?1 AND id = ?2",
                params![sid, eid],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| not_found("event", &eid))
        })
        .await
    }

    async fn last_seq(&self, session_id: &str) -> Result<i64> {
        let sid = session_id.to_string();
        self.read(move |c| {
            c.query_row("SELECT last_seq FROM sessions WHERE id = ?1", [&sid], |r| {
                r.get(0)
            })
            .optional()?
            .ok_or_else(|| not_found("session", &sid))
        })
        .await
    }

    // -------------------------------------------------------------- runners

    async fn insert_runner(&self, runner: Runner) -> Result<RunnerChange> {
        self.tx(move |tx| {
            tx.execute(
                "INSERT INTO runners (id, state, backend, session_id, created_at, body, profile) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    runner.id,
                    runner.state.as_str(),
                    runner.backend,
                    runner.session_id,
                    ts::format(runner.created_at),
                    to_json(&runner)?,
                    runner.execution_profile
                ],
            )?;
            record_state_change(tx, None, runner)
        })
        .await
    }

    async fn update_runner(&self, id: &str, f: RunnerUpdateFn) -> Result<RunnerChange> {
        let id = id.to_string();
        self.tx(move |tx| {
            let cur = load_runner(tx, &id)?;
            let Some(next) = f(&cur)? else {
                return Ok(RunnerChange {
                    runner: cur,
                    event: None,
                    session_event: None,
                });
            };
            tx.execute(
                "UPDATE runners SET state = ?2, session_id = ?3, body = ?4 WHERE id = ?1",
                params![id, next.state.as_str(), next.session_id, to_json(&next)?],
            )?;
            if next.state == cur.state {
                return Ok(RunnerChange {
                    runner: next,
                    event: None,
                    session_event: None,
                });
            }
            record_state_change(tx, Some(cur.state), next)
        })
        .await
    }

    async fn list_runner_events(&self, id: &str, page: PageReq) -> Result<Page<RunnerEvent>> {
        let id = id.to_string();
        self.read(move |c| {
            load_runner(c, &id)?;
            list_page(
                c,
                "SELECT seq, id, type, at, payload, runner_id FROM runner_events",
                "seq",
                vec!["runner_id = ?1".into()],
                vec![Sql::Text(id.clone())],
                &page,
                |r| {
                    let at: String = r.get(3)?;
                    Ok(RunnerEvent {
                        seq: r.get(0)?,
                        id: r.get(1)?,
                        kind: r.get(2)?,
                        at: ts::parse(&at)
                            .ok_or_else(|| StoreError::Task(format!("bad stored time {at:?}")))?,
                        payload: from_json(&r.get::<_, String>(4)?)?,
                        runner_id: r.get(5)?,
                    })
                },
            )
        })
        .await
    }

    async fn append_runner_event(
        &self,
        id: &str,
        kind: &str,
        payload: serde_json::Map<String, serde_json::Value>,
    ) -> Result<RunnerChange> {
        let (id, kind) = (id.to_string(), kind.to_string());
        self.tx(move |tx| {
            let mut r = load_runner(tx, &id)?;
            r.updated_at = ts::now();
            append_runner_event_tx(tx, r, &kind, payload)
        })
        .await
    }

    async fn touch_runner(&self, id: &str, at: Timestamp) -> Result<()> {
        let id = id.to_string();
        self.tx(move |tx| {
            let mut r = load_runner(tx, &id)?;
            r.last_activity_at = Some(at);
            tx.execute(
                "UPDATE runners SET body = ?2 WHERE id = ?1",
                params![id, to_json(&r)?],
            )?;
            Ok(())
        })
        .await
    }

    async fn insert_token(&self, token: ApiToken, hash: String) -> Result<ApiToken> {
        self.tx(move |tx| {
            tx.execute(
                "INSERT INTO api_tokens (id, hash, created_at, revoked_at, body) VALUES (?1, ?2, ?3, NULL, ?4)",
                params![token.id, hash, ts::format(token.created_at), to_json(&token)?],
            )?;
            Ok(token)
        })
        .await
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<ApiToken>> {
        let hash = hash.to_string();
        self.read(move |c| {
            let body: Option<String> = c
                .query_row(
                    "SELECT body FROM api_tokens WHERE hash = ?1",
                    [&hash],
                    |r| r.get(0),
                )
                .optional()?;
            body.map(|b| from_json(&b)).transpose()
        })
        .await
    }

    async fn get_token(&self, id: &str) -> Result<ApiToken> {
        let id = id.to_string();
        self.read(move |c| load_body(c, "api_tokens", "token", &id))
            .await
    }

    async fn list_tokens(&self, page: PageReq) -> Result<Page<ApiToken>> {
        self.read(move |c| {
            list_page(
                c,
                "SELECT k, body FROM api_tokens",
                "k",
                vec![],
                vec![],
                &page,
                |r| from_json(&r.get::<_, String>(1)?),
            )
        })
        .await
    }

    async fn revoke_token(&self, id: &str, now: Timestamp) -> Result<ApiToken> {
        let id = id.to_string();
        self.tx(move |tx| {
            let mut t: ApiToken = load_body(tx, "api_tokens", "token", &id)?;
            if t.revoked_at.is_none() {
                t.revoked_at = Some(now);
                tx.execute(
                    "UPDATE api_tokens SET revoked_at = ?2, body = ?3 WHERE id = ?1",
                    params![id, ts::format(now), to_json(&t)?],
                )?;
            }
            Ok(t)
        })
        .await
    }

    async fn append_audit(&self, entry: AuditEntry) -> Result<()> {
        self.tx(move |tx| {
            tx.execute(
                "INSERT INTO audit_log (id, at, action, target, body) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    entry.id,
                    ts::format(entry.at),
                    entry.action,
                    entry.target,
                    to_json(&entry)?
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn list_audit(&self, filter: AuditFilter, limit: usize) -> Result<Vec<AuditEntry>> {
        self.read(move |c| {
            let mut conds = vec![];
            let mut p: Vec<Sql> = vec![];
            if let Some(t) = filter.since {
                p.push(Sql::Text(ts::format(t)));
                conds.push(format!("at >= ?{}", p.len()));
            }
            if let Some(t) = filter.until {
                p.push(Sql::Text(ts::format(t)));
                conds.push(format!("at <= ?{}", p.len()));
            }
            for (col, v) in [("action", filter.action), ("target", filter.target)] {
                if let Some(v) = v {
                    // `*` is the wildcard; LIKE's own metacharacters are escaped.
                    let pat = v
                        .replace('\\', "\\\\")
                        .replace('%', "\\%")
                        .replace('_', "\\_")
                        .replace('*', "%");
                    p.push(Sql::Text(pat));
                    conds.push(format!("{col} LIKE ?{} ESCAPE '\\'", p.len()));
                }
            }
            let where_ = if conds.is_empty() {
                String::new()
            } else {
                format!(" WHERE {}", conds.join(" AND "))
            };
            let sql = format!("SELECT body FROM audit_log{where_} ORDER BY k DESC LIMIT {limit}");
            let mut stmt = c.prepare(&sql)?;
            let mut rows = stmt.query(params_from_iter(p))?;
            let mut out = vec![];
            while let Some(r) = rows.next()? {
                out.push(from_json(&r.get::<_, String>(0)?)?);
            }
            Ok(out)
        })
        .await
    }

    async fn prune_idempotency_keys(&self, before: Timestamp) -> Result<u64> {
        self.tx(move |tx| {
            Ok(tx.execute(
                "DELETE FROM idempotency_keys WHERE created_at < ?1",
                [ts::format(before)],
            )? as u64)
        })
        .await
    }

    async fn prune_audit(&self, before: Timestamp) -> Result<u64> {
        self.tx(move |tx| {
            Ok(tx.execute("DELETE FROM audit_log WHERE at < ?1", [ts::format(before)])? as u64)
        })
        .await
    }

    async fn create_vault(&self, vault: serde_json::Value) -> Result<serde_json::Value> {
        self.tx(move |tx| {
            tx.execute(
                "INSERT INTO vaults (id, created_at, archived_at, body) VALUES (?1, ?2, NULL, ?3)",
                params![
                    vault["id"].as_str(),
                    vault["created_at"].as_str(),
                    vault.to_string()
                ],
            )?;
            Ok(vault)
        })
        .await
    }

    async fn get_vault(&self, id: &str) -> Result<serde_json::Value> {
        let id = id.to_string();
        self.read(move |c| load_body(c, "vaults", "vault", &id))
            .await
    }

    async fn put_vault(&self, vault: serde_json::Value) -> Result<serde_json::Value> {
        self.tx(move |tx| {
            let id = vault["id"].as_str().unwrap_or_default().to_string();
            let n = tx.execute(
                "UPDATE vaults SET archived_at = ?2, body = ?3 WHERE id = ?1",
                params![id, vault["archived_at"].as_str(), vault.to_string()],
            )?;
            if n == 0 {
                return Err(not_found("vault", &id));
            }
            Ok(vault)
        })
        .await
    }

    async fn list_vaults(
        &self,
        include_archived: bool,
        page: PageReq,
    ) -> Result<Page<serde_json::Value>> {
        self.read(move |c| {
            let conds = if include_archived {
                vec![]
            } else {
                vec!["archived_at IS NULL".to_string()]
            };
            list_page(
                c,
                "SELECT k, body FROM vaults",
                "k",
                conds,
                vec![],
                &page,
                |r| from_json(&r.get::<_, String>(1)?),
            )
        })
        .await
    }

    async fn delete_vault(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.tx(move |tx| {
            if tx.execute("DELETE FROM vaults WHERE id = ?1", [&id])? == 0 {
                return Err(not_found("vault", &id));
            }
            Ok(())
        })
        .await
    }

    async fn create_credential(
        &self,
        cred: serde_json::Value,
        sealed: String,
    ) -> Result<serde_json::Value> {
        self.tx(move |tx| {
            let vid = cred["vault_id"].as_str().unwrap_or_default().to_string();
            let exists: Option<i64> = tx
                .query_row("SELECT 1 FROM vaults WHERE id = ?1", [&vid], |r| r.get(0))
                .optional()?;
            if exists.is_none() {
                return Err(not_found("vault", &vid));
            }
            tx.execute(
                "INSERT INTO credentials (id, vault_id, created_at, archived_at, body, secret) VALUES (?1, ?2, ?3, NULL, ?4, ?5)",
                params![cred["id"].as_str(), vid, cred["created_at"].as_str(), cred.to_string(), sealed],
            )?;
            Ok(cred)
        })
        .await
    }

    async fn get_credential(
        &self,
        vault_id: &str,
        id: &str,
    ) -> Result<(serde_json::Value, String)> {
        let (vid, id) = (vault_id.to_string(), id.to_string());
        self.read(move |c| {
            let row: Option<(String, String)> = c
                .query_row(
                    "SELECT body, secret FROM credentials WHERE id = ?1 AND vault_id = ?2",
                    params![id, vid],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let (body, secret) = row.ok_or_else(|| not_found("credential", &id))?;
            Ok((from_json(&body)?, secret))
        })
        .await
    }

    async fn put_credential(
        &self,
        cred: serde_json::Value,
        sealed: Option<String>,
    ) -> Result<serde_json::Value> {
        self.tx(move |tx| {
            let id = cred["id"].as_str().unwrap_or_default().to_string();
            let n = match &sealed {
                Some(s) => tx.execute(
                    "UPDATE credentials SET archived_at = ?2, body = ?3, secret = ?4 WHERE id = ?1",
                    params![id, cred["archived_at"].as_str(), cred.to_string(), s],
                )?,
                None => tx.execute(
                    "UPDATE credentials SET archived_at = ?2, body = ?3 WHERE id = ?1",
                    params![id, cred["archived_at"].as_str(), cred.to_string()],
                )?,
            };
            if n == 0 {
                return Err(not_found("credential", &id));
            }
            Ok(cred)
        })
        .await
    }

    async fn list_credentials(
        &self,
        vault_id: &str,
        include_archived: bool,
        page: PageReq,
    ) -> Result<Page<serde_json::Value>> {
        let vid = vault_id.to_string();
        self.read(move |c| {
            let exists: Option<i64> = c
                .query_row("SELECT 1 FROM vaults WHERE id = ?1", [&vid], |r| r.get(0))
                .optional()?;
            if exists.is_none() {
                return Err(not_found("vault", &vid));
            }
            let mut conds = vec!["vault_id = ?1".to_string()];
            if !include_archived {
                conds.push("archived_at IS NULL".to_string());
            }
            list_page(
                c,
                "SELECT k, body FROM credentials",
                "k",
                conds,
                vec![Sql::Text(vid.clone())],
                &page,
                |r| from_json(&r.get::<_, String>(1)?),
            )
        })
        .await
    }

    async fn delete_credential(&self, vault_id: &str, id: &str) -> Result<()> {
        let (vid, id) = (vault_id.to_string(), id.to_string());
        self.tx(move |tx| {
            if tx.execute(
                "DELETE FROM credentials WHERE id = ?1 AND vault_id = ?2",
                params![id, vid],
            )? == 0
            {
                return Err(not_found("credential", &id));
            }
            Ok(())
        })
        .await
    }

    async fn all_sealed(&self) -> Result<Vec<(String, String)>> {
        self.read(move |c| {
            let mut stmt = c.prepare("SELECT id, secret FROM credentials")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn set_sealed(&self, id: &str, sealed: String) -> Result<()> {
        let id = id.to_string();
        self.tx(move |tx| {
            tx.execute(
                "UPDATE credentials SET secret = ?2 WHERE id = ?1",
                params![id, sealed],
            )?;
            Ok(())
        })
        .await
    }

    async fn insert_snapshot(&self, snap: Snapshot) -> Result<Snapshot> {
        self.tx(move |tx| {
            tx.execute(
                "INSERT INTO snapshots (id, runner_id, created_at, body) VALUES (?1, ?2, ?3, ?4)",
                params![
                    snap.id,
                    snap.runner_id,
                    ts::format(snap.created_at),
                    to_json(&snap)?
                ],
            )?;
            Ok(snap)
        })
        .await
    }

    async fn get_snapshot(&self, id: &str) -> Result<Snapshot> {
        let id = id.to_string();
        self.read(move |c| load_body(c, "snapshots", "snapshot", &id))
            .await
    }

    async fn list_snapshots(
        &self,
        runner_id: Option<String>,
        page: PageReq,
    ) -> Result<Page<Snapshot>> {
        self.read(move |c| {
            let (conds, p) = match runner_id {
                Some(r) => (vec!["runner_id = ?1".to_string()], vec![Sql::Text(r)]),
                None => (vec![], vec![]),
            };
            list_page(
                c,
                "SELECT k, body FROM snapshots",
                "k",
                conds,
                p,
                &page,
                |r| from_json(&r.get::<_, String>(1)?),
            )
        })
        .await
    }

    async fn delete_snapshot(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.tx(move |tx| {
            let n = tx.execute("DELETE FROM snapshots WHERE id = ?1", [&id])?;
            if n == 0 {
                return Err(not_found("snapshot", &id));
            }
            Ok(())
        })
        .await
    }

    async fn count_active_runners(&self, profile: &str) -> Result<u64> {
        let profile = profile.to_string();
        self.read(move |c| {
            Ok(c.query_row(
                "SELECT count(*) FROM runners WHERE profile = ?1 AND state IN ('creating', 'provisioning', 'running', 'stopping')",
                [&profile],
                |r| r.get::<_, i64>(0),
            )? as u64)
        })
        .await
    }

    async fn get_runner(&self, id: &str) -> Result<Runner> {
        let id = id.to_string();
        self.read(move |c| load_runner(c, &id)).await
    }

    async fn list_runners(&self, filter: RunnerFilter, page: PageReq) -> Result<Page<Runner>> {
        self.read(move |c| {
            let mut conds = vec![];
            let mut p: Vec<Sql> = vec![];
            push_in(
                "state",
                filter.states.iter().map(|s| s.as_str().to_string()),
                &mut conds,
                &mut p,
            );
            if let Some(s) = filter.session_id {
                p.push(Sql::Text(s));
                conds.push(format!("session_id = ?{}", p.len()));
            }
            if let Some(b) = filter.backend {
                p.push(Sql::Text(b));
                conds.push(format!("backend = ?{}", p.len()));
            }
            list_page(
                c,
                "SELECT k, body FROM runners",
                "k",
                conds,
                p,
                &page,
                |r| from_json(&r.get::<_, String>(1)?),
            )
        })
        .await
    }
}

fn load_runner(c: &Connection, id: &str) -> Result<Runner> {
    load_body(c, "runners", "runner", id)
}

/// Appends `runner.state_changed` to the runner's log and, when the runner serves a
/// session that still exists, to that session's log.
fn record_state_change(
    tx: &Transaction<'_>,
    from: Option<paddock_core::lifecycle::RunnerState>,
    runner: Runner,
) -> Result<RunnerChange> {
    let mut payload = serde_json::Map::new();
    payload.insert("runner_id".into(), runner.id.clone().into());
    payload.insert("from".into(), from.map(|s| s.as_str()).into());
    payload.insert("to".into(), runner.state.as_str().into());
    payload.insert(
        "reason".into(),
        runner
            .reason
            .clone()
            .or_else(|| runner.error.clone())
            .into(),
    );
    append_runner_event_tx(tx, runner, "runner.state_changed", payload)
}

/// Appends one event to a runner's log and, when the runner serves a session that
/// still exists, to that session's log.
fn append_runner_event_tx(
    tx: &Transaction<'_>,
    runner: Runner,
    kind: &str,
    mut payload: serde_json::Map<String, serde_json::Value>,
) -> Result<RunnerChange> {
    payload
        .entry("runner_id")
        .or_insert_with(|| runner.id.clone().into());
    let now = runner.updated_at;
    let seq: i64 = tx.query_row(
        "SELECT coalesce(max(seq), 0) + 1 FROM runner_events WHERE runner_id = ?1",
        [&runner.id],
        |r| r.get(0),
    )?;
    let ev = RunnerEvent {
        seq,
        id: id::new(id::EVENT),
        runner_id: runner.id.clone(),
        kind: kind.to_string(),
        at: now,
        payload: payload.clone(),
    };
    tx.execute(
        "INSERT INTO runner_events (runner_id, seq, id, type, at, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![ev.runner_id, ev.seq, ev.id, ev.kind, ts::format(now), to_json(&ev.payload)?],
    )?;
    let mut session_event = None;
    if let Some(sid) = &runner.session_id {
        let exists: Option<i64> = tx
            .query_row("SELECT 1 FROM sessions WHERE id = ?1", [sid], |r| r.get(0))
            .optional()?;
        if exists.is_some() {
            session_event = insert_events(
                tx,
                sid,
                vec![NewEvent::new(kind, serde_json::Value::Object(payload))],
                now,
            )?
            .into_iter()
            .next();
        }
    }
    Ok(RunnerChange {
        runner,
        event: Some(ev),
        session_event,
    })
}

fn load_environment(c: &Connection, id: &str) -> Result<Environment> {
    load_body(c, "environments", "environment", id)
}

fn write_environment(c: &Connection, e: &Environment) -> Result<()> {
    c.execute(
        "UPDATE environments SET archived_at = ?2, body = ?3 WHERE id = ?1",
        params![e.id, tsopt(e.archived_at), to_json(e)?],
    )?;
    Ok(())
}
