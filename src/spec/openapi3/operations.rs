//! Operations: parameters, bodies and outputs.

use openapiv3::{Parameter, ReferenceOr, RequestBody, Response, Schema, StatusCode};

use crate::Result;
use crate::error::{Error, pointer_token};
use crate::ir::names::{RESERVED_TYPES, Scope, pascal_ident, snake_ident};
use crate::ir::{
    Body, BodyEncoding, Operation, Output, Param, ParamLocation, PathPart, Primitive, TypeRef,
};

use super::{CLIENT_METHODS, Reader, join_doc};

impl<'a> Reader<'a> {
    pub(super) fn operations(&mut self) -> Result<Vec<Operation>> {
        let mut type_names = Scope::with_reserved(RESERVED_TYPES);
        let mut method_names = Scope::with_reserved(CLIENT_METHODS);
        let mut wire_names = std::collections::BTreeSet::new();
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
                let wanted = op
                    .operation_id
                    .clone()
                    .filter(|id| !id.trim().is_empty())
                    .unwrap_or_else(|| format!("{method} {template}"));
                // Task names route tasks to handlers, so they are unique too: a repeated
                // operationId gets a number, in spec order.
                let wire_name = (1..)
                    .map(|n| match n {
                        1 => wanted.clone(),
                        n => format!("{wanted}_{n}"),
                    })
                    .find(|name| wire_names.insert(name.clone()))
                    .expect("a free name exists");
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
                let mut idempotency_header = None;
                for (p, p_pointer) in resolved {
                    if is_idempotency_header(p) {
                        idempotency_header = Some(p.parameter_data_ref().name.clone());
                        continue;
                    }
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
                    idempotency_header,
                    grpc: None,
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
            let param = self.component(p, "parameters", |c| &c.parameters, &p_pointer)?;
            let key = |p: &Parameter| (p.parameter_data_ref().name.clone(), location(p));
            out.retain(|(existing, _)| key(existing) != key(param));
            out.push((param, p_pointer));
        }
        Ok(out)
    }

    /// The type of a body (request or response) of `media_type`.
    fn content_type(
        &mut self,
        schema: Option<&ReferenceOr<Schema>>,
        encoding: BodyEncoding,
        media_type: &str,
        hint: &str,
        pointer: &str,
    ) -> Result<TypeRef> {
        Ok(match (encoding, schema) {
            (BodyEncoding::Bytes, _) => TypeRef::Primitive(Primitive::Bytes),
            (BodyEncoding::Text, _) => TypeRef::Primitive(Primitive::String),
            (_, Some(schema)) => {
                let pointer = format!("{pointer}/content/{}/schema", pointer_token(media_type));
                self.schema_or_ref(schema, hint, &pointer)?
            }
            (_, None) => TypeRef::Any,
        })
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
        body: &'a ReferenceOr<RequestBody>,
        type_name: &str,
        pointer: &str,
        name: String,
    ) -> Result<Option<Body>> {
        let body = self.component(body, "requestBodies", |c| &c.request_bodies, pointer)?;
        let Some((media_type, encoding)) = pick_media_type(body.content.keys()) else {
            return Ok(None);
        };
        let schema = body.content[media_type.as_str()].schema.as_ref();
        let hint = format!("{type_name}Body");
        let ty = self.content_type(schema, encoding, &media_type, &hint, pointer)?;
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
        responses: &'a openapiv3::Responses,
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
            let response = self.component(response, "responses", |c| &c.responses, &r_pointer)?;
            let Some((media_type, encoding)) = pick_media_type(response.content.keys()) else {
                continue;
            };
            let schema = response.content[media_type.as_str()].schema.as_ref();
            let hint = format!("{type_name}Response");
            let ty = self.content_type(schema, encoding, &media_type, &hint, &r_pointer)?;
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

/// A header parameter for idempotency keys: `Idempotency-Key`, `X-Idempotency-Key`,
/// `idempotency_key`... in any case.
fn is_idempotency_header(param: &Parameter) -> bool {
    let Parameter::Header { parameter_data, .. } = param else {
        return false;
    };
    let normal: String = parameter_data
        .name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_ascii_lowercase();
    normal == "idempotencykey" || normal == "xidempotencykey"
}
