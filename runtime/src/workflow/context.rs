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
    Completion(Result<Value, String>),
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
    /// The input of the next run, once the workflow asked to continue as new.
    pub(crate) continued: Option<Result<Value, WorkflowError>>,
    /// Query handlers by name, as the workflow registered them.
    pub(crate) queries: BTreeMap<String, QueryHandler>,
}

/// A registered query handler: the workflow's state, read and encoded.
pub(crate) type QueryHandler = Box<dyn Fn() -> Result<Value, String>>;

impl State {
    pub(crate) fn new(
        instance_id: &str,
        recorded: BTreeMap<u32, Event>,
        now: i64,
        first_seq: u32,
    ) -> Self {
        Self {
            instance_id: instance_id.to_owned(),
            recorded,
            new_commands: Vec::new(),
            next_seq: first_seq,
            resolved: BTreeMap::new(),
            signals: BTreeMap::new(),
            now,
            rng: ChaCha8Rng::seed_from_u64(fnv1a(instance_id.as_bytes())),
            mismatch: None,
            continued: None,
            queries: BTreeMap::new(),
        }
    }

    /// Starts a timer that fires at `fire_at` (workflow time).
    fn timer(state: &Rc<RefCell<Self>>, fire_at: i64) -> TimerFuture {
        let seq = state
            .borrow_mut()
            .command(|seq| Event::TimerStarted { seq, fire_at });
        TimerFuture {
            state: state.clone(),
            seq,
        }
    }

    /// Starts a timer that fires `duration` from now.
    fn timer_after(state: &Rc<RefCell<Self>>, duration: Duration) -> TimerFuture {
        let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        let fire_at = state.borrow().now.saturating_add(millis);
        Self::timer(state, fire_at)
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
        State::timer_after(&self.state, duration)
    }

    /// Waits durably until `deadline` (at once if it has passed).
    pub fn sleep_until(&self, deadline: SystemTime) -> TimerFuture {
        let fire_at = deadline
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        State::timer(&self.state, fire_at)
    }

    /// Bounds any future by a durable timer of `duration`: its output, or [`TimedOut`] when
    /// the timer fires first. The timer starts now, whenever the future is awaited.
    ///
    /// What the future was waiting for is abandoned, not undone: a task goes on running, and
    /// its late result is recorded and ignored. The calls, children, signal waits and
    /// completions of this context have a `.timeout(duration)` of their own that reads better.
    pub fn timeout<F: Future>(&self, duration: Duration, future: F) -> Timeout<F> {
        Timeout::new(&self.state, future, duration)
    }

    /// A completion token for an outside system (an email link, a payment provider's
    /// webhook), and the future of its result: the value given to
    /// [`Client::complete`](crate::Client::complete), or the message given to
    /// [`Client::fail_completion`](crate::Client::fail_completion) as an error.
    ///
    /// The token is recorded when made, so every replay hands out the same one; it holds a
    /// random part and cannot be guessed from the instance id. A token resolves once: a second
    /// completion is refused.
    pub fn completion<T: DeserializeOwned>(&self) -> CompletionFuture<T> {
        let mut state = self.state.borrow_mut();
        let seq = state.next_seq;
        let token = match state.recorded.get(&seq) {
            Some(Event::CompletionCreated { token, .. }) => token.clone(),
            _ => completion_token(&state.instance_id, seq),
        };
        let recorded = token.clone();
        state.command(|seq| Event::CompletionCreated {
            seq,
            token: recorded,
        });
        CompletionFuture {
            state: self.state.clone(),
            seq,
            token,
            output: PhantomData,
        }
    }

