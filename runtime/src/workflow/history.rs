//! What a workflow instance's history is made of.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Clock;
use crate::{RetryPolicy, TaskError};

/// One entry of a history: what happened, and when (milliseconds since the Unix epoch).
///
/// `at` is what [`WorkflowContext::now`](super::WorkflowContext::now) returns while the event is
/// being replayed, so time in a workflow is the same on every replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEvent {
    /// When the event was recorded, in milliseconds since the Unix epoch.
    pub at: i64,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
}

/// Something that happened to a workflow instance.
///
/// Events with a `seq` that the workflow issues (scheduling a task, starting a timer or a child,
/// recording a marker) are its *commands*: they are numbered in the order the workflow code
/// issues them, and a replay must issue the same ones at the same numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The instance was started: always the first event.
    WorkflowStarted {
        /// The workflow name.
        name: String,
        /// The version the instance is pinned to.
        version: u32,
        /// The input.
        input: Value,
        /// The clock the instance is pinned to.
        #[serde(default, skip_serializing_if = "Clock::is_real")]
        clock: Clock,
        /// The W3C `traceparent` of the instance's `workflow` span, when traced: every
        /// activation of the instance is its child.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trace: Option<String>,
        /// Which run of the instance this is: 0 for the first, one more after each
        /// [`continue_as_new`](super::WorkflowContext::continue_as_new).
        #[serde(default, skip_serializing_if = "is_zero")]
        run: u32,
        /// The number of this run's first command. Runs number their commands on from where the
        /// run before stopped, so a task, timer or child of an earlier run is never taken for one
        /// of this run, and idempotency keys stay unique across runs.
        #[serde(default, skip_serializing_if = "is_zero")]
        first_seq: u32,
        /// How long the run may take before it fails, in milliseconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run_timeout_ms: Option<u64>,
    },
    /// Command: a task was scheduled.
    TaskScheduled {
        /// The command number.
        seq: u32,
        /// `Task::SERVICE`.
        service: String,
        /// `Task::NAME`.
        name: String,
        /// The task input.
        input: Value,
        /// The retry policy of this call.
        retry_policy: RetryPolicy,
    },
    /// The task of command `seq` succeeded.
    TaskCompleted {
        /// The command number.
        seq: u32,
        /// The task output.
        output: Value,
    },
    /// The task of command `seq` failed for good (permanent error or last attempt).
    TaskFailed {
        /// The command number.
        seq: u32,
        /// The last error.
        error: TaskError,
    },
    /// Command: a durable timer was started.
    TimerStarted {
        /// The command number.
        seq: u32,
        /// When it fires, in milliseconds since the Unix epoch.
        fire_at: i64,
    },
    /// The timer of command `seq` fired.
    TimerFired {
        /// The command number.
        seq: u32,
    },
    /// A signal arrived from a client.
    SignalReceived {
        /// The signal name.
        name: String,
        /// Its value.
        payload: Value,
    },
    /// Command: a child workflow was started.
    ChildStarted {
        /// The command number.
        seq: u32,
        /// The child's workflow name.
        name: String,
        /// The child's instance id.
        workflow_id: String,
        /// The child's input.
        input: Value,
    },
    /// The child of command `seq` ended.
    ChildCompleted {
        /// The command number.
        seq: u32,
        /// Its output, or why it failed.
        result: Result<Value, WorkflowError>,
    },
    /// Command: a patch marker (see [`WorkflowContext::patched`](super::WorkflowContext::patched)).
    MarkerRecorded {
        /// The command number.
        seq: u32,
        /// The change id.
        change_id: String,
    },
    /// Command: a completion token was made, for an outside system to resolve with
    /// [`Client::complete`](crate::Client::complete).
    CompletionCreated {
        /// The command number.
        seq: u32,
        /// The token; it holds a random part, so it cannot be guessed from the instance id.
        token: String,
    },
    /// The completion of command `seq` was resolved from outside.
    CompletionResolved {
        /// The command number.
        seq: u32,
        /// The value it was completed with, or the error it was failed with.
        result: Result<Value, String>,
    },
    /// The run's time ran out (see `run_timeout_ms` of [`Event::WorkflowStarted`]).
    RunTimedOut {
        /// The run it ends.
        run: u32,
    },
    /// An operator acted on the instance (from `codegen flows`, its console, or a client that
    /// names itself): kept for the record, ignored by replay.
    OperatorAction {
        /// What was done: `signal`, `cancel`, `resume`, `retry`...
        action: String,
        /// Who or what did it.
        by: String,
        /// Details: the signal name, the reason, the dead task.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        detail: String,
    },
    /// A client asked to cancel the instance.
    CancelRequested {
        /// Why.
        reason: String,
    },
    /// The workflow function returned a value.
    WorkflowCompleted {
        /// The output.
        output: Value,
    },
    /// The workflow function returned an error.
    WorkflowFailed {
        /// The error.
        error: WorkflowError,
    },
    /// The instance was cancelled.
    WorkflowCancelled,
}

