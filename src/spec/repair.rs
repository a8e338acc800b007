//! Repairs made on the JSON value of an OpenAPI 3.0 document before it is deserialised, for
//! what real descriptions write and openapiv3's types cannot hold:
//!
//! - schema keywords whose value does not fit the reader's types: a length or count that is
//!   negative, fractional or a string is dropped (with a note); a bound of an `integer` schema
//!   written as an integral float (`-9223372036854776000`, which is `i64::MIN`) becomes that
//!   integer, and one beyond 64 bits stays a float; a numeric `exclusiveMinimum` (the 3.1 form)
//!   becomes `minimum` with `exclusiveMinimum: true`;
//! - a version written as a number (`version: 1.0`, `openapi: 3.0`) becomes text;
//! - a `$ref` to a component of another kind whose shape fits the place (a request body used
//!   as a response, a header used as a parameter) is replaced by a copy of it, made into the
//!   kind the place expects. A reference that does not fit is left for the reader, which says
//!   what it points at and what was expected there.

use serde_json::{Map, Value};

use super::bundle::is_schema_position;
use crate::error::pointer_token;

/// What was repaired.
#[derive(Debug, Default)]
pub(super) struct Repaired {
    /// Whether the value differs from the file now.
    pub changed: bool,
    /// What the user should know, one line each.
    pub notes: Vec<String>,
}

/// Keywords of a schema that openapiv3 reads as an unsigned count.
const COUNTS: &[&str] = &[
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
];

/// Keywords of a schema that openapiv3 reads as a number.
const BOUNDS: &[&str] = &["minimum", "maximum", "multipleOf"];

/// Repairs `root` (in the shape of OpenAPI 3.0) in place.
pub(super) fn repair(root: &mut Value) -> Repaired {
    let mut repaired = Repaired::default();
    for pointer in ["/openapi", "/info/version"] {
        if let Some(value) = root.pointer_mut(pointer)
            && let Value::Number(n) = value
        {
            *value = Value::String(n.to_string());
            repaired.changed = true;
        }
    }
    let mut dropped = Vec::new();
    numbers(root, &mut Vec::new(), &mut dropped);
    if !dropped.is_empty() {
        repaired.changed = true;
        repaired.notes.push(format!(
            "ignored {} schema keyword{} whose value is not what OpenAPI allows there: {}{}",
            dropped.len(),
            if dropped.len() == 1 { "" } else { "s" },
            dropped[..dropped.len().min(3)].join(", "),
            if dropped.len() > 3 { ", ..." } else { "" }
        ));
    }
    let crossed = cross_kind_references(root);
    if !crossed.is_empty() {
        repaired.changed = true;
        repaired.notes.push(format!(
            "read {} reference{} to a component of another kind as the kind {} place expects: {}{}",
            crossed.len(),
            if crossed.len() == 1 { "" } else { "s" },
            if crossed.len() == 1 { "its" } else { "their" },
            crossed[..crossed.len().min(3)].join(", "),
            if crossed.len() > 3 { ", ..." } else { "" }
        ));
    }
    repaired
}

/// A step of the path to a value: an object key, or an array index (`[]` to
/// [`is_schema_position`]). The walks keep these rather than a pointer, which is written only
/// when something is reported.
#[derive(Debug, Clone, Copy)]
enum Seg<'v> {
    Key(&'v str),
    Index(usize),
}

impl AsRef<str> for Seg<'_> {
    fn as_ref(&self) -> &str {
        match self {
            Seg::Key(key) => key,
            Seg::Index(_) => "[]",
        }
    }
}

