//! Connections to PostgreSQL as a managed service takes them: TLS with libpq's `sslmode`, and a
//! SCRAM password from the URL, a file or `PGPASSWORD`. Run against the server of
//! `scripts/postgres.sh` (its port `PG_PORT`, default 15432), which takes TCP connections only
//! over TLS, with a certificate that scripts/certs.sh signed for the IP address 127.0.0.1 only.

use codegen_runtime::backend::BackendError;
use codegen_runtime::backend::distributed::{DistributedBackend, PostgresConfig};
use codegen_runtime::backend::sqlite::SqliteBackend;

use crate::backends::{POSTGRES_HOW, missing, tls_ca, unique};

/// The scripts' server at `host`, with `params` after the `?`, and the password `password`
/// (none when `None`).
fn url(host: &str, password: Option<&str>, params: &str) -> String {
    let port = std::env::var("PG_PORT").unwrap_or_else(|_| "15432".to_owned());
    let user = match password {
        Some(password) => format!("codegen:{password}"),
        None => "codegen".to_owned(),
    };
    format!("postgres://{user}@{host}:{port}/codegen?{params}")
}

fn verify_full() -> String {
    format!("sslmode=verify-full&sslrootcert={}", tls_ca().display())
}

async fn connect(
    url: String,
    password_file: Option<std::path::PathBuf>,
) -> Result<DistributedBackend<SqliteBackend>, BackendError> {
    let dir = tempfile::tempdir().unwrap();
    let transport = SqliteBackend::open(dir.path().join("messages.db")).unwrap();
    let config = PostgresConfig {
        url,
        schema: Some(unique("tls")),
        pool_size: 2,
        password_file,
    };
    DistributedBackend::connect(&config, transport).await
}

/// Whether the scripts' server answers; says how to start it when not.
async fn server(test: &str) -> bool {
    match connect(url("127.0.0.1", Some("codegen"), &verify_full()), None).await {
        Ok(_) => true,
        Err(BackendError::Unavailable(message)) if message.contains("refused") => {
            missing(test, &format!("no PostgreSQL ({message})"), POSTGRES_HOW);
            false
        }
        Err(other) => panic!("{test}: verify-full to the scripts' server failed: {other}"),
    }
}

fn refused(result: Result<DistributedBackend<SqliteBackend>, BackendError>) -> String {
    match result {
        Ok(_) => panic!("the connection was made"),
        Err(err) => err.to_string(),
    }
}

#[tokio::test]
async fn verify_full_connects_and_a_connection_without_tls_is_refused_with_the_reason() {
    if !server("tls::verify_full_connects").await {
        return;
    }
    let err = refused(connect(url("127.0.0.1", Some("codegen"), "sslmode=disable"), None).await);
    assert!(
        err.contains("no encryption") && err.contains("remove sslmode=disable"),
        "{err}"
    );
    // libpq's default, prefer, takes TLS when offered and does not check the certificate.
    connect(url("127.0.0.1", Some("codegen"), ""), None)
        .await
        .expect("sslmode=prefer connects over TLS");
}

#[tokio::test]
async fn a_certificate_that_another_authority_signed_is_refused_and_require_does_not_check() {
    if !server("tls::another_authority").await {
        return;
    }
    let other = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/other-ca.crt");
    for mode in ["verify-full", "verify-ca", "require"] {
        let params = format!("sslmode={mode}&sslrootcert={}", other.display());
        let err = refused(connect(url("127.0.0.1", Some("codegen"), &params), None).await);
        assert!(
            err.contains("UnknownIssuer")
                && err.contains("check the backend URL's sslmode and sslrootcert"),
            "{mode}: {err}"
        );
        assert!(!err.contains("codegen:codegen"), "{err}");
    }
    // Without a root certificate, require encrypts and takes the certificate as it comes.
    if !std::env::var_os("HOME").is_some_and(|home| {
        std::path::Path::new(&home)
            .join(".postgresql/root.crt")
            .exists()
    }) {
        connect(url("127.0.0.1", Some("codegen"), "sslmode=require"), None)
            .await
            .expect("sslmode=require without sslrootcert connects");
    }
}

