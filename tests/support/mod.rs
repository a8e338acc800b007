//! Helpers shared by the integration tests.

#![allow(dead_code, unreachable_pub)]

pub mod petstore;
pub mod server;

use std::path::{Path, PathBuf};
use std::process::Command;

use codegen::emit::{Options, RuntimeDependency};

/// The root of this repository.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shared corpus of third-party API descriptions, which CI provides beside the repository.
pub fn corpus() -> PathBuf {
    let dir = root().join("../shared/corpus");
    assert!(
        dir.is_dir(),
        "the API corpus is missing at {}: the tests read it from ../shared/corpus beside the repository",
        dir.display()
    );
    dir
}

/// The specs under `fixtures/` (not `fixtures/invalid/`), sorted.
pub fn fixtures() -> Vec<PathBuf> {
    let mut specs: Vec<PathBuf> = std::fs::read_dir(root().join("fixtures"))
        .expect("fixtures/ is readable")
        .map(|e| e.expect("fixtures/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "json"))
        .collect();
    specs.sort();
    specs
}

/// A package name for the crate generated from `spec`.
pub fn crate_name(spec: &Path) -> String {
    let stem = spec.file_stem().expect("spec file name").to_string_lossy();
    let name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("gen-{}", name.trim_matches('-'))
}

/// Generation options for a crate written to `dir`, depending on this repository's runtime.
pub fn options(name: &str, dir: &Path) -> Options {
    Options {
        crate_name: name.to_owned(),
        runtime: RuntimeDependency::path_from(dir, &root().join("runtime")).expect("paths resolve"),
        includes: Vec::new(),
        strict: true,
        allowed_ref_dirs: Vec::new(),
        selection: Default::default(),
    }
}

/// Generates the crate of `spec` into `dir`.
pub fn generate_into(spec: &Path, dir: &Path) -> codegen::Result<String> {
    let name = crate_name(spec);
    let options = options(&name, dir);
    let generated = codegen::generate(spec, &options)?;
    codegen::write(&generated, dir)?;
    Ok(name)
}

/// Makes `dir` a workspace of `members`, with this repository's lock file so that dependency
/// versions match and downloads are shared.
pub fn make_workspace(dir: &Path, members: &[String]) {
    let list: Vec<String> = members.iter().map(|m| format!("{m:?}")).collect();
    let manifest = format!(
        "[workspace]\nresolver = \"3\"\nmembers = [{}]\n",
        list.join(", ")
    );
    std::fs::write(dir.join("Cargo.toml"), manifest).expect("write workspace manifest");
    if !dir.join("Cargo.lock").exists() {
        std::fs::copy(root().join("Cargo.lock"), dir.join("Cargo.lock")).expect("copy Cargo.lock");
    }
}

/// Runs cargo in `dir` with one target directory shared by every generated-crate test, without
/// incremental caches (GitHub's crate alone left 1.8 GB of them, never read again).
pub fn cargo(dir: &Path, args: &[&str]) -> std::process::Output {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    Command::new(cargo)
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", root().join("target/generated-crates"))
        .env("CARGO_INCREMENTAL", "0")
        .env_remove("RUSTFLAGS")
        .output()
        .expect("cargo runs")
}

/// Panics with cargo's output unless it succeeded without a warning.
pub fn assert_clean(what: &str, output: &std::process::Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{what} failed:\n{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("warning"))
        .collect();
    assert!(warnings.is_empty(), "{what} warned:\n{stderr}");
}

/// The OpenAPI version a corpus document declares in its `openapi` or `swagger` field.
pub fn declared_version(spec: &Path) -> Option<String> {
    let text = std::fs::read_to_string(spec).ok()?;
    let value: serde_json::Value = if spec.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).ok()?
    } else {
        yaml_serde::from_str(&text).ok()?
    };
    let field = value.get("openapi").or_else(|| value.get("swagger"))?;
    Some(
        field
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| field.to_string()),
    )
}

/// A child process killed when dropped: when its test ends, and when it fails.
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port free on 127.0.0.1 a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
