//! The parts of an HTTP request that generated code fills in, and the encoding rules of OpenAPI
//! parameter styles and request bodies.
//!
//! Parameters follow the style tables of OpenAPI 3.1.1 (RFC 6570 for `simple`, `label`,
//! `matrix` and `form`): a value is serialized to JSON first, then written as a scalar, a list or
//! a list of key/value pairs. Values are percent-encoded where they go (path segments, query
//! strings, cookies) and the delimiters of the style are not, so a comma inside a value stays
//! distinct from a comma between values.
//!
//! - `params.rs`: path, query, header and cookie parameters by style;
//! - `body.rs`: JSON, form, multipart, text and byte bodies, and the media type chosen;
//! - `multipart.rs`: multipart forms and their files.

mod body;
mod multipart;
mod params;
#[cfg(test)]
mod tests;

use crate::http::auth::Secret;

pub use multipart::{File, FileParts, FileRef, Multipart};
pub use params::{Style, json_text};

/// A request being built: path, query, headers and body, before any I/O.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestParts {
    pub(crate) path: String,
    /// Encoded `name=value` pieces of the query string, in order.
    pub(crate) query: Vec<String>,
    pub(crate) headers: Vec<(String, String)>,
    /// Credential headers, sent marked sensitive.
    pub(crate) secret_headers: Vec<(String, Secret)>,
    /// Encoded `name=value` pieces of the `Cookie` header, in order.
    pub(crate) cookies: Vec<String>,
    pub(crate) body: Option<Body>,
    /// The media types the client prefers for bodies, most preferred first.
    pub(crate) preferred: Vec<String>,
}

/// An encoded request body with its media type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Body {
    pub(crate) content_type: String,
    pub(crate) bytes: Vec<u8>,
}
