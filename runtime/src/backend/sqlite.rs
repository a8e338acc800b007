//! The embedded backend: workflow state and messages in one SQLite file.
//!
//! Nothing to install or start. Several processes on one machine may share the file (WAL mode;
//! writers take turns). Receivers learn of new messages at once, in this process and in the
//! others that share the file (see `backend/wake.rs`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

mod local;
#[cfg(test)]
mod local_tests;
mod thread;

use super::flow::{self, FlowLimits, Grant};
use super::wake::{Waiters, Wake};
use super::{
    BackendError, BackendResult, Commit, DeadLetter, Delivery, InstanceInfo, Message, MessageBody,
    MessageQueue, Receipt, Settlement, StateStore, Status, Subscription, Topic, stored_answers,
};
use crate::time::now_ms;
use crate::workflow::HistoryEvent;
use local::{Local, Subscribed, is_deferred};
use rusqlite::{Connection, ErrorCode, OptionalExtension, params};
use thread::ConnectionThread;

const SCHEMA_VERSION: i64 = 3;

const SCHEMA: &str = "
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

/// The embedded backend: a [`StateStore`] and a [`MessageQueue`] on one SQLite file.
#[derive(Clone)]
pub struct SqliteBackend {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// Writes, and reads that must see them in the same transaction.
    conn: ConnectionThread,
    /// Reads that need no transaction with writes; in WAL mode they do not wait for writers.
    reader: ConnectionThread,
    /// The waiters of this process.
    waiters: Arc<Waiters>,
    /// Tells other processes on the file of this one's commits, and wakes `waiters` for theirs.
    wake: Option<Arc<Wake>>,
    /// What this process's receivers get without a round trip through the store.
    local: Arc<Local>,
}

/// Options of [`SqliteBackend::open_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SqliteOptions {
    /// Tell the other processes that share the file of this one's commits, and hear of theirs,
    /// through a watched folder beside the file (`<file>-wake/`). On by default; off, a
    /// process learns of another's messages only when its wait runs out (the workers' idle
    /// wait). Processes that leave it on are still woken by those that do.
    pub process_wakeups: bool,
    /// How long a deferred result may wait uncommitted before it is stored (tests shorten it).
    #[cfg(test)]
    pub(super) deferred_patience: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            process_wakeups: true,
            #[cfg(test)]
            deferred_patience: Duration::from_secs(10),
        }
    }
}

impl SqliteOptions {
    /// How long a deferred result may wait uncommitted (see `sqlite/local.rs`).
    fn patience(&self) -> Duration {
        #[cfg(test)]
        return self.deferred_patience;
        #[cfg(not(test))]
        local::DEFERRED_PATIENCE
    }

    /// These options with cross-process wake-ups on or off.
    pub fn with_process_wakeups(mut self, on: bool) -> Self {
        self.process_wakeups = on;
        self
    }
}

impl std::fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteBackend")
            .field("path", &self.inner.path)
            .finish()
    }
}

impl SqliteBackend {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: impl AsRef<Path>) -> BackendResult<Self> {
        Self::open_with(path, SqliteOptions::default())
    }

    /// Opens (or creates) the database at `path` with `options`.
    pub fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> BackendResult<Self> {
        let path = path.as_ref().to_owned();
        let mut conn = Connection::open(&path).map_err(|e| error(&path, e))?;
        conn.busy_handler(Some(busy_handler()))
            .map_err(|e| error(&path, e))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| error(&path, e))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(|e| error(&path, e))?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| error(&path, e))?;
        if version > SCHEMA_VERSION {
            return Err(BackendError::Corrupt(format!(
                "{}: the database has schema version {version}, newer than this runtime's {SCHEMA_VERSION}: upgrade the runtime",
                path.display()
            )));
        }
        conn.execute_batch(SCHEMA).map_err(|e| error(&path, e))?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(|e| error(&path, e))?;
        let mut reader = Connection::open(&path).map_err(|e| error(&path, e))?;
        reader
            .busy_handler(Some(busy_handler()))
            .map_err(|e| error(&path, e))?;
        let waiters = Arc::new(Waiters::default());
        let local = Arc::new(Local::new(options.patience()));
        let heard = local.clone();
        let wake = if options.process_wakeups {
            // Another process stored messages any receiver may take.
            let heard = move |topic: Option<&str>| match topic {
                Some(topic) => heard.mark_dirty(topic),
                None => heard.mark_all_dirty(),
            };
            match Wake::start(&path, waiters.clone(), heard) {
                Ok(wake) => Some(Arc::new(wake)),
                Err(message) => {
                    tracing::warn!(%message, "other processes on this database will be seen when a wait runs out");
                    None
                }
            }
        } else {
            None
        };
        Ok(Self {
            inner: Arc::new(Inner {
                conn: ConnectionThread::start(conn, path.clone(), "writer")?,
                reader: ConnectionThread::start(reader, path.clone(), "reader")?,
                path,
                waiters,
                wake,
                local,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Wakes the waiters of this process on `topics`.
    fn wake(&self, topics: &[String]) {
        for topic in topics {
            self.inner.waiters.topic(topic).notify_waiters();
        }
    }

    /// Takes in what a transaction stored: its pre-leased messages are held for this
    /// process's receivers, and the topics that got messages any receiver may take are read
    /// again; then this process's waiters on every topic it stored to are woken.
    fn stored(&self, stored: Stored, topics: &[String]) {
        for topic in &stored.open {
            self.inner.local.mark_dirty(topic);
        }
        self.inner.local.hold(stored.held);
        self.wake(topics);
    }

    /// What tells the other processes of a commit, to call right after it on the database
    /// thread.
    fn announcer(&self) -> Option<Arc<Wake>> {
        self.inner.wake.clone()
    }

    /// Stores settlements in one transaction (see [`store_settlements`]).
    async fn store(&self, settlements: Vec<Settlement>) -> BackendResult<()> {
        let topics = topics(settlements.iter().flat_map(|s| &s.messages));
        let announcer = self.announcer();
        let local = self.inner.local.clone();
        let stored = self
            .with_conn(move |conn, path| {
                let tx = conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .map_err(|e| error(path, e))?;
                let mut stored = Stored::default();
                store_settlements(&tx, path, &settlements, &local, &mut stored)?;
                tx.commit().map_err(|e| error(path, e))?;
                if let Some(wake) = announcer {
                    wake.announce(&stored.announced(), false);
                }
                Ok(stored)
            })
            .await?;
        self.stored(stored, &topics);
        Ok(())
    }

    /// Ends a subscription to `topic`: the last one hands back what was held for it, in a
    /// transaction queued to the database thread (nothing waits for it): the leases of
    /// pre-leased messages released, deferred results stored as any other.
    fn unsubscribe(&self, topic: &str) {
        let released = self.inner.local.unsubscribe(topic);
        if released.leased.is_empty() && released.settlements.is_empty() {
            return;
        }
        let backend = self.clone();
        let topic = topic.to_owned();
        self.inner.conn.submit(move |conn, path| {
            let topics = topics(released.settlements.iter().flat_map(|s| &s.messages));
            let mut stored = Stored::default();
            let done = (|| {
                let tx = conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .map_err(|e| error(path, e))?;
                let mut release = tx
                    .prepare_cached(
                        "UPDATE messages SET leased_until = 0 WHERE seq = ?1 AND leased_until = ?2",
                    )
                    .map_err(|e| error(path, e))?;
                for receipt in &released.leased {
                    let (seq, lease) = parse_receipt(&receipt.0)?;
                    release.execute(params![seq, lease]).map_err(|e| error(path, e))?;
                }
                drop(release);
                store_settlements(&tx, path, &released.settlements, &backend.inner.local, &mut stored)?;
                tx.commit().map_err(|e| error(path, e))
            })();
            match done {
                Ok(()) => {
                    let mut announced = stored.announced();
                    if !released.leased.is_empty() {
                        announced.push(topic.clone());
                    }
                    if let Some(wake) = backend.announcer() {
                        wake.announce(&announced, false);
                    }
                    backend.stored(stored, &topics);
                }
                // The leases run out and the tasks run again, as after a crash.
                Err(err) => {
                    tracing::warn!(%err, "cannot hand back what a stopping worker held; it is delivered again when its leases run out");
                }
            }
        });
    }

    /// Runs `f` with the read connection, on its thread.
    pub(super) async fn with_reader<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection, &Path) -> BackendResult<T> + Send + 'static,
    ) -> BackendResult<T> {
        self.inner.reader.call(f).await
    }

    /// Runs `f` with the write connection, on its thread.
    async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection, &Path) -> BackendResult<T> + Send + 'static,
    ) -> BackendResult<T> {
        self.inner.conn.call(f).await
    }
}

