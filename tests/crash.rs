//! Crash test: a separate OS process runs the workflow worker and the generated petstore
//! service worker; it is killed with SIGKILL at random moments, many times, and restarted.
//! Every workflow must complete, and the (idempotent) server must see one effect per
//! idempotency key: one pet per workflow, whatever was retried or replayed.

mod support;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use codegen_runtime::backend::Status;
use codegen_runtime::backend::sqlite::SqliteBackend;
use codegen_runtime::http::HttpClient;
use codegen_runtime::schedule::{CatchUp, Overlap, ScheduleSpec, Timing};
use codegen_runtime::worker::{
    Handlers, ServiceWorker, ServiceWorkerOptions, WorkflowWorker, WorkflowWorkerOptions,
};
use codegen_runtime::workflow::{WorkflowContext, WorkflowError, Workflows};
use codegen_runtime::{Client, RetryPolicy};
use petstore::operations::{CreatePet, ShowPetById};
use petstore::types::NewPet;
use support::Killed;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::watch;

const WORKFLOWS: usize = 200;
const KILLS: usize = 15;
/// The kills stop after this long even if fewer than `KILLS` were made, so the work the tests
/// give the worker is sure to outlast them.
const KILL_PHASE: Duration = Duration::from_secs(4);
const DB_VAR: &str = "CODEGEN_CRASH_DB";
const URL_VAR: &str = "CODEGEN_CRASH_URL";

async fn adopt(ctx: WorkflowContext, name: String) -> Result<String, WorkflowError> {
    let policy = RetryPolicy::default()
        .with_initial_delay(Duration::from_millis(20))
        .with_max_attempts(20);
    let body = NewPet {
        name,
        tag: None,
        status: None,
        birthday: None,
    };
    let created = ctx.call_with(&CreatePet { body }, policy.clone()).await?;
    ctx.sleep(Duration::from_millis(50)).await;
    let shown = ctx
        .call_with(&ShowPetById { pet_id: created.id }, policy)
        .await?;
    Ok(format!("{}#{}", shown.name, shown.id))
}

/// Runs of a loop that continues as new: one pet per run.
const RUNS: u32 = 10;
/// The durable sleep of each run: `RUNS` of them outlast `KILL_PHASE`, whatever the machine.
const RUN_SLEEP: Duration = Duration::from_millis(600);

/// One durable sleep and one pet per run, then a fresh run, `RUNS` times.
async fn looping(ctx: WorkflowContext, run: u32) -> Result<u32, WorkflowError> {
    ctx.sleep(RUN_SLEEP).await;
    let policy = RetryPolicy::default()
        .with_initial_delay(Duration::from_millis(20))
        .with_max_attempts(20);
    let body = NewPet {
        name: format!("{}-{run}", ctx.instance_id()),
        tag: None,
        status: None,
        birthday: None,
    };
    ctx.call_with(&CreatePet { body }, policy).await?;
    if run + 1 == RUNS {
        return Ok(run + 1);
    }
    ctx.continue_as_new(&(run + 1)).await
}

/// The worker process: runs until killed. A no-op unless started by the test below.
#[test]
fn crash_worker_process() {
    let (Ok(db), Ok(url)) = (std::env::var(DB_VAR), std::env::var(URL_VAR)) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let backend = Arc::new(SqliteBackend::open(&db).unwrap());
        let (_stop, rx) = watch::channel(false);
        let mut handlers = Handlers::new();
        petstore::operations::register_handlers(&mut handlers, &HttpClient::new(url));
        let lease = Duration::from_millis(700);
        let options = ServiceWorkerOptions {
            lease,
            idle_wait: Duration::from_millis(50),
            concurrency: 8,
            ..Default::default()
        };
        let service = ServiceWorker::new(backend.clone(), petstore::SERVICE, handlers, options);
        let rx2 = rx.clone();
        let tasks = tokio::spawn(async move { service.run(rx2).await.unwrap() });
        let mut workflows = Workflows::new();
        workflows.register("adopt", 1, adopt);
        workflows.register("looping", 1, looping);
        workflows.register(
            "beat",
            1,
            |_ctx: WorkflowContext, _: serde_json::Value| async { Ok::<_, WorkflowError>(()) },
        );
        let options = WorkflowWorkerOptions {
            lease,
            idle_wait: Duration::from_millis(50),
            batch: 16,
            ..Default::default()
        };
        let engine = WorkflowWorker::new(backend, workflows, options);
        engine.run(rx).await.unwrap();
        tasks.await.unwrap();
    });
}

/// An idempotent pet store: a POST with a known idempotency key returns the first answer and
/// has no second effect. It counts effects per key.
#[derive(Default)]
struct Ledger {
    effects: BTreeMap<String, u32>,
    answers: BTreeMap<String, String>,
    next_id: i64,
    requests: u64,
}

