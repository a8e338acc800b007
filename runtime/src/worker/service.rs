//! The service worker: runs the tasks of one service with bounded concurrency.

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tracing::Instrument;

use super::ids;
use crate::backend::{
    AttemptOutcome, BackendError, BackendResult, Delivery, FlowLimits, Message, MessageBody,
    MessageQueue, Settlement, TaskAttempt, TaskMessage, Topic,
};
use crate::http::{CallOptions, HttpClient, HttpOperation};
use crate::telemetry::{self, Readiness, ReadyFlag, record, trace};
use crate::time::now_ms;
use crate::workflow::Event;
use crate::workflow::engine::panic_message;
use crate::{Task, TaskError};

/// What a handler knows of the task it runs.
#[derive(Debug, Clone)]
pub struct TaskContext {
    /// The task id; send it as the idempotency key of a non-idempotent call, so a retried or
    /// repeated task has its effect once.
    pub task_id: String,
    /// The attempt, from 1.
    pub attempt: u32,
}

type HandlerFuture = Pin<Box<dyn Future<Output = Result<Value, TaskError>> + Send>>;
type Handler = Arc<dyn Fn(Value, TaskContext) -> HandlerFuture + Send + Sync>;

/// The handlers of one service, by task name.
#[derive(Clone, Default)]
pub struct Handlers {
    by_name: BTreeMap<String, Handler>,
}

