//! The two traits every backend implements: workflow state, and messages.
//!
//! Everything above them (the workers, the client) is the same code for every backend. The
//! embedded backend ([`sqlite`]) implements both on one SQLite file; the distributed one keeps
//! state in PostgreSQL and messages in Apache Pulsar.
//!
//! State and the messages a change sends are committed together ([`StateStore::commit`]): a
//! process killed between the two would otherwise lose a task or send one twice for one change.

pub mod distributed;
pub mod flow;
pub mod inspect;
mod local;
#[cfg(feature = "pulsar")]
pub mod pulsar;
pub mod sqlite;
pub mod url;
mod wake;

pub use flow::{FlowLimits, Grant};
pub use inspect::{
    AttemptOutcome, Cursor, DeadFilter, Inspect, InstanceFilter, ServiceStats, TaskAttempt,
};
pub use url::{Backend, BackendUrl};

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::RetryPolicy;
use crate::workflow::{Event, HistoryEvent};

/// A backend failure. The message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The store is busy or unreachable; the operation may succeed later.
    #[error("{0}")]
    Unavailable(String),
    /// The stored data is damaged or from an incompatible version.
    #[error("{0}")]
    Corrupt(String),
    /// Another writer changed the instance first; reload and try again.
    #[error("instance `{0}` was changed by another worker")]
    Conflict(String),
    /// The request is wrong: unknown instance, conflicting start...
    #[error("{0}")]
    Invalid(String),
}

/// The result type of backends.
pub type BackendResult<T> = Result<T, BackendError>;

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Topic {
    /// The workflow engine: starts and events of instances, handled one at a time per instance.
    Workflows,
    /// The tasks of one service.
    Tasks(String),
}

impl Topic {
    /// The topic's name in storage: `workflows` or `tasks/<service>`.
    pub fn name(&self) -> String {
        match self {
            Self::Workflows => "workflows".to_owned(),
            Self::Tasks(service) => format!("tasks/{service}"),
        }
    }

    /// The topic a stored name names: the reverse of [`Topic::name`].
    pub fn from_name(name: &str) -> Self {
        match name.strip_prefix("tasks/") {
            Some(service) => Self::Tasks(service.to_owned()),
            None => Self::Workflows,
        }
    }
}

/// A message: an instance to start, an event for an instance, or a task to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Deterministic id: a second message with the same id is a duplicate and is dropped.
    pub id: String,
    /// Where it goes.
    pub topic: Topic,
    /// The workflow instance it is about.
    pub key: String,
    /// Not delivered before this time (milliseconds since the Unix epoch): timers and retries.
    pub deliver_at: i64,
    /// What it says.
    pub body: MessageBody,
}

/// The contents of a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MessageBody {
    /// Start an instance of `name` (the newest version) unless it exists.
    Start {
        /// The workflow name.
        name: String,
        /// The input.
        input: Value,
        /// The parent instance and the command number that started this one.
        parent: Option<(String, u32)>,
        /// The W3C `traceparent` of the span that started it, when traced.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trace: Option<String>,
        /// How long each run may take, in milliseconds, before it fails.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run_timeout_ms: Option<u64>,
    },
    /// Append an event to the history of the instance.
    Event {
        /// The event.
        event: Event,
    },
    /// Run a task.
    Task(TaskMessage),
    /// Replay the instance even if it is parked (after a fix was deployed).
    Wake,
    /// A client committed news to the history itself (a completion, which must be taken
    /// exactly once): replay the instance from the stored history, unless it is parked or has
    /// ended.
    News,
}

/// A task to run, with what it takes to retry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskMessage {
    /// `<instance id>/task/<command number>`: the idempotency key of the call.
    pub task_id: String,
    /// The instance that called it.
    pub instance_id: String,
    /// The command number in that instance.
    pub seq: u32,
    /// `Task::SERVICE`.
    pub service: String,
    /// `Task::NAME`.
    pub name: String,
    /// The task input.
    pub input: Value,
    /// The retry policy of the call.
    pub retry_policy: RetryPolicy,
    /// Attempts made before this one.
    pub attempt: u32,
    /// How many times an operator retried the task from the dead-letter list.
    #[serde(default)]
    pub redrive: u32,
    /// When the workflow scheduled it (milliseconds since the Unix epoch; 0 when unknown):
    /// where the retry policy's schedule-to-close bound counts from.
    #[serde(default)]
    pub scheduled_at: i64,
    /// The W3C `traceparent` of the activation that scheduled it, when traced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

