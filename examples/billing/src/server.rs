//! A demo server for the four billing APIs, on 127.0.0.1, that injects failures and keeps a
//! ledger of what it did, so a test can count payments per idempotency key.
//!
//! Paths are those of the specs under `/consumption`, `/payment`, `/invoice` and `/email`.
//! A POST with an `Idempotency-Key` already seen returns the first answer and does nothing
//! again, as a real payment API does.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::Rng;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// What goes wrong, and how often.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    /// Share of requests answered 503 before doing anything.
    pub error_rate: f64,
    /// Share of requests that do their work, then answer only after `hang` (the client times out).
    pub timeout_rate: f64,
    /// How long a timed-out request hangs.
    pub hang: Duration,
    /// Added to every request.
    pub latency: Duration,
}

impl Faults {
    /// No failures.
    pub const NONE: Self = Self {
        error_rate: 0.0,
        timeout_rate: 0.0,
        hang: Duration::from_secs(2),
        latency: Duration::ZERO,
    };
}

/// One effect the server made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effect {
    /// The user it was for.
    pub user_id: String,
    /// The month it was for (empty for emails).
    pub month: String,
    /// The id the server gave it.
    pub id: String,
}

/// What the server did.
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    /// Payments by idempotency key.
    pub payments: BTreeMap<String, Effect>,
    /// Invoices by idempotency key.
    pub invoices: BTreeMap<String, Effect>,
    /// Emails by idempotency key.
    pub emails: BTreeMap<String, Effect>,
    /// Requests received.
    pub requests: u64,
    /// Requests answered 503 on purpose.
    pub injected_errors: u64,
    /// Requests left hanging on purpose.
    pub injected_timeouts: u64,
    /// Users who unsubscribed.
    pub unsubscribed: BTreeSet<String>,
}

#[derive(Default)]
struct Shared {
    ledger: Mutex<Ledger>,
    faults: Mutex<Option<Faults>>,
}

impl Shared {
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn faults(&self) -> Faults {
        self.faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unwrap_or(Faults::NONE)
    }
}

/// The running demo server.
pub struct DemoServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl DemoServer {
    /// Starts the server on `addr` (port 0 for any free port) with `faults`.
    pub async fn start(addr: SocketAddr, faults: Faults) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        *shared.faults.lock().unwrap_or_else(|p| p.into_inner()) = Some(faults);
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(serve(listener, shared.clone()));
        Ok(Self { addr, shared, task })
    }

    /// The base URL of one service: `consumption`, `payment`, `invoice` or `email`.
    pub fn url(&self, service: &str) -> String {
        format!("http://{}/{service}", self.addr)
    }

    /// A copy of the ledger.
    pub fn ledger(&self) -> Ledger {
        self.shared.ledger().clone()
    }

    /// Changes the failures injected from now on.
    pub fn set_faults(&self, faults: Faults) {
        *self.shared.faults.lock().unwrap_or_else(|p| p.into_inner()) = Some(faults);
    }

    /// Marks a user as no longer subscribed.
    pub fn unsubscribe(&self, user_id: &str) {
        self.shared.ledger().unsubscribed.insert(user_id.to_owned());
    }

    /// Crashes the server: connections are refused for `down`, then it serves again on the same
    /// address with its ledger.
    pub async fn crash(&mut self, down: Duration) -> std::io::Result<()> {
        self.task.abort();
        let _ = (&mut self.task).await;
        tokio::time::sleep(down).await;
        let listener = TcpListener::bind(self.addr).await?;
        self.task = tokio::spawn(serve(listener, self.shared.clone()));
        Ok(())
    }
}

impl Drop for DemoServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let app = Router::new()
        .route("/consumption/subscriptions/{user_id}", get(subscription))
        .route("/consumption/users/{user_id}/consumption", get(consumption))
        .route("/payment/payments", post(payment))
        .route("/invoice/invoices", post(invoice))
        .route("/email/emails", post(email))
        .layer(middleware::from_fn_with_state(shared.clone(), inject))
        .with_state(shared);
    let _ = axum::serve(listener, app).await;
}

/// Fails requests as the faults say.
async fn inject(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let faults = shared.faults();
    let (fail, hang) = {
        let mut rng = rand::rng();
        (
            rng.random_bool(faults.error_rate.clamp(0.0, 1.0)),
            rng.random_bool(faults.timeout_rate.clamp(0.0, 1.0)),
        )
    };
    {
        let mut ledger = shared.ledger();
        ledger.requests += 1;
        ledger.injected_errors += u64::from(fail);
        ledger.injected_timeouts += u64::from(hang && !fail);
    }
    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    if fail {
        return (StatusCode::SERVICE_UNAVAILABLE, "injected failure").into_response();
    }
    let response = next.run(request).await;
    if hang {
        // The work is done; the answer comes too late for the client.
        tokio::time::sleep(faults.hang).await;
    }
    response
}

async fn subscription(
    State(shared): State<Arc<Shared>>,
    Path(user_id): Path<String>,
) -> Json<Value> {
    let active = !shared.ledger().unsubscribed.contains(&user_id);
    Json(json!({ "userId": user_id, "active": active, "plan": "basic" }))
}

#[derive(Deserialize)]
struct MonthQuery {
    month: String,
}

async fn consumption(Path(user_id): Path<String>, Query(q): Query<MonthQuery>) -> Json<Value> {
    // A stable made-up figure per user and month.
    let units = format!("{user_id}{}", q.month)
        .bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
        % 1000;
    Json(json!({ "userId": user_id, "month": q.month, "units": units, "amountCents": units * 12 }))
}

/// Records an effect once per idempotency key; the same answer for a repeated key. `None`
/// when the request has no key.
fn once(
    shared: &Shared,
    headers: &HeaderMap,
    book: fn(&mut Ledger) -> &mut BTreeMap<String, Effect>,
    prefix: &str,
    user_id: &str,
    month: &str,
) -> Option<String> {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())?
        .to_owned();
    let mut ledger = shared.ledger();
    let entries = book(&mut ledger);
    let next = entries.len() + 1;
    let effect = entries.entry(key).or_insert_with(|| Effect {
        user_id: user_id.to_owned(),
        month: month.to_owned(),
        id: format!("{prefix}-{next}"),
    });
    Some(effect.id.clone())
}

fn missing_key() -> Response {
    (
        StatusCode::BAD_REQUEST,
        "an Idempotency-Key header is required",
    )
        .into_response()
}

async fn payment(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let (user, month) = (
        body["userId"].as_str().unwrap_or(""),
        body["month"].as_str().unwrap_or(""),
    );
    match once(&shared, &headers, |l| &mut l.payments, "pay", user, month) {
        Some(id) => (
            StatusCode::CREATED,
            Json(json!({ "paymentId": id, "status": "accepted" })),
        )
            .into_response(),
        None => missing_key(),
    }
}

async fn invoice(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let (user, month) = (
        body["userId"].as_str().unwrap_or(""),
        body["month"].as_str().unwrap_or(""),
    );
    match once(&shared, &headers, |l| &mut l.invoices, "inv", user, month) {
        Some(id) => (StatusCode::CREATED, Json(json!({ "invoiceId": id }))).into_response(),
        None => missing_key(),
    }
}

async fn email(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let to = body["to"].as_str().unwrap_or("");
    let month = body["subject"]
        .as_str()
        .and_then(|s| s.rsplit(' ').next())
        .unwrap_or("");
    match once(&shared, &headers, |l| &mut l.emails, "msg", to, month) {
        Some(id) => (StatusCode::ACCEPTED, Json(json!({ "messageId": id }))).into_response(),
        None => missing_key(),
    }
}
