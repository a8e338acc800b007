//! The distributed backend: workflow state in PostgreSQL, messages over a [`Transport`]
//! (Apache Pulsar in production, see `pulsar.rs`).
//!
//! A commit writes the instance, its new events and the messages it sends (an outbox table) in
//! one PostgreSQL transaction, with optimistic concurrency on the event count: the row is locked
//! and a writer that read fewer events than are stored gets [`BackendError::Conflict`] and
//! changes nothing. After the transaction the consumed deliveries are acknowledged, then the
//! messages are published and their outbox rows deleted (see `outbox.rs` for why in that
//! order). A process killed in between leaves the outbox rows, which a relay in every process
//! publishes after a few seconds; a message can so be published twice, never lost, and its id
//! (deterministic) lets the receiver drop the second: histories skip event ids they hold, task
//! calls carry the same idempotency key.
//!
//! Dead letters are kept in PostgreSQL too, where an operator lists and retries them by id.
//!
//! - `transport.rs`: the [`Transport`] trait, and SQLite as one (for tests on one machine);
//! - `migrations.rs`: the schema and migrating to it;
//! - `state.rs`: the [`StateStore`](crate::backend::StateStore): instances, histories, commits;
//! - `queue.rs`: the [`MessageQueue`](crate::backend::MessageQueue): receive, settle, dead
//!   letters, redrive;
//! - `outbox.rs`: publishing after a commit, and the relay;
//! - `errors.rs`: what PostgreSQL errors mean for the user.

mod errors;
mod migrations;
mod outbox;
mod queue;
mod state;
mod transport;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::Notify;

use super::{BackendError, BackendResult, Message, Receipt};

pub(in crate::backend) use errors::{corrupt, pg_error};
use migrations::migrate;
use outbox::relay_loop;
pub(in crate::backend) use state::read_instance;
pub use transport::{Received, Transport};

/// How long an outbox row may wait for the process that wrote it before any relay publishes it.
pub(super) const RELAY_AFTER_MS: i64 = 3_000;

/// Where the PostgreSQL state is: a connection URL and an optional schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    /// `postgres://user:password@host:port/database` (libpq URL parameters other than the
    /// runtime's own are passed on).
    pub url: String,
    /// The schema the tables live in (created when missing); `public` when `None`.
    pub schema: Option<String>,
    /// Connections kept open.
    pub pool_size: usize,
}

/// The distributed backend: a [`StateStore`](crate::backend::StateStore) on PostgreSQL and a
/// [`MessageQueue`](crate::backend::MessageQueue) on a [`Transport`].
pub struct DistributedBackend<T> {
    pub(in crate::backend) inner: Arc<Inner<T>>,
    relay: tokio::task::JoinHandle<()>,
}

pub(in crate::backend) struct Inner<T> {
    pub(super) pool: Pool,
    /// Names this process in the per-minute figures of services, so that processes do not
    /// contend for one row.
    pub(in crate::backend) worker: String,
    pub(in crate::backend) transport: T,
    /// The messages of deliveries not yet settled, for their dead letters.
    pub(super) pending: Mutex<HashMap<Receipt, Message>>,
    pub(super) changed: Notify,
    /// Notified when this process gives back a flow-control permit.
    pub(super) released: Notify,
}

impl<T> std::fmt::Debug for DistributedBackend<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DistributedBackend").finish_non_exhaustive()
    }
}

impl<T> Drop for DistributedBackend<T> {
    fn drop(&mut self) {
        self.relay.abort();
    }
}

impl<T: Transport> DistributedBackend<T> {
    /// Connects to PostgreSQL, applies the schema migrations this runtime has and the database
    /// lacks, and starts the outbox relay. Must be called within a Tokio runtime.
    pub async fn connect(config: &PostgresConfig, transport: T) -> BackendResult<Self> {
        let mut pg: tokio_postgres::Config = config.url.parse().map_err(|e| {
            BackendError::Invalid(format!(
                "the PostgreSQL URL does not parse ({e}): expected postgres://USER:PASSWORD@HOST:PORT/DATABASE"
            ))
        })?;
        if let Some(schema) = &config.schema {
            if schema.is_empty()
                || !schema
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(BackendError::Invalid(format!(
                    "schema `{schema}`: use letters, digits and `_` only"
                )));
            }
            pg.options(format!("-c search_path={schema}"));
        }
        let manager = Manager::from_config(
            pg,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(2))
            .wait_timeout(Some(Duration::from_secs(30)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| BackendError::Invalid(format!("PostgreSQL pool: {e}")))?;
        migrate(&pool, config.schema.as_deref()).await?;
        let inner = Arc::new(Inner {
            pool,
            transport,
            worker: uuid::Uuid::new_v4().to_string(),
            pending: Mutex::new(HashMap::new()),
            changed: Notify::new(),
            released: Notify::new(),
        });
        let relay = tokio::spawn(relay_loop(Arc::downgrade(&inner)));
        Ok(Self { inner, relay })
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.inner.transport
    }

    /// Publishes outbox rows older than `older_than_ms` (all with 0); returns how many. The
    /// relay calls this every second; a process that commits publishes its own rows at once.
    pub async fn relay_outbox(&self, older_than_ms: i64) -> BackendResult<usize> {
        self.inner.relay(older_than_ms).await
    }
}
