//! Joins a document spread over many files into one, and gives every `$ref` a target the
//! reader can name.
//!
//! The reader knows two kinds of reference: to a named schema (`#/components/schemas/Pet`, or
//! `#/definitions/Pet` in Swagger 2.0) and to another named component. Everything else is
//! rewritten here into those two:
//! - a schema anywhere else (another file, a `$defs` entry, a property of another schema, an
//!   `$anchor`, an `$id`) is copied into the document's schemas under a free name, once, and
//!   its references point there; cycles between files are then cycles of named schemas, which
//!   the reader handles;
//! - any other object (a parameter, a response, a path item) is copied where it is used.
//!
//! A reference that resolves to nothing is an error naming the file and the JSON pointer where
//! it was written. Remote (`http:`) references are not fetched.
//!
//! A spec may come from someone else, so references read files only inside the root document's
//! folder (and its subfolders) and the folders the user allows (`--allow-ref-dir`), symlinks
//! resolved first; only regular files are read. Copies of references are bounded in size and
//! nesting, so a small document cannot expand into an unbounded one.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::parse;
use super::skips::Skips;
use crate::Result;
use crate::error::{Error, excerpt, excerpt_pointer, pointer_token};

/// How deep the walk over the documents may go (values inside values, through references):
/// beyond this a document is refused rather than risk the stack. Parsers stop at 128 levels of
/// one file; references to other files and copies add levels.
const MAX_WALK_DEPTH: usize = 2_000;

/// How deep a copied reference may sit in the bundled document (levels of keys): the OpenAPI
/// reader recurses on it.
const MAX_RESULT_DEPTH: usize = 192;

/// How many JSON values the copies of references may add in all, beyond the documents' own
/// size: references that each copy others twice would otherwise grow exponentially.
const MIN_COPY_BUDGET: usize = 2_000_000;

/// Keys whose value is a schema.
const SCHEMA_KEYS: &[&str] = &[
    "schema",
    "items",
    "additionalProperties",
    "not",
    "additionalItems",
    "contains",
    "propertyNames",
    "if",
    "then",
    "else",
    "unevaluatedItems",
    "unevaluatedProperties",
    "contentSchema",
];

/// Keys whose value is a list of schemas.
const SCHEMA_LIST_KEYS: &[&str] = &[
    "allOf",
    "oneOf",
    "anyOf",
    "prefixItems",
    super::openapi31::TUPLE_KEY,
];

/// Keys whose value maps names to schemas.
const SCHEMA_MAP_KEYS: &[&str] = &[
    "properties",
    "patternProperties",
    "definitions",
    "$defs",
    "dependentSchemas",
];

/// Whether the value at the end of `keys` (a path of object keys, with `[]` for array items)
/// is a schema.
pub(super) fn is_schema_position<K: AsRef<str>>(keys: &[K]) -> bool {
    let last = |n: usize| keys.len().checked_sub(n).map(|i| keys[i].as_ref());
    match (last(3), last(2), last(1)) {
        (_, _, Some(key)) if SCHEMA_KEYS.contains(&key) => true,
        (_, Some(list), Some("[]")) if SCHEMA_LIST_KEYS.contains(&list) => true,
        (None, Some("definitions"), Some(_)) => true,
        (Some("components"), Some("schemas"), Some(_)) => true,
        // An entry of the `properties` of a schema, not of a property called `properties`.
        (Some(_), Some(map), Some(_)) if SCHEMA_MAP_KEYS.contains(&map) => {
            is_schema_position(&keys[..keys.len() - 2])
        }
        _ => false,
    }
}

/// The result of bundling.
pub(super) struct Bundled {
    /// Whether the document differs from the file (then errors cannot give line numbers).
    pub changed: bool,
}