/// Deletes instances with their history, messages, dead letters and attempts.
fn delete_instances(
    tx: &rusqlite::Transaction<'_>,
    path: &Path,
    ids: &[String],
) -> BackendResult<()> {
    for sql in [
        "DELETE FROM history WHERE instance_id = ?1",
        "DELETE FROM messages WHERE key = ?1",
        "DELETE FROM dead_letters WHERE key = ?1",
        "DELETE FROM task_attempts WHERE instance_id = ?1",
        "DELETE FROM query_answers WHERE instance_id = ?1",
        "DELETE FROM instances WHERE id = ?1",
    ] {
        let mut stmt = tx.prepare_cached(sql).map_err(|e| error(path, e))?;
        for id in ids {
            stmt.execute([id]).map_err(|e| error(path, e))?;
        }
    }
    Ok(())
}

/// How long a connection waits for another process's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Waits for a lock held by another connection (another process, in practice: this one's
/// writes share one connection), trying again soon: SQLite's own handler sleeps 1, 2, 5, 10...
/// ms between tries, many commits' worth, each time two processes write at once. Gives up
/// after [`BUSY_TIMEOUT`].
fn busy_handler() -> impl FnMut(i32) -> bool + Send + 'static {
    let mut started = std::time::Instant::now();
    move |tries| {
        if tries == 0 {
            started = std::time::Instant::now();
        }
        if started.elapsed() >= BUSY_TIMEOUT {
            return false;
        }
        // 50, 100, 200, 400, 800 microseconds, then 800 each time.
        let shift = u32::try_from(tries.clamp(0, 4)).unwrap_or(4);
        std::thread::sleep(Duration::from_micros(50 << shift));
        true
    }
}

/// Says what a SQLite error means for the user.
pub(super) fn error(path: &Path, err: rusqlite::Error) -> BackendError {
    let file = path.display();
    match err.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            BackendError::Unavailable(format!(
                "{file} is locked by another process for more than 10 s: check that no other program holds it open in a transaction"
            ))
        }
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
            BackendError::Corrupt(format!(
                "{file} is damaged or is not a codegen database ({err}): restore it from a backup, or move it away to start with an empty one"
            ))
        }
        Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied | ErrorCode::ReadOnly) => {
            BackendError::Unavailable(format!(
                "{file} cannot be opened for writing ({err}): check the path and its permissions"
            ))
        }
        Some(ErrorCode::DiskFull) => BackendError::Unavailable(format!("{file}: the disk is full")),
        _ => BackendError::Unavailable(format!("{file}: {err}")),
    }
}

pub(super) fn corrupt(path: &Path, what: &str, err: impl std::fmt::Display) -> BackendError {
    BackendError::Corrupt(format!(
        "{}: {what} does not decode ({err})",
        path.display()
    ))
}

/// What a transaction stored: messages leased to this process's receivers as they were stored,
/// and the topics that got messages any receiver may take.
#[derive(Default)]
struct Stored {
    held: Vec<Delivery>,
    open: Vec<String>,
}

impl Stored {
    /// The open topics, each once, for the other processes to hear of.
    fn announced(&self) -> Vec<String> {
        let mut topics = self.open.clone();
        topics.sort();
        topics.dedup();
        topics
    }
}

