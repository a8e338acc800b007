//! One askama template per generated file.

use askama::Template;

use super::render::{ObjectField, Render, inner_doc, lit, one_line, toml_str};
use super::{GeneratedFile, Options, RuntimeDependency};
use crate::Result;
use crate::error::Error;
use crate::ir::{
    Api, Body, BodyEncoding, GrpcKind, GrpcMethod, Operation, Param, ParamLocation, ParamStyle,
    PathPart, Primitive, SchemeKind, StatusMatch, StatusVariant, TypeKind, TypeRef,
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
            for v in op.output.by_status.iter().flat_map(|o| &o.variants) {
                if v.encoding.is_some() {
                    visit(&v.ty);
                }
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
            TypeRef::Tuple(items) => items.iter().for_each(|t| self.add(t)),
            TypeRef::Named(_) | TypeRef::Primitive(_) => {}
        }
    }
}

#[derive(Template)]
// Not `Cargo.toml`: cargo leaves a folder with a `Cargo.toml` out of the package.
#[template(path = "manifest.toml")]
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

impl<'a> OperationsRs<'a> {
    fn http_count(&self) -> usize {
        self.api
            .operations
            .iter()
            .filter(|op| op.grpc.is_none())
            .count()
    }

    /// The fields of an operation's struct, as its serde impls write and read them: named as in
    /// Rust, which is how task inputs are recorded.
    fn object_fields(&self, op: &'a Operation) -> Vec<ObjectField<'a>> {
        let params = op.params.iter().map(|p| (&p.name, p.required));
        let body = op.body.iter().map(|b| (&b.name, b.required));
        params
            .chain(body)
            .map(|(name, required)| {
                ObjectField::new(name, name.trim_start_matches("r#"), required, false)
            })
            .collect()
    }

    /// The statements that fill in the request of `op`, in order; `templates/operations.rs`
    /// writes each.
    fn build_steps(&self, op: &'a Operation) -> Vec<Step<'a>> {
        let mut steps = Vec::new();
        for part in &op.path {
            match part {
                PathPart::Literal(text) => steps.push(Step::Path(text)),
                PathPart::Param(index) => steps.push(Step::param(
                    "path_param",
                    &op.params[*index],
                    (ParamStyle::Simple, false),
                )),
                PathPart::Segments(index) => steps.push(Step::Segments(&op.params[*index])),
            }
        }
        for p in &op.params {
            let method = match p.location {
                ParamLocation::Path => continue,
                ParamLocation::Query => "query",
                ParamLocation::Header => "header",
                ParamLocation::Cookie => "cookie",
            };
            steps.push(Step::param(method, p, ParamStyle::default_for(p.location)));
        }
        if let Some(body) = &op.body {
            let multipart_fields =
                body.encoding == BodyEncoding::Multipart && !body.files.is_empty();
            let simple = body.alternatives.is_empty() && !multipart_fields;
            if body.required && simple {
                // One statement: the field is used as it is.
                let place = BodyRef::Field(&body.name);
                steps.extend(self.body_steps(body, &body.media_type, body.encoding, place));
                return steps;
            }
            steps.push(Step::BindBody {
                field: &body.name,
                optional: !body.required,
            });
            if body.alternatives.is_empty() {
                steps.extend(self.body_steps(
                    body,
                    &body.media_type,
                    body.encoding,
                    BodyRef::Bound,
                ));
            } else {
                let mut offered = vec![body.media_type.as_str()];
                offered.extend(body.alternatives.iter().map(|(m, _)| m.as_str()));
                steps.push(Step::ChooseMediaType(offered));
                for (index, (media, encoding)) in body.alternatives.iter().enumerate() {
                    steps.push(Step::Arm(Some(index + 1)));
                    steps.extend(self.body_steps(body, media, *encoding, BodyRef::Bound));
                    steps.push(Step::End);
                }
                steps.push(Step::Arm(None));
                steps.extend(self.body_steps(
                    body,
                    &body.media_type,
                    body.encoding,
                    BodyRef::Bound,
                ));
                steps.push(Step::End);
                steps.push(Step::End);
            }
            if !body.required {
                steps.push(Step::End);
            }
        }
        steps
    }

    /// The statements that encode `body` (at `place`) as `media`.
    fn body_steps(
        &self,
        body: &'a Body,
        media: &'a str,
        encoding: BodyEncoding,
        place: BodyRef<'a>,
    ) -> Vec<Step<'a>> {
        let call = |method, fallible| Step::Encode {
            method,
            fallible,
            media,
            value: place,
        };
        match encoding {
            BodyEncoding::Json => vec![call("json", true)],
            BodyEncoding::Form => vec![Step::Form {
                media,
                value: place,
                styles: &body.form_styles,
            }],
            BodyEncoding::Text => vec![call("text", false)],
            BodyEncoding::Bytes => vec![call("bytes", false)],
            BodyEncoding::Multipart => {
                let fields = match &body.ty {
                    TypeRef::Named(id) => match &self.api.definition(*id).kind {
                        TypeKind::Struct {
                            fields,
                            additional: None,
                        } => Some(fields),
                        _ => None,
                    },
                    _ => None,
                };
                let Some(fields) = fields.filter(|_| !body.files.is_empty()) else {
                    return vec![call("multipart_value", true)];
                };
                let mut steps = vec![Step::NewForm];
                for f in fields {
                    let file = body.files.iter().find(|(name, _)| *name == f.wire_name);
                    steps.push(Step::FormPart {
                        wire: &f.wire_name,
                        value: place.field(&f.name),
                        content_type: file.map(|(_, content_type)| content_type.as_str()),
                    });
                }
                steps.push(Step::SendForm(media));
                steps
            }
        }
    }

    /// The `ACCEPT` constant's value, when the operation reads a response body.
    fn accept(&self, op: &Operation) -> Option<String> {
        if op.output.accept.is_empty() {
            return None;
        }
        let types: Vec<String> = op.output.accept.iter().map(|m| lit(m)).collect();
        Some(format!("&[{}]", types.join(", ")))
    }

    /// The `SECURITY` constant's value, when the operation asks for credentials.
    fn security(&self, op: &Operation) -> Option<String> {
        if op.security.is_empty() {
            return None;
        }
        let alternatives: Vec<String> = op
            .security
            .iter()
            .map(|alt| {
                let names: Vec<String> = alt.iter().map(|n| lit(n)).collect();
                format!("&[{}]", names.join(", "))
            })
            .collect();
        Some(format!("&[{}]", alternatives.join(", ")))
    }

    fn output_ty(&self, op: &Operation) -> String {
        output_ty(&self.r, op)
    }

    /// The body of `decode`, reading `status` and `body`.
    fn decode_body(&self, op: &Operation) -> String {
        let Some(outputs) = &op.output.by_status else {
            return format!(
                "codegen_runtime::__private::decode::{}(body)",
                decoder(op.output.encoding)
            );
        };
        let mut arms = Vec::new();
        // A range (`2XX`) covers only its class: other statuses still need an arm. Its arm
        // comes after the codes of its class, which it would hide otherwise (the variants
        // are in status order, a range last in its class).
        let mut fallback = false;
        for v in &outputs.variants {
            let pattern = match v.status {
                StatusMatch::Code(code) => code.to_string(),
                StatusMatch::Range(class) => {
                    let listed: Vec<u16> = outputs
                        .variants
                        .iter()
                        .filter_map(|v| match v.status {
                            StatusMatch::Code(code) => Some(code),
                            _ => None,
                        })
                        .collect();
                    match range_pattern(class * 100, class * 100 + 99, &listed) {
                        // Every status of the class has its own variant.
                        pattern if pattern.is_empty() => continue,
                        pattern => pattern,
                    }
                }
                StatusMatch::Default => {
                    fallback = true;
                    "_".to_owned()
                }
            };
            let value = match v.encoding {
                None => format!("Ok({}::{})", outputs.type_name, v.name),
                Some(encoding) => format!(
                    "codegen_runtime::__private::decode::{}(body).map({}::{})",
                    decoder(Some(encoding)),
                    outputs.type_name,
                    v.name
                ),
            };
            arms.push(format!("{pattern} => {value},"));
        }
        if !fallback {
            arms.push(
                "other => codegen_runtime::__private::decode::unexpected_status(other),".into(),
            );
        }
        format!("match status {{ {} }}", arms.join(" "))
    }

    /// Whether `decode` reads the status.
    fn reads_status(&self, op: &Operation) -> bool {
        op.output.by_status.is_some()
    }

    /// The type of a variant's value, `None` for an empty one.
    fn variant_ty(&self, v: &StatusVariant) -> Option<String> {
        v.encoding.map(|_| self.r.ty(&v.ty, true))
    }
}

/// A statement of a generated `build`: `templates/operations.rs` writes each kind.
#[derive(Debug, Clone)]
enum Step<'a> {
    /// A literal part of the path.
    Path(&'a str),
    /// A parameter through `request.<method>`: in its location's default style, in another
    /// style (`request.<method>_styled`), or as JSON text.
    Param {
        method: &'static str,
        param: &'a Param,
        style: ParamEncoding,
    },
    /// A path parameter that spans segments.
    Segments(&'a Param),
    /// Binds the body field to `body`: `let`, or `if let Some` when it is optional (closed by
    /// an [`Step::End`]).
    BindBody { field: &'a str, optional: bool },
    /// A `match` on the media type the client chose among these, the first the default.
    ChooseMediaType(Vec<&'a str>),
    /// An arm of that `match`: the index of an alternative, `None` for the default.
    Arm(Option<usize>),
    /// Closes the block the last open step began.
    End,
    /// `request.<method>(media, value)`: `json` or `multipart_value` (`fallible`, they
    /// serialize), `text` or `bytes`.
    Encode {
        method: &'static str,
        fallible: bool,
        media: &'a str,
        value: BodyRef<'a>,
    },
    /// A form body, with the styles of its properties.
    Form {
        media: &'a str,
        value: BodyRef<'a>,
        styles: &'a [(String, ParamStyle, bool)],
    },
    /// Starts a multipart form field by field.
    NewForm,
    /// A part of that form: a file when it has a content type, a value otherwise.
    FormPart {
        wire: &'a str,
        value: String,
        content_type: Option<&'a str>,
    },
    /// Sends the form as the body.
    SendForm(&'a str),
}

/// How a parameter is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ParamEncoding {
    /// The location's default style and explode.
    Default,
    /// Another style (its `codegen_runtime::__private::Style` path) and explode.
    Styled(&'static str, bool),
    /// As JSON text (`content: application/json`).
    Json,
}

impl<'a> Step<'a> {
    fn param(method: &'static str, param: &'a Param, default: (ParamStyle, bool)) -> Self {
        let style = if param.json {
            ParamEncoding::Json
        } else if (param.style, param.explode) == default {
            ParamEncoding::Default
        } else {
            ParamEncoding::Styled(style_path(param.style), param.explode)
        };
        Step::Param {
            method,
            param,
            style,
        }
    }
}

/// Where the body value is: the request's field, or the `body` binding.
#[derive(Debug, Clone, Copy)]
enum BodyRef<'a> {
    Field(&'a str),
    Bound,
}

impl BodyRef<'_> {
    /// The body as a reference expression.
    fn value(&self) -> String {
        match self {
            BodyRef::Field(name) => format!("&self.{name}"),
            BodyRef::Bound => "body".to_owned(),
        }
    }

    /// A field of the body as a reference expression.
    fn field(&self, name: &str) -> String {
        match self {
            BodyRef::Field(body) => format!("&self.{body}.{name}"),
            BodyRef::Bound => format!("&body.{name}"),
        }
    }
}

fn style_path(style: ParamStyle) -> &'static str {
    match style {
        ParamStyle::Form => "codegen_runtime::__private::Style::Form",
        ParamStyle::Simple => "codegen_runtime::__private::Style::Simple",
        ParamStyle::Label => "codegen_runtime::__private::Style::Label",
        ParamStyle::Matrix => "codegen_runtime::__private::Style::Matrix",
        ParamStyle::SpaceDelimited => "codegen_runtime::__private::Style::SpaceDelimited",
        ParamStyle::PipeDelimited => "codegen_runtime::__private::Style::PipeDelimited",
        ParamStyle::DeepObject => "codegen_runtime::__private::Style::DeepObject",
    }
}

/// The statuses `low..=high` but for those `listed` (which have arms of their own), as a
/// pattern: `201..=203 | 205..=299`. Arms that overlap would be unreachable or flagged.
fn range_pattern(low: u16, high: u16, listed: &[u16]) -> String {
    let mut parts = Vec::new();
    let mut start = low;
    let mut codes: Vec<u16> = listed
        .iter()
        .copied()
        .filter(|c| (low..=high).contains(c))
        .collect();
    codes.sort_unstable();
    codes.dedup();
    for code in codes.into_iter().chain(std::iter::once(high + 1)) {
        match code.checked_sub(1) {
            Some(end) if end > start => parts.push(format!("{start}..={end}")),
            Some(end) if end == start => parts.push(start.to_string()),
            _ => {}
        }
        start = code + 1;
    }
    parts.join(" | ")
}

fn decoder(encoding: Option<BodyEncoding>) -> &'static str {
    match encoding {
        None => "empty",
        Some(BodyEncoding::Json | BodyEncoding::Form) => "json",
        Some(BodyEncoding::Text) => "text",
        Some(BodyEncoding::Bytes | BodyEncoding::Multipart) => "bytes",
    }
}

fn output_ty(r: &Render<'_>, op: &Operation) -> String {
    if let Some(outputs) = &op.output.by_status {
        return format!("crate::operations::{}", outputs.type_name);
    }
    match op.output.encoding {
        None => "()".to_owned(),
        Some(_) => r.ty(&op.output.ty, true),
    }
}

/// The `GrpcKind` variant of a streaming gRPC method; `None` for a unary one (the default).
fn grpc_kind(grpc: &GrpcMethod) -> Option<&'static str> {
    match grpc.kind {
        GrpcKind::Unary => None,
        GrpcKind::ServerStreaming => Some("ServerStreaming"),
        GrpcKind::ClientStreaming => Some("ClientStreaming"),
    }
}

/// The field of a gRPC operation that holds its request (`request`, or `requests` for a client
/// stream).
fn grpc_body(op: &Operation) -> &str {
    op.body.as_ref().map_or("request", |b| b.name.as_str())
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
        output_ty(&self.r, op)
    }
}

