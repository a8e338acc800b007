//! The outbox: messages committed with the state, published after the transaction, and the relay
//! that publishes what a stopped process left.

use super::Inner;
use super::RELAY_AFTER_MS;
use super::errors::corrupt;
use super::errors::pg_error;
use super::errors::pool_error;
use super::held::{Sent, is_transported};
use super::prepared::{execute, query};
use super::state::to_json;
use super::transport::Transport;
use std::time::Duration;

use crate::backend::{BackendResult, Message, MessageBody, Receipt, Topic};
use crate::time::now_ms;

/// A message to store in the outbox.
pub(super) struct OutboxRow {
    pub(super) message: Message,
    /// Until when the relay leaves it alone, held for a receiver of this process (see
    /// `held.rs`); 0 for a message to publish.
    pub(super) held_until: i64,
}

/// Inserts outbox rows; returns each row's id and version, which the clearer deletes it by.
///
/// A row with the id of one still there replaces it: a retry reuses the id of the task message
/// it replaces, whose row may still wait for the clearer, and must not be dropped. The version
/// (the row's `xmin`, the transaction that wrote it) keeps the clearer of the older row from
/// deleting the newer one.
pub(super) async fn insert_outbox(
    tx: &deadpool_postgres::Transaction<'_>,
    rows: &[OutboxRow],
    now: i64,
) -> BackendResult<Vec<(String, i64)>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut ids = Vec::with_capacity(rows.len());
    let mut topics = Vec::with_capacity(rows.len());
    let mut keys = Vec::with_capacity(rows.len());
    let mut due = Vec::with_capacity(rows.len());
    let mut bodies = Vec::with_capacity(rows.len());
    let mut held = Vec::with_capacity(rows.len());
    for r in rows {
        let m = &r.message;
        ids.push(m.id.as_str());
        topics.push(m.topic.name());
        keys.push(m.key.as_str());
        due.push(m.deliver_at);
        bodies.push(to_json(&m.body)?);
        held.push(r.held_until);
    }
    let inserted = query(
        tx,
        "writing the outbox",
        INSERT_OUTBOX,
        &[&ids, &topics, &keys, &due, &bodies, &held, &now],
    )
    .await?;
    Ok(inserted.iter().map(|r| (r.get(0), r.get(1))).collect())
}

pub(super) const INSERT_OUTBOX: &str =
    "INSERT INTO codegen_outbox (id, topic, key, deliver_at, body, held_until, created_at)
     SELECT m.id, m.topic, m.key, m.deliver_at, m.body, m.held_until, $7
     FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::BIGINT[], $5::TEXT[], $6::BIGINT[])
         AS m(id, topic, key, deliver_at, body, held_until)
     ON CONFLICT (id) DO UPDATE SET topic = EXCLUDED.topic, key = EXCLUDED.key,
         deliver_at = EXCLUDED.deliver_at, body = EXCLUDED.body, held_until = EXCLUDED.held_until,
         created_at = EXCLUDED.created_at
     RETURNING id, xmin::TEXT::BIGINT";

impl<T: Transport> Inner<T> {
    pub(in crate::backend) async fn client(&self) -> BackendResult<deadpool_postgres::Object> {
        self.pool.get().await.map_err(pool_error)
    }

    /// After a commit: acknowledge what it consumed, hand over what it holds for this
    /// process's receivers, then publish the rest and have their outbox rows deleted.
    /// Acknowledging first is safe, since the outbox keeps the messages until they are
    /// published, and needed: a retry reuses the id of the delivery it replaces, which a
    /// transport that drops duplicates by id would drop while that one is pending.
    pub(super) async fn after_commit(&self, sent: Sent, acks: Vec<Receipt>) -> BackendResult<()> {
        {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            for r in &acks {
                pending.remove(r);
            }
        }
        let acks: Vec<Receipt> = acks.into_iter().filter(is_transported).collect();
        if !acks.is_empty()
            && let Err(err) = self.transport.ack(&acks).await
        {
            // Delivered again after the lease; the receiver drops it by id.
            tracing::warn!(%err, "acknowledging after a commit failed");
        }
        let mut messages = sent.publish;
        messages.extend(self.hold(sent.held));
        let rows = sent.rows;
        if !messages.is_empty() {
            if let Err(err) = self.transport.publish(&messages).await {
                // The outbox keeps them: the relay publishes them when the transport is back.
                tracing::warn!(%err, "publishing after a commit failed; the outbox relay will retry");
                return Ok(());
            }
            // Losing the outbox rows' deletion to a crash only publishes the messages again,
            // which the receivers drop by id: it is left to the clearer, off this path.
            let published = messages
                .into_iter()
                .filter_map(|m| rows.get(&m.id).map(|version| (m.id, *version)))
                .collect();
            if self.published.send(published).is_err() {
                tracing::debug!("the outbox clearer has stopped; the relay publishes these again");
            }
        }
        Ok(())
    }

