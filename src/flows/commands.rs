//! The `flows` commands: their flags, and what each does.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use clap::{Args, Subcommand};
use codegen_runtime::backend::{Answer, Backend, Cursor, DeadFilter, InstanceFilter, Status};
use codegen_runtime::schedule::{CatchUp, Overlap, ScheduleSpec, Timing};
use codegen_runtime::{Client, StartOptions};
use serde::Serialize;
use serde_json::Value;

use super::Failure;
use super::text;

/// The most a bulk retry takes on at once.
const BULK_RETRY_MAX: usize = 10_000;

/// `flows list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only instances of this workflow.
    #[arg(long, value_name = "NAME")]
    workflow: Option<String>,
    /// Only instances with this status.
    #[arg(long, value_parser = parse_status)]
    status: Option<Status>,
    /// Only instances whose id starts with this.
    #[arg(long, value_name = "PREFIX")]
    id: Option<String>,
    /// Only instances started at or after this time: RFC 3339 (2026-12-01T08:00:00Z) or an age
    /// (90m, 2h, 7d).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    from: Option<i64>,
    /// Only instances started before this time (as --from).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    to: Option<i64>,
    /// Instances per page.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
    limit: u32,
    /// Continue after this cursor (the `next` a page printed).
    #[arg(long, value_name = "CURSOR", value_parser = parse_cursor)]
    after: Option<Cursor>,
    /// Print the page as JSON: `{"instances": [...], "next": CURSOR or null}`.
    #[arg(long)]
    json: bool,
}

/// `flows show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The instance id.
    id: String,
    /// Print as JSON (the instance, its children, what it waits on and its timeline).
    #[arg(long)]
    json: bool,
}

/// `flows history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The instance id.
    id: String,
    /// Print the history as JSON, the format the replay harness reads (`RecordedHistory`).
    #[arg(long)]
    json: bool,
}

/// `flows start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// The workflow name (its newest version runs).
    name: String,
    /// The input, as JSON.
    #[arg(long, value_name = "JSON", default_value = "null", value_parser = parse_json)]
    input: Value,
    /// The instance id [default: a new UUID]. Starting again with the same id and input does
    /// nothing.
    #[arg(long)]
    id: Option<String>,
    /// How long each run may take (90s, 2h, 30d): past it the instance fails, saying so.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    run_timeout: Option<Duration>,
}

/// `flows purge`.
#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// The instance id; it must have ended.
    id: String,
}

/// `flows complete`.
#[derive(Debug, Args)]
pub struct CompleteArgs {
    /// The completion token the workflow handed out; `-` reads it from standard input.
    token: String,
    /// The value to complete it with, as JSON.
    #[arg(value_name = "JSON", default_value = "null", value_parser = parse_json, conflicts_with = "error")]
    value: Value,
    /// Fail the completion with this message instead: the workflow gets it as an error.
    #[arg(long, value_name = "MESSAGE")]
    error: Option<String>,
}

/// `flows signal`.
#[derive(Debug, Args)]
pub struct SignalArgs {
    /// The instance id.
    id: String,
    /// The signal name.
    name: String,
    /// The signal's value, as JSON.
    #[arg(value_name = "JSON", default_value = "null", value_parser = parse_json)]
    payload: Value,
}

/// `flows query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The instance id.
    id: String,
    /// The query; its answer is printed as JSON. Without it, every query is listed.
    name: Option<String>,
    /// Print every answer as JSON, with the event count and time they were recorded at.
    #[arg(long, conflicts_with = "name")]
    json: bool,
}

/// `flows cancel`.
#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The instance id.
    id: String,
    /// Why, recorded in the history.
    #[arg(long, value_name = "TEXT")]
    reason: String,
}

/// `flows resume`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The instance id.
    id: String,
}