impl Event {
    /// The command number, for commands.
    pub fn command_seq(&self) -> Option<u32> {
        match self {
            Self::TaskScheduled { seq, .. }
            | Self::TimerStarted { seq, .. }
            | Self::ChildStarted { seq, .. }
            | Self::MarkerRecorded { seq, .. }
            | Self::CompletionCreated { seq, .. } => Some(*seq),
            _ => None,
        }
    }

    /// The command a result answers: a task's result, a timer's firing, a child's end, a
    /// completion.
    pub fn result_seq(&self) -> Option<u32> {
        match self {
            Self::TaskCompleted { seq, .. }
            | Self::TaskFailed { seq, .. }
            | Self::TimerFired { seq }
            | Self::ChildCompleted { seq, .. }
            | Self::CompletionResolved { seq, .. } => Some(*seq),
            _ => None,
        }
    }

    /// Whether `other` is the same command, as far as replay is concerned: the same kind, and
    /// the same task, child workflow or change id. Inputs and times may differ.
    pub(crate) fn same_command(&self, other: &Self) -> bool {
        match (self, other) {
            (
                Self::TaskScheduled {
                    service: a,
                    name: b,
                    ..
                },
                Self::TaskScheduled {
                    service: c,
                    name: d,
                    ..
                },
            ) => a == c && b == d,
            (Self::TimerStarted { .. }, Self::TimerStarted { .. })
            | (Self::CompletionCreated { .. }, Self::CompletionCreated { .. }) => true,
            (Self::ChildStarted { name: a, .. }, Self::ChildStarted { name: b, .. }) => a == b,
            (
                Self::MarkerRecorded { change_id: a, .. },
                Self::MarkerRecorded { change_id: b, .. },
            ) => a == b,
            _ => false,
        }
    }

    /// A short description for people: `task payments/request_payment`, `timer`...
    pub fn describe(&self) -> String {
        match self {
            Self::WorkflowStarted { name, version, .. } => format!("start of {name} v{version}"),
            Self::TaskScheduled { service, name, .. } => format!("task {service}/{name}"),
            Self::TaskCompleted { seq, .. } => format!("completion of command {seq}"),
            Self::TaskFailed { seq, .. } => format!("failure of command {seq}"),
            Self::TimerStarted { .. } => "timer".to_owned(),
            Self::TimerFired { seq } => format!("timer {seq} fired"),
            Self::SignalReceived { name, .. } => format!("signal `{name}`"),
            Self::ChildStarted { name, .. } => format!("child workflow {name}"),
            Self::ChildCompleted { seq, .. } => format!("end of child {seq}"),
            Self::MarkerRecorded { change_id, .. } => format!("patch marker `{change_id}`"),
            Self::CompletionCreated { .. } => "completion token".to_owned(),
            Self::CompletionResolved { seq, .. } => format!("completion {seq} resolved"),
            Self::RunTimedOut { run } => format!("run {run} timed out"),
            Self::CancelRequested { .. } => "cancel request".to_owned(),
            Self::OperatorAction { action, by, .. } => format!("{action} by {by}"),
            Self::WorkflowCompleted { .. } => "completion".to_owned(),
            Self::WorkflowFailed { .. } => "failure".to_owned(),
            Self::WorkflowCancelled => "cancellation".to_owned(),
        }
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Why a workflow failed, as its caller (a client or a parent workflow) sees it.
///
/// Any error converts into it with `?`, keeping its message and causes; a [`TaskError`] (also
/// as the cause of another error) is kept whole, so a parent or an operator still sees its
/// status and body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowError {
    message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    task: Option<Box<TaskError>>,
}

impl WorkflowError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            task: None,
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The task error this one came from, when it came from one: its status, body and kind.
    pub fn task_error(&self) -> Option<&TaskError> {
        self.task.as_deref()
    }

    /// The HTTP status of the task error this one came from.
    pub fn status(&self) -> Option<u16> {
        self.task_error().and_then(TaskError::status)
    }
}

impl fmt::Display for WorkflowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error + 'static> From<E> for WorkflowError {
    fn from(err: E) -> Self {
        let mut message = err.to_string();
        let mut task = (&err as &(dyn std::error::Error + 'static))
            .downcast_ref::<TaskError>()
            .cloned();
        let mut source = err.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            if task.is_none() {
                task = cause.downcast_ref::<TaskError>().cloned();
            }
            source = cause.source();
        }
        Self {
            message,
            task: task.map(Box::new),
        }
    }
}

/// The workflow code issued a different command than its history records at the same position:
/// the code changed in a way that running instances cannot follow.
///
/// The instance is parked, not changed; deploy code that issues the recorded command (guard the
/// change with [`WorkflowContext::patched`](super::WorkflowContext::patched)) and resume it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NonDeterminism {
    /// The command number where code and history part.
    pub position: u32,
    /// What the history records there.
    pub expected: String,
    /// What the code issued there (`nothing` when it issued no command).
    pub found: String,
}

impl fmt::Display for NonDeterminism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "non-determinism at command {}: the history records {}, the code issued {}; \
             restore the old behaviour for running instances (see `patched`) and resume the instance",
            self.position, self.expected, self.found
        )
    }
}

impl std::error::Error for NonDeterminism {}
