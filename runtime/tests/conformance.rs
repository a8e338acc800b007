//! The backend conformance suite: the runtime end to end (a client, a workflow worker and
//! service workers in one process, with hand-written tasks), each test run on every backend:
//!
//! - `sqlite`: the embedded backend on a temporary file;
//! - `postgres`: state in PostgreSQL, messages in a temporary SQLite file;
//! - `pulsar`: the distributed backend, PostgreSQL and Apache Pulsar (cargo feature `pulsar`).
//!
//! The services come from `scripts/postgres.sh start` and `scripts/pulsar.sh start`, or from
//! `CODEGEN_TEST_POSTGRES` and `CODEGEN_TEST_PULSAR`. A test whose service is missing fails
//! when the environment variable `CI` is set, and otherwise is skipped with a line saying how
//! to run it.

mod backends;
#[path = "conformance/inspect.rs"]
mod inspect;
#[path = "conformance/long_lived.rs"]
mod long_lived;
#[cfg(feature = "pulsar")]
#[path = "conformance/outage.rs"]
mod outage;
#[path = "conformance/tls.rs"]
mod tls;

use backends::{Conformant, Guard, Opened};
use inspect::{
    an_instance_detail_shows_each_retry_with_its_error_and_what_it_waits_on,
    instances_page_by_cursor_newest_first_under_every_filter,
    operator_actions_are_recorded_with_who_did_them_and_replay_ignores_them,
};
use long_lived::{
    a_call_bounded_by_a_timeout_gives_a_timeout_and_its_late_result_is_ignored,
    a_completion_that_does_not_come_in_time_times_out,
    a_completion_token_resolves_once_and_a_second_completion_is_refused,
    a_query_reads_a_running_instance_state_without_changing_it,
    a_run_timeout_fails_the_instance_with_its_reason,
    a_schedule_starts_one_instance_per_tick_and_pauses_resumes_and_ends,
    a_signal_wait_with_a_timeout_times_out_and_the_next_wait_gets_the_signal,
    a_task_error_keeps_its_status_and_body_through_question_mark,
    a_tick_while_the_last_run_still_runs_is_skipped,
    continue_as_new_carries_the_signals_a_run_did_not_take,
    continue_as_new_starts_a_fresh_history_under_the_same_id,
    flow_permits_hold_across_workers_lapse_with_their_lease_and_back_off,
    instances_past_their_retention_are_deleted_with_everything_of_them,
    purge_deletes_one_ended_instance_and_refuses_a_running_one,
    schedule_to_close_bounds_all_attempts_of_a_call_together,
    select2_takes_the_first_of_a_timer_and_a_signal,
    values_over_the_event_size_limit_are_refused_with_what_and_how_large,
};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use codegen_runtime::backend::sqlite::SqliteBackend;
use codegen_runtime::backend::{Message, Status, Topic};
use codegen_runtime::worker::{
    Handlers, ServiceWorker, ServiceWorkerOptions, WorkflowWorker, WorkflowWorkerOptions,
};
use codegen_runtime::workflow::{Event, WorkflowContext, WorkflowError, Workflows};
use codegen_runtime::{Client, ClientError, RetryPolicy, Task, TaskError};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

#[derive(Debug, Serialize, Deserialize)]
struct Add {
    a: i64,
    b: i64,
}

impl Task for Add {
    type Output = i64;
    const SERVICE: &'static str = "math";
    const NAME: &'static str = "add";
    const IDEMPOTENT: bool = true;
    fn retry_policy() -> RetryPolicy {
        quick()
    }
}

/// A task whose handler fails as the test says.
#[derive(Debug, Serialize, Deserialize)]
struct Flaky {
    key: String,
}

impl Task for Flaky {
    type Output = String;
    const SERVICE: &'static str = "flaky";
    const NAME: &'static str = "flaky";
    const IDEMPOTENT: bool = false;
    fn retry_policy() -> RetryPolicy {
        quick()
    }
}

/// A task that takes its time.
#[derive(Debug, Serialize, Deserialize)]
struct Slow {
    ms: u64,
}

impl Task for Slow {
    type Output = u64;
    const SERVICE: &'static str = "slow";
    const NAME: &'static str = "slow";
    const IDEMPOTENT: bool = true;
}

fn quick() -> RetryPolicy {
    RetryPolicy::default()
        .with_initial_delay(Duration::from_millis(5))
        .with_max_attempts(3)
}

const WAIT: Duration = Duration::from_secs(20);

