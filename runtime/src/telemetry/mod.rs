//! What a worker shows the tools that watch it: Prometheus metrics, OpenTelemetry traces and
//! health checks.
//!
//! - **Metrics.** The workers record through the [`metrics`] facade, which costs next to nothing
//!   while no recorder is installed. [`serve`] installs the Prometheus recorder (once per
//!   process) and answers on one address:
//!   - `GET /metrics`: every metric in the Prometheus text format ([`names`] lists them);
//!   - `GET /healthz`: `200` while the process serves requests (liveness);
//!   - `GET /readyz`: `200` when every worker registered in the process is connected to its
//!     backend and taking work, `503` with the reason otherwise (readiness).
//!
//!   The workers serve it themselves when `metrics_listen` is set in their options; the
//!   generated `*-worker` binaries take `--metrics-listen`.
//! - **Traces.** Every workflow instance is one trace: a `workflow` span when it starts, a
//!   `workflow.activation` span per replay, a `task.attempt` span per attempt, linked across
//!   processes through the messages ([`trace`]). HTTP calls carry the attempt's W3C
//!   `traceparent`. They are exported over OTLP by [`trace::init`] when the crate is built with
//!   the `otel` feature and `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

pub mod names;
pub(crate) mod record;
pub mod trace;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::backend::Topic;
use crate::backend::inspect::Inspect;

/// The process's telemetry: its recorder, the workers that say whether they are ready, and the
/// backends whose queues are measured at each scrape.
struct Telemetry {
    handle: PrometheusHandle,
    components: Mutex<BTreeMap<u64, (String, Arc<AtomicU8>)>>,
    next: AtomicU64,
    queues: Mutex<Vec<Arc<dyn Inspect>>>,
    listening: Mutex<BTreeMap<SocketAddr, SocketAddr>>,
}

static TELEMETRY: OnceLock<Result<Telemetry, String>> = OnceLock::new();