/// A message handed to a worker, to acknowledge once handled.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// What acknowledges it.
    pub receipt: Receipt,
    /// The message.
    pub message: Message,
}

/// Identifies one delivery for [`MessageQueue::ack`] and the like.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Receipt(pub String);

/// A worker's subscription to a topic ([`MessageQueue::subscribe`]); it ends when dropped,
/// and what the backend held for it is handed back.
#[must_use = "the subscription ends when dropped"]
pub struct Subscription(Option<Box<dyn std::any::Any + Send + Sync>>);

impl Subscription {
    /// A subscription that holds nothing.
    pub fn none() -> Self {
        Self(None)
    }

    /// A subscription that ends by dropping `guard`.
    pub(crate) fn new(guard: impl std::any::Any + Send + Sync) -> Self {
        Self(Some(Box::new(guard)))
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("active", &self.0.is_some())
            .finish()
    }
}

/// The outcome of one delivery, for [`MessageQueue::settle`].
#[derive(Debug, Clone, PartialEq)]
pub struct Settlement {
    /// The delivery.
    pub receipt: Receipt,
    /// `Some(reason)` moves it to the dead-letter list; `None` acknowledges it.
    pub dead: Option<String>,
    /// Messages its outcome sends (a result, a retry).
    pub messages: Vec<Message>,
    /// The attempt it was, for operators: counted in its service's figures, and kept when it
    /// failed.
    pub attempt: Option<TaskAttempt>,
}

/// A message that could not be handled, kept for an operator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The message id.
    pub id: String,
    /// Its topic.
    pub topic: Topic,
    /// Its instance.
    pub key: String,
    /// The message body as stored (it may not decode: that can be why it is here).
    pub body: String,
    /// Why it is here.
    pub reason: String,
    /// When it got here, in milliseconds since the Unix epoch.
    pub died_at: i64,
}

/// Where an instance is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting for events or running.
    Running,
    /// Returned a value.
    Completed,
    /// Returned an error.
    Failed,
    /// Cancelled by a client.
    Cancelled,
    /// Stopped by a non-determinism or a panic until fixed code resumes it.
    Parked,
}

impl Status {
    /// Every status, in the order they are shown.
    pub const ALL: [Self; 5] = [
        Self::Running,
        Self::Parked,
        Self::Failed,
        Self::Completed,
        Self::Cancelled,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Parked => "parked",
        }
    }

    /// The status of a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "running" => Self::Running,
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            "parked" => Self::Parked,
            _ => return None,
        })
    }

    /// Whether the instance has ended.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

/// What the store knows of an instance, without its history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceInfo {
    /// The instance id.
    pub id: String,
    /// The workflow name.
    pub name: String,
    /// The version it is pinned to.
    pub version: u32,
    /// Where it is.
    pub status: Status,
    /// The input.
    pub input: Value,
    /// The output, once completed.
    pub output: Option<Value>,
    /// The error, once failed; why it is parked, when parked.
    pub error: Option<String>,
    /// The parent instance and the command number that started this one.
    pub parent: Option<(String, u32)>,
    /// The number of events in its history.
    pub events: u64,
    /// When it started, in milliseconds since the Unix epoch.
    pub created_at: i64,
    /// When it last changed.
    pub updated_at: i64,
}

impl InstanceInfo {
    /// A running instance of `name` that has no history yet (its version is chosen when it
    /// starts).
    pub fn new(id: &str, name: &str, input: Value, now: i64) -> Self {
        Self {
            id: id.to_owned(),
            name: name.to_owned(),
            version: 0,
            status: Status::Running,
            input,
            output: None,
            error: None,
            parent: None,
            events: 0,
            created_at: now,
            updated_at: now,
        }
    }
}

