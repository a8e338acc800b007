//! The distributed backend: workflow state in PostgreSQL, messages over a [`Transport`]
//! (Apache Pulsar in production, see `pulsar.rs`).
//!
//! A commit writes the instance, its new events and the messages it sends (an outbox table) in
//! one PostgreSQL transaction, with optimistic concurrency on the event count: the row is locked
//! and a writer that read fewer events than are stored gets [`BackendError::Conflict`] and
//! changes nothing. After the transaction the consumed deliveries are acknowledged, then the
//! messages are published and their outbox rows deleted (see `after_commit` for why in that
//! order). A process killed in between leaves the outbox rows, which a relay in every process publishes after a few seconds; a message can
//! so be published twice, never lost, and its id (deterministic) lets the receiver drop the
//! second: histories skip event ids they hold, task calls carry the same idempotency key.
//!
//! Dead letters are kept in PostgreSQL too, where an operator lists and retries them by id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::Notify;
use tokio_postgres::error::SqlState;

use super::{
    BackendError, BackendResult, Commit, DeadLetter, Delivery, InstanceInfo, Message, MessageBody,
    MessageQueue, Receipt, Settlement, StateStore, Status, Topic,
};
use crate::time::now_ms;
use crate::workflow::HistoryEvent;

/// How messages travel for the distributed backend: publish, receive under a lease, acknowledge.
///
/// Deduplication, dead letters and the transaction with state are the backend's, above this.
#[async_trait::async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Publishes messages, each not delivered before its `deliver_at`.
    async fn publish(&self, messages: &[Message]) -> BackendResult<()>;

    /// Takes up to `max` due messages of `topic`, delivered again if not acknowledged within
    /// `lease_ms`. On [`Topic::Workflows`] all messages of one key go to one receiver at a time.
    async fn receive(
        &self,
        topic: &Topic,
        max: usize,
        lease_ms: i64,
    ) -> BackendResult<Vec<Received>>;

    /// Acknowledges deliveries: they are not delivered again.
    async fn ack(&self, receipts: &[Receipt]) -> BackendResult<()>;

    /// Resolves when `topic` may have a message, or after `max_wait_ms`.
    async fn wait(&self, topic: &Topic, max_wait_ms: i64);

    /// How many messages wait in `topic`, when the transport can tell cheaply.
    async fn queue(&self, topic: &Topic) -> BackendResult<Option<super::inspect::QueueDepth>> {
        let _ = topic;
        Ok(None)
    }
}

/// What [`Transport::receive`] hands over.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    /// A message that decodes (boxed: the other variant is small).
    Message(Box<Delivery>),
    /// A message whose body does not decode: it goes to the dead letters.
    Undecodable {
        /// What acknowledges it.
        receipt: Receipt,
        /// Its id, as far as known.
        id: String,
        /// Its topic.
        topic: Topic,
        /// Its key.
        key: String,
        /// The body as received.
        body: String,
        /// Why it does not decode.
        error: String,
    },
}

/// The SQLite backend as a transport: PostgreSQL state with messages in a local file, for
/// tests of the state store on one machine.
#[async_trait::async_trait]
impl Transport for super::sqlite::SqliteBackend {
    async fn publish(&self, messages: &[Message]) -> BackendResult<()> {
        MessageQueue::send(self, messages.to_vec()).await
    }

    async fn receive(
        &self,
        topic: &Topic,
        max: usize,
        lease_ms: i64,
    ) -> BackendResult<Vec<Received>> {
        let deliveries = MessageQueue::receive(self, topic, max, lease_ms).await?;
        Ok(deliveries
            .into_iter()
            .map(|d| Received::Message(Box::new(d)))
            .collect())
    }

    async fn ack(&self, receipts: &[Receipt]) -> BackendResult<()> {
        MessageQueue::ack(self, receipts.to_vec()).await
    }

    async fn wait(&self, topic: &Topic, max_wait_ms: i64) {
        MessageQueue::wait(self, topic, max_wait_ms).await;
    }

    async fn queue(&self, topic: &Topic) -> BackendResult<Option<super::inspect::QueueDepth>> {
        self.queue_depth(topic).await.map(Some)
    }
}

