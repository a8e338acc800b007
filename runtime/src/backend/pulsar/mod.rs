//! Apache Pulsar as the [`Transport`] of the distributed backend (cargo feature `pulsar`).
//!
//! Topics, under `persistent://TENANT/NAMESPACE/`:
//! - `PREFIXworkflows`: the workflow engine's messages, keyed by instance id, read through one
//!   Key_Shared subscription, so all news of one instance goes to one worker at a time;
//! - `PREFIXtasks.SERVICE`: the tasks of one service, read through one Shared subscription, so
//!   the service's workers share them.
//!
//! Timers and retry delays are Pulsar's delayed delivery (`deliver_at_time`, which the broker
//! honours on Shared and Key_Shared subscriptions; `delayedDeliveryEnabled` must be on). The
//! broker may deliver a message up to its delivery tick early (`delayedDeliveryTickTimeMillis`,
//! unless `isDelayedDeliveryDeliverAtTimeStrict`): a retry 20 ms away, under a tick of 100 ms,
//! comes at once. So a message that comes before its time is held here, unacknowledged, until
//! it is due (see [`Incoming`]). A
//! delivery not acknowledged within its lease is sent again (the consumer's unacknowledged
//! message redelivery). Both subscriptions start at the earliest message, so what was sent
//! before the first worker subscribed is kept.
//!
//! `pulsar+ssl://` URLs connect over TLS, trusting the public authorities and, when given, the
//! certificates of `tls_trust_certs`; `auth.rs` has the token and OAuth 2 authentication.

mod auth;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use pulsar::consumer::InitialPosition;
use pulsar::proto::MessageIdData;
use pulsar::{Consumer, ConsumerOptions, Producer, Pulsar, SubType, TokioExecutor};
use tokio::sync::{Mutex, mpsc};

use super::distributed::{Received, Transport};
use super::inspect::QueueDepth;
use super::{BackendError, BackendResult, Delivery, Message, Receipt, Topic};
pub use crate::backend::url::PulsarAuth;
use crate::time::now_ms;
use auth::Credentials;

/// Where the broker is and how topics are named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulsarConfig {
    /// `pulsar://HOST:PORT` (or `pulsar+ssl://`).
    pub url: String,
    /// The tenant of the topics (`public` by default).
    pub tenant: String,
    /// The namespace of the topics (`default` by default).
    pub namespace: String,
    /// Put before every topic name (`codegen-` by default), so several deployments can share
    /// a namespace.
    pub prefix: String,
    /// The broker's admin API (`http://HOST:8080`), for the queue depths operators see; without
    /// it they are not known.
    pub admin: Option<String>,
    /// How to authenticate to the broker and its admin API.
    pub auth: PulsarAuth,
    /// PEM certificates to trust besides the public authorities, for `pulsar+ssl://` and an
    /// `https://` admin API (a self-managed broker's own authority).
    pub tls_trust_certs: Option<std::path::PathBuf>,
}

impl PulsarConfig {
    /// The broker at `url`, with the default tenant, namespace and prefix.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            tenant: "public".to_owned(),
            namespace: "default".to_owned(),
            prefix: "codegen-".to_owned(),
            admin: None,
            auth: PulsarAuth::None,
            tls_trust_certs: None,
        }
    }

    /// The full Pulsar topic name of a topic.
    pub fn topic(&self, topic: &Topic) -> String {
        let local = match topic {
            Topic::Workflows => "workflows".to_owned(),
            Topic::Tasks(service) => format!("tasks.{service}"),
        };
        format!(
            "persistent://{}/{}/{}{local}",
            self.tenant, self.namespace, self.prefix
        )
    }
}

/// The subscription of the workflow workers.
const WORKFLOW_SUBSCRIPTION: &str = "codegen-workflow-workers";

/// The subscription of the service workers of one service.
const SERVICE_SUBSCRIPTION: &str = "codegen-service-workers";