async fn serve(listener: TcpListener, ledger: Arc<Mutex<Ledger>>) {
    while let Ok((stream, _)) = listener.accept().await {
        let ledger = ledger.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut read = BufReader::new(read);
            loop {
                let mut line = String::new();
                if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                let mut parts = line.split_whitespace();
                let (method, target) = (
                    parts.next().unwrap_or("").to_owned(),
                    parts.next().unwrap_or("").to_owned(),
                );
                let (mut length, mut key) = (0usize, None);
                loop {
                    let mut h = String::new();
                    if read.read_line(&mut h).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let h = h.trim_end();
                    if h.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        match k.trim().to_ascii_lowercase().as_str() {
                            "content-length" => length = v.trim().parse().unwrap_or(0),
                            "idempotency-key" => key = Some(v.trim().to_owned()),
                            _ => {}
                        }
                    }
                }
                let mut body = vec![0; length];
                if read.read_exact(&mut body).await.is_err() {
                    return;
                }
                // A real service takes time: kills land while calls are under way.
                tokio::time::sleep(Duration::from_millis(20)).await;
                let (status, reply) = {
                    let mut l = ledger.lock().unwrap();
                    l.requests += 1;
                    if method == "POST" {
                        let key = key.unwrap_or_default();
                        if let Some(answer) = l.answers.get(&key) {
                            (201, answer.clone())
                        } else {
                            l.next_id += 1;
                            let name: serde_json::Value =
                                serde_json::from_slice(&body).unwrap_or_default();
                            let answer = serde_json::json!({"id": l.next_id, "name": name["name"], "createdAt": "2026-11-26T10:00:00Z"}).to_string();
                            *l.effects.entry(key.clone()).or_default() += 1;
                            l.answers.insert(key, answer.clone());
                            (201, answer)
                        }
                    } else {
                        let id: i64 = target
                            .rsplit('/')
                            .next()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(0);
                        let name = l.answers.values().find_map(|a| {
                            let v: serde_json::Value = serde_json::from_str(a).ok()?;
                            (v["id"] == id).then(|| v["name"].clone())
                        });
                        match name {
                            Some(name) => (200, serde_json::json!({"id": id, "name": name, "createdAt": "2026-11-26T10:00:00Z"}).to_string()),
                            None => (404, "{}".to_owned()),
                        }
                    }
                };
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                    reply.len()
                );
                if write.write_all(head.as_bytes()).await.is_err()
                    || write.write_all(reply.as_bytes()).await.is_err()
                {
                    return;
                }
            }
        });
    }
}

fn spawn_worker(db: &str, url: &str) -> Killed {
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_worker_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DB_VAR, db)
        .env(URL_VAR, url)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Killed(child)
}

