//! Durable schedules: start a workflow on a cron expression or at a fixed interval.
//!
//! A schedule is itself a workflow instance (of [`SCHEDULE_WORKFLOW`], id `schedule:<name>`)
//! that every workflow worker runs: it sleeps on a durable timer until the next tick, starts
//! that tick's instance as its child under the id `<name>@<tick>` (RFC 3339, UTC), and continues
//! as new whenever nothing it started is still running. Everything that makes workflows
//! durable holds for it: a worker that crashes around a tick leaves the start recorded or not,
//! never twice, and the tick's id is the same whoever starts it, so each tick starts exactly one
//! instance. Pausing, resuming and deleting are signals; operators see a schedule, its timer and
//! what it started like any instance.

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::task::Poll;
use std::time::{Duration, UNIX_EPOCH};

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::workflow::{ChildFuture, SignalFuture, TimerFuture, WorkflowContext, WorkflowError};

/// The name of the built-in workflow that runs schedules; every workflow worker has it.
pub const SCHEDULE_WORKFLOW: &str = "codegen.schedule";

/// The signal that steers a schedule (see [`Control`]).
pub const CONTROL_SIGNAL: &str = "control";

/// How late a tick may be (the worker was down, the schedule was busy) and still count as on
/// time; a later one is a missed tick, which [`CatchUp`] decides about.
pub const ON_TIME: Duration = Duration::from_secs(60);

/// The instance id of the schedule named `name`.
pub fn instance_id(name: &str) -> String {
    format!("schedule:{name}")
}

/// The instance id a schedule gives the instance it starts for `tick` (milliseconds since the
/// Unix epoch): `<name>@<tick as RFC 3339, UTC>`.
pub fn run_id(name: &str, tick: i64) -> String {
    let at = DateTime::<Utc>::from_timestamp_millis(tick).unwrap_or_default();
    format!("{name}@{}", at.format("%Y-%m-%dT%H:%M:%S%.3fZ"))
}

/// What a schedule starts, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleSpec {
    /// The workflow it starts (its newest version).
    pub workflow: String,
    /// The input of every instance it starts.
    #[serde(default)]
    pub input: Value,
    /// When.
    pub timing: Timing,
    /// What a tick does while the instance of an earlier one still runs.
    #[serde(default)]
    pub overlap: Overlap,
    /// What happens to ticks missed while no worker ran.
    #[serde(default)]
    pub catch_up: CatchUp,
}

/// When a schedule ticks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Timing {
    /// At every multiple of the interval since the Unix epoch (every hour: on the hour, UTC).
    Every {
        /// The interval, in milliseconds.
        every_ms: u64,
    },
    /// On a cron expression (five fields, minute first, or six with seconds first; `L`, `W`
    /// and `#` as in Vixie cron and Quartz), in a time zone: `0 9 * * MON-FRI` in
    /// `Europe/Paris` is 9:00 in Paris on weekdays, summer and winter.
    Cron {
        /// The expression.
        expression: String,
        /// An IANA time zone name (`Europe/Paris`, `America/New_York`); `UTC` by default.
        #[serde(default = "utc")]
        time_zone: String,
    },
}

fn utc() -> String {
    "UTC".to_owned()
}

/// What a tick does while the instance an earlier tick started still runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Skip the tick.
    #[default]
    Skip,
    /// Start it when the running one ends; of several such ticks, only the latest.
    BufferOne,
    /// Start it anyway: instances of several ticks run at once.
    Allow,
}

/// What happens to ticks that passed more than [`ON_TIME`] ago when the schedule wakes (no
/// worker ran, or the schedule was busy).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CatchUp {
    /// Start one instance, for the latest missed tick, and skip the others.
    #[default]
    Latest,
    /// Skip them all; wait for the next tick.
    Skip,
    /// Start one instance for each, oldest first, up to `max` (the latest `max`).
    All {
        /// The most missed ticks started.
        max: u32,
    },
}

