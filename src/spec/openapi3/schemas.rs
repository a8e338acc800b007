//! Schemas into the types of the IR.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};

use indexmap::IndexMap;
use openapiv3::{
    AdditionalProperties, ReferenceOr, Schema, SchemaKind, StringFormat, Type,
    VariantOrUnknownOrEmpty,
};

use crate::Result;
use crate::error::{Error, pointer_token};
use crate::ir::names::{Scope, pascal_ident, snake_ident};
use crate::ir::{
    Discriminator, EnumVariant, Field, Primitive, TypeDef, TypeId, TypeKind, TypeRef, UnionVariant,
};
use crate::spec::openapi31::TUPLE_KEY;

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
        if let Some(items) = schema.schema_data.extensions.get(TUPLE_KEY) {
            return self.tuple(items, hint, pointer);
        }
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
                VariantOrUnknownOrEmpty::Unknown(f) => integer_format(f),
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
                let discriminator = schema.schema_data.discriminator.as_ref();
                return self.union(
                    variants,
                    discriminator,
                    hint,
                    &format!("{pointer}/{key}"),
                    slot,
                    doc,
                );
            }
            SchemaKind::AllOf { all_of } => {
                return self.all_of(all_of, &[], &IndexMap::new(), hint, pointer, slot, doc);
            }
            SchemaKind::Not { .. } => TypeRef::Any,
            SchemaKind::Any(any) => {
                let discriminator = schema.schema_data.discriminator.as_ref();
                return self.any_schema(any, discriminator, hint, pointer, slot, doc);
            }
        })
    }

    /// A tuple: the fixed-length `prefixItems` that the 3.1 conversion kept under `TUPLE_KEY`.
    fn tuple(&mut self, items: &serde_json::Value, hint: &str, pointer: &str) -> Result<TypeRef> {
        let items = items.as_array().map(Vec::as_slice).unwrap_or_default();
        let mut types = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let at = format!("{pointer}/prefixItems/{index}");
            let item: ReferenceOr<Schema> =
                serde_json::from_value(item.clone()).map_err(|err| Error::Invalid {
                    path: self.path.to_owned(),
                    location: at.clone(),
                    message: format!("not a schema: {err}"),
                })?;
            types.push(self.schema_or_ref(&item, &format!("{hint}Item{index}"), &at)?);
        }
        Ok(TypeRef::Tuple(types))
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

    #[allow(clippy::too_many_arguments)]
    pub(super) fn union(
        &mut self,
        variants: &[ReferenceOr<Schema>],
        discriminator: Option<&openapiv3::Discriminator>,
        hint: &str,
        pointer: &str,
        slot: Option<TypeId>,
        doc: Option<String>,
    ) -> Result<TypeRef> {
        if let ([only], None) = (variants, discriminator) {
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
            let tags = discriminator
                .map(|d| self.tags(variant, d))
                .unwrap_or_default();
            out.push(UnionVariant { name, ty, tags });
        }
        let discriminator = match discriminator {
            Some(d) if out.iter().any(|v| !v.tags.is_empty()) => Some(Discriminator {
                property: d.property_name.clone(),
                other: names.claim("Other".to_owned()),
            }),
            // Untagged: ordered once every type is known (`order_unions`).
            _ => None,
        };
        Ok(self.named(
            Some(id),
            hint,
            pointer,
            doc,
            TypeKind::Union {
                variants: out,
                discriminator,
            },
        ))
    }

    /// The discriminator values of a variant: the mapping entries that point at it, else its
    /// schema name, or the single value its schema allows for the property.
    fn tags(&self, variant: &ReferenceOr<Schema>, d: &openapiv3::Discriminator) -> Vec<String> {
        match variant {
            ReferenceOr::Reference { reference } => {
                let name = reference.rsplit('/').next().unwrap_or(reference);
                let mapped: Vec<String> = d
                    .mapping
                    .iter()
                    .filter(|(_, target)| *target == reference || *target == name)
                    .map(|(tag, _)| tag.clone())
                    .collect();
                if mapped.is_empty() {
                    vec![name.replace("~1", "/").replace("~0", "~")]
                } else {
                    mapped
                }
            }
            ReferenceOr::Item(schema) => {
                let property = match &schema.schema_kind {
                    SchemaKind::Type(Type::Object(o)) => o.properties.get(&d.property_name),
                    SchemaKind::Any(any) => any.properties.get(&d.property_name),
                    _ => None,
                };
                match property {
                    Some(ReferenceOr::Item(p)) => match &p.schema_kind {
                        SchemaKind::Type(Type::String(s)) => {
                            s.enumeration.iter().flatten().cloned().collect()
                        }
                        SchemaKind::Any(any) => any
                            .enumeration
                            .iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect(),
                        _ => Vec::new(),
                    },
                    _ => Vec::new(),
                }
            }
        }
    }

    /// Orders the variants of untagged unions: serde takes the first variant that reads a
    /// value, so the variants that accept the least go first (a stable sort: spec order
    /// otherwise).
    pub(super) fn order_unions(&mut self) {
        for index in 0..self.types.len() {
            let Some(TypeDef {
                kind:
                    TypeKind::Union {
                        variants,
                        discriminator: None,
                    },
                ..
            }) = &self.types[index]
            else {
                continue;
            };
            let mut keyed: Vec<_> = variants
                .iter()
                .map(|v| (self.leniency(&v.ty, 0), v.clone()))
                .collect();
            keyed.sort_by_key(|(key, _)| *key);
            if let Some(TypeDef {
                kind: TypeKind::Union { variants, .. },
                ..
            }) = &mut self.types[index]
            {
                *variants = keyed.into_iter().map(|(_, v)| v).collect();
            }
        }
    }

    /// How much a type accepts, for the order of untagged variants: objects with many required
    /// properties first, then other objects and lists, then scalars from the narrowest, and
    /// any string or any value last.
    fn leniency(&self, ty: &TypeRef, depth: usize) -> (u8, std::cmp::Reverse<usize>) {
        let rank = |r: u8| (r, std::cmp::Reverse(0));
        match ty {
            TypeRef::Named(id) => match self.types[id.0].as_ref().map(|t| &t.kind) {
                Some(TypeKind::Struct { fields, additional }) => {
                    let required = fields.iter().filter(|f| f.required).count();
                    let open = additional.is_some() || required == 0;
                    (if open { 1 } else { 0 }, std::cmp::Reverse(required))
                }
                Some(TypeKind::Union { .. }) => rank(1),
                Some(TypeKind::Enum { .. }) => rank(8),
                // Aliases can refer to themselves through a box.
                Some(TypeKind::Alias(inner) | TypeKind::Newtype(inner)) if depth < 8 => {
                    self.leniency(inner, depth + 1)
                }
                _ => rank(1),
            },
            TypeRef::Box(inner) => self.leniency(inner, depth),
            TypeRef::Map(_) => rank(2),
            TypeRef::Vec(_) | TypeRef::Tuple(_) => rank(2),
            TypeRef::Primitive(p) => rank(match p {
                Primitive::Bool => 3,
                Primitive::I8
                | Primitive::I16
                | Primitive::I32
                | Primitive::I64
                | Primitive::U8
                | Primitive::U16
                | Primitive::U32
                | Primitive::U64
                | Primitive::Int64Text
                | Primitive::Uint64Text => 4,
                Primitive::F32 | Primitive::F64 => 5,
                Primitive::DateTime | Primitive::Date | Primitive::Uuid => 6,
                Primitive::Base64 | Primitive::Bytes | Primitive::File => 7,
                Primitive::String => 9,
            }),
            TypeRef::Any => rank(10),
        }
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
            TypeRef::Tuple(_) => "Tuple".to_owned(),
            TypeRef::Map(inner) => format!("{}Map", self.variant_name(inner, index)),
            TypeRef::Box(inner) => self.variant_name(inner, index),
            TypeRef::Any => format!("Variant{index}"),
        }
    }

    /// The base schemas that become enums of their subtypes: each component with a
    /// `discriminator` and no `oneOf`/`anyOf`, with the components that extend it through
    /// `allOf` (directly or through other subtypes) or that its `mapping` names. A subtype
    /// that is such a base itself is left out: its own subtypes stand for it.
    pub(super) fn find_subtypes(&self) -> BTreeMap<String, Vec<String>> {
        let Some(schemas) = self.schemas() else {
            return BTreeMap::new();
        };
        let reference = |name: &str| format!("{SCHEMA_PREFIX}{name}");
        // Each schema's direct subtypes: the components whose `allOf` references it.
        let mut extended_by: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, schema) in schemas {
            let ReferenceOr::Item(schema) = schema else {
                continue;
            };
            let parts = match &schema.schema_kind {
                SchemaKind::AllOf { all_of } => all_of.as_slice(),
                SchemaKind::Any(any) => any.all_of.as_slice(),
                _ => &[],
            };
            for part in parts {
                if let ReferenceOr::Reference { reference: base } = part
                    && self.by_ref.contains_key(base)
                {
                    extended_by
                        .entry(base.clone())
                        .or_default()
                        .push(reference(name));
                }
            }
        }
        // A discriminator on an object (a `oneOf`/`anyOf` one is a union already).
        let is_base = |s: &Schema| {
            s.schema_data.discriminator.is_some()
                && match &s.schema_kind {
                    SchemaKind::Type(Type::Object(_)) | SchemaKind::AllOf { .. } => true,
                    SchemaKind::Any(any) => any.one_of.is_empty() && any.any_of.is_empty(),
                    _ => false,
                }
        };
        let bases: BTreeSet<String> = schemas
            .iter()
            .filter(|(name, s)| {
                matches!(s, ReferenceOr::Item(s) if is_base(s))
                    && extended_by.contains_key(&reference(name))
            })
            .map(|(name, _)| reference(name))
            .collect();
        let mut out = BTreeMap::new();
        for (name, schema) in schemas {
            let base = reference(name);
            let ReferenceOr::Item(schema) = schema else {
                continue;
            };
            let Some(discriminator) = schema.schema_data.discriminator.as_ref() else {
                continue;
            };
            if !is_base(schema) {
                continue;
            }
            let mut members = BTreeSet::new();
            let mut stack = vec![base.clone()];
            while let Some(next) = stack.pop() {
                for child in extended_by.get(&next).into_iter().flatten() {
                    if *child != base && members.insert(child.clone()) {
                        stack.push(child.clone());
                    }
                }
            }
            for target in discriminator.mapping.values() {
                let target = if target.starts_with('#') {
                    target.clone()
                } else {
                    reference(target)
                };
                if target != base && self.by_ref.contains_key(&target) {
                    members.insert(target);
                }
            }
            members.retain(|m| !bases.contains(m));
            if members.is_empty() {
                continue;
            }
            // In spec order.
            let ordered: Vec<String> = schemas
                .keys()
                .map(|n| reference(n))
                .filter(|r| members.contains(r))
                .collect();
            out.insert(base, ordered);
        }
        out
    }

    /// A base schema with a discriminator, as an enum of its subtypes: each variant is read by
    /// the tag (the mapping's values that name it, else its schema name) and keeps the base's
    /// properties, which the subtype's `allOf` gives it.
    pub(super) fn subtype_union(&mut self, schema: &Schema, base: &str, id: TypeId) -> TypeRef {
        let Some(d) = schema.schema_data.discriminator.as_ref() else {
            return TypeRef::Named(id);
        };
        let members = self.subtypes.get(base).cloned().unwrap_or_default();
        let mut names = Scope::default();
        let mut variants = Vec::with_capacity(members.len());
        for (index, member) in members.iter().enumerate() {
            let Some(member_id) = self.by_ref.get(member).copied() else {
                continue;
            };
            let ty = TypeRef::Named(member_id);
            let reference = ReferenceOr::Reference {
                reference: member.clone(),
            };
            variants.push(UnionVariant {
                name: names.claim(self.variant_name(&ty, index)),
                ty,
                tags: self.tags(&reference, d),
            });
        }
        let discriminator = Discriminator {
            property: d.property_name.clone(),
            other: names.claim("Other".to_owned()),
        };
        self.kind_of(
            id,
            TypeKind::Union {
                variants,
                discriminator: Some(discriminator),
            },
        );
        TypeRef::Named(id)
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
        // `allOf` of one part is that part, unless it is a base that is an enum of its
        // subtypes, this schema among them: then this one is a struct of the base's properties.
        let subtype_of_base = matches!(parts, [ReferenceOr::Reference { reference }] if self.subtypes.contains_key(reference));
        if let ([only], true, false) = (parts, own_properties.is_empty(), subtype_of_base) {
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
        discriminator: Option<&openapiv3::Discriminator>,
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
            let at = format!("{pointer}/oneOf");
            return self.union(&any.one_of, discriminator, hint, &at, slot, doc);
        }
        if !any.any_of.is_empty() && any.properties.is_empty() {
            let at = format!("{pointer}/anyOf");
            return self.union(&any.any_of, discriminator, hint, &at, slot, doc);
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
            Some("integer") => TypeRef::Primitive(integer_format(format)),
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
    TypeKind::Enum {
        variants,
        other: names.claim("Other".to_owned()),
    }
}

fn integer_format(format: &str) -> Primitive {
    match format {
        "int8" => Primitive::I8,
        "int16" => Primitive::I16,
        "int32" => Primitive::I32,
        "uint8" => Primitive::U8,
        "uint16" => Primitive::U16,
        "uint32" => Primitive::U32,
        "uint64" => Primitive::U64,
        _ => Primitive::I64,
    }
}

fn string_format(format: &VariantOrUnknownOrEmpty<StringFormat>) -> Primitive {
    match format {
        VariantOrUnknownOrEmpty::Item(StringFormat::DateTime) => Primitive::DateTime,
        VariantOrUnknownOrEmpty::Item(StringFormat::Date) => Primitive::Date,
        VariantOrUnknownOrEmpty::Item(StringFormat::Byte) => Primitive::Base64,
        VariantOrUnknownOrEmpty::Unknown(f) if f == "byte" => Primitive::Base64,
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
