//! `billing-demo`: the monthly billing process, live.
//!
//! `cargo run -p billing-demo --release` starts the demo server (with failures injected), the
//! workers of the four generated crates and the workflow worker on one SQLite file, subscribes
//! some users, shows progress, and ends with a summary. `worker` and `workflows` run one part
//! as its own process, as a deployment (or the chaos test) does.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use billing_demo::server::{DemoServer, Faults};
use billing_demo::{services, workflow};
use clap::{Args, Parser, Subcommand};
use codegen_runtime::Client;
use codegen_runtime::backend::sqlite::SqliteBackend;
use codegen_runtime::backend::{Backend, BackendUrl, Status};
use codegen_runtime::worker::{
    Retention, ServiceWorker, ServiceWorkerOptions, WorkflowWorker, WorkflowWorkerOptions,
    shutdown_signal,
};
use codegen_runtime::workflow::{Clock, Workflows};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::watch;

const MONTH_MS: f64 = 30.0 * 86_400_000.0;

/// The monthly billing process over four API-driven services, surviving failures.
#[derive(Debug, Parser)]
#[command(name = "billing-demo", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the whole demo in this process (the default).
    Run(RunArgs),
    /// Runs the workers of one service against the demo server's URL.
    Worker {
        /// `consumption`, `payment`, `invoice` or `email`.
        #[arg(long)]
        service: String,
        /// Where state and messages are, shared with the other workers: a SQLite file, or
        /// `postgres://USER:PASSWORD@HOST:PORT/DB?pulsar=pulsar://HOST:PORT` (`--db` is the same).
        #[arg(long = "backend", alias = "db", value_name = "URL")]
        backend: String,
        /// The service's base URL.
        #[arg(long)]
        base_url: String,
        /// Gives up on an HTTP attempt after this many milliseconds.
        #[arg(long, default_value_t = 500)]
        timeout_ms: u64,
        /// Serves Prometheus metrics at /metrics, and /healthz and /readyz, on this address.
        #[arg(long, value_name = "ADDR:PORT")]
        metrics_listen: Option<SocketAddr>,
    },
    /// Runs the workflow worker.
    Workflows {
        /// Where state and messages are, shared with the other workers: a SQLite file, or
        /// `postgres://USER:PASSWORD@HOST:PORT/DB?pulsar=pulsar://HOST:PORT` (`--db` is the same).
        #[arg(long = "backend", alias = "db", value_name = "URL")]
        backend: String,
        /// Real milliseconds per 30-day month.
        #[arg(long, default_value_t = 2000)]
        month_ms: u64,
        /// Where workflow time starts running fast (milliseconds since the Unix epoch).
        #[arg(long)]
        clock_origin: Option<i64>,
        /// Serves Prometheus metrics at /metrics, and /healthz and /readyz, on this address.
        #[arg(long, value_name = "ADDR:PORT")]
        metrics_listen: Option<SocketAddr>,
    },
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Users who subscribe.
    #[arg(long, default_value_t = 20)]
    users: u32,
    /// Months billed per user.
    #[arg(long, default_value_t = 3)]
    months: u32,
    /// Real milliseconds per 30-day month.
    #[arg(long, default_value_t = 2000)]
    month_ms: u64,
    /// Share of requests the services answer with 503.
    #[arg(long, default_value_t = 0.2)]
    error_rate: f64,
    /// Share of requests the services answer too late (after doing the work).
    #[arg(long, default_value_t = 0.05)]
    timeout_rate: f64,
    /// Latency added to every request, in milliseconds.
    #[arg(long, default_value_t = 5)]
    latency_ms: u64,
    /// Crash the demo server once, this many milliseconds in, for a second.
    #[arg(long)]
    crash_at_ms: Option<u64>,
    /// The SQLite file (a temporary one by default).
    #[arg(long)]
    db: Option<PathBuf>,
    /// Serve the web console (`codegen flows serve`) during the run, and keep it and the
    /// workers up afterwards (see --console-minutes), so the workflows can be looked at and
    /// dead tasks retried from it.
    #[arg(long)]
    console: bool,
    /// Where the console listens.
    #[arg(
        long,
        value_name = "ADDR:PORT",
        default_value = "127.0.0.1:8480",
        requires = "console"
    )]
    console_listen: SocketAddr,
    /// How long the console stays up after the run (Ctrl-C ends it sooner).
    #[arg(long, default_value_t = 10, requires = "console")]
    console_minutes: u64,
    /// Serves the workers' Prometheus metrics at /metrics, and /healthz and /readyz, on this
    /// address.
    #[arg(long, value_name = "ADDR:PORT")]
    metrics_listen: Option<SocketAddr>,
}

/// `run`'s defaults, for `billing-demo` without a subcommand.
#[derive(Debug, Parser)]
struct RunDefaults {
    #[command(flatten)]
    args: RunArgs,
}

