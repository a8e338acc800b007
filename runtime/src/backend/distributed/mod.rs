//! The distributed backend: workflow state in PostgreSQL, messages over a [`Transport`]
//! (Apache Pulsar in production, see `pulsar.rs`).
//!
//! A commit writes the instance, its new events and the messages it sends (an outbox table) in
//! one PostgreSQL transaction, with optimistic concurrency on the event count: the row is locked
//! and a writer that read fewer events than are stored gets [`BackendError::Conflict`] and
//! changes nothing. After the transaction the consumed deliveries are acknowledged, then the
//! messages are published (see `outbox.rs` for why in that order); their outbox rows are
//! deleted by a task of their own, off the commit's path. A process killed in between leaves the outbox rows, which a relay in every process
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
//! - `held.rs`: the messages this process sends to its own workers, handed over in memory;
//! - `outbox.rs`: publishing after a commit, clearing what was published, and the relay;
//! - `prepared.rs`: statements prepared once per connection, and pipelined;
//! - `errors.rs`: what PostgreSQL errors mean for the user;
//! - `tls.rs`: TLS to PostgreSQL as libpq's `sslmode` chooses it.

mod errors;
mod held;
mod migrations;
mod outbox;
mod prepared;
mod queue;
mod state;
mod tls;
mod transport;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::Notify;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{BackendError, BackendResult, Message, Receipt};

pub(in crate::backend) use errors::{corrupt, pg_error};
use migrations::migrate;
use outbox::{clear_loop, relay_loop};
pub(in crate::backend) use prepared::execute;
pub(in crate::backend) use state::read_instance;
use tls::TlsSettings;
pub use transport::{Received, Transport};

/// How long an outbox row may wait for the process that wrote it before any relay publishes it.
pub(super) const RELAY_AFTER_MS: i64 = 3_000;

/// Where the PostgreSQL state is: a connection URL and an optional schema.
///
/// `Debug` shows the URL with its password as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    /// `postgres://user:password@host:port/database` (libpq URL parameters other than the
    /// runtime's own are passed on).
    pub url: String,
    /// The schema the tables live in (created when missing); `public` when `None`.
    pub schema: Option<String>,
    /// Connections kept open.
    pub pool_size: usize,
    /// A file holding the password (its first line), for a URL without one. Without either,
    /// `PGPASSWORD` is used when set.
    pub password_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &crate::backend::url::redact(&self.url))
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("password_file", &self.password_file)
            .finish()
    }
}

impl PostgresConfig {
    /// The connection settings and the TLS connector: the URL with its `ssl*` parameters read
    /// as libpq reads them (see `tls.rs`), and the password from `password_file` or
    /// `PGPASSWORD` when the URL has none. Errors name the file, never a password.
    pub(crate) fn connection(&self) -> BackendResult<(tokio_postgres::Config, MakeRustlsConnect)> {
        let (tls, url) = TlsSettings::split(&self.url)?;
        let mut pg: tokio_postgres::Config = url.parse().map_err(|e| {
            BackendError::Invalid(format!(
                "the PostgreSQL URL does not parse ({e}): expected postgres://USER:PASSWORD@HOST:PORT/DATABASE"
            ))
        })?;
        pg.ssl_mode(tls.negotiation());
        let connector = tls.connector()?;
        if pg.get_password().is_some() {
            return Ok((pg, connector));
        }
        if let Some(file) = &self.password_file {
            let text = std::fs::read_to_string(file).map_err(|e| {
                BackendError::Invalid(format!(
                    "password_file `{}`: cannot read it ({e})",
                    file.display()
                ))
            })?;
            let password = text.lines().next().unwrap_or("");
            if password.is_empty() {
                return Err(BackendError::Invalid(format!(
                    "password_file `{}` is empty: put the PostgreSQL password on its first line",
                    file.display()
                )));
            }
            pg.password(password);
        } else if let Some(password) = std::env::var_os("PGPASSWORD") {
            pg.password(password.as_encoded_bytes());
        }
        Ok((pg, connector))
    }

    /// One PostgreSQL connection made as the backend makes its own (TLS, password source,
    /// schema as `search_path`), for queries of your own: reports, checks, tests. Its
    /// connection task runs on the current Tokio runtime until the client is dropped.
    pub async fn client(&self) -> BackendResult<tokio_postgres::Client> {
        let (mut pg, tls) = self.connection()?;
        if let Some(schema) = &self.schema {
            pg.options(format!("-c search_path={schema}"));
        }
        let (client, connection) = pg
            .connect(tls)
            .await
            .map_err(|e| pg_error("connecting", &e))?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%err, "a PostgreSQL client connection ended");
            }
        });
        Ok(client)
    }
}

/// The distributed backend: a [`StateStore`](crate::backend::StateStore) on PostgreSQL and a
/// [`MessageQueue`](crate::backend::MessageQueue) on a [`Transport`].
pub struct DistributedBackend<T> {
    pub(in crate::backend) inner: Arc<Inner<T>>,
    relay: tokio::task::JoinHandle<()>,
    clearer: tokio::task::JoinHandle<()>,
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
    /// Notified when a flow-control permit comes back, from this process or, once a wait for
    /// one has started the listener, from any other on the database.
    pub(super) released: Notify,
    /// The channel releases are announced on (one per schema).
    pub(super) release_channel: String,
    /// What the listener connects with.
    listen_config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    /// The task that listens for other processes' releases, started by the first wait.
    listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// What this process holds for its own receivers (see `held.rs`).
    pub(super) local: crate::backend::local::Local,
    /// Notified when a message is held for this process's receivers.
    pub(super) held: Notify,
    /// The ids and row versions of published messages, whose outbox rows the clearer deletes.
    pub(super) published: tokio::sync::mpsc::UnboundedSender<Vec<(String, i64)>>,
}

