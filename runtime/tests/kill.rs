//! The distributed backend across processes: two workflow-worker processes and two
//! service-worker processes (this test binary run again in a worker role) share one
//! PostgreSQL and one Pulsar, chosen by a backend URL. One of each is killed with SIGKILL
//! mid-run and restarted, twice. Every workflow must complete, and the ledger (which, like a
//! real API, makes a request's effect once per idempotency key) must see one key per call:
//! no effect happens twice.
//!
//! Needs `scripts/postgres.sh start`, `scripts/pulsar.sh start` and the cargo feature `pulsar`;
//! without them it is skipped with a line saying so, or fails when `CI` is set.

// Shared with the conformance suite, of which this test uses a part.
#[allow(dead_code, unused_imports, unused_macros)]
mod backends;

#[cfg(feature = "pulsar")]
mod distributed {
    use std::process::{Child, Command, Stdio};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use codegen_runtime::backend::{Backend, StateStore, Status};
    use codegen_runtime::worker::{
        Handlers, ServiceWorker, ServiceWorkerOptions, WorkflowWorker, WorkflowWorkerOptions,
    };
    use codegen_runtime::workflow::{WorkflowContext, WorkflowError, Workflows};
    use codegen_runtime::{Client, RetryPolicy, Task, TaskError};
    use serde::{Deserialize, Serialize};
    use tokio::sync::watch;

    use super::backends;

    const WORKFLOWS: usize = 300;
    const ROLE_VAR: &str = "CODEGEN_KILL_ROLE";
    const URL_VAR: &str = "CODEGEN_KILL_BACKEND";
    const LEDGER_VAR: &str = "CODEGEN_KILL_LEDGER";

    /// Books an amount on an account: not idempotent, so the ledger dedupes by the key.
    #[derive(Debug, Serialize, Deserialize)]
    struct Book {
        account: String,
        amount: i64,
    }

    impl Task for Book {
        type Output = i64;
        const SERVICE: &'static str = "ledger";
        const NAME: &'static str = "book";
        const IDEMPOTENT: bool = false;
        fn retry_policy() -> RetryPolicy {
            RetryPolicy::default()
                .with_initial_delay(Duration::from_millis(20))
                .with_max_attempts(30)
        }
    }

    async fn billing(ctx: WorkflowContext, account: String) -> Result<i64, WorkflowError> {
        let first = ctx
            .call(&Book {
                account: account.clone(),
                amount: 10,
            })
            .await?;
        ctx.sleep(Duration::from_millis(100)).await;
        let second = ctx.call(&Book { account, amount: 5 }).await?;
        Ok(first + second)
    }

    async fn ledger(url: &str) -> tokio_postgres::Client {
        let config = codegen_runtime::backend::distributed::PostgresConfig {
            url: url.to_owned(),
            schema: None,
            pool_size: 1,
            password_file: None,
        };
        config.client().await.unwrap()
    }

