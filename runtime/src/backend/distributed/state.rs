//! The state store on PostgreSQL: instances, histories and the commit that changes them.

use super::DistributedBackend;
use super::errors::corrupt;
use super::errors::pg_error;
use super::held::{Outgoing, Sent, store_outgoing};
use super::prepared::{execute, query};
use super::transport::Transport;
use std::collections::HashMap;
use std::time::Duration;

use crate::backend::local::Local;
use crate::backend::{
    BackendError, BackendResult, Commit, InstanceInfo, Receipt, Settlement, StateStore, Status,
    stored_answers,
};
use crate::time::now_ms;
use crate::workflow::HistoryEvent;

pub(super) fn to_json<V: serde::Serialize>(value: &V) -> BackendResult<String> {
    serde_json::to_string(value).map_err(|e| BackendError::Invalid(e.to_string()))
}

pub(in crate::backend) fn read_instance(row: &tokio_postgres::Row) -> BackendResult<InstanceInfo> {
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

pub(super) fn i64_of(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Locks the rows of existing instances, in one order so that two batches touching the same
/// instances cannot deadlock; returns their event counts.
const LOCK_INSTANCES: &str =
    "SELECT id, events FROM codegen_instances WHERE id = ANY($1) ORDER BY id FOR UPDATE";

const CREATE_INSTANCE: &str = "INSERT INTO codegen_instances (id, name, version, status, input, parent_id, parent_seq, events, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $8) ON CONFLICT (id) DO NOTHING";

/// Appends events to a locked instance's history from index `$5`, skipping ids it holds (a
/// message delivered twice) or that come twice, and updates the instance; returns the new
/// event count. One statement, however many events.
const APPEND_AND_UPDATE: &str = "WITH given AS (
         SELECT DISTINCT ON (e.event_id) e.event_id, e.at, e.event, e.n
         FROM UNNEST($2::TEXT[], $3::BIGINT[], $4::TEXT[]) WITH ORDINALITY AS e(event_id, at, event, n)
         WHERE NOT EXISTS (
             SELECT 1 FROM codegen_history h WHERE h.instance_id = $1 AND h.event_id = e.event_id
         )
         ORDER BY e.event_id, e.n
     ), added AS (
         INSERT INTO codegen_history (instance_id, idx, event_id, at, event)
         SELECT $1, $5::BIGINT + ROW_NUMBER() OVER (ORDER BY n) - 1, event_id, at, event FROM given
         RETURNING 1
     )
     UPDATE codegen_instances
     SET status = $6, output = $7, error = $8, events = $5::BIGINT + (SELECT COUNT(*) FROM added),
         updated_at = $9, version = $10
     WHERE id = $1
     RETURNING events";

/// Records query answers as of the instance's event count, once its append has run.
const RECORD_ANSWERS: &str = "INSERT INTO codegen_query_answers (instance_id, events, at, answers)
     SELECT id, events, $2, $3 FROM codegen_instances WHERE id = $1
     ON CONFLICT (instance_id) DO UPDATE SET events = EXCLUDED.events, at = EXCLUDED.at, answers = EXCLUDED.answers";

/// The commits of one batch in waves of distinct instances: an instance committed twice in a
/// batch has its second commit checked against what the first left.
fn waves(commits: &[Commit]) -> Vec<Vec<&Commit>> {
    let mut waves: Vec<Vec<&Commit>> = Vec::new();
    let mut wave_of: HashMap<&str, usize> = HashMap::new();
    for c in commits {
        let wave = wave_of.get(c.instance.id.as_str()).map_or(0, |w| w + 1);
        wave_of.insert(&c.instance.id, wave);
        if waves.len() <= wave {
            waves.push(Vec::new());
        }
        waves[wave].push(c);
    }
    waves
}

/// Writes one wave of commits whose instances are locked and checked: each history and
/// instance row in one statement, the query answers, then `alongside`, all pipelined; returns
/// the instances' new event counts and what `alongside` gave.
async fn write_wave<R>(
    tx: &deadpool_postgres::Transaction<'_>,
    wave: &[&Commit],
    now: i64,
    alongside: impl std::future::Future<Output = BackendResult<R>>,
) -> BackendResult<(Vec<i64>, R)> {
    let mut appends = Vec::with_capacity(wave.len());
    for c in wave {
        let i = &c.instance;
        let (mut event_ids, mut ats, mut jsons) = (Vec::new(), Vec::new(), Vec::new());
        for (event_id, event) in &c.events {
            event_ids.push(event_id.as_str());
            ats.push(event.at);
            jsons.push(to_json(&event.event)?);
        }
        let base = i64_of(c.truncate_to.unwrap_or(c.expected_events));
        appends.push((i, event_ids, ats, jsons, base));
    }
    let append = tx
        .prepare_cached(APPEND_AND_UPDATE)
        .await
        .map_err(|e| pg_error("appending to a history", &e))?;
    let updates = appends.iter().map(|(i, event_ids, ats, jsons, base)| {
        let (append, tx) = (&append, &tx);
        async move {
            let version = i32::try_from(i.version).unwrap_or(i32::MAX);
            let output = i.output.as_ref().map(ToString::to_string);
            let row = tx
                .query_one(
                    append,
                    &[
                        &i.id,
                        event_ids,
                        ats,
                        jsons,
                        base,
                        &i.status.as_str(),
                        &output,
                        &i.error,
                        &now,
                        &version,
                    ],
                )
                .await
                .map_err(|e| pg_error("appending to a history", &e))?;
            Ok::<i64, BackendError>(row.get(0))
        }
    });
    let mut answers = Vec::new();
    for c in wave {
        answers.push((&c.instance.id, stored_answers(c.queries.as_ref())?));
    }
    let answered = answers.iter().map(|(id, answer)| async move {
        match answer {
            None => Ok(0),
            Some(None) => {
                execute(
                    tx,
                    "removing query answers",
                    "DELETE FROM codegen_query_answers WHERE instance_id = $1",
                    &[id],
                )
                .await
            }
            Some(Some(answers)) => {
                execute(
                    tx,
                    "recording query answers",
                    RECORD_ANSWERS,
                    &[id, &now, answers],
                )
                .await
            }
        }
    });
    let (events, _, alongside) = futures_util::future::try_join3(
        futures_util::future::try_join_all(updates),
        futures_util::future::try_join_all(answered),
        alongside,
    )
    .await?;
    Ok((events, alongside))
}

impl<T: Transport> DistributedBackend<T> {
    /// Commits in one transaction, with the deferred settlements `applied`; returns what was
    /// sent and the deliveries the commits consumed.
    async fn commit_with(
        &self,
        commits: &[Commit],
        applied: &[Settlement],
    ) -> BackendResult<(Sent, Vec<Receipt>)> {
        let mut client = self.inner.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| pg_error("starting a commit", &e))?;
        let now = now_ms();
        let mut existing: Vec<&str> = commits
            .iter()
            .filter(|c| !c.create)
            .map(|c| c.instance.id.as_str())
            .collect();
        existing.sort_unstable();
        existing.dedup();
        // The locks, then the new instances, pipelined.
        let (lock, create) = futures_util::future::try_join(
            tx.prepare_cached(LOCK_INSTANCES),
            tx.prepare_cached(CREATE_INSTANCE),
        )
        .await
        .map_err(|e| pg_error("locking instances", &e))?;
        let creates = commits.iter().filter(|c| c.create).map(|c| {
            let (create, tx, i) = (&create, &tx, &c.instance);
            async move {
                let version = i32::try_from(i.version).unwrap_or(i32::MAX);
                let parent_seq = i
                    .parent
                    .as_ref()
                    .map(|p| i32::try_from(p.1).unwrap_or(i32::MAX));
                let created = tx
                    .execute(
                        create,
                        &[
                            &i.id,
                            &i.name,
                            &version,
                            &i.status.as_str(),
                            &i.input.to_string(),
                            &i.parent.as_ref().map(|p| p.0.as_str()),
                            &parent_seq,
                            &now,
                        ],
                    )
                    .await
                    .map_err(|e| pg_error("creating an instance", &e))?;
                Ok::<_, BackendError>((i.id.as_str(), created))
            }
        });
        let (locked, created) = futures_util::future::try_join(
            async {
                tx.query(&lock, &[&existing])
                    .await
                    .map_err(|e| pg_error("locking instances", &e))
            },
            futures_util::future::try_join_all(creates),
        )
        .await?;
        let mut events_now: HashMap<String, i64> = locked
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
            .collect();
        for (id, created) in created {
            if created == 0 {
                return Err(BackendError::Conflict(id.to_owned()));
            }
            events_now.insert(id.to_owned(), 0);
        }
        let mut outgoing = Outgoing::default();
        for c in commits {
            outgoing.add(&self.inner.local, &c.messages, now);
        }
        let mut consumed: Vec<Receipt> = commits
            .iter()
            .flat_map(|c| c.acks.iter().cloned())
            .collect();
        consumed.extend(applied.iter().map(|s| s.receipt.clone()));
        let waves = waves(commits);
        let last = waves.len().saturating_sub(1);
        let mut inserted = Vec::new();
        for (n, wave) in waves.into_iter().enumerate() {
            for c in &wave {
                match events_now.get(&c.instance.id) {
                    Some(&n) if u64::try_from(n) == Ok(c.expected_events) => {}
                    _ => return Err(BackendError::Conflict(c.instance.id.clone())),
                }
                if let Some(keep) = c.truncate_to {
                    rewind(&tx, &c.instance, keep).await?;
                }
            }
            // The messages, the handled deliveries and the attempts go with the last wave.
            let alongside = async {
                if n == last {
                    store_outgoing(&tx, &self.inner.worker, &outgoing, &consumed, applied, now)
                        .await
                } else {
                    Ok(Vec::new())
                }
            };
            let (events, stored) = write_wave(&tx, &wave, now, alongside).await?;
            inserted.extend(stored);
            for (c, n) in wave.iter().zip(events) {
                events_now.insert(c.instance.id.clone(), n);
            }
        }
        tx.commit().await.map_err(|e| pg_error("committing", &e))?;
        let acks = commits
            .iter()
            .flat_map(|c| c.acks.iter().cloned())
            .collect();
        Ok((outgoing.sent(&inserted), acks))
    }
}