/// Rewrites the references of `root` (read from `path`) in place. `schemas_at` is where named
/// schemas live: `/components/schemas` or `/definitions`. References may read files in the
/// folder of `path` and in `allowed_ref_dirs` (canonical folders; see [`super::allowed_dirs`]),
/// and their subfolders. An operation or component whose references cannot be followed is
/// skipped by `skips` (or is the error, when strict); one that leads outside those folders is
/// always the error.
pub(super) fn bundle(
    path: &Path,
    root: &mut Value,
    schemas_at: &str,
    skips: &mut Skips,
    allowed_ref_dirs: &[PathBuf],
) -> Result<Bundled> {
    if !needs_bundling(root, schemas_at) {
        return Ok(Bundled { changed: false });
    }
    let root_path = canonical(path);
    let mut allowed = vec![root_path.parent().unwrap_or(Path::new("/")).to_owned()];
    allowed.extend(allowed_ref_dirs.iter().cloned());
    let copy_budget = MIN_COPY_BUDGET.max(4 * size(root));
    let mut bundler = Bundler {
        root_path: root_path.clone(),
        allowed,
        copy_budget,
        depth: 0,
        docs: HashMap::new(),
        ids: HashMap::new(),
        hoisted: HashMap::new(),
        new_schemas: Vec::new(),
        taken: existing_names(root, schemas_at),
        schemas_at: schemas_at.to_owned(),
        inlining: Vec::new(),
        skips,
    };
    bundler.index_ids(&root_path, root);
    bundler.docs.insert(root_path.clone(), root.clone());
    let mut keys = Vec::new();
    bundler.walk(root, &root_path, &mut keys, &mut "#".to_owned())?;
    // Hoisted schemas are walked as they are added, so this list is complete.
    let schemas = ensure_object(root, schemas_at);
    for (name, schema) in std::mem::take(&mut bundler.new_schemas) {
        schemas.insert(name, schema);
    }
    Ok(Bundled { changed: true })
}

/// A reference the reader does not take as it is: anything but `#/<section>/<name>`, and any
/// reference to a path item.
fn needs_bundling(root: &Value, schemas_at: &str) -> bool {
    let path_item_ref = root
        .get("paths")
        .and_then(Value::as_object)
        .is_some_and(|paths| paths.values().any(|item| item.get("$ref").is_some()));
    if path_item_ref {
        return true;
    }
    fn visit(value: &Value, schemas_at: &str) -> bool {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref")
                    && !is_plain_component(r, schemas_at)
                {
                    return true;
                }
                map.values().any(|v| visit(v, schemas_at))
            }
            Value::Array(items) => items.iter().any(|v| visit(v, schemas_at)),
            _ => false,
        }
    }
    visit(root, schemas_at)
}

/// `#/components/<section>/<name>` (or `#/<section>/<name>` in Swagger 2.0).
fn is_plain_component(reference: &str, schemas_at: &str) -> bool {
    let Some(pointer) = reference.strip_prefix('#') else {
        return false;
    };
    let depth = if schemas_at == "/definitions" { 2 } else { 3 };
    pointer.starts_with('/')
        && pointer.matches('/').count() == depth
        && (depth == 2 || pointer.starts_with("/components/"))
        && !pointer.contains('%')
}

fn existing_names(root: &Value, schemas_at: &str) -> BTreeSet<String> {
    root.pointer(schemas_at)
        .and_then(Value::as_object)
        .map(|m| m.keys().map(|k| k.to_ascii_lowercase()).collect())
        .unwrap_or_default()
}

fn ensure_object<'a>(root: &'a mut Value, pointer: &str) -> &'a mut Map<String, Value> {
    let mut at = root;
    for token in pointer.split('/').skip(1) {
        // A document whose root is not an object (a `$ref` at the root that leads to a list)
        // is refused by the reader afterwards; here it only needs a place to write to.
        if !at.is_object() {
            *at = Value::Object(Map::new());
        }
        let Value::Object(map) = at else {
            unreachable!("made an object above")
        };
        at = map
            .entry(token.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if !at.is_object() {
            *at = Value::Object(Map::new());
        }
    }
    at.as_object_mut().expect("made an object above")
}

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
}

