//! How the runtime's costs grow, on the embedded backend (SQLite, `synchronous = FULL`) with
//! every worker in this process:
//!
//! - **timers**: the memory of this process (its resident set, from `/proc/self/status`) with
//!   10,000, 50,000 and 100,000 instances started and waiting on a one-hour timer, measured
//!   first;
//! - **history**: one workflow of 500 sequential tasks (1,002 events): the time of a step at
//!   about 1, 100 and 1,000 events of history, measured between the task requests reaching the
//!   HTTP server (the worker keeps each instance's replay and advances it by the new events),
//!   and the time of one replay of the first 1, 100 and 1,000 events from the start, which a
//!   worker does only for an instance whose replay it does not hold (after a restart, or one it
//!   dropped for room);
//! - **store**: W2 and W1 of the runtime benchmark (`benches/runtime.rs`) on a fresh store, then
//!   again once 10,000, 100,000 and 1,000,000 finished instances of a three-step workflow are in
//!   it. The first 100,000 are run by the workers, as users' would be; past that, the store is
//!   filled with copies of their rows (instance, history, task attempts) under new ids, written
//!   by SQL into the store's tables, since running a million through the workers takes most of
//!   an hour on a small machine.
//!
//! ```text
//! cargo bench -p codegen-runtime --bench growth
//! cargo bench -p codegen-runtime --bench growth -- history          # only the parts named so
//! cargo bench -p codegen-runtime --bench growth -- store=10000,1000000 timers=200000
//! ```
//!
//! `store=` sets the numbers of finished instances to measure at, `run=` how many of them the
//! workers run before the rest are copied (100,000), `timers=` the largest number of waiting
//! instances.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use codegen_runtime::Client;
use codegen_runtime::backend::inspect::Inspect;
use codegen_runtime::backend::sqlite::SqliteBackend;
use codegen_runtime::backend::{MessageQueue, StateStore, Status, Topic};
use codegen_runtime::http::HttpClient;
use codegen_runtime::workflow::engine::activate;
use codegen_runtime::workflow::{WorkflowContext, WorkflowError, Workflows};
use tokio::net::TcpListener;

mod common;
use common::{InProcess, Ping, percentile};

/// The tasks of the history part ask for `/ping/{HISTORY_BASE + step}`.
const HISTORY_BASE: u64 = 1_000_000_000;

/// Steps of the history part's workflow: two events each, with its start and end 1,002.
const HISTORY_STEPS: u64 = 500;

/// When each task request of the history part reached the server, by step.
static ARRIVALS: Mutex<Vec<(u64, Instant)>> = Mutex::new(Vec::new());

