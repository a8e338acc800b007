//! Parameters: path, query, header and cookie values in their OpenAPI styles, percent-encoded
//! where they go.

use percent_encoding::{AsciiSet, CONTROLS, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Serialize;
use serde_json::Value;

use super::RequestParts;
use crate::TaskError;

/// Characters left as they are in a path segment or query component: RFC 3986 unreserved.
pub(super) const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Characters left as they are in a variable that spans path segments: unreserved and `/`.
pub(super) const SEGMENTS: &AsciiSet = &UNRESERVED.remove(b'/');

/// Characters a cookie value cannot hold as they are (RFC 6265 `cookie-octet`), and `%`.
pub(super) const COOKIE: &AsciiSet = &CONTROLS
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

/// A parameter value taken apart: what every style writes from.
pub(super) enum Shape {
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
pub(super) fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

pub(super) fn enc(text: &str, set: &'static AsciiSet) -> String {
    utf8_percent_encode(text, set).to_string()
}

/// Items joined by `sep` after encoding each.
pub(super) fn join(items: &[String], set: &'static AsciiSet, sep: &str) -> String {
    items
        .iter()
        .map(|i| enc(i, set))
        .collect::<Vec<_>>()
        .join(sep)
}

/// Pairs as `k,v,k2,v2` (`kv` = ",") or `k=v,k2=v2` (`kv` = "=", `sep` = ",").
pub(super) fn join_pairs(
    pairs: &[(String, String)],
    set: &'static AsciiSet,
    kv: &str,
    sep: &str,
) -> String {
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
pub(super) fn deep(out: &mut Vec<String>, prefix: &str, value: &Value) {
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
