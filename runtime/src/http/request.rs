//! The parts of an HTTP request that generated code fills in.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Serialize;
use serde_json::Value;

use crate::TaskError;

/// Characters left as they are in a path segment: RFC 3986 unreserved.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Characters left as they are in a variable that spans path segments: unreserved and `/`.
const SEGMENTS: &AsciiSet = &SEGMENT.remove(b'/');

/// A request being built: path, query, headers and body, before any I/O.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestParts {
    pub(crate) path: String,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) cookies: Vec<(String, String)>,
    pub(crate) body: Option<Body>,
}

/// An encoded request body with its media type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Body {
    pub(crate) content_type: String,
    pub(crate) bytes: Vec<u8>,
}

impl RequestParts {
    /// Appends literal text of the path template.
    pub fn path(&mut self, literal: &str) {
        self.path.push_str(literal);
    }

    /// Appends a path parameter, percent-encoded (simple style).
    pub fn path_param<T: Serialize + ?Sized>(
        &mut self,
        name: &str,
        value: &T,
    ) -> Result<(), TaskError> {
        let values = flatten(name, value)?;
        if values.is_empty() {
            return Err(TaskError::permanent(format!(
                "path parameter `{name}` has no value"
            )));
        }
        let joined = values.join(",");
        self.path.extend(utf8_percent_encode(&joined, SEGMENT));
        Ok(())
    }

    /// Appends a path parameter that spans segments (`{name=shelves/*}` in a protobuf HTTP
    /// rule): percent-encoded, but for the `/` between segments.
    pub fn path_segments<T: Serialize + ?Sized>(
        &mut self,
        name: &str,
        value: &T,
    ) -> Result<(), TaskError> {
        let values = flatten(name, value)?;
        if values.is_empty() {
            return Err(TaskError::permanent(format!(
                "path parameter `{name}` has no value"
            )));
        }
        self.path
            .extend(utf8_percent_encode(&values.join(","), SEGMENTS));
        Ok(())
    }

    /// Adds a query parameter (form style, exploded): nothing for `None`, one pair per element
    /// of an array.
    pub fn query<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) -> Result<(), TaskError> {
        for v in flatten(name, value)? {
            self.query.push((name.to_owned(), v));
        }
        Ok(())
    }

    /// Adds a header parameter (simple style): nothing for `None`, arrays comma-separated.
    pub fn header<T: Serialize + ?Sized>(
        &mut self,
        name: &str,
        value: &T,
    ) -> Result<(), TaskError> {
        let values = flatten(name, value)?;
        if !values.is_empty() {
            self.headers.push((name.to_owned(), values.join(",")));
        }
        Ok(())
    }

    /// Adds a cookie parameter: nothing for `None`.
    pub fn cookie<T: Serialize + ?Sized>(
        &mut self,
        name: &str,
        value: &T,
    ) -> Result<(), TaskError> {
        let values = flatten(name, value)?;
        if !values.is_empty() {
            self.cookies.push((name.to_owned(), values.join(",")));
        }
        Ok(())
    }

    /// Sets a JSON body.
    pub fn json<T: Serialize + ?Sized>(
        &mut self,
        media_type: &str,
        value: &T,
    ) -> Result<(), TaskError> {
        let bytes = serde_json::to_vec(value).map_err(|err| {
            TaskError::permanent(format!("cannot encode the request body as JSON: {err}"))
        })?;
        self.set_body(media_type, bytes);
        Ok(())
    }

    /// Sets an `application/x-www-form-urlencoded` body.
    pub fn form<T: Serialize + ?Sized>(
        &mut self,
        media_type: &str,
        value: &T,
    ) -> Result<(), TaskError> {
        let encoded = serde_urlencoded::to_string(value).map_err(|err| {
            TaskError::permanent(format!("cannot encode the request body as a form: {err}"))
        })?;
        self.set_body(media_type, encoded.into_bytes());
        Ok(())
    }

    /// Sets a text body.
    pub fn text(&mut self, media_type: &str, value: &str) {
        self.set_body(media_type, value.as_bytes().to_vec());
    }

    /// Sets a body of raw bytes.
    pub fn bytes(&mut self, media_type: &str, value: &[u8]) {
        self.set_body(media_type, value.to_vec());
    }

    fn set_body(&mut self, media_type: &str, bytes: Vec<u8>) {
        self.body = Some(Body {
            content_type: media_type.to_owned(),
            bytes,
        });
    }
}

/// The string forms of a parameter value: none for null, one per element for an array, one
/// per `key,value` for an object, one for a scalar.
fn flatten<T: Serialize + ?Sized>(name: &str, value: &T) -> Result<Vec<String>, TaskError> {
    let value = serde_json::to_value(value)
        .map_err(|err| TaskError::permanent(format!("cannot encode parameter `{name}`: {err}")))?;
    Ok(match value {
        Value::Null => Vec::new(),
        Value::Array(items) => items.into_iter().filter_map(scalar).collect(),
        Value::Object(map) => map
            .into_iter()
            .filter_map(|(k, v)| scalar(v).map(|v| format!("{k},{v}")))
            .collect(),
        other => scalar(other).into_iter().collect(),
    })
}

fn scalar(value: Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_parameters_are_percent_encoded() {
        let mut parts = RequestParts::default();
        parts.path("/files/");
        parts.path_param("name", "a b/c?d").unwrap();
        assert_eq!(parts.path, "/files/a%20b%2Fc%3Fd");
    }

    #[test]
    fn query_skips_none_and_repeats_arrays() {
        let mut parts = RequestParts::default();
        parts.query("limit", &Some(10)).unwrap();
        parts.query("cursor", &None::<String>).unwrap();
        parts.query("tag", &["a", "b"]).unwrap();
        parts.query("flag", &true).unwrap();
        let pairs: Vec<_> = parts
            .query
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        assert_eq!(pairs, ["limit=10", "tag=a", "tag=b", "flag=true"]);
    }

    #[test]
    fn missing_path_parameter_is_a_permanent_error() {
        let mut parts = RequestParts::default();
        let err = parts.path_param("id", &None::<i64>).unwrap_err();
        assert!(!err.is_retryable());
        assert!(err.message().contains("`id`"));
    }

    #[test]
    fn headers_join_arrays_with_commas() {
        let mut parts = RequestParts::default();
        parts.header("X-Tags", &vec!["a", "b"]).unwrap();
        assert_eq!(parts.headers, [("X-Tags".to_owned(), "a,b".to_owned())]);
    }
}