impl ScheduleSpec {
    /// Checks what can be checked before the schedule runs: the workflow name, the interval,
    /// the expression and the time zone.
    pub fn validate(&self) -> Result<(), String> {
        if self.workflow.trim().is_empty() {
            return Err("a schedule needs the name of the workflow it starts".into());
        }
        match &self.timing {
            Timing::Every { every_ms } if *every_ms < 10 => Err(format!(
                "an interval of {every_ms} ms is too short: give at least 10 ms"
            )),
            Timing::Every { .. } => Ok(()),
            Timing::Cron {
                expression,
                time_zone,
            } => {
                parse_cron(expression)?;
                parse_time_zone(time_zone)?;
                Ok(())
            }
        }
    }
}

fn parse_cron(expression: &str) -> Result<croner::Cron, String> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .build()
        .parse(expression)
        .map_err(|e| {
            format!(
                "`{expression}` is not a cron expression ({e}): give five fields (minute hour day-of-month month day-of-week, e.g. `0 9 * * MON-FRI`) or six with seconds first"
            )
        })
}

fn parse_time_zone(name: &str) -> Result<chrono_tz::Tz, String> {
    chrono_tz::Tz::from_str(name).map_err(|_| {
        format!("`{name}` is not a time zone: give an IANA name such as UTC, Europe/Paris or America/New_York")
    })
}

impl Timing {
    /// The first tick strictly after `after` (milliseconds since the Unix epoch).
    pub fn next_after(&self, after: i64) -> Result<i64, String> {
        match self {
            Self::Every { every_ms } => {
                let every = i64::try_from((*every_ms).max(1)).unwrap_or(i64::MAX);
                Ok((after.div_euclid(every) + 1).saturating_mul(every))
            }
            Self::Cron {
                expression,
                time_zone,
            } => {
                let cron = parse_cron(expression)?;
                let tz = parse_time_zone(time_zone)?;
                let start = tz
                    .timestamp_millis_opt(after)
                    .single()
                    .ok_or("a time out of range")?;
                cron.find_next_occurrence(&start, false)
                    .map(|t| t.timestamp_millis())
                    .map_err(|e| format!("`{expression}` has no next time: {e}"))
            }
        }
    }

    /// The latest `limit` ticks in `(after, until]`, oldest first, and how many earlier ones
    /// in that span were left out.
    pub fn due(&self, after: i64, until: i64, limit: usize) -> Result<(Vec<i64>, u64), String> {
        let mut ticks = Vec::new();
        let mut left_out = 0;
        match self {
            Self::Every { every_ms } => {
                let every = i64::try_from((*every_ms).max(1)).unwrap_or(i64::MAX);
                let first = (after.div_euclid(every) + 1).saturating_mul(every);
                if first <= until {
                    let count = (until - first) / every + 1;
                    let kept = count.min(i64::try_from(limit).unwrap_or(i64::MAX));
                    left_out = u64::try_from(count - kept).unwrap_or(0);
                    let last = first + (count - 1) * every;
                    ticks = (0..kept).rev().map(|k| last - k * every).collect();
                }
            }
            Self::Cron { .. } => {
                // Forward from `after`, keeping the latest `limit`: a missed span is as long as
                // the downtime, and each step is cheap.
                let mut at = after;
                loop {
                    let next = self.next_after(at)?;
                    if next > until {
                        break;
                    }
                    ticks.push(next);
                    if ticks.len() > limit {
                        ticks.remove(0);
                        left_out += 1;
                    }
                    at = next;
                }
            }
        }
        Ok((ticks, left_out))
    }
}

/// What an operator asks of a schedule, sent as the [`CONTROL_SIGNAL`] signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Control {
    /// Start nothing until resumed.
    Pause,
    /// Tick again, from now: ticks that passed while paused are not caught up.
    Resume,
    /// End the schedule. The instances it started run on.
    Delete,
}

/// A schedule's state: the input of each of its runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleState {
    /// The schedule's name.
    pub name: String,
    /// What it starts, and when.
    pub spec: ScheduleSpec,
    /// Whether it is paused.
    #[serde(default)]
    pub paused: bool,
    /// Ticks up to this time (milliseconds since the Unix epoch) are handled.
    pub handled_until: i64,
    /// A tick waiting for the running instance to end ([`Overlap::BufferOne`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffered: Option<i64>,
    /// Instances started so far.
    #[serde(default)]
    pub started: u64,
    /// Ticks skipped so far (overlap, catch-up).
    #[serde(default)]
    pub skipped: u64,
}

/// What a deleted schedule reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleEnded {
    /// Instances it started.
    pub started: u64,
    /// Ticks it skipped.
    pub skipped: u64,
}

