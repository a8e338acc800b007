//! The runtime's speed on the embedded backend and on the distributed one, beside plain HTTP
//! calls in the same run.
//!
//! ```text
//! cargo bench -p codegen-runtime --bench runtime
//! scripts/postgres.sh start && scripts/pulsar.sh start
//! cargo bench -p codegen-runtime --features pulsar --bench runtime
//! cargo bench -p codegen-runtime --bench runtime -- "one process"   # only the cases named so
//! ```
//!
//! The distributed backend is measured when the `pulsar` feature is on, at the URL in
//! `CODEGEN_BENCH_BACKEND` or else at the services the scripts start (a fresh schema and topic
//! prefix per run); when it cannot be reached, a line says so.
//!
//! Against a local HTTP server (keep-alive, an instant JSON answer), it measures:
//! - plain `reqwest` calls per second at concurrency 64: what the HTTP calls cost alone;
//! - durable task executions per second: workflows fanning out tasks, each task scheduled,
//!   executed, recorded and its workflow resumed, every state change committed (SQLite with
//!   `synchronous = FULL`; PostgreSQL with its default `synchronous_commit = on`, and every
//!   message between processes through the Pulsar broker);
//! - the latency of a workflow of three sequential tasks, from start to result (p50, p99).
//!
//! The embedded backend is measured in two shapes: everything in this process, and the service
//! worker in a process of its own on the same SQLite file (this benchmark run again as that
//! process, as the generated `<name>-worker` runs beside a workflow worker), each with
//! cross-process wake-ups on and off (then the other process is heard of when its idle wait,
//! 200 ms, runs out). The distributed backend is measured in this process, then with the
//! service workers in 1, 2 and 4 processes of their own: how the service side scales.
//!
//! Peers are measured beside them, on the same workloads against the same server (see
//! `benches/peers/mod.rs`): duroxide 0.1.32 with its SQLite provider and the runtime options its
//! documentation gives, and Restate 1.7.12 with its Rust SDK 0.13 (its server installed from npm
//! into the target directory and started on loopback for the run). Each is a program in a
//! workspace of its own under `benches/peers`, built with `cargo run --release` into `peers`
//! under the target directory (minutes the first time; duroxide's build needs OpenSSL's headers,
//! `libssl-dev`); when one cannot be built or run, a line says so.

