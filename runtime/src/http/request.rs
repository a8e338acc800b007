//! The parts of an HTTP request that generated code fills in, and the encoding rules of OpenAPI
//! parameter styles and request bodies.
//!
//! Parameters follow the style tables of OpenAPI 3.1.1 (RFC 6570 for `simple`, `label`,
//! `matrix` and `form`): a value is serialized to JSON first, then written as a scalar, a list or
//! a list of key/value pairs. Values are percent-encoded where they go (path segments, query
//! strings, cookies) and the delimiters of the style are not, so a comma inside a value stays
//! distinct from a comma between values.

use percent_encoding::{AsciiSet, CONTROLS, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Serialize;
use serde_json::Value;

use super::auth::Secret;
use crate::TaskError;

/// Characters left as they are in a path segment or query component: RFC 3986 unreserved.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Characters left as they are in a variable that spans path segments: unreserved and `/`.
const SEGMENTS: &AsciiSet = &UNRESERVED.remove(b'/');

/// Characters a cookie value cannot hold as they are (RFC 6265 `cookie-octet`), and `%`.
const COOKIE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b',')
    .add(b';')
    .add(b'\\')
    .add(b'%');

/// How a parameter is serialized: OpenAPI's `style`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `form`: `name=value`, arrays repeated (exploded) or comma-separated. Query and cookie.
    Form,
    /// `simple`: `a,b,c`. Path and header.
    Simple,
    /// `label`: `.a.b` (exploded) or `.a,b`. Path.
    Label,
    /// `matrix`: `;name=a;name=b` (exploded) or `;name=a,b`. Path.
    Matrix,
    /// `spaceDelimited`: `name=a%20b`. Query arrays and objects.
    SpaceDelimited,
    /// `pipeDelimited`: `name=a%7Cb`. Query arrays and objects.
    PipeDelimited,
    /// `deepObject`: `name[key]=value`, nested to any depth, arrays as `name[0]=value`. Query
    /// objects and form bodies.
    DeepObject,
}

/// A request being built: path, query, headers and body, before any I/O.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestParts {
    pub(crate) path: String,
    /// Encoded `name=value` pieces of the query string, in order.
    pub(crate) query: Vec<String>,
    pub(crate) headers: Vec<(String, String)>,
    /// Credential headers, sent marked sensitive.
    pub(crate) secret_headers: Vec<(String, Secret)>,
    /// Encoded `name=value` pieces of the `Cookie` header, in order.
    pub(crate) cookies: Vec<String>,
    pub(crate) body: Option<Body>,
    /// The media types the client prefers for bodies, most preferred first.
    pub(crate) preferred: Vec<String>,
}

/// An encoded request body with its media type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Body {
    pub(crate) content_type: String,
    pub(crate) bytes: Vec<u8>,
}

/// A parameter value taken apart: what every style writes from.
enum Shape {
    /// `null`: the parameter is left out.
    Absent,
    Scalar(String),
    List(Vec<String>),
    Pairs(Vec<(String, String)>),
}

impl Shape {
    fn of(name: &str, value: &impl Serialize) -> Result<(Self, Value), TaskError> {
        let value = serde_json::to_value(value).map_err(|err| {
            TaskError::permanent(format!("cannot encode parameter `{name}`: {err}"))
        })?;
        let shape = match &value {
            Value::Null => Self::Absent,
            Value::Array(items) => Self::List(items.iter().filter_map(scalar).collect()),
            Value::Object(map) => Self::Pairs(
                map.iter()
                    .filter_map(|(k, v)| scalar(v).map(|v| (k.clone(), v)))
                    .collect(),
            ),
            other => Self::Scalar(scalar(other).unwrap_or_default()),
        };
        Ok((shape, value))
    }
}

/// The text of a value inside a parameter: strings as they are, other scalars as JSON, nested
/// arrays and objects as JSON text; `None` for null.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn enc(text: &str, set: &'static AsciiSet) -> String {
    utf8_percent_encode(text, set).to_string()
}