/// The schema, one migration per entry; entry `n` takes the database to version `n + 1`.
const MIGRATIONS: &[&str] = &["
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
"];

/// The key of the advisory lock that serialises migrations between processes.
const MIGRATION_LOCK: i64 = 0x636f_6465_6765_6e31;

/// How long an outbox row may wait for the process that wrote it before any relay publishes it.
const RELAY_AFTER_MS: i64 = 3_000;

/// Where the PostgreSQL state is: a connection URL and an optional schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    /// `postgres://user:password@host:port/database` (libpq URL parameters other than the
    /// runtime's own are passed on).
    pub url: String,
    /// The schema the tables live in (created when missing); `public` when `None`.
    pub schema: Option<String>,
    /// Connections kept open.
    pub pool_size: usize,
}

/// The distributed backend: a [`StateStore`] on PostgreSQL and a [`MessageQueue`] on a
/// [`Transport`].
pub struct DistributedBackend<T> {
    pub(super) inner: Arc<Inner<T>>,
    relay: tokio::task::JoinHandle<()>,
}

pub(super) struct Inner<T> {
    pool: Pool,
    /// Names this process in the per-minute figures of services, so that processes do not
    /// contend for one row.
    pub(super) worker: String,
    pub(super) transport: T,
    /// The messages of deliveries not yet settled, for their dead letters.
    pending: Mutex<HashMap<Receipt, Message>>,
    changed: Notify,
}

impl<T> std::fmt::Debug for DistributedBackend<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DistributedBackend").finish_non_exhaustive()
    }
}

impl<T> Drop for DistributedBackend<T> {
    fn drop(&mut self) {
        self.relay.abort();
    }
}

/// Says what a PostgreSQL error means for the user.
pub(super) fn pg_error(what: &str, err: &tokio_postgres::Error) -> BackendError {
    let detail = match (err.as_db_error(), std::error::Error::source(err)) {
        (Some(db), _) => db.message().to_owned(),
        (None, Some(source)) => format!("{err}: {source}"),
        (None, None) => err.to_string(),
    };
    let hint = match err.code() {
        Some(code)
            if *code == SqlState::T_R_DEADLOCK_DETECTED
                || *code == SqlState::T_R_SERIALIZATION_FAILURE =>
        {
            " (transient; tried again)"
        }
        Some(code)
            if *code == SqlState::INVALID_PASSWORD
                || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
        {
            ": check the user and password in the backend URL"
        }
        Some(code) if *code == SqlState::INVALID_CATALOG_NAME => {
            ": create the database (`createdb`) or fix the URL"
        }
        Some(code) if *code == SqlState::INSUFFICIENT_PRIVILEGE => {
            ": the user needs the right to create tables in the database or schema"
        }
        _ => "",
    };
    BackendError::Unavailable(format!("PostgreSQL: {what}: {detail}{hint}"))
}

fn pool_error(err: deadpool_postgres::PoolError) -> BackendError {
    match err {
        deadpool_postgres::PoolError::Backend(e) if e.as_db_error().is_none() => pg_error(
            "connecting (check that the server runs and the URL's host and port)",
            &e,
        ),
        deadpool_postgres::PoolError::Backend(e) => pg_error("connecting", &e),
        other => BackendError::Unavailable(format!(
            "PostgreSQL: no connection ({other}): check that the server runs and the URL's host and port"
        )),
    }
}

pub(super) fn corrupt(what: &str, err: impl std::fmt::Display) -> BackendError {
    BackendError::Corrupt(format!("PostgreSQL: {what} does not decode ({err})"))
}

fn to_json<V: serde::Serialize>(value: &V) -> BackendResult<String> {
    serde_json::to_string(value).map_err(|e| BackendError::Invalid(e.to_string()))
}

