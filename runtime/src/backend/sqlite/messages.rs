//! Storing, taking and settling messages in a transaction: the statements both traits share.

use std::path::Path;

use rusqlite::{Connection, params};

use super::error;
use crate::backend::local::{self, Local, is_deferred};
use crate::backend::{
    BackendError, BackendResult, Delivery, Message, MessageBody, Receipt, Settlement, Topic,
};
use crate::time::now_ms;

/// What a transaction stored: messages leased to this process's receivers as they were stored,
/// and the topics that got messages any receiver may take.
#[derive(Default)]
pub(super) struct Stored {
    pub(super) held: Vec<Delivery>,
    pub(super) open: Vec<String>,
}

impl Stored {
    /// The open topics, each once, for the other processes to hear of.
    pub(super) fn announced(&self) -> Vec<String> {
        let mut topics = self.open.clone();
        topics.sort();
        topics.dedup();
        topics
    }
}

/// Stores `messages`: those due now for a topic a receiver of this process takes, and has room
/// for, leased to it as they are stored (see `backend/local.rs`), the others for any receiver.
pub(super) fn insert_messages(
    tx: &rusqlite::Transaction<'_>,
    path: &Path,
    messages: &[Message],
    local: &Local,
    stored: &mut Stored,
) -> BackendResult<()> {
    let now = now_ms();
    let mut held_per_topic: std::collections::HashMap<String, usize> =
        std::collections::HashMap::new();
    for m in messages {
        let body =
            serde_json::to_string(&m.body).map_err(|e| BackendError::Invalid(e.to_string()))?;
        let topic = m.topic.name();
        let held = held_per_topic.get(&topic).copied().unwrap_or(0);
        let lease = (m.deliver_at <= now)
            .then(|| local.lease_for(&topic, held))
            .flatten();
        match lease {
            Some(lease_ms) => {
                let until = now + lease_ms;
                let inserted = tx
                    .prepare_cached(
                        "INSERT OR IGNORE INTO messages (id, topic, key, body, deliver_at, leased_until) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )
                    .map_err(|e| error(path, e))?
                    .execute(params![m.id, topic, m.key, body, m.deliver_at, until])
                    .map_err(|e| error(path, e))?;
                // A message sent before and still pending is not sent again.
                if inserted == 1 {
                    stored
                        .held
                        .push(local::delivery(tx.last_insert_rowid(), until, m));
                    *held_per_topic.entry(topic).or_default() += 1;
                }
            }
            None => {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO messages (id, topic, key, body, deliver_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(|e| error(path, e))?
                .execute(params![m.id, topic, m.key, body, m.deliver_at])
                .map_err(|e| error(path, e))?;
                stored.open.push(topic);
            }
        }
    }
    Ok(())
}

/// Applies settlements in a transaction: each delivery acknowledged or moved to the dead
/// letters, the messages its outcome sends stored, and the attempts counted.
pub(super) fn store_settlements(
    tx: &rusqlite::Transaction<'_>,
    path: &Path,
    settlements: &[Settlement],
    local: &Local,
    stored: &mut Stored,
) -> BackendResult<()> {
    let now = now_ms();
    for s in settlements {
        let (seq, lease) = parse_receipt(&s.receipt.0)?;
        if let Some(reason) = &s.dead {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO dead_letters (id, topic, key, body, reason, died_at)
                 SELECT id, topic, key, body, ?3, ?4 FROM messages WHERE seq = ?1 AND leased_until = ?2",
            )
            .map_err(|e| error(path, e))?
            .execute(params![seq, lease, reason, now])
            .map_err(|e| error(path, e))?;
        }
        delete_receipts(tx, path, std::slice::from_ref(&s.receipt))?;
        insert_messages(tx, path, &s.messages, local, stored)?;
    }
    crate::backend::inspect::sqlite::record_attempts(tx, path, settlements, now)
}

/// Deletes the messages of `receipts`; a deferred result's has no row (its settlement is
/// applied by [`store_settlements`]).
pub(super) fn delete_receipts(
    tx: &rusqlite::Transaction<'_>,
    path: &Path,
    receipts: &[Receipt],
) -> BackendResult<()> {
    let mut stmt = tx
        .prepare_cached("DELETE FROM messages WHERE seq = ?1 AND leased_until = ?2")
        .map_err(|e| error(path, e))?;
    for r in receipts.iter().filter(|r| !is_deferred(r)) {
        let (seq, lease) = parse_receipt(&r.0)?;
        stmt.execute(params![seq, lease])
            .map_err(|e| error(path, e))?;
    }
    Ok(())
}

/// The instances `deliveries` are for.
pub(super) fn instances(deliveries: &[Delivery]) -> usize {
    deliveries
        .iter()
        .map(|d| &d.message.key)
        .collect::<std::collections::HashSet<_>>()
        .len()
}

/// The topics that `messages` go to, each once.
pub(super) fn topics<'a>(messages: impl IntoIterator<Item = &'a Message>) -> Vec<String> {
    let mut topics: Vec<String> = messages.into_iter().map(|m| m.topic.name()).collect();
    topics.sort();
    topics.dedup();
    topics
}

