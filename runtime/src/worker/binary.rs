//! The `main` of every generated `<name>-worker` binary: flags and environment, the backend,
//! the HTTP client, the service worker, and a graceful stop on SIGTERM or Ctrl-C.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Arg, ArgAction, Command};
use tokio::sync::watch;

use super::{Handlers, ServiceWorker, ServiceWorkerOptions};
use crate::backend::Backend;
use crate::http::{HttpClient, SecurityScheme};

/// What a generated crate tells its worker binary.
#[derive(Debug, Clone, Copy)]
pub struct ServiceBinary {
    /// The service name (`Task::SERVICE` of its operations).
    pub service: &'static str,
    /// The API title, for `--help`.
    pub title: &'static str,
    /// The first server URL of the API description, used when no base URL is given.
    pub default_base_url: Option<&'static str>,
    /// The security schemes of the API description: their credentials are read from the
    /// environment variables [`SecurityScheme::env_vars`] names.
    pub security: &'static [SecurityScheme],
    /// Registers a handler per operation, each calling the API through the client.
    pub register: fn(&mut Handlers, &HttpClient),
    /// Registers a handler per gRPC operation, each calling the server by the settings given
    /// (`--grpc-endpoint`, `--grpc-max-stream-messages`); `None` for an API without gRPC
    /// operations.
    pub register_grpc: Option<fn(&mut Handlers, &GrpcSettings)>,
}

/// The worker's gRPC settings, from its flags and environment.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GrpcSettings {
    /// Where the gRPC methods are served (`http://HOST:PORT`).
    pub endpoint: String,
    /// The most messages a server-streaming call may answer with; more fail the task.
    pub max_stream_messages: usize,
}

impl GrpcSettings {
    /// The bound on the messages of a server-streaming call unless one is set.
    pub const DEFAULT_MAX_STREAM_MESSAGES: usize = 10_000;

    /// The settings of a worker calling `endpoint`, with the default bound.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            max_stream_messages: Self::DEFAULT_MAX_STREAM_MESSAGES,
        }
    }
}

/// The prefix of the environment variables of `service`'s worker (`PET_STORE` for `pet-store`).
pub(crate) fn env_prefix(service: &str) -> String {
    service.to_ascii_uppercase().replace('-', "_")
}

/// The `--help` text on credentials: every scheme's environment variables.
fn credentials_help(binary: &ServiceBinary) -> String {
    let mut text = String::from(
        "Credentials (environment variables only, so they stay out of process lists; never logged):",
    );
    if binary.security.is_empty() {
        text.push_str(
            "\n  the API description names no security scheme; use --header or --bearer-token",
        );
    }
    for scheme in binary.security {
        text.push_str(&format!("\n  scheme `{}`:", scheme.name));
        for (var, what) in scheme.env_vars(binary.service) {
            text.push_str(&format!("\n    {var:<40} {what}"));
        }
    }
    text
}

pub use crate::backend::BackendUrl;