#[tokio::test]
async fn verify_full_checks_the_host_name_and_verify_ca_does_not() {
    if !server("tls::host_name").await {
        return;
    }
    // The certificate names 127.0.0.1, not localhost.
    let err = refused(connect(url("localhost", Some("codegen"), &verify_full()), None).await);
    assert!(err.contains("not valid for name \"localhost\""), "{err}");
    let params = format!("sslmode=verify-ca&sslrootcert={}", tls_ca().display());
    connect(url("localhost", Some("codegen"), &params), None)
        .await
        .expect("verify-ca takes a certificate for another name");
}

#[tokio::test]
async fn the_password_comes_from_a_file_and_a_wrong_one_is_named_as_such() {
    if !server("tls::password_file").await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("password");
    std::fs::write(&file, "codegen\n").unwrap();
    connect(url("127.0.0.1", None, &verify_full()), Some(file.clone()))
        .await
        .expect("the password from password_file");
    std::fs::write(&file, "wrong-S3cret\n").unwrap();
    let err = refused(connect(url("127.0.0.1", None, &verify_full()), Some(file)).await);
    assert!(
        err.contains("password authentication failed")
            && err.contains("check the user and password"),
        "{err}"
    );
    assert!(!err.contains("wrong-S3cret"), "{err}");
}

/// The broker as a managed service runs it: TLS, and a token on every connection and admin
/// request (`scripts/pulsar.sh`).
#[cfg(feature = "pulsar")]
mod pulsar {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use codegen_runtime::backend::BackendError;
    use codegen_runtime::backend::Topic;
    use codegen_runtime::backend::distributed::Transport;
    use codegen_runtime::backend::pulsar::{PulsarAuth, PulsarConfig, PulsarTransport};

    use crate::backends::{missing, pulsar_admin, pulsar_token_file, tls_ca};

    const HOW: &str = "scripts/pulsar.sh start";

    /// The scripts' broker on its TLS port, with `auth`.
    fn config(auth: PulsarAuth) -> PulsarConfig {
        let port = std::env::var("PULSAR_TLS_PORT").unwrap_or_else(|_| "16651".to_owned());
        let mut config = PulsarConfig::new(format!("pulsar+ssl://127.0.0.1:{port}"));
        config.tls_trust_certs = Some(tls_ca());
        config.admin = Some(pulsar_admin());
        config.auth = auth;
        config
    }

    /// Whether the scripts' broker runs (its token file is there and it takes it).
    async fn broker(test: &str) -> bool {
        if !pulsar_token_file().is_file() {
            missing(test, "no token file of the scripts' broker", HOW);
            return false;
        }
        match PulsarTransport::connect(config(PulsarAuth::TokenFile(pulsar_token_file()))).await {
            Ok(_) => true,
            Err(BackendError::Unavailable(message)) => {
                missing(test, &format!("no Pulsar broker ({message})"), HOW);
                false
            }
            Err(other) => panic!("{test}: connecting with the token failed: {other}"),
        }
    }

