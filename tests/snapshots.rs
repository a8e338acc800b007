//! Snapshots of the code generated from each fixture: a change to the output shows up in review.
//!
//! Update them with `INSTA_UPDATE=always cargo test --test snapshots` and read the diff.

mod support;

use codegen::emit::{Options, RuntimeDependency};

#[test]
fn generated_code_matches_the_snapshots() {
    for spec in support::fixtures() {
        let name = support::crate_name(&spec);
        let options = Options {
            crate_name: name.clone(),
            runtime: RuntimeDependency::Path("../runtime".into()),
            includes: Vec::new(),
            strict: true,
            allowed_ref_dirs: Vec::new(),
            selection: Default::default(),
        };
        let generated = codegen::generate(&spec, &options).unwrap();
        for file in &generated.files {
            let snapshot = format!("{name}__{}", file.path.to_string_lossy().replace('/', "__"));
            insta::assert_snapshot!(snapshot, &file.contents);
        }
    }
}

#[test]
fn hostile_names_and_text_stay_in_comments_and_literals() {
    let mut options = support::options("gen-hostile", &support::root().join("target/unused"));
    // Every schema, used or not: the names of all of them are checked.
    options.selection.all_schemas = true;
    let generated =
        codegen::generate(&support::root().join("fixtures/hostile.yaml"), &options).unwrap();
    for file in generated
        .files
        .iter()
        .filter(|f| f.path.extension().is_some_and(|e| e == "rs"))
    {
        for (n, line) in file.contents.lines().enumerate() {
            let code = code_outside_strings_and_comments(line);
            assert!(
                !code.contains("injected()") && !code.contains("panic!"),
                "{}:{}: spec text escaped into code: {line}",
                file.path.display(),
                n + 1
            );
        }
    }
    let types = &generated
        .files
        .iter()
        .find(|f| f.path.ends_with("types.rs"))
        .unwrap()
        .contents;
    // Keywords, collisions, other scripts and prelude names all get distinct, valid names.
    for expected in [
        "pub struct Self_",
        "pub r#type: Option<String>",
        "pub self_: Option<String>",
        "pub self_2: Option<String>",
        "pub a_b: Option<String>",
        "pub a_b_2: Option<String>",
        "pub a_b_3: Option<String>",
        "pub _123: Option<bool>",
        "pub r#async: Option<String>",
        "pub crate_: Option<String>",
        "pub enum Option2",
        "pub struct Result2",
        "pub type Type123abc = i64;",
        "pub struct Vec2(pub Vec<Vec2>);",
        "V1,",
        "V1_2,",
        "V1_3,",
        "object.field(\"\\\"); fn injected() {} //\")?",
    ] {
        assert!(
            types.contains(expected),
            "types.rs lacks `{expected}`:\n{types}"
        );
    }
}

/// The part of a line of Rust that is neither a comment nor inside a string literal.
fn code_outside_strings_and_comments(line: &str) -> String {
    let mut code = String::new();
    let mut chars = line.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        } else if c == '/' && chars.peek() == Some(&'/') {
            break;
        } else {
            code.push(c);
        }
    }
    code
}

#[test]
fn deprecated_protobuf_methods_are_deprecated_operations() {
    let spec = support::root().join("fixtures/proto/modern.proto");
    let options = support::options("modern", &support::root().join("target/unused"));
    let generated = codegen::generate(&spec, &options).unwrap();
    let operations = &generated
        .files
        .iter()
        .find(|f| f.path.ends_with("operations.rs"))
        .unwrap()
        .contents;
    // The attributes and docs of an item: from the blank line before it to its name.
    let head = |name: &str| {
        let at = operations.find(&format!("pub struct {name} ")).unwrap();
        let start = operations[..at].rfind("\n\n").unwrap();
        &operations[start..at]
    };
    assert!(head("GetThing").contains("#[deprecated"), "{operations}");
    assert!(!head("MakeThing").contains("#[deprecated"), "{operations}");
}
