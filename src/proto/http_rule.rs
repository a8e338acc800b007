//! Methods into operations: HTTP/JSON by their `google.api.http` rule, else gRPC (unary, server
//! streaming or client streaming).

use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MethodDescriptor, ServiceDescriptor,
    Value,
};

use super::types::Types;
use crate::ir::names::{Scope, pascal_ident, snake_ident};
use crate::ir::{
    Body, BodyEncoding, GrpcKind, GrpcMethod, Operation, Output, Param, ParamLocation, ParamStyle,
    PathPart, TypeDef, TypeKind, TypeRef,
};

/// The HTTP rule of a method, as far as the generator uses it.
struct Rule {
    method: String,
    path: String,
    body: String,
    response_body: String,
    more_bindings: usize,
}

/// Whether `method` has a `google.api.http` rule that names an HTTP method and path.
pub(super) fn has_rule(pool: &DescriptorPool, method: &MethodDescriptor) -> bool {
    rule(pool, method).is_some()
}

fn rule(pool: &DescriptorPool, method: &MethodDescriptor) -> Option<Rule> {
    let extension = pool.get_extension_by_name("google.api.http")?;
    let options = method.options();
    if !options.has_extension(&extension) {
        return None;
    }
    let value = options.get_extension(&extension);
    let Value::Message(rule) = value.as_ref() else {
        return None;
    };
    let text = |m: &DynamicMessage, name: &str| {
        m.get_field_by_name(name)
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    let (verb, path) = ["get", "put", "post", "delete", "patch"]
        .iter()
        .find(|v| rule.has_field_by_name(v))
        .map(|v| (v.to_ascii_uppercase(), text(rule, v)))
        .or_else(|| {
            let custom = rule.get_field_by_name("custom")?;
            let custom = custom.as_message()?;
            Some((
                text(custom, "kind").to_ascii_uppercase(),
                text(custom, "path"),
            ))
        })?;
    let more_bindings = rule
        .get_field_by_name("additional_bindings")
        .and_then(|v| v.as_list().map(<[Value]>::len))
        .unwrap_or(0);
    Some(Rule {
        method: verb,
        path,
        body: text(rule, "body"),
        response_body: text(rule, "response_body"),
        more_bindings,
    })
}

/// The operation of one method that is not bidirectional: a streaming one has no HTTP rule (the
/// caller skips it otherwise).
#[allow(clippy::too_many_arguments)]
pub(super) fn operation(
    pool: &DescriptorPool,
    service: &ServiceDescriptor,
    method: &MethodDescriptor,
    types: &mut Types,
    type_names: &mut Scope,
    method_names: &mut Scope,
    notes: &mut Vec<String>,
) -> Operation {
    let wire_name = format!("{}.{}", service.name(), method.name());
    let type_name = type_names.claim(pascal_ident(method.name(), "Operation", "Op"));
    let method_name = method_names.claim(snake_ident(method.name(), "operation"));
    let input = types.message(&method.input());
    let output = types.message(&method.output());
    let grpc_path = format!("/{}/{}", service.full_name(), method.name());
    // `idempotency_level` (34): NO_SIDE_EFFECTS (1) or IDEMPOTENT (2).
    let idempotent = method
        .options()
        .get_field_by_number(34)
        .and_then(|v| v.as_enum_number())
        .is_some_and(|level| level == 1 || level == 2);
    let kind = match (method.is_client_streaming(), method.is_server_streaming()) {
        (true, _) => GrpcKind::ClientStreaming,
        (false, true) => GrpcKind::ServerStreaming,
        (false, false) => GrpcKind::Unary,
    };
    let mut doc =
        match super::types::comment(method.parent_file().file_descriptor_proto(), method.path()) {
            Some(text) => format!(
                "{text}\n\n`{}` of `{}`.",
                method.name(),
                service.full_name()
            ),
            None => format!(
                "The `{}` method of `{}`.",
                method.name(),
                service.full_name()
            ),
        };
    match kind {
        GrpcKind::Unary => {}
        GrpcKind::ServerStreaming => doc.push_str(
            "\n\nServer streaming: the output is every message of the stream, in order. More than\n\
             `GrpcClient::with_max_stream_messages` messages (10,000 unless set) fail the call\n\
             permanently; a stream that breaks off is retried from its start.",
        ),
        GrpcKind::ClientStreaming => doc.push_str(
            "\n\nClient streaming: `requests` are sent in order as the stream; the output is the\n\
             one response.",
        ),
    }
    let doc = Some(doc);
    // `deprecated` (33) of MethodOptions.
    let deprecated = method
        .options()
        .get_field_by_number(33)
        .is_some_and(|v| v.as_bool() == Some(true));
    let Some(rule) = rule(pool, method) else {
        let (body_name, body_ty, body_doc) = match kind {
            GrpcKind::ClientStreaming => (
                "requests",
                TypeRef::Vec(Box::new(input)),
                "The request messages, sent in order as the stream.",
            ),
            GrpcKind::Unary | GrpcKind::ServerStreaming => {
                ("request", input, "The request message.")
            }
        };
        let output = match kind {
            GrpcKind::ServerStreaming => TypeRef::Vec(Box::new(output)),
            GrpcKind::Unary | GrpcKind::ClientStreaming => output,
        };
        return Operation {
            type_name,
            method_name,
            wire_name,
            tags: vec![service.full_name().to_owned()],
            http_method: "POST".to_owned(),
            path: vec![PathPart::Literal(grpc_path.clone())],
            path_template: grpc_path.clone(),
            params: Vec::new(),
            body: Some(Body {
                name: body_name.to_owned(),
                media_type: "application/grpc".to_owned(),
                encoding: BodyEncoding::Json,
                ty: body_ty,
                required: true,
                alternatives: Vec::new(),
                form_styles: Vec::new(),
                files: Vec::new(),
                skipped: Vec::new(),
                doc: Some(body_doc.to_owned()),
            }),
            output: Output {
                encoding: Some(BodyEncoding::Json),
                ty: output,
                by_status: None,
                errors: Vec::new(),
                accept: vec!["application/json".to_owned()],
            },
            doc,
            deprecated,
            idempotent,
            idempotency_header: None,
            security: Vec::new(),
            grpc: Some(GrpcMethod {
                path: grpc_path,
                input: method.input().full_name().to_owned(),
                output: method.output().full_name().to_owned(),
                kind,
            }),
        };
    };
    if rule.more_bindings > 0 {
        notes.push(format!(
            "{wire_name}: {} additional HTTP binding(s) skipped; the task uses the first rule ({} {})",
            rule.more_bindings, rule.method, rule.path
        ));
    }
    let message = method.input();
    let mut field_names = Scope::default();
    let body_name = field_names.claim("body".to_owned());
    let mut params = Vec::new();
    let mut path = Vec::new();
    let mut bound: Vec<String> = Vec::new();
    for segment in template(&rule.path) {
        match segment {
            Segment::Literal(text) => path.push(PathPart::Literal(text)),
            Segment::Variable { field, multi } => {
                let top = field.split('.').next().unwrap_or_default().to_owned();
                let ty = match message.get_field_by_name(&field) {
                    Some(f) => types.field(&f),
                    None => TypeRef::Primitive(crate::ir::Primitive::String),
                };
                params.push(Param {
                    name: field_names.claim(snake_ident(&field.replace('.', "_"), "param")),
                    wire_name: field.clone(),
                    location: ParamLocation::Path,
                    ty,
                    required: true,
                    style: ParamStyle::Simple,
                    explode: false,
                    json: false,
                    doc: Some(format!("`{field}`, in the path.")),
                });
                let index = params.len() - 1;
                path.push(if multi {
                    PathPart::Segments(index)
                } else {
                    PathPart::Param(index)
                });
                if field == top {
                    bound.push(top);
                }
            }
        }
    }
    let unbound: Vec<FieldDescriptor> = message
        .fields()
        .filter(|f| !bound.iter().any(|b| b == f.name()))
        .collect();
    let body = match rule.body.as_str() {
        "" => None,
        "*" => {
            let fields: Vec<crate::ir::Field> = {
                let mut names = Scope::default();
                unbound
                    .iter()
                    .map(|f| crate::ir::Field {
                        name: names.claim(snake_ident(f.name(), "field")),
                        wire_name: f.json_name().to_owned(),
                        ty: types.field(f),
                        required: false,
                        nullable: false,
                        doc: Some(format!("Field `{}` ({}).", f.name(), f.number())),
                    })
                    .collect()
            };
            let ty = if bound.is_empty() {
                input.clone()
            } else {
                types.synthetic(TypeDef {
                    name: format!("{type_name}Body"),
                    origin: format!("{} without the fields in the path", message.full_name()),
                    doc: Some(format!(
                        "The body of `{}`: the fields of `{}` that are not in the path.",
                        method.name(),
                        message.full_name()
                    )),
                    kind: TypeKind::Struct {
                        fields,
                        additional: None,
                    },
                    merged: false,
                })
            };
            Some(Body {
                name: body_name,
                media_type: "application/json".to_owned(),
                encoding: BodyEncoding::Json,
                ty,
                required: true,
                alternatives: Vec::new(),
                form_styles: Vec::new(),
                files: Vec::new(),
                skipped: Vec::new(),
                doc: Some("The request body.".to_owned()),
            })
        }
        field => message.get_field_by_name(field).map(|f| Body {
            name: body_name,
            media_type: "application/json".to_owned(),
            encoding: BodyEncoding::Json,
            ty: types.field(&f),
            required: true,
            alternatives: Vec::new(),
            form_styles: Vec::new(),
            files: Vec::new(),
            skipped: Vec::new(),
            doc: Some(format!("Field `{field}`, the request body.")),
        }),
    };
    // The remaining scalar fields go in the query.
    if rule.body != "*" {
        for f in unbound.iter().filter(|f| f.name() != rule.body) {
            let ty = types.field(f);
            if !query_able(&ty, f) {
                notes.push(format!(
                    "{wire_name}: field `{}` is a message and is not sent (query parameters carry scalars only)",
                    f.name()
                ));
                continue;
            }
            params.push(Param {
                name: field_names.claim(snake_ident(f.name(), "param")),
                wire_name: f.json_name().to_owned(),
                location: ParamLocation::Query,
                ty,
                required: false,
                // Repeated fields repeat the parameter, as gRPC transcoding reads them.
                style: ParamStyle::Form,
                explode: true,
                json: false,
                doc: Some(format!(
                    "Field `{}` ({}), in the query.",
                    f.name(),
                    f.number()
                )),
            });
        }
    }
    let output_ty = if rule.response_body.is_empty() {
        output
    } else {
        match method.output().get_field_by_name(&rule.response_body) {
            Some(f) => types.field(&f),
            None => output,
        }
    };
    let http_method = rule.method.clone();
    Operation {
        type_name,
        method_name,
        wire_name,
        tags: vec![service.full_name().to_owned()],
        idempotent: idempotent || codegen_runtime::__private::is_idempotent_method(&http_method),
        http_method,
        path,
        path_template: rule.path.clone(),
        params,
        body,
        output: Output {
            encoding: Some(BodyEncoding::Json),
            ty: output_ty,
            by_status: None,
            errors: Vec::new(),
            accept: vec!["application/json".to_owned()],
        },
        doc,
        deprecated,
        idempotency_header: None,
        security: Vec::new(),
        grpc: None,
    }
}

fn query_able(ty: &TypeRef, field: &FieldDescriptor) -> bool {
    match ty {
        TypeRef::Primitive(_) => true,
        TypeRef::Vec(inner) => {
            matches!(**inner, TypeRef::Primitive(_)) || matches!(field.kind(), Kind::Enum(_))
        }
        TypeRef::Named(_) => matches!(field.kind(), Kind::Enum(_)),
        _ => false,
    }
}

/// A piece of a path template.
#[derive(Debug, PartialEq)]
enum Segment {
    Literal(String),
    /// `{field}` or `{field=pattern}`; `multi` when the pattern spans segments.
    Variable {
        field: String,
        multi: bool,
    },
}

/// Splits a path template (`/v1/{name=shelves/*}/books:list`) into literals and variables.
fn template(path: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        if start > 0 {
            out.push(Segment::Literal(rest[..start].to_owned()));
        }
        let Some(end) = rest[start..].find('}') else {
            out.push(Segment::Literal(rest[start..].to_owned()));
            return out;
        };
        let inner = &rest[start + 1..start + end];
        let (field, pattern) = inner.split_once('=').unwrap_or((inner, "*"));
        out.push(Segment::Variable {
            field: field.trim().to_owned(),
            multi: pattern.contains('/') || pattern.contains("**"),
        });
        rest = &rest[start + end + 1..];
    }
    if !rest.is_empty() {
        out.push(Segment::Literal(rest.to_owned()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_split_into_literals_and_variables() {
        assert_eq!(
            template("/v1/{name=shelves/*}/books/{book_id}:move"),
            [
                Segment::Literal("/v1/".into()),
                Segment::Variable {
                    field: "name".into(),
                    multi: true
                },
                Segment::Literal("/books/".into()),
                Segment::Variable {
                    field: "book_id".into(),
                    multi: false
                },
                Segment::Literal(":move".into()),
            ]
        );
    }
}
