//! The message queue over a transport: receive, settle, dead letters and redrive.

use super::DistributedBackend;
use super::errors::pg_error;
use super::outbox::insert_outbox;
use super::state::to_json;
use super::transport::Received;
use super::transport::Transport;
use crate::backend::flow::{self, FlowLimits, Grant};
use crate::backend::{
    BackendError, BackendResult, DeadLetter, Delivery, Message, MessageQueue, Receipt, Settlement,
    Topic,
};
use crate::time::now_ms;

#[async_trait::async_trait]
impl<T: Transport> MessageQueue for DistributedBackend<T> {
    async fn send(&self, messages: Vec<Message>) -> BackendResult<()> {
        self.inner.transport.publish(&messages).await
    }

    async fn receive(
        &self,
        topic: &Topic,
        max: usize,
        lease_ms: i64,
    ) -> BackendResult<Vec<Delivery>> {
        let received = self.inner.transport.receive(topic, max, lease_ms).await?;
        let mut out = Vec::with_capacity(received.len());
        let mut dead = Vec::new();
        for r in received {
            match r {
                Received::Message(d) => out.push(*d),
                Received::Undecodable {
                    receipt,
                    id,
                    topic,
                    key,
                    body,
                    error,
                } => dead.push((
                    receipt,
                    DeadLetter {
                        id,
                        topic,
                        key,
                        body,
                        reason: format!("the message does not decode: {error}"),
                        died_at: now_ms(),
                    },
                )),
            }
        }
        if !dead.is_empty() {
            let client = self.inner.client().await?;
            for (_, d) in &dead {
                insert_dead_letter(&client, d).await?;
            }
            let receipts: Vec<Receipt> = dead.into_iter().map(|(r, _)| r).collect();
            self.inner.transport.ack(&receipts).await?;
        }
        {
            let mut pending = self.inner.pending.lock().unwrap_or_else(|p| p.into_inner());
            for d in &out {
                pending.insert(d.receipt.clone(), d.message.clone());
            }
        }
        Ok(out)
    }

    async fn ack(&self, receipts: Vec<Receipt>) -> BackendResult<()> {
        self.inner.after_commit(Vec::new(), receipts).await
    }