#[async_trait::async_trait]
impl<T: Transport> StateStore for DistributedBackend<T> {
    async fn commit(&self, commits: Vec<Commit>) -> BackendResult<()> {
        if commits.is_empty() {
            return Ok(());
        }
        let local = &self.inner.local;
        // The deferred results the commits take: their settlements (the task message deleted,
        // the attempt counted) are applied in the same transaction, and put back if it fails.
        let deferred = local.settlements_of(commits.iter().flat_map(|c| &c.acks));
        let applied = Local::to_apply(&deferred);
        match self.commit_with(&commits, &applied).await {
            Ok((sent, mut acks)) => {
                self.inner.changed.notify_waiters();
                acks.extend(applied.into_iter().map(|s| s.receipt));
                self.inner.after_commit(sent, acks).await
            }
            Err(err) => {
                local.restore(deferred);
                Err(err)
            }
        }
    }

    async fn instance(&self, id: &str) -> BackendResult<Option<InstanceInfo>> {
        let client = self.inner.client().await?;
        let rows = query(
            &client,
            "reading an instance",
            "SELECT * FROM codegen_instances WHERE id = $1",
            &[&id],
        )
        .await?;
        rows.first().map(read_instance).transpose()
    }

    async fn history(&self, id: &str) -> BackendResult<Vec<(String, HistoryEvent)>> {
        let client = self.inner.client().await?;
        let rows = query(
            &client,
            "reading a history",
            "SELECT event_id, at, event FROM codegen_history WHERE instance_id = $1 ORDER BY idx",
            &[&id],
        )
        .await?;
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

    async fn purge_ended(
        &self,
        ended_before: i64,
        name: Option<&str>,
        except: &[String],
        limit: usize,
    ) -> BackendResult<Vec<String>> {
        let mut client = self.inner.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| pg_error("starting a purge", &e))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = tx
            .query(
                "SELECT id FROM codegen_instances
                 WHERE status IN ('completed', 'failed', 'cancelled') AND updated_at < $1
                   AND ($2::TEXT IS NULL OR name = $2) AND NOT (name = ANY($3))
                 ORDER BY updated_at LIMIT $4
                 FOR UPDATE SKIP LOCKED",
                &[&ended_before, &name, &except, &limit],
            )
            .await
            .map_err(|e| pg_error("finding instances to purge", &e))?;
        let ids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        delete_instances(&tx, &ids).await?;
        tx.commit()
            .await
            .map_err(|e| pg_error("committing a purge", &e))?;
        Ok(ids)
    }

