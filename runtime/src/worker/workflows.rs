//! The workflow worker: replays instances that have news and commits what they do next.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::watch;

use super::ids;
use super::replayer::{Replayer, Reply, Request};
use crate::backend::{
    Answer, BackendError, BackendResult, Commit, Delivery, InstanceInfo, Message, MessageBody,
    MessageQueue, StateStore, Status, TaskMessage, Topic, event_id,
};
use crate::limits;
use crate::telemetry::{self, Readiness, ReadyFlag, record, trace};
use crate::time::now_ms;
use crate::workflow::engine::{self, Outcome, ParkReason};
use crate::workflow::{Clock, Event, HistoryEvent, WorkflowError, Workflows};

/// Settings of a workflow worker.
#[derive(Debug, Clone)]
pub struct WorkflowWorkerOptions {
    /// Instances handled per round; their changes are committed together.
    pub batch: usize,
    /// How long an instance stays claimed by this worker before another may take it.
    pub lease: Duration,
    /// The longest wait without news. News of messages comes by notification, from this
    /// process and from the others on the backend; the bound is a safety net for a lost one
    /// (a process killed between its commit and the notification).
    pub idle_wait: Duration,
    /// The clock of instances this worker starts (they keep it).
    pub clock: Clock,
    /// Where to serve `/metrics`, `/healthz` and `/readyz` (see [`crate::telemetry`]); none
    /// unless set. Workers of one process may share an address.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// The largest value one event may hold, in bytes of JSON: a task's input, a child's or
    /// the next run's input, the workflow's output. A workflow that makes a larger one fails
    /// with an error that says which and how large, rather than writing a huge row.
    pub max_event_bytes: usize,
    /// How long ended instances are kept before this worker deletes them.
    pub retention: Retention,
}

/// How long instances that ended (completed, failed, cancelled) are kept: then each is
/// deleted with its history, messages, dead letters and recorded attempts, a bounded batch per
/// transaction, by a task beside the worker's rounds that never holds them up.
#[derive(Debug, Clone)]
pub struct Retention {
    /// How long an instance is kept after it ended; `None` keeps every instance for good.
    /// Measured on the worker's clock, so a scaled clock makes it pass faster too.
    pub keep: Option<Duration>,
    /// The same, per workflow name, in place of `keep` (`None`: keep that workflow's).
    pub by_workflow: BTreeMap<String, Option<Duration>>,
    /// How often the worker looks for instances past their time.
    pub sweep_every: Duration,
    /// Instances deleted per transaction.
    pub batch: usize,
}

impl Default for Retention {
    /// 30 days for every workflow, looked for every minute, 500 per transaction.
    fn default() -> Self {
        Self {
            keep: Some(Duration::from_secs(30 * 86_400)),
            by_workflow: BTreeMap::new(),
            sweep_every: Duration::from_secs(60),
            batch: 500,
        }
    }
}

impl Default for WorkflowWorkerOptions {
    fn default() -> Self {
        Self {
            batch: 64,
            lease: Duration::from_secs(30),
            idle_wait: Duration::from_millis(200),
            clock: Clock::Real,
            metrics_listen: None,
            max_event_bytes: crate::limits::MAX_EVENT_BYTES,
            retention: Retention::default(),
        }
    }
}

/// Runs workflow instances: takes their news (starts, task results, timers, signals), replays
/// them, and commits the new events, status and outgoing messages in one step.
pub struct WorkflowWorker<B> {
    backend: Arc<B>,
    workflows: Workflows,
    options: WorkflowWorkerOptions,
    /// Instances and histories this worker committed last: replaying an instance with news
    /// then reads nothing. Should another writer have appended to it meanwhile (a lease that ran
    /// out), the commit's event count check fails and the entry is dropped; finished instances,
    /// whose status a client may change, are never kept.
    cache: Mutex<HashMap<String, Cached>>,
    /// Where activations run, and each running instance's replay is kept between them.
    replayer: Replayer,
}

/// A history with the id of each event.
type History = Vec<(String, HistoryEvent)>;

/// What a worker remembers of an instance it committed.
struct Cached {
    info: InstanceInfo,
    history: History,
    /// How many events of `history` the replay thread's kept replay of the instance was given
    /// (the rest are the commands it issued); none when it keeps none.
    replayed: Option<usize>,
}

/// Histories kept in memory at most; past it the cache starts afresh.
const CACHED_HISTORIES: usize = super::replayer::KEPT_REPLAYS;

/// Runs one activation may start by continuing as new before the instance is parked: a run
/// that continues without waiting for anything would loop forever.
const MAX_RUNS_PER_ACTIVATION: u32 = 100;

/// How many times a worker handles an instance again at once when another worker changed it
/// between its read and its commit.
const CONFLICT_RETRIES: u32 = 3;

