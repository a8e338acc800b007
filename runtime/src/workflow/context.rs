//! The context a workflow function gets: every durable thing it does goes through it.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::history::{Event, NonDeterminism, WorkflowError};
use crate::{RetryPolicy, Task, TaskError};

/// How a command was resolved.
#[derive(Debug, Clone)]
pub(crate) enum Resolution {
    Task(Result<Value, TaskError>),
    Timer,
    Child(Result<Value, WorkflowError>),
}

/// The replay state shared by the context and its futures. One per activation.
pub(crate) struct State {
    pub(crate) instance_id: String,
    /// Commands of the history, by number.
    pub(crate) recorded: BTreeMap<u32, Event>,
    /// Commands the code issued beyond the history.
    pub(crate) new_commands: Vec<Event>,
    pub(crate) next_seq: u32,
    pub(crate) resolved: BTreeMap<u32, Resolution>,
    pub(crate) signals: BTreeMap<String, VecDeque<Value>>,
    /// The time of the event being replayed, in milliseconds since the Unix epoch.
    pub(crate) now: i64,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) mismatch: Option<NonDeterminism>,
}

impl State {
    pub(crate) fn new(instance_id: &str, recorded: BTreeMap<u32, Event>, now: i64) -> Self {
        Self {
            instance_id: instance_id.to_owned(),
            recorded,
            new_commands: Vec::new(),
            next_seq: 0,
            resolved: BTreeMap::new(),
            signals: BTreeMap::new(),
            now,
            rng: ChaCha8Rng::seed_from_u64(fnv1a(instance_id.as_bytes())),
            mismatch: None,
        }
    }

    /// Issues a command: checks it against the history at its number, or records it as new.
    fn command(&mut self, make: impl FnOnce(u32) -> Event) -> u32 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let command = make(seq);
        match self.recorded.get(&seq) {
            Some(recorded) if recorded.same_command(&command) => {}
            Some(recorded) => {
                self.mismatch.get_or_insert(NonDeterminism {
                    position: seq,
                    expected: recorded.describe(),
                    found: command.describe(),
                });
            }
            None => self.new_commands.push(command),
        }
        seq
    }
}

/// FNV-1a: a stable hash for seeding, the same on every platform and release.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What a workflow function uses to call tasks, sleep, wait for signals, start children and
/// read the time: everything that must come out the same when the function is replayed.
///
/// A workflow function runs again from the start each time its instance has news, against the
/// recorded history: calls whose results are recorded return them at once, and only new calls go
/// out. So a workflow must do nothing that is not the same on every run except through its
/// context: no clock, no random numbers, no I/O, no threads or tokio timers of its own.
#[derive(Clone)]
pub struct WorkflowContext {
    pub(crate) state: Rc<RefCell<State>>,
}

impl std::fmt::Debug for WorkflowContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkflowContext")
            .field("instance_id", &self.state.borrow().instance_id)
            .finish()
    }
}

impl WorkflowContext {
    /// The id of this workflow instance.
    pub fn instance_id(&self) -> String {
        self.state.borrow().instance_id.clone()
    }

    /// Calls a task with its own retry policy. The output is recorded, so a replay gets it
    /// without calling again. Fails with the last [`TaskError`] after the last attempt or a
    /// permanent error; the task then waits in the dead-letter list.
    pub fn call<T: Task>(&self, task: &T) -> TaskFuture<T::Output> {
        self.call_with(task, T::retry_policy())
    }

    /// Calls a task with this retry policy instead of its own.
    pub fn call_with<T: Task>(&self, task: &T, retry_policy: RetryPolicy) -> TaskFuture<T::Output> {
        let input = serde_json::to_value(task);
        let mut state = self.state.borrow_mut();
        let encoded = input.as_ref().map(Clone::clone).unwrap_or(Value::Null);
        let seq = state.command(|seq| Event::TaskScheduled {
            seq,
            service: T::SERVICE.to_owned(),
            name: T::NAME.to_owned(),
            input: encoded,
            retry_policy,
        });
        TaskFuture {
            state: self.state.clone(),
            seq,
            encode_error: input
                .err()
                .map(|e| TaskError::permanent(format!("cannot encode the task input: {e}"))),
            output: PhantomData,
        }
    }

