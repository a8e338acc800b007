//! The console's pages and actions.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::body::Bytes;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Extension, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use codegen_runtime::backend::{Cursor, DeadFilter, InstanceFilter, InstanceInfo, Status};
use codegen_runtime::{Client, ClientError};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::security::{expired_cookie, same, session_cookie};
use super::{Console, assets, timeline};
use crate::flows::text;

/// Counts of a status are exact up to this; past it the page says "10,000+".
const COUNT_CAP: u64 = 10_000;
/// The most dead tasks one retry of a selection takes.
const RETRY_MAX: usize = 1_000;

/// Characters left as they are in a query value.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b':');

/// `text` as a query value.
pub(super) fn encode(text: &str) -> String {
    utf8_percent_encode(text, QUERY).to_string()
}

/// What every page shows around its content.
struct Chrome {
    css: String,
    js: String,
    page: &'static str,
    read_only: bool,
    signed_in: bool,
    csrf: String,
}

impl Chrome {
    fn new(console: &Console, headers: &HeaderMap, page: &'static str) -> Self {
        let csrf = console.sessions.csrf(headers);
        Self {
            css: assets::css_url(),
            js: assets::js_url(),
            page,
            read_only: console.read_only(),
            signed_in: csrf.is_some(),
            csrf: csrf.unwrap_or_default(),
        }
    }

    /// Whether the page shows its action forms.
    fn acts(&self) -> bool {
        !self.read_only && self.signed_in
    }
}

fn render<T: Template>(status: StatusCode, page: &T) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot render the page: {e}"),
        )
            .into_response(),
    }
}

#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage<'a> {
    chrome: Chrome,
    title: &'a str,
    message: &'a str,
}

/// A page that says what went wrong, with `status`.
pub(super) fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    let chrome = Chrome {
        css: assets::css_url(),
        js: assets::js_url(),
        page: "",
        read_only: true,
        signed_in: false,
        csrf: String::new(),
    };
    render(
        status,
        &ErrorPage {
            chrome,
            title,
            message,
        },
    )
}

fn bad_parameter(name: &str, message: &str) -> Response {
    error_page(
        StatusCode::BAD_REQUEST,
        "Bad parameter",
        &format!("Parameter `{name}`: {message}"),
    )
}

fn client_error(err: ClientError) -> Response {
    match err {
        ClientError::UnknownInstance(id) => error_page(
            StatusCode::NOT_FOUND,
            "No such instance",
            &format!("No workflow instance has the id `{id}`. Check it, or search the list."),
        ),
        ClientError::UnknownDeadTask(id) => error_page(
            StatusCode::NOT_FOUND,
            "No such dead task",
            &format!("No dead task `{id}`: it may have been retried already."),
        ),
        err @ (ClientError::Ended { .. } | ClientError::DuplicateStart { .. }) => {
            error_page(StatusCode::CONFLICT, "Not done", &err.to_string())
        }
        err => error_page(
            StatusCode::BAD_GATEWAY,
            "The backend failed",
            &err.to_string(),
        ),
    }
}

/// The fallback: a page that says the address is unknown.
pub(super) async fn not_found() -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        "Not found",
        "The console has no page at this address.",
    )
}

/// A page that refuses a request, in place of what it asked for.
type Refused = Box<Response>;

/// Name-value pairs of a query string or a form, in order.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(raw: &[u8]) -> Self {
        Self(form_urlencoded::parse(raw).into_owned().collect())
    }

    fn query(raw: Option<String>) -> Self {
        Self::parse(raw.unwrap_or_default().as_bytes())
    }

    /// The first non-empty value of `name`, trimmed.
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .find(|v| !v.is_empty())
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn parse_with<T>(
        &self,
        name: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, Refused> {
        self.get(name)
            .map(|v| parse(v).map_err(|e| Box::new(bad_parameter(name, &e))))
            .transpose()
    }

    fn limit(&self, default: usize, max: usize) -> Result<usize, Refused> {
        Ok(self
            .parse_with("limit", |v| match v.parse::<usize>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(format!("`{v}` is not a number from 1 to {max}")),
            })?
            .unwrap_or(default))
    }
}

fn parse_status(v: &str) -> Result<Status, String> {
    Status::parse(v).ok_or_else(|| {
        format!("`{v}` is not a status: use running, parked, failed, completed or cancelled")
    })
}

