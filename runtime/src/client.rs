//! The client: start workflows, wait for results, signal, cancel, inspect, repair.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::backend::{
    BackendError, Commit, Cursor, DeadFilter, DeadLetter, Inspect, InstanceFilter, InstanceInfo,
    Message, MessageBody, MessageQueue, QueryAnswers, ServiceStats, StateStore, Status,
    TaskMessage, Topic,
};
use crate::operate::{self, InstanceDetail};
use crate::schedule::{self, Control, SCHEDULE_WORKFLOW, ScheduleSpec, ScheduleState};
use crate::time::now_ms;
use crate::worker::ids;
use crate::workflow::Event;
use crate::workflow::replay::RecordedHistory;

/// What a client call can fail with. Each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No instance has this id.
    #[error("no workflow instance `{0}`: check the id (list instances with `list`)")]
    UnknownInstance(String),
    /// An instance with this id exists with another workflow or input.
    #[error(
        "instance `{id}` already exists with {what}: starting again with the same id is only idempotent with the same workflow and input; choose another id"
    )]
    DuplicateStart {
        /// The instance id.
        id: String,
        /// What differs.
        what: String,
    },
    /// The instance has ended, so it cannot take this.
    #[error("instance `{id}` has ended ({status:?}): it takes no more signals or cancellations")]
    Ended {
        /// The instance id.
        id: String,
        /// How it ended.
        status: Status,
    },
    /// The workflow returned an error.
    #[error("workflow `{id}` failed: {message}")]
    Failed {
        /// The instance id.
        id: String,
        /// Its error.
        message: String,
    },
    /// The instance was cancelled.
    #[error("workflow `{0}` was cancelled")]
    Cancelled(String),
    /// The instance is parked until fixed code is deployed.
    #[error("workflow `{id}` is parked: {reason}; deploy fixed code, then `resume` it")]
    Parked {
        /// The instance id.
        id: String,
        /// Why.
        reason: String,
    },
    /// The instance did not end in time.
    #[error("workflow `{0}` did not end within the time given; it goes on running")]
    Timeout(String),
    /// The output does not decode into the type asked for.
    #[error("the output of workflow `{id}` does not decode: {message}")]
    Decode {
        /// The instance id.
        id: String,
        /// The decoder's message.
        message: String,
    },
    /// A value is larger than one event may hold.
    #[error("{0}")]
    TooLarge(String),
    /// The string given is not a completion token, or names no completion of its instance.
    #[error(
        "{0}: a completion token is what `WorkflowContext::completion` gave the workflow (`cgc1.` and three parts), unchanged"
    )]
    InvalidToken(String),
    /// The completion was resolved before: a token resolves once.
    #[error(
        "the completion (command {seq} of instance `{id}`) was already resolved {when}; a token resolves once, so this one changed nothing"
    )]
    AlreadyCompleted {
        /// The instance id.
        id: String,
        /// The command number.
        seq: u32,
        /// When, and with what.
        when: String,
    },
    /// A schedule cannot be made as given.
    #[error("{0}")]
    InvalidSchedule(String),
    /// The instance has not ended, so it cannot be purged.
    #[error(
        "instance `{id}` has not ended ({status:?}): cancel it first (`cancel`), then purge it"
    )]
    NotEnded {
        /// The instance id.
        id: String,
        /// Where it is.
        status: Status,
    },
    /// A query got no answer.
    #[error("query `{name}` of instance `{id}`: {message}")]
    Query {
        /// The instance id.
        id: String,
        /// The query.
        name: String,
        /// Why.
        message: String,
    },
    /// No schedule has this name.
    #[error("no schedule `{0}`: list them with `schedule list`")]
    UnknownSchedule(String),
    /// No dead task has this id.
    #[error("no dead task `{0}`: list them with `dead` (it may have been retried already)")]
    UnknownDeadTask(String),
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Starts and controls workflow instances. Cheap to clone.
#[derive(Debug)]
pub struct Client<B> {
    backend: Arc<B>,
    /// Who acts, recorded in the history of every instance this client changes.
    actor: Option<String>,
    /// The largest input, signal or completion value this client sends, in bytes of JSON.
    max_event_bytes: usize,
}

