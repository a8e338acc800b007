//! A mutation fuzzer of the spec readers that runs on the stable toolchain.
//!
//! It takes the documents of the corpus and the fixtures, mutates them (truncations, type swaps,
//! deep nesting, huge numbers, odd unicode, reference loops, references out of the spec's
//! folder, deleted and duplicated keys, broken `.proto` syntax and imports) and runs the reader
//! and the renderer (without rustfmt) on each. An input fails when it panics, takes longer than
//! the timeout, makes the process's memory grow past a bound, shows the contents of a file
//! outside its folder (a canary), or gets an error message longer than a bound. A failing input
//! is saved with what was done to it under `target/fuzz/failures/`.
//!
//! Inputs are a function of the seed and their index alone, so `--seed S --only N` replays one.
//!
//! `tests/fuzz.rs` runs it for a bounded time in CI; `cargo bench --bench fuzz -- --seconds N
//! --seed S` runs it for as long as asked, in release mode.

#![allow(dead_code, unreachable_pub)]

use std::cell::RefCell;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Text that only the canary file outside each input's folder contains: a result that shows it
/// read a file it must not.
pub const MARKER: &str = "CANARY_7f3a9c_NOT_TO_BE_READ";

/// The longest error message accepted (the paths in it included).
const MAX_MESSAGE_BYTES: usize = 4096;

/// A small seeded generator (SplitMix64).
///
/// Written here rather than taken from proptest: the mutators need a plain stream of numbers,
/// not strategies over typed values, and each input must be a function of (seed, index) alone so
/// that one input can be replayed without running those before it; proptest's runner decides the
/// number of cases and shrinks, neither of which fits a time-bounded run over files.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for input `index` of the run seeded with `seed`.
    pub fn for_input(seed: u64, index: u64) -> Self {
        let mut rng = Rng(seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        rng.next();
        rng
    }

    /// The next number.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    /// True `percent` times in 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    /// One of `items`, which must not be empty.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// What a seed is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An OpenAPI or Swagger document (JSON when `json`).
    OpenApi {
        /// Whether the main file is JSON.
        json: bool,
    },
    /// A `.proto` file.
    Proto,
}

/// A document to mutate, with the files beside it that it may refer to.
#[derive(Debug, Clone)]
pub struct Seed {
    /// Where it comes from, for reports.
    pub name: String,
    /// How it is read.
    pub kind: Kind,
    /// The main file's path relative to the input's folder.
    pub main: String,
    /// Every file of the input, the main one included: (relative path, contents).
    pub files: Vec<(String, Vec<u8>)>,
    /// The main file parsed, for the mutations of the tree (OpenAPI only).
    pub value: Option<Value>,
}

/// The seeds: corpus documents and fixtures of at most `max_bytes` each.
pub fn seeds(root: &Path, corpus: &Path, max_bytes: u64) -> Vec<Seed> {
    let mut seeds = Vec::new();
    let small = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.len() <= max_bytes);
    let read = |p: &Path| std::fs::read(p).expect("seed files are readable");
    // The files fixtures refer to, given to every fixture seed.
    let parts: Vec<(String, Vec<u8>)> = sorted_files(&root.join("fixtures/parts"))
        .into_iter()
        .map(|p| {
            let name = format!("parts/{}", p.file_name().unwrap().to_string_lossy());
            (name, read(&p))
        })
        .collect();
    let openapi = |path: &Path, extra: &[(String, Vec<u8>)], seeds: &mut Vec<Seed>| {
        if !small(path) {
            return;
        }
        let text = read(path);
        let json = path.extension().is_some_and(|e| e == "json");
        let main = if json { "api.json" } else { "api.yaml" }.to_owned();
        let value = std::str::from_utf8(&text).ok().and_then(|t| {
            if json {
                serde_json::from_str(t).ok()
            } else {
                yaml_serde::from_str(t).ok()
            }
        });
        let mut files = vec![(main.clone(), text)];
        files.extend(extra.iter().cloned());
        seeds.push(Seed {
            name: path.display().to_string(),
            kind: Kind::OpenApi { json },
            main,
            files,
            value,
        });
    };
    for path in sorted_files(&corpus.join("openapi")) {
        openapi(&path, &[], &mut seeds);
    }
    for dir in ["fixtures", "fixtures/billing"] {
        for path in sorted_files(&root.join(dir)) {
            if path.extension().is_some_and(|e| e == "yaml" || e == "json") {
                openapi(&path, &parts, &mut seeds);
            }
        }
    }
    // Protobuf: every file, with the corpus's tree beside it for its imports.
    let proto_root = corpus.join("proto");
    let mut tree = Vec::new();
    walk_files(&proto_root, &mut tree);
    let tree: Vec<(String, Vec<u8>)> = tree
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "proto"))
        .map(|p| {
            let name = p
                .strip_prefix(&proto_root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (name, read(p))
        })
        .collect();
    let mut protos: Vec<(String, PathBuf)> = tree
        .iter()
        .map(|(name, _)| (name.clone(), proto_root.join(name)))
        .collect();
    for path in sorted_files(&root.join("fixtures/proto")) {
        if path.extension().is_some_and(|e| e == "proto") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            protos.push((name, path));
        }
    }
    for (name, path) in protos {
        if !small(&path) {
            continue;
        }
        let mut files = vec![(name.clone(), read(&path))];
        files.extend(tree.iter().filter(|(n, _)| *n != name).cloned());
        seeds.push(Seed {
            name: path.display().to_string(),
            kind: Kind::Proto,
            main: name,
            files,
            value: None,
        });
    }
    seeds
}