/// One instance's news taken into a commit, then its replay's outcome.
struct Step {
    commit: Commit,
    /// The history as the commit leaves it: what was read, the news, and what the replay adds.
    events: History,
    /// The status the instance had (none for a new one).
    prior: Option<Status>,
    /// How many events of `events` the kept replay of the instance was given (see [`Cached`]).
    replayed: Option<usize>,
    /// Whether the news asks for a replay.
    replay: bool,
    /// The runs this activation started by continuing as new.
    runs: u32,
    /// The span of the replay under way.
    span: tracing::Span,
    /// The time of this activation's events: later than every event of the history, so that
    /// a replay tells its news from the last activation's (see [`Replay::advance`]).
    ///
    /// [`Replay::advance`]: crate::workflow::engine::Replay
    now: i64,
}

impl<B: StateStore + MessageQueue> WorkflowWorker<B> {
    /// A worker for `workflows` on `backend`.
    /// Besides `workflows`, it runs the built-in schedule workflow
    /// ([`crate::schedule::SCHEDULE_WORKFLOW`]), so any workflow worker keeps schedules ticking.
    pub fn new(backend: Arc<B>, mut workflows: Workflows, options: WorkflowWorkerOptions) -> Self {
        if workflows
            .newest(crate::schedule::SCHEDULE_WORKFLOW)
            .is_none()
        {
            workflows.register(crate::schedule::SCHEDULE_WORKFLOW, 1, crate::schedule::run);
        }
        Self {
            backend,
            workflows,
            options,
            cache: Mutex::new(HashMap::new()),
            replayer: Replayer::start(),
        }
    }