    fn refused(result: Result<PulsarTransport, BackendError>) -> String {
        match result {
            Ok(_) => panic!("the broker took the connection"),
            Err(err) => err.to_string(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_broker_refuses_a_missing_or_wrong_token_and_an_untrusted_certificate() {
        if !broker("tls::pulsar::refusals").await {
            return;
        }
        let err = refused(PulsarTransport::connect(config(PulsarAuth::None)).await);
        assert!(err.contains("needs a token (pulsar_token_file"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let wrong = dir.path().join("token");
        // A well-formed JWT signed with another key.
        std::fs::write(
            &wrong,
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjb2RlZ2VuIn0.c2lnbmVkLWVsc2V3aGVyZQ\n",
        )
        .unwrap();
        let err = refused(PulsarTransport::connect(config(PulsarAuth::TokenFile(wrong))).await);
        assert!(err.contains("check that it takes the token"), "{err}");
        assert!(!err.contains("eyJ"), "the token is not shown: {err}");
        let mut untrusted = config(PulsarAuth::TokenFile(pulsar_token_file()));
        untrusted.tls_trust_certs = None;
        let err = refused(PulsarTransport::connect(untrusted).await);
        assert!(
            err.contains("TLS handshake")
                && err.contains("UnknownIssuer")
                && err.contains("pulsar_tls_trust_certs"),
            "{err}"
        );
    }

    fn json(
        status: axum::http::StatusCode,
        value: &serde_json::Value,
    ) -> (
        axum::http::StatusCode,
        [(axum::http::HeaderName, &'static str); 1],
        String,
    ) {
        (
            status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            value.to_string(),
        )
    }

    /// An OAuth 2 issuer on loopback: discovery, and client credentials exchanged for the
    /// broker's token when the id, secret and audience are right.
    async fn issuer(
        token: String,
        asked: Arc<AtomicUsize>,
    ) -> (String, tokio::task::JoinHandle<()>) {
        use axum::routing::{get, post};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let discovery = serde_json::json!({
            "issuer": base,
            "token_endpoint": format!("{base}/oauth/token"),
        });
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || async move { json(axum::http::StatusCode::OK, &discovery) }),
            )
            .route(
                "/oauth/token",
                post(move |body: String| async move {
                    asked.fetch_add(1, Ordering::SeqCst);
                    let form: std::collections::HashMap<String, String> =
                        form_urlencoded::parse(body.as_bytes())
                            .into_owned()
                            .collect();
                    let right = |k: &str, v: &str| form.get(k).map(String::as_str) == Some(v);
                    if right("grant_type", "client_credentials")
                        && right("client_id", "billing")
                        && right("client_secret", "oauth-S3cret")
                        && right("audience", "urn:sn:pulsar:test:local")
                    {
                        let answer = serde_json::json!({
                            "access_token": token.trim(),
                            "token_type": "Bearer",
                            "expires_in": 3600,
                        });
                        json(axum::http::StatusCode::OK, &answer)
                    } else {
                        let answer = serde_json::json!({"error": "invalid_client"});
                        json(axum::http::StatusCode::UNAUTHORIZED, &answer)
                    }
                }),
            );
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (base, server)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn oauth2_client_credentials_get_a_token_the_broker_takes_once_per_lifetime() {
        if !broker("tls::pulsar::oauth2").await {
            return;
        }
        let asked = Arc::new(AtomicUsize::new(0));
        let (base, server) = issuer(
            std::fs::read_to_string(pulsar_token_file()).unwrap(),
            asked.clone(),
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.json");
        let oauth2 = |secret: &str| {
            std::fs::write(
                &key,
                format!(r#"{{"type": "sn_service_account", "client_id": "billing", "client_secret": "{secret}"}}"#),
            )
            .unwrap();
            PulsarAuth::OAuth2 {
                issuer_url: format!("{base}/"),
                credentials_file: key.clone(),
                audience: Some("urn:sn:pulsar:test:local".to_owned()),
                scope: None,
            }
        };
        let transport = PulsarTransport::connect(config(oauth2("oauth-S3cret")))
            .await
            .expect("the broker takes the issued token");
        assert!(transport.queue(&Topic::Workflows).await.unwrap().is_some());
        assert_eq!(
            asked.load(Ordering::SeqCst),
            1,
            "both connections and the admin request share one token until it nears its expiry"
        );
        let err = refused(PulsarTransport::connect(config(oauth2("wrong-S3cret"))).await);
        assert!(
            err.contains("401 Unauthorized") && err.contains("check the issuer URL"),
            "{err}"
        );
        assert!(!err.contains("S3cret"), "{err}");
        server.abort();
    }
}
