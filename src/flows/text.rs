//! What `flows` prints for people: tables, an instance's state, a timeline.

use std::fmt::Write;

use codegen_runtime::backend::{Answer, InstanceInfo, QueryAnswers, ServiceStats, Status};
use codegen_runtime::operate::{InstanceDetail, Span, SpanKind, SpanOutcome, Waiting};
use codegen_runtime::schedule::Timing;
use codegen_runtime::{DeadTask, InstancePage, ScheduleInfo};

/// Now, in milliseconds since the Unix epoch.
pub(crate) fn now() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A time as people read it: `2026-12-01 08:00:00.123Z`.
pub(crate) fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || format!("{ms} ms"),
        |t| t.format("%Y-%m-%d %H:%M:%S%.3fZ").to_string(),
    )
}

/// A length of time: `850 ms`, `4.2 s`, `3m 12s`, `2h 5m`, `3d 4h`.
pub(crate) fn duration(ms: i64) -> String {
    let ms = ms.max(0);
    let s = ms / 1000;
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m {}s", s / 60, s % 60),
        3_600_000..86_400_000 => format!("{}h {}m", s / 3600, s / 60 % 60),
        _ => format!("{}d {}h", s / 86_400, s / 3600 % 24),
    }
}

/// `3m 12s ago` or `in 4.0 s`.
pub(crate) fn relative(ms: i64, now: i64) -> String {
    if ms <= now {
        format!("{} ago", duration(now - ms))
    } else {
        format!("in {}", duration(ms - now))
    }
}

fn status(status: Status) -> &'static str {
    status.as_str()
}

/// Left-aligned columns, two spaces apart.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                let _ = write!(l, "{cell:<w$}  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// One line, at most `max` characters.
pub(crate) fn clip(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or("");
    if line.chars().count() <= max && !text.contains('\n') {
        return line.to_owned();
    }
    let mut clipped: String = line.chars().take(max.saturating_sub(1)).collect();
    clipped.push('…');
    clipped
}

/// A page of instances as a table, with how to get the next one.
pub(crate) fn instances(page: &InstancePage, now: i64) -> String {
    if page.instances.is_empty() {
        return "no instances match\n".to_owned();
    }
    let rows: Vec<Vec<String>> = page
        .instances
        .iter()
        .map(|i| {
            vec![
                i.id.clone(),
                format!("{} v{}", i.name, i.version),
                status(i.status).to_owned(),
                format!("{} ({})", time(i.created_at), relative(i.created_at, now)),
                relative(i.updated_at, now),
            ]
        })
        .collect();
    let mut out = table(&["ID", "WORKFLOW", "STATUS", "STARTED", "CHANGED"], &rows);
    if let Some(next) = &page.next {
        let _ = writeln!(out, "more: --after '{next}'");
    }
    out
}

fn json(value: &serde_json::Value) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn instance_line(i: &InstanceInfo) -> String {
    format!("{} ({} v{}, {})", i.id, i.name, i.version, status(i.status))
}

/// An instance: where it is, what it waits on, its children.
pub(crate) fn detail(d: &InstanceDetail, now: i64) -> String {
    let i = &d.instance;
    let mut out = String::new();
    let mut field = |name: &str, value: String| {
        let _ = writeln!(out, "{name:<10}{value}");
    };
    field("instance", i.id.clone());
    field("workflow", format!("{} v{}", i.name, i.version));
    field("status", status(i.status).to_owned());
    field(
        "started",
        format!("{} ({})", time(i.created_at), relative(i.created_at, now)),
    );
    let changed = if i.status.is_final() {
        "ended"
    } else {
        "changed"
    };
    field(
        changed,
        format!(
            "{} ({}, after {})",
            time(i.updated_at),
            relative(i.updated_at, now),
            duration(i.updated_at - i.created_at)
        ),
    );
    if let Some((parent, seq)) = &i.parent {
        field("parent", format!("{parent} (its command {seq})"));
    }
    field("input", json(&i.input));
    if let Some(output) = &i.output {
        field("output", json(output));
    }
    match (i.status, &i.error) {
        (Status::Parked, Some(reason)) => field("parked", reason.clone()),
        (_, Some(error)) => field("error", error.clone()),
        _ => {}
    }
    field("events", i.events.to_string());
    if !d.signals.is_empty() {
        let signals: Vec<String> = d
            .signals
            .iter()
            .map(|(name, n)| format!("{name} x{n}"))
            .collect();
        field("signals", signals.join(", "));
    }
    if let Some(recorded) = &d.queries {
        out.push_str(&queries(recorded, i.events, now));
    }
    if !d.waiting.is_empty() {
        out.push_str("waiting on\n");
        for w in &d.waiting {
            let _ = writeln!(out, "  {}", waiting(w, now));
        }
    } else if i.status == Status::Running {
        out.push_str("waiting on  a signal, or news being handled\n");
    }
    if !d.children.is_empty() {
        out.push_str("children\n");
        for c in &d.children {
            let _ = writeln!(out, "  {}", instance_line(c));
        }
    }
    out
}

