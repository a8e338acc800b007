//! `codegen flows` end to end: the binary against a backend whose workers run in this test's
//! process, on SQLite and on PostgreSQL + Pulsar (the services of `scripts/postgres.sh` and
//! `scripts/pulsar.sh`; missing, they skip the test with a line saying so, and fail it when `CI`
//! is set).

mod support;

use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use codegen_runtime::backend::{Backend, BackendError};
use codegen_runtime::worker::{
    Handlers, ServiceWorker, ServiceWorkerOptions, WorkflowWorker, WorkflowWorkerOptions,
};
use codegen_runtime::workflow::replay::RecordedHistory;
use codegen_runtime::workflow::{Event, WorkflowContext, WorkflowError, Workflows};
use codegen_runtime::{RetryPolicy, Task, TaskError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use support::{Killed, free_port};
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
}

#[derive(Debug, Serialize, Deserialize)]
struct Charge {
    user: String,
}

impl Task for Charge {
    type Output = String;
    const SERVICE: &'static str = "payments";
    const NAME: &'static str = "charge";
    const IDEMPOTENT: bool = false;
    fn retry_policy() -> RetryPolicy {
        RetryPolicy::default()
            .with_initial_delay(Duration::from_millis(5))
            .with_max_attempts(2)
    }
}

/// What the tests switch: the payment service's outage and a workflow bug.
#[derive(Default)]
struct Switches {
    payments_down: AtomicBool,
    bug_fixed: AtomicBool,
}

/// Workers in this process on the backend the CLI is pointed at; stopped on drop.
struct Fleet {
    stop: watch::Sender<bool>,
    url: String,
    switches: Arc<Switches>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

fn workflows(switches: &Arc<Switches>) -> Workflows {
    let mut w = Workflows::new();
    w.register("steps", 1, |ctx: WorkflowContext, x: i64| async move {
        let a = ctx.call(&Add { a: x, b: 1 }).await?;
        let b = ctx.call(&Add { a, b: 10 }).await?;
        Ok::<_, WorkflowError>(ctx.call(&Add { a: b, b: 100 }).await?)
    });
    w.register("wait", 1, |ctx: WorkflowContext, _: Value| async move {
        let word: String = ctx.signal("go").await?;
        Ok::<_, WorkflowError>(word)
    });
    w.register("counter", 1, |ctx: WorkflowContext, _: Value| async move {
        let ticks = std::rc::Rc::new(std::cell::Cell::new(0u32));
        let seen = ticks.clone();
        ctx.on_query("ticks", move || seen.get());
        ctx.on_query("unit", || "ticks");
        loop {
            let stop: bool = ctx.signal("tick").await?;
            if stop {
                return Ok::<_, WorkflowError>(ticks.get());
            }
            ticks.set(ticks.get() + 1);
        }
    });
    w.register("confirm", 1, |ctx: WorkflowContext, _: Value| async move {
        let confirmation: String = ctx.completion().await?;
        Ok::<_, WorkflowError>(confirmation)
    });
    w.register(
        "charge",
        1,
        |ctx: WorkflowContext, user: String| async move {
            Ok::<_, WorkflowError>(ctx.call(&Charge { user }).await?)
        },
    );
    let fixed = switches.clone();
    w.register("buggy", 1, move |ctx: WorkflowContext, _: Value| {
        let fixed = fixed.clone();
        async move {
            let sum = ctx.call(&Add { a: 1, b: 1 }).await?;
            assert!(fixed.bug_fixed.load(Ordering::SeqCst), "bug in step two");
            Ok::<_, WorkflowError>(sum)
        }
    });
    w
}

impl Fleet {
    async fn start(url: String, dir: Option<tempfile::TempDir>) -> Result<Self, BackendError> {
        let backend = Arc::new(Backend::open(&url).await?);
        let switches = Arc::new(Switches::default());
        let (stop, stopped) = watch::channel(false);
        let mut math = Handlers::new();
        math.task(|t: Add, _| async move { Ok(t.a + t.b) });
        let mut payments = Handlers::new();
        let down = switches.clone();
        payments.task(move |t: Charge, _| {
            let down = down.clone();
            async move {
                if down.payments_down.load(Ordering::SeqCst) {
                    Err(TaskError::retryable(
                        "503 Service Unavailable: payments are down",
                    ))
                } else {
                    Ok(format!("charged {}", t.user))
                }
            }
        });
        let options = ServiceWorkerOptions {
            idle_wait: Duration::from_millis(20),
            ..Default::default()
        };
        for (service, handlers) in [("math", math), ("payments", payments)] {
            let worker = ServiceWorker::new(backend.clone(), service, handlers, options.clone());
            let stopped = stopped.clone();
            tokio::spawn(async move { worker.run(stopped).await });
        }
        let options = WorkflowWorkerOptions {
            idle_wait: Duration::from_millis(20),
            ..Default::default()
        };
        let worker = WorkflowWorker::new(backend, workflows(&switches), options);
        tokio::spawn(async move { worker.run(stopped).await });
        Ok(Self {
            stop,
            url,
            switches,
            _dir: dir,
        })
    }