use std::io::{BufRead, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use codegen_runtime::Client;
use codegen_runtime::backend::sqlite::{SqliteBackend, SqliteOptions};
use codegen_runtime::backend::{MessageQueue, StateStore};
use codegen_runtime::http::HttpClient;
use codegen_runtime::worker::{Handlers, ServiceWorker, ServiceWorkerOptions};
use codegen_runtime::workflow::Workflows;
use tokio::net::TcpListener;
use tokio::sync::watch;

mod common;
mod peers;
use common::{InProcess, Ping};

/// Set in the environment of the service-worker process: the database, the HTTP server, and
/// whether cross-process wake-ups are on (`1`) or off (`0`).
const CHILD_DB: &str = "CODEGEN_BENCH_SERVICE_DB";
const CHILD_URL: &str = "CODEGEN_BENCH_SERVICE_URL";
const CHILD_WAKEUPS: &str = "CODEGEN_BENCH_SERVICE_WAKEUPS";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    common::init_logging();
    if let (Ok(db), Ok(url), Ok(wakeups)) = (
        std::env::var(CHILD_DB),
        std::env::var(CHILD_URL),
        std::env::var(CHILD_WAKEUPS),
    ) {
        return service_process(&db, &url, wakeups == "1").await;
    }
    // Words after `--` choose the cases whose label has one of them; none runs every case.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let selected = |label: &str| filters.is_empty() || filters.iter().any(|f| label.contains(f));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(common::serve(listener, |_| {}));
    println!("runtime benchmark, 2 worker threads per process");

    // 1. Plain HTTP calls, no runtime.
    let http = HttpClient::new(url.clone());
    let plain = "plain reqwest calls, concurrency 64 (no runtime)";
    if selected(plain) {
        plain_calls(&http, plain).await;
    }

    let dir = tempfile::tempdir().unwrap();
    for (label, two_processes, wakeups, runs) in [
        (
            "one process, cross-process wake-ups on (the default)",
            false,
            true,
            300,
        ),
        ("one process, cross-process wake-ups off", false, false, 300),
        (
            "two processes, cross-process wake-ups on (the default)",
            true,
            true,
            300,
        ),
        (
            "two processes, cross-process wake-ups off (idle-wait polling)",
            true,
            false,
            30,
        ),
    ] {
        let label = format!("embedded backend (SQLite, synchronous=FULL), {label}");
        if !selected(&label) {
            continue;
        }
        let db = dir
            .path()
            .join(format!("bench-{two_processes}-{wakeups}.db"));
        let options = SqliteOptions::default().with_process_wakeups(wakeups);
        let sqlite = Arc::new(SqliteBackend::open_with(&db, options).unwrap());
        let service = if two_processes {
            Service::Processes(vec![ServiceProcess::start(&db, &url, wakeups)])
        } else {
            Service::InProcess
        };
        measure(&label, sqlite, &http, service, runs).await;
    }
    // The same as the first, with the Prometheus recorder installed and `/metrics` served: what
    // the metrics cost the hot path. Last, since a recorder cannot be uninstalled.
    let label =
        "embedded backend (SQLite, synchronous=FULL), one process, metrics on (served at /metrics)";
    if selected(label) {
        metrics_on(label, &dir, &http).await;
    }
    if selected(peers::DUROXIDE) {
        let url = url.clone();
        let _ = tokio::task::spawn_blocking(move || peers::duroxide(&url)).await;
    }
    if selected(peers::RESTATE) {
        let url = url.clone();
        let _ = tokio::task::spawn_blocking(move || peers::restate(&url)).await;
    }
    distributed(&http, &selected).await;
}