/// An instance's recorded query answers, one a line, and how current they are.
pub(crate) fn queries(recorded: &QueryAnswers, events: u64, now: i64) -> String {
    let mut out = format!(
        "queries   as of event {} of {events}, recorded {} ({})\n",
        recorded.events,
        time(recorded.at),
        relative(recorded.at, now)
    );
    let width = recorded.answers.keys().map(String::len).max().unwrap_or(0);
    for (name, answer) in &recorded.answers {
        let answer = match answer {
            Answer::Value(value) => clip(&json(value), 200),
            Answer::Error(error) => format!("no answer: {}", clip(error, 200)),
        };
        let _ = writeln!(out, "  {name:<width$}  {answer}");
    }
    out
}

pub(crate) fn waiting(w: &Waiting, now: i64) -> String {
    match w {
        Waiting::Task {
            seq,
            service,
            task,
            attempt,
            retry_at,
            last_error,
            since,
        } => {
            let mut line = format!(
                "task {service}/{task} (command {seq}), attempt {attempt}, scheduled {}",
                relative(*since, now)
            );
            if let Some(at) = retry_at {
                let _ = write!(
                    line,
                    ", next attempt {} ({})",
                    relative(*at, now),
                    time(*at)
                );
            }
            if let Some(error) = last_error {
                let _ = write!(line, "; last error: {}", clip(error, 120));
            }
            line
        }
        Waiting::Timer { seq, due } => format!(
            "timer (command {seq}), due {} ({})",
            relative(*due, now),
            time(*due)
        ),
        Waiting::Child { seq, name, id } => format!("child {id} ({name}, command {seq})"),
        Waiting::Completion { seq, since } => format!(
            "an outside completion (command {seq}), its token made {}; resolve it with `codegen flows complete TOKEN`",
            relative(*since, now)
        ),
    }
}

/// The timeline: each span on a line, at its offset from the start, with its length.
pub(crate) fn timeline(d: &InstanceDetail) -> String {
    let origin = d.spans.first().map_or(d.instance.created_at, |s| s.start);
    let mut out = format!(
        "{} ({} v{}, {}), from {}\n",
        d.instance.id,
        d.instance.name,
        d.instance.version,
        status(d.instance.status),
        time(origin)
    );
    for span in &d.spans {
        let _ = writeln!(out, "{}", span_line(span, origin));
    }
    out
}

fn span_line(span: &Span, origin: i64) -> String {
    let offset = format!("+{}", duration(span.start - origin));
    let length = match (span.kind, span.end) {
        (SpanKind::Signal | SpanKind::Action | SpanKind::Lifecycle, _) => String::new(),
        (_, Some(end)) => duration(end - span.start),
        (_, None) => "running".to_owned(),
    };
    let what = match (span.kind, span.attempt) {
        (SpanKind::Attempt, Some(n)) => format!("{} attempt {n}", span.label),
        (SpanKind::Backoff, _) => format!(
            "  wait before retrying {}",
            span.label.trim_end_matches(" backoff")
        ),
        _ => span.label.clone(),
    };
    let outcome = match (span.kind, span.outcome) {
        (SpanKind::Backoff, _) => String::new(),
        (_, SpanOutcome::Retried) => format!(
            "failed, retried: {}",
            span.error
                .as_deref()
                .map(|e| clip(e, 100))
                .unwrap_or_default()
        ),
        (_, SpanOutcome::Failed) => format!(
            "failed: {}",
            span.error
                .as_deref()
                .map(|e| clip(e, 100))
                .unwrap_or_default()
        ),
        (SpanKind::Attempt | SpanKind::Timer | SpanKind::Child, SpanOutcome::Ok) => "ok".to_owned(),
        _ => String::new(),
    };
    let line = format!("{offset:>10}  {what:<44} {length:>9}  {outcome}");
    line.trim_end().to_owned()
}

