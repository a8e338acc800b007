//! gRPC calls for crates generated from protobuf services (feature `grpc`): unary,
//! server-streaming and client-streaming methods.
//!
//! Generated types are the canonical proto3 JSON mapping of their messages, not prost types: a
//! call turns the request into JSON, the JSON into a message by the service's descriptors
//! (prost-reflect, which implements the mapping), sends the message's bytes over tonic, and
//! reads the answer back the same way. One set of types thereby serves the HTTP/JSON methods of
//! a service and its plain gRPC ones.
//!
//! A server-streaming call collects the messages of the stream into the task's output, at most
//! [`GrpcClient::with_max_stream_messages`] of them (more fail the call, permanently); a
//! client-streaming call sends the task's list of messages as its stream. An attempt is the
//! whole call: a stream that breaks off midway is retried from its start.
//!
//! UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED and ABORTED are retryable; every other
//! status is permanent.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};
use serde::de::DeserializeOwned;
use tokio::sync::OnceCell;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::TaskError;
use crate::worker::{GrpcSettings, Handlers};

pub(crate) mod operation;

// What generated code calls is public only through `crate::__private`.
pub(crate) use operation::{GrpcKind, GrpcOperation};

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
    max_stream_messages: usize,
    metadata: Vec<(String, String)>,
    channel: OnceCell<Channel>,
}

