//! One askama template per generated file.

use askama::Template;

use super::render::{Render, inner_doc, lit, one_line, toml_str};
use super::{GeneratedFile, Options, RuntimeDependency};
use crate::Result;
use crate::error::Error;
use crate::ir::{
    Api, BodyEncoding, Operation, ParamLocation, PathPart, Primitive, TypeKind, TypeRef,
};

/// What the generated crate uses, deciding its dependencies.
#[derive(Debug, Default, Clone, Copy)]
struct Uses {
    chrono: bool,
    uuid: bool,
    json_value: bool,
}

impl Uses {
    fn of(api: &Api) -> Self {
        let mut uses = Self::default();
        let mut visit = |ty: &TypeRef| uses.add(ty);
        for t in &api.types {
            match &t.kind {
                TypeKind::Struct { fields, additional } => {
                    fields.iter().for_each(|f| visit(&f.ty));
                    additional.iter().for_each(&mut visit);
                }
                TypeKind::Union {
                    variants,
                    discriminator,
                } => {
                    variants.iter().for_each(|v| visit(&v.ty));
                    if discriminator.is_some() {
                        visit(&TypeRef::Any);
                    }
                }
                TypeKind::Alias(ty) | TypeKind::Newtype(ty) => visit(ty),
                TypeKind::Enum { .. } => {}
            }
        }
        for op in &api.operations {
            if op.grpc.is_some() {
                // The request is turned into JSON for the descriptors.
                visit(&TypeRef::Any);
            }
            op.params.iter().for_each(|p| visit(&p.ty));
            op.body.iter().for_each(|b| visit(&b.ty));
            if op.output.encoding.is_some() {
                visit(&op.output.ty);
            }
        }
        uses
    }

    fn add(&mut self, ty: &TypeRef) {
        match ty {
            TypeRef::Primitive(Primitive::DateTime | Primitive::Date) => self.chrono = true,
            TypeRef::Primitive(Primitive::Uuid) => self.uuid = true,
            TypeRef::Any => self.json_value = true,
            TypeRef::Vec(inner) | TypeRef::Map(inner) | TypeRef::Box(inner) => self.add(inner),
            TypeRef::Named(_) | TypeRef::Primitive(_) => {}
        }
    }
}

#[derive(Template)]
#[template(path = "Cargo.toml")]
struct CargoToml<'a> {
    api: &'a Api,
    source: &'a str,
    runtime: &'a RuntimeDependency,
    uses: Uses,
}

#[derive(Template)]
#[template(path = "rustfmt.toml")]
struct RustfmtToml;

#[derive(Template)]
#[template(path = "lib.rs")]
struct LibRs<'a> {
    api: &'a Api,
    source: &'a str,
    r: Render<'a>,
}

#[derive(Template)]
#[template(path = "types.rs")]
struct TypesRs<'a> {
    api: &'a Api,
    source: &'a str,
    r: Render<'a>,
}

#[derive(Template)]
#[template(path = "operations.rs")]
struct OperationsRs<'a> {
    api: &'a Api,
    source: &'a str,
    r: Render<'a>,
    grpc: bool,
}

#[derive(Template)]
#[template(path = "main.rs")]
struct MainRs<'a> {
    api: &'a Api,
    source: &'a str,
    r: Render<'a>,
}

#[derive(Template)]
#[template(path = "client.rs")]
struct ClientRs<'a> {
    api: &'a Api,
    source: &'a str,
    r: Render<'a>,
    grpc: bool,
}