struct Env<B> {
    _guard: Guard,
    backend: Arc<B>,
    client: Client<B>,
    stop: watch::Sender<bool>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl<B: Conformant> Env<B> {
    async fn stop(self) {
        self.stop.send(true).unwrap();
        for w in self.workers {
            w.await.unwrap();
        }
    }
}

/// Flaky behaviour, shared by a test and its handler.
#[derive(Default)]
struct Behaviour {
    calls: AtomicU32,
    fail_first: AtomicU32,
    permanent: AtomicBool,
    panic: AtomicBool,
}

fn env<B: Conformant>(store: Opened<B>, workflows: Workflows, behaviour: Arc<Behaviour>) -> Env<B> {
    let options = WorkflowWorkerOptions {
        idle_wait: Duration::from_millis(50),
        ..Default::default()
    };
    env_with(store, workflows, behaviour, options)
}

/// [`env`] with a workflow worker of these options.
fn env_with<B: Conformant>(
    store: Opened<B>,
    workflows: Workflows,
    behaviour: Arc<Behaviour>,
    options: WorkflowWorkerOptions,
) -> Env<B> {
    let Opened { backend, guard } = store;
    let (stop, rx) = watch::channel(false);
    let mut math = Handlers::new();
    math.task(|t: Add, _ctx| async move { Ok(t.a + t.b) });
    let mut flaky = Handlers::new();
    flaky.task(move |t: Flaky, ctx| {
        let b = behaviour.clone();
        async move {
            let n = b.calls.fetch_add(1, Ordering::SeqCst) + 1;
            if b.panic.load(Ordering::SeqCst) {
                panic!("handler bug");
            }
            if b.permanent.load(Ordering::SeqCst) {
                return Err(
                    TaskError::permanent("402 Payment Required").with_response(402, "declined")
                );
            }
            if n <= b.fail_first.load(Ordering::SeqCst) {
                return Err(TaskError::retryable("503 Service Unavailable"));
            }
            Ok(format!("{}:{}:{}", t.key, ctx.task_id, ctx.attempt))
        }
    });
    let mut slow = Handlers::new();
    slow.task(|t: Slow, _ctx| async move {
        tokio::time::sleep(Duration::from_millis(t.ms)).await;
        Ok(t.ms)
    });
    let mut workers = Vec::new();
    let service_options = ServiceWorkerOptions {
        idle_wait: Duration::from_millis(50),
        ..Default::default()
    };
    for (service, handlers) in [("math", math), ("flaky", flaky), ("slow", slow)] {
        let worker =
            ServiceWorker::new(backend.clone(), service, handlers, service_options.clone());
        let rx = rx.clone();
        workers.push(tokio::spawn(async move { worker.run(rx).await.unwrap() }));
    }
    let worker = WorkflowWorker::new(backend.clone(), workflows, options);
    workers.push(tokio::spawn(async move { worker.run(rx).await.unwrap() }));
    Env {
        _guard: guard,
        client: Client::new(backend.clone()),
        backend,
        stop,
        workers,
    }
}

async fn three_steps(ctx: WorkflowContext, x: i64) -> Result<i64, WorkflowError> {
    let a = ctx.call(&Add { a: x, b: 1 }).await?;
    let b = ctx.call(&Add { a, b: 10 }).await?;
    Ok(ctx.call(&Add { a: b, b: 100 }).await?)
}

async fn flaky_once(ctx: WorkflowContext, key: String) -> Result<String, WorkflowError> {
    Ok(ctx.call(&Flaky { key }).await?)
}

fn workflows() -> Workflows {
    let mut w = Workflows::new();
    w.register("three_steps", 1, three_steps);
    w.register("flaky_once", 1, flaky_once);
    w.register(
        "handles_decline",
        1,
        |ctx: WorkflowContext, key: String| async move {
            match ctx.call(&Flaky { key }).await {
                Ok(receipt) => Ok(receipt),
                Err(e) if e.status() == Some(402) => {
                    Ok(format!("declined: {}", e.body().unwrap_or_default()))
                }
                Err(e) => Err(e.into()),
            }
        },
    );
    w.register("wait_signal", 1, |ctx: WorkflowContext, _: ()| async move {
        let first: String = ctx.signal("go").await?;
        let second: String = ctx.signal("go").await?;
        Ok::<_, WorkflowError>(format!("{first}+{second}"))
    });
    w.register("nap", 1, |ctx: WorkflowContext, ms: u64| async move {
        ctx.sleep(Duration::from_millis(ms)).await;
        Ok::<_, WorkflowError>(())
    });
    w.register("parent", 1, |ctx: WorkflowContext, x: i64| async move {
        let child: i64 = ctx.child("three_steps", &x).await?;
        Ok::<_, WorkflowError>(child * 2)
    });
    w.register(
        "parent_of_sleeper",
        1,
        |ctx: WorkflowContext, _: ()| async move {
            ctx.child::<_, ()>("wait_signal", &()).await?;
            Ok::<_, WorkflowError>(())
        },
    );
    w
}

async fn a_three_step_workflow_completes_with_its_result_and_history<B: Conformant>(
    store: Opened<B>,
) {
    let env = env(store, workflows(), Arc::default());
    let id = env
        .client
        .start("three_steps", Some("calc-1"), &5)
        .await
        .unwrap();
    assert_eq!(id, "calc-1");
    assert_eq!(env.client.result::<i64>(&id, WAIT).await.unwrap(), 116);
    let history = env.client.history(&id).await.unwrap();
    let kinds: Vec<String> = history.events.iter().map(|e| e.event.describe()).collect();
    assert_eq!(kinds.first().unwrap(), "start of three_steps v1");
    assert_eq!(kinds.iter().filter(|k| *k == "task math/add").count(), 3);
    assert_eq!(kinds.last().unwrap(), "completion");
    let listed = env
        .client
        .list(Some("three_steps"), Some(Status::Completed), 10)
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        ["calc-1"]
    );
    env.stop().await;
}