pub(super) fn parse_receipt(receipt: &str) -> BackendResult<(i64, i64)> {
    receipt
        .split_once(':')
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .ok_or_else(|| {
            BackendError::Invalid(format!("`{receipt}` is not a receipt of this backend"))
        })
}

/// Takes the due messages of up to `?4` instances that no worker holds, found among the
/// `?4 * 8` oldest due messages (by the `messages_due` index, without reading the rest).
pub(super) const INSTANCES_AMONG_OLDEST: &str = "UPDATE messages SET leased_until = ?3 WHERE topic = ?1 AND deliver_at <= ?2 AND leased_until <= ?2
   AND key IN (SELECT key FROM (SELECT key, seq FROM messages WHERE topic = ?1 AND deliver_at <= ?2 AND leased_until <= ?2
       ORDER BY deliver_at, seq LIMIT ?4 * 8) m
     WHERE NOT EXISTS (SELECT 1 FROM messages h WHERE h.topic = ?1 AND h.key = m.key AND h.leased_until > ?2)
     GROUP BY key ORDER BY MIN(seq) LIMIT ?4)
 RETURNING seq, id, key, body, deliver_at";

/// The same among every due message: when the oldest all belong to instances being handled.
pub(super) const INSTANCES_AMONG_ALL: &str = "UPDATE messages SET leased_until = ?3 WHERE topic = ?1 AND deliver_at <= ?2 AND leased_until <= ?2
   AND key IN (SELECT key FROM messages m WHERE topic = ?1 AND deliver_at <= ?2 AND leased_until <= ?2
     AND NOT EXISTS (SELECT 1 FROM messages h WHERE h.topic = ?1 AND h.key = m.key AND h.leased_until > ?2)
     GROUP BY key ORDER BY MIN(seq) LIMIT ?4)
 RETURNING seq, id, key, body, deliver_at";

/// Takes up to `?4` due task messages, oldest first.
pub(super) const TASKS: &str =
    "UPDATE messages SET leased_until = ?3 WHERE seq IN (SELECT seq FROM messages WHERE topic = ?1
   AND deliver_at <= ?2 AND leased_until <= ?2 ORDER BY deliver_at, seq LIMIT ?4)
 RETURNING seq, id, key, body, deliver_at";

/// Takes the due messages of a topic under a lease, in one transaction.
pub(super) fn receive_in(
    conn: &mut Connection,
    path: &Path,
    topic: &Topic,
    sql: &str,
    now: i64,
    lease: i64,
    max: i64,
) -> BackendResult<Vec<Delivery>> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(|e| error(path, e))?;
    let mut rows: Vec<(i64, String, String, String, i64)> = {
        let mut stmt = tx.prepare_cached(sql).map_err(|e| error(path, e))?;
        let mapped = stmt
            .query_map(params![topic.name(), now, lease, max], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .map_err(|e| error(path, e))?;
        mapped
            .collect::<Result<_, _>>()
            .map_err(|e| error(path, e))?
    };
    rows.sort_by_key(|r| r.0);
    let mut out = Vec::with_capacity(rows.len());
    for (seq, id, key, body, deliver_at) in rows {
        let receipt = Receipt(format!("{seq}:{lease}"));
        match serde_json::from_str::<MessageBody>(&body) {
            Ok(body) => out.push(Delivery {
                receipt,
                message: Message {
                    id,
                    topic: topic.clone(),
                    key,
                    deliver_at,
                    body,
                },
            }),
            // A message that cannot be decoded never reaches a handler: it is set aside.
            Err(e) => {
                tx.execute(
                    "INSERT OR REPLACE INTO dead_letters (id, topic, key, body, reason, died_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![id, topic.name(), key, body, format!("the message does not decode: {e}"), now],
                )
                .map_err(|e| error(path, e))?;
                tx.execute("DELETE FROM messages WHERE seq = ?1", [seq])
                    .map_err(|e| error(path, e))?;
            }
        }
    }
    tx.commit().map_err(|e| error(path, e))?;
    Ok(out)
}