/// Items joined by `sep` after encoding each.
fn join(items: &[String], set: &'static AsciiSet, sep: &str) -> String {
    items
        .iter()
        .map(|i| enc(i, set))
        .collect::<Vec<_>>()
        .join(sep)
}

/// Pairs as `k,v,k2,v2` (`kv` = ",") or `k=v,k2=v2` (`kv` = "=", `sep` = ",").
fn join_pairs(pairs: &[(String, String)], set: &'static AsciiSet, kv: &str, sep: &str) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}{kv}{}", enc(k, set), enc(v, set)))
        .collect::<Vec<_>>()
        .join(sep)
}

impl RequestParts {
    /// Appends literal text of the path template.
    pub fn path(&mut self, literal: &str) {
        self.path.push_str(literal);
    }

    /// Appends a path parameter in the default style (`simple`, not exploded), percent-encoded.
    pub fn path_param<T: Serialize + ?Sized>(
        &mut self,
        name: &str,
        value: &T,
    ) -> Result<(), TaskError> {
        self.path_param_styled(name, value, Style::Simple, false)
    }

    /// Appends a path parameter in `style` (`simple`, `label` or `matrix`).
    pub fn path_param_styled<T: Serialize + ?Sized>(
        &mut self,
        name: &str,
        value: &T,
        style: Style,
        explode: bool,
    ) -> Result<(), TaskError> {
        let (shape, _) = Shape::of(name, &value)?;
        let set = UNRESERVED;
        let missing = || TaskError::permanent(format!("path parameter `{name}` has no value"));
        let text = match (style, shape) {
            (_, Shape::Absent) => return Err(missing()),
            (Style::Simple, Shape::List(items)) if items.is_empty() => return Err(missing()),
            (Style::Simple, Shape::Scalar(s)) => enc(&s, set),
            (Style::Simple, Shape::List(items)) => join(&items, set, ","),
            (Style::Simple, Shape::Pairs(pairs)) => {
                join_pairs(&pairs, set, if explode { "=" } else { "," }, ",")
            }
            (Style::Label, Shape::Scalar(s)) => format!(".{}", enc(&s, set)),
            (Style::Label, Shape::List(items)) => {
                format!(".{}", join(&items, set, if explode { "." } else { "," }))
            }
            (Style::Label, Shape::Pairs(pairs)) if explode => {
                format!(".{}", join_pairs(&pairs, set, "=", "."))
            }
            (Style::Label, Shape::Pairs(pairs)) => {
                format!(".{}", join_pairs(&pairs, set, ",", ","))
            }
            (Style::Matrix, shape) => {
                let n = enc(name, set);
                match shape {
                    Shape::Scalar(s) => format!(";{n}={}", enc(&s, set)),
                    Shape::List(items) if items.is_empty() => format!(";{n}"),
                    Shape::List(items) if explode => items
                        .iter()
                        .map(|i| format!(";{n}={}", enc(i, set)))
                        .collect(),
                    Shape::List(items) => format!(";{n}={}", join(&items, set, ",")),
                    Shape::Pairs(pairs) if explode => {
                        format!(";{}", join_pairs(&pairs, set, "=", ";"))
                    }
                    Shape::Pairs(pairs) => format!(";{n}={}", join_pairs(&pairs, set, ",", ",")),
                    Shape::Absent => return Err(missing()),
                }
            }
            (other, _) => {
                return Err(TaskError::permanent(format!(
                    "path parameter `{name}`: style {other:?} is not a path style"
                )));
            }
        };
        self.path.push_str(&text);
        Ok(())
    }

    /// Appends a path parameter that spans segments (`{name=shelves/*}` in a protobuf HTTP
    /// rule): percent-encoded, but for the `/` between segments.
    pub fn path_segments<T: Serialize + ?Sized>(
        &mut self,
        name: &str,
        value: &T,
    ) -> Result<(), TaskError> {
        match Shape::of(name, &value)?.0 {
            Shape::Scalar(s) => {
                self.path.push_str(&enc(&s, SEGMENTS));
                Ok(())
            }
            _ => Err(TaskError::permanent(format!(
                "path parameter `{name}` must be one string"
            ))),
        }
    }