    /// Takes what this worker remembers of instance `id`: the commit of its activation puts it
    /// back (see [`Self::remember`]); an activation that commits nothing leaves it to be read
    /// from the backend next time.
    fn cached(&self, id: &str) -> Option<Cached> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.remove(id)
    }

    /// Remembers the histories that `steps` leave behind, once committed.
    fn remember(&self, steps: Vec<Step>) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() > CACHED_HISTORIES {
            cache.clear();
        }
        for step in steps {
            let id = &step.commit.instance.id;
            if step.commit.instance.status.is_final() {
                cache.remove(id);
                continue;
            }
            let info = InstanceInfo {
                events: step.events.len() as u64,
                ..step.commit.instance
            };
            cache.insert(
                info.id.clone(),
                Cached {
                    info,
                    history: step.events,
                    replayed: step.replayed,
                },
            );
        }
    }

    /// Runs until `shutdown` turns true; the round under way is finished first.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) -> BackendResult<()> {
        let lease = i64::try_from(self.options.lease.as_millis()).unwrap_or(i64::MAX);
        let idle = i64::try_from(self.options.idle_wait.as_millis()).unwrap_or(i64::MAX);
        if let Some(addr) = self.options.metrics_listen {
            telemetry::serve(addr)
                .await
                .map_err(BackendError::Invalid)?;
        }
        let ready = ReadyFlag::register_if(
            "workflow worker".to_owned(),
            self.options.metrics_listen.is_some(),
        );
        // This process's own messages for workflows come to this worker from memory (see
        // `MessageQueue::subscribe`), as many as eight rounds' worth.
        let _subscription =
            self.backend
                .subscribe(&Topic::Workflows, lease, self.options.batch.max(1) * 8);
        let sweeper = AbortOnDrop(tokio::spawn(sweep(
            self.backend.clone(),
            self.options.retention.clone(),
            self.options.clock,
        )));
        let mut outage = super::outage::Outage::default();
        while !*shutdown.borrow() {
            let handled = match self.round(lease).await {
                Ok(handled) => {
                    ready.set(Readiness::Ready);
                    outage.reached("workflow");
                    handled
                }
                Err(BackendError::Unavailable(message)) => {
                    ready.set(Readiness::Unavailable);
                    record::unavailable("workflow");
                    outage.wait("workflow", &message).await;
                    continue;
                }
                Err(err) => return Err(err),
            };
            // A full batch may leave more behind; otherwise `wait` returns at once if anything
            // came meanwhile, without taking the write lock for an empty receive.
            if handled < self.options.batch {
                tokio::select! {
                    () = self.backend.wait(&Topic::Workflows, idle) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
        ready.set(Readiness::Stopping);
        drop(sweeper);
        Ok(())
    }

    /// Handles the instances that have news; returns how many. Their news is read and taken
    /// into a commit each, they are replayed together on the replay thread, and their commits
    /// are made in one transaction.
    pub async fn round(&self, lease_ms: i64) -> BackendResult<usize> {
        let deliveries = self
            .backend
            .receive(&Topic::Workflows, self.options.batch, lease_ms)
            .await?;
        let mut by_instance: BTreeMap<String, Vec<Delivery>> = BTreeMap::new();
        for d in deliveries {
            by_instance
                .entry(d.message.key.clone())
                .or_default()
                .push(d);
        }
        let count = by_instance.len();
        let mut steps = Vec::with_capacity(count);
        let mut stray = Vec::new();
        // Kept to handle an instance again if another worker changed it meanwhile.
        let mut news: HashMap<String, Vec<Delivery>> = HashMap::with_capacity(count);
        for (id, deliveries) in by_instance {
            match self
                .take_news(&id, deliveries.clone(), Trust::Start)
                .await?
            {
                Some(step) => {
                    news.insert(id, deliveries);
                    steps.push(step);
                }
                None => {
                    tracing::warn!(instance = %id, "news for an instance that does not exist; dropped");
                    stray.extend(deliveries.into_iter().map(|d| d.receipt));
                }
            }
        }
        if !stray.is_empty() {
            self.backend.ack(stray).await?;
        }
        self.replay_all(&mut steps).await;
        self.commit(steps, &news).await?;
        Ok(count)
    }

    /// Commits `steps` in one transaction, and remembers what they leave. Should another worker
    /// have changed one of them since this one read it (it handled the instance's previous
    /// news, or a lease ran out), the others are committed alone, and the news of a conflicting
    /// one handled again from what the store holds now, while this worker still holds its
    /// deliveries, rather than left for their lease.
    async fn commit(
        &self,
        steps: Vec<Step>,
        news: &HashMap<String, Vec<Delivery>>,
    ) -> BackendResult<()> {
        let commits: Vec<Commit> = steps.iter().map(|s| s.commit.clone()).collect();
        let started = Instant::now();
        let committed = self.backend.commit(commits).await;
        record::commit("commit", started.elapsed());
        match committed {
            Ok(()) => {
                count_transitions(&steps);
                self.remember(steps);
                Ok(())
            }
            Err(BackendError::Conflict(_)) => {
                record::conflict();
                for step in steps {
                    self.commit_alone(step, news).await?;
                }
                Ok(())
            }
            Err(err) => Err(err),
        }
    }

    /// Commits one step, handling its news again when another worker changed the instance
    /// meanwhile.
    async fn commit_alone(
        &self,
        mut step: Step,
        news: &HashMap<String, Vec<Delivery>>,
    ) -> BackendResult<()> {
        let id = step.commit.instance.id.clone();
        let mut tries = 0;
        loop {
            match self.backend.commit(vec![step.commit.clone()]).await {
                Ok(()) => {
                    count_transitions(std::slice::from_ref(&step));
                    self.remember(vec![step]);
                    return Ok(());
                }
                Err(BackendError::Conflict(_)) if tries < CONFLICT_RETRIES => {
                    record::conflict();
                    tries += 1;
                    let Some(deliveries) = news.get(&id) else {
                        return Ok(());
                    };
                    match self.handle(&id, deliveries.clone()).await? {
                        Some(again) => step = again,
                        None => return Ok(()),
                    }
                }
                // Still changing under this worker: its news is delivered again when the
                // lease runs out.
                Err(BackendError::Conflict(_)) => {
                    record::conflict();
                    return Ok(());
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// The step one instance's news makes, replayed; `None` for news of an instance that does
    /// not exist.
    async fn handle(&self, id: &str, deliveries: Vec<Delivery>) -> BackendResult<Option<Step>> {
        let Some(step) = self.take_news(id, deliveries, Trust::Store).await? else {
            return Ok(None);
        };
        let mut steps = vec![step];
        self.replay_all(&mut steps).await;
        Ok(steps.pop())
    }

    /// Reads instance `id` and takes its news into a commit; `None` for news of an instance
    /// that does not exist. With [`Trust::Start`], the news of an instance this worker holds
    /// nothing of that begins with its start is taken as news of an instance that has no
    /// history yet, without reading the store (see [`unread`]).
    async fn take_news(
        &self,
        id: &str,
        deliveries: Vec<Delivery>,
        trust: Trust,
    ) -> BackendResult<Option<Step>> {
        // A client wrote to the history: what this worker remembers of it is behind.
        if deliveries
            .iter()
            .any(|d| matches!(d.message.body, MessageBody::News))
        {
            self.cache
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(id);
        }
        let (info, mut events, mut replayed) = match self.cached(id) {
            Some(cached) => (Some(cached.info), cached.history, cached.replayed),
            None => match unread(id, &deliveries).filter(|_| trust == Trust::Start) {
                Some(info) => (info, Vec::new(), None),
                None => self.load(id).await?,
            },
        };
        let now = events
            .last()
            .map_or(i64::MIN, |(_, e)| e.at.saturating_add(1))
            .max(now_ms());
        let prior = info.as_ref().map(|i| i.status);
        let mut commit = Commit {
            expected_events: info.as_ref().map_or(0, |i| i.events),
            create: info.is_none(),
            instance: info.unwrap_or_else(|| InstanceInfo::new(id, "", Value::Null, now)),
            events: Vec::new(),
            messages: Vec::new(),
            acks: deliveries.iter().map(|d| d.receipt.clone()).collect(),
            truncate_to: None,
            queries: None,
        };
        let mut wake = false;
        let mut news = false;
        for d in deliveries {
            match d.message.body {
                MessageBody::Start {
                    name,
                    input,
                    parent,
                    trace,
                    run_timeout_ms,
                } => {
                    // A second start of an instance that has begun is a duplicate.
                    if events.is_empty() && commit.events.is_empty() {
                        let start = Start {
                            name,
                            input,
                            parent,
                            trace,
                            run_timeout_ms,
                        };
                        self.start(&mut commit, start, now);
                    }
                }
                MessageBody::Event { event } => {
                    take_event(&mut commit, &mut events, d.message.id, event, now);
                }
                MessageBody::Wake => wake = true,
                MessageBody::News => news = true,
                MessageBody::Task(_) => {
                    tracing::warn!(
                        instance = id,
                        "a task message reached the workflow topic; dropped"
                    );
                }
            }
        }
        if commit.create && commit.events.is_empty() && commit.instance.status != Status::Failed {
            return Ok(None);
        }
        if commit.truncate_to.is_some() {
            // The history was rewound: what the kept replay was given is not all there.
            replayed = None;
        }
        for (event_id, event) in &commit.events {
            if !events_contain(&events, event_id) {
                events.push((event_id.clone(), event.clone()));
            }
        }
        let replay =
            needs_replay(&commit, wake) || (news && commit.instance.status == Status::Running);
        Ok(Some(Step {
            commit,
            events,
            prior,
            replayed,
            replay,
            runs: 0,
            span: tracing::Span::none(),
            now,
        }))
    }

    /// The instance and its history, from the backend; none and empty for an instance that
    /// does not exist.
    async fn load(
        &self,
        id: &str,
    ) -> BackendResult<(Option<InstanceInfo>, History, Option<usize>)> {
        let info = self.backend.instance(id).await?;
        let history = match &info {
            Some(_) => self.backend.history(id).await?,
            None => Vec::new(),
        };
        Ok((info, history, None))
    }

    /// Starts the instance of `commit`: pinned to the newest version of the workflow, or
    /// failed at once when this worker has none (telling its parent).
    fn start(&self, commit: &mut Commit, start: Start, now: i64) {
        let Start {
            name,
            input,
            parent,
            trace,
            run_timeout_ms,
        } = start;
        let Some((version, _)) = self.workflows.newest(&name) else {
            if let Some((parent, seq)) = &parent {
                commit.messages.push(child_result(
                    parent,
                    *seq,
                    Err(WorkflowError::new(format!(
                        "no workflow named `{name}` is registered"
                    ))),
                ));
            }
            commit.instance.status = Status::Failed;
            commit.instance.error = Some(format!(
                "no workflow named `{name}` is registered with this worker"
            ));
            commit.instance.name = name;
            commit.instance.input = input;
            commit.instance.parent = parent;
            return;
        };
        let span = tracing::debug_span!(
            "workflow",
            workflow = %name,
            instance = %commit.instance.id,
            version
        );
        trace::set_parent(&span, trace.as_deref());
        commit.instance.name = name.clone();
        commit.instance.version = version;
        commit.instance.input = input.clone();
        commit.instance.parent = parent;
        let started = Event::WorkflowStarted {
            name,
            version,
            input,
            clock: self.options.clock,
            trace: trace::traceparent(&span),
            run: 0,
            first_seq: 0,
            run_timeout_ms,
        };
        commit
            .messages
            .extend(run_timeout(&commit.instance.id, &started, now));
        commit.events.push((
            "start".to_owned(),
            HistoryEvent {
                at: now,
                event: started,
            },
        ));
    }

    /// Replays the steps that need it, on the replay thread, and adds what each workflow does
    /// next to its commit: its new events, the messages they send, and its status. A run that
    /// continues as new is replayed again, as the next run.
    async fn replay_all(&self, steps: &mut [Step]) {
        let mut todo: Vec<usize> = (0..steps.len()).filter(|&i| steps[i].replay).collect();
        while !todo.is_empty() {
            let mut requests = Vec::with_capacity(todo.len());
            let mut asked = Vec::with_capacity(todo.len());
            for i in todo.drain(..) {
                if let Some(request) = self.request(&mut steps[i]) {
                    requests.push(request);
                    asked.push(i);
                }
            }
            let replies = self.replayer.activate(requests).await;
            for (i, reply) in asked.into_iter().zip(replies) {
                let step = &mut steps[i];
                match reply {
                    Reply::Activation(activation) => {
                        if self.apply(step, activation) {
                            todo.push(i);
                        }
                    }
                    // The thread keeps no replay that can follow: from the start, then.
                    Reply::Fresh => {
                        step.replayed = None;
                        todo.push(i);
                    }
                }
            }
        }
    }

    /// What to ask the replay thread for `step`: the events its kept replay has not been
    /// given, or the whole history. `None`, with the instance parked, when this worker has not
    /// got the instance's version of the workflow.
    fn request(&self, step: &mut Step) -> Option<Request> {
        let instance = &mut step.commit.instance;
        let Some(workflow) = self.workflows.get(&instance.name, instance.version) else {
            instance.status = Status::Parked;
            instance.error = Some(format!(
                "version {} of workflow `{}` is not registered with this worker: deploy it, then resume the instance",
                instance.version, instance.name
            ));
            return None;
        };
        let parent_trace = match step.events.first().map(|(_, e)| &e.event) {
            Some(Event::WorkflowStarted { trace, .. }) => trace.as_deref(),
            _ => None,
        };
        let span = tracing::debug_span!(
            "workflow.activation",
            workflow = %instance.name,
            instance = %instance.id,
            events = step.events.len(),
        );
        trace::set_parent(&span, parent_trace);
        let (fresh, from) = match step.replayed {
            Some(given) if given <= step.events.len() => (false, given),
            _ => (true, 0),
        };
        step.replayed = Some(step.events.len());
        step.span = span.clone();
        Some(Request {
            id: instance.id.clone(),
            workflow,
            name: instance.name.clone(),
            events: step.events[from..].iter().map(|(_, e)| e.clone()).collect(),
            fresh,
            history_len: step.events.len(),
            span,
        })
    }

    /// Adds what `activation` decided to `step`; whether the next run must be replayed (the
    /// workflow continued as new).
    fn apply(&self, step: &mut Step, mut activation: engine::Activation) -> bool {
        let now = step.now;
        let commit = &mut step.commit;
        let id = commit.instance.id.clone();
        if let Some(error) = self.oversized(&activation.new_events, &activation.outcome) {
            tracing::error!(instance = %id, %error, "workflow failed: an event is too large");
            activation.new_events = vec![Event::WorkflowFailed { error }];
            activation.outcome = Outcome::Finished;
        }
        if activation.outcome != Outcome::Running {
            step.replayed = None;
        }
        if let Some(answers) = activation.answers.take() {
            commit.queries = Some(self.answers(answers));
        }
        let clock = match step.events.first().map(|(_, e)| &e.event) {
            Some(Event::WorkflowStarted { clock, .. }) => *clock,
            _ => Clock::Real,
        };
        let trace = trace::traceparent(&step.span);
        commit.instance.status = Status::Running;
        commit.instance.error = None;
        let continuing = matches!(activation.outcome, Outcome::ContinuedAsNew { .. });
        for event in activation.new_events {
            commit.messages.extend(self.messages_for(
                &id,
                &commit.instance,
                &event,
                now,
                clock,
                trace.as_deref(),
            ));
            // The commands of a run's last step are carried out, but the run's history is
            // replaced by the next one's.
            if continuing {
                continue;
            }
            if let Event::WorkflowCompleted { output } = &event {
                commit.instance.output = Some(output.clone());
            }
            if let Event::WorkflowFailed { error } = &event {
                commit.instance.error = Some(error.to_string());
            }
            let event = (event_id(&event), HistoryEvent { at: now, event });
            step.events.push(event.clone());
            commit.events.push(event);
        }
        match activation.outcome {
            Outcome::ContinuedAsNew {
                input,
                carried,
                next_seq,
            } if step.runs < MAX_RUNS_PER_ACTIVATION => {
                step.runs += 1;
                step.events = self.next_run(commit, &step.events, input, carried, next_seq, now);
                true
            }
            Outcome::ContinuedAsNew { .. } => {
                let reason = format!(
                    "the workflow continued as new {MAX_RUNS_PER_ACTIVATION} times without waiting for anything: a loop that never waits would run forever; make each run wait (a task, a timer, a signal) before it continues"
                );
                settle_outcome(commit, Outcome::Parked(ParkReason::BadHistory(reason)), now);
                false
            }
            outcome => {
                settle_outcome(commit, outcome, now);
                false
            }
        }
    }

    /// Replaces the history in `commit` by the start of the next run, with what this run
    /// leaves it (signals it did not take, a cancellation), and returns that history.
    fn next_run(
        &self,
        commit: &mut Commit,
        ending: &History,
        input: Value,
        carried: Vec<Event>,
        next_seq: u32,
        now: i64,
    ) -> History {
        let id = commit.instance.id.clone();
        let (run, clock, trace, run_timeout_ms) = match ending.first().map(|(_, e)| &e.event) {
            Some(Event::WorkflowStarted {
                run,
                clock,
                trace,
                run_timeout_ms,
                ..
            }) => (*run + 1, *clock, trace.clone(), *run_timeout_ms),
            _ => (1, Clock::Real, None, None),
        };
        let name = commit.instance.name.clone();
        let version = self
            .workflows
            .newest(&name)
            .map_or(commit.instance.version, |(v, _)| v);
        tracing::debug!(instance = %id, run, "workflow continued as new");
        let started = Event::WorkflowStarted {
            name,
            version,
            input: input.clone(),
            clock,
            trace,
            run,
            first_seq: next_seq,
            run_timeout_ms,
        };
        commit.messages.extend(run_timeout(&id, &started, now));
        let mut history: History = vec![(
            "start".to_owned(),
            HistoryEvent {
                at: now,
                event: started,
            },
        )];
        for (n, event) in carried.into_iter().enumerate() {
            history.push((
                format!("carried/{run}/{n}"),
                HistoryEvent { at: now, event },
            ));
        }
        commit.instance.version = version;
        commit.instance.input = input;
        commit.instance.output = None;
        commit.truncate_to = Some(0);
        commit.events.clone_from(&history);
        history
    }

    /// The answers an activation read, as they are recorded: one over
    /// [`WorkflowWorkerOptions::max_event_bytes`] is recorded as an error that says so.
    fn answers(
        &self,
        answers: BTreeMap<String, Result<Value, String>>,
    ) -> BTreeMap<String, Answer> {
        answers
            .into_iter()
            .map(|(name, answer)| {
                let answer = answer
                    .and_then(|value| {
                        limits::check(
                            &format!("the answer to query `{name}`"),
                            &value,
                            self.options.max_event_bytes,
                            "WorkflowWorkerOptions::max_event_bytes",
                        )
                        .map(|()| value)
                    })
                    .map_or_else(Answer::Error, Answer::Value);
                (name, answer)
            })
            .collect()
    }

    /// Why an activation's new events cannot be recorded: a value larger than
    /// [`WorkflowWorkerOptions::max_event_bytes`].
    fn oversized(&self, events: &[Event], outcome: &Outcome) -> Option<WorkflowError> {
        let limit = self.options.max_event_bytes;
        let next_run = match outcome {
            Outcome::ContinuedAsNew { input, .. } => {
                Some(("the input of the next run".to_owned(), input))
            }
            _ => None,
        };
        events
            .iter()
            .filter_map(|event| match event {
                Event::TaskScheduled {
                    seq,
                    service,
                    name,
                    input,
                    ..
                } => Some((
                    format!("the input of task {service}/{name} (command {seq})"),
                    input,
                )),
                Event::ChildStarted {
                    seq, name, input, ..
                } => Some((format!("the input of child {name} (command {seq})"), input)),
                Event::WorkflowCompleted { output } => {
                    Some(("the workflow's output".to_owned(), output))
                }
                _ => None,
            })
            .chain(next_run)
            .find_map(|(what, value)| {
                limits::check(
                    &what,
                    value,
                    limit,
                    "WorkflowWorkerOptions::max_event_bytes",
                )
                .err()
                .map(WorkflowError::new)
            })
    }

    /// What a new event of the engine sends.
    fn messages_for(
        &self,
        id: &str,
        instance: &InstanceInfo,
        event: &Event,
        now: i64,
        clock: Clock,
        trace: Option<&str>,
    ) -> Vec<Message> {
        match event {
            Event::TaskScheduled {
                seq,
                service,
                name,
                input,
                retry_policy,
            } => vec![Message {
                id: ids::task_id(id, *seq),
                topic: Topic::Tasks(service.clone()),
                key: id.to_owned(),
                deliver_at: now,
                body: MessageBody::Task(TaskMessage {
                    task_id: ids::task_id(id, *seq),
                    instance_id: id.to_owned(),
                    seq: *seq,
                    service: service.clone(),
                    name: name.clone(),
                    input: input.clone(),
                    retry_policy: retry_policy.clone(),
                    attempt: 0,
                    redrive: 0,
                    scheduled_at: now,
                    trace: trace.map(str::to_owned),
                }),
            }],
            Event::TimerStarted { seq, fire_at } => vec![Message {
                id: ids::timer_id(id, *seq),
                topic: Topic::Workflows,
                key: id.to_owned(),
                deliver_at: clock.to_real(*fire_at),
                body: MessageBody::Event {
                    event: Event::TimerFired { seq: *seq },
                },
            }],
            Event::ChildStarted {
                seq,
                name,
                workflow_id,
                input,
            } => vec![Message {
                id: ids::start_id(workflow_id),
                topic: Topic::Workflows,
                key: workflow_id.clone(),
                deliver_at: now,
                body: MessageBody::Start {
                    name: name.clone(),
                    input: input.clone(),
                    parent: Some((id.to_owned(), *seq)),
                    trace: trace.map(str::to_owned),
                    run_timeout_ms: None,
                },
            }],
            Event::WorkflowCompleted { output } => match &instance.parent {
                Some((parent, seq)) => vec![child_result(parent, *seq, Ok(output.clone()))],
                None => Vec::new(),
            },
            Event::WorkflowFailed { error } => match &instance.parent {
                Some((parent, seq)) => vec![child_result(parent, *seq, Err(error.clone()))],
                None => Vec::new(),
            },
            _ => Vec::new(),
        }
    }
}

/// Aborts a task when dropped: the sweeper ends with its worker, however the worker ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Where [`WorkflowWorker::take_news`] may take an instance's state from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trust {
    /// From news that begins with the instance's start (see [`unread`]), else the store.
    Start,
    /// From the store: another worker changed the instance meanwhile.
    Store,
}

/// The state of an instance whose news `deliveries` begin with its start, as it stands before
/// that start is taken: what `Client::start` stored (the instance, running, without history)
/// for a start without a parent; nothing for a child's start, which a parent's commit only
/// sends, and whose instance the child's first commit creates. `None` when the news has no
/// start. A start redelivered to an instance that has begun meanwhile makes the commit
/// conflict (it expects no events, or creates an instance that exists), and the news is taken
/// again from the store: a round trip to the store saved for each new instance, at the cost of
/// a second try for a duplicate.
fn unread(id: &str, deliveries: &[Delivery]) -> Option<Option<InstanceInfo>> {
    match &deliveries.first()?.message.body {
        MessageBody::Start { parent: None, .. } => {
            Some(Some(InstanceInfo::new(id, "", Value::Null, now_ms())))
        }
        MessageBody::Start {
            parent: Some(_), ..
        } => Some(None),
        _ => None,
    }
}

/// Deletes ended instances past their retention, every `retention.sweep_every`.
async fn sweep<B: StateStore>(backend: Arc<B>, retention: Retention, clock: Clock) {
    let mut every = tokio::time::interval(retention.sweep_every.max(Duration::from_millis(10)));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        match purge_expired(backend.as_ref(), &retention, clock).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "deleted instances past their retention"),
            Err(err) => {
                tracing::warn!(%err, "cannot delete instances past their retention; trying again later")
            }
        }
    }
}

/// One sweep: each workflow with its own retention, then the others; how many were deleted.
pub(crate) async fn purge_expired<B: StateStore + ?Sized>(
    backend: &B,
    retention: &Retention,
    clock: Clock,
) -> BackendResult<usize> {
    let now = clock.to_workflow(now_ms());
    let cutoff = |keep: Duration| {
        clock.to_real(now.saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX)))
    };
    let batch = retention.batch.max(1);
    let mut purged = 0;
    let own: Vec<String> = retention.by_workflow.keys().cloned().collect();
    let mut passes: Vec<(Option<&str>, Duration)> = retention
        .by_workflow
        .iter()
        .filter_map(|(name, keep)| keep.map(|k| (Some(name.as_str()), k)))
        .collect();
    passes.extend(retention.keep.map(|k| (None, k)));
    for (name, keep) in passes {
        loop {
            let except: &[String] = if name.is_some() { &[] } else { &own };
            let deleted = backend
                .purge_ended(cutoff(keep), name, except, batch)
                .await?;
            purged += deleted.len();
            if deleted.len() < batch {
                break;
            }
            // Bounded batches, with room for the workers' own transactions between them.
            tokio::task::yield_now().await;
        }
    }
    Ok(purged)
}