fn sorted_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn walk_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|e| e.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// One mutated input.
#[derive(Debug, Clone)]
pub struct Input {
    /// Its index in the run.
    pub index: u64,
    /// The seed it was made from.
    pub seed: String,
    /// How it is read.
    pub kind: Kind,
    /// The main file, relative to the input's folder.
    pub main: String,
    /// Every file: (relative path, contents).
    pub files: Vec<(String, Vec<u8>)>,
    /// What was done to the seed, in order.
    pub mutations: Vec<String>,
}

/// Makes input `index` of the run seeded with `seed`.
pub fn input(seeds: &[Seed], seed: u64, index: u64) -> Input {
    let mut rng = Rng::for_input(seed, index);
    let chosen = rng.pick(seeds);
    let mut mutations = Vec::new();
    let mut files = chosen.files.clone();
    let original_len = files[0].1.len();
    // Mutations may grow the input, within bounds: memory is checked, not exhausted by design.
    let cap = (2 * original_len).max(original_len + (1 << 20));
    let others: Vec<String> = files.iter().skip(1).map(|(n, _)| n.clone()).collect();
    let count = 1 + rng.below(4);
    let mut text = match (chosen.kind, &chosen.value) {
        (Kind::OpenApi { json }, Some(value)) if rng.chance(75) => {
            let mut value = value.clone();
            for _ in 0..count {
                mutations.push(mutate_tree(&mut value, &mut rng, &others));
            }
            let text = if json {
                if rng.chance(50) {
                    serde_json::to_string_pretty(&value)
                } else {
                    serde_json::to_string(&value)
                }
                .unwrap_or_default()
            } else {
                yaml_serde::to_string(&value).unwrap_or_default()
            };
            text.into_bytes()
        }
        _ => files[0].1.clone(),
    };
    if mutations.is_empty() || rng.chance(25) {
        for _ in 0..count {
            mutations.push(mutate_text(&mut text, chosen.kind, &mut rng, &others));
        }
    }
    if text.len() > cap {
        text.truncate(cap);
        mutations.push(format!("cut to {cap} bytes"));
    }
    // Sometimes another file of the input is mutated too.
    if files.len() > 1 && rng.chance(10) {
        let which = 1 + rng.below(files.len() - 1);
        let note = mutate_text(&mut files[which].1, chosen.kind, &mut rng, &others);
        mutations.push(format!("{}: {note}", files[which].0));
    }
    files[0].1 = text;
    Input {
        index,
        seed: chosen.name.clone(),
        kind: chosen.kind,
        main: chosen.main.clone(),
        files,
        mutations,
    }
}

/// References a mutation may write: loops, misses, odd syntax and ways out of the folder.
fn reference(rng: &mut Rng, value: &Value, others: &[String]) -> String {
    let node = {
        let mut k = rng.below(count_nodes(value));
        let mut at = String::new();
        locate(value, &mut k, &mut at);
        format!("#{at}")
    };
    let other = if others.is_empty() {
        "missing.yaml".to_owned()
    } else {
        rng.pick(others).clone()
    };
    let schema = value
        .pointer("/components/schemas")
        .or_else(|| value.pointer("/definitions"))
        .and_then(Value::as_object)
        .and_then(|m| {
            let keys: Vec<&String> = m.keys().collect();
            (!keys.is_empty()).then(|| keys[rng.below(keys.len())].clone())
        })
        .unwrap_or_else(|| "Nope".into());
    let choices = [
        node.clone(),
        node,
        format!("#/components/schemas/{schema}"),
        format!("#/definitions/{schema}"),
        format!("#/components/schemas/{schema}/properties/a"),
        "#".into(),
        "#/".into(),
        "#/nope/nope".into(),
        "#anchor".into(),
        "#/components/schemas/%7E%7".into(),
        "#/paths/~1pets/get".into(),
        other.clone(),
        format!("{other}#/"),
        format!("{other}#/Author"),
        format!("./{other}#/components"),
        "api.yaml#/components/schemas".into(),
        "api.json#/definitions".into(),
        "linked.yaml#/Secret".into(),
        "../canary/secret.yaml#/Secret".into(),
        "../canary/secret.yaml".into(),
        "../../../../../../../../etc/passwd".into(),
        "/etc/passwd".into(),
        "/dev/zero".into(),
        "/proc/self/status".into(),
        ".".into(),
        "parts".into(),
        "http://example.invalid/x.yaml".into(),
        "file:///etc/passwd".into(),
        "urn:x#/a".into(),
        String::new(),
        "\u{0}".into(),
        "%2e%2e/canary/secret.yaml".into(),
    ];
    rng.pick(&choices).clone()
}