    /// Adds a query parameter in the default style (`form`, exploded): nothing for `None`, one
    /// pair per element of an array, one pair per property of an object.
    pub fn query<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) -> Result<(), TaskError> {
        self.query_styled(name, value, Style::Form, true)
    }

    /// Adds a query parameter in `style` (`form`, `spaceDelimited`, `pipeDelimited` or
    /// `deepObject`).
    pub fn query_styled<T: Serialize + ?Sized>(
        &mut self,
        name: &str,
        value: &T,
        style: Style,
        explode: bool,
    ) -> Result<(), TaskError> {
        let (shape, value) = Shape::of(name, &value)?;
        let set = UNRESERVED;
        let n = enc(name, set);
        let delimiter = match style {
            Style::SpaceDelimited => "%20",
            Style::PipeDelimited => "%7C",
            _ => ",",
        };
        match (style, shape) {
            (_, Shape::Absent) => {}
            (Style::DeepObject, _) => deep(&mut self.query, &n, &value),
            (_, Shape::Scalar(s)) => self.query.push(format!("{n}={}", enc(&s, set))),
            (_, Shape::List(items)) if explode => {
                for i in items {
                    self.query.push(format!("{n}={}", enc(&i, set)));
                }
            }
            (_, Shape::List(items)) => {
                self.query
                    .push(format!("{n}={}", join(&items, set, delimiter)));
            }
            (_, Shape::Pairs(pairs)) if explode => {
                for (k, v) in pairs {
                    self.query
                        .push(format!("{}={}", enc(&k, set), enc(&v, set)));
                }
            }
            (_, Shape::Pairs(pairs)) => {
                self.query.push(format!(
                    "{n}={}",
                    join_pairs(&pairs, set, delimiter, delimiter)
                ));
            }
        }
        Ok(())
    }

    /// Adds a header parameter in the default style (`simple`, not exploded): nothing for
    /// `None`, arrays comma-separated.
    pub fn header<T: Serialize + ?Sized>(
        &mut self,
        name: &str,
        value: &T,
    ) -> Result<(), TaskError> {
        self.header_styled(name, value, Style::Simple, false)
    }

    /// Adds a header parameter (`simple` style; `explode` writes objects as `k=v,k2=v2`).
    pub fn header_styled<T: Serialize + ?Sized>(
        &mut self,
        name: &str,
        value: &T,
        _style: Style,
        explode: bool,
    ) -> Result<(), TaskError> {
        let text = match Shape::of(name, &value)?.0 {
            Shape::Absent => return Ok(()),
            Shape::Scalar(s) => s,
            Shape::List(items) if items.is_empty() => return Ok(()),
            Shape::List(items) => items.join(","),
            Shape::Pairs(pairs) => pairs
                .iter()
                .map(|(k, v)| format!("{k}{}{v}", if explode { "=" } else { "," }))
                .collect::<Vec<_>>()
                .join(","),
        };
        self.headers.push((name.to_owned(), text));
        Ok(())
    }

    /// Adds a cookie parameter in the default style (`form`, exploded): nothing for `None`; an
    /// array is one cookie per element, an object one cookie per property.
    pub fn cookie<T: Serialize + ?Sized>(
        &mut self,
        name: &str,
        value: &T,
    ) -> Result<(), TaskError> {
        self.cookie_styled(name, value, Style::Form, true)
    }

    /// Adds a cookie parameter (`form` style; not exploded, arrays and objects are
    /// comma-separated in one cookie).
    pub fn cookie_styled<T: Serialize + ?Sized>(
        &mut self,
        name: &str,
        value: &T,
        _style: Style,
        explode: bool,
    ) -> Result<(), TaskError> {
        let set = COOKIE;
        let n = enc(name, set);
        match Shape::of(name, &value)?.0 {
            Shape::Absent => {}
            Shape::Scalar(s) => self.cookies.push(format!("{n}={}", enc(&s, set))),
            Shape::List(items) if explode => {
                for i in items {
                    self.cookies.push(format!("{n}={}", enc(&i, set)));
                }
            }
            Shape::List(items) => self.cookies.push(format!("{n}={}", join(&items, set, ","))),
            Shape::Pairs(pairs) if explode => {
                for (k, v) in pairs {
                    self.cookies
                        .push(format!("{}={}", enc(&k, set), enc(&v, set)));
                }
            }
            Shape::Pairs(pairs) => self
                .cookies
                .push(format!("{n}={}", join_pairs(&pairs, set, ",", ","))),
        }
        Ok(())
    }

    /// Of the media types an operation offers for its body (its default first), the index of
    /// the one to send: the first the client prefers (see
    /// [`HttpClient::with_media_types`](crate::http::HttpClient::with_media_types)), else 0.
    pub fn choose_media_type(&self, offered: &[&str]) -> usize {
        let essence = |m: &str| {
            m.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        };
        self.preferred
            .iter()
            .find_map(|p| offered.iter().position(|o| essence(o) == essence(p)))
            .unwrap_or(0)
    }

    /// Sets a JSON body.
    pub fn json<T: Serialize + ?Sized>(
        &mut self,
        media_type: &str,
        value: &T,
    ) -> Result<(), TaskError> {
        let bytes = serde_json::to_vec(value).map_err(|err| {
            TaskError::permanent(format!("cannot encode the request body as JSON: {err}"))
        })?;
        self.set_body(media_type, bytes);
        Ok(())
    }

    /// Sets an `application/x-www-form-urlencoded` body from an object.
    ///
    /// Each property is written by its entry in `encodings` (property name, style, explode), or
    /// as `form`, exploded, when it has none: scalars as `name=value`, arrays of scalars as
    /// `name=a&name=b` (`name=a,b` unexploded). Nested objects, arrays of objects and every
    /// property in `deepObject` style are written with brackets, the way Stripe and Rails read
    /// them: `name[key]=value`, `name[key][inner]=value`, `name[0]=value`. Null properties are
    /// left out.
    pub fn form<T: Serialize + ?Sized>(
        &mut self,
        media_type: &str,
        value: &T,
        encodings: &[(&str, Style, bool)],
    ) -> Result<(), TaskError> {
        let value = serde_json::to_value(value).map_err(|err| {
            TaskError::permanent(format!("cannot encode the request body as a form: {err}"))
        })?;
        let Value::Object(map) = value else {
            return Err(TaskError::permanent(
                "cannot encode the request body as a form: it is not an object",
            ));
        };
        let mut pieces = Vec::new();
        for (key, value) in &map {
            let (style, explode) = encodings
                .iter()
                .find(|(name, _, _)| name == key)
                .map(|(_, s, e)| (*s, *e))
                .unwrap_or((Style::Form, true));
            let k = form_enc(key);
            let nested = match value {
                Value::Object(_) => true,
                Value::Array(items) => items.iter().any(|i| i.is_object() || i.is_array()),
                _ => false,
            };
            if style == Style::DeepObject || nested {
                form_deep(&mut pieces, &k, value);
                continue;
            }
            let delimiter = match style {
                Style::SpaceDelimited => "+",
                Style::PipeDelimited => "%7C",
                _ => ",",
            };
            match value {
                Value::Null => {}
                Value::Array(items) if explode => {
                    for item in items.iter().filter_map(scalar) {
                        pieces.push(format!("{k}={}", form_enc(&item)));
                    }
                }
                Value::Array(items) => {
                    let items: Vec<String> = items
                        .iter()
                        .filter_map(scalar)
                        .map(|i| form_enc(&i))
                        .collect();
                    pieces.push(format!("{k}={}", items.join(delimiter)));
                }
                other => {
                    if let Some(s) = scalar(other) {
                        pieces.push(format!("{k}={}", form_enc(&s)));
                    }
                }
            }
        }
        self.set_body(media_type, pieces.join("&").into_bytes());
        Ok(())
    }

    /// Sets a `multipart/form-data` body (RFC 7578) from the parts in `form`.
    pub fn multipart(&mut self, media_type: &str, form: Multipart) {
        let boundary = format!("----codegen-{}", uuid::Uuid::new_v4().simple());
        let mut bytes = Vec::new();
        for part in form.parts {
            bytes.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            let mut disposition = format!("form-data; name=\"{}\"", quote(&part.name));
            if let Some(filename) = &part.filename {
                disposition.push_str(&format!("; filename=\"{}\"", quote(filename)));
            }
            bytes.extend_from_slice(format!("Content-Disposition: {disposition}\r\n").as_bytes());
            if let Some(content_type) = &part.content_type {
                bytes.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
            }
            bytes.extend_from_slice(b"\r\n");
            bytes.extend_from_slice(&part.bytes);
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let essence = media_type.split(';').next().unwrap_or(media_type).trim();
        self.set_body(&format!("{essence}; boundary={boundary}"), bytes);
    }

    /// Sets a `multipart/form-data` body from any object: one part per property, as
    /// [`Multipart::part`] writes it.
    pub fn multipart_value<T: Serialize + ?Sized>(
        &mut self,
        media_type: &str,
        value: &T,
    ) -> Result<(), TaskError> {
        let value = serde_json::to_value(value).map_err(|err| {
            TaskError::permanent(format!(
                "cannot encode the request body as multipart: {err}"
            ))
        })?;
        let Value::Object(map) = value else {
            return Err(TaskError::permanent(
                "cannot encode the request body as multipart: it is not an object",
            ));
        };
        let mut form = Multipart::default();
        for (name, value) in &map {
            form.part(name, value)?;
        }
        self.multipart(media_type, form);
        Ok(())
    }

    /// Sets a text body.
    pub fn text(&mut self, media_type: &str, value: &str) {
        self.set_body(media_type, value.as_bytes().to_vec());
    }

    /// Sets a body of raw bytes.
    pub fn bytes(&mut self, media_type: &str, value: &[u8]) {
        self.set_body(media_type, value.to_vec());
    }

    fn set_body(&mut self, media_type: &str, bytes: Vec<u8>) {
        self.body = Some(Body {
            content_type: media_type.to_owned(),
            bytes,
        });
    }

    /// The query string, without `?`; empty when there are no parameters.
    pub(crate) fn query_string(&self) -> String {
        self.query.join("&")
    }
}

