//! Reading on past the parts of a description that cannot be read.
//!
//! One broken operation must not cost the other hundreds: by default an operation that cannot
//! be read is left out, a component schema that cannot be read is typed as any JSON value, and
//! each gets a warning naming its JSON pointer and the reason. In strict mode the first of
//! them is the error instead, in the form it always had (file and JSON pointer).

use std::collections::BTreeSet;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::parse;
use crate::Result;
use crate::error::{Error, pointer_token};

/// The parts skipped so far, or the strictness that makes each an error.
#[derive(Debug, Default)]
pub(crate) struct Skips {
    strict: bool,
    /// One line per part skipped, for the user.
    pub(crate) warnings: Vec<String>,
    /// The components removed (`#/components/<section>/<name>`), so that a reference to one
    /// says so rather than that it resolves to nothing.
    removed: BTreeSet<String>,
}

impl Skips {
    /// Skips (or, when strict, fails on) nothing yet.
    pub(crate) fn new(strict: bool) -> Self {
        Self {
            strict,
            ..Self::default()
        }
    }

    /// Whether every part that cannot be read is an error.
    pub(crate) fn strict(&self) -> bool {
        self.strict
    }

    /// Records that `what` (`skipped operation GET /pets (#/paths/~1pets/get)`) happened
    /// because of `err`; in strict mode returns `err` instead.
    pub(crate) fn skip(&mut self, what: String, err: Error) -> Result<()> {
        // A reference out of the allowed folders is the user's to allow, not to skip.
        if self.strict || !err.is_input_error() || matches!(err, Error::Refused { .. }) {
            return Err(err);
        }
        let reason = match &err {
            Error::Invalid {
                location, message, ..
            }
            | Error::Unsupported {
                location, message, ..
            } => format!("{location}: {message}"),
            other => other.to_string(),
        };
        self.warnings.push(format!("{what}: {reason}"));
        Ok(())
    }

    /// Records that the component known as `reference` was removed (nothing for an empty one).
    pub(crate) fn removed(&mut self, reference: String) {
        if !reference.is_empty() {
            self.removed.insert(reference);
        }
    }

    /// Whether the component at `reference` was removed because it cannot be read.
    pub(crate) fn was_removed(&self, reference: &str) -> bool {
        self.removed.contains(reference)
    }
}

/// The sections of `components` and what each entry must deserialise into.
type Check = fn(&Value) -> Option<(String, String)>;

const SECTIONS: &[(&str, Check)] = &[
    (
        "schemas",
        check::<openapiv3::ReferenceOr<openapiv3::Schema>>,
    ),
    (
        "responses",
        check::<openapiv3::ReferenceOr<openapiv3::Response>>,
    ),
    (
        "parameters",
        check::<openapiv3::ReferenceOr<openapiv3::Parameter>>,
    ),
    (
        "examples",
        check::<openapiv3::ReferenceOr<openapiv3::Example>>,
    ),
    (
        "requestBodies",
        check::<openapiv3::ReferenceOr<openapiv3::RequestBody>>,
    ),
    (
        "headers",
        check::<openapiv3::ReferenceOr<openapiv3::Header>>,
    ),
    (
        "securitySchemes",
        check::<openapiv3::ReferenceOr<openapiv3::SecurityScheme>>,
    ),
    ("links", check::<openapiv3::ReferenceOr<openapiv3::Link>>),
    (
        "callbacks",
        check::<openapiv3::ReferenceOr<openapiv3::Callback>>,
    ),
];

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Removes from `root` (in the shape of OpenAPI 3.0) each operation, path item and component
/// that does not deserialise on its own, with a warning; a component schema is replaced by
/// `{}` (any value) instead, so that references to it still resolve. Returns how many parts
/// were skipped. In strict mode the first is the error.
pub(super) fn prune(path: &Path, root: &mut Value, skips: &mut Skips) -> Result<usize> {
    let before = skips.warnings.len();
    if let Some(Value::Object(paths)) = root.get_mut("paths") {
        let mut remove = Vec::new();
        for (template, item) in paths.iter_mut() {
            let at = format!("#/paths/{}", pointer_token(template));
            let Value::Object(item) = item else {
                remove.push(template.clone());
                skips.skip(
                    format!("skipped path {template} ({at})"),
                    invalid(path, &at, "a path item must be a mapping".into()),
                )?;
                continue;
            };
            if let Some(parameters) = item.get("parameters")
                && let Some((inner, message)) =
                    check::<Vec<openapiv3::ReferenceOr<openapiv3::Parameter>>>(parameters)
            {
                remove.push(template.clone());
                skips.skip(
                    format!("skipped every operation of {template} ({at})"),
                    invalid(path, &format!("{at}/parameters{inner}"), message),
                )?;
                continue;
            }
            prune_operations(path, template, &at, item, skips)?;
            if let Some((inner, message)) =
                check::<openapiv3::PathItem>(&Value::Object(item.clone()))
            {
                remove.push(template.clone());
                skips.skip(
                    format!("skipped path {template} ({at})"),
                    invalid(path, &format!("{at}{inner}"), message),
                )?;
            }
        }
        for template in remove {
            paths.shift_remove(&template);
        }
    }
    if let Some(Value::Object(components)) = root.get_mut("components") {
        for (section, check) in SECTIONS {
            let Some(Value::Object(entries)) = components.get_mut(*section) else {
                continue;
            };
            let mut remove = Vec::new();
            for (name, entry) in entries.iter_mut() {
                let at = format!("#/components/{section}/{}", pointer_token(name));
                let Some((inner, message)) = check(entry) else {
                    continue;
                };
                let err = invalid(path, &format!("{at}{inner}"), message);
                if *section == "schemas" {
                    skips.skip(format!("read schema {at} as any JSON value"), err)?;
                    *entry = Value::Object(Map::new());
                } else {
                    skips.skip(format!("skipped {at}"), err)?;
                    skips.removed(at);
                    remove.push(name.clone());
                }
            }
            for name in remove {
                entries.shift_remove(&name);
            }
        }
    }
    Ok(skips.warnings.len() - before)
}

