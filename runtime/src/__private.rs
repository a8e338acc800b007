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

/// How a response body becomes an operation's output.
pub mod decode {
    pub use crate::http::decode::{bytes, empty, json, text, unexpected_status};
}

/// Reads a field that may be absent, `null` or a value into `Option<Option<T>>`: serde
/// leaves an absent field to `#[serde(default)]` (`None`), and this gives `Some(None)` for
/// `null` and `Some(Some(value))` for a value. Written back, `Some(None)` is `null` again.
pub fn double_option<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
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

#[cfg(test)]
mod tests {
    use serde::Serialize;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Patch {
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "double_option"
        )]
        note: Option<Option<String>>,
    }

    #[test]
    fn absent_null_and_value_stay_apart() {
        for (json, value) in [
            ("{}", None),
            ("{\"note\":null}", Some(None)),
            ("{\"note\":\"x\"}", Some(Some("x".to_owned()))),
        ] {
            let patch: Patch = serde_json::from_str(json).unwrap();
            assert_eq!(patch, Patch { note: value });
            assert_eq!(serde_json::to_string(&patch).unwrap(), json);
        }
    }
}