pub(super) fn read_instance(row: &tokio_postgres::Row) -> BackendResult<InstanceInfo> {
    let get = |e: tokio_postgres::Error| corrupt("an instance row", e);
    let status: String = row.try_get("status").map_err(get)?;
    let input: String = row.try_get("input").map_err(get)?;
    let output: Option<String> = row.try_get("output").map_err(get)?;
    let parent_id: Option<String> = row.try_get("parent_id").map_err(get)?;
    let parent_seq: Option<i32> = row.try_get("parent_seq").map_err(get)?;
    let version: i32 = row.try_get("version").map_err(get)?;
    let events: i64 = row.try_get("events").map_err(get)?;
    Ok(InstanceInfo {
        id: row.try_get("id").map_err(get)?,
        name: row.try_get("name").map_err(get)?,
        version: u32::try_from(version).map_err(|e| corrupt("an instance version", e))?,
        status: Status::parse(&status).ok_or_else(|| corrupt("an instance status", &status))?,
        input: serde_json::from_str(&input).map_err(|e| corrupt("an instance input", e))?,
        output: output
            .map(|o| serde_json::from_str(&o))
            .transpose()
            .map_err(|e| corrupt("an instance output", e))?,
        error: row.try_get("error").map_err(get)?,
        parent: match (parent_id, parent_seq) {
            (Some(id), Some(seq)) => Some((
                id,
                u32::try_from(seq).map_err(|e| corrupt("a parent command number", e))?,
            )),
            _ => None,
        },
        events: u64::try_from(events).map_err(|e| corrupt("an event count", e))?,
        created_at: row.try_get("created_at").map_err(get)?,
        updated_at: row.try_get("updated_at").map_err(get)?,
    })
}

fn i64_of(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

async fn insert_outbox(
    tx: &deadpool_postgres::Transaction<'_>,
    messages: &[Message],
    now: i64,
) -> BackendResult<()> {
    if messages.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(messages.len());
    let mut topics = Vec::with_capacity(messages.len());
    let mut keys = Vec::with_capacity(messages.len());
    let mut due = Vec::with_capacity(messages.len());
    let mut bodies = Vec::with_capacity(messages.len());
    for m in messages {
        ids.push(m.id.as_str());
        topics.push(m.topic.name());
        keys.push(m.key.as_str());
        due.push(m.deliver_at);
        bodies.push(to_json(&m.body)?);
    }
    tx.execute(
        "INSERT INTO codegen_outbox (id, topic, key, deliver_at, body, created_at)
         SELECT m.id, m.topic, m.key, m.deliver_at, m.body, $6
         FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::BIGINT[], $5::TEXT[]) AS m(id, topic, key, deliver_at, body)
         ON CONFLICT (id) DO NOTHING",
        &[&ids, &topics, &keys, &due, &bodies, &now],
    )
    .await
    .map_err(|e| pg_error("writing the outbox", &e))?;
    Ok(())
}

/// Appends events to a locked instance's history from index `idx`, skipping ids it holds
/// (a message delivered twice); returns the new event count. Two statements, however many
/// events: the ids already there, then one insert of the rest.
async fn append_events(
    tx: &deadpool_postgres::Transaction<'_>,
    instance: &str,
    mut idx: i64,
    events: &[(String, HistoryEvent)],
) -> BackendResult<i64> {
    if events.is_empty() {
        return Ok(idx);
    }
    let ids: Vec<&str> = events.iter().map(|(id, _)| id.as_str()).collect();
    let held = tx
        .query(
            "SELECT event_id FROM codegen_history WHERE instance_id = $1 AND event_id = ANY($2)",
            &[&instance, &ids],
        )
        .await
        .map_err(|e| pg_error("reading a history", &e))?;
    let mut seen: std::collections::HashSet<String> =
        held.iter().map(|r| r.get::<_, String>(0)).collect();
    let (mut idxs, mut event_ids, mut ats, mut jsons) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (event_id, event) in events {
        if !seen.insert(event_id.clone()) {
            continue;
        }
        idxs.push(idx);
        event_ids.push(event_id.as_str());
        ats.push(event.at);
        jsons.push(to_json(&event.event)?);
        idx += 1;
    }
    tx.execute(
        "INSERT INTO codegen_history (instance_id, idx, event_id, at, event)
         SELECT $1, e.idx, e.event_id, e.at, e.event
         FROM UNNEST($2::BIGINT[], $3::TEXT[], $4::BIGINT[], $5::TEXT[]) AS e(idx, event_id, at, event)",
        &[&instance, &idxs, &event_ids, &ats, &jsons],
    )
    .await
    .map_err(|e| pg_error("appending to a history", &e))?;
    Ok(idx)
}

