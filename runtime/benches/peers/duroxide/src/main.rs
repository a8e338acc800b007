//! duroxide 0.1.32 on the two workloads of the runtime benchmark (`benches/runtime.rs`), against
//! its HTTP server, printed in its format:
//!
//! ```text
//! cargo run --release --manifest-path runtime/benches/peers/duroxide/Cargo.toml -- http://127.0.0.1:PORT
//! ```
//!
//! The benchmark runs it so, with the URL of its server (`GET /ping/{n}` answered with `n`). It
//! measures:
//! - durable task executions per second: 40 orchestrations fanning out 250 activities each
//!   (joined with `ctx.join`), all started then all awaited;
//! - the latency of an orchestration of three sequential activities, from start to result
//!   (p50, p99), started and awaited one at a time.
//!
//! On a fresh file of duroxide's SQLite provider (`SqliteProvider::new`, its own pragmas: WAL,
//! and `synchronous = WAL`, which SQLite does not know and leaves at `NORMAL`, so commits are
//! not synced to disk as the runtime's `synchronous = FULL` are), with the runtime options its
//! documentation gives (see [`options`]). Its `sqlx` builds with `native-tls` (OpenSSL): the
//! build needs `libssl-dev` and `pkg-config`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use duroxide::providers::sqlite::SqliteProvider;
use duroxide::runtime::registry::ActivityRegistry;
use duroxide::runtime::{Runtime, RuntimeOptions};
use duroxide::{ActivityContext, Client, OrchestrationContext, OrchestrationRegistry};

/// The label the results are printed under.
const LABEL: &str = "duroxide 0.1.32 (SQLite provider), its documented tuning";

/// Three-step runs at most; fewer when they take longer than [`RUNS_BUDGET`] (30 at least).
const RUNS: u64 = 300;

/// How long the three-step runs may take before the count is cut short.
const RUNS_BUDGET: Duration = Duration::from_secs(60);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // Warnings on stderr: duroxide installs a subscriber writing to stdout unless one is set.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let Some(url) = std::env::args().nth(1) else {
        eprintln!("usage: duroxide-peer <base URL of the benchmark's HTTP server>");
        std::process::exit(2);
    };
    if let Err(err) = run(url.trim_end_matches('/')).await {
        eprintln!("duroxide peer failed: {err}");
        std::process::exit(1);
    }
}

/// The runtime options: duroxide's documented tuning.
///
/// - `orchestration_concurrency: 4`, `worker_concurrency: 8`: the example of `RuntimeOptions`
///   in its API documentation (`src/runtime/mod.rs`) and the "Full Production Configuration" of
///   `docs/observability-guide.md` (the defaults are 2 and 2; each worker runs one activity at
///   a time).
/// - `dispatcher_min_poll_interval: 10 ms`: "Local SQLite: 10ms" in "Runtime Polling
///   Configuration" of `docs/provider-implementation-guide.md` (which calls it the default; the
///   default in the code is 100 ms). The SQLite provider does not long-poll, so an idle
///   dispatcher looks for work again after this interval.
fn options() -> RuntimeOptions {
    RuntimeOptions {
        orchestration_concurrency: 4,
        worker_concurrency: 8,
        dispatcher_min_poll_interval: Duration::from_millis(10),
        ..RuntimeOptions::default()
    }
}

/// `GET {base}/ping/{n}`, answered with `n`.
async fn ping(http: &reqwest::Client, base: &str, n: u64) -> Result<u64, String> {
    let response = http
        .get(format!("{base}/ping/{n}"))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| format!("GET /ping/{n}: {e}"))?;
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("GET /ping/{n}: {e}"))?;
    serde_json::from_slice(&body).map_err(|e| format!("GET /ping/{n}: {e}"))
}

