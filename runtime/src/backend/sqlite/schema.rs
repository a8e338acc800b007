//! The tables of the embedded backend.

pub(super) const SCHEMA_VERSION: i64 = 3;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS instances (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    status TEXT NOT NULL,
    input TEXT NOT NULL,
    output TEXT,
    error TEXT,
    parent_id TEXT,
    parent_seq INTEGER,
    events INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
DROP INDEX IF EXISTS instances_by_name_status;
DROP INDEX IF EXISTS instances_by_status;
CREATE INDEX IF NOT EXISTS instances_by_created ON instances (created_at, id);
CREATE INDEX IF NOT EXISTS instances_by_status_created ON instances (status, created_at, id);
CREATE INDEX IF NOT EXISTS instances_by_name_created ON instances (name, created_at, id);
CREATE INDEX IF NOT EXISTS instances_by_name_status_created ON instances (name, status, created_at, id);
CREATE INDEX IF NOT EXISTS instances_by_parent ON instances (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS instances_ended ON instances (updated_at)
    WHERE status IN ('completed', 'failed', 'cancelled');
CREATE TABLE IF NOT EXISTS query_answers (
    instance_id TEXT PRIMARY KEY,
    events INTEGER NOT NULL,
    at INTEGER NOT NULL,
    answers TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
    instance_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (instance_id, idx),
    UNIQUE (instance_id, event_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    key TEXT NOT NULL,
    body TEXT NOT NULL,
    deliver_at INTEGER NOT NULL,
    leased_until INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_due ON messages (topic, deliver_at);
CREATE INDEX IF NOT EXISTS messages_by_key ON messages (topic, key);
CREATE TABLE IF NOT EXISTS dead_letters (
    id TEXT PRIMARY KEY,
    topic TEXT NOT NULL,
    key TEXT NOT NULL,
    body TEXT NOT NULL,
    reason TEXT NOT NULL,
    died_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_by_time ON dead_letters (died_at, id);
CREATE INDEX IF NOT EXISTS dead_letters_by_key ON dead_letters (key);
CREATE TABLE IF NOT EXISTS task_attempts (
    instance_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    redrive INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    service TEXT NOT NULL,
    task TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    error TEXT,
    retry_at INTEGER,
    PRIMARY KEY (instance_id, seq, redrive, attempt)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS flow_services (
    service TEXT PRIMARY KEY,
    tokens REAL NOT NULL,
    refilled_at INTEGER NOT NULL,
    paused_until INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS flow_holders (
    service TEXT NOT NULL,
    holder TEXT NOT NULL,
    held INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (service, holder)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS task_stats (
    service TEXT NOT NULL,
    minute INTEGER NOT NULL,
    ok INTEGER NOT NULL,
    retried INTEGER NOT NULL,
    dead INTEGER NOT NULL,
    PRIMARY KEY (service, minute)
) WITHOUT ROWID;
";
