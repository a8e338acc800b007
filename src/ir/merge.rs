//! Merging the types a description defines more than once with the same shape.
//!
//! Large descriptions repeat schemas inline: GitHub's writes the same user object out 370 times
//! (`WebhooksIssueUser`, `DiscussionUser`...), and each copy would be a struct of its own, with
//! its own serde impls to compile. Types of one shape become one: the first of them (a
//! component schema before an inline one, then in spec order) keeps its definition, and every
//! other is an alias of it (`pub type DiscussionUser = WebhooksUser;`), so each name the crate
//! had is still there and means a value of the same shape as before.
//!
//! Two types have one shape when everything the generated code says of them is the same: the
//! kind, every field's Rust name, wire name, type, presence, nullability and description, every
//! variant's names and tags. Their own descriptions may differ; each alias keeps its own and
//! says what it is another name for.
//! Types are compared by what they refer to, so two structs whose fields are of two merged
//! types merge as well; this repeats until nothing more merges.

use std::collections::HashMap;
use std::fmt::Write;

use super::{Api, TypeId, TypeKind, TypeRef};

/// Makes every type that has the shape of an earlier one an alias of it. Returns how many
/// became aliases.
pub fn merge_identical_types(api: &mut Api) -> usize {
    let count = api.types.len();
    // Component schemas first, so that a schema the description names is what copies of it
    // become, then in spec order; a stable sort keeps spec order within each group.
    let mut order: Vec<usize> = (0..count).collect();
    order.sort_by_key(|&index| !api.types[index].origin.starts_with("#/components/"));
    let mut into: Vec<usize> = (0..count).collect();
    loop {
        let mut first: HashMap<String, usize> = HashMap::new();
        let mut merged = false;
        for &index in &order {
            if into[index] != index {
                continue;
            }
            let Some(key) = shape(&api.types[index].kind, &into) else {
                continue;
            };
            match first.get(&key) {
                Some(&kept) => {
                    into[index] = kept;
                    merged = true;
                }
                None => {
                    first.insert(key, index);
                }
            }
        }
        if !merged {
            break;
        }
    }
    let mut aliases = 0;
    for index in 0..count {
        let kept = resolve(&into, index);
        if kept != index {
            let t = &mut api.types[index];
            t.kind = TypeKind::Alias(TypeRef::Named(TypeId(kept)));
            t.merged = true;
            aliases += 1;
        }
    }
    aliases
}

/// The type `index` has become, following merges made in later rounds.
fn resolve(into: &[usize], mut index: usize) -> usize {
    while into[index] != index {
        index = into[index];
    }
    index
}

/// Everything the generated code says of a type but its name and description, as text that is
/// equal for two types exactly when their code would be. `None` for aliases: they are a line
/// each, and merging them would only lengthen the chains readers follow.
fn shape(kind: &TypeKind, into: &[usize]) -> Option<String> {
    let mut out = String::new();
    match kind {
        TypeKind::Struct { fields, additional } => {
            out.push('S');
            for f in fields {
                let _ = write!(
                    out,
                    "|{:?}{:?}{}{}{:?}:",
                    f.name, f.wire_name, f.required as u8, f.nullable as u8, f.doc
                );
                type_ref(&mut out, &f.ty, into);
            }
            if let Some(value) = additional {
                out.push_str("|+");
                type_ref(&mut out, value, into);
            }
        }
        TypeKind::Enum { variants, other } => {
            let _ = write!(out, "E{other:?}");
            for v in variants {
                let _ = write!(out, "|{:?}{:?}", v.name, v.wire_name);
            }
        }
        TypeKind::Union {
            variants,
            discriminator,
        } => {
            match discriminator {
                Some(d) => {
                    let _ = write!(out, "U{:?}{:?}", d.property, d.other);
                }
                None => out.push('U'),
            }
            for v in variants {
                let _ = write!(out, "|{:?}{:?}:", v.name, v.tags);
                type_ref(&mut out, &v.ty, into);
            }
        }
        TypeKind::Newtype(ty) => {
            out.push('N');
            type_ref(&mut out, ty, into);
        }
        TypeKind::Alias(_) => return None,
    }
    Some(out)
}

