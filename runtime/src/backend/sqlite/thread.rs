//! A SQLite connection on a thread of its own.
//!
//! Calls are queued to the thread and run in order, each answered through a one-shot channel.
//! However many tasks call at once, one thread per connection waits on the database: running
//! each call on tokio's blocking pool instead, with the connection behind a mutex, grew the pool
//! to its 512 threads whenever hundreds of calls queued (a burst of starts), each thread parked
//! on the mutex with its stack.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use rusqlite::Connection;

use crate::backend::{BackendError, BackendResult};

/// A call to run with the connection.
type Job = Box<dyn FnOnce(&mut Connection, &Path) + Send>;

/// The queue of a connection's thread. The thread ends, closing the connection, when the last
/// sender is dropped.
#[derive(Debug)]
pub(super) struct ConnectionThread {
    jobs: mpsc::Sender<Job>,
}

impl ConnectionThread {
    /// Moves `conn` (on the database at `path`) to a new thread named after `role`.
    pub(super) fn start(mut conn: Connection, path: PathBuf, role: &str) -> BackendResult<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(format!("codegen-sqlite-{role}"))
            .spawn(move || {
                for job in queue {
                    job(&mut conn, &path);
                }
            })
            .map_err(|e| {
                BackendError::Unavailable(format!("cannot start the database thread: {e}"))
            })?;
        Ok(Self { jobs })
    }

    /// Queues `f` to the thread without waiting for it (a call that panics is logged).
    pub(super) fn submit(&self, f: impl FnOnce(&mut Connection, &Path) + Send + 'static) {
        let job: Job = Box::new(move |conn, path| {
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
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |conn, path| {
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| f(conn, path)));
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
        ConnectionThread::start(conn, PathBuf::from(":memory:"), "test").unwrap()
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
}