    async fn purge(&self, id: &str) -> BackendResult<bool> {
        let mut client = self.inner.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| pg_error("starting a purge", &e))?;
        let rows = tx
            .query(
                "SELECT id FROM codegen_instances
                 WHERE id = $1 AND status IN ('completed', 'failed', 'cancelled') FOR UPDATE",
                &[&id],
            )
            .await
            .map_err(|e| pg_error("finding the instance to purge", &e))?;
        let ids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        delete_instances(&tx, &ids).await?;
        tx.commit()
            .await
            .map_err(|e| pg_error("committing a purge", &e))?;
        Ok(!ids.is_empty())
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

/// Drops a locked instance's history from index `keep` on (a workflow rewound to a retried
/// task); a new run (continued as new, `keep` 0) takes the instance's new input.
async fn rewind(
    tx: &deadpool_postgres::Transaction<'_>,
    instance: &InstanceInfo,
    keep: u64,
) -> BackendResult<()> {
    execute(
        tx,
        "rewinding a history",
        "DELETE FROM codegen_history WHERE instance_id = $1 AND idx >= $2",
        &[&instance.id, &i64_of(keep)],
    )
    .await?;
    if keep == 0 {
        execute(
            tx,
            "starting a new run",
            "UPDATE codegen_instances SET input = $2 WHERE id = $1",
            &[&instance.id, &instance.input.to_string()],
        )
        .await?;
    }
    Ok(())
}

/// Deletes instances with their history, unsent messages, dead letters and attempts.
async fn delete_instances(
    tx: &deadpool_postgres::Transaction<'_>,
    ids: &[String],
) -> BackendResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    for sql in [
        "DELETE FROM codegen_history WHERE instance_id = ANY($1)",
        "DELETE FROM codegen_outbox WHERE key = ANY($1)",
        "DELETE FROM codegen_dead_letters WHERE key = ANY($1)",
        "DELETE FROM codegen_task_attempts WHERE instance_id = ANY($1)",
        "DELETE FROM codegen_query_answers WHERE instance_id = ANY($1)",
        "DELETE FROM codegen_instances WHERE id = ANY($1)",
    ] {
        tx.execute(sql, &[&ids])
            .await
            .map_err(|e| pg_error("purging instances", &e))?;
    }
    Ok(())
}
