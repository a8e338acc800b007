//! The state store on PostgreSQL: instances, histories and the commit that changes them.

use super::DistributedBackend;
use super::errors::corrupt;
use super::errors::pg_error;
use super::outbox::insert_outbox;
use super::transport::Transport;
use std::collections::HashMap;
use std::time::Duration;

use crate::backend::{
    BackendError, BackendResult, Commit, InstanceInfo, StateStore, Status, stored_answers,
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

/// Appends events to a locked instance's history from index `idx`, skipping ids it holds
/// (a message delivered twice); returns the new event count. Two statements, however many
/// events: the ids already there, then one insert of the rest.
pub(super) async fn append_events(
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
                // A new run (continued as new) has a new input.
                if keep == 0 {
                    tx.execute(
                        "UPDATE codegen_instances SET input = $2 WHERE id = $1",
                        &[&i.id, &i.input.to_string()],
                    )
                    .await
                    .map_err(|e| pg_error("starting a new run", &e))?;
                }
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
            match stored_answers(c.queries.as_ref())? {
                None => {}
                Some(None) => {
                    tx.execute(
                        "DELETE FROM codegen_query_answers WHERE instance_id = $1",
                        &[&i.id],
                    )
                    .await
                    .map_err(|e| pg_error("removing query answers", &e))?;
                }
                Some(Some(answers)) => {
                    tx.execute(
                        "INSERT INTO codegen_query_answers (instance_id, events, at, answers) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (instance_id) DO UPDATE SET events = $2, at = $3, answers = $4",
                        &[&i.id, &idx, &now, &answers],
                    )
                    .await
                    .map_err(|e| pg_error("recording query answers", &e))?;
                }
            }
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
