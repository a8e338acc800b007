//! Messages this process sends to its own workers (see `backend/local.rs`): stored in the
//! outbox with the commit that sends them, as every message is, but held from the relay until
//! their lease ends (`held_until`) and handed to this process's receivers from memory instead
//! of going through the transport. The commit that consumes one deletes its row; a process that
//! dies leaves the row, which the relay publishes once the lease has ended.

use std::collections::{HashMap, HashSet};

use super::Inner;
use super::errors::pg_error;
use super::outbox::{INSERT_OUTBOX, OutboxRow, insert_outbox};
use super::prepared::execute;
use super::transport::Transport;
use crate::backend::local::{Local, is_deferred};
use crate::backend::{BackendResult, Delivery, Message, Receipt, Settlement};

/// The prefix of the receipt of a held message: `held:ID:LEASE_END`.
const HELD: &str = "held:";

/// The receipt of a held message, whose lease ends at `lease_end`.
fn receipt(id: &str, lease_end: i64) -> Receipt {
    Receipt(format!("{HELD}{id}:{lease_end}"))
}

/// The message id and lease end of a held message's receipt.
fn held_row(receipt: &Receipt) -> Option<(&str, i64)> {
    let (id, lease_end) = receipt.0.strip_prefix(HELD)?.rsplit_once(':')?;
    Some((id, lease_end.parse().ok()?))
}

/// Whether `receipt` is a held message's.
pub(super) fn is_held(receipt: &Receipt) -> bool {
    held_row(receipt).is_some()
}

/// Whether the transport acknowledges `receipt`: neither a held message (its row is deleted in
/// the transaction that consumes it) nor a deferred result (which has none).
pub(super) fn is_transported(receipt: &Receipt) -> bool {
    !is_held(receipt) && !is_deferred(receipt)
}

/// What a transaction sends: the outbox rows, and which of them this process's receivers take.
#[derive(Default)]
pub(super) struct Outgoing {
    rows: Vec<OutboxRow>,
    /// The ids of `rows`.
    ids: HashSet<String>,
    /// The deliveries of held rows, by message id.
    held: HashMap<String, Delivery>,
    /// How many of `held` each topic has.
    held_per_topic: HashMap<String, usize>,
}

impl Outgoing {
    /// Adds `messages`: those due now for a topic a receiver of this process takes, and has
    /// room for, held for it under its lease; the others to publish.
    pub(super) fn add(&mut self, local: &Local, messages: &[Message], now: i64) {
        for m in messages {
            // Sent twice in one transaction: once is enough.
            if !self.ids.insert(m.id.clone()) {
                continue;
            }
            let topic = m.topic.name();
            let reserved = self.held_per_topic.get(&topic).copied().unwrap_or(0);
            let lease = (m.deliver_at <= now)
                .then(|| local.lease_for(&topic, reserved))
                .flatten();
            let held_until = match lease {
                Some(lease_ms) => {
                    let until = now.saturating_add(lease_ms);
                    *self.held_per_topic.entry(topic).or_default() += 1;
                    self.held.insert(
                        m.id.clone(),
                        Delivery {
                            receipt: receipt(&m.id, until),
                            message: m.clone(),
                        },
                    );
                    until
                }
                _ => 0,
            };
            self.rows.push(OutboxRow {
                message: m.clone(),
                held_until,
            });
        }
    }

    /// Whether any message is held for this process.
    pub(super) fn holds_any(&self) -> bool {
        !self.held.is_empty()
    }

    /// The rows to insert.
    pub(super) fn rows(&self) -> &[OutboxRow] {
        &self.rows
    }

