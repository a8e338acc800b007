//! [`Inspect`] on the embedded backend, and the recording of task attempts it reads.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::types::Value as Sql;
use rusqlite::{OptionalExtension, params, params_from_iter};

use super::{
    AttemptOutcome, Cursor, DeadFilter, Inspect, InstanceFilter, QueueDepth, ServiceStats,
    TaskAttempt, prefix_range,
};
use crate::backend::sqlite::{SqliteBackend, corrupt, error, read_instance};
use crate::backend::{BackendResult, DeadLetter, InstanceInfo, Settlement, Status, Topic};
use crate::time::now_ms;

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

/// The instances of a status, up to a cap: read from an index alone.
const COUNT: &str = "SELECT COUNT(*) FROM (SELECT 1 FROM instances WHERE status = ?1 LIMIT ?2)";
/// The same among the instances of one workflow.
const COUNT_OF_WORKFLOW: &str =
    "SELECT COUNT(*) FROM (SELECT 1 FROM instances WHERE status = ?1 AND name = ?3 LIMIT ?2)";

/// Up to how many ids with a prefix a page is read from the ids and sorted by time; with more,
/// it is read from an index in time order, skipping the other ids.
const PREFIX_SORTED_MAX: i64 = 2_000;

/// Whether fewer than [`PREFIX_SORTED_MAX`] ids start with `prefix` (counted on the primary key
/// up to that many, without reading rows).
fn few_ids_start_with(
    conn: &rusqlite::Connection,
    path: &Path,
    prefix: &str,
) -> BackendResult<bool> {
    let (from, to) = prefix_range(prefix);
    let count: i64 = match to {
        Some(to) => conn
            .prepare_cached(
                "SELECT COUNT(*) FROM (SELECT 1 FROM instances WHERE id >= ?1 AND id < ?2 LIMIT ?3)",
            )
            .map_err(|e| error(path, e))?
            .query_row(params![from, to, PREFIX_SORTED_MAX], |r| r.get(0)),
        None => conn
            .prepare_cached("SELECT COUNT(*) FROM (SELECT 1 FROM instances WHERE id >= ?1 LIMIT ?2)")
            .map_err(|e| error(path, e))?
            .query_row(params![from, PREFIX_SORTED_MAX], |r| r.get(0)),
    }
    .map_err(|e| error(path, e))?;
    Ok(count < PREFIX_SORTED_MAX)
}

