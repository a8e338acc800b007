//! Multipart bodies and the files they carry.

use serde::Serialize;
use serde_json::Value;

use super::params::scalar;
use crate::TaskError;

/// A name or file name inside a `Content-Disposition` quoted string (RFC 7578, as browsers do).
pub(super) fn quote(text: &str) -> String {
    text.replace('"', "%22")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// The parts of a `multipart/form-data` body, in order.
#[derive(Debug, Clone, Default)]
pub struct Multipart {
    pub(super) parts: Vec<Part>,
}

#[derive(Debug, Clone)]
pub(super) struct Part {
    pub(super) name: String,
    pub(super) filename: Option<String>,
    pub(super) content_type: Option<String>,
    pub(super) bytes: Vec<u8>,
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

pub(super) mod base64_bytes {
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