/// What woke a schedule.
enum Woke {
    Control(Result<Control, WorkflowError>),
    Tick,
    Ended(usize),
}

/// The built-in schedule workflow.
pub(crate) async fn run(
    ctx: WorkflowContext,
    mut state: ScheduleState,
) -> Result<ScheduleEnded, WorkflowError> {
    let mut running: Vec<ChildFuture<Value>> = Vec::new();
    let mut changed = false;
    loop {
        // Start afresh whenever nothing started is still running: the history never holds
        // more than the ticks of one overlap.
        if changed && running.is_empty() {
            return ctx.continue_as_new(&state).await;
        }
        let timer = if state.paused {
            None
        } else {
            let next = state
                .spec
                .timing
                .next_after(state.handled_until)
                .map_err(WorkflowError::new)?;
            Some(ctx.sleep_until(UNIX_EPOCH + millis(next)))
        };
        let control = ctx.signal::<Control>(CONTROL_SIGNAL);
        match first(control, timer, &mut running).await {
            Woke::Control(Ok(Control::Pause)) => state.paused = true,
            Woke::Control(Ok(Control::Resume)) => {
                state.paused = false;
                state.handled_until = state.handled_until.max(now(&ctx));
            }
            Woke::Control(Ok(Control::Delete)) => {
                return Ok(ScheduleEnded {
                    started: state.started,
                    skipped: state.skipped,
                });
            }
            // A signal that does not decode changes nothing.
            Woke::Control(Err(_)) => continue,
            Woke::Tick => tick(&ctx, &mut state, &mut running)?,
            Woke::Ended(index) => {
                drop(running.swap_remove(index));
                if let Some(tick) = state.buffered.take() {
                    start(&ctx, &mut state, &mut running, tick);
                }
            }
        }
        changed = true;
    }
}

/// The ticks that are due now, by the catch-up policy, each started or skipped by the overlap
/// policy.
fn tick(
    ctx: &WorkflowContext,
    state: &mut ScheduleState,
    running: &mut Vec<ChildFuture<Value>>,
) -> Result<(), WorkflowError> {
    let now = now(ctx);
    let limit = match state.spec.catch_up {
        CatchUp::All { max } => usize::try_from(max)
            .unwrap_or(usize::MAX)
            .saturating_add(64),
        CatchUp::Latest | CatchUp::Skip => 64,
    };
    let (due, left_out) = state
        .spec
        .timing
        .due(state.handled_until, now, limit)
        .map_err(WorkflowError::new)?;
    state.handled_until = state.handled_until.max(now);
    let on_time_from = now - i64::try_from(ON_TIME.as_millis()).unwrap_or(i64::MAX);
    let due_count = due.len();
    let (missed, on_time): (Vec<i64>, Vec<i64>) = due.into_iter().partition(|t| *t < on_time_from);
    let caught_up: Vec<i64> = match state.spec.catch_up {
        CatchUp::Skip => Vec::new(),
        CatchUp::Latest if on_time.is_empty() => missed.last().copied().into_iter().collect(),
        CatchUp::Latest => Vec::new(),
        CatchUp::All { max } => {
            let max = usize::try_from(max).unwrap_or(usize::MAX);
            missed[missed.len().saturating_sub(max)..].to_vec()
        }
    };
    let fired = caught_up.len() + on_time.len();
    state.skipped += left_out + (due_count - fired) as u64;
    for tick in caught_up.into_iter().chain(on_time) {
        if running.is_empty() || state.spec.overlap == Overlap::Allow {
            start(ctx, state, running, tick);
        } else if state.spec.overlap == Overlap::BufferOne {
            if state.buffered.replace(tick).is_some() {
                state.skipped += 1;
            }
        } else {
            state.skipped += 1;
        }
    }
    Ok(())
}

fn start(
    ctx: &WorkflowContext,
    state: &mut ScheduleState,
    running: &mut Vec<ChildFuture<Value>>,
    tick: i64,
) {
    let id = run_id(&state.name, tick);
    running.push(ctx.child_with_id(&state.spec.workflow, &id, &state.spec.input));
    state.started += 1;
}

