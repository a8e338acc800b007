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
///
/// YAML aliases repeat what they name, so a small file can expand into a huge value; the YAML
/// parser's own limit grows with the file, so the values are counted here too, against
/// [`value_budget`].
pub(crate) fn value(path: &Path, text: &str, format: Format) -> Result<serde_json::Value> {
    use serde::de::DeserializeSeed;
    let value: serde_json::Value = match format {
        Format::Json => match serde_json::from_str(text) {
            Ok(value) => value,
            // A number beyond `f64` (`1e400`) fails serde_json; JSON is YAML, whose reader keeps
            // it as its text (a bound written so is then dropped with a note, see `repair`).
            // Only then, as YAML is slower to parse.
            Err(err) if err.is_syntax() && err.to_string().starts_with("number out of range") => {
                let budget = std::cell::Cell::new(value_budget(text));
                Budgeted(&budget)
                    .deserialize(yaml_serde::Deserializer::from_str(text))
                    .map_err(|_| json_error(path, &err, None))?
            }
            Err(err) => return Err(json_error(path, &err, None)),
        },
        Format::Yaml => {
            let budget = std::cell::Cell::new(value_budget(text));
            Budgeted(&budget)
                .deserialize(yaml_serde::Deserializer::from_str(text))
                .map_err(|err| yaml_error(path, &err, None))?
        }
    };
    Ok(value)
}

/// How many values a YAML file of `text` may expand to: a value takes at least two bytes
/// written out, so this leaves aliases room to repeat the document's size a few times over.
fn value_budget(text: &str) -> usize {
    (4 * text.len()).max(1_000_000)
}

/// Builds a `serde_json::Value` as serde_json's own visitor does, counting the values against a
/// budget.
struct Budgeted<'a>(&'a std::cell::Cell<usize>);

impl Budgeted<'_> {
    fn spend<E: serde::de::Error>(&self) -> Result<(), E> {
        match self.0.get().checked_sub(1) {
            Some(left) => {
                self.0.set(left);
                Ok(())
            }
            None => Err(E::custom(
                "the document expands to too many values (YAML aliases that repeat each other?)",
            )),
        }
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Budgeted<'_> {
    type Value = serde_json::Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Budgeted<'_> {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any value")
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
        self.spend()?;
        Ok(v.into())
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
        self.spend()?;
        Ok(v.into())
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
        self.spend()?;
        Ok(v.into())
    }
    fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<Self::Value, E> {
        match i64::try_from(v) {
            Ok(v) => self.visit_i64(v),
            Err(_) => self.visit_f64(v as f64),
        }
    }
    fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Self::Value, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => self.visit_f64(v as f64),
        }
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
        self.spend()?;
        Ok(serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, Into::into))
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        self.spend()?;
        Ok(v.into())
    }
    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
        self.spend()?;
        Ok(v.into())
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        self.spend()?;
        Ok(serde_json::Value::Null)
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        self.visit_unit()
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        serde::de::DeserializeSeed::deserialize(self, d)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        self.spend()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Budgeted(self.0))? {
            items.push(item);
        }
        Ok(serde_json::Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        self.spend()?;
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(Budgeted(self.0))?;
            out.insert(key, value);
        }
        Ok(serde_json::Value::Object(out))
    }
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

/// Whether every key of the document is a string that its map does not repeat; a repeated key is
/// an error with its line and column.
///
/// Deserialising the text itself (for the line and column of an error) is only safe then:
/// openapiv3 reads a `$ref`-or-item once from serde's buffered form, which keeps repeated keys
/// and keys of other types, and, when that fails, again from a `serde_json::Value`, which keeps
/// the last of repeated keys and makes every key a string; when the second read succeeds it
/// panics (`somehow this parsed successfully the second time`).
pub(crate) fn keys_are_plain(path: &Path, text: &str, format: Format) -> Result<bool> {
    let checked = match format {
        Format::Json => serde_json::from_str::<PlainKeys>(text)
            .map(|_| ())
            .map_err(|err| json_error(path, &err, None)),
        Format::Yaml => yaml_serde::from_str::<PlainKeys>(text)
            .map(|_| ())
            .map_err(|err| yaml_error(path, &err, None)),
    };
    match checked {
        Ok(()) => Ok(true),
        Err(
            Error::Syntax { message, .. }
            | Error::NotOpenApi {
                reason: message, ..
            },
        ) if message.contains(NOT_A_STRING_KEY) => Ok(false),
        Err(
            Error::Syntax { message, .. }
            | Error::NotOpenApi {
                reason: message, ..
            },
        ) if !message.contains(REPEATED_KEY) => {
            // Not this check's business: the caller has an error already.
            Ok(false)
        }
        Err(err) => Err(err),
    }
}

const REPEATED_KEY: &str = "is repeated in this mapping";
const NOT_A_STRING_KEY: &str = "a key that is not a string";

/// Any value, refused when a map repeats a key or has a key that is not a string.
struct PlainKeys;

