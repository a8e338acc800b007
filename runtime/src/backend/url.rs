//! Choosing a backend by URL, the same for generated workers, workflow workers and clients.
//!
//! - `sqlite://PATH` (or a plain file path): the embedded backend.
//! - `postgres://USER:PASSWORD@HOST:PORT/DATABASE?pulsar=pulsar://HOST:PORT`: the distributed
//!   backend, state in PostgreSQL and messages over Apache Pulsar (cargo feature `pulsar`).
//!   More parameters: `pulsar_tenant` (`public`), `pulsar_namespace` (`default`),
//!   `pulsar_prefix` (`codegen-`), `pulsar_admin` (the broker's admin API, `http://HOST:8080`,
//!   for the queue depths operators see), `schema` (the PostgreSQL schema of the tables, `public`),
//!   `pool` (PostgreSQL connections, 16), `password_file` (a file holding the PostgreSQL
//!   password, read when connecting). Other parameters go to PostgreSQL as they are.
//!
//! A password belongs in neither the command line nor the URL when it can be helped: without
//! one in the URL, it is read from `password_file`, else from `PGPASSWORD` as libpq does. The
//! URL itself can come from `CODEGEN_BACKEND`. Logs, errors and `--help` show the URL with its
//! password (in the user part or a `password=` parameter) as `***`.

use std::path::PathBuf;
use std::time::Duration;

use percent_encoding::percent_decode_str;

use super::distributed::{DistributedBackend, PostgresConfig};
#[cfg(feature = "pulsar")]
use super::pulsar::{PulsarConfig, PulsarTransport};
use super::sqlite::SqliteBackend;
use super::{
    BackendError, BackendResult, Commit, Cursor, DeadFilter, DeadLetter, Delivery, Inspect,
    InstanceFilter, InstanceInfo, Message, MessageQueue, Receipt, ServiceStats, Settlement,
    StateStore, Status, Subscription, TaskAttempt, Topic,
};
use crate::workflow::HistoryEvent;

/// A parsed backend URL.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once when a process starts, never held in numbers"
)]
pub enum BackendUrl {
    /// One SQLite file.
    Sqlite(String),
    /// PostgreSQL for state, Pulsar for messages.
    Distributed {
        /// The state store.
        postgres: PostgresConfig,
        /// The broker URL (`pulsar://HOST:PORT`).
        pulsar: String,
        /// The Pulsar tenant.
        tenant: String,
        /// The Pulsar namespace.
        namespace: String,
        /// Put before every topic name.
        prefix: String,
        /// The broker's admin API, for queue depths.
        pulsar_admin: Option<String>,
        /// How to authenticate to the broker.
        pulsar_auth: PulsarAuth,
        /// Certificates to trust for a TLS broker, besides the public authorities.
        pulsar_tls_trust_certs: Option<PathBuf>,
    },
}

/// How the runtime authenticates to the Pulsar broker and its admin API (`pulsar_token_file`,
/// `pulsar_token_env` or the `pulsar_oauth2_*` parameters of the backend URL).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PulsarAuth {
    /// No authentication.
    #[default]
    None,
    /// A JWT read from this file (its first line) at each connection, so a rotated token is
    /// picked up at the next reconnect.
    TokenFile(PathBuf),
    /// A JWT read from this environment variable.
    TokenEnv(String),
    /// OAuth 2 client credentials, as StreamNative's service accounts use.
    OAuth2 {
        /// The issuer, whose `/.well-known/openid-configuration` names the token endpoint.
        issuer_url: String,
        /// A JSON key file with `client_id` and `client_secret`.
        credentials_file: PathBuf,
        /// The audience the token is for (StreamNative: `urn:sn:pulsar:ORG:INSTANCE`).
        audience: Option<String>,
        /// The scope asked for, if any.
        scope: Option<String>,
    },
}

const USAGE: &str = "use sqlite://PATH (the embedded backend) or postgres://USER:PASSWORD@HOST:PORT/DATABASE?pulsar=pulsar://HOST:PORT (the distributed backend)";

