//! The embedded backend's [`MessageQueue`]: sending, receiving (from memory first, see
//! `backend/local.rs`), settling, dead letters, flow control and waits.

use std::sync::Arc;
use std::time::Duration;

use rusqlite::{OptionalExtension, params};

use super::messages::{
    INSTANCES_AMONG_ALL, INSTANCES_AMONG_OLDEST, Stored, TASKS, delete_receipts, insert_messages,
    instances, receive_in, store_settlements, topics,
};
use super::{SqliteBackend, error, unsynced};
use crate::backend::flow::{self, FlowLimits, Grant};
use crate::backend::local::{Local, Subscribed};
use crate::backend::{
    BackendError, BackendResult, DeadLetter, Delivery, Message, MessageQueue, Receipt, Settlement,
    Subscription, Topic,
};
use crate::time::now_ms;

#[async_trait::async_trait]
impl MessageQueue for SqliteBackend {
    async fn send(&self, messages: Vec<Message>) -> BackendResult<()> {
        let topics = topics(&messages);
        let announcer = self.announcer();
        let local = self.inner.local.clone();
        let stored = self
            .with_conn(move |conn, path| {
                let tx = conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .map_err(|e| error(path, e))?;
                let mut stored = Stored::default();
                insert_messages(&tx, path, &messages, &local, &mut stored)?;
                tx.commit().map_err(|e| error(path, e))?;
                if let Some(wake) = announcer {
                    wake.announce(&stored.announced(), false);
                }
                Ok(stored)
            })
            .await?;
        self.stored(stored, &topics);
        Ok(())
    }

    async fn receive(
        &self,
        topic: &Topic,
        max: usize,
        lease_ms: i64,
    ) -> BackendResult<Vec<Delivery>> {
        let local = &self.inner.local;
        let name = topic.name();
        if *topic == Topic::Workflows {
            // Results a receiver took and never committed: stored as any other.
            let abandoned = local.abandoned();
            if !abandoned.is_empty() {
                self.store(abandoned).await?;
            }
        }
        let mut deliveries = local.take(topic, max, now_ms());
        let taken = match topic {
            Topic::Workflows => instances(&deliveries),
            Topic::Tasks(_) => deliveries.len(),
        };
        let want = max.saturating_sub(taken);
        let Some(seen) = local.dirty(&name).filter(|_| want > 0) else {
            return Ok(deliveries);
        };
        let topic = topic.clone();
        let from_store = self
            .with_conn(move |conn, path| {
                let now = now_ms();
                let lease = now + lease_ms;
                // Bounded so that the window of the oldest (`?4 * 8`) stays an integer.
                let max = i64::try_from(want).unwrap_or(i64::MAX).min(i64::MAX / 8);
                // A lease lost to a power cut only means a second delivery, which at-least-once
                // delivery allows: taking one need not wait for the disk.
                unsynced(conn, path, |conn| match topic {
                    // Whole instances: every due message of up to `max` instances that no one
                    // holds, chosen among the oldest due messages first, so that a backlog of
                    // thousands costs a receive what a short one does; only when those all
                    // belong to instances being handled is every due message looked at.
                    Topic::Workflows => {
                        match receive_in(
                            conn,
                            path,
                            &topic,
                            INSTANCES_AMONG_OLDEST,
                            now,
                            lease,
                            max,
                        ) {
                            Ok(none) if none.is_empty() => {
                                receive_in(conn, path, &topic, INSTANCES_AMONG_ALL, now, lease, max)
                            }
                            other => other,
                        }
                    }
                    Topic::Tasks(_) => receive_in(conn, path, &topic, TASKS, now, lease, max),
                })
            })
            .await?;
        let found = match &from_store.first().map(|d| &d.message.topic) {
            Some(Topic::Workflows) => instances(&from_store),
            _ => from_store.len(),
        };
        // Fewer than asked for: the store holds no more that is due.
        if found < want {
            local.mark_clean(&name, seen);
        }
        deliveries.extend(from_store);
        Ok(deliveries)
    }

    async fn ack(&self, receipts: Vec<Receipt>) -> BackendResult<()> {
        // A deferred result acknowledged without a commit (news for an instance that does not
        // exist): its settlement is applied all the same, without its message.
        let local = self.inner.local.clone();
        let deferred = local.settlements_of(&receipts);
        let applied = Local::to_apply(&deferred);
        let held_for = local.clone();
        let acked = self
            .with_conn(move |conn, path| {
                let tx = conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .map_err(|e| error(path, e))?;
                delete_receipts(&tx, path, &receipts)?;
                store_settlements(&tx, path, &applied, &held_for, &mut Stored::default())?;
                tx.commit().map_err(|e| error(path, e))
            })
            .await;
        if acked.is_err() {
            local.restore(deferred);
        }
        acked
    }