/// Several workflow workers in one process, sharing one backend, as a process that runs more
/// of them for throughput does: each instance is run by one at a time, each task once.
async fn several_workflow_workers_in_one_process_share_the_instances<B: Conformant>(
    store: Opened<B>,
) {
    let env = env(store, workflows(), Arc::default());
    let (stop, rx) = watch::channel(false);
    let extra: Vec<_> = (0..3)
        .map(|_| {
            let worker = WorkflowWorker::new(
                env.backend.clone(),
                workflows(),
                WorkflowWorkerOptions {
                    idle_wait: Duration::from_millis(50),
                    batch: 4,
                    ..Default::default()
                },
            );
            let rx = rx.clone();
            tokio::spawn(async move { worker.run(rx).await.unwrap() })
        })
        .collect();
    let ids: Vec<String> = (0..40).map(|n| format!("many-{n}")).collect();
    for (n, id) in ids.iter().enumerate() {
        env.client
            .start("three_steps", Some(id), &(n as i64))
            .await
            .unwrap();
    }
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(
            env.client.result::<i64>(id, WAIT).await.unwrap(),
            n as i64 + 111
        );
        let history = env.client.history(id).await.unwrap();
        let tasks = history
            .events
            .iter()
            .filter(|e| e.event.describe() == "task math/add")
            .count();
        assert_eq!(tasks, 3, "{id}: each step once");
    }
    stop.send(true).unwrap();
    for worker in extra {
        worker.await.unwrap();
    }
    env.stop().await;
}

/// A workflow worker that holds nothing of an instance (another process, a restart) and gets
/// its start again, as after an acknowledgement lost with a crash: the start is a duplicate,
/// and the instance goes on from where it was.
async fn a_start_delivered_again_to_a_running_instance_is_a_duplicate<B: Conformant>(
    store: Opened<B>,
) {
    use codegen_runtime::backend::MessageBody;
    let env = env(store, workflows(), Arc::default());
    env.client
        .start("wait_signal", Some("dup"), &())
        .await
        .unwrap();
    env.client.signal("dup", "go", &"a").await.unwrap();
    let deadline = Instant::now() + WAIT;
    while !env
        .client
        .history("dup")
        .await
        .unwrap()
        .events
        .iter()
        .any(|e| matches!(e.event, Event::SignalReceived { .. }))
    {
        assert!(Instant::now() < deadline, "the first signal was not taken");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let Env {
        _guard: guard,
        backend,
        client,
        stop,
        workers,
    } = env;
    stop.send(true).unwrap();
    for w in workers {
        w.await.unwrap();
    }
    backend
        .send(vec![Message {
            id: "dup/start".into(),
            topic: Topic::Workflows,
            key: "dup".into(),
            deliver_at: 0,
            body: MessageBody::Start {
                name: "wait_signal".into(),
                input: serde_json::json!(null),
                parent: None,
                trace: None,
                run_timeout_ms: None,
            },
        }])
        .await
        .unwrap();
    let (stop, rx) = watch::channel(false);
    let worker = WorkflowWorker::new(
        backend.clone(),
        workflows(),
        WorkflowWorkerOptions {
            idle_wait: Duration::from_millis(50),
            ..Default::default()
        },
    );
    let running = tokio::spawn(async move { worker.run(rx).await.unwrap() });
    client.signal("dup", "go", &"b").await.unwrap();
    assert_eq!(client.result::<String>("dup", WAIT).await.unwrap(), "a+b");
    let history = client.history("dup").await.unwrap();
    let starts = history
        .events
        .iter()
        .filter(|e| matches!(e.event, Event::WorkflowStarted { .. }))
        .count();
    assert_eq!(starts, 1, "{:?}", history.events);
    stop.send(true).unwrap();
    running.await.unwrap();
    drop(guard);
}

async fn starting_twice_is_idempotent_with_the_same_input_only<B: Conformant>(store: Opened<B>) {
    let env = env(store, workflows(), Arc::default());
    env.client
        .start("three_steps", Some("same"), &1)
        .await
        .unwrap();
    assert_eq!(
        env.client
            .start("three_steps", Some("same"), &1)
            .await
            .unwrap(),
        "same"
    );
    let err = env
        .client
        .start("three_steps", Some("same"), &2)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::DuplicateStart { .. }), "{err}");
    assert!(err.to_string().contains("choose another id"), "{err}");
    assert_eq!(env.client.result::<i64>("same", WAIT).await.unwrap(), 112);
    env.stop().await;
}

async fn transient_failures_are_retried_with_one_task_id<B: Conformant>(store: Opened<B>) {
    let behaviour = Arc::new(Behaviour::default());
    behaviour.fail_first.store(2, Ordering::SeqCst);
    let env = env(store, workflows(), behaviour.clone());
    let id = env
        .client
        .start("flaky_once", Some("f-1"), &"k")
        .await
        .unwrap();
    let receipt: String = env.client.result(&id, WAIT).await.unwrap();
    assert_eq!(
        receipt, "k:f-1/task/0:3",
        "the third attempt succeeds, with the same task id"
    );
    assert_eq!(behaviour.calls.load(Ordering::SeqCst), 3);
    assert!(env.client.dead_tasks().await.unwrap().is_empty());
    env.stop().await;
}

async fn a_permanent_failure_reaches_the_workflow_as_a_typed_error_and_the_dead_letter_list<
    B: Conformant,
>(
    store: Opened<B>,
) {
    let behaviour = Arc::new(Behaviour::default());
    behaviour.permanent.store(true, Ordering::SeqCst);
    let env = env(store, workflows(), behaviour.clone());
    let id = env
        .client
        .start("handles_decline", None, &"k")
        .await
        .unwrap();
    assert_eq!(
        env.client.result::<String>(&id, WAIT).await.unwrap(),
        "declined: declined"
    );
    assert_eq!(
        behaviour.calls.load(Ordering::SeqCst),
        1,
        "a permanent error is not retried"
    );
    let dead = env.client.dead_tasks().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].key, id);
    assert!(
        dead[0].reason.contains("402 Payment Required"),
        "{}",
        dead[0].reason
    );
    env.stop().await;
}