    /// Deletes the outbox rows of published messages, each in the version that was published.
    async fn clear(&self, rows: &[(String, i64)]) -> BackendResult<()> {
        let (ids, versions): (Vec<&str>, Vec<i64>) =
            rows.iter().map(|(id, v)| (id.as_str(), *v)).unzip();
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| pg_error("clearing the outbox", &e))?;
        tx.batch_execute("SET LOCAL synchronous_commit TO OFF")
            .await
            .map_err(|e| pg_error("clearing the outbox", &e))?;
        execute(
            &tx,
            "clearing the outbox",
            "DELETE FROM codegen_outbox o USING UNNEST($1::TEXT[], $2::BIGINT[]) AS c(id, version)
             WHERE o.id = c.id AND o.xmin::TEXT::BIGINT = c.version",
            &[&ids, &versions],
        )
        .await?;
        tx.commit()
            .await
            .map_err(|e| pg_error("clearing the outbox", &e))
    }

    pub(super) async fn relay(&self, older_than_ms: i64) -> BackendResult<usize> {
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| pg_error("relaying the outbox", &e))?;
        let rows = tx
            .query(
                "SELECT id, topic, key, deliver_at, body FROM codegen_outbox
                 WHERE created_at <= $1 AND held_until <= $2
                 ORDER BY created_at, id LIMIT 500 FOR UPDATE SKIP LOCKED",
                &[&(now_ms() - older_than_ms), &now_ms()],
            )
            .await
            .map_err(|e| pg_error("reading the outbox", &e))?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut messages = Vec::with_capacity(rows.len());
        let mut ids = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.get(0);
            let topic: String = row.get(1);
            let body: String = row.get(4);
            let body: MessageBody =
                serde_json::from_str(&body).map_err(|e| corrupt("an outbox message", e))?;
            messages.push(Message {
                id: id.clone(),
                topic: Topic::from_name(&topic),
                key: row.get(2),
                deliver_at: row.get(3),
                body,
            });
            ids.push(id);
        }
        self.transport.publish(&messages).await?;
        tx.execute("DELETE FROM codegen_outbox WHERE id = ANY($1)", &[&ids])
            .await
            .map_err(|e| pg_error("clearing the outbox", &e))?;
        tx.commit()
            .await
            .map_err(|e| pg_error("clearing the outbox", &e))?;
        Ok(messages.len())
    }
}

/// Deletes the outbox rows of published messages, as many as have come at a time, in one
/// transaction that does not wait for the disk, until the backend is dropped.
pub(super) async fn clear_loop<T: Transport>(
    inner: std::sync::Weak<Inner<T>>,
    mut published: tokio::sync::mpsc::UnboundedReceiver<Vec<(String, i64)>>,
) {
    while let Some(mut rows) = published.recv().await {
        while let Ok(more) = published.try_recv() {
            rows.extend(more);
        }
        let Some(inner) = inner.upgrade() else { return };
        if let Err(err) = inner.clear(&rows).await {
            // The relay publishes them again; the receivers drop them by id.
            tracing::warn!(%err, "cannot clear published messages from the outbox");
        }
    }
}

pub(super) async fn relay_loop<T: Transport>(inner: std::sync::Weak<Inner<T>>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Some(inner) = inner.upgrade() else { return };
        match inner.relay(RELAY_AFTER_MS).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                messages = n,
                "published outbox messages left by a stopped process"
            ),
            Err(err) => tracing::warn!(%err, "the outbox relay failed; trying again"),
        }
    }
}