fn count_nodes(value: &Value) -> usize {
    match value {
        Value::Object(m) => 1 + m.values().map(count_nodes).sum::<usize>(),
        Value::Array(a) => 1 + a.iter().map(count_nodes).sum::<usize>(),
        _ => 1,
    }
}

/// Finds the `k`-th node in pre-order and writes its JSON pointer to `at`.
fn locate(value: &Value, k: &mut usize, at: &mut String) -> bool {
    if *k == 0 {
        return true;
    }
    *k -= 1;
    let len = at.len();
    match value {
        Value::Object(m) => {
            for (key, child) in m {
                at.push('/');
                at.push_str(&key.replace('~', "~0").replace('/', "~1"));
                if locate(child, k, at) {
                    return true;
                }
                at.truncate(len);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                let _ = write!(at, "/{i}");
                if locate(child, k, at) {
                    return true;
                }
                at.truncate(len);
            }
        }
        _ => {}
    }
    false
}

/// A random node's pointer; objects only when `objects`.
fn random_pointer(value: &Value, rng: &mut Rng, objects: bool) -> Option<String> {
    for _ in 0..8 {
        let n = count_nodes(value);
        let mut k = rng.below(n);
        let mut at = String::new();
        locate(value, &mut k, &mut at);
        if !objects || value.pointer(&at).is_some_and(Value::is_object) {
            return Some(at);
        }
    }
    None
}

const KEYWORDS: &[&str] = &[
    "$ref",
    "type",
    "items",
    "properties",
    "additionalProperties",
    "allOf",
    "oneOf",
    "anyOf",
    "not",
    "discriminator",
    "enum",
    "const",
    "required",
    "nullable",
    "format",
    "$id",
    "$anchor",
    "$defs",
    "prefixItems",
    "parameters",
    "requestBody",
    "responses",
    "content",
    "schema",
    "in",
    "style",
    "explode",
    "security",
    "securitySchemes",
    "servers",
    "paths",
    "components",
    "definitions",
    "x-nullable",
    "collectionFormat",
    "consumes",
    "webhooks",
    "exclusiveMinimum",
    "contentEncoding",
    "default",
];

fn keyword_value(rng: &mut Rng) -> Value {
    let values = [
        json!("object"),
        json!("array"),
        json!("string"),
        json!("integer"),
        json!("number"),
        json!("boolean"),
        json!("null"),
        json!("file"),
        json!(["string", "null"]),
        json!([]),
        json!(["a", "a", "b"]),
        json!({}),
        json!({"type": "object", "properties": {"a": {"type": "string"}}}),
        json!([{"type": "string"}, {"type": "integer"}, {"$ref": "#/components/schemas/A"}]),
        json!({"propertyName": "kind", "mapping": {"a": "#/components/schemas/A", "b": "nope"}}),
        json!(true),
        json!(false),
        json!(0),
        json!(-1),
        json!(1e308),
        json!(u64::MAX),
        json!(i64::MIN),
        json!("path"),
        json!("cookie"),
        json!("deepObject"),
        json!("base64"),
        json!("int64"),
        json!("date-time"),
        json!("binary"),
        json!(null),
    ];
    rng.pick(&values).clone()
}

fn odd_string(rng: &mut Rng) -> String {
    let strings = [
        "\u{202e}gnp.exe".to_owned(),
        "\u{0}".to_owned(),
        "a\u{0}b".to_owned(),
        "e\u{301}\u{301}\u{301}".to_owned(),
        "🦀".repeat(1 + rng.below(300)),
        "\u{feff}".to_owned(),
        "a\r\nb\rc\u{2028}d\u{85}e".to_owned(),
        "*/ panic!(); /*".to_owned(),
        "\"; } fn x() { \"".to_owned(),
        "r#type".to_owned(),
        "self".to_owned(),
        "Self".to_owned(),
        "crate".to_owned(),
        "Option".to_owned(),
        "_".to_owned(),
        String::new(),
        " ".to_owned(),
        "0".to_owned(),
        "-".to_owned(),
        "{id}".to_owned(),
        "{".to_owned(),
        "}".to_owned(),
        "/{a}/{a}/{".to_owned(),
        "%2F".to_owned(),
        "~1".to_owned(),
        "~".to_owned(),
        "#".to_owned(),
        "```rust\nfn main() {}".to_owned(),
        "\\u{0}".to_owned(),
        "x".repeat(1 + rng.below(100_000)),
        "\u{1b}[31mred".to_owned(),
        "ǅ".to_owned(),
        "İ".to_owned(),
        "ß".repeat(3),
        "\u{10ffff}".to_owned(),
        "get".to_owned(),
        "2XX".to_owned(),
        "default".to_owned(),
        "application/json; charset=utf-8".to_owned(),
        "*/*".to_owned(),
    ];
    rng.pick(&strings).clone()
}