/// `GET /`.
pub(super) async fn home() -> Redirect {
    Redirect::to("/instances")
}

/// One instance as a row of the list.
struct Row {
    id: String,
    href: String,
    workflow: String,
    status: &'static str,
    started: String,
    started_ago: String,
    updated_ago: String,
    events: u64,
    error: String,
}

impl Row {
    fn new(i: &InstanceInfo, now: i64) -> Self {
        Self {
            id: i.id.clone(),
            href: format!("/instance?id={}", encode(&i.id)),
            workflow: format!("{} v{}", i.name, i.version),
            status: i.status.as_str(),
            started: text::time(i.created_at),
            started_ago: text::relative(i.created_at, now),
            updated_ago: text::relative(i.updated_at, now),
            events: i.events,
            error: i
                .error
                .as_deref()
                .map(|e| text::clip(e, 90))
                .unwrap_or_default(),
        }
    }
}

struct Count {
    status: &'static str,
    count: String,
    href: String,
    current: bool,
}

#[derive(Template)]
#[template(path = "console/instances.html")]
struct InstancesPage {
    chrome: Chrome,
    workflow: String,
    status: String,
    id: String,
    from: String,
    to: String,
    limit: usize,
    counts: Vec<Count>,
    total: String,
    rows: Vec<Row>,
    next: Option<String>,
    first: Option<String>,
    filtered: bool,
}

/// The query of a list with `filters`, and more pairs.
fn query_of(pairs: &[(&str, &str)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        q.append_pair(k, v);
    }
    q.finish()
}

fn count_text(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n >= COUNT_CAP {
        out.push('+');
    }
    out
}

/// `GET /instances`: the list, with the filters of `flows list` and the counts by status.
pub(super) async fn instances(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = Params::query(raw);
    let status = match q.parse_with("status", parse_status) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let from = match q.parse_with("from", crate::flows::parse_time) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let to = match q.parse_with("to", crate::flows::parse_time) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let after = match q.parse_with("after", |v| v.parse::<Cursor>()) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let limit = match q.limit(50, 500) {
        Ok(l) => l,
        Err(r) => return *r,
    };
    let workflow = q.get("workflow").map(str::to_owned);
    let filter = InstanceFilter {
        name: workflow.clone(),
        status,
        id_prefix: q.get("id").map(str::to_owned),
        started_from: from,
        started_before: to,
    };
    let (page, counts) = match tokio::try_join!(
        console.client.instances(&filter, after.as_ref(), limit),
        console.client.status_counts(workflow.as_deref(), COUNT_CAP)
    ) {
        Ok(r) => r,
        Err(e) => return client_error(e),
    };
    let now = text::now();
    let workflow = workflow.unwrap_or_default();
    let (id, from_s, to_s) = (
        q.get("id").unwrap_or_default().to_owned(),
        q.get("from").unwrap_or_default().to_owned(),
        q.get("to").unwrap_or_default().to_owned(),
    );
    let status_s = status.map(Status::as_str).unwrap_or_default();
    let limit_s = if limit == 50 {
        String::new()
    } else {
        limit.to_string()
    };
    let base = [
        ("workflow", workflow.as_str()),
        ("status", status_s),
        ("id", id.as_str()),
        ("from", from_s.as_str()),
        ("to", to_s.as_str()),
        ("limit", limit_s.as_str()),
    ];
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    let counts = Status::ALL
        .iter()
        .map(|s| {
            let n = counts.iter().find(|(c, _)| c == s).map_or(0, |(_, n)| *n);
            let mut pairs = base.to_vec();
            pairs[1] = ("status", s.as_str());
            Count {
                status: s.as_str(),
                count: count_text(n),
                href: format!("/instances?{}", query_of(&pairs)),
                current: status == Some(*s),
            }
        })
        .collect();
    let next = page.next.as_ref().map(|c| {
        let cursor = c.to_string();
        let mut pairs = base.to_vec();
        pairs.push(("after", cursor.as_str()));
        format!("/instances?{}", query_of(&pairs))
    });
    let first = after
        .as_ref()
        .map(|_| format!("/instances?{}", query_of(&base)));
    let filtered = base.iter().any(|(_, v)| !v.is_empty());
    render(
        StatusCode::OK,
        &InstancesPage {
            chrome: Chrome::new(&console, &headers, "instances"),
            workflow,
            status: status_s.to_owned(),
            id,
            from: from_s,
            to: to_s,
            limit,
            counts,
            total: count_text(total),
            rows: page.instances.iter().map(|i| Row::new(i, now)).collect(),
            next,
            first,
            filtered,
        },
    )
}

