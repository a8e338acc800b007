//! A SQLite connection on a thread of its own.
//!
//! Calls are queued to the thread and run in order, each answered through a one-shot channel.
//! However many tasks call at once, one thread per connection waits on the database: running
//! each call on tokio's blocking pool instead, with the connection behind a mutex, grew the pool
//! to its 512 threads whenever hundreds of calls queued (a burst of starts), each thread parked
//! on the mutex with its stack.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::backend::{BackendError, BackendResult};

/// A call to run with the connection.
type Job = Box<dyn FnOnce(&mut Connection, &Path, &mut Durability) + Send>;

/// How long a commit made without waiting for the disk waits for a later commit that does
/// (which puts it on the disk too) before the thread syncs the log for it.
pub(super) const SYNC_WITHIN: Duration = Duration::from_millis(2);

/// The callers of a connection's thread waiting until what they committed without waiting for
/// the disk is on it.
///
/// In WAL mode every commit appends to the log, and a commit with `synchronous = FULL` syncs
/// the whole log file: the commits before it, made with `NORMAL`, reach the disk with it. So a
/// caller that must not return before its commit is durable, but whose commit another one is
/// about to follow, commits with `NORMAL` and waits here ([`Durability::wait`]); the next
/// commit that waits for the disk answers it ([`Durability::synced`]), or, when none comes
/// within [`SYNC_WITHIN`], the thread syncs the log itself.
pub(super) struct Durability {
    waiting: Vec<oneshot::Sender<BackendResult<()>>>,
    /// When the first of `waiting` began to wait.
    since: Option<Instant>,
    /// [`SYNC_WITHIN`], but in tests.
    within: Duration,
}

impl Durability {
    fn new(within: Duration) -> Self {
        Self {
            waiting: Vec::new(),
            since: None,
            within,
        }
    }

    /// Registers a caller whose commit was made without waiting for the disk: the receiver is
    /// answered once the log is synced.
    pub(super) fn wait(&mut self) -> oneshot::Receiver<BackendResult<()>> {
        let (answer, answered) = oneshot::channel();
        self.waiting.push(answer);
        self.since.get_or_insert_with(Instant::now);
        answered
    }

    /// Says that a commit that waited for the disk succeeded: every earlier commit is on the
    /// disk too.
    pub(super) fn synced(&mut self) {
        self.answer(None);
    }

    /// How long the thread may wait for a call before it syncs the log itself; none when no
    /// one waits.
    fn patience(&self) -> Option<Duration> {
        self.since
            .map(|since| self.within.saturating_sub(since.elapsed()))
    }

    /// Syncs the log of `conn`'s database (opened as `path`) and answers the waiters.
    fn sync(&mut self, conn: &Connection, path: &Path) {
        if self.waiting.is_empty() {
            return;
        }
        // Beside the file SQLite opened, which is not beside `path` when that is a link.
        let mut log = super::opened_file(conn, path).into_os_string();
        log.push("-wal");
        let failure = std::fs::File::open(&log)
            .and_then(|file| file.sync_data())
            .err()
            .map(|e| {
                format!(
                    "cannot sync {} to the disk ({e}): the last commits may be lost to a power cut",
                    Path::new(&log).display()
                )
            });
        self.answer(failure.as_deref());
    }

    /// Answers every waiter: the log is on the disk, or `failure` says why not.
    fn answer(&mut self, failure: Option<&str>) {
        self.since = None;
        for waiter in self.waiting.drain(..) {
            let answer = failure.map_or(Ok(()), |f| Err(BackendError::Unavailable(f.to_owned())));
            // A caller that stopped waiting is not told.
            let _ = waiter.send(answer);
        }
    }
}

/// The queue of a connection's thread. The thread ends, closing the connection, when the last
/// sender is dropped.
#[derive(Debug)]
pub(super) struct ConnectionThread {
    jobs: mpsc::Sender<Job>,
}

