//! Helpers the templates call: Rust types, doc comments and literals from IR items.

use crate::ir::{
    Api, Body, EnumVariant, Field, Operation, Param, ParamLocation, Primitive, SchemeKind,
    StatusMatch, StatusVariant, TypeDef, TypeKind, TypeRef, UnionVariant,
};

/// Rendering helpers bound to one API.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Render<'a> {
    pub(crate) api: &'a Api,
}

/// A field of a struct whose serde impls are written out (`templates/object.rs`): the calls
/// that write and read it.
pub(crate) struct ObjectField<'a> {
    /// The Rust field.
    pub(crate) name: &'a str,
    /// The property's name, as a Rust string literal.
    pub(crate) key: String,
    /// `field` (always written) or `optional` (left out when `None`).
    pub(crate) write: &'static str,
    /// `field`, or `tri_state` for an absent, `null` or present property.
    pub(crate) read: &'static str,
}

impl<'a> ObjectField<'a> {
    /// A field named `name` in Rust and `key` on the wire, left out when `None` unless
    /// `required`.
    pub(crate) fn new(name: &'a str, key: &str, required: bool, tri_state: bool) -> Self {
        Self {
            name,
            key: lit(key),
            write: if required { "field" } else { "optional" },
            read: if tri_state { "tri_state" } else { "field" },
        }
    }
}

