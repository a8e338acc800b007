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

use super::Clock;
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
    let mut replay = match Replay::start(workflow, instance_id, history, for_query) {
        Ok(replay) => replay,
        Err(activation) => return *activation,
    };
    if let Some(kept) = kept {
        *kept = Some(replay.state.clone());
    }
    // Delivered from the start, no group continues one delivered before.
    if let Err(Advance::Ended(activation)) = replay.advance(&history[1..]) {
        return *activation;
    }
    replay.finish()
}

/// A replay in progress: the workflow function suspended where the history so far left it,
/// and what it has been told. [`Replay::advance`] hands it the events recorded since and
/// [`Replay::finish`] says what comes next, so an activation costs what its news cost, however
/// long the history; replaying from the start ([`activate`]) is the same three steps, and the
/// way back after a crash or on another worker.
pub(crate) struct Replay {
    future: WorkflowFuture,
    state: Rc<RefCell<State>>,
    clock: Clock,
    run: u32,
    run_timeout_ms: Option<u64>,
    /// A query replays a history that has ended too.
    for_query: bool,
    /// The time of the last group of events replayed (none yet when only the start has
    /// been): events recorded at that time later can only be commands (the worker records
    /// each activation at a later time than the last).
    last_at: Option<i64>,
    /// What the function returned.
    result: Option<Result<Value, WorkflowError>>,
    cancel: bool,
    timed_out: bool,
    /// Children started and not yet ended, by command number.
    children: BTreeMap<u32, String>,
    /// Signals, cancellations and operators' records not delivered when the run stopped (for
    /// the next run, when it continues as new).
    undelivered: Vec<Event>,
}

/// Why [`Replay::advance`] did not leave the replay ready for more.
pub(crate) enum Advance {
    /// The replay ended: this is the activation.
    Ended(Box<Activation>),
    /// A resolving event was recorded at the time of the last group delivered: a replay from
    /// the start would deliver it with that group, so this replay cannot follow; replay anew.
    Regroup,
}

impl Replay {
    /// Starts the workflow of `history` (its first event starts it), with every command
    /// `history` records, and polls it once; the activation instead when it cannot start or
    /// has ended.
    pub(crate) fn start(
        workflow: &dyn WorkflowFn,
        instance_id: &str,
        history: &[HistoryEvent],
        for_query: bool,
    ) -> Result<Self, Box<Activation>> {
        let Some(first) = history.first() else {
            return Err(Box::new(parked(ParkReason::BadHistory(
                "it is empty".into(),
            ))));
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
            return Err(Box::new(parked(ParkReason::BadHistory(format!(
                "it starts with {}",
                first.event.describe()
            )))));
        };
        if !for_query && history.iter().any(|e| is_terminal(&e.event)) {
            return Err(Box::new(Activation {
                new_events: Vec::new(),
                outcome: Outcome::Finished,
                answers: None,
            }));
        }
        let recorded: BTreeMap<u32, Event> = history
            .iter()
            .filter_map(|e| e.event.command_seq().map(|seq| (seq, e.event.clone())))
            .collect();
        let state = Rc::new(RefCell::new(State::new(
            instance_id,
            recorded,
            clock.to_workflow(first.at),
            *first_seq,
        )));
        let ctx = WorkflowContext {
            state: state.clone(),
        };
        let mut future = match catch_unwind(AssertUnwindSafe(|| workflow.start(ctx, input.clone())))
        {
            Ok(future) => future,
            Err(panic) => return Err(Box::new(parked(ParkReason::Panic(panic_message(&panic))))),
        };
        let result = match poll(&mut future) {
            Ok(result) => result,
            Err(message) => return Err(Box::new(parked(ParkReason::Panic(message)))),
        };
        Ok(Self {
            future,
            state,
            clock: *clock,
            run: *run,
            run_timeout_ms: *run_timeout_ms,
            for_query,
            last_at: None,
            result,
            cancel: false,
            timed_out: false,
            children: BTreeMap::new(),
            undelivered: Vec::new(),
        })
    }

    /// Whether the run has stopped: it returned, was cancelled, timed out or continued as new.
    fn stopped(&self) -> bool {
        self.result.is_some()
            || self.cancel
            || self.timed_out
            || self.state.borrow().continued.is_some()
    }