    /// Waits durably for `duration`: the wait survives restarts.
    pub fn sleep(&self, duration: Duration) -> TimerFuture {
        let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        let fire_at = self.state.borrow().now.saturating_add(millis);
        self.timer(fire_at)
    }

    /// Waits durably until `deadline` (at once if it has passed).
    pub fn sleep_until(&self, deadline: SystemTime) -> TimerFuture {
        let fire_at = deadline
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        self.timer(fire_at)
    }

    fn timer(&self, fire_at: i64) -> TimerFuture {
        let seq = self
            .state
            .borrow_mut()
            .command(|seq| Event::TimerStarted { seq, fire_at });
        TimerFuture {
            state: self.state.clone(),
            seq,
        }
    }

    /// Waits for the next signal named `name`, sent by a client. Signals that arrived before
    /// the wait are kept, in order, until one is waited for.
    pub fn signal<T: DeserializeOwned>(&self, name: &str) -> SignalFuture<T> {
        SignalFuture {
            state: self.state.clone(),
            name: name.to_owned(),
            output: PhantomData,
        }
    }

    /// Starts a child workflow (the newest version of `name`) and waits for its result. Its
    /// instance id is this instance's id followed by `/` and the command number.
    pub fn child<I: Serialize, O: DeserializeOwned>(
        &self,
        name: &str,
        input: &I,
    ) -> ChildFuture<O> {
        let input = serde_json::to_value(input);
        let mut state = self.state.borrow_mut();
        let workflow_id = format!("{}/{}", state.instance_id, state.next_seq);
        let encoded = input.as_ref().map(Clone::clone).unwrap_or(Value::Null);
        let seq = state.command(|seq| Event::ChildStarted {
            seq,
            name: name.to_owned(),
            workflow_id,
            input: encoded,
        });
        ChildFuture {
            state: self.state.clone(),
            seq,
            encode_error: input
                .err()
                .map(|e| WorkflowError::new(format!("cannot encode the child input: {e}"))),
            output: PhantomData,
        }
    }

    /// Whether this run takes the new code path of change `change_id`.
    ///
    /// Instances that started before the change replay without the marker and get `false`, so
    /// they keep their old path; every run after the change records the marker and gets `true`.
    /// Remove the check once no instance from before the change runs any more.
    pub fn patched(&self, change_id: &str) -> bool {
        let mut state = self.state.borrow_mut();
        let seq = state.next_seq;
        match state.recorded.get(&seq) {
            Some(Event::MarkerRecorded {
                change_id: recorded,
                ..
            }) if recorded == change_id => {
                state.next_seq += 1;
                true
            }
            Some(_) => false,
            None if state
                .recorded
                .keys()
                .next_back()
                .is_some_and(|last| *last > seq) =>
            {
                false
            }
            None => {
                state.command(|seq| Event::MarkerRecorded {
                    seq,
                    change_id: change_id.to_owned(),
                });
                true
            }
        }
    }

    /// The current time: the time of the event being processed, so the same on every replay.
    pub fn now(&self) -> SystemTime {
        let now = self.state.borrow().now;
        UNIX_EPOCH + Duration::from_millis(u64::try_from(now).unwrap_or(0))
    }

    /// A random number, the same on every replay (the generator is seeded by the instance id).
    pub fn random_u64(&self) -> u64 {
        self.state.borrow_mut().rng.next_u64()
    }

    /// A random (version 4) UUID, the same on every replay.
    pub fn uuid(&self) -> uuid::Uuid {
        let mut bytes = [0; 16];
        self.state.borrow_mut().rng.fill_bytes(&mut bytes);
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }
}

/// The result of [`WorkflowContext::call`].
#[must_use = "the task is scheduled when called; await the future for its result"]
pub struct TaskFuture<O> {
    state: Rc<RefCell<State>>,
    seq: u32,
    encode_error: Option<TaskError>,
    output: PhantomData<O>,
}

