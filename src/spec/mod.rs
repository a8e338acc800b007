//! Spec readers: from a file to the IR.
//!
//! Every version is read through one path: the file is parsed into a JSON value, references
//! to other files and to places the reader does not name are bundled ([`bundle`]), Swagger 2.0
//! and OpenAPI 3.1 are converted to the shape of OpenAPI 3.0 ([`swagger2`], [`openapi31`]),
//! and the result is read by the OpenAPI 3.0 reader ([`openapi3`]).

mod bundle;
mod openapi3;
mod openapi31;
mod parse;
mod repair;
mod skips;
mod swagger2;

use std::path::Path;

use crate::Result;
use crate::error::Error;
use crate::ir::Api;

pub(crate) use openapi3::CLIENT_METHODS;
pub use parse::Format;

/// What the generator needs to know besides the spec.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// The package name of the generated crate (kebab-case).
    pub crate_name: String,
    /// Where the imports of a `.proto` file are looked up (its own folder when empty).
    pub includes: Vec<std::path::PathBuf>,
    /// Whether a part of the description that cannot be read (an operation, a schema) is an
    /// error; by default it is skipped with a warning in [`Api::warnings`].
    pub strict: bool,
}

/// Reads the spec at `path` into the IR.
pub fn read(path: &Path, options: &ReadOptions) -> Result<Api> {
    if path.extension().is_some_and(|e| e == "proto") {
        return crate::proto::read(path, &options.includes, options);
    }
    let text = std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    let text = String::from_utf8(text).map_err(|err| Error::NotOpenApi {
        path: path.to_owned(),
        reason: format!(
            "the file is not UTF-8 text (invalid byte at offset {})",
            err.utf8_error().valid_up_to()
        ),
    })?;
    let format = Format::of(path, &text);
    let mut value = parse::value(path, &text, format)?;
    let version = parse::version(path, &value)?;
    let schemas_at = match version {
        parse::Version::Swagger2(_) => "/definitions",
        _ => "/components/schemas",
    };
    let mut skips = skips::Skips::new(options.strict);
    let bundled = bundle::bundle(path, &mut value, schemas_at, &mut skips)?;
    let mut notes = Vec::new();
    let converted = match &version {
        parse::Version::OpenApi3_0 => None,
        parse::Version::OpenApi3_1(_) => {
            notes = openapi31::downgrade(&mut value);
            Some("OpenAPI 3.1")
        }
        parse::Version::Swagger2(_) => {
            swagger2::upgrade(&mut value);
            openapi31::normalize_schemas(&mut value);
            Some("Swagger 2.0")
        }
    };
    let repaired = repair::repair(&mut value);
    notes.extend(repaired.notes);
    let doc: openapiv3::OpenAPI = match parse::from_value(path, &value, converted) {
        Ok(doc) => doc,
        // Parts that do not deserialise are skipped, and the rest read.
        Err(_) if !skips.strict() && skips::prune(path, &mut value, &mut skips)? > 0 => {
            parse::from_value(path, &value, converted)?
        }
        // The file as written is what failed: its text gives the line and column.
        Err(_) if converted.is_none() && !bundled.changed && !repaired.changed => {
            return Err(parse::document::<openapiv3::OpenAPI>(path, &text, format)
                .err()
                .unwrap_or_else(|| Error::Invalid {
                    path: path.to_owned(),
                    location: "/".into(),
                    message: "the document does not match the OpenAPI schema".into(),
                }));
        }
        Err(err) => return Err(err),
    };
    drop(value);
    let mut api = openapi3::read(path, &doc, options, skips)?;
    api.notes = notes;
    Ok(api)
}