async fn an_operator_retry_of_a_dead_task_lets_the_failed_workflow_go_on<B: Conformant>(
    store: Opened<B>,
) {
    let behaviour = Arc::new(Behaviour::default());
    behaviour.fail_first.store(u32::MAX, Ordering::SeqCst);
    let env = env(store, workflows(), behaviour.clone());
    let id = env
        .client
        .start("flaky_once", Some("r-1"), &"k")
        .await
        .unwrap();
    let err = env.client.result::<String>(&id, WAIT).await.unwrap_err();
    assert!(matches!(err, ClientError::Failed { .. }), "{err}");
    assert_eq!(
        behaviour.calls.load(Ordering::SeqCst),
        3,
        "every attempt of the policy"
    );
    let dead = env.client.dead_tasks().await.unwrap();
    assert_eq!(dead.len(), 1);

    // The service is fixed; the operator retries the dead task.
    behaviour.fail_first.store(0, Ordering::SeqCst);
    env.client.retry_dead_task(&dead[0].id).await.unwrap();
    assert_eq!(
        env.client.result::<String>(&id, WAIT).await.unwrap(),
        "k:r-1/task/0:1"
    );
    assert!(env.client.dead_tasks().await.unwrap().is_empty());
    let err = env.client.retry_dead_task(&dead[0].id).await.unwrap_err();
    assert!(err.to_string().contains("no dead task"), "{err}");
    env.stop().await;
}

async fn a_panicking_handler_fails_its_task_and_the_worker_goes_on<B: Conformant>(
    store: Opened<B>,
) {
    let behaviour = Arc::new(Behaviour::default());
    behaviour.panic.store(true, Ordering::SeqCst);
    let env = env(store, workflows(), behaviour.clone());
    let id = env.client.start("flaky_once", None, &"k").await.unwrap();
    let err = env.client.result::<String>(&id, WAIT).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("the handler panicked: handler bug"),
        "{err}"
    );
    let dead = env.client.dead_tasks().await.unwrap();
    assert!(dead[0].reason.contains("handler bug"), "{}", dead[0].reason);
    // The same worker still runs other tasks.
    let other = env.client.start("three_steps", None, &0).await.unwrap();
    assert_eq!(env.client.result::<i64>(&other, WAIT).await.unwrap(), 111);
    env.stop().await;
}

async fn an_undecodable_message_goes_to_the_dead_letters_with_its_reason<B: Conformant>(
    store: Opened<B>,
) {
    let env = env(store, workflows(), Arc::default());
    env.backend
        .send(vec![Message {
            id: "junk".into(),
            topic: Topic::Tasks("math".into()),
            key: "nobody".into(),
            deliver_at: 0,
            body: codegen_runtime::backend::MessageBody::Wake,
        }])
        .await
        .unwrap();
    let id = env.client.start("three_steps", None, &1).await.unwrap();
    assert_eq!(env.client.result::<i64>(&id, WAIT).await.unwrap(), 112);
    let dead = env.client.dead_tasks().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].id.as_str(), dead[0].reason.as_str()),
        ("junk", "not a task message")
    );
    env.stop().await;
}

async fn signals_are_delivered_in_order_and_unknown_instances_say_so<B: Conformant>(
    store: Opened<B>,
) {
    let env = env(store, workflows(), Arc::default());
    let id = env.client.start("wait_signal", None, &()).await.unwrap();
    env.client.signal(&id, "go", &"a").await.unwrap();
    env.client.signal(&id, "go", &"b").await.unwrap();
    assert_eq!(env.client.result::<String>(&id, WAIT).await.unwrap(), "a+b");
    let err = env
        .client
        .signal("no-such-id", "go", &"x")
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no workflow instance `no-such-id`: check the id (list instances with `list`)"
    );
    let err = env.client.signal(&id, "go", &"late").await.unwrap_err();
    assert!(matches!(err, ClientError::Ended { .. }), "{err}");
    env.stop().await;
}

async fn a_durable_timer_waits_its_time<B: Conformant>(store: Opened<B>) {
    let env = env(store, workflows(), Arc::default());
    let started = Instant::now();
    let id = env.client.start("nap", None, &300).await.unwrap();
    env.client.result::<()>(&id, WAIT).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    env.stop().await;
}

async fn a_child_workflow_runs_and_its_result_returns_to_the_parent<B: Conformant>(
    store: Opened<B>,
) {
    let env = env(store, workflows(), Arc::default());
    let id = env.client.start("parent", Some("p"), &5).await.unwrap();
    assert_eq!(env.client.result::<i64>(&id, WAIT).await.unwrap(), 232);
    let child = env.client.status("p/0").await.unwrap();
    assert_eq!(
        (child.name.as_str(), child.status, child.parent),
        ("three_steps", Status::Completed, Some(("p".into(), 0)))
    );
    env.stop().await;
}

