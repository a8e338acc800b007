//! Spec readers: from a file to the IR.

mod openapi3;
mod parse;

use std::path::Path;

use crate::Result;
use crate::error::Error;
use crate::ir::Api;

pub use parse::Format;

/// What the generator needs to know besides the spec.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// The package name of the generated crate (kebab-case).
    pub crate_name: String,
}

/// Reads the spec at `path` into the IR.
pub fn read(path: &Path, options: &ReadOptions) -> Result<Api> {
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
    let version = parse::version(path, &text, format)?;
    match version {
        parse::Version::OpenApi3_0 => {
            let doc = parse::document::<openapiv3::OpenAPI>(path, &text, format)?;
            openapi3::read(path, &doc, options)
        }
        parse::Version::OpenApi3_1(v) => Err(Error::Unsupported {
            path: path.to_owned(),
            location: "/openapi".into(),
            message: format!("OpenAPI {v} is not read yet; this version reads OpenAPI 3.0.x"),
        }),
        parse::Version::Swagger2(v) => Err(Error::Unsupported {
            path: path.to_owned(),
            location: "/swagger".into(),
            message: format!("Swagger {v} is not read yet; this version reads OpenAPI 3.0.x"),
        }),
    }
}
