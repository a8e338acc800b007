//! Boxing the fields through which a type contains itself, so that every type has a finite size.

use std::collections::BTreeSet;

use super::{Api, TypeId, TypeKind, TypeRef};

/// Wraps in `Box` each field or variant that leads back to the type holding it without passing
/// through a `Vec` or a map (which already allocate).
pub fn box_recursive_fields(api: &mut Api) {
    // A chain of aliases that comes back to where it started with nothing on the way
    // (`A: {allOf: [B]}`, `B: {allOf: [A]}`) constrains nothing: its start is any value.
    for index in 0..api.types.len() {
        let mut seen = BTreeSet::new();
        let mut at = TypeId(index);
        while let TypeKind::Alias(TypeRef::Named(next)) = &api.types[at.0].kind {
            if next.0 == index {
                api.types[index].kind = TypeKind::Alias(TypeRef::Any);
                break;
            }
            if !seen.insert(*next) {
                break;
            }
            at = *next;
        }
    }
    let direct: Vec<BTreeSet<TypeId>> =
        api.types.iter().map(|t| direct_children(&t.kind)).collect();
    for index in 0..api.types.len() {
        let me = TypeId(index);
        let leads_back = |ty: &TypeRef| inline(ty).iter().any(|id| reaches(&direct, *id, me));
        match &mut api.types[index].kind {
            TypeKind::Struct { fields, .. } => {
                for field in fields.iter_mut().filter(|f| leads_back(&f.ty)) {
                    field.ty = TypeRef::Box(Box::new(field.ty.clone()));
                }
            }
            TypeKind::Union { variants, .. } => {
                for variant in variants.iter_mut().filter(|v| leads_back(&v.ty)) {
                    variant.ty = TypeRef::Box(Box::new(variant.ty.clone()));
                }
            }
            TypeKind::Alias(_) | TypeKind::Newtype(_) | TypeKind::Enum { .. } => {}
        }
    }
    for index in 0..api.types.len() {
        if let TypeKind::Alias(ty) = &api.types[index].kind
            && alias_reaches(&api.types, ty, TypeId(index), &mut BTreeSet::new())
        {
            api.types[index].kind = TypeKind::Newtype(ty.clone());
        }
    }
}

/// Whether following `ty` through aliases, arrays, maps and boxes comes back to `target`: such an
/// alias would be infinite.
fn alias_reaches(
    types: &[super::TypeDef],
    ty: &TypeRef,
    target: TypeId,
    seen: &mut BTreeSet<TypeId>,
) -> bool {
    match ty {
        TypeRef::Named(id) if *id == target => true,
        TypeRef::Named(id) => match &types[id.0].kind {
            TypeKind::Alias(inner) if seen.insert(*id) => alias_reaches(types, inner, target, seen),
            _ => false,
        },
        TypeRef::Vec(inner) | TypeRef::Map(inner) | TypeRef::Box(inner) => {
            alias_reaches(types, inner, target, seen)
        }
        TypeRef::Tuple(items) => items
            .iter()
            .any(|item| alias_reaches(types, item, target, seen)),
        TypeRef::Primitive(_) | TypeRef::Any => false,
    }
}

/// The named types a type holds inline (not behind a `Vec`, map or `Box`).
fn direct_children(kind: &TypeKind) -> BTreeSet<TypeId> {
    match kind {
        TypeKind::Struct { fields, .. } => fields.iter().flat_map(|f| inline(&f.ty)).collect(),
        TypeKind::Union { variants, .. } => variants.iter().flat_map(|v| inline(&v.ty)).collect(),
        TypeKind::Alias(ty) | TypeKind::Newtype(ty) => inline(ty).into_iter().collect(),
        TypeKind::Enum { .. } => BTreeSet::new(),
    }
}

/// The named types `ty` holds by value: itself, or the items of a tuple.
fn inline(ty: &TypeRef) -> Vec<TypeId> {
    match ty {
        TypeRef::Named(id) => vec![*id],
        TypeRef::Tuple(items) => items.iter().flat_map(inline).collect(),
        _ => Vec::new(),
    }
}

/// Whether `target` is reachable from `start` through inline containment.
fn reaches(direct: &[BTreeSet<TypeId>], start: TypeId, target: TypeId) -> bool {
    let mut seen = BTreeSet::new();
    let mut stack = vec![start];
    while let Some(id) = stack.pop() {
        if id == target {
            return true;
        }
        if seen.insert(id) {
            stack.extend(direct[id.0].iter().copied());
        }
    }
    false
}