/// Stores `messages`: those due now for a topic a receiver of this process takes, and has room
/// for, leased to it as they are stored (see `local.rs`), the others for any receiver.
fn insert_messages(
    tx: &rusqlite::Transaction<'_>,
    path: &Path,
    messages: &[Message],
    local: &Local,
    stored: &mut Stored,
) -> BackendResult<()> {
    let now = now_ms();
    let mut held_per_topic: std::collections::HashMap<String, usize> =
        std::collections::HashMap::new();
    for m in messages {
        let body =
            serde_json::to_string(&m.body).map_err(|e| BackendError::Invalid(e.to_string()))?;
        let topic = m.topic.name();
        let held = held_per_topic.get(&topic).copied().unwrap_or(0);
        let lease = (m.deliver_at <= now)
            .then(|| local.lease_for(&topic, held))
            .flatten();
        match lease {
            Some(lease_ms) => {
                let until = now + lease_ms;
                let inserted = tx
                    .prepare_cached(
                        "INSERT OR IGNORE INTO messages (id, topic, key, body, deliver_at, leased_until) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )
                    .map_err(|e| error(path, e))?
                    .execute(params![m.id, topic, m.key, body, m.deliver_at, until])
                    .map_err(|e| error(path, e))?;
                // A message sent before and still pending is not sent again.
                if inserted == 1 {
                    stored
                        .held
                        .push(local::delivery(tx.last_insert_rowid(), until, m));
                    *held_per_topic.entry(topic).or_default() += 1;
                }
            }
            None => {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO messages (id, topic, key, body, deliver_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(|e| error(path, e))?
                .execute(params![m.id, topic, m.key, body, m.deliver_at])
                .map_err(|e| error(path, e))?;
                stored.open.push(topic);
            }
        }
    }
    Ok(())
}

/// Applies settlements in a transaction: each delivery acknowledged or moved to the dead
/// letters, the messages its outcome sends stored, and the attempts counted.
fn store_settlements(
    tx: &rusqlite::Transaction<'_>,
    path: &Path,
    settlements: &[Settlement],
    local: &Local,
    stored: &mut Stored,
) -> BackendResult<()> {
    let now = now_ms();
    for s in settlements {
        let (seq, lease) = parse_receipt(&s.receipt.0)?;
        if let Some(reason) = &s.dead {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO dead_letters (id, topic, key, body, reason, died_at)
                 SELECT id, topic, key, body, ?3, ?4 FROM messages WHERE seq = ?1 AND leased_until = ?2",
            )
            .map_err(|e| error(path, e))?
            .execute(params![seq, lease, reason, now])
            .map_err(|e| error(path, e))?;
        }
        delete_receipts(tx, path, std::slice::from_ref(&s.receipt))?;
        insert_messages(tx, path, &s.messages, local, stored)?;
    }
    super::inspect::sqlite::record_attempts(tx, path, settlements, now)
}

/// Deletes the messages of `receipts`; a deferred result's has no row (its settlement is
/// applied by [`store_settlements`]).
fn delete_receipts(
    tx: &rusqlite::Transaction<'_>,
    path: &Path,
    receipts: &[Receipt],
) -> BackendResult<()> {
    let mut stmt = tx
        .prepare_cached("DELETE FROM messages WHERE seq = ?1 AND leased_until = ?2")
        .map_err(|e| error(path, e))?;
    for r in receipts.iter().filter(|r| !is_deferred(r)) {
        let (seq, lease) = parse_receipt(&r.0)?;
        stmt.execute(params![seq, lease])
            .map_err(|e| error(path, e))?;
    }
    Ok(())
}

/// The instances `deliveries` are for.
fn instances(deliveries: &[Delivery]) -> usize {
    deliveries
        .iter()
        .map(|d| &d.message.key)
        .collect::<std::collections::HashSet<_>>()
        .len()
}

/// The topics that `messages` go to, each once.
fn topics<'a>(messages: impl IntoIterator<Item = &'a Message>) -> Vec<String> {
    let mut topics: Vec<String> = messages.into_iter().map(|m| m.topic.name()).collect();
    topics.sort();
    topics.dedup();
    topics
}

fn parse_receipt(receipt: &str) -> BackendResult<(i64, i64)> {
    receipt
        .split_once(':')
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .ok_or_else(|| {
            BackendError::Invalid(format!("`{receipt}` is not a receipt of this backend"))
        })
}

pub(super) fn read_instance(
    row: &rusqlite::Row<'_>,
    path: &Path,
) -> rusqlite::Result<BackendResult<InstanceInfo>> {
    let status: String = row.get("status")?;
    let input: String = row.get("input")?;
    let output: Option<String> = row.get("output")?;
    let parent_id: Option<String> = row.get("parent_id")?;
    let parent_seq: Option<u32> = row.get("parent_seq")?;
    let id: String = row.get("id")?;
    let decoded = (|| {
        Ok(InstanceInfo {
            status: Status::parse(&status)
                .ok_or_else(|| corrupt(path, "an instance status", &status))?,
            input: serde_json::from_str(&input)
                .map_err(|e| corrupt(path, "an instance input", e))?,
            output: output
                .map(|o| serde_json::from_str(&o))
                .transpose()
                .map_err(|e| corrupt(path, "an instance output", e))?,
            parent: parent_id.zip(parent_seq),
            id: id.clone(),
            name: row.get("name").map_err(|e| error(path, e))?,
            version: row.get("version").map_err(|e| error(path, e))?,
            error: row.get("error").map_err(|e| error(path, e))?,
            events: u64::try_from(row.get::<_, i64>("events").map_err(|e| error(path, e))?)
                .unwrap_or(0),
            created_at: row.get("created_at").map_err(|e| error(path, e))?,
            updated_at: row.get("updated_at").map_err(|e| error(path, e))?,
        })
    })();
    Ok(decoded)
}

/// Takes the due messages of up to `?4` instances that no worker holds, found among the
/// `?4 * 8` oldest due messages (by the `messages_due` index, without reading the rest).
const INSTANCES_AMONG_OLDEST: &str = "UPDATE messages SET leased_until = ?3 WHERE topic = ?1 AND deliver_at <= ?2 AND leased_until <= ?2
   AND key IN (SELECT key FROM (SELECT key, seq FROM messages WHERE topic = ?1 AND deliver_at <= ?2 AND leased_until <= ?2
       ORDER BY deliver_at, seq LIMIT ?4 * 8) m
     WHERE NOT EXISTS (SELECT 1 FROM messages h WHERE h.topic = ?1 AND h.key = m.key AND h.leased_until > ?2)
     GROUP BY key ORDER BY MIN(seq) LIMIT ?4)
 RETURNING seq, id, key, body, deliver_at";