impl<B> Clone for Client<B> {
    fn clone(&self) -> Self {
        Self {
            backend: self.backend.clone(),
            actor: self.actor.clone(),
            max_event_bytes: self.max_event_bytes,
        }
    }
}

/// How to start an instance, beyond its workflow, id and input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartOptions {
    /// How long each run of the instance may take: past it, the instance fails with a reason
    /// that says so, and its children still running are cancelled. A run that continues as
    /// new gives the next run the same bound, counted from its own start.
    pub run_timeout: Option<Duration>,
}

impl<B> Client<B> {
    /// The same client, recording `by` (a person, a tool, a token's name) in the history of
    /// every instance it signals, cancels, resumes or retries a task of, as an
    /// [`Event::OperatorAction`].
    #[must_use]
    pub fn acting_as(mut self, by: impl Into<String>) -> Self {
        self.actor = Some(by.into());
        self
    }

    /// The same client, sending inputs, signals and completion values of at most `bytes` of
    /// JSON (default [`crate::limits::MAX_EVENT_BYTES`]). Keep it at most the workers' own
    /// `max_event_bytes`.
    #[must_use]
    pub fn with_max_event_bytes(mut self, bytes: usize) -> Self {
        self.max_event_bytes = bytes;
        self
    }

    /// Whether `value` fits in one event.
    fn fits(&self, what: &str, value: &Value) -> Result<(), ClientError> {
        crate::limits::check(
            what,
            value,
            self.max_event_bytes,
            "Client::with_max_event_bytes",
        )
        .map_err(ClientError::TooLarge)
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<B> {
        &self.backend
    }

    /// The record of an action on instance `id`, when this client names who acts.
    fn action(&self, id: &str, action: &str, detail: String) -> Option<Message> {
        let by = self.actor.clone()?;
        Some(Message {
            id: format!("{id}/action/{}", uuid::Uuid::new_v4()),
            topic: Topic::Workflows,
            key: id.to_owned(),
            deliver_at: now_ms(),
            body: MessageBody::Event {
                event: Event::OperatorAction {
                    action: action.to_owned(),
                    by,
                    detail,
                },
            },
        })
    }
}

impl<B: StateStore + MessageQueue> Client<B> {
    /// A client of `backend`.
    pub fn new(backend: Arc<B>) -> Self {
        Self {
            backend,
            actor: None,
            max_event_bytes: crate::limits::MAX_EVENT_BYTES,
        }
    }

    /// Starts an instance of workflow `name` (its newest version) with `input`, and returns its
    /// id: `id` if given, else a new UUID. Starting again with the same id, workflow and input
    /// does nothing and returns the id; with another workflow or input it is an error.
    pub async fn start<I: Serialize>(
        &self,
        name: &str,
        id: Option<&str>,
        input: &I,
    ) -> Result<String, ClientError> {
        self.start_with(name, id, input, &StartOptions::default())
            .await
    }