impl<T: Transport> DistributedBackend<T> {
    /// Connects to PostgreSQL, applies the schema migrations this runtime has and the database
    /// lacks, and starts the outbox relay. Must be called within a Tokio runtime.
    pub async fn connect(config: &PostgresConfig, transport: T) -> BackendResult<Self> {
        let mut pg: tokio_postgres::Config = config.url.parse().map_err(|e| {
            BackendError::Invalid(format!(
                "the PostgreSQL URL does not parse ({e}): expected postgres://USER:PASSWORD@HOST:PORT/DATABASE"
            ))
        })?;
        if let Some(schema) = &config.schema {
            if schema.is_empty()
                || !schema
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(BackendError::Invalid(format!(
                    "schema `{schema}`: use letters, digits and `_` only"
                )));
            }
            pg.options(format!("-c search_path={schema}"));
        }
        let manager = Manager::from_config(
            pg,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(2))
            .wait_timeout(Some(Duration::from_secs(30)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| BackendError::Invalid(format!("PostgreSQL pool: {e}")))?;
        migrate(&pool, config.schema.as_deref()).await?;
        let inner = Arc::new(Inner {
            pool,
            transport,
            worker: uuid::Uuid::new_v4().to_string(),
            pending: Mutex::new(HashMap::new()),
            changed: Notify::new(),
        });
        let relay = tokio::spawn(relay_loop(Arc::downgrade(&inner)));
        Ok(Self { inner, relay })
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.inner.transport
    }

    /// Publishes outbox rows older than `older_than_ms` (all with 0); returns how many. The
    /// relay calls this every second; a process that commits publishes its own rows at once.
    pub async fn relay_outbox(&self, older_than_ms: i64) -> BackendResult<usize> {
        self.inner.relay(older_than_ms).await
    }
}

impl<T: Transport> Inner<T> {
    pub(super) async fn client(&self) -> BackendResult<deadpool_postgres::Object> {
        self.pool.get().await.map_err(pool_error)
    }

    /// After a commit: acknowledge what it consumed, then publish what it sends and delete
    /// their outbox rows. Acknowledging first is safe, since the outbox keeps the messages
    /// until they are published, and needed: a retry reuses the id of the delivery it replaces,
    /// which a transport that drops duplicates by id would drop while that one is pending.
    async fn after_commit(&self, messages: Vec<Message>, acks: Vec<Receipt>) -> BackendResult<()> {
        if !acks.is_empty() {
            {
                let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                for r in &acks {
                    pending.remove(r);
                }
            }
            if let Err(err) = self.transport.ack(&acks).await {
                // Delivered again after the lease; the receiver drops it by id.
                tracing::warn!(%err, "acknowledging after a commit failed");
            }
        }
        if !messages.is_empty() {
            if let Err(err) = self.transport.publish(&messages).await {
                // The outbox keeps them: the relay publishes them when the transport is back.
                tracing::warn!(%err, "publishing after a commit failed; the outbox relay will retry");
                return Ok(());
            }
            let ids: Vec<&str> = messages.iter().map(|m| m.id.as_str()).collect();
            let mut client = self.client().await?;
            // Losing this delete to a crash only publishes the messages again, which the
            // receivers drop by id: it need not wait for the disk.
            let tx = client
                .transaction()
                .await
                .map_err(|e| pg_error("clearing the outbox", &e))?;
            tx.batch_execute("SET LOCAL synchronous_commit TO OFF")
                .await
                .map_err(|e| pg_error("clearing the outbox", &e))?;
            tx.execute("DELETE FROM codegen_outbox WHERE id = ANY($1)", &[&ids])
                .await
                .map_err(|e| pg_error("clearing the outbox", &e))?;
            tx.commit()
                .await
                .map_err(|e| pg_error("clearing the outbox", &e))?;
        }
        Ok(())
    }