/// A start message's fields.
struct Start {
    name: String,
    input: Value,
    parent: Option<(String, u32)>,
    trace: Option<String>,
    run_timeout_ms: Option<u64>,
}

/// The message that ends the run `started` begins when its run timeout runs out.
fn run_timeout(id: &str, started: &Event, now: i64) -> Option<Message> {
    let Event::WorkflowStarted {
        run,
        run_timeout_ms: Some(ms),
        clock,
        ..
    } = started
    else {
        return None;
    };
    let ms = i64::try_from(*ms).unwrap_or(i64::MAX);
    Some(Message {
        id: ids::run_timeout_id(id, *run),
        topic: Topic::Workflows,
        key: id.to_owned(),
        deliver_at: clock.to_real(clock.to_workflow(now).saturating_add(ms)),
        body: MessageBody::Event {
            event: Event::RunTimedOut { run: *run },
        },
    })
}

/// Adds an event that came as a message (a result, a timer, a signal...) to `commit`, unless
/// the history holds it already. The result of a task an operator retried, for a workflow that
/// failed of it, rewinds the history to before the failure.
fn take_event(commit: &mut Commit, events: &mut History, event_id: String, event: Event, now: i64) {
    let known = events
        .iter()
        .chain(&commit.events)
        .any(|(id, _)| *id == event_id);
    if known {
        return;
    }
    let id = &commit.instance.id;
    // News of an earlier run (the late result of a task it left running, its timers, its
    // timeout) is not this run's.
    let (run, first_seq) = current_run(events.iter().chain(&commit.events));
    let stale = match &event {
        Event::RunTimedOut { run: ended } => *ended != run,
        other => other.result_seq().is_some_and(|seq| seq < first_seq),
    };
    if stale {
        tracing::debug!(instance = %id, event = %event.describe(), "news of an earlier run; dropped");
        return;
    }
    // An ended instance takes only records and the result of a task an operator retried (which
    // reopens it); a timeout's timer or an abandoned task's result is not part of its story.
    if commit.instance.status.is_final()
        && !ids::is_retry(&event_id)
        && !matches!(event, Event::OperatorAction { .. })
    {
        tracing::debug!(instance = %id, event = %event.describe(), "news for an instance that has ended; dropped");
        return;
    }
    match task_result_seq(&event).and_then(|seq| result_index(events, seq)) {
        Some(index)
            if ids::is_retry(&event_id)
                && ended_in_failure(events)
                && commit.truncate_to.is_none() =>
        {
            tracing::info!(
                instance = %id,
                "the result of a retried task arrived; the workflow goes on from it"
            );
            let kept = rewind(events, index);
            commit.truncate_to = Some(index as u64);
            // What was kept is older than what this batch brought so far.
            commit.events.splice(0..0, kept);
            commit.instance.status = Status::Running;
            commit.instance.error = None;
            commit
                .events
                .push((event_id, HistoryEvent { at: now, event }));
        }
        Some(_) => {
            tracing::warn!(
                instance = %id,
                "a second result for a task the workflow already handled; dropped"
            );
        }
        None => commit
            .events
            .push((event_id, HistoryEvent { at: now, event })),
    }
}