/// The part of the instance page that live updates replace.
#[derive(Template)]
#[template(path = "console/instance_live.html")]
struct Live {
    running: bool,
    status: &'static str,
    workflow: String,
    started: String,
    updated: String,
    took: String,
    events: u64,
    error: Option<String>,
    parent: Option<(String, String)>,
    svg: String,
    waiting: Vec<String>,
    signals: Vec<(String, u32)>,
    children: Vec<Row>,
    input: String,
    output: Option<String>,
    errors: Vec<(String, String)>,
    queries: Option<Queries>,
}

/// An instance's recorded query answers, as the page shows them.
struct Queries {
    /// When they were recorded, and of which event.
    note: String,
    /// The instance has events no worker has replayed yet.
    stale: bool,
    /// Name, answer (pretty JSON, or why there is none), and whether it is an error.
    rows: Vec<(String, String, bool)>,
}

fn queries(recorded: &codegen_runtime::backend::QueryAnswers, events: u64, now: i64) -> Queries {
    use codegen_runtime::backend::Answer;
    Queries {
        note: format!(
            "As of event {} of {events}, recorded {} ({}).",
            recorded.events,
            text::time(recorded.at),
            text::relative(recorded.at, now)
        ),
        stale: recorded.events < events,
        rows: recorded
            .answers
            .iter()
            .map(|(name, answer)| match answer {
                Answer::Value(value) => (name.clone(), pretty(value), false),
                Answer::Error(error) => (name.clone(), format!("no answer: {error}"), true),
            })
            .collect(),
    }
}

fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

fn live(detail: &codegen_runtime::operate::InstanceDetail, now: i64) -> Live {
    let i = &detail.instance;
    let running = !i.status.is_final();
    let end = if running { now } else { i.updated_at };
    Live {
        running,
        status: i.status.as_str(),
        workflow: format!("{} v{}", i.name, i.version),
        started: format!(
            "{} ({})",
            text::time(i.created_at),
            text::relative(i.created_at, now)
        ),
        updated: text::relative(i.updated_at, now),
        took: text::duration(end - i.created_at),
        events: i.events,
        error: i.error.clone(),
        parent: i
            .parent
            .as_ref()
            .map(|(p, _)| (p.clone(), format!("/instance?id={}", encode(p)))),
        svg: timeline::svg(detail, now),
        waiting: detail
            .waiting
            .iter()
            .map(|w| text::waiting(w, now))
            .collect(),
        signals: detail
            .signals
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
        children: detail.children.iter().map(|c| Row::new(c, now)).collect(),
        input: pretty(&i.input),
        output: i.output.as_ref().map(pretty),
        errors: detail
            .spans
            .iter()
            .filter_map(|s| {
                s.error.as_ref().map(|e| {
                    let what = match s.attempt {
                        Some(a) => format!("{} attempt {a}", s.label),
                        None => s.label.clone(),
                    };
                    (format!("{} {what}", text::time(s.start)), e.clone())
                })
            })
            .collect(),
        queries: detail
            .queries
            .as_ref()
            .map(|recorded| queries(recorded, i.events, now)),
    }
}

#[derive(Template)]
#[template(path = "console/instance.html")]
struct InstancePage {
    chrome: Chrome,
    id: String,
    id_q: String,
    live_src: String,
    running: bool,
    parked: bool,
    done: Option<&'static str>,
    live: String,
}

fn done_text(code: Option<&str>) -> Option<&'static str> {
    Some(match code? {
        "signal" => "Signal sent.",
        "cancel" => "Cancellation asked; its children and timers go with it.",
        "resume" => "Resumed: it replays again.",
        "retry" => "Dead task retried.",
        _ => return None,
    })
}

fn required_id(q: &Params) -> Result<String, Refused> {
    q.get("id").map(str::to_owned).ok_or_else(|| {
        Box::new(bad_parameter(
            "id",
            "missing: give the instance id, as /instance?id=ID",
        ))
    })
}