    async fn relay(&self, older_than_ms: i64) -> BackendResult<usize> {
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| pg_error("relaying the outbox", &e))?;
        let rows = tx
            .query(
                "SELECT id, topic, key, deliver_at, body FROM codegen_outbox WHERE created_at <= $1
                 ORDER BY created_at, id LIMIT 500 FOR UPDATE SKIP LOCKED",
                &[&(now_ms() - older_than_ms)],
            )
            .await
            .map_err(|e| pg_error("reading the outbox", &e))?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut messages = Vec::with_capacity(rows.len());
        let mut ids = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.get(0);
            let topic: String = row.get(1);
            let body: String = row.get(4);
            let body: MessageBody =
                serde_json::from_str(&body).map_err(|e| corrupt("an outbox message", e))?;
            messages.push(Message {
                id: id.clone(),
                topic: Topic::from_name(&topic),
                key: row.get(2),
                deliver_at: row.get(3),
                body,
            });
            ids.push(id);
        }
        self.transport.publish(&messages).await?;
        tx.execute("DELETE FROM codegen_outbox WHERE id = ANY($1)", &[&ids])
            .await
            .map_err(|e| pg_error("clearing the outbox", &e))?;
        tx.commit()
            .await
            .map_err(|e| pg_error("clearing the outbox", &e))?;
        Ok(messages.len())
    }
}

async fn relay_loop<T: Transport>(inner: std::sync::Weak<Inner<T>>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Some(inner) = inner.upgrade() else { return };
        match inner.relay(RELAY_AFTER_MS).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                messages = n,
                "published outbox messages left by a stopped process"
            ),
            Err(err) => tracing::warn!(%err, "the outbox relay failed; trying again"),
        }
    }
}

async fn migrate(pool: &Pool, schema: Option<&str>) -> BackendResult<()> {
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

#[async_trait::async_trait]
impl<T: Transport> StateStore for DistributedBackend<T> {
    async fn commit(&self, commits: Vec<Commit>) -> BackendResult<()> {
        if commits.is_empty() {
            return Ok(());
        }
        let mut client = self.inner.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| pg_error("starting a commit", &e))?;
        let now = now_ms();
        // Lock the rows of existing instances in one order, so that two batches touching the
        // same instances cannot deadlock.
        let mut existing: Vec<&str> = commits
            .iter()
            .filter(|c| !c.create)
            .map(|c| c.instance.id.as_str())
            .collect();
        existing.sort_unstable();
        existing.dedup();
        let locked = tx
            .query(
                "SELECT id, events FROM codegen_instances WHERE id = ANY($1) ORDER BY id FOR UPDATE",
                &[&existing],
            )
            .await
            .map_err(|e| pg_error("locking instances", &e))?;
        let mut events_now: HashMap<String, i64> = locked
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
            .collect();
        let mut messages = Vec::new();
        let mut acks = Vec::new();
        for c in &commits {
            let i = &c.instance;
            if c.create {
                let created = tx
                    .execute(
                        "INSERT INTO codegen_instances (id, name, version, status, input, parent_id, parent_seq, events, created_at, updated_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $8) ON CONFLICT (id) DO NOTHING",
                        &[
                            &i.id,
                            &i.name,
                            &i32::try_from(i.version).unwrap_or(i32::MAX),
                            &i.status.as_str(),
                            &i.input.to_string(),
                            &i.parent.as_ref().map(|p| p.0.as_str()),
                            &i.parent.as_ref().map(|p| i32::try_from(p.1).unwrap_or(i32::MAX)),
                            &now,
                        ],
                    )
                    .await
                    .map_err(|e| pg_error("creating an instance", &e))?;
                if created == 0 {
                    return Err(BackendError::Conflict(i.id.clone()));
                }
                events_now.insert(i.id.clone(), 0);
            }
            match events_now.get(&i.id) {
                Some(&n) if u64::try_from(n) == Ok(c.expected_events) => {}
                _ => return Err(BackendError::Conflict(i.id.clone())),
            }
            let mut idx = i64_of(c.expected_events);
            if let Some(keep) = c.truncate_to {
                idx = i64_of(keep);
                tx.execute(
                    "DELETE FROM codegen_history WHERE instance_id = $1 AND idx >= $2",
                    &[&i.id, &idx],
                )
                .await
                .map_err(|e| pg_error("rewinding a history", &e))?;
            }
            idx = append_events(&tx, &i.id, idx, &c.events).await?;
            tx.execute(
                "UPDATE codegen_instances SET status = $2, output = $3, error = $4, events = $5, updated_at = $6, version = $7
                 WHERE id = $1",
                &[
                    &i.id,
                    &i.status.as_str(),
                    &i.output.as_ref().map(|o| o.to_string()),
                    &i.error,
                    &idx,
                    &now,
                    &i32::try_from(i.version).unwrap_or(i32::MAX),
                ],
            )
            .await
            .map_err(|e| pg_error("updating an instance", &e))?;
            events_now.insert(i.id.clone(), idx);
            insert_outbox(&tx, &c.messages, now).await?;
            messages.extend(c.messages.iter().cloned());
            acks.extend(c.acks.iter().cloned());
        }
        tx.commit().await.map_err(|e| pg_error("committing", &e))?;
        drop(client);
        self.inner.changed.notify_waiters();
        self.inner.after_commit(messages, acks).await
    }

    async fn instance(&self, id: &str) -> BackendResult<Option<InstanceInfo>> {
        let client = self.inner.client().await?;
        let row = client
            .query_opt("SELECT * FROM codegen_instances WHERE id = $1", &[&id])
            .await
            .map_err(|e| pg_error("reading an instance", &e))?;
        row.as_ref().map(read_instance).transpose()
    }

    async fn history(&self, id: &str) -> BackendResult<Vec<(String, HistoryEvent)>> {
        let client = self.inner.client().await?;
        let rows = client
            .query(
                "SELECT event_id, at, event FROM codegen_history WHERE instance_id = $1 ORDER BY idx",
                &[&id],
            )
            .await
            .map_err(|e| pg_error("reading a history", &e))?;
        rows.iter()
            .map(|r| {
                let json: String = r.get(2);
                let event =
                    serde_json::from_str(&json).map_err(|e| corrupt("a history event", e))?;
                Ok((
                    r.get(0),
                    HistoryEvent {
                        at: r.get(1),
                        event,
                    },
                ))
            })
            .collect()
    }

    async fn list(
        &self,
        name: Option<&str>,
        status: Option<Status>,
        limit: usize,
    ) -> BackendResult<Vec<InstanceInfo>> {
        let client = self.inner.client().await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = client
            .query(
                "SELECT * FROM codegen_instances WHERE ($1::TEXT IS NULL OR name = $1) AND ($2::TEXT IS NULL OR status = $2)
                 ORDER BY created_at DESC, id LIMIT $3",
                &[&name, &status.map(Status::as_str), &limit],
            )
            .await
            .map_err(|e| pg_error("listing instances", &e))?;
        rows.iter().map(read_instance).collect()
    }

    async fn wait_for_change(&self, seen: &InstanceInfo, max_wait: Duration) {
        // Woken by commits of this process; another process's are seen when `max_wait` ends.
        let notified = self.inner.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match self.instance(&seen.id).await {
            Ok(Some(now)) if now == *seen => {}
            _ => return,
        }
        let _ = tokio::time::timeout(max_wait, notified).await;
    }
}

