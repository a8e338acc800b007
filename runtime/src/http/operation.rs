//! The contract a generated request struct implements for HTTP.

use super::RequestParts;
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

    /// The security requirements: alternatives, each a list of scheme names that are all sent.
    /// The client uses the first alternative it has every credential for; none is sent when
    /// the list is empty.
    const SECURITY: &'static [&'static [&'static str]] = &[];

    /// The media types sent in `Accept`, most preferred first: those of the described
    /// responses that [`decode`](Self::decode) reads. Empty leaves the header to the client
    /// (reqwest sends `*/*`). A header parameter or a client header named `Accept` wins.
    const ACCEPT: &'static [&'static str] = &[];

    /// Writes the path, query, headers and body of the request.
    fn build(&self, request: &mut RequestParts) -> Result<(), TaskError>;

    /// Reads the output from the status and body of a successful (2xx) response.
    fn decode(status: u16, body: bytes::Bytes) -> Result<Self::Output, TaskError>;
}
