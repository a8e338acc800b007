//! The first run as a new user meets it: `codegen gen SPEC` with no other flag, the options
//! recorded in the crate, and `codegen check` and `codegen gen` reading them back.

mod support;

use std::path::Path;
use std::process::{Command, Output};

/// Runs codegen in `cwd`.
fn codegen_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_codegen"))
        .current_dir(cwd)
        .args(args)
        .output()
        .expect("codegen runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn petstore() -> String {
    support::root()
        .join("fixtures/petstore.yaml")
        .to_str()
        .unwrap()
        .to_owned()
}

#[test]
fn gen_without_an_output_folder_names_it_after_the_spec_and_says_how_to_build_it() {
    let dir = tempfile::tempdir().unwrap();
    let output = codegen_in(dir.path(), &["gen", &petstore()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(message.contains("to petstore\n"), "{message}");
    assert!(message.contains("cd petstore && cargo build"), "{message}");
    assert!(message.contains("codegen check petstore"), "{message}");
    let manifest = std::fs::read_to_string(dir.path().join("petstore/Cargo.toml")).unwrap();
    assert!(manifest.contains("name = \"petstore\""), "{manifest}");

    // A codegen built from this checkout depends on this checkout's runtime, so the crate
    // builds before codegen-runtime is published.
    let runtime = codegen::emit::RuntimeDependency::path_from(
        &dir.path().join("petstore"),
        &support::root().join("runtime"),
    )
    .unwrap();
    let codegen::emit::RuntimeDependency::Path(runtime) = runtime else {
        unreachable!()
    };
    assert!(
        manifest.contains(&format!("codegen-runtime = {{ path = \"{runtime}\" }}")),
        "{manifest}"
    );
    assert!(
        manifest.contains(&format!(
            "[package.metadata.codegen]\nspec = \"{}\"\nruntime-path = \"{runtime}\"\n",
            codegen::emit::relative_path(&dir.path().join("petstore"), Path::new(&petstore()))
                .unwrap()
        )),
        "{manifest}"
    );
}

#[test]
fn a_spec_named_openapi_gives_a_crate_named_after_its_title() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(petstore()).unwrap();
    let title = "title: Petstore";
    assert!(text.contains(title), "the fixture's title changed");
    std::fs::write(
        dir.path().join("openapi.yaml"),
        text.replace(title, "title: Acme Pets API"),
    )
    .unwrap();
    let output = codegen_in(dir.path(), &["gen", "openapi.yaml"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let manifest = std::fs::read_to_string(dir.path().join("acme-pets-api/Cargo.toml")).unwrap();
    assert!(manifest.contains("name = \"acme-pets-api\""), "{manifest}");
    assert!(
        manifest.contains("spec = \"../openapi.yaml\""),
        "{manifest}"
    );
}

#[test]
fn check_and_gen_read_the_recorded_options_back() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = support::root().join("runtime");
    let spec = dir.path().join("specs/petstore.yaml");
    std::fs::create_dir_all(spec.parent().unwrap()).unwrap();
    std::fs::copy(petstore(), &spec).unwrap();
    let generated = codegen_in(
        dir.path(),
        &[
            "gen",
            "specs/petstore.yaml",
            "-o",
            "crates/pets",
            "--name",
            "acme-pets",
            "--runtime-path",
            runtime.to_str().unwrap(),
        ],
    );
    assert_eq!(generated.status.code(), Some(0), "{}", stderr(&generated));
    let crate_dir = dir.path().join("crates/pets");

    // `check DIR` needs no flags: it reads them from the crate, from anywhere.
    for (cwd, arg) in [(dir.path(), "crates/pets"), (&crate_dir, ".")] {
        let fresh = codegen_in(cwd, &["check", arg]);
        assert_eq!(fresh.status.code(), Some(0), "{}", stderr(&fresh));
        assert!(
            stderr(&fresh).contains("is up to date with"),
            "{}",
            stderr(&fresh)
        );
    }
    // So does the old form with the spec named.
    let fresh = codegen_in(dir.path(), &["check", "specs/petstore.yaml", "crates/pets"]);
    assert_eq!(fresh.status.code(), Some(0), "{}", stderr(&fresh));

    // A stale crate is named with the command that regenerates it exactly.
    std::fs::write(crate_dir.join("src/lib.rs"), "// edited by hand\n").unwrap();
    let stale = codegen_in(dir.path(), &["check", "crates/pets"]);
    assert_eq!(stale.status.code(), Some(1));
    let message = stderr(&stale);
    assert!(message.contains("src/lib.rs:1: differs"), "{message}");
    assert!(
        message.contains(
            "1 of 7 generated files of crates/pets are stale: run `codegen gen -o crates/pets`"
        ),
        "{message}"
    );
    let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap();
    let regenerated = codegen_in(dir.path(), &["gen", "-o", "crates/pets"]);
    assert_eq!(
        regenerated.status.code(),
        Some(0),
        "{}",
        stderr(&regenerated)
    );
    assert_eq!(
        std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap(),
        manifest,
        "the name, the runtime path and the spec are kept"
    );
    let fresh = codegen_in(dir.path(), &["check", "crates/pets"]);
    assert_eq!(fresh.status.code(), Some(0), "{}", stderr(&fresh));

    // `gen` with no flags inside the folder does the same, leaving right files untouched.
    let lib = crate_dir.join("src/lib.rs");
    let before = std::fs::metadata(&lib).unwrap().modified().unwrap();
    let again = codegen_in(&crate_dir, &["gen"]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert_eq!(std::fs::metadata(&lib).unwrap().modified().unwrap(), before);

    // A record broken by hand is an error, in either form of `check`, not ignored.
    let manifest_path = crate_dir.join("Cargo.toml");
    std::fs::write(
        &manifest_path,
        manifest.replace("runtime-path = ", "runtime-pth = "),
    )
    .unwrap();
    for args in [
        &["check", "crates/pets"][..],
        &["check", "specs/petstore.yaml", "crates/pets"][..],
    ] {
        let broken = codegen_in(dir.path(), args);
        assert_eq!(
            broken.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&broken)
        );
        assert!(
            stderr(&broken).contains("crates/pets/Cargo.toml:")
                && stderr(&broken).contains("unknown field `runtime-pth`"),
            "{args:?}: {}",
            stderr(&broken)
        );
    }
    std::fs::write(&manifest_path, &manifest).unwrap();

    // A flag given to `check` replaces the recorded option.
    let other = codegen_in(
        dir.path(),
        &["check", "crates/pets", "--runtime-version", "9"],
    );
    assert_eq!(other.status.code(), Some(1), "{}", stderr(&other));
    assert!(stderr(&other).contains("Cargo.toml:"), "{}", stderr(&other));
}

#[test]
fn check_without_arguments_checks_every_generated_crate_of_the_workspace() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = support::root().join("runtime");
    for name in ["pets", "more-pets"] {
        let output = codegen_in(
            dir.path(),
            &[
                "gen",
                &petstore(),
                "-o",
                &format!("crates/{name}"),
                "--runtime-path",
                runtime.to_str().unwrap(),
            ],
        );
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    }
    // A hand-written member is not a generated crate and is not checked.
    let own = dir.path().join("crates/own");
    std::fs::create_dir_all(own.join("src")).unwrap();
    std::fs::write(
        own.join("Cargo.toml"),
        "[package]\nname = \"own\"\nversion = \"0.1.0\"\nedition = \"2024\"\n",
    )
    .unwrap();
    std::fs::write(own.join("src/lib.rs"), "").unwrap();
    std::fs::write(
        dir.path().join("Cargo.toml"),
        "[workspace]\nresolver = \"3\"\nmembers = [\"crates/*\"]\n",
    )
    .unwrap();

    let fresh = codegen_in(dir.path(), &["check"]);
    assert_eq!(fresh.status.code(), Some(0), "{}", stderr(&fresh));
    let message = stderr(&fresh);
    assert!(
        message.contains("crates/more-pets is up to date"),
        "{message}"
    );
    assert!(message.contains("crates/pets is up to date"), "{message}");
    assert!(
        message.contains("2 of 2 generated crates are up to date"),
        "{message}"
    );

    std::fs::remove_file(dir.path().join("crates/pets/src/client.rs")).unwrap();
    let stale = codegen_in(&own, &["check"]);
    assert_eq!(stale.status.code(), Some(1), "{}", stderr(&stale));
    let message = stderr(&stale);
    assert!(message.contains("src/client.rs: missing"), "{message}");
    assert!(
        message.contains("1 of 2 generated crates are up to date"),
        "{message}"
    );
}

#[test]
fn the_repository_s_generated_crates_are_all_checked_by_one_command() {
    let output = codegen_in(&support::root(), &["check"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let message = stderr(&output);
    let examples = std::fs::read_dir(support::root().join("generated-example"))
        .unwrap()
        .count();
    assert!(
        message.contains(&format!(
            "{examples} of {examples} generated crates are up to date"
        )),
        "{message}"
    );
}

#[test]
fn gen_leaves_a_crate_it_did_not_write_alone() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = "[package]\nname = \"mine\"\nversion = \"0.1.0\"\n";
    std::fs::write(dir.path().join("Cargo.toml"), manifest).unwrap();
    let output = codegen_in(dir.path(), &["gen", &petstore(), "-o", "."]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("Cargo.toml was not written by codegen: it is left alone"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("Cargo.toml")).unwrap(),
        manifest
    );
    assert!(!dir.path().join("src").exists());
}

#[test]
fn gen_without_a_spec_outside_a_generated_crate_says_what_to_pass() {
    let dir = tempfile::tempdir().unwrap();
    let output = codegen_in(dir.path(), &["gen"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("name the API description (`codegen gen SPEC`)"),
        "{}",
        stderr(&output)
    );
    let output = codegen_in(dir.path(), &["check"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("not in a Cargo workspace"),
        "{}",
        stderr(&output)
    );
}
