//! Flow control across processes: three `petstore-worker` processes share one SQLite file and
//! a global limit of tasks in flight and a rate; a local API that counts the requests under way
//! at once and when each came checks that neither was ever exceeded, and that a 429 with
//! `Retry-After` made every worker back off, not just the one that got it.

mod support;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use codegen_runtime::Client;
use codegen_runtime::backend::Status;
use codegen_runtime::backend::sqlite::SqliteBackend;
use codegen_runtime::worker::{WorkflowWorker, WorkflowWorkerOptions};
use codegen_runtime::workflow::Workflows;
use support::Killed;
use support::petstore::{PET, adopt, build_worker};
use tokio::sync::watch;

const WORKERS: usize = 3;
const WORKFLOWS: usize = 40;
const MAX_IN_FLIGHT: usize = 3;
const RATE: f64 = 40.0;
const BURST: usize = 4;
/// The request answered 429 with `Retry-After: 1`.
const THROTTLED: usize = 20;

/// What the API saw.
#[derive(Default)]
struct Seen {
    /// When each request came and when it was answered, from the start of the test.
    requests: Vec<(Duration, Duration)>,
    /// When the 429 was answered.
    throttled_at: Option<Duration>,
}

struct Api {
    started: Instant,
    /// Requests that have come so far, counted as each comes: two under way at once get
    /// different numbers.
    arrived: AtomicUsize,
    under_way: AtomicUsize,
    most_under_way: AtomicUsize,
    seen: Mutex<Seen>,
}

async fn answer(api: Arc<Api>) -> axum::response::Response {
    let came = api.started.elapsed();
    let now = api.under_way.fetch_add(1, Ordering::SeqCst) + 1;
    api.most_under_way.fetch_max(now, Ordering::SeqCst);
    let number = api.arrived.fetch_add(1, Ordering::SeqCst);
    // A real API takes time: calls overlap when the workers let them.
    tokio::time::sleep(Duration::from_millis(30)).await;
    api.under_way.fetch_sub(1, Ordering::SeqCst);
    let mut seen = api.seen.lock().unwrap();
    seen.requests.push((came, api.started.elapsed()));
    if number == THROTTLED && seen.throttled_at.is_none() {
        seen.throttled_at = Some(api.started.elapsed());
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "1".parse().unwrap());
        return (StatusCode::TOO_MANY_REQUESTS, headers, "slow down").into_response();
    }
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        PET.to_owned(),
    )
        .into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_limits_hold_across_worker_processes_and_a_retry_after_pauses_them_all() {
    let binary = tokio::task::spawn_blocking(|| build_worker("petstore"))
        .await
        .unwrap();
    let api = Arc::new(Api {
        started: Instant::now(),
        arrived: AtomicUsize::new(0),
        under_way: AtomicUsize::new(0),
        most_under_way: AtomicUsize::new(0),
        seen: Mutex::default(),
    });
    let routes = {
        let (a, b) = (api.clone(), api.clone());
        Router::new()
            .route("/pets", post(move || answer(a.clone())))
            .route("/pets/{id}", get(move || answer(b.clone())))
    };
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, routes).await });

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db").to_string_lossy().into_owned();
    let backend = Arc::new(SqliteBackend::open(&db).unwrap());
    let client = Client::new(backend.clone());
    for n in 0..WORKFLOWS {
        client
            .start("adopt", Some(&format!("pet-{n}")), &format!("Rex {n}"))
            .await
            .unwrap();
    }
    let _workers: Vec<Killed> = (0..WORKERS)
        .map(|_| {
            let child = Command::new(&binary)
                .args(["--backend", &format!("sqlite://{db}"), "--base-url", &url])
                .args(["--max-in-flight-global", &MAX_IN_FLIGHT.to_string()])
                .args(["--rate", &RATE.to_string(), "--burst", &BURST.to_string()])
                // Each process could run far more alone.
                .args(["--concurrency", "16"])
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("petstore-worker starts");
            Killed(child)
        })
        .collect();
    let (_stop, stopped) = watch::channel(false);
    let mut workflows = Workflows::new();
    workflows.register("adopt", 1, adopt);
    let engine = WorkflowWorker::new(backend, workflows, WorkflowWorkerOptions::default());
    tokio::spawn(async move { engine.run(stopped).await });

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = client
            .list(Some("adopt"), Some(Status::Completed), WORKFLOWS * 2)
            .await
            .unwrap()
            .len();
        if done == WORKFLOWS {
            break;
        }
        assert!(Instant::now() < deadline, "{done} of {WORKFLOWS} completed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let seen = api.seen.lock().unwrap();
    let most = api.most_under_way.load(Ordering::SeqCst);
    let mut came: Vec<Duration> = seen.requests.iter().map(|(c, _)| *c).collect();
    came.sort();
    println!(
        "{} requests; at most {most} under way at once (limit {MAX_IN_FLIGHT})",
        came.len()
    );
    assert_eq!(
        came.len(),
        WORKFLOWS * 2 + 1,
        "two calls a workflow, one retried"
    );
    assert!(
        most <= MAX_IN_FLIGHT,
        "{most} requests were under way at once"
    );
    assert!(most >= 2, "the workers did run calls at once: {most}");

    // The rate, with its burst: no window of time holds more requests than the bucket allows.
    // The API sees a request some time after its permit was taken (a worker takes permits,
    // then receives the tasks from the store, which may wait for another process's write, then
    // calls), and that time varies (three worker processes and this one share two cores): up
    // to 200 ms of it is allowed for, which is 8 requests at this rate (100 ms was exceeded by
    // one request in a loaded run); without the limit the 81 requests come in 0.3 s, and at
    // twice the rate a second would hold 84 requests against 52 allowed.
    for (i, start) in came.iter().enumerate() {
        for (j, end) in came.iter().enumerate().skip(i + 1) {
            let span = (*end - *start).as_secs_f64();
            let allowed = BURST as f64 + RATE * (span + 0.2);
            let count = (j - i + 1) as f64;
            assert!(
                count <= allowed,
                "{count} requests in {span:.3} s: more than the rate allows ({allowed:.1})"
            );
        }
    }

    // After the 429 with `Retry-After: 1`, no worker started a call for that second (those
    // already taken may start at once).
    let throttled = seen.throttled_at.expect("the API throttled once");
    let during: Vec<_> = came
        .iter()
        .filter(|c| {
            **c > throttled + Duration::from_millis(150)
                && **c < throttled + Duration::from_millis(900)
        })
        .collect();
    assert!(
        during.is_empty(),
        "calls started while the service backed off: {during:?} after the 429 at {throttled:?}"
    );
}