impl fmt::Debug for GrpcClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcClient")
            .field("endpoint", &self.inner.endpoint)
            .field("timeout", &self.inner.timeout)
            .field("max_stream_messages", &self.inner.max_stream_messages)
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
                max_stream_messages: GrpcSettings::DEFAULT_MAX_STREAM_MESSAGES,
                metadata: Vec::new(),
                channel: OnceCell::new(),
            }),
        }
    }

    /// A client configured as the worker binary's flags say (`--grpc-endpoint`,
    /// `--grpc-max-stream-messages`).
    ///
    /// # Panics
    /// As [`GrpcClient::new`].
    pub fn from_settings(settings: &GrpcSettings, descriptors: &[u8]) -> Self {
        Self::new(settings.endpoint.clone(), descriptors)
            .with_max_stream_messages(settings.max_stream_messages)
    }

    /// Sets the deadline of each call, a stream's whole call included (30 s unless set).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.inner_mut().timeout = timeout;
        self
    }

    /// Sets the most messages a server-streaming call may answer with (10,000 unless set): a
    /// longer stream fails the call with a permanent error, so that an endless or unexpectedly
    /// long stream cannot fill the memory of the worker or the task's recorded result.
    pub fn with_max_stream_messages(mut self, max: usize) -> Self {
        self.inner_mut().max_stream_messages = max;
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

    /// Makes one call: no retry (the worker retries durably, by the error's kind). A
    /// streaming call is one attempt from its first message to its last.
    pub async fn attempt<T>(&self, request: &T) -> Result<T::Output, TaskError>
    where
        T: GrpcOperation,
        T::Output: DeserializeOwned,
    {
        let input = self.descriptor(T::INPUT)?;
        let output = self.descriptor(T::OUTPUT)?;
        let json = request.message()?;
        let messages = match T::KIND {
            GrpcKind::ClientStreaming => match json {
                serde_json::Value::Array(items) => items
                    .into_iter()
                    .enumerate()
                    .map(|(index, item)| encode::<T>(&input, item, Some(index)))
                    .collect::<Result<Vec<Bytes>, TaskError>>()?,
                other => {
                    return Err(TaskError::permanent(format!(
                        "{}: the request of a client-streaming call is a list of {} messages, not {}",
                        T::PATH,
                        T::INPUT,
                        json_kind(&other)
                    )));
                }
            },
            GrpcKind::Unary | GrpcKind::ServerStreaming => vec![encode::<T>(&input, json, None)?],
        };
        let channel = self.channel().await?;
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.map_err(|err| {
            TaskError::retryable(format!("{} is not ready: {err}", self.inner.endpoint))
        })?;
        let path = http::uri::PathAndQuery::from_static(T::PATH);
        let timeout = self.inner.timeout;
        let call = async {
            match T::KIND {
                GrpcKind::Unary => {
                    let message = messages.into_iter().next().unwrap_or_default();
                    let answer = grpc
                        .unary(self.request(message), path, RawCodec)
                        .await
                        .map_err(|status| status_error(T::PATH, &status))?;
                    decode::<T>(&output, answer.into_inner())
                }
                GrpcKind::ClientStreaming => {
                    let stream = futures_util::stream::iter(messages);
                    let answer = grpc
                        .client_streaming(self.request(stream), path, RawCodec)
                        .await
                        .map_err(|status| status_error(T::PATH, &status))?;
                    decode::<T>(&output, answer.into_inner())
                }
                GrpcKind::ServerStreaming => {
                    let message = messages.into_iter().next().unwrap_or_default();
                    let mut stream = grpc
                        .server_streaming(self.request(message), path, RawCodec)
                        .await
                        .map_err(|status| status_error(T::PATH, &status))?
                        .into_inner();
                    let max = self.inner.max_stream_messages;
                    let mut replies = Vec::new();
                    loop {
                        let next = stream.message().await.map_err(|status| {
                            status_error(
                                &format!("{} (after {} message(s))", T::PATH, replies.len()),
                                &status,
                            )
                        })?;
                        let Some(bytes) = next else { break };
                        if replies.len() == max {
                            // Dropping the stream cancels the call.
                            return Err(too_long::<T>(max));
                        }
                        replies.push(decode::<T>(&output, bytes)?);
                    }
                    Ok(serde_json::Value::Array(replies))
                }
            }
        };
        let json = tokio::time::timeout(timeout, call).await.map_err(|_| {
            TaskError::timed_out(format!(
                "{} did not finish within {timeout:?} (GrpcClient::with_timeout)",
                T::PATH
            ))
        })??;
        serde_json::from_value(json).map_err(|err| {
            TaskError::permanent(format!(
                "the answer {} does not match its generated type: {err}",
                T::OUTPUT
            ))
        })
    }

    /// A request carrying `message` with the client's deadline and metadata.
    fn request<M>(&self, message: M) -> tonic::Request<M> {
        let mut call = tonic::Request::new(message);
        call.set_timeout(self.inner.timeout);
        for (name, value) in &self.inner.metadata {
            let key = tonic::metadata::MetadataKey::from_bytes(name.as_bytes());
            let value = tonic::metadata::MetadataValue::try_from(value.as_str());
            if let (Ok(key), Ok(value)) = (key, value) {
                call.metadata_mut().insert(key, value);
            }
        }
        // The attempt's span, so the server's trace joins the workflow's.
        if let Some(parent) = crate::telemetry::trace::traceparent(&tracing::Span::current())
            && let Ok(value) = tonic::metadata::MetadataValue::try_from(parent.as_str())
        {
            call.metadata_mut().insert("traceparent", value);
        }
        call
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

/// One request message of `T`, from proto3 JSON to its bytes; `index` is its place in a
/// client stream.
fn encode<T>(
    input: &MessageDescriptor,
    json: serde_json::Value,
    index: Option<usize>,
) -> Result<Bytes, TaskError>
where
    T: GrpcOperation,
    T::Output: DeserializeOwned,
{
    let message = DynamicMessage::deserialize(input.clone(), json).map_err(|err| {
        let which = match index {
            Some(index) => format!("request message {index}"),
            None => "the request".to_owned(),
        };
        TaskError::permanent(format!(
            "{}: cannot encode {which} as {}: {err}",
            T::PATH,
            T::INPUT
        ))
    })?;
    Ok(Bytes::from(message.encode_to_vec()))
}

/// One response message of `T`, from its bytes to proto3 JSON.
fn decode<T>(output: &MessageDescriptor, bytes: Bytes) -> Result<serde_json::Value, TaskError>
where
    T: GrpcOperation,
    T::Output: DeserializeOwned,
{
    let reply = DynamicMessage::decode(output.clone(), bytes).map_err(|err| {
        TaskError::permanent(format!(
            "{}: the answer is not a valid {}: {err}",
            T::PATH,
            T::OUTPUT
        ))
    })?;
    serde_json::to_value(&reply).map_err(|err| {
        TaskError::permanent(format!(
            "{}: cannot read the answer {}: {err}",
            T::PATH,
            T::OUTPUT
        ))
    })
}

/// The error of a server stream longer than the client's bound.
fn too_long<T>(max: usize) -> TaskError
where
    T: GrpcOperation,
    T::Output: DeserializeOwned,
{
    TaskError::permanent(format!(
        "{} answered with more than {max} messages, the bound of a server-streaming call: raise it with GrpcClient::with_max_stream_messages, or the worker's --grpc-max-stream-messages ({}_GRPC_MAX_STREAM_MESSAGES)",
        T::PATH,
        crate::worker::env_prefix(T::SERVICE)
    ))
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
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
    use crate::{ErrorKind, Task};

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

    #[derive(serde::Serialize, serde::Deserialize)]
    struct ListThings;

    impl Task for ListThings {
        type Output = Vec<serde_json::Value>;
        const SERVICE: &'static str = "thing-store";
        const NAME: &'static str = "Things.ListThings";
        const IDEMPOTENT: bool = true;
    }

    impl GrpcOperation for ListThings {
        const PATH: &'static str = "/things.v1.Things/ListThings";
        const INPUT: &'static str = "things.v1.ListThingsRequest";
        const OUTPUT: &'static str = "things.v1.Thing";
        const KIND: GrpcKind = GrpcKind::ServerStreaming;

        fn message(&self) -> Result<serde_json::Value, TaskError> {
            Ok(serde_json::json!({}))
        }
    }

    #[test]
    fn a_stream_past_the_bound_names_the_method_the_bound_and_how_to_raise_it() {
        let err = too_long::<ListThings>(250);
        assert_eq!(err.kind(), ErrorKind::Permanent);
        let text = err.to_string();
        for part in [
            "/things.v1.Things/ListThings",
            "more than 250 messages",
            "GrpcClient::with_max_stream_messages",
            "--grpc-max-stream-messages",
            "THING_STORE_GRPC_MAX_STREAM_MESSAGES",
        ] {
            assert!(text.contains(part), "{part:?} missing from: {text}");
        }
    }

    #[test]
    fn the_worker_settings_configure_the_client() {
        let mut settings = GrpcSettings::new("http://127.0.0.1:1");
        assert_eq!(settings.max_stream_messages, 10_000);
        settings.max_stream_messages = 3;
        // An empty descriptor set encodes as no bytes.
        let client = GrpcClient::from_settings(&settings, &[]);
        assert_eq!(client.endpoint(), "http://127.0.0.1:1");
        assert_eq!(client.inner.max_stream_messages, 3);
    }
}
