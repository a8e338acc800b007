//! Statements prepared once per connection: through the pool's statement cache, a statement
//! costs one round trip to the server instead of two (parse and describe, then execute).
//!
//! Statements issued together on one connection (joined futures) travel pipelined: the server
//! runs them in order, and their answers come back in one round trip.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::errors::pg_error;
use crate::backend::BackendResult;

/// Runs `sql` (prepared once per connection); returns the rows it changed. `what` names the
/// step in an error.
pub(in crate::backend) async fn execute<C: GenericClient>(
    client: &C,
    what: &str,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> BackendResult<u64> {
    let statement = client
        .prepare_cached(sql)
        .await
        .map_err(|e| pg_error(what, &e))?;
    client
        .execute(&statement, params)
        .await
        .map_err(|e| pg_error(what, &e))
}

/// Runs `sql` (prepared once per connection); returns its rows.
pub(in crate::backend) async fn query<C: GenericClient>(
    client: &C,
    what: &str,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> BackendResult<Vec<Row>> {
    let statement = client
        .prepare_cached(sql)
        .await
        .map_err(|e| pg_error(what, &e))?;
    client
        .query(&statement, params)
        .await
        .map_err(|e| pg_error(what, &e))
}
