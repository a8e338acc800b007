//! The backends the conformance suite runs on, and the macro that runs each test on each.

use std::io::Write;
use std::sync::Arc;

use codegen_runtime::backend::distributed::{DistributedBackend, PostgresConfig};
use codegen_runtime::backend::sqlite::SqliteBackend;
use codegen_runtime::backend::{BackendError, Inspect, MessageQueue, StateStore};

/// What a conformance test needs of a backend.
pub(crate) trait Conformant: StateStore + MessageQueue + Inspect {}

impl<B: StateStore + MessageQueue + Inspect> Conformant for B {}

/// Keeps what a backend needs alive for the length of a test (a temporary directory).
pub(crate) type Guard = Box<dyn std::any::Any + Send>;

/// A fresh backend for one test.
pub(crate) struct Opened<B> {
    pub(crate) backend: Arc<B>,
    pub(crate) guard: Guard,
}

/// The PostgreSQL server of `scripts/postgres.sh` (port `PG_PORT`, default 15432) over TLS
/// with its certificate checked, unless `CODEGEN_TEST_POSTGRES` names another.
pub(crate) fn postgres_url() -> String {
    std::env::var("CODEGEN_TEST_POSTGRES").unwrap_or_else(|_| {
        let port = std::env::var("PG_PORT").unwrap_or_else(|_| "15432".to_owned());
        format!(
            "postgres://codegen:codegen@127.0.0.1:{port}/codegen?sslmode=verify-full&sslrootcert={}",
            tls_ca().display()
        )
    })
}

/// The certificate authority of the test services (`scripts/certs.sh`, folder `TLS_DIR`).
pub(crate) fn tls_ca() -> std::path::PathBuf {
    std::env::var_os("TLS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/services/tls")
        })
        .join("ca.crt")
}

/// The Pulsar broker of `scripts/pulsar.sh` on its TLS port (`PULSAR_TLS_PORT`, default
/// 16651), unless `CODEGEN_TEST_PULSAR` names another.
#[cfg_attr(not(feature = "pulsar"), allow(dead_code))]
pub(crate) fn pulsar_url() -> String {
    std::env::var("CODEGEN_TEST_PULSAR").unwrap_or_else(|_| {
        let port = std::env::var("PULSAR_TLS_PORT").unwrap_or_else(|_| "16651".to_owned());
        format!("pulsar+ssl://127.0.0.1:{port}")
    })
}

/// The admin API of the scripts' broker (`PULSAR_WEB_PORT`, default 18080), unless
/// `CODEGEN_TEST_PULSAR_ADMIN` names another.
#[cfg_attr(not(feature = "pulsar"), allow(dead_code))]
pub(crate) fn pulsar_admin() -> String {
    std::env::var("CODEGEN_TEST_PULSAR_ADMIN").unwrap_or_else(|_| {
        let port = std::env::var("PULSAR_WEB_PORT").unwrap_or_else(|_| "18080".to_owned());
        format!("http://127.0.0.1:{port}")
    })
}

/// The file holding the clients' token of the scripts' broker (in `PULSAR_DIR`), unless
/// `CODEGEN_TEST_PULSAR_TOKEN_FILE` names another.
#[cfg_attr(not(feature = "pulsar"), allow(dead_code))]
pub(crate) fn pulsar_token_file() -> std::path::PathBuf {
    if let Some(file) = std::env::var_os("CODEGEN_TEST_PULSAR_TOKEN_FILE") {
        return file.into();
    }
    std::env::var_os("PULSAR_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/services/pulsar")
        })
        .join("conf/token")
}

/// The backend URL of the distributed backend on the test services, over TLS with tokens,
/// followed by `extra` parameters.
#[allow(
    dead_code,
    reason = "kill.rs and the conformance suite with the pulsar feature use it"
)]
pub(crate) fn distributed_url(extra: &str) -> String {
    let postgres = postgres_url();
    let separator = if postgres.contains('?') { '&' } else { '?' };
    let pulsar = pulsar_url();
    let trust = if pulsar.starts_with("pulsar+ssl://") {
        format!("&pulsar_tls_trust_certs={}", tls_ca().display())
    } else {
        String::new()
    };
    format!(
        "{postgres}{separator}pulsar={pulsar}{trust}&pulsar_token_file={}&{extra}",
        pulsar_token_file().display()
    )
}

/// A service the test needs is missing: a failure under CI, else a skip said on the terminal.
pub(crate) fn missing(test: &str, what: &str, how: &str) {
    let line = format!("{test}: {what}; to run it: {how}");
    assert!(
        std::env::var_os("CI").is_none(),
        "{line} (CI is set, so a missing service fails the test)"
    );
    // Straight to the terminal: the test harness captures `eprintln!`.
    let _ = writeln!(std::io::stderr(), "skipped {line}");
}

