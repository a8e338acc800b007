//! Finds a schema of the wrong shape before the whole document is deserialised.
//!
//! openapiv3 reads `$ref`-or-schema and the kinds of schema as untagged enums: serde tries each
//! variant in turn, and a variant that fails deep inside is tried again by the next one. A
//! document that is valid is read in linear time, but an error at the bottom of nested schemas
//! is reached again and again by every level above it: 20 levels of `properties` with a number
//! at the bottom took minutes. So each schema is checked on its own first, with its child
//! schemas replaced by `{}` (a schema that is always valid): the cost is linear in the document,
//! and the first schema that fails is the error, at its JSON pointer. Callbacks, the other
//! structure that nests, may nest only so deep.

use std::path::Path;

use openapiv3::{ReferenceOr, Schema};
use serde_json::{Map, Value};

use super::skips::Skips;
use crate::Result;
use crate::error::{Error, excerpt, excerpt_pointer, pointer_token};

/// How deep callbacks may nest in callbacks.
const MAX_CALLBACK_DEPTH: usize = 8;

/// Keys whose values are any JSON, not OpenAPI objects: they are not looked into.
const ANY_JSON: &[&str] = &[
    "example", "examples", "default", "enum", "const", "links", "value",
];

/// Checks every schema of the OpenAPI 3.0 document `root` on its own. `converted` says what
/// the document was converted from, as in `parse::from_value`. A schema of the wrong shape is
/// the error when `skips` is strict; otherwise it is read as any JSON value (`{}`) with a
/// warning, and the result says that the document changed.
pub(super) fn check(
    path: &Path,
    root: &mut Value,
    converted: Option<&str>,
    skips: &mut Skips,
) -> Result<bool> {
    let mut keys = Vec::new();
    let mut at = String::new();
    let mut changed = false;
    let mut walk = Walk {
        path,
        converted,
        skips,
        changed: &mut changed,
    };
    walk.visit(root, &mut keys, &mut at, 0)?;
    Ok(changed)
}

/// What the walk over the document carries.
struct Walk<'a> {
    path: &'a Path,
    converted: Option<&'a str>,
    skips: &'a mut Skips,
    changed: &'a mut bool,
}

