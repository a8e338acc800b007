//! The web console (`codegen flows serve`).
//!
//! - Over plain HTTP, in process: actions need the session of the token and its CSRF token,
//!   cross-site and read-only POSTs are refused, unknown ids and bad parameters get pages that
//!   say so, hostile ids and inputs come out escaped, and only the console's `Host` is served.
//! - In a real browser: workers run in this process on a temporary SQLite file, the console runs
//!   as `codegen flows serve`, and headless Chromium (Debian's `chromium` and `chromium-driver`,
//!   which scripts/test.sh installs) loads each page, filters the list, opens an instance and its
//!   timeline, retries a dead task and watches the workflow complete, sends a signal, and checks
//!   that an action without the token is refused. The screenshots in `docs/` come from here
//!   (`CODEGEN_UPDATE_SCREENSHOTS=1` writes them there; otherwise under `target/`).
//!
//! Without chromedriver the browser test fails when `CI` is set, and is skipped otherwise with a
//! line saying how to install it. Everything listens on 127.0.0.1.

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use codegen::console::{Console, router};
use codegen_runtime::backend::sqlite::SqliteBackend;
use codegen_runtime::backend::{Backend, Status};
use codegen_runtime::worker::{
    Handlers, ServiceWorker, ServiceWorkerOptions, WorkflowWorker, WorkflowWorkerOptions,
};
use codegen_runtime::workflow::{Event, WorkflowContext, WorkflowError, Workflows};
use codegen_runtime::{Client, RetryPolicy, Task, TaskError};
use fantoccini::{ClientBuilder, Locator};
use http::{Request, StatusCode, header};
use serde::{Deserialize, Serialize};
use support::{Killed, free_port};
use tokio::sync::watch;
use tower::ServiceExt;

const TOKEN: &str = "test-token-0123456789abcdef";
const WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Serialize, Deserialize)]
struct Reserve {
    order: String,
}

impl Task for Reserve {
    type Output = u32;
    const SERVICE: &'static str = "inventory";
    const NAME: &'static str = "reserve";
    const IDEMPOTENT: bool = true;
}

#[derive(Debug, Serialize, Deserialize)]
struct Charge {
    order: String,
}

impl Task for Charge {
    type Output = String;
    const SERVICE: &'static str = "payments";
    const NAME: &'static str = "charge";
    const IDEMPOTENT: bool = false;
    fn retry_policy() -> RetryPolicy {
        RetryPolicy::default()
            .with_initial_delay(Duration::from_millis(150))
            .with_max_attempts(3)
    }
}

/// Reserves, waits a little, charges.
async fn order(ctx: WorkflowContext, order: String) -> Result<String, WorkflowError> {
    let items = ctx
        .call(&Reserve {
            order: order.clone(),
        })
        .await?;
    ctx.sleep(Duration::from_millis(200)).await;
    let receipt = ctx.call(&Charge { order }).await?;
    Ok(format!("{items} items, {receipt}"))
}

/// Waits for an approval; a query tells what it waits for.
async fn approval(ctx: WorkflowContext, input: serde_json::Value) -> Result<bool, WorkflowError> {
    let note = input.get("note").cloned().unwrap_or_default();
    ctx.on_query(
        "request",
        move || serde_json::json!({"note": note, "waiting_for": "approve"}),
    );
    ctx.signal::<bool>("approve").await
}

/// The workers of the test, on a temporary SQLite file.
struct Env {
    dir: tempfile::TempDir,
    client: Client<SqliteBackend>,
    /// While set, charging an order whose id has `ada` fails every attempt.
    broken: Arc<AtomicBool>,
    stop: watch::Sender<bool>,
}