fn command(binary: &ServiceBinary, prefix: &str) -> Command {
    let env = |name: &str| format!("{prefix}_{name}");
    let base_url = Arg::new("base_url")
        .long("base-url")
        .value_name("URL")
        .env(env("BASE_URL"))
        .help("The URL the API is served at");
    let base_url = match binary.default_base_url {
        Some(url) => base_url.default_value(url),
        None => base_url.required(true),
    };
    let command = Command::new(format!("{}-worker", binary.service.replace('_', "-")));
    let command = match binary.register_grpc {
        Some(_) => command
            .arg(
                Arg::new("grpc_endpoint")
                    .long("grpc-endpoint")
                    .value_name("URL")
                    .env(env("GRPC_ENDPOINT"))
                    .help("Where the gRPC methods are served (http://HOST:PORT); the base URL unless given"),
            )
            .arg(
                Arg::new("grpc_max_stream_messages")
                    .long("grpc-max-stream-messages")
                    .value_name("N")
                    .env(env("GRPC_MAX_STREAM_MESSAGES"))
                    .default_value(GrpcSettings::DEFAULT_MAX_STREAM_MESSAGES.to_string())
                    .value_parser(clap::value_parser!(u64).range(1..))
                    .help("Fails a server-streaming call (permanently) that answers with more messages than this"),
            ),
        None => command,
    };
    command
        .about(format!(
            "Runs the tasks of {} for durable workflows: takes them from the backend, calls the API, records the results",
            binary.title
        ))
        .arg(
            Arg::new("backend")
                .long("backend")
                .value_name("URL")
                .env("CODEGEN_BACKEND")
                .hide_env_values(true)
                .default_value("sqlite://codegen.db")
                .help("Where workflow state and messages are, as for the workflow worker: sqlite://PATH, or postgres://USER:PASSWORD@HOST:PORT/DB?pulsar=pulsar://HOST:PORT"),
        )
        .arg(base_url)
        .arg(
            Arg::new("bearer_token")
                .long("bearer-token")
                .value_name("TOKEN")
                .env(env("BEARER_TOKEN"))
                .hide_env_values(true)
                .help("Sends `Authorization: Bearer TOKEN`"),
        )
        .arg(
            Arg::new("basic_user")
                .long("basic-user")
                .value_name("USER")
                .env(env("BASIC_USER"))
                .requires("basic_password")
                .help("Sends HTTP basic credentials, with --basic-password"),
        )
        .arg(
            Arg::new("basic_password")
                .long("basic-password")
                .value_name("PASSWORD")
                .env(env("BASIC_PASSWORD"))
                .hide_env_values(true)
                .requires("basic_user")
                .help("The password for --basic-user"),
        )
        .arg(
            Arg::new("header")
                .long("header")
                .value_name("NAME:VALUE")
                .action(ArgAction::Append)
                .help("Sends this header on every request (repeat for more); e.g. an API key"),
        )
        .arg(
            Arg::new("media_types")
                .long("media-type")
                .value_name("TYPE")
                .env(env("MEDIA_TYPES"))
                .value_delimiter(',')
                .action(ArgAction::Append)
                .help("Sends request bodies as TYPE where an operation offers it besides its default (JSON first); repeat or separate with commas"),
        )
        .arg(
            Arg::new("concurrency")
                .long("concurrency")
                .value_name("N")
                .env(env("CONCURRENCY"))
                .default_value("64")
                .value_parser(clap::value_parser!(u16).range(1..))
                .help("Tasks run at once"),
        )
        .arg(
            Arg::new("max_in_flight_global")
                .long("max-in-flight-global")
                .value_name("N")
                .env(env("MAX_IN_FLIGHT_GLOBAL"))
                .value_parser(clap::value_parser!(u32).range(1..))
                .help("Tasks of this service under way at once across every worker of it on the backend (give each the same); the rest wait in the queue, in order"),
        )
        .arg(
            Arg::new("rate")
                .long("rate")
                .value_name("PER_SECOND")
                .env(env("RATE"))
                .value_parser(parse_rate)
                .help("Tasks of this service started per second across every worker of it on the backend (give each the same)"),
        )
        .arg(
            Arg::new("burst")
                .long("burst")
                .value_name("N")
                .env(env("BURST"))
                .requires("rate")
                .value_parser(clap::value_parser!(u32).range(1..))
                .help("Tasks that may start at once under --rate after a quiet spell [default: one second's worth]"),
        )
        .arg(
            Arg::new("timeout")
                .long("timeout")
                .value_name("SECONDS")
                .env(env("TIMEOUT"))
                .default_value("30")
                .value_parser(clap::value_parser!(u64).range(1..))
                .help("Gives up on an HTTP attempt after this long (the task is retried)"),
        )
        .arg(
            Arg::new("metrics_listen")
                .long("metrics-listen")
                .value_name("ADDR")
                .env(env("METRICS_LISTEN"))
                .value_parser(clap::value_parser!(std::net::SocketAddr))
                .help("Serves Prometheus metrics at /metrics, and /healthz and /readyz for probes, on this address (e.g. 127.0.0.1:9464); off unless given"),
        )
        .arg(
            Arg::new("grace")
                .long("grace")
                .value_name("SECONDS")
                .default_value("30")
                .value_parser(clap::value_parser!(u64))
                .help("On SIGTERM, how long to let tasks under way finish; the rest run again elsewhere"),
        )
        .after_help(credentials_help(binary))
}

