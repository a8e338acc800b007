//! The embedded backend: workflow state and messages in one SQLite file.
//!
//! Nothing to install or start. Several processes on one machine may share the file (WAL mode;
//! writers take turns). Receivers learn of new messages at once, in this process and in the
//! others that share the file (see `backend/wake.rs`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[cfg(test)]
mod local_tests;
mod messages;
mod queue;
mod schema;
mod state;
#[cfg(test)]
mod tests;
mod thread;

use super::wake::{Waiters, Wake};
use super::{BackendError, BackendResult, InstanceInfo, Settlement, Status};
use crate::backend::local::Local;
use messages::{Stored, parse_receipt, store_settlements, topics};
use rusqlite::{Connection, ErrorCode, params};
use schema::{SCHEMA, SCHEMA_VERSION};
use thread::ConnectionThread;

/// The embedded backend: a [`StateStore`](super::StateStore) and a
/// [`MessageQueue`](super::MessageQueue) on one SQLite file.
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
    /// Commits since the last checkpoint was queued.
    commits: std::sync::atomic::AtomicU32,
    /// The log's length in frames, as the last checkpoint found it.
    log_frames: Arc<std::sync::atomic::AtomicI64>,
    /// The log's length in frames past which the write connection restarts it.
    restart_log_frames: i64,
}

/// Prepared statements each connection keeps (rusqlite keeps 16 by default).
const STATEMENTS_KEPT: usize = 64;

/// Commits between two checkpoints of the log into the database file (each commit writes a few
/// pages; SQLite's own default is a checkpoint per 1,000 pages).
const CHECKPOINT_EVERY: u32 = 100;

/// The log's length, in frames (a page each, 4 KiB by default), past which the write connection
/// checkpoints it whole and has it start again from its beginning: 32 MiB.
const RESTART_LOG_FRAMES: i64 = 8_192;

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
    /// The log's length in frames past which it is restarted (tests shorten it).
    #[cfg(test)]
    pub(super) restart_log_frames: i64,
    /// How long a start waits for a later commit to sync it (tests change it).
    #[cfg(test)]
    pub(super) sync_within: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            process_wakeups: true,
            #[cfg(test)]
            deferred_patience: Duration::from_secs(10),
            #[cfg(test)]
            restart_log_frames: RESTART_LOG_FRAMES,
            #[cfg(test)]
            sync_within: thread::SYNC_WITHIN,
        }
    }
}

impl SqliteOptions {
    /// How long a deferred result may wait uncommitted (see `backend/local.rs`).
    fn patience(&self) -> Duration {
        #[cfg(test)]
        return self.deferred_patience;
        #[cfg(not(test))]
        crate::backend::local::DEFERRED_PATIENCE
    }

    /// The log's length in frames past which it is restarted.
    fn restart_log_frames(&self) -> i64 {
        #[cfg(test)]
        return self.restart_log_frames;
        #[cfg(not(test))]
        RESTART_LOG_FRAMES
    }