/// One atomic change of one instance: new events, its new status, the messages the change
/// sends, and the deliveries it consumed.
#[derive(Debug, Clone, PartialEq)]
pub struct Commit {
    /// The instance; created by the commit when `create` is set.
    pub instance: InstanceInfo,
    /// Create the instance (its history must be empty before).
    pub create: bool,
    /// The number of events the writer read; another writer that got there first makes the
    /// commit fail with [`BackendError::Conflict`].
    pub expected_events: u64,
    /// Events to append, each with its id (an id already in the history is skipped).
    pub events: Vec<(String, HistoryEvent)>,
    /// Messages to send.
    pub messages: Vec<Message>,
    /// Deliveries handled by this change, acknowledged with it.
    pub acks: Vec<Receipt>,
    /// Drop the history from this index on before appending (a workflow rewound to a retried
    /// task); `expected_events` still guards the whole change.
    pub truncate_to: Option<u64>,
    /// The answers of the instance's queries after this change, read by the worker that
    /// replayed it; `None` leaves the recorded ones, an empty map removes them.
    pub queries: Option<BTreeMap<String, Answer>>,
}

/// What a query answered when a worker last replayed the instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// The handler's value.
    Value(Value),
    /// Why there is no value: the handler panicked, or its answer could not be encoded or
    /// was too large.
    Error(String),
}

/// The answers of an instance's queries as the last activation left them (see
/// [`WorkflowContext::on_query`](crate::workflow::WorkflowContext::on_query)): what the
/// operators' tools show, since they run no workflow code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryAnswers {
    /// The number of events of the history they were read from; an instance with more events
    /// now has news no worker has replayed yet.
    pub events: u64,
    /// When they were recorded, in milliseconds since the Unix epoch.
    pub at: i64,
    /// The answers by query name.
    pub answers: BTreeMap<String, Answer>,
}

impl QueryAnswers {
    /// The answers of instance `id` from their stored columns.
    pub(crate) fn read(id: &str, events: i64, at: i64, answers: &str) -> BackendResult<Self> {
        let answers = serde_json::from_str(answers).map_err(|e| {
            BackendError::Corrupt(format!(
                "the recorded query answers of instance `{id}`: {e}"
            ))
        })?;
        Ok(Self {
            events: u64::try_from(events).unwrap_or(0),
            at,
            answers,
        })
    }
}

/// The stored form of a commit's query answers: `None` to leave them, `Some(None)` to remove
/// them, `Some(Some(json))` to record these.
pub(crate) fn stored_answers(
    answers: Option<&BTreeMap<String, Answer>>,
) -> BackendResult<Option<Option<String>>> {
    answers
        .map(|answers| {
            if answers.is_empty() {
                return Ok(None);
            }
            serde_json::to_string(answers)
                .map(Some)
                .map_err(|e| BackendError::Invalid(format!("query answers: {e}")))
        })
        .transpose()
}

/// Workflow state: instances and their histories.
#[async_trait::async_trait]
pub trait StateStore: Send + Sync + 'static {
    /// Applies commits atomically (all or none), with their messages and acknowledgements.
    async fn commit(&self, commits: Vec<Commit>) -> BackendResult<()>;

    /// An instance, without its history.
    async fn instance(&self, id: &str) -> BackendResult<Option<InstanceInfo>>;

    /// The history of an instance, oldest first, with event ids.
    async fn history(&self, id: &str) -> BackendResult<Vec<(String, HistoryEvent)>>;

    /// Instances by workflow name and status, newest first, at most `limit`.
    async fn list(
        &self,
        name: Option<&str>,
        status: Option<Status>,
        limit: usize,
    ) -> BackendResult<Vec<InstanceInfo>>;

    /// Deletes up to `limit` instances that ended (completed, failed or were cancelled) before
    /// `ended_before` (milliseconds since the Unix epoch), with their history, pending
    /// messages, dead letters and recorded attempts: instances of workflow `name` when given,
    /// else of every workflow not in `except`. Returns the ids deleted, oldest first.
    async fn purge_ended(
        &self,
        ended_before: i64,
        name: Option<&str>,
        except: &[String],
        limit: usize,
    ) -> BackendResult<Vec<String>>;

    /// Deletes instance `id` with everything of it, if it has ended; whether it did.
    async fn purge(&self, id: &str) -> BackendResult<bool>;

    /// Resolves when the instance may differ from `seen` (what the caller last read of it), or
    /// after `max_wait`. A change committed after `seen` was read is not missed.
    async fn wait_for_change(&self, seen: &InstanceInfo, max_wait: std::time::Duration);
}