/// The JSON pointer (`#/a/0/b`) of a path.
fn pointer(path: &[Seg<'_>]) -> String {
    let mut out = String::from("#");
    for seg in path {
        match seg {
            Seg::Key(key) => {
                out.push('/');
                out.push_str(&pointer_token(key));
            }
            Seg::Index(index) => out.push_str(&format!("/{index}")),
        }
    }
    out
}

/// Walks every schema of the document and fixes its numeric keywords; `dropped` gets the
/// pointer and value of each keyword removed.
fn numbers<'v>(value: &'v mut Value, path: &mut Vec<Seg<'v>>, dropped: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if is_schema_position(path) {
                fix_schema(map, path, dropped);
            }
            for (key, child) in map.iter_mut() {
                path.push(Seg::Key(key));
                numbers(child, path, dropped);
                path.pop();
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter_mut().enumerate() {
                path.push(Seg::Index(index));
                numbers(child, path, dropped);
                path.pop();
            }
        }
        _ => {}
    }
}

/// Makes the numeric keywords of one schema fit openapiv3's types.
fn fix_schema(schema: &mut Map<String, Value>, path: &[Seg<'_>], dropped: &mut Vec<String>) {
    let drop = |schema: &mut Map<String, Value>, key: &str, dropped: &mut Vec<String>| {
        if let Some(value) = schema.remove(key) {
            dropped.push(format!("{}/{key} ({value})", pointer(path)));
        }
    };
    for key in COUNTS {
        match schema.get(*key) {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) if n.as_u64().is_some() => {}
            Some(Value::Number(n)) => match n.as_f64().and_then(count) {
                Some(count) => {
                    schema.insert((*key).to_owned(), count.into());
                }
                None => drop(schema, key, dropped),
            },
            Some(_) => drop(schema, key, dropped),
        }
    }
    let integer = schema.get("type").and_then(Value::as_str) == Some("integer");
    for key in BOUNDS {
        match schema.get(*key) {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) if integer && n.is_f64() => {
                if let Some(whole) = n.as_f64().and_then(whole) {
                    schema.insert((*key).to_owned(), whole.into());
                }
            }
            Some(Value::Number(_)) => {}
            Some(_) => drop(schema, key, dropped),
        }
    }
    for (key, bound) in [
        ("exclusiveMinimum", "minimum"),
        ("exclusiveMaximum", "maximum"),
    ] {
        match schema.get(key) {
            None | Some(Value::Null | Value::Bool(_)) => {}
            Some(Value::Number(n)) => {
                let n = n.clone();
                schema.insert(bound.to_owned(), Value::Number(n));
                schema.insert(key.to_owned(), Value::Bool(true));
            }
            Some(_) => drop(schema, key, dropped),
        }
    }
    match schema.get("enum") {
        None | Some(Value::Null | Value::Array(_)) => {}
        Some(_) => drop(schema, "enum", dropped),
    }
    match schema.get_mut("required") {
        None | Some(Value::Null) => {}
        Some(Value::Array(names)) => {
            if names.iter().any(|n| !n.is_string()) {
                let before = Value::Array(names.clone());
                names.retain(Value::is_string);
                dropped.push(format!(
                    "{}/required ({before}: the names that are not text)",
                    pointer(path)
                ));
            }
        }
        Some(_) => drop(schema, "required", dropped),
    }
}

/// A float that is a whole count.
fn count(f: f64) -> Option<u64> {
    (f.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&f)).then_some(f as u64)
}

/// A float that is a whole number in the range of `i64` (`-2^63` is, `2^63` is not).
fn whole(f: f64) -> Option<i64> {
    (f.fract() == 0.0 && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f))
        .then_some(f as i64)
}

/// The kinds of component a `$ref` can name outside schemas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Parameter,
    RequestBody,
    Response,
    Header,
}