    /// Splits what was stored, once committed, into the messages to publish and the held
    /// deliveries, with the versions of the rows written (`inserted`). A held message whose
    /// row was not written is published instead, so that it is not lost.
    pub(super) fn sent(mut self, inserted: &[(String, i64)]) -> Sent {
        let mut held = Vec::with_capacity(self.held.len());
        for (id, _) in inserted {
            if let Some(d) = self.held.remove(id) {
                held.push(d);
            }
        }
        let publish = self
            .rows
            .into_iter()
            .filter(|r| r.held_until == 0 || self.held.contains_key(&r.message.id))
            .map(|r| r.message)
            .collect();
        Sent {
            publish,
            held,
            rows: inserted.iter().cloned().collect(),
        }
    }
}

/// What a committed transaction sent.
#[derive(Default)]
pub(super) struct Sent {
    /// To publish through the transport.
    pub(super) publish: Vec<Message>,
    /// To hand to this process's receivers.
    pub(super) held: Vec<Delivery>,
    /// The versions of the outbox rows written, by message id.
    pub(super) rows: HashMap<String, i64>,
}

/// Deletes the rows of held messages, each as its receipt leased it: a row written again since
/// (the relay published it when the lease ended, and a retry with its id came) is left.
const DELETE_HELD: &str = "DELETE FROM codegen_outbox o
     USING UNNEST($1::TEXT[], $2::BIGINT[]) AS h(id, held_until)
     WHERE o.id = h.id AND o.held_until = h.held_until";

/// In a transaction, stores what it sends and consumes besides histories: the outbox rows of
/// `outgoing`, the deletion of the held messages among `consumed`, and the attempts of
/// `settlements`, pipelined; returns the ids and versions of the outbox rows written.
pub(super) async fn store_outgoing(
    tx: &deadpool_postgres::Transaction<'_>,
    worker: &str,
    outgoing: &Outgoing,
    consumed: &[Receipt],
    settlements: &[Settlement],
    now: i64,
) -> BackendResult<Vec<(String, i64)>> {
    let (held, leases): (Vec<&str>, Vec<i64>) = consumed.iter().filter_map(held_row).unzip();
    if !held.is_empty() && !outgoing.rows().is_empty() {
        // A retry reuses the id of the task message it replaces: that row must be deleted
        // before the retry's is inserted. Pipelined statements run in the order they are sent,
        // and with both prepared beforehand each is sent when its future is first polled.
        futures_util::future::try_join(
            tx.prepare_cached(DELETE_HELD),
            tx.prepare_cached(INSERT_OUTBOX),
        )
        .await
        .map_err(|e| pg_error("preparing the outbox statements", &e))?;
    }
    let delete_held = async {
        if held.is_empty() {
            return Ok(0);
        }
        execute(
            tx,
            "deleting the messages handled",
            DELETE_HELD,
            &[&held, &leases],
        )
        .await
    };
    // In this order: the deletion is sent first.
    let (_, inserted, ()) = futures_util::future::try_join3(
        delete_held,
        insert_outbox(tx, outgoing.rows(), now),
        crate::backend::inspect::postgres::record_attempts(tx, worker, settlements, now),
    )
    .await?;
    Ok(inserted)
}

impl<T: Transport> Inner<T> {
    /// Hands held deliveries to this process's receivers and wakes them; gives back the
    /// messages of those whose receiver left meanwhile, to publish.
    pub(super) fn hold(&self, held: Vec<Delivery>) -> Vec<Message> {
        if held.is_empty() {
            return Vec::new();
        }
        let unplaced = self.local.hold(held);
        self.held.notify_waiters();
        unplaced.into_iter().map(|d| d.message).collect()
    }

