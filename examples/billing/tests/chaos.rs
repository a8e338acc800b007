//! Chaos test: 200 subscriptions billed for 3 months while the services fail 20% of requests
//! with 5xx and time out on 5%, and the worker processes (four service workers and the workflow
//! worker) are killed with SIGKILL and restarted several times. Every workflow must bill all
//! its months, with exactly one payment, invoice and email per user and month.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use billing_demo::server::{DemoServer, Faults, Ledger};
use billing_demo::workflow::{self, Subscription};
use codegen_runtime::Client;
use codegen_runtime::backend::Status;
use codegen_runtime::backend::sqlite::SqliteBackend;

const USERS: usize = 200;
const MONTHS: u32 = 3;
const ROUNDS: usize = 5;
const SERVICES: [&str; 4] = ["consumption", "payment", "invoice", "email"];

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The worker processes: one per service, and the workflow worker last.
fn spawn(which: usize, db: &Path, server: &DemoServer, clock_origin: i64) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_billing-demo"));
    match SERVICES.get(which) {
        Some(service) => command.args([
            "worker",
            "--service",
            service,
            "--timeout-ms",
            "300",
            "--base-url",
            &server.url(service),
        ]),
        None => command.args([
            "workflows",
            "--month-ms",
            "1000",
            "--clock-origin",
            &clock_origin.to_string(),
        ]),
    };
    command
        .arg("--db")
        .arg(db)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("billing-demo starts")
}

/// A small deterministic generator, seeded from the clock and printed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

fn once_per_user_month(what: &str, book: &BTreeMap<String, billing_demo::server::Effect>) {
    let mut counts: BTreeMap<(&str, &str), u32> = BTreeMap::new();
    for effect in book.values() {
        *counts.entry((&effect.user_id, &effect.month)).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "{what} made twice: {twice:?}");
    assert_eq!(
        counts.len(),
        USERS * MONTHS as usize,
        "{what}: one per user and month"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_month_is_billed_once_through_failures_and_kills() {
    let faults = Faults {
        error_rate: 0.2,
        timeout_rate: 0.05,
        hang: Duration::from_millis(800),
        latency: Duration::from_millis(2),
    };
    let server = DemoServer::start(SocketAddr::from(([127, 0, 0, 1], 0)), faults)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("billing.db");
    let client = Client::new(Arc::new(SqliteBackend::open(&db).unwrap()));
    for user in 0..USERS {
        let subscription = Subscription {
            user_id: format!("user-{user}"),
            email: format!("user-{user}@example.com"),
            months: Some(MONTHS),
            billed: 0,
        };
        client
            .start(
                workflow::NAME,
                Some(&format!("billing-user-{user}")),
                &subscription,
            )
            .await
            .unwrap();
    }

    let origin = now_ms();
    let seed = std::env::var("CODEGEN_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| now_ms() as u64);
    println!("chaos seed: {seed} (set CODEGEN_CHAOS_SEED to repeat)");
    let mut rng = Rng(seed);
    let mut workers: Vec<Child> = (0..=SERVICES.len())
        .map(|w| spawn(w, &db, &server, origin))
        .collect();
    let mut kills = 0;
    for _ in 0..ROUNDS {
        tokio::time::sleep(Duration::from_millis(400 + rng.below(1200))).await;
        // Kill a random half of the processes (at least one), then start them again.
        let first = rng.below(workers.len() as u64) as usize;
        for (w, child) in workers.iter_mut().enumerate() {
            if w == first || rng.below(2) == 0 {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
                *child = spawn(w, &db, &server, origin);
            }
        }
    }
    let progress = server.ledger().payments.len();
    println!(
        "{kills} kills; {progress} of {} payments made while killing",
        USERS * MONTHS as usize
    );

    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let instances = client
            .list(Some(workflow::NAME), None, USERS * 2)
            .await
            .unwrap();
        if instances.iter().all(|i| i.status != Status::Running) {
            let unfinished: Vec<_> = instances
                .iter()
                .filter(|i| i.status != Status::Completed)
                .map(|i| (&i.id, i.status, &i.error))
                .collect();
            assert!(unfinished.is_empty(), "not completed: {unfinished:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "stuck: {} of {USERS} workflows still running",
            instances
                .iter()
                .filter(|i| i.status == Status::Running)
                .count()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for mut child in workers {
        child.kill().unwrap();
        child.wait().unwrap();
    }

    for user in 0..USERS {
        let info = client
            .status(&format!("billing-user-{user}"))
            .await
            .unwrap();
        let billed: workflow::Billed = serde_json::from_value(info.output.unwrap()).unwrap();
        assert_eq!(
            (billed.months, billed.ended_by.as_str()),
            (MONTHS, "done"),
            "user-{user}"
        );
    }
    let Ledger {
        payments,
        invoices,
        emails,
        requests,
        injected_errors,
        injected_timeouts,
        ..
    } = server.ledger();
    once_per_user_month("payments", &payments);
    once_per_user_month("invoices", &invoices);
    once_per_user_month("emails", &emails);
    assert!(client.dead_tasks().await.unwrap().is_empty());
    println!(
        "{requests} requests; {injected_errors} 5xx and {injected_timeouts} timeouts injected"
    );
}
