//! Swagger 2.0 into the shape of OpenAPI 3.0, so that one reader serves both.
//!
//! The conversion works on the JSON value, before any typed parsing:
//! - `host`, `basePath` and `schemes` become `servers`;
//! - `definitions`, `responses` and `securityDefinitions` move under `components`;
//! - `body` parameters become a `requestBody` with one entry per type the operation consumes;
//!   `formData` parameters become the properties of a form or multipart body;
//! - the other parameters get a `schema`, and `collectionFormat` becomes `style`/`explode`;
//! - a response `schema` gets one entry per type the operation produces;
//! - `type: file` becomes a binary string, `x-nullable` becomes `nullable`.

use serde_json::{Map, Value, json};

const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded";
const MULTIPART: &str = "multipart/form-data";

/// Keys of a 2.0 parameter that describe its value; they move into its `schema`.
const VALUE_KEYS: &[&str] = &[
    "type",
    "format",
    "items",
    "default",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "enum",
    "multipleOf",
];

/// Converts a Swagger 2.0 document in place.
pub(super) fn upgrade(doc: &mut Value) {
    let Value::Object(old) = std::mem::take(doc) else {
        return;
    };
    let mut old = old;
    let consumes = media_types(old.get("consumes"));
    let produces = media_types(old.get("produces"));
    let global_params = match old.remove("parameters") {
        Some(Value::Object(params)) => params,
        _ => Map::new(),
    };

    let mut new = Map::new();
    new.insert("openapi".into(), json!("3.0.3"));
    if let Some(info) = old.remove("info") {
        new.insert("info".into(), info);
    }
    let servers = servers(&old);
    if !servers.is_empty() {
        new.insert("servers".into(), Value::Array(servers));
    }

    let mut paths = Map::new();
    if let Some(Value::Object(old_paths)) = old.remove("paths") {
        for (path, item) in old_paths {
            paths.insert(path, path_item(item, &global_params, &consumes, &produces));
        }
    }
    new.insert("paths".into(), Value::Object(paths));

    let mut components = Map::new();
    if let Some(Value::Object(definitions)) = old.remove("definitions") {
        let schemas = definitions
            .into_iter()
            .map(|(name, schema)| (name, convert_schema(schema)))
            .collect();
        components.insert("schemas".into(), Value::Object(schemas));
    }
    if let Some(Value::Object(responses)) = old.remove("responses") {
        let responses = responses
            .into_iter()
            .map(|(name, r)| (name, response(r, &produces)))
            .collect();
        components.insert("responses".into(), Value::Object(responses));
    }
    if let Some(Value::Object(schemes)) = old.remove("securityDefinitions") {
        let schemes = schemes
            .into_iter()
            .map(|(name, s)| (name, security_scheme(s)))
            .collect();
        components.insert("securitySchemes".into(), Value::Object(schemes));
    }
    if !components.is_empty() {
        new.insert("components".into(), Value::Object(components));
    }
    for key in ["security", "tags", "externalDocs"] {
        if let Some(value) = old.remove(key) {
            new.insert(key.into(), value);
        }
    }
    for (key, value) in old {
        if key.starts_with("x-") {
            new.insert(key, value);
        }
    }
    *doc = Value::Object(new);
}

