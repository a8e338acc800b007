//! How messages travel for the distributed backend, and the SQLite transport the tests use.

use crate::backend::{BackendResult, Delivery, Message, MessageQueue, Receipt, Topic};

/// How messages travel for the distributed backend: publish, receive under a lease, acknowledge.
///
/// Deduplication, dead letters and the transaction with state are the backend's, above this.
#[async_trait::async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Publishes messages, each not delivered before its `deliver_at`.
    async fn publish(&self, messages: &[Message]) -> BackendResult<()>;

    /// Takes up to `max` due messages of `topic`, delivered again if not acknowledged within
    /// `lease_ms`. On [`Topic::Workflows`] all messages of one key go to one receiver at a time.
    async fn receive(
        &self,
        topic: &Topic,
        max: usize,
        lease_ms: i64,
    ) -> BackendResult<Vec<Received>>;

    /// Acknowledges deliveries: they are not delivered again.
    async fn ack(&self, receipts: &[Receipt]) -> BackendResult<()>;

    /// Resolves when `topic` may have a message, or after `max_wait_ms`.
    async fn wait(&self, topic: &Topic, max_wait_ms: i64);

    /// How many messages wait in `topic`, when the transport can tell cheaply.
    async fn queue(
        &self,
        topic: &Topic,
    ) -> BackendResult<Option<crate::backend::inspect::QueueDepth>> {
        let _ = topic;
        Ok(None)
    }
}

/// What [`Transport::receive`] hands over.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    /// A message that decodes (boxed: the other variant is small).
    Message(Box<Delivery>),
    /// A message whose body does not decode: it goes to the dead letters.
    Undecodable {
        /// What acknowledges it.
        receipt: Receipt,
        /// Its id, as far as known.
        id: String,
        /// Its topic.
        topic: Topic,
        /// Its key.
        key: String,
        /// The body as received.
        body: String,
        /// Why it does not decode.
        error: String,
    },
}

/// The SQLite backend as a transport: PostgreSQL state with messages in a local file, for
/// tests of the state store on one machine.
#[async_trait::async_trait]
impl Transport for crate::backend::sqlite::SqliteBackend {
    async fn publish(&self, messages: &[Message]) -> BackendResult<()> {
        MessageQueue::send(self, messages.to_vec()).await
    }

    async fn receive(
        &self,
        topic: &Topic,
        max: usize,
        lease_ms: i64,
    ) -> BackendResult<Vec<Received>> {
        let deliveries = MessageQueue::receive(self, topic, max, lease_ms).await?;
        Ok(deliveries
            .into_iter()
            .map(|d| Received::Message(Box::new(d)))
            .collect())
    }

    async fn ack(&self, receipts: &[Receipt]) -> BackendResult<()> {
        MessageQueue::ack(self, receipts.to_vec()).await
    }

    async fn wait(&self, topic: &Topic, max_wait_ms: i64) {
        MessageQueue::wait(self, topic, max_wait_ms).await;
    }

    async fn queue(
        &self,
        topic: &Topic,
    ) -> BackendResult<Option<crate::backend::inspect::QueueDepth>> {
        self.queue_depth(topic).await.map(Some)
    }
}