fn prune_operations(
    path: &Path,
    template: &str,
    at: &str,
    item: &mut Map<String, Value>,
    skips: &mut Skips,
) -> Result<()> {
    let mut remove = Vec::new();
    for (method, op) in item.iter() {
        if !METHODS.contains(&method.as_str()) {
            continue;
        }
        let op_at = format!("{at}/{method}");
        let Some((mut inner, mut message)) = check::<openapiv3::Operation>(op) else {
            continue;
        };
        // openapiv3 flattens the responses, which hides where in them the error is.
        if inner == "/responses"
            && let Some(Value::Object(responses)) = op.get("responses")
        {
            for (code, response) in responses {
                if let Some((deeper, m)) =
                    check::<openapiv3::ReferenceOr<openapiv3::Response>>(response)
                {
                    inner = format!("/responses/{}{deeper}", pointer_token(code));
                    message = m;
                    break;
                }
            }
        }
        remove.push(method.clone());
        skips.skip(
            format!(
                "skipped operation {} {template} ({op_at})",
                method.to_ascii_uppercase()
            ),
            invalid(path, &format!("{op_at}{inner}"), message),
        )?;
    }
    for method in remove {
        item.shift_remove(&method);
    }
    Ok(())
}

/// Where in `value` (a JSON pointer) and why it does not deserialise as `T`; `None` when it
/// does.
fn check<T: DeserializeOwned>(value: &Value) -> Option<(String, String)> {
    serde_path_to_error::deserialize::<_, T>(value)
        .err()
        .map(|err| {
            (
                parse::pointer(err.path()),
                parse::readable(&err.inner().to_string()),
            )
        })
}

fn invalid(path: &Path, location: &str, message: String) -> Error {
    Error::Invalid {
        path: path.to_owned(),
        location: location.to_owned(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parts_that_do_not_deserialise_are_skipped_with_their_pointer() {
        let mut doc = json!({
            "openapi": "3.0.3",
            "info": {"title": "t", "version": "1"},
            "paths": {
                "/good": {"get": {"responses": {"200": {"description": "ok"}}}},
                "/bad": {
                    "get": {"parameters": 7, "responses": {}},
                    "put": {"responses": {"200": {"description": "ok"}}}
                }
            },
            "components": {
                "schemas": {"Broken": {"type": "object", "properties": 5}, "Fine": {}},
                "parameters": {"P": {"in": "nowhere", "name": "p"}}
            }
        });
        let mut skips = Skips::new(false);
        let n = prune(Path::new("api.yaml"), &mut doc, &mut skips).unwrap();
        assert_eq!(n, 3, "{:?}", skips.warnings);
        assert!(
            skips.warnings[0].starts_with(
                "skipped operation GET /bad (#/paths/~1bad/get): #/paths/~1bad/get/parameters: invalid type: integer `7`"
            ),
            "{:?}",
            skips.warnings
        );
        assert!(skips.warnings[1].starts_with(
            "read schema #/components/schemas/Broken as any JSON value: #/components/schemas/Broken"
        ));
        assert!(skips.warnings[2].starts_with("skipped #/components/parameters/P: "));
        assert!(skips.was_removed("#/components/parameters/P"));
        assert!(doc["paths"]["/bad"].get("put").is_some());
        let _: openapiv3::OpenAPI = serde_json::from_value(doc.clone()).unwrap();

        let mut strict = Skips::new(true);
        let mut doc = json!({"paths": {"/x": {"get": {"parameters": 7}}}});
        let err = prune(Path::new("api.yaml"), &mut doc, &mut strict).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("api.yaml: #/paths/~1x/get/parameters: invalid type"),
            "{err}"
        );
    }
}
