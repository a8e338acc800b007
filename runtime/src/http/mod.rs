//! HTTP execution for generated clients: building requests, classifying responses, retrying.

mod client;
pub mod decode;
mod request;

pub use client::{CallOptions, HttpClient};
pub use request::RequestParts;

use crate::{Task, TaskError};

/// How a generated request struct becomes an HTTP request and its response an output.
///
/// Implemented by generated code only.
pub trait HttpOperation: Task {
    /// The HTTP method, upper case.
    const METHOD: &'static str;

    /// The header the API description names for idempotency keys, if any. The key is then
    /// sent in it on every call, idempotent method or not; otherwise non-idempotent calls send
    /// it in the client's idempotency header.
    const IDEMPOTENCY_HEADER: Option<&'static str> = None;

    /// Writes the path, query, headers and body of the request.
    fn build(&self, request: &mut RequestParts) -> Result<(), TaskError>;

    /// Reads the output from the body of a successful (2xx) response.
    fn decode(body: bytes::Bytes) -> Result<Self::Output, TaskError>;
}