/// The number and first command of the run `events` (a history) begin.
fn current_run<'a>(mut events: impl Iterator<Item = &'a (String, HistoryEvent)>) -> (u32, u32) {
    match events.next().map(|(_, e)| &e.event) {
        Some(Event::WorkflowStarted { run, first_seq, .. }) => (*run, *first_seq),
        _ => (0, 0),
    }
}

/// Whether `commit` brings something the workflow reacts to: not a duplicate, not an
/// operator's record alone (an instance reopened for a retried task would otherwise end
/// again, as before, while its task runs), and nothing for a finished instance or for a parked
/// one unless it is woken (resumed).
fn needs_replay(commit: &Commit, wake: bool) -> bool {
    let news = wake
        || commit
            .events
            .iter()
            .any(|(_, e)| !matches!(e.event, Event::OperatorAction { .. }));
    news && !commit.instance.status.is_final() && (commit.instance.status != Status::Parked || wake)
}

/// The status an activation's outcome gives the instance, and what a cancellation sends.
fn settle_outcome(commit: &mut Commit, outcome: Outcome, now: i64) {
    let id = commit.instance.id.clone();
    match outcome {
        Outcome::Running => {}
        Outcome::Finished => {
            commit.instance.status = if commit.instance.output.is_some() {
                Status::Completed
            } else {
                Status::Failed
            };
        }
        Outcome::Cancelled { children } => {
            commit.instance.status = Status::Cancelled;
            cancel_children(commit, children, "its parent was cancelled", now);
            if let Some((parent, seq)) = &commit.instance.parent {
                commit.messages.push(child_result(
                    parent,
                    *seq,
                    Err(WorkflowError::new("cancelled")),
                ));
            }
        }
        Outcome::TimedOut { children } => {
            commit.instance.status = Status::Failed;
            cancel_children(commit, children, "its parent's run timed out", now);
        }
        // Handled by the replay, which starts the next run.
        Outcome::ContinuedAsNew { .. } => {}
        Outcome::Parked(reason) => {
            tracing::error!(instance = %id, %reason, "workflow parked");
            commit.instance.status = Status::Parked;
            commit.instance.error = Some(reason.to_string());
        }
    }
}