/// A parameter whose description gives `content: application/json`: its value as JSON text, or
/// `None` for null (the parameter is then left out).
pub fn json_text<T: Serialize + ?Sized>(value: &T) -> Result<Option<String>, TaskError> {
    let value = serde_json::to_value(value)
        .map_err(|err| TaskError::permanent(format!("cannot encode a parameter as JSON: {err}")))?;
    Ok((!value.is_null()).then(|| value.to_string()))
}

/// `name[key]=value` pieces for a query parameter in `deepObject` style.
fn deep(out: &mut Vec<String>, prefix: &str, value: &Value) {
    match value {
        Value::Null => {}
        Value::Object(map) => {
            for (k, v) in map {
                deep(out, &format!("{prefix}[{}]", enc(k, UNRESERVED)), v);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                deep(out, &format!("{prefix}[{i}]"), v);
            }
        }
        other => out.push(format!(
            "{prefix}={}",
            enc(&scalar(other).unwrap_or_default(), UNRESERVED)
        )),
    }
}

/// As [`deep`], with form encoding.
fn form_deep(out: &mut Vec<String>, prefix: &str, value: &Value) {
    match value {
        Value::Null => {}
        Value::Object(map) => {
            for (k, v) in map {
                form_deep(out, &format!("{prefix}[{}]", form_enc(k)), v);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                form_deep(out, &format!("{prefix}[{i}]"), v);
            }
        }
        other => out.push(format!(
            "{prefix}={}",
            form_enc(&scalar(other).unwrap_or_default())
        )),
    }
}

