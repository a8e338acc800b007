//! What operators see of one instance: what it waits on now, and its history as a timeline of
//! spans (each task attempt, timer and child as a bar, signals and actions as marks).
//!
//! Both are derived from the history and the task attempts the service workers record for tasks
//! that failed once ([`TaskAttempt`]); nothing here is stored. `codegen flows show` and the console's instance
//! page read the same values.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::backend::{AttemptOutcome, InstanceInfo, QueryAnswers, TaskAttempt};
use crate::workflow::{Clock, Event, HistoryEvent};

/// Everything about one instance an operator looks at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceDetail {
    /// Status, input, output or error.
    pub instance: InstanceInfo,
    /// The instances it started.
    pub children: Vec<InstanceInfo>,
    /// What it waits on now (empty once ended).
    pub waiting: Vec<Waiting>,
    /// Signals it received, by name, with how many.
    pub signals: BTreeMap<String, u32>,
    /// Its timeline.
    pub spans: Vec<Span>,
    /// The answers of its queries as a worker last recorded them, when it registers any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queries: Option<QueryAnswers>,
}

/// One thing a running instance waits on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Waiting {
    /// A task in flight.
    Task {
        /// The command number.
        seq: u32,
        /// `Task::SERVICE`.
        service: String,
        /// `Task::NAME`.
        task: String,
        /// The attempt under way or next (from 1).
        attempt: u32,
        /// When the next attempt is due, while it waits for a retry.
        retry_at: Option<i64>,
        /// The error of the last failed attempt.
        last_error: Option<String>,
        /// When it was scheduled.
        since: i64,
    },
    /// A durable timer.
    Timer {
        /// The command number.
        seq: u32,
        /// When it fires (milliseconds since the Unix epoch, real time).
        due: i64,
    },
    /// A child workflow.
    Child {
        /// The command number.
        seq: u32,
        /// The child's workflow.
        name: String,
        /// The child's instance id.
        id: String,
    },
    /// A completion token, for an outside system to resolve.
    Completion {
        /// The command number.
        seq: u32,
        /// When the token was made.
        since: i64,
    },
}

/// What a span of the timeline is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpanKind {
    /// One attempt of a task.
    Attempt,
    /// The wait between a failed attempt and the next.
    Backoff,
    /// A durable timer.
    Timer,
    /// A child workflow.
    Child,
    /// A signal (a mark).
    Signal,
    /// An operator's action (a mark).
    Action,
    /// The start, cancel request or end of the instance (a mark).
    Lifecycle,
}

/// How a span ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpanOutcome {
    /// It succeeded, fired or happened.
    Ok,
    /// It failed; a retry follows.
    Retried,
    /// It failed for good.
    Failed,
    /// It is still under way.
    Open,
}

/// One bar or mark of an instance's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// What it is.
    pub kind: SpanKind,
    /// The command it belongs to, if any.
    pub seq: Option<u32>,
    /// For people: `payments/request_payment`, `timer`, `signal paid`...
    pub label: String,
    /// The attempt number, for attempts.
    pub attempt: Option<u32>,
    /// When it started (milliseconds since the Unix epoch).
    pub start: i64,
    /// When it ended; `None` while open. Marks end where they start.
    pub end: Option<i64>,
    /// How it ended.
    pub outcome: SpanOutcome,
    /// The error, for failures.
    pub error: Option<String>,
}

impl Span {
    fn mark(kind: SpanKind, label: String, at: i64, outcome: SpanOutcome) -> Self {
        Self {
            kind,
            seq: None,
            label,
            attempt: None,
            start: at,
            end: Some(at),
            outcome,
            error: None,
        }
    }
}

struct TaskState {
    service: String,
    task: String,
    scheduled: i64,
    done: bool,
}