/// A subscription's queue, from its stats in the admin API: what is due and not handed to a
/// worker, what waits for its time, and the publish time of the oldest unacknowledged message
/// (which may be one in flight: the broker gives no closer figure).
fn queue_depth(stats: &serde_json::Value) -> QueueDepth {
    let count = |name: &str| stats[name].as_u64().unwrap_or(0);
    QueueDepth {
        ready: count("msgBacklogNoDelayed").saturating_sub(count("unackedMessages")),
        delayed: count("msgDelayed"),
        oldest_ready_at: stats["earliestMsgPublishTimeInBacklog"]
            .as_i64()
            .filter(|t| *t > 0),
    }
}

/// The lease of a subscription made by `wait` or `ack` before any `receive`.
const DEFAULT_LEASE_MS: i64 = 30_000;

/// How long a publish may wait for the broker's confirmations (Pulsar's own clients default
/// to 30 s too). The client library can wait forever on a producer whose connection broke
/// while a send was under way (streamnative/pulsar-rs#164); without a bound, that producer
/// would hold every later publish of the process, and the outbox relay's locked rows with it.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);

/// How long making a consumer may take.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(30);

type PulsarConsumer = Consumer<Vec<u8>, TokioExecutor>;
type PulsarMessage = pulsar::consumer::Message<Vec<u8>>;

/// One topic's subscription. A task owns the consumer (the client needs it exclusively to
/// receive and to acknowledge): it forwards messages to `incoming` and takes acknowledgements
/// from `acks`, so an acknowledgement never waits for a receiver.
struct Subscription {
    incoming: Mutex<Incoming>,
    acks: mpsc::UnboundedSender<MessageIdData>,
    pump: tokio::task::JoinHandle<()>,
}

struct Incoming {
    rx: mpsc::Receiver<Result<PulsarMessage, String>>,
    /// Messages received by `wait` and not yet handed out.
    buffered: VecDeque<PulsarMessage>,
    /// Messages the broker delivered before their time, with it: handed out once due.
    early: Vec<(i64, PulsarMessage)>,
}

impl Incoming {
    /// Takes `m` to hand out, or holds it when it came before its time.
    fn arrived(&mut self, m: PulsarMessage, now: i64) -> Option<PulsarMessage> {
        match m.payload.metadata.deliver_at_time {
            Some(at) if at > now => {
                self.early.push((at, m));
                None
            }
            _ => Some(m),
        }
    }

    /// Moves the held messages that are due now to the front of `buffered`, oldest first.
    fn release_due(&mut self, now: i64) {
        if self.early.iter().all(|(at, _)| *at > now) {
            return;
        }
        let (mut due, held): (Vec<_>, Vec<_>) = std::mem::take(&mut self.early)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.early = held;
        due.sort_by_key(|(at, _)| *at);
        for (_, m) in due.into_iter().rev() {
            self.buffered.push_front(m);
        }
    }

    /// When the first held message is due.
    fn next_due(&self) -> Option<i64> {
        self.early.iter().map(|(at, _)| *at).min()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.pump.abort();
    }
}

async fn pump(
    mut consumer: PulsarConsumer,
    topic: String,
    tx: mpsc::Sender<Result<PulsarMessage, String>>,
    mut acks: mpsc::UnboundedReceiver<MessageIdData>,
) {
    loop {
        tokio::select! {
            biased;
            id = acks.recv() => {
                let Some(id) = id else { return };
                if let Err(err) = consumer.ack_with_id(&topic, id).await {
                    // Not acknowledged: delivered again after the lease, which the receivers'
                    // deduplication absorbs.
                    tracing::warn!(%err, %topic, "acknowledging a Pulsar message failed");
                }
            }
            next = consumer.next() => {
                let item = match next {
                    Some(Ok(m)) => Ok(m),
                    Some(Err(e)) => Err(e.to_string()),
                    None => Err("the consumer closed".to_owned()),
                };
                let closed = item.is_err();
                if tx.send(item).await.is_err() || closed {
                    return;
                }
            }
        }
    }
}