struct Bundler<'s> {
    root_path: PathBuf,
    /// The folders references may read files in, canonical: the root's first.
    allowed: Vec<PathBuf>,
    /// How many more JSON values copies of references may add.
    copy_budget: usize,
    /// The current depth of the walk.
    depth: usize,
    /// Every file read so far, as it was read.
    docs: HashMap<PathBuf, Value>,
    /// `$id` values and `$anchor`s (`file#name`) to the file and pointer they name.
    ids: HashMap<String, (PathBuf, String)>,
    /// Schemas already copied into the root: (file, pointer) to their name.
    hoisted: HashMap<(PathBuf, String), String>,
    new_schemas: Vec<(String, Value)>,
    /// Schema names in use, lower-cased (generated type names ignore case).
    taken: BTreeSet<String>,
    schemas_at: String,
    /// Non-schema references being copied, to report a cycle instead of looping.
    inlining: Vec<(PathBuf, String)>,
    /// The parts skipped because their references cannot be followed.
    skips: &'s mut Skips,
}

/// Where a reference points.
struct Target {
    file: PathBuf,
    /// A JSON pointer into the file (empty for the whole file).
    pointer: String,
    /// The `$anchor` it was found by, a better name than the pointer's last token.
    anchor: Option<String>,
}

impl Bundler<'_> {
    fn walk(
        &mut self,
        value: &mut Value,
        file: &Path,
        keys: &mut Vec<String>,
        at: &mut String,
    ) -> Result<()> {
        if self.depth >= MAX_WALK_DEPTH {
            return Err(Error::Invalid {
                path: self.root_path.clone(),
                location: excerpt_pointer(at),
                message: format!(
                    "the references nest more than {MAX_WALK_DEPTH} levels deep through each other"
                ),
            });
        }
        self.depth += 1;
        let result = self.walk_value(value, file, keys, at);
        self.depth -= 1;
        result
    }

    fn walk_value(
        &mut self,
        value: &mut Value,
        file: &Path,
        keys: &mut Vec<String>,
        at: &mut String,
    ) -> Result<()> {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(reference)) = map.get("$ref") {
                    let reference = reference.clone();
                    if let Some(replacement) = self.reference(&reference, file, keys, at)? {
                        match replacement {
                            Replacement::Ref(new_ref) => {
                                map.insert("$ref".to_owned(), Value::String(new_ref));
                            }
                            Replacement::Inline(inlined) => {
                                // Keys written beside the `$ref` (a description) win.
                                let mut merged = inlined;
                                if let Value::Object(target) = &mut merged {
                                    for (k, v) in map.iter().filter(|(k, _)| *k != "$ref") {
                                        target.insert(k.clone(), v.clone());
                                    }
                                }
                                *value = merged;
                                return Ok(());
                            }
                        }
                    }
                }
                let mut skipped = Vec::new();
                for (key, child) in map.iter_mut() {
                    if key == "$ref" {
                        continue;
                    }
                    let len = at.len();
                    at.push('/');
                    at.push_str(&pointer_token(key));
                    keys.push(key.clone());
                    let result = self.walk(child, file, keys, at);
                    // An operation or a component of the document is skipped, not fatal.
                    let part = match &result {
                        Err(_) if file == self.root_path => part(&self.schemas_at, keys, at),
                        _ => None,
                    };
                    keys.pop();
                    at.truncate(len);
                    if let Err(err) = result {
                        let Some(part) = part else {
                            return Err(err);
                        };
                        self.skips.skip(part.what, err)?;
                        match part.removed {
                            Some(removed) => {
                                self.skips.removed(removed);
                                skipped.push(key.clone());
                            }
                            None => *child = Value::Object(Map::new()),
                        }
                    }
                }
                for key in skipped {
                    map.shift_remove(&key);
                }
            }
            Value::Array(items) => {
                for (index, child) in items.iter_mut().enumerate() {
                    let len = at.len();
                    at.push_str(&format!("/{index}"));
                    keys.push("[]".to_owned());
                    let result = self.walk(child, file, keys, at);
                    keys.pop();
                    at.truncate(len);
                    result?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// What a reference written in `file` at `at` becomes; `None` to leave it.
    fn reference(
        &mut self,
        reference: &str,
        file: &Path,
        keys: &[String],
        at: &str,
    ) -> Result<Option<Replacement>> {
        let in_root = file == self.root_path;
        // Path items are always copied in place: the reader takes no reference there
        // (OpenAPI 3.1 has `components/pathItems`).
        let path_item = keys.len() == 2 && keys[0] == "paths";
        if in_root && !path_item && is_plain_component(reference, &self.schemas_at) {
            return Ok(None);
        }
        let target = self.resolve(reference, file, at)?;
        let schema = is_schema_position(keys);
        if schema {
            let name = self.hoist(&target, reference, at)?;
            return Ok(Some(Replacement::Ref(format!(
                "#{}/{}",
                self.schemas_at,
                pointer_token(&name)
            ))));
        }
        // A component of the root document stays a reference; the reader follows those.
        if !path_item
            && target.file == self.root_path
            && is_plain_component(&format!("#{}", target.pointer), &self.schemas_at)
        {
            return Ok(Some(Replacement::Ref(format!("#{}", target.pointer))));
        }
        let key = (target.file.clone(), target.pointer.clone());
        if self.inlining.contains(&key) {
            return Err(self.error(
                at,
                format!(
                    "`{}` is part of a cycle of references that never reaches a schema",
                    excerpt(reference)
                ),
            ));
        }
        if keys.len() > MAX_RESULT_DEPTH {
            return Err(self.error(
                at,
                format!(
                    "`{}` is copied more than {MAX_RESULT_DEPTH} levels deep into the document",
                    excerpt(reference)
                ),
            ));
        }
        let found = self.lookup(&target, reference, at)?;
        let cost = size(found);
        if cost > self.copy_budget {
            return Err(self.error(
                at,
                format!(
                    "`{}` makes the copies of references grow past {} values: references that copy each other many times",
                    excerpt(reference),
                    MIN_COPY_BUDGET.max(self.copy_budget)
                ),
            ));
        }
        let mut copy = found.clone();
        self.copy_budget -= cost;
        self.inlining.push(key);
        let mut keys = keys.to_vec();
        let mut inner_at = format!("{}#{}", target.file.display(), target.pointer);
        let result = self.walk(&mut copy, &target.file.clone(), &mut keys, &mut inner_at);
        self.inlining.pop();
        result?;
        Ok(Some(Replacement::Inline(copy)))
    }

    /// Copies the schema at `target` into the root's schemas (once) and returns its name.
    fn hoist(&mut self, target: &Target, reference: &str, at: &str) -> Result<String> {
        let key = (target.file.clone(), target.pointer.clone());
        if let Some(name) = self.hoisted.get(&key) {
            return Ok(name.clone());
        }
        // A named schema of the root document keeps its name.
        if target.file == self.root_path
            && let Some(name) = target
                .pointer
                .strip_prefix(&format!("{}/", self.schemas_at))
                .filter(|rest| !rest.contains('/'))
        {
            return Ok(unescape(name));
        }
        let mut copy = self.lookup(target, reference, at)?.clone();
        let name = self.free_name(&suggested_name(target));
        self.hoisted.insert(key, name.clone());
        // Its place is taken now, so schemas keep the order in which they are first used.
        let index = self.new_schemas.len();
        self.new_schemas.push((name.clone(), Value::Null));
        let mut keys = vec!["components".to_owned(), "schemas".to_owned(), name.clone()];
        let mut inner_at = format!("{}#{}", target.file.display(), target.pointer);
        if let Err(err) = self.walk(&mut copy, &target.file, &mut keys, &mut inner_at) {
            // What refers to it is skipped; any other reference reads it as any value.
            self.new_schemas[index].1 = Value::Object(Map::new());
            return Err(err);
        }
        self.new_schemas[index].1 = copy;
        Ok(name)
    }

    fn free_name(&mut self, wanted: &str) -> String {
        let base = if wanted.is_empty() { "Schema" } else { wanted };
        let mut name = base.to_owned();
        let mut n = 2;
        while !self.taken.insert(name.to_ascii_lowercase()) {
            name = format!("{base}{n}");
            n += 1;
        }
        name
    }

    fn resolve(&mut self, reference: &str, file: &Path, at: &str) -> Result<Target> {
        let (location, fragment) = match reference.split_once('#') {
            Some((location, fragment)) => (location, percent_decode(fragment)),
            None => (reference, String::new()),
        };
        let anchor = (!fragment.is_empty() && !fragment.starts_with('/')).then(|| fragment.clone());
        let candidate = file.parent().unwrap_or(Path::new(".")).join(location);
        // A schema known by its `$id` (absolute, or relative to where the ids are written).
        let local = location.is_empty() || (!location.contains("://") && candidate.exists());
        if !local {
            let Some(id) = self.by_id(location) else {
                if !location.contains("://") && !self.permits(&lexical(&candidate)) {
                    // Whether a file outside exists is not said either.
                    return Err(self.refused(at, self.outside(reference, &candidate, None)));
                }
                return Err(self.error(
                    at,
                    if location.contains("://") {
                        format!(
                            "`{}` is a remote reference, which is not fetched: download the file and refer to it by a relative path",
                            excerpt(reference)
                        )
                    } else {
                        format!(
                            "`{}` refers to {}, which cannot be read (no such file, and no schema has it as its `$id`)",
                            excerpt(reference),
                            shown(&candidate)
                        )
                    },
                ));
            };
            let key = match &anchor {
                Some(anchor) => format!("{id}#{anchor}"),
                None => id,
            };
            return match self.ids.get(&key) {
                Some((path, pointer)) => Ok(Target {
                    file: path.clone(),
                    pointer: format!("{pointer}{}", if anchor.is_some() { "" } else { &fragment }),
                    anchor,
                }),
                None => Err(self.error(at, format!("`{}` names no schema", excerpt(reference)))),
            };
        }
        let target_file = if location.is_empty() {
            file.to_owned()
        } else {
            let joined = canonical(&candidate);
            if !self.permits(&joined) {
                let message = self.outside(reference, &candidate, Some(&joined));
                return Err(self.refused(at, message));
            }
            self.load(&joined, reference, at)?;
            joined
        };
        if let Some(anchor) = anchor {
            return match self.ids.get(&format!("{}#{anchor}", target_file.display())) {
                Some((path, pointer)) => Ok(Target {
                    file: path.clone(),
                    pointer: pointer.clone(),
                    anchor: Some(anchor),
                }),
                None => Err(self.error(
                    at,
                    format!(
                        "`{}` names no `$anchor` of {}",
                        excerpt(reference),
                        shown(&target_file)
                    ),
                )),
            };
        }
        Ok(Target {
            file: target_file,
            pointer: fragment,
            anchor: None,
        })
    }

    /// The `$id` that `location` names: the same text, or an id ending with `/<location>`
    /// (a reference relative to the document's base).
    fn by_id(&self, location: &str) -> Option<String> {
        let location = location.trim_end_matches('#');
        if self.ids.contains_key(location) {
            return Some(location.to_owned());
        }
        let suffix = format!(
            "/{}",
            location.trim_start_matches("./").trim_start_matches('/')
        );
        let mut found: Vec<&String> = self
            .ids
            .keys()
            .filter(|id| !id.contains('#') && id.ends_with(&suffix))
            .collect();
        found.sort();
        found.first().map(|id| (*id).clone())
    }

    /// Whether a reference may read the file at `path` (canonical, or normalised when it does
    /// not exist): it is in one of the allowed folders.
    fn permits(&self, path: &Path) -> bool {
        self.allowed.iter().any(|dir| path.starts_with(dir))
    }

    /// The message for a reference to a file outside the allowed folders.
    fn outside(&self, reference: &str, path: &Path, resolved: Option<&Path>) -> String {
        let place = match resolved {
            Some(resolved) if resolved != normalized(path) => {
                format!("{} (which is {})", shown(path), shown(resolved))
            }
            _ => shown(path),
        };
        let folders: Vec<String> = self
            .allowed
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        format!(
            "`{}` refers to {place}, outside the folders references may read ({}): pass --allow-ref-dir DIR to allow the folder that holds it",
            excerpt(reference),
            folders.join(", ")
        )
    }

    fn load(&mut self, path: &Path, reference: &str, at: &str) -> Result<()> {
        if self.docs.contains_key(path) {
            return Ok(());
        }
        let cannot = |why: String| {
            self.error(
                at,
                format!(
                    "`{}` refers to {}, which cannot be read: {why}",
                    excerpt(reference),
                    shown(path)
                ),
            )
        };
        // A device or a pipe could block or never end.
        if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
            return Err(cannot("it is not a regular file".into()));
        }
        let text = std::fs::read_to_string(path).map_err(|err| cannot(err.to_string()))?;
        let value = parse::value(path, &text, parse::Format::of(path, &text))?;
        self.index_ids(path, &value);
        self.docs.insert(path.to_owned(), value);
        Ok(())
    }

    /// Records the `$id`s and `$anchor`s of a file.
    fn index_ids(&mut self, path: &Path, value: &Value) {
        fn visit(
            value: &Value,
            path: &Path,
            base: Option<&str>,
            at: &mut String,
            ids: &mut HashMap<String, (PathBuf, String)>,
        ) {
            match value {
                Value::Object(map) => {
                    let id = match map.get("$id") {
                        Some(Value::String(id)) => Some(id.trim_end_matches('#')),
                        _ => None,
                    };
                    if let Some(id) = id {
                        ids.entry(id.to_owned())
                            .or_insert_with(|| (path.to_owned(), at.clone()));
                    }
                    let base = id.or(base);
                    if let Some(Value::String(anchor)) = map.get("$anchor") {
                        let scopes = [Some(path.display().to_string()), base.map(str::to_owned)];
                        for scope in scopes.into_iter().flatten() {
                            ids.entry(format!("{scope}#{anchor}"))
                                .or_insert_with(|| (path.to_owned(), at.clone()));
                        }
                    }
                    for (key, child) in map {
                        let len = at.len();
                        at.push('/');
                        at.push_str(&pointer_token(key));
                        visit(child, path, base, at, ids);
                        at.truncate(len);
                    }
                }
                Value::Array(items) => {
                    for (index, child) in items.iter().enumerate() {
                        let len = at.len();
                        at.push_str(&format!("/{index}"));
                        visit(child, path, base, at, ids);
                        at.truncate(len);
                    }
                }
                _ => {}
            }
        }
        visit(value, path, None, &mut String::new(), &mut self.ids);
    }

    fn lookup(&self, target: &Target, reference: &str, at: &str) -> Result<&Value> {
        self.docs
            .get(&target.file)
            .and_then(|doc| doc.pointer(&target.pointer))
            .ok_or_else(|| {
                self.error(
                    at,
                    format!("`{}` does not resolve to anything", excerpt(reference)),
                )
            })
    }

    /// An error at the `$ref` written at `at`: `#<pointer>` in the root document,
    /// `<file>#<pointer>` in another file.
    fn error(&self, at: &str, message: String) -> Error {
        Error::Invalid {
            path: self.root_path.clone(),
            location: format!("{}/$ref", excerpt_pointer(at)),
            message,
        }
    }

    /// The error of a reference written at `at` that leads outside the allowed folders: never
    /// skipped, as the user has to allow the folder.
    fn refused(&self, at: &str, message: String) -> Error {
        Error::Refused {
            path: self.root_path.clone(),
            location: format!("{}/$ref", excerpt_pointer(at)),
            message,
        }
    }
}