impl std::fmt::Debug for Handlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handlers")
            .field("tasks", &self.by_name.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Handlers {
    /// No handlers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs tasks of type `T` with `f`.
    pub fn task<T, F, Fut>(&mut self, f: F) -> &mut Self
    where
        T: Task,
        F: Fn(T, TaskContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T::Output, TaskError>> + Send + 'static,
    {
        let f = Arc::new(f);
        let handler: Handler = Arc::new(move |input, ctx| {
            let f = f.clone();
            Box::pin(async move {
                let task: T = serde_json::from_value(input).map_err(|e| {
                    TaskError::permanent(format!("the task input does not decode: {e}"))
                })?;
                let output = f(task, ctx).await?;
                serde_json::to_value(output).map_err(|e| {
                    TaskError::permanent(format!("cannot encode the task output: {e}"))
                })
            })
        });
        self.by_name.insert(T::NAME.to_owned(), handler);
        self
    }

    /// Runs tasks of type `T` as one HTTP call through `client`, with the task id as the
    /// idempotency key. Retries are the worker's (durable), not the client's.
    pub fn http<T: HttpOperation>(&mut self, client: HttpClient) -> &mut Self {
        self.task::<T, _, _>(move |task, ctx| {
            let client = client.clone();
            async move {
                let options = CallOptions {
                    idempotency_key: Some(ctx.task_id),
                    ..CallOptions::default()
                };
                client.attempt_with(&task, &options).await
            }
        })
    }
}

/// Settings of a service worker.
#[derive(Debug, Clone)]
pub struct ServiceWorkerOptions {
    /// Tasks run at once.
    pub concurrency: usize,
    /// How long a task stays claimed before another worker may take it.
    pub lease: Duration,
    /// The longest wait without news. News of messages comes by notification, from this
    /// process and from the others on the backend; the bound is a safety net for a lost one
    /// (a process killed between its commit and the notification).
    pub idle_wait: Duration,
    /// How long shutdown waits for tasks under way; those still running after it are delivered
    /// again when their lease runs out.
    pub grace: Duration,
    /// Where to serve `/metrics`, `/healthz` and `/readyz` (see [`crate::telemetry`]); none
    /// unless set. Workers of one process may share an address.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// The largest task output one event may hold, in bytes of JSON. A larger one fails its
    /// task for good with an error that says how large, rather than writing a huge row.
    pub max_event_bytes: usize,
    /// Limits on the service's tasks across every worker of it on the backend: in flight at
    /// once, and started per second (see [`crate::backend::flow`]). Give every worker of a
    /// service the same. None by default.
    pub limits: FlowLimits,
}

impl Default for ServiceWorkerOptions {
    fn default() -> Self {
        Self {
            concurrency: 64,
            lease: Duration::from_secs(60),
            idle_wait: Duration::from_millis(200),
            grace: Duration::from_secs(30),
            metrics_listen: None,
            max_event_bytes: crate::limits::MAX_EVENT_BYTES,
            limits: FlowLimits::default(),
        }
    }
}

/// Runs the tasks of one service: each to its handler, with durable retries, dead letters for
/// tasks that fail for good or cannot be read, and the result sent to the workflow.
pub struct ServiceWorker<Q> {
    queue: Arc<Q>,
    service: String,
    handlers: Handlers,
    options: ServiceWorkerOptions,
}

impl<Q: MessageQueue> ServiceWorker<Q> {
    /// A worker for `service` on `queue`.
    pub fn new(
        queue: Arc<Q>,
        service: &str,
        handlers: Handlers,
        options: ServiceWorkerOptions,
    ) -> Self {
        Self {
            queue,
            service: service.to_owned(),
            handlers,
            options,
        }
    }

    /// Runs until `shutdown` turns true, then waits up to the grace period for tasks under way.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) -> BackendResult<()> {
        let topic = Topic::Tasks(self.service.clone());
        let permits = Arc::new(Semaphore::new(self.options.concurrency.max(1)));
        let lease = i64::try_from(self.options.lease.as_millis()).unwrap_or(i64::MAX);
        let idle = i64::try_from(self.options.idle_wait.as_millis()).unwrap_or(i64::MAX);
        if let Some(addr) = self.options.metrics_listen {
            telemetry::serve(addr)
                .await
                .map_err(BackendError::Invalid)?;
        }
        let ready = ReadyFlag::register_if(
            format!("service worker `{}`", self.service),
            self.options.metrics_listen.is_some(),
        );
        record::concurrency(&self.service, self.options.concurrency.max(1));
        // This process's own tasks for the service come to this worker from memory (see
        // `MessageQueue::subscribe`), as many as it runs at once.
        let _subscription = self
            .queue
            .subscribe(&topic, lease, self.options.concurrency.max(1));
        // Outcomes are recorded by one committer, many per transaction (group commit); a task's
        // concurrency permit is released once its outcome is recorded.
        let (outcomes, inbox) = mpsc::unbounded_channel::<(Settlement, OwnedSemaphorePermit)>();
        let mut flow = Flow {
            queue: self.queue.clone(),
            service: self.service.clone(),
            holder: format!("{}/{}", self.service, uuid::Uuid::new_v4()),
            limits: self.options.limits,
            lease,
            idle,
            paused_until: Arc::new(AtomicI64::new(0)),
            checked: None,
        };
        let committer = tokio::spawn(commit_outcomes(
            self.queue.clone(),
            inbox,
            flow.limits
                .is_set()
                .then(|| (self.service.clone(), flow.holder.clone())),
        ));
        let mut running = tokio::task::JoinSet::new();
        let mut outage = super::outage::Outage::default();
        while !*shutdown.borrow() {
            while running.try_join_next().is_some() {}
            let free = permits.available_permits();
            if free == 0 {
                tokio::select! {
                    _ = permits.clone().acquire_owned() => {}
                    // Permits held across workers are leased: keep this worker's alive while
                    // its tasks run.
                    () = tokio::time::sleep(self.options.lease / 3) => flow.renew().await,
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let deliveries = match flow.take(&topic, free).await {
                Ok(Taken::Tasks(d)) => {
                    ready.set(Readiness::Ready);
                    outage.reached("service");
                    d
                }
                Ok(Taken::Wait { ms, for_release }) => {
                    ready.set(Readiness::Ready);
                    outage.reached("service");
                    tokio::select! {
                        () = flow.wait(ms, for_release) => {}
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
                Err(BackendError::Unavailable(message)) => {
                    ready.set(Readiness::Unavailable);
                    record::unavailable("service");
                    outage.wait("service", &message).await;
                    continue;
                }
                Err(err) => return Err(err),
            };
            if deliveries.is_empty() {
                tokio::select! {
                    () = self.queue.wait(&topic, idle) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let took_all = deliveries.len() >= free;
            for delivery in deliveries {
                let permit = permits
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed");
                let handlers = self.handlers.clone();
                let service = self.service.clone();
                let outcomes = outcomes.clone();
                let limit = self.options.max_event_bytes;
                let queue = self.queue.clone();
                let paused_until = flow.paused_until.clone();
                running.spawn(async move {
                    let in_flight = record::InFlight::start(&service);
                    let (settlement, back_off) = handle(&service, &handlers, delivery, limit).await;
                    drop(in_flight);
                    // The API asked for a pause: every worker of the service takes it.
                    if let Some(until) = back_off {
                        paused_until.fetch_max(until, Ordering::SeqCst);
                        if let Err(err) = queue.back_off(&service, until).await {
                            tracing::warn!(%err, "cannot record the service's back-off; other workers go on");
                        }
                    }
                    let _ = outcomes.send((settlement, permit));
                });
            }
            // Fewer than asked for: none are left, so wait (it returns at once for new ones).
            if !took_all {
                tokio::select! {
                    () = self.queue.wait(&topic, idle) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
        ready.set(Readiness::Stopping);
        let drained = tokio::time::timeout(self.options.grace, async {
            while running.join_next().await.is_some() {}
        });
        if drained.await.is_err() {
            tracing::warn!(
                "tasks still running after the grace period; they will be delivered again"
            );
            running.abort_all();
        }
        drop(outcomes);
        committer
            .await
            .map_err(|e| BackendError::Unavailable(format!("the committer failed: {e}")))?;
        Ok(())
    }
}

/// What a worker may do next, by the service's flow control.
enum Taken {
    /// Run these.
    Tasks(Vec<Delivery>),
    /// Wait this long (milliseconds), or until a permit is released when `for_release`.
    Wait { ms: i64, for_release: bool },
}

/// This worker's side of its service's flow control: the limits shared with every worker of
/// the service, and the service's back-off after a `Retry-After`.
struct Flow<Q> {
    queue: Arc<Q>,
    service: String,
    /// Names this worker's permits in the backend.
    holder: String,
    limits: FlowLimits,
    lease: i64,
    idle: i64,
    /// The service backs off until then (milliseconds since the Unix epoch), as last read from
    /// the backend or caused by a task of this worker.
    paused_until: Arc<AtomicI64>,
    /// When the back-off was last read, without limits (with them, every take reads it).
    checked: Option<Instant>,
}

/// How often a worker without limits reads the service's back-off from the backend.
const BACK_OFF_CHECK: Duration = Duration::from_millis(250);

impl<Q: MessageQueue> Flow<Q> {
    /// Up to `free` tasks, as many as the limits and the back-off allow.
    async fn take(&mut self, topic: &Topic, free: usize) -> BackendResult<Taken> {
        let now = now_ms();
        let mut want = free;
        if self.limits.is_set() {
            let asked = u32::try_from(free).unwrap_or(u32::MAX);
            let grant = self
                .queue
                .acquire(&self.service, &self.holder, asked, &self.limits, self.lease)
                .await?;
            if grant.granted == 0 {
                return Ok(match grant.retry_at {
                    Some(at) => Taken::Wait {
                        ms: (at - now).clamp(1, self.idle),
                        for_release: false,
                    },
                    None => Taken::Wait {
                        ms: self.idle,
                        for_release: true,
                    },
                });
            }
            want = usize::try_from(grant.granted).unwrap_or(free);
        } else {
            if self.checked.is_none_or(|at| at.elapsed() >= BACK_OFF_CHECK) {
                let until = self.queue.backing_off_until(&self.service).await?;
                self.paused_until.fetch_max(until, Ordering::SeqCst);
                self.checked = Some(Instant::now());
            }
            let until = self.paused_until.load(Ordering::SeqCst);
            if until > now {
                return Ok(Taken::Wait {
                    ms: (until - now).min(self.idle),
                    for_release: false,
                });
            }
        }
        let deliveries = self.queue.receive(topic, want, self.lease).await;
        if self.limits.is_set() {
            // Permits not used (fewer tasks were waiting) go back at once.
            let used = deliveries.as_ref().map_or(0, Vec::len);
            if used < want {
                let unused = u32::try_from(want - used).unwrap_or(u32::MAX);
                self.queue
                    .release(&self.service, &self.holder, unused)
                    .await?;
            }
        }
        deliveries.map(Taken::Tasks)
    }

    /// Waits `ms`, or less when a permit comes back.
    async fn wait(&self, ms: i64, for_release: bool) {
        if for_release {
            self.queue.wait_for_release(&self.service, ms).await;
        } else {
            tokio::time::sleep(Duration::from_millis(u64::try_from(ms).unwrap_or(0))).await;
        }
    }

    /// Renews the lease of the permits this worker holds.
    async fn renew(&self) {
        if self.limits.is_set()
            && let Err(err) = self
                .queue
                .acquire(&self.service, &self.holder, 0, &self.limits, self.lease)
                .await
        {
            tracing::warn!(%err, "cannot renew this worker's permits; they lapse with their lease");
        }
    }
}

/// Records outcomes as they come, all that are waiting in one step; gives the permits of the
/// tasks recorded back to the service's flow control (`flow`: the service and this worker).
async fn commit_outcomes<Q: MessageQueue>(
    queue: Arc<Q>,
    mut inbox: mpsc::UnboundedReceiver<(Settlement, OwnedSemaphorePermit)>,
    flow: Option<(String, String)>,
) {
    const MAX_BATCH: usize = 512;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while inbox.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (settlements, permits): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
        let started = Instant::now();
        let settled = queue.settle(settlements).await;
        record::commit("settle", started.elapsed());
        if let Err(err) = settled {
            // Not recorded: the tasks are delivered again when their leases run out.
            tracing::error!(%err, "cannot record task outcomes; they will be delivered again");
        }
        if let Some((service, holder)) = &flow {
            let n = u32::try_from(permits.len()).unwrap_or(u32::MAX);
            if let Err(err) = queue.release(service, holder, n).await {
                tracing::warn!(%err, "cannot give permits back; they lapse with their lease");
            }
        }
        drop(permits);
    }
}

/// Runs one task; its outcome, to record.
async fn handle(
    service: &str,
    handlers: &Handlers,
    delivery: Delivery,
    max_event_bytes: usize,
) -> (Settlement, Option<i64>) {
    let Delivery { receipt, message } = delivery;
    let settle = |dead: Option<String>, messages: Vec<Message>, attempt| Settlement {
        receipt: receipt.clone(),
        dead,
        messages,
        attempt,
    };
    let MessageBody::Task(task) = message.body else {
        record::attempt(service, "unknown", "dead", Duration::ZERO);
        record::dead_letter(service, "unknown");
        return (
            settle(Some("not a task message".into()), Vec::new(), None),
            None,
        );
    };
    let started_at = now_ms();
    let started = Instant::now();
    let attempt = task.attempt + 1;
    let span = tracing::debug_span!(
        "task.attempt",
        service = %task.service,
        task = %task.name,
        attempt,
        instance = %task.instance_id,
        outcome = tracing::field::Empty,
        "http.response.status_code" = tracing::field::Empty,
        "otel.status_code" = tracing::field::Empty,
    );
    trace::set_parent(&span, task.trace.as_deref());
    let finish = |outcome: &'static str| {
        record::attempt(service, &task.name, outcome, started.elapsed());
        span.record("outcome", outcome);
        if outcome != "ok" {
            span.record("otel.status_code", "ERROR");
        }
    };
    let report = |outcome, error: Option<String>, retry_at| TaskAttempt {
        instance_id: task.instance_id.clone(),
        seq: task.seq,
        attempt,
        redrive: task.redrive,
        service: task.service.clone(),
        task: task.name.clone(),
        started_at,
        ended_at: now_ms(),
        outcome,
        error,
        retry_at,
    };
    let Some(handler) = handlers.by_name.get(&task.name).cloned() else {
        let error = TaskError::permanent(format!(
            "service `{service}` has no handler for task `{}`: deploy a worker that has it, then retry the dead task",
            task.name
        ));
        finish("dead");
        record::dead_letter(service, &task.name);
        let record = report(AttemptOutcome::Dead, Some(error.to_string()), None);
        let failed = result_message(&task, Err(error.clone()));
        return (
            settle(Some(error.message().to_owned()), vec![failed], Some(record)),
            None,
        );
    };
    let ctx = TaskContext {
        task_id: task.task_id.clone(),
        attempt,
    };
    // The schedule-to-close bound: every attempt of the call together, from its scheduling.
    let bound = task
        .retry_policy
        .schedule_to_close
        .filter(|_| task.scheduled_at > 0);
    let deadline = bound.map(|b| task.scheduled_at.saturating_add(millis(b)));
    let outcome = match deadline {
        Some(deadline) if started_at >= deadline => Err(past_deadline(bound)),
        _ => {
            // A panicking handler fails its task, never the worker.
            let run = AssertUnwindSafe(handler(task.input.clone(), ctx))
                .catch_unwind()
                .instrument(span.clone());
            let ran = match deadline {
                Some(deadline) => {
                    let left = u64::try_from(deadline - started_at).unwrap_or(0);
                    tokio::time::timeout(Duration::from_millis(left), run)
                        .await
                        .unwrap_or_else(|_| Ok(Err(past_deadline(bound))))
                }
                None => run.await,
            };
            match ran {
                Ok(outcome) => outcome,
                Err(panic) => Err(TaskError::permanent(format!(
                    "the handler panicked: {}",
                    panic_message(&panic)
                ))),
            }
        }
    };
    let outcome = outcome.and_then(|output| {
        let what = format!("the output of task {service}/{}", task.name);
        crate::limits::check(
            &what,
            &output,
            max_event_bytes,
            "ServiceWorkerOptions::max_event_bytes",
        )
        .map(|()| output)
        .map_err(TaskError::permanent)
    });
    match outcome {
        Ok(output) => {
            finish("ok");
            let record = report(AttemptOutcome::Ok, None, None);
            let settled = settle(None, vec![result_message(&task, Ok(output))], Some(record));
            (settled, None)
        }
        Err(error) => {
            let back_off = service_back_off(&task, &error);
            let settled = match retry_within(&task, attempt, error, deadline, bound) {
                (Some(delay), error) => {
                    finish(if error.is_timeout() {
                        "timed_out"
                    } else {
                        "retryable_error"
                    });
                    tracing::debug!(task = %task.task_id, attempt, ?delay, %error, "retrying");
                    let retry_at = now_ms() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
                    let record = report(
                        AttemptOutcome::Retry,
                        Some(error.to_string()),
                        Some(retry_at),
                    );
                    let retry = Message {
                        id: message.id,
                        topic: message.topic,
                        key: message.key,
                        deliver_at: retry_at,
                        body: MessageBody::Task(TaskMessage { attempt, ..task }),
                    };
                    settle(None, vec![retry], Some(record))
                }
                (None, error) => {
                    finish(if error.is_retryable() {
                        "dead"
                    } else {
                        "permanent_error"
                    });
                    record::dead_letter(service, &task.name);
                    let reason = format!("failed after {attempt} attempt(s): {error}");
                    tracing::warn!(task = %task.task_id, %reason, "task dead");
                    let record = report(AttemptOutcome::Dead, Some(error.to_string()), None);
                    let failed = result_message(&task, Err(error));
                    settle(Some(reason), vec![failed], Some(record))
                }
            };
            (settled, back_off)
        }
    }
}

/// Until when the whole service backs off after `error`: a 429 or 503 with `Retry-After`
/// (no longer than the call's longest retry delay).
fn service_back_off(task: &TaskMessage, error: &TaskError) -> Option<i64> {
    let asked = error.retry_after()?;
    matches!(error.status(), Some(429 | 503))
        .then(|| now_ms().saturating_add(millis(asked.min(task.retry_policy.max_delay))))
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The error of a call whose schedule-to-close bound passed.
fn past_deadline(bound: Option<Duration>) -> TaskError {
    TaskError::timed_out(format!(
        "gave up: the call's attempts together passed its schedule-to-close bound of {:?}",
        bound.unwrap_or_default()
    ))
}

/// The delay before the next attempt after `attempt` failed with `error`, if there is one
/// before the call's deadline; with the error to record (saying so when the deadline stops it).
fn retry_within(
    task: &TaskMessage,
    attempt: u32,
    error: TaskError,
    deadline: Option<i64>,
    bound: Option<Duration>,
) -> (Option<Duration>, TaskError) {
    let now = now_ms();
    match task.retry_policy.next_delay(attempt, &error) {
        // The attempt was stopped by the deadline: its error says so already.
        Some(_) if deadline.is_some_and(|d| now >= d) => (None, error),
        Some(delay) if deadline.is_some_and(|d| now.saturating_add(millis(delay)) >= d) => {
            let reason = past_deadline(bound);
            let message = format!("{}; {}", error.message(), reason.message());
            (None, TaskError::timed_out(message))
        }
        next => (next, error),
    }
}

/// The message that gives a task's outcome to its workflow.
fn result_message(task: &TaskMessage, outcome: Result<Value, TaskError>) -> Message {
    let event = match outcome {
        Ok(output) => Event::TaskCompleted {
            seq: task.seq,
            output,
        },
        Err(error) => Event::TaskFailed {
            seq: task.seq,
            error,
        },
    };
    Message {
        id: ids::result_id(&task.instance_id, task.seq, task.redrive),
        topic: Topic::Workflows,
        key: task.instance_id.clone(),
        deliver_at: now_ms(),
        body: MessageBody::Event { event },
    }
}
