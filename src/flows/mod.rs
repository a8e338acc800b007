//! `codegen flows`: see and steer workflow instances on any backend.
//!
//! Every command opens the backend named by `--backend` (or `CODEGEN_BACKEND`), acts through
//! [`Client`], and prints for people, or JSON for scripts with `--json`. Changes are recorded in
//! the instance's history as done by `cli:<user>@<host>`.

mod commands;
pub(crate) mod text;

use std::process::ExitCode;

use clap::{Args, Subcommand};
use codegen_runtime::backend::{Backend, BackendError, BackendUrl};
use codegen_runtime::{Client, ClientError};

pub use commands::parse_time;

/// The options every `flows` command takes.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0 success; 1 the backend failed or cannot be reached; 2 a bad flag, URL, id or JSON value (the message says which)."
)]
pub struct FlowsArgs {
    /// The backend: sqlite://PATH, or
    /// postgres://USER:PASSWORD@HOST:PORT/DB?pulsar=pulsar://HOST:PORT. Prefer the environment
    /// variable for a URL with a password: other users of the machine can read command lines.
    #[arg(
        long,
        env = "CODEGEN_BACKEND",
        value_name = "URL",
        hide_env_values = true,
        global = true
    )]
    pub backend: Option<String>,
    /// The command.
    #[command(subcommand)]
    pub command: FlowsCommand,
}

/// A `flows` command.
#[derive(Debug, Subcommand)]
pub enum FlowsCommand {
    /// List instances, newest first, a page at a time.
    List(commands::ListArgs),
    /// Show one instance: status, input and output, what it waits on, its children.
    Show(commands::ShowArgs),
    /// Show an instance's history as a timeline, or as JSON for the replay harness.
    History(commands::HistoryArgs),
    /// Start an instance of a workflow.
    Start(commands::StartArgs),
    /// Send a signal to a running instance.
    Signal(commands::SignalArgs),
    /// Read an instance's queries: the answers its worker recorded when it last replayed it.
    Query(commands::QueryArgs),
    /// Resolve a completion token a workflow handed out (a payment confirmed, a link
    /// followed), once: a second completion is refused.
    Complete(commands::CompleteArgs),
    /// Cancel a running instance, its children and its timers.
    Cancel(commands::CancelArgs),
    /// Replay a parked instance again, after fixed code was deployed.
    Resume(commands::ResumeArgs),
    /// Delete an instance that has ended, with its history, now rather than when its
    /// retention runs out.
    Purge(commands::PurgeArgs),
    /// List dead tasks: tasks that failed for good, and messages that could not be read.
    Dead(commands::DeadArgs),
    /// Run dead tasks again: one by id, or all of a service.
    Retry(commands::RetryArgs),
    /// Start workflows on a cron expression or an interval: create, list, pause, resume,
    /// delete.
    Schedule(commands::ScheduleArgs),
    /// Each service's queue, oldest waiting task, and attempts per minute.
    Services(commands::ServicesArgs),
    /// Serve the web console: instances, timelines, dead tasks, services, and actions that
    /// need its token. Listens on 127.0.0.1 unless told otherwise; runs until Ctrl-C or SIGTERM.
    Serve(crate::console::ServeArgs),
}

/// A failure of a `flows` command: the line to print and the exit status.
#[derive(Debug)]
pub struct Failure {
    /// What went wrong and what to do.
    pub message: String,
    /// 2 for what the user gave, 1 for what the backend did.
    pub status: u8,
}

impl Failure {
    /// Something the user gave is wrong (exit status 2).
    pub fn input(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            status: 2,
        }
    }

    /// The backend failed (exit status 1).
    pub fn backend(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            status: 1,
        }
    }
}

impl From<ClientError> for Failure {
    fn from(err: ClientError) -> Self {
        match err {
            ClientError::Backend(err) => err.into(),
            ClientError::UnknownInstance(_)
            | ClientError::UnknownDeadTask(_)
            | ClientError::DuplicateStart { .. }
            | ClientError::InvalidToken(_)
            | ClientError::AlreadyCompleted { .. }
            | ClientError::TooLarge(_)
            | ClientError::InvalidSchedule(_)
            | ClientError::UnknownSchedule(_)
            | ClientError::NotEnded { .. }
            | ClientError::Ended { .. } => Self::input(err.to_string()),
            other => Self::backend(other.to_string()),
        }
    }
}

impl From<BackendError> for Failure {
    fn from(err: BackendError) -> Self {
        match err {
            BackendError::Invalid(message) => Self::input(message),
            other => Self::backend(other.to_string()),
        }
    }
}

/// Runs a `flows` command; its exit status.
pub fn run(args: FlowsArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(failure.status)
        }
    }
}

async fn dispatch(args: FlowsArgs) -> Result<(), Failure> {
    let client = connect(args.backend.as_deref()).await?;
    let client = client.acting_as(actor());
    match args.command {
        FlowsCommand::List(a) => commands::list(&client, a).await,
        FlowsCommand::Show(a) => commands::show(&client, a).await,
        FlowsCommand::History(a) => commands::history(&client, a).await,
        FlowsCommand::Start(a) => commands::start(&client, a).await,
        FlowsCommand::Signal(a) => commands::signal(&client, a).await,
        FlowsCommand::Query(a) => commands::query(&client, a).await,
        FlowsCommand::Complete(a) => commands::complete(&client, a).await,
        FlowsCommand::Schedule(a) => commands::schedule(&client, a).await,
        FlowsCommand::Purge(a) => commands::purge(&client, a).await,
        FlowsCommand::Cancel(a) => commands::cancel(&client, a).await,
        FlowsCommand::Resume(a) => commands::resume(&client, a).await,
        FlowsCommand::Dead(a) => commands::dead(&client, a).await,
        FlowsCommand::Retry(a) => commands::retry(&client, a).await,
        FlowsCommand::Services(a) => commands::services(&client, a).await,
        // Each action of the console names its own actor (`console:<client address>`).
        FlowsCommand::Serve(a) => crate::console::serve(client, a).await,
    }
}

/// Opens the backend a URL names, refusing a SQLite file that does not exist (opening would
/// create an empty one, and a mistyped path would then show no instances).
pub async fn connect(url: Option<&str>) -> Result<Client<Backend>, Failure> {
    let Some(url) = url else {
        return Err(Failure::input(
            "no backend: pass --backend sqlite://PATH (or postgres://...?pulsar=...), or set CODEGEN_BACKEND",
        ));
    };
    let parsed = BackendUrl::parse(url).map_err(Failure::input)?;
    if let BackendUrl::Sqlite(path) = &parsed
        && !std::path::Path::new(path).exists()
    {
        return Err(Failure::input(format!(
            "backend {}: no such database file; check the path (workers create it when they first start)",
            parsed.display()
        )));
    }
    let backend = Backend::open_parsed(&parsed)
        .await
        .map_err(|err| match err {
            BackendError::Invalid(message) => Failure::input(format!(
                "backend {}: {}",
                parsed.display(),
                message.replace(
                    "build with the codegen-runtime cargo feature `pulsar`",
                    "install codegen with `--features pulsar`"
                )
            )),
            other => Failure::backend(format!("backend {}: {other}", parsed.display())),
        })?;
    Ok(Client::new(std::sync::Arc::new(backend)))
}

/// Who acts, as recorded in histories: `cli:<user>@<host>`.
fn actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("cli:{user}@{host}")
}