impl Walk<'_> {
    fn visit(
        &mut self,
        value: &mut Value,
        keys: &mut Vec<String>,
        at: &mut String,
        callbacks: usize,
    ) -> Result<()> {
        let path = self.path;
        if is_schema(keys)
            && !(keys.last().is_some_and(|k| k == "additionalProperties") && value.is_boolean())
            && let Err(err) = check_one(path, value, at, self.converted)
        {
            self.skips
                .skip(format!("read schema #{at} as any JSON value"), err)?;
            *value = Value::Object(Map::new());
            *self.changed = true;
            return Ok(());
        }
        let callbacks = callbacks + usize::from(keys.last().is_some_and(|k| k == "callbacks"));
        if callbacks > MAX_CALLBACK_DEPTH {
            return Err(Error::Invalid {
                path: path.to_owned(),
                location: excerpt_pointer(at),
                message: format!("callbacks nest more than {MAX_CALLBACK_DEPTH} levels deep"),
            });
        }
        let in_properties = keys.last().is_some_and(|k| k == "properties");
        match value {
            Value::Object(map) => {
                for (key, child) in map.iter_mut() {
                    if !in_properties && (key.starts_with("x-") || ANY_JSON.contains(&key.as_str()))
                    {
                        continue;
                    }
                    let len = at.len();
                    at.push('/');
                    at.push_str(&pointer_token(key));
                    keys.push(key.clone());
                    let result = self.visit(child, keys, at, callbacks);
                    keys.pop();
                    at.truncate(len);
                    result?;
                }
            }
            Value::Array(items) => {
                for (index, child) in items.iter_mut().enumerate() {
                    let len = at.len();
                    at.push_str(&format!("/{index}"));
                    keys.push("[]".to_owned());
                    let result = self.visit(child, keys, at, callbacks);
                    keys.pop();
                    at.truncate(len);
                    result?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Whether openapiv3 reads the value at the end of `keys` (object keys, `[]` for array items)
/// as a `$ref`-or-schema: a component schema, the `schema` of a parameter, header or media
/// type, and the child schemas of a schema.
fn is_schema(keys: &[String]) -> bool {
    let n = keys.len();
    let key = |i: usize| keys[i].as_str();
    match n {
        0 | 1 => false,
        _ if n == 3 && key(0) == "components" && key(1) == "schemas" => true,
        _ if key(n - 2) == "properties" => is_schema(&keys[..n - 2]),
        _ if matches!(key(n - 1), "items" | "not" | "additionalProperties") => {
            is_schema(&keys[..n - 1])
        }
        _ if key(n - 1) == "[]" && matches!(key(n - 2), "allOf" | "oneOf" | "anyOf") => {
            is_schema(&keys[..n - 2])
        }
        _ if key(n - 1) == "schema" && !is_schema(&keys[..n - 1]) => {
            // A parameter (in an operation, a path item or the components), a header or a
            // media type.
            n >= 3 && matches!(key(n - 3), "parameters" | "headers" | "content")
        }
        _ => false,
    }
}

/// Deserialises one schema with its child schemas replaced by `{}`.
fn check_one(path: &Path, value: &Value, at: &str, converted: Option<&str>) -> Result<()> {
    let shallow = match value {
        Value::Object(map) => Value::Object(shallow(map)),
        other => other.clone(),
    };
    match serde_path_to_error::deserialize::<_, ReferenceOr<Schema>>(&shallow) {
        Ok(_) => Ok(()),
        Err(err) => {
            let inner: String = err
                .path()
                .iter()
                .filter_map(|segment| match segment {
                    serde_path_to_error::Segment::Seq { index } => Some(format!("/{index}")),
                    serde_path_to_error::Segment::Map { key } => {
                        Some(format!("/{}", pointer_token(&excerpt(key))))
                    }
                    _ => None,
                })
                .collect();
            let location = format!("{}{inner}", excerpt_pointer(at));
            let location = if location.is_empty() {
                "/".to_owned()
            } else {
                location
            };
            Err(Error::Invalid {
                path: path.to_owned(),
                location: match converted {
                    Some(from) => {
                        format!("{location} (of the OpenAPI 3.0 form of this {from} document)")
                    }
                    None => location,
                },
                message: super::parse::readable(&err.inner().to_string()),
            })
        }
    }
}

/// A schema with its child schemas replaced by `{}`.
fn shallow(map: &Map<String, Value>) -> Map<String, Value> {
    let empty = || Value::Object(Map::new());
    map.iter()
        .map(|(key, child)| {
            let child = match (key.as_str(), child) {
                ("items" | "not" | "additionalProperties", Value::Object(_)) => empty(),
                ("properties", Value::Object(properties)) => {
                    Value::Object(properties.keys().map(|k| (k.clone(), empty())).collect())
                }
                ("allOf" | "oneOf" | "anyOf", Value::Array(items)) => {
                    Value::Array(items.iter().map(|_| empty()).collect())
                }
                _ => child.clone(),
            };
            (key.clone(), child)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(path: &str) -> Vec<String> {
        path.split('/').map(str::to_owned).collect()
    }

    #[test]
    fn schemas_are_told_from_values_that_look_like_them() {
        assert!(is_schema(&keys("components/schemas/A")));
        assert!(is_schema(&keys("components/schemas/A/properties/items")));
        assert!(is_schema(&keys("components/schemas/A/items/allOf/[]")));
        assert!(is_schema(&keys("paths/~1a/get/parameters/[]/schema")));
        assert!(is_schema(&keys("components/parameters/p/schema")));
        assert!(is_schema(&keys(
            "paths/~1a/get/responses/200/content/application~1json/schema"
        )));
        assert!(is_schema(&keys(
            "paths/~1a/get/responses/200/headers/h/schema"
        )));
        assert!(!is_schema(&keys("components/schemas/A/schema")));
        assert!(!is_schema(&keys("components/schemas/A/if")));
        assert!(!is_schema(&keys("definitions/A")));
        assert!(!is_schema(&keys("components/schemas/A/example/items")));
    }

    /// Found by the fuzzer: an error under nested schemas took time exponential in their depth.
    #[test]
    fn an_error_under_deeply_nested_schemas_is_found_at_once() {
        let mut schema = serde_json::json!({"type": "object", "properties": 5e-324});
        for _ in 0..60 {
            schema = serde_json::json!({"type": "object", "properties": {"a": schema}});
        }
        let doc = serde_json::json!({
            "openapi": "3.0.0",
            "info": {"title": "t", "version": "1"},
            "paths": {},
            "components": {"schemas": {"E": schema}},
        });
        let started = std::time::Instant::now();
        let err = check(
            Path::new("api.json"),
            &mut doc.clone(),
            None,
            &mut Skips::new(true),
        )
        .expect_err("invalid");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        let Error::Invalid {
            location, message, ..
        } = err
        else {
            panic!("{err}");
        };
        assert!(
            location.starts_with("/components/schemas/E/properties/a/properties/a/")
                && location.ends_with("/properties/a"),
            "{location}"
        );
        assert!(message.contains("floating point `5e-324`"), "{message}");
    }

    #[test]
    fn values_of_any_shape_and_boolean_additional_properties_pass() {
        let doc = serde_json::json!({
            "openapi": "3.0.0",
            "info": {"title": "t", "version": "1"},
            "paths": {},
            "components": {"schemas": {"E": {
                "type": "object",
                "additionalProperties": false,
                "example": {"items": 5, "schema": 7},
                "x-anything": {"items": 5},
                "if": 5,
                "properties": {"example": {"type": "string"}},
            }}},
        });
        let mut checked = doc.clone();
        let changed = check(
            Path::new("api.json"),
            &mut checked,
            None,
            &mut Skips::new(true),
        )
        .expect("valid");
        assert!(!changed);
        assert_eq!(checked, doc);
    }
}