/// Applies one mutation to the tree and says what it was.
fn mutate_tree(root: &mut Value, rng: &mut Rng, others: &[String]) -> String {
    let Some(at) = random_pointer(root, rng, false) else {
        return "nothing".into();
    };
    match rng.below(12) {
        0 => {
            let replacement = keyword_value(rng);
            let note = format!("type swap at {at}: {}", short(&replacement));
            if let Some(node) = root.pointer_mut(&at) {
                *node = replacement;
            }
            note
        }
        1 => {
            let Some(at) = random_pointer(root, rng, true) else {
                return "nothing".into();
            };
            let node = root.pointer_mut(&at).and_then(Value::as_object_mut);
            match node {
                Some(map) if !map.is_empty() => {
                    let key = map.keys().nth(rng.below(map.len())).cloned().unwrap();
                    map.shift_remove(&key);
                    format!("deleted key {key:?} at {at}")
                }
                _ => "nothing".into(),
            }
        }
        2 => {
            let depth = 1 + rng.below(150);
            let shape = rng.below(4);
            if let Some(node) = root.pointer_mut(&at) {
                let mut inner = node.take();
                for _ in 0..depth {
                    inner = match shape {
                        0 => json!([inner]),
                        1 => json!({ "items": inner }),
                        2 => json!({ "allOf": [inner] }),
                        _ => json!({ "type": "object", "properties": { "a": inner } }),
                    };
                }
                *node = inner;
            }
            format!("nested {depth} levels (shape {shape}) at {at}")
        }
        3 => {
            let numbers = [
                json!(1e308),
                json!(-1e308),
                json!(u64::MAX),
                json!(i64::MIN),
                json!(9_007_199_254_740_993_u64),
                json!(5e-324),
                json!(-0.0),
                json!(0.1),
                json!(4_294_967_296_u64),
            ];
            let number = rng.pick(&numbers).clone();
            let note = format!("number {number} at {at}");
            if let Some(node) = root.pointer_mut(&at) {
                *node = number;
            }
            note
        }
        4 => {
            let text = odd_string(rng);
            let note = format!("string {} at {at}", short(&json!(text)));
            let rename = rng.chance(50);
            let Some(parent_at) = random_pointer(root, rng, true) else {
                return "nothing".into();
            };
            if rename
                && let Some(map) = root.pointer_mut(&parent_at).and_then(Value::as_object_mut)
                && !map.is_empty()
            {
                let key = map.keys().nth(rng.below(map.len())).cloned().unwrap();
                let value = map.shift_remove(&key).unwrap();
                map.insert(text, value);
                return format!("renamed key {key:?} at {parent_at} to an odd string");
            }
            if let Some(node) = root.pointer_mut(&at) {
                *node = Value::String(text);
            }
            note
        }
        5 | 6 => {
            let target = reference(rng, root, others);
            let replace = rng.chance(50);
            let note = format!("$ref {} at {at}", short(&json!(target)));
            if let Some(node) = root.pointer_mut(&at) {
                match node {
                    Value::Object(map) if !replace => {
                        map.insert("$ref".into(), Value::String(target));
                    }
                    _ => *node = json!({ "$ref": target }),
                }
            }
            note
        }
        7 => {
            let (Some(a), Some(b)) = (
                random_pointer(root, rng, true),
                random_pointer(root, rng, true),
            ) else {
                return "nothing".into();
            };
            for (from, to) in [(&a, &b), (&b, &a)] {
                if let Some(map) = root.pointer_mut(from).and_then(Value::as_object_mut) {
                    map.insert("$ref".into(), Value::String(format!("#{to}")));
                }
            }
            format!("reference loop between {a} and {b}")
        }
        8 => {
            let Some(from) = random_pointer(root, rng, false) else {
                return "nothing".into();
            };
            let copy = root.pointer(&from).cloned().unwrap_or(Value::Null);
            if count_nodes(&copy) > 50_000 {
                return "nothing".into();
            }
            if let Some(node) = root.pointer_mut(&at) {
                *node = copy;
            }
            format!("copied {from} over {at}")
        }
        9 => {
            let Some(at) = random_pointer(root, rng, true) else {
                return "nothing".into();
            };
            let keyword = *rng.pick(KEYWORDS);
            if let Some(map) = root.pointer_mut(&at).and_then(Value::as_object_mut)
                && !map.is_empty()
            {
                let key = map.keys().nth(rng.below(map.len())).cloned().unwrap();
                let value = map.shift_remove(&key).unwrap();
                map.insert(keyword.to_owned(), value);
                return format!("renamed key {key:?} at {at} to {keyword}");
            }
            "nothing".into()
        }
        _ => {
            let Some(at) = random_pointer(root, rng, true) else {
                return "nothing".into();
            };
            let keyword = *rng.pick(KEYWORDS);
            let value = if keyword == "$ref" {
                Value::String(reference(rng, root, others))
            } else {
                keyword_value(rng)
            };
            let note = format!("added {keyword}: {} at {at}", short(&value));
            if let Some(map) = root.pointer_mut(&at).and_then(Value::as_object_mut) {
                map.insert(keyword.to_owned(), value);
            }
            note
        }
    }
}

