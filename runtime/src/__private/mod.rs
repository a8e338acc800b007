//! What generated crates call, and nothing else does: how their request structs become HTTP
//! requests or gRPC calls, how responses are read, and the helpers their serde impls use.
//!
//! Internal: named only by code `codegen gen` writes, and changed with the generator, so not
//! covered by the runtime's semantic versioning. Each item has this one public path. What users
//! of a generated crate name themselves (`Task`, `TaskError`, `http::HttpClient`,
//! `worker::Handlers`, the `schema` types of fields) is in the runtime's public modules.

pub use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

#[cfg(feature = "grpc")]
pub use crate::grpc::operation::{GrpcKind, GrpcOperation};
pub use crate::http::auth::{env_name, is_idempotent_method};
pub use crate::http::operation::HttpOperation;
pub use crate::http::request::{RequestParts, Style, json_text};
pub use object::{ObjectReader, ObjectWriter, Untagged};

mod object;

/// How a response body becomes an operation's output.
pub mod decode {
    pub use crate::http::decode::{bytes, empty, json, text, unexpected_status};
}

/// Reads a value and its discriminator: the string value of `property`, if it has one. The
/// value keeps the property, so the variant it selects reads it too.
pub fn tagged<'de, D: Deserializer<'de>>(
    deserializer: D,
    property: &str,
) -> Result<(Option<String>, Value), D::Error> {
    let value = Value::deserialize(deserializer)?;
    let tag = value
        .get(property)
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok((tag, value))
}

/// Reads the variant a discriminator selected.
pub fn variant<T: DeserializeOwned, E: serde::de::Error>(value: Value) -> Result<T, E> {
    serde_json::from_value(value).map_err(E::custom)
}