/// A rate of tasks per second: a positive number.
fn parse_rate(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|r| r.is_finite() && *r > 0.0)
        .ok_or_else(|| {
            format!(
                "`{s}` is not a rate: give tasks per second, a positive number such as 100 or 0.5"
            )
        })
}

/// Parses flags and environment, then runs the service worker until SIGTERM or Ctrl-C.
pub fn run_service_worker(binary: ServiceBinary) -> ExitCode {
    let prefix = env_prefix(binary.service);
    let matches = command(&binary, &prefix).get_matches();
    let name = format!("{}-worker", binary.service.replace('_', "-"));
    let _traces = match crate::telemetry::trace::init(&name) {
        Ok(guard) => guard,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    match run(&binary, &matches) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

fn run(binary: &ServiceBinary, matches: &clap::ArgMatches) -> Result<(), String> {
    let text = |name: &str| matches.get_one::<String>(name).cloned();
    let backend = BackendUrl::parse(&text("backend").unwrap_or_default())?;
    let base_url = text("base_url").ok_or("--base-url is required")?;
    let timeout = Duration::from_secs(*matches.get_one::<u64>("timeout").unwrap_or(&30));
    let mut http = HttpClient::new(base_url.clone())
        .with_timeout(timeout)
        .with_credentials_from_env(binary.service, binary.security)?
        .with_media_types(
            matches
                .get_many::<String>("media_types")
                .into_iter()
                .flatten()
                .cloned(),
        );
    if let Some(token) = text("bearer_token") {
        http = http
            .with_bearer_token(&token)
            .map_err(|e| format!("--bearer-token: {}", e.message()))?;
    }
    if let (Some(user), Some(password)) = (text("basic_user"), text("basic_password")) {
        http = http
            .with_basic_auth(&user, &password)
            .map_err(|e| format!("--basic-user: {}", e.message()))?;
    }
    for header in matches.get_many::<String>("header").into_iter().flatten() {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| format!("--header `{header}`: expected NAME:VALUE"))?;
        http = http
            .with_header(name.trim(), value.trim(), true)
            .map_err(|e| format!("--header `{name}`: {}", e.message()))?;
    }
    let mut handlers = Handlers::new();
    (binary.register)(&mut handlers, &http);
    if let Some(register_grpc) = binary.register_grpc {
        let mut grpc = GrpcSettings::new(text("grpc_endpoint").unwrap_or_else(|| base_url.clone()));
        if let Some(&max) = matches.get_one::<u64>("grpc_max_stream_messages") {
            grpc.max_stream_messages = usize::try_from(max).unwrap_or(usize::MAX);
        }
        register_grpc(&mut handlers, &grpc);
    }
    let limits = crate::backend::FlowLimits {
        max_in_flight: matches.get_one::<u32>("max_in_flight_global").copied(),
        rate_per_second: matches.get_one::<f64>("rate").copied(),
        burst: matches.get_one::<u32>("burst").copied(),
    };
    let options = ServiceWorkerOptions {
        limits,
        concurrency: usize::from(*matches.get_one::<u16>("concurrency").unwrap_or(&64)),
        grace: Duration::from_secs(*matches.get_one::<u64>("grace").unwrap_or(&30)),
        metrics_listen: matches.get_one("metrics_listen").copied(),
        ..ServiceWorkerOptions::default()
    };
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        let shown = backend.display();
        let backend = Backend::open_when_available(&backend, "service")
            .await
            .map_err(|e| e.to_string())?;
        let backend = Arc::new(backend);
        if options.metrics_listen.is_some() {
            crate::telemetry::watch_queues(backend.clone())?;
        }
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("stopping: finishing the tasks under way");
            let _ = stop.send(true);
        });
        let credentials = http.credential_schemes().join(",");
        tracing::info!(service = binary.service, %base_url, backend = %shown, concurrency = options.concurrency, limits = ?options.limits, %credentials, "worker started");
        let worker = ServiceWorker::new(backend, binary.service, handlers, options);
        worker.run(stopped).await.map_err(|e| e.to_string())?;
        tracing::info!("stopped");
        Ok(())
    })
}

