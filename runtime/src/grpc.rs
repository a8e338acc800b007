//! Unary gRPC calls for crates generated from protobuf services (feature `grpc`).
//!
//! Generated types are the canonical proto3 JSON mapping of their messages, not prost types: a
//! call turns the request into JSON, the JSON into a message by the service's descriptors
//! (prost-reflect, which implements the mapping), sends the message's bytes over tonic, and
//! reads the answer back the same way. One set of types thereby serves the HTTP/JSON methods of
//! a service and its plain gRPC ones.
//!
//! UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED and ABORTED are retryable; every other
//! status is permanent.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::OnceCell;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::worker::Handlers;
use crate::{Task, TaskError};

/// How a generated request struct becomes a gRPC call. Implemented by generated code only.
pub trait GrpcOperation: Task + Serialize
where
    Self::Output: DeserializeOwned,
{
    /// `/<package>.<Service>/<Method>`.
    const PATH: &'static str;
    /// The full name of the request message.
    const INPUT: &'static str;
    /// The full name of the response message.
    const OUTPUT: &'static str;

    /// The request message, as proto3 JSON.
    fn message(&self) -> Result<serde_json::Value, TaskError>;
}

/// A client for one gRPC server: a channel opened on first use, and the descriptors of the
/// service's messages.
#[derive(Clone)]
pub struct GrpcClient {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: String,
    pool: DescriptorPool,
    timeout: Duration,
    metadata: Vec<(String, String)>,
    channel: OnceCell<Channel>,
}

impl fmt::Debug for GrpcClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcClient")
            .field("endpoint", &self.inner.endpoint)
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

impl GrpcClient {
    /// A client for the server at `endpoint` (`http://host:port` or `https://...`), reading
    /// messages by `descriptors` (an encoded `FileDescriptorSet`, which generated crates carry).
    ///
    /// # Panics
    /// If `descriptors` do not decode: they are generated, so that is a bug of the generator.
    pub fn new(endpoint: impl Into<String>, descriptors: &[u8]) -> Self {
        let pool = DescriptorPool::decode(descriptors)
            .expect("the generated descriptor set decodes (report this as a codegen bug)");
        Self {
            inner: Arc::new(Inner {
                endpoint: endpoint.into(),
                pool,
                timeout: Duration::from_secs(30),
                metadata: Vec::new(),
                channel: OnceCell::new(),
            }),
        }
    }

