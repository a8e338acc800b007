//! Messages and enums into the types of the IR, in the canonical proto3 JSON mapping.

use std::collections::BTreeMap;

use heck::ToUpperCamelCase;
use prost_reflect::{Cardinality, EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor};

use crate::ir::names::{RESERVED_TYPES, Scope, pascal_ident, snake_ident};
use crate::ir::{EnumVariant, Field, Primitive, TypeDef, TypeId, TypeKind, TypeRef};

/// The named types of a file and of the messages it uses, declared once each.
pub(super) struct Types {
    defs: Vec<TypeDef>,
    by_name: BTreeMap<String, TypeId>,
    names: Scope,
}

impl Types {
    pub(super) fn new() -> Self {
        Self {
            defs: Vec::new(),
            by_name: BTreeMap::new(),
            names: Scope::with_reserved(RESERVED_TYPES),
        }
    }

    pub(super) fn into_defs(self) -> Vec<TypeDef> {
        self.defs
    }

    /// A type made by the reader (a request body without the path fields), named uniquely.
    pub(super) fn synthetic(&mut self, mut def: TypeDef) -> TypeRef {
        def.name = self.names.claim(def.name);
        self.defs.push(def);
        TypeRef::Named(TypeId(self.defs.len() - 1))
    }

    /// The Rust name hint of a protobuf name: its path inside its package (`Outer.Inner` is
    /// `OuterInner`).
    fn hint(full_name: &str, package: &str) -> String {
        let local = full_name
            .strip_prefix(package)
            .map(|r| r.trim_start_matches('.'))
            .unwrap_or(full_name);
        local
            .split('.')
            .map(|part| part.to_upper_camel_case())
            .collect()
    }

    /// The type of a message: a well-known type's JSON form, or a struct (declared on first use).
    pub(super) fn message(&mut self, message: &MessageDescriptor) -> TypeRef {
        if let Some(known) = well_known(message.full_name()) {
            return known;
        }
        if let Some(id) = self.by_name.get(message.full_name()) {
            return TypeRef::Named(*id);
        }
        let hint = Self::hint(message.full_name(), message.package_name());
        let id = self.declare(&hint, message.full_name());
        if let Some(doc) = comment(message.parent_file_descriptor_proto(), message.path()) {
            self.defs[id.0].doc = Some(doc);
        }
        let mut field_names = Scope::default();
        let mut fields = Vec::new();
        for field in message.fields() {
            let ty = self.field(&field);
            let oneof = field
                .containing_oneof()
                .filter(|o| !o.is_synthetic())
                .map(|o| o.name().to_owned());
            fields.push(Field {
                name: field_names.claim(snake_ident(field.name(), "field")),
                wire_name: field.json_name().to_owned(),
                ty,
                // proto2 `required` (and editions' LEGACY_REQUIRED); everything else may be
                // left out, as proto3 leaves out default values.
                required: field.cardinality() == Cardinality::Required,
                nullable: false,
                doc: Some({
                    let own = comment(message.parent_file_descriptor_proto(), field.path());
                    let what = match oneof {
                        Some(group) => format!(
                            "Field `{}` ({}), one of `{group}`: set at most one field of the group.",
                            field.name(),
                            field.number()
                        ),
                        None => format!("Field `{}` ({}).", field.name(), field.number()),
                    };
                    match own {
                        Some(text) => format!("{text}\n\n{what}"),
                        None => what,
                    }
                }),
            });
        }
        for nested in message.child_messages().filter(|m| !m.is_map_entry()) {
            self.message(&nested);
        }
        for nested in message.child_enums() {
            self.enumeration(&nested);
        }
        self.defs[id.0].kind = TypeKind::Struct {
            fields,
            additional: None,
        };
        TypeRef::Named(id)
    }