/// The query of a page of instances. Each filter has an index that also gives the order
/// (`instances_by_*_created`), so a page reads its rows and no more; an id prefix is the one
/// filter whose rows come in another order, and `by_id` says whether its range of the primary
/// key is small enough to read whole and sort (else the `+` keeps the planner off that index).
fn instances_sql(
    filter: &InstanceFilter,
    after: Option<&Cursor>,
    limit: usize,
    by_id: bool,
) -> (String, Vec<Sql>) {
    let mut sql = String::from("SELECT * FROM instances WHERE 1 = 1");
    let mut args: Vec<Sql> = Vec::new();
    // With few ids to read, the primary key drives, sorted after: `+` keeps the planner off
    // the other indexes, whose walk could be long.
    let by_id = by_id && filter.id_prefix.is_some();
    let col = |name: &str| {
        if by_id {
            format!("+{name}")
        } else {
            name.to_owned()
        }
    };
    let mut arg = |sql: &mut String, clause: &str, value: Sql| {
        args.push(value);
        sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
    };
    if let Some(name) = &filter.name {
        arg(
            &mut sql,
            &format!(" AND {} = ?", col("name")),
            Sql::Text(name.clone()),
        );
    }
    if let Some(status) = filter.status {
        arg(
            &mut sql,
            &format!(" AND {} = ?", col("status")),
            Sql::Text(status.as_str().to_owned()),
        );
    }
    if let Some(prefix) = &filter.id_prefix {
        let (from, to) = prefix_range(prefix);
        let id = if by_id { "id" } else { "+id" };
        arg(&mut sql, &format!(" AND {id} >= ?"), Sql::Text(from));
        if let Some(to) = to {
            arg(&mut sql, &format!(" AND {id} < ?"), Sql::Text(to));
        }
    }
    if let Some(from) = filter.started_from {
        arg(
            &mut sql,
            &format!(" AND {} >= ?", col("created_at")),
            Sql::Integer(from),
        );
    }
    if let Some(before) = filter.started_before {
        arg(
            &mut sql,
            &format!(" AND {} < ?", col("created_at")),
            Sql::Integer(before),
        );
    }
    if let Some(cursor) = after {
        // A row value, which SQLite seeks to in the `(…, created_at, id)` indexes (an `OR` of
        // the two comparisons made it walk the index from the newest entry down to the cursor).
        arg(
            &mut sql,
            &format!(" AND ({}, id) < (?", col("created_at")),
            Sql::Integer(cursor.created_at),
        );
        arg(&mut sql, ", ?)", Sql::Text(cursor.id.clone()));
    }
    arg(
        &mut sql,
        " ORDER BY created_at DESC, id DESC LIMIT ?",
        Sql::Integer(to_i64(limit)),
    );
    (sql, args)
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
        topic: Topic::from_name(&row.get::<_, String>("topic")?),
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
        let filter = filter.clone();
        let after = after.cloned();
        self.with_reader(move |conn, path| {
            let by_id = match &filter.id_prefix {
                Some(prefix) => few_ids_start_with(conn, path, prefix)?,
                None => false,
            };
            let (sql, args) = instances_sql(&filter, after.as_ref(), limit, by_id);
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
                Some(_) => COUNT_OF_WORKFLOW,
                None => COUNT,
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

    async fn queue(&self, topic: &Topic) -> BackendResult<Option<QueueDepth>> {
        self.queue_depth(topic).await.map(Some)
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

    async fn queries(&self, id: &str) -> BackendResult<Option<crate::backend::QueryAnswers>> {
        let id = id.to_owned();
        self.with_reader(move |conn, path| {
            let row: Option<(i64, i64, String)> = conn
                .prepare_cached(
                    "SELECT events, at, answers FROM query_answers WHERE instance_id = ?1",
                )
                .map_err(|e| error(path, e))?
                .query_row([&id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()
                .map_err(|e| error(path, e))?;
            row.map(|(events, at, answers)| {
                crate::backend::QueryAnswers::read(&id, events, at, &answers)
            })
            .transpose()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan SQLite chooses for a page, one line per step.
    fn plan(conn: &rusqlite::Connection, sql: &str, args: Vec<Sql>) -> Vec<String> {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        stmt.query_map(params_from_iter(args), |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn every_page_of_instances_is_read_from_an_index_in_its_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        drop(SqliteBackend::open(&path).unwrap());
        let conn = rusqlite::Connection::open(&path).unwrap();
        let cursor = Cursor {
            created_at: 1_700_000_000_000,
            id: "bill-u1-2025-06".into(),
        };
        let name = || Some("bill".to_owned());
        let status = || Some(Status::Failed);
        let prefix = || Some("bill-u12".to_owned());
        let filters = [
            InstanceFilter::default(),
            InstanceFilter {
                name: name(),
                ..Default::default()
            },
            InstanceFilter {
                status: status(),
                ..Default::default()
            },
            InstanceFilter {
                name: name(),
                status: status(),
                ..Default::default()
            },
            InstanceFilter {
                started_from: Some(1),
                started_before: Some(2),
                ..Default::default()
            },
            InstanceFilter {
                status: status(),
                started_from: Some(1),
                ..Default::default()
            },
            InstanceFilter {
                id_prefix: prefix(),
                ..Default::default()
            },
            InstanceFilter {
                id_prefix: prefix(),
                status: status(),
                ..Default::default()
            },
        ];
        for filter in &filters {
            for after in [None, Some(&cursor)] {
                for by_id in [false, true] {
                    let (sql, args) = instances_sql(filter, after, 50, by_id);
                    let plan = plan(&conn, &sql, args);
                    let sorted = by_id && filter.id_prefix.is_some();
                    let expected = if sorted {
                        "USING INDEX sqlite_autoindex_instances_1 (id>? AND id<?)"
                    } else {
                        "USING INDEX instances_by_"
                    };
                    // After a cursor the index is entered at the cursor (or at the end of
                    // the time range asked for).
                    let seeks = after.is_none()
                        || sorted
                        || filter.started_before.is_some()
                        || plan[0].contains("(created_at,id)<(?,?)");
                    assert!(
                        plan.len() == 1 + usize::from(sorted)
                            && plan[0].contains(expected)
                            && seeks,
                        "{filter:?} after {after:?} (by id: {by_id}): {plan:?}"
                    );
                }
            }
        }
        for sql in [COUNT, COUNT_OF_WORKFLOW] {
            let args = [
                Sql::Text("failed".into()),
                Sql::Integer(10),
                Sql::Text("bill".into()),
            ];
            let args = args[..if sql.contains("?3") { 3 } else { 2 }].to_vec();
            let plan = plan(&conn, sql, args);
            assert!(
                plan.iter()
                    .any(|step| step.contains("USING COVERING INDEX instances_by_")),
                "{sql}: {plan:?}"
            );
        }
    }
}