/// Both workloads on a fresh SQLite file, then the results printed.
async fn run(base: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| format!("a temporary directory: {e}"))?;
    let db = dir.path().join("duroxide.db");
    std::fs::File::create(&db).map_err(|e| format!("{}: {e}", db.display()))?;
    let store = Arc::new(
        SqliteProvider::new(&format!("sqlite:{}", db.display()), None)
            .await
            .map_err(|e| format!("opening {}: {e}", db.display()))?,
    );

    let http = reqwest::Client::new();
    let base: Arc<str> = base.into();
    let activities = ActivityRegistry::builder()
        .register_typed("ping", move |_: ActivityContext, n: u64| {
            let (http, base) = (http.clone(), base.clone());
            async move { ping(&http, &base, n).await }
        })
        .build();
    let orchestrations = OrchestrationRegistry::builder()
        .register_typed("fan_out", |ctx: OrchestrationContext, n: u64| async move {
            let calls = (0..n)
                .map(|i| ctx.schedule_activity_typed::<u64, u64>("ping", &i))
                .collect();
            let results = ctx.join(calls).await;
            Ok::<_, String>(results.into_iter().filter(Result::is_ok).count() as u64)
        })
        .register_typed(
            "three_steps",
            |ctx: OrchestrationContext, n: u64| async move {
                let a = ctx.schedule_activity_typed::<u64, u64>("ping", &n).await?;
                let b = ctx
                    .schedule_activity_typed::<u64, u64>("ping", &(a + 1))
                    .await?;
                ctx.schedule_activity_typed::<u64, u64>("ping", &(b + 1))
                    .await
            },
        )
        .build();
    let runtime =
        Runtime::start_with_options(store.clone(), activities, orchestrations, options()).await;
    let client = Client::new(store);

    // Durable task executions per second.
    let (instances, fan_out) = (40u64, 250u64);
    let started = Instant::now();
    let mut ids = Vec::new();
    for i in 0..instances {
        let id = format!("fan-{i}");
        client
            .start_orchestration_typed(id.clone(), "fan_out", fan_out)
            .await
            .map_err(|e| format!("starting {id}: {e}"))?;
        ids.push(id);
    }
    for id in &ids {
        let ok = client
            .wait_for_orchestration_typed::<u64>(id, Duration::from_secs(300))
            .await
            .map_err(|e| format!("waiting for {id}: {e}"))?
            .map_err(|e| format!("{id} failed: {e}"))?;
        if ok != fan_out {
            return Err(format!("{id}: {ok} of {fan_out} activities succeeded"));
        }
    }
    let durable = (instances * fan_out) as f64 / started.elapsed().as_secs_f64();

    // Three sequential steps, one orchestration at a time.
    let mut latencies = Vec::new();
    let all = Instant::now();
    let mut runs = 0;
    while runs < RUNS && (runs < 30 || all.elapsed() < RUNS_BUDGET) {
        let i = runs;
        let id = format!("seq-{i}");
        let started = Instant::now();
        client
            .start_orchestration_typed(id.clone(), "three_steps", i)
            .await
            .map_err(|e| format!("starting {id}: {e}"))?;
        let out = client
            .wait_for_orchestration_typed::<u64>(&id, Duration::from_secs(30))
            .await
            .map_err(|e| format!("waiting for {id}: {e}"))?
            .map_err(|e| format!("{id} failed: {e}"))?;
        if out != i + 2 {
            return Err(format!("{id}: {out}, not {}", i + 2));
        }
        latencies.push(started.elapsed());
        runs += 1;
    }
    latencies.sort();
    runtime.shutdown(None).await;

    println!("{LABEL}");
    println!(
        "  {:<56} {:>10.0}/s",
        format!("durable task executions ({instances} workflows x {fan_out} tasks)"),
        durable
    );
    println!(
        "  {:<56} p50 {:>6.2} ms   p99 {:>6.2} ms",
        format!("three-step workflow, start to result ({runs} runs)"),
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3
    );
    Ok(())
}

/// The `p` quantile of `sorted`, as the runtime benchmark takes it.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}
