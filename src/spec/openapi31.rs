//! OpenAPI 3.1 into the shape of OpenAPI 3.0, so that one reader serves both.
//!
//! 3.1 schemas are JSON Schema 2020-12. What the generator maps to types is rewritten into its
//! 3.0 equivalent; validation-only keywords that have none are left for the reader to ignore:
//! - `type: [T, "null"]` becomes `type: T, nullable: true`; several types become an `anyOf`;
//! - a `{type: "null"}` branch of `oneOf`/`anyOf` becomes `nullable` on the union;
//! - `const` becomes a one-value `enum`; `examples` becomes `example`;
//! - numeric `exclusiveMinimum`/`exclusiveMaximum` become `minimum`/`maximum` and a flag;
//! - `prefixItems` of a fixed length (`items: false`, or `minItems` and `maxItems` equal to
//!   their number) are kept under [`TUPLE_KEY`], which the reader makes a tuple of; other
//!   `prefixItems` become `items` of their union;
//! - `contentEncoding: base64` becomes `format: byte`, a binary `contentMediaType` `format: binary`;
//! - boolean schemas become `{}` (anything) and `{not: {}}` (nothing).
//!
//! `webhooks` describe requests the API makes, not calls a worker makes: they are dropped with
//! a note. References (`$defs`, `$id`, `$anchor`) are resolved before this, by the bundler.

use serde_json::{Map, Value, json};

use super::bundle::is_schema_position;
use crate::error::excerpt;

/// The extension under which a fixed-length `prefixItems` reaches the reader (openapiv3 keeps
/// only `x-` keys it does not know): a list of schemas, one per item of a tuple.
pub(super) const TUPLE_KEY: &str = "x-codegen-prefix-items";

/// Converts an OpenAPI 3.1 document in place; returns notes for the user.
pub(super) fn downgrade(doc: &mut Value) -> Vec<String> {
    let mut notes = Vec::new();
    let Some(root) = doc.as_object_mut() else {
        return notes;
    };
    root.insert("openapi".into(), json!("3.0.3"));
    root.remove("jsonSchemaDialect");
    if let Some(Value::Object(webhooks)) = root.remove("webhooks")
        && !webhooks.is_empty()
    {
        let names: Vec<String> = webhooks.keys().map(|name| excerpt(name)).collect();
        notes.push(format!(
            "skipped {} webhook{} ({}): webhooks are requests the API sends, so they get no task",
            names.len(),
            if names.len() == 1 { "" } else { "s" },
            excerpt(&names.join(", "))
        ));
    }
    if let Some(Value::Object(components)) = root.get_mut("components") {
        // Path items referenced from `paths` were copied there by the bundler.
        components.remove("pathItems");
        if let Some(Value::Object(schemes)) = components.get_mut("securitySchemes") {
            let mutual: Vec<String> = schemes
                .iter()
                .filter(|(_, s)| s.get("type").and_then(Value::as_str) == Some("mutualTLS"))
                .map(|(name, _)| name.clone())
                .collect();
            for name in mutual {
                schemes.remove(&name);
                notes.push(format!(
                    "security scheme `{}` is mutual TLS, which the generated client does not set up: give the worker a client that presents the certificate",
                    excerpt(&name)
                ));
            }
        }
    }
    let paths = root.entry("paths").or_insert_with(|| json!({}));
    // `responses` may be left out in 3.1.
    for item in paths
        .as_object_mut()
        .into_iter()
        .flat_map(|p| p.values_mut())
    {
        for (method, op) in item.as_object_mut().into_iter().flatten() {
            if METHODS.contains(&method.as_str())
                && let Some(op) = op.as_object_mut()
            {
                op.entry("responses").or_insert_with(|| json!({}));
            }
        }
    }
    normalize_schemas(doc);
    notes
}

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Rewrites every schema of the document into its OpenAPI 3.0 form. Swagger 2.0 documents go
/// through it too: some use JSON Schema forms (`type: "null"`, tuple `items`) that 2.0 never
/// allowed but tools accept.
pub(super) fn normalize_schemas(doc: &mut Value) {
    let mut keys = Vec::new();
    walk(doc, &mut keys);
}

fn walk(value: &mut Value, keys: &mut Vec<String>) {
    if is_schema_position(keys) {
        schema(value, keys);
    }
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                keys.push(key.clone());
                walk(child, keys);
                keys.pop();
            }
        }
        Value::Array(items) => {
            for child in items {
                keys.push("[]".to_owned());
                walk(child, keys);
                keys.pop();
            }
        }
        _ => {}
    }
}