/// Cancels the child instances still running, saying why (`reason`, about the parent).
fn cancel_children(commit: &mut Commit, children: Vec<String>, reason: &str, now: i64) {
    let id = &commit.instance.id;
    for child in children {
        commit.messages.push(Message {
            id: ids::cancel_id(&child),
            topic: Topic::Workflows,
            key: child.clone(),
            deliver_at: now,
            body: MessageBody::Event {
                event: Event::CancelRequested {
                    reason: format!("{reason} (`{id}`)"),
                },
            },
        });
    }
}

/// Counts the instances that `steps` started, ended or parked.
fn count_transitions(steps: &[Step]) {
    for Step { commit, prior, .. } in steps {
        let name = &commit.instance.name;
        if commit
            .events
            .iter()
            .any(|(_, e)| matches!(e.event, Event::WorkflowStarted { .. }))
        {
            record::started(name);
        }
        let status = commit.instance.status;
        let ended = match status {
            Status::Running => None,
            Status::Completed => Some("completed"),
            Status::Failed => Some("failed"),
            Status::Cancelled => Some("cancelled"),
            Status::Parked => Some("parked"),
        };
        if let Some(ended) = ended
            && *prior != Some(status)
        {
            record::ended(name, ended);
        }
    }
}

/// The command a result event answers.
fn task_result_seq(event: &Event) -> Option<u32> {
    match event {
        Event::TaskCompleted { seq, .. } | Event::TaskFailed { seq, .. } => Some(*seq),
        _ => None,
    }
}

