//! Chaos test: 200 subscriptions billed for 3 months while the services fail 20% of requests
//! with 5xx and time out on 5%, and the worker processes (four service workers and the workflow
//! worker) are killed with SIGKILL and restarted several times. Every workflow must bill all
//! its months, with exactly one payment, invoice and email per user and month.

mod common;

use std::sync::Arc;
use std::time::Duration;

use codegen_runtime::Client;
use codegen_runtime::backend::sqlite::SqliteBackend;
use common::{MONTHS, Rng, USERS, Workers};

const ROUNDS: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_month_is_billed_once_through_failures_and_kills() {
    let server = common::faulty_server().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("billing.db");
    let client = Client::new(Arc::new(SqliteBackend::open(&db).unwrap()));
    common::subscribe_all(&client).await;

    let mut rng = Rng::seeded();
    let mut workers = Workers::start(&db.to_string_lossy(), &server, 1_000, None);
    let mut kills = 0;
    for _ in 0..ROUNDS {
        tokio::time::sleep(Duration::from_millis(400 + rng.below(1200))).await;
        kills += workers.kill_random_half(&mut rng);
    }
    let progress = server.ledger().payments.len();
    println!(
        "{kills} kills; {progress} of {} payments made while killing",
        USERS * MONTHS as usize
    );
    common::all_completed(&client, Duration::from_secs(240)).await;
    drop(workers);
    common::billed_once(&client, &server).await;
}