/// `flows dead`.
#[derive(Debug, Args)]
pub struct DeadArgs {
    /// Only tasks of this service.
    #[arg(long)]
    service: Option<String>,
    /// Only tasks of this instance.
    #[arg(long, value_name = "ID")]
    instance: Option<String>,
    /// Only tasks that died at or after this time (RFC 3339 or an age, as 2h).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    since: Option<i64>,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10000))]
    limit: u32,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

/// `flows retry`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["dead_id", "service"]))]
pub struct RetryArgs {
    /// The dead task's id (from `flows dead`).
    dead_id: Option<String>,
    /// Retry every dead task of this service instead (asks to confirm).
    #[arg(long, conflicts_with = "dead_id")]
    service: Option<String>,
    /// With --service: only tasks that died at or after this time (RFC 3339 or an age).
    #[arg(long, value_name = "TIME", value_parser = parse_time, requires = "service")]
    since: Option<i64>,
    /// Do not ask to confirm a bulk retry.
    #[arg(long, short = 'y')]
    yes: bool,
}

/// `flows schedule`.
#[derive(Debug, Args)]
pub struct ScheduleArgs {
    /// What to do.
    #[command(subcommand)]
    command: ScheduleCommand,
}

/// A `flows schedule` command.
#[derive(Debug, Subcommand)]
pub(super) enum ScheduleCommand {
    /// Create a schedule: a workflow started at each tick, as `<name>@<tick>`. Creating it
    /// again with the same settings does nothing.
    Create(ScheduleCreateArgs),
    /// List the schedules: what each starts, when it next ticks, what it started and skipped.
    List {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Pause a schedule: it starts nothing until resumed.
    Pause {
        /// The schedule's name.
        name: String,
    },
    /// Resume a paused schedule from now; ticks missed while paused are not caught up.
    Resume {
        /// The schedule's name.
        name: String,
    },
    /// Delete a schedule; the instances it started run on.
    Delete {
        /// The schedule's name.
        name: String,
    },
}

/// `flows schedule create`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("timing").required(true).args(["every", "cron"])))]
pub(super) struct ScheduleCreateArgs {
    /// The schedule's name.
    name: String,
    /// The workflow it starts (its newest version).
    #[arg(long)]
    workflow: String,
    /// The input of every instance, as JSON.
    #[arg(long, value_name = "JSON", default_value = "null", value_parser = parse_json)]
    input: Value,
    /// Tick at every multiple of this interval since the Unix epoch (1h: on the hour, UTC).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    every: Option<Duration>,
    /// Tick on this cron expression: five fields (`0 9 * * MON-FRI`) or six with seconds.
    #[arg(long, value_name = "EXPRESSION")]
    cron: Option<String>,
    /// The time zone of `--cron` (an IANA name).
    #[arg(long, value_name = "ZONE", default_value = "UTC", requires = "cron")]
    time_zone: String,
    /// A tick while the last instance still runs: skip it, buffer-one (start it when that one
    /// ends), or allow (run both).
    #[arg(long, default_value = "skip", value_parser = parse_overlap)]
    overlap: Overlap,
    /// Ticks missed while no worker ran: latest (start one, for the latest), skip, or all (each,
    /// up to --catch-up-max).
    #[arg(long, default_value = "latest", value_parser = ["latest", "skip", "all"])]
    catch_up: String,
    /// With `--catch-up all`: the most missed ticks started.
    #[arg(long, default_value_t = 10, value_name = "N")]
    catch_up_max: u32,
}

fn parse_overlap(s: &str) -> Result<Overlap, String> {
    match s {
        "skip" => Ok(Overlap::Skip),
        "buffer-one" => Ok(Overlap::BufferOne),
        "allow" => Ok(Overlap::Allow),
        _ => Err(format!(
            "`{s}` is not an overlap policy: use skip, buffer-one or allow"
        )),
    }
}

pub(super) async fn schedule(client: &Client<Backend>, a: ScheduleArgs) -> Result<(), Failure> {
    match a.command {
        ScheduleCommand::Create(c) => {
            let timing = match (c.every, c.cron) {
                (Some(every), _) => Timing::Every {
                    every_ms: u64::try_from(every.as_millis()).unwrap_or(u64::MAX),
                },
                (None, Some(expression)) => Timing::Cron {
                    expression,
                    time_zone: c.time_zone,
                },
                (None, None) => return Err(Failure::input("give --every or --cron")),
            };
            let catch_up = match c.catch_up.as_str() {
                "skip" => CatchUp::Skip,
                "all" => CatchUp::All {
                    max: c.catch_up_max,
                },
                _ => CatchUp::Latest,
            };
            let spec = ScheduleSpec {
                workflow: c.workflow,
                input: c.input,
                timing,
                overlap: c.overlap,
                catch_up,
            };
            client.create_schedule(&c.name, &spec).await?;
            eprintln!(
                "schedule `{}` starts `{}` at each tick, as `{}@<tick>`; a workflow worker runs it",
                c.name, spec.workflow, c.name
            );
        }
        ScheduleCommand::List { json } => {
            let schedules = client.schedules().await?;
            if json {
                return print_json(&schedules);
            }
            print!("{}", text::schedules(&schedules, text::now()));
        }
        ScheduleCommand::Pause { name } => {
            client.pause_schedule(&name).await?;
            eprintln!("schedule `{name}` pauses: it starts nothing until resumed");
        }
        ScheduleCommand::Resume { name } => {
            client.resume_schedule(&name).await?;
            eprintln!("schedule `{name}` ticks again from now");
        }
        ScheduleCommand::Delete { name } => {
            client.delete_schedule(&name).await?;
            eprintln!("schedule `{name}` ends; the instances it started run on");
        }
    }
    Ok(())
}

/// `flows services`.
#[derive(Debug, Args)]
pub struct ServicesArgs {
    /// The window of the per-minute figures.
    #[arg(long, default_value = "5m", value_parser = parse_window)]
    window: Duration,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

fn parse_window(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .ok()
        .filter(|d| d.as_secs() >= 60 && d.as_secs() <= 86_400)
        .ok_or_else(|| format!("`{s}` is not a window between 1m and 24h (as 5m, 1h)"))
}

fn parse_status(s: &str) -> Result<Status, String> {
    Status::parse(s).ok_or_else(|| {
        format!("`{s}` is not a status: use running, parked, failed, completed or cancelled")
    })
}

fn parse_cursor(s: &str) -> Result<Cursor, String> {
    s.parse()
}

fn parse_json(s: &str) -> Result<Value, String> {
    serde_json::from_str(s).map_err(|e| {
        format!(
            "`{s}` is not JSON ({e}); quote strings as JSON, as '\"text\"', and objects as '{{\"key\": 1}}'"
        )
    })
}

/// A duration given on the command line: `90s`, `15m`, `2h`, `30d`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|_| format!("`{s}` is not a duration: give one like 90s, 15m, 2h or 30d"))
}

/// A time given on the command line: RFC 3339, or an age before now (`90m`, `2h`, `7d`); in
/// milliseconds since the Unix epoch.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(at.timestamp_millis());
    }
    match humantime::parse_duration(s) {
        Ok(age) => {
            let age = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
            Ok(chrono::Utc::now().timestamp_millis().saturating_sub(age))
        }
        Err(_) => Err(format!(
            "`{s}` is not a time: give RFC 3339 (2026-12-01T08:00:00Z) or an age (90m, 2h, 7d)"
        )),
    }
}