/// A name unique to this test run, usable as a schema or topic prefix.
pub(crate) fn unique(test: &str) -> String {
    let short: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(36)
        .collect();
    format!("t_{short}_{}", uuid_like())
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}{:x}", std::process::id(), nanos & 0xffff_ffff_ffff)
}

pub(crate) fn sqlite() -> Opened<SqliteBackend> {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(SqliteBackend::open(dir.path().join("state.db")).unwrap());
    Opened {
        backend,
        guard: Box::new(dir),
    }
}

pub(crate) fn postgres_config(test: &str) -> PostgresConfig {
    PostgresConfig {
        url: postgres_url(),
        schema: Some(unique(test)),
        pool_size: 8,
        password_file: None,
    }
}

/// Connecting failed: a missing service (skip, or fail under CI) or a real failure.
pub(crate) fn unreachable_or_panic(test: &str, service: &str, how: &str, err: BackendError) {
    match err {
        BackendError::Unavailable(message) => {
            missing(test, &format!("no {service} ({message})"), how);
        }
        other => panic!("{test}: opening the backend failed: {other}"),
    }
}

pub(crate) const POSTGRES_HOW: &str =
    "scripts/postgres.sh start (or set CODEGEN_TEST_POSTGRES to a database URL)";

/// State in PostgreSQL, messages in a local SQLite file.
pub(crate) async fn postgres(test: &str) -> Option<Opened<DistributedBackend<SqliteBackend>>> {
    let dir = tempfile::tempdir().unwrap();
    let transport = SqliteBackend::open(dir.path().join("messages.db")).unwrap();
    match DistributedBackend::connect(&postgres_config(test), transport).await {
        Ok(backend) => Some(Opened {
            backend: Arc::new(backend),
            guard: Box::new(dir),
        }),
        Err(err) => {
            unreachable_or_panic(test, "PostgreSQL", POSTGRES_HOW, err);
            None
        }
    }
}

#[cfg(feature = "pulsar")]
pub(crate) type Distributed = DistributedBackend<codegen_runtime::backend::pulsar::PulsarTransport>;

/// The distributed backend: PostgreSQL and Pulsar, topics under a prefix of this test.
#[cfg(feature = "pulsar")]
pub(crate) async fn pulsar(test: &str) -> Option<Opened<Distributed>> {
    use codegen_runtime::backend::pulsar::{PulsarAuth, PulsarConfig, PulsarTransport};
    let mut config = PulsarConfig::new(pulsar_url());
    config.prefix = format!("{}-", unique(test).replace('_', "-"));
    config.admin = Some(pulsar_admin());
    config.auth = PulsarAuth::TokenFile(pulsar_token_file());
    if config.url.starts_with("pulsar+ssl://") {
        config.tls_trust_certs = Some(tls_ca());
    }
    let transport = match PulsarTransport::connect(config).await {
        Ok(t) => t,
        Err(err) => {
            unreachable_or_panic(
                test,
                "Pulsar broker",
                "scripts/pulsar.sh start (or set CODEGEN_TEST_PULSAR to a broker URL)",
                err,
            );
            return None;
        }
    };
    match DistributedBackend::connect(&postgres_config(test), transport).await {
        Ok(backend) => Some(Opened {
            backend: Arc::new(backend),
            guard: Box::new(()),
        }),
        Err(err) => {
            unreachable_or_panic(test, "PostgreSQL", POSTGRES_HOW, err);
            None
        }
    }
}

/// Without the `pulsar` feature the distributed backend's tests cannot be built.
#[cfg(not(feature = "pulsar"))]
pub(crate) async fn pulsar(test: &str) -> Option<Opened<SqliteBackend>> {
    missing(
        test,
        "this test binary was built without the `pulsar` feature",
        "scripts/postgres.sh start && scripts/pulsar.sh start && cargo test -p codegen-runtime --features pulsar --test conformance",
    );
    None
}

/// Runs each named test function on every backend: `sqlite::NAME`, `postgres::NAME`,
/// `pulsar::NAME`.
macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(super::backends::sqlite()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $test() {
                    let name = concat!("postgres::", stringify!($test));
                    if let Some(store) = super::backends::postgres(name).await {
                        super::$test(store).await;
                    }
                }
            )*
        }
        mod pulsar {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let name = concat!("pulsar::", stringify!($test));
                    if let Some(store) = super::backends::pulsar(name).await {
                        super::$test(store).await;
                    }
                }
            )*
        }
    };
}

pub(crate) use conformance;
