//! What PostgreSQL and pool errors mean for the user.

use tokio_postgres::error::SqlState;

use super::BackendError;

/// Says what a PostgreSQL error means for the user.
pub(in crate::backend) fn pg_error(what: &str, err: &tokio_postgres::Error) -> BackendError {
    let detail = match (err.as_db_error(), std::error::Error::source(err)) {
        (Some(db), _) => db.message().to_owned(),
        (None, Some(source)) => format!("{err}: {source}"),
        (None, None) => err.to_string(),
    };
    let hint = match err.code() {
        _ if is_tls(err) => {
            ": check the backend URL's sslmode and sslrootcert (the CA certificate that signed the server's)"
        }
        Some(code)
            if *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
                && detail.contains("no encryption") =>
        {
            ": the server takes this connection only over TLS: remove sslmode=disable from the backend URL"
        }
        Some(code)
            if *code == SqlState::T_R_DEADLOCK_DETECTED
                || *code == SqlState::T_R_SERIALIZATION_FAILURE =>
        {
            " (transient; tried again)"
        }
        Some(code)
            if *code == SqlState::INVALID_PASSWORD
                || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
        {
            ": check the user and password in the backend URL"
        }
        Some(code) if *code == SqlState::INVALID_CATALOG_NAME => {
            ": create the database (`createdb`) or fix the URL"
        }
        Some(code) if *code == SqlState::INSUFFICIENT_PRIVILEGE => {
            ": the user needs the right to create tables in the database or schema"
        }
        _ => "",
    };
    BackendError::Unavailable(format!("PostgreSQL: {what}: {detail}{hint}"))
}

/// Whether the connection failed in its TLS handshake (or the server refused TLS).
fn is_tls(err: &tokio_postgres::Error) -> bool {
    let shown = err.to_string();
    shown.contains("TLS handshake") || shown.contains("does not support TLS")
}

pub(super) fn pool_error(err: deadpool_postgres::PoolError) -> BackendError {
    match err {
        deadpool_postgres::PoolError::Backend(e) if is_tls(&e) => {
            pg_error("connecting over TLS", &e)
        }
        deadpool_postgres::PoolError::Backend(e) if e.as_db_error().is_none() => pg_error(
            "connecting (check that the server runs and the URL's host and port)",
            &e,
        ),
        deadpool_postgres::PoolError::Backend(e) => pg_error("connecting", &e),
        other => BackendError::Unavailable(format!(
            "PostgreSQL: no connection ({other}): check that the server runs and the URL's host and port"
        )),
    }
}

pub(in crate::backend) fn corrupt(what: &str, err: impl std::fmt::Display) -> BackendError {
    BackendError::Corrupt(format!("PostgreSQL: {what} does not decode ({err})"))
}
