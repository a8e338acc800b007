//! An instance's timeline as SVG: a row per command (each task attempt a bar colored by how it
//! ended, the waits between attempts a dashed line, timers and children as bars), a row of
//! marks for the start, signals, operators' actions and the end, and a time axis. Each bar and
//! mark has a tooltip (`<title>`) with its times and error.

use std::collections::HashMap;
use std::fmt::Write;

use codegen_runtime::operate::{InstanceDetail, Span, SpanKind, SpanOutcome};

use crate::flows::text;

const WIDTH: f64 = 1000.0;
const LABELS: f64 = 230.0;
const RIGHT: f64 = 16.0;
const AXIS: f64 = 26.0;
const ROW: f64 = 24.0;

/// Escapes text for SVG (XML) content and attributes.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn outcome(o: SpanOutcome) -> &'static str {
    match o {
        SpanOutcome::Ok => "ok",
        SpanOutcome::Retried => "retried",
        SpanOutcome::Failed => "failed",
        SpanOutcome::Open => "open",
    }
}

/// A step between ticks that gives at most about eight ticks over `span` milliseconds.
fn tick_step(span: i64) -> i64 {
    const STEPS: [i64; 22] = [
        1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000,
        120_000, 300_000, 600_000, 1_800_000, 3_600_000, 86_400_000,
    ];
    STEPS
        .iter()
        .copied()
        .find(|s| span / s <= 8)
        .unwrap_or_else(|| (span / 8 / 86_400_000 + 1) * 86_400_000)
}

fn tooltip(span: &Span, now: i64) -> String {
    let mut t = span.label.clone();
    if let Some(a) = span.attempt {
        let _ = write!(t, ", attempt {a}");
    }
    let _ = write!(t, "\n{}", text::time(span.start));
    match span.end {
        Some(end) if end != span.start => {
            let _ = write!(
                t,
                " to {} ({})",
                text::time(end),
                text::duration(end - span.start)
            );
        }
        Some(_) => {}
        None => {
            let _ = write!(t, ", under way for {}", text::duration(now - span.start));
        }
    }
    let _ = write!(t, "\n{}", outcome(span.outcome));
    if let Some(e) = &span.error {
        let _ = write!(t, ": {e}");
    }
    t
}

/// The timeline of `detail` at time `now`, as an `<svg>` element.
pub(super) fn svg(detail: &InstanceDetail, now: i64) -> String {
    let spans = &detail.spans;
    // Rows: the marks first, then each command in the order it first appears.
    let mut rows: Vec<(Option<u32>, String)> = vec![(None, "events".into())];
    for s in spans {
        if let Some(seq) = s.seq
            && !rows.iter().any(|(r, _)| *r == Some(seq))
        {
            let label = s.label.trim_end_matches(" backoff").to_owned();
            rows.push((Some(seq), label));
        }
    }
    let row_of = |seq: Option<u32>| rows.iter().position(|(r, _)| *r == seq).unwrap_or(0);
    let t0 = spans.iter().map(|s| s.start).min().unwrap_or(now);
    let t1 = spans
        .iter()
        .map(|s| s.end.unwrap_or(now).max(s.start))
        .max()
        .unwrap_or(now)
        .max(t0 + 1);
    let range = (t1 - t0) as f64;
    let plot = WIDTH - LABELS - RIGHT - 12.0;
    let x = |t: i64| LABELS + 6.0 + (t - t0) as f64 / range * plot;
    let height = AXIS + ROW * rows.len() as f64 + 6.0;
    let children: HashMap<u32, &str> = detail
        .children
        .iter()
        .filter_map(|c| c.parent.as_ref().map(|(_, seq)| (*seq, c.id.as_str())))
        .collect();

    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="timeline" viewBox="0 0 {WIDTH} {height}" width="100%" role="img" aria-label="timeline" xmlns="http://www.w3.org/2000/svg">"#
    );
    // Row backgrounds and labels.
    for (i, (_, label)) in rows.iter().enumerate() {
        let y = AXIS + ROW * i as f64;
        let class = if i % 2 == 0 { "row even" } else { "row" };
        let _ = write!(
            out,
            r#"<rect class="{class}" x="0" y="{y}" width="{WIDTH}" height="{ROW}"/><text class="label" x="6" y="{:.1}">{}</text>"#,
            y + ROW / 2.0 + 4.0,
            escape(&clip(label, 34))
        );
    }
    // The axis: ticks from the start, with their offsets.
    let step = tick_step(t1 - t0);
    let mut k = 0;
    while k * step <= t1 - t0 {
        let tx = x(t0 + k * step);
        let _ = write!(
            out,
            r#"<line class="grid" x1="{tx:.1}" y1="{}" x2="{tx:.1}" y2="{height}"/><text class="tick" x="{tx:.1}" y="{}">+{}</text>"#,
            AXIS - 6.0,
            AXIS - 10.0,
            escape(&text::duration(k * step))
        );
        k += 1;
    }
    if detail.instance.status == codegen_runtime::backend::Status::Running && now <= t1 {
        let nx = x(now);
        let _ = write!(
            out,
            r#"<line class="now" x1="{nx:.1}" y1="{}" x2="{nx:.1}" y2="{height}"><title>now</title></line>"#,
            AXIS - 6.0
        );
    }
    // Bars first, marks over them.
    let mut ordered: Vec<&Span> = spans.iter().collect();
    ordered.sort_by_key(|s| s.seq.is_none());
    for s in ordered {
        let y = AXIS + ROW * row_of(s.seq) as f64;
        let title = escape(&tooltip(s, now));
        let xs = x(s.start);
        let xe = x(s.end.unwrap_or(now).max(s.start));
        let class = outcome(s.outcome);
        match s.kind {
            SpanKind::Attempt | SpanKind::Timer | SpanKind::Child => {
                let kind = match s.kind {
                    SpanKind::Attempt => "attempt",
                    SpanKind::Timer => "timer",
                    _ => "child",
                };
                let w = (xe - xs).max(3.0);
                let link = s
                    .seq
                    .filter(|_| s.kind == SpanKind::Child)
                    .and_then(|seq| children.get(&seq));
                if let Some(id) = link {
                    let _ = write!(
                        out,
                        r#"<a href="/instance?id={}">"#,
                        escape(&super::pages::encode(id))
                    );
                }
                let _ = write!(
                    out,
                    r#"<rect class="bar {kind} {class}" x="{xs:.1}" y="{:.1}" width="{w:.1}" height="{:.1}" rx="2"><title>{title}</title></rect>"#,
                    y + 5.0,
                    ROW - 10.0
                );
                if let Some(a) = s.attempt.filter(|_| w > 26.0) {
                    let _ = write!(
                        out,
                        r#"<text class="bar-label" x="{:.1}" y="{:.1}">#{a}</text>"#,
                        xs + 4.0,
                        y + ROW / 2.0 + 4.0
                    );
                }
                if link.is_some() {
                    out.push_str("</a>");
                }
            }
            SpanKind::Backoff => {
                let my = y + ROW / 2.0;
                let _ = write!(
                    out,
                    r#"<line class="backoff" x1="{xs:.1}" y1="{my:.1}" x2="{xe:.1}" y2="{my:.1}"><title>{title}</title></line>"#
                );
            }
            SpanKind::Signal | SpanKind::Action | SpanKind::Lifecycle => {
                let kind = match s.kind {
                    SpanKind::Signal => "signal",
                    SpanKind::Action => "action",
                    _ => "lifecycle",
                };
                let (cx, cy) = (xs, y + ROW / 2.0);
                let _ = write!(
                    out,
                    r#"<path class="mark {kind} {class}" d="M{cx:.1} {:.1} L{:.1} {cy:.1} L{cx:.1} {:.1} L{:.1} {cy:.1} Z"><title>{title}</title></path>"#,
                    cy - 6.0,
                    cx + 6.0,
                    cy + 6.0,
                    cx - 6.0
                );
            }
        }
    }
    out.push_str("</svg>");
    out
}

fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut s: String = text.chars().take(max - 1).collect();
    s.push('…');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use codegen_runtime::backend::{InstanceInfo, Status};
    use std::collections::BTreeMap;

    fn span(kind: SpanKind, seq: Option<u32>, label: &str, start: i64, end: Option<i64>) -> Span {
        Span {
            kind,
            seq,
            label: label.into(),
            attempt: (kind == SpanKind::Attempt).then_some(1),
            start,
            end,
            outcome: if end.is_some() {
                SpanOutcome::Ok
            } else {
                SpanOutcome::Open
            },
            error: None,
        }
    }

    #[test]
    fn each_command_gets_a_row_and_labels_are_escaped() {
        let mut failed = span(
            SpanKind::Attempt,
            Some(0),
            "pay/<charge>",
            1_000,
            Some(1_500),
        );
        failed.outcome = SpanOutcome::Retried;
        failed.error = Some("503 <b>busy</b>".into());
        let detail = InstanceDetail {
            instance: InstanceInfo::new("i", "w", serde_json::Value::Null, 1_000),
            children: vec![],
            waiting: vec![],
            signals: BTreeMap::new(),
            queries: None,
            spans: vec![
                span(
                    SpanKind::Lifecycle,
                    None,
                    "started w v1",
                    1_000,
                    Some(1_000),
                ),
                failed,
                span(
                    SpanKind::Backoff,
                    Some(0),
                    "pay/<charge> backoff",
                    1_500,
                    Some(2_000),
                ),
                span(SpanKind::Attempt, Some(0), "pay/<charge>", 2_000, None),
                span(SpanKind::Timer, Some(1), "timer", 1_200, Some(3_000)),
            ],
        };
        assert_eq!(detail.instance.status, Status::Running);
        let svg = svg(&detail, 4_000);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(!svg.contains("<charge>") && !svg.contains("<b>"), "{svg}");
        assert!(svg.contains("pay/&lt;charge&gt;"));
        assert!(svg.contains("503 &lt;b&gt;busy&lt;/b&gt;"));
        assert_eq!(
            svg.matches(r#"class="row"#).count(),
            3,
            "events, seq 0, seq 1"
        );
        assert!(svg.contains("bar attempt retried") && svg.contains("bar attempt open"));
        assert!(svg.contains(r#"class="backoff""#) && svg.contains("bar timer ok"));
    }

    #[test]
    fn ticks_stay_few() {
        for span in [1, 7, 999, 12_345, 3_600_000, 40 * 86_400_000] {
            let step = tick_step(span);
            assert!(span / step <= 8, "{span} {step}");
        }
    }
}