fn media_types(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn servers(old: &Map<String, Value>) -> Vec<Value> {
    let base_path = old.get("basePath").and_then(Value::as_str).unwrap_or("");
    let base_path = base_path.trim_end_matches('/');
    let Some(host) = old.get("host").and_then(Value::as_str) else {
        return if base_path.is_empty() {
            Vec::new()
        } else {
            vec![json!({ "url": base_path })]
        };
    };
    let schemes = media_types(old.get("schemes"));
    let scheme = if schemes.is_empty() || schemes.iter().any(|s| s == "https") {
        "https"
    } else {
        schemes[0].as_str()
    };
    vec![json!({ "url": format!("{scheme}://{host}{base_path}") })]
}

fn path_item(
    item: Value,
    globals: &Map<String, Value>,
    consumes: &[String],
    produces: &[String],
) -> Value {
    let Value::Object(mut item) = item else {
        return item;
    };
    let shared: Vec<Value> = match item.remove("parameters") {
        Some(Value::Array(params)) => params
            .into_iter()
            .map(|p| resolve_param(p, globals))
            .collect(),
        _ => Vec::new(),
    };
    let mut out = Map::new();
    for (key, value) in item {
        let is_method = matches!(
            key.as_str(),
            "get" | "put" | "post" | "delete" | "options" | "head" | "patch"
        );
        if is_method {
            out.insert(key, operation(value, &shared, globals, consumes, produces));
        } else {
            out.insert(key, value);
        }
    }
    Value::Object(out)
}

/// A parameter, with a reference to a global one replaced by it: a global `body` parameter
/// must become a request body, which is decided here and not by the reader.
fn resolve_param(param: Value, globals: &Map<String, Value>) -> Value {
    let target = param
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/parameters/"))
        .map(|name| name.replace("~1", "/").replace("~0", "~"))
        .and_then(|name| globals.get(&name));
    match target {
        Some(found) => found.clone(),
        None => param,
    }
}

fn operation(
    op: Value,
    shared: &[Value],
    globals: &Map<String, Value>,
    consumes: &[String],
    produces: &[String],
) -> Value {
    let Value::Object(mut op) = op else {
        return op;
    };
    let consumes = match media_types(op.get("consumes")) {
        own if !own.is_empty() => own,
        _ => consumes.to_vec(),
    };
    let produces = match media_types(op.get("produces")) {
        own if !own.is_empty() => own,
        _ => produces.to_vec(),
    };
    op.remove("consumes");
    op.remove("produces");
    op.remove("schemes");

    // The operation's own parameters override shared ones of the same name and place.
    let own: Vec<Value> = match op.remove("parameters") {
        Some(Value::Array(params)) => params
            .into_iter()
            .map(|p| resolve_param(p, globals))
            .collect(),
        _ => Vec::new(),
    };
    let key = |p: &Value| {
        (
            p.get("name").and_then(Value::as_str).map(str::to_owned),
            p.get("in").and_then(Value::as_str).map(str::to_owned),
        )
    };
    let mut params: Vec<Value> = shared
        .iter()
        .filter(|s| !own.iter().any(|o| key(o) == key(s)))
        .cloned()
        .collect();
    params.extend(own);

    let mut parameters = Vec::new();
    let mut body = None;
    let mut form = Vec::new();
    for param in params {
        match param.get("in").and_then(Value::as_str) {
            Some("body") => body = Some(param),
            Some("formData") => form.push(param),
            _ => parameters.push(parameter(param)),
        }
    }
    if !parameters.is_empty() {
        op.insert("parameters".into(), Value::Array(parameters));
    }
    if let Some(body) = body {
        op.insert("requestBody".into(), body_request(body, &consumes));
    } else if !form.is_empty() {
        op.insert("requestBody".into(), form_request(form, &consumes));
    }
    if let Some(Value::Object(responses)) = op.remove("responses") {
        let responses = responses
            .into_iter()
            .map(|(code, r)| (code, response(r, &produces)))
            .collect();
        op.insert("responses".into(), Value::Object(responses));
    }
    Value::Object(op)
}

/// A path, query or header parameter: its value keys move into `schema`.
fn parameter(param: Value) -> Value {
    let Value::Object(mut param) = param else {
        return param;
    };
    if param.contains_key("$ref") {
        return Value::Object(param);
    }
    let location = param
        .get("in")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let collection = param.remove("collectionFormat");
    let mut schema = Map::new();
    for key in VALUE_KEYS {
        if let Some(value) = param.remove(*key) {
            schema.insert((*key).to_owned(), value);
        }
    }
    let is_array = schema.get("type").and_then(Value::as_str) == Some("array");
    param.insert(
        "schema".into(),
        convert_schema(Value::Object(schema.clone())),
    );
    if is_array {
        let (style, explode) = match collection.as_ref().and_then(Value::as_str) {
            Some("multi") => ("form", true),
            Some("ssv") => ("spaceDelimited", false),
            Some("pipes") => ("pipeDelimited", false),
            // csv (the default) and tsv, for which OpenAPI 3 has no style
            _ if location == "query" || location == "cookie" => ("form", false),
            _ => ("simple", false),
        };
        param.insert("style".into(), json!(style));
        param.insert("explode".into(), json!(explode));
    }
    Value::Object(param)
}

fn body_request(body: Value, consumes: &[String]) -> Value {
    let schema = convert_schema(body.get("schema").cloned().unwrap_or(json!({})));
    let types: Vec<&str> = if consumes.is_empty() {
        vec![JSON]
    } else {
        consumes
            .iter()
            .map(String::as_str)
            .filter(|t| *t != FORM && *t != MULTIPART)
            .collect()
    };
    let types = if types.is_empty() { vec![JSON] } else { types };
    let content: Map<String, Value> = types
        .into_iter()
        .map(|t| (t.to_owned(), json!({ "schema": schema })))
        .collect();
    let mut out = Map::new();
    if let Some(description) = body.get("description") {
        out.insert("description".into(), description.clone());
    }
    out.insert(
        "required".into(),
        json!(
            body.get("required")
                .and_then(Value::as_bool)
                .unwrap_or(false)
        ),
    );
    out.insert("content".into(), Value::Object(content));
    Value::Object(out)
}

fn form_request(fields: Vec<Value>, consumes: &[String]) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    let mut has_file = false;
    for field in fields {
        let Some(name) = field.get("name").and_then(Value::as_str).map(str::to_owned) else {
            continue;
        };
        if field.get("required").and_then(Value::as_bool) == Some(true) {
            required.push(json!(name));
        }
        has_file |= field.get("type").and_then(Value::as_str) == Some("file");
        let mut schema = Map::new();
        for key in VALUE_KEYS {
            if let Some(value) = field.get(*key) {
                schema.insert((*key).to_owned(), value.clone());
            }
        }
        if let Some(description) = field.get("description") {
            schema.insert("description".into(), description.clone());
        }
        properties.insert(name, convert_schema(Value::Object(schema)));
    }
    let media_type = if has_file || consumes.iter().any(|c| c == MULTIPART) {
        MULTIPART
    } else {
        FORM
    };
    let mut schema = json!({ "type": "object", "properties": properties });
    if !required.is_empty() {
        schema["required"] = Value::Array(required.clone());
    }
    json!({
        "required": !required.is_empty(),
        "content": { media_type: { "schema": schema } },
    })
}