/// Opens the backend of a worker process, waiting for it while it cannot be reached (a
/// database or broker that is starting), as the generated workers do.
async fn open(url: &str, role: &str) -> anyhow::Result<Backend> {
    let url = BackendUrl::parse(url).map_err(anyhow::Error::msg)?;
    Ok(Backend::open_when_available(&url, role).await?)
}

/// Retention is measured on the workers' clock, and the demo's months last milliseconds: the
/// default 30 days would delete every ended subscription a second after it ended, before
/// anyone reads it. The demo keeps them.
fn kept() -> Retention {
    Retention {
        keep: None,
        ..Retention::default()
    }
}

fn clock(month_ms: u64, origin: Option<i64>) -> Clock {
    let factor = MONTH_MS / month_ms.max(1) as f64;
    match origin {
        Some(origin) => Clock::Scaled { origin, factor },
        None => Clock::scaled_from_now(factor),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let defaults = || Command::Run(RunDefaults::parse_from(["billing-demo"]).args);
    match cli.command.unwrap_or_else(defaults) {
        Command::Run(args) => run(args).await,
        Command::Worker {
            service,
            backend,
            base_url,
            timeout_ms,
            metrics_listen,
        } => {
            let _traces =
                codegen_runtime::telemetry::trace::init(&format!("billing-{service}-worker"))
                    .map_err(anyhow::Error::msg)?;
            let name = services::service_name(&service)
                .with_context(|| format!("no service `{service}`"))?;
            let handlers =
                services::handlers(&service, &base_url, Duration::from_millis(timeout_ms))
                    .with_context(|| format!("no service `{service}`"))?;
            let backend = Arc::new(open(&backend, "service").await?);
            let options = ServiceWorkerOptions {
                lease: Duration::from_secs(3),
                idle_wait: Duration::from_millis(50),
                metrics_listen,
                ..Default::default()
            };
            if metrics_listen.is_some() {
                codegen_runtime::telemetry::watch_queues(backend.clone())
                    .map_err(anyhow::Error::msg)?;
            }
            let (stop, stopped) = watch::channel(false);
            tokio::spawn(async move {
                shutdown_signal().await;
                let _ = stop.send(true);
            });
            ServiceWorker::new(backend, name, handlers, options)
                .run(stopped)
                .await?;
            Ok(())
        }
        Command::Workflows {
            backend,
            month_ms,
            clock_origin,
            metrics_listen,
        } => {
            let _traces = codegen_runtime::telemetry::trace::init("billing-workflows")
                .map_err(anyhow::Error::msg)?;
            let backend = Arc::new(open(&backend, "workflow").await?);
            let mut workflows = Workflows::new();
            workflow::register(&mut workflows);
            let options = WorkflowWorkerOptions {
                lease: Duration::from_secs(2),
                idle_wait: Duration::from_millis(50),
                clock: clock(month_ms, clock_origin),
                metrics_listen,
                retention: kept(),
                ..Default::default()
            };
            let (stop, stopped) = watch::channel(false);
            tokio::spawn(async move {
                shutdown_signal().await;
                let _ = stop.send(true);
            });
            WorkflowWorker::new(backend, workflows, options)
                .run(stopped)
                .await?;
            Ok(())
        }
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let faults = Faults {
        error_rate: args.error_rate,
        timeout_rate: args.timeout_rate,
        hang: Duration::from_secs(1),
        latency: Duration::from_millis(args.latency_ms),
    };
    let mut server = DemoServer::start(SocketAddr::from(([127, 0, 0, 1], 0)), faults).await?;
    let temp = tempfile_dir()?;
    let db = args.db.clone().unwrap_or_else(|| temp.join("billing.db"));
    let backend = Arc::new(SqliteBackend::open(&db)?);
    let (stop, stopped) = watch::channel(false);
    let mut workers = Vec::new();
    for (service, _) in services::SERVICES {
        let name = services::service_name(service).expect("a known service");
        let handlers =
            services::handlers(service, &server.url(service), Duration::from_millis(500))
                .expect("a known service");
        let options = ServiceWorkerOptions {
            metrics_listen: args.metrics_listen,
            ..ServiceWorkerOptions::default()
        };
        let worker = ServiceWorker::new(backend.clone(), name, handlers, options);
        let stopped = stopped.clone();
        workers.push(tokio::spawn(async move { worker.run(stopped).await }));
    }
    let mut workflows = Workflows::new();
    workflow::register(&mut workflows);
    let options = WorkflowWorkerOptions {
        clock: clock(args.month_ms, None),
        metrics_listen: args.metrics_listen,
        retention: kept(),
        ..Default::default()
    };
    if args.metrics_listen.is_some() {
        codegen_runtime::telemetry::watch_queues(backend.clone()).map_err(anyhow::Error::msg)?;
    }
    let engine = WorkflowWorker::new(backend.clone(), workflows, options);
    workers.push(tokio::spawn(async move { engine.run(stopped).await }));

    let (console_stop, console_stopped) = watch::channel(false);
    let console = if args.console {
        let client = Client::new(Arc::new(Backend::Sqlite(backend.as_ref().clone())));
        let serve = codegen::console::ServeArgs {
            listen: args.console_listen,
            read_only: false,
            metrics_listen: None,
        };
        let mut stopped = console_stopped;
        let until = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let console = tokio::spawn(codegen::console::serve_until(client, serve, until));
        // The console prints its address and token as it starts.
        tokio::time::sleep(Duration::from_millis(100)).await;
        if console.is_finished() {
            match console.await? {
                Ok(()) => bail!("the console stopped at once"),
                Err(failure) => bail!("the console: {}", failure.message),
            }
        }
        Some(console)
    } else {
        None
    };

    let client = Client::new(backend);
    println!(
        "billing {} users for {} months ({} ms a month), {:.0}% of requests failing with 5xx, {:.0}% timing out; state in {}",
        args.users,
        args.months,
        args.month_ms,
        args.error_rate * 100.0,
        args.timeout_rate * 100.0,
        db.display()
    );
    for user in 0..args.users {
        let subscription = workflow::Subscription {
            user_id: format!("user-{user}"),
            email: format!("user-{user}@example.com"),
            months: Some(args.months),
            billed: 0,
        };
        client
            .start(
                workflow::NAME,
                Some(&format!("billing-user-{user}")),
                &subscription,
            )
            .await?;
    }

    let total = u64::from(args.users) * u64::from(args.months);
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{elapsed:>4} [{bar:40}] {pos}/{len} months billed  {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let started = Instant::now();
    let mut crash_at = args.crash_at_ms.map(Duration::from_millis);
    // Without a terminal there is no bar: a line per workflow that ends instead.
    let mut reported = std::collections::BTreeSet::new();
    loop {
        let ledger = server.ledger();
        bar.set_position(ledger.emails.len() as u64);
        bar.set_message(format!(
            "{} 5xx and {} timeouts injected",
            ledger.injected_errors, ledger.injected_timeouts
        ));
        let instances = client
            .list(Some(workflow::NAME), None, args.users as usize * 2)
            .await?;
        if bar.is_hidden() {
            for i in instances.iter().filter(|i| i.status != Status::Running) {
                if reported.insert(i.id.clone()) {
                    let outcome = i
                        .output
                        .as_ref()
                        .map_or_else(|| i.error.clone().unwrap_or_default(), |o| o.to_string());
                    println!(
                        "{:>6.1} s  {}: {:?} {outcome}",
                        started.elapsed().as_secs_f64(),
                        i.id,
                        i.status
                    );
                }
            }
        }
        if instances.iter().all(|i| i.status != Status::Running) {
            break;
        }
        if crash_at.is_some_and(|at| started.elapsed() >= at) {
            crash_at = None;
            let note = "the demo server crashes, and is back in a second";
            if bar.is_hidden() {
                println!("{note}");
            } else {
                bar.println(note);
            }
            server.crash(Duration::from_secs(1)).await?;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bar.finish();

    let instances = client
        .list(Some(workflow::NAME), None, args.users as usize * 2)
        .await?;
    let completed = instances
        .iter()
        .filter(|i| i.status == Status::Completed)
        .count();
    let billed: u64 = instances
        .iter()
        .filter_map(|i| i.output.as_ref()?.get("months")?.as_u64())
        .sum();
    let ledger = server.ledger();
    let mut per_month = std::collections::BTreeMap::new();
    for payment in ledger.payments.values() {
        *per_month
            .entry((&payment.user_id, &payment.month))
            .or_insert(0u32) += 1;
    }
    let doubled = per_month.values().filter(|n| **n > 1).count();
    let dead = client.dead_tasks().await?.len();
    println!("workflows completed:   {completed} of {}", args.users);
    println!("months billed:         {billed} of {total}");
    println!(
        "payments:              {} ({doubled} user-months charged twice)",
        ledger.payments.len()
    );
    println!(
        "retries:               {} after injected failures ({} 5xx, {} timeouts), {} requests in all",
        ledger.injected_errors + ledger.injected_timeouts,
        ledger.injected_errors,
        ledger.injected_timeouts,
        ledger.requests
    );
    println!("dead tasks:            {dead}");
    println!(
        "took:                  {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if let Some(console) = console {
        println!(
            "the console stays up for {} minutes at http://{}/ with the workers running: look at the timelines, retry dead tasks; Ctrl-C ends it",
            args.console_minutes, args.console_listen
        );
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(args.console_minutes * 60)) => {}
            () = shutdown_signal() => {}
        }
        let _ = console_stop.send(true);
        if let Err(failure) = console.await? {
            eprintln!("the console: {}", failure.message);
        }
    }
    let _ = stop.send(true);
    for w in workers {
        w.await??;
    }
    if completed != args.users as usize || doubled > 0 {
        bail!("the demo did not bill every user exactly once a month");
    }
    Ok(())
}

/// A fresh folder for the demo's database.
fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("billing-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}
