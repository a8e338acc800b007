//! The message queue over a transport: receive (this process's own messages from memory
//! first, see `held.rs`), settle, dead letters and redrive.

use std::sync::Arc;

use super::errors::pg_error;
use super::held::{Outgoing, Sent, is_transported, store_outgoing};
use super::outbox::insert_outbox;
use super::state::to_json;
use super::transport::Received;
use super::transport::Transport;
use super::{DistributedBackend, Inner};
use crate::backend::flow::{self, FlowLimits, Grant};
use crate::backend::local::{Local, Subscribed};
use crate::backend::{
    BackendError, BackendResult, DeadLetter, Delivery, Message, MessageQueue, Receipt, Settlement,
    Subscription, Topic,
};
use crate::time::now_ms;

impl<T: Transport> Inner<T> {
    /// Keeps the messages of deliveries handed out until they are settled, for their dead
    /// letters.
    fn remember(&self, deliveries: &[Delivery]) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        for d in deliveries {
            pending.insert(d.receipt.clone(), d.message.clone());
        }
    }

    /// Stores settlements in one transaction: each delivery acknowledged or moved to the dead
    /// letters, the messages its outcome sends (held for this process's receivers where they
    /// take them), the attempts counted.
    pub(super) async fn store(&self, settlements: Vec<Settlement>) -> BackendResult<()> {
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| pg_error("settling", &e))?;
        let now = now_ms();
        let mut outgoing = Outgoing::default();
        let mut acks = Vec::with_capacity(settlements.len());
        for s in &settlements {
            if let Some(reason) = &s.dead {
                let message = {
                    let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
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
            outgoing.add(&self.local, &s.messages, now);
            acks.push(s.receipt.clone());
        }
        let inserted =
            store_outgoing(&tx, &self.worker, &outgoing, &acks, &settlements, now).await?;
        tx.commit().await.map_err(|e| pg_error("settling", &e))?;
        drop(client);
        self.after_commit(outgoing.sent(&inserted), acks).await
    }
}

#[async_trait::async_trait]
impl<T: Transport> MessageQueue for DistributedBackend<T> {
    async fn send(&self, messages: Vec<Message>) -> BackendResult<()> {
        let mut outgoing = Outgoing::default();
        outgoing.add(&self.inner.local, &messages, now_ms());
        if !outgoing.holds_any() {
            return self.inner.transport.publish(&messages).await;
        }
        // Some go to this process's receivers: stored in the outbox, as a commit's are.
        let mut client = self.inner.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| pg_error("sending", &e))?;
        let inserted = insert_outbox(&tx, outgoing.rows(), now_ms()).await?;
        tx.commit().await.map_err(|e| pg_error("sending", &e))?;
        drop(client);
        self.inner
            .after_commit(outgoing.sent(&inserted), Vec::new())
            .await
    }

    async fn receive(
        &self,
        topic: &Topic,
        max: usize,
        lease_ms: i64,
    ) -> BackendResult<Vec<Delivery>> {
        let local = &self.inner.local;
        if *topic == Topic::Workflows {
            // Results a receiver took and never committed: stored as any other.
            let abandoned = local.abandoned();
            if !abandoned.is_empty() {
                self.inner.store(abandoned).await?;
            }
        }
        let mut out = local.take(topic, max, now_ms());
        let taken = match topic {
            Topic::Workflows => out
                .iter()
                .map(|d| &d.message.key)
                .collect::<std::collections::HashSet<_>>()
                .len(),
            Topic::Tasks(_) => out.len(),
        };
        let want = max.saturating_sub(taken);
        if want == 0 {
            self.inner.remember(&out);
            return Ok(out);
        }
        let received = self.inner.transport.receive(topic, want, lease_ms).await?;
        let mut dead = Vec::new();
        let mut transported = Vec::with_capacity(received.len());
        for r in received {
            match r {
                Received::Message(d) => transported.push(*d),
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
        out.extend(transported);
        self.inner.remember(&out);
        Ok(out)
    }

    async fn ack(&self, receipts: Vec<Receipt>) -> BackendResult<()> {
        if receipts.iter().all(is_transported) {
            return self.inner.after_commit(Sent::default(), receipts).await;
        }
        // Held messages are deleted, and a deferred result acknowledged without a commit
        // (news for an instance that does not exist) has its settlement applied all the same,
        // without its message.
        let local = &self.inner.local;
        let deferred = local.settlements_of(&receipts);
        let applied = Local::to_apply(&deferred);
        let acked = async {
            let mut client = self.inner.client().await?;
            let tx = client
                .transaction()
                .await
                .map_err(|e| pg_error("acknowledging", &e))?;
            let mut consumed = receipts.clone();
            consumed.extend(applied.iter().map(|s| s.receipt.clone()));
            store_outgoing(
                &tx,
                &self.inner.worker,
                &Outgoing::default(),
                &consumed,
                &applied,
                now_ms(),
            )
            .await?;
            tx.commit()
                .await
                .map_err(|e| pg_error("acknowledging", &e))?;
            Ok(consumed)
        }
        .await;
        match acked {
            Ok(consumed) => self.inner.after_commit(Sent::default(), consumed).await,
            Err(err) => {
                local.restore(deferred);
                Err(err)
            }
        }
    }

    async fn settle(&self, settlements: Vec<Settlement>) -> BackendResult<()> {
        // A result a workflow worker of this process takes waits for its commit (see
        // `backend/local.rs`); the rest are stored now.
        let rest = self.inner.local.defer_all(settlements);
        self.inner.held.notify_waiters();
        if rest.is_empty() {
            return Ok(());
        }
        self.inner.store(rest).await
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
        let mut outgoing = Outgoing::default();
        outgoing.add(&self.inner.local, std::slice::from_ref(&message), now_ms());
        let inserted = insert_outbox(&tx, outgoing.rows(), now_ms()).await?;
        tx.commit()
            .await
            .map_err(|e| pg_error("retrying a dead letter", &e))?;
        drop(client);
        self.inner
            .after_commit(outgoing.sent(&inserted), Vec::new())
            .await
    }

    async fn wait(&self, topic: &Topic, max_wait_ms: i64) {
        let held = self.inner.held.notified();
        tokio::pin!(held);
        held.as_mut().enable();
        if self.inner.local.holds(&topic.name()) {
            return;
        }
        tokio::select! {
            () = self.inner.transport.wait(topic, max_wait_ms) => {}
            () = held => {}
        }
    }

    fn subscribe(&self, topic: &Topic, lease_ms: i64, capacity: usize) -> Subscription {
        let name = topic.name();
        self.inner.local.subscribe(&name, lease_ms, capacity);
        let inner = self.inner.clone();
        Subscription::new(Subscribed {
            topic: name,
            release: Arc::new(move |topic| inner.unsubscribe(topic)),
        })
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