impl BackendUrl {
    /// Parses a backend URL; the error names the part that is wrong.
    pub fn parse(url: &str) -> Result<Self, String> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(format!(
                    "backend `{url}`: the file path is missing; {USAGE}"
                ));
            }
            return Ok(Self::Sqlite(path.to_owned()));
        }
        let Some((scheme, _)) = url.split_once("://") else {
            if url.is_empty() {
                return Err(format!("the backend URL is empty; {USAGE}"));
            }
            return Ok(Self::Sqlite(url.to_owned()));
        };
        if scheme != "postgres" && scheme != "postgresql" {
            return Err(format!(
                "backend `{}`: the `{scheme}` scheme is not a backend; {USAGE}",
                redact(url)
            ));
        }
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut passed = Vec::new();
        let mut pulsar = None;
        let mut tenant = "public".to_owned();
        let mut namespace = "default".to_owned();
        let mut prefix = "codegen-".to_owned();
        let mut pulsar_admin = None;
        let mut schema = None;
        let mut password_file = None;
        let mut pool = 16;
        let mut token_file = None;
        let mut token_env = None;
        let mut oauth2_issuer = None;
        let mut oauth2_credentials = None;
        let mut oauth2_audience = None;
        let mut oauth2_scope = None;
        let mut pulsar_tls_trust_certs = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decoded = percent_decode_str(value).decode_utf8_lossy().into_owned();
            match name {
                "pulsar" => pulsar = Some(decoded),
                "pulsar_tenant" => tenant = decoded,
                "pulsar_namespace" => namespace = decoded,
                "pulsar_prefix" => prefix = decoded,
                "pulsar_admin" => pulsar_admin = Some(decoded),
                "schema" => schema = Some(decoded),
                "password_file" => password_file = Some(PathBuf::from(decoded)),
                "pulsar_token_file" => token_file = Some(PathBuf::from(decoded)),
                "pulsar_token_env" => token_env = Some(decoded),
                "pulsar_oauth2_issuer" => oauth2_issuer = Some(decoded),
                "pulsar_oauth2_credentials" => oauth2_credentials = Some(PathBuf::from(decoded)),
                "pulsar_oauth2_audience" => oauth2_audience = Some(decoded),
                "pulsar_oauth2_scope" => oauth2_scope = Some(decoded),
                "pulsar_tls_trust_certs" => pulsar_tls_trust_certs = Some(PathBuf::from(decoded)),
                "pulsar_token" => {
                    return Err(
                        "backend URL: a token does not belong in the URL, which logs and process lists show: put it in a file (`pulsar_token_file=PATH`) or an environment variable (`pulsar_token_env=NAME`)".to_owned(),
                    );
                }
                "pool" => {
                    pool = decoded.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        format!(
                            "backend URL: `pool={value}` is not a positive number of connections"
                        )
                    })?;
                }
                _ => passed.push(pair),
            }
        }
        let Some(pulsar) = pulsar else {
            return Err(format!(
                "backend `{}`: the distributed backend needs a Pulsar broker for messages: add `?pulsar=pulsar://HOST:PORT`",
                redact(url)
            ));
        };
        if !pulsar.starts_with("pulsar://") && !pulsar.starts_with("pulsar+ssl://") {
            return Err(format!(
                "backend URL: `pulsar={pulsar}` is not a broker URL: expected pulsar://HOST:PORT"
            ));
        }
        let pulsar_auth = match (token_file, token_env, oauth2_issuer, oauth2_credentials) {
            (None, None, None, None) => PulsarAuth::None,
            (Some(file), None, None, None) => PulsarAuth::TokenFile(file),
            (None, Some(name), None, None) => PulsarAuth::TokenEnv(name),
            (None, None, Some(issuer_url), Some(credentials_file)) => PulsarAuth::OAuth2 {
                issuer_url,
                credentials_file,
                audience: oauth2_audience,
                scope: oauth2_scope,
            },
            (None, None, Some(_), None) | (None, None, None, Some(_)) => {
                return Err("backend URL: OAuth 2 needs both `pulsar_oauth2_issuer=URL` and `pulsar_oauth2_credentials=PATH` (the key file)".to_owned());
            }
            _ => {
                return Err("backend URL: choose one way to authenticate to Pulsar: `pulsar_token_file`, `pulsar_token_env` or the `pulsar_oauth2_*` parameters".to_owned());
            }
        };
        let url = if passed.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", passed.join("&"))
        };
        Ok(Self::Distributed {
            postgres: PostgresConfig {
                url,
                schema,
                pool_size: pool,
                password_file,
            },
            pulsar,
            tenant,
            namespace,
            prefix,
            pulsar_admin,
            pulsar_auth,
            pulsar_tls_trust_certs,
        })
    }

    /// The URL without its password, for logs.
    pub fn display(&self) -> String {
        match self {
            Self::Sqlite(path) => format!("sqlite://{path}"),
            Self::Distributed {
                postgres, pulsar, ..
            } => format!("{} + {pulsar}", redact(&postgres.url)),
        }
    }
}

