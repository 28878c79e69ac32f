//! Integration tests of `SqliteStore` against a real SQLite file in a temporary directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use paddock_core::agent::{Agent, AgentCreate, AgentUpdate};
use paddock_core::common::{parse_json, Metadata};
use paddock_core::environment::{Environment, EnvironmentCreate, EnvironmentUpdate};
use paddock_core::event::{Event, NewEvent, Reference};
use paddock_core::lifecycle::RunnerState;
use paddock_core::runner::{Isolation, Runner};
use paddock_core::session::{Session, SessionStats, SessionStatus, SessionUpdate, Usage};
use paddock_core::{id, ts, CoreError};
use paddock_store::{
    Append, Cursor, EnvironmentFilter, EventFilter, Idempotency, Order, Page, PageReq,
    RunnerFilter, SessionFilter, SessionUpdateFn, SqliteStore, Store, StoreError, UpdateFn,
};
use serde_json::json;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use tempfile::TempDir;

// ------------------------------------------------------------------ helpers

fn db_path(dir: &TempDir) -> PathBuf {
    // A nested path: `open` must create the missing directories.
    dir.path().join("state").join("paddock.db")
}

fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(path).expect("the store opens")
}

fn fresh() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&db_path(&dir));
    (dir, store)
}

fn new_agent(name: &str) -> Agent {
    let body = json!({"name": name, "model": "claude-sonnet-4-6"}).to_string();
    parse_json::<AgentCreate>(body.as_bytes())
        .expect("agent body parses")
        .into_agent(id::new(id::AGENT), ts::now())
        .expect("agent is valid")
}

fn new_env(name: &str) -> Environment {
    let body = json!({"name": name}).to_string();
    parse_json::<EnvironmentCreate>(body.as_bytes())
        .expect("environment body parses")
        .into_environment(id::new(id::ENVIRONMENT), ts::now())
        .expect("environment is valid")
}

fn new_session(agent: &Agent, env: &Environment, status: SessionStatus) -> Session {
    let now = ts::now();
    Session {
        id: id::new(id::SESSION),
        kind: "session".into(),
        status,
        agent: agent.clone(),
        environment_id: env.id.clone(),
        title: None,
        metadata: Metadata::new(),
        resources: vec![],
        vault_ids: vec![],
        outcome_evaluations: vec![],
        stats: SessionStats::default(),
        usage: Usage::default(),
        budget: None,
        deployment_id: None,
        runner_id: None,
        execution_profile: None,
        created_at: now,
        updated_at: now,
        archived_at: None,
    }
}

fn agent_update(body: &str) -> UpdateFn<Agent> {
    let u: AgentUpdate = parse_json(body.as_bytes()).expect("agent update parses");
    Box::new(move |a: &Agent| a.apply_update(u, ts::now()))
}

fn env_update(body: &str) -> UpdateFn<Environment> {
    let u: EnvironmentUpdate = parse_json(body.as_bytes()).expect("environment update parses");
    Box::new(move |e: &Environment| e.apply_update(u, ts::now()))
}

fn session_update(body: &str) -> SessionUpdateFn {
    let u: SessionUpdate = parse_json(body.as_bytes()).expect("session update parses");
    Box::new(move |s: &Session| s.apply_update(u, ts::now()))
}

fn message(text: &str) -> NewEvent {
    NewEvent::new(
        "user.message",
        json!({"content": [{"type": "text", "text": text}]}),
    )
}

fn events(list: Vec<NewEvent>) -> Append {
    Append {
        events: list,
        ..Append::default()
    }
}

fn idempotent(list: Vec<NewEvent>, key: &str, hash: &str) -> Append {
    Append {
        events: list,
        idempotency: Some(Idempotency {
            key: key.into(),
            request_hash: hash.into(),
        }),
        ..Append::default()
    }
}

fn confirmation(tool_use_id: &str) -> Append {
    Append {
        events: vec![NewEvent::new(
            "user.tool_confirmation",
            json!({"tool_use_id": tool_use_id, "result": "allow"}),
        )],
        references: vec![(
            "events[0].tool_use_id".into(),
            Reference::PendingToolUse(tool_use_id.into()),
        )],
        ..Append::default()
    }
}

fn page(limit: usize, order: Order, cursor: Option<Cursor>) -> PageReq {
    PageReq {
        limit,
        order,
        cursor,
    }
}

fn seqs(evs: &[Event]) -> Vec<i64> {
    evs.iter().map(|e| e.seq).collect()
}

fn env_ids(p: &Page<Environment>) -> Vec<String> {
    p.data.iter().map(|e| e.id.clone()).collect()
}

/// The narrow code of a validation error, if `e` is one.
fn invalid_code(e: &StoreError) -> Option<&'static str> {
    match e {
        StoreError::Invalid(CoreError::Invalid { code, .. }) => *code,
        _ => None,
    }
}

fn raw(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).expect("raw connection opens")
}

fn schema_sql(path: &Path) -> Vec<String> {
    let c = raw(path);
    let mut stmt = c
        .prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name")
        .expect("prepare");
    let rows = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .expect("query")
        .collect::<Result<Vec<_>, _>>()
        .expect("rows");
    rows
}

// ------------------------------------------------------------------ schema

#[tokio::test]
async fn a_fresh_database_is_migrated_and_reopening_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let store = open(&path);
    assert_eq!(store.path(), path.as_path());
    let version = store.schema_version().expect("version");
    assert!(version >= 1, "a fresh database is migrated, got {version}");
    let env = store
        .create_environment(new_env("kept"))
        .await
        .expect("create");
    drop(store);

    // The schema really is there, in WAL mode, with the version recorded in the file.
    let c = raw(&path);
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("journal_mode");
    assert_eq!(mode.to_lowercase(), "wal");
    let user_version: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("user_version");
    assert_eq!(user_version, version);
    drop(c);
    let before = schema_sql(&path);
    for table in [
        "agents",
        "agent_versions",
        "environments",
        "sessions",
        "events",
        "idempotency_keys",
        "runners",
    ] {
        assert!(
            before
                .iter()
                .any(|s| s.starts_with(&format!("CREATE TABLE {table} "))),
            "table {table} is missing from {before:#?}"
        );
    }

    // Reopening applies nothing and keeps the data.
    let store = open(&path);
    assert_eq!(store.schema_version().expect("version"), version);
    assert_eq!(store.get_environment(&env.id).await.expect("get"), env);
    drop(store);
    assert_eq!(schema_sql(&path), before, "reopening changed the schema");

    // A database from a newer Paddock is refused, naming both versions; `supported` is
    // the number of embedded migrations, which is what a fresh database was brought to.
    raw(&path)
        .pragma_update(None, "user_version", version + 1)
        .expect("set user_version");
    match SqliteStore::open(&path) {
        Err(StoreError::SchemaTooNew { found, supported }) => {
            assert_eq!(found, version + 1);
            assert_eq!(supported, version);
        }
        Err(e) => panic!("expected SchemaTooNew, got {e:?}"),
        Ok(_) => panic!("a too-new schema was opened"),
    }
}