/// Rewrites one schema object (not its subschemas: the walk reaches those).
fn schema(value: &mut Value, keys: &[String]) {
    if let Value::Bool(allowed) = value {
        // `additionalProperties: false` is valid 3.0 and means something else than `{not: {}}`.
        if keys.last().map(String::as_str) != Some("additionalProperties") {
            *value = if *allowed {
                json!({})
            } else {
                json!({ "not": {} })
            };
        }
        return;
    }
    let Value::Object(map) = value else {
        return;
    };
    types(map);
    if let Some(constant) = map.remove("const")
        && !map.contains_key("enum")
    {
        map.insert("enum".into(), json!([constant]));
    }
    if let Some(Value::Array(examples)) = map.remove("examples")
        && let Some(first) = examples.into_iter().next()
        && !map.contains_key("example")
    {
        map.insert("example".into(), first);
    }
    for (exclusive, bound) in [
        ("exclusiveMinimum", "minimum"),
        ("exclusiveMaximum", "maximum"),
    ] {
        if let Some(limit) = map.get(exclusive).filter(|v| v.is_number()).cloned() {
            map.insert(bound.into(), limit);
            map.insert(exclusive.into(), json!(true));
        }
    }
    if let Some(items) = fixed_tuple(map) {
        map.remove("prefixItems");
        map.remove("items");
        map.insert(TUPLE_KEY.into(), Value::Array(items));
    }
    let tuple = match map.remove("prefixItems") {
        Some(Value::Array(items)) => Some(items),
        _ => match map.get("items") {
            Some(Value::Array(_)) => match map.remove("items") {
                Some(Value::Array(items)) => Some(items),
                _ => None,
            },
            _ => None,
        },
    };
    if let Some(mut items) = tuple {
        if let Some(rest) = map.remove("items").filter(|r| r.is_object()) {
            items.push(rest);
        }
        items.dedup();
        let items = match items.len() {
            0 => json!({}),
            1 => items.remove(0),
            _ => json!({ "anyOf": items }),
        };
        map.insert("items".into(), items);
    }
    if map.get("contentEncoding").and_then(Value::as_str) == Some("base64")
        && !map.contains_key("format")
    {
        map.insert("format".into(), json!("byte"));
    }
    if map
        .get("contentMediaType")
        .and_then(Value::as_str)
        .is_some_and(|t| t == "application/octet-stream" || t.starts_with("image/"))
        && !map.contains_key("format")
    {
        map.insert("format".into(), json!("binary"));
    }
    for union in ["oneOf", "anyOf"] {
        let Some(Value::Array(variants)) = map.get_mut(union) else {
            continue;
        };
        let before = variants.len();
        variants.retain(|v| !is_null_schema(v));
        if variants.len() == before {
            continue;
        }
        map.insert("nullable".into(), json!(true));
        let Some(Value::Array(variants)) = map.get(union) else {
            continue;
        };
        if variants.len() == 1 {
            // One type that may be null: `allOf` keeps a `$ref` usable beside `nullable`.
            let only = variants[0].clone();
            map.remove(union);
            map.insert("allOf".into(), json!([only]));
        } else if variants.is_empty() {
            map.remove(union);
        }
    }
}

/// The `prefixItems` of a schema that allows exactly that many items: no other items
/// (`items: false`, with no `minItems` below their number) or `minItems` and `maxItems` both
/// equal to their number and no `items` schema. At most twelve items.
fn fixed_tuple(map: &Map<String, Value>) -> Option<Vec<Value>> {
    let Some(Value::Array(items)) = map.get("prefixItems") else {
        return None;
    };
    // The standard library implements `Debug`, `Clone` and `PartialEq` for tuples of up to
    // twelve items; longer ones stay lists.
    if items.is_empty() || items.len() > 12 {
        return None;
    }
    let len = items.len() as u64;
    let bound = |key: &str| map.get(key).and_then(Value::as_u64);
    let fixed = match map.get("items") {
        Some(Value::Bool(false)) => bound("minItems").is_none_or(|min| min >= len),
        None => bound("minItems") == Some(len) && bound("maxItems") == Some(len),
        Some(_) => false,
    };
    fixed.then(|| items.clone())
}

