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
mod shapes;
mod skips;
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
    /// Whether a part of the description that cannot be read (an operation, a schema) is an
    /// error; by default it is skipped with a warning in [`Api::warnings`].
    pub strict: bool,
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
    let mut skips = skips::Skips::new(options.strict);
    let bundled = bundle::bundle(path, &mut value, schemas_at, &mut skips, &allowed)?;
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
    let shaped = shapes::check(path, &mut value, converted, &mut skips)?;
    let doc: openapiv3::OpenAPI = match parse::from_value(path, &value, converted) {
        Ok(doc) => doc,
        // Parts that do not deserialise are skipped, and the rest read.
        Err(_) if !skips.strict() && skips::prune(path, &mut value, &mut skips)? > 0 => {
            parse::from_value(path, &value, converted)?
        }
        // The file as written is what failed: its text gives the line and column.
        // openapiv3 can panic reading text with repeated keys or keys that are not strings
        // (see `keys_are_plain`): a repeated key is the error then, and other keys keep the
        // error of the value. The panic is caught too, should another case exist.
        Err(err) if converted.is_none() && !bundled.changed && !repaired.changed && !shaped => {
            if !parse::keys_are_plain(path, &text, format)? {
                return Err(err);
            }
            let reparsed = std::panic::catch_unwind(|| {
                parse::document::<openapiv3::OpenAPI>(path, &text, format)
            });
            return Err(match reparsed {
                Ok(Err(located)) => located,
                Ok(Ok(_)) | Err(_) => err,
            });
        }
        Err(err) => return Err(err),
    };
    drop(value);
    let mut api = openapi3::read(path, &doc, options, skips)?;
    api.notes = notes;
    Ok(api)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_text(name: &str, text: &str) -> Result<Api> {
        let dir = tempfile::tempdir().expect("temporary folder");
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write the spec");
        let options = ReadOptions {
            crate_name: "t".into(),
            includes: Vec::new(),
            strict: true,
            allowed_ref_dirs: Vec::new(),
        };
        read(&path, &options)
    }

    const WITH: &str = "openapi: 3.0.0\ninfo: {title: t, version: '1'}\npaths:\n  /x:\n    get:\n      parameters:\n        - name: a\n          in: header\nEXTRA      responses: 7\n";

    /// Found by the fuzzer: openapiv3 panicked reading the text of a document with a repeated
    /// key, for the line and column of another error.
    #[test]
    fn a_repeated_key_is_an_error_not_a_panic() {
        let err = read_text("api.yaml", &WITH.replace("EXTRA", "          in: header\n"))
            .expect_err("the document is invalid");
        let message = err.to_string();
        assert!(
            message.contains("api.yaml:7:11: paths./x.get.parameters[0]: the key `in` is repeated in this mapping"),
            "{message}"
        );
        let json = "{\"openapi\": \"3.0.0\", \"info\": {\"title\": \"t\", \"version\": \"1\"}, \"paths\": {\"/x\": {\"get\": {\"parameters\": [{\"name\": \"a\", \"in\": \"header\", \"in\": \"query\"}], \"responses\": 7}}}}";
        let message = read_text("api.json", json)
            .expect_err("invalid")
            .to_string();
        assert!(message.contains("the key `in` is repeated"), "{message}");
    }

    /// The same panic, from a YAML key that is a number.
    #[test]
    fn a_key_that_is_not_a_string_is_an_error_not_a_panic() {
        let err = read_text("api.yaml", &WITH.replace("EXTRA", "          1: x\n"))
            .expect_err("the document is invalid");
        assert!(err.to_string().contains("/paths"), "{err}");
    }

    /// Found by the fuzzer: YAML aliases that repeat each other took seconds and a gigabyte
    /// in a document of 300 kB, under the YAML parser's own limit.
    #[test]
    fn yaml_aliases_cannot_expand_a_document_without_bound() {
        let mut spec = "openapi: 3.0.0\ninfo: {title: t, version: '1'}\npaths: {}\n".to_owned();
        // Enough events that the YAML parser's limit (100 alias jumps per event) lets it through.
        spec.push_str(&format!("x-pad: [{}1]\n", "1,".repeat(20_000)));
        spec.push_str(
            "x-a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        for (name, previous) in [
            ("b", "a"),
            ("c", "b"),
            ("d", "c"),
            ("e", "d"),
            ("f", "e"),
            ("g", "f"),
        ] {
            let items = vec![format!("*{previous}"); 9].join(",");
            spec.push_str(&format!("x-{name}: &{name} [{items}]\n"));
        }
        let started = std::time::Instant::now();
        let message = read_text("api.yaml", &spec)
            .expect_err("too big")
            .to_string();
        assert!(message.contains("expands to too many values"), "{message}");
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        // Aliases used as they are meant to be still read.
        let reuse = "openapi: 3.0.0\ninfo: {title: t, version: '1'}\npaths:\n  /a:\n    get: &op\n      responses: {'204': {description: none}}\n  /b:\n    get: *op\n";
        read_text("api.yaml", reuse).expect("valid");
    }

    #[test]
    fn an_error_quotes_only_an_excerpt_of_a_huge_value() {
        let huge = "Z".repeat(1 << 20);
        let spec = format!(
            "openapi: 3.0.0\ninfo: {{title: t, version: '1'}}\npaths:\n  /x:\n    get:\n      parameters: \"{huge}\"\n      responses: {{}}\ncomponents:\n  schemas:\n    A:\n      type: {huge}\n"
        );
        let message = read_text("api.yaml", &spec)
            .expect_err("invalid")
            .to_string();
        assert!(message.len() < 300, "{} bytes", message.len());
        assert!(
            message.contains(&format!("{}…", "Z".repeat(80))),
            "{message}"
        );
        let reference = format!(
            "openapi: 3.0.0\ninfo: {{title: t, version: '1'}}\npaths: {{}}\ncomponents:\n  schemas:\n    A:\n      $ref: '{huge}.yaml#/{huge}'\n"
        );
        let message = read_text("api.yaml", &reference)
            .expect_err("invalid")
            .to_string();
        assert!(message.len() < 600, "{} bytes", message.len());
    }
}