    /// Ends this run and starts the instance afresh with `input`, under the same id, with an
    /// empty history: a loop that runs for years replays in constant time. Return what this
    /// gives (`return ctx.continue_as_new(&next).await;`): it never resolves, and nothing after
    /// it runs.
    ///
    /// The switch is one commit: the old history is replaced by the new run's start, so a crash
    /// leaves either the old run or the new one, never both. The new run takes the newest
    /// registered version of the workflow, keeps the run timeout, and gets the signals this run
    /// received and did not take. Tasks, timers and children of the old run that had not ended
    /// go on, and their results are ignored.
    pub fn continue_as_new<I: Serialize, T>(&self, input: &I) -> ContinueAsNew<T> {
        let next = serde_json::to_value(input).map_err(|e| {
            WorkflowError::new(format!("cannot encode the input of the next run: {e}"))
        });
        self.state.borrow_mut().continued.get_or_insert(next);
        ContinueAsNew {
            output: PhantomData,
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
        let id = {
            let state = self.state.borrow();
            format!("{}/{}", state.instance_id, state.next_seq)
        };
        self.child_with_id(name, &id, input)
    }

    /// Starts a child workflow under the instance id `id` (rather than one derived from this
    /// instance's), and waits for its result. Starting it is recorded like any command, so a
    /// replay or a crash never starts it twice; an instance that already has this id is not
    /// started again.
    pub fn child_with_id<I: Serialize, O: DeserializeOwned>(
        &self,
        name: &str,
        id: &str,
        input: &I,
    ) -> ChildFuture<O> {
        let input = serde_json::to_value(input);
        let mut state = self.state.borrow_mut();
        let encoded = input.as_ref().map(Clone::clone).unwrap_or(Value::Null);
        let seq = state.command(|seq| Event::ChildStarted {
            seq,
            name: name.to_owned(),
            workflow_id: id.to_owned(),
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

    /// Registers query `name`: [`Client::query`](crate::Client::query) replays the instance to
    /// the present and returns what `handler` gives then, without changing the instance.
    /// `handler` reads state the workflow keeps in a `Rc<RefCell<_>>` (or a `Cell`) it shares
    /// with the closure. Registering a name again replaces its handler.
    ///
    /// The worker also records every handler's answer at the end of each activation, for the
    /// tools that run no workflow code (`codegen flows query`, the console; see
    /// [`Client::query_answers`](crate::Client::query_answers)): keep handlers cheap, since
    /// they run once per activation.
    ///
    /// ```
    /// # use std::cell::Cell;
    /// # use std::rc::Rc;
    /// # use codegen_runtime::workflow::{WorkflowContext, WorkflowError};
    /// async fn counter(ctx: WorkflowContext, _: ()) -> Result<u32, WorkflowError> {
    ///     let count = Rc::new(Cell::new(0));
    ///     let seen = count.clone();
    ///     ctx.on_query("count", move || seen.get());
    ///     while ctx.signal::<()>("tick").await.is_ok() {
    ///         count.set(count.get() + 1);
    ///     }
    ///     Ok(count.get())
    /// }
    /// ```
    pub fn on_query<T: Serialize>(&self, name: &str, handler: impl Fn() -> T + 'static) {
        let handler: QueryHandler = Box::new(move || {
            serde_json::to_value(handler()).map_err(|e| format!("cannot encode the answer: {e}"))
        });
        self.state
            .borrow_mut()
            .queries
            .insert(name.to_owned(), handler);
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

impl<O> TaskFuture<O> {
    /// Bounds the call, all its attempts together, by a durable timer: [`TimedOut`] when the
    /// timer fires first. The task is not stopped; its late result is ignored.
    pub fn timeout(self, duration: Duration) -> Timeout<Self> {
        let state = self.state.clone();
        Timeout::new(&state, self, duration)
    }
}

impl<O> ChildFuture<O> {
    /// Bounds the wait for the child by a durable timer: [`TimedOut`] when the timer fires
    /// first. The child goes on running.
    pub fn timeout(self, duration: Duration) -> Timeout<Self> {
        let state = self.state.clone();
        Timeout::new(&state, self, duration)
    }
}

impl<T> SignalFuture<T> {
    /// Bounds the wait for the signal by a durable timer: [`TimedOut`] when the timer fires
    /// first. A signal that comes later waits for the next wait of its name.
    pub fn timeout(self, duration: Duration) -> Timeout<Self> {
        let state = self.state.clone();
        Timeout::new(&state, self, duration)
    }
}

/// The result of [`WorkflowContext::completion`]: the token to hand out, and the future of
/// the result.
#[must_use = "a completion is only waited for when awaited"]
pub struct CompletionFuture<T> {
    state: Rc<RefCell<State>>,
    seq: u32,
    token: String,
    output: PhantomData<T>,
}

impl<T> CompletionFuture<T> {
    /// The token: give it to the outside system that completes it.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Bounds the wait by a durable timer: [`TimedOut`] when the timer fires first. A
    /// completion that comes later is recorded and ignored.
    pub fn timeout(self, duration: Duration) -> Timeout<Self> {
        let state = self.state.clone();
        Timeout::new(&state, self, duration)
    }
}

impl<T: DeserializeOwned> Future for CompletionFuture<T> {
    type Output = Result<T, WorkflowError>;

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        match self.state.borrow().resolved.get(&self.seq) {
            Some(Resolution::Completion(Ok(value))) => {
                Poll::Ready(serde_json::from_value(value.clone()).map_err(|e| {
                    WorkflowError::new(format!("the completion's value does not decode: {e}"))
                }))
            }
            Some(Resolution::Completion(Err(message))) => {
                Poll::Ready(Err(WorkflowError::new(message.clone())))
            }
            _ => Poll::Pending,
        }
    }
}

/// A completion token: `cgc1.<instance id, base64url>.<command number>.<random part>`.
fn completion_token(instance_id: &str, seq: u32) -> String {
    use base64::Engine as _;
    let instance = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(instance_id);
    format!("cgc1.{instance}.{seq}.{}", uuid::Uuid::new_v4().simple())
}

/// The instance and command number a completion token names, or `None` when it is not one.
pub(crate) fn parse_completion_token(token: &str) -> Option<(String, u32)> {
    use base64::Engine as _;
    let mut parts = token.trim().split('.');
    let (Some("cgc1"), Some(instance), Some(seq), Some(nonce), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    if nonce.len() != 32 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let instance = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(instance)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())?;
    Some((instance, seq.parse().ok()?))
}

/// The result of [`WorkflowContext::continue_as_new`]: never resolves.
#[must_use = "return what continue_as_new gives: `return ctx.continue_as_new(&input).await;`"]
pub struct ContinueAsNew<T> {
    output: PhantomData<fn() -> T>,
}

impl<T> Future for ContinueAsNew<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<T> {
        Poll::Pending
    }
}

/// A future bounded by a durable timer: see [`WorkflowContext::timeout`].
#[must_use = "the timer is recorded when made; await the bounded future for its result"]
pub struct Timeout<F> {
    inner: Pin<Box<F>>,
    timer: TimerFuture,
    after: Duration,
}

impl<F> Timeout<F> {
    /// Bounds `inner` by a timer of `duration`, started now as the next command of `state`.
    fn new(state: &Rc<RefCell<State>>, inner: F, duration: Duration) -> Self {
        Self {
            inner: Box::pin(inner),
            timer: State::timer_after(state, duration),
            after: duration,
        }
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, TimedOut>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // The future first: when its result and the timer arrive together, the result wins.
        if let Poll::Ready(output) = self.inner.as_mut().poll(cx) {
            return Poll::Ready(Ok(output));
        }
        match Pin::new(&mut self.timer).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(TimedOut { after: self.after })),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A wait bounded by [`WorkflowContext::timeout`] (or a future's `.timeout`) ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut {
    /// The bound that ran out.
    pub after: Duration,
}

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "timed out after {:?}", self.after)
    }
}

impl std::error::Error for TimedOut {}

/// The output of [`select2`]: which of two futures finished first, with its output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Either<A, B> {
    /// The first future finished first.
    Left(A),
    /// The second future finished first.
    Right(B),
}

/// The output of [`select3`]: which of three futures finished first, with its output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Either3<A, B, C> {
    /// The first future finished first.
    First(A),
    /// The second future finished first.
    Second(B),
    /// The third future finished first.
    Third(C),
}

