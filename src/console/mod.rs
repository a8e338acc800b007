//! `codegen flows serve`: the web console of the operators.
//!
//! Server-rendered HTML (askama templates under `templates/console/`), one stylesheet and one
//! small script embedded in the binary, and the timeline of an instance drawn as SVG on the
//! server. Nothing is fetched from elsewhere, so it works on a machine without internet.
//!
//! Reads need nothing; actions (retry, resume, cancel, signal) need the console's token, entered
//! once on the sign-in page and kept in an HttpOnly, SameSite=Strict session cookie; each action
//! form also carries the session's CSRF token, and a POST whose `Origin` or `Sec-Fetch-Site`
//! says it comes from another site is refused. `--read-only` removes the actions. Every action is
//! recorded in the instance's history as done by `console:<client address>`.

mod assets;
mod pages;
mod security;
mod timeline;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use clap::Args;
use codegen_runtime::Client;
use codegen_runtime::backend::Backend;

use crate::flows::Failure;
pub use security::Sessions;

/// The largest request body accepted (action forms are small).
const BODY_LIMIT: usize = 64 * 1024;

/// `flows serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where to listen. Loopback only unless told otherwise: anyone who reaches the address
    /// sees the instances.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8480")]
    pub listen: SocketAddr,
    /// Serve the pages only: no retry, resume, cancel or signal, and no sign-in.
    #[arg(long)]
    pub read_only: bool,
    /// Also serve Prometheus metrics (the queues of every service) at /metrics, and /healthz
    /// and /readyz for probes, on this address; off unless given.
    #[arg(long, value_name = "ADDR:PORT", env = "CODEGEN_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
}

/// What the console's handlers share.
pub struct Console {
    client: Client<Backend>,
    /// The token actions need; `None` when read-only.
    token: Option<String>,
    sessions: Sessions,
    /// The `Host` values accepted (the address it listens on, by name and number).
    hosts: Vec<String>,
}

impl Console {
    /// A console over `client`. `token` is what actions need (`None`: read-only); `listen` is
    /// the address it serves, which requests must name as their `Host`.
    pub fn new(client: Client<Backend>, token: Option<String>, listen: SocketAddr) -> Self {
        let mut hosts = vec![listen.to_string()];
        if listen.ip().is_loopback() {
            let port = listen.port();
            hosts.extend([
                format!("localhost:{port}"),
                format!("127.0.0.1:{port}"),
                format!("[::1]:{port}"),
            ]);
        }
        hosts.dedup();
        Self {
            client,
            token,
            sessions: Sessions::default(),
            hosts,
        }
    }

    fn read_only(&self) -> bool {
        self.token.is_none()
    }
}

/// The console's routes.
pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(pages::home))
        .route("/instances", get(pages::instances))
        .route("/instance", get(pages::instance))
        .route("/instance/live", get(pages::instance_live))
        .route("/instance/signal", post(pages::signal))
        .route("/instance/cancel", post(pages::cancel))
        .route("/instance/resume", post(pages::resume))
        .route("/dead", get(pages::dead))
        .route("/dead/retry", post(pages::retry))
        .route("/services", get(pages::services))
        .route("/signin", get(pages::signin_form).post(pages::signin))
        .route("/signout", post(pages::signout))
        .route("/assets/{name}", get(assets::serve))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(
            console.clone(),
            security::guard,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(console)
}

/// The token actions need: `CODEGEN_CONSOLE_TOKEN`, or a new random one (`true`: generated).
fn token_from_env() -> Result<(String, bool), Failure> {
    match std::env::var("CODEGEN_CONSOLE_TOKEN") {
        Ok(token) if token.chars().count() >= 16 => Ok((token, false)),
        Ok(_) => Err(Failure::input(
            "CODEGEN_CONSOLE_TOKEN is shorter than 16 characters: choose a longer one, or unset it to have one generated",
        )),
        Err(_) => Ok((security::random_hex(24), true)),
    }
}

/// Serves the console until Ctrl-C or SIGTERM.
pub async fn serve(client: Client<Backend>, args: ServeArgs) -> Result<(), Failure> {
    serve_until(client, args, shutdown()).await
}

/// Serves the console until `stop` resolves (a program that embeds it, like the billing demo,
/// decides how long).
pub async fn serve_until(
    client: Client<Backend>,
    args: ServeArgs,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Failure> {
    let token = if args.read_only {
        None
    } else {
        Some(token_from_env()?)
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| Failure::input(format!("cannot listen on {}: {e}", args.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Failure::backend(format!("cannot read the address listened on: {e}")))?;
    let console = Arc::new(Console::new(
        client,
        token.as_ref().map(|(t, _)| t.clone()),
        addr,
    ));
    println!("console: http://{addr}/");
    if addr.ip().is_loopback() {
        println!("listening on {addr}: loopback only, this machine alone can reach it");
    } else {
        println!(
            "warning: listening on {addr}, not loopback: whoever reaches this address sees every instance; put it behind TLS and a firewall"
        );
    }
    match &token {
        None => println!("read-only: no actions (retry, resume, cancel, signal)"),
        Some((token, true)) => println!(
            "token (generated for this run; set CODEGEN_CONSOLE_TOKEN to choose one): {token}"
        ),
        Some((_, false)) => println!("token: from CODEGEN_CONSOLE_TOKEN"),
    }
    let ready = match args.metrics_listen {
        Some(metrics) => Some(serve_metrics(&console.client, metrics).await?),
        None => None,
    };
    let app = router(console).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
        .map_err(|e| Failure::backend(format!("the console stopped: {e}")))?;
    if let Some(ready) = ready {
        ready.abort();
    }
    println!("console stopped");
    Ok(())
}

/// Serves the metrics of `client`'s backend on `addr`, with `/readyz` following whether the
/// backend answers (asked every 10 s); the task that asks.
async fn serve_metrics(
    client: &Client<Backend>,
    addr: SocketAddr,
) -> Result<tokio::task::JoinHandle<()>, Failure> {
    use codegen_runtime::backend::inspect::Inspect;
    use codegen_runtime::telemetry::{self, Readiness, ReadyFlag};

    let bound = telemetry::serve(addr).await.map_err(Failure::input)?;
    println!("metrics: http://{bound}/metrics (and /healthz, /readyz)");
    let backend = client.backend().clone();
    telemetry::watch_queues(backend.clone()).map_err(Failure::backend)?;
    let flag = ReadyFlag::register("console").map_err(Failure::backend)?;
    Ok(tokio::spawn(async move {
        loop {
            let since = chrono::Utc::now().timestamp_millis();
            flag.set(match backend.services(since).await {
                Ok(_) => Readiness::Ready,
                Err(_) => Readiness::Unavailable,
            });
            tokio::time::sleep(std::time::Duration::from_secs(10)).await;
        }
    }))
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