impl LibRs<'_> {
    /// The entries of `SECURITY_SCHEMES`.
    fn schemes(&self) -> Vec<String> {
        self.api
            .security_schemes
            .iter()
            .map(|s| {
                let kind = match &s.kind {
                    SchemeKind::ApiKey { location, name } => {
                        let location = match location {
                            ParamLocation::Query => "Query",
                            ParamLocation::Cookie => "Cookie",
                            ParamLocation::Header | ParamLocation::Path => "Header",
                        };
                        format!(
                            "codegen_runtime::http::SchemeKind::ApiKey {{ location: codegen_runtime::http::KeyLocation::{location}, name: {} }}",
                            lit(name)
                        )
                    }
                    SchemeKind::Basic => "codegen_runtime::http::SchemeKind::Basic".to_owned(),
                    SchemeKind::Bearer => "codegen_runtime::http::SchemeKind::Bearer".to_owned(),
                    SchemeKind::OAuth2ClientCredentials { token_url } => format!(
                        "codegen_runtime::http::SchemeKind::OAuth2ClientCredentials {{ token_url: {} }}",
                        lit(token_url)
                    ),
                };
                format!(
                    "codegen_runtime::http::SecurityScheme {{ name: {}, kind: {kind} }}",
                    lit(&s.name)
                )
            })
            .collect()
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

#[cfg(test)]
mod tests {
    use super::range_pattern;

    #[test]
    fn a_range_leaves_out_the_statuses_listed_on_their_own() {
        assert_eq!(range_pattern(200, 299, &[]), "200..=299");
        assert_eq!(range_pattern(200, 299, &[200]), "201..=299");
        assert_eq!(
            range_pattern(200, 299, &[204, 200, 404]),
            "201..=203 | 205..=299"
        );
        assert_eq!(range_pattern(200, 299, &[299, 201]), "200 | 202..=298");
        let all: Vec<u16> = (200..=299).collect();
        assert_eq!(range_pattern(200, 299, &all), "");
    }

    /// An operation named like one of the client's own methods would not compile: the readers
    /// keep those names from operations, so the list must hold every method the template has.
    #[test]
    fn every_method_of_the_client_template_is_kept_from_operations() {
        let template = include_str!("../../templates/client.rs");
        let methods: Vec<&str> = template
            .lines()
            .filter_map(|line| {
                let rest = line.trim_start().strip_prefix("pub ")?;
                let rest = rest.strip_prefix("async ").unwrap_or(rest);
                let name = rest.strip_prefix("fn ")?;
                Some(name.split(['(', '<']).next().unwrap_or(name).trim())
            })
            // The operations' own methods.
            .filter(|name| !name.starts_with("{{"))
            .collect();
        assert!(methods.contains(&"with_grpc"), "{methods:?}");
        for method in methods {
            assert!(
                crate::spec::CLIENT_METHODS.contains(&method),
                "`Client::{method}` of templates/client.rs is not in CLIENT_METHODS"
            );
        }
    }
}
