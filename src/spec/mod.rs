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
mod swagger2;

use std::path::{Path, PathBuf};

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
    pub includes: Vec<PathBuf>,
    /// Folders besides the root document's own (and their subfolders) whose files `$ref`s may
    /// read, and that files reached through the include folders of a `.proto` file may resolve
    /// to through symlinks (`--allow-ref-dir`).
    pub allowed_ref_dirs: Vec<PathBuf>,
}

/// The folders of `--allow-ref-dir`, canonical (symlinks resolved), so that references can be
/// compared with where they really lead.
pub(crate) fn allowed_dirs(dirs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    dirs.iter()
        .map(|dir| {
            std::fs::canonicalize(dir)
                .ok()
                .filter(|d| d.is_dir())
                .ok_or_else(|| Error::AllowedDir { path: dir.clone() })
        })
        .collect()
}

/// Reads the spec at `path` into the IR.
pub fn read(path: &Path, options: &ReadOptions) -> Result<Api> {
    let allowed = allowed_dirs(&options.allowed_ref_dirs)?;
    if path.extension().is_some_and(|e| e == "proto") {
        return crate::proto::read(path, &options.includes, &allowed, options);
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
    let bundled = bundle::bundle(path, &mut value, schemas_at, &allowed)?;
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
    let doc: openapiv3::OpenAPI = match parse::from_value(path, &value, converted) {
        Ok(doc) => doc,
        // The file as written is what failed: its text gives the line and column.
        Err(_) if converted.is_none() && !bundled.changed => {
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
    let mut api = openapi3::read(path, &doc, options)?;
    api.notes = notes;
    Ok(api)
}
