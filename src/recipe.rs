//! How a crate was generated, recorded in its `Cargo.toml` under `[package.metadata.codegen]`,
//! so that `codegen check DIR` and `codegen gen` inside the folder regenerate it exactly.
//!
//! Every path in the record is relative to the crate's folder and written with `/`, so the
//! record is the same on every machine and the crate can be moved together with its spec.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::Result;
use crate::emit::{Generated, Options, RuntimeDependency, Selection, relative_path, toml_str};
use crate::error::Error;

/// The table of the crate's `Cargo.toml` that holds the record.
pub const TABLE: &str = "package.metadata.codegen";

/// The options a crate was generated with, as recorded in the crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    /// The API description, relative to the crate.
    pub spec: String,
    /// The package name.
    pub name: String,
    /// How the crate depends on the runtime (a path is relative to the crate).
    pub runtime: RuntimeDependency,
    /// The include folders of a `.proto` file, relative to the crate.
    pub includes: Vec<String>,
    /// Whether a part of the description that cannot be read is an error (`--strict`).
    pub strict: bool,
    /// The folders besides the spec's own that references may read (`--allow-ref-dir`),
    /// relative to the crate.
    pub allowed_ref_dirs: Vec<String>,
    /// The operations generated (`--tag`, `--operation`); all when empty.
    pub selection: Selection,
}

impl Recipe {
    /// The record of generating the crate at `crate_dir` from `spec` with `options` (paths are
    /// relative to the current directory or absolute).
    pub fn new(spec: &Path, crate_dir: &Path, options: &Options) -> Result<Self> {
        let relative = |path: &Path| {
            relative_path(crate_dir, path).map_err(|source| Error::Output {
                path: path.to_owned(),
                source,
            })
        };
        Ok(Self {
            spec: relative(spec)?,
            name: options.crate_name.clone(),
            runtime: options.runtime.clone(),
            includes: options
                .includes
                .iter()
                .map(|dir| relative(dir))
                .collect::<Result<_>>()?,
            strict: options.strict,
            allowed_ref_dirs: options
                .allowed_ref_dirs
                .iter()
                .map(|dir| relative(dir))
                .collect::<Result<_>>()?,
            selection: options.selection.clone(),
        })
    }

    /// The spec's path, for a crate at `crate_dir`.
    pub fn spec_path(&self, crate_dir: &Path) -> PathBuf {
        join(crate_dir, &self.spec)
    }

    /// The generation options, for a crate at `crate_dir`.
    pub fn options(&self, crate_dir: &Path) -> Options {
        Options {
            crate_name: self.name.clone(),
            runtime: self.runtime.clone(),
            includes: self.includes.iter().map(|i| join(crate_dir, i)).collect(),
            strict: self.strict,
            allowed_ref_dirs: self
                .allowed_ref_dirs
                .iter()
                .map(|d| join(crate_dir, d))
                .collect(),
            selection: self.selection.clone(),
        }
    }

    /// The record as the TOML table that ends the crate's `Cargo.toml`.
    pub fn to_toml(&self) -> String {
        let mut out = format!(
            "\n# How this crate was generated, read by `codegen gen` (in this folder) and `codegen check`.\n\
             # Paths are relative to this folder.\n[{TABLE}]\nspec = {}\n",
            toml_str(&self.spec)
        );
        match &self.runtime {
            RuntimeDependency::Path(path) => {
                out.push_str(&format!("runtime-path = {}\n", toml_str(path)));
            }
            RuntimeDependency::Version(version) => {
                out.push_str(&format!("runtime-version = {}\n", toml_str(version)));
            }
        }
        if !self.includes.is_empty() {
            let list: Vec<String> = self.includes.iter().map(|i| toml_str(i)).collect();
            out.push_str(&format!("include = [{}]\n", list.join(", ")));
        }
        if !self.allowed_ref_dirs.is_empty() {
            let list: Vec<String> = self.allowed_ref_dirs.iter().map(|d| toml_str(d)).collect();
            out.push_str(&format!("allow-ref-dir = [{}]\n", list.join(", ")));
        }
        if self.strict {
            out.push_str("strict = true\n");
        }
        let list = |items: &[String]| {
            items
                .iter()
                .map(|i| toml_str(i))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !self.selection.tags.is_empty() {
            out.push_str(&format!("tags = [{}]\n", list(&self.selection.tags)));
        }
        if !self.selection.operations.is_empty() {
            out.push_str(&format!(
                "operations = [{}]\n",
                list(&self.selection.operations)
            ));
        }
        if self.selection.all_schemas {
            out.push_str("all-schemas = true\n");
        }
        out
    }

    /// Reads the record of the crate at `crate_dir`; `None` when its `Cargo.toml` has none (a
    /// crate generated by an older codegen, or not generated at all).
    pub fn read(crate_dir: &Path) -> Result<Option<Self>> {
        let path = crate_dir.join("Cargo.toml");
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        Self::parse(&path, &text)
    }

    /// Reads the record from the text of a `Cargo.toml` at `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Option<Self>> {
        let invalid = |message: String| Error::Invalid {
            path: path.to_owned(),
            location: format!("[{TABLE}]"),
            message,
        };
        let manifest: Manifest = toml::from_str(text).map_err(|err| {
            let message = err.message().to_owned();
            match err.span() {
                Some(span) => {
                    let (line, column) = line_column(text, span.start);
                    Error::Syntax {
                        path: path.to_owned(),
                        line,
                        column,
                        message,
                    }
                }
                None => invalid(message),
            }
        })?;
        let Some(package) = manifest.package else {
            return Ok(None);
        };
        let Some(record) = package.metadata.and_then(|m| m.codegen) else {
            return Ok(None);
        };
        let runtime = match (record.runtime_path, record.runtime_version) {
            (Some(path), None) => RuntimeDependency::Path(path),
            (None, Some(version)) => RuntimeDependency::Version(version),
            (None, None) => {
                return Err(invalid(
                    "neither `runtime-path` nor `runtime-version` is set: regenerate the crate with `codegen gen SPEC -o DIR`".into(),
                ));
            }
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "both `runtime-path` and `runtime-version` are set: keep one".into(),
                ));
            }
        };
        let name = package
            .name
            .ok_or_else(|| invalid("the package has no `name`".into()))?;
        Ok(Some(Self {
            spec: record.spec,
            name,
            runtime,
            includes: record.include,
            strict: record.strict,
            allowed_ref_dirs: record.allow_ref_dir,
            selection: Selection {
                tags: record.tags,
                operations: record.operations,
                all_schemas: record.all_schemas,
            },
        }))
    }
}