/// Messages: at-least-once delivery, delays, leases, dead letters.
#[async_trait::async_trait]
pub trait MessageQueue: Send + Sync + 'static {
    /// Sends messages; a message whose id was already sent and is still pending is dropped.
    async fn send(&self, messages: Vec<Message>) -> BackendResult<()>;

    /// Takes up to `max` due messages of `topic`, hidden from other receivers for `lease_ms`
    /// (delivered again if not acknowledged by then). On [`Topic::Workflows`], all messages of
    /// one instance go to one receiver at a time.
    async fn receive(
        &self,
        topic: &Topic,
        max: usize,
        lease_ms: i64,
    ) -> BackendResult<Vec<Delivery>>;

    /// Acknowledges handled deliveries: they are not delivered again.
    async fn ack(&self, receipts: Vec<Receipt>) -> BackendResult<()>;

    /// Settles many deliveries in one step (one transaction where the backend has them): each is
    /// acknowledged, or moved to the dead-letter list, with the messages its outcome sends.
    async fn settle(&self, settlements: Vec<Settlement>) -> BackendResult<()>;

    /// The dead letters, oldest first.
    async fn dead_letters(&self) -> BackendResult<Vec<DeadLetter>>;

    /// Sends a dead letter again (as `message`, when given, else as it was) and removes it from the list.
    async fn redrive(&self, id: &str, message: Option<Message>) -> BackendResult<()>;

    /// Resolves when `topic` may have new messages, or after `max_wait_ms`.
    async fn wait(&self, topic: &Topic, max_wait_ms: i64);

    /// Says that a worker of this process takes the messages of `topic`, up to `capacity` at a
    /// time under leases of `lease_ms`, for as long as the subscription lives. A backend may
    /// then hand the messages this process sends to the topic straight to this process's
    /// receives, leased as they are stored, rather than through a round trip to the store or
    /// the broker (both backends do: see `backend/local.rs`). Messages stay at least once and
    /// in the store from the commit that sends them. Backends without it ignore it.
    fn subscribe(&self, topic: &Topic, lease_ms: i64, capacity: usize) -> Subscription {
        let _ = (topic, lease_ms, capacity);
        Subscription::none()
    }

    /// Takes up to `want` permits to run tasks of `service` for the worker `holder`, under
    /// `limits` (see [`flow`]), and renews the permits it holds for `lease_ms`. Fewer when the
    /// service is at its in-flight limit, out of tokens or backing off.
    async fn acquire(
        &self,
        service: &str,
        holder: &str,
        want: u32,
        limits: &FlowLimits,
        lease_ms: i64,
    ) -> BackendResult<Grant>;

    /// Gives back `n` permits of `holder`; workers waiting for one are woken.
    async fn release(&self, service: &str, holder: &str, n: u32) -> BackendResult<()>;

    /// Resolves when a permit of `service` may have been released (by this process, or
    /// another where the backend can tell), or after `max_wait_ms`.
    async fn wait_for_release(&self, service: &str, max_wait_ms: i64);

    /// Makes every worker of `service` start nothing before `until` (milliseconds since the
    /// Unix epoch): the service answered 429 or 503 with `Retry-After`.
    async fn back_off(&self, service: &str, until: i64) -> BackendResult<()>;

    /// Until when `service` backs off (0 when it does not).
    async fn backing_off_until(&self, service: &str) -> BackendResult<i64>;
}

/// The history id of an event the engine produced (commands and the end). Events that arrive
/// as messages take the message id, which is deterministic too (`<instance>/result/<seq>`...).
pub fn event_id(event: &Event) -> String {
    match event {
        Event::WorkflowStarted { .. } => "start".to_owned(),
        Event::TaskScheduled { seq, .. }
        | Event::TimerStarted { seq, .. }
        | Event::ChildStarted { seq, .. }
        | Event::MarkerRecorded { seq, .. }
        | Event::CompletionCreated { seq, .. } => format!("command/{seq}"),
        Event::CompletionResolved { seq, .. } => format!("completion/{seq}"),
        Event::RunTimedOut { run } => format!("run-timeout/{run}"),
        Event::TaskCompleted { seq, .. } | Event::TaskFailed { seq, .. } => format!("result/{seq}"),
        Event::TimerFired { seq } => format!("timer/{seq}"),
        Event::ChildCompleted { seq, .. } => format!("child/{seq}"),
        Event::SignalReceived { .. } => "signal".to_owned(),
        Event::OperatorAction { .. } => "action".to_owned(),
        Event::CancelRequested { .. } => "cancel".to_owned(),
        Event::WorkflowCompleted { .. }
        | Event::WorkflowFailed { .. }
        | Event::WorkflowCancelled => "end".to_owned(),
    }
}
