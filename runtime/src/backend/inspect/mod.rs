//! What operators read: pages of instances, status counts, failed task attempts, per-service
//! figures and dead letters, each answered by an indexed query so that it stays fast with
//! millions of instances in the store.

pub(crate) mod postgres;
pub(crate) mod sqlite;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{BackendResult, DeadLetter, InstanceInfo, Status};

/// Which instances a page holds. Every field narrows the list; none set lists all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceFilter {
    /// The workflow name.
    pub name: Option<String>,
    /// The status.
    pub status: Option<Status>,
    /// The start of the instance id.
    pub id_prefix: Option<String>,
    /// Started at or after this time (milliseconds since the Unix epoch).
    pub started_from: Option<i64>,
    /// Started before this time.
    pub started_before: Option<i64>,
}

/// Where a page of instances continues: after the instance with this start time and id (the
/// list is newest first, ties by id, descending). Written `<start time>:<id>`, in JSON too.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Cursor {
    /// The start time of the last instance of the previous page.
    pub created_at: i64,
    /// Its id.
    pub id: String,
}

impl Cursor {
    /// The cursor after `instance`.
    pub fn after(instance: &InstanceInfo) -> Self {
        Self {
            created_at: instance.created_at,
            id: instance.id.clone(),
        }
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.created_at, self.id)
    }
}

impl From<Cursor> for String {
    fn from(cursor: Cursor) -> Self {
        cursor.to_string()
    }
}

impl TryFrom<String> for Cursor {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl FromStr for Cursor {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (at, id) = s
            .split_once(':')
            .filter(|(_, id)| !id.is_empty())
            .ok_or_else(|| {
                format!(
                    "cursor `{s}` is not `<start time>:<id>`: pass the `next` value a page printed"
                )
            })?;
        let created_at = at
            .parse()
            .map_err(|_| format!("cursor `{s}`: `{at}` is not a time in milliseconds"))?;
        Ok(Self {
            created_at,
            id: id.to_owned(),
        })
    }
}

/// How a task attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// It succeeded.
    Ok,
    /// It failed and will be tried again.
    Retry,
    /// It failed for good: the task is dead.
    Dead,
}

impl AttemptOutcome {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Retry => "retry",
            Self::Dead => "dead",
        }
    }

    /// The outcome of a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "ok" => Self::Ok,
            "retry" => Self::Retry,
            "dead" => Self::Dead,
            _ => return None,
        })
    }
}

/// One attempt of a task, as the service worker that ran it reports it.
///
/// Every attempt is counted in the service's figures; the attempts of a task that failed once
/// are kept too, one row each, so that an instance's timeline shows its retries, their errors
/// and the attempt that succeeded in the end. A first attempt that succeeds leaves no row (the
/// history holds its result), which keeps the common path to one write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskAttempt {
    /// The instance that called the task.
    pub instance_id: String,
    /// The command number of the call.
    pub seq: u32,
    /// The attempt, from 1.
    pub attempt: u32,
    /// How many times an operator retried the task from the dead letters before this attempt.
    pub redrive: u32,
    /// `Task::SERVICE`.
    pub service: String,
    /// `Task::NAME`.
    pub task: String,
    /// When the attempt started, in milliseconds since the Unix epoch.
    pub started_at: i64,
    /// When it ended.
    pub ended_at: i64,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// The error, when it failed.
    pub error: Option<String>,
    /// When the next attempt is due, when there is one.
    pub retry_at: Option<i64>,
}

impl TaskAttempt {
    /// Whether the attempt is kept as a row: it failed, or it follows one that did.
    pub fn is_kept(&self) -> bool {
        self.outcome != AttemptOutcome::Ok || self.attempt > 1 || self.redrive > 0
    }
}

/// What is known of one service's tasks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStats {
    /// The service.
    pub service: String,
    /// Tasks due and waiting for a worker, when the backend can tell.
    pub ready: Option<u64>,
    /// Tasks waiting for their retry time, when the backend can tell.
    pub delayed: Option<u64>,
    /// Since when the oldest due task waits (milliseconds since the Unix epoch).
    pub oldest_ready_at: Option<i64>,
    /// Attempts that succeeded within the window asked for.
    pub ok: u64,
    /// Attempts that failed and will be retried, within the window.
    pub retried: u64,
    /// Attempts after which the task died, within the window.
    pub dead: u64,
    /// Dead tasks now waiting in the dead-letter list.
    pub dead_letters: u64,
}