/// Messages over Apache Pulsar.
///
/// Two clients, each made anew when an operation on it takes past its bound: the client
/// library keeps, per broker, the state of a connection being made, and a caller dropped while
/// it makes one (a `select!` that took another branch, a timeout) leaves that state for good,
/// so that every later operation of the client waits forever. Consumers are therefore made in
/// a task of their own, which a dropped caller does not cancel, and a publish or subscription
/// that outlasts its bound replaces its client.
pub struct PulsarTransport {
    config: PulsarConfig,
    connector: Connector,
    /// Publishes.
    publishing: Mutex<Publishing>,
    /// Subscribes and acknowledges.
    consuming: Mutex<Consuming>,
    /// What each receipt acknowledges: the topic and the Pulsar message id.
    receipts: std::sync::Mutex<HashMap<Receipt, (Topic, MessageIdData)>>,
    /// Asks the admin API for queue depths.
    admin: reqwest::Client,
    /// The token of every connection and admin request.
    credentials: Arc<Credentials>,
}

/// The client that publishes, and its producers, by topic. `None`: made at the next publish.
struct Publishing {
    client: Option<Pulsar<TokioExecutor>>,
    producers: HashMap<String, Producer<TokioExecutor>>,
}

/// The client that consumes, and its subscriptions. `None`: made at the next subscription.
struct Consuming {
    client: Option<Pulsar<TokioExecutor>>,
    subscriptions: HashMap<Topic, Arc<Subscription>>,
}

/// Makes clients of the broker: its URL, the certificates to trust, the credentials.
struct Connector {
    config: PulsarConfig,
    trusted: Option<Vec<u8>>,
    credentials: Arc<Credentials>,
}

impl Connector {
    /// The client in `slot`, made first if there is none.
    async fn client_in(
        &self,
        slot: &mut Option<Pulsar<TokioExecutor>>,
    ) -> BackendResult<Pulsar<TokioExecutor>> {
        if let Some(client) = slot {
            return Ok(client.clone());
        }
        let client = self.connect().await?;
        *slot = Some(client.clone());
        Ok(client)
    }

    async fn connect(&self) -> BackendResult<Pulsar<TokioExecutor>> {
        let config = &self.config;
        let mut builder = Pulsar::builder(config.url.clone(), TokioExecutor)
            .with_connection_retry_options(pulsar::ConnectionRetryOptions {
                max_retries: 3,
                connection_timeout: Duration::from_secs(5),
                ..Default::default()
            });
        if let Some(pem) = &self.trusted {
            builder = builder.with_certificate_chain(pem.clone());
        }
        if self.credentials.enabled() {
            builder =
                builder.with_auth_provider(Box::new(auth::Connection(self.credentials.clone())));
        }
        match builder.build().await {
            Ok(client) => Ok(client),
            Err(err) => {
                // The client says only that connecting failed; find out why.
                let why = diagnose(
                    &config.url,
                    self.trusted.as_deref(),
                    self.credentials.enabled(),
                )
                .await;
                Err(unavailable(config, &why, err))
            }
        }
    }
}

impl std::fmt::Debug for PulsarTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PulsarTransport")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn unavailable(config: &PulsarConfig, what: &str, err: impl std::fmt::Display) -> BackendError {
    BackendError::Unavailable(format!("Pulsar at {}: {what}: {err}", config.url))
}

/// Why a connection to the broker failed, found by connecting again step by step: the TCP
/// connection, the TLS handshake with the same trusted certificates as the client's, and
/// otherwise the broker's refusal, which with authentication on is the token.
async fn diagnose(url: &str, trusted: Option<&[u8]>, authenticating: bool) -> String {
    let address = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split([',', '/'])
        .next()
        .unwrap_or_default()
        .to_owned();
    let connecting = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(&address),
    );
    let stream = match connecting.await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            return format!(
                "cannot connect to {address} ({e}): check that the broker runs and the URL"
            );
        }
        Err(_) => {
            return format!(
                "cannot connect to {address} (no answer in 5 s): check that the broker runs and the URL"
            );
        }
    };
    if url.starts_with("pulsar+ssl://")
        && let Err(e) = handshake(stream, &address, trusted).await
    {
        return format!(
            "the TLS handshake with {address} failed ({e}): the broker's certificate must be signed by a public authority or by a certificate of pulsar_tls_trust_certs, and name the URL's host"
        );
    }
    if authenticating {
        "the broker refused the connection: check that it takes the token (one for another broker, or signed with another key, is refused)".to_owned()
    } else {
        "the broker refused the connection: a broker with authentication on needs a token (pulsar_token_file, pulsar_token_env or the pulsar_oauth2_* parameters)".to_owned()
    }
}

