//! OpenAPI 3.0 into the IR.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use indexmap::IndexMap;
use openapiv3::{
    AdditionalProperties, OpenAPI, Parameter, ReferenceOr, RequestBody, Response, Schema,
    SchemaKind, StatusCode, StringFormat, Type, VariantOrUnknownOrEmpty,
};

use crate::Result;
use crate::error::{Error, pointer_token};
use crate::ir::names::{RESERVED_TYPES, Scope, pascal_ident, snake_ident};
use crate::ir::{
    Api, Body, BodyEncoding, EnumVariant, Field, Operation, Output, Param, ParamLocation, PathPart,
    Primitive, TypeDef, TypeId, TypeKind, TypeRef, UnionVariant, box_recursive_fields,
};

use super::ReadOptions;

const SCHEMA_PREFIX: &str = "#/components/schemas/";

/// Names the generated client has for itself, which operations must not take.
const CLIENT_METHODS: &[&str] = &["new", "from_http", "http", "call", "clone", "fmt"];

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
    fn schemas(&self) -> Option<&'a IndexMap<String, ReferenceOr<Schema>>> {
        self.doc.components.as_ref().map(|c| &c.schemas)
    }

    /// Every component schema gets its name first, so that inline types never take them.
    fn declare_components(&mut self) {
        for name in self.schemas().into_iter().flat_map(|s| s.keys()) {
            let id = self.declare(name, format!("{SCHEMA_PREFIX}{name}"));
            self.by_ref.insert(format!("{SCHEMA_PREFIX}{name}"), id);
        }
    }

    fn declare(&mut self, raw_name: &str, origin: String) -> TypeId {
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

    fn kind_of(&mut self, id: TypeId, kind: TypeKind) {
        if let Some(def) = self.types[id.0].as_mut() {
            def.kind = kind;
        }
    }

    fn set_doc(&mut self, id: TypeId, schema: &Schema) {
        let doc = describe(schema);
        if let Some(def) = self.types[id.0].as_mut() {
            def.doc = doc;
        }
    }

    /// The type of a schema or reference. `hint` names a type created for it.
    fn schema_or_ref(
        &mut self,
        schema: &ReferenceOr<Schema>,
        hint: &str,
        pointer: &str,
    ) -> Result<TypeRef> {
        match schema {
            ReferenceOr::Reference { reference } => self.resolve(reference, pointer),
            ReferenceOr::Item(schema) => self.schema(schema, hint, pointer, None),
        }
    }

    fn boxed_schema_or_ref(
        &mut self,
        schema: &ReferenceOr<Box<Schema>>,
        hint: &str,
        pointer: &str,
    ) -> Result<TypeRef> {
        match schema {
            ReferenceOr::Reference { reference } => self.resolve(reference, pointer),
            ReferenceOr::Item(schema) => self.schema(schema, hint, pointer, None),
        }
    }

    fn resolve(&self, reference: &str, pointer: &str) -> Result<TypeRef> {
        match self.by_ref.get(reference) {
            Some(id) => Ok(TypeRef::Named(*id)),
            None => Err(self.bad_ref(reference, pointer)),
        }
    }

    fn bad_ref(&self, reference: &str, pointer: &str) -> Error {
        if reference.starts_with('#') {
            Error::Invalid {
                path: self.path.to_owned(),
                location: format!("{pointer}/$ref"),
                message: format!("`{reference}` does not resolve to anything in this document"),
            }
        } else {
            Error::Unsupported {
                path: self.path.to_owned(),
                location: format!("{pointer}/$ref"),
                message: format!(
                    "`{reference}` points into another file; this version reads one file"
                ),
            }
        }
    }

    /// A new named type: into `slot` when given (a component being defined), else a fresh one.
    fn named(
        &mut self,
        slot: Option<TypeId>,
        hint: &str,
        pointer: &str,
        doc: Option<String>,
        kind: TypeKind,
    ) -> TypeRef {
        let id = slot.unwrap_or_else(|| self.declare(hint, pointer.to_owned()));
        if let Some(def) = self.types[id.0].as_mut() {
            if doc.is_some() {
                def.doc = doc;
            }
            def.kind = kind;
        }
        TypeRef::Named(id)
    }

    fn schema(
        &mut self,
        schema: &Schema,
        hint: &str,
        pointer: &str,
        slot: Option<TypeId>,
    ) -> Result<TypeRef> {
        let doc = describe(schema);
        Ok(match &schema.schema_kind {
            SchemaKind::Type(Type::String(s)) => {
                let values: Vec<&str> =
                    s.enumeration.iter().flatten().map(String::as_str).collect();
                if !values.is_empty() {
                    let kind = string_enum(&values);
                    return Ok(self.named(slot, hint, pointer, doc, kind));
                }
                TypeRef::Primitive(string_format(&s.format))
            }
            SchemaKind::Type(Type::Integer(i)) => TypeRef::Primitive(match &i.format {
                VariantOrUnknownOrEmpty::Item(openapiv3::IntegerFormat::Int32) => Primitive::I32,
                _ => Primitive::I64,
            }),
            SchemaKind::Type(Type::Number(n)) => TypeRef::Primitive(match &n.format {
                VariantOrUnknownOrEmpty::Item(openapiv3::NumberFormat::Float) => Primitive::F32,
                _ => Primitive::F64,
            }),
            SchemaKind::Type(Type::Boolean(_)) => TypeRef::Primitive(Primitive::Bool),
            SchemaKind::Type(Type::Array(a)) => match &a.items {
                Some(items) => {
                    let item = self.boxed_schema_or_ref(
                        items,
                        &format!("{hint}Item"),
                        &format!("{pointer}/items"),
                    )?;
                    TypeRef::Vec(Box::new(item))
                }
                None => TypeRef::Vec(Box::new(TypeRef::Any)),
            },
            SchemaKind::Type(Type::Object(o)) => {
                return self.object(
                    &o.properties,
                    &o.required,
                    o.additional_properties.as_ref(),
                    hint,
                    pointer,
                    slot,
                    doc,
                );
            }
            SchemaKind::OneOf { one_of: variants } | SchemaKind::AnyOf { any_of: variants } => {
                let key = if matches!(schema.schema_kind, SchemaKind::OneOf { .. }) {
                    "oneOf"
                } else {
                    "anyOf"
                };
                return self.union(variants, hint, &format!("{pointer}/{key}"), slot, doc);
            }
            SchemaKind::AllOf { all_of } => {
                return self.all_of(all_of, &[], &IndexMap::new(), hint, pointer, slot, doc);
            }
            SchemaKind::Not { .. } => TypeRef::Any,
            SchemaKind::Any(any) => return self.any_schema(any, hint, pointer, slot, doc),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn object(
        &mut self,
        properties: &IndexMap<String, ReferenceOr<Box<Schema>>>,
        required: &[String],
        additional: Option<&AdditionalProperties>,
        hint: &str,
        pointer: &str,
        slot: Option<TypeId>,
        doc: Option<String>,
    ) -> Result<TypeRef> {
        let additional = match additional {
            Some(AdditionalProperties::Schema(schema)) => {
                let schema: &ReferenceOr<Schema> = schema;
                Some(self.schema_or_ref(
                    schema,
                    &format!("{hint}Value"),
                    &format!("{pointer}/additionalProperties"),
                )?)
            }
            Some(AdditionalProperties::Any(true)) => Some(TypeRef::Any),
            Some(AdditionalProperties::Any(false)) => None,
            None if properties.is_empty() => Some(TypeRef::Any),
            None => None,
        };
        if properties.is_empty() {
            return Ok(match (additional, slot) {
                (Some(value), None) => TypeRef::Map(Box::new(value)),
                (Some(value), Some(id)) => {
                    self.kind_of(id, TypeKind::Alias(TypeRef::Map(Box::new(value))));
                    TypeRef::Named(id)
                }
                (None, _) => self.named(
                    slot,
                    hint,
                    pointer,
                    doc,
                    TypeKind::Struct {
                        fields: Vec::new(),
                        additional: None,
                    },
                ),
            });
        }
        // Claim the type's name before its fields' types take names derived from it.
        let id = match slot {
            Some(id) => id,
            None => self.declare(hint, pointer.to_owned()),
        };
        let type_name = self.types[id.0]
            .as_ref()
            .map(|t| t.name.clone())
            .unwrap_or_default();
        let fields = self.fields(properties, required, &type_name, pointer)?;
        Ok(self.named(
            Some(id),
            hint,
            pointer,
            doc,
            TypeKind::Struct { fields, additional },
        ))
    }

    fn fields(
        &mut self,
        properties: &IndexMap<String, ReferenceOr<Box<Schema>>>,
        required: &[String],
        type_name: &str,
        pointer: &str,
    ) -> Result<Vec<Field>> {
        let mut names = Scope::with_reserved(&["additional_properties"]);
        let mut fields = Vec::with_capacity(properties.len());
        for (wire, schema) in properties {
            let field_pointer = format!("{pointer}/properties/{}", pointer_token(wire));
            let hint = format!("{type_name}{}", pascal_ident(wire, "Field", "Field"));
            let ty = self.boxed_schema_or_ref(schema, &hint, &field_pointer)?;
            let (nullable, doc) = match schema {
                ReferenceOr::Item(s) => (s.schema_data.nullable, describe(s)),
                ReferenceOr::Reference { reference } => (self.referenced_nullable(reference), None),
            };
            fields.push(Field {
                name: names.claim(snake_ident(wire, "field")),
                wire_name: wire.clone(),
                ty,
                required: required.iter().any(|r| r == wire),
                nullable,
                doc,
            });
        }
        Ok(fields)
    }

    fn referenced_nullable(&self, reference: &str) -> bool {
        let name = reference.strip_prefix(SCHEMA_PREFIX).unwrap_or_default();
        matches!(self.schemas().and_then(|s| s.get(name)), Some(ReferenceOr::Item(s)) if s.schema_data.nullable)
    }

    fn union(
        &mut self,
        variants: &[ReferenceOr<Schema>],
        hint: &str,
        pointer: &str,
        slot: Option<TypeId>,
        doc: Option<String>,
    ) -> Result<TypeRef> {
        if let [only] = variants {
            return self.schema_or_ref(only, hint, &format!("{pointer}/0"));
        }
        if variants.is_empty() {
            return Ok(TypeRef::Any);
        }
        let id = match slot {
            Some(id) => id,
            None => self.declare(hint, pointer.to_owned()),
        };
        let type_name = self.types[id.0]
            .as_ref()
            .map(|t| t.name.clone())
            .unwrap_or_default();
        let mut names = Scope::default();
        let mut out = Vec::with_capacity(variants.len());
        for (index, variant) in variants.iter().enumerate() {
            let variant_hint = format!("{type_name}Variant{index}");
            let ty = self.schema_or_ref(variant, &variant_hint, &format!("{pointer}/{index}"))?;
            let name = names.claim(self.variant_name(&ty, index));
            out.push(UnionVariant { name, ty });
        }
        Ok(self.named(
            Some(id),
            hint,
            pointer,
            doc,
            TypeKind::Union { variants: out },
        ))
    }

    /// A variant is named after the type it holds.
    fn variant_name(&self, ty: &TypeRef, index: usize) -> String {
        match ty {
            TypeRef::Named(id) => self.types[id.0]
                .as_ref()
                .map(|t| t.name.clone())
                .unwrap_or_default(),
            TypeRef::Primitive(p) => format!("{p:?}"),
            TypeRef::Vec(inner) => format!("{}List", self.variant_name(inner, index)),
            TypeRef::Map(inner) => format!("{}Map", self.variant_name(inner, index)),
            TypeRef::Box(inner) => self.variant_name(inner, index),
            TypeRef::Any => format!("Variant{index}"),
        }
    }

    /// `allOf`: the properties of every part, merged into one struct.
    #[allow(clippy::too_many_arguments)]
    fn all_of(
        &mut self,
        parts: &[ReferenceOr<Schema>],
        own_required: &[String],
        own_properties: &IndexMap<String, ReferenceOr<Box<Schema>>>,
        hint: &str,
        pointer: &str,
        slot: Option<TypeId>,
        doc: Option<String>,
    ) -> Result<TypeRef> {
        if let ([only], true) = (parts, own_properties.is_empty()) {
            return self.schema_or_ref(only, hint, &format!("{pointer}/allOf/0"));
        }
        let mut properties = IndexMap::new();
        let mut required: Vec<String> = own_required.to_vec();
        let mut additional = None;
        let mut seen = BTreeSet::new();
        for part in parts {
            self.collect_object(
                part,
                &mut properties,
                &mut required,
                &mut additional,
                &mut seen,
            );
        }
        for (k, v) in own_properties {
            properties.insert(k.clone(), v.clone());
        }
        self.object(
            &properties,
            &required,
            additional.as_ref(),
            hint,
            pointer,
            slot,
            doc,
        )
    }

    /// Gathers the properties of an `allOf` part, following references and nested `allOf`.
    fn collect_object(
        &self,
        part: &ReferenceOr<Schema>,
        properties: &mut IndexMap<String, ReferenceOr<Box<Schema>>>,
        required: &mut Vec<String>,
        additional: &mut Option<AdditionalProperties>,
        seen: &mut BTreeSet<String>,
    ) {
        let schema = match part {
            ReferenceOr::Reference { reference } => {
                if !seen.insert(reference.clone()) {
                    return;
                }
                let name = reference.strip_prefix(SCHEMA_PREFIX).unwrap_or_default();
                match self.schemas().and_then(|s| s.get(name)) {
                    Some(target) => {
                        return self.collect_object(target, properties, required, additional, seen);
                    }
                    None => return,
                }
            }
            ReferenceOr::Item(schema) => schema,
        };
        match &schema.schema_kind {
            SchemaKind::Type(Type::Object(o)) => {
                merge(properties, required, &o.properties, &o.required);
                if o.additional_properties.is_some() {
                    additional.clone_from(&o.additional_properties);
                }
            }
            SchemaKind::Any(any) => {
                merge(properties, required, &any.properties, &any.required);
                for nested in &any.all_of {
                    self.collect_object(nested, properties, required, additional, seen);
                }
            }
            SchemaKind::AllOf { all_of } => {
                for nested in all_of {
                    self.collect_object(nested, properties, required, additional, seen);
                }
            }
            _ => {}
        }
    }

    /// A schema without a single `type`: decided by what it has.
    fn any_schema(
        &mut self,
        any: &openapiv3::AnySchema,
        hint: &str,
        pointer: &str,
        slot: Option<TypeId>,
        doc: Option<String>,
    ) -> Result<TypeRef> {
        if !any.all_of.is_empty() {
            return self.all_of(
                &any.all_of,
                &any.required,
                &any.properties,
                hint,
                pointer,
                slot,
                doc,
            );
        }
        if !any.one_of.is_empty() && any.properties.is_empty() {
            return self.union(&any.one_of, hint, &format!("{pointer}/oneOf"), slot, doc);
        }
        if !any.any_of.is_empty() && any.properties.is_empty() {
            return self.union(&any.any_of, hint, &format!("{pointer}/anyOf"), slot, doc);
        }
        let typ = any.typ.as_deref();
        if typ == Some("object")
            || !any.properties.is_empty()
            || any.additional_properties.is_some()
        {
            return self.object(
                &any.properties,
                &any.required,
                any.additional_properties.as_ref(),
                hint,
                pointer,
                slot,
                doc,
            );
        }
        if let Some(items) = &any.items {
            let item = self.boxed_schema_or_ref(
                items,
                &format!("{hint}Item"),
                &format!("{pointer}/items"),
            )?;
            return Ok(TypeRef::Vec(Box::new(item)));
        }
        let strings: Vec<&str> = any.enumeration.iter().filter_map(|v| v.as_str()).collect();
        if !strings.is_empty()
            && strings.len() == any.enumeration.iter().filter(|v| !v.is_null()).count()
        {
            return Ok(self.named(slot, hint, pointer, doc, string_enum(&strings)));
        }
        let format = any.format.as_deref().unwrap_or_default();
        Ok(match typ {
            Some("string") => TypeRef::Primitive(string_format(&VariantOrUnknownOrEmpty::Unknown(
                format.to_owned(),
            ))),
            Some("integer") if format == "int32" => TypeRef::Primitive(Primitive::I32),
            Some("integer") => TypeRef::Primitive(Primitive::I64),
            Some("number") if format == "float" => TypeRef::Primitive(Primitive::F32),
            Some("number") => TypeRef::Primitive(Primitive::F64),
            Some("boolean") => TypeRef::Primitive(Primitive::Bool),
            Some("array") => TypeRef::Vec(Box::new(TypeRef::Any)),
            _ => TypeRef::Any,
        })
    }

    fn operations(&mut self) -> Result<Vec<Operation>> {
        let mut type_names = Scope::with_reserved(RESERVED_TYPES);
        let mut method_names = Scope::with_reserved(CLIENT_METHODS);
        let mut out = Vec::new();
        for (template, item) in &self.doc.paths.paths {
            let path_pointer = format!("#/paths/{}", pointer_token(template));
            let item = match item {
                ReferenceOr::Item(item) => item,
                ReferenceOr::Reference { reference } => {
                    return Err(Error::Unsupported {
                        path: self.path.to_owned(),
                        location: format!("{path_pointer}/$ref"),
                        message: format!("path item references (`{reference}`) are not read yet"),
                    });
                }
            };
            for (method, op) in item.iter() {
                let pointer = format!("{path_pointer}/{method}");
                let wire_name = op
                    .operation_id
                    .clone()
                    .filter(|id| !id.trim().is_empty())
                    .unwrap_or_else(|| format!("{method} {template}"));
                let type_name = type_names.claim(pascal_ident(&wire_name, "Operation", "Op"));
                let method_name = method_names.claim(snake_ident(&wire_name, "operation"));
                let mut params = Vec::new();
                let mut field_names = Scope::default();
                let body_name = field_names.claim("body".into());
                let mut declared: Vec<&ReferenceOr<Parameter>> = Vec::new();
                for p in item.parameters.iter().chain(&op.parameters) {
                    declared.push(p);
                }
                let resolved = self.parameters(&declared, &pointer)?;
                for (p, p_pointer) in resolved {
                    params.push(self.param(p, &type_name, &p_pointer, &mut field_names)?);
                }
                let path = parse_template(template, &mut params, &mut field_names);
                let body = match &op.request_body {
                    Some(body) => self.body(
                        body,
                        &type_name,
                        &format!("{pointer}/requestBody"),
                        body_name,
                    )?,
                    None => None,
                };
                let output =
                    self.output(&op.responses, &type_name, &format!("{pointer}/responses"))?;
                let method_upper = method.to_ascii_uppercase();
                out.push(Operation {
                    type_name,
                    method_name,
                    wire_name,
                    idempotent: matches!(
                        method_upper.as_str(),
                        "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE"
                    ),
                    http_method: method_upper,
                    path,
                    path_template: template.clone(),
                    params,
                    body,
                    output,
                    doc: join_doc(op.summary.as_deref(), op.description.as_deref()),
                    deprecated: op.deprecated,
                });
            }
        }
        Ok(out)
    }

    /// Resolves parameter references; an operation's parameter replaces a path item's one of
    /// the same name and location.
    fn parameters(
        &self,
        declared: &[&'a ReferenceOr<Parameter>],
        pointer: &str,
    ) -> Result<Vec<(&'a Parameter, String)>> {
        let mut out: Vec<(&Parameter, String)> = Vec::new();
        for (index, p) in declared.iter().enumerate() {
            let p_pointer = format!("{pointer}/parameters/{index}");
            let param = match p {
                ReferenceOr::Item(param) => param,
                ReferenceOr::Reference { reference } => {
                    let name = reference
                        .strip_prefix("#/components/parameters/")
                        .unwrap_or_default();
                    match self
                        .doc
                        .components
                        .as_ref()
                        .and_then(|c| c.parameters.get(name))
                    {
                        Some(ReferenceOr::Item(param)) => param,
                        _ => return Err(self.bad_ref(reference, &p_pointer)),
                    }
                }
            };
            let key = |p: &Parameter| (p.parameter_data_ref().name.clone(), location(p));
            out.retain(|(existing, _)| key(existing) != key(param));
            out.push((param, p_pointer));
        }
        Ok(out)
    }

    fn param(
        &mut self,
        param: &Parameter,
        type_name: &str,
        pointer: &str,
        names: &mut Scope,
    ) -> Result<Param> {
        let data = param.parameter_data_ref();
        let hint = format!("{type_name}{}", pascal_ident(&data.name, "Param", "Param"));
        let ty = match &data.format {
            openapiv3::ParameterSchemaOrContent::Schema(schema) => {
                self.schema_or_ref(schema, &hint, &format!("{pointer}/schema"))?
            }
            openapiv3::ParameterSchemaOrContent::Content(_) => {
                TypeRef::Primitive(Primitive::String)
            }
        };
        let location = location(param);
        Ok(Param {
            name: names.claim(snake_ident(&data.name, "param")),
            wire_name: data.name.clone(),
            location,
            ty,
            required: data.required || location == ParamLocation::Path,
            doc: data.description.clone(),
        })
    }

    fn body(
        &mut self,
        body: &ReferenceOr<RequestBody>,
        type_name: &str,
        pointer: &str,
        name: String,
    ) -> Result<Option<Body>> {
        let body = match body {
            ReferenceOr::Item(body) => body,
            ReferenceOr::Reference { reference } => {
                let key = reference
                    .strip_prefix("#/components/requestBodies/")
                    .unwrap_or_default();
                match self
                    .doc
                    .components
                    .as_ref()
                    .and_then(|c| c.request_bodies.get(key))
                {
                    Some(ReferenceOr::Item(body)) => body,
                    _ => return Err(self.bad_ref(reference, pointer)),
                }
            }
        };
        let Some((media_type, encoding)) = pick_media_type(body.content.keys()) else {
            return Ok(None);
        };
        let schema = body.content[media_type.as_str()].schema.as_ref();
        let content_pointer = format!("{pointer}/content/{}/schema", pointer_token(&media_type));
        let ty = match (encoding, schema) {
            (BodyEncoding::Bytes, _) => TypeRef::Primitive(Primitive::Bytes),
            (BodyEncoding::Text, _) => TypeRef::Primitive(Primitive::String),
            (_, Some(schema)) => {
                self.schema_or_ref(schema, &format!("{type_name}Body"), &content_pointer)?
            }
            (_, None) => TypeRef::Any,
        };
        Ok(Some(Body {
            name,
            media_type,
            encoding,
            ty,
            required: body.required,
            doc: body.description.clone(),
        }))
    }

    /// The output is the body of the first 2xx response that has one (or of `default`).
    fn output(
        &mut self,
        responses: &openapiv3::Responses,
        type_name: &str,
        pointer: &str,
    ) -> Result<Output> {
        let mut success: Vec<(u16, String, &ReferenceOr<Response>)> = responses
            .responses
            .iter()
            .filter_map(|(code, r)| {
                let (order, key) = match code {
                    StatusCode::Code(c) if (200..300).contains(c) => (*c, c.to_string()),
                    StatusCode::Range(2) => (299, "2XX".to_owned()),
                    _ => return None,
                };
                Some((order, key, r))
            })
            .collect();
        success.sort_by_key(|(order, _, _)| *order);
        if success.is_empty()
            && let Some(default) = &responses.default
        {
            success.push((0, "default".into(), default));
        }
        for (_, key, response) in success {
            let r_pointer = format!("{pointer}/{key}");
            let response = match response {
                ReferenceOr::Item(r) => r,
                ReferenceOr::Reference { reference } => {
                    let name = reference
                        .strip_prefix("#/components/responses/")
                        .unwrap_or_default();
                    match self
                        .doc
                        .components
                        .as_ref()
                        .and_then(|c| c.responses.get(name))
                    {
                        Some(ReferenceOr::Item(r)) => r,
                        _ => return Err(self.bad_ref(reference, &r_pointer)),
                    }
                }
            };
            let Some((media_type, encoding)) = pick_media_type(response.content.keys()) else {
                continue;
            };
            let schema = response.content[media_type.as_str()].schema.as_ref();
            let s_pointer = format!("{r_pointer}/content/{}/schema", pointer_token(&media_type));
            let ty = match (encoding, schema) {
                (BodyEncoding::Bytes, _) => TypeRef::Primitive(Primitive::Bytes),
                (BodyEncoding::Text, _) => TypeRef::Primitive(Primitive::String),
                (_, Some(schema)) => {
                    self.schema_or_ref(schema, &format!("{type_name}Response"), &s_pointer)?
                }
                (_, None) => TypeRef::Any,
            };
            return Ok(Output {
                encoding: Some(encoding),
                ty,
            });
        }
        Ok(Output {
            encoding: None,
            ty: TypeRef::Any,
        })
    }
}

fn location(p: &Parameter) -> ParamLocation {
    match p {
        Parameter::Query { .. } => ParamLocation::Query,
        Parameter::Header { .. } => ParamLocation::Header,
        Parameter::Path { .. } => ParamLocation::Path,
        Parameter::Cookie { .. } => ParamLocation::Cookie,
    }
}

fn merge(
    properties: &mut IndexMap<String, ReferenceOr<Box<Schema>>>,
    required: &mut Vec<String>,
    more: &IndexMap<String, ReferenceOr<Box<Schema>>>,
    more_required: &[String],
) {
    for (k, v) in more {
        properties.insert(k.clone(), v.clone());
    }
    for r in more_required {
        if !required.contains(r) {
            required.push(r.clone());
        }
    }
}

fn string_enum(values: &[&str]) -> TypeKind {
    let mut names = Scope::default();
    let mut seen = BTreeSet::new();
    let variants = values
        .iter()
        .filter(|v| seen.insert(**v))
        .map(|v| EnumVariant {
            name: names.claim(pascal_ident(
                v,
                if v.is_empty() { "Empty" } else { "Value" },
                "V",
            )),
            wire_name: (*v).to_owned(),
        })
        .collect();
    TypeKind::Enum { variants }
}

fn string_format(format: &VariantOrUnknownOrEmpty<StringFormat>) -> Primitive {
    match format {
        VariantOrUnknownOrEmpty::Item(StringFormat::DateTime) => Primitive::DateTime,
        VariantOrUnknownOrEmpty::Item(StringFormat::Date) => Primitive::Date,
        VariantOrUnknownOrEmpty::Unknown(f) if f == "date-time" => Primitive::DateTime,
        VariantOrUnknownOrEmpty::Unknown(f) if f == "date" => Primitive::Date,
        VariantOrUnknownOrEmpty::Unknown(f) if f == "uuid" => Primitive::Uuid,
        // `binary` inside a JSON document is a string; a whole binary body is bytes (see `body`).
        _ => Primitive::String,
    }
}

fn describe(schema: &Schema) -> Option<String> {
    let data = &schema.schema_data;
    join_doc(data.title.as_deref(), data.description.as_deref())
}

fn join_doc(summary: Option<&str>, description: Option<&str>) -> Option<String> {
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

/// JSON first (`application/json`, any `+json`), then form, text and bytes.
fn pick_media_type<'k>(types: impl Iterator<Item = &'k String>) -> Option<(String, BodyEncoding)> {
    let classify = |m: &str| {
        let essence = m
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if essence == "application/json" || essence.ends_with("+json") {
            (0, BodyEncoding::Json)
        } else if essence.ends_with("/json") || essence == "*/*" {
            (1, BodyEncoding::Json)
        } else if essence == "application/x-www-form-urlencoded" {
            (2, BodyEncoding::Form)
        } else if essence.starts_with("text/") {
            (3, BodyEncoding::Text)
        } else {
            (4, BodyEncoding::Bytes)
        }
    };
    types
        .map(|m| (classify(m), m))
        .min_by_key(|((rank, _), _)| *rank)
        .map(|((_, encoding), m)| (m.clone(), encoding))
}

/// Splits `/pets/{id}` into literals and parameters, adding a `String` path parameter for any
/// name in the template that the operation does not declare.
fn parse_template(template: &str, params: &mut Vec<Param>, names: &mut Scope) -> Vec<PathPart> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}').map(|c| open + c) else {
            break;
        };
        if open > 0 {
            parts.push(PathPart::Literal(rest[..open].to_owned()));
        }
        let name = &rest[open + 1..close];
        let index = match params
            .iter()
            .position(|p| p.location == ParamLocation::Path && p.wire_name == name)
        {
            Some(index) => index,
            None => {
                params.push(Param {
                    name: names.claim(snake_ident(name, "param")),
                    wire_name: name.to_owned(),
                    location: ParamLocation::Path,
                    ty: TypeRef::Primitive(Primitive::String),
                    required: true,
                    doc: None,
                });
                params.len() - 1
            }
        };
        parts.push(PathPart::Param(index));
        rest = &rest[close + 1..];
    }
    if !rest.is_empty() {
        parts.push(PathPart::Literal(rest.to_owned()));
    }
    parts
}