impl<'de> serde::Deserialize<'de> for PlainKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PlainKeysVisitor)
    }
}

/// A key: `Some` when it is a string.
struct Key(Option<String>);

impl<'de> serde::Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'v> serde::de::Visitor<'v> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E>(self, v: &str) -> Result<Key, E> {
                Ok(Key(Some(v.to_owned())))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Key, E> {
                Ok(Key(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Key, E> {
                Ok(Key(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Key, E> {
                Ok(Key(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Key, E> {
                Ok(Key(None))
            }
            fn visit_unit<E>(self) -> Result<Key, E> {
                Ok(Key(None))
            }
            fn visit_seq<A: serde::de::SeqAccess<'v>>(self, mut seq: A) -> Result<Key, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Key(None))
            }
            fn visit_map<A: serde::de::MapAccess<'v>>(self, mut map: A) -> Result<Key, A::Error> {
                while map
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Key(None))
            }
        }
        deserializer.deserialize_any(KeyVisitor)
    }
}

struct PlainKeysVisitor;

impl<'de> serde::de::Visitor<'de> for PlainKeysVisitor {
    type Value = PlainKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<PlainKeys, E> {
        Ok(PlainKeys)
    }
    fn visit_i64<E>(self, _: i64) -> Result<PlainKeys, E> {
        Ok(PlainKeys)
    }
    fn visit_u64<E>(self, _: u64) -> Result<PlainKeys, E> {
        Ok(PlainKeys)
    }
    fn visit_i128<E>(self, _: i128) -> Result<PlainKeys, E> {
        Ok(PlainKeys)
    }
    fn visit_u128<E>(self, _: u128) -> Result<PlainKeys, E> {
        Ok(PlainKeys)
    }
    fn visit_f64<E>(self, _: f64) -> Result<PlainKeys, E> {
        Ok(PlainKeys)
    }
    fn visit_str<E>(self, _: &str) -> Result<PlainKeys, E> {
        Ok(PlainKeys)
    }
    fn visit_bytes<E>(self, _: &[u8]) -> Result<PlainKeys, E> {
        Ok(PlainKeys)
    }
    fn visit_unit<E>(self) -> Result<PlainKeys, E> {
        Ok(PlainKeys)
    }
    fn visit_none<E>(self) -> Result<PlainKeys, E> {
        Ok(PlainKeys)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<PlainKeys, D::Error> {
        serde::Deserialize::deserialize(d)
    }
    fn visit_newtype_struct<D: serde::Deserializer<'de>>(
        self,
        d: D,
    ) -> Result<PlainKeys, D::Error> {
        serde::Deserialize::deserialize(d)
    }
    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, data: A) -> Result<PlainKeys, A::Error> {
        use serde::de::VariantAccess;
        let (PlainKeys, variant) = data.variant::<PlainKeys>()?;
        variant.newtype_variant::<PlainKeys>()
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<PlainKeys, A::Error> {
        while seq.next_element::<PlainKeys>()?.is_some() {}
        Ok(PlainKeys)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<PlainKeys, A::Error> {
        use serde::de::Error as _;
        let mut seen = std::collections::HashSet::new();
        while let Some(Key(key)) = map.next_key::<Key>()? {
            let Some(key) = key else {
                return Err(A::Error::custom(NOT_A_STRING_KEY));
            };
            if !seen.insert(key.clone()) {
                return Err(A::Error::custom(format!(
                    "the key `{}` {REPEATED_KEY}",
                    excerpt(&key)
                )));
            }
            map.next_value::<PlainKeys>()?;
        }
        Ok(PlainKeys)
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
pub(crate) fn pointer(path: &serde_path_to_error::Path) -> String {
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
pub(crate) fn readable(message: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_integers_beyond_64_bits_are_read_as_floats() {
        let text = "a: -9223372036854776000\nb: 18446744073709551616\nc: 7\nd: .inf\n200: x\n";
        let value = value(Path::new("api.yaml"), text, Format::Yaml).unwrap();
        assert_eq!(value["a"].as_f64(), Some(-9.223372036854776e18));
        assert_eq!(value["b"].as_f64(), Some(1.8446744073709552e19));
        assert_eq!(value["c"].as_i64(), Some(7));
        assert!(value["d"].is_null());
        assert_eq!(value["200"], "x");
    }

    #[test]
    fn json_numbers_beyond_f64_are_read_as_text() {
        let text = "{\"a\": 1e400, \"b\": [-1e999, 2], \"c\": \"t\"}";
        let value = value(Path::new("api.json"), text, Format::Json).unwrap();
        assert_eq!(value["a"], "1e400");
        assert_eq!(value["b"], serde_json::json!(["-1e999", 2]));
        assert_eq!(value["c"], "t");
        let err = value_err("{\"a\": 1e400, \"b\": [}");
        assert!(err.starts_with("api.json:1:"), "{err}");
    }

    fn value_err(text: &str) -> String {
        value(Path::new("api.json"), text, Format::Json)
            .unwrap_err()
            .to_string()
    }
}