/// Plain HTTP calls at concurrency 64 for 3 s, printed under `label`.
async fn plain_calls(http: &HttpClient, label: &str) {
    let count = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(3);
    let mut loops = Vec::new();
    for i in 0..64 {
        let (http, count) = (http.clone(), count.clone());
        loops.push(tokio::spawn(async move {
            while Instant::now() < until {
                http.attempt(&Ping { n: i }, None).await.unwrap();
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let started = Instant::now();
    for l in loops {
        l.await.unwrap();
    }
    let raw = count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();

    println!("{label:<58} {raw:>10.0}/s");
}

/// The one-process case with the Prometheus recorder installed, and one scrape.
async fn metrics_on(label: &str, dir: &tempfile::TempDir, http: &HttpClient) {
    let metrics = codegen_runtime::telemetry::serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let db = dir.path().join("bench-metrics.db");
    let options = SqliteOptions::default().with_process_wakeups(true);
    let sqlite = Arc::new(SqliteBackend::open_with(&db, options).unwrap());
    measure(label, sqlite, http, Service::InProcess, 300).await;
    let started = Instant::now();
    let page = reqwest::get(format!("http://{metrics}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    println!(
        "  {:<56} {:>7.2} ms ({} lines)",
        "one scrape of /metrics",
        started.elapsed().as_secs_f64() * 1e3,
        page.lines().count()
    );
}

/// The service worker in a process of its own, on a SQLite file or a distributed backend's URL:
/// runs until its standard input closes.
async fn service_process(db: &str, url: &str, wakeups: bool) {
    use codegen_runtime::backend::Backend;
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let backend = Arc::new(if db.starts_with("postgres") {
        Backend::open(db).await.unwrap()
    } else {
        let options = SqliteOptions::default().with_process_wakeups(wakeups);
        Backend::Sqlite(SqliteBackend::open_with(db, options).unwrap())
    });
    let mut handlers = Handlers::new();
    handlers.http::<Ping>(HttpClient::new(url.to_owned()));
    let service = ServiceWorker::new(backend, "bench", handlers, ServiceWorkerOptions::default());
    let (_stop, rx) = watch::channel(false);
    let running = tokio::spawn(async move { service.run(rx).await.unwrap() });
    println!("ready");
    std::io::stdout().flush().unwrap();
    running.await.unwrap();
}

/// Where the service workers run.
enum Service {
    InProcess,
    Processes(Vec<ServiceProcess>),
}

/// The service-worker process, killed when dropped (on a panic too); it also ends by itself
/// when this process dies, as its standard input closes.
struct ServiceProcess(Child);

impl ServiceProcess {
    fn start(db: impl AsRef<std::ffi::OsStr>, url: &str, wakeups: bool) -> Self {
        let mut child = Self(
            Command::new(std::env::current_exe().unwrap())
                .env(CHILD_DB, db)
                .env(CHILD_URL, url)
                .env(CHILD_WAKEUPS, if wakeups { "1" } else { "0" })
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut line = String::new();
        std::io::BufReader::new(child.0.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line.trim(),
            "ready",
            "the service-worker process did not start"
        );
        child
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The distributed backend, when this build and this machine have it.
#[cfg(feature = "pulsar")]
async fn distributed(http: &HttpClient, selected: &dyn Fn(&str) -> bool) {
    use codegen_runtime::backend::Backend;
    let url = std::env::var("CODEGEN_BENCH_BACKEND").unwrap_or_else(|_| {
        // The broker of scripts/pulsar.sh takes clients with its token only.
        let token = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/services/pulsar/conf/token");
        format!(
            "postgres://codegen:codegen@127.0.0.1:15432/codegen?pulsar=pulsar://127.0.0.1:16650&pulsar_token_file={}",
            token.display()
        )
    });
    // Each case on a schema and topics of its own: in this process, then with the service
    // workers in 1, 2 and 4 processes of their own (the workflow worker stays here).
    let mut cases = vec![("one process".to_owned(), 0)];
    cases.extend([1, 2, 4].map(|n| {
        let s = if n == 1 { "" } else { "es" };
        (format!("service workers in {n} process{s} of their own"), n)
    }));
    for (case, (shape, processes)) in cases.into_iter().enumerate() {
        let label =
            format!("distributed backend (PostgreSQL + Pulsar standalone, loopback), {shape}");
        if !selected(&label) {
            continue;
        }
        let run = std::process::id();
        let url = format!("{url}&schema=bench_{run}_{case}&pulsar_prefix=bench-{run}-{case}-");
        let backend = match Backend::open(&url).await {
            Ok(backend) => Arc::new(backend),
            Err(err) => {
                println!(
                    "distributed backend not measured: {err} (start it with scripts/postgres.sh start && scripts/pulsar.sh start, or set CODEGEN_BENCH_BACKEND)"
                );
                return;
            }
        };
        let service = if processes == 0 {
            Service::InProcess
        } else {
            Service::Processes(
                (0..processes)
                    .map(|_| ServiceProcess::start(&url, http.base_url(), true))
                    .collect(),
            )
        };
        measure(&label, backend, http, service, 300).await;
    }
}

#[cfg(not(feature = "pulsar"))]
async fn distributed(_: &HttpClient, selected: &dyn Fn(&str) -> bool) {
    if !selected("distributed") {
        return;
    }
    println!(
        "distributed backend not measured: built without the `pulsar` feature (cargo bench -p codegen-runtime --features pulsar --bench runtime)"
    );
}

/// Durable task executions per second and three-step latency (`runs` runs) on one backend,
/// the service worker where `service` says.
async fn measure<B: StateStore + MessageQueue>(
    label: &str,
    backend: Arc<B>,
    http: &HttpClient,
    service: Service,
    runs: u64,
) {
    const W2: (u64, u64) = (40, 250);
    let mut workflows = Workflows::new();
    common::register(&mut workflows);
    // The service worker runs in this process, or in the processes stopped at the end.
    let (workers, processes) = match service {
        Service::InProcess => (
            InProcess::start(&backend, Some(http), workflows),
            Vec::new(),
        ),
        Service::Processes(processes) => (InProcess::start(&backend, None, workflows), processes),
    };
    let client = Client::new(backend.clone());
    let figures = common::workloads(&client, "", W2, runs).await;
    workers.stop().await;
    drop(processes);
    common::print(label, &figures, W2);
}