/// `GET /instance?id=`: one instance, its timeline, what it waits on, its children.
pub(super) async fn instance(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = Params::query(raw);
    let id = match required_id(&q) {
        Ok(id) => id,
        Err(r) => return *r,
    };
    let detail = match console.client.detail(&id).await {
        Ok(d) => d,
        Err(e) => return client_error(e),
    };
    let live = live(&detail, text::now());
    let html = match live.render() {
        Ok(html) => html,
        Err(e) => {
            return error_page(StatusCode::INTERNAL_SERVER_ERROR, "Error", &e.to_string());
        }
    };
    render(
        StatusCode::OK,
        &InstancePage {
            chrome: Chrome::new(&console, &headers, "instances"),
            id_q: encode(&id),
            live_src: format!("/instance/live?id={}", encode(&id)),
            running: live.running,
            parked: detail.instance.status == Status::Parked,
            id,
            done: done_text(q.get("done")),
            live: html,
        },
    )
}

/// `GET /instance/live?id=`: the part of the instance page that changes, for live updates.
pub(super) async fn instance_live(
    State(console): State<Arc<Console>>,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = Params::query(raw);
    let id = match required_id(&q) {
        Ok(id) => id,
        Err(r) => return *r,
    };
    match console.client.detail(&id).await {
        Ok(d) => render(StatusCode::OK, &live(&d, text::now())),
        Err(e) => client_error(e),
    }
}

struct DeadRow {
    id: String,
    service: String,
    instance: String,
    instance_href: String,
    task: String,
    attempts: u32,
    died: String,
    died_ago: String,
    reason: String,
    reason_short: String,
}

#[derive(Template)]
#[template(path = "console/dead.html")]
struct DeadPage {
    chrome: Chrome,
    service: String,
    instance: String,
    since: String,
    rows: Vec<DeadRow>,
    done: Option<String>,
}

/// `GET /dead`: dead tasks, to retry one or a selection.
pub(super) async fn dead(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = Params::query(raw);
    let since = match q.parse_with("since", crate::flows::parse_time) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let limit = match q.limit(100, RETRY_MAX) {
        Ok(l) => l,
        Err(r) => return *r,
    };
    let filter = DeadFilter {
        service: q.get("service").map(str::to_owned),
        instance: q.get("instance").map(str::to_owned),
        since,
    };
    let tasks = match console.client.dead(&filter, limit).await {
        Ok(t) => t,
        Err(e) => return client_error(e),
    };
    let now = text::now();
    let rows = tasks
        .iter()
        .map(|t| DeadRow {
            id: t.letter.id.clone(),
            service: t.letter.topic.name(),
            instance: t.letter.key.clone(),
            instance_href: format!("/instance?id={}", encode(&t.letter.key)),
            task: t
                .task
                .as_ref()
                .map(|m| format!("{}/{}", m.service, m.name))
                .unwrap_or_else(|| "(unreadable message)".into()),
            attempts: t.attempts(),
            died: text::time(t.letter.died_at),
            died_ago: text::relative(t.letter.died_at, now),
            reason: t.letter.reason.clone(),
            reason_short: text::clip(&t.letter.reason, 100),
        })
        .collect();
    let done = q
        .parse_with("retried", |v| v.parse::<usize>().map_err(|e| e.to_string()))
        .ok()
        .flatten()
        .map(|n| format!("Retried {n} dead task{}.", if n == 1 { "" } else { "s" }));
    render(
        StatusCode::OK,
        &DeadPage {
            chrome: Chrome::new(&console, &headers, "dead"),
            service: q.get("service").unwrap_or_default().to_owned(),
            instance: q.get("instance").unwrap_or_default().to_owned(),
            since: q.get("since").unwrap_or_default().to_owned(),
            rows,
            done,
        },
    )
}

struct ServiceRow {
    service: String,
    dead_href: String,
    ready: String,
    delayed: String,
    oldest: String,
    tasks_min: String,
    errors_min: String,
    errors: bool,
    ok: u64,
    retried: u64,
    dead: u64,
    dead_letters: u64,
}

#[derive(Template)]
#[template(path = "console/services.html")]
struct ServicesPage {
    chrome: Chrome,
    window: String,
    rows: Vec<ServiceRow>,
}

fn per_minute(n: u64, window: Duration) -> String {
    let minutes = window.as_secs_f64() / 60.0;
    let rate = n as f64 / minutes.max(1.0 / 60.0);
    if rate == 0.0 {
        "0".into()
    } else if rate < 10.0 {
        format!("{rate:.1}")
    } else {
        format!("{rate:.0}")
    }
}