fn telemetry() -> Result<&'static Telemetry, String> {
    TELEMETRY
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(names::SECONDS_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        metrics_exporter_prometheus::Matcher::Full(
                            names::WORKFLOW_HISTORY_EVENTS.to_owned(),
                        ),
                        names::EVENTS_BUCKETS,
                    )
                })
                .map_err(|e| e.to_string())?
                .install_recorder()
                .map_err(|e| {
                    format!("cannot install the Prometheus recorder (is another metrics recorder installed?): {e}")
                })?;
            names::describe();
            Ok(Telemetry {
                handle,
                components: Mutex::new(BTreeMap::new()),
                next: AtomicU64::new(0),
                queues: Mutex::new(Vec::new()),
                listening: Mutex::new(BTreeMap::new()),
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Installs the Prometheus recorder, so the metrics of this process are kept from now on, and
/// returns what `GET /metrics` would answer. For a program that serves the metrics itself.
pub fn render() -> Result<String, String> {
    Ok(telemetry()?.handle.render())
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` (installing the recorder), in the
/// background; the address bound (port 0 picks one). Serving an address this process already
/// serves returns at once, so several workers in one process can share one listener.
pub async fn serve(addr: SocketAddr) -> Result<SocketAddr, String> {
    let telemetry = telemetry()?;
    if let Some(bound) = lock(&telemetry.listening).get(&addr) {
        return Ok(*bound);
    }
    if !addr.ip().is_loopback() {
        tracing::info!(%addr, "the metrics listener is reachable from other machines");
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen for metrics on {addr}: {e}"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("cannot listen for metrics on {addr}: {e}"))?;
    lock(&telemetry.listening).insert(addr, bound);
    lock(&telemetry.listening).insert(bound, bound);
    let app = Router::new()
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readiness_page))
        .with_state(telemetry);
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            tracing::error!(%err, "the metrics listener stopped");
        }
    });
    tracing::info!(addr = %bound, "serving /metrics, /healthz and /readyz");
    Ok(bound)
}

/// Measures the queues of `backend` (depth and oldest waiting message of each task topic) at
/// every scrape of `/metrics`. The generated worker binaries do this for their backend.
pub fn watch_queues(backend: Arc<dyn Inspect>) -> Result<(), String> {
    let telemetry = telemetry()?;
    let mut queues = lock(&telemetry.queues);
    if !queues.iter().any(|q| Arc::ptr_eq(q, &backend)) {
        queues.push(backend);
    }
    Ok(())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

async fn metrics_page(State(telemetry): State<&'static Telemetry>) -> Response {
    let queues: Vec<_> = lock(&telemetry.queues).clone();
    for backend in queues {
        // A slow backend must not hold the scrape past Prometheus's own timeout.
        let since = crate::time::now_ms() - 60_000;
        let measured = tokio::time::timeout(Duration::from_secs(2), async {
            let services = backend.services(since).await?;
            let workflows = backend.queue(&Topic::Workflows).await?;
            Ok::<_, crate::backend::BackendError>((services, workflows))
        });
        match measured.await {
            Ok(Ok((services, workflows))) => {
                record::queues(&services);
                if let Some(depth) = workflows {
                    record::queue(&Topic::Workflows.name(), &depth);
                }
            }
            Ok(Err(err)) => tracing::debug!(%err, "cannot measure the queues"),
            Err(_) => tracing::debug!("measuring the queues took over 2 s; skipped"),
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        telemetry.handle.render(),
    )
        .into_response()
}

async fn readiness_page(State(telemetry): State<&'static Telemetry>) -> Response {
    let components = lock(&telemetry.components);
    let mut body = String::new();
    let mut ready = !components.is_empty();
    if components.is_empty() {
        body.push_str("no worker is running in this process\n");
    }
    for (name, state) in components.values() {
        let state = Readiness::from_u8(state.load(Ordering::Relaxed));
        ready &= state == Readiness::Ready;
        body.push_str(&format!("{name}: {}\n", state.describe()));
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body).into_response()
}

/// Where a component stands, as `/readyz` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Not connected to its backend yet.
    Starting = 0,
    /// Connected and taking work.
    Ready = 1,
    /// Its last call to the backend failed; it is trying again.
    Unavailable = 2,
    /// Shutting down.
    Stopping = 3,
}

impl Readiness {
    fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::Ready,
            2 => Self::Unavailable,
            3 => Self::Stopping,
            _ => Self::Starting,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Ready => "ready",
            Self::Unavailable => "the backend is unavailable",
            Self::Stopping => "stopping",
        }
    }
}

/// A component's entry in `/readyz` (the workers register their own); removed when dropped.
/// `/readyz` answers `200` when every entry is [`Readiness::Ready`].
#[derive(Debug)]
pub struct ReadyFlag {
    key: Option<u64>,
    state: Arc<AtomicU8>,
}

impl ReadyFlag {
    /// An entry named `name`, [`Readiness::Starting`]; installs the recorder.
    pub fn register(name: impl Into<String>) -> Result<Self, String> {
        let telemetry = telemetry()?;
        let state = Arc::new(AtomicU8::new(Readiness::Starting as u8));
        let key = telemetry.next.fetch_add(1, Ordering::Relaxed);
        lock(&telemetry.components).insert(key, (name.into(), state.clone()));
        Ok(Self {
            key: Some(key),
            state,
        })
    }

    /// An entry when `served`, otherwise one that reports nowhere (and installs nothing).
    pub(crate) fn register_if(name: String, served: bool) -> Self {
        match served.then(|| Self::register(name)) {
            Some(Ok(flag)) => flag,
            _ => Self {
                key: None,
                state: Arc::new(AtomicU8::new(Readiness::Starting as u8)),
            },
        }
    }

    /// Sets where the component stands.
    pub fn set(&self, readiness: Readiness) {
        self.state.store(readiness as u8, Ordering::Relaxed);
    }
}

impl Drop for ReadyFlag {
    fn drop(&mut self) {
        if let (Some(key), Ok(telemetry)) = (self.key, telemetry()) {
            lock(&telemetry.components).remove(&key);
        }
    }
}
