//! Everything that can go wrong while generating, with where and what.
//!
//! A spec may come from someone else, so a message quotes at most an excerpt of what it
//! contains: [`excerpt`] for the text the generator quotes itself, [`excerpt_quoted`] for the
//! messages of parsers and deserializers (which quote whole values), [`excerpt_pointer`] for
//! JSON pointers (made of the spec's keys). As a backstop, `Display` bounds every field it
//! prints and escapes control characters, so no message can be huge or drive the terminal.

use std::borrow::Cow;
use std::io;
use std::path::{Path, PathBuf};

/// An error of the generator. Each names the file, and where in it when that is known.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec file cannot be read.
    #[error("{}: cannot read the file: {source}", shown(path))]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file is not well-formed JSON or YAML.
    #[error("{}:{line}:{column}: {}", shown(path), bounded(message))]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser found.
        message: String,
    },
    /// The file is JSON or YAML, but it does not say which OpenAPI version it is.
    #[error("{}: not an OpenAPI document: {}", shown(path), bounded(reason))]
    NotOpenApi {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The document does not follow the OpenAPI specification at some place.
    #[error("{}: {}: {}", shown(path), bounded(location), bounded(message))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// A JSON pointer, with line and column when known.
        location: String,
        /// What is wrong there.
        message: String,
    },
    /// The document uses something this version of the generator does not read yet.
    #[error("{}: {}: {}", shown(path), bounded(location), bounded(message))]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// A JSON pointer.
        location: String,
        /// What is not supported, and what to do.
        message: String,
    },
    /// A reference leads outside the folders references may read: it is not read, and the
    /// part that has it is not skipped either, as the user decides whether to allow the folder.
    #[error("{}: {}: {}", shown(path), bounded(location), bounded(message))]
    Refused {
        /// The root document.
        path: PathBuf,
        /// A JSON pointer.
        location: String,
        /// The reference, where it leads and the flag that allows it.
        message: String,
    },
    /// A folder given to `--allow-ref-dir` does not exist or is not a folder.
    #[error(
        "{}: --allow-ref-dir names no folder (it must exist, as references are checked against where it really is)",
        shown(path)
    )]
    AllowedDir {
        /// The folder as given.
        path: PathBuf,
    },
    /// A file of the generated crate cannot be written or read.
    #[error("{}: {source}", shown(path))]
    Output {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The generator produced code that does not parse: a bug in the generator.
    #[error(
        "internal error: generated {file} does not parse ({}); please report this with the spec",
        bounded(message)
    )]
    Internal {
        /// The generated file.
        file: String,
        /// The parser's message.
        message: String,
    },
}

impl Error {
    /// Whether the error is in the input (exit status 2) rather than in the environment or
    /// the generator (exit status 1).
    pub fn is_input_error(&self) -> bool {
        matches!(
            self,
            Self::Read { .. }
                | Self::Syntax { .. }
                | Self::NotOpenApi { .. }
                | Self::Invalid { .. }
                | Self::Unsupported { .. }
                | Self::AllowedDir { .. }
                | Self::Refused { .. }
        )
    }
}

/// The generator's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Escapes a key for a JSON pointer (RFC 6901).
pub(crate) fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// The most characters of spec content that a message quotes in one place.
pub(crate) const EXCERPT_CHARS: usize = 80;

/// The most characters that `Display` prints of one field of an error (a message, a location,
/// a path): a backstop behind the excerpts, which keep messages far shorter.
const FIELD_CHARS: usize = 600;