impl Env {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let backend = Arc::new(SqliteBackend::open(dir.path().join("state.db")).unwrap());
        let (stop, rx) = watch::channel(false);
        let broken = Arc::new(AtomicBool::new(true));
        let calls: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
        let mut inventory = Handlers::new();
        inventory.task(|t: Reserve, _| async move { Ok(t.order.len() as u32) });
        let mut payments = Handlers::new();
        let b = broken.clone();
        payments.task(move |t: Charge, _| {
            let broken = b.load(Ordering::SeqCst);
            let n = {
                let mut calls = calls.lock().unwrap();
                let n = calls.entry(t.order.clone()).or_default();
                *n += 1;
                *n
            };
            async move {
                if t.order.contains("ada") && broken {
                    return Err(TaskError::retryable(
                        "503 Service Unavailable: the card processor is down",
                    ));
                }
                if n == 1 {
                    return Err(TaskError::retryable("502 Bad Gateway: try again"));
                }
                Ok(format!("paid {}", t.order))
            }
        });
        let options = ServiceWorkerOptions {
            idle_wait: Duration::from_millis(50),
            ..Default::default()
        };
        for (service, handlers) in [("inventory", inventory), ("payments", payments)] {
            let worker = ServiceWorker::new(backend.clone(), service, handlers, options.clone());
            let rx = rx.clone();
            tokio::spawn(async move { worker.run(rx).await.unwrap() });
        }
        let mut workflows = Workflows::new();
        workflows.register("order", 1, order);
        workflows.register("approval", 1, approval);
        let options = WorkflowWorkerOptions {
            idle_wait: Duration::from_millis(50),
            ..Default::default()
        };
        let worker = WorkflowWorker::new(backend.clone(), workflows, options);
        tokio::spawn(async move { worker.run(rx).await.unwrap() });
        Self {
            dir,
            client: Client::new(backend),
            broken,
            stop,
        }
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("state.db")
    }

    async fn until_status(&self, id: &str, status: Status) {
        let deadline = Instant::now() + WAIT;
        loop {
            let now = self.client.status(id).await.unwrap().status;
            if now == status {
                return;
            }
            assert!(Instant::now() < deadline, "{id} is {now:?}, not {status:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

// ---- plain HTTP ----------------------------------------------------------------------------

const HOST: &str = "127.0.0.1:8480";

async fn console(env: &Env, read_only: bool) -> axum::Router {
    let backend = Backend::open(&format!("sqlite://{}", env.db().display()))
        .await
        .unwrap();
    let console = Console::new(
        Client::new(Arc::new(backend)),
        (!read_only).then(|| TOKEN.to_owned()),
        HOST.parse().unwrap(),
    );
    router(Arc::new(console))
}

struct Reply {
    status: StatusCode,
    headers: http::HeaderMap,
    body: String,
}

async fn send(app: &axum::Router, req: Request<Body>) -> Reply {
    let response = app.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 22)
        .await
        .unwrap();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

async fn get(app: &axum::Router, path: &str) -> Reply {
    let req = Request::get(path)
        .header(header::HOST, HOST)
        .body(Body::empty())
        .unwrap();
    send(app, req).await
}

async fn post(app: &axum::Router, path: &str, cookie: Option<&str>, form: &str) -> Reply {
    let mut req = Request::post(path)
        .header(header::HOST, HOST)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ORIGIN, format!("http://{HOST}"));
    if let Some(cookie) = cookie {
        req = req.header(header::COOKIE, cookie);
    }
    send(app, req.body(Body::from(form.to_owned())).unwrap()).await
}

/// Signs in; the session cookie and the page's CSRF token.
async fn sign_in(app: &axum::Router) -> (String, String) {
    let reply = post(app, "/signin", None, &format!("token={TOKEN}&next=/dead")).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let cookie = reply.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let req = Request::get("/dead")
        .header(header::HOST, HOST)
        .header(header::COOKIE, &cookie)
        .body(Body::empty())
        .unwrap();
    let page = send(app, req).await;
    let csrf = page
        .body
        .split(r#"name="csrf" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a signed-in page carries a CSRF token")
        .to_owned();
    (cookie, csrf)
}

#[tokio::test]
async fn actions_need_the_token_a_matching_csrf_token_and_the_same_origin() {
    let env = Env::start();
    env.client
        .start("approval", Some("wait-1"), &serde_json::json!({}))
        .await
        .unwrap();
    env.until_status("wait-1", Status::Running).await;
    let app = console(&env, false).await;
    let form = "id=wait-1&name=approve&payload=true";

    let no_session = post(&app, "/instance/signal", None, form).await;
    assert_eq!(no_session.status, StatusCode::UNAUTHORIZED);
    assert!(no_session.body.contains("Sign in first"));

    let wrong = post(&app, "/signin", None, "token=not-the-token").await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert!(wrong.headers.get(header::SET_COOKIE).is_none());

    let (cookie, csrf) = sign_in(&app).await;
    let no_csrf = post(&app, "/instance/signal", Some(&cookie), form).await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);
    assert!(no_csrf.body.contains("CSRF"), "{}", no_csrf.body);
    let forged = format!("{form}&csrf={}", "0".repeat(csrf.len()));
    assert_eq!(
        post(&app, "/instance/signal", Some(&cookie), &forged)
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    let ok_form = format!("{form}&csrf={csrf}");
    let cross = Request::post("/instance/signal")
        .header(header::HOST, HOST)
        .header(header::ORIGIN, "http://evil.example")
        .header(header::COOKIE, &cookie)
        .body(Body::from(ok_form.clone()))
        .unwrap();
    let cross = send(&app, cross).await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    assert!(cross.body.contains("Cross-site"));
    let fetched = Request::post("/instance/signal")
        .header(header::HOST, HOST)
        .header("sec-fetch-site", "cross-site")
        .header(header::COOKIE, &cookie)
        .body(Body::from(ok_form.clone()))
        .unwrap();
    assert_eq!(send(&app, fetched).await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        env.client.status("wait-1").await.unwrap().status,
        Status::Running,
        "no refused request acted"
    );

    let done = post(&app, "/instance/signal", Some(&cookie), &ok_form).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    env.until_status("wait-1", Status::Completed).await;
    let history = env.client.history("wait-1").await.unwrap();
    assert!(
        history.events.iter().any(|e| matches!(
            &e.event,
            Event::OperatorAction { action, by, .. } if action == "signal" && by.starts_with("console")
        )),
        "the signal is recorded with who sent it"
    );

    let out = post(&app, "/signout", Some(&cookie), &format!("csrf={csrf}")).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    let after = post(&app, "/instance/signal", Some(&cookie), &ok_form).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED, "the session ended");
}

#[tokio::test]
async fn a_read_only_console_shows_no_actions_and_refuses_them() {
    let env = Env::start();
    env.client
        .start("approval", Some("wait-2"), &serde_json::json!({}))
        .await
        .unwrap();
    env.until_status("wait-2", Status::Running).await;
    let app = console(&env, true).await;
    let page = get(&app, "/instance?id=wait-2").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("read-only") && !page.body.contains("/instance/signal"));
    for path in ["/signin", "/instance/signal", "/dead/retry"] {
        let reply = post(
            &app,
            path,
            None,
            &format!("token={TOKEN}&id=wait-2&name=approve"),
        )
        .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path}");
        assert!(reply.body.contains("--read-only"), "{path}");
    }
}