    /// A worker process: runs its role until killed. A no-op unless the test below starts it.
    #[test]
    fn kill_worker_process() {
        let (Ok(role), Ok(url), Ok(ledger_table)) = (
            std::env::var(ROLE_VAR),
            std::env::var(URL_VAR),
            std::env::var(LEDGER_VAR),
        ) else {
            return;
        };
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let backend = Arc::new(Backend::open(&url).await.unwrap());
            let (_stop, rx) = watch::channel(false);
            if role == "service" {
                let db = Arc::new(ledger(&backends::postgres_url()).await);
                let mut handlers = Handlers::new();
                handlers.task(move |t: Book, ctx| {
                    let db = db.clone();
                    let table = ledger_table.clone();
                    async move {
                        // Calls take time, so kills land while some are under way.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        // The effect happens once per idempotency key; repeats count requests.
                        let row = db
                            .query_one(
                                &format!(
                                    "INSERT INTO {table} (key, account, amount) VALUES ($1, $2, $3)
                                     ON CONFLICT (key) DO UPDATE SET requests = {table}.requests + 1
                                     RETURNING amount"
                                ),
                                &[&ctx.task_id, &t.account, &t.amount],
                            )
                            .await
                            .map_err(|e| TaskError::retryable(e.to_string()))?;
                        Ok(row.get::<_, i64>(0))
                    }
                });
                let options = ServiceWorkerOptions {
                    lease: Duration::from_secs(5),
                    idle_wait: Duration::from_millis(50),
                    concurrency: 4,
                    ..Default::default()
                };
                ServiceWorker::new(backend, "ledger", handlers, options)
                    .run(rx)
                    .await
                    .unwrap();
            } else {
                let mut workflows = Workflows::new();
                workflows.register("billing", 1, billing);
                let options = WorkflowWorkerOptions {
                    lease: Duration::from_secs(5),
                    idle_wait: Duration::from_millis(50),
                    batch: 16,
                    ..Default::default()
                };
                WorkflowWorker::new(backend, workflows, options)
                    .run(rx)
                    .await
                    .unwrap();
            }
        });
    }

    fn spawn(role: &str, url: &str, table: &str) -> Child {
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "distributed::kill_worker_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ROLE_VAR, role)
            .env(URL_VAR, url)
            .env(LEDGER_VAR, table)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    fn kill(child: &mut Child) {
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }

    async fn completed(client: &Client<Backend>) -> usize {
        client
            .list(Some("billing"), Some(Status::Completed), WORKFLOWS * 2)
            .await
            .unwrap()
            .len()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn workflows_complete_once_with_workers_killed_on_both_sides() {
        let name = "distributed::workflows_complete_once_with_workers_killed_on_both_sides";
        let schema = backends::unique("kill");
        let url = backends::distributed_url(&format!(
            "schema={schema}&pulsar_prefix={}-",
            schema.replace('_', "-")
        ));
        let backend = match Backend::open(&url).await {
            Ok(b) => Arc::new(b),
            Err(err) => {
                backends::unreachable_or_panic(
                    name,
                    "PostgreSQL and Pulsar",
                    "scripts/postgres.sh start && scripts/pulsar.sh start",
                    err,
                );
                return;
            }
        };
        let table = format!("{schema}.ledger");
        let db = ledger(&backends::postgres_url()).await;
        db.batch_execute(&format!(
            "CREATE TABLE {table} (key TEXT PRIMARY KEY, account TEXT NOT NULL, amount BIGINT NOT NULL, requests INTEGER NOT NULL DEFAULT 1)"
        ))
        .await
        .unwrap();

        let mut workflow_workers = [
            spawn("workflow", &url, &table),
            spawn("workflow", &url, &table),
        ];
        let mut service_workers = [
            spawn("service", &url, &table),
            spawn("service", &url, &table),
        ];
        let client = Client::new(backend.clone());
        // Started over about 3 s rather than at once: no workflow completes before it starts,
        // so the kills below come while work remains however fast the workers are (started
        // at once, all of them could complete before the second kill).
        let starting = {
            let client = client.clone();
            tokio::spawn(async move {
                for n in 0..WORKFLOWS {
                    client
                        .start("billing", Some(&format!("bill-{n}")), &format!("acct-{n}"))
                        .await
                        .unwrap();
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        };
        // Kill one of each side mid-run, twice, and restart it.
        let mut killed_at = Vec::new();
        for (round, progress) in [WORKFLOWS / 10, WORKFLOWS * 4 / 10].into_iter().enumerate() {
            let deadline = Instant::now() + Duration::from_secs(60);
            while completed(&client).await < progress && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            killed_at.push(completed(&client).await);
            kill(&mut workflow_workers[round]);
            kill(&mut service_workers[1 - round]);
            tokio::time::sleep(Duration::from_millis(300)).await;
            workflow_workers[round] = spawn("workflow", &url, &table);
            service_workers[1 - round] = spawn("service", &url, &table);
        }
        starting.await.unwrap();
        println!("completed when the kills came: {killed_at:?} of {WORKFLOWS}");
        assert!(
            killed_at[1] < WORKFLOWS,
            "the kills came too late to test anything"
        );

        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let done = completed(&client).await;
            if done == WORKFLOWS {
                break;
            }
            if Instant::now() > deadline {
                let open: Vec<_> = client
                    .list(Some("billing"), None, WORKFLOWS * 2)
                    .await
                    .unwrap()
                    .into_iter()
                    .filter(|i| i.status != Status::Completed)
                    .map(|i| (i.id, i.status, i.events, i.error))
                    .collect();
                for c in workflow_workers
                    .iter_mut()
                    .chain(service_workers.iter_mut())
                {
                    kill(c);
                }
                panic!("only {done} of {WORKFLOWS} workflows completed; the others: {open:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for c in workflow_workers
            .iter_mut()
            .chain(service_workers.iter_mut())
        {
            kill(c);
        }

        // One key per call, each the call's task id, so each effect happened once.
        let rows = db
            .query(
                &format!("SELECT key, account, amount, requests FROM {table} ORDER BY key"),
                &[],
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), WORKFLOWS * 2, "two booked calls per workflow");
        let requests: i64 = rows.iter().map(|r| i64::from(r.get::<_, i32>(3))).sum();
        for n in 0..WORKFLOWS {
            let id = format!("bill-{n}");
            for (seq, amount) in [(0, 10_i64), (2, 5)] {
                let key = format!("{id}/task/{seq}");
                let row = rows
                    .iter()
                    .find(|r| r.get::<_, String>(0) == key)
                    .unwrap_or_else(|| panic!("no booking with key {key}"));
                assert_eq!(
                    (row.get::<_, String>(1), row.get::<_, i64>(2)),
                    (format!("acct-{n}"), amount)
                );
            }
            let info = backend.instance(&id).await.unwrap().unwrap();
            assert_eq!(info.output, Some(serde_json::json!(15)), "{id}");
        }
        println!(
            "{requests} requests for {} bookings across 4 kills",
            WORKFLOWS * 2
        );
    }
}

/// Without the `pulsar` feature there is no distributed backend to kill workers of.
#[cfg(not(feature = "pulsar"))]
#[test]
fn workflows_complete_once_with_workers_killed_on_both_sides() {
    backends::missing(
        "workflows_complete_once_with_workers_killed_on_both_sides",
        "this test binary was built without the `pulsar` feature",
        "scripts/postgres.sh start && scripts/pulsar.sh start && cargo test -p codegen-runtime --features pulsar --test kill",
    );
}
