//! Generating part of an API: the operations chosen by tag or by id (`codegen gen --tag T
//! --operation ID`), and only the types the generated operations reach: a schema no operation
//! takes or returns (GitHub's description holds 2,000 webhook payloads no endpoint uses) is left
//! out unless asked for (`--all-schemas`), but for a description without operations.
//!
//! Type names are chosen before the selection, from the whole description, so a type keeps its
//! name whatever else is selected: widening a selection adds code and renames nothing.

use std::collections::BTreeSet;

use super::{Api, Operation, TypeDef, TypeId, TypeKind, TypeRef};

/// Which operations to generate (no patterns: all of them), and which schemas.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Glob patterns (`*`, `?`, `[...]`) matched against each operation's tags: its OpenAPI
    /// `tags`, or the full name of its protobuf service.
    pub tags: Vec<String>,
    /// Glob patterns matched against each operation's id: its `operationId` (or the name made
    /// from its method and path), or `Service.Method` for protobuf.
    pub operations: Vec<String>,
    /// Whether the schemas no generated operation uses are generated too.
    pub all_schemas: bool,
}

impl Selection {
    /// Whether it selects every operation.
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty() && self.operations.is_empty()
    }
}

/// A pattern as given, and what it matches.
struct Pattern<'a> {
    flag: &'static str,
    text: &'a str,
    glob: glob::Pattern,
    matched: bool,
}

impl<'a> Pattern<'a> {
    fn new(flag: &'static str, text: &'a str) -> Result<Self, String> {
        let glob = glob::Pattern::new(text)
            .map_err(|e| format!("{flag} `{text}` is not a pattern: {e}"))?;
        Ok(Self {
            flag,
            text,
            glob,
            matched: false,
        })
    }
}

/// Keeps the operations `selection` chooses (those with a tag matching a `--tag` pattern, and
/// those whose id matches an `--operation` pattern; all without patterns) and the types they
/// reach (all with `all_schemas`), and drops the rest. Every pattern must match something; the
/// error says which does not and what there is.
pub fn select(api: &mut Api, selection: &Selection) -> Result<(), String> {
    let total = api.operations.len();
    if !selection.is_empty() {
        choose_operations(api, selection)?;
    }
    let types = api.types.len();
    let schemes = api.security_schemes.len();
    // A description without operations is there for its schemas.
    if !selection.all_schemas && !api.operations.is_empty() {
        keep_reached_types(api);
    }
    if !selection.is_empty() {
        let schemes = match schemes {
            0 => String::new(),
            n => format!(
                " and {} of {n} security schemes",
                api.security_schemes.len()
            ),
        };
        api.notes.push(format!(
            "generated {} of {total} operations (the selection is recorded in Cargo.toml), with the {} types{schemes} they use",
            api.operations.len(),
            api.types.len(),
        ));
    } else if api.types.len() < types {
        api.notes.push(format!(
            "left out {} of {types} types, which no operation uses (--all-schemas keeps them)",
            types - api.types.len()
        ));
    }
    Ok(())
}

/// Keeps the operations that `selection`'s patterns choose.
fn choose_operations(api: &mut Api, selection: &Selection) -> Result<(), String> {
    let mut tags = selection
        .tags
        .iter()
        .map(|t| Pattern::new("--tag", t))
        .collect::<Result<Vec<_>, _>>()?;
    let mut ids = selection
        .operations
        .iter()
        .map(|o| Pattern::new("--operation", o))
        .collect::<Result<Vec<_>, _>>()?;
    let total = api.operations.len();
    let mut keep = Vec::with_capacity(total);
    for op in &api.operations {
        let mut chosen = false;
        for pattern in &mut tags {
            if op.tags.iter().any(|tag| pattern.glob.matches(tag)) {
                pattern.matched = true;
                chosen = true;
            }
        }
        for pattern in &mut ids {
            if pattern.glob.matches(&op.wire_name) {
                pattern.matched = true;
                chosen = true;
            }
        }
        keep.push(chosen);
    }
    if let Some(p) = tags.iter().find(|p| !p.matched) {
        let known: BTreeSet<&str> = api
            .operations
            .iter()
            .flat_map(|op| op.tags.iter().map(String::as_str))
            .collect();
        return Err(if known.is_empty() {
            format!(
                "{} `{}` matches no operation: this API tags none of its operations; choose them with --operation",
                p.flag, p.text
            )
        } else {
            format!(
                "{} `{}` matches no operation; the tags of this API are: {}",
                p.flag,
                p.text,
                known.into_iter().collect::<Vec<_>>().join(", ")
            )
        });
    }
    if let Some(p) = ids.iter().find(|p| !p.matched) {
        let some: Vec<&str> = api
            .operations
            .iter()
            .take(5)
            .map(|op| op.wire_name.as_str())
            .collect();
        return Err(format!(
            "{} `{}` matches no operation id; ids of this API look like {} ({total} in all)",
            p.flag,
            p.text,
            some.join(", ")
        ));
    }
    let mut kept = keep.iter();
    api.operations.retain(|_| *kept.next().unwrap_or(&false));
    let used: BTreeSet<&str> = api
        .operations
        .iter()
        .flat_map(|op| op.security.iter().flatten().map(String::as_str))
        .collect();
    api.security_schemes
        .retain(|s| used.contains(s.name.as_str()));
    Ok(())
}

