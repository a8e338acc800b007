//! Parsing JSON and YAML, with errors that point at a line and column or a JSON pointer.

use std::path::Path;

use openapiv3::{PathItem, Response};
use serde::de::DeserializeOwned;

use crate::Result;
use crate::error::{Error, excerpt, excerpt_quoted, pointer_token};

/// The syntax of a spec file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON.
    Json,
    /// YAML (of which JSON is a subset, but JSON is parsed faster as JSON).
    Yaml,
}

impl Format {
    /// JSON for `.json` files and for text that starts with `{`; YAML otherwise.
    pub fn of(path: &Path, text: &str) -> Self {
        let by_extension = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match by_extension.as_deref() {
            Some("json") => Self::Json,
            Some("yaml" | "yml") => Self::Yaml,
            _ if text
                .trim_start_matches('\u{feff}')
                .trim_start()
                .starts_with('{') =>
            {
                Self::Json
            }
            _ => Self::Yaml,
        }
    }
}

/// The OpenAPI version a document declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Version {
    Swagger2(String),
    OpenApi3_0,
    OpenApi3_1(String),
}

/// Parses a file into a JSON value; syntax errors name the line and column.
pub(crate) fn value(path: &Path, text: &str, format: Format) -> Result<serde_json::Value> {
    let value: serde_json::Value = match format {
        Format::Json => serde_json::from_str(text).map_err(|err| json_error(path, &err, None))?,
        Format::Yaml => yaml_serde::from_str(text).map_err(|err| yaml_error(path, &err, None))?,
    };
    Ok(value)
}

/// Reads the `openapi` or `swagger` field of a parsed document.
pub(crate) fn version(path: &Path, probe: &serde_json::Value) -> Result<Version> {
    if !probe.is_object() {
        return Err(Error::NotOpenApi {
            path: path.to_owned(),
            reason: "the top level is not a mapping".into(),
        });
    }
    let field = |name: &str| match probe.get(name) {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    if let Some(v) = field("openapi") {
        if v.starts_with("3.0") {
            return Ok(Version::OpenApi3_0);
        }
        if v.starts_with("3.1") {
            return Ok(Version::OpenApi3_1(v));
        }
        return Err(Error::NotOpenApi {
            path: path.to_owned(),
            reason: format!(
                "unknown OpenAPI version `{}` at /openapi (expected 2.0, 3.0.x or 3.1.x)",
                excerpt(&v)
            ),
        });
    }
    if let Some(v) = field("swagger") {
        if v == "2.0" || v == "2" {
            return Ok(Version::Swagger2(v));
        }
        return Err(Error::NotOpenApi {
            path: path.to_owned(),
            reason: format!(
                "unknown Swagger version `{}` at /swagger (expected 2.0)",
                excerpt(&v)
            ),
        });
    }
    Err(Error::NotOpenApi {
        path: path.to_owned(),
        reason: "no `openapi` or `swagger` field at the top level".into(),
    })
}

/// Deserializes a document from its value; a mismatch names the JSON pointer where it is.
/// `converted` says the value is not the file as written, but what it was converted to.
pub(crate) fn from_value<T: DeserializeOwned>(
    path: &Path,
    value: &serde_json::Value,
    converted: Option<&str>,
) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let location = or_root(&pointer(err.path())).to_owned();
        let message = readable(&err.inner().to_string());
        Error::Invalid {
            path: path.to_owned(),
            location: match converted {
                Some(from) => {
                    format!("{location} (of the OpenAPI 3.0 form of this {from} document)")
                }
                None => location,
            },
            message,
        }
    })
}

/// Deserializes the whole document; a mismatch names the JSON pointer where it is.
pub(crate) fn document<T: DeserializeOwned>(path: &Path, text: &str, format: Format) -> Result<T> {
    parse_document(path, text, format).map_err(|err| refine(path, text, format, err))
}

fn parse_document<T: DeserializeOwned>(path: &Path, text: &str, format: Format) -> Result<T> {
    match format {
        Format::Json => {
            let mut de = serde_json::Deserializer::from_str(text);
            serde_path_to_error::deserialize(&mut de).map_err(|err| {
                let pointer = pointer(err.path());
                json_error(path, err.inner(), Some(pointer))
            })
        }
        Format::Yaml => {
            let de = yaml_serde::Deserializer::from_str(text);
            serde_path_to_error::deserialize(de).map_err(|err| {
                let pointer = pointer(err.path());
                yaml_error(path, err.inner(), Some(pointer))
            })
        }
    }
}