/// `GET /services`: each service's queue, its oldest waiting task, its rates.
pub(super) async fn services(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = Params::query(raw);
    let window = match q.parse_with("window", |v| match humantime::parse_duration(v) {
        Ok(d) if d >= Duration::from_secs(1) && d <= Duration::from_secs(30 * 86_400) => Ok(d),
        _ => Err(format!("`{v}` is not a window from 1s to 30d (as 15m, 1h)")),
    }) {
        Ok(w) => w.unwrap_or(Duration::from_secs(15 * 60)),
        Err(r) => return *r,
    };
    let stats = match console.client.services(window).await {
        Ok(s) => s,
        Err(e) => return client_error(e),
    };
    let now = text::now();
    let unknown = || "n/a".to_owned();
    let rows = stats
        .iter()
        .map(|s| ServiceRow {
            service: s.service.clone(),
            dead_href: format!("/dead?service={}", encode(&s.service)),
            ready: s.ready.map_or_else(unknown, count_text),
            delayed: s.delayed.map_or_else(unknown, count_text),
            oldest: match (s.oldest_ready_at, s.ready) {
                (Some(at), _) => text::relative(at, now),
                (None, Some(_)) => "none".into(),
                (None, None) => unknown(),
            },
            tasks_min: per_minute(s.ok + s.retried + s.dead, window),
            errors_min: per_minute(s.retried + s.dead, window),
            errors: s.retried + s.dead > 0,
            ok: s.ok,
            retried: s.retried,
            dead: s.dead,
            dead_letters: s.dead_letters,
        })
        .collect();
    render(
        StatusCode::OK,
        &ServicesPage {
            chrome: Chrome::new(&console, &headers, "services"),
            window: humantime::format_duration(window).to_string(),
            rows,
        },
    )
}

#[derive(Template)]
#[template(path = "console/signin.html")]
struct SigninPage {
    chrome: Chrome,
    next: String,
    failed: bool,
}

/// Where to go after signing in: a path of this console, or the list.
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(p) if p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') => p.to_owned(),
        _ => "/instances".to_owned(),
    }
}

/// `GET /signin`.
pub(super) async fn signin_form(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = Params::query(raw);
    if console.read_only() {
        return error_page(
            StatusCode::NOT_FOUND,
            "Read-only console",
            "This console was started with --read-only: there is nothing to sign in to.",
        );
    }
    render(
        StatusCode::OK,
        &SigninPage {
            chrome: Chrome::new(&console, &headers, "signin"),
            next: local_path(q.get("next")),
            failed: false,
        },
    )
}