    /// Sets the deadline of each call (30 s unless set).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.inner_mut().timeout = timeout;
        self
    }

    /// Sends `value` in metadata `name` with every call (`authorization`, an API key...).
    pub fn with_metadata(mut self, name: &str, value: &str) -> Self {
        self.inner_mut()
            .metadata
            .push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    fn inner_mut(&mut self) -> &mut Inner {
        Arc::get_mut(&mut self.inner).expect("GrpcClient is configured before it is cloned")
    }

    /// The server address.
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }

    /// Makes one call: no retry (the worker retries durably, by the error's kind).
    pub async fn attempt<T>(&self, request: &T) -> Result<T::Output, TaskError>
    where
        T: GrpcOperation,
        T::Output: DeserializeOwned,
    {
        let input = self.descriptor(T::INPUT)?;
        let output = self.descriptor(T::OUTPUT)?;
        let json = request.message()?;
        let message = DynamicMessage::deserialize(input, json).map_err(|err| {
            TaskError::permanent(format!("cannot encode the request as {}: {err}", T::INPUT))
        })?;
        let channel = self.channel().await?;
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.map_err(|err| {
            TaskError::retryable(format!("{} is not ready: {err}", self.inner.endpoint))
        })?;
        let mut call = tonic::Request::new(Bytes::from(message.encode_to_vec()));
        call.set_timeout(self.inner.timeout);
        for (name, value) in &self.inner.metadata {
            let key = tonic::metadata::MetadataKey::from_bytes(name.as_bytes());
            let value = tonic::metadata::MetadataValue::try_from(value.as_str());
            if let (Ok(key), Ok(value)) = (key, value) {
                call.metadata_mut().insert(key, value);
            }
        }
        let path = http::uri::PathAndQuery::from_static(T::PATH);
        let answer = grpc
            .unary(call, path, RawCodec)
            .await
            .map_err(|status| status_error(T::PATH, &status))?;
        let reply = DynamicMessage::decode(output, answer.into_inner()).map_err(|err| {
            TaskError::permanent(format!("the answer is not a valid {}: {err}", T::OUTPUT))
        })?;
        let json = serde_json::to_value(&reply).map_err(|err| {
            TaskError::permanent(format!("cannot read the answer {}: {err}", T::OUTPUT))
        })?;
        serde_json::from_value(json).map_err(|err| {
            TaskError::permanent(format!(
                "the answer {} does not match its generated type: {err}",
                T::OUTPUT
            ))
        })
    }

    /// Makes the call, retrying retryable failures by the task's retry policy.
    pub async fn execute<T>(&self, request: &T) -> Result<T::Output, TaskError>
    where
        T: GrpcOperation,
        T::Output: DeserializeOwned,
    {
        let policy = T::retry_policy();
        let mut attempt = 1;
        loop {
            match self.attempt(request).await {
                Err(err) => match policy.next_delay(attempt, &err) {
                    Some(delay) => {
                        tokio::time::sleep(delay).await;
                        attempt += 1;
                    }
                    None => return Err(err),
                },
                ok => return ok,
            }
        }
    }

    fn descriptor(&self, name: &str) -> Result<MessageDescriptor, TaskError> {
        self.inner.pool.get_message_by_name(name).ok_or_else(|| {
            TaskError::permanent(format!(
                "message {name} is not in the generated descriptors (report this as a codegen bug)"
            ))
        })
    }

    async fn channel(&self) -> Result<Channel, TaskError> {
        self.inner
            .channel
            .get_or_try_init(|| async {
                let endpoint =
                    Endpoint::from_shared(self.inner.endpoint.clone()).map_err(|err| {
                        TaskError::permanent(format!(
                            "`{}` is not a gRPC endpoint URL: {err}",
                            self.inner.endpoint
                        ))
                    })?;
                Ok(endpoint
                    .connect_timeout(Duration::from_secs(10))
                    .connect_lazy())
            })
            .await
            .cloned()
    }
}

impl Handlers {
    /// Runs tasks of type `T` as one gRPC call through `client`. Retries are the worker's
    /// (durable), not the client's.
    pub fn grpc<T>(&mut self, client: GrpcClient) -> &mut Self
    where
        T: GrpcOperation,
        T::Output: DeserializeOwned,
    {
        self.task::<T, _, _>(move |task, _ctx| {
            let client = client.clone();
            async move { client.attempt(&task).await }
        })
    }
}

/// A failed call as a task error: retryable for the codes that say "try again".
pub fn status_error(path: &str, status: &Status) -> TaskError {
    let message = format!(
        "{path} failed with {:?}: {}",
        status.code(),
        status.message()
    );
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted | Code::Aborted => {
            TaskError::retryable(message)
        }
        _ => TaskError::permanent(message),
    }
}

/// A tonic codec that sends and receives messages as the bytes they already are: the client
/// encodes them by their descriptors. Public for servers in tests that answer generated clients.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn the_codes_that_say_try_again_are_retryable() {
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::ResourceExhausted,
            Code::Aborted,
        ] {
            let err = status_error("/s.S/M", &Status::new(code, "busy"));
            assert_eq!(err.kind(), ErrorKind::Retryable, "{code:?}");
        }
        for code in [
            Code::InvalidArgument,
            Code::NotFound,
            Code::PermissionDenied,
            Code::Unauthenticated,
            Code::Internal,
            Code::Unimplemented,
        ] {
            let err = status_error("/s.S/M", &Status::new(code, "no"));
            assert_eq!(err.kind(), ErrorKind::Permanent, "{code:?}");
            assert!(err.to_string().contains("/s.S/M failed with"), "{err}");
        }
    }
}