    /// Runs `codegen flows ARGS` with the backend in `CODEGEN_BACKEND`.
    fn flows(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_codegen"))
            .arg("flows")
            .args(args)
            .env("CODEGEN_BACKEND", &self.url)
            .output()
            .expect("codegen runs")
    }

    /// Runs a command that must succeed; its standard output.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.flows(args);
        assert!(
            out.status.success(),
            "codegen flows {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8 output")
    }

    /// Runs a command that must fail with `status`; its one line of error.
    fn fails(&self, args: &[&str], status: i32) -> String {
        let out = self.flows(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(status),
            "codegen flows {args:?}: {stderr}"
        );
        // One line; clap adds its pointer to --help after a wrong flag value.
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with("For more information, try"))
            .collect();
        assert_eq!(lines.len(), 1, "one line: {stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        stderr
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        let out = self.ok(&args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
    }

    /// Polls `show --json` until the instance has `status`.
    fn until_status(&self, id: &str, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let detail = self.json(&["show", id]);
            if detail["instance"]["status"] == status {
                return detail;
            }
            assert!(
                Instant::now() < deadline,
                "`{id}` never reached {status}: {detail:#}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn ids(page: &Value) -> Vec<String> {
    page["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .map(|i| i["id"].as_str().expect("id").to_owned())
        .collect()
}

/// Every command, as an operator at night would use them.
async fn every_command(fleet: Fleet) {
    // The commands block on their process; the workers need this runtime's threads meanwhile.
    let fleet = Arc::new(fleet);
    let f = fleet.clone();
    tokio::task::spawn_blocking(move || commands(&f))
        .await
        .expect("the commands ran");
}

fn commands(f: &Fleet) {
    // start, show, list, history
    assert_eq!(
        f.ok(&["start", "steps", "--input", "5", "--id", "s-1"]),
        "s-1\n"
    );
    let detail = f.until_status("s-1", "completed");
    assert_eq!(detail["instance"]["output"], 116);
    for id in ["s-2", "s-3"] {
        f.ok(&["start", "steps", "--input", "1", "--id", id]);
        f.until_status(id, "completed");
    }
    let shown = f.ok(&["show", "s-1"]);
    assert!(shown.contains("status    completed"), "{shown}");
    assert!(shown.contains("output    116"), "{shown}");

    let page = f.json(&["list", "--workflow", "steps", "--limit", "2"]);
    assert_eq!(ids(&page), ["s-3", "s-2"]);
    let next = page["next"].as_str().expect("a next page").to_owned();
    let rest = f.json(&["list", "--workflow", "steps", "--after", &next]);
    assert_eq!(ids(&rest), ["s-1"]);
    assert!(rest["next"].is_null());
    let table = f.ok(&["list", "--workflow", "steps", "--limit", "2"]);
    assert!(table.starts_with("ID "), "{table}");
    assert!(
        table.contains(&format!("more: --after '{next}'")),
        "{table}"
    );
    assert_eq!(
        ids(&f.json(&[
            "list",
            "--id",
            "s-",
            "--status",
            "completed",
            "--from",
            "1h"
        ])),
        ["s-3", "s-2", "s-1"]
    );
    assert!(ids(&f.json(&["list", "--status", "failed"])).is_empty());

    let recorded: RecordedHistory =
        serde_json::from_value(f.json(&["history", "s-1"])).expect("a RecordedHistory");
    assert_eq!(recorded.instance_id, "s-1");
    assert_eq!(recorded.events.len(), 8, "{:?}", recorded.events);
    let timeline = f.ok(&["history", "s-1"]);
    assert!(timeline.contains("math/add attempt 1"), "{timeline}");
    assert!(timeline.contains("completed"), "{timeline}");

    // signal and cancel, recorded with who did them
    f.ok(&["start", "wait", "--id", "w-1"]);
    f.until_status("w-1", "running");
    f.ok(&["signal", "w-1", "go", "\"now\""]);
    assert_eq!(
        f.until_status("w-1", "completed")["instance"]["output"],
        "now"
    );
    let recorded: RecordedHistory =
        serde_json::from_value(f.json(&["history", "w-1"])).expect("a RecordedHistory");
    let by = recorded.events.iter().find_map(|e| match &e.event {
        Event::OperatorAction { action, by, .. } if action == "signal" => Some(by.clone()),
        _ => None,
    });
    assert!(
        by.as_deref().is_some_and(|b| b.starts_with("cli:")),
        "{by:?}"
    );
    f.ok(&["start", "wait", "--id", "w-2"]);
    f.ok(&["cancel", "w-2", "--reason", "customer left"]);
    f.until_status("w-2", "cancelled");
    let timeline = f.ok(&["history", "w-2"]);
    assert!(
        timeline.contains("cancel requested: customer left"),
        "{timeline}"
    );

    // completions from outside, once; run timeouts
    f.ok(&["start", "confirm", "--id", "k-1"]);
    let waits = f.until_status("k-1", "running");
    let show = f.ok(&["show", "k-1"]);
    assert!(
        show.contains("an outside completion (command 0)"),
        "{show}\n{waits:#}"
    );
    let recorded: RecordedHistory =
        serde_json::from_value(f.json(&["history", "k-1"])).expect("a RecordedHistory");
    let token = recorded
        .events
        .iter()
        .find_map(|e| match &e.event {
            Event::CompletionCreated { token, .. } => Some(token.clone()),
            _ => None,
        })
        .expect("a completion token is recorded");
    f.ok(&["complete", &token, "\"paid\""]);
    assert_eq!(
        f.until_status("k-1", "completed")["instance"]["output"],
        "paid"
    );
    let again = f.fails(&["complete", &token, "\"twice\""], 2);
    assert!(again.contains("a token resolves once"), "{again}");
    let forged = f.fails(
        &["complete", "cgc1.bm9wZQ.0.00000000000000000000000000000000"],
        2,
    );
    assert!(
        forged.contains("no workflow instance") || forged.contains("does not exist"),
        "{forged}"
    );
    f.ok(&["start", "wait", "--id", "t-1", "--run-timeout", "200ms"]);
    let timed_out = f.until_status("t-1", "failed");
    assert!(
        timed_out["instance"]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("run 0 ran past its run timeout of 200ms")),
        "{timed_out:#}"
    );
    let bad = f.fails(&["start", "wait", "--run-timeout", "soon"], 2);
    assert!(bad.contains("is not a duration"), "{bad}");

    // dead tasks and their retry
    f.switches.payments_down.store(true, Ordering::SeqCst);
    f.ok(&["start", "charge", "--input", "\"ada\"", "--id", "c-1"]);
    let failed = f.until_status("c-1", "failed");
    assert!(
        failed["spans"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["outcome"] == "retried"),
        "the retry is on the timeline: {failed:#}"
    );
    let dead = f.json(&["dead", "--service", "payments"]);
    let dead = dead.as_array().expect("a list");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["key"], "c-1");
    assert_eq!(dead[0]["task"]["name"], "charge");
    let table = f.ok(&["dead"]);
    assert!(table.contains("payments/charge"), "{table}");
    assert!(table.contains("payments are down"), "{table}");
    let refused = f.fails(&["retry", "--service", "payments"], 2);
    assert!(
        refused.contains("Retry 1 dead task of service `payments`?"),
        "{refused}"
    );
    assert!(refused.contains("pass --yes"), "{refused}");
    f.switches.payments_down.store(false, Ordering::SeqCst);
    let out = f.flows(&["retry", "--service", "payments", "--since", "1h", "--yes"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("retried 1 of 1 dead task"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        f.until_status("c-1", "completed")["instance"]["output"],
        "charged ada"
    );
    assert_eq!(f.ok(&["dead"]), "no dead tasks\n");
    let services = f.json(&["services", "--window", "10m"]);
    let payments = services
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "payments")
        .expect("payments has figures");
    assert_eq!(payments["retried"], 1, "{payments}");
    assert_eq!(payments["dead"], 1, "{payments}");
    assert_eq!(payments["ok"], 1, "{payments}");
    assert_eq!(
        payments["ready"], 0,
        "the queue is known and empty: {payments}"
    );
    let table = f.ok(&["services"]);
    assert!(table.starts_with("SERVICE "), "{table}");
    assert!(table.contains("payments"), "{table}");

    // a parked instance, resumed after the fix
    f.ok(&["start", "buggy", "--id", "b-1"]);
    let parked = f.until_status("b-1", "parked");
    assert!(
        parked["instance"]["error"]
            .as_str()
            .unwrap()
            .contains("bug in step two"),
        "{parked:#}"
    );
    assert!(f.ok(&["show", "b-1"]).contains("parked    "));
    f.switches.bug_fixed.store(true, Ordering::SeqCst);
    f.ok(&["resume", "b-1"]);
    assert_eq!(f.until_status("b-1", "completed")["instance"]["output"], 2);

    // bad input: one line each, saying what and what to do
    let err = f.fails(&["show", "nope"], 2);
    assert!(err.contains("no workflow instance `nope`"), "{err}");
    let err = f.fails(&["start", "steps", "--input", "{bad"], 2);
    assert!(err.contains("is not JSON"), "{err}");
    let err = f.fails(&["signal", "w-1", "go"], 2);
    assert!(err.contains("has ended"), "{err}");
    let err = f.fails(&["retry", "no-such-task"], 2);
    assert!(err.contains("no dead task `no-such-task`"), "{err}");
    let err = f.fails(&["list", "--status", "done"], 2);
    assert!(err.contains("running, parked"), "{err}");
    let err = f.fails(&["list", "--after", "later"], 2);
    assert!(err.contains("<start time>:<id>"), "{err}");

    // purge: only what has ended
    let err = f.fails(&["purge", "k-1x"], 2);
    assert!(err.contains("no workflow instance"), "{err}");
    f.ok(&["start", "wait", "--id", "p-1"]);
    let err = f.fails(&["purge", "p-1"], 2);
    assert!(err.contains("cancel it first"), "{err}");
    f.ok(&["purge", "s-1"]);
    let err = f.fails(&["show", "s-1"], 2);
    assert!(err.contains("no workflow instance `s-1`"), "{err}");

    // query: the answers the worker recorded, with no workflow code in the CLI
    f.ok(&["start", "counter", "--id", "q-1"]);
    f.ok(&["signal", "q-1", "tick", "false"]);
    f.ok(&["signal", "q-1", "tick", "false"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while f.ok(&["query", "q-1", "ticks"]).trim() != "2" {
        assert!(Instant::now() < deadline, "the ticks were never counted");
        std::thread::sleep(Duration::from_millis(50));
    }
    let table = f.ok(&["query", "q-1"]);
    assert!(table.starts_with("queries   as of event "), "{table}");
    assert!(table.contains("  ticks  2\n"), "{table}");
    assert!(table.contains("  unit   \"ticks\"\n"), "{table}");
    let recorded = f.json(&["query", "q-1"]);
    assert_eq!(
        recorded["answers"]["ticks"],
        serde_json::json!({"value": 2})
    );
    let shown = f.ok(&["show", "q-1"]);
    assert!(shown.contains("queries   as of event"), "{shown}");
    let err = f.fails(&["query", "q-1", "total"], 2);
    assert!(
        err.contains("no query `total`; it has: ticks, unit"),
        "{err}"
    );
    let err = f.fails(&["query", "w-1"], 2);
    assert!(err.contains("registers none"), "{err}");
    let err = f.fails(&["query", "nobody"], 2);
    assert!(err.contains("no workflow instance `nobody`"), "{err}");
    f.ok(&["signal", "q-1", "tick", "true"]);
    f.until_status("q-1", "completed");
    assert_eq!(f.ok(&["query", "q-1", "ticks"]).trim(), "2");

    // schedules: create, list, pause, delete
    f.ok(&[
        "schedule",
        "create",
        "often",
        "--workflow",
        "steps",
        "--input",
        "1",
        "--every",
        "300ms",
    ]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while ids(&f.json(&["list", "--workflow", "steps", "--id", "often@"])).len() < 2 {
        assert!(Instant::now() < deadline, "the schedule started nothing");
        std::thread::sleep(Duration::from_millis(50));
    }
    let table = f.ok(&["schedule", "list"]);
    assert!(table.starts_with("SCHEDULE "), "{table}");
    assert!(
        table.contains("often") && table.contains("every 300ms"),
        "{table}"
    );
    let listed = f.json(&["schedule", "list"]);
    assert_eq!(listed[0]["name"], "often", "{listed:#}");
    f.ok(&["schedule", "pause", "often"]);
    f.ok(&["schedule", "delete", "often"]);
    while f.json(&["schedule", "list"]) != serde_json::json!([]) {
        assert!(Instant::now() < deadline, "the schedule was not deleted");
        std::thread::sleep(Duration::from_millis(50));
    }
    let err = f.fails(&["schedule", "pause", "often"], 2);
    assert!(err.contains("no schedule `often`"), "{err}");
    let err = f.fails(
        &[
            "schedule",
            "create",
            "x",
            "--workflow",
            "steps",
            "--cron",
            "every day",
        ],
        2,
    );
    assert!(err.contains("is not a cron expression"), "{err}");
    let err = f.fails(
        &[
            "schedule",
            "create",
            "x",
            "--workflow",
            "steps",
            "--cron",
            "0 9 * * *",
            "--time-zone",
            "Mars/Olympus",
        ],
        2,
    );
    assert!(err.contains("is not a time zone"), "{err}");
    // clap names what is missing, with the usage line.
    let out = f.flows(&["schedule", "create", "x", "--workflow", "steps"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--every") && err.contains("--cron"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_works_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("flows.db").display());
    let fleet = Fleet::start(url, Some(dir)).await.unwrap();
    every_command(fleet).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_works_on_postgres_and_pulsar() {
    let unique = format!("flows{}", uuid::Uuid::new_v4().simple());
    let postgres = std::env::var("CODEGEN_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://codegen:codegen@127.0.0.1:15432/codegen".to_owned());
    let pulsar =
        std::env::var("CODEGEN_TEST_PULSAR").unwrap_or_else(|_| "pulsar://127.0.0.1:16650".into());
    let admin = std::env::var("CODEGEN_TEST_PULSAR_ADMIN")
        .unwrap_or_else(|_| "http://127.0.0.1:18080".into());
    // The scripts' broker takes clients with its token only.
    let token = std::env::var_os("PULSAR_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| support::root().join("target/services/pulsar"))
        .join("conf/token");
    let url = format!(
        "{postgres}?pulsar={pulsar}&pulsar_admin={admin}&pulsar_token_file={}&schema={unique}&pulsar_prefix={unique}-&pool=4",
        token.display()
    );
    match Fleet::start(url, None).await {
        Ok(fleet) => every_command(fleet).await,
        Err(err) => missing(&format!(
            "the distributed backend is not available ({err}); start it with scripts/postgres.sh start && scripts/pulsar.sh start, and build with --features pulsar"
        )),
    }
}

/// A backend the test needs is missing: a failure under CI, else a skip said on the terminal.
fn missing(line: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{line} (CI is set, so a missing service fails the test)"
    );
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "skipped: {line}");
}

#[test]
fn backends_that_cannot_be_used_get_one_line_and_no_secret() {
    let run = |backend: &str, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_codegen"))
            .args(["flows", "--backend", backend])
            .args(args)
            .env_remove("CODEGEN_BACKEND")
            .output()
            .unwrap()
    };
    let check = |out: &Output, status: i32, says: &str| {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(status), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
        assert!(
            !stderr.contains("hunter2"),
            "the password is not shown: {stderr}"
        );
    };
    check(&run("mysql://db/x", &["list"]), 2, "is not a backend");
    check(
        &run("/nonexistent/flows.db", &["list"]),
        2,
        "no such database file",
    );
    let unreachable = run(
        "postgres://ops:hunter2@127.0.0.1:1/flows?pulsar=pulsar://127.0.0.1:1",
        &["list"],
    );
    // A build without the distributed backend says how to get it, as a wrong flag would.
    let without = String::from_utf8_lossy(&unreachable.stderr).contains("--features pulsar");
    check(
        &unreachable,
        if without { 2 } else { 1 },
        "ops:***@127.0.0.1:1",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_codegen"))
        .args(["flows", "list"])
        .env_remove("CODEGEN_BACKEND")
        .output()
        .unwrap();
    check(&out, 2, "set CODEGEN_BACKEND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_metrics_listen_measures_the_queues_and_answers_the_probes() {
    use codegen_runtime::backend::{Message, MessageBody, MessageQueue, TaskMessage, Topic};

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    let backend = Backend::open(&url).await.unwrap();
    // Two tasks wait for a `math` worker that is not running.
    let now = chrono::Utc::now().timestamp_millis();
    let tasks = (0..2)
        .map(|n| Message {
            id: format!("waiting:{n}"),
            topic: Topic::Tasks("math".into()),
            key: format!("waiting-{n}"),
            deliver_at: now - 5_000,
            body: MessageBody::Task(TaskMessage {
                task_id: format!("waiting:{n}"),
                instance_id: format!("waiting-{n}"),
                seq: 0,
                service: "math".into(),
                name: "add".into(),
                input: serde_json::json!({"a": 1, "b": 2}),
                retry_policy: RetryPolicy::default(),
                attempt: 0,
                redrive: 0,
                scheduled_at: 0,
                trace: None,
            }),
        })
        .collect();
    backend.send(tasks).await.unwrap();

    let (console, metrics) = (free_port(), free_port());
    let _serve = Killed(
        Command::new(env!("CARGO_BIN_EXE_codegen"))
            .args(["flows", "--backend", &url, "serve", "--read-only"])
            .args(["--listen", &format!("127.0.0.1:{console}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let get = |path: &'static str| async move {
        match reqwest::get(format!("http://127.0.0.1:{metrics}{path}")).await {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(e) => (0, e.to_string()),
        }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = get("/readyz").await;
        if status == 200 {
            assert!(body.contains("console: ready"), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "/readyz: {status} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(get("/healthz").await.0, 200);
    let (status, page) = get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("codegen_queue_messages{topic=\"tasks/math\",state=\"ready\"} 2"),
        "{page}"
    );
    assert!(
        page.contains("codegen_queue_messages{topic=\"workflows\",state=\"ready\"} 0"),
        "{page}"
    );
    let age = page
        .lines()
        .find_map(|l| {
            l.strip_prefix("codegen_queue_oldest_message_age_seconds{topic=\"tasks/math\"} ")
        })
        .unwrap_or_else(|| panic!("no age of the oldest task in\n{page}"));
    assert!(age.parse::<f64>().unwrap() >= 5.0, "{age}");
    assert_eq!(get("/nowhere").await.0, 404);
}