/// The URL with its secrets as `***`: the password of `postgres://user:secret@host`, and the
/// value of a `password=` parameter (which libpq reads too).
pub(crate) fn redact(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let base = match base.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rsplit_once('@') {
                Some((user, host)) if user.contains(':') => {
                    let user = user.split_once(':').map_or(user, |(u, _)| u);
                    format!("{scheme}://{user}:***@{host}{}", &rest[authority_end..])
                }
                _ => base.to_owned(),
            }
        }
        None => base.to_owned(),
    };
    let Some(query) = query else {
        return base;
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if name.eq_ignore_ascii_case("password") => format!("{name}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{base}?{}", pairs.join("&"))
}

/// The distributed backend as the URL chooses it.
#[cfg(feature = "pulsar")]
pub type Distributed = DistributedBackend<PulsarTransport>;

/// The distributed backend as the URL chooses it; this build has no Pulsar transport.
#[cfg(not(feature = "pulsar"))]
pub type Distributed = DistributedBackend<SqliteBackend>;

/// Any backend a URL can name: what generated workers, workflow workers and clients hold.
#[derive(Debug)]
pub enum Backend {
    /// The embedded backend.
    Sqlite(SqliteBackend),
    /// PostgreSQL and Pulsar.
    Distributed(Distributed),
}

impl Backend {
    /// Opens the backend a URL names (see the module documentation).
    pub async fn open(url: &str) -> BackendResult<Self> {
        Self::open_parsed(&BackendUrl::parse(url).map_err(BackendError::Invalid)?).await
    }

    /// Opens a parsed backend URL for a long-running worker: while the backend cannot be
    /// reached (the database is starting, the broker is restarting), tries again after 200 ms,
    /// then twice as long each time up to 5 s, logging why at the first try and every eighth,
    /// as running workers do. A URL that is wrong in itself ([`BackendError::Invalid`]) fails
    /// at once. `role` names the worker in the log ("service", "workflow").
    pub async fn open_when_available(url: &BackendUrl, role: &str) -> BackendResult<Self> {
        let mut outage = crate::worker::Outage::default();
        loop {
            match Self::open_parsed(url).await {
                Ok(backend) => {
                    outage.reached(role);
                    return Ok(backend);
                }
                Err(BackendError::Unavailable(message)) => outage.wait(role, &message).await,
                Err(err) => return Err(err),
            }
        }
    }

