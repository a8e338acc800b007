//! OpenAPI 3.0 into the IR.

use std::collections::BTreeMap;
use std::path::Path;

use indexmap::IndexMap;
use openapiv3::{OpenAPI, ReferenceOr, Schema};

use crate::Result;
use crate::error::{Error, excerpt, excerpt_pointer, pointer_token};
use crate::ir::names::{RESERVED_TYPES, Scope, pascal_ident, snake_ident};
use crate::ir::{Api, TypeDef, TypeId, TypeKind, TypeRef, box_recursive_fields};

use super::ReadOptions;

mod operations;
mod schemas;
mod security;

use schemas::describe;

const SCHEMA_PREFIX: &str = "#/components/schemas/";

/// Names the generated client has for itself, which operations must not take.
pub(crate) const CLIENT_METHODS: &[&str] = &[
    "new",
    "from_env",
    "from_http",
    "http",
    "call",
    "clone",
    "fmt",
];

/// Reads an OpenAPI 3.0 document.
pub(super) fn read(path: &Path, doc: &OpenAPI, options: &ReadOptions) -> Result<Api> {
    let mut reader = Reader {
        path,
        doc,
        types: Vec::new(),
        by_ref: BTreeMap::new(),
        type_names: Scope::with_reserved(RESERVED_TYPES),
    };
    reader.declare_components();
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
        grpc_descriptor: None,
        security_schemes,
    };
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
            let ty = match schema {
                ReferenceOr::Reference { reference } => self.resolve(reference, &pointer)?,
                ReferenceOr::Item(schema) => {
                    self.set_doc(id, schema);
                    self.schema(schema, name, &pointer, Some(id))?
                }
            };
            if ty != TypeRef::Named(id) {
                self.kind_of(id, TypeKind::Alias(ty));
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
            None => Err(self.bad_ref(reference, pointer)),
        }
    }

    pub(super) fn bad_ref(&self, reference: &str, pointer: &str) -> Error {
        if reference.starts_with('#') {
            Error::Invalid {
                path: self.path.to_owned(),
                location: format!("{}/$ref", excerpt_pointer(pointer)),
                message: format!(
                    "`{}` does not resolve to anything in this document",
                    excerpt(reference)
                ),
            }
        } else {
            Error::Unsupported {
                path: self.path.to_owned(),
                location: format!("{}/$ref", excerpt_pointer(pointer)),
                message: format!(
                    "`{}` points into another file; this version reads one file",
                    excerpt(reference)
                ),
            }
        }
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
                    None => return Err(self.bad_ref(reference, pointer)),
                },
                _ => return Err(self.bad_ref(reference, pointer)),
            }
        }
        Err(Error::Invalid {
            path: self.path.to_owned(),
            location: excerpt_pointer(pointer),
            message: format!("the `$ref`s of these {section} form a cycle"),
        })
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