impl<O: DeserializeOwned> Future for TaskFuture<O> {
    type Output = Result<O, TaskError>;

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(err) = self.encode_error.clone() {
            return Poll::Ready(Err(err));
        }
        match self.state.borrow().resolved.get(&self.seq) {
            Some(Resolution::Task(Ok(value))) => {
                Poll::Ready(serde_json::from_value(value.clone()).map_err(|e| {
                    TaskError::permanent(format!("the recorded task output does not decode: {e}"))
                }))
            }
            Some(Resolution::Task(Err(err))) => Poll::Ready(Err(err.clone())),
            _ => Poll::Pending,
        }
    }
}

/// The result of [`WorkflowContext::sleep`] and [`WorkflowContext::sleep_until`].
#[must_use = "the timer starts when made; await the future to wait for it"]
pub struct TimerFuture {
    state: Rc<RefCell<State>>,
    seq: u32,
}

impl Future for TimerFuture {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        match self.state.borrow().resolved.get(&self.seq) {
            Some(Resolution::Timer) => Poll::Ready(()),
            _ => Poll::Pending,
        }
    }
}

/// The result of [`WorkflowContext::signal`].
#[must_use = "a signal wait does nothing unless awaited"]
pub struct SignalFuture<T> {
    state: Rc<RefCell<State>>,
    name: String,
    output: PhantomData<T>,
}

impl<T: DeserializeOwned> Future for SignalFuture<T> {
    type Output = Result<T, WorkflowError>;

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.state.borrow_mut();
        match state
            .signals
            .get_mut(&self.name)
            .and_then(VecDeque::pop_front)
        {
            Some(payload) => Poll::Ready(serde_json::from_value(payload).map_err(|e| {
                WorkflowError::new(format!("signal `{}` does not decode: {e}", self.name))
            })),
            None => Poll::Pending,
        }
    }
}

/// The result of [`WorkflowContext::child`].
#[must_use = "a child workflow's result is lost unless awaited"]
pub struct ChildFuture<O> {
    state: Rc<RefCell<State>>,
    seq: u32,
    encode_error: Option<WorkflowError>,
    output: PhantomData<O>,
}

impl<O: DeserializeOwned> Future for ChildFuture<O> {
    type Output = Result<O, WorkflowError>;

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(err) = self.encode_error.clone() {
            return Poll::Ready(Err(err));
        }
        match self.state.borrow().resolved.get(&self.seq) {
            Some(Resolution::Child(Ok(value))) => {
                Poll::Ready(serde_json::from_value(value.clone()).map_err(|e| {
                    WorkflowError::new(format!("the child's output does not decode: {e}"))
                }))
            }
            Some(Resolution::Child(Err(err))) => Poll::Ready(Err(err.clone())),
            _ => Poll::Pending,
        }
    }
}

/// Waits for all of `futures`, which run at once; outputs in the order given.
///
/// Use this (or [`select`]) rather than general-purpose combinators: it polls every future on
/// every step, in order, which replay needs to be deterministic.
pub async fn join_all<F: Future + Unpin>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures = futures;
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(move |cx| {
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none()
                && let Poll::Ready(value) = Pin::new(future).poll(cx)
            {
                *output = Some(value);
            }
        }
        if outputs.iter().all(Option::is_some) {
            Poll::Ready(outputs.iter_mut().filter_map(Option::take).collect())
        } else {
            Poll::Pending
        }
    })
    .await
}

/// Waits for the first of `futures` to finish: its index and output. When several are ready at
/// the same step, the first in the list wins; the others are dropped.
pub async fn select<F: Future + Unpin>(futures: Vec<F>) -> (usize, F::Output) {
    let mut futures = futures;
    std::future::poll_fn(move |cx| {
        for (index, future) in futures.iter_mut().enumerate() {
            if let Poll::Ready(value) = Pin::new(future).poll(cx) {
                return Poll::Ready((index, value));
            }
        }
        Poll::Pending
    })
    .await
}