impl<T> Drop for Inner<T> {
    fn drop(&mut self) {
        if let Some(listener) = self
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            listener.abort();
        }
    }
}

impl<T: Send + Sync + 'static> Inner<T> {
    /// Starts listening for releases announced by other processes, once.
    pub(super) fn listen_for_releases(self: &Arc<Self>) {
        let mut listener = self.listener.lock().unwrap_or_else(|p| p.into_inner());
        if listener.is_none() {
            *listener = Some(tokio::spawn(listen(Arc::downgrade(self))));
        }
    }
}

/// Wakes the process's waiters for permits whenever another process announces a release on
/// `NOTIFY`, for as long as the backend lives; reconnects after a lost connection (waits are
/// bounded meanwhile, so a release missed then is seen when the wait ends).
async fn listen<T: Send + Sync + 'static>(inner: std::sync::Weak<Inner<T>>) {
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let config = strong.listen_config.clone();
        let tls = strong.tls.clone();
        let channel = strong.release_channel.clone();
        drop(strong);
        match config.connect(tls).await {
            Ok((client, mut connection)) => {
                // Quoted: the channel keeps the case of the schema's name, as `pg_notify` does.
                let sql = format!("LISTEN \"{channel}\"");
                let subscribe = async {
                    match client.batch_execute(&sql).await {
                        Ok(()) => true,
                        Err(err) => {
                            tracing::warn!(%err, "cannot listen for flow-control releases; trying again");
                            false
                        }
                    }
                };
                let messages = async {
                    loop {
                        match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                            Some(Ok(tokio_postgres::AsyncMessage::Notification(_))) => {
                                let Some(inner) = inner.upgrade() else {
                                    return;
                                };
                                inner.released.notify_waiters();
                            }
                            Some(Ok(_)) => {}
                            Some(Err(err)) => {
                                tracing::warn!(%err, "lost the connection that hears flow-control releases; reconnecting");
                                return;
                            }
                            None => return,
                        }
                    }
                };
                // The connection is driven by `messages` while the subscription is sent.
                tokio::pin!(messages);
                tokio::select! {
                    subscribed = subscribe => if subscribed { messages.await },
                    () = &mut messages => {}
                }
            }
            Err(err) => {
                tracing::warn!(%err, "cannot connect to hear flow-control releases; trying again");
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

impl<T> std::fmt::Debug for DistributedBackend<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DistributedBackend").finish_non_exhaustive()
    }
}

impl<T> Drop for DistributedBackend<T> {
    fn drop(&mut self) {
        self.relay.abort();
        self.clearer.abort();
    }
}

impl<T: Transport> DistributedBackend<T> {
    /// Connects to PostgreSQL, applies the schema migrations this runtime has and the database
    /// lacks, and starts the outbox relay. Must be called within a Tokio runtime.
    pub async fn connect(config: &PostgresConfig, transport: T) -> BackendResult<Self> {
        let (mut pg, tls) = config.connection()?;
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
        let listen_config = pg.clone();
        // A channel name holds 63 bytes; two schemas cut to the same name only wake each
        // other's waiters for nothing (a waiter asks for its permit again and waits on).
        let mut release_channel = format!(
            "codegen_flow_{}",
            config.schema.as_deref().unwrap_or("public")
        );
        release_channel.truncate(63);
        let manager = Manager::from_config(
            pg,
            tls.clone(),
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
        let (published, cleared) = tokio::sync::mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            pool,
            transport,
            worker: uuid::Uuid::new_v4().to_string(),
            pending: Mutex::new(HashMap::new()),
            changed: Notify::new(),
            released: Notify::new(),
            release_channel,
            listen_config,
            tls,
            listener: Mutex::new(None),
            published,
            local: crate::backend::local::Local::default(),
            held: Notify::new(),
        });
        let relay = tokio::spawn(relay_loop(Arc::downgrade(&inner)));
        let clearer = tokio::spawn(clear_loop(Arc::downgrade(&inner), cleared));
        Ok(Self {
            inner,
            relay,
            clearer,
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str, password_file: Option<std::path::PathBuf>) -> PostgresConfig {
        PostgresConfig {
            url: url.to_owned(),
            schema: None,
            pool_size: 2,
            password_file,
        }
    }

    #[test]
    fn the_password_comes_from_the_url_else_from_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pg-password");
        std::fs::write(&file, "from-the-file\n").unwrap();
        let pg = config("postgres://app@db/flows", Some(file.clone()))
            .connection()
            .unwrap()
            .0;
        assert_eq!(pg.get_password(), Some(&b"from-the-file"[..]));
        let pg = config("postgres://app:in-the-url@db/flows", Some(file))
            .connection()
            .unwrap()
            .0;
        assert_eq!(pg.get_password(), Some(&b"in-the-url"[..]));
    }

    #[test]
    fn a_password_file_that_cannot_be_used_is_named_and_its_content_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let err = config("postgres://app@db/flows", Some(missing.clone()))
            .connection()
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains(&*missing.to_string_lossy()), "{err}");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let err = config("postgres://app@db/flows", Some(empty))
            .connection()
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains("is empty"), "{err}");
        let shown = format!(
            "{:?}",
            config("postgres://app:hunter2@db/flows?password=hunter3", None)
        );
        assert!(!shown.contains("hunter"), "{shown}");
    }
}