impl OperationsRs<'_> {
    fn http_count(&self) -> usize {
        self.api
            .operations
            .iter()
            .filter(|op| op.grpc.is_none())
            .count()
    }

    /// The statements that fill in the request of `op`.
    fn build_steps(&self, op: &Operation) -> Vec<String> {
        let mut steps = Vec::new();
        for part in &op.path {
            match part {
                PathPart::Literal(text) => steps.push(format!("request.path({});", lit(text))),
                PathPart::Param(index) => {
                    let p = &op.params[*index];
                    steps.push(format!(
                        "request.path_param({}, &self.{})?;",
                        lit(&p.wire_name),
                        p.name
                    ));
                }
                PathPart::Segments(index) => {
                    let p = &op.params[*index];
                    steps.push(format!(
                        "request.path_segments({}, &self.{})?;",
                        lit(&p.wire_name),
                        p.name
                    ));
                }
            }
        }
        for p in &op.params {
            let method = match p.location {
                ParamLocation::Path => continue,
                ParamLocation::Query => "query",
                ParamLocation::Header => "header",
                ParamLocation::Cookie => "cookie",
            };
            steps.push(format!(
                "request.{method}({}, &self.{})?;",
                lit(&p.wire_name),
                p.name
            ));
        }
        if let Some(body) = &op.body {
            let media = lit(&body.media_type);
            let value = if body.required {
                format!("&self.{}", body.name)
            } else {
                "body".to_owned()
            };
            let call = match body.encoding {
                BodyEncoding::Json => format!("request.json({media}, {value})?;"),
                BodyEncoding::Form => format!("request.form({media}, {value})?;"),
                BodyEncoding::Text => format!("request.text({media}, {value});"),
                BodyEncoding::Bytes => format!("request.bytes({media}, {value});"),
            };
            if body.required {
                steps.push(call);
            } else {
                steps.push(format!(
                    "if let Some(body) = &self.{} {{ {call} }}",
                    body.name
                ));
            }
        }
        steps
    }

    fn output_ty(&self, op: &Operation) -> String {
        match op.output.encoding {
            None => "()".to_owned(),
            Some(_) => self.r.ty(&op.output.ty, true),
        }
    }

    fn decoder(&self, op: &Operation) -> &'static str {
        match op.output.encoding {
            None => "empty",
            Some(BodyEncoding::Json | BodyEncoding::Form) => "json",
            Some(BodyEncoding::Text) => "text",
            Some(BodyEncoding::Bytes) => "bytes",
        }
    }
}

/// Whether any operation of the API is a gRPC call.
fn has_grpc(api: &Api) -> bool {
    api.operations.iter().any(|op| op.grpc.is_some())
}

/// The bytes as a Rust byte string literal: printable ASCII as is, the rest escaped.
fn byte_string(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2 + 3);
    out.push_str("b\"");
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('"');
    out
}

impl ClientRs<'_> {
    fn output_ty(&self, op: &Operation) -> String {
        match op.output.encoding {
            None => "()".to_owned(),
            Some(_) => self.r.ty(&op.output.ty, true),
        }
    }
}

/// Renders every file, unformatted.
pub(super) fn render(api: &Api, source: &str, options: &Options) -> Result<Vec<GeneratedFile>> {
    let r = Render { api };
    let uses = Uses::of(api);
    let files = [
        (
            "Cargo.toml",
            CargoToml {
                api,
                source,
                runtime: &options.runtime,
                uses,
            }
            .render(),
        ),
        ("rustfmt.toml", RustfmtToml.render()),
        ("src/lib.rs", LibRs { api, source, r }.render()),
        ("src/types.rs", TypesRs { api, source, r }.render()),
        (
            "src/operations.rs",
            OperationsRs {
                api,
                source,
                r,
                grpc: has_grpc(api),
            }
            .render(),
        ),
        (
            "src/client.rs",
            ClientRs {
                api,
                source,
                r,
                grpc: has_grpc(api),
            }
            .render(),
        ),
        ("src/main.rs", MainRs { api, source, r }.render()),
    ];
    files
        .into_iter()
        .map(|(path, rendered)| {
            let mut contents = rendered.map_err(|err| Error::Internal {
                file: path.to_owned(),
                message: err.to_string(),
            })?;
            if !contents.ends_with('\n') {
                contents.push('\n');
            }
            Ok(GeneratedFile {
                path: path.into(),
                contents,
            })
        })
        .collect()
}

/// A match pattern of string literals: `"a" | "b"`.
fn tag_pattern(tags: &[String]) -> String {
    tags.iter().map(|t| lit(t)).collect::<Vec<_>>().join(" | ")
}