/// `POST /signin`: the token opens a session.
pub(super) async fn signin(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = Params::parse(&body);
    let next = local_path(form.get("next"));
    let token = console.token.as_deref().unwrap_or_default();
    let given = form.get("token").unwrap_or_default();
    if token.is_empty() || !same(given, token) {
        // Slows down guessing.
        tokio::time::sleep(Duration::from_millis(400)).await;
        return render(
            StatusCode::FORBIDDEN,
            &SigninPage {
                chrome: Chrome::new(&console, &headers, "signin"),
                next,
                failed: true,
            },
        );
    }
    let (id, _) = console.sessions.open();
    let mut response = Redirect::to(&next).into_response();
    if let Ok(cookie) = HeaderValue::from_str(&session_cookie(&id)) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// `POST /signout`.
pub(super) async fn signout(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refused) = authorize(&console, &headers, None, &body) {
        return *refused;
    }
    console.sessions.close(&headers);
    let mut response = Redirect::to("/instances").into_response();
    if let Ok(cookie) = HeaderValue::from_str(&expired_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// An action's form, once its session and CSRF token are checked; and the client that acts as
/// `console:<client address>`.
fn authorize(
    console: &Console,
    headers: &HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: &[u8],
) -> Result<(Params, Client<codegen_runtime::backend::Backend>), Refused> {
    let form = Params::parse(body);
    let Some(csrf) = console.sessions.csrf(headers) else {
        return Err(Box::new(error_page(
            StatusCode::UNAUTHORIZED,
            "Sign in first",
            "Actions need the console's token: sign in with it, then try again.",
        )));
    };
    if !same(form.get("csrf").unwrap_or_default(), &csrf) {
        return Err(Box::new(error_page(
            StatusCode::FORBIDDEN,
            "Stale or forged form",
            "The form's CSRF token does not match this session: reload the page and try again.",
        )));
    }
    let by = match peer {
        Some(Extension(ConnectInfo(addr))) => format!("console:{}", addr.ip()),
        None => "console".to_owned(),
    };
    Ok((form, console.client.clone().acting_as(by)))
}

fn back_to(id: &str, done: &str) -> Response {
    Redirect::to(&format!("/instance?id={}&done={done}", encode(id))).into_response()
}

/// `POST /instance/signal`: `id`, `name`, `payload` (JSON, `null` when empty).
pub(super) async fn signal(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Bytes,
) -> Response {
    let (form, client) = match authorize(&console, &headers, peer, &body) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let Some(id) = form.get("id") else {
        return bad_parameter("id", "missing");
    };
    let Some(name) = form.get("name") else {
        return bad_parameter("name", "missing: name the signal");
    };
    let payload: serde_json::Value = match form.get("payload") {
        None => serde_json::Value::Null,
        Some(p) => match serde_json::from_str(p) {
            Ok(v) => v,
            Err(e) => {
                return bad_parameter(
                    "payload",
                    &format!("not JSON ({e}); quote text as \"text\""),
                );
            }
        },
    };
    match client.signal(id, name, &payload).await {
        Ok(()) => back_to(id, "signal"),
        Err(e) => client_error(e),
    }
}

/// `POST /instance/cancel`: `id`, `reason`.
pub(super) async fn cancel(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Bytes,
) -> Response {
    let (form, client) = match authorize(&console, &headers, peer, &body) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let Some(id) = form.get("id") else {
        return bad_parameter("id", "missing");
    };
    let Some(reason) = form.get("reason") else {
        return bad_parameter("reason", "missing: say why, it is recorded in the history");
    };
    match client.cancel(id, reason).await {
        Ok(()) => back_to(id, "cancel"),
        Err(e) => client_error(e),
    }
}

/// `POST /instance/resume`: `id`.
pub(super) async fn resume(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Bytes,
) -> Response {
    let (form, client) = match authorize(&console, &headers, peer, &body) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let Some(id) = form.get("id") else {
        return bad_parameter("id", "missing");
    };
    match client.resume(id).await {
        Ok(()) => back_to(id, "resume"),
        Err(e) => client_error(e),
    }
}

/// `POST /dead/retry`: `one` (the button of a row), or each `sel` (the ticked rows).
pub(super) async fn retry(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Bytes,
) -> Response {
    let (form, client) = match authorize(&console, &headers, peer, &body) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let ids = match form.get("one") {
        Some(one) => vec![one.to_owned()],
        None => form.all("sel"),
    };
    if ids.is_empty() {
        return bad_parameter("sel", "no dead task chosen: tick some, then retry");
    }
    if ids.len() > RETRY_MAX {
        return bad_parameter("sel", &format!("more than {RETRY_MAX} dead tasks at once"));
    }
    let mut retried = 0;
    for id in &ids {
        match client.retry_dead(id).await {
            Ok(()) => retried += 1,
            // Retried meanwhile by someone else.
            Err(ClientError::UnknownDeadTask(_)) if ids.len() > 1 => {}
            Err(e) => return client_error(e),
        }
    }
    let mut q = form_urlencoded::Serializer::new(String::new());
    for name in ["service", "instance", "since"] {
        if let Some(v) = form.get(&format!("f_{name}")) {
            q.append_pair(name, v);
        }
    }
    q.append_pair("retried", &retried.to_string());
    Redirect::to(&format!("/dead?{}", q.finish())).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_with_separators_and_the_cap() {
        assert_eq!(count_text(0), "0");
        assert_eq!(count_text(999), "999");
        assert_eq!(count_text(1234), "1,234");
        assert_eq!(count_text(10_000), "10,000+");
    }

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(local_path(Some("/dead?x=1")), "/dead?x=1");
        assert_eq!(local_path(Some("//evil.example")), "/instances");
        assert_eq!(local_path(Some("https://evil.example")), "/instances");
        assert_eq!(local_path(Some("/\\evil.example")), "/instances");
        assert_eq!(local_path(None), "/instances");
    }

    #[test]
    fn ids_are_encoded_in_addresses() {
        assert_eq!(encode("bill:ada/2 x&y"), "bill:ada%2F2%20x%26y");
    }
}
