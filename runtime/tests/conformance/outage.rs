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

/// A forwarder to the broker that can be cut, as a broker that goes away: its connections are
/// closed and its port refuses new ones until it is opened again.
#[cfg(feature = "pulsar")]
struct Cuttable {
    port: u16,
    to: String,
    cut: tokio::sync::watch::Sender<bool>,
    accepting: Option<tokio::task::JoinHandle<()>>,
}

#[cfg(feature = "pulsar")]
impl Cuttable {
    async fn open(port: u16, to: String) -> Self {
        let mut forwarder = Self {
            port,
            to,
            cut: tokio::sync::watch::channel(false).0,
            accepting: None,
        };
        forwarder.reopen().await;
        forwarder
    }

    async fn reopen(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap();
        self.cut.send_replace(false);
        let (to, cut) = (self.to.clone(), self.cut.clone());
        self.accepting = Some(tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let (to, mut cut) = (to.clone(), cut.subscribe());
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&to).await {
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            _ = cut.wait_for(|cut| *cut) => {}
                        }
                    }
                });
            }
        }));
    }

    fn cut(&mut self) {
        if let Some(accepting) = self.accepting.take() {
            accepting.abort();
        }
        self.cut.send_replace(true);
    }
}

#[cfg(feature = "pulsar")]
impl Drop for Cuttable {
    fn drop(&mut self) {
        self.cut();
    }
}

/// A worker gives up some calls midway (a wait ends when news comes by another way). One given
/// up while the transport was connecting to the broker again once stalled the transport for
/// good: every later call waited on that connection.
#[cfg(feature = "pulsar")]
#[tokio::test]
async fn a_call_given_up_while_the_broker_is_away_does_not_stall_the_transport() {
    use codegen_runtime::backend::distributed::{Received, Transport};
    use codegen_runtime::backend::pulsar::{PulsarAuth, PulsarConfig, PulsarTransport};
    use codegen_runtime::backend::{Message, MessageBody, Topic};

    let test = "a_call_given_up_while_the_broker_is_away_does_not_stall_the_transport";
    if crate::backends::pulsar(test).await.is_none() {
        return;
    }
    let broker = crate::backends::pulsar_url();
    let (scheme, real) = broker.split_once("://").unwrap();
    let port = free_port();
    let mut forwarder = Cuttable::open(port, real.to_owned()).await;
    let mut config = PulsarConfig::new(format!("{scheme}://127.0.0.1:{port}"));
    config.prefix = format!("{}-", crate::backends::unique(test).replace('_', "-"));
    config.auth = PulsarAuth::TokenFile(crate::backends::pulsar_token_file());
    if scheme == "pulsar+ssl" {
        config.tls_trust_certs = Some(crate::backends::tls_ca());
    }
    let transport = PulsarTransport::connect(config).await.unwrap();
    let tasks = Topic::Tasks("svc".to_owned());
    let message = |id: &str| Message {
        id: id.to_owned(),
        topic: tasks.clone(),
        key: "instance".to_owned(),
        deliver_at: 0,
        body: MessageBody::Wake,
    };
    // Receives `id` within `within`, publishing it again while the transport says the broker
    // is away.
    let receive = async |id: &str, within: Duration| -> Result<(), String> {
        let deadline = Instant::now() + within;
        let mut published = false;
        let mut last = String::new();
        while Instant::now() < deadline {
            if !published {
                match transport.publish(&[message(id)]).await {
                    Ok(()) => published = true,
                    Err(err) => last = err.to_string(),
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, transport.receive(&tasks, 10, 30_000)).await {
                Err(_) => return Err(format!("a receive was still waiting after {within:?}")),
                Ok(Ok(got)) => {
                    for r in got {
                        if let Received::Message(d) = r {
                            transport
                                .ack(std::slice::from_ref(&d.receipt))
                                .await
                                .unwrap();
                            if d.message.id == id {
                                return Ok(());
                            }
                        }
                    }
                }
                Ok(Err(err)) => last = err.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!(
            "not received within {within:?}; last error: {last}"
        ))
    };
    receive("before", Duration::from_secs(30)).await.unwrap();

    // The broker goes away. Its consumer gives up reconnecting, and a call fails.
    forwarder.cut();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let other = Topic::Tasks("other".to_owned());
    let failed = tokio::time::timeout(
        Duration::from_secs(60),
        transport.receive(&other, 1, 30_000),
    )
    .await
    .expect("a receive while the broker is away fails within 60 s");
    assert!(failed.is_err(), "received while the broker was away");
    // Calls that connect again, each given up by its caller after a while.
    for ms in [5, 20, 50, 100, 200] {
        let wait = transport.wait(&other, 10_000);
        let _ = tokio::time::timeout(Duration::from_millis(ms), wait).await;
    }

    // The broker is back: the transport reaches it again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    forwarder.reopen().await;
    receive("after", Duration::from_secs(60)).await.unwrap();
}