/// The part of the document at `keys` (written at `at`) that is skipped as a whole when a
/// reference inside it cannot be followed: an operation, a path item or a component.
fn part(schemas_at: &str, keys: &[String], at: &str) -> Option<Part> {
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let swagger = schemas_at == "/definitions";
    let removed = |section: &str, name: &str| Part {
        what: format!("skipped {at}"),
        removed: Some(format!("#/components/{section}/{}", pointer_token(name))),
    };
    Some(match keys.as_slice() {
        ["paths", template, method] if METHODS.contains(method) => Part {
            what: format!(
                "skipped operation {} {template} ({at})",
                method.to_ascii_uppercase()
            ),
            removed: Some(String::new()),
        },
        ["paths", template] => Part {
            what: format!("skipped every operation of {template} ({at})"),
            removed: Some(String::new()),
        },
        ["components", "schemas", _] | ["definitions", _] => Part {
            what: format!("read schema {at} as any JSON value"),
            removed: None,
        },
        ["components", section, name] if !swagger => removed(section, name),
        [section @ ("parameters" | "responses"), name] if swagger => removed(section, name),
        _ => return None,
    })
}

/// A part of the document skipped whole.
struct Part {
    /// What is done, for the warning.
    what: String,
    /// The reference by which the part is known once removed (empty for a part no reference
    /// names); `None` for a schema, which is replaced by `{}` instead (any value).
    removed: Option<String>,
}

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