/// Keeps the types the operations reach.
fn keep_reached_types(api: &mut Api) {
    let reached = reached_types(api);
    // The new index of each kept type.
    let mut index = vec![None; api.types.len()];
    for (new, old) in reached.iter().enumerate() {
        index[old.0] = Some(TypeId(new));
    }
    let types = std::mem::take(&mut api.types);
    api.types = types
        .into_iter()
        .enumerate()
        .filter(|(old, _)| index[*old].is_some())
        .map(|(_, mut def)| {
            renumber_def(&mut def, &index);
            def
        })
        .collect();
    for op in &mut api.operations {
        each_ref_of_operation(op, &mut |ty| renumber(ty, &index));
    }
}

/// The types the operations reach, directly or through other types, in table order.
fn reached_types(api: &mut Api) -> BTreeSet<TypeId> {
    let mut todo = Vec::new();
    for op in &mut api.operations {
        each_ref_of_operation(op, &mut |ty| named_in(ty, &mut todo));
    }
    let mut reached = BTreeSet::new();
    while let Some(id) = todo.pop() {
        if !reached.insert(id) {
            continue;
        }
        each_ref_of_kind(&api.types[id.0].kind, &mut |ty| named_in(ty, &mut todo));
    }
    reached
}

fn named_in(ty: &TypeRef, out: &mut Vec<TypeId>) {
    match ty {
        TypeRef::Named(id) => out.push(*id),
        TypeRef::Vec(inner) | TypeRef::Map(inner) | TypeRef::Box(inner) => named_in(inner, out),
        TypeRef::Tuple(items) => items.iter().for_each(|t| named_in(t, out)),
        TypeRef::Primitive(_) | TypeRef::Any => {}
    }
}

fn renumber(ty: &mut TypeRef, index: &[Option<TypeId>]) {
    match ty {
        TypeRef::Named(id) => {
            *id = index[id.0].expect("every type a kept one reaches is kept");
        }
        TypeRef::Vec(inner) | TypeRef::Map(inner) | TypeRef::Box(inner) => renumber(inner, index),
        TypeRef::Tuple(items) => items.iter_mut().for_each(|t| renumber(t, index)),
        TypeRef::Primitive(_) | TypeRef::Any => {}
    }
}

fn renumber_def(def: &mut TypeDef, index: &[Option<TypeId>]) {
    match &mut def.kind {
        TypeKind::Struct { fields, additional } => {
            for f in fields {
                renumber(&mut f.ty, index);
            }
            if let Some(a) = additional {
                renumber(a, index);
            }
        }
        TypeKind::Union { variants, .. } => {
            for v in variants {
                renumber(&mut v.ty, index);
            }
        }
        TypeKind::Alias(ty) | TypeKind::Newtype(ty) => renumber(ty, index),
        TypeKind::Enum { .. } => {}
    }
}

fn each_ref_of_kind(kind: &TypeKind, f: &mut impl FnMut(&TypeRef)) {
    match kind {
        TypeKind::Struct { fields, additional } => {
            fields.iter().for_each(|field| f(&field.ty));
            if let Some(a) = additional {
                f(a);
            }
        }
        TypeKind::Union { variants, .. } => variants.iter().for_each(|v| f(&v.ty)),
        TypeKind::Alias(ty) | TypeKind::Newtype(ty) => f(ty),
        TypeKind::Enum { .. } => {}
    }
}

/// Every type an operation names: its parameters, body, outputs and error bodies.
fn each_ref_of_operation(op: &mut Operation, f: &mut impl FnMut(&mut TypeRef)) {
    for p in &mut op.params {
        f(&mut p.ty);
    }
    if let Some(body) = &mut op.body {
        f(&mut body.ty);
    }
    f(&mut op.output.ty);
    if let Some(by_status) = &mut op.output.by_status {
        for v in &mut by_status.variants {
            f(&mut v.ty);
        }
    }
    for (_, ty) in &mut op.output.errors {
        f(ty);
    }
}