    /// The type of an enum: its values by name, and any other name kept.
    pub(super) fn enumeration(&mut self, en: &EnumDescriptor) -> TypeRef {
        if en.full_name() == "google.protobuf.NullValue" {
            return TypeRef::Any;
        }
        if let Some(id) = self.by_name.get(en.full_name()) {
            return TypeRef::Named(*id);
        }
        let hint = Self::hint(en.full_name(), en.package_name());
        let id = self.declare(&hint, en.full_name());
        if let Some(doc) = comment(en.parent_file_descriptor_proto(), en.path()) {
            self.defs[id.0].doc = Some(doc);
        }
        let mut names = Scope::default();
        let variants = en
            .values()
            .map(|v| EnumVariant {
                name: names.claim(pascal_ident(v.name(), "Value", "V")),
                wire_name: v.name().to_owned(),
            })
            .collect();
        self.defs[id.0].kind = TypeKind::Enum {
            variants,
            other: names.claim("Other".to_owned()),
        };
        TypeRef::Named(id)
    }

    fn declare(&mut self, hint: &str, full_name: &str) -> TypeId {
        let name = self.names.claim(pascal_ident(hint, "Message", "Message"));
        self.defs.push(TypeDef {
            name,
            origin: full_name.to_owned(),
            doc: Some(format!("The `{full_name}` message.")),
            kind: TypeKind::Alias(TypeRef::Any),
            merged: false,
        });
        let id = TypeId(self.defs.len() - 1);
        self.by_name.insert(full_name.to_owned(), id);
        id
    }

    /// The type of a field, lists and maps included.
    pub(super) fn field(&mut self, field: &FieldDescriptor) -> TypeRef {
        if field.is_map() {
            let Kind::Message(entry) = field.kind() else {
                return TypeRef::Any;
            };
            let value = self.kind(&entry.map_entry_value_field().kind());
            return TypeRef::Map(Box::new(value));
        }
        let ty = self.kind(&field.kind());
        if field.is_list() {
            TypeRef::Vec(Box::new(ty))
        } else {
            ty
        }
    }

    fn kind(&mut self, kind: &Kind) -> TypeRef {
        TypeRef::Primitive(match kind {
            Kind::Double => Primitive::F64,
            Kind::Float => Primitive::F32,
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Primitive::I32,
            Kind::Uint32 | Kind::Fixed32 => Primitive::U32,
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Primitive::Int64Text,
            Kind::Uint64 | Kind::Fixed64 => Primitive::Uint64Text,
            Kind::Bool => Primitive::Bool,
            Kind::String => Primitive::String,
            Kind::Bytes => Primitive::Base64,
            Kind::Message(message) => return self.message(message),
            Kind::Enum(en) => return self.enumeration(en),
        })
    }
}

/// The comment written before (or else after) the element at `path` of a file, if any.
pub(super) fn comment(file: &prost_types::FileDescriptorProto, path: &[i32]) -> Option<String> {
    let location = file
        .source_code_info
        .as_ref()?
        .location
        .iter()
        .find(|l| l.path == path)?;
    let text = location
        .leading_comments
        .as_deref()
        .or(location.trailing_comments.as_deref())?;
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let joined = lines.join("\n").trim().to_owned();
    (!joined.is_empty()).then_some(joined)
}

/// The JSON form of the well-known types.
fn well_known(full_name: &str) -> Option<TypeRef> {
    let primitive = |p| Some(TypeRef::Primitive(p));
    match full_name {
        "google.protobuf.Timestamp" => primitive(Primitive::DateTime),
        // "1.5s", "field.path,other"
        "google.protobuf.Duration" | "google.protobuf.FieldMask" => primitive(Primitive::String),
        "google.protobuf.Struct" => Some(TypeRef::Map(Box::new(TypeRef::Any))),
        "google.protobuf.ListValue" => Some(TypeRef::Vec(Box::new(TypeRef::Any))),
        "google.protobuf.Value" | "google.protobuf.Any" => Some(TypeRef::Any),
        "google.protobuf.DoubleValue" => primitive(Primitive::F64),
        "google.protobuf.FloatValue" => primitive(Primitive::F32),
        "google.protobuf.Int64Value" => primitive(Primitive::Int64Text),
        "google.protobuf.UInt64Value" => primitive(Primitive::Uint64Text),
        "google.protobuf.Int32Value" => primitive(Primitive::I32),
        "google.protobuf.UInt32Value" => primitive(Primitive::U32),
        "google.protobuf.BoolValue" => primitive(Primitive::Bool),
        "google.protobuf.StringValue" => primitive(Primitive::String),
        "google.protobuf.BytesValue" => primitive(Primitive::Base64),
        _ => None,
    }
}