    /// [`Client::start`] with options: a run timeout.
    pub async fn start_with<I: Serialize>(
        &self,
        name: &str,
        id: Option<&str>,
        input: &I,
        options: &StartOptions,
    ) -> Result<String, ClientError> {
        let id = id.map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
        let input = serde_json::to_value(input)
            .map_err(|e| BackendError::Invalid(format!("cannot encode the input: {e}")))?;
        self.fits("the workflow's input", &input)?;
        let run_timeout_ms = options
            .run_timeout
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let now = now_ms();
        let instance = InstanceInfo::new(&id, name, input.clone(), now);
        let commit = Commit {
            instance,
            create: true,
            expected_events: 0,
            events: Vec::new(),
            messages: vec![Message {
                id: ids::start_id(&id),
                topic: Topic::Workflows,
                key: id.clone(),
                deliver_at: now,
                body: MessageBody::Start {
                    name: name.to_owned(),
                    input: input.clone(),
                    parent: None,
                    trace: crate::telemetry::trace::traceparent(&tracing::Span::current()),
                    run_timeout_ms,
                },
            }],
            acks: Vec::new(),
            truncate_to: None,
            queries: None,
        };
        match self.backend.commit(vec![commit]).await {
            Ok(()) => Ok(id),
            Err(BackendError::Conflict(_)) => {
                let existing = self.status(&id).await?;
                if existing.name != name {
                    Err(ClientError::DuplicateStart {
                        id,
                        what: format!("workflow `{}`", existing.name),
                    })
                } else if existing.input != input {
                    Err(ClientError::DuplicateStart {
                        id,
                        what: "another input".into(),
                    })
                } else {
                    Ok(id)
                }
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Waits until the instance ends and returns its output, or `timeout` passes.
    pub async fn result<O: DeserializeOwned>(
        &self,
        id: &str,
        timeout: Duration,
    ) -> Result<O, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            let info = self.status(id).await?;
            match info.status {
                Status::Completed => {
                    let output = info.output.unwrap_or(Value::Null);
                    return serde_json::from_value(output).map_err(|e| ClientError::Decode {
                        id: id.to_owned(),
                        message: e.to_string(),
                    });
                }
                Status::Failed => {
                    return Err(ClientError::Failed {
                        id: id.to_owned(),
                        message: info.error.unwrap_or_default(),
                    });
                }
                Status::Cancelled => return Err(ClientError::Cancelled(id.to_owned())),
                Status::Parked => {
                    return Err(ClientError::Parked {
                        id: id.to_owned(),
                        reason: info.error.unwrap_or_default(),
                    });
                }
                Status::Running => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClientError::Timeout(id.to_owned()));
            }
            // Woken at once by a change made in this process, and on the embedded backend by one
            // made in another process on the same file; the bound is for a change in another
            // process on the distributed backend, and for a lost notification.
            self.backend
                .wait_for_change(&info, left.min(Duration::from_millis(100)))
                .await;
        }
    }

    /// Sends signal `name` with `payload` to a running instance. Each call is a new signal; to
    /// send one that a retry of the same call must not repeat, use [`Client::signal_with_id`].
    pub async fn signal<T: Serialize>(
        &self,
        id: &str,
        name: &str,
        payload: &T,
    ) -> Result<(), ClientError> {
        self.signal_with_id(id, name, &uuid::Uuid::new_v4().to_string(), payload)
            .await
    }

    /// Sends signal `name` with `payload`, identified by `signal_id`: sending it again with the
    /// same id (a retried request, a redelivered event) delivers it once.
    pub async fn signal_with_id<T: Serialize>(
        &self,
        id: &str,
        name: &str,
        signal_id: &str,
        payload: &T,
    ) -> Result<(), ClientError> {
        self.running(id).await?;
        let payload = serde_json::to_value(payload)
            .map_err(|e| BackendError::Invalid(format!("cannot encode the signal: {e}")))?;
        self.fits(&format!("the payload of signal `{name}`"), &payload)?;
        let message = Message {
            id: format!("{id}/signal/{signal_id}"),
            topic: Topic::Workflows,
            key: id.to_owned(),
            deliver_at: now_ms(),
            body: MessageBody::Event {
                event: Event::SignalReceived {
                    name: name.to_owned(),
                    payload,
                },
            },
        };
        let record = self.action(id, "signal", format!("`{name}`"));
        Ok(self
            .backend
            .send(record.into_iter().chain([message]).collect())
            .await?)
    }

    /// Cancels a running instance, its children and its timers.
    pub async fn cancel(&self, id: &str, reason: &str) -> Result<(), ClientError> {
        self.running(id).await?;
        let message = Message {
            id: ids::cancel_id(id),
            topic: Topic::Workflows,
            key: id.to_owned(),
            deliver_at: now_ms(),
            body: MessageBody::Event {
                event: Event::CancelRequested {
                    reason: reason.to_owned(),
                },
            },
        };
        let record = self.action(id, "cancel", reason.to_owned());
        Ok(self
            .backend
            .send(record.into_iter().chain([message]).collect())
            .await?)
    }