impl ConnectionThread {
    /// Moves `conn` (on the database at `path`) to a new thread named after `role`; a commit
    /// made without waiting for the disk waits `sync_within` for a later one that does.
    pub(super) fn start(
        mut conn: Connection,
        path: PathBuf,
        role: &str,
        sync_within: Duration,
    ) -> BackendResult<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(format!("codegen-sqlite-{role}"))
            .spawn(move || {
                let mut durability = Durability::new(sync_within);
                loop {
                    let next = match durability.patience() {
                        None => queue.recv().map_err(|_| RecvTimeoutError::Disconnected),
                        Some(left) => queue.recv_timeout(left),
                    };
                    match next {
                        Ok(job) => job(&mut conn, &path, &mut durability),
                        Err(RecvTimeoutError::Timeout) => durability.sync(&conn, &path),
                        Err(RecvTimeoutError::Disconnected) => {
                            durability.sync(&conn, &path);
                            break;
                        }
                    }
                    if durability.patience() == Some(Duration::ZERO) {
                        durability.sync(&conn, &path);
                    }
                }
            })
            .map_err(|e| {
                BackendError::Unavailable(format!("cannot start the database thread: {e}"))
            })?;
        Ok(Self { jobs })
    }

    /// Queues `f` to the thread without waiting for it (a call that panics is logged).
    pub(super) fn submit(&self, f: impl FnOnce(&mut Connection, &Path) + Send + 'static) {
        let job: Job = Box::new(move |conn, path, _| {
            if std::panic::catch_unwind(AssertUnwindSafe(|| f(conn, path))).is_err() {
                tracing::error!("a database call panicked");
            }
        });
        // A thread that has stopped runs nothing more: what it would do is done again after
        // the leases run out.
        let _ = self.jobs.send(job);
    }

    /// Runs `f` on the thread and returns what it returns. A call that panics fails with an
    /// error and leaves the thread serving the next ones.
    pub(super) async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection, &Path) -> BackendResult<T> + Send + 'static,
    ) -> BackendResult<T> {
        self.call_with(move |conn, path, _| f(conn, path)).await
    }

    /// [`ConnectionThread::call`], with the thread's [`Durability`].
    pub(super) async fn call_with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection, &Path, &mut Durability) -> BackendResult<T> + Send + 'static,
    ) -> BackendResult<T> {
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new(move |conn, path, durability| {
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| f(conn, path, durability)));
            // The caller may have stopped waiting; the call ran all the same.
            let _ = answer.send(result);
        });
        let stopped = || BackendError::Unavailable("the database thread has stopped".to_owned());
        self.jobs.send(job).map_err(|_| stopped())?;
        match answered.await {
            Ok(Ok(result)) => result,
            Ok(Err(panic)) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Err(BackendError::Unavailable(format!(
                    "a database call failed: {message}"
                )))
            }
            Err(_) => Err(stopped()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread() -> ConnectionThread {
        let conn = Connection::open_in_memory().unwrap();
        ConnectionThread::start(conn, PathBuf::from(":memory:"), "test", SYNC_WITHIN).unwrap()
    }

    #[tokio::test]
    async fn calls_run_in_order_on_one_thread() {
        let db = thread();
        db.call(|conn, _| {
            conn.execute_batch("CREATE TABLE t (n INTEGER)").unwrap();
            Ok(())
        })
        .await
        .unwrap();
        let calls = (0..200).map(|n| {
            db.call(move |conn, _| {
                conn.execute("INSERT INTO t VALUES (?1)", [n]).unwrap();
                Ok(std::thread::current().id())
            })
        });
        let threads = futures_util::future::join_all(calls).await;
        let first = threads[0].as_ref().unwrap();
        assert!(threads.iter().all(|t| t.as_ref().unwrap() == first));
        let rows: Vec<i64> = db
            .call(|conn, _| {
                let mut stmt = conn.prepare("SELECT n FROM t ORDER BY rowid").unwrap();
                Ok(stmt
                    .query_map([], |r| r.get(0))
                    .unwrap()
                    .map(Result::unwrap)
                    .collect())
            })
            .await
            .unwrap();
        assert_eq!(rows, (0..200).collect::<Vec<i64>>());
    }

    #[tokio::test]
    async fn a_call_that_panics_fails_alone() {
        let db = thread();
        let failed = db
            .call(|_, _| -> BackendResult<()> { panic!("boom") })
            .await
            .unwrap_err();
        assert!(failed.to_string().contains("boom"), "{failed}");
        let after = db.call(|conn, _| Ok(conn.is_autocommit())).await.unwrap();
        assert!(after);
    }

    /// A thread on a database whose log is nowhere, syncing after `within`, and a caller that
    /// waits for its sync.
    async fn waiting(within: Duration) -> (ConnectionThread, oneshot::Receiver<BackendResult<()>>) {
        let conn = Connection::open_in_memory().unwrap();
        let db =
            ConnectionThread::start(conn, PathBuf::from("/nowhere/x.db"), "test", within).unwrap();
        let durable = db
            .call_with(|_, _, durability| Ok(durability.wait()))
            .await
            .unwrap();
        (db, durable)
    }

    #[tokio::test]
    async fn a_waiter_is_answered_by_the_next_synced_commit() {
        let (db, durable) = waiting(Duration::from_secs(60)).await;
        tokio::pin!(durable);
        // Nothing synced yet, and the thread's own sync is a minute away.
        let early = tokio::time::timeout(Duration::from_millis(100), &mut durable).await;
        assert!(early.is_err(), "answered before any sync: {early:?}");
        db.call_with(|_, _, durability| {
            durability.synced();
            Ok(())
        })
        .await
        .unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(5), durable)
            .await
            .expect("the synced commit answers the waiter");
        answer.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_log_that_cannot_be_synced_fails_its_waiters_naming_the_file() {
        let (_db, durable) = waiting(Duration::from_millis(10)).await;
        let answer = tokio::time::timeout(Duration::from_secs(5), durable)
            .await
            .expect("the thread syncs the log itself when no commit comes");
        let err = answer.unwrap().unwrap_err().to_string();
        assert!(err.contains("/nowhere/x.db-wal"), "{err}");
        assert!(err.contains("power cut"), "{err}");
    }
}
