//! What the runtime benchmarks share: the task they run, the local HTTP server that answers it,
//! and the two workloads (W1 and W2) with their figures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use codegen_runtime::__private::{Bytes, HttpOperation, RequestParts, decode};
use codegen_runtime::backend::{MessageQueue, StateStore};
use codegen_runtime::workflow::{WorkflowContext, WorkflowError, Workflows, join_all};
use codegen_runtime::{Client, Task, TaskError};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// Prints the runtime's warnings (a backend that stalls says why) on stderr; `RUST_LOG` chooses
/// more.
pub(crate) fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
}

/// `GET /ping/{n}`, answered with `n`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Ping {
    pub(crate) n: u64,
}

impl Task for Ping {
    type Output = u64;
    const SERVICE: &'static str = "bench";
    const NAME: &'static str = "ping";
    const IDEMPOTENT: bool = true;
}

impl HttpOperation for Ping {
    const METHOD: &'static str = "GET";

    fn build(&self, request: &mut RequestParts) -> Result<(), TaskError> {
        request.path("/ping/");
        request.path_param("n", &self.n)
    }

    fn decode(_status: u16, body: Bytes) -> Result<u64, TaskError> {
        decode::json(body)
    }
}

/// Answers `GET /ping/{n}` with `n` (keep-alive, at once) on every connection of `listener`,
/// calling `on_request(n)` as each request arrives.
pub(crate) async fn serve(listener: TcpListener, on_request: fn(u64)) {
    while let Ok((stream, _)) = listener.accept().await {
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut read = BufReader::new(read);
            let mut line = String::new();
            loop {
                line.clear();
                if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                let n = line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|t| t.rsplit('/').next())
                    .unwrap_or("0")
                    .to_owned();
                on_request(n.parse().unwrap_or(0));
                loop {
                    let mut h = String::new();
                    if read.read_line(&mut h).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if h.trim_end().is_empty() {
                        break;
                    }
                }
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{n}",
                    n.len()
                );
                if write.write_all(reply.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// The value at fraction `p` of `sorted`.
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Registers the workflows of the two workloads: `fan_out` (W2) and `three_steps` (W1).
pub(crate) fn register(workflows: &mut Workflows) {
    workflows.register("fan_out", 1, |ctx: WorkflowContext, n: u64| async move {
        let calls = (0..n).map(|i| ctx.call(&Ping { n: i })).collect();
        let results = join_all(calls).await;
        Ok::<_, WorkflowError>(results.into_iter().filter(Result::is_ok).count())
    });
    workflows.register(
        "three_steps",
        1,
        |ctx: WorkflowContext, n: u64| async move {
            let a = ctx.call(&Ping { n }).await?;
            let b = ctx.call(&Ping { n: a + 1 }).await?;
            Ok::<_, WorkflowError>(ctx.call(&Ping { n: b + 1 }).await?)
        },
    );
}

/// What the two workloads measured.
pub(crate) struct Figures {
    /// W2: durable task executions per second.
    pub(crate) tasks_per_second: f64,
    /// W1: start-to-result latencies, sorted.
    pub(crate) latencies: Vec<Duration>,
}

/// W2 (`instances` workflows of `fan_out` tasks each, all started and then awaited), then W1
/// (`runs` three-step workflows, one at a time), with instance ids that start with `prefix`.
/// The workers of [`register`]'s workflows must be running on `client`'s backend.
pub(crate) async fn workloads<B: StateStore + MessageQueue>(
    client: &Client<B>,
    prefix: &str,
    (instances, fan_out): (u64, u64),
    runs: u64,
) -> Figures {
    let started = Instant::now();
    let mut ids = Vec::new();
    for i in 0..instances {
        let id = format!("{prefix}fan-{i}");
        ids.push(client.start("fan_out", Some(&id), &fan_out).await.unwrap());
    }
    for id in &ids {
        let ok: u64 = client.result(id, Duration::from_secs(300)).await.unwrap();
        assert_eq!(ok, fan_out);
    }
    let tasks_per_second = (instances * fan_out) as f64 / started.elapsed().as_secs_f64();

    let mut latencies = Vec::new();
    for i in 0..runs {
        let started = Instant::now();
        let id = format!("{prefix}seq-{i}");
        let id = client.start("three_steps", Some(&id), &i).await.unwrap();
        let out: u64 = client.result(&id, Duration::from_secs(30)).await.unwrap();
        assert_eq!(out, i + 2);
        latencies.push(started.elapsed());
    }
    latencies.sort();
    Figures {
        tasks_per_second,
        latencies,
    }
}

/// Prints `figures` under `label`, as every runtime benchmark does.
pub(crate) fn print(label: &str, figures: &Figures, (instances, fan_out): (u64, u64)) {
    println!("{label}");
    println!(
        "  {:<56} {:>10.0}/s",
        format!("durable task executions ({instances} workflows x {fan_out} tasks)"),
        figures.tasks_per_second
    );
    println!(
        "  {:<56} p50 {:>6.2} ms   p99 {:>6.2} ms",
        format!(
            "three-step workflow, start to result ({} runs)",
            figures.latencies.len()
        ),
        percentile(&figures.latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&figures.latencies, 0.99).as_secs_f64() * 1e3
    );
}

/// Workers in this process; [`InProcess::stop`] stops them.
pub(crate) struct InProcess {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl InProcess {
    /// Starts a workflow worker for `workflows` on `backend` and, given `http`, a service
    /// worker for [`Ping`] that calls through it (without, the service worker runs elsewhere).
    pub(crate) fn start<B: StateStore + MessageQueue + 'static>(
        backend: &Arc<B>,
        http: Option<&codegen_runtime::http::HttpClient>,
        workflows: Workflows,
    ) -> Self {
        use codegen_runtime::worker::{
            Handlers, ServiceWorker, ServiceWorkerOptions, WorkflowWorker, WorkflowWorkerOptions,
        };
        let (stop, rx) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        if let Some(http) = http {
            let mut handlers = Handlers::new();
            handlers.http::<Ping>(http.clone());
            let service = ServiceWorker::new(
                backend.clone(),
                "bench",
                handlers,
                ServiceWorkerOptions::default(),
            );
            let rx = rx.clone();
            tasks.push(tokio::spawn(async move { service.run(rx).await.unwrap() }));
        }
        let engine =
            WorkflowWorker::new(backend.clone(), workflows, WorkflowWorkerOptions::default());
        tasks.push(tokio::spawn(async move { engine.run(rx).await.unwrap() }));
        Self { stop, tasks }
    }

    /// Stops the workers and waits for them to finish their round.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}