    /// How long a commit made without waiting for the disk waits for a later one that does.
    fn sync_within(&self) -> Duration {
        #[cfg(test)]
        return self.sync_within;
        #[cfg(not(test))]
        thread::SYNC_WITHIN
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
        // The receives' `UPDATE ... RETURNING` (and their `GROUP BY`) fill temporary tables,
        // which SQLite otherwise keeps in a temporary file: with the SQLite built here, a
        // receive of one message took about half as long in memory (a task's 100 us against
        // 48 us; a workflow's 177 to 232 us against 96 to 164 us). The write connection's
        // temporary tables are that small (a receive's rows, at most a batch); the operators'
        // queries, whose sorts may be large, run on the read connection.
        conn.pragma_update(None, "temp_store", "MEMORY")
            .map_err(|e| error(&path, e))?;
        // Each statement a connection runs is parsed once and kept: the write connection runs
        // more than 16 different ones (commits, receives, settlements, flow control), rusqlite's
        // default number kept, and parsed some of them again at each use.
        conn.set_prepared_statement_cache_capacity(STATEMENTS_KEPT);
        // Checkpoints run on the read connection's thread (see `SqliteBackend::stored`), not in
        // the commit that happens to fill the log.
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(|e| error(&path, e))?;
        // A log that starts again from its beginning is cut back to twice its bound, so a burst
        // does not leave a large file behind.
        let log_limit = options.restart_log_frames().saturating_mul(2 * 4096);
        conn.pragma_update(None, "journal_size_limit", log_limit)
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
        reader.set_prepared_statement_cache_capacity(STATEMENTS_KEPT);
        let waiters = Arc::new(Waiters::default());
        let local = Arc::new(Local::new(options.patience()));
        let heard = local.clone();
        let wake = if options.process_wakeups {
            // Another process stored messages any receiver may take.
            let heard = move |topic: Option<&str>| match topic {
                Some(topic) => heard.mark_dirty(topic),
                None => heard.mark_all_dirty(),
            };
            // Beside the file SQLite opened: processes that name the file differently share
            // the folder.
            match Wake::start(&opened_file(&conn, &path), waiters.clone(), heard) {
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
                conn: ConnectionThread::start(conn, path.clone(), "writer", options.sync_within())?,
                reader: ConnectionThread::start(
                    reader,
                    path.clone(),
                    "reader",
                    options.sync_within(),
                )?,
                path,
                waiters,
                wake,
                local,
                commits: std::sync::atomic::AtomicU32::new(0),
                log_frames: Arc::default(),
                restart_log_frames: options.restart_log_frames(),
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
        // A message whose receiver left meanwhile (a worker stopping) stays leased until its
        // lease runs out; then any receiver takes it, as after a crash.
        let _unplaced = self.inner.local.hold(stored.held);
        self.wake(topics);
        self.checkpoint_now_and_then();
    }

    /// Every [`CHECKPOINT_EVERY`] commits, copies the log into the database file on the read
    /// connection's thread (a passive checkpoint, which waits for no one): done by the commit
    /// that filled the log, as SQLite does by default, it made that commit take milliseconds
    /// more.
    ///
    /// The log starts again from its beginning only when a write begins with all of it copied,
    /// which commits that never pause (a steady load) never see, and it would grow without
    /// bound: 2.3 GB beside a 183 MB database in two minutes of the growth benchmark. So once
    /// a checkpoint finds it longer than its bound, the write connection, between two
    /// transactions, copies the rest (little, after the passive checkpoints) and waits a
    /// moment for readers to leave it (`RESTART`); its next commit writes the log from the
    /// start.
    fn checkpoint_now_and_then(&self) {
        use std::sync::atomic::Ordering;
        if self.inner.commits.fetch_add(1, Ordering::Relaxed) + 1 < CHECKPOINT_EVERY {
            return;
        }
        self.inner.commits.store(0, Ordering::Relaxed);
        if self.inner.log_frames.load(Ordering::Relaxed) > self.inner.restart_log_frames {
            self.inner.log_frames.store(0, Ordering::Relaxed);
            self.inner.conn.submit(restart_log);
            return;
        }
        let log_frames = self.inner.log_frames.clone();
        self.inner.reader.submit(move |conn, path| {
            match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1)) {
                Ok(frames) => log_frames.store(frames, Ordering::Relaxed),
                Err(err) => {
                    tracing::warn!(%err, path = %path.display(), "cannot checkpoint the database's log; trying again later");
                }
            }
        });
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
                // A settlement lost to a power cut leaves its task message leased: the task
                // runs again when the lease runs out, as when its worker died before settling.
                // So it need not wait for the disk; the next commit that does (the workflow's
                // that takes its result) syncs it with its own.
                let stored = unsynced(conn, path, |conn| {
                    let tx = conn
                        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                        .map_err(|e| error(path, e))?;
                    let mut stored = Stored::default();
                    store_settlements(&tx, path, &settlements, &local, &mut stored)?;
                    tx.commit().map_err(|e| error(path, e))?;
                    Ok(stored)
                })?;
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
                for delivery in &released.leased {
                    let (seq, lease) = parse_receipt(&delivery.receipt.0)?;
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

/// The file SQLite opened for `conn`, which was opened as `path`: links resolved, so the log
/// and anything else kept beside the database are found beside it.
pub(super) fn opened_file(conn: &Connection, path: &Path) -> PathBuf {
    conn.path()
        .filter(|file| !file.is_empty())
        .map_or_else(|| path.to_owned(), PathBuf::from)
}

/// Runs `f` with commits that do not wait for the disk (`synchronous = NORMAL`), for writes
/// that a power cut may lose without harm: in WAL mode they stay atomic, and the next commit
/// that waits for the disk, of any connection to the file, syncs them with its own.
pub(super) fn unsynced<T>(
    conn: &mut Connection,
    path: &Path,
    f: impl FnOnce(&mut Connection) -> BackendResult<T>,
) -> BackendResult<T> {
    let set = |conn: &mut Connection, sql: &str| {
        conn.prepare_cached(sql)
            .and_then(|mut s| s.execute([]).map(drop))
            .map_err(|e| error(path, e))
    };
    set(conn, "PRAGMA synchronous = NORMAL")?;
    let result = f(conn);
    set(conn, "PRAGMA synchronous = FULL")?;
    result
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

/// How long a restart of the log waits for readers (another process's included) to leave it;
/// the write connection's commits wait meanwhile. Past it, the restart is tried again at a
/// later checkpoint.
const RESTART_WAIT: Duration = Duration::from_millis(20);

/// Checkpoints the whole log and has the next commit write it from its beginning (see
/// [`SqliteBackend::checkpoint_now_and_then`]); run on the write connection's thread.
fn restart_log(conn: &mut Connection, path: &Path) {
    let waited = std::time::Instant::now();
    let short = conn.busy_handler(Some(move |_| {
        std::thread::sleep(Duration::from_micros(200));
        waited.elapsed() < RESTART_WAIT
    }));
    let restarted = short.and_then(|()| {
        conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get::<_, i64>(0))
    });
    if let Err(err) = conn.busy_handler(Some(busy_handler())) {
        tracing::warn!(%err, path = %path.display(), "cannot set the wait for other processes' locks again");
    }
    match restarted {
        Ok(0) => {}
        Ok(_) => {
            tracing::debug!(path = %path.display(), "readers kept the log busy; restarting it later");
        }
        Err(err) => {
            tracing::warn!(%err, path = %path.display(), "cannot restart the database's log; trying again later");
        }
    }
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