/// Builds what an operator sees of an instance from its history and failed attempts, at time
/// `now`.
pub fn detail(
    instance: InstanceInfo,
    children: Vec<InstanceInfo>,
    history: &[HistoryEvent],
    attempts: &[TaskAttempt],
    now: i64,
) -> InstanceDetail {
    let clock = match history.first().map(|e| &e.event) {
        Some(Event::WorkflowStarted { clock, .. }) => *clock,
        _ => Clock::Real,
    };
    let mut by_seq: BTreeMap<u32, Vec<&TaskAttempt>> = BTreeMap::new();
    for a in attempts {
        by_seq.entry(a.seq).or_default().push(a);
    }
    let mut spans = Vec::new();
    let mut tasks: BTreeMap<u32, TaskState> = BTreeMap::new();
    let mut timers: BTreeMap<u32, (i64, i64)> = BTreeMap::new();
    let mut child_starts: BTreeMap<u32, (String, String, i64)> = BTreeMap::new();
    let mut signals: BTreeMap<String, u32> = BTreeMap::new();
    let mut completions: BTreeMap<u32, i64> = BTreeMap::new();
    for event in history {
        let at = event.at;
        match &event.event {
            Event::WorkflowStarted {
                name, version, run, ..
            } => spans.push(Span::mark(
                SpanKind::Lifecycle,
                match run {
                    0 => format!("started {name} v{version}"),
                    n => format!("run {n} of {name} v{version} started (continued as new)"),
                },
                at,
                SpanOutcome::Ok,
            )),
            Event::CompletionCreated { seq, .. } => {
                completions.insert(*seq, at);
            }
            Event::CompletionResolved { seq, result } => {
                completions.remove(seq);
                let mut span = Span::mark(
                    SpanKind::Signal,
                    format!("completion {seq} resolved"),
                    at,
                    if result.is_ok() {
                        SpanOutcome::Ok
                    } else {
                        SpanOutcome::Failed
                    },
                );
                span.error = result.as_ref().err().cloned();
                spans.push(span);
            }
            Event::RunTimedOut { run } => spans.push(Span::mark(
                SpanKind::Lifecycle,
                format!("run {run} timed out"),
                at,
                SpanOutcome::Failed,
            )),
            Event::TaskScheduled {
                seq, service, name, ..
            } => {
                tasks.insert(
                    *seq,
                    TaskState {
                        service: service.clone(),
                        task: name.clone(),
                        scheduled: at,
                        done: false,
                    },
                );
            }
            Event::TaskCompleted { seq, .. } | Event::TaskFailed { seq, .. } => {
                let failed = match &event.event {
                    Event::TaskFailed { error, .. } => Some(error.to_string()),
                    _ => None,
                };
                if let Some(task) = tasks.get_mut(seq) {
                    task.done = true;
                    task_spans(&mut spans, *seq, task, by_seq.get(seq), Some((at, failed)));
                }
            }
            Event::TimerStarted { seq, fire_at } => {
                timers.insert(*seq, (at, clock.to_real(*fire_at)));
            }
            Event::TimerFired { seq } => {
                if let Some((started, _)) = timers.remove(seq) {
                    spans.push(Span {
                        kind: SpanKind::Timer,
                        seq: Some(*seq),
                        label: "timer".into(),
                        attempt: None,
                        start: started,
                        end: Some(at),
                        outcome: SpanOutcome::Ok,
                        error: None,
                    });
                }
            }
            Event::ChildStarted {
                seq,
                name,
                workflow_id,
                ..
            } => {
                child_starts.insert(*seq, (name.clone(), workflow_id.clone(), at));
            }
            Event::ChildCompleted { seq, result } => {
                if let Some((name, id, started)) = child_starts.remove(seq) {
                    spans.push(Span {
                        kind: SpanKind::Child,
                        seq: Some(*seq),
                        label: format!("child {name} {id}"),
                        attempt: None,
                        start: started,
                        end: Some(at),
                        outcome: if result.is_ok() {
                            SpanOutcome::Ok
                        } else {
                            SpanOutcome::Failed
                        },
                        error: result.as_ref().err().map(ToString::to_string),
                    });
                }
            }
            Event::SignalReceived { name, .. } => {
                *signals.entry(name.clone()).or_default() += 1;
                spans.push(Span::mark(
                    SpanKind::Signal,
                    format!("signal {name}"),
                    at,
                    SpanOutcome::Ok,
                ));
            }
            Event::OperatorAction { action, by, detail } => {
                let mut span = Span::mark(
                    SpanKind::Action,
                    format!("{action} by {by}"),
                    at,
                    SpanOutcome::Ok,
                );
                if !detail.is_empty() {
                    span.label = format!("{} ({detail})", span.label);
                }
                spans.push(span);
            }
            Event::MarkerRecorded { .. } => {}
            Event::CancelRequested { reason } => spans.push(Span::mark(
                SpanKind::Lifecycle,
                format!("cancel requested: {reason}"),
                at,
                SpanOutcome::Ok,
            )),
            Event::WorkflowCompleted { .. } => spans.push(Span::mark(
                SpanKind::Lifecycle,
                "completed".into(),
                at,
                SpanOutcome::Ok,
            )),
            Event::WorkflowFailed { error } => {
                let mut span = Span::mark(
                    SpanKind::Lifecycle,
                    "failed".into(),
                    at,
                    SpanOutcome::Failed,
                );
                span.error = Some(error.to_string());
                spans.push(span);
            }
            Event::WorkflowCancelled => spans.push(Span::mark(
                SpanKind::Lifecycle,
                "cancelled".into(),
                at,
                SpanOutcome::Ok,
            )),
        }
    }
    let ended = instance.status.is_final();
    let mut waiting = Vec::new();
    for (seq, task) in tasks.iter().filter(|(_, t)| !t.done) {
        let tried = by_seq.get(seq);
        task_spans(&mut spans, *seq, task, tried, None);
        if ended {
            continue;
        }
        let last = tried.and_then(|a| a.last());
        waiting.push(Waiting::Task {
            seq: *seq,
            service: task.service.clone(),
            task: task.task.clone(),
            // After a dead attempt, an operator's retry starts again from the first.
            attempt: last
                .filter(|a| a.outcome != AttemptOutcome::Dead)
                .map_or(1, |a| a.attempt + 1),
            retry_at: last.and_then(|a| a.retry_at).filter(|at| *at > now),
            last_error: last.and_then(|a| a.error.clone()),
            since: task.scheduled,
        });
    }
    for (seq, (started, due)) in &timers {
        spans.push(Span {
            kind: SpanKind::Timer,
            seq: Some(*seq),
            label: "timer".into(),
            attempt: None,
            start: *started,
            end: None,
            outcome: SpanOutcome::Open,
            error: None,
        });
        if !ended {
            waiting.push(Waiting::Timer {
                seq: *seq,
                due: *due,
            });
        }
    }
    for (seq, (name, id, started)) in &child_starts {
        spans.push(Span {
            kind: SpanKind::Child,
            seq: Some(*seq),
            label: format!("child {name} {id}"),
            attempt: None,
            start: *started,
            end: None,
            outcome: SpanOutcome::Open,
            error: None,
        });
        if !ended {
            waiting.push(Waiting::Child {
                seq: *seq,
                name: name.clone(),
                id: id.clone(),
            });
        }
    }
    if !ended {
        waiting.extend(completions.iter().map(|(seq, since)| Waiting::Completion {
            seq: *seq,
            since: *since,
        }));
    }
    spans.sort_by_key(|s| (s.start, s.seq));
    InstanceDetail {
        instance,
        children,
        waiting,
        signals,
        spans,
        queries: None,
    }
}