fn response(response: Value, produces: &[String]) -> Value {
    let Value::Object(mut response) = response else {
        return response;
    };
    if let Some(Value::String(reference)) = response.get("$ref") {
        let reference = reference.replacen("#/responses/", "#/components/responses/", 1);
        return json!({ "$ref": reference });
    }
    response.remove("examples");
    if !response.contains_key("description") {
        response.insert("description".into(), json!(""));
    }
    if let Some(schema) = response.remove("schema") {
        let schema = convert_schema(schema);
        let types: Vec<&str> = if produces.is_empty() {
            vec![JSON]
        } else {
            produces.iter().map(String::as_str).collect()
        };
        let content: Map<String, Value> = types
            .into_iter()
            .map(|t| (t.to_owned(), json!({ "schema": schema })))
            .collect();
        response.insert("content".into(), Value::Object(content));
    }
    if let Some(Value::Object(headers)) = response.remove("headers") {
        let headers = headers
            .into_iter()
            .map(|(name, header)| {
                let mut schema = Map::new();
                let mut out = Map::new();
                if let Value::Object(header) = header {
                    for (key, value) in header {
                        if VALUE_KEYS.contains(&key.as_str()) {
                            schema.insert(key, value);
                        } else if key == "description" || key.starts_with("x-") {
                            out.insert(key, value);
                        }
                    }
                }
                out.insert("schema".into(), convert_schema(Value::Object(schema)));
                (name, Value::Object(out))
            })
            .collect();
        response.insert("headers".into(), Value::Object(headers));
    }
    Value::Object(response)
}

fn security_scheme(scheme: Value) -> Value {
    let Value::Object(mut scheme) = scheme else {
        return scheme;
    };
    match scheme.get("type").and_then(Value::as_str) {
        Some("basic") => {
            let mut out = Map::new();
            out.insert("type".into(), json!("http"));
            out.insert("scheme".into(), json!("basic"));
            if let Some(d) = scheme.remove("description") {
                out.insert("description".into(), d);
            }
            Value::Object(out)
        }
        Some("oauth2") => {
            let flow = match scheme.remove("flow").as_ref().and_then(Value::as_str) {
                Some("implicit") => "implicit",
                Some("password") => "password",
                Some("application") => "clientCredentials",
                _ => "authorizationCode",
            };
            let mut details = Map::new();
            for key in ["authorizationUrl", "tokenUrl"] {
                if let Some(v) = scheme.remove(key) {
                    details.insert(key.into(), v);
                }
            }
            details.insert(
                "scopes".into(),
                scheme.remove("scopes").unwrap_or(json!({})),
            );
            let mut out = Map::new();
            out.insert("type".into(), json!("oauth2"));
            if let Some(d) = scheme.remove("description") {
                out.insert("description".into(), d);
            }
            out.insert("flows".into(), json!({ flow: details }));
            Value::Object(out)
        }
        _ => Value::Object(scheme),
    }
}

