//! From the IR to the files of the generated crate: askama templates, rustfmt, the file system.

mod files;
mod format;
mod render;
mod templates;

use std::path::{Path, PathBuf};

use crate::Result;
use crate::error::Error;
use crate::ir::Api;
pub use crate::ir::select::Selection;
use crate::ir::select::select;
use crate::spec::{self, ReadOptions};

pub use files::{Drift, check, write};
pub(crate) use render::toml_str;

/// Where the generated crate takes `codegen-runtime` from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeDependency {
    /// A version from the registry.
    Version(String),
    /// A path, relative to the generated crate.
    Path(String),
}

impl RuntimeDependency {
    /// A path dependency on the runtime at `runtime`, written relative to the crate at
    /// `crate_dir` (both relative to the current directory or absolute).
    pub fn path_from(crate_dir: &Path, runtime: &Path) -> std::io::Result<Self> {
        relative_path(crate_dir, runtime).map(Self::Path)
    }
}

/// The path of `to` relative to the folder `from` (both relative to the current directory or
/// absolute), with `/` separators: `.` when they are the same.
pub fn relative_path(from: &Path, to: &Path) -> std::io::Result<String> {
    let from = normal(&std::path::absolute(from)?);
    let to = normal(&std::path::absolute(to)?);
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts = vec!["..".to_owned(); from.len() - common];
    parts.extend(to[common..].iter().cloned());
    Ok(if parts.is_empty() {
        ".".to_owned()
    } else {
        parts.join("/")
    })
}

/// Path components with `.` and `..` resolved lexically.
fn normal(path: &Path) -> Vec<String> {
    use std::path::Component;
    let mut out: Vec<String> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct Options {
    /// The package name of the generated crate.
    pub crate_name: String,
    /// How the crate depends on the runtime.
    pub runtime: RuntimeDependency,
    /// Where the imports of a `.proto` file are looked up (its own folder when empty).
    pub includes: Vec<PathBuf>,
    /// Whether a part of the description that cannot be read (an operation, a schema) is an
    /// error; by default it is skipped and named in [`Generated::warnings`].
    pub strict: bool,
    /// Folders besides the root document's own whose files `$ref`s may read
    /// (`--allow-ref-dir`); see [`ReadOptions::allowed_ref_dirs`].
    pub allowed_ref_dirs: Vec<PathBuf>,
    /// The operations to generate (`--tag`, `--operation`); all when empty.
    pub selection: Selection,
}

/// One file of a generated crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    /// The path relative to the crate root, with `/` separators.
    pub path: PathBuf,
    /// The contents.
    pub contents: String,
}

/// The files of a generated crate, in a fixed order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// The files.
    pub files: Vec<GeneratedFile>,
    /// What the reader left out or changed in the spec, for the user to know.
    pub notes: Vec<String>,
    /// The parts of the spec that could not be read and were skipped, one line each naming
    /// the JSON pointer and the reason (empty with [`Options::strict`], where they are errors).
    pub warnings: Vec<String>,
}

/// Reads the spec at `spec_path` and renders the crate.
pub fn generate(spec_path: &Path, options: &Options) -> Result<Generated> {
    let read = ReadOptions {
        crate_name: options.crate_name.clone(),
        includes: options.includes.clone(),
        strict: options.strict,
        allowed_ref_dirs: options.allowed_ref_dirs.clone(),
    };
    let mut api = spec::read(spec_path, &read)?;
    select(&mut api, &options.selection).map_err(|message| Error::Invalid {
        path: spec_path.to_owned(),
        location: "the selection of operations".to_owned(),
        message,
    })?;
    let source = spec_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    render_api(&api, &source, options)
}

/// Renders the crate of an API already read.
pub fn render_api(api: &Api, source: &str, options: &Options) -> Result<Generated> {
    let rendered = templates::render(api, source, options)?;
    let files = format::rustfmt_all(rendered)?;
    Ok(Generated {
        files,
        notes: api.notes.clone(),
        warnings: api.warnings.clone(),
    })
}

/// Renders the crate of an API already read without formatting it: the text that
/// [`render_api`] gives rustfmt. rustfmt runs a process per file, which costs more than reading
/// and rendering; this is for tests and the fuzzer, which check the generator, not rustfmt.
pub fn render_unformatted(
    api: &Api,
    source: &str,
    options: &Options,
) -> Result<Vec<GeneratedFile>> {
    templates::render(api, source, options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_paths_are_relative_to_the_crate() {
        let path =
            |a: &str, b: &str| RuntimeDependency::path_from(Path::new(a), Path::new(b)).unwrap();
        assert_eq!(
            path("/a/b/c", "/a/runtime"),
            RuntimeDependency::Path("../../runtime".into())
        );
        assert_eq!(
            path("/a/gen/x/..", "/a/runtime"),
            RuntimeDependency::Path("../runtime".into())
        );
    }
}
