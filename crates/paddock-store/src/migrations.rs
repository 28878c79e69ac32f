//! Embedded migrations. The schema version is SQLite's `user_version`; migration `i`
//! brings the schema from version `i` to `i + 1`. Append only: never edit a shipped one.

pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: the foundation.
    r#"
    CREATE TABLE agents (
        k           INTEGER PRIMARY KEY,
        id          TEXT NOT NULL UNIQUE,
        version     INTEGER NOT NULL,
        created_at  TEXT NOT NULL,
        archived_at TEXT
    );
    CREATE TABLE agent_versions (
        agent_id TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
        version  INTEGER NOT NULL,
        body     TEXT NOT NULL,
        PRIMARY KEY (agent_id, version)
    );
    CREATE TABLE environments (
        k           INTEGER PRIMARY KEY,
        id          TEXT NOT NULL UNIQUE,
        created_at  TEXT NOT NULL,
        archived_at TEXT,
        body        TEXT NOT NULL
    );
    CREATE TABLE sessions (
        k              INTEGER PRIMARY KEY,
        id             TEXT NOT NULL UNIQUE,
        agent_id       TEXT NOT NULL,
        agent_version  INTEGER NOT NULL,
        environment_id TEXT NOT NULL,
        status         TEXT NOT NULL,
        created_at     TEXT NOT NULL,
        archived_at    TEXT,
        last_seq       INTEGER NOT NULL DEFAULT 0,
        body           TEXT NOT NULL
    );
    CREATE INDEX sessions_agent ON sessions(agent_id, agent_version);
    CREATE INDEX sessions_environment ON sessions(environment_id);
    CREATE TABLE events (
        session_id   TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        seq          INTEGER NOT NULL,
        id           TEXT NOT NULL UNIQUE,
        type         TEXT NOT NULL,
        processed_at TEXT NOT NULL,
        payload      TEXT NOT NULL,
        PRIMARY KEY (session_id, seq)
    );
    CREATE INDEX events_type ON events(session_id, type);
    CREATE TABLE idempotency_keys (
        session_id   TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        key          TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        event_ids    TEXT NOT NULL,
        created_at   TEXT NOT NULL,
        PRIMARY KEY (session_id, key)
    );
    CREATE TABLE runners (
        k          INTEGER PRIMARY KEY,
        id         TEXT NOT NULL UNIQUE,
        state      TEXT NOT NULL,
        backend    TEXT NOT NULL,
        session_id TEXT,
        created_at TEXT NOT NULL,
        body       TEXT NOT NULL
    );
    CREATE INDEX runners_state ON runners(state);
    "#,
    // 2: the runner event log, and the profile of each runner for capacity checks.
    r#"
    CREATE TABLE runner_events (
        runner_id TEXT NOT NULL REFERENCES runners(id) ON DELETE CASCADE,
        seq       INTEGER NOT NULL,
        id        TEXT NOT NULL UNIQUE,
        type      TEXT NOT NULL,
        at        TEXT NOT NULL,
        payload   TEXT NOT NULL,
        PRIMARY KEY (runner_id, seq)
    );
    ALTER TABLE runners ADD COLUMN profile TEXT;
    CREATE INDEX runners_profile ON runners(profile, state);
    "#,
    // 3: snapshots.
    r#"
    CREATE TABLE snapshots (
        k          INTEGER PRIMARY KEY,
        id         TEXT NOT NULL UNIQUE,
        runner_id  TEXT NOT NULL,
        created_at TEXT NOT NULL,
        body       TEXT NOT NULL
    );
    CREATE INDEX snapshots_runner ON snapshots(runner_id);
    "#,
    // 4: API tokens, the audit log, vaults and their credentials.
    r#"
    CREATE TABLE api_tokens (
        k          INTEGER PRIMARY KEY,
        id         TEXT NOT NULL UNIQUE,
        hash       TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        revoked_at TEXT,
        body       TEXT NOT NULL
    );
    CREATE TABLE audit_log (
        k          INTEGER PRIMARY KEY,
        id         TEXT NOT NULL UNIQUE,
        at         TEXT NOT NULL,
        action     TEXT NOT NULL,
        target     TEXT,
        body       TEXT NOT NULL
    );
    CREATE INDEX audit_at ON audit_log(at);
    CREATE TABLE vaults (
        k           INTEGER PRIMARY KEY,
        id          TEXT NOT NULL UNIQUE,
        created_at  TEXT NOT NULL,
        archived_at TEXT,
        body        TEXT NOT NULL
    );
    CREATE TABLE credentials (
        k           INTEGER PRIMARY KEY,
        id          TEXT NOT NULL UNIQUE,
        vault_id    TEXT NOT NULL REFERENCES vaults(id) ON DELETE CASCADE,
        created_at  TEXT NOT NULL,
        archived_at TEXT,
        body        TEXT NOT NULL,
        secret      TEXT NOT NULL
    );
    CREATE INDEX credentials_vault ON credentials(vault_id);
    "#,
];