    /// Ends a subscription to `topic`: the last one hands back what was held for it, in a task
    /// of its own (nothing waits for it): the held messages published for any receiver, deferred
    /// results stored as any other.
    pub(super) fn unsubscribe(self: &std::sync::Arc<Self>, topic: &str) {
        let released = self.local.unsubscribe(topic);
        if released.leased.is_empty() && released.settlements.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                "no runtime to hand back what a stopping worker held; the relay publishes it when its leases run out"
            );
            return;
        };
        let inner = self.clone();
        runtime.spawn(async move {
            let published = async {
                if released.leased.is_empty() {
                    return Ok(());
                }
                let messages: Vec<Message> =
                    released.leased.iter().map(|d| d.message.clone()).collect();
                inner.transport.publish(&messages).await?;
                // Each row as it was held: one written again since is left.
                let (ids, leases): (Vec<&str>, Vec<i64>) = released
                    .leased
                    .iter()
                    .filter_map(|d| held_row(&d.receipt))
                    .unzip();
                let client = inner.client().await?;
                execute(
                    &client,
                    "clearing the messages handed back",
                    DELETE_HELD,
                    &[&ids, &leases],
                )
                .await?;
                Ok::<(), crate::backend::BackendError>(())
            };
            let stored = async {
                if released.settlements.is_empty() {
                    return Ok(());
                }
                inner.store(released.settlements).await
            };
            let (published, stored) = futures_util::future::join(published, stored).await;
            if let Err(err) = published {
                tracing::warn!(%err, "cannot publish what a stopping worker held; the relay publishes it when its leases run out");
            }
            if let Err(err) = stored {
                tracing::warn!(%err, "cannot store the results a stopping workflow worker held; their tasks run again when their leases run out");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{MessageBody, Topic};

    fn message(id: &str, topic: Topic, deliver_at: i64) -> Message {
        Message {
            id: id.to_owned(),
            topic,
            key: "i-1".to_owned(),
            deliver_at,
            body: MessageBody::Wake,
        }
    }

    #[test]
    fn only_due_messages_for_a_subscribed_topic_with_room_are_held() {
        let local = Local::default();
        local.subscribe(&Topic::Workflows.name(), 30_000, 2);
        let mut outgoing = Outgoing::default();
        let tasks = Topic::Tasks("billing".to_owned());
        outgoing.add(
            &local,
            &[
                message("due", Topic::Workflows, 1_000),
                message("later", Topic::Workflows, 5_000),
                message("task", tasks, 1_000),
                message("second", Topic::Workflows, 1_000),
                message("past-capacity", Topic::Workflows, 1_000),
            ],
            1_000,
        );
        let held: Vec<i64> = outgoing.rows().iter().map(|r| r.held_until).collect();
        assert_eq!(held, [31_000, 0, 0, 31_000, 0]);
        // "second" has no row written (as if the insert had left it out): published rather
        // than held, so that it is not lost.
        let sent = outgoing.sent(&[
            ("due".to_owned(), 7),
            ("later".to_owned(), 7),
            ("task".to_owned(), 7),
        ]);
        let published: Vec<&str> = sent.publish.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(published, ["later", "task", "second", "past-capacity"]);
        assert_eq!(sent.held.len(), 1);
        let receipt = &sent.held[0].receipt;
        assert_eq!(held_row(receipt), Some(("due", 31_000)));
        assert!(!is_transported(receipt));
    }

    #[test]
    fn a_message_sent_twice_in_one_transaction_is_stored_once() {
        let local = Local::default();
        local.subscribe(&Topic::Workflows.name(), 30_000, 8);
        let mut outgoing = Outgoing::default();
        let twice = message("twice", Topic::Workflows, 1_000);
        outgoing.add(&local, &[twice.clone(), twice], 1_000);
        assert_eq!(outgoing.rows().len(), 1);
        let sent = outgoing.sent(&[("twice".to_owned(), 7)]);
        assert!(sent.publish.is_empty());
        assert_eq!(sent.held.len(), 1);
    }

    #[test]
    fn a_held_receipt_keeps_an_id_with_colons() {
        let r = receipt("order-7:task:3", 42);
        assert_eq!(held_row(&r), Some(("order-7:task:3", 42)));
        assert!(is_transported(&Receipt(
            "tasks.billing@1:2:-1:-1".to_owned()
        )));
    }
}
