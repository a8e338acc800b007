//! The crates under `generated-example/` are what `codegen gen` writes today from their fixtures,
//! and `codegen check` notices when they are not.

mod support;

use codegen::emit::{Drift, Options, RuntimeDependency};

fn petstore() -> codegen::Generated {
    let options = Options {
        crate_name: "petstore".into(),
        runtime: RuntimeDependency::Path("../../runtime".into()),
        includes: Vec::new(),
        strict: false,
        allowed_ref_dirs: Vec::new(),
        selection: Default::default(),
    };
    codegen::generate(&support::root().join("fixtures/petstore.yaml"), &options).unwrap()
}

#[test]
fn the_committed_examples_are_fresh() {
    let mut examples: Vec<_> = std::fs::read_dir(support::root().join("generated-example"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    examples.sort();
    assert!(examples.len() >= 8, "examples: {examples:?}");
    for dir in &examples {
        let recipe = codegen::Recipe::read(dir)
            .unwrap()
            .unwrap_or_else(|| panic!("{} records how it was generated", dir.display()));
        assert_eq!(
            recipe.runtime,
            RuntimeDependency::Path("../../runtime".into())
        );
        let spec = recipe.spec_path(dir);
        let options = recipe.options(dir);
        let mut generated = codegen::generate(&spec, &options).unwrap();
        generated.record(&codegen::Recipe::new(&spec, dir, &options).unwrap());
        let drift = codegen::check(&generated, dir).unwrap();
        assert!(
            drift.is_empty(),
            "{} is stale: {drift:?}\nregenerate it with:\n  cargo run -- gen -o {}",
            dir.display(),
            dir.display()
        );
    }
}

#[test]
fn check_names_the_changed_line_and_the_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let generated = petstore();
    codegen::write(&generated, dir.path()).unwrap();
    assert!(codegen::check(&generated, dir.path()).unwrap().is_empty());

    let types = dir.path().join("src/types.rs");
    let text = std::fs::read_to_string(&types).unwrap();
    let edited = text.replacen("pub name: String", "pub name: Option<String>", 1);
    let line = text
        .lines()
        .position(|l| l.contains("pub name: String"))
        .unwrap()
        + 1;
    std::fs::write(&types, edited).unwrap();
    std::fs::remove_file(dir.path().join("src/client.rs")).unwrap();

    let drift = codegen::check(&generated, dir.path()).unwrap();
    assert_eq!(
        drift,
        [
            Drift::Differs { path: types, line },
            Drift::Missing(dir.path().join("src/client.rs"))
        ]
    );
}

#[test]
fn generation_is_deterministic() {
    let first = petstore();
    for _ in 0..3 {
        assert_eq!(petstore(), first);
    }
    for spec in support::fixtures() {
        let options = support::options("det", &support::root().join("target/unused"));
        let a = codegen::generate(&spec, &options).unwrap();
        let b = codegen::generate(&spec, &options).unwrap();
        assert_eq!(a, b, "{}", spec.display());
    }
}