impl Kind {
    fn of_section(section: &str) -> Option<Self> {
        Some(match section {
            "parameters" => Self::Parameter,
            "requestBodies" => Self::RequestBody,
            "responses" => Self::Response,
            "headers" => Self::Header,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Parameter => "parameter",
            Self::RequestBody => "request body",
            Self::Response => "response",
            Self::Header => "header",
        }
    }
}

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The kind of component the place at the end of `keys` holds, when it is one of [`Kind`].
fn expected_kind(keys: &[&str]) -> Option<Kind> {
    match keys {
        ["paths", _, "parameters", "[]"] => Some(Kind::Parameter),
        ["paths", _, method, rest @ ..] if METHODS.contains(method) => match rest {
            ["parameters", "[]"] => Some(Kind::Parameter),
            ["requestBody"] => Some(Kind::RequestBody),
            ["responses", _] => Some(Kind::Response),
            ["responses", _, "headers", _] => Some(Kind::Header),
            _ => None,
        },
        ["components", "responses", _, "headers", _] => Some(Kind::Header),
        ["components", section, _] => Kind::of_section(section),
        _ => None,
    }
}

/// A plain reference to a component of one of the kinds: its kind and name.
fn component_of(reference: &str) -> Option<(Kind, String)> {
    let rest = reference.strip_prefix("#/components/")?;
    let (section, name) = rest.split_once('/')?;
    if name.contains('/') {
        return None;
    }
    Some((
        Kind::of_section(section)?,
        name.replace("~1", "/").replace("~0", "~"),
    ))
}

/// Replaces the references to a component of another kind that fits its place; returns a
/// line for each (the pointer where it is written, what it is and what was expected).
fn cross_kind_references(root: &mut Value) -> Vec<String> {
    // Found first, read-only; most documents have none.
    let mut found = Vec::new();
    find_cross(root, &mut Vec::new(), &mut found);
    let mut out = Vec::new();
    for (at, expected, reference) in found {
        let Some((kind, _)) = component_of(&reference) else {
            continue;
        };
        let Some(replacement) = converted(root, &reference, expected) else {
            continue;
        };
        let Some(Value::Object(place)) = root.pointer_mut(&at) else {
            continue;
        };
        // Keys written beside the `$ref` (a description) win, as for other references.
        let mut merged = replacement;
        for (k, v) in place.iter().filter(|(k, _)| *k != "$ref") {
            merged.insert(k.clone(), v.clone());
        }
        *place = merged;
        out.push(format!(
            "#{at} (the {} `{reference}` as a {})",
            kind.name(),
            expected.name()
        ));
    }
    out
}

fn find_cross<'v>(
    value: &'v Value,
    path: &mut Vec<Seg<'v>>,
    found: &mut Vec<(String, Kind, String)>,
) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref")
                && let Some((kind, _)) = component_of(reference)
            {
                let keys: Vec<&str> = path.iter().map(AsRef::as_ref).collect();
                if let Some(expected) = expected_kind(&keys)
                    && kind != expected
                {
                    let at = pointer(path);
                    found.push((at[1..].to_owned(), expected, reference.clone()));
                }
            }
            for (key, child) in map {
                path.push(Seg::Key(key));
                find_cross(child, path, found);
                path.pop();
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                path.push(Seg::Index(index));
                find_cross(child, path, found);
                path.pop();
            }
        }
        _ => {}
    }
}