impl Generated {
    /// Records `recipe` at the end of the crate's `Cargo.toml`.
    pub fn record(&mut self, recipe: &Recipe) {
        if let Some(manifest) = self
            .files
            .iter_mut()
            .find(|f| f.path == Path::new("Cargo.toml"))
        {
            manifest.contents.push_str(&recipe.to_toml());
        }
    }
}

/// `relative` (with `/` separators) under `base`, with `.` and `..` resolved lexically as far
/// as `base` allows: `a/b` and `../c` give `a/c`, `.` and `../c` give `../c`.
fn join(base: &Path, relative: &str) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in base.components().chain(Path::new(relative).components()) {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            Component::ParentDir if out.has_root() => {}
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[derive(Deserialize)]
struct Manifest {
    package: Option<Package>,
}

#[derive(Deserialize)]
struct Package {
    name: Option<String>,
    metadata: Option<Metadata>,
}

#[derive(Deserialize)]
struct Metadata {
    codegen: Option<Record>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Record {
    spec: String,
    runtime_path: Option<String>,
    runtime_version: Option<String>,
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    strict: bool,
    #[serde(default)]
    allow_ref_dir: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    operations: Vec<String>,
    #[serde(default)]
    all_schemas: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe(runtime: RuntimeDependency, includes: &[&str]) -> Recipe {
        Recipe {
            spec: "../specs/pet \"store\".yaml".into(),
            name: "pets".into(),
            runtime,
            includes: includes.iter().map(|s| (*s).to_owned()).collect(),
            strict: !includes.is_empty(),
            allowed_ref_dirs: includes.iter().map(|s| format!("{s}/shared")).collect(),
            selection: Selection {
                tags: includes.iter().map(|s| format!("{s}-tag")).collect(),
                operations: includes.iter().map(|s| format!("get_{s}*")).collect(),
                all_schemas: !includes.is_empty(),
            },
        }
    }

    fn roundtrip(recipe: &Recipe) -> Option<Recipe> {
        let manifest = format!("[package]\nname = \"pets\"\n{}", recipe.to_toml());
        Recipe::parse(Path::new("Cargo.toml"), &manifest).unwrap()
    }

    #[test]
    fn a_recipe_reads_back_as_written() {
        for r in [
            recipe(RuntimeDependency::Path("../runtime".into()), &[]),
            recipe(
                RuntimeDependency::Version("=0.1.0".into()),
                &["../protos", "x"],
            ),
        ] {
            assert_eq!(roundtrip(&r), Some(r));
        }
    }

    #[test]
    fn recorded_paths_are_joined_to_the_crate_folder() {
        assert_eq!(join(Path::new("a/b"), "../c.yaml"), Path::new("a/c.yaml"));
        assert_eq!(
            join(Path::new("."), "../../c.yaml"),
            Path::new("../../c.yaml")
        );
        assert_eq!(join(Path::new("a"), "../.."), Path::new(".."));
        assert_eq!(join(Path::new("a"), ".."), Path::new("."));
        assert_eq!(join(Path::new("/x"), "../../y"), Path::new("/y"));
    }

    #[test]
    fn a_manifest_without_a_record_has_none() {
        let manifest = "[package]\nname = \"x\"\n[package.metadata.other]\na = 1\n";
        assert_eq!(
            Recipe::parse(Path::new("Cargo.toml"), manifest).unwrap(),
            None
        );
        assert_eq!(
            Recipe::parse(Path::new("Cargo.toml"), "[workspace]\n").unwrap(),
            None
        );
    }

    #[test]
    fn a_broken_record_names_the_table_and_what_is_wrong() {
        let manifest = "[package]\nname = \"x\"\n[package.metadata.codegen]\nspec = \"a.yaml\"\n";
        let err = Recipe::parse(Path::new("x/Cargo.toml"), manifest).unwrap_err();
        assert_eq!(
            err.to_string(),
            "x/Cargo.toml: [package.metadata.codegen]: neither `runtime-path` nor `runtime-version` is set: regenerate the crate with `codegen gen SPEC -o DIR`"
        );
        let manifest = "[package]\nname = \"x\"\n[package.metadata.codegen]\nspec = 7\n";
        let err = Recipe::parse(Path::new("x/Cargo.toml"), manifest).unwrap_err();
        assert!(err.to_string().starts_with("x/Cargo.toml:4:8: "), "{err}");
    }
}
