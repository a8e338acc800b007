//! [`Inspect`] on the embedded backend, and the recording of task attempts it reads.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::types::Value as Sql;
use rusqlite::{OptionalExtension, params, params_from_iter};

use super::{
    AttemptOutcome, Cursor, DeadFilter, Inspect, InstanceFilter, QueueDepth, ServiceStats,
    TaskAttempt, prefix_range,
};
use crate::backend::sqlite::{SqliteBackend, corrupt, error, now_ms, parse_topic, read_instance};
use crate::backend::{BackendResult, DeadLetter, InstanceInfo, Settlement, Status, Topic};

/// How long the per-minute figures of services are kept.
const STATS_KEPT_MINUTES: i64 = 24 * 60;

/// Records the attempts of settled tasks: those of tasks that failed once as rows (see
/// [`TaskAttempt::is_kept`]), and all of them in the per-minute figures of their service. Runs
/// in the transaction of the settlement.
pub(crate) fn record_attempts(
    tx: &rusqlite::Transaction<'_>,
    path: &Path,
    settlements: &[Settlement],
    now: i64,
) -> BackendResult<()> {
    let minute = now / 60_000;
    let mut counts: BTreeMap<&str, [i64; 3]> = BTreeMap::new();
    for attempt in settlements.iter().filter_map(|s| s.attempt.as_ref()) {
        let slot = match attempt.outcome {
            AttemptOutcome::Ok => 0,
            AttemptOutcome::Retry => 1,
            AttemptOutcome::Dead => 2,
        };
        counts.entry(&attempt.service).or_default()[slot] += 1;
        if !attempt.is_kept() {
            continue;
        }
        let mut insert = tx
            .prepare_cached(
                "INSERT OR REPLACE INTO task_attempts (instance_id, seq, redrive, attempt, service, task, started_at, ended_at, outcome, error, retry_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )
            .map_err(|e| error(path, e))?;
        insert
            .execute(params![
                attempt.instance_id,
                attempt.seq,
                attempt.redrive,
                attempt.attempt,
                attempt.service,
                attempt.task,
                attempt.started_at,
                attempt.ended_at,
                attempt.outcome.as_str(),
                attempt.error,
                attempt.retry_at,
            ])
            .map_err(|e| error(path, e))?;
    }
    for (service, [ok, retried, dead]) in counts {
        let mut upsert = tx
            .prepare_cached(
                "INSERT INTO task_stats (service, minute, ok, retried, dead) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (service, minute) DO UPDATE SET
                     ok = ok + excluded.ok, retried = retried + excluded.retried, dead = dead + excluded.dead",
            )
            .map_err(|e| error(path, e))?;
        upsert
            .execute(params![service, minute, ok, retried, dead])
            .map_err(|e| error(path, e))?;
        let mut prune = tx
            .prepare_cached("DELETE FROM task_stats WHERE service = ?1 AND minute < ?2")
            .map_err(|e| error(path, e))?;
        prune
            .execute(params![service, minute - STATS_KEPT_MINUTES])
            .map_err(|e| error(path, e))?;
    }
    Ok(())
}

impl SqliteBackend {
    /// The messages waiting in `topic`.
    pub(crate) async fn queue_depth(&self, topic: &Topic) -> BackendResult<QueueDepth> {
        let name = topic.name();
        self.with_reader(move |conn, path| {
            let now = now_ms();
            conn.prepare_cached(
                "SELECT COALESCE(SUM(deliver_at <= ?2 AND leased_until <= ?2), 0),
                        COALESCE(SUM(deliver_at > ?2), 0),
                        MIN(CASE WHEN deliver_at <= ?2 AND leased_until <= ?2 THEN deliver_at END)
                 FROM messages WHERE topic = ?1",
            )
            .map_err(|e| error(path, e))?
            .query_row(params![name, now], |r| {
                Ok(QueueDepth {
                    ready: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                    delayed: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                    oldest_ready_at: r.get(2)?,
                })
            })
            .map_err(|e| error(path, e))
        })
        .await
    }
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn read_attempt(
    row: &rusqlite::Row<'_>,
    path: &Path,
) -> rusqlite::Result<BackendResult<TaskAttempt>> {
    let outcome: String = row.get("outcome")?;
    let Some(outcome) = AttemptOutcome::parse(&outcome) else {
        return Ok(Err(corrupt(path, "a task attempt's outcome", outcome)));
    };
    Ok(Ok(TaskAttempt {
        instance_id: row.get("instance_id")?,
        seq: row.get("seq")?,
        attempt: row.get("attempt")?,
        redrive: row.get("redrive")?,
        service: row.get("service")?,
        task: row.get("task")?,
        started_at: row.get("started_at")?,
        ended_at: row.get("ended_at")?,
        outcome,
        error: row.get("error")?,
        retry_at: row.get("retry_at")?,
    }))
}

fn read_dead(row: &rusqlite::Row<'_>) -> rusqlite::Result<DeadLetter> {
    Ok(DeadLetter {
        id: row.get("id")?,
        topic: parse_topic(&row.get::<_, String>("topic")?),
        key: row.get("key")?,
        body: row.get("body")?,
        reason: row.get("reason")?,
        died_at: row.get("died_at")?,
    })
}

#[async_trait::async_trait]
impl Inspect for SqliteBackend {
    async fn instances(
        &self,
        filter: &InstanceFilter,
        after: Option<&Cursor>,
        limit: usize,
    ) -> BackendResult<Vec<InstanceInfo>> {
        let mut sql = String::from("SELECT * FROM instances WHERE 1 = 1");
        let mut args: Vec<Sql> = Vec::new();
        let mut arg = |sql: &mut String, clause: &str, value: Sql| {
            args.push(value);
            sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
        };
        if let Some(name) = &filter.name {
            arg(&mut sql, " AND name = ?", Sql::Text(name.clone()));
        }
        if let Some(status) = filter.status {
            arg(
                &mut sql,
                " AND status = ?",
                Sql::Text(status.as_str().to_owned()),
            );
        }
        if let Some(prefix) = &filter.id_prefix {
            let (from, to) = prefix_range(prefix);
            arg(&mut sql, " AND id >= ?", Sql::Text(from));
            if let Some(to) = to {
                arg(&mut sql, " AND id < ?", Sql::Text(to));
            }
        }
        if let Some(from) = filter.started_from {
            arg(&mut sql, " AND created_at >= ?", Sql::Integer(from));
        }
        if let Some(before) = filter.started_before {
            arg(&mut sql, " AND created_at < ?", Sql::Integer(before));
        }
        if let Some(cursor) = after {
            arg(
                &mut sql,
                " AND (created_at < ?",
                Sql::Integer(cursor.created_at),
            );
            arg(
                &mut sql,
                " OR (created_at = ?",
                Sql::Integer(cursor.created_at),
            );
            arg(&mut sql, " AND id < ?))", Sql::Text(cursor.id.clone()));
        }
        arg(
            &mut sql,
            " ORDER BY created_at DESC, id DESC LIMIT ?",
            Sql::Integer(to_i64(limit)),
        );
        self.with_reader(move |conn, path| {
            let mut stmt = conn.prepare_cached(&sql).map_err(|e| error(path, e))?;
            let rows = stmt
                .query_map(params_from_iter(args), |row| read_instance(row, path))
                .map_err(|e| error(path, e))?;
            rows.map(|r| r.map_err(|e| error(path, e)).and_then(|r| r))
                .collect()
        })
        .await
    }

    async fn status_counts(
        &self,
        name: Option<&str>,
        cap: u64,
    ) -> BackendResult<Vec<(Status, u64)>> {
        let name = name.map(str::to_owned);
        let cap = i64::try_from(cap).unwrap_or(i64::MAX);
        self.with_reader(move |conn, path| {
            let sql = match name {
                Some(_) => "SELECT COUNT(*) FROM (SELECT 1 FROM instances WHERE status = ?1 AND name = ?3 LIMIT ?2)",
                None => "SELECT COUNT(*) FROM (SELECT 1 FROM instances WHERE status = ?1 LIMIT ?2)",
            };
            let mut stmt = conn.prepare_cached(sql).map_err(|e| error(path, e))?;
            let mut out = Vec::new();
            for status in Status::ALL {
                let count: i64 = match &name {
                    Some(name) => stmt.query_row(params![status.as_str(), cap, name], |r| r.get(0)),
                    None => stmt.query_row(params![status.as_str(), cap], |r| r.get(0)),
                }
                .map_err(|e| error(path, e))?;
                out.push((status, u64::try_from(count).unwrap_or(0)));
            }
            Ok(out)
        })
        .await
    }

    async fn children(&self, id: &str) -> BackendResult<Vec<InstanceInfo>> {
        let id = id.to_owned();
        self.with_reader(move |conn, path| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT * FROM instances WHERE parent_id = ?1 ORDER BY created_at, id",
                )
                .map_err(|e| error(path, e))?;
            let rows = stmt
                .query_map([id], |row| read_instance(row, path))
                .map_err(|e| error(path, e))?;
            rows.map(|r| r.map_err(|e| error(path, e)).and_then(|r| r))
                .collect()
        })
        .await
    }

    async fn attempts(&self, id: &str) -> BackendResult<Vec<TaskAttempt>> {
        let id = id.to_owned();
        self.with_reader(move |conn, path| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT * FROM task_attempts WHERE instance_id = ?1 ORDER BY seq, redrive, attempt",
                )
                .map_err(|e| error(path, e))?;
            let rows = stmt
                .query_map([id], |row| read_attempt(row, path))
                .map_err(|e| error(path, e))?;
            rows.map(|r| r.map_err(|e| error(path, e)).and_then(|r| r))
                .collect()
        })
        .await
    }

    async fn services(&self, since: i64) -> BackendResult<Vec<ServiceStats>> {
        self.with_reader(move |conn, path| {
            let now = now_ms();
            let mut by_service: BTreeMap<String, ServiceStats> = BTreeMap::new();
            let mut stmt = conn
                .prepare_cached(
                    "SELECT service, SUM(ok), SUM(retried), SUM(dead) FROM task_stats WHERE minute >= ?1 GROUP BY service",
                )
                .map_err(|e| error(path, e))?;
            let figures = stmt
                .query_map([since / 60_000], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?))
                })
                .map_err(|e| error(path, e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| error(path, e))?;
            let mut stmt = conn
                .prepare_cached(
                    "SELECT topic,
                            SUM(deliver_at <= ?1 AND leased_until <= ?1),
                            SUM(deliver_at > ?1),
                            MIN(CASE WHEN deliver_at <= ?1 AND leased_until <= ?1 THEN deliver_at END)
                     FROM messages WHERE topic >= 'tasks/' AND topic < 'tasks0' GROUP BY topic",
                )
                .map_err(|e| error(path, e))?;
            let queues = stmt
                .query_map([now], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?, r.get::<_, Option<i64>>(3)?))
                })
                .map_err(|e| error(path, e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| error(path, e))?;
            let mut stmt = conn
                .prepare_cached(
                    "SELECT topic, COUNT(*) FROM dead_letters WHERE topic >= 'tasks/' AND topic < 'tasks0' GROUP BY topic",
                )
                .map_err(|e| error(path, e))?;
            let dead = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .map_err(|e| error(path, e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| error(path, e))?;
            let new = |service: &str| ServiceStats {
                service: service.to_owned(),
                ready: Some(0),
                delayed: Some(0),
                ..ServiceStats::default()
            };
            let count = |n: i64| u64::try_from(n).unwrap_or(0);
            for (service, ok, retried, died) in figures {
                let s = by_service.entry(service.clone()).or_insert_with(|| new(&service));
                s.ok = count(ok);
                s.retried = count(retried);
                s.dead = count(died);
            }
            for (topic, ready, delayed, oldest) in queues {
                let service = topic.trim_start_matches("tasks/").to_owned();
                let s = by_service.entry(service.clone()).or_insert_with(|| new(&service));
                s.ready = Some(count(ready));
                s.delayed = Some(count(delayed));
                s.oldest_ready_at = oldest;
            }
            for (topic, n) in dead {
                let service = topic.trim_start_matches("tasks/").to_owned();
                let s = by_service.entry(service.clone()).or_insert_with(|| new(&service));
                s.dead_letters = count(n);
            }
            Ok(by_service.into_values().collect())
        })
        .await
    }

    async fn dead(&self, filter: &DeadFilter, limit: usize) -> BackendResult<Vec<DeadLetter>> {
        let filter = filter.clone();
        self.with_reader(move |conn, path| {
            let mut sql = String::from("SELECT * FROM dead_letters WHERE 1 = 1");
            let mut args: Vec<Sql> = Vec::new();
            if let Some(service) = filter.service {
                args.push(Sql::Text(format!("tasks/{service}")));
                sql.push_str(&format!(" AND topic = ?{}", args.len()));
            }
            if let Some(instance) = filter.instance {
                args.push(Sql::Text(instance));
                sql.push_str(&format!(" AND key = ?{}", args.len()));
            }
            if let Some(since) = filter.since {
                args.push(Sql::Integer(since));
                sql.push_str(&format!(" AND died_at >= ?{}", args.len()));
            }
            args.push(Sql::Integer(to_i64(limit)));
            sql.push_str(&format!(
                " ORDER BY died_at DESC, id DESC LIMIT ?{}",
                args.len()
            ));
            let mut stmt = conn.prepare_cached(&sql).map_err(|e| error(path, e))?;
            let rows = stmt
                .query_map(params_from_iter(args), read_dead)
                .map_err(|e| error(path, e))?;
            rows.collect::<Result<_, _>>().map_err(|e| error(path, e))
        })
        .await
    }

    async fn dead_letter(&self, id: &str) -> BackendResult<Option<DeadLetter>> {
        let id = id.to_owned();
        self.with_reader(move |conn, path| {
            conn.prepare_cached("SELECT * FROM dead_letters WHERE id = ?1")
                .map_err(|e| error(path, e))?
                .query_row([id], read_dead)
                .optional()
                .map_err(|e| error(path, e))
        })
        .await
    }
}