/// The same among every due message: when the oldest all belong to instances being handled.
const INSTANCES_AMONG_ALL: &str = "UPDATE messages SET leased_until = ?3 WHERE topic = ?1 AND deliver_at <= ?2 AND leased_until <= ?2
   AND key IN (SELECT key FROM messages m WHERE topic = ?1 AND deliver_at <= ?2 AND leased_until <= ?2
     AND NOT EXISTS (SELECT 1 FROM messages h WHERE h.topic = ?1 AND h.key = m.key AND h.leased_until > ?2)
     GROUP BY key ORDER BY MIN(seq) LIMIT ?4)
 RETURNING seq, id, key, body, deliver_at";

/// Takes up to `?4` due task messages, oldest first.
const TASKS: &str =
    "UPDATE messages SET leased_until = ?3 WHERE seq IN (SELECT seq FROM messages WHERE topic = ?1
   AND deliver_at <= ?2 AND leased_until <= ?2 ORDER BY deliver_at, seq LIMIT ?4)
 RETURNING seq, id, key, body, deliver_at";

/// Takes the due messages of a topic under a lease, in one transaction.
fn receive_in(
    conn: &mut Connection,
    path: &Path,
    topic: &Topic,
    sql: &str,
    now: i64,
    lease: i64,
    max: i64,
) -> BackendResult<Vec<Delivery>> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(|e| error(path, e))?;
    let mut rows: Vec<(i64, String, String, String, i64)> = {
        let mut stmt = tx.prepare_cached(sql).map_err(|e| error(path, e))?;
        let mapped = stmt
            .query_map(params![topic.name(), now, lease, max], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .map_err(|e| error(path, e))?;
        mapped
            .collect::<Result<_, _>>()
            .map_err(|e| error(path, e))?
    };
    rows.sort_by_key(|r| r.0);
    let mut out = Vec::with_capacity(rows.len());
    for (seq, id, key, body, deliver_at) in rows {
        let receipt = Receipt(format!("{seq}:{lease}"));
        match serde_json::from_str::<MessageBody>(&body) {
            Ok(body) => out.push(Delivery {
                receipt,
                message: Message {
                    id,
                    topic: topic.clone(),
                    key,
                    deliver_at,
                    body,
                },
            }),
            // A message that cannot be decoded never reaches a handler: it is set aside.
            Err(e) => {
                tx.execute(
                    "INSERT OR REPLACE INTO dead_letters (id, topic, key, body, reason, died_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![id, topic.name(), key, body, format!("the message does not decode: {e}"), now],
                )
                .map_err(|e| error(path, e))?;
                tx.execute("DELETE FROM messages WHERE seq = ?1", [seq])
                    .map_err(|e| error(path, e))?;
            }
        }
    }
    tx.commit().map_err(|e| error(path, e))?;
    Ok(out)
}