/// A value in a report, cut short.
fn short(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(60) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text,
    }
}

/// Snippets of `.proto` syntax a mutation inserts.
const PROTO_SNIPPETS: &[&str] = &[
    "import \"../canary/secret.proto\";\n",
    "import \"linked.proto\";\n",
    "import \"/etc/passwd\";\n",
    "import \"a/../b.proto\";\n",
    "import \"missing.proto\";\n",
    "import \"google/protobuf/any.proto\";\n",
    "import \"google/api/annotations.proto\";\n",
    "import public \"google/protobuf/empty.proto\";\n",
    "syntax = \"proto2\";\n",
    "edition = \"2023\";\n",
    "option features.field_presence = EXPLICIT;\n",
    "message M { repeated M m = 1; map<string, M> n = 2; oneof o { string a = 3; M b = 4; } }\n",
    "message R { R r = 1; }\n",
    "enum E { A = 0; A = 1; B = -2147483648; }\n",
    "message X { string a = 99999999999999999999; }\n",
    "message Y { string a = 536870912; int64 b = 0; }\n",
    "message Z { extensions 1 to max; reserved 2, 3; reserved \"a\"; }\n",
    "service S { rpc A(M) returns (stream M); rpc B(M) returns (M) { option (google.api.http) = { get: \"/v1/{name=shelves/*}/{name}/{\" }; } }\n",
    "service T { rpc C(M) returns (M) { option (google.api.http) = { post: \"\" body: \"nope\" additional_bindings { get: \"/x\" } }; } }\n",
    "service U { rpc D(google.protobuf.Empty) returns (.p.M); }\n",
    "package a.b.c;\n",
    "package ;\n",
    "option java_package = \"\u{202e}x\";\n",
    "/* unterminated comment",
    "\"unterminated string",
    "message 🦀 {}\n",
    "}\n",
    "{\n",
];

