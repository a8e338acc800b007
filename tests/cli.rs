//! The command line as a user meets it: help, exit statuses, and errors that say where.

mod support;

use std::path::Path;
use std::process::{Command, Output};

fn codegen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_codegen"))
        .args(args)
        .output()
        .expect("codegen runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `gen` on a spec with `contents` and returns the exit status and the message.
fn gen_text(file_name: &str, contents: &str) -> (i32, String) {
    gen_text_with(file_name, contents, &[])
}

/// Runs `gen` with `flags` on a spec with `contents` and returns the exit status and the
/// message.
fn gen_text_with(file_name: &str, contents: &str, flags: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join(file_name);
    std::fs::write(&spec, contents).unwrap();
    let out = dir.path().join("out");
    let mut args = vec!["gen", spec.to_str().unwrap(), "-o", out.to_str().unwrap()];
    args.extend(flags);
    let output = codegen(&args);
    assert!(!out.exists(), "nothing is written for a bad spec");
    let message = stderr(&output).replace(dir.path().to_str().unwrap(), "DIR");
    (output.status.code().unwrap(), message)
}

#[test]
fn help_explains_every_command_and_flag() {
    insta::assert_snapshot!(
        "help",
        String::from_utf8(codegen(&["--help"]).stdout).unwrap()
    );
    insta::assert_snapshot!(
        "help_gen",
        String::from_utf8(codegen(&["gen", "--help"]).stdout).unwrap()
    );
    insta::assert_snapshot!(
        "help_check",
        String::from_utf8(codegen(&["check", "--help"]).stdout).unwrap()
    );
}

#[test]
fn a_wrong_flag_is_a_usage_error() {
    let output = codegen(&["gen", "x.yaml", "--outptu", "y"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--outptu"), "{}", stderr(&output));
}

#[test]
fn broken_yaml_names_the_file_line_and_column() {
    let (code, message) = gen_text(
        "api.yaml",
        "openapi: 3.0.0\ninfo:\n  title: [unclosed\n  version: 1\n",
    );
    assert_eq!(code, 2, "{message}");
    assert!(message.starts_with("error: DIR/api.yaml:"), "{message}");
    let position = message.trim_start_matches("error: DIR/api.yaml:");
    assert!(
        position.chars().next().unwrap().is_ascii_digit(),
        "line and column expected: {message}"
    );
}

#[test]
fn broken_json_names_the_file_line_and_column() {
    let (code, message) = gen_text(
        "api.json",
        "{\n  \"openapi\": \"3.0.0\",\n  \"info\": {,\n}",
    );
    assert_eq!(code, 2);
    assert!(
        message.starts_with("error: DIR/api.json:3:12: "),
        "{message}"
    );
}

#[test]
fn a_document_that_is_not_openapi_says_so() {
    let (code, message) = gen_text("data.json", "{\"hello\": \"world\"}");
    assert_eq!(code, 2);
    assert_eq!(
        message.trim(),
        "error: DIR/data.json: not an OpenAPI document: no `openapi` or `swagger` field at the top level"
    );
    let (code, message) = gen_text("list.yaml", "- a\n- b\n");
    assert_eq!(code, 2);
    assert!(message.contains("not an OpenAPI document"), "{message}");
    let (code, message) = gen_text("binary.yaml", "\u{0}\u{ff}");
    assert_eq!(code, 2, "{message}");
}

#[test]
fn a_wrong_shape_names_the_json_pointer() {
    let spec = "openapi: 3.0.0\ninfo:\n  title: t\n  version: '1'\npaths:\n  /pets:\n    get:\n      parameters: 7\n      responses: {}\n";
    let (code, message) = gen_text_with("api.yaml", spec, &["--strict"]);
    assert_eq!(code, 2);
    assert_eq!(
        message.trim(),
        "error: DIR/api.yaml: /paths/~1pets/get/parameters: invalid type: integer `7`, expected a sequence"
    );
    let spec = "openapi: 3.0.0\ninfo: {title: t, version: '1'}\npaths:\n  /x:\n    get:\n      responses:\n        '200':\n          description: ok\n          content: 3\n";
    let (code, message) = gen_text_with("api.yaml", spec, &["--strict"]);
    assert_eq!(code, 2);
    assert!(
        message.contains("DIR/api.yaml: /paths/~1x/get/responses/200/content: invalid type"),
        "{message}"
    );
    let spec =
        "{\"openapi\": \"3.0.0\", \"info\": {\"title\": 5, \"version\": \"1\"}, \"paths\": {}}";
    let (code, message) = gen_text("api.json", spec);
    assert_eq!(code, 2);
    assert!(
        message
            .contains("DIR/api.json: /info/title (line 1, column 40): invalid type: integer `5`"),
        "{message}"
    );
}

#[test]
fn an_unresolved_reference_names_where_it_was_written() {
    let spec = "openapi: 3.0.0\ninfo: {title: t, version: '1'}\npaths: {}\ncomponents:\n  schemas:\n    Pet:\n      type: object\n      properties:\n        owner:\n          $ref: '#/components/schemas/Owner'\n";
    let (code, message) = gen_text_with("api.yaml", spec, &["--strict"]);
    assert_eq!(code, 2);
    assert_eq!(
        message.trim(),
        "error: DIR/api.yaml: #/components/schemas/Pet/properties/owner/$ref: `#/components/schemas/Owner` does not resolve to anything in this document"
    );
}

/// Runs `gen --strict` on `api.yaml` among `files` and returns the exit status and the message.
fn gen_files(files: &[(&str, &str)]) -> (i32, String) {
    gen_files_with(files, &["--strict"])
}

/// Runs `gen` with `flags` on `api.yaml` among `files` and returns the exit status and the
/// message.
fn gen_files_with(files: &[(&str, &str)], flags: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    for (name, contents) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }
    let out = dir.path().join("out");
    let spec = dir.path().join("api.yaml");
    let mut args = vec!["gen", spec.to_str().unwrap(), "-o", out.to_str().unwrap()];
    args.extend(flags);
    let output = codegen(&args);
    let message = stderr(&output).replace(dir.path().to_str().unwrap(), "DIR");
    (output.status.code().unwrap(), message)
}

const ROOT_WITH_REF: &str = "openapi: 3.0.0\ninfo: {title: t, version: '1'}\npaths: {}\ncomponents:\n  schemas:\n    Pet:\n      type: object\n      properties:\n        owner:\n          $ref: 'REF'\n";

#[test]
fn references_to_other_files_that_resolve_to_nothing_name_where_they_are_written() {
    let root = |reference: &str| ROOT_WITH_REF.replace("REF", reference);
    let (code, message) = gen_files(&[("api.yaml", &root("parts/missing.yaml#/Owner"))]);
    assert_eq!(code, 2);
    assert!(
        message.starts_with("error: DIR/api.yaml: #/components/schemas/Pet/properties/owner/$ref: `parts/missing.yaml#/Owner` refers to DIR/parts/missing.yaml, which cannot be read"),
        "{message}"
    );

    let part = "Owner:\n  type: object\n  properties:\n    pet:\n      $ref: '#/Nope'\n";
    let (code, message) = gen_files(&[
        ("api.yaml", &root("parts/people.yaml#/Owner")),
        ("parts/people.yaml", part),
    ]);
    assert_eq!(code, 2);
    assert!(
        message.trim_end().ends_with(
            "people.yaml#/Owner/properties/pet/$ref: `#/Nope` does not resolve to anything"
        ),
        "{message}"
    );

    let (code, message) = gen_files(&[("api.yaml", &root("https://example.com/owner.yaml"))]);
    assert_eq!(code, 2);
    assert!(
        message.contains("is a remote reference, which is not fetched: download the file"),
        "{message}"
    );

    // Without --strict, the schema that holds the reference is any value, and a warning says so.
    let (code, message) = gen_files_with(&[("api.yaml", &root("parts/missing.yaml#/Owner"))], &[]);
    assert_eq!(code, 0, "{message}");
    assert!(
        message.starts_with("warning: DIR/api.yaml: read schema #/components/schemas/Pet as any JSON value: #/components/schemas/Pet/properties/owner/$ref: `parts/missing.yaml#/Owner` refers to DIR/parts/missing.yaml, which cannot be read"),
        "{message}"
    );
    assert!(
        message.contains(", skipping 1 part of the description"),
        "{message}"
    );
}

#[test]
fn schemas_in_other_files_become_named_types_even_when_they_refer_back() {
    let root = ROOT_WITH_REF.replace("REF", "people.yaml#/Owner");
    let people = "Owner:\n  type: object\n  properties:\n    pets:\n      type: array\n      items:\n        $ref: 'api.yaml#/components/schemas/Pet'\n    best:\n      $ref: '#/Owner'\n";
    let (code, message) = gen_files(&[("api.yaml", &root), ("people.yaml", people)]);
    assert_eq!(code, 0, "{message}");
}

#[test]
fn a_cycle_of_references_that_never_reaches_a_schema_is_an_error() {
    let root = "openapi: 3.0.0\ninfo: {title: t, version: '1'}\npaths:\n  /a:\n    $ref: 'paths.yaml#/a'\n";
    let paths = "a:\n  $ref: '#/b'\nb:\n  $ref: '#/a'\n";
    let (code, message) = gen_files(&[("api.yaml", root), ("paths.yaml", paths)]);
    assert_eq!(code, 2);
    assert!(
        message.contains("part of a cycle of references"),
        "{message}"
    );
    let (code, message) = gen_files_with(&[("api.yaml", root), ("paths.yaml", paths)], &[]);
    assert_eq!(code, 0, "{message}");
    assert!(
        message.starts_with("warning: DIR/api.yaml: skipped every operation of /a (#/paths/~1a): "),
        "{message}"
    );
}

#[test]
fn what_is_skipped_is_said() {
    let out = tempfile::tempdir().unwrap();
    let spec = support::root().join("fixtures/openapi31.yaml");
    let output = codegen(&[
        "gen",
        spec.to_str().unwrap(),
        "-o",
        out.path().join("events").to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(
            "openapi31.yaml: skipped 1 webhook (eventCreated): webhooks are requests the API sends, so they get no task"
        ),
        "{}",
        stderr(&output)
    );
}

/// A document with one good operation and three parts that cannot be read: an operation of
/// the wrong shape, one whose response resolves to nothing, and a schema whose property does.
const PARTLY_BROKEN: &str = "openapi: 3.0.0
info: {title: t, version: '1'}
paths:
  /pets:
    get:
      operationId: listPets
      responses:
        '200':
          description: ok
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Pet'}
    post:
      parameters: 7
      responses: {}
  /owners:
    get:
      responses:
        '200': {$ref: '#/components/responses/Gone'}
components:
  schemas:
    Pet:
      type: object
      properties:
        owner: {$ref: '#/components/schemas/Owner'}
";

#[test]
fn parts_that_cannot_be_read_are_skipped_with_a_warning_unless_strict() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("api.yaml");
    std::fs::write(&spec, PARTLY_BROKEN).unwrap();
    let spec = spec.to_str().unwrap();
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    let clean = |output: &Output| stderr(output).replace(dir.path().to_str().unwrap(), "DIR");

    let output = codegen(&["gen", spec, "-o", out]);
    let message = clean(&output);
    assert_eq!(output.status.code(), Some(0), "{message}");
    let lines: Vec<&str> = message.lines().collect();
    assert_eq!(
        lines[..3],
        [
            "warning: DIR/api.yaml: skipped operation POST /pets (#/paths/~1pets/post): #/paths/~1pets/post/parameters: invalid type: integer `7`, expected a sequence",
            "warning: DIR/api.yaml: read schema #/components/schemas/Pet as any JSON value: #/components/schemas/Pet/properties/owner/$ref: `#/components/schemas/Owner` does not resolve to anything in this document",
            "warning: DIR/api.yaml: skipped operation GET /owners (#/paths/~1owners/get): #/paths/~1owners/get/responses/200/$ref: `#/components/responses/Gone` does not resolve to anything in this document",
        ],
        "{message}"
    );
    assert!(
        lines[3].starts_with("wrote crate `out` (7 files) from DIR/api.yaml to DIR/out, skipping 3 parts of the description that cannot be read"),
        "{message}"
    );
    let operations = std::fs::read_to_string(dir.path().join("out/src/operations.rs")).unwrap();
    assert!(operations.contains("pub struct ListPets"), "{operations}");
    let fresh = codegen(&["check", spec, out]);
    assert_eq!(fresh.status.code(), Some(0), "{}", clean(&fresh));
    assert!(clean(&fresh).contains("warning: DIR/api.yaml: skipped operation POST /pets"));

    for command in ["gen", "check"] {
        let output = match command {
            "gen" => codegen(&["gen", spec, "-o", out, "--strict"]),
            _ => codegen(&["check", spec, out, "--strict"]),
        };
        assert_eq!(
            output.status.code(),
            Some(2),
            "{command}: {}",
            clean(&output)
        );
        assert_eq!(
            clean(&output).trim(),
            "error: DIR/api.yaml: /paths/~1pets/post/parameters: invalid type: integer `7`, expected a sequence",
            "{command}"
        );
    }
}

#[test]
fn huge_numbers_and_components_of_another_kind_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let spec = support::root().join("fixtures/unusual.yaml");
    let out = dir.path().join("unusual");
    let output = codegen(&[
        "gen",
        spec.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--strict",
    ]);
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{message}");
    assert!(!message.contains("warning"), "{message}");
    assert!(
        message.contains("unusual.yaml: ignored 2 schema keywords whose value is not what OpenAPI allows there: #/components/schemas/Prompt/properties/text/minLength (-1)"),
        "{message}"
    );
    assert!(
        message.contains("#/paths/~1completions/post/responses/200 (the request body `#/components/requestBodies/Completion` as a response)"),
        "{message}"
    );
}

#[test]
fn a_reference_to_a_component_of_another_kind_that_does_not_fit_says_what_it_is() {
    let spec = "openapi: 3.0.0\ninfo: {title: t, version: '1'}\npaths:\n  /a:\n    get:\n      responses:\n        '200': {$ref: '#/components/schemas/Pet'}\ncomponents:\n  schemas:\n    Pet: {type: object}\n    Owner: {$ref: '#/components/responses/Found'}\n  responses:\n    Found: {description: found}\n";
    let (code, message) = gen_text_with("api.yaml", spec, &["--strict"]);
    assert_eq!(code, 2);
    assert_eq!(
        message.trim(),
        "error: DIR/api.yaml: #/components/schemas/Owner/$ref: `#/components/responses/Found` is a response, where a schema is expected: the shapes differ"
    );
    let spec = spec.replace("    Owner: {$ref: '#/components/responses/Found'}\n", "");
    let (code, message) = gen_text_with("api.yaml", &spec, &["--strict"]);
    assert_eq!(code, 2);
    assert_eq!(
        message.trim(),
        "error: DIR/api.yaml: #/paths/~1a/get/responses/200/$ref: `#/components/schemas/Pet` is a schema, where a response is expected: the shapes differ"
    );
}

#[test]
fn a_malformed_proto_file_names_the_file_line_and_column() {
    let (code, message) = gen_text(
        "service.proto",
        "syntax = \"proto3\";\npackage p;\n\nmessage A {\n  string name = 1\n}\n",
    );
    assert_eq!(code, 2, "{message}");
    assert!(
        message.starts_with("error: DIR/service.proto:6:1: expected ';'"),
        "{message}"
    );
    let (code, message) = gen_text(
        "service.proto",
        "syntax = \"proto3\";\nimport \"missing/thing.proto\";\n",
    );
    assert_eq!(code, 2, "{message}");
    assert!(
        message.contains("service.proto:2:1: import 'missing/thing.proto' not found in DIR: pass the folder that holds it with -I DIR"),
        "{message}"
    );
}

#[test]
fn a_missing_file_is_an_input_error() {
    let output = codegen(&["gen", "/nonexistent/api.yaml", "-o", "/tmp/never-written"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("/nonexistent/api.yaml: cannot read the file"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn check_passes_when_fresh_and_names_stale_files_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let crate_dir = dir.path().join("petstore");
    let spec = support::root().join("fixtures/petstore.yaml");
    let spec = spec.to_str().unwrap();
    let out = crate_dir.to_str().unwrap();
    assert!(codegen(&["gen", spec, "-o", out]).status.success());
    let fresh = codegen(&["check", spec, out]);
    assert_eq!(fresh.status.code(), Some(0), "{}", stderr(&fresh));

    std::fs::write(crate_dir.join("src/lib.rs"), "// edited by hand\n").unwrap();
    let stale = codegen(&["check", spec, out]);
    assert_eq!(stale.status.code(), Some(1));
    let message = stderr(&stale);
    assert!(message.contains("src/lib.rs:1: differs"), "{message}");
    assert!(message.contains("1 of 7 generated files of "), "{message}");
    assert!(!message.contains("types.rs"), "{message}");
}

#[test]
fn the_crate_is_named_after_its_folder_unless_named() {
    let dir = tempfile::tempdir().unwrap();
    let spec = support::root().join("fixtures/petstore.yaml");
    let out = dir.path().join("My Pets");
    assert!(
        codegen(&["gen", spec.to_str().unwrap(), "-o", out.to_str().unwrap()])
            .status
            .success()
    );
    let manifest = std::fs::read_to_string(out.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("name = \"my-pets\""), "{manifest}");
    let versioned = codegen(&[
        "gen",
        spec.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--runtime-version",
        "=0.1.0",
    ]);
    assert!(versioned.status.success(), "{}", stderr(&versioned));
    let manifest = std::fs::read_to_string(out.join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains("codegen-runtime = \"=0.1.0\""),
        "{manifest}"
    );

    let bad = codegen(&[
        "gen",
        spec.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--name",
        "9lives",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("`9lives` is not a valid package name"),
        "{}",
        stderr(&bad)
    );
    assert!(Path::new(&out).join("src/lib.rs").exists());
}

/// Runs `codegen` with `args` after the spec and the output folder (`DIR/out`), and returns
/// the exit status and stderr with the folder shown as `DIR`.
fn gen_in(dir: &Path, spec: &str, args: &[&str]) -> (i32, String) {
    let spec = dir.join(spec);
    let out = dir.join("out");
    let mut all = vec!["gen", spec.to_str().unwrap(), "-o", out.to_str().unwrap()];
    all.extend_from_slice(args);
    let output = codegen(&all);
    let message = stderr(&output).replace(dir.to_str().unwrap(), "DIR");
    (output.status.code().unwrap(), message)
}

/// Writes `files` (relative paths, contents) under `dir`.
fn write_files(dir: &Path, files: &[(&str, &str)]) {
    for (name, contents) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }
}

/// A file outside the spec's folder whose contents must never be shown: a schema, so that a
/// reference that read it would put its description into the generated crate.
const SECRET: &str = "Secret:\n  type: object\n  description: TOP-SECRET-CONTENTS\n";

#[test]
fn references_outside_the_spec_folder_are_refused_without_showing_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_files(root, &[("secret/passwd.yaml", SECRET)]);
    let depth = root.components().count() + 2;
    let climb = "../".repeat(depth);
    let references = [
        "../secret/passwd.yaml#/Secret".to_owned(),
        format!("{climb}etc/passwd"),
        "/etc/passwd".to_owned(),
        format!("{}/secret/passwd.yaml#/Secret", root.display()),
        "../secret/missing.yaml#/Secret".to_owned(),
    ];
    for reference in &references {
        let spec = ROOT_WITH_REF.replace("REF", reference);
        write_files(root, &[("api/api.yaml", &spec)]);
        let (code, message) = gen_in(root, "api/api.yaml", &[]);
        assert_eq!(code, 2, "{reference}: {message}");
        let shown = reference.replace(root.to_str().unwrap(), "DIR");
        assert!(
            message.starts_with(&format!(
                "error: DIR/api/api.yaml: #/components/schemas/Pet/properties/owner/$ref: `{shown}` refers to "
            )),
            "{reference}: {message}"
        );
        assert!(
            message.contains("outside the folders references may read (DIR/api)")
                && message.contains("pass --allow-ref-dir DIR"),
            "{reference}: {message}"
        );
        assert!(
            !message.contains("TOP-SECRET") && !message.contains("root:"),
            "{message}"
        );
        assert!(!root.join("out").exists(), "nothing is written");
    }
}

#[test]
fn a_symlink_cannot_lead_a_reference_out_of_the_spec_folder() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let spec = ROOT_WITH_REF.replace("REF", "parts/owner.yaml#/Secret");
    write_files(
        root,
        &[("secret/owner.yaml", SECRET), ("api/api.yaml", &spec)],
    );
    std::fs::create_dir_all(root.join("api/parts")).unwrap();
    std::os::unix::fs::symlink(
        root.join("secret/owner.yaml"),
        root.join("api/parts/owner.yaml"),
    )
    .unwrap();
    let (code, message) = gen_in(root, "api/api.yaml", &[]);
    assert_eq!(code, 2, "{message}");
    assert!(
        message.contains("`parts/owner.yaml#/Secret` refers to DIR/api/parts/owner.yaml (which is DIR/secret/owner.yaml), outside the folders references may read"),
        "{message}"
    );
    assert!(message.contains("--allow-ref-dir"), "{message}");
    assert!(!message.contains("TOP-SECRET"), "{message}");

    // A symlinked folder is the same.
    std::fs::remove_file(root.join("api/parts/owner.yaml")).unwrap();
    std::fs::remove_dir(root.join("api/parts")).unwrap();
    std::os::unix::fs::symlink(root.join("secret"), root.join("api/parts")).unwrap();
    let (code, message) = gen_in(root, "api/api.yaml", &[]);
    assert_eq!(code, 2, "{message}");
    assert!(message.contains("outside the folders"), "{message}");
}

#[test]
fn allow_ref_dir_lets_references_read_a_sibling_folder() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let spec = ROOT_WITH_REF.replace("REF", "../shared/owner.yaml#/Owner");
    let owner = "Owner:\n  type: object\n  description: An owner from the shared folder.\n  properties:\n    name: {type: string}\n";
    write_files(
        root,
        &[("shared/owner.yaml", owner), ("api/api.yaml", &spec)],
    );
    let (code, message) = gen_in(root, "api/api.yaml", &[]);
    assert_eq!(code, 2, "{message}");
    assert!(message.contains("pass --allow-ref-dir"), "{message}");

    let shared = root.join("shared");
    let (code, message) = gen_in(
        root,
        "api/api.yaml",
        &["--allow-ref-dir", shared.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{message}");
    let types = std::fs::read_to_string(root.join("out/src/types.rs")).unwrap();
    assert!(
        types.contains("An owner from the shared folder.") && types.contains("pub struct Owner"),
        "{types}"
    );

    // The flag widens by the folder named, not by what is beside it.
    std::fs::remove_dir_all(root.join("out")).unwrap();
    let (code, message) = gen_in(
        root,
        "api/api.yaml",
        &["--allow-ref-dir", root.join("secret").to_str().unwrap()],
    );
    assert_eq!(code, 2, "{message}");
    assert!(
        message.contains("DIR/secret: --allow-ref-dir names no folder"),
        "{message}"
    );
}

#[test]
fn proto_imports_stay_in_the_include_folders() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let service =
        "syntax = \"proto3\";\npackage p;\nimport \"IMPORT\";\nmessage A { string name = 1; }\n";
    write_files(
        root,
        &[
            ("secret/other.proto", "TOP-SECRET-CONTENTS\n"),
            (
                "api/service.proto",
                &service.replace("IMPORT", "../secret/other.proto"),
            ),
        ],
    );
    // protox refuses `..` and absolute imports itself.
    let (code, message) = gen_in(root, "api/service.proto", &[]);
    assert_eq!(code, 2, "{message}");
    assert!(message.contains("service.proto:3:"), "{message}");
    assert!(!message.contains("TOP-SECRET"), "{message}");

    // A symlink in the include folder is resolved, and refused when it leads out.
    write_files(
        root,
        &[(
            "api/service.proto",
            &service.replace("IMPORT", "other.proto"),
        )],
    );
    std::os::unix::fs::symlink(
        root.join("secret/other.proto"),
        root.join("api/other.proto"),
    )
    .unwrap();
    let (code, message) = gen_in(root, "api/service.proto", &[]);
    assert_eq!(code, 2, "{message}");
    assert!(
        message.contains("import 'other.proto' resolves to DIR/secret/other.proto (through DIR/api/other.proto), outside the include folders: pass -I or --allow-ref-dir"),
        "{message}"
    );
    assert!(!message.contains("TOP-SECRET"), "{message}");
}

#[test]
fn errors_quote_only_an_excerpt_of_a_huge_value() {
    let huge = "A".repeat(200_000);
    let spec = format!(
        "{{\"openapi\": \"3.0.0\", \"info\": {{\"title\": \"{huge}\", \"version\": \"1\"}}, \"paths\": {{\"/x\": {{\"get\": {{\"parameters\": \"{huge}\", \"responses\": {{}}}}}}}}}}"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.json");
    std::fs::write(&path, &spec).unwrap();
    let out = dir.path().join("out");
    let (path, out) = (path.to_str().unwrap(), out.to_str().unwrap());
    // As an error (--strict) and as the warning of the skipped operation.
    let strict = codegen(&["gen", path, "-o", out, "--strict"]);
    assert_eq!(strict.status.code(), Some(2));
    let lenient = codegen(&["gen", path, "-o", out]);
    assert_eq!(lenient.status.code(), Some(0), "{}", stderr(&lenient));
    for output in [&strict, &lenient] {
        let message = stderr(output);
        let first = message.lines().next().unwrap_or_default();
        assert!(first.len() < 400, "{} bytes", first.len());
        assert!(
            first.contains("/paths/~1x/get/parameters") && first.contains("AAAA…"),
            "{first}"
        );
        assert!(message.len() < 2000, "{} bytes", message.len());
    }
    let reference = format!("#/components/schemas/{huge}");
    let yaml = dir.path().join("ref.yaml");
    std::fs::write(&yaml, ROOT_WITH_REF.replace("REF", &reference)).unwrap();
    let output = codegen(&["gen", yaml.to_str().unwrap(), "-o", out, "--strict"]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(message.len() < 400, "{} bytes: {message}", message.len());
}

/// Found by the fuzzer: a `$ref` at the document's root that leads to a value that is not an
/// object panicked while bundling.
#[test]
fn a_reference_at_the_document_root_is_an_error_not_a_panic() {
    let spec = "openapi: 3.1.0\ninfo: jwt\npaths: {}\ncomponents: jwt\n$ref: '#/components'\n";
    let (code, message) = gen_text("api.yaml", spec);
    assert_eq!(code, 2, "{message}");
    assert!(message.starts_with("error: DIR/api.yaml: "), "{message}");
    assert!(!message.contains("panicked"), "{message}");
}

/// A store with two tags: the pets' operations and types, and the orders'.
const TAGGED: &str = r##"
openapi: "3.0.3"
info: {title: Store, version: "1"}
paths:
  /pets/{id}:
    get:
      operationId: getPet
      tags: [pets]
      parameters:
        - {name: id, in: path, required: true, schema: {type: string}}
      responses:
        "200":
          description: a pet
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Pet"}
  /pets:
    get:
      operationId: listPets
      tags: [pets]
      responses:
        "200":
          description: pets
          content:
            application/json:
              schema: {type: array, items: {$ref: "#/components/schemas/Pet"}}
  /orders:
    post:
      operationId: placeOrder
      tags: [orders]
      security: [{key: []}]
      requestBody:
        content:
          application/json:
            schema: {$ref: "#/components/schemas/Order"}
      responses:
        "201": {description: placed}
components:
  securitySchemes:
    key: {type: apiKey, in: header, name: X-Key}
  schemas:
    Pet:
      type: object
      properties:
        name: {type: string}
        owner: {$ref: "#/components/schemas/Owner"}
    Owner:
      type: object
      properties:
        name: {type: string}
    Order:
      type: object
      properties:
        pet: {type: string}
        shipping: {$ref: "#/components/schemas/Shipping"}
    Shipping:
      type: string
      enum: [ground, air]
"##;

#[test]
fn tags_and_operation_ids_select_what_is_generated_and_the_record_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("store.yaml");
    std::fs::write(&spec, TAGGED).unwrap();
    let spec = spec.to_str().unwrap();
    let out = dir.path().join("store");
    let out_s = out.to_str().unwrap();
    let read = |file: &str| std::fs::read_to_string(out.join(file)).unwrap();

    let first = codegen(&["gen", spec, "-o", out_s, "--tag", "pets"]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(
        stderr(&first).contains("generated 2 of 3 operations"),
        "{}",
        stderr(&first)
    );
    let (operations, types) = (read("src/operations.rs"), read("src/types.rs"));
    assert!(operations.contains("pub struct GetPet"), "{operations}");
    assert!(operations.contains("pub struct ListPets"), "{operations}");
    assert!(!operations.contains("PlaceOrder"), "{operations}");
    // The types the pets reach, through other types too, and none of the orders'.
    assert!(types.contains("pub struct Pet "), "{types}");
    assert!(types.contains("pub struct Owner "), "{types}");
    assert!(
        !types.contains("Order") && !types.contains("Shipping"),
        "{types}"
    );
    // The orders' credentials are not asked for.
    assert!(!read("src/lib.rs").contains("X-Key"));
    let manifest = read("Cargo.toml");
    assert!(manifest.contains("tags = [\"pets\"]\n"), "{manifest}");

    // `check` and regeneration keep the recorded selection.
    let fresh = codegen(&["check", out_s]);
    assert_eq!(fresh.status.code(), Some(0), "{}", stderr(&fresh));
    std::fs::remove_file(out.join("src/operations.rs")).unwrap();
    let again = codegen(&["gen", "-o", out_s]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(read("src/operations.rs"), operations);

    // A new selection replaces the recorded one; globs match ids.
    let by_id = codegen(&["gen", "-o", out_s, "--operation", "place*"]);
    assert!(by_id.status.success(), "{}", stderr(&by_id));
    let (operations, types) = (read("src/operations.rs"), read("src/types.rs"));
    assert!(operations.contains("pub struct PlaceOrder"), "{operations}");
    assert!(!operations.contains("GetPet"), "{operations}");
    assert!(types.contains("pub enum Shipping"), "{types}");
    assert!(!types.contains("Owner"), "{types}");
    assert!(read("src/lib.rs").contains("X-Key"));
    assert!(read("Cargo.toml").contains("operations = [\"place*\"]\n"));
    assert!(!read("Cargo.toml").contains("tags = "));
}

#[test]
fn a_selection_that_matches_nothing_says_what_there_is() {
    let (code, message) = gen_text_with("store.yaml", TAGGED, &["--tag", "pet"]);
    assert_eq!(code, 2, "{message}");
    assert!(
        message
            .contains("--tag `pet` matches no operation; the tags of this API are: orders, pets"),
        "{message}"
    );
    let (code, message) = gen_text_with("store.yaml", TAGGED, &["--operation", "getOwner"]);
    assert_eq!(code, 2, "{message}");
    assert!(
        message.contains("--operation `getOwner` matches no operation id; ids of this API look like getPet, listPets, placeOrder (3 in all)"),
        "{message}"
    );
    let (code, message) = gen_text_with("store.yaml", TAGGED, &["--operation", "get[Pet"]);
    assert_eq!(code, 2, "{message}");
    assert!(
        message.contains("--operation `get[Pet` is not a pattern"),
        "{message}"
    );
}
