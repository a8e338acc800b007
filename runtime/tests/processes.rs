//! The embedded backend across processes: the service worker in a process of its own (this
//! test binary run again in a worker role, as the generated `<name>-worker` runs), the
//! workflow worker and the client in the test's process, one SQLite file between them. Every
//! worker waits up to 30 s without news, so work that completes in seconds was woken by a
//! notification from the other process, not by a timer.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use codegen_runtime::backend::StateStore;
use codegen_runtime::backend::sqlite::SqliteBackend;
use codegen_runtime::worker::{
    Handlers, ServiceWorker, ServiceWorkerOptions, WorkflowWorker, WorkflowWorkerOptions,
};
use codegen_runtime::workflow::{WorkflowContext, WorkflowError, Workflows};
use codegen_runtime::{Client, Task};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

const ROLE_VAR: &str = "CODEGEN_PROCESSES_ROLE";
const DB_VAR: &str = "CODEGEN_PROCESSES_DB";
const IDLE: Duration = Duration::from_secs(30);
/// Far below what waiting for `IDLE` takes, far above what a notification takes.
const QUICK: Duration = Duration::from_secs(10);

/// Adds one; hangs once for a minute when asked to, leaving a mark beside the database.
#[derive(Debug, Serialize, Deserialize)]
struct Step {
    n: u64,
    hang_once: bool,
}

impl Task for Step {
    type Output = u64;
    const SERVICE: &'static str = "steps";
    const NAME: &'static str = "step";
    const IDEMPOTENT: bool = true;
}

async fn three_steps(
    ctx: WorkflowContext,
    (n, hang_once): (u64, bool),
) -> Result<u64, WorkflowError> {
    let a = ctx.call(&Step { n, hang_once }).await?;
    let b = ctx
        .call(&Step {
            n: a,
            hang_once: false,
        })
        .await?;
    Ok(ctx
        .call(&Step {
            n: b,
            hang_once: false,
        })
        .await?)
}

fn workflows() -> Workflows {
    let mut workflows = Workflows::new();
    workflows.register("three_steps", 1, three_steps);
    workflows
}

fn mark(db: &Path) -> std::path::PathBuf {
    db.with_extension("hung")
}

fn service_worker(backend: Arc<SqliteBackend>, db: &Path) -> ServiceWorker<SqliteBackend> {
    let mark = mark(db);
    let mut handlers = Handlers::new();
    handlers.task(move |t: Step, _ctx| {
        let mark = mark.clone();
        async move {
            if t.hang_once && std::fs::File::create_new(&mark).is_ok() {
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            Ok(t.n + 1)
        }
    });
    let options = ServiceWorkerOptions {
        idle_wait: IDLE,
        lease: Duration::from_secs(1),
        ..Default::default()
    };
    ServiceWorker::new(backend, "steps", handlers, options)
}

fn workflow_worker(backend: Arc<SqliteBackend>) -> WorkflowWorker<SqliteBackend> {
    let options = WorkflowWorkerOptions {
        idle_wait: IDLE,
        ..Default::default()
    };
    WorkflowWorker::new(backend, workflows(), options)
}

/// A worker process: runs its role until its standard input closes (the test ended or died).
/// A no-op unless a test below starts it.
#[test]
fn worker_process() {
    let (Ok(role), Ok(db)) = (std::env::var(ROLE_VAR), std::env::var(DB_VAR)) else {
        return;
    };
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let db = Path::new(&db);
        let backend = Arc::new(SqliteBackend::open(db).unwrap());
        let (_stop, rx) = watch::channel(false);
        let service = service_worker(backend.clone(), db);
        if role == "both" {
            let engine = workflow_worker(backend);
            let rx2 = rx.clone();
            tokio::spawn(async move { engine.run(rx2).await.unwrap() });
        }
        service.run(rx).await.unwrap();
    });
}

/// A worker process, killed when dropped, on a panic too.
struct WorkerProcess(Child);

impl WorkerProcess {
    fn start(role: &str, db: &Path) -> Self {
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "worker_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ROLE_VAR, role)
            .env(DB_VAR, db)
            .env("RUST_LOG", "error")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        Self(child)
    }

    fn kill(mut self) {
        self.0.kill().unwrap(); // SIGKILL
        self.0.wait().unwrap();
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct InProcess {
    stop: watch::Sender<bool>,
    engine: tokio::task::JoinHandle<()>,
}

impl InProcess {
    fn start(backend: Arc<SqliteBackend>) -> Self {
        let (stop, rx) = watch::channel(false);
        let engine = workflow_worker(backend);
        let engine = tokio::spawn(async move { engine.run(rx).await.unwrap() });
        Self { stop, engine }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        self.engine.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_worker_in_another_process_is_woken_by_notification() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.db");
    let backend = Arc::new(SqliteBackend::open(&db).unwrap());
    let _service = WorkerProcess::start("service", &db);
    let engine = InProcess::start(backend.clone());
    let client = Client::new(backend.clone());

    // The first run also waits for the other process to start; after it, that process has
    // nothing to do and waits for news.
    let id = client
        .start("three_steps", None, &(0u64, false))
        .await
        .unwrap();
    let out: u64 = client.result(&id, Duration::from_secs(120)).await.unwrap();
    assert_eq!(out, 3);

    // Nine steps, each a wake-up of the other process: polling would take minutes.
    let started = Instant::now();
    for n in 1..=3u64 {
        let id = client
            .start("three_steps", None, &(n, false))
            .await
            .unwrap();
        let out: u64 = client.result(&id, Duration::from_secs(300)).await.unwrap();
        assert_eq!(out, n + 3);
    }
    let took = started.elapsed();
    assert!(
        took < QUICK,
        "three workflows of three steps took {took:?}: the other process was not woken"
    );
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_for_the_result_is_woken_by_commits_of_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.db");
    let backend = Arc::new(SqliteBackend::open(&db).unwrap());
    let _workers = WorkerProcess::start("both", &db);
    let client = Client::new(backend.clone());

    let wait_until_done = async |id: &str| {
        let mut waits = 0;
        loop {
            let seen = client.status(id).await.unwrap();
            if seen.status.is_final() {
                return (seen, waits);
            }
            backend.wait_for_change(&seen, IDLE).await;
            waits += 1;
        }
    };
    let id = client
        .start("three_steps", None, &(0u64, false))
        .await
        .unwrap();
    let (done, _) = wait_until_done(&id).await;
    assert_eq!(done.output, Some(serde_json::json!(3)));

    let started = Instant::now();
    let id = client
        .start("three_steps", None, &(1u64, false))
        .await
        .unwrap();
    let (done, waits) = wait_until_done(&id).await;
    let took = started.elapsed();
    assert_eq!(done.output, Some(serde_json::json!(4)));
    assert!(waits > 0, "the workflow ended before the first wait");
    assert!(
        took < QUICK,
        "a three-step workflow in another process took {took:?} to be seen done: the waits were not woken"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_service_worker_process_is_replaced_and_its_task_done_again() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.db");
    let backend = Arc::new(SqliteBackend::open(&db).unwrap());
    let first = WorkerProcess::start("service", &db);
    let engine = InProcess::start(backend.clone());
    let client = Client::new(backend.clone());

    let id = client
        .start("three_steps", None, &(0u64, true))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !mark(&db).exists() {
        assert!(Instant::now() < deadline, "the first step never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Killed in the middle of the step: it holds the task under a one-second lease.
    first.kill();
    let _second = WorkerProcess::start("service", &db);
    let out: u64 = client.result(&id, Duration::from_secs(120)).await.unwrap();
    assert_eq!(out, 3);
    engine.stop().await;
}
