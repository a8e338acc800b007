//! [`Inspect`] on the distributed backend (PostgreSQL), and the recording of task attempts.

use std::collections::BTreeMap;

use tokio_postgres::types::ToSql;

use super::{
    AttemptOutcome, Cursor, DeadFilter, Inspect, InstanceFilter, ServiceStats, TaskAttempt,
    prefix_range,
};
use crate::backend::distributed::{
    DistributedBackend, Transport, corrupt, execute, pg_error, read_instance,
};
use crate::backend::{BackendResult, DeadLetter, InstanceInfo, Settlement, Status, Topic};

/// How long the per-minute figures of services are kept.
const STATS_KEPT_MINUTES: i64 = 24 * 60;

type Param = Box<dyn ToSql + Sync + Send>;

/// Records the attempts of settled tasks, in the transaction of the settlement: those of tasks
/// that failed once as rows (see [`TaskAttempt::is_kept`]), and all of them in this process's
/// per-minute figures of their service.
pub(crate) async fn record_attempts(
    tx: &deadpool_postgres::Transaction<'_>,
    worker: &str,
    settlements: &[Settlement],
    now: i64,
) -> BackendResult<()> {
    let minute = now / 60_000;
    let mut counts: BTreeMap<&str, [i64; 3]> = BTreeMap::new();
    let mut kept = Vec::new();
    for attempt in settlements.iter().filter_map(|s| s.attempt.as_ref()) {
        let slot = match attempt.outcome {
            AttemptOutcome::Ok => 0,
            AttemptOutcome::Retry => 1,
            AttemptOutcome::Dead => 2,
        };
        counts.entry(&attempt.service).or_default()[slot] += 1;
        if attempt.is_kept() {
            kept.push(attempt);
        }
    }
    if !kept.is_empty() {
        let column = |f: fn(&TaskAttempt) -> Option<i64>| -> Vec<Option<i64>> {
            kept.iter().map(|a| f(a)).collect()
        };
        let text = |f: fn(&TaskAttempt) -> Option<String>| -> Vec<Option<String>> {
            kept.iter().map(|a| f(a)).collect()
        };
        execute(
            tx,
            "recording task attempts",
            "INSERT INTO codegen_task_attempts
                 (instance_id, seq, redrive, attempt, service, task, started_at, ended_at, outcome, error, retry_at)
             SELECT * FROM UNNEST($1::TEXT[], $2::INTEGER[], $3::INTEGER[], $4::INTEGER[], $5::TEXT[], $6::TEXT[],
                                  $7::BIGINT[], $8::BIGINT[], $9::TEXT[], $10::TEXT[], $11::BIGINT[])
             ON CONFLICT (instance_id, seq, redrive, attempt) DO NOTHING",
            &[
                &text(|a| Some(a.instance_id.clone())),
                &kept.iter().map(|a| i32::try_from(a.seq).unwrap_or(i32::MAX)).collect::<Vec<_>>(),
                &kept.iter().map(|a| i32::try_from(a.redrive).unwrap_or(i32::MAX)).collect::<Vec<_>>(),
                &kept.iter().map(|a| i32::try_from(a.attempt).unwrap_or(i32::MAX)).collect::<Vec<_>>(),
                &text(|a| Some(a.service.clone())),
                &text(|a| Some(a.task.clone())),
                &column(|a| Some(a.started_at)),
                &column(|a| Some(a.ended_at)),
                &text(|a| Some(a.outcome.as_str().to_owned())),
                &text(|a| a.error.clone()),
                &column(|a| a.retry_at),
            ],
        )
        .await?;
    }
    for (service, [ok, retried, dead]) in counts {
        let oldest = minute - STATS_KEPT_MINUTES;
        // Pipelined: one round trip for both.
        futures_util::future::try_join(
            execute(
            tx,
            "recording task figures",
            "INSERT INTO codegen_task_stats (service, minute, worker, ok, retried, dead) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (service, minute, worker) DO UPDATE SET
                 ok = codegen_task_stats.ok + EXCLUDED.ok,
                 retried = codegen_task_stats.retried + EXCLUDED.retried,
                 dead = codegen_task_stats.dead + EXCLUDED.dead",
            &[&service, &minute, &worker, &ok, &retried, &dead],
            ),
            execute(
                tx,
                "pruning task figures",
                "DELETE FROM codegen_task_stats WHERE service = $1 AND minute < $2 AND worker = $3",
                &[&service, &oldest, &worker],
            ),
        )
        .await?;
    }
    Ok(())
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn refs(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

fn read_attempt(row: &tokio_postgres::Row) -> BackendResult<TaskAttempt> {
    let get = |e: tokio_postgres::Error| corrupt("a task attempt row", e);
    let number = |column: &str| -> BackendResult<u32> {
        let n: i32 = row.try_get(column).map_err(get)?;
        u32::try_from(n).map_err(|e| corrupt("a task attempt number", e))
    };
    let outcome: String = row.try_get("outcome").map_err(get)?;
    Ok(TaskAttempt {
        instance_id: row.try_get("instance_id").map_err(get)?,
        seq: number("seq")?,
        attempt: number("attempt")?,
        redrive: number("redrive")?,
        service: row.try_get("service").map_err(get)?,
        task: row.try_get("task").map_err(get)?,
        started_at: row.try_get("started_at").map_err(get)?,
        ended_at: row.try_get("ended_at").map_err(get)?,
        outcome: AttemptOutcome::parse(&outcome)
            .ok_or_else(|| corrupt("a task attempt's outcome", &outcome))?,
        error: row.try_get("error").map_err(get)?,
        retry_at: row.try_get("retry_at").map_err(get)?,
    })
}

fn read_dead(row: &tokio_postgres::Row) -> BackendResult<DeadLetter> {
    let get = |e: tokio_postgres::Error| corrupt("a dead letter row", e);
    Ok(DeadLetter {
        id: row.try_get("id").map_err(get)?,
        topic: Topic::from_name(&row.try_get::<_, String>("topic").map_err(get)?),
        key: row.try_get("key").map_err(get)?,
        body: row.try_get("body").map_err(get)?,
        reason: row.try_get("reason").map_err(get)?,
        died_at: row.try_get("died_at").map_err(get)?,
    })
}

#[async_trait::async_trait]
impl<T: Transport> Inspect for DistributedBackend<T> {
    async fn instances(
        &self,
        filter: &InstanceFilter,
        after: Option<&Cursor>,
        limit: usize,
    ) -> BackendResult<Vec<InstanceInfo>> {
        let mut sql = String::from("SELECT * FROM codegen_instances WHERE TRUE");
        let mut args: Vec<Param> = Vec::new();
        let mut arg = |sql: &mut String, clause: &str, value: Param| {
            args.push(value);
            sql.push_str(&clause.replace('?', &format!("${}", args.len())));
        };
        if let Some(name) = &filter.name {
            arg(&mut sql, " AND name = ?", Box::new(name.clone()));
        }
        if let Some(status) = filter.status {
            arg(&mut sql, " AND status = ?", Box::new(status.as_str()));
        }
        if let Some(prefix) = &filter.id_prefix {
            // Byte order, as the ranges are computed; an index in that collation serves it.
            let (from, to) = prefix_range(prefix);
            arg(&mut sql, " AND id COLLATE \"C\" >= ?", Box::new(from));
            if let Some(to) = to {
                arg(&mut sql, " AND id COLLATE \"C\" < ?", Box::new(to));
            }
        }
        if let Some(from) = filter.started_from {
            arg(&mut sql, " AND created_at >= ?", Box::new(from));
        }
        if let Some(before) = filter.started_before {
            arg(&mut sql, " AND created_at < ?", Box::new(before));
        }
        if let Some(cursor) = after {
            arg(
                &mut sql,
                " AND (created_at, id) < (?",
                Box::new(cursor.created_at),
            );
            arg(&mut sql, ", ?)", Box::new(cursor.id.clone()));
        }
        arg(
            &mut sql,
            " ORDER BY created_at DESC, id DESC LIMIT ?",
            Box::new(to_i64(limit)),
        );
        let client = self.inner.client().await?;
        let rows = client
            .query(&sql, &refs(&args))
            .await
            .map_err(|e| pg_error("listing instances", &e))?;
        rows.iter().map(read_instance).collect()
    }

    async fn status_counts(
        &self,
        name: Option<&str>,
        cap: u64,
    ) -> BackendResult<Vec<(Status, u64)>> {
        let cap = i64::try_from(cap).unwrap_or(i64::MAX);
        let client = self.inner.client().await?;
        let sql = match name {
            Some(_) => {
                "SELECT COUNT(*) FROM (SELECT 1 FROM codegen_instances WHERE status = $1 AND name = $3 LIMIT $2) AS c"
            }
            None => {
                "SELECT COUNT(*) FROM (SELECT 1 FROM codegen_instances WHERE status = $1 LIMIT $2) AS c"
            }
        };
        let stmt = client
            .prepare(sql)
            .await
            .map_err(|e| pg_error("counting instances", &e))?;
        let mut out = Vec::new();
        for status in Status::ALL {
            let row = match name {
                Some(name) => {
                    client
                        .query_one(&stmt, &[&status.as_str(), &cap, &name])
                        .await
                }
                None => client.query_one(&stmt, &[&status.as_str(), &cap]).await,
            }
            .map_err(|e| pg_error("counting instances", &e))?;
            out.push((status, u64::try_from(row.get::<_, i64>(0)).unwrap_or(0)));
        }
        Ok(out)
    }

    async fn children(&self, id: &str) -> BackendResult<Vec<InstanceInfo>> {
        let client = self.inner.client().await?;
        let rows = client
            .query(
                "SELECT * FROM codegen_instances WHERE parent_id = $1 ORDER BY created_at, id",
                &[&id],
            )
            .await
            .map_err(|e| pg_error("listing child instances", &e))?;
        rows.iter().map(read_instance).collect()
    }

    async fn attempts(&self, id: &str) -> BackendResult<Vec<TaskAttempt>> {
        let client = self.inner.client().await?;
        let rows = client
            .query(
                "SELECT * FROM codegen_task_attempts WHERE instance_id = $1 ORDER BY seq, redrive, attempt",
                &[&id],
            )
            .await
            .map_err(|e| pg_error("reading task attempts", &e))?;
        rows.iter().map(read_attempt).collect()
    }

    async fn queue(&self, topic: &Topic) -> BackendResult<Option<super::QueueDepth>> {
        self.inner.transport.queue(topic).await
    }

    async fn services(&self, since: i64) -> BackendResult<Vec<ServiceStats>> {
        let client = self.inner.client().await?;
        let figures = client
            .query(
                "SELECT service, SUM(ok)::BIGINT, SUM(retried)::BIGINT, SUM(dead)::BIGINT
                 FROM codegen_task_stats WHERE minute >= $1 GROUP BY service",
                &[&(since / 60_000)],
            )
            .await
            .map_err(|e| pg_error("reading task figures", &e))?;
        let dead = client
            .query(
                "SELECT topic, COUNT(*) FROM codegen_dead_letters WHERE topic LIKE 'tasks/%' GROUP BY topic",
                &[],
            )
            .await
            .map_err(|e| pg_error("counting dead letters", &e))?;
        drop(client);
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        let mut stats: BTreeMap<String, ServiceStats> = BTreeMap::new();
        let new = |service: &str| ServiceStats {
            service: service.to_owned(),
            ..ServiceStats::default()
        };
        for row in &figures {
            let service: String = row.get(0);
            let s = stats
                .entry(service.clone())
                .or_insert_with(|| new(&service));
            s.ok = count(row.get(1));
            s.retried = count(row.get(2));
            s.dead = count(row.get(3));
        }
        for row in &dead {
            let topic: String = row.get(0);
            let service = topic.trim_start_matches("tasks/").to_owned();
            let s = stats
                .entry(service.clone())
                .or_insert_with(|| new(&service));
            s.dead_letters = count(row.get(1));
        }
        for s in stats.values_mut() {
            if let Some(queue) = self
                .inner
                .transport
                .queue(&Topic::Tasks(s.service.clone()))
                .await?
            {
                s.ready = Some(queue.ready);
                s.delayed = Some(queue.delayed);
                s.oldest_ready_at = queue.oldest_ready_at;
            }
        }
        Ok(stats.into_values().collect())
    }

    async fn dead(&self, filter: &DeadFilter, limit: usize) -> BackendResult<Vec<DeadLetter>> {
        let mut sql = String::from("SELECT * FROM codegen_dead_letters WHERE TRUE");
        let mut args: Vec<Param> = Vec::new();
        if let Some(service) = &filter.service {
            args.push(Box::new(format!("tasks/{service}")));
            sql.push_str(&format!(" AND topic = ${}", args.len()));
        }
        if let Some(instance) = &filter.instance {
            args.push(Box::new(instance.clone()));
            sql.push_str(&format!(" AND key = ${}", args.len()));
        }
        if let Some(since) = filter.since {
            args.push(Box::new(since));
            sql.push_str(&format!(" AND died_at >= ${}", args.len()));
        }
        args.push(Box::new(to_i64(limit)));
        sql.push_str(&format!(
            " ORDER BY died_at DESC, id DESC LIMIT ${}",
            args.len()
        ));
        let client = self.inner.client().await?;
        let rows = client
            .query(&sql, &refs(&args))
            .await
            .map_err(|e| pg_error("listing dead letters", &e))?;
        rows.iter().map(read_dead).collect()
    }

    async fn dead_letter(&self, id: &str) -> BackendResult<Option<DeadLetter>> {
        let client = self.inner.client().await?;
        let row = client
            .query_opt("SELECT * FROM codegen_dead_letters WHERE id = $1", &[&id])
            .await
            .map_err(|e| pg_error("reading a dead letter", &e))?;
        row.as_ref().map(read_dead).transpose()
    }

    async fn queries(&self, id: &str) -> BackendResult<Option<crate::backend::QueryAnswers>> {
        let client = self.inner.client().await?;
        let row = client
            .query_opt(
                "SELECT events, at, answers FROM codegen_query_answers WHERE instance_id = $1",
                &[&id],
            )
            .await
            .map_err(|e| pg_error("reading query answers", &e))?;
        row.map(|r| crate::backend::QueryAnswers::read(id, r.get(0), r.get(1), r.get::<_, &str>(2)))
            .transpose()
    }
}