fn print_json<T: Serialize>(value: &T) -> Result<(), Failure> {
    let json = serde_json::to_string_pretty(value)
        .map_err(|e| Failure::backend(format!("cannot encode the output: {e}")))?;
    println!("{json}");
    Ok(())
}

pub(super) async fn list(client: &Client<Backend>, a: ListArgs) -> Result<(), Failure> {
    let filter = InstanceFilter {
        name: a.workflow,
        status: a.status,
        id_prefix: a.id,
        started_from: a.from,
        started_before: a.to,
    };
    let page = client
        .instances(&filter, a.after.as_ref(), a.limit as usize)
        .await?;
    if a.json {
        return print_json(&page);
    }
    print!("{}", text::instances(&page, text::now()));
    Ok(())
}

pub(super) async fn show(client: &Client<Backend>, a: ShowArgs) -> Result<(), Failure> {
    let detail = client.detail(&a.id).await?;
    if a.json {
        return print_json(&detail);
    }
    print!("{}", text::detail(&detail, text::now()));
    Ok(())
}

pub(super) async fn history(client: &Client<Backend>, a: HistoryArgs) -> Result<(), Failure> {
    if a.json {
        return print_json(&client.history(&a.id).await?);
    }
    let detail = client.detail(&a.id).await?;
    print!("{}", text::timeline(&detail));
    Ok(())
}

