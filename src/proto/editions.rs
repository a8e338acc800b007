//! Editions files, read as proto3.
//!
//! protox parses proto2 and proto3 but not yet `edition = "2023"` (andrewhickman/protox#31),
//! and no other Rust compiler of `.proto` files exists. An editions file differs from proto3 in
//! its first statement and in `features` options, which change presence, enum openness and
//! encodings but not the names, numbers and types that generated code uses. So the file is
//! rewritten before it is parsed: the `edition` statement becomes `syntax = "proto3"`, and
//! `features` options, field defaults and extension ranges (which proto3 refuses) are blanked
//! out with spaces, so every line and column stays where it was for error messages.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use protox::file::{File, FileResolver, IncludeFileResolver};

use crate::error::excerpt;

/// Include folders whose editions files are read as proto3; it records each (name, edition).
///
/// It is also where the files of a compilation are confined: protox refuses imports with `..`
/// or an absolute path (`is_valid_import`), and this resolver refuses a file whose real path
/// (symlinks resolved) is outside the include folders and the other permitted folders.
pub(super) struct AsProto3 {
    pub(super) includes: Vec<PathBuf>,
    pub(super) read: Arc<Mutex<Vec<(String, String)>>>,
    /// Canonical folders whose files may be read: the include folders and `--allow-ref-dir`s.
    pub(super) permitted: Vec<PathBuf>,
    /// The canonical path of the file the user named, which is read wherever it leads.
    pub(super) root: Option<PathBuf>,
}

impl FileResolver for AsProto3 {
    fn resolve_path(&self, path: &Path) -> Option<String> {
        self.includes
            .iter()
            .find_map(|i| IncludeFileResolver::new(i.clone()).resolve_path(path))
    }

    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        // `is_file` follows symlinks and is false for devices and pipes, which could block.
        let Some(path) = self
            .includes
            .iter()
            .map(|i| i.join(name))
            .find(|p| p.is_file())
        else {
            return Err(protox::Error::file_not_found(name));
        };
        let real = std::fs::canonicalize(&path).map_err(protox::Error::new)?;
        let permitted = self.root.as_ref() == Some(&real)
            || self.permitted.iter().any(|dir| real.starts_with(dir));
        if !permitted {
            return Err(protox::Error::new(format!(
                "import '{}' resolves to {} (through {}), outside the include folders: pass -I or --allow-ref-dir with the folder that holds it",
                excerpt(name),
                real.display(),
                path.display()
            )));
        }
        // protox parses as it opens, so the text is read here first.
        let text = std::fs::read_to_string(&real).ok();
        match text.as_deref().and_then(rewrite) {
            Some((source, edition)) => {
                if let Ok(mut read) = self.read.lock() {
                    read.push((name.to_owned(), edition));
                }
                File::from_source(name, &source)
            }
            None => File::open(name, &path),
        }
    }
}

/// The proto3 text of an editions file, and its edition; `None` for other files.
fn rewrite(source: &str) -> Option<(String, String)> {
    let statement = find_edition(source)?;
    let (start, end, edition) = statement;
    let mut out = String::with_capacity(source.len());
    out.push_str(&source[..start]);
    let replacement = "syntax = \"proto3\";";
    out.push_str(replacement);
    // Keep the length of the line the same where possible.
    let original = end - start;
    if original > replacement.len() {
        out.push_str(&" ".repeat(original - replacement.len()));
    }
    out.push_str(&source[end..]);
    Some((blank_features(&out), edition))
}

/// The byte range of `edition = "...";` and the edition, outside comments.
fn find_edition(source: &str) -> Option<(usize, usize, String)> {
    let code = mask_comments(source);
    let start = code.find("edition")?;
    let before = code[..start].trim();
    if !before.is_empty() && !before.ends_with(';') {
        return None;
    }
    let end = start + code[start..].find(';')? + 1;
    let statement = &source[start..end];
    let edition = statement.split('"').nth(1)?.to_owned();
    Some((start, end, edition))
}