/// openapiv3 flattens the maps of paths and of responses, and serde loses the position of an
/// error inside a flattened map. For such an error, each entry is checked on its own to find
/// the pointer of the entry that is wrong.
fn refine(path: &Path, text: &str, format: Format, err: Error) -> Error {
    let Error::Invalid { location, .. } = &err else {
        return err;
    };
    if !location.starts_with("/paths") {
        return err;
    }
    let value: Option<serde_json::Value> = match format {
        Format::Json => serde_json::from_str(text).ok(),
        Format::Yaml => yaml_serde::from_str(text).ok(),
    };
    let Some(paths) = value
        .as_ref()
        .and_then(|v| v.get("paths"))
        .and_then(|p| p.as_object())
    else {
        return err;
    };
    for (key, item) in paths.iter().filter(|(_, item)| item.get("$ref").is_none()) {
        let base = format!("/paths/{}", pointer_token(key));
        let Err(inner) = serde_path_to_error::deserialize::<_, PathItem>(item) else {
            continue;
        };
        let mut at = format!("{base}{}", pointer(inner.path()));
        let mut message = readable(&inner.inner().to_string());
        // One level deeper for the responses of an operation, which are flattened too.
        if let Some(responses) = at
            .strip_suffix("/responses")
            .and_then(|op| item.pointer(&format!("{}/responses", &op[base.len()..])))
            && let Some(responses) = responses.as_object()
        {
            for (code, response) in responses.iter().filter(|(_, r)| r.get("$ref").is_none()) {
                if let Err(inner) = serde_path_to_error::deserialize::<_, Response>(response) {
                    at = format!("{at}/{}{}", pointer_token(code), pointer(inner.path()));
                    message = readable(&inner.inner().to_string());
                    break;
                }
            }
        }
        return Error::Invalid {
            path: path.to_owned(),
            location: at,
            message,
        };
    }
    err
}

fn json_error(path: &Path, err: &serde_json::Error, pointer: Option<String>) -> Error {
    let message = readable(&err.to_string());
    match pointer {
        Some(pointer) if err.is_data() => Error::Invalid {
            path: path.to_owned(),
            location: format!(
                "{} (line {}, column {})",
                or_root(&pointer),
                err.line(),
                err.column()
            ),
            message: strip_position(&message),
        },
        _ => Error::Syntax {
            path: path.to_owned(),
            line: err.line(),
            column: err.column(),
            message: strip_position(&message),
        },
    }
}

fn yaml_error(path: &Path, err: &yaml_serde::Error, pointer: Option<String>) -> Error {
    let message = strip_position(&readable(&err.to_string()));
    match (pointer, err.location()) {
        (Some(pointer), location) => Error::Invalid {
            path: path.to_owned(),
            location: match location {
                Some(l) => format!(
                    "{} (line {}, column {})",
                    or_root(&pointer),
                    l.line(),
                    l.column()
                ),
                None => or_root(&pointer).to_owned(),
            },
            message,
        },
        (None, Some(l)) => Error::Syntax {
            path: path.to_owned(),
            line: l.line(),
            column: l.column(),
            message,
        },
        (None, None) => Error::NotOpenApi {
            path: path.to_owned(),
            reason: message,
        },
    }
}

fn or_root(pointer: &str) -> &str {
    if pointer.is_empty() { "/" } else { pointer }
}

/// The JSON pointer of a serde path.
fn pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("/{index}")),
            Segment::Map { key } => {
                out.push('/');
                out.push_str(&pointer_token(&excerpt(key)));
            }
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    out
}

/// Says in the user's terms what serde says in its own, quoting at most an excerpt of the
/// value (serde quotes it whole).
fn readable(message: &str) -> String {
    let message = excerpt_quoted(message);
    message
        .replace(
            "data did not match any variant of untagged enum ReferenceOr",
            "expected either a `$ref` or a valid object here",
        )
        .replace(
            "data did not match any variant of untagged enum",
            "unexpected value for",
        )
}

/// serde_json and yaml_serde append " at line L column C"; the error shows it once already.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}