/// Dead tasks as a table.
pub(crate) fn dead(tasks: &[DeadTask], now: i64) -> String {
    if tasks.is_empty() {
        return "no dead tasks\n".to_owned();
    }
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            let what = t.task.as_ref().map_or_else(
                || t.letter.topic.name(),
                |task| format!("{}/{}", task.service, task.name),
            );
            vec![
                t.letter.id.clone(),
                what,
                t.letter.key.clone(),
                t.attempts().to_string(),
                relative(t.letter.died_at, now),
                clip(&t.letter.reason, 100),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "DEAD TASK",
            "TASK",
            "INSTANCE",
            "ATTEMPTS",
            "DIED",
            "LAST ERROR",
        ],
        &rows,
    );
    let _ = writeln!(
        out,
        "retry one with `codegen flows retry DEAD_TASK`, or all of a service with `--service S`"
    );
    out
}

/// The schedules as a table.
pub(crate) fn schedules(schedules: &[ScheduleInfo], now: i64) -> String {
    if schedules.is_empty() {
        return "no schedule; create one with `codegen flows schedule create`\n".to_owned();
    }
    let rows: Vec<Vec<String>> = schedules
        .iter()
        .map(|s| {
            let timing = match &s.spec.timing {
                Timing::Every { every_ms } => format!(
                    "every {}",
                    humantime::format_duration(std::time::Duration::from_millis(*every_ms))
                ),
                Timing::Cron {
                    expression,
                    time_zone,
                } => format!("{expression} ({time_zone})"),
            };
            vec![
                s.name.clone(),
                s.spec.workflow.clone(),
                timing,
                if s.paused {
                    "paused".to_owned()
                } else {
                    s.next.map_or_else(
                        || "-".to_owned(),
                        |at| format!("{} ({})", relative(at, now), time(at)),
                    )
                },
                s.started.to_string(),
                s.skipped.to_string(),
            ]
        })
        .collect();
    table(
        &["SCHEDULE", "WORKFLOW", "WHEN", "NEXT", "STARTED", "SKIPPED"],
        &rows,
    )
}

/// Each service's queue and figures as a table.
pub(crate) fn services(services: &[ServiceStats], window: std::time::Duration, now: i64) -> String {
    if services.is_empty() {
        return "no service has had a task yet\n".to_owned();
    }
    let minutes = (window.as_secs() as f64 / 60.0).max(1.0);
    let known = |n: Option<u64>| n.map_or_else(|| "?".to_owned(), |n| n.to_string());
    let rate = |n: u64| format!("{:.1}", n as f64 / minutes);
    let rows: Vec<Vec<String>> = services
        .iter()
        .map(|s| {
            vec![
                s.service.clone(),
                known(s.ready),
                known(s.delayed),
                s.oldest_ready_at
                    .map_or_else(|| "-".to_owned(), |t| duration(now - t)),
                rate(s.ok + s.retried + s.dead),
                rate(s.retried + s.dead),
                s.dead_letters.to_string(),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "SERVICE",
            "READY",
            "DELAYED",
            "OLDEST WAITING",
            "TASKS/MIN",
            "ERRORS/MIN",
            "DEAD",
        ],
        &rows,
    );
    if services.iter().any(|s| s.ready.is_none()) {
        out.push_str(
            "? = not known: on Pulsar, add `pulsar_admin=http://HOST:8080` to the backend URL\n",
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(4_210), "4.2 s");
        assert_eq!(duration(192_000), "3m 12s");
        assert_eq!(duration(7_500_000), "2h 5m");
        assert_eq!(duration(273_600_000), "3d 4h");
        assert_eq!(relative(1_000, 5_000), "4.0 s ago");
        assert_eq!(relative(5_000, 1_000), "in 4.0 s");
        assert_eq!(time(1_796_112_000_000), "2026-12-01 08:00:00.000Z");
    }

    #[test]
    fn long_errors_are_clipped_to_one_line() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("a longer error", 8), "a longe…");
        assert_eq!(clip("first\nsecond", 80), "first…");
    }
}
