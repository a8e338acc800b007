//! Generated crates compile: every fixture with clippy and rustfmt clean, and every OpenAPI 3.0
//! document of the shared corpus with `cargo clippy -D warnings` (which includes `cargo check`).
//!
//! All crates of a test share one workspace and one target directory, so dependencies are built
//! once.

mod support;

use std::path::PathBuf;

#[test]
fn every_fixture_generates_a_crate_that_is_clippy_and_rustfmt_clean() {
    let dir = support::root().join("target/test-crates/fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    let members: Vec<String> = support::fixtures()
        .iter()
        .map(|spec| support::generate_into(spec, &dir.join(support::crate_name(spec))).unwrap())
        .collect();
    assert!(members.len() >= 3, "fixtures found: {members:?}");
    support::make_workspace(&dir, &members);
    support::assert_clean(
        "cargo clippy on the fixture crates",
        &support::cargo(
            &dir,
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--quiet",
                "--",
                "-D",
                "warnings",
            ],
        ),
    );
    support::assert_clean(
        "cargo fmt --check on the fixture crates",
        &support::cargo(&dir, &["fmt", "--all", "--check"]),
    );
}

#[test]
fn every_openapi_3_0_document_of_the_corpus_generates_a_crate_that_checks_without_warnings() {
    let corpus = support::corpus().join("openapi");
    let mut specs: Vec<PathBuf> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    specs.sort();
    let dir = support::root().join("target/test-crates/corpus");
    std::fs::create_dir_all(&dir).unwrap();
    let mut members = Vec::new();
    for spec in &specs {
        let version = support::declared_version(spec).unwrap_or_default();
        if !version.starts_with("3.0") {
            continue;
        }
        let name = support::generate_into(spec, &dir.join(support::crate_name(spec)))
            .unwrap_or_else(|err| panic!("{} does not generate: {err}", spec.display()));
        members.push(name);
    }
    assert!(
        members.len() >= 10,
        "OpenAPI 3.0 documents found: {members:?}"
    );
    support::make_workspace(&dir, &members);
    support::assert_clean(
        "cargo clippy on the corpus crates",
        &support::cargo(
            &dir,
            &["clippy", "--workspace", "--quiet", "--", "-D", "warnings"],
        ),
    );
}

#[test]
fn documents_of_other_versions_get_a_clear_error_not_a_panic() {
    let corpus = support::corpus().join("openapi");
    for entry in std::fs::read_dir(&corpus).unwrap() {
        let spec = entry.unwrap().path();
        let version = support::declared_version(&spec).unwrap_or_default();
        if version.starts_with("3.0") {
            continue;
        }
        let options = support::options("other", &support::root().join("target/unused"));
        let Err(err) = codegen::generate(&spec, &options) else {
            panic!(
                "{} generated, but only OpenAPI 3.0 is read so far",
                spec.display()
            );
        };
        let message = err.to_string();
        assert!(err.is_input_error(), "{message}");
        assert!(
            message.contains("is not read yet") && message.contains(&version),
            "{message}"
        );
    }
}