#[async_trait::async_trait]
impl StateStore for SqliteBackend {
    async fn commit(&self, commits: Vec<Commit>) -> BackendResult<()> {
        let topics = topics(commits.iter().flat_map(|c| &c.messages));
        let local = self.inner.local.clone();
        // The deferred results the commits take: their settlements (the task message deleted,
        // the attempt counted) are applied in the same transaction, and put back if it fails.
        let receipts: Vec<Receipt> = commits
            .iter()
            .flat_map(|c| &c.acks)
            .filter(|r| is_deferred(r))
            .cloned()
            .collect();
        let deferred = local.settlements_of(&receipts);
        // Their result messages are what the commits took: not stored.
        let applied: Vec<Settlement> = deferred
            .iter()
            .map(|(_, s)| Settlement {
                messages: Vec::new(),
                ..s.clone()
            })
            .collect();
        let announcer = self.announcer();
        let held_for = local.clone();
        let committed = self.with_conn(move |conn, path| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(|e| error(path, e))?;
            let mut stored = Stored::default();
            let now = now_ms();
            for c in &commits {
                let i = &c.instance;
                let current: Option<i64> = tx
                    .prepare_cached("SELECT events FROM instances WHERE id = ?1")
                    .map_err(|e| error(path, e))?
                    .query_row([&i.id], |r| r.get(0))
                    .optional()
                    .map_err(|e| error(path, e))?;
                match (c.create, current) {
                    (true, None) => {
                        tx.prepare_cached(
                            "INSERT INTO instances (id, name, version, status, input, parent_id, parent_seq, events, created_at, updated_at)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, ?8, ?8)",
                        )
                        .map_err(|e| error(path, e))?
                        .execute(params![
                                i.id,
                                i.name,
                                i.version,
                                i.status.as_str(),
                                i.input.to_string(),
                                i.parent.as_ref().map(|p| &p.0),
                                i.parent.as_ref().map(|p| p.1),
                                now
                            ])
                        .map_err(|e| error(path, e))?;
                    }
                    (false, Some(events)) if u64::try_from(events) == Ok(c.expected_events) => {}
                    _ => return Err(BackendError::Conflict(i.id.clone())),
                }
                let mut idx = i64::try_from(c.expected_events).unwrap_or(i64::MAX);
                if let Some(keep) = c.truncate_to {
                    idx = i64::try_from(keep).unwrap_or(i64::MAX);
                    tx.execute("DELETE FROM history WHERE instance_id = ?1 AND idx >= ?2", params![i.id, idx])
                        .map_err(|e| error(path, e))?;
                    // A new run (continued as new) has a new input.
                    if keep == 0 {
                        tx.execute("UPDATE instances SET input = ?2 WHERE id = ?1", params![i.id, i.input.to_string()])
                            .map_err(|e| error(path, e))?;
                    }
                }
                let mut insert = tx
                    .prepare_cached(
                        "INSERT OR IGNORE INTO history (instance_id, idx, event_id, at, event) VALUES (?1, ?2, ?3, ?4, ?5)",
                    )
                    .map_err(|e| error(path, e))?;
                for (event_id, event) in &c.events {
                    let json = serde_json::to_string(&event.event).map_err(|e| BackendError::Invalid(e.to_string()))?;
                    let inserted = insert.execute(params![i.id, idx, event_id, event.at, json]).map_err(|e| error(path, e))?;
                    idx += i64::try_from(inserted).unwrap_or(0);
                }
                drop(insert);
                tx.prepare_cached(
                    "UPDATE instances SET status = ?2, output = ?3, error = ?4, events = ?5, updated_at = ?6, version = ?7
                     WHERE id = ?1",
                )
                .map_err(|e| error(path, e))?
                .execute(params![i.id, i.status.as_str(), i.output.as_ref().map(|o| o.to_string()), i.error, idx, now, i.version])
                .map_err(|e| error(path, e))?;
                match stored_answers(c.queries.as_ref())? {
                    None => {}
                    Some(None) => {
                        tx.execute("DELETE FROM query_answers WHERE instance_id = ?1", [&i.id])
                            .map_err(|e| error(path, e))?;
                    }
                    Some(Some(answers)) => {
                        tx.prepare_cached(
                            "INSERT INTO query_answers (instance_id, events, at, answers) VALUES (?1, ?2, ?3, ?4)
                             ON CONFLICT (instance_id) DO UPDATE SET events = ?2, at = ?3, answers = ?4",
                        )
                        .map_err(|e| error(path, e))?
                        .execute(params![i.id, idx, now, answers])
                        .map_err(|e| error(path, e))?;
                    }
                }
                insert_messages(&tx, path, &c.messages, &held_for, &mut stored)?;
                delete_receipts(&tx, path, &c.acks)?;
            }
            store_settlements(&tx, path, &applied, &held_for, &mut stored)?;
            tx.commit().map_err(|e| error(path, e))?;
            if let Some(wake) = announcer {
                wake.announce(&stored.announced(), true);
            }
            Ok(stored)
        })
        .await;
        match committed {
            Ok(stored) => {
                self.stored(stored, &topics);
                self.inner.waiters.changed.notify_waiters();
                Ok(())
            }
            Err(err) => {
                local.restore(deferred);
                Err(err)
            }
        }
    }

    async fn wait_for_change(&self, seen: &InstanceInfo, max_wait: Duration) {
        let deadline = tokio::time::Instant::now() + max_wait;
        // A wake-up may be for another instance, or late news of a commit already seen (another
        // process's notice can arrive after the read): the instance is read again each time.
        loop {
            let notified = self.inner.waiters.changed.notified();
            tokio::pin!(notified);
            // Registered before the check: a change committed after the check wakes it.
            notified.as_mut().enable();
            match self.instance(&seen.id).await {
                Ok(Some(now)) if now == *seen => {}
                _ => return,
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }

    async fn instance(&self, id: &str) -> BackendResult<Option<InstanceInfo>> {
        let id = id.to_owned();
        self.with_reader(move |conn, path| {
            let found = conn
                .query_row("SELECT * FROM instances WHERE id = ?1", [&id], |row| {
                    read_instance(row, path)
                })
                .optional()
                .map_err(|e| error(path, e))?;
            found.transpose()
        })
        .await
    }

    async fn history(&self, id: &str) -> BackendResult<Vec<(String, HistoryEvent)>> {
        let id = id.to_owned();
        self.with_reader(move |conn, path| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT event_id, at, event FROM history WHERE instance_id = ?1 ORDER BY idx",
                )
                .map_err(|e| error(path, e))?;
            let rows = stmt
                .query_map([&id], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                })
                .map_err(|e| error(path, e))?;
            let mut out = Vec::new();
            for row in rows {
                let (event_id, at, json) = row.map_err(|e| error(path, e))?;
                let event =
                    serde_json::from_str(&json).map_err(|e| corrupt(path, "a history event", e))?;
                out.push((event_id, HistoryEvent { at, event }));
            }
            Ok(out)
        })
        .await
    }

    async fn purge_ended(
        &self,
        ended_before: i64,
        name: Option<&str>,
        except: &[String],
        limit: usize,
    ) -> BackendResult<Vec<String>> {
        let name = name.map(str::to_owned);
        let except = serde_json::to_string(except).unwrap_or_else(|_| "[]".to_owned());
        self.with_conn(move |conn, path| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(|e| error(path, e))?;
            let ids: Vec<String> = {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT id FROM instances
                         WHERE status IN ('completed', 'failed', 'cancelled') AND updated_at < ?1
                           AND (?2 IS NULL OR name = ?2)
                           AND name NOT IN (SELECT value FROM json_each(?3))
                         ORDER BY updated_at LIMIT ?4",
                    )
                    .map_err(|e| error(path, e))?;
                let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                let rows = stmt
                    .query_map(params![ended_before, name, except, limit], |r| r.get(0))
                    .map_err(|e| error(path, e))?;
                rows.collect::<Result<_, _>>().map_err(|e| error(path, e))?
            };
            delete_instances(&tx, path, &ids)?;
            tx.commit().map_err(|e| error(path, e))?;
            Ok(ids)
        })
        .await
    }

    async fn purge(&self, id: &str) -> BackendResult<bool> {
        let id = id.to_owned();
        self.with_conn(move |conn, path| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(|e| error(path, e))?;
            let ended: Option<String> = tx
                .query_row(
                    "SELECT id FROM instances WHERE id = ?1 AND status IN ('completed', 'failed', 'cancelled')",
                    [&id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| error(path, e))?;
            let ids: Vec<String> = ended.into_iter().collect();
            delete_instances(&tx, path, &ids)?;
            tx.commit().map_err(|e| error(path, e))?;
            Ok(!ids.is_empty())
        })
        .await
    }

    async fn list(
        &self,
        name: Option<&str>,
        status: Option<Status>,
        limit: usize,
    ) -> BackendResult<Vec<InstanceInfo>> {
        let name = name.map(str::to_owned);
        self.with_reader(move |conn, path| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT * FROM instances WHERE (?1 IS NULL OR name = ?1) AND (?2 IS NULL OR status = ?2)
                     ORDER BY created_at DESC, id LIMIT ?3",
                )
                .map_err(|e| error(path, e))?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = stmt
                .query_map(params![name, status.map(Status::as_str), limit], |row| read_instance(row, path))
                .map_err(|e| error(path, e))?;
            rows.map(|r| r.map_err(|e| error(path, e)).and_then(|r| r)).collect()
        })
        .await
    }
}