/// Where the history holds the result of task `seq`.
fn result_index(events: &History, seq: u32) -> Option<usize> {
    events
        .iter()
        .position(|(_, e)| task_result_seq(&e.event) == Some(seq))
}

fn ended_in_failure(events: &[(String, HistoryEvent)]) -> bool {
    events
        .iter()
        .any(|(_, e)| matches!(e.event, Event::WorkflowFailed { .. }))
}

fn events_contain(events: &[(String, HistoryEvent)], id: &str) -> bool {
    events.iter().any(|(e, _)| e == id)
}

/// Cuts the history back to just before `index` (the failed result of a task an operator
/// retried). What came from outside after it (signals, cancellation, results of commands issued
/// before it) is kept and returned, to be appended again; what the workflow did in reaction to
/// the failure is dropped, and replay does it again as the new result leads.
fn rewind(events: &mut History, index: usize) -> History {
    let after = events.split_off(index);
    let issued_before: Vec<u32> = events
        .iter()
        .filter_map(|(_, e)| e.event.command_seq())
        .collect();
    after
        .into_iter()
        .skip(1)
        .filter(|(_, e)| match &e.event {
            Event::SignalReceived { .. }
            | Event::CancelRequested { .. }
            | Event::OperatorAction { .. } => true,
            Event::TaskCompleted { seq, .. }
            | Event::TaskFailed { seq, .. }
            | Event::TimerFired { seq }
            | Event::ChildCompleted { seq, .. } => issued_before.contains(seq),
            _ => false,
        })
        .collect()
}

fn child_result(parent: &str, seq: u32, result: Result<Value, WorkflowError>) -> Message {
    Message {
        id: ids::child_result_id(parent, seq),
        topic: Topic::Workflows,
        key: parent.to_owned(),
        deliver_at: now_ms(),
        body: MessageBody::Event {
            event: Event::ChildCompleted { seq, result },
        },
    }
}