/// The first of the control signal, the tick and the end of a running instance, in that
/// order when several are ready.
async fn first(
    mut control: SignalFuture<Control>,
    mut timer: Option<TimerFuture>,
    running: &mut [ChildFuture<Value>],
) -> Woke {
    std::future::poll_fn(move |cx| {
        if let Poll::Ready(signal) = Pin::new(&mut control).poll(cx) {
            return Poll::Ready(Woke::Control(signal));
        }
        if let Some(timer) = timer.as_mut()
            && Pin::new(timer).poll(cx).is_ready()
        {
            return Poll::Ready(Woke::Tick);
        }
        for (index, child) in running.iter_mut().enumerate() {
            if Pin::new(child).poll(cx).is_ready() {
                return Poll::Ready(Woke::Ended(index));
            }
        }
        Poll::Pending
    })
    .await
}

fn now(ctx: &WorkflowContext) -> i64 {
    ctx.now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn intervals_tick_on_their_multiples_and_list_the_latest_missed_ones() {
        let hourly = Timing::Every {
            every_ms: 3_600_000,
        };
        assert_eq!(
            hourly.next_after(at("2026-12-01T08:30:00Z")).unwrap(),
            at("2026-12-01T09:00:00Z")
        );
        assert_eq!(
            hourly.next_after(at("2026-12-01T09:00:00Z")).unwrap(),
            at("2026-12-01T10:00:00Z"),
            "strictly after"
        );
        let (due, left_out) = hourly
            .due(at("2026-12-01T08:30:00Z"), at("2026-12-01T14:10:00Z"), 2)
            .unwrap();
        assert_eq!(
            due,
            [at("2026-12-01T13:00:00Z"), at("2026-12-01T14:00:00Z")]
        );
        assert_eq!(left_out, 4, "9:00 to 12:00");
        assert_eq!(
            hourly.due(0, 10, 5).unwrap(),
            (Vec::new(), 0),
            "nothing due"
        );
    }

    #[test]
    fn cron_follows_its_time_zone_across_daylight_saving() {
        let nine = Timing::Cron {
            expression: "0 9 * * MON-FRI".into(),
            time_zone: "Europe/Paris".into(),
        };
        // Friday 27 March 2026, then Monday 30 March, after the clocks went forward.
        assert_eq!(
            nine.next_after(at("2026-03-27T07:00:00Z")).unwrap(),
            at("2026-03-27T08:00:00Z")
        );
        assert_eq!(
            nine.next_after(at("2026-03-27T08:00:00Z")).unwrap(),
            at("2026-03-30T07:00:00Z")
        );
        let (due, left_out) = nine
            .due(at("2026-03-26T12:00:00Z"), at("2026-03-31T12:00:00Z"), 10)
            .unwrap();
        assert_eq!(
            due,
            [
                at("2026-03-27T08:00:00Z"),
                at("2026-03-30T07:00:00Z"),
                at("2026-03-31T07:00:00Z")
            ]
        );
        assert_eq!(left_out, 0);
    }

    #[test]
    fn a_spec_that_cannot_run_says_what_to_give() {
        let spec = |timing| ScheduleSpec {
            workflow: "report".into(),
            input: Value::Null,
            timing,
            overlap: Overlap::default(),
            catch_up: CatchUp::default(),
        };
        let err = spec(Timing::Cron {
            expression: "every day".into(),
            time_zone: "UTC".into(),
        })
        .validate()
        .unwrap_err();
        assert!(
            err.starts_with("`every day` is not a cron expression"),
            "{err}"
        );
        let err = spec(Timing::Cron {
            expression: "0 9 * * *".into(),
            time_zone: "Mars/Olympus".into(),
        })
        .validate()
        .unwrap_err();
        assert!(
            err.starts_with("`Mars/Olympus` is not a time zone"),
            "{err}"
        );
        let err = spec(Timing::Every { every_ms: 0 }).validate().unwrap_err();
        assert!(err.contains("too short"), "{err}");
        assert!(
            spec(Timing::Every { every_ms: 60_000 }).validate().is_ok(),
            "a minute is fine"
        );
    }

    #[test]
    fn a_tick_id_is_the_schedule_and_the_tick_in_utc() {
        assert_eq!(
            run_id("nightly", at("2026-12-01T00:00:00Z")),
            "nightly@2026-12-01T00:00:00.000Z"
        );
    }
}