enum Replacement {
    Ref(String),
    Inline(Value),
}

/// A name for a schema copied from `target`: its anchor, the last pointer token, or the
/// file's stem.
fn suggested_name(target: &Target) -> String {
    if let Some(anchor) = &target.anchor {
        return anchor.clone();
    }
    match target.pointer.rsplit('/').next().filter(|s| !s.is_empty()) {
        Some(last) if last.parse::<usize>().is_err() => unescape(last),
        _ => target
            .file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    }
}

/// A path in a message: the names in it may come from the spec, so each is cut to an excerpt.
fn shown(path: &Path) -> String {
    excerpt_pointer(&path.display().to_string())
}

/// How many JSON values `value` holds, itself included.
fn size(value: &Value) -> usize {
    match value {
        Value::Object(map) => 1 + map.values().map(size).sum::<usize>(),
        Value::Array(items) => 1 + items.iter().map(size).sum::<usize>(),
        _ => 1,
    }
}

/// An absolute path with `.` and `..` resolved lexically.
fn normalized(path: &Path) -> PathBuf {
    use std::path::Component;
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let mut out = PathBuf::new();
    for component in absolute.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Where a path that may not exist would be: `.` and `..` resolved lexically, and the deepest
/// folder of it that exists canonicalised (so it compares with canonical folders).
fn lexical(path: &Path) -> PathBuf {
    let out = normalized(path);
    let mut missing = Vec::new();
    let mut existing = out.as_path();
    while !existing.exists() {
        let (Some(parent), Some(name)) = (existing.parent(), existing.file_name()) else {
            return out;
        };
        missing.push(name.to_owned());
        existing = parent;
    }
    let mut found = canonical(existing);
    found.extend(missing.iter().rev());
    found
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(path: &str) -> Vec<String> {
        path.split('/').map(str::to_owned).collect()
    }

    #[test]
    fn schema_positions_are_told_from_other_objects() {
        assert!(is_schema_position(&keys("components/schemas/Pet")));
        assert!(is_schema_position(&keys(
            "components/schemas/Pet/properties/name"
        )));
        assert!(is_schema_position(&keys(
            "components/schemas/Pet/properties/properties"
        )));
        assert!(is_schema_position(&keys(
            "paths/~1a/get/parameters/[]/schema"
        )));
        assert!(is_schema_position(&keys("definitions/Pet")));
        assert!(is_schema_position(&keys("definitions/Pet/allOf/[]")));
        assert!(!is_schema_position(&keys("paths/~1a/get/parameters/[]")));
        assert!(!is_schema_position(&keys("paths/~1a/get/responses/200")));
        assert!(!is_schema_position(&keys("components/parameters/limit")));
        assert!(!is_schema_position(&keys("paths/~1a")));
    }

    #[test]
    fn plain_component_references_are_left_alone() {
        assert!(is_plain_component(
            "#/components/schemas/Pet",
            "/components/schemas"
        ));
        assert!(is_plain_component(
            "#/components/parameters/limit",
            "/components/schemas"
        ));
        assert!(!is_plain_component(
            "#/components/schemas/Pet/properties/a",
            "/components/schemas"
        ));
        assert!(!is_plain_component("pet.yaml#/Pet", "/components/schemas"));
        assert!(is_plain_component("#/definitions/Pet", "/definitions"));
        assert!(!is_plain_component(
            "#/definitions/Pet/items",
            "/definitions"
        ));
    }
}