/// A 2.0 schema as a 3.0 one, throughout its subschemas.
fn convert_schema(schema: Value) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, value) in map {
                match key.as_str() {
                    "$ref" => {
                        let converted = match value.as_str() {
                            Some(r) => {
                                json!(r.replacen("#/definitions/", "#/components/schemas/", 1))
                            }
                            None => value,
                        };
                        out.insert(key, converted);
                    }
                    "x-nullable" => {
                        out.insert("nullable".into(), value);
                    }
                    "discriminator" => {
                        let converted = match value {
                            Value::String(name) => json!({ "propertyName": name }),
                            other => other,
                        };
                        out.insert(key, converted);
                    }
                    "type" if value == "file" => {
                        out.insert("type".into(), json!("string"));
                        out.insert("format".into(), json!("binary"));
                    }
                    // Maps of names to schemas, whatever the names are.
                    "properties" | "patternProperties" | "definitions" => {
                        let converted = match value {
                            Value::Object(entries) => Value::Object(
                                entries
                                    .into_iter()
                                    .map(|(name, s)| (name, convert_schema(s)))
                                    .collect(),
                            ),
                            other => other,
                        };
                        out.insert(key, converted);
                    }
                    // Values, not schemas.
                    "enum" | "example" | "default" | "required" => {
                        out.insert(key, value);
                    }
                    _ if key.starts_with("x-") => {
                        out.insert(key, value);
                    }
                    _ => {
                        out.insert(key, convert_schema(value));
                    }
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(convert_schema).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_petstore_operation_becomes_openapi_3() {
        let mut doc = json!({
            "swagger": "2.0",
            "info": { "title": "t", "version": "1" },
            "host": "api.example.com",
            "basePath": "/v1/",
            "schemes": ["http", "https"],
            "consumes": ["application/json"],
            "parameters": {
                "limit": { "name": "limit", "in": "query", "type": "integer", "format": "int32" }
            },
            "paths": {
                "/pets/{id}": {
                    "parameters": [{ "name": "id", "in": "path", "required": true, "type": "string" }],
                    "post": {
                        "operationId": "updatePet",
                        "parameters": [
                            { "$ref": "#/parameters/limit" },
                            { "name": "tags", "in": "query", "type": "array",
                              "items": { "type": "string" }, "collectionFormat": "multi" },
                            { "name": "pet", "in": "body", "required": true,
                              "schema": { "$ref": "#/definitions/Pet" } }
                        ],
                        "responses": {
                            "200": { "description": "ok", "schema": { "type": "file" } },
                            "404": { "$ref": "#/responses/NotFound" }
                        }
                    }
                }
            },
            "definitions": {
                "Pet": { "type": "object", "x-nullable": true, "discriminator": "kind",
                         "properties": { "kind": { "type": "string" } } }
            },
            "responses": { "NotFound": { "description": "missing" } },
            "securityDefinitions": {
                "basic": { "type": "basic" },
                "oauth": { "type": "oauth2", "flow": "application", "tokenUrl": "https://t" }
            }
        });
        upgrade(&mut doc);
        assert_eq!(doc["openapi"], "3.0.3");
        assert_eq!(doc["servers"][0]["url"], "https://api.example.com/v1");
        let op = &doc["paths"]["/pets/{id}"]["post"];
        let names: Vec<&str> = op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["id", "limit", "tags"]);
        assert_eq!(op["parameters"][1]["schema"]["format"], "int32");
        assert_eq!(op["parameters"][2]["style"], "form");
        assert_eq!(op["parameters"][2]["explode"], true);
        assert_eq!(
            op["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Pet"
        );
        assert_eq!(op["requestBody"]["required"], true);
        assert_eq!(
            op["responses"]["200"]["content"]["application/json"]["schema"]["format"],
            "binary"
        );
        assert_eq!(
            op["responses"]["404"]["$ref"],
            "#/components/responses/NotFound"
        );
        let pet = &doc["components"]["schemas"]["Pet"];
        assert_eq!(pet["nullable"], true);
        assert_eq!(pet["discriminator"]["propertyName"], "kind");
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes["basic"]["scheme"], "basic");
        assert_eq!(
            schemes["oauth"]["flows"]["clientCredentials"]["tokenUrl"],
            "https://t"
        );
    }

    #[test]
    fn form_fields_become_a_multipart_body_when_a_file_is_among_them() {
        let mut doc = json!({
            "swagger": "2.0",
            "info": { "title": "t", "version": "1" },
            "paths": { "/upload": { "post": {
                "parameters": [
                    { "name": "note", "in": "formData", "type": "string" },
                    { "name": "file", "in": "formData", "type": "file", "required": true }
                ],
                "responses": { "204": { "description": "done" } }
            } } }
        });
        upgrade(&mut doc);
        let body = &doc["paths"]["/upload"]["post"]["requestBody"];
        let schema = &body["content"]["multipart/form-data"]["schema"];
        assert_eq!(schema["properties"]["file"]["format"], "binary");
        assert_eq!(schema["required"], json!(["file"]));
        assert_eq!(body["required"], true);
    }
}
