//! Replaying a workflow function against its history: events in, commands out, no I/O.
//!
//! The function runs from the start with a fresh [`WorkflowContext`]. It is polled once after
//! the start event and once after each group of events that resolve something (task results,
//! timers, signals, children's ends), in history order, a group being the events recorded
//! together; so a `select` sees what it saw the first time (of results that arrived together,
//! the first in its list wins). Commands it issues are checked against the recorded ones by number; those beyond the
//! history are the new commands the driver must carry out.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use serde_json::Value;

use super::context::{QueryHandler, Resolution, State, WorkflowContext};
use super::history::{Event, HistoryEvent, NonDeterminism, WorkflowError};

/// A workflow function with its input and output erased to JSON.
pub type WorkflowFuture = Pin<Box<dyn Future<Output = Result<Value, WorkflowError>>>>;

/// Starts a workflow function on a context and an input.
pub trait WorkflowFn: Send + Sync {
    /// Runs the function; the input is the JSON the instance was started with.
    fn start(&self, ctx: WorkflowContext, input: Value) -> WorkflowFuture;
}

/// What an activation decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The workflow waits for more events.
    Running,
    /// The workflow returned (its last new event is `WorkflowCompleted` or `WorkflowFailed`).
    Finished,
    /// The instance was cancelled (its last new event is `WorkflowCancelled`); `children` are
    /// the ids of the child instances still running, which must be cancelled too.
    Cancelled {
        /// Child instances to cancel.
        children: Vec<String>,
    },
    /// The code cannot continue this history; nothing is recorded and the instance waits for
    /// fixed code.
    Parked(ParkReason),
    /// The workflow asked to start afresh (see
    /// [`WorkflowContext::continue_as_new`]): the history is replaced by a new run's start.
    /// The new events are commands issued in the same step, carried out for the record.
    ContinuedAsNew {
        /// The next run's input.
        input: Value,
        /// What this run leaves the next: the signals it received and did not take (by name,
        /// in the order they came), and news it did not get to (signals, a cancellation, an
        /// operator's record).
        carried: Vec<Event>,
        /// The next run's first command number.
        next_seq: u32,
    },
    /// The run's time ran out (its last new event is `WorkflowFailed`); `children` are the
    /// ids of the child instances still running, which must be cancelled.
    TimedOut {
        /// Child instances to cancel.
        children: Vec<String>,
    },
}

/// Why an instance is parked.
#[derive(Debug, Clone, PartialEq)]
pub enum ParkReason {
    /// The code and the history disagree.
    NonDeterminism(NonDeterminism),
    /// The workflow function panicked.
    Panic(String),
    /// The history is malformed.
    BadHistory(String),
}

impl std::fmt::Display for ParkReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NonDeterminism(n) => n.fmt(f),
            Self::Panic(message) => write!(f, "the workflow panicked: {message}"),
            Self::BadHistory(message) => write!(f, "the history cannot be replayed: {message}"),
        }
    }
}

/// The result of replaying a history.
#[derive(Debug, Clone, PartialEq)]
pub struct Activation {
    /// Events to append to the history, commands first; empty when parked.
    pub new_events: Vec<Event>,
    /// What to do with the instance.
    pub outcome: Outcome,
    /// The answer of every query the workflow registered (see
    /// [`WorkflowContext::on_query`]), read in the state the replay left it in; a handler that
    /// cannot answer gives why. `None` when the workflow did not run (parked, or its history
    /// has ended).
    pub answers: Option<BTreeMap<String, Result<Value, String>>>,
}

/// Replays `history` through `workflow` and says what comes next.
pub fn activate(
    workflow: &dyn WorkflowFn,
    instance_id: &str,
    history: &[HistoryEvent],
) -> Activation {
    replay(workflow, instance_id, history, None)
}