impl Render<'_> {
    /// The fields of a schema's struct, as its serde impls write and read them.
    pub(crate) fn object_fields<'f>(&self, fields: &'f [Field]) -> Vec<ObjectField<'f>> {
        fields
            .iter()
            .map(|f| ObjectField::new(&f.name, &f.wire_name, f.required, f.tri_state()))
            .collect()
    }

    /// The Rust type of `ty`; `qualified` for code outside the `types` module.
    pub(crate) fn ty(&self, ty: &TypeRef, qualified: bool) -> String {
        match ty {
            TypeRef::Named(id) => {
                let name = &self.api.types[id.0].name;
                if qualified {
                    format!("crate::types::{name}")
                } else {
                    name.clone()
                }
            }
            TypeRef::Primitive(p) => primitive(*p).to_owned(),
            TypeRef::Vec(inner) => format!("Vec<{}>", self.ty(inner, qualified)),
            TypeRef::Tuple(items) => {
                let items: Vec<String> = items.iter().map(|t| self.ty(t, qualified)).collect();
                match items.as_slice() {
                    [one] => format!("({one},)"),
                    _ => format!("({})", items.join(", ")),
                }
            }
            TypeRef::Map(inner) => format!(
                "std::collections::BTreeMap<String, {}>",
                self.ty(inner, qualified)
            ),
            TypeRef::Box(inner) => format!("Box<{}>", self.ty(inner, qualified)),
            TypeRef::Any => "serde_json::Value".to_owned(),
        }
    }

    /// The type of a field, `Option` included.
    pub(crate) fn field_ty(&self, field: &Field) -> String {
        let ty = self.ty(&field.ty, false);
        if field.tri_state() {
            format!("Option<Option<{ty}>>")
        } else if field.optional() {
            format!("Option<{ty}>")
        } else {
            ty
        }
    }

    /// The doc comment of a type: its description, or where it came from; an alias made by
    /// merging types of one shape also names the type it stands for.
    pub(crate) fn type_doc(&self, t: &TypeDef) -> String {
        let fallback = match t.origin.strip_prefix("#/components/schemas/") {
            Some(name) => format!("The `{name}` schema."),
            None => format!("The schema at `{}`.", t.origin),
        };
        let text = t
            .doc
            .as_deref()
            .filter(|d| !d.trim().is_empty())
            .unwrap_or(&fallback);
        match &t.kind {
            TypeKind::Alias(TypeRef::Named(kept)) if t.merged => doc(
                Some(&format!(
                    "{text}\n\nAnother name for [`{}`]: the description gives both the same shape.",
                    self.api.types[kept.0].name
                )),
                "",
            ),
            _ => doc(Some(text), ""),
        }
    }

    /// The doc comment of a struct field: its description, or none (a sentence that repeated
    /// the name would say nothing more; the `types` module allows missing docs for that).
    pub(crate) fn field_doc(&self, f: &Field) -> Option<String> {
        f.doc
            .as_deref()
            .filter(|d| !d.trim().is_empty())
            .map(|d| doc(Some(d), ""))
    }

    /// The doc comment of an enum value.
    pub(crate) fn variant_doc(&self, v: &EnumVariant) -> String {
        doc(None, &format!("`{}`", v.wire_name))
    }

    /// The doc comment of a union variant.
    pub(crate) fn union_variant_doc(&self, v: &UnionVariant) -> String {
        let ty = self.ty(&v.ty, false);
        doc(None, &format!("{} `{ty}`.", indefinite_article(&ty)))
    }

    /// The doc comment of a request struct: the operation's text, then method and path.
    pub(crate) fn operation_doc(&self, op: &Operation) -> String {
        let mut out = doc(
            op.doc.as_deref(),
            &format!("The `{}` operation.", op.wire_name),
        );
        out.push_str("\n///\n");
        out.push_str(&doc(
            None,
            &format!("`{} {}`", op.http_method, op.path_template),
        ));
        if let Some(header) = &op.idempotency_header {
            out.push_str("\n///\n");
            out.push_str(&doc(
                None,
                &format!(
                    "The `{header}` header is sent by the runtime: the task id, the same on every attempt."
                ),
            ));
        }
        if !op.security.is_empty() {
            let alternatives: Vec<String> = op
                .security
                .iter()
                .map(|alt| {
                    let names: Vec<String> = alt.iter().map(|n| format!("`{n}`")).collect();
                    names.join(" and ")
                })
                .collect();
            out.push_str("\n///\n");
            out.push_str(&doc(
                None,
                &format!(
                    "Credentials: {} (see `crate::SECURITY_SCHEMES`).",
                    alternatives.join(", or ")
                ),
            ));
        }
        if !op.output.errors.is_empty() {
            let errors: Vec<String> = op
                .output
                .errors
                .iter()
                .map(|(status, ty)| match ty {
                    TypeRef::Named(_) => format!("`{status}`: [`{}`]", self.ty(ty, true)),
                    _ => format!("`{status}`: `{}`", self.ty(ty, true)),
                })
                .collect();
            out.push_str("\n///\n");
            out.push_str(&doc(
                None,
                &format!(
                    "Error bodies, read with `TaskError::body_as`: {}.",
                    errors.join(", ")
                ),
            ));
        }
        out
    }

    /// The doc comment of an output enum.
    pub(crate) fn outputs_doc(&self, op: &Operation) -> String {
        doc(
            None,
            &format!(
                "What `{}` answers: one variant per success status of the description.",
                op.wire_name
            ),
        )
    }

    /// The doc comment of an output enum variant.
    pub(crate) fn status_variant_doc(&self, v: &StatusVariant) -> String {
        let status = match v.status {
            StatusMatch::Code(code) => format!("Status {code}"),
            StatusMatch::Range(class) => format!("Any {class}xx status not listed"),
            StatusMatch::Default => "Any other success status".to_owned(),
        };
        let body = if v.encoding.is_some() {
            ""
        } else {
            ", without a body"
        };
        let summary = format!("{status}{body}.");
        match v.doc.as_deref() {
            Some(text) => doc(None, &format!("{summary}\n\n{text}")),
            None => doc(None, &summary),
        }
    }

    /// The doc comment of `SECURITY_SCHEMES`: each scheme and its environment variables.
    pub(crate) fn schemes_doc(&self) -> String {
        let mut text = String::from(
            "The security schemes of the API description. Credentials are read from environment \
             variables by `Client::from_env` and the worker binary; none is ever logged.",
        );
        for s in &self.api.security_schemes {
            let service = &self.api.service;
            let var = |part: &str| {
                format!(
                    "`{}`",
                    codegen_runtime::__private::env_name(service, &s.name, part)
                )
            };
            let what = match &s.kind {
                SchemeKind::ApiKey { location, name } => {
                    let place = match location {
                        ParamLocation::Query => "query parameter",
                        ParamLocation::Cookie => "cookie",
                        ParamLocation::Header | ParamLocation::Path => "header",
                    };
                    format!("an API key in the {place} `{name}`: {}", var("KEY"))
                }
                SchemeKind::Basic => {
                    format!("HTTP basic: {} and {}", var("USER"), var("PASSWORD"))
                }
                SchemeKind::Bearer => format!("a bearer token: {}", var("TOKEN")),
                SchemeKind::OAuth2ClientCredentials { token_url } => format!(
                    "OAuth 2 client credentials from `{token_url}`: {} and {} (optional: {}, {}, or a ready token in {})",
                    var("CLIENT_ID"),
                    var("CLIENT_SECRET"),
                    var("SCOPES"),
                    var("TOKEN_URL"),
                    var("TOKEN")
                ),
            };
            text.push_str(&format!("\n- `{}`: {what}", s.name));
        }
        doc(None, &text)
    }

    /// The doc comment of a client method.
    pub(crate) fn method_doc(&self, op: &Operation) -> String {
        self.operation_doc(op)
    }

    /// The doc comment of a parameter field: its description, or where it goes in the request.
    pub(crate) fn param_doc(&self, p: &Param) -> String {
        let name = &p.wire_name;
        let place = match p.location {
            ParamLocation::Path => format!("The `{{{name}}}` part of the path."),
            ParamLocation::Query => format!("The `{name}` query parameter."),
            ParamLocation::Header => format!("The `{name}` header."),
            ParamLocation::Cookie => format!("The `{name}` cookie."),
        };
        doc(p.doc.as_deref(), &place)
    }

    /// The doc comment of a body field.
    pub(crate) fn body_doc(&self, b: &Body) -> String {
        let mut out = doc(
            b.doc.as_deref(),
            &format!("The request body, sent as `{}`.", b.media_type),
        );
        if !b.alternatives.is_empty() || !b.skipped.is_empty() {
            let list = |items: Vec<&String>| {
                items
                    .iter()
                    .map(|m| format!("`{m}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let mut text = format!("Sent as `{}` unless the client prefers", b.media_type);
            if b.alternatives.is_empty() {
                text = format!("Sent as `{}`", b.media_type);
            } else {
                text.push_str(&format!(
                    " one of {} (`HttpClient::with_media_types`)",
                    list(b.alternatives.iter().map(|(m, _)| m).collect())
                ));
            }
            if !b.skipped.is_empty() {
                text.push_str(&format!(
                    "; also offered with another schema, not generated: {}",
                    list(b.skipped.iter().collect())
                ));
            }
            text.push('.');
            out.push_str("\n///\n");
            out.push_str(&doc(None, &text));
        }
        out
    }

    /// The first lines of the crate documentation.
    pub(crate) fn crate_doc(&self) -> String {
        let version = match self.api.version.trim() {
            "" => String::new(),
            v => format!(" {v}"),
        };
        inner_doc(&format!(
            "{}{version}: durable tasks and an HTTP client.",
            self.api.title
        ))
    }

    /// The crate's name as a Rust path (`petstore_api` for `petstore-api`).
    pub(crate) fn crate_ident(&self) -> String {
        self.api.crate_name.replace('-', "_")
    }

    /// The doc comment of the client struct.
    pub(crate) fn client_doc(&self) -> String {
        doc(None, &format!("A client for {}.", self.api.title))
    }

    /// The type of a parameter field, `Option` included.
    pub(crate) fn param_ty(&self, p: &Param) -> String {
        let ty = self.ty(&p.ty, true);
        if p.required {
            ty
        } else {
            format!("Option<{ty}>")
        }
    }

    /// The type of a body field, `Option` included.
    pub(crate) fn body_ty(&self, b: &Body) -> String {
        let ty = self.ty(&b.ty, true);
        if b.required {
            ty
        } else {
            format!("Option<{ty}>")
        }
    }
}

fn primitive(p: Primitive) -> &'static str {
    match p {
        Primitive::String => "String",
        Primitive::Bool => "bool",
        Primitive::I8 => "i8",
        Primitive::I16 => "i16",
        Primitive::I32 => "i32",
        Primitive::I64 => "i64",
        Primitive::U8 => "u8",
        Primitive::U16 => "u16",
        Primitive::U32 => "u32",
        Primitive::U64 => "u64",
        Primitive::Int64Text => "codegen_runtime::schema::Int64",
        Primitive::Uint64Text => "codegen_runtime::schema::UInt64",
        Primitive::F32 => "f32",
        Primitive::F64 => "f64",
        Primitive::DateTime => "chrono::DateTime<chrono::Utc>",
        Primitive::Date => "chrono::NaiveDate",
        Primitive::Uuid => "uuid::Uuid",
        Primitive::Bytes => "Vec<u8>",
        Primitive::Base64 => "codegen_runtime::schema::Base64",
        Primitive::File => "codegen_runtime::http::File",
    }
}

/// `///` lines for spec text, or `fallback` when there is none.
///
/// Spec text cannot leave the comment: line breaks of every kind start a new `///` line, and
/// characters that Rust refuses in comments (bare carriage returns, text-direction controls)
/// are dropped.
pub(crate) fn doc(text: Option<&str>, fallback: &str) -> String {
    comment_lines(
        text.filter(|t| !t.trim().is_empty()).unwrap_or(fallback),
        "///",
    )
}

/// `//!` lines, as [`doc`].
pub(crate) fn inner_doc(text: &str) -> String {
    comment_lines(text, "//!")
}

fn comment_lines(text: &str, marker: &str) -> String {
    let clean: String = text
        .replace("\r\n", "\n")
        .chars()
        .map(|c| {
            if matches!(
                c,
                '\r' | '\u{2028}' | '\u{2029}' | '\u{85}' | '\u{b}' | '\u{c}'
            ) {
                '\n'
            } else {
                c
            }
        })
        .filter(|c| *c == '\n' || *c == '\t' || !(c.is_control() || is_bidi_control(*c)))
        .collect();
    let mut out = String::new();
    let mut fenced = false;
    for line in clean.trim().lines() {
        let line = line.trim_end();
        // Code blocks in spec text are not Rust: fence them as text so rustdoc leaves them be.
        let line = if line.trim_start().starts_with("```") {
            fenced = !fenced;
            if fenced && line.trim_start() == "```" {
                line.replace("```", "```text")
            } else {
                line.to_owned()
            }
        } else {
            line.to_owned()
        };
        out.push_str(marker);
        if !line.is_empty() {
            out.push(' ');
            out.push_str(&line);
        }
        out.push('\n');
    }
    if fenced {
        out.push_str(marker);
        out.push_str(" ```\n");
    }
    out.pop();
    out
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{61c}')
}

/// A Rust string literal with the value `s`.
pub(crate) fn lit(s: &str) -> String {
    format!("{s:?}")
}

/// A TOML basic string with the value `s`.
pub(crate) fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Text for a one-line comment: control characters become spaces.
pub(crate) fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() || is_bidi_control(c) {
                ' '
            } else {
                c
            }
        })
        .collect()
}

