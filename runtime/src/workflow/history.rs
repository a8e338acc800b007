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
            | Self::MarkerRecorded { seq, .. } => Some(*seq),
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
            (Self::TimerStarted { .. }, Self::TimerStarted { .. }) => true,
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
            Self::CancelRequested { .. } => "cancel request".to_owned(),
            Self::OperatorAction { action, by, .. } => format!("{action} by {by}"),
            Self::WorkflowCompleted { .. } => "completion".to_owned(),
            Self::WorkflowFailed { .. } => "failure".to_owned(),
            Self::WorkflowCancelled => "cancellation".to_owned(),
        }
    }
}

/// Why a workflow failed, as its caller (a client or a parent workflow) sees it.
///
/// Any error converts into it with `?`, keeping its message and causes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowError {
    message: String,
}

impl WorkflowError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for WorkflowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error> From<E> for WorkflowError {
    fn from(err: E) -> Self {
        let mut message = err.to_string();
        let mut source = err.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        Self { message }
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