/// Applies one text mutation and says what it was.
fn mutate_text(text: &mut Vec<u8>, kind: Kind, rng: &mut Rng, others: &[String]) -> String {
    let at = floor_boundary(text, rng.below(text.len() + 1));
    match rng.below(10) {
        0 => {
            text.truncate(at);
            format!("truncated at byte {at}")
        }
        1 | 2 => {
            let lines = line_starts(text);
            let (start, end) = line_range(text, &lines, rng);
            let line = text[start..end].to_vec();
            let copies = if rng.chance(80) {
                1
            } else {
                1 + rng.below(100)
            };
            let mut inserted = Vec::new();
            for _ in 0..copies {
                inserted.extend_from_slice(&line);
            }
            text.splice(end..end, inserted);
            format!("duplicated the line at byte {start} {copies} times")
        }
        3 => {
            let lines = line_starts(text);
            let (start, _) = line_range(text, &lines, rng);
            let (_, end) = line_range(text, &lines, rng);
            let (start, end) = (start.min(end), start.max(end));
            text.drain(start..end);
            format!("deleted bytes {start}..{end}")
        }
        4 => {
            let odd: &[&[u8]] = &[
                b"\xff\xfe",
                b"\x00",
                "\u{202e}".as_bytes(),
                "\u{feff}".as_bytes(),
                "\r".as_bytes(),
                b"\t",
                b"\\ud800",
                "🦀".as_bytes(),
                b"\"",
                b"'",
                b":",
                b"- ",
                b"&a ",
                b"*a",
                b"!!binary ",
                b"? ",
                b"|",
                b"%YAML 1.1\n",
                b"---\n",
                b"...\n",
            ];
            let bytes = rng.pick(odd).to_vec();
            text.splice(at..at, bytes);
            format!("inserted odd bytes at {at}")
        }
        5 => {
            let numbers: &[&str] = &[
                "1e999",
                "-1e999",
                "99999999999999999999999999999999999999",
                "18446744073709551616",
                "-9223372036854775809",
                "0x7fffffff",
                ".inf",
                ".nan",
                "1e-999",
                "00012",
            ];
            let n = *rng.pick(numbers);
            let digits = text[at..]
                .iter()
                .position(|b| !b.is_ascii_digit())
                .map_or(text.len(), |p| at + p);
            text.splice(at..digits, n.bytes());
            format!("number {n} at {at}")
        }
        6 => {
            let depth = 1 + rng.below(5000);
            let (open, close) = match (kind, rng.below(3)) {
                (Kind::Proto, _) => ("message N {".repeat(depth), "}".repeat(depth)),
                (_, 0) => ("[".repeat(depth), "]".repeat(depth)),
                (_, 1) => ("{\"a\":".repeat(depth), "}".repeat(depth)),
                _ => ("- ".repeat(depth), String::new()),
            };
            let mut inserted = open.into_bytes();
            inserted.extend_from_slice(close.as_bytes());
            text.splice(at..at, inserted);
            format!("nested {depth} levels of text at {at}")
        }
        7 => {
            if kind == Kind::Proto {
                let snippet = *rng.pick(PROTO_SNIPPETS);
                text.splice(at..at, snippet.bytes());
                return format!("inserted {snippet:?} at {at}");
            }
            // YAML aliases that expand exponentially.
            let bomb = "\nx-a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\nx-b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nx-c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nx-d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\nx-e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nx-f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\nx-g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n";
            text.extend_from_slice(bomb.as_bytes());
            "appended YAML aliases that expand exponentially".into()
        }
        8 => {
            let lines = line_starts(text);
            let (a0, a1) = line_range(text, &lines, rng);
            let (b0, b1) = line_range(text, &lines, rng);
            if a1 <= b0 {
                let a = text[a0..a1].to_vec();
                let b = text[b0..b1].to_vec();
                text.splice(b0..b1, a);
                text.splice(a0..a1, b);
                format!("swapped lines at bytes {a0} and {b0}")
            } else {
                "nothing".into()
            }
        }
        _ => {
            if kind == Kind::Proto {
                let snippet = *rng.pick(PROTO_SNIPPETS);
                let lines = line_starts(text);
                let (start, _) = line_range(text, &lines, rng);
                text.splice(start..start, snippet.bytes());
                return format!("inserted {snippet:?} at line start {start}");
            }
            let target = if others.is_empty() {
                "missing.yaml".to_owned()
            } else {
                rng.pick(others).clone()
            };
            let snippet = format!(
                "\n  x-r:\n    $ref: '{}'\n",
                if rng.chance(50) {
                    target
                } else {
                    "../canary/secret.yaml#/Secret".into()
                }
            );
            text.splice(at..at, snippet.bytes());
            format!("inserted a reference at {at}")
        }
    }
}

/// The largest char boundary at or before `at` (inputs are UTF-8 before mutations make them not).
fn floor_boundary(text: &[u8], at: usize) -> usize {
    let mut at = at.min(text.len());
    while at > 0 && at < text.len() && (text[at] & 0xC0) == 0x80 {
        at -= 1;
    }
    at
}

fn line_starts(text: &[u8]) -> Vec<usize> {
    let mut starts = vec![0];
    starts.extend(
        text.iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .map(|(i, _)| i + 1),
    );
    starts
}

/// A random line: (start, end), the end after its newline.
fn line_range(text: &[u8], starts: &[usize], rng: &mut Rng) -> (usize, usize) {
    let i = rng.below(starts.len());
    let start = starts[i].min(text.len());
    let end = starts.get(i + 1).copied().unwrap_or(text.len());
    (start, end.max(start))
}

/// How one input went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Read (and rendered when asked) without error.
    Read,
    /// Refused with an error.
    Refused,
    /// A panic, an error message that breaks the rules, or a read outside the folder.
    Failed(String),
}

/// A failing input.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The input's index.
    pub index: u64,
    /// What went wrong.
    pub what: String,
    /// Where the input was saved.
    pub saved: PathBuf,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// The run's seed.
    pub seed: u64,
    /// How long to run.
    pub duration: Duration,
    /// Run only this input.
    pub only: Option<u64>,
    /// The longest an input may take.
    pub timeout: Duration,
    /// The most resident memory the process may reach, in kB.
    pub max_rss_kb: u64,
    /// Whether to render the crate of what reads.
    pub render: bool,
    /// Where the inputs are written and failures saved.
    pub work: PathBuf,
    /// How often to print progress (never when `None`).
    pub progress: Option<Duration>,
}

