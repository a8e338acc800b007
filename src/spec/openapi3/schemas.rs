//! Schemas into the types of the IR.

use std::borrow::Borrow;
use std::collections::BTreeSet;

use indexmap::IndexMap;
use openapiv3::{
    AdditionalProperties, ReferenceOr, Schema, SchemaKind, StringFormat, Type,
    VariantOrUnknownOrEmpty,
};

use crate::Result;
use crate::error::pointer_token;
use crate::ir::names::{Scope, pascal_ident, snake_ident};
use crate::ir::{EnumVariant, Field, Primitive, TypeId, TypeKind, TypeRef, UnionVariant};

use super::{Reader, SCHEMA_PREFIX, join_doc};

impl Reader<'_> {
    /// The type of a schema or reference (boxed or not). `hint` names a type created for it.
    pub(super) fn schema_or_ref<S: Borrow<Schema>>(
        &mut self,
        schema: &ReferenceOr<S>,
        hint: &str,
        pointer: &str,
    ) -> Result<TypeRef> {
        match schema {
            ReferenceOr::Reference { reference } => self.resolve(reference, pointer),
            ReferenceOr::Item(schema) => self.schema(schema.borrow(), hint, pointer, None),
        }
    }

    /// A new named type: into `slot` when given (a component being defined), else a fresh one.
    pub(super) fn named(
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

    pub(super) fn schema(
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
                    let item = self.schema_or_ref(
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
    pub(super) fn object(
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
            let ty = self.schema_or_ref(schema, &hint, &field_pointer)?;
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

    pub(super) fn union(
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
    pub(super) fn all_of(
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
    pub(super) fn any_schema(
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
            let item =
                self.schema_or_ref(items, &format!("{hint}Item"), &format!("{pointer}/items"))?;
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

pub(super) fn describe(schema: &Schema) -> Option<String> {
    let data = &schema.schema_data;
    join_doc(data.title.as_deref(), data.description.as_deref())
}