/// The spans of one task: its recorded attempts with the waits between them, and the attempt
/// that gave its result when it was not recorded (a first attempt that succeeded: from the
/// scheduling to the result, `result` being when and the error if it failed), or the one under
/// way.
fn task_spans(
    spans: &mut Vec<Span>,
    seq: u32,
    task: &TaskState,
    tried: Option<&Vec<&TaskAttempt>>,
    result: Option<(i64, Option<String>)>,
) {
    let label = format!("{}/{}", task.service, task.task);
    let mut next_start = task.scheduled;
    let mut next_attempt = 1;
    let mut died = false;
    let mut succeeded = false;
    for a in tried.into_iter().flatten() {
        spans.push(Span {
            kind: SpanKind::Attempt,
            seq: Some(seq),
            label: label.clone(),
            attempt: Some(a.attempt),
            start: a.started_at,
            end: Some(a.ended_at),
            outcome: match a.outcome {
                AttemptOutcome::Ok => SpanOutcome::Ok,
                AttemptOutcome::Retry => SpanOutcome::Retried,
                AttemptOutcome::Dead => SpanOutcome::Failed,
            },
            error: a.error.clone(),
        });
        died = a.outcome == AttemptOutcome::Dead;
        succeeded = a.outcome == AttemptOutcome::Ok;
        next_attempt = a.attempt + 1;
        next_start = a.ended_at;
        if let Some(retry_at) = a.retry_at {
            spans.push(Span {
                kind: SpanKind::Backoff,
                seq: Some(seq),
                label: format!("{label} backoff"),
                attempt: None,
                start: a.ended_at,
                end: Some(retry_at),
                outcome: SpanOutcome::Ok,
                error: None,
            });
            next_start = retry_at;
        } else {
            // After a dead attempt an operator's retry starts again from the first attempt.
            next_attempt = 1;
        }
    }
    match result {
        // The result is that of the attempt already shown.
        Some(_) if succeeded => {}
        Some((_, Some(_))) if died => {}
        Some((at, error)) => spans.push(Span {
            kind: SpanKind::Attempt,
            seq: Some(seq),
            label,
            attempt: Some(next_attempt),
            start: next_start.min(at),
            end: Some(at),
            outcome: if error.is_some() {
                SpanOutcome::Failed
            } else {
                SpanOutcome::Ok
            },
            error,
        }),
        None if died => {}
        None => spans.push(Span {
            kind: SpanKind::Attempt,
            seq: Some(seq),
            label,
            attempt: Some(next_attempt),
            start: next_start,
            end: None,
            outcome: SpanOutcome::Open,
            error: None,
        }),
    }
}