/// What a run found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Inputs tried.
    pub tried: u64,
    /// Inputs read without error.
    pub read: u64,
    /// Inputs refused with an error.
    pub refused: u64,
    /// How long it ran.
    pub elapsed: Duration,
    /// The slowest input: time, index, seed and mutations.
    pub slowest: Option<(Duration, u64, String)>,
    /// The peak resident memory of the process, in kB.
    pub peak_rss_kb: u64,
    /// Failing inputs.
    pub failures: Vec<Failure>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        writeln!(
            f,
            "{} inputs in {:.1} s ({:.1}/s): {} read, {} refused, {} failed; peak RSS {} MB",
            self.tried,
            secs,
            self.tried as f64 / secs,
            self.read,
            self.refused,
            self.failures.len(),
            self.peak_rss_kb / 1024
        )?;
        if let Some((time, index, what)) = &self.slowest {
            writeln!(f, "slowest: input {index}, {time:.2?}: {what}")?;
        }
        for failure in &self.failures {
            writeln!(
                f,
                "FAILED input {}: {} (saved in {})",
                failure.index,
                failure.what,
                failure.saved.display()
            )?;
        }
        Ok(())
    }
}

thread_local! {
    /// The message of the last panic on this thread.
    static PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The name of the threads that run inputs, whose panics are recorded rather than printed.
const INPUT_THREAD: &str = "fuzz-input";

/// Records the panics of input threads (with their location) instead of printing them.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() == Some(INPUT_THREAD) {
                PANIC.with(|p| *p.borrow_mut() = Some(info.to_string()));
            } else {
                default(info);
            }
        }));
    });
}

/// The resident memory of this process now and at its peak, in kB.
pub fn rss_kb() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Runs inputs until the time is up (or the one asked for) and reports.
pub fn run(config: &Config, seeds: &[Seed]) -> Report {
    assert!(!seeds.is_empty(), "no seeds");
    install_panic_hook();
    let canary = config.work.join("canary");
    std::fs::create_dir_all(&canary).expect("create the canary folder");
    std::fs::write(
        canary.join("secret.yaml"),
        format!("Secret:\n  type: object\n  description: {MARKER}\n  properties:\n    {MARKER}: {{type: string}}\n"),
    )
    .expect("write the canary");
    std::fs::write(
        canary.join("secret.proto"),
        format!("syntax = \"proto3\";\npackage {MARKER};\nmessage {MARKER} {{}}\n"),
    )
    .expect("write the canary");
    let failures_dir = config.work.join("failures");
    let start = Instant::now();
    let mut report = Report::default();
    let mut last_progress = Instant::now();
    let indices: Box<dyn Iterator<Item = u64>> = match config.only {
        Some(index) => Box::new(std::iter::once(index)),
        None => Box::new(0..),
    };
    for index in indices {
        if config.only.is_none() && start.elapsed() >= config.duration {
            break;
        }
        let input = input(seeds, config.seed, index);
        let dir = config.work.join("current");
        let _ = std::fs::remove_dir_all(&dir);
        write_input(&dir, &input, &canary);
        let began = Instant::now();
        let (outcome, stop) = execute(&dir, &input, config, &mut report);
        let took = began.elapsed();
        report.tried += 1;
        if report.slowest.as_ref().is_none_or(|(t, _, _)| took > *t) {
            report.slowest = Some((
                took,
                index,
                format!("{} [{}]", input.seed, input.mutations.join("; ")),
            ));
        }
        match outcome {
            Outcome::Read => report.read += 1,
            Outcome::Refused => report.refused += 1,
            Outcome::Failed(what) => {
                let saved = failures_dir.join(format!("seed{}-input{index}", config.seed));
                save(&dir, &saved, &input, &what, config.seed);
                report.failures.push(Failure { index, what, saved });
            }
        }
        if stop {
            break;
        }
        // A replayed input stays on disk, to be looked at.
        if config.only.is_none() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        if let Some(every) = config.progress
            && last_progress.elapsed() >= every
        {
            last_progress = Instant::now();
            report.elapsed = start.elapsed();
            report.peak_rss_kb = rss_kb().1;
            eprint!("{report}");
        }
    }
    report.elapsed = start.elapsed();
    report.peak_rss_kb = rss_kb().1;
    report
}

/// Writes the files of `input` under `dir`, with links to the canary beside them.
fn write_input(dir: &Path, input: &Input, canary: &Path) {
    for (name, contents) in &input.files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).expect("create the input folder");
        std::fs::write(&path, contents).expect("write the input");
    }
    #[cfg(unix)]
    {
        let _ = std::os::unix::fs::symlink(canary.join("secret.yaml"), dir.join("linked.yaml"));
        let _ = std::os::unix::fs::symlink(canary.join("secret.proto"), dir.join("linked.proto"));
    }
}