    /// Delivers `events`, the history recorded after what the replay has taken, a group at a
    /// time: events recorded together (one commit, one timestamp) are delivered together, then
    /// the workflow is polled once. The grouping is a function of the history alone, so every
    /// replay, from the start or from where the last one stopped, sees the same steps.
    pub(crate) fn advance(&mut self, events: &[HistoryEvent]) -> Result<(), Advance> {
        if !self.for_query && events.iter().any(|e| is_terminal(&e.event)) {
            return Err(Advance::Ended(Box::new(Activation {
                new_events: Vec::new(),
                outcome: Outcome::Finished,
                answers: None,
            })));
        }
        let mut next = 0;
        // Commands recorded with the last group replayed (the previous activation's): they were
        // checked as the code issued them.
        while let Some(event) = events.get(next).filter(|e| Some(e.at) == self.last_at) {
            if resolves(&event.event, self.run) {
                return Err(Advance::Regroup);
            }
            next += 1;
        }
        // Every command of the history is known before the code runs on, as on a replay from
        // the start.
        {
            let mut s = self.state.borrow_mut();
            for event in events {
                if let Some(seq) = event.event.command_seq() {
                    s.recorded.entry(seq).or_insert_with(|| event.event.clone());
                }
            }
        }
        for event in events {
            self.note_child(&event.event);
        }
        while next < events.len() && !self.stopped() {
            let at = events[next].at;
            self.last_at = Some(at);
            let mut delivered = false;
            {
                let mut s = self.state.borrow_mut();
                s.now = self.clock.to_workflow(at);
                while let Some(event) = events.get(next).filter(|e| e.at == at) {
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
                        Event::CancelRequested { .. } => self.cancel = true,
                        Event::RunTimedOut { run: ended } if *ended == self.run => {
                            self.timed_out = true;
                        }
                        // Commands were checked as the code issued them; nothing to deliver.
                        _ => continue,
                    }
                    delivered = true;
                }
            }
            if self.cancel || self.timed_out || !delivered {
                continue;
            }
            self.result = match poll(&mut self.future) {
                Ok(result) => result,
                Err(message) => {
                    return Err(Advance::Ended(Box::new(parked(ParkReason::Panic(message)))));
                }
            };
            if let Some(mismatch) = self.state.borrow_mut().mismatch.take() {
                return Err(Advance::Ended(Box::new(parked(
                    ParkReason::NonDeterminism(mismatch),
                ))));
            }
        }
        self.undelivered
            .extend(events[next..].iter().filter_map(|e| match &e.event {
                Event::SignalReceived { .. }
                | Event::CancelRequested { .. }
                | Event::OperatorAction { .. } => Some(e.event.clone()),
                _ => None,
            }));
        Ok(())
    }

    /// Keeps count of the children started and not yet ended.
    fn note_child(&mut self, event: &Event) {
        match event {
            Event::ChildStarted {
                seq, workflow_id, ..
            } => {
                self.children.insert(*seq, workflow_id.clone());
            }
            Event::ChildCompleted { seq, .. } => {
                self.children.remove(seq);
            }
            _ => {}
        }
    }

    /// What comes next: the new commands and the outcome. A replay whose outcome is
    /// [`Outcome::Running`] can [`advance`] on the history recorded after what it was given:
    /// these commands, then the news that follows them.
    ///
    /// [`advance`]: Replay::advance
    pub(crate) fn finish(&mut self) -> Activation {
        if let Some(mismatch) = self.state.borrow_mut().mismatch.take() {
            return parked(ParkReason::NonDeterminism(mismatch));
        }
        // A query answers from its own handler alone (see `query`).
        let answers = if self.for_query {
            BTreeMap::new()
        } else {
            answer_all(&self.state)
        };
        let mut state = self.state.borrow_mut();
        let continued = state.continued.take();
        // A recorded command the code no longer issues is a change it cannot follow either,
        // unless the workflow is cancelled, timed out, continued as new or has just returned.
        if self.result.is_none() && !self.cancel && !self.timed_out && continued.is_none() {
            let next_seq = state.next_seq;
            if let Some((seq, missing)) = state.recorded.range(next_seq..).next() {
                return parked(ParkReason::NonDeterminism(NonDeterminism {
                    position: *seq,
                    expected: missing.describe(),
                    found: "nothing".into(),
                }));
            }
        }
        let children = || self.children.values().cloned().collect::<Vec<_>>();
        if self.cancel {
            return Activation {
                new_events: vec![Event::WorkflowCancelled],
                outcome: Outcome::Cancelled {
                    children: children(),
                },
                answers: Some(answers),
            };
        }
        if self.timed_out {
            let run = self.run;
            let limit = self.run_timeout_ms.map_or_else(String::new, |ms| {
                format!(" of {:?}", std::time::Duration::from_millis(ms))
            });
            return Activation {
                new_events: vec![Event::WorkflowFailed {
                    error: WorkflowError::new(format!(
                        "run {run} ran past its run timeout{limit}; raise it in StartOptions::run_timeout, or end the run sooner"
                    )),
                }],
                outcome: Outcome::TimedOut {
                    children: children(),
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
                return Activation {
                    new_events,
                    outcome: Outcome::ContinuedAsNew {
                        input,
                        carried: untaken.chain(self.undelivered.drain(..)).collect(),
                        next_seq: state.next_seq,
                    },
                    answers: Some(answers),
                };
            }
            Some(Err(error)) => Some(Err(error)),
            None => self.result.take(),
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
}

/// An activation that records nothing and parks the instance.
fn parked(reason: ParkReason) -> Activation {
    Activation {
        new_events: Vec::new(),
        outcome: Outcome::Parked(reason),
        answers: None,
    }
}

/// Whether `event` resolves something the workflow waits for (so is delivered and polled on),
/// in run `run`.
fn resolves(event: &Event, run: u32) -> bool {
    match event {
        Event::TaskCompleted { .. }
        | Event::TaskFailed { .. }
        | Event::TimerFired { .. }
        | Event::ChildCompleted { .. }
        | Event::SignalReceived { .. }
        | Event::CompletionResolved { .. }
        | Event::CancelRequested { .. } => true,
        Event::RunTimedOut { run: ended } => *ended == run,
        _ => false,
    }
}

fn is_terminal(event: &Event) -> bool {
    matches!(
        event,
        Event::WorkflowCompleted { .. } | Event::WorkflowFailed { .. } | Event::WorkflowCancelled
    )
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
