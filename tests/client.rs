//! The generated petstore client (generated-example/petstore) against a local HTTP server:
//! transient failures are retried, permanent ones are not, `Retry-After` is honoured, and
//! requests carry what the spec says.

mod support;

use std::time::Duration;

use codegen_runtime::http::{CallOptions, HttpClient};
use codegen_runtime::{RetryPolicy, Task};
use petstore::operations::{CreatePet, ListPets, ShowPetById};
use petstore::types::{NewPet, PetStatus};
use support::server::{Reply, Server};

const PET: &str =
    r#"{"id": 7, "name": "Rex", "createdAt": "2026-11-26T10:00:00Z", "status": "available"}"#;

/// A client whose retries are quick, so that tests measure only what the server asks for.
fn client(server: &Server) -> petstore::Client {
    let policy = RetryPolicy::default()
        .with_initial_delay(Duration::from_millis(5))
        .with_max_attempts(4);
    petstore::Client::from_http(HttpClient::new(server.url()).with_retry_policy(policy))
}

#[tokio::test]
async fn a_503_is_retried_and_the_call_succeeds() {
    let server = Server::start(vec![Reply::new(503, "busy"), Reply::new(200, PET)]).await;
    let pet = client(&server)
        .show_pet_by_id(&ShowPetById { pet_id: 7 })
        .await
        .unwrap();
    assert_eq!(pet.id, 7);
    assert_eq!(pet.name, "Rex");
    assert_eq!(pet.status, Some(PetStatus::Available));
    let received = server.received();
    assert_eq!(received.len(), 2);
    assert!(
        received
            .iter()
            .all(|r| r.method == "GET" && r.target == "/pets/7"),
        "{received:?}"
    );
}

#[tokio::test]
async fn a_400_is_not_retried_and_carries_status_and_body() {
    let server = Server::start(vec![
        Reply::new(400, r#"{"code": 400, "message": "bad limit"}"#),
        Reply::new(200, "[]"),
    ])
    .await;
    let err = client(&server)
        .list_pets(&ListPets {
            limit: Some(-1),
            status: None,
            x_request_id: None,
        })
        .await
        .unwrap_err();
    assert!(!err.is_retryable());
    assert_eq!(err.status(), Some(400));
    assert!(err.body().unwrap().contains("bad limit"));
    assert_eq!(
        server.received().len(),
        1,
        "a permanent error is tried once"
    );
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let server = Server::start(vec![
        Reply::new(503, "later").header("Retry-After", "1"),
        Reply::new(200, PET),
    ])
    .await;
    let started = std::time::Instant::now();
    client(&server)
        .show_pet_by_id(&ShowPetById { pet_id: 7 })
        .await
        .unwrap();
    let received = server.received();
    assert_eq!(received.len(), 2);
    let waited = received[1].at - received[0].at;
    assert!(
        waited >= Duration::from_millis(950),
        "waited {waited:?}, the server asked for 1 s"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn retries_stop_after_the_last_attempt_with_the_last_error() {
    let server = Server::start(vec![
        Reply::new(502, "a"),
        Reply::new(429, "b"),
        Reply::new(500, "c"),
        Reply::new(503, "d"),
    ])
    .await;
    let err = client(&server)
        .show_pet_by_id(&ShowPetById { pet_id: 1 })
        .await
        .unwrap_err();
    assert!(err.is_retryable());
    assert_eq!((err.status(), err.body()), (Some(503), Some("d")));
    assert_eq!(server.received().len(), 4);
}

#[tokio::test]
async fn a_refused_connection_is_retryable() {
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", unused.local_addr().unwrap());
    drop(unused);
    let policy = RetryPolicy::default()
        .with_initial_delay(Duration::from_millis(1))
        .with_max_attempts(2);
    let client = petstore::Client::from_http(HttpClient::new(url).with_retry_policy(policy));
    let err = client
        .show_pet_by_id(&ShowPetById { pet_id: 1 })
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(err.message().contains("cannot connect"), "{err}");
}

#[tokio::test]
async fn a_post_keeps_one_idempotency_key_across_attempts() {
    let server = Server::start(vec![
        Reply::new(500, "oops"),
        Reply::new(503, "busy"),
        Reply::new(201, PET),
    ])
    .await;
    let request = CreatePet {
        body: NewPet {
            name: "Rex".into(),
            tag: None,
            status: Some(PetStatus::Pending),
            birthday: None,
        },
    };
    const { assert!(!CreatePet::IDEMPOTENT) };
    client(&server).create_pet(&request).await.unwrap();
    let received = server.received();
    let keys: Vec<_> = received
        .iter()
        .map(|r| r.header("idempotency-key").unwrap().to_owned())
        .collect();
    assert_eq!(keys.len(), 3);
    assert!(keys.iter().all(|k| *k == keys[0]), "{keys:?}");
    assert_eq!(received[0].header("content-type"), Some("application/json"));
    let body: serde_json::Value = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"name": "Rex", "status": "pending"})
    );

    // The durable runtime passes the key it derives from the task id.
    let server = Server::start(vec![Reply::new(201, PET)]).await;
    let options = CallOptions {
        idempotency_key: Some("task-42".into()),
        ..CallOptions::default()
    };
    client(&server).call(&request, &options).await.unwrap();
    assert_eq!(
        server.received()[0].header("idempotency-key"),
        Some("task-42")
    );
}

#[tokio::test]
async fn parameters_reach_the_server_as_the_spec_says() {
    let server = Server::start(vec![Reply::new(200, &format!("[{PET}]"))]).await;
    let id = "6f1c2a4e-8a0b-4e34-9d2c-3f0a9b8c7d6e".parse().unwrap();
    let request = ListPets {
        limit: Some(20),
        status: Some(vec![PetStatus::Available, PetStatus::Sold]),
        x_request_id: Some(id),
    };
    let pets = client(&server).list_pets(&request).await.unwrap();
    assert_eq!(pets.len(), 1);
    let received = &server.received()[0];
    assert_eq!(
        received.target,
        "/pets?limit=20&status=available&status=sold"
    );
    assert_eq!(
        received.header("x-request-id"),
        Some("6f1c2a4e-8a0b-4e34-9d2c-3f0a9b8c7d6e")
    );
    assert_eq!(
        received.header("idempotency-key"),
        None,
        "GET is idempotent by itself"
    );
}

#[tokio::test]
async fn a_response_that_does_not_match_the_spec_is_a_permanent_error() {
    let server = Server::start(vec![Reply::new(200, r#"{"id": "not a number"}"#)]).await;
    let err = client(&server)
        .show_pet_by_id(&ShowPetById { pet_id: 7 })
        .await
        .unwrap_err();
    assert!(!err.is_retryable());
    assert!(
        err.message().contains("does not match the API description"),
        "{err}"
    );
    assert_eq!(err.status(), Some(200));
    assert_eq!(server.received().len(), 1);
}