/// A TLS handshake trusting what the Pulsar client trusts: the public authorities and the
/// certificates of `trusted`.
async fn handshake(
    stream: tokio::net::TcpStream,
    address: &str,
    trusted: Option<&[u8]>,
) -> Result<(), String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in trusted
        .map(|pem| {
            rustls::pki_types::CertificateDer::pem_slice_iter(pem)
                .flatten()
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
    {
        roots.add(cert).map_err(|e| e.to_string())?;
    }
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    let name =
        rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(name, stream)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

impl PulsarTransport {
    /// Publishes `messages` and waits for the broker to confirm each (see
    /// [`PUBLISH_TIMEOUT`]).
    async fn publish_now(&self, messages: &[Message]) -> BackendResult<()> {
        let mut publishing = self.publishing.lock().await;
        let client = self.connector.client_in(&mut publishing.client).await?;
        let producers = &mut publishing.producers;
        let mut receipts = Vec::with_capacity(messages.len());
        let now = now_ms();
        for m in messages {
            let full = self.config.topic(&m.topic);
            if !producers.contains_key(&full) {
                let producer = client
                    .producer()
                    .with_topic(&full)
                    // A commit can send thousands of messages (a wide fan-out): wait for room
                    // in the client's queue rather than fail with `SlowDown`.
                    .with_options(pulsar::ProducerOptions {
                        block_queue_if_full: true,
                        ..Default::default()
                    })
                    .build()
                    .await
                    .map_err(|e| {
                        unavailable(&self.config, &format!("cannot publish to {full}"), e)
                    })?;
                producers.insert(full.clone(), producer);
            }
            let producer = producers
                .get_mut(&full)
                .ok_or_else(|| unavailable(&self.config, "no producer", &full))?;
            let payload =
                serde_json::to_vec(m).map_err(|e| BackendError::Invalid(e.to_string()))?;
            let message = pulsar::producer::Message {
                payload,
                properties: HashMap::from([("id".to_owned(), m.id.clone())]),
                partition_key: Some(m.key.clone()),
                deliver_at_time: (m.deliver_at > now).then_some(m.deliver_at),
                ..Default::default()
            };
            let receipt = producer
                .send_non_blocking(message)
                .await
                .map_err(|e| unavailable(&self.config, &format!("cannot publish to {full}"), e))?;
            receipts.push(receipt);
        }
        drop(publishing);
        for r in receipts {
            r.await.map_err(|e| {
                unavailable(&self.config, "the broker did not confirm a message", e)
            })?;
        }
        Ok(())
    }

    /// Connects to the broker.
    pub async fn connect(config: PulsarConfig) -> BackendResult<Self> {
        for (what, value) in [("tenant", &config.tenant), ("namespace", &config.namespace)] {
            if value.is_empty()
                || !value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(BackendError::Invalid(format!(
                    "Pulsar {what} `{value}`: use letters, digits, `-`, `_` and `.` only"
                )));
            }
        }
        if !config
            .prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(BackendError::Invalid(format!(
                "Pulsar topic prefix `{}`: use letters, digits, `-`, `_` and `.` only",
                config.prefix
            )));
        }
        if config.tls_trust_certs.is_some() && !config.url.starts_with("pulsar+ssl://") {
            return Err(BackendError::Invalid(format!(
                "pulsar_tls_trust_certs is for a TLS broker URL (pulsar+ssl://HOST:PORT), not {}",
                config.url
            )));
        }
        let trusted = match &config.tls_trust_certs {
            None => None,
            Some(file) => Some(std::fs::read(file).map_err(|e| {
                BackendError::Invalid(format!(
                    "pulsar_tls_trust_certs `{}`: cannot read it ({e})",
                    file.display()
                ))
            })?),
        };
        let credentials =
            Arc::new(Credentials::new(config.auth.clone()).map_err(BackendError::Invalid)?);
        // A token that cannot be had is said now, not as a failed connection.
        credentials.token().await.map_err(|e| {
            BackendError::Unavailable(format!("Pulsar at {}: authentication: {e}", config.url))
        })?;
        if let Some(admin) = &config.admin
            && !admin.starts_with("http://")
            && !admin.starts_with("https://")
        {
            return Err(BackendError::Invalid(format!(
                "Pulsar admin `{admin}`: expected the admin API's URL, http://HOST:PORT"
            )));
        }
        let connector = Connector {
            config: config.clone(),
            trusted: trusted.clone(),
            credentials: credentials.clone(),
        };
        // Two clients, so two connections: the client library does not set TCP_NODELAY, and
        // on a shared connection an acknowledgement (which the broker does not answer) holds
        // back the next send by the broker's delayed ACK, about 40 ms. A connection that only
        // sends (each send answered by a receipt) and one that only consumes avoid it. Both
        // are made now, so that a wrong URL, certificate or token is said at the start.
        let publishing = connector.connect().await?;
        let consuming = connector.connect().await?;
        let mut admin = reqwest::Client::builder().timeout(Duration::from_secs(3));
        if let Some(pem) = &trusted {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
                BackendError::Invalid(format!(
                    "pulsar_tls_trust_certs: not PEM certificates ({e})"
                ))
            })?;
            for cert in certs {
                admin = admin.add_root_certificate(cert);
            }
        }
        let admin = admin
            .build()
            .map_err(|e| BackendError::Invalid(format!("the Pulsar admin client: {e}")))?;
        Ok(Self {
            config,
            connector,
            admin,
            credentials,
            publishing: Mutex::new(Publishing {
                client: Some(publishing),
                producers: HashMap::new(),
            }),
            consuming: Mutex::new(Consuming {
                client: Some(consuming),
                subscriptions: HashMap::new(),
            }),
            receipts: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &PulsarConfig {
        &self.config
    }

    async fn subscription(&self, topic: &Topic, lease_ms: i64) -> BackendResult<Arc<Subscription>> {
        let mut consuming = self.consuming.lock().await;
        if let Some(s) = consuming.subscriptions.get(topic) {
            return Ok(s.clone());
        }
        let client = self.connector.client_in(&mut consuming.client).await?;
        let (name, sub_type) = match topic {
            Topic::Workflows => (WORKFLOW_SUBSCRIPTION, SubType::KeyShared),
            Topic::Tasks(_) => (SERVICE_SUBSCRIPTION, SubType::Shared),
        };
        let full = self.config.topic(topic);
        let lease = Duration::from_millis(u64::try_from(lease_ms.max(1_000)).unwrap_or(30_000));
        // In a task of its own: a caller dropped meanwhile must not cancel it (see the type).
        let mut making = tokio::spawn({
            let full = full.clone();
            async move {
                client
                    .consumer()
                    .with_topic(&full)
                    .with_subscription(name)
                    .with_subscription_type(sub_type)
                    .with_options(
                        ConsumerOptions::default().with_initial_position(InitialPosition::Earliest),
                    )
                    .with_unacked_message_resend_delay(Some(lease))
                    .build::<Vec<u8>>()
                    .await
            }
        });
        let made = tokio::time::timeout(SUBSCRIBE_TIMEOUT, &mut making).await;
        let consumer: PulsarConsumer = match made {
            Ok(joined) => joined
                .map_err(|e| e.to_string())
                .and_then(|built| built.map_err(|e| e.to_string()))
                .map_err(|e| {
                    unavailable(&self.config, &format!("cannot subscribe to {full}"), e)
                })?,
            Err(_) => {
                // The client may be stuck for good: the next subscription makes a new one, and
                // the subscriptions of this one are made again on it.
                making.abort();
                consuming.client = None;
                consuming.subscriptions.clear();
                return Err(unavailable(
                    &self.config,
                    &format!("cannot subscribe to {full}"),
                    format!("no answer within {} s", SUBSCRIBE_TIMEOUT.as_secs()),
                ));
            }
        };
        let (tx, rx) = mpsc::channel(256);
        let (acks, ack_rx) = mpsc::unbounded_channel();
        let s = Arc::new(Subscription {
            incoming: Mutex::new(Incoming {
                rx,
                buffered: VecDeque::new(),
                early: Vec::new(),
            }),
            acks,
            pump: tokio::spawn(pump(consumer, full, tx, ack_rx)),
        });
        consuming.subscriptions.insert(topic.clone(), s.clone());
        Ok(s)
    }

    /// Forgets `topic`'s subscription, whose consumer failed: the next call makes it again.
    async fn unsubscribe(&self, topic: &Topic) {
        self.consuming.lock().await.subscriptions.remove(topic);
    }

    fn delivery(&self, topic: &Topic, m: &PulsarMessage) -> Received {
        let id = m.message_id().clone();
        let receipt = Receipt(format!(
            "{}@{}:{}:{}:{}",
            topic.name(),
            id.ledger_id,
            id.entry_id,
            id.partition.unwrap_or(-1),
            id.batch_index.unwrap_or(-1)
        ));
        self.receipts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(receipt.clone(), (topic.clone(), id));
        let data = &m.payload.data;
        match serde_json::from_slice::<Message>(data) {
            Ok(message) => Received::Message(Box::new(Delivery { receipt, message })),
            Err(e) => Received::Undecodable {
                receipt,
                id: m
                    .payload
                    .metadata
                    .properties
                    .iter()
                    .find(|kv| kv.key == "id")
                    .map_or_else(|| "unknown".to_owned(), |kv| kv.value.clone()),
                topic: topic.clone(),
                key: m.key().unwrap_or_default(),
                body: String::from_utf8_lossy(data).into_owned(),
                error: e.to_string(),
            },
        }
    }
}

#[async_trait::async_trait]
impl Transport for PulsarTransport {
    async fn queue(&self, topic: &Topic) -> BackendResult<Option<QueueDepth>> {
        let Some(admin) = &self.config.admin else {
            return Ok(None);
        };
        let full = self.config.topic(topic);
        let path = full.replacen("persistent://", "", 1);
        let url = format!(
            "{}/admin/v2/persistent/{path}/stats?getEarliestTimeInBacklog=true",
            admin.trim_end_matches('/')
        );
        let mut request = self.admin.get(&url);
        match self.credentials.token().await {
            Ok(Some(token)) => request = request.bearer_auth(token),
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(%err, "no token for the Pulsar admin API");
                return Ok(None);
            }
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(err) => {
                // The figures are for people; the workers do not need them.
                tracing::warn!(%err, %full, "the Pulsar admin API did not answer");
                return Ok(None);
            }
        };
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            // No message was ever sent to it.
            return Ok(Some(QueueDepth::default()));
        }
        let stats: serde_json::Value = match response.error_for_status() {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(err) => {
                tracing::warn!(%err, %full, "the Pulsar admin API refused the stats");
                return Ok(None);
            }
        };
        let subscription = match topic {
            Topic::Workflows => WORKFLOW_SUBSCRIPTION,
            Topic::Tasks(_) => SERVICE_SUBSCRIPTION,
        };
        Ok(Some(queue_depth(&stats["subscriptions"][subscription])))
    }

    async fn publish(&self, messages: &[Message]) -> BackendResult<()> {
        if messages.is_empty() {
            return Ok(());
        }
        match tokio::time::timeout(PUBLISH_TIMEOUT, self.publish_now(messages)).await {
            Ok(published) => published,
            Err(_) => {
                // The client may be stuck for good (see the type): the next publish makes a new
                // one, and new producers. What was sent may reach the broker after all:
                // receivers drop a second copy by id.
                let mut publishing = self.publishing.lock().await;
                publishing.client = None;
                publishing.producers.clear();
                Err(unavailable(
                    &self.config,
                    "publishing",
                    format!(
                        "the broker did not confirm within {} s",
                        PUBLISH_TIMEOUT.as_secs()
                    ),
                ))
            }
        }
    }

    async fn receive(
        &self,
        topic: &Topic,
        max: usize,
        lease_ms: i64,
    ) -> BackendResult<Vec<Received>> {
        let sub = self.subscription(topic, lease_ms).await?;
        let mut incoming = sub.incoming.lock().await;
        let now = now_ms();
        incoming.release_due(now);
        let mut out = Vec::new();
        while out.len() < max {
            let next = match incoming.buffered.pop_front() {
                Some(m) => m,
                None => match incoming.rx.try_recv() {
                    Ok(Ok(m)) => match incoming.arrived(m, now) {
                        Some(m) => m,
                        None => continue,
                    },
                    Ok(Err(e)) => {
                        drop(incoming);
                        // The consumer failed: subscribe anew on the next call.
                        self.unsubscribe(topic).await;
                        if out.is_empty() {
                            return Err(unavailable(&self.config, "receiving", e));
                        }
                        break;
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        drop(incoming);
                        self.unsubscribe(topic).await;
                        return Err(unavailable(
                            &self.config,
                            "receiving",
                            "the consumer stopped; subscribing again",
                        ));
                    }
                },
            };
            out.push(self.delivery(topic, &next));
        }
        Ok(out)
    }

    async fn ack(&self, receipts: &[Receipt]) -> BackendResult<()> {
        let mut by_topic: HashMap<Topic, Vec<MessageIdData>> = HashMap::new();
        {
            let mut known = self.receipts.lock().unwrap_or_else(|p| p.into_inner());
            for r in receipts {
                let (topic, id) = known.remove(r).ok_or_else(|| {
                    BackendError::Invalid(format!("`{}` is not a receipt of this process", r.0))
                })?;
                by_topic.entry(topic).or_default().push(id);
            }
        }
        for (topic, ids) in by_topic {
            let sub = self.subscription(&topic, DEFAULT_LEASE_MS).await?;
            for id in ids {
                sub.acks.send(id).map_err(|_| {
                    unavailable(&self.config, "acknowledging", "the consumer closed")
                })?;
            }
        }
        Ok(())
    }

    async fn wait(&self, topic: &Topic, max_wait_ms: i64) {
        let wait = Duration::from_millis(u64::try_from(max_wait_ms).unwrap_or(0));
        let Ok(sub) = self.subscription(topic, DEFAULT_LEASE_MS).await else {
            tokio::time::sleep(wait).await;
            return;
        };
        let mut incoming = sub.incoming.lock().await;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let now = now_ms();
            incoming.release_due(now);
            if !incoming.buffered.is_empty() {
                return;
            }
            // Until the first held message is due, at the latest.
            let until = incoming.next_due().map_or(deadline, |at| {
                let ms = u64::try_from(at - now).unwrap_or(0);
                deadline.min(tokio::time::Instant::now() + Duration::from_millis(ms))
            });
            match tokio::time::timeout_at(until, incoming.rx.recv()).await {
                Ok(Some(Ok(m))) => {
                    if let Some(m) = incoming.arrived(m, now_ms()) {
                        incoming.buffered.push_back(m);
                        return;
                    }
                }
                Ok(Some(Err(err))) => {
                    tracing::warn!(%err, "the Pulsar consumer failed; subscribing again");
                    drop(incoming);
                    self.unsubscribe(topic).await;
                    return;
                }
                Ok(None) => return,
                Err(_) if until >= deadline => return,
                // A held message is due.
                Err(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_depths_come_from_the_subscription_stats() {
        let stats = serde_json::json!({
            "msgBacklog": 12,
            "msgBacklogNoDelayed": 9,
            "msgDelayed": 3,
            "unackedMessages": 4,
            "earliestMsgPublishTimeInBacklog": 1_764_590_000_000_i64
        });
        assert_eq!(
            queue_depth(&stats),
            QueueDepth {
                ready: 5,
                delayed: 3,
                oldest_ready_at: Some(1_764_590_000_000),
            }
        );
        let empty = serde_json::json!({"msgBacklog": 0, "earliestMsgPublishTimeInBacklog": -1});
        assert_eq!(queue_depth(&empty), QueueDepth::default());
    }
}