    /// Replays a parked instance again, after fixed code was deployed.
    pub async fn resume(&self, id: &str) -> Result<(), ClientError> {
        let info = self.status(id).await?;
        if info.status.is_final() {
            return Err(ClientError::Ended {
                id: id.to_owned(),
                status: info.status,
            });
        }
        let wake = Message {
            id: format!("{id}/wake/{}", uuid::Uuid::new_v4()),
            topic: Topic::Workflows,
            key: id.to_owned(),
            deliver_at: now_ms(),
            body: MessageBody::Wake,
        };
        let record = self.action(id, "resume", String::new());
        self.reopen(info, record.into_iter().chain([wake]).collect())
            .await
    }

    /// Marks an instance running again, sending `messages` with the change. If a worker changed
    /// it meanwhile, the worker's change stands.
    async fn reopen(&self, info: InstanceInfo, messages: Vec<Message>) -> Result<(), ClientError> {
        let commit = Commit {
            expected_events: info.events,
            instance: InstanceInfo {
                status: Status::Running,
                error: None,
                ..info
            },
            create: false,
            events: Vec::new(),
            messages,
            acks: Vec::new(),
            truncate_to: None,
            queries: None,
        };
        match self.backend.commit(vec![commit]).await {
            Ok(()) | Err(BackendError::Conflict(_)) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    /// The instance's status, without its history.
    pub async fn status(&self, id: &str) -> Result<InstanceInfo, ClientError> {
        self.backend
            .instance(id)
            .await?
            .ok_or_else(|| ClientError::UnknownInstance(id.to_owned()))
    }

    /// The events of instance `id`'s history, without their ids.
    async fn events(&self, id: &str) -> Result<Vec<crate::workflow::HistoryEvent>, ClientError> {
        let history = self.backend.history(id).await?;
        Ok(history.into_iter().map(|(_, e)| e).collect())
    }

    /// The instance's full history, ready to save for the replay harness.
    pub async fn history(&self, id: &str) -> Result<RecordedHistory, ClientError> {
        self.status(id).await?;
        let events = self.events(id).await?;
        Ok(RecordedHistory {
            instance_id: id.to_owned(),
            events,
        })
    }

    /// Instances by workflow name and status, newest first.
    pub async fn list(
        &self,
        name: Option<&str>,
        status: Option<Status>,
        limit: usize,
    ) -> Result<Vec<InstanceInfo>, ClientError> {
        Ok(self.backend.list(name, status, limit).await?)
    }

    /// The dead letters: tasks that failed for good, and messages that could not be read.
    pub async fn dead_tasks(&self) -> Result<Vec<DeadLetter>, ClientError> {
        Ok(self.backend.dead_letters().await?)
    }

    /// Runs a dead task again, with all its attempts. When it succeeds, a workflow that failed
    /// because of it goes on from there, as if the task had succeeded the first time.
    pub async fn retry_dead_task(&self, id: &str) -> Result<(), ClientError> {
        let dead = self.backend.dead_letters().await?;
        let letter = dead
            .into_iter()
            .find(|d| d.id == id)
            .ok_or_else(|| ClientError::UnknownDeadTask(id.to_owned()))?;
        self.retry_letter(letter).await
    }

    async fn retry_letter(&self, letter: DeadLetter) -> Result<(), ClientError> {
        let message = match serde_json::from_str::<MessageBody>(&letter.body) {
            Ok(MessageBody::Task(mut task)) => {
                task.attempt = 0;
                task.redrive += 1;
                // The schedule-to-close bound counts again from the operator's retry.
                task.scheduled_at = now_ms();
                Some(Message {
                    id: letter.id.clone(),
                    topic: letter.topic.clone(),
                    key: letter.key.clone(),
                    deliver_at: now_ms(),
                    body: MessageBody::Task(task),
                })
            }
            _ => None,
        };
        let reopen = message.is_some();
        let record = self.action(&letter.key, "retry", format!("dead task `{}`", letter.id));
        // A workflow that failed because of the task waits for its new result (the worker
        // rewinds it when the result comes). It is reopened before the task is sent again:
        // afterwards the result could end the workflow at any moment, and the rewound history
        // can have as many events as the failed one, so a late reopen would not conflict and
        // would mark a completed instance running.
        if reopen
            && let Some(info) = self.backend.instance(&letter.key).await?
            && info.status == Status::Failed
        {
            self.reopen(info, record.into_iter().collect()).await?;
            self.backend.redrive(&letter.id, message).await?;
            return Ok(());
        }
        self.backend.redrive(&letter.id, message).await?;
        if let Some(record) = record {
            self.backend.send(vec![record]).await?;
        }
        Ok(())
    }

    /// Resolves the completion `token` names with `value`: the workflow waiting on it goes on
    /// with it. A token resolves once; a second completion is refused with
    /// [`ClientError::AlreadyCompleted`], also when two race (the change is committed against
    /// the instance's history, so one of them wins).
    pub async fn complete<T: Serialize>(&self, token: &str, value: &T) -> Result<(), ClientError> {
        let value = serde_json::to_value(value)
            .map_err(|e| BackendError::Invalid(format!("cannot encode the completion: {e}")))?;
        self.fits("the completion's value", &value)?;
        self.resolve(token, Ok(value)).await
    }

    /// Resolves the completion `token` names with an error: the workflow waiting on it gets a
    /// [`WorkflowError`](crate::workflow::WorkflowError) with `message`. Refused like
    /// [`Client::complete`] when it was resolved before.
    pub async fn fail_completion(&self, token: &str, message: &str) -> Result<(), ClientError> {
        self.resolve(token, Err(message.to_owned())).await
    }

    async fn resolve(&self, token: &str, result: Result<Value, String>) -> Result<(), ClientError> {
        let (id, seq) = crate::workflow::parse_completion_token(token)
            .ok_or_else(|| ClientError::InvalidToken("this is not a completion token".into()))?;
        let event_id = format!("completion/{seq}");
        loop {
            let info = match self.status(&id).await {
                Err(ClientError::UnknownInstance(_)) => {
                    return Err(ClientError::InvalidToken(format!(
                        "the token's instance `{id}` does not exist (it may have been purged)"
                    )));
                }
                other => other?,
            };
            let history = self.backend.history(&id).await?;
            if history.len() as u64 != info.events {
                continue; // A worker committed between the two reads.
            }
            let made = history.iter().any(|(_, e)| {
                matches!(&e.event, Event::CompletionCreated { seq: s, token: t } if *s == seq && t == token.trim())
            });
            if !made {
                return Err(ClientError::InvalidToken(format!(
                    "instance `{id}` has no such completion in its current run (the token may be of an earlier run, or altered)"
                )));
            }
            if let Some((_, resolved)) = history.iter().find(|(e, _)| *e == event_id) {
                let how = match &resolved.event {
                    Event::CompletionResolved { result: Ok(_), .. } => "with a value",
                    _ => "with an error",
                };
                return Err(ClientError::AlreadyCompleted {
                    id,
                    seq,
                    when: format!("at {} (Unix ms) {how}", resolved.at),
                });
            }
            if info.status.is_final() {
                return Err(ClientError::Ended {
                    id,
                    status: info.status,
                });
            }
            let now = now_ms();
            let record = self.action(&id, "complete", format!("completion {seq}"));
            let news = Message {
                id: ids::news_id(&id, &event_id),
                topic: Topic::Workflows,
                key: id.clone(),
                deliver_at: now,
                body: MessageBody::News,
            };
            let commit = Commit {
                expected_events: info.events,
                instance: InstanceInfo {
                    updated_at: now,
                    ..info
                },
                create: false,
                events: vec![(
                    event_id.clone(),
                    crate::workflow::HistoryEvent {
                        at: now,
                        event: Event::CompletionResolved {
                            seq,
                            result: result.clone(),
                        },
                    },
                )],
                messages: record.into_iter().chain([news]).collect(),
                acks: Vec::new(),
                truncate_to: None,
                queries: None,
            };
            match self.backend.commit(vec![commit]).await {
                Ok(()) => return Ok(()),
                // A worker changed the instance meanwhile: read it again.
                Err(BackendError::Conflict(_)) => {}
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// Answers query `name` of instance `id` (see
    /// [`WorkflowContext::on_query`](crate::workflow::WorkflowContext::on_query)): replays its
    /// history, in this process, through the workflow code in `workflows`, and returns what the
    /// handler gives at the end of it. The instance is not changed and no worker is involved, so
    /// it answers for a running, ended or waiting instance alike.
    pub async fn query<T: DeserializeOwned>(
        &self,
        workflows: &crate::workflow::Workflows,
        id: &str,
        name: &str,
    ) -> Result<T, ClientError> {
        let info = self.status(id).await?;
        let failed = |message: String| ClientError::Query {
            id: id.to_owned(),
            name: name.to_owned(),
            message,
        };
        if info.events == 0 {
            return Err(failed(
                "the instance has not started yet (no workflow worker has taken its start): ask again once it runs".into(),
            ));
        }
        let workflow = workflows.get(&info.name, info.version).ok_or_else(|| {
            failed(format!(
                "version {} of workflow `{}` is not among the workflows given: pass the ones its workers run",
                info.version, info.name
            ))
        })?;
        let history = self.events(id).await?;
        let answer = crate::workflow::engine::query(workflow.as_ref(), id, &history, name)
            .map_err(|e| failed(e.to_string()))?;
        serde_json::from_value(answer).map_err(|e| ClientError::Decode {
            id: id.to_owned(),
            message: format!("the answer to query `{name}`: {e}"),
        })
    }

    /// Deletes an instance that has ended, with its history, pending messages, dead letters
    /// and recorded attempts, now rather than when its retention runs out.
    pub async fn purge(&self, id: &str) -> Result<(), ClientError> {
        let info = self.status(id).await?;
        if !info.status.is_final() {
            return Err(ClientError::NotEnded {
                id: id.to_owned(),
                status: info.status,
            });
        }
        self.backend.purge(id).await?;
        Ok(())
    }

    /// Creates schedule `name`: `spec.workflow` started at each tick of `spec.timing`, each
    /// instance under the id `<name>@<tick>`. Creating it again with the same spec does nothing;
    /// with another it is an error (delete it first). Any workflow worker runs it.
    pub async fn create_schedule(
        &self,
        name: &str,
        spec: &ScheduleSpec,
    ) -> Result<(), ClientError> {
        if name.trim().is_empty() || name.contains('@') {
            return Err(ClientError::InvalidSchedule(format!(
                "`{name}` cannot name a schedule: give a non-empty name without `@`"
            )));
        }
        spec.validate().map_err(ClientError::InvalidSchedule)?;
        if let Some(existing) = self.find_schedule(name).await? {
            return if existing.spec == *spec {
                Ok(())
            } else {
                Err(ClientError::InvalidSchedule(format!(
                    "schedule `{name}` exists with another spec: delete it first (`schedule delete {name}`), then create it again"
                )))
            };
        }
        let state = ScheduleState {
            name: name.to_owned(),
            spec: spec.clone(),
            paused: false,
            handled_until: now_ms(),
            buffered: None,
            started: 0,
            skipped: 0,
        };
        // A schedule deleted before keeps its id; a new one of the same name gets its own.
        let mut id = schedule::instance_id(name);
        if self.backend.instance(&id).await?.is_some() {
            id = format!("{id}:{}", state.handled_until);
        }
        self.start(SCHEDULE_WORKFLOW, Some(&id), &state).await?;
        Ok(())
    }

    /// The schedules that run (not deleted), by name.
    pub async fn schedules(&self) -> Result<Vec<ScheduleInfo>, ClientError> {
        let mut found = Vec::new();
        for status in [Status::Running, Status::Parked] {
            for info in self
                .backend
                .list(Some(SCHEDULE_WORKFLOW), Some(status), 100_000)
                .await?
            {
                let history = self.backend.history(&info.id).await?;
                if let Some(schedule) = ScheduleInfo::read(&info, &history) {
                    found.push(schedule);
                }
            }
        }
        found.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(found)
    }

    async fn find_schedule(&self, name: &str) -> Result<Option<ScheduleInfo>, ClientError> {
        Ok(self.schedules().await?.into_iter().find(|s| s.name == name))
    }

    /// Pauses schedule `name`: it starts nothing until resumed.
    pub async fn pause_schedule(&self, name: &str) -> Result<(), ClientError> {
        self.control(name, Control::Pause).await
    }

    /// Resumes schedule `name` from now: ticks that passed while it was paused are not caught up.
    pub async fn resume_schedule(&self, name: &str) -> Result<(), ClientError> {
        self.control(name, Control::Resume).await
    }

    /// Deletes schedule `name`. The instances it started run on.
    pub async fn delete_schedule(&self, name: &str) -> Result<(), ClientError> {
        self.control(name, Control::Delete).await
    }

    async fn control(&self, name: &str, control: Control) -> Result<(), ClientError> {
        let schedule = self
            .find_schedule(name)
            .await?
            .ok_or_else(|| ClientError::UnknownSchedule(name.to_owned()))?;
        self.signal(&schedule.id, schedule::CONTROL_SIGNAL, &control)
            .await
    }

    async fn running(&self, id: &str) -> Result<InstanceInfo, ClientError> {
        let info = self.status(id).await?;
        if info.status.is_final() {
            return Err(ClientError::Ended {
                id: id.to_owned(),
                status: info.status,
            });
        }
        Ok(info)
    }
}

/// A schedule, as [`Client::schedules`] reads it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ScheduleInfo {
    /// Its name.
    pub name: String,
    /// The instance that runs it.
    pub id: String,
    /// What it starts, and when.
    pub spec: ScheduleSpec,
    /// Whether it is paused, counting a pause or resume its history holds and its run has not
    /// taken yet (one just sent shows once a worker has recorded it, in milliseconds).
    pub paused: bool,
    /// When it next ticks (milliseconds since the Unix epoch), unless paused.
    pub next: Option<i64>,
    /// Instances it started, up to its current run.
    pub started: u64,
    /// Ticks it skipped, up to its current run.
    pub skipped: u64,
}

impl ScheduleInfo {
    /// The schedule an instance of the schedule workflow runs, from its current run's history.
    fn read(
        info: &InstanceInfo,
        history: &[(String, crate::workflow::HistoryEvent)],
    ) -> Option<Self> {
        let state: ScheduleState = serde_json::from_value(info.input.clone()).ok()?;
        let mut paused = state.paused;
        let mut timers = std::collections::BTreeMap::new();
        let mut clock = crate::workflow::Clock::Real;
        for (_, e) in history {
            match &e.event {
                Event::WorkflowStarted { clock: c, .. } => clock = *c,
                Event::SignalReceived { name, payload } if name == schedule::CONTROL_SIGNAL => {
                    match serde_json::from_value(payload.clone()) {
                        Ok(Control::Pause) => paused = true,
                        Ok(Control::Resume) => paused = false,
                        _ => {}
                    }
                }
                Event::TimerStarted { seq, fire_at } => {
                    timers.insert(*seq, *fire_at);
                }
                Event::TimerFired { seq } => {
                    timers.remove(seq);
                }
                _ => {}
            }
        }
        let next = if paused {
            None
        } else {
            timers
                .values()
                .next_back()
                .map(|at| clock.to_real(*at))
                .or_else(|| state.spec.timing.next_after(state.handled_until).ok())
        };
        Some(Self {
            name: state.name,
            id: info.id.clone(),
            spec: state.spec,
            paused,
            next,
            started: state.started,
            skipped: state.skipped,
        })
    }
}

/// A page of instances, and the cursor of the next page when there is one.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct InstancePage {
    /// The instances, newest first.
    pub instances: Vec<InstanceInfo>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Cursor>,
}

/// A dead letter, with what its task message says when it is one.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct DeadTask {
    /// The dead letter as stored.
    #[serde(flatten)]
    pub letter: DeadLetter,
    /// The task, when the message is a task that decodes.
    pub task: Option<TaskMessage>,
}

impl DeadTask {
    fn new(letter: DeadLetter) -> Self {
        let task = match serde_json::from_str::<MessageBody>(&letter.body) {
            Ok(MessageBody::Task(task)) => Some(task),
            _ => None,
        };
        Self { letter, task }
    }

    /// The attempts the task had made when it died (0 when unknown).
    pub fn attempts(&self) -> u32 {
        self.task.as_ref().map_or(0, |t| t.attempt + 1)
    }
}

impl<B: StateStore + MessageQueue + Inspect> Client<B> {
    /// A page of instances, newest first: at most `limit`, after `after` when given.
    pub async fn instances(
        &self,
        filter: &InstanceFilter,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<InstancePage, ClientError> {
        let limit = limit.max(1);
        let mut instances = self.backend.instances(filter, after, limit + 1).await?;
        let next = if instances.len() > limit {
            instances.truncate(limit);
            instances.last().map(Cursor::after)
        } else {
            None
        };
        Ok(InstancePage { instances, next })
    }

    /// How many instances have each status (of workflow `name` when given), each counted up to
    /// `cap`.
    pub async fn status_counts(
        &self,
        name: Option<&str>,
        cap: u64,
    ) -> Result<Vec<(Status, u64)>, ClientError> {
        Ok(self.backend.status_counts(name, cap).await?)
    }

    /// Everything an operator looks at about one instance: status, children, what it waits
    /// on, and its timeline.
    pub async fn detail(&self, id: &str) -> Result<InstanceDetail, ClientError> {
        let instance = self.status(id).await?;
        let history = self.events(id).await?;
        let children = self.backend.children(id).await?;
        let attempts = self.backend.attempts(id).await?;
        let queries = self.backend.queries(id).await?;
        Ok(InstanceDetail {
            queries,
            ..operate::detail(instance, children, &history, &attempts, now_ms())
        })
    }

    /// Dead letters, newest first, at most `limit`.
    pub async fn dead(
        &self,
        filter: &DeadFilter,
        limit: usize,
    ) -> Result<Vec<DeadTask>, ClientError> {
        let letters = self.backend.dead(filter, limit).await?;
        Ok(letters.into_iter().map(DeadTask::new).collect())
    }

    /// Runs dead task `id` again (see [`Client::retry_dead_task`]), found by its id.
    pub async fn retry_dead(&self, id: &str) -> Result<(), ClientError> {
        let letter = self
            .backend
            .dead_letter(id)
            .await?
            .ok_or_else(|| ClientError::UnknownDeadTask(id.to_owned()))?;
        self.retry_letter(letter).await
    }

    /// Each service's queue and its attempts within the last `window`.
    pub async fn services(&self, window: Duration) -> Result<Vec<ServiceStats>, ClientError> {
        let since = now_ms() - i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        Ok(self.backend.services(since).await?)
    }

    /// The answers of instance `id`'s queries as the worker that last replayed it recorded
    /// them, read without any workflow code: what `codegen flows query` and the console show.
    /// They are as of [`QueryAnswers::events`] events; when the instance has more, a worker has
    /// not replayed its news yet. `None` when it registers no query.
    pub async fn query_answers(&self, id: &str) -> Result<Option<QueryAnswers>, ClientError> {
        self.status(id).await?;
        Ok(self.backend.queries(id).await?)
    }
}