    async fn settle(&self, settlements: Vec<Settlement>) -> BackendResult<()> {
        let mut client = self.inner.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| pg_error("settling", &e))?;
        let now = now_ms();
        let mut messages = Vec::new();
        let mut acks = Vec::new();
        for s in &settlements {
            if let Some(reason) = &s.dead {
                let message = {
                    let pending = self.inner.pending.lock().unwrap_or_else(|p| p.into_inner());
                    pending.get(&s.receipt).cloned()
                };
                let Some(m) = message else {
                    return Err(BackendError::Invalid(format!(
                        "receipt `{}` is not a delivery of this process",
                        s.receipt.0
                    )));
                };
                let letter = DeadLetter {
                    id: m.id.clone(),
                    topic: m.topic.clone(),
                    key: m.key.clone(),
                    body: to_json(&m.body)?,
                    reason: reason.clone(),
                    died_at: now,
                };
                insert_dead_letter(&tx, &letter).await?;
            }
            messages.extend(s.messages.iter().cloned());
            acks.push(s.receipt.clone());
        }
        futures_util::future::try_join(
            insert_outbox(&tx, &messages, now),
            crate::backend::inspect::postgres::record_attempts(
                &tx,
                &self.inner.worker,
                &settlements,
                now,
            ),
        )
        .await?;
        tx.commit().await.map_err(|e| pg_error("settling", &e))?;
        drop(client);
        self.inner.after_commit(messages, acks).await
    }

    async fn dead_letters(&self) -> BackendResult<Vec<DeadLetter>> {
        let client = self.inner.client().await?;
        let rows = client
            .query(
                "SELECT id, topic, key, body, reason, died_at FROM codegen_dead_letters ORDER BY died_at, id",
                &[],
            )
            .await
            .map_err(|e| pg_error("listing dead letters", &e))?;
        Ok(rows
            .iter()
            .map(|r| DeadLetter {
                id: r.get(0),
                topic: Topic::from_name(&r.get::<_, String>(1)),
                key: r.get(2),
                body: r.get(3),
                reason: r.get(4),
                died_at: r.get(5),
            })
            .collect())
    }

    async fn redrive(&self, id: &str, message: Option<Message>) -> BackendResult<()> {
        let mut client = self.inner.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| pg_error("retrying a dead letter", &e))?;
        let row = tx
            .query_opt(
                "DELETE FROM codegen_dead_letters WHERE id = $1 RETURNING topic, key, body",
                &[&id],
            )
            .await
            .map_err(|e| pg_error("retrying a dead letter", &e))?;
        let Some(row) = row else {
            return Err(BackendError::Invalid(format!(
                "no dead letter `{id}`: list them with `dead_letters` (it may have been retried already)"
            )));
        };
        let message = match message {
            Some(m) => m,
            None => {
                let body: String = row.get(2);
                Message {
                    id: id.to_owned(),
                    topic: Topic::from_name(&row.get::<_, String>(0)),
                    key: row.get(1),
                    deliver_at: now_ms(),
                    body: serde_json::from_str(&body).map_err(|e| {
                        BackendError::Invalid(format!(
                            "dead letter `{id}` does not decode ({e}): it cannot be sent again as it is"
                        ))
                    })?,
                }
            }
        };
        insert_outbox(&tx, std::slice::from_ref(&message), now_ms()).await?;
        tx.commit()
            .await
            .map_err(|e| pg_error("retrying a dead letter", &e))?;
        drop(client);
        self.inner.after_commit(vec![message], Vec::new()).await
    }

    async fn wait(&self, topic: &Topic, max_wait_ms: i64) {
        self.inner.transport.wait(topic, max_wait_ms).await;
    }

    async fn acquire(
        &self,
        service: &str,
        holder: &str,
        want: u32,
        limits: &FlowLimits,
        lease_ms: i64,
    ) -> BackendResult<Grant> {
        let now = now_ms();
        let mut client = self.inner.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| pg_error("starting to take permits", &e))?;
        let full = flow::Bucket::full(limits, now);
        // The service's row serialises the workers that ask at once.
        tx.execute(
            "INSERT INTO codegen_flow_services (service, tokens, refilled_at, paused_until)
             VALUES ($1, $2, $3, 0) ON CONFLICT (service) DO NOTHING",
            &[&service, &full.tokens, &now],
        )
        .await
        .map_err(|e| pg_error("taking permits", &e))?;
        let row = tx
            .query_one(
                "SELECT tokens, refilled_at, paused_until FROM codegen_flow_services WHERE service = $1 FOR UPDATE",
                &[&service],
            )
            .await
            .map_err(|e| pg_error("taking permits", &e))?;
        let bucket = flow::Bucket {
            tokens: row.get(0),
            refilled_at: row.get(1),
            paused_until: row.get(2),
        };
        let held = tx
            .query_one(
                "SELECT COALESCE(SUM(held) FILTER (WHERE holder <> $2), 0)::BIGINT,
                        COALESCE(SUM(held) FILTER (WHERE holder = $2), 0)::BIGINT
                 FROM codegen_flow_holders WHERE service = $1 AND expires_at > $3",
                &[&service, &holder, &now],
            )
            .await
            .map_err(|e| pg_error("taking permits", &e))?;
        let count = |n: i64| u32::try_from(n).unwrap_or(u32::MAX);
        let (others, mine) = (count(held.get(0)), count(held.get(1)));
        let (granted, bucket, retry_at) = flow::decide(limits, bucket, others, mine, want, now);
        tx.execute(
            "UPDATE codegen_flow_services SET tokens = $2, refilled_at = $3 WHERE service = $1",
            &[&service, &bucket.tokens, &bucket.refilled_at],
        )
        .await
        .map_err(|e| pg_error("taking permits", &e))?;
        let total = i64::from(mine) + i64::from(granted);
        tx.execute(
            "INSERT INTO codegen_flow_holders (service, holder, held, expires_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (service, holder) DO UPDATE SET held = $3, expires_at = $4",
            &[&service, &holder, &total, &(now + lease_ms)],
        )
        .await
        .map_err(|e| pg_error("taking permits", &e))?;
        tx.commit()
            .await
            .map_err(|e| pg_error("committing permits", &e))?;
        Ok(Grant { granted, retry_at })
    }

    async fn release(&self, service: &str, holder: &str, n: u32) -> BackendResult<()> {
        let client = self.inner.client().await?;
        // The release is announced to the other processes' listeners when it commits.
        client
            .execute(
                "WITH released AS (
                     UPDATE codegen_flow_holders SET held = GREATEST(held - $3, 0)
                     WHERE service = $1 AND holder = $2 RETURNING 1
                 )
                 SELECT pg_notify($4, $1) FROM released",
                &[
                    &service,
                    &holder,
                    &i64::from(n),
                    &self.inner.release_channel,
                ],
            )
            .await
            .map_err(|e| pg_error("giving permits back", &e))?;
        self.inner.released.notify_waiters();
        Ok(())
    }

    async fn wait_for_release(&self, _service: &str, max_wait_ms: i64) {
        // Releases of this process wake it at once, and another's through the listener; the
        // bound covers one announced while the listener was reconnecting.
        self.inner.listen_for_releases();
        let _ = tokio::time::timeout(
            std::time::Duration::from_millis(u64::try_from(max_wait_ms).unwrap_or(0)),
            self.inner.released.notified(),
        )
        .await;
    }

    async fn back_off(&self, service: &str, until: i64) -> BackendResult<()> {
        let client = self.inner.client().await?;
        client
            .execute(
                "INSERT INTO codegen_flow_services (service, tokens, refilled_at, paused_until) VALUES ($1, 0, $3, $2)
                 ON CONFLICT (service) DO UPDATE SET paused_until = GREATEST(codegen_flow_services.paused_until, $2)",
                &[&service, &until, &now_ms()],
            )
            .await
            .map_err(|e| pg_error("backing off", &e))?;
        Ok(())
    }

    async fn backing_off_until(&self, service: &str) -> BackendResult<i64> {
        let client = self.inner.client().await?;
        let row = client
            .query_opt(
                "SELECT paused_until FROM codegen_flow_services WHERE service = $1",
                &[&service],
            )
            .await
            .map_err(|e| pg_error("reading the back-off", &e))?;
        Ok(row.map_or(0, |r| r.get(0)))
    }
}

pub(super) async fn insert_dead_letter<C: deadpool_postgres::GenericClient>(
    client: &C,
    d: &DeadLetter,
) -> BackendResult<()> {
    client
        .execute(
            "INSERT INTO codegen_dead_letters (id, topic, key, body, reason, died_at) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body, reason = EXCLUDED.reason, died_at = EXCLUDED.died_at",
            &[&d.id, &d.topic.name(), &d.key, &d.body, &d.reason, &d.died_at],
        )
        .await
        .map_err(|e| pg_error("writing a dead letter", &e))?;
    Ok(())
}