pub(super) async fn start(client: &Client<Backend>, a: StartArgs) -> Result<(), Failure> {
    let options = StartOptions {
        run_timeout: a.run_timeout,
    };
    let id = client
        .start_with(&a.name, a.id.as_deref(), &a.input, &options)
        .await?;
    println!("{id}");
    eprintln!(
        "started `{}` as `{id}`; a workflow worker that has it runs it (see `codegen flows show {id}`)",
        a.name
    );
    Ok(())
}

pub(super) async fn signal(client: &Client<Backend>, a: SignalArgs) -> Result<(), Failure> {
    client.signal(&a.id, &a.name, &a.payload).await?;
    eprintln!("sent signal `{}` to `{}`", a.name, a.id);
    Ok(())
}

pub(super) async fn query(client: &Client<Backend>, a: QueryArgs) -> Result<(), Failure> {
    let events = client.status(&a.id).await?.events;
    let Some(recorded) = client.query_answers(&a.id).await? else {
        return Err(Failure::input(format!(
            "instance `{}` has no recorded queries: its workflow registers none (WorkflowContext::on_query), or no worker has run it yet",
            a.id
        )));
    };
    if recorded.events < events {
        eprintln!(
            "note: answered as of event {} of {events}: a worker has not replayed the newest events yet",
            recorded.events
        );
    }
    if a.json {
        return print_json(&recorded);
    }
    let Some(name) = a.name else {
        print!("{}", text::queries(&recorded, events, text::now()));
        return Ok(());
    };
    match recorded.answers.get(&name) {
        Some(Answer::Value(value)) => print_json(value),
        Some(Answer::Error(error)) => Err(Failure::backend(format!(
            "query `{name}` of instance `{}` has no answer: {error}",
            a.id
        ))),
        None => {
            let known: Vec<&str> = recorded.answers.keys().map(String::as_str).collect();
            Err(Failure::input(format!(
                "instance `{}` has no query `{name}`; it has: {}",
                a.id,
                known.join(", ")
            )))
        }
    }
}

pub(super) async fn purge(client: &Client<Backend>, a: PurgeArgs) -> Result<(), Failure> {
    client.purge(&a.id).await?;
    eprintln!(
        "deleted `{}` with its history, messages, dead letters and attempts",
        a.id
    );
    Ok(())
}

pub(super) async fn complete(client: &Client<Backend>, a: CompleteArgs) -> Result<(), Failure> {
    let token = if a.token == "-" {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map_err(|e| {
            Failure::input(format!("cannot read the token from standard input: {e}"))
        })?;
        line.trim().to_owned()
    } else {
        a.token
    };
    match &a.error {
        Some(message) => client.fail_completion(&token, message).await?,
        None => client.complete(&token, &a.value).await?,
    }
    eprintln!(
        "completed; the workflow waiting on it goes on {}",
        if a.error.is_some() {
            "with the error"
        } else {
            "with the value"
        }
    );
    Ok(())
}