/// SIGTERM (from a process manager) or Ctrl-C.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register(_: &mut Handlers, _: &HttpClient) {}

    const BINARY: ServiceBinary = ServiceBinary {
        service: "pet_store",
        title: "Pet Store",
        default_base_url: None,
        security: &[
            SecurityScheme {
                name: "api_key",
                kind: crate::http::SchemeKind::ApiKey {
                    location: crate::http::KeyLocation::Header,
                    name: "X-Api-Key",
                },
            },
            SecurityScheme {
                name: "oauth",
                kind: crate::http::SchemeKind::OAuth2ClientCredentials {
                    token_url: "https://auth.example.com/token",
                },
            },
        ],
        register,
        register_grpc: None,
    };

    #[test]
    fn help_lists_the_credential_variables_of_every_scheme() {
        let help = command(&BINARY, "PET_STORE").render_long_help().to_string();
        for var in [
            "PET_STORE_API_KEY_KEY",
            "PET_STORE_OAUTH_CLIENT_ID",
            "PET_STORE_OAUTH_CLIENT_SECRET",
            "PET_STORE_OAUTH_SCOPES",
            "PET_STORE_MEDIA_TYPES",
        ] {
            assert!(help.contains(var), "{var} missing from:\n{help}");
        }
    }

    #[test]
    fn flags_come_from_the_environment_named_after_the_service() {
        let cmd = command(&BINARY, "PET_STORE");
        let help = cmd.clone().render_long_help().to_string();
        assert!(
            help.contains("PET_STORE_BASE_URL") && help.contains("CODEGEN_BACKEND"),
            "{help}"
        );
        let err = cmd
            .clone()
            .try_get_matches_from(["pet-store-worker"])
            .unwrap_err();
        assert!(err.to_string().contains("--base-url"), "{err}");
        let m = cmd
            .try_get_matches_from(["x", "--base-url", "http://a", "--concurrency", "8"])
            .unwrap();
        assert_eq!(m.get_one::<u16>("concurrency"), Some(&8));
    }

    fn register_grpc(_: &mut Handlers, _: &GrpcSettings) {}

    #[test]
    fn grpc_flags_come_with_grpc_operations_and_bound_streams() {
        let plain = command(&BINARY, "PET_STORE").render_long_help().to_string();
        assert!(!plain.contains("--grpc-"), "{plain}");
        let binary = ServiceBinary {
            register_grpc: Some(register_grpc),
            ..BINARY
        };
        let cmd = command(&binary, "PET_STORE");
        let help = cmd.clone().render_long_help().to_string();
        for part in [
            "PET_STORE_GRPC_ENDPOINT",
            "PET_STORE_GRPC_MAX_STREAM_MESSAGES",
            "[default: 10000]",
        ] {
            assert!(help.contains(part), "{part} missing from:\n{help}");
        }
        let m = cmd
            .clone()
            .try_get_matches_from([
                "x",
                "--base-url",
                "http://a",
                "--grpc-max-stream-messages",
                "5",
            ])
            .unwrap();
        assert_eq!(m.get_one::<u64>("grpc_max_stream_messages"), Some(&5));
        let err = cmd
            .try_get_matches_from([
                "x",
                "--base-url",
                "http://a",
                "--grpc-max-stream-messages",
                "0",
            ])
            .unwrap_err();
        assert!(
            err.to_string().contains("--grpc-max-stream-messages"),
            "{err}"
        );
    }
}