/// Waits for the first of two futures of any output types; the other is dropped. When both
/// are ready at the same step, `a` wins, so a replay picks the same one.
///
/// ```
/// # use std::time::Duration;
/// # use codegen_runtime::workflow::{Either, WorkflowContext, WorkflowError, select2};
/// async fn approval(ctx: WorkflowContext, _: ()) -> Result<bool, WorkflowError> {
///     match select2(ctx.signal::<bool>("approved"), ctx.sleep(Duration::from_secs(3600))).await {
///         Either::Left(approved) => Ok(approved?),
///         Either::Right(()) => Ok(false),
///     }
/// }
/// ```
pub async fn select2<A: Future, B: Future>(a: A, b: B) -> Either<A::Output, B::Output> {
    let mut a = std::pin::pin!(a);
    let mut b = std::pin::pin!(b);
    std::future::poll_fn(move |cx| {
        if let Poll::Ready(v) = a.as_mut().poll(cx) {
            return Poll::Ready(Either::Left(v));
        }
        if let Poll::Ready(v) = b.as_mut().poll(cx) {
            return Poll::Ready(Either::Right(v));
        }
        Poll::Pending
    })
    .await
}

/// Waits for the first of three futures of any output types; the others are dropped. Of
/// futures ready at the same step, the first given wins.
pub async fn select3<A: Future, B: Future, C: Future>(
    a: A,
    b: B,
    c: C,
) -> Either3<A::Output, B::Output, C::Output> {
    let mut a = std::pin::pin!(a);
    let mut b = std::pin::pin!(b);
    let mut c = std::pin::pin!(c);
    std::future::poll_fn(move |cx| {
        if let Poll::Ready(v) = a.as_mut().poll(cx) {
            return Poll::Ready(Either3::First(v));
        }
        if let Poll::Ready(v) = b.as_mut().poll(cx) {
            return Poll::Ready(Either3::Second(v));
        }
        if let Poll::Ready(v) = c.as_mut().poll(cx) {
            return Poll::Ready(Either3::Third(v));
        }
        Poll::Pending
    })
    .await
}

/// Waits for both of two futures of any output types, which run at once.
pub async fn join2<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let mut a = std::pin::pin!(a);
    let mut b = std::pin::pin!(b);
    let (mut left, mut right) = (None, None);
    std::future::poll_fn(move |cx| {
        if left.is_none()
            && let Poll::Ready(v) = a.as_mut().poll(cx)
        {
            left = Some(v);
        }
        if right.is_none()
            && let Poll::Ready(v) = b.as_mut().poll(cx)
        {
            right = Some(v);
        }
        match (left.take(), right.take()) {
            (Some(l), Some(r)) => Poll::Ready((l, r)),
            (l, r) => {
                (left, right) = (l, r);
                Poll::Pending
            }
        }
    })
    .await
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