pub(super) async fn cancel(client: &Client<Backend>, a: CancelArgs) -> Result<(), Failure> {
    client.cancel(&a.id, &a.reason).await?;
    eprintln!(
        "asked `{}` to cancel; its children and timers go with it",
        a.id
    );
    Ok(())
}

pub(super) async fn resume(client: &Client<Backend>, a: ResumeArgs) -> Result<(), Failure> {
    client.resume(&a.id).await?;
    eprintln!("`{}` replays again", a.id);
    Ok(())
}

pub(super) async fn dead(client: &Client<Backend>, a: DeadArgs) -> Result<(), Failure> {
    let filter = DeadFilter {
        service: a.service,
        instance: a.instance,
        since: a.since,
    };
    let dead = client.dead(&filter, a.limit as usize).await?;
    if a.json {
        return print_json(&dead);
    }
    print!("{}", text::dead(&dead, text::now()));
    Ok(())
}

pub(super) async fn retry(client: &Client<Backend>, a: RetryArgs) -> Result<(), Failure> {
    if let Some(id) = a.dead_id {
        client.retry_dead(&id).await?;
        eprintln!("retrying dead task `{id}`");
        return Ok(());
    }
    let Some(service) = a.service else {
        return Err(Failure::input(
            "name a dead task, or pass --service to retry all of a service",
        ));
    };
    let filter = DeadFilter {
        service: Some(service.clone()),
        instance: None,
        since: a.since,
    };
    let dead = client.dead(&filter, BULK_RETRY_MAX).await?;
    if dead.is_empty() {
        eprintln!("no dead tasks of service `{service}` to retry");
        return Ok(());
    }
    let what = format!(
        "{} dead task{} of service `{service}`{}",
        dead.len(),
        if dead.len() == 1 { "" } else { "s" },
        a.since
            .map(|t| format!(" that died since {}", text::time(t)))
            .unwrap_or_default()
    );
    if !a.yes && !confirm(&format!("Retry {what}?"))? {
        eprintln!("nothing retried");
        return Ok(());
    }
    let mut retried = 0;
    for task in &dead {
        match client.retry_dead(&task.letter.id).await {
            Ok(()) => retried += 1,
            // Retried meanwhile by someone else: not an error of this run.
            Err(codegen_runtime::ClientError::UnknownDeadTask(_)) => {}
            Err(err) => {
                eprintln!("retried {retried} of {what} before an error");
                return Err(err.into());
            }
        }
    }
    eprintln!("retried {retried} of {what}");
    Ok(())
}

pub(super) async fn services(client: &Client<Backend>, a: ServicesArgs) -> Result<(), Failure> {
    let services = client.services(a.window).await?;
    if a.json {
        return print_json(&services);
    }
    print!("{}", text::services(&services, a.window, text::now()));
    Ok(())
}

/// Asks on the terminal; refuses without one (a script passes --yes).
fn confirm(question: &str) -> Result<bool, Failure> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(Failure::input(format!(
            "{question} Not asked: the input is not a terminal; pass --yes to confirm"
        )));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Failure::input(format!("cannot read the answer: {e}")))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc_3339_or_ages() {
        assert_eq!(parse_time("2026-12-01T08:00:00Z"), Ok(1_796_112_000_000));
        let two_hours_ago = parse_time("2h").unwrap();
        let now = chrono::Utc::now().timestamp_millis();
        assert!((now - two_hours_ago - 7_200_000).abs() < 5_000);
        assert!(parse_time("yesterday").unwrap_err().contains("RFC 3339"));
    }

    #[test]
    fn json_errors_say_how_to_quote() {
        assert_eq!(parse_json("{\"a\": 1}"), Ok(serde_json::json!({"a": 1})));
        assert!(parse_json("ada").unwrap_err().contains("'\"text\"'"));
    }

    #[test]
    fn unknown_statuses_list_the_known_ones() {
        assert_eq!(parse_status("parked"), Ok(Status::Parked));
        assert!(
            parse_status("done")
                .unwrap_err()
                .contains("running, parked")
        );
    }
}