/// The component `reference` names (following references between components), made into
/// `expected` when its shape fits: `None` when it does not exist or does not fit.
fn converted(root: &Value, reference: &str, expected: Kind) -> Option<Map<String, Value>> {
    let mut reference = reference.to_owned();
    for _ in 0..32 {
        let target = root.pointer(reference.strip_prefix('#')?)?.as_object()?;
        if let Some(Value::String(next)) = target.get("$ref") {
            reference = next.clone();
            continue;
        }
        let (kind, name) = component_of(&reference)?;
        let mut copy = target.clone();
        match (kind, expected) {
            (Kind::RequestBody, Kind::Response) => {
                copy.remove("required");
                copy.entry("description")
                    .or_insert_with(|| Value::String(String::new()));
            }
            (Kind::Response, Kind::RequestBody) => {
                copy.remove("headers");
                copy.remove("links");
                copy.entry("content")
                    .or_insert_with(|| Value::Object(Map::new()));
            }
            (Kind::Header, Kind::Parameter) => {
                copy.insert("name".into(), Value::String(name));
                copy.insert("in".into(), Value::String("header".into()));
            }
            (Kind::Parameter, Kind::Header) => {
                for key in ["name", "in", "allowEmptyValue", "allowReserved"] {
                    copy.remove(key);
                }
            }
            (kind, expected) if kind == expected => {}
            _ => return None,
        }
        return Some(copy);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_that_do_not_fit_are_repaired_or_dropped() {
        let mut doc = json!({
            "openapi": "3.0.3",
            "info": {"title": "t", "version": 1.5},
            "paths": {},
            "components": {"schemas": {
                "Seed": {"type": "integer", "minimum": -9223372036854776000.0_f64, "maximum": 1e30},
                "Name": {"type": "string", "minLength": -1, "maxLength": 10.0},
                "Odd": {"type": "number", "exclusiveMinimum": 0, "multipleOf": "2"},
                "Box": {"type": "object", "required": true, "properties": {
                    "minimum": {"type": "string", "maxItems": 1.5}
                }}
            }}
        });
        let repaired = repair(&mut doc);
        assert!(repaired.changed);
        let schemas = &doc["components"]["schemas"];
        assert_eq!(doc["info"]["version"], "1.5");
        assert_eq!(schemas["Seed"]["minimum"], json!(i64::MIN));
        assert_eq!(schemas["Seed"]["maximum"], json!(1e30));
        assert_eq!(schemas["Name"]["maxLength"], json!(10));
        assert!(schemas["Name"].get("minLength").is_none());
        assert_eq!(schemas["Odd"]["minimum"], json!(0));
        assert_eq!(schemas["Odd"]["exclusiveMinimum"], json!(true));
        assert!(schemas["Odd"].get("multipleOf").is_none());
        assert!(schemas["Box"].get("required").is_none());
        // A property named like a keyword is a schema, not a keyword.
        assert!(schemas["Box"]["properties"]["minimum"].is_object());
        assert!(
            schemas["Box"]["properties"]["minimum"]
                .get("maxItems")
                .is_none()
        );
        assert_eq!(repaired.notes.len(), 1, "{:?}", repaired.notes);
        assert!(
            repaired.notes[0].starts_with("ignored 4 schema keywords"),
            "{:?}",
            repaired.notes
        );
        let doc: openapiv3::OpenAPI = serde_json::from_value(doc).unwrap();
        assert_eq!(doc.info.version, "1.5");
    }

    #[test]
    fn references_to_components_of_another_kind_that_fit_are_copied() {
        let mut doc = json!({
            "openapi": "3.0.3",
            "info": {"title": "t", "version": "1"},
            "paths": {"/a": {"post": {
                "parameters": [{"$ref": "#/components/headers/X-Trace"}],
                "requestBody": {"$ref": "#/components/responses/Pet"},
                "responses": {
                    "200": {"$ref": "#/components/requestBodies/Pet", "description": "the pet"},
                    "404": {"$ref": "#/components/schemas/Pet"}
                }
            }}},
            "components": {
                "schemas": {"Pet": {"type": "object"}},
                "headers": {"X-Trace": {"schema": {"type": "string"}}},
                "requestBodies": {"Pet": {"required": true, "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}
                }}},
                "responses": {"Pet": {"$ref": "#/components/requestBodies/Pet"}}
            }
        });
        let repaired = repair(&mut doc);
        let op = &doc["paths"]["/a"]["post"];
        assert_eq!(op["parameters"][0]["name"], "X-Trace");
        assert_eq!(op["parameters"][0]["in"], "header");
        assert_eq!(op["responses"]["200"]["description"], "the pet");
        assert!(op["responses"]["200"].get("required").is_none());
        assert!(op["requestBody"]["content"]["application/json"].is_object());
        // A schema is no response: left for the reader to report.
        assert_eq!(op["responses"]["404"]["$ref"], "#/components/schemas/Pet");
        assert_eq!(doc["components"]["responses"]["Pet"]["description"], "");
        assert_eq!(repaired.notes.len(), 1);
        assert!(
            repaired.notes[0].starts_with("read 4 references to a component of another kind"),
            "{:?}",
            repaired.notes
        );
    }
}