/// A small deterministic generator, seeded from the clock and printed, so a failing run can be
/// repeated with CODEGEN_CRASH_SEED.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// Starts the worker process and SIGKILLs it at a random moment, `KILLS` times or until
/// `KILL_PHASE` has passed. The moments come from a seed that is printed (CODEGEN_CRASH_SEED
/// repeats a run).
async fn kill_repeatedly(db: &str, url: &str) -> usize {
    let seed = std::env::var("CODEGEN_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("crash test seed: {seed} (set CODEGEN_CRASH_SEED to repeat)");
    let mut rng = Rng(seed);
    let start = Instant::now();
    let mut kills = 0;
    while kills < KILLS && start.elapsed() < KILL_PHASE {
        let worker = spawn_worker(db, url);
        tokio::time::sleep(Duration::from_millis(30 + rng.below(300))).await;
        drop(worker); // SIGKILL
        kills += 1;
    }
    println!("{kills} kills in {:?}", start.elapsed());
    kills
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflows_survive_a_worker_killed_at_random_moments() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db").to_string_lossy().into_owned();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    tokio::spawn(serve(listener, ledger.clone()));

    let backend = Arc::new(SqliteBackend::open(&db).unwrap());
    let client = Client::new(backend);
    for n in 0..WORKFLOWS {
        client
            .start("adopt", Some(&format!("adopt-{n}")), &format!("pet-{n}"))
            .await
            .unwrap();
    }

    let kills = kill_repeatedly(&db, &url).await;

    let before = client
        .list(Some("adopt"), Some(Status::Completed), WORKFLOWS * 2)
        .await
        .unwrap()
        .len();
    println!("{before} of {WORKFLOWS} workflows completed while the worker was being killed");
    assert!(
        before < WORKFLOWS,
        "the kills came too late to test anything"
    );
    let worker = spawn_worker(&db, &url);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let done = client
            .list(Some("adopt"), Some(Status::Completed), WORKFLOWS * 2)
            .await
            .unwrap()
            .len();
        if done == WORKFLOWS {
            break;
        }
        let stuck: Vec<_> = client
            .list(Some("adopt"), None, WORKFLOWS * 2)
            .await
            .unwrap();
        assert!(
            Instant::now() < deadline,
            "only {done} of {WORKFLOWS} workflows completed; not completed: {:?}",
            stuck
                .iter()
                .filter(|i| i.status != Status::Completed)
                .map(|i| (&i.id, i.status, &i.error))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(worker);

    let (effects, requests) = {
        let ledger = ledger.lock().unwrap();
        (ledger.effects.clone(), ledger.requests)
    };
    assert_eq!(
        effects.len(),
        WORKFLOWS,
        "one idempotency key per workflow: {:?}",
        effects.keys()
    );
    assert!(effects.values().all(|n| *n == 1));
    for n in 0..WORKFLOWS {
        assert!(
            effects.contains_key(&format!("adopt-{n}/task/0")),
            "adopt-{n}"
        );
        let info = client.status(&format!("adopt-{n}")).await.unwrap();
        let output = info.output.unwrap();
        assert!(
            output.as_str().unwrap().starts_with(&format!("pet-{n}#")),
            "{output}"
        );
    }
    println!("{requests} requests for {WORKFLOWS} workflows across {kills} kills");
}

/// A schedule that ticks every 100 ms and loops that continue as new, while the worker is
/// killed at random moments: every tick starts exactly one instance (none missing, none twice),
/// and every run of a loop has exactly one successor and one effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_and_continue_as_new_survive_a_worker_killed_at_random_moments() {
    const LOOPS: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db").to_string_lossy().into_owned();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    tokio::spawn(serve(listener, ledger.clone()));

    let client = Client::new(Arc::new(SqliteBackend::open(&db).unwrap()));
    let spec = ScheduleSpec {
        workflow: "beat".into(),
        input: serde_json::Value::Null,
        timing: Timing::Every { every_ms: 100 },
        overlap: Overlap::Allow,
        catch_up: CatchUp::All { max: 1_000 },
    };
    client.create_schedule("beat", &spec).await.unwrap();
    for n in 0..LOOPS {
        client
            .start("looping", Some(&format!("loop-{n}")), &0u32)
            .await
            .unwrap();
    }
    let kills = kill_repeatedly(&db, &url).await;
    let before = client
        .list(Some("looping"), Some(Status::Completed), LOOPS * 2)
        .await
        .unwrap()
        .len();
    println!("{before} of {LOOPS} loops completed while the worker was being killed");
    assert!(before < LOOPS, "the kills came too late to test anything");

    let worker = spawn_worker(&db, &url);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let done = client
            .list(Some("looping"), Some(Status::Completed), LOOPS * 2)
            .await
            .unwrap()
            .len();
        if done == LOOPS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {done} of {LOOPS} loops completed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client.delete_schedule("beat").await.unwrap();
    while !client.schedules().await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the schedule was not deleted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // What the schedule started before it ended completes.
    let beats = loop {
        let beats = client.list(Some("beat"), None, 100_000).await.unwrap();
        if beats.iter().all(|b| b.status == Status::Completed) {
            break beats;
        }
        assert!(Instant::now() < deadline, "not every beat completed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    drop(worker);

    // Every tick from the first to the last started one instance.
    let mut ticks: Vec<i64> = beats
        .iter()
        .map(|b| {
            chrono::DateTime::parse_from_rfc3339(b.id.trim_start_matches("beat@"))
                .unwrap()
                .timestamp_millis()
        })
        .collect();
    ticks.sort_unstable();
    assert!(ticks.len() >= 10, "the schedule ticked: {ticks:?}");
    let gaps: Vec<_> = ticks.windows(2).filter(|w| w[1] - w[0] != 100).collect();
    assert!(gaps.is_empty(), "ticks missing: {gaps:?}");

    // Every run of every loop had one effect, and the last run is the tenth.
    let effects = ledger.lock().unwrap().effects.clone();
    for n in 0..LOOPS {
        let id = format!("loop-{n}");
        let keys: Vec<_> = effects
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{id}/task/")))
            .collect();
        assert_eq!(keys.len(), RUNS as usize, "{id}: {keys:?}");
        assert!(keys.iter().all(|(_, n)| **n == 1), "{id}: {keys:?}");
        assert_eq!(
            client
                .result::<u32>(&id, Duration::from_secs(5))
                .await
                .unwrap(),
            RUNS
        );
        let history = client.history(&id).await.unwrap();
        match &history.events[0].event {
            codegen_runtime::workflow::Event::WorkflowStarted { run, .. } => {
                assert_eq!(*run, RUNS - 1, "{id}: one successor per run");
            }
            other => panic!("{id} starts with {other:?}"),
        }
    }
    println!(
        "{} ticks, {LOOPS} loops of {RUNS} runs across {kills} kills",
        ticks.len()
    );
}