/// `application/x-www-form-urlencoded` encoding of a name or value (space as `+`).
fn form_enc(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// A name or file name inside a `Content-Disposition` quoted string (RFC 7578, as browsers do).
fn quote(text: &str) -> String {
    text.replace('"', "%22")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// The parts of a `multipart/form-data` body, in order.
#[derive(Debug, Clone, Default)]
pub struct Multipart {
    parts: Vec<Part>,
}

#[derive(Debug, Clone)]
struct Part {
    name: String,
    filename: Option<String>,
    content_type: Option<String>,
    bytes: Vec<u8>,
}

impl Multipart {
    /// Adds the property `name`: nothing for null; a string, number or boolean as a text part;
    /// an array of scalars as one text part per element; an object or any other array as one
    /// `application/json` part.
    pub fn part<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) -> Result<(), TaskError> {
        let value = serde_json::to_value(value).map_err(|err| {
            TaskError::permanent(format!("cannot encode the multipart field `{name}`: {err}"))
        })?;
        let text = |s: String| Part {
            name: name.to_owned(),
            filename: None,
            content_type: None,
            bytes: s.into_bytes(),
        };
        match value {
            Value::Null => {}
            Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
                self.parts.extend(items.iter().filter_map(scalar).map(text));
            }
            value @ (Value::Array(_) | Value::Object(_)) => self.parts.push(Part {
                name: name.to_owned(),
                filename: None,
                content_type: Some("application/json".into()),
                bytes: value.to_string().into_bytes(),
            }),
            other => self.parts.extend(scalar(&other).map(text)),
        }
        Ok(())
    }

    /// Adds the binary property `name` as file parts: one part for a file, one per element
    /// for a list of them, none for `None`. A part's file name and media type are the
    /// [`File`]'s; bare bytes are named after the property. `content_type` is the type of
    /// parts that do not give one (`application/octet-stream` unless the description says
    /// otherwise).
    pub fn file<F: FileParts + ?Sized>(&mut self, name: &str, files: &F, content_type: &str) {
        files.each(&mut |file| {
            self.parts.push(Part {
                name: name.to_owned(),
                filename: Some(file.name.unwrap_or(name).to_owned()),
                content_type: Some(file.content_type.unwrap_or(content_type).to_owned()),
                bytes: file.bytes.to_vec(),
            });
        });
    }
}

