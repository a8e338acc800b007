//! Generated crates compile: every fixture with clippy and rustfmt clean, every document of the
//! shared corpus (Swagger 2.0, OpenAPI 3.0 and 3.1) with `cargo clippy -D warnings` (which
//! includes `cargo check`), and every protobuf service file of the corpus and the fixtures.
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
    // Crates of a few operations, which leave most of their API's constructs unused: what
    // they keep must still be warning-free.
    let mut members = members;
    for (fixture, operation) in [("petstore", "uploadPhoto"), ("swagger2", "getItem")] {
        let name = format!("{fixture}-{}", operation.to_lowercase());
        let crate_dir = dir.join(&name);
        let mut options = support::options(&name, &crate_dir);
        options.selection.operations = vec![operation.to_owned()];
        let spec = support::root().join(format!("fixtures/{fixture}.yaml"));
        let generated = codegen::generate(&spec, &options).unwrap();
        codegen::write(&generated, &crate_dir).unwrap();
        members.push(name);
    }
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
fn every_openapi_document_of_the_corpus_generates_a_crate_that_checks_without_warnings() {
    let corpus = support::corpus().join("openapi");
    let mut specs: Vec<PathBuf> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    specs.sort();
    let dir = support::root().join("target/test-crates/corpus");
    std::fs::create_dir_all(&dir).unwrap();
    let mut members = Vec::new();
    let mut versions = std::collections::BTreeSet::new();
    for spec in &specs {
        versions.insert(
            support::declared_version(spec)
                .unwrap_or_default()
                .chars()
                .take(3)
                .collect::<String>(),
        );
        let name = support::generate_into(spec, &dir.join(support::crate_name(spec)))
            .unwrap_or_else(|err| panic!("{} does not generate: {err}", spec.display()));
        members.push(name);
    }
    assert!(members.len() >= 20, "documents found: {members:?}");
    assert_eq!(
        versions.into_iter().collect::<Vec<_>>(),
        ["2.0", "3.0", "3.1"],
        "the corpus covers every version"
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

/// The `.proto` files under `dir` that define a service.
fn service_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut services = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "proto")
                && std::fs::read_to_string(&path)
                    .unwrap()
                    .lines()
                    .any(|l| l.trim_start().starts_with("service "))
            {
                services.push(path);
            }
        }
    }
    services.sort();
    services
}

#[test]
fn every_protobuf_service_generates_a_crate_that_is_clippy_and_rustfmt_clean() {
    let corpus = support::corpus().join("proto");
    let fixtures = support::root().join("fixtures/proto");
    let corpus_services = service_files(&corpus);
    assert!(
        corpus_services.len() >= 4,
        "corpus service files found: {corpus_services:?}"
    );
    let all = corpus_services
        .into_iter()
        .map(|s| (s, corpus.clone()))
        .chain(
            service_files(&fixtures)
                .into_iter()
                .map(|s| (s, fixtures.clone())),
        );
    let dir = support::root().join("target/test-crates/proto");
    std::fs::create_dir_all(&dir).unwrap();
    let mut members = Vec::new();
    for (spec, include) in all {
        let out = dir.join(support::crate_name(&spec));
        let mut options = support::options(&support::crate_name(&spec), &out);
        options.includes = vec![include];
        let generated = codegen::generate(&spec, &options)
            .unwrap_or_else(|err| panic!("{} does not generate: {err}", spec.display()));
        codegen::write(&generated, &out).unwrap();
        members.push(options.crate_name);
    }
    support::make_workspace(&dir, &members);
    support::assert_clean(
        "cargo clippy on the protobuf crates",
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
        "cargo fmt --check on the protobuf crates",
        &support::cargo(&dir, &["fmt", "--all", "--check"]),
    );
}