    /// Opens a parsed backend URL.
    pub async fn open_parsed(url: &BackendUrl) -> BackendResult<Self> {
        match url {
            BackendUrl::Sqlite(path) => Ok(Self::Sqlite(SqliteBackend::open(path)?)),
            #[cfg(feature = "pulsar")]
            BackendUrl::Distributed {
                postgres,
                pulsar,
                tenant,
                namespace,
                prefix,
                pulsar_admin,
                pulsar_auth,
                pulsar_tls_trust_certs,
            } => {
                let transport = PulsarTransport::connect(PulsarConfig {
                    url: pulsar.clone(),
                    tenant: tenant.clone(),
                    namespace: namespace.clone(),
                    prefix: prefix.clone(),
                    admin: pulsar_admin.clone(),
                    auth: pulsar_auth.clone(),
                    tls_trust_certs: pulsar_tls_trust_certs.clone(),
                })
                .await?;
                Ok(Self::Distributed(
                    DistributedBackend::connect(postgres, transport).await?,
                ))
            }
            #[cfg(not(feature = "pulsar"))]
            BackendUrl::Distributed { .. } => Err(BackendError::Invalid(
                "the distributed backend needs Pulsar support, which this build lacks: build with the codegen-runtime cargo feature `pulsar` (it needs `protoc`)".to_owned(),
            )),
        }
    }
}

macro_rules! both {
    ($self:ident, $b:ident => $e:expr) => {
        match $self {
            Backend::Sqlite($b) => $e,
            Backend::Distributed($b) => $e,
        }
    };
}

#[async_trait::async_trait]
impl StateStore for Backend {
    async fn commit(&self, commits: Vec<Commit>) -> BackendResult<()> {
        both!(self, b => b.commit(commits).await)
    }

    async fn instance(&self, id: &str) -> BackendResult<Option<InstanceInfo>> {
        both!(self, b => b.instance(id).await)
    }

    async fn history(&self, id: &str) -> BackendResult<Vec<(String, HistoryEvent)>> {
        both!(self, b => b.history(id).await)
    }

    async fn list(
        &self,
        name: Option<&str>,
        status: Option<Status>,
        limit: usize,
    ) -> BackendResult<Vec<InstanceInfo>> {
        both!(self, b => b.list(name, status, limit).await)
    }

    async fn purge_ended(
        &self,
        ended_before: i64,
        name: Option<&str>,
        except: &[String],
        limit: usize,
    ) -> BackendResult<Vec<String>> {
        both!(self, b => b.purge_ended(ended_before, name, except, limit).await)
    }

    async fn purge(&self, id: &str) -> BackendResult<bool> {
        both!(self, b => b.purge(id).await)
    }

    async fn wait_for_change(&self, seen: &InstanceInfo, max_wait: Duration) {
        both!(self, b => b.wait_for_change(seen, max_wait).await);
    }
}

#[async_trait::async_trait]
impl MessageQueue for Backend {
    async fn acquire(
        &self,
        service: &str,
        holder: &str,
        want: u32,
        limits: &super::FlowLimits,
        lease_ms: i64,
    ) -> BackendResult<super::Grant> {
        both!(self, b => b.acquire(service, holder, want, limits, lease_ms).await)
    }

    async fn release(&self, service: &str, holder: &str, n: u32) -> BackendResult<()> {
        both!(self, b => b.release(service, holder, n).await)
    }

    async fn wait_for_release(&self, service: &str, max_wait_ms: i64) {
        both!(self, b => b.wait_for_release(service, max_wait_ms).await);
    }

    async fn back_off(&self, service: &str, until: i64) -> BackendResult<()> {
        both!(self, b => b.back_off(service, until).await)
    }

    async fn backing_off_until(&self, service: &str) -> BackendResult<i64> {
        both!(self, b => b.backing_off_until(service).await)
    }

    async fn send(&self, messages: Vec<Message>) -> BackendResult<()> {
        both!(self, b => b.send(messages).await)
    }

    async fn receive(
        &self,
        topic: &Topic,
        max: usize,
        lease_ms: i64,
    ) -> BackendResult<Vec<Delivery>> {
        both!(self, b => b.receive(topic, max, lease_ms).await)
    }

    async fn ack(&self, receipts: Vec<Receipt>) -> BackendResult<()> {
        both!(self, b => b.ack(receipts).await)
    }

    async fn settle(&self, settlements: Vec<Settlement>) -> BackendResult<()> {
        both!(self, b => b.settle(settlements).await)
    }

