//! Operations: parameters, bodies and outputs.

use openapiv3::{
    MediaType, Parameter, QueryStyle, ReferenceOr, RequestBody, Response, Schema, SchemaKind,
    StatusCode, StringFormat, Type, VariantOrUnknownOrEmpty,
};

use crate::Result;
use crate::error::{Error, pointer_token};
use crate::ir::names::{RESERVED_TYPES, Scope, pascal_ident, snake_ident};
use crate::ir::{
    Body, BodyEncoding, Operation, Output, Param, ParamLocation, ParamStyle, PathPart, Primitive,
    StatusMatch, StatusOutputs, StatusVariant, TypeKind, TypeRef,
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
                        location: format!("{}/$ref", crate::error::excerpt_pointer(&path_pointer)),
                        message: format!(
                            "path item references (`{}`) are not read yet",
                            crate::error::excerpt(reference)
                        ),
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
                let names = OperationNames {
                    type_name,
                    method_name,
                    wire_name,
                };
                match self.operation(template, item, method, op, &pointer, names, &mut type_names) {
                    Ok(operation) => out.push(operation),
                    Err(err) => self.skips.skip(
                        format!(
                            "skipped operation {} {template} ({pointer})",
                            method.to_ascii_uppercase()
                        ),
                        err,
                    )?,
                }
            }
        }
        self.document_error_bodies();
        Ok(out)
    }

    /// One operation of the path item `item` at `template`.
    #[allow(clippy::too_many_arguments)]
    fn operation(
        &mut self,
        template: &str,
        item: &'a openapiv3::PathItem,
        method: &str,
        op: &'a openapiv3::Operation,
        pointer: &str,
        names: OperationNames,
        type_names: &mut Scope,
    ) -> Result<Operation> {
        let OperationNames {
            type_name,
            method_name,
            wire_name,
        } = names;
        let mut params = Vec::new();
        let mut field_names = Scope::default();
        let body_name = field_names.claim("body".into());
        let mut declared: Vec<&ReferenceOr<Parameter>> = Vec::new();
        for p in item.parameters.iter().chain(&op.parameters) {
            declared.push(p);
        }
        let resolved = self.parameters(&declared, pointer)?;
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
        let output = self.output(
            &op.responses,
            &type_name,
            &format!("{pointer}/responses"),
            type_names,
        )?;
        let security = self.security_of(op.security.as_ref());
        let method_upper = method.to_ascii_uppercase();
        Ok(Operation {
            type_name,
            method_name,
            wire_name,
            tags: op.tags.clone(),
            idempotent: codegen_runtime::__private::is_idempotent_method(&method_upper),
            http_method: method_upper,
            path,
            path_template: template.to_owned(),
            params,
            body,
            output,
            doc: join_doc(op.summary.as_deref(), op.description.as_deref()),
            deprecated: op.deprecated,
            idempotency_header,
            grpc: None,
            security,
        })
    }

    /// The types made for inline error bodies without a description say whose they are.
    fn document_error_bodies(&mut self) {
        for body in std::mem::take(&mut self.error_bodies) {
            let TypeRef::Named(id) = body.ty else {
                continue;
            };
            let Some(def) = self.types[id.0].as_mut() else {
                continue;
            };
            if def.doc.is_some() || !def.origin.starts_with(&body.origin) {
                continue;
            }
            // Operations in order of first use, each with its statuses.
            let mut users: Vec<(String, Vec<String>)> = Vec::new();
            for (operation, status) in body.uses {
                match users.iter_mut().find(|(o, _)| *o == operation) {
                    Some((_, statuses)) => statuses.push(format!("`{status}`")),
                    None => users.push((operation, vec![format!("`{status}`")])),
                }
            }
            const SHOWN: usize = 3;
            let mut named: Vec<String> = users
                .iter()
                .take(SHOWN)
                .map(|(operation, statuses)| {
                    let plural = if statuses.len() == 1 { "" } else { "es" };
                    format!(
                        "[`{operation}`](crate::operations::{operation}) (status{plural} {})",
                        statuses.join(", ")
                    )
                })
                .collect();
            if users.len() > SHOWN {
                named.push(format!("{} other operations", users.len() - SHOWN));
            }
            let list = match named.as_slice() {
                [one] => one.clone(),
                [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
                [] => continue,
            };
            def.doc = Some(format!("The error body of {list}."));
        }
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
        let mut json = false;
        let ty = match &data.format {
            openapiv3::ParameterSchemaOrContent::Schema(schema) => {
                self.schema_or_ref(schema, &hint, &format!("{pointer}/schema"))?
            }
            openapiv3::ParameterSchemaOrContent::Content(content) => {
                match pick_media_type(content.keys()) {
                    Some((media_type, BodyEncoding::Json)) => {
                        json = true;
                        self.content_type(
                            content[media_type.as_str()].schema.as_ref(),
                            BodyEncoding::Json,
                            &media_type,
                            &hint,
                            pointer,
                        )?
                    }
                    _ => TypeRef::Primitive(Primitive::String),
                }
            }
        };
        let location = location(param);
        let (default_style, default_explode) = ParamStyle::default_for(location);
        let style = match param {
            Parameter::Path { style, .. } => match style {
                openapiv3::PathStyle::Simple => ParamStyle::Simple,
                openapiv3::PathStyle::Label => ParamStyle::Label,
                openapiv3::PathStyle::Matrix => ParamStyle::Matrix,
            },
            Parameter::Query { style, .. } => query_style(style),
            Parameter::Header { .. } | Parameter::Cookie { .. } => default_style,
        };
        // `explode` defaults to true for `form` and false for every other style.
        let explode = data.explode.unwrap_or(if style == default_style {
            default_explode
        } else {
            style == ParamStyle::Form
        });
        Ok(Param {
            name: names.claim(snake_ident(&data.name, "param")),
            wire_name: data.name.clone(),
            location,
            ty,
            required: data.required || location == ParamLocation::Path,
            style,
            explode,
            json,
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
        let media = &body.content[media_type.as_str()];
        let schema = media.schema.as_ref();
        let hint = format!("{type_name}Body");
        let mut ty = self.content_type(schema, encoding, &media_type, &hint, pointer)?;
        let mut alternatives = Vec::new();
        let mut skipped = Vec::new();
        for (other, other_media) in &body.content {
            if *other == media_type {
                continue;
            }
            let other_encoding = classify(other).1;
            let same_schema = other_media.schema == media.schema;
            let encodable = matches!(
                other_encoding,
                BodyEncoding::Json | BodyEncoding::Form | BodyEncoding::Multipart
            ) && matches!(encoding, BodyEncoding::Json | BodyEncoding::Form);
            if same_schema && encodable {
                alternatives.push((concrete(other, other_encoding), other_encoding));
            } else {
                skipped.push(other.clone());
            }
        }
        let mut files = Vec::new();
        if encoding == BodyEncoding::Multipart {
            files = self.binary_properties(schema, media);
            if !files.is_empty() {
                ty = self.with_file_fields(ty, &files, &hint, pointer);
            }
        }
        Ok(Some(Body {
            name,
            media_type: concrete(&media_type, encoding),
            encoding,
            ty,
            required: body.required,
            alternatives,
            form_styles: form_styles(media),
            files,
            skipped,
            doc: body.description.clone(),
        }))
    }

    /// The properties of a multipart body schema that are binary strings (or arrays of them),
    /// with the media type of their parts.
    fn binary_properties(
        &self,
        schema: Option<&'a ReferenceOr<Schema>>,
        media: &MediaType,
    ) -> Vec<(String, String)> {
        let Some(schema) = schema.and_then(|s| self.resolve_schema(s)) else {
            return Vec::new();
        };
        let SchemaKind::Type(Type::Object(object)) = &schema.schema_kind else {
            return Vec::new();
        };
        let binary = |s: &ReferenceOr<Box<Schema>>| match s {
            ReferenceOr::Item(s) => is_binary(s),
            ReferenceOr::Reference { .. } => false,
        };
        object
            .properties
            .iter()
            .filter(|(_, p)| match p {
                ReferenceOr::Item(p) => match &p.schema_kind {
                    SchemaKind::Type(Type::Array(array)) => {
                        array.items.as_ref().is_some_and(binary)
                    }
                    _ => is_binary(p),
                },
                ReferenceOr::Reference { .. } => false,
            })
            .map(|(name, _)| {
                let content_type = media
                    .encoding
                    .get(name)
                    .and_then(|e| e.content_type.clone())
                    .filter(|c| !c.contains(',') && !c.contains('*'))
                    .unwrap_or_else(|| "application/octet-stream".to_owned());
                (name.clone(), content_type)
            })
            .collect()
    }

    /// A schema, following `#/components/schemas` references.
    fn resolve_schema(&self, schema: &'a ReferenceOr<Schema>) -> Option<&'a Schema> {
        let mut schema = schema;
        for _ in 0..32 {
            match schema {
                ReferenceOr::Item(s) => return Some(s),
                ReferenceOr::Reference { reference } => {
                    let name = reference.strip_prefix(super::SCHEMA_PREFIX)?;
                    schema = self.schemas()?.get(name)?;
                }
            }
        }
        None
    }

    /// The struct of a multipart body with its binary fields as files: the body's own type
    /// when it was made for it, a copy of a shared component otherwise.
    fn with_file_fields(
        &mut self,
        ty: TypeRef,
        files: &[(String, String)],
        hint: &str,
        pointer: &str,
    ) -> TypeRef {
        let TypeRef::Named(id) = ty else {
            return ty;
        };
        let Some(def) = self.types[id.0].clone() else {
            return ty;
        };
        let TypeKind::Struct {
            mut fields,
            additional,
        } = def.kind
        else {
            return ty;
        };
        for field in &mut fields {
            if files.iter().any(|(name, _)| *name == field.wire_name) {
                field.ty = match field.ty {
                    TypeRef::Vec(_) => TypeRef::Vec(Box::new(TypeRef::Primitive(Primitive::File))),
                    _ => TypeRef::Primitive(Primitive::File),
                };
            }
        }
        let kind = TypeKind::Struct { fields, additional };
        let own = def.origin.starts_with(pointer);
        if own {
            self.kind_of(id, kind);
            ty
        } else {
            let new = self.declare(hint, pointer.to_owned());
            if let Some(new_def) = self.types[new.0].as_mut() {
                new_def.doc = def.doc;
                new_def.kind = kind;
            }
            TypeRef::Named(new)
        }
    }

    /// The requirements of an operation (or of the document when it has none), keeping the
    /// schemes the document defines.
    fn security_of(&self, op: Option<&Vec<openapiv3::SecurityRequirement>>) -> Vec<Vec<String>> {
        let Some(requirements) = op.or(self.doc.security.as_ref()) else {
            return Vec::new();
        };
        let known = |name: &String| {
            self.doc
                .components
                .as_ref()
                .is_some_and(|c| c.security_schemes.contains_key(name))
        };
        let mut out: Vec<Vec<String>> = Vec::new();
        for requirement in requirements {
            // `{}` among the alternatives means credentials are optional: the configured ones
            // are still sent (for higher limits, say), and none is needed.
            if requirement.is_empty() {
                continue;
            }
            if requirement.keys().all(known) {
                out.push(requirement.keys().cloned().collect());
            }
        }
        out
    }

    /// The outputs of the 2xx responses (or of `default` when there is none): one type when
    /// they agree, an enum with a variant per status when they differ. Error responses with a
    /// JSON body are listed for the documentation.
    fn output(
        &mut self,
        responses: &'a openapiv3::Responses,
        type_name: &str,
        pointer: &str,
        type_names: &mut Scope,
    ) -> Result<Output> {
        let mut success: Vec<(u16, StatusMatch, String, &ReferenceOr<Response>)> = Vec::new();
        let mut failure: Vec<(String, &ReferenceOr<Response>)> = Vec::new();
        for (code, r) in &responses.responses {
            match code {
                StatusCode::Code(c) if (200..300).contains(c) => {
                    success.push((*c, StatusMatch::Code(*c), c.to_string(), r));
                }
                StatusCode::Range(2) => success.push((299, StatusMatch::Range(2), "2XX".into(), r)),
                StatusCode::Code(c) => failure.push((c.to_string(), r)),
                StatusCode::Range(c) => failure.push((format!("{c}XX"), r)),
            }
        }
        success.sort_by_key(|(order, _, _, _)| *order);
        if let Some(default) = &responses.default {
            if success.is_empty() {
                success.push((0, StatusMatch::Default, "default".into(), default));
            } else {
                failure.push(("default".into(), default));
            }
        }
        let mut outcomes: Vec<(StatusMatch, Option<BodyEncoding>, TypeRef, Option<String>)> =
            Vec::new();
        let mut accept: Vec<String> = Vec::new();
        for (_, status, key, response) in success {
            let r_pointer = format!("{pointer}/{key}");
            let response = self.component(response, "responses", |c| &c.responses, &r_pointer)?;
            let (encoding, ty) = match pick_media_type(response.content.keys()) {
                None => (None, TypeRef::Any),
                Some((media_type, encoding)) => {
                    // Multipart responses are handed over as they came.
                    let encoding = response_encoding(encoding);
                    // Every type of the response that the same decoder reads.
                    add_accepted(
                        &mut accept,
                        response
                            .content
                            .keys()
                            .filter(|m| response_encoding(classify(m).1) == encoding),
                    );
                    let schema = response.content[media_type.as_str()].schema.as_ref();
                    // The first typed response keeps the plain name, as before.
                    let hint = if outcomes.iter().all(|(_, e, _, _)| e.is_none()) {
                        format!("{type_name}Response")
                    } else {
                        format!("{type_name}Response{key}")
                    };
                    let ty = self.content_type(schema, encoding, &media_type, &hint, &r_pointer)?;
                    (Some(encoding), ty)
                }
            };
            let doc = Some(response.description.trim().to_owned()).filter(|d| !d.is_empty());
            outcomes.push((status, encoding, ty, doc));
        }
        // Error responses with a JSON schema: named schemas as they are, inline ones get a
        // type of their own (`<Operation>Error`, or one per status when they differ), so that
        // `TaskError::body_as` has a type to read them as.
        let mut described: Vec<(String, String, &ReferenceOr<Schema>, String)> = Vec::new();
        for (key, response) in failure {
            let r_pointer = format!("{pointer}/{key}");
            // Error responses are documentation: one that cannot be read is left out of it.
            let response = match self.component(response, "responses", |c| &c.responses, &r_pointer)
            {
                Ok(response) => response,
                Err(err) => {
                    self.skips.skip(
                        format!("left the {key} response out of the documentation at {pointer}"),
                        err,
                    )?;
                    continue;
                }
            };
            // Error bodies are read as JSON (`TaskError::body_as`).
            add_accepted(
                &mut accept,
                response
                    .content
                    .keys()
                    .filter(|m| classify(m).1 == BodyEncoding::Json),
            );
            if let Some((media_type, BodyEncoding::Json)) = pick_media_type(response.content.keys())
                && let Some(schema) = response.content[media_type.as_str()].schema.as_ref()
            {
                described.push((key, media_type, schema, r_pointer));
            }
        }
        // The inline schemas that need a new type: one is `<Operation>Error`, several are
        // named by their status.
        let mut inline: Vec<&Schema> = Vec::new();
        for (_, _, schema, _) in &described {
            if let ReferenceOr::Item(schema) = schema
                && !inline.contains(&schema)
                && !self.error_bodies.iter().any(|b| b.schema == schema)
            {
                inline.push(schema);
            }
        }
        let one_inline = inline.len() == 1;
        let mut errors = Vec::new();
        for (key, media_type, schema, r_pointer) in described {
            match schema {
                // Documentation only: a reference that does not resolve is left out here (it
                // is reported where it matters, in a type that uses it).
                ReferenceOr::Reference { reference } => {
                    if let Ok(ty) = self.resolve(reference, &r_pointer) {
                        errors.push((key, ty));
                    }
                }
                ReferenceOr::Item(item) => {
                    // The same schema, in this operation or an earlier one, has one type.
                    let known = self.error_bodies.iter().position(|b| b.schema == item);
                    let index = match known {
                        Some(index) => index,
                        None => {
                            let hint = if one_inline {
                                format!("{type_name}Error")
                            } else {
                                format!("{type_name}Error{}", pascal_ident(&key, "", ""))
                            };
                            let ty = self.content_type(
                                Some(schema),
                                BodyEncoding::Json,
                                &media_type,
                                &hint,
                                &r_pointer,
                            )?;
                            self.error_bodies.push(super::ErrorBody {
                                schema: item,
                                ty,
                                origin: r_pointer.clone(),
                                uses: Vec::new(),
                            });
                            self.error_bodies.len() - 1
                        }
                    };
                    let body = &mut self.error_bodies[index];
                    body.uses.push((type_name.to_owned(), key.clone()));
                    // Any JSON is what `TaskError::body_as` reads anyway.
                    if body.ty != TypeRef::Any {
                        errors.push((key, body.ty.clone()));
                    }
                }
            }
        }
        let first = outcomes
            .iter()
            .find(|(_, e, _, _)| e.is_some())
            .map(|(_, e, t, _)| (*e, t.clone()));
        let agree = outcomes
            .iter()
            .all(|(_, e, t, _)| first.as_ref().is_some_and(|(fe, ft)| fe == e && ft == t));
        if outcomes.iter().all(|(_, e, _, _)| e.is_none()) {
            // Nothing is read from a successful response: any type will do.
            accept.clear();
        }
        let single = |encoding, ty| Output {
            encoding,
            ty,
            by_status: None,
            errors: errors.clone(),
            accept: accept.clone(),
        };
        Ok(match first {
            // No response has a body: there is nothing to tell apart.
            None => single(None, TypeRef::Any),
            Some((encoding, ty)) if agree => single(encoding, ty),
            Some(_) => {
                let mut names = Scope::default();
                let variants = outcomes
                    .into_iter()
                    .map(|(status, encoding, ty, doc)| StatusVariant {
                        name: names.claim(variant_name(status)),
                        status,
                        encoding,
                        ty,
                        doc,
                    })
                    .collect();
                Output {
                    encoding: None,
                    ty: TypeRef::Any,
                    by_status: Some(StatusOutputs {
                        type_name: type_names.claim(format!("{type_name}Output")),
                        variants,
                    }),
                    errors,
                    accept,
                }
            }
        })
    }
}

/// The names an operation was given before it is read.
struct OperationNames {
    type_name: String,
    method_name: String,
    wire_name: String,
}

/// How a response of a media type of `encoding` is read: multipart responses as bytes.
fn response_encoding(encoding: BodyEncoding) -> BodyEncoding {
    match encoding {
        BodyEncoding::Multipart => BodyEncoding::Bytes,
        other => other,
    }
}

/// Adds media types to an `Accept` list, once each (compared without case).
fn add_accepted<'k>(accept: &mut Vec<String>, media_types: impl Iterator<Item = &'k String>) {
    for media_type in media_types {
        let media_type = media_type.trim();
        // A header value: visible ASCII only.
        let valid = !media_type.is_empty() && media_type.bytes().all(|b| (0x20..0x7f).contains(&b));
        if valid && !accept.iter().any(|a| a.eq_ignore_ascii_case(media_type)) {
            accept.push(media_type.to_owned());
        }
    }
}

/// `Ok` for 200, `Created` for 201...: the reason phrase, or `Status2xx`.
fn variant_name(status: StatusMatch) -> String {
    let name = match status {
        StatusMatch::Code(200) => "Ok",
        StatusMatch::Code(201) => "Created",
        StatusMatch::Code(202) => "Accepted",
        StatusMatch::Code(203) => "NonAuthoritativeInformation",
        StatusMatch::Code(204) => "NoContent",
        StatusMatch::Code(205) => "ResetContent",
        StatusMatch::Code(206) => "PartialContent",
        StatusMatch::Code(207) => "MultiStatus",
        StatusMatch::Code(208) => "AlreadyReported",
        StatusMatch::Code(226) => "ImUsed",
        StatusMatch::Code(code) => return format!("Status{code}"),
        StatusMatch::Range(_) => "Success",
        StatusMatch::Default => "Default",
    };
    name.to_owned()
}

fn query_style(style: &QueryStyle) -> ParamStyle {
    match style {
        QueryStyle::Form => ParamStyle::Form,
        QueryStyle::SpaceDelimited => ParamStyle::SpaceDelimited,
        QueryStyle::PipeDelimited => ParamStyle::PipeDelimited,
        QueryStyle::DeepObject => ParamStyle::DeepObject,
    }
}

/// The `encoding` entries of a form body that give a style.
fn form_styles(media: &MediaType) -> Vec<(String, ParamStyle, bool)> {
    media
        .encoding
        .iter()
        .filter_map(|(name, e)| {
            let style = query_style(e.style.as_ref()?);
            Some((name.clone(), style, e.explode))
        })
        .collect()
}

fn is_binary(schema: &Schema) -> bool {
    matches!(
        &schema.schema_kind,
        SchemaKind::Type(Type::String(s))
            if s.format == VariantOrUnknownOrEmpty::Item(StringFormat::Binary)
    )
}

fn location(p: &Parameter) -> ParamLocation {
    match p {
        Parameter::Query { .. } => ParamLocation::Query,
        Parameter::Header { .. } => ParamLocation::Header,
        Parameter::Path { .. } => ParamLocation::Path,
        Parameter::Cookie { .. } => ParamLocation::Cookie,
    }
}

/// The rank and encoding of a media type: JSON first (`application/json`, any `+json`), then
/// other JSON-like types, form, multipart, text and bytes.
fn classify(media_type: &str) -> (u8, BodyEncoding) {
    let essence = media_type
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
    } else if essence.starts_with("multipart/") {
        (3, BodyEncoding::Multipart)
    } else if essence.starts_with("text/") {
        (4, BodyEncoding::Text)
    } else {
        (5, BodyEncoding::Bytes)
    }
}

/// The `Content-Type` to send for a media type of the description: wildcards (`*/*`,
/// `text/*`) become the plain type of their encoding.
fn concrete(media_type: &str, encoding: BodyEncoding) -> String {
    if !media_type.contains('*') {
        return media_type.to_owned();
    }
    match encoding {
        BodyEncoding::Json => "application/json",
        BodyEncoding::Form => "application/x-www-form-urlencoded",
        BodyEncoding::Multipart => "multipart/form-data",
        BodyEncoding::Text => "text/plain",
        BodyEncoding::Bytes => "application/octet-stream",
    }
    .to_owned()
}

/// The media type a body is sent or read in by default: the first of the best rank.
fn pick_media_type<'k>(types: impl Iterator<Item = &'k String>) -> Option<(String, BodyEncoding)> {
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
                    style: ParamStyle::Simple,
                    explode: false,
                    json: false,
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
