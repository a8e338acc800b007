//! OpenAPI 3.0 into the IR.

use std::collections::BTreeMap;
use std::path::Path;

use indexmap::IndexMap;
use openapiv3::{OpenAPI, ReferenceOr, Schema};

use crate::Result;
use crate::error::{Error, excerpt, excerpt_pointer, pointer_token};
use crate::ir::names::{RESERVED_TYPES, Scope, pascal_ident, snake_ident};
use crate::ir::{
    Api, TypeDef, TypeId, TypeKind, TypeRef, box_recursive_fields, merge_identical_types,
};

use super::ReadOptions;
use super::skips::Skips;

mod operations;
mod schemas;
mod security;

use schemas::describe;

const SCHEMA_PREFIX: &str = "#/components/schemas/";

/// Names the generated client has for itself (`templates/client.rs`, and the derived `clone`
/// and `fmt`), which operations must not take.
pub(crate) const CLIENT_METHODS: &[&str] = &[
    "new",
    "from_env",
    "from_http",
    "with_grpc",
    "http",
    "call",
    "clone",
    "fmt",
];

/// Reads an OpenAPI 3.0 document; the schemas and operations that cannot be read are skipped
/// by `skips` (or fail the whole, when strict).
pub(super) fn read(path: &Path, doc: &OpenAPI, options: &ReadOptions, skips: Skips) -> Result<Api> {
    let mut reader = Reader {
        path,
        doc,
        types: Vec::new(),
        by_ref: BTreeMap::new(),
        type_names: Scope::with_reserved(RESERVED_TYPES),
        skips,
        subtypes: BTreeMap::new(),
        error_bodies: Vec::new(),
    };
    reader.declare_components();
    reader.subtypes = reader.find_subtypes();
    reader.define_components()?;
    let operations = reader.operations()?;
    reader.order_unions();
    let security_schemes = reader.security_schemes()?;
    let mut api = Api {
        crate_name: options.crate_name.clone(),
        service: snake_ident(&options.crate_name, "service")
            .trim_start_matches("r#")
            .to_owned(),
        title: doc.info.title.clone(),
        version: doc.info.version.clone(),
        description: doc.info.description.clone(),
        default_base_url: doc.servers.first().map(|s| s.url.clone()),
        types: reader
            .types
            .into_iter()
            .map(|t| t.expect("every declared type is defined"))
            .collect(),
        operations,
        notes: Vec::new(),
        warnings: reader.skips.warnings,
        grpc_descriptor: None,
        security_schemes,
    };
    merge_identical_types(&mut api);
    box_recursive_fields(&mut api);
    Ok(api)
}

struct Reader<'a> {
    path: &'a Path,
    doc: &'a OpenAPI,
    /// `None` while a type is declared but not yet defined.
    types: Vec<Option<TypeDef>>,
    /// `#/components/schemas/X` to its type.
    by_ref: BTreeMap<String, TypeId>,
    type_names: Scope,
    /// The parts skipped so far.
    skips: Skips,
    /// Base schemas with a `discriminator` (not a `oneOf`/`anyOf`) to the schemas that extend
    /// them with `allOf` or that its mapping names, in spec order: each base becomes an enum
    /// of them. By `#/components/schemas/X` reference.
    subtypes: BTreeMap<String, Vec<String>>,
    /// The inline error response schemas met so far and the type made for each, shared by
    /// every operation with the same schema.
    error_bodies: Vec<ErrorBody<'a>>,
}

/// An inline error response schema and its type.
struct ErrorBody<'a> {
    schema: &'a Schema,
    ty: TypeRef,
    /// The pointer of the first response with it, under which its type was made.
    origin: String,
    /// The operations (request type names) and statuses that have it, in spec order.
    uses: Vec<(String, String)>,
}

