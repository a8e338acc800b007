//! Turning spec names into Rust names: sanitised, never a keyword, never colliding.
//!
//! A spec may name things in any script, with any punctuation, with leading digits, with names
//! that are Rust keywords, or with names that only differ in case (`user_id` and `userId`). Every
//! name goes through here once; the IR stores the result beside the wire name.

use std::collections::BTreeSet;

use heck::{ToSnakeCase, ToUpperCamelCase};

/// Words that cannot be identifiers, or only as raw identifiers.
const KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate",
    "do", "dyn", "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl",
    "in", "let", "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref",
    "return", "self", "Self", "static", "struct", "super", "trait", "true", "try", "type",
    "typeof", "union", "unsafe", "unsized", "use", "virtual", "where", "while", "yield",
];

/// Keywords that cannot even be raw identifiers.
const NOT_RAW: &[&str] = &["crate", "self", "Self", "super"];

/// Names the generated code uses unqualified next to spec types (the prelude's), which a spec
/// type must not shadow.
pub const RESERVED_TYPES: &[&str] = &[
    "Option", "Result", "Vec", "Box", "String", "Some", "None", "Ok", "Err", "Self",
];

/// Splits `raw` into ASCII words: anything that is not an ASCII letter or digit separates.
fn ascii_words(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with(' ') {
            out.push(' ');
        }
    }
    out
}

/// A snake_case identifier for `raw`, or `fallback` when `raw` has no ASCII letter or digit.
pub fn snake_ident(raw: &str, fallback: &str) -> String {
    let mut name = ascii_words(raw).to_snake_case();
    if name.is_empty() {
        name = fallback.to_owned();
    }
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    escape_keyword(name)
}

/// A PascalCase identifier for `raw`, or `fallback` when `raw` has no ASCII letter or digit. A
/// leading digit gets `prefix` in front (`V` for variants: `V200`).
pub fn pascal_ident(raw: &str, fallback: &str, prefix: &str) -> String {
    let mut name = ascii_words(raw).to_upper_camel_case();
    if name.is_empty() {
        name = fallback.to_owned();
    }
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert_str(0, prefix);
    }
    escape_keyword(name)
}

/// `r#type` for `type`; `self_` for the keywords that cannot be raw.
fn escape_keyword(name: String) -> String {
    if NOT_RAW.contains(&name.as_str()) {
        format!("{name}_")
    } else if KEYWORDS.contains(&name.as_str()) {
        format!("r#{name}")
    } else {
        name
    }
}

/// Hands out names unique within one scope (the types of a crate, the fields of a struct...).
///
/// The first to ask for a name gets it; a later one gets it with a number (`Pet2`). Callers ask
/// in spec order, so the result is the same on every run.
#[derive(Debug, Default)]
pub struct Scope {
    taken: BTreeSet<String>,
}

impl Scope {
    /// A scope where `reserved` are already taken.
    pub fn with_reserved(reserved: &[&str]) -> Self {
        Self {
            taken: reserved.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    /// `name` if free, otherwise `name2`, `name3`... (`name_2` for snake_case names and names
    /// that end in a digit, so that `V1` becomes `V1_2`, not `V12`).
    pub fn claim(&mut self, name: String) -> String {
        if self.taken.insert(name.clone()) {
            return name;
        }
        let bare = name.trim_start_matches("r#").trim_end_matches('_');
        let separator = if bare.contains('_')
            || bare.starts_with(|c: char| c.is_ascii_lowercase())
            || bare.ends_with(|c: char| c.is_ascii_digit())
        {
            "_"
        } else {
            ""
        };
        (2..)
            .map(|n| format!("{bare}{separator}{n}"))
            .find(|candidate| self.taken.insert(candidate.clone()))
            .expect("an unbounded range always has a free name")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_become_raw_or_suffixed() {
        assert_eq!(snake_ident("type", "field"), "r#type");
        assert_eq!(snake_ident("self", "field"), "self_");
        assert_eq!(pascal_ident("self", "Type", "T"), "Self_");
        assert_eq!(snake_ident("async", "field"), "r#async");
    }

    #[test]
    fn punctuation_digits_and_other_scripts_are_sanitised() {
        assert_eq!(snake_ident("user-id", "field"), "user_id");
        assert_eq!(snake_ident("userId", "field"), "user_id");
        assert_eq!(snake_ident("@type", "field"), "r#type");
        assert_eq!(snake_ident("2fa", "field"), "_2fa");
        assert_eq!(snake_ident("ünïcødé", "field"), "n_c_d");
        assert_eq!(snake_ident("日本", "field"), "field");
        assert_eq!(pascal_ident("200", "Value", "V"), "V200");
        assert_eq!(pascal_ident("+1", "Value", "V"), "V1");
        assert_eq!(pascal_ident("-1", "Value", "V"), "V1");
        assert_eq!(pascal_ident("pet.owner", "Type", "T"), "PetOwner");
    }

    #[test]
    fn collisions_get_numbers_in_order() {
        let mut scope = Scope::with_reserved(RESERVED_TYPES);
        assert_eq!(scope.claim("Pet".into()), "Pet");
        assert_eq!(scope.claim("Pet".into()), "Pet2");
        assert_eq!(scope.claim("Option".into()), "Option2");
        let mut fields = Scope::default();
        assert_eq!(fields.claim("user_id".into()), "user_id");
        assert_eq!(fields.claim("user_id".into()), "user_id_2");
        assert_eq!(fields.claim("r#type".into()), "r#type");
        assert_eq!(fields.claim("r#type".into()), "type_2");
        assert_eq!(fields.claim("self_".into()), "self_");
        assert_eq!(fields.claim("self_".into()), "self_2");
        let mut variants = Scope::default();
        assert_eq!(variants.claim("V1".into()), "V1");
        assert_eq!(variants.claim("V1".into()), "V1_2");
    }
}
