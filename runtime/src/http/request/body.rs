//! Request bodies: JSON, forms (nested the way Stripe reads them), multipart, text and bytes,
//! and the choice among the media types an operation offers.

use serde::Serialize;
use serde_json::Value;

use super::multipart::{Multipart, quote};
use super::params::{Style, scalar};
use super::{Body, RequestParts};
use crate::TaskError;

impl RequestParts {
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
}

/// As [`deep`], with form encoding.
pub(super) fn form_deep(out: &mut Vec<String>, prefix: &str, value: &Value) {
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
pub(super) fn form_enc(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