/// Spec text as a message quotes it: at most [`EXCERPT_CHARS`] characters, then `…`.
pub(crate) fn excerpt(text: &str) -> String {
    let mut chars = text.char_indices();
    match chars.nth(EXCERPT_CHARS) {
        None => text.to_owned(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

/// A message from a parser or deserializer (serde, YAML, protox) with every quoted run (between
/// backticks, double quotes or single quotes) cut to an [`excerpt`]: serde quotes whole values
/// (`invalid type: string "...", expected ...`, ``unknown variant `...` ``).
pub(crate) fn excerpt_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(4 * FIELD_CHARS));
    let mut rest = message;
    let mut previous: Option<char> = None;
    while let Some(open) = rest.chars().next() {
        let quote = matches!(open, '`' | '"')
            // An apostrophe inside a word (`don't`) opens nothing.
            || (open == '\'' && !previous.is_some_and(char::is_alphanumeric));
        out.push(open);
        rest = &rest[open.len_utf8()..];
        previous = Some(open);
        if !quote {
            continue;
        }
        // The end of the quoted run: the same quote, not escaped (serde escapes `"` as `\"`).
        let mut end = rest.len();
        let mut escaped = false;
        for (i, c) in rest.char_indices() {
            if escaped {
                escaped = false;
            } else if c == '\\' && open == '"' {
                escaped = true;
            } else if c == open {
                end = i;
                break;
            }
        }
        out.push_str(&excerpt(&rest[..end]));
        rest = &rest[end..];
        if let Some(close) = rest.chars().next() {
            out.push(close);
            rest = &rest[close.len_utf8()..];
            previous = Some(close);
        }
    }
    out
}

/// A JSON pointer (or a `file#pointer`) with every token cut to an [`excerpt`].
pub(crate) fn excerpt_pointer(pointer: &str) -> String {
    if pointer.len() <= EXCERPT_CHARS {
        return pointer.to_owned();
    }
    pointer
        .split('/')
        .map(excerpt)
        .collect::<Vec<_>>()
        .join("/")
}

/// A field as `Display` prints it: at most [`FIELD_CHARS`] characters, control characters and
/// text-direction overrides escaped.
fn bounded(text: &str) -> Cow<'_, str> {
    let odd =
        |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    let long = text.chars().nth(FIELD_CHARS).is_some();
    if !long && !text.chars().any(odd) {
        return Cow::Borrowed(text);
    }
    let mut out = String::new();
    for c in text.chars().take(FIELD_CHARS) {
        if odd(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if long {
        out.push('…');
    }
    Cow::Owned(out)
}

/// A path as `Display` prints it, bounded like the other fields.
fn shown(path: &Path) -> String {
    bounded(&path.display().to_string()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_cut_long_text_and_keep_short_text() {
        assert_eq!(excerpt("short"), "short");
        let long = "é".repeat(1000);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), EXCERPT_CHARS + 1);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn quoted_runs_of_foreign_messages_are_cut() {
        let huge = "x".repeat(100_000);
        let message = format!(
            "invalid type: string \"{huge}\\\"{huge}\", expected `{huge}` or '{huge}'; don't stop"
        );
        let cut = excerpt_quoted(&message);
        assert!(cut.len() < 400, "{} bytes: {}", cut.len(), &cut[..400]);
        assert!(cut.starts_with("invalid type: string \"xxx"), "{cut}");
        assert!(cut.contains("…\", expected `xxx"), "{cut}");
        assert!(cut.ends_with("…'; don't stop"), "{cut}");
        // A quote that is never closed is cut too.
        assert!(excerpt_quoted(&format!("found `{huge}")).len() < 100);
        let short = "unknown variant `oauth3`, expected one of `apiKey`, `http`";
        assert_eq!(excerpt_quoted(short), short);
    }

    #[test]
    fn displayed_errors_are_bounded_and_escape_control_characters() {
        let huge = "y".repeat(1_000_000);
        let err = Error::Invalid {
            path: PathBuf::from("api.yaml"),
            location: format!("/paths/{huge}"),
            message: format!("\u{1b}[31mred\u{202e} {huge}"),
        };
        let shown = err.to_string();
        assert!(shown.len() < 2 * FIELD_CHARS + 100, "{} bytes", shown.len());
        assert!(
            !shown.contains('\u{1b}') && !shown.contains('\u{202e}'),
            "{shown}"
        );
        assert!(shown.contains("\\u{1b}[31mred"), "{shown}");
        assert_eq!(
            excerpt_pointer(&format!("/a/{huge}/b")),
            format!("/a/{}…/b", "y".repeat(EXCERPT_CHARS))
        );
    }
}