#[async_trait::async_trait]
impl<T: Transport> MessageQueue for DistributedBackend<T> {
    async fn send(&self, messages: Vec<Message>) -> BackendResult<()> {
        self.inner.transport.publish(&messages).await
    }

    async fn receive(
        &self,
        topic: &Topic,
        max: usize,
        lease_ms: i64,
    ) -> BackendResult<Vec<Delivery>> {
        let received = self.inner.transport.receive(topic, max, lease_ms).await?;
        let mut out = Vec::with_capacity(received.len());
        let mut dead = Vec::new();
        for r in received {
            match r {
                Received::Message(d) => out.push(*d),
                Received::Undecodable {
                    receipt,
                    id,
                    topic,
                    key,
                    body,
                    error,
                } => dead.push((
                    receipt,
                    DeadLetter {
                        id,
                        topic,
                        key,
                        body,
                        reason: format!("the message does not decode: {error}"),
                        died_at: now_ms(),
                    },
                )),
            }
        }
        if !dead.is_empty() {
            let client = self.inner.client().await?;
            for (_, d) in &dead {
                insert_dead_letter(&client, d).await?;
            }
            let receipts: Vec<Receipt> = dead.into_iter().map(|(r, _)| r).collect();
            self.inner.transport.ack(&receipts).await?;
        }
        {
            let mut pending = self.inner.pending.lock().unwrap_or_else(|p| p.into_inner());
            for d in &out {
                pending.insert(d.receipt.clone(), d.message.clone());
            }
        }
        Ok(out)
    }

    async fn ack(&self, receipts: Vec<Receipt>) -> BackendResult<()> {
        self.inner.after_commit(Vec::new(), receipts).await
    }