impl<'a> Reader<'a> {
    pub(super) fn schemas(&self) -> Option<&'a IndexMap<String, ReferenceOr<Schema>>> {
        self.doc.components.as_ref().map(|c| &c.schemas)
    }

    /// Every component schema gets its name first, so that inline types never take them.
    fn declare_components(&mut self) {
        for name in self.schemas().into_iter().flat_map(|s| s.keys()) {
            let id = self.declare(name, format!("{SCHEMA_PREFIX}{name}"));
            self.by_ref.insert(format!("{SCHEMA_PREFIX}{name}"), id);
        }
    }

    pub(super) fn declare(&mut self, raw_name: &str, origin: String) -> TypeId {
        let name = self
            .type_names
            .claim(pascal_ident(raw_name, "Type", "Type"));
        self.types.push(Some(TypeDef {
            name,
            origin,
            doc: None,
            kind: TypeKind::Alias(TypeRef::Any),
            merged: false,
        }));
        TypeId(self.types.len() - 1)
    }

    fn define_components(&mut self) -> Result<()> {
        let Some(schemas) = self.schemas() else {
            return Ok(());
        };
        for (name, schema) in schemas {
            let id = self.by_ref[&format!("{SCHEMA_PREFIX}{name}")];
            let pointer = format!("#/components/schemas/{}", pointer_token(name));
            let reference = format!("{SCHEMA_PREFIX}{name}");
            let ty = match schema {
                ReferenceOr::Reference { reference } => self.resolve(reference, &pointer),
                ReferenceOr::Item(schema) if self.subtypes.contains_key(&reference) => {
                    self.set_doc(id, schema);
                    Ok(self.subtype_union(schema, &reference, id))
                }
                ReferenceOr::Item(schema) => {
                    self.set_doc(id, schema);
                    self.schema(schema, name, &pointer, Some(id))
                }
            };
            match ty {
                Ok(ty) if ty != TypeRef::Named(id) => self.kind_of(id, TypeKind::Alias(ty)),
                Ok(_) => {}
                Err(err) => {
                    self.skips
                        .skip(format!("read schema {pointer} as any JSON value"), err)?;
                    self.kind_of(id, TypeKind::Alias(TypeRef::Any));
                }
            }
        }
        Ok(())
    }

    pub(super) fn kind_of(&mut self, id: TypeId, kind: TypeKind) {
        if let Some(def) = self.types[id.0].as_mut() {
            def.kind = kind;
        }
    }

    pub(super) fn set_doc(&mut self, id: TypeId, schema: &Schema) {
        let doc = describe(schema);
        if let Some(def) = self.types[id.0].as_mut() {
            def.doc = doc;
        }
    }

    pub(super) fn resolve(&self, reference: &str, pointer: &str) -> Result<TypeRef> {
        match self.by_ref.get(reference) {
            Some(id) => Ok(TypeRef::Named(*id)),
            None => Err(self.bad_ref(reference, pointer, "schemas")),
        }
    }

    /// The error of a `$ref` written at `pointer` where a component of `section` is expected,
    /// which does not name one: what it names instead, or that it names nothing.
    pub(super) fn bad_ref(&self, reference: &str, pointer: &str, section: &str) -> Error {
        let location = format!("{}/$ref", excerpt_pointer(pointer));
        if !reference.starts_with('#') {
            return Error::Unsupported {
                path: self.path.to_owned(),
                location,
                message: format!(
                    "`{}` points into another file; this version reads one file",
                    excerpt(reference)
                ),
            };
        }
        let expected = kind_name(section);
        let quoted = excerpt(reference);
        let message = if self.skips.was_removed(reference) {
            format!("`{quoted}` cannot be read (see its warning), so neither can this")
        } else if let Some(found) = self.component_section(reference) {
            format!(
                "`{quoted}` is {} {}, where {} {expected} is expected: the shapes differ",
                article(kind_name(found)),
                kind_name(found),
                article(expected),
            )
        } else {
            format!("`{quoted}` does not resolve to anything in this document")
        };
        Error::Invalid {
            path: self.path.to_owned(),
            location,
            message,
        }
    }

    /// The section of `components` that holds what `reference` names, when it names an entry
    /// of one.
    fn component_section(&self, reference: &str) -> Option<&'static str> {
        let (section, name) = reference.strip_prefix("#/components/")?.split_once('/')?;
        let name = name.replace("~1", "/").replace("~0", "~");
        let c = self.doc.components.as_ref()?;
        let (section, found) = match section {
            "schemas" => ("schemas", c.schemas.contains_key(&name)),
            "responses" => ("responses", c.responses.contains_key(&name)),
            "parameters" => ("parameters", c.parameters.contains_key(&name)),
            "examples" => ("examples", c.examples.contains_key(&name)),
            "requestBodies" => ("requestBodies", c.request_bodies.contains_key(&name)),
            "headers" => ("headers", c.headers.contains_key(&name)),
            "securitySchemes" => ("securitySchemes", c.security_schemes.contains_key(&name)),
            "links" => ("links", c.links.contains_key(&name)),
            "callbacks" => ("callbacks", c.callbacks.contains_key(&name)),
            _ => return None,
        };
        found.then_some(section)
    }

    /// The item a `$ref` to `#/components/{section}/...` names, following chains of references.
    pub(super) fn component<T>(
        &self,
        item: &'a ReferenceOr<T>,
        section: &str,
        pick: fn(&'a openapiv3::Components) -> &'a IndexMap<String, ReferenceOr<T>>,
        pointer: &str,
    ) -> Result<&'a T> {
        let mut item = item;
        for _ in 0..32 {
            let reference = match item {
                ReferenceOr::Item(found) => return Ok(found),
                ReferenceOr::Reference { reference } => reference,
            };
            let name = reference
                .strip_prefix("#/components/")
                .and_then(|r| r.strip_prefix(section))
                .and_then(|r| r.strip_prefix('/'));
            match (name, self.doc.components.as_ref()) {
                (Some(name), Some(components)) => match pick(components).get(name) {
                    Some(next) => item = next,
                    None => return Err(self.bad_ref(reference, pointer, section)),
                },
                _ => return Err(self.bad_ref(reference, pointer, section)),
            }
        }
        Err(Error::Invalid {
            path: self.path.to_owned(),
            location: excerpt_pointer(pointer),
            message: format!("the `$ref`s of these {section} form a cycle"),
        })
    }
}

/// What one entry of a section of `components` is, in words.
fn kind_name(section: &str) -> &'static str {
    match section {
        "schemas" => "schema",
        "responses" => "response",
        "parameters" => "parameter",
        "examples" => "example",
        "requestBodies" => "request body",
        "headers" => "header",
        "securitySchemes" => "security scheme",
        "links" => "link",
        "callbacks" => "callback",
        _ => "component",
    }
}

fn article(noun: &str) -> &'static str {
    if noun.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

pub(super) fn join_doc(summary: Option<&str>, description: Option<&str>) -> Option<String> {
    let parts: Vec<&str> = [summary, description]
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    match parts.as_slice() {
        [] => None,
        [a, b] if a == b => Some((*a).to_owned()),
        _ => Some(parts.join("\n\n")),
    }
}
