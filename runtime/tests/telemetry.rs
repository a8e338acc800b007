//! The metrics a run leaves, read from the Prometheus text the process would serve: each task
//! attempt counted under its outcome, dead letters, and instances by how they ended, once each.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use codegen_runtime::backend::Status;
use codegen_runtime::backend::sqlite::SqliteBackend;
use codegen_runtime::worker::{
    Handlers, ServiceWorker, ServiceWorkerOptions, WorkflowWorker, WorkflowWorkerOptions,
};
use codegen_runtime::workflow::{WorkflowContext, WorkflowError, Workflows};
use codegen_runtime::{Client, RetryPolicy, Task, TaskError, telemetry};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// What the task does on its first attempt.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum First {
    Succeed,
    TimeOut,
    FailRetryably,
    FailPermanently,
}

#[derive(Debug, Serialize, Deserialize)]
struct Work {
    first: First,
}

impl Task for Work {
    type Output = u32;
    const SERVICE: &'static str = "work";
    const NAME: &'static str = "work";
    const IDEMPOTENT: bool = true;
}

async fn one_task(ctx: WorkflowContext, first: First) -> Result<u32, WorkflowError> {
    let policy = RetryPolicy::default()
        .with_initial_delay(Duration::from_millis(5))
        .with_max_attempts(2);
    Ok(ctx.call_with(&Work { first }, policy).await?)
}

async fn panics(_: WorkflowContext, _: ()) -> Result<(), WorkflowError> {
    panic!("a bug");
}

/// Every sample of `name` in `page`, by its labels.
fn samples(page: &str, name: &str) -> BTreeMap<String, f64> {
    page.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (labels, value) = rest.rsplit_once(' ')?;
            (labels.is_empty() || labels.starts_with('{'))
                .then(|| (labels.to_owned(), value.parse().unwrap()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_attempt_and_each_end_is_counted_once_under_its_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(SqliteBackend::open(dir.path().join("state.db")).unwrap());
    // Installs the recorder: from here on this process keeps its metrics.
    telemetry::render().unwrap();

    let attempts = Arc::new(AtomicU32::new(0));
    let mut handlers = Handlers::new();
    let counted = attempts.clone();
    handlers.task(move |work: Work, ctx| {
        counted.fetch_add(1, Ordering::SeqCst);
        async move {
            match (work.first, ctx.attempt) {
                (First::TimeOut, 1) => Err(TaskError::timed_out("took over 30s")),
                // Retryable, but only two attempts are allowed: the task dies.
                (First::FailRetryably, _) => Err(TaskError::retryable("503")),
                (First::FailPermanently, _) => Err(TaskError::permanent("400")),
                _ => Ok(ctx.attempt),
            }
        }
    });
    let options = ServiceWorkerOptions {
        idle_wait: Duration::from_millis(20),
        ..ServiceWorkerOptions::default()
    };
    let (stop, stopped) = watch::channel(false);
    let service = ServiceWorker::new(backend.clone(), "work", handlers, options);
    let service_stopped = stopped.clone();
    let service = tokio::spawn(async move { service.run(service_stopped).await });
    let mut workflows = Workflows::new();
    workflows.register("one_task", 1, one_task);
    workflows.register("panics", 1, panics);
    let options = WorkflowWorkerOptions {
        idle_wait: Duration::from_millis(20),
        ..WorkflowWorkerOptions::default()
    };
    let engine = WorkflowWorker::new(backend.clone(), workflows, options);
    let engine = tokio::spawn(async move { engine.run(stopped).await });

    let client = Client::new(backend.clone());
    let cases = [
        ("ok", First::Succeed, Status::Completed),
        ("slow", First::TimeOut, Status::Completed),
        ("flaky", First::FailRetryably, Status::Failed),
        ("broken", First::FailPermanently, Status::Failed),
    ];
    for (id, first, _) in cases {
        client.start("one_task", Some(id), &first).await.unwrap();
    }
    client.start("panics", Some("bug"), &()).await.unwrap();
    for (id, _, status) in cases {
        let _ = client.result::<u32>(id, Duration::from_secs(30)).await;
        assert_eq!(client.status(id).await.unwrap().status, status, "{id}");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while client.status("bug").await.unwrap().status != Status::Parked {
        assert!(std::time::Instant::now() < deadline, "`bug` was not parked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // News for a parked instance (a signal) changes nothing it counts.
    client.signal("bug", "poke", &()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.send(true).unwrap();
    service.await.unwrap().unwrap();
    engine.await.unwrap().unwrap();

    let page = telemetry::render().unwrap();
    let outcomes = samples(&page, "codegen_task_attempts_total");
    let count = |outcome: &str| {
        outcomes
            .get(&format!(
                "{{service=\"work\",task=\"work\",outcome=\"{outcome}\"}}"
            ))
            .copied()
            .unwrap_or(0.0)
    };
    assert_eq!(count("ok"), 2.0, "{page}");
    assert_eq!(count("timed_out"), 1.0, "{page}");
    assert_eq!(count("retryable_error"), 1.0, "{page}");
    assert_eq!(count("dead"), 1.0, "{page}");
    assert_eq!(count("permanent_error"), 1.0, "{page}");
    let total: f64 = outcomes.values().sum();
    assert_eq!(total, f64::from(attempts.load(Ordering::SeqCst)));
    assert_eq!(
        samples(&page, "codegen_task_dead_letters_total"),
        BTreeMap::from([("{service=\"work\",task=\"work\"}".to_owned(), 2.0)])
    );
    assert_eq!(
        samples(&page, "codegen_task_attempt_duration_seconds_count")
            .values()
            .sum::<f64>(),
        total
    );
    let ended = samples(&page, "codegen_workflow_instances_ended_total");
    assert_eq!(
        ended,
        BTreeMap::from([
            (
                "{workflow=\"one_task\",status=\"completed\"}".to_owned(),
                2.0
            ),
            ("{workflow=\"one_task\",status=\"failed\"}".to_owned(), 2.0),
            ("{workflow=\"panics\",status=\"parked\"}".to_owned(), 1.0),
        ]),
        "{page}"
    );
    assert_eq!(
        samples(&page, "codegen_workflow_instances_started_total")
            .values()
            .sum::<f64>(),
        5.0
    );
    assert_eq!(
        samples(&page, "codegen_tasks_in_flight"),
        BTreeMap::from([("{service=\"work\"}".to_owned(), 0.0)])
    );
    assert!(
        page.contains("# HELP codegen_task_attempts_total"),
        "{page}"
    );
    assert!(
        !page.contains("instance="),
        "no label holds an instance: {page}"
    );
}
