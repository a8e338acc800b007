//! A worker process that starts while its backend cannot be reached (the database is still
//! starting, the broker is restarting) waits for it instead of exiting, and one whose URL is
//! wrong in itself is told at once.

use std::time::{Duration, Instant};

use codegen_runtime::backend::{Backend, BackendError, BackendUrl};

use crate::backends::distributed_url;

/// A loopback port nobody listens on (free when asked).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Forwards every connection `listener` accepts to the server at `to`, until aborted.
fn forward(listener: tokio::net::TcpListener, to: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let to = to.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&to).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    })
}

#[tokio::test]
async fn a_worker_opening_its_backend_before_the_database_listens_waits_for_it() {
    let test = "a_worker_opening_its_backend_before_the_database_listens_waits_for_it";
    if crate::backends::pulsar(test).await.is_none() {
        return;
    }
    let pg_port = std::env::var("PG_PORT").unwrap_or_else(|_| "15432".to_owned());
    let real = format!("127.0.0.1:{pg_port}");
    let url = distributed_url("");
    if !url.contains(&format!("@{real}/")) {
        // CODEGEN_TEST_POSTGRES names another server: the port to stand in for is unknown.
        crate::backends::missing(
            test,
            "the scripts' PostgreSQL",
            "unset CODEGEN_TEST_POSTGRES",
        );
        return;
    }
    // The database's address, where nothing listens yet.
    let port = free_port();
    let url = url.replace(&format!("@{real}/"), &format!("@127.0.0.1:{port}/"));
    let parsed = BackendUrl::parse(&url).unwrap();
    let started = Instant::now();
    let opening =
        tokio::spawn(async move { Backend::open_when_available(&parsed, "service").await });

    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(
        !opening.is_finished(),
        "returned while the database was unreachable: {:?}",
        opening.await.unwrap().map(|_| "a backend")
    );

    // The database comes up at that address: the real server behind a forwarder, so TLS
    // with the certificate checked, and the password, are those of a direct connection.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let forwarder = forward(listener, real);
    let opened = tokio::time::timeout(Duration::from_secs(30), opening)
        .await
        .expect("the backend opens within 30 s of the database listening")
        .unwrap();
    forwarder.abort();
    let backend = opened.expect("the backend opens once the database listens");
    assert!(started.elapsed() >= Duration::from_millis(900));
    drop(backend);
}

#[tokio::test]
async fn a_worker_whose_backend_url_is_wrong_in_itself_is_told_at_once() {
    let url = distributed_url("pulsar_tenant=no!such");
    let parsed = BackendUrl::parse(&url).unwrap();
    let started = Instant::now();
    let err = Backend::open_when_available(&parsed, "service")
        .await
        .map(|_| "a backend")
        .unwrap_err();
    assert!(
        matches!(&err, BackendError::Invalid(m) if m.contains("no!such")),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "{err}");
}