// ------------------------------------------------------------------ agents

#[tokio::test]
async fn agents_are_versioned_and_guarded() {
    let (_dir, store) = fresh();
    let a = store.create_agent(new_agent("a")).await.expect("create");
    assert_eq!(a.version, 1);
    assert_eq!(store.get_agent(&a.id, None).await.expect("get"), a);
    assert_eq!(store.get_agent(&a.id, Some(1)).await.expect("get v1"), a);

    // An update makes version 2; version 1 stays as it was.
    let v2 = store
        .update_agent(&a.id, Some(1), agent_update(r#"{"system":"be brief"}"#))
        .await
        .expect("update");
    assert_eq!(v2.version, 2);
    assert_eq!(v2.system.as_deref(), Some("be brief"));
    assert_eq!(store.get_agent(&a.id, None).await.expect("latest"), v2);
    let v1 = store.get_agent(&a.id, Some(1)).await.expect("v1");
    assert_eq!(v1, a);
    assert_eq!(v1.system, None);

    // A stale expected version is refused and changes nothing.
    let e = store
        .update_agent(&a.id, Some(1), agent_update(r#"{"system":"lost"}"#))
        .await
        .unwrap_err();
    match e {
        StoreError::VersionConflict {
            kind,
            id,
            expected,
            current,
        } => {
            assert_eq!(
                (kind, id.as_str(), expected, current),
                ("agent", a.id.as_str(), 1, 2)
            );
        }
        other => panic!("expected VersionConflict, got {other:?}"),
    }
    assert_eq!(store.get_agent(&a.id, None).await.expect("latest"), v2);

    // A no-op update keeps the version and stores nothing new.
    let same = store
        .update_agent(&a.id, Some(2), agent_update(r#"{"name":"a"}"#))
        .await
        .expect("no-op update");
    assert_eq!(same, v2);
    let versions = store
        .list_agent_versions(&a.id, PageReq::default())
        .await
        .expect("versions");
    assert_eq!(versions.data.len(), 2);

    // A refused closure surfaces as Invalid and stores nothing.
    let e = store
        .update_agent(&a.id, None, agent_update(r#"{"name":null}"#))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Invalid(_)), "{e:?}");

    // Without an expected version, updates apply to the latest.
    let v3 = store
        .update_agent(&a.id, None, agent_update(r#"{"description":"three"}"#))
        .await
        .expect("v3");
    let v4 = store
        .update_agent(&a.id, Some(3), agent_update(r#"{"description":"four"}"#))
        .await
        .expect("v4");
    assert_eq!((v3.version, v4.version), (3, 4));
    assert_eq!(
        store
            .get_agent(&a.id, Some(3))
            .await
            .expect("v3")
            .description
            .as_deref(),
        Some("three")
    );

    // Versions page in both orders.
    let p1 = store
        .list_agent_versions(&a.id, page(2, Order::Asc, None))
        .await
        .expect("page 1");
    assert_eq!(
        p1.data.iter().map(|a| a.version).collect::<Vec<_>>(),
        [1, 2]
    );
    assert!(p1.prev.is_none());
    let p2 = store
        .list_agent_versions(&a.id, page(2, Order::Asc, p1.next))
        .await
        .expect("page 2");
    assert_eq!(
        p2.data.iter().map(|a| a.version).collect::<Vec<_>>(),
        [3, 4]
    );
    assert!(p2.next.is_none());
    let d1 = store
        .list_agent_versions(&a.id, page(3, Order::Desc, None))
        .await
        .expect("desc page 1");
    assert_eq!(
        d1.data.iter().map(|a| a.version).collect::<Vec<_>>(),
        [4, 3, 2]
    );
    let d2 = store
        .list_agent_versions(&a.id, page(3, Order::Desc, d1.next))
        .await
        .expect("desc page 2");
    assert_eq!(d2.data.iter().map(|a| a.version).collect::<Vec<_>>(), [1]);
    assert!(d2.next.is_none());

    // Missing agents and versions.
    assert!(matches!(
        store.get_agent(&a.id, Some(99)).await.unwrap_err(),
        StoreError::NotFound { .. }
    ));
    assert!(matches!(
        store.get_agent("agent_nope", None).await.unwrap_err(),
        StoreError::NotFound { .. }
    ));
    assert!(matches!(
        store
            .update_agent("agent_nope", None, agent_update(r#"{"name":"x"}"#))
            .await
            .unwrap_err(),
        StoreError::NotFound { .. }
    ));

    // Archived agents cannot change; every version reads as archived.
    let archived = store
        .archive_agent(&a.id, ts::now())
        .await
        .expect("archive");
    let at = archived.archived_at.expect("archived_at is set");
    assert_eq!(archived.version, 4);
    let again = store.archive_agent(&a.id, ts::now()).await.expect("again");
    assert_eq!(
        again.archived_at,
        Some(at),
        "archiving twice keeps the first time"
    );
    assert_eq!(
        store
            .get_agent(&a.id, Some(1))
            .await
            .expect("v1")
            .archived_at,
        Some(at)
    );
    let e = store
        .update_agent(&a.id, None, agent_update(r#"{"system":"after"}"#))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Conflict(_)), "{e:?}");
    assert_eq!(
        store.get_agent(&a.id, None).await.expect("latest").version,
        4
    );

    // Listing hides archived agents unless asked.
    let b = store.create_agent(new_agent("b")).await.expect("create b");
    let live = store
        .list_agents(Default::default(), PageReq::default())
        .await
        .expect("list");
    assert_eq!(
        live.data.iter().map(|x| x.id.as_str()).collect::<Vec<_>>(),
        [b.id.as_str()]
    );
    let all = store
        .list_agents(
            paddock_store::AgentFilter {
                include_archived: true,
                ..Default::default()
            },
            PageReq::default(),
        )
        .await
        .expect("list all");
    assert_eq!(all.data.len(), 2);
    assert_eq!(all.data[0].id, a.id);
    assert_eq!(all.data[0].version, 4, "lists show the latest version");
    assert_eq!(all.data[0].archived_at, Some(at));
}

#[tokio::test]
async fn deleting_an_agent_is_refused_while_a_live_session_uses_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let store = open(&path);
    let env = store.create_environment(new_env("e")).await.expect("env");

    // Archived session: no longer live.
    let a = store.create_agent(new_agent("a")).await.expect("agent");
    store
        .update_agent(&a.id, None, agent_update(r#"{"system":"v2"}"#))
        .await
        .expect("v2");
    let (s, _) = store
        .create_session(new_session(&a, &env, SessionStatus::Idle), vec![])
        .await
        .expect("session");
    let e = store.delete_agent(&a.id).await.unwrap_err();
    assert!(matches!(e, StoreError::Conflict(_)), "{e:?}");
    assert!(store.get_agent(&a.id, None).await.is_ok());
    store
        .archive_session(&s.id, ts::now())
        .await
        .expect("archive");
    store.delete_agent(&a.id).await.expect("delete");
    assert!(matches!(
        store.get_agent(&a.id, None).await.unwrap_err(),
        StoreError::NotFound { .. }
    ));
    // Its versions go with it (foreign keys are enforced).
    let left: i64 = raw(&path)
        .query_row(
            "SELECT count(*) FROM agent_versions WHERE agent_id = ?1",
            [&a.id],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(left, 0);
    assert!(matches!(
        store.delete_agent(&a.id).await.unwrap_err(),
        StoreError::NotFound { .. }
    ));

    // Terminated session: no longer live either.
    let b = store.create_agent(new_agent("b")).await.expect("agent b");
    let (s, _) = store
        .create_session(new_session(&b, &env, SessionStatus::Idle), vec![])
        .await
        .expect("session b");
    assert!(matches!(
        store.delete_agent(&b.id).await.unwrap_err(),
        StoreError::Conflict(_)
    ));
    store
        .append_events(
            &s.id,
            Append {
                status: Some(SessionStatus::Terminated),
                ..Append::default()
            },
        )
        .await
        .expect("terminate");
    assert_eq!(
        store.get_session(&s.id).await.expect("get").status,
        SessionStatus::Terminated
    );
    store.delete_agent(&b.id).await.expect("delete b");
}

// ------------------------------------------------------------------ environments

#[tokio::test]
async fn environments_update_archive_and_guard_deletion() {
    let (_dir, store) = fresh();
    let env = store
        .create_environment(new_env("e"))
        .await
        .expect("create");
    assert_eq!(store.get_environment(&env.id).await.expect("get"), env);

    let updated = store
        .update_environment(&env.id, env_update(r#"{"description":"d","runbook":"r"}"#))
        .await
        .expect("update");
    assert_eq!(updated.description.as_deref(), Some("d"));
    assert_eq!(updated.runbook.as_deref(), Some("r"));
    assert_eq!(store.get_environment(&env.id).await.expect("get"), updated);
    let same = store
        .update_environment(&env.id, env_update(r#"{"name":"e"}"#))
        .await
        .expect("no-op");
    assert_eq!(same, updated);

    // A live session pins the environment.
    let agent = store.create_agent(new_agent("a")).await.expect("agent");
    let (s, _) = store
        .create_session(new_session(&agent, &env, SessionStatus::Idle), vec![])
        .await
        .expect("session");
    let e = store.delete_environment(&env.id).await.unwrap_err();
    assert!(matches!(e, StoreError::Conflict(_)), "{e:?}");

    // Archiving.
    let archived = store
        .archive_environment(&env.id, ts::now())
        .await
        .expect("archive");
    let at = archived.archived_at.expect("archived_at");
    assert_eq!(
        store
            .get_environment(&env.id)
            .await
            .expect("get")
            .archived_at,
        Some(at)
    );
    let again = store
        .archive_environment(&env.id, ts::now())
        .await
        .expect("again");
    assert_eq!(again.archived_at, Some(at));
    let e = store
        .update_environment(&env.id, env_update(r#"{"description":"late"}"#))
        .await
        .unwrap_err();
    assert_eq!(invalid_code(&e), Some("environment_archived"), "{e:?}");
    let live = store
        .list_environments(EnvironmentFilter::default(), PageReq::default())
        .await
        .expect("list");
    assert!(live.data.is_empty());
    let all = store
        .list_environments(
            EnvironmentFilter {
                include_archived: true,
            },
            PageReq::default(),
        )
        .await
        .expect("list all");
    assert_eq!(env_ids(&all), [env.id.as_str()]);

    // Still pinned by the (unarchived) session, until it is archived.
    assert!(matches!(
        store.delete_environment(&env.id).await.unwrap_err(),
        StoreError::Conflict(_)
    ));
    store
        .archive_session(&s.id, ts::now())
        .await
        .expect("archive session");
    store.delete_environment(&env.id).await.expect("delete");
    assert!(matches!(
        store.get_environment(&env.id).await.unwrap_err(),
        StoreError::NotFound { .. }
    ));
}

// ------------------------------------------------------------------ sessions

#[tokio::test]
async fn sessions_store_initial_events_and_updates() {
    let (_dir, store) = fresh();
    let agent = store.create_agent(new_agent("a")).await.expect("agent");
    let env = store.create_environment(new_env("e")).await.expect("env");
    let session = new_session(&agent, &env, SessionStatus::Idle);
    let (s, initial) = store
        .create_session(
            session.clone(),
            vec![
                message("one"),
                message("two"),
                NewEvent::new("user.interrupt", json!({})),
            ],
        )
        .await
        .expect("create");
    assert_eq!(s, session);
    assert_eq!(seqs(&initial), [1, 2, 3]);
    assert_eq!(initial[0].kind, "user.message");
    assert_eq!(initial[1].payload["content"][0]["text"], "two");
    assert_eq!(initial[2].kind, "user.interrupt");
    assert!(initial.iter().all(|e| e.session_id == s.id));
    assert_eq!(store.get_session(&s.id).await.expect("get"), s);
    assert_eq!(
        store.events_after(&s.id, 0, 100).await.expect("log"),
        initial
    );
    assert_eq!(store.last_seq(&s.id).await.expect("last"), 3);
    assert_eq!(
        store.event_seq(&s.id, &initial[1].id).await.expect("seq"),
        2
    );

    // A change is stored with a session.updated event at the end of the log.
    let (t, ev) = store
        .update_session(&s.id, session_update(r#"{"title":"t"}"#))
        .await
        .expect("update");
    assert_eq!(t.title.as_deref(), Some("t"));
    let ev = ev.expect("a session.updated event");
    assert_eq!(ev.kind, "session.updated");
    assert_eq!(ev.seq, 4);
    assert_eq!(ev.payload["title"], "t");
    assert_eq!(store.get_session(&s.id).await.expect("get"), t);
    assert_eq!(store.events_after(&s.id, 3, 100).await.expect("tail"), [ev]);

    // No change: no event.
    let (same, none) = store
        .update_session(&s.id, session_update(r#"{"title":"t"}"#))
        .await
        .expect("no-op");
    assert_eq!(same, t);
    assert!(none.is_none());
    assert_eq!(store.last_seq(&s.id).await.expect("last"), 4);

    // A refused change is reported and stores nothing.
    let e = store
        .update_session(&s.id, session_update(r#"{"vault_ids":[]}"#))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Invalid(_)), "{e:?}");
    assert_eq!(store.last_seq(&s.id).await.expect("last"), 4);

    // Unknown references.
    let mut orphan = new_session(&agent, &env, SessionStatus::Idle);
    orphan.environment_id = "env_nope".into();
    assert!(matches!(
        store.create_session(orphan, vec![]).await.unwrap_err(),
        StoreError::NotFound { .. }
    ));
    let ghost = new_agent("ghost");
    assert!(matches!(
        store
            .create_session(new_session(&ghost, &env, SessionStatus::Idle), vec![])
            .await
            .unwrap_err(),
        StoreError::NotFound { .. }
    ));

    // Listing filters by agent and status.
    let other_agent = store.create_agent(new_agent("b")).await.expect("agent b");
    let (running, _) = store
        .create_session(
            new_session(&other_agent, &env, SessionStatus::Running),
            vec![],
        )
        .await
        .expect("running session");
    let by_agent = store
        .list_sessions(
            SessionFilter {
                agent_id: Some(agent.id.clone()),
                ..SessionFilter::default()
            },
            PageReq::default(),
        )
        .await
        .expect("by agent");
    assert_eq!(
        by_agent
            .data
            .iter()
            .map(|x| x.id.as_str())
            .collect::<Vec<_>>(),
        [s.id.as_str()]
    );
    let by_status = store
        .list_sessions(
            SessionFilter {
                statuses: vec![SessionStatus::Running],
                ..SessionFilter::default()
            },
            PageReq::default(),
        )
        .await
        .expect("by status");
    assert_eq!(
        by_status
            .data
            .iter()
            .map(|x| x.id.as_str())
            .collect::<Vec<_>>(),
        [running.id.as_str()]
    );

    // A running session cannot be archived; an archived one cannot be updated.
    assert!(matches!(
        store
            .archive_session(&running.id, ts::now())
            .await
            .unwrap_err(),
        StoreError::Conflict(_)
    ));
    let archived = store
        .archive_session(&s.id, ts::now())
        .await
        .expect("archive");
    assert!(archived.archived_at.is_some());
    assert!(matches!(
        store
            .update_session(&s.id, session_update(r#"{"title":"late"}"#))
            .await
            .unwrap_err(),
        StoreError::Conflict(_)
    ));
    let listed = store
        .list_sessions(SessionFilter::default(), PageReq::default())
        .await
        .expect("list");
    assert!(
        listed.data.iter().all(|x| x.id != s.id),
        "archived sessions are hidden"
    );

    // Deleting removes the session and its log.
    assert!(matches!(
        store.delete_session(&running.id).await.unwrap_err(),
        StoreError::Conflict(_)
    ));
    store.delete_session(&s.id).await.expect("delete");
    assert!(matches!(
        store.get_session(&s.id).await.unwrap_err(),
        StoreError::NotFound { .. }
    ));
    assert!(store
        .events_after(&s.id, 0, 100)
        .await
        .expect("log")
        .is_empty());
}

#[tokio::test]
async fn sessions_are_refused_for_archived_agents_and_environments() {
    let (_dir, store) = fresh();
    let agent = store.create_agent(new_agent("a")).await.expect("agent");
    let env = store.create_environment(new_env("e")).await.expect("env");

    let archived_env = store.create_environment(new_env("old")).await.expect("env");
    store
        .archive_environment(&archived_env.id, ts::now())
        .await
        .expect("archive env");
    let doomed = new_session(&agent, &archived_env, SessionStatus::Idle);
    let e = store
        .create_session(doomed.clone(), vec![message("hi")])
        .await
        .unwrap_err();
    assert_eq!(invalid_code(&e), Some("environment_archived"), "{e:?}");
    assert!(matches!(
        store.get_session(&doomed.id).await.unwrap_err(),
        StoreError::NotFound { .. }
    ));

    let archived_agent = store.create_agent(new_agent("old")).await.expect("agent");
    store
        .archive_agent(&archived_agent.id, ts::now())
        .await
        .expect("archive agent");
    let doomed = new_session(&archived_agent, &env, SessionStatus::Idle);
    let e = store
        .create_session(doomed.clone(), vec![message("hi")])
        .await
        .unwrap_err();
    assert_eq!(invalid_code(&e), Some("agent_archived"), "{e:?}");
    assert!(matches!(
        store.get_session(&doomed.id).await.unwrap_err(),
        StoreError::NotFound { .. }
    ));

    // The live pair still works.
    store
        .create_session(new_session(&agent, &env, SessionStatus::Idle), vec![])
        .await
        .expect("a live agent and environment make a session");
}

// ------------------------------------------------------------------ events

#[tokio::test]
async fn appends_are_ordered_idempotent_and_checked() {
    let (_dir, store) = fresh();
    let agent = store.create_agent(new_agent("a")).await.expect("agent");
    let env = store.create_environment(new_env("e")).await.expect("env");
    let (s, _) = store
        .create_session(new_session(&agent, &env, SessionStatus::Idle), vec![])
        .await
        .expect("session");
    let (other, _) = store
        .create_session(new_session(&agent, &env, SessionStatus::Idle), vec![])
        .await
        .expect("other session");
    assert_eq!(store.last_seq(&s.id).await.expect("last"), 0);

    // Consecutive sequence numbers, per session.
    let first = store
        .append_events(&s.id, events(vec![message("1"), message("2")]))
        .await
        .expect("append");
    assert!(!first.replayed);
    assert_eq!(seqs(&first.events), [1, 2]);
    let second = store
        .append_events(
            &s.id,
            events(vec![message("3"), message("4"), message("5")]),
        )
        .await
        .expect("append");
    assert_eq!(seqs(&second.events), [3, 4, 5]);
    let elsewhere = store
        .append_events(&other.id, events(vec![message("x")]))
        .await
        .expect("append elsewhere");
    assert_eq!(seqs(&elsewhere.events), [1]);
    assert_eq!(store.last_seq(&s.id).await.expect("last"), 5);

    // Idempotency: a replay returns the same events and appends nothing.
    let original = store
        .append_events(&s.id, idempotent(vec![message("6")], "k1", "h1"))
        .await
        .expect("keyed append");
    assert!(!original.replayed);
    assert_eq!(seqs(&original.events), [6]);
    let replay = store
        .append_events(&s.id, idempotent(vec![message("6")], "k1", "h1"))
        .await
        .expect("replay");
    assert!(replay.replayed);
    assert_eq!(replay.events, original.events);
    assert_eq!(store.last_seq(&s.id).await.expect("last"), 6);
    let e = store
        .append_events(&s.id, idempotent(vec![message("other")], "k1", "h2"))
        .await
        .unwrap_err();
    match e {
        StoreError::IdempotencyMismatch { key } => assert_eq!(key, "k1"),
        other => panic!("expected IdempotencyMismatch, got {other:?}"),
    }
    assert_eq!(store.last_seq(&s.id).await.expect("last"), 6);
    // Keys are scoped to their session.
    let fresh_key = store
        .append_events(&other.id, idempotent(vec![message("y")], "k1", "h2"))
        .await
        .expect("same key, other session");
    assert!(!fresh_key.replayed);

    // References must point at a pending tool use of this session.
    let unknown = store
        .append_events(&s.id, confirmation("evt_unknown"))
        .await
        .unwrap_err();
    assert!(matches!(unknown, StoreError::Invalid(_)), "{unknown:?}");
    let not_a_tool_use = store
        .append_events(&s.id, confirmation(&first.events[0].id))
        .await
        .unwrap_err();
    assert!(
        matches!(not_a_tool_use, StoreError::Invalid(_)),
        "{not_a_tool_use:?}"
    );
    let allowed = store
        .append_events(
            &s.id,
            events(vec![NewEvent::new(
                "agent.tool_use",
                json!({"name": "bash", "input": {}, "evaluated_permission": "allow"}),
            )]),
        )
        .await
        .expect("auto-allowed tool use");
    let e = store
        .append_events(&s.id, confirmation(&allowed.events[0].id))
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::Invalid(_)),
        "nothing awaits an answer: {e:?}"
    );
    assert_eq!(store.last_seq(&s.id).await.expect("last"), 7);

    let tool_use = store
        .append_events(
            &s.id,
            events(vec![NewEvent::new(
                "agent.tool_use",
                json!({"name": "bash", "input": {}, "evaluated_permission": "ask"}),
            )]),
        )
        .await
        .expect("tool use");
    let tool_use_id = tool_use.events[0].id.clone();
    assert_eq!(tool_use.events[0].seq, 8);
    let e = store
        .append_events(&other.id, confirmation(&tool_use_id))
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::Invalid(_)),
        "another session's tool use: {e:?}"
    );
    let mut twice = confirmation(&tool_use_id);
    twice.references.push(twice.references[0].clone());
    let e = store.append_events(&s.id, twice).await.unwrap_err();
    assert!(
        matches!(e, StoreError::Conflict(_)),
        "answered twice at once: {e:?}"
    );
    let confirmed = store
        .append_events(&s.id, confirmation(&tool_use_id))
        .await
        .expect("first confirmation");
    assert_eq!(seqs(&confirmed.events), [9]);
    assert_eq!(
        confirmed.events[0].payload["tool_use_id"],
        tool_use_id.as_str()
    );
    let e = store
        .append_events(&s.id, confirmation(&tool_use_id))
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::Conflict(_)),
        "second confirmation: {e:?}"
    );
    assert_eq!(store.last_seq(&s.id).await.expect("last"), 9);

    // A status change rides along with an append.
    store
        .append_events(
            &s.id,
            Append {
                events: vec![NewEvent::new("session.status_running", json!({}))],
                status: Some(SessionStatus::Running),
                ..Append::default()
            },
        )
        .await
        .expect("to running");
    assert_eq!(
        store.get_session(&s.id).await.expect("get").status,
        SessionStatus::Running
    );

    // Reading back: filters, pages, lookups.
    let messages = store
        .list_events(
            &s.id,
            EventFilter {
                types: vec!["user.message".into()],
                ..EventFilter::default()
            },
            PageReq::default(),
        )
        .await
        .expect("filtered");
    assert_eq!(seqs(&messages.data), [1, 2, 3, 4, 5, 6]);
    let newest = store
        .list_events(&s.id, EventFilter::default(), page(2, Order::Desc, None))
        .await
        .expect("newest");
    assert_eq!(seqs(&newest.data), [10, 9]);
    assert!(newest.next.is_some());
    assert_eq!(store.event_seq(&s.id, &tool_use_id).await.expect("seq"), 8);
    assert!(matches!(
        store.event_seq(&other.id, &tool_use_id).await.unwrap_err(),
        StoreError::NotFound { .. }
    ));
    assert!(matches!(
        store
            .append_events("sesn_nope", events(vec![message("x")]))
            .await
            .unwrap_err(),
        StoreError::NotFound { .. }
    ));

    // Archived and terminated sessions take no events.
    store
        .append_events(
            &s.id,
            Append {
                status: Some(SessionStatus::Idle),
                ..Append::default()
            },
        )
        .await
        .expect("to idle");
    store
        .archive_session(&s.id, ts::now())
        .await
        .expect("archive");
    let e = store
        .append_events(&s.id, events(vec![message("late")]))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Conflict(_)), "{e:?}");
    assert_eq!(store.last_seq(&s.id).await.expect("last"), 10);
    store
        .append_events(
            &other.id,
            Append {
                status: Some(SessionStatus::Terminated),
                ..Append::default()
            },
        )
        .await
        .expect("terminate");
    let e = store
        .append_events(&other.id, events(vec![message("late")]))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Conflict(_)), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_leave_no_gaps() {
    let (_dir, store) = fresh();
    let agent = store.create_agent(new_agent("a")).await.expect("agent");
    let env = store.create_environment(new_env("e")).await.expect("env");
    let (s, _) = store
        .create_session(new_session(&agent, &env, SessionStatus::Idle), vec![])
        .await
        .expect("session");

    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let store = store.clone();
        let sid = s.id.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..25u64 {
                let a = store
                    .append_events(
                        &sid,
                        events(vec![NewEvent::new("test.tick", json!({"task": t, "i": i}))]),
                    )
                    .await
                    .expect("append");
                assert_eq!(a.events.len(), 1);
                got.push(a.events[0].seq);
            }
            got
        }));
    }
    let mut returned = Vec::new();
    for task in tasks {
        let got = task.await.expect("task");
        assert!(
            got.windows(2).all(|w| w[0] < w[1]),
            "a task's seqs go up: {got:?}"
        );
        returned.extend(got);
    }
    returned.sort_unstable();
    assert_eq!(returned, (1..=200).collect::<Vec<i64>>());

    let log = store.events_after(&s.id, 0, 1000).await.expect("log");
    assert_eq!(seqs(&log), (1..=200).collect::<Vec<i64>>());
    let ids: HashSet<&str> = log.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), 200, "event ids are unique");
    for t in 0..8u64 {
        let is: Vec<u64> = log
            .iter()
            .filter(|e| e.payload["task"] == t)
            .map(|e| e.payload["i"].as_u64().expect("i"))
            .collect();
        assert_eq!(is, (0..25).collect::<Vec<u64>>(), "task {t} in order");
    }
    let tail = store.events_after(&s.id, 100, 1000).await.expect("tail");
    assert_eq!(seqs(&tail), (101..=200).collect::<Vec<i64>>());
    let limited = store.events_after(&s.id, 100, 10).await.expect("limited");
    assert_eq!(seqs(&limited), (101..=110).collect::<Vec<i64>>());
    assert_eq!(store.last_seq(&s.id).await.expect("last"), 200);
}

// ------------------------------------------------------------------ pagination

#[tokio::test]
async fn cursors_walk_every_page_once_in_both_orders() {
    let (_dir, store) = fresh();
    let mut created = Vec::new();
    for i in 0..7 {
        let e = store
            .create_environment(new_env(&format!("env-{i}")))
            .await
            .expect("create");
        created.push(e.id);
    }

    for (order, expected) in [
        (Order::Asc, created.clone()),
        (Order::Desc, created.iter().rev().cloned().collect()),
    ] {
        let mut seen = Vec::new();
        let mut sizes = Vec::new();
        let mut cursor = None;
        let mut pages = 0;
        loop {
            let p = store
                .list_environments(EnvironmentFilter::default(), page(3, order, cursor))
                .await
                .expect("page");
            if pages == 0 {
                assert!(p.prev.is_none(), "the first page has no prev");
            } else {
                assert!(p.prev.is_some(), "page {pages} has a prev");
            }
            sizes.push(p.data.len());
            seen.extend(env_ids(&p));
            pages += 1;
            assert!(pages <= 3, "too many pages for 7 items at 3 a page");
            match p.next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(sizes, [3, 3, 1], "{order:?}");
        assert_eq!(seen, expected, "{order:?}");

        // prev from the second page returns the first page.
        let first = store
            .list_environments(EnvironmentFilter::default(), page(3, order, None))
            .await
            .expect("first");
        let second = store
            .list_environments(EnvironmentFilter::default(), page(3, order, first.next))
            .await
            .expect("second");
        assert_eq!(env_ids(&second), expected[3..6].to_vec(), "{order:?}");
        let back = store
            .list_environments(EnvironmentFilter::default(), page(3, order, second.prev))
            .await
            .expect("back");
        assert_eq!(env_ids(&back), env_ids(&first), "{order:?}");
        assert!(
            back.prev.is_none(),
            "nothing before the first page ({order:?})"
        );
        let forward = store
            .list_environments(EnvironmentFilter::default(), page(3, order, back.next))
            .await
            .expect("forward again");
        assert_eq!(env_ids(&forward), env_ids(&second), "{order:?}");
    }

    // A page exactly as long as the list has no next.
    let whole = store
        .list_environments(EnvironmentFilter::default(), page(7, Order::Asc, None))
        .await
        .expect("whole");
    assert_eq!(env_ids(&whole), created);
    assert!(whole.next.is_none() && whole.prev.is_none());
}

// ------------------------------------------------------------------ runners

#[tokio::test]
async fn runners_are_stored_and_filtered() {
    let (_dir, store) = fresh();
    let now = ts::now();
    let runner = |state: RunnerState, backend: &str, session: Option<&str>| Runner {
        id: id::new(id::RUNNER),
        kind: "runner".into(),
        state,
        backend: backend.into(),
        isolation: Isolation::Container,
        execution_profile: None,
        environment_id: None,
        session_id: session.map(str::to_string),
        error: None,
        image: None,
        network: Default::default(),
        limits: Default::default(),
        enforced: serde_json::Value::Null,
        seccomp: Default::default(),
        env: Default::default(),
        reason: None,
        started_at: None,
        last_activity_at: None,
        idle_timeout_secs: None,
        budget: None,
        pending_restart: vec![],
        warm: false,
        created_at: now,
        updated_at: now,
    };
    let a = store
        .insert_runner(runner(RunnerState::Running, "docker", Some("sesn_a")))
        .await
        .expect("a")
        .runner;
    let b = store
        .insert_runner(runner(RunnerState::Stopped, "local", None))
        .await
        .expect("b")
        .runner;
    assert_eq!(store.get_runner(&a.id).await.expect("get"), a);
    assert!(matches!(
        store.get_runner("run_nope").await.unwrap_err(),
        StoreError::NotFound { .. }
    ));
    let ids = |p: Page<Runner>| p.data.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let running = store
        .list_runners(
            RunnerFilter {
                states: vec![RunnerState::Running],
                ..RunnerFilter::default()
            },
            PageReq::default(),
        )
        .await
        .expect("by state");
    assert_eq!(ids(running), [a.id.as_str()]);
    let local = store
        .list_runners(
            RunnerFilter {
                backend: Some("local".into()),
                ..RunnerFilter::default()
            },
            PageReq::default(),
        )
        .await
        .expect("by backend");
    assert_eq!(ids(local), [b.id.as_str()]);
    let by_session = store
        .list_runners(
            RunnerFilter {
                session_id: Some("sesn_a".into()),
                ..RunnerFilter::default()
            },
            PageReq::default(),
        )
        .await
        .expect("by session");
    assert_eq!(ids(by_session), [a.id.as_str()]);
}

// ------------------------------------------------------------------ persistence

#[tokio::test]
async fn everything_survives_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let store = open(&path);
    let agent = store.create_agent(new_agent("a")).await.expect("agent");
    let v2 = store
        .update_agent(&agent.id, Some(1), agent_update(r#"{"system":"v2"}"#))
        .await
        .expect("v2");
    let env = store.create_environment(new_env("e")).await.expect("env");
    let old_env = store.create_environment(new_env("old")).await.expect("env");
    let old_env = store
        .archive_environment(&old_env.id, ts::now())
        .await
        .expect("archive env");
    let (s, initial) = store
        .create_session(
            new_session(&v2, &env, SessionStatus::Idle),
            vec![message("hi")],
        )
        .await
        .expect("session");
    let (s, updated) = store
        .update_session(&s.id, session_update(r#"{"title":"kept"}"#))
        .await
        .expect("title");
    let keyed = store
        .append_events(&s.id, idempotent(vec![message("keyed")], "key", "hash"))
        .await
        .expect("keyed");
    let tool_use = store
        .append_events(
            &s.id,
            events(vec![NewEvent::new(
                "agent.tool_use",
                json!({"name": "bash", "input": {}, "evaluated_permission": "ask"}),
            )]),
        )
        .await
        .expect("tool use");
    let tool_use_id = tool_use.events[0].id.clone();
    store
        .append_events(&s.id, confirmation(&tool_use_id))
        .await
        .expect("confirm");
    let log = store.events_after(&s.id, 0, 100).await.expect("log");
    assert_eq!(seqs(&log), [1, 2, 3, 4, 5]);
    assert_eq!(log[0], initial[0]);
    assert_eq!(Some(&log[1]), updated.as_ref());
    drop(store);

    let store = open(&path);
    assert_eq!(store.get_agent(&agent.id, None).await.expect("agent"), v2);
    assert_eq!(
        store.get_agent(&agent.id, Some(1)).await.expect("v1"),
        agent
    );
    assert_eq!(store.get_environment(&env.id).await.expect("env"), env);
    assert_eq!(
        store.get_environment(&old_env.id).await.expect("old env"),
        old_env
    );
    let live_envs = store
        .list_environments(EnvironmentFilter::default(), PageReq::default())
        .await
        .expect("envs");
    assert_eq!(env_ids(&live_envs), [env.id.as_str()]);
    assert_eq!(store.get_session(&s.id).await.expect("session"), s);
    assert_eq!(store.events_after(&s.id, 0, 100).await.expect("log"), log);
    assert_eq!(store.last_seq(&s.id).await.expect("last"), 5);

    // The idempotency key and the answered tool use are remembered too.
    let replay = store
        .append_events(&s.id, idempotent(vec![message("keyed")], "key", "hash"))
        .await
        .expect("replay");
    assert!(replay.replayed);
    assert_eq!(replay.events, keyed.events);
    assert!(matches!(
        store
            .append_events(&s.id, idempotent(vec![message("keyed")], "key", "other"))
            .await
            .unwrap_err(),
        StoreError::IdempotencyMismatch { .. }
    ));
    assert!(matches!(
        store
            .append_events(&s.id, confirmation(&tool_use_id))
            .await
            .unwrap_err(),
        StoreError::Conflict(_)
    ));
    // The log carries on where it stopped.
    let next = store
        .append_events(&s.id, events(vec![message("after")]))
        .await
        .expect("append after reopen");
    assert_eq!(seqs(&next.events), [6]);
    // A second agent version after the reopen continues the numbering.
    let v3 = store
        .update_agent(&agent.id, Some(2), agent_update(r#"{"system":"v3"}"#))
        .await
        .expect("v3");
    assert_eq!(v3.version, 3);
}

#[test]
fn concurrent_openers_of_a_new_file_migrate_it_once() {
    for round in 0..10 {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("paddock.db");
        let openers: Vec<_> = (0..3)
            .map(|_| {
                let p = path.clone();
                std::thread::spawn(move || SqliteStore::open(&p).map(|s| s.schema_version()))
            })
            .collect();
        for o in openers {
            let v = o
                .join()
                .expect("thread")
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert!(v.expect("version") >= 1);
        }
    }
}

#[test]
fn a_negative_schema_version_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("paddock.db");
    drop(SqliteStore::open(&path).expect("opens"));
    let c = rusqlite::Connection::open(&path).expect("raw open");
    c.pragma_update(None, "user_version", -1).expect("set");
    drop(c);
    match SqliteStore::open(&path) {
        Err(StoreError::SchemaTooNew { found: -1, .. }) => {}
        Err(e) => panic!("expected a refusal for version -1, got {e:?}"),
        Ok(_) => panic!("a database with user_version -1 must not open"),
    }
}

#[tokio::test]
async fn runner_transitions_are_logged_and_illegal_ones_refused() {
    use paddock_core::runner::NetworkPolicy;
    let (_dir, store) = fresh();
    let agent = parse_json::<AgentCreate>(br#"{"name":"a","model":"m"}"#)
        .expect("parses")
        .into_agent(id::new(id::AGENT), ts::now())
        .expect("valid");
    store.create_agent(agent.clone()).await.expect("agent");
    let env = parse_json::<EnvironmentCreate>(br#"{"name":"e"}"#)
        .expect("parses")
        .into_environment(id::new(id::ENVIRONMENT), ts::now())
        .expect("valid");
    store.create_environment(env.clone()).await.expect("env");
    let now = ts::now();
    let session = Session {
        id: id::new(id::SESSION),
        kind: "session".into(),
        status: SessionStatus::Idle,
        agent,
        environment_id: env.id.clone(),
        title: None,
        metadata: Default::default(),
        resources: vec![],
        vault_ids: vec![],
        outcome_evaluations: vec![],
        stats: Default::default(),
        usage: Default::default(),
        budget: None,
        deployment_id: None,
        runner_id: None,
        execution_profile: None,
        created_at: now,
        updated_at: now,
        archived_at: None,
    };
    let (session, _) = store
        .create_session(session, vec![])
        .await
        .expect("session");
    let r = Runner {
        id: id::new(id::RUNNER),
        kind: "runner".into(),
        state: RunnerState::Creating,
        backend: "local".into(),
        isolation: Isolation::Namespaces,
        execution_profile: Some("default".into()),
        environment_id: Some(env.id.clone()),
        session_id: Some(session.id.clone()),
        error: None,
        image: None,
        network: NetworkPolicy::None,
        limits: Default::default(),
        enforced: serde_json::Value::Null,
        seccomp: Default::default(),
        env: Default::default(),
        reason: None,
        started_at: None,
        last_activity_at: None,
        idle_timeout_secs: None,
        budget: None,
        pending_restart: vec![],
        warm: false,
        created_at: now,
        updated_at: now,
    };
    let created = store.insert_runner(r.clone()).await.expect("insert");
    assert_eq!(
        created.event.as_ref().expect("event").payload["to"],
        "creating"
    );
    assert_eq!(
        store.count_active_runners("default").await.expect("count"),
        1
    );
    assert_eq!(store.count_active_runners("other").await.expect("count"), 0);

    let go = |to: RunnerState| -> paddock_store::RunnerUpdateFn {
        Box::new(move |cur: &Runner| {
            let mut n = cur.clone();
            n.transition(to, ts::now())?;
            Ok(Some(n))
        })
    };
    let c = store
        .update_runner(&r.id, go(RunnerState::Provisioning))
        .await
        .expect("provisioning");
    let ev = c.event.expect("runner event");
    assert_eq!(
        (ev.payload["from"].clone(), ev.payload["to"].clone()),
        (
            serde_json::json!("creating"),
            serde_json::json!("provisioning")
        )
    );
    let se = c.session_event.expect("mirrored into the session's log");
    assert_eq!(se.kind, "runner.state_changed");
    assert_eq!(se.session_id, session.id);

    // Creating is behind us: going back is refused and nothing is written.
    let err = store
        .update_runner(&r.id, go(RunnerState::Creating))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Invalid(paddock_core::CoreError::IllegalTransition { .. })
        ),
        "{err:?}"
    );
    for to in [
        RunnerState::Running,
        RunnerState::Stopping,
        RunnerState::Stopped,
        RunnerState::Destroying,
        RunnerState::Destroyed,
    ] {
        store.update_runner(&r.id, go(to)).await.expect("legal");
    }
    assert_eq!(
        store.count_active_runners("default").await.expect("count"),
        0
    );
    let log = store
        .list_runner_events(
            &r.id,
            PageReq {
                limit: 100,
                ..PageReq::default()
            },
        )
        .await
        .expect("log");
    let states: Vec<String> = log
        .data
        .iter()
        .map(|e| e.payload["to"].as_str().expect("to").to_string())
        .collect();
    assert_eq!(
        states,
        [
            "creating",
            "provisioning",
            "running",
            "stopping",
            "stopped",
            "destroying",
            "destroyed"
        ]
    );
    let session_log = store
        .list_events(
            &session.id,
            Default::default(),
            PageReq {
                limit: 100,
                ..PageReq::default()
            },
        )
        .await
        .expect("events");
    assert_eq!(session_log.data.len(), 7);
    assert!(session_log
        .data
        .iter()
        .all(|e| e.kind == "runner.state_changed"));
}

/// A page of events holds at most 8 MiB of payload (as a stream batch does): of three
/// events of 3 MiB no page holds more than two, in both orders, and the cursors lose
/// none.
#[tokio::test]
async fn event_pages_have_a_byte_budget() {
    let (_dir, store) = fresh();
    let agent = store.create_agent(new_agent("a")).await.expect("agent");
    let env = store.create_environment(new_env("e")).await.expect("env");
    let (s, _) = store
        .create_session(new_session(&agent, &env, SessionStatus::Idle), vec![])
        .await
        .expect("session");
    let big = "x".repeat(3 * 1024 * 1024);
    for _ in 0..3 {
        store
            .append_events(&s.id, events(vec![message(&big)]))
            .await
            .expect("append");
    }
    store
        .append_events(&s.id, events(vec![message("small")]))
        .await
        .expect("append");
    for order in [Order::Asc, Order::Desc] {
        let mut got = vec![];
        let mut sizes = vec![];
        let mut cursor = None;
        loop {
            let p = store
                .list_events(&s.id, EventFilter::default(), page(100, order, cursor))
                .await
                .expect("page");
            // Big events on this page (seq 1–3 are 3 MiB each).
            sizes.push(seqs(&p.data).iter().filter(|q| **q <= 3).count());
            got.extend(seqs(&p.data));
            match p.next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let mut want = vec![1, 2, 3, 4];
        if order == Order::Desc {
            want.reverse();
        }
        assert_eq!(got, want, "{order:?}");
        assert!(
            sizes.iter().all(|n| *n <= 2) && sizes.len() >= 2,
            "{order:?}: {sizes:?}"
        );
    }
}

/// Idempotency keys are forgotten once pruned: the same key then appends again.
#[tokio::test]
async fn pruned_idempotency_keys_are_forgotten() {
    let (_dir, store) = fresh();
    let agent = store.create_agent(new_agent("a")).await.expect("agent");
    let env = store.create_environment(new_env("e")).await.expect("env");
    let (s, _) = store
        .create_session(new_session(&agent, &env, SessionStatus::Idle), vec![])
        .await
        .expect("session");
    let first = store
        .append_events(&s.id, idempotent(vec![message("1")], "k", "h"))
        .await
        .expect("append");
    let again = store
        .append_events(&s.id, idempotent(vec![message("1")], "k", "h"))
        .await
        .expect("replay");
    assert!(again.replayed);
    // Keys younger than the cut stay.
    let hour_ago = paddock_core::ts::now() - time::Duration::hours(1);
    assert_eq!(
        store.prune_idempotency_keys(hour_ago).await.expect("prune"),
        0
    );
    let later = paddock_core::ts::now() + time::Duration::seconds(1);
    assert_eq!(store.prune_idempotency_keys(later).await.expect("prune"), 1);
    let fresh_append = store
        .append_events(&s.id, idempotent(vec![message("1")], "k", "h"))
        .await
        .expect("append");
    assert!(!fresh_append.replayed);
    assert_ne!(fresh_append.events[0].id, first.events[0].id);
}
