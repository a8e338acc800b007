//! The billing workflow in one process, without failures: a subscription ends when the user
//! unsubscribes (a signal) or when the consumption service says it is no longer active.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use billing_demo::server::{DemoServer, Faults};
use billing_demo::services;
use billing_demo::workflow::{self, Billed, Subscription};
use codegen_runtime::Client;
use codegen_runtime::backend::sqlite::SqliteBackend;
use codegen_runtime::worker::{
    Retention, ServiceWorker, ServiceWorkerOptions, WorkflowWorker, WorkflowWorkerOptions,
};
use codegen_runtime::workflow::{Clock, Workflows};
use tokio::sync::watch;

const WAIT: Duration = Duration::from_secs(30);

struct Demo {
    server: DemoServer,
    client: Client<SqliteBackend>,
    stop: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

/// Everything in this process; a month lasts 300 ms.
async fn demo() -> Demo {
    let server = DemoServer::start(SocketAddr::from(([127, 0, 0, 1], 0)), Faults::NONE)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(SqliteBackend::open(dir.path().join("billing.db")).unwrap());
    let (stop, stopped) = watch::channel(false);
    for (service, _) in services::SERVICES {
        let handlers =
            services::handlers(service, &server.url(service), Duration::from_secs(2)).unwrap();
        let worker = ServiceWorker::new(
            backend.clone(),
            services::service_name(service).unwrap(),
            handlers,
            ServiceWorkerOptions::default(),
        );
        let stopped = stopped.clone();
        tokio::spawn(async move { worker.run(stopped).await.unwrap() });
    }
    let mut workflows = Workflows::new();
    workflow::register(&mut workflows);
    let clock = Clock::scaled_from_now(30.0 * 86_400_000.0 / 300.0);
    let engine = WorkflowWorker::new(
        backend.clone(),
        workflows,
        WorkflowWorkerOptions {
            clock,
            // Retention runs on the scaled clock too: keep ended subscriptions to read them.
            retention: Retention {
                keep: None,
                ..Retention::default()
            },
            ..Default::default()
        },
    );
    tokio::spawn(async move { engine.run(stopped).await.unwrap() });
    Demo {
        server,
        client: Client::new(backend),
        stop,
        _dir: dir,
    }
}

fn subscription(user: &str) -> Subscription {
    Subscription {
        user_id: user.into(),
        email: format!("{user}@example.com"),
        months: None,
        billed: 0,
    }
}

/// Waits until `user` has been billed `months` months.
async fn billed(server: &DemoServer, user: &str, months: usize) {
    let deadline = Instant::now() + WAIT;
    while server
        .ledger()
        .payments
        .values()
        .filter(|p| p.user_id == user)
        .count()
        < months
    {
        assert!(
            Instant::now() < deadline,
            "{user} was not billed {months} months"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsubscribe_signal_ends_billing() {
    let demo = demo().await;
    let id = demo
        .client
        .start(workflow::NAME, Some("ada"), &subscription("ada"))
        .await
        .unwrap();
    billed(&demo.server, "ada", 1).await;
    demo.client
        .signal(&id, workflow::UNSUBSCRIBE, &())
        .await
        .unwrap();
    let result: Billed = demo.client.result(&id, WAIT).await.unwrap();
    assert_eq!(result.ended_by, "unsubscribed");
    assert!(result.months >= 1);
    let ledger = demo.server.ledger();
    let months: Vec<_> = ledger.payments.values().map(|p| p.month.clone()).collect();
    assert_eq!(
        months.len(),
        result.months as usize,
        "one payment per billed month: {months:?}"
    );
    assert_eq!(ledger.emails.len(), result.months as usize);
    demo.stop.send(true).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_the_service_ends_stops_billing_at_the_next_month() {
    let demo = demo().await;
    let id = demo
        .client
        .start(workflow::NAME, Some("bob"), &subscription("bob"))
        .await
        .unwrap();
    billed(&demo.server, "bob", 2).await;
    demo.server.unsubscribe("bob");
    let result: Billed = demo.client.result(&id, WAIT).await.unwrap();
    assert_eq!(result.ended_by, "inactive");
    assert!(result.months >= 2);
    assert_eq!(demo.server.ledger().payments.len(), result.months as usize);
    demo.stop.send(true).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_month_is_a_fresh_run_so_the_history_stays_one_month_long() {
    let demo = demo().await;
    let mut subscription = subscription("cy");
    subscription.months = Some(4);
    let id = demo
        .client
        .start(workflow::NAME, Some("cy"), &subscription)
        .await
        .unwrap();
    let result: Billed = demo.client.result(&id, WAIT).await.unwrap();
    assert_eq!(
        result,
        Billed {
            months: 4,
            ended_by: "done".into()
        }
    );
    // The last run only saw that four months were billed: its start and its end.
    let history = demo.client.history(&id).await.unwrap();
    let described: Vec<String> = history.events.iter().map(|e| e.event.describe()).collect();
    assert_eq!(described, ["start of monthly_billing v1", "completion"]);
    match &history.events[0].event {
        codegen_runtime::workflow::Event::WorkflowStarted { run, input, .. } => {
            assert_eq!(*run, 4, "one run per month");
            assert_eq!(input["billed"], 4);
        }
        other => panic!("the history starts with {other:?}"),
    }
    let ledger = demo.server.ledger();
    assert_eq!(ledger.payments.len(), 4, "one payment per month");
    assert_eq!(ledger.invoices.len(), 4);
    assert_eq!(ledger.emails.len(), 4);
    demo.stop.send(true).unwrap();
}