fn on_request(n: u64) {
    if n >= HISTORY_BASE {
        let mut arrivals = ARRIVALS.lock().unwrap_or_else(|p| p.into_inner());
        arrivals.push((n - HISTORY_BASE, Instant::now()));
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    common::init_logging();
    let mut parts = Vec::new();
    let mut sizes = vec![10_000u64, 100_000, 1_000_000];
    let mut timers = 100_000u64;
    // The store is filled by running instances up to this many; past it, by copying them.
    let mut run_by_workers = 100_000u64;
    for arg in std::env::args().skip(1).filter(|a| !a.starts_with("--")) {
        let number = |value: &str| -> u64 {
            value.replace('_', "").parse().unwrap_or_else(|_| {
                eprintln!("{arg}: expected a number after `=`");
                std::process::exit(2)
            })
        };
        match arg.split_once('=') {
            Some(("store", list)) => sizes = list.split(',').map(number).collect(),
            Some(("timers", n)) => timers = number(n),
            Some(("run", n)) => run_by_workers = number(n),
            Some(_) => {
                eprintln!("{arg}: expected store=N,N,..., run=N or timers=N");
                std::process::exit(2)
            }
            None => parts.push(arg),
        }
    }
    let selected = |part: &str| parts.is_empty() || parts.iter().any(|p| p == part);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = HttpClient::new(format!("http://{}", listener.local_addr().unwrap()));
    tokio::spawn(common::serve(listener, on_request));
    println!(
        "runtime growth benchmark, embedded backend (SQLite, synchronous=FULL), 2 worker threads"
    );
    // Memory first, before the other parts leave theirs to the allocator.
    if selected("timers") {
        waiting_on_timers(&http, timers).await;
    }
    if selected("history") {
        history(&http).await;
    }
    if selected("store") {
        store(&http, &sizes, run_by_workers).await;
    }
}

/// A fresh store in `dir`, with its client.
fn open(dir: &tempfile::TempDir) -> (Arc<SqliteBackend>, Client<SqliteBackend>) {
    let backend = Arc::new(SqliteBackend::open(dir.path().join("growth.db")).unwrap());
    let client = Client::new(backend.clone());
    (backend, client)
}

/// W2 and W1 on a fresh store, then with `sizes` finished instances in it: up to
/// `run_by_workers` run by the workers, the rest copies of those.
async fn store(http: &HttpClient, sizes: &[u64], run_by_workers: u64) {
    const W2: (u64, u64) = (40, 250);
    const RUNS: u64 = 300;
    let dir = tempfile::tempdir().unwrap();
    let (backend, client) = open(&dir);
    let mut workflows = Workflows::new();
    common::register(&mut workflows);
    workflows.register("fill", 1, |ctx: WorkflowContext, n: u64| async move {
        let a = ctx.call(&Ping { n }).await?;
        let b = ctx.call(&Ping { n: a + 1 }).await?;
        Ok::<_, WorkflowError>(ctx.call(&Ping { n: b + 1 }).await?)
    });
    let workers = InProcess::start(&backend, Some(http), workflows);
    let figures = common::workloads(&client, "fresh-", W2, RUNS).await;
    common::print("store: fresh", &figures, W2);
    let mut filled = 0;
    let mut rounds = 0;
    for &size in sizes {
        let run = size.min(run_by_workers).max(filled);
        if run > filled {
            let started = Instant::now();
            fill(&client, filled, run).await;
            let took = started.elapsed();
            println!(
                "store: ran {} three-step instances to {run} in {:.1} s ({:.0} instances/s), database {} MB",
                run - filled,
                took.as_secs_f64(),
                (run - filled) as f64 / took.as_secs_f64(),
                database_mb(&dir)
            );
            filled = run;
        }
        if size > filled {
            let started = Instant::now();
            let path = dir.path().join("growth.db");
            let count = size - filled;
            rounds = tokio::task::spawn_blocking(move || copy_finished(&path, count, rounds))
                .await
                .unwrap();
            let took = started.elapsed();
            println!(
                "store: copied {} finished instances to {size} in {:.1} s, database {} MB",
                size - filled,
                took.as_secs_f64(),
                database_mb(&dir)
            );
            filled = size;
        }
        let figures = common::workloads(&client, &format!("at-{size}-"), W2, RUNS).await;
        common::print(
            &format!("store: with {size} finished instances (and those of the runs before)"),
            &figures,
            W2,
        );
    }
    workers.stop().await;
}

/// The size of the store's database file (without its log), in MB.
fn database_mb(dir: &tempfile::TempDir) -> u64 {
    std::fs::metadata(dir.path().join("growth.db")).map_or(0, |m| m.len()) / 1_000_000
}

/// Adds `count` finished instances to the store at `path`: copies of the rows of the `fill`
/// instances the workers ran (instance, history, task attempts, query answers), under the ids
/// `fill-N.K` for the K-th copy of `fill-N`, 10,000 instances a transaction. `rounds` copies of
/// each were made before; returns the number made now. The workers are idle meanwhile; this
/// connection shares the file as a second process would.
fn copy_finished(path: &std::path::Path, count: u64, rounds: u64) -> u64 {
    const CHUNK: u64 = 10_000;
    let mut db = rusqlite::Connection::open(path).unwrap();
    db.busy_timeout(Duration::from_secs(30)).unwrap();
    db.execute_batch("CREATE TEMP TABLE chunk (id TEXT PRIMARY KEY)")
        .unwrap();
    let mut copied = 0;
    let mut round = rounds;
    while copied < count {
        round += 1;
        let before = copied;
        let suffix = format!(".{round}");
        let mut last = String::new();
        while copied < count {
            let tx = db
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .unwrap();
            tx.execute("DELETE FROM chunk", []).unwrap();
            let taken = tx
                .execute(
                    "INSERT INTO chunk SELECT id FROM instances
                     WHERE id > ?1 AND id GLOB 'fill-*' AND id NOT GLOB '*.*'
                     ORDER BY id LIMIT ?2",
                    rusqlite::params![last, CHUNK.min(count - copied) as i64],
                )
                .unwrap() as u64;
            if taken == 0 {
                break;
            }
            for statement in [
                "INSERT INTO instances SELECT id || ?1, name, version, status, input, output, error,
                     parent_id, parent_seq, events, created_at, updated_at
                 FROM instances WHERE id IN (SELECT id FROM chunk)",
                "INSERT INTO history SELECT instance_id || ?1, idx, event_id, at, event
                 FROM history WHERE instance_id IN (SELECT id FROM chunk)",
                "INSERT INTO task_attempts SELECT instance_id || ?1, seq, redrive, attempt, service,
                     task, started_at, ended_at, outcome, error, retry_at
                 FROM task_attempts WHERE instance_id IN (SELECT id FROM chunk)",
                "INSERT INTO query_answers SELECT instance_id || ?1, events, at, answers
                 FROM query_answers WHERE instance_id IN (SELECT id FROM chunk)",
            ] {
                tx.execute(statement, [&suffix]).unwrap();
            }
            last = tx
                .query_row("SELECT max(id) FROM chunk", [], |r| r.get(0))
                .unwrap();
            tx.commit().unwrap();
            copied += taken;
        }
        assert!(copied > before, "no instances of `fill` to copy");
    }
    db.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
    round
}

/// Starts instances `from..to` of `fill`, 1,000 at a time with at most 5,000 running, and
/// waits until all have completed.
async fn fill<B: StateStore + MessageQueue + Inspect>(client: &Client<B>, from: u64, to: u64) {
    let running = || async {
        let counts = client.status_counts(Some("fill"), u64::MAX).await.unwrap();
        counts
            .iter()
            .find(|(status, _)| *status == Status::Running)
            .map_or(0, |(_, n)| *n)
    };
    let mut next = from;
    while next < to {
        let end = (next + 1_000).min(to);
        let starts = (next..end).map(|i| async move {
            let id = format!("fill-{i}");
            client.start("fill", Some(&id), &i).await.unwrap();
        });
        futures_util::future::join_all(starts).await;
        next = end;
        while running().await > 5_000 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    while running().await > 0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The time of a step, and of a replay, as the history grows.
async fn history(http: &HttpClient) {
    let dir = tempfile::tempdir().unwrap();
    let (backend, client) = open(&dir);
    let mut workflows = Workflows::new();
    workflows.register("long", 1, |ctx: WorkflowContext, steps: u64| async move {
        for step in 0..steps {
            ctx.call(&Ping {
                n: HISTORY_BASE + step,
            })
            .await?;
        }
        Ok::<_, WorkflowError>(steps)
    });
    let workers = InProcess::start(&backend, Some(http), workflows.clone());
    let id = client
        .start("long", Some("long"), &HISTORY_STEPS)
        .await
        .unwrap();
    let done: u64 = client.result(&id, Duration::from_secs(600)).await.unwrap();
    assert_eq!(done, HISTORY_STEPS);
    workers.stop().await;

    let mut arrivals = ARRIVALS.lock().unwrap().clone();
    arrivals.sort_by_key(|(step, _)| *step);
    arrivals.dedup_by_key(|(step, _)| *step);
    assert_eq!(
        arrivals.len() as u64,
        HISTORY_STEPS,
        "every step reached the server once"
    );
    // Step `s + 1` is requested after the activation that replays the start and `s + 1`
    // scheduled and completed tasks: 2s + 3 events.
    let step_at = |events: u64| {
        let around = events.saturating_sub(3) / 2;
        let first = around.saturating_sub(5).min(HISTORY_STEPS - 11);
        let mut gaps: Vec<Duration> = (first..first + 10)
            .map(|s| arrivals[s as usize + 1].1 - arrivals[s as usize].1)
            .collect();
        gaps.sort();
        percentile(&gaps, 0.5)
    };
    let events = client.history(&id).await.unwrap().events;
    let history = events;
    let workflow = workflows.get("long", 1).unwrap();
    println!(
        "history: one workflow of {HISTORY_STEPS} sequential tasks ({} events)",
        history.len()
    );
    for length in [1usize, 100, 1_000] {
        let prefix = &history[..length.min(history.len())];
        let repeats = 200_000 / length as u32;
        let started = Instant::now();
        for _ in 0..repeats {
            std::hint::black_box(activate(workflow.as_ref(), &id, prefix));
        }
        let replay = started.elapsed() / repeats;
        println!(
            "  {:<56} step {:>7.2} ms   replay from the start {:>9.1} µs",
            format!("at {length} events (median of 10 steps)"),
            step_at(length as u64).as_secs_f64() * 1e3,
            replay.as_secs_f64() * 1e6
        );
    }
}

/// This process's resident memory in bytes, and its threads.
fn resident() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:") * 1024, field("Threads:"))
}

/// Prints the memory and threads of this process under `label`.
fn print_resident(label: &str) {
    let (bytes, threads) = resident();
    println!(
        "  {label:<56} {:>7.1} MB   {threads:>4} threads",
        bytes as f64 / 1e6
    );
}

/// The memory of the process as more and more instances wait on timers.
async fn waiting_on_timers(http: &HttpClient, most: u64) {
    let dir = tempfile::tempdir().unwrap();
    let (backend, client) = open(&dir);
    let mut workflows = Workflows::new();
    workflows.register("nap", 1, |ctx: WorkflowContext, (): ()| async move {
        ctx.sleep(Duration::from_secs(3_600)).await;
        Ok::<_, WorkflowError>(())
    });
    let workers = InProcess::start(&backend, Some(http), workflows);
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!(
        "timers: instances waiting on a one-hour timer, resident memory of this process (workers, client, HTTP server)"
    );
    print_resident("none");
    let mut started = 0;
    for target in [most / 10, most / 2, most] {
        while started < target {
            let end = (started + 1_000).min(target);
            let starts = (started..end).map(|i| {
                let client = &client;
                async move {
                    let id = format!("nap-{i}");
                    client.start("nap", Some(&id), &()).await.unwrap();
                }
            });
            futures_util::future::join_all(starts).await;
            started = end;
        }
        // Every instance has run to its timer when the workflows' queue holds only the timers.
        loop {
            let depth = backend.queue(&Topic::Workflows).await.unwrap().unwrap();
            if depth.ready == 0 && depth.delayed == target {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        print_resident(&format!("{target} waiting"));
    }
    tokio::time::sleep(Duration::from_secs(12)).await;
    print_resident(&format!("{most} waiting, 12 s without new work"));
    workers.stop().await;
}