    async fn settle(&self, settlements: Vec<Settlement>) -> BackendResult<()> {
        // A result a workflow worker of this process takes waits for its commit (see
        // `backend/local.rs`); the rest are stored now.
        let rest = self.inner.local.defer_all(settlements);
        if rest.is_empty() {
            self.wake(&[Topic::Workflows.name()]);
            return Ok(());
        }
        self.store(rest).await?;
        self.wake(&[Topic::Workflows.name()]);
        Ok(())
    }

    async fn dead_letters(&self) -> BackendResult<Vec<DeadLetter>> {
        self.with_reader(move |conn, path| {
            let mut stmt = conn
                .prepare_cached("SELECT id, topic, key, body, reason, died_at FROM dead_letters ORDER BY died_at, id")
                .map_err(|e| error(path, e))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(DeadLetter {
                        id: r.get(0)?,
                        topic: Topic::from_name(&r.get::<_, String>(1)?),
                        key: r.get(2)?,
                        body: r.get(3)?,
                        reason: r.get(4)?,
                        died_at: r.get(5)?,
                    })
                })
                .map_err(|e| error(path, e))?;
            rows.collect::<Result<_, _>>().map_err(|e| error(path, e))
        })
        .await
    }

    async fn redrive(&self, id: &str, message: Option<Message>) -> BackendResult<()> {
        let id = id.to_owned();
        let announcer = self.announcer();
        let topic = self
            .with_conn(move |conn, path| {
                let tx = conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .map_err(|e| error(path, e))?;
                let dead: Option<(String, String, String)> = tx
                    .query_row("SELECT topic, key, body FROM dead_letters WHERE id = ?1", [&id], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })
                    .optional()
                    .map_err(|e| error(path, e))?;
                let Some((stored, key, body)) = dead else {
                    return Err(BackendError::Invalid(format!(
                        "no dead letter `{id}`: list them with `dead_letters` (it may have been retried already)"
                    )));
                };
                tx.execute("DELETE FROM dead_letters WHERE id = ?1", [&id]).map_err(|e| error(path, e))?;
                let topic = match &message {
                    Some(m) => {
                        insert_messages(&tx, path, std::slice::from_ref(m), &Local::default(), &mut Stored::default())?;
                        m.topic.name()
                    }
                    None => {
                        tx.execute(
                            "INSERT OR IGNORE INTO messages (id, topic, key, body, deliver_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                            params![id, stored, key, body, now_ms()],
                        )
                        .map_err(|e| error(path, e))?;
                        stored
                    }
                };
                tx.commit().map_err(|e| error(path, e))?;
                if let Some(wake) = announcer {
                    wake.announce(std::slice::from_ref(&topic), false);
                }
                Ok(topic)
            })
            .await?;
        self.inner.local.mark_dirty(&topic);
        self.wake(&[topic]);
        Ok(())
    }

    async fn acquire(
        &self,
        service: &str,
        holder: &str,
        want: u32,
        limits: &FlowLimits,
        lease_ms: i64,
    ) -> BackendResult<Grant> {
        let (service, holder, limits) = (service.to_owned(), holder.to_owned(), *limits);
        self.with_conn(move |conn, path| {
            let now = now_ms();
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(|e| error(path, e))?;
            let held = |mine: bool| -> BackendResult<u32> {
                let sql = if mine {
                    "SELECT COALESCE(SUM(held), 0) FROM flow_holders WHERE service = ?1 AND holder = ?2 AND expires_at > ?3"
                } else {
                    "SELECT COALESCE(SUM(held), 0) FROM flow_holders WHERE service = ?1 AND holder <> ?2 AND expires_at > ?3"
                };
                tx.query_row(sql, params![service, holder, now], |r| r.get::<_, i64>(0))
                    .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
                    .map_err(|e| error(path, e))
            };
            let (others, mine) = (held(false)?, held(true)?);
            let bucket = tx
                .query_row(
                    "SELECT tokens, refilled_at, paused_until FROM flow_services WHERE service = ?1",
                    [&service],
                    |r| {
                        Ok(flow::Bucket {
                            tokens: r.get(0)?,
                            refilled_at: r.get(1)?,
                            paused_until: r.get(2)?,
                        })
                    },
                )
                .optional()
                .map_err(|e| error(path, e))?
                .unwrap_or_else(|| flow::Bucket::full(&limits, now));
            let (granted, bucket, retry_at) = flow::decide(&limits, bucket, others, mine, want, now);
            tx.execute(
                "INSERT INTO flow_services (service, tokens, refilled_at, paused_until) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (service) DO UPDATE SET tokens = ?2, refilled_at = ?3",
                params![service, bucket.tokens, bucket.refilled_at, bucket.paused_until],
            )
            .map_err(|e| error(path, e))?;
            tx.execute(
                "INSERT INTO flow_holders (service, holder, held, expires_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (service, holder) DO UPDATE SET held = ?3, expires_at = ?4",
                params![service, holder, i64::from(mine) + i64::from(granted), now + lease_ms],
            )
            .map_err(|e| error(path, e))?;
            tx.commit().map_err(|e| error(path, e))?;
            Ok(Grant { granted, retry_at })
        })
        .await
    }

    async fn release(&self, service: &str, holder: &str, n: u32) -> BackendResult<()> {
        let (name, holder) = (service.to_owned(), holder.to_owned());
        let announcer = self.announcer();
        let topic = Topic::Tasks(service.to_owned()).name();
        let announced = vec![topic.clone()];
        self.with_conn(move |conn, path| {
            conn.execute(
                "UPDATE flow_holders SET held = MAX(held - ?3, 0) WHERE service = ?1 AND holder = ?2",
                params![name, holder, i64::from(n)],
            )
            .map_err(|e| error(path, e))?;
            if let Some(wake) = announcer {
                wake.announce(&announced, false);
            }
            Ok(())
        })
        .await?;
        self.inner.waiters.topic(&topic).notify_waiters();
        Ok(())
    }

    async fn back_off(&self, service: &str, until: i64) -> BackendResult<()> {
        let service = service.to_owned();
        self.with_conn(move |conn, path| {
            conn.execute(
                "INSERT INTO flow_services (service, tokens, refilled_at, paused_until) VALUES (?1, 0, ?3, ?2)
                 ON CONFLICT (service) DO UPDATE SET paused_until = MAX(paused_until, ?2)",
                params![service, until, now_ms()],
            )
            .map_err(|e| error(path, e))?;
            Ok(())
        })
        .await
    }

    async fn backing_off_until(&self, service: &str) -> BackendResult<i64> {
        let service = service.to_owned();
        self.with_reader(move |conn, path| {
            conn.query_row(
                "SELECT paused_until FROM flow_services WHERE service = ?1",
                [&service],
                |r| r.get(0),
            )
            .optional()
            .map(Option::unwrap_or_default)
            .map_err(|e| error(path, e))
        })
        .await
    }

    async fn wait_for_release(&self, service: &str, max_wait_ms: i64) {
        // A release (or a new task) in this process or another notifies the service's topic.
        let notify = self
            .inner
            .waiters
            .topic(&Topic::Tasks(service.to_owned()).name());
        let _ = tokio::time::timeout(
            Duration::from_millis(u64::try_from(max_wait_ms).unwrap_or(0)),
            notify.notified(),
        )
        .await;
    }

    async fn wait(&self, topic: &Topic, max_wait_ms: i64) {
        // Registered before the check: a message sent after it, by this process or another,
        // wakes this wait.
        let notify = self.inner.waiters.topic(&topic.name());
        let notified = notify.notified();
        let name = topic.name();
        let local = self.inner.local.clone();
        if local.holds(&name) {
            return;
        }
        let topic_name = name.clone();
        let next_due = self
            .with_reader(move |conn, path| {
                // A message is next available when it is due and its lease (if any) has run
                // out: one being handled now wakes no one until its lease ends.
                conn.query_row(
                    "SELECT MIN(MAX(deliver_at, leased_until)) FROM messages WHERE topic = ?1",
                    [name],
                    |r| r.get::<_, Option<i64>>(0),
                )
                .map_err(|e| error(path, e))
            })
            .await
            .ok()
            .flatten();
        let now = now_ms();
        let wait = match next_due {
            Some(due) if due <= now => {
                local.mark_dirty(&topic_name);
                return;
            }
            Some(due) => (due - now).min(max_wait_ms),
            None => max_wait_ms,
        };
        let timed_out = tokio::time::timeout(
            Duration::from_millis(u64::try_from(wait).unwrap_or(0)),
            notified,
        )
        .await
        .is_err();
        // Something came due (a delayed message, a lease that ran out), or a notification was
        // lost: the store is read again.
        if timed_out {
            local.mark_dirty(&topic_name);
        }
    }

    fn subscribe(&self, topic: &Topic, lease_ms: i64, capacity: usize) -> Subscription {
        let name = topic.name();
        self.inner.local.subscribe(&name, lease_ms, capacity);
        let backend = self.clone();
        Subscription::new(Subscribed {
            topic: name,
            release: Arc::new(move |topic| backend.unsubscribe(topic)),
        })
    }
}