#[tokio::test]
async fn unknown_ids_bad_parameters_and_other_hosts_get_pages_that_say_so() {
    let env = Env::start();
    let app = console(&env, false).await;
    let missing = get(&app, "/instance?id=nobody").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(
        missing
            .body
            .contains("No workflow instance has the id `nobody`")
    );
    assert_eq!(get(&app, "/nowhere").await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        get(&app, "/assets/console.0.css").await.status,
        StatusCode::NOT_FOUND
    );
    for (path, parameter) in [
        ("/instances?status=done", "status"),
        ("/instances?from=yesterday", "from"),
        ("/instances?after=x", "after"),
        ("/instances?limit=0", "limit"),
        ("/instance", "id"),
        ("/dead?since=soon", "since"),
        ("/services?window=forever", "window"),
    ] {
        let reply = get(&app, path).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(
            reply.body.contains(&format!("Parameter `{parameter}`")),
            "{path}: {}",
            reply.body
        );
    }
    let rebound = Request::get("/instances")
        .header(header::HOST, "evil.example:8480")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        send(&app, rebound).await.status,
        StatusCode::MISDIRECTED_REQUEST
    );
    let page = get(&app, "/instances").await;
    assert_eq!(page.status, StatusCode::OK);
    let csp = page.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(csp.contains("default-src 'self'") && !csp.contains("unsafe-inline"));
    assert_eq!(page.headers[header::X_FRAME_OPTIONS], "DENY");
    assert_eq!(page.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert!(!page.body.contains("<script>"), "no inline script");
    let css = page.body.split("href=\"/assets/").nth(1).unwrap();
    let css = css.split('"').next().unwrap();
    let asset = get(&app, &format!("/assets/{css}")).await;
    assert_eq!(asset.status, StatusCode::OK);
    assert!(
        asset.headers[header::CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    let big = "x".repeat(200 * 1024);
    let reply = post(&app, "/signin", None, &format!("token={big}")).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn hostile_ids_and_inputs_are_escaped_everywhere() {
    let env = Env::start();
    let id = "<script>alert(1)</script>";
    env.client
        .start(
            "approval",
            Some(id),
            &serde_json::json!({"note": "<img src=x onerror=alert(2)>"}),
        )
        .await
        .unwrap();
    env.until_status(id, Status::Running).await;
    let app = console(&env, false).await;
    let encoded = "%3Cscript%3Ealert(1)%3C%2Fscript%3E";
    for path in [
        "/instances".to_owned(),
        format!("/instances?id={encoded}"),
        format!("/instance?id={encoded}"),
        format!("/instance/live?id={encoded}"),
        "/instance?id=%3Cb%3Enobody".to_owned(),
        "/instances?status=%3Cb%3E".to_owned(),
    ] {
        let reply = get(&app, &path).await;
        assert!(
            !reply.body.contains("<script>alert")
                && !reply.body.contains("<img src=x")
                && !reply.body.contains("<b>"),
            "{path}: {}",
            reply.body
        );
    }
    let page = get(&app, &format!("/instance?id={encoded}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("&#60;script&#62;alert(1)&#60;"));
    // The query answers repeat the input's note, escaped too.
    until("the query answers are recorded", || async {
        get(&app, &format!("/instance/live?id={encoded}"))
            .await
            .body
            .contains("id=\"queries\"")
    })
    .await;
    let live = get(&app, &format!("/instance/live?id={encoded}")).await;
    assert!(
        live.body.contains("&#60;img src=x onerror=alert(2)&#62;"),
        "{}",
        live.body
    );
}

// ---- the browser ---------------------------------------------------------------------------

fn missing(what: &str) {
    let line = format!(
        "console_in_a_browser: {what}; to run it: apt-get install chromium chromium-driver (scripts/test.sh does)"
    );
    assert!(
        std::env::var_os("CI").is_none(),
        "{line} (CI is set, so a missing program fails the test)"
    );
    let _ = writeln!(std::io::stderr(), "skipped {line}");
}

/// Where a screenshot goes: `docs/` with `CODEGEN_UPDATE_SCREENSHOTS=1` (to refresh those the
/// README shows), else the target folder, so a test run leaves the checkout as it was.
fn docs(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = if std::env::var_os("CODEGEN_UPDATE_SCREENSHOTS").is_some() {
        root.join("docs")
    } else {
        let dir = root.join("target/console-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        dir
    };
    dir.join(name)
}

/// Starts `codegen flows serve`; the process and its address.
fn serve(db: &Path) -> (Killed, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_codegen"))
        .args(["flows", "serve", "--listen", "127.0.0.1:0"])
        .arg("--backend")
        .arg(format!("sqlite://{}", db.display()))
        .env("CODEGEN_CONSOLE_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let guard = Killed(child);
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first
        .strip_prefix("console: ")
        .unwrap_or_else(|| panic!("the console says where it listens first: {first}"))
        .trim_end_matches('/')
        .to_owned();
    let second = lines.next().unwrap().unwrap();
    assert!(second.contains("loopback only"), "{second}");
    let addr: SocketAddr = url.trim_start_matches("http://").parse().unwrap();
    assert!(addr.ip().is_loopback());
    let rest: Vec<String> = lines.by_ref().take(1).map_while(Result::ok).collect();
    assert!(
        rest.iter().all(|l| !l.contains(TOKEN)),
        "a token from the environment is never printed: {rest:?}"
    );
    std::thread::spawn(move || for _ in lines {});
    (guard, url)
}

async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn text_of(b: &fantoccini::Client, css: &str) -> String {
    match b.find(Locator::Css(css)).await {
        Ok(e) => e
            .text()
            .await
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
        Err(_) => String::new(),
    }
}

async fn screenshot(b: &fantoccini::Client, name: &str) {
    let png = b.screenshot().await.unwrap();
    std::fs::write(docs(name), png).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_browser() {
    if Command::new("chromedriver")
        .arg("--version")
        .output()
        .is_err()
    {
        return missing("chromedriver is not installed");
    }
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok());
    let Some(chromium) = chromium else {
        return missing("chromium is not installed");
    };

    let env = Env::start();
    for id in ["order-bob", "order-cy", "order-dee"] {
        env.client.start("order", Some(id), &id).await.unwrap();
    }
    env.client
        .start("order", Some("order-ada"), &"order-ada")
        .await
        .unwrap();
    env.client
        .start(
            "approval",
            Some("approval-7"),
            &serde_json::json!({"amount": 120}),
        )
        .await
        .unwrap();
    for id in ["order-bob", "order-cy", "order-dee"] {
        env.until_status(id, Status::Completed).await;
    }
    env.until_status("order-ada", Status::Failed).await;

    let (_console, url) = serve(&env.db());
    let port = free_port();
    let _driver = Killed(
        Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let profile = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    let binary = which(chromium);
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": binary,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--window-size=1360,900",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }),
    );
    let mut b = None;
    let deadline = Instant::now() + WAIT;
    while b.is_none() {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(client) => b = Some(client),
            Err(e) => {
                assert!(Instant::now() < deadline, "chromedriver did not start: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let b = b.unwrap();
    let result = browse(&b, &url, &env).await;
    let _ = b.close().await;
    result.unwrap();
}

fn which(program: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

async fn browse(
    b: &fantoccini::Client,
    url: &str,
    env: &Env,
) -> Result<(), fantoccini::error::CmdError> {
    // The list, its counts, a filter.
    b.goto(&format!("{url}/instances")).await?;
    let list = text_of(b, "#instances").await;
    for id in ["order-ada", "order-bob", "order-cy", "approval-7"] {
        assert!(list.contains(id), "{list}");
    }
    let counts = text_of(b, "#counts").await;
    assert!(
        counts.contains("3 completed") && counts.contains("1 failed"),
        "{counts}"
    );
    assert!(counts.contains("1 running"), "{counts}");
    screenshot(b, "console-instances.png").await;
    b.find(Locator::Id("status"))
        .await?
        .select_by_value("failed")
        .await?;
    b.find(Locator::Id("apply")).await?.click().await?;
    until("the filtered list", || async {
        b.current_url()
            .await
            .is_ok_and(|u| u.as_str().contains("status=failed"))
    })
    .await;
    let filtered = text_of(b, "#instances").await;
    assert!(
        filtered.contains("order-ada") && !filtered.contains("order-bob"),
        "{filtered}"
    );

    // One instance and its timeline: a retried attempt, then the one that succeeded.
    b.find(Locator::LinkText("order-ada"))
        .await?
        .click()
        .await?;
    until("the instance page", || async {
        text_of(b, "#instance-id").await == "order-ada"
    })
    .await;
    assert_eq!(text_of(b, "#status").await, "failed");
    let bars = b
        .find_all(Locator::Css("#timeline svg rect.bar.attempt"))
        .await?;
    assert!(
        bars.len() >= 4,
        "reserve, and three charges: {}",
        bars.len()
    );
    assert!(
        !b.find_all(Locator::Css("rect.bar.retried"))
            .await?
            .is_empty()
    );
    assert!(
        !b.find_all(Locator::Css("rect.bar.failed"))
            .await?
            .is_empty()
    );
    assert!(!b.find_all(Locator::Css("rect.bar.timer")).await?.is_empty());
    assert!(
        text_of(b, "#live")
            .await
            .contains("the card processor is down")
    );

    // Without the token an action is refused.
    let refused = b
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch('/dead/retry', {method: 'POST', body: new URLSearchParams({sel: 'x'})})
               .then(r => done(r.status), e => done(String(e)));",
            vec![],
        )
        .await?;
    assert_eq!(
        refused,
        serde_json::json!(401),
        "an action without the token"
    );

    // The dead task, signed in: retry it and watch the workflow complete.
    b.goto(&format!("{url}/dead")).await?;
    assert!(text_of(b, "#dead").await.contains("payments/charge"));
    assert!(b.find_all(Locator::Css(".retry-one")).await?.is_empty());
    b.find(Locator::LinkText("Sign in")).await?.click().await?;
    b.find(Locator::Id("token")).await?.send_keys(TOKEN).await?;
    b.find(Locator::Id("signin")).await?.click().await?;
    until("signed in, back on the dead tasks", || async {
        !b.find_all(Locator::Css(".retry-one"))
            .await
            .unwrap_or_default()
            .is_empty()
    })
    .await;
    screenshot(b, "console-dead.png").await;
    env.broken.store(false, Ordering::SeqCst);
    b.find(Locator::Css(".retry-one")).await?.click().await?;
    until("the retry is confirmed", || async {
        text_of(b, "#done").await.contains("Retried 1 dead task")
    })
    .await;
    b.goto(&format!("{url}/instance?id=order-ada")).await?;
    until("order-ada completes, seen live", || async {
        text_of(b, "#status").await == "completed"
    })
    .await;
    assert!(text_of(b, "#output").await.contains("paid order-ada"));
    screenshot(b, "console-instance.png").await;

    // A signal from the console's form, recorded as sent by the console.
    b.goto(&format!("{url}/instance?id=approval-7")).await?;
    assert_eq!(text_of(b, "#status").await, "running");
    let queries = text_of(b, "#queries").await;
    assert!(
        queries.contains("request") && queries.contains("\"waiting_for\": \"approve\""),
        "{queries}"
    );
    screenshot(b, "console-queries.png").await;
    b.find(Locator::Css("input[name=name]"))
        .await?
        .send_keys("approve")
        .await?;
    b.find(Locator::Css("input[name=payload]"))
        .await?
        .send_keys("true")
        .await?;
    b.find(Locator::Css("form[action='/instance/signal'] button"))
        .await?
        .click()
        .await?;
    until("approval-7 completes", || async {
        text_of(b, "#status").await == "completed"
    })
    .await;
    let history = env.client.history("approval-7").await.unwrap();
    assert!(history.events.iter().any(|e| matches!(
        &e.event,
        Event::OperatorAction { action, by, .. } if action == "signal" && by == "console:127.0.0.1"
    )));
    let retried = env.client.history("order-ada").await.unwrap();
    assert!(retried.events.iter().any(|e| matches!(
        &e.event,
        Event::OperatorAction { action, by, .. } if action == "retry" && by == "console:127.0.0.1"
    )));

    // Services.
    b.goto(&format!("{url}/services")).await?;
    let services = text_of(b, "#services").await;
    assert!(
        services.contains("payments") && services.contains("inventory"),
        "{services}"
    );
    screenshot(b, "console-services.png").await;
    Ok(())
}