/// A file for a multipart body: its bytes, the file name sent with them (some APIs read the
/// format from its extension) and, optionally, its media type.
///
/// In a task input the bytes are stored as base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct File {
    /// The file name sent in the part's `Content-Disposition`.
    pub name: String,
    /// The media type of the part; the description's (or `application/octet-stream`) when
    /// `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The contents.
    #[serde(with = "base64_bytes")]
    pub bytes: Vec<u8>,
}

impl File {
    /// A file named `name` holding `bytes`.
    pub fn new(name: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            name: name.into(),
            content_type: None,
            bytes: bytes.into(),
        }
    }

    /// Sends the file with this media type.
    pub fn with_content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }
}

mod base64_bytes {
    use base64::Engine;
    use base64::prelude::BASE64_STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&BASE64_STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        BASE64_STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

/// One file as [`FileParts`] hands it over.
#[derive(Debug, Clone, Copy)]
pub struct FileRef<'a> {
    name: Option<&'a str>,
    content_type: Option<&'a str>,
    bytes: &'a [u8],
}

/// Binary values a multipart body sends as files: [`File`]s, bytes, lists and options of them.
pub trait FileParts {
    /// Calls `f` with each file.
    fn each(&self, f: &mut dyn FnMut(FileRef<'_>));
}

impl FileParts for File {
    fn each(&self, f: &mut dyn FnMut(FileRef<'_>)) {
        f(FileRef {
            name: Some(&self.name),
            content_type: self.content_type.as_deref(),
            bytes: &self.bytes,
        });
    }
}

impl FileParts for Vec<u8> {
    fn each(&self, f: &mut dyn FnMut(FileRef<'_>)) {
        f(FileRef {
            name: None,
            content_type: None,
            bytes: self,
        });
    }
}

impl FileParts for Vec<File> {
    fn each(&self, f: &mut dyn FnMut(FileRef<'_>)) {
        self.iter().for_each(|file| file.each(f));
    }
}

impl FileParts for Vec<Vec<u8>> {
    fn each(&self, f: &mut dyn FnMut(FileRef<'_>)) {
        self.iter().for_each(|bytes| bytes.each(f));
    }
}

impl<T: FileParts> FileParts for Option<T> {
    fn each(&self, f: &mut dyn FnMut(FileRef<'_>)) {
        if let Some(inner) = self {
            inner.each(f);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn path(style: Style, explode: bool, value: &impl Serialize) -> String {
        let mut parts = RequestParts::default();
        parts
            .path_param_styled("color", value, style, explode)
            .unwrap();
        parts.path
    }

    fn query(style: Style, explode: bool, value: &impl Serialize) -> String {
        let mut parts = RequestParts::default();
        parts.query_styled("color", value, style, explode).unwrap();
        parts.query_string()
    }

    fn rgb() -> BTreeMap<&'static str, i32> {
        BTreeMap::from([("B", 150), ("G", 200), ("R", 100)])
    }

    const LIST: [&str; 3] = ["blue", "black", "brown"];

    #[test]
    fn path_styles_follow_the_openapi_tables() {
        use Style::*;
        assert_eq!(path(Simple, false, &"blue"), "blue");
        assert_eq!(path(Simple, false, &LIST), "blue,black,brown");
        assert_eq!(path(Simple, false, &rgb()), "B,150,G,200,R,100");
        assert_eq!(path(Simple, true, &rgb()), "B=150,G=200,R=100");
        assert_eq!(path(Label, false, &"blue"), ".blue");
        assert_eq!(path(Label, false, &LIST), ".blue,black,brown");
        assert_eq!(path(Label, true, &LIST), ".blue.black.brown");
        assert_eq!(path(Label, false, &rgb()), ".B,150,G,200,R,100");
        assert_eq!(path(Label, true, &rgb()), ".B=150.G=200.R=100");
        assert_eq!(path(Matrix, false, &"blue"), ";color=blue");
        assert_eq!(path(Matrix, false, &LIST), ";color=blue,black,brown");
        assert_eq!(
            path(Matrix, true, &LIST),
            ";color=blue;color=black;color=brown"
        );
        assert_eq!(path(Matrix, false, &rgb()), ";color=B,150,G,200,R,100");
        assert_eq!(path(Matrix, true, &rgb()), ";B=150;G=200;R=100");
        assert_eq!(path(Matrix, true, &Vec::<String>::new()), ";color");
        // Delimiters inside values are encoded; the style's are not.
        assert_eq!(path(Simple, false, &["a,b", "c/d"]), "a%2Cb,c%2Fd");
    }

    #[test]
    fn query_styles_follow_the_openapi_tables() {
        use Style::*;
        assert_eq!(query(Form, true, &"blue"), "color=blue");
        assert_eq!(
            query(Form, true, &LIST),
            "color=blue&color=black&color=brown"
        );
        assert_eq!(query(Form, false, &LIST), "color=blue,black,brown");
        assert_eq!(query(Form, true, &rgb()), "B=150&G=200&R=100");
        assert_eq!(query(Form, false, &rgb()), "color=B,150,G,200,R,100");
        assert_eq!(
            query(SpaceDelimited, false, &LIST),
            "color=blue%20black%20brown"
        );
        assert_eq!(
            query(PipeDelimited, false, &LIST),
            "color=blue%7Cblack%7Cbrown"
        );
        assert_eq!(
            query(PipeDelimited, false, &rgb()),
            "color=B%7C150%7CG%7C200%7CR%7C100"
        );
        assert_eq!(
            query(DeepObject, true, &rgb()),
            "color[B]=150&color[G]=200&color[R]=100"
        );
        let nested = serde_json::json!({"a": {"b": 1}, "list": ["x y", "z"]});
        assert_eq!(
            query(DeepObject, true, &nested),
            "color[a][b]=1&color[list][0]=x%20y&color[list][1]=z"
        );
        assert_eq!(query(Form, true, &None::<i32>), "");
        assert_eq!(query(Form, true, &"a&b=c"), "color=a%26b%3Dc");
    }

    #[test]
    fn missing_path_parameter_is_a_permanent_error() {
        let mut parts = RequestParts::default();
        let err = parts.path_param("id", &None::<i64>).unwrap_err();
        assert!(!err.is_retryable());
        assert!(err.message().contains("`id`"));
    }

    #[test]
    fn headers_and_cookies() {
        let mut parts = RequestParts::default();
        parts.header("X-Tags", &vec!["a", "b"]).unwrap();
        parts
            .header_styled("X-Rgb", &rgb(), Style::Simple, true)
            .unwrap();
        parts.header("X-None", &None::<String>).unwrap();
        assert_eq!(
            parts.headers,
            [
                ("X-Tags".to_owned(), "a,b".to_owned()),
                ("X-Rgb".to_owned(), "B=150,G=200,R=100".to_owned())
            ]
        );
        parts.cookie("session", &"a b;c").unwrap();
        parts.cookie("tag", &["x", "y"]).unwrap();
        parts
            .cookie_styled("list", &["x", "y"], Style::Form, false)
            .unwrap();
        assert_eq!(
            parts.cookies,
            ["session=a%20b%3Bc", "tag=x", "tag=y", "list=x,y"]
        );
    }

    #[test]
    fn forms_nest_with_brackets_like_stripe() {
        let mut parts = RequestParts::default();
        let body = serde_json::json!({
            "email": "a+b@example.com",
            "metadata": {"order": {"id": 7}},
            "expand": ["customer", "invoice"],
            "items": [{"price": "p_1", "quantity": 2}],
            "tags": ["x", "y"],
            "skip": null,
        });
        parts
            .form(
                "application/x-www-form-urlencoded",
                &body,
                &[("expand", Style::DeepObject, true)],
            )
            .unwrap();
        let sent = String::from_utf8(parts.body.unwrap().bytes).unwrap();
        assert_eq!(
            sent,
            "email=a%2Bb%40example.com&metadata[order][id]=7&expand[0]=customer&expand[1]=invoice&items[0][price]=p_1&items[0][quantity]=2&tags=x&tags=y"
        );
        let err = RequestParts::default()
            .form("application/x-www-form-urlencoded", &[1, 2], &[])
            .unwrap_err();
        assert!(err.message().contains("not an object"), "{err}");
    }

    #[test]
    fn files_keep_their_names_and_store_their_bytes_as_base64() {
        let file = File::new("a.mp3", vec![0, 255]).with_content_type("audio/mpeg");
        let json = serde_json::to_string(&file).unwrap();
        assert_eq!(
            json,
            r#"{"name":"a.mp3","content_type":"audio/mpeg","bytes":"AP8="}"#
        );
        assert_eq!(serde_json::from_str::<File>(&json).unwrap(), file);
        let mut form = Multipart::default();
        form.file("audio", &file, "application/octet-stream");
        form.file("raw", &vec![1u8], "application/octet-stream");
        let names: Vec<_> = form
            .parts
            .iter()
            .map(|p| (p.filename.clone().unwrap(), p.content_type.clone().unwrap()))
            .collect();
        assert_eq!(
            names,
            [
                ("a.mp3".to_owned(), "audio/mpeg".to_owned()),
                ("raw".to_owned(), "application/octet-stream".to_owned())
            ]
        );
    }

    #[test]
    fn media_type_choice_follows_the_client_preference() {
        let mut parts = RequestParts::default();
        let offered = ["application/json", "application/x-www-form-urlencoded"];
        assert_eq!(parts.choose_media_type(&offered), 0);
        parts.preferred = vec![
            "text/plain".into(),
            "Application/X-WWW-Form-Urlencoded".into(),
        ];
        assert_eq!(parts.choose_media_type(&offered), 1);
    }
}