    async fn settle(&self, settlements: Vec<Settlement>) -> BackendResult<()> {
        let mut client = self.inner.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| pg_error("settling", &e))?;
        let now = now_ms();
        let mut messages = Vec::new();
        let mut acks = Vec::new();
        for s in &settlements {
            if let Some(reason) = &s.dead {
                let message = {
                    let pending = self.inner.pending.lock().unwrap_or_else(|p| p.into_inner());
                    pending.get(&s.receipt).cloned()
                };
                let Some(m) = message else {
                    return Err(BackendError::Invalid(format!(
                        "receipt `{}` is not a delivery of this process",
                        s.receipt.0
                    )));
                };
                let letter = DeadLetter {
                    id: m.id.clone(),
                    topic: m.topic.clone(),
                    key: m.key.clone(),
                    body: to_json(&m.body)?,
                    reason: reason.clone(),
                    died_at: now,
                };
                insert_dead_letter(&tx, &letter).await?;
            }
            insert_outbox(&tx, &s.messages, now).await?;
            messages.extend(s.messages.iter().cloned());
            acks.push(s.receipt.clone());
        }
        super::inspect::postgres::record_attempts(&tx, &self.inner.worker, &settlements, now)
            .await?;
        tx.commit().await.map_err(|e| pg_error("settling", &e))?;
        drop(client);
        self.inner.after_commit(messages, acks).await
    }

    async fn dead_letters(&self) -> BackendResult<Vec<DeadLetter>> {
        let client = self.inner.client().await?;
        let rows = client
            .query(
                "SELECT id, topic, key, body, reason, died_at FROM codegen_dead_letters ORDER BY died_at, id",
                &[],
            )
            .await
            .map_err(|e| pg_error("listing dead letters", &e))?;
        Ok(rows
            .iter()
            .map(|r| DeadLetter {
                id: r.get(0),
                topic: Topic::from_name(&r.get::<_, String>(1)),
                key: r.get(2),
                body: r.get(3),
                reason: r.get(4),
                died_at: r.get(5),
            })
            .collect())
    }

    async fn redrive(&self, id: &str, message: Option<Message>) -> BackendResult<()> {
        let mut client = self.inner.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| pg_error("retrying a dead letter", &e))?;
        let row = tx
            .query_opt(
                "DELETE FROM codegen_dead_letters WHERE id = $1 RETURNING topic, key, body",
                &[&id],
            )
            .await
            .map_err(|e| pg_error("retrying a dead letter", &e))?;
        let Some(row) = row else {
            return Err(BackendError::Invalid(format!(
                "no dead letter `{id}`: list them with `dead_letters` (it may have been retried already)"
            )));
        };
        let message = match message {
            Some(m) => m,
            None => {
                let body: String = row.get(2);
                Message {
                    id: id.to_owned(),
                    topic: Topic::from_name(&row.get::<_, String>(0)),
                    key: row.get(1),
                    deliver_at: now_ms(),
                    body: serde_json::from_str(&body).map_err(|e| {
                        BackendError::Invalid(format!(
                            "dead letter `{id}` does not decode ({e}): it cannot be sent again as it is"
                        ))
                    })?,
                }
            }
        };
        insert_outbox(&tx, std::slice::from_ref(&message), now_ms()).await?;
        tx.commit()
            .await
            .map_err(|e| pg_error("retrying a dead letter", &e))?;
        drop(client);
        self.inner.after_commit(vec![message], Vec::new()).await
    }

    async fn wait(&self, topic: &Topic, max_wait_ms: i64) {
        self.inner.transport.wait(topic, max_wait_ms).await;
    }
}

async fn insert_dead_letter<C: deadpool_postgres::GenericClient>(
    client: &C,
    d: &DeadLetter,
) -> BackendResult<()> {
    client
        .execute(
            "INSERT INTO codegen_dead_letters (id, topic, key, body, reason, died_at) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body, reason = EXCLUDED.reason, died_at = EXCLUDED.died_at",
            &[&d.id, &d.topic.name(), &d.key, &d.body, &d.reason, &d.died_at],
        )
        .await
        .map_err(|e| pg_error("writing a dead letter", &e))?;
    Ok(())
}