/// Writes a type use, with each named type as what it has been merged into.
fn type_ref(out: &mut String, ty: &TypeRef, into: &[usize]) {
    match ty {
        TypeRef::Named(id) => {
            let _ = write!(out, "#{}", resolve(into, id.0));
        }
        TypeRef::Primitive(p) => {
            let _ = write!(out, "{p:?}");
        }
        TypeRef::Vec(item) => {
            out.push('[');
            type_ref(out, item, into);
            out.push(']');
        }
        TypeRef::Tuple(items) => {
            out.push('(');
            for item in items {
                type_ref(out, item, into);
                out.push(',');
            }
            out.push(')');
        }
        TypeRef::Map(value) => {
            out.push('{');
            type_ref(out, value, into);
            out.push('}');
        }
        TypeRef::Box(inner) => {
            out.push('^');
            type_ref(out, inner, into);
        }
        TypeRef::Any => out.push('*'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{EnumVariant, Field, Primitive, TypeDef};

    fn def(name: &str, origin: &str, kind: TypeKind) -> TypeDef {
        TypeDef {
            name: name.to_owned(),
            origin: origin.to_owned(),
            doc: Some(format!("{name}'s own text")),
            kind,
            merged: false,
        }
    }

    fn field(name: &str, ty: TypeRef) -> Field {
        Field {
            name: name.to_owned(),
            wire_name: name.to_owned(),
            ty,
            required: true,
            nullable: false,
            doc: None,
        }
    }

    fn kind_enum() -> TypeKind {
        TypeKind::Enum {
            variants: vec![EnumVariant {
                name: "User".to_owned(),
                wire_name: "User".to_owned(),
            }],
            other: "Other".to_owned(),
        }
    }

    fn user(kind_of: usize) -> TypeKind {
        TypeKind::Struct {
            fields: vec![
                field("login", TypeRef::Primitive(Primitive::String)),
                field("type", TypeRef::Named(TypeId(kind_of))),
            ],
            additional: None,
        }
    }

    fn alias_target(api: &Api, index: usize) -> Option<usize> {
        match &api.types[index].kind {
            TypeKind::Alias(TypeRef::Named(id)) => Some(id.0),
            _ => None,
        }
    }

    #[test]
    fn copies_whose_fields_are_copies_merge_into_the_component_schema() {
        let mut api = Api::of_types(vec![
            def("IssueUserType", "#/paths/~1a/x/type", kind_enum()),
            def("IssueUser", "#/paths/~1a/x", user(0)),
            def("UserType", "#/components/schemas/user/type", kind_enum()),
            def("User", "#/components/schemas/user", user(2)),
        ]);
        assert_eq!(merge_identical_types(&mut api), 2);
        assert_eq!(alias_target(&api, 0), Some(2));
        assert_eq!(alias_target(&api, 1), Some(3));
        assert!(matches!(api.types[3].kind, TypeKind::Struct { .. }));
        assert!(api.types[1].merged && !api.types[3].merged);
        assert_eq!(api.types[1].doc.as_deref(), Some("IssueUser's own text"));
        assert_eq!(api.types[1].name, "IssueUser");
    }

    #[test]
    fn a_difference_anywhere_in_the_code_keeps_types_apart() {
        let mut renamed = user(0);
        if let TypeKind::Struct { fields, .. } = &mut renamed {
            fields[0].wire_name = "name".to_owned();
        }
        let mut optional = user(0);
        if let TypeKind::Struct { fields, .. } = &mut optional {
            fields[0].required = false;
        }
        let mut described = user(0);
        if let TypeKind::Struct { fields, .. } = &mut described {
            fields[0].doc = Some("The login.".to_owned());
        }
        let mut api = Api::of_types(vec![
            def("Type", "#/components/schemas/type", kind_enum()),
            def("A", "#/components/schemas/a", user(0)),
            def("B", "#/components/schemas/b", renamed),
            def("C", "#/components/schemas/c", optional),
            def("D", "#/components/schemas/d", described),
            def("E", "#/components/schemas/e", TypeKind::Alias(TypeRef::Any)),
            def("F", "#/components/schemas/f", TypeKind::Alias(TypeRef::Any)),
        ]);
        assert_eq!(merge_identical_types(&mut api), 0);
    }

    #[test]
    fn types_that_refer_to_themselves_stay_apart_and_finish() {
        let tree = |me: usize| TypeKind::Struct {
            fields: vec![field(
                "children",
                TypeRef::Vec(Box::new(TypeRef::Named(TypeId(me)))),
            )],
            additional: None,
        };
        let mut api = Api::of_types(vec![
            def("A", "#/components/schemas/a", tree(0)),
            def("B", "#/components/schemas/b", tree(1)),
        ]);
        assert_eq!(merge_identical_types(&mut api), 0);
    }
}