/// "An" before a name that starts with a vowel letter (an `Email`), else "A" (a `Url`, a `u32`):
/// by letter, which reads right for most type names.
fn indefinite_article(name: &str) -> &'static str {
    match name.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'A' | 'E' | 'I' | 'O') => "An",
        _ => "A",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn union_variants_are_documented_with_the_article_their_type_reads_with() {
        assert_eq!(indefinite_article("Email"), "An");
        assert_eq!(indefinite_article("Option<Owner>"), "An");
        assert_eq!(indefinite_article("i64"), "An");
        assert_eq!(indefinite_article("Phone"), "A");
        assert_eq!(indefinite_article("Vec<Pet>"), "A");
        assert_eq!(indefinite_article("u32"), "A");
    }
    use crate::ir::TypeId;

    #[test]
    fn a_merged_alias_names_the_type_it_stands_for_after_its_own_text() {
        let def = |name: &str, origin: &str, doc: Option<&str>, kind| TypeDef {
            name: name.to_owned(),
            origin: origin.to_owned(),
            doc: doc.map(str::to_owned),
            kind,
            merged: false,
        };
        let mut api = Api::of_types(vec![
            def(
                "User",
                "#/components/schemas/user",
                None,
                TypeKind::Enum {
                    variants: Vec::new(),
                    other: "Other".to_owned(),
                },
            ),
            def(
                "Author",
                "#/components/schemas/author",
                None,
                TypeKind::Alias(TypeRef::Named(TypeId(0))),
            ),
            def(
                "IssueUser",
                "#/paths/~1a/x",
                Some("Who opened it."),
                TypeKind::Alias(TypeRef::Named(TypeId(0))),
            ),
            def(
                "Owner",
                "#/components/schemas/owner",
                None,
                TypeKind::Alias(TypeRef::Named(TypeId(0))),
            ),
        ]);
        api.types[1].merged = true;
        api.types[2].merged = true;
        let render = Render { api: &api };
        let note = "Another name for [`User`]: the description gives both the same shape.";
        assert_eq!(
            render.type_doc(&api.types[1]),
            format!("/// The `author` schema.\n///\n/// {note}")
        );
        assert_eq!(
            render.type_doc(&api.types[2]),
            format!("/// Who opened it.\n///\n/// {note}")
        );
        // An alias the description itself wrote says nothing more.
        assert_eq!(render.type_doc(&api.types[3]), "/// The `owner` schema.");
    }

    #[test]
    fn doc_comments_cannot_be_escaped() {
        let hostile = "line\r\nstill doc\rsplit */ fn main() {}\u{2028}x\u{202e}y";
        let out = doc(Some(hostile), "");
        for line in out.lines() {
            assert!(line.starts_with("///"), "{line:?}");
        }
        assert!(!out.contains('\r') && !out.contains('\u{202e}'));
    }

    #[test]
    fn bare_code_fences_become_text_and_are_closed() {
        let out = doc(Some("Example:\n```\nGET /x\n"), "");
        assert_eq!(out, "/// Example:\n/// ```text\n/// GET /x\n/// ```");
        let out = doc(Some("```json\n{}\n```"), "");
        assert_eq!(out, "/// ```json\n/// {}\n/// ```");
    }

    #[test]
    fn toml_strings_escape_quotes_and_controls() {
        assert_eq!(toml_str("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\u0001\"");
    }
}
