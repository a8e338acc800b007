//! The PostgreSQL schema of the distributed backend, one migration per entry, and migrating to it.

use super::errors::pg_error;
use super::errors::pool_error;
use deadpool_postgres::Pool;

use crate::backend::{BackendError, BackendResult};
use crate::time::now_ms;

/// The schema, one migration per entry; entry `n` takes the database to version `n + 1`.
pub(super) const MIGRATIONS: &[&str] = &["
CREATE TABLE codegen_instances (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    status TEXT NOT NULL,
    input TEXT NOT NULL,
    output TEXT,
    error TEXT,
    parent_id TEXT,
    parent_seq INTEGER,
    events BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX codegen_instances_by_name_status ON codegen_instances (name, status, created_at DESC);
CREATE INDEX codegen_instances_by_status ON codegen_instances (status, created_at DESC);
CREATE INDEX codegen_instances_by_created ON codegen_instances (created_at DESC);
CREATE TABLE codegen_history (
    instance_id TEXT NOT NULL,
    idx BIGINT NOT NULL,
    event_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (instance_id, idx),
    UNIQUE (instance_id, event_id)
);
CREATE TABLE codegen_outbox (
    id TEXT PRIMARY KEY,
    topic TEXT NOT NULL,
    key TEXT NOT NULL,
    deliver_at BIGINT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX codegen_outbox_by_age ON codegen_outbox (created_at);
CREATE TABLE codegen_dead_letters (
    id TEXT PRIMARY KEY,
    topic TEXT NOT NULL,
    key TEXT NOT NULL,
    body TEXT NOT NULL,
    reason TEXT NOT NULL,
    died_at BIGINT NOT NULL
);
", "
CREATE INDEX codegen_instances_by_created_id ON codegen_instances (created_at DESC, id DESC);
CREATE INDEX codegen_instances_by_status_created ON codegen_instances (status, created_at DESC, id DESC);
CREATE INDEX codegen_instances_by_name_created ON codegen_instances (name, created_at DESC, id DESC);
CREATE INDEX codegen_instances_by_name_status_created ON codegen_instances (name, status, created_at DESC, id DESC);
CREATE INDEX codegen_instances_by_id_bytes ON codegen_instances (id COLLATE \"C\");
CREATE INDEX codegen_instances_by_parent ON codegen_instances (parent_id) WHERE parent_id IS NOT NULL;
DROP INDEX codegen_instances_by_name_status;
DROP INDEX codegen_instances_by_status;
DROP INDEX codegen_instances_by_created;
CREATE INDEX codegen_dead_letters_by_time ON codegen_dead_letters (died_at DESC, id DESC);
CREATE INDEX codegen_dead_letters_by_key ON codegen_dead_letters (key);
CREATE TABLE codegen_task_attempts (
    instance_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    redrive INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    service TEXT NOT NULL,
    task TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    ended_at BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    error TEXT,
    retry_at BIGINT,
    PRIMARY KEY (instance_id, seq, redrive, attempt)
);
CREATE TABLE codegen_task_stats (
    service TEXT NOT NULL,
    minute BIGINT NOT NULL,
    worker TEXT NOT NULL,
    ok BIGINT NOT NULL,
    retried BIGINT NOT NULL,
    dead BIGINT NOT NULL,
    PRIMARY KEY (service, minute, worker)
);
", "
CREATE INDEX codegen_instances_ended ON codegen_instances (updated_at)
    WHERE status IN ('completed', 'failed', 'cancelled');
CREATE INDEX codegen_outbox_by_key ON codegen_outbox (key);
CREATE TABLE codegen_flow_services (
    service TEXT PRIMARY KEY,
    tokens DOUBLE PRECISION NOT NULL,
    refilled_at BIGINT NOT NULL,
    paused_until BIGINT NOT NULL
);
CREATE TABLE codegen_flow_holders (
    service TEXT NOT NULL,
    holder TEXT NOT NULL,
    held BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (service, holder)
);
", "
CREATE TABLE codegen_query_answers (
    instance_id TEXT PRIMARY KEY,
    events BIGINT NOT NULL,
    at BIGINT NOT NULL,
    answers TEXT NOT NULL
);
", "
ALTER TABLE codegen_outbox ADD COLUMN held_until BIGINT NOT NULL DEFAULT 0;
"];

/// The key of the advisory lock that serialises migrations between processes.
pub(super) const MIGRATION_LOCK: i64 = 0x636f_6465_6765_6e31;

pub(super) async fn migrate(pool: &Pool, schema: Option<&str>) -> BackendResult<()> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| pg_error("starting the migration", &e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(|e| pg_error("locking for the migration", &e))?;
    if let Some(schema) = schema {
        tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
            .await
            .map_err(|e| pg_error(&format!("creating schema `{schema}`"), &e))?;
    }
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS codegen_schema (version INTEGER NOT NULL, applied_at BIGINT NOT NULL)",
    )
    .await
    .map_err(|e| pg_error("creating the schema version table", &e))?;
    let row = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM codegen_schema", &[])
        .await
        .map_err(|e| pg_error("reading the schema version", &e))?;
    let current = usize::try_from(row.get::<_, i32>(0)).unwrap_or(0);
    if current > MIGRATIONS.len() {
        return Err(BackendError::Corrupt(format!(
            "PostgreSQL: the database has schema version {current}, newer than this runtime's {}: upgrade the runtime",
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        tx.batch_execute(sql)
            .await
            .map_err(|e| pg_error(&format!("applying migration {}", index + 1), &e))?;
        let version = i32::try_from(index + 1).unwrap_or(i32::MAX);
        tx.execute(
            "INSERT INTO codegen_schema (version, applied_at) VALUES ($1, $2)",
            &[&version, &now_ms()],
        )
        .await
        .map_err(|e| pg_error("recording the schema version", &e))?;
    }
    tx.commit()
        .await
        .map_err(|e| pg_error("committing the migration", &e))
}
