//! The embedded backend's [`StateStore`]: instances, histories, query answers.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::messages::{Stored, delete_receipts, insert_messages, store_settlements, topics};
use super::{SqliteBackend, corrupt, delete_instances, error, read_instance, unsynced};
use crate::backend::local::Local;
use crate::backend::{
    BackendError, BackendResult, Commit, InstanceInfo, Settlement, StateStore, Status, Topic,
    stored_answers,
};
use crate::time::now_ms;
use crate::workflow::HistoryEvent;

#[async_trait::async_trait]
impl StateStore for SqliteBackend {
    async fn commit(&self, commits: Vec<Commit>) -> BackendResult<()> {
        let topics = topics(commits.iter().flat_map(|c| &c.messages));
        let local = self.inner.local.clone();
        // The deferred results the commits take: their settlements (the task message deleted,
        // the attempt counted) are applied in the same transaction, and put back if it fails.
        let deferred = local.settlements_of(commits.iter().flat_map(|c| &c.acks));
        let applied = Local::to_apply(&deferred);
        let announcer = self.announcer();
        let held_for = local.clone();
        // A batch of starts that a workflow worker of this process takes as they are stored
        // (see `backend/local.rs`) is committed without waiting for the disk, and the caller
        // waits until the worker's first commit, which does, has put it on the disk too (see
        // `Durability`): a start and the first step of its workflow then wait for the disk
        // once, not twice. Nothing outside the process acts on a start before that commit.
        let defer_sync = !commits.is_empty()
            && commits.iter().all(|c| c.create)
            && local.lease_for(&Topic::Workflows.name(), 0).is_some();
        let committed = self
            .inner
            .conn
            .call_with(move |conn, path, durability| {
                let write =
                    |conn: &mut Connection| write(conn, path, &commits, &applied, &held_for);
                let stored = if defer_sync {
                    unsynced(conn, path, write)?
                } else {
                    let stored = write(conn)?;
                    durability.synced();
                    stored
                };
                if let Some(wake) = announcer {
                    wake.announce(&stored.announced(), true);
                }
                Ok((stored, defer_sync.then(|| durability.wait())))
            })
            .await;
        match committed {
            Ok((stored, durable)) => {
                self.stored(stored, &topics);
                self.inner.waiters.changed.notify_waiters();
                match durable {
                    Some(durable) => durable.await.unwrap_or_else(|_| {
                        Err(BackendError::Unavailable(
                            "the database thread has stopped".to_owned(),
                        ))
                    }),
                    None => Ok(()),
                }
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
                .prepare_cached("SELECT * FROM instances WHERE id = ?1")
                .and_then(|mut stmt| {
                    stmt.query_row([&id], |row| read_instance(row, path))
                        .optional()
                })
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

/// Writes `commits` in one transaction, with the deferred settlements `applied`, and says what
/// it stored.
fn write(
    conn: &mut Connection,
    path: &Path,
    commits: &[Commit],
    applied: &[Settlement],
    held_for: &Local,
) -> BackendResult<Stored> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(|e| error(path, e))?;
    let mut stored = Stored::default();
    let now = now_ms();
    for c in commits {
        let i = &c.instance;
        let current: Option<(i64, String)> = tx
            .prepare_cached("SELECT events, status FROM instances WHERE id = ?1")
            .map_err(|e| error(path, e))?
            .query_row([&i.id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(|e| error(path, e))?;
        // Most commits leave the status as it is: the update then sets only the columns
        // that change, since SQLite rewrites the entries of every index on a column an
        // update sets (two indexes on the status: two pages more in each commit).
        let same_status = current
            .as_ref()
            .is_some_and(|(_, status)| status == i.status.as_str());
        match (c.create, current.map(|(events, _)| events)) {
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
            tx.execute(
                "DELETE FROM history WHERE instance_id = ?1 AND idx >= ?2",
                params![i.id, idx],
            )
            .map_err(|e| error(path, e))?;
            // A new run (continued as new) has a new input.
            if keep == 0 {
                tx.execute(
                    "UPDATE instances SET input = ?2 WHERE id = ?1",
                    params![i.id, i.input.to_string()],
                )
                .map_err(|e| error(path, e))?;
            }
        }
        let mut insert = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO history (instance_id, idx, event_id, at, event) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(|e| error(path, e))?;
        for (event_id, event) in &c.events {
            let json = serde_json::to_string(&event.event)
                .map_err(|e| BackendError::Invalid(e.to_string()))?;
            let inserted = insert
                .execute(params![i.id, idx, event_id, event.at, json])
                .map_err(|e| error(path, e))?;
            idx += i64::try_from(inserted).unwrap_or(0);
        }
        drop(insert);
        tx.prepare_cached(if same_status {
            "UPDATE instances SET output = ?3, error = ?4, events = ?5, updated_at = ?6, version = ?7
             WHERE id = ?1 AND status = ?2"
        } else {
            "UPDATE instances SET status = ?2, output = ?3, error = ?4, events = ?5, updated_at = ?6, version = ?7
             WHERE id = ?1"
        })
        .map_err(|e| error(path, e))?
        .execute(params![i.id, i.status.as_str(), i.output.as_ref().map(|o| o.to_string()), i.error, idx, now, i.version])
        .map_err(|e| error(path, e))?;
        match stored_answers(c.queries.as_ref())? {
            None => {}
            Some(None) => {
                tx.prepare_cached("DELETE FROM query_answers WHERE instance_id = ?1")
                    .and_then(|mut stmt| stmt.execute([&i.id]))
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
        insert_messages(&tx, path, &c.messages, held_for, &mut stored)?;
        delete_receipts(&tx, path, &c.acks)?;
    }
    store_settlements(&tx, path, applied, held_for, &mut stored)?;
    tx.commit().map_err(|e| error(path, e))?;
    Ok(stored)
}
