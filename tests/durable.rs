//! Workflows calling the generated petstore crate's tasks through the durable runtime, against
//! a local HTTP server: retries with one idempotency key derived from the task id, permanent
//! failures as typed errors.

mod support;

use std::sync::Arc;
use std::time::Duration;

use codegen_runtime::backend::sqlite::SqliteBackend;
use codegen_runtime::http::HttpClient;
use codegen_runtime::worker::{
    Handlers, ServiceWorker, ServiceWorkerOptions, WorkflowWorker, WorkflowWorkerOptions,
};
use codegen_runtime::workflow::{WorkflowContext, WorkflowError, Workflows};
use codegen_runtime::{Client, ClientError, RetryPolicy};
use petstore::operations::{CreatePet, ShowPetById};
use petstore::types::NewPet;
use support::server::{Reply, Server};
use tokio::sync::watch;

const PET: &str = r#"{"id": 7, "name": "Rex", "createdAt": "2026-11-26T10:00:00Z"}"#;

fn quick() -> RetryPolicy {
    RetryPolicy::default()
        .with_initial_delay(Duration::from_millis(10))
        .with_max_attempts(4)
}

/// Creates a pet, then reads it back.
async fn adopt(ctx: WorkflowContext, name: String) -> Result<String, WorkflowError> {
    let body = NewPet {
        name,
        tag: None,
        status: None,
        birthday: None,
    };
    let created = ctx.call_with(&CreatePet { body }, quick()).await?;
    let shown = ctx
        .call_with(&ShowPetById { pet_id: created.id }, quick())
        .await?;
    Ok(format!("{} #{}", shown.name, shown.id))
}

struct Running {
    client: Client<SqliteBackend>,
    stop: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

fn run_against(server: &Server) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(SqliteBackend::open(dir.path().join("state.db")).unwrap());
    let (stop, rx) = watch::channel(false);
    let mut handlers = Handlers::new();
    petstore::operations::register_handlers(&mut handlers, &HttpClient::new(server.url()));
    let service = ServiceWorker::new(
        backend.clone(),
        petstore::SERVICE,
        handlers,
        ServiceWorkerOptions::default(),
    );
    let rx2 = rx.clone();
    tokio::spawn(async move { service.run(rx2).await.unwrap() });
    let mut workflows = Workflows::new();
    workflows.register("adopt", 1, adopt);
    let engine = WorkflowWorker::new(backend.clone(), workflows, WorkflowWorkerOptions::default());
    tokio::spawn(async move { engine.run(rx).await.unwrap() });
    Running {
        client: Client::new(backend),
        stop,
        _dir: dir,
    }
}

#[tokio::test]
async fn a_workflow_calls_the_generated_tasks_and_a_503_is_retried_with_one_idempotency_key() {
    let server = Server::start(vec![
        Reply::new(503, "busy"),
        Reply::new(201, PET),
        Reply::new(200, PET),
    ])
    .await;
    let env = run_against(&server);
    let id = env
        .client
        .start("adopt", Some("adopt-1"), &"Rex")
        .await
        .unwrap();
    assert_eq!(
        env.client
            .result::<String>(&id, Duration::from_secs(20))
            .await
            .unwrap(),
        "Rex #7"
    );

    let received = server.received();
    let targets: Vec<_> = received
        .iter()
        .map(|r| format!("{} {}", r.method, r.target))
        .collect();
    assert_eq!(targets, ["POST /pets", "POST /pets", "GET /pets/7"]);
    let keys: Vec<_> = received[..2]
        .iter()
        .map(|r| r.header("idempotency-key"))
        .collect();
    assert_eq!(
        keys,
        [Some("adopt-1/task/0"), Some("adopt-1/task/0")],
        "the key is the task id, on every attempt"
    );
    assert_eq!(
        received[2].header("idempotency-key"),
        None,
        "GET needs no key"
    );
    env.stop.send(true).unwrap();
}

#[tokio::test]
async fn a_400_fails_the_call_at_once_and_the_task_waits_in_the_dead_letters() {
    let server = Server::start(vec![Reply::new(
        400,
        r#"{"code": 400, "message": "name taken"}"#,
    )])
    .await;
    let env = run_against(&server);
    let id = env.client.start("adopt", None, &"Rex").await.unwrap();
    let err = env
        .client
        .result::<String>(&id, Duration::from_secs(20))
        .await
        .unwrap_err();
    let ClientError::Failed { message, .. } = &err else {
        panic!("{err}")
    };
    assert!(
        message.contains("400 Bad Request") && message.contains("name taken"),
        "{message}"
    );
    assert_eq!(
        server.received().len(),
        1,
        "a permanent error is not retried"
    );
    let dead = env.client.dead_tasks().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].reason.contains("400 Bad Request"),
        "{}",
        dead[0].reason
    );
    env.stop.send(true).unwrap();
}