/// The source with comments replaced by spaces, so searches skip them; same byte offsets.
fn mask_comments(source: &str) -> String {
    let bytes = source.as_bytes();
    let mut out = bytes.to_vec();
    let mut i = 0;
    let mut in_string = false;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                in_string = !in_string;
                i += 1;
            }
            b'/' if !in_string && bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    out[i] = b' ';
                    i += 1;
                }
            }
            b'/' if !in_string && bytes.get(i + 1) == Some(&b'*') => {
                while i < bytes.len() && !(bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/')) {
                    if bytes[i] != b'\n' {
                        out[i] = b' ';
                    }
                    i += 1;
                }
                for _ in 0..2 {
                    if i < bytes.len() {
                        out[i] = b' ';
                        i += 1;
                    }
                }
            }
            _ => i += 1,
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| source.to_owned())
}

/// Blanks out `option features... ;` statements, `features.x = y` and `default = v` field
/// options (and the brackets left empty), and `extensions ... ;` ranges.
fn blank_features(source: &str) -> String {
    let code = mask_comments(source);
    let mut out = source.as_bytes().to_vec();
    fn blank(out: &mut [u8], from: usize, to: usize) {
        for b in &mut out[from..to] {
            if *b != b'\n' {
                *b = b' ';
            }
        }
    }
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        // The scan goes by bytes; a byte inside a multi-byte character starts nothing.
        if !code.is_char_boundary(i) {
            i += 1;
            continue;
        }
        let rest = &code[i..];
        let at_word = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if at_word && (rest.starts_with("option features") || rest.starts_with("extensions ")) {
            let end = rest.find(';').map_or(bytes.len(), |e| i + e + 1);
            blank(&mut out, i, end);
            i = end;
            continue;
        }
        if bytes[i] == b'[' {
            // Field options: drop the ones proto3 refuses, and the brackets if none is left.
            let Some(close) = rest.find(']') else {
                break;
            };
            let inner = &rest[1..close];
            let kept: Vec<&str> = inner
                .split(',')
                .filter(|o| {
                    let o = o.trim_start();
                    !(o.starts_with("features.") || o.starts_with("default"))
                })
                .collect();
            if kept.len() != inner.split(',').count() {
                if kept.iter().all(|k| k.trim().is_empty()) {
                    blank(&mut out, i, i + close + 1);
                } else {
                    let text = format!("[{}]", kept.join(","));
                    let padded = format!("{text:<width$}", width = close + 1);
                    out[i..i + close + 1].copy_from_slice(padded.as_bytes());
                }
            }
            i += close + 1;
            continue;
        }
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| source.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the fuzzer: a multi-byte character made the scan slice inside it.
    #[test]
    fn non_ascii_text_does_not_break_the_rewrite() {
        let source = "edition = \"2023\";\n// 🦀\nmessage 🦀 { string a = 1 [default = \"é\"]; }\n";
        let (out, edition) = rewrite(source).expect("an editions file");
        assert_eq!(edition, "2023");
        assert!(out.contains("syntax = \"proto3\";"), "{out}");
    }

    #[test]
    fn an_editions_file_becomes_proto3_with_its_lines_in_place() {
        let source = "// edition = \"1\";\nedition = \"2023\";\npackage p;\noption features.field_presence = IMPLICIT;\nmessage A {\n  int32 a = 1 [features.field_presence = EXPLICIT, deprecated = true];\n  int32 b = 2 [default = 7];\n  extensions 100 to 199;\n}\n";
        let (out, edition) = rewrite(source).unwrap();
        assert_eq!(edition, "2023");
        assert_eq!(out.lines().count(), source.lines().count());
        assert!(
            out.lines()
                .nth(1)
                .unwrap()
                .starts_with("syntax = \"proto3\";")
        );
        assert_eq!(out.lines().nth(3).unwrap().trim(), "");
        let words = |n: usize| {
            out.lines()
                .nth(n)
                .unwrap()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(words(5), "int32 a = 1 [ deprecated = true] ;");
        assert_eq!(words(6), "int32 b = 2 ;");
        assert_eq!(out.lines().nth(7).unwrap().trim(), "");
        assert!(rewrite("syntax = \"proto3\";\n").is_none());
    }
}