async fn cancel_reaches_the_children<B: Conformant>(store: Opened<B>) {
    let env = env(store, workflows(), Arc::default());
    let id = env
        .client
        .start("parent_of_sleeper", Some("c"), &())
        .await
        .unwrap();
    // Wait until the child runs.
    let deadline = Instant::now() + WAIT;
    while env.client.status("c/0").await.is_err() {
        assert!(Instant::now() < deadline, "the child never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    env.client.cancel(&id, "customer left").await.unwrap();
    assert!(matches!(
        env.client.result::<()>(&id, WAIT).await,
        Err(ClientError::Cancelled(_))
    ));
    assert!(matches!(
        env.client.result::<()>("c/0", WAIT).await,
        Err(ClientError::Cancelled(_))
    ));
    env.stop().await;
}

async fn a_panicking_workflow_is_parked_and_resumes_after_a_fix<B: Conformant>(store: Opened<B>) {
    let fixed = Arc::new(AtomicBool::new(false));
    let mut w = workflows();
    let flag = fixed.clone();
    w.register("buggy", 1, move |ctx: WorkflowContext, _: ()| {
        let fixed = flag.clone();
        async move {
            let sum = ctx.call(&Add { a: 1, b: 1 }).await?;
            assert!(fixed.load(Ordering::SeqCst), "bug in step two");
            Ok::<_, WorkflowError>(sum)
        }
    });
    let env = env(store, w, Arc::default());
    let id = env.client.start("buggy", None, &()).await.unwrap();
    let err = env.client.result::<i64>(&id, WAIT).await.unwrap_err();
    assert!(matches!(err, ClientError::Parked { .. }), "{err}");
    assert!(err.to_string().contains("bug in step two"), "{err}");
    // Other instances are not affected.
    let other = env.client.start("three_steps", None, &0).await.unwrap();
    assert_eq!(env.client.result::<i64>(&other, WAIT).await.unwrap(), 111);

    fixed.store(true, Ordering::SeqCst);
    env.client.resume(&id).await.unwrap();
    assert_eq!(env.client.result::<i64>(&id, WAIT).await.unwrap(), 2);
    let history = env.client.history(&id).await.unwrap();
    let tasks = history
        .events
        .iter()
        .filter(|e| matches!(e.event, Event::TaskScheduled { .. }))
        .count();
    assert_eq!(tasks, 1, "the recorded step is not run again");
    env.stop().await;
}

async fn a_running_instance_keeps_its_version_and_new_ones_take_the_newest<B: Conformant>(
    store: Opened<B>,
) {
    let mut v1 = Workflows::new();
    v1.register("greet", 1, |ctx: WorkflowContext, _: ()| async move {
        let name: String = ctx.signal("name").await?;
        Ok::<_, WorkflowError>(format!("v1 hello {name}"))
    });
    let first = env(store, v1, Arc::default());
    let old = first.client.start("greet", Some("old"), &()).await.unwrap();
    let deadline = Instant::now() + WAIT;
    while first.client.status(&old).await.unwrap().version != 1 {
        assert!(Instant::now() < deadline, "the instance never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let backend = first.backend.clone();
    first.stop.send(true).unwrap();
    for w in first.workers {
        w.await.unwrap();
    }

    // Version 2 is deployed beside version 1.
    let mut both = Workflows::new();
    both.register("greet", 1, |ctx: WorkflowContext, _: ()| async move {
        let name: String = ctx.signal("name").await?;
        Ok::<_, WorkflowError>(format!("v1 hello {name}"))
    });
    both.register("greet", 2, |ctx: WorkflowContext, _: ()| async move {
        let name: String = ctx.signal("name").await?;
        Ok::<_, WorkflowError>(format!("v2 hi {name}"))
    });
    let (stop, rx) = watch::channel(false);
    let worker = WorkflowWorker::new(backend.clone(), both, WorkflowWorkerOptions::default());
    let running = tokio::spawn(async move { worker.run(rx).await.unwrap() });
    let client = Client::new(backend);
    let new = client.start("greet", Some("new"), &()).await.unwrap();
    client.signal(&old, "name", &"Ada").await.unwrap();
    client.signal(&new, "name", &"Bob").await.unwrap();
    assert_eq!(
        client.result::<String>(&old, WAIT).await.unwrap(),
        "v1 hello Ada"
    );
    assert_eq!(
        client.result::<String>(&new, WAIT).await.unwrap(),
        "v2 hi Bob"
    );
    assert_eq!(client.status(&new).await.unwrap().version, 2);
    stop.send(true).unwrap();
    running.await.unwrap();
}

#[test]
fn a_damaged_database_file_gets_an_error_that_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    std::fs::write(&path, vec![0x42; 8192]).unwrap();
    let err = SqliteBackend::open(&path).unwrap_err().to_string();
    assert!(
        err.contains("is damaged or is not a codegen database"),
        "{err}"
    );
    assert!(err.contains("restore it from a backup"), "{err}");
    let err = SqliteBackend::open(dir.path().join("missing/dir/state.db"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot be opened"), "{err}");
}

async fn a_signal_sent_twice_with_one_id_is_delivered_once<B: Conformant>(store: Opened<B>) {
    let env = env(store, workflows(), Arc::default());
    let id = env.client.start("wait_signal", None, &()).await.unwrap();
    env.client
        .signal_with_id(&id, "go", "req-1", &"a")
        .await
        .unwrap();
    env.client
        .signal_with_id(&id, "go", "req-1", &"a")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        env.client.status(&id).await.unwrap().status,
        Status::Running,
        "one `go` so far"
    );
    env.client
        .signal_with_id(&id, "go", "req-2", &"b")
        .await
        .unwrap();
    assert_eq!(env.client.result::<String>(&id, WAIT).await.unwrap(), "a+b");
    env.stop().await;
}

async fn with_a_scaled_clock_a_month_passes_in_about_a_second<B: Conformant>(store: Opened<B>) {
    let backend = store.backend.clone();
    let mut w = Workflows::new();
    w.register("month", 1, |ctx: WorkflowContext, _: ()| async move {
        let start = ctx.now();
        ctx.sleep(Duration::from_secs(30 * 86_400)).await;
        Ok::<_, WorkflowError>(ctx.now().duration_since(start).unwrap().as_secs() / 86_400)
    });
    // 30 days in 1.2 s.
    let clock = codegen_runtime::workflow::Clock::scaled_from_now(30.0 * 86_400.0 / 1.2);
    let options = WorkflowWorkerOptions {
        clock,
        ..Default::default()
    };
    let worker = WorkflowWorker::new(backend.clone(), w, options);
    let (stop, rx) = watch::channel(false);
    let running = tokio::spawn(async move { worker.run(rx).await.unwrap() });
    let client = Client::new(backend);
    let started = Instant::now();
    let id = client.start("month", None, &()).await.unwrap();
    let days: u64 = client.result(&id, WAIT).await.unwrap();
    assert!(days >= 30, "{days} days passed");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1100) && took < Duration::from_secs(5),
        "{took:?}"
    );
    stop.send(true).unwrap();
    running.await.unwrap();
}

async fn a_stale_writer_gets_a_conflict_and_changes_nothing<B: Conformant>(store: Opened<B>) {
    use codegen_runtime::backend::{BackendError, Commit, InstanceInfo, MessageBody};
    use codegen_runtime::workflow::HistoryEvent;
    let backend = store.backend.clone();
    let info = InstanceInfo::new("occ-1", "three_steps", serde_json::json!(1), 0);
    let event = |n: u32| {
        (
            format!("signal/{n}"),
            HistoryEvent {
                at: 1,
                event: Event::SignalReceived {
                    name: "go".into(),
                    payload: serde_json::json!(n),
                },
            },
        )
    };
    let commit = |create: bool, expected: u64, events, sends: &str| Commit {
        instance: info.clone(),
        create,
        expected_events: expected,
        events,
        messages: vec![Message {
            id: sends.to_owned(),
            topic: Topic::Tasks("nobody".into()),
            key: "occ-1".into(),
            deliver_at: 0,
            body: MessageBody::Wake,
        }],
        acks: Vec::new(),
        truncate_to: None,
        queries: None,
    };
    backend
        .commit(vec![commit(true, 0, vec![event(0)], "m0")])
        .await
        .unwrap();
    // Two writers read one event; the first wins, the second is stale.
    backend
        .commit(vec![commit(false, 1, vec![event(1)], "m1")])
        .await
        .unwrap();
    let stale = backend
        .commit(vec![commit(false, 1, vec![event(2)], "m2")])
        .await
        .unwrap_err();
    assert!(
        matches!(stale, BackendError::Conflict(ref id) if id == "occ-1"),
        "{stale}"
    );
    let again = backend
        .commit(vec![commit(true, 0, vec![event(3)], "m3")])
        .await
        .unwrap_err();
    assert!(
        matches!(again, BackendError::Conflict(_)),
        "a second create: {again}"
    );
    let history = backend.history("occ-1").await.unwrap();
    assert_eq!(
        history
            .iter()
            .map(|(id, _)| id.as_str())
            .collect::<Vec<_>>(),
        ["signal/0", "signal/1"]
    );
    assert_eq!(backend.instance("occ-1").await.unwrap().unwrap().events, 2);
    // The losers' messages were not sent.
    let topic = Topic::Tasks("nobody".into());
    let mut sent = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while sent.len() < 2 && Instant::now() < deadline {
        backend.wait(&topic, 200).await;
        for d in backend.receive(&topic, 10, 30_000).await.unwrap() {
            sent.push(d.message.id.clone());
            backend.ack(vec![d.receipt]).await.unwrap();
        }
    }
    backend.wait(&topic, 300).await;
    for d in backend.receive(&topic, 10, 30_000).await.unwrap() {
        sent.push(d.message.id);
    }
    sent.sort();
    assert_eq!(sent, ["m0", "m1"]);
}

async fn status_queries_list_by_name_and_status_newest_first<B: Conformant>(store: Opened<B>) {
    let env = env(store, workflows(), Arc::default());
    for n in 0..3 {
        let id = env
            .client
            .start("three_steps", Some(&format!("q-{n}")), &n)
            .await
            .unwrap();
        env.client.result::<i64>(&id, WAIT).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    env.client
        .start("wait_signal", Some("q-w"), &())
        .await
        .unwrap();
    let deadline = Instant::now() + WAIT;
    while env.client.status("q-w").await.unwrap().events == 0 {
        assert!(Instant::now() < deadline, "q-w never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ids = |list: Vec<codegen_runtime::backend::InstanceInfo>| {
        list.into_iter().map(|i| i.id).collect::<Vec<_>>()
    };
    assert_eq!(
        ids(env
            .client
            .list(Some("three_steps"), Some(Status::Completed), 10)
            .await
            .unwrap()),
        ["q-2", "q-1", "q-0"]
    );
    assert_eq!(
        ids(env
            .client
            .list(None, Some(Status::Running), 10)
            .await
            .unwrap()),
        ["q-w"]
    );
    assert_eq!(
        ids(env.client.list(None, None, 2).await.unwrap()),
        ["q-w", "q-2"]
    );
    env.stop().await;
}

async fn thousands_of_messages_sent_at_once_are_all_delivered<B: Conformant>(store: Opened<B>) {
    use codegen_runtime::backend::{Commit, InstanceInfo, MessageBody};
    let backend = store.backend.clone();
    let topic = Topic::Tasks("bulk".into());
    let message = |n: usize| Message {
        id: format!("bulk/{n}"),
        topic: topic.clone(),
        key: format!("k{}", n % 7),
        deliver_at: 0,
        body: MessageBody::Wake,
    };
    // As a wide fan-out sends them: in one commit, and in one send.
    backend
        .commit(vec![Commit {
            instance: InstanceInfo::new("bulk", "bulk", serde_json::Value::Null, 0),
            create: true,
            expected_events: 0,
            events: Vec::new(),
            messages: (0..3000).map(message).collect(),
            acks: Vec::new(),
            truncate_to: None,
            queries: None,
        }])
        .await
        .unwrap();
    backend
        .send((3000..6000).map(message).collect())
        .await
        .unwrap();
    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + WAIT;
    while seen.len() < 6000 {
        assert!(
            Instant::now() < deadline,
            "{} of 6000 messages delivered",
            seen.len()
        );
        backend.wait(&topic, 100).await;
        let got = backend.receive(&topic, 500, 30_000).await.unwrap();
        seen.extend(got.iter().map(|d| d.message.id.clone()));
        backend
            .ack(got.into_iter().map(|d| d.receipt).collect())
            .await
            .unwrap();
    }
    assert_eq!(seen.len(), 6000);
}

backends::conformance!(
    thousands_of_messages_sent_at_once_are_all_delivered,
    a_stale_writer_gets_a_conflict_and_changes_nothing,
    status_queries_list_by_name_and_status_newest_first,
    a_three_step_workflow_completes_with_its_result_and_history,
    starting_twice_is_idempotent_with_the_same_input_only,
    a_start_delivered_again_to_a_running_instance_is_a_duplicate,
    transient_failures_are_retried_with_one_task_id,
    a_permanent_failure_reaches_the_workflow_as_a_typed_error_and_the_dead_letter_list,
    an_operator_retry_of_a_dead_task_lets_the_failed_workflow_go_on,
    a_panicking_handler_fails_its_task_and_the_worker_goes_on,
    an_undecodable_message_goes_to_the_dead_letters_with_its_reason,
    signals_are_delivered_in_order_and_unknown_instances_say_so,
    a_durable_timer_waits_its_time,
    a_child_workflow_runs_and_its_result_returns_to_the_parent,
    cancel_reaches_the_children,
    a_panicking_workflow_is_parked_and_resumes_after_a_fix,
    a_running_instance_keeps_its_version_and_new_ones_take_the_newest,
    a_signal_sent_twice_with_one_id_is_delivered_once,
    with_a_scaled_clock_a_month_passes_in_about_a_second,
    instances_page_by_cursor_newest_first_under_every_filter,
    an_instance_detail_shows_each_retry_with_its_error_and_what_it_waits_on,
    operator_actions_are_recorded_with_who_did_them_and_replay_ignores_them,
    a_call_bounded_by_a_timeout_gives_a_timeout_and_its_late_result_is_ignored,
    a_signal_wait_with_a_timeout_times_out_and_the_next_wait_gets_the_signal,
    select2_takes_the_first_of_a_timer_and_a_signal,
    continue_as_new_starts_a_fresh_history_under_the_same_id,
    continue_as_new_carries_the_signals_a_run_did_not_take,
    a_run_timeout_fails_the_instance_with_its_reason,
    a_completion_token_resolves_once_and_a_second_completion_is_refused,
    a_completion_that_does_not_come_in_time_times_out,
    a_task_error_keeps_its_status_and_body_through_question_mark,
    schedule_to_close_bounds_all_attempts_of_a_call_together,
    values_over_the_event_size_limit_are_refused_with_what_and_how_large,
    a_schedule_starts_one_instance_per_tick_and_pauses_resumes_and_ends,
    a_tick_while_the_last_run_still_runs_is_skipped,
    instances_past_their_retention_are_deleted_with_everything_of_them,
    purge_deletes_one_ended_instance_and_refuses_a_running_one,
    flow_permits_hold_across_workers_lapse_with_their_lease_and_back_off,
    a_query_reads_a_running_instance_state_without_changing_it,
    several_workflow_workers_in_one_process_share_the_instances,
);

/// PostgreSQL only: the runtime applies its migrations once, whoever connects first, and
/// refuses a database that a newer runtime migrated.
#[tokio::test]
async fn postgres_migrations_apply_once_and_a_newer_schema_is_refused() {
    use codegen_runtime::backend::StateStore;
    use codegen_runtime::backend::distributed::DistributedBackend;
    let name = "postgres_migrations_apply_once_and_a_newer_schema_is_refused";
    let config = backends::postgres_config(name);
    let dir = tempfile::tempdir().unwrap();
    let open = || async {
        let transport = SqliteBackend::open(dir.path().join("messages.db")).unwrap();
        DistributedBackend::connect(&config, transport).await
    };
    // Two workers starting at once: both see the schema, one applied it.
    let (a, b) = tokio::join!(open(), open());
    let a = match a {
        Ok(a) => a,
        Err(err) => {
            backends::unreachable_or_panic(name, "PostgreSQL", backends::POSTGRES_HOW, err);
            return;
        }
    };
    let b = b.unwrap();
    assert!(a.list(None, None, 10).await.unwrap().is_empty());
    assert!(b.list(None, None, 10).await.unwrap().is_empty());
    let client = config.client().await.unwrap();
    let schema = config.schema.clone().unwrap();
    let versions = client
        .query(
            &format!("SELECT version FROM {schema}.codegen_schema ORDER BY version"),
            &[],
        )
        .await
        .unwrap();
    let versions: Vec<i32> = versions.iter().map(|r| r.get(0)).collect();
    assert_eq!(versions, [1, 2, 3, 4, 5], "each migration ran once");
    client
        .execute(
            &format!("INSERT INTO {schema}.codegen_schema (version, applied_at) VALUES (99, 0)"),
            &[],
        )
        .await
        .unwrap();
    let err = open().await.unwrap_err().to_string();
    assert!(
        err.contains("schema version 99, newer than this runtime's 5: upgrade the runtime"),
        "{err}"
    );
}

/// A permit given back in one process wakes a worker of another waiting for it at once, not
/// when its wait runs out: `a` and `b` are two connections to one store, as two processes have.
async fn a_release_wakes_a_waiter_of_another_process<B: Conformant>(a: &B, b: &B) {
    use codegen_runtime::backend::FlowLimits;
    let limits = FlowLimits {
        max_in_flight: Some(1),
        ..FlowLimits::default()
    };
    let lease = 60_000;
    assert_eq!(
        a.acquire("api", "a", 1, &limits, lease)
            .await
            .unwrap()
            .granted,
        1
    );
    assert_eq!(
        b.acquire("api", "b", 1, &limits, lease)
            .await
            .unwrap()
            .granted,
        0
    );
    // The first wait starts whatever hears the other processes; give it a moment.
    b.wait_for_release("api", 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let (_, ()) = tokio::join!(
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            a.release("api", "a", 1).await.unwrap();
        },
        b.wait_for_release("api", 20_000)
    );
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(3),
        "the waiter heard the release after {waited:?}, not at once"
    );
    assert_eq!(
        b.acquire("api", "b", 1, &limits, lease)
            .await
            .unwrap()
            .granted,
        1
    );
}

#[tokio::test]
async fn sqlite_a_release_wakes_a_waiter_of_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let a = SqliteBackend::open(&path).unwrap();
    let b = SqliteBackend::open(&path).unwrap();
    a_release_wakes_a_waiter_of_another_process(&a, &b).await;
}

#[tokio::test]
async fn postgres_a_release_wakes_a_waiter_of_another_process() {
    use codegen_runtime::backend::distributed::DistributedBackend;
    let name = "postgres_a_release_wakes_a_waiter_of_another_process";
    let config = backends::postgres_config(name);
    let dir = tempfile::tempdir().unwrap();
    let open = |file: &'static str| {
        let transport = SqliteBackend::open(dir.path().join(file)).unwrap();
        DistributedBackend::connect(&config, transport)
    };
    let a = match open("a.db").await {
        Ok(a) => a,
        Err(err) => {
            backends::unreachable_or_panic(name, "PostgreSQL", backends::POSTGRES_HOW, err);
            return;
        }
    };
    let b = open("b.db").await.unwrap();
    a_release_wakes_a_waiter_of_another_process(&a, &b).await;
}

/// PostgreSQL only: a message a process sends to its own subscribed worker is handed over from
/// memory but kept in the outbox, so that nothing is lost with the process: the relay leaves it
/// alone while its lease runs, and publishes it for any process once the lease has ended; a
/// worker that stops hands back what it held at once.
#[tokio::test]
async fn postgres_a_message_held_for_a_worker_of_this_process_outlives_the_process() {
    use codegen_runtime::backend::distributed::DistributedBackend;
    use codegen_runtime::backend::{MessageBody, MessageQueue};
    let name = "postgres_a_message_held_for_a_worker_of_this_process_outlives_the_process";
    let config = backends::postgres_config(name);
    let dir = tempfile::tempdir().unwrap();
    // Two processes: one broker (the SQLite file) and one database between them.
    let open = || {
        let transport = SqliteBackend::open(dir.path().join("broker.db")).unwrap();
        DistributedBackend::connect(&config, transport)
    };
    let a = match open().await {
        Ok(a) => a,
        Err(err) => {
            backends::unreachable_or_panic(name, "PostgreSQL", backends::POSTGRES_HOW, err);
            return;
        }
    };
    let b = open().await.unwrap();
    let tasks = Topic::Tasks("billing".to_owned());
    let message = |id: &str| Message {
        id: id.to_owned(),
        topic: tasks.clone(),
        key: "order-1".to_owned(),
        deliver_at: 0,
        body: MessageBody::Wake,
    };
    let ids = |deliveries: Vec<codegen_runtime::backend::Delivery>| -> Vec<String> {
        deliveries.into_iter().map(|d| d.message.id).collect()
    };

    // Held for a's worker: a takes them from memory, b sees nothing, the relay leaves them.
    let subscription = a.subscribe(&tasks, 1_500, 8);
    a.send(vec![message("m-0"), message("m-1")]).await.unwrap();
    let mut taken = a.receive(&tasks, 8, 1_500).await.unwrap();
    assert_eq!(ids(taken.clone()), ["m-0", "m-1"]);
    assert!(b.receive(&tasks, 8, 30_000).await.unwrap().is_empty());
    assert_eq!(
        b.relay_outbox(0).await.unwrap(),
        0,
        "held while its lease runs"
    );
    // a handles m-0: its row goes with the acknowledgement.
    a.ack(vec![taken.remove(0).receipt]).await.unwrap();

    // a dies holding m-1 (its subscription never handed back): once the lease has ended, the
    // relay of b publishes it, and b's worker gets it.
    std::mem::forget(subscription);
    drop(a);
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    assert_eq!(b.relay_outbox(0).await.unwrap(), 1);
    assert_eq!(ids(b.receive(&tasks, 8, 30_000).await.unwrap()), ["m-1"]);

    // A worker that stops hands back what it did not take: published at once, no relay needed.
    let c = open().await.unwrap();
    let subscription = c.subscribe(&tasks, 60_000, 8);
    c.send(vec![message("m-2")]).await.unwrap();
    drop(subscription);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    while got.is_empty() && Instant::now() < deadline {
        b.wait(&tasks, 200).await;
        got = ids(b.receive(&tasks, 8, 30_000).await.unwrap());
    }
    assert_eq!(got, ["m-2"], "handed back when the subscription ended");
}