    async fn dead_letters(&self) -> BackendResult<Vec<DeadLetter>> {
        both!(self, b => b.dead_letters().await)
    }

    async fn redrive(&self, id: &str, message: Option<Message>) -> BackendResult<()> {
        both!(self, b => b.redrive(id, message).await)
    }

    async fn wait(&self, topic: &Topic, max_wait_ms: i64) {
        both!(self, b => b.wait(topic, max_wait_ms).await);
    }

    fn subscribe(&self, topic: &Topic, lease_ms: i64, capacity: usize) -> Subscription {
        both!(self, b => b.subscribe(topic, lease_ms, capacity))
    }
}

#[async_trait::async_trait]
impl Inspect for Backend {
    async fn instances(
        &self,
        filter: &InstanceFilter,
        after: Option<&Cursor>,
        limit: usize,
    ) -> BackendResult<Vec<InstanceInfo>> {
        both!(self, b => b.instances(filter, after, limit).await)
    }

    async fn status_counts(
        &self,
        name: Option<&str>,
        cap: u64,
    ) -> BackendResult<Vec<(Status, u64)>> {
        both!(self, b => b.status_counts(name, cap).await)
    }

    async fn children(&self, id: &str) -> BackendResult<Vec<InstanceInfo>> {
        both!(self, b => b.children(id).await)
    }

    async fn attempts(&self, id: &str) -> BackendResult<Vec<TaskAttempt>> {
        both!(self, b => b.attempts(id).await)
    }

    async fn queue(&self, topic: &Topic) -> BackendResult<Option<super::inspect::QueueDepth>> {
        both!(self, b => b.queue(topic).await)
    }

    async fn services(&self, since: i64) -> BackendResult<Vec<ServiceStats>> {
        both!(self, b => b.services(since).await)
    }

    async fn dead(&self, filter: &DeadFilter, limit: usize) -> BackendResult<Vec<DeadLetter>> {
        both!(self, b => b.dead(filter, limit).await)
    }

    async fn dead_letter(&self, id: &str) -> BackendResult<Option<DeadLetter>> {
        both!(self, b => b.dead_letter(id).await)
    }