/// Why a query got no answer.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryError {
    /// The workflow registered no handler of this name by the end of its history.
    Unknown(String),
    /// The history cannot be replayed by this code (see [`ParkReason`]).
    Parked(ParkReason),
    /// The handler's answer cannot be encoded.
    Encode(String),
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unknown(name) => write!(
                f,
                "the workflow has registered no query `{name}` by this point of its run (see `WorkflowContext::on_query`)"
            ),
            Self::Parked(reason) => write!(f, "the history cannot be replayed to answer: {reason}"),
            Self::Encode(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for QueryError {}

/// Replays `history` through `workflow` to its end and answers query `name` from the state
/// the workflow is in then. Nothing is recorded: a query never changes the instance.
pub fn query(
    workflow: &dyn WorkflowFn,
    instance_id: &str,
    history: &[HistoryEvent],
    name: &str,
) -> Result<Value, QueryError> {
    let mut state = None;
    let activation = replay(workflow, instance_id, history, Some(&mut state));
    if let Outcome::Parked(reason) = activation.outcome {
        return Err(QueryError::Parked(reason));
    }
    let state = state.ok_or_else(|| QueryError::Unknown(name.to_owned()))?;
    let state = state.borrow();
    let handler = state
        .queries
        .get(name)
        .ok_or_else(|| QueryError::Unknown(name.to_owned()))?;
    answer(handler).map_err(QueryError::Encode)
}

/// What a query handler answers; a panic becomes its message.
fn answer(handler: &QueryHandler) -> Result<Value, String> {
    catch_unwind(AssertUnwindSafe(handler)).unwrap_or_else(|panic| {
        Err(format!(
            "the query handler panicked: {}",
            panic_message(&panic)
        ))
    })
}

/// The answers of every registered query. The handlers are taken out of the state while they
/// run, so one that reads the context (its time, say) finds it free; one that issues a command
/// through it (a call, a timer, continuing as new) has the command undone and no answer, since
/// a query must not change the instance.
fn answer_all(state: &Rc<RefCell<State>>) -> BTreeMap<String, Result<Value, String>> {
    let handlers = std::mem::take(&mut state.borrow_mut().queries);
    let answers = handlers
        .iter()
        .map(|(name, handler)| {
            let (next_seq, commands, continued) = {
                let s = state.borrow();
                (s.next_seq, s.new_commands.len(), s.continued.is_some())
            };
            let answer = answer(handler);
            let mut s = state.borrow_mut();
            if s.next_seq == next_seq && s.continued.is_some() == continued {
                return (name.clone(), answer);
            }
            s.next_seq = next_seq;
            s.new_commands.truncate(commands);
            s.mismatch = None;
            if !continued {
                s.continued = None;
            }
            let error = "the query handler used the workflow's context to do something (a call, a timer, a signal wait, continuing as new): a query only reads the workflow's state".to_owned();
            (name.clone(), Err(error))
        })
        .collect();
    state.borrow_mut().queries = handlers;
    answers
}

/// [`activate`]; for a query, `kept` receives the replay's state, and a history that has
/// ended is replayed too.
fn replay(
    workflow: &dyn WorkflowFn,
    instance_id: &str,
    history: &[HistoryEvent],
    kept: Option<&mut Option<Rc<RefCell<State>>>>,
) -> Activation {
    let for_query = kept.is_some();
    let parked = |reason| Activation {
        new_events: Vec::new(),
        outcome: Outcome::Parked(reason),
        answers: None,
    };
    let Some((first, rest)) = history.split_first() else {
        return parked(ParkReason::BadHistory("it is empty".into()));
    };
    let Event::WorkflowStarted {
        input,
        clock,
        run,
        first_seq,
        run_timeout_ms,
        ..
    } = &first.event
    else {
        return parked(ParkReason::BadHistory(format!(
            "it starts with {}",
            first.event.describe()
        )));
    };
    if !for_query && history.iter().any(|e| is_terminal(&e.event)) {
        return Activation {
            new_events: Vec::new(),
            outcome: Outcome::Finished,
            answers: None,
        };
    }
    let recorded: BTreeMap<u32, Event> = history
        .iter()
        .filter_map(|e| e.event.command_seq().map(|seq| (seq, e.event.clone())))
        .collect();
    let clock = *clock;
    let state = Rc::new(RefCell::new(State::new(
        instance_id,
        recorded,
        clock.to_workflow(first.at),
        *first_seq,
    )));
    if let Some(kept) = kept {
        *kept = Some(state.clone());
    }
    let ctx = WorkflowContext {
        state: state.clone(),
    };

    let mut future = match catch_unwind(AssertUnwindSafe(|| workflow.start(ctx, input.clone()))) {
        Ok(future) => future,
        Err(panic) => return parked(ParkReason::Panic(panic_message(&panic))),
    };
    let mut result = match poll(&mut future) {
        Ok(result) => result,
        Err(message) => return parked(ParkReason::Panic(message)),
    };
    let mut cancel = false;
    let mut timed_out = false;
    let continued = |state: &Rc<RefCell<State>>| state.borrow().continued.is_some();
    // Events recorded together (one commit, one timestamp) are delivered together, then the
    // workflow is polled once: the grouping is a function of the history alone, so every
    // replay sees the same steps.
    let mut next = 0;
    while next < rest.len() && result.is_none() && !cancel && !timed_out && !continued(&state) {
        let at = rest[next].at;
        let mut delivered = false;
        {
            let mut s = state.borrow_mut();
            s.now = clock.to_workflow(at);
            while let Some(event) = rest.get(next).filter(|e| e.at == at) {
                next += 1;
                match &event.event {
                    Event::TaskCompleted { seq, output } => {
                        s.resolved
                            .insert(*seq, Resolution::Task(Ok(output.clone())));
                    }
                    Event::TaskFailed { seq, error } => {
                        s.resolved
                            .insert(*seq, Resolution::Task(Err(error.clone())));
                    }
                    Event::TimerFired { seq } => {
                        s.resolved.insert(*seq, Resolution::Timer);
                    }
                    Event::ChildCompleted { seq, result } => {
                        s.resolved.insert(*seq, Resolution::Child(result.clone()));
                    }
                    Event::SignalReceived { name, payload } => {
                        s.signals
                            .entry(name.clone())
                            .or_default()
                            .push_back(payload.clone());
                    }
                    Event::CompletionResolved { seq, result } => {
                        s.resolved
                            .insert(*seq, Resolution::Completion(result.clone()));
                    }
                    Event::CancelRequested { .. } => cancel = true,
                    Event::RunTimedOut { run: ended } if ended == run => timed_out = true,
                    // Commands were checked as the code issued them; nothing to deliver.
                    _ => continue,
                }
                delivered = true;
            }
        }
        if cancel || timed_out || !delivered {
            continue;
        }
        result = match poll(&mut future) {
            Ok(result) => result,
            Err(message) => return parked(ParkReason::Panic(message)),
        };
        if let Some(mismatch) = state.borrow_mut().mismatch.take() {
            return parked(ParkReason::NonDeterminism(mismatch));
        }
    }

    if let Some(mismatch) = state.borrow_mut().mismatch.take() {
        return parked(ParkReason::NonDeterminism(mismatch));
    }
    // A query answers from its own handler alone (see `query`).
    let answers = if for_query {
        BTreeMap::new()
    } else {
        answer_all(&state)
    };
    let mut state = state.borrow_mut();
    let continued = state.continued.take();
    // A recorded command the code no longer issues is a change it cannot follow either, unless
    // the workflow is cancelled, timed out, continued as new or has just returned.
    if result.is_none() && !cancel && !timed_out && continued.is_none() {
        let next_seq = state.next_seq;
        if let Some((seq, missing)) = state.recorded.range(next_seq..).next() {
            return parked(ParkReason::NonDeterminism(NonDeterminism {
                position: *seq,
                expected: missing.describe(),
                found: "nothing".into(),
            }));
        }
    }
    if cancel {
        let children = running_children(history);
        return Activation {
            new_events: vec![Event::WorkflowCancelled],
            outcome: Outcome::Cancelled { children },
            answers: Some(answers),
        };
    }
    if timed_out {
        let limit = run_timeout_ms.map_or_else(String::new, |ms| {
            format!(" of {:?}", std::time::Duration::from_millis(ms))
        });
        return Activation {
            new_events: vec![Event::WorkflowFailed {
                error: WorkflowError::new(format!(
                    "run {run} ran past its run timeout{limit}; raise it in StartOptions::run_timeout, or end the run sooner"
                )),
            }],
            outcome: Outcome::TimedOut {
                children: running_children(history),
            },
            answers: Some(answers),
        };
    }
    let mut new_events = std::mem::take(&mut state.new_commands);
    let outcome = match continued {
        Some(Ok(input)) => {
            let untaken =
                std::mem::take(&mut state.signals)
                    .into_iter()
                    .flat_map(|(name, queued)| {
                        queued
                            .into_iter()
                            .map(move |payload| Event::SignalReceived {
                                name: name.clone(),
                                payload,
                            })
                    });
            let undelivered = rest[next..].iter().filter_map(|e| match &e.event {
                Event::SignalReceived { .. }
                | Event::CancelRequested { .. }
                | Event::OperatorAction { .. } => Some(e.event.clone()),
                _ => None,
            });
            return Activation {
                new_events,
                outcome: Outcome::ContinuedAsNew {
                    input,
                    carried: untaken.chain(undelivered).collect(),
                    next_seq: state.next_seq,
                },
                answers: Some(answers),
            };
        }
        Some(Err(error)) => Some(Err(error)),
        None => result,
    };
    let outcome = match outcome {
        None => Outcome::Running,
        Some(Ok(output)) => {
            new_events.push(Event::WorkflowCompleted { output });
            Outcome::Finished
        }
        Some(Err(error)) => {
            new_events.push(Event::WorkflowFailed { error });
            Outcome::Finished
        }
    };
    Activation {
        new_events,
        outcome,
        answers: Some(answers),
    }
}

fn is_terminal(event: &Event) -> bool {
    matches!(
        event,
        Event::WorkflowCompleted { .. } | Event::WorkflowFailed { .. } | Event::WorkflowCancelled
    )
}

/// Children started and not yet ended.
fn running_children(history: &[HistoryEvent]) -> Vec<String> {
    let ended: Vec<u32> = history
        .iter()
        .filter_map(|e| match &e.event {
            Event::ChildCompleted { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect();
    history
        .iter()
        .filter_map(|e| match &e.event {
            Event::ChildStarted {
                seq, workflow_id, ..
            } if !ended.contains(seq) => Some(workflow_id.clone()),
            _ => None,
        })
        .collect()
}

/// Polls once; a panic becomes its message.
fn poll(future: &mut WorkflowFuture) -> Result<Option<Result<Value, WorkflowError>>, String> {
    let mut cx = Context::from_waker(Waker::noop());
    match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut cx))) {
        Ok(Poll::Ready(result)) => Ok(Some(result)),
        Ok(Poll::Pending) => Ok(None),
        Err(panic) => Err(panic_message(&panic)),
    }
}

/// The message of a caught panic.
pub(crate) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}