#[async_trait::async_trait]
impl MessageQueue for SqliteBackend {
    async fn send(&self, messages: Vec<Message>) -> BackendResult<()> {
        let topics = topics(&messages);
        let announcer = self.announcer();
        let local = self.inner.local.clone();
        let stored = self
            .with_conn(move |conn, path| {
                let tx = conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .map_err(|e| error(path, e))?;
                let mut stored = Stored::default();
                insert_messages(&tx, path, &messages, &local, &mut stored)?;
                tx.commit().map_err(|e| error(path, e))?;
                if let Some(wake) = announcer {
                    wake.announce(&stored.announced(), false);
                }
                Ok(stored)
            })
            .await?;
        self.stored(stored, &topics);
        Ok(())
    }

    async fn receive(
        &self,
        topic: &Topic,
        max: usize,
        lease_ms: i64,
    ) -> BackendResult<Vec<Delivery>> {
        let local = &self.inner.local;
        let name = topic.name();
        if *topic == Topic::Workflows {
            // Results a receiver took and never committed: stored as any other.
            let abandoned = local.abandoned();
            if !abandoned.is_empty() {
                self.store(abandoned).await?;
            }
        }
        let mut deliveries = local.take(topic, max, now_ms());
        let taken = match topic {
            Topic::Workflows => instances(&deliveries),
            Topic::Tasks(_) => deliveries.len(),
        };
        let want = max.saturating_sub(taken);
        let Some(seen) = local.dirty(&name).filter(|_| want > 0) else {
            return Ok(deliveries);
        };
        let topic = topic.clone();
        let from_store = self
            .with_conn(move |conn, path| {
                let now = now_ms();
                let lease = now + lease_ms;
                // Bounded so that the window of the oldest (`?4 * 8`) stays an integer.
                let max = i64::try_from(want).unwrap_or(i64::MAX).min(i64::MAX / 8);
                // A lease lost to a power cut only means a second delivery, which at-least-once
                // delivery allows: taking one need not wait for the disk.
                conn.prepare_cached("PRAGMA synchronous = NORMAL")
                    .and_then(|mut s| s.execute([]).map(drop))
                    .map_err(|e| error(path, e))?;
                let result = match topic {
                    // Whole instances: every due message of up to `max` instances that no one
                    // holds, chosen among the oldest due messages first, so that a backlog of
                    // thousands costs a receive what a short one does; only when those all belong
                    // to instances being handled is every due message looked at.
                    Topic::Workflows => {
                        match receive_in(
                            conn,
                            path,
                            &topic,
                            INSTANCES_AMONG_OLDEST,
                            now,
                            lease,
                            max,
                        ) {
                            Ok(none) if none.is_empty() => {
                                receive_in(conn, path, &topic, INSTANCES_AMONG_ALL, now, lease, max)
                            }
                            other => other,
                        }
                    }
                    Topic::Tasks(_) => receive_in(conn, path, &topic, TASKS, now, lease, max),
                };
                conn.prepare_cached("PRAGMA synchronous = FULL")
                    .and_then(|mut s| s.execute([]).map(drop))
                    .map_err(|e| error(path, e))?;
                result
            })
            .await?;
        let found = match &from_store.first().map(|d| &d.message.topic) {
            Some(Topic::Workflows) => instances(&from_store),
            _ => from_store.len(),
        };
        // Fewer than asked for: the store holds no more that is due.
        if found < want {
            local.mark_clean(&name, seen);
        }
        deliveries.extend(from_store);
        Ok(deliveries)
    }

    async fn ack(&self, receipts: Vec<Receipt>) -> BackendResult<()> {
        // A deferred result acknowledged without a commit (news for an instance that does not
        // exist): its settlement is applied all the same, without its message.
        let local = self.inner.local.clone();
        let deferred = local.settlements_of(&receipts);
        let applied: Vec<Settlement> = deferred
            .iter()
            .map(|(_, s)| Settlement {
                messages: Vec::new(),
                ..s.clone()
            })
            .collect();
        let held_for = local.clone();
        let acked = self
            .with_conn(move |conn, path| {
                let tx = conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .map_err(|e| error(path, e))?;
                delete_receipts(&tx, path, &receipts)?;
                store_settlements(&tx, path, &applied, &held_for, &mut Stored::default())?;
                tx.commit().map_err(|e| error(path, e))
            })
            .await;
        if acked.is_err() {
            local.restore(deferred);
        }
        acked
    }

    async fn settle(&self, settlements: Vec<Settlement>) -> BackendResult<()> {
        let local = &self.inner.local;
        // A result a workflow worker of this process takes waits for its commit (see
        // `local.rs`); the rest are stored now.
        let mut rest: Vec<Settlement> = settlements
            .into_iter()
            .filter_map(|s| local.defer(s))
            .collect();
        rest.extend(local.abandoned());
        if rest.is_empty() {
            self.wake(&[Topic::Workflows.name()]);
            return Ok(());
        }
        self.store(rest).await?;
        self.wake(&[Topic::Workflows.name()]);
        Ok(())
    }