    async fn queries(&self, id: &str) -> BackendResult<Option<crate::backend::QueryAnswers>> {
        both!(self, b => b.queries(id).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_are_paths() {
        assert_eq!(
            BackendUrl::parse("sqlite:///var/lib/x.db"),
            Ok(BackendUrl::Sqlite("/var/lib/x.db".into()))
        );
        assert_eq!(
            BackendUrl::parse("state.db"),
            Ok(BackendUrl::Sqlite("state.db".into()))
        );
        assert!(BackendUrl::parse("").unwrap_err().contains("empty"));
    }

    #[test]
    fn postgres_urls_carry_pulsar_and_pass_other_parameters_on() {
        let url = BackendUrl::parse(
            "postgres://app:s3cret@db:5432/flows?pulsar=pulsar%3A%2F%2Fmq%3A6650&pulsar_prefix=prod-&sslmode=disable&schema=billing&pool=4",
        )
        .unwrap();
        assert_eq!(
            url,
            BackendUrl::Distributed {
                postgres: PostgresConfig {
                    url: "postgres://app:s3cret@db:5432/flows?sslmode=disable".into(),
                    schema: Some("billing".into()),
                    pool_size: 4,
                    password_file: None,
                },
                pulsar: "pulsar://mq:6650".into(),
                tenant: "public".into(),
                namespace: "default".into(),
                prefix: "prod-".into(),
                pulsar_admin: None,
                pulsar_auth: PulsarAuth::None,
                pulsar_tls_trust_certs: None,
            }
        );
        assert_eq!(
            url.display(),
            "postgres://app:***@db:5432/flows?sslmode=disable + pulsar://mq:6650"
        );
    }

    #[test]
    fn secrets_are_redacted_wherever_the_url_is_shown() {
        let url = BackendUrl::parse(
            "postgres://app:s3cret@db/flows?password=t0psecret&pulsar=pulsar://mq:6650&password_file=/run/secrets/pg",
        )
        .unwrap();
        let shown = [url.display(), format!("{url:?}")];
        for text in &shown {
            assert!(
                !text.contains("s3cret") && !text.contains("t0psecret"),
                "{text}"
            );
        }
        assert_eq!(
            shown[0],
            "postgres://app:***@db/flows?password=*** + pulsar://mq:6650"
        );
        assert!(
            shown[1].contains("password_file: Some(\"/run/secrets/pg\")"),
            "{}",
            shown[1]
        );
        // Nothing to hide: the URL as it is.
        assert_eq!(redact("postgres://app@db/flows"), "postgres://app@db/flows");
        assert_eq!(
            redact("postgres://db/flows?sslmode=require"),
            "postgres://db/flows?sslmode=require"
        );
    }

    #[test]
    fn pulsar_authentication_is_named_by_file_variable_or_issuer_never_inline() {
        let parse = |query: &str| {
            BackendUrl::parse(&format!(
                "postgres://db/flows?pulsar=pulsar%2Bssl://mq:6651&{query}"
            ))
        };
        let auth = |url: BackendUrl| match url {
            BackendUrl::Distributed {
                pulsar_auth,
                pulsar_tls_trust_certs,
                ..
            } => (pulsar_auth, pulsar_tls_trust_certs),
            BackendUrl::Sqlite(_) => unreachable!(),
        };
        assert_eq!(
            auth(
                parse("pulsar_token_file=/run/secrets/pulsar&pulsar_tls_trust_certs=/etc/ca.pem")
                    .unwrap()
            ),
            (
                PulsarAuth::TokenFile("/run/secrets/pulsar".into()),
                Some("/etc/ca.pem".into())
            )
        );
        assert_eq!(
            auth(parse("pulsar_token_env=ASTRA_TOKEN").unwrap()).0,
            PulsarAuth::TokenEnv("ASTRA_TOKEN".into())
        );
        assert_eq!(
            auth(parse("pulsar_oauth2_issuer=https://auth.streamnative.cloud/&pulsar_oauth2_credentials=/run/key.json&pulsar_oauth2_audience=urn:sn:pulsar:o:i").unwrap()).0,
            PulsarAuth::OAuth2 {
                issuer_url: "https://auth.streamnative.cloud/".into(),
                credentials_file: "/run/key.json".into(),
                audience: Some("urn:sn:pulsar:o:i".into()),
                scope: None,
            }
        );
        let err = parse("pulsar_token=eyJhbGciOi.secret").unwrap_err();
        assert!(err.contains("pulsar_token_file=PATH"), "{err}");
        assert!(!err.contains("eyJ"), "{err}");
        let err = parse("pulsar_token_env=A&pulsar_token_file=/t").unwrap_err();
        assert!(err.contains("choose one way"), "{err}");
        let err = parse("pulsar_oauth2_issuer=https://auth").unwrap_err();
        assert!(err.contains("pulsar_oauth2_credentials=PATH"), "{err}");
    }

    #[test]
    fn wrong_urls_say_what_is_wrong() {
        let err = BackendUrl::parse("postgres://u:secret@db/flows").unwrap_err();
        assert!(err.contains("add `?pulsar=pulsar://HOST:PORT`"), "{err}");
        assert!(!err.contains("secret"), "the password is not shown: {err}");
        let err = BackendUrl::parse("pulsar://localhost:6650").unwrap_err();
        assert!(err.contains("`pulsar` scheme is not a backend"), "{err}");
        let err = BackendUrl::parse("postgres://db/x?pulsar=http://mq").unwrap_err();
        assert!(err.contains("not a broker URL"), "{err}");
        let err =
            BackendUrl::parse("postgres://db/x?pulsar=pulsar://mq:6650&pool=zero").unwrap_err();
        assert!(err.contains("`pool=zero`"), "{err}");
    }
}