/// Copies a failing input to `saved`, with what went wrong and how to replay it.
fn save(dir: &Path, saved: &Path, input: &Input, what: &str, seed: u64) {
    let _ = std::fs::remove_dir_all(saved);
    for (name, contents) in &input.files {
        let path = saved.join(name);
        let _ = std::fs::create_dir_all(path.parent().unwrap());
        let _ = std::fs::write(path, contents);
    }
    let _ = dir;
    let _ = std::fs::write(
        saved.join("FAILURE.txt"),
        format!(
            "{what}\n\nmain file: {}\nseed document: {}\nmutations:\n  {}\n\nreplay: cargo bench --bench fuzz -- --seed {seed} --only {}\n",
            input.main,
            input.seed,
            input.mutations.join("\n  "),
            input.index
        ),
    );
}

/// Runs the reader (and the renderer) on the input in `dir` on a thread of its own, watching
/// its time and the process's memory. The second value says the run must stop (the thread of a
/// hung input cannot be stopped).
fn execute(dir: &Path, input: &Input, config: &Config, report: &mut Report) -> (Outcome, bool) {
    let (send, receive) = mpsc::channel();
    let main = dir.join(&input.main);
    let includes = match input.kind {
        Kind::Proto => vec![dir.to_owned()],
        Kind::OpenApi { .. } => Vec::new(),
    };
    let render = config.render;
    let spawned = std::thread::Builder::new()
        .name(INPUT_THREAD.into())
        // The stack of a main thread, as the command line has.
        .stack_size(8 << 20)
        .spawn(move || {
            let outcome = std::panic::catch_unwind(|| read_and_render(&main, includes, render));
            let outcome = outcome.unwrap_or_else(|_| {
                let message = PANIC.with(|p| p.borrow_mut().take()).unwrap_or_default();
                Outcome::Failed(format!("panic: {message}"))
            });
            let _ = send.send(outcome);
        });
    if let Err(err) = spawned {
        return (
            Outcome::Failed(format!("cannot start a thread: {err}")),
            true,
        );
    }
    let began = Instant::now();
    loop {
        match receive.recv_timeout(Duration::from_millis(50)) {
            Ok(outcome) => return (outcome, false),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return (Outcome::Failed("the input's thread vanished".into()), true);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        let (rss, peak) = rss_kb();
        report.peak_rss_kb = report.peak_rss_kb.max(peak);
        if rss > config.max_rss_kb {
            return (
                Outcome::Failed(format!(
                    "memory: resident memory reached {} MB (bound {} MB)",
                    rss / 1024,
                    config.max_rss_kb / 1024
                )),
                true,
            );
        }
        if began.elapsed() > config.timeout {
            return (
                Outcome::Failed(format!("hang: still running after {:?}", config.timeout)),
                true,
            );
        }
    }
}

/// Reads the spec at `main` and renders its crate, and checks what comes out.
fn read_and_render(main: &Path, includes: Vec<PathBuf>, render: bool) -> Outcome {
    let read_options = codegen::ReadOptions {
        crate_name: "fuzzed".into(),
        includes: includes.clone(),
        // As `codegen gen` reads by default: parts that cannot be read are skipped, which
        // goes through more of the reader than failing on the first.
        strict: false,
        allowed_ref_dirs: Vec::new(),
    };
    let checked = |err: codegen::Error| {
        let message = err.to_string();
        if message.contains(MARKER) {
            Outcome::Failed(format!("the error shows the canary: {message}"))
        } else if message.len() > MAX_MESSAGE_BYTES {
            Outcome::Failed(format!(
                "an error message of {} bytes: {}…",
                message.len(),
                message.chars().take(300).collect::<String>()
            ))
        } else {
            Outcome::Refused
        }
    };
    let api = match codegen::spec::read(main, &read_options) {
        Ok(api) => api,
        Err(err) => return checked(err),
    };
    if api
        .notes
        .iter()
        .chain(&api.warnings)
        .any(|n| n.contains(MARKER))
    {
        return Outcome::Failed("a note or a warning shows the canary".into());
    }
    if !render {
        return Outcome::Read;
    }
    let options = codegen::emit::Options {
        crate_name: "fuzzed".into(),
        runtime: codegen::emit::RuntimeDependency::Version("0.1.0".into()),
        includes,
        strict: false,
        allowed_ref_dirs: Vec::new(),
        selection: Default::default(),
    };
    match codegen::emit::render_unformatted(&api, "api.yaml", &options) {
        Ok(files) => match files.iter().find(|f| f.contents.contains(MARKER)) {
            Some(file) => Outcome::Failed(format!(
                "generated {} shows the canary",
                file.path.display()
            )),
            None => Outcome::Read,
        },
        Err(err) => checked(err),
    }
}