/// The messages waiting in one topic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueDepth {
    /// Due and waiting for a receiver.
    pub ready: u64,
    /// Not due yet (retries and timers).
    pub delayed: u64,
    /// Since when the oldest due message waits (milliseconds since the Unix epoch).
    pub oldest_ready_at: Option<i64>,
}

/// Which dead letters to list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadFilter {
    /// The service of the task (`tasks/<service>`).
    pub service: Option<String>,
    /// The instance.
    pub instance: Option<String>,
    /// Died at or after this time (milliseconds since the Unix epoch).
    pub since: Option<i64>,
}

/// The reads behind `codegen flows` and its console.
#[async_trait::async_trait]
pub trait Inspect: Send + Sync + 'static {
    /// A page of instances, newest first: at most `limit`, after `after` when given.
    async fn instances(
        &self,
        filter: &InstanceFilter,
        after: Option<&Cursor>,
        limit: usize,
    ) -> BackendResult<Vec<InstanceInfo>>;

    /// How many instances have each status, counted up to `cap` each (a count of `cap` means
    /// "`cap` or more"), among those of workflow `name` when given.
    async fn status_counts(
        &self,
        name: Option<&str>,
        cap: u64,
    ) -> BackendResult<Vec<(Status, u64)>>;

    /// The instances that instance `id` started, oldest first.
    async fn children(&self, id: &str) -> BackendResult<Vec<InstanceInfo>>;

    /// The failed attempts of the tasks of instance `id`, in order.
    async fn attempts(&self, id: &str) -> BackendResult<Vec<TaskAttempt>>;

    /// Each service's queue and its attempts since `since` (milliseconds since the Unix epoch).
    async fn services(&self, since: i64) -> BackendResult<Vec<ServiceStats>>;

    /// The messages waiting in `topic`, when the backend can tell.
    async fn queue(&self, topic: &crate::backend::Topic) -> BackendResult<Option<QueueDepth>>;

    /// Dead letters, newest first, at most `limit`.
    async fn dead(&self, filter: &DeadFilter, limit: usize) -> BackendResult<Vec<DeadLetter>>;

    /// One dead letter.
    async fn dead_letter(&self, id: &str) -> BackendResult<Option<DeadLetter>>;

    /// The answers of instance `id`'s queries as a worker last recorded them; `None` when it
    /// registered none (or has not run yet).
    async fn queries(&self, id: &str) -> BackendResult<Option<crate::backend::QueryAnswers>>;
}

/// The bounds of ids that start with `prefix`, for a range scan: `[prefix, end)`; `end` is
/// `None` when every id from `prefix` on matches.
pub(crate) fn prefix_range(prefix: &str) -> (String, Option<String>) {
    let mut end: Vec<char> = prefix.chars().collect();
    while let Some(last) = end.pop() {
        let next = match last {
            '\u{D7FF}' => Some('\u{E000}'),
            _ => char::from_u32(last as u32 + 1),
        };
        if let Some(next) = next {
            end.push(next);
            return (prefix.to_owned(), Some(end.into_iter().collect()));
        }
    }
    (prefix.to_owned(), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_bad_ones_say_what_they_should_be() {
        let cursor = Cursor {
            created_at: 1_700_000_000_123,
            id: "bill:ada:2".into(),
        };
        assert_eq!(cursor.to_string().parse::<Cursor>(), Ok(cursor));
        assert!(
            "x".parse::<Cursor>()
                .unwrap_err()
                .contains("<start time>:<id>")
        );
        assert!("soon:a".parse::<Cursor>().unwrap_err().contains("`soon`"));
    }

    #[test]
    fn a_prefix_range_holds_exactly_the_ids_with_the_prefix() {
        let (from, to) = prefix_range("bill-");
        assert_eq!((from.as_str(), to.as_deref()), ("bill-", Some("bill.")));
        let inside = |id: &str| id >= from.as_str() && to.as_deref().is_none_or(|t| id < t);
        assert!(inside("bill-ada") && inside("bill-") && !inside("bill") && !inside("bill.x"));
    }
}