    async fn dead_letters(&self) -> BackendResult<Vec<DeadLetter>> {
        self.with_reader(move |conn, path| {
            let mut stmt = conn
                .prepare_cached("SELECT id, topic, key, body, reason, died_at FROM dead_letters ORDER BY died_at, id")
                .map_err(|e| error(path, e))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(DeadLetter {
                        id: r.get(0)?,
                        topic: Topic::from_name(&r.get::<_, String>(1)?),
                        key: r.get(2)?,
                        body: r.get(3)?,
                        reason: r.get(4)?,
                        died_at: r.get(5)?,
                    })
                })
                .map_err(|e| error(path, e))?;
            rows.collect::<Result<_, _>>().map_err(|e| error(path, e))
        })
        .await
    }

    async fn redrive(&self, id: &str, message: Option<Message>) -> BackendResult<()> {
        let id = id.to_owned();
        let announcer = self.announcer();
        let topic = self
            .with_conn(move |conn, path| {
                let tx = conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .map_err(|e| error(path, e))?;
                let dead: Option<(String, String, String)> = tx
                    .query_row("SELECT topic, key, body FROM dead_letters WHERE id = ?1", [&id], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })
                    .optional()
                    .map_err(|e| error(path, e))?;
                let Some((stored, key, body)) = dead else {
                    return Err(BackendError::Invalid(format!(
                        "no dead letter `{id}`: list them with `dead_letters` (it may have been retried already)"
                    )));
                };
                tx.execute("DELETE FROM dead_letters WHERE id = ?1", [&id]).map_err(|e| error(path, e))?;
                let topic = match &message {
                    Some(m) => {
                        insert_messages(&tx, path, std::slice::from_ref(m), &Local::default(), &mut Stored::default())?;
                        m.topic.name()
                    }
                    None => {
                        tx.execute(
                            "INSERT OR IGNORE INTO messages (id, topic, key, body, deliver_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                            params![id, stored, key, body, now_ms()],
                        )
                        .map_err(|e| error(path, e))?;
                        stored
                    }
                };
                tx.commit().map_err(|e| error(path, e))?;
                if let Some(wake) = announcer {
                    wake.announce(std::slice::from_ref(&topic), false);
                }
                Ok(topic)
            })
            .await?;
        self.inner.local.mark_dirty(&topic);
        self.wake(&[topic]);
        Ok(())
    }

    async fn acquire(
        &self,
        service: &str,
        holder: &str,
        want: u32,
        limits: &FlowLimits,
        lease_ms: i64,
    ) -> BackendResult<Grant> {
        let (service, holder, limits) = (service.to_owned(), holder.to_owned(), *limits);
        self.with_conn(move |conn, path| {
            let now = now_ms();
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(|e| error(path, e))?;
            let held = |mine: bool| -> BackendResult<u32> {
                let sql = if mine {
                    "SELECT COALESCE(SUM(held), 0) FROM flow_holders WHERE service = ?1 AND holder = ?2 AND expires_at > ?3"
                } else {
                    "SELECT COALESCE(SUM(held), 0) FROM flow_holders WHERE service = ?1 AND holder <> ?2 AND expires_at > ?3"
                };
                tx.query_row(sql, params![service, holder, now], |r| r.get::<_, i64>(0))
                    .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
                    .map_err(|e| error(path, e))
            };
            let (others, mine) = (held(false)?, held(true)?);
            let bucket = tx
                .query_row(
                    "SELECT tokens, refilled_at, paused_until FROM flow_services WHERE service = ?1",
                    [&service],
                    |r| {
                        Ok(flow::Bucket {
                            tokens: r.get(0)?,
                            refilled_at: r.get(1)?,
                            paused_until: r.get(2)?,
                        })
                    },
                )
                .optional()
                .map_err(|e| error(path, e))?
                .unwrap_or_else(|| flow::Bucket::full(&limits, now));
            let (granted, bucket, retry_at) = flow::decide(&limits, bucket, others, mine, want, now);
            tx.execute(
                "INSERT INTO flow_services (service, tokens, refilled_at, paused_until) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (service) DO UPDATE SET tokens = ?2, refilled_at = ?3",
                params![service, bucket.tokens, bucket.refilled_at, bucket.paused_until],
            )
            .map_err(|e| error(path, e))?;
            tx.execute(
                "INSERT INTO flow_holders (service, holder, held, expires_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (service, holder) DO UPDATE SET held = ?3, expires_at = ?4",
                params![service, holder, i64::from(mine) + i64::from(granted), now + lease_ms],
            )
            .map_err(|e| error(path, e))?;
            tx.commit().map_err(|e| error(path, e))?;
            Ok(Grant { granted, retry_at })
        })
        .await
    }

    async fn release(&self, service: &str, holder: &str, n: u32) -> BackendResult<()> {
        let (name, holder) = (service.to_owned(), holder.to_owned());
        let announcer = self.announcer();
        let topic = Topic::Tasks(service.to_owned()).name();
        let announced = vec![topic.clone()];
        self.with_conn(move |conn, path| {
            conn.execute(
                "UPDATE flow_holders SET held = MAX(held - ?3, 0) WHERE service = ?1 AND holder = ?2",
                params![name, holder, i64::from(n)],
            )
            .map_err(|e| error(path, e))?;
            if let Some(wake) = announcer {
                wake.announce(&announced, false);
            }
            Ok(())
        })
        .await?;
        self.inner.waiters.topic(&topic).notify_waiters();
        Ok(())
    }

    async fn back_off(&self, service: &str, until: i64) -> BackendResult<()> {
        let service = service.to_owned();
        self.with_conn(move |conn, path| {
            conn.execute(
                "INSERT INTO flow_services (service, tokens, refilled_at, paused_until) VALUES (?1, 0, ?3, ?2)
                 ON CONFLICT (service) DO UPDATE SET paused_until = MAX(paused_until, ?2)",
                params![service, until, now_ms()],
            )
            .map_err(|e| error(path, e))?;
            Ok(())
        })
        .await
    }

    async fn backing_off_until(&self, service: &str) -> BackendResult<i64> {
        let service = service.to_owned();
        self.with_reader(move |conn, path| {
            conn.query_row(
                "SELECT paused_until FROM flow_services WHERE service = ?1",
                [&service],
                |r| r.get(0),
            )
            .optional()
            .map(Option::unwrap_or_default)
            .map_err(|e| error(path, e))
        })
        .await
    }

    async fn wait_for_release(&self, service: &str, max_wait_ms: i64) {
        // A release (or a new task) in this process or another notifies the service's topic.
        let notify = self
            .inner
            .waiters
            .topic(&Topic::Tasks(service.to_owned()).name());
        let _ = tokio::time::timeout(
            Duration::from_millis(u64::try_from(max_wait_ms).unwrap_or(0)),
            notify.notified(),
        )
        .await;
    }

    async fn wait(&self, topic: &Topic, max_wait_ms: i64) {
        // Registered before the check: a message sent after it, by this process or another,
        // wakes this wait.
        let notify = self.inner.waiters.topic(&topic.name());
        let notified = notify.notified();
        let name = topic.name();
        let local = self.inner.local.clone();
        if local.holds(&name) {
            return;
        }
        let topic_name = name.clone();
        let next_due = self
            .with_reader(move |conn, path| {
                // A message is next available when it is due and its lease (if any) has run
                // out: one being handled now wakes no one until its lease ends.
                conn.query_row(
                    "SELECT MIN(MAX(deliver_at, leased_until)) FROM messages WHERE topic = ?1",
                    [name],
                    |r| r.get::<_, Option<i64>>(0),
                )
                .map_err(|e| error(path, e))
            })
            .await
            .ok()
            .flatten();
        let now = now_ms();
        let wait = match next_due {
            Some(due) if due <= now => {
                local.mark_dirty(&topic_name);
                return;
            }
            Some(due) => (due - now).min(max_wait_ms),
            None => max_wait_ms,
        };
        let timed_out = tokio::time::timeout(
            Duration::from_millis(u64::try_from(wait).unwrap_or(0)),
            notified,
        )
        .await
        .is_err();
        // Something came due (a delayed message, a lease that ran out), or a notification was
        // lost: the store is read again.
        if timed_out {
            local.mark_dirty(&topic_name);
        }
    }

    fn subscribe(&self, topic: &Topic, lease_ms: i64, capacity: usize) -> Subscription {
        let name = topic.name();
        self.inner.local.subscribe(&name, lease_ms, capacity);
        let backend = self.clone();
        Subscription::new(Subscribed {
            topic: name,
            release: Arc::new(move |topic| backend.unsubscribe(topic)),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn task(id: &str) -> Message {
        Message {
            id: id.to_owned(),
            topic: Topic::Tasks("billing".to_owned()),
            key: "instance".to_owned(),
            deliver_at: 0,
            body: MessageBody::Wake,
        }
    }

    /// Two backends on one file know nothing of each other but the file and its wake-up
    /// folder, as two processes would.
    fn two(options: SqliteOptions) -> (tempfile::TempDir, SqliteBackend, SqliteBackend) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared.db");
        let a = SqliteBackend::open_with(&path, options.clone()).unwrap();
        let b = SqliteBackend::open_with(&path, options).unwrap();
        (dir, a, b)
    }

    #[tokio::test]
    async fn a_message_sent_by_another_backend_on_the_file_ends_a_long_wait() {
        let (_dir, a, b) = two(SqliteOptions::default());
        let topic = Topic::Tasks("billing".to_owned());
        let started = Instant::now();
        let waiting = tokio::spawn(async move { b.wait(&topic, 60_000).await });
        // Let the wait find nothing and park.
        tokio::time::sleep(Duration::from_millis(100)).await;
        a.send(vec![task("t1")]).await.unwrap();
        tokio::time::timeout(Duration::from_secs(30), waiting)
            .await
            .expect("the wait was not woken by the other backend's message")
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(30));
    }

    #[tokio::test]
    async fn a_message_for_another_topic_does_not_end_a_wait() {
        let (_dir, a, b) = two(SqliteOptions::default());
        let waiting =
            tokio::spawn(async move { b.wait(&Topic::Tasks("other".to_owned()), 60_000).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        a.send(vec![task("t1")]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiting.is_finished());
        waiting.abort();
    }

    #[tokio::test]
    async fn a_commit_by_another_backend_on_the_file_ends_a_wait_for_change() {
        let (_dir, a, b) = two(SqliteOptions::default());
        let info = InstanceInfo::new("i1", "w", serde_json::json!(1), now_ms());
        let commit = |status: Status, create: bool, expected_events: u64| Commit {
            instance: InstanceInfo {
                status,
                ..info.clone()
            },
            create,
            expected_events,
            events: Vec::new(),
            messages: Vec::new(),
            acks: Vec::new(),
            truncate_to: None,
            queries: None,
        };
        a.commit(vec![commit(Status::Running, true, 0)])
            .await
            .unwrap();
        let seen = b.instance("i1").await.unwrap().unwrap();
        let waiting = tokio::spawn({
            let seen = seen.clone();
            async move { b.wait_for_change(&seen, Duration::from_secs(60)).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiting.is_finished(), "nothing changed yet");
        a.commit(vec![commit(Status::Completed, false, 0)])
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(30), waiting)
            .await
            .expect("the wait was not woken by the other backend's commit")
            .unwrap();
    }

    #[tokio::test]
    async fn a_wait_for_change_returns_at_once_when_the_instance_already_changed() {
        let (_dir, a, _b) = two(SqliteOptions::default());
        let mut seen = InstanceInfo::new("i1", "w", serde_json::json!(1), now_ms());
        a.commit(vec![Commit {
            instance: seen.clone(),
            create: true,
            expected_events: 0,
            events: Vec::new(),
            messages: Vec::new(),
            acks: Vec::new(),
            truncate_to: None,
            queries: None,
        }])
        .await
        .unwrap();
        // What the caller saw is older than what is stored.
        seen.updated_at -= 1;
        tokio::time::timeout(
            Duration::from_secs(30),
            a.wait_for_change(&seen, Duration::from_secs(60)),
        )
        .await
        .expect("the change was already there");
    }

    #[tokio::test]
    async fn without_process_wakeups_there_is_no_folder_and_a_wait_runs_to_its_bound() {
        let (dir, a, b) = two(SqliteOptions::default().with_process_wakeups(false));
        assert!(!dir.path().join("shared.db-wake").exists());
        let topic = Topic::Tasks("billing".to_owned());
        let waiting = tokio::spawn(async move { b.wait(&topic, 60_000).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        a.send(vec![task("t1")]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiting.is_finished());
        waiting.abort();
    }
}