/// `type` as a list, or `"null"`.
fn types(map: &mut Map<String, Value>) {
    let list: Vec<String> = match map.get("type") {
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(one)) if one == "null" => vec![one.clone()],
        _ => return,
    };
    map.remove("type");
    let mut non_null: Vec<String> = list.iter().filter(|t| *t != "null").cloned().collect();
    non_null.dedup();
    if non_null.len() < list.len() {
        map.insert("nullable".into(), json!(true));
    }
    match non_null.len() {
        0 => {}
        1 => {
            map.insert("type".into(), json!(non_null[0]));
        }
        _ => {
            // Each type with the keywords that apply to it.
            let variants: Vec<Value> = non_null
                .iter()
                .map(|t| {
                    let mut variant = Map::new();
                    variant.insert("type".into(), json!(t));
                    let own: &[&str] = match t.as_str() {
                        "object" => &["properties", "required", "additionalProperties"],
                        "array" => &["items", "prefixItems"],
                        "string" => &["format", "enum"],
                        "integer" | "number" => &["format"],
                        _ => &[],
                    };
                    for key in own {
                        if let Some(v) = map.get(*key) {
                            variant.insert((*key).to_owned(), v.clone());
                        }
                    }
                    Value::Object(variant)
                })
                .collect();
            for key in [
                "properties",
                "required",
                "additionalProperties",
                "items",
                "prefixItems",
                "format",
                "enum",
            ] {
                map.remove(key);
            }
            map.insert("anyOf".into(), Value::Array(variants));
        }
    }
}

fn is_null_schema(value: &Value) -> bool {
    match value.get("type") {
        Some(Value::String(t)) => t == "null",
        Some(Value::Array(list)) => list.iter().all(|t| t == "null"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn converted(schema: Value) -> Value {
        let mut doc = json!({
            "openapi": "3.1.0",
            "info": { "title": "t", "version": "1" },
            "components": { "schemas": { "S": schema } },
        });
        downgrade(&mut doc);
        doc["components"]["schemas"]["S"].take()
    }

    #[test]
    fn nullable_types_and_constants_take_their_3_0_form() {
        assert_eq!(
            converted(json!({ "type": ["string", "null"], "const": "a" })),
            json!({ "type": "string", "nullable": true, "enum": ["a"] })
        );
        assert_eq!(
            converted(
                json!({ "type": "object", "properties": { "n": { "type": ["integer", "null"], "exclusiveMinimum": 0 } } })
            ),
            json!({ "type": "object", "properties": { "n": { "type": "integer", "nullable": true, "minimum": 0, "exclusiveMinimum": true } } })
        );
        assert_eq!(
            converted(
                json!({ "anyOf": [{ "$ref": "#/components/schemas/A" }, { "type": "null" }] })
            ),
            json!({ "allOf": [{ "$ref": "#/components/schemas/A" }], "nullable": true })
        );
    }

    #[test]
    fn several_types_become_a_union_and_tuples_a_list() {
        assert_eq!(
            converted(json!({ "type": ["string", "integer"], "format": "int64" })),
            json!({ "anyOf": [{ "type": "string", "format": "int64" }, { "type": "integer", "format": "int64" }] })
        );
        assert_eq!(
            converted(
                json!({ "type": "array", "prefixItems": [{ "type": "number" }, { "type": "number" }] })
            ),
            json!({ "type": "array", "items": { "type": "number" } })
        );
        // A fixed length makes a tuple; its items are schemas like any other.
        let pair = json!([{ "type": ["integer", "null"] }, { "const": "x" }]);
        let converted_pair = json!([{ "type": "integer", "nullable": true }, { "enum": ["x"] }]);
        assert_eq!(
            converted(json!({ "type": "array", "prefixItems": pair, "items": false })),
            json!({ "type": "array", (TUPLE_KEY): converted_pair })
        );
        assert_eq!(
            converted(
                json!({ "type": "array", "prefixItems": pair, "minItems": 2, "maxItems": 2 })
            ),
            json!({ "type": "array", "minItems": 2, "maxItems": 2, (TUPLE_KEY): converted_pair })
        );
        // Shorter arrays allowed, or more items: a list.
        assert_eq!(
            converted(
                json!({ "type": "array", "prefixItems": pair, "items": false, "minItems": 1 })
            )[TUPLE_KEY],
            Value::Null
        );
        assert_eq!(
            converted(json!({ "type": "array", "prefixItems": pair, "minItems": 2 }))[TUPLE_KEY],
            Value::Null
        );
        assert_eq!(
            converted(
                json!({ "type": "object", "properties": { "a": true, "b": false }, "additionalProperties": false })
            ),
            json!({ "type": "object", "properties": { "a": {}, "b": { "not": {} } }, "additionalProperties": false })
        );
    }

    #[test]
    fn webhooks_are_dropped_with_a_note() {
        let mut doc = json!({
            "openapi": "3.1.0",
            "info": { "title": "t", "version": "1" },
            "webhooks": { "newPet": { "post": {} } },
        });
        let notes = downgrade(&mut doc);
        assert!(doc.get("webhooks").is_none());
        assert_eq!(doc["paths"], json!({}));
        assert!(notes[0].contains("1 webhook (newPet)"), "{notes:?}");
    }
}
